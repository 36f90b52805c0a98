/* A 16 x 16 transpose of 32-bit lanes in AVX-512 registers, shared by the AVX-512 fp32 packers and the
 * AVX512-BF16 pair packers. Include only from files compiled with -mavx512f. */
#ifndef CVX_KERNELS_AVX512_TRANSPOSE_H
#define CVX_KERNELS_AVX512_TRANSPOSE_H

#include <immintrin.h>

/* 2x2 blocks (unpack ps), 4x4 (unpack pd), then 128-bit lanes (two shuffle_f32x4 steps). Afterwards r[i] holds
 * column i. */
static inline __attribute__((always_inline)) void cvx__transpose16_ps(__m512 r[16]) {
    __m512 t[16];
    for (int i = 0; i < 8; i++) {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    for (int i = 0; i < 4; i++) {
        __m512d a = _mm512_castps_pd(t[4 * i]), b = _mm512_castps_pd(t[4 * i + 1]);
        __m512d c = _mm512_castps_pd(t[4 * i + 2]), d = _mm512_castps_pd(t[4 * i + 3]);
        r[4 * i + 0] = _mm512_castpd_ps(_mm512_unpacklo_pd(a, c));
        r[4 * i + 1] = _mm512_castpd_ps(_mm512_unpackhi_pd(a, c));
        r[4 * i + 2] = _mm512_castpd_ps(_mm512_unpacklo_pd(b, d));
        r[4 * i + 3] = _mm512_castpd_ps(_mm512_unpackhi_pd(b, d));
    }
    /* r[4i + c], 128-bit block b: rows 4i..4i+3 of column 4b + c. */
    for (int c = 0; c < 4; c++) {
        __m512 u0 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0x88), u1 = _mm512_shuffle_f32x4(r[c], r[4 + c], 0xDD);
        __m512 w0 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0x88);
        __m512 w1 = _mm512_shuffle_f32x4(r[8 + c], r[12 + c], 0xDD);
        t[0 + c] = _mm512_shuffle_f32x4(u0, w0, 0x88);
        t[8 + c] = _mm512_shuffle_f32x4(u0, w0, 0xDD);
        t[4 + c] = _mm512_shuffle_f32x4(u1, w1, 0x88);
        t[12 + c] = _mm512_shuffle_f32x4(u1, w1, 0xDD);
    }
    for (int i = 0; i < 16; i++) r[i] = t[i];
}

#endif
