/* libFuzzer target for the scheduler config reader (cvx_scheduler_create on any JSON text): a config is either
 * refused with a message naming it, or gives a scheduler whose timesteps for every N are N or N+1 strictly
 * decreasing values, and whose step() over the whole schedule (DDIM and DPM) either succeeds or fails with a
 * message.
 *   ./build-fuzz/fuzz/fuzz_scheduler_config -max_total_time=60 fuzz/corpus/scheduler_config */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "diffusion/scheduler.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    json_error_t je;
    json_t *cfg = json_loadb((const char *)data, size, JSON_REJECT_DUPLICATES, &je);
    if (!cfg) return 0;
    for (int kind = -1; kind <= 1; kind++) {
        cvx_scheduler *s = NULL;
        cvx_error err;
        cvx_error_clear(&err);
        if (cvx_scheduler_create(&s, cfg, (cvx_sched_kind)kind, "fuzz.json", &err) != CVX_OK) {
            if (s || strncmp(err.message, "fuzz.json: ", 11) != 0) abort();
            continue;
        }
        const int64_t T = cvx_scheduler_num_train_timesteps(s);
        int64_t *ts = malloc((size_t)(T + 2) * sizeof *ts);
        if (!ts) abort();
        const int64_t ns[] = {1, 2, 7, 30, 50, 61, T / 3 + 1, T - 1, T};
        for (size_t k = 0; k < sizeof ns / sizeof ns[0]; k++) {
            int64_t count;
            if (ns[k] < 1 || ns[k] > T) continue;
            if (cvx_scheduler_timesteps_for(s, ns[k], ts, &count, &err) != CVX_OK) abort();
            if (count != ns[k] && count != ns[k] + 1) abort();
            for (int64_t i = 1; i < count; i++)
                if (ts[i] >= ts[i - 1]) abort();
        }
        free(ts);

        enum { N = 16 };
        float sample[N], v[N], prev[N];
        for (int i = 0; i < N; i++) {
            sample[i] = (float)(i - 8) * 0.25f;
            v[i] = (float)(i % 5) - 2.0f;
        }
        cvx_sched_state st;
        cvx_rng g;
        cvx_rng_seed(&g, 1);
        int64_t steps = T < 12 ? T : 12;
        if (cvx_scheduler_set_timesteps(s, steps, &err) != CVX_OK) abort();
        if (cvx_sched_state_init(&st, N, &err) != CVX_OK) abort();
        int64_t count;
        const int64_t *list = cvx_scheduler_timesteps(s, &count);
        for (int64_t i = 0; i < count; i++) {
            cvx_error_clear(&err);
            if (cvx_scheduler_step(s, &st, v, list[i], sample, &g, prev, &err) != CVX_OK && !err.message[0]) abort();
        }
        cvx_sched_state_release(&st);
        cvx_scheduler_free(s);
    }
    json_decref(cfg);
    return 0;
}
