/* `cogvideox bench deviation -m DIR`: how far the bf16 path's final denoised latents are from the fp32 path's on
 * a real model folder (issue 9, "Quality bound": the golden bound table covers the tiny golden models only).
 *
 * The same generation (prompt, negative prompt, seed, steps, size, guidance, scheduler) runs twice through the
 * public API, precision fp32 then bf16. The checkpoint callback receives the state blob after every step; the
 * latents [1, F, C, H, W] of step 1 and of the last step are copied out of it (cvx_pipeline_checkpoint_latents),
 * and once the last step's blob has arrived the cancel callback asks the engine to stop, so neither run loads or
 * runs the VAE (CVX_ERR_CANCELLED is the expected outcome).
 *
 * Deviation of bf16 (b) from fp32 (a), over the values finite in both: max |b − a|, rms(b − a), rms(a),
 * rms(b − a) / rms(a), max |b − a| / rms(a) (the measure of docs/bf16-tolerances.md), cosine(a, b), whether
 * the two are bit-identical (they must not be: that would mean bf16 was not used). Seconds per run: setup (from
 * the call to the first denoising step: tokenizer, T5 encode, transformer load and, in bf16, its weight
 * packing) and denoise (first step start to the last step's checkpoint). */
#include <jansson.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include "cogvideox.h"
#include "core/error.h"
#include "core/log.h"
#include "diffusion/pipeline.h"
#include "io/model.h"

int cvx_bench_deviation(const char *model_dir, const cvx_generate_params *gp, int threads, json_t *root);

typedef struct {
    int64_t n;
    float *first, *last; /* [n] latents after step 1 and after the last step */
    int last_step, steps;
    int done;         /* the last step's checkpoint arrived: cancel from now on */
    int decode_seen;  /* a decode-phase progress report came (the stop came too late) */
    double t_start, t_denoise, t_last;
    cvx_error err;
} run_ctx;

static cvx_status on_checkpoint(const void *state, size_t size, int step, int steps, void *user_data) {
    run_ctx *r = user_data;
    const float *lat;
    int64_t n;
    int s, count;
    (void)step, (void)steps;
    cvx_status st = cvx_pipeline_checkpoint_latents(state, size, &lat, &n, &s, &count, &r->err);
    if (st != CVX_OK) return st;
    if (!r->last) {
        r->n = n;
        r->first = malloc(sizeof(float) * (size_t)n);
        r->last = malloc(sizeof(float) * (size_t)n);
        if (!r->first || !r->last) return cvx_fail(&r->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the latents");
    } else if (n != r->n) {
        return cvx_fail(&r->err, CVX_ERR_INTERNAL, "checkpoint holds %lld latent values, the first held %lld",
                        (long long)n, (long long)r->n);
    }
    if (s == 1) memcpy(r->first, lat, sizeof(float) * (size_t)n);
    memcpy(r->last, lat, sizeof(float) * (size_t)n);
    r->last_step = s;
    r->steps = count;
    r->t_last = cvx_time_seconds();
    if (s == count) r->done = 1;
    return CVX_OK;
}

static int on_cancel(void *user_data) { return ((run_ctx *)user_data)->done; }

static void on_progress(const cvx_progress *p, void *user_data) {
    run_ctx *r = user_data;
    if (p->phase == CVX_PHASE_DENOISE && r->t_denoise == 0) r->t_denoise = cvx_time_seconds();
    if (p->phase >= CVX_PHASE_DECODE) r->decode_seen = 1;
}

static void run_free(run_ctx *r) {
    free(r->first);
    free(r->last);
    r->first = r->last = NULL;
}

static int run_one(cvx_engine *e, const cvx_generate_params *base, cvx_precision prec, run_ctx *r) {
    memset(r, 0, sizeof *r);
    cvx_error_clear(&r->err);
    const char *name = prec == CVX_PRECISION_BF16 ? "bf16" : "fp32";
    cvx_generate_params p = *base;
    p.precision = prec;
    p.output_path = p.frames_dir = p.preview_path = NULL;
    p.resume_state = NULL;
    p.resume_state_size = 0;
    p.checkpoint = on_checkpoint;
    p.checkpoint_user_data = r;
    p.should_cancel = on_cancel;
    p.cancel_user_data = r;
    p.progress = on_progress;
    p.progress_user_data = r;
    fprintf(stderr, "cogvideox bench deviation: %s run (%d steps)...\n", name, p.steps);
    r->t_start = cvx_time_seconds();
    cvx_status st = cvx_generate(e, &p, NULL);
    if ((st == CVX_ERR_CANCELLED || st == CVX_OK) && r->done) {
        fprintf(stderr, "cogvideox bench deviation: %s: setup %.3f s, denoise %.3f s\n", name, r->t_denoise - r->t_start,
                r->t_last - r->t_denoise);
        return 0;
    }
    fprintf(stderr, "cogvideox bench deviation: %s run: %s%s%s\n", name, st == CVX_OK ? "ended before its last step" :
            cvx_engine_last_error(e), r->err.message[0] ? ": " : "", r->err.message);
    return st == CVX_ERR_INVALID_ARGUMENT ? 1 : 2; /* a refused parameter is a usage error */
}

static json_t *num(double x) { return isfinite(x) ? json_real(x) : json_null(); }

static json_t *deviation(const float *a, const float *b, int64_t n) {
    double max_abs = 0, sdd = 0, saa = 0, sbb = 0, sab = 0;
    int64_t m = 0, nonfinite = 0, differ = 0;
    for (int64_t i = 0; i < n; i++) {
        if (memcmp(&a[i], &b[i], sizeof(float)) != 0) differ++;
        if (!isfinite(a[i]) || !isfinite(b[i])) {
            nonfinite++;
            continue;
        }
        double x = a[i], y = b[i], d = y - x;
        if (fabs(d) > max_abs) max_abs = fabs(d);
        sdd += d * d, saa += x * x, sbb += y * y, sab += x * y;
        m++;
    }
    double rms_d = m ? sqrt(sdd / (double)m) : NAN, rms_a = m ? sqrt(saa / (double)m) : NAN;
    json_t *o = json_object();
    json_object_set_new(o, "max_abs", num(m ? max_abs : NAN));
    json_object_set_new(o, "rms_diff", num(rms_d));
    json_object_set_new(o, "rms_fp32", num(rms_a));
    json_object_set_new(o, "relative_rms", num(rms_a > 0 ? rms_d / rms_a : NAN));
    json_object_set_new(o, "max_abs_over_rms_fp32", num(rms_a > 0 ? max_abs / rms_a : NAN));
    json_object_set_new(o, "cosine", num(saa > 0 && sbb > 0 ? sab / sqrt(saa * sbb) : NAN));
    json_object_set_new(o, "identical", json_boolean(differ == 0));
    json_object_set_new(o, "differing_fraction", json_real((double)differ / (double)n));
    json_object_set_new(o, "nonfinite", json_integer(nonfinite));
    return o;
}

static json_t *run_json(const run_ctx *r) {
    json_t *o = json_object();
    json_object_set_new(o, "setup_seconds", json_real(r->t_denoise - r->t_start));
    json_object_set_new(o, "denoise_seconds", json_real(r->t_last - r->t_denoise));
    json_object_set_new(o, "seconds_per_step", json_real((r->t_last - r->t_denoise) / r->steps));
    json_object_set_new(o, "stopped_before_decode", json_boolean(!r->decode_seen));
    return o;
}

int cvx_bench_deviation(const char *model_dir, const cvx_generate_params *gp, int threads, json_t *root) {
    /* The latent shape, from the configs the way the engine derives it (the blob holds only the count). */
    cvx_model *m = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    cvx_model_open_params mp = cvx_model_open_params_default();
    mp.check_weights = 0;
    if (cvx_model_open(&m, model_dir, &mp, &err) != CVX_OK) {
        fprintf(stderr, "cogvideox bench deviation: %s\n", cvx_error_message(&err));
        return 2; /* a model failure */
    }
    const cvx_model_component *tr = cvx_model_component_get(m, "transformer");
    const cvx_model_component *vc = cvx_model_component_get(m, "vae");
    int64_t spatial = (int64_t)1 << (vc->cfg.vae.n_blocks - 1), tc = vc->cfg.vae.temporal_compression_ratio;
    cvx_model_info mi; /* frames 0: the model's default, as the engine resolves it */
    cvx_model_info_of(m, model_dir, &mi);
    int frames = gp->num_frames ? gp->num_frames : mi.default_frames;
    int64_t shape[5] = {1, tc > 0 ? (frames - 1) / tc + 1 : 0, tr->cfg.transformer.in_channels,
                        gp->height ? gp->height / spatial : tr->cfg.transformer.sample_height,
                        gp->width ? gp->width / spatial : tr->cfg.transformer.sample_width};
    cvx_model_close(m);

    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = threads;
    cvx_engine *e = NULL;
    char eb[1024] = "";
    if (cvx_engine_open(&e, model_dir, &ep, eb, sizeof eb)) {
        fprintf(stderr, "cogvideox bench deviation: %s\n", eb);
        return 2;
    }
    run_ctx r32, r16;
    int rc = run_one(e, gp, CVX_PRECISION_FP32, &r32);
    if (rc == 0) rc = run_one(e, gp, CVX_PRECISION_BF16, &r16);
    else memset(&r16, 0, sizeof r16);
    cvx_engine_close(e);
    if (rc == 0 && (r16.n != r32.n || r16.steps != r32.steps)) {
        fprintf(stderr, "cogvideox bench deviation: the runs differ in shape (%lld vs %lld values, %d vs %d steps)\n",
                (long long)r32.n, (long long)r16.n, r32.steps, r16.steps);
        rc = 2;
    }
    if (rc == 0) {
        json_object_set_new(root, "model_dir", json_string(model_dir));
        json_object_set_new(root, "steps", json_integer(r32.steps));
        json_object_set_new(root, "frames", json_integer(frames));
        json_object_set_new(root, "height", json_integer(shape[3] * spatial));
        json_object_set_new(root, "width", json_integer(shape[4] * spatial));
        json_object_set_new(root, "seed", json_integer((json_int_t)gp->seed));
        json_object_set_new(root, "guidance", json_real(gp->guidance_scale));
        json_t *sh = json_array();
        int64_t numel = 1;
        for (int i = 0; i < 5; i++) json_array_append_new(sh, json_integer(shape[i])), numel *= shape[i];
        /* a config this bench misreads must not pass for a shape */
        json_object_set_new(root, "latent_shape", numel == r32.n ? sh : (json_decref(sh), json_null()));
        json_object_set_new(root, "latent_values", json_integer(r32.n));
        json_object_set_new(root, "fp32", run_json(&r32));
        json_object_set_new(root, "bf16", run_json(&r16));
        json_object_set_new(root, "deviation", deviation(r32.last, r16.last, r32.n));
        json_object_set_new(root, "deviation_step1", deviation(r32.first, r16.first, r32.n));
        struct rusage ru;
        getrusage(RUSAGE_SELF, &ru);
        json_object_set_new(root, "peak_rss_gb", json_real((double)ru.ru_maxrss / (1024.0 * 1024.0)));
    }
    run_free(&r32);
    run_free(&r16);
    return rc;
}
