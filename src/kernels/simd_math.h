/* Vector math written once over a vector width: exp, tanh, tanh-GELU and SiLU (the functions of cvx_gelu_tanh
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

/* tanh(u): Cephes' odd polynomial for |u| < 0.625, else 1 - 2/(e^{2|u|} + 1) with u's sign. */
SIMD_MATH_INLINE V v_tanh(V u) {
    V a = v_abs(u);
    V z = v_mul(u, u);
    V p = v_set1(-5.70498872745e-3f);
    p = v_fma(p, z, v_set1(2.06390887954e-2f));
    p = v_fma(p, z, v_set1(-5.37397155531e-2f));
    p = v_fma(p, z, v_set1(1.33314422036e-1f));
    p = v_fma(p, z, v_set1(-3.33332819422e-1f));
    V small = v_fma(v_mul(p, z), u, u);
    V e = v_exp(v_add(a, a));
    V big = v_sign_or(v_sub(v_set1(1.0f), v_div(v_set1(2.0f), v_add(e, v_set1(1.0f)))), u);
    return v_lt(a, v_set1(0.625f), small, big);
}

SIMD_MATH_INLINE V v_gelu(V x) {
    V x3 = v_mul(v_mul(x, x), x);
    V inner = v_mul(v_set1(CVX_GELU_K0), v_add(x, v_mul(v_set1(CVX_GELU_K1), x3)));
    V t = v_tanh(inner);
    return v_mul(v_mul(v_set1(0.5f), x), v_add(v_set1(1.0f), t));
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
