/* SQLite implementation of the service store (store.h). Final statuses are task_cancel and task_postprocess_end:
 * every update of a running task is guarded by "status is not final", so a Kill that lands while the worker
 * finishes leaves exactly one of the two outcomes. */
#include "service/store.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <strings.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <libpq-fe.h>
#include <sqlite3.h>

/* Prepared statements are kept and reused (reset, bindings cleared) rather than prepared on every call: parsing
 * and planning the SQL was about a third of a Task/Detail's instructions (bench_service under callgrind). Keyed by
 * the SQL text; every statement of this file is a fixed text (or one of a few built from fixed parts), so the
 * cache stays small; one that finds it full is prepared and finalized as before. Guarded by mu, like db. */
#define STMT_CACHE 96

struct cached_stmt {
    uint64_t hash;
    char *sql;
    sqlite3_stmt *st;
    int busy; /* handed out and not yet released (a statement used inside another's loop gets its own) */
};

struct cvx_svc_store {
    sqlite3 *db; /* one of the two: an SQLite file */
    PGconn *pg;  /* or a PostgreSQL database */
    pthread_mutex_t mu;
    struct cached_stmt stmts[STMT_CACHE];
    int nstmts;
    atomic_int fail_writes; /* cvx_svc_store_fail_writes */
    long long nonces_purged; /* unix seconds of the last purge */
    /* nonces of read-only calls, written in batches (cvx_svc_store_nonce_note): guarded by pmu (taken inside mu
     * when both are held) */
    pthread_mutex_t pmu;
    struct pending_nonce {
        char apikey[72], nonce[48];
        long long keep_from;
    } *pending;
    size_t npending, cap_pending;
    long long pending_since_ms; /* when the oldest pending nonce came */
    long long reset_ms;         /* PostgreSQL: when the connection was last reset (monotonic ms) */
};

#define NONCE_BATCH 1024     /* pending nonces written in one transaction */
#define NONCE_BATCH_MS 1000  /* at the latest this long after the first of them came */

void cvx_svc_store_fail_writes(cvx_svc_store *s, int on) { atomic_store(&s->fail_writes, on); }

#define NOT_FINAL CVX_SVC_SQL_NOT_FINAL
/* The statuses of a task a worker holds (claimed, not yet final). */
#define RUNNING CVX_SVC_SQL_RUNNING

static int dbfail(cvx_svc_store *s, char *err, size_t n, const char *what) {
    if (err && n) {
        const char *msg = s->db ? sqlite3_errmsg(s->db) : PQerrorMessage(s->pg);
        int len = (int)strcspn(msg, "\n"); /* libpq's messages end with a newline (and may carry more lines) */
        snprintf(err, n, "store: %s: %.*s", what, len, msg);
    }
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

/* The SQLite schema, one migration per version (PRAGMA user_version = the versions applied); a migration is only
 * ever appended. Version 1 is SCHEMA above (IF NOT EXISTS: the stores of the first versions, which set no version,
 * keep their tables). */
static const char *const SQLITE_MIGRATIONS[] = {
    NULL, /* 1: SCHEMA */
    /* 2: the workers and their heartbeats (/healthz) */
    "CREATE TABLE IF NOT EXISTS workers (name TEXT PRIMARY KEY, heartbeat INTEGER NOT NULL,"
    " task INTEGER NOT NULL DEFAULT 0) WITHOUT ROWID;",
    /* 3: the last progress frame of a task (WebSocket sessions of other processes) */
    "ALTER TABLE tasks ADD COLUMN progress TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tasks ADD COLUMN progress_step INTEGER NOT NULL DEFAULT 0;",
    /* 4: claims with a fencing token and a lease; checkpoints and outputs in the store */
    "ALTER TABLE tasks ADD COLUMN claim INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN lease_until INTEGER NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN worker TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE IF NOT EXISTS checkpoints (task INTEGER PRIMARY KEY, step INTEGER NOT NULL, steps INTEGER NOT NULL,"
    " blob BLOB NOT NULL);"
    "CREATE TABLE IF NOT EXISTS outputs (okey TEXT NOT NULL, name TEXT NOT NULL, part INTEGER NOT NULL,"
    " data BLOB NOT NULL, PRIMARY KEY (okey, name, part)) WITHOUT ROWID;"
    "CREATE TABLE IF NOT EXISTS frames (task INTEGER NOT NULL, seq INTEGER NOT NULL, frame TEXT NOT NULL,"
    " PRIMARY KEY (task, seq)) WITHOUT ROWID;",
    /* 5: a task's input file (image-to-video: the image's bytes as uploaded or fetched) */
    "CREATE TABLE IF NOT EXISTS inputs (task INTEGER PRIMARY KEY, data BLOB NOT NULL);",
};
#define SQLITE_SCHEMA_VERSION ((int)(sizeof SQLITE_MIGRATIONS / sizeof SQLITE_MIGRATIONS[0]))
_Static_assert(SQLITE_SCHEMA_VERSION == CVX_SVC_SCHEMA_VERSION, "store.h's CVX_SVC_SCHEMA_VERSION is SQLite's");

/* Indexes added after version 1 of the schema (created on every open; IF NOT EXISTS makes it cheap). */
static const char *INDEXES = "CREATE INDEX IF NOT EXISTS tasks_project_created ON tasks(project, createtime);"
                             "CREATE INDEX IF NOT EXISTS tasks_project_status ON tasks(project, status);";

/* ---- PostgreSQL: connection and migrations ---- */

/* The PostgreSQL schema, one migration per version (cvx_schema holds the versions applied); a migration is only ever
 * appended. Same tables and columns as SQLite's, with PostgreSQL's types. */
static const char *const PG_MIGRATIONS[] = {
    /* 1 */
    "CREATE TABLE projects ("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, name TEXT NOT NULL DEFAULT '', apikey TEXT NOT NULL UNIQUE,"
    " mode INTEGER NOT NULL, secret BYTEA, created BIGINT NOT NULL, revoked INTEGER NOT NULL DEFAULT 0);"
    "CREATE TABLE tasks ("
    " id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, uuid TEXT NOT NULL, token TEXT NOT NULL UNIQUE,"
    " project BIGINT NOT NULL, status TEXT NOT NULL, params TEXT NOT NULL, gen TEXT NOT NULL,"
    " callbackurl TEXT NOT NULL DEFAULT '', slugowner TEXT NOT NULL DEFAULT '', slugproject TEXT NOT NULL DEFAULT '',"
    " createtime BIGINT NOT NULL DEFAULT 0, accepttime BIGINT NOT NULL DEFAULT 0,"
    " preprocessstarttime BIGINT NOT NULL DEFAULT 0, preprocessendtime BIGINT NOT NULL DEFAULT 0,"
    " assigntime BIGINT NOT NULL DEFAULT 0, starttime BIGINT NOT NULL DEFAULT 0, endtime BIGINT NOT NULL DEFAULT 0,"
    " postprocessstarttime BIGINT NOT NULL DEFAULT 0, postprocessendtime BIGINT NOT NULL DEFAULT 0,"
    " canceltime BIGINT NOT NULL DEFAULT 0, pexit TEXT NOT NULL DEFAULT '', debugoutput TEXT NOT NULL DEFAULT '',"
    " debugerror TEXT NOT NULL DEFAULT '', elapsed DOUBLE PRECISION NOT NULL DEFAULT 0,"
    " attempts INTEGER NOT NULL DEFAULT 0, out_name TEXT NOT NULL DEFAULT '', out_key TEXT NOT NULL DEFAULT '',"
    " out_size BIGINT NOT NULL DEFAULT 0, out_time BIGINT NOT NULL DEFAULT 0, out_deleted INTEGER NOT NULL DEFAULT 0,"
    " cb_state INTEGER NOT NULL DEFAULT 0, cb_tries INTEGER NOT NULL DEFAULT 0, cb_next BIGINT NOT NULL DEFAULT 0);"
    "CREATE INDEX tasks_project ON tasks(project, id);"
    "CREATE INDEX tasks_status ON tasks(status, id);"
    "CREATE INDEX tasks_callback ON tasks(cb_state, cb_next);"
    "CREATE INDEX tasks_project_created ON tasks(project, createtime);"
    "CREATE INDEX tasks_project_status ON tasks(project, status);"
    "CREATE TABLE nonces (apikey TEXT NOT NULL, nonce TEXT NOT NULL, seen BIGINT NOT NULL, PRIMARY KEY (apikey, nonce));"
    "CREATE INDEX nonces_seen ON nonces(seen);",
    /* 2: the workers and their heartbeats (/healthz) */
    "CREATE TABLE workers (name TEXT PRIMARY KEY, heartbeat BIGINT NOT NULL, task BIGINT NOT NULL DEFAULT 0);",
    /* 3: the last progress frame of a task (WebSocket sessions of other processes) */
    "ALTER TABLE tasks ADD COLUMN progress TEXT NOT NULL DEFAULT '';"
    "ALTER TABLE tasks ADD COLUMN progress_step INTEGER NOT NULL DEFAULT 0;",
    /* 4: claims with a fencing token and a lease; checkpoints and outputs in the store */
    "ALTER TABLE tasks ADD COLUMN claim BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN lease_until BIGINT NOT NULL DEFAULT 0;"
    "ALTER TABLE tasks ADD COLUMN worker TEXT NOT NULL DEFAULT '';"
    "CREATE TABLE checkpoints (task BIGINT PRIMARY KEY, step INTEGER NOT NULL, steps INTEGER NOT NULL,"
    " blob BYTEA NOT NULL);"
    "CREATE TABLE outputs (okey TEXT NOT NULL, name TEXT NOT NULL, part INTEGER NOT NULL, data BYTEA NOT NULL,"
    " PRIMARY KEY (okey, name, part));"
    "CREATE TABLE frames (task BIGINT NOT NULL, seq INTEGER NOT NULL, frame TEXT NOT NULL, PRIMARY KEY (task, seq));"
    "ALTER TABLE outputs ALTER COLUMN data SET STORAGE EXTERNAL;", /* video bytes do not compress: no pglz try */
    /* 5: a task's input file (image-to-video: the image's bytes as uploaded or fetched) */
    "CREATE TABLE inputs (task BIGINT PRIMARY KEY, data BYTEA NOT NULL);"
    "ALTER TABLE inputs ALTER COLUMN data SET STORAGE EXTERNAL;",
};
#define PG_SCHEMA_VERSION ((int)(sizeof PG_MIGRATIONS / sizeof PG_MIGRATIONS[0]))

int cvx_svc_store_is_postgres(const char *store) {
    if (!strncmp(store, "postgresql://", 13) || !strncmp(store, "postgres://", 11)) return 1;
    /* a libpq keyword string starts with keyword= (host=..., dbname=..., service=...) */
    const char *c = store;
    while (*c == ' ') c++;
    const char *k = c;
    while ((*c >= 'a' && *c <= 'z') || *c == '_') c++;
    while (*c == ' ') c++;
    return c > k && *c == '=';
}

/* A PGresult's status is what we want: 1 (the result is cleared either way), else the message in err. */
static int pg_ok(cvx_svc_store *s, PGresult *res, ExecStatusType want, char *err, size_t n, const char *what) {
    int ok = PQresultStatus(res) == want;
    if (!ok && err && n) {
        const char *msg = PQresultErrorMessage(res);
        if (!*msg) msg = PQerrorMessage(s->pg);
        snprintf(err, n, "store (PostgreSQL): %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
    }
    PQclear(res);
    return ok;
}

/* The settings of every connection (the first and each reset): notices quiet (IF NOT EXISTS ... skipping); a session
 * of this program that stays inside a transaction for 10 s without a statement is ended by the server (a worker cut
 * off from the network in the middle of a write would otherwise keep its row locks, and every node's next update of
 * that task would wait for it); so is one whose client stops answering in the middle of a message — a checkpoint's
 * blob half sent when the link went down keeps the session "active" in ClientRead, which no statement or idle
 * timeout ends: the server's TCP keepalives on this session (probes after 10 s of silence, 3 unanswered 5 s apart)
 * and its TCP user timeout (data unacknowledged for 10 s) close it; a statement that waits 10 s for a lock fails (and
 * is retried by its caller) instead of hanging. */
static void pg_session(cvx_svc_store *s) {
    PQclear(PQexec(s->pg, "SET client_min_messages = warning; SET idle_in_transaction_session_timeout = '10s';"
                          " SET lock_timeout = '10s'; SET tcp_keepalives_idle = 10; SET tcp_keepalives_interval = 5;"
                          " SET tcp_keepalives_count = 3; SET tcp_user_timeout = 10000"));
}

/* Connects and brings the schema to PG_SCHEMA_VERSION in one transaction (an advisory lock makes nodes that start
 * together migrate one after the other); a newer schema is refused. */
static int pg_open(cvx_svc_store *s, const char *conninfo, char *err, size_t n) {
    /* a server that does not answer (a network cut) fails the connection, and each later reset, after 10 s instead
     * of hanging; the TCP keepalives find a dead peer of an idle connection. Settings in the store's own string come later and win. */
    const char *const keys[] = {"connect_timeout", "keepalives", "keepalives_idle", "keepalives_interval",
                                "keepalives_count", "tcp_user_timeout", "dbname", NULL};
    /* tcp_user_timeout: a statement whose bytes the server does not acknowledge for 10 s (a link down mid-call)
     * fails instead of waiting for TCP's retransmissions (about 15 minutes) */
    const char *const values[] = {"10", "1", "30", "5", "3", "10000", conninfo, NULL};
    s->pg = PQconnectdbParams(keys, values, 1);
    if (!s->pg || PQstatus(s->pg) != CONNECTION_OK) {
        const char *msg = s->pg ? PQerrorMessage(s->pg) : "out of memory";
        snprintf(err, n, "store (PostgreSQL): cannot connect: %.*s", (int)strcspn(msg, "\n"), msg);
        return -1;
    }
    pg_session(s);
    PGresult *res;
    if (!pg_ok(s, PQexec(s->pg, "BEGIN"), PGRES_COMMAND_OK, err, n, "migrating") ||
        !pg_ok(s, PQexec(s->pg, "SELECT pg_advisory_xact_lock(7461636)"), PGRES_TUPLES_OK, err, n, "migrating") ||
        !pg_ok(s, PQexec(s->pg, "CREATE TABLE IF NOT EXISTS cvx_schema (version INTEGER NOT NULL)"), PGRES_COMMAND_OK,
               err, n, "migrating")) {
        PQclear(PQexec(s->pg, "ROLLBACK"));
        return -1;
    }
    res = PQexec(s->pg, "SELECT coalesce(max(version), 0) FROM cvx_schema");
    int version = PQresultStatus(res) == PGRES_TUPLES_OK ? atoi(PQgetvalue(res, 0, 0)) : -1;
    if (version < 0) {
        pg_ok(s, res, PGRES_TUPLES_OK, err, n, "reading the schema version");
        PQclear(PQexec(s->pg, "ROLLBACK"));
        return -1;
    }
    PQclear(res);
    if (version > PG_SCHEMA_VERSION) {
        snprintf(err, n, "store (PostgreSQL): schema version %d is newer than this program's (%d)", version,
                 PG_SCHEMA_VERSION);
        PQclear(PQexec(s->pg, "ROLLBACK"));
        return -1;
    }
    for (int v = version; v < PG_SCHEMA_VERSION; v++) {
        char what[64], sql[64];
        snprintf(what, sizeof what, "migration %d", v + 1);
        snprintf(sql, sizeof sql, "INSERT INTO cvx_schema VALUES (%d)", v + 1);
        if (!pg_ok(s, PQexec(s->pg, PG_MIGRATIONS[v]), PGRES_COMMAND_OK, err, n, what) ||
            !pg_ok(s, PQexec(s->pg, sql), PGRES_COMMAND_OK, err, n, what)) {
            PQclear(PQexec(s->pg, "ROLLBACK"));
            return -1;
        }
    }
    return pg_ok(s, PQexec(s->pg, "COMMIT"), PGRES_COMMAND_OK, err, n, "migrating") ? 0 : -1;
}

int cvx_svc_store_open(cvx_svc_store **out, const char *path, char *err, size_t n) {
    *out = NULL;
    cvx_svc_store *s = calloc(1, sizeof *s);
    if (!s) {
        snprintf(err, n, "store: out of memory");
        return -1;
    }
    pthread_mutex_init(&s->mu, NULL);
    pthread_mutex_init(&s->pmu, NULL);
    if (cvx_svc_store_is_postgres(path)) {
        if (pg_open(s, path, err, n)) {
            cvx_svc_store_close(s);
            return -1;
        }
        *out = s;
        return 0;
    }
    /* the store holds API keys: it is created 0600 whatever the umask (SQLite gives its -wal and -shm files the
     * mode of the database file), and one readable by others is made private */
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd >= 0) {
        struct stat st;
        if (fstat(fd, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077)) fchmod(fd, 0600);
        close(fd);
    }
    for (int k = 0; k < 2; k++) {
        char side[4200];
        snprintf(side, sizeof side, "%s%s", path, k ? "-shm" : "-wal");
        struct stat st;
        if (lstat(side, &st) == 0 && S_ISREG(st.st_mode) && (st.st_mode & 077)) chmod(side, 0600);
    }
    int rc = sqlite3_open_v2(path, &s->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_FULLMUTEX, NULL);
    if (rc != SQLITE_OK) {
        snprintf(err, n, "store %s: %s", path, s->db ? sqlite3_errmsg(s->db) : sqlite3_errstr(rc));
        cvx_svc_store_close(s);
        return -1;
    }
    /* the keys command and the server may open the file at the same time */
    sqlite3_busy_timeout(s->db, 10000);
    char *msg = NULL;
    /* secure_delete: a value replaced (an API key stored in clear by an older version) leaves no bytes behind */
    if (sqlite3_exec(s->db, "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;"
                            " PRAGMA secure_delete=ON;", NULL, NULL,
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
    if (version < CVX_SVC_SCHEMA_VERSION) { /* the migrations after the store's version, in one transaction */
        char sql[64];
        snprintf(sql, sizeof sql, "PRAGMA user_version=%d;", CVX_SVC_SCHEMA_VERSION);
        int ok = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, &msg) == SQLITE_OK;
        for (int v = version; ok && v < CVX_SVC_SCHEMA_VERSION; v++)
            ok = sqlite3_exec(s->db, v == 0 ? SCHEMA : SQLITE_MIGRATIONS[v], NULL, NULL, &msg) == SQLITE_OK;
        if (!ok || sqlite3_exec(s->db, sql, NULL, NULL, &msg) != SQLITE_OK ||
            sqlite3_exec(s->db, "COMMIT", NULL, NULL, &msg) != SQLITE_OK) {
            snprintf(err, n, "store %s: creating the schema: %s", path, msg ? msg : sqlite3_errmsg(s->db));
            sqlite3_free(msg);
            sqlite3_exec(s->db, "ROLLBACK", NULL, NULL, NULL);
            cvx_svc_store_close(s);
            return -1;
        }
    }
    if (sqlite3_exec(s->db, INDEXES, NULL, NULL, &msg) != SQLITE_OK) {
        snprintf(err, n, "store %s: creating indexes: %s", path, msg ? msg : sqlite3_errmsg(s->db));
        sqlite3_free(msg);
        cvx_svc_store_close(s);
        return -1;
    }
    *out = s;
    return 0;
}

static int flush_nonces(cvx_svc_store *s, long long now_s, long long window_s, char *err, size_t n);

void cvx_svc_store_close(cvx_svc_store *s) {
    if (!s) return;
    if (s->db || (s->pg && PQstatus(s->pg) == CONNECTION_OK)) flush_nonces(s, 0, 0, NULL, 0);
    for (int i = 0; i < s->nstmts; i++) {
        sqlite3_finalize(s->stmts[i].st);
        free(s->stmts[i].sql);
    }
    sqlite3_close_v2(s->db);
    PQfinish(s->pg);
    pthread_mutex_destroy(&s->mu);
    pthread_mutex_destroy(&s->pmu);
    free(s->pending);
    free(s);
}

/* ---- statement helpers ---- */

static uint64_t sql_hash(const char *sql) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (const char *c = sql; *c; c++) h = (h ^ (uint8_t)*c) * 1099511628211ull;
    return h;
}

/* A statement for sql, from the cache when it holds one that is free; give it back with release(). The lock held
 * (or the store not yet shared). */
static sqlite3_stmt *prep(cvx_svc_store *s, const char *sql, char *err, size_t n) {
    sqlite3_stmt *st = NULL;
    if (atomic_load(&s->fail_writes) && strncasecmp(sql, "SELECT", 6)) {
        if (err && n) snprintf(err, n, "store: %s", sqlite3_errstr(SQLITE_FULL));
        return NULL;
    }
    uint64_t h = sql_hash(sql);
    for (int i = 0; i < s->nstmts; i++) {
        struct cached_stmt *c = &s->stmts[i];
        if (c->hash == h && !c->busy && !strcmp(c->sql, sql)) {
            c->busy = 1;
            return c->st;
        }
    }
    if (sqlite3_prepare_v3(s->db, sql, -1, SQLITE_PREPARE_PERSISTENT, &st, NULL) != SQLITE_OK) {
        dbfail(s, err, n, "prepare");
        sqlite3_finalize(st);
        return NULL;
    }
    if (st && s->nstmts < STMT_CACHE) {
        char *copy = strdup(sql);
        if (copy) s->stmts[s->nstmts++] = (struct cached_stmt){.hash = h, .sql = copy, .st = st, .busy = 1};
    }
    return st;
}

/* Gives back a statement of prep(): a cached one is reset for its next use (which also ends its read), another is
 * finalized. */
static void release(cvx_svc_store *s, sqlite3_stmt *st) {
    for (int i = 0; i < s->nstmts; i++)
        if (s->stmts[i].st == st) {
            sqlite3_reset(st);
            sqlite3_clear_bindings(st);
            s->stmts[i].busy = 0;
            return;
        }
    sqlite3_finalize(st);
}

static void bind_text(sqlite3_stmt *st, int i, const char *v) { sqlite3_bind_text(st, i, v ? v : "", -1, SQLITE_TRANSIENT); }

/* A row of a result, as the readers below see it: the columns by index, whatever the database. PostgreSQL's rows
 * come as text (bytea as \x hex, decoded into `blob`, which lives until the next row). */
typedef struct db_row {
    sqlite3_stmt *st;
    PGresult *res;
    int row;
    unsigned char *blob;
} db_row;

static long long col_i64(const db_row *r, int i) {
    return r->st ? sqlite3_column_int64(r->st, i) : strtoll(PQgetvalue(r->res, r->row, i), NULL, 10);
}
static double col_double(const db_row *r, int i) {
    return r->st ? sqlite3_column_double(r->st, i) : strtod(PQgetvalue(r->res, r->row, i), NULL);
}
static const char *col_text(const db_row *r, int i) {
    const char *v = r->st ? (const char *)sqlite3_column_text(r->st, i) : PQgetvalue(r->res, r->row, i);
    return v ? v : "";
}
/* A blob column (NULL when SQL NULL or empty). */
static const void *col_blob(db_row *r, int i, size_t *len) {
    *len = 0;
    if (r->st) {
        const void *b = sqlite3_column_blob(r->st, i);
        int l = sqlite3_column_bytes(r->st, i);
        *len = b && l > 0 ? (size_t)l : 0;
        return *len ? b : NULL;
    }
    if (PQgetisnull(r->res, r->row, i)) return NULL;
    PQfreemem(r->blob);
    r->blob = PQunescapeBytea((const unsigned char *)PQgetvalue(r->res, r->row, i), len);
    if (!r->blob) *len = 0;
    return *len ? r->blob : NULL;
}

static void copy_col(const db_row *r, int i, char *dst, size_t size) { snprintf(dst, size, "%s", col_text(r, i)); }

static char *dup_col(const db_row *r, int i) { return strdup(col_text(r, i)); }

/* Prepares sql and binds its parameters ?1, ?2, ... from the arguments, one letter of binds each:
 * 't' const char * (NULL binds ''), 'T' const char * (NULL binds SQL NULL), 'i' int, 'I' long long, 'd' double,
 * 'b' const void *, size_t (a blob; an empty one binds SQL NULL). */
static sqlite3_stmt *vprep(cvx_svc_store *s, char *err, size_t n, const char *sql, const char *binds, va_list ap) {
    sqlite3_stmt *st = prep(s, sql, err, n);
    if (!st) return NULL;
    for (int i = 1; binds[i - 1]; i++) {
        switch (binds[i - 1]) {
        case 't': bind_text(st, i, va_arg(ap, const char *)); break;
        case 'T': {
            const char *v = va_arg(ap, const char *);
            if (v) bind_text(st, i, v);
            else sqlite3_bind_null(st, i);
            break;
        }
        case 'i': sqlite3_bind_int(st, i, va_arg(ap, int)); break;
        case 'I': sqlite3_bind_int64(st, i, va_arg(ap, long long)); break;
        case 'd': sqlite3_bind_double(st, i, va_arg(ap, double)); break;
        case 'b': {
            const void *b = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);
            if (len) sqlite3_bind_blob(st, i, b, (int)len, SQLITE_TRANSIENT);
            else sqlite3_bind_null(st, i);
            break;
        }
        default: break; /* the letters are fixed in this file */
        }
    }
    return st;
}

/* Runs a statement without rows; returns sqlite3_changes or -1. Releases st. */
static int run(cvx_svc_store *s, sqlite3_stmt *st, char *err, size_t n, const char *what) {
    int r = sqlite3_step(st) == SQLITE_DONE ? sqlite3_changes(s->db) : dbfail(s, err, n, what);
    release(s, st);
    return r;
}

static PGresult *pg_run(cvx_svc_store *s, char *err, size_t n, const char *what, const char *sql, const char *binds,
                        va_list ap);
static long long mono_ms(void);

/* PostgreSQL: a connection lost (the server restarted, the network was cut) is reset before the next statement, at
 * most once a second (a reset waits up to connect_timeout for a server that does not answer: the calls between two
 * tries fail at once instead of queueing behind the store's lock). 1 the connection is up. */
static int pg_alive(cvx_svc_store *s, char *err, size_t n) {
    if (PQstatus(s->pg) == CONNECTION_OK) return 1;
    long long now = mono_ms();
    if (!s->reset_ms || now - s->reset_ms >= 1000 || now < s->reset_ms) {
        s->reset_ms = now;
        PQreset(s->pg);
        if (PQstatus(s->pg) == CONNECTION_OK) {
            pg_session(s);
            return 1;
        }
    }
    if (err && n) {
        const char *msg = PQerrorMessage(s->pg);
        snprintf(err, n, "store: the database is unreachable (reconnecting): %.*s", (int)strcspn(msg, "\n"), msg);
    }
    return 0;
}

int cvx_svc_store_unreachable(cvx_svc_store *s) {
    if (!s->pg) return 0;
    pthread_mutex_lock(&s->mu);
    int down = PQstatus(s->pg) != CONNECTION_OK;
    pthread_mutex_unlock(&s->mu);
    return down;
}

static int vexec(cvx_svc_store *s, char *err, size_t n, const char *what, const char *sql, const char *binds,
                 va_list ap) {
    if (s->pg) {
        PGresult *res = pg_run(s, err, n, what, sql, binds, ap);
        if (!res) return -1;
        int changes = atoi(PQcmdTuples(res));
        PQclear(res);
        return changes;
    }
    sqlite3_stmt *st = vprep(s, err, n, sql, binds, ap);
    return st ? run(s, st, err, n, what) : -1;
}

/* Prepares, binds (vprep) and runs a statement without rows with the lock already held. */
static int exec(cvx_svc_store *s, char *err, size_t n, const char *what, const char *sql, const char *binds, ...) {
    va_list ap;
    va_start(ap, binds);
    int r = vexec(s, err, n, what, sql, binds, ap);
    va_end(ap);
    return r;
}

/* exec under the lock: a public call that is one statement. */
static int exec_locked(cvx_svc_store *s, char *err, size_t n, const char *what, const char *sql, const char *binds,
                       ...) {
    va_list ap;
    va_start(ap, binds);
    pthread_mutex_lock(&s->mu);
    int r = vexec(s, err, n, what, sql, binds, ap);
    pthread_mutex_unlock(&s->mu);
    va_end(ap);
    return r;
}

/* Reads the current row into ud; returns 1 when the row counts as found, 0 when it is passed over. */
typedef int (*row_reader)(db_row *row, void *ud);

typedef enum {
    FIRST_ROW, /* a lookup: the first row or none; the statement is not stepped further */
    ONE_ROW,   /* UPDATE ... RETURNING: one row or none, then the statement must run to its end (the write
                  completes at SQLITE_DONE); a second row is an error */
    NEW_ROW,   /* INSERT ... RETURNING: exactly one row, then the end */
    ALL_ROWS,
} rows_mode;

/* Steps st as mode says, passing the rows to read; releases st. Returns the rows read counted as found, or -1
 * with the error recorded as `what`. */
static int step_rows(cvx_svc_store *s, sqlite3_stmt *st, rows_mode mode, row_reader read, void *ud, char *err,
                     size_t n, const char *what) {
    int rc, rows = 0, found = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        if (rows && (mode == ONE_ROW || mode == NEW_ROW)) break;
        rows++;
        found += read(&(db_row){.st = st}, ud);
        if (mode == FIRST_ROW) {
            rc = SQLITE_DONE;
            break;
        }
    }
    int ok = rc == SQLITE_DONE && (mode != NEW_ROW || rows == 1);
    int r = ok ? found : dbfail(s, err, n, what);
    release(s, st);
    return r;
}

/* ---- PostgreSQL: the same statements through libpq ---- */

/* The SQL of this file written for PostgreSQL: ?N and ? become $N (outside string literals); "BEGIN IMMEDIATE"
 * is BEGIN. malloc'ed, NULL without memory. */
static char *pg_sql(const char *sql) {
    if (!strcmp(sql, "BEGIN IMMEDIATE")) return strdup("BEGIN");
    size_t len = strlen(sql);
    char *out = malloc(len * 2 + 8);
    if (!out) return NULL;
    size_t o = 0;
    int next = 1, quoted = 0;
    for (const char *c = sql; *c; c++) {
        if (*c == '\'') quoted = !quoted;
        if (*c != '?' || quoted) {
            out[o++] = *c;
            continue;
        }
        if (c[1] >= '0' && c[1] <= '9') { /* ?N keeps its number */
            out[o++] = '$';
            continue;
        }
        o += (size_t)sprintf(out + o, "$%d", next++);
    }
    out[o] = 0;
    return out;
}

/* Runs sql with its binds (vprep's letters) on PostgreSQL; the result (command or rows) or NULL with the error. */
static PGresult *pg_run(cvx_svc_store *s, char *err, size_t n, const char *what, const char *sql, const char *binds,
                        va_list ap) {
    if (atomic_load(&s->fail_writes) && strncasecmp(sql, "SELECT", 6)) {
        if (err && n) snprintf(err, n, "store: %s", sqlite3_errstr(SQLITE_FULL)); /* the same words as SQLite's */
        return NULL;
    }
    enum { MAX_PARAMS = 40 };
    if (strlen(binds) > MAX_PARAMS) { /* never with the statements of this file */
        if (err && n) snprintf(err, n, "store: %s: more than %d parameters", what, MAX_PARAMS);
        return NULL;
    }
    const char *values[MAX_PARAMS];
    int lengths[MAX_PARAMS], formats[MAX_PARAMS];
    Oid types[MAX_PARAMS];
    char numbers[MAX_PARAMS][32];
    int np = 0;
    for (; binds[np] && np < MAX_PARAMS; np++) {
        lengths[np] = 0;
        formats[np] = 0;
        switch (binds[np]) {
        case 't': {
            const char *v = va_arg(ap, const char *);
            values[np] = v ? v : "";
            types[np] = 25; /* text */
            break;
        }
        case 'T':
            values[np] = va_arg(ap, const char *);
            types[np] = 25;
            break;
        case 'i':
            snprintf(numbers[np], sizeof numbers[np], "%d", va_arg(ap, int));
            values[np] = numbers[np];
            types[np] = 23; /* int4 */
            break;
        case 'I':
            snprintf(numbers[np], sizeof numbers[np], "%lld", va_arg(ap, long long));
            values[np] = numbers[np];
            types[np] = 20; /* int8 */
            break;
        case 'd':
            snprintf(numbers[np], sizeof numbers[np], "%.17g", va_arg(ap, double));
            values[np] = numbers[np];
            types[np] = 701; /* float8 */
            break;
        case 'b': {
            const void *b = va_arg(ap, const void *);
            size_t len = va_arg(ap, size_t);
            values[np] = len ? b : NULL;
            lengths[np] = (int)len;
            formats[np] = 1; /* binary */
            types[np] = 17;  /* bytea */
            break;
        }
        default: values[np] = NULL, types[np] = 25; break;
        }
    }
    if (!pg_alive(s, err, n)) return NULL;
    char *text = pg_sql(sql);
    if (!text) {
        if (err && n) snprintf(err, n, "store: %s: out of memory", what);
        return NULL;
    }
    PGresult *res = PQexecParams(s->pg, text, np, types, values, lengths, formats, 0);
    ExecStatusType st = PQresultStatus(res);
    /* a read on a connection that broke since the last statement (a restarted server) is tried once more on a new
     * one; a write is not (it may have been done): its caller sees the failure */
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && PQstatus(s->pg) != CONNECTION_OK &&
        !strncasecmp(sql, "SELECT", 6) && PQtransactionStatus(s->pg) != PQTRANS_INTRANS) {
        s->reset_ms = 0;
        if (pg_alive(s, NULL, 0)) {
            PQclear(res);
            res = PQexecParams(s->pg, text, np, types, values, lengths, formats, 0);
            st = PQresultStatus(res);
        }
    }
    free(text);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK) {
        if (err && n) {
            const char *msg = PQresultErrorMessage(res);
            if (!*msg) msg = PQerrorMessage(s->pg);
            snprintf(err, n, "store: %s: %.*s", what, (int)strcspn(msg, "\n"), msg);
        }
        PQclear(res);
        return NULL;
    }
    return res;
}

/* The rows of a PostgreSQL result as step_rows reads SQLite's. */
static int pg_rows(cvx_svc_store *s, PGresult *res, rows_mode mode, row_reader read, void *ud, char *err, size_t n,
                   const char *what) {
    int rows = PQntuples(res), found = 0;
    if (((mode == ONE_ROW) && rows > 1) || (mode == NEW_ROW && rows != 1)) {
        if (err && n) snprintf(err, n, "store: %s: %d rows", what, rows);
        PQclear(res);
        return -1;
    }
    if (mode == FIRST_ROW && rows > 1) rows = 1;
    db_row row = {.res = res};
    for (row.row = 0; row.row < rows; row.row++) found += read(&row, ud);
    PQfreemem(row.blob);
    PQclear(res);
    return found;
}

/* A statement without parameters or rows (BEGIN, COMMIT, ROLLBACK): 0 or -1. */
static int raw(cvx_svc_store *s, const char *sql) {
    if (s->db) return sqlite3_exec(s->db, sql, NULL, NULL, NULL) == SQLITE_OK ? 0 : -1;
    PGresult *res = PQexec(s->pg, !strcmp(sql, "BEGIN IMMEDIATE") ? "BEGIN" : sql);
    int ok = PQresultStatus(res) == PGRES_COMMAND_OK;
    PQclear(res);
    return ok ? 0 : -1;
}

static int vquery(cvx_svc_store *s, char *err, size_t n, const char *what, rows_mode mode, row_reader read, void *ud,
                  const char *sql, const char *binds, va_list ap) {
    if (s->pg) {
        PGresult *res = pg_run(s, err, n, what, sql, binds, ap);
        return res ? pg_rows(s, res, mode, read, ud, err, n, what) : -1;
    }
    sqlite3_stmt *st = vprep(s, err, n, sql, binds, ap);
    return st ? step_rows(s, st, mode, read, ud, err, n, what) : -1;
}

/* Prepares, binds (vprep) and steps (step_rows) a statement with rows with the lock already held. */
static int query(cvx_svc_store *s, char *err, size_t n, const char *what, rows_mode mode, row_reader read, void *ud,
                 const char *sql, const char *binds, ...) {
    va_list ap;
    va_start(ap, binds);
    int r = vquery(s, err, n, what, mode, read, ud, sql, binds, ap);
    va_end(ap);
    return r;
}

/* query under the lock: a public call that is one statement. */
static int query_locked(cvx_svc_store *s, char *err, size_t n, const char *what, rows_mode mode, row_reader read,
                        void *ud, const char *sql, const char *binds, ...) {
    va_list ap;
    va_start(ap, binds);
    pthread_mutex_lock(&s->mu);
    int r = vquery(s, err, n, what, mode, read, ud, sql, binds, ap);
    pthread_mutex_unlock(&s->mu);
    va_end(ap);
    return r;
}

/* The callback of a listing (the one for its rows) and its user data. */
typedef struct {
    void (*project)(const cvx_svc_project *p, void *ud);
    void (*task)(const cvx_svc_task *t, void *ud);
    void *ud;
} visit;

static int row_visit(db_row *row, void *ud);

/* One count(*) with its binds, the lock held; -1 on failure. */
static long long count_rows(cvx_svc_store *s, char *err, size_t n, const char *sql, const char *binds, ...) {
    va_list ap;
    va_start(ap, binds);
    if (s->pg) {
        PGresult *res = pg_run(s, err, n, "counting tasks", sql, binds, ap);
        va_end(ap);
        if (!res) return -1;
        long long c = PQntuples(res) == 1 ? strtoll(PQgetvalue(res, 0, 0), NULL, 10) : -1;
        PQclear(res);
        return c;
    }
    sqlite3_stmt *st = vprep(s, err, n, sql, binds, ap);
    va_end(ap);
    if (!st) return -1;
    long long c = sqlite3_step(st) == SQLITE_ROW ? sqlite3_column_int64(st, 0) : -1;
    if (c < 0) dbfail(s, err, n, "counting tasks");
    release(s, st);
    return c;
}

/* ---- projects ---- */

#define PROJECT_COLS "id, name, apikey, mode, secret, created, revoked"

/* a row_reader of PROJECT_COLS into a cvx_svc_project */
static int read_project(db_row *row, void *ud) {
    cvx_svc_project *p = ud;
    memset(p, 0, sizeof *p);
    p->id = col_i64(row, 0);
    copy_col(row, 1, p->name, sizeof p->name);
    copy_col(row, 2, p->apikey, sizeof p->apikey);
    p->mode = (int)col_i64(row, 3);
    size_t len;
    const void *b = col_blob(row, 4, &len);
    if (b && len <= sizeof p->secret_enc) {
        memcpy(p->secret_enc, b, len);
        p->secret_enc_len = len;
    }
    p->created = col_i64(row, 5);
    p->revoked = (int)col_i64(row, 6);
    return 1;
}

static int row_project_id(db_row *row, void *p) {
    ((cvx_svc_project *)p)->id = col_i64(row, 0);
    return 1;
}

int cvx_svc_store_project_add(cvx_svc_store *s, cvx_svc_project *p, char *err, size_t n) {
    int r = query_locked(s, err, n, "adding a project", NEW_ROW, row_project_id, p,
                         "INSERT INTO projects(name, apikey, mode, secret, created) VALUES (?,?,?,?,?) RETURNING id",
                         "ttibI", p->name, p->apikey, p->mode, (const void *)p->secret_enc, p->secret_enc_len,
                         p->created);
    return r < 0 ? -1 : 0;
}

int cvx_svc_store_project_by_key(cvx_svc_store *s, const char *apikey, cvx_svc_project *p, char *err, size_t n) {
    return query_locked(s, err, n, "reading a project", FIRST_ROW, read_project, p,
                        "SELECT " PROJECT_COLS " FROM projects WHERE apikey = ?", "t", apikey);
}

int cvx_svc_store_project_list(cvx_svc_store *s, void (*fn)(const cvx_svc_project *p, void *ud), void *ud,
                               char *err, size_t n) {
    visit v = {.project = fn, .ud = ud};
    return query_locked(s, err, n, "listing projects", ALL_ROWS, row_visit, &v,
                        "SELECT " PROJECT_COLS " FROM projects ORDER BY id", "");
}

int cvx_svc_store_sealed_project(cvx_svc_store *s, cvx_svc_project *p, long long *count, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    *count = count_rows(s, err, n, "SELECT count(*) FROM projects WHERE secret IS NOT NULL", "");
    int r = *count < 0 ? -1
                       : query(s, err, n, "reading a project", FIRST_ROW, read_project, p,
                               "SELECT " PROJECT_COLS " FROM projects WHERE secret IS NOT NULL ORDER BY id LIMIT 1", "");
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_project_rekey(cvx_svc_store *s, long long id, const char *old_key, const char *new_key,
                                const uint8_t *secret_enc, size_t secret_len, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = exec(s, err, n, "re-keying a project", "BEGIN IMMEDIATE", "");
    if (r >= 0) {
        r = exec(s, err, n, "re-keying a project", "UPDATE projects SET apikey = ?, secret = ? WHERE id = ? AND apikey = ?",
                 "tbIt", new_key, (const void *)secret_enc, secret_len, id, old_key);
        /* the nonces follow (those the new key has already are kept once) */
        int moved = r > 0 ? exec(s, err, n, "re-keying nonces",
                                 "DELETE FROM nonces WHERE apikey = ?2 AND nonce IN (SELECT nonce FROM nonces WHERE apikey = ?1)",
                                 "tt", new_key, old_key)
                          : 0;
        if (moved >= 0 && r > 0)
            moved = exec(s, err, n, "re-keying nonces", "UPDATE nonces SET apikey = ?1 WHERE apikey = ?2", "tt", new_key,
                         old_key);
        if (r < 0 || moved < 0) {
            raw(s, "ROLLBACK");
            r = -1;
        } else if (exec(s, err, n, "re-keying a project", "COMMIT", "") < 0) {
            raw(s, "ROLLBACK");
            r = -1;
        }
    }
    pthread_mutex_unlock(&s->mu);
    return r > 1 ? 1 : r;
}

int cvx_svc_store_truncate_log(cvx_svc_store *s, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    /* PostgreSQL keeps no log of old page images in the database's files that a reader of them could open */
    int r = !s->db || sqlite3_exec(s->db, "PRAGMA wal_checkpoint(TRUNCATE)", NULL, NULL, NULL) == SQLITE_OK
                ? 0
                : dbfail(s, err, n, "checkpoint");
    pthread_mutex_unlock(&s->mu);
    return r;
}

int cvx_svc_store_project_revoke(cvx_svc_store *s, const char *apikey, char *err, size_t n) {
    int r = exec_locked(s, err, n, "revoking a project", "UPDATE projects SET revoked = 1 WHERE apikey = ?", "t",
                        apikey);
    return r > 1 ? 1 : r;
}

/* ---- nonces ---- */

static long long mono_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* Records one nonce, the lock held: 1 new, 0 recorded before, -1 error. */
static int record_nonce(cvx_svc_store *s, const char *apikey, const char *nonce, long long keep_from_s, char *err,
                        size_t n) {
    int r = exec(s, err, n, "recording a nonce",
                 "INSERT INTO nonces(apikey, nonce, seen) VALUES (?,?,?) ON CONFLICT DO NOTHING", "ttI", apikey, nonce,
                 keep_from_s);
    return r > 1 ? 1 : r;
}

/* Writes the pending nonces of read-only calls in one transaction (and purges old ones at most once a minute;
 * window_s 0: no purge). A nonce write needs no fsync of its own: WAL keeps it across a crash of the process. */
static int flush_nonces(cvx_svc_store *s, long long now_s, long long window_s, char *err, size_t n) {
    /* The batch is taken with the store's lock held (lock order mu, then pmu): taken before it, a batch would be
     * neither pending nor written while another thread's nonce_use records one of its nonces as new (a replay let
     * through; seen once in CI as a failure of test_service's concurrent nonces). */
    pthread_mutex_lock(&s->mu);
    pthread_mutex_lock(&s->pmu);
    struct pending_nonce *batch = s->pending;
    size_t count = s->npending;
    s->pending = NULL;
    s->npending = s->cap_pending = 0;
    pthread_mutex_unlock(&s->pmu);
    if (s->db) sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    int r = 0;
    if (window_s > 0 && (now_s - s->nonces_purged >= 60 || now_s < s->nonces_purged)) {
        r = exec(s, err, n, "purging nonces", "DELETE FROM nonces WHERE seen < ?", "I", now_s - window_s);
        if (r >= 0) s->nonces_purged = now_s;
    }
    for (size_t i = 0; s->pg && i < count && r >= 0; i++) /* (PostgreSQL notes are written at once: none wait) */
        r = record_nonce(s, batch[i].apikey, batch[i].nonce, batch[i].keep_from, err, n);
    sqlite3_stmt *st = s->db && r >= 0 && count ? prep(s, "INSERT INTO nonces(apikey, nonce, seen) VALUES (?,?,?) ON CONFLICT"
                                                 " DO NOTHING", err, n)
                                       : NULL;
    if (s->db && r >= 0 && count && !st) r = -1;
    if (st) { /* one statement and one transaction for the batch */
        int tx = sqlite3_exec(s->db, "BEGIN IMMEDIATE", NULL, NULL, NULL) == SQLITE_OK;
        for (size_t i = 0; i < count && r >= 0; i++) {
            sqlite3_bind_text(st, 1, batch[i].apikey, -1, SQLITE_STATIC);
            sqlite3_bind_text(st, 2, batch[i].nonce, -1, SQLITE_STATIC);
            sqlite3_bind_int64(st, 3, batch[i].keep_from);
            if (sqlite3_step(st) != SQLITE_DONE) r = dbfail(s, err, n, "recording nonces");
            sqlite3_reset(st);
        }
        release(s, st);
        if (tx) sqlite3_exec(s->db, r >= 0 ? "COMMIT" : "ROLLBACK", NULL, NULL, NULL);
    }
    if (s->db) sqlite3_exec(s->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->mu);
    free(batch);
    return r < 0 ? -1 : 0;
}

int cvx_svc_store_nonce_note(cvx_svc_store *s, const char *apikey, const char *nonce, long long now_s,
                             long long keep_from_s, long long window_s, char *err, size_t n) {
    /* PostgreSQL: every node must see the nonce before a state-changing call can come to another node, so it is
     * written at once (a batch in this process's memory would be invisible to the others for up to a second) */
    if (s->pg || strlen(apikey) >= sizeof s->pending->apikey || strlen(nonce) >= sizeof s->pending->nonce)
        return cvx_svc_store_nonce_use(s, apikey, nonce, now_s, keep_from_s, window_s, err, n) < 0 ? -1 : 0;
    long long now_ms = mono_ms();
    pthread_mutex_lock(&s->pmu);
    int ok = 1;
    /* a poll that repeats the last nonce (the recipe's Detail) adds nothing */
    struct pending_nonce *last = s->npending ? &s->pending[s->npending - 1] : NULL;
    if (!last || strcmp(last->nonce, nonce) || strcmp(last->apikey, apikey)) {
        if (s->npending == s->cap_pending) {
            size_t cap = s->cap_pending ? s->cap_pending * 2 : 64;
            struct pending_nonce *np = realloc(s->pending, cap * sizeof *np);
            if (np) s->pending = np, s->cap_pending = cap;
            else ok = 0;
        }
        if (ok) {
            struct pending_nonce *e = &s->pending[s->npending++];
            snprintf(e->apikey, sizeof e->apikey, "%s", apikey);
            snprintf(e->nonce, sizeof e->nonce, "%s", nonce);
            e->keep_from = keep_from_s;
            if (s->npending == 1) s->pending_since_ms = now_ms;
        }
    }
    int due = s->npending >= NONCE_BATCH || (s->npending && now_ms - s->pending_since_ms >= NONCE_BATCH_MS);
    pthread_mutex_unlock(&s->pmu);
    if (!ok) return cvx_svc_store_nonce_use(s, apikey, nonce, now_s, keep_from_s, window_s, err, n) < 0 ? -1 : 0;
    return due ? flush_nonces(s, now_s, window_s, err, n) : 0;
}

int cvx_svc_store_nonce_use(cvx_svc_store *s, const char *apikey, const char *nonce, long long now_s,
                            long long keep_from_s, long long window_s, char *err, size_t n) {
    /* the pending nonces of read-only calls first: one of them used here is a replay */
    if (flush_nonces(s, now_s, window_s, err, n) < 0) return -1;
    pthread_mutex_lock(&s->mu);
    if (s->db) sqlite3_exec(s->db, "PRAGMA synchronous=NORMAL", NULL, NULL, NULL);
    int r = record_nonce(s, apikey, nonce, keep_from_s, err, n);
    if (s->db) sqlite3_exec(s->db, "PRAGMA synchronous=FULL", NULL, NULL, NULL);
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* ---- tasks ---- */

void cvx_svc_task_clear(cvx_svc_task *t) {
    if (!t) return;
    free(t->params);
    free(t->gen);
    free(t->callbackurl);
    free(t->debugoutput);
    free(t->debugerror);
    free(t->progress);
    memset(t, 0, sizeof *t);
}

#define TASK_COLS                                                                                                 \
    "id, uuid, token, project, status, params, gen, callbackurl, slugowner, slugproject, createtime, accepttime,"   \
    " preprocessstarttime, preprocessendtime, assigntime, starttime, endtime, postprocessstarttime,"              \
    " postprocessendtime, canceltime, pexit, debugoutput, debugerror, elapsed, attempts, out_name, out_key,"       \
    " out_size, out_time, out_deleted, cb_state, cb_tries, cb_next, progress, progress_step, claim, lease_until, worker"

/* a row_reader of TASK_COLS into a cvx_svc_task */
static int read_task(db_row *row, void *ud) {
    cvx_svc_task *t = ud;
    memset(t, 0, sizeof *t);
    int i = 0;
    t->id = col_i64(row, i++);
    copy_col(row, i++, t->uuid, sizeof t->uuid);
    copy_col(row, i++, t->token, sizeof t->token);
    t->project = col_i64(row, i++);
    copy_col(row, i++, t->status, sizeof t->status);
    t->params = dup_col(row, i++);
    t->gen = dup_col(row, i++);
    t->callbackurl = dup_col(row, i++);
    copy_col(row, i++, t->slugowner, sizeof t->slugowner);
    copy_col(row, i++, t->slugproject, sizeof t->slugproject);
    long long *times[] = {&t->createtime, &t->accepttime, &t->preprocessstarttime, &t->preprocessendtime,
                          &t->assigntime, &t->starttime,  &t->endtime,             &t->postprocessstarttime,
                          &t->postprocessendtime, &t->canceltime};
    for (size_t k = 0; k < sizeof times / sizeof times[0]; k++) *times[k] = col_i64(row, i++);
    copy_col(row, i++, t->pexit, sizeof t->pexit);
    t->debugoutput = dup_col(row, i++);
    t->debugerror = dup_col(row, i++);
    t->elapsed = col_double(row, i++);
    t->attempts = (int)col_i64(row, i++);
    copy_col(row, i++, t->out_name, sizeof t->out_name);
    copy_col(row, i++, t->out_key, sizeof t->out_key);
    t->out_size = col_i64(row, i++);
    t->out_time = col_i64(row, i++);
    t->out_deleted = (int)col_i64(row, i++);
    t->cb_state = (int)col_i64(row, i++);
    t->cb_tries = (int)col_i64(row, i++);
    t->cb_next_ms = col_i64(row, i++);
    t->progress = dup_col(row, i++);
    t->progress_step = (int)col_i64(row, i++);
    t->claim = col_i64(row, i++);
    t->lease_until_ms = col_i64(row, i++);
    copy_col(row, i++, t->worker, sizeof t->worker);
    return 1;
}

/* a row_reader that hands each row of a listing to its callback */
static int row_visit(db_row *row, void *ud) {
    visit *v = ud;
    if (v->project) {
        cvx_svc_project p;
        read_project(row, &p);
        v->project(&p, v->ud);
    } else {
        cvx_svc_task t;
        read_task(row, &t);
        v->task(&t, v->ud);
        cvx_svc_task_clear(&t);
    }
    return 1;
}

static int row_task_added(db_row *row, void *ud) {
    cvx_svc_task *t = ud;
    t->id = col_i64(row, 0);
    snprintf(t->status, sizeof t->status, CVX_SVC_S_QUEUE);
    return 1;
}

int cvx_svc_store_task_add(cvx_svc_store *s, cvx_svc_task *t, const cvx_svc_add_limits *limits, int *refused,
                           char *err, size_t n) {
    return cvx_svc_store_task_add_input(s, t, limits, refused, NULL, 0, err, n);
}

int cvx_svc_store_task_add_input(cvx_svc_store *s, cvx_svc_task *t, const cvx_svc_add_limits *limits, int *refused,
                                 const void *input, size_t input_size, char *err, size_t n) {
    int why = CVX_SVC_REFUSED_NONE;
    pthread_mutex_lock(&s->mu);
    int r = -1;
    /* with an input, the task and its bytes are written in one transaction: no worker claims a task without them */
    int tx = input && input_size;
    if (tx && exec(s, err, n, "adding a task", "BEGIN IMMEDIATE", "") < 0) goto out;
    if (limits && limits->queue_limit > 0) {
        long long waiting = count_rows(s, err, n, "SELECT count(*) FROM tasks WHERE " NOT_FINAL, "");
        if (waiting < 0) goto out;
        if (waiting >= limits->queue_limit) why = CVX_SVC_REFUSED_QUEUE;
    }
    if (!why && limits && limits->project_queue_limit > 0) {
        long long mine = count_rows(s, err, n, "SELECT count(*) FROM tasks WHERE project = ? AND " NOT_FINAL, "I",
                                    t->project);
        if (mine < 0) goto out;
        if (mine >= limits->project_queue_limit) why = CVX_SVC_REFUSED_PROJECT_QUEUE;
    }
    if (!why && limits && limits->project_runs_per_min > 0) {
        long long recent = count_rows(s, err, n, "SELECT count(*) FROM tasks WHERE project = ? AND createtime > ?",
                                      "II", t->project, t->createtime - 60);
        if (recent < 0) goto out;
        if (recent >= limits->project_runs_per_min) why = CVX_SVC_REFUSED_RATE;
    }
    if (why) {
        r = 0;
        goto out;
    }
    r = query(s, err, n, "adding a task", NEW_ROW, row_task_added, t,
              "INSERT INTO tasks(uuid, token, project, status, params, gen, callbackurl, slugowner,"
              " slugproject, createtime) VALUES (?,?,?,'" CVX_SVC_S_QUEUE "',?,?,?,?,?,?) RETURNING id",
              "ttItttttI", t->uuid, t->token, t->project, t->params, t->gen, t->callbackurl, t->slugowner,
              t->slugproject, t->createtime);
    if (tx && r == 1 &&
        exec(s, err, n, "adding a task's input", "INSERT INTO inputs(task, data) VALUES (?, ?)", "Ib", t->id, input,
             input_size) < 0)
        r = -1;
out:
    if (tx && r == 1 && exec(s, err, n, "adding a task", "COMMIT", "") < 0) r = -1;
    if (tx && r != 1) raw(s, "ROLLBACK");
    pthread_mutex_unlock(&s->mu);
    if (refused) *refused = why;
    return r;
}

int cvx_svc_store_task_get(cvx_svc_store *s, long long id, const char *token, cvx_svc_task *t, char *err, size_t n) {
    if (token)
        return query_locked(s, err, n, "reading a task", FIRST_ROW, read_task, t,
                            "SELECT " TASK_COLS " FROM tasks WHERE token = ?", "t", token);
    return query_locked(s, err, n, "reading a task", FIRST_ROW, read_task, t,
                        "SELECT " TASK_COLS " FROM tasks WHERE id = ?", "I", id);
}

typedef struct {
    long long *ids;
    int count;
} id_list;

static int row_id(db_row *row, void *ud) {
    id_list *l = ud;
    l->ids[l->count++] = col_i64(row, 0);
    return 1;
}

long long cvx_svc_store_queued_before(cvx_svc_store *s, long long id, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    long long c = count_rows(s, err, n, "SELECT count(*) FROM tasks WHERE status = 'task_queue' AND id < ?", "I", id);
    pthread_mutex_unlock(&s->mu);
    return c;
}

int cvx_svc_store_task_ids(cvx_svc_store *s, long long project, int desc, long long start, int limit,
                           long long *total, long long *ids, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    id_list l = {ids, 0};
    int r = -1;
    *total = count_rows(s, err, n, "SELECT count(*) FROM tasks WHERE project = ?", "I", project);
    if (*total >= 0)
        r = query(s, err, n, "listing tasks", ALL_ROWS, row_id, &l,
                  desc ? "SELECT id FROM tasks WHERE project = ? ORDER BY id DESC LIMIT ? OFFSET ?"
                       : "SELECT id FROM tasks WHERE project = ? ORDER BY id ASC LIMIT ? OFFSET ?",
                  "IiI", project, limit, start);
    pthread_mutex_unlock(&s->mu);
    if (*total < 0) *total = 0;
    return r;
}

typedef struct {
    cvx_svc_task *t;
    int read;
} task_claim;

static int row_task_claimed(db_row *row, void *ud) {
    task_claim *c = ud;
    read_task(row, c->t);
    c->read = 1;
    return 1;
}

int cvx_svc_store_task_claim(cvx_svc_store *s, const char *worker, long long now_s, long long lease_until_ms,
                             cvx_svc_task *t, char *err, size_t n) {
    task_claim c = {t, 0};
    /* SQLite has one writer at a time; on PostgreSQL, workers claiming at once each take another row */
#define CLAIM_SQL(lock)                                                                                            \
    "UPDATE tasks SET status = '" CVX_SVC_S_ACCEPT "', accepttime = ?1, attempts = attempts + 1, claim = claim + 1," \
    " lease_until = ?2, worker = ?3"                                                                               \
    " WHERE id = (SELECT id FROM tasks WHERE status = '" CVX_SVC_S_QUEUE "' ORDER BY id LIMIT 1" lock ")"          \
    " RETURNING " TASK_COLS
    int r = query_locked(s, err, n, "claiming a task", ONE_ROW, row_task_claimed, &c,
                         s->pg ? CLAIM_SQL(" FOR UPDATE SKIP LOCKED") : CLAIM_SQL(""), "IIt", now_s, lease_until_ms,
                         worker);
#undef CLAIM_SQL
    /* the row was read but the claim did not complete */
    if (r < 0 && c.read) cvx_svc_task_clear(t);
    return r;
}

/* The condition of a holder's write: its claim still holds the task (?N = 0: unfenced). */
#define FENCE(N) " AND (?" #N " = 0 OR claim = ?" #N ")"

int cvx_svc_store_task_renew(cvx_svc_store *s, long long id, long long claim, long long lease_until_ms, char *err,
                             size_t n) {
    int r = exec_locked(s, err, n, "renewing a lease",
                        "UPDATE tasks SET lease_until = ?1 WHERE id = ?2 AND " RUNNING FENCE(3), "III", lease_until_ms,
                        id, claim);
    return r > 1 ? 1 : r;
}

int cvx_svc_store_task_transition(cvx_svc_store *s, long long id, long long claim, cvx_svc_status status, long long now_s, char *err,
                                  size_t n) {
    char sql[256];
    const char *c = cvx_svc_status_time_column(status);
    if (c) snprintf(sql, sizeof sql, "UPDATE tasks SET status = ?1, %s = ?2 WHERE id = ?3 AND " NOT_FINAL FENCE(4), c);
    else
        snprintf(sql, sizeof sql, "UPDATE tasks SET status = ?1 WHERE id = ?3 AND ?2 IS NOT NULL AND " NOT_FINAL FENCE(4));
    return exec_locked(s, err, n, "updating a task", sql, "tIII", cvx_svc_status_name(status), now_s, id, claim);
}

int cvx_svc_store_task_output(cvx_svc_store *s, long long id, long long claim, const char *line, double elapsed,
                              const char *frame, int step, char *err, size_t n) {
    size_t len = strlen(line);
    char *with_newline = malloc(len + 2);
    if (!with_newline) {
        snprintf(err, n, "store: out of memory");
        return -1;
    }
    memcpy(with_newline, line, len);
    memcpy(with_newline + len, "\n", 2);
    /* the task's row and the frame in one transaction (one sync) */
    pthread_mutex_lock(&s->mu);
    int r = exec(s, err, n, "logging a task", "BEGIN IMMEDIATE", "");
    if (r >= 0)
        r = exec(s, err, n, "logging a task",
                 "UPDATE tasks SET status = '" CVX_SVC_S_OUTPUT "', debugoutput = CASE WHEN length(debugoutput || ?1)"
                 " > 65536 THEN substr(debugoutput || ?1, length(debugoutput || ?1) - 65535) ELSE debugoutput || ?1"
                 " END, elapsed = ?2, progress = ?3, progress_step = ?4 WHERE id = ?5 AND " NOT_FINAL FENCE(6),
                 "tdtiII", with_newline, elapsed, frame ? frame : "", step, id, claim);
    if (r > 0 && frame && frame[0] &&
        exec(s, err, n, "recording a frame",
             "INSERT INTO frames(task, seq, frame) VALUES (?1, ?2, ?3) ON CONFLICT(task, seq) DO UPDATE SET frame = ?3",
             "Iit", id, step, frame) < 0)
        r = -1;
    if (r >= 0 && exec(s, err, n, "logging a task", "COMMIT", "") < 0) r = -1;
    if (r < 0) raw(s, "ROLLBACK");
    pthread_mutex_unlock(&s->mu);
    free(with_newline);
    return r;
}

typedef struct {
    void (*fn)(int seq, const char *frame, void *ud);
    void *ud;
} frame_visit;

static int row_frame(db_row *row, void *ud) {
    frame_visit *v = ud;
    v->fn((int)col_i64(row, 0), col_text(row, 1), v->ud);
    return 1;
}

int cvx_svc_store_task_frames(cvx_svc_store *s, long long id, int after_seq, void (*fn)(int seq, const char *frame,
                                                                                        void *ud),
                              void *ud, char *err, size_t n) {
    frame_visit v = {fn, ud};
    return query_locked(s, err, n, "reading frames", ALL_ROWS, row_frame, &v,
                        "SELECT seq, frame FROM frames WHERE task = ? AND seq > ? ORDER BY seq", "Ii", id, after_seq);
}

int cvx_svc_store_frames_purge(cvx_svc_store *s, long long before_s, char *err, size_t n) {
    return exec_locked(s, err, n, "purging frames",
                       "DELETE FROM frames WHERE task IN (SELECT id FROM tasks WHERE status IN ('" CVX_SVC_S_CANCEL
                       "','" CVX_SVC_S_POSTPROCESS_END "') AND postprocessendtime < ?1 AND canceltime < ?1)",
                       "I", before_s);
}

int cvx_svc_store_task_log(cvx_svc_store *s, long long id, long long claim, const char *status, const char *line, double elapsed,
                           char *err, size_t n) {
    size_t len = strlen(line);
    char *with_newline = malloc(len + 2);
    if (!with_newline) {
        snprintf(err, n, "store: out of memory");
        return -1;
    }
    memcpy(with_newline, line, len);
    memcpy(with_newline + len, "\n", 2);
    int r = exec_locked(s, err, n, "logging a task",
                       "UPDATE tasks SET status = ?1, debugoutput = CASE WHEN length(debugoutput || ?2) > 65536"
                       " THEN substr(debugoutput || ?2, length(debugoutput || ?2) - 65535) ELSE debugoutput || ?2 END,"
                       " elapsed = ?3 WHERE id = ?4 AND " NOT_FINAL FENCE(5),
                       "ttdII", status, with_newline, elapsed, id, claim);
    free(with_newline);
    return r;
}

int cvx_svc_store_task_finish(cvx_svc_store *s, long long id, long long claim, const char *pexit, const char *debugerror,
                              const char *out_name, const char *out_key, long long out_size, double elapsed,
                              long long now_s, char *err, size_t n) {
    /* without an output, name and key bind SQL NULL; with one, a missing key binds '' */
    const char *key = out_name ? (out_key ? out_key : "") : NULL;
    return exec_locked(s, err, n, "finishing a task",
                       "UPDATE tasks SET status = '" CVX_SVC_S_POSTPROCESS_END "', postprocessendtime = ?1, pexit = ?2,"
                       " debugerror = CASE WHEN ?3 IS NULL THEN debugerror ELSE ?3 END,"
                       " out_name = coalesce(?4, ''), out_key = coalesce(?5, ''), out_size = ?6,"
                       " out_time = CASE WHEN ?4 IS NULL THEN 0 ELSE ?1 END, elapsed = ?7,"
                       " cb_state = CASE WHEN callbackurl != '' THEN 1 ELSE 0 END, cb_next = 0"
                       " WHERE id = ?8 AND " NOT_FINAL FENCE(9),
                       "ItTTTIdII", now_s, pexit, debugerror, out_name, key, out_name ? out_size : 0, elapsed, id,
                       claim);
}

int cvx_svc_store_task_cancel(cvx_svc_store *s, long long id, int only_queued, long long now_s, char *err, size_t n) {
    return exec_locked(s, err, n, "cancelling a task",
                       only_queued ? "UPDATE tasks SET status = '" CVX_SVC_S_CANCEL "', canceltime = ?,"
                                     " cb_state = CASE WHEN callbackurl != '' THEN 1 ELSE 0 END, cb_next = 0"
                                     " WHERE id = ? AND status = '" CVX_SVC_S_QUEUE "'"
                                   : "UPDATE tasks SET status = '" CVX_SVC_S_CANCEL "', canceltime = ?,"
                                     " cb_state = CASE WHEN callbackurl != '' THEN 1 ELSE 0 END, cb_next = 0"
                                     " WHERE id = ? AND " NOT_FINAL,
                       "II", now_s, id);
}

int cvx_svc_store_task_requeue(cvx_svc_store *s, long long id, long long claim, char *err, size_t n) {
    return exec_locked(s, err, n, "re-queueing a task",
                       "UPDATE tasks SET status = '" CVX_SVC_S_QUEUE "', attempts = CASE WHEN attempts > 0 THEN attempts - 1 ELSE 0 END,"
                       " lease_until = 0 WHERE id = ?1 AND " RUNNING FENCE(2),
                       "II", id, claim);
}

typedef struct {
    long long *ids;
    int max, count;
} capped_ids;

static int row_capped_id(db_row *row, void *ud) {
    capped_ids *c = ud;
    if (c->ids && c->count < c->max) c->ids[c->count++] = col_i64(row, 0);
    return 1;
}

int cvx_svc_store_recover(cvx_svc_store *s, int max_attempts, long long now_s, long long expired_before_ms,
                          long long *failed_ids, int max_failed, int *n_failed, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = -1;
    char msg[160];
    snprintf(msg, sizeof msg, "The task was interrupted %d times (its worker stopped or lost its lease while it ran);"
                              " giving up.", max_attempts);
    capped_ids c = {failed_ids, max_failed, 0};
    int failed = query(s, err, n, "recovering tasks", ALL_ROWS, row_capped_id, &c,
                       "UPDATE tasks SET status = '" CVX_SVC_S_POSTPROCESS_END "', postprocessendtime = ?, pexit = '1',"
                       " debugerror = ?, cb_state = CASE WHEN callbackurl != '' THEN 1 ELSE 0 END, cb_next = 0"
                       " WHERE " RUNNING " AND attempts >= ? AND lease_until < ? RETURNING id",
                       "ItiI", now_s, msg, max_attempts, expired_before_ms);
    if (n_failed) *n_failed = c.count;
    if (failed >= 0) {
        int requeued = exec(s, err, n, "recovering tasks",
                            "UPDATE tasks SET status = '" CVX_SVC_S_QUEUE "', lease_until = 0 WHERE " RUNNING
                            " AND lease_until < ?",
                            "I", expired_before_ms);
        if (requeued >= 0) r = failed + requeued;
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

/* ---- checkpoints and outputs ---- */

/* Renews the holder's lease as a fence inside a transaction: 1 the claim holds, 0 lost, -1 error. */
static int fence_tx(cvx_svc_store *s, long long id, long long claim, long long lease_until_ms, char *err, size_t n) {
    int r = exec(s, err, n, "renewing a lease",
                 "UPDATE tasks SET lease_until = CASE WHEN ?1 > 0 THEN ?1 ELSE lease_until END WHERE id = ?2 AND "
                 RUNNING FENCE(3), "III", lease_until_ms, id, claim);
    return r > 1 ? 1 : r;
}

int cvx_svc_store_checkpoint_put(cvx_svc_store *s, long long id, long long claim, long long lease_until_ms, int step,
                                 int steps, const void *blob, size_t size, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = exec(s, err, n, "writing a checkpoint", "BEGIN IMMEDIATE", "");
    if (r >= 0) {
        r = fence_tx(s, id, claim, lease_until_ms, err, n);
        if (r == 1 && exec(s, err, n, "writing a checkpoint",
                           "INSERT INTO checkpoints(task, step, steps, blob) VALUES (?1, ?2, ?3, ?4) ON CONFLICT(task)"
                           " DO UPDATE SET step = ?2, steps = ?3, blob = ?4",
                           "Iiib", id, step, steps, blob, size) < 0)
            r = -1;
        if (r < 0 || (r == 1 && exec(s, err, n, "writing a checkpoint", "COMMIT", "") < 0)) {
            raw(s, "ROLLBACK");
            r = -1;
        } else if (r == 0)
            raw(s, "ROLLBACK");
    }
    pthread_mutex_unlock(&s->mu);
    return r;
}

typedef struct {
    void *blob;
    size_t size;
    int step, steps;
} ckpt_row;

static int row_checkpoint(db_row *row, void *ud) {
    ckpt_row *c = ud;
    c->step = (int)col_i64(row, 0);
    c->steps = (int)col_i64(row, 1);
    size_t len;
    const void *b = col_blob(row, 2, &len);
    c->blob = len ? malloc(len) : NULL;
    if (!c->blob) return 0;
    memcpy(c->blob, b, len);
    c->size = len;
    return 1;
}

static int row_input(db_row *row, void *ud) {
    ckpt_row *c = ud;
    size_t len;
    const void *b = col_blob(row, 0, &len);
    c->blob = len ? malloc(len) : NULL;
    if (!c->blob) return 0;
    memcpy(c->blob, b, len);
    c->size = len;
    return 1;
}

int cvx_svc_store_checkpoint_get(cvx_svc_store *s, long long id, void **blob, size_t *size, int *step, int *steps,
                                 char *err, size_t n) {
    ckpt_row c = {0};
    int r = query_locked(s, err, n, "reading a checkpoint", FIRST_ROW, row_checkpoint, &c,
                         "SELECT step, steps, blob FROM checkpoints WHERE task = ?", "I", id);
    if (r != 1) {
        free(c.blob);
        return r < 0 ? -1 : 0;
    }
    *blob = c.blob;
    *size = c.size;
    *step = c.step;
    *steps = c.steps;
    return 1;
}

int cvx_svc_store_checkpoint_delete(cvx_svc_store *s, long long id, long long claim, char *err, size_t n) {
    int r = exec_locked(s, err, n, "removing a checkpoint",
                        "DELETE FROM checkpoints WHERE task = ?1 AND (?2 = 0 OR EXISTS (SELECT 1 FROM tasks WHERE id = ?1"
                        " AND claim = ?2))",
                        "II", id, claim);
    return r < 0 ? -1 : 0;
}

int cvx_svc_store_output_put(cvx_svc_store *s, long long id, long long claim, const char *out_key, const char *name,
                             const char *path, char *err, size_t n) {
    FILE *f = fopen(path, "rb");
    if (!f) {
        snprintf(err, n, "store: reading %s: %s", path, strerror(errno));
        return -1;
    }
    unsigned char *buf = malloc(CVX_SVC_OUTPUT_PART);
    if (!buf) {
        fclose(f);
        snprintf(err, n, "store: out of memory");
        return -1;
    }
    pthread_mutex_lock(&s->mu);
    int r = exec(s, err, n, "storing an output", "BEGIN IMMEDIATE", "");
    if (r >= 0) r = fence_tx(s, id, claim, 0, err, n);
    if (r == 1 && exec(s, err, n, "storing an output", "DELETE FROM outputs WHERE okey = ? AND name = ?", "tt", out_key,
                       name) < 0)
        r = -1;
    for (int part = 0; r == 1; part++) {
        size_t got = fread(buf, 1, CVX_SVC_OUTPUT_PART, f);
        if (got == 0 && ferror(f)) {
            snprintf(err, n, "store: reading %s: %s", path, strerror(errno));
            r = -1;
        }
        if (got == 0) break;
        if (exec(s, err, n, "storing an output", "INSERT INTO outputs(okey, name, part, data) VALUES (?,?,?,?)", "ttib",
                 out_key, name, part, (const void *)buf, got) < 0)
            r = -1;
        if (got < CVX_SVC_OUTPUT_PART) break;
    }
    if (r == 1 && exec(s, err, n, "storing an output", "COMMIT", "") < 0) r = -1;
    if (r != 1) raw(s, "ROLLBACK");
    pthread_mutex_unlock(&s->mu);
    free(buf);
    fclose(f);
    return r;
}

typedef struct {
    long long parts, bytes;
} output_sum;

static int row_output_sum(db_row *row, void *ud) {
    output_sum *o = ud;
    o->parts = col_i64(row, 0);
    o->bytes = col_i64(row, 1);
    return 1;
}

int cvx_svc_store_output_size(cvx_svc_store *s, const char *out_key, const char *name, long long *size, char *err,
                              size_t n) {
    output_sum o = {0, 0};
    int r = query_locked(s, err, n, "reading an output", FIRST_ROW, row_output_sum, &o,
                         "SELECT count(*), coalesce(sum(length(data)), 0) FROM outputs WHERE okey = ? AND name = ?", "tt",
                         out_key, name);
    if (r < 0) return -1;
    *size = o.bytes;
    return o.parts > 0;
}

int cvx_svc_store_output_part(cvx_svc_store *s, const char *out_key, const char *name, long long part, void **data,
                              size_t *len, char *err, size_t n) {
    *data = NULL;
    *len = 0;
    const char *sql = "SELECT data FROM outputs WHERE okey = $1 AND name = $2 AND part = $3";
    pthread_mutex_lock(&s->mu);
    int r = -1;
    if (s->pg) { /* the bytes in binary (text would be hex: twice the bytes and a decode) */
        if (!pg_alive(s, err, n)) {
            pthread_mutex_unlock(&s->mu);
            return -1;
        }
        char num[32];
        snprintf(num, sizeof num, "%lld", part);
        const char *values[3] = {out_key, name, num};
        PGresult *res = PQexecParams(s->pg, sql, 3, NULL, values, NULL, NULL, 1);
        if (PQresultStatus(res) == PGRES_TUPLES_OK) {
            r = PQntuples(res) > 0;
            if (r) {
                *len = (size_t)PQgetlength(res, 0, 0);
                *data = malloc(*len ? *len : 1);
                if (*data) memcpy(*data, PQgetvalue(res, 0, 0), *len);
                else r = -1;
            }
        }
        if (r < 0 && err && n) {
            const char *msg = PQresultErrorMessage(res);
            if (!*msg) msg = PQerrorMessage(s->pg);
            snprintf(err, n, "store: reading an output: %.*s", (int)strcspn(msg, "\n"), msg);
        }
        PQclear(res);
    } else {
        sqlite3_stmt *st = prep(s, "SELECT data FROM outputs WHERE okey = ?1 AND name = ?2 AND part = ?3", err, n);
        if (st) {
            bind_text(st, 1, out_key);
            bind_text(st, 2, name);
            sqlite3_bind_int64(st, 3, part);
            int rc = sqlite3_step(st);
            if (rc == SQLITE_ROW) {
                *len = (size_t)sqlite3_column_bytes(st, 0);
                *data = malloc(*len ? *len : 1);
                if (*data) {
                    if (*len) memcpy(*data, sqlite3_column_blob(st, 0), *len);
                    r = 1;
                }
            } else if (rc == SQLITE_DONE) r = 0;
            else dbfail(s, err, n, "reading an output");
            release(s, st);
        }
    }
    pthread_mutex_unlock(&s->mu);
    if (r < 0) {
        free(*data);
        *data = NULL;
        *len = 0;
    }
    return r;
}

int cvx_svc_store_output_remove(cvx_svc_store *s, const char *out_key, long long id, long long claim, char *err,
                                size_t n) {
    int r = exec_locked(s, err, n, "removing outputs",
                        "DELETE FROM outputs WHERE okey = ?1 AND (?3 = 0 OR EXISTS (SELECT 1 FROM tasks WHERE id = ?2 AND"
                        " claim = ?3))",
                        "tII", out_key, id, claim);
    return r < 0 ? -1 : 0;
}

int cvx_svc_store_output_deleted(cvx_svc_store *s, long long id, char *err, size_t n) {
    return exec_locked(s, err, n, "deleting outputs", "UPDATE tasks SET out_deleted = 1 WHERE id = ?", "I", id);
}

int cvx_svc_store_input_get(cvx_svc_store *s, long long id, void **data, size_t *size, char *err, size_t n) {
    ckpt_row c = {0};
    int r = query_locked(s, err, n, "reading a task's input", FIRST_ROW, row_input, &c,
                         "SELECT data FROM inputs WHERE task = ?", "I", id);
    if (r != 1) {
        free(c.blob);
        return r < 0 ? -1 : 0;
    }
    *data = c.blob;
    *size = c.size;
    return 1;
}

int cvx_svc_store_input_delete(cvx_svc_store *s, long long id, char *err, size_t n) {
    return exec_locked(s, err, n, "deleting a task's input", "DELETE FROM inputs WHERE task = ?", "I", id) < 0 ? -1 : 0;
}

int cvx_svc_store_inputs_purge(cvx_svc_store *s, char *err, size_t n) {
    return exec_locked(s, err, n, "purging inputs",
                       "DELETE FROM inputs WHERE task IN (SELECT id FROM tasks WHERE status IN ('" CVX_SVC_S_CANCEL
                       "','" CVX_SVC_S_POSTPROCESS_END "'))",
                       "");
}

int cvx_svc_store_outputs_before(cvx_svc_store *s, long long cutoff_s, int max, long long *ids, char *err,
                                 size_t n) {
    id_list l = {ids, 0};
    return query_locked(s, err, n, "listing old outputs", ALL_ROWS, row_id, &l,
                        "SELECT id FROM tasks WHERE out_name != '' AND out_deleted = 0 AND out_time < ? ORDER BY id"
                        " LIMIT ?",
                        "Ii", cutoff_s, max);
}

typedef struct {
    long long *ids, *projects, *due;
    int count;
} pending_list;

static int row_pending(db_row *row, void *ud) {
    pending_list *l = ud;
    l->ids[l->count] = col_i64(row, 0);
    l->projects[l->count] = col_i64(row, 1);
    l->due[l->count] = col_i64(row, 2);
    l->count++;
    return 1;
}

int cvx_svc_store_callbacks_pending(cvx_svc_store *s, int max, long long *ids, long long *projects, long long *due_ms,
                                    char *err, size_t n) {
    pending_list l = {ids, projects, due_ms, 0};
    return query_locked(s, err, n, "reading callbacks", ALL_ROWS, row_pending, &l,
                        "SELECT id, project, cb_next FROM tasks WHERE cb_state = 1 ORDER BY cb_next, id LIMIT ?", "i",
                        max);
}

int cvx_svc_store_callback_claim(cvx_svc_store *s, long long id, long long now_ms, long long until_ms, char *err,
                                 size_t n) {
    int r = exec_locked(s, err, n, "claiming a callback",
                        "UPDATE tasks SET cb_next = ?1 WHERE id = ?2 AND cb_state = 1 AND cb_next <= ?3", "III", until_ms,
                        id, now_ms);
    return r > 1 ? 1 : r;
}

int cvx_svc_store_callback_update(cvx_svc_store *s, long long id, int state, int tries, long long next_ms, char *err,
                                  size_t n) {
    return exec_locked(s, err, n, "updating a callback",
                       "UPDATE tasks SET cb_state = ?, cb_tries = ?, cb_next = ? WHERE id = ?", "iiII", state, tries,
                       next_ms, id);
}

/* ---- workers and the queue (/healthz) ---- */

const char *cvx_svc_store_backend(const cvx_svc_store *s) { return s->pg ? "postgresql" : "sqlite"; }

int cvx_svc_store_worker_beat(cvx_svc_store *s, const char *name, long long task, long long now_s, char *err,
                              size_t n) {
    pthread_mutex_lock(&s->mu);
    int r = exec(s, err, n, "recording a heartbeat",
                 "INSERT INTO workers(name, heartbeat, task) VALUES (?1, ?2, ?3)"
                 " ON CONFLICT(name) DO UPDATE SET heartbeat = ?2, task = ?3",
                 "tII", name, now_s, task);
    /* workers silent for a day are forgotten (a host that went away, a renamed worker) */
    if (r >= 0) r = exec(s, err, n, "forgetting workers", "DELETE FROM workers WHERE heartbeat < ?", "I", now_s - 86400);
    pthread_mutex_unlock(&s->mu);
    return r < 0 ? -1 : 0;
}

typedef struct {
    void (*fn)(const char *name, long long heartbeat, long long task, void *ud);
    void *ud;
} worker_visit;

static int row_worker(db_row *row, void *ud) {
    worker_visit *v = ud;
    v->fn(col_text(row, 0), col_i64(row, 1), col_i64(row, 2), v->ud);
    return 1;
}

int cvx_svc_store_workers(cvx_svc_store *s, void (*fn)(const char *name, long long heartbeat, long long task, void *ud),
                          void *ud, char *err, size_t n) {
    worker_visit v = {fn, ud};
    return query_locked(s, err, n, "listing workers", ALL_ROWS, row_worker, &v,
                        "SELECT name, heartbeat, task FROM workers ORDER BY name", "");
}

int cvx_svc_store_queue_depth(cvx_svc_store *s, long long *waiting, long long *running, char *err, size_t n) {
    pthread_mutex_lock(&s->mu);
    *waiting = count_rows(s, err, n, "SELECT count(*) FROM tasks WHERE status = '" CVX_SVC_S_QUEUE "'", "");
    *running = *waiting < 0 ? -1 : count_rows(s, err, n, "SELECT count(*) FROM tasks WHERE " RUNNING, "");
    pthread_mutex_unlock(&s->mu);
    return *waiting < 0 || *running < 0 ? -1 : 0;
}

/* ---- copying a store (cogvideox store copy) ---- */

typedef struct {
    cvx_svc_store *to;
    char *err;
    size_t n;
    long long rows;
    int failed;
} copy_ctx;

static int copy_project(db_row *row, void *ud) {
    copy_ctx *c = ud;
    cvx_svc_project p;
    read_project(row, &p);
    if (!c->failed &&
        exec(c->to, c->err, c->n, "copying a project",
             "INSERT INTO projects(id, name, apikey, mode, secret, created, revoked) VALUES (?,?,?,?,?,?,?)", "IttibIi",
             p.id, p.name, p.apikey, p.mode, (const void *)p.secret_enc, p.secret_enc_len, p.created, p.revoked) < 0)
        c->failed = 1;
    c->rows++;
    return 1;
}

static int copy_task(db_row *row, void *ud) {
    copy_ctx *c = ud;
    cvx_svc_task t;
    read_task(row, &t);
    if (!c->failed &&
        exec(c->to, c->err, c->n, "copying a task",
             "INSERT INTO tasks(" TASK_COLS ") VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?,?)",
             "IttIttttttIIIIIIIIIItttdittIIiiiItiIIt", t.id, t.uuid, t.token, t.project, t.status, t.params, t.gen, t.callbackurl,
             t.slugowner, t.slugproject, t.createtime, t.accepttime, t.preprocessstarttime, t.preprocessendtime,
             t.assigntime, t.starttime, t.endtime, t.postprocessstarttime, t.postprocessendtime, t.canceltime, t.pexit,
             t.debugoutput, t.debugerror, t.elapsed, t.attempts, t.out_name, t.out_key, t.out_size, t.out_time,
             t.out_deleted, t.cb_state, t.cb_tries, t.cb_next_ms, t.progress, t.progress_step, t.claim, t.lease_until_ms,
             t.worker) < 0)
        c->failed = 1;
    cvx_svc_task_clear(&t);
    c->rows++;
    return 1;
}

static int copy_input(db_row *row, void *ud) {
    copy_ctx *c = ud;
    size_t len;
    const void *b = col_blob(row, 1, &len);
    if (!c->failed && exec(c->to, c->err, c->n, "copying a task's input", "INSERT INTO inputs(task, data) VALUES (?,?)",
                           "Ib", col_i64(row, 0), b, len) < 0)
        c->failed = 1;
    return 1;
}

static int copy_nonce(db_row *row, void *ud) {
    copy_ctx *c = ud;
    if (!c->failed && exec(c->to, c->err, c->n, "copying a nonce", "INSERT INTO nonces(apikey, nonce, seen) VALUES (?,?,?)",
                           "ttI", col_text(row, 0), col_text(row, 1), col_i64(row, 2)) < 0)
        c->failed = 1;
    c->rows++;
    return 1;
}

int cvx_svc_store_copy(cvx_svc_store *from, cvx_svc_store *to, long long *projects, long long *tasks, long long *nonces,
                       char *err, size_t n) {
    *projects = *tasks = *nonces = 0;
    if (flush_nonces(from, 0, 0, err, n) < 0) return -1;
    pthread_mutex_lock(&to->mu);
    int r = -1;
    long long had_projects = count_rows(to, err, n, "SELECT count(*) FROM projects", "");
    long long had_tasks = had_projects < 0 ? -1 : count_rows(to, err, n, "SELECT count(*) FROM tasks", "");
    if (had_tasks < 0) goto out;
    if (had_projects || had_tasks) {
        snprintf(err, n, "the destination holds %lld projects and %lld tasks already: copy into an empty store",
                 had_projects, had_tasks);
        goto out;
    }
    if (raw(to, "BEGIN IMMEDIATE")) {
        dbfail(to, err, n, "beginning the copy");
        goto out;
    }
    copy_ctx c = {to, err, n, 0, 0};
    int ok = query_locked(from, err, n, "reading projects", ALL_ROWS, copy_project, &c,
                          "SELECT " PROJECT_COLS " FROM projects ORDER BY id", "") >= 0 && !c.failed;
    *projects = c.rows;
    c.rows = 0;
    ok = ok && query_locked(from, err, n, "reading tasks", ALL_ROWS, copy_task, &c,
                            "SELECT " TASK_COLS " FROM tasks ORDER BY id", "") >= 0 && !c.failed;
    *tasks = c.rows;
    c.rows = 0;
    /* the input files of the tasks not yet run (image-to-video) */
    ok = ok && query_locked(from, err, n, "reading inputs", ALL_ROWS, copy_input, &c, "SELECT task, data FROM inputs",
                            "") >= 0 && !c.failed;
    ok = ok && query_locked(from, err, n, "reading nonces", ALL_ROWS, copy_nonce, &c,
                            "SELECT apikey, nonce, seen FROM nonces", "") >= 0 && !c.failed;
    *nonces = c.rows;
    /* PostgreSQL's identity columns go on after the ids copied (SQLite's AUTOINCREMENT follows by itself) */
    if (ok && to->pg)
        ok = exec(to, err, n, "moving the id sequences",
                  "SELECT setval(pg_get_serial_sequence('projects', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM projects),"
                  " false), setval(pg_get_serial_sequence('tasks', 'id'), (SELECT coalesce(max(id), 0) + 1 FROM tasks),"
                  " false)",
                  "") >= 0;
    if (ok && raw(to, "COMMIT") == 0) r = 0;
    else {
        if (ok) dbfail(to, err, n, "committing the copy");
        raw(to, "ROLLBACK");
    }
out:
    pthread_mutex_unlock(&to->mu);
    return r;
}
