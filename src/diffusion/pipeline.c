/* The engine: diffusers 0.30.3 CogVideoXPipeline.__call__ (text-to-video) from a model folder to frames and
 * files, in stages that each hold their weights only while they run:
 *
 *   tokenizer (226 ids) -> T5 encoder [prompt; negative] -> (T5 released)
 *   initial noise [1, F, C, H, W] from torch's CPU generator (seed) -> transformer + scheduler loop with CFG
 *   -> (transformer released) -> latents permuted and scaled by 1/scaling_factor -> VAE decode in frame batches
 *   -> (VAE released) -> uint8 frames (round half even) -> H.264 MP4 / PNG frames.
 *
 * validate() checks the parameters once and computes the generation's plan (sizes, latent geometry, token
 * counts, CFG) that every stage takes; the engine's lifecycle is engine.c, the resume blob checkpoint.c, and over
 * several processes (core/dist.h) the stages split their work as denoise.h, transformer.h and vae.h say.
 *
 * Dimension letters: F latent frames ((frames − 1)/4 + 1), C latent channels (16), H × W latent size (pixels / 8),
 * L text tokens (226), Dt text width (4096). */
#include "diffusion/pipeline.h"

#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/error.h"
#include "core/fs.h"
#include "core/half.h"
#include "core/log.h"
#include "core/sha256.h"
#include "core/threadpool.h"
#include "diffusion/checkpoint.h"
#include "diffusion/denoise.h"
#include "diffusion/engine.h"
#include "diffusion/rng.h"
#include "diffusion/scheduler.h"
#include "diffusion/transformer.h"
#include "io/model.h"
#include "media/video.h"
#include "text/t5.h"
#include "text/t5_tokenizer.h"
#include "vae/vae.h"

/* ---- one generation ---------------------------------------------------------------------------------------- */

enum { GEN_T2V = 0, GEN_I2V = 1, GEN_V2V = 2 };

/* What a generation is, computed once by validate() and taken by every stage. */
typedef struct {
    int frames, height, width; /* the video (frames: the model's default filled in) */
    int out_frames;            /* what the VAE decodes (4F - 3, or 4F for an even F) */
    int64_t F, C, H, W;        /* the latents [1, F, C, H, W] (C = the transformer's out_channels) */
    int64_t Ci;                /* image-to-video: the image latents' channels (in_channels − out_channels), else 0 */
    int mode;                  /* GEN_T2V, GEN_I2V (params.image), GEN_V2V (params.video) */
    int64_t L, N, S;           /* text tokens, video tokens, the joint sequence */
    int spatial;               /* the VAE's spatial factor */
    int cfg;                   /* classifier-free guidance (the batch [uncond; cond]) */
} gen_plan;

typedef struct {
    cvx_engine *e;
    const cvx_generate_params *p;
    const cvx_pipeline_tap *tap;
    double t0;
    /* progress model: the share of the total work of each phase, from a FLOP estimate, until rates are measured */
    double weight[4], base[4];
    cvx_phase phase;
    int steps;
    /* measured rates (remaining time): when the denoising started and from which step; the decoder's probe
     * estimate of the whole decode; when the decode started, its batches done; the writer's seconds per frame */
    double t_denoise, t_decode, decode_estimate, write_estimate;
    int step0, steps_done;
    int decode_done, decode_total;
    int frames_total, frames_written;
    double write_seconds;
    double last_fraction;
    int cancelled;
    /* when tapped: step_latents_after [N, latent numel], the transformer's input and output of every step
     * [N, Bm, F, C_in | C, H, W], the DPM draws [n_step_noise, latent numel] */
    float *step_latents, *step_in, *step_out, *step_noise;
    int64_t n_step_noise;
    int64_t first_step; /* V2V: the strength's cut of the schedule */
    int64_t latent_numel;
    int64_t n_timesteps;
    int64_t dims[4]; /* F, C, H, W of the latents */
    int cfg;         /* classifier-free guidance on (batch [uncond; cond]) */
    cvx_status tap_status;
    /* checkpoints */
    uint64_t params_hash;
    unsigned char *ckpt;     /* the blob being built, reused every step */
    size_t ckpt_size;
    cvx_status ckpt_status;
    /* step skipping */
    cvx_cache_params cache;  /* the settings with the coefficients resolved (has_coefficients = 1) when on */
    unsigned char *computed; /* [n_timesteps] 1 where the transformer ran its blocks */
    gen_plan plan;
    /* several processes: rank 0 reports, checkpoints, decodes and writes; while `collective` is set, every rank
     * polls for a cancel at the same points and rank 0's answer is broadcast */
    const cvx_dist *world;
    int rank, collective;
} gen_ctx;

cvx_status cvx_pipeline_checkpoint_latents(const void *state, size_t size, const float **latents, int64_t *n,
                                           int *step, int *steps, cvx_error *err) {
    cvx_ckpt_view v;
    cvx_status st = cvx_ckpt_read(state, size, "checkpoint", &v, err);
    if (st != CVX_OK) return st;
    *latents = (const float *)v.latents;
    *n = v.n;
    if (step) *step = (int)v.step;
    if (steps) *steps = (int)v.count;
    return CVX_OK;
}

const char *cvx_phase_label(cvx_phase phase) {
    static const char *const labels[] = {"encoding the prompt", "denoising", "decoding the video", "writing the video"};
    return (unsigned)phase < 4 ? labels[phase] : "?";
}

/* The writer's seconds for the frames still to come: its measured rate once a frame is written, else the prior. */
static double write_left(const gen_ctx *g) {
    int left = g->frames_total - g->frames_written;
    if (left < 0) left = 0;
    if (g->frames_written > 0) return g->write_seconds / g->frames_written * left;
    return g->frames_total > 0 ? g->write_estimate * left / g->frames_total : 0;
}

/* Remaining seconds from measured rates, < 0 while none is measured: the seconds per denoising step of this run,
 * the decoder's probe (the whole decode estimated from a small decode timed before the denoising) until a frame
 * batch is done, then the decoder's own seconds per batch, and the writer's seconds per frame. */
static double remaining(const gen_ctx *g, cvx_phase phase, double now) {
    double decode_left = g->decode_estimate;
    if (phase == CVX_PHASE_DECODE && g->decode_done > 0 && g->decode_total > 0)
        decode_left = (now - g->t_decode - g->write_seconds) / g->decode_done * (g->decode_total - g->decode_done);
    else if (phase > CVX_PHASE_DECODE)
        decode_left = 0;
    if (decode_left < 0) return -1;
    if (phase <= CVX_PHASE_DENOISE) {
        if (g->steps_done <= 0) return -1;
        double per_step = (now - g->t_denoise) / g->steps_done;
        return per_step * (g->steps - g->step0 - g->steps_done) + decode_left + write_left(g);
    }
    return decode_left + write_left(g);
}

static void report(gen_ctx *g, cvx_phase phase, double within, int step) {
    if (!g->p->progress || g->rank != 0) return;
    cvx_progress pr;
    memset(&pr, 0, sizeof pr);
    pr.phase = phase;
    pr.step = step;
    pr.steps = g->steps;
    pr.label = cvx_phase_label(phase);
    double now = cvx_time_seconds();
    pr.elapsed_seconds = now - g->t0;
    pr.remaining_seconds = remaining(g, phase, now);
    double f;
    if (pr.remaining_seconds >= 0)
        f = pr.elapsed_seconds / (pr.elapsed_seconds + pr.remaining_seconds > 1e-9 ? pr.elapsed_seconds + pr.remaining_seconds : 1e-9);
    else
        f = g->base[phase] + g->weight[phase] * (within < 0 ? 0 : within > 1 ? 1 : within);
    /* the last phase finished is the whole job; never backwards */
    if (phase == CVX_PHASE_WRITE && within >= 1) f = 1, pr.remaining_seconds = 0;
    if (f > 1) f = 1;
    if (f < g->last_fraction) f = g->last_fraction;
    g->last_fraction = f;
    pr.fraction = f;
    if (phase == CVX_PHASE_DENOISE) pr.done = step, pr.total = g->steps;
    else if (phase == CVX_PHASE_DECODE) pr.done = g->decode_done, pr.total = g->decode_total;
    else if (phase == CVX_PHASE_WRITE) pr.done = g->frames_written, pr.total = g->frames_total;
    g->p->progress(&pr, g->p->progress_user_data);
}

static int poll_cancel(void *user_data) {
    gen_ctx *g = user_data;
    int stop = g->ckpt_status != CVX_OK; /* stop: the caller could not store a checkpoint */
    if (!stop && g->rank == 0 && !g->cancelled && g->p->should_cancel && g->p->should_cancel(g->p->cancel_user_data))
        g->cancelled = 1;
    stop |= g->cancelled;
    if (g->collective && cvx_dist_size(g->world) > 1) { /* rank 0 decides for every rank */
        int32_t flag = stop;
        cvx_error err;
        if (cvx_dist_bcast(g->world, &flag, sizeof flag, 0, &err) != CVX_OK) flag = 1;
        if (flag && !stop) g->cancelled = 1;
        stop = flag != 0;
    }
    return stop;
}

static cvx_status tap(gen_ctx *g, const char *name, cvx_dtype dt, void *data, int ndim, const int64_t *shape) {
    if (!g->tap || !g->tap->fn) return CVX_OK;
    cvx_tensor t = cvx_tensor_view(dt, data, ndim, shape);
    return g->tap->fn(g->tap->user_data, name, &t);
}

static cvx_status validate(cvx_engine *e, const cvx_generate_params *p, int tap_on, gen_plan *plan) {
    memset(plan, 0, sizeof *plan);
    int *frames = &plan->frames, *height = &plan->height, *width = &plan->width;
    const cvx_model_info *I = &e->info;
    const cvx_model_component *tr = cvx_model_component_get(e->model, "transformer");
    const cvx_transformer_config *tcfg = &tr->cfg.transformer;
    if (!p->prompt && !p->prompt_embeds) return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "prompt is required");
    if (!p->prompt_embeds && !e->tokenizer)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "this model folder has no text encoder (model_index.json: tokenizer and text_encoder are "
                        "[null, null]): pass prompt embeddings (prompt_embeds; the CLI's --embeddings FILE)");
    if (p->prompt_embeds) {
        if (p->embeds_dim != tcfg->text_embed_dim || p->embeds_length < 1 || p->embeds_length > 65536)
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                            "prompt embeddings are [1, %d, %d]; this transformer takes [1, L, %lld]", p->embeds_length,
                            p->embeds_dim, (long long)tcfg->text_embed_dim);
        if ((!tcfg->use_rotary_positional_embeddings || tcfg->use_learned_positional_embeddings) &&
            p->embeds_length != tcfg->max_text_seq_length)
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                            "prompt embeddings have %d tokens; this transformer's position table needs "
                            "max_text_seq_length = %lld",
                            p->embeds_length, (long long)tcfg->max_text_seq_length);
        if (p->guidance_scale > 1.0f && !p->negative_prompt_embeds)
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                            "guidance scale %g > 1 needs negative prompt embeddings with the prompt embeddings",
                            (double)p->guidance_scale);
    } else if (p->negative_prompt_embeds) {
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "negative prompt embeddings need prompt embeddings");
    }
    /* what the model and the inputs ask for */
    const int i2v_model = tcfg->in_channels == 2 * tcfg->out_channels;
    if (tcfg->in_channels != tcfg->out_channels && !i2v_model)
        return cvx_fail(&e->err, CVX_ERR_UNSUPPORTED, "the transformer maps %lld channels to %lld: not a CogVideoX "
                        "text- or image-to-video model", (long long)tcfg->in_channels, (long long)tcfg->out_channels);
    if (p->image && p->video)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "an image and a video were both given: pick one");
    if (i2v_model && !p->image)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "this is an image-to-video model (in_channels %lld = noise + image latents): pass an image%s",
                        (long long)tcfg->in_channels, p->video ? " (video-to-video needs a text-to-video model)" : "");
    if (!i2v_model && p->image)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "this model generates from text (or a video); it takes no image: use an image-to-video model "
                        "such as CogVideoX-5b-I2V");
    plan->mode = p->image ? GEN_I2V : p->video ? GEN_V2V : GEN_T2V;
    if (plan->mode != GEN_T2V && p->noise_dtype != CVX_NOISE_F32)
        return cvx_fail(&e->err, CVX_ERR_UNSUPPORTED, "image- and video-to-video draw float32 noise only");
    if (p->video) {
        if (p->video_frames < 1 || (p->num_frames && p->num_frames != p->video_frames))
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                            "video-to-video makes as many frames as the input video has (%d); frames %d differs",
                            p->video_frames, p->num_frames);
        if (!(p->strength >= 0.0 && p->strength <= 1.0))
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "strength must be from 0 to 1, got %g", p->strength);
        if ((int64_t)((double)p->steps * p->strength) < 1)
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                            "strength %g keeps int(%d x %g) = 0 of the %d steps: raise the strength or the steps",
                            p->strength, p->steps, p->strength, p->steps);
    }
    if (p->steps < I->min_steps || p->steps > I->max_steps)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "steps must be from %d to %d, got %d", I->min_steps,
                        I->max_steps, p->steps);
    if (!isfinite(p->guidance_scale) || p->guidance_scale < I->min_guidance_scale ||
        p->guidance_scale > I->max_guidance_scale)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "guidance scale must be from %g to %g, got %g",
                        (double)I->min_guidance_scale, (double)I->max_guidance_scale, (double)p->guidance_scale);
    *frames = p->video ? p->video_frames : p->num_frames ? p->num_frames : I->default_frames;
    if (*frames < I->min_frames || *frames > I->max_frames || (*frames - 1) % I->frames_step != 0)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "frames must be %dk+1 from %d to %d (8k+1 is what the model card recommends), got %d",
                        I->frames_step, I->min_frames, I->max_frames, *frames);
    plan->spatial = 1 << (cvx_model_component_get(e->model, "vae")->cfg.vae.n_blocks - 1);
    *height = p->height ? p->height : I->default_height;
    *width = p->width ? p->width : I->default_width;
    /* the conditioning is taken at the video's size; the pipeline's VideoProcessor resizes (PIL Lanczos), this
     * engine refuses another size */
    if (p->image && (p->image_width != *width || p->image_height != *height))
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "the image is %dx%d, the video %dx%d (width x height): bring the image to that size first "
                        "(it is not resized)", p->image_width, p->image_height, *width, *height);
    if (p->video && (p->video_width != *width || p->video_height != *height))
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "the input video is %dx%d, the output %dx%d (width x height): bring the video to that size "
                        "first (it is not resized)", p->video_width, p->video_height, *width, *height);
    /* v0.30.3 CogVideoXPatchEmbed raises for a learned table (5b-I2V) at another size than the sample size */
    if (tcfg->use_learned_positional_embeddings &&
        (*height != tcfg->sample_height * plan->spatial || *width != tcfg->sample_width * plan->spatial))
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "this model's learned positional embedding (5b-I2V) makes only %lldx%lld videos (width x "
                        "height), not %dx%d", (long long)tcfg->sample_width * plan->spatial,
                        (long long)tcfg->sample_height * plan->spatial, *width, *height);
    if (p->video && *frames < 2 * I->frames_step + 1)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "video-to-video needs at least %d input frames (the VAE encodes batches of 8), got %d",
                        2 * I->frames_step + 1, *frames);
    int mult = I->size_multiple;
    if (*height < I->min_size || *width < I->min_size || *height % mult || *width % mult || *height > I->max_size ||
        *width > I->max_size)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                        "height and width must be multiples of %d from %d to %d, got %dx%d", mult, I->min_size,
                        I->max_size, *height, *width);
    if (p->fps < I->min_fps || p->fps > I->max_fps)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "fps must be from %d to %d, got %d", I->min_fps,
                        I->max_fps, p->fps);
    if ((p->output_path || p->preview_path || p->frames_dir) && !cvx__engine_writers())
        return cvx_fail(&e->err, CVX_ERR_UNSUPPORTED,
                        "writing %s needs libcogvideox-media: link it (pkg-config cogvideox-media) and call "
                        "cvx_media_enable() once",
                        p->output_path ? p->output_path : p->preview_path ? p->preview_path : p->frames_dir);
    if (p->precision != CVX_PRECISION_FP32 && p->precision != CVX_PRECISION_BF16)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "unknown precision %d (fp32 or bf16)", (int)p->precision);
    if (p->noise_dtype != CVX_NOISE_F32 && p->noise_dtype != CVX_NOISE_F16)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "unknown initial-noise dtype");
    if (p->scheduler && strcmp(p->scheduler, "ddim") && strcmp(p->scheduler, "dpm"))
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "unknown scheduler '%s' (ddim or dpm)", p->scheduler);
    if (!p->resume_state != !p->resume_state_size)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "resume state: a pointer and a size are both needed");
    const cvx_cache_params *c = &p->cache;
    if (c->mode != CVX_CACHE_OFF && c->mode != CVX_CACHE_TEACACHE)
        return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "unknown cache mode %d (off or teacache)", (int)c->mode);
    if (c->mode == CVX_CACHE_TEACACHE) {
        if (!isfinite(c->threshold) || c->threshold < 0)
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "teacache threshold %g must be finite and >= 0",
                            c->threshold);
        for (int i = 0; c->has_coefficients && i < 5; i++)
            if (!isfinite(c->coefficients[i]))
                return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "teacache coefficient %d is not finite", i + 1);
    }
    const int ranks = cvx_dist_size(cvx_dist_world());
    if (ranks > 1) {
        if (c->mode != CVX_CACHE_OFF)
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                            "step skipping (cache) does not run over several processes yet: use one process or no cache");
        if (tap_on)
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "the golden observer runs in one process only");
        cvx_error err;
        cvx_error_clear(&err);
        if (cvx_denoise_check_ranks(tr->cfg.transformer.num_attention_heads, p->guidance_scale > 1.0f, ranks, &err) != CVX_OK)
            return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "%s", err.message);
    }
    const cvx_model_component *vc = cvx_model_component_get(e->model, "vae");
    plan->L = p->prompt_embeds ? p->embeds_length : tr->cfg.transformer.max_text_seq_length;
    plan->F = (plan->frames - 1) / vc->cfg.vae.temporal_compression_ratio + 1;
    plan->C = tr->cfg.transformer.out_channels;
    plan->Ci = tr->cfg.transformer.in_channels - plan->C;
    plan->H = plan->height / plan->spatial, plan->W = plan->width / plan->spatial;
    plan->N = plan->F * (plan->H / tr->cfg.transformer.patch_size) * (plan->W / tr->cfg.transformer.patch_size);
    plan->S = plan->L + plan->N;
    plan->cfg = p->guidance_scale > 1.0f; /* do_classifier_free_guidance */
    plan->out_frames = (int)(plan->F % 2 ? 4 * plan->F - 3 : 4 * plan->F);
    return CVX_OK;
}


/* Share of the work per phase, from rough FLOP counts, for the progress fraction. */
static void plan_progress(gen_ctx *g) {
    const int64_t F = g->plan.F, H = g->plan.H, W = g->plan.W;
    const int frames = g->plan.out_frames, height = g->plan.height, width = g->plan.width, cfg = g->plan.cfg;
    const cvx_model *m = g->e->model;
    const cvx_model_component *t5 = cvx_model_component_get(m, "text_encoder");
    const cvx_model_component *tr = cvx_model_component_get(m, "transformer");
    const cvx_model_component *vae = cvx_model_component_get(m, "vae");
    double L = (double)tr->cfg.transformer.max_text_seq_length;
    double p = (double)tr->cfg.transformer.patch_size;
    double seq = L + (double)F * (double)H / p * (double)W / p;
    double batch = cfg ? 2 : 1;
    double enc = t5 && !g->p->prompt_embeds ? 2.0 * (double)t5->expected.numel * L * batch : 0;
    double D = (double)tr->cfg.transformer.num_attention_heads * (double)tr->cfg.transformer.attention_head_dim;
    double step = batch * (2.0 * (double)tr->expected.numel * seq +
                           4.0 * seq * seq * D * (double)tr->cfg.transformer.num_layers);
    double den = step * g->steps;
    /* VAE decoder: ~ 2 × parameters × output pixels / (a channel-width factor); calibrated on the 2b (≈0.31 PFLOP
     * for 49×480×720 with 123M decoder parameters) */
    double dec = 0.31e15 * ((double)frames * height * width / (49.0 * 480 * 720)) *
                 ((double)vae->expected.numel / 215.6e6);
    double wr = 1e-3 * (enc + den + dec);
    double total = enc + den + dec + wr;
    g->weight[CVX_PHASE_ENCODE] = enc / total;
    g->weight[CVX_PHASE_DENOISE] = den / total;
    g->weight[CVX_PHASE_DECODE] = dec / total;
    g->weight[CVX_PHASE_WRITE] = wr / total;
    g->base[0] = 0;
    for (int i = 1; i < 4; i++) g->base[i] = g->base[i - 1] + g->weight[i - 1];
}

/* ---- stage 1: text ---------------------------------------------------------------------------------------- */
static cvx_status encode_text(gen_ctx *g, float **embeds_out, int64_t *dt_out) {
    const int cfg = g->plan.cfg;
    const int64_t L = g->plan.L;
    cvx_engine *e = g->e;
    const cvx_generate_params *p = g->p;
    cvx_status st;
    int nb = cfg ? 2 : 1;
    if (p->prompt_embeds) { /* precomputed: [prompt; negative], as the encoder would have made them */
        const int64_t Dt = p->embeds_dim;
        float *emb = malloc(sizeof(float) * (size_t)(nb * L * Dt));
        if (!emb) return cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the text embeddings");
        memcpy(emb, p->prompt_embeds, sizeof(float) * (size_t)(L * Dt));
        if (cfg) memcpy(emb + L * Dt, p->negative_prompt_embeds, sizeof(float) * (size_t)(L * Dt));
        *embeds_out = emb;
        *dt_out = Dt;
        return CVX_OK;
    }
    int64_t *ids = malloc(sizeof(int64_t) * (size_t)(nb * L));
    cvx_t5_tokens tokens;
    memset(&tokens, 0, sizeof tokens);
    cvx_t5 *t5 = NULL;
    float *embeds = NULL;
    if (!ids) return cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    const char *texts[2] = {p->prompt, p->negative_prompt ? p->negative_prompt : ""};
    static const char *const id_names[2] = {"prompt_input_ids", "negative_prompt_input_ids"};
    for (int b = 0; b < nb; b++) {
        st = cvx_t5_tokenize(e->tokenizer, texts[b], strlen(texts[b]), (int)L, &tokens, &e->err);
        if (st != CVX_OK) goto done;
        if ((int64_t)tokens.n_ids != L) {
            st = cvx_fail(&e->err, CVX_ERR_INTERNAL, "tokenizer returned %zu ids, expected %lld", tokens.n_ids,
                          (long long)L);
            goto done;
        }
        for (int64_t i = 0; i < L; i++) ids[b * L + i] = tokens.ids[i];
        int64_t shape[2] = {1, L};
        if ((st = tap(g, id_names[b], CVX_DTYPE_I64, ids + b * L, 2, shape)) != CVX_OK) goto done;
    }
    const cvx_model_component *te = cvx_model_component_get(e->model, "text_encoder");
    /* Several processes: each text is encoded once — by the first rank of the CFG half that uses it (the negative
     * prompt on rank 0, the prompt on rank N/2; without guidance the prompt on rank 0) — and broadcast. A batch
     * row's encoding does not depend on the batch around it, so the result is the one-process one bit for bit. */
    const int ranks = cvx_dist_size(g->world);
    if (ranks > 1) {
        const int dg = cfg ? ranks / 2 : ranks, root[2] = {cfg ? dg : 0, 0}; /* who encodes b = 0 (prompt), 1 */
        const int64_t Dt = te->cfg.t5.d_model;
        embeds = malloc(sizeof(float) * (size_t)(nb * L * Dt));
        if (!embeds) {
            st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the text embeddings");
            goto done;
        }
        for (int b = 0; b < nb; b++) {
            if (g->rank != root[b]) continue;
            if ((st = cvx_t5_open(&t5, te->dir, &e->err)) != CVX_OK) goto done;
            if ((st = cvx_t5_set_precision(t5, p->precision)) != CVX_OK) {
                cvx_fail(&e->err, st, "text encoder: %s", cvx_t5_last_error(t5));
                goto done;
            }
            int64_t one[2] = {1, L};
            cvx_tensor ids_t = cvx_tensor_view(CVX_DTYPE_I64, ids + b * L, 2, one);
            if ((st = cvx_t5_encode(t5, e->pool, &ids_t, embeds + b * L * Dt)) != CVX_OK) {
                cvx_fail(&e->err, st, "text encoder: %s", cvx_t5_last_error(t5));
                goto done;
            }
        }
        cvx_t5_close(t5);
        t5 = NULL;
        for (int b = 0; b < nb; b++)
            if ((st = cvx_dist_bcast(g->world, embeds + b * L * Dt, sizeof(float) * (size_t)(L * Dt), root[b],
                                     &e->err)) != CVX_OK)
                goto done;
        *embeds_out = embeds;
        *dt_out = Dt;
        embeds = NULL;
        goto done;
    }
    st = cvx_t5_open(&t5, te->dir, &e->err);
    if (st != CVX_OK) goto done;
    /* bf16: the encoder packs each layer just before running it (no second resident copy of the checkpoint) */
    if ((st = cvx_t5_set_precision(t5, p->precision)) != CVX_OK) {
        cvx_fail(&e->err, st, "text encoder: %s", cvx_t5_last_error(t5));
        goto done;
    }
    int64_t Dt = cvx_t5_get_config(t5)->d_model;
    embeds = malloc(sizeof(float) * (size_t)(nb * L * Dt));
    if (!embeds) {
        st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the text embeddings");
        goto done;
    }
    int64_t ids_shape[2] = {nb, L};
    cvx_tensor ids_t = cvx_tensor_view(CVX_DTYPE_I64, ids, 2, ids_shape);
    st = cvx_t5_encode(t5, e->pool, &ids_t, embeds);
    if (st != CVX_OK) {
        cvx_fail(&e->err, st, "text encoder: %s", cvx_t5_last_error(t5));
        goto done;
    }
    int64_t eshape[3] = {1, L, Dt};
    if ((st = tap(g, "prompt_embeds", CVX_DTYPE_F32, embeds, 3, eshape)) != CVX_OK) goto done;
    if (cfg && (st = tap(g, "negative_prompt_embeds", CVX_DTYPE_F32, embeds + L * Dt, 3, eshape)) != CVX_OK) goto done;
    *embeds_out = embeds;
    *dt_out = Dt;
    embeds = NULL;
done:
    free(embeds);
    cvx_t5_close(t5); /* the largest weights: released before the transformer maps its own */
    cvx_t5_tokens_free(&tokens);
    free(ids);
    return st;
}

/* ---- stage 2: denoising ---------------------------------------------------------------------------------- */
static void on_step(void *user_data, const cvx_denoise_step *s) {
    gen_ctx *g = user_data;
    if (g->tap && g->tap_status == CVX_OK) {
        if (s->step == 0 && s->model_output) {
            int64_t shape[5] = {g->cfg ? 2 : 1, g->dims[0], g->dims[1], g->dims[2], g->dims[3]};
            g->tap_status = tap(g, "step0_transformer_output", CVX_DTYPE_F32, (void *)s->model_output, 5, shape);
        }
        if (g->step_latents && s->step < g->n_timesteps) {
            const int64_t n = g->latent_numel, Bm = g->cfg ? 2 : 1, n_in = n / g->plan.C * (g->plan.C + g->plan.Ci);
            memcpy(g->step_latents + s->step * n, s->latents, sizeof(float) * (size_t)n);
            memcpy(g->step_in + s->step * Bm * n_in, s->model_input, sizeof(float) * (size_t)(Bm * n_in));
            memcpy(g->step_out + s->step * Bm * n, s->model_output, sizeof(float) * (size_t)(Bm * n));
            for (int k = 0; k < s->state->n_noise && g->n_step_noise < 2 * g->n_timesteps; k++)
                memcpy(g->step_noise + g->n_step_noise++ * n, s->state->noise[k], sizeof(float) * (size_t)n);
        }
    }
    if (g->computed && s->step < g->n_timesteps) g->computed[s->step] = (unsigned char)(s->computed != 0);
    if (g->p->checkpoint && g->ckpt_status == CVX_OK && g->rank == 0) {
        cvx_ckpt_write(g->ckpt, g->params_hash, s, g->latent_numel, g->computed);
        g->ckpt_status = g->p->checkpoint(g->ckpt, g->ckpt_size, (int)(s->step + 1), (int)s->total,
                                          g->p->checkpoint_user_data);
        if (g->ckpt_status != CVX_OK)
            cvx_fail(&g->e->err, g->ckpt_status, "checkpoint after step %d failed", (int)(s->step + 1));
    }
    g->steps_done++;
    report(g, CVX_PHASE_DENOISE, (double)(s->step + 1) / (double)s->total, (int)(s->step + 1));
}

static int vae_poll(void *user_data, int done, int total) {
    (void)done, (void)total;
    return poll_cancel(user_data);
}

/* ---- the conditioning of image- and video-to-video ---------------------------------------------------------- */

/* VideoProcessor.preprocess(_video) of frames that already have the video's size: uint8 RGB [T, H, W, 3] ->
 * x [1, 3, T, H, W] = 2·(float32(u8) / 255) − 1, each operation in float32. */
static void preprocess_frames(const uint8_t *rgb, int64_t T, int64_t H, int64_t W, float *x) {
    for (int64_t t = 0; t < T; t++)
        for (int64_t i = 0; i < H * W; i++)
            for (int64_t c = 0; c < 3; c++) {
                const float v = (float)rgb[(t * H * W + i) * 3 + c] / 255.0f;
                x[(c * T + t) * H * W + i] = 2.0f * v - 1.0f;
            }
}

/* vae.encode(x).latent_dist.sample(generator) for x [1, 3, T, H, W]: the encoder in its frame batches, then
 * mean + std · noise with the generator's next draw [1, L, T', h, w]. *sample (malloc'd) is [1, L, T', h, w]
 * (shape in ss). The taps are named "<what>_preprocessed" (shape xtap), "<what>_posterior_mean" / "_logvar" /
 * "_std" / "_noise" and "<what>_latents_encoded". */
static cvx_status encode_sample(gen_ctx *g, cvx_rng *rng, const char *what, const float *x, const int64_t xs[5],
                                int xtap_ndim, const int64_t *xtap, float **sample, int64_t ss[5]) {
    cvx_engine *e = g->e;
    cvx_status st;
    cvx_vae *vae = NULL;
    float *h = NULL, *post = NULL;
    char name[64];
    *sample = NULL;
    snprintf(name, sizeof name, "%s_preprocessed", what);
    if ((st = tap(g, name, CVX_DTYPE_F32, (void *)x, xtap_ndim, xtap)) != CVX_OK) return st;
    const cvx_model_component *vc = cvx_model_component_get(e->model, "vae");
    if ((st = cvx_vae_open(&vae, vc->dir, CVX_VAE_ENCODER, &e->err)) != CVX_OK) return st;
    int64_t hs[5];
    cvx_vae_params vp = cvx_vae_params_default(vae);
    vp.progress = vae_poll;
    vp.progress_user_data = g;
    if ((st = cvx_vae_set_precision(vae, g->p->precision)) != CVX_OK ||
        (st = cvx_vae_encode_shape(vae, &vp, xs, hs)) != CVX_OK) {
        cvx_fail(&e->err, st, "vae: %s", cvx_vae_last_error(vae));
        goto done;
    }
    const int64_t L = hs[1] / 2, m = L * hs[2] * hs[3] * hs[4];
    h = malloc(sizeof(float) * (size_t)(2 * m));
    post = malloc(sizeof(float) * (size_t)(5 * m)); /* mean, logvar, std, noise, sample */
    if (!h || !post) {
        st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the %s's latents", what);
        goto done;
    }
    if ((st = cvx_vae_encode(vae, e->pool, &vp, x, xs, h)) != CVX_OK) {
        if (st == CVX_ERR_CANCELLED) cvx_fail(&e->err, st, "cancelled");
        else cvx_fail(&e->err, st, "vae: %s", cvx_vae_last_error(vae));
        goto done;
    }
    float *mean = post, *logvar = post + m, *std = post + 2 * m, *noise = post + 3 * m, *smp = post + 4 * m;
    cvx_rng_randn_f32(rng, noise, m, CVX_RNG_AVX2); /* randn_tensor(mean.shape, generator) */
    cvx_vae_posterior(h, 1, L, hs[2] * hs[3] * hs[4], noise, mean, logvar, std, smp);
    ss[0] = 1, ss[1] = L, ss[2] = hs[2], ss[3] = hs[3], ss[4] = hs[4];
    static const char *const parts[5] = {"posterior_mean", "posterior_logvar", "posterior_std", "posterior_noise",
                                         "latents_encoded"};
    for (int k = 0; k < 5; k++) {
        snprintf(name, sizeof name, "%s_%s", what, parts[k]);
        if ((st = tap(g, name, CVX_DTYPE_F32, post + k * m, 5, ss)) != CVX_OK) goto done;
    }
    memmove(post, smp, sizeof(float) * (size_t)m);
    *sample = post;
    post = NULL;
done:
    free(h);
    free(post);
    cvx_vae_close(vae); /* released before the transformer maps its weights */
    return st;
}

/* CogVideoXImageToVideoPipeline.prepare_latents' image half: the image [1, 3, 1, H, W] encoded and sampled
 * (the generator's first draw), permuted, × scaling_factor, then zero latent frames up to F:
 * image_latents [1, F, Ci, h, w] (zeroed by the caller). */
static cvx_status condition_image(gen_ctx *g, cvx_rng *rng, float *image_latents) {
    const cvx_generate_params *p = g->p;
    const int64_t H = g->plan.height, W = g->plan.width, F = g->plan.F, Ci = g->plan.Ci;
    float *x = malloc(sizeof(float) * (size_t)(3 * H * W)), *smp = NULL;
    if (!x) return cvx_fail(&g->e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the image");
    preprocess_frames(p->image, 1, H, W, x);
    int64_t xs[5] = {1, 3, 1, H, W}, xtap[4] = {1, 3, H, W}, ss[5];
    cvx_status st = encode_sample(g, rng, "image", x, xs, 4, xtap, &smp, ss);
    if (st == CVX_OK && (ss[1] != Ci || ss[2] != 1 || ss[3] != g->plan.H || ss[4] != g->plan.W))
        st = cvx_fail(&g->e->err, CVX_ERR_SHAPE, "the VAE encodes the image to [%lld, %lld, %lld, %lld]; the "
                      "transformer takes %lld image channels at %lldx%lld", (long long)ss[1], (long long)ss[2],
                      (long long)ss[3], (long long)ss[4], (long long)Ci, (long long)g->plan.H, (long long)g->plan.W);
    if (st == CVX_OK) {
        const cvx_model_component *vc = cvx_model_component_get(g->e->model, "vae");
        cvx_vae_scale_latents(smp, ss, vc->cfg.vae.scaling_factor, image_latents); /* frame 0; 1..F−1 stay 0 */
        int64_t ishape[5] = {1, F, Ci, g->plan.H, g->plan.W};
        st = tap(g, "image_latents", CVX_DTYPE_F32, image_latents, 5, ishape);
    }
    free(smp);
    free(x);
    return st;
}

/* CogVideoXVideoToVideoPipeline.prepare_latents: the video encoded and sampled (the generator's first draw),
 * permuted, × scaling_factor (init_latents), the initial noise [1, F, C, h, w] (second draw), and
 * add_noise(init_latents, noise, t) at the first kept timestep -> latents. */
static cvx_status condition_video(gen_ctx *g, cvx_rng *rng, const cvx_scheduler *sched, int64_t t, float *latents) {
    const cvx_generate_params *p = g->p;
    const int64_t T = g->plan.frames, H = g->plan.height, W = g->plan.width;
    const int64_t F = g->plan.F, C = g->plan.C, n = F * C * g->plan.H * g->plan.W;
    float *x = malloc(sizeof(float) * (size_t)(3 * T * H * W)), *smp = NULL, *init = NULL;
    if (!x) return cvx_fail(&g->e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the input video");
    preprocess_frames(p->video, T, H, W, x);
    int64_t xs[5] = {1, 3, T, H, W}, ss[5];
    cvx_status st = encode_sample(g, rng, "video", x, xs, 5, xs, &smp, ss);
    free(x);
    if (st == CVX_OK && (ss[1] != C || ss[2] != F || ss[3] != g->plan.H || ss[4] != g->plan.W))
        st = cvx_fail(&g->e->err, CVX_ERR_SHAPE, "the VAE encodes the video to [%lld, %lld, %lld, %lld]; the "
                      "transformer takes [%lld, %lld, %lld, %lld]", (long long)ss[1], (long long)ss[2],
                      (long long)ss[3], (long long)ss[4], (long long)C, (long long)F, (long long)g->plan.H,
                      (long long)g->plan.W);
    if (st == CVX_OK && !(init = malloc(sizeof(float) * (size_t)n)))
        st = cvx_fail(&g->e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    int64_t lshape[5] = {1, F, C, g->plan.H, g->plan.W}, one[1] = {1}, two[1] = {2};
    if (st == CVX_OK) {
        const cvx_model_component *vc = cvx_model_component_get(g->e->model, "vae");
        cvx_vae_scale_latents(smp, ss, vc->cfg.vae.scaling_factor, init);
        st = tap(g, "init_latents", CVX_DTYPE_F32, init, 5, lshape);
    }
    if (st == CVX_OK) {
        cvx_denoise_initial_latents(rng, latents, n); /* randn_tensor(shape, generator) */
        st = tap(g, "initial_noise", CVX_DTYPE_F32, latents, 5, lshape);
    }
    float coefs[2];
    if (st == CVX_OK) st = cvx_scheduler_add_noise(sched, t, init, latents, n, latents, coefs, &g->e->err);
    if (st == CVX_OK) st = tap(g, "add_noise_coefficients", CVX_DTYPE_F32, coefs, 1, two);
    if (st == CVX_OK) st = tap(g, "latent_timestep", CVX_DTYPE_I64, &t, 1, one);
    free(init);
    free(smp);
    return st;
}

static cvx_status denoise(gen_ctx *g, const float *embeds, float *latents) {
    const int cfg = g->plan.cfg, height = g->plan.height, width = g->plan.width;
    const int64_t L = g->plan.L, F = g->plan.F, C = g->plan.C, H = g->plan.H, W = g->plan.W;
    cvx_engine *e = g->e;
    const cvx_generate_params *p = g->p;
    cvx_status st;
    cvx_dit *dit = NULL;
    cvx_scheduler *sched = NULL;
    cvx_dit_teacache tcache, *tc = NULL;
    memset(&tcache, 0, sizeof tcache);
    cvx_rng rng;
    cvx_rng_seed(&rng, p->seed);
    int64_t n = F * C * H * W;
    g->latent_numel = n;
    float *image_latents = NULL; /* I2V: [1, F, Ci, H, W] */
    if (g->plan.mode == GEN_I2V && !(image_latents = calloc((size_t)(F * g->plan.Ci * H * W), sizeof(float))))
        return cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the image latents");

    cvx_sched_kind kind = !p->scheduler ? CVX_SCHED_AUTO : !strcmp(p->scheduler, "dpm") ? CVX_SCHED_DPM : CVX_SCHED_DDIM;
    st = cvx_scheduler_create(&sched, e->scheduler_config, kind, "scheduler_config.json", &e->err);
    if (st != CVX_OK) {
        free(image_latents);
        return st;
    }
    int64_t ts[1002], nts = 0, first = 0;
    st = cvx_scheduler_timesteps_for(sched, p->steps, ts, &nts, &e->err);
    if (st != CVX_OK) goto done;
    if (g->plan.mode == GEN_V2V) {
        /* get_timesteps: init_timestep = min(int(N · strength), N), t_start = max(N − init_timestep, 0), the list
         * from t_start on (the scheduler keeps N for prev_t) */
        int64_t init = (int64_t)((double)p->steps * p->strength);
        if (init > p->steps) init = p->steps;
        first = p->steps - init > 0 ? p->steps - init : 0;
        int64_t tall[1] = {nts};
        if ((st = tap(g, "all_timesteps", CVX_DTYPE_I64, ts, 1, tall)) != CVX_OK) goto done;
    }
    g->first_step = first;
    g->n_timesteps = nts - first;
    g->steps = (int)g->n_timesteps;
    g->computed = calloc((size_t)g->n_timesteps, 1);
    if (!g->computed) {
        st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }

    /* The generator's draws, in the reference's order: (I2V, V2V) the VAE posterior sample of the conditioning,
     * then the initial noise, then the DPM steps' noise. A resumed run re-encodes the image (with a fresh generator:
     * the same sample) and takes the generator after its step from the checkpoint. */
    if (g->plan.mode == GEN_I2V && (st = condition_image(g, &rng, image_latents)) != CVX_OK) goto done;
    cvx_ckpt_view rv, *resume = NULL;
    int64_t lshape[5] = {1, F, C, H, W};
    if (p->resume_state) {
        if ((st = cvx_ckpt_read(p->resume_state, p->resume_state_size, "resume state", &rv, &e->err)) != CVX_OK)
            goto done;
        if (rv.params_hash != g->params_hash) {
            st = cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT,
                          "resume state: it belongs to other generation parameters or another model");
            goto done;
        }
        if (rv.n != n) {
            st = cvx_fail(&e->err, CVX_ERR_FORMAT, "resume state: %zu bytes do not hold %lld latent values",
                          p->resume_state_size, (long long)n);
            goto done;
        }
        resume = &rv;
        memcpy(latents, rv.latents, sizeof(float) * (size_t)n);
        rng = rv.rng;
    } else if (g->plan.mode == GEN_V2V) {
        if ((st = condition_video(g, &rng, sched, ts[first], latents)) != CVX_OK) goto done;
    } else if (p->noise_dtype == CVX_NOISE_F16) {
        /* prepare_latents: randn([1, F, C, H, W], generator) in the pipeline's dtype */
        uint16_t *h = malloc(sizeof(uint16_t) * (size_t)n);
        if (!h) {
            st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
        cvx_rng_randn_f16(&rng, h, n);
        cvx_f16_to_f32_array(h, latents, (size_t)n);
        free(h);
    } else {
        cvx_denoise_initial_latents(&rng, latents, n);
    }
    if (!resume && (st = tap(g, "initial_latents", CVX_DTYPE_F32, latents, 5, lshape)) != CVX_OK) goto done;
    int64_t tshape[1] = {g->n_timesteps};
    if ((st = tap(g, "step_timesteps", CVX_DTYPE_I64, ts + first, 1, tshape)) != CVX_OK) goto done;
    if (g->tap) {
        const int64_t nt = g->n_timesteps, Bm = cfg ? 2 : 1;
        g->step_latents = malloc(sizeof(float) * (size_t)(nt * n));
        g->step_in = malloc(sizeof(float) * (size_t)(nt * Bm * F * (C + g->plan.Ci) * H * W));
        g->step_out = malloc(sizeof(float) * (size_t)(nt * Bm * n));
        g->step_noise = malloc(sizeof(float) * (size_t)(2 * nt * n));
        if (!g->step_latents || !g->step_in || !g->step_out || !g->step_noise) {
            st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
    }

    const cvx_model_component *tr = cvx_model_component_get(e->model, "transformer");
    st = cvx_dit_open_dir(&dit, tr->dir, &e->err);
    if (st != CVX_OK) goto done;
    /* bf16: every weight matrix is packed once here (≈ 2 bytes per parameter) and the mapping's pages dropped */
    if ((st = cvx_dit_set_precision(dit, p->precision, e->pool)) != CVX_OK) {
        cvx_error_copy(&e->err, cvx_dit_error(dit));
        goto done;
    }
    /* TeaCache: the state for the CFG batch over the joint sequence, allocated only when on */
    const cvx_dit_config *dcfg = cvx_dit_get_config(dit);
    const int64_t Bm = cfg ? 2 : 1, S = L + F * (H / dcfg->patch_size) * (W / dcfg->patch_size);
    if (g->cache.mode == CVX_CACHE_TEACACHE) {
        if ((st = cvx_dit_teacache_init(&tcache, dcfg, Bm, S, g->cache.threshold, g->cache.coefficients, &e->err)) !=
            CVX_OK)
            goto done;
        tc = &tcache;
    }
    if (p->checkpoint) {
        g->ckpt_size = cvx_ckpt_bytes(n, tc, g->n_timesteps);
        g->ckpt = malloc(g->ckpt_size);
        if (!g->ckpt) {
            st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for checkpoints (%zu MB)", g->ckpt_size >> 20);
            goto done;
        }
    }
    const cvx_model_component *vae = cvx_model_component_get(e->model, "vae");
    cvx_denoise_params dp = cvx_denoise_params_default();
    dp.num_inference_steps = p->steps;
    dp.first_step = first;
    dp.image_latents = image_latents;
    dp.guidance_scale = p->guidance_scale;
    dp.use_dynamic_cfg = p->use_dynamic_cfg;
    dp.height_px = height;
    dp.width_px = width;
    dp.vae_scale_spatial = 1 << (vae->cfg.vae.n_blocks - 1);
    dp.pool = e->pool;
    dp.progress = on_step;
    dp.progress_user_data = g;
    dp.cancel = poll_cancel;
    dp.cancel_user_data = g;
    dp.world = g->world;
    const float *negative = cfg ? embeds + L * cvx_dit_get_config(dit)->text_embed_dim : NULL;
    g->t_denoise = cvx_time_seconds();
    g->step0 = resume ? (int)resume->step : 0;
    g->steps_done = 0;
    if (!resume) report(g, CVX_PHASE_DENOISE, 0, 0);
    g->dims[0] = F;
    g->dims[1] = C;
    g->dims[2] = H;
    g->dims[3] = W;
    g->cfg = cfg;
    cvx_sched_state rs;
    memset(&rs, 0, sizeof rs);
    if (resume) {
        if (resume->count != g->n_timesteps) {
            st = cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "resume state: %lld timesteps, this run has %lld",
                          (long long)resume->count, (long long)g->n_timesteps);
            goto done;
        }
        rs.n = n;
        rs.pred_original_sample = (float *)resume->pred;
        rs.has_pred = resume->has_pred;
        rs.timestep_back = resume->timestep_back;
        rs.has_back = resume->has_back;
        dp.start_step = resume->step;
        dp.resume_state = &rs;
        /* the cache state after that step (the digest ties the blob to these cache settings) */
        if (!tc) {
            for (int64_t i = 0; i < resume->step; i++) g->computed[i] = 1;
            if (resume->has_cache) {
                st = cvx_fail(&e->err, CVX_ERR_FORMAT, "resume state: it holds a step cache this run does not use");
                goto done;
            }
        } else {
            if (!resume->has_cache || resume->B != tc->B || resume->S != tc->S || resume->D != tc->D ||
                resume->E != tc->E || resume->count != g->n_timesteps || !resume->has_prev || !resume->has_residual) {
                st = cvx_fail(&e->err, CVX_ERR_FORMAT, "resume state: the step cache is missing or not for this run");
                goto done;
            }
            tc->acc = resume->acc;
            tc->has_prev = 1;
            tc->has_residual = 1;
            memcpy(tc->emb_prev, resume->emb_prev, sizeof(float) * (size_t)(tc->B * tc->E));
            memcpy(tc->residual, resume->residual, sizeof(float) * (size_t)(tc->B * tc->S * tc->D));
            for (int64_t i = 0; i < resume->step; i++) g->computed[i] = resume->computed[i] != 0;
        }
        report(g, CVX_PHASE_DENOISE, (double)resume->step / (double)g->n_timesteps, (int)resume->step);
    }
    dp.teacache = tc;
    st = cvx_denoise(dit, sched, &dp, embeds, negative, 1, L, latents, F, H, W, &rng, &e->err);
    if (st == CVX_ERR_CANCELLED && g->ckpt_status != CVX_OK) st = g->ckpt_status;
    if (st == CVX_OK && g->tap_status != CVX_OK) st = g->tap_status;
    if (st != CVX_OK) goto done;
    if (g->step_latents) {
        const int64_t nt = g->n_timesteps;
        int64_t sshape[6] = {nt, 1, F, C, H, W}, ishape[6] = {nt, Bm, F, C + g->plan.Ci, H, W},
                oshape[6] = {nt, Bm, F, C, H, W}, nshape[6] = {g->n_step_noise, 1, F, C, H, W};
        if ((st = tap(g, "step_latents_after", CVX_DTYPE_F32, g->step_latents, 6, sshape)) != CVX_OK ||
            (st = tap(g, "step_transformer_input", CVX_DTYPE_F32, g->step_in, 6, ishape)) != CVX_OK ||
            (st = tap(g, "step_transformer_output", CVX_DTYPE_F32, g->step_out, 6, oshape)) != CVX_OK ||
            (g->n_step_noise && (st = tap(g, "step_scheduler_noise", CVX_DTYPE_F32, g->step_noise, 6, nshape)) != CVX_OK))
            goto done;
    }
    st = tap(g, "final_latents", CVX_DTYPE_F32, latents, 5, lshape);
done:
    free(g->ckpt);
    g->ckpt = NULL;
    free(g->step_latents), free(g->step_in), free(g->step_out), free(g->step_noise);
    g->step_latents = g->step_in = g->step_out = g->step_noise = NULL;
    free(image_latents);
    cvx_dit_teacache_release(&tcache);
    cvx_dit_free(dit);
    cvx_scheduler_free(sched);
    return st;
}

/* ---- stage 3: decoding, with the frames streamed to the files as each VAE frame batch finishes -------------- */

/* The decoder's time, measured rather than guessed (a FLOP count misses its memory-bound convolutions by 10x on
 * small channel counts): before the denoising, two latent frames of about 1/16 of the area are decoded and timed,
 * and the whole decode is that time scaled by output frames and area (about 1% of the decode's own time). Sizes
 * too small to cut, or one latent frame, time the first batch directly. Nothing here touches the outputs. */
static void probe_decode(gen_ctx *g) {
    const int64_t C = g->plan.C, F = g->plan.F, H = g->plan.H, W = g->plan.W;
    const int out_frames = g->plan.out_frames, height = g->plan.height, width = g->plan.width;
    cvx_engine *e = g->e;
    const cvx_model_component *vc = cvx_model_component_get(e->model, "vae");
    g->write_estimate = 100e-9 * (double)out_frames * height * width; /* H.264 of noise: ~100 ns a pixel */
    g->decode_estimate = -1;
    if (F < 2) return;
    int64_t ph = H >= 16 ? (H + 3) / 4 : H, pw = W >= 16 ? (W + 3) / 4 : W;
    cvx_error err;
    cvx_error_clear(&err);
    cvx_vae *vae = NULL;
    float *z = NULL, *out = NULL;
    if (cvx_vae_open(&vae, vc->dir, CVX_VAE_DECODER, &err) != CVX_OK) goto done;
    if (cvx_vae_set_precision(vae, g->p->precision) != CVX_OK) goto done;
    int64_t zshape[5] = {1, C, 2, ph, pw}, oshape[5];
    cvx_vae_params vp = cvx_vae_params_default(vae);
    if (cvx_vae_decode_shape(vae, &vp, zshape, oshape) != CVX_OK) goto done;
    z = calloc((size_t)(C * 2 * ph * pw), sizeof(float));
    out = malloc(sizeof(float) * (size_t)(oshape[0] * oshape[1] * oshape[2] * oshape[3] * oshape[4]));
    if (!z || !out) goto done;
    /* a short probe is timed twice, the faster kept: a moment of other load on the cores must not double it */
    double t = 1e300;
    for (int k = 0; k < 2 && (k == 0 || t < 0.5); k++) {
        double t1 = cvx_time_seconds();
        if (cvx_vae_decode(vae, e->pool, &vp, z, zshape, out) != CVX_OK) goto done;
        t1 = cvx_time_seconds() - t1;
        if (t1 < t) t = t1;
    }
    g->decode_estimate = t * ((double)out_frames / (double)oshape[2]) * ((double)(H * W) / (double)(ph * pw));
    cvx_log_debug(&e->logger, "decode probe: %lldx%lld latents in %.3fs, decode estimated at %.1fs", (long long)ph,
                  (long long)pw, t, g->decode_estimate);
done:
    free(z);
    free(out);
    cvx_vae_close(vae);
}

typedef struct {
    const cvx_media_writers *mw; /* the writers, taken once for the whole generation (outputs_open) */
    cvx_video_writer *vw[2]; /* MP4, animated preview */
    int finished[2];
    int png_written;
    uint8_t *frames;         /* [frames, H, W, 3] uint8, filled batch by batch */
    const float *sample;     /* the decoder's output [1, 3, frames, H, W] */
    int64_t shape[5];
    double write_seconds;
} outputs;

static cvx_status outputs_open(gen_ctx *g, outputs *o) {
    const int height = g->plan.height, width = g->plan.width;
    const cvx_generate_params *p = g->p;
    const char *paths[2] = {p->output_path, p->preview_path};
    const cvx_video_format formats[2] = {CVX_VIDEO_MP4, CVX_VIDEO_WEBP};
    /* what made the video, readable with ffprobe; nothing that changes between runs (no time, no path, no task), so
     * the same generation still gives the same bytes */
    const cvx_model_info *mi = &g->e->info;
    char seed[32], steps[16], guidance[32], size[32], frames[16], cache[400], model[320], version[64];
    snprintf(seed, sizeof seed, "%llu", (unsigned long long)p->seed);
    snprintf(steps, sizeof steps, "%d", p->steps);
    snprintf(guidance, sizeof guidance, "%g", (double)p->guidance_scale);
    snprintf(size, sizeof size, "%dx%d", width, height);
    snprintf(frames, sizeof frames, "%d", p->num_frames);
    cvx_cache_format(&g->cache, cache, sizeof cache);
    snprintf(model, sizeof model, "%s (%s, %s weights)", mi->model_name, mi->model_variant,
             cvx_weights_kind_name(mi->weights));
    snprintf(version, sizeof version, "cogvideox %s", cvx_version());
    const char *tags[] = {"prompt", p->prompt ? p->prompt : "", "negative_prompt", p->negative_prompt ? p->negative_prompt : "",
                          "seed", seed, "steps", steps, "guidance_scale", guidance,
                          "scheduler", p->scheduler ? p->scheduler : mi->default_scheduler,
                          "dynamic_cfg", p->use_dynamic_cfg ? "true" : "false", "frames", frames, "size", size,
                          "precision", cvx_precision_name(p->precision),
                          "noise_dtype", p->noise_dtype == CVX_NOISE_F16 ? "f16" : "f32", "cache", cache,
                          "model", model, "generator", version, NULL};
    o->mw = cvx__engine_writers(); /* validate() checked them; a cvx_engine_use_writers(NULL) since is refused here */
    if (!o->mw && (p->output_path || p->preview_path || p->frames_dir))
        return cvx_fail(&g->e->err, CVX_ERR_UNSUPPORTED, "the file writers were taken back (cvx_engine_use_writers)");
    for (int k = 0; k < 2; k++) {
        if (!paths[k]) continue;
        cvx_status st = o->mw->open_tagged(&o->vw[k], paths[k], formats[k], width, height, p->fps, tags, &g->e->err);
        if (st != CVX_OK) return st;
    }
    int rc = p->frames_dir ? cvx_mkdirs(p->frames_dir) : 0;
    if (rc != 0) return cvx_fail(&g->e->err, CVX_ERR_IO, "%s: cannot create the folder: %s", p->frames_dir, strerror(rc));
    return CVX_OK;
}

/* All or nothing: on failure or cancel no output file stays, including a file already finished. */
static void outputs_abort(gen_ctx *g, outputs *o) {
    const cvx_generate_params *p = g->p;
    const char *paths[2] = {p->output_path, p->preview_path};
    for (int k = 0; k < 2; k++) {
        if (o->vw[k]) o->mw->abort(o->vw[k]);
        o->vw[k] = NULL;
        if (o->finished[k]) remove(paths[k]);
    }
    for (int i = 0; i < o->png_written; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%05d.png", p->frames_dir, i);
        remove(path);
    }
}

static cvx_status outputs_close(gen_ctx *g, outputs *o) {
    for (int k = 0; k < 2; k++) {
        if (!o->vw[k]) continue;
        cvx_status st = o->mw->close(o->vw[k], &g->e->err);
        o->vw[k] = NULL;
        if (st != CVX_OK) return st;
        o->finished[k] = 1;
    }
    return CVX_OK;
}

/* Frames [f0, f1) are final: to uint8 (the pipeline's post-processing), then to every output. */
static cvx_status outputs_write(gen_ctx *g, outputs *o, int64_t f0, int64_t f1) {
    const cvx_generate_params *p = g->p;
    double t0 = cvx_time_seconds();
    const int H = (int)o->shape[3], W = (int)o->shape[4];
    const size_t frame_bytes = (size_t)H * (size_t)W * 3;
    cvx_vae_postprocess_frames(o->sample, o->shape, f0, f1, NULL, o->frames + (size_t)f0 * frame_bytes, NULL);
    cvx_status st = CVX_OK;
    for (int64_t f = f0; f < f1 && st == CVX_OK; f++) {
        const uint8_t *rgb = o->frames + (size_t)f * frame_bytes;
        for (int k = 0; k < 2 && st == CVX_OK; k++)
            if (o->vw[k]) st = o->mw->write_frames(o->vw[k], rgb, 1, &g->e->err);
        if (st == CVX_OK && p->frames_dir) {
            char path[4200];
            snprintf(path, sizeof path, "%s/%05d.png", p->frames_dir, (int)f);
            st = o->mw->png_write(path, rgb, W, H, &g->e->err);
            if (st == CVX_OK) o->png_written = (int)f + 1;
        }
    }
    o->write_seconds += cvx_time_seconds() - t0;
    g->write_seconds = o->write_seconds;
    g->frames_written = (int)f1;
    return st;
}

typedef struct {
    gen_ctx *g;
    outputs *o;
    cvx_status st;
} stream_ctx;

static int vae_progress(void *user_data, int done, int total) {
    stream_ctx *sc = user_data;
    sc->g->decode_done = done;
    sc->g->decode_total = total;
    report(sc->g, CVX_PHASE_DECODE, total > 0 ? (double)done / total : 1.0, 0);
    return poll_cancel(sc->g);
}

static int vae_frames_ready(void *user_data, int sample, int64_t f0, int64_t f1) {
    stream_ctx *sc = user_data;
    sc->st = outputs_write(sc->g, sc->o, f0, f1);
    return sc->st != CVX_OK;
}

static cvx_status decode(gen_ctx *g, const float *latents, outputs *o) {
    const int64_t F = g->plan.F, C = g->plan.C, H = g->plan.H, W = g->plan.W;
    cvx_engine *e = g->e;
    cvx_status st;
    cvx_vae *vae = NULL;
    float *z = NULL, *sample = NULL;
    const cvx_model_component *vc = cvx_model_component_get(e->model, "vae");
    st = cvx_vae_open(&vae, vc->dir, CVX_VAE_DECODER, &e->err);
    if (st != CVX_OK) return st;
    if ((st = cvx_vae_set_precision(vae, g->p->precision)) != CVX_OK) {
        cvx_fail(&e->err, st, "vae: %s", cvx_vae_last_error(vae));
        goto done;
    }
    int64_t lshape[5] = {1, F, C, H, W};
    int64_t zshape[5] = {1, C, F, H, W};
    z = malloc(sizeof(float) * (size_t)(F * C * H * W));
    if (!z) {
        st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    cvx_vae_latents_to_z(latents, lshape, cvx_vae_get_config(vae)->scaling_factor, z);
    stream_ctx sc = {g, o, CVX_OK};
    cvx_vae_params vp = cvx_vae_params_default(vae);
    vp.progress = vae_progress;
    vp.progress_user_data = &sc;
    if (g->rank == 0) { /* the writer */
        vp.frames_ready = vae_frames_ready;
        vp.frames_ready_user_data = &sc;
    }
    vp.dist = cvx_dist_size(g->world) > 1 ? g->world : NULL;
    st = cvx_vae_decode_shape(vae, &vp, zshape, o->shape);
    if (st != CVX_OK) {
        cvx_fail(&e->err, st, "vae: %s", cvx_vae_last_error(vae));
        goto done;
    }
    int64_t numel = o->shape[0] * o->shape[1] * o->shape[2] * o->shape[3] * o->shape[4];
    sample = malloc(sizeof(float) * (size_t)numel);
    o->frames = malloc((size_t)numel);
    if (!sample || !o->frames) {
        st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the decoded video");
        goto done;
    }
    o->sample = sample;
    g->t_decode = cvx_time_seconds();
    g->decode_done = 0;
    g->decode_total = vp.latent_frames_batch > 0 && F / vp.latent_frames_batch > 0 ? (int)(F / vp.latent_frames_batch) : 1;
    report(g, CVX_PHASE_DECODE, 0, 0);
    st = cvx_vae_decode(vae, e->pool, &vp, z, zshape, sample);
    if (st != CVX_OK) {
        if (sc.st != CVX_OK) st = sc.st; /* an output failed: its message is on the engine already */
        else if (st == CVX_ERR_CANCELLED) cvx_fail(&e->err, st, "cancelled");
        else cvx_fail(&e->err, st, "vae: %s", cvx_vae_last_error(vae));
        goto done;
    }
    if ((st = tap(g, "video", CVX_DTYPE_F32, sample, 5, o->shape)) != CVX_OK) goto done;
    int64_t fshape[4] = {o->shape[2], o->shape[3], o->shape[4], 3};
    st = tap(g, "frames_uint8", CVX_DTYPE_U8, o->frames, 4, fshape);
done:
    o->sample = NULL;
    free(sample);
    free(z);
    cvx_vae_close(vae);
    return st;
}

cvx_status cvx_generate_tapped(cvx_engine *e, const cvx_generate_params *p, cvx_video *out,
                               const cvx_pipeline_tap *tp) {
    if (out) memset(out, 0, sizeof *out);
    if (!e) return CVX_ERR_INVALID_ARGUMENT;
    cvx_error_clear(&e->err);
    if (!p) return cvx_fail(&e->err, CVX_ERR_INVALID_ARGUMENT, "no parameters");
    gen_plan plan;
    cvx_status st = validate(e, p, tp && tp->fn, &plan);
    if (st != CVX_OK) return st;
    cvx_generate_params resolved = *p; /* the model's default frames filled in: checkpoints and outputs see them */
    resolved.num_frames = plan.frames;
    p = &resolved;
    const cvx_model_component *tr = cvx_model_component_get(e->model, "transformer");
    const int64_t F = plan.F, C = plan.C, H = plan.H, W = plan.W;
    const int height = plan.height, width = plan.width;

    gen_ctx g;
    memset(&g, 0, sizeof g);
    g.e = e;
    g.p = p;
    g.plan = plan;
    g.tap = tp;
    g.t0 = cvx_time_seconds();
    g.steps = p->steps;
    g.cache = p->cache;
    if (g.cache.mode == CVX_CACHE_TEACACHE && !g.cache.has_coefficients) {
        cvx_teacache_published_coefficients(tr->cfg.transformer.use_rotary_positional_embeddings, g.cache.coefficients);
        g.cache.has_coefficients = 1;
    }
    g.params_hash = cvx_ckpt_params_hash(p, &g.cache, height, width, e->model_id);
    g.world = cvx_dist_world();
    g.rank = cvx_dist_rank(g.world);
    const double comm_s0 = cvx_dist_seconds();
    const int out_frames = plan.out_frames;
    plan_progress(&g);
    double seconds[4] = {0, 0, 0, 0};
    float *embeds = NULL, *latents = NULL;
    int64_t Dt = 0;
    outputs o;
    memset(&o, 0, sizeof o);

    report(&g, CVX_PHASE_ENCODE, 0, 0);
    double t = cvx_time_seconds();
    st = encode_text(&g, &embeds, &Dt);
    seconds[CVX_PHASE_ENCODE] = cvx_time_seconds() - t;
    if (st != CVX_OK) goto done;
    cvx_log_info(&e->logger, "encode: %.2fs", seconds[CVX_PHASE_ENCODE]);
    g.frames_total = out_frames;
    if (p->progress && g.rank == 0) probe_decode(&g);
    g.collective = 1; /* from here to the end of the denoising every rank polls at the same points */
    if (poll_cancel(&g)) {
        st = cvx_fail(&e->err, CVX_ERR_CANCELLED, "cancelled");
        goto done;
    }

    latents = malloc(sizeof(float) * (size_t)(F * C * H * W));
    if (!latents) {
        st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for the latents");
        goto done;
    }
    t = cvx_time_seconds();
    const double dcomm_s0 = cvx_dist_seconds();
    const uint64_t dcomm_b0 = cvx_dist_bytes_sent();
    st = denoise(&g, embeds, latents);
    seconds[CVX_PHASE_DENOISE] = cvx_time_seconds() - t;
    if (out) { /* the stage times so far, also for a run stopped after its denoising (bench --no-decode) */
        out->denoise_comm_seconds = cvx_dist_seconds() - dcomm_s0, out->denoise_comm_bytes = cvx_dist_bytes_sent() - dcomm_b0;
        memcpy(out->seconds, seconds, sizeof seconds);
    }
    free(embeds);
    embeds = NULL;
    if (st != CVX_OK) goto done;
    int n_computed = 0;
    for (int64_t i = 0; i < g.n_timesteps; i++) n_computed += g.computed[i];
    cvx_log_info(&e->logger, "denoise: %d steps in %.2fs (%s; transformer blocks ran at %d of them)", p->steps,
                 seconds[CVX_PHASE_DENOISE], p->precision == CVX_PRECISION_BF16 ? "bf16" : "fp32", n_computed);
    /* A cancel asked for during the last step stops here, before the VAE loads: the VAE polls only after a frame
     * batch, and a short video is one batch (the whole decode). */
    if (poll_cancel(&g)) {
        st = cvx_fail(&e->err, CVX_ERR_CANCELLED, "cancelled");
        goto done;
    }
    g.collective = 0;
    char latents_sha256[65];
    cvx_sha256_hex(latents, sizeof(float) * (size_t)(F * C * H * W), latents_sha256);
    if (out) {
        memcpy(out->latents_sha256, latents_sha256, sizeof latents_sha256);
        out->ranks = cvx_dist_size(g.world);
        out->rank = g.rank;
        out->seed = p->seed;
        out->fps = p->fps;
        memcpy(out->seconds, seconds, sizeof seconds);
    }
    t = cvx_time_seconds();
    /* Several processes decode together, each a band of rows (vae.h); rank 0 alone writes: its outputs open or
     * not for everyone. */
    const int ranks = cvx_dist_size(g.world);
    int32_t open_st = g.rank == 0 ? (int32_t)outputs_open(&g, &o) : (int32_t)CVX_OK;
    if (ranks > 1 && cvx_dist_bcast(g.world, &open_st, sizeof open_st, 0, &e->err) != CVX_OK) open_st = CVX_ERR_IO;
    if ((st = (cvx_status)open_st) != CVX_OK) goto done;
    g.collective = ranks > 1; /* the decoder's cancel polls are everyone's */
    st = decode(&g, latents, &o);
    g.collective = 0;
    seconds[CVX_PHASE_DECODE] = cvx_time_seconds() - t - o.write_seconds;
    if (out) out->seconds[CVX_PHASE_DECODE] = seconds[CVX_PHASE_DECODE];
    if (st != CVX_OK || g.rank != 0) goto done;
    cvx_log_info(&e->logger, "decode: %.2fs", seconds[CVX_PHASE_DECODE]);
    t = cvx_time_seconds();
    if (poll_cancel(&g)) {
        st = cvx_fail(&e->err, CVX_ERR_CANCELLED, "cancelled");
        goto done;
    }
    report(&g, CVX_PHASE_WRITE, 0, 0);
    st = outputs_close(&g, &o);
    seconds[CVX_PHASE_WRITE] = cvx_time_seconds() - t + o.write_seconds;
    if (st != CVX_OK) goto done;
    report(&g, CVX_PHASE_WRITE, 1, 0);
    if (out) {
        out->num_frames = (int)o.shape[2];
        out->height = (int)o.shape[3];
        out->width = (int)o.shape[4];
        out->fps = p->fps;
        out->frames = o.frames;
        out->seed = p->seed;
        memcpy(out->seconds, seconds, sizeof seconds);
        o.frames = NULL;
        out->computed_steps = malloc(sizeof(int) * (size_t)(g.n_timesteps ? g.n_timesteps : 1));
        if (!out->computed_steps) {
            cvx_video_free(out);
            st = cvx_fail(&e->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
        for (int64_t i = 0; i < g.n_timesteps; i++)
            if (g.computed[i]) out->computed_steps[out->num_computed_steps++] = (int)i;
    }
done:
    if (st == CVX_ERR_CANCELLED || g.cancelled) {
        st = CVX_ERR_CANCELLED;
        cvx_fail(&e->err, CVX_ERR_CANCELLED, "cancelled");
    }
    if (st != CVX_OK) outputs_abort(&g, &o);
    if (out) out->comm_bytes = cvx_dist_bytes_sent(), out->comm_seconds = cvx_dist_seconds() - comm_s0;
    free(o.frames);
    free(g.computed);
    free(latents);
    free(embeds);
    return st;
}

cvx_status cvx_generate(cvx_engine *e, const cvx_generate_params *p, cvx_video *out) {
    return cvx_generate_tapped(e, p, out, NULL);
}
