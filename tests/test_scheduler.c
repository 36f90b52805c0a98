/* CogVideoX DDIM/DPM schedulers (src/diffusion/scheduler.c): timesteps (trailing with the N+1 quirk and
 * round-half-even, leading, linspace), alphas_cumprod invariants, step() invariants (x0 = −v at t = 999, the last
 * DPM step returns x0, DPM's 1/2-draw pattern), closed loops against the reference's trajectories
 * (tests/data/golden/scheduler), and the config errors. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "diffusion/scheduler.h"
#include "io/safetensors.h"
#include "testlib.h"

#define DDIM_DIR "tests/data/golden/scheduler/ddim_2b"
#define DPM_DIR "tests/data/golden/scheduler/dpm_5b"

static cvx_scheduler *load(const char *dir, cvx_sched_kind kind) {
    char path[512];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t je;
    json_t *cfg = json_load_file(path, 0, &je);
    CHECK_MSG(cfg != NULL, "%s: %s", path, je.text);
    if (!cfg) return NULL;
    cvx_scheduler *s = NULL;
    cvx_error err = {0};
    cvx_status st = cvx_scheduler_create(&s, cfg, kind, path, &err);
    CHECK_MSG(st == CVX_OK, "%s", cvx_error_message(&err));
    json_decref(cfg);
    return s;
}

static cvx_status create_from(const char *text, cvx_scheduler **s, cvx_error *err) {
    json_error_t je;
    json_t *cfg = json_loads(text, 0, &je);
    if (!cfg) return cvx_fail(err, CVX_ERR_FORMAT, "test json: %s", je.text);
    cvx_status st = cvx_scheduler_create(s, cfg, CVX_SCHED_AUTO, "test", err);
    json_decref(cfg);
    return st;
}

static void test_timesteps(void) {
    cvx_scheduler *s = load(DDIM_DIR, CVX_SCHED_AUTO);
    if (!s) return;
    cvx_error err = {0};
    int64_t ts[1002], n;
    CHECK(cvx_scheduler_kind(s) == CVX_SCHED_DDIM);

    CHECK(cvx_scheduler_timesteps_for(s, 50, ts, &n, &err) == CVX_OK && n == 50);
    CHECK(ts[0] == 999 && ts[1] == 979 && ts[49] == 19);

    /* N = 30: 1000 % 30 != 0, so prev_t (t − 33) is not the next entry */
    CHECK(cvx_scheduler_timesteps_for(s, 30, ts, &n, &err) == CVX_OK && n == 30);
    CHECK(ts[0] == 999 && ts[1] == 966 && ts[2] == 932);
    CHECK(cvx_scheduler_set_timesteps(s, 30, &err) == CVX_OK);
    cvx_sched_coefs c;
    CHECK(cvx_scheduler_coefs(s, 966, 0, 0, &c, &err) == CVX_OK && c.prev_timestep == 933);

    /* N = 61: 62 timesteps ending in −1 */
    CHECK(cvx_scheduler_timesteps_for(s, 61, ts, &n, &err) == CVX_OK && n == 62);
    CHECK(ts[59] == 32 && ts[60] == 15 && ts[61] == -1);

    /* np.round is half-to-even: 1000 − 3·62.5 = 812.5 -> 812 (C round() would give 813) */
    CHECK(cvx_scheduler_timesteps_for(s, 16, ts, &n, &err) == CVX_OK && n == 16);
    CHECK(ts[3] == 811);

    /* every N: strictly decreasing, in [−1, 999], N or N+1 long; the N+1 set is the reference's */
    json_error_t je;
    json_t *cj = json_load_file(DDIM_DIR "/case.json", 0, &je);
    json_t *plus1 = json_object_get(json_object_get(cj, "facts"),
                                    "n in 1..1000 where len(timesteps) == n+1 (last timestep is -1)");
    CHECK(json_is_array(plus1) && json_array_size(plus1) == 62);
    size_t k = 0;
    int ok = 1;
    for (int64_t N = 1; N <= 1000; N++) {
        if (cvx_scheduler_timesteps_for(s, N, ts, &n, &err) != CVX_OK) {
            ok = 0;
            break;
        }
        int want_plus1 = k < json_array_size(plus1) && json_integer_value(json_array_get(plus1, k)) == N;
        if (want_plus1) k++;
        if (n != N + want_plus1) ok = 0;
        if (ts[0] != 999 || ts[n - 1] < -1) ok = 0;
        for (int64_t i = 1; i < n; i++) ok &= ts[i] < ts[i - 1];
        if (want_plus1 && ts[n - 1] != -1) ok = 0;
    }
    CHECK(ok && k == json_array_size(plus1));
    json_decref(cj);

    CHECK(cvx_scheduler_timesteps_for(s, 0, ts, &n, &err) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_scheduler_timesteps_for(s, 1001, ts, &n, &err) == CVX_ERR_INVALID_ARGUMENT);
    cvx_scheduler_free(s);

    /* leading (with steps_offset) and linspace spacings */
    cvx_scheduler *l = NULL;
    CHECK(create_from("{\"_class_name\":\"CogVideoXDDIMScheduler\",\"timestep_spacing\":\"leading\","
                      "\"steps_offset\":1}", &l, &err) == CVX_OK);
    if (l) {
        CHECK(cvx_scheduler_timesteps_for(l, 10, ts, &n, &err) == CVX_OK && n == 10);
        CHECK(ts[0] == 901 && ts[9] == 1);
        cvx_scheduler_free(l);
    }
    l = NULL;
    CHECK(create_from("{\"_class_name\":\"CogVideoXDDIMScheduler\",\"timestep_spacing\":\"linspace\"}", &l, &err) ==
          CVX_OK);
    if (l) { /* linspace(0, 999, 5) = 0, 249.75, 499.5, 749.25, 999 */
        CHECK(cvx_scheduler_timesteps_for(l, 5, ts, &n, &err) == CVX_OK && n == 5);
        CHECK(ts[0] == 999 && ts[1] == 749 && ts[2] == 500 && ts[3] == 250 && ts[4] == 0);
        cvx_scheduler_free(l);
    }
}

static void test_alphas(void) {
    cvx_scheduler *s = load(DDIM_DIR, CVX_SCHED_AUTO);
    cvx_scheduler *d = load(DPM_DIR, CVX_SCHED_AUTO);
    if (!s || !d) goto out;
    const double *ac = cvx_scheduler_alphas_cumprod(s), *acd = cvx_scheduler_alphas_cumprod(d);
    CHECK(ac[999] == 0.0 && acd[999] == 0.0); /* zero terminal SNR, exactly */
    int mono = 1;
    for (int i = 1; i < 1000; i++) mono &= ac[i] < ac[i - 1] && acd[i] < acd[i - 1];
    CHECK(mono);
    /* the 2b's SNR shift (s = 3) lowers every alpha below the 5b's (s = 1) except the pinned ends */
    CHECK(ac[500] < acd[500]);
    CHECK(cvx_scheduler_final_alpha_cumprod(s) == 1.0);
    const double *b = cvx_scheduler_betas(s);
    CHECK(fabs(b[0] - 0.00085) < 1e-15 && fabs(b[999] - 0.012) < 1e-15);
out:
    cvx_scheduler_free(s);
    cvx_scheduler_free(d);
}

static void test_step_invariants(void) {
    cvx_scheduler *s = load(DDIM_DIR, CVX_SCHED_AUTO);
    cvx_scheduler *d = load(DPM_DIR, CVX_SCHED_AUTO);
    cvx_error err = {0};
    enum { N = 40 };
    float sample[N], v[N], prev[N], prev2[N];
    cvx_sched_state st = {0};
    if (!s || !d) goto out;
    for (int i = 0; i < N; i++) {
        sample[i] = (float)sin(i * 0.7) * 1.3f;
        v[i] = (float)cos(i * 0.3);
    }
    CHECK(cvx_sched_state_init(&st, N, &err) == CVX_OK);
    /* step before set_timesteps is refused */
    CHECK(cvx_scheduler_step(s, &st, v, 999, sample, NULL, prev, &err) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_scheduler_set_timesteps(s, 50, &err) == CVX_OK);
    /* t = 999: alpha = 0, so x0 = −v exactly */
    CHECK(cvx_scheduler_step(s, &st, v, 999, sample, NULL, prev, &err) == CVX_OK);
    int ok = 1;
    for (int i = 0; i < N; i++) ok &= st.pred_original_sample[i] == -v[i];
    CHECK(ok);
    /* in place == out of place */
    memcpy(prev2, sample, sizeof sample);
    CHECK(cvx_scheduler_step(s, &st, v, 979, prev2, NULL, prev2, &err) == CVX_OK);
    CHECK(cvx_scheduler_step(s, &st, v, 979, sample, NULL, prev, &err) == CVX_OK);
    CHECK(memcmp(prev, prev2, sizeof prev) == 0);
    CHECK(cvx_scheduler_step(s, &st, v, 1000, sample, NULL, prev, &err) == CVX_ERR_INVALID_ARGUMENT);

    /* DPM over a whole N = 50 schedule: draws 1, 2, ..., 2, 1; the last step (prev_t < 0) returns x0 */
    cvx_sched_state_release(&st);
    CHECK(cvx_sched_state_init(&st, N, &err) == CVX_OK);
    CHECK(cvx_scheduler_set_timesteps(d, 50, &err) == CVX_OK);
    int64_t nts;
    const int64_t *ts = cvx_scheduler_timesteps(d, &nts);
    CHECK(nts == 50);
    CHECK(cvx_scheduler_step(d, &st, v, ts[0], sample, NULL, prev, &err) == CVX_ERR_INVALID_ARGUMENT); /* no g */
    cvx_rng g;
    cvx_rng_seed(&g, 5);
    memcpy(prev, sample, sizeof sample);
    int pattern = 1;
    for (int64_t i = 0; i < nts; i++) {
        CHECK(cvx_scheduler_step(d, &st, v, ts[i], prev, &g, prev, &err) == CVX_OK);
        int want = i == 0 || i == nts - 1 ? 1 : 2;
        pattern &= st.n_noise == want;
    }
    CHECK(pattern);
    ok = 1;
    for (int i = 0; i < N; i++) ok &= prev[i] == st.pred_original_sample[i] && isfinite(prev[i]);
    CHECK(ok);
    /* the generator advanced by exactly 1 + 2·48 + 1 draws of N values after the seed */
    cvx_rng g2;
    cvx_rng_seed(&g2, 5);
    float scratch[N];
    for (int i = 0; i < 1 + 2 * 48 + 1; i++) cvx_rng_randn_f32(&g2, scratch, N, CVX_RNG_AVX2);
    CHECK(cvx_rng_next_u32(&g) == cvx_rng_next_u32(&g2));
out:
    cvx_sched_state_release(&st);
    cvx_scheduler_free(s);
    cvx_scheduler_free(d);
}

/* Closed loops (each step fed our own previous output) reproduce the reference's recorded trajectories: the
 * per-step results are bit-exact, so the loops are too. */
static void test_closed_loops(void) {
    cvx_error err = {0};
    cvx_safetensors *io = NULL;
    cvx_scheduler *s = load(DDIM_DIR, CVX_SCHED_AUTO);
    cvx_sched_state st = {0};
    float *x = NULL, *mo = NULL;
    if (!s || cvx_safetensors_open(&io, DDIM_DIR "/io.safetensors", &err) != CVX_OK) {
        CHECK_MSG(0, "%s", cvx_error_message(&err));
        goto out;
    }
    {
        const cvx_st_tensor *si = cvx_safetensors_find(io, "traj30_sample_in");
        const cvx_st_tensor *m = cvx_safetensors_find(io, "traj30_model_output");
        const cvx_st_tensor *ps = cvx_safetensors_find(io, "traj30_prev_sample");
        CHECK(si && m && ps && si->dtype == CVX_DTYPE_F32);
        if (!si || !m || !ps) goto out;
        const int64_t steps = si->shape[0], n = (int64_t)((si->end - si->begin) / 4) / steps;
        CHECK(cvx_scheduler_set_timesteps(s, 30, &err) == CVX_OK && cvx_sched_state_init(&st, n, &err) == CVX_OK);
        int64_t nts;
        const int64_t *ts = cvx_scheduler_timesteps(s, &nts);
        CHECK(nts == steps);
        x = malloc((size_t)n * sizeof *x);
        mo = malloc((size_t)n * sizeof *mo);
        memcpy(x, si->data, (size_t)n * sizeof *x);
        int ok = 1;
        for (int64_t i = 0; i < steps && i < nts; i++) {
            memcpy(mo, (const float *)m->data + i * n, (size_t)n * sizeof *mo);
            ok &= cvx_scheduler_step(s, &st, mo, ts[i], x, NULL, x, &err) == CVX_OK;
            ok &= memcmp(x, (const float *)ps->data + i * n, (size_t)n * sizeof *x) == 0;
        }
        CHECK_MSG(ok, "DDIM N=30 closed loop differs from the reference");
    }
    cvx_sched_state_release(&st);
    cvx_safetensors_close(io);
    cvx_scheduler_free(s);
    free(x);
    free(mo);
    x = mo = NULL;
    io = NULL;

    /* DPM N = 7: initial latents and every step's noise from one generator, as the pipeline does */
    s = load(DPM_DIR, CVX_SCHED_AUTO);
    if (!s || cvx_safetensors_open(&io, DPM_DIR "/io.safetensors", &err) != CVX_OK) {
        CHECK_MSG(0, "%s", cvx_error_message(&err));
        goto out;
    }
    {
        const cvx_st_tensor *init = cvx_safetensors_find(io, "traj7_initial_latents");
        const cvx_st_tensor *m = cvx_safetensors_find(io, "traj7_model_output");
        const cvx_st_tensor *ps = cvx_safetensors_find(io, "traj7_prev_sample");
        CHECK(init && m && ps);
        if (!init || !m || !ps) goto out;
        const int64_t n = (int64_t)((init->end - init->begin) / 4), steps = m->shape[0];
        json_error_t je;
        json_t *cj = json_load_file(DPM_DIR "/case.json", 0, &je);
        json_t *seed = json_object_get(json_object_get(json_object_get(cj, "trajectories"), "traj7_"),
                                       "seed_generator");
        CHECK(json_is_integer(seed));
        cvx_rng g;
        cvx_rng_seed(&g, (uint64_t)json_integer_value(seed));
        json_decref(cj);
        x = malloc((size_t)n * sizeof *x);
        mo = malloc((size_t)n * sizeof *mo);
        cvx_rng_randn_f32(&g, x, n, CVX_RNG_AVX2);
        CHECK(memcmp(x, init->data, (size_t)n * sizeof *x) == 0);
        CHECK(cvx_scheduler_set_timesteps(s, 7, &err) == CVX_OK && cvx_sched_state_init(&st, n, &err) == CVX_OK);
        int64_t nts;
        const int64_t *ts = cvx_scheduler_timesteps(s, &nts);
        CHECK(nts == steps);
        int ok = 1;
        for (int64_t i = 0; i < steps && i < nts; i++) {
            memcpy(mo, (const float *)m->data + i * n, (size_t)n * sizeof *mo);
            ok &= cvx_scheduler_step(s, &st, mo, ts[i], x, &g, x, &err) == CVX_OK;
            ok &= memcmp(x, (const float *)ps->data + i * n, (size_t)n * sizeof *x) == 0;
        }
        /* N = 7: the last prev_t is 142 − 142 = 0, not negative, so that step draws twice and adds noise */
        CHECK(st.n_noise == 2);
        CHECK_MSG(ok, "DPM N=7 closed loop differs from the reference");
    }
out:
    cvx_sched_state_release(&st);
    cvx_safetensors_close(io);
    cvx_scheduler_free(s);
    free(x);
    free(mo);
}

static void test_config_errors(void) {
    cvx_error err = {0};
    cvx_scheduler *s = NULL;
    struct {
        const char *json;
        cvx_status want;
        const char *needle;
    } cases[] = {
        {"[]", CVX_ERR_FORMAT, "not a JSON object"},
        {"{}", CVX_ERR_FORMAT, "_class_name"},
        {"{\"_class_name\":\"DDIMScheduler\"}", CVX_ERR_UNSUPPORTED, "DDIMScheduler"},
        {"{\"_class_name\":\"CogVideoXDDIMScheduler\",\"beta_schedule\":\"linear\"}", CVX_ERR_UNSUPPORTED, "linear"},
        {"{\"_class_name\":\"CogVideoXDDIMScheduler\",\"beta_schedule\":\"cubic\"}", CVX_ERR_FORMAT, "cubic"},
        {"{\"_class_name\":\"CogVideoXDDIMScheduler\",\"timestep_spacing\":\"middle\"}", CVX_ERR_FORMAT, "middle"},
        {"{\"_class_name\":\"CogVideoXDDIMScheduler\",\"prediction_type\":3}", CVX_ERR_FORMAT, "prediction_type"},
        {"{\"_class_name\":\"CogVideoXDPMScheduler\",\"snr_shift_scale\":\"3\"}", CVX_ERR_FORMAT, "snr_shift_scale"},
        {"{\"_class_name\":\"CogVideoXDPMScheduler\",\"snr_shift_scale\":0}", CVX_ERR_FORMAT, "snr_shift_scale"},
        {"{\"_class_name\":\"CogVideoXDPMScheduler\",\"num_train_timesteps\":0}", CVX_ERR_FORMAT,
         "num_train_timesteps"},
        {"{\"_class_name\":\"CogVideoXDPMScheduler\",\"num_train_timesteps\":1e9}", CVX_ERR_FORMAT,
         "num_train_timesteps"},
        {"{\"_class_name\":\"CogVideoXDPMScheduler\",\"trained_betas\":[0.1,0.2]}", CVX_ERR_UNSUPPORTED,
         "trained_betas"},
        {"{\"_class_name\":\"CogVideoXDPMScheduler\",\"beta_end\":1.5}", CVX_ERR_FORMAT, "beta_end"},
        {"{\"_class_name\":\"CogVideoXDPMScheduler\",\"rescale_betas_zero_snr\":\"yes\"}", CVX_ERR_FORMAT,
         "rescale_betas_zero_snr"},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        cvx_error_clear(&err);
        s = NULL;
        cvx_status st = create_from(cases[k].json, &s, &err);
        CHECK_MSG(st == cases[k].want && s == NULL && strstr(cvx_error_message(&err), cases[k].needle),
                  "%s -> %d '%s'", cases[k].json, (int)st, cvx_error_message(&err));
        cvx_scheduler_free(s);
    }
    /* an explicit kind overrides the class name (from_config of the other class), unknown keys are ignored */
    json_t *cfg = json_loads("{\"_class_name\":\"CogVideoXDDIMScheduler\",\"thresholding\":false}", 0, NULL);
    CHECK(cvx_scheduler_create(&s, cfg, CVX_SCHED_DPM, "x", &err) == CVX_OK && s &&
          cvx_scheduler_kind(s) == CVX_SCHED_DPM);
    cvx_scheduler_free(s);
    json_decref(cfg);
}

/* add_noise (the video-to-video pipeline's): float32 sqrt of float32(alphas_cumprod[t]) and of 1 − it, then
 * a·x + b·noise with each product rounded. The 2b DDIM config at t = 499 gives the coefficients the v2v golden
 * case stores (../shared/golden/v2v/v2v_2b_tiny: add_noise_coefficients [0.3097895383834839, 0.950805127620697]). */
static void test_add_noise(void) {
    cvx_scheduler *s = load(DDIM_DIR, CVX_SCHED_AUTO);
    if (!s) return;
    cvx_error err = {0};
    float x[3] = {1.0f, -2.5f, 0.125f}, noise[3] = {0.5f, 1.0f, -3.0f}, out[3], c[2];
    CHECK(cvx_scheduler_add_noise(s, 499, x, noise, 3, out, c, &err) == CVX_OK);
    CHECK_MSG(c[0] == 0.3097895383834839f && c[1] == 0.950805127620697f, "coefficients %.9g %.9g", c[0], c[1]);
    for (int i = 0; i < 3; i++) {
        const float ax = c[0] * x[i], bn = c[1] * noise[i];
        CHECK(out[i] == ax + bn);
    }
    CHECK(cvx_scheduler_add_noise(s, 1000, x, noise, 3, out, c, &err) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_scheduler_add_noise(s, -1, x, noise, 3, out, c, &err) == CVX_ERR_INVALID_ARGUMENT);
    cvx_scheduler_free(s);
}

int main(void) {
    test_add_noise();
    test_timesteps();
    test_alphas();
    test_step_invariants();
    test_closed_loops();
    test_config_errors();
    return cvx_test_finish("test_scheduler");
}
