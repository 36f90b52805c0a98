/* The 3-D rotary position tables the CogVideoX pipeline hands to the 5b transformer
 * (diffusers 0.30.3 CogVideoXPipeline._prepare_rotary_positional_embeddings → get_resize_crop_region_for_grid
 * + embeddings.get_3d_rotary_pos_embed(use_real=True)).
 *
 * Dimension letters: T latent frames, gh × gw patch grid (pixels // (vae_scale_spatial · patch)), Dh head dim.
 * Output: cos, sin [T·gh·gw, Dh], rows t-major, then h, then w (the video token order); along Dh the channels
 * are [temporal Dh/4 | height 3Dh/8 | width 3Dh/8], each frequency repeated twice (interleaved pairs).
 * The crop region against the 720×480 base grid uses Python's round (half to even); positions come from a
 * float64 linspace rounded to float32; frequency × position products and cos/sin are float32 values. */
#ifndef CVX_DIFFUSION_ROPE_H
#define CVX_DIFFUSION_ROPE_H

#include <stdint.h>

#include "core/error.h"

typedef struct {
    int height_px, width_px;  /* output video size in pixels */
    int num_latent_frames;    /* T */
    int vae_scale_spatial;    /* 2^(len(vae.block_out_channels)-1) = 8 */
    int patch_size;           /* transformer config patch_size */
    int head_dim;             /* transformer config attention_head_dim */
    double theta;             /* 10000 */
    int base_width_px, base_height_px; /* the pipeline's fixed 720 × 480 reference grid */
} cvx_rope_params;

/* The pipeline's values for a given size: theta 10000, base 720×480, vae scale 8, patch 2. */
cvx_rope_params cvx_rope_params_default(int height_px, int width_px, int num_latent_frames, int head_dim);

/* get_resize_crop_region_for_grid((gh, gw), base_w, base_h): crops = ((top, left), (bottom, right)). */
void cvx_rope_crop_region(int gh, int gw, int base_w, int base_h, int crop[4]);

/* Grid size and row count for the params; fails on sizes that give an empty grid or a head_dim the three
 * axes cannot split. */
cvx_status cvx_rope_shape(const cvx_rope_params *p, int *gh, int *gw, int64_t *rows, cvx_error *err);

/* Fills cos and sin, each [rows, head_dim] (rows from cvx_rope_shape). */
cvx_status cvx_rope_tables(const cvx_rope_params *p, float *cos_out, float *sin_out, cvx_error *err);

#endif
