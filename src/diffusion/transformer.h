/* CogVideoXTransformer3DModel (diffusers 0.30.3 models/transformers/cogvideox_transformer_3d.py): the
 * denoiser of CogVideoX-2b (3-D sin-cos positions) and -5b (3-D RoPE passed in by the pipeline).
 *
 * Dimension letters: B batch, F latent frames, C latent channels (in/out), H × W latent size, p patch,
 * Hp = H/p, Wp = W/p, N = F·Hp·Wp video tokens, L text tokens, S = L + N joint tokens, D = heads · Dh inner dim,
 * Dt text_embed_dim, E time_embed_dim.
 *
 *   latents [B, F, C, H, W] ─patch conv per frame─▶ video tokens [B, N, D] (frame, row, column order)
 *   text [B, L, Dt] ─text_proj─▶ [B, L, D];  joint x = cat([text, video]) [B, S, D] (+ sincos table, 2b;
 *   + the learned table [L + N, D] over text AND video rows, 5b-I2V at its sample size; another frame count
 *   recomputes the sincos table as v0.30.3 does, another height/width is refused as v0.30.3 raises)
 *   5b-I2V: C_in = 32 (noisy latents | image latents on the channel axis), C_out = 16
 *   t [B] int64 ─sinusoid over D channels [cos | sin]─▶ linear_1 → SiLU → linear_2 = emb [B, E]
 *   every block: LayerNormZero(emb) on both streams → joint attention (q/k per-head LayerNorm, RoPE on the
 *                video rows) → gated residual → LayerNormZero → tanh-GELU FF on cat → gated residual
 *   norm_final → AdaLayerNorm(emb) (shift, scale) → proj_out [B, N, C·p·p] → unpatchify [B, F, C, H, W]
 *
 * Weights stay in their stored dtype (F32/F16/BF16, mmap'd) and are up-cast inside the kernels; all
 * activations are f32 in one arena sized from the call's shapes. That is the reference path; see
 * cvx_dit_set_precision for the bf16 one. */
#ifndef CVX_DIFFUSION_TRANSFORMER_H
#define CVX_DIFFUSION_TRANSFORMER_H

#include <jansson.h>
#include <stdint.h>

#include "cogvideox.h" /* cvx_precision */
#include "core/dist.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/threadpool.h"

typedef enum { CVX_DIT_GELU_TANH = 0, CVX_DIT_GELU_ERF = 1 } cvx_dit_activation;

/* The diffusers config.json fields that change the computation (class defaults for absent keys). */
typedef struct {
    int num_attention_heads;          /* 30 */
    int attention_head_dim;           /* 64 */
    int in_channels, out_channels;    /* 16, 16 */
    int flip_sin_to_cos;              /* 1 */
    double freq_shift;                /* 0 */
    int time_embed_dim;               /* 512 */
    int text_embed_dim;               /* 4096 */
    int num_layers;                   /* 30 */
    int attention_bias;               /* 1 */
    int sample_width, sample_height, sample_frames; /* 90, 60, 49 */
    int patch_size;                   /* 2 */
    int temporal_compression_ratio;   /* 4 */
    int max_text_seq_length;          /* 226 */
    cvx_dit_activation activation;    /* "gelu-approximate" */
    int norm_elementwise_affine;      /* 1 */
    double norm_eps;                  /* 1e-5 */
    double spatial_interpolation_scale, temporal_interpolation_scale; /* 1.875, 1.0 */
    int use_rotary_positional_embeddings;  /* 0 (2b), 1 (5b) */
    int use_learned_positional_embeddings; /* 0 (1 = 5b-I2V: patch_embed.pos_embedding, with rope) */
    int patch_bias;                   /* 1 (key added after 0.30.3; false drops the patch conv bias) */
    int inner_dim;                    /* derived: heads · head_dim */
} cvx_dit_config;

/* Reads a CogVideoXTransformer3DModel config.json object; rejects wrong types, non-positive sizes and
 * options this engine does not implement, naming the key. */
cvx_status cvx_dit_config_parse(cvx_dit_config *cfg, const json_t *config, cvx_error *err);

typedef struct cvx_dit cvx_dit;

/* Builds the model from a parsed config and a weights path (a folder with one *.safetensors or an index, or
 * a file). Every tensor name/shape derived from the config is checked; the message names the first bad one. */
cvx_status cvx_dit_open(cvx_dit **out, const cvx_dit_config *cfg, const char *weights_path, cvx_error *err);
/* A diffusers folder: DIR/config.json + DIR's safetensors (shards or a single file). */
cvx_status cvx_dit_open_dir(cvx_dit **out, const char *dir, cvx_error *err);
void cvx_dit_free(cvx_dit *m);
const cvx_dit_config *cvx_dit_get_config(const cvx_dit *m);

/* The precision of later forwards. CVX_PRECISION_FP32 (the default) is the reference path.
 * CVX_PRECISION_BF16 converts every weight matrix once, now, into the kernels' packed bf16 layout (≈ 2 bytes
 * per parameter: 3.4 GB for the 2b) and drops the mapping's pages from the process; every linear layer then
 * takes bf16-rounded activations with f32 accumulation, and the attention's q·kᵀ and p·v are bf16 products
 * (kernels.h). LayerNorms (q/k per head included), modulation, rope, gates, GELU, the residual stream and the
 * time/position tables stay f32. Dropping the mapping's pages is what keeps one copy resident: a 1 x 60 x 90
 * CFG forward of the 2b peaks at 3.63 GB RSS in bf16 (3.40 GB packed), 7.02 GB with the f16 pages kept. Switching back to fp32 frees the packed copies. Fails (recorded on the model,
 * precision unchanged: fp32) when out of memory or for an unknown value. */
cvx_status cvx_dit_set_precision(cvx_dit *m, cvx_precision precision, cvx_pool *pool);
cvx_precision cvx_dit_get_precision(const cvx_dit *m);
/* Bytes of the packed bf16 weights (0 in fp32). */
uint64_t cvx_dit_packed_bytes(const cvx_dit *m);
/* The model's last failure (forward errors are recorded here). */
const cvx_error *cvx_dit_error(const cvx_dit *m);

/* An observer of stage activations (golden tests), like cvx_t5_tap. Names and layouts (joint tensors are
 * [B, S, D] with each batch's L text rows first):
 *   "time_proj" [B, D], "time_embedding" [B, E], "text_proj" [B, L, D], "patch_conv" [B, N, D] (video tokens
 *   before positions), "pos_embedding" [N, D] (video rows of the sincos table, 2b only), "patch_embed"
 *   [B, S, D], per block i: "block<i>.norm1" [B, S, D], "block<i>.norm1_mod" [B, 6D] (shift, scale, gate,
 *   enc_shift, enc_scale, enc_gate), "block<i>.attn1" [B, S, D], "block<i>.norm2", "block<i>.norm2_mod",
 *   "block<i>.ff" [B, S, D], "block<i>.out" [B, S, D]; then "norm_final" [B, N, D] ([B, S, D] for rope models, which
 *   normalise the joint sequence), "norm_out" [B, N, D],
 *   "proj_out" [B, N, C·p·p].
 * `wants` (NULL = everything) is asked first; `fn` sees a view valid only during the call; a non-OK status
 * from fn stops the forward and is returned. */
typedef struct {
    int (*wants)(void *user_data, const char *name);
    cvx_status (*fn)(void *user_data, const char *name, const cvx_tensor *t);
    void *user_data;
} cvx_dit_tap;
/* Polled between blocks; non-zero stops the forward with CVX_ERR_CANCELLED. */
typedef int (*cvx_dit_cancel_fn)(void *user_data);

typedef struct {
    int64_t B, F, H, W; /* latent batch/frames/size; C is the config's in_channels */
    int64_t L;          /* text tokens */
    const float *latents;  /* [B, F, C_in, H, W] */
    const float *text;     /* [B, L, Dt] */
    const int64_t *timesteps; /* [B] */
    const float *rope_cos, *rope_sin; /* [N, Dh] each, required iff use_rotary_positional_embeddings */
    float *out;            /* [B, F, C_out, H, W] */
    cvx_pool *pool;        /* NULL: single-threaded */
    const cvx_dit_tap *tap; /* NULL: no observer */
    cvx_dit_cancel_fn cancel;
    void *cancel_user_data;
    /* Sequence parallel (Ulysses): NULL or a group of size 1 = this process computes everything. With a group of
     * dg ranks (every rank of it calls with the same arguments): each rank takes S/dg consecutive joint tokens of
     * each batch item for every per-token operation, two all-to-alls around the attention regroup them by heads
     * (num_attention_heads/dg per rank, over all S tokens), and `out` ends up complete on every rank. dg must
     * divide the head count; no observer (tap) and no TeaCache state. Every row takes the arithmetic of the
     * one-process forward, so the output is bit-identical. */
    const cvx_dist *seq;
} cvx_dit_call;

/* Ranks of a sequence-parallel group at most. */
#define DIT_MAX_SEQ_RANKS 64

/* One forward pass (one at a time per model: the activations live in the model's arena). Shape errors (H or W not a multiple of p, L ≠ max_text_seq_length with sincos
 * positions, missing rope tables) fail before any work. */
cvx_status cvx_dit_forward(cvx_dit *m, const cvx_dit_call *call);

/* TeaCache step skipping (ali-vilab/TeaCache, eval/teacache/experiments/cogvideox.py, teacache_forward): the
 * state one denoising loop carries from forward to forward, attached to the model with cvx_dit_set_teacache.
 * Each forward computes emb [B, E] first; step 0 and step num_steps − 1 always run the blocks and reset
 * acc = 0; at every other step
 *     acc += poly1d(coefficients)(mean|emb − emb_prev| / mean|emb_prev|)
 * (the means over the whole [B, E] tensor, in f32 as torch's .mean(); the ratio is an f32 .item(), the
 * polynomial float64 as numpy's), and while acc < threshold the blocks are SKIPPED: the patch-embedded joint
 * input x [B, S, D] (positions included) gets the residual the block stack added at the last computed step
 * (previous_residual for the video rows, previous_residual_encoder for the text rows: one joint buffer), and
 * only the head runs (norm_final — on the video rows for sincos models, on the joint sequence then sliced for
 * rope models —, norm_out(emb), proj_out, unpatchify). Otherwise the blocks run, acc = 0 and the residual is
 * x_after_blocks − x_before_blocks. emb_prev = emb after every forward, skipped or not. */
typedef struct {
    double threshold;        /* rel_l1_thresh */
    double coefficients[5];  /* np.poly1d order: c[0]·x⁴ + c[1]·x³ + c[2]·x² + c[3]·x + c[4] */
    /* set by the caller before each forward */
    int64_t step, num_steps; /* the loop's index and length */
    /* carried from forward to forward (what a checkpoint must save) */
    double acc;              /* accumulated_rel_l1_distance */
    int has_prev;            /* emb_prev holds a value */
    int has_residual;        /* residual holds a computed step's residual */
    int64_t B, S, D, E;      /* the shapes it was made for */
    float *emb_prev;         /* [B, E] previous_modulated_input */
    float *residual;         /* [B, S, D] joint layout (each batch's L text rows first) */
    /* what the last forward did */
    int computed;            /* 1: the blocks ran; 0: skipped */
    double rel_l1;           /* the distance before the polynomial (NAN on the first and the last step) */
} cvx_dit_teacache;

/* The published coefficients (TeaCache's cogvideox.py): CogVideoX-2b (sincos positions) when rotary == 0,
 * CogVideoX-5b (rotary) otherwise. */
void cvx_teacache_published_coefficients(int rotary, double out[5]);
/* Allocates the state for B batch rows (the CFG batch) of S joint tokens (≈ B·S·D·4 bytes: 273 MB for a full-size
 * 2b CFG step); acc = 0, nothing cached yet. */
cvx_status cvx_dit_teacache_init(cvx_dit_teacache *tc, const cvx_dit_config *cfg, int64_t B, int64_t S,
                                 double threshold, const double coefficients[5], cvx_error *err);
void cvx_dit_teacache_release(cvx_dit_teacache *tc);
/* Attaches a TeaCache state to later forwards (NULL detaches: every forward runs the blocks, as without).
 * The model does not own it. A forward whose shapes differ from the state's fails. */
void cvx_dit_set_teacache(cvx_dit *m, cvx_dit_teacache *tc);

/* Wall time of the last forward by part (seconds): q/k/v/out projections, attention, feed-forward, all. */
typedef struct {
    double projections, attention, feed_forward, total;
    double communication; /* sequence parallel: the all-to-alls and the gather of the output (part of total) */
} cvx_dit_timings;
const cvx_dit_timings *cvx_dit_last_timings(const cvx_dit *m);

/* Floating-point operations of one forward at these sizes (multiply-add = 2), for benchmarks. */
double cvx_dit_flops(const cvx_dit_config *cfg, int64_t B, int64_t F, int64_t H, int64_t W, int64_t L);

/* The timestep sinusoid of diffusers' get_timestep_embedding as the model calls it (float32 math):
 * out [n, dim], [cos | sin] when flip_sin_to_cos. */
void cvx_dit_timestep_proj(const int64_t *t, int64_t n, int dim, int flip_sin_to_cos, double freq_shift, float *out);

/* The video rows of the 2b sincos table for an F × Hp × Wp token grid: out [F·Hp·Wp, D]
 * (get_3d_sincos_pos_embed: [temporal D/4 | spatial 3D/4], spatial = [x-coordinate | y-coordinate] halves,
 * each [sin | cos]). D must be a multiple of 16. Fails only when out of memory. */
cvx_status cvx_dit_sincos_table(int D, int64_t F, int64_t Hp, int64_t Wp, double spatial_scale, double temporal_scale,
                                float *out);

#endif
