/* src/io/hub.h end to end against a loopback hub: an HTTP/1.1 server on 127.0.0.1 (plain sockets, one thread
 * per server) serves a make-model tiny folder in the Hugging Face hub's layout — the model info API with
 * blob ids and LFS sha256s, /resolve/ URLs, LFS files through a redirect to a "CDN" (a second server on
 * another port, so another origin) — with injectable faults: a connection dropped half-way, Range ignored,
 * corrupted bytes, 503s, a required token, a hostile listing. Also drives the cogvideox binary
 * (download subcommand) when CVX_BUILD_DIR has one. Every loop is bounded in count and time. */
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <netinet/in.h>
#include <openssl/evp.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/hub.h"
#include "io/model.h"
#include "io/model_maker.h"
#include "testlib.h"

#define REPO "test-org/tiny-cogvideox"
#define COMMIT "0123456789abcdef0123456789abcdef01234567"
#define MAX_FILES 64
#define MAX_LOG 1024

/* ---- the served repository ------------------------------------------------------------------------------- */
typedef struct {
    char path[512];
    unsigned char *data;
    size_t size;
    int lfs;
    char sha256[65];
    char blob_id[41];
} repo_file;

typedef struct {
    repo_file f[MAX_FILES];
    int n;
} repo;

static void digest_hex(const EVP_MD *md, const void *pre, size_t pre_n, const void *d, size_t n, char *out) {
    unsigned char h[EVP_MAX_MD_SIZE];
    unsigned hn = 0;
    EVP_MD_CTX *c = EVP_MD_CTX_new();
    EVP_DigestInit_ex(c, md, NULL);
    if (pre_n) EVP_DigestUpdate(c, pre, pre_n);
    EVP_DigestUpdate(c, d, n);
    EVP_DigestFinal_ex(c, h, &hn);
    EVP_MD_CTX_free(c);
    for (unsigned i = 0; i < hn; i++) sprintf(out + 2 * i, "%02x", h[i]);
}

static void git_blob_id(const void *d, size_t n, char *out) {
    char pre[48];
    int k = snprintf(pre, sizeof pre, "blob %zu", n);
    digest_hex(EVP_sha1(), pre, (size_t)k + 1, d, n, out);
}

static unsigned char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long len = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *b = malloc(len > 0 ? (size_t)len : 1);
    if (b && len > 0 && fread(b, 1, (size_t)len, f) != (size_t)len) {
        free(b);
        b = NULL;
    }
    fclose(f);
    *n = (size_t)(len > 0 ? len : 0);
    return b;
}

static void write_all(const char *path, const char *text) {
    FILE *f = fopen(path, "wb");
    if (f) {
        fputs(text, f);
        fclose(f);
    }
}

static void repo_add(repo *r, const char *root, const char *rel) {
    if (r->n >= MAX_FILES) return;
    repo_file *f = &r->f[r->n];
    char p[1024];
    snprintf(p, sizeof p, "%s/%s", root, rel);
    f->data = read_all(p, &f->size);
    if (!f->data) return;
    snprintf(f->path, sizeof f->path, "%s", rel);
    /* What the hub's default .gitattributes sends to LFS. */
    size_t n = strlen(rel);
    f->lfs = (n > 12 && !strcmp(rel + n - 12, ".safetensors")) || (n > 6 && !strcmp(rel + n - 6, ".model"));
    digest_hex(EVP_sha256(), NULL, 0, f->data, f->size, f->sha256);
    if (f->lfs) {
        char ptr[256];
        snprintf(ptr, sizeof ptr, "version https://git-lfs.github.com/spec/v1\noid sha256:%s\nsize %zu\n", f->sha256,
                 f->size);
        git_blob_id(ptr, strlen(ptr), f->blob_id);
    } else {
        git_blob_id(f->data, f->size, f->blob_id);
    }
    r->n++;
}

static void repo_scan(repo *r, const char *root, const char *sub) {
    char p[1024];
    snprintf(p, sizeof p, "%s%s%s", root, *sub ? "/" : "", sub);
    DIR *d = opendir(p);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        char rel[512], full[1024];
        snprintf(rel, sizeof rel, "%s%s%s", sub, *sub ? "/" : "", e->d_name);
        snprintf(full, sizeof full, "%s/%s", root, rel);
        struct stat st;
        if (stat(full, &st) != 0) continue;
        if (S_ISDIR(st.st_mode))
            repo_scan(r, root, rel);
        else
            repo_add(r, root, rel);
    }
    closedir(d);
}

static const repo_file *repo_find(const repo *r, const char *path) {
    for (int i = 0; i < r->n; i++)
        if (!strcmp(r->f[i].path, path)) return &r->f[i];
    return NULL;
}

static const repo_file *repo_find_sha(const repo *r, const char *sha) {
    for (int i = 0; i < r->n; i++)
        if (r->f[i].lfs && !strcmp(r->f[i].sha256, sha)) return &r->f[i];
    return NULL;
}

/* ---- the server ------------------------------------------------------------------------------------------ */
typedef struct {
    char path[512]; /* the repo path served ("" for API calls) */
    char target[512];
    char auth[160];
    long long range_from; /* -1: no Range */
    int status;
    size_t body_sent;
} req_log;

typedef struct srv srv;
struct srv {
    int fd, port;
    pthread_t th;
    volatile int stop;
    int is_cdn;
    const repo *repo;
    srv *cdn; /* LFS redirects go there (lfs_redirect 2) */
    /* behaviour */
    char token[64];      /* required ("" none) */
    int lfs_redirect;    /* 0 serve directly, 1 relative redirect (same origin), 2 absolute to the CDN */
    char drop_path[256]; /* close the connection after drop_at body bytes of this file, drops_left times */
    size_t drop_at;
    int drops_left;
    int ignore_range;
    char corrupt_path[256];
    int fail503_left; /* answer 503 this many times to file requests */
    json_t *extra_sibling; /* appended to the listing (hostile listings) */
    char short_path[256];  /* listed 10 bytes shorter than it is */
    char stall_path[256];  /* send half of this file, then wait (at most 10 s) for stall_release */
    volatile int stalling, stall_release;
    volatile int handled; /* requests answered and logged */
    pthread_mutex_t mu;
    req_log log[MAX_LOG];
    int n_log;
};

static void srv_reset(srv *s) {
    pthread_mutex_lock(&s->mu);
    s->n_log = 0;
    s->token[0] = s->drop_path[0] = s->corrupt_path[0] = s->short_path[0] = s->stall_path[0] = 0;
    s->stalling = s->stall_release = 0;
    s->lfs_redirect = 0;
    s->drops_left = s->ignore_range = s->fail503_left = 0;
    if (s->extra_sibling) json_decref(s->extra_sibling);
    s->extra_sibling = NULL;
    pthread_mutex_unlock(&s->mu);
}

static void send_all(int fd, const void *d, size_t n) {
    const char *p = d;
    while (n) {
        ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return;
        p += w, n -= (size_t)w;
    }
}

static void reply(int fd, int status, const char *reason, const char *extra_headers, const void *body, size_t n) {
    char h[2048];
    int k = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\n%s\r\n", status, reason, n,
                     extra_headers ? extra_headers : "");
    send_all(fd, h, (size_t)k);
    if (n) send_all(fd, body, n);
}

static void url_decode(char *s) {
    char *o = s;
    for (char *p = s; *p; p++) {
        if (*p == '%' && p[1] && p[2]) {
            char hx[3] = {p[1], p[2], 0};
            *o++ = (char)strtol(hx, NULL, 16);
            p += 2;
        } else {
            *o++ = *p;
        }
    }
    *o = 0;
}

static json_t *listing_json(srv *s) {
    json_t *sib = json_array();
    for (int i = 0; i < s->repo->n; i++) {
        const repo_file *f = &s->repo->f[i];
        json_int_t size = (json_int_t)f->size - (strcmp(s->short_path, f->path) ? 0 : 10);
        json_t *e = json_pack("{s:s, s:I, s:s}", "rfilename", f->path, "size", size, "blobId", f->blob_id);
        if (f->lfs)
            json_object_set_new(e, "lfs", json_pack("{s:s, s:I, s:i}", "sha256", f->sha256, "size", size,
                                                    "pointerSize", 134));
        json_array_append_new(sib, e);
    }
    if (s->extra_sibling) json_array_append(sib, s->extra_sibling);
    return json_pack("{s:s, s:s, s:s, s:b, s:o}", "_id", "0000", "id", REPO, "sha", COMMIT, "private", 0,
                     "siblings", sib);
}

static void serve_file(srv *s, int fd, const repo_file *f, long long range_from, req_log *lg) {
    int dropping = 0, corrupt;
    size_t drop_at = 0;
    pthread_mutex_lock(&s->mu);
    if (!strcmp(s->drop_path, f->path) && s->drops_left > 0) {
        s->drops_left--;
        dropping = 1;
        drop_at = s->drop_at;
    }
    corrupt = !strcmp(s->corrupt_path, f->path);
    int stall = !strcmp(s->stall_path, f->path);
    int ignore = s->ignore_range;
    pthread_mutex_unlock(&s->mu);

    size_t start = 0;
    char h[1024];
    int status = 200;
    if (range_from >= 0 && !ignore) {
        if ((size_t)range_from >= f->size) {
            snprintf(h, sizeof h, "Content-Range: bytes */%zu\r\n", f->size);
            reply(fd, 416, "Range Not Satisfiable", h, NULL, 0);
            lg->status = 416;
            return;
        }
        start = (size_t)range_from;
        status = 206;
    }
    size_t n = f->size - start;
    int k = snprintf(h, sizeof h,
                     "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: close\r\nAccept-Ranges: bytes\r\n"
                     "ETag: \"%s\"\r\nX-Repo-Commit: %s\r\n",
                     status, status == 206 ? "Partial Content" : "OK", n, f->lfs ? f->sha256 : f->blob_id, COMMIT);
    if (status == 206) k += snprintf(h + k, sizeof h - (size_t)k, "Content-Range: bytes %zu-%zu/%zu\r\n", start,
                                     f->size - 1, f->size);
    k += snprintf(h + k, sizeof h - (size_t)k, "\r\n");
    send_all(fd, h, (size_t)k);
    unsigned char *body = malloc(n ? n : 1);
    memcpy(body, f->data + start, n);
    if (corrupt && f->size / 2 >= start) body[f->size / 2 - start] ^= 0x5a;
    size_t send_n = n;
    if (dropping && start + n > drop_at) send_n = drop_at > start ? drop_at - start : 0;
    if (stall) send_n = n / 2;
    send_all(fd, body, send_n);
    if (stall) {
        s->stalling = 1;
        for (int i = 0; i < 1000 && !s->stall_release && !s->stop; i++) {
            struct timespec ts = {0, 10000000};
            nanosleep(&ts, NULL);
        }
    }
    free(body);
    lg->status = status;
    lg->body_sent = send_n;
}

static int authorized(srv *s, const char *auth) {
    char want[128];
    snprintf(want, sizeof want, "Bearer %s", s->token);
    return !s->token[0] || !strcmp(auth, want);
}

static void handle(srv *s, int fd) {
    char buf[8192];
    buf[0] = 0;
    size_t n = 0;
    double t0 = (double)time(NULL);
    while (n < sizeof buf - 1 && !strstr(buf, "\r\n\r\n") && time(NULL) - t0 < 5) {
        ssize_t r = recv(fd, buf + n, sizeof buf - 1 - n, 0);
        if (r <= 0) return;
        n += (size_t)r;
        buf[n] = 0;
    }
    buf[n] = 0;
    req_log lg = {0};
    lg.range_from = -1;
    char method[16] = "", target[512] = "";
    sscanf(buf, "%15s %511s", method, target);
    snprintf(lg.target, sizeof lg.target, "%s", target);
    for (char *line = strstr(buf, "\r\n"); line && line[2]; line = strstr(line + 2, "\r\n")) {
        const char *l = line + 2;
        if (!strncasecmp(l, "Authorization: ", 15)) sscanf(l + 15, "%159[^\r]", lg.auth);
        if (!strncasecmp(l, "Range: bytes=", 13)) lg.range_from = atoll(l + 13);
    }
    const char *api = "/api/models/" REPO "/revision/";
    const char *resolve = "/" REPO "/resolve/";
    pthread_mutex_lock(&s->mu);
    int ok_auth = authorized(s, lg.auth);
    pthread_mutex_unlock(&s->mu);
    if (s->is_cdn || !strncmp(target, "/cdn/", 5)) {
        const repo_file *f = !strncmp(target, "/cdn/", 5) ? repo_find_sha(s->repo, target + 5) : NULL;
        if (!f) {
            reply(fd, 404, "Not Found", NULL, NULL, 0);
            lg.status = 404;
        } else {
            snprintf(lg.path, sizeof lg.path, "%s", f->path);
            serve_file(s, fd, f, lg.range_from, &lg);
        }
    } else if (strcmp(method, "GET") != 0) {
        reply(fd, 405, "Method Not Allowed", NULL, NULL, 0);
        lg.status = 405;
    } else if (!strncmp(target, "/api/models/", 12) || strstr(target, "/resolve/")) {
        int is_api = !strncmp(target, "/api/models/", 12);
        if (!ok_auth) {
            /* What the hub answers without a (valid) token: the repository is not revealed. */
            const char *b = "{\"error\":\"Repository Not Found\"}";
            reply(fd, 401, "Unauthorized", "X-Error-Code: RepoNotFound\r\nX-Error-Message: Repository Not Found\r\n", b,
                  strlen(b));
            lg.status = 401;
        } else if (is_api && strncmp(target, api, strlen(api)) != 0) {
            const char *b = "{\"error\":\"Repository not found\"}";
            reply(fd, 404, "Not Found", "X-Error-Code: RepoNotFound\r\nX-Error-Message: Repository not found\r\n", b,
                  strlen(b));
            lg.status = 404;
        } else if (is_api) {
            char rev[512];
            snprintf(rev, sizeof rev, "%s", target + strlen(api));
            char *q = strchr(rev, '?');
            int blobs = q && strstr(q, "blobs=true");
            if (q) *q = 0;
            url_decode(rev);
            if (strcmp(rev, "main") && strcmp(rev, COMMIT)) {
                reply(fd, 404, "Not Found", "X-Error-Code: RevisionNotFound\r\nX-Error-Message: Invalid rev id\r\n",
                      NULL, 0);
                lg.status = 404;
            } else {
                pthread_mutex_lock(&s->mu);
                json_t *j = listing_json(s);
                pthread_mutex_unlock(&s->mu);
                if (!blobs) { /* without ?blobs=true the hub gives names only */
                    size_t i;
                    json_t *e;
                    json_array_foreach(json_object_get(j, "siblings"), i, e) {
                        json_object_del(e, "size");
                        json_object_del(e, "blobId");
                        json_object_del(e, "lfs");
                    }
                }
                char *b = json_dumps(j, JSON_COMPACT);
                reply(fd, 200, "OK", "Content-Type: application/json\r\n", b, strlen(b));
                free(b);
                json_decref(j);
                lg.status = 200;
            }
        } else if (strncmp(target, resolve, strlen(resolve)) != 0) {
            reply(fd, 404, "Not Found", "X-Error-Code: RepoNotFound\r\n", NULL, 0);
            lg.status = 404;
        } else {
            char rest[512];
            snprintf(rest, sizeof rest, "%s", target + strlen(resolve));
            char *slash = strchr(rest, '/');
            const repo_file *f = NULL;
            if (slash) {
                *slash = 0;
                url_decode(slash + 1);
                if (!strcmp(rest, COMMIT) || !strcmp(rest, "main")) f = repo_find(s->repo, slash + 1);
            }
            pthread_mutex_lock(&s->mu);
            int fail = s->fail503_left > 0 ? s->fail503_left-- : 0;
            int mode = s->lfs_redirect;
            int cdn_port = s->cdn ? s->cdn->port : 0;
            pthread_mutex_unlock(&s->mu);
            if (!f) {
                reply(fd, 404, "Not Found", "X-Error-Code: EntryNotFound\r\n", NULL, 0);
                lg.status = 404;
            } else if (fail) {
                reply(fd, 503, "Service Unavailable", "Retry-After: 0\r\n", NULL, 0);
                lg.status = 503;
                snprintf(lg.path, sizeof lg.path, "%s", f->path);
            } else if (f->lfs && mode) {
                char h[512];
                if (mode == 1)
                    snprintf(h, sizeof h, "Location: /cdn/%s\r\nX-Linked-Size: %zu\r\nX-Linked-Etag: \"%s\"\r\n",
                             f->sha256, f->size, f->sha256);
                else
                    snprintf(h, sizeof h,
                             "Location: http://127.0.0.1:%d/cdn/%s\r\nX-Linked-Size: %zu\r\nX-Linked-Etag: \"%s\"\r\n",
                             cdn_port, f->sha256, f->size, f->sha256);
                reply(fd, 302, "Found", h, NULL, 0);
                lg.status = 302;
            } else {
                snprintf(lg.path, sizeof lg.path, "%s", f->path);
                serve_file(s, fd, f, lg.range_from, &lg);
            }
        }
    } else {
        reply(fd, 404, "Not Found", NULL, NULL, 0);
        lg.status = 404;
    }
    pthread_mutex_lock(&s->mu);
    if (s->n_log < MAX_LOG) s->log[s->n_log++] = lg;
    s->handled++;
    pthread_mutex_unlock(&s->mu);
}

static void *srv_main(void *ud) {
    srv *s = ud;
    /* Bounded: the test stops us; a forgotten server still exits after 5 minutes. */
    time_t until = time(NULL) + 300;
    while (!s->stop && time(NULL) < until) {
        struct pollfd p = {s->fd, POLLIN, 0};
        if (poll(&p, 1, 50) <= 0) continue;
        int c = accept(s->fd, NULL, NULL);
        if (c < 0) continue;
        struct timeval tv = {5, 0};
        setsockopt(c, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        setsockopt(c, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
        handle(s, c);
        shutdown(c, SHUT_RDWR);
        close(c);
    }
    return NULL;
}

static int srv_start(srv *s, const repo *r, int is_cdn) {
    memset(s, 0, sizeof *s);
    pthread_mutex_init(&s->mu, NULL);
    s->repo = r;
    s->is_cdn = is_cdn;
    s->fd = socket(AF_INET, SOCK_STREAM, 0);
    if (s->fd < 0) return -1;
    struct sockaddr_in a = {0};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    a.sin_port = 0;
    socklen_t al = sizeof a;
    if (bind(s->fd, (struct sockaddr *)&a, sizeof a) != 0 || listen(s->fd, 16) != 0 ||
        getsockname(s->fd, (struct sockaddr *)&a, &al) != 0)
        return -1;
    s->port = ntohs(a.sin_port);
    return pthread_create(&s->th, NULL, srv_main, s);
}

static void srv_stop(srv *s) {
    s->stop = 1;
    pthread_join(s->th, NULL);
    close(s->fd);
    if (s->extra_sibling) json_decref(s->extra_sibling);
    pthread_mutex_destroy(&s->mu);
}

/* Body bytes sent for `path` over all logged requests, and how many requests served it. */
static size_t sent_for(srv *s, const char *path, int *requests) {
    size_t total = 0;
    int k = 0;
    pthread_mutex_lock(&s->mu);
    for (int i = 0; i < s->n_log; i++)
        if (!strcmp(s->log[i].path, path)) total += s->log[i].body_sent, k++;
    pthread_mutex_unlock(&s->mu);
    if (requests) *requests = k;
    return total;
}

/* ---- client side ----------------------------------------------------------------------------------------- */
typedef struct {
    int retries, starts, done, present, listed;
    int cancel_at_bytes;
    volatile int cancel;
} events;

static void on_progress(const cvx_hub_progress *p, void *ud) {
    events *e = ud;
    switch (p->event) {
    case CVX_HUB_LISTED: e->listed++; break;
    case CVX_HUB_FILE_START: e->starts++; break;
    case CVX_HUB_FILE_DONE: e->done++; break;
    case CVX_HUB_FILE_PRESENT: e->present++; break;
    case CVX_HUB_RETRY: e->retries++; break;
    case CVX_HUB_FILE_BYTES:
        if (e->cancel_at_bytes) e->cancel = 1;
        break;
    }
}

static char g_endpoint[64];

static cvx_hub_params params(events *ev) {
    cvx_hub_params p = cvx_hub_params_default();
    p.endpoint = g_endpoint;
    p.token = "";
    p.retry_base_s = 0.01;
    p.retry_max_s = 0.05;
    p.connect_timeout_s = 5;
    p.stall_timeout_s = 5;
    p.progress_interval_s = 0;
    if (ev) {
        memset(ev, 0, sizeof *ev);
        p.progress = on_progress;
        p.user_data = ev;
        p.cancel = &ev->cancel;
    }
    return p;
}

static int file_equals(const char *path, const repo_file *f) {
    size_t n;
    unsigned char *d = read_all(path, &n);
    int eq = d && n == f->size && (n == 0 || !memcmp(d, f->data, n));
    free(d);
    return eq;
}

static int exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* Every wanted file is in dir, byte-identical; unwanted ones are absent unless `all`. */
static void check_folder(const repo *r, const char *dir, int all) {
    for (int i = 0; i < r->n; i++) {
        char p[1024];
        snprintf(p, sizeof p, "%s/%s", dir, r->f[i].path);
        if (all || cvx_hub_wanted(r->f[i].path))
            CHECK_MSG(file_equals(p, &r->f[i]), "%s differs or is missing", r->f[i].path);
        else
            CHECK_MSG(!exists(p), "%s should not have been downloaded", r->f[i].path);
    }
}

static int wanted_count(const repo *r) {
    int k = 0;
    for (int i = 0; i < r->n; i++) k += cvx_hub_wanted(r->f[i].path);
    return k;
}

static void fresh(char *dir, size_t size, const char *tmp, const char *name) {
    snprintf(dir, size, "%s/%s", tmp, name);
    cvx_test_rmtree(dir);
}

static void test_filters(void) {
    CHECK(cvx_hub_wanted("model_index.json"));
    CHECK(cvx_hub_wanted("transformer/config.json"));
    CHECK(cvx_hub_wanted("vae/diffusion_pytorch_model.safetensors"));
    CHECK(cvx_hub_wanted("text_encoder/model-00001-of-00002.safetensors"));
    CHECK(cvx_hub_wanted("text_encoder/model.safetensors.index.json"));
    CHECK(cvx_hub_wanted("tokenizer/spiece.model"));
    CHECK(cvx_hub_wanted("tokenizer/tokenizer_config.json"));
    CHECK(cvx_hub_wanted("scheduler/scheduler_config.json"));
    CHECK(!cvx_hub_wanted("README.md"));
    CHECK(!cvx_hub_wanted(".gitattributes"));
    CHECK(!cvx_hub_wanted("config.json"));
    CHECK(!cvx_hub_wanted("transformer/diffusion_pytorch_model.bin"));
    CHECK(!cvx_hub_wanted("a/b/config.json"));
    CHECK(!cvx_hub_wanted("scheduler/other.json"));
    CHECK(!cvx_hub_wanted("assets/demo.safetensors.txt"));
    CHECK(cvx_hub_valid_repo_id("THUDM/CogVideoX-2b"));
    CHECK(cvx_hub_valid_repo_id("gpt2"));
    CHECK(cvx_hub_valid_repo_id("a_b/c.d-e"));
    CHECK(!cvx_hub_valid_repo_id(""));
    CHECK(!cvx_hub_valid_repo_id("a/b/c"));
    CHECK(!cvx_hub_valid_repo_id("../x"));
    CHECK(!cvx_hub_valid_repo_id("a/-b"));
    CHECK(!cvx_hub_valid_repo_id("a--b/c"));
    CHECK(!cvx_hub_valid_repo_id("a/b.git"));
    CHECK(!cvx_hub_valid_repo_id("a b/c"));
    CHECK(!cvx_hub_valid_repo_id("a/b?x=1"));
    CHECK(!cvx_hub_valid_repo_id("/b"));
}

static void test_full(const repo *r, srv *hub, srv *cdn, const char *tmp) {
    char dir[1024];
    fresh(dir, sizeof dir, tmp, "full");
    srv_reset(hub);
    srv_reset(cdn);
    hub->lfs_redirect = 2;
    events ev;
    cvx_hub_params p = params(&ev);
    cvx_hub_result res;
    cvx_error err = {0};
    cvx_status st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_OK, "%s", err.message);
    int want = wanted_count(r);
    CHECK_MSG(res.n_files == want && res.n_fetched == want && res.n_present == 0, "%d %d %d of %d", res.n_files,
              res.n_fetched, res.n_present, want);
    CHECK(!strcmp(res.commit, COMMIT));
    uint64_t bytes = 0;
    for (int i = 0; i < r->n; i++)
        if (cvx_hub_wanted(r->f[i].path)) bytes += r->f[i].size;
    CHECK(res.bytes == bytes && res.received == bytes);
    CHECK(ev.listed == 1 && ev.starts == want && ev.done == want && ev.retries == 0);
    check_folder(r, dir, 0);
    char p2[1100];
    snprintf(p2, sizeof p2, "%s/.cache", dir);
    CHECK_MSG(!exists(p2), "the empty .cache folder is left behind");
    /* LFS files came from the CDN, regular ones from the hub; files were asked for at the listing's commit. */
    int lfs_from_cdn = 0, n_lfs = 0;
    for (int i = 0; i < r->n; i++) {
        if (!r->f[i].lfs || !cvx_hub_wanted(r->f[i].path)) continue;
        n_lfs++;
        int k;
        lfs_from_cdn += sent_for(cdn, r->f[i].path, &k) == r->f[i].size && k == 1;
    }
    CHECK(n_lfs >= 4 && lfs_from_cdn == n_lfs);
    for (int i = 0; i < hub->n_log; i++)
        if (strstr(hub->log[i].target, "/resolve/")) CHECK_MSG(strstr(hub->log[i].target, "/resolve/" COMMIT "/"), "%s", hub->log[i].target);

    cvx_model *m = NULL;
    st = cvx_model_open(&m, dir, NULL, &err);
    CHECK_MSG(st == CVX_OK, "the downloaded folder does not open: %s", err.message);
    cvx_model_close(m);

    /* Again: everything is there and verifies, nothing is fetched. */
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_OK, "%s", err.message);
    CHECK(res.n_present == want && res.n_fetched == 0 && res.received == 0 && ev.present == want);
    /* A damaged file is noticed and fetched again. */
    char cfg[1100];
    snprintf(cfg, sizeof cfg, "%s/vae/config.json", dir);
    write_all(cfg, "{\"damaged\": true}");
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_OK && res.n_fetched == 1, "%s", err.message);
    check_folder(r, dir, 0);

    /* --all: every file, README and .gitattributes included. */
    fresh(dir, sizeof dir, tmp, "all");
    p.all_files = 1;
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_OK && res.n_files == r->n, "%s", err.message);
    check_folder(r, dir, 1);
    cvx_test_rmtree(dir);
}

static void test_token(const repo *r, srv *hub, srv *cdn, const char *tmp) {
    char dir[1024];
    fresh(dir, sizeof dir, tmp, "token");
    srv_reset(hub);
    srv_reset(cdn);
    snprintf(hub->token, sizeof hub->token, "hf_SecretTestToken");
    hub->lfs_redirect = 2;
    cvx_hub_params p = params(NULL);
    cvx_error err = {0};
    cvx_status st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_ERR_NOT_FOUND && strstr(err.message, REPO) && strstr(err.message, "HF_TOKEN") &&
                  strstr(err.message, "401"),
              "%d %s", st, err.message);
    CHECK(!exists(dir));
    p.token = "hf_wrong";
    st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_ERR_NOT_FOUND && strstr(err.message, "token has no access"), "%s", err.message);

    srv_reset(cdn);
    hub->n_log = 0;
    p.token = "hf_SecretTestToken";
    st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_OK, "%s", err.message);
    check_folder(r, dir, 0);
    int hub_auth = 0, cdn_auth = 0;
    for (int i = 0; i < hub->n_log; i++) hub_auth += !strcmp(hub->log[i].auth, "Bearer hf_SecretTestToken");
    for (int i = 0; i < cdn->n_log; i++) cdn_auth += cdn->log[i].auth[0] != 0;
    CHECK_MSG(hub->n_log > 0 && hub_auth == hub->n_log, "%d of %d hub requests carried the token", hub_auth,
              hub->n_log);
    CHECK_MSG(cdn->n_log > 0 && cdn_auth == 0, "the token leaked to another origin (%d of %d)", cdn_auth, cdn->n_log);

    /* HF_TOKEN from the environment when no token is given. */
    cvx_test_rmtree(dir);
    setenv("HF_TOKEN", "hf_SecretTestToken", 1);
    p.token = NULL;
    st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_OK, "HF_TOKEN: %s", err.message);
    unsetenv("HF_TOKEN");
    cvx_test_rmtree(dir);
}

static void test_redirect_same_origin(const repo *r, srv *hub, const char *tmp) {
    char dir[1024];
    fresh(dir, sizeof dir, tmp, "redirect");
    srv_reset(hub);
    hub->lfs_redirect = 1; /* "Location: /cdn/<sha256>": another path on the same server */
    snprintf(hub->token, sizeof hub->token, "tok");
    cvx_hub_params p = params(NULL);
    p.token = "tok";
    cvx_error err = {0};
    cvx_status st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_OK, "%s", err.message);
    check_folder(r, dir, 0);
    int cdn_paths = 0, with_token = 0;
    for (int i = 0; i < hub->n_log; i++)
        if (!strncmp(hub->log[i].target, "/cdn/", 5)) cdn_paths++, with_token += !strcmp(hub->log[i].auth, "Bearer tok");
    CHECK(cdn_paths >= 4 && with_token == cdn_paths); /* same origin: the token may follow */
    cvx_test_rmtree(dir);
}

static const char *BIG = "text_encoder/model-00001-of-00002.safetensors";

static void test_resume(const repo *r, srv *hub, srv *cdn, const char *tmp) {
    const repo_file *big = repo_find(r, BIG);
    CHECK(big && big->size > 100000);
    if (!big) return;
    char dir[1024];
    /* The server drops the connection half-way: the retry asks for (and gets) only the rest. */
    fresh(dir, sizeof dir, tmp, "resume");
    srv_reset(hub);
    srv_reset(cdn);
    hub->lfs_redirect = 2;
    snprintf(cdn->drop_path, sizeof cdn->drop_path, "%s", BIG);
    cdn->drop_at = big->size / 2;
    cdn->drops_left = 1;
    events ev;
    cvx_hub_params p = params(&ev);
    cvx_hub_result res;
    cvx_error err = {0};
    cvx_status st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_OK, "%s", err.message);
    check_folder(r, dir, 0);
    int k;
    size_t sent = sent_for(cdn, BIG, &k);
    CHECK_MSG(sent == big->size && k == 2, "sent %zu of %zu in %d requests", sent, big->size, k);
    long long second_range = -2;
    for (int i = 0; i < cdn->n_log; i++)
        if (!strcmp(cdn->log[i].path, BIG)) second_range = cdn->log[i].range_from;
    CHECK_MSG(second_range == (long long)(big->size / 2), "resumed from %lld", second_range);
    CHECK(ev.retries == 1);

    /* Across runs: no retries allowed, the partial file stays; the next run sends only the rest. */
    fresh(dir, sizeof dir, tmp, "resume2");
    srv_reset(cdn);
    snprintf(cdn->drop_path, sizeof cdn->drop_path, "%s", BIG);
    cdn->drop_at = big->size / 3;
    cdn->drops_left = 1;
    p.max_retries = 0;
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_ERR_IO && strstr(err.message, BIG), "%d %s", st, err.message);
    char fin[1100], part[1400];
    snprintf(fin, sizeof fin, "%s/%s", dir, BIG);
    cvx_hub_file hf = {0};
    hf.path = (char *)BIG;
    hf.lfs = 1;
    snprintf(hf.sha256, sizeof hf.sha256, "%s", big->sha256);
    cvx_hub_partial_path(part, sizeof part, dir, &hf);
    struct stat sb;
    CHECK(!exists(fin));
    CHECK_MSG(stat(part, &sb) == 0 && (size_t)sb.st_size == big->size / 3, "partial %s", part);
    char idx[1100];
    snprintf(idx, sizeof idx, "%s/model_index.json", dir);
    CHECK_MSG(!exists(idx), "model_index.json must come last");
    cdn->n_log = 0;
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_OK, "%s", err.message);
    sent = sent_for(cdn, BIG, &k);
    CHECK_MSG(sent == big->size - big->size / 3 && k == 1, "second run sent %zu", sent);
    check_folder(r, dir, 0);
    CHECK(!exists(part));

    /* A server that ignores Range: the client starts that file over (and still ends up right). */
    fresh(dir, sizeof dir, tmp, "norange");
    srv_reset(cdn);
    snprintf(cdn->drop_path, sizeof cdn->drop_path, "%s", BIG);
    cdn->drop_at = big->size / 2;
    cdn->drops_left = 1;
    cdn->ignore_range = 1;
    p.max_retries = 5;
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_OK, "%s", err.message);
    sent = sent_for(cdn, BIG, &k);
    CHECK_MSG(sent == big->size / 2 + big->size && k == 2, "sent %zu", sent);
    check_folder(r, dir, 0);

    /* 503s are retried (with back-off) and then succeed. */
    fresh(dir, sizeof dir, tmp, "503");
    srv_reset(cdn);
    hub->fail503_left = 2;
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_OK && ev.retries >= 2, "%s", err.message);
    check_folder(r, dir, 0);
    /* ... and give up after max_retries, with the status in the message. */
    fresh(dir, sizeof dir, tmp, "503b");
    hub->fail503_left = 100;
    p.max_retries = 2;
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_ERR_IO && strstr(err.message, "503") && strstr(err.message, "3 failures"), "%s", err.message);
    hub->fail503_left = 0;

    /* Cancel from the progress callback: CVX_ERR_CANCELLED, nothing final written for that file. */
    fresh(dir, sizeof dir, tmp, "cancel");
    srv_reset(cdn);
    p = params(&ev);
    ev.cancel_at_bytes = 1;
    st = cvx_hub_download(REPO, dir, &p, &res, &err);
    CHECK_MSG(st == CVX_ERR_CANCELLED, "%d %s", st, err.message);
    snprintf(idx, sizeof idx, "%s/model_index.json", dir);
    CHECK(!exists(idx));
    cvx_test_rmtree(dir);
}

static void test_verification(const repo *r, srv *hub, srv *cdn, const char *tmp) {
    const char *lfs_path = "vae/diffusion_pytorch_model.safetensors";
    const char *reg_path = "transformer/config.json";
    char dir[1024], fin[1100], part[1400];
    for (int which = 0; which < 2; which++) {
        const char *path = which ? reg_path : lfs_path;
        const repo_file *f = repo_find(r, path);
        CHECK(f != NULL);
        if (!f) continue;
        fresh(dir, sizeof dir, tmp, "verify");
        srv_reset(hub);
        srv_reset(cdn);
        hub->lfs_redirect = 2;
        snprintf(which ? hub->corrupt_path : cdn->corrupt_path, 256, "%s", path);
        cvx_hub_params p = params(NULL);
        cvx_error err = {0};
        cvx_status st = cvx_hub_download(REPO, dir, &p, NULL, &err);
        CHECK_MSG(st == CVX_ERR_MISMATCH && strstr(err.message, path) &&
                      strstr(err.message, which ? "git blob id" : "sha256"),
                  "%d %s", st, err.message);
        snprintf(fin, sizeof fin, "%s/%s", dir, path);
        cvx_hub_file hf = {0};
        hf.path = (char *)path;
        hf.lfs = f->lfs;
        snprintf(hf.sha256, sizeof hf.sha256, "%s", f->sha256);
        snprintf(hf.blob_id, sizeof hf.blob_id, "%s", f->blob_id);
        cvx_hub_partial_path(part, sizeof part, dir, &hf);
        CHECK_MSG(!exists(fin) && !exists(part), "%s: a final or partial file is left", path);
    }
    /* The server sends more bytes than the listing says: stopped there, nothing kept. */
    for (int which = 0; which < 2; which++) {
        const char *path = which ? reg_path : lfs_path;
        fresh(dir, sizeof dir, tmp, "verify");
        srv_reset(hub);
        srv_reset(cdn);
        hub->lfs_redirect = 2;
        snprintf(hub->short_path, sizeof hub->short_path, "%s", path);
        cvx_hub_params p = params(NULL);
        cvx_error err = {0};
        cvx_status st = cvx_hub_download(REPO, dir, &p, NULL, &err);
        CHECK_MSG(st == CVX_ERR_MISMATCH && strstr(err.message, path) && strstr(err.message, "more than"), "%d %s",
                  st, err.message);
        snprintf(fin, sizeof fin, "%s/%s", dir, path);
        CHECK(!exists(fin));
    }
    /* A listed file the server does not have: EntryNotFound names it. */
    fresh(dir, sizeof dir, tmp, "verify");
    srv_reset(hub);
    hub->extra_sibling = json_pack("{s:s, s:I}", "rfilename", "transformer/x.safetensors.index.json", "size", 3);
    cvx_hub_params p = params(NULL);
    cvx_error err = {0};
    cvx_status st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_ERR_NOT_FOUND && strstr(err.message, "transformer/x.safetensors.index.json"), "%d %s", st,
              err.message);
    cvx_test_rmtree(dir);
}

static void test_errors(srv *hub, const char *tmp) {
    char dir[1024];
    fresh(dir, sizeof dir, tmp, "errors");
    srv_reset(hub);
    cvx_hub_params p = params(NULL);
    cvx_error err = {0};
    cvx_status st = cvx_hub_download("test-org/no-such-repo", dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_ERR_NOT_FOUND && strstr(err.message, "test-org/no-such-repo") && strstr(err.message, "not found"),
              "%d %s", st, err.message);
    CHECK(!exists(dir));
    p.revision = "v9.9";
    st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_ERR_NOT_FOUND && strstr(err.message, "revision 'v9.9'"), "%d %s", st, err.message);
    p.revision = COMMIT; /* a commit id is a revision too */
    cvx_hub_listing *l = NULL;
    st = cvx_hub_list(REPO, &p, &l, &err);
    CHECK_MSG(st == CVX_OK && l && !strcmp(l->commit, COMMIT) && l->n_files > 10, "%s", err.message);
    cvx_hub_listing_free(l);
    p.revision = NULL;
    st = cvx_hub_download("../../etc", dir, &p, NULL, &err);
    CHECK(st == CVX_ERR_INVALID_ARGUMENT);
    p.endpoint = "ftp://127.0.0.1/";
    st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK(st == CVX_ERR_INVALID_ARGUMENT);
    /* Nothing listens there: a clear network error after the retries. */
    char dead[64];
    snprintf(dead, sizeof dead, "http://127.0.0.1:%d", 1);
    p.endpoint = dead;
    p.max_retries = 1;
    st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_ERR_IO && strstr(err.message, "127.0.0.1"), "%d %s", st, err.message);
    p = params(NULL);

    /* Hostile listings: a path out of the folder, a bad sha256, not JSON at all. */
    const char *bad_paths[] = {"../evil.safetensors", "/etc/evil.safetensors", "vae/../../evil.safetensors",
                               ".cache/x.safetensors", "vae//x.safetensors", "vae\\x.safetensors"};
    p.all_files = 1;
    for (size_t i = 0; i < sizeof bad_paths / sizeof bad_paths[0]; i++) {
        srv_reset(hub);
        hub->extra_sibling = json_pack("{s:s, s:i}", "rfilename", bad_paths[i], "size", 4);
        st = cvx_hub_download(REPO, dir, &p, NULL, &err);
        CHECK_MSG(st == CVX_ERR_FORMAT && strstr(err.message, "unsafe"), "%s: %d %s", bad_paths[i], st, err.message);
    }
    char evil[1100];
    snprintf(evil, sizeof evil, "%s/../evil.safetensors", dir);
    CHECK(!exists(evil));
    srv_reset(hub);
    hub->extra_sibling = json_pack("{s:s, s:i, s:{s:s}}", "rfilename", "x.safetensors", "size", 4, "lfs", "sha256", "xyz");
    st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_ERR_FORMAT && strstr(err.message, "sha256"), "%d %s", st, err.message);
    srv_reset(hub);
    hub->extra_sibling = json_pack("{s:i}", "rfilename", 7);
    st = cvx_hub_download(REPO, dir, &p, NULL, &err);
    CHECK_MSG(st == CVX_ERR_FORMAT && strstr(err.message, "rfilename"), "%d %s", st, err.message);
    srv_reset(hub);
    cvx_test_rmtree(dir);
}

/* ---- the cogvideox binary -------------------------------------------------------------------------------- */
static pid_t spawn_cli(const char *bin, char *const argv[], const char *env_endpoint, const char *env_token,
                       const char *out_file) {
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(out_file, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) {
            dup2(fd, 1);
            dup2(fd, 2);
        }
        if (env_endpoint) setenv("HF_ENDPOINT", env_endpoint, 1);
        else unsetenv("HF_ENDPOINT");
        if (env_token) setenv("HF_TOKEN", env_token, 1);
        else unsetenv("HF_TOKEN");
        execv(bin, argv);
        _exit(127);
    }
    return pid;
}

static int wait_cli(pid_t pid, const char *out_file) {
    int status = 0, code = -1;
    if (pid < 0) return -1;
    /* Bounded wait: 60 s. */
    for (int i = 0; i < 6000; i++) {
        pid_t w = waitpid(pid, &status, WNOHANG);
        if (w == pid) {
            code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
            break;
        }
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    if (code < 0) {
        kill(pid, SIGKILL);
        waitpid(pid, &status, 0);
    }
    if (getenv("CVX_TEST_VERBOSE")) { /* show what the binary printed */
        size_t n;
        unsigned char *d = read_all(out_file, &n);
        if (d) fwrite(d, 1, n, stdout);
        printf("-> exit %d\n", code);
        free(d);
    }
    return code;
}

static int run_cli(const char *bin, char *const argv[], const char *env_endpoint, const char *env_token,
                   const char *out_file) {
    return wait_cli(spawn_cli(bin, argv, env_endpoint, env_token, out_file), out_file);
}

static int file_has(const char *path, const char *needle) {
    size_t n;
    unsigned char *d = read_all(path, &n);
    if (!d) return 0;
    char *s = realloc(d, n + 1);
    s[n] = 0;
    int has = strstr(s, needle) != NULL;
    free(s);
    return has;
}

static void test_cli(const repo *r, srv *hub, srv *cdn, const char *tmp) {
    const char *bd = getenv("CVX_BUILD_DIR");
    char bin[1024];
    snprintf(bin, sizeof bin, "%s/cogvideox", bd ? bd : "build");
    if (access(bin, X_OK) != 0) {
        printf("test_hub: no %s: CLI cases skipped\n", bin);
        return;
    }
    char dir[1024], out[1100];
    fresh(dir, sizeof dir, tmp, "cli");
    snprintf(out, sizeof out, "%s/cli.out", tmp);
    srv_reset(hub);
    srv_reset(cdn);
    hub->lfs_redirect = 2;
    snprintf(hub->token, sizeof hub->token, "hf_cli");
    /* HF_ENDPOINT and HF_TOKEN from the environment. */
    char *a1[] = {bin, "download", REPO, "-o", dir, NULL};
    int rc = run_cli(bin, a1, g_endpoint, "hf_cli", out);
    CHECK_MSG(rc == 0 && file_has(out, "opens as a CogVideoXPipeline folder"), "rc %d", rc);
    check_folder(r, dir, 0);
    /* --endpoint / --token flags, already complete: nothing fetched. */
    char *a2[] = {bin, "download", REPO, "-o", dir, "--endpoint", g_endpoint, "--token", "hf_cli", "--quiet", NULL};
    rc = run_cli(bin, a2, NULL, NULL, out);
    CHECK_MSG(rc == 0 && file_has(out, "0 fetched"), "rc %d", rc);
    /* No token: the 401 is reported with a hint, exit 2. */
    char *a3[] = {bin, "download", REPO, "-o", dir, "--endpoint", g_endpoint, NULL};
    rc = run_cli(bin, a3, NULL, NULL, out);
    CHECK_MSG(rc == 2 && file_has(out, "HF_TOKEN"), "rc %d", rc);
    /* A verification failure: exit 2, the file named. */
    fresh(dir, sizeof dir, tmp, "cli2");
    snprintf(cdn->corrupt_path, sizeof cdn->corrupt_path, "%s", BIG);
    char *a4[] = {bin, "download", REPO, "-o", dir, "--endpoint", g_endpoint, "--token", "hf_cli", NULL};
    rc = run_cli(bin, a4, NULL, NULL, out);
    CHECK_MSG(rc == 2 && file_has(out, BIG) && file_has(out, "sha256 mismatch"), "rc %d", rc);
    cdn->corrupt_path[0] = 0;
    /* Bad arguments: exit 1. */
    char *a5[] = {bin, "download", "not/a/repo", "-o", dir, NULL};
    CHECK(run_cli(bin, a5, g_endpoint, NULL, out) == 1);
    char *a6[] = {bin, "download", REPO, NULL};
    CHECK(run_cli(bin, a6, g_endpoint, NULL, out) == 1);
    char *a7[] = {bin, "download", REPO, "-o", dir, "--bogus", NULL};
    CHECK(run_cli(bin, a7, g_endpoint, NULL, out) == 1);
    /* An unknown repository: exit 2. */
    char *a8[] = {bin, "download", "test-org/missing", "-o", dir, "--token", "hf_cli", NULL};
    rc = run_cli(bin, a8, g_endpoint, NULL, out);
    CHECK_MSG(rc == 2 && file_has(out, "not found"), "rc %d", rc);

    /* SIGINT in the middle of a file: exit 130, the partial file kept, the next run sends only the rest. */
    const repo_file *big = repo_find(r, BIG);
    fresh(dir, sizeof dir, tmp, "cli3");
    srv_reset(cdn);
    snprintf(cdn->stall_path, sizeof cdn->stall_path, "%s", BIG);
    pid_t pid = spawn_cli(bin, a4, NULL, NULL, out);
    for (int i = 0; i < 1000 && !cdn->stalling; i++) {
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    CHECK(cdn->stalling);
    struct timespec settle = {0, 100000000}; /* let the client write what it got */
    nanosleep(&settle, NULL);
    int handled = cdn->handled;
    kill(pid, SIGINT);
    rc = wait_cli(pid, out);
    cdn->stall_release = 1;
    for (int i = 0; i < 1000 && cdn->handled == handled; i++) { /* the stalled request is logged */
        struct timespec ts = {0, 10000000};
        nanosleep(&ts, NULL);
    }
    CHECK_MSG(rc == 130 && file_has(out, "interrupted"), "rc %d", rc);
    char fin[1100], part[1400], idx[1100];
    snprintf(fin, sizeof fin, "%s/%s", dir, BIG);
    snprintf(idx, sizeof idx, "%s/model_index.json", dir);
    cvx_hub_file hf = {0};
    hf.path = (char *)BIG;
    hf.lfs = 1;
    snprintf(hf.sha256, sizeof hf.sha256, "%s", big->sha256);
    cvx_hub_partial_path(part, sizeof part, dir, &hf);
    struct stat sb;
    CHECK(!exists(fin) && !exists(idx));
    CHECK_MSG(stat(part, &sb) == 0 && sb.st_size > 0 && (size_t)sb.st_size <= big->size / 2, "partial %s", part);
    size_t had = stat(part, &sb) == 0 ? (size_t)sb.st_size : 0;
    srv_reset(cdn);
    rc = run_cli(bin, a4, NULL, NULL, out);
    int k;
    size_t sent = sent_for(cdn, BIG, &k);
    CHECK_MSG(rc == 0 && file_has(out, "resuming at") && sent == big->size - had && k == 1, "rc %d sent %zu", rc,
              sent);
    check_folder(r, dir, 0);
    cvx_test_rmtree(dir);
}

int main(void) {
    char tmp[512];
    if (!cvx_test_tmpdir(tmp, sizeof tmp)) {
        fprintf(stderr, "test_hub: no temporary directory\n");
        return 1;
    }
    test_filters();

    /* The repository: a make-model tiny folder plus files a pipeline does not need. */
    char src[600];
    snprintf(src, sizeof src, "%s/src", tmp);
    cvx_make_model_params mp = cvx_make_model_params_default();
    mp.threads = 1;
    cvx_error err = {0};
    CHECK_MSG(cvx_make_model(src, &mp, &err) == CVX_OK, "%s", err.message);
    char extra[700];
    snprintf(extra, sizeof extra, "%s/README.md", src);
    write_all(extra, "# tiny\n");
    snprintf(extra, sizeof extra, "%s/.gitattributes", src);
    write_all(extra, "*.safetensors filter=lfs diff=lfs merge=lfs -text\n");
    static repo r;
    repo_scan(&r, src, "");
    CHECK(r.n >= 14 && repo_find(&r, "model_index.json") && repo_find(&r, BIG));

    static srv hub, cdn;
    CHECK(srv_start(&hub, &r, 0) == 0);
    CHECK(srv_start(&cdn, &r, 1) == 0);
    hub.cdn = &cdn;
    snprintf(g_endpoint, sizeof g_endpoint, "http://127.0.0.1:%d/", hub.port); /* a trailing "/" is fine */
    unsetenv("HF_TOKEN");
    unsetenv("HF_ENDPOINT");

    test_full(&r, &hub, &cdn, tmp);
    test_token(&r, &hub, &cdn, tmp);
    test_redirect_same_origin(&r, &hub, tmp);
    test_resume(&r, &hub, &cdn, tmp);
    test_verification(&r, &hub, &cdn, tmp);
    test_errors(&hub, tmp);
    test_cli(&r, &hub, &cdn, tmp);

    srv_stop(&hub);
    srv_stop(&cdn);
    for (int i = 0; i < r.n; i++) free(r.f[i].data);
    cvx_test_rmtree(tmp);
    return cvx_test_finish("test_hub");
}
