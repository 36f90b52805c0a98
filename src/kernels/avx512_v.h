/* The 512-bit vector primitives of the fp32 kernel template (simd_tmpl.h, simd_math.h): AVX-512F, 16 lanes.
 * Included by avx512.c (the AVX-512 fp32 path) and by bf16_avx512.h (the bf16 paths' epilogues use the same
 * vector math, so their GELU is cvx_gelu_tanh's function on these CPUs). Include only from files compiled with
 * -mavx512f -mavx512bw -mavx512vl -mavx512dq -mf16c. */
#ifndef CVX_KERNELS_AVX512_V_H
#define CVX_KERNELS_AVX512_V_H

#include <immintrin.h>
#include <math.h>
#include <stdint.h>

#include "kernels/avx512_transpose.h"

#define VW 16
#define V __m512
#define VD __m512d

#ifndef INL
#define INL static inline __attribute__((always_inline))
#endif

INL __mmask16 lanes_mask(int n) { return (__mmask16)((1u << n) - 1u); }
INL V v_zero(void) { return _mm512_setzero_ps(); }
INL V v_set1(float x) { return _mm512_set1_ps(x); }
INL V v_load(const float *p) { return _mm512_loadu_ps(p); }
INL void v_store(float *p, V v) { _mm512_storeu_ps(p, v); }
INL V v_loadn(const float *p, int n) { return _mm512_maskz_loadu_ps(lanes_mask(n), p); }
INL void v_storen(float *p, V v, int n) { _mm512_mask_storeu_ps(p, lanes_mask(n), v); }
INL V v_fma(V a, V b, V c) { return _mm512_fmadd_ps(a, b, c); }
INL V v_add(V a, V b) { return _mm512_add_ps(a, b); }
INL V v_sub(V a, V b) { return _mm512_sub_ps(a, b); }
INL V v_mul(V a, V b) { return _mm512_mul_ps(a, b); }
INL V v_div(V a, V b) { return _mm512_div_ps(a, b); }
/* Second operand wins when one is NaN: callers pass the constant first so NaN lanes survive. */
INL V v_max(V a, V b) { return _mm512_max_ps(a, b); }
INL V v_min(V a, V b) { return _mm512_min_ps(a, b); }
INL V v_neg_inf_to_zero(V m) {
    return _mm512_mask_blend_ps(_mm512_cmp_ps_mask(m, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ), m, _mm512_setzero_ps());
}
INL V v_round(V a) { return _mm512_roundscale_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
INL V v_scale2(V p, V n) { return _mm512_scalef_ps(p, n); }
INL V v_load_f16n(const uint16_t *p, int n) {
    __m256i h = n == VW ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(lanes_mask(n), p);
    return _mm512_cvtph_ps(h);
}
INL V v_load_bf16n(const uint16_t *p, int n) {
    __m256i h = n == VW ? _mm256_loadu_si256((const __m256i *)p) : _mm256_maskz_loadu_epi16(lanes_mask(n), p);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(h), 16));
}

/* 16 x 16 in registers; afterwards r[i] holds column i (the packers' transpose hook). */
INL void transpose(V r[16]) { cvx__transpose16_ps(r); }

INL float v_hsum(V a) { return _mm512_reduce_add_ps(a); }
INL VD vd_zero(void) { return _mm512_setzero_pd(); }
INL VD vd_set1(double x) { return _mm512_set1_pd(x); }
INL VD vd_lo(V v) { return _mm512_cvtps_pd(_mm512_castps512_ps256(v)); }
INL VD vd_hi(V v) { return _mm512_cvtps_pd(_mm512_extractf32x8_ps(v, 1)); }
INL VD vd_add(VD a, VD b) { return _mm512_add_pd(a, b); }
INL VD vd_sub(VD a, VD b) { return _mm512_sub_pd(a, b); }
INL VD vd_fma(VD a, VD b, VD c) { return _mm512_fmadd_pd(a, b, c); }
INL VD vd_load(const double *p) { return _mm512_loadu_pd(p); }
INL void vd_store(double *p, VD a) { _mm512_storeu_pd(p, a); }
INL double vd_hsum(VD a) { return _mm512_reduce_add_pd(a); }

#endif
