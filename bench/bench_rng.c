/* Time of the torch-compatible latent noise draw (cvx_rng_randn_*) and of one scheduler step at the real latent
 * size (1×13×16×60×90 = 1,123,200 values, 49 frames at 480×720), best of a few runs after a warm-up.
 *   bench_rng [numel]
 * Both are a negligible share of a generation (one transformer forward takes minutes); this checks they stay so. */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include <jansson.h>

#include "diffusion/rng.h"
#include "diffusion/scheduler.h"

static double now_s(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

#define REPEATS 5

int main(int argc, char **argv) {
    const int64_t n = argc > 1 ? strtoll(argv[1], NULL, 10) : 1123200;
    if (n < 16) {
        fprintf(stderr, "numel must be >= 16\n");
        return 2;
    }
    float *f = malloc((size_t)n * sizeof *f), *v = malloc((size_t)n * sizeof *v);
    uint16_t *h = malloc((size_t)n * sizeof *h);
    if (!f || !v || !h) return 1;
    cvx_rng g;
    const char *names[] = {"randn f32 (AVX2-kernel numerics)", "randn f32 (generic numerics)", "randn f16",
                           "randn bf16"};
    for (int k = 0; k < 4; k++) {
        double best = 1e30;
        for (int r = 0; r <= REPEATS; r++) {
            cvx_rng_seed(&g, 42);
            double t0 = now_s();
            if (k == 0) cvx_rng_randn_f32(&g, f, n, CVX_RNG_AVX2);
            if (k == 1) cvx_rng_randn_f32(&g, f, n, CVX_RNG_GENERIC);
            if (k == 2) cvx_rng_randn_f16(&g, h, n);
            if (k == 3) cvx_rng_randn_bf16(&g, h, n);
            double dt = now_s() - t0;
            if (r > 0 && dt < best) best = dt;
        }
        printf("%-36s %lld values: %8.2f ms  (%.1f ns/value)\n", names[k], (long long)n, best * 1e3,
               best * 1e9 / (double)n);
    }

    json_t *cfg = json_pack("{s:s, s:s, s:s, s:b, s:f}", "_class_name", "CogVideoXDPMScheduler", "prediction_type",
                            "v_prediction", "timestep_spacing", "trailing", "rescale_betas_zero_snr", 1,
                            "snr_shift_scale", 1.0);
    for (int kind = 0; kind < 2; kind++) {
        cvx_scheduler *s = NULL;
        cvx_error err = {0};
        cvx_sched_state st;
        if (cvx_scheduler_create(&s, cfg, kind == 0 ? CVX_SCHED_DDIM : CVX_SCHED_DPM, "bench", &err) ||
            cvx_scheduler_set_timesteps(s, 50, &err) || cvx_sched_state_init(&st, n, &err)) {
            fprintf(stderr, "%s\n", cvx_error_message(&err));
            return 1;
        }
        cvx_rng_seed(&g, 1);
        cvx_rng_randn_f32(&g, v, n, CVX_RNG_AVX2);
        double best = 1e30;
        for (int r = 0; r <= REPEATS; r++) {
            double t0 = now_s();
            cvx_scheduler_step(s, &st, v, 979, f, &g, f, &err); /* a 2nd-order DPM step after the first */
            double dt = now_s() - t0;
            if (r > 0 && dt < best) best = dt;
        }
        printf("%-36s %lld values: %8.2f ms\n", kind == 0 ? "DDIM step" : "DPM step (2 noise draws)", (long long)n,
               best * 1e3);
        cvx_sched_state_release(&st);
        cvx_scheduler_free(s);
    }
    json_decref(cfg);
    free(f);
    free(v);
    free(h);
    return 0;
}
