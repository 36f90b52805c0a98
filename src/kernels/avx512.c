/* The AVX-512F fp32 path: 16-lane vectors, a 12 x 32 micro-tile (24 zmm accumulators), F16C up-casts.
 * The kernels themselves are in simd_tmpl.h over the 512-bit primitives of avx512_v.h. */
#include <immintrin.h>
#include <math.h>

#include "kernels/avx512_v.h"
#include "kernels/kernels.h"

#define MR 12
#define TABLE_NAME cvx_kernels_avx512
#define TABLE_ISA CVX_ISA_AVX512
#define TABLE_STR "avx512"

#include "kernels/simd_tmpl.h"

/* Register peak of the fp32 FMA: 24 independent chains (latency 4 x 2 per cycle, with room to spare). */
double cvx__peak_avx512(int64_t iters) {
    V c[24], a = v_set1(1.0f), b = v_set1(0.0f);
    for (int i = 0; i < 24; i++) c[i] = v_set1((float)i);
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) c[i] = v_fma(c[i], a, b);
        __asm__ volatile("" : "+x"(a)); /* keeps the loop from being folded */
    }
    V s = c[0];
    for (int i = 1; i < 24; i++) s = v_add(s, c[i]);
    volatile float sink = v_hsum(s);
    (void)sink;
    return (double)iters * 24.0 * 2.0 * VW;
}
