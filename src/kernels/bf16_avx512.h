/* Inline helpers shared by the bf16 paths that run on AVX-512 registers (avx512bf16.c, amx.c, amx_emu.c):
 * conversions to bf16 pairs, the CVX_PACK_PAIRS packers, the exponential of the attention softmax and the
 * fused epilogue of cvx_linear_bf16_ex (its GELU from simd_math.h over avx512_v.h, the function of the AVX-512
 * fp32 path), the plain-loop gemm_nt of last resort. Include only from files compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512dq -mavx512bf16 -mf16c; every function is static, so each including
 * file is a leaf that calls no other kernel file.
 *
 * vcvtne2ps2bf16 treats f32 subnormal inputs as zero (torch would keep a bf16 subnormal); everything else
 * matches c10::BFloat16's rounding (nearest, ties to even). */
#ifndef CVX_KERNELS_BF16_AVX512_H
#define CVX_KERNELS_BF16_AVX512_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "kernels/avx512_transpose.h"
#include "kernels/avx512_v.h"
#include "kernels/gemm_driver.h"
#include "kernels/kernels_internal.h"
#include "kernels/simd_math.h"

#define INL static inline __attribute__((always_inline))

INL int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
INL int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }
INL int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
INL int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

/* The work split of the bf16 attention drivers: one task per (batch, head) and query part; a head's queries are
 * split (each part packs the head's K and V again) only when there are fewer than 4 heads per thread, into
 * parts of at least min_part queries rounded up to `align`. */
INL void bf16_plan_heads(int64_t heads, int64_t Lq, int threads, int64_t min_part, int64_t align, int64_t *parts,
                         int64_t *part_len) {
    *parts = 1, *part_len = Lq;
    int64_t target = threads > 1 ? 4 * (int64_t)threads : 1;
    if (heads < target) {
        *parts = min64(ceil_div(target, heads), ceil_div(Lq, min_part));
        *part_len = round_up(ceil_div(Lq, *parts), align);
        *parts = ceil_div(Lq, *part_len);
    }
}

INL __mmask16 lanes(int n) { return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u); }

/* n (<= 32) floats -> bf16, word t = (p[2t], p[2t+1]) pairs in order; missing elements are 0. */
INL __m512 cvt_pairs(const float *p, int n) {
    __m512 lo, hi;
    if (n >= 32) {
        lo = _mm512_loadu_ps(p);
        hi = _mm512_loadu_ps(p + 16);
    } else {
        lo = _mm512_maskz_loadu_ps(lanes(n), p);
        hi = _mm512_maskz_loadu_ps(lanes(n - 16), p + 16);
    }
    /* The second source fills the low 256 bits. */
    return _mm512_castsi512_ps((__m512i)_mm512_cvtne2ps_pbh(hi, lo));
}

/* rows (<= 16) rows of k floats (row stride ld) -> for each pair t < ceil(k/2), `lanes_out` words at
 * dst[t*dst_stride + r] (row r's pair t; rows past `rows` are 0). */
INL void pack_pairs_transposed(const float *src, int64_t ld, int rows, int64_t k, uint32_t *dst, int64_t dst_stride,
                               int lanes_out) {
    __m512 r[16];
    for (int64_t p = 0; p < k; p += 32) {
        int kn = (int)min64(32, k - p), tn = (kn + 1) / 2;
        if (p == 0 && k <= 128) /* short rows far apart (attention heads): fetch the next 16 rows */
            for (int i = 0; i < 16; i++)
                for (int64_t d = 0; d < k; d += 16) _mm_prefetch((const char *)(src + (16 + i) * ld + d), _MM_HINT_T0);
        if (k > 128) /* long rows (GEMM A blocks, fresh from memory): 1 KB ahead on each of the 12-16 streams */
            for (int i = 0; i < rows; i++) _mm_prefetch((const char *)(src + i * ld + p + 256), _MM_HINT_T0);
        for (int i = 0; i < 16; i++) r[i] = i < rows ? cvt_pairs(src + i * ld + p, kn) : _mm512_setzero_ps();
        cvx__transpose16_ps(r);
        for (int t = 0; t < tn; t++) _mm512_mask_storeu_ps((float *)dst + (p / 2 + t) * dst_stride, lanes(lanes_out), r[t]);
    }
}

/* B[n, k] f32 (row stride ldb) -> CVX_PACK_PAIRS panels with K padded to kp (even) by zeros. */
INL void pack_b_pairs(const float *B, int64_t ldb, int64_t n, int64_t k, int64_t kp, uint32_t *dst) {
    for (int64_t j0 = 0; j0 < n; j0 += CVX_PACK_NR, dst += CVX_PACK_NR * (kp / 2)) {
        for (int g = 0; g < 2; g++) {
            int rows = (int)max64(0, min64(16, n - j0 - 16 * g));
            pack_pairs_transposed(B + (j0 + 16 * g) * ldb, ldb, rows, k, dst + 16 * g, CVX_PACK_NR, 16);
        }
        for (int64_t t = (k + 1) / 2; t < kp / 2; t++) memset(dst + t * CVX_PACK_NR, 0, CVX_PACK_NR * sizeof(uint32_t));
    }
}

/* Vm = V[Lk, D] (row stride ldv) -> ceil(Lk/2) rows of dv words (dv = D rounded up to 16; pads are 0). */
INL void pack_v_pairs(const float *Vm, int64_t ldv, int64_t Lk, int64_t D, int64_t dv, uint32_t *dst) {
    for (int64_t t = 0; t < (Lk + 1) / 2; t++) {
        const float *r0 = Vm + 2 * t * ldv, *r1 = r0 + ldv;
        int has1 = 2 * t + 1 < Lk;
        /* Rows are usually far apart (a fused qkv buffer): fetch a few pairs ahead. */
        if (2 * t + 9 < Lk)
            for (int64_t d = 0; d < D; d += 16) {
                _mm_prefetch((const char *)(r0 + 8 * ldv + d), _MM_HINT_T0);
                _mm_prefetch((const char *)(r1 + 8 * ldv + d), _MM_HINT_T0);
            }
        for (int64_t d = 0; d < dv; d += 16) {
            __mmask16 k = lanes((int)min64(16, max64(0, D - d)));
            __m512 x0 = _mm512_maskz_loadu_ps(k, r0 + d);
            __m512 x1 = has1 ? _mm512_maskz_loadu_ps(k, r1 + d) : _mm512_setzero_ps();
            __m512i lo = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x0));
            __m512i hi = _mm512_cvtepu16_epi32((__m256i)_mm512_cvtneps_pbh(x1));
            _mm512_storeu_si512(dst + t * dv + d, _mm512_or_si512(lo, _mm512_slli_epi32(hi, 16)));
        }
    }
}

/* 2^y for y <= LAZY_T: y = n + f with n = floor(y), f in [0, 1) from one vreduceps, a degree-3 polynomial for
 * 2^f fitted to the relative error (7.5e-5 in float arithmetic, 26 times below the 2^-9 rounding of P to bf16; the
 * degree-4 one it replaced, 2.7e-6, cost one more FMA per 16 scores for no change the golden cases can see), then
 * ·2^n by vscalefps, which floors its exponent argument itself (exact; underflows to 0). Six vector operations per
 * 16 values with the caller's fma, against nine for round + subtract + degree 5 (measured: the exponentials are
 * most of the softmax). y = -inf would give NaN: callers that may pass it (masked keys) clamp first with
 * exp2_neg_clamped. NaN stays NaN. */
INL __m512 exp2_neg(__m512 y) {
    __m512 f = _mm512_reduce_ps(y, _MM_FROUND_TO_NEG_INF | _MM_FROUND_NO_EXC);
    __m512 p = _mm512_set1_ps(7.802242041e-02f);
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(2.260648161e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(6.958373189e-01f));
    p = _mm512_fmadd_ps(p, f, _mm512_set1_ps(9.999245405e-01f));
    return _mm512_scalef_ps(p, y);
}
/* Arguments below -200 (masked keys, -inf) give 0; the constant is max's first operand so NaN stays NaN. */
INL __m512 exp2_neg_clamped(__m512 y) { return exp2_neg(_mm512_max_ps(_mm512_set1_ps(-200.0f), y)); }

/* The fused epilogue of cvx_linear_bf16_ex on one block of outputs: T [m, n] (row stride ldt) is this K block's
 * sum for rows m0.. and columns n0.. of y, C points at y[m0, n0]; bias at column n0 (or NULL). first/last: whether
 * this is the first / last K block. */
INL void bf16_epilogue(const float *T, int64_t ldt, float *C, int64_t ldc, int64_t m0, int m, int64_t n0, int n,
                               const float *bias, const cvx_epilogue *e, int first, int last) {
    for (int i = 0; i < m; i++) {
        const float *t = T + i * ldt;
        float *c = C + i * ldc;
        const float *g = e->gate ? e->gate + (m0 + i) / e->gate_rows * e->ldgate + n0 : NULL;
        const float *r = e->residual ? e->residual + (m0 + i) * e->ldres + n0 : NULL;
        for (int j = 0; j < n; j += 16) {
            __mmask16 k = lanes(n - j);
            __m512 v = _mm512_maskz_loadu_ps(k, t + j);
            if (e->act != CVX_ACT_NONE) {
                /* The full sum first (bias once, at the first block), the activation and gate at the last
                 * (v_gelu: cvx_gelu_tanh's function on this CPU, simd_math.h). */
                v = _mm512_add_ps(first ? (bias ? _mm512_maskz_loadu_ps(k, bias + j) : _mm512_setzero_ps())
                                        : _mm512_maskz_loadu_ps(k, c + j), v);
                if (last) {
                    v = v_gelu(v);
                    if (g) v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + j), v);
                }
                _mm512_mask_storeu_ps(c + j, k, v);
            } else {
                /* Linear in the sum: residual + gate·(t + bias) at the first block, + gate·t after it. */
                if (first && bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + j));
                if (g) v = _mm512_mul_ps(_mm512_maskz_loadu_ps(k, g + j), v);
                __m512 base = first ? (r ? _mm512_maskz_loadu_ps(k, r + j) : _mm512_setzero_ps())
                                    : _mm512_maskz_loadu_ps(k, c + j);
                _mm512_mask_storeu_ps(c + j, k, _mm512_add_ps(base, v));
            }
        }
    }
}

/* Panel jr's block at K value pc of CVX_PACK_PAIRS weights (gemm_driver.h's b_panel for prepacked B, K padded to
 * j->ldb): 32-bit words, NR per K pair. */
static inline const void *pairs_b_panel(const cvx_gemm_job *j, const unsigned char *bslice, int64_t jc, int64_t jr,
                                        int64_t pc, int64_t kk) {
    (void)bslice, (void)jc, (void)kk;
    return (const uint32_t *)j->B + (jr / CVX_PACK_NR) * CVX_PACK_NR * (j->ldb / 2) + (pc / 2) * CVX_PACK_NR;
}

/* The empty sum (K = 0) of a bf16 GEMM: bias (or 0), the epilogue of 0, or nothing when accumulating. */
static inline void bf16_gemm_empty(int64_t M, int64_t N, float *C, int64_t ldc, int accumulate, const float *bias,
                                   const cvx_epilogue *epi) {
    if (!epi) {
        cvx_gemm_empty(M, N, C, ldc, accumulate, bias);
        return;
    }
    float zeros[CVX_PACK_NR] = {0};
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n += CVX_PACK_NR)
            bf16_epilogue(zeros, 0, C + m * ldc + n, ldc, m, 1, n, (int)min64(CVX_PACK_NR, N - n), bias ? bias + n : NULL,
                          epi, 1, 1);
}

/* A bf16 GEMM over CVX_PACK_PAIRS weights (K padded to bkp) on the one driver, for avx512bf16.c and amx_tmpl.h: the
 * empty sum, or the job planned by d and run by the path's task on the pool, or, without memory for the per-thread
 * buffers, one row group and small_kc K values at a time in the caller's buffer `small` (64-byte aligned, mr·small_kc
 * bf16 of A + small_extra bytes). Always runs (returns 1). */
INL int bf16_pairs_gemm(const cvx_gemm_desc *d, cvx_pool_fn task, unsigned char *small, int64_t small_kc,
                        size_t small_extra, cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const uint32_t *B, int64_t bkp, float *C, int64_t ldc, int accumulate, const float *bias,
                        const cvx_epilogue *epi) {
    if (M <= 0 || N <= 0) return 1;
    if (K <= 0) {
        bf16_gemm_empty(M, N, C, ldc, accumulate, bias, epi);
        return 1;
    }
    cvx_gemm_job j = {.M = M, .N = N, .K = K, .A = A, .lda = lda, .B = B, .ldb = bkp, .C = C, .ldc = ldc,
                      .accumulate = accumulate, .bias = bias, .epi = epi};
    if (cvx_gemm_prepare(d, &j, pool) == 0) {
        cvx_pool_parallel_for(j.tasks > 1 ? pool : NULL, j.tasks, 1, task, &j);
        return 1;
    }
    j.kc = small_kc, j.mc = j.part_h = d->mr, j.parts_n = 1, j.part_w = j.nc = round_up(N, d->nr);
    j.tasks = ceil_div(M, d->mr);
    j.a_bytes = (size_t)(d->mr * small_kc * 2), j.b_bytes = 0, j.x_bytes = small_extra, j.scratch = small;
    task(&j, 0, j.tasks, 0);
    return 1;
}

/* C[m, n] (+)= sum_k bf16(A[m, k])·bf16(B[n, k]) in plain loops, f32 sums: the bf16 gemm_nt drivers' last resort
 * when not even one packed panel of B can be allocated. */
static inline void bf16_gemm_nt_plain(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                                      int64_t ldb, float *C, int64_t ldc, int accumulate) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += cvx_bf16_round(A[m * lda + k]) * cvx_bf16_round(B[n * ldb + k]);
            C[m * ldc + n] = accumulate ? C[m * ldc + n] + s : s;
        }
}

/* A bf16 GEMM driver over CVX_PACK_PAIRS panels (avx512bf16.c's, amx_tmpl.h's): C (+)= bf16(A)·Bᵀ (+ bias, or a
 * fused epilogue) with B packed (K padded to bkp); returns 0 when it could not run (nothing written). */
typedef int (*bf16_pairs_gemm_fn)(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                                  const uint32_t *B, int64_t bkp, float *C, int64_t ldc, int accumulate,
                                  const float *bias, const cvx_epilogue *epi);

typedef struct {
    const float *B;
    int64_t ldb, N, K, kp;
    uint32_t *dst;
} bf16_packb_ctx;

static inline void bf16_packb_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    (void)thread_index;
    bf16_packb_ctx *c = arg;
    for (int64_t p = begin; p < end; p++)
        pack_b_pairs(c->B + p * CVX_PACK_NR * c->ldb, c->ldb, min64(CVX_PACK_NR, c->N - p * CVX_PACK_NR), c->K, c->kp,
                     c->dst + p * CVX_PACK_NR * (c->kp / 2));
}

/* cvx_gemm_nt_bf16 on such a driver: B (f32 rows, reused by every row block) converted once into the weight layout
 * (in parallel), then the driver; without memory for that copy, one panel at a time, and in plain loops (the same
 * rounding) for a panel that finds no memory either. */
static inline void bf16_gemm_nt_via_pairs(bf16_pairs_gemm_fn gemm, cvx_pool *pool, int64_t M, int64_t N, int64_t K,
                                          const float *A, int64_t lda, const float *B, int64_t ldb, float *C,
                                          int64_t ldc, int accumulate) {
    if (M <= 0 || N <= 0) return;
    const int64_t NRP = CVX_PACK_NR, kp = round_up(K > 0 ? K : 1, CVX_PACK_KALIGN), panels = ceil_div(N, NRP);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (size_t)(panels * NRP * kp) * sizeof(uint16_t)) == 0) {
        bf16_packb_ctx pc = {B, ldb, N, K, kp, mem};
        cvx_pool_parallel_for(pool, panels, 1, bf16_packb_task, &pc);
        int ok = gemm(pool, M, N, K, A, lda, mem, kp, C, ldc, accumulate, NULL, NULL);
        free(mem);
        if (ok) return;
    }
    for (int64_t p = 0; p < panels; p++) {
        int64_t n = min64(NRP, N - p * NRP);
        void *pm = NULL;
        int done = 0;
        if (posix_memalign(&pm, 64, (size_t)(NRP * kp) * sizeof(uint16_t)) == 0) {
            pack_b_pairs(B + p * NRP * ldb, ldb, n, K, kp, pm);
            done = gemm(pool, M, n, K, A, lda, pm, kp, C + p * NRP, ldc, accumulate, NULL, NULL);
            free(pm);
        }
        if (!done) bf16_gemm_nt_plain(M, n, K, A, lda, B + p * NRP * ldb, ldb, C + p * NRP, ldc, accumulate);
    }
}

/* The attention's shapes with nothing to compute: returns 1 when there is nothing to do (an empty shape) or when
 * the answer is known (no keys: softmax over nothing is 0/0, NaN as in the reference), 0 otherwise. */
static inline int bf16_attention_degenerate(float *out, int64_t ldo, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                                            int64_t D) {
    if (B <= 0 || H <= 0 || Lq <= 0 || D <= 0) return 1;
    if (Lk > 0) return 0;
    for (int64_t r = 0; r < B * Lq; r++)
        for (int64_t d = 0; d < H * D; d++) out[r * ldo + d] = NAN;
    return 1;
}

#endif
