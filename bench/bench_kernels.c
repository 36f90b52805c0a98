/* GFLOP/s of cvx_linear and cvx_attention (fp32) and of their bf16 fast path (cvx_linear_bf16 on packed
 * weights, cvx_gemm_nt_bf16, cvx_attention_bf16) at the model's shapes, per kernel path this CPU supports,
 * with 1 and 2 threads, next to the register peaks of fp32 FMA and vdpbf16ps measured in the same run.
 *   bench_kernels [--quick] [--path ref|avx2|avx512|avx512bf16|amx] [--threads N]
 *                 [--op peak|linear|attention|bf16] [--full] [--min-time SECONDS]
 * --quick uses smaller M / L (a smoke run); --full adds the full-length transformer shapes (M = 35552,
 * L = 17776; minutes). The ref path and the bf16 emulation are only timed when asked for with --path (they
 * are 10-50x slower). Figures on a shared machine are noisy: compare runs made back to back; the load
 * average is printed at the start and at the end. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

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
    int64_t M, K;
    float *x, *y, *bias;
    cvx_packed *W;
} linear_bf16_case;

static void run_linear_bf16(void *arg) {
    linear_bf16_case *c = arg;
    cvx_linear_bf16(c->pool, c->y, c->x, c->M, c->K, c->W, c->bias);
}

static double g_peak_bf16[3]; /* vdpbf16ps register peak with 1 and 2 threads (0: unknown) */

static void bench_linear_bf16(cvx_pool *pool, const char *label, int64_t M, int64_t K, int64_t N, cvx_dtype dt) {
    linear_bf16_case c = {pool, M, K, NULL, NULL, NULL, NULL};
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
    cvx_tensor W = cvx_tensor_view(dt, w, 2, shape);
    double t0 = clock_s(CLOCK_MONOTONIC);
    if (cvx_pack_bf16(pool, &W, &c.W) != CVX_OK) {
        fprintf(stderr, "pack failed\n");
        exit(1);
    }
    double tpack = clock_s(CLOCK_MONOTONIC) - t0;
    free(w);
    char what[160];
    snprintf(what, sizeof what, "linear_bf16 %-10s M=%-5lld K=%-5lld N=%-5lld from %s", label, (long long)M,
             (long long)K, (long long)N, cvx_dtype_name(dt));
    double flops = 2.0 * (double)M * (double)K * (double)N;
    timing t = time_best(run_linear_bf16, &c);
    report(what, flops, t);
    int nt = cvx_pool_size(pool);
    if (nt <= 2 && g_peak_bf16[nt] > 0)
        printf("  %-58s %.0f %% of the vdpbf16ps peak (%d thr); packing took %.0f ms\n", "", 100.0 * flops / t.wall / 1e9 / g_peak_bf16[nt], nt,
               tpack * 1e3);
    cvx_packed_free(c.W);
    free(c.x), free(c.y), free(c.bias);
}

typedef struct {
    cvx_pool *pool;
    int64_t M, N, K;
    float *A, *B, *C;
} gemm_case;

static void run_gemm_bf16(void *arg) {
    gemm_case *c = arg;
    cvx_gemm_nt_bf16(c->pool, c->M, c->N, c->K, c->A, c->K, c->B, c->K, c->C, c->N, 0);
}

static void bench_gemm_nt_bf16(cvx_pool *pool, int64_t M, int64_t N, int64_t K) {
    gemm_case c = {pool, M, N, K, malloc(sizeof(float) * (size_t)(M * K)), malloc(sizeof(float) * (size_t)(N * K)),
                   malloc(sizeof(float) * (size_t)(M * N))};
    if (!c.A || !c.B || !c.C) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    fill(c.A, (size_t)(M * K), 1.0f);
    fill(c.B, (size_t)(N * K), 1.0f);
    char what[128];
    snprintf(what, sizeof what, "gemm_nt_bf16 M=%lld N=%lld K=%lld", (long long)M, (long long)N, (long long)K);
    report(what, 2.0 * (double)M * (double)N * (double)K, time_best(run_gemm_bf16, &c));
    free(c.A), free(c.B), free(c.C);
}

typedef struct {
    cvx_pool *pool;
    int64_t B, H, L, D;
    float *qkv, *out;
    int bf16;
} attn_case;

static void run_attn(void *arg) {
    attn_case *c = arg;
    int64_t HD = c->H * c->D;
    (c->bf16 ? cvx_attention_bf16 : cvx_attention)(c->pool, c->out, HD, c->qkv, 3 * HD, c->qkv + HD, 3 * HD,
                                                    c->qkv + 2 * HD, 3 * HD, c->B, c->H, c->L, c->L, c->D,
                                                    1.0f / sqrtf((float)c->D), NULL);
}

static void bench_attention(cvx_pool *pool, int64_t B, int64_t H, int64_t L, int64_t D, int bf16) {
    attn_case c = {pool, B, H, L, D, NULL, NULL, bf16};
    c.qkv = malloc(sizeof(float) * (size_t)(B * L * 3 * H * D));
    c.out = malloc(sizeof(float) * (size_t)(B * L * H * D));
    if (!c.qkv || !c.out) {
        fprintf(stderr, "out of memory\n");
        exit(1);
    }
    fill(c.qkv, (size_t)(B * L * 3 * H * D), 1.0f);
    char what[128];
    snprintf(what, sizeof what, "attention%s B=%lld H=%lld L=%lld D=%lld", bf16 ? "_bf16" : "", (long long)B,
             (long long)H, (long long)L, (long long)D);
    double flops = 4.0 * (double)B * (double)H * (double)L * (double)L * (double)D;
    timing t = time_best(run_attn, &c);
    report(what, flops, t);
    int nt = cvx_pool_size(pool);
    if (bf16 && nt <= 2 && g_peak_bf16[nt] > 0)
        printf("  %-58s %.0f %% of the vdpbf16ps peak (%d thr)\n", "", 100.0 * flops / t.wall / 1e9 / g_peak_bf16[nt], nt);
    free(c.qkv), free(c.out);
}

typedef struct {
    const char *family;
    int64_t iters;
} peak_ctx;

static void peak_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    (void)thread_index;
    peak_ctx *c = arg;
    for (int64_t i = begin; i < end; i++) cvx_kernels_peak_probe(c->family, c->iters);
}

/* Register peak of a family on nt threads (one probe per thread at the same time), GFLOP/s of wall time. */
static double measure_peak(const char *family, int nt) {
    if (cvx_kernels_peak_probe(family, 1) <= 0) return 0.0;
    cvx_pool *pool = cvx_pool_new(nt);
    int64_t iters = 1000000;
    double flops1 = cvx_kernels_peak_probe(family, iters), best = 1e30;
    peak_ctx c = {family, iters};
    for (int r = 0; r < 5; r++) {
        double t0 = clock_s(CLOCK_MONOTONIC);
        cvx_pool_parallel_for(pool, nt, 1, peak_task, &c);
        double dt = clock_s(CLOCK_MONOTONIC) - t0;
        if (dt < best) best = dt;
    }
    cvx_pool_free(pool);
    return flops1 * nt / best / 1e9;
}

static void print_load(const char *when) {
    double l[3];
    if (getloadavg(l, 3) == 3) printf("load average %s: %.2f %.2f %.2f\n", when, l[0], l[1], l[2]);
}

int main(int argc, char **argv) {
    int quick = 0, only_threads = 0, full = 0;
    const char *only_path = NULL, *only_op = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--quick")) quick = 1;
        else if (!strcmp(argv[i], "--path") && i + 1 < argc) only_path = argv[++i];
        else if (!strcmp(argv[i], "--threads") && i + 1 < argc) only_threads = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--op") && i + 1 < argc) only_op = argv[++i];
        else if (!strcmp(argv[i], "--full")) full = 1;
        else if (!strcmp(argv[i], "--min-time") && i + 1 < argc) g_min_time = atof(argv[++i]);
        else {
            fprintf(stderr, "usage: %s [--quick] [--full] [--path NAME] [--threads N] [--op peak|linear|attention|bf16] [--min-time SECONDS]\n", argv[0]);
            return 2;
        }
    }
    const cvx_cpu_info *cpu = cvx_cpu_get();
    printf("CPU: %s (%d logical CPUs); best path %s\n", cpu->brand, cpu->logical_cpus, cvx_isa_name(cvx_isa_best()));
    print_load("at start");
    int64_t div = quick ? 8 : 1;
    if (!only_op || !strcmp(only_op, "peak") || !strcmp(only_op, "bf16")) {
        for (int nt = 1; nt <= 2; nt++) {
            double f = measure_peak("fp32", nt), b = measure_peak("bf16", nt), a = measure_peak("amx", nt);
            g_peak_bf16[nt] = b;
            printf("register peak, %d thread%s: fp32 FMA %.1f GFLOP/s, vdpbf16ps %s%.1f GFLOP/s, AMX %s\n", nt,
                   nt > 1 ? "s" : "", f, b > 0 ? "" : "(absent) ", b, a > 0 ? "present" : "absent");
            if (a > 0) printf("  AMX tdpbf16ps %.1f GFLOP/s\n", a);
        }
    }
    /* Each distinct pair of kernel tables once: the fp32 table of the path and its bf16 table. */
    const cvx_kernel_table *done[CVX_ISA_COUNT] = {0};
    const cvx_bf16_table *bdone[CVX_ISA_COUNT] = {0};
    int ndone = 0;
    for (int isa = 0; isa < CVX_ISA_COUNT; isa++) {
        if (!cvx_isa_supported((cvx_isa)isa)) continue;
        const cvx_kernel_table *kt = cvx_kernels_for((cvx_isa)isa);
        const cvx_bf16_table *bt = cvx_bf16_kernels_for((cvx_isa)isa);
        int seen_fp32 = 0, seen_bf16 = 0;
        for (int i = 0; i < ndone; i++) seen_fp32 |= done[i] == kt, seen_bf16 |= bdone[i] == bt;
        if ((seen_fp32 && seen_bf16) || !kt || !bt) continue;
        done[ndone] = kt, bdone[ndone++] = bt;
        const char *name = cvx_isa_name((cvx_isa)isa);
        if (only_path ? strcmp(only_path, name) != 0 : isa == CVX_ISA_REF) continue;
        int do_fp32 = !seen_fp32, do_bf16 = !seen_bf16 && (only_path || strcmp(cvx_bf16_kernels_name(bt), "emulated"));
        cvx_kernels_set_active_for_testing(kt);
        cvx_bf16_kernels_set_active_for_testing(bt);
        for (int nt = 1; nt <= 2; nt++) {
            if (only_threads && nt != only_threads) continue;
            cvx_pool *pool = cvx_pool_new(nt);
            printf("path %s (fp32 kernels %s, bf16 kernels %s), %d thread%s\n", name, kt->name,
                   cvx_bf16_kernels_name(bt), nt, nt > 1 ? "s" : "");
            if (do_fp32 && (!only_op || !strcmp(only_op, "linear"))) {
                bench_linear(pool, "T5 wi", 452 / div, 4096, 10240, CVX_DTYPE_F16);
                bench_linear(pool, "T5 wo", 452 / div, 10240, 4096, CVX_DTYPE_F16);
                bench_linear(pool, "xfmr qkv/o", 2 * (226 + 1350) / div, 1920, 1920, CVX_DTYPE_F16);
                bench_linear(pool, "xfmr ff", 2 * (226 + 1350) / div, 1920, 7680, CVX_DTYPE_F16);
                bench_linear(pool, "xfmr ff", 2 * (226 + 1350) / div, 1920, 7680, CVX_DTYPE_F32);
                bench_linear(pool, "xfmr ff", 2 * (226 + 1350) / div, 1920, 7680, CVX_DTYPE_BF16);
                bench_linear(pool, "1 row", 1, 4096, 10240, CVX_DTYPE_F16);
            }
            if (do_fp32 && (!only_op || !strcmp(only_op, "attention"))) {
                bench_attention(pool, 2, 30, 1576 / div, 64, 0);
                bench_attention(pool, 2, 30, 4276 / div, 64, 0);
            }
            if (do_bf16 && (!only_op || !strcmp(only_op, "bf16"))) {
                bench_linear_bf16(pool, "T5 wi", 452 / div, 4096, 10240, CVX_DTYPE_F16);
                bench_linear_bf16(pool, "T5 wo", 452 / div, 10240, 4096, CVX_DTYPE_F16);
                bench_linear_bf16(pool, "xfmr qkv/o", 2 * (226 + 1350) / div, 1920, 1920, CVX_DTYPE_F16);
                bench_linear_bf16(pool, "xfmr ff1", 2 * (226 + 1350) / div, 1920, 7680, CVX_DTYPE_F16);
                bench_linear_bf16(pool, "xfmr ff2", 2 * (226 + 1350) / div, 7680, 1920, CVX_DTYPE_F16);
                if (full) {
                    bench_linear_bf16(pool, "xfmr qkv/o", 2 * (226 + 17550), 1920, 1920, CVX_DTYPE_F16);
                    bench_linear_bf16(pool, "xfmr ff1", 2 * (226 + 17550), 1920, 7680, CVX_DTYPE_F16);
                    bench_linear_bf16(pool, "xfmr ff2", 2 * (226 + 17550), 7680, 1920, CVX_DTYPE_F16);
                }
                bench_linear_bf16(pool, "1 row", 1, 4096, 10240, CVX_DTYPE_F16);
                bench_gemm_nt_bf16(pool, 2 * (226 + 1350) / div, 1920, 1920);
                bench_attention(pool, 2, 30, 1576 / div, 64, 1);
                bench_attention(pool, 2, 30, 4276 / div, 64, 1);
                if (full) bench_attention(pool, 2, 30, 17776, 64, 1);
            }
            cvx_pool_free(pool);
        }
    }
    cvx_bf16_kernels_set_active_for_testing(NULL);
    print_load("at end");
    cvx_kernels_set_active_for_testing(NULL);
    return 0;
}
