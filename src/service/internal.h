/* Internals shared by the service's files: the server object, the progress hub, the worker, callbacks and the
 * WebSocket sessions. Not part of any public interface. */
#ifndef CVX_SERVICE_INTERNAL_H
#define CVX_SERVICE_INTERNAL_H

#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>

#include <jansson.h>

#include "service/auth.h"
#include "service/service.h"
#include "service/status.h"
#include "service/store.h"

/* ---- the progress hub (progress.c): worker -> WebSocket sessions ---- */


typedef struct cvx_svc_progress cvx_svc_progress;
typedef struct cvx_svc_sub cvx_svc_sub;

typedef struct {
    char *text;    /* the frame's JSON text (malloc'ed) */
    int ordinal;   /* CVX_SVC_EV_* */
    int step;      /* task_output: stepCurrent */
    int terminal;
} cvx_svc_event;

cvx_svc_progress *cvx_svc_progress_new(void);
void cvx_svc_progress_free(cvx_svc_progress *progress);
/* A subscription to one task's events; its fd becomes readable when events wait. NULL on failure, or (*full set)
 * when the task has max_per_task subscribers already (0 = no limit). */
cvx_svc_sub *cvx_svc_progress_subscribe(cvx_svc_progress *progress, long long task_id, int max_per_task, int *full);
void cvx_svc_progress_unsubscribe(cvx_svc_progress *progress, cvx_svc_sub *sub);
int cvx_svc_sub_fd(const cvx_svc_sub *sub);
/* Takes the next event (1) or none (0); the caller frees ev->text. */
int cvx_svc_sub_pop(cvx_svc_sub *sub, cvx_svc_event *ev);
/* Sends an event to every subscriber of the task (the text is copied); remembers the last task_output frame. */
void cvx_svc_progress_publish(cvx_svc_progress *progress, long long task_id, int ordinal, int step, int terminal, const char *text);
/* The last task_output frame of a task still running (malloc'ed copy) or NULL. */
char *cvx_svc_progress_last_output(cvx_svc_progress *progress, long long task_id, int *step);
void cvx_svc_progress_forget(cvx_svc_progress *progress, long long task_id);

/* ---- the server ---- */

#define CVX_SVC_MAX_CALLBACK_THREADS 16
#define CVX_SVC_WS_IP_SLOTS 1024 /* distinct client addresses with sessions (max_websockets is capped to it) */
#define CVX_SVC_FETCH_SLOTS 64 /* at most this many concurrent inputImage fetches whatever --http-threads */

typedef struct {
    long long task, project; /* the delivery in flight; 0 = idle */
} cvx_svc_cb_slot;

typedef struct {
    struct cvx_svc *svc;
    int index;
    pthread_t thread;
    cvx_svc_cb_slot *slot; /* its entry of cb_inflight */
} cvx_svc_callback_thread;

struct cvx_svc {
    cvx_svc_config cfg;          /* strings below are owned copies */
    char *store_path, *outputs_dir, *listen_host, *public_url, *slug_owner, *slug_project, *ckpt_dir;
    cvx_svc_store *store;
    uint8_t server_key[32];
    cvx_svc_progress *progress;
    struct MHD_Daemon *mhd;
    int port;

    /* worker */
    pthread_t worker;
    int worker_started;
    pthread_mutex_t mu;          /* guards the wake flags and the websocket count */
    pthread_cond_t wake_worker;
    int worker_wake;
    atomic_llong running_task;   /* id of the task being generated, 0 = none */
    atomic_int kill_requested;   /* a Kill for running_task arrived */
    atomic_int stopping;
    atomic_int ready;            /* store open and worker waiting for tasks */
    char worker_name[160];       /* in the store's workers table: cfg.worker_name or <host>:<pid> */
    long long last_beat_s;       /* the worker's last heartbeat (worker thread only) */
    int blobs_in_store;          /* checkpoints and outputs in the store (PostgreSQL), not files */
    /* the task the worker holds and its claim token (the lease thread renews it), and whether the lease was lost */
    atomic_llong lease_task, lease_claim;
    atomic_int lease_lost;
    /* /healthz's store figures, read at most once a second (guarded by health_mu) */
    pthread_mutex_t health_mu;
    long long health_ms;
    json_t *health;              /* {"backend", "queue", "workers"} or {"error"} when the store failed */

    /* callbacks + housekeeping: a pool of cb_threads (guarded by mu: cb_inflight, callbacks_wake) */
    cvx_svc_callback_thread cb_pool[CVX_SVC_MAX_CALLBACK_THREADS];
    cvx_svc_cb_slot cb_inflight[CVX_SVC_MAX_CALLBACK_THREADS];
    int cb_threads;              /* started */
    pthread_cond_t wake_callbacks;
    int callbacks_wake;

    /* websocket sessions */
    int websockets;
    pthread_cond_t websockets_done;
    struct { char ip[48]; int n; } ws_ips[CVX_SVC_WS_IP_SLOTS]; /* sessions per client address (n 0 = free) */

    /* Run's inputImage URLs being fetched (inputs.c, under mu): each takes up to CVX_SVC_INPUT_TIMEOUT_S, so at
     * most http_threads - 1 at once and one per project */
    int fetches;
    long long fetch_projects[CVX_SVC_FETCH_SLOTS];
    /* API handlers run on threads of their own while their connection is suspended (http.c, under mu): a Run
     * that fetches an image URL, so that no HTTP thread (nor a connection it accepted) waits for the fetch */
    int offloads;
    pthread_cond_t offloads_done;
};

/* ---- the core (core.c): no HTTP ---- */

/* Checks the configuration, copies it, opens the store with its server key, the progress hub and the outputs
 * folder, and recovers the tasks a previous run left (re-queued or failed, their files removed). 0 or -1 (err). */
int cvx_svc_core_open(cvx_svc **out, const cvx_svc_config *config, char *err, size_t err_size);
/* Closes what core_open opened and frees svc (the threads on top of it must have stopped). */
void cvx_svc_core_close(cvx_svc *svc);

void cvx_svc_log(const cvx_svc *svc, cvx_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
long long cvx_svc_now_s(void);
long long cvx_svc_now_ms(void);

void cvx_svc_wake_worker(cvx_svc *svc);
void cvx_svc_wake_callbacks(cvx_svc *svc);
/* An output folder's key (16-64 letters and digits) and a file name in it (no path, no leading dot): 1 valid. */
int cvx_svc_output_key_ok(const char *key, size_t len);
int cvx_svc_output_name_ok(const char *name, size_t len);
/* Removes a task's outputs: its folder <outputs>/<out_key> and, with PostgreSQL, its stored files (claim != 0: only
 * while that claim of task id holds it; a worker that lost its lease removes nothing another wrote). 0 or -1. */
int cvx_svc_remove_output(const cvx_svc *svc, const char *out_key, long long id, long long claim);
/* PostgreSQL: an API node keeps the videos it served in <outputs>/.cache/<out_key>/ (the database stays the truth: a
 * cached file is only sent while the database holds the output with that size). Removes one key's; 0 or -1. */
int cvx_svc_remove_cached(const cvx_svc *svc, const char *out_key);
/* Removes the cached videos not sent for max_age_s (the hourly housekeeping of API nodes). */
void cvx_svc_cache_sweep(const cvx_svc *svc, long long max_age_s);

/* ---- the HTTP side (http.c) ---- */

/* Listens on the configured address and port (svc->port then says which) with the daemon's thread pool. */
int cvx_svc_http_start(cvx_svc *svc, char *err, size_t err_size);
/* Waits up to 10 s for the WebSocket sessions to close, then stops the daemon; returns the sessions still open (the
 * daemon and the core are then left to the process exit). */
int cvx_svc_http_stop(cvx_svc *svc);

/* ---- the worker (worker.c) and the callbacks (callbacks.c) ---- */

void *cvx_svc_worker_main(void *arg);
void *cvx_svc_callbacks_main(void *arg); /* arg: its cvx_svc_callback_thread */
struct sockaddr;
/* 1 when a callback may not connect to this address unless allow_private_callbacks (loopback, private,
 * link-local, CGNAT, multicast, reserved; IPv4-mapped and embedded IPv6 forms included). */
int cvx_svc_addr_internal(const struct sockaddr *sa);

/* ---- the task as clients see it (task_view.c) ---- */

/* The served model's one-line description (Tool/Detail, the task object): text- or image-to-video. */
const char *cvx_svc_model_description(const cvx_svc *svc);
/* The task object of WIRO_API.md (numbers as strings). base_url: what outputs[].url starts with. */
json_t *cvx_svc_task_json(const cvx_svc *svc, const cvx_svc_task *t, const char *base_url);
/* The served model, for /healthz and Tool/Detail: {"folder", "variant", "weights", "weightsOrigin"} (cvx_engine_info). */
json_t *cvx_svc_model_json(const cvx_model_info *model);
/* The preview a task's generation writes beside its 0.mp4 (an animated WebP); the task object's previewurl. */
#define CVX_SVC_PREVIEW_NAME "preview.webp"
/* The outputs array of a task. */
json_t *cvx_svc_outputs_json(const cvx_svc *svc, const cvx_svc_task *t, const char *base_url);
/* A WebSocket frame {"type", "id", "tasktoken", "message", "result"}; message is stolen (NULL = null). */
char *cvx_svc_event_text(const char *type, const cvx_svc_task *t, json_t *message, int result);
/* The base of output URLs without a request: --public-url, else http://listen_host:port. */
void cvx_svc_default_base(const cvx_svc *svc, char *out, size_t size);
/* Publishes a lifecycle event of t to the hub (outputs as the message for task_postprocess_end). */
void cvx_svc_publish_status(cvx_svc *svc, const cvx_svc_task *t);

/* ---- WebSocket sessions ---- */
struct MHD_Connection;
/* Handles GET /v1/socket: answers 101 and starts a session thread, or answers an error. */
int cvx_svc_ws_handle(cvx_svc *svc, struct MHD_Connection *conn);

#endif
