/* f16 / bf16 <-> f32 conversions, bit-exact with PyTorch (c10/util/Half.h, c10/util/BFloat16.h):
 *  - f32 -> f16: round-to-nearest-even, overflow to ±inf, subnormals kept, NaN -> 0x7E00 (sign kept);
 *  - f32 -> bf16: round-to-nearest-even, NaN -> 0x7FC0;
 *  - f16/bf16 -> f32: exact. */
#ifndef CVX_CORE_HALF_H
#define CVX_CORE_HALF_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

static inline uint32_t cvx_f32_bits(float f) {
    uint32_t u;
    memcpy(&u, &f, 4);
    return u;
}
static inline float cvx_f32_from_bits(uint32_t u) {
    float f;
    memcpy(&f, &u, 4);
    return f;
}

static inline float cvx_bf16_to_f32(uint16_t h) { return cvx_f32_from_bits((uint32_t)h << 16); }

static inline uint16_t cvx_f32_to_bf16(float f) {
    uint32_t u = cvx_f32_bits(f);
    if (f != f) return 0x7FC0;
    uint32_t bias = ((u >> 16) & 1u) + 0x7FFFu;
    return (uint16_t)((u + bias) >> 16);
}

/* f rounded to the nearest bf16 (ties to even), as a float: what a bf16 product sees of an f32 input. */
static inline float cvx_bf16_round(float f) { return cvx_bf16_to_f32(cvx_f32_to_bf16(f)); }

float cvx_f16_to_f32(uint16_t h);
uint16_t cvx_f32_to_f16(float f);

/* Array forms (portable; the kernels layer has vectorised ones). */
void cvx_f16_to_f32_array(const uint16_t *src, float *dst, size_t n);
void cvx_bf16_to_f32_array(const uint16_t *src, float *dst, size_t n);
void cvx_f32_to_f16_array(const float *src, uint16_t *dst, size_t n);
void cvx_f32_to_bf16_array(const float *src, uint16_t *dst, size_t n);

#endif
