/* Private to src/kernels: what the per-instruction-set files share with the drivers in ops.c. */
#ifndef CVX_KERNELS_INTERNAL_H
#define CVX_KERNELS_INTERNAL_H

#include "kernels/kernels.h"

/* gelu_tanh(x) = 0.5x(1 + tanh(K0·(x + K1·x³))), K0 = √(2/π) (torch approximate="tanh", HF gelu_new). */
#define CVX_GELU_K0 0.7978845608028654f
#define CVX_GELU_K1 0.044715f

/* The blocked GEMM of ops.c on one thread with the given table (what the tables' gemm_f32 entries use). */
void cvx__gemm_single(const cvx_kernel_table *kt, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                      const float *B, int64_t ldb, float *C, int64_t ldc, int accumulate);

#endif
