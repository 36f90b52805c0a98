/* A persistent thread pool: n-1 workers + the calling thread. parallel_for splits [0, n) into chunks that
 * threads claim from an atomic counter; the call returns when all chunks are done. One parallel_for at a
 * time per pool (the engine's single worker owns it). pool == NULL runs the loop inline. */
#ifndef CVX_CORE_THREADPOOL_H
#define CVX_CORE_THREADPOOL_H

#include <stddef.h>
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
/* Per-thread scratch memory owned by the pool, for kernels that need a buffer per thread on every call: no
 * allocation on the hot path once the buffers are big enough, and the pages stay mapped between calls.
 * cvx_pool_reserve_scratch makes every thread's buffer hold at least `bytes` (64-byte aligned; buffers grow and
 * are kept until the pool is freed) and returns 0, or -1 when memory is short (the buffers keep their old size).
 * Call it before cvx_pool_parallel_for; inside, cvx_pool_scratch(pool, thread_index) is that thread's buffer.
 * pool == NULL (inline loops) uses a buffer of the calling OS thread, freed when the thread exits. The buffers are
 * the caller's until its parallel_for returns (one user of a pool at a time, as parallel_for). */
int cvx_pool_reserve_scratch(cvx_pool *pool, size_t bytes);
void *cvx_pool_scratch(cvx_pool *pool, int thread_index);
/* A reservation of more than max_bytes (0: no limit) fails as when memory is short: how tests run the kernels'
 * out-of-memory paths. */
void cvx_pool_limit_scratch(cvx_pool *pool, size_t max_bytes);
/* Number of online cores. */
int cvx_cpu_count(void);

#endif
