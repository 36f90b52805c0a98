/* The HTTP side of the task service on libmicrohttpd (internal thread pool): request bodies are collected up to
 * body_limit (413 beyond, decided from Content-Length before reading when it is sent), then parsed (body.h),
 * authenticated (auth.h) and handed to the route's handler (api.c). Also: GET /healthz, the output files under
 * /files/<key>/<name> (Range, Content-Length, content types; names are checked against a strict alphabet, so no
 * path can leave the outputs folder), the WebSocket upgrade at /v1/socket (ws.c). Started and stopped by service.c;
 * the clock, the log and the wake-ups are the core's (core.c). */
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <microhttpd.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "service/api.h"
#include "service/body.h"
#include "service/inputs.h"
#include "service/internal.h"
#include "service/web.h"

/* ---- responses ---- */

static enum MHD_Result send_json(struct MHD_Connection *conn, int status, json_t *body, int retry_after_s) {
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) text = strdup("{\"result\":false,\"errors\":[{\"code\":0,\"message\":\"Internal error.\"}]}");
    if (!text) return MHD_NO;
    struct MHD_Response *r = MHD_create_response_from_buffer(strlen(text), text, MHD_RESPMEM_MUST_FREE);
    if (!r) {
        free(text);
        return MHD_NO;
    }
    MHD_add_response_header(r, "Content-Type", "application/json; charset=utf-8");
    MHD_add_response_header(r, "Cache-Control", "no-store");
    if (retry_after_s > 0) {
        char b[16];
        snprintf(b, sizeof b, "%d", retry_after_s);
        MHD_add_response_header(r, "Retry-After", b);
    }
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

static enum MHD_Result send_error(struct MHD_Connection *conn, int status, int code, const char *msg) {
    json_t *b = json_pack("{s:b, s:[{s:i, s:s}]}", "result", 0, "errors", "code", code, "message", msg);
    return send_json(conn, status, b, 0);
}

static enum MHD_Result send_text(struct MHD_Connection *conn, int status, const char *type, const void *data,
                                 size_t len, const char *cache) {
    struct MHD_Response *r = MHD_create_response_from_buffer(len, (void *)data, MHD_RESPMEM_PERSISTENT);
    if (!r) return MHD_NO;
    MHD_add_response_header(r, "Content-Type", type);
    if (cache) MHD_add_response_header(r, "Cache-Control", cache);
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    /* the page holds credentials: no other site may frame it (clickjacking) */
    MHD_add_response_header(r, "Content-Security-Policy", "frame-ancestors 'none'");
    MHD_add_response_header(r, "X-Frame-Options", "DENY");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- output files ---- */

static const char *content_type_of(const char *name) {
    const char *dot = strrchr(name, '.');
    if (!dot) return "application/octet-stream";
    if (!strcasecmp(dot, ".mp4")) return "video/mp4";
    if (!strcasecmp(dot, ".png")) return "image/png";
    if (!strcasecmp(dot, ".gif")) return "image/gif";
    if (!strcasecmp(dot, ".webp")) return "image/webp";
    if (!strcasecmp(dot, ".json")) return "application/json";
    return "application/octet-stream";
}

/* One "bytes=" range against size: 1 = [*from, *to], 0 = no usable Range (serve the whole file), -1 = 416. */
static int parse_range(const char *h, uint64_t size, uint64_t *from, uint64_t *to) {
    if (!h) return 0;
    while (*h == ' ') h++;
    if (strncasecmp(h, "bytes=", 6)) return 0;
    h += 6;
    if (strchr(h, ',')) return 0; /* several ranges: a 200 with the whole file is a valid answer */
    while (*h == ' ') h++;
    char *end;
    if (*h == '-') { /* the last N bytes */
        errno = 0;
        unsigned long long n = strtoull(h + 1, &end, 10);
        if (errno || end == h + 1 || *end) return 0;
        if (n == 0 || size == 0) return -1;
        if (n > size) n = size;
        *from = size - n;
        *to = size - 1;
        return 1;
    }
    if (*h < '0' || *h > '9') return 0;
    errno = 0;
    unsigned long long a = strtoull(h, &end, 10);
    if (errno || *end != '-') return 0;
    const char *b = end + 1;
    unsigned long long z = size ? size - 1 : 0;
    if (*b) {
        if (*b < '0' || *b > '9') return 0;
        errno = 0;
        z = strtoull(b, &end, 10);
        if (errno || *end) return 0;
        if (z < a) return 0;
        if (z >= size) z = size - 1;
    }
    if (a >= size) return -1;
    *from = a;
    *to = z;
    return 1;
}

/* An output stored in the database (PostgreSQL), read part by part as the response is sent. A whole-file GET also
 * writes what it sends to a temporary file of the node's cache, renamed into it once every byte went out. */
typedef struct {
    cvx_svc *svc;
    char key[72], name[72];
    long long part; /* the part in buf, -1 none */
    uint64_t base;  /* the first byte sent (a Range) */
    uint64_t size;
    void *buf;
    size_t len;
    int cache_fd;                  /* -1: not caching */
    long long cached_part;         /* the last part written to it */
    uint64_t cached;               /* bytes written */
    char cache_tmp[1300], cache_path[1300];
} stored_reader;

static ssize_t read_stored(void *cls, uint64_t pos, char *out, size_t max) {
    stored_reader *r = cls;
    long long part = (long long)(pos / CVX_SVC_OUTPUT_PART);
    size_t off = (size_t)(pos % CVX_SVC_OUTPUT_PART);
    if (part != r->part) {
        free(r->buf);
        r->buf = NULL;
        r->part = -1;
        char err[256];
        if (cvx_svc_store_output_part(r->svc->store, r->key, r->name, part, &r->buf, &r->len, err, sizeof err) != 1) {
            cvx_svc_log(r->svc, CVX_LOG_WARN, "serving %s/%s: %s", r->key, r->name, err[0] ? err : "a part is missing");
            return MHD_CONTENT_READER_END_WITH_ERROR;
        }
        r->part = part;
        if (r->cache_fd >= 0) { /* the parts in order from the first, or no cache from this response */
            int ok = part == r->cached_part + 1;
            for (size_t off2 = 0; ok && off2 < r->len;) {
                ssize_t w = write(r->cache_fd, (char *)r->buf + off2, r->len - off2);
                if (w <= 0) ok = 0;
                else off2 += (size_t)w;
            }
            if (ok) {
                r->cached_part = part;
                r->cached += r->len;
            } else {
                close(r->cache_fd);
                r->cache_fd = -1;
                unlink(r->cache_tmp);
            }
        }
    }
    if (off >= r->len) return MHD_CONTENT_READER_END_WITH_ERROR;
    size_t n = r->len - off < max ? r->len - off : max;
    memcpy(out, (char *)r->buf + off, n);
    return (ssize_t)n;
}

static ssize_t read_stored_at(void *cls, uint64_t pos, char *out, size_t max) {
    return read_stored(cls, ((stored_reader *)cls)->base + pos, out, max);
}

static void free_stored(void *cls) {
    stored_reader *r = cls;
    if (r->cache_fd >= 0) {
        int whole = r->cached == r->size;
        if (close(r->cache_fd) || !whole || rename(r->cache_tmp, r->cache_path)) unlink(r->cache_tmp);
    }
    free(r->buf);
    free(r);
}

static enum MHD_Result serve_file(cvx_svc *svc, struct MHD_Connection *conn, const char *rest) {
    const char *slash = strchr(rest, '/');
    if (!slash || !cvx_svc_output_key_ok(rest, (size_t)(slash - rest)) || !cvx_svc_output_name_ok(slash + 1, strlen(slash + 1)))
        return send_error(conn, 404, 1, "File not found.");
    char path[1300];
    snprintf(path, sizeof path, "%s/%.*s/%s", svc->outputs_dir, (int)(slash - rest), rest, slash + 1);
    /* PostgreSQL: the stored output first (any API node serves any task's), then a file of the folder (outputs
     * moved from a single machine's store keep their files) */
    stored_reader *stored = NULL;
    uint64_t size = 0;
    int fd = -1;
    struct stat st;
    if (svc->blobs_in_store) {
        /* the database says whether the output exists and its size (a deletion through any node counts at once);
         * the node's cache (<outputs>/.cache/KEY/NAME) spares reading its rows when it holds that many bytes */
        char err[256], cache_dir[1200], cache_path[1300];
        long long bytes = 0;
        char key[72];
        snprintf(key, sizeof key, "%.*s", (int)(slash - rest), rest);
        snprintf(cache_dir, sizeof cache_dir, "%s/.cache/%s", svc->outputs_dir, key);
        snprintf(cache_path, sizeof cache_path, "%s/%s", cache_dir, slash + 1);
        int found = cvx_svc_store_output_size(svc->store, key, slash + 1, &bytes, err, sizeof err);
        if (found < 0) return send_error(conn, 503, 0, "The store is unavailable; try again.");
        if (!found) cvx_svc_remove_cached(svc, key); /* deleted through another node */
        if (found && (fd = open(cache_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW)) >= 0 &&
            (fstat(fd, &st) || !S_ISREG(st.st_mode) || (uint64_t)st.st_size != (uint64_t)bytes)) {
            close(fd);
            fd = -1;
        }
        if (fd >= 0) {
            size = (uint64_t)bytes;
            utimensat(AT_FDCWD, cache_path, NULL, 0); /* recently used: the sweep keeps it */
        } else if (found && (stored = calloc(1, sizeof *stored))) {
            stored->svc = svc;
            snprintf(stored->key, sizeof stored->key, "%s", key);
            snprintf(stored->name, sizeof stored->name, "%s", slash + 1);
            stored->part = -1;
            stored->cached_part = -1;
            stored->cache_fd = -1;
            stored->size = size = (uint64_t)bytes;
            const char *method = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range") ? NULL : "GET";
            if (method && (mkdir(cache_dir, 0755) == 0 || errno == EEXIST)) {
                snprintf(stored->cache_path, sizeof stored->cache_path, "%s", cache_path);
                snprintf(stored->cache_tmp, sizeof stored->cache_tmp, "%s/.%s.%ld.%llu", cache_dir, slash + 1,
                         (long)getpid(), (unsigned long long)(uintptr_t)stored);
                stored->cache_fd = open(stored->cache_tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
            }
        } else if (found) return MHD_NO;
    }
    if (!stored && fd < 0) {
        fd = open(path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
        if (fd < 0 || fstat(fd, &st) || !S_ISREG(st.st_mode)) {
            if (fd >= 0) close(fd);
            return send_error(conn, 404, 1, "File not found.");
        }
        size = (uint64_t)st.st_size;
    }
    uint64_t from = 0, to = size ? size - 1 : 0;
    int pr = parse_range(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Range"), size, &from, &to);
    struct MHD_Response *r;
    int status = 200;
    char cr[96];
    if (pr < 0) {
        if (fd >= 0) close(fd);
        if (stored) free_stored(stored);
        r = MHD_create_response_from_buffer(0, (void *)"", MHD_RESPMEM_PERSISTENT);
        if (!r) return MHD_NO;
        snprintf(cr, sizeof cr, "bytes */%" PRIu64, size);
        MHD_add_response_header(r, "Content-Range", cr);
        status = 416;
    } else {
        if (stored) { /* the reader's positions count from the range's first byte */
            r = MHD_create_response_from_callback(pr ? to - from + 1 : size, 64 * 1024, read_stored_at, stored,
                                                  free_stored);
            if (r) stored->base = pr ? from : 0;
            else {
                free_stored(stored);
                return MHD_NO;
            }
        } else {
            /* MHD owns fd from here and closes it with the response */
            r = MHD_create_response_from_fd_at_offset64(pr ? to - from + 1 : size, fd, pr ? from : 0);
            if (!r) {
                close(fd);
                return MHD_NO;
            }
        }
        if (pr) {
            snprintf(cr, sizeof cr, "bytes %" PRIu64 "-%" PRIu64 "/%" PRIu64, from, to, size);
            MHD_add_response_header(r, "Content-Range", cr);
            status = 206;
        }
        MHD_add_response_header(r, "Content-Type", content_type_of(slash + 1));
    }
    MHD_add_response_header(r, "Accept-Ranges", "bytes");
    MHD_add_response_header(r, "Cache-Control", "private, max-age=86400");
    MHD_add_response_header(r, "X-Content-Type-Options", "nosniff");
    enum MHD_Result ret = MHD_queue_response(conn, (unsigned)status, r);
    MHD_destroy_response(r);
    return ret;
}

/* ---- API requests ---- */

/* A handler's reply (its body is stolen); none: 500. */
static enum MHD_Result send_reply(struct MHD_Connection *conn, cvx_svc_reply rp) {
    if (!rp.body) return send_error(conn, 500, 0, "Internal error.");
    return send_json(conn, rp.status ? rp.status : 200, rp.body, rp.retry_after_s);
}

typedef struct {
    const cvx_svc_route *route;
    cvx_svc_project project; /* the caller, authenticated from the headers before any body byte is read */
    char *body;
    size_t len, cap;
    int too_large;
    int raised; /* the connection has the body timeout: on_completed gives it the head timeout again */
    /* A handler run off the HTTP thread (run_offloaded): its request, and its reply once `offload` is
     * OFFLOAD_DONE; the connection is suspended meanwhile and answered from on_request when resumed. `offloaded`:
     * counted in svc->offloads until on_completed (the reply has gone out, or the connection is gone). */
    int offload, offloaded;
    cvx_svc *svc;
    struct MHD_Connection *conn;
    json_t *fields;
    char base[600];
    char *rest;
    cvx_svc_reply reply;
} request_ctx;

enum { OFFLOAD_NONE, OFFLOAD_RUNNING, OFFLOAD_DONE };

/* ---- /healthz ---- */

static void add_worker(const char *name, long long heartbeat, long long task, void *ud) {
    json_t *o = json_pack("{s:s, s:I, s:I, s:I}", "name", name, "heartbeat", (json_int_t)heartbeat, "seconds_ago",
                          (json_int_t)(cvx_svc_now_s() - heartbeat), "task", (json_int_t)task);
    if (o) json_array_append_new(ud, o);
}

/* The store's part of /healthz, read at most once a second (a load balancer may ask often). */
static json_t *health_of_store(cvx_svc *svc) {
    long long now = cvx_svc_now_ms();
    pthread_mutex_lock(&svc->health_mu);
    if (!svc->health || now - svc->health_ms >= 1000 || now < svc->health_ms) {
        char err[256];
        long long waiting = 0, running = 0;
        json_t *workers = json_array();
        json_t *h = NULL;
        if (cvx_svc_store_queue_depth(svc->store, &waiting, &running, err, sizeof err) == 0 &&
            cvx_svc_store_workers(svc->store, add_worker, workers, err, sizeof err) >= 0)
            h = json_pack("{s:s, s:{s:I, s:I}, s:O}", "backend", cvx_svc_store_backend(svc->store), "queue", "waiting",
                          (json_int_t)waiting, "running", (json_int_t)running, "workers", workers);
        else h = json_pack("{s:s, s:s}", "backend", cvx_svc_store_backend(svc->store), "error", err);
        json_decref(workers);
        if (h) {
            json_decref(svc->health);
            svc->health = h;
            svc->health_ms = now;
        }
    }
    json_t *copy = svc->health ? json_deep_copy(svc->health) : NULL;
    pthread_mutex_unlock(&svc->health_mu);
    return copy;
}

/* GET /healthz: 200 {"status":"ok"} while the service takes tasks and its store answers, else 503 ("starting",
 * "stopping" or "store unreachable"); with the version, this node's role, the store's backend, the queue's depth
 * and the workers that recorded a heartbeat in the store (docs/API.md). */
static enum MHD_Result send_health(cvx_svc *svc, struct MHD_Connection *conn) {
    int ready = atomic_load(&svc->ready), stopping = atomic_load(&svc->stopping);
    json_t *store = health_of_store(svc);
    int store_ok = store && !json_object_get(store, "error");
    const char *status = stopping ? "stopping" : !ready ? "starting" : !store_ok ? "store unreachable" : "ok";
    json_t *b = json_pack("{s:s, s:s, s:s, s:o}", "status", status, "version", cvx_version(), "role",
                          svc->cfg.no_worker ? "api" : "api+worker", "model", cvx_svc_model_json(&svc->cfg.model));
    if (b && store) json_object_update(b, store);
    json_decref(store);
    return send_json(conn, !strcmp(status, "ok") ? 200 : 503, b, 0);
}

static const cvx_svc_route *find_route(const char *url, const char **rest) {
    for (int i = 0; i < cvx_svc_route_count; i++) {
        const cvx_svc_route *r = &cvx_svc_routes[i];
        size_t pl = strlen(r->path);
        if (r->flags & CVX_SVC_ROUTE_PREFIX) {
            if (!strncasecmp(url, r->path, pl) && url[pl]) {
                *rest = url + pl;
                return r;
            }
        } else if (!strcasecmp(url, r->path) || (!strncasecmp(url, r->path, pl) && !strcmp(url + pl, "/"))) {
            *rest = "";
            return r;
        }
    }
    return NULL;
}

/* The base of outputs[].url for this request: --public-url, else http://<Host>. */
static void request_base(cvx_svc *svc, struct MHD_Connection *conn, char *out, size_t size) {
    if (svc->public_url) {
        snprintf(out, size, "%s", svc->public_url);
        return;
    }
    const char *host = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Host");
    int ok = host && *host && strlen(host) < 256;
    for (const char *c = host; ok && *c; c++)
        ok = (*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') || strchr(".-:[]_", *c);
    if (ok) snprintf(out, size, "http://%s", host);
    else cvx_svc_default_base(svc, out, size);
}

/* Authenticates a request of an API route from its headers: 1 ok (project filled), 0 an error was queued. */
static int authenticate(cvx_svc *svc, struct MHD_Connection *conn, const cvx_svc_route *route, cvx_svc_project *project,
                        enum MHD_Result *ret) {
    memset(project, 0, sizeof *project);
    if (!(route->flags & CVX_SVC_ROUTE_AUTH)) return 1;
    cvx_svc_auth_result ar;
    cvx_svc_authenticate(svc->store, svc->server_key, MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-api-key"),
                         MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-nonce"),
                         MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "x-signature"),
                         (route->flags & CVX_SVC_ROUTE_STATE) != 0, cvx_svc_now_s(), svc->cfg.nonce_window_s, project,
                         &ar);
    if (ar.ok) return 1;
    cvx_svc_log(svc, CVX_LOG_DEBUG, "%s: %d %s", route->path, ar.http_status, ar.message);
    /* a store that cannot be reached (503): the client may try again in a few seconds */
    *ret = send_json(conn, ar.http_status,
                     json_pack("{s:b, s:[{s:i, s:s}]}", "result", 0, "errors", "code", 0, "message", ar.message),
                     ar.http_status == 503 ? 5 : 0);
    return 0;
}

/* Run of a model that takes an image: its body may hold a file part (inputImage) of up to CVX_SVC_INPUT_MAX bytes. */
static int takes_file(const cvx_svc *svc, const cvx_svc_route *route) {
    return (route->flags & CVX_SVC_ROUTE_PREFIX) && cvx_svc_takes_image(svc);
}

static size_t body_limit_of(const cvx_svc *svc, const cvx_svc_route *route) {
    return svc->cfg.body_limit + (takes_file(svc, route) ? CVX_SVC_INPUT_MAX + 65536 : 0);
}

/* A Run whose inputImage is a URL: its handler fetches it (up to CVX_SVC_INPUT_TIMEOUT_S). */
static int fetches_url(const cvx_svc *svc, const cvx_svc_route *route, json_t *fields, int n_files) {
    return takes_file(svc, route) && n_files == 0 && json_is_string(json_object_get(fields, "inputImage"));
}

/* Handlers off the HTTP threads at once; past it a handler runs on its HTTP thread (the fetch slots are taken by
 * then, so it answers 429 at once). */
#define OFFLOADS_MAX (2 * CVX_SVC_FETCH_SLOTS)

static void *offload_main(void *arg) {
    request_ctx *rc = arg;
    cvx_svc *svc = rc->svc;
    cvx_svc_request rq = {.svc = svc, .project = &rc->project, .fields = rc->fields, .base_url = rc->base,
                          .path_rest = rc->rest};
    cvx_svc_reply rp = {0};
    rc->route->handler(&rq, &rp);
    json_decref(rc->fields);
    rc->fields = NULL;
    rc->reply = rp;
    rc->offload = OFFLOAD_DONE; /* read by on_request after the resume below (MHD orders the two) */
    MHD_resume_connection(rc->conn); /* rc may be gone from here on (on_completed) */
    return NULL;
}

/* The end of an offloaded request: its reply has gone out (or its connection closed). */
static void offload_ended(cvx_svc *svc) {
    pthread_mutex_lock(&svc->mu);
    if (--svc->offloads == 0) pthread_cond_broadcast(&svc->offloads_done);
    pthread_mutex_unlock(&svc->mu);
}

/* Runs the handler of rc's request on a thread of its own with the connection suspended: 1, or 0 when it cannot
 * (the caller runs it). Takes fields. With MHD's epoll thread pool a connection belongs to the HTTP thread that
 * accepted it, and one thread may accept several at once: a handler that waits on that thread would make them wait. */
static int run_offloaded(cvx_svc *svc, struct MHD_Connection *conn, request_ctx *rc, json_t *fields, const char *base,
                         const char *rest) {
    pthread_mutex_lock(&svc->mu);
    int room = svc->offloads < OFFLOADS_MAX && !atomic_load(&svc->stopping);
    if (room) svc->offloads++;
    pthread_mutex_unlock(&svc->mu);
    if (!room) return 0;
    rc->svc = svc, rc->conn = conn, rc->fields = fields, rc->rest = strdup(rest);
    snprintf(rc->base, sizeof rc->base, "%s", base);
    rc->offload = OFFLOAD_RUNNING;
    pthread_attr_t attr;
    pthread_t t;
    int started = rc->rest && !pthread_attr_init(&attr);
    if (started) {
        pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
        MHD_suspend_connection(conn);
        rc->offloaded = 1;
        started = !pthread_create(&t, &attr, offload_main, rc);
        if (!started) rc->offloaded = 0, MHD_resume_connection(conn);
        pthread_attr_destroy(&attr);
    }
    if (started) return 1;
    rc->offload = OFFLOAD_NONE, rc->fields = NULL;
    free(rc->rest);
    rc->rest = NULL;
    offload_ended(svc);
    return 0;
}

static enum MHD_Result run_api(cvx_svc *svc, struct MHD_Connection *conn, request_ctx *rc, const char *rest) {
    const cvx_svc_route *route = rc->route;
    if (rc->too_large) return send_error(conn, 413, 0, "Request body is too large.");
    cvx_svc_project project = rc->project;
    json_t *fields = NULL;
    char err[256];
    /* Run of an image-to-video model takes one file part (inputImage); every other call, none */
    cvx_svc_body_file files[1];
    int n_files = 0, max_files = takes_file(svc, route) ? 1 : 0;
    int pr = cvx_svc_body_parse_files(MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Type"),
                                      rc->body ? rc->body : "", rc->len, &fields, files, max_files, &n_files, err,
                                      sizeof err);
    if (pr) {
        char msg[400];
        snprintf(msg, sizeof msg, "Request parameters are invalid. %s", err);
        return send_error(conn, pr == CVX_SVC_BODY_NUL ? 400 : 200, 0, msg); /* a NUL byte: 400 */
    }
    /* the room above body_limit is the file's alone: the other fields keep the limit */
    if (n_files && rc->len - files[0].size > svc->cfg.body_limit) {
        json_decref(fields);
        return send_error(conn, 413, 0, "Request body is too large.");
    }
    char base[600];
    request_base(svc, conn, base, sizeof base);
    if (fetches_url(svc, route, fields, n_files) && run_offloaded(svc, conn, rc, fields, base, rest)) return MHD_YES;
    cvx_svc_request rq = {.svc = svc, .project = &project, .fields = fields, .base_url = base, .path_rest = rest,
                          .files = files, .n_files = n_files};
    cvx_svc_reply rp = {0};
    route->handler(&rq, &rp);
    json_decref(fields);
    return send_reply(conn, rp);
}

/* The idle timeout of a connection that has sent its request head (a body may take a while, a response too). */
#define BODY_TIMEOUT_S 60

static void set_timeout(struct MHD_Connection *conn, int seconds) {
    MHD_set_connection_option(conn, MHD_CONNECTION_OPTION_TIMEOUT, (unsigned)seconds);
}

static int head_timeout(const cvx_svc *svc) {
    return svc->cfg.header_timeout_s > 0 ? svc->cfg.header_timeout_s : BODY_TIMEOUT_S;
}

/* *con_cls of a GET that was answered at once: on_completed gives its connection the head timeout again. */
static char answered_get;
/* *con_cls of a file GET, whose connection got the body timeout. */
static char answered_file;
/* Bodies up to this size keep the head timeout. */
#define SMALL_BODY 65536
/* *con_cls of a request whose URL holds an escaped NUL (%00), set by on_uri before the URL is unescaped (the
 * unescaped URL would end at the NUL: /files/K/0.mp4%00.txt would be read as /files/K/0.mp4). */
static char nul_url;

static void *on_uri(void *cls, const char *uri, struct MHD_Connection *conn) {
    (void)cls;
    (void)conn;
    return uri && strstr(uri, "%00") ? &nul_url : NULL;
}

static enum MHD_Result on_request(void *cls, struct MHD_Connection *conn, const char *url, const char *method,
                                  const char *version, const char *upload_data, size_t *upload_data_size,
                                  void **con_cls) {
    cvx_svc *svc = cls;
    request_ctx *rc = *con_cls;
    if ((void *)rc == (void *)&answered_get || (void *)rc == (void *)&answered_file) return MHD_NO; /* a GET with a body */
    if ((void *)rc == (void *)&nul_url) {
        *con_cls = &answered_get;
        return send_error(conn, 400, 0, "Error parsing url: it holds a NUL byte (%00).");
    }
    if (!rc) {
        int is_get = !strcmp(method, "GET") || !strcmp(method, "HEAD");
        /* the head is complete: a WebSocket session keeps its own deadlines, other requests get the idle
         * timeout of a body or a response (the daemon's default, the head timeout, applies until here) */
        if (!strcmp(method, "GET") && !strcmp(url, "/v1/socket")) {
            set_timeout(conn, 0);
            return cvx_svc_ws_handle(svc, conn) ? MHD_YES : MHD_NO;
        }
        if (is_get) *con_cls = &answered_get;
        if (is_get && !strcmp(url, "/healthz")) return send_health(svc, conn);
        if (is_get && !strncmp(url, "/files/", 7)) { /* a video may take a while to go out */
            set_timeout(conn, BODY_TIMEOUT_S);
            *con_cls = &answered_file;
            return serve_file(svc, conn, url + 7);
        }
        if (is_get) {
            const cvx_svc_web_file *f = cvx_svc_web_find(url);
            if (f) return send_text(conn, 200, f->content_type, f->data, f->size, "no-cache");
        }
        const char *rest = NULL;
        const cvx_svc_route *route = strcmp(method, "POST") ? NULL : find_route(url, &rest);
        if (!route) {
            if (!is_get) *con_cls = &answered_get;
            return send_error(conn, 404, 0, "Error parsing url.");
        }
        const char *cl = MHD_lookup_connection_value(conn, MHD_HEADER_KIND, "Content-Length");
        if (cl && strtoull(cl, NULL, 10) > body_limit_of(svc, route))
            return send_error(conn, 413, 0, "Request body is too large.");
        /* the key and signature are checked from the headers: an unauthenticated body is never read */
        cvx_svc_project project;
        enum MHD_Result ret = MHD_NO;
        if (!authenticate(svc, conn, route, &project, &ret)) {
            *con_cls = &answered_get; /* the connection closes: its body was not read */
            return ret;
        }
        rc = calloc(1, sizeof *rc);
        if (!rc) return MHD_NO;
        rc->route = route;
        rc->project = project;
        /* a body larger than a few packets (or of unknown length) gets the idle timeout of a body; a small one
         * arrives with its head and keeps the head timeout (no change, no cost) */
        if (!cl || strtoull(cl, NULL, 10) > SMALL_BODY) {
            set_timeout(conn, BODY_TIMEOUT_S);
            rc->raised = 1;
        }
        *con_cls = rc;
        return MHD_YES;
    }
    if (rc->offload == OFFLOAD_DONE) { /* resumed: the handler's reply */
        cvx_svc_reply rp = rc->reply;
        rc->reply.body = NULL;
        rc->offload = OFFLOAD_NONE;
        return send_reply(conn, rp);
    }
    if (rc->offload == OFFLOAD_RUNNING) return MHD_YES;
    if (*upload_data_size) {
        size_t n = *upload_data_size;
        *upload_data_size = 0;
        if (rc->too_large || rc->len + n > body_limit_of(svc, rc->route)) {
            rc->too_large = 1; /* keep reading and dropping: the answer goes out when the body is over */
            free(rc->body);
            rc->body = NULL;
            rc->len = rc->cap = 0;
            return MHD_YES;
        }
        if (rc->len + n + 1 > rc->cap) {
            size_t cap = rc->cap ? rc->cap * 2 : 4096;
            while (cap < rc->len + n + 1) cap *= 2;
            char *b = realloc(rc->body, cap);
            if (!b) return MHD_NO;
            rc->body = b;
            rc->cap = cap;
        }
        memcpy(rc->body + rc->len, upload_data, n);
        rc->len += n;
        rc->body[rc->len] = 0;
        return MHD_YES;
    }
    const char *rest = NULL;
    find_route(url, &rest);
    return run_api(svc, conn, rc, rest ? rest : "");
}

static void on_completed(void *cls, struct MHD_Connection *conn, void **con_cls, enum MHD_RequestTerminationCode toe) {
    cvx_svc *svc = cls;
    request_ctx *rc = *con_cls;
    if (!rc || (void *)rc == (void *)&nul_url) return; /* a WebSocket upgrade (or a request without an answer) */
    *con_cls = NULL;
    /* a kept-alive connection waits for its next request head with the head timeout */
    int raised = (void *)rc == (void *)&answered_file ||
                 ((void *)rc != (void *)&answered_get && rc->raised);
    if (raised && toe == MHD_REQUEST_TERMINATED_COMPLETED_OK) set_timeout(conn, head_timeout(svc));
    if ((void *)rc == (void *)&answered_get || (void *)rc == (void *)&answered_file) return;
    if (rc->offloaded) offload_ended(svc);
    json_decref(rc->reply.body);
    free(rc->rest);
    free(rc->body);
    free(rc);
    *con_cls = NULL;
}

static void mhd_log(void *cls, const char *fmt, va_list ap) {
    cvx_svc *svc = cls;
    char msg[512];
    vsnprintf(msg, sizeof msg, fmt, ap);
    size_t l = strlen(msg);
    while (l && msg[l - 1] == '\n') msg[--l] = 0;
    cvx_svc_log(svc, CVX_LOG_DEBUG, "http: %s", msg);
}


/* ---- start / stop ---- */

int cvx_svc_http_start(cvx_svc *svc, char *err, size_t n) {
    struct sockaddr_in addr;
    memset(&addr, 0, sizeof addr);
    addr.sin_family = AF_INET;
    addr.sin_port = htons((uint16_t)svc->cfg.port);
    if (inet_pton(AF_INET, svc->listen_host, &addr.sin_addr) != 1) {
        snprintf(err, n, "listen address %s: not an IPv4 address", svc->listen_host);
        return -1;
    }
    svc->mhd = MHD_start_daemon(MHD_USE_INTERNAL_POLLING_THREAD | MHD_USE_EPOLL | MHD_ALLOW_UPGRADE |
                                    MHD_ALLOW_SUSPEND_RESUME | MHD_USE_ITC | MHD_USE_ERROR_LOG,
                                0, NULL, NULL, on_request, svc, MHD_OPTION_SOCK_ADDR, (struct sockaddr *)&addr,
                                MHD_OPTION_THREAD_POOL_SIZE, (unsigned)(svc->cfg.http_threads > 0 ? svc->cfg.http_threads : 1),
                                MHD_OPTION_CONNECTION_TIMEOUT, (unsigned)head_timeout(svc),
                                MHD_OPTION_CONNECTION_LIMIT, (unsigned)(svc->cfg.max_connections > 0 ? svc->cfg.max_connections : 1000),
                                MHD_OPTION_PER_IP_CONNECTION_LIMIT, (unsigned)(svc->cfg.max_connections_per_ip > 0 ? svc->cfg.max_connections_per_ip : 0),
                                MHD_OPTION_NOTIFY_COMPLETED, on_completed, svc, MHD_OPTION_URI_LOG_CALLBACK, on_uri, svc, MHD_OPTION_EXTERNAL_LOGGER, mhd_log, svc,
                                MHD_OPTION_END);
    if (!svc->mhd) {
        snprintf(err, n, "cannot listen on %s:%d (%s)", svc->listen_host, svc->cfg.port, strerror(errno));
        return -1;
    }
    const union MHD_DaemonInfo *info = MHD_get_daemon_info(svc->mhd, MHD_DAEMON_INFO_BIND_PORT);
    svc->port = info ? info->port : svc->cfg.port;
    return 0;
}

int cvx_svc_http_stop(cvx_svc *svc) {
    /* WebSocket sessions watch `stopping` and close within a poll interval */
    pthread_mutex_lock(&svc->mu);
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += 10;
    while (svc->websockets > 0)
        if (pthread_cond_timedwait(&svc->websockets_done, &svc->mu, &ts)) break;
    /* offloaded requests end soon (their fetches give up when the service stops): their replies go out before the
     * daemon goes (it would close their connections unanswered) */
    clock_gettime(CLOCK_REALTIME, &ts);
    ts.tv_sec += CVX_SVC_INPUT_TIMEOUT_S + 5;
    while (svc->offloads > 0)
        if (pthread_cond_timedwait(&svc->offloads_done, &svc->mu, &ts)) break;
    int left = svc->websockets + svc->offloads;
    pthread_mutex_unlock(&svc->mu);
    if (svc->mhd) {
        if (left) cvx_svc_log(svc, CVX_LOG_WARN, "%d WebSocket sessions or API handlers did not end", left);
        else MHD_stop_daemon(svc->mhd); /* with sessions still open the daemon is left to the process exit */
        if (!left) svc->mhd = NULL;
    }
    return left;
}
