/* Input files of Run: URL fetches and decoding (inputs.h). */
#include "service/inputs.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <curl/curl.h>

int cvx_svc_takes_image(const cvx_svc *svc) { return !strcmp(svc->cfg.model.kind, "i2v"); }

int cvx_svc_input_fetch_begin(cvx_svc *svc, long long project) {
    int most = svc->cfg.http_threads - 1;
    if (most > CVX_SVC_FETCH_SLOTS) most = CVX_SVC_FETCH_SLOTS;
    if (most < 1) most = 1;
    int r = 0;
    pthread_mutex_lock(&svc->mu);
    for (int i = 0; i < svc->fetches && !r; i++)
        if (svc->fetch_projects[i] == project) r = 1;
    if (!r && svc->fetches >= most) r = 2;
    if (!r) svc->fetch_projects[svc->fetches++] = project;
    pthread_mutex_unlock(&svc->mu);
    return r;
}

void cvx_svc_input_fetch_end(cvx_svc *svc, long long project) {
    pthread_mutex_lock(&svc->mu);
    for (int i = 0; i < svc->fetches; i++)
        if (svc->fetch_projects[i] == project) {
            svc->fetch_projects[i] = svc->fetch_projects[--svc->fetches];
            break;
        }
    pthread_mutex_unlock(&svc->mu);
}

typedef struct {
    char *data;
    size_t size, cap;
    int too_big;
} fetch_buf;

static size_t on_data(char *p, size_t s, size_t n, void *ud) {
    fetch_buf *b = ud;
    size_t len = s * n;
    if (b->size + len > CVX_SVC_INPUT_MAX) {
        b->too_big = 1;
        return 0; /* aborts the transfer */
    }
    if (b->size + len > b->cap) {
        size_t cap = b->cap ? b->cap * 2 : 65536;
        while (cap < b->size + len) cap *= 2;
        char *d = realloc(b->data, cap);
        if (!d) return 0;
        b->data = d;
        b->cap = cap;
    }
    memcpy(b->data + b->size, p, len);
    b->size += len;
    return len;
}

/* Ends the transfer when the service stops (its HTTP side waits for the fetches before it closes). */
static int on_progress(void *ud, curl_off_t dltotal, curl_off_t dlnow, curl_off_t ultotal, curl_off_t ulnow) {
    const cvx_svc *svc = ud;
    (void)dltotal, (void)dlnow, (void)ultotal, (void)ulnow;
    return atomic_load(&svc->stopping) ? 1 : 0;
}

static curl_socket_t open_checked(void *ud, curlsocktype purpose, struct curl_sockaddr *addr) {
    const cvx_svc *svc = ud;
    (void)purpose;
    if (!svc->cfg.allow_private_inputs && cvx_svc_addr_internal(&addr->addr)) return CURL_SOCKET_BAD;
    return socket(addr->family, addr->socktype, addr->protocol);
}

int cvx_svc_input_fetch(const cvx_svc *svc, const char *url, void **data, size_t *size, char *why, size_t n) {
    *data = NULL;
    *size = 0;
    if (strncasecmp(url, "http://", 7) && strncasecmp(url, "https://", 8)) {
        snprintf(why, n, "must be an http or https URL or a file part");
        return -1;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        snprintf(why, n, "could not be fetched (curl_easy_init failed)");
        return -1;
    }
    fetch_buf b = {0};
    curl_easy_setopt(c, CURLOPT_URL, url);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cogvideox-serve/" CVX_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT, (long)CVX_SVC_INPUT_TIMEOUT_S);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 1L);
    curl_easy_setopt(c, CURLOPT_MAXREDIRS, (long)CVX_SVC_INPUT_REDIRECTS);
    curl_easy_setopt(c, CURLOPT_MAXFILESIZE_LARGE, (curl_off_t)CVX_SVC_INPUT_MAX);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
    curl_easy_setopt(c, CURLOPT_REDIR_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, on_data);
    curl_easy_setopt(c, CURLOPT_WRITEDATA, &b);
    /* every connection (redirects too) is checked against the address it goes to, not the name */
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, (void *)svc);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*");
    curl_easy_setopt(c, CURLOPT_NOPROGRESS, 0L);
    curl_easy_setopt(c, CURLOPT_XFERINFOFUNCTION, on_progress);
    curl_easy_setopt(c, CURLOPT_XFERINFODATA, (void *)svc);
    CURLcode rc = curl_easy_perform(c);
    long code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, &code);
    curl_easy_cleanup(c);
    if (b.too_big || rc == CURLE_FILESIZE_EXCEEDED) {
        snprintf(why, n, "is larger than %u bytes", CVX_SVC_INPUT_MAX);
    } else if (rc == CURLE_COULDNT_CONNECT && !svc->cfg.allow_private_inputs) {
        snprintf(why, n, "could not be fetched: cannot connect (loopback, link-local and private addresses are refused)");
    } else if (rc == CURLE_ABORTED_BY_CALLBACK) {
        snprintf(why, n, "could not be fetched: the service is stopping");
    } else if (rc != CURLE_OK) {
        snprintf(why, n, "could not be fetched: %s", curl_easy_strerror(rc));
    } else if (code < 200 || code > 299) {
        snprintf(why, n, "could not be fetched: HTTP %ld", code);
    } else if (b.size == 0) {
        snprintf(why, n, "is empty");
    } else {
        *data = b.data;
        *size = b.size;
        return 0;
    }
    free(b.data);
    return -1;
}

int cvx_svc_input_decode(const void *data, size_t size, cvx_frames *out, char *why, size_t n) {
    memset(out, 0, sizeof *out);
    if (size == 0) {
        snprintf(why, n, "is empty");
        return -1;
    }
    /* the frame reader reads files: the bytes go to a private temporary file for the time of the decoding */
    const char *tmp = getenv("TMPDIR");
    char path[600];
    snprintf(path, sizeof path, "%s/cvx-input-XXXXXX", tmp && *tmp ? tmp : "/tmp");
    int fd = mkstemp(path);
    if (fd < 0) {
        snprintf(why, n, "could not be decoded (no temporary file: %s)", strerror(errno));
        return -1;
    }
    const char *p = data;
    size_t left = size;
    while (left > 0) {
        ssize_t w = write(fd, p, left);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            snprintf(why, n, "could not be decoded (writing a temporary file: %s)", strerror(errno));
            close(fd);
            unlink(path);
            return -1;
        }
        p += w;
        left -= (size_t)w;
    }
    close(fd);
    cvx_error err;
    cvx_status st = cvx_frames_read_image(path, out, &err);
    unlink(path);
    if (st != CVX_OK) {
        /* the message names the temporary file: keep what follows it */
        const char *msg = cvx_error_message(&err);
        const char *cut = strstr(msg, path);
        if (cut) msg = cut + strlen(path);
        while (*msg == ':' || *msg == ' ') msg++;
        snprintf(why, n, "is not an image that can be decoded (%s)", msg);
        return -1;
    }
    return 0;
}
