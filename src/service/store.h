/* The task service's durable store: projects (API keys), tasks with their lifecycle and output metadata, nonces
 * and pending callbacks. Two backends behind the same named operations (no SQL outside store.c):
 *  - SQLite: one file in WAL mode with synchronous=FULL (a task is on disk before Run answers); the schema is
 *    versioned with PRAGMA user_version;
 *  - PostgreSQL (libpq), picked by a postgresql:// or postgres:// URL or a libpq keyword string (host=... dbname=...);
 *    versioned migrations in the table cvx_schema, applied under an advisory lock; claims take FOR UPDATE SKIP LOCKED
 *    rows, so several workers on several hosts never claim the same task; a lost connection is reset before the
 *    next statement.
 * Both refuse a schema newer than the program's.
 *
 * Thread safety: one connection behind a mutex; every function may be called from any thread. Functions return
 * 0 (or a count / 1 = found) on success and -1 on a database failure, with the message in err. */
#ifndef CVX_SERVICE_STORE_H
#define CVX_SERVICE_STORE_H

#include <stddef.h>
#include <stdint.h>

#include "service/status.h"

/* SQLite's schema version (PRAGMA user_version); PostgreSQL counts its own in cvx_schema. */
#define CVX_SVC_SCHEMA_VERSION 5

typedef struct cvx_svc_store cvx_svc_store;

enum { CVX_SVC_MODE_SIGNATURE = 0, CVX_SVC_MODE_KEY_ONLY = 1 };

typedef struct {
    long long id;             /* the public projectid is this number as text */
    char name[128];
    char apikey[72];          /* as stored: cvx_svc_apikey_hash of the key (rows of older versions: the key) */
    int mode;                 /* CVX_SVC_MODE_* */
    uint8_t secret_enc[256];  /* AES-256-GCM sealed secret (auth.h); empty in key-only mode */
    size_t secret_enc_len;
    long long created;        /* unix seconds */
    int revoked;
} cvx_svc_project;

/* Callback delivery state of a task. */
enum { CVX_SVC_CB_NONE = 0, CVX_SVC_CB_PENDING = 1, CVX_SVC_CB_DELIVERED = 2, CVX_SVC_CB_FAILED = 3 };

typedef struct {
    long long id;
    char uuid[40];
    char token[40];            /* socketaccesstoken = tasktoken */
    long long project;
    char status[32];
    char *params;              /* JSON object of the inputs as received */
    char *gen;                 /* JSON object of the validated generation parameters */
    char *callbackurl;
    char slugowner[64], slugproject[64];
    long long createtime, accepttime, preprocessstarttime, preprocessendtime, assigntime, starttime, endtime,
        postprocessstarttime, postprocessendtime, canceltime; /* unix seconds, 0 = not yet */
    char pexit[16];            /* "" while not finished */
    char *debugoutput, *debugerror;
    char *progress;           /* the last task_output frame (WebSocket JSON) a worker recorded; "" before */
    int progress_step;        /* its step (decode/write stages count on after the last step) */
    double elapsed;            /* seconds of generation */
    int attempts;              /* times a worker claimed it (a graceful re-queue gives one back) */
    long long claim;           /* the fencing token: one more on every claim, never less; every write of the worker
                                * that holds it names it, so a worker whose lease another took writes nothing */
    long long lease_until_ms;  /* the holder's lease (unix ms): past it, the task goes back to the queue */
    char worker[160];          /* the worker that claimed it last */
    char out_name[64];         /* "" = no output */
    char out_key[72];          /* the unguessable folder of the output under the outputs dir and in its URL */
    long long out_size, out_time;
    int out_deleted;
    int cb_state, cb_tries;
    long long cb_next_ms;
} cvx_svc_task;

/* Frees the heap strings of a task filled by the store (the struct itself is the caller's). */
void cvx_svc_task_clear(cvx_svc_task *t);

/* Tests: while on != 0 every statement that writes fails as a full disk would ("database or disk is full"). */
void cvx_svc_store_fail_writes(cvx_svc_store *s, int on);

/* Opens or creates the store at `path`. */
int cvx_svc_store_open(cvx_svc_store **out, const char *path, char *err, size_t err_size);
/* 1 when `store` names a PostgreSQL database (postgresql://..., postgres://..., or a libpq keyword string such as
 * "host=/run/postgresql dbname=cogvideox"), 0 for an SQLite file. */
int cvx_svc_store_is_postgres(const char *store);
void cvx_svc_store_close(cvx_svc_store *s);

/* ---- projects ---- */
/* Inserts p (id and created are set). -1 also when the API key exists. */
int cvx_svc_store_project_add(cvx_svc_store *s, cvx_svc_project *p, char *err, size_t err_size);
/* 1 found (revoked ones too: check p->revoked), 0 unknown, -1 error. */
int cvx_svc_store_project_by_key(cvx_svc_store *s, const char *apikey, cvx_svc_project *p, char *err,
                                 size_t err_size);
/* Calls fn for every project in id order; returns the count or -1. */
int cvx_svc_store_project_list(cvx_svc_store *s, void (*fn)(const cvx_svc_project *p, void *ud), void *ud,
                               char *err, size_t err_size);
/* A project with a sealed secret (the first by id, revoked ones too): 1 found (*count = how many have one), 0 none,
 * -1 error. */
int cvx_svc_store_sealed_project(cvx_svc_store *s, cvx_svc_project *p, long long *count, char *err, size_t err_size);
/* Replaces a project's stored API key (old_key -> new_key, its nonces follow) and its sealed secret, if the row
 * still holds old_key: 1 replaced, 0 not (another thread did it), -1 error. */
int cvx_svc_store_project_rekey(cvx_svc_store *s, long long id, const char *old_key, const char *new_key,
                                const uint8_t *secret_enc, size_t secret_len, char *err, size_t err_size);
/* Copies the write-ahead log into the database and empties it (no old page images stay in the -wal file). */
int cvx_svc_store_truncate_log(cvx_svc_store *s, char *err, size_t err_size);
/* 1 revoked, 0 unknown key, -1 error. */
int cvx_svc_store_project_revoke(cvx_svc_store *s, const char *apikey, char *err, size_t err_size);

/* ---- nonces ---- */
/* Records (apikey, nonce) for a call that changes state, to be remembered until keep_from_s + window_s; 1 = not
 * recorded before, 0 = recorded already (a replay), -1 error. The nonces noted by read-only calls are written first,
 * so one of them is found; entries past their time are purged as a side effect (at most once a minute). Written
 * without an fsync of its own (the next task write syncs it): a power cut may forget the last nonces, a crash of
 * the process does not. */
int cvx_svc_store_nonce_use(cvx_svc_store *s, const char *apikey, const char *nonce, long long now_s,
                            long long keep_from_s, long long window_s, char *err, size_t err_size);
/* Notes the nonce of a read-only call: kept in memory and written in batches (1024 nonces, or 1 s after the first
 * of them, or before the next nonce_use, or at close), so polling costs no write per call; a crash of the process
 * forgets at most the last second's. 0 ok, -1 error. */
int cvx_svc_store_nonce_note(cvx_svc_store *s, const char *apikey, const char *nonce, long long now_s,
                             long long keep_from_s, long long window_s, char *err, size_t err_size);

/* ---- tasks ---- */
/* The limits a new task is checked against (0 = none). */
typedef struct {
    int queue_limit;          /* tasks waiting or running, all projects */
    int project_queue_limit;  /* tasks waiting or running of t->project */
    int project_runs_per_min; /* tasks the project created in the last 60 s (t->createtime is "now") */
} cvx_svc_add_limits;

/* Why cvx_svc_store_task_add refused a task. */
enum { CVX_SVC_REFUSED_NONE = 0, CVX_SVC_REFUSED_QUEUE, CVX_SVC_REFUSED_PROJECT_QUEUE, CVX_SVC_REFUSED_RATE };

/* Inserts a new task in status task_queue when the limits allow it; t->id is set. Returns 1 inserted, 0 refused
 * (*refused says which limit; may be NULL), -1 error. */
int cvx_svc_store_task_add(cvx_svc_store *s, cvx_svc_task *t, const cvx_svc_add_limits *limits, int *refused,
                           char *err, size_t err_size);
/* The same, with the task's input file (image-to-video: the image's bytes, at most a few MiB) stored with it in one
 * transaction (input NULL or input_size 0: none, as cvx_svc_store_task_add). */
int cvx_svc_store_task_add_input(cvx_svc_store *s, cvx_svc_task *t, const cvx_svc_add_limits *limits, int *refused,
                                 const void *input, size_t input_size, char *err, size_t err_size);
/* A task's input file: 1 (*data malloc'ed, the caller frees it), 0 none (or deleted), -1 error. */
int cvx_svc_store_input_get(cvx_svc_store *s, long long id, void **data, size_t *size, char *err, size_t err_size);
/* Forgets a task's input file (Task/InputOutputDelete, retention). 0 or -1. */
int cvx_svc_store_input_delete(cvx_svc_store *s, long long id, char *err, size_t err_size);
/* Forgets the input files of every task that ended (done, failed or cancelled): a task's input is kept only while
 * it may still run, so the store holds at most the queue's worth of them. 0 or -1. */
int cvx_svc_store_inputs_purge(cvx_svc_store *s, char *err, size_t err_size);
/* 1 found, 0 unknown, -1 error. by_token when token != NULL, else by id. */
int cvx_svc_store_task_get(cvx_svc_store *s, long long id, const char *token, cvx_svc_task *t, char *err,
                           size_t err_size);
/* The ids of the project's tasks, ordered by id (desc != 0: newest first), from `start`, at most `limit` (ids has
 * room for limit); *total = the project's task count. Only ids are read under the lock: the caller reads each task
 * with cvx_svc_store_task_get, so a large listing never holds the store. Returns the number of ids or -1. */
int cvx_svc_store_task_ids(cvx_svc_store *s, long long project, int desc, long long start, int limit,
                           long long *total, long long *ids, char *err, size_t err_size);
/* Queued tasks the worker takes before task `id` (it takes the oldest first): >= 0, or -1 on failure. */
long long cvx_svc_store_queued_before(cvx_svc_store *s, long long id, char *err, size_t err_size);
/* Claims the oldest queued task for `worker` (PostgreSQL: FOR UPDATE SKIP LOCKED, so workers claiming at once take
 * different rows): status task_accept, accepttime = now_s, attempts + 1, claim + 1 (t->claim is the token of every
 * later write), the lease until lease_until_ms. 1 claimed, 0 none, -1. */
int cvx_svc_store_task_claim(cvx_svc_store *s, const char *worker, long long now_s, long long lease_until_ms,
                             cvx_svc_task *t, char *err, size_t err_size);
/* Renews the lease of the holder of `claim`: 1 renewed, 0 lost (another worker claimed the task since, or it is
 * final), -1 error. */
int cvx_svc_store_task_renew(cvx_svc_store *s, long long id, long long claim, long long lease_until_ms, char *err,
                             size_t err_size);

/* The writes of a task's holder below take its claim token: they change nothing (and return 0) once another claim
 * was made; claim 0 writes unfenced (tests, tools). */
/* Moves a task that is not final (task_cancel / task_postprocess_end) to `status`, setting the status's time column
 * (status.h) to now_s. 1 = moved, 0 = the task was final already (a Kill won the race), -1 error. */
int cvx_svc_store_task_transition(cvx_svc_store *s, long long id, long long claim, cvx_svc_status status, long long now_s, char *err,
                                  size_t err_size);
/* A step's record: task_log's line, plus the task_output frame (the task's last, and one row per step in frames)
 * that API nodes in other processes forward to their WebSocket sessions (they read them at most once a second);
 * guarded like a transition, in one transaction. */
int cvx_svc_store_task_output(cvx_svc_store *s, long long id, long long claim, const char *line, double elapsed, const char *frame,
                              int step, char *err, size_t err_size);
/* The frames of task id's steps recorded after step after_seq (cvx_svc_store_task_output), in order: fn gets each;
 * the count or -1. WebSocket sessions of API nodes follow a task another process generates with them, every step. */
int cvx_svc_store_task_frames(cvx_svc_store *s, long long id, int after_seq,
                              void (*fn)(int seq, const char *frame, void *ud), void *ud, char *err, size_t err_size);
/* Forgets the frames of tasks that ended before before_s. The count or -1. */
int cvx_svc_store_frames_purge(cvx_svc_store *s, long long before_s, char *err, size_t err_size);
/* Appends a line to debugoutput (kept to its last 64 KiB) and sets elapsed; guarded like a transition. */
int cvx_svc_store_task_log(cvx_svc_store *s, long long id, long long claim, const char *status, const char *line, double elapsed,
                           char *err, size_t err_size);
/* The final transition: task_postprocess_end with pexit, debugerror (NULL = keep), the output (out_name NULL =
 * none), elapsed; schedules the callback when the task has a callbackurl. Guarded like a transition. */
int cvx_svc_store_task_finish(cvx_svc_store *s, long long id, long long claim, const char *pexit, const char *debugerror,
                              const char *out_name, const char *out_key, long long out_size, double elapsed,
                              long long now_s, char *err, size_t err_size);
/* task_cancel with canceltime = now (schedules the callback). only_queued: only from task_queue (Task/Cancel);
 * else from any non-final status (Task/Kill). 1 cancelled, 0 not in such a state, -1 error. */
int cvx_svc_store_task_cancel(cvx_svc_store *s, long long id, int only_queued, long long now_s, char *err,
                              size_t err_size);
/* Puts a claimed, non-final task back in the queue (graceful shutdown: attempts - 1, it was not a crash). */
int cvx_svc_store_task_requeue(cvx_svc_store *s, long long id, long long claim, char *err, size_t err_size);
/* Tasks whose holder's lease ended before expired_before_ms (a worker killed, its host lost or cut off; LLONG_MAX:
 * every claimed task, as a single machine's worker does at start) go back to task_queue, or, when they were claimed
 * max_attempts times already, end as a failure with a debugerror; the ids of those failed go to failed (at most
 * max_failed, *n_failed of them; failed may be NULL). Returns the number of tasks touched or -1. */
int cvx_svc_store_recover(cvx_svc_store *s, int max_attempts, long long now_s, long long expired_before_ms,
                          long long *failed, int max_failed, int *n_failed, char *err, size_t err_size);

/* ---- checkpoints and outputs in the store (PostgreSQL deployments: no node needs another's disk) ---- */
/* Records the resume blob of task id's step (the engine's bytes as they are) for the holder of `claim`, and renews
 * its lease to lease_until_ms in the same transaction: 1 written, 0 the claim was lost (nothing written), -1 error. */
int cvx_svc_store_checkpoint_put(cvx_svc_store *s, long long id, long long claim, long long lease_until_ms, int step,
                                 int steps, const void *blob, size_t size, char *err, size_t err_size);
/* The last checkpoint of a task: 1 (*blob malloc'ed, the caller frees it), 0 none, -1 error. */
int cvx_svc_store_checkpoint_get(cvx_svc_store *s, long long id, void **blob, size_t *size, int *step, int *steps,
                                 char *err, size_t err_size);
/* Removes a task's checkpoint (claim != 0: only while that claim holds the task). 0 or -1. */
int cvx_svc_store_checkpoint_delete(cvx_svc_store *s, long long id, long long claim, char *err, size_t err_size);

/* The parts an output is stored in (rows of at most this many bytes). */
#define CVX_SVC_OUTPUT_PART (1024 * 1024)
/* Stores the file at `path` as output `name` of the task (its folder key out_key), replacing one of that name, for
 * the holder of `claim`, in one transaction: 1 stored, 0 the claim was lost, -1 error (a file that cannot be read
 * too). */
int cvx_svc_store_output_put(cvx_svc_store *s, long long id, long long claim, const char *out_key, const char *name,
                             const char *path, char *err, size_t err_size);
/* The size of stored output key/name: 1 found (*size), 0 none, -1 error. */
int cvx_svc_store_output_size(cvx_svc_store *s, const char *out_key, const char *name, long long *size, char *err,
                              size_t err_size);
/* Part `part` (offset part * CVX_SVC_OUTPUT_PART) of stored output key/name: 1 (*data malloc'ed, *len bytes), 0 no
 * such part, -1 error. */
int cvx_svc_store_output_part(cvx_svc_store *s, const char *out_key, const char *name, long long part, void **data,
                              size_t *len, char *err, size_t err_size);
/* Removes every stored output of folder out_key (claim != 0: only while that claim holds task id). 0 or -1. */
int cvx_svc_store_output_remove(cvx_svc_store *s, const char *out_key, long long id, long long claim, char *err,
                                size_t err_size);

/* Marks the output deleted (files are the caller's). */
int cvx_svc_store_output_deleted(cvx_svc_store *s, long long id, char *err, size_t err_size);
/* Ids of the tasks (at most max) whose outputs were written before cutoff_s and are not deleted, oldest first.
 * Returns the count or -1. */
int cvx_svc_store_outputs_before(cvx_svc_store *s, long long cutoff_s, int max, long long *ids, char *err,
                                 size_t err_size);

/* ---- callbacks ---- */
/* The pending callbacks (cb_state pending), earliest due first, at most max: their task ids, projects and due
 * times (unix ms). Returns the count or -1. */
int cvx_svc_store_callbacks_pending(cvx_svc_store *s, int max, long long *ids, long long *projects, long long *due_ms,
                                    char *err, size_t err_size);
/* Records a delivery attempt: state (pending with a new due time, delivered or failed), tries. */
/* Claims task id's due callback for one delivery (moves its due time to until_ms, a lease: should the claiming
 * process die, the callback is due again then): 1 claimed, 0 another process has it or it is not due, -1 error. */
int cvx_svc_store_callback_claim(cvx_svc_store *s, long long id, long long now_ms, long long until_ms, char *err,
                                 size_t err_size);
int cvx_svc_store_callback_update(cvx_svc_store *s, long long id, int state, int tries, long long next_ms, char *err,
                                  size_t err_size);

/* ---- workers and the queue (/healthz) ---- */
/* 1 while the PostgreSQL connection is down (calls fail until it is back: the API answers 503), else 0. */
int cvx_svc_store_unreachable(cvx_svc_store *s);
/* "sqlite" or "postgresql". */
const char *cvx_svc_store_backend(const cvx_svc_store *s);
/* Records that worker `name` is alive at now_s, generating `task` (0 = idle); workers silent for a day are
 * forgotten. 0 or -1. */
int cvx_svc_store_worker_beat(cvx_svc_store *s, const char *name, long long task, long long now_s, char *err,
                              size_t err_size);
/* Calls fn for every worker recorded, by name; the count or -1. */
int cvx_svc_store_workers(cvx_svc_store *s, void (*fn)(const char *name, long long heartbeat, long long task, void *ud),
                          void *ud, char *err, size_t err_size);
/* Tasks waiting (queued) and running (claimed, not final), all projects. 0 or -1. */
int cvx_svc_store_queue_depth(cvx_svc_store *s, long long *waiting, long long *running, char *err, size_t err_size);

/* ---- copying a store (cogvideox store copy) ---- */
/* Copies every project, task and nonce of `from` into `to`, ids, sealed secrets and key hashes as they are (the
 * destination is used with the same server key file), in one transaction on `to`, which must hold no project and no
 * task. Fills the counts copied; 0 or -1 (nothing written). */
int cvx_svc_store_copy(cvx_svc_store *from, cvx_svc_store *to, long long *projects, long long *tasks, long long *nonces,
                       char *err, size_t err_size);

#endif
