/* T5 encoder timing and memory.
 *
 *   bench_t5 --model DIR [--threads N] [--batch B] [--len L] [--repeat R] [--precision fp32|bf16]
 *       DIR: a text_encoder folder or a pipeline folder holding text_encoder/ (e.g. make-model --preset
 *       cogvideox-2b). Times cvx_t5_open and cvx_t5_encode on B rows of L ids (default 2 x 226: the pipeline's
 *       prompt + negative prompt), and prints the peak RSS. --precision bf16: the bf16 path of the machine
 *       (each layer packed just before it runs, as the pipeline does; CVX_FORCE_ISA picks a lower path).
 *   bench_t5 --synthetic-layers N [--dtype f16|bf16|f32] [--threads N] [--batch B] [--len L] [--keep DIR]
 *       Writes a T5-v1.1-XXL-shaped folder (d_model 4096, 64 x 64 heads, d_ff 10240, vocab 32128) with N
 *       layers of random weights to a temporary folder first; the full 24-layer time is about 24x the
 *       per-layer time printed.
 *
 * Peak RSS counts the mapped weight pages the encode touched (file-backed, shared with the page cache). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/half.h"
#include "core/log.h"
#include "core/threadpool.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "text/t5.h"

static double peak_rss_gb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0 / 1e9; /* ru_maxrss is in KiB on Linux */
}

/* ---- synthetic XXL-shaped folder --------------------------------------------------------------------- */

typedef struct {
    cvx_dtype dt;
    uint64_t seed;
    const char **kinds; /* per entry: 'n' norm (≈1), 'e' embedding N(0,1)-ish, 'w' weight (scaled by fan-in) */
    const int64_t *fan_in;
} fill_ctx;

static cvx_status fill(void *user, size_t index, void *dst, size_t nbytes, cvx_error *err) {
    fill_ctx *c = user;
    uint64_t s = c->seed ^ (0x9E3779B97F4A7C15ull * (index + 1));
    size_t n = nbytes / cvx_dtype_size(c->dt);
    double scale = c->kinds[index][0] == 'w' ? 1.0 / sqrt((double)c->fan_in[index]) : 1.0;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0; /* U(-1, 1) */
        float v = c->kinds[index][0] == 'n' ? (float)(1.0 + 0.25 * u) : (float)(u * 1.7320508 * scale);
        if (c->dt == CVX_DTYPE_F16) ((uint16_t *)dst)[i] = cvx_f32_to_f16(v);
        else if (c->dt == CVX_DTYPE_BF16) ((uint16_t *)dst)[i] = cvx_f32_to_bf16(v);
        else ((float *)dst)[i] = v;
    }
    return CVX_OK;
}

static int write_synthetic(const char *dir, int layers, cvx_dtype dt) {
    const int64_t V = 32128, D = 4096, I = 4096, F = 10240, NB = 32, H = 64;
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) {
        perror(path);
        return -1;
    }
    fprintf(f,
            "{\"d_ff\": 10240, \"d_kv\": 64, \"d_model\": 4096, \"dense_act_fn\": \"gelu_new\", \"feed_forward_proj\":"
            " \"gated-gelu\", \"is_gated_act\": true, \"layer_norm_epsilon\": 1e-06, \"model_type\": \"t5\","
            " \"num_heads\": 64, \"num_layers\": %d, \"relative_attention_max_distance\": 128,"
            " \"relative_attention_num_buckets\": 32, \"vocab_size\": 32128}\n",
            layers);
    fclose(f);
    int n_max = 3 + 9 * layers;
    cvx_st_entry *e = calloc((size_t)n_max, sizeof *e);
    const char **kinds = calloc((size_t)n_max, sizeof *kinds);
    int64_t *fan = calloc((size_t)n_max, sizeof *fan);
    char (*names)[96] = calloc((size_t)n_max, sizeof *names);
    int n = 0;
#define ENTRY(kind, fan_in, nd, d0, d1, ...)                                   \
    do {                                                                       \
        snprintf(names[n], sizeof names[n], __VA_ARGS__);                      \
        e[n] = (cvx_st_entry){names[n], dt, nd, {d0, d1}, NULL};               \
        kinds[n] = kind, fan[n] = fan_in, n++;                                 \
    } while (0)
    ENTRY("e", 0, 2, V, D, "shared.weight");
    ENTRY("e", 0, 2, NB, H, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    for (int l = 0; l < layers; l++) {
        ENTRY("w", D, 2, I, D, "encoder.block.%d.layer.0.SelfAttention.q.weight", l);
        ENTRY("w", D, 2, I, D, "encoder.block.%d.layer.0.SelfAttention.k.weight", l);
        ENTRY("w", D, 2, I, D, "encoder.block.%d.layer.0.SelfAttention.v.weight", l);
        ENTRY("w", I, 2, D, I, "encoder.block.%d.layer.0.SelfAttention.o.weight", l);
        ENTRY("n", 0, 1, D, 1, "encoder.block.%d.layer.0.layer_norm.weight", l);
        ENTRY("w", D, 2, F, D, "encoder.block.%d.layer.1.DenseReluDense.wi_0.weight", l);
        ENTRY("w", D, 2, F, D, "encoder.block.%d.layer.1.DenseReluDense.wi_1.weight", l);
        ENTRY("w", F, 2, D, F, "encoder.block.%d.layer.1.DenseReluDense.wo.weight", l);
        ENTRY("n", 0, 1, D, 1, "encoder.block.%d.layer.1.layer_norm.weight", l);
    }
    ENTRY("n", 0, 1, D, 1, "encoder.final_layer_norm.weight");
#undef ENTRY
    fill_ctx fc = {dt, 1234, kinds, fan};
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cvx_error err = {0};
    cvx_status st = cvx_safetensors_write(path, e, (size_t)n, NULL, fill, &fc, &err);
    if (st) fprintf(stderr, "bench_t5: %s\n", err.message);
    free(e), free(kinds), free(fan), free(names);
    return st ? -1 : 0;
}

int main(int argc, char **argv) {
    const char *model = NULL, *keep = NULL;
    int layers = 0, threads = 0, repeat = 1;
    int64_t B = 2, L = 226;
    cvx_dtype dt = CVX_DTYPE_F16;
    cvx_precision precision = CVX_PRECISION_FP32;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = v, i++;
        else if (!strcmp(a, "--synthetic-layers") && v) layers = atoi(v), i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--batch") && v) B = atoll(v), i++;
        else if (!strcmp(a, "--len") && v) L = atoll(v), i++;
        else if (!strcmp(a, "--repeat") && v) repeat = atoi(v), i++;
        else if (!strcmp(a, "--keep") && v) keep = v, i++;
        else if (!strcmp(a, "--precision") && v && cvx_precision_from_name(v) >= 0)
            precision = (cvx_precision)cvx_precision_from_name(v), i++;
        else if (!strcmp(a, "--dtype") && v) {
            dt = !strcmp(v, "bf16") ? CVX_DTYPE_BF16 : !strcmp(v, "f32") ? CVX_DTYPE_F32 : CVX_DTYPE_F16;
            i++;
        } else {
            fprintf(stderr, "usage: bench_t5 (--model DIR | --synthetic-layers N [--dtype f16|bf16|f32] [--keep DIR])\n"
                            "                [--threads N] [--batch B] [--len L] [--repeat R] [--precision fp32|bf16]\n");
            return 2;
        }
    }
    if ((!model && layers <= 0) || B < 1 || L < 1 || repeat < 1) {
        fprintf(stderr, "bench_t5: need --model DIR or --synthetic-layers N (see the file header)\n");
        return 2;
    }
    char dir[4096], tmp[4096] = "";
    if (model) {
        snprintf(dir, sizeof dir, "%s/text_encoder", model);
        struct stat sb;
        if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) snprintf(dir, sizeof dir, "%s", model);
    } else {
        if (keep) {
            snprintf(dir, sizeof dir, "%s", keep);
            struct stat kb;
            if (mkdir(dir, 0755) && (stat(dir, &kb) || !S_ISDIR(kb.st_mode))) {
                perror(dir);
                return 1;
            }
        } else {
            const char *base = getenv("TMPDIR");
            snprintf(tmp, sizeof tmp, "%s/bench-t5-XXXXXX", base && *base ? base : "/tmp");
            if (!mkdtemp(tmp)) return 1;
            snprintf(dir, sizeof dir, "%s", tmp);
        }
        double tw = cvx_time_seconds();
        struct stat sb;
        char cfg[4200];
        snprintf(cfg, sizeof cfg, "%s/config.json", dir);
        if (!keep || stat(cfg, &sb)) {
            if (write_synthetic(dir, layers, dt)) return 1;
            printf("wrote a %d-layer T5-XXL-shaped %s folder in %.1f s\n", layers, cvx_dtype_name(dt),
                   cvx_time_seconds() - tw);
        }
    }

    cvx_error err = {0};
    cvx_t5 *m = NULL;
    double t0 = cvx_time_seconds();
    if (cvx_t5_open(&m, dir, &err)) {
        fprintf(stderr, "bench_t5: %s\n", err.message);
        return 1;
    }
    double t_open = cvx_time_seconds() - t0;
    const cvx_t5_config *c = cvx_t5_get_config(m);
    if (cvx_t5_set_precision(m, precision)) {
        fprintf(stderr, "bench_t5: %s\n", cvx_t5_last_error(m));
        cvx_t5_close(m);
        return 1;
    }
    cvx_pool *pool = cvx_pool_new(threads);
    int64_t *ids = malloc((size_t)(B * L) * sizeof *ids);
    float *out = malloc((size_t)(B * L * c->d_model) * sizeof(float));
    uint64_t s = 42;
    for (int64_t i = 0; i < B * L; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        ids[i] = (int64_t)(s % (uint64_t)c->vocab_size);
    }
    int64_t shape[2] = {B, L};
    cvx_tensor tids = cvx_tensor_view(CVX_DTYPE_I64, ids, 2, shape);
    /* GEMM flops: per token and layer 2·D·(3I + I) + 2·D·F·3; attention 2·2·L·I per token. */
    const double I = (double)(c->num_heads * c->d_kv), D = (double)c->d_model, F = (double)c->d_ff;
    double flops = (double)(B * L) * (double)c->num_layers * (2 * D * 4 * I + 2 * D * F * 3 + 4.0 * (double)L * I);
    printf("T5 %lld layers, d_model %lld, %lld heads x %lld, d_ff %lld; weights %.2f GB; ids [%lld, %lld]; "
           "%d threads, kernels %s, %s (bf16 path %s)\n",
           (long long)c->num_layers, (long long)c->d_model, (long long)c->num_heads, (long long)c->d_kv,
           (long long)c->d_ff, (double)cvx_t5_weight_bytes(m) / 1e9, (long long)B, (long long)L, cvx_pool_size(pool),
           cvx_isa_name(cvx_isa_active()), cvx_precision_name(precision), cvx_bf16_kernels_name(cvx_bf16_kernels_active()));
    printf("open: %.3f s\n", t_open);
    int rc = 0;
    for (int r = 0; r < repeat; r++) {
        double t1 = cvx_time_seconds();
        if (cvx_t5_encode(m, pool, &tids, out)) {
            fprintf(stderr, "bench_t5: %s\n", cvx_t5_last_error(m));
            rc = 1;
            break;
        }
        double dt_enc = cvx_time_seconds() - t1;
        printf("encode %d: %.2f s (%.2f s per layer, %.1f GFLOP/s)\n", r + 1, dt_enc,
               dt_enc / (double)c->num_layers, flops / dt_enc / 1e9);
    }
    printf("peak RSS: %.2f GB\n", peak_rss_gb());
    free(ids), free(out);
    cvx_pool_free(pool);
    cvx_t5_close(m);
    if (tmp[0]) {
        char path[4200];
        snprintf(path, sizeof path, "%s/config.json", tmp), unlink(path);
        snprintf(path, sizeof path, "%s/model.safetensors", tmp), unlink(path);
        rmdir(tmp);
    }
    return rc;
}
