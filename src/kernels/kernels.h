/* The kernels layer: the math every model uses, one API, an implementation per instruction set picked once
 * at run time (cvx_isa_active(): best path of the CPU, or CVX_FORCE_ISA). ref.c is portable C and always
 * built; it is the reference every other path is tested against (tests/test_kernels.c).
 *
 * Conventions: f32 activations, row-major; weights are cvx_tensor views in their stored dtype (F32, F16 or
 * BF16, usually mmap'd) and are up-cast exactly on the fly, so no f32 copy of a checkpoint is ever made.
 * `pool` may be NULL (single-threaded). */
#ifndef CVX_KERNELS_KERNELS_H
#define CVX_KERNELS_KERNELS_H

#include <stdint.h>

#include "cogvideox.h"
#include "core/tensor.h"
#include "core/threadpool.h"

/* One implementation of the inner loops. The drivers in ops.c (blocking, packing order, threading, online
 * softmax) are shared by every path; a path provides the register-level pieces below.
 *
 * GEMM layout (BLIS-style, C[m, n] = sum_k A[m, k]·B[n, k]): A is packed into micro-panels of gemm_mr rows,
 * element (k, i) at a[k*a_stride + i]; B into micro-panels of gemm_nr rows, element (k, j) at b[k*gemm_nr + j].
 * Packing is where stored f16/bf16 weights are up-cast (exactly), so the micro-kernel only sees f32; a bf16
 * path can later pack into its own layout behind the same driver. */
#define CVX_GEMV_MAX_ROWS 4

typedef struct {
    cvx_isa isa;
    const char *name;
    /* dst[i] = (float)src[i] for stored weights. */
    void (*f16_to_f32)(const uint16_t *src, float *dst, int64_t n);
    void (*bf16_to_f32)(const uint16_t *src, float *dst, int64_t n);

    int gemm_mr, gemm_nr; /* micro-tile: mr rows of A x nr rows of B */
    /* Packs A[m, k] (row stride lda, f32) into ceil(m/mr) panels of k x mr (panel p at dst + p*mr*k);
     * rows past m are zero. */
    void (*gemm_pack_a)(const float *A, int64_t lda, int64_t m, int64_t k, float *dst);
    /* Packs rows [n0, n0+n) x columns [k0, k0+k) of B (dtype F32, F16 or BF16, row stride ldb elements) into
     * ceil(n/nr) panels of k x nr (panel p at dst + p*nr*k), up-cast to f32; rows past n are zero. */
    void (*gemm_pack_b)(cvx_dtype dt, const void *B, int64_t ldb, int64_t n0, int64_t n, int64_t k0, int64_t k,
                        float *dst);
    /* One micro-tile: C[i, j] (+)= sum_{p<k} a[p*a_stride + i] * b[p*nr + j] for i < m <= mr, j < n <= nr.
     * a must be readable for all mr lanes of every step. accumulate=0 overwrites C, adding bias[j] when
     * bias is not NULL. */
    void (*gemm_ukernel)(int64_t k, const float *a, int64_t a_stride, const float *b, float *C, int64_t ldc,
                         int m, int n, int accumulate, const float *bias);
    /* Few rows, no packing (packing would cost more than the math): for i < m <= CVX_GEMV_MAX_ROWS, j < n,
     * y[i*ldy + j] (+)= sum_{p<k} x[i*ldx + p] · B[(n0 + j)*ldb + p], B in F32/F16/BF16 (row stride ldb
     * elements); accumulate=0 overwrites y, adding bias[j] when bias is not NULL. */
    void (*gemv)(int m, int64_t k, const float *x, int64_t ldx, cvx_dtype dt, const void *B, int64_t ldb, int64_t n0,
                 int64_t n, float *y, int64_t ldy, int accumulate, const float *bias);
    /* One key tile of the online softmax, scores transposed: st[j*ld + i] for key j < nk, query i < nq.
     * Scales the scores by `scale`, updates the running max mx[i], writes corr[i] = exp(old mx - new mx)
     * (the factor the caller applies to its accumulators), replaces st by exp(s - new mx) and updates the
     * running sum l[i] = l[i]*corr[i] + sum_j exp(...). */
    void (*softmax_tile)(float *st, int64_t ld, int64_t nk, int64_t nq, float scale, float *mx, float *l,
                         float *corr);
    /* One row of LayerNorm (rms = 0; w, b may be NULL) or T5 RMSNorm (rms = 1; b unused). y may alias x.
     * Statistics are accumulated in double. */
    void (*norm_row)(float *y, const float *x, int64_t dim, const float *w, const float *b, float eps, int rms);
    /* In place, elementwise (see cvx_gelu_tanh / cvx_silu). */
    void (*gelu_tanh)(float *x, int64_t n);
    void (*silu)(float *x, int64_t n);
    /* y[i] = f((x[i]·a[i] + b[i])·zy[i] + zb[i]) for i < n (zy, zb NULL: without that step; f = this table's silu
     * when silu, else the identity), each product and sum rounded on its own (no fused multiply-add): the same
     * numbers as the two steps and a silu pass apart. The VAE's GroupNorm (and spatial norm) applied to a pixel. y
     * may alias x. */
    void (*affine_silu)(const float *x, const float *a, const float *b, const float *zy, const float *zb, float *y,
                        int64_t n, int silu);
    /* Per channel c < C over the pixels of x ([pixels][C]), in pixel order and in double: sum[c] += x, sq[c] +=
     * x·x (exact in double, so the same numbers on every path). The VAE's GroupNorm statistics. */
    void (*channel_moments)(const float *x, int64_t pixels, int64_t C, double *sum, double *sq);
} cvx_kernel_table;

/* The table of a path (dispatch.c: a path without fp32 kernels of its own gets the next path down that has them —
 * avx512bf16 and amx run the avx512 ones; NULL for an unknown path); cvx_kernels_active() is the one the models
 * use. */
const cvx_kernel_table *cvx_kernels_for(cvx_isa isa);
const cvx_kernel_table *cvx_kernels_active(void);

/* The fp32 tables of the per-ISA files (ref.c, avx2.c, avx512.c). */
extern const cvx_kernel_table cvx_kernels_ref;
extern const cvx_kernel_table cvx_kernels_avx2;   /* avx2.c */
extern const cvx_kernel_table cvx_kernels_avx512; /* avx512.c */

/* Register-resident throughput probe for benchmarks: runs `iters` rounds of independent dot-product chains of
 * one family on the calling thread and returns the flops done (0 when this CPU lacks the family); the caller
 * times it. Families: "fp32" (FMA at the widest width the CPU has), "bf16" (vdpbf16ps), "amx" (tdpbf16ps). */
double cvx_kernels_peak_probe(const char *family, int64_t iters);

/* Tests only: makes the ops below use `kt` (NULL restores the normal choice). Not thread-safe with respect
 * to ops running at the same time. */
void cvx_kernels_set_active_for_testing(const cvx_kernel_table *kt);

/* ---- operations (kernels/ops.c): threaded, dispatched through the active table ---------------------------- */

/* y[M, N] = x[M, K] · W[N, K]ᵀ + bias[N]   (torch.nn.Linear; W is a 2-D view in F32/F16/BF16, bias may be NULL)
 * y must not alias x. */
void cvx_linear(cvx_pool *pool, float *y, const float *x, int64_t M, int64_t K, const cvx_tensor *W,
                const float *bias);

/* C[M, N] = A[M, K] · B[N, K]ᵀ  (both f32, leading dimensions in elements; accumulate adds to C). */
void cvx_gemm_nt(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                 int64_t ldb, float *C, int64_t ldc, int accumulate);

/* Multi-head attention without a materialised score matrix (tiled, online softmax):
 *   out[b, i, h*D + d] = sum_j softmax_j(scale · q[b,i,h]·k[b,j,h] + bias[h, i, j]) v[b, j, h*D + d]
 * q: [B, Lq, H*D] with row stride ldq; k, v: [B, Lk, H*D] with row strides ldk, ldv; out: [B, Lq, H*D]
 * (row stride ldo); bias: optional [H, Lq, Lk] additive (T5's position bias), shared across the batch. */
void cvx_attention(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                   int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                   int64_t D, float scale, const float *bias);

/* LayerNorm over the last dim (torch.nn.LayerNorm): y = (x - mean) / sqrt(var + eps) * w + b; w, b may be
 * NULL (no affine). y may alias x. rows x dim. */
void cvx_layernorm(cvx_pool *pool, float *y, const float *x, int64_t rows, int64_t dim, const float *w,
                   const float *b, float eps);
/* T5 RMSNorm: y = x / sqrt(mean(x²) + eps) * w (w may be NULL). y may alias x. */
void cvx_rmsnorm(cvx_pool *pool, float *y, const float *x, int64_t rows, int64_t dim, const float *w, float eps);
/* In place, elementwise. gelu_tanh = 0.5x(1 + tanh(√(2/π)(x + 0.044715x³))) (torch approximate="tanh"). */
void cvx_gelu_tanh(cvx_pool *pool, float *x, int64_t n);
void cvx_silu(cvx_pool *pool, float *x, int64_t n);
/* Exact up-cast of any float view (F32/F16/BF16/F64) into dst (numel floats). */
void cvx_to_f32(cvx_pool *pool, float *dst, const cvx_tensor *src);

/* ---- the bf16 fast path (--precision bf16) ----------------------------------------------------------------
 * Activations enter the matrix products rounded to bf16 (round-to-nearest-even, as torch), products accumulate
 * in f32, results are f32. Weights are converted once, at load, into the active path's packed bf16 layout (from
 * F32/F16/BF16 storage). Every path implements these: AMX-BF16 tiles, AVX512-BF16 vdpbf16ps, and — for machines
 * without bf16 dot products — an emulation on the fp32 kernels with the same rounding of the inputs (correct,
 * not fast). Norms, softmax statistics, residual streams stay f32 in the callers. */
typedef struct cvx_packed cvx_packed;

/* The bf16 path of an instruction set (tables in kernels_internal.h): the emulation for ref/avx2/avx512,
 * vdpbf16ps for avx512bf16, tiles for amx; cvx_bf16_kernels_active() follows cvx_isa_active(). A packed
 * weight remembers the path that packed it, and cvx_linear_bf16 runs on that path. */
typedef struct cvx_bf16_table cvx_bf16_table;
const cvx_bf16_table *cvx_bf16_kernels_for(cvx_isa isa);
const cvx_bf16_table *cvx_bf16_kernels_active(void);
const char *cvx_bf16_kernels_name(const cvx_bf16_table *t);
/* Tests only: the AMX kernels on a C emulation of the tiles (NULL where the machine lacks AVX512-BF16, which
 * their vector parts need), so the tile code is tested on machines without AMX. */
const cvx_bf16_table *cvx_bf16_kernels_amx_emulated(void);
/* Tests only, as cvx_kernels_set_active_for_testing (NULL restores the normal choice). */
void cvx_bf16_kernels_set_active_for_testing(const cvx_bf16_table *t);

/* Packs W [N, K] (a 2-D view in F32/F16/BF16) for cvx_linear_bf16 with the active path's layout. Returns
 * CVX_ERR_OUT_OF_MEMORY or CVX_ERR_INVALID_ARGUMENT (dtype, shape) on failure; *out is NULL then. The pool may
 * be NULL. */
cvx_status cvx_pack_bf16(cvx_pool *pool, const cvx_tensor *W, cvx_packed **out);
void cvx_packed_free(cvx_packed *p);
size_t cvx_packed_bytes(const cvx_packed *p);
int64_t cvx_packed_rows(const cvx_packed *p); /* N */
int64_t cvx_packed_cols(const cvx_packed *p); /* K */

/* y[M, N] = bf16(x)[M, K] · Wᵀ + bias[N] (bias f32, may be NULL); f32 accumulation. y must not alias x. */
void cvx_linear_bf16(cvx_pool *pool, float *y, const float *x, int64_t M, int64_t K, const cvx_packed *W,
                     const float *bias);
/* cvx_linear_bf16 with row strides and a fused epilogue, applied while each output block is in cache:
 *   t = x·Wᵀ + bias[n];  t = gelu_tanh(t) when act (the same function as cvx_gelu_tanh);
 *   y[m, n] = residual[m, n] + gate[m / gate_rows, n] · t
 * (no residual: 0 +; no gate: 1 ·). gate has one row (stride ldgate) per gate_rows consecutive rows of y (per
 * batch item); residual (row stride ldres) may be y itself (same pointer and stride) but must not otherwise
 * overlap it; y must not overlap x. x is only read: its rows may overlap (ldx < K, e.g. a convolution's windows
 * over a row of pixels, ldx = channels, K = taps x channels). epi may be NULL (plain linear). With several K blocks
 * (K > 2048) the residual/gate form adds gate·(partial sum) per block instead of rounding the full sum first (a few
 * f32 ulps). Returns CVX_ERR_INVALID_ARGUMENT (nothing written) for a K that is not W's, ldy below N, ldx < 1 (with
 * M > 1), act with a residual (not a form any block uses), gate_rows < 1 or an unknown act. */
typedef enum { CVX_ACT_NONE = 0, CVX_ACT_GELU_TANH = 1 } cvx_act;
typedef struct {
    cvx_act act;
    const float *gate; /* [ceil(M / gate_rows), N] or NULL */
    int64_t gate_rows, ldgate;
    const float *residual; /* [M, N] or NULL */
    int64_t ldres;
} cvx_epilogue;
cvx_status cvx_linear_bf16_ex(cvx_pool *pool, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t K,
                              const cvx_packed *W, const float *bias, const cvx_epilogue *epi);

/* C[M, N] = bf16(A)[M, K] · bf16(B)[N, K]ᵀ (both f32 in memory, rounded on the fly), f32 accumulation. */
void cvx_gemm_nt_bf16(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float *C, int64_t ldc, int accumulate);
/* cvx_attention with Q·Kᵀ and P·V as bf16 products (q, k, v and the probabilities rounded to bf16), f32
 * accumulation and f32 softmax statistics; same arguments and layout. */
void cvx_attention_bf16(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                        int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                        int64_t D, float scale, const float *bias);

#endif
