/* The denoising loop of diffusers 0.30.3 CogVideoXPipeline.__call__ (step 8), from prompt embeddings and
 * initial latents to the final latents (output_type="latent"):
 *
 *   for i, t in enumerate(timesteps):
 *       model_in = cat([latents, latents])                     (CFG: uncond half first)
 *       (I2V: model_in = cat([model_in, cat([image_latents]*2)], dim=2), noise channels first)
 *       v = transformer(model_in, cat([negative, prompt]), t.expand(2·nb), rope).float()
 *       g = 1 + gs·(1 − cos(π·((N − t)/N)^5))/2                 (use_dynamic_cfg; t is the timestep VALUE, float64)
 *       v = v_uncond + g·(v_text − v_uncond)                    (g rounded to float32, as torch's scalar op)
 *       latents = scheduler.step(v, [old x0, t_back,] t, latents, generator)
 *
 * Dimension letters: nb videos, F latent frames, C channels, H × W latent size, L text tokens, Dt text width.
 * Rotary tables (5b) are computed here from the pixel size the pipeline was called with. */
#ifndef CVX_DIFFUSION_DENOISE_H
#define CVX_DIFFUSION_DENOISE_H

#include <stdint.h>

#include "core/error.h"
#include "core/threadpool.h"
#include "diffusion/rng.h"
#include "diffusion/scheduler.h"
#include "diffusion/transformer.h"

/* What a progress callback sees after each step (pointers valid only during the call). */
typedef struct {
    int64_t step, total;         /* 0-based index, number of timesteps */
    int64_t timestep;
    double guidance_scale;       /* the scale this step used (changes per step with dynamic CFG) */
    const float *model_input;    /* [Bm, F, C_in, H, W], Bm = 2·nb with CFG, else nb */
    const float *model_output;   /* [Bm, F, C, H, W] transformer output before guidance */
    const float *latents;        /* [nb, F, C, H, W] after the scheduler step */
    double seconds;              /* wall time of this step */
    /* Everything a resumed loop needs besides the latents (checkpoints): the scheduler's carried state and the
     * generator after this step. */
    const cvx_sched_state *state;
    const cvx_rng *generator;    /* NULL when the loop has none */
    /* TeaCache: whether this step's transformer ran its blocks (1 without a cache) and the state after the step
     * (NULL without a cache), which a checkpoint must save with the rest */
    int computed;
    const cvx_dit_teacache *teacache;
} cvx_denoise_step;

typedef void (*cvx_denoise_progress_fn)(void *user_data, const cvx_denoise_step *step);

typedef struct {
    int64_t num_inference_steps; /* 50 */
    double guidance_scale;       /* 6.0; CFG runs when > 1 */
    int use_dynamic_cfg;         /* 0 */
    int height_px, width_px;     /* the requested video size (rope tables); 480 × 720 */
    int vae_scale_spatial;       /* 8 */
    cvx_pool *pool;
    cvx_denoise_progress_fn progress; /* called after every step (may be NULL) */
    void *progress_user_data;
    cvx_dit_cancel_fn cancel;    /* polled between transformer blocks and between steps (may be NULL) */
    void *cancel_user_data;
    /* Resuming: start at timestep index start_step (0 = the beginning) with `latents` being the latents after
     * step start_step − 1, resume_state the scheduler state after that step (required when start_step > 0) and
     * the generator in its state after that step. The result is identical to an uninterrupted loop. */
    int64_t start_step;
    const cvx_sched_state *resume_state;
    /* TeaCache step skipping (transformer.h): NULL = off, every step runs the blocks. The state must be made for
     * the CFG batch (2·nb with guidance, else nb) and L + N tokens; a resumed loop passes the state saved after
     * step start_step − 1. The loop sets its step/num_steps and attaches it to the model for its duration. */
    cvx_dit_teacache *teacache;
    /* Several processes (NULL or one process: this one computes everything): every rank of `world` calls with the
     * same arguments; with guidance the ranks split into the two CFG halves (uncond: the first N/2), each
     * sequence-parallel over N/2 ranks (transformer.h), and swap their noise predictions after each forward;
     * without guidance all N ranks split the sequence. Every rank ends with the same latents, bit-identical to
     * one process. N must fit the model (cvx_denoise_check_ranks); no TeaCache state. */
    const cvx_dist *world;
    /* Image-to-video (CogVideoXImageToVideoPipeline): the image latents [nb, F, Ci, H, W] concatenated after the
     * noisy latents on the channel axis at every step, in both CFG halves (Ci = in_channels − out_channels; the
     * loop steps the out_channels only). NULL for a model with in_channels == out_channels. */
    const float *image_latents;
    /* Video-to-video (get_timesteps): the loop runs timesteps[first_step:] of the full schedule set for
     * num_inference_steps (prev_t keeps the full N); the step indices the loop reports, resumes from and counts
     * (total) are those of the cut list. 0: the whole list. */
    int64_t first_step;
} cvx_denoise_params;

/* Whether `ranks` processes fit a model of `heads` attention heads (CFG on: N even and N/2 divides the heads; off:
 * N divides them); the message lists the valid N. */
cvx_status cvx_denoise_check_ranks(int heads, int cfg_on, int ranks, cvx_error *err);

cvx_denoise_params cvx_denoise_params_default(void);

/* The guidance scale of a step: gs, or with dynamic CFG the pipeline's float64 formula at timestep t. */
double cvx_denoise_guidance(const cvx_denoise_params *p, int64_t timestep);

/* prepare_latents: randn_tensor([nb, F, C, H, W], generator, float32) × init_noise_sigma (1.0). */
void cvx_denoise_initial_latents(cvx_rng *g, float *latents, int64_t numel);

/* Runs the loop. The scheduler is set to num_inference_steps here; `g` is the generator that drew the initial
 * latents (the DPM scheduler keeps drawing from it; DDIM does not use it and it may be NULL).
 * prompt / negative: [nb, L, Dt] (negative is required when guidance_scale > 1).
 * latents: [nb, F, C, H, W] (C = out_channels), the initial noise in, the final latents out. A cancel gives CVX_ERR_CANCELLED with
 * the latents of the last finished step. Errors are recorded in err. */
cvx_status cvx_denoise(cvx_dit *model, cvx_scheduler *sched, const cvx_denoise_params *p, const float *prompt,
                       const float *negative, int64_t nb, int64_t L, float *latents, int64_t F, int64_t H, int64_t W,
                       cvx_rng *g, cvx_error *err);

#endif
