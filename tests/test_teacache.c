/* TeaCache step skipping (cvx_generate_params.cache) on the tiny golden model folders:
 *  - cvx_cache_parse / cvx_cache_format: every accepted form, round trips, the error messages;
 *  - the steps whose transformer ran (cvx_video.computed_steps) equal the rule of TeaCache's cogvideox.py
 *    recomputed here independently: the time embedding per step in plain C from the safetensors weights
 *    (time_embedding.linear_1/linear_2), the scheduler's timesteps and diffusers' get_timestep_embedding with the
 *    config's flip_sin_to_cos/freq_shift; the published coefficients (2b, and 5b on a rotary copy of the folder)
 *    and identity coefficients 0,0,0,1,0 at thresholds 0.05, 0.3, 1, 5; fp32 on both folders (f32 and f16
 *    weights), bf16 (activations and weights rounded to bf16 before the products, as the engine) where the
 *    kernels have it natively;
 *  - threshold 0 with coefficients 0,0,0,1,0 (the polynomial is never negative: every step runs) gives frames
 *    bit-identical to no cache;
 *  - a run cancelled right after a skipped step and resumed from its checkpoint, and resumes from every
 *    checkpoint taken after a skipped step, give the uninterrupted video (and computed steps) bit for bit;
 *    blobs of cache runs refused by runs with other cache settings or without a cache (and the reverse). */
#include <jansson.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "cogvideox.h"
#include "core/error.h"
#include "core/half.h"
#include "diffusion/pipeline.h"
#include "diffusion/scheduler.h"
#include "diffusion/transformer.h"
#include "io/safetensors.h"
#include "testlib.h"

#define MODEL32 "tests/data/golden/e2e/t2v_2b_tiny_f32_negprompt/model"
#define MODEL16 "tests/data/golden/e2e/t2v_2b_tiny_f16/model"
#define STEPS 20
#define MAX_STEPS 64

/* ---- the parser ---------------------------------------------------------------------------------------- */

static void test_parse(void) {
    cvx_cache_params c, d;
    char err[256], buf[400];
    CHECK(cvx_generate_params_default().cache.mode == CVX_CACHE_OFF);
    struct {
        const char *spec;
        cvx_cache_mode mode;
        double threshold;
        int has;
        double c0, c4;
        const char *canonical;
    } ok[] = {
        {"off", CVX_CACHE_OFF, 0, 0, 0, 0, "off"},
        {"none", CVX_CACHE_OFF, 0, 0, 0, 0, "off"},
        {"OFF", CVX_CACHE_OFF, 0, 0, 0, 0, "off"},
        {"teacache", CVX_CACHE_TEACACHE, 0.1, 0, 0, 0, "teacache:0.1"},
        {"TeaCache:0.2", CVX_CACHE_TEACACHE, 0.2, 0, 0, 0, "teacache:0.2"},
        {"teacache:0", CVX_CACHE_TEACACHE, 0, 0, 0, 0, "teacache:0"},
        {"teacache:1e-1", CVX_CACHE_TEACACHE, 0.1, 0, 0, 0, "teacache:0.1"},
        {"teacache:0.3:0,0,0,1,0", CVX_CACHE_TEACACHE, 0.3, 1, 0, 0, "teacache:0.3:0,0,0,1,0"},
        {"teacache:0.1:-3.10658903e+01,2.54732368e+01,-5.92380459e+00,1.75769064e+00,-3.61568434e-03",
         CVX_CACHE_TEACACHE, 0.1, 1, -31.0658903, -3.61568434e-03,
         "teacache:0.1:-31.0658903,25.4732368,-5.92380459,1.75769064,-0.00361568434"},
    };
    for (size_t i = 0; i < sizeof ok / sizeof ok[0]; i++) {
        memset(&c, 0x5a, sizeof c);
        cvx_status st = cvx_cache_parse(ok[i].spec, &c, err, sizeof err);
        CHECK_MSG(st == CVX_OK, "%s: %s", ok[i].spec, err);
        if (st != CVX_OK) continue;
        CHECK_MSG(c.mode == ok[i].mode && c.has_coefficients == ok[i].has, "%s", ok[i].spec);
        if (c.mode == CVX_CACHE_TEACACHE) CHECK_MSG(c.threshold == ok[i].threshold, "%s: %.17g", ok[i].spec, c.threshold);
        if (ok[i].has) CHECK(c.coefficients[0] == ok[i].c0 && c.coefficients[4] == ok[i].c4 && c.coefficients[3] != 0);
        cvx_cache_format(&c, buf, sizeof buf);
        CHECK_MSG(!strcmp(buf, ok[i].canonical), "%s formats as %s", ok[i].spec, buf);
        CHECK(cvx_cache_parse(buf, &d, err, sizeof err) == CVX_OK);
        CHECK(d.mode == c.mode && (c.mode == CVX_CACHE_OFF || (d.threshold == c.threshold &&
                                                               d.has_coefficients == c.has_coefficients)));
        for (int k = 0; c.has_coefficients && k < 5; k++) CHECK(d.coefficients[k] == c.coefficients[k]);
    }
    /* a value that needs 17 digits still reads back exactly */
    c.mode = CVX_CACHE_TEACACHE;
    c.threshold = 0.1 + 1e-17 * 3;
    c.has_coefficients = 1;
    for (int k = 0; k < 5; k++) c.coefficients[k] = 1.0 / (k + 3);
    cvx_cache_format(&c, buf, sizeof buf);
    CHECK(cvx_cache_parse(buf, &d, err, sizeof err) == CVX_OK && d.threshold == c.threshold &&
          d.coefficients[2] == c.coefficients[2]);

    struct {
        const char *spec, *message;
    } bad[] = {
        {"", "empty cache setting"},
        {NULL, "empty cache setting"},
        {"teacach", "unknown cache mode 'teacach'"},
        {"fastcache:0.1", "unknown cache mode 'fastcache'"},
        {"teacache:", "teacache threshold '' is not a number"},
        {"teacache:abc", "teacache threshold 'abc' is not a number"},
        {"teacache:0.1x", "teacache threshold '0.1x' is not a number"},
        {"teacache: 0.1", "teacache threshold ' 0.1' is not a number"},
        {"teacache:-0.5", "teacache threshold -0.5 must not be negative"},
        {"teacache:inf", "teacache threshold 'inf' is not finite"},
        {"teacache:nan", "teacache threshold 'nan' is not finite"},
        {"teacache:1e999", "teacache threshold '1e999' is not finite"},
        {"teacache:0.1:", "teacache needs 5 coefficients C4,C3,C2,C1,C0 (highest power first), got 1"},
        {"teacache:0.1:1,2,3,4", "got 4"},
        {"teacache:0.1:1,2,3,4,5,6", "got 6"},
        {"teacache:0.1:1,2,,4,5", "teacache coefficient 3 '' is not a number"},
        {"teacache:0.1:1,2,3,4,x", "teacache coefficient 5 'x' is not a number"},
        {"teacache:0.1:1,inf,3,4,5", "teacache coefficient 2 'inf' is not finite"},
        {"teacache:0.1:1,2,3,4,5:6", "at most THRESHOLD:C4,C3,C2,C1,C0"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        c.mode = CVX_CACHE_TEACACHE;
        c.threshold = 0.7;
        err[0] = 0;
        CHECK_MSG(cvx_cache_parse(bad[i].spec, &c, err, sizeof err) == CVX_ERR_INVALID_ARGUMENT, "%s accepted",
                  bad[i].spec ? bad[i].spec : "NULL");
        CHECK_MSG(strstr(err, bad[i].message) != NULL, "%s: message '%s'", bad[i].spec ? bad[i].spec : "NULL", err);
        CHECK(c.mode == CVX_CACHE_TEACACHE && c.threshold == 0.7); /* unchanged */
    }
    CHECK(cvx_cache_parse("x", &c, NULL, 0) == CVX_ERR_INVALID_ARGUMENT); /* no message buffer */
}

/* ---- the rule, recomputed -------------------------------------------------------------------------------- */

typedef struct {
    int D, E, flip, rotary;
    double shift;
    float *w1, *b1, *w2, *b2; /* [E, D], [E], [E, E], [E] */
    int64_t ts[MAX_STEPS + 2];
    int64_t n_ts;
} ref_model;

static float *tensor_f32(const cvx_weights *w, const char *name, int64_t numel) {
    const cvx_st_tensor *t = cvx_weights_find(w, name);
    CHECK_MSG(t != NULL, "%s missing", name);
    if (!t) return NULL;
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    CHECK_MSG(n == numel, "%s: %lld values", name, (long long)n);
    float *out = malloc(sizeof(float) * (size_t)numel);
    for (int64_t i = 0; i < numel && n == numel; i++) {
        if (t->dtype == CVX_DTYPE_F32) memcpy(&out[i], (const char *)t->data + 4 * i, 4);
        else if (t->dtype == CVX_DTYPE_F16) out[i] = cvx_f16_to_f32(((const uint16_t *)t->data)[i]);
        else if (t->dtype == CVX_DTYPE_BF16) out[i] = cvx_bf16_to_f32(((const uint16_t *)t->data)[i]);
        else out[i] = NAN;
    }
    return out;
}

static int ref_open(ref_model *r, const char *dir, int steps) {
    memset(r, 0, sizeof *r);
    char path[1024];
    snprintf(path, sizeof path, "%s/transformer/config.json", dir);
    json_t *cfg = json_load_file(path, 0, NULL);
    CHECK_MSG(cfg != NULL, "%s", path);
    if (!cfg) return -1;
    r->D = (int)(json_integer_value(json_object_get(cfg, "num_attention_heads")) *
                 json_integer_value(json_object_get(cfg, "attention_head_dim")));
    r->E = (int)json_integer_value(json_object_get(cfg, "time_embed_dim"));
    r->flip = json_is_true(json_object_get(cfg, "flip_sin_to_cos"));
    r->shift = json_number_value(json_object_get(cfg, "freq_shift"));
    r->rotary = json_is_true(json_object_get(cfg, "use_rotary_positional_embeddings"));
    json_decref(cfg);
    snprintf(path, sizeof path, "%s/transformer/diffusion_pytorch_model.safetensors", dir);
    cvx_weights *w = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    CHECK_MSG(cvx_weights_open(&w, path, &err) == CVX_OK, "%s", cvx_error_message(&err));
    if (!w) return -1;
    r->w1 = tensor_f32(w, "time_embedding.linear_1.weight", (int64_t)r->E * r->D);
    r->b1 = tensor_f32(w, "time_embedding.linear_1.bias", r->E);
    r->w2 = tensor_f32(w, "time_embedding.linear_2.weight", (int64_t)r->E * r->E);
    r->b2 = tensor_f32(w, "time_embedding.linear_2.bias", r->E);
    cvx_weights_close(w);
    /* the scheduler's timesteps */
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
    json_t *sc = json_load_file(path, 0, NULL);
    cvx_scheduler *s = NULL;
    CHECK(sc && cvx_scheduler_create(&s, sc, CVX_SCHED_AUTO, path, &err) == CVX_OK);
    CHECK(s && cvx_scheduler_timesteps_for(s, steps, r->ts, &r->n_ts, &err) == CVX_OK && r->n_ts == steps);
    cvx_scheduler_free(s);
    json_decref(sc);
    return r->w1 && r->b1 && r->w2 && r->b2 && r->n_ts == steps ? 0 : -1;
}

static void ref_close(ref_model *r) { free(r->w1), free(r->b1), free(r->w2), free(r->b2); }

static float bf16_round(float x) { return cvx_bf16_to_f32(cvx_f32_to_bf16(x)); }

/* y[o] = b[o] + Σ W[o][i]·x[i], the products of the (optionally bf16-rounded) operands summed in double. */
static void ref_linear(float *y, const float *x, const float *W, const float *b, int in, int out, int bf16) {
    for (int o = 0; o < out; o++) {
        double acc = 0;
        for (int i = 0; i < in; i++) {
            float w = W[(size_t)o * in + i], v = x[i];
            if (bf16) w = bf16_round(w), v = bf16_round(v);
            acc += (double)w * (double)v;
        }
        y[o] = (float)(acc + (double)b[o]);
    }
}

/* time_proj (diffusers get_timestep_embedding, float32) → linear_1 → SiLU → linear_2 = emb [E] */
static void ref_emb(const ref_model *r, int64_t t, int bf16, float *emb) {
    int half = r->D / 2;
    float *proj = calloc((size_t)r->D, sizeof(float)), *h = calloc((size_t)r->E, sizeof(float));
    for (int i = 0; i < half; i++) {
        float exponent = (float)(-log(10000.0)) * (float)i;
        exponent = exponent / (float)((double)half - r->shift);
        float arg = (float)t * expf(exponent);
        float sn = sinf(arg), cs = cosf(arg);
        proj[i] = r->flip ? cs : sn;           /* cat([sin, cos]); flip: cat([cos, sin]) */
        proj[half + i] = r->flip ? sn : cs;
    }
    ref_linear(h, proj, r->w1, r->b1, r->D, r->E, bf16);
    for (int e = 0; e < r->E; e++) h[e] = h[e] / (1.0f + expf(-h[e]));
    ref_linear(emb, h, r->w2, r->b2, r->E, r->E, bf16);
    free(proj);
    free(h);
}

/* The rule of teacache_forward over the CFG batch (two identical rows). Returns the number of computed steps
 * written to `computed`; *margin gets the closest |acc − threshold| of a decision relative to max(1, threshold). */
static int ref_rule(const ref_model *r, int bf16, double threshold, const double c[5], int *computed,
                    double *margin) {
    const int E = r->E, n = 2 * E, steps = (int)r->n_ts;
    float *emb = calloc((size_t)n, sizeof(float)), *prev = calloc((size_t)n, sizeof(float));
    double acc = 0;
    int count = 0;
    *margin = INFINITY;
    for (int i = 0; i < steps; i++) {
        ref_emb(r, r->ts[i], bf16, emb);
        memcpy(emb + E, emb, sizeof(float) * (size_t)E);
        int calc;
        if (i == 0 || i == steps - 1) {
            calc = 1;
            acc = 0;
        } else {
            double sd = 0, sp = 0;
            for (int k = 0; k < n; k++) sd += fabsf(emb[k] - prev[k]), sp += fabsf(prev[k]);
            float rel = (float)(sd / n) / (float)(sp / n);
            double x = rel, y = 0;
            for (int k = 0; k < 5; k++) y = y * x + c[k];
            acc += y;
            double m = fabs(acc - threshold) / (threshold > 1 ? threshold : 1);
            if (m < *margin) *margin = m;
            calc = !(acc < threshold);
            if (calc) acc = 0;
        }
        memcpy(prev, emb, sizeof(float) * (size_t)n);
        if (calc) computed[count++] = i;
    }
    free(emb);
    free(prev);
    return count;
}

static cvx_generate_params base_params(const char *cache) {
    cvx_generate_params p = cvx_generate_params_default();
    p.prompt = "a lighthouse in a storm";
    p.negative_prompt = "blurry";
    p.steps = STEPS;
    p.num_frames = 9;
    p.height = 32;
    p.width = 48;
    p.seed = 7;
    char err[256];
    if (cache) CHECK_MSG(cvx_cache_parse(cache, &p.cache, err, sizeof err) == CVX_OK, "%s", err);
    return p;
}

static void format_steps(const int *s, int n, char *buf, size_t size) {
    size_t k = 0;
    buf[0] = 0;
    for (int i = 0; i < n && k + 8 < size; i++) k += (size_t)snprintf(buf + k, size - k, "%s%d", i ? "," : "", s[i]);
}

static void test_rule(const char *dir, const char *label, int bf16) {
    ref_model r;
    if (ref_open(&r, dir, STEPS) != 0) {
        ref_close(&r);
        return;
    }
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = 2;
    cvx_engine *e = NULL;
    char eb[512];
    CHECK_MSG(cvx_engine_open(&e, dir, &ep, eb, sizeof eb) == CVX_OK, "%s", eb);
    if (!e) {
        ref_close(&r);
        return;
    }
    double published[5];
    const double p2b[5] = {-3.10658903e+01, 2.54732368e+01, -5.92380459e+00, 1.75769064e+00, -3.61568434e-03};
    const double p5b[5] = {-1.53880483e+03, 8.43202495e+02, -1.34363087e+02, 7.97131516e+00, -5.23162339e-02};
    memcpy(published, r.rotary ? p5b : p2b, sizeof published);
    const double identity[5] = {0, 0, 0, 1, 0};
    struct {
        const char *spec;
        double threshold;
        const double *c;
    } cases[] = {{"teacache", 0.1, published},          {"teacache:0.2", 0.2, published},
                 {"teacache:0.05:0,0,0,1,0", 0.05, identity}, {"teacache:0.3:0,0,0,1,0", 0.3, identity},
                 {"teacache:1:0,0,0,1,0", 1.0, identity},   {"teacache:5:0,0,0,1,0", 5.0, identity}};
    int skipped_somewhere = 0;
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        int want[MAX_STEPS];
        double margin;
        int nw = ref_rule(&r, bf16, cases[i].threshold, cases[i].c, want, &margin);
        cvx_generate_params p = base_params(cases[i].spec);
        p.precision = bf16 ? CVX_PRECISION_BF16 : CVX_PRECISION_FP32;
        cvx_video v;
        cvx_status st = cvx_generate(e, &p, &v);
        CHECK_MSG(st == CVX_OK, "%s %s: %s", label, cases[i].spec, cvx_engine_last_error(e));
        if (st != CVX_OK) continue;
        char a[512], b[512];
        format_steps(v.computed_steps, v.num_computed_steps, a, sizeof a);
        format_steps(want, nw, b, sizeof b);
        /* a decision closer to the threshold than the rounding of the two computations (f32 sums in another order:
         * ~1e-6 of emb) could flip either way */
        if (margin < 1e-5) {
            fprintf(stderr, "%s %s: a decision is %.2g from the threshold, too close to compare (engine %s, rule %s)\n",
                    label, cases[i].spec, margin, a, b);
        } else {
            CHECK_MSG(!strcmp(a, b), "%s %s: engine computed [%s], the rule gives [%s]", label, cases[i].spec, a, b);
        }
        printf("%-22s %-24s computed [%s]\n", label, cases[i].spec, a);
        if (v.num_computed_steps < STEPS) skipped_somewhere = 1;
        cvx_video_free(&v);
    }
    CHECK_MSG(skipped_somewhere, "%s: no configuration skipped a step", label);
    cvx_engine_close(e);
    ref_close(&r);
}

/* ---- identity at threshold 0, resume ----------------------------------------------------------------------- */

typedef struct {
    void *blob[MAX_STEPS + 1];
    size_t size[MAX_STEPS + 1];
    int calls;
} ckpts;

static cvx_status keep(const void *state, size_t size, int step, int steps, void *user_data) {
    ckpts *c = user_data;
    c->calls++;
    if (step < 1 || step > MAX_STEPS) return CVX_ERR_INTERNAL;
    free(c->blob[step]);
    c->blob[step] = malloc(size);
    if (!c->blob[step]) return CVX_ERR_OUT_OF_MEMORY;
    memcpy(c->blob[step], state, size);
    c->size[step] = size;
    return CVX_OK;
}

typedef struct {
    int cancel_at, last_step;
} stopper;

static void on_progress(const cvx_progress *p, void *user_data) {
    if (p->phase == CVX_PHASE_DENOISE) ((stopper *)user_data)->last_step = p->step;
}

static int cancel_when(void *user_data) {
    stopper *s = user_data;
    return s->cancel_at && s->last_step >= s->cancel_at;
}

static int same_video(const cvx_video *a, const cvx_video *b) {
    size_t bytes = (size_t)a->num_frames * a->height * a->width * 3;
    if (a->num_frames != b->num_frames || a->height != b->height || a->width != b->width ||
        memcmp(a->frames, b->frames, bytes))
        return 0;
    return a->num_computed_steps == b->num_computed_steps &&
           !memcmp(a->computed_steps, b->computed_steps, sizeof(int) * (size_t)a->num_computed_steps);
}

static void test_identity_and_resume(void) {
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = 2;
    cvx_engine *e = NULL;
    char eb[512];
    CHECK_MSG(cvx_engine_open(&e, MODEL32, &ep, eb, sizeof eb) == CVX_OK, "%s", eb);
    if (!e) return;

    /* threshold 0, identity polynomial: every step runs, and the frames are those without a cache */
    cvx_generate_params p0 = base_params(NULL), p1 = base_params("teacache:0:0,0,0,1,0");
    cvx_video v0, v1;
    CHECK(cvx_generate(e, &p0, &v0) == CVX_OK);
    CHECK(cvx_generate(e, &p1, &v1) == CVX_OK);
    CHECK(v0.num_computed_steps == STEPS && v1.num_computed_steps == STEPS);
    for (int i = 0; i < v0.num_computed_steps; i++) CHECK(v0.computed_steps[i] == i);
    CHECK_MSG(same_video(&v0, &v1), "threshold 0 with 0,0,0,1,0 changed the frames");
    cvx_video_free(&v1);

    /* checkpoints of a run that skips: resuming after any step, skipped ones included, gives the same video */
    const char *spec = "teacache:1:0,0,0,1,0";
    cvx_generate_params p = base_params(spec);
    ckpts c;
    memset(&c, 0, sizeof c);
    p.checkpoint = keep;
    p.checkpoint_user_data = &c;
    cvx_video full;
    CHECK_MSG(cvx_generate(e, &p, &full) == CVX_OK, "%s", cvx_engine_last_error(e));
    CHECK(c.calls == STEPS);
    CHECK_MSG(full.num_computed_steps > 2 && full.num_computed_steps < STEPS, "%d computed",
              full.num_computed_steps);
    unsigned char ran[MAX_STEPS] = {0};
    for (int i = 0; i < full.num_computed_steps; i++) ran[full.computed_steps[i]] = 1;
    /* the blob of a cache run still gives its latents (bench deviation's accessor) */
    const float *lat;
    int64_t n;
    int step, steps;
    cvx_error err;
    cvx_error_clear(&err);
    CHECK(cvx_pipeline_checkpoint_latents(c.blob[3], c.size[3], &lat, &n, &step, &steps, &err) == CVX_OK &&
          step == 3 && steps == STEPS);
    CHECK(cvx_pipeline_checkpoint_latents(c.blob[3], c.size[3] - 1, &lat, &n, &step, &steps, &err) == CVX_ERR_FORMAT);
    int resumed_after_skip = 0;
    for (int k = 1; k < STEPS; k++) {
        if (ran[k - 1] && k != 1 && k % 5) continue; /* after every skipped step, and a few computed ones */
        cvx_generate_params r = base_params(spec);
        r.resume_state = c.blob[k];
        r.resume_state_size = c.size[k];
        cvx_video v;
        cvx_status st = cvx_generate(e, &r, &v);
        CHECK_MSG(st == CVX_OK, "resume after step %d: %s", k, cvx_engine_last_error(e));
        if (st != CVX_OK) continue;
        CHECK_MSG(same_video(&v, &full), "resuming after step %d (%s) gives another video", k,
                  ran[k - 1] ? "computed" : "skipped");
        resumed_after_skip += !ran[k - 1];
        cvx_video_free(&v);
    }
    CHECK(resumed_after_skip > 0);

    /* cancelled right after a skipped step, resumed from the last checkpoint it stored */
    int skip_at = -1;
    for (int i = 1; i < STEPS - 1 && skip_at < 0; i++)
        if (!ran[i]) skip_at = i;
    CHECK(skip_at > 0);
    if (skip_at > 0) {
        ckpts cc;
        memset(&cc, 0, sizeof cc);
        stopper sp = {skip_at + 1, 0};
        cvx_generate_params q = base_params(spec);
        q.checkpoint = keep;
        q.checkpoint_user_data = &cc;
        q.progress = on_progress;
        q.progress_user_data = &sp;
        q.should_cancel = cancel_when;
        q.cancel_user_data = &sp;
        CHECK(cvx_generate(e, &q, NULL) == CVX_ERR_CANCELLED);
        CHECK_MSG(cc.calls == skip_at + 1, "%d checkpoints, cancelled after step %d", cc.calls, skip_at + 1);
        cvx_generate_params r = base_params(spec);
        r.resume_state = cc.blob[cc.calls];
        r.resume_state_size = cc.size[cc.calls];
        cvx_video v;
        CHECK_MSG(cvx_generate(e, &r, &v) == CVX_OK, "%s", cvx_engine_last_error(e));
        CHECK_MSG(same_video(&v, &full), "cancelled after skipped step %d and resumed: another video", skip_at);
        cvx_video_free(&v);
        for (int k = 0; k <= MAX_STEPS; k++) free(cc.blob[k]);
    }

    /* blobs and cache settings must match */
    cvx_generate_params o = base_params("teacache:0.9:0,0,0,1,0");
    o.resume_state = c.blob[4];
    o.resume_state_size = c.size[4];
    CHECK(cvx_generate(e, &o, NULL) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(cvx_engine_last_error(e), "other generation parameters") != NULL);
    o = base_params(NULL);
    o.resume_state = c.blob[4];
    o.resume_state_size = c.size[4];
    CHECK(cvx_generate(e, &o, NULL) == CVX_ERR_INVALID_ARGUMENT);
    o = base_params(spec);
    o.resume_state = c.blob[4];
    o.resume_state_size = c.size[4] - 8; /* the cache section cut short */
    CHECK(cvx_generate(e, &o, NULL) == CVX_ERR_FORMAT);
    /* a blob without a cache (an earlier version's, or cache off) does not resume a cache run */
    ckpts plain;
    memset(&plain, 0, sizeof plain);
    cvx_generate_params q = base_params(NULL);
    q.steps = 3;
    q.checkpoint = keep;
    q.checkpoint_user_data = &plain;
    CHECK(cvx_generate(e, &q, NULL) == CVX_OK && plain.calls == 3);
    CHECK(plain.size[2] < c.size[2]);
    o = base_params(spec);
    o.steps = 3;
    o.resume_state = plain.blob[2];
    o.resume_state_size = plain.size[2];
    CHECK(cvx_generate(e, &o, NULL) == CVX_ERR_INVALID_ARGUMENT);
    /* and it still resumes a run without a cache, to the uninterrupted video */
    cvx_video a, b;
    q.checkpoint = NULL;
    CHECK(cvx_generate(e, &q, &a) == CVX_OK);
    q.resume_state = plain.blob[2];
    q.resume_state_size = plain.size[2];
    CHECK(cvx_generate(e, &q, &b) == CVX_OK && same_video(&a, &b) && b.num_computed_steps == 3);
    cvx_video_free(&a);
    cvx_video_free(&b);
    for (int k = 0; k <= MAX_STEPS; k++) free(plain.blob[k]);

    /* invalid settings reaching the library directly */
    o = base_params(NULL);
    o.cache.mode = (cvx_cache_mode)5;
    CHECK(cvx_generate(e, &o, NULL) == CVX_ERR_INVALID_ARGUMENT && strstr(cvx_engine_last_error(e), "cache mode"));
    o.cache.mode = CVX_CACHE_TEACACHE;
    o.cache.threshold = NAN;
    CHECK(cvx_generate(e, &o, NULL) == CVX_ERR_INVALID_ARGUMENT && strstr(cvx_engine_last_error(e), "threshold"));
    o.cache.threshold = 0.1;
    o.cache.has_coefficients = 1;
    o.cache.coefficients[2] = INFINITY;
    CHECK(cvx_generate(e, &o, NULL) == CVX_ERR_INVALID_ARGUMENT && strstr(cvx_engine_last_error(e), "coefficient"));

    for (int k = 0; k <= MAX_STEPS; k++) free(c.blob[k]);
    cvx_video_free(&full);
    cvx_video_free(&v0);
    cvx_engine_close(e);
}

/* The transformer with a state attached: a skipped forward with the inputs of the computed one before it gives
 * that output again (x + (x_after − x) up to rounding), emb_prev follows every forward, and a state for other
 * shapes is refused. */
static void test_forward(void) {
    cvx_dit *m = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    CHECK_MSG(cvx_dit_open_dir(&m, MODEL32 "/transformer", &err) == CVX_OK, "%s", cvx_error_message(&err));
    if (!m) return;
    const cvx_dit_config *cfg = cvx_dit_get_config(m);
    const int64_t B = 2, F = 2, H = 4, W = 6, L = cfg->max_text_seq_length, C = cfg->in_channels;
    const int64_t S = L + F * (H / cfg->patch_size) * (W / cfg->patch_size), nl = B * F * C * H * W;
    float *lat = malloc(sizeof(float) * (size_t)nl), *text = malloc(sizeof(float) * (size_t)(B * L * cfg->text_embed_dim));
    float *o1 = malloc(sizeof(float) * (size_t)nl), *o2 = malloc(sizeof(float) * (size_t)nl);
    for (int64_t i = 0; i < nl; i++) lat[i] = (float)sin(0.37 * (double)i);
    for (int64_t i = 0; i < B * L * cfg->text_embed_dim; i++) text[i] = (float)cos(0.11 * (double)i);
    int64_t ts[2] = {901, 901};
    const double identity[5] = {0, 0, 0, 1, 0};
    cvx_dit_teacache tc;
    CHECK(cvx_dit_teacache_init(&tc, cfg, B, S, 1e9, identity, &err) == CVX_OK);
    cvx_dit_set_teacache(m, &tc);
    cvx_dit_call call = {B, F, H, W, L, lat, text, ts, NULL, NULL, o1, NULL, NULL, NULL, NULL, NULL};
    tc.step = 0;
    tc.num_steps = 3;
    CHECK(cvx_dit_forward(m, &call) == CVX_OK && tc.computed == 1 && tc.has_residual && tc.has_prev);
    CHECK(isnan(tc.rel_l1) && tc.acc == 0);
    tc.step = 1;
    call.out = o2;
    CHECK(cvx_dit_forward(m, &call) == CVX_OK && tc.computed == 0 && tc.rel_l1 == 0 && tc.acc == 0);
    double max_diff = 0, max_abs = 0;
    for (int64_t i = 0; i < nl; i++) {
        if (fabs((double)o1[i] - o2[i]) > max_diff) max_diff = fabs((double)o1[i] - o2[i]);
        if (fabs((double)o1[i]) > max_abs) max_abs = fabs((double)o1[i]);
    }
    CHECK_MSG(max_abs > 0 && max_diff <= 1e-5 * max_abs, "skipped forward differs by %g (max %g)", max_diff, max_abs);
    /* the last step always runs */
    ts[0] = ts[1] = 1;
    tc.step = 2;
    CHECK(cvx_dit_forward(m, &call) == CVX_OK && tc.computed == 1 && tc.acc == 0);
    /* a state for another batch */
    cvx_dit_teacache other;
    CHECK(cvx_dit_teacache_init(&other, cfg, 1, S, 0.1, identity, &err) == CVX_OK);
    cvx_dit_set_teacache(m, &other);
    CHECK(cvx_dit_forward(m, &call) == CVX_ERR_SHAPE);
    /* a middle step with no state carried over */
    other.B = B;
    cvx_dit_teacache_release(&other);
    CHECK(cvx_dit_teacache_init(&other, cfg, B, S, 0.1, identity, &err) == CVX_OK);
    other.step = 1;
    other.num_steps = 3;
    cvx_dit_set_teacache(m, &other);
    CHECK(cvx_dit_forward(m, &call) == CVX_ERR_INVALID_ARGUMENT);
    cvx_dit_set_teacache(m, NULL);
    cvx_dit_teacache_release(&other);
    cvx_dit_teacache_release(&tc);
    free(lat), free(text), free(o1), free(o2);
    cvx_dit_free(m);
}

/* A copy of the f32 folder whose transformer uses rotary positions (the weights are the same tensors): the 5b
 * coefficients apply. */
static int make_rotary_copy(const char *tmp, char *out, size_t size) {
    char src[1100], path[1400], cwd[1024];
    if (!getcwd(cwd, sizeof cwd)) return -1;
    snprintf(src, sizeof src, "%s/%s", cwd, MODEL32);
    snprintf(out, size, "%s/rotary", tmp);
    const char *links[] = {"scheduler", "text_encoder", "tokenizer", "vae", "model_index.json"};
    snprintf(path, sizeof path, "%s/transformer", out);
    char cmd[4000];
    snprintf(cmd, sizeof cmd, "mkdir -p '%s'", path);
    if (system(cmd) != 0) return -1;
    for (size_t i = 0; i < sizeof links / sizeof links[0]; i++) {
        char a[1400], b[1400];
        snprintf(a, sizeof a, "%s/%s", src, links[i]);
        snprintf(b, sizeof b, "%s/%s", out, links[i]);
        if (symlink(a, b) != 0) return -1;
    }
    char a[1400], b[1400];
    snprintf(a, sizeof a, "%s/transformer/diffusion_pytorch_model.safetensors", src);
    snprintf(b, sizeof b, "%s/transformer/diffusion_pytorch_model.safetensors", out);
    if (symlink(a, b) != 0) return -1;
    snprintf(a, sizeof a, "%s/transformer/config.json", src);
    json_t *cfg = json_load_file(a, 0, NULL);
    if (!cfg) return -1;
    json_object_set_new(cfg, "use_rotary_positional_embeddings", json_true());
    snprintf(b, sizeof b, "%s/transformer/config.json", out);
    int rc = json_dump_file(cfg, b, JSON_INDENT(2));
    json_decref(cfg);
    return rc;
}

int main(void) {
    test_parse();
    test_forward();
    test_rule(MODEL32, "f32 weights, fp32", 0);
    test_rule(MODEL16, "f16 weights, fp32", 0);
    if (cvx_precision_native(CVX_PRECISION_BF16)) {
        test_rule(MODEL32, "f32 weights, bf16", 1);
    } else {
        printf("SKIP bf16: the kernel path %s has no native bf16\n", cvx_isa_name(cvx_isa_active()));
    }
    char tmp[512], rot[1024];
    if (cvx_test_tmpdir(tmp, sizeof tmp)) {
        CHECK(make_rotary_copy(tmp, rot, sizeof rot) == 0);
        test_rule(rot, "rotary (5b coefficients)", 0);
        cvx_test_rmtree(tmp);
    }
    test_identity_and_resume();
    return cvx_test_finish("test_teacache");
}
