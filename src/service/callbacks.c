/* The callback thread: POSTs the Task/Detail body of a task that reached task_postprocess_end or task_cancel to its
 * callbackUrl (libcurl, short timeouts, no redirects), up to callback_tries times with a doubling back-off. What is
 * due lives in the store (cb_state, cb_next), so a callback survives a restart and a slow receiver never holds up
 * the worker. The same thread deletes outputs past --retention-days (files go, records stay). */
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <curl/curl.h>

#include "service/internal.h"

static size_t discard(char *ptr, size_t size, size_t nmemb, void *ud) {
    (void)ptr;
    (void)ud;
    return size * nmemb;
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
    CURLcode rc = curl_easy_perform(c);
    *http_code = 0;
    curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, http_code);
    curl_slist_free_all(hdr);
    curl_easy_cleanup(c);
    free(text);
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

static void expire_one(const cvx_svc_task *t, void *ud) {
    cvx_svc *svc = ud;
    char err[256];
    if (t->out_key[0]) cvx_svc_remove_output(svc, t->out_key);
    if (cvx_svc_store_output_deleted(svc->store, t->id, err, sizeof err) < 0)
        cvx_svc_log(svc, CVX_LOG_WARN, "retention: task %lld: %s", t->id, err);
}

static void retention_sweep(cvx_svc *svc) {
    if (svc->cfg.retention_days <= 0) return;
    char err[256];
    long long cutoff = cvx_svc_now_s() - (long long)svc->cfg.retention_days * 86400;
    int n = cvx_svc_store_outputs_before(svc->store, cutoff, expire_one, svc, err, sizeof err);
    if (n < 0) cvx_svc_log(svc, CVX_LOG_WARN, "retention: %s", err);
    else if (n > 0) cvx_svc_log(svc, CVX_LOG_INFO, "retention: deleted the outputs of %d tasks", n);
}

void *cvx_svc_callbacks_main(void *arg) {
    cvx_svc *svc = arg;
    long long next_sweep = 0;
    while (!atomic_load(&svc->stopping)) {
        long long now = cvx_svc_now_ms();
        if (now >= next_sweep) {
            retention_sweep(svc);
            next_sweep = now + 3600 * 1000LL;
        }
        cvx_svc_task t;
        long long next_ms = 0;
        char err[256];
        int r = cvx_svc_store_callback_due(svc->store, now, &t, &next_ms, err, sizeof err);
        if (r < 0) cvx_svc_log(svc, CVX_LOG_ERROR, "callbacks: %s", err);
        if (r > 0) {
            long code = 0;
            char why[256] = "";
            int tries = t.cb_tries + 1;
            int ok = deliver(svc, &t, &code, why, sizeof why) == 0;
            int state = ok ? CVX_SVC_CB_DELIVERED
                           : (tries >= svc->cfg.callback_tries ? CVX_SVC_CB_FAILED : CVX_SVC_CB_PENDING);
            long long due = 0;
            if (state == CVX_SVC_CB_PENDING) due = cvx_svc_now_ms() + (long long)svc->cfg.callback_backoff_ms * (1LL << (tries - 1));
            if (ok) cvx_svc_log(svc, CVX_LOG_INFO, "task %lld: callback delivered (try %d)", t.id, tries);
            else
                cvx_svc_log(svc, CVX_LOG_WARN, "task %lld: callback try %d/%d failed: %s", t.id, tries,
                            svc->cfg.callback_tries, why);
            if (cvx_svc_store_callback_update(svc->store, t.id, state, tries, due, err, sizeof err) < 0) {
                cvx_svc_log(svc, CVX_LOG_ERROR, "callbacks: %s", err);
                next_ms = cvx_svc_now_ms() + 1000; /* do not spin on a failing store */
            }
            cvx_svc_task_clear(&t);
            if (next_ms == 0) continue;
        }
        pthread_mutex_lock(&svc->mu);
        if (!svc->callbacks_wake && !atomic_load(&svc->stopping)) {
            long long wait_ms = next_ms ? next_ms - cvx_svc_now_ms() : 60000;
            if (r < 0) wait_ms = 1000;
            if (wait_ms > 60000) wait_ms = 60000;
            if (wait_ms < 1) wait_ms = 1;
            struct timespec ts;
            clock_gettime(CLOCK_REALTIME, &ts);
            ts.tv_sec += wait_ms / 1000;
            ts.tv_nsec += (wait_ms % 1000) * 1000000L;
            if (ts.tv_nsec >= 1000000000L) ts.tv_sec++, ts.tv_nsec -= 1000000000L;
            pthread_cond_timedwait(&svc->wake_callbacks, &svc->mu, &ts);
        }
        svc->callbacks_wake = 0;
        pthread_mutex_unlock(&svc->mu);
    }
    return NULL;
}
