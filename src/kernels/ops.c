/* Threaded operations on top of the active kernel table. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels.h"

/* ---- linear ------------------------------------------------------------------------------------------- */

#define LINEAR_NBLOCK 64 /* weight rows converted to f32 per task */

typedef struct {
    const cvx_kernel_table *kt;
    float *y;
    const float *x;
    int64_t M, K, N;
    const cvx_tensor *W;
    const float *bias;
} linear_ctx;

static void weight_rows_f32(const cvx_kernel_table *kt, const cvx_tensor *W, int64_t row0, int64_t rows, int64_t K,
                            float *dst) {
    size_t off = (size_t)(row0 * K);
    switch (W->dtype) {
    case CVX_DTYPE_F16: kt->f16_to_f32((const uint16_t *)W->data + off, dst, rows * K); break;
    case CVX_DTYPE_BF16: kt->bf16_to_f32((const uint16_t *)W->data + off, dst, rows * K); break;
    default: memcpy(dst, (const float *)W->data + off, (size_t)(rows * K) * sizeof(float)); break;
    }
}

static void linear_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    linear_ctx *c = arg;
    float *wbuf = c->W->dtype == CVX_DTYPE_F32 ? NULL : malloc((size_t)(LINEAR_NBLOCK * c->K) * sizeof(float));
    for (int64_t blk = begin; blk < end; blk++) {
        int64_t n0 = blk * LINEAR_NBLOCK;
        int64_t nn = c->N - n0 < LINEAR_NBLOCK ? c->N - n0 : LINEAR_NBLOCK;
        const float *w;
        if (wbuf) {
            weight_rows_f32(c->kt, c->W, n0, nn, c->K, wbuf);
            w = wbuf;
        } else {
            w = (const float *)c->W->data + n0 * c->K;
        }
        c->kt->gemm_f32(c->M, nn, c->K, c->x, c->K, w, c->K, c->y + n0, c->N, 0);
        if (c->bias)
            for (int64_t m = 0; m < c->M; m++)
                for (int64_t n = 0; n < nn; n++) c->y[m * c->N + n0 + n] += c->bias[n0 + n];
    }
    free(wbuf);
}

void cvx_linear(cvx_pool *pool, float *y, const float *x, int64_t M, int64_t K, const cvx_tensor *W,
                const float *bias) {
    linear_ctx c = {cvx_kernels_active(), y, x, M, K, W->shape[0], W, bias};
    int64_t blocks = (c.N + LINEAR_NBLOCK - 1) / LINEAR_NBLOCK;
    cvx_pool_parallel_for(pool, blocks, 1, linear_task, &c);
}

/* ---- gemm --------------------------------------------------------------------------------------------- */

typedef struct {
    const cvx_kernel_table *kt;
    int64_t M, N, K;
    const float *A, *B;
    int64_t lda, ldb, ldc;
    float *C;
    int accumulate;
} gemm_ctx;

#define GEMM_MBLOCK 32

static void gemm_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    gemm_ctx *c = arg;
    for (int64_t blk = begin; blk < end; blk++) {
        int64_t m0 = blk * GEMM_MBLOCK;
        int64_t mm = c->M - m0 < GEMM_MBLOCK ? c->M - m0 : GEMM_MBLOCK;
        c->kt->gemm_f32(mm, c->N, c->K, c->A + m0 * c->lda, c->lda, c->B, c->ldb, c->C + m0 * c->ldc, c->ldc,
                        c->accumulate);
    }
}

void cvx_gemm_nt(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc, int accumulate) {
    gemm_ctx c = {cvx_kernels_active(), M, N, K, A, B, lda, ldb, ldc, C, accumulate};
    cvx_pool_parallel_for(pool, (M + GEMM_MBLOCK - 1) / GEMM_MBLOCK, 1, gemm_task, &c);
}

/* ---- attention ---------------------------------------------------------------------------------------- */

#define ATTN_KTILE 128

typedef struct {
    float *out;
    const float *q, *k, *v, *bias;
    int64_t ldo, ldq, ldk, ldv, H, Lq, Lk, D;
    float scale;
} attn_ctx;

/* One task = one (batch, head, query row): online softmax over key tiles (running max m, sum l). */
static void attn_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    attn_ctx *c = arg;
    float *acc = malloc((size_t)c->D * sizeof(float));
    float s[ATTN_KTILE];
    for (int64_t r = begin; r < end; r++) {
        int64_t i = r % c->Lq;
        int64_t h = (r / c->Lq) % c->H;
        int64_t b = r / (c->Lq * c->H);
        const float *qi = c->q + (b * c->Lq + i) * c->ldq + h * c->D;
        const float *brow = c->bias ? c->bias + (h * c->Lq + i) * c->Lk : NULL;
        float m = -INFINITY, l = 0.0f;
        memset(acc, 0, (size_t)c->D * sizeof(float));
        for (int64_t j0 = 0; j0 < c->Lk; j0 += ATTN_KTILE) {
            int64_t nj = c->Lk - j0 < ATTN_KTILE ? c->Lk - j0 : ATTN_KTILE;
            float tile_max = -INFINITY;
            for (int64_t j = 0; j < nj; j++) {
                const float *kj = c->k + (b * c->Lk + j0 + j) * c->ldk + h * c->D;
                float dot = 0.0f;
                for (int64_t d = 0; d < c->D; d++) dot += qi[d] * kj[d];
                dot *= c->scale;
                if (brow) dot += brow[j0 + j];
                s[j] = dot;
                if (dot > tile_max) tile_max = dot;
            }
            float m_new = tile_max > m ? tile_max : m;
            float correction = m == -INFINITY ? 0.0f : expf(m - m_new);
            l *= correction;
            for (int64_t d = 0; d < c->D; d++) acc[d] *= correction;
            for (int64_t j = 0; j < nj; j++) {
                float p = expf(s[j] - m_new);
                l += p;
                const float *vj = c->v + (b * c->Lk + j0 + j) * c->ldv + h * c->D;
                for (int64_t d = 0; d < c->D; d++) acc[d] += p * vj[d];
            }
            m = m_new;
        }
        float *oi = c->out + (b * c->Lq + i) * c->ldo + h * c->D;
        float inv = 1.0f / l;
        for (int64_t d = 0; d < c->D; d++) oi[d] = acc[d] * inv;
    }
    free(acc);
}

void cvx_attention(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                   int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                   int64_t D, float scale, const float *bias) {
    attn_ctx c = {out, q, k, v, bias, ldo, ldq, ldk, ldv, H, Lq, Lk, D, scale};
    cvx_pool_parallel_for(pool, B * H * Lq, 0, attn_task, &c);
}

/* ---- norms and activations ---------------------------------------------------------------------------- */

typedef struct {
    float *y;
    const float *x;
    int64_t dim;
    const float *w, *b;
    float eps;
    int rms;
} norm_ctx;

static void norm_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    norm_ctx *c = arg;
    for (int64_t r = begin; r < end; r++) {
        const float *x = c->x + r * c->dim;
        float *y = c->y + r * c->dim;
        double mean = 0.0, var = 0.0;
        if (c->rms) {
            for (int64_t i = 0; i < c->dim; i++) var += (double)x[i] * x[i];
            var /= (double)c->dim;
        } else {
            for (int64_t i = 0; i < c->dim; i++) mean += x[i];
            mean /= (double)c->dim;
            for (int64_t i = 0; i < c->dim; i++) {
                double d = x[i] - mean;
                var += d * d;
            }
            var /= (double)c->dim;
        }
        float inv = (float)(1.0 / sqrt(var + (double)c->eps));
        float fmean = (float)mean;
        for (int64_t i = 0; i < c->dim; i++) {
            float v = (x[i] - fmean) * inv;
            if (c->w) v *= c->w[i];
            if (c->b) v += c->b[i];
            y[i] = v;
        }
    }
}

void cvx_layernorm(cvx_pool *pool, float *y, const float *x, int64_t rows, int64_t dim, const float *w,
                   const float *b, float eps) {
    norm_ctx c = {y, x, dim, w, b, eps, 0};
    cvx_pool_parallel_for(pool, rows, 0, norm_task, &c);
}

void cvx_rmsnorm(cvx_pool *pool, float *y, const float *x, int64_t rows, int64_t dim, const float *w, float eps) {
    norm_ctx c = {y, x, dim, w, NULL, eps, 1};
    cvx_pool_parallel_for(pool, rows, 0, norm_task, &c);
}

static void gelu_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    float *x = arg;
    const float k0 = 0.7978845608028654f, k1 = 0.044715f;
    for (int64_t i = begin; i < end; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(k0 * (v + k1 * v * v * v)));
    }
}

static void silu_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    float *x = arg;
    for (int64_t i = begin; i < end; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

void cvx_gelu_tanh(cvx_pool *pool, float *x, int64_t n) { cvx_pool_parallel_for(pool, n, 1 << 14, gelu_task, x); }
void cvx_silu(cvx_pool *pool, float *x, int64_t n) { cvx_pool_parallel_for(pool, n, 1 << 14, silu_task, x); }

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
