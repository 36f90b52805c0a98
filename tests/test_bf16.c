/* The bf16 precision through the models and the engine, checked against the documented bound
 * (tests/data/bf16_tolerances.json, docs/bf16-tolerances.md) on inputs that were NOT used to derive it: the
 * golden models of tests/data/golden fed fresh random inputs (other seeds, ids, prompts), bf16 vs our own fp32
 * path (which matches the reference within the fp32 tolerances). Also: precision switches are exact round
 * trips, the packed weights are accounted, bad precisions and bad tolerance tables are refused. */
#include <dirent.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/threadpool.h"
#include "diffusion/pipeline.h"
#include "diffusion/transformer.h"
#include "golden/golden.h"
#include "io/safetensors.h"
#include "testlib.h"
#include "text/t5.h"

#define GOLDEN "tests/data/golden"

static json_t *g_table;
static cvx_pool *g_pool;

/* xorshift64* + Box-Muller: inputs unrelated to the golden files' own draws. */
static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
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
    double rms = sqrt(sq / (double)(n ? n : 1));
    return rms > 0 ? mx / rms : mx;
}

static double bound(const char *component, const char *name) {
    double b = cvx_golden_bf16_atol_rms(g_table, component, name);
    CHECK_MSG(b > 0, "no bf16 bound for %s/%s", component, name);
    return b;
}

static int list_cases(const char *dir, char names[][256], int max) {
    DIR *d = opendir(dir);
    int n = 0;
    if (!d) return 0;
    struct dirent *e;
    while ((e = readdir(d)) && n < max) {
        if (e->d_name[0] == '.') continue;
        char p[4096];
        struct stat st;
        snprintf(p, sizeof p, "%s/%s/case.json", dir, e->d_name);
        if (stat(p, &st) == 0) snprintf(names[n++], 256, "%s", e->d_name);
    }
    closedir(d);
    return n;
}

/* ---- transformer: every golden model, random inputs of the case's shapes -------------------------------- */
static void transformer_case(const char *name) {
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, GOLDEN "/transformer/%.255s", name);
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *j = json_load_file(path, 0, &je);
    CHECK_MSG(j != NULL, "%s", path);
    if (!j) return;
    cvx_dit_config cfg;
    cvx_error err;
    cvx_error_clear(&err);
    CHECK(cvx_dit_config_parse(&cfg, j, &err) == CVX_OK);
    json_decref(j);
    cvx_dit *m = NULL;
    snprintf(path, sizeof path, "%s/weights.safetensors", dir);
    CHECK_MSG(cvx_dit_open(&m, &cfg, path, &err) == CVX_OK, "%s", cvx_error_message(&err));
    cvx_safetensors *io = NULL;
    snprintf(path, sizeof path, "%s/io.safetensors", dir);
    CHECK(cvx_safetensors_open(&io, path, &err) == CVX_OK);
    if (!m || !io) {
        cvx_dit_free(m);
        cvx_safetensors_close(io);
        return;
    }
    const char *pre = cvx_safetensors_find(io, "hidden_states") ? "" : "call0_";
    char nm[64];
    snprintf(nm, sizeof nm, "%shidden_states", pre);
    const cvx_st_tensor *hs = cvx_safetensors_find(io, nm);
    snprintf(nm, sizeof nm, "%sencoder_hidden_states", pre);
    const cvx_st_tensor *ehs = cvx_safetensors_find(io, nm);
    snprintf(nm, sizeof nm, "%simage_rotary_emb_cos", pre);
    const cvx_st_tensor *rc = cvx_safetensors_find(io, nm);
    snprintf(nm, sizeof nm, "%simage_rotary_emb_sin", pre);
    const cvx_st_tensor *rs = cvx_safetensors_find(io, nm);
    CHECK(hs && ehs && hs->ndim == 5 && ehs->ndim == 3);
    if (!hs || !ehs) {
        cvx_dit_free(m);
        cvx_safetensors_close(io);
        return;
    }
    int64_t B = hs->shape[0], F = hs->shape[1], H = hs->shape[3], W = hs->shape[4], L = ehs->shape[1];
    int64_t nl = B * F * cfg.in_channels * H * W, nt = B * L * cfg.text_embed_dim;
    int64_t no = B * F * cfg.out_channels * H * W;
    float *lat = malloc(sizeof(float) * (size_t)nl), *text = malloc(sizeof(float) * (size_t)nt);
    float *o32 = malloc(sizeof(float) * (size_t)no), *o16 = malloc(sizeof(float) * (size_t)no);
    float *again = malloc(sizeof(float) * (size_t)no);
    float *cosv = NULL, *sinv = NULL;
    if (rc && rs) {
        cvx_tensor cv = cvx_st_view(rc), sv = cvx_st_view(rs);
        cosv = malloc(sizeof(float) * (size_t)cvx_tensor_numel(&cv));
        sinv = malloc(sizeof(float) * (size_t)cvx_tensor_numel(&sv));
        cvx_tensor_to_f32(&cv, cosv);
        cvx_tensor_to_f32(&sv, sinv);
    }
    int64_t *ts = malloc(sizeof(int64_t) * (size_t)B);
    double worst = 0;
    for (int trial = 0; trial < 3; trial++) {
        for (int64_t i = 0; i < nl; i++) lat[i] = normal();
        for (int64_t i = 0; i < nt; i++) text[i] = normal();
        for (int64_t b = 0; b < B; b++) ts[b] = (int64_t)(uniform() * 1000) % 1000;
        cvx_dit_call call = {B, F, H, W, L, lat, text, ts, cosv, sinv, o32, g_pool, NULL, NULL, NULL, NULL};
        CHECK(cvx_dit_set_precision(m, CVX_PRECISION_FP32, g_pool) == CVX_OK);
        CHECK(cvx_dit_packed_bytes(m) == 0);
        CHECK_MSG(cvx_dit_forward(m, &call) == CVX_OK, "%s", cvx_dit_error(m)->message);
        CHECK(cvx_dit_set_precision(m, CVX_PRECISION_BF16, g_pool) == CVX_OK);
        CHECK(cvx_dit_get_precision(m) == CVX_PRECISION_BF16);
        CHECK(cvx_dit_packed_bytes(m) > 0);
        call.out = o16;
        CHECK(cvx_dit_forward(m, &call) == CVX_OK);
        double e = deviation(o16, o32, no);
        if (e > worst) worst = e;
        /* back to fp32: bit-identical to before (the dropped pages refault unchanged) */
        CHECK(cvx_dit_set_precision(m, CVX_PRECISION_FP32, g_pool) == CVX_OK);
        call.out = again;
        CHECK(cvx_dit_forward(m, &call) == CVX_OK);
        CHECK_MSG(memcmp(again, o32, sizeof(float) * (size_t)no) == 0, "%s: fp32 after bf16 differs", name);
    }
    double b = bound("transformer", "output");
    printf("transformer %-28s bf16 vs fp32 max|d|/rms %.4f (bound %.3g)\n", name, worst, b);
    CHECK_MSG(worst <= b, "%s: %.4g > %.3g", name, worst, b);
    /* a bad precision is refused and leaves the model as it was */
    CHECK(cvx_dit_set_precision(m, (cvx_precision)9, g_pool) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_dit_get_precision(m) == CVX_PRECISION_FP32);
    free(lat), free(text), free(o32), free(o16), free(again), free(cosv), free(sinv), free(ts);
    cvx_dit_free(m);
    cvx_safetensors_close(io);
}

/* ---- T5: every golden encoder, random ids ----------------------------------------------------------------- */
static void t5_case(const char *name) {
    char dir[512], path[1024];
    snprintf(dir, sizeof dir, GOLDEN "/t5/%.255s/text_encoder", name);
    cvx_t5 *m = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    CHECK_MSG(cvx_t5_open(&m, dir, &err) == CVX_OK, "%s", cvx_error_message(&err));
    if (!m) return;
    const cvx_t5_config *c = cvx_t5_get_config(m);
    snprintf(path, sizeof path, GOLDEN "/t5/%.255s/expected.safetensors", name);
    cvx_safetensors *io = NULL;
    int64_t L = 226;
    if (cvx_safetensors_open(&io, path, &err) == CVX_OK) {
        const cvx_st_tensor *ids = cvx_safetensors_find(io, "input_ids");
        if (ids && ids->ndim == 2) L = ids->shape[1];
        cvx_safetensors_close(io);
    }
    int64_t B = 2, n = B * L * c->d_model;
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(B * L));
    float *o32 = malloc(sizeof(float) * (size_t)n), *o16 = malloc(sizeof(float) * (size_t)n);
    double worst = 0;
    for (int trial = 0; trial < 3; trial++) {
        /* a prompt-like row (real tokens then </s> and pads) and a row of random tokens */
        int64_t used = 8 + (int64_t)(uniform() * (double)(L - 8));
        for (int64_t i = 0; i < L; i++) {
            ids[i] = i < used ? 3 + (int64_t)(uniform() * (double)(c->vocab_size - 3)) : i == used ? 1 : 0;
            ids[L + i] = (int64_t)(uniform() * (double)c->vocab_size);
        }
        int64_t shape[2] = {B, L};
        cvx_tensor t = cvx_tensor_view(CVX_DTYPE_I64, ids, 2, shape);
        CHECK(cvx_t5_set_precision(m, CVX_PRECISION_FP32) == CVX_OK);
        CHECK_MSG(cvx_t5_encode(m, g_pool, &t, o32) == CVX_OK, "%s", cvx_t5_last_error(m));
        CHECK(cvx_t5_set_precision(m, CVX_PRECISION_BF16) == CVX_OK);
        CHECK(cvx_t5_get_precision(m) == CVX_PRECISION_BF16);
        CHECK_MSG(cvx_t5_encode(m, g_pool, &t, o16) == CVX_OK, "%s", cvx_t5_last_error(m));
        double e = deviation(o16, o32, n);
        if (e > worst) worst = e;
    }
    double b = bound("t5", "last_hidden_state");
    printf("t5 %-37s bf16 vs fp32 max|d|/rms %.4f (bound %.3g)\n", name, worst, b);
    CHECK_MSG(worst <= b, "%s: %.4g > %.3g", name, worst, b);
    CHECK(cvx_t5_set_precision(m, (cvx_precision)-1) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_t5_get_precision(m) == CVX_PRECISION_BF16);
    free(ids), free(o32), free(o16);
    cvx_t5_close(m);
}

/* ---- the engine: the e2e model with another seed and prompt ------------------------------------------------- */
typedef struct {
    const char *names[4];
    float *data[4];
    int64_t n[4];
} grab;

static cvx_status grab_fn(void *user, const char *name, const cvx_tensor *t) {
    grab *g = user;
    for (int i = 0; i < 4; i++)
        if (!strcmp(name, g->names[i]) && !g->data[i]) {
            g->n[i] = cvx_tensor_numel(t);
            g->data[i] = malloc(sizeof(float) * (size_t)g->n[i]);
            if (!g->data[i]) return CVX_ERR_OUT_OF_MEMORY;
            memcpy(g->data[i], t->data, sizeof(float) * (size_t)g->n[i]);
        }
    return CVX_OK;
}

static void engine_case(const char *name) {
    char dir[512];
    snprintf(dir, sizeof dir, GOLDEN "/e2e/%.255s/model", name);
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = cvx_pool_size(g_pool);
    cvx_engine *e = NULL;
    char err[1024];
    CHECK_MSG(cvx_engine_open(&e, dir, &ep, err, sizeof err) == CVX_OK, "%s", err);
    if (!e) return;
    grab g[2];
    memset(g, 0, sizeof g);
    for (int k = 0; k < 2; k++) {
        g[k].names[0] = "prompt_embeds", g[k].names[1] = "final_latents", g[k].names[2] = "video";
        g[k].names[3] = "negative_prompt_embeds";
        cvx_generate_params p = cvx_generate_params_default();
        p.prompt = "a red fox running through fresh snow at dawn, cinematic, shallow depth of field";
        p.negative_prompt = "blurry";
        p.seed = 20261125;
        p.num_frames = 9;
        p.height = 48;
        p.width = 64;
        p.steps = 6;
        p.precision = k ? CVX_PRECISION_BF16 : CVX_PRECISION_FP32;
        cvx_pipeline_tap tap = {grab_fn, &g[k]};
        CHECK_MSG(cvx_generate_tapped(e, &p, NULL, &tap) == CVX_OK, "%s", cvx_engine_last_error(e));
    }
    for (int i = 0; i < 4; i++) {
        CHECK(g[0].data[i] && g[1].data[i] && g[0].n[i] == g[1].n[i]);
        if (!g[0].data[i] || !g[1].data[i] || g[0].n[i] != g[1].n[i]) continue;
        double e2 = deviation(g[1].data[i], g[0].data[i], g[0].n[i]);
        double b = bound("e2e", g[0].names[i]);
        printf("e2e %-22s %-22s bf16 vs fp32 max|d|/rms %.4f (bound %.3g)\n", name, g[0].names[i], e2, b);
        CHECK_MSG(e2 <= b, "%s %s: %.4g > %.3g", name, g[0].names[i], e2, b);
        CHECK(e2 > 0); /* the bf16 path really ran */
    }
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 4; i++) free(g[k].data[i]);
    cvx_engine_close(e);
}

/* ---- the table ------------------------------------------------------------------------------------------------ */
static void table_checks(void) {
    cvx_error err;
    cvx_error_clear(&err);
    const char *comps[] = {"t5", "transformer", "pipeline", "e2e", "vae"};
    for (size_t i = 0; i < 5; i++) CHECK(cvx_golden_bf16_component(g_table, comps[i]));
    CHECK(!cvx_golden_bf16_component(g_table, "rng"));
    /* the file in the tree is the one built in */
    json_t *file = cvx_golden_bf16_table("tests/data/bf16_tolerances.json", &err);
    CHECK_MSG(file && json_equal(file, g_table), "%s", cvx_error_message(&err));
    json_decref(file);

    char tmp[512], path[600];
    CHECK(cvx_test_tmpdir(tmp, sizeof tmp) != NULL);
    snprintf(path, sizeof path, "%s/t.json", tmp);
    const char *bad[] = {
        "{",
        "[]",
        "{\"format\": \"other/1\", \"components\": {}}",
        "{\"format\": \"cogvideox-bf16-tolerances/1\"}",
        "{\"format\": \"cogvideox-bf16-tolerances/1\", \"components\": {\"t5\": {}}}",
        "{\"format\": \"cogvideox-bf16-tolerances/1\", \"components\": {\"t5\": {\"default\": {\"atol_rms\": -1, "
        "\"rtol\": 0}}}}",
        "{\"format\": \"cogvideox-bf16-tolerances/1\", \"components\": {\"t5\": {\"default\": {\"atol_rms\": 1, "
        "\"rtol\": 0}, \"tensors\": {\"x\": \"fp16\"}}}}",
        "{\"format\": \"cogvideox-bf16-tolerances/1\", \"components\": {\"e2e\": {\"default\": {\"atol_rms\": 1, "
        "\"rtol\": 0}, \"uint8\": {\"uint8_max_diff\": 3}}}}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        FILE *f = fopen(path, "w");
        fputs(bad[i], f);
        fclose(f);
        cvx_error_clear(&err);
        json_t *t = cvx_golden_bf16_table(path, &err);
        CHECK_MSG(t == NULL && strstr(cvx_error_message(&err), path), "table %zu: %s", i, cvx_error_message(&err));
        json_decref(t);
    }
    cvx_error_clear(&err);
    CHECK(cvx_golden_bf16_table("/nonexistent/bf16.json", &err) == NULL && err.status != CVX_OK);
    cvx_test_rmtree(tmp);

    /* rule substitution: exact stays exact, a float target gets atol_rms·rms(ref), never below the fp32 rule */
    cvx_golden_case c;
    memset(&c, 0, sizeof c);
    c.component = "transformer";
    CHECK(cvx_safetensors_open(&c.expected, GOLDEN "/transformer/a_2b_style/io.safetensors", &err) == CVX_OK);
    json_t *exact = json_pack("{s:b}", "exact", 1), *fp32 = json_pack("{s:f, s:f}", "atol", 1e-5, "rtol", 1e-5);
    json_t *r = cvx_golden_bf16_rule(g_table, &c, "output", exact);
    CHECK(r == exact);
    json_decref(r);
    r = cvx_golden_bf16_rule(g_table, &c, "output", fp32);
    const cvx_st_tensor *ref = cvx_safetensors_find(c.expected, "output");
    if (ref && r) {
        cvx_tensor v = cvx_st_view(ref);
        double sq = 0;
        int64_t n = cvx_tensor_numel(&v);
        for (int64_t i = 0; i < n; i++) sq += cvx_tensor_get(&v, i) * cvx_tensor_get(&v, i);
        double want = bound("transformer", "output") * sqrt(sq / (double)n);
        double atol = json_number_value(json_object_get(r, "atol"));
        CHECK_MSG(fabs(atol - want) <= 1e-9 * want, "atol %g, want %g", atol, want);
        CHECK(json_number_value(json_object_get(r, "rtol")) >= 1e-5);
    }
    json_decref(r);
    c.component = "rng"; /* no bf16 path: the case's rule */
    r = cvx_golden_bf16_rule(g_table, &c, "output", fp32);
    CHECK(r == fp32);
    json_decref(r);
    json_decref(exact);
    json_decref(fp32);
    cvx_safetensors_close(c.expected);
}

int main(void) {
    cvx_error err;
    cvx_error_clear(&err);
    g_table = cvx_golden_bf16_table(NULL, &err);
    CHECK_MSG(g_table != NULL, "built-in table: %s", cvx_error_message(&err));
    if (!g_table) return cvx_test_finish("test_bf16");
    g_pool = cvx_pool_new(0);
    table_checks();
    char names[32][256];
    int n = list_cases(GOLDEN "/transformer", names, 32);
    CHECK(n > 0);
    for (int i = 0; i < n; i++) transformer_case(names[i]);
    n = list_cases(GOLDEN "/t5", names, 32);
    CHECK(n > 0);
    for (int i = 0; i < n; i++) t5_case(names[i]);
    n = list_cases(GOLDEN "/e2e", names, 32);
    CHECK(n > 0);
    for (int i = 0; i < n; i++) engine_case(names[i]);
    cvx_pool_free(g_pool);
    json_decref(g_table);
    return cvx_test_finish("test_bf16");
}
