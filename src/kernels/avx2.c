/* The AVX2 + FMA + F16C fp32 path: 8-lane vectors, a 6 x 16 micro-tile (12 ymm accumulators).
 * The kernels themselves are in simd_tmpl.h; this file supplies the 256-bit primitives. */
#include <immintrin.h>
#include <math.h>
#include <string.h>

#include "kernels/kernels.h"

#define VW 8
#define MR 6
#define V __m256
#define VD __m256d
#define TABLE_NAME cvx_kernels_avx2
#define TABLE_ISA CVX_ISA_AVX2
#define TABLE_STR "avx2"

#define INL static inline __attribute__((always_inline))

/* maskload/maskstore take the lane mask as the sign bits of 32-bit integers. */
INL __m256i lanes_mask(int n) {
    return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7));
}
INL V v_zero(void) { return _mm256_setzero_ps(); }
INL V v_set1(float x) { return _mm256_set1_ps(x); }
INL V v_load(const float *p) { return _mm256_loadu_ps(p); }
INL void v_store(float *p, V v) { _mm256_storeu_ps(p, v); }
INL V v_loadn(const float *p, int n) { return _mm256_maskload_ps(p, lanes_mask(n)); }
INL void v_storen(float *p, V v, int n) { _mm256_maskstore_ps(p, lanes_mask(n), v); }
INL V v_fma(V a, V b, V c) { return _mm256_fmadd_ps(a, b, c); }
INL V v_add(V a, V b) { return _mm256_add_ps(a, b); }
INL V v_sub(V a, V b) { return _mm256_sub_ps(a, b); }
INL V v_mul(V a, V b) { return _mm256_mul_ps(a, b); }
INL V v_div(V a, V b) { return _mm256_div_ps(a, b); }
/* Second operand wins when one is NaN: callers pass the constant first so NaN lanes survive. */
INL V v_max(V a, V b) { return _mm256_max_ps(a, b); }
INL V v_min(V a, V b) { return _mm256_min_ps(a, b); }
INL V v_neg_inf_to_zero(V m) {
    return _mm256_blendv_ps(m, _mm256_setzero_ps(), _mm256_cmp_ps(m, _mm256_set1_ps(-INFINITY), _CMP_EQ_OQ));
}
INL V v_round(V a) { return _mm256_round_ps(a, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC); }
/* p·2^n for n in [-160, 128]: two factors 2^(n/2) and 2^(n - n/2), each a normal float, so a subnormal or
 * infinite result is rounded once, in the second product. */
INL V v_scale2(V p, V n) {
    __m256i ni = _mm256_cvtps_epi32(n);
    __m256i n1 = _mm256_srai_epi32(ni, 1), n2 = _mm256_sub_epi32(ni, n1);
    __m256i bias = _mm256_set1_epi32(127);
    V s1 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n1, bias), 23));
    V s2 = _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_add_epi32(n2, bias), 23));
    return _mm256_mul_ps(_mm256_mul_ps(p, s1), s2);
}
INL __m128i load_halves(const uint16_t *p, int n) {
    if (n == VW) return _mm_loadu_si128((const __m128i *)p);
    uint16_t tmp[8] = {0};
    memcpy(tmp, p, (size_t)n * sizeof(uint16_t));
    return _mm_loadu_si128((const __m128i *)tmp);
}
INL V v_load_f16n(const uint16_t *p, int n) { return _mm256_cvtph_ps(load_halves(p, n)); }
INL V v_load_bf16n(const uint16_t *p, int n) {
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(load_halves(p, n)), 16));
}

/* 8 x 8 in registers; afterwards r[i] holds column i. */
INL void transpose(V r[8]) {
    V t[8], s[8];
    for (int i = 0; i < 4; i++) {
        t[2 * i] = _mm256_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm256_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int h = 0; h < 2; h++) {
        s[4 * h + 0] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0x44);
        s[4 * h + 1] = _mm256_shuffle_ps(t[4 * h], t[4 * h + 2], 0xEE);
        s[4 * h + 2] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0x44);
        s[4 * h + 3] = _mm256_shuffle_ps(t[4 * h + 1], t[4 * h + 3], 0xEE);
    }
    for (int c = 0; c < 4; c++) {
        r[c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x20);
        r[4 + c] = _mm256_permute2f128_ps(s[c], s[4 + c], 0x31);
    }
}

INL float v_hsum(V a) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(a), _mm256_extractf128_ps(a, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}
INL VD vd_zero(void) { return _mm256_setzero_pd(); }
INL VD vd_set1(double x) { return _mm256_set1_pd(x); }
INL VD vd_lo(V v) { return _mm256_cvtps_pd(_mm256_castps256_ps128(v)); }
INL VD vd_hi(V v) { return _mm256_cvtps_pd(_mm256_extractf128_ps(v, 1)); }
INL VD vd_add(VD a, VD b) { return _mm256_add_pd(a, b); }
INL VD vd_sub(VD a, VD b) { return _mm256_sub_pd(a, b); }
INL VD vd_fma(VD a, VD b, VD c) { return _mm256_fmadd_pd(a, b, c); }
INL VD vd_load(const double *p) { return _mm256_loadu_pd(p); }
INL void vd_store(double *p, VD a) { _mm256_storeu_pd(p, a); }
INL double vd_hsum(VD a) {
    __m128d s = _mm_add_pd(_mm256_castpd256_pd128(a), _mm256_extractf128_pd(a, 1));
    return _mm_cvtsd_f64(_mm_add_sd(s, _mm_unpackhi_pd(s, s)));
}

#include "kernels/simd_tmpl.h"

/* Register peak of the fp32 FMA: 12 independent chains (latency 4 x 2 per cycle, with room to spare). */
double cvx__peak_avx2(int64_t iters) {
    V c[12], a = v_set1(1.0f), b = v_set1(0.0f);
    for (int i = 0; i < 12; i++) c[i] = v_set1((float)i);
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 12
        for (int i = 0; i < 12; i++) c[i] = v_fma(c[i], a, b);
        __asm__ volatile("" : "+x"(a)); /* keeps the loop from being folded */
    }
    V s = c[0];
    for (int i = 1; i < 12; i++) s = v_add(s, c[i]);
    volatile float sink = v_hsum(s);
    (void)sink;
    return (double)iters * 12.0 * 2.0 * VW;
}
