/* Golden handler for the `scheduler` component (../shared/golden/scheduler/<case>): CogVideoXDDIMScheduler /
 * CogVideoXDPMScheduler built from the case's config.json.
 *
 * Outputs, for every name in check.compare:
 *   betas, alphas_cumprod (F64 [T]), final_alpha_cumprod, timesteps_n{N} (set_timesteps(N));
 *   timesteps_table_n / _offsets / _values: the timesteps for each N of the table (the N list is read from the
 *     expected timesteps_table_n: it is the question, offsets/values the answer);
 *   traj{N}_prev_sample / traj{N}_pred_original_sample: per step, fed the recorded traj{N}_sample_in,
 *     model_output, timestep (and for DPM has_old_pred, old_pred_original_sample_in, timestep_back: -1 = None),
 *     as check.note says;
 *   DPM traj{N}_initial_latents / noise_first / noise_second: the pipeline generator's draws, replayed from
 *     case.json's trajectories[prefix].seed_generator (noise_second is zeros on a 1-draw step).
 * Trajectory parameters (N, seed) come from case.json "trajectories" keyed by the name prefix ("traj50_"); N
 * falls back to the number in the prefix. Unknown names are errors. */
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/scheduler.h"
#include "golden/golden.h"

static int ends_with(const char *s, const char *suffix) {
    size_t n = strlen(s), m = strlen(suffix);
    return n >= m && strcmp(s + n - m, suffix) == 0;
}

/* An integer tensor of the expected file into a malloc'd int64 array (count in *n). */
static cvx_status read_i64(cvx_golden_case *c, const char *name, int64_t **out, int64_t *n) {
    const cvx_st_tensor *t = cvx_golden_tensor(c, name);
    if (!t) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "scheduler: the expected file has no '%s'", name);
    cvx_tensor v = cvx_st_view(t);
    int64_t count = cvx_tensor_numel(&v);
    int64_t *buf = malloc((size_t)(count > 0 ? count : 1) * sizeof *buf);
    if (!buf) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "scheduler: out of memory reading '%s'", name);
    for (int64_t i = 0; i < count; i++) {
        double d = cvx_tensor_get(&v, i);
        if (!(d >= -9.0e15 && d <= 9.0e15) || d != (double)(int64_t)d) {
            free(buf);
            return cvx_fail(&c->err, CVX_ERR_FORMAT, "scheduler: '%s'[%" PRId64 "] is not an integer", name, i);
        }
        buf[i] = (int64_t)d;
    }
    *out = buf;
    *n = count;
    return CVX_OK;
}

/* Records a computed tensor with the expected tensor's shape when there is one (the element counts must agree),
 * else 1-D. */
static cvx_status emit(cvx_golden_case *c, const char *name, cvx_dtype dt, void *data, int64_t numel) {
    const cvx_st_tensor *e = cvx_golden_tensor(c, name);
    cvx_tensor t;
    if (e) {
        int64_t en = 1;
        for (int i = 0; i < e->ndim; i++) en *= e->shape[i];
        if (en != numel)
            return cvx_fail(&c->err, CVX_ERR_SHAPE,
                            "scheduler: '%s': computed %" PRId64 " values, the expected tensor has %" PRId64, name,
                            numel, en);
        t = cvx_tensor_view(dt, data, e->ndim, e->shape);
    } else {
        int64_t shape[1] = {numel};
        t = cvx_tensor_view(dt, data, 1, shape);
    }
    return cvx_golden_output(c, name, &t);
}

static cvx_status emit_f64_as_expected(cvx_golden_case *c, const char *name, const double *v, int64_t n) {
    const cvx_st_tensor *e = cvx_golden_tensor(c, name);
    if (e && e->dtype == CVX_DTYPE_F32) {
        float *f = malloc((size_t)n * sizeof *f);
        if (!f) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
        for (int64_t i = 0; i < n; i++) f[i] = (float)v[i];
        cvx_status st = emit(c, name, CVX_DTYPE_F32, f, n);
        free(f);
        return st;
    }
    return emit(c, name, CVX_DTYPE_F64, (void *)(uintptr_t)v, n);
}

static cvx_status do_timesteps_n(cvx_golden_case *c, cvx_scheduler *s, const char *name) {
    const char *p = name + strlen("timesteps_n");
    char *end;
    long long N = strtoll(p, &end, 10);
    if (end == p || *end || N < 1 || N > cvx_scheduler_num_train_timesteps(s))
        return cvx_fail(&c->err, CVX_ERR_FORMAT, "scheduler: cannot parse compare name '%s' (timesteps_n{N})", name);
    int64_t *ts = malloc((size_t)(N + 1) * sizeof *ts), count;
    if (!ts) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
    cvx_status st = cvx_scheduler_timesteps_for(s, N, ts, &count, &c->err);
    if (!st) st = emit(c, name, CVX_DTYPE_I64, ts, count);
    free(ts);
    return st;
}

static cvx_status do_table(cvx_golden_case *c, cvx_scheduler *s, const char *prefix) {
    char nname[256], oname[256], vname[256];
    snprintf(nname, sizeof nname, "%sn", prefix);
    snprintf(oname, sizeof oname, "%soffsets", prefix);
    snprintf(vname, sizeof vname, "%svalues", prefix);
    int64_t *ns = NULL, count = 0;
    cvx_status st = read_i64(c, nname, &ns, &count);
    if (st) return st;
    const int64_t T = cvx_scheduler_num_train_timesteps(s);
    int64_t total = 0;
    for (int64_t k = 0; k < count && !st; k++) {
        if (ns[k] < 1 || ns[k] > T)
            st = cvx_fail(&c->err, CVX_ERR_FORMAT, "scheduler: %s[%" PRId64 "] = %" PRId64 " is not in 1..%" PRId64,
                          nname, k, ns[k], T);
        else
            total += ns[k] + 1;
    }
    int64_t *offsets = NULL, *values = NULL;
    if (!st) {
        offsets = malloc((size_t)(count + 1) * sizeof *offsets);
        values = malloc((size_t)(total > 0 ? total : 1) * sizeof *values);
        if (!offsets || !values) st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
    }
    int64_t used = 0;
    for (int64_t k = 0; k < count && !st; k++) {
        int64_t len;
        offsets[k] = used;
        st = cvx_scheduler_timesteps_for(s, ns[k], values + used, &len, &c->err);
        used += len;
    }
    if (!st) {
        offsets[count] = used;
        if (cvx_golden_wants(c, nname)) st = emit(c, nname, CVX_DTYPE_I64, ns, count);
        if (!st && cvx_golden_wants(c, oname)) st = emit(c, oname, CVX_DTYPE_I64, offsets, count + 1);
        if (!st && cvx_golden_wants(c, vname)) st = emit(c, vname, CVX_DTYPE_I64, values, used);
    }
    free(ns);
    free(offsets);
    free(values);
    return st;
}

/* One trajectory ("traj50_"): every step fed the recorded inputs. */
static cvx_status do_traj(cvx_golden_case *c, cvx_scheduler *s, const char *prefix) {
    char name[256];
    cvx_status st;
    const json_t *tj = json_object_get(json_object_get(c->case_json, "trajectories"), prefix);
    int64_t N = -1;
    if (json_is_integer(json_object_get(tj, "N"))) {
        N = json_integer_value(json_object_get(tj, "N"));
    } else {
        char *end;
        N = strtoll(prefix + 4, &end, 10);
        if (end == prefix + 4 || *end != '_') N = -1;
    }
    if (N < 1)
        return cvx_fail(&c->err, CVX_ERR_FORMAT, "scheduler: no N for trajectory '%s' (case.json trajectories or the "
                        "name)", prefix);
    if ((st = cvx_scheduler_set_timesteps(s, N, &c->err))) return st;

    int64_t *ts = NULL, steps = 0, *has_old = NULL, *t_back = NULL, n_aux = 0;
    float *sample_in = NULL, *model_out = NULL, *old_in = NULL, *prev = NULL, *x0 = NULL;
    float *noise1 = NULL, *noise2 = NULL, *init = NULL;
    cvx_sched_state state = {0};
    const int dpm = cvx_scheduler_kind(s) == CVX_SCHED_DPM;

    snprintf(name, sizeof name, "%stimestep", prefix);
    if ((st = read_i64(c, name, &ts, &steps))) goto done;
    if (steps < 1) {
        st = cvx_fail(&c->err, CVX_ERR_FORMAT, "scheduler: '%s' is empty", name);
        goto done;
    }
    snprintf(name, sizeof name, "%ssample_in", prefix);
    const cvx_st_tensor *si = cvx_golden_tensor(c, name);
    if (!si) {
        st = cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "scheduler: the expected file has no '%s'", name);
        goto done;
    }
    cvx_tensor siv = cvx_st_view(si);
    const int64_t total = cvx_tensor_numel(&siv);
    if (total % steps != 0 || total == 0) {
        st = cvx_fail(&c->err, CVX_ERR_SHAPE, "scheduler: '%s' does not hold %" PRId64 " equal steps", name, steps);
        goto done;
    }
    const int64_t n = total / steps;
    if ((st = cvx_golden_tensor_f32(c, name, total, &sample_in))) goto done;
    snprintf(name, sizeof name, "%smodel_output", prefix);
    if ((st = cvx_golden_tensor_f32(c, name, total, &model_out))) goto done;

    cvx_rng g;
    if (dpm) {
        snprintf(name, sizeof name, "%shas_old_pred", prefix);
        if ((st = read_i64(c, name, &has_old, &n_aux))) goto done;
        if (n_aux != steps) {
            st = cvx_fail(&c->err, CVX_ERR_SHAPE, "scheduler: '%s' has %" PRId64 " entries, not %" PRId64, name,
                          n_aux, steps);
            goto done;
        }
        snprintf(name, sizeof name, "%stimestep_back", prefix);
        if ((st = read_i64(c, name, &t_back, &n_aux))) goto done;
        if (n_aux != steps) {
            st = cvx_fail(&c->err, CVX_ERR_SHAPE, "scheduler: '%s' has %" PRId64 " entries, not %" PRId64, name,
                          n_aux, steps);
            goto done;
        }
        snprintf(name, sizeof name, "%sold_pred_original_sample_in", prefix);
        if ((st = cvx_golden_tensor_f32(c, name, total, &old_in))) goto done;
        const json_t *seed = json_object_get(tj, "seed_generator");
        if (!json_is_integer(seed)) {
            st = cvx_fail(&c->err, CVX_ERR_FORMAT,
                          "scheduler: case.json trajectories.%s.seed_generator is missing (the DPM steps draw from "
                          "the pipeline's generator)", prefix);
            goto done;
        }
        cvx_rng_seed(&g, (uint64_t)json_integer_value(seed));
        init = malloc((size_t)n * sizeof *init);
        noise1 = calloc((size_t)total, sizeof *noise1);
        noise2 = calloc((size_t)total, sizeof *noise2);
        if (!init || !noise1 || !noise2) {
            st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
            goto done;
        }
        cvx_rng_randn_f32(&g, init, n, CVX_RNG_AVX2); /* prepare_latents' draw comes first */
    }

    prev = malloc((size_t)total * sizeof *prev);
    x0 = malloc((size_t)total * sizeof *x0);
    if (!prev || !x0) {
        st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
        goto done;
    }
    if ((st = cvx_sched_state_init(&state, n, &c->err))) goto done;
    for (int64_t i = 0; i < steps; i++) {
        const size_t off = (size_t)(i * n);
        if (dpm) {
            state.has_pred = has_old[i] != 0;
            memcpy(state.pred_original_sample, old_in + off, (size_t)n * sizeof(float));
            state.has_back = t_back[i] != -1;
            state.timestep_back = t_back[i];
        }
        st = cvx_scheduler_step(s, &state, model_out + off, ts[i], sample_in + off, dpm ? &g : NULL, prev + off,
                                &c->err);
        if (st) {
            cvx_error_prefix(&c->err, "scheduler: %s step %" PRId64 " (t=%" PRId64 "): ", prefix, i, ts[i]);
            goto done;
        }
        memcpy(x0 + off, state.pred_original_sample, (size_t)n * sizeof(float));
        if (dpm) {
            memcpy(noise1 + off, state.noise[0], (size_t)n * sizeof(float));
            if (state.n_noise == 2) memcpy(noise2 + off, state.noise[1], (size_t)n * sizeof(float));
        }
    }

    struct {
        const char *suffix;
        float *data;
        int64_t numel;
    } outs[] = {{"prev_sample", prev, total},     {"pred_original_sample", x0, total},
                {"initial_latents", init, n},     {"noise_first", noise1, total},
                {"noise_second", noise2, total}};
    for (size_t k = 0; k < sizeof outs / sizeof outs[0]; k++) {
        snprintf(name, sizeof name, "%s%s", prefix, outs[k].suffix);
        if (!outs[k].data || !cvx_golden_wants(c, name)) continue;
        if ((st = emit(c, name, CVX_DTYPE_F32, outs[k].data, outs[k].numel))) goto done;
    }

done:
    cvx_sched_state_release(&state);
    free(ts);
    free(has_old);
    free(t_back);
    free(sample_in);
    free(model_out);
    free(old_in);
    free(prev);
    free(x0);
    free(noise1);
    free(noise2);
    free(init);
    return st;
}

static const char *const traj_outputs[] = {"prev_sample", "pred_original_sample", "initial_latents", "noise_first",
                                           "noise_second", NULL};

cvx_status cvx_golden_scheduler(cvx_golden_case *c) {
    json_t *compare = c->check ? json_object_get(c->check, "compare") : NULL;
    if (!json_is_object(compare))
        return cvx_fail(&c->err, CVX_ERR_FORMAT, "scheduler: check.compare is not an object");
    if (!c->config) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "scheduler: the case has no config.json");
    cvx_scheduler *s = NULL;
    cvx_status st = cvx_scheduler_create(&s, c->config, CVX_SCHED_AUTO, c->dir, &c->err);
    if (st) return st;

    /* trajectories and tables are computed once per prefix */
    size_t cap = json_object_size(compare) + 1, ndone = 0;
    char **done = calloc(cap, sizeof *done);
    if (!done) {
        cvx_scheduler_free(s);
        return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
    }
    const char *name;
    json_t *val;
    json_object_foreach(compare, name, val) {
        const int64_t T = cvx_scheduler_num_train_timesteps(s);
        if (strcmp(name, "betas") == 0) {
            st = emit_f64_as_expected(c, name, cvx_scheduler_betas(s), T);
        } else if (strcmp(name, "alphas_cumprod") == 0) {
            st = emit_f64_as_expected(c, name, cvx_scheduler_alphas_cumprod(s), T);
        } else if (strcmp(name, "final_alpha_cumprod") == 0) {
            double v = cvx_scheduler_final_alpha_cumprod(s);
            st = emit_f64_as_expected(c, name, &v, 1);
        } else if (strncmp(name, "timesteps_n", 11) == 0) {
            st = do_timesteps_n(c, s, name);
        } else {
            /* grouped names: "<prefix><output>" */
            char prefix[200] = "";
            int is_table = 0;
            if (strncmp(name, "timesteps_table_", 16) == 0 &&
                (ends_with(name, "_n") || ends_with(name, "_offsets") || ends_with(name, "_values"))) {
                snprintf(prefix, sizeof prefix, "timesteps_table_");
                is_table = 1;
            } else if (strncmp(name, "traj", 4) == 0) {
                for (int k = 0; traj_outputs[k]; k++) {
                    size_t nl = strlen(name), sl = strlen(traj_outputs[k]);
                    if (ends_with(name, traj_outputs[k]) && nl - sl < sizeof prefix && nl > sl &&
                        name[nl - sl - 1] == '_') {
                        memcpy(prefix, name, nl - sl);
                        prefix[nl - sl] = 0;
                        break;
                    }
                }
            }
            if (!prefix[0]) {
                st = cvx_fail(&c->err, CVX_ERR_FORMAT, "scheduler: do not know how to compute compare name '%s'",
                              name);
            } else {
                int seen = 0;
                for (size_t k = 0; k < ndone && !seen; k++) seen = strcmp(done[k], prefix) == 0;
                if (!seen) {
                    done[ndone] = strdup(prefix);
                    if (!done[ndone])
                        st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "scheduler: out of memory");
                    else {
                        ndone++;
                        st = is_table ? do_table(c, s, prefix) : do_traj(c, s, prefix);
                    }
                }
            }
        }
        if (st) break;
    }
    for (size_t k = 0; k < ndone; k++) free(done[k]);
    free(done);
    cvx_scheduler_free(s);
    return st;
}
