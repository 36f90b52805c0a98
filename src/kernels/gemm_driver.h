/* The one blocked GEMM driver of every path: C[M, N] (+)= A[M, K]·B[N, K]ᵀ (+ bias, or a fused epilogue), for the
 * fp32 kernels (ops.c, B packed and up-cast at run time), the AVX512-BF16 kernels (avx512bf16.c) and the AMX tiles
 * (amx_tmpl.h), B packed once as CVX_PACK_PAIRS panels for the bf16 paths. A path describes its micro-kernel in a
 * cvx_gemm_desc (row group and panel width, K granularity and L1 sub-block, the packers, the tile and its buffers);
 * the plan, the work split, the buffers and the loop nest are here, once:
 *
 *   task t: rows m0 .. m0+part_h, columns n0 .. n0+part_w (cvx_gemm_plan) ->
 *   jc over the task's columns by nc (paths that pack B at run time: the packed slice; else the whole part) ->
 *   pc over K by kc: [pack B[jc .. jc+nc, pc .. pc+kc] when the path packs at run time] ->
 *   ic over the task's rows by mc (a row block of packed A stays in L2) ->
 *   jr over the columns by nr (one B panel) ->
 *   sb over the K block by ksub (a panel slice that stays in L1 while every row group takes it) ->
 *   g over the row block by mr: [A's row group packed while the first panel is processed] -> the tile.
 * After each K block the path's kblock_end runs (the AMX path drains its pending streaming stores there).
 *
 * Header-only and free of instruction-set code: every function is static inline, so each including file
 * instantiates it with its own (constant) description and stays a leaf; the compiler sees the description's
 * functions as direct calls. Results depend on the path and on kc (the K blocks' boundaries), never on the work
 * split or the thread count. */
#ifndef CVX_KERNELS_GEMM_DRIVER_H
#define CVX_KERNELS_GEMM_DRIVER_H

#include <stddef.h>
#include <stdint.h>

#include "core/threadpool.h"
#include "kernels/kernels_internal.h" /* CVX_PACK_KALIGN, cvx_epilogue */

/* The problem and its plan. */
typedef struct {
    int64_t M, N, K;
    const float *A; /* [M, K], row stride lda */
    int64_t lda;
    const void *B; /* the path's: packed panels (K padded to ldb), or rows [N, K] in bdt with row stride ldb */
    int64_t ldb;
    cvx_dtype bdt;
    float *C; /* [M, N], row stride ldc */
    int64_t ldc;
    int accumulate;          /* C (+)= ... */
    const float *bias;       /* [N] or NULL (not with accumulate) */
    const cvx_epilogue *epi; /* NULL, or the fused epilogue of cvx_linear_bf16_ex (bf16 paths) */
    const void *path;        /* the path's own data (the fp32 kernel table) */
    /* the plan (cvx_gemm_plan) */
    int64_t kc, mc, nc;              /* K block, row block, column slice */
    int64_t parts_n, part_w, part_h; /* task grid: parts_n column ranges of part_w, row ranges of part_h */
    int64_t tasks;
    size_t a_bytes, b_bytes, x_bytes; /* a thread's buffers: packed A row block, packed B slice, the path's extra */
    cvx_pool *pool;                   /* whose per-thread scratch holds them (cvx_pool_scratch) */
    unsigned char *scratch;           /* or this one buffer (a path's out-of-memory fallback, one thread) */
} cvx_gemm_job;

/* One tile of C for the path's micro-kernel. */
typedef struct {
    const unsigned char *a; /* the row group's packed A of this K block (its first K value) */
    const void *b;          /* the panel's packed B of this K block */
    const void *b_next;     /* the next panel's (for a prefetch into L2), or NULL */
    int64_t kk, kpad;       /* K values of the block; padded to the path's kalign */
    int64_t k0, kn;         /* the sub-block: K values k0 .. k0+kn of the padded block */
    int sub_first, sub_last;
    int64_t sub, subs, group, groups; /* this tile's place among the panel's, to spread a prefetch over them */
    int64_t row, col;                 /* C's row and column of the tile's first element */
    int m, n;                         /* rows (<= mr) and columns (<= nr) */
    int acc;                          /* C holds earlier sums: accumulate, or a K block after the first */
    int first, last;                  /* the first / last K block */
    const float *bias;                /* at col, when the tile starts C (first K block, not accumulating); else NULL */
    unsigned char *extra;             /* the thread's extra buffer (x_bytes) */
} cvx_gemm_tile;

typedef struct cvx_gemm_desc cvx_gemm_desc;
struct cvx_gemm_desc {
    int64_t mr;        /* rows of a row group (one tile) */
    int64_t nr;        /* columns of a panel */
    int64_t kalign;    /* a K block's packed length is padded to a multiple of this */
    int64_t ksub;      /* K values of an L1 sub-block (a multiple of kalign); 0: the whole K block */
    int64_t kc_max;    /* K values per block */
    int equal_kblocks; /* 1: K in equal blocks of at most kc_max (multiples of CVX_PACK_KALIGN); 0: kc_max, then the rest */
    int64_t mc_max;    /* rows per row block */
    int64_t a_block_bytes; /* at most this much packed A per row block (0: no limit) */
    int64_t nc_max;        /* columns of a run-time packed B slice (paths with pack_b) */
    size_t a_elem;         /* bytes per packed A value (a row group takes mr·kpad·a_elem bytes) */
    /* 1: split the columns first (paths that pack B at run time: each thread up-casts only its own weight rows) */
    int columns_first;
    /* The rows of one group (rows <= mr of k values, row stride lda) -> dst (kpad values, pads 0). */
    void (*pack_a)(const cvx_gemm_job *j, const float *src, int rows, int64_t k, int64_t kpad, unsigned char *dst);
    /* NULL: B is packed already, b_panel finds a panel's K block; else packs B rows n0 .. n0+n, K values k0 ..
     * k0+k into dst (b_bytes) and b_panel finds panel jr's block in it. */
    void (*pack_b)(const cvx_gemm_job *j, int64_t n0, int64_t n, int64_t k0, int64_t k, unsigned char *dst);
    const void *(*b_panel)(const cvx_gemm_job *j, const unsigned char *bslice, int64_t jc, int64_t jr, int64_t pc,
                           int64_t kk);
    void (*tile)(const cvx_gemm_job *j, void *state, const cvx_gemm_tile *t);
    void (*kblock_end)(const cvx_gemm_job *j, void *state); /* NULL or after each K block of a task */
    size_t (*extra_bytes)(const cvx_gemm_job *j);            /* NULL or the path's per-thread extra buffer */
};

#define CVX_GEMM_INLINE static inline __attribute__((always_inline))

CVX_GEMM_INLINE int64_t cvx__gd_min(int64_t a, int64_t b) { return a < b ? a : b; }
CVX_GEMM_INLINE int64_t cvx__gd_max(int64_t a, int64_t b) { return a > b ? a : b; }
CVX_GEMM_INLINE int64_t cvx__gd_ceil(int64_t x, int64_t m) { return (x + m - 1) / m; }
CVX_GEMM_INLINE int64_t cvx__gd_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

/* The plan of a job on `threads` threads (M, N, K >= 1):
 * - K blocks: equal blocks of at most kc_max (a multiple of CVX_PACK_KALIGN, so every block starts on a pair of
 *   every panel), or kc_max then the rest (the fp32 path's fixed summation blocks);
 * - rows first (bf16 paths): row blocks of mc rows (a multiple of mr, at most mc_max and a_block_bytes of packed
 *   A) are the tasks, and when there are fewer than 4 per thread the columns are split too;
 * - columns first (run-time packed B): about 3 tasks per thread, column ranges of at least 4 panels first (no
 *   weight row is up-cast twice), then row ranges; inside a task, row blocks of mc and column slices of nc. */
CVX_GEMM_INLINE void cvx_gemm_plan(const cvx_gemm_desc *d, cvx_gemm_job *j, int threads) {
    const int64_t M = j->M, N = j->N, K = j->K, mr = d->mr, nr = d->nr;
    if (d->equal_kblocks)
        j->kc = cvx__gd_up(cvx__gd_ceil(K, cvx__gd_ceil(K, d->kc_max)), CVX_PACK_KALIGN);
    else
        j->kc = cvx__gd_min(d->kc_max, K);
    const int64_t kpad = cvx__gd_up(j->kc, d->kalign);
    if (!d->columns_first) {
        int64_t mc = d->mc_max;
        if (d->a_block_bytes > 0 && d->a_block_bytes / ((int64_t)d->a_elem * kpad) / mr * mr < mc)
            mc = d->a_block_bytes / ((int64_t)d->a_elem * kpad) / mr * mr;
        j->mc = cvx__gd_min(cvx__gd_up(M, mr), cvx__gd_max(mr, mc));
        j->part_h = j->mc;
        const int64_t mblocks = cvx__gd_ceil(M, j->mc);
        j->parts_n = 1, j->part_w = cvx__gd_up(N, nr);
        const int64_t target = threads > 1 ? 4 * (int64_t)threads : 1;
        if (mblocks < target) {
            j->parts_n = cvx__gd_min(cvx__gd_ceil(target, mblocks), cvx__gd_ceil(N, 2 * nr));
            j->part_w = cvx__gd_up(cvx__gd_ceil(N, j->parts_n), nr);
            j->parts_n = cvx__gd_ceil(N, j->part_w);
        }
        j->nc = j->part_w;
    } else {
        j->parts_n = 1, j->part_w = N, j->part_h = M;
        if (threads > 1) {
            const int64_t target = (int64_t)threads * 3;
            j->parts_n = cvx__gd_min(target, cvx__gd_ceil(N, 4 * nr));
            j->part_w = cvx__gd_up(cvx__gd_ceil(N, j->parts_n), nr);
            j->parts_n = cvx__gd_ceil(N, j->part_w);
            const int64_t parts_m = cvx__gd_min(cvx__gd_ceil(target, j->parts_n), cvx__gd_ceil(M, 4 * mr));
            j->part_h = cvx__gd_up(cvx__gd_ceil(M, parts_m), mr);
        }
        j->nc = cvx__gd_min(cvx__gd_up(d->nc_max, nr), cvx__gd_up(j->part_w, nr));
        j->mc = cvx__gd_min(cvx__gd_up(d->mc_max, mr), cvx__gd_up(j->part_h, mr));
    }
    j->tasks = j->parts_n * cvx__gd_ceil(M, j->part_h);
    j->a_bytes = (size_t)cvx__gd_up((int64_t)d->a_elem * j->mc * kpad, 64);
    j->b_bytes = d->pack_b ? (size_t)cvx__gd_up(4 * kpad * cvx__gd_up(j->nc, nr), 64) : 0;
    j->x_bytes = d->extra_bytes ? (size_t)cvx__gd_up((int64_t)d->extra_bytes(j), 64) : 0;
}

CVX_GEMM_INLINE size_t cvx_gemm_scratch_bytes(const cvx_gemm_job *j) { return j->a_bytes + j->b_bytes + j->x_bytes; }

/* Plans the job and makes every thread's scratch hold its buffers: 0, or -1 when that memory is not there (the
 * path then runs its own fallback; nothing was written). */
CVX_GEMM_INLINE int cvx_gemm_prepare(const cvx_gemm_desc *d, cvx_gemm_job *j, cvx_pool *pool) {
    j->pool = pool, j->scratch = NULL;
    cvx_gemm_plan(d, j, cvx_pool_size(pool));
    return cvx_pool_reserve_scratch(pool, cvx_gemm_scratch_bytes(j)) == 0 ? 0 : -1;
}

/* One task's block of C: rows m0 .. m0+mlen, columns n0 .. n0+nlen (the loop nest of the header comment). */
CVX_GEMM_INLINE void cvx__gemm_block(const cvx_gemm_desc *d, const cvx_gemm_job *j, void *state, unsigned char *abuf,
                                     unsigned char *bbuf, unsigned char *extra, int64_t m0, int64_t mlen, int64_t n0,
                                     int64_t nlen) {
    const int64_t mr = d->mr, nr = d->nr;
    const int64_t ncs = d->pack_b ? j->nc : nlen;
    for (int64_t jc = n0; jc < n0 + nlen; jc += ncs) {
        const int64_t nc = cvx__gd_min(ncs, n0 + nlen - jc);
        for (int64_t pc = 0; pc < j->K; pc += j->kc) {
            const int64_t kk = cvx__gd_min(j->kc, j->K - pc), kpad = cvx__gd_up(kk, d->kalign);
            const int64_t ksub = d->ksub > 0 ? cvx__gd_min(d->ksub, kpad) : kpad, subs = cvx__gd_ceil(kpad, ksub);
            if (d->pack_b) d->pack_b(j, jc, nc, pc, kk, bbuf);
            cvx_gemm_tile t;
            t.kk = kk, t.kpad = kpad, t.subs = subs, t.extra = extra;
            t.acc = j->accumulate || pc > 0, t.first = pc == 0, t.last = pc + j->kc >= j->K;
            const size_t group_bytes = d->a_elem * (size_t)(mr * kpad);
            for (int64_t ic = m0; ic < m0 + mlen; ic += j->mc) {
                const int64_t mc = cvx__gd_min(j->mc, m0 + mlen - ic), groups = cvx__gd_ceil(mc, mr);
                t.groups = groups;
                for (int64_t jr = jc; jr < jc + nc; jr += nr) {
                    t.b = d->b_panel(j, bbuf, jc, jr, pc, kk);
                    t.b_next = jr + nr < jc + nc ? d->b_panel(j, bbuf, jc, jr + nr, pc, kk) : NULL;
                    t.col = jr, t.n = (int)cvx__gd_min(nr, jc + nc - jr);
                    t.bias = !t.acc && j->bias ? j->bias + jr : NULL;
                    for (int64_t sb = 0; sb < subs; sb++) {
                        t.sub = sb, t.k0 = sb * ksub, t.kn = cvx__gd_min(ksub, kpad - sb * ksub);
                        t.sub_first = sb == 0, t.sub_last = sb == subs - 1;
                        for (int64_t g = 0; g < groups; g++) {
                            const int64_t row = ic + g * mr;
                            unsigned char *a = abuf + (size_t)g * group_bytes;
                            t.group = g, t.row = row, t.m = (int)cvx__gd_min(mr, ic + mc - row), t.a = a;
                            /* Each row group is packed just before its first use, so A's f32 rows stream through
                             * L2 without pushing the packed ones out. */
                            if (jr == jc && sb == 0) d->pack_a(j, j->A + row * j->lda + pc, t.m, kk, kpad, a);
                            d->tile(j, state, &t);
                        }
                    }
                }
            }
            if (d->kblock_end) d->kblock_end(j, state);
        }
    }
}

/* Tasks begin .. end of a prepared job, with one thread's scratch (a_bytes + b_bytes + x_bytes, 64-byte aligned)
 * and the path's task state (called from the path's parallel task, which brackets it as its unit needs). */
CVX_GEMM_INLINE void cvx_gemm_run_tasks(const cvx_gemm_desc *d, const cvx_gemm_job *j, void *state,
                                        unsigned char *scratch, int64_t begin, int64_t end) {
    unsigned char *abuf = scratch, *bbuf = scratch + j->a_bytes, *extra = bbuf + j->b_bytes;
    for (int64_t t = begin; t < end; t++) {
        const int64_t m0 = (t / j->parts_n) * j->part_h, n0 = (t % j->parts_n) * j->part_w;
        if (m0 >= j->M || n0 >= j->N) continue;
        cvx__gemm_block(d, j, state, abuf, bbuf, extra, m0, cvx__gd_min(j->part_h, j->M - m0), n0,
                        cvx__gd_min(j->part_w, j->N - n0));
    }
}

/* The thread's scratch for a task of job j. */
CVX_GEMM_INLINE unsigned char *cvx_gemm_scratch(const cvx_gemm_job *j, int thread_index) {
    return j->scratch ? j->scratch : (unsigned char *)cvx_pool_scratch(j->pool, thread_index);
}

/* The empty sum (K = 0) without an epilogue: bias (or 0), nothing when accumulating. */
CVX_GEMM_INLINE void cvx_gemm_empty(int64_t M, int64_t N, float *C, int64_t ldc, int accumulate, const float *bias) {
    if (accumulate) return;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) C[m * ldc + n] = bias ? bias[n] : 0.0f;
}

#endif
