/* The CogVideoX video VAE: diffusers 0.30.3 AutoencoderKLCogVideoX (autoencoder_kl_cogvideox.py, with
 * CogVideoXUpsample3D / CogVideoXDownsample3D), plus what CogVideoXPipeline does around it (decode_latents'
 * permute and 1/scaling_factor, VideoProcessor.postprocess_video) and what the video-to-video path needs from
 * the encoder (DiagonalGaussianDistribution).
 *
 * Dimension letters: B batch, L latent channels (16), T latent frames, H/W latent height/width, F video frames,
 * S = 2^(n_blocks-1) the spatial factor (8).
 *   decode: z [B, L, T, H, W] f32  ->  sample [B, 3, F, S·H, S·W] f32 (raw, unclamped); F = 4T-3 (T odd) or 4T
 *   encode: x [B, 3, F, S·H, S·W]   ->  h [B, 2L, T, H, W] (mean = h[:, :L], logvar = h[:, L:] before clamping)
 * Both run in the reference's frame batches (decode: 2 latent frames, the first batch takes 3 when T is odd;
 * encode: 8 frames, the first takes 8 + F%8) with the causal convs' caches carrying two frames of context from
 * one batch to the next. GroupNorm statistics are per batch, as in the reference, so the batch size is part of
 * the numbers, not an implementation detail.
 *
 * Memory: activations are kept per sample and per frame batch only (channels-last, [T][H][W][C]), the spatial
 * norm's conditioning is computed at the latent resolution and looked up (never interpolated in memory), the
 * upsampler's nearest 2x is done while gathering the conv input, and the resnets write their output over their
 * input frame by frame. The conv caches (2 frames of every causal conv's input: 5.6 GB for a 480x720 decode)
 * go to an unlinked temporary file past params.cache_memory_limit, so a full-size decode peaks at about 5.3 GB
 * (bench/bench_vae); tiled decoding (the reference's enable_tiling) bounds memory by the tile instead (about
 * 3 GB with the default tiles). Weights stay in their stored dtype (mmap'd) and are up-cast
 * exactly, one conv at a time. Compute is f32 (the reference path) unless cvx_vae_set_precision picks bf16. */
#ifndef CVX_VAE_VAE_H
#define CVX_VAE_VAE_H

#include <stdint.h>

#include "core/dist.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "cogvideox.h" /* cvx_precision */
#include "io/config.h"
#include "io/safetensors.h"

typedef struct cvx_vae cvx_vae;

/* Which halves to bind (a text-to-video run needs only the decoder). */
enum { CVX_VAE_DECODER = 1, CVX_VAE_ENCODER = 2, CVX_VAE_BOTH = 3 };

/* Opens a vae folder: config.json + weights (diffusion_pytorch_model.safetensors, an index with shards, or any
 * single .safetensors). Every tensor the config implies for the requested parts is looked up by its checkpoint
 * name and shape-checked; errors name the tensor. */
cvx_status cvx_vae_open(cvx_vae **out, const char *dir, int parts, cvx_error *err);
/* Same with a parsed config and weights the caller keeps open for the model's lifetime (borrowed). */
cvx_status cvx_vae_open_with(cvx_vae **out, const cvx_vae_config *cfg, const cvx_weights *weights, int parts,
                             cvx_error *err);
void cvx_vae_close(cvx_vae *vae);
const cvx_vae_config *cvx_vae_get_config(const cvx_vae *vae);
/* The precision of the conv products of later decodes/encodes. CVX_PRECISION_FP32 (the default) is the
 * reference path. CVX_PRECISION_BF16: every conv (causal 3x3x3, the samplers' 3x3, the 1x1x1 shortcuts) takes
 * bf16-rounded activations (after GroupNorm/SpatialNorm and SiLU) and bf16 weights with f32 accumulation
 * (kernels.h's bf16 path); GroupNorm statistics, the spatial norm, biases, residuals, the conv caches and the
 * frame batching stay f32 and unchanged. Weights are packed into the kernels' bf16 layout once per conv call,
 * as the f32 path packs its own. Fails only for an unknown value. */
cvx_status cvx_vae_set_precision(cvx_vae *vae, cvx_precision precision);
cvx_precision cvx_vae_get_precision(const cvx_vae *vae);
/* The message of the model's last failure. */
const char *cvx_vae_last_error(const cvx_vae *vae);

/* An observer of intermediates (golden tests). `module` is the reference's module path ("decoder.conv_in",
 * "decoder.mid_block.resnets.0.norm1", "decoder.up_blocks.2", "encoder.down_blocks.1", ...); kind is "act"
 * (that module's output), "zq_in" (the spatial norm's interpolated z, module "<norm>.conv_y") or "tile"
 * (module "a.b": the raw decoder output of tile row a, column b). frame_batch is the frame batch (of
 * n_frame_batches) the tensor belongs to (-1 for tiles); sample the index in B. The tensor is [C, T, H, W]
 * f32 and valid only during the call. `wants` (may be NULL = everything) lets the model skip building
 * tensors nobody looks at. A non-OK status from fn stops the call and is returned. */
typedef struct {
    int (*wants)(void *user_data, const char *kind, const char *module, int frame_batch, int n_frame_batches);
    cvx_status (*fn)(void *user_data, const char *kind, const char *module, int frame_batch, int n_frame_batches,
                     int sample, const cvx_tensor *t);
    void *user_data;
} cvx_vae_tap;

typedef struct {
    /* Latent frames per decoder call (the reference's num_latent_frames_batch_size = 2) and video frames per
     * encoder call (num_sample_frames_batch_size = 8). */
    int latent_frames_batch;
    int sample_frames_batch;
    /* Tiled decoding (AutoencoderKLCogVideoX.enable_tiling): used when the latent is wider or taller than
     * one tile, exactly as the reference decides. Defaults are the reference's: tiles of sample_height/2 x
     * sample_width/2 pixels, overlap factors 1/6 and 1/5. */
    int tiling;
    int64_t tile_sample_min_height, tile_sample_min_width;
    double tile_overlap_factor_height, tile_overlap_factor_width;
    /* Where the conv caches live: in memory unless they would exceed cache_memory_limit bytes (default 2 GiB;
     * a full-size 480x720 decode needs about 5.5 GB of them; < 0: never spill), then in an unlinked temporary
     * file in spill_dir (NULL: $TMPDIR, else /tmp). Setting spill_dir always spills. */
    const char *spill_dir;
    /* Called after every decoder/encoder call on a frame batch; a non-zero return cancels (CVX_ERR_CANCELLED). */
    int (*progress)(void *user_data, int done, int total);
    void *progress_user_data;
    const cvx_vae_tap *tap;
    int64_t cache_memory_limit;
    /* Streaming (untiled decode only): called when the output frames [f0, f1) of `sample` are final in `out`,
     * after each frame batch, so a caller can encode them while the next batch decodes. A non-zero return
     * cancels (CVX_ERR_CANCELLED). Tiled decoding finishes no frame before the last tile row, and calls it once at
     * the end. */
    int (*frames_ready)(void *user_data, int sample, int64_t f0, int64_t f1);
    void *frames_ready_user_data;
    /* Decoding over several processes (NULL or one: this one decodes everything): every rank of dist calls
     * cvx_vae_decode with the same arguments; rank j decodes latent rows [j·H/N, (j+1)·H/N) (split as evenly as
     * they go) of every frame, exchanging the rows next to its band with its neighbours before each convolution
     * and adding the GroupNorm sums over the ranks (as xDiT's DistVAE), and every rank ends with the whole
     * output. Untiled decoding only; H >= N. */
    const cvx_dist *dist;
} cvx_vae_params;

/* The reference's defaults for this model (tiling off), caches spilled past 2 GiB. */
cvx_vae_params cvx_vae_params_default(const cvx_vae *vae);

/* Shape of decode's output for z [B, L, T, H, W] under params (tiling changes the spatial size when the tiles
 * do not cover the latent evenly). Fails (on the model) for shapes the reference refuses, e.g. T = 1
 * (v0.30.3's torch.cat([]) error) or a tile stride of 0. */
cvx_status cvx_vae_decode_shape(cvx_vae *vae, const cvx_vae_params *params, const int64_t z_shape[5],
                                int64_t out_shape[5]);
/* sample = vae.decode(z).sample: z [B, L, T, H, W] f32 (z_shape), out sized by cvx_vae_decode_shape. */
cvx_status cvx_vae_decode(cvx_vae *vae, cvx_pool *pool, const cvx_vae_params *params, const float *z,
                          const int64_t z_shape[5], float *out);

/* Shape of encode's output h for x [B, C, F, H, W]. F must be 1 or >= the frame batch (the reference's
 * torch.cat([]) error otherwise); H and W multiples of S. */
cvx_status cvx_vae_encode_shape(cvx_vae *vae, const cvx_vae_params *params, const int64_t x_shape[5],
                                int64_t h_shape[5]);
/* h = vae.encode(x).latent_dist.parameters (the raw encoder output). */
cvx_status cvx_vae_encode(cvx_vae *vae, cvx_pool *pool, const cvx_vae_params *params, const float *x,
                          const int64_t x_shape[5], float *h);

/* ---- what the pipeline does around the VAE (no model needed) ----------------------------------------- */

/* CogVideoXPipeline.decode_latents' input transform: z[b, c, f] = latents[b, f, c] * (float)(1.0/scaling)
 * (a double division rounded to float: neither x / s nor x * (1.0f/s) gives the reference's bits).
 * latents [B, F, C, H, W] -> z [B, C, F, H, W]. */
void cvx_vae_latents_to_z(const float *latents, const int64_t shape[5], double scaling_factor, float *z);

/* DiagonalGaussianDistribution(h) with h [B, 2L, T, H, W] (n = T·H·W per channel): mean = h[:, :L],
 * logvar = clamp(h[:, L:], -30, 20), std = exp(0.5·logvar); any output may be NULL. sample = mean + std·noise
 * when noise and sample are given. Outputs are [B, L, T, H, W]. */
void cvx_vae_posterior(const float *h, int64_t B, int64_t L, int64_t n, const float *noise, float *mean,
                       float *logvar, float *std, float *sample);
/* The video-to-video pipeline's init_latents = scaling_factor · sample.permute(0, 2, 1, 3, 4):
 * sample [B, L, T, H, W] -> [B, T, L, H, W], the factor rounded to float first (a Python float times an f32
 * tensor). */
void cvx_vae_scale_latents(const float *sample, const int64_t shape[5], double scaling_factor, float *out);

/* VideoProcessor.postprocess_video on a decoded sample [B, C, F, H, W] (shape): v = clamp(x/2 + 0.5, 0, 1) in
 * float32, laid out [B, F, H, W, C]. np: v itself (output_type="np"); u8: round-half-even(v·255) (the "pil"
 * path); u8_trunc: (uint8)(v·255) (export_to_video on "np" frames). Any output may be NULL. */
void cvx_vae_postprocess(const float *sample, const int64_t shape[5], float *np, uint8_t *u8, uint8_t *u8_trunc);
/* The same for the frames [f0, f1) of every sample only; the outputs are [B, f1 − f0, H, W, C]. */
void cvx_vae_postprocess_frames(const float *sample, const int64_t shape[5], int64_t f0, int64_t f1, float *np,
                                uint8_t *u8, uint8_t *u8_trunc);

#endif
