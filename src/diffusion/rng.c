/* torch-compatible CPU generator (torch 1.13 CPUGeneratorImpl + DistributionTemplates.h normal_fill*); see rng.h.
 *
 * Bit-exactness notes:
 *  - The AVX2 kernel's log/sincos are Cephes-style float polynomials that torch's build compiles with FMA
 *    contraction (gcc -O2 -mfma, -ffp-contract=fast). Our build contracts nothing (-std=c11 means
 *    -ffp-contract=off in gcc; clang is told so below), so every place where gcc fuses a product into the
 *    following add/sub is written as an explicit fmaf, and every other product is a plain, separately rounded
 *    float multiply. fmaf is exact IEEE fused multiply-add on every x86-64 (hardware or glibc's emulation), so
 *    the result does not depend on the instruction set this file is compiled for.
 *  - Float constants are written as (float)<double literal>, as the reference initialises its float tables
 *    (decimal -> double -> float may differ from decimal -> float in the last bit).
 *  - std=1 and mean=0 are applied the way torch does (x*1 + 0): this turns a -0 result into +0. */
#include "diffusion/rng.h"

#include <math.h>

#include "core/half.h"

#if defined(__clang__)
#pragma STDC FP_CONTRACT OFF
#endif

/* ---- MT19937 ------------------------------------------------------------------------------------------- */

void cvx_rng_seed(cvx_rng *g, uint64_t seed) {
    g->seed = seed;
    g->state[0] = (uint32_t)seed; /* torch and numpy both use only the low 32 bits */
    for (uint32_t i = 1; i < CVX_MT19937_N; i++) {
        uint32_t prev = g->state[i - 1];
        g->state[i] = 1812433253u * (prev ^ (prev >> 30)) + i;
    }
    g->next = CVX_MT19937_N;
    g->has_normal = 0;
    g->normal = 0.0;
}

static void mt_twist(cvx_rng *g) {
    enum { N = CVX_MT19937_N, M = 397 };
    uint32_t *s = g->state;
    for (int i = 0; i < N; i++) {
        uint32_t y = (s[i] & 0x80000000u) | (s[(i + 1) % N] & 0x7fffffffu);
        uint32_t v = s[(i + M) % N] ^ (y >> 1);
        if (y & 1u) v ^= 0x9908b0dfu;
        s[i] = v;
    }
    g->next = 0;
}

uint32_t cvx_rng_next_u32(cvx_rng *g) {
    if (g->next >= CVX_MT19937_N) mt_twist(g);
    uint32_t y = g->state[g->next++];
    y ^= y >> 11;
    y ^= (y << 7) & 0x9d2c5680u;
    y ^= (y << 15) & 0xefc60000u;
    y ^= y >> 18;
    return y;
}

uint64_t cvx_rng_next_u64(cvx_rng *g) {
    uint64_t hi = cvx_rng_next_u32(g);
    uint64_t lo = cvx_rng_next_u32(g);
    return (hi << 32) | lo;
}

/* ---- uniforms (at::uniform_real_distribution<T>(0, 1): the low `digits` bits of one draw) --------------- */

static float uniform_f32(cvx_rng *g) { return (float)(cvx_rng_next_u32(g) & 0xFFFFFFu) * 0x1p-24f; }
static double uniform_f64(cvx_rng *g) { return (double)(cvx_rng_next_u64(g) & ((1ull << 53) - 1)) * 0x1p-53; }

/* at::normal_distribution<double>(0, 1), the path torch takes for numel < 16: u1 gives the angle, u2 the radius
 * (the opposite of normal_fill), r·sin is cached for the next call. */
static double normal_f64(cvx_rng *g) {
    double ret;
    if (g->has_normal) {
        g->has_normal = 0;
        ret = g->normal;
    } else {
        double u1 = uniform_f64(g);
        double u2 = uniform_f64(g);
        double r = sqrt(-2.0 * log(1.0 - u2));
        double theta = 2.0 * M_PI * u1;
        g->normal = r * sin(theta);
        g->has_normal = 1;
        ret = r * cos(theta);
    }
    return ret * 1.0 + 0.0; /* transformation::normal(ret, mean 0, std 1) */
}

/* ---- the AVX2 kernel's math, one lane at a time ----------------------------------------------------------- */

static inline uint32_t fbits(float f) { return cvx_f32_bits(f); }
static inline float bitsf(uint32_t u) { return cvx_f32_from_bits(u); }

/* Cephes logf as avx_mathfun's log256_ps evaluates it, for x in (0, 1] (all normal_fill ever passes). */
static float avx2_logf(float x) {
    const float min_norm = bitsf(0x00800000u);
    const float sqrthf = (float)0.707106781186547524;
    const float p0 = (float)7.0376836292E-2, p1 = (float)-1.1514610310E-1, p2 = (float)1.1676998740E-1;
    const float p3 = (float)-1.2420140846E-1, p4 = (float)1.4249322787E-1, p5 = (float)-1.6668057665E-1;
    const float p6 = (float)2.0000714765E-1, p7 = (float)-2.4999993993E-1, p8 = (float)3.3333331174E-1;
    const float q1 = (float)-2.12194440e-4, q2 = (float)0.693359375;

    if (!(x > min_norm)) x = min_norm; /* max_ps(x, min_norm) */
    uint32_t u = fbits(x);
    int32_t expo = (int32_t)(u >> 23) - 0x7f;
    x = bitsf((u & ~0x7f800000u) | fbits(0.5f)); /* mantissa in [0.5, 1) */
    float e = (float)expo + 1.0f;
    int small = x < sqrthf;
    float tmp = small ? x : 0.0f;
    x = x - 1.0f;
    e = e - (small ? 1.0f : 0.0f);
    x = x + tmp;
    float z = x * x;
    float y = fmaf(p0, x, p1);
    y = fmaf(y, x, p2);
    y = fmaf(y, x, p3);
    y = fmaf(y, x, p4);
    y = fmaf(y, x, p5);
    y = fmaf(y, x, p6);
    y = fmaf(y, x, p7);
    y = fmaf(y, x, p8);
    y = y * x;                  /* feeds a multiply: not fused */
    y = fmaf(y, z, e * q1);     /* y*z + e*q1: gcc fuses the first product, e*q1 is rounded */
    y = fmaf(-z, 0.5f, y);      /* y - z*0.5 */
    x = x + y;
    x = fmaf(e, q2, x);
    return x;
}

/* avx_mathfun's sincos256_ps for one lane (x >= 0 here: theta = 2π·u). */
static void avx2_sincosf(float x, float *s, float *c) {
    const float dp1 = (float)-0.78515625, dp2 = (float)-2.4187564849853515625e-4;
    const float dp3 = (float)-3.77489497744594108e-8;
    const float sp0 = (float)-1.9515295891E-4, sp1 = (float)8.3321608736E-3, sp2 = (float)-1.6666654611E-1;
    const float cp0 = (float)2.443315711809948E-005, cp1 = (float)-1.388731625493765E-003;
    const float cp2 = (float)4.166664568298827E-002;
    const float fopi = (float)1.27323954473516;

    uint32_t sign_sin = fbits(x) & 0x80000000u;
    x = bitsf(fbits(x) & 0x7fffffffu);
    float y = x * fopi;
    int32_t j = (int32_t)y; /* cvttps: truncation; x < 2π keeps it tiny */
    j = (j + 1) & ~1;
    y = (float)j;
    sign_sin ^= (uint32_t)(j & 4) << 29;
    int poly_sin = (j & 2) == 0; /* which polynomial gives the sine */
    uint32_t sign_cos = (uint32_t)(~(j - 2) & 4) << 29;

    /* extended-precision range reduction x - y·π/4 in three parts */
    x = fmaf(y, dp1, x);
    x = fmaf(y, dp2, x);
    x = fmaf(y, dp3, x);

    float z = x * x;
    float yc = fmaf(cp0, z, cp1);
    yc = fmaf(yc, z, cp2);
    yc = yc * z;
    yc = fmaf(yc, z, -(z * 0.5f)); /* y*z - z*0.5 (z*0.5 is exact) */
    yc = yc + 1.0f;

    float ys = fmaf(sp0, z, sp1);
    ys = fmaf(ys, z, sp2);
    ys = ys * z;
    ys = fmaf(ys, x, x);

    /* blend exactly as the vector code does (the subtract/add pairs matter only for signed zeros) */
    float ysin2 = poly_sin ? ys : 0.0f;
    float ysin1 = poly_sin ? 0.0f : yc;
    ys = ys - ysin2;
    yc = yc - ysin1;
    float sv = ysin1 + ysin2;
    float cv = yc + ys;
    *s = bitsf(fbits(sv) ^ sign_sin);
    *c = bitsf(fbits(cv) ^ sign_cos);
}

/* ---- float32 ------------------------------------------------------------------------------------------- */

/* One block of 16: d[0..7] hold the radius uniforms, d[8..15] the angle uniforms. */
static void fill16_avx2(float *d) {
    const float two_pi = (float)(2.0 * M_PI);
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * avx2_logf(u1));
        float theta = two_pi * u2;
        float sn, cs;
        avx2_sincosf(theta, &sn, &cs);
        float n1 = radius * cs;
        float n2 = radius * sn;
        d[j] = fmaf(n1, 1.0f, 0.0f); /* _mm256_fmadd_ps(n, std, mean) */
        d[j + 8] = fmaf(n2, 1.0f, 0.0f);
    }
}

static void fill16_generic(float *d) {
    for (int j = 0; j < 8; j++) {
        float u1 = 1.0f - d[j];
        float u2 = d[j + 8];
        float radius = sqrtf(-2.0f * logf(u1));
        float theta = (float)(2.0 * M_PI * (double)u2);
        float a = radius * cosf(theta);
        float b = radius * sinf(theta);
        d[j] = a * 1.0f + 0.0f;
        d[j + 8] = b * 1.0f + 0.0f;
    }
}

void cvx_rng_randn_f32(cvx_rng *g, float *out, int64_t n, cvx_rng_path path) {
    if (n <= 0) return;
    if (n < 16) {
        for (int64_t i = 0; i < n; i++) out[i] = (float)normal_f64(g);
        return;
    }
    void (*fill16)(float *) = path == CVX_RNG_GENERIC ? fill16_generic : fill16_avx2;
    for (int64_t i = 0; i < n; i++) out[i] = uniform_f32(g);
    for (int64_t i = 0; i + 16 <= n; i += 16) fill16(out + i);
    if (n % 16 != 0) {
        float *tail = out + n - 16; /* redraw and redo the last 16, overwriting finished values */
        for (int i = 0; i < 16; i++) tail[i] = uniform_f32(g);
        fill16(tail);
    }
}

/* ---- float16 / bfloat16 (normal_fill<Half> / normal_fill<BFloat16>) -------------------------------------- */

static inline float h2f(uint16_t h) { return cvx_f16_to_f32(h); }
static inline uint16_t f2h(float f) { return cvx_f32_to_f16(f); }
static inline float b2f(uint16_t h) { return cvx_bf16_to_f32(h); }
static inline uint16_t f2b(float f) { return cvx_f32_to_bf16(f); }

/* c10::Half arithmetic computes in float; each assignment to a Half rounds. log/sqrt/cos/sin take and return
 * float (no Half overloads), and double -> Half goes through float. */
static void fill16_f16(uint16_t *d) {
    for (int j = 0; j < 8; j++) {
        uint16_t u1 = f2h(1.0f - h2f(d[j]));
        uint16_t u2 = d[j + 8];
        uint16_t radius = f2h(sqrtf(-2.0f * logf(h2f(u1))));
        uint16_t theta = f2h((float)(2.0 * M_PI * (double)h2f(u2)));
        float a = h2f(radius) * cosf(h2f(theta));
        float b = h2f(radius) * sinf(h2f(theta));
        d[j] = f2h(a * 1.0f + 0.0f);
        d[j + 8] = f2h(b * 1.0f + 0.0f);
    }
}

/* c10::BFloat16: arithmetic between two BFloat16 rounds to BFloat16, and c10's std::log/sqrt/cos/sin overloads
 * return BFloat16, so every intermediate is rounded. */
static void fill16_bf16(uint16_t *d) {
    const uint16_t one = f2b(1.0f), minus_two = f2b(-2.0f), stdv = f2b(1.0f), mean = f2b(0.0f);
    for (int j = 0; j < 8; j++) {
        uint16_t u1 = f2b(b2f(one) - b2f(d[j]));
        uint16_t u2 = d[j + 8];
        uint16_t lg = f2b(logf(b2f(u1)));
        uint16_t radius = f2b(sqrtf(b2f(f2b(b2f(minus_two) * b2f(lg)))));
        uint16_t theta = f2b((float)(2.0 * M_PI * (double)b2f(u2)));
        uint16_t cs = f2b(cosf(b2f(theta)));
        uint16_t sn = f2b(sinf(b2f(theta)));
        uint16_t a = f2b(b2f(f2b(b2f(radius) * b2f(cs))) * b2f(stdv));
        uint16_t b = f2b(b2f(f2b(b2f(radius) * b2f(sn))) * b2f(stdv));
        d[j] = f2b(b2f(a) + b2f(mean));
        d[j + 8] = f2b(b2f(b) + b2f(mean));
    }
}

typedef enum { LOWP_F16, LOWP_BF16 } lowp_kind;

static void randn_lowp(cvx_rng *g, uint16_t *out, int64_t n, lowp_kind kind) {
    if (n <= 0) return;
    if (n < 16) {
        for (int64_t i = 0; i < n; i++) {
            float f = (float)normal_f64(g); /* static_cast<Half>(double): double -> float -> Half */
            out[i] = kind == LOWP_F16 ? f2h(f) : f2b(f);
        }
        return;
    }
    /* uniform_real_distribution<Half|BFloat16>: the low `digits` (11 | 8) bits of one draw; exact in the type */
    const uint32_t digits = kind == LOWP_F16 ? 11 : 8;
    const uint32_t mask = (1u << digits) - 1;
    const float scale = 1.0f / (float)(1u << digits);
    void (*fill16)(uint16_t *) = kind == LOWP_F16 ? fill16_f16 : fill16_bf16;
    for (int64_t i = 0; i < n; i++) {
        float u = (float)(cvx_rng_next_u32(g) & mask) * scale;
        out[i] = kind == LOWP_F16 ? f2h(u) : f2b(u);
    }
    for (int64_t i = 0; i + 16 <= n; i += 16) fill16(out + i);
    if (n % 16 != 0) {
        uint16_t *tail = out + n - 16;
        for (int i = 0; i < 16; i++) {
            float u = (float)(cvx_rng_next_u32(g) & mask) * scale;
            tail[i] = kind == LOWP_F16 ? f2h(u) : f2b(u);
        }
        fill16(tail);
    }
}

void cvx_rng_randn_f16(cvx_rng *g, uint16_t *out, int64_t n) { randn_lowp(g, out, n, LOWP_F16); }
void cvx_rng_randn_bf16(cvx_rng *g, uint16_t *out, int64_t n) { randn_lowp(g, out, n, LOWP_BF16); }
