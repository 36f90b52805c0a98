/* CogVideoXTransformer3DModel step timing: one forward with the CFG batch of 2 at 60 × 90 latents (480 × 720 px)
 * and 226 text tokens, for each requested latent frame count (default 1 and 4).
 *
 *   bench_transformer --model DIR [--frames 1,4] [--threads N] [--repeat R]
 *       DIR: a transformer folder or a pipeline folder holding transformer/ (make-model --preset cogvideox-2b).
 *   bench_transformer --synthetic [--layers N] [--dtype f16|bf16|f32] [--keep DIR] [...]
 *       Writes the real CogVideoX-2b transformer config with random weights (Linear weights ~ U·√3/√fan_in,
 *       norms ≈ 1) to a temporary folder first (3.4 GB in f16 for all 30 layers; --layers N writes fewer and the
 *       per-layer time is printed; --keep DIR reuses/keeps the folder).
 *
 * Prints seconds per forward, achieved GFLOP/s (cvx_dit_flops: multiply-add = 2, attention included) and the
 * peak RSS (which counts the mapped weight pages the forward touched). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/half.h"
#include "core/log.h"
#include "core/threadpool.h"
#include "diffusion/transformer.h"
#include "io/config.h"
#include "io/model.h"
#include "io/model_maker.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

/* CPU seconds of the whole process (all threads): on a shared machine GFLOP per CPU-second says more about
 * the code than wall time does. */
static double cpu_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

static double peak_rss_gb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0 / 1e9; /* KiB on Linux */
}

typedef struct {
    const cvx_tensor_list *l;
    cvx_dtype dt;
} fill_ctx;

static cvx_status fill(void *user, size_t index, void *dst, size_t nbytes, cvx_error *err) {
    const fill_ctx *c = user;
    const cvx_expected_tensor *t = &c->l->t[index];
    uint64_t s = 0x9E3779B97F4A7C15ull * (index + 1) + 12345;
    size_t n = nbytes / cvx_dtype_size(c->dt);
    double scale = t->kind == CVX_PARAM_WEIGHT && t->fan_in > 0 ? 1.7320508 / sqrt((double)t->fan_in) : 0.02;
    for (size_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0; /* U(-1, 1) */
        float v = t->kind == CVX_PARAM_NORM_WEIGHT ? (float)(1.0 + 0.1 * u) : (float)(u * scale);
        if (c->dt == CVX_DTYPE_F16) ((uint16_t *)dst)[i] = cvx_f32_to_f16(v);
        else if (c->dt == CVX_DTYPE_BF16) ((uint16_t *)dst)[i] = cvx_f32_to_bf16(v);
        else ((float *)dst)[i] = v;
    }
    return CVX_OK;
}

/* The preset's transformer config (optionally fewer layers) and random weights in `dir`. */
static int write_synthetic(const char *dir, int layers, cvx_dtype dt) {
    cvx_error err = {0};
    json_t *cj = NULL;
    if (cvx_make_model_config("cogvideox-2b", "transformer", &cj, &err)) {
        fprintf(stderr, "bench_transformer: %s\n", err.message);
        return -1;
    }
    if (layers > 0) json_object_set_new(cj, "num_layers", json_integer(layers));
    char path[4200];
    snprintf(path, sizeof path, "%s/config.json", dir);
    cvx_config *cfg = NULL;
    cvx_tensor_list l = {0};
    int rc = -1;
    if (cvx_json_write_python(path, cj, &err) || cvx_config_from_json(&cfg, cj, path, &err) ||
        cvx_model_expected_tensors(CVX_CLASS_TRANSFORMER_3D, cfg, &l, &err)) {
        fprintf(stderr, "bench_transformer: %s\n", err.message);
        goto done;
    }
    cvx_st_entry *e = calloc(l.n, sizeof *e);
    if (!e) goto done;
    for (size_t i = 0; i < l.n; i++) {
        e[i].name = l.t[i].name;
        e[i].dtype = dt;
        e[i].ndim = l.t[i].ndim;
        memcpy(e[i].shape, l.t[i].shape, sizeof e[i].shape);
    }
    fill_ctx fc = {&l, dt};
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (cvx_safetensors_write(path, e, l.n, NULL, fill, &fc, &err))
        fprintf(stderr, "bench_transformer: %s\n", err.message);
    else
        rc = 0;
    free(e);
done:
    cvx_tensor_list_free(&l);
    cvx_config_free(cfg);
    json_decref(cj);
    return rc;
}

int main(int argc, char **argv) {
    const char *model = NULL, *keep = NULL, *frames_arg = "1,4";
    int synthetic = 0, layers = 0, threads = 0, repeat = 1;
    cvx_dtype dt = CVX_DTYPE_F16;
    setvbuf(stdout, NULL, _IOLBF, 0); /* figures appear as they are measured, also into a file */
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--model") && v) model = v, i++;
        else if (!strcmp(a, "--synthetic")) synthetic = 1;
        else if (!strcmp(a, "--layers") && v) layers = atoi(v), i++;
        else if (!strcmp(a, "--frames") && v) frames_arg = v, i++;
        else if (!strcmp(a, "--threads") && v) threads = atoi(v), i++;
        else if (!strcmp(a, "--repeat") && v) repeat = atoi(v), i++;
        else if (!strcmp(a, "--keep") && v) keep = v, i++;
        else if (!strcmp(a, "--dtype") && v) {
            dt = !strcmp(v, "bf16") ? CVX_DTYPE_BF16 : !strcmp(v, "f32") ? CVX_DTYPE_F32 : CVX_DTYPE_F16;
            i++;
        } else {
            fprintf(stderr, "usage: bench_transformer (--model DIR | --synthetic [--layers N] [--dtype f16|bf16|f32] "
                            "[--keep DIR]) [--frames 1,4] [--threads N] [--repeat R]\n");
            return 2;
        }
    }
    if ((!model && !synthetic) || repeat < 1 || layers < 0) {
        fprintf(stderr, "bench_transformer: need --model DIR or --synthetic (see the file header)\n");
        return 2;
    }
    char dir[4096], tmp[4096] = "";
    struct stat sb;
    if (model) {
        snprintf(dir, sizeof dir, "%s/transformer", model);
        if (stat(dir, &sb) || !S_ISDIR(sb.st_mode)) snprintf(dir, sizeof dir, "%s", model);
    } else {
        if (keep) {
            snprintf(dir, sizeof dir, "%s", keep);
            mkdir(dir, 0755);
        } else {
            const char *base = getenv("TMPDIR");
            snprintf(tmp, sizeof tmp, "%s/bench-transformer-XXXXXX", base && *base ? base : "/tmp");
            if (!mkdtemp(tmp)) return 1;
            snprintf(dir, sizeof dir, "%s", tmp);
        }
        char cfg[4200];
        snprintf(cfg, sizeof cfg, "%s/diffusion_pytorch_model.safetensors", dir);
        if (!keep || stat(cfg, &sb)) {
            double tw = cvx_time_seconds();
            if (write_synthetic(dir, layers, dt)) return 1;
            printf("wrote a CogVideoX-2b-shaped %s transformer folder (%d layers) in %.1f s: %s\n", cvx_dtype_name(dt),
                   layers ? layers : 30, cvx_time_seconds() - tw, dir);
        }
    }

    cvx_error err = {0};
    cvx_dit *m = NULL;
    double t0 = cvx_time_seconds();
    if (cvx_dit_open_dir(&m, dir, &err)) {
        fprintf(stderr, "bench_transformer: %s\n", err.message);
        return 1;
    }
    double t_open = cvx_time_seconds() - t0;
    const cvx_dit_config *c = cvx_dit_get_config(m);
    cvx_pool *pool = cvx_pool_new(threads);
    printf("CogVideoXTransformer3DModel: %d layers, %d heads x %d, %s positions; %d threads, kernels %s; open %.2f s\n",
           c->num_layers, c->num_attention_heads, c->attention_head_dim,
           c->use_rotary_positional_embeddings ? "rope" : "sincos", cvx_pool_size(pool), cvx_isa_name(cvx_isa_active()),
           t_open);

    const int64_t B = 2, H = c->sample_height, W = c->sample_width, L = c->max_text_seq_length;
    int rc = 0;
    for (const char *fp = frames_arg; *fp && !rc;) {
        int64_t F = strtoll(fp, (char **)&fp, 10);
        if (*fp == ',') fp++;
        if (F < 1) break;
        int64_t nlat = B * F * c->in_channels * H * W, Dh = c->attention_head_dim;
        int64_t N = F * (H / c->patch_size) * (W / c->patch_size);
        float *lat = malloc(sizeof(float) * (size_t)nlat), *out = malloc(sizeof(float) * (size_t)(B * F * c->out_channels * H * W));
        float *text = malloc(sizeof(float) * (size_t)(B * L * c->text_embed_dim));
        float *rc_cos = NULL, *rc_sin = NULL;
        uint64_t s = 42;
        for (int64_t i = 0; i < nlat; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            lat[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
        }
        for (int64_t i = 0; i < B * L * c->text_embed_dim; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            text[i] = (float)((double)(s >> 11) / 9007199254740992.0 * 0.2 - 0.1);
        }
        if (c->use_rotary_positional_embeddings) {
            rc_cos = calloc((size_t)(N * Dh), sizeof(float));
            rc_sin = calloc((size_t)(N * Dh), sizeof(float));
            for (int64_t i = 0; i < N * Dh; i++) rc_cos[i] = 1.0f;
        }
        int64_t ts[2] = {999, 999};
        double flops = cvx_dit_flops(c, B, F, H, W, L);
        for (int r = 0; r < repeat; r++) {
            cvx_dit_call call = {B, F, H, W, L, lat, text, ts, rc_cos, rc_sin, out, pool, NULL, NULL, NULL, NULL};
            double t1 = cvx_time_seconds(), c1 = cpu_seconds();
            if (cvx_dit_forward(m, &call)) {
                fprintf(stderr, "bench_transformer: %s\n", cvx_error_message(cvx_dit_error(m)));
                rc = 1;
                break;
            }
            double sec = cvx_time_seconds() - t1, cpu = cpu_seconds() - c1;
            printf("frames %lld (%lld joint tokens x 2): %.2f s per step (%.3f s per layer), %.1f GFLOP/s "
                   "(%.2f TFLOP; %.1f GFLOP per CPU-second over %.1f CPU-s), peak RSS %.2f GB\n",
                   (long long)F, (long long)(L + N), sec, sec / (c->num_layers ? c->num_layers : 1), flops / sec / 1e9,
                   flops / 1e12, flops / cpu / 1e9, cpu, peak_rss_gb());
            const cvx_dit_timings *tm = cvx_dit_last_timings(m);
            printf("    q/k/v/out projections %.2f s, attention %.2f s, feed-forward %.2f s, rest %.2f s\n",
                   tm->projections, tm->attention, tm->feed_forward,
                   tm->total - tm->projections - tm->attention - tm->feed_forward);
        }
        free(lat), free(out), free(text), free(rc_cos), free(rc_sin);
    }
    cvx_dit_free(m);
    cvx_pool_free(pool);
    if (tmp[0]) {
        char path[4200];
        snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", tmp);
        remove(path);
        snprintf(path, sizeof path, "%s/config.json", tmp);
        remove(path);
        rmdir(tmp);
    }
    return rc;
}
