/* The inference worker: the one thread that owns the engine. It claims the oldest queued task, walks it through
 * Wiro's lifecycle (task_accept → task_preprocess_start/end → task_assign → task_start → task_output per denoising
 * step → task_end → task_postprocess_start → task_postprocess_end), and:
 *  - checkpoints after every completed step (the engine's opaque resume blob: with SQLite written to a temporary
 *    file, fsynced and renamed over <outputs>/.checkpoints/<task id>.ckpt; with PostgreSQL a row of the store, so
 *    that a worker on another host resumes it), so a task re-queued after a crash resumes from its last completed
 *    step and produces the video an uninterrupted run would;
 *  - holds a lease on its task, renewed by a thread of its own every lease/3 seconds; every write of the task names
 *    the claim's token, so once another worker took the task over (this one was cut off longer than the lease) this
 *    one writes nothing more and stops at its next cancellation check;
 *  - with PostgreSQL, stores the MP4 and its preview in the database before it records the end, so any API node
 *    serves them and the worker keeps no file;
 *  - stops at the engine's next cancellation check when Task/Kill lands (the task is task_cancel already) or when
 *    the server stops (the task goes back to the queue with its checkpoint);
 *  - ends every failure, early or late, as task_postprocess_end with pexit "1" and a debugerror. */
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <openssl/sha.h>

#include "service/inputs.h"
#include "service/internal.h"

#define CKPT_MAGIC "CVXSVCK2"
#define CKPT_HEADER 56 /* magic, step (int32), steps (int32), blob size (uint64), SHA-256 of the blob */

typedef struct {
    cvx_svc *svc;
    cvx_svc_task *task;
    int steps;
    int first_step;        /* the step this run started from (resume) */
    int last_step;         /* last step reported */
    int stage_phase, stage_done; /* last decode/write report published (phase, units done) */
    int stage_seq;               /* its order among the task's outputs: after the last step's */
    double prev_elapsed;   /* elapsed_seconds of the previous denoising report */
    double elapsed_before; /* generation seconds of earlier, interrupted runs */
    double elapsed;
    int ckpt_failed;
    char ckpt_err[256];
    long long polled_ms;   /* when the task's status was last read from the store (a Kill through another node) */
    int killed_elsewhere;  /* it was final there: a Cancel or Kill that another process recorded */
} run_ctx;

static void ckpt_path(const cvx_svc *svc, long long id, char *out, size_t size, int tmp) {
    snprintf(out, size, "%s/%lld.ckpt%s", svc->ckpt_dir, id, tmp ? ".tmp" : "");
}

static int fsync_dir(const char *dir) {
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int r = fsync(fd);
    close(fd);
    return r;
}

static int store_backoff(cvx_svc *svc, long long id, const char *err, int *delay_ms);

static long long lease_until(const cvx_svc *svc) { return cvx_svc_now_ms() + (long long)svc->cfg.lease_seconds * 1000; }

static cvx_status on_checkpoint(const void *state, size_t size, int step, int steps, void *ud) {
    run_ctx *rc = ud;
    if (rc->svc->blobs_in_store) {
        /* a store that fails is waited for (the generation pauses at its step), never skipped */
        cvx_svc *svc = rc->svc;
        char err[256];
        int r, delay = 0;
        while ((r = cvx_svc_store_checkpoint_put(svc->store, rc->task->id, rc->task->claim, lease_until(svc), step,
                                                 steps, state, size, err, sizeof err)) < 0)
            if (!store_backoff(svc, rc->task->id, err, &delay) || atomic_load(&svc->lease_lost)) break;
        if (delay && r >= 0) cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: the store works again", rc->task->id);
        if (r == 1) return CVX_OK;
        if (r == 0) {
            cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: another worker holds it now (the lease was lost)", rc->task->id);
            atomic_store(&svc->lease_lost, 1);
        }
        return CVX_ERR_CANCELLED;
    }
    char tmp[1200], path[1200];
    ckpt_path(rc->svc, rc->task->id, tmp, sizeof tmp, 1);
    ckpt_path(rc->svc, rc->task->id, path, sizeof path, 0);
    uint8_t head[CKPT_HEADER];
    memcpy(head, CKPT_MAGIC, 8);
    int32_t s32 = step, n32 = steps;
    uint64_t sz = size;
    memcpy(head + 8, &s32, 4);
    memcpy(head + 12, &n32, 4);
    memcpy(head + 16, &sz, 8);
    SHA256(state, size, head + 24);
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    int ok = fd >= 0;
    if (ok) {
        const uint8_t *parts[2] = {head, state};
        size_t lens[2] = {CKPT_HEADER, size};
        for (int k = 0; k < 2 && ok; k++) {
            size_t off = 0;
            while (off < lens[k]) {
                ssize_t w = write(fd, parts[k] + off, lens[k] - off);
                if (w < 0 && errno == EINTR) continue;
                if (w <= 0) {
                    ok = 0;
                    break;
                }
                off += (size_t)w;
            }
        }
        ok = ok && fsync(fd) == 0;
        ok = (close(fd) == 0) && ok;
    }
    ok = ok && rename(tmp, path) == 0 && fsync_dir(rc->svc->ckpt_dir) == 0;
    if (!ok) {
        snprintf(rc->ckpt_err, sizeof rc->ckpt_err, "writing the checkpoint %.160s: %s", path, strerror(errno));
        rc->ckpt_failed = 1;
        unlink(tmp);
        return CVX_ERR_IO;
    }
    return CVX_OK;
}

/* Reads a checkpoint: returns the blob (malloc'ed) and its step, or NULL when there is none or it is unusable: then
 * *damaged says why (a file that is there but truncated, of another format or whose checksum does not match), and
 * the file is removed. */
static void *load_checkpoint(cvx_svc *svc, long long id, size_t *size, int *step, int *steps, const char **damaged) {
    char path[1200];
    *damaged = NULL;
    if (svc->blobs_in_store) {
        void *blob = NULL;
        char err[256];
        int r, delay = 0;
        while ((r = cvx_svc_store_checkpoint_get(svc->store, id, &blob, size, step, steps, err, sizeof err)) < 0)
            if (!store_backoff(svc, id, err, &delay)) return NULL;
        return r == 1 ? blob : NULL;
    }
    ckpt_path(svc, id, path, sizeof path, 0);
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    uint8_t head[CKPT_HEADER], sum[32];
    void *blob = NULL;
    uint64_t sz = 0;
    int32_t s32 = 0, n32 = 0;
    struct stat st;
    *damaged = "it is not a checkpoint of this version";
    if (fread(head, 1, CKPT_HEADER, f) == CKPT_HEADER && !memcmp(head, CKPT_MAGIC, 8) && !fstat(fileno(f), &st)) {
        memcpy(&s32, head + 8, 4);
        memcpy(&n32, head + 12, 4);
        memcpy(&sz, head + 16, 8);
        *damaged = "it is truncated";
        if (sz > 0 && (uint64_t)st.st_size == CKPT_HEADER + sz && (blob = malloc(sz)) && fread(blob, 1, sz, f) != sz) {
            free(blob);
            blob = NULL;
        }
        if (blob) {
            SHA256(blob, sz, sum);
            if (memcmp(sum, head + 24, 32)) {
                *damaged = "its checksum does not match";
                free(blob);
                blob = NULL;
            }
        }
    }
    fclose(f);
    if (!blob) {
        cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: ignoring the checkpoint %s: %s", id, path, *damaged);
        unlink(path);
        return NULL;
    }
    *damaged = NULL;
    *size = sz;
    *step = s32;
    *steps = n32;
    return blob;
}

static void remove_checkpoint(cvx_svc *svc, const cvx_svc_task *t) {
    long long id = t->id;
    if (svc->blobs_in_store) { /* only while this claim holds the task: never one another worker wrote */
        char err[256];
        if (cvx_svc_store_checkpoint_delete(svc->store, id, t->claim, err, sizeof err) < 0)
            cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: %s", id, err);
        return;
    }
    char path[1200];
    ckpt_path(svc, id, path, sizeof path, 0);
    unlink(path);
    ckpt_path(svc, id, path, sizeof path, 1);
    unlink(path);
}

/* The engine's cancellation check (every transformer block): a stop, a Kill through this process, or, read from
 * the store at most once a second, a Kill or Cancel that another process (an API node) recorded. */
static int should_cancel(void *ud) {
    run_ctx *rc = ud;
    if (atomic_load(&rc->svc->stopping) || atomic_load(&rc->svc->kill_requested) || rc->killed_elsewhere ||
        atomic_load(&rc->svc->lease_lost))
        return 1;
    long long now = cvx_svc_now_ms();
    if (now - rc->polled_ms < 1000 && now >= rc->polled_ms) return 0;
    rc->polled_ms = now;
    cvx_svc_task t;
    char err[256];
    if (cvx_svc_store_task_get(rc->svc->store, rc->task->id, NULL, &t, err, sizeof err) != 1) return 0;
    rc->killed_elsewhere = cvx_svc_status_final(t.status);
    cvx_svc_task_clear(&t);
    return rc->killed_elsewhere;
}

static void fmt_seconds(double s, char *out, size_t size) {
    if (s < 0) snprintf(out, size, "?");
    else snprintf(out, size, "%.0fs", s);
}

/* After the denoising: one task_output per decoder batch and for the writing, naming the stage (the page shows it
 * instead of a frozen "step n/n"), with the share of the whole task and the engine's remaining time. */
static void publish_stage(run_ctx *rc, const cvx_progress *p) {
    if (p->phase == (cvx_phase)rc->stage_phase && p->done == rc->stage_done) return;
    rc->stage_phase = (int)p->phase;
    rc->stage_done = p->done;
    const char *stage = p->phase == CVX_PHASE_DECODE ? "decode" : "write";
    char pct[16], tpct[16], cur[16], tot[16], scur[16], stot[16], el[32], rem[32];
    snprintf(pct, sizeof pct, "%d", 100);
    snprintf(tpct, sizeof tpct, "%d", (int)(100.0 * p->fraction));
    snprintf(cur, sizeof cur, "%d", p->steps);
    snprintf(tot, sizeof tot, "%d", p->steps);
    snprintf(scur, sizeof scur, "%d", p->done);
    snprintf(stot, sizeof stot, "%d", p->total);
    fmt_seconds(rc->elapsed, el, sizeof el);
    fmt_seconds(p->remaining_seconds, rem, sizeof rem);
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type",
                            "progressGenerate", "task", "Generate", "percentage", pct, "stepCurrent", cur, "stepTotal",
                            tot, "elapsedTime", el, "remainingTime", rem, "stage", stage, "stageLabel",
                            p->label ? p->label : stage, "stageCurrent", scur, "stageTotal", stot, "taskPercentage",
                            tpct, "speedType", "it/s");
    char line[256];
    if (p->total > 0 && p->phase == CVX_PHASE_DECODE)
        snprintf(line, sizeof line, "Generate: %s, batch %d/%d (%s%% of the task), elapsed %s, remaining %s",
                 p->label ? p->label : stage, p->done, p->total, tpct, el, rem);
    else
        snprintf(line, sizeof line, "Generate: %s (%s%% of the task), elapsed %s, remaining %s",
                 p->label ? p->label : stage, tpct, el, rem);
    char err[256];
    char *text = cvx_svc_event_text(CVX_SVC_S_OUTPUT, rc->task, msg, 1);
    rc->stage_seq = (rc->stage_seq > p->steps ? rc->stage_seq : p->steps) + 1;
    if (cvx_svc_store_task_output(rc->svc->store, rc->task->id, rc->task->claim, line, rc->elapsed, text, rc->stage_seq, err,
                                  sizeof err) < 0)
        cvx_svc_log(rc->svc, CVX_LOG_WARN, "task %lld: %s", rc->task->id, err);
    if (text) cvx_svc_progress_publish(rc->svc->progress, rc->task->id, CVX_SVC_EV_OUTPUT, rc->stage_seq, 0, text);
    free(text);
}

/* Records this worker's heartbeat (and the task it generates) when the last is HEARTBEAT_S old, or at once. */
#define HEARTBEAT_S 10
static void heartbeat(cvx_svc *svc, long long task, int now) {
    long long t = cvx_svc_now_s();
    if (!now && t - svc->last_beat_s < HEARTBEAT_S && t >= svc->last_beat_s) return;
    char err[256];
    if (cvx_svc_store_worker_beat(svc->store, svc->worker_name, task, t, err, sizeof err) == 0) svc->last_beat_s = t;
    else cvx_svc_log(svc, CVX_LOG_WARN, "worker %s: %s", svc->worker_name, err);
}

static void on_progress(const cvx_progress *p, void *ud) {
    run_ctx *rc = ud;
    heartbeat(rc->svc, rc->task->id, 0);
    /* the task's time covers every stage, the decode and the writing included */
    if (p->elapsed_seconds >= 0 && (p->phase != CVX_PHASE_DENOISE || p->step > rc->last_step))
        rc->elapsed = rc->elapsed_before + p->elapsed_seconds;
    if ((p->phase == CVX_PHASE_DECODE || p->phase == CVX_PHASE_WRITE) && rc->last_step >= 0 && p->steps > 0) {
        publish_stage(rc, p);
        return;
    }
    if (p->phase != CVX_PHASE_DENOISE || p->step <= rc->last_step || p->step < 1) return;
    /* it/s over the steps since the previous report (the first one also carries the text encoding) */
    int base = rc->last_step >= 0 ? rc->last_step : (rc->first_step > 0 ? rc->first_step : 0);
    double dt = p->elapsed_seconds - (rc->last_step >= 0 ? rc->prev_elapsed : 0.0);
    double speed = dt > 0 ? (p->step - base) / dt : 0.0;
    rc->prev_elapsed = p->elapsed_seconds;
    rc->last_step = p->step;
    rc->steps = p->steps;
    rc->elapsed = rc->elapsed_before + p->elapsed_seconds;
    char pct[16], cur[16], tot[16], spd[32], el[32], rem[32];
    snprintf(pct, sizeof pct, "%d", p->steps > 0 ? (int)(100.0 * p->step / p->steps) : 0);
    snprintf(cur, sizeof cur, "%d", p->step);
    snprintf(tot, sizeof tot, "%d", p->steps);
    snprintf(spd, sizeof spd, "%.2f", speed);
    fmt_seconds(rc->elapsed, el, sizeof el);
    fmt_seconds(p->remaining_seconds, rem, sizeof rem);
    char tpct[16];
    snprintf(tpct, sizeof tpct, "%d", (int)(100.0 * p->fraction));
    json_t *msg = json_pack("{s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s, s:s}", "type", "progressGenerate",
                            "task", "Generate", "percentage", pct, "stepCurrent", cur, "stepTotal", tot, "speed", spd,
                            "speedType", "it/s", "elapsedTime", el, "remainingTime", rem, "stage", "denoise",
                            "stageLabel", p->label ? p->label : "denoising", "taskPercentage", tpct);
    char line[256];
    snprintf(line, sizeof line, "Generate: step %d/%d (%s%%), %s it/s, elapsed %s, remaining %s", p->step, p->steps,
             pct, spd, el, rem);
    char err[256];
    snprintf(rc->task->status, sizeof rc->task->status, CVX_SVC_S_OUTPUT);
    char *text = cvx_svc_event_text(CVX_SVC_S_OUTPUT, rc->task, msg, 1);
    if (cvx_svc_store_task_output(rc->svc->store, rc->task->id, rc->task->claim, line, rc->elapsed, text, p->step, err,
                                  sizeof err) < 0)
        cvx_svc_log(rc->svc, CVX_LOG_WARN, "task %lld: %s", rc->task->id, err);
    if (text) cvx_svc_progress_publish(rc->svc->progress, rc->task->id, CVX_SVC_EV_OUTPUT, p->step, 0, text);
    free(text);
}

/* Waits before the next try of a store update that failed: 100 ms, doubling up to 5 s. 0 when the server stops
 * meanwhile (the task stays claimed: the next start re-queues it). */
static int store_backoff(cvx_svc *svc, long long id, const char *err, int *delay_ms) {
    if (*delay_ms == 0) cvx_svc_log(svc, CVX_LOG_ERROR, "task %lld: %s; retrying until the store works again", id, err);
    *delay_ms = *delay_ms ? (*delay_ms * 2 > 5000 ? 5000 : *delay_ms * 2) : 100;
    for (int waited = 0; waited < *delay_ms; waited += 50) {
        if (atomic_load(&svc->stopping)) return 0;
        struct timespec ts = {0, 50 * 1000000L};
        nanosleep(&ts, NULL);
    }
    return !atomic_load(&svc->stopping);
}

/* A transition + its event: 1 moved, 0 a Kill made the task final meanwhile, -1 the store failed until the server
 * stopped (nothing is removed then: the task is still claimed and the next start re-queues it). A failing store is
 * retried with back-off, never taken for a Kill. */
static int step_to(cvx_svc *svc, cvx_svc_task *t, cvx_svc_status status) {
    char err[256];
    int r, delay = 0;
    while ((r = cvx_svc_store_task_transition(svc->store, t->id, t->claim, status, cvx_svc_now_s(), err, sizeof err)) < 0)
        if (!store_backoff(svc, t->id, err, &delay)) return -1;
    if (delay) cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: the store works again", t->id);
    if (r == 0) return 0;
    snprintf(t->status, sizeof t->status, "%s", cvx_svc_status_name(status));
    cvx_svc_publish_status(svc, t);
    return 1;
}

/* cvx_svc_store_task_finish, retried like step_to: 1, 0 (final already) or -1 (stopped with the store failing). */
static int finish_retrying(cvx_svc *svc, const cvx_svc_task *t, const char *pexit, const char *debugerror,
                           const char *out_name, const char *out_key, long long out_size, double elapsed) {
    char err[256];
    long long id = t->id;
    int r, delay = 0;
    while ((r = cvx_svc_store_task_finish(svc->store, id, t->claim, pexit, debugerror, out_name, out_key, out_size, elapsed,
                                          cvx_svc_now_s(), err, sizeof err)) < 0)
        if (!store_backoff(svc, id, err, &delay)) return -1;
    if (delay) cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: the store works again", id);
    return r;
}

/* A message for clients: every absolute path in it is cut to its last component ("writing /srv/out/.checkpoints/7.ckpt:
 * ..." becomes "writing 7.ckpt: ..."), so debugerror never shows the server's folders. */
static void strip_paths(const char *in, char *out, size_t size) {
    size_t o = 0;
    for (size_t i = 0; in[i] && o + 1 < size;) {
        int starts = in[i] == '/' && (i == 0 || strchr(" \t('\"=:,[", in[i - 1]));
        if (!starts) {
            out[o++] = in[i++];
            continue;
        }
        size_t end = i, last = i;
        while (in[end] && !strchr(" \t'\"),:;]", in[end])) {
            if (in[end] == '/') last = end + 1;
            end++;
        }
        for (size_t k = last; k < end && o + 1 < size; k++) out[o++] = in[k];
        i = end;
    }
    out[o] = 0;
}

/* The final transition of a failure: task_error event, then task_postprocess_end with pexit 1. */
static void fail_task(cvx_svc *svc, cvx_svc_task *t, const char *full_message, double elapsed) {
    char err[256], message[1024];
    cvx_svc_log(svc, CVX_LOG_WARN, "task %lld failed: %s", t->id, full_message); /* the server's log keeps the paths */
    strip_paths(full_message, message, sizeof message);
    char *text = cvx_svc_event_text("task_error", t, json_string(message), 0);
    if (text) cvx_svc_progress_publish(svc->progress, t->id, CVX_SVC_EV_ERROR, 0, 0, text);
    free(text);
    int r = finish_retrying(svc, t, "1", message, NULL, NULL, 0, elapsed);
    if (r > 0) {
        cvx_svc_task fresh;
        if (cvx_svc_store_task_get(svc->store, t->id, NULL, &fresh, err, sizeof err) == 1) {
            cvx_svc_publish_status(svc, &fresh);
            cvx_svc_task_clear(&fresh);
        }
        if (t->callbackurl && t->callbackurl[0]) cvx_svc_wake_callbacks(svc); /* only a task with a callback */
    }
}

typedef struct {
    const char *prompt, *negative, *out_key;
    int steps, frames, width, height, fps;
    double scale;
    unsigned long long seed;
    cvx_precision precision;
    cvx_cache_params cache;
    const char *scheduler; /* NULL: the folder's */
    int dynamic_cfg;
} gen_params;

static int parse_gen(json_t *g, gen_params *p, char *err, size_t n) {
    json_t *seed = json_object_get(g, "seed");
    p->prompt = json_string_value(json_object_get(g, "prompt"));
    p->negative = json_string_value(json_object_get(g, "negative_prompt"));
    p->out_key = json_string_value(json_object_get(g, "output_key"));
    p->steps = (int)json_integer_value(json_object_get(g, "steps"));
    p->frames = (int)json_integer_value(json_object_get(g, "num_frames"));
    p->width = (int)json_integer_value(json_object_get(g, "width"));
    p->height = (int)json_integer_value(json_object_get(g, "height"));
    p->fps = (int)json_integer_value(json_object_get(g, "fps"));
    p->scale = json_number_value(json_object_get(g, "guidance_scale"));
    if (!p->prompt || !p->negative || !p->out_key || !json_is_string(seed) || p->steps < 1) {
        snprintf(err, n, "the stored generation parameters are incomplete");
        return -1;
    }
    p->seed = strtoull(json_string_value(seed), NULL, 10);
    /* tasks stored before the precision was chosen per task ran with the library's default, fp32 (and their
     * checkpoints hold it) */
    json_t *prec = json_object_get(g, "precision");
    int pr = prec ? cvx_precision_from_name(json_string_value(prec)) : CVX_PRECISION_FP32;
    if (pr < 0) {
        snprintf(err, n, "the stored precision is not fp32 or bf16");
        return -1;
    }
    p->precision = (cvx_precision)pr;
    /* tasks stored before the cache input ran without one (and their checkpoints hold none) */
    json_t *cache = json_object_get(g, "cache");
    memset(&p->cache, 0, sizeof p->cache);
    if (cache && (!json_is_string(cache) || cvx_cache_parse(json_string_value(cache), &p->cache, NULL, 0) != CVX_OK)) {
        snprintf(err, n, "the stored cache setting is malformed");
        return -1;
    }
    /* tasks stored before these inputs ran with the folder's scheduler and no dynamic CFG */
    json_t *sched = json_object_get(g, "scheduler");
    p->scheduler = sched ? json_string_value(sched) : NULL;
    if (sched && (!p->scheduler || (strcmp(p->scheduler, "ddim") && strcmp(p->scheduler, "dpm")))) {
        snprintf(err, n, "the stored scheduler is malformed");
        return -1;
    }
    p->dynamic_cfg = json_is_true(json_object_get(g, "dynamic_cfg"));
    /* the key names a folder: only what cvx_svc_random_token makes */
    if (strlen(p->out_key) < 16 || strspn(p->out_key, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789") !=
                                       strlen(p->out_key)) {
        snprintf(err, n, "the stored output key is malformed");
        return -1;
    }
    return 0;
}

/* PostgreSQL: the MP4 and the preview into the store (retried like step_to): 1 stored, 0 the claim was lost (or a
 * Kill came), -1 the server stopped with the store failing. */
static int store_outputs(cvx_svc *svc, cvx_svc_task *t, const char *out_key, const char *mp4, const char *preview) {
    const char *paths[2] = {mp4, preview}, *names[2] = {"0.mp4", CVX_SVC_PREVIEW_NAME};
    for (int k = 0; k < 2; k++) {
        struct stat st;
        if (k == 1 && stat(preview, &st)) continue; /* no preview written */
        char err[512];
        int r, delay = 0;
        while ((r = cvx_svc_store_output_put(svc->store, t->id, t->claim, out_key, names[k], paths[k], err,
                                             sizeof err)) < 0)
            if (!store_backoff(svc, t->id, err, &delay)) return -1;
        if (r == 0) return 0;
    }
    return 1;
}

static void run_task(cvx_svc *svc, cvx_svc_task *t) {
    char err[512] = "";
    double t0 = (double)cvx_svc_now_ms() / 1e3;
    cvx_svc_publish_status(svc, t); /* task_accept */
    if (step_to(svc, t, CVX_SVC_STATUS_PREPROCESS_START) != 1) return;

    json_t *g = json_loads(t->gen, 0, NULL);
    gen_params gp;
    if (!g || parse_gen(g, &gp, err, sizeof err)) {
        fail_task(svc, t, err[0] ? err : "the stored generation parameters are not JSON", 0);
        json_decref(g);
        return;
    }
    {
        char line[600], cache[400];
        cvx_cache_format(&gp.cache, cache, sizeof cache);
        snprintf(line, sizeof line,
                 "Generate: %d steps, %dx%d, %d frames at %d fps, scale %g, seed %llu, precision %s, cache %s, "
                 "scheduler %s%s",
                 gp.steps, gp.width, gp.height, gp.frames, gp.fps, gp.scale, gp.seed, cvx_precision_name(gp.precision),
                 cache, gp.scheduler ? gp.scheduler : "the model's", gp.dynamic_cfg ? ", dynamic CFG" : "");
        cvx_svc_store_task_log(svc->store, t->id, t->claim, t->status, line, t->elapsed, err, sizeof err);
        cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: %s", t->id, line);
        if (gp.precision == CVX_PRECISION_BF16 && !svc->cfg.allow_bf16)
            cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: stored with bf16, which this CPU only emulates (slowly)", t->id);
    }
    char dir[1200], out_path[1300], preview_path[1300];
    snprintf(dir, sizeof dir, "%s/%s", svc->outputs_dir, gp.out_key);
    snprintf(out_path, sizeof out_path, "%s/0.mp4", dir);
    /* the animated WebP beside the MP4: the page's thumbnail in Recent tasks (outputs lists it after the video) */
    snprintf(preview_path, sizeof preview_path, "%s/" CVX_SVC_PREVIEW_NAME, dir);
    if (mkdir(dir, 0755) && errno != EEXIST) {
        snprintf(err, sizeof err, "cannot create the output folder: %s", strerror(errno));
        fail_task(svc, t, err, 0);
        json_decref(g);
        return;
    }
    run_ctx rc = {.svc = svc, .task = t, .first_step = -1, .last_step = -1, .elapsed_before = t->elapsed};
    size_t resume_size = 0;
    int resume_step = 0, resume_steps = 0;
    const char *damaged = NULL;
    void *resume = load_checkpoint(svc, t->id, &resume_size, &resume_step, &resume_steps, &damaged);
    if (damaged) {
        char line[160];
        snprintf(line, sizeof line, "The checkpoint was damaged (%s); starting from step 0", damaged);
        cvx_svc_store_task_log(svc->store, t->id, t->claim, t->status, line, t->elapsed, err, sizeof err);
    }
    if (resume) {
        char line[160];
        snprintf(line, sizeof line, "Resuming from the checkpoint of step %d/%d (attempt %d)", resume_step,
                 resume_steps, t->attempts);
        cvx_svc_store_task_log(svc->store, t->id, t->claim, t->status, line, t->elapsed, err, sizeof err);
        cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: %s", t->id, line);
        rc.first_step = resume_step;
    }
    /* image-to-video: the image stored with the task (any worker reads it from the store) */
    cvx_frames image = {0};
    {
        void *bytes = NULL;
        size_t size = 0;
        int r, delay = 0;
        while ((r = cvx_svc_store_input_get(svc->store, t->id, &bytes, &size, err, sizeof err)) < 0)
            if (!store_backoff(svc, t->id, err, &delay)) break;
        if (r < 0) { /* stopping while the store is away: the task stays claimed for the next start */
            free(resume);
            json_decref(g);
            return;
        }
        char why[400];
        if (r == 1 && cvx_svc_input_decode(bytes, size, &image, why, sizeof why)) {
            free(bytes);
            free(resume);
            snprintf(err, sizeof err, "the stored inputImage %s", why);
            fail_task(svc, t, err, 0);
            json_decref(g);
            return;
        }
        free(bytes);
    }

    int moved = step_to(svc, t, CVX_SVC_STATUS_PREPROCESS_END);
    if (moved == 1) moved = step_to(svc, t, CVX_SVC_STATUS_ASSIGN);
    if (moved == 1) {
        atomic_store(&svc->kill_requested, 0);
        atomic_store(&svc->running_task, t->id);
        moved = step_to(svc, t, CVX_SVC_STATUS_START);
        if (moved != 1) atomic_store(&svc->running_task, 0);
    }
    if (moved != 1) {
        free(resume);
        cvx_frames_free(&image);
        if (moved == 0) { /* killed: its files go; -1 (stopped, store failing): they stay for the next start */
            cvx_svc_remove_output(svc, gp.out_key, t->id, t->claim); /* out_key lives in g */
            remove_checkpoint(svc, t);
        }
        json_decref(g);
        return;
    }

    cvx_generate_params p = cvx_generate_params_default();
    p.prompt = gp.prompt;
    if (image.rgb) p.image = image.rgb, p.image_width = image.width, p.image_height = image.height;
    p.negative_prompt = gp.negative;
    p.steps = gp.steps;
    p.guidance_scale = (float)gp.scale;
    p.seed = gp.seed;
    p.num_frames = gp.frames;
    p.width = gp.width;
    p.height = gp.height;
    p.fps = gp.fps;
    p.precision = gp.precision;
    p.cache = gp.cache;
    p.scheduler = gp.scheduler;
    p.use_dynamic_cfg = gp.dynamic_cfg;
    p.output_path = out_path;
    p.preview_path = preview_path;
    p.progress = on_progress;
    p.progress_user_data = &rc;
    p.should_cancel = should_cancel;
    p.cancel_user_data = &rc;
    p.checkpoint = on_checkpoint;
    p.checkpoint_user_data = &rc;
    p.resume_state = resume;
    p.resume_state_size = resume_size;
    cvx_status st = svc->cfg.engine.generate(svc->cfg.engine.ctx, &p, err, sizeof err);
    if (st != CVX_OK && st != CVX_ERR_CANCELLED && resume && rc.last_step < 0 && !rc.ckpt_failed) {
        /* a checkpoint the engine refuses (another engine version, say) costs the steps it saved, not the task */
        cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: resuming failed (%s); starting from step 0", t->id, err);
        cvx_svc_store_task_log(svc->store, t->id, t->claim, CVX_SVC_S_START, "The checkpoint was refused; starting from step 0",
                               t->elapsed, err, sizeof err);
        remove_checkpoint(svc, t);
        p.resume_state = NULL;
        p.resume_state_size = 0;
        rc.first_step = -1;
        err[0] = 0;
        st = svc->cfg.engine.generate(svc->cfg.engine.ctx, &p, err, sizeof err);
    }
    free(resume);
    cvx_frames_free(&image);
    int killed = atomic_load(&svc->kill_requested) || rc.killed_elsewhere;
    if (!killed && atomic_load(&svc->lease_lost)) { /* a renewal refused: a Kill, or another worker's claim? */
        cvx_svc_task now;
        if (cvx_svc_store_task_get(svc->store, t->id, NULL, &now, err, sizeof err) == 1) {
            killed = cvx_svc_status_final(now.status) && now.claim == t->claim;
            cvx_svc_task_clear(&now);
        }
    }
    atomic_store(&svc->running_task, 0);
    double elapsed = rc.last_step >= 0 ? rc.elapsed : t->elapsed + (double)cvx_svc_now_ms() / 1e3 - t0;

    if (atomic_load(&svc->lease_lost) && !killed) {
        /* another worker holds the task (or a Kill made it final): write nothing; the removals below are fenced by
         * this claim, so they only touch what is still this worker's */
        cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: lease lost after step %d; leaving it to its new holder", t->id,
                    rc.last_step);
        remove_checkpoint(svc, t);
        cvx_svc_remove_output(svc, gp.out_key, t->id, t->claim);
        cvx_svc_progress_forget(svc->progress, t->id);
        json_decref(g);
        return;
    }

    if (st == CVX_ERR_CANCELLED && !killed && atomic_load(&svc->stopping)) {
        /* graceful shutdown: back to the queue; the checkpoint of the last completed step stays */
        if (cvx_svc_store_task_requeue(svc->store, t->id, t->claim, err, sizeof err) < 0)
            cvx_svc_log(svc, CVX_LOG_ERROR, "task %lld: %s", t->id, err);
        else
            cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: re-queued at shutdown after step %d", t->id, rc.last_step);
        cvx_svc_progress_forget(svc->progress, t->id);
        json_decref(g);
        return;
    }
    if (st == CVX_ERR_CANCELLED) { /* Task/Kill: the task is task_cancel already */
        cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: killed", t->id);
        remove_checkpoint(svc, t);
        cvx_svc_remove_output(svc, gp.out_key, t->id, t->claim);
        cvx_svc_progress_forget(svc->progress, t->id);
        json_decref(g);
        return;
    }
    if (st != CVX_OK) {
        char msg[800];
        snprintf(msg, sizeof msg, "Generation failed: %s (%s)", rc.ckpt_failed ? rc.ckpt_err : (err[0] ? err : "?"),
                 cvx_status_name(st));
        remove_checkpoint(svc, t);
        cvx_svc_remove_output(svc, gp.out_key, t->id, t->claim);
        fail_task(svc, t, msg, elapsed);
        json_decref(g);
        return;
    }
    struct stat sb;
    if (stat(out_path, &sb) || !S_ISREG(sb.st_mode)) {
        remove_checkpoint(svc, t);
        cvx_svc_remove_output(svc, gp.out_key, t->id, t->claim);
        fail_task(svc, t, "Generation finished without writing the video file.", elapsed);
        json_decref(g);
        return;
    }
    /* the video stays until its status is recorded: a failing store is retried, never taken for a Kill */
    int ended = step_to(svc, t, CVX_SVC_STATUS_END);
    if (ended == 1) ended = step_to(svc, t, CVX_SVC_STATUS_POSTPROCESS_START);
    if (ended == 1 && svc->blobs_in_store) ended = store_outputs(svc, t, gp.out_key, out_path, preview_path);
    if (ended == 1)
        ended = finish_retrying(svc, t, "0", NULL, "0.mp4", gp.out_key, (long long)sb.st_size, elapsed);
    /* with PostgreSQL the files are in the database now: the local copies go */
    if (ended == 1 && svc->blobs_in_store) {
        unlink(out_path);
        unlink(preview_path);
        rmdir(dir);
    }
    if (ended == 1) {
        cvx_svc_task fresh;
        if (cvx_svc_store_task_get(svc->store, t->id, NULL, &fresh, err, sizeof err) == 1) {
            cvx_svc_publish_status(svc, &fresh);
            cvx_svc_task_clear(&fresh);
        }
        if (t->callbackurl && t->callbackurl[0]) cvx_svc_wake_callbacks(svc); /* only a task with a callback */
        cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: done in %.1f s, %lld bytes", t->id, elapsed, (long long)sb.st_size);
    } else if (ended == 0) {
        cvx_svc_remove_output(svc, gp.out_key, t->id, t->claim); /* killed while finishing */
    }
    if (ended >= 0) remove_checkpoint(svc, t);
    cvx_svc_progress_forget(svc->progress, t->id);
    json_decref(g);
}

/* The lease thread: renews the lease of the task the worker holds every lease/3 seconds (every second after a
 * failure), with the worker's heartbeat; a renewal the store refuses (another claim took the task, or it is final)
 * sets lease_lost, which the engine's next cancellation check sees. */
static void *lease_main(void *arg) {
    cvx_svc *svc = arg;
    long long last_ms = 0, every_ms = (long long)svc->cfg.lease_seconds * 1000 / 3;
    long long renewed_task = 0;
    while (!atomic_load(&svc->stopping)) {
        struct timespec ts = {0, 100 * 1000000L};
        nanosleep(&ts, NULL);
        long long id = atomic_load(&svc->lease_task), claim = atomic_load(&svc->lease_claim), now = cvx_svc_now_ms();
        if (!id || atomic_load(&svc->lease_lost)) continue;
        if (id == renewed_task && now - last_ms < every_ms && now >= last_ms) continue;
        char err[256];
        int r = cvx_svc_store_task_renew(svc->store, id, claim, lease_until(svc), err, sizeof err);
        if (r < 0) {
            cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: renewing the lease: %s", id, err);
            last_ms = now - every_ms + 1000; /* again in a second */
            continue;
        }
        if (r == 0 && atomic_load(&svc->lease_task) == id && atomic_load(&svc->lease_claim) == claim) {
            cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: the lease is lost (another worker took the task, or it ended)",
                        id);
            atomic_store(&svc->lease_lost, 1);
        }
        renewed_task = id;
        last_ms = now;
        cvx_svc_store_worker_beat(svc->store, svc->worker_name, id, now / 1000, err, sizeof err);
    }
    return NULL;
}

/* Tasks whose worker's lease ran out go back to the queue (at most every 2 s). */
static void recover_expired(cvx_svc *svc, long long *last_ms) {
    long long now = cvx_svc_now_ms();
    if (now - *last_ms < 2000 && now >= *last_ms) return;
    *last_ms = now;
    char err[256];
    long long failed[16];
    int n_failed = 0;
    int r = cvx_svc_store_recover(svc->store, svc->cfg.max_attempts, now / 1000, now, failed, 16, &n_failed, err,
                                  sizeof err);
    if (r < 0) cvx_svc_log(svc, CVX_LOG_WARN, "worker: %s", err);
    else if (r > 0) cvx_svc_log(svc, CVX_LOG_INFO, "%d tasks whose worker's lease ran out went back to the queue%s", r,
                                n_failed ? " (some failed after their attempts)" : "");
    if (r > 0) cvx_svc_wake_callbacks(svc);
    /* the step frames of tasks that ended a minute ago: every WebSocket session has read them */
    if (cvx_svc_store_frames_purge(svc->store, now / 1000 - 60, err, sizeof err) < 0)
        cvx_svc_log(svc, CVX_LOG_WARN, "worker: %s", err);
    /* the input files (image-to-video) of tasks that ended: only a task that may still run needs its image */
    if (cvx_svc_store_inputs_purge(svc->store, err, sizeof err) < 0) cvx_svc_log(svc, CVX_LOG_WARN, "worker: %s", err);
}

void *cvx_svc_worker_main(void *arg) {
    cvx_svc *svc = arg;
    atomic_store(&svc->ready, 1);
    int backoff_ms = 0;
    long long recovered_ms = 0;
    heartbeat(svc, 0, 1);
    pthread_t lease;
    int lease_started = pthread_create(&lease, NULL, lease_main, svc) == 0;
    if (!lease_started) cvx_svc_log(svc, CVX_LOG_ERROR, "worker: cannot start the lease thread");
    while (!atomic_load(&svc->stopping)) {
        cvx_svc_task t;
        char err[256];
        recover_expired(svc, &recovered_ms);
        int r = cvx_svc_store_task_claim(svc->store, svc->worker_name, cvx_svc_now_s(), lease_until(svc), &t, err,
                                         sizeof err);
        if (r > 0) {
            backoff_ms = 0;
            cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: claimed (attempt %d, claim %lld)", t.id, t.attempts, t.claim);
            atomic_store(&svc->lease_lost, 0);
            atomic_store(&svc->lease_claim, t.claim);
            atomic_store(&svc->lease_task, t.id);
            heartbeat(svc, t.id, 1);
            run_task(svc, &t);
            atomic_store(&svc->lease_task, 0);
            atomic_store(&svc->lease_lost, 0);
            heartbeat(svc, 0, 1);
            cvx_svc_task_clear(&t);
            continue;
        }
        heartbeat(svc, 0, 0);
        if (r < 0) {
            cvx_svc_log(svc, CVX_LOG_ERROR, "worker: %s", err);
            backoff_ms = backoff_ms ? (backoff_ms * 2 > 5000 ? 5000 : backoff_ms * 2) : 100;
        }
        pthread_mutex_lock(&svc->mu);
        if (!svc->worker_wake && !atomic_load(&svc->stopping)) {
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            long long wait_ms = backoff_ms ? backoff_ms : 2000; /* a safety net for a missed wake-up */
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += (wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&svc->wake_worker, &svc->mu, &ts);
        }
        svc->worker_wake = 0;
        pthread_mutex_unlock(&svc->mu);
    }
    if (lease_started) pthread_join(lease, NULL);
    return NULL;
}
