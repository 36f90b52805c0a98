/* fp32 vs bf16 on a real-size model folder (e.g. make-model --preset cogvideox-2b), side by side:
 *
 *   bench_bf16 -m DIR [--threads N] [--frames F] [--height H] [--width W] [--dev-steps S] [--dev-size HxW]
 *              [--skip-t5] [--skip-step] [--skip-dev]
 *
 *   1. T5 encode of [prompt; ""] (2 x 226 ids): seconds, GFLOP/s, peak RSS, per precision; deviation of the bf16
 *      embeddings from fp32 (max|d|/rms, rms(d)/rms).
 *   2. One transformer forward with CFG batch 2 at F latent frames of H x W latents (default 1 x 60 x 90, the
 *      2b's 480 x 720 frame): seconds, GFLOP/s (cvx_dit_flops), the per-part times, peak RSS, and for bf16 the
 *      one-time packing of the weights; deviation of the bf16 output.
 *   3. S denoising steps (default 3, DDIM from the folder's scheduler, CFG 6, 2 latent frames of 16 x 24) from
 *      the same noise and the fp32 T5 embeddings, fp32 vs bf16: deviation of the final latents.
 *
 * Every measurement runs in its own child process, so each peak RSS (wait4) is that stage's alone. The machine
 * may be shared: the load average is printed before and after. */
#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "cogvideox.h"
#include "core/log.h"
#include "core/threadpool.h"
#include "diffusion/denoise.h"
#include "diffusion/transformer.h"
#include "kernels/kernels.h"
#include "text/t5.h"
#include "text/t5_tokenizer.h"

#define PROMPT                                                                                                          \
    "A panda, dressed in a small, red jacket and a tiny hat, sits on a wooden stool in a serene bamboo forest. The " \
    "panda's fluffy paws strum a miniature acoustic guitar, producing soft, melodic tunes."

typedef struct {
    const char *dir;
    int threads;
    int64_t F, H, W;
    int dev_steps;
    int64_t dev_h, dev_w;
    char tmp[256];
} opts;

/* What a child reports back through its pipe. */
typedef struct {
    int ok;
    double seconds, gflops, pack_seconds, packed_gb;
    double parts[4]; /* projections, attention, feed-forward, total */
    double anon_gb, file_gb; /* RssAnon / RssFile right after the stage (weights packed, pages dropped) */
    char msg[1100];
} result;

static double now(void) { return cvx_time_seconds(); }

/* RssAnon and RssFile of this process (GB): what packing allocated, and the mapped checkpoint pages still in. */
static void rss_split(result *r) {
    FILE *f = fopen("/proc/self/status", "r");
    char line[256];
    long long kb;
    if (!f) return;
    while (fgets(line, sizeof line, f)) {
        if (sscanf(line, "RssAnon: %lld", &kb) == 1) r->anon_gb = kb * 1024.0 / 1e9;
        if (sscanf(line, "RssFile: %lld", &kb) == 1) r->file_gb = kb * 1024.0 / 1e9;
    }
    fclose(f);
}

typedef struct {
    const char *family;
    int64_t iters;
} peak_ctx;

static void peak_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    peak_ctx *c = arg;
    for (int64_t i = begin; i < end; i++) cvx_kernels_peak_probe(c->family, c->iters);
}

/* Register peak of a dot-product family on all the pool's threads (best of 5), GFLOP/s; 0 when absent. */
static double register_peak(const char *family, int threads) {
    if (cvx_kernels_peak_probe(family, 1) <= 0) return 0;
    cvx_pool *pool = cvx_pool_new(threads);
    int nt = cvx_pool_size(pool);
    peak_ctx c = {family, 1000000};
    double flops = cvx_kernels_peak_probe(family, c.iters), best = 1e30;
    for (int r = 0; r < 5; r++) {
        double t0 = now();
        cvx_pool_parallel_for(pool, nt, 1, peak_task, &c);
        if (now() - t0 < best) best = now() - t0;
    }
    cvx_pool_free(pool);
    return flops * nt / best / 1e9;
}

static double g_peak_fp32, g_peak_bf16;

static void load_avg(char *buf, size_t n) {
    FILE *f = fopen("/proc/loadavg", "r");
    buf[0] = '\0';
    if (f) {
        if (!fgets(buf, (int)n, f)) buf[0] = '\0';
        fclose(f);
    }
    buf[strcspn(buf, "\n")] = '\0';
}

static int write_file(const char *path, const void *data, size_t bytes) {
    FILE *f = fopen(path, "wb");
    if (!f) return -1;
    size_t w = fwrite(data, 1, bytes, f);
    return fclose(f) == 0 && w == bytes ? 0 : -1;
}

static float *read_floats(const char *path, int64_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    float *d = malloc((size_t)size + 4);
    if (d && fread(d, 1, (size_t)size, f) != (size_t)size) {
        free(d);
        d = NULL;
    }
    fclose(f);
    *n = size / 4;
    return d;
}

/* Runs fn in a child; returns its result and its peak RSS in GB. */
typedef void (*stage_fn)(const opts *o, int bf16, result *r);

static result run_child(const opts *o, stage_fn fn, int bf16, double *rss_gb) {
    result r;
    memset(&r, 0, sizeof r);
    int fd[2];
    if (pipe(fd) != 0) {
        snprintf(r.msg, sizeof r.msg, "pipe: %s", strerror(errno));
        return r;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        result cr;
        memset(&cr, 0, sizeof cr);
        fn(o, bf16, &cr);
        ssize_t w = write(fd[1], &cr, sizeof cr);
        _exit(w == (ssize_t)sizeof cr ? 0 : 1);
    }
    close(fd[1]);
    ssize_t got = read(fd[0], &r, sizeof r);
    close(fd[0]);
    int status = 0;
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    wait4(pid, &status, 0, &ru);
    *rss_gb = (double)ru.ru_maxrss * 1024.0 / 1e9;
    if (got != (ssize_t)sizeof r) {
        memset(&r, 0, sizeof r);
        snprintf(r.msg, sizeof r.msg, "the child failed (status %d)", status);
    }
    return r;
}

static void path_in(const opts *o, const char *name, char *buf, size_t n) { snprintf(buf, n, "%s/%s", o->tmp, name); }

/* ---- 1. T5 ------------------------------------------------------------------------------------------------- */
static void t5_stage(const opts *o, int bf16, result *r) {
    char path[4200];
    cvx_error err;
    cvx_error_clear(&err);
    cvx_t5_tokenizer *tok = NULL;
    snprintf(path, sizeof path, "%s/tokenizer/spiece.model", o->dir);
    if (cvx_t5_tokenizer_load_file(path, &tok, &err) != CVX_OK) {
        snprintf(r->msg, sizeof r->msg, "%s", cvx_error_message(&err));
        return;
    }
    const int L = 226;
    int64_t ids[2 * 226];
    const char *texts[2] = {PROMPT, ""};
    for (int b = 0; b < 2; b++) {
        cvx_t5_tokens t;
        memset(&t, 0, sizeof t);
        if (cvx_t5_tokenize(tok, texts[b], strlen(texts[b]), L, &t, &err) != CVX_OK || (int)t.n_ids != L) {
            snprintf(r->msg, sizeof r->msg, "tokenize: %s", cvx_error_message(&err));
            cvx_t5_tokenizer_free(tok);
            return;
        }
        for (int i = 0; i < L; i++) ids[b * L + i] = t.ids[i];
        cvx_t5_tokens_free(&t);
    }
    cvx_t5_tokenizer_free(tok);
    cvx_t5 *m = NULL;
    snprintf(path, sizeof path, "%s/text_encoder", o->dir);
    if (cvx_t5_open(&m, path, &err) != CVX_OK) {
        snprintf(r->msg, sizeof r->msg, "%s", cvx_error_message(&err));
        return;
    }
    cvx_t5_set_precision(m, bf16 ? CVX_PRECISION_BF16 : CVX_PRECISION_FP32);
    const cvx_t5_config *c = cvx_t5_get_config(m);
    int64_t D = c->d_model, I = c->num_heads * c->d_kv, F = c->d_ff, T = 2 * L;
    float *out = malloc(sizeof(float) * (size_t)(T * D));
    cvx_pool *pool = cvx_pool_new(o->threads);
    int64_t shape[2] = {2, L};
    cvx_tensor t = cvx_tensor_view(CVX_DTYPE_I64, ids, 2, shape);
    double t0 = now();
    cvx_status st = out ? cvx_t5_encode(m, pool, &t, out) : CVX_ERR_OUT_OF_MEMORY;
    r->seconds = now() - t0;
    rss_split(r);
    if (st == CVX_OK) {
        double per_layer = 2.0 * (double)T * ((double)(3 * D * I + I * D) + (c->is_gated_act ? 3.0 : 2.0) * D * F) +
                           4.0 * 2.0 * (double)L * L * (double)I;
        r->gflops = per_layer * (double)c->num_layers / r->seconds / 1e9;
        path_in(o, bf16 ? "t5_bf16.f32" : "t5_fp32.f32", path, sizeof path);
        r->ok = write_file(path, out, sizeof(float) * (size_t)(T * D)) == 0;
    } else {
        snprintf(r->msg, sizeof r->msg, "%s", cvx_t5_last_error(m));
    }
    free(out);
    cvx_pool_free(pool);
    cvx_t5_close(m);
}

/* The fp32 embeddings of stage 1 as the [uncond; cond] text batch, or random ones of the config's width. */
static float *text_batch(const opts *o, int64_t L, int64_t Dt) {
    char path[4200];
    path_in(o, "t5_fp32.f32", path, sizeof path);
    int64_t n = 0;
    float *e = read_floats(path, &n);
    float *text = malloc(sizeof(float) * (size_t)(2 * L * Dt));
    if (!text) return NULL;
    if (e && n == 2 * L * Dt) {
        memcpy(text, e + L * Dt, sizeof(float) * (size_t)(L * Dt)); /* uncond = "" first, as the pipeline */
        memcpy(text + L * Dt, e, sizeof(float) * (size_t)(L * Dt));
    } else {
        uint64_t s = 77;
        for (int64_t i = 0; i < 2 * L * Dt; i++) {
            s ^= s << 13, s ^= s >> 7, s ^= s << 17;
            text[i] = (float)(((double)(s >> 11) / 9007199254740992.0 - 0.5) * 0.2);
        }
    }
    free(e);
    return text;
}

static cvx_dit *open_dit(const opts *o, int bf16, cvx_pool *pool, result *r) {
    char path[4200];
    cvx_error err;
    cvx_error_clear(&err);
    cvx_dit *m = NULL;
    snprintf(path, sizeof path, "%s/transformer", o->dir);
    if (cvx_dit_open_dir(&m, path, &err) != CVX_OK) {
        snprintf(r->msg, sizeof r->msg, "%s", cvx_error_message(&err));
        return NULL;
    }
    double t0 = now();
    if (cvx_dit_set_precision(m, bf16 ? CVX_PRECISION_BF16 : CVX_PRECISION_FP32, pool) != CVX_OK) {
        snprintf(r->msg, sizeof r->msg, "%s", cvx_dit_error(m)->message);
        cvx_dit_free(m);
        return NULL;
    }
    r->pack_seconds = now() - t0;
    r->packed_gb = (double)cvx_dit_packed_bytes(m) / 1e9;
    rss_split(r);
    return m;
}

/* ---- 2. one transformer step ---------------------------------------------------------------------------- */
static void step_stage(const opts *o, int bf16, result *r) {
    cvx_pool *pool = cvx_pool_new(o->threads);
    cvx_dit *m = open_dit(o, bf16, pool, r);
    if (!m) {
        cvx_pool_free(pool);
        return;
    }
    const cvx_dit_config *c = cvx_dit_get_config(m);
    int64_t B = 2, L = c->max_text_seq_length, n_lat = B * o->F * c->in_channels * o->H * o->W;
    float *lat = malloc(sizeof(float) * (size_t)n_lat);
    float *out = malloc(sizeof(float) * (size_t)(B * o->F * c->out_channels * o->H * o->W));
    float *text = text_batch(o, L, c->text_embed_dim);
    cvx_rng g;
    cvx_rng_seed(&g, 42);
    if (lat) cvx_denoise_initial_latents(&g, lat, n_lat / 2);
    if (lat) memcpy(lat + n_lat / 2, lat, sizeof(float) * (size_t)(n_lat / 2)); /* CFG: the same latents twice */
    int64_t ts[2] = {999, 999};
    if (!lat || !out || !text) {
        snprintf(r->msg, sizeof r->msg, "out of memory");
    } else {
        cvx_dit_call call = {B, o->F, o->H, o->W, L, lat, text, ts, NULL, NULL, out, pool, NULL, NULL, NULL, NULL};
        if (c->use_rotary_positional_embeddings) {
            snprintf(r->msg, sizeof r->msg, "rope models are not benchmarked here");
        } else {
            double t0 = now();
            cvx_status st = cvx_dit_forward(m, &call);
            r->seconds = now() - t0;
            if (st == CVX_OK) {
                const cvx_dit_timings *tm = cvx_dit_last_timings(m);
                r->parts[0] = tm->projections, r->parts[1] = tm->attention, r->parts[2] = tm->feed_forward;
                r->parts[3] = tm->total;
                r->gflops = cvx_dit_flops(c, B, o->F, o->H, o->W, L) / r->seconds / 1e9;
                char path[4200];
                path_in(o, bf16 ? "step_bf16.f32" : "step_fp32.f32", path, sizeof path);
                r->ok = write_file(path, out, sizeof(float) * (size_t)(B * o->F * c->out_channels * o->H * o->W)) == 0;
            } else {
                snprintf(r->msg, sizeof r->msg, "%s", cvx_dit_error(m)->message);
            }
        }
    }
    free(lat), free(out), free(text);
    cvx_dit_free(m);
    cvx_pool_free(pool);
}

/* ---- 3. a few denoising steps --------------------------------------------------------------------------- */
static void dev_stage(const opts *o, int bf16, result *r) {
    cvx_pool *pool = cvx_pool_new(o->threads);
    cvx_dit *m = open_dit(o, bf16, pool, r);
    if (!m) {
        cvx_pool_free(pool);
        return;
    }
    const cvx_dit_config *c = cvx_dit_get_config(m);
    char path[4200];
    snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", o->dir);
    json_error_t je;
    json_t *sc = json_load_file(path, 0, &je);
    cvx_scheduler *sched = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    int64_t L = c->max_text_seq_length, F = 2, H = o->dev_h, W = o->dev_w, n = F * c->in_channels * H * W;
    float *lat = malloc(sizeof(float) * (size_t)n), *text = text_batch(o, L, c->text_embed_dim);
    if (!sc || cvx_scheduler_create(&sched, sc, CVX_SCHED_AUTO, path, &err) != CVX_OK || !lat || !text) {
        snprintf(r->msg, sizeof r->msg, "%s", sc ? cvx_error_message(&err) : je.text);
    } else {
        cvx_rng g;
        cvx_rng_seed(&g, 42);
        cvx_denoise_initial_latents(&g, lat, n);
        cvx_denoise_params p = cvx_denoise_params_default();
        p.num_inference_steps = o->dev_steps;
        p.height_px = (int)H * 8;
        p.width_px = (int)W * 8;
        p.pool = pool;
        double t0 = now();
        /* text is [uncond; cond]: cvx_denoise takes prompt and negative separately */
        cvx_status st = cvx_denoise(m, sched, &p, text + L * c->text_embed_dim, text, 1, L, lat, F, H, W, &g, &err);
        r->seconds = now() - t0;
        r->gflops = cvx_dit_flops(c, 2, F, H, W, L) * o->dev_steps / r->seconds / 1e9;
        if (st == CVX_OK) {
            path_in(o, bf16 ? "dev_bf16.f32" : "dev_fp32.f32", path, sizeof path);
            r->ok = write_file(path, lat, sizeof(float) * (size_t)n) == 0;
        } else {
            snprintf(r->msg, sizeof r->msg, "%s", cvx_error_message(&err));
        }
    }
    json_decref(sc);
    cvx_scheduler_free(sched);
    free(lat), free(text);
    cvx_dit_free(m);
    cvx_pool_free(pool);
}

/* max|a − b| / rms(b) and rms(a − b) / rms(b) of two files of floats. */
static void deviation(const opts *o, const char *fp32, const char *bf16, const char *label) {
    char p1[4200], p2[4200];
    path_in(o, fp32, p1, sizeof p1);
    path_in(o, bf16, p2, sizeof p2);
    int64_t n1 = 0, n2 = 0;
    float *a = read_floats(p1, &n1), *b = read_floats(p2, &n2);
    if (!a || !b || n1 != n2 || n1 == 0) {
        printf("  %-34s (not available)\n", label);
    } else {
        double sq = 0, dsq = 0, mx = 0;
        for (int64_t i = 0; i < n1; i++) {
            double d = fabs((double)b[i] - a[i]);
            sq += (double)a[i] * a[i], dsq += d * d;
            if (!(d <= mx)) mx = d;
        }
        double rms = sqrt(sq / (double)n1);
        printf("  %-34s max|d| %.4g  max|d|/rms %.4f  rms(d)/rms %.4f  (rms of fp32 %.4g, %lld values)\n", label, mx,
               mx / rms, sqrt(dsq / (double)n1) / rms, rms, (long long)n1);
    }
    free(a), free(b);
}

static void print_pair(const char *what, const result *r, const double *rss, int with_parts, const char *rss_when) {
    for (int k = 0; k < 2; k++) {
        const result *x = &r[k];
        if (!x->ok) {
            printf("  %-5s %s: FAILED: %s\n", k ? "bf16" : "fp32", what, x->msg);
            continue;
        }
        printf("  %-5s %s: %8.2f s  %7.1f GFLOP/s (", k ? "bf16" : "fp32", what, x->seconds, x->gflops);
        if (!k && g_peak_fp32 > 0) printf("%.0f %% of the fp32 FMA peak, ", 100 * x->gflops / g_peak_fp32);
        if (g_peak_bf16 > 0) printf("%.0f %% of the vdpbf16ps peak", 100 * x->gflops / g_peak_bf16);
        printf(")  peak RSS %.2f GB", rss[k]);
        if (x->packed_gb > 0) printf("  (packing %.2f GB of weights took %.2f s, not counted)", x->packed_gb,
                                     x->pack_seconds);
        printf("\n        RssAnon %.2f GB, RssFile %.2f GB %s\n", x->anon_gb, x->file_gb, rss_when);
        if (with_parts)
            printf("        projections %.2f s, attention %.2f s, feed-forward %.2f s\n", x->parts[0], x->parts[1],
                   x->parts[2]);
    }
    if (r[0].ok && r[1].ok) printf("  speed-up bf16/fp32: %.2fx\n", r[0].seconds / r[1].seconds);
}

static int parse_size(const char *s, int64_t *h, int64_t *w) {
    long long a, b;
    return sscanf(s, "%lldx%lld", &a, &b) == 2 && a > 0 && b > 0 ? (*h = a, *w = b, 0) : -1;
}

int main(int argc, char **argv) {
    opts o = {NULL, 0, 1, 60, 90, 3, 16, 24, ""};
    int skip_t5 = 0, skip_step = 0, skip_dev = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "-m") && v) o.dir = argv[++i];
        else if (!strcmp(a, "--threads") && v) o.threads = atoi(argv[++i]);
        else if (!strcmp(a, "--frames") && v) o.F = atoll(argv[++i]);
        else if (!strcmp(a, "--height") && v) o.H = atoll(argv[++i]);
        else if (!strcmp(a, "--width") && v) o.W = atoll(argv[++i]);
        else if (!strcmp(a, "--dev-steps") && v) o.dev_steps = atoi(argv[++i]);
        else if (!strcmp(a, "--dev-size") && v) {
            if (parse_size(argv[++i], &o.dev_h, &o.dev_w)) return fprintf(stderr, "--dev-size HxW\n"), 2;
        } else if (!strcmp(a, "--skip-t5")) skip_t5 = 1;
        else if (!strcmp(a, "--skip-step")) skip_step = 1;
        else if (!strcmp(a, "--skip-dev")) skip_dev = 1;
        else {
            fprintf(stderr,
                    "usage: bench_bf16 -m MODEL_DIR [--threads N] [--frames F] [--height H] [--width W] "
                    "[--dev-steps S] [--dev-size HxW] [--skip-t5] [--skip-step] [--skip-dev]\n");
            return 2;
        }
    }
    if (!o.dir || o.F < 1 || o.H < 2 || o.W < 2 || o.dev_steps < 1) {
        fprintf(stderr, "bench_bf16: -m MODEL_DIR is required (sizes and steps must be positive)\n");
        return 2;
    }
    setvbuf(stdout, NULL, _IOLBF, 0);
    snprintf(o.tmp, sizeof o.tmp, "/tmp/bench_bf16.XXXXXX");
    if (!mkdtemp(o.tmp)) return perror("mkdtemp"), 1;
    const cvx_cpu_info *cpu = cvx_cpu_get();
    cvx_pool *probe = cvx_pool_new(o.threads);
    int threads = cvx_pool_size(probe);
    cvx_pool_free(probe);
    char load[128];
    load_avg(load, sizeof load);
    printf("bench_bf16: %s\n  CPU %s, %d threads, kernel path %s (isa %s, avx512_bf16 %d, amx_bf16 %d)\n", o.dir,
           cpu->brand, threads, cvx_kernels_active()->name, cvx_isa_name(cvx_isa_active()), cpu->avx512_bf16,
           cpu->amx_bf16);
    printf("  load average before: %s\n", load);
    g_peak_fp32 = register_peak("fp32", o.threads);
    g_peak_bf16 = register_peak("bf16", o.threads);
    printf("  register peaks, %d threads: fp32 FMA %.1f GFLOP/s, vdpbf16ps %.1f GFLOP/s%s\n", threads, g_peak_fp32,
           g_peak_bf16, g_peak_bf16 > 0 ? "" : " (absent: the bf16 path is emulated on the fp32 kernels)");

    result r[2];
    double rss[2];
    if (!skip_t5) {
        printf("T5 encode, 2 x 226 tokens ([prompt; \"\"]):\n");
        for (int k = 0; k < 2; k++) r[k] = run_child(&o, t5_stage, k, &rss[k]);
        print_pair("encode", r, rss, 0, "after the encode");
        deviation(&o, "t5_fp32.f32", "t5_bf16.f32", "bf16 embeddings vs fp32:");
    }
    if (!skip_step) {
        printf("transformer, one forward, CFG batch 2, %lld latent frame(s) of %lld x %lld:\n", (long long)o.F,
               (long long)o.H, (long long)o.W);
        for (int k = 0; k < 2; k++) r[k] = run_child(&o, step_stage, k, &rss[k]);
        print_pair("step", r, rss, 1, "after opening (and packing) the model");
        deviation(&o, "step_fp32.f32", "step_bf16.f32", "bf16 output vs fp32:");
    }
    if (!skip_dev) {
        printf("denoising loop, %d steps, CFG 6, 2 latent frames of %lld x %lld, fp32 T5 embeddings:\n", o.dev_steps,
               (long long)o.dev_h, (long long)o.dev_w);
        for (int k = 0; k < 2; k++) r[k] = run_child(&o, dev_stage, k, &rss[k]);
        print_pair("loop", r, rss, 0, "after opening (and packing) the model");
        deviation(&o, "dev_fp32.f32", "dev_bf16.f32", "bf16 final latents vs fp32:");
    }
    load_avg(load, sizeof load);
    printf("  load average after: %s\n", load);
    const char *files[] = {"t5_fp32.f32", "t5_bf16.f32", "step_fp32.f32", "step_bf16.f32", "dev_fp32.f32",
                           "dev_bf16.f32"};
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        char p[4200];
        path_in(&o, files[i], p, sizeof p);
        remove(p);
    }
    rmdir(o.tmp);
    return 0;
}
