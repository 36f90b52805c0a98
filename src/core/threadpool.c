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
    /* per-thread scratch (cvx_pool_reserve_scratch) */
    void **scratch;
    size_t scratch_bytes; /* every thread's buffer holds at least this */
    size_t scratch_limit; /* 0, or the most a reservation may ask for (cvx_pool_limit_scratch) */
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
    if (p->scratch)
        for (int i = 0; i < p->nthreads; i++) free(p->scratch[i]);
    free(p->scratch);
    free(p->threads);
    free(p);
}

/* ---- per-thread scratch ---------------------------------------------------------------------------------- */

static _Thread_local void *t_scratch;
static _Thread_local size_t t_scratch_bytes;
static pthread_key_t t_scratch_key;
static pthread_once_t t_scratch_once = PTHREAD_ONCE_INIT;
static void free_thread_scratch(void *p) { free(p); }
static void make_scratch_key(void) { (void)pthread_key_create(&t_scratch_key, free_thread_scratch); }

static size_t round_scratch(size_t bytes) { return (bytes + 4095) / 4096 * 4096; }

int cvx_pool_reserve_scratch(cvx_pool *p, size_t bytes) {
    size_t n = round_scratch(bytes);
    if (!p) { /* inline loops run on the calling thread: its own buffer */
        if (t_scratch_bytes >= bytes) return 0;
        void *mem = NULL;
        if (posix_memalign(&mem, 64, n) != 0) return -1;
        pthread_once(&t_scratch_once, make_scratch_key);
        free(t_scratch);
        t_scratch = mem, t_scratch_bytes = n;
        (void)pthread_setspecific(t_scratch_key, mem); /* freed when the thread exits */
        return 0;
    }
    if (p->scratch_bytes >= bytes) return 0;
    if (p->scratch_limit && bytes > p->scratch_limit) return -1;
    if (!p->scratch && !(p->scratch = calloc((size_t)p->nthreads, sizeof *p->scratch))) return -1;
    for (int i = 0; i < p->nthreads; i++) {
        void *mem = NULL;
        if (posix_memalign(&mem, 64, n) != 0) return -1; /* the threads before i have grown: harmless */
        free(p->scratch[i]);
        p->scratch[i] = mem;
    }
    p->scratch_bytes = n;
    return 0;
}

void cvx_pool_limit_scratch(cvx_pool *p, size_t max_bytes) {
    if (p) p->scratch_limit = max_bytes;
}

void *cvx_pool_scratch(cvx_pool *p, int thread_index) {
    if (!p) return t_scratch;
    if (!p->scratch || thread_index < 0 || thread_index >= p->nthreads) return NULL;
    return p->scratch[thread_index];
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
