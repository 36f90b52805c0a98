/* The service core: what the worker, the callbacks and the HTTP side share and none of them owns — the clock, the
 * log, the wake-ups, the outputs folder (names, removal), the configuration's defaults, and the lifecycle of the
 * state under them (the store and its server key, the progress hub, recovery of interrupted tasks at start). No
 * HTTP here: service.c starts the HTTP side (http.c), the worker and the callbacks on top of this. */
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "service/internal.h"

/* ---- clock, log, wake-ups, outputs ---- */

long long cvx_svc_now_s(void) { return (long long)time(NULL); }

long long cvx_svc_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

void cvx_svc_log(const cvx_svc *svc, cvx_log_level level, const char *fmt, ...) {
    if (level > svc->cfg.logger.level) return;
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (svc->cfg.logger.fn) {
        svc->cfg.logger.fn(level, msg, svc->cfg.logger.user_data);
    } else {
        static const char *names[] = {"error", "warn", "info", "debug"};
        fprintf(stderr, "cogvideox %s: %s: %s\n", svc->cfg.no_http ? "worker" : "serve", names[level], msg);
    }
}

void cvx_svc_wake_worker(cvx_svc *svc) {
    pthread_mutex_lock(&svc->mu);
    svc->worker_wake = 1;
    pthread_cond_signal(&svc->wake_worker);
    pthread_mutex_unlock(&svc->mu);
}

void cvx_svc_wake_callbacks(cvx_svc *svc) {
    pthread_mutex_lock(&svc->mu);
    svc->callbacks_wake = 1;
    pthread_cond_signal(&svc->wake_callbacks); /* one thread; it wakes another when more are due */
    pthread_mutex_unlock(&svc->mu);
}

int cvx_svc_output_key_ok(const char *k, size_t len) {
    if (len < 16 || len > 64) return 0;
    for (size_t i = 0; i < len; i++)
        if (!((k[i] >= 'a' && k[i] <= 'z') || (k[i] >= 'A' && k[i] <= 'Z') || (k[i] >= '0' && k[i] <= '9')))
            return 0;
    return 1;
}

int cvx_svc_output_name_ok(const char *n, size_t len) {
    if (len < 1 || len > 64 || n[0] == '.') return 0;
    for (size_t i = 0; i < len; i++)
        if (!((n[i] >= 'a' && n[i] <= 'z') || (n[i] >= 'A' && n[i] <= 'Z') || (n[i] >= '0' && n[i] <= '9') ||
              n[i] == '.' || n[i] == '_' || n[i] == '-'))
            return 0;
    return 1;
}

/* Removes the files of folder dir and the folder (one level: outputs hold files only). 0, or -1 when something
 * stayed. */
static int remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT ? 0 : -1;
    int r = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        if (unlinkat(dirfd(d), e->d_name, 0)) r = -1;
    }
    closedir(d);
    if (rmdir(dir) && errno != ENOENT) r = -1;
    return r;
}

int cvx_svc_remove_cached(const cvx_svc *svc, const char *out_key) {
    if (!cvx_svc_output_key_ok(out_key, strlen(out_key))) return -1;
    char dir[1200];
    snprintf(dir, sizeof dir, "%s/.cache/%s", svc->outputs_dir, out_key);
    return remove_flat_dir(dir);
}

void cvx_svc_cache_sweep(const cvx_svc *svc, long long max_age_s) {
    char root[1200];
    snprintf(root, sizeof root, "%s/.cache", svc->outputs_dir);
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    long long now = cvx_svc_now_s();
    int removed = 0;
    while ((e = readdir(d))) {
        if (!cvx_svc_output_key_ok(e->d_name, strlen(e->d_name))) continue;
        char dir[1300];
        snprintf(dir, sizeof dir, "%s/%s", root, e->d_name);
        DIR *k = opendir(dir);
        if (!k) continue;
        struct dirent *f;
        int left = 0;
        while ((f = readdir(k))) {
            if (!strcmp(f->d_name, ".") || !strcmp(f->d_name, "..")) continue;
            struct stat st;
            if (fstatat(dirfd(k), f->d_name, &st, AT_SYMLINK_NOFOLLOW) == 0 && now - (long long)st.st_mtime > max_age_s &&
                unlinkat(dirfd(k), f->d_name, 0) == 0)
                removed++;
            else
                left++;
        }
        closedir(k);
        if (!left) rmdir(dir);
    }
    closedir(d);
    if (removed) cvx_svc_log(svc, CVX_LOG_INFO, "cache: removed %d videos unused for a day", removed);
}

int cvx_svc_remove_output(const cvx_svc *svc, const char *out_key, long long id, long long claim) {
    if (!cvx_svc_output_key_ok(out_key, strlen(out_key))) return -1;
    char dir[1200], err[256];
    if (svc->blobs_in_store && cvx_svc_store_output_remove(svc->store, out_key, id, claim, err, sizeof err) < 0) {
        cvx_svc_log(svc, CVX_LOG_WARN, "outputs %s: %s", out_key, err);
        return -1;
    }
    if (svc->blobs_in_store && !claim) cvx_svc_remove_cached(svc, out_key);
    snprintf(dir, sizeof dir, "%s/%s", svc->outputs_dir, out_key);
    return remove_flat_dir(dir);
}

/* ---- configuration ---- */

cvx_svc_config cvx_svc_config_default(void) {
    cvx_svc_config c;
    memset(&c, 0, sizeof c);
    c.listen_host = "127.0.0.1";
    c.slug_owner = "THUDM";
    c.slug_project = "CogVideoX-2b";
    c.http_threads = 4;
    c.max_connections = 1000;
    c.max_connections_per_ip = 64;
    c.header_timeout_s = 10;
    c.body_limit = 1 << 20;
    c.queue_limit = 100;
    c.project_runs_per_min = 30;
    c.nonce_window_s = 900;
    c.max_attempts = 3;
    c.lease_seconds = 30;
    c.callback_tries = 3;
    c.callback_backoff_ms = 1000;
    c.callback_timeout_ms = 10000;
    c.callback_threads = 4;
    c.max_websockets = 256;
    c.max_websockets_per_ip = 16;
    c.max_websockets_per_task = 8;
    c.ws_info_timeout_ms = 5000;
    cvx_engine_info(NULL, &c.model);
    c.limits.max_prompt_bytes = 10000;
    cvx_svc_limits_from_info(&c.limits, &c.model);
    c.precision = cvx_precision_default();
    c.allow_bf16 = cvx_precision_native(CVX_PRECISION_BF16);
    c.logger = cvx_logger_default();
    return c;
}

void cvx_svc_limits_from_info(cvx_svc_model_limits *L, const cvx_model_info *I) {
    L->default_steps = I->default_steps;
    L->default_scale = I->default_guidance_scale;
    L->default_frames = I->default_frames;
    L->default_width = I->default_width;
    L->default_height = I->default_height;
    L->default_fps = I->default_fps;
    L->max_steps = I->max_steps;
    L->max_scale = I->max_guidance_scale;
    L->max_frames = I->max_frames;
    L->max_width = I->max_size;
    L->max_height = I->max_size;
    L->max_fps = I->max_fps;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

static int make_dir(const char *path, char *err, size_t n) {
    if (mkdir(path, 0755) && errno != EEXIST) {
        snprintf(err, n, "%s: %s", path, strerror(errno));
        return -1;
    }
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) {
        snprintf(err, n, "%s: not a directory", path);
        return -1;
    }
    return 0;
}

/* The files a task that ended without an output leaves: its checkpoint and its output folder (a partial MP4). */
static void remove_task_files(cvx_svc *svc, long long id) {
    char path[1300], err[256];
    snprintf(path, sizeof path, "%s/%lld.ckpt", svc->ckpt_dir, id);
    unlink(path);
    snprintf(path, sizeof path, "%s/%lld.ckpt.tmp", svc->ckpt_dir, id);
    unlink(path);
    cvx_svc_task t;
    if (cvx_svc_store_task_get(svc->store, id, NULL, &t, err, sizeof err) != 1) return;
    json_t *g = json_loads(t.gen ? t.gen : "", 0, NULL);
    const char *key = json_string_value(json_object_get(g, "output_key"));
    if (key && (!t.out_name[0] || t.out_deleted || strcmp(t.out_key, key))) cvx_svc_remove_output(svc, key, id, 0);
    if (svc->blobs_in_store) cvx_svc_store_checkpoint_delete(svc->store, id, 0, err, sizeof err);
    json_decref(g);
    cvx_svc_task_clear(&t);
}

/* Checkpoints of tasks that ended (or are unknown) go: a crash between a task's end and the removal of its
 * checkpoint leaves one behind. */
static void sweep_checkpoints(cvx_svc *svc) {
    DIR *d = opendir(svc->ckpt_dir);
    if (!d) return;
    struct dirent *e;
    int removed = 0;
    while ((e = readdir(d))) {
        char *end;
        long long id = strtoll(e->d_name, &end, 10);
        if (end == e->d_name || (strcmp(end, ".ckpt") && strcmp(end, ".ckpt.tmp"))) continue;
        cvx_svc_task t;
        char err[256];
        int r = cvx_svc_store_task_get(svc->store, id, NULL, &t, err, sizeof err);
        int ended = r == 0 || (r == 1 && cvx_svc_status_final(t.status));
        if (r == 1) cvx_svc_task_clear(&t);
        if (ended && unlinkat(dirfd(d), e->d_name, 0) == 0) removed++;
    }
    closedir(d);
    if (removed) cvx_svc_log(svc, CVX_LOG_INFO, "removed %d checkpoints of tasks that had ended", removed);
}

int cvx_svc_core_open(cvx_svc **out, const cvx_svc_config *config, char *err, size_t n) {
    *out = NULL;
    if (!config->store_path || !config->outputs_dir || !config->engine.generate) {
        snprintf(err, n, "the service needs a store, an outputs folder and an engine");
        return -1;
    }
    if (config->precision != CVX_PRECISION_FP32 && config->precision != CVX_PRECISION_BF16) {
        snprintf(err, n, "unknown precision %d (fp32 or bf16)", (int)config->precision);
        return -1;
    }
    if (config->precision == CVX_PRECISION_BF16 && !config->allow_bf16) {
        snprintf(err, n, "precision bf16 needs bf16 dot products (AVX512-BF16 or AMX); the kernel path in use is %s, "
                         "where emulated bf16 is slower than fp32: use fp32 or auto",
                 cvx_isa_name(cvx_isa_active()));
        return -1;
    }
    cvx_svc *svc = calloc(1, sizeof *svc);
    if (!svc) {
        snprintf(err, n, "out of memory");
        return -1;
    }
    svc->cfg = *config;
    svc->store_path = strdup(config->store_path);
    svc->outputs_dir = strdup(config->outputs_dir);
    svc->listen_host = strdup(config->listen_host ? config->listen_host : "127.0.0.1");
    svc->public_url = dup_or_null(config->public_url);
    if (svc->public_url) {
        size_t l = strlen(svc->public_url);
        while (l && svc->public_url[l - 1] == '/') svc->public_url[--l] = 0;
    }
    svc->slug_owner = strdup(config->slug_owner ? config->slug_owner : "THUDM");
    svc->slug_project = strdup(config->slug_project ? config->slug_project : "CogVideoX-2b");
    pthread_mutex_init(&svc->mu, NULL);
    pthread_mutex_init(&svc->health_mu, NULL);
    if (config->worker_name) snprintf(svc->worker_name, sizeof svc->worker_name, "%s", config->worker_name);
    else {
        char host[128] = "";
        if (gethostname(host, sizeof host - 1)) snprintf(host, sizeof host, "localhost");
        snprintf(svc->worker_name, sizeof svc->worker_name, "%s:%d", host, (int)getpid());
    }
    pthread_cond_init(&svc->wake_worker, NULL);
    pthread_cond_init(&svc->wake_callbacks, NULL);
    pthread_cond_init(&svc->websockets_done, NULL);
    pthread_cond_init(&svc->offloads_done, NULL);
    svc->progress = cvx_svc_progress_new();
    size_t cl = strlen(config->outputs_dir) + 16;
    svc->ckpt_dir = malloc(cl);
    if (svc->ckpt_dir) snprintf(svc->ckpt_dir, cl, "%s/.checkpoints", config->outputs_dir);
    if (!svc->store_path || !svc->outputs_dir || !svc->listen_host || !svc->slug_owner || !svc->slug_project ||
        !svc->progress || !svc->ckpt_dir || (config->public_url && !svc->public_url)) {
        snprintf(err, n, "out of memory");
        cvx_svc_core_close(svc);
        return -1;
    }
    char keypath[1200];
    /* a worker process needs no server key: it authenticates nobody */
    if (!config->no_http && !config->key_file && cvx_svc_store_is_postgres(svc->store_path)) {
        snprintf(err, n, "a PostgreSQL store needs the server key's file (--key-file PATH; every node of a deployment "
                         "is given the same one)");
        cvx_svc_core_close(svc);
        return -1;
    }
    if (config->key_file && strlen(config->key_file) >= sizeof keypath) {
        snprintf(err, n, "key file %.60s...: the path is too long", config->key_file);
        cvx_svc_core_close(svc);
        return -1;
    }
    if (config->key_file) snprintf(keypath, sizeof keypath, "%s", config->key_file);
    else cvx_svc_keyfile_path(svc->store_path, keypath, sizeof keypath);
    if (config->lease_seconds < 3 || config->lease_seconds > 86400) {
        snprintf(err, n, "the lease must be 3 to 86400 seconds, not %d", config->lease_seconds);
        cvx_svc_core_close(svc);
        return -1;
    }
    /* PostgreSQL: checkpoints and outputs live in the database, so that any worker resumes any task and any API
     * node serves any video; a single machine's SQLite store keeps them as files in the outputs folder */
    svc->blobs_in_store = cvx_svc_store_is_postgres(svc->store_path);
    char cache_dir[1200];
    snprintf(cache_dir, sizeof cache_dir, "%s/.cache", svc->outputs_dir);
    if (make_dir(svc->outputs_dir, err, n) || make_dir(svc->ckpt_dir, err, n) ||
        (svc->blobs_in_store && !config->no_http && make_dir(cache_dir, err, n)) ||
        cvx_svc_store_open(&svc->store, svc->store_path, err, n) ||
        (!config->no_http && cvx_svc_server_key_open(svc->store, keypath, svc->server_key, err, n))) {
        cvx_svc_core_close(svc);
        return -1;
    }
    /* Tasks whose worker's lease ended go back to the queue (or fail after max_attempts) when a process with a
     * worker starts (and while it waits for tasks: worker.c); an API node without a worker recovers nothing. A single
     * machine's SQLite store has one worker: its start takes back every claimed task at once, as before leases. */
    long long failed[256];
    int n_failed = 0;
    int recovered = config->no_worker ? 0
                    : cvx_svc_store_recover(svc->store, config->max_attempts, cvx_svc_now_s(),
                                            svc->blobs_in_store ? cvx_svc_now_ms() : LLONG_MAX, failed, 256, &n_failed,
                                            err, n);
    if (recovered < 0) {
        cvx_svc_core_close(svc);
        return -1;
    }
    if (recovered > 0) cvx_svc_log(svc, CVX_LOG_INFO, "recovered %d interrupted tasks", recovered);
    for (int i = 0; i < n_failed; i++) remove_task_files(svc, failed[i]);
    sweep_checkpoints(svc);
    cvx_svc_log(svc, CVX_LOG_INFO, "precision: %s for tasks that do not ask (bf16 %s; kernel path %s)",
                cvx_precision_name(config->precision), config->allow_bf16 ? "available" : "refused",
                cvx_isa_name(cvx_isa_active()));
    *out = svc;
    return 0;
}

void cvx_svc_core_close(cvx_svc *svc) {
    if (!svc) return;
    cvx_svc_store_close(svc->store);
    cvx_svc_progress_free(svc->progress);
    pthread_mutex_destroy(&svc->mu);
    pthread_mutex_destroy(&svc->health_mu);
    json_decref(svc->health);
    pthread_cond_destroy(&svc->wake_worker);
    pthread_cond_destroy(&svc->wake_callbacks);
    pthread_cond_destroy(&svc->websockets_done);
    pthread_cond_destroy(&svc->offloads_done);
    free(svc->store_path);
    free(svc->outputs_dir);
    free(svc->listen_host);
    free(svc->public_url);
    free(svc->slug_owner);
    free(svc->slug_project);
    free(svc->ckpt_dir);
    free(svc);
}
