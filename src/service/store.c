/* SQLite implementation of the service store (store.h). Final statuses are task_cancel and task_postprocess_end:
 * every update of a running task is guarded by "status is not final", so a Kill that lands while the worker
 * finishes leaves exactly one of the two outcomes. */
#include "service/store.h"

#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sqlite3.h>

struct cvx_svc_store {
    sqlite3 *db;
    pthread_mutex_t mu;
};

#define NOT_FINAL "status NOT IN ('task_cancel','task_postprocess_end')"
/* The statuses of a task a worker holds (claimed, not yet final). */
#define RUNNING "status NOT IN ('task_queue','task_cancel','task_postprocess_end')"

static int dbfail(cvx_svc_store *s, char *err, size_t n, const char *what) {
    if (err && n) snprintf(err, n, "store: %s: %s", what, sqlite3_errmsg(s->db));
    return -1;
}

static const char *SCHEMA =
    "CREATE TABLE IF NOT EXISTS projects ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL DEFAULT '', apikey TEXT NOT NULL UNIQUE,"
    " mode INTEGER NOT NULL, secret BLOB, created INTEGER NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE IF NOT EXISTS tasks ("
    " id INTEGER PRIMARY KEY AUTOINCREMENT, uuid TEXT NOT NULL, token TEXT NOT NULL UNIQUE,"
    " project INTEGER NOT NULL, status TEXT NOT NULL, params TEXT NOT NULL, gen TEXT NOT NULL,"
    " callbackurl TEXT NOT NULL DEFAULT '', slugowner TEXT NOT NULL DEFAULT '', slugproject TEXT NOT NULL DEFAULT '',"
    " createtime INTEGER NOT NULL DEFAULT 0, accepttime INTEGER NOT NULL DEFAULT 0,"
    " preprocessstarttime INTEGER NOT NULL DEFAULT 0, preprocessendtime INTEGER NOT NULL DEFAULT 0,"
    " assigntime INTEGER NOT NULL DEFAULT 0, starttime INTEGER NOT NULL DEFAULT 0, endtime INTEGER NOT NULL DEFAULT 0,"
    " postprocessstarttime INTEGER NOT NULL DEFAULT 0, postprocessendtime INTEGER NOT NULL DEFAULT 0,"
    " canceltime INTEGER NOT NULL DEFAULT 0, pexit TEXT NOT NULL DEFAULT '', debugoutput TEXT NOT NULL DEFAULT '',"
    " debugerror TEXT NOT NULL DEFAULT '', elapsed REAL NOT NULL DEFAULT 0, attempts INTEGER NOT NULL DEFAULT 0,"
    " out_name TEXT NOT NULL DEFAULT '', out_key TEXT NOT NULL DEFAULT '', out_size INTEGER NOT NULL DEFAULT 0,"
    " out_time INTEGER NOT NULL DEFAULT 0, out_deleted INTEGER NOT NULL DEFAULT 0,"
    " cb_state INTEGER NOT NULL DEFAULT 0, cb_tries INTEGER NOT NULL DEFAULT 0, cb_next INTEGER NOT NULL DEFAULT 0);"
    "CREATE INDEX IF NOT EXISTS tasks_project ON tasks(project, id);"
    "CREATE INDEX IF NOT EXISTS tasks_status ON tasks(status, id);"
    "CREATE INDEX IF NOT EXISTS tasks_callback ON tasks(cb_state, cb_next);"
    "CREATE TABLE IF NOT EXISTS nonces ("
    " apikey TEXT NOT NULL, nonce TEXT NOT NULL, seen INTEGER NOT NULL, PRIMARY KEY (apikey, nonce)) WITHOUT ROWID;"
    "CREATE INDEX IF NOT EXISTS nonces_seen ON nonces(seen);";

int cvx_svc_store_open(cvx_svc_store **out, const char *path, char *err, size_t n) {
    *out = NULL;
    cvx_svc_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, n, "store: out of memory");
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, n, "store %s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        cvx_svc_store_close(s);
        return -1;
    }
    /* the keys command and the server may open the file at the same time */
    sqlite3_busy_timeout(s->db, 10000);
    char *msg = NULL;
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", NULL, NULL,
                     &msg) != SQLITE_OK) {
        snprintf(err, n, "store %s: %s", path, msg ? msg : "cannot set WAL mode");
        sqlite3_free(msg);
        cvx_svc_store_close(s);
        return -1;
    }
    sqlite3_stmt *st = NULL;
    int version = -1;
    if (sqlite3_prepare_v2(s->db, "PRAGMA user_version", -1, &st, NULL) == SQLITE_OK && sqlite3_step(st) == SQLITE_ROW)
        version = sqlite3_column_int(st, 0);
    sqlite3_finalize(st);
    if (version < 0) {
        snprintf(err, n, "store %s: %s (not an SQLite database?)", path, sqlite3_errmsg(s->db));
        cvx_svc_store_close(s);
        return -1;
    }
    if (version > CVX_SVC_SCHEMA_VERSION) {
        snprintf(err, n, "store %s: schema version %d is newer than this program's (%d)", path, version,
                 CVX_SVC_SCHEMA_VERSION);
        cvx_svc_store_close(s);
        return -1;
    }
    if (version < CVX_SVC_SCHEMA_VERSION) {
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d;", CVX_SVC_SCHEMA_VERSION);
        if (sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, SCHEMA, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, n, "store %s: creating the schema: %s", path, msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            cvx_svc_store_close(s);
            return -1;
        }
    }
    *out = s;
    return 0;
}

void cvx_svc_store_close(cvx_svc_store *s) {
    if (!s) return;
    sqlite3_close_v2(s->db);
    pthread_mutex_destroy(&s->mu);
    free(s);
}

/* ---- statement helpers ---- */

static sqlite3_stmt *prep(cvx_svc_store *s, const char *sql, char *err, size_t n) {
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(s->db, sql, -1, &st, NULL) != SQLITE_OK) {
        dbfail(s, err, n, "prepare");
        return NULL;
    }
    return st;
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) { sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT); }

static void copy_col(sqlite3_stmt *st, int i, char *dst, size_t size) {
    const char *v = (const char *)sqlite3_column_text(st, i);
    snprintf(dst, size, "%s", v ? v : "");
}

static char *dup_col(sqlite3_stmt *st, int i) {
    const char *v = (const char *)sqlite3_column_text(st, i);
    return strdup(v ? v : "");
}

/* Runs a statement without rows; returns sqlite3_changes or -1. Finalizes st. */
static int run(cvx_svc_store *s, sqlite3_stmt *st, char *err, size_t n, const char *what) {
    int rc = sqlite3_step(st);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) return dbfail(s, err, n, what);
    return sqlite3_changes(s->db);
}

void cvx_svc_task_clear(cvx_svc_task *t) {
    if (!t) return;
    free(t->params);
    free(t->gen);
    free(t->callbackurl);
    free(t->debugoutput);
    free(t->debugerror);
    memset(t, 0, sizeof *t);
}

/* ---- projects ---- */

#define PROJECT_COLS "id, name, apikey, mode, secret, created, revoked"

static void read_project(sqlite3_stmt *st, cvx_svc_project *p) {
    memset(p, 0, sizeof *p);
    p->id = sqlite3_column_int64(st, 0);
    copy_col(st, 1, p->name, sizeof p->name);
    copy_col(st, 2, p->apikey, sizeof p->apikey);
    p->mode = sqlite3_column_int(st, 3);
    int len = sqlite3_column_bytes(st, 4);
    const void *b = sqlite3_column_blob(st, 4);
    if (b && len > 0 && (size_t)len <= sizeof p->secret_enc) {
        memcpy(p->secret_enc, b, (size_t)len);
        p->secret_enc_len = (size_t)len;
    }
    p->created = sqlite3_column_int64(st, 5);
    p->revoked = sqlite3_column_int(st, 6);
}

int cvx_svc_store_project_add(cvx_svc_store *s, cvx_svc_project *p, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s,
                            "INSERT INTO projects(name, apikey, mode, secret, created) VALUES (?,?,?,?,?) "
                            "RETURNING id",
                            err, n);
    if (st) {
        bind_text(st, 1, p->name);
        bind_text(st, 2, p->apikey);
        sqlite3_bind_int(st, 3, p->mode);
        if (p->secret_enc_len) sqlite3_bind_blob(st, 4, p->secret_enc, (int)p->secret_enc_len, SQLITE_TRANSIENT);
        else sqlite3_bind_null(st, 4);
        sqlite3_bind_int64(st, 5, p->created);
        if (sqlite3_step(st) == SQLITE_ROW) {
            p->id = sqlite3_column_int64(st, 0);
            r = sqlite3_step(st) == SQLITE_DONE ? 0 : dbfail(s, err, n, "adding a project");
        } else {
            dbfail(s, err, n, "adding a project");
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_project_by_key(cvx_svc_store *s, const char *apikey, cvx_svc_project *p, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s, "SELECT " PROJECT_COLS " FROM projects WHERE apikey = ?", err, n);
    if (st) {
        bind_text(st, 1, apikey);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            read_project(st, p);
            r = 1;
        } else if (rc == SQLITE_DONE) {
            r = 0;
        } else {
            dbfail(s, err, n, "reading a project");
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_project_list(cvx_svc_store *s, void (*fn)(const cvx_svc_project *p, void *ud), void *ud,
                               char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s, "SELECT " PROJECT_COLS " FROM projects ORDER BY id", err, n);
    if (st) {
        int rc, count = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            cvx_svc_project p;
            read_project(st, &p);
            fn(&p, ud);
            count++;
        }
        r = rc == SQLITE_DONE ? count : dbfail(s, err, n, "listing projects");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_project_revoke(cvx_svc_store *s, const char *apikey, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s, "UPDATE projects SET revoked = 1 WHERE apikey = ?", err, n);
    if (st) {
        bind_text(st, 1, apikey);
        r = run(s, st, err, n, "revoking a project");
        if (r > 1) r = 1;
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* ---- nonces ---- */

int cvx_svc_store_nonce_use(cvx_svc_store *s, const char *apikey, const char *nonce, long long now_s,
                            long long window_s, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s, "DELETE FROM nonces WHERE seen < ?", err, n);
    if (st) {
        sqlite3_bind_int64(st, 1, now_s - window_s);
        if (run(s, st, err, n, "purging nonces") >= 0 &&
            (st = prep(s, "INSERT INTO nonces(apikey, nonce, seen) VALUES (?,?,?) ON CONFLICT DO NOTHING", err, n))) {
            bind_text(st, 1, apikey);
            bind_text(st, 2, nonce);
            sqlite3_bind_int64(st, 3, now_s);
            r = run(s, st, err, n, "recording a nonce");
            if (r > 1) r = 1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* ---- tasks ---- */

#define TASK_COLS                                                                                                 \
    "id, uuid, token, project, status, params, gen, callbackurl, slugowner, slugproject, createtime, accepttime,"   \
    " preprocessstarttime, preprocessendtime, assigntime, starttime, endtime, postprocessstarttime,"              \
    " postprocessendtime, canceltime, pexit, debugoutput, debugerror, elapsed, attempts, out_name, out_key,"       \
    " out_size, out_time, out_deleted, cb_state, cb_tries, cb_next"

static void read_task(sqlite3_stmt *st, cvx_svc_task *t) {
    memset(t, 0, sizeof *t);
    int i = 0;
    t->id = sqlite3_column_int64(st, i++);
    copy_col(st, i++, t->uuid, sizeof t->uuid);
    copy_col(st, i++, t->token, sizeof t->token);
    t->project = sqlite3_column_int64(st, i++);
    copy_col(st, i++, t->status, sizeof t->status);
    t->params = dup_col(st, i++);
    t->gen = dup_col(st, i++);
    t->callbackurl = dup_col(st, i++);
    copy_col(st, i++, t->slugowner, sizeof t->slugowner);
    copy_col(st, i++, t->slugproject, sizeof t->slugproject);
    long long *times[] = {&t->createtime, &t->accepttime, &t->preprocessstarttime, &t->preprocessendtime,
                          &t->assigntime, &t->starttime,  &t->endtime,             &t->postprocessstarttime,
                          &t->postprocessendtime, &t->canceltime};
    for (size_t k = 0; k < sizeof times / sizeof times[0]; k++) *times[k] = sqlite3_column_int64(st, i++);
    copy_col(st, i++, t->pexit, sizeof t->pexit);
    t->debugoutput = dup_col(st, i++);
    t->debugerror = dup_col(st, i++);
    t->elapsed = sqlite3_column_double(st, i++);
    t->attempts = sqlite3_column_int(st, i++);
    copy_col(st, i++, t->out_name, sizeof t->out_name);
    copy_col(st, i++, t->out_key, sizeof t->out_key);
    t->out_size = sqlite3_column_int64(st, i++);
    t->out_time = sqlite3_column_int64(st, i++);
    t->out_deleted = sqlite3_column_int(st, i++);
    t->cb_state = sqlite3_column_int(st, i++);
    t->cb_tries = sqlite3_column_int(st, i++);
    t->cb_next_ms = sqlite3_column_int64(st, i++);
}

int cvx_svc_store_task_add(cvx_svc_store *s, cvx_svc_task *t, int queue_limit, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    if (queue_limit > 0) {
        sqlite3_stmt *st = prep(s, "SELECT count(*) FROM tasks WHERE " NOT_FINAL, err, n);
        if (!st) goto out;
        int rc = sqlite3_step(st);
        long long waiting = rc == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
        sqlite3_finalize(st);
        if (waiting < 0) {
            dbfail(s, err, n, "counting the queue");
            goto out;
        }
        if (waiting >= queue_limit) {
            r = 0;
            goto out;
        }
    }
    sqlite3_stmt *st = prep(s,
                            "INSERT INTO tasks(uuid, token, project, status, params, gen, callbackurl, slugowner,"
                            " slugproject, createtime) VALUES (?,?,?,'task_queue',?,?,?,?,?,?) RETURNING id",
                            err, n);
    if (!st) goto out;
    bind_text(st, 1, t->uuid);
    bind_text(st, 2, t->token);
    sqlite3_bind_int64(st, 3, t->project);
    bind_text(st, 4, t->params);
    bind_text(st, 5, t->gen);
    bind_text(st, 6, t->callbackurl);
    bind_text(st, 7, t->slugowner);
    bind_text(st, 8, t->slugproject);
    sqlite3_bind_int64(st, 9, t->createtime);
    if (sqlite3_step(st) == SQLITE_ROW) {
        t->id = sqlite3_column_int64(st, 0);
        snprintf(t->status, sizeof t->status, "task_queue");
        r = sqlite3_step(st) == SQLITE_DONE ? 1 : dbfail(s, err, n, "adding a task");
    } else {
        dbfail(s, err, n, "adding a task");
    }
    sqlite3_finalize(st);
out:
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_task_get(cvx_svc_store *s, long long id, const char *token, cvx_svc_task *t, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s, token ? "SELECT " TASK_COLS " FROM tasks WHERE token = ?"
                                     : "SELECT " TASK_COLS " FROM tasks WHERE id = ?",
                            err, n);
    if (st) {
        if (token) bind_text(st, 1, token);
        else sqlite3_bind_int64(st, 1, id);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            read_task(st, t);
            r = 1;
        } else if (rc == SQLITE_DONE) {
            r = 0;
        } else {
            dbfail(s, err, n, "reading a task");
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_task_list(cvx_svc_store *s, long long project, int desc, long long start, int limit,
                            long long *total, void (*fn)(const cvx_svc_task *t, void *ud), void *ud, char *err,
                            size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    *total = 0;
    sqlite3_stmt *st = prep(s, "SELECT count(*) FROM tasks WHERE project = ?", err, n);
    if (!st) goto out;
    sqlite3_bind_int64(st, 1, project);
    if (sqlite3_step(st) == SQLITE_ROW) *total = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    st = prep(s, desc ? "SELECT " TASK_COLS " FROM tasks WHERE project = ? ORDER BY id DESC LIMIT ? OFFSET ?"
                      : "SELECT " TASK_COLS " FROM tasks WHERE project = ? ORDER BY id ASC LIMIT ? OFFSET ?",
              err, n);
    if (!st) goto out;
    sqlite3_bind_int64(st, 1, project);
    sqlite3_bind_int(st, 2, limit);
    sqlite3_bind_int64(st, 3, start);
    int rc, count = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        cvx_svc_task t;
        read_task(st, &t);
        fn(&t, ud);
        cvx_svc_task_clear(&t);
        count++;
    }
    r = rc == SQLITE_DONE ? count : dbfail(s, err, n, "listing tasks");
    sqlite3_finalize(st);
out:
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_task_claim(cvx_svc_store *s, long long now_s, cvx_svc_task *t, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s,
                            "UPDATE tasks SET status = 'task_accept', accepttime = ?, attempts = attempts + 1"
                            " WHERE id = (SELECT id FROM tasks WHERE status = 'task_queue' ORDER BY id LIMIT 1)"
                            " RETURNING " TASK_COLS,
                            err, n);
    if (st) {
        sqlite3_bind_int64(st, 1, now_s);
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            read_task(st, t);
            r = sqlite3_step(st) == SQLITE_DONE ? 1 : dbfail(s, err, n, "claiming a task");
            if (r < 0) cvx_svc_task_clear(t);
        } else if (rc == SQLITE_DONE) {
            r = 0;
        } else {
            dbfail(s, err, n, "claiming a task");
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

static const char *time_col(cvx_svc_time_col c) {
    switch (c) {
    case CVX_SVC_T_ACCEPT: return "accepttime";
    case CVX_SVC_T_PREPROCESS_START: return "preprocessstarttime";
    case CVX_SVC_T_PREPROCESS_END: return "preprocessendtime";
    case CVX_SVC_T_ASSIGN: return "assigntime";
    case CVX_SVC_T_START: return "starttime";
    case CVX_SVC_T_END: return "endtime";
    case CVX_SVC_T_POSTPROCESS_START: return "postprocessstarttime";
    case CVX_SVC_T_POSTPROCESS_END: return "postprocessendtime";
    default: return NULL;
    }
}

int cvx_svc_store_task_transition(cvx_svc_store *s, long long id, const char *status, cvx_svc_time_col col,
                                  long long now_s, char *err, size_t n) {
    char sql[256];
    const char *c = time_col(col);
    if (c) snprintf(sql, sizeof sql, "UPDATE tasks SET status = ?1, %s = ?2 WHERE id = ?3 AND " NOT_FINAL, c);
    else snprintf(sql, sizeof sql, "UPDATE tasks SET status = ?1 WHERE id = ?3 AND ?2 IS NOT NULL AND " NOT_FINAL);
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s, sql, err, n);
    if (st) {
        bind_text(st, 1, status);
        sqlite3_bind_int64(st, 2, now_s);
        sqlite3_bind_int64(st, 3, id);
        r = run(s, st, err, n, "updating a task");
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_task_log(cvx_svc_store *s, long long id, const char *status, const char *line, double elapsed,
                           char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s,
                            "UPDATE tasks SET status = ?, debugoutput = substr(debugoutput || ? || char(10), -65536),"
                            " elapsed = ? WHERE id = ? AND " NOT_FINAL,
                            err, n);
    if (st) {
        bind_text(st, 1, status);
        bind_text(st, 2, line);
        sqlite3_bind_double(st, 3, elapsed);
        sqlite3_bind_int64(st, 4, id);
        r = run(s, st, err, n, "logging a task");
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_task_finish(cvx_svc_store *s, long long id, const char *pexit, const char *debugerror,
                              const char *out_name, const char *out_key, long long out_size, double elapsed,
                              long long now_s, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(
        s,
        "UPDATE tasks SET status = 'task_postprocess_end', postprocessendtime = ?1, pexit = ?2,"
        " debugerror = CASE WHEN ?3 IS NULL THEN debugerror ELSE ?3 END,"
        " out_name = coalesce(?4, ''), out_key = coalesce(?5, ''), out_size = ?6,"
        " out_time = CASE WHEN ?4 IS NULL THEN 0 ELSE ?1 END, elapsed = ?7,"
        " cb_state = CASE WHEN callbackurl != '' THEN 1 ELSE 0 END, cb_next = 0"
        " WHERE id = ?8 AND " NOT_FINAL,
        err, n);
    if (st) {
        sqlite3_bind_int64(st, 1, now_s);
        bind_text(st, 2, pexit);
        if (debugerror) bind_text(st, 3, debugerror);
        else sqlite3_bind_null(st, 3);
        if (out_name) {
            bind_text(st, 4, out_name);
            bind_text(st, 5, out_key);
        } else {
            sqlite3_bind_null(st, 4);
            sqlite3_bind_null(st, 5);
        }
        sqlite3_bind_int64(st, 6, out_name ? out_size : 0);
        sqlite3_bind_double(st, 7, elapsed);
        sqlite3_bind_int64(st, 8, id);
        r = run(s, st, err, n, "finishing a task");
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_task_cancel(cvx_svc_store *s, long long id, int only_queued, long long now_s, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s,
                            only_queued ? "UPDATE tasks SET status = 'task_cancel', canceltime = ?,"
                                          " cb_state = CASE WHEN callbackurl != '' THEN 1 ELSE 0 END, cb_next = 0"
                                          " WHERE id = ? AND status = 'task_queue'"
                                        : "UPDATE tasks SET status = 'task_cancel', canceltime = ?,"
                                          " cb_state = CASE WHEN callbackurl != '' THEN 1 ELSE 0 END, cb_next = 0"
                                          " WHERE id = ? AND " NOT_FINAL,
                            err, n);
    if (st) {
        sqlite3_bind_int64(st, 1, now_s);
        sqlite3_bind_int64(st, 2, id);
        r = run(s, st, err, n, "cancelling a task");
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_task_requeue(cvx_svc_store *s, long long id, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s,
                            "UPDATE tasks SET status = 'task_queue', attempts = max(attempts - 1, 0)"
                            " WHERE id = ? AND " RUNNING,
                            err, n);
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        r = run(s, st, err, n, "re-queueing a task");
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_recover(cvx_svc_store *s, int max_attempts, long long now_s, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1, failed = -1;
    char msg[160];
    snprintf(msg, sizeof msg, "The task was interrupted %d times (server stopped while it ran); giving up.",
             max_attempts);
    sqlite3_stmt *st = prep(s,
                            "UPDATE tasks SET status = 'task_postprocess_end', postprocessendtime = ?, pexit = '1',"
                            " debugerror = ?, cb_state = CASE WHEN callbackurl != '' THEN 1 ELSE 0 END, cb_next = 0"
                            " WHERE " RUNNING " AND attempts >= ?",
                            err, n);
    if (st) {
        sqlite3_bind_int64(st, 1, now_s);
        bind_text(st, 2, msg);
        sqlite3_bind_int(st, 3, max_attempts);
        failed = run(s, st, err, n, "recovering tasks");
    }
    if (failed >= 0 && (st = prep(s, "UPDATE tasks SET status = 'task_queue' WHERE " RUNNING, err, n))) {
        int requeued = run(s, st, err, n, "recovering tasks");
        if (requeued >= 0) r = failed + requeued;
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_output_deleted(cvx_svc_store *s, long long id, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s, "UPDATE tasks SET out_deleted = 1 WHERE id = ?", err, n);
    if (st) {
        sqlite3_bind_int64(st, 1, id);
        r = run(s, st, err, n, "deleting outputs");
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_outputs_before(cvx_svc_store *s, long long cutoff_s, void (*fn)(const cvx_svc_task *t, void *ud),
                                 void *ud, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s,
                            "SELECT " TASK_COLS " FROM tasks WHERE out_name != '' AND out_deleted = 0 AND out_time < ?"
                            " ORDER BY id",
                            err, n);
    if (st) {
        sqlite3_bind_int64(st, 1, cutoff_s);
        int rc, count = 0;
        while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
            cvx_svc_task t;
            read_task(st, &t);
            fn(&t, ud);
            cvx_svc_task_clear(&t);
            count++;
        }
        r = rc == SQLITE_DONE ? count : dbfail(s, err, n, "listing old outputs");
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_callback_due(cvx_svc_store *s, long long now_ms, cvx_svc_task *t, long long *next_ms, char *err,
                               size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    *next_ms = 0;
    sqlite3_stmt *st = prep(s, "SELECT " TASK_COLS " FROM tasks WHERE cb_state = 1 ORDER BY cb_next, id LIMIT 1", err, n);
    if (st) {
        int rc = sqlite3_step(st);
        if (rc == SQLITE_ROW) {
            long long due = sqlite3_column_int64(st, 32);
            if (due <= now_ms) {
                read_task(st, t);
                r = 1;
            } else {
                *next_ms = due;
                r = 0;
            }
        } else if (rc == SQLITE_DONE) {
            r = 0;
        } else {
            dbfail(s, err, n, "reading callbacks");
        }
        sqlite3_finalize(st);
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_callback_update(cvx_svc_store *s, long long id, int state, int tries, long long next_ms, char *err,
                                  size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    sqlite3_stmt *st = prep(s, "UPDATE tasks SET cb_state = ?, cb_tries = ?, cb_next = ? WHERE id = ?", err, n);
    if (st) {
        sqlite3_bind_int(st, 1, state);
        sqlite3_bind_int(st, 2, tries);
        sqlite3_bind_int64(st, 3, next_ms);
        sqlite3_bind_int64(st, 4, id);
        r = run(s, st, err, n, "updating a callback");
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}
