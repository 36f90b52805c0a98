/* Internal side of the public engine API (include/cogvideox.h): an observer of the stage outputs, used by the
 * end-to-end golden handler to compare every seam (ids, embeddings, noise, latents per step, video, frames)
 * with the reference's CogVideoXPipeline.__call__. */
#ifndef CVX_DIFFUSION_PIPELINE_H
#define CVX_DIFFUSION_PIPELINE_H

#include "cogvideox.h"
#include "core/error.h"
#include "core/tensor.h"
#include "io/model.h"

/* Tensor names, as the e2e golden files spell them:
 *   prompt_input_ids, negative_prompt_input_ids   I64 [1, L]
 *   prompt_embeds, negative_prompt_embeds         F32 [1, L, Dt]
 *   initial_latents                               F32 [1, F, C, H, W]
 *   step_timesteps                                I64 [N]
 *   step0_transformer_output                      F32 [2, F, C, H, W]  (before guidance)
 *   step_latents_after                            F32 [N, 1, F, C, H, W]
 *   final_latents                                 F32 [1, F, C, H, W]
 *   video                                         F32 [1, 3, frames, H·8, W·8]  (decoded, unclamped)
 *   frames_uint8                                  U8 [frames, H·8, W·8, 3]
 * The view is valid only during the call; a non-OK status stops the generation and is returned. */
typedef struct {
    cvx_status (*fn)(void *user_data, const char *name, const cvx_tensor *t);
    void *user_data;
} cvx_pipeline_tap;

cvx_status cvx_generate_tapped(cvx_engine *engine, const cvx_generate_params *params, cvx_video *out,
                               const cvx_pipeline_tap *tap);

/* The latents a checkpoint blob holds (the `state` a cvx_checkpoint_fn receives): [1, F, C, H, W] after step
 * *step of *steps (either may be NULL), *n values; *latents points into the blob, which the pipeline reuses for
 * the next step. A blob that is not a checkpoint of this build is CVX_ERR_FORMAT. */
cvx_status cvx_pipeline_checkpoint_latents(const void *state, size_t size, const float **latents, int64_t *n,
                                           int *step, int *steps, cvx_error *err);

/* What cvx_engine_info reports for an opened model folder (its configs read; weights need not be checked): the
 * defaults and limits from its configs, its name, variant and whether make-model's random-weights marker is there. */
void cvx_model_info_of(const cvx_model *model, const char *dir, cvx_model_info *out);

#endif
