/* Private to src/kernels: what the per-instruction-set files share with the drivers in ops.c. */
#ifndef CVX_KERNELS_INTERNAL_H
#define CVX_KERNELS_INTERNAL_H

#include <math.h>

#include "core/half.h"
#include "kernels/kernels.h"

/* gelu_tanh(x) = 0.5x(1 + tanh(K0·(x + K1·x³))), K0 = √(2/π) (torch approximate="tanh", HF gelu_new). */
#define CVX_GELU_K0 0.7978845608028654f
#define CVX_GELU_K1 0.044715f

/* The threaded GEMM driver of ops.c (cvx_linear / cvx_gemm_nt) with an explicit table and B dtype. */
void cvx__gemm_run(const cvx_kernel_table *kt, cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A,
                   int64_t lda, cvx_dtype bdt, const void *B, int64_t ldb, float *C, int64_t ldc, int accumulate,
                   const float *bias);
/* cvx_attention with an explicit table; bf16 = 1 rounds q, k, v and the probabilities (after the f32 running
 * sum has taken them) to bf16: the emulated cvx_attention_bf16. */
void cvx__attention_run(const cvx_kernel_table *kt, cvx_pool *pool, float *out, int64_t ldo, const float *q,
                        int64_t ldq, const float *k, int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H,
                        int64_t Lq, int64_t Lk, int64_t D, float scale, const float *bias, int bf16);

/* Attention one query row at a time in plain C, arguments as cvx_attention (bf16 = 1: q, k, v and the
 * probabilities rounded to bf16, the running sum taking the f32 probabilities): what every driver falls back to
 * when its per-thread buffers cannot be allocated. */
static inline void cvx__attention_rowwise(float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                                          int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq,
                                          int64_t Lk, int64_t D, float scale, const float *bias, int bf16) {
    for (int64_t r = 0; r < B * H * Lq; r++) {
        int64_t i = r % Lq, h = (r / Lq) % H, b = r / (Lq * H);
        const float *qi = q + (b * Lq + i) * ldq + h * D;
        const float *brow = bias ? bias + (h * Lq + i) * Lk : NULL;
        float *oi = out + (b * Lq + i) * ldo + h * D;
        float m = -INFINITY, l = 0.0f;
        for (int64_t d = 0; d < D; d++) oi[d] = 0.0f;
        for (int64_t j = 0; j < Lk; j++) {
            const float *kj = k + (b * Lk + j) * ldk + h * D, *vj = v + (b * Lk + j) * ldv + h * D;
            float s = 0.0f;
            if (bf16)
                for (int64_t d = 0; d < D; d++) s += cvx_bf16_round(qi[d]) * cvx_bf16_round(kj[d]);
            else
                for (int64_t d = 0; d < D; d++) s += qi[d] * kj[d];
            s *= scale;
            if (brow) s += brow[j];
            float m_new = s > m ? s : m;
            float use = m_new == -INFINITY ? 0.0f : m_new;
            float corr = expf(m - use), p = expf(s - use);
            l = l * corr + p;
            if (bf16) {
                float pr = cvx_bf16_round(p);
                for (int64_t d = 0; d < D; d++) oi[d] = oi[d] * corr + pr * cvx_bf16_round(vj[d]);
            } else {
                for (int64_t d = 0; d < D; d++) oi[d] = oi[d] * corr + p * vj[d];
            }
            m = m_new;
        }
        for (int64_t d = 0; d < D; d++) oi[d] /= l;
    }
}

/* ---- the bf16 fast path (bf16.c: front end and emulation; avx512bf16.c, amx.c / amx_emu.c: kernels, sharing the
 * inline helpers of bf16_avx512.h; dispatch.c picks the table) ------------------------------------------------ */

/* Packed weight layouts. */
typedef enum {
    /* bf16 [N, K] row-major: the emulation feeds it to the fp32 kernels as a BF16 weight view. */
    CVX_PACK_ROWS = 0,
    /* Panels of CVX_PACK_NR output rows (N padded with zero rows): panel p holds, for each pair of K columns
     * (K padded with zeros to kp, a multiple of CVX_PACK_KALIGN), CVX_PACK_NR 32-bit words (W[n, 2t] in the
     * low half, W[n, 2t+1] in the high half): the operand layout of vdpbf16ps and of AMX's B tiles
     * (16 rows of K pairs x 16 columns at a 4·CVX_PACK_NR-byte stride). Panel p starts at p·NR·kp elements. */
    CVX_PACK_PAIRS = 1,
} cvx_pack_layout;

#define CVX_PACK_NR 32
#define CVX_PACK_KALIGN 32 /* one AMX tile's K; also keeps every panel's K pairs whole */

struct cvx_packed {
    const cvx_bf16_table *kt; /* the path that packed it (and runs cvx_linear_bf16 on it) */
    int64_t n, k;             /* W [N, K] */
    int64_t kp;               /* K as stored (CVX_PACK_PAIRS: padded) */
    size_t bytes;
    uint16_t *data; /* 64-byte aligned */
};

struct cvx_bf16_table {
    cvx_isa isa;
    const char *name;
    cvx_pack_layout layout;
    /* cvx_linear_bf16_ex, arguments already checked; epi NULL or with something to do. */
    void (*linear)(cvx_pool *pool, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t K,
                   const cvx_packed *W, const float *bias, const cvx_epilogue *epi);
    void (*gemm_nt)(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                    int64_t ldb, float *C, int64_t ldc, int accumulate);
    void (*attention)(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                      int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                      int64_t D, float scale, const float *bias);
    /* CVX_PACK_PAIRS: one panel (n <= CVX_PACK_NR f32 rows of k values, row stride ld) into dst, K padded with
     * zeros to kp; NULL: bf16.c packs with portable code. */
    void (*pack_panel)(const float *rows, int64_t ld, int64_t n, int64_t k, int64_t kp, uint16_t *dst);
};

extern const cvx_bf16_table cvx_bf16_emu;        /* bf16.c: rounds, then the fp32 kernels of the active table */
extern const cvx_bf16_table cvx_bf16_avx512bf16; /* avx512bf16.c */
extern const cvx_bf16_table cvx_bf16_amx;        /* amx.c: amx_tmpl.h on the tile instructions */
extern const cvx_bf16_table cvx_bf16_amx_emulated; /* amx_emu.c: amx_tmpl.h on emulated tiles (tests) */

/* Register-peak probes (see cvx_kernels_peak_probe): flops done by `iters` rounds. */
double cvx__peak_avx2(int64_t iters);
double cvx__peak_avx512(int64_t iters);
double cvx__peak_avx512bf16(int64_t iters);
double cvx__peak_amx(int64_t iters);

#endif
