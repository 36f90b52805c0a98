/* The Wiro-compatible task service (`cogvideox serve`): an HTTP server (libmicrohttpd thread pool) whose threads
 * parse, authenticate, validate and enqueue; one inference worker thread that owns the engine and runs one task at
 * a time; a progress hub that fans the worker's events out to WebSocket sessions; a callback thread (libcurl); a
 * durable store (store.h). The HTTP contract is ../shared/design/WIRO_API.md, documented in docs/API.md.
 *
 * The engine is reached through cvx_svc_engine (a function pointer + context) so that tests can run the whole
 * service with a stand-in; `cogvideox serve` passes the real cvx_generate. */
#ifndef CVX_SERVICE_SERVICE_H
#define CVX_SERVICE_SERVICE_H

#include <stddef.h>

#include "cogvideox.h"

typedef struct {
    /* Runs one generation as cvx_generate does (progress, should_cancel, checkpoint and resume_state are set by
     * the worker). On failure the message goes to err. */
    cvx_status (*generate)(void *ctx, const cvx_generate_params *params, char *err, size_t err_size);
    void *ctx;
} cvx_svc_engine;

/* What Tool/Detail publishes and Run validates against: the engine's defaults and limits (cvx_engine_info, the one
 * source the CLI uses too), copied by cvx_svc_limits_from_info, and the service's own prompt limit. */
typedef struct {
    int default_steps;         /* 50 */
    double default_scale;      /* 6.0 */
    int default_frames;        /* the transformer config's sample_frames (49 for the 2b) */
    int default_width, default_height; /* sample size x 8 (720x480 for the 2b) */
    int default_fps;           /* 8 */
    int max_steps;             /* 1000 */
    double max_scale;          /* 100 */
    int max_frames;            /* 49 (4N+1 from 5) */
    int max_width, max_height; /* 2048, multiples of 16 */
    int max_fps;               /* 120 */
    size_t max_prompt_bytes;   /* 10000: far beyond 226 tokens, which the tokenizer truncates to */
} cvx_svc_model_limits;

typedef struct {
    const char *store_path;      /* SQLite file (created on first use); the server key is key_file */
    const char *outputs_dir;     /* created if missing */
    const char *listen_host;     /* "127.0.0.1" */
    int port;                    /* 0: any free port (cvx_svc_port tells which) */
    const char *public_url;      /* base of outputs[].url; NULL: http://<request Host> */
    const char *slug_owner;      /* "THUDM" */
    const char *slug_project;    /* "CogVideoX-2b" */
    int http_threads;            /* 4 */
    int max_connections;         /* 1000 HTTP connections in all */
    int max_connections_per_ip;  /* 64 from one client address: more are closed at once */
    int header_timeout_s;        /* 10: a connection silent this long before its request head is complete closes */
    size_t body_limit;           /* 1 MiB: 413 beyond */
    int queue_limit;             /* 100 tasks waiting or running: 429 beyond */
    int project_queue_limit;     /* of those, one project's: 0 = half of queue_limit (rounded up) */
    int project_runs_per_min;    /* 30 Runs per project per minute: 429 beyond (0 = no limit) */
    long long nonce_window_s;    /* 900: a state-changing call's nonce is unix time within now ± this */
    int max_attempts;            /* 3: a task interrupted by crashes (or lost leases) this often fails */
    int lease_seconds;           /* 30: a worker renews its claim of a task this often / 3; a claim not renewed for
                                  * this long (worker killed, host lost, network cut) goes back to the queue */
    int retention_days;          /* 0: keep outputs forever */
    int callback_tries;          /* 3 */
    int callback_backoff_ms;     /* 1000: the first retry waits this long, then doubles */
    int callback_timeout_ms;     /* 10000 per try */
    int callback_threads;        /* 4 deliveries at a time, at most one per project */
    int allow_private_callbacks; /* 0: callbackUrl may not reach loopback, link-local or private addresses */
    int allow_private_inputs;    /* 0: an inputImage URL may not be fetched from loopback, link-local or private addresses */
    int max_websockets;          /* 256 */
    int max_websockets_per_ip;   /* 16 sessions from one client address: 503 beyond */
    int max_websockets_per_task; /* 8 sessions following one task: a task_error frame beyond */
    int ws_info_timeout_ms;      /* 5000: a session that sends no task_info within this closes */
    cvx_svc_model_limits limits;
    /* The model served, as cvx_engine_info says (folder name, variant, whether its weights are random): /healthz and
     * Tool/Detail publish it, the page's header shows it. Default: cvx_engine_info(NULL), no model named. */
    cvx_model_info model;
    /* The precision of tasks that do not ask for one (cvx_precision_default(): bf16 where the kernels have bf16
     * dot products, else fp32); a task's precision is stored with it, so a resumed task keeps the one it started
     * with. allow_bf16 (cvx_precision_native(CVX_PRECISION_BF16)) says whether bf16 may be used at all: without it
     * a bf16 default is refused at start and a task asking for bf16 is refused by Run. */
    cvx_precision precision;
    int allow_bf16;
    cvx_svc_engine engine;
    cvx_logger logger;
    const char *key_file;        /* the server key that seals API secrets; NULL: "<store_path>.key" */
    const char *worker_name;     /* this process's worker in /healthz's list; NULL: "<hostname>:<pid>" */
    /* Roles (issue 15): serve is an API node with a worker; no_worker = an API node only (tasks wait for a worker
     * process on the same store); no_http = a worker only (cogvideox worker: no HTTP, no callbacks, no server key). */
    int no_worker;
    int no_http;
} cvx_svc_config;

cvx_svc_config cvx_svc_config_default(void);

/* The engine's defaults and limits (cvx_engine_info) into limits; max_prompt_bytes is left as it is. */
void cvx_svc_limits_from_info(cvx_svc_model_limits *limits, const cvx_model_info *info);

typedef struct cvx_svc cvx_svc;

/* Opens the store, recovers interrupted tasks, starts the worker, the callback thread and the HTTP server. */
int cvx_svc_start(cvx_svc **out, const cvx_svc_config *config, char *err, size_t err_size);
/* The port the server listens on. */
int cvx_svc_port(const cvx_svc *svc);
/* Graceful stop: the running generation is cancelled at its next check, checkpointed and re-queued; the server
 * stops accepting, WebSocket sessions close, threads are joined. NULL is fine. */
void cvx_svc_stop(cvx_svc *svc);

#endif
