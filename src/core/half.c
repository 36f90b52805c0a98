#include "core/half.h"

float cvx_f16_to_f32(uint16_t h) {
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
    uint32_t exp = (h >> 10) & 0x1Fu;
    uint32_t man = h & 0x3FFu;
    uint32_t bits;
    if (exp == 0x1F) {
        bits = sign | 0x7F800000u | (man << 13); /* inf / NaN (payload kept) */
    } else if (exp == 0) {
        if (man == 0) {
            bits = sign;
        } else { /* subnormal: normalise */
            int e = -1;
            do {
                man <<= 1;
                e++;
            } while (!(man & 0x400u));
            man &= 0x3FFu;
            bits = sign | ((uint32_t)(127 - 15 - e) << 23) | (man << 13);
        }
    } else {
        bits = sign | ((exp + (127 - 15)) << 23) | (man << 13);
    }
    return cvx_f32_from_bits(bits);
}

/* The same algorithm as c10's fp16_ieee_from_fp32_value: scale to move the rounding point, let the FPU
 * round to nearest even, then assemble. */
uint16_t cvx_f32_to_f16(float f) {
    const float scale_to_inf = cvx_f32_from_bits(0x77800000u);  /* 0x1.0p+112 */
    const float scale_to_zero = cvx_f32_from_bits(0x08800000u); /* 0x1.0p-110 */
    float base = (__builtin_fabsf(f) * scale_to_inf) * scale_to_zero;
    uint32_t w = cvx_f32_bits(f);
    uint32_t shl1_w = w + w;
    uint32_t sign = w & 0x80000000u;
    uint32_t bias = shl1_w & 0xFF000000u;
    if (bias < 0x71000000u) bias = 0x71000000u;
    base = cvx_f32_from_bits((bias >> 1) + 0x07800000u) + base;
    uint32_t bits = cvx_f32_bits(base);
    uint32_t exp_bits = (bits >> 13) & 0x00007C00u;
    uint32_t mantissa_bits = bits & 0x00000FFFu;
    uint32_t nonsign = exp_bits + mantissa_bits;
    return (uint16_t)((sign >> 16) | (shl1_w > 0xFF000000u ? 0x7E00u : nonsign));
}

/* src may point into an mmap'd safetensors file at an odd offset (the format allows it): load with memcpy. */
void cvx_f16_to_f32_array(const uint16_t *src, float *dst, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = cvx_f16_to_f32(h);
    }
}
void cvx_bf16_to_f32_array(const uint16_t *src, float *dst, size_t n) {
    const unsigned char *s = (const unsigned char *)src;
    for (size_t i = 0; i < n; i++) {
        uint16_t h;
        memcpy(&h, s + 2 * i, 2);
        dst[i] = cvx_bf16_to_f32(h);
    }
}
void cvx_f32_to_f16_array(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = cvx_f32_to_f16(src[i]);
}
void cvx_f32_to_bf16_array(const float *src, uint16_t *dst, size_t n) {
    for (size_t i = 0; i < n; i++) dst[i] = cvx_f32_to_bf16(src[i]);
}
