/* Hugging Face hub download over libcurl: listing, resumable verified transfers, manual redirects that keep
 * the token on the endpoint's origin. The protocol (with its sources in huggingface_hub) is described in
 * hub.h. */
#include "io/hub.h"
#include "core/fs.h"

#include <curl/curl.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <openssl/evp.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "core/log.h"

#define HUB_MAX_REDIRECTS 10
/* Bounds every file's loop even against a server that sends one new byte per connection. */
#define HUB_MAX_ATTEMPTS 200
/* The API answer is JSON of a few hundred bytes per file; anything this large is not a listing. */
#define HUB_MAX_LISTING_BYTES (64u << 20)
#define HUB_MAX_ERROR_BODY 2048
#define HUB_MAX_PATH 1024

/* ---- small helpers --------------------------------------------------------------------------------------- */
static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

static int is_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f') || (s[i] >= 'A' && s[i] <= 'F')))
            return 0;
    return 1;
}

static void lower(char *s) {
    for (; *s; s++)
        if (*s >= 'A' && *s <= 'Z') *s = (char)(*s - 'A' + 'a');
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Python's urllib.parse.quote: letters, digits and "_.-~" stay, plus the `safe` characters; the rest is %XX. */
static int quote(char *buf, size_t size, const char *s, const char *safe) {
    static const char hex[] = "0123456789ABCDEF";
    size_t o = 0;
    for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
        int keep = (*p >= 'a' && *p <= 'z') || (*p >= 'A' && *p <= 'Z') || (*p >= '0' && *p <= '9') ||
                   strchr("_.-~", *p) || (*safe && strchr(safe, *p));
        if (keep) {
            if (o + 1 >= size) return -1;
            buf[o++] = (char)*p;
        } else {
            if (o + 3 >= size) return -1;
            buf[o++] = '%', buf[o++] = hex[*p >> 4], buf[o++] = hex[*p & 15];
        }
    }
    if (o >= size) return -1;
    buf[o] = 0;
    return 0;
}

static int mkdir_parent(const char *path) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return ENAMETOOLONG;
    char *slash = strrchr(buf, '/');
    if (!slash || slash == buf) return 0;
    *slash = 0;
    return cvx_mkdirs(buf);
}

/* A repo path is safe to join under DIR: relative, no empty / "." / ".." parts, no backslash or control
 * character, not inside our own .cache folder. */
static int safe_repo_path(const char *p) {
    size_t n = strlen(p);
    if (n == 0 || n > HUB_MAX_PATH || p[0] == '/') return 0;
    if (!strcmp(p, ".cache") || !strncmp(p, ".cache/", 7)) return 0;
    for (size_t i = 0; i < n; i++)
        if ((unsigned char)p[i] < 0x20 || p[i] == 0x7f || p[i] == '\\') return 0;
    const char *part = p;
    for (;;) {
        const char *e = strchr(part, '/');
        size_t len = e ? (size_t)(e - part) : strlen(part);
        if (len == 0 || (len == 1 && part[0] == '.') || (len == 2 && part[0] == '.' && part[1] == '.')) return 0;
        if (!e) break;
        part = e + 1;
    }
    return 1;
}

int cvx_hub_wanted(const char *path) {
    if (!path) return 0;
    if (!strcmp(path, "model_index.json")) return 1;
    const char *slash = strchr(path, '/');
    if (!slash || slash == path || !slash[1]) return 0;
    const char *name = slash + 1;
    size_t dlen = (size_t)(slash - path);
    if (dlen == 9 && !strncmp(path, "tokenizer", 9)) return 1;
    if (strchr(name, '/')) return 0; /* components are one level deep */
    if (!strcmp(name, "config.json")) return 1;
    if (dlen == 9 && !strncmp(path, "scheduler", 9) && !strcmp(name, "scheduler_config.json")) return 1;
    return ends_with(name, ".safetensors") || ends_with(name, ".safetensors.index.json");
}

/* huggingface_hub validate_repo_id: ^(\b[\w\-.]+\b/)?\b[\w\-.]{1,96}\b$, no "--" or "..", no ".git" end. */
int cvx_hub_valid_repo_id(const char *id) {
    if (!id || !*id || strstr(id, "--") || strstr(id, "..") || ends_with(id, ".git")) return 0;
    const char *slash = strchr(id, '/');
    if (slash && strchr(slash + 1, '/')) return 0;
    for (int part = 0; part < (slash ? 2 : 1); part++) {
        const char *s = part ? slash + 1 : id;
        size_t n = part || !slash ? strlen(s) : (size_t)(slash - id);
        if (n == 0 || n > 96) return 0;
        for (size_t i = 0; i < n; i++) {
            char c = s[i];
            int word = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_';
            if (!word && c != '-' && c != '.') return 0;
            if ((i == 0 || i == n - 1) && !word) return 0;
        }
    }
    return 1;
}

/* "scheme://host:port" in lower case with the default port filled in; -1 when url does not parse. */
static int url_origin(const char *url, char *buf, size_t size) {
    CURLU *u = curl_url();
    if (!u) return -1;
    char *scheme = NULL, *host = NULL, *port = NULL;
    int rc = -1;
    if (curl_url_set(u, CURLUPART_URL, url, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_SCHEME, &scheme, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_HOST, &host, 0) == CURLUE_OK &&
        curl_url_get(u, CURLUPART_PORT, &port, CURLU_DEFAULT_PORT) == CURLUE_OK) {
        if (snprintf(buf, size, "%s://%s:%s", scheme, host, port) < (int)size) {
            lower(buf);
            rc = 0;
        }
    }
    curl_free(scheme);
    curl_free(host);
    curl_free(port);
    curl_url_cleanup(u);
    return rc;
}

static int url_is_https(const char *url) { return !strncasecmp(url, "https://", 8); }
static int url_is_http(const char *url) { return !strncasecmp(url, "http://", 7) || url_is_https(url); }

static pthread_once_t curl_once = PTHREAD_ONCE_INIT;
static CURLcode curl_init_rc;
static void curl_init(void) { curl_init_rc = curl_global_init(CURL_GLOBAL_DEFAULT); }

/* ---- one HTTP exchange ----------------------------------------------------------------------------------- */
typedef struct hub_ctx hub_ctx;

/* Where a 2xx body goes: a file being resumed, with its running hash. */
typedef struct {
    int fd;
    uint64_t offset;  /* bytes on disk before this request (0 after a restart) */
    uint64_t written; /* bytes appended by this request */
    uint64_t expected;
    int has_expected;
    EVP_MD_CTX *md;
    const EVP_MD *md_type; /* NULL: nothing to hash */
    int git_blob;          /* hash "blob <size>\0" first (git object id) */
    int begun;
    int restarted;  /* the server answered 200 to a Range request */
    int overflow;   /* more bytes than the listing says */
    int range_bad;  /* a 206 that does not start where we asked */
    int io_errno;   /* a write failed */
    hub_ctx *ctx;
} file_sink;

typedef struct {
    long status;
    char error_code[64];
    char error_message[256];
    char content_range[128];
    char retry_after[32];
    char *body; /* non-2xx bodies (for messages) and API answers */
    size_t body_len, body_cap, body_limit;
    int body_too_big;
    file_sink *sink;
} http_resp;

struct hub_ctx {
    const cvx_hub_params *p;
    char *endpoint;
    char *token; /* NULL: none */
    char origin[512];
    CURL *curl;
    char curl_err[CURL_ERROR_SIZE];
    double t0;
    /* progress accounting over the selected files */
    const char *file;
    int index, count;
    uint64_t done_before, total, received, file_total;
    double last_progress;
};

static int cancelled(const hub_ctx *c) { return c->p->cancel && *c->p->cancel; }

static void emit(hub_ctx *c, cvx_hub_event ev, uint64_t file_done, int attempt, double retry_in, const char *msg) {
    if (!c->p->progress) return;
    cvx_hub_progress pr = {0};
    pr.event = ev;
    pr.file = c->file;
    pr.index = c->index;
    pr.count = c->count;
    pr.file_done = file_done;
    pr.file_total = c->file_total;
    pr.done = c->done_before + (ev == CVX_HUB_LISTED ? 0 : file_done);
    pr.total = c->total;
    pr.received = c->received;
    pr.elapsed_s = cvx_time_seconds() - c->t0;
    pr.attempt = attempt;
    pr.retry_in_s = retry_in;
    pr.message = msg;
    c->p->progress(&pr, c->p->user_data);
}

static size_t on_header(char *data, size_t size, size_t nmemb, void *ud) {
    http_resp *r = ud;
    size_t n = size * nmemb;
    char line[512];
    size_t m = n < sizeof line - 1 ? n : sizeof line - 1;
    memcpy(line, data, m);
    line[m] = 0;
    while (m && (line[m - 1] == '\r' || line[m - 1] == '\n')) line[--m] = 0;
    if (!strncmp(line, "HTTP/", 5)) {
        /* A new response (after a 100 Continue, or a proxy's CONNECT): forget the headers seen so far. */
        const char *sp = strchr(line, ' ');
        r->status = sp ? strtol(sp + 1, NULL, 10) : 0;
        r->error_code[0] = r->error_message[0] = r->content_range[0] = r->retry_after[0] = 0;
        return n;
    }
    char *colon = strchr(line, ':');
    if (!colon) return n;
    *colon = 0;
    const char *v = colon + 1;
    while (*v == ' ' || *v == '\t') v++;
    struct {
        const char *name;
        char *dst;
        size_t size;
    } keep[] = {{"X-Error-Code", r->error_code, sizeof r->error_code},
                {"X-Error-Message", r->error_message, sizeof r->error_message},
                {"Content-Range", r->content_range, sizeof r->content_range},
                {"Retry-After", r->retry_after, sizeof r->retry_after}};
    for (size_t i = 0; i < sizeof keep / sizeof keep[0]; i++)
        if (!strcasecmp(line, keep[i].name)) snprintf(keep[i].dst, keep[i].size, "%s", v);
    return n;
}

static void md_reset(file_sink *s) {
    if (!s->md_type) return;
    EVP_DigestInit_ex(s->md, s->md_type, NULL);
    if (s->git_blob) {
        char pre[40];
        int n = snprintf(pre, sizeof pre, "blob %llu", (unsigned long long)s->expected);
        EVP_DigestUpdate(s->md, pre, (size_t)n + 1); /* with its NUL */
    }
}

/* The first body byte of a 2xx answer decides: continue after `offset` (206 from there) or start over. */
static void sink_begin(file_sink *s, const http_resp *r) {
    s->begun = 1;
    if (r->status == 206) {
        unsigned long long a = 0, b = 0;
        if (sscanf(r->content_range, "bytes %llu-%llu", &a, &b) != 2 || a != s->offset) s->range_bad = 1;
        return;
    }
    if (s->offset > 0) {
        /* The server ignored our Range (huggingface_hub http_get does the same): rewrite from byte 0. */
        if (ftruncate(s->fd, 0) != 0 || lseek(s->fd, 0, SEEK_SET) != 0) s->io_errno = errno ? errno : EIO;
        s->offset = 0;
        s->restarted = 1;
        md_reset(s);
    }
}

static size_t on_body(char *data, size_t size, size_t nmemb, void *ud) {
    http_resp *r = ud;
    size_t n = size * nmemb;
    if (r->status >= 200 && r->status < 300 && r->sink) {
        file_sink *s = r->sink;
        if (!s->begun) sink_begin(s, r);
        if (s->range_bad || s->io_errno) return 0;
        if (s->has_expected && s->offset + s->written + n > s->expected) {
            s->overflow = 1;
            return 0;
        }
        for (size_t o = 0; o < n;) {
            ssize_t w = write(s->fd, data + o, n - o);
            if (w < 0 && errno == EINTR) continue;
            if (w <= 0) {
                s->io_errno = w < 0 ? errno : EIO;
                return 0;
            }
            o += (size_t)w;
        }
        if (s->md_type) EVP_DigestUpdate(s->md, data, n);
        s->written += n;
        hub_ctx *c = s->ctx;
        c->received += n;
        double now = cvx_time_seconds();
        if (now - c->last_progress >= c->p->progress_interval_s) {
            c->last_progress = now;
            emit(c, CVX_HUB_FILE_BYTES, s->offset + s->written, 0, 0, NULL);
        }
        return n;
    }
    /* API answers and error bodies are kept in memory, bounded. */
    if (r->body_len + n > r->body_limit) {
        if (r->status >= 200 && r->status < 300) {
            r->body_too_big = 1;
            return 0;
        }
        n = r->body_limit - r->body_len; /* an error body: keep its start */
        if (!n) return size * nmemb;
    }
    if (r->body_len + n + 1 > r->body_cap) {
        size_t cap = r->body_cap ? r->body_cap : 4096;
        while (cap < r->body_len + n + 1) cap *= 2;
        char *b = realloc(r->body, cap);
        if (!b) return 0;
        r->body = b, r->body_cap = cap;
    }
    memcpy(r->body + r->body_len, data, n);
    r->body_len += n;
    r->body[r->body_len] = 0;
    return size * nmemb;
}

static int on_xfer(void *ud, curl_off_t dt, curl_off_t dn, curl_off_t ut, curl_off_t un) {
    (void)dt, (void)dn, (void)ut, (void)un;
    return cancelled(ud) ? 1 : 0;
}

static void resp_reset(http_resp *r) {
    r->status = 0;
    r->error_code[0] = r->error_message[0] = r->content_range[0] = r->retry_after[0] = 0;
    r->body_len = 0;
    r->body_too_big = 0;
    if (r->body) r->body[0] = 0;
}

/* GET url (Range from `range_from` when >= 0), following redirects by hand. Returns the curl code of the last
 * hop; r->status is its HTTP status. *redirect_err is set (with a message in err) when a redirect could not be
 * followed. */
static CURLcode http_get(hub_ctx *c, const char *url0, long long range_from, http_resp *r, cvx_error *err,
                         int *redirect_err) {
    *redirect_err = 0;
    char *url = xstrdup(url0);
    if (!url) {
        cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        *redirect_err = 1;
        return CURLE_OUT_OF_MEMORY;
    }
    CURLcode rc = CURLE_OK;
    for (int hop = 0;; hop++) {
        resp_reset(r);
        if (r->sink) r->sink->begun = 0;
        char origin[512];
        int same_origin = url_origin(url, origin, sizeof origin) == 0 && !strcmp(origin, c->origin);
        struct curl_slist *h = NULL, *t;
        char line[600];
        int ok = 1;
        if (c->token && same_origin) {
            char *auth = malloc(strlen(c->token) + 32);
            if (!auth) ok = 0;
            else {
                sprintf(auth, "Authorization: Bearer %s", c->token);
                t = curl_slist_append(h, auth);
                free(auth);
                if (!t) ok = 0;
                else h = t;
            }
        }
        if (ok && range_from >= 0) {
            snprintf(line, sizeof line, "Range: bytes=%lld-", range_from);
            if (!(t = curl_slist_append(h, line))) ok = 0;
            else h = t;
        }
        if (!ok) {
            curl_slist_free_all(h);
            free(url);
            *redirect_err = 1;
            cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            return CURLE_OUT_OF_MEMORY;
        }
        c->curl_err[0] = 0;
        curl_easy_setopt(c->curl, CURLOPT_URL, url);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, h);
        curl_easy_setopt(c->curl, CURLOPT_HEADERDATA, r);
        curl_easy_setopt(c->curl, CURLOPT_WRITEDATA, r);
        rc = curl_easy_perform(c->curl);
        curl_easy_setopt(c->curl, CURLOPT_HTTPHEADER, NULL);
        curl_slist_free_all(h);
        long status = 0;
        curl_easy_getinfo(c->curl, CURLINFO_RESPONSE_CODE, &status);
        if (status) r->status = status;
        int redirect = r->status == 301 || r->status == 302 || r->status == 303 || r->status == 307 ||
                       r->status == 308;
        if (rc != CURLE_OK || !redirect) break;
        char *loc = NULL;
        curl_easy_getinfo(c->curl, CURLINFO_REDIRECT_URL, &loc); /* relative Locations come back absolute */
        if (!loc || !*loc) {
            cvx_fail(err, CVX_ERR_IO, "%s: HTTP %ld redirect without a Location", url, r->status);
            *redirect_err = 1;
            break;
        }
        if (!url_is_http(loc) || (url_is_https(url) && !url_is_https(loc))) {
            cvx_fail(err, CVX_ERR_IO, "%s: refusing to follow a redirect to %.200s", url, loc);
            *redirect_err = 1;
            break;
        }
        if (hop + 1 >= HUB_MAX_REDIRECTS) {
            cvx_fail(err, CVX_ERR_IO, "%s: more than %d redirects", url0, HUB_MAX_REDIRECTS);
            *redirect_err = 1;
            break;
        }
        char *next = xstrdup(loc);
        if (!next) {
            cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            *redirect_err = 1;
            break;
        }
        free(url);
        url = next;
    }
    free(url);
    return rc;
}

static int transient_curl(CURLcode rc) {
    switch (rc) {
    case CURLE_COULDNT_RESOLVE_PROXY:
    case CURLE_COULDNT_RESOLVE_HOST:
    case CURLE_COULDNT_CONNECT:
    case CURLE_PARTIAL_FILE:
    case CURLE_OPERATION_TIMEDOUT:
    case CURLE_SEND_ERROR:
    case CURLE_RECV_ERROR:
    case CURLE_GOT_NOTHING:
    case CURLE_SSL_CONNECT_ERROR:
    case CURLE_HTTP2:
    case CURLE_HTTP2_STREAM:
        return 1;
    default:
        return 0;
    }
}

static int transient_status(long s) { return s == 408 || s == 429 || s == 500 || s == 502 || s == 503 || s == 504; }

/* A readable message for a failed HTTP answer, in hf_raise_for_status's terms. */
static cvx_status http_error(hub_ctx *c, const http_resp *r, const char *what, const char *repo_id,
                             const char *revision, cvx_error *err) {
    const char *msg = r->error_message[0] ? r->error_message : "";
    if (!strcmp(r->error_code, "RepoNotFound") || (r->status == 401 && !c->token)) {
        if (!c->token)
            return cvx_fail(err, CVX_ERR_NOT_FOUND,
                            "repository '%s' not found on %s (HTTP %ld); if it is private or gated, give a token "
                            "(HF_TOKEN or --token)",
                            repo_id, c->endpoint, r->status);
        return cvx_fail(err, CVX_ERR_NOT_FOUND,
                        "repository '%s' not found on %s (HTTP %ld), or the token has no access to it", repo_id,
                        c->endpoint, r->status);
    }
    if (!strcmp(r->error_code, "RevisionNotFound"))
        return cvx_fail(err, CVX_ERR_NOT_FOUND, "revision '%s' not found in '%s' (HTTP %ld)", revision, repo_id,
                        r->status);
    if (!strcmp(r->error_code, "GatedRepo"))
        return cvx_fail(err, CVX_ERR_IO,
                        "'%s' is gated (HTTP %ld): accept its conditions at %s/%s with the account of the token%s%s",
                        repo_id, r->status, c->endpoint, repo_id, *msg ? ": " : "", msg);
    if (!strcmp(r->error_code, "EntryNotFound") || r->status == 404)
        return cvx_fail(err, CVX_ERR_NOT_FOUND, "%s: not found (HTTP %ld)%s%s", what, r->status, *msg ? ": " : "",
                        msg);
    if (r->status == 401)
        return cvx_fail(err, CVX_ERR_IO, "%s: the token was refused (HTTP 401)%s%s", what, *msg ? ": " : "", msg);
    if (r->status == 403)
        return cvx_fail(err, CVX_ERR_IO, "%s: access denied (HTTP 403)%s%s", what, *msg ? ": " : "", msg);
    char body[160] = "";
    if (!*msg && r->body_len) {
        size_t k = 0;
        for (size_t i = 0; i < r->body_len && k + 1 < sizeof body; i++)
            body[k++] = (r->body[i] >= 0x20 && r->body[i] < 0x7f) ? r->body[i] : ' ';
        body[k] = 0;
        msg = body;
    }
    return cvx_fail(err, CVX_ERR_IO, "%s: HTTP %ld%s%s", what, r->status, *msg ? ": " : "", msg);
}

/* Pause before the next attempt: base · 2^(fails−1), at most max (or Retry-After when the server says, up to
 * max); wakes up early on cancel. */
static double backoff_delay(const hub_ctx *c, int fails, const http_resp *r) {
    double d = c->p->retry_base_s;
    for (int i = 1; i < fails && d < c->p->retry_max_s; i++) d *= 2;
    if (r && r->retry_after[0]) {
        char *end;
        double ra = strtod(r->retry_after, &end);
        if (end != r->retry_after && ra > d) d = ra;
    }
    return d < c->p->retry_max_s ? d : c->p->retry_max_s;
}

static void sleep_cancellable(const hub_ctx *c, double s) {
    double until = cvx_time_seconds() + s;
    while (!cancelled(c)) {
        double left = until - cvx_time_seconds();
        if (left <= 0) break;
        if (left > 0.05) left = 0.05;
        struct timespec ts = {0, (long)(left * 1e9)};
        nanosleep(&ts, NULL);
    }
}

static void describe_transient(char *buf, size_t size, const hub_ctx *c, CURLcode rc, const http_resp *r,
                               const char *what) {
    if (rc != CURLE_OK)
        snprintf(buf, size, "%.300s: %.100s%s%.160s", what, curl_easy_strerror(rc), c->curl_err[0] ? ": " : "",
                 c->curl_err);
    else
        snprintf(buf, size, "%.300s: HTTP %ld", what, r->status);
}

/* ---- context --------------------------------------------------------------------------------------------- */
cvx_hub_params cvx_hub_params_default(void) {
    cvx_hub_params p = {0};
    p.max_retries = 5;
    p.retry_base_s = 1.0;
    p.retry_max_s = 30.0;
    p.connect_timeout_s = 30;
    p.stall_timeout_s = 60;
    p.progress_interval_s = 0.1;
    return p;
}

static void ctx_free(hub_ctx *c) {
    if (!c) return;
    if (c->curl) curl_easy_cleanup(c->curl);
    free(c->endpoint);
    free(c->token);
}

static cvx_status ctx_init(hub_ctx *c, const cvx_hub_params *p, cvx_error *err) {
    memset(c, 0, sizeof *c);
    c->p = p;
    c->t0 = cvx_time_seconds();
    const char *ep = p->endpoint;
    if (!ep) ep = getenv("HF_ENDPOINT");
    if (!ep || !*ep) ep = CVX_HUB_DEFAULT_ENDPOINT;
    if (!url_is_http(ep))
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "hub endpoint '%.200s' is not an http(s):// URL", ep);
    if (!(c->endpoint = xstrdup(ep))) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    for (size_t n = strlen(c->endpoint); n > 0 && c->endpoint[n - 1] == '/'; n--) c->endpoint[n - 1] = 0;
    if (url_origin(c->endpoint, c->origin, sizeof c->origin) != 0) {
        cvx_status st = cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "hub endpoint '%.200s' is not a valid URL", ep);
        ctx_free(c);
        return st;
    }
    const char *tok = p->token ? p->token : getenv("HF_TOKEN");
    if (tok && *tok) {
        for (const char *s = tok; *s; s++)
            if ((unsigned char)*s < 0x21 || *s == 0x7f) {
                ctx_free(c);
                return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "the hub token holds spaces or control characters");
            }
        if (!(c->token = xstrdup(tok))) {
            ctx_free(c);
            return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        }
    }
    pthread_once(&curl_once, curl_init);
    if (curl_init_rc != CURLE_OK || !(c->curl = curl_easy_init())) {
        ctx_free(c);
        return cvx_fail(err, CVX_ERR_INTERNAL, "libcurl could not be initialised");
    }
    CURL *h = c->curl;
    char ua[96];
    snprintf(ua, sizeof ua, "cogvideox/%s; %s", cvx_version(), curl_version());
    curl_easy_setopt(h, CURLOPT_USERAGENT, ua);
    curl_easy_setopt(h, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(h, CURLOPT_FOLLOWLOCATION, 0L); /* by hand: see hub.h */
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(h, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(h, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYPEER, 1L);
    curl_easy_setopt(h, CURLOPT_SSL_VERIFYHOST, 2L);
    curl_easy_setopt(h, CURLOPT_CONNECTTIMEOUT, p->connect_timeout_s > 0 ? p->connect_timeout_s : 30L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_LIMIT, 1L);
    curl_easy_setopt(h, CURLOPT_LOW_SPEED_TIME, p->stall_timeout_s > 0 ? p->stall_timeout_s : 60L);
    curl_easy_setopt(h, CURLOPT_HEADERFUNCTION, on_header);
    curl_easy_setopt(h, CURLOPT_WRITEFUNCTION, on_body);
    curl_easy_setopt(h, CURLOPT_XFERINFOFUNCTION, on_xfer);
    curl_easy_setopt(h, CURLOPT_XFERINFODATA, c);
    curl_easy_setopt(h, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(h, CURLOPT_ERRORBUFFER, c->curl_err);
    curl_easy_setopt(h, CURLOPT_BUFFERSIZE, 256L * 1024); /* fewer write() calls on multi-GB files */
    return CVX_OK;
}

/* ---- listing --------------------------------------------------------------------------------------------- */
void cvx_hub_listing_free(cvx_hub_listing *l) {
    if (!l) return;
    for (size_t i = 0; i < l->n_files; i++) free(l->files[i].path);
    free(l->files);
    free(l->endpoint);
    free(l->repo_id);
    free(l->revision);
    free(l->commit);
    free(l);
}

static cvx_status parse_listing(cvx_hub_listing *l, const char *body, size_t len, const char *url,
                                cvx_error *err) {
    json_error_t je;
    json_t *root = json_loadb(body, len, 0, &je);
    if (!root) return cvx_fail(err, CVX_ERR_FORMAT, "%s: the answer is not JSON (%s)", url, je.text);
    cvx_status st = CVX_OK;
    json_t *sha = json_object_get(root, "sha");
    json_t *sib = json_object_get(root, "siblings");
    if (!json_is_object(root) || !json_is_array(sib)) {
        st = cvx_fail(err, CVX_ERR_FORMAT, "%s: the answer has no \"siblings\" list of files", url);
        goto done;
    }
    if (json_is_string(sha)) {
        const char *s = json_string_value(sha);
        if (!is_hex(s, strlen(s)) || strlen(s) < 7 || strlen(s) > 64) {
            st = cvx_fail(err, CVX_ERR_FORMAT, "%s: \"sha\" is not a commit id", url);
            goto done;
        }
        l->commit = xstrdup(s);
    } else {
        l->commit = xstrdup(l->revision);
    }
    size_t n = json_array_size(sib);
    l->files = calloc(n ? n : 1, sizeof *l->files);
    if (!l->commit || !l->files) {
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        json_t *e = json_array_get(sib, i);
        json_t *name = json_object_get(e, "rfilename");
        if (!json_is_object(e) || !json_is_string(name)) {
            st = cvx_fail(err, CVX_ERR_FORMAT, "%s: siblings[%zu] has no \"rfilename\"", url, i);
            goto done;
        }
        cvx_hub_file *f = &l->files[l->n_files];
        const char *path = json_string_value(name);
        json_t *size = json_object_get(e, "size");
        json_t *blob = json_object_get(e, "blobId");
        json_t *lfs = json_object_get(e, "lfs");
        if (size && !json_is_null(size)) {
            if (!json_is_integer(size) || json_integer_value(size) < 0) {
                st = cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%.200s\": bad \"size\"", url, path);
                goto done;
            }
            f->size = (uint64_t)json_integer_value(size);
            f->has_size = 1;
        }
        if (json_is_string(blob) && is_hex(json_string_value(blob), 40)) {
            snprintf(f->blob_id, sizeof f->blob_id, "%s", json_string_value(blob));
            lower(f->blob_id);
        }
        if (lfs && !json_is_null(lfs)) {
            json_t *h = json_object_get(lfs, "sha256");
            if (!json_is_string(h)) h = json_object_get(lfs, "oid"); /* the tree API's spelling */
            json_t *ls = json_object_get(lfs, "size");
            if (!json_is_object(lfs) || !json_is_string(h) || !is_hex(json_string_value(h), 64)) {
                st = cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%.200s\": \"lfs\" has no sha256", url, path);
                goto done;
            }
            if (json_is_integer(ls)) {
                if (json_integer_value(ls) < 0 || (f->has_size && (uint64_t)json_integer_value(ls) != f->size)) {
                    st = cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%.200s\": \"lfs\" size disagrees with \"size\"", url,
                                  path);
                    goto done;
                }
                f->size = (uint64_t)json_integer_value(ls);
                f->has_size = 1;
            }
            f->lfs = 1;
            snprintf(f->sha256, sizeof f->sha256, "%s", json_string_value(h));
            lower(f->sha256);
        }
        if (!(f->path = xstrdup(path))) {
            st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
        l->n_files++;
    }
done:
    json_decref(root);
    return st;
}

static cvx_hub_listing *listing_new(const char *endpoint, const char *repo_id, const char *revision) {
    cvx_hub_listing *l = calloc(1, sizeof *l);
    if (!l) return NULL;
    l->endpoint = xstrdup(endpoint);
    l->repo_id = xstrdup(repo_id);
    l->revision = xstrdup(revision);
    if (!l->endpoint || !l->repo_id || !l->revision) {
        cvx_hub_listing_free(l);
        return NULL;
    }
    return l;
}

cvx_status cvx_hub_listing_parse(const char *json, size_t len, const char *endpoint, const char *repo_id,
                                 const char *revision, const char *where, cvx_hub_listing **out, cvx_error *err) {
    if (!out) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "cvx_hub_listing_parse: out is NULL");
    *out = NULL;
    if (!json || !endpoint || !repo_id || !revision)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "cvx_hub_listing_parse: NULL argument");
    cvx_hub_listing *l = listing_new(endpoint, repo_id, revision);
    if (!l) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    cvx_status st = parse_listing(l, json, len, where ? where : "listing", err);
    if (st) {
        cvx_hub_listing_free(l);
        return st;
    }
    *out = l;
    return CVX_OK;
}

static cvx_status list_with(hub_ctx *c, const char *repo_id, cvx_hub_listing **out, cvx_error *err) {
    *out = NULL;
    if (!cvx_hub_valid_repo_id(repo_id))
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                        "'%.200s' is not a repository id (expected owner/name, e.g. THUDM/CogVideoX-2b)",
                        repo_id ? repo_id : "(null)");
    const char *rev = c->p->revision && *c->p->revision ? c->p->revision : "main";
    char qrev[768], url[2048];
    if (strlen(rev) > 255 || quote(qrev, sizeof qrev, rev, "") != 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "revision '%.100s…' is too long", rev);
    snprintf(url, sizeof url, "%s/api/models/%s/revision/%s?blobs=true", c->endpoint, repo_id, qrev);

    cvx_hub_listing *l = listing_new(c->endpoint, repo_id, rev);
    if (!l) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    http_resp r = {0};
    r.body_limit = HUB_MAX_LISTING_BYTES;
    cvx_status st = CVX_OK;
    c->file = NULL;
    for (int fails = 0;;) {
        int redirect_err;
        CURLcode rc = http_get(c, url, -1, &r, err, &redirect_err);
        if (redirect_err) {
            st = err ? err->status : CVX_ERR_IO;
            break;
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK && cancelled(c)) {
            st = cvx_fail(err, CVX_ERR_CANCELLED, "download cancelled");
            break;
        }
        if (rc == CURLE_OK && r.status >= 200 && r.status < 300) {
            st = parse_listing(l, r.body ? r.body : "", r.body_len, url, err);
            break;
        }
        if (r.body_too_big) {
            st = cvx_fail(err, CVX_ERR_FORMAT, "%s: the answer is larger than %u MB", url, HUB_MAX_LISTING_BYTES >> 20);
            break;
        }
        if (!(rc != CURLE_OK ? transient_curl(rc) : transient_status(r.status))) {
            if (rc != CURLE_OK)
                st = cvx_fail(err, CVX_ERR_IO, "%s: %s%s%s", url, curl_easy_strerror(rc), c->curl_err[0] ? ": " : "",
                              c->curl_err);
            else
                st = http_error(c, &r, url, repo_id, rev, err);
            break;
        }
        char why[600];
        describe_transient(why, sizeof why, c, rc, &r, url);
        if (++fails > c->p->max_retries) {
            st = cvx_fail(err, CVX_ERR_IO, "%s (gave up after %d attempts)", why, fails);
            break;
        }
        double d = backoff_delay(c, fails, rc == CURLE_OK ? &r : NULL);
        emit(c, CVX_HUB_RETRY, 0, fails, d, why);
        sleep_cancellable(c, d);
        if (cancelled(c)) {
            st = cvx_fail(err, CVX_ERR_CANCELLED, "download cancelled");
            break;
        }
    }
    free(r.body);
    if (st) {
        cvx_hub_listing_free(l);
        return st;
    }
    *out = l;
    return CVX_OK;
}

cvx_status cvx_hub_list(const char *repo_id, const cvx_hub_params *params, cvx_hub_listing **out, cvx_error *err) {
    if (!out) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "cvx_hub_list: out is NULL");
    *out = NULL;
    cvx_hub_params def = cvx_hub_params_default();
    hub_ctx c;
    cvx_status st = ctx_init(&c, params ? params : &def, err);
    if (st) return st;
    st = list_with(&c, repo_id, out, err);
    ctx_free(&c);
    return st;
}

/* ---- one file -------------------------------------------------------------------------------------------- */
void cvx_hub_partial_path(char *buf, size_t size, const char *dir, const cvx_hub_file *f) {
    const char *oid = f->lfs ? f->sha256 : f->blob_id[0] ? f->blob_id : "unknown";
    snprintf(buf, size, "%s/.cache/cogvideox/download/%s.%s.incomplete", dir, f->path, oid);
}

/* What a file can be checked against: its hash (sha256 for LFS, the git blob id otherwise) and size. */
/* size_known: the file's size is known up front (the git id hashes it first). */
static void sink_hash_setup(file_sink *s, const cvx_hub_file *f, int size_known) {
    s->md_type = NULL;
    s->git_blob = 0;
    if (f->lfs) {
        s->md_type = EVP_sha256();
    } else if (f->blob_id[0] && size_known) {
        s->md_type = EVP_sha1();
        s->git_blob = 1;
    }
}

static void hex(const unsigned char *d, unsigned n, char *out) {
    for (unsigned i = 0; i < n; i++) sprintf(out + 2 * i, "%02x", d[i]);
    out[2 * n] = 0;
}

/* Hashes bytes [0, n) of fd into s->md (after md_reset). */
static int hash_prefix(file_sink *s, int fd, uint64_t n) {
    if (!s->md_type || n == 0) return 0;
    enum { CHUNK = 1 << 20 };
    unsigned char *buf = malloc(CHUNK);
    if (!buf) return ENOMEM;
    uint64_t off = 0;
    int rc = 0;
    while (off < n) {
        size_t want = n - off < CHUNK ? (size_t)(n - off) : CHUNK;
        ssize_t got = pread(fd, buf, want, (off_t)off);
        if (got < 0 && errno == EINTR) continue;
        if (got <= 0) {
            rc = got < 0 ? errno : EIO;
            break;
        }
        EVP_DigestUpdate(s->md, buf, (size_t)got);
        off += (uint64_t)got;
    }
    free(buf);
    return rc;
}

/* 1 when the digest in s->md matches the file's id; fills got (hex). */
static int digest_matches(file_sink *s, const cvx_hub_file *f, char *got) {
    unsigned char d[EVP_MAX_MD_SIZE];
    unsigned dn = 0;
    EVP_DigestFinal_ex(s->md, d, &dn);
    hex(d, dn, got);
    return !strcmp(got, f->lfs ? f->sha256 : f->blob_id);
}

/* An already complete file at `path`: 1 when its size and hash are right. */
static int file_verifies(const char *path, const cvx_hub_file *f, EVP_MD_CTX *md) {
    struct stat st;
    if (stat(path, &st) != 0 || !S_ISREG(st.st_mode)) return 0;
    if (f->has_size && (uint64_t)st.st_size != f->size) return 0;
    file_sink s = {0};
    s.md = md;
    s.expected = (uint64_t)st.st_size;
    sink_hash_setup(&s, f, 1);
    if (!s.md_type) return f->has_size; /* nothing but the size to check */
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return 0;
    md_reset(&s);
    int rc = hash_prefix(&s, fd, (uint64_t)st.st_size);
    close(fd);
    char got[2 * EVP_MAX_MD_SIZE + 1];
    return rc == 0 && digest_matches(&s, f, got);
}

static cvx_status download_with(hub_ctx *c, const cvx_hub_listing *l, const cvx_hub_file *f, const char *dir,
                                int *present, cvx_error *err) {
    *present = 0;
    if (!safe_repo_path(f->path))
        return cvx_fail(err, CVX_ERR_FORMAT, "the listing names an unsafe file path '%.200s'", f->path);
    char final_path[4096], partial[4200], url[4096], qpath[3200];
    if (snprintf(final_path, sizeof final_path, "%s/%s", dir, f->path) >= (int)sizeof final_path ||
        quote(qpath, sizeof qpath, f->path, "/") != 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: path too long", f->path);
    cvx_hub_partial_path(partial, sizeof partial, dir, f);
    char qcommit[256];
    if (quote(qcommit, sizeof qcommit, l->commit, "") != 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "revision too long");
    snprintf(url, sizeof url, "%s/%s/resolve/%s/%s", l->endpoint, l->repo_id, qcommit, qpath);

    c->file = f->path;
    c->file_total = f->has_size ? f->size : 0;
    EVP_MD_CTX *md = EVP_MD_CTX_new();
    if (!md) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    if (file_verifies(final_path, f, md)) {
        EVP_MD_CTX_free(md);
        *present = 1;
        emit(c, CVX_HUB_FILE_PRESENT, c->file_total, 0, 0, NULL);
        return CVX_OK;
    }
    int e = mkdir_parent(partial);
    if (e) {
        EVP_MD_CTX_free(md);
        return cvx_fail(err, CVX_ERR_IO, "%s: cannot create its folder: %s", partial, strerror(e));
    }
    int fd = open(partial, O_RDWR | O_CREAT | O_CLOEXEC, 0644);
    if (fd < 0) {
        EVP_MD_CTX_free(md);
        return cvx_fail(err, CVX_ERR_IO, "%s: %s", partial, strerror(errno));
    }
    if (flock(fd, LOCK_EX | LOCK_NB) != 0) {
        close(fd);
        EVP_MD_CTX_free(md);
        return cvx_fail(err, CVX_ERR_IO, "%s: another process is downloading it", partial);
    }

    http_resp r = {0};
    r.body_limit = HUB_MAX_ERROR_BODY;
    file_sink s = {0};
    s.fd = fd;
    s.md = md;
    s.ctx = c;
    s.has_expected = f->has_size;
    s.expected = f->size;
    r.sink = &s;
    cvx_status st = CVX_OK;
    int complete = 0, drop_partial = 0, fails = 0;
    for (int attempt = 1;; attempt++) {
        struct stat sb;
        if (fstat(fd, &sb) != 0) {
            st = cvx_fail(err, CVX_ERR_IO, "%s: %s", partial, strerror(errno));
            break;
        }
        uint64_t have = (uint64_t)sb.st_size;
        if (f->has_size && have > f->size) { /* not a prefix of this file: start over */
            if (ftruncate(fd, 0) != 0) {
                st = cvx_fail(err, CVX_ERR_IO, "%s: %s", partial, strerror(errno));
                break;
            }
            have = 0;
        }
        if (!f->has_size && have > 0 && ftruncate(fd, 0) == 0) have = 0; /* an unknown end cannot be resumed */
        s.offset = have;
        s.written = 0;
        s.begun = s.restarted = s.overflow = s.range_bad = s.io_errno = 0;
        sink_hash_setup(&s, f, f->has_size);
        md_reset(&s);
        if ((e = hash_prefix(&s, fd, have)) != 0 || lseek(fd, (off_t)have, SEEK_SET) < 0) {
            st = cvx_fail(err, CVX_ERR_IO, "%s: %s", partial, strerror(e ? e : errno));
            break;
        }
        if (attempt == 1) emit(c, CVX_HUB_FILE_START, have, 0, 0, NULL);
        if (f->has_size && have == f->size) { /* complete before (interrupted between the last byte and rename) */
            complete = 1;
            break;
        }
        if (attempt > HUB_MAX_ATTEMPTS) {
            st = cvx_fail(err, CVX_ERR_IO, "%s: gave up after %d attempts", f->path, HUB_MAX_ATTEMPTS);
            break;
        }
        c->last_progress = cvx_time_seconds();
        int redirect_err;
        CURLcode rc = http_get(c, url, have > 0 ? (long long)have : -1, &r, err, &redirect_err);
        if (redirect_err) {
            st = err ? err->status : CVX_ERR_IO;
            break;
        }
        if (rc == CURLE_ABORTED_BY_CALLBACK && cancelled(c)) {
            st = cvx_fail(err, CVX_ERR_CANCELLED, "download cancelled");
            break;
        }
        if (s.io_errno) {
            st = cvx_fail(err, CVX_ERR_IO, "%s: writing: %s", partial, strerror(s.io_errno));
            break;
        }
        if (s.overflow) {
            drop_partial = 1;
            char hb[32];
            st = cvx_fail(err, CVX_ERR_MISMATCH, "%s: the server sent more than the listed %s", f->path,
                          cvx_format_bytes(f->size, hb, sizeof hb));
            break;
        }
        uint64_t now_have = s.offset + s.written;
        int progressed = s.written > 0;
        char why[700];
        why[0] = 0;
        if (rc == CURLE_OK && r.status >= 200 && r.status < 300 && !s.begun) sink_begin(&s, &r); /* empty body */
        if (s.range_bad) {
            snprintf(why, sizeof why, "%s: the server's Content-Range '%s' does not start at byte %llu", f->path,
                     r.content_range, (unsigned long long)have);
            if (ftruncate(fd, 0) != 0) {
                st = cvx_fail(err, CVX_ERR_IO, "%s: %s", partial, strerror(errno));
                break;
            }
        } else if (rc != CURLE_OK) {
            if (!transient_curl(rc)) {
                st = cvx_fail(err, CVX_ERR_IO, "%s: %s%s%s", url, curl_easy_strerror(rc), c->curl_err[0] ? ": " : "",
                              c->curl_err);
                break;
            }
            describe_transient(why, sizeof why, c, rc, &r, f->path);
        } else if (r.status >= 200 && r.status < 300) {
            now_have = s.offset + s.written;
            if (!f->has_size || now_have == f->size) {
                complete = 1;
                break;
            }
            char a[32], b[32];
            snprintf(why, sizeof why, "%s: the connection ended after %s of %s", f->path,
                     cvx_format_bytes(now_have, a, sizeof a), cvx_format_bytes(f->size, b, sizeof b));
        } else if (r.status == 416) {
            /* Nothing after `have`: either it is all there (checked above) or the partial file is not ours. */
            snprintf(why, sizeof why, "%s: the server refused the range from byte %llu", f->path,
                     (unsigned long long)have);
            if (ftruncate(fd, 0) != 0) {
                st = cvx_fail(err, CVX_ERR_IO, "%s: %s", partial, strerror(errno));
                break;
            }
        } else if (transient_status(r.status)) {
            describe_transient(why, sizeof why, c, rc, &r, f->path);
        } else {
            st = http_error(c, &r, f->path, l->repo_id, l->revision, err);
            break;
        }
        if (progressed) fails = 0;
        if (++fails > c->p->max_retries) {
            st = cvx_fail(err, CVX_ERR_IO, "%s (gave up after %d failures in a row; run again to resume)", why,
                          fails);
            break;
        }
        double d = backoff_delay(c, fails, rc == CURLE_OK ? &r : NULL);
        emit(c, CVX_HUB_RETRY, now_have, attempt, d, why);
        sleep_cancellable(c, d);
        if (cancelled(c)) {
            st = cvx_fail(err, CVX_ERR_CANCELLED, "download cancelled");
            break;
        }
    }
    free(r.body);

    if (complete) {
        uint64_t size = 0;
        struct stat sb;
        if (fstat(fd, &sb) == 0) size = (uint64_t)sb.st_size;
        char got[2 * EVP_MAX_MD_SIZE + 1] = "";
        char a[32], b[32];
        if (f->has_size && size != f->size) {
            st = cvx_fail(err, CVX_ERR_MISMATCH, "%s: size mismatch: %s on disk, the hub lists %s", f->path,
                          cvx_format_bytes(size, a, sizeof a), cvx_format_bytes(f->size, b, sizeof b));
            drop_partial = 1;
        } else if (s.md_type && !digest_matches(&s, f, got)) {
            st = cvx_fail(err, CVX_ERR_MISMATCH, "%s: %s mismatch: got %s, the hub lists %s", f->path,
                          f->lfs ? "sha256" : "git blob id", got, f->lfs ? f->sha256 : f->blob_id);
            drop_partial = 1;
        } else if (fsync(fd) != 0) {
            st = cvx_fail(err, CVX_ERR_IO, "%s: fsync: %s", partial, strerror(errno));
        } else if ((e = mkdir_parent(final_path)) != 0) {
            st = cvx_fail(err, CVX_ERR_IO, "%s: cannot create its folder: %s", final_path, strerror(e));
        } else if (rename(partial, final_path) != 0) {
            st = cvx_fail(err, CVX_ERR_IO, "%s: rename into place: %s", final_path, strerror(errno));
        } else {
            emit(c, CVX_HUB_FILE_DONE, size, 0, 0, NULL);
        }
    }
    if (drop_partial) unlink(partial);
    close(fd);
    EVP_MD_CTX_free(md);
    return st;
}

cvx_status cvx_hub_download_file(const cvx_hub_listing *l, const cvx_hub_file *f, const char *dir,
                                 const cvx_hub_params *params, uint64_t *received, cvx_error *err) {
    if (received) *received = 0;
    if (!l || !f || !dir) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "cvx_hub_download_file: NULL argument");
    cvx_hub_params def = cvx_hub_params_default();
    hub_ctx c;
    cvx_status st = ctx_init(&c, params ? params : &def, err);
    if (st) return st;
    /* The listing's endpoint is where its files live, whatever params or the environment say now. */
    free(c.endpoint);
    c.endpoint = xstrdup(l->endpoint);
    if (!c.endpoint || url_origin(c.endpoint, c.origin, sizeof c.origin) != 0) {
        ctx_free(&c);
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "the listing's endpoint is not a URL");
    }
    c.count = 1;
    c.total = f->has_size ? f->size : 0;
    int present;
    st = download_with(&c, l, f, dir, &present, err);
    if (received) *received = c.received;
    ctx_free(&c);
    return st;
}

/* Removes DIR/.cache/cogvideox/download/… folders left empty (best effort; only empty folders go). */
static void prune_cache(const char *dir, const char *const *sel, size_t n_sel) {
    char p[4200];
    for (size_t i = 0; i < n_sel; i++) {
        snprintf(p, sizeof p, "%s/.cache/cogvideox/download/%s", dir, sel[i]);
        for (char *s = strrchr(p, '/'); s; s = strrchr(p, '/')) {
            *s = 0;
            if (strlen(p) <= strlen(dir)) break;
            if (rmdir(p) != 0) break;
        }
    }
}

cvx_status cvx_hub_download(const char *repo_id, const char *dir, const cvx_hub_params *params, cvx_hub_result *res,
                            cvx_error *err) {
    if (res) memset(res, 0, sizeof *res);
    if (!dir || !*dir) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "no output folder");
    cvx_hub_params def = cvx_hub_params_default();
    if (!params) params = &def;
    hub_ctx c;
    cvx_status st = ctx_init(&c, params, err);
    if (st) return st;
    cvx_hub_listing *l = NULL;
    const char **sel_path = NULL;
    size_t *sel = NULL, n_sel = 0;
    if ((st = list_with(&c, repo_id, &l, err))) goto done;
    sel = malloc((l->n_files ? l->n_files : 1) * sizeof *sel);
    sel_path = malloc((l->n_files ? l->n_files : 1) * sizeof *sel_path);
    if (!sel || !sel_path) {
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    int has_index = 0;
    for (size_t i = 0; i < l->n_files; i++) {
        const cvx_hub_file *f = &l->files[i];
        if (!params->all_files && !cvx_hub_wanted(f->path)) continue;
        if (!safe_repo_path(f->path)) {
            st = cvx_fail(err, CVX_ERR_FORMAT, "%s: the listing names an unsafe file path '%.200s'", repo_id,
                          f->path);
            goto done;
        }
        if (!strcmp(f->path, "model_index.json")) has_index = 1;
        sel_path[n_sel] = f->path;
        sel[n_sel++] = i;
        c.total += f->size;
    }
    if (!params->all_files && !has_index) {
        st = cvx_fail(err, CVX_ERR_NOT_FOUND,
                      "'%s' at %s has no model_index.json: not a diffusers pipeline folder (--all downloads every "
                      "file anyway)",
                      repo_id, l->revision);
        goto done;
    }
    int e = cvx_mkdirs(dir);
    if (e) {
        st = cvx_fail(err, CVX_ERR_IO, "%s: cannot create it: %s", dir, strerror(e));
        goto done;
    }
    if (res) {
        /* The commit the API named (parse_listing falls back to the revision when it named none). */
        int named = is_hex(l->commit, strlen(l->commit)) && strlen(l->commit) >= 40 && strlen(l->commit) <= 64;
        snprintf(res->commit, sizeof res->commit, "%s", named ? l->commit : "");
        res->n_files = (int)n_sel;
        res->bytes = c.total;
    }
    c.count = (int)n_sel;
    emit(&c, CVX_HUB_LISTED, 0, 0, 0, NULL);
    /* model_index.json goes last, as make-model writes it: an interrupted download leaves a folder that
     * does not open as a model. */
    for (int pass = 0; pass < 2; pass++) {
        for (size_t k = 0; k < n_sel; k++) {
            const cvx_hub_file *f = &l->files[sel[k]];
            if ((pass == 0) == !strcmp(f->path, "model_index.json")) continue;
            c.index = (int)k;
            int present = 0;
            st = download_with(&c, l, f, dir, &present, err);
            if (st) goto done;
            c.done_before += f->size;
            if (res) present ? res->n_present++ : res->n_fetched++;
        }
    }
    prune_cache(dir, sel_path, n_sel);
done:
    if (res) res->received = c.received;
    free(sel);
    free(sel_path);
    cvx_hub_listing_free(l);
    ctx_free(&c);
    return st;
}
