/* Threaded operations on top of the active kernel table: the blocking, packing order and work split are
 * shared by every instruction-set path; the table supplies packing, the register-tiled micro-kernel and
 * the vectorised row functions.
 *
 * GEMM (cvx_linear, cvx_gemm_nt): the one blocked driver of gemm_driver.h with the table's packers and
 * micro-kernel. For a task's block of C:
 *   jc over N by GEMM_NC  ->  pc over K by GEMM_KC: pack B[jc, pc] (up-cast)  ->
 *   ic over M by GEMM_MC  ->  jr over nr panels  ->  row groups of mr: pack A (first panel), micro-kernel.
 * The packed B micro-panel (KC x nr) stays in L1 while the row groups stream the packed A block from L2.
 * Work is split over N first (each thread up-casts only its own weight rows), then over M when N is narrow.
 *
 * Attention: flash-style. Scores are computed transposed, S^T = K·Q^T for a tile of keys x a block of
 * queries, so the per-query softmax statistics are vector operations across a row and the probabilities are
 * already in the micro-kernel's packed-A layout for P·V. Never an Lq x Lk matrix. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "kernels/gemm_driver.h"
#include "kernels/kernels_internal.h"

/* Blocking parameters (floats). GEMM_KC x nr of packed B is L1-sized; GEMM_MC x GEMM_KC of packed A is
 * L2-sized. They only affect speed, never results beyond summation order. */
#define GEMM_KC 256
#define GEMM_MC 192
#define GEMM_NC 2048

/* x rounded to the nearest bf16 (ties to even, as torch), kept as a float. */
static void round_bf16_n(float *p, int64_t n) {
    for (int64_t i = 0; i < n; i++) p[i] = cvx_bf16_round(p[i]);
}

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

/* ---- gemm --------------------------------------------------------------------------------------------- */

/* The fp32 path on the one GEMM driver (gemm_driver.h): the table's packers and micro-kernel, B packed (and
 * up-cast) at run time a slice at a time, columns split first. */
static void fd_pack_a(const cvx_gemm_job *j, const float *src, int rows, int64_t k, int64_t kpad, unsigned char *dst) {
    (void)kpad;
    ((const cvx_kernel_table *)j->path)->gemm_pack_a(src, j->lda, rows, k, (float *)dst);
}

static void fd_pack_b(const cvx_gemm_job *j, int64_t n0, int64_t n, int64_t k0, int64_t k, unsigned char *dst) {
    ((const cvx_kernel_table *)j->path)->gemm_pack_b(j->bdt, j->B, j->ldb, n0, n, k0, k, (float *)dst);
}

static const void *fd_b_panel(const cvx_gemm_job *j, const unsigned char *bslice, int64_t jc, int64_t jr, int64_t pc,
                              int64_t kk) {
    (void)j, (void)pc;
    return (const float *)bslice + (jr - jc) * kk;
}

static void fd_tile(const cvx_gemm_job *j, void *state, const cvx_gemm_tile *t) {
    (void)state;
    const cvx_kernel_table *kt = j->path;
    kt->gemm_ukernel(t->kk, (const float *)t->a, kt->gemm_mr, t->b, j->C + t->row * j->ldc + t->col, j->ldc, t->m,
                     t->n, t->acc, t->bias);
}

/* mr and nr are the table's: the description is made per call (the driver's calls stay indirect here). */
static cvx_gemm_desc fp32_desc(const cvx_kernel_table *kt) {
    cvx_gemm_desc d = {
        .mr = kt->gemm_mr, .nr = kt->gemm_nr, .kalign = 1, .ksub = 0, .kc_max = GEMM_KC, .equal_kblocks = 0,
        .mc_max = GEMM_MC, .a_block_bytes = 0, .nc_max = GEMM_NC, .a_elem = sizeof(float), .columns_first = 1,
        .pack_a = fd_pack_a, .pack_b = fd_pack_b, .b_panel = fd_b_panel, .tile = fd_tile,
    };
    return d;
}

typedef struct {
    cvx_gemm_desc d;
    cvx_gemm_job j;
} fp32_gemm;

static void gemm_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    const fp32_gemm *g = arg;
    cvx_gemm_run_tasks(&g->d, &g->j, NULL, cvx_gemm_scratch(&g->j, thread_index), begin, end);
}

typedef struct {
    const cvx_kernel_table *kt;
    int m;
    int64_t K;
    const float *A;
    int64_t lda;
    cvx_dtype bdt;
    const void *B;
    int64_t ldb;
    float *C;
    int64_t ldc;
    int accumulate;
    const float *bias;
} gemv_ctx;

static void gemv_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    gemv_ctx *c = arg;
    c->kt->gemv(c->m, c->K, c->A, c->lda, c->bdt, c->B, c->ldb, begin, end - begin, c->C + begin, c->ldc,
                c->accumulate, c->bias ? c->bias + begin : NULL);
}

/* C (+)= A·Bᵀ in plain loops, f32 B (the fallback when there is no memory for packing buffers). */
static void gemm_plain(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                       int64_t ldc, int accumulate) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += A[m * lda + k] * B[n * ldb + k];
            C[m * ldc + n] = accumulate ? C[m * ldc + n] + s : s;
        }
}

void cvx__gemm_run(const cvx_kernel_table *kt, cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A,
                   int64_t lda, cvx_dtype bdt, const void *B, int64_t ldb, float *C, int64_t ldc, int accumulate,
                   const float *bias) {
    if (M <= 0 || N <= 0) return;
    if (K <= 0) {
        cvx_gemm_empty(M, N, C, ldc, accumulate, bias);
        return;
    }
    int nt = cvx_pool_size(pool);
    if (M <= CVX_GEMV_MAX_ROWS) {
        /* Each weight is used at most 4 times: stream it once, straight from storage. */
        gemv_ctx g = {kt, (int)M, K, A, lda, bdt, B, ldb, C, ldc, accumulate, bias};
        int64_t chunk = round_up(ceil_div(N, (int64_t)nt * 4), 4);
        cvx_pool_parallel_for(pool, N, chunk < 16 ? 16 : chunk, gemv_task, &g);
        return;
    }
    fp32_gemm g = {fp32_desc(kt),
                   {.M = M, .N = N, .K = K, .A = A, .lda = lda, .B = B, .ldb = ldb, .bdt = bdt, .C = C, .ldc = ldc,
                    .accumulate = accumulate, .bias = bias, .path = kt}};
    if (cvx_gemm_prepare(&g.d, &g.j, pool) != 0) {
        /* Out of memory for packing buffers: the plain reference loop needs none. */
        if (bdt == CVX_DTYPE_F32) {
            gemm_plain(M, N, K, A, lda, B, ldb, C, ldc, accumulate);
            if (bias && !accumulate)
                for (int64_t m = 0; m < M; m++)
                    for (int64_t n = 0; n < N; n++) C[m * ldc + n] += bias[n];
            return;
        }
        float w[64];
        for (int64_t n = 0; n < N; n++) {
            for (int64_t m = 0; m < M; m++) {
                float s = 0.0f;
                for (int64_t k0 = 0; k0 < K; k0 += 64) {
                    int64_t kk = min64(64, K - k0);
                    if (bdt == CVX_DTYPE_F16) kt->f16_to_f32((const uint16_t *)B + n * ldb + k0, w, kk);
                    else kt->bf16_to_f32((const uint16_t *)B + n * ldb + k0, w, kk);
                    for (int64_t k = 0; k < kk; k++) s += A[m * lda + k0 + k] * w[k];
                }
                C[m * ldc + n] = (accumulate ? C[m * ldc + n] : (bias ? bias[n] : 0.0f)) + s;
            }
        }
        return;
    }
    cvx_pool_parallel_for(g.j.tasks > 1 ? pool : NULL, g.j.tasks, 1, gemm_task, &g);
}

void cvx_linear(cvx_pool *pool, float *y, const float *x, int64_t M, int64_t K, const cvx_tensor *W,
                const float *bias) {
    cvx_dtype dt = W->dtype;
    if (dt != CVX_DTYPE_F16 && dt != CVX_DTYPE_BF16) dt = CVX_DTYPE_F32;
    cvx__gemm_run(cvx_kernels_active(), pool, M, W->shape[0], K, x, K, dt, W->data, K, y, W->shape[0], 0, bias);
}

void cvx_gemm_nt(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc, int accumulate) {
    cvx__gemm_run(cvx_kernels_active(), pool, M, N, K, A, lda, CVX_DTYPE_F32, B, ldb, C, ldc, accumulate, NULL);
}

/* ---- attention ---------------------------------------------------------------------------------------- */

#define ATTN_BQ 96  /* queries per block: a multiple of every path's mr and nr */
#define ATTN_BK 192 /* keys per tile: a multiple of every path's mr */

typedef struct {
    const cvx_kernel_table *kt;
    float *out;
    const float *q, *k, *v, *bias;
    int64_t ldo, ldq, ldk, ldv, B, H, Lq, Lk, D;
    float scale;
    int bf16;                  /* round q, k, v and the probabilities to bf16 (cvx_attention_bf16's emulation) */
    int64_t qparts, qpart_len; /* query ranges per (batch, head) */
    int64_t bq, bk;            /* block sizes */
    int64_t ld_s, ld_o, dpad;  /* row strides of S^T and of the O block; D rounded up to nr */
    cvx_pool *pool;            /* whose per-thread scratch holds each thread's buffers */
    int64_t buf_floats;
} attn_ctx;

/* Buffer layout of one thread (floats): packed K (Lk' x D), packed V (dpad x Lk), packed Q (bq' x D),
 * S^T (bk x ld_s), O (bq x ld_o), running max / sum / correction (3 x bq'). */
static int64_t attn_buffer(const attn_ctx *c, int64_t *off) {
    const int64_t mr = c->kt->gemm_mr, nr = c->kt->gemm_nr;
    int64_t n = 0;
    off[0] = n, n += round_up(round_up(c->Lk, mr) * c->D, 16);
    off[1] = n, n += round_up(c->dpad * c->Lk, 16);
    off[2] = n, n += round_up(round_up(c->bq, nr) * c->D, 16);
    off[3] = n, n += round_up(c->bk * c->ld_s, 16);
    off[4] = n, n += round_up(c->bq * c->ld_o, 16);
    off[5] = n, n += round_up(3 * c->ld_s, 16);
    return n;
}

static void attn_head(const attn_ctx *c, float *buf, int64_t b, int64_t h, int64_t q0, int64_t qlen) {
    const cvx_kernel_table *kt = c->kt;
    const int64_t mr = kt->gemm_mr, nr = kt->gemm_nr, D = c->D, Lk = c->Lk;
    int64_t off[6];
    attn_buffer(c, off);
    float *kp = buf + off[0], *vp = buf + off[1], *qp = buf + off[2], *st = buf + off[3], *ob = buf + off[4];
    float *mx = buf + off[5], *l = mx + c->ld_s, *corr = l + c->ld_s;

    const float *kb = c->k + b * Lk * c->ldk + h * D; /* [Lk, D], row stride ldk */
    const float *vb = c->v + b * Lk * c->ldv + h * D; /* [Lk, D], row stride ldv */
    /* Keys as A panels (mr keys x D); values as B panels (for each key, nr consecutive channels). */
    kt->gemm_pack_a(kb, c->ldk, Lk, D, kp);
    for (int64_t d0 = 0; d0 < D; d0 += nr) {
        int64_t dn = min64(nr, D - d0);
        float *dst = vp + d0 * Lk;
        for (int64_t j = 0; j < Lk; j++) {
            memcpy(dst + j * nr, vb + j * c->ldv + d0, (size_t)dn * sizeof(float));
            for (int64_t t = dn; t < nr; t++) dst[j * nr + t] = 0.0f;
        }
    }
    /* Rounding commutes with packing (elementwise), so the packed copies are rounded in place. */
    if (c->bf16) {
        round_bf16_n(kp, round_up(Lk, mr) * D);
        round_bf16_n(vp, c->dpad * Lk);
    }

    for (int64_t i0 = q0; i0 < q0 + qlen; i0 += c->bq) {
        int64_t nq = min64(c->bq, q0 + qlen - i0);
        const float *qb = c->q + (b * c->Lq + i0) * c->ldq + h * D; /* [nq, D], row stride ldq */
        kt->gemm_pack_b(CVX_DTYPE_F32, qb, c->ldq, 0, nq, 0, D, qp);
        if (c->bf16) round_bf16_n(qp, round_up(nq, nr) * D);
        for (int64_t i = 0; i < nq; i++) {
            mx[i] = -INFINITY;
            l[i] = 0.0f;
            memset(ob + i * c->ld_o, 0, (size_t)c->ld_o * sizeof(float));
        }
        /* Columns past nq of S^T are read by the P·V micro-kernel (mr lanes) but never stored: keep them 0. */
        for (int64_t j = 0; j < c->bk; j++)
            for (int64_t i = nq; i < c->ld_s; i++) st[j * c->ld_s + i] = 0.0f;

        for (int64_t j0 = 0; j0 < Lk; j0 += c->bk) {
            int64_t nk = min64(c->bk, Lk - j0);
            /* S^T[j, i] = k_j · q_i */
            for (int64_t i = 0; i < nq; i += nr) {
                int nn = (int)min64(nr, nq - i);
                for (int64_t j = 0; j < nk; j += mr)
                    kt->gemm_ukernel(D, kp + (j0 + j) * D, mr, qp + i * D, st + j * c->ld_s + i, c->ld_s,
                                     (int)min64(mr, nk - j), nn, 0, NULL);
            }
            float scale = c->scale;
            if (c->bias) {
                /* scale·(q·k) + bias[h, i, j], as the reference orders it. */
                const float *bb = c->bias + (h * c->Lq + i0) * Lk + j0;
                for (int64_t j = 0; j < nk; j++)
                    for (int64_t i = 0; i < nq; i++)
                        st[j * c->ld_s + i] = st[j * c->ld_s + i] * scale + bb[i * Lk + j];
                scale = 1.0f;
            }
            kt->softmax_tile(st, c->ld_s, nk, nq, scale, mx, l, corr);
            /* The running sum l used the f32 probabilities; P·V gets them rounded. */
            if (c->bf16)
                for (int64_t j = 0; j < nk; j++) round_bf16_n(st + j * c->ld_s, nq);
            for (int64_t i = 0; i < nq; i++) {
                if (corr[i] == 1.0f) continue;
                float *o = ob + i * c->ld_o;
                for (int64_t d = 0; d < D; d++) o[d] *= corr[i];
            }
            /* O[i, d] += sum_j P[i, j] V[j, d]: P^T rows are the packed-A layout with stride ld_s. */
            for (int64_t d0 = 0; d0 < D; d0 += nr) {
                int nn = (int)min64(nr, D - d0);
                for (int64_t i = 0; i < nq; i += mr)
                    kt->gemm_ukernel(nk, st + i, c->ld_s, vp + d0 * Lk + j0 * nr, ob + i * c->ld_o + d0, c->ld_o,
                                     (int)min64(mr, nq - i), nn, 1, NULL);
            }
        }
        for (int64_t i = 0; i < nq; i++) {
            float inv = 1.0f / l[i];
            const float *o = ob + i * c->ld_o;
            float *dst = c->out + (b * c->Lq + i0 + i) * c->ldo + h * D;
            for (int64_t d = 0; d < D; d++) dst[d] = o[d] * inv;
        }
    }
}

static void attn_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    attn_ctx *c = arg;
    float *buf = cvx_pool_scratch(c->pool, thread_index);
    for (int64_t t = begin; t < end; t++) {
        int64_t part = t % c->qparts, bh = t / c->qparts;
        int64_t q0 = part * c->qpart_len;
        if (q0 >= c->Lq) continue;
        attn_head(c, buf, bh / c->H, bh % c->H, q0, min64(c->qpart_len, c->Lq - q0));
    }
}

void cvx__attention_run(const cvx_kernel_table *kt, cvx_pool *pool, float *out, int64_t ldo, const float *q,
                        int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H,
                        int64_t Lq, int64_t Lk, int64_t D, float scale, const float *bias, int bf16) {
    if (B <= 0 || H <= 0 || Lq <= 0 || D <= 0) return;
    const int64_t mr = kt->gemm_mr, nr = kt->gemm_nr;
    int nt = cvx_pool_size(pool);
    attn_ctx c = {kt, out, q, k, v, bias, ldo, ldq, ldk, ldv, B, H, Lq, Lk, D, scale, bf16, 1, Lq, 0, 0, 0, 0, 0, pool, 0};
    if (Lk <= 0) { /* softmax over nothing: 0/0, as the reference */
        for (int64_t r = 0; r < B * Lq; r++)
            for (int64_t d = 0; d < H * D; d++) out[r * ldo + d] = NAN;
        return;
    }
    /* Split the queries of a head only when there are too few heads to keep the threads busy (each part
     * packs the head's keys and values again). */
    int64_t target = nt > 1 ? (int64_t)nt * 4 : 1;
    if (B * H < target) {
        c.qparts = min64(ceil_div(target, B * H), ceil_div(Lq, 2 * mr));
        c.qpart_len = ceil_div(Lq, c.qparts);
        c.qparts = ceil_div(Lq, c.qpart_len);
    }
    c.bq = min64(ATTN_BQ, round_up(c.qpart_len, mr));
    c.bk = ATTN_BK;
    c.ld_s = round_up(round_up(c.bq, mr), nr);
    c.dpad = round_up(D, nr);
    c.ld_o = c.dpad;
    int64_t off[6];
    c.buf_floats = attn_buffer(&c, off);
    if (cvx_pool_reserve_scratch(pool, (size_t)c.buf_floats * sizeof(float)) != 0) {
        cvx__attention_rowwise(out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias, bf16);
        return;
    }
    cvx_pool_parallel_for(pool, B * H * c.qparts, 1, attn_task, &c);
}

void cvx_attention(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                   int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                   int64_t D, float scale, const float *bias) {
    cvx__attention_run(cvx_kernels_active(), pool, out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias, 0);
}

/* ---- norms and activations ---------------------------------------------------------------------------- */

typedef struct {
    const cvx_kernel_table *kt;
    float *y;
    const float *x;
    int64_t dim;
    const float *w, *b;
    float eps;
    int rms;
} norm_ctx;

static void norm_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    norm_ctx *c = arg;
    for (int64_t r = begin; r < end; r++) c->kt->norm_row(c->y + r * c->dim, c->x + r * c->dim, c->dim, c->w, c->b, c->eps, c->rms);
}

static int64_t rows_chunk(int64_t dim) { return dim >= 4096 ? 1 : 4096 / (dim > 0 ? dim : 1); }

void cvx_layernorm(cvx_pool *pool, float *y, const float *x, int64_t rows, int64_t dim, const float *w,
                   const float *b, float eps) {
    norm_ctx c = {cvx_kernels_active(), y, x, dim, w, b, eps, 0};
    cvx_pool_parallel_for(pool, rows, rows_chunk(dim), norm_task, &c);
}

void cvx_rmsnorm(cvx_pool *pool, float *y, const float *x, int64_t rows, int64_t dim, const float *w, float eps) {
    norm_ctx c = {cvx_kernels_active(), y, x, dim, w, NULL, eps, 1};
    cvx_pool_parallel_for(pool, rows, rows_chunk(dim), norm_task, &c);
}

typedef struct {
    const cvx_kernel_table *kt;
    float *x;
} act_ctx;

static void gelu_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    act_ctx *c = arg;
    c->kt->gelu_tanh(c->x + begin, end - begin);
}

static void silu_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    act_ctx *c = arg;
    c->kt->silu(c->x + begin, end - begin);
}

void cvx_gelu_tanh(cvx_pool *pool, float *x, int64_t n) {
    act_ctx c = {cvx_kernels_active(), x};
    cvx_pool_parallel_for(pool, n, 1 << 14, gelu_task, &c);
}

void cvx_silu(cvx_pool *pool, float *x, int64_t n) {
    act_ctx c = {cvx_kernels_active(), x};
    cvx_pool_parallel_for(pool, n, 1 << 14, silu_task, &c);
}

typedef struct {
    float *dst;
    const cvx_tensor *src;
    const cvx_kernel_table *kt;
} to_f32_ctx;

static void to_f32_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    to_f32_ctx *c = arg;
    int64_t n = end - begin;
    switch (c->src->dtype) {
    case CVX_DTYPE_F16: c->kt->f16_to_f32((const uint16_t *)c->src->data + begin, c->dst + begin, n); break;
    case CVX_DTYPE_BF16: c->kt->bf16_to_f32((const uint16_t *)c->src->data + begin, c->dst + begin, n); break;
    case CVX_DTYPE_F64:
        for (int64_t i = begin; i < end; i++) c->dst[i] = (float)((const double *)c->src->data)[i];
        break;
    default: memmove(c->dst + begin, (const float *)c->src->data + begin, (size_t)n * sizeof(float)); break;
    }
}

void cvx_to_f32(cvx_pool *pool, float *dst, const cvx_tensor *src) {
    to_f32_ctx c = {dst, src, cvx_kernels_active()};
    cvx_pool_parallel_for(pool, cvx_tensor_numel(src), 1 << 16, to_f32_task, &c);
}
