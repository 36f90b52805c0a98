/* T5 encoder tests:
 *  - golden parity: every case of tests/data/golden/t5 and ../shared/golden/t5 (last_hidden_state and every
 *    intermediate the case compares, with the case's own tolerances);
 *  - an independent float64 evaluation of small random models written here (gated-gelu, relu, erf-gelu;
 *    F32 and BF16 storage; other bucket sizes), which covers the config paths the goldens do not;
 *  - the relative-position bucket boundaries the reference documents;
 *  - config validation and load/encode errors (missing or mis-shaped tensors name the tensor). */
#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/half.h"
#include "io/safetensors.h"
#include "testlib.h"
#include "text/t5.h"

/* ---- golden parity ------------------------------------------------------------------------------------ */

typedef struct {
    json_t *compare;          /* check.compare (borrowed) */
    cvx_safetensors *expected;
    int64_t num_layers;
    int compared, failed;
    json_t *seen;             /* names compared so far */
    const char *case_name;
} golden_ctx;

static void compare_one(golden_ctx *g, const char *name, const cvx_tensor *t) {
    json_t *tol = json_object_get(g->compare, name);
    if (!tol || json_object_get(g->seen, name)) return;
    json_object_set_new(g->seen, name, json_true());
    const cvx_st_tensor *e = cvx_safetensors_find(g->expected, name);
    CHECK_MSG(e != NULL, "%s: expected tensor %s missing", g->case_name, name);
    if (!e) return;
    cvx_tensor ev = cvx_st_view(e);
    CHECK_MSG(cvx_tensor_numel(&ev) == cvx_tensor_numel(t), "%s: %s: %lld elements, expected %lld", g->case_name,
              name, (long long)cvx_tensor_numel(t), (long long)cvx_tensor_numel(&ev));
    if (cvx_tensor_numel(&ev) != cvx_tensor_numel(t)) return;
    int exact = json_is_true(json_object_get(tol, "exact"));
    double atol = json_number_value(json_object_get(tol, "atol")), rtol = json_number_value(json_object_get(tol, "rtol"));
    int64_t bad = 0, n = cvx_tensor_numel(t);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = cvx_tensor_get(&ev, i), o = cvx_tensor_get(t, i), d = fabs(o - r);
        int ok = exact ? o == r : d <= atol + rtol * fabs(r);
        if (!ok) bad++;
        if (d > worst) worst = d;
    }
    g->compared++;
    if (bad) g->failed++;
    CHECK_MSG(bad == 0, "%s: %s: %lld of %lld elements out of tolerance (max |diff| %.3g)", g->case_name, name,
              (long long)bad, (long long)n, worst);
}

static cvx_status golden_tap(void *user, const char *name, const cvx_tensor *t) {
    golden_ctx *g = user;
    compare_one(g, name, t);
    char alias[64];
    long long i;
    int end = 0;
    if (!strcmp(name, "embeddings")) {
        compare_one(g, "hf_hidden_states.0", t);
    } else if (sscanf(name, "block.%lld.out%n", &i, &end) == 1 && !name[end] && i < g->num_layers - 1) {
        snprintf(alias, sizeof alias, "hf_hidden_states.%lld", i + 1);
        compare_one(g, alias, t);
    }
    return CVX_OK;
}

static void run_golden_case(const char *dir, const char *name, cvx_pool *pool) {
    char path[2048];
    snprintf(path, sizeof path, "%s/case.json", dir);
    json_error_t jerr;
    json_t *cj = json_load_file(path, 0, &jerr);
    CHECK_MSG(cj != NULL, "%s: %s", path, jerr.text);
    if (!cj) return;
    golden_ctx g = {json_object_get(json_object_get(cj, "check"), "compare"), NULL, 0, 0, 0, json_object(), name};
    cvx_error err = {0};
    snprintf(path, sizeof path, "%s/expected.safetensors", dir);
    CHECK_MSG(cvx_safetensors_open(&g.expected, path, &err) == CVX_OK, "%s", err.message);
    const char *sub = json_string_value(json_object_get(json_object_get(cj, "weights"), "dir"));
    snprintf(path, sizeof path, "%s/%s", dir, sub ? sub : "text_encoder");
    cvx_t5 *m = NULL;
    cvx_status st = g.expected ? cvx_t5_open(&m, path, &err) : CVX_ERR_IO;
    CHECK_MSG(st == CVX_OK, "%s: %s", name, err.message);
    if (!st) {
        g.num_layers = cvx_t5_get_config(m)->num_layers;
        cvx_tensor ids = cvx_st_view(cvx_safetensors_find(g.expected, "input_ids"));
        int64_t T = ids.shape[0] * ids.shape[1], D = cvx_t5_get_config(m)->d_model;
        float *out = malloc((size_t)(T * D) * sizeof(float));
        cvx_t5_tap tap = {NULL, golden_tap, &g};
        st = cvx_t5_encode_tap(m, pool, &ids, out, &tap);
        CHECK_MSG(st == CVX_OK, "%s: %s", name, cvx_t5_last_error(m));
        if (!st) {
            int64_t shape[3] = {ids.shape[0], ids.shape[1], D};
            cvx_tensor o = cvx_tensor_view(CVX_DTYPE_F32, out, 3, shape);
            compare_one(&g, "last_hidden_state", &o);
            char last[64];
            snprintf(last, sizeof last, "hf_hidden_states.%lld", (long long)g.num_layers);
            compare_one(&g, last, &o);
        }
        free(out);
        /* Every compared name of the case must have been produced. */
        const char *key;
        json_t *val;
        json_object_foreach(g.compare, key, val) CHECK_MSG(json_object_get(g.seen, key), "%s: %s not computed", name, key);
        printf("  %-14s %d tensors compared, %d out of tolerance\n", name, g.compared, g.failed);
    }
    cvx_t5_close(m);
    cvx_safetensors_close(g.expected);
    json_decref(g.seen);
    json_decref(cj);
}

static int run_golden_dir(const char *root, cvx_pool *pool) {
    int n = 0;
    DIR *d = opendir(root);
    if (!d) return 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        char dir[1024], cj[1100];
        struct stat sb;
        if (de->d_name[0] == '.') continue;
        snprintf(dir, sizeof dir, "%s/%s", root, de->d_name);
        snprintf(cj, sizeof cj, "%s/case.json", dir);
        if (stat(cj, &sb)) continue;
        run_golden_case(dir, de->d_name, pool);
        n++;
    }
    closedir(d);
    return n;
}

/* ---- independent float64 reference on small random models --------------------------------------------- */

typedef enum { CVX_T5_ACT_RELU, CVX_T5_ACT_GELU_NEW, CVX_T5_ACT_GELU, CVX_T5_ACT_SILU } test_act;

typedef struct {
    const char *proj; /* feed_forward_proj */
    int gated;
    test_act act;
    int64_t V, D, H, K, F, NL, NB, MD;
    cvx_dtype storage;
} synth_cfg;

typedef struct {
    char name[128];
    int64_t shape[2];
    int ndim;
    float *f32; /* the values as the model sees them (already rounded to the storage type) */
    void *stored;
} synth_tensor;

typedef struct {
    synth_cfg c;
    synth_tensor t[256];
    int n;
} synth_model;

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static double urand(void) {
    rng_state ^= rng_state << 13, rng_state ^= rng_state >> 7, rng_state ^= rng_state << 17;
    return (double)(rng_state >> 11) / 9007199254740992.0;
}

static synth_tensor *synth_add(synth_model *m, const char *name, int ndim, int64_t d0, int64_t d1, double lo,
                               double hi) {
    synth_tensor *t = &m->t[m->n++];
    snprintf(t->name, sizeof t->name, "%s", name);
    t->ndim = ndim, t->shape[0] = d0, t->shape[1] = ndim == 2 ? d1 : 1;
    int64_t n = t->shape[0] * t->shape[1];
    t->f32 = malloc((size_t)n * sizeof(float));
    size_t es = cvx_dtype_size(m->c.storage);
    t->stored = malloc((size_t)n * es);
    for (int64_t i = 0; i < n; i++) {
        float v = (float)(lo + (hi - lo) * urand());
        if (m->c.storage == CVX_DTYPE_BF16) {
            uint16_t h = cvx_f32_to_bf16(v);
            ((uint16_t *)t->stored)[i] = h, v = cvx_bf16_to_f32(h);
        } else if (m->c.storage == CVX_DTYPE_F16) {
            uint16_t h = cvx_f32_to_f16(v);
            ((uint16_t *)t->stored)[i] = h, v = cvx_f16_to_f32(h);
        } else {
            ((float *)t->stored)[i] = v;
        }
        t->f32[i] = v;
    }
    return t;
}

static const float *synth_get(const synth_model *m, const char *name) {
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->t[i].name, name)) return m->t[i].f32;
    return NULL;
}

static void synth_build(synth_model *m, const synth_cfg *c) {
    memset(m, 0, sizeof *m);
    m->c = *c;
    const int64_t I = c->H * c->K;
    char n[128];
    synth_add(m, "shared.weight", 2, c->V, c->D, -1.5, 1.5);
    synth_add(m, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2, c->NB, c->H, -1, 1);
    synth_add(m, "encoder.final_layer_norm.weight", 1, c->D, 1, 0.5, 1.5);
    double sa = 1.0 / sqrt((double)c->D), sf = 1.0 / sqrt((double)c->F);
    for (int64_t i = 0; i < c->NL; i++) {
#define ADD(suffix, nd, d0, d1, lo, hi)                                            \
    snprintf(n, sizeof n, "encoder.block.%lld.%s", (long long)i, suffix);          \
    synth_add(m, n, nd, d0, d1, lo, hi)
        ADD("layer.0.SelfAttention.q.weight", 2, I, c->D, -sa, sa);
        ADD("layer.0.SelfAttention.k.weight", 2, I, c->D, -sa, sa);
        ADD("layer.0.SelfAttention.v.weight", 2, I, c->D, -sa, sa);
        ADD("layer.0.SelfAttention.o.weight", 2, c->D, I, -sa, sa);
        ADD("layer.0.layer_norm.weight", 1, c->D, 1, 0.5, 1.5);
        if (c->gated) {
            ADD("layer.1.DenseReluDense.wi_0.weight", 2, c->F, c->D, -2 * sa, 2 * sa);
            ADD("layer.1.DenseReluDense.wi_1.weight", 2, c->F, c->D, -2 * sa, 2 * sa);
        } else {
            ADD("layer.1.DenseReluDense.wi.weight", 2, c->F, c->D, -2 * sa, 2 * sa);
        }
        ADD("layer.1.DenseReluDense.wo.weight", 2, c->D, c->F, -sf, sf);
        ADD("layer.1.layer_norm.weight", 1, c->D, 1, 0.5, 1.5);
#undef ADD
    }
}

static void synth_free(synth_model *m) {
    for (int i = 0; i < m->n; i++) free(m->t[i].f32), free(m->t[i].stored);
}

/* Writes config.json + model.safetensors, leaving out tensor `skip` (or none) and giving tensor `reshape` a
 * wrong first dimension; `pad` puts a 3-byte extra tensor first, so every weight is misaligned in the file. */
static int synth_write(const synth_model *m, const char *dir, const char *skip, const char *reshape, int pad) {
    char path[1024];
    snprintf(path, sizeof path, "%s/config.json", dir);
    FILE *f = fopen(path, "w");
    if (!f) return -1;
    fprintf(f,
            "{\"model_type\": \"t5\", \"vocab_size\": %lld, \"d_model\": %lld, \"num_heads\": %lld, \"d_kv\": %lld,"
            " \"d_ff\": %lld, \"num_layers\": %lld, \"relative_attention_num_buckets\": %lld,"
            " \"relative_attention_max_distance\": %lld, \"feed_forward_proj\": \"%s\", \"layer_norm_epsilon\": 1e-06}\n",
            (long long)m->c.V, (long long)m->c.D, (long long)m->c.H, (long long)m->c.K, (long long)m->c.F,
            (long long)m->c.NL, (long long)m->c.NB, (long long)m->c.MD, m->c.proj);
    fclose(f);
    cvx_st_entry e[256];
    size_t n = 0;
    static const unsigned char three[3] = {1, 2, 3};
    if (pad) e[n++] = (cvx_st_entry){"aaa.unused_extra", CVX_DTYPE_U8, 1, {3, 1, 1, 1, 1}, three};
    for (int i = 0; i < m->n; i++) {
        if (skip && !strcmp(skip, m->t[i].name)) continue;
        e[n].name = m->t[i].name, e[n].dtype = m->c.storage, e[n].ndim = m->t[i].ndim;
        e[n].shape[0] = m->t[i].shape[0], e[n].shape[1] = m->t[i].shape[1];
        e[n].data = m->t[i].stored;
        if (reshape && !strcmp(reshape, m->t[i].name)) {
            /* Same bytes, other factorisation: only the shape check can catch it. */
            if (e[n].ndim == 2 && e[n].shape[0] % 2 == 0) e[n].shape[0] /= 2, e[n].shape[1] *= 2;
            else e[n].ndim = 2, e[n].shape[1] = 1;
        }
        n++;
    }
    snprintf(path, sizeof path, "%s/model.safetensors", dir);
    cvx_error err = {0};
    cvx_status st = cvx_safetensors_write(path, e, n, NULL, NULL, NULL, &err);
    if (st) fprintf(stderr, "synth_write: %s\n", err.message);
    return st ? -1 : 0;
}

static int64_t ref_bucket(int64_t rel, int64_t nb, int64_t md) {
    int64_t half = nb / 2, me = half / 2, b = rel > 0 ? half : 0, n = llabs(rel);
    if (n < me) return b + n;
    int64_t v = me + (int64_t)floor(log((double)n / me) / log((double)md / me) * (half - me));
    return b + (v < half - 1 ? v : half - 1);
}

static void ref_rmsnorm(double *y, const double *x, int64_t T, int64_t D, const float *w) {
    for (int64_t t = 0; t < T; t++) {
        double s = 0;
        for (int64_t d = 0; d < D; d++) s += x[t * D + d] * x[t * D + d];
        double inv = 1.0 / sqrt(s / D + 1e-6);
        for (int64_t d = 0; d < D; d++) y[t * D + d] = x[t * D + d] * inv * w[d];
    }
}

static void ref_linear(double *y, const double *x, int64_t T, int64_t K, const float *W, int64_t N) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t n = 0; n < N; n++) {
            double s = 0;
            for (int64_t k = 0; k < K; k++) s += x[t * K + k] * W[n * K + k];
            y[t * N + n] = s;
        }
}

static double ref_act(test_act a, double x) {
    switch (a) {
    case CVX_T5_ACT_RELU: return x > 0 ? x : 0;
    case CVX_T5_ACT_GELU: return 0.5 * x * (1 + erf(x / sqrt(2.0)));
    case CVX_T5_ACT_SILU: return x / (1 + exp(-x));
    default: return 0.5 * x * (1 + tanh(sqrt(2 / M_PI) * (x + 0.044715 * x * x * x)));
    }
}

/* The encoder from the maths, in float64. */
static void ref_encode(const synth_model *m, const int64_t *ids, int64_t B, int64_t L, double *out) {
    const synth_cfg *c = &m->c;
    const int64_t T = B * L, D = c->D, H = c->H, K = c->K, I = H * K, F = c->F;
    double *x = calloc((size_t)(T * D), 8), *n = calloc((size_t)(T * D), 8), *q = calloc((size_t)(T * I), 8),
           *k = calloc((size_t)(T * I), 8), *v = calloc((size_t)(T * I), 8), *a = calloc((size_t)(T * I), 8),
           *g = calloc((size_t)(T * F), 8), *g1 = calloc((size_t)(T * F), 8), *s = calloc((size_t)L, 8);
    const float *emb = synth_get(m, "shared.weight");
    const float *rb = synth_get(m, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight");
    for (int64_t t = 0; t < T; t++)
        for (int64_t d = 0; d < D; d++) x[t * D + d] = emb[ids[t] * D + d];
    char nm[160];
#define W(suffix) (snprintf(nm, sizeof nm, "encoder.block.%lld.%s", (long long)li, suffix), synth_get(m, nm))
    for (int64_t li = 0; li < c->NL; li++) {
        ref_rmsnorm(n, x, T, D, W("layer.0.layer_norm.weight"));
        ref_linear(q, n, T, D, W("layer.0.SelfAttention.q.weight"), I);
        ref_linear(k, n, T, D, W("layer.0.SelfAttention.k.weight"), I);
        ref_linear(v, n, T, D, W("layer.0.SelfAttention.v.weight"), I);
        for (int64_t b = 0; b < B; b++)
            for (int64_t h = 0; h < H; h++)
                for (int64_t i = 0; i < L; i++) {
                    double mx = -INFINITY, sum = 0;
                    for (int64_t j = 0; j < L; j++) {
                        double dot = rb[ref_bucket(j - i, c->NB, c->MD) * H + h];
                        for (int64_t d = 0; d < K; d++) dot += q[(b * L + i) * I + h * K + d] * k[(b * L + j) * I + h * K + d];
                        s[j] = dot, mx = dot > mx ? dot : mx;
                    }
                    for (int64_t j = 0; j < L; j++) s[j] = exp(s[j] - mx), sum += s[j];
                    for (int64_t d = 0; d < K; d++) {
                        double acc = 0;
                        for (int64_t j = 0; j < L; j++) acc += s[j] * v[(b * L + j) * I + h * K + d];
                        a[(b * L + i) * I + h * K + d] = acc / sum;
                    }
                }
        ref_linear(n, a, T, I, W("layer.0.SelfAttention.o.weight"), D);
        for (int64_t e = 0; e < T * D; e++) x[e] += n[e];
        ref_rmsnorm(n, x, T, D, W("layer.1.layer_norm.weight"));
        if (c->gated) {
            ref_linear(g, n, T, D, W("layer.1.DenseReluDense.wi_0.weight"), F);
            ref_linear(g1, n, T, D, W("layer.1.DenseReluDense.wi_1.weight"), F);
            for (int64_t e = 0; e < T * F; e++) g[e] = ref_act(c->act, g[e]) * g1[e];
        } else {
            ref_linear(g, n, T, D, W("layer.1.DenseReluDense.wi.weight"), F);
            for (int64_t e = 0; e < T * F; e++) g[e] = ref_act(c->act, g[e]);
        }
        ref_linear(n, g, T, F, W("layer.1.DenseReluDense.wo.weight"), D);
        for (int64_t e = 0; e < T * D; e++) x[e] += n[e];
    }
#undef W
    ref_rmsnorm(out, x, T, D, synth_get(m, "encoder.final_layer_norm.weight"));
    free(x), free(n), free(q), free(k), free(v), free(a), free(g), free(g1), free(s);
}

static void test_synthetic(const synth_cfg *c, cvx_pool *pool) {
    char tmp[512];
    CHECK(cvx_test_tmpdir(tmp, sizeof tmp) != NULL);
    synth_model m;
    synth_build(&m, c);
    CHECK(synth_write(&m, tmp, NULL, NULL, 0) == 0);
    const int64_t B = 2, L = 19, T = B * L;
    int64_t ids[2 * 19];
    for (int64_t t = 0; t < T; t++) ids[t] = (int64_t)(urand() * (double)c->V);
    ids[T - 1] = 0, ids[T - 2] = 1, ids[0] = c->V - 1;

    cvx_t5 *model = NULL;
    cvx_error err = {0};
    CHECK_MSG(cvx_t5_open(&model, tmp, &err) == CVX_OK, "%s", err.message);
    if (model) {
        CHECK(cvx_t5_get_config(model)->is_gated_act == c->gated);
        float *out = malloc((size_t)(T * c->D) * sizeof(float));
        double *ref = malloc((size_t)(T * c->D) * sizeof(double));
        int64_t shape[2] = {B, L};
        cvx_tensor tids = cvx_tensor_view(CVX_DTYPE_I64, ids, 2, shape);
        CHECK_MSG(cvx_t5_encode(model, pool, &tids, out) == CVX_OK, "%s", cvx_t5_last_error(model));
        ref_encode(&m, ids, B, L, ref);
        double worst = 0;
        for (int64_t e = 0; e < T * c->D; e++) worst = fmax(worst, fabs(out[e] - ref[e]));
        CHECK_MSG(worst < 1e-4, "%s/%s: max |diff| vs float64 = %.3g", c->proj, cvx_dtype_name(c->storage), worst);
        printf("  synthetic %-10s %-4s D=%lld H=%lldx%lld F=%lld NB=%lld: max |diff| vs float64 %.2g\n", c->proj,
               cvx_dtype_name(c->storage), (long long)c->D, (long long)c->H, (long long)c->K, (long long)c->F,
               (long long)c->NB, worst);

        /* The same ids as I32 give the same numbers. */
        int32_t ids32[2 * 19];
        for (int64_t t = 0; t < T; t++) ids32[t] = (int32_t)ids[t];
        float *out32 = malloc((size_t)(T * c->D) * sizeof(float));
        cvx_tensor tids32 = cvx_tensor_view(CVX_DTYPE_I32, ids32, 2, shape);
        CHECK(cvx_t5_encode(model, pool, &tids32, out32) == CVX_OK);
        CHECK(memcmp(out, out32, (size_t)(T * c->D) * sizeof(float)) == 0);

        /* Bad ids: out of the vocabulary, negative, wrong dtype, wrong rank. */
        int64_t saved = ids[5];
        ids[5] = c->V;
        CHECK(cvx_t5_encode(model, pool, &tids, out) == CVX_ERR_INVALID_ARGUMENT);
        CHECK(strstr(cvx_t5_last_error(model), "outside the vocabulary") != NULL);
        ids[5] = -1;
        CHECK(cvx_t5_encode(model, pool, &tids, out) == CVX_ERR_INVALID_ARGUMENT);
        ids[5] = saved;
        cvx_tensor fl = cvx_tensor_view(CVX_DTYPE_F32, out, 2, shape);
        CHECK(cvx_t5_encode(model, pool, &fl, out) == CVX_ERR_INVALID_ARGUMENT);
        int64_t shape3[3] = {1, B, L};
        cvx_tensor r3 = cvx_tensor_view(CVX_DTYPE_I64, ids, 3, shape3);
        CHECK(cvx_t5_encode(model, pool, &r3, out) == CVX_ERR_INVALID_ARGUMENT);

        /* The same weights stored misaligned in the file (and an extra tensor the encoder ignores): same output. */
        char tmp2[512];
        CHECK(cvx_test_tmpdir(tmp2, sizeof tmp2) != NULL);
        CHECK(synth_write(&m, tmp2, NULL, NULL, 1) == 0);
        cvx_t5 *model2 = NULL;
        CHECK_MSG(cvx_t5_open(&model2, tmp2, &err) == CVX_OK, "%s", err.message);
        if (model2) {
            CHECK(cvx_t5_encode(model2, pool, &tids, out32) == CVX_OK);
            CHECK(memcmp(out, out32, (size_t)(T * c->D) * sizeof(float)) == 0);
        }
        cvx_t5_close(model2);
        cvx_test_rmtree(tmp2);
        free(out), free(out32), free(ref);
    }
    cvx_t5_close(model);
    cvx_test_rmtree(tmp);
    synth_free(&m);
}

/* Missing and mis-shaped tensors are refused with the tensor's name. */
static void test_load_errors(void) {
    synth_cfg c = {"gated-gelu", 1, CVX_T5_ACT_GELU_NEW, 40, 8, 2, 4, 12, 2, 32, 128, CVX_DTYPE_F16};
    synth_model m;
    synth_build(&m, &c);
    const char *victims[] = {"shared.weight", "encoder.block.1.layer.1.DenseReluDense.wi_1.weight",
                             "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
                             "encoder.final_layer_norm.weight", "encoder.block.1.layer.0.SelfAttention.o.weight"};
    for (size_t i = 0; i < sizeof victims / sizeof victims[0]; i++) {
        for (int mode = 0; mode < 2; mode++) {
            char tmp[512];
            CHECK(cvx_test_tmpdir(tmp, sizeof tmp) != NULL);
            CHECK(synth_write(&m, tmp, mode == 0 ? victims[i] : NULL, mode == 1 ? victims[i] : NULL, 0) == 0);
            cvx_t5 *model = (cvx_t5 *)1;
            cvx_error err = {0};
            cvx_status st = cvx_t5_open(&model, tmp, &err);
            CHECK_MSG(st == (mode == 0 ? CVX_ERR_NOT_FOUND : CVX_ERR_SHAPE), "%s: status %d: %s", victims[i], st,
                      err.message);
            CHECK(model == NULL);
            CHECK_MSG(strstr(err.message, victims[i]) != NULL, "message does not name %s: %s", victims[i], err.message);
            cvx_test_rmtree(tmp);
        }
    }
    /* The tied alias is accepted in place of shared.weight. */
    char tmp[512];
    CHECK(cvx_test_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(m.t[0].name, sizeof m.t[0].name, "encoder.embed_tokens.weight");
    CHECK(synth_write(&m, tmp, NULL, NULL, 0) == 0);
    cvx_t5 *model = NULL;
    cvx_error err = {0};
    CHECK_MSG(cvx_t5_open(&model, tmp, &err) == CVX_OK, "%s", err.message);
    cvx_t5_close(model);
    cvx_test_rmtree(tmp);
    /* No folder at all. */
    model = (cvx_t5 *)1;
    CHECK(cvx_t5_open(&model, "/nonexistent/t5", &err) != CVX_OK && model == NULL);
    CHECK(strstr(err.message, "/nonexistent/t5") != NULL);
    synth_free(&m);
    cvx_t5_close(NULL);
}

/* ---- config ------------------------------------------------------------------------------------------- */

/* Writes a config.json (and nothing else) and opens the folder: the config is checked before the weights. */
static cvx_status open_with_config(const char *json, cvx_error *err) {
    char tmp[512], path[600];
    if (!cvx_test_tmpdir(tmp, sizeof tmp)) return CVX_ERR_IO;
    snprintf(path, sizeof path, "%s/config.json", tmp);
    FILE *f = fopen(path, "w");
    fputs(json, f);
    fclose(f);
    cvx_t5 *m = NULL;
    cvx_status st = cvx_t5_open(&m, tmp, err);
    cvx_t5_close(m);
    cvx_test_rmtree(tmp);
    return st;
}

static void test_config(void) {
    cvx_error err = {0};
    /* The real google/t5-v1_1-xxl config when shipped. */
    const char *real = "../shared/golden/real/cogvideox-2b/text_encoder_config.json";
    struct stat sb;
    if (!stat(real, &sb)) {
        cvx_config *cj = NULL;
        cvx_t5_config c;
        CHECK_MSG(cvx_config_load(&cj, real, &err) == CVX_OK && cvx_t5_config_read(cj, &c, &err) == CVX_OK, "%s",
                  err.message);
        CHECK(c.d_model == 4096 && c.num_heads == 64 && c.d_kv == 64 && c.d_ff == 10240 && c.num_layers == 24);
        CHECK(c.vocab_size == 32128 && c.is_gated_act && !strcmp(c.dense_act_fn, "gelu_new"));
        CHECK(c.relative_attention_num_buckets == 32 && c.relative_attention_max_distance == 128);
        cvx_config_free(cj);
    }
    struct {
        const char *json;
        cvx_status st;
        const char *needle;
    } bad[] = {
        {"{\"feed_forward_proj\": \"gated-mish\"}", CVX_ERR_UNSUPPORTED, "mish"},
        {"{\"feed_forward_proj\": \"gated-gelu\", \"dense_act_fn\": \"tanh\"}", CVX_ERR_UNSUPPORTED, "tanh"},
        {"{\"relative_attention_num_buckets\": 2}", CVX_ERR_UNSUPPORTED, "relative_attention_num_buckets"},
        {"{\"relative_attention_num_buckets\": 32, \"relative_attention_max_distance\": 8}", CVX_ERR_FORMAT,
         "relative_attention_max_distance"},
        {"{\"model_type\": \"umt5\"}", CVX_ERR_UNSUPPORTED, "umt5"},
        {"{\"d_model\": 0}", CVX_ERR_FORMAT, "d_model"},
        {"{\"d_model\": 8,", CVX_ERR_FORMAT, "config.json"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        err.message[0] = '\0';
        cvx_status st = open_with_config(bad[i].json, &err);
        CHECK_MSG(st != CVX_OK, "accepted %s", bad[i].json);
        CHECK_MSG(st == bad[i].st || bad[i].st == CVX_ERR_FORMAT, "%s: status %d", bad[i].json, st);
        CHECK_MSG(strstr(err.message, bad[i].needle) != NULL, "%s: message \"%s\" lacks \"%s\"", bad[i].json,
                  err.message, bad[i].needle);
    }
    /* A valid config with no weights: the weights' error. */
    CHECK(open_with_config("{\"feed_forward_proj\": \"gated-gelu\"}", &err) != CVX_OK);
}

/* The bucket boundaries documented for the reference (32 buckets, max distance 128). */
static void test_buckets(void) {
    CHECK(cvx_t5_relative_bucket(0, 32, 128) == 0);
    for (int64_t d = 1; d < 8; d++) {
        CHECK(cvx_t5_relative_bucket(d, 32, 128) == 16 + d); /* key after the query: upper half */
        CHECK(cvx_t5_relative_bucket(-d, 32, 128) == d);
    }
    const int64_t starts[] = {8, 12, 16, 23, 32, 46, 64, 91};
    for (int64_t d = 8; d < 400; d++) {
        int64_t want = 7;
        for (int s = 0; s < 8; s++)
            if (d >= starts[s]) want = 8 + s;
        CHECK_MSG(cvx_t5_relative_bucket(-d, 32, 128) == want, "bucket(-%lld) = %lld, expected %lld", (long long)d,
                  (long long)cvx_t5_relative_bucket(-d, 32, 128), (long long)want);
        CHECK(cvx_t5_relative_bucket(d, 32, 128) == 16 + want);
    }
    CHECK(cvx_t5_relative_bucket(-1000000, 32, 128) == 15);
    CHECK(cvx_t5_relative_bucket(INT64_MAX / 2, 32, 128) == 31);
}

int main(void) {
    cvx_pool *pool = cvx_pool_new(2);
    test_config();
    test_buckets();
    test_load_errors();

    const synth_cfg cfgs[] = {
        {"gated-gelu", 1, CVX_T5_ACT_GELU_NEW, 64, 16, 3, 5, 24, 2, 32, 128, CVX_DTYPE_F32},
        {"gated-gelu", 1, CVX_T5_ACT_GELU_NEW, 64, 12, 2, 8, 20, 2, 32, 128, CVX_DTYPE_BF16},
        {"relu", 0, CVX_T5_ACT_RELU, 50, 10, 2, 3, 17, 3, 16, 20, CVX_DTYPE_F32},
        {"gelu", 0, CVX_T5_ACT_GELU, 50, 8, 4, 2, 9, 1, 8, 6, CVX_DTYPE_F16},
    };
    for (size_t i = 0; i < sizeof cfgs / sizeof cfgs[0]; i++) test_synthetic(&cfgs[i], pool);

    int n = run_golden_dir("tests/data/golden/t5", pool);
    CHECK_MSG(n >= 3, "only %d project golden cases found (run from the source root)", n);
    const char *shared = cvx_test_shared_golden();
    if (shared) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/t5", shared);
        run_golden_dir(dir, pool);
    }
    cvx_pool_free(pool);
    return cvx_test_finish("test_t5");
}
