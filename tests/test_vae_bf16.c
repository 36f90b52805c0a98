/* The VAE's bf16 precision (cvx_vae_set_precision) on inputs that were NOT used to derive its bound: the golden
 * VAE models of tests/data/golden/vae fed fresh random latents / videos of other sizes, bf16 against our own fp32
 * path (which matches the reference within the cases' fp32 tolerances), held to the table's "vae" bound
 * (tests/data/bf16_tolerances.json, docs/bf16-tolerances.md). Also: switching back to fp32 gives the fp32 bytes
 * again, bf16 results do not depend on the thread count, tiled decoding runs in bf16, bad precisions are refused. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/threadpool.h"
#include "golden/golden.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "testlib.h"
#include "vae/vae.h"

#define DATA "tests/data/golden/vae/"

static json_t *g_table;

static uint64_t g_rng = 0xD1B54A32D192ED03ull;
static double uniform(void) {
    g_rng ^= g_rng >> 12, g_rng ^= g_rng << 25, g_rng ^= g_rng >> 27;
    return ((g_rng * 0x2545F4914F6CDD1Dull) >> 11) * (1.0 / 9007199254740992.0);
}
static float normal(void) {
    double u = uniform(), v = uniform();
    return (float)(sqrt(-2.0 * log(u > 1e-300 ? u : 1e-300)) * cos(6.283185307179586 * v));
}

/* max |a − ref| / rms(ref): the deviation measure of the bound. */
static double deviation(const float *a, const float *ref, int64_t n) {
    double sq = 0, mx = 0;
    for (int64_t i = 0; i < n; i++) {
        sq += (double)ref[i] * ref[i];
        double d = fabs((double)a[i] - ref[i]);
        if (!(d <= mx)) mx = d; /* NaN propagates */
    }
    double rms = sqrt(sq / (double)(n > 0 ? n : 1));
    return rms > 0 ? mx / rms : mx;
}

static int64_t numel5(const int64_t s[5]) { return s[0] * s[1] * s[2] * s[3] * s[4]; }

typedef struct {
    cvx_weights *w;
    cvx_config *cfgj;
    cvx_vae_config cfg;
} model;

static int load(model *m, const char *name) {
    char path[512];
    cvx_error err = {0};
    memset(m, 0, sizeof *m);
    snprintf(path, sizeof path, DATA "%s/config.json", name);
    if (cvx_config_load(&m->cfgj, path, &err) || cvx_vae_config_read(m->cfgj, &m->cfg, &err)) {
        fprintf(stderr, "%s: %s\n", name, err.message);
        return -1;
    }
    snprintf(path, sizeof path, DATA "%s/weights.safetensors", name);
    if (cvx_weights_open(&m->w, path, &err)) {
        fprintf(stderr, "%s: %s\n", name, err.message);
        return -1;
    }
    return 0;
}

static void unload(model *m) {
    cvx_weights_close(m->w);
    cvx_config_free(m->cfgj);
}

static float *decode(cvx_vae *vae, cvx_pool *pool, const cvx_vae_params *p, const float *z, const int64_t zs[5],
                     int64_t os[5]) {
    if (cvx_vae_decode_shape(vae, p, zs, os)) return NULL;
    float *o = malloc((size_t)numel5(os) * sizeof(float));
    if (o && cvx_vae_decode(vae, pool, p, z, zs, o)) {
        fprintf(stderr, "decode: %s\n", cvx_vae_last_error(vae));
        free(o);
        return NULL;
    }
    return o;
}

static void check_bound(const char *what, const char *tensor, const float *bf, const float *ref, int64_t n) {
    double d = deviation(bf, ref, n);
    double b = cvx_golden_bf16_atol_rms(g_table, "vae", tensor);
    printf("vae %-34s %-8s bf16 vs fp32 max|d|/rms %.4f (bound %.3g)\n", what, tensor, d, b);
    CHECK_MSG(b > 0 && d <= b, "%s: %.4g > %.3g", what, d, b);
    CHECK_MSG(d > 0, "%s: bf16 gave the fp32 bytes (did the bf16 path run?)", what);
}

/* Decoders: fresh latents at a size no case uses, fp32 / bf16 / fp32 again, 1 and 2 threads, and tiled. */
static void decode_case(const char *name, cvx_pool *pool1, cvx_pool *pool2) {
    model m;
    if (load(&m, name)) {
        CHECK_MSG(0, "cannot load %s", name);
        return;
    }
    cvx_error err = {0};
    cvx_vae *vae = NULL;
    CHECK_MSG(cvx_vae_open_with(&vae, &m.cfg, m.w, CVX_VAE_DECODER, &err) == CVX_OK, "%s", err.message);
    if (!vae) {
        unload(&m);
        return;
    }
    const int64_t zs[5] = {1, m.cfg.latent_channels, 3, 5, 7};
    float *z = malloc((size_t)numel5(zs) * sizeof(float));
    for (int64_t i = 0; z && i < numel5(zs); i++) z[i] = normal();
    cvx_vae_params p = cvx_vae_params_default(vae);
    int64_t os[5];
    CHECK(cvx_vae_get_precision(vae) == CVX_PRECISION_FP32);
    float *f32 = decode(vae, pool2, &p, z, zs, os);
    CHECK(cvx_vae_set_precision(vae, CVX_PRECISION_BF16) == CVX_OK && cvx_vae_get_precision(vae) == CVX_PRECISION_BF16);
    float *b2 = decode(vae, pool2, &p, z, zs, os);
    float *b1 = decode(vae, pool1, &p, z, zs, os);
    CHECK(cvx_vae_set_precision(vae, CVX_PRECISION_FP32) == CVX_OK);
    float *f32b = decode(vae, pool2, &p, z, zs, os);
    CHECK(f32 && b2 && b1 && f32b);
    if (f32 && b2 && b1 && f32b) {
        const size_t bytes = (size_t)numel5(os) * sizeof(float);
        char what[128];
        snprintf(what, sizeof what, "%s decode 3x5x7", name);
        check_bound(what, "sample", b2, f32, numel5(os));
        CHECK_MSG(!memcmp(b1, b2, bytes), "%s: bf16 decode depends on the thread count", name);
        CHECK_MSG(!memcmp(f32, f32b, bytes), "%s: fp32 after bf16 is not the fp32 result", name);
    }
    free(b1);
    free(b2);
    free(f32b);
    /* Tiled decoding (tiles smaller than the latent): bf16 against fp32 under the same tiling. */
    free(f32);
    f32 = b2 = NULL;
    p.tiling = 1;
    p.tile_sample_min_height = 16;
    p.tile_sample_min_width = 24;
    f32 = decode(vae, pool2, &p, z, zs, os);
    CHECK(cvx_vae_set_precision(vae, CVX_PRECISION_BF16) == CVX_OK);
    b2 = decode(vae, pool2, &p, z, zs, os);
    CHECK(f32 && b2);
    if (f32 && b2) {
        char what[128];
        snprintf(what, sizeof what, "%s tiled decode 3x5x7", name);
        check_bound(what, "sample", b2, f32, numel5(os));
    }
    /* bad precisions are refused and leave the setting alone */
    CHECK(cvx_vae_set_precision(vae, (cvx_precision)7) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(cvx_vae_last_error(vae), "precision") != NULL);
    CHECK(cvx_vae_get_precision(vae) == CVX_PRECISION_BF16);
    CHECK(cvx_vae_set_precision(NULL, CVX_PRECISION_BF16) == CVX_ERR_INVALID_ARGUMENT);
    free(f32);
    free(b2);
    free(z);
    cvx_vae_close(vae);
    unload(&m);
}

/* Encoders: a fresh video at a size no case uses. */
static void encode_case(const char *name, cvx_pool *pool) {
    model m;
    if (load(&m, name)) {
        CHECK_MSG(0, "cannot load %s", name);
        return;
    }
    cvx_error err = {0};
    cvx_vae *vae = NULL;
    CHECK_MSG(cvx_vae_open_with(&vae, &m.cfg, m.w, CVX_VAE_ENCODER, &err) == CVX_OK, "%s", err.message);
    if (!vae) {
        unload(&m);
        return;
    }
    const int64_t S = (int64_t)1 << (m.cfg.n_blocks - 1);
    const int64_t xs[5] = {1, m.cfg.in_channels, 9, 3 * S, 5 * S};
    float *x = malloc((size_t)numel5(xs) * sizeof(float));
    for (int64_t i = 0; x && i < numel5(xs); i++) x[i] = (float)(2.0 * uniform() - 1.0);
    cvx_vae_params p = cvx_vae_params_default(vae);
    int64_t hs[5] = {0};
    CHECK(cvx_vae_encode_shape(vae, &p, xs, hs) == CVX_OK);
    float *h[2] = {malloc((size_t)numel5(hs) * sizeof(float)), malloc((size_t)numel5(hs) * sizeof(float))};
    for (int k = 0; k < 2; k++) {
        CHECK(cvx_vae_set_precision(vae, k ? CVX_PRECISION_BF16 : CVX_PRECISION_FP32) == CVX_OK);
        CHECK_MSG(h[k] && cvx_vae_encode(vae, pool, &p, x, xs, h[k]) == CVX_OK, "%s", cvx_vae_last_error(vae));
    }
    if (h[0] && h[1]) {
        char what[128];
        snprintf(what, sizeof what, "%s encode 9x%lldx%lld", name, (long long)xs[3], (long long)xs[4]);
        check_bound(what, "h", h[1], h[0], numel5(hs));
    }
    free(h[0]);
    free(h[1]);
    free(x);
    cvx_vae_close(vae);
    unload(&m);
}

int main(void) {
    cvx_error err = {0};
    g_table = cvx_golden_bf16_table(NULL, &err);
    CHECK_MSG(g_table && cvx_golden_bf16_component(g_table, "vae"), "%s", err.message);
    cvx_pool *pool1 = cvx_pool_new(1), *pool2 = cvx_pool_new(2);
    CHECK(pool1 && pool2);
    if (g_table && pool1 && pool2) {
        /* f32 weights (the tiled case's model) and f16 weights */
        decode_case("decode_tiled_t5", pool1, pool2);
        decode_case("decode_fp16w_t3", pool1, pool2);
        encode_case("encode_t9", pool2);
    }
    cvx_pool_free(pool1);
    cvx_pool_free(pool2);
    json_decref(g_table);
    return cvx_test_finish("test_vae_bf16");
}
