/* The AMX-BF16 path (placeholder until its kernels land: the avx512bf16 kernels serve it). */
#include "kernels/kernels_internal.h"

double cvx__peak_amx(int64_t iters) {
    (void)iters;
    return 0.0;
}
