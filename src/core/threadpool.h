/* A persistent thread pool: n-1 workers + the calling thread. parallel_for splits [0, n) into chunks that
 * threads claim from an atomic counter; the call returns when all chunks are done. One parallel_for at a
 * time per pool (the engine's single worker owns it). pool == NULL runs the loop inline. */
#ifndef CVX_CORE_THREADPOOL_H
#define CVX_CORE_THREADPOOL_H

#include <stdint.h>

typedef struct cvx_pool cvx_pool;

/* fn(ctx, begin, end, thread_index) processes items [begin, end). thread_index is in [0, nthreads). */
typedef void (*cvx_pool_fn)(void *ctx, int64_t begin, int64_t end, int thread_index);

/* nthreads <= 0: all online cores. Returns NULL when threads cannot be created. */
cvx_pool *cvx_pool_new(int nthreads);
void cvx_pool_free(cvx_pool *pool);
int cvx_pool_size(const cvx_pool *pool); /* 1 for NULL */
/* chunk <= 0 picks a chunk so that each thread gets about 4 chunks. */
void cvx_pool_parallel_for(cvx_pool *pool, int64_t n, int64_t chunk, cvx_pool_fn fn, void *ctx);
/* Number of online cores. */
int cvx_cpu_count(void);

#endif
