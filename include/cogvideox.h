/* cogvideox — CogVideoX text-to-video inference in C.
 *
 * The public API. Conventions:
 *  - every fallible function returns a cvx_status (0 = ok, negative = error); the detailed message of the
 *    last failure lives on the object that failed (cvx_model_last_error(...)), never in a global;
 *  - every _open/_new has a _close/_free that accepts NULL; whoever creates frees;
 *  - callbacks always come with a void *user_data;
 *  - params structs come with a by-value _default() function and only ever gain fields at the end.
 */
#ifndef COGVIDEOX_H
#define COGVIDEOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* What the library exports: it is built with -fvisibility=hidden, and only the declarations of this header carry
 * CVX_API (default visibility); everything else stays inside libcogvideox. */
#if defined(__GNUC__) || defined(__clang__)
#define CVX_API __attribute__((visibility("default")))
#else
#define CVX_API
#endif

#define CVX_VERSION_MAJOR 0
#define CVX_VERSION_MINOR 1
#define CVX_VERSION_PATCH 0

/* Version of the library, "MAJOR.MINOR.PATCH". */
CVX_API const char *cvx_version(void);

/* ---- status codes ------------------------------------------------------------------------------------ */
/* XX(name, value, text) */
#define CVX_STATUS_MAP(XX)                                                                                  \
    XX(OK, 0, "ok")                                                                                         \
    XX(ERR_INVALID_ARGUMENT, -1, "invalid argument")                                                        \
    XX(ERR_OUT_OF_MEMORY, -2, "out of memory")                                                              \
    XX(ERR_IO, -3, "input/output error")                                                                    \
    XX(ERR_FORMAT, -4, "malformed data")                                                                    \
    XX(ERR_NOT_FOUND, -5, "not found")                                                                      \
    XX(ERR_SHAPE, -6, "unexpected tensor shape or dtype")                                                   \
    XX(ERR_UNSUPPORTED, -7, "not supported")                                                                \
    XX(ERR_CANCELLED, -8, "cancelled")                                                                      \
    XX(ERR_MISMATCH, -9, "result differs from the reference")                                               \
    XX(ERR_INTERNAL, -10, "internal error")

typedef enum {
#define CVX__STATUS_ENUM(name, value, text) CVX_##name = value,
    CVX_STATUS_MAP(CVX__STATUS_ENUM)
#undef CVX__STATUS_ENUM
} cvx_status;

/* "CVX_ERR_IO" etc.; never NULL. */
CVX_API const char *cvx_status_name(cvx_status status);
/* A short description of the code itself; the object's last-error message says what happened. */
CVX_API const char *cvx_status_text(cvx_status status);

/* ---- logging ----------------------------------------------------------------------------------------- */
typedef enum { CVX_LOG_ERROR = 0, CVX_LOG_WARN = 1, CVX_LOG_INFO = 2, CVX_LOG_DEBUG = 3 } cvx_log_level;
typedef void (*cvx_log_fn)(cvx_log_level level, const char *message, void *user_data);

/* A logger: where messages at or below `level` go. fn == NULL writes to stderr. */
typedef struct {
    cvx_log_fn fn;
    void *user_data;
    cvx_log_level level;
} cvx_logger;

CVX_API cvx_logger cvx_logger_default(void); /* stderr, CVX_LOG_WARN (CVX_LOG_LEVEL=error|warn|info|debug overrides) */

/* ---- CPU features and kernel paths ------------------------------------------------------------------- */
typedef enum {
    CVX_ISA_REF = 0,     /* portable C, always built */
    CVX_ISA_AVX2 = 1,    /* AVX2 + FMA + F16C */
    CVX_ISA_AVX512 = 2,  /* AVX-512 F/BW/VL/DQ */
    CVX_ISA_AVX512BF16 = 3, /* + AVX512-BF16 (vdpbf16ps) */
    CVX_ISA_AMX = 4,     /* + AMX-BF16 tiles */
    CVX_ISA_COUNT
} cvx_isa;

typedef struct {
    char vendor[16];
    char brand[64];
    int sse42, avx, avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16, avx512_vnni, avx_vnni;
    int amx_tile, amx_bf16, amx_int8;
    int os_avx;      /* XCR0 enables the YMM state */
    int os_avx512;   /* XCR0 enables the opmask/ZMM states */
    int os_amx;      /* XCR0 enables the tile states (XTILECFG/XTILEDATA) */
    int amx_permitted; /* Linux granted XFEATURE_XTILEDATA to this process (arch_prctl) */
    int logical_cpus;
} cvx_cpu_info;

/* Detects the CPU once (thread-safe) and returns the cached result. */
CVX_API const cvx_cpu_info *cvx_cpu_get(void);
/* The best path this CPU and OS support. */
CVX_API cvx_isa cvx_isa_best(void);
/* The path the kernels use: the best one, or CVX_FORCE_ISA=ref|avx2|avx512|avx512bf16|amx when it is set
 * to a path the machine supports (a path it does not support is refused with a warning, best is used). */
CVX_API cvx_isa cvx_isa_active(void);
CVX_API const char *cvx_isa_name(cvx_isa isa);
/* Parses "ref", "avx2", ... ; returns -1 for an unknown name. */
CVX_API int cvx_isa_from_name(const char *name);
/* Whether the machine can run that path (CPU + OS support). */
CVX_API int cvx_isa_supported(cvx_isa isa);

/* ---- engine: a model folder opened once -------------------------------------------------------------------- */
typedef struct cvx_engine cvx_engine;

typedef struct {
    int threads;       /* worker threads for the math; <= 0: all cores */
    cvx_logger logger; /* where the engine logs (stage timings at CVX_LOG_INFO) */
} cvx_engine_params;

CVX_API cvx_engine_params cvx_engine_params_default(void);

/* Opens a diffusers CogVideoX pipeline folder (model_index.json + tokenizer/, text_encoder/, transformer/, vae/,
 * scheduler/): validates every config and every tensor's name, shape and dtype, and maps the weights. Nothing is
 * computed yet. On failure *out is NULL and, when err_buf is given, the message is written there. */
CVX_API cvx_status cvx_engine_open(cvx_engine **out, const char *model_dir, const cvx_engine_params *params,
                                   char *err_buf, size_t err_buf_size);
CVX_API void cvx_engine_close(cvx_engine *engine);
/* The message of the engine's last failure ("" if none). */
CVX_API const char *cvx_engine_last_error(const cvx_engine *engine);

/* ---- what an engine serves: its model, the model's defaults and the limits of a generation ----------------------
 * One source for every front end: the CLI's validation and help, the service's Tool/Detail and Run (and through
 * them the web page). cvx_generate refuses what is outside these limits with the same numbers. */
typedef enum {
    CVX_WEIGHTS_UNKNOWN = 0,   /* no make-model marker nor its seed-0 draws, and not the shapes of a published model */
    CVX_WEIGHTS_RANDOM = 1,    /* made by `cogvideox make-model` (its marker file, or its seed-0 draws): random
                                * weights, noise videos */
    CVX_WEIGHTS_CHECKPOINT = 2 /* no make-model marker nor its seed-0 draws, and the shapes of a published model
                                * (the weights themselves are not compared with the hub's) */
} cvx_weights_kind;

/* "unknown", "random", "checkpoint". */
CVX_API const char *cvx_weights_kind_name(cvx_weights_kind kind);

typedef struct {
    /* what a generation uses when the field is left at 0 (frames, height, width) or at cvx_generate_params_default() */
    int default_steps;              /* 50 */
    float default_guidance_scale;   /* 6.0 */
    uint64_t default_seed;          /* 123456 */
    int default_frames;             /* the transformer config's sample_frames (49 for the 2b, 9 for the tiny test
                                     * model), as diffusers' CogVideoXPipeline; 49 without an engine */
    int default_height, default_width; /* the transformer's sample size × the VAE's 8 (480 × 720 for the 2b) */
    int default_fps;                /* 8 */
    char default_scheduler[8];      /* the folder's scheduler: "ddim" (the 2b) or "dpm" (the 5b); "ddim" without an
                                     * engine */
    /* the limits, inclusive */
    int min_steps, max_steps;       /* 1, 1000 */
    float min_guidance_scale, max_guidance_scale; /* 0, 100 */
    int min_frames, max_frames, frames_step; /* 5, 49, 4: frames = min_frames + k · frames_step (4N+1) */
    int min_size, max_size, size_multiple;   /* 16, 2048, 16: height and width */
    int min_fps, max_fps;           /* 1, 120 */
    /* the model ("" and CVX_WEIGHTS_UNKNOWN without an engine) */
    char model_name[256];           /* the folder's name, e.g. "cogvideox-2b" or "tiny" */
    char model_variant[32];         /* "CogVideoX-2b" / "CogVideoX-5b" when the transformer has that model's shapes,
                                     * else "custom" */
    cvx_weights_kind weights;
    char weights_origin[160];       /* in words: "random weights from cogvideox make-model --preset tiny (seed 0)",
                                     * "not made by make-model; the shapes of CogVideoX-2b", ... */
    /* what the model generates from: "t2v" (text, and a video with cvx_generate_params.video: any model whose
     * transformer maps its latent channels to themselves) or "i2v" (text and a first image: in_channels =
     * 2 × out_channels, CogVideoX-5b-I2V); "t2v" without an engine */
    char kind[8];
    int has_text_encoder;           /* 0: model_index.json has tokenizer/text_encoder [null, null]; a generation then
                                     * needs prompt_embeds (1 without an engine) */
} cvx_model_info;

/* Fills *out. engine NULL: the limits and the CogVideoX-2b defaults, for checks made before a model is opened
 * (the engine's own values may differ only in the defaults and the model fields). */
CVX_API cvx_status cvx_engine_info(const cvx_engine *engine, cvx_model_info *out);

/* The file `cogvideox make-model` writes into every folder it makes (its weights are random); cvx_engine_info
 * reports such a folder as CVX_WEIGHTS_RANDOM. */
#define CVX_RANDOM_WEIGHTS_MARKER "cogvideox_random_weights.json"

/* ---- output files ------------------------------------------------------------------------------------------
 * cvx_generate writes output_path (H.264 MP4), preview_path (animated WebP) and frames_dir (PNG) through writers
 * that live in libcogvideox-media (FFmpeg), so that a program that only takes the frames from cvx_video links no
 * FFmpeg. A program that writes files links libcogvideox-media too (pkg-config cogvideox-media) and calls
 * cvx_media_enable() (cogvideox_media.h) once; without writers, cvx_generate refuses those fields before any work
 * (CVX_ERR_UNSUPPORTED). */
typedef struct cvx_media_writers cvx_media_writers;
/* Hands the engine its file writers (what cvx_media_enable does); NULL takes them back. Process-wide. */
CVX_API void cvx_engine_use_writers(const cvx_media_writers *writers);

/* ---- one generation -------------------------------------------------------------------------------------- */
typedef enum { CVX_PRECISION_FP32 = 0, CVX_PRECISION_BF16 = 1 } cvx_precision;
/* The precision generations should use here, one rule for every front end (generate, serve): bf16 where the
 * kernel path in use (cvx_isa_active(), so CVX_FORCE_ISA counts) multiplies bf16 natively (AVX512-BF16 dot
 * products or AMX tiles), fp32 elsewhere. cvx_generate_params_default() stays fp32, the reference path. */
CVX_API cvx_precision cvx_precision_default(void);
/* Whether the kernel path in use runs p natively: fp32 always, bf16 on avx512bf16 and amx. Elsewhere bf16 runs
 * through an emulated path that is slower than fp32, which the front ends refuse. */
CVX_API int cvx_precision_native(cvx_precision p);
/* "fp32", "bf16" ("?" for another value). */
CVX_API const char *cvx_precision_name(cvx_precision p);
/* Parses "fp32" or "bf16"; returns -1 for anything else. */
CVX_API int cvx_precision_from_name(const char *name);
typedef enum { CVX_NOISE_F32 = 0, CVX_NOISE_F16 = 1 } cvx_noise_dtype;
typedef enum {
    CVX_PHASE_ENCODE = 0, /* tokenizer + T5 (prompt and negative prompt) */
    CVX_PHASE_DENOISE,    /* the transformer loop: step of steps */
    CVX_PHASE_DECODE,     /* VAE */
    CVX_PHASE_WRITE       /* MP4 / PNG output */
} cvx_phase;

typedef struct {
    cvx_phase phase;
    int step, steps;         /* CVX_PHASE_DENOISE: steps done so far (0..steps) */
    double fraction;         /* of the whole generation's time, 0..1, never decreasing: elapsed / (elapsed +
                              * remaining) once a rate is measured, a work estimate per stage before */
    double elapsed_seconds;  /* since the generation started */
    double remaining_seconds; /* estimate; < 0 while unknown. From measured rates: the seconds per denoising step
                              * so far, the decoder's seconds per frame batch once one is done (before that its
                              * work relative to a step, at the measured step rate), the writer's per frame */
    const char *label;       /* the stage in words: "encoding the prompt", "denoising", "decoding the video",
                              * "writing the video" (cvx_phase_label) */
    int done, total;         /* units of the phase: steps, VAE frame batches, frames written; 0/0 for the encode */
} cvx_progress;

/* "encoding the prompt", "denoising", "decoding the video", "writing the video"; "?" for another value. */
CVX_API const char *cvx_phase_label(cvx_phase phase);

typedef void (*cvx_progress_fn)(const cvx_progress *progress, void *user_data);
/* Polled between transformer blocks and between VAE batches: return non-zero to cancel. */
typedef int (*cvx_cancel_fn)(void *user_data);
/* Called after every completed denoising step with the state needed to resume from it (an opaque, versioned
 * blob: latents, scheduler state, generator state, and a digest of the parameters it belongs to). Store it
 * atomically; returning an error fails the generation. */
typedef cvx_status (*cvx_checkpoint_fn)(const void *state, size_t size, int step, int steps, void *user_data);

/* TeaCache step skipping (ali-vilab/TeaCache, eval/teacache/experiments/cogvideox.py): steps whose time
 * embedding moved little since the last computed step skip the 30 transformer blocks and reuse that step's
 * residual; only the output head runs. The first and the last step always run. Off by default (the reference
 * computation). The skip pattern depends on the weights: the published coefficients are fitted to the real
 * CogVideoX checkpoints, and on random-weight models the 2b polynomial is negative (only the first and the last
 * step run). */
typedef enum { CVX_CACHE_OFF = 0, CVX_CACHE_TEACACHE = 1 } cvx_cache_mode;

typedef struct {
    cvx_cache_mode mode;     /* CVX_CACHE_OFF */
    double threshold;        /* rel_l1_thresh: 0.1 published "slow" (~1.3-1.5x), 0.2 "fast" (~2x, visibly worse) */
    int has_coefficients;    /* 0: the published set for the model (2b sincos / 5b rotary positions) */
    double coefficients[5];  /* rescaling polynomial, highest power first as numpy's poly1d and the string form's
                              * C4,C3,C2,C1,C0: coefficients[0]·x⁴ + coefficients[1]·x³ + ... + coefficients[4] */
} cvx_cache_params;

/* Parses the string form every front end takes: "off" or "none", or "teacache[:THRESHOLD[:C4,C3,C2,C1,C0]]"
 * (threshold default 0.1; five finite coefficients, highest power first; default the model's published set).
 * Mode names are case-insensitive. On failure returns CVX_ERR_INVALID_ARGUMENT, leaves *out unchanged and writes
 * a message to err_buf (when given). */
CVX_API cvx_status cvx_cache_parse(const char *spec, cvx_cache_params *out, char *err_buf,
                                   size_t err_buf_size);
/* The canonical string of c ("off", "teacache:0.1", "teacache:0.2:-31.0658903,..."), which cvx_cache_parse reads
 * back to the same values. Returns the length snprintf would write. */
CVX_API int cvx_cache_format(const cvx_cache_params *c, char *buf, size_t size);

typedef struct {
    const char *prompt;
    const char *negative_prompt; /* "" */
    int steps;                   /* 50 */
    float guidance_scale;        /* 6.0 */
    uint64_t seed;               /* 123456; torch's CPU generator (the low 32 bits seed MT19937, as torch) */
    int num_frames;              /* 0: the model's default (cvx_engine_info: sample_frames, 49 for the 2b); 4N+1
                                  * from 5 to 49 */
    int height, width;           /* 0: the transformer config's sample size × 8 (480×720 for the 2b) */
    int fps;                     /* 8 */
    cvx_precision precision;     /* CVX_PRECISION_FP32 */
    cvx_noise_dtype noise_dtype; /* CVX_NOISE_F32 (f16 = the fp16 pipeline's native draw) */
    int use_dynamic_cfg;         /* 0 */
    const char *scheduler;       /* NULL: the folder's; "ddim" or "dpm" overrides */
    const char *output_path;     /* MP4 to write, or NULL */
    const char *frames_dir;      /* PNG frames DIR/00000.png ..., or NULL */
    cvx_progress_fn progress;
    void *progress_user_data;
    cvx_cancel_fn should_cancel;
    void *cancel_user_data;
    cvx_checkpoint_fn checkpoint; /* NULL: no checkpoints */
    void *checkpoint_user_data;
    /* A blob a checkpoint callback received for the same parameters: the generation continues after that step
     * and produces exactly the video an uninterrupted run would. A blob for other parameters is refused. */
    const void *resume_state;
    size_t resume_state_size;
    const char *preview_path;    /* an animated WebP preview to write, or NULL */
    /* Step skipping (off). With a cache the checkpoint blobs also hold its state (the residual of the last
     * computed step: B·S·D floats, ≈ 273 MB at 49 × 480 × 720 with guidance), and a blob resumes only a
     * generation with the same cache settings. */
    cvx_cache_params cache;
    /* Image-to-video (CogVideoXImageToVideoPipeline; an "i2v" model requires it, others refuse it): the first
     * frame, RGB [image_height, image_width, 3] uint8, exactly height × width (it is not resized: bring it to the
     * size first). It is VAE-encoded, its latent sampled with the run's generator (before the initial noise),
     * scaled and padded with zero latent frames, and conditions every step. */
    const uint8_t *image;
    int image_width, image_height;
    /* Video-to-video (CogVideoXVideoToVideoPipeline; "t2v" models): the input frames, RGB
     * [video_frames, video_height, video_width, 3] uint8, exactly height × width; video_frames = 4k+1 from 9 to
     * max_frames (the VAE encodes 8-frame batches) gives the output's length (num_frames must be 0 or equal).
     * strength (0..1, default 0.8) keeps the last int(steps · strength) timesteps of the schedule: the encoded
     * video gets the noise of the first kept one (scheduler.add_noise). */
    const uint8_t *video;
    int video_frames, video_width, video_height;
    double strength; /* a double, as the pipeline's Python float: int(steps · strength) truncates */
    /* Precomputed text embeddings instead of the prompt (diffusers' prompt_embeds / negative_prompt_embeds): F32
     * [1, embeds_length, embeds_dim] each, embeds_length = the transformer's max_text_seq_length with sincos or
     * learned positions (any length with rope alone), embeds_dim = its text_embed_dim. negative_prompt_embeds is
     * required with guidance (> 1). prompt and negative_prompt are then only recorded in the outputs' tags. The
     * only way to run a folder without a text encoder. */
    const float *prompt_embeds, *negative_prompt_embeds;
    int embeds_length, embeds_dim;
} cvx_generate_params;

CVX_API cvx_generate_params cvx_generate_params_default(void);

/* What a generation produced. Frames are owned by the result: free with cvx_video_free. */
typedef struct {
    int num_frames, height, width, fps;
    uint8_t *frames; /* [num_frames, height, width, 3] RGB */
    double seconds[4]; /* wall time per phase (cvx_phase order) */
    uint64_t seed;
    /* The 0-based indices of the denoising steps whose transformer ran its blocks, ascending (every step without
     * a cache; a resumed generation includes the steps before the resume point, from its checkpoint). */
    int *computed_steps;
    int num_computed_steps;
    /* SHA-256 (hex) of the final latents' f32 bytes before the VAE: the same for one process and for several */
    char latents_sha256[65];
    /* Processes that computed it (mpirun -np N; 1 otherwise) and the bytes this one sent to the others. Only the
     * first process (rank 0) decodes and writes: on the others frames is NULL and num_frames 0. */
    int ranks, rank;
    uint64_t comm_bytes;
    double comm_seconds; /* of this generation in the processes' collectives (transfers and waits) */
    /* the same of the denoising alone (the per-step exchanges; without the text embeddings' broadcast) */
    uint64_t denoise_comm_bytes;
    double denoise_comm_seconds;
} cvx_video;

/* Runs one generation. Stages run one after another and each releases its memory before the next starts.
 * Returns CVX_ERR_CANCELLED (and writes no output file) when should_cancel asked for it. `out` may be NULL. */
CVX_API cvx_status cvx_generate(cvx_engine *engine, const cvx_generate_params *params, cvx_video *out);
CVX_API void cvx_video_free(cvx_video *video);

#ifdef __cplusplus
}
#endif
#endif /* COGVIDEOX_H */
