/* The callback threads: POST the Task/Detail body of a task that reached task_postprocess_end or task_cancel to its
 * callbackUrl (libcurl, short timeouts, no redirects), up to callback_tries times with a doubling back-off. What is
 * due lives in the store (cb_state, cb_next), so a callback survives a restart and a slow receiver never holds up
 * the worker. A small pool delivers (callback_threads), at most one delivery per project at a time, so a receiver
 * that hangs delays only its own project's callbacks. Unless allow_private_callbacks, a connection to a loopback,
 * link-local, private or otherwise internal address is refused (every address a name resolves to is checked, so a
 * name that points inside fails as an IP literal does at Run). The first thread also deletes outputs past
 * --retention-days (files go, records stay). */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include <curl/curl.h>

#include "service/internal.h"

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ud) {
    (void)ptr;
    (void)ud;
    return size * nmemb;
}

/* 1 when an IPv4 address (network order) is one a callback may not reach: this host, private networks,
 * link-local (cloud metadata), carrier-grade NAT, multicast, reserved. */
static int ipv4_internal(uint32_t be) {
    uint32_t a = ntohl(be);
    return (a >> 24) == 0 || (a >> 24) == 10 || (a >> 24) == 127 || (a >> 16) == 0xa9fe /* 169.254 */ ||
           (a >> 20) == 0xac1 /* 172.16/12 */ || (a >> 16) == 0xc0a8 /* 192.168 */ ||
           (a >> 22) == (100u << 2 | 1) /* 100.64/10 */ || (a >> 8) == 0xc00000 /* 192.0.0/24 */ ||
           (a >> 17) == (198u << 7 | 9) /* 198.18/15 */ || (a >> 28) >= 0xe /* multicast, reserved */;
}

int cvx_svc_addr_internal(const struct sockaddr *sa) {
    if (sa->sa_family == AF_INET) return ipv4_internal(((const struct sockaddr_in *)sa)->sin_addr.s_addr);
    if (sa->sa_family != AF_INET6) return 1;
    const uint8_t *b = ((const struct sockaddr_in6 *)sa)->sin6_addr.s6_addr;
    static const uint8_t zero[16] = {0};
    if (!memcmp(b, zero, 15) && (b[15] == 0 || b[15] == 1)) return 1; /* :: and ::1 */
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    if (!memcmp(b, mapped, 12) || !memcmp(b, zero, 12)) { /* ::ffff:a.b.c.d, ::a.b.c.d */
        uint32_t v4;
        memcpy(&v4, b + 12, 4);
        return ipv4_internal(v4);
    }
    return (b[0] & 0xfe) == 0xfc /* fc00::/7 unique local */ || (b[0] == 0xfe && (b[1] & 0xc0) == 0x80) /* fe80::/10 */ ||
           (b[0] == 0xfe && (b[1] & 0xc0) == 0xc0) /* fec0::/10 */ || b[0] == 0xff /* multicast */ ||
           (b[0] == 0x20 && b[1] == 0x02) /* 6to4 embeds any IPv4 */ || (b[0] == 0x00 && b[1] == 0x64 && b[2] == 0xff && b[3] == 0x9b); /* NAT64 */
}

static curl_socket_t open_checked(void *ud, curlsocktype purpose, struct curl_sockaddr *addr) {
    cvx_svc *svc = ud;
    (void)purpose;
    if (!svc->cfg.allow_private_callbacks && cvx_svc_addr_internal(&addr->addr)) return CURL_SOCKET_BAD;
    return socket(addr->family, addr->socktype, addr->protocol);
}

/* 0 delivered (2xx), -1 not. */
static int deliver(cvx_svc *svc, const cvx_svc_task *t, long *http_code, char *why, size_t why_size) {
    char base[512];
    cvx_svc_default_base(svc, base, sizeof base);
    json_t *task = cvx_svc_task_json(svc, t, base);
    json_t *body = json_pack("{s:s, s:[], s:[o], s:b}", "total", "1", "errors", "tasklist", task, "result", 1);
    char *text = body ? json_dumps(body, JSON_COMPACT) : NULL;
    json_decref(body);
    if (!text) {
        snprintf(why, why_size, "out of memory");
        return -1;
    }
    CURL *c = curl_easy_init();
    if (!c) {
        free(text);
        snprintf(why, why_size, "curl_easy_init failed");
        return -1;
    }
    struct curl_slist *hdr = curl_slist_append(NULL, "Content-Type: application/json");
    curl_easy_setopt(c, CURLOPT_URL, t->callbackurl);
    curl_easy_setopt(c, CURLOPT_POSTFIELDS, text);
    curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdr);
    curl_easy_setopt(c, CURLOPT_USERAGENT, "cogvideox-serve/" CVX_VERSION_STRING);
    curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(c, CURLOPT_TIMEOUT_MS, (long)svc->cfg.callback_timeout_ms);
    curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT_MS, (long)(svc->cfg.callback_timeout_ms / 2 + 1));
    curl_easy_setopt(c, CURLOPT_FOLLOWLOCATION, 0L);
#if LIBCURL_VERSION_NUM >= 0x075500
    curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
#else
    curl_easy_setopt(c, CURLOPT_PROTOCOLS, (long)(CURLPROTO_HTTP | CURLPROTO_HTTPS));
#endif
    curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, discard);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETFUNCTION, open_checked);
    curl_easy_setopt(c, CURLOPT_OPENSOCKETDATA, svc);
    curl_easy_setopt(c, CURLOPT_NOPROXY, "*"); /* the check must see the receiver's address, not a proxy's */
    CURLcode rc = curl_easy_perform(c);
    *http_code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_code);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    free(text);
    if (rc == CURLE_COULDNT_CONNECT && !svc->cfg.allow_private_callbacks) {
        snprintf(why, why_size, "%s (or its address is internal, which callbacks may not reach)", curl_easy_strerror(rc));
        return -1;
    }
    if (rc != CURLE_OK) {
        snprintf(why, why_size, "%s", curl_easy_strerror(rc));
        return -1;
    }
    if (*http_code < 200 || *http_code > 299) {
        snprintf(why, why_size, "HTTP %ld", *http_code);
        return -1;
    }
    return 0;
}

static void retention_sweep(cvx_svc *svc) {
    if (svc->cfg.retention_days <= 0) return;
    char err[256];
    long long cutoff = cvx_svc_now_s() - (long long)svc->cfg.retention_days * 86400, ids[256];
    int total = 0, n;
    /* ids first, then each task outside the listing (its store lock is not held while files go) */
    while ((n = cvx_svc_store_outputs_before(svc->store, cutoff, 256, ids, err, sizeof err)) > 0) {
        int done = 0;
        for (int i = 0; i < n; i++) {
            cvx_svc_task t;
            if (cvx_svc_store_task_get(svc->store, ids[i], NULL, &t, err, sizeof err) != 1) continue;
            if (t.out_key[0]) cvx_svc_remove_output(svc, t.out_key, t.id, 0);
            if (cvx_svc_store_input_delete(svc->store, t.id, err, sizeof err) < 0 ||
                cvx_svc_store_output_deleted(svc->store, t.id, err, sizeof err) < 0)
                cvx_svc_log(svc, CVX_LOG_WARN, "retention: task %lld: %s", t.id, err);
            else
                done++;
            cvx_svc_task_clear(&t);
        }
        total += done;
        if (done == 0) break;
    }
    if (n < 0) cvx_svc_log(svc, CVX_LOG_WARN, "retention: %s", err);
    if (total > 0) cvx_svc_log(svc, CVX_LOG_INFO, "retention: deleted the outputs of %d tasks", total);
}

/* One delivery attempt of task id; records the outcome. */
static void deliver_one(cvx_svc *svc, long long id) {
    cvx_svc_task t;
    char err[256];
    int r = cvx_svc_store_task_get(svc->store, id, NULL, &t, err, sizeof err);
    if (r != 1) {
        if (r < 0) cvx_svc_log(svc, CVX_LOG_ERROR, "callbacks: %s", err);
        return;
    }
    if (t.cb_state != CVX_SVC_CB_PENDING) {
        cvx_svc_task_clear(&t);
        return;
    }
    /* one delivery however many API nodes scan the store: the claim moves the due time past this try (a lease) */
    long long now = cvx_svc_now_ms();
    int claimed = cvx_svc_store_callback_claim(svc->store, id, now, now + svc->cfg.callback_timeout_ms + 30000, err,
                                               sizeof err);
    if (claimed != 1) {
        if (claimed < 0) cvx_svc_log(svc, CVX_LOG_ERROR, "callbacks: %s", err);
        cvx_svc_task_clear(&t);
        return;
    }
    long code = 0;
    char why[320] = "";
    int tries = t.cb_tries + 1;
    int ok = deliver(svc, &t, &code, why, sizeof why) == 0;
    int state = ok ? CVX_SVC_CB_DELIVERED : (tries >= svc->cfg.callback_tries ? CVX_SVC_CB_FAILED : CVX_SVC_CB_PENDING);
    long long due = 0;
    if (state == CVX_SVC_CB_PENDING) due = cvx_svc_now_ms() + (long long)svc->cfg.callback_backoff_ms * (1LL << (tries - 1));
    if (ok) cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: callback delivered (try %d)", t.id, tries);
    else cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: callback try %d/%d failed: %s", t.id, tries, svc->cfg.callback_tries, why);
    if (cvx_svc_store_callback_update(svc->store, t.id, state, tries, due, err, sizeof err) < 0)
        cvx_svc_log(svc, CVX_LOG_ERROR, "callbacks: %s", err);
    cvx_svc_task_clear(&t);
}

#define PENDING_SCAN 64

void *cvx_svc_callbacks_main(void *arg) {
    cvx_svc_callback_thread *self = arg;
    cvx_svc *svc = self->svc;
    long long next_sweep = 0;
    while (!atomic_load(&svc->stopping)) {
        long long now = cvx_svc_now_ms();
        if (self->index == 0 && now >= next_sweep) {
            retention_sweep(svc);
            if (svc->blobs_in_store) cvx_svc_cache_sweep(svc, 86400);
            next_sweep = now + 3600 * 1000LL;
        }
        long long ids[PENDING_SCAN], projects[PENDING_SCAN], due[PENDING_SCAN];
        char err[256];
        int n = cvx_svc_store_callbacks_pending(svc->store, PENDING_SCAN, ids, projects, due, err, sizeof err);
        if (n < 0) cvx_svc_log(svc, CVX_LOG_ERROR, "callbacks: %s", err);
        /* take the earliest due callback whose project has no delivery in flight */
        long long pick = 0, next_ms = 0;
        pthread_mutex_lock(&svc->mu);
        now = cvx_svc_now_ms();
        int more = 0; /* other callbacks due now, of other projects: another thread may take them */
        for (int i = 0; i < n && !more; i++) {
            int busy = 0;
            for (int k = 0; k < svc->cb_threads && !busy; k++)
                busy = svc->cb_inflight[k].task == ids[i] || (svc->cb_inflight[k].task && svc->cb_inflight[k].project == projects[i]);
            if (busy || (pick && projects[i] == self->slot->project)) continue; /* a delivery ending wakes a thread */
            if (due[i] <= now && !pick) pick = ids[i], self->slot->task = ids[i], self->slot->project = projects[i];
            else if (due[i] <= now) more = 1;
            else if (!next_ms || due[i] < next_ms) next_ms = due[i];
        }
        if (more) pthread_cond_signal(&svc->wake_callbacks);
        if (!pick && !svc->callbacks_wake && !atomic_load(&svc->stopping)) {
            /* callbacks of tasks that a worker in another process finished are found by the next scan: 2 s */
            long long wait_ms = next_ms ? next_ms - now : 2000;
            if (n < 0) wait_ms = 1000; /* do not spin on a failing store */
            if (n == PENDING_SCAN && !next_ms) wait_ms = 1000; /* more may wait past the scan */
            if (wait_ms > 2000) wait_ms = 2000;
            if (wait_ms < 1) wait_ms = 1;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += (wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&svc->wake_callbacks, &svc->mu, &ts);
        }
        if (!pick) svc->callbacks_wake = 0;
        pthread_mutex_unlock(&svc->mu);
        if (!pick) continue;
        deliver_one(svc, pick);
        pthread_mutex_lock(&svc->mu);
        self->slot->task = self->slot->project = 0;
        pthread_cond_signal(&svc->wake_callbacks); /* the project's next callback may go now */
        pthread_mutex_unlock(&svc->mu);
    }
    return NULL;
}
