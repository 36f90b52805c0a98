/* The VAE (src/vae): parity with the reference on the copied golden cases through the public API, properties
 * the golden cases do not pin down (batch of 2 = per-sample decodes, thread-count and spill independence,
 * conv caches really carried across frame batches), the reference's shape rules and tiling arithmetic, and
 * the error paths (bad configs, missing or misshapen weights, shapes the reference refuses). The golden runner
 * checks every case in full (tests/CMakeLists.txt: golden_project, golden_shared). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "io/config.h"
#include "io/safetensors.h"
#include "testlib.h"
#include "vae/vae.h"

#define DATA "tests/data/golden/vae/"

typedef struct {
    cvx_safetensors *io;
    cvx_weights *w;
    cvx_config *cfgj;
    cvx_vae_config cfg;
    json_t *case_json;
} tcase;

static int load_case(tcase *t, const char *name, int with_model) {
    char path[512];
    cvx_error err = {0};
    memset(t, 0, sizeof *t);
    snprintf(path, sizeof path, DATA "%s/io.safetensors", name);
    if (cvx_safetensors_open(&t->io, path, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    snprintf(path, sizeof path, DATA "%s/case.json", name);
    t->case_json = json_load_file(path, 0, NULL);
    if (!with_model) return t->case_json ? 0 : -1;
    snprintf(path, sizeof path, DATA "%s/config.json", name);
    if (cvx_config_load(&t->cfgj, path, &err) || cvx_vae_config_read(t->cfgj, &t->cfg, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    snprintf(path, sizeof path, DATA "%s/weights.safetensors", name);
    if (cvx_weights_open(&t->w, path, &err)) {
        fprintf(stderr, "%s\n", err.message);
        return -1;
    }
    return 0;
}

static void free_case(tcase *t) {
    cvx_safetensors_close(t->io);
    cvx_weights_close(t->w);
    cvx_config_free(t->cfgj);
    json_decref(t->case_json);
}

/* An io tensor as f32 (caller frees) with its shape. */
static float *io_f32(const tcase *t, const char *name, int64_t shape[5]) {
    const cvx_st_tensor *s = cvx_safetensors_find(t->io, name);
    if (!s) return NULL;
    cvx_tensor v = cvx_st_view(s);
    for (int i = 0; i < 5; i++) shape[i] = i < s->ndim ? s->shape[i] : 1;
    float *d = malloc((size_t)cvx_tensor_numel(&v) * sizeof(float));
    if (d) cvx_tensor_to_f32(&v, d);
    return d;
}

static double tol_atol(const tcase *t, const char *name) {
    json_t *r = json_object_get(json_object_get(json_object_get(t->case_json, "check"), "compare"), name);
    return json_number_value(json_object_get(r, "atol"));
}

static double max_diff(const float *a, const float *b, int64_t n) {
    double m = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)a[i] - (double)b[i]);
        if (!(d <= m)) m = d;
    }
    return m;
}

static int64_t numel5(const int64_t s[5]) { return s[0] * s[1] * s[2] * s[3] * s[4]; }

/* Decodes z (shape zs) and returns a malloc'd sample. */
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

static void test_scaling_and_postprocess(void) {
    /* decode_latents multiplies by float32(1.0/1.15258426), a double division rounded once. */
    float lat[2] = {1.0f, -2.0f}, z[2];
    int64_t s[5] = {1, 1, 2, 1, 1};
    cvx_vae_latents_to_z(lat, s, 1.15258426, z);
    CHECK(z[0] == 0x1.bc381ap-1f);
    CHECK(z[1] == -2.0f * 0x1.bc381ap-1f);
    /* Post-processing: clamp, round half to even on v·255, truncation, [B, F, H, W, C] layout. */
    float x[6] = {-3.0f, 0.0f, 3.0f, 1.0f, -1.0f, NAN};
    int64_t ps[5] = {1, 3, 1, 1, 2};
    float np[6];
    uint8_t u8[6], tr[6];
    cvx_vae_postprocess(x, ps, np, u8, tr);
    /* element (c, w) lands at [w][c]: channel 0 = {-3, 0}, 1 = {3, 1}, 2 = {-1, NaN} */
    CHECK(np[0] == 0.0f && np[3] == 0.5f);
    CHECK(np[1] == 1.0f && np[4] == 1.0f);
    CHECK(u8[3] == 128 && tr[3] == 127); /* 127.5: half to even -> 128; truncation -> 127 */
    CHECK(u8[0] == 0 && u8[1] == 255 && u8[2] == 0);
    CHECK(np[5] != np[5] && u8[5] == 0 && tr[5] == 0); /* NaN stays NaN in float, 0 in uint8 */
}

static void test_decode_parity_and_properties(void) {
    tcase t;
    if (load_case(&t, "decode_fp16w_t3", 1)) {
        CHECK_MSG(0, "cannot load decode_fp16w_t3");
        return;
    }
    cvx_error err = {0};
    cvx_vae *vae = NULL;
    CHECK(cvx_vae_open_with(&vae, &t.cfg, t.w, CVX_VAE_DECODER, &err) == CVX_OK);
    if (!vae) {
        free_case(&t);
        return;
    }
    cvx_pool *pool = cvx_pool_new(2);
    cvx_vae_params p = cvx_vae_params_default(vae);
    int64_t zs[5], rs[5], os[5];
    float *z = io_f32(&t, "z", zs), *ref = io_f32(&t, "sample", rs);
    float *o = decode(vae, pool, &p, z, zs, os);
    CHECK(o != NULL);
    if (o) {
        CHECK(numel5(os) == numel5(rs) && os[2] == 4 * zs[2] - 3);
        double d = max_diff(o, ref, numel5(rs)), atol = tol_atol(&t, "sample");
        CHECK_MSG(atol > 0 && d <= atol, "decode_fp16w_t3 sample: max diff %g, atol %g", d, atol);
    }

    /* A 4-frame latent (two frame batches, so the conv caches matter) built from the case's 3 frames. */
    const int64_t L = zs[1], n = zs[3] * zs[4];
    int64_t z4s[5] = {1, L, 4, zs[3], zs[4]}, z2s[5] = {2, L, 4, zs[3], zs[4]}, o4s[5];
    float *z4 = malloc((size_t)numel5(z4s) * sizeof(float)), *z2 = malloc((size_t)numel5(z2s) * sizeof(float));
    for (int64_t c = 0; c < L; c++)
        for (int64_t f = 0; f < 4; f++)
            for (int64_t i = 0; i < n; i++) {
                float v = z[(c * 3 + f % 3) * n + i] * (f == 3 ? -0.7f : 1.0f);
                z4[(c * 4 + f) * n + i] = v;
                z2[(c * 4 + f) * n + i] = v;
                z2[numel5(z4s) + (c * 4 + f) * n + i] = 0.5f * v + 0.1f;
            }
    float *a = decode(vae, pool, &p, z4, z4s, o4s);
    CHECK(a != NULL && o4s[2] == 16);
    /* Threads and where the caches live change nothing. */
    float *b = decode(vae, NULL, &p, z4, z4s, o4s);
    char tmp[256];
    p.spill_dir = cvx_test_tmpdir(tmp, sizeof tmp);
    float *c = decode(vae, pool, &p, z4, z4s, o4s);
    p.spill_dir = NULL;
    if (a && b && c) {
        CHECK_MSG(max_diff(a, b, numel5(o4s)) == 0, "1 vs 2 threads differ by %g", max_diff(a, b, numel5(o4s)));
        CHECK_MSG(max_diff(a, c, numel5(o4s)) == 0, "spilled caches differ by %g", max_diff(a, c, numel5(o4s)));
    }
    /* The second batch really sees the first through the caches: decoding frames 2..3 alone differs. */
    {
        int64_t zhs[5] = {1, L, 2, zs[3], zs[4]}, ohs[5];
        float *zh = malloc((size_t)numel5(zhs) * sizeof(float));
        for (int64_t ch = 0; ch < L; ch++) memcpy(zh + ch * 2 * n, z4 + (ch * 4 + 2) * n, (size_t)(2 * n) * sizeof(float));
        float *h = decode(vae, pool, &p, zh, zhs, ohs);
        if (a && h) {
            const int64_t fr = ohs[3] * ohs[4];
            double d = 0;
            for (int64_t ch = 0; ch < 3; ch++) d = fmax(d, max_diff(h + ch * 8 * fr, a + (ch * 16 + 8) * fr, 8 * fr));
            CHECK_MSG(d > 1e-3, "the second frame batch ignores the conv caches (diff %g)", d);
        }
        free(zh);
        free(h);
    }
    /* B = 2 is two independent samples. */
    int64_t o2s[5];
    float *d2 = decode(vae, pool, &p, z2, z2s, o2s);
    float *s1 = decode(vae, pool, &p, z2 + numel5(z4s), z4s, o4s);
    if (a && d2 && s1) {
        CHECK(o2s[0] == 2 && numel5(o2s) == 2 * numel5(o4s));
        CHECK(max_diff(d2, a, numel5(o4s)) == 0);
        CHECK(max_diff(d2 + numel5(o4s), s1, numel5(o4s)) == 0);
    }
    free(d2);
    free(s1);
    cvx_test_rmtree(tmp);

    /* Shapes the reference refuses. */
    int64_t bad[5] = {1, L, 1, 4, 6};
    CHECK(cvx_vae_decode_shape(vae, &p, bad, os) == CVX_ERR_SHAPE);
    CHECK(strstr(cvx_vae_last_error(vae), "torch.cat") != NULL);
    int64_t badc[5] = {1, L + 1, 3, 4, 6};
    CHECK(cvx_vae_decode_shape(vae, &p, badc, os) == CVX_ERR_SHAPE);
    int64_t xs[5] = {1, 3, 9, 32, 48}, hs[5];
    CHECK(cvx_vae_encode_shape(vae, &p, xs, hs) == CVX_ERR_INVALID_ARGUMENT); /* decoder only */

    /* Tiling arithmetic in double: 3·(1 − 1/3) is 2 (in float32 it would be 1.9999999 -> stride 1). */
    p.tiling = 1;
    p.tile_sample_min_height = 24;
    p.tile_sample_min_width = 32;
    p.tile_overlap_factor_height = 1.0 / 3.0;
    p.tile_overlap_factor_width = 0.25;
    int64_t tz[5] = {1, L, 5, 5, 7};
    CHECK(cvx_vae_decode_shape(vae, &p, tz, os) == CVX_OK);
    CHECK(os[2] == 17 && os[3] == 40 && os[4] == 56);
    int64_t small[5] = {1, L, 5, 3, 4}; /* fits one tile: plain decode */
    CHECK(cvx_vae_decode_shape(vae, &p, small, os) == CVX_OK && os[3] == 24 && os[4] == 32);
    p.tile_overlap_factor_height = 1.0; /* a zero stride: range() raises in the reference */
    CHECK(cvx_vae_decode_shape(vae, &p, tz, os) == CVX_ERR_INVALID_ARGUMENT);

    free(z);
    free(ref);
    free(o);
    free(z4);
    free(z2);
    free(a);
    free(b);
    free(c);
    cvx_pool_free(pool);
    cvx_vae_close(vae);
    free_case(&t);
}

static void test_encode(void) {
    tcase t;
    if (load_case(&t, "encode_t17", 1)) {
        CHECK_MSG(0, "cannot load encode_t17");
        return;
    }
    cvx_error err = {0};
    cvx_vae *vae = NULL;
    CHECK(cvx_vae_open_with(&vae, &t.cfg, t.w, CVX_VAE_ENCODER, &err) == CVX_OK);
    if (vae) {
        cvx_vae_params p = cvx_vae_params_default(vae);
        int64_t xs[5], hs[5], rs[5];
        float *x = io_f32(&t, "x", xs), *ref = io_f32(&t, "mean", rs);
        CHECK(cvx_vae_encode_shape(vae, &p, xs, hs) == CVX_OK);
        CHECK(hs[1] == 32 && hs[2] == 5 && hs[3] == rs[3] && hs[4] == rs[4]);
        float *h = malloc((size_t)numel5(hs) * sizeof(float)), *mean = malloc((size_t)numel5(rs) * sizeof(float));
        CHECK(cvx_vae_encode(vae, NULL, &p, x, xs, h) == CVX_OK);
        cvx_vae_posterior(h, 1, 16, hs[2] * hs[3] * hs[4], NULL, mean, NULL, NULL, NULL);
        double d = max_diff(mean, ref, numel5(rs)), atol = tol_atol(&t, "mean");
        CHECK_MSG(d <= atol, "encode_t17 mean: max diff %g, atol %g", d, atol);
        /* 2..7 frames make no batch of 8 in the reference. */
        int64_t bad[5] = {1, 3, 5, 16, 24};
        CHECK(cvx_vae_encode_shape(vae, &p, bad, hs) == CVX_ERR_SHAPE);
        int64_t one[5] = {1, 3, 1, 16, 24};
        CHECK(cvx_vae_encode_shape(vae, &p, one, hs) == CVX_OK && hs[2] == 1);
        free(x);
        free(ref);
        free(h);
        free(mean);
    }
    cvx_vae_close(vae);
    free_case(&t);
}

/* Writes the case's weights with tensor `skip` left out, or with `reshape`'s shape changed. */
static int write_variant(const tcase *t, const char *path, const char *skip, const char *reshape) {
    size_t n = cvx_weights_count(t->w), k = 0;
    cvx_st_entry *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const cvx_st_tensor *s = cvx_weights_at(t->w, i);
        if (skip && !strcmp(s->name, skip)) continue;
        e[k].name = s->name;
        e[k].dtype = s->dtype;
        e[k].ndim = s->ndim;
        memcpy(e[k].shape, s->shape, sizeof e[k].shape);
        e[k].data = s->data;
        if (reshape && !strcmp(s->name, reshape) && s->ndim == 1 && s->shape[0] % 2 == 0) {
            e[k].ndim = 2;
            e[k].shape[0] = 2;
            e[k].shape[1] = s->shape[0] / 2;
        }
        k++;
    }
    cvx_error err = {0};
    cvx_status st = cvx_safetensors_write(path, e, k, NULL, NULL, NULL, &err);
    free(e);
    return st == CVX_OK ? 0 : -1;
}

static void test_errors(void) {
    tcase t;
    if (load_case(&t, "decode_fp16w_t3", 1)) {
        CHECK_MSG(0, "cannot load decode_fp16w_t3");
        return;
    }
    char dir[256], path[512];
    cvx_test_tmpdir(dir, sizeof dir);
    cvx_error err = {0};
    cvx_vae *vae = NULL;
    cvx_weights *w = NULL;

    snprintf(path, sizeof path, "%s/missing.safetensors", dir);
    const char *gone = "decoder.up_blocks.1.resnets.0.conv_shortcut.weight";
    CHECK(write_variant(&t, path, gone, NULL) == 0);
    CHECK(cvx_weights_open(&w, path, &err) == CVX_OK);
    CHECK(cvx_vae_open_with(&vae, &t.cfg, w, CVX_VAE_DECODER, &err) == CVX_ERR_NOT_FOUND && !vae);
    CHECK_MSG(strstr(err.message, gone) != NULL, "message: %s", err.message);
    /* The decoder alone does not need encoder tensors, and vice versa. */
    cvx_weights_close(w);
    w = NULL;

    snprintf(path, sizeof path, "%s/shape.safetensors", dir);
    const char *bent = "decoder.norm_out.norm_layer.bias";
    CHECK(write_variant(&t, path, NULL, bent) == 0);
    CHECK(cvx_weights_open(&w, path, &err) == CVX_OK);
    CHECK(cvx_vae_open_with(&vae, &t.cfg, w, CVX_VAE_DECODER, &err) == CVX_ERR_SHAPE && !vae);
    CHECK_MSG(strstr(err.message, bent) != NULL, "message: %s", err.message);
    CHECK(cvx_vae_open_with(&vae, &t.cfg, w, CVX_VAE_ENCODER, &err) == CVX_OK && vae);
    cvx_vae_close(vae);
    vae = NULL;
    cvx_weights_close(w);

    /* Configs the model does not implement. */
    cvx_vae_config c = t.cfg;
    snprintf(c.act_fn, sizeof c.act_fn, "relu");
    CHECK(cvx_vae_open_with(&vae, &c, t.w, CVX_VAE_DECODER, &err) == CVX_ERR_UNSUPPORTED);
    c = t.cfg;
    c.use_post_quant_conv = 1;
    CHECK(cvx_vae_open_with(&vae, &c, t.w, CVX_VAE_DECODER, &err) == CVX_ERR_UNSUPPORTED);
    c = t.cfg;
    c.layers_per_block = 4; /* names that are not in the file */
    CHECK(cvx_vae_open_with(&vae, &c, t.w, CVX_VAE_DECODER, &err) == CVX_ERR_NOT_FOUND);
    c = t.cfg;
    c.latent_channels = 8; /* shapes that do not match */
    CHECK(cvx_vae_open_with(&vae, &c, t.w, CVX_VAE_DECODER, &err) == CVX_ERR_SHAPE);
    CHECK(!vae);

    /* A folder without a config, and a config.json that is not a VAE config. */
    CHECK(cvx_vae_open(&vae, dir, CVX_VAE_DECODER, &err) != CVX_OK && !vae);
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (f) {
        fputs("{\"_class_name\": \"AutoencoderKLCogVideoX\", \"block_out_channels\": [4, 8, 8, 16], \"norm_num_groups\": 3}",
              f);
        fclose(f);
    }
    CHECK(cvx_vae_open(&vae, dir, CVX_VAE_DECODER, &err) == CVX_ERR_FORMAT && !vae);
    CHECK_MSG(strstr(err.message, "norm_num_groups") != NULL, "message: %s", err.message);

    cvx_test_rmtree(dir);
    free_case(&t);
}

int main(void) {
    test_scaling_and_postprocess();
    test_decode_parity_and_properties();
    test_encode();
    test_errors();
    return cvx_test_finish("test_vae");
}
