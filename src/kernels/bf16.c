/* The bf16 fast path's front end (cvx_pack_bf16, cvx_linear_bf16, cvx_gemm_nt_bf16, cvx_attention_bf16) and
 * its emulation for CPUs without bf16 dot products.
 *
 * Numerics every path shares (torch's bf16 matmul with f32 accumulation): each input element is rounded to
 * the nearest bf16 (ties to even, c10::BFloat16), products of two bf16 are exact in f32, sums are f32. The
 * emulation rounds into f32 buffers and runs the fp32 kernels of the active table, so it differs from the
 * vdpbf16ps / AMX paths only in summation order. (The hardware conversions treat f32 subnormal inputs as
 * zero where torch keeps a bf16 subnormal; activations that small do not occur in these models.)
 *
 * Packing (once per weight, at load): CVX_PACK_ROWS is bf16 [N, K] row-major; CVX_PACK_PAIRS is the
 * vdpbf16ps / AMX operand layout described in kernels_internal.h. */
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "kernels/kernels_internal.h"

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

static void round_rows(float *dst, int64_t ldd, const float *src, int64_t lds, int64_t rows, int64_t cols) {
    for (int64_t r = 0; r < rows; r++)
        for (int64_t c = 0; c < cols; c++) dst[r * ldd + c] = cvx_bf16_round(src[r * lds + c]);
}

/* ---- packing ---------------------------------------------------------------------------------------------- */

static uint16_t to_bf16(cvx_dtype dt, const void *w, int64_t i) {
    switch (dt) {
    case CVX_DTYPE_BF16: return ((const uint16_t *)w)[i];
    /* f16 -> f32 is exact, so this is one rounding of the stored value. */
    case CVX_DTYPE_F16: return cvx_f32_to_bf16(cvx_f16_to_f32(((const uint16_t *)w)[i]));
    default: return cvx_f32_to_bf16(((const float *)w)[i]);
    }
}

typedef struct {
    const cvx_tensor *W;
    cvx_packed *p;
} pack_ctx;

static void pack_rows_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    (void)thread_index;
    pack_ctx *c = arg;
    const int64_t K = c->p->k;
    for (int64_t n = begin; n < end; n++)
        for (int64_t k = 0; k < K; k++) c->p->data[n * K + k] = to_bf16(c->W->dtype, c->W->data, n * K + k);
}

/* One task per panel of CVX_PACK_NR rows. */
static void pack_pairs_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    (void)thread_index;
    pack_ctx *c = arg;
    const int64_t N = c->p->n, K = c->p->k, kp = c->p->kp;
    if (c->p->kt->pack_panel) {
        /* The path's own vectorised packing, from f32 rows (F16/BF16 up-cast exactly, a panel at a time). */
        const cvx_kernel_table *ft = cvx_kernels_active();
        float *tmp = NULL;
        if (c->W->dtype != CVX_DTYPE_F32) tmp = malloc(sizeof(float) * (size_t)(CVX_PACK_NR * (K > 0 ? K : 1)));
        if (c->W->dtype == CVX_DTYPE_F32 || tmp) {
            for (int64_t pnl = begin; pnl < end; pnl++) {
                int64_t n0 = pnl * CVX_PACK_NR, nn = min64(CVX_PACK_NR, N - n0);
                const float *rows = (const float *)c->W->data + n0 * K;
                if (tmp) {
                    const uint16_t *src = (const uint16_t *)c->W->data + n0 * K;
                    if (c->W->dtype == CVX_DTYPE_F16) ft->f16_to_f32(src, tmp, nn * K);
                    else ft->bf16_to_f32(src, tmp, nn * K);
                    rows = tmp;
                }
                c->p->kt->pack_panel(rows, K, nn, K, kp, c->p->data + pnl * CVX_PACK_NR * kp);
            }
            free(tmp);
            return;
        }
    }
    for (int64_t pnl = begin; pnl < end; pnl++) {
        uint16_t *dst = c->p->data + pnl * CVX_PACK_NR * kp;
        for (int64_t t = 0; t < kp / 2; t++)
            for (int64_t j = 0; j < CVX_PACK_NR; j++)
                for (int64_t h = 0; h < 2; h++) {
                    int64_t n = pnl * CVX_PACK_NR + j, k = 2 * t + h;
                    dst[(t * CVX_PACK_NR + j) * 2 + h] = n < N && k < K ? to_bf16(c->W->dtype, c->W->data, n * K + k) : 0;
                }
    }
}

cvx_status cvx_pack_bf16(cvx_pool *pool, const cvx_tensor *W, cvx_packed **out) {
    if (!out) return CVX_ERR_INVALID_ARGUMENT;
    *out = NULL;
    if (!W || W->ndim != 2 || W->shape[0] < 0 || W->shape[1] < 0) return CVX_ERR_INVALID_ARGUMENT;
    if (W->dtype != CVX_DTYPE_F32 && W->dtype != CVX_DTYPE_F16 && W->dtype != CVX_DTYPE_BF16)
        return CVX_ERR_INVALID_ARGUMENT;
    const int64_t N = W->shape[0], K = W->shape[1];
    /* Keeps every size computation below far from overflow. */
    if (K > ((int64_t)1 << 40) || N > ((int64_t)1 << 40) / (K + CVX_PACK_KALIGN + 1)) return CVX_ERR_INVALID_ARGUMENT;
    if (N * K > 0 && !W->data) return CVX_ERR_INVALID_ARGUMENT;
    const cvx_bf16_table *kt = cvx_bf16_kernels_active();
    cvx_packed *p = calloc(1, sizeof *p);
    if (!p) return CVX_ERR_OUT_OF_MEMORY;
    p->kt = kt;
    p->n = N;
    p->k = K;
    int64_t elems;
    if (kt->layout == CVX_PACK_PAIRS) {
        p->kp = round_up(K, CVX_PACK_KALIGN);
        elems = round_up(N, CVX_PACK_NR) * p->kp;
    } else {
        p->kp = K;
        elems = N * K;
    }
    p->bytes = (size_t)elems * sizeof(uint16_t);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, p->bytes ? p->bytes : 64) != 0) {
        free(p);
        return CVX_ERR_OUT_OF_MEMORY;
    }
    p->data = mem;
    pack_ctx c = {W, p};
    if (kt->layout == CVX_PACK_PAIRS) cvx_pool_parallel_for(pool, round_up(N, CVX_PACK_NR) / CVX_PACK_NR, 1, pack_pairs_task, &c);
    else cvx_pool_parallel_for(pool, N, 64, pack_rows_task, &c);
    *out = p;
    return CVX_OK;
}

void cvx_packed_free(cvx_packed *p) {
    if (!p) return;
    free(p->data);
    free(p);
}
size_t cvx_packed_bytes(const cvx_packed *p) { return p ? p->bytes : 0; }
int64_t cvx_packed_rows(const cvx_packed *p) { return p ? p->n : 0; }
int64_t cvx_packed_cols(const cvx_packed *p) { return p ? p->k : 0; }

/* ---- emulation on the fp32 kernels -------------------------------------------------------------------------- */

/* Scratch for rounded copies: up to 16 MB, less when memory is short, 8 KB of stack at worst. */
#define EMU_STACK_FLOATS 2048
static float *scratch(float *stack_buf, int64_t want, int64_t *got) {
    for (int64_t n = min64(want, (int64_t)1 << 22); n > EMU_STACK_FLOATS; n /= 8) {
        float *p = malloc((size_t)n * sizeof(float));
        if (p) {
            *got = n;
            return p;
        }
    }
    *got = EMU_STACK_FLOATS;
    return stack_buf;
}

/* y rows = residual + gate·act(t + bias) for rows m0.. (t in y already), portable; gelu through the fp32
 * kernels so it is cvx_gelu_tanh's function. */
static void emu_epilogue(float *y, int64_t ldy, int64_t m0, int64_t rows, int64_t N, const float *bias,
                         const cvx_epilogue *e, const float *res0) {
    const cvx_kernel_table *ft = cvx_kernels_active();
    for (int64_t i = 0; i < rows; i++) {
        float *r = y + i * ldy;
        if (bias)
            for (int64_t n = 0; n < N; n++) r[n] += bias[n];
        if (e->act == CVX_ACT_GELU_TANH) ft->gelu_tanh(r, N);
        const float *g = e->gate ? e->gate + (m0 + i) / e->gate_rows * e->ldgate : NULL;
        const float *res = res0 ? res0 + i * e->ldres : NULL; /* res0: the residual's row m0 */
        for (int64_t n = 0; n < N; n++) r[n] = (res ? res[n] : 0.0f) + (g ? g[n] * r[n] : r[n]);
    }
}

static void emu_linear(cvx_pool *pool, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t K,
                       const cvx_packed *W, const float *bias, const cvx_epilogue *epi) {
    const int64_t N = W->n;
    if (M <= 0 || N <= 0) return;
    const cvx_kernel_table *kt = cvx_kernels_active();
    float stack_buf[EMU_STACK_FLOATS];
    int64_t cap;
    /* With an epilogue whose residual is y itself, the products go to a scratch block first. */
    int via_tmp = epi && epi->residual == y;
    int64_t row_floats = (K > 0 ? K : 1) + (via_tmp ? N : 0);
    float *buf = scratch(stack_buf, M * row_floats, &cap);
    if (cap >= row_floats) {
        /* Blocks of whole rows. */
        int64_t rows = cap / row_floats;
        float *tmp = buf + rows * (K > 0 ? K : 1);
        for (int64_t m0 = 0; m0 < M; m0 += rows) {
            int64_t mc = min64(rows, M - m0);
            round_rows(buf, K, x + m0 * ldx, ldx, mc, K);
            float *dst = via_tmp ? tmp : y + m0 * ldy;
            int64_t ldd = via_tmp ? N : ldy;
            cvx__gemm_run(kt, pool, mc, N, K, buf, K, CVX_DTYPE_BF16, W->data, K, dst, ldd, 0, epi ? NULL : bias);
            if (epi) {
                const float *res0 = epi->residual ? epi->residual + m0 * epi->ldres : NULL;
                if (via_tmp) {
                    emu_epilogue(tmp, N, m0, mc, N, bias, epi, res0);
                    for (int64_t i = 0; i < mc; i++) memcpy(y + (m0 + i) * ldy, tmp + i * N, (size_t)N * sizeof(float));
                } else {
                    emu_epilogue(y + m0 * ldy, ldy, m0, mc, N, bias, epi, res0);
                }
            }
        }
    } else {
        /* Rows longer than the scratch: one row at a time, K in pieces, accumulated in y, then the epilogue
         * (a residual in y itself is first saved to a heap row; without memory for it, the row is lost). */
        float *save = via_tmp ? malloc(sizeof(float) * (size_t)N) : NULL;
        for (int64_t m = 0; m < M; m++) {
            if (save) memcpy(save, y + m * ldy, (size_t)N * sizeof(float));
            for (int64_t k0 = 0; k0 < K; k0 += cap) {
                int64_t kc = min64(cap, K - k0);
                round_rows(buf, kc, x + m * ldx + k0, ldx, 1, kc);
                cvx__gemm_run(kt, pool, 1, N, kc, buf, kc, CVX_DTYPE_BF16, W->data + k0, K, y + m * ldy, ldy, k0 > 0,
                              k0 == 0 && !epi ? bias : NULL);
            }
            if (epi)
                emu_epilogue(y + m * ldy, ldy, m, 1, N, bias, epi,
                             via_tmp ? save : epi->residual ? epi->residual + m * epi->ldres : NULL);
        }
        free(save);
    }
    if (buf != stack_buf) free(buf);
}

static void emu_gemm_nt(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                        const float *B, int64_t ldb, float *C, int64_t ldc, int accumulate) {
    if (M <= 0 || N <= 0) return;
    const cvx_kernel_table *kt = cvx_kernels_active();
    if (K <= 0) {
        cvx__gemm_run(kt, pool, M, N, 0, A, lda, CVX_DTYPE_F32, B, ldb, C, ldc, accumulate, NULL);
        return;
    }
    float stack_buf[EMU_STACK_FLOATS];
    int64_t cap;
    float *buf = scratch(stack_buf, (M + N) * min64(K, 256), &cap);
    /* Rounded pieces: B[nc, kc] then A[mc, kc]; kc <= 256 and cap >= 2048 leave room for >= 4 rows each. */
    int64_t kc = min64(K, 256);
    int64_t nc = min64(N, cap / 2 / kc);
    int64_t mc = min64(M, (cap - nc * kc) / kc);
    float *bb = buf, *ab = buf + nc * kc;
    for (int64_t n0 = 0; n0 < N; n0 += nc) {
        int64_t nn = min64(nc, N - n0);
        for (int64_t k0 = 0; k0 < K; k0 += kc) {
            int64_t kk = min64(kc, K - k0);
            round_rows(bb, kk, B + n0 * ldb + k0, ldb, nn, kk);
            for (int64_t m0 = 0; m0 < M; m0 += mc) {
                int64_t mm = min64(mc, M - m0);
                round_rows(ab, kk, A + m0 * lda + k0, lda, mm, kk);
                cvx__gemm_run(kt, pool, mm, nn, kk, ab, kk, CVX_DTYPE_F32, bb, kk, C + m0 * ldc + n0, ldc,
                              accumulate || k0 > 0, NULL);
            }
        }
    }
    if (buf != stack_buf) free(buf);
}

static void emu_attention(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                          int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                          int64_t D, float scale, const float *bias) {
    cvx__attention_run(cvx_kernels_active(), pool, out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias, 1);
}

const cvx_bf16_table cvx_bf16_emu = {
    .isa = CVX_ISA_REF,
    .name = "emulated",
    .layout = CVX_PACK_ROWS,
    .linear = emu_linear,
    .gemm_nt = emu_gemm_nt,
    .attention = emu_attention,
};

/* ---- API ---------------------------------------------------------------------------------------------------- */

void cvx_linear_bf16(cvx_pool *pool, float *y, const float *x, int64_t M, int64_t K, const cvx_packed *W,
                     const float *bias) {
    if (!W || K != W->k) return; /* callers check shapes; a mismatch must not read out of bounds */
    W->kt->linear(pool, y, W->n, x, K, M, K, W, bias, NULL);
}

cvx_status cvx_linear_bf16_ex(cvx_pool *pool, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t K,
                              const cvx_packed *W, const float *bias, const cvx_epilogue *epi) {
    if (!W || K != W->k || M < 0 || ldy < W->n || (M > 1 && ldx < 1)) return CVX_ERR_INVALID_ARGUMENT;
    if (epi) {
        if (epi->act != CVX_ACT_NONE && epi->act != CVX_ACT_GELU_TANH) return CVX_ERR_INVALID_ARGUMENT;
        if (epi->act != CVX_ACT_NONE && epi->residual) return CVX_ERR_INVALID_ARGUMENT;
        if (epi->gate && (epi->gate_rows < 1 || epi->ldgate < W->n)) return CVX_ERR_INVALID_ARGUMENT;
        if (epi->residual && epi->ldres < W->n) return CVX_ERR_INVALID_ARGUMENT;
        if (epi->residual == y && epi->ldres != ldy) return CVX_ERR_INVALID_ARGUMENT;
        if (epi->act == CVX_ACT_NONE && !epi->gate && !epi->residual) epi = NULL;
    }
    W->kt->linear(pool, y, ldy, x, ldx, M, K, W, bias, epi);
    return CVX_OK;
}

void cvx_gemm_nt_bf16(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                      int64_t ldb, float *C, int64_t ldc, int accumulate) {
    cvx_bf16_kernels_active()->gemm_nt(pool, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

void cvx_attention_bf16(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                        int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                        int64_t D, float scale, const float *bias) {
    cvx_bf16_kernels_active()->attention(pool, out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias);
}
