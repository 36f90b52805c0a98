/* Portable C kernels: the path for CPUs without AVX2, and the plainest statement of each table entry's
 * contract (the SIMD paths must agree with these within rounding; tests/test_kernels.c checks every path
 * against independent double-precision sums). */
#include <math.h>

#include "core/half.h"
#include "kernels/kernels_internal.h"

#define REF_MR 4
#define REF_NR 8

static void ref_f16_to_f32(const uint16_t *src, float *dst, int64_t n) { cvx_f16_to_f32_array(src, dst, (size_t)n); }
static void ref_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) { cvx_bf16_to_f32_array(src, dst, (size_t)n); }

static void ref_pack_a(const float *A, int64_t lda, int64_t m, int64_t k, float *dst) {
    for (int64_t i0 = 0; i0 < m; i0 += REF_MR, dst += REF_MR * k)
        for (int64_t p = 0; p < k; p++)
            for (int64_t i = 0; i < REF_MR; i++) dst[p * REF_MR + i] = i0 + i < m ? A[(i0 + i) * lda + p] : 0.0f;
}

static float b_elem(cvx_dtype dt, const void *B, int64_t idx) {
    switch (dt) {
    case CVX_DTYPE_F16: return cvx_f16_to_f32(((const uint16_t *)B)[idx]);
    case CVX_DTYPE_BF16: return cvx_bf16_to_f32(((const uint16_t *)B)[idx]);
    default: return ((const float *)B)[idx];
    }
}

static void ref_pack_b(cvx_dtype dt, const void *B, int64_t ldb, int64_t n0, int64_t n, int64_t k0, int64_t k,
                       float *dst) {
    for (int64_t j0 = 0; j0 < n; j0 += REF_NR, dst += REF_NR * k)
        for (int64_t p = 0; p < k; p++)
            for (int64_t j = 0; j < REF_NR; j++)
                dst[p * REF_NR + j] = j0 + j < n ? b_elem(dt, B, (n0 + j0 + j) * ldb + k0 + p) : 0.0f;
}

static void ref_ukernel(int64_t k, const float *a, int64_t a_stride, const float *b, float *C, int64_t ldc, int m,
                        int n, int accumulate, const float *bias) {
    float acc[REF_MR][REF_NR] = {{0}};
    for (int64_t p = 0; p < k; p++)
        for (int i = 0; i < REF_MR; i++)
            for (int j = 0; j < REF_NR; j++) acc[i][j] += a[p * a_stride + i] * b[p * REF_NR + j];
    for (int i = 0; i < m; i++)
        for (int j = 0; j < n; j++) {
            float *c = C + i * ldc + j;
            *c = accumulate ? *c + acc[i][j] : acc[i][j] + (bias ? bias[j] : 0.0f);
        }
}

static void ref_gemv(int m, int64_t k, const float *x, int64_t ldx, cvx_dtype dt, const void *B, int64_t ldb,
                     int64_t n0, int64_t n, float *y, int64_t ldy, int accumulate, const float *bias) {
    for (int i = 0; i < m; i++)
        for (int64_t j = 0; j < n; j++) {
            float s = 0.0f;
            for (int64_t p = 0; p < k; p++) s += x[i * ldx + p] * b_elem(dt, B, (n0 + j) * ldb + p);
            float *c = y + i * ldy + j;
            *c = accumulate ? *c + s : s + (bias ? bias[j] : 0.0f);
        }
}

static void ref_softmax_tile(float *st, int64_t ld, int64_t nk, int64_t nq, float scale, float *mx, float *l,
                             float *corr) {
    for (int64_t i = 0; i < nq; i++) {
        float m = mx[i];
        for (int64_t j = 0; j < nk; j++) {
            float s = st[j * ld + i] * scale;
            st[j * ld + i] = s;
            if (s > m) m = s;
        }
        /* A column of -inf so far: keep exp() arguments finite so later tiles still count. */
        float use = m == -INFINITY ? 0.0f : m;
        corr[i] = expf(mx[i] - use);
        float sum = 0.0f;
        for (int64_t j = 0; j < nk; j++) {
            float p = expf(st[j * ld + i] - use);
            st[j * ld + i] = p;
            sum += p;
        }
        l[i] = l[i] * corr[i] + sum;
        mx[i] = m;
    }
}

static void ref_norm_row(float *y, const float *x, int64_t dim, const float *w, const float *b, float eps, int rms) {
    double mean = 0.0, var = 0.0;
    if (!rms) {
        for (int64_t i = 0; i < dim; i++) mean += x[i];
        mean /= (double)dim;
    }
    for (int64_t i = 0; i < dim; i++) {
        double d = x[i] - mean;
        var += d * d;
    }
    var /= (double)dim;
    float inv = (float)(1.0 / sqrt(var + (double)eps));
    float fmean = (float)mean;
    for (int64_t i = 0; i < dim; i++) {
        float v = (x[i] - fmean) * inv;
        if (w) v *= w[i];
        if (b && !rms) v += b[i];
        y[i] = v;
    }
}

static void ref_gelu_tanh(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) {
        float v = x[i];
        x[i] = 0.5f * v * (1.0f + tanhf(CVX_GELU_K0 * (v + CVX_GELU_K1 * v * v * v)));
    }
}

static void ref_silu(float *x, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] = x[i] / (1.0f + expf(-x[i]));
}

static void ref_affine_silu(const float *x, const float *a, const float *b, const float *zy, const float *zb, float *y,
                            int64_t n, int silu) {
    for (int64_t i = 0; i < n; i++) {
        float p = x[i] * a[i], v = p + b[i];
        if (zy) {
            float q = v * zy[i];
            v = q + zb[i];
        }
        y[i] = v;
    }
    if (silu) ref_silu(y, n);
}

static void ref_channel_moments(const float *x, int64_t pixels, int64_t C, double *sum, double *sq) {
    for (int64_t i = 0; i < pixels; i++, x += C)
        for (int64_t c = 0; c < C; c++) {
            double v = x[c];
            sum[c] += v;
            sq[c] += v * v;
        }
}

const cvx_kernel_table cvx_kernels_ref = {
    .isa = CVX_ISA_REF,
    .name = "ref",
    .f16_to_f32 = ref_f16_to_f32,
    .bf16_to_f32 = ref_bf16_to_f32,
    .gemm_mr = REF_MR,
    .gemm_nr = REF_NR,
    .gemm_pack_a = ref_pack_a,
    .gemm_pack_b = ref_pack_b,
    .gemm_ukernel = ref_ukernel,
    .gemv = ref_gemv,
    .softmax_tile = ref_softmax_tile,
    .norm_row = ref_norm_row,
    .gelu_tanh = ref_gelu_tanh,
    .silu = ref_silu,
    .affine_silu = ref_affine_silu,
    .channel_moments = ref_channel_moments,
};
