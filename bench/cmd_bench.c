/* `cogvideox bench`: the machine's limits and the engine's speed against them (issue 9).
 *
 *   cogvideox bench peak                                   register-resident peak per dot-product family
 *   cogvideox bench gemm --m M --k K --n N                 cvx_linear (fp32) / cvx_linear_bf16 (packed weights)
 *   cogvideox bench attention --tokens L --heads H --head-dim D      cvx_attention(_bf16), batch 2
 *   cogvideox bench block --tokens N                       one CogVideoX-2b block at real dims, CFG batch 2
 *   cogvideox bench generate -m DIR [generate's flags]     per-stage seconds and peak RSS of a real run
 *   cogvideox bench deviation -m DIR [generate's flags]    bf16 vs fp32 final latents (cmd_bench_deviation.c)
 * Common: --json (exactly one JSON object on stdout; progress and logs go to stderr), --precision fp32|bf16
 * (default bf16), --repeat N (default 3: every timing is the best run, its median beside it; gemm, attention
 * and block run once untimed first, as the torch script does), --threads N.
 *
 * fraction_of_peak always divides by the all-thread vdpbf16ps register peak measured in the same run (the
 * fp32 FMA peak on a CPU without AVX512-BF16, named in "peak_family"), so figures mean the same on every
 * machine; on the AMX path ("bf16_path": "amx") fraction_of_amx_peak divides by the tdpbf16ps peak
 * (peak_gflops_amx) of the same run. CVX_FORCE_ISA=avx512bf16 measures the AVX512-BF16 path of an AMX machine
 * (bench/report.sh prints both). generate --cache SPEC reports the computed steps (computed_steps,
 * computed_step_count) but no speed-up: random weights do not skip like trained ones. FLOPs count a multiply-add as 2. The block is a 1-layer CogVideoXTransformer3DModel built by the
 * transformer's own code from the real 2b config with random weights written to a temporary folder; its
 * forward also runs the patch/text/time embeddings and proj_out (≈ 7 GFLOP at 226 text tokens, counted in the
 * seconds but not in the block FLOPs 2·(4·D² + 2·D·FF)·L·B + 4·L²·D·B). PyTorch comparisons run
 * bench/torch_block.py when a Python with torch is found (CVX_PYTHON, python3, /usr/bin/python3); otherwise the output says "not installed". */

#include <jansson.h>
#include <math.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cogvideox.h"
#include "core/dist.h"
#include "core/half.h"
#include "core/log.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "diffusion/rope.h"
#include "diffusion/transformer.h"
#include "io/config.h"
#include "io/model.h"
#include "io/model_maker.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"
#include "vae/vae.h"

#ifndef CVX_BENCH_DIR
#define CVX_BENCH_DIR "bench"
#endif

double cvx_bench_peak_vnni(int64_t iters); /* cmd_bench_vnni.c */
int cvx_bench_deviation(const char *model_dir, const cvx_generate_params *gp, int threads, json_t *root);

typedef struct {
    const char *mode;
    int json, repeat, threads;
    cvx_precision precision;
    long long m, k, n, tokens, heads, head_dim;
    const char *torch_script;
    /* generate */
    const char *model;
    cvx_generate_params gp;
    int no_decode; /* generate: stop after the denoising (the T5 + transformer figures, not the VAE's) */
} bench_opts;

static int usage(FILE *f) {
    fprintf(f,
            "usage: cogvideox bench peak|gemm|attention|block|generate|deviation|i2v [options]\n"
            "  peak                                        register peak of each dot-product family, all threads\n"
            "  gemm --m M --k K --n N                      y[M,N] = x[M,K]·W[N,K]^T\n"
            "  attention --tokens L --heads H --head-dim D batch 2, self-attention\n"
            "  block --tokens N                            one CogVideoX-2b block, 226 text + N video tokens, batch 2\n"
            "  generate -m DIR [-p TEXT] [--steps N] [--frames N] [--height H] [--width W] [--seed S]\n"
            "           [--guidance G] [-o OUT.mp4] [--cache SPEC] [--no-decode]\n"
            "                                              a real run: per-stage seconds, peak RSS; with --cache\n"
            "                                              the computed steps (no speed-up is quoted: see README);\n"
            "                                              --no-decode stops after the denoising. Under mpirun -np N\n"
            "                                              one run over N processes: rank 0 prints, with per rank the\n"
            "                                              compute and communication seconds per step and the bytes sent\n"
            "  deviation -m DIR [generate's flags; --steps 2] bf16 vs fp32 final latents of the same run (no decode)\n"
            "  i2v -m DIR [--frames N] [--height H] [--width W]\n"
            "                                              an image-to-video model (make-model --preset\n"
            "                                              cogvideox-5b-i2v): the VAE encode of one image and one\n"
            "                                              denoising step (the CFG batch of 2, 32 input channels), its\n"
            "                                              FLOPs and fraction of the peak (default: the sample size)\n"
            "common: --json  --precision fp32|bf16 (bf16)  --repeat N (3)  --threads N (all cores)\n"
            "        --torch-script PATH (bench/torch_block.py)\n"
            "exit codes: 0 ok, 1 bad arguments, 2 a model, file or I/O failure\n"
            "example: cogvideox bench generate -m models/tiny --steps 2 --repeat 1 --json\n");
    return f == stderr ? 1 : 0; /* a usage error exits 1, as every subcommand (README) */
}

/* ---- statistics ------------------------------------------------------------------------------------------ */

static int cmp_double(const void *a, const void *b) {
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}
static double median_of(const double *v, int n) {
    double *s = malloc(sizeof(double) * (size_t)n);
    if (!s) return v[0];
    memcpy(s, v, sizeof(double) * (size_t)n);
    qsort(s, (size_t)n, sizeof(double), cmp_double);
    double m = n % 2 ? s[n / 2] : 0.5 * (s[n / 2 - 1] + s[n / 2]);
    free(s);
    return m;
}
static double min_of(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] < m ? v[i] : m;
    return m;
}
static double max_of(const double *v, int n) {
    double m = v[0];
    for (int i = 1; i < n; i++) m = v[i] > m ? v[i] : m;
    return m;
}

static double peak_rss_gb(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_maxrss * 1024.0 / 1e9; /* KiB on Linux */
}

static void fill_random(float *x, int64_t n, uint64_t seed, float amp) {
    uint64_t s = seed * 0x9E3779B97F4A7C15ull + 1;
    for (int64_t i = 0; i < n; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        x[i] = amp * (float)((double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0);
    }
}

static float *alloc_f32(int64_t n) {
    if (n <= 0 || (uint64_t)n > SIZE_MAX / sizeof(float)) return NULL;
    void *p = NULL;
    return posix_memalign(&p, 64, (size_t)n * sizeof(float)) ? NULL : p;
}

/* ---- register peaks: one probe per thread, started together ----------------------------------------------- */

typedef double (*probe_fn)(int64_t iters);
static double probe_fp32(int64_t i) { return cvx_kernels_peak_probe("fp32", i); }
static double probe_bf16(int64_t i) { return cvx_kernels_peak_probe("bf16", i); }
static double probe_amx(int64_t i) { return cvx_kernels_peak_probe("amx", i); }

typedef struct {
    probe_fn fn;
    int64_t iters;
    atomic_int *go; /* 0: wait, 1: run, -1: give up (a sibling thread could not be started) */
    double flops;
} probe_job;

static void *probe_thread(void *arg) {
    probe_job *j = arg;
    int g;
    while ((g = atomic_load_explicit(j->go, memory_order_acquire)) == 0) sched_yield();
    if (g > 0) j->flops = j->fn(j->iters);
    return NULL;
}

/* Flops per second of `threads` probes run at once (wall time from the common start to the last join);
 * 0 when a thread cannot be started. */
static double probe_all(probe_fn fn, int threads, int64_t iters) {
    pthread_t *t = calloc((size_t)threads, sizeof *t);
    probe_job *j = calloc((size_t)threads, sizeof *j);
    atomic_int go = 0;
    double rate = 0;
    if (!t || !j) goto out;
    int started = 0;
    for (; started < threads; started++) {
        j[started] = (probe_job){fn, iters, &go, 0};
        if (pthread_create(&t[started], NULL, probe_thread, &j[started])) break;
    }
    atomic_store_explicit(&go, started == threads ? 1 : -1, memory_order_release);
    double t0 = cvx_time_seconds(), flops = 0;
    for (int i = 0; i < started; i++) pthread_join(t[i], NULL), flops += j[i].flops;
    double sec = cvx_time_seconds() - t0;
    if (started < threads) fprintf(stderr, "cogvideox bench: could not start %d probe threads\n", threads);
    else rate = sec > 0 ? flops / sec : 0;
out:
    free(t), free(j);
    return rate;
}

/* Best and median GFLOP/s of a family over `repeat` runs of about `seconds` each. */
static double peak_gflops(probe_fn fn, int threads, int repeat, double seconds, double *median) {
    int64_t iters = 1000;
    for (;;) { /* calibrate on one thread until a run is long enough to time */
        double t0 = cvx_time_seconds();
        fn(iters);
        double dt = cvx_time_seconds() - t0;
        if (dt > 0.02 || iters > ((int64_t)1 << 40)) {
            iters = (int64_t)((double)iters * seconds / (dt > 1e-9 ? dt : 1e-9));
            if (iters < 1) iters = 1;
            break;
        }
        iters *= 8;
    }
    double *v = calloc((size_t)repeat, sizeof(double));
    if (!v) return 0;
    for (int r = 0; r < repeat; r++) v[r] = probe_all(fn, threads, iters) / 1e9;
    double best = max_of(v, repeat);
    if (median) *median = median_of(v, repeat);
    free(v);
    return best;
}

/* The denominator of fraction_of_peak: vdpbf16ps, or fp32 FMA on a CPU without AVX512-BF16. */
static double ref_peak(int threads, const char **family) {
    if (cvx_isa_supported(CVX_ISA_AVX512BF16)) {
        *family = "bf16";
        return peak_gflops(probe_bf16, threads, 3, 0.1, NULL);
    }
    *family = "fp32";
    return peak_gflops(probe_fp32, threads, 3, 0.1, NULL);
}

/* ---- PyTorch ---------------------------------------------------------------------------------------------- */

/* The interpreter that runs the torch script: $CVX_PYTHON, else the first of `python3` on PATH and Debian's
 * /usr/bin/python3 (where apt's python3-torch lives when PATH has another Python first) that imports torch.
 * NULL when none does. */
static const char *torch_python(void) {
    static int probed = 0;
    static const char *found = NULL;
    if (probed) return found;
    probed = 1;
    const char *env = getenv("CVX_PYTHON");
    const char *candidates[] = {env && *env ? env : NULL, "python3", "/usr/bin/python3"};
    for (size_t i = 0; i < sizeof candidates / sizeof *candidates && !found; i++) {
        if (!candidates[i] || strchr(candidates[i], '\'')) continue;
        char cmd[1024];
        snprintf(cmd, sizeof cmd, "'%s' -c 'import torch' >/dev/null 2>&1", candidates[i]);
        if (system(cmd) == 0) found = candidates[i];
        if (env && *env) break; /* an explicit choice is not second-guessed */
    }
    return found;
}

/* Runs bench/torch_block.py with `args` and returns its one JSON object (NULL, with a note on stderr, when it
 * fails). */
static json_t *run_torch(const bench_opts *o, const char *args) {
    const char *script = o->torch_script ? o->torch_script : CVX_BENCH_DIR "/torch_block.py";
    if (strchr(script, '\'')) { /* it goes into a single-quoted shell word */
        fprintf(stderr, "cogvideox bench: the torch script's path may not contain a single quote: %s\n", script);
        return NULL;
    }
    char cmd[8192];
    snprintf(cmd, sizeof cmd, "'%s' '%s' %s --threads %d --repeat %d --precision %s", torch_python(), script, args, o->threads,
             o->repeat, o->precision == CVX_PRECISION_BF16 ? "bf16" : "fp32");
    fprintf(stderr, "cogvideox bench: %s\n", cmd);
    FILE *p = popen(cmd, "r");
    if (!p) return NULL;
    char buf[65536];
    size_t n = fread(buf, 1, sizeof buf - 1, p);
    buf[n] = 0;
    int rc = pclose(p);
    json_error_t je;
    json_t *j = rc == 0 ? json_loads(buf, 0, &je) : NULL;
    if (!j) fprintf(stderr, "cogvideox bench: the torch script failed (exit %d): %s\n", rc, buf);
    return j;
}

/* Adds "torch" (the script's figures, or why there are none) and speedup_vs_torch to `root`. */
static void add_torch(json_t *root, const bench_opts *o, const char *args, double our_seconds) {
    if (!torch_python()) {
        json_object_set_new(root, "torch", json_string("not installed"));
        return;
    }
    json_t *t = run_torch(o, args);
    if (!t) {
        json_object_set_new(root, "torch", json_string("failed"));
        return;
    }
    double ts = json_number_value(json_object_get(t, "seconds"));
    json_object_set_new(root, "torch", t);
    if (ts > 0 && our_seconds > 0) json_object_set_new(root, "speedup_vs_torch", json_real(ts / our_seconds));
}

/* ---- the modes -------------------------------------------------------------------------------------------- */

static void add_timing(json_t *root, const double *sec, int repeat, double flops, double peak) {
    double best = min_of(sec, repeat), med = median_of(sec, repeat);
    json_object_set_new(root, "seconds", json_real(best));
    json_object_set_new(root, "seconds_median", json_real(med));
    if (flops > 0) {
        json_object_set_new(root, "flops", json_real(flops));
        json_object_set_new(root, "gflops", json_real(flops / best / 1e9));
        json_object_set_new(root, "gflops_median", json_real(flops / med / 1e9));
        if (peak > 0) {
            json_object_set_new(root, "fraction_of_peak", json_real(flops / best / 1e9 / peak));
            json_object_set_new(root, "fraction_of_peak_median", json_real(flops / med / 1e9 / peak));
        }
    }
}

/* The reference peak measured before the timed runs: the denominator is the larger of it and the one after, so
 * that a moment of contention on a shared machine does not inflate fraction_of_peak. */
static double g_peak_before;

static void add_peak_ref(json_t *root, int threads) {
    const char *family = "bf16";
    double peak = ref_peak(threads, &family);
    if (g_peak_before > peak) peak = g_peak_before;
    json_object_set_new(root, "peak_family", json_string(family));
    json_object_set_new(root, "peak_gflops", json_real(peak));
    if (cvx_isa_supported(CVX_ISA_AMX))
        json_object_set_new(root, "peak_gflops_amx", json_real(peak_gflops(probe_amx, threads, 3, 0.1, NULL)));
    /* The bf16 path that ran, and the fraction of its own unit's peak: tdpbf16ps on the AMX path (beside
     * fraction_of_peak, which keeps the vdpbf16ps denominator for comparisons across machines). */
    const char *path = cvx_bf16_kernels_name(cvx_bf16_kernels_active());
    json_object_set_new(root, "bf16_path", json_string(path));
}

/* After add_timing: on the AMX path, the figures as fractions of the tdpbf16ps peak measured in the same run. */
static void add_amx_fraction(json_t *root) {
    json_t *amx = json_object_get(root, "peak_gflops_amx"), *gf = json_object_get(root, "gflops");
    const char *path = json_string_value(json_object_get(root, "bf16_path"));
    if (!amx || !gf || !path || strcmp(path, "amx") || json_number_value(amx) <= 0) return;
    json_object_set_new(root, "fraction_of_amx_peak", json_real(json_number_value(gf) / json_number_value(amx)));
    json_t *gm = json_object_get(root, "gflops_median");
    if (gm) json_object_set_new(root, "fraction_of_amx_peak_median", json_real(json_number_value(gm) / json_number_value(amx)));
}

static int mode_peak(const bench_opts *o, int threads, json_t *root) {
    const cvx_cpu_info *ci = cvx_cpu_get();
    struct {
        const char *name;
        probe_fn fn;
        int present;
    } fam[] = {
        {"fp32", probe_fp32, cvx_isa_supported(CVX_ISA_AVX512) || cvx_isa_supported(CVX_ISA_AVX2)},
        {"bf16", probe_bf16, cvx_isa_supported(CVX_ISA_AVX512BF16)},
        {"vnni_int8", cvx_bench_peak_vnni, ci->avx512_vnni && ci->avx512f && ci->os_avx512},
        {"amx_bf16", probe_amx, cvx_isa_supported(CVX_ISA_AMX)},
    };
    json_t *pk = json_object(), *pm = json_object(), *absent = json_array();
    for (size_t i = 0; i < sizeof fam / sizeof fam[0]; i++) {
        if (!fam[i].present) {
            json_array_append_new(absent, json_string(fam[i].name));
            continue;
        }
        fprintf(stderr, "cogvideox bench: peak %s on %d threads\n", fam[i].name, threads);
        double med = 0, best = peak_gflops(fam[i].fn, threads, o->repeat, 0.25, &med);
        json_object_set_new(pk, fam[i].name, json_real(best));
        json_object_set_new(pm, fam[i].name, json_real(med));
    }
    json_object_set_new(root, "peak_gflops", pk);
    json_object_set_new(root, "peak_gflops_median", pm);
    json_object_set_new(root, "families_absent", absent);
    return 0;
}

static int mode_gemm(const bench_opts *o, cvx_pool *pool, json_t *root) {
    int64_t M = o->m, K = o->k, N = o->n;
    float *x = alloc_f32(M * K), *w = alloc_f32(N * K), *y = alloc_f32(M * N);
    double *sec = calloc((size_t)o->repeat, sizeof(double));
    cvx_packed *pw = NULL;
    int rc = 2; /* a failure at run time (memory, files) */
    if (!x || !w || !y || !sec) {
        fprintf(stderr, "cogvideox bench gemm: out of memory for %lld x %lld x %lld\n", o->m, o->k, o->n);
        goto out;
    }
    fill_random(x, M * K, 1, 1.0f);
    fill_random(w, N * K, 2, 1.0f / sqrtf((float)K));
    int64_t shape[2] = {N, K};
    cvx_tensor W = cvx_tensor_view(CVX_DTYPE_F32, w, 2, shape);
    if (o->precision == CVX_PRECISION_BF16) {
        double t0 = cvx_time_seconds();
        if (cvx_pack_bf16(pool, &W, &pw)) {
            fprintf(stderr, "cogvideox bench gemm: packing the weights failed (out of memory?)\n");
            goto out;
        }
        json_object_set_new(root, "pack_seconds", json_real(cvx_time_seconds() - t0));
    }
    for (int r = -1; r < o->repeat; r++) { /* r = -1: the untimed warm-up (first touch of y), as torch's */
        double t0 = cvx_time_seconds();
        if (pw) cvx_linear_bf16(pool, y, x, M, K, pw, NULL);
        else cvx_linear(pool, y, x, M, K, &W, NULL);
        if (r < 0) continue;
        sec[r] = cvx_time_seconds() - t0;
        fprintf(stderr, "cogvideox bench gemm: run %d: %.4g s\n", r + 1, sec[r]);
    }
    json_object_set_new(root, "m", json_integer(M));
    json_object_set_new(root, "k", json_integer(K));
    json_object_set_new(root, "n", json_integer(N));
    add_peak_ref(root, cvx_pool_size(pool));
    add_timing(root, sec, o->repeat, 2.0 * (double)M * (double)N * (double)K,
               json_real_value(json_object_get(root, "peak_gflops")));
    add_amx_fraction(root);
    char args[256];
    snprintf(args, sizeof args, "gemm --m %lld --k %lld --n %lld", o->m, o->k, o->n);
    add_torch(root, o, args, min_of(sec, o->repeat));
    rc = 0;
out:
    cvx_packed_free(pw);
    free(x), free(w), free(y), free(sec);
    return rc;
}

static int mode_attention(const bench_opts *o, cvx_pool *pool, json_t *root) {
    if ((double)o->tokens * (double)o->heads * (double)o->head_dim > (double)(1LL << 36)) {
        fprintf(stderr, "cogvideox bench attention: %lld tokens x %lld heads x %lld is too large\n", o->tokens, o->heads,
                o->head_dim);
        return 1;
    }
    const int64_t B = 2, L = o->tokens, H = o->heads, D = o->head_dim, n = B * L * H * D;
    float *q = alloc_f32(n), *k = alloc_f32(n), *v = alloc_f32(n), *out = alloc_f32(n);
    double *sec = calloc((size_t)o->repeat, sizeof(double));
    int rc = 2; /* a failure at run time (memory, files) */
    if (!q || !k || !v || !out || !sec) {
        fprintf(stderr, "cogvideox bench attention: out of memory\n");
        goto out;
    }
    fill_random(q, n, 3, 1.0f), fill_random(k, n, 4, 1.0f), fill_random(v, n, 5, 1.0f);
    float scale = 1.0f / sqrtf((float)D);
    for (int r = -1; r < o->repeat; r++) { /* r = -1: the untimed warm-up */
        double t0 = cvx_time_seconds();
        if (o->precision == CVX_PRECISION_BF16)
            cvx_attention_bf16(pool, out, H * D, q, H * D, k, H * D, v, H * D, B, H, L, L, D, scale, NULL);
        else
            cvx_attention(pool, out, H * D, q, H * D, k, H * D, v, H * D, B, H, L, L, D, scale, NULL);
        if (r < 0) continue;
        sec[r] = cvx_time_seconds() - t0;
        fprintf(stderr, "cogvideox bench attention: run %d: %.4g s\n", r + 1, sec[r]);
    }
    json_object_set_new(root, "tokens", json_integer(L));
    json_object_set_new(root, "heads", json_integer(H));
    json_object_set_new(root, "head_dim", json_integer(D));
    json_object_set_new(root, "batch", json_integer(B));
    add_peak_ref(root, cvx_pool_size(pool));
    add_timing(root, sec, o->repeat, 4.0 * (double)B * (double)H * (double)L * (double)L * (double)D,
               json_real_value(json_object_get(root, "peak_gflops")));
    add_amx_fraction(root);
    char args[256];
    snprintf(args, sizeof args, "attention --tokens %lld --heads %lld --head-dim %lld", o->tokens, o->heads,
             o->head_dim);
    add_torch(root, o, args, min_of(sec, o->repeat));
    rc = 0;
out:
    free(q), free(k), free(v), free(out), free(sec);
    return rc;
}

/* Random weights for the 1-layer model: Linear weights ~ U(±√3/√fan_in), norm scales ≈ 1, the rest small. */
typedef struct {
    const cvx_tensor_list *l;
} block_fill_ctx;

static cvx_status block_fill(void *user, size_t index, void *dst, size_t nbytes, cvx_error *err) {
    (void)err;
    const block_fill_ctx *c = user;
    const cvx_expected_tensor *t = &c->l->t[index];
    uint64_t s = 0x9E3779B97F4A7C15ull * (index + 1) + 777;
    double scale = t->kind == CVX_PARAM_WEIGHT && t->fan_in > 0 ? 1.7320508 / sqrt((double)t->fan_in) : 0.02;
    uint16_t *h = dst;
    for (size_t i = 0; i < nbytes / 2; i++) {
        s ^= s << 13, s ^= s >> 7, s ^= s << 17;
        double u = (double)(s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
        h[i] = cvx_f32_to_f16(t->kind == CVX_PARAM_NORM_WEIGHT ? (float)(1.0 + 0.1 * u) : (float)(u * scale));
    }
    return CVX_OK;
}

/* The 2b transformer config with one layer and f16 random weights in `dir`. */
static cvx_status write_block_model(const char *dir, cvx_error *err) {
    json_t *cj = NULL;
    cvx_config *cfg = NULL;
    cvx_tensor_list l = {0};
    cvx_st_entry *e = NULL;
    char path[4200];
    cvx_status st = cvx_make_model_config("cogvideox-2b", "transformer", &cj, err);
    if (st) return st;
    json_object_set_new(cj, "num_layers", json_integer(1));
    snprintf(path, sizeof path, "%s/config.json", dir);
    if ((st = cvx_json_write_python(path, cj, err)) || (st = cvx_config_from_json(&cfg, cj, path, err)) ||
        (st = cvx_model_expected_tensors(CVX_CLASS_TRANSFORMER_3D, cfg, &l, err)))
        goto done;
    if (!(e = calloc(l.n, sizeof *e))) {
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    for (size_t i = 0; i < l.n; i++) {
        e[i].name = l.t[i].name;
        e[i].dtype = CVX_DTYPE_F16;
        e[i].ndim = l.t[i].ndim;
        memcpy(e[i].shape, l.t[i].shape, sizeof e[i].shape);
    }
    block_fill_ctx fc = {&l};
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    st = cvx_safetensors_write(path, e, l.n, NULL, block_fill, &fc, err);
done:
    free(e);
    cvx_tensor_list_free(&l);
    cvx_config_free(cfg);
    json_decref(cj);
    return st;
}

static void remove_block_model(const char *dir) {
    char path[4200];
    snprintf(path, sizeof path, "%s/diffusion_pytorch_model.safetensors", dir);
    remove(path);
    snprintf(path, sizeof path, "%s/config.json", dir);
    remove(path);
    rmdir(dir);
}

static int mode_block(const bench_opts *o, cvx_pool *pool, json_t *root) {
    const char *base = getenv("TMPDIR");
    char dir[4096];
    snprintf(dir, sizeof dir, "%s/cvx-bench-block-XXXXXX", base && *base ? base : "/tmp");
    if (!mkdtemp(dir)) {
        perror("cogvideox bench block: mkdtemp");
        return 2;
    }
    cvx_error err = {0};
    cvx_dit *m = NULL;
    float *lat = NULL, *text = NULL, *out = NULL;
    double *sec = calloc((size_t)o->repeat, sizeof(double)), *parts = calloc((size_t)o->repeat * 3, sizeof(double));
    int rc = 2; /* a failure at run time (memory, files) */
    fprintf(stderr, "cogvideox bench block: writing a 1-layer CogVideoX-2b transformer with random weights to %s\n", dir);
    if (!sec || !parts || write_block_model(dir, &err) || cvx_dit_open_dir(&m, dir, &err)) {
        fprintf(stderr, "cogvideox bench block: %s\n", err.message[0] ? err.message : "out of memory");
        goto out;
    }
    if (o->precision == CVX_PRECISION_BF16) {
        double t0 = cvx_time_seconds();
        if (cvx_dit_set_precision(m, CVX_PRECISION_BF16, pool)) {
            fprintf(stderr, "cogvideox bench block: %s\n", cvx_error_message(cvx_dit_error(m)));
            goto out;
        }
        json_object_set_new(root, "pack_seconds", json_real(cvx_time_seconds() - t0));
    }
    const cvx_dit_config *c = cvx_dit_get_config(m);
    /* N video tokens as one latent frame of 2 × 2N latents: one patch row of N patches. */
    const int64_t B = 2, F = 1, N = o->tokens, Hl = c->patch_size, Wl = c->patch_size * N, L = c->max_text_seq_length;
    lat = alloc_f32(B * F * c->in_channels * Hl * Wl);
    out = alloc_f32(B * F * c->out_channels * Hl * Wl);
    text = alloc_f32(B * L * c->text_embed_dim);
    if (!lat || !out || !text) {
        fprintf(stderr, "cogvideox bench block: out of memory\n");
        goto out;
    }
    fill_random(lat, B * F * c->in_channels * Hl * Wl, 6, 1.0f);
    fill_random(text, B * L * c->text_embed_dim, 7, 0.1f);
    int64_t ts[2] = {999, 999};
    for (int r = -1; r < o->repeat; r++) { /* r = -1: the untimed warm-up (the activations' first touch) */
        cvx_dit_call call = {B, F, Hl, Wl, L, lat, text, ts, NULL, NULL, out, pool, NULL, NULL, NULL, NULL};
        double t0 = cvx_time_seconds();
        if (cvx_dit_forward(m, &call)) {
            fprintf(stderr, "cogvideox bench block: %s\n", cvx_error_message(cvx_dit_error(m)));
            goto out;
        }
        if (r < 0) continue;
        sec[r] = cvx_time_seconds() - t0;
        const cvx_dit_timings *tm = cvx_dit_last_timings(m);
        parts[3 * r] = tm->projections, parts[3 * r + 1] = tm->attention, parts[3 * r + 2] = tm->feed_forward;
        fprintf(stderr, "cogvideox bench block: run %d: %.4g s\n", r + 1, sec[r]);
    }
    const double D = c->inner_dim, FF = 4.0 * D, Lj = (double)(N + L);
    double flops = 2.0 * (4.0 * D * D + 2.0 * D * FF) * Lj * B + 4.0 * Lj * Lj * D * B;
    int best = 0;
    for (int r = 1; r < o->repeat; r++) best = sec[r] < sec[best] ? r : best;
    json_object_set_new(root, "tokens", json_integer(N));
    json_object_set_new(root, "text_tokens", json_integer(L));
    json_object_set_new(root, "joint_tokens", json_integer(N + L));
    json_object_set_new(root, "batch", json_integer(B));
    json_object_set_new(root, "dim", json_integer(c->inner_dim));
    json_object_set_new(root, "heads", json_integer(c->num_attention_heads));
    json_object_set_new(root, "head_dim", json_integer(c->attention_head_dim));
    json_object_set_new(root, "ff_dim", json_integer((json_int_t)FF));
    json_object_set_new(root, "model",
                        json_string("1-layer CogVideoXTransformer3DModel (2b config, random f16 weights); "
                                    "seconds include its embeddings and proj_out"));
    json_t *pj = json_object();
    json_object_set_new(pj, "projections", json_real(parts[3 * best]));
    json_object_set_new(pj, "attention", json_real(parts[3 * best + 1]));
    json_object_set_new(pj, "feed_forward", json_real(parts[3 * best + 2]));
    json_object_set_new(root, "parts_seconds", pj);
    json_object_set_new(root, "peak_rss_gb", json_real(peak_rss_gb()));
    add_peak_ref(root, cvx_pool_size(pool));
    add_timing(root, sec, o->repeat, flops, json_real_value(json_object_get(root, "peak_gflops")));
    add_amx_fraction(root);
    char args[128];
    snprintf(args, sizeof args, "block --tokens %lld", o->tokens);
    add_torch(root, o, args, sec[best]);
    rc = 0;
out:
    cvx_dit_free(m);
    remove_block_model(dir);
    free(lat), free(out), free(text), free(sec), free(parts);
    return rc;
}

/* bench i2v: what an image-to-video generation adds and costs per step, on the model folder's own weights: the VAE
 * encode of the conditioning image [1, 3, 1, H, W] (once per generation) and one denoising step, i.e. one
 * transformer forward over the CFG batch [2, F, 2C, h, w] with the text [2, L, Dt] and the rope tables (what every
 * step costs, the guidance and the scheduler's O(n) update aside). Inputs are random. */
static int mode_i2v(const bench_opts *o, cvx_pool *pool, json_t *root) {
    char path[4200];
    cvx_error err = {0};
    cvx_dit *m = NULL;
    cvx_vae *vae = NULL;
    float *lat = NULL, *text = NULL, *out = NULL, *cs = NULL, *sn = NULL, *x = NULL, *h = NULL;
    double *sec = calloc((size_t)o->repeat, sizeof(double)), *esec = calloc((size_t)o->repeat, sizeof(double));
    int rc = 2;
    snprintf(path, sizeof path, "%s/transformer", o->model);
    double t0 = cvx_time_seconds();
    if (!sec || !esec || cvx_dit_open_dir(&m, path, &err)) {
        fprintf(stderr, "cogvideox bench i2v: %s\n", err.message[0] ? err.message : "out of memory");
        goto out;
    }
    const cvx_dit_config *c = cvx_dit_get_config(m);
    if (c->in_channels != 2 * c->out_channels) {
        fprintf(stderr, "cogvideox bench i2v: %s takes %d input channels for %d output channels: not an image-to-video "
                "transformer (make-model --preset cogvideox-5b-i2v writes one)\n", path, c->in_channels, c->out_channels);
        rc = 1;
        goto out;
    }
    if (o->precision == CVX_PRECISION_BF16 && cvx_dit_set_precision(m, CVX_PRECISION_BF16, pool)) {
        fprintf(stderr, "cogvideox bench i2v: %s\n", cvx_error_message(cvx_dit_error(m)));
        goto out;
    }
    json_object_set_new(root, "open_seconds", json_real(cvx_time_seconds() - t0));
    snprintf(path, sizeof path, "%s/vae", o->model);
    if (cvx_vae_open(&vae, path, CVX_VAE_ENCODER, &err) || cvx_vae_set_precision(vae, o->precision)) {
        fprintf(stderr, "cogvideox bench i2v: %s\n", err.message[0] ? err.message : cvx_vae_last_error(vae));
        goto out;
    }
    const int S = 1 << (cvx_vae_get_config(vae)->n_blocks - 1), tcr = (int)cvx_vae_get_config(vae)->temporal_compression_ratio;
    const int frames = o->gp.num_frames ? o->gp.num_frames : c->sample_frames;
    const int H = o->gp.height ? o->gp.height : c->sample_height * S, W = o->gp.width ? o->gp.width : c->sample_width * S;
    const int64_t B = 2, F = (frames - 1) / tcr + 1, hl = H / S, wl = W / S, L = c->max_text_seq_length;
    const int64_t Cin = c->in_channels, Dh = c->attention_head_dim;
    /* the image's encode */
    int64_t xs[5] = {1, 3, 1, H, W}, hs[5];
    cvx_vae_params vp = cvx_vae_params_default(vae);
    if (cvx_vae_encode_shape(vae, &vp, xs, hs)) {
        fprintf(stderr, "cogvideox bench i2v: %s\n", cvx_vae_last_error(vae));
        rc = 1;
        goto out;
    }
    x = alloc_f32(3 * (int64_t)H * W);
    h = alloc_f32(hs[1] * hs[2] * hs[3] * hs[4]);
    if (!x || !h) goto oom;
    fill_random(x, 3 * (int64_t)H * W, 5, 1.0f);
    for (int r = 0; r < o->repeat; r++) {
        double t1 = cvx_time_seconds();
        if (cvx_vae_encode(vae, pool, &vp, x, xs, h)) {
            fprintf(stderr, "cogvideox bench i2v: %s\n", cvx_vae_last_error(vae));
            goto out;
        }
        esec[r] = cvx_time_seconds() - t1;
        fprintf(stderr, "cogvideox bench i2v: VAE encode of the %dx%d image, run %d: %.3f s\n", W, H, r + 1, esec[r]);
    }
    cvx_vae_close(vae), vae = NULL;
    /* one denoising step */
    cvx_rope_params rp = cvx_rope_params_default(H, W, (int)F, (int)Dh);
    rp.vae_scale_spatial = S, rp.patch_size = c->patch_size;
    int gh, gw;
    int64_t rows;
    if (cvx_rope_shape(&rp, &gh, &gw, &rows, &err)) {
        fprintf(stderr, "cogvideox bench i2v: %s\n", err.message);
        rc = 1;
        goto out;
    }
    lat = alloc_f32(B * F * Cin * hl * wl);
    out = alloc_f32(B * F * c->out_channels * hl * wl);
    text = alloc_f32(B * L * c->text_embed_dim);
    cs = alloc_f32(rows * Dh), sn = alloc_f32(rows * Dh);
    if (!lat || !out || !text || !cs || !sn) goto oom;
    if (cvx_rope_tables(&rp, cs, sn, &err)) {
        fprintf(stderr, "cogvideox bench i2v: %s\n", err.message);
        goto out;
    }
    fill_random(lat, B * F * Cin * hl * wl, 6, 1.0f);
    fill_random(text, B * L * c->text_embed_dim, 7, 0.1f);
    int64_t ts[2] = {999, 999};
    for (int r = 0; r < o->repeat; r++) {
        cvx_dit_call call = {B, F, hl, wl, L, lat, text, ts, cs, sn, out, pool, NULL, NULL, NULL, NULL};
        double t1 = cvx_time_seconds();
        if (cvx_dit_forward(m, &call)) {
            fprintf(stderr, "cogvideox bench i2v: %s\n", cvx_error_message(cvx_dit_error(m)));
            rc = 1;
            goto out;
        }
        sec[r] = cvx_time_seconds() - t1;
        fprintf(stderr, "cogvideox bench i2v: denoising step (transformer, CFG batch 2), run %d: %.3f s\n", r + 1, sec[r]);
    }
    json_object_set_new(root, "model_dir", json_string(o->model));
    json_object_set_new(root, "frames", json_integer(frames));
    json_object_set_new(root, "height", json_integer(H));
    json_object_set_new(root, "width", json_integer(W));
    json_object_set_new(root, "latent_frames", json_integer(F));
    json_object_set_new(root, "in_channels", json_integer(Cin));
    json_object_set_new(root, "joint_tokens", json_integer(L + rows));
    json_object_set_new(root, "batch", json_integer(B));
    json_object_set_new(root, "layers", json_integer(c->num_layers));
    json_object_set_new(root, "dim", json_integer(c->inner_dim));
    json_object_set_new(root, "vae_encode_seconds", json_real(min_of(esec, o->repeat)));
    json_object_set_new(root, "peak_rss_gb", json_real(peak_rss_gb()));
    add_peak_ref(root, cvx_pool_size(pool));
    /* seconds / flops / fraction_of_peak: the denoising step */
    add_timing(root, sec, o->repeat, cvx_dit_flops(c, B, F, hl, wl, L), json_real_value(json_object_get(root, "peak_gflops")));
    add_amx_fraction(root);
    rc = 0;
    goto out;
oom:
    fprintf(stderr, "cogvideox bench i2v: out of memory\n");
out:
    cvx_vae_close(vae);
    cvx_dit_free(m);
    free(lat), free(out), free(text), free(cs), free(sn), free(x), free(h), free(sec), free(esec);
    return rc;
}

/* --no-decode: the generation is stopped (as a cancel) once the last denoising step is done, at the poll that comes
 * before the VAE opens. */
static void stop_at_decode_progress(const cvx_progress *pr, void *user) {
    if (pr->phase >= CVX_PHASE_DECODE || (pr->phase == CVX_PHASE_DENOISE && pr->steps > 0 && pr->step >= pr->steps))
        *(int *)user = 1;
}
static int stop_at_decode(void *user) { return *(int *)user; }

typedef struct {
    double denoise_s, comm_s, bytes; /* of this rank's last run */
} rank_stats;

static int mode_generate(const bench_opts *o_in, json_t *root) {
    bench_opts oc = *o_in, *o = &oc;
    if (cvx_cli_dist_init("bench generate")) return 1;
    cvx_error derr;
    cvx_error_clear(&derr);
    const cvx_dist *world = cvx_dist_world();
    const int rank = cvx_dist_rank(world), ranks = cvx_dist_size(world);
    int decoding = 0;
    if (o->no_decode) {
        o->gp.progress = stop_at_decode_progress, o->gp.progress_user_data = &decoding;
        o->gp.should_cancel = stop_at_decode, o->gp.cancel_user_data = &decoding;
    }
    rank_stats mine = {0, 0, 0};
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = o->threads;
    cvx_engine *e = NULL;
    char eb[1024] = "";
    double t0 = cvx_time_seconds();
    if (cvx_engine_open(&e, o->model, &ep, eb, sizeof eb)) {
        fprintf(stderr, "cogvideox bench generate: %s\n", eb);
        return 2;
    }
    double t_open = cvx_time_seconds() - t0;
    static const char *const stage[4] = {"encode", "denoise", "decode", "write"};
    double *tot = calloc((size_t)o->repeat, sizeof(double)), *st = calloc((size_t)o->repeat * 4, sizeof(double));
    int rc = 2, frames = 0, height = 0, width = 0;
    if (!tot || !st) goto out;
    for (int r = 0; r < o->repeat; r++) {
        cvx_video v = {0};
        double t1 = cvx_time_seconds();
        decoding = 0;
        cvx_status gs = cvx_generate(e, &o->gp, &v);
        if (gs == CVX_ERR_CANCELLED && o->no_decode && decoding) gs = CVX_OK; /* stopped where asked */
        mine.denoise_s = v.seconds[CVX_PHASE_DENOISE], mine.comm_s = v.denoise_comm_seconds;
        mine.bytes = (double)v.denoise_comm_bytes;
        if (gs != CVX_OK) {
            fprintf(stderr, "cogvideox bench generate: %s\n", cvx_engine_last_error(e));
            cvx_video_free(&v);
            if (gs == CVX_ERR_INVALID_ARGUMENT) rc = 1; /* a parameter the engine refuses: a usage error */
            goto out;
        }
        tot[r] = cvx_time_seconds() - t1;
        for (int s = 0; s < 4; s++) st[4 * r + s] = v.seconds[s];
        frames = v.num_frames, height = v.height, width = v.width;
        if (r == 0) { /* the transformer steps that ran (all of them without a cache) */
            json_t *cs = json_array();
            for (int i = 0; i < v.num_computed_steps; i++) json_array_append_new(cs, json_integer(v.computed_steps[i]));
            json_object_set_new(root, "computed_steps", cs);
            json_object_set_new(root, "computed_step_count", json_integer(v.num_computed_steps));
            char spec[256] = "off";
            cvx_cache_format(&o->gp.cache, spec, sizeof spec);
            json_object_set_new(root, "cache", json_string(spec));
        }
        cvx_video_free(&v);
        if (rank == 0) fprintf(stderr, "cogvideox bench generate: run %d: %.3f s (encode %.3f, denoise %.3f, decode %.3f, write %.3f)\n", r + 1,
                tot[r], st[4 * r], st[4 * r + 1], st[4 * r + 2], st[4 * r + 3]);
    }
    json_object_set_new(root, "model_dir", json_string(o->model));
    json_object_set_new(root, "open_seconds", json_real(t_open));
    json_object_set_new(root, "steps", json_integer(o->gp.steps));
    json_object_set_new(root, "frames", json_integer(frames));
    json_object_set_new(root, "height", json_integer(height));
    json_object_set_new(root, "width", json_integer(width));
    json_t *sb = json_object(), *sm = json_object();
    double *col = malloc(sizeof(double) * (size_t)o->repeat);
    if (!col) goto out;
    for (int s = 0; s < 4; s++) {
        for (int r = 0; r < o->repeat; r++) col[r] = st[4 * r + s];
        json_object_set_new(sb, stage[s], json_real(min_of(col, o->repeat)));
        json_object_set_new(sm, stage[s], json_real(median_of(col, o->repeat)));
    }
    free(col);
    json_object_set_new(root, "stage_seconds", sb);
    json_object_set_new(root, "stage_seconds_median", sm);
    if (o->gp.steps > 0) {
        double den = json_real_value(json_object_get(sb, "denoise"));
        json_object_set_new(root, "seconds_per_step", json_real(den / o->gp.steps));
    }
    add_timing(root, tot, o->repeat, 0, 0);
    json_object_set_new(root, "peak_rss_gb", json_real(peak_rss_gb()));
    json_object_set_new(root, "decoded", json_boolean(!o->no_decode));
    json_object_set_new(root, "ranks", json_integer(ranks));
    rc = 0;
out:
    free(tot), free(st);
    cvx_engine_close(e);
    if (ranks > 1) { /* every rank's last run, on rank 0: the denoising's compute (less its collectives) and transfers */
        rank_stats *all = calloc((size_t)ranks, sizeof *all);
        int64_t *cnt = calloc((size_t)ranks, sizeof *cnt), *dsp = calloc((size_t)ranks, sizeof *dsp);
        if (all && cnt && dsp) {
            for (int j = 0; j < ranks; j++) cnt[j] = sizeof(rank_stats), dsp[j] = (int64_t)sizeof(rank_stats) * j;
            all[rank] = mine;
            if (cvx_dist_allgatherv(world, all, cnt, dsp, &derr) == CVX_OK && rank == 0 && rc == 0) {
                json_t *per = json_array();
                int steps = o->gp.steps > 0 ? o->gp.steps : 1;
                for (int j = 0; j < ranks; j++)
                    json_array_append_new(
                        per, json_pack("{s:i, s:f, s:f, s:f, s:f}", "rank", j, "compute_seconds_per_step",
                                       (all[j].denoise_s - all[j].comm_s) / steps, "comm_seconds_per_step",
                                       all[j].comm_s / steps, "denoise_bytes_sent", all[j].bytes,
                                       "bytes_sent_per_step", all[j].bytes / steps));
                json_object_set_new(root, "per_rank", per);
            }
        }
        free(all), free(cnt), free(dsp);
    }
    if (rank != 0 && rc == 0) rc = -1; /* the others print nothing (the caller's -1: quiet success) */
    cvx_dist_finalize();
    return rc;
}

/* What the figures depend on beyond the brand string (cpuid family/model: "AMD EPYC" names Zen 4 and Zen 5
 * alike) and how busy the machine was (other processes share the cores). Linux only; absent elsewhere. */
static void add_machine_load(json_t *root) {
    FILE *f = fopen("/proc/cpuinfo", "r");
    if (f) {
        char line[512];
        int fam = -1, model = -1;
        while (fgets(line, sizeof line, f) && (fam < 0 || model < 0)) {
            const char *colon = strchr(line, ':');
            if (!colon) continue;
            if (fam < 0 && !strncmp(line, "cpu family", 10)) sscanf(colon + 1, "%d", &fam);
            else if (model < 0 && !strncmp(line, "model\t", 6)) sscanf(colon + 1, "%d", &model);
        }
        fclose(f);
        if (fam >= 0) json_object_set_new(root, "cpu_family", json_integer(fam));
        if (model >= 0) json_object_set_new(root, "cpu_model", json_integer(model));
    }
    double load[3];
    if (getloadavg(load, 3) == 3) json_object_set_new(root, "loadavg_1min", json_real(load[0]));
}

/* ---- human-readable output: the JSON object, one key per line ---------------------------------------------- */

static void print_text(const json_t *root) {
    const char *key;
    json_t *v;
    json_object_foreach((json_t *)root, key, v) {
        char *s = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
        printf("%-24s %s\n", key, s ? s : "?");
        free(s);
    }
}

/* ---- argument parsing ------------------------------------------------------------------------------------- */

static int parse_ll(const char *flag, const char *s, long long min, long long max, long long *out) {
    if (!s || cvx_cli_parse_int(s, min, max, out)) {
        fprintf(stderr, "cogvideox bench: %s needs an integer in [%lld, %lld], got '%s'\n", flag, min, max,
                s ? s : "(nothing)");
        return -1;
    }
    return 0;
}

int cvx_cmd_bench(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) return usage(argc < 2 ? stderr : stdout);
    bench_opts o = {0};
    o.mode = argv[1];
    o.repeat = 3;
    o.precision = CVX_PRECISION_BF16;
    o.m = 512, o.k = 1920, o.n = 1920, o.tokens = -1, o.heads = 30, o.head_dim = 64;
    o.gp = cvx_generate_params_default();
    o.gp.prompt = "A panda, dressed in a small, red jacket and a tiny hat, sits on a wooden stool in a serene "
                  "bamboo forest.";
    static const char *const modes[] = {"peak", "gemm", "attention", "block", "generate", "deviation", "i2v"};
    int known = 0;
    for (size_t i = 0; i < sizeof modes / sizeof modes[0]; i++) known |= !strcmp(o.mode, modes[i]);
    if (!known) {
        fprintf(stderr, "cogvideox bench: unknown mode '%s'\n", o.mode);
        return usage(stderr);
    }
    int is_gen = !strcmp(o.mode, "generate") || !strcmp(o.mode, "deviation") || !strcmp(o.mode, "i2v");
    if (!strcmp(o.mode, "deviation")) o.gp.steps = 2;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i], *val = i + 1 < argc ? argv[i + 1] : NULL;
        long long x;
        if (!strcmp(a, "--json")) o.json = 1;
        else if (!strcmp(a, "--help") || !strcmp(a, "-h")) return usage(stdout);
        else if (!strcmp(a, "--precision")) {
            int p = cvx_precision_from_name(val);
            if (p < 0) {
                fprintf(stderr, "cogvideox bench: --precision is fp32 or bf16, got '%s'\n", val ? val : "(nothing)");
                return 1;
            }
            o.precision = (cvx_precision)p, i++;
        } else if (!strcmp(a, "--repeat")) {
            if (parse_ll(a, val, 1, 1000, &x)) return 1;
            o.repeat = (int)x, i++;
        } else if (!strcmp(a, "--threads")) {
            if (parse_ll(a, val, 1, 4096, &x)) return 1;
            o.threads = (int)x, i++;
        } else if (!strcmp(a, "--torch-script")) {
            if (!val) return fprintf(stderr, "cogvideox bench: --torch-script needs a path\n"), 1;
            o.torch_script = val, i++;
        } else if (!is_gen && (!strcmp(a, "--m") || !strcmp(a, "--k") || !strcmp(a, "--n") || !strcmp(a, "--tokens") ||
                               !strcmp(a, "--heads") || !strcmp(a, "--head-dim"))) {
            if (parse_ll(a, val, 1, 1000000, &x)) return 1;
            long long *dst = !strcmp(a, "--m") ? &o.m : !strcmp(a, "--k") ? &o.k : !strcmp(a, "--n") ? &o.n
                             : !strcmp(a, "--tokens")                    ? &o.tokens
                             : !strcmp(a, "--heads")                     ? &o.heads
                                                                         : &o.head_dim;
            *dst = x, i++;
        } else if (is_gen && (!strcmp(a, "-m") || !strcmp(a, "--model"))) {
            if (!val) return fprintf(stderr, "cogvideox bench: %s needs a folder\n", a), 1;
            o.model = val, i++;
        } else if (is_gen && (!strcmp(a, "-p") || !strcmp(a, "--prompt") || !strcmp(a, "-n") ||
                              !strcmp(a, "--negative-prompt") || !strcmp(a, "-o") || !strcmp(a, "--output") ||
                              !strcmp(a, "--scheduler"))) {
            if (!val) return fprintf(stderr, "cogvideox bench: %s needs a value\n", a), 1;
            if (a[1] == 'p' || !strcmp(a, "--prompt")) o.gp.prompt = val;
            else if (a[1] == 'n' || !strcmp(a, "--negative-prompt")) o.gp.negative_prompt = val;
            else if (a[1] == 'o' || !strcmp(a, "--output")) o.gp.output_path = val;
            else o.gp.scheduler = val;
            i++;
        } else if (is_gen && (!strcmp(a, "--steps") || !strcmp(a, "--frames") || !strcmp(a, "--height") ||
                              !strcmp(a, "--width") || !strcmp(a, "--fps") || !strcmp(a, "--seed"))) {
            if (parse_ll(a, val, !strcmp(a, "--seed") ? 0 : 1, 1LL << 40, &x)) return 1;
            if (!strcmp(a, "--steps")) o.gp.steps = (int)x;
            else if (!strcmp(a, "--frames")) o.gp.num_frames = (int)x;
            else if (!strcmp(a, "--height")) o.gp.height = (int)x;
            else if (!strcmp(a, "--width")) o.gp.width = (int)x;
            else if (!strcmp(a, "--fps")) o.gp.fps = (int)x;
            else o.gp.seed = (uint64_t)x;
            i++;
        } else if (is_gen && (!strcmp(a, "--guidance") || !strcmp(a, "--scale"))) {
            char *end = NULL;
            double g = val ? strtod(val, &end) : NAN;
            if (!val || end == val || *end || !isfinite(g) || g < 0 || g > 100) {
                fprintf(stderr, "cogvideox bench: %s needs a number in [0, 100]\n", a);
                return 1;
            }
            o.gp.guidance_scale = (float)g, i++;
        } else if (!strcmp(o.mode, "generate") && !strcmp(a, "--no-decode")) {
            o.no_decode = 1;
        } else if (!strcmp(o.mode, "generate") && !strcmp(a, "--cache")) {
            char eb[256] = "";
            if (!val || cvx_cache_parse(val, &o.gp.cache, eb, sizeof eb) != CVX_OK) {
                fprintf(stderr, "cogvideox bench: --cache: %s\n", val ? eb : "needs off or teacache[:THRESHOLD[:C4,C3,C2,C1,C0]]");
                return 1;
            }
            i++;
        } else {
            fprintf(stderr, "cogvideox bench %s: unknown option '%s'\n", o.mode, a);
            return usage(stderr);
        }
    }
    o.gp.precision = o.precision;
    if (!strcmp(o.mode, "attention") && o.tokens < 0) o.tokens = 1024;
    if (!strcmp(o.mode, "block") && o.tokens < 0) o.tokens = 1350; /* 1 latent frame at 60 × 90 */
    if (is_gen && !o.model) {
        fprintf(stderr, "cogvideox bench %s: needs -m DIR (a model folder)\n", o.mode);
        return 1;
    }

    cvx_pool *pool = cvx_pool_new(o.threads);
    if (!pool) {
        fprintf(stderr, "cogvideox bench: could not start the thread pool\n");
        return 2;
    }
    int threads = cvx_pool_size(pool);
    if (o.threads <= 0) o.threads = threads;
    const cvx_cpu_info *ci = cvx_cpu_get();
    json_t *root = json_object();
    json_object_set_new(root, "mode", json_string(o.mode));
    json_object_set_new(root, "cpu", json_string(ci->brand[0] ? ci->brand : ci->vendor));
    json_object_set_new(root, "isa", json_string(cvx_isa_name(cvx_isa_active())));
    json_object_set_new(root, "bf16_path", json_string(cvx_bf16_kernels_name(cvx_bf16_kernels_active())));
    json_object_set_new(root, "threads", json_integer(threads));
    json_object_set_new(root, "precision", json_string(o.precision == CVX_PRECISION_BF16 ? "bf16" : "fp32"));
    json_object_set_new(root, "repeat", json_integer(o.repeat));
    fprintf(stderr, "cogvideox bench %s: %s, kernels %s, %d threads, %s\n", o.mode, ci->brand, cvx_isa_name(cvx_isa_active()),
            threads, o.precision == CVX_PRECISION_BF16 ? "bf16" : "fp32");

    add_machine_load(root);
    if (!strcmp(o.mode, "gemm") || !strcmp(o.mode, "attention") || !strcmp(o.mode, "block") || !strcmp(o.mode, "i2v")) {
        const char *family;
        g_peak_before = ref_peak(threads, &family);
    }
    int rc;
    if (!strcmp(o.mode, "peak")) rc = mode_peak(&o, threads, root);
    else if (!strcmp(o.mode, "gemm")) rc = mode_gemm(&o, pool, root);
    else if (!strcmp(o.mode, "attention")) rc = mode_attention(&o, pool, root);
    else if (!strcmp(o.mode, "block")) rc = mode_block(&o, pool, root);
    else if (!strcmp(o.mode, "i2v")) rc = mode_i2v(&o, pool, root);
    else {
        cvx_pool_free(pool), pool = NULL; /* the engine has its own */
        rc = !strcmp(o.mode, "deviation") ? cvx_bench_deviation(o.model, &o.gp, o.threads, root)
                                          : mode_generate(&o, root);
    }
    if (rc == -1) rc = 0; /* a rank other than 0 of an mpirun: quiet */
    else if (rc == 0) {
        if (o.json) {
            char *s = json_dumps(root, JSON_COMPACT | JSON_REAL_PRECISION(6));
            if (s) printf("%s\n", s);
            free(s);
        } else {
            print_text(root);
        }
        fflush(stdout);
    }
    json_decref(root);
    cvx_pool_free(pool);
    return rc;
}
