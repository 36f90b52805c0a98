/* cogvideox generate: prompt (or prompt embeddings), and an image (image-to-video) or a video (video-to-video), in;
 * MP4 (and/or PNG frames) out.
 * Exit codes: 0 ok, 1 bad arguments, 2 model or I/O error, 130 cancelled (SIGINT/SIGTERM cancel cleanly: the
 * engine stops within one transformer block and removes partial files). */
#include <jansson.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli/cli.h"
#include "cogvideox.h"
#include "core/dist.h"
#include "core/tensor.h"
#include "io/safetensors.h"
#include "media/frame_reader.h"

static volatile sig_atomic_t g_interrupted = 0;
static void on_signal(int sig) { g_interrupted = sig; }
static int should_cancel(void *user_data) { return g_interrupted != 0; }

typedef struct {
    int quiet, tty;
    int last_percent;
    cvx_phase last_phase;
    int last_done;
    double last_draw;
} progress_state;

static void fmt_seconds(double s, char *buf, size_t size) {
    if (s < 0) snprintf(buf, size, "?");
    else if (s < 60) snprintf(buf, size, "%.0fs", s);
    else if (s < 3600) snprintf(buf, size, "%dm%02ds", (int)s / 60, (int)s % 60);
    else snprintf(buf, size, "%dh%02dm", (int)s / 3600, ((int)s % 3600) / 60);
}

/* Every stage is named ("decoding the video 3/7"), the remaining time comes from the engine's measured rates. */
static void on_progress(const cvx_progress *p, void *user_data) {
    progress_state *ps = user_data;
    if (ps->quiet) return;
    char el[32], rem[32], units[48] = "";
    fmt_seconds(p->elapsed_seconds, el, sizeof el);
    fmt_seconds(p->remaining_seconds, rem, sizeof rem);
    int percent = (int)(p->fraction * 100.0);
    const char *label = p->label ? p->label : "?";
    if (p->total > 0) {
        if (p->phase == CVX_PHASE_DENOISE) snprintf(units, sizeof units, " step %d/%d", p->done, p->total);
        else if (p->phase == CVX_PHASE_DECODE) snprintf(units, sizeof units, " batch %d/%d", p->done, p->total);
    }
    int changed = p->phase != ps->last_phase || p->done != ps->last_done;
    if (ps->tty) {
        /* at most ~10 redraws a second, but every stage change and the end are drawn */
        double now = p->elapsed_seconds;
        if (!changed && percent == ps->last_percent) return;
        if (!changed && now - ps->last_draw < 0.1 && p->fraction < 1) return;
        ps->last_draw = now;
        int width = 30, filled = (int)(p->fraction * width);
        char bar[64];
        for (int i = 0; i < width; i++) bar[i] = i < filled ? '#' : '.';
        bar[width] = '\0';
        fprintf(stderr, "\r[%s] %3d%% %s%s  elapsed %s  left %s\033[K", bar, percent, label, units, el, rem);
        fflush(stderr);
    } else {
        /* Plain lines: one per stage change, denoising step and decoder batch. */
        if (!changed) return;
        fprintf(stderr, "%3d%% %s%s elapsed %s left %s\n", percent, label, units, el, rem);
    }
    ps->last_phase = p->phase;
    ps->last_done = p->done;
    ps->last_percent = percent;
}

static void usage(FILE *f) {
    cvx_model_info I; /* the defaults and limits every front end uses (cvx_engine_info) */
    cvx_engine_info(NULL, &I);
    fprintf(f,
            "usage: cogvideox generate -m MODEL_DIR -p PROMPT [options]\n"
            "  -m, --model DIR            diffusers CogVideoX folder\n"
            "  -p, --prompt TEXT          what to generate\n"
            "      --embeddings FILE      precomputed text embeddings instead of -p (the only way for a folder\n"
            "                             without a text encoder): a .safetensors with F32 prompt_embeds and\n"
            "                             negative_prompt_embeds [1, L, D], as `cogvideox encode --out FILE\n"
            "                             \"prompt\" \"negative\"` writes them (diffusers' prompt_embeds arguments)\n"
            "      --image FILE           image-to-video (an i2v model, CogVideoX-5b-I2V): the first frame; PNG,\n"
            "                             JPEG, WebP... of exactly the video's size (it is not resized); --frames\n"
            "                             sets the video's length\n"
            "      --video FILE|DIR       video-to-video: an MP4/WebM/... file or a folder of PNG frames (name\n"
            "                             order) of the video's size; --frames N takes its first N frames (default:\n"
            "                             all, or the longest 4k+1 start up to the model's limit)\n"
            "      --strength S           video-to-video: 0..1, how much of the schedule runs (default 0.8):\n"
            "                             the last int(steps x S) steps, from the input with that much noise\n"
            "  -n, --negative-prompt TEXT (default \"\")\n"
            "  -o, --output FILE.mp4      H.264 MP4 to write (default output.mp4)\n"
            "      --frames-dir DIR       also write the frames as DIR/00000.png, 00001.png, ...\n"
            "      --preview FILE.webp    also write an animated WebP preview\n"
            "      --steps N              denoising steps, %d to %d (default %d)\n"
            "      --guidance G, --scale G  classifier-free guidance scale, %g to %g (default %.1f)\n"
            "      --seed N|random        (default %llu; random or -1: a new seed, printed and in --json)\n"
            "      --frames N             %dk+1 from %d to %d (default: the model's, %d for the 2b)\n"
            "      --height H, --width W  multiples of %d from %d to %d (default: the --image/--video's size, else\n"
            "                             the model's sample size, %dx%d for the 2b)\n"
            "      --fps N                %d to %d (default %d)\n"
            "      --scheduler ddim|dpm   (default: the model folder's)\n"
            "      --dynamic-cfg          cosine guidance schedule (use_dynamic_cfg)\n"
            "      --precision auto|fp32|bf16  matrix products in bf16 (f32 accumulation; norms, softmax,\n"
            "                             residuals and the VAE stay f32) or fp32, the reference path that the\n"
            "                             golden tests check; auto (default, here: %s) = bf16 wherever the\n"
            "                             kernels have bf16 dot products or AMX, else fp32; bf16 on a CPU\n"
            "                             without them is refused (its emulation is slower than fp32)\n"
            "      --noise-dtype f32|f16  initial-noise draw (f16 = the fp16 GPU pipeline's draw)\n"
            "      --cache SPEC           step skipping: off (default) or teacache[:THRESHOLD[:C4,C3,C2,C1,C0]]\n"
            "                             (TeaCache: steps whose time embedding changed little reuse the last\n"
            "                             computed step's transformer residual; threshold 0.1 (default) is the\n"
            "                             published \"slow\" setting, 0.2 \"fast\" (visibly worse); coefficients,\n"
            "                             highest power first, default to the published set for the model)\n"
            "      --overwrite            replace an existing output (MP4, preview, PNG frames); without it an\n"
            "                             existing one is refused before any work (it is replaced only when the\n"
            "                             generation succeeds)\n"
            "      --threads N            (default: all cores)\n"
            "  -q, --quiet                no progress output\n"
            "      --json                 print a JSON summary on stdout (computed_steps: the 0-based steps\n"
            "                             whose transformer ran; latents_sha256: SHA-256 of the final latents;\n"
            "                             ranks, comm_bytes: processes and bytes sent, see below)\n"
            "several processes: mpirun -np N cogvideox generate ... runs one video over N processes (machines):\n"
            "the CFG halves on two halves of them, each half splitting the tokens over N/2 (sequence parallel);\n"
            "N must be 1 or even and N/2 must divide the model's attention heads (without guidance N must divide\n"
            "them); the VAE decodes a band of rows on each. The latents are bit-identical to one process's;\n"
            "rank 0 prints and writes the outputs.\n"
            "options take their value as --flag value or --flag=value. Exit codes: 0 ok, 1 bad arguments, 2 a model,\n"
            "file or I/O failure, 130 interrupted (no partial file is left).\n"
            "example: cogvideox generate -m models/tiny -p \"a red fox in the snow\" -o fox.mp4 --steps 20 --seed random\n",
            I.min_steps, I.max_steps, I.default_steps, (double)I.min_guidance_scale, (double)I.max_guidance_scale,
            (double)I.default_guidance_scale, (unsigned long long)I.default_seed, I.frames_step, I.min_frames,
            I.max_frames, I.default_frames, I.size_multiple, I.min_size, I.max_size, I.default_height, I.default_width,
            I.min_fps, I.max_fps, I.default_fps, cvx_precision_name(cvx_precision_default()));
}

/* --embeddings FILE: F32 "prompt_embeds" and (optional) "negative_prompt_embeds", [1, L, D] each. Returns the exit
 * code (0, or 2 after the message). */
static int load_embeddings(const char *path, float **pe, float **ne, int *L, int *D) {
    cvx_error err;
    cvx_error_clear(&err);
    cvx_safetensors *st = NULL;
    if (cvx_safetensors_open(&st, path, &err) != CVX_OK) {
        fprintf(stderr, "cogvideox generate: --embeddings %s\n", cvx_error_message(&err));
        return 2;
    }
    static const char *const names[2] = {"prompt_embeds", "negative_prompt_embeds"};
    float **outs[2] = {pe, ne};
    int rc = 0;
    for (int k = 0; k < 2 && !rc; k++) {
        const cvx_st_tensor *t = cvx_safetensors_find(st, names[k]);
        if (!t) {
            if (k == 0) {
                fprintf(stderr, "cogvideox generate: --embeddings %s: no \"prompt_embeds\" tensor (cogvideox encode "
                        "--out FILE \"prompt\" \"negative\" writes one)\n", path);
                rc = 2;
            }
            continue;
        }
        if (t->dtype != CVX_DTYPE_F32 || t->ndim != 3 || t->shape[0] != 1 || t->shape[1] < 1 || t->shape[2] < 1 ||
            t->shape[1] > 65536 || t->shape[2] > 65536 ||
            (k == 1 && (t->shape[1] != *L || t->shape[2] != *D))) {
            char shp[96];
            fprintf(stderr, "cogvideox generate: --embeddings %s: \"%s\" is %s %s; F32 [1, L, D]%s is needed\n",
                    path, names[k], cvx_dtype_name(t->dtype), cvx_shape_str(t->ndim, t->shape, shp, sizeof shp),
                    k == 1 ? " of prompt_embeds' shape" : "");
            rc = 2;
            continue;
        }
        *L = (int)t->shape[1], *D = (int)t->shape[2];
        cvx_tensor v = cvx_st_view(t);
        if (!(*outs[k] = malloc(sizeof(float) * (size_t)(*L) * (size_t)(*D))) || cvx_tensor_to_f32(&v, *outs[k]) != 0) {
            fprintf(stderr, "cogvideox generate: --embeddings %s: out of memory\n", path);
            rc = 2;
        }
    }
    cvx_safetensors_close(st);
    return rc;
}

/* The input frames of --image / --video, read before any model is loaded. --frames N takes the first N frames of a
 * video; without it, all of them when their count is one the model can make (4k+1 up to max_frames), else the
 * longest such start (said on stderr). Returns the exit code (0, 1 for a video too short, 2 unreadable). */
static int read_inputs(const char *image, const char *video, int quiet, const cvx_model_info *I, cvx_frames *in,
                       cvx_generate_params *p) {
    cvx_error err;
    cvx_error_clear(&err);
    if (image) {
        if (cvx_frames_read_image(image, in, &err) != CVX_OK) {
            fprintf(stderr, "cogvideox generate: --image %s\n", cvx_error_message(&err));
            return 2;
        }
        p->image = in->rgb, p->image_width = in->width, p->image_height = in->height;
    } else if (video) {
        if (cvx_frames_read_video(video, p->num_frames, in, &err) != CVX_OK) {
            fprintf(stderr, "cogvideox generate: --video %s\n", cvx_error_message(&err));
            return 2;
        }
        const int min = 2 * I->frames_step + 1; /* the VAE encodes 8-frame batches */
        if (p->num_frames && in->frames < p->num_frames) {
            fprintf(stderr, "cogvideox generate: --video %s has %d frames; --frames %d asks for more\n", video,
                    in->frames, p->num_frames);
            return 1;
        }
        if (in->frames < min) {
            fprintf(stderr, "cogvideox generate: --video %s has %d frames; video-to-video needs at least %d\n", video,
                    in->frames, min);
            return 1;
        }
        int n = in->frames > I->max_frames ? I->max_frames : in->frames;
        n -= (n - 1) % I->frames_step;
        if (n != in->frames && !quiet)
            fprintf(stderr, "cogvideox generate: --video %s: using its first %d of %d frames (%dk+1 up to %d; "
                    "--frames N picks another count)\n", video, n, in->frames, I->frames_step, I->max_frames);
        in->frames = n;
        p->video = in->rgb, p->video_frames = n, p->video_width = in->width, p->video_height = in->height;
        p->num_frames = 0;
    }
    /* the output's size defaults to the input's */
    if (in->rgb && !p->width) p->width = in->width;
    if (in->rgb && !p->height) p->height = in->height;
    return 0;
}

static int bad_arg(const char *fmt, const char *a, const char *b) {
    fprintf(stderr, "cogvideox generate: ");
    fprintf(stderr, fmt, a, b);
    fprintf(stderr, "\n");
    return 1;
}

int cvx_cmd_generate(int argc, char **argv) {
    cvx_generate_params p = cvx_generate_params_default();
    cvx_engine_params ep = cvx_engine_params_default();
    const char *model_dir = NULL;
    int quiet = 0, json = 0, have_prompt = 0, random_seed = 0, overwrite = 0;
    const char *image_path = NULL, *video_path = NULL, *embeddings_path = NULL;
    p.output_path = "output.mp4";
    p.precision = cvx_precision_default();
    cvx_model_info I; /* the limits (before a model is opened) */
    cvx_engine_info(NULL, &I);
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        const char *v = i + 1 < argc ? argv[i + 1] : NULL;
        long long n;
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(a, "--quiet") || !strcmp(a, "-q")) {
            quiet = 1;
        } else if (!strcmp(a, "--json")) {
            json = 1;
        } else if (!strcmp(a, "--dynamic-cfg")) {
            p.use_dynamic_cfg = 1;
        } else if (!strcmp(a, "--overwrite")) {
            overwrite = 1;
        } else if (!strcmp(a, "-m") || !strcmp(a, "--model")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            model_dir = argv[++i];
        } else if (!strcmp(a, "-p") || !strcmp(a, "--prompt")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            p.prompt = argv[++i];
            have_prompt = 1;
        } else if (!strcmp(a, "-n") || !strcmp(a, "--negative-prompt")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            p.negative_prompt = argv[++i];
        } else if (!strcmp(a, "-o") || !strcmp(a, "--output")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            p.output_path = argv[++i];
        } else if (!strcmp(a, "--image") || !strcmp(a, "--video") || !strcmp(a, "--embeddings")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            *(!strcmp(a, "--image") ? &image_path : !strcmp(a, "--video") ? &video_path : &embeddings_path) = argv[++i];
        } else if (!strcmp(a, "--strength")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            char *end;
            double sv = strtod(v, &end);
            if (!*v || *end || !(sv >= 0.0 && sv <= 1.0))
                return bad_arg("%s: '%s' is not a number from 0 to 1", a, v);
            p.strength = sv;
            i++;
        } else if (!strcmp(a, "--frames-dir")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            p.frames_dir = argv[++i];
        } else if (!strcmp(a, "--preview")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            p.preview_path = argv[++i];
        } else if (!strcmp(a, "--steps") || !strcmp(a, "--frames") || !strcmp(a, "--height") ||
                   !strcmp(a, "--width") || !strcmp(a, "--fps") || !strcmp(a, "--threads")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            if (cvx_cli_parse_int(v, 0, 1000000, &n) != 0) return bad_arg("%s: '%s' is not a non-negative integer", a, v);
            i++;
            /* the engine's limits (cvx_engine_info), checked here so that a bad value costs no model loading */
            char why[160] = "";
            if (!strcmp(a, "--steps") && (n < I.min_steps || n > I.max_steps))
                snprintf(why, sizeof why, "from %d to %d", I.min_steps, I.max_steps);
            else if (!strcmp(a, "--frames") && (n < I.min_frames || n > I.max_frames || (n - 1) % I.frames_step))
                snprintf(why, sizeof why, "%dk+1 from %d to %d (%d, %d, ..., %d)", I.frames_step, I.min_frames,
                         I.max_frames, I.min_frames, I.min_frames + I.frames_step, I.max_frames);
            else if ((!strcmp(a, "--height") || !strcmp(a, "--width")) &&
                     (n < I.min_size || n > I.max_size || n % I.size_multiple))
                snprintf(why, sizeof why, "a multiple of %d from %d to %d", I.size_multiple, I.min_size, I.max_size);
            else if (!strcmp(a, "--fps") && (n < I.min_fps || n > I.max_fps))
                snprintf(why, sizeof why, "from %d to %d", I.min_fps, I.max_fps);
            if (why[0]) {
                fprintf(stderr, "cogvideox generate: %s: %lld is out of range: %s\n", a, n, why);
                return 1;
            }
            if (!strcmp(a, "--steps")) p.steps = (int)n;
            else if (!strcmp(a, "--frames")) p.num_frames = (int)n;
            else if (!strcmp(a, "--height")) p.height = (int)n;
            else if (!strcmp(a, "--width")) p.width = (int)n;
            else if (!strcmp(a, "--fps")) p.fps = (int)n;
            else ep.threads = (int)n;
        } else if (!strcmp(a, "--seed")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            char *end;
            if (!strcmp(v, "random") || !strcmp(v, "-1")) {
                random_seed = 1;
            } else {
                unsigned long long s = strtoull(v, &end, 10);
                if (!*v || *end || *v == '-')
                    return bad_arg("%s: '%s' is not a non-negative integer (or random)", a, v);
                p.seed = s;
                random_seed = 0;
            }
            i++;
        } else if (!strcmp(a, "--guidance") || !strcmp(a, "--scale")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            char *end;
            double g = strtod(v, &end);
            if (!*v || *end || !(g >= I.min_guidance_scale && g <= I.max_guidance_scale)) {
                fprintf(stderr, "cogvideox generate: %s: '%s' is not a number from %g to %g\n", a, v,
                        (double)I.min_guidance_scale, (double)I.max_guidance_scale);
                return 1;
            }
            p.guidance_scale = (float)g;
            i++;
        } else if (!strcmp(a, "--scheduler")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            if (strcmp(v, "ddim") && strcmp(v, "dpm")) return bad_arg("%s: unknown scheduler '%s' (ddim or dpm)", a, v);
            p.scheduler = argv[++i];
        } else if (!strcmp(a, "--precision")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            int prec = !strcmp(v, "auto") ? (int)cvx_precision_default() : cvx_precision_from_name(v);
            if (prec < 0) return bad_arg("%s: unknown precision '%s' (auto, fp32 or bf16)", a, v);
            if (!cvx_precision_native((cvx_precision)prec)) {
                fprintf(stderr,
                        "cogvideox generate: --precision bf16 needs bf16 dot products (AVX512-BF16 or AMX); the "
                        "kernel path in use is %s, where emulated bf16 is slower than fp32: use --precision fp32 "
                        "or auto\n",
                        cvx_isa_name(cvx_isa_active()));
                return 1;
            }
            p.precision = (cvx_precision)prec;
            i++;
        } else if (!strcmp(a, "--cache")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            char msg[256];
            if (cvx_cache_parse(v, &p.cache, msg, sizeof msg) != CVX_OK) return bad_arg("--cache: %s%s", msg, "");
            i++;
        } else if (!strcmp(a, "--noise-dtype")) {
            if (!v) return bad_arg("%s needs a value%s", a, "");
            if (!strcmp(v, "f32")) p.noise_dtype = CVX_NOISE_F32;
            else if (!strcmp(v, "f16")) p.noise_dtype = CVX_NOISE_F16;
            else return bad_arg("%s: unknown noise dtype '%s' (f32 or f16)", a, v);
            i++;
        } else {
            static const char *const flags[] = {"--model", "--prompt", "--negative-prompt", "--output", "--frames-dir",
                                                "--preview", "--steps", "--guidance", "--scale", "--seed", "--frames",
                                                "--height", "--width", "--fps", "--scheduler", "--dynamic-cfg",
                                                "--precision", "--noise-dtype", "--cache", "--threads", "--quiet",
                                                "--json", "--overwrite", "--help", "--image", "--video",
                                                "--strength", "--embeddings"};
            const char *s = a[0] == '-' ? cvx_cli_suggest(a, flags, (int)(sizeof flags / sizeof flags[0])) : NULL;
            if (a[0] != '-')
                fprintf(stderr, "cogvideox generate: unexpected argument '%s' (the prompt goes after -p)\n", a);
            else
                fprintf(stderr, "cogvideox generate: unknown option '%s'%s%s%s\n", a, s ? " (did you mean " : "",
                        s ? s : "", s ? "?)" : "");
            usage(stderr);
            return 1;
        }
    }
    if (!model_dir) return bad_arg("-m MODEL_DIR is required%s%s", "", "");
    if (!have_prompt && !embeddings_path) return bad_arg("-p PROMPT (or --embeddings FILE) is required%s%s", "", "");
    if (image_path && video_path) return bad_arg("--image and --video: pick one%s%s", "", "");
    /* Under mpirun: one generation over every process (rank 0 reports, checks and writes the outputs). */
    if (cvx_cli_dist_init("generate")) return 1;
    cvx_error derr;
    cvx_error_clear(&derr);
    const cvx_dist *world = cvx_dist_world();
    const int rank = cvx_dist_rank(world);
    if (rank != 0) quiet = 1, json = 0;
    /* Every output is checked (its folder created) before the model is opened: not after hours of work. Rank 0
     * alone writes them, so it alone checks, and every rank takes its answer. */
    int32_t orc = 0;
    if (rank == 0) {
        if (p.output_path) orc = cvx_cli_check_output_file("generate", "-o", p.output_path, ".mp4", "an H.264 MP4");
        if (!orc && p.preview_path)
            orc = cvx_cli_check_output_file("generate", "--preview", p.preview_path, ".webp", "an animated WebP");
        if (!orc && p.frames_dir) orc = cvx_cli_check_output_dir("generate", "--frames-dir", p.frames_dir);
        /* an existing output is kept unless --overwrite (a repeated command must not throw away hours of work),
         * and with it replaced only when the generation succeeds, never silently */
        char first_frame[4200] = "";
        if (p.frames_dir) snprintf(first_frame, sizeof first_frame, "%s/00000.png", p.frames_dir);
        const char *existing[3] = {p.output_path, p.preview_path, p.frames_dir ? first_frame : NULL};
        const char *what[3] = {"-o", "--preview", "--frames-dir"};
        for (int k = 0; k < 3 && !orc; k++) {
            if (!existing[k] || access(existing[k], F_OK) != 0) continue;
            if (!overwrite) {
                fprintf(stderr, "cogvideox generate: %s %s: %s exists; add --overwrite to replace it\n", what[k],
                        k == 2 ? p.frames_dir : existing[k], k == 2 ? "a frame (00000.png)" : "the file");
                orc = 1;
            } else if (!quiet) {
                fprintf(stderr, "cogvideox generate: %s exists; it is replaced when the generation succeeds\n",
                        k == 2 ? p.frames_dir : existing[k]);
            }
        }
    }
    if (cvx_dist_bcast(world, &orc, sizeof orc, 0, &derr) != CVX_OK) orc = 2;
    if (orc) return orc;
    /* the model folder last: every output problem is named first, whatever -m says */
    if ((orc = cvx_cli_check_model_dir("generate", model_dir)) != 0) return orc;
    /* the inputs: read (and checked) before the model loads */
    cvx_frames in;
    memset(&in, 0, sizeof in);
    float *pe = NULL, *ne = NULL;
    if ((image_path || video_path) && (orc = read_inputs(image_path, video_path, quiet, &I, &in, &p)) != 0) {
        cvx_frames_free(&in);
        return orc;
    }
    if (embeddings_path) {
        if ((orc = load_embeddings(embeddings_path, &pe, &ne, &p.embeds_length, &p.embeds_dim)) != 0) {
            cvx_frames_free(&in);
            free(pe), free(ne);
            return orc;
        }
        p.prompt_embeds = pe, p.negative_prompt_embeds = ne;
        if (!have_prompt) p.prompt = NULL;
    }
    if (random_seed && rank == 0) {
        FILE *ur = fopen("/dev/urandom", "rb");
        uint64_t r = 0;
        if (!ur || fread(&r, sizeof r, 1, ur) != 1) r = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32);
        if (ur) fclose(ur);
        p.seed = r & 0xffffffffu; /* torch seeds MT19937 with the low 32 bits: the printed seed is the whole seed */
        if (!quiet) fprintf(stderr, "seed %llu\n", (unsigned long long)p.seed);
    }
    if (cvx_dist_bcast(world, &p.seed, sizeof p.seed, 0, &derr) != CVX_OK) { /* every rank: rank 0's seed */
        fprintf(stderr, "cogvideox generate: %s\n", derr.message);
        cvx_frames_free(&in);
        free(pe), free(ne);
        return 2;
    }

    progress_state ps = {quiet, isatty(STDERR_FILENO), -1, (cvx_phase)-1, -1, -1.0};
    p.progress = on_progress;
    p.progress_user_data = &ps;
    p.should_cancel = should_cancel;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    char err[1024] = "";
    cvx_engine *engine = NULL;
    cvx_status st = cvx_engine_open(&engine, model_dir, &ep, err, sizeof err);
    if (st != CVX_OK) {
        fprintf(stderr, "cogvideox generate: %s\n", err);
        cvx_frames_free(&in);
        free(pe), free(ne);
        return st == CVX_ERR_INVALID_ARGUMENT ? 1 : 2;
    }
    cvx_video video;
    memset(&video, 0, sizeof video);
    st = cvx_generate(engine, &p, &video);
    if (ps.tty && !quiet) fputc('\n', stderr);
    int rc = 0;
    if (st == CVX_ERR_CANCELLED) {
        fprintf(stderr, "cogvideox generate: cancelled\n");
        rc = 130;
    } else if (st != CVX_OK) {
        if (rank == 0) fprintf(stderr, "cogvideox generate: %s\n", cvx_engine_last_error(engine));
        rc = st == CVX_ERR_INVALID_ARGUMENT ? 1 : 2;
    } else {
        double total = video.seconds[0] + video.seconds[1] + video.seconds[2] + video.seconds[3];
        if (json) {
            json_t *j = json_pack("{s:s?, s:s?, s:I, s:i, s:i, s:i, s:i, s:s, s:{s:f, s:f, s:f, s:f, s:f}}", "output",
                                  p.output_path, "frames_dir", p.frames_dir, "seed", (json_int_t)video.seed, "frames",
                                  video.num_frames, "height", video.height, "width", video.width, "fps", video.fps,
                                  "precision", cvx_precision_name(p.precision), "seconds",
                                  "encode", video.seconds[0], "denoise", video.seconds[1], "decode", video.seconds[2],
                                  "write", video.seconds[3], "total", total);
            char cache[400];
            cvx_cache_format(&p.cache, cache, sizeof cache);
            json_t *steps = json_array();
            for (int k = 0; k < video.num_computed_steps; k++) json_array_append_new(steps, json_integer(video.computed_steps[k]));
            json_object_set_new(j, "cache", json_string(cache));
            /* what made this video: enough to generate it again */
            json_object_set_new(j, "preview", p.preview_path ? json_string(p.preview_path) : json_null());
            json_object_set_new(j, "prompt", p.prompt ? json_string(p.prompt) : json_null());
            json_object_set_new(j, "embeddings", embeddings_path ? json_string(embeddings_path) : json_null());
            json_object_set_new(j, "image", image_path ? json_string(image_path) : json_null());
            json_object_set_new(j, "video", video_path ? json_string(video_path) : json_null());
            if (video_path) json_object_set_new(j, "strength", json_real(p.strength));
            json_object_set_new(j, "negative_prompt", json_string(p.negative_prompt ? p.negative_prompt : ""));
            json_object_set_new(j, "steps", json_integer(p.steps));
            json_object_set_new(j, "guidance_scale", json_real(p.guidance_scale));
            cvx_model_info used;
            cvx_engine_info(engine, &used);
            /* the scheduler that ran: the flag's, else the folder's (as the MP4's tags say) */
            json_object_set_new(j, "scheduler", json_string(p.scheduler ? p.scheduler : used.default_scheduler));
            json_object_set_new(j, "dynamic_cfg", json_boolean(p.use_dynamic_cfg));
            json_object_set_new(j, "noise_dtype", json_string(p.noise_dtype == CVX_NOISE_F16 ? "f16" : "f32"));
            json_object_set_new(j, "model", json_string(model_dir));
            cvx_model_info mi;
            cvx_engine_info(engine, &mi);
            json_object_set_new(j, "model_name", json_string(mi.model_name));
            json_object_set_new(j, "weights", json_string(cvx_weights_kind_name(mi.weights)));
            json_object_set_new(j, "computed_steps", steps);
            json_object_set_new(j, "latents_sha256", json_string(video.latents_sha256));
            json_object_set_new(j, "ranks", json_integer(video.ranks > 0 ? video.ranks : 1));
            json_object_set_new(j, "comm_bytes", json_integer((json_int_t)video.comm_bytes));
            json_object_set_new(j, "comm_seconds", json_real(video.comm_seconds));
            char *s = json_dumps(j, JSON_INDENT(2));
            printf("%s\n", s ? s : "{}");
            free(s);
            json_decref(j);
        } else if (!quiet) {
            fprintf(stderr, "wrote %s%s%s: %d frames %dx%d at %d fps in %.1fs (encode %.1fs, denoise %.1fs, decode %.1fs, "
                    "write %.1fs)\n", p.output_path ? p.output_path : "", p.output_path && p.frames_dir ? " and " : "",
                    p.frames_dir ? p.frames_dir : "", video.num_frames, video.width, video.height, video.fps, total,
                    video.seconds[0], video.seconds[1], video.seconds[2], video.seconds[3]);
        }
    }
    cvx_video_free(&video);
    cvx_engine_close(engine);
    cvx_frames_free(&in);
    free(pe), free(ne);
    cvx_dist_finalize();
    return rc;
}
