/* CogVideoXDDIMScheduler / CogVideoXDPMScheduler (diffusers 0.30.3); see scheduler.h for the numerics. */
#include "diffusion/scheduler.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

struct cvx_scheduler {
    cvx_sched_kind kind;
    int64_t T;               /* num_train_timesteps */
    cvx_pred_type pred;
    cvx_spacing spacing;
    int64_t steps_offset;
    double final_alpha_cumprod;
    double *betas;           /* [T] */
    double *alphas_cumprod;  /* [T] */
    int64_t num_inference_steps; /* 0 before set_timesteps */
    int64_t *timesteps;      /* [n_timesteps] */
    int64_t n_timesteps;
};

/* ---- config ------------------------------------------------------------------------------------------- */

static const char *lbl(const char *label) { return label ? label : "scheduler_config.json"; }

static cvx_status cfg_number(const json_t *cfg, const char *key, double def, double *out, const char *label,
                             cvx_error *err) {
    const json_t *v = json_object_get(cfg, key);
    if (!v) {
        *out = def;
        return CVX_OK;
    }
    if (!json_is_number(v) || !isfinite(json_number_value(v)))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be a finite number", lbl(label), key);
    *out = json_number_value(v);
    return CVX_OK;
}

static cvx_status cfg_int(const json_t *cfg, const char *key, int64_t def, int64_t min, int64_t max, int64_t *out,
                          const char *label, cvx_error *err) {
    const json_t *v = json_object_get(cfg, key);
    if (!v) {
        *out = def;
        return CVX_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < min || json_integer_value(v) > max)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be an integer in [%lld, %lld]", lbl(label), key,
                        (long long)min, (long long)max);
    *out = json_integer_value(v);
    return CVX_OK;
}

static cvx_status cfg_bool(const json_t *cfg, const char *key, int def, int *out, const char *label,
                           cvx_error *err) {
    const json_t *v = json_object_get(cfg, key);
    if (!v) {
        *out = def;
        return CVX_OK;
    }
    if (!json_is_boolean(v)) return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be true or false", lbl(label), key);
    *out = json_is_true(v);
    return CVX_OK;
}

/* The value of `key` must be one of `allowed` (NULL-terminated); `supported` lists how many of them (a prefix)
 * this implementation handles. */
static cvx_status cfg_enum(const json_t *cfg, const char *key, const char *def, const char *const *allowed,
                           int supported, int *index, const char *label, cvx_error *err) {
    const json_t *v = json_object_get(cfg, key);
    const char *s = def;
    if (v) {
        if (!json_is_string(v)) return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be a string", lbl(label), key);
        s = json_string_value(v);
    }
    for (int i = 0; allowed[i]; i++) {
        if (strcmp(s, allowed[i]) == 0) {
            if (i >= supported)
                return cvx_fail(err, CVX_ERR_UNSUPPORTED, "%s: %s \"%s\" is not supported (CogVideoX uses \"%s\")",
                                lbl(label), key, s, allowed[0]);
            *index = i;
            return CVX_OK;
        }
    }
    return cvx_fail(err, CVX_ERR_FORMAT, "%s: unknown %s \"%s\"", lbl(label), key, s);
}

/* ---- alphas_cumprod ------------------------------------------------------------------------------------- */

/* torch.linspace(start, end, steps, dtype=float64) as torch 1.13's AVX2 CPU kernel fills it: blocks of 4 from a
 * base (from the start in the first half, from the end in the second) plus k·step, with the products fused as
 * that build compiles them. The last-ulp details only matter for bit-exact betas. */
static void torch_linspace_f64(double start, double end, int64_t steps, double *out) {
    if (steps == 1) {
        out[0] = start;
        return;
    }
    const double step = (end - start) / (double)(steps - 1);
    const int64_t halfway = steps / 2;
    const int64_t vec_end = steps - steps % 8; /* the vectorised loop runs two 4-wide vectors at a time */
    int64_t idx = 0;
    for (; idx < vec_end; idx += 4) {
        double base = idx < halfway ? fma(step, (double)idx, start) : fma(-step, (double)(steps - idx - 1), end);
        out[idx] = base;
        out[idx + 1] = base + step;
        out[idx + 2] = fma(2.0, step, base);
        out[idx + 3] = fma(3.0, step, base);
    }
    for (; idx < steps; idx++)
        out[idx] = idx < halfway ? fma(step, (double)idx, start) : fma(-step, (double)(steps - idx - 1), end);
}

static void compute_alphas(cvx_scheduler *s, double beta_start, double beta_end, double snr_shift_scale,
                           int rescale_zero_snr) {
    const int64_t T = s->T;
    double *b = s->betas, *ac = s->alphas_cumprod;
    torch_linspace_f64(pow(beta_start, 0.5), pow(beta_end, 0.5), T, b);
    for (int64_t i = 0; i < T; i++) b[i] = b[i] * b[i];
    double prod = 1.0;
    for (int64_t i = 0; i < T; i++) {
        prod = prod * (1.0 - b[i]);
        ac[i] = prod;
    }
    /* SNR shift following SD3 */
    const double one_minus_s = 1.0 - snr_shift_scale;
    for (int64_t i = 0; i < T; i++) {
        double denom = one_minus_s * ac[i];
        denom = denom + snr_shift_scale;
        ac[i] = ac[i] / denom;
    }
    if (rescale_zero_snr) { /* rescale_zero_terminal_snr: shift √ā so the last is 0, scale so the first stays */
        for (int64_t i = 0; i < T; i++) ac[i] = sqrt(ac[i]);
        const double s0 = ac[0], sT = ac[T - 1];
        const double scale = s0 / (s0 - sT);
        for (int64_t i = 0; i < T; i++) {
            double v = (ac[i] - sT) * scale;
            ac[i] = v * v;
        }
    }
}

cvx_status cvx_scheduler_create(cvx_scheduler **out, const json_t *cfg, cvx_sched_kind kind, const char *label,
                                cvx_error *err) {
    *out = NULL;
    if (!json_is_object(cfg)) return cvx_fail(err, CVX_ERR_FORMAT, "%s: not a JSON object", lbl(label));
    if (kind == CVX_SCHED_AUTO) {
        const json_t *cn = json_object_get(cfg, "_class_name");
        const char *name = json_is_string(cn) ? json_string_value(cn) : NULL;
        if (!name)
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: no \"_class_name\" to tell DDIM from DPM", lbl(label));
        if (strcmp(name, "CogVideoXDDIMScheduler") == 0)
            kind = CVX_SCHED_DDIM;
        else if (strcmp(name, "CogVideoXDPMScheduler") == 0)
            kind = CVX_SCHED_DPM;
        else
            return cvx_fail(err, CVX_ERR_UNSUPPORTED,
                            "%s: scheduler class \"%s\" is not supported (CogVideoXDDIMScheduler or "
                            "CogVideoXDPMScheduler)", lbl(label), name);
    } else if (kind != CVX_SCHED_DDIM && kind != CVX_SCHED_DPM) {
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: invalid scheduler kind %d", lbl(label), (int)kind);
    }

    /* __init__ defaults of both classes */
    int64_t T = 0, steps_offset = 0;
    double beta_start = 0, beta_end = 0, snr = 0, unused = 0;
    int clip_sample = 0, set_alpha_to_one = 0, rescale = 0, schedule = 0, pred = 0, spacing = 0;
    static const char *const schedules[] = {"scaled_linear", "linear", "squaredcos_cap_v2", NULL};
    static const char *const preds[] = {"epsilon", "sample", "v_prediction", NULL};
    static const char *const spacings[] = {"leading", "trailing", "linspace", NULL};
    cvx_status st;
    if ((st = cfg_int(cfg, "num_train_timesteps", 1000, 2, CVX_SCHED_MAX_TRAIN_TIMESTEPS, &T, label, err)) ||
        (st = cfg_number(cfg, "beta_start", 0.00085, &beta_start, label, err)) ||
        (st = cfg_number(cfg, "beta_end", 0.0120, &beta_end, label, err)) ||
        (st = cfg_enum(cfg, "beta_schedule", "scaled_linear", schedules, 1, &schedule, label, err)) ||
        (st = cfg_bool(cfg, "clip_sample", 1, &clip_sample, label, err)) ||
        (st = cfg_bool(cfg, "set_alpha_to_one", 1, &set_alpha_to_one, label, err)) ||
        (st = cfg_int(cfg, "steps_offset", 0, 0, CVX_SCHED_MAX_TRAIN_TIMESTEPS, &steps_offset, label, err)) ||
        (st = cfg_enum(cfg, "prediction_type", "epsilon", preds, 3, &pred, label, err)) ||
        (st = cfg_number(cfg, "clip_sample_range", 1.0, &unused, label, err)) ||
        (st = cfg_number(cfg, "sample_max_value", 1.0, &unused, label, err)) ||
        (st = cfg_enum(cfg, "timestep_spacing", "leading", spacings, 3, &spacing, label, err)) ||
        (st = cfg_bool(cfg, "rescale_betas_zero_snr", 0, &rescale, label, err)) ||
        (st = cfg_number(cfg, "snr_shift_scale", 3.0, &snr, label, err)))
        return st;
    (void)clip_sample; /* the CogVideoX step() never clips */
    const json_t *tb = json_object_get(cfg, "trained_betas");
    if (tb && !json_is_null(tb))
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "%s: trained_betas is not supported (CogVideoX uses null)",
                        lbl(label));
    if (!(beta_start >= 0.0 && beta_end >= 0.0 && beta_start < 1.0 && beta_end < 1.0))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: beta_start/beta_end must be in [0, 1)", lbl(label));
    if (!(snr > 0.0)) return cvx_fail(err, CVX_ERR_FORMAT, "%s: snr_shift_scale must be > 0", lbl(label));

    cvx_scheduler *s = calloc(1, sizeof *s);
    if (!s) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", lbl(label));
    s->kind = kind;
    s->T = T;
    s->pred = pred == 0 ? CVX_PRED_EPSILON : pred == 1 ? CVX_PRED_SAMPLE : CVX_PRED_V;
    s->spacing = spacing == 0 ? CVX_SPACING_LEADING : spacing == 1 ? CVX_SPACING_TRAILING : CVX_SPACING_LINSPACE;
    s->steps_offset = steps_offset;
    s->betas = malloc((size_t)T * sizeof(double));
    s->alphas_cumprod = malloc((size_t)T * sizeof(double));
    if (!s->betas || !s->alphas_cumprod) {
        cvx_scheduler_free(s);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", lbl(label));
    }
    compute_alphas(s, beta_start, beta_end, snr, rescale);
    for (int64_t i = 0; i < T; i++) {
        if (!(s->alphas_cumprod[i] >= 0.0 && s->alphas_cumprod[i] <= 1.0)) {
            cvx_scheduler_free(s);
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: these betas give alphas_cumprod outside [0, 1]", lbl(label));
        }
    }
    s->final_alpha_cumprod = set_alpha_to_one ? 1.0 : s->alphas_cumprod[0];
    *out = s;
    return CVX_OK;
}

void cvx_scheduler_free(cvx_scheduler *s) {
    if (!s) return;
    free(s->betas);
    free(s->alphas_cumprod);
    free(s->timesteps);
    free(s);
}

cvx_sched_kind cvx_scheduler_kind(const cvx_scheduler *s) { return s->kind; }
int64_t cvx_scheduler_num_train_timesteps(const cvx_scheduler *s) { return s->T; }
cvx_pred_type cvx_scheduler_prediction_type(const cvx_scheduler *s) { return s->pred; }
const double *cvx_scheduler_betas(const cvx_scheduler *s) { return s->betas; }
const double *cvx_scheduler_alphas_cumprod(const cvx_scheduler *s) { return s->alphas_cumprod; }
double cvx_scheduler_final_alpha_cumprod(const cvx_scheduler *s) { return s->final_alpha_cumprod; }
int64_t cvx_scheduler_num_inference_steps(const cvx_scheduler *s) { return s->num_inference_steps; }

const int64_t *cvx_scheduler_timesteps(const cvx_scheduler *s, int64_t *count) {
    *count = s->n_timesteps;
    return s->timesteps;
}

/* ---- timesteps ------------------------------------------------------------------------------------------- */

cvx_status cvx_scheduler_timesteps_for(const cvx_scheduler *s, int64_t N, int64_t *out, int64_t *count,
                                       cvx_error *err) {
    const int64_t T = s->T;
    if (N < 1 || N > T)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                        "num_inference_steps %lld must be in 1..%lld (num_train_timesteps)", (long long)N,
                        (long long)T);
    switch (s->spacing) {
    case CVX_SPACING_LEADING: {
        const int64_t ratio = T / N;
        for (int64_t i = 0; i < N; i++) out[i] = (N - 1 - i) * ratio + s->steps_offset;
        *count = N;
        return CVX_OK;
    }
    case CVX_SPACING_LINSPACE: {
        /* np.linspace(0, T-1, N).round()[::-1]: y_i = i·step, the last is exactly T-1 */
        for (int64_t i = 0; i < N; i++) {
            double y = N == 1 ? 0.0 : i == N - 1 ? (double)(T - 1) : (double)i * ((double)(T - 1) / (double)(N - 1));
            out[N - 1 - i] = (int64_t)rint(y);
        }
        *count = N;
        return CVX_OK;
    }
    case CVX_SPACING_TRAILING: {
        /* np.round(np.arange(T, 0, -T/N)) - 1: numpy's length is ceil((0 - T) / step); element 1 is start + step,
         * element i >= 2 is start + i·((start + step) - start) */
        const double start = (double)T, step = -((double)T / (double)N);
        const double len_d = ceil((0.0 - start) / step);
        if (!(len_d >= 1.0 && len_d <= (double)(N + 1)))
            return cvx_fail(err, CVX_ERR_INTERNAL, "trailing timesteps: unexpected length %g for N=%lld", len_d,
                            (long long)N);
        const int64_t len = (int64_t)len_d;
        const double second = start + step;
        const double delta = second - start;
        for (int64_t i = 0; i < len; i++) {
            double v = i == 0 ? start : i == 1 ? second : start + (double)i * delta;
            out[i] = (int64_t)rint(v) - 1; /* np.round: half to even */
        }
        *count = len;
        return CVX_OK;
    }
    }
    return cvx_fail(err, CVX_ERR_INTERNAL, "unknown timestep spacing");
}

cvx_status cvx_scheduler_set_timesteps(cvx_scheduler *s, int64_t N, cvx_error *err) {
    if (N < 1 || N > s->T)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                        "num_inference_steps %lld must be in 1..%lld (num_train_timesteps)", (long long)N,
                        (long long)s->T);
    int64_t *ts = malloc((size_t)(N + 1) * sizeof *ts);
    if (!ts) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "set_timesteps: out of memory");
    int64_t count;
    cvx_status st = cvx_scheduler_timesteps_for(s, N, ts, &count, err);
    if (st) {
        free(ts);
        return st;
    }
    free(s->timesteps);
    s->timesteps = ts;
    s->n_timesteps = count;
    s->num_inference_steps = N;
    return CVX_OK;
}

/* ---- step ------------------------------------------------------------------------------------------------ */

/* alphas_cumprod[t] with Python's negative indexing (t = -1 is the last entry). */
static cvx_status alpha_at(const cvx_scheduler *s, int64_t t, double *out, cvx_error *err) {
    if (t < -s->T || t >= s->T)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "timestep %lld is outside alphas_cumprod[%lld]", (long long)t,
                        (long long)s->T);
    *out = s->alphas_cumprod[t < 0 ? t + s->T : t];
    return CVX_OK;
}

/* λ = log(√(a / (1 − a))) */
static double lambda_of(double a) { return log(sqrt(a / (1.0 - a))); }

cvx_status cvx_scheduler_coefs(const cvx_scheduler *s, int64_t t, int has_back, int64_t t_back, cvx_sched_coefs *c,
                               cvx_error *err) {
    if (s->num_inference_steps < 1)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                        "scheduler step before set_timesteps (the number of inference steps is not set)");
    const double nan = NAN;
    cvx_status st;
    c->prev_timestep = t - s->T / s->num_inference_steps;
    if ((st = alpha_at(s, t, &c->alpha_t, err))) return st;
    if (c->prev_timestep >= 0) {
        if ((st = alpha_at(s, c->prev_timestep, &c->alpha_prev, err))) return st;
    } else {
        c->alpha_prev = s->final_alpha_cumprod;
    }
    c->alpha_back = nan;
    if (has_back && (st = alpha_at(s, t_back, &c->alpha_back, err))) return st;
    const double a = c->alpha_t, ap = c->alpha_prev;

    /* DDIM */
    c->a_t = sqrt((1.0 - ap) / (1.0 - a));
    c->b_t = sqrt(ap) - sqrt(a) * c->a_t;

    /* DPM (get_variables / get_mult) */
    c->lamb = lambda_of(a);
    c->lamb_next = lambda_of(ap);
    c->h = c->lamb_next - c->lamb;
    c->r = nan;
    c->mult3 = c->mult4 = nan;
    if (has_back) {
        double lamb_previous = lambda_of(c->alpha_back);
        double h_last = c->lamb - lamb_previous;
        c->r = h_last / c->h;
        c->mult4 = 1.0 / (2.0 * c->r);
        c->mult3 = 1.0 + c->mult4;
    }
    c->mult1 = sqrt((1.0 - ap) / (1.0 - a)) * exp(-c->h);
    c->mult2 = expm1(-2.0 * c->h) * sqrt(ap);
    c->mult_noise = sqrt(1.0 - ap) * sqrt(1.0 - exp(-2.0 * c->h));
    return CVX_OK;
}

cvx_status cvx_sched_state_init(cvx_sched_state *st, int64_t n, cvx_error *err) {
    memset(st, 0, sizeof *st);
    if (n < 1 || (uint64_t)n > SIZE_MAX / sizeof(float) / 4)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "scheduler state: bad sample size %lld", (long long)n);
    st->n = n;
    st->noise_path = CVX_RNG_AVX2;
    st->pred_original_sample = calloc((size_t)n, sizeof(float));
    st->noise[0] = calloc((size_t)n, sizeof(float));
    st->noise[1] = calloc((size_t)n, sizeof(float));
    if (!st->pred_original_sample || !st->noise[0] || !st->noise[1]) {
        cvx_sched_state_release(st);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "scheduler state: out of memory for %lld elements",
                        (long long)n);
    }
    return CVX_OK;
}

void cvx_sched_state_release(cvx_sched_state *st) {
    if (!st) return;
    free(st->pred_original_sample);
    free(st->noise[0]);
    free(st->noise[1]);
    memset(st, 0, sizeof *st);
}

/* x0 for one element; the coefficients are already float32 (torch rounds 0-dim float64 tensors to the float32
 * tensor's dtype), each product is rounded, then the difference. */
static inline float pred_x0(cvx_pred_type pred, float c_s, float c_v, float sample, float out) {
    switch (pred) {
    case CVX_PRED_V: {
        float p = c_s * sample;
        float q = c_v * out;
        return p - q;
    }
    case CVX_PRED_EPSILON: { /* (sample − √(1−a)·eps) / √a */
        float q = c_v * out;
        float d = sample - q;
        return d / c_s;
    }
    case CVX_PRED_SAMPLE:
        return out;
    }
    return out;
}

cvx_status cvx_scheduler_step(const cvx_scheduler *s, cvx_sched_state *st, const float *model_output, int64_t t,
                              const float *sample, cvx_rng *g, float *prev_sample, cvx_error *err) {
    if (!st || !st->pred_original_sample || !model_output || !sample || !prev_sample)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "scheduler step: missing state or buffers");
    cvx_sched_coefs c;
    cvx_status status = cvx_scheduler_coefs(s, t, s->kind == CVX_SCHED_DPM && st->has_back, st->timestep_back, &c,
                                            err);
    if (status) return status;
    const int64_t n = st->n;
    float *x0 = st->pred_original_sample; /* holds the old x0 on entry (DPM), this step's x0 on exit */
    const float c_s = (float)sqrt(c.alpha_t);
    const float c_v = (float)sqrt(1.0 - c.alpha_t);

    if (s->kind == CVX_SCHED_DDIM) {
        const float a_t = (float)c.a_t, b_t = (float)c.b_t;
        for (int64_t i = 0; i < n; i++) {
            float x = pred_x0(s->pred, c_s, c_v, sample[i], model_output[i]);
            float p = a_t * sample[i];
            float q = b_t * x;
            x0[i] = x;
            prev_sample[i] = p + q;
        }
        st->n_noise = 0;
    } else {
        if (!g) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "DPM scheduler step needs the pipeline's generator");
        /* the first draw always happens, even when the 2nd-order branch replaces it */
        cvx_rng_randn_f32(g, st->noise[0], n, st->noise_path);
        const int first_order = !st->has_pred || c.prev_timestep < 0;
        const float m1 = (float)c.mult1, m2 = (float)c.mult2, mn = (float)c.mult_noise;
        if (first_order) {
            const float *noise = st->noise[0];
            for (int64_t i = 0; i < n; i++) {
                float x = pred_x0(s->pred, c_s, c_v, sample[i], model_output[i]);
                float p = m1 * sample[i];
                float q = m2 * x;
                float r = mn * noise[i];
                x0[i] = x;
                prev_sample[i] = (p - q) + r;
            }
            st->n_noise = 1;
        } else {
            if (!st->has_back)
                return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                                "DPM scheduler step: old_pred_original_sample given without timestep_back");
            cvx_rng_randn_f32(g, st->noise[1], n, st->noise_path);
            const float *noise = st->noise[1];
            const float m3 = (float)c.mult3, m4 = (float)c.mult4;
            for (int64_t i = 0; i < n; i++) {
                float x = pred_x0(s->pred, c_s, c_v, sample[i], model_output[i]);
                float d3 = m3 * x;
                float d4 = m4 * x0[i];
                float dd = d3 - d4; /* denoised_d */
                float p = m1 * sample[i];
                float q = m2 * dd;
                float r = mn * noise[i];
                x0[i] = x;
                prev_sample[i] = (p - q) + r;
            }
            st->n_noise = 2;
        }
    }
    st->has_pred = 1;
    st->timestep_back = t;
    st->has_back = 1;
    return CVX_OK;
}

cvx_status cvx_scheduler_add_noise(const cvx_scheduler *s, int64_t timestep, const float *x, const float *noise,
                                   int64_t n, float *out, float coefs[2], cvx_error *err) {
    if (timestep < 0 || timestep >= s->T)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "add_noise: timestep %lld outside [0, %lld)",
                        (long long)timestep, (long long)s->T);
    const float ac = (float)s->alphas_cumprod[timestep];
    const float a = sqrtf(ac), b = sqrtf(1.0f - ac); /* torch's pow(x, 0.5) is sqrt */
    for (int64_t i = 0; i < n; i++) {
        const float ax = a * x[i], bn = b * noise[i];
        out[i] = ax + bn;
    }
    if (coefs) coefs[0] = a, coefs[1] = b;
    return CVX_OK;
}
