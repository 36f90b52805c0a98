/* CogVideoX schedulers: diffusers 0.30.3 CogVideoXDDIMScheduler (scheduling_ddim_cogvideox.py) and
 * CogVideoXDPMScheduler (scheduling_dpm_cogvideox.py), configured from a scheduler_config.json object.
 *
 * Supported configuration (what the CogVideoX checkpoints use; anything else is refused with a message):
 *   beta_schedule "scaled_linear" (no trained_betas), prediction_type v_prediction | epsilon | sample,
 *   timestep_spacing trailing | leading | linspace, rescale_betas_zero_snr, snr_shift_scale, set_alpha_to_one,
 *   steps_offset (leading only, as in the reference), num_train_timesteps T. clip_sample, clip_sample_range and
 *   sample_max_value are accepted and, as in the reference classes, unused.
 *
 * Numerics (see ../shared/golden/README.md, "Schedulers"):
 *  - betas, alphas_cumprod: float64 (torch.linspace(√β0, √β1, T, f64)², cumprod, the SNR shift
 *    a / (s + (1 − s)·a), the zero-terminal-SNR rescale: alphas_cumprod[T−1] == 0 exactly).
 *  - trailing timesteps: np.round(np.arange(T, 0, −T/N)) − 1 with numpy's arange length and fill rule, so some N
 *    (61, 103, ...) give N+1 timesteps ending in −1; np.round is half-to-even.
 *  - step(): prev_t = t − T // N (not the next list entry when T % N ≠ 0); alphas_cumprod is indexed like a
 *    Python sequence (t = −1 is the last entry); prev_t < 0 uses final_alpha_cumprod. The float64 scalar
 *    coefficients are rounded to float32 before they multiply the float32 tensors, each product is rounded,
 *    as torch does with 0-dim float64 tensors × float32 tensors.
 *  - DPM: every step first draws noise from the pipeline's generator; the first step and a step with prev_t < 0
 *    use it (1 draw); otherwise a second draw replaces it for the 2nd-order update. Infinities (λ = −inf at
 *    alpha = 0, +inf at alpha_prev = 1) are genuine IEEE values.
 *
 * Arrays: a sample is n float32 values (any latent shape, flattened); the pipeline owns one cvx_sched_state. */
#ifndef CVX_DIFFUSION_SCHEDULER_H
#define CVX_DIFFUSION_SCHEDULER_H

#include <jansson.h>
#include <stdint.h>

#include "core/error.h"
#include "diffusion/rng.h"

typedef enum {
    CVX_SCHED_AUTO = -1, /* from the config's _class_name */
    CVX_SCHED_DDIM = 0,  /* CogVideoXDDIMScheduler */
    CVX_SCHED_DPM = 1    /* CogVideoXDPMScheduler */
} cvx_sched_kind;

typedef enum { CVX_PRED_EPSILON = 0, CVX_PRED_SAMPLE, CVX_PRED_V } cvx_pred_type;
typedef enum { CVX_SPACING_LEADING = 0, CVX_SPACING_TRAILING, CVX_SPACING_LINSPACE } cvx_spacing;

#define CVX_SCHED_MAX_TRAIN_TIMESTEPS 100000

typedef struct cvx_scheduler cvx_scheduler;

/* Builds a scheduler from a parsed scheduler_config.json object (borrowed). `kind` CVX_SCHED_AUTO takes the class
 * from `_class_name` (which must then be CogVideoXDDIMScheduler or CogVideoXDPMScheduler); an explicit kind reads
 * the same keys whatever the class name says, as diffusers' from_config(other.config) does. `label` names the
 * config in errors (may be NULL). */
cvx_status cvx_scheduler_create(cvx_scheduler **out, const json_t *config, cvx_sched_kind kind, const char *label,
                                cvx_error *err);
void cvx_scheduler_free(cvx_scheduler *s);

cvx_sched_kind cvx_scheduler_kind(const cvx_scheduler *s);
int64_t cvx_scheduler_num_train_timesteps(const cvx_scheduler *s);
cvx_pred_type cvx_scheduler_prediction_type(const cvx_scheduler *s);
const double *cvx_scheduler_betas(const cvx_scheduler *s);          /* [T] */
const double *cvx_scheduler_alphas_cumprod(const cvx_scheduler *s); /* [T] */
/* 1.0 (set_alpha_to_one) or alphas_cumprod[0]. */
double cvx_scheduler_final_alpha_cumprod(const cvx_scheduler *s);

/* The timesteps set_timesteps(N) gives, without changing the scheduler: out must hold N + 1 values; *count gets
 * N, or N + 1 for the trailing-spacing quirk. N must be in 1..T. */
cvx_status cvx_scheduler_timesteps_for(const cvx_scheduler *s, int64_t num_inference_steps, int64_t *out,
                                       int64_t *count, cvx_error *err);
/* set_timesteps(N): stores N (step() needs it for prev_t) and the list. */
cvx_status cvx_scheduler_set_timesteps(cvx_scheduler *s, int64_t num_inference_steps, cvx_error *err);
/* The list of the last set_timesteps (NULL and 0 before the first). */
const int64_t *cvx_scheduler_timesteps(const cvx_scheduler *s, int64_t *count);
int64_t cvx_scheduler_num_inference_steps(const cvx_scheduler *s);

/* What the pipeline loop keeps between steps. */
typedef struct {
    int64_t n;                     /* elements of one sample */
    float *pred_original_sample;   /* [n] the last step's x0; the DPM step reads it as old_pred_original_sample */
    int has_pred;                  /* 0 = None (before the first step) */
    int64_t timestep_back;         /* the previous step's timestep (DPM's timestep_back) */
    int has_back;                  /* 0 = None */
    float *noise[2];               /* [n] each: the DPM draws of the last step */
    int n_noise;                   /* how many the last step drew (0 for DDIM) */
    cvx_rng_path noise_path;       /* numerics of those draws (CVX_RNG_AVX2, as torch on x86-64) */
} cvx_sched_state;

/* Allocates the buffers for samples of n elements and sets the state to "before the first step". */
cvx_status cvx_sched_state_init(cvx_sched_state *st, int64_t n, cvx_error *err);
void cvx_sched_state_release(cvx_sched_state *st);

/* The scalar coefficients of one step, float64 (diagnostics; NaN where the step has none). */
typedef struct {
    int64_t prev_timestep;
    double alpha_t, alpha_prev, alpha_back;
    double a_t, b_t;                          /* DDIM: prev = a_t·sample + b_t·x0 */
    double h, r, lamb, lamb_next;             /* DPM */
    double mult1, mult2, mult3, mult4, mult_noise;
} cvx_sched_coefs;

/* Coefficients for a step at `timestep` (with timestep_back when has_back), as step() computes them. */
cvx_status cvx_scheduler_coefs(const cvx_scheduler *s, int64_t timestep, int has_back, int64_t timestep_back,
                               cvx_sched_coefs *c, cvx_error *err);

/* One step, as pipeline_cogvideox.py calls it:
 *   DDIM: prev_sample = step(model_output, t, sample)            (deterministic; g is not used and may be NULL)
 *   DPM:  prev_sample, x0 = step(model_output, old_x0, t, t_back, sample, generator=g)
 * Reads st->pred_original_sample / has_pred / timestep_back / has_back as the old values, then stores this step's
 * x0 and t there (so a loop just calls it once per timestep). prev_sample may alias sample. */
cvx_status cvx_scheduler_step(const cvx_scheduler *s, cvx_sched_state *st, const float *model_output,
                              int64_t timestep, const float *sample, cvx_rng *g, float *prev_sample, cvx_error *err);

/* scheduler.add_noise(x, noise, t) of both classes (DDPM-style, as the video-to-video pipeline calls it):
 * a = sqrt(f32(alphas_cumprod[t])), b = sqrt(1 − f32(alphas_cumprod[t])), both in float32 (alphas_cumprod is cast
 * to the sample's dtype first), out = a·x + b·noise with every product rounded to f32. t in [0, T). out may
 * alias x or noise. coefs (may be NULL) gets {a, b}. */
cvx_status cvx_scheduler_add_noise(const cvx_scheduler *s, int64_t timestep, const float *x, const float *noise,
                                   int64_t n, float *out, float coefs[2], cvx_error *err);

#endif
