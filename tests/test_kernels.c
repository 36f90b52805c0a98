/* Every kernel path this machine supports (ref, avx2, avx512, ...) against independent double-precision
 * computations, on odd shapes with tails, strided inputs, 1-row cases and all weight dtypes, single-threaded
 * and with a 2-thread pool.
 *
 * Tolerances are worst-case rounding bounds, not fitted numbers: with u = 2^-24, a float sum of n products
 * (any order, with or without FMA) is within γ_n·Σ|a·b| of the exact one, γ_n = n·u/(1 - n·u); the
 * transcendental functions (exp, tanh) are allowed EXP_ULPS units in the last place. */
#include <math.h>
#include <spawn.h>
#include <stdint.h>
#include <sys/wait.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "core/threadpool.h"
#include "kernels/kernels.h"
#include "testlib.h"

#define U (1.0 / 16777216.0)
#define EXP_ULPS 2.0 /* measured: the vector exp and tanh are within 1.3 ulp over their range, glibc's within 2 */
#define EXP_BF16_ULPS 48.0 /* the bf16 attention's exp2 polynomial: relative error 2.7e-6 = 45 ulp (degree 4) */

static double gamma_n(double n) { return n * U / (1.0 - n * U); }

/* The bf16 path rounds its inputs to bf16 (8 significant bits: relative error <= U_BF = 2^-8, ties to even as
 * torch) and multiplies them exactly in f32: its results are checked against exact sums of the rounded inputs
 * with the f32 summation bound γ_n·Σ|a·b|. Against the unrounded inputs that is within
 * (2·U_BF + U_BF² + γ_n)·Σ|a·b|, the bound a bf16 caller must budget for. */
#define U_BF (1.0 / 256.0)
static double rb(float x) { return cvx_bf16_to_f32(cvx_f32_to_bf16(x)); }
static double as_double(float x) { return x; }

static uint64_t g_rng = 0x9E3779B97F4A7C15ull;
static double urand(void) { /* [0, 1) */
    g_rng ^= g_rng << 13;
    g_rng ^= g_rng >> 7;
    g_rng ^= g_rng << 17;
    return (double)(g_rng >> 11) / 9007199254740992.0;
}
static float frand(void) { return (float)(2.0 * urand() - 1.0); }
static void fill(float *p, int64_t n, float scale) {
    for (int64_t i = 0; i < n; i++) p[i] = frand() * scale;
}

static const char *g_path = "";
static int g_threads = 1;

/* ---- linear / gemm -------------------------------------------------------------------------------------- */

/* Rounds a weight through its storage dtype, so the reference sees exactly the values the kernel up-casts. */
static void store_weights(cvx_dtype dt, const float *w, int64_t n, void *dst) {
    for (int64_t i = 0; i < n; i++) {
        if (dt == CVX_DTYPE_F16) ((uint16_t *)dst)[i] = cvx_f32_to_f16(w[i]);
        else if (dt == CVX_DTYPE_BF16) ((uint16_t *)dst)[i] = cvx_f32_to_bf16(w[i]);
        else ((float *)dst)[i] = w[i];
    }
}
static double weight_at(cvx_dtype dt, const void *w, int64_t i) {
    if (dt == CVX_DTYPE_F16) return cvx_f16_to_f32(((const uint16_t *)w)[i]);
    if (dt == CVX_DTYPE_BF16) return cvx_bf16_to_f32(((const uint16_t *)w)[i]);
    return ((const float *)w)[i];
}

static void check_linear(cvx_pool *pool, int64_t M, int64_t K, int64_t N, cvx_dtype dt, int with_bias) {
    float *x = malloc(sizeof(float) * (size_t)(M * K + 1));
    float *wf = malloc(sizeof(float) * (size_t)(N * K + 1));
    void *w = malloc(sizeof(float) * (size_t)(N * K + 1));
    float *bias = malloc(sizeof(float) * (size_t)(N + 1));
    float *y = malloc(sizeof(float) * (size_t)(M * N + 1));
    fill(x, M * K, 1.0f);
    fill(wf, N * K, 0.5f);
    fill(bias, N, 2.0f);
    store_weights(dt, wf, N * K, w);
    for (int64_t i = 0; i < M * N; i++) y[i] = NAN; /* every output must be written */
    int64_t shape[2] = {N, K};
    cvx_tensor W = cvx_tensor_view(dt, w, 2, shape);
    cvx_linear(pool, y, x, M, K, &W, with_bias ? bias : NULL);
    int bad = 0;
    double worst = 0;
    for (int64_t m = 0; m < M && bad < 3; m++)
        for (int64_t n = 0; n < N && bad < 3; n++) {
            double s = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                double p = (double)x[m * K + k] * weight_at(dt, w, n * K + k);
                s += p;
                sa += fabs(p);
            }
            if (with_bias) s += bias[n], sa += fabs(bias[n]);
            double tol = gamma_n((double)K + 1) * sa;
            double err = fabs(y[m * N + n] - s);
            if (err / (tol + 1e-300) > worst) worst = err / (tol + 1e-300);
            if (!(err <= tol)) {
                bad++;
                CHECK_MSG(0, "[%s, %d thr] linear M=%lld K=%lld N=%lld %s bias=%d: y[%lld,%lld]=%.9g want %.9g (tol %.3g)",
                          g_path, g_threads, (long long)M, (long long)K, (long long)N, cvx_dtype_name(dt), with_bias,
                          (long long)m, (long long)n, y[m * N + n], s, tol);
            }
        }
    CHECK(bad == 0);
    free(x), free(wf), free(w), free(bias), free(y);
}

static void check_gemm_nt(cvx_pool *pool, int64_t M, int64_t N, int64_t K, int64_t pad, int accumulate) {
    int64_t lda = K + pad, ldb = K + 2 * pad, ldc = N + 3 * pad;
    float *A = malloc(sizeof(float) * (size_t)(M * lda + 1));
    float *B = malloc(sizeof(float) * (size_t)(N * ldb + 1));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    float *C0 = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    fill(A, M * lda, 1.0f);
    fill(B, N * ldb, 1.0f);
    fill(C0, M * ldc, 3.0f);
    if (!accumulate)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) C0[m * ldc + n] = NAN;
    memcpy(C, C0, sizeof(float) * (size_t)(M * ldc));
    cvx_gemm_nt(pool, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    int bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < ldc; n++) {
            if (n >= N) { /* padding between rows stays untouched */
                if (memcmp(&C[m * ldc + n], &C0[m * ldc + n], sizeof(float)) != 0) bad++;
                continue;
            }
            double s = accumulate ? C0[m * ldc + n] : 0.0, sa = fabs(s);
            for (int64_t k = 0; k < K; k++) {
                double p = (double)A[m * lda + k] * B[n * ldb + k];
                s += p;
                sa += fabs(p);
            }
            double tol = gamma_n((double)K + 1) * sa;
            if (!(fabs(C[m * ldc + n] - s) <= tol) && bad++ < 3)
                CHECK_MSG(0, "[%s, %d thr] gemm_nt M=%lld N=%lld K=%lld acc=%d: C[%lld,%lld]=%.9g want %.9g", g_path,
                          g_threads, (long long)M, (long long)N, (long long)K, accumulate, (long long)m, (long long)n,
                          C[m * ldc + n], s);
        }
    CHECK_MSG(bad == 0, "[%s] gemm_nt M=%lld N=%lld K=%lld: %d bad", g_path, (long long)M, (long long)N, (long long)K,
              bad);
    free(A), free(B), free(C), free(C0);
}

/* Row invariance (what bit-identical multi-process runs rest on, issue 17): a row's result must not depend on M,
 * on where the row sits in A (which row block, a full or an edge tile), nor on the thread count — within each of
 * the two classes of the fp32 linear: few rows (M <= CVX_GEMV_MAX_ROWS, streamed weights) and blocked GEMMs. y for
 * all M rows (and for the first CVX_GEMV_MAX_ROWS rows alone) is computed once; then row ranges [r0, r0 + m)
 * alone must give the same bits as the run of their class, for the fp32 linear (bf16 = 0) or the bf16 linear,
 * with and without bias, and with K above one K block. */
static void check_row_invariance(cvx_pool *pool, cvx_pool *pool1, int64_t M, int64_t K, int64_t N, int bf16) {
    float *x = malloc(sizeof(float) * (size_t)(M * K + 1));
    float *wf = malloc(sizeof(float) * (size_t)(N * K + 1));
    float *bias = malloc(sizeof(float) * (size_t)(N + 1));
    float *y = malloc(sizeof(float) * (size_t)(M * N + 1));
    float *ys = malloc(sizeof(float) * (size_t)(M * N + 1));
    float *yg = malloc(sizeof(float) * (size_t)(CVX_GEMV_MAX_ROWS * N + 1));
    fill(x, M * K, 1.0f);
    fill(wf, N * K, 0.5f);
    fill(bias, N, 2.0f);
    int64_t shape[2] = {N, K};
    cvx_tensor W = cvx_tensor_view(CVX_DTYPE_F32, wf, 2, shape);
    cvx_packed *pk = NULL;
    if (bf16) CHECK(cvx_pack_bf16(pool, &W, &pk) == CVX_OK && pk);
    for (int with_bias = 0; with_bias < 2; with_bias++) {
        const float *b = with_bias ? bias : NULL;
        if (bf16) cvx_linear_bf16(pool, y, x, M, K, pk, b);
        else cvx_linear(pool, y, x, M, K, &W, b);
        if (bf16) cvx_linear_bf16(pool, yg, x, CVX_GEMV_MAX_ROWS, K, pk, b);
        else cvx_linear(pool, yg, x, CVX_GEMV_MAX_ROWS, K, &W, b);
        static const int64_t ranges[][2] = {{0, 1}, {1, 2}, {2, 2}, {0, 17}, {1, 32}, {5, 40}, {16, 33}, {31, 64}, {33, 200}};
        for (size_t i = 0; i < sizeof ranges / sizeof ranges[0]; i++) {
            int64_t r0 = ranges[i][0], m = ranges[i][1];
            if (r0 + m > M) continue;
            for (int t = 0; t < 2; t++) {
                cvx_pool *pl = t ? pool1 : pool;
                if (bf16) cvx_linear_bf16(pl, ys, x + r0 * K, m, K, pk, b);
                else cvx_linear(pl, ys, x + r0 * K, m, K, &W, b);
                const float *want = m <= CVX_GEMV_MAX_ROWS ? yg + r0 * N : y + r0 * N;
                if (m <= CVX_GEMV_MAX_ROWS && r0 + m > CVX_GEMV_MAX_ROWS) continue;
                if (memcmp(ys, want, sizeof(float) * (size_t)(m * N)) != 0) {
                    int64_t j = 0;
                    while (j < m * N && cvx_f32_bits(ys[j]) == cvx_f32_bits(want[j])) j++;
                    CHECK_MSG(0, "[%s%s] rows %lld..%lld of M=%lld K=%lld N=%lld bias=%d alone (%d thr) differ from the full run: "
                                 "row %lld col %lld %.9g vs %.9g",
                              g_path, bf16 ? " bf16" : "", (long long)r0, (long long)(r0 + m), (long long)M, (long long)K,
                              (long long)N, with_bias, cvx_pool_size(pl), (long long)(r0 + j / N), (long long)(j % N),
                              ys[j], want[j]);
                }
            }
        }
    }
    cvx_packed_free(pk);
    free(x), free(wf), free(bias), free(y), free(ys), free(yg);
}

/* ---- attention ------------------------------------------------------------------------------------------ */

/* q, k, v are interleaved in one [B, L, 3·H·D] buffer (as a fused qkv projection leaves them), so every
 * row stride differs from H·D; out has its own padding. */
/* with_bias: 0 none, 1 random, 2 random with -inf masks: query i sees only keys j >= (7i) mod Lk, so whole key
 * tiles are masked for some queries (the running max starts at -inf), and query 1 (when Lq > 1) sees nothing
 * (softmax of all -inf is NaN, as in torch). */
/* Scales key j by 1 + g_key_ramp·j/Lk, so that later key tiles hold far larger scores than the first one (the
 * running maximum then moves by much more than a kernel's lazy-rescaling threshold). */
static double g_key_ramp = 0.0;

/* bf16: cvx_attention_bf16, checked against the exact attention of the bf16-rounded q, k, v (see rb()). */
static void check_attention(cvx_pool *pool, int64_t B, int64_t H, int64_t Lq, int64_t Lk, int64_t D, int with_bias,
                            float qscale, int bf16) {
    int64_t HD = H * D, ldq = 3 * HD + 1, ldk = 3 * HD + 1, ldv = 3 * HD + 1, ldo = HD + 5;
    float *qb = malloc(sizeof(float) * (size_t)(B * Lq * ldq + 1));
    float *kvb = malloc(sizeof(float) * (size_t)(B * Lk * ldk + 1));
    float *out = malloc(sizeof(float) * (size_t)(B * Lq * ldo + 1));
    float *bias = with_bias ? malloc(sizeof(float) * (size_t)(H * Lq * Lk + 1)) : NULL;
    fill(qb, B * Lq * ldq, qscale);
    fill(kvb, B * Lk * ldk, 1.0f);
    if (g_key_ramp > 0)
        for (int64_t r = 0; r < B * Lk; r++)
            for (int64_t d = 0; d < HD; d++) kvb[r * ldk + HD + d] *= (float)(1.0 + g_key_ramp * (double)(r % Lk) / (double)Lk);
    if (bias) fill(bias, H * Lq * Lk, 4.0f);
    if (with_bias == 2)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++)
                for (int64_t j = 0; j < Lk; j++)
                    if (j < (7 * i) % Lk || i == 1) bias[(h * Lq + i) * Lk + j] = -INFINITY;
    for (int64_t i = 0; i < B * Lq * ldo; i++) out[i] = -7.0f;
    const float *q = qb, *k = kvb + HD, *v = kvb + 2 * HD;
    float scale = 1.0f / sqrtf((float)D);
    if (bf16) cvx_attention_bf16(pool, out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias);
    else cvx_attention(pool, out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias);
    double (*in)(float) = bf16 ? rb : as_double;

    double *s = malloc(sizeof(double) * (size_t)Lk), *delta = malloc(sizeof(double) * (size_t)Lk);
    int bad = 0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t h = 0; h < H; h++)
            for (int64_t i = 0; i < Lq; i++) {
                const float *qi = q + (b * Lq + i) * ldq + h * D;
                double mx = -INFINITY, dmax = 0;
                for (int64_t j = 0; j < Lk; j++) {
                    const float *kj = k + (b * Lk + j) * ldk + h * D;
                    double dot = 0, sa = 0;
                    for (int64_t d = 0; d < D; d++) dot += in(qi[d]) * in(kj[d]), sa += fabs(in(qi[d]) * in(kj[d]));
                    s[j] = dot * scale;
                    /* Error of the computed score: the dot product, the scaling, the bias add. */
                    delta[j] = gamma_n((double)D + 2) * sa * scale;
                    if (bias) {
                        double bj = bias[(h * Lq + i) * Lk + j];
                        s[j] += bj;
                        if (isfinite(bj)) delta[j] += U * (fabs(s[j]) + fabs(bj));
                        else delta[j] = 0;
                    }
                    if (s[j] > mx) mx = s[j];
                    if (delta[j] > dmax) dmax = delta[j];
                }
                double l = 0;
                for (int64_t j = 0; j < Lk; j++) l += exp(s[j] - mx);
                /* Relative error of each weight exp(s_j - max): both scores' errors and exp's own; the sum and
                 * the weighted sum add γ_Lk each; per-tile rescaling adds a few u that cancel to first order. */
                double rel = 2.0 * (2.0 * dmax + EXP_ULPS * U) + 2.0 * gamma_n((double)Lk + 8);
                /* bf16: P·V takes each weight rounded to bf16 (relative error <= U_BF) while the sum l keeps
                 * the f32 ones. Absolute terms, with l >= 1: weights below 2^-126 may be read as 0 by the bf16
                 * dot product (DAZ), at most Lk·2^-126·max|v|; an exp argument y = s - max computed in another
                 * order (in log2 units, against a running maximum up to 8 below the true one) is rounded
                 * relative to |y| + 8, moving p = e^y by <= u·(|y| + 8)·e^y <= 9u per key, at most
                 * 9·Lk·u·max|v|. */
                if (bf16) rel += U_BF + 2.0 * EXP_BF16_ULPS * U;
                for (int64_t d = 0; d < D; d++) {
                    double o = 0, oa = 0, vmax = 0;
                    for (int64_t j = 0; j < Lk; j++) {
                        double p = exp(s[j] - mx) / l, vv = in(v[(b * Lk + j) * ldv + h * D + d]);
                        o += p * vv;
                        oa += p * fabs(vv);
                        if (fabs(vv) > vmax) vmax = fabs(vv);
                    }
                    double got = out[(b * Lq + i) * ldo + h * D + d];
                    double tol = rel * oa + U * fabs(o) + (bf16 ? (double)Lk * (ldexp(1.0, -126) + 9.0 * U) * vmax : 0.0);
                    int ok = isnan(o) ? isnan(got) : fabs(got - o) <= tol;
                    if (!ok && bad++ < 3)
                        CHECK_MSG(0, "[%s%s, %d thr] attention B=%lld H=%lld Lq=%lld Lk=%lld D=%lld bias=%d: out[%lld,%lld,%lld,%lld]=%.9g want %.9g (tol %.3g)",
                                  g_path, bf16 ? " bf16" : "", g_threads, (long long)B, (long long)H, (long long)Lq,
                                  (long long)Lk, (long long)D, with_bias, (long long)b, (long long)i, (long long)h, (long long)d, got, o,
                                  tol);
                }
                for (int64_t d = HD; d < ldo; d++) /* the row padding is not written */
                    if (h == 0 && out[(b * Lq + i) * ldo + d] != -7.0f && bad++ < 3) CHECK_MSG(0, "attention wrote padding");
            }
    CHECK(bad == 0);
    free(s), free(delta), free(qb), free(kvb), free(out), free(bias);
}

/* ---- norms and activations ------------------------------------------------------------------------------ */

static void check_norm(cvx_pool *pool, int64_t rows, int64_t dim, int rms, int affine, int in_place, float eps,
                       float offset) {
    float *x = malloc(sizeof(float) * (size_t)(rows * dim + 1));
    float *y = malloc(sizeof(float) * (size_t)(rows * dim + 1));
    float *w = malloc(sizeof(float) * (size_t)(dim + 1)), *b = malloc(sizeof(float) * (size_t)(dim + 1));
    fill(x, rows * dim, 3.0f);
    for (int64_t i = 0; i < rows * dim; i++) x[i] += offset; /* a large mean stresses the variance */
    fill(w, dim, 2.0f);
    fill(b, dim, 1.0f);
    float *x0 = malloc(sizeof(float) * (size_t)(rows * dim + 1));
    memcpy(x0, x, sizeof(float) * (size_t)(rows * dim));
    float *dst = in_place ? x : y;
    if (rms) cvx_rmsnorm(pool, dst, x, rows, dim, affine ? w : NULL, eps);
    else cvx_layernorm(pool, dst, x, rows, dim, affine ? w : NULL, affine ? b : NULL, eps);
    int bad = 0;
    for (int64_t r = 0; r < rows; r++) {
        const float *xr = x0 + r * dim;
        double mean = 0, var = 0;
        if (!rms) {
            for (int64_t i = 0; i < dim; i++) mean += xr[i];
            mean /= (double)dim;
        }
        for (int64_t i = 0; i < dim; i++) var += (xr[i] - mean) * (xr[i] - mean);
        var /= (double)dim;
        double inv = 1.0 / sqrt(var + (double)eps);
        for (int64_t i = 0; i < dim; i++) {
            double wi = affine ? w[i] : 1.0, bi = affine && !rms ? b[i] : 0.0;
            double want = (xr[i] - mean) * inv * wi + bi;
            /* Rounding of the mean and of 1/σ (statistics in double, then to float), x - mean, ·inv, ·w, +b. */
            double tol = 8.0 * U * (fabs(xr[i]) + fabs(mean)) * inv * fabs(wi) + 2.0 * U * fabs(want) + U * fabs(bi);
            double got = dst[r * dim + i];
            if (!(fabs(got - want) <= tol) && bad++ < 3)
                CHECK_MSG(0, "[%s, %d thr] %s rows=%lld dim=%lld: y[%lld,%lld]=%.9g want %.9g", g_path, g_threads,
                          rms ? "rmsnorm" : "layernorm", (long long)rows, (long long)dim, (long long)r, (long long)i,
                          got, want);
        }
    }
    CHECK(bad == 0);
    free(x), free(y), free(w), free(b), free(x0);
}

static float special_value(int64_t i, float scale) {
    switch (i % 97) {
    case 0: return 0.0f;
    case 1: return -0.0f;
    case 2: return 90.0f;
    case 3: return -90.0f;
    case 4: return 1e-30f;
    case 5: return -200.0f;
    case 6: return 200.0f;
    default: return frand() * scale;
    }
}

static void check_activations(cvx_pool *pool, int64_t n) {
    float *x = malloc(sizeof(float) * (size_t)(n + 1)), *g = malloc(sizeof(float) * (size_t)(n + 1)),
          *s = malloc(sizeof(float) * (size_t)(n + 1));
    for (int64_t i = 0; i < n; i++) x[i] = special_value(i, i % 3 == 0 ? 12.0f : 3.0f);
    memcpy(g, x, sizeof(float) * (size_t)n);
    memcpy(s, x, sizeof(float) * (size_t)n);
    cvx_gelu_tanh(pool, g, n);
    cvx_silu(pool, s, n);
    int bad = 0;
    for (int64_t i = 0; i < n; i++) {
        double xv = x[i], inner = 0.7978845608028654 * (xv + 0.044715 * xv * xv * xv), t = tanh(inner);
        double want = 0.5 * xv * (1.0 + t);
        /* The float inner argument (≈4u relative) moves tanh by sech²·|δ|; tanh's own error; then 1 + t
         * and the products. */
        double dt = 4.0 * U * fabs(inner) * (1.0 - t * t) + EXP_ULPS * U * fabs(t);
        double tol = 0.5 * fabs(xv) * (dt + 2.0 * U * fabs(1.0 + t)) + 2.0 * U * fabs(want) + 1e-45;
        if (!(fabs(g[i] - want) <= tol) && bad++ < 3)
            CHECK_MSG(0, "[%s] gelu_tanh(%.9g) = %.9g want %.9g", g_path, xv, g[i], want);
        double e = exp(-xv), ws = xv / (1.0 + e);
        /* exp's error is damped by e/(1+e); the add and divide round once each. */
        double tols = fabs(ws) * (EXP_ULPS * U * e / (1.0 + e) + 3.0 * U) + 1e-45;
        if (-xv > 88.72) tols = fabs(ws); /* exp(-x) overflows in float: x/inf = -0 (as torch's x/(1+exp(-x))) */
        if (!(fabs(s[i] - ws) <= tols) && bad++ < 3) CHECK_MSG(0, "[%s] silu(%.9g) = %.9g want %.9g", g_path, xv, s[i], ws);
    }
    CHECK(bad == 0);
    float nan_in[2] = {NAN, INFINITY};
    cvx_gelu_tanh(NULL, nan_in, 2);
    CHECK(isnan(nan_in[0]) && nan_in[1] == INFINITY);
    float nan_s[3] = {NAN, INFINITY, -INFINITY};
    cvx_silu(NULL, nan_s, 3);
    CHECK(isnan(nan_s[0]) && nan_s[1] == INFINITY && (nan_s[2] == 0.0f || isnan(nan_s[2])));
    free(x), free(g), free(s);
}

/* Up-casts are exact: every f16 and bf16 bit pattern, through the table and through cvx_to_f32. */
static void check_conversions(cvx_pool *pool, const cvx_kernel_table *kt) {
    uint16_t *h = malloc(sizeof(uint16_t) * 65536 + 64);
    float *a = malloc(sizeof(float) * 65536 + 64), *b = malloc(sizeof(float) * 65536 + 64);
    for (int i = 0; i < 65536; i++) h[i] = (uint16_t)i;
    for (int bf = 0; bf < 2; bf++) {
        /* Odd offsets and lengths exercise the unaligned heads and tails. */
        int64_t off = 3, n = 65536 - 3 - 5;
        if (bf) kt->bf16_to_f32(h + off, a, n);
        else kt->f16_to_f32(h + off, a, n);
        int64_t shape[1] = {n};
        cvx_tensor t = cvx_tensor_view(bf ? CVX_DTYPE_BF16 : CVX_DTYPE_F16, h + off, 1, shape);
        cvx_to_f32(pool, b, &t);
        int bad = 0;
        for (int64_t i = 0; i < n; i++) {
            float want = bf ? cvx_bf16_to_f32(h[off + i]) : cvx_f16_to_f32(h[off + i]);
            if (isnan(want) ? !(isnan(a[i]) && isnan(b[i])) : (memcmp(&a[i], &want, 4) || memcmp(&b[i], &want, 4)))
                bad++;
        }
        CHECK_MSG(bad == 0, "[%s] %s up-cast: %d values differ", kt->name, bf ? "bf16" : "f16", bad);
    }
    free(h), free(a), free(b);
}


/* ---- the bf16 path ---------------------------------------------------------------------------------------- */

/* x has a few special rows: row 1 (when M > 2) holds a NaN (its outputs must all be NaN, the others not
 * touched by it) and values exactly halfway between two bf16 (ties go to even). */
static void check_linear_bf16(cvx_pool *pool, int64_t M, int64_t K, int64_t N, cvx_dtype dt, int with_bias) {
    float *x = malloc(sizeof(float) * (size_t)(M * K + 1));
    float *wf = malloc(sizeof(float) * (size_t)(N * K + 1));
    void *w = malloc(sizeof(float) * (size_t)(N * K + 1));
    float *bias = malloc(sizeof(float) * (size_t)(N + 1));
    float *y = malloc(sizeof(float) * (size_t)(M * N + 1));
    fill(x, M * K, 1.0f);
    fill(wf, N * K, 0.5f);
    fill(bias, N, 2.0f);
    for (int64_t i = 0; i < M * K; i += 5) x[i] = cvx_f32_from_bits((cvx_f32_bits(x[i]) & 0xFFFF0000u) | 0x8000u);
    int nan_row = M > 2 && K > 0;
    if (nan_row) x[1 * K + K / 2] = NAN;
    store_weights(dt, wf, N * K, w);
    for (int64_t i = 0; i < M * N; i++) y[i] = -12345.0f; /* every output must be written */
    int64_t shape[2] = {N, K};
    cvx_tensor W = cvx_tensor_view(dt, w, 2, shape);
    cvx_packed *pk = NULL;
    CHECK(cvx_pack_bf16(pool, &W, &pk) == CVX_OK && pk);
    if (!pk) goto done;
    CHECK(cvx_packed_rows(pk) == N && cvx_packed_cols(pk) == K && cvx_packed_bytes(pk) >= (size_t)(N * K) * 2);
    cvx_linear_bf16(pool, y, x, M, K, pk, with_bias ? bias : NULL);
    int bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double got = y[m * N + n];
            if (nan_row && m == 1) {
                if (!isnan(got) && bad++ < 3) CHECK_MSG(0, "[%s] linear_bf16: NaN input row gave %g", g_path, got);
                continue;
            }
            double s = 0, sa = 0;
            for (int64_t k = 0; k < K; k++) {
                double p = rb(x[m * K + k]) * rb((float)weight_at(dt, w, n * K + k));
                s += p;
                sa += fabs(p);
            }
            if (with_bias) s += bias[n], sa += fabs(bias[n]);
            double tol = gamma_n((double)K + 1) * sa;
            if (!(fabs(got - s) <= tol) && bad++ < 3)
                CHECK_MSG(0, "[%s, %d thr] linear_bf16 M=%lld K=%lld N=%lld %s bias=%d: y[%lld,%lld]=%.9g want %.9g (tol %.3g)",
                          g_path, g_threads, (long long)M, (long long)K, (long long)N, cvx_dtype_name(dt), with_bias,
                          (long long)m, (long long)n, got, s, tol);
        }
    CHECK(bad == 0);
    cvx_packed_free(pk);
done:
    free(x), free(wf), free(w), free(bias), free(y);
}

static void check_gemm_nt_bf16(cvx_pool *pool, int64_t M, int64_t N, int64_t K, int64_t pad, int accumulate) {
    int64_t lda = K + pad, ldb = K + 2 * pad, ldc = N + 3 * pad;
    float *A = malloc(sizeof(float) * (size_t)(M * lda + 1));
    float *B = malloc(sizeof(float) * (size_t)(N * ldb + 1));
    float *C = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    float *C0 = malloc(sizeof(float) * (size_t)(M * ldc + 1));
    fill(A, M * lda, 1.0f);
    fill(B, N * ldb, 3.0f);
    fill(C0, M * ldc, 3.0f);
    if (!accumulate)
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) C0[m * ldc + n] = NAN;
    memcpy(C, C0, sizeof(float) * (size_t)(M * ldc));
    cvx_gemm_nt_bf16(pool, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
    int bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < ldc; n++) {
            if (n >= N) {
                if (memcmp(&C[m * ldc + n], &C0[m * ldc + n], sizeof(float)) != 0) bad++;
                continue;
            }
            double s = accumulate ? C0[m * ldc + n] : 0.0, sa = fabs(s);
            for (int64_t k = 0; k < K; k++) {
                double p = rb(A[m * lda + k]) * rb(B[n * ldb + k]);
                s += p;
                sa += fabs(p);
            }
            double tol = gamma_n((double)K + 1) * sa;
            if (!(fabs(C[m * ldc + n] - s) <= tol) && bad++ < 3)
                CHECK_MSG(0, "[%s, %d thr] gemm_nt_bf16 M=%lld N=%lld K=%lld acc=%d: C[%lld,%lld]=%.9g want %.9g",
                          g_path, g_threads, (long long)M, (long long)N, (long long)K, accumulate, (long long)m,
                          (long long)n, C[m * ldc + n], s);
        }
    CHECK_MSG(bad == 0, "[%s] gemm_nt_bf16 M=%lld N=%lld K=%lld: %d bad", g_path, (long long)M, (long long)N,
              (long long)K, bad);
    free(A), free(B), free(C), free(C0);
}


/* cvx_linear_bf16_ex: strided x and y, and the fused epilogues. mode 0: gelu·gate (the FF's first linear with a
 * per-batch gate for the check), 1: residual = y itself + gate·t (attention output / FF out), 2: separate
 * residual, no gate, no bias, 3: gelu only. gate_rows splits the rows in two "batch items". */
static void check_linear_bf16_ex(cvx_pool *pool, int64_t M, int64_t K, int64_t N, int mode) {
    int64_t ldx = K + 3, ldy = N + 5, ldr = N + 2, gate_rows = M / 2 + 1, ldg = N + 1;
    float *x = malloc(sizeof(float) * (size_t)(M * ldx + 1)), *wf = malloc(sizeof(float) * (size_t)(N * K + 1));
    float *y = malloc(sizeof(float) * (size_t)(M * ldy + 1)), *y0 = malloc(sizeof(float) * (size_t)(M * ldy + 1));
    float *res = malloc(sizeof(float) * (size_t)(M * ldr + 1)), *gate = malloc(sizeof(float) * (size_t)(2 * ldg + 1));
    float *bias = malloc(sizeof(float) * (size_t)(N + 1));
    fill(x, M * ldx, 2.0f);
    fill(wf, N * K, 0.5f);
    fill(y0, M * ldy, 3.0f);
    fill(res, M * ldr, 3.0f);
    fill(gate, 2 * ldg, 1.5f);
    fill(bias, N, 1.0f);
    memcpy(y, y0, sizeof(float) * (size_t)(M * ldy));
    int64_t shape[2] = {N, K};
    cvx_tensor W = cvx_tensor_view(CVX_DTYPE_F32, wf, 2, shape);
    cvx_packed *pk = NULL;
    CHECK(cvx_pack_bf16(pool, &W, &pk) == CVX_OK);
    if (!pk) goto done;
    cvx_epilogue e = {mode == 0 || mode == 3 ? CVX_ACT_GELU_TANH : CVX_ACT_NONE, mode <= 1 ? gate : NULL, gate_rows, ldg,
                      mode == 1 ? y : mode == 2 ? res : NULL, mode == 1 ? ldy : ldr};
    const float *b = mode == 2 ? NULL : bias;
    CHECK(cvx_linear_bf16_ex(pool, y, ldy, x, ldx, M, K, pk, b, &e) == CVX_OK);
    int bad = 0;
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < ldy; n++) {
            double got = y[m * ldy + n];
            if (n >= N) { /* row padding untouched */
                if (memcmp(&y[m * ldy + n], &y0[m * ldy + n], sizeof(float)) != 0) bad++;
                continue;
            }
            double t = b ? b[n] : 0.0, sa = fabs(t);
            for (int64_t k = 0; k < K; k++) {
                double p = rb(x[m * ldx + k]) * rb(wf[n * K + k]);
                t += p;
                sa += fabs(p);
            }
            double g = mode <= 1 ? gate[(m / gate_rows) * ldg + n] : 1.0;
            /* The sum (a few extra roundings when the gate is applied per K block), then the activation (slope
             * <= 1.13, its own error as in check_activations), the gate product and the residual add. */
            double tol_t = gamma_n((double)K + 4) * sa, want = t, tol = tol_t;
            if (e.act == CVX_ACT_GELU_TANH) {
                double inner = 0.7978845608028654 * (t + 0.044715 * t * t * t), th = tanh(inner);
                want = 0.5 * t * (1.0 + th);
                double dt = 4.0 * U * fabs(inner) * (1.0 - th * th) + EXP_ULPS * U * fabs(th);
                tol = 1.13 * tol_t + 0.5 * fabs(t) * (dt + 2.0 * U * fabs(1.0 + th)) + 2.0 * U * fabs(want);
            }
            double r = mode == 1 ? y0[m * ldy + n] : mode == 2 ? res[m * ldr + n] : 0.0;
            double full = r + g * want;
            tol = fabs(g) * tol + U * fabs(g * want) + U * fabs(full) + 1e-30;
            if (!(fabs(got - full) <= tol) && bad++ < 3)
                CHECK_MSG(0, "[%s, %d thr] linear_bf16_ex mode %d M=%lld K=%lld N=%lld: y[%lld,%lld]=%.9g want %.9g (tol %.3g)",
                          g_path, g_threads, mode, (long long)M, (long long)K, (long long)N, (long long)m, (long long)n,
                          got, full, tol);
        }
    CHECK(bad == 0);
    /* Refused arguments leave y alone. */
    cvx_epilogue bad_e = {CVX_ACT_GELU_TANH, NULL, 1, N, res, ldr};
    CHECK(cvx_linear_bf16_ex(pool, y, ldy, x, ldx, M, K, pk, b, &bad_e) == CVX_ERR_INVALID_ARGUMENT);
    cvx_epilogue bad_g = {CVX_ACT_NONE, gate, 0, ldg, NULL, 0};
    CHECK(cvx_linear_bf16_ex(pool, y, ldy, x, ldx, M, K, pk, b, &bad_g) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_linear_bf16_ex(pool, y, N - 1, x, ldx, M, K, pk, b, NULL) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_linear_bf16_ex(pool, y, ldy, x, ldx, M, K + 1, pk, b, NULL) == CVX_ERR_INVALID_ARGUMENT);
    cvx_packed_free(pk);
done:
    free(x), free(wf), free(y), free(y0), free(res), free(gate), free(bias);
}

/* Overlapping rows of x (ldx < K: a convolution's windows, row m = the K values from m·ldx on) give exactly the
 * products of the same rows copied apart, on every path; ldx < 1 is refused. */
static void check_linear_bf16_overlap(cvx_pool *pool, int64_t M, int64_t K, int64_t N, int64_t ldx) {
    const int64_t span = (M - 1) * ldx + K;
    float *x = malloc((size_t)span * sizeof(float)), *xc = malloc((size_t)(M * K) * sizeof(float));
    float *wf = malloc((size_t)(N * K) * sizeof(float)), *y = malloc((size_t)(M * N) * sizeof(float));
    float *yc = malloc((size_t)(M * N) * sizeof(float)), *b = malloc((size_t)N * sizeof(float));
    cvx_packed *pk = NULL;
    if (!x || !xc || !wf || !y || !yc || !b) goto done;
    fill(x, span, 1.0f);
    fill(wf, N * K, 0.2f);
    fill(b, N, 0.5f);
    for (int64_t m = 0; m < M; m++) memcpy(xc + m * K, x + m * ldx, (size_t)K * sizeof(float));
    int64_t sh[2] = {N, K};
    cvx_tensor wt = cvx_tensor_view(CVX_DTYPE_F32, wf, 2, sh);
    CHECK(cvx_pack_bf16(pool, &wt, &pk) == CVX_OK);
    if (!pk) goto done;
    CHECK(cvx_linear_bf16_ex(pool, yc, N, xc, K, M, K, pk, b, NULL) == CVX_OK);
    CHECK(cvx_linear_bf16_ex(pool, y, N, x, ldx, M, K, pk, b, NULL) == CVX_OK);
    CHECK_MSG(!memcmp(y, yc, (size_t)(M * N) * sizeof(float)),
              "[%s, %d thr] linear_bf16_ex with overlapping rows M=%lld K=%lld N=%lld ldx=%lld differs from copied rows",
              g_path, g_threads, (long long)M, (long long)K, (long long)N, (long long)ldx);
    if (M > 1) CHECK(cvx_linear_bf16_ex(pool, y, N, x, 0, M, K, pk, b, NULL) == CVX_ERR_INVALID_ARGUMENT);
done:
    cvx_packed_free(pk);
    free(x), free(xc), free(wf), free(y), free(yc), free(b);
}

static void check_pack_errors(void) {
    float w[6] = {1, 2, 3, 4, 5, 6};
    int64_t s2[2] = {2, 3}, s3[3] = {1, 2, 3};
    cvx_packed *p = (cvx_packed *)(uintptr_t)1;
    cvx_tensor t3 = cvx_tensor_view(CVX_DTYPE_F32, w, 3, s3);
    CHECK(cvx_pack_bf16(NULL, &t3, &p) == CVX_ERR_INVALID_ARGUMENT && p == NULL);
    cvx_tensor ti = cvx_tensor_view(CVX_DTYPE_I32, w, 2, s2);
    CHECK(cvx_pack_bf16(NULL, &ti, &p) == CVX_ERR_INVALID_ARGUMENT && p == NULL);
    CHECK(cvx_pack_bf16(NULL, NULL, &p) == CVX_ERR_INVALID_ARGUMENT && p == NULL);
    cvx_tensor t = cvx_tensor_view(CVX_DTYPE_F32, w, 2, s2);
    CHECK(cvx_pack_bf16(NULL, &t, NULL) == CVX_ERR_INVALID_ARGUMENT);
    int64_t huge[2] = {(int64_t)1 << 40, (int64_t)1 << 30};
    cvx_tensor th = cvx_tensor_view(CVX_DTYPE_F32, w, 2, huge);
    CHECK(cvx_pack_bf16(NULL, &th, &p) != CVX_OK && p == NULL);
    cvx_packed_free(NULL);
    CHECK(cvx_packed_bytes(NULL) == 0 && cvx_packed_rows(NULL) == 0);
}

static void run_bf16_path(const cvx_bf16_table *bt, cvx_pool *pool) {
    cvx_bf16_kernels_set_active_for_testing(bt);
    char name[64];
    snprintf(name, sizeof name, "bf16 %s over %s", cvx_bf16_kernels_name(bt), cvx_kernels_active()->name);
    g_path = name;
    g_threads = cvx_pool_size(pool);
    static const int64_t lin[][3] = {{1, 1, 1},     {1, 7, 5},      {2, 16, 32},    {3, 17, 33},   {13, 31, 47},
                                     {12, 64, 64},  {25, 96, 100},  {37, 300, 70},  {5, 520, 9},   {64, 257, 129},
                                     {1, 600, 300}, {130, 40, 3},   {200, 33, 200}, {4, 77, 301},  {29, 1030, 67},
                                     {3, 0, 5},     {97, 640, 161}, {33, 64, 31},   {16, 32, 16}};
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++)
        for (int dt = 0; dt < 3; dt++) {
            cvx_dtype d = dt == 0 ? CVX_DTYPE_F32 : dt == 1 ? CVX_DTYPE_F16 : CVX_DTYPE_BF16;
            check_linear_bf16(pool, lin[i][0], lin[i][1], lin[i][2], d, (int)((i + (size_t)dt) % 2));
        }
    static const int64_t ex[][3] = {{1, 5, 3}, {13, 31, 47}, {40, 2100, 70}, {100, 64, 33}, {3, 0, 17}};
    for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++)
        for (int mode = 0; mode < 4; mode++) check_linear_bf16_ex(pool, ex[i][0], ex[i][1], ex[i][2], mode);
    /* the VAE's windows: 3 pixels of C channels per row, one pixel apart (and two: stride 2) */
    static const int64_t ov[][4] = {{70, 3 * 16, 33, 16}, {45, 3 * 128, 128, 128}, {33, 3 * 128, 64, 256}, {5, 7, 3, 1}};
    for (size_t i = 0; i < sizeof ov / sizeof ov[0]; i++) check_linear_bf16_overlap(pool, ov[i][0], ov[i][1], ov[i][2], ov[i][3]);
    static const int64_t gm[][3] = {{1, 1, 1},    {5, 3, 2},   {17, 33, 300}, {40, 70, 9},
                                    {3, 100, 257}, {90, 10, 64}, {4, 9, 17},    {70, 130, 65}};
    for (size_t i = 0; i < sizeof gm / sizeof gm[0]; i++) {
        check_gemm_nt_bf16(pool, gm[i][0], gm[i][1], gm[i][2], 0, 0);
        check_gemm_nt_bf16(pool, gm[i][0], gm[i][1], gm[i][2], 3, 1);
    }
    static const int64_t at[][5] = {{1, 1, 1, 1, 8},     {1, 2, 5, 7, 16},    {2, 3, 13, 1, 13},
                                    {1, 1, 97, 200, 64},  {2, 2, 33, 130, 32}, {1, 1, 7, 400, 128},
                                    {1, 3, 130, 45, 24},  {2, 1, 1, 385, 40},  {1, 2, 70, 300, 64},
                                    {1, 1, 40, 33, 80},   {1, 1, 19, 21, 3},   {1, 1, 300, 90, 64}};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        for (int bias = 0; bias < 3; bias++)
            check_attention(pool, at[i][0], at[i][1], at[i][2], at[i][3], at[i][4], bias, bias ? 1.0f : 4.0f, 1);
    if (pool) {
        cvx_pool *one = cvx_pool_new(1);
        check_row_invariance(pool, one, 300, 200, 70, 1);
        check_row_invariance(pool, one, 240, 2100, 40, 1); /* two K blocks */
        cvx_pool_free(one);
    }
    g_key_ramp = 6.0;
    check_attention(pool, 1, 2, 50, 700, 64, 0, 4.0f, 1);
    check_attention(pool, 1, 1, 13, 1100, 40, 1, 2.0f, 1);
    g_key_ramp = 0.0;
    if (pool) { /* the out-of-memory paths: no per-thread scratch at all */
        cvx_pool *starved = cvx_pool_new(2);
        cvx_pool_limit_scratch(starved, 64);
        check_linear_bf16(starved, 37, 300, 70, CVX_DTYPE_F16, 1);
        check_linear_bf16(starved, 29, 1030, 67, CVX_DTYPE_F32, 0);
        for (int mode = 0; mode < 4; mode++) check_linear_bf16_ex(starved, 40, 2100, 70, mode);
        check_gemm_nt_bf16(starved, 70, 130, 65, 3, 1);
        check_attention(starved, 1, 2, 70, 300, 64, 1, 1.0f, 1);
        cvx_pool_free(starved);
    }
}

/* affine_silu gives this path's two steps and silu pass apart, bit for bit, with and without the spatial step. */
static void check_affine_silu(const cvx_kernel_table *kt, int64_t n) {
    float *x = malloc((size_t)n * 7 * sizeof(float));
    if (!x) return;
    float *a = x + n, *b = a + n, *zy = b + n, *zb = zy + n, *y = zb + n, *want = y + n;
    fill(x, n, 4.0f), fill(a, n, 2.0f), fill(b, n, 1.0f), fill(zy, n, 1.5f), fill(zb, n, 0.5f);
    int bad = 0;
    for (int spatial = 0; spatial < 2; spatial++)
        for (int silu = 0; silu < 2; silu++) {
            for (int64_t i = 0; i < n; i++) {
                volatile float p = x[i] * a[i], v = p + b[i]; /* rounded apart, as the contract says */
                if (spatial) {
                    volatile float q = v * zy[i];
                    v = q + zb[i];
                }
                want[i] = v;
            }
            if (silu) kt->silu(want, n);
            kt->affine_silu(x, a, b, spatial ? zy : NULL, spatial ? zb : NULL, y, n, silu);
            if (memcmp(y, want, (size_t)n * sizeof(float)) && bad++ < 3)
                CHECK_MSG(0, "[%s] affine_silu n=%lld spatial=%d silu=%d differs from its steps apart", kt->name,
                          (long long)n, spatial, silu);
        }
    CHECK(bad == 0);
    free(x);
}

/* channel_moments gives the portable loop's sums bit for bit (per channel in pixel order, in double), added to
 * what the sums held. */
static void check_channel_moments(const cvx_kernel_table *kt, int64_t pixels, int64_t C) {
    float *x = malloc((size_t)(pixels * C) * sizeof(float));
    double *d = malloc((size_t)(4 * C) * sizeof(double));
    if (!x || !d) {
        free(x), free(d);
        return;
    }
    fill(x, pixels * C, 3.0f);
    double *sum = d, *sq = d + C, *wsum = d + 2 * C, *wsq = d + 3 * C;
    for (int64_t c = 0; c < C; c++) sum[c] = wsum[c] = 0.25 * (double)c, sq[c] = wsq[c] = 1.0 + (double)c;
    for (int64_t i = 0; i < pixels; i++)
        for (int64_t c = 0; c < C; c++) {
            double v = x[i * C + c];
            wsum[c] += v;
            wsq[c] += v * v;
        }
    kt->channel_moments(x, pixels, C, sum, sq);
    CHECK_MSG(!memcmp(sum, wsum, (size_t)C * sizeof(double)) && !memcmp(sq, wsq, (size_t)C * sizeof(double)),
              "[%s] channel_moments pixels=%lld C=%lld differs from the portable loop", kt->name, (long long)pixels,
              (long long)C);
    free(x), free(d);
}

static void run_path(const cvx_kernel_table *kt, cvx_pool *pool) {
    g_path = kt->name;
    g_threads = cvx_pool_size(pool);
    cvx_kernels_set_active_for_testing(kt);
    for (int64_t n = 1; n <= 37; n += 9) check_affine_silu(kt, n);
    check_affine_silu(kt, 512);
    static const int64_t moments[][2] = {{1, 1}, {7, 3}, {33, 16}, {5, 40}, {100, 128}, {3, 512}, {17, 75}};
    for (size_t i = 0; i < sizeof moments / sizeof moments[0]; i++)
        check_channel_moments(kt, moments[i][0], moments[i][1]);

    static const int64_t lin[][3] = {{1, 1, 1},    {1, 7, 5},     {2, 16, 32},   {3, 17, 33},   {13, 31, 47},
                                     {12, 64, 64}, {25, 96, 100}, {37, 300, 70}, {5, 520, 9},   {64, 257, 129},
                                     {1, 600, 300}, {130, 40, 3},  {200, 33, 200}, {4, 77, 301},  {2, 1030, 67},
                                     {5, 77, 41}};
    for (size_t i = 0; i < sizeof lin / sizeof lin[0]; i++)
        for (int dt = 0; dt < 3; dt++) {
            cvx_dtype d = dt == 0 ? CVX_DTYPE_F32 : dt == 1 ? CVX_DTYPE_F16 : CVX_DTYPE_BF16;
            check_linear(pool, lin[i][0], lin[i][1], lin[i][2], d, (int)((i + (size_t)dt) % 2));
        }
    check_linear(pool, 4, 0, 6, CVX_DTYPE_F32, 1); /* K = 0: y = bias */

    static const int64_t gm[][3] = {{1, 1, 1}, {5, 3, 2}, {17, 33, 300}, {40, 70, 9}, {3, 100, 257}, {90, 10, 64},
                                    {4, 9, 17}};
    for (size_t i = 0; i < sizeof gm / sizeof gm[0]; i++) {
        check_gemm_nt(pool, gm[i][0], gm[i][1], gm[i][2], 0, 0);
        check_gemm_nt(pool, gm[i][0], gm[i][1], gm[i][2], 3, 1);
    }

    static const int64_t at[][5] = {{1, 1, 1, 1, 8},    {1, 2, 5, 7, 16},   {2, 3, 13, 1, 13},  {1, 1, 97, 200, 64},
                                    {2, 2, 33, 130, 32}, {1, 1, 7, 400, 128}, {1, 3, 130, 45, 24}, {2, 1, 1, 385, 40}};
    for (size_t i = 0; i < sizeof at / sizeof at[0]; i++)
        for (int bias = 0; bias < 3; bias++)
            check_attention(pool, at[i][0], at[i][1], at[i][2], at[i][3], at[i][4], bias, bias ? 1.0f : 4.0f, 0);

    if (pool) {
        cvx_pool *one = cvx_pool_new(1);
        check_row_invariance(pool, one, 300, 200, 70, 0);
        check_row_invariance(pool, one, 240, 2100, 40, 0);
        cvx_pool_free(one);
    }
    if (pool) { /* the out-of-memory paths: no per-thread scratch at all */
        cvx_pool *starved = cvx_pool_new(2);
        cvx_pool_limit_scratch(starved, 64);
        check_linear(starved, 37, 300, 70, CVX_DTYPE_F16, 1);
        check_linear(starved, 64, 257, 129, CVX_DTYPE_F32, 0);
        check_gemm_nt(starved, 17, 33, 300, 3, 1);
        check_attention(starved, 1, 3, 130, 45, 24, 1, 1.0f, 0);
        cvx_pool_free(starved);
    }

    static const int64_t nd[][2] = {{1, 1}, {3, 7}, {5, 33}, {2, 4099}, {17, 64}};
    for (size_t i = 0; i < sizeof nd / sizeof nd[0]; i++)
        for (int v = 0; v < 4; v++) {
            check_norm(pool, nd[i][0], nd[i][1], v & 1, (v >> 1) & 1, (int)(i % 2), v ? 1e-6f : 1e-5f, 0.0f);
            check_norm(pool, nd[i][0], nd[i][1], v & 1, 1, 0, 1e-5f, 100.0f);
        }
    check_activations(pool, 1000);
    check_activations(pool, 70001);
    check_conversions(pool, kt);
}

/* Child mode (CVX_FORCE_ISA=name set by the parent): the normal choice, without test overrides, must be that
 * path's fp32 and bf16 tables, and the bf16 operations must be right through them. */
static int forced_child(const char *name) {
    int isa = cvx_isa_from_name(name);
    CHECK_MSG(isa >= 0 && cvx_isa_active() == (cvx_isa)isa, "CVX_FORCE_ISA=%s gave %s", name, cvx_isa_name(cvx_isa_active()));
    if (isa >= 0) {
        CHECK(cvx_kernels_active() == cvx_kernels_for((cvx_isa)isa));
        CHECK(cvx_bf16_kernels_active() == cvx_bf16_kernels_for((cvx_isa)isa));
    }
    char label[64];
    snprintf(label, sizeof label, "forced %s", name);
    g_path = label;
    cvx_pool *pool = cvx_pool_new(2);
    check_linear_bf16(pool, 37, 300, 70, CVX_DTYPE_F16, 1);
    check_linear_bf16_ex(pool, 40, 2100, 70, 1);
    check_gemm_nt_bf16(pool, 40, 70, 9, 3, 1);
    check_attention(pool, 2, 2, 33, 130, 32, 2, 1.0f, 1);
    cvx_pool_free(pool);
    return cvx_test_finish(label);
}

extern char **environ;

static void run_forced(const char *self, cvx_isa isa) {
    char env_isa[64];
    snprintf(env_isa, sizeof env_isa, "CVX_FORCE_ISA=%s", cvx_isa_name(isa));
    size_t n = 0;
    while (environ[n]) n++;
    char **envp = calloc(n + 2, sizeof(char *));
    size_t k = 0;
    for (size_t i = 0; i < n; i++)
        if (strncmp(environ[i], "CVX_FORCE_ISA=", 14) != 0) envp[k++] = environ[i];
    envp[k++] = env_isa;
    char *argv[] = {(char *)self, "--forced", (char *)cvx_isa_name(isa), NULL};
    pid_t pid;
    int st = 0;
    int rc = posix_spawn(&pid, self, NULL, NULL, argv, envp);
    CHECK_MSG(rc == 0, "spawn %s: %s", self, strerror(rc));
    if (rc == 0) {
        CHECK(waitpid(pid, &st, 0) == pid);
        CHECK_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "CVX_FORCE_ISA=%s child failed (status %d)", cvx_isa_name(isa), st);
    }
    free(envp);
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--forced")) return forced_child(argv[2]);
    cvx_pool *pool = cvx_pool_new(2);
    CHECK(pool != NULL);
    const cvx_kernel_table *done[CVX_ISA_COUNT] = {0};
    int ndone = 0;
    for (int isa = 0; isa < CVX_ISA_COUNT; isa++) {
        if (!cvx_isa_supported((cvx_isa)isa)) continue;
        const cvx_kernel_table *kt = cvx_kernels_for((cvx_isa)isa);
        int seen = 0;
        for (int i = 0; i < ndone; i++) seen |= done[i] == kt;
        if (seen || !kt) continue;
        done[ndone++] = kt;
        printf("path %s\n", kt->name);
        run_path(kt, NULL);
        run_path(kt, pool);
    }
    /* The bf16 path of every instruction set, over that set's fp32 kernels (what the emulation runs on). */
    check_pack_errors();
    const cvx_bf16_table *bdone[CVX_ISA_COUNT] = {0};
    const cvx_kernel_table *bover[CVX_ISA_COUNT] = {0};
    int nbdone = 0;
    for (int isa = 0; isa < CVX_ISA_COUNT; isa++) {
        if (!cvx_isa_supported((cvx_isa)isa)) continue;
        const cvx_kernel_table *kt = cvx_kernels_for((cvx_isa)isa);
        const cvx_bf16_table *bt = cvx_bf16_kernels_for((cvx_isa)isa);
        CHECK(bt != NULL);
        int seen = 0;
        for (int i = 0; i < nbdone; i++) seen |= bdone[i] == bt && bover[i] == kt;
        if (seen || !bt || !kt) continue;
        bdone[nbdone] = bt, bover[nbdone++] = kt;
        cvx_kernels_set_active_for_testing(kt);
        printf("bf16 path %s over %s\n", cvx_bf16_kernels_name(bt), kt->name);
        run_bf16_path(bt, NULL);
        run_bf16_path(bt, pool);
    }
    /* The AMX kernels on emulated tiles: the tile code tested wherever AVX512-BF16 runs (with or without AMX). */
    const cvx_bf16_table *emu = cvx_bf16_kernels_amx_emulated();
    if (emu) {
        cvx_kernels_set_active_for_testing(cvx_kernels_for(CVX_ISA_AVX512));
        printf("bf16 path %s over avx512\n", cvx_bf16_kernels_name(emu));
        run_bf16_path(emu, NULL);
        run_bf16_path(emu, pool);
    }
    cvx_bf16_kernels_set_active_for_testing(NULL);
    cvx_kernels_set_active_for_testing(NULL);
    /* Each path chosen the way users choose it, in a child process (the choice is made once per process). */
    for (int isa = 0; isa < CVX_ISA_COUNT; isa++)
        if (cvx_isa_supported((cvx_isa)isa)) run_forced("/proc/self/exe", (cvx_isa)isa);
    cvx_pool_free(pool);
    return cvx_test_finish("test_kernels");
}
