/* The T5 text encoder: transformers' T5EncoderModel (modeling_t5.py: T5Stack of T5Block = T5LayerSelfAttention
 * + T5LayerFF, then final_layer_norm), as the CogVideoX pipeline calls it: text_encoder(ids)[0], no attention
 * mask (every position, pads included, attends to every other), eval mode (no dropout).
 *
 * Dimension letters: B batch, L sequence (226 in CogVideoX), D d_model, H num_heads, K d_kv, I = H·K (inner,
 * may differ from D), F d_ff, V vocab_size, NB relative_attention_num_buckets.
 *   ids [B, L] (I64 or I32)  ->  last_hidden_state [B, L, D] f32
 *
 * Weights stay in their stored dtype (F32/F16/BF16, mmap'd through cvx_weights) and are up-cast exactly on the
 * fly by the kernels; only the small vectors (norm weights, the [NB, H] position-bias table) are copied to f32.
 * Compute is f32 throughout (the reference path) unless cvx_t5_set_precision picks bf16 (see there).
 *
 * Memory: the encoder streams its layers. Each layer's mapped pages are asked for just before it runs
 * (MADV_WILLNEED) and dropped from the process right after (MADV_DONTNEED: a read-only file mapping refaults
 * from the page cache or the file if touched again), so the resident set stays near one layer plus the
 * activations instead of the whole checkpoint (9.5 GB for T5-v1.1-XXL in f16). Measured on the 2b's encoder
 * (bench_bf16, 2 x 226 tokens): peak RSS 0.50 GB fp32 / 0.88 GB bf16, against 9.38 / 9.76 GB with the pages
 * kept; the encode time does not change (the pages are read once per encode either way). */
#ifndef CVX_TEXT_T5_H
#define CVX_TEXT_T5_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "cogvideox.h"  /* cvx_precision */
#include "io/config.h" /* cvx_t5_config: the T5Config reader shared with the model-folder checks */

typedef struct cvx_t5 cvx_t5;

/* Opens a text_encoder folder: config.json (read by cvx_t5_config_read; the activation must be relu, gelu_new,
 * gelu or silu, gated or not) + weights (model.safetensors.index.json and its shards, or a single
 * model.safetensors). Every tensor the config implies is looked up by its checkpoint name and shape-checked;
 * errors name the tensor. The weights stay mapped until cvx_t5_close. */
cvx_status cvx_t5_open(cvx_t5 **out, const char *dir, cvx_error *err);
/* Unmaps the weights and frees everything (NULL is fine). */
void cvx_t5_close(cvx_t5 *model);
const cvx_t5_config *cvx_t5_get_config(const cvx_t5 *model);
/* The message of the model's last failure. */
const char *cvx_t5_last_error(const cvx_t5 *model);
/* Bytes of weight data held (mapped) by the model. */
uint64_t cvx_t5_weight_bytes(const cvx_t5 *model);

/* The precision of the matrix products of later encodes. CVX_PRECISION_FP32 (the default) is the reference
 * path. CVX_PRECISION_BF16: every q/k/v/o/wi/wo product takes bf16-rounded activations and weights with f32
 * accumulation (kernels.h's bf16 path), and so do the attention's q·kᵀ and p·v; the embeddings, RMSNorms,
 * position bias, softmax statistics, activations, the FFN output and the residual stream stay f32 (what
 * transformers keeps in fp32 for T5, `_keep_in_fp32_modules = ["wo"]`, exists because fp16 overflows there; bf16
 * has f32's range). Each layer's weights are packed into the kernels' bf16 layout just before the layer runs and
 * freed after it, so no second copy of the checkpoint is ever resident. Fails only for an unknown value. */
cvx_status cvx_t5_set_precision(cvx_t5 *model, cvx_precision precision);
cvx_precision cvx_t5_get_precision(const cvx_t5 *model);

/* An observer of intermediate tensors (for golden tests). Names, following the reference's hooks:
 *   "relative_position_bucket" I64 [L, L], "position_bias" [1, H, L, L], "embeddings" [B, L, D],
 *   "block.{i}.attn_layernorm_out" [B, L, D], "block.{i}.attn_out_before_residual" [B, L, D],
 *   "block.{i}.after_attn_residual" [B, L, D], "block.{i}.ff_layernorm_out" [B, L, D],
 *   "block.{i}.ff_gated_hidden" [B, L, F] (the input of wo), "block.{i}.out" [B, L, D].
 * `wants` (may be NULL = everything) lets the encoder skip building tensors nobody looks at; `fn` sees a view
 * valid only during the call. A non-OK status from fn stops the encode and is returned. */
typedef struct {
    int (*wants)(void *user_data, const char *name);
    cvx_status (*fn)(void *user_data, const char *name, const cvx_tensor *t);
    void *user_data;
} cvx_t5_tap;

/* out[B, L, D] = T5EncoderModel(ids).last_hidden_state. ids: a [B, L] (or [L]) I64/I32 tensor, every id in
 * [0, V). `pool` may be NULL. Activations live in one arena sized from the shapes, freed before returning.
 * Errors are recorded on the model (cvx_t5_last_error). */
cvx_status cvx_t5_encode(cvx_t5 *model, cvx_pool *pool, const cvx_tensor *ids, float *out);
/* Same, reporting intermediates to `tap` (may be NULL). */
cvx_status cvx_t5_encode_tap(cvx_t5 *model, cvx_pool *pool, const cvx_tensor *ids, float *out,
                             const cvx_t5_tap *tap);

/* The bidirectional relative-position bucket of transformers' T5Attention._relative_position_bucket for
 * relative_position = key_pos - query_pos, computed in float32 as the reference does. */
int64_t cvx_t5_relative_bucket(int64_t relative_position, int64_t num_buckets, int64_t max_distance);

#endif
