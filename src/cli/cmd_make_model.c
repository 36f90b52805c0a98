/* cogvideox make-model --preset tiny|cogvideox-2b [--seed N] [--dtype f16|bf16|f32] [--threads N] -o DIR
 *
 * Writes a complete diffusers-layout CogVideoX pipeline folder with deterministic random weights
 * (src/io/model_maker.h): "tiny" for tests and demos, "cogvideox-2b" (the real shapes, ≈ 13 GB in f16) for
 * benchmarks. */
#include <stdio.h>
#include <string.h>
#include <unistd.h>

#include "cli/cli.h"
#include "core/log.h"
#include "io/model.h"
#include "io/model_maker.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cogvideox make-model [--preset tiny|tiny-6h|tiny-i2v|cogvideox-2b|cogvideox-5b-i2v] [--seed N]\n"
               "                            [--dtype f16|bf16|f32]\n"
               "                            [--threads N] -o DIR\n"
               "Writes a complete CogVideoX pipeline folder (diffusers layout) with deterministic random weights.\n"
               "  --preset NAME   tiny (default: small sizes, a few MB, runs in seconds), tiny-6h (tiny with a\n"
               "                  6-head transformer: multi-process tests) or cogvideox-2b (the real\n"
               "                  CogVideoX-2b shapes: ~13 GB in f16, ~26 GB in f32); tiny-i2v and cogvideox-5b-i2v:\n"
               "                  the image-to-video model (CogVideoX-5b-I2V's configs: in_channels 32, rope +\n"
               "                  learned positions) at the tiny sizes or the real shapes (~21 GB in f16)\n"
               "  --seed N        weight seed (default 0); the same seed writes the same bytes\n"
               "  --dtype T       storage dtype of the weights: f16 (default), bf16 or f32\n"
               "  --threads N     threads generating values (default: all cores)\n"
               "  -o, --output DIR  the folder to write (created; weight files of an earlier run are replaced)\n"
               "example: cogvideox make-model --preset tiny -o models/tiny\n");
}

typedef struct {
    int tty;
    int last_pct;
    double t0, last_draw;
} progress_state;

static void progress(const char *file, uint64_t done, uint64_t total, void *user_data) {
    progress_state *ps = user_data;
    int pct = total ? (int)(done * 100 / total) : 100;
    char a[32], b[32];
    if (ps->tty) {
        /* at most ~10 redraws a second (a tiny model is hundreds of calls in no time), and the last one */
        double now = cvx_time_seconds();
        if (done != total && now - ps->last_draw < 0.1) return;
        ps->last_draw = now;
        fprintf(stderr, "\r[%3d%%] %10s / %s  %-60.60s", pct, cvx_format_bytes(done, a, sizeof a), cvx_format_bytes(total, b, sizeof b),
                file);
        fflush(stderr);
    } else if (pct / 10 != ps->last_pct / 10 || done == total) {
        fprintf(stderr, "[%3d%%] %s / %s  %.1f s  %s\n", pct, cvx_format_bytes(done, a, sizeof a), cvx_format_bytes(total, b, sizeof b),
                cvx_time_seconds() - ps->t0, file);
    }
    ps->last_pct = pct;
}

int cvx_cmd_make_model(int argc, char **argv) {
    cvx_make_model_params p = cvx_make_model_params_default();
    const char *out = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--preset") && v) {
            p.preset = v, i++;
            if (!cvx_make_model_preset_known(v)) {
                fprintf(stderr, "cogvideox make-model: unknown preset '%s' (expected tiny, tiny-6h, tiny-i2v, "
                        "cogvideox-2b or cogvideox-5b-i2v)\n", v);
                return 1;
            }
        } else if (!strcmp(a, "--seed") && v) {
            if (cvx_cli_parse_int(v, 0, INT64_MAX, &n)) {
                fprintf(stderr, "cogvideox make-model: --seed needs a non-negative integer, not '%s'\n", v);
                return 1;
            }
            p.seed = (uint64_t)n, i++;
        } else if (!strcmp(a, "--dtype") && v) {
            if (!strcmp(v, "f16") || !strcmp(v, "fp16") || !strcmp(v, "float16"))
                p.dtype = CVX_DTYPE_F16;
            else if (!strcmp(v, "bf16") || !strcmp(v, "bfloat16"))
                p.dtype = CVX_DTYPE_BF16;
            else if (!strcmp(v, "f32") || !strcmp(v, "fp32") || !strcmp(v, "float32"))
                p.dtype = CVX_DTYPE_F32;
            else {
                fprintf(stderr, "cogvideox make-model: unknown dtype '%s' (expected f16, bf16 or f32)\n", v);
                return 1;
            }
            i++;
        } else if (!strcmp(a, "--threads") && v) {
            if (cvx_cli_parse_int(v, 1, 4096, &n)) {
                fprintf(stderr, "cogvideox make-model: --threads needs a positive integer, not '%s'\n", v);
                return 1;
            }
            p.threads = (int)n, i++;
        } else if ((!strcmp(a, "-o") || !strcmp(a, "--output")) && v) {
            out = v, i++;
        } else {
            CVX_CLI_UNKNOWN("make-model", a, "--preset", "--seed", "--dtype", "--threads", "-o", "--output", "--help");
            usage(stderr);
            return 1;
        }
    }
    if (!out) {
        fprintf(stderr, "cogvideox make-model: no output folder (-o DIR)\n");
        usage(stderr);
        return 1;
    }
    progress_state ps = {isatty(2), -1, cvx_time_seconds(), 0.0};
    p.progress = progress;
    p.user_data = &ps;
    cvx_error err = {0};
    cvx_status st = cvx_make_model(out, &p, &err);
    if (ps.tty) fputc('\n', stderr);
    if (st) {
        fprintf(stderr, "cogvideox make-model: %s\n", cvx_error_message(&err));
        return 2;
    }
    /* Re-open what was written: the folder must pass the same validation every loader applies. */
    cvx_model *m = NULL;
    st = cvx_model_open(&m, out, NULL, &err);
    if (st) {
        fprintf(stderr, "cogvideox make-model: the written folder does not validate: %s\n", cvx_error_message(&err));
        return 2;
    }
    int64_t params = 0;
    uint64_t bytes = 0;
    for (int i = 0; i < m->n_comp; i++)
        params += m->comp[i].n_params, bytes += m->comp[i].file_bytes;
    char hb[32];
    printf("wrote %s: preset %s, %s weights, seed %llu: %lld parameters, %s of weights in %.1f s\n", out, p.preset,
           cvx_dtype_name(p.dtype), (unsigned long long)p.seed, (long long)params, cvx_format_bytes(bytes, hb, sizeof hb),
           cvx_time_seconds() - ps.t0);
    cvx_model_close(m);
    return 0;
}
