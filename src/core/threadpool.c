#include "core/threadpool.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <unistd.h>

struct cvx_pool {
    int nthreads;
    pthread_t *threads;
    pthread_mutex_t mutex;
    pthread_cond_t wake;  /* workers wait for a new generation */
    pthread_cond_t done;  /* the caller waits for workers to finish */
    uint64_t generation;
    int shutdown;
    int active_workers;   /* workers still inside the current job */
    /* current job */
    cvx_pool_fn fn;
    void *ctx;
    int64_t n, chunk;
    atomic_llong next;
};

int cvx_cpu_count(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n > 0 ? (int)n : 1;
}

static void run_chunks(cvx_pool *p, int thread_index) {
    for (;;) {
        int64_t begin = atomic_fetch_add(&p->next, p->chunk);
        if (begin >= p->n) break;
        int64_t end = begin + p->chunk < p->n ? begin + p->chunk : p->n;
        p->fn(p->ctx, begin, end, thread_index);
    }
}

typedef struct {
    cvx_pool *pool;
    int index;
} worker_arg;

static void *worker_main(void *arg) {
    worker_arg *wa = arg;
    cvx_pool *p = wa->pool;
    int index = wa->index;
    free(wa);
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mutex);
    for (;;) {
        while (!p->shutdown && p->generation == seen) pthread_cond_wait(&p->wake, &p->mutex);
        if (p->shutdown) break;
        seen = p->generation;
        pthread_mutex_unlock(&p->mutex);
        run_chunks(p, index);
        pthread_mutex_lock(&p->mutex);
        if (--p->active_workers == 0) pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mutex);
    return NULL;
}

cvx_pool *cvx_pool_new(int nthreads) {
    if (nthreads <= 0) nthreads = cvx_cpu_count();
    cvx_pool *p = calloc(1, sizeof *p);
    if (!p) return NULL;
    p->nthreads = nthreads;
    pthread_mutex_init(&p->mutex, NULL);
    pthread_cond_init(&p->wake, NULL);
    pthread_cond_init(&p->done, NULL);
    atomic_init(&p->next, 0);
    if (nthreads > 1) {
        p->threads = calloc((size_t)nthreads - 1, sizeof *p->threads);
        if (!p->threads) goto fail;
        for (int i = 1; i < nthreads; i++) {
            worker_arg *wa = malloc(sizeof *wa);
            if (!wa) goto fail_started;
            wa->pool = p;
            wa->index = i;
            if (pthread_create(&p->threads[i - 1], NULL, worker_main, wa) != 0) {
                free(wa);
                goto fail_started;
            }
            continue;
        fail_started:
            p->nthreads = i; /* stop only the threads that started */
            cvx_pool_free(p);
            return NULL;
        }
    }
    return p;
fail:
    free(p->threads);
    free(p);
    return NULL;
}

void cvx_pool_free(cvx_pool *p) {
    if (!p) return;
    pthread_mutex_lock(&p->mutex);
    p->shutdown = 1;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);
    for (int i = 1; i < p->nthreads; i++) pthread_join(p->threads[i - 1], NULL);
    pthread_mutex_destroy(&p->mutex);
    pthread_cond_destroy(&p->wake);
    pthread_cond_destroy(&p->done);
    free(p->threads);
    free(p);
}

int cvx_pool_size(const cvx_pool *p) { return p ? p->nthreads : 1; }

void cvx_pool_parallel_for(cvx_pool *p, int64_t n, int64_t chunk, cvx_pool_fn fn, void *ctx) {
    if (n <= 0) return;
    int nt = cvx_pool_size(p);
    if (chunk <= 0) {
        chunk = n / ((int64_t)nt * 4);
        if (chunk < 1) chunk = 1;
    }
    if (!p || nt == 1 || n <= chunk) {
        fn(ctx, 0, n, 0);
        return;
    }
    pthread_mutex_lock(&p->mutex);
    p->fn = fn;
    p->ctx = ctx;
    p->n = n;
    p->chunk = chunk;
    atomic_store(&p->next, 0);
    p->active_workers = p->nthreads - 1;
    p->generation++;
    pthread_cond_broadcast(&p->wake);
    pthread_mutex_unlock(&p->mutex);

    run_chunks(p, 0);

    pthread_mutex_lock(&p->mutex);
    while (p->active_workers > 0) pthread_cond_wait(&p->done, &p->mutex);
    pthread_mutex_unlock(&p->mutex);
}
