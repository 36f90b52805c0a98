/* make-model: writes a complete diffusers-layout CogVideoX pipeline folder with deterministic random weights.
 *
 * Presets:
 *   "cogvideox-2b"  the real configs of THUDM/CogVideoX-2b (text_encoder = T5-v1.1-XXL, 4.76 B parameters;
 *                   transformer 1.69 B; VAE 216 M): ≈ 13 GB in f16. Used by benchmarks.
 *   "cogvideox-5b-i2v"  the configs of THUDM/CogVideoX-5b-I2V (diffusers 0.30.3): the 5b transformer (48 heads
 *                   x 64, 42 layers) with in_channels 32 and patch_embed.pos_embedding [1, 226 + 17550, 3072] beside
 *                   rope; the 2b's T5 and VAE (scaling_factor 0.7), the 5b's scheduler: ≈ 21 GB in f16.
 *   "tiny-i2v"      the tiny sizes with the 5b-I2V options (in_channels 32, rope + learned table).
 *   "tiny"          the same configs with small sizes (T5 16-wide × 2 layers over the real 32128-token
 *                   vocabulary, transformer 2 heads × 16 × 2 layers at 9 frames × 6 × 10 latents, VAE channels
 *                   4/8/8/16): a few MB, generates in seconds. Used by tests and the demo.
 * Layout (what diffusers' / transformers' save_pretrained write): model_index.json; tokenizer/ (the real T5
 * spiece.model and tokenizer JSON files, embedded in the binary); text_encoder/ config.json + shards split by
 * the huggingface_hub rule + model.safetensors.index.json; transformer/ and vae/ config.json +
 * diffusion_pytorch_model.safetensors (sharded the same way past 5 GB); scheduler/scheduler_config.json.
 * Config files are byte-identical to what the reference writes (json.dumps(indent=2, sort_keys=True)).
 *
 * Weights: every tensor draws from its own counter-based stream, keyed by (seed, tensor name), so tensors are
 * independent of each other and of the thread count, and generation is parallel. Scales keep activations of
 * the full-size model finite: Linear/Conv weights ~ N(0, 1/fan_in), biases 0.02·N, norm scales 1 + 0.1·N,
 * norm shifts 0.02·N, embeddings N(0, 1). Writing streams one tensor at a time (memory: the largest tensor). */
#ifndef CVX_IO_MODEL_MAKER_H
#define CVX_IO_MODEL_MAKER_H

#include <jansson.h>
#include <stdint.h>

#include "cogvideox.h"
#include "core/error.h"
#include "core/tensor.h"
#include "io/model.h"

/* Called after each tensor is written: `file` is the path being written, done/total count tensor bytes over
 * the whole folder. */
typedef void (*cvx_make_model_progress_fn)(const char *file, uint64_t done, uint64_t total, void *user_data);

typedef struct {
    const char *preset; /* "tiny" (default) | "cogvideox-2b" */
    uint64_t seed;      /* 0 */
    cvx_dtype dtype;    /* storage: CVX_DTYPE_F16 (default), CVX_DTYPE_BF16 or CVX_DTYPE_F32 */
    int threads;        /* 0: all cores */
    cvx_make_model_progress_fn progress;
    void *user_data;
} cvx_make_model_params;

cvx_make_model_params cvx_make_model_params_default(void);
/* Whether make-model knows the preset (tiny, tiny-6h, tiny-i2v, cogvideox-2b, cogvideox-5b-i2v). */
int cvx_make_model_preset_known(const char *preset);

/* Writes the folder (created if needed; weight files of a previous run in its component folders are
 * replaced). model_index.json is written last, so an interrupted run leaves a folder that does not open. */
cvx_status cvx_make_model(const char *dir, const cvx_make_model_params *params, cvx_error *err);

/* Element i of the tensor e as make-model draws it with `seed` (before rounding to the stored dtype); t5_d_kv > 0
 * for the T5 encoder's tensors. cvx_engine_info compares a few with a folder's to tell random weights written
 * before make-model wrote its marker file. */
float cvx_make_model_value(uint64_t seed, const cvx_expected_tensor *e, int64_t t5_d_kv, uint64_t i);

/* The preset's config for `component` ("model_index", "text_encoder", "transformer", "vae", "scheduler"),
 * as a new JSON object (caller decrefs). */
cvx_status cvx_make_model_config(const char *preset, const char *component, json_t **out, cvx_error *err);

/* huggingface_hub's split_state_dict_into_shards_factory over tensors in state_dict order: a tensor larger
 * than max_bytes gets a shard of its own (appended at once), otherwise a shard is closed when the next tensor
 * would push it past max_bytes. shard_of[i] (caller-allocated, l->n entries) gets each tensor's shard;
 * returns the number of shards (>= 1 for a non-empty list). */
int cvx_shard_split(const cvx_tensor_list *l, size_t elem_size, uint64_t max_bytes, int *shard_of);
/* "<stem>-0000i-of-0000n.safetensors", or "<stem>.safetensors" for a single shard. */
void cvx_shard_filename(char *buf, size_t size, const char *stem, int shard, int n_shards);
/* The index file's JSON {"metadata": {"total_size": N}, "weight_map": {name: file}} (caller decrefs). */
json_t *cvx_shard_index_json(const cvx_tensor_list *l, const int *shard_of, int n_shards, const char *stem,
                             size_t elem_size);

#endif
