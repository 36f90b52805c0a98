/* Portable C kernels: the reference every SIMD path is tested against. */
#include "core/half.h"
#include "kernels/kernels.h"

static void ref_gemm_f32(int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B, int64_t ldb,
                         float *C, int64_t ldc, int accumulate) {
    for (int64_t m = 0; m < M; m++) {
        const float *a = A + m * lda;
        for (int64_t n = 0; n < N; n++) {
            const float *b = B + n * ldb;
            float s = 0.0f;
            for (int64_t k = 0; k < K; k++) s += a[k] * b[k];
            C[m * ldc + n] = accumulate ? C[m * ldc + n] + s : s;
        }
    }
}

static void ref_f16_to_f32(const uint16_t *src, float *dst, int64_t n) { cvx_f16_to_f32_array(src, dst, (size_t)n); }
static void ref_bf16_to_f32(const uint16_t *src, float *dst, int64_t n) { cvx_bf16_to_f32_array(src, dst, (size_t)n); }

const cvx_kernel_table cvx_kernels_ref = {
    .isa = CVX_ISA_REF,
    .name = "ref",
    .gemm_f32 = ref_gemm_f32,
    .f16_to_f32 = ref_f16_to_f32,
    .bf16_to_f32 = ref_bf16_to_f32,
};
