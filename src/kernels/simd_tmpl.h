/* The fp32 kernels written once over a vector width: avx2.c (8 lanes) and avx512.c (16 lanes) define the
 * primitives below and include this file, which builds their cvx_kernel_table.
 *
 * The including file defines:
 *   VW (lanes), V (float vector), VD (double vector of VW/2 lanes), MR (micro-tile rows, <= VW),
 *   TABLE_NAME, TABLE_ISA, TABLE_STR,
 *   v_zero, v_set1, v_load, v_store, v_loadn(p, n) (first n lanes, rest 0), v_storen(p, v, n), v_fma(a, b, c),
 *   v_add, v_sub, v_mul, v_div, v_max, v_min, v_neg_inf_to_zero, v_round, v_scale2(p, n) (p·2^n, n integral
 *   float),
 *   v_load_f16n / v_load_bf16n (first n halves, up-cast), transpose(V r[VW]),
 *   v_hsum (sum of the lanes), vd_zero, vd_set1, vd_lo(V) / vd_hi(V) (to double), vd_add, vd_sub, vd_fma,
 *   vd_hsum, vd_load / vd_store (VW/2 doubles, unaligned).
 *
 * Micro-tile: MR rows x NR = 2·VW columns of C in 2·MR accumulators; per k step two vector loads of packed
 * B and MR broadcasts of packed A. */
#include <math.h>
#include <string.h>

#include "core/half.h"
#include "kernels/kernels_internal.h"

#define NR (2 * VW)

#define ALWAYS_INLINE static inline __attribute__((always_inline))

/* ---- packing ---------------------------------------------------------------------------------------- */

/* Element index arithmetic stays in the source dtype; n valid lanes, the rest read as 0. */
ALWAYS_INLINE V load_elems(cvx_dtype dt, const void *base, int64_t idx, int n) {
    if (dt == CVX_DTYPE_F16) return v_load_f16n((const uint16_t *)base + idx, n);
    if (dt == CVX_DTYPE_BF16) return v_load_bf16n((const uint16_t *)base + idx, n);
    return n == VW ? v_load((const float *)base + idx) : v_loadn((const float *)base + idx, n);
}

/* rows (<= VW) rows x k columns of src (row stride ld, starting at element idx0) transposed into
 * dst[p*dst_stride + r] for p < k, r < lanes (rows past `rows` are written as 0). */
ALWAYS_INLINE void pack_transposed(cvx_dtype dt, const void *src, int64_t idx0, int64_t ld, int rows, int64_t k,
                                   float *dst, int64_t dst_stride, int lanes) {
    V r[VW];
    for (int64_t p = 0; p < k; p += VW) {
        int kn = k - p < VW ? (int)(k - p) : VW;
        for (int i = 0; i < VW; i++) r[i] = i < rows ? load_elems(dt, src, idx0 + i * ld + p, kn) : v_zero();
        transpose(r);
        for (int t = 0; t < kn; t++) {
            if (lanes == VW) v_store(dst + (p + t) * dst_stride, r[t]);
            else v_storen(dst + (p + t) * dst_stride, r[t], lanes);
        }
    }
}

static void pack_a(const float *A, int64_t lda, int64_t m, int64_t k, float *dst) {
    for (int64_t i0 = 0; i0 < m; i0 += MR, dst += MR * k) {
        int rows = m - i0 < MR ? (int)(m - i0) : MR;
        pack_transposed(CVX_DTYPE_F32, A, i0 * lda, lda, rows, k, dst, MR, MR);
    }
}

ALWAYS_INLINE void pack_b_dt(cvx_dtype dt, const void *B, int64_t ldb, int64_t n0, int64_t n, int64_t k0, int64_t k,
                             float *dst) {
    for (int64_t j0 = 0; j0 < n; j0 += NR, dst += NR * k)
        for (int g = 0; g < 2; g++) {
            int64_t left = n - j0 - g * VW;
            int rows = left <= 0 ? 0 : left < VW ? (int)left : VW;
            pack_transposed(dt, B, (n0 + j0 + g * VW) * ldb + k0, ldb, rows, k, dst + g * VW, NR, VW);
        }
}

static void pack_b(cvx_dtype dt, const void *B, int64_t ldb, int64_t n0, int64_t n, int64_t k0, int64_t k,
                   float *dst) {
    switch (dt) {
    case CVX_DTYPE_F16: pack_b_dt(CVX_DTYPE_F16, B, ldb, n0, n, k0, k, dst); break;
    case CVX_DTYPE_BF16: pack_b_dt(CVX_DTYPE_BF16, B, ldb, n0, n, k0, k, dst); break;
    default: pack_b_dt(CVX_DTYPE_F32, B, ldb, n0, n, k0, k, dst); break;
    }
}

/* ---- micro-kernel ----------------------------------------------------------------------------------- */

ALWAYS_INLINE void store_row(float *c, V v, int n, int accumulate, const float *bias) {
    if (n == VW) {
        if (accumulate) v = v_add(v_load(c), v);
        else if (bias) v = v_add(v, v_load(bias));
        v_store(c, v);
    } else if (n > 0) {
        if (accumulate) v = v_add(v_loadn(c, n), v);
        else if (bias) v = v_add(v, v_loadn(bias, n));
        v_storen(c, v, n);
    }
}

/* m is a compile-time constant after inlining, so the accumulators live in registers. */
ALWAYS_INLINE void ukernel_m(const int m, int64_t k, const float *a, int64_t as, const float *b, float *C,
                             int64_t ldc, int n, int accumulate, const float *bias) {
    V c0[MR], c1[MR];
    /* Unrolled before loop distribution sees it, so the zeroing is not turned into a memset of a stack copy. */
#pragma GCC unroll 16
    for (int i = 0; i < m; i++) c0[i] = c1[i] = v_zero();
    for (int64_t p = 0; p < k; p++, a += as, b += NR) {
        V b0 = v_load(b), b1 = v_load(b + VW);
        for (int i = 0; i < m; i++) {
            V ai = v_set1(a[i]);
            c0[i] = v_fma(ai, b0, c0[i]);
            c1[i] = v_fma(ai, b1, c1[i]);
        }
    }
    int n0 = n < VW ? n : VW, n1 = n - n0;
    for (int i = 0; i < m; i++) {
        store_row(C + i * ldc, c0[i], n0, accumulate, bias);
        store_row(C + i * ldc + VW, c1[i], n1, accumulate, bias ? bias + VW : NULL);
    }
}

static void ukernel(int64_t k, const float *a, int64_t as, const float *b, float *C, int64_t ldc, int m, int n,
                    int accumulate, const float *bias) {
    switch (m) {
#define UK_CASE(i) \
    case i: ukernel_m(i, k, a, as, b, C, ldc, n, accumulate, bias); break;
    UK_CASE(1) UK_CASE(2) UK_CASE(3) UK_CASE(4) UK_CASE(5) UK_CASE(6)
#if MR > 6
    UK_CASE(7) UK_CASE(8) UK_CASE(9) UK_CASE(10) UK_CASE(11) UK_CASE(12)
#endif
#if MR > 12
#error "MR > 12: add cases"
#endif
#undef UK_CASE
    default: break;
    }
}

/* ---- few-row products ----------------------------------------------------------------------------------- */

/* m rows of x against R weight rows at a time, vectorised along k; one horizontal sum per output. */
ALWAYS_INLINE void gemv_block(const int m, const int R, cvx_dtype dt, int64_t k, const float *x, int64_t ldx,
                              const void *B, int64_t ldb, int64_t row, float *y, int64_t ldy, int accumulate,
                              const float *bias) {
    V acc[CVX_GEMV_MAX_ROWS][4];
    for (int i = 0; i < m; i++)
        for (int r = 0; r < R; r++) acc[i][r] = v_zero();
    for (int64_t p = 0; p < k; p += VW) {
        int cnt = k - p < VW ? (int)(k - p) : VW;
        V xv[CVX_GEMV_MAX_ROWS];
        for (int i = 0; i < m; i++) xv[i] = cnt == VW ? v_load(x + i * ldx + p) : v_loadn(x + i * ldx + p, cnt);
        for (int r = 0; r < R; r++) {
            V w = load_elems(dt, B, (row + r) * ldb + p, cnt);
            for (int i = 0; i < m; i++) acc[i][r] = v_fma(xv[i], w, acc[i][r]);
        }
    }
    for (int i = 0; i < m; i++)
        for (int r = 0; r < R; r++) {
            float s = v_hsum(acc[i][r]), *c = y + i * ldy + r;
            *c = accumulate ? *c + s : s + (bias ? bias[r] : 0.0f);
        }
}

ALWAYS_INLINE void gemv_m(const int m, cvx_dtype dt, int64_t k, const float *x, int64_t ldx, const void *B,
                          int64_t ldb, int64_t n0, int64_t n, float *y, int64_t ldy, int accumulate, const float *bias) {
    int64_t j = 0;
    for (; j + 4 <= n; j += 4)
        gemv_block(m, 4, dt, k, x, ldx, B, ldb, n0 + j, y + j, ldy, accumulate, bias ? bias + j : NULL);
    for (; j < n; j++)
        gemv_block(m, 1, dt, k, x, ldx, B, ldb, n0 + j, y + j, ldy, accumulate, bias ? bias + j : NULL);
}

ALWAYS_INLINE void gemv_dt(cvx_dtype dt, int m, int64_t k, const float *x, int64_t ldx, const void *B, int64_t ldb,
                           int64_t n0, int64_t n, float *y, int64_t ldy, int accumulate, const float *bias) {
    switch (m) {
    case 1: gemv_m(1, dt, k, x, ldx, B, ldb, n0, n, y, ldy, accumulate, bias); break;
    case 2: gemv_m(2, dt, k, x, ldx, B, ldb, n0, n, y, ldy, accumulate, bias); break;
    case 3: gemv_m(3, dt, k, x, ldx, B, ldb, n0, n, y, ldy, accumulate, bias); break;
    case 4: gemv_m(4, dt, k, x, ldx, B, ldb, n0, n, y, ldy, accumulate, bias); break;
    default: break;
    }
}

static void gemv(int m, int64_t k, const float *x, int64_t ldx, cvx_dtype dt, const void *B, int64_t ldb, int64_t n0,
                 int64_t n, float *y, int64_t ldy, int accumulate, const float *bias) {
    switch (dt) {
    case CVX_DTYPE_F16: gemv_dt(CVX_DTYPE_F16, m, k, x, ldx, B, ldb, n0, n, y, ldy, accumulate, bias); break;
    case CVX_DTYPE_BF16: gemv_dt(CVX_DTYPE_BF16, m, k, x, ldx, B, ldb, n0, n, y, ldy, accumulate, bias); break;
    default: gemv_dt(CVX_DTYPE_F32, m, k, x, ldx, B, ldb, n0, n, y, ldy, accumulate, bias); break;
    }
}

#include "kernels/simd_math.h"

/* ---- online softmax tile ------------------------------------------------------------------------------- */

static void softmax_tile(float *st, int64_t ld, int64_t nk, int64_t nq, float scale, float *mx, float *l,
                         float *corr) {
    /* For scale > 0, max(scale·s) = scale·max(s): the scaling folds into the exp argument (one fma), so
     * the scores are read twice and written once. */
    int folded = scale > 0.0f;
    V vs = v_set1(scale);
    for (int64_t i0 = 0; i0 < nq; i0 += VW) {
        int cnt = nq - i0 < VW ? (int)(nq - i0) : VW;
        V m_old = v_loadn(mx + i0, cnt), m = v_set1(-INFINITY);
        for (int64_t j = 0; j < nk; j++) {
            float *row = st + j * ld + i0;
            V s = v_loadn(row, cnt);
            if (!folded) {
                s = v_mul(s, vs);
                v_storen(row, s, cnt);
            }
            m = v_max(m, s);
        }
        if (folded) m = v_mul(m, vs);
        m = v_max(m_old, m);
        /* A column that is still all -inf keeps finite exp() arguments (its weights are 0). */
        V use = v_neg_inf_to_zero(m);
        V cr = v_exp(v_sub(m_old, use));
        V sum = v_zero(), neg_use = v_sub(v_zero(), use), one = v_set1(folded ? scale : 1.0f);
        for (int64_t j = 0; j < nk; j++) {
            float *row = st + j * ld + i0;
            V p = v_exp(v_fma(v_loadn(row, cnt), one, neg_use));
            v_storen(row, p, cnt);
            sum = v_add(sum, p);
        }
        v_storen(l + i0, v_fma(v_loadn(l + i0, cnt), cr, sum), cnt);
        v_storen(corr + i0, cr, cnt);
        v_storen(mx + i0, m, cnt);
    }
}

/* ---- norms ---------------------------------------------------------------------------------------------- */

static void norm_row(float *y, const float *x, int64_t dim, const float *w, const float *b, float eps, int rms) {
    double mean = 0.0;
    int64_t full = dim / VW * VW;
    if (!rms) {
        VD s0 = vd_zero(), s1 = vd_zero();
        for (int64_t i = 0; i < full; i += VW) {
            V v = v_load(x + i);
            s0 = vd_add(s0, vd_lo(v));
            s1 = vd_add(s1, vd_hi(v));
        }
        mean = vd_hsum(vd_add(s0, s1));
        for (int64_t i = full; i < dim; i++) mean += x[i];
        mean /= (double)dim;
    }
    VD vm = vd_set1(mean), q0 = vd_zero(), q1 = vd_zero();
    for (int64_t i = 0; i < full; i += VW) {
        V v = v_load(x + i);
        VD d0 = vd_sub(vd_lo(v), vm), d1 = vd_sub(vd_hi(v), vm);
        q0 = vd_fma(d0, d0, q0);
        q1 = vd_fma(d1, d1, q1);
    }
    double var = vd_hsum(vd_add(q0, q1));
    for (int64_t i = full; i < dim; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)dim;
    V inv = v_set1((float)(1.0 / sqrt(var + (double)eps)));
    V fm = v_set1((float)mean);
    for (int64_t i = 0; i < dim; i += VW) {
        int n = dim - i < VW ? (int)(dim - i) : VW;
        V v = v_mul(v_sub(v_loadn(x + i, n), fm), inv);
        if (w) v = v_mul(v, v_loadn(w + i, n));
        if (b && !rms) v = v_add(v, v_loadn(b + i, n));
        v_storen(y + i, v, n);
    }
}

/* ---- conversions --------------------------------------------------------------------------------------- */

static void f16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i += VW) {
        int c = n - i < VW ? (int)(n - i) : VW;
        V v = v_load_f16n(src + i, c);
        if (c == VW) v_store(dst + i, v);
        else v_storen(dst + i, v, c);
    }
}

static void affine_silu(const float *x, const float *a, const float *b, const float *zy, const float *zb, float *y,
                        int64_t n, int silu) {
    for (int64_t i = 0; i < n; i += VW) {
        int c = n - i < VW ? (int)(n - i) : VW;
        V v = v_add(v_mul(v_loadn(x + i, c), v_loadn(a + i, c)), v_loadn(b + i, c));
        if (zy) v = v_add(v_mul(v, v_loadn(zy + i, c)), v_loadn(zb + i, c));
        if (silu) v = v_silu(v);
        if (c == VW) v_store(y + i, v);
        else v_storen(y + i, v, c);
    }
}

/* Channels in blocks of 2·VW held in registers (lanes: channels), the pixels inner and in order, so each channel
 * sums in the same order as the portable loop; v·v is exact in double, so the fused multiply-add rounds as the
 * separate add does. */
static void channel_moments(const float *x, int64_t pixels, int64_t C, double *sum, double *sq) {
    int64_t c0 = 0;
    for (; c0 + 2 * VW <= C; c0 += 2 * VW) {
        VD s[4], q[4];
        for (int h = 0; h < 2; h++) {
            s[2 * h] = vd_load(sum + c0 + h * VW), s[2 * h + 1] = vd_load(sum + c0 + h * VW + VW / 2);
            q[2 * h] = vd_load(sq + c0 + h * VW), q[2 * h + 1] = vd_load(sq + c0 + h * VW + VW / 2);
        }
        const float *p = x + c0;
        for (int64_t i = 0; i < pixels; i++, p += C)
            for (int h = 0; h < 2; h++) {
                V v = v_load(p + h * VW);
                VD lo = vd_lo(v), hi = vd_hi(v);
                s[2 * h] = vd_add(s[2 * h], lo), s[2 * h + 1] = vd_add(s[2 * h + 1], hi);
                q[2 * h] = vd_fma(lo, lo, q[2 * h]), q[2 * h + 1] = vd_fma(hi, hi, q[2 * h + 1]);
            }
        for (int h = 0; h < 2; h++) {
            vd_store(sum + c0 + h * VW, s[2 * h]), vd_store(sum + c0 + h * VW + VW / 2, s[2 * h + 1]);
            vd_store(sq + c0 + h * VW, q[2 * h]), vd_store(sq + c0 + h * VW + VW / 2, q[2 * h + 1]);
        }
    }
    for (int64_t c = c0; c < C; c++) {
        const float *p = x + c;
        double s = sum[c], q = sq[c];
        for (int64_t i = 0; i < pixels; i++, p += C) {
            double v = *p;
            s += v;
            q += v * v;
        }
        sum[c] = s, sq[c] = q;
    }
}

static void bf16_to_f32(const uint16_t *src, float *dst, int64_t n) {
    for (int64_t i = 0; i < n; i += VW) {
        int c = n - i < VW ? (int)(n - i) : VW;
        V v = v_load_bf16n(src + i, c);
        if (c == VW) v_store(dst + i, v);
        else v_storen(dst + i, v, c);
    }
}

const cvx_kernel_table TABLE_NAME = {
    .isa = TABLE_ISA,
    .name = TABLE_STR,
    .f16_to_f32 = f16_to_f32,
    .bf16_to_f32 = bf16_to_f32,
    .gemm_mr = MR,
    .gemm_nr = NR,
    .gemm_pack_a = pack_a,
    .gemm_pack_b = pack_b,
    .gemm_ukernel = ukernel,
    .gemv = gemv,
    .softmax_tile = softmax_tile,
    .norm_row = norm_row,
    .gelu_tanh = simd_gelu_tanh_row,
    .silu = simd_silu_row,
    .affine_silu = affine_silu,
    .channel_moments = channel_moments,
};
