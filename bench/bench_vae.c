/* bench_vae: decodes a latent with the full-size CogVideoX-2b VAE (random weights) and prints the time and the
 * peak RSS.
 *
 *   bench_vae [--vae DIR] [--frames T] [--height H] [--width W] [--threads N] [--spill DIR] [--no-spill]
 *             [--tiled] [--precision fp32|bf16|both] [--write DIR]
 *
 * --vae DIR: a vae folder (e.g. `cogvideox make-model --preset cogvideox-2b -o M` then M/vae). Without it the
 * bench writes the VAE alone (the cogvideox-2b preset's config, F16 weights ~ N(0, 1/fan_in), norm scales
 * 1 + 0.1·N, biases and shifts 0.02·N; 431 MB) to a temporary folder and removes it afterwards.
 * Defaults: the real latent 13 × 60 × 90 (49 frames of 480 × 720), all cores, the library's defaults (conv
 * caches spilled to $TMPDIR past 2 GiB). --spill DIR always spills them there, --no-spill keeps them in memory;
 * --tiled uses the reference's tiled decode with its default tiles. Peak RSS is getrusage's ru_maxrss (the whole process: weights that were touched, activations,
 * caches, the output). --write DIR only writes the random VAE folder (config.json + weights) to DIR.
 * --precision (default fp32, the reference path): bf16 runs the conv products in bf16 (cvx_vae_set_precision);
 * both decodes the same latent in fp32 then bf16 and prints both times and the deviation of the bf16 sample from
 * the fp32 one (max|d| / rms(fp32) — the measure of docs/bf16-tolerances.md — and rms(d) / rms(fp32)). */
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "core/half.h"
#include "core/log.h"
#include "diffusion/engine.h"
#include "io/config.h"
#include "io/model.h"
#include "io/model_maker.h"
#include "io/safetensors.h"
#include "vae/vae.h"

static uint64_t splitmix(uint64_t *s) {
    uint64_t z = (*s += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Uniform with the given standard deviation (enough for a timing run). */
static float draw(uint64_t *s, float sd) {
    double u = (double)(splitmix(s) >> 11) * 0x1p-53;
    return (float)((2.0 * u - 1.0) * sqrt(3.0) * sd);
}

typedef struct {
    const cvx_tensor_list *l;
} fill_ctx;

static cvx_status fill(void *user, size_t i, void *dst, size_t nbytes, cvx_error *err) {
    const cvx_expected_tensor *t = &((fill_ctx *)user)->l->t[i];
    uint64_t s = 0x5EED0000ull + i;
    uint16_t *d = dst;
    for (size_t k = 0; k < nbytes / 2; k++) {
        float v;
        switch (t->kind) {
        case CVX_PARAM_WEIGHT: v = draw(&s, 1.0f / sqrtf((float)(t->fan_in > 0 ? t->fan_in : 1))); break;
        case CVX_PARAM_NORM_WEIGHT: v = 1.0f + draw(&s, 0.1f); break;
        default: v = draw(&s, 0.02f); break;
        }
        d[k] = cvx_f32_to_f16(v);
    }
    return CVX_OK;
}

static cvx_status write_vae(const char *dir, cvx_error *err) {
    json_t *cj = NULL;
    cvx_config *cfg = NULL;
    cvx_tensor_list l = {0};
    cvx_st_entry *e = NULL;
    char path[4096];
    cvx_status st = cvx_make_model_config("cogvideox-2b", "vae", &cj, err);
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (!st) st = cvx_json_write_python(path, cj, err);
    if (!st) st = cvx_config_from_json(&cfg, cj, path, err);
    if (!st) st = cvx_model_expected_tensors(CVX_CLASS_VAE, cfg, &l, err);
    if (!st && !(e = calloc(l.n, sizeof *e))) st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t i = 0; !st && i < l.n; i++) {
        e[i].name = l.t[i].name;
        e[i].dtype = CVX_DTYPE_F16;
        e[i].ndim = l.t[i].ndim;
        memcpy(e[i].shape, l.t[i].shape, sizeof e[i].shape);
    }
    fill_ctx fc = {&l};
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    if (!st) st = cvx_safetensors_write(path, e, l.n, NULL, fill, &fc, err);
    free(e);
    cvx_tensor_list_free(&l);
    cvx_config_free(cfg);
    json_decref(cj);
    return st;
}

static double peak_rss_gb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0 / 1e9;
}

static int on_progress(void *user, int done, int total) {
    double *t0 = user;
    fprintf(stderr, "  frame batch %d/%d  %.1fs  peak RSS %.2f GB\n", done, total, cvx_time_seconds() - *t0,
            peak_rss_gb());
    return 0;
}

int main(int argc, char **argv) {
    const char *vae_dir = NULL, *spill = NULL, *write_dir = NULL;
    int64_t T = 13, H = 60, W = 90;
    int threads = 0, tiled = 0, no_spill = 0, prec_fp32 = 1, prec_bf16 = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--vae") && v) vae_dir = argv[++i];
        else if (!strcmp(a, "--frames") && v) T = atoll(argv[++i]);
        else if (!strcmp(a, "--height") && v) H = atoll(argv[++i]);
        else if (!strcmp(a, "--width") && v) W = atoll(argv[++i]);
        else if (!strcmp(a, "--threads") && v) threads = atoi(argv[++i]);
        else if (!strcmp(a, "--spill") && v) spill = argv[++i];
        else if (!strcmp(a, "--tiled")) tiled = 1;
        else if (!strcmp(a, "--no-spill")) no_spill = 1;
        else if (!strcmp(a, "--write") && v) write_dir = argv[++i];
        else if (!strcmp(a, "--precision") && v && (!strcmp(v, "fp32") || !strcmp(v, "bf16") || !strcmp(v, "both"))) {
            prec_fp32 = strcmp(v, "bf16") != 0;
            prec_bf16 = strcmp(v, "fp32") != 0;
            i++;
        } else {
            fprintf(stderr,
                    "usage: bench_vae [--vae DIR] [--frames T] [--height H] [--width W] [--threads N] [--spill DIR] "
                    "[--tiled] [--no-spill] [--precision fp32|bf16|both] [--write DIR]\n");
            return 2;
        }
    }
    cvx_error err = {0};
    if (write_dir) { /* only write the random VAE folder (it must exist) */
        if (write_vae(write_dir, &err)) {
            fprintf(stderr, "bench_vae: writing the VAE: %s\n", cvx_error_message(&err));
            return 1;
        }
        return 0;
    }
    char tmp[] = "/tmp/bench-vae-XXXXXX";
    int made = 0;
    if (!vae_dir) {
        if (!mkdtemp(tmp)) {
            perror("mkdtemp");
            return 1;
        }
        double t0 = cvx_time_seconds();
        if (write_vae(tmp, &err)) {
            fprintf(stderr, "bench_vae: writing the VAE: %s\n", cvx_error_message(&err));
            return 1;
        }
        fprintf(stderr, "wrote a random cogvideox-2b VAE to %s in %.1fs\n", tmp, cvx_time_seconds() - t0);
        vae_dir = tmp;
        made = 1;
    }
    cvx_vae *vae = NULL;
    cvx_pool *pool = cvx_pool_new(threads);
    int rc = 1;
    if (cvx_vae_open(&vae, vae_dir, CVX_VAE_DECODER, &err)) {
        fprintf(stderr, "bench_vae: %s\n", cvx_error_message(&err));
        goto out;
    }
    cvx_vae_params p = cvx_vae_params_default(vae);
    p.spill_dir = spill;
    if (no_spill) p.cache_memory_limit = -1;
    p.tiling = tiled;
    double t0 = cvx_time_seconds();
    p.progress = on_progress;
    p.progress_user_data = &t0;
    const int64_t L = cvx_vae_get_config(vae)->latent_channels;
    int64_t zs[5] = {1, L, T, H, W}, os[5];
    if (cvx_vae_decode_shape(vae, &p, zs, os)) {
        fprintf(stderr, "bench_vae: %s\n", cvx_vae_last_error(vae));
        goto out;
    }
    const int64_t zn = L * T * H * W, on = os[1] * os[2] * os[3] * os[4];
    float *z = malloc((size_t)zn * sizeof(float)), *o = malloc((size_t)on * sizeof(float));
    float *o2 = prec_fp32 && prec_bf16 ? malloc((size_t)on * sizeof(float)) : NULL;
    if (!z || !o || (prec_fp32 && prec_bf16 && !o2)) {
        fprintf(stderr, "bench_vae: out of memory\n");
        free(z);
        free(o);
        free(o2);
        goto out;
    }
    uint64_t s = 42;
    for (int64_t i = 0; i < zn; i++) z[i] = draw(&s, 1.0f);
    printf("decode %lld x %lld x %lld latent -> %lld frames of %lld x %lld, %d threads, caches %s%s\n",
           (long long)T, (long long)H, (long long)W, (long long)os[2], (long long)os[3], (long long)os[4],
           cvx_pool_size(pool), spill ? "spilled to " : no_spill ? "in memory" : "spilled past 2 GiB",
           spill ? spill : "");
    fflush(stdout);
    double secs[2] = {0, 0};
    rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        if (!(k ? prec_bf16 : prec_fp32)) continue;
        float *dst = k && o2 ? o2 : o;
        cvx_vae_set_precision(vae, k ? CVX_PRECISION_BF16 : CVX_PRECISION_FP32);
        t0 = cvx_time_seconds();
        if (cvx_vae_decode(vae, pool, &p, z, zs, dst)) {
            fprintf(stderr, "bench_vae: %s\n", cvx_vae_last_error(vae));
            rc = 1;
            break;
        }
        secs[k] = cvx_time_seconds() - t0;
        double sum = 0;
        for (int64_t i = 0; i < on; i++) sum += fabs(dst[i]);
        /* FNV-1a of the output's bytes: builds compared bit for bit */
        uint64_t hash = cvx__fnv1a(0xcbf29ce484222325ull, dst, (size_t)on * sizeof(float));
        printf("%s seconds %.1f  peak_rss_gb %.2f  (%s decode, mean |sample| %.4f, hash %016llx)\n", k ? "bf16" : "fp32",
               secs[k], peak_rss_gb(), tiled ? "tiled" : "batched", sum / (double)on, (unsigned long long)hash);
        fflush(stdout);
    }
    if (!rc && o2) {
        double sq = 0, dsq = 0, mx = 0;
        for (int64_t i = 0; i < on; i++) {
            double d = fabs((double)o2[i] - o[i]);
            sq += (double)o[i] * o[i];
            dsq += d * d;
            if (!(d <= mx)) mx = d;
        }
        double rms = sqrt(sq / (double)on);
        printf("bf16 vs fp32: speedup %.2fx  max|d|/rms %.4f  rms(d)/rms %.5f\n", secs[1] > 0 ? secs[0] / secs[1] : 0,
               rms > 0 ? mx / rms : mx, rms > 0 ? sqrt(dsq / (double)on) / rms : 0);
    }
    free(z);
    free(o);
    free(o2);
out:
    cvx_vae_close(vae);
    cvx_pool_free(pool);
    if (made) {
        char path[4200];
        snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", tmp);
        unlink(path);
        snprintf(path, sizeof path, "%s/config.json", tmp);
        unlink(path);
        rmdir(tmp);
    }
    return rc;
}
