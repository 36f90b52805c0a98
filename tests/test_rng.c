/* The torch-compatible generator (src/diffusion/rng.c): MT19937 against the C++ standard's and numpy's known
 * values, seed truncation, the float64 path's one-value cache across calls, the normal_fill block structure, the
 * AVX2-vs-generic numerics, native f16/bf16 draws, and parity with the reference's draws
 * (tests/data/golden/rng, bit-exact) including the real 49-frame latent statistics. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "core/half.h"
#include "diffusion/rng.h"
#include "io/safetensors.h"
#include "testlib.h"

#define GOLDEN_DIR "tests/data/golden/rng"

static void test_mt19937(void) {
    cvx_rng g;
    cvx_rng_seed(&g, 5489); /* std::mt19937's default seed: the standard fixes output 1 and output 10000 */
    CHECK(cvx_rng_next_u32(&g) == 3499211612u);
    for (int i = 1; i < 9999; i++) cvx_rng_next_u32(&g);
    CHECK(cvx_rng_next_u32(&g) == 4123659995u);

    cvx_rng_seed(&g, 0); /* numpy.random.RandomState(0).random_raw() */
    CHECK(cvx_rng_next_u32(&g) == 2357136044u);
    CHECK(cvx_rng_next_u32(&g) == 2546248239u);
    cvx_rng_seed(&g, 42);
    CHECK(cvx_rng_next_u32(&g) == 1608637542u);

    /* manual_seed keeps only the low 32 bits */
    cvx_rng a, b;
    cvx_rng_seed(&a, (1ull << 32) + 5);
    cvx_rng_seed(&b, 5);
    int same = 1;
    for (int i = 0; i < 2000; i++) same &= cvx_rng_next_u32(&a) == cvx_rng_next_u32(&b);
    CHECK(same);
    CHECK(a.seed == (1ull << 32) + 5);

    /* random64: first draw is the high word */
    cvx_rng_seed(&a, 7);
    cvx_rng_seed(&b, 7);
    uint64_t hi = cvx_rng_next_u32(&b), lo = cvx_rng_next_u32(&b);
    CHECK(cvx_rng_next_u64(&a) == (hi << 32 | lo));
}

static int same_bits(const float *a, const float *b, int n) { return memcmp(a, b, (size_t)n * sizeof(float)) == 0; }

static void test_cache_and_blocks(void) {
    cvx_rng g;
    float a[6], b[6], c16[16], c17[17], c32[32], x[2], y[1], z[16], w[1];

    /* randn(3); randn(3) == randn(6): the cached r·sin carries over */
    cvx_rng_seed(&g, 11);
    cvx_rng_randn_f32(&g, a, 3, CVX_RNG_AVX2);
    cvx_rng_randn_f32(&g, a + 3, 3, CVX_RNG_AVX2);
    cvx_rng_seed(&g, 11);
    cvx_rng_randn_f32(&g, b, 6, CVX_RNG_AVX2);
    CHECK(same_bits(a, b, 6));

    /* the cache survives a >= 16 call: randn(1), randn(16), randn(1) -> the last is element 1 of randn(2) */
    cvx_rng_seed(&g, 12);
    cvx_rng_randn_f32(&g, y, 1, CVX_RNG_AVX2);
    cvx_rng_randn_f32(&g, z, 16, CVX_RNG_AVX2);
    cvx_rng_randn_f32(&g, w, 1, CVX_RNG_AVX2);
    cvx_rng_seed(&g, 12);
    cvx_rng_randn_f32(&g, x, 2, CVX_RNG_AVX2);
    CHECK(same_bits(w, x + 1, 1));
    CHECK(same_bits(y, x, 1));
    /* ... and the >= 16 call neither uses nor clears it: randn(16) after randn(1) == after randn(2) */
    float z2[16];
    cvx_rng_seed(&g, 12);
    cvx_rng_randn_f32(&g, x, 2, CVX_RNG_AVX2);
    cvx_rng_randn_f32(&g, z2, 16, CVX_RNG_AVX2);
    CHECK(same_bits(z, z2, 16));

    /* manual_seed clears the cache */
    cvx_rng_seed(&g, 13);
    cvx_rng_randn_f32(&g, y, 1, CVX_RNG_AVX2);
    cvx_rng_seed(&g, 13);
    cvx_rng_randn_f32(&g, w, 1, CVX_RNG_AVX2);
    CHECK(same_bits(y, w, 1));

    /* block structure: size 32 starts like size 16; size 17 redoes its last 16 slots with fresh uniforms */
    cvx_rng_seed(&g, 42);
    cvx_rng_randn_f32(&g, c16, 16, CVX_RNG_AVX2);
    cvx_rng_seed(&g, 42);
    cvx_rng_randn_f32(&g, c17, 17, CVX_RNG_AVX2);
    cvx_rng_seed(&g, 42);
    cvx_rng_randn_f32(&g, c32, 32, CVX_RNG_AVX2);
    CHECK(same_bits(c16, c32, 16));
    CHECK(same_bits(c16, c17, 1));
    int differ = 0;
    for (int i = 1; i < 16; i++) differ += !same_bits(c16 + i, c17 + i, 1);
    CHECK(differ == 15);
    /* size 17 consumes 17 + 16 raw draws */
    cvx_rng g2;
    cvx_rng_seed(&g2, 42);
    for (int i = 0; i < 33; i++) cvx_rng_next_u32(&g2);
    cvx_rng_seed(&g, 42);
    cvx_rng_randn_f32(&g, c17, 17, CVX_RNG_AVX2);
    CHECK(cvx_rng_next_u32(&g) == cvx_rng_next_u32(&g2));
}

static void test_paths_and_lowp(void) {
    enum { N = 4096 };
    float *a = malloc(N * sizeof *a), *b = malloc(N * sizeof *b);
    uint16_t *h = malloc(N * sizeof *h), *bf = malloc(N * sizeof *bf);
    CHECK(a && b && h && bf);
    if (!a || !b || !h || !bf) goto out;
    cvx_rng g;
    cvx_rng_seed(&g, 3);
    cvx_rng_randn_f32(&g, a, N, CVX_RNG_AVX2);
    cvx_rng_seed(&g, 3);
    cvx_rng_randn_f32(&g, b, N, CVX_RNG_GENERIC);
    int ndiff = 0;
    double maxd = 0, sum = 0, sumsq = 0;
    for (int i = 0; i < N; i++) {
        ndiff += a[i] != b[i];
        maxd = fmax(maxd, fabs((double)a[i] - b[i]));
        sum += a[i];
        sumsq += (double)a[i] * a[i];
    }
    CHECK_MSG(ndiff > 0 && maxd <= 3e-6, "avx2 vs generic: %d differ, max %g", ndiff, maxd);
    CHECK(fabs(sum / N) < 0.1 && fabs(sumsq / N - 1.0) < 0.1);

    /* native f16/bf16 draws are finite, standard-normal-ish and unrelated to randn(f32) rounded */
    cvx_rng_seed(&g, 3);
    cvx_rng_randn_f16(&g, h, N);
    cvx_rng_seed(&g, 3);
    cvx_rng_randn_bf16(&g, bf, N);
    int finite = 1, near_f32 = 0;
    double s16 = 0, s2 = 0;
    for (int i = 0; i < N; i++) {
        float fh = cvx_f16_to_f32(h[i]), fb = cvx_bf16_to_f32(bf[i]);
        finite &= isfinite(fh) && isfinite(fb);
        s16 += (double)fh * fh;
        s2 += (double)fb * fb;
        near_f32 += h[i] == cvx_f32_to_f16(a[i]);
    }
    CHECK(finite);
    CHECK(fabs(s16 / N - 1.0) < 0.1 && fabs(s2 / N - 1.0) < 0.1);
    CHECK(near_f32 < N / 10);
out:
    free(a);
    free(b);
    free(h);
    free(bf);
}

/* Bit-exact parity with a few of the reference's tensors (the golden runner checks them all). */
static void test_golden(void) {
    cvx_safetensors *st = NULL;
    cvx_error err = {0};
    if (cvx_safetensors_open(&st, GOLDEN_DIR "/io.safetensors", &err) != CVX_OK) {
        CHECK_MSG(0, "%s", cvx_error_message(&err));
        return;
    }
    const cvx_st_tensor *t = cvx_safetensors_find(st, "mt19937_seed123456_u32_624_to_687");
    CHECK(t && t->dtype == CVX_DTYPE_I64);
    if (t) {
        cvx_rng g;
        cvx_rng_seed(&g, 123456);
        for (int i = 0; i < 624; i++) cvx_rng_next_u32(&g);
        cvx_tensor v = cvx_st_view(t);
        int ok = 1;
        for (int i = 0; i < 64; i++) ok &= (double)cvx_rng_next_u32(&g) == cvx_tensor_get(&v, i);
        CHECK(ok);
    }
    struct {
        const char *name;
        uint64_t seed;
        int n;
        int kind; /* 0 avx2, 1 generic, 2 f16, 3 bf16 */
    } cases[] = {
        {"randn_f32_seed4294967301_shape3x7x11", 4294967301ull, 231, 0},
        {"randn_f32_genericpath_seed123456_shape1x3x16x6x10", 123456, 2880, 1},
        {"randn_f32_seed0_shape5", 0, 5, 0},
        {"randn_f16_seed42_shape17", 42, 17, 2},
        {"randn_bf16_seed42_shape1x3x16x6x10", 42, 2880, 3},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        t = cvx_safetensors_find(st, cases[k].name);
        CHECK_MSG(t != NULL, "%s missing", cases[k].name);
        if (!t) continue;
        cvx_tensor v = cvx_st_view(t);
        CHECK(cvx_tensor_numel(&v) == cases[k].n);
        if (cvx_tensor_numel(&v) != cases[k].n) continue;
        cvx_rng g;
        cvx_rng_seed(&g, cases[k].seed);
        size_t bytes = (size_t)cases[k].n * (cases[k].kind >= 2 ? 2 : 4);
        void *buf = malloc(bytes);
        if (cases[k].kind == 0) cvx_rng_randn_f32(&g, buf, cases[k].n, CVX_RNG_AVX2);
        if (cases[k].kind == 1) cvx_rng_randn_f32(&g, buf, cases[k].n, CVX_RNG_GENERIC);
        if (cases[k].kind == 2) cvx_rng_randn_f16(&g, buf, cases[k].n);
        if (cases[k].kind == 3) cvx_rng_randn_bf16(&g, buf, cases[k].n);
        CHECK_MSG(memcmp(buf, t->data, bytes) == 0, "%s differs from the reference", cases[k].name);
        free(buf);
    }
    cvx_safetensors_close(st);

    /* the real 2b/5b latent noise (seed 42, 1x13x16x60x90): statistics recorded by the reference */
    json_error_t je;
    json_t *cj = json_load_file(GOLDEN_DIR "/case.json", 0, &je);
    CHECK(cj != NULL);
    json_t *stats = json_object_get(cj, "real_latent_stats");
    if (stats) {
        int64_t n = json_integer_value(json_object_get(stats, "numel"));
        CHECK(n == 1123200);
        float *x = malloc((size_t)n * sizeof *x);
        cvx_rng g;
        cvx_rng_seed(&g, (uint64_t)json_integer_value(json_object_get(stats, "seed")));
        cvx_rng_randn_f32(&g, x, n, CVX_RNG_AVX2);
        double s = 0, s2 = 0;
        for (int64_t i = 0; i < n; i++) {
            s += x[i];
            s2 += (double)x[i] * x[i];
        }
        double rs = json_number_value(json_object_get(stats, "sum_f64"));
        double rs2 = json_number_value(json_object_get(stats, "sum_sq_f64"));
        /* the reference summed in a different order: agree to summation rounding */
        CHECK_MSG(fabs(s - rs) < 1e-6 && fabs(s2 - rs2) < 1e-6 * rs2, "sum %.12g vs %.12g, sumsq %.12g vs %.12g", s,
                  rs, s2, rs2);
        free(x);
    }
    json_decref(cj);
}

int main(void) {
    test_mt19937();
    test_cache_and_blocks();
    test_paths_and_lowp();
    test_golden();
    return cvx_test_finish("test_rng");
}
