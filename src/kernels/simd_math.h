/* Vector math written once over a vector width: exp, tanh-GELU and SiLU (the functions of cvx_gelu_tanh
 * and cvx_silu), on the primitives of the including file (simd_tmpl.h's list: VW, V, v_*). Included by
 * simd_tmpl.h (the fp32 paths) and by bf16_avx512.h (the fused epilogues of the bf16 paths), so that both compute
 * the same function on a CPU. */
#ifndef CVX_KERNELS_SIMD_MATH_H
#define CVX_KERNELS_SIMD_MATH_H

#include <stdint.h>

#include "kernels/kernels_internal.h" /* CVX_GELU_K0, CVX_GELU_K1 */

#define SIMD_MATH_INLINE static inline __attribute__((always_inline))

/* ---- exp, tanh ------------------------------------------------------------------------------------------ */

/* exp(x): x = n·ln2 + r, |r| <= ln2/2, Cephes' degree-7 polynomial for e^r, then ·2^n (v_scale2 handles
 * subnormal results and overflow to inf). About 1 ulp; NaN propagates (the clamp keeps NaN lanes). */
SIMD_MATH_INLINE V v_exp(V x) {
    x = v_min(v_set1(88.8f), v_max(v_set1(-110.0f), x));
    V n = v_round(v_mul(x, v_set1(1.44269504088896341f)));
    V r = v_fma(n, v_set1(-0.693359375f), x);
    r = v_fma(n, v_set1(2.12194440e-4f), r);
    V p = v_set1(1.9875691500e-4f);
    p = v_fma(p, r, v_set1(1.3981999507e-3f));
    p = v_fma(p, r, v_set1(8.3334519073e-3f));
    p = v_fma(p, r, v_set1(4.1665795894e-2f));
    p = v_fma(p, r, v_set1(1.6666665459e-1f));
    p = v_fma(p, r, v_set1(5.0000001201e-1f));
    p = v_fma(p, v_mul(r, r), v_add(r, v_set1(1.0f)));
    return v_scale2(p, n);
}

/* tanh-GELU, 0.5·x·(1 + tanh(u)) with u = k0·(x + k1·x³), in its sigmoid form x / (1 + e^(-2u)) (the same function:
 * 1 + tanh(u) = 2 / (1 + e^(-2u))): one exp and one divide, no branch between a small-|u| polynomial and the
 * cancellation-prone 1 - 2/(e^(2|u|) + 1), 40 % fewer cycles than that tanh. The float inner argument's error moves
 * the result by the same relative amount in both forms (e/(1 + e) times the argument's). x -> -inf: e overflows to
 * inf and -inf/inf gives NaN, as torch's 0.5·x·(1 + tanh(u)) does; x -> +inf gives x; NaN stays NaN. */
SIMD_MATH_INLINE V v_gelu(V x) {
    V minus_2u = v_mul(v_mul(v_set1(-2.0f * CVX_GELU_K0), x), v_fma(v_set1(CVX_GELU_K1), v_mul(x, x), v_set1(1.0f)));
    /* Below -86 (x above ~7.4) e^(-2u) < 2^-124 leaves 1 + e = 1 exactly; the clamp keeps e normal, since subnormal
     * results cost the core a microcode assist each (measured: twice the time of a whole GEMM epilogue). */
    return v_div(x, v_add(v_set1(1.0f), v_exp(v_max(v_set1(-86.0f), minus_2u))));
}

SIMD_MATH_INLINE V v_silu(V x) { return v_div(x, v_add(v_set1(1.0f), v_exp(v_sub(v_zero(), x)))); }

static inline void simd_gelu_tanh_row(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) v_store(x + i, v_gelu(v_load(x + i)));
    if (i < n) v_storen(x + i, v_gelu(v_loadn(x + i, (int)(n - i))), (int)(n - i));
}

static inline void simd_silu_row(float *x, int64_t n) {
    int64_t i = 0;
    for (; i + VW <= n; i += VW) v_store(x + i, v_silu(v_load(x + i)));
    if (i < n) v_storen(x + i, v_silu(v_loadn(x + i, (int)(n - i))), (int)(n - i));
}

#endif
