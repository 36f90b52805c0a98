/* GFLOP/s of cvx_linear and cvx_attention at the model's shapes, per kernel path this CPU supports, with 1
 * and 2 threads.
 *   bench_kernels [--quick] [--path ref|avx2|avx512|...] [--threads N] [--op linear|attention]
 *                 [--min-time SECONDS]
 * --quick uses smaller M / L (a smoke run); the ref path is only timed when asked for with --path (it is
 * 10-50x slower). Figures on a shared machine are noisy: compare runs made back to back. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "core/half.h"
#include "core/threadpool.h"
#include "kernels/kernels.h"

static double clock_s(clockid_t id) {
    struct timespec t;
    clock_gettime(id, &t);
    return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static double g_min_time = 1.0;

static void fill(float *p, size_t n, float scale) {
    uint32_t s = 12345u;
    for (size_t i = 0; i < n; i++) {
        s = s * 1664525u + 1013904223u;
        p[i] = ((float)(s >> 8) / 16777216.0f * 2.0f - 1.0f) * scale;
    }
}

typedef void (*bench_fn)(void *ctx);

/* Best-of repeats after one warm-up: the least-disturbed run on a shared machine. Also the process CPU
 * time of the best-CPU run: flops per CPU-second is what the kernels reach on the cores they were given. */
typedef struct {
    double wall, cpu;
} timing;

static timing time_best(bench_fn fn, void *ctx) {
    fn(ctx);
    timing best = {1e30, 1e30};
    double total = 0;
    int reps = 0;
    while (total < g_min_time || reps < 2) {
        double w0 = clock_s(CLOCK_MONOTONIC), c0 = clock_s(CLOCK_PROCESS_CPUTIME_ID);
        fn(ctx);
        double dw = clock_s(CLOCK_MONOTONIC) - w0, dc = clock_s(CLOCK_PROCESS_CPUTIME_ID) - c0;
        if (dw < best.wall) best.wall = dw;
        if (dc < best.cpu) best.cpu = dc;
        total += dw;
        reps++;
    }
    return best;
}

static void report(const char *what, double flops, timing t) {
    printf("  %-58s %9.2f ms %7.1f GFLOP/s  (%6.1f per CPU-second)\n", what, t.wall * 1e3, flops / t.wall / 1e9,
           flops / t.cpu / 1e9);
}

typedef struct {
    cvx_pool *pool;
    int64_t M, K;
    float *x, *y, *bias;
    cvx_tensor W;
} linear_case;

static void run_linear(void *arg) {
    linear_case *c = arg;
    cvx_linear(c->pool, c->y, c->x, c->M, c->K, &c->W, c->bias);
}

static void bench_linear(cvx_pool *pool, const char *label, int64_t M, int64_t K, int64_t N, cvx_dtype dt) {
    linear_case c = {pool, M, K, NULL, NULL, NULL, {0}};
    c.x = malloc(sizeof(float) * (size_t)(M * K));
    c.y = malloc(sizeof(float) * (size_t)(M * N));
    c.bias = malloc(sizeof(float) * (size_t)N);
    float *wf = malloc(sizeof(float) * (size_t)(N * K));
    void *w = malloc(cvx_dtype_size(dt) * (size_t)(N * K));
    if (!c.x || !c.y || !c.bias || !wf || !w) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    fill(c.x, (size_t)(M * K), 1.0f);
    fill(c.bias, (size_t)N, 0.1f);
    fill(wf, (size_t)(N * K), 0.02f);
    if (dt == CVX_DTYPE_F16) cvx_f32_to_f16_array(wf, w, (size_t)(N * K));
    else if (dt == CVX_DTYPE_BF16) cvx_f32_to_bf16_array(wf, w, (size_t)(N * K));
    else memcpy(w, wf, sizeof(float) * (size_t)(N * K));
    free(wf);
    int64_t shape[2] = {N, K};
    c.W = cvx_tensor_view(dt, w, 2, shape);
    char what[128];
    snprintf(what, sizeof what, "linear %-10s M=%-5lld K=%-5lld N=%-5lld %s", label, (long long)M, (long long)K,
             (long long)N, cvx_dtype_name(dt));
    report(what, 2.0 * (double)M * (double)K * (double)N, time_best(run_linear, &c));
    free(c.x), free(c.y), free(c.bias), free(w);
}

typedef struct {
    cvx_pool *pool;
    int64_t B, H, L, D;
    float *qkv, *out;
} attn_case;

static void run_attn(void *arg) {
    attn_case *c = arg;
    int64_t HD = c->H * c->D;
    cvx_attention(c->pool, c->out, HD, c->qkv, 3 * HD, c->qkv + HD, 3 * HD, c->qkv + 2 * HD, 3 * HD, c->B, c->H, c->L,
                  c->L, c->D, 1.0f / sqrtf((float)c->D), NULL);
}

static void bench_attention(cvx_pool *pool, int64_t B, int64_t H, int64_t L, int64_t D) {
    attn_case c = {pool, B, H, L, D, NULL, NULL};
    c.qkv = malloc(sizeof(float) * (size_t)(B * L * 3 * H * D));
    c.out = malloc(sizeof(float) * (size_t)(B * L * H * D));
    if (!c.qkv || !c.out) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    fill(c.qkv, (size_t)(B * L * 3 * H * D), 1.0f);
    char what[128];
    snprintf(what, sizeof what, "attention B=%lld H=%lld L=%lld D=%lld", (long long)B, (long long)H, (long long)L,
             (long long)D);
    report(what, 4.0 * (double)B * (double)H * (double)L * (double)L * (double)D, time_best(run_attn, &c));
    free(c.qkv), free(c.out);
}

int main(int argc, char **argv) {
    int quick = 0, only_threads = 0;
    const char *only_path = NULL, *only_op = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--path") && i + 1 < argc) only_path = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) only_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--op") && i + 1 < argc) only_op = argv[++i];
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) g_min_time = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--path NAME] [--threads N] [--op linear|attention] [--min-time SECONDS]\n", argv[0]);
            return 2;
        }
    }
    const cvx_cpu_info *cpu = cvx_cpu_get();
    printf("CPU: %s (%d logical CPUs); best path %s\n", cpu->brand, cpu->logical_cpus, cvx_isa_name(cvx_isa_best()));
    int64_t div = quick ? 8 : 1;
    const cvx_kernel_table *done[CVX_ISA_COUNT] = {0};
    int ndone = 0;
    for (int isa = 0; isa < CVX_ISA_COUNT; isa++) {
        if (!cvx_isa_supported((cvx_isa)isa)) continue;
        const cvx_kernel_table *kt = cvx_kernels_for((cvx_isa)isa);
        int seen = 0;
        for (int i = 0; i < ndone; i++) seen |= done[i] == kt;
        if (seen || !kt) continue;
        done[ndone++] = kt;
        if (only_path ? strcmp(only_path, kt->name) != 0 : kt->isa == CVX_ISA_REF) continue;
        cvx_kernels_set_active_for_testing(kt);
        for (int nt = 1; nt <= 2; nt++) {
            if (only_threads && nt != only_threads) continue;
            cvx_pool *pool = cvx_pool_new(nt);
            printf("path %s, %d thread%s\n", kt->name, nt, nt > 1 ? "s" : "");
            if (!only_op || !strcmp(only_op, "linear")) {
                bench_linear(pool, "T5 wi", 452 / div, 4096, 10240, CVX_DTYPE_F16);
                bench_linear(pool, "T5 wo", 452 / div, 10240, 4096, CVX_DTYPE_F16);
                bench_linear(pool, "xfmr qkv/o", 2 * (226 + 1350) / div, 1920, 1920, CVX_DTYPE_F16);
                bench_linear(pool, "xfmr ff", 2 * (226 + 1350) / div, 1920, 7680, CVX_DTYPE_F16);
                bench_linear(pool, "xfmr ff", 2 * (226 + 1350) / div, 1920, 7680, CVX_DTYPE_F32);
                bench_linear(pool, "xfmr ff", 2 * (226 + 1350) / div, 1920, 7680, CVX_DTYPE_BF16);
                bench_linear(pool, "1 row", 1, 4096, 10240, CVX_DTYPE_F16);
            }
            if (!only_op || !strcmp(only_op, "attention")) {
                bench_attention(pool, 2, 30, 1576 / div, 64);
                bench_attention(pool, 2, 30, 4276 / div, 64);
            }
            cvx_pool_free(pool);
        }
    }
    cvx_kernels_set_active_for_testing(NULL);
    return 0;
}
