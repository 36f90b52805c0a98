/* cvx_svc_start/stop: the service core (core.c), then the HTTP side (http.c), the worker and the pool of callback
 * threads on top of it; stopped in the reverse order. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "service/internal.h"

int cvx_svc_port(const cvx_svc *svc) { return svc->port; }

int cvx_svc_start(cvx_svc **out, const cvx_svc_config *config, char *err, size_t n) {
    *out = NULL;
    cvx_svc *svc;
    if (cvx_svc_core_open(&svc, config, err, n)) return -1;
    if (config->no_worker && config->no_http) {
        snprintf(err, n, "a service with neither HTTP nor a worker does nothing");
        cvx_svc_core_close(svc);
        return -1;
    }
    if (!config->no_http && cvx_svc_http_start(svc, err, n)) {
        cvx_svc_stop(svc);
        return -1;
    }
    if (!config->no_worker) {
        if (pthread_create(&svc->worker, NULL, cvx_svc_worker_main, svc)) {
            snprintf(err, n, "cannot start the worker thread");
            cvx_svc_stop(svc);
            return -1;
        }
        svc->worker_started = 1;
    }
    atomic_store(&svc->ready, 1); /* the worker takes tasks as soon as it runs: /healthz need not wait for it */
    if (config->no_http) { /* a worker process: callbacks are the API nodes' */
        *out = svc;
        return 0;
    }
    int cb_threads = config->callback_threads < 1 ? 1
                     : config->callback_threads > CVX_SVC_MAX_CALLBACK_THREADS ? CVX_SVC_MAX_CALLBACK_THREADS
                                                                               : config->callback_threads;
    for (int i = 0; i < cb_threads; i++) {
        cvx_svc_callback_thread *ct = &svc->cb_pool[i];
        ct->svc = svc;
        ct->index = i;
        ct->slot = &svc->cb_inflight[i];
        pthread_mutex_lock(&svc->mu); /* the threads read cb_threads under mu */
        int bad = pthread_create(&ct->thread, NULL, cvx_svc_callbacks_main, ct);
        if (!bad) svc->cb_threads++;
        pthread_mutex_unlock(&svc->mu);
        if (bad) {
            snprintf(err, n, "cannot start the callback threads");
            cvx_svc_stop(svc);
            return -1;
        }
    }
    *out = svc;
    return 0;
}

void cvx_svc_stop(cvx_svc *svc) {
    if (!svc) return;
    atomic_store(&svc->stopping, 1);
    cvx_svc_wake_worker(svc);
    pthread_mutex_lock(&svc->mu);
    pthread_cond_broadcast(&svc->wake_callbacks); /* every callback thread sees `stopping` */
    pthread_mutex_unlock(&svc->mu);
    /* no MHD_quiesce_daemon: with an epoll thread pool it races the pool's threads taking the listening socket out
     * of their epoll sets, and the loser aborts the process ("Failed to remove listen FD from epoll set"). Requests
     * that come while the worker stops are served (healthz says 503; a task Run accepts waits in the store for the
     * next start); cvx_svc_http_stop closes everything. */
    /* the worker stops at the engine's next cancellation check and re-queues its task */
    if (svc->worker_started) pthread_join(svc->worker, NULL);
    for (int i = 0; i < svc->cb_threads; i++) pthread_join(svc->cb_pool[i].thread, NULL);
    if (cvx_svc_http_stop(svc) == 0) cvx_svc_core_close(svc);
}
