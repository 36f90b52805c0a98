/* A torch-compatible CPU random generator: what `torch.Generator('cpu').manual_seed(s)` followed by
 * `torch.randn(shape, generator=g, dtype=...)` (diffusers' randn_tensor) produces, bit for bit
 * (reference: torch 1.13 CPUGeneratorImpl + ATen/native/cpu/DistributionTemplates.h; the recipe and the checks
 * are in ../shared/golden/rng/case.json).
 *
 *  - Engine: MT19937 (Knuth init_genrand), seeded with the low 32 bits of the 64-bit seed.
 *  - float32, numel >= 16: torch's normal_fill: n uniforms (u32 & 0xFFFFFF)·2^-24, Box-Muller on each block of 16
 *    (radius from elements 0..7, angle from 8..15); a ragged tail redraws 16 fresh uniforms into the last 16
 *    slots. Two numerics: CVX_RNG_AVX2 (default) reproduces the AVX2 kernel torch uses on x86-64 (Cephes
 *    log/sincos polynomials compiled with FMA contraction; emulated here in scalar code with explicit fmaf, so
 *    the result does not depend on this build's -m flags); CVX_RNG_GENERIC reproduces the non-AVX2 kernel
 *    (libm logf/cosf/sinf).
 *  - float32, numel < 16 (and f16/bf16 < 16): float64 Box-Muller with a one-value cache kept in the generator
 *    (randn(3); randn(3) == randn(6)); manual_seed clears it.
 *  - float16 / bfloat16: drawn natively in that type (11 / 8 random bits per uniform, low-precision rounding
 *    inside Box-Muller), as a float16/bfloat16 pipeline's prepare_latents does. Returned as raw uint16 bits.
 *
 * The generator is a plain struct (no globals); copy it to fork a stream. Not thread-safe: one owner. */
#ifndef CVX_DIFFUSION_RNG_H
#define CVX_DIFFUSION_RNG_H

#include <stdint.h>

#define CVX_MT19937_N 624

typedef struct {
    uint32_t state[CVX_MT19937_N];
    int next;                 /* index of the next tempered word; CVX_MT19937_N = regenerate first */
    uint64_t seed;            /* as given to cvx_rng_seed (torch's initial_seed()) */
    int has_normal;           /* the cached second Box-Muller value of the float64 path */
    double normal;
} cvx_rng;

typedef enum {
    CVX_RNG_AVX2 = 0,    /* torch's normal_fill_AVX2 numerics (what torch gives on x86-64 with AVX2) */
    CVX_RNG_GENERIC = 1  /* torch's generic normal_fill<float> (ATEN_CPU_CAPABILITY=default, non-x86) */
} cvx_rng_path;

/* manual_seed(seed): MT19937 seeded with (uint32_t)seed; clears the normal cache. */
void cvx_rng_seed(cvx_rng *g, uint64_t seed);
/* The next raw 32-bit output (numpy RandomState.random_raw / std::mt19937 order). */
uint32_t cvx_rng_next_u32(cvx_rng *g);
/* torch's random64(): two draws, the first is the high word. */
uint64_t cvx_rng_next_u64(cvx_rng *g);

/* torch.randn(n, dtype=float32) into out[n]. */
void cvx_rng_randn_f32(cvx_rng *g, float *out, int64_t n, cvx_rng_path path);
/* torch.randn(n, dtype=float16) / (dtype=bfloat16) into out[n] as raw bits. */
void cvx_rng_randn_f16(cvx_rng *g, uint16_t *out, int64_t n);
void cvx_rng_randn_bf16(cvx_rng *g, uint16_t *out, int64_t n);

#endif
