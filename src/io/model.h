/* Model folders: a diffusers pipeline folder (CogVideoXPipeline and its image/video-to-video siblings) —
 * model_index.json → components and classes → each component's config.json and weight files.
 *
 * The names and shapes every component's checkpoint must hold are derived from its config, in one place per
 * class (cvx_model_expected_tensors), in the reference's state_dict order:
 *   T5EncoderModel              (transformers modeling_t5.py; 219 saved tensors for T5-v1.1-XXL)
 *   CogVideoXTransformer3DModel (diffusers 0.30.3; 736 tensors for 2b, 1024 for 5b)
 *   AutoencoderKLCogVideoX      (diffusers 0.30.3; 436 tensors for 2b)
 * cvx_model_open checks them against the files: a missing, extra or misshapen tensor is an error naming the
 * tensor and the component. The engine's loaders bind the same names. */
#ifndef CVX_IO_MODEL_H
#define CVX_IO_MODEL_H

#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"
#include "io/config.h"
#include "io/safetensors.h"

/* ---- expected tensors ------------------------------------------------------------------------------------ */
/* What a parameter is, so that random initialisation (make-model) and reports can treat it by kind. */
typedef enum {
    CVX_PARAM_WEIGHT = 0,   /* a Linear / Conv weight: fan_in is its input width × kernel volume */
    CVX_PARAM_BIAS,         /* a Linear / Conv bias */
    CVX_PARAM_NORM_WEIGHT,  /* LayerNorm / RMSNorm / GroupNorm scale (≈ 1) */
    CVX_PARAM_NORM_BIAS,    /* LayerNorm / GroupNorm shift (≈ 0) */
    CVX_PARAM_EMBEDDING,    /* a lookup table (T5 shared.weight, relative_attention_bias) */
    CVX_PARAM_POS_EMBEDDING /* a learned positional table */
} cvx_param_kind;

#define CVX_TENSOR_NAME_MAX 96

typedef struct {
    char name[CVX_TENSOR_NAME_MAX];     /* the checkpoint name */
    char alt_name[CVX_TENSOR_NAME_MAX]; /* another accepted name for the same tensor, or "" (T5's tied
                                           encoder.embed_tokens.weight for shared.weight) */
    int ndim;
    int64_t shape[CVX_MAX_DIMS];
    int64_t numel;
    cvx_param_kind kind;
    int64_t fan_in; /* for CVX_PARAM_WEIGHT: inputs per output; else 0 */
} cvx_expected_tensor;

typedef struct {
    cvx_expected_tensor *t; /* in the reference's state_dict order */
    size_t n, cap;
    int64_t numel; /* sum over t */
} cvx_tensor_list;

/* The tensors a checkpoint of class `cls` with config `cfg` holds. cfg is the component's config.json (for the
 * T5 encoder the transformers config). Fills *out (free with cvx_tensor_list_free, also after a failure). */
cvx_status cvx_model_expected_tensors(cvx_class cls, const cvx_config *cfg, cvx_tensor_list *out, cvx_error *err);
void cvx_tensor_list_free(cvx_tensor_list *l);
/* Index of `name` (or of the entry whose alt_name it is), or -1. Linear scan. */
long cvx_tensor_list_find(const cvx_tensor_list *l, const char *name);

/* ---- a pipeline folder ----------------------------------------------------------------------------------- */
#define CVX_MODEL_MAX_COMPONENTS 8

typedef struct {
    char name[32];       /* "transformer" (the model_index.json key, also the sub-folder) */
    char library[32];    /* "diffusers" | "transformers" */
    char class_name[64]; /* as model_index.json spells it */
    cvx_class cls;
    char *dir;          /* DIR/name */
    cvx_config *config; /* config.json / scheduler_config.json / tokenizer_config.json (NULL when absent) */
    union {
        cvx_t5_config t5;
        cvx_transformer_config transformer;
        cvx_vae_config vae;
        cvx_scheduler_config scheduler;
    } cfg;                    /* the typed config, by cls */
    cvx_tensor_list expected; /* empty for tokenizer and scheduler */

    /* Filled when the weights were checked (cvx_model_open_params.check_weights). */
    int weights_checked;
    int n_files;                           /* weight files (shards) */
    uint64_t file_bytes;                   /* bytes on disk of the weight files and the index */
    uint64_t data_bytes;                   /* bytes of tensor data */
    int64_t n_params;                      /* elements over all tensors */
    int64_t dtype_params[CVX_DTYPE_COUNT]; /* elements per storage dtype */
    /* Tokenizer: the spiece.model size, and model_max_length when tokenizer_config.json says it. */
    uint64_t spiece_bytes;
    int64_t model_max_length;
} cvx_model_component;

typedef struct cvx_model {
    char *dir;
    char pipeline_class[64]; /* "CogVideoXPipeline", ... */
    char diffusers_version[32];
    cvx_model_component comp[CVX_MODEL_MAX_COMPONENTS]; /* the present ones (n_comp) */
    int n_comp;
    unsigned null_slots; /* internal: components model_index.json lists as [null, null] */
    cvx_error err;
} cvx_model;

typedef struct {
    int check_weights; /* open every weight file and check names/shapes (1); configs only (0) */
} cvx_model_open_params;

cvx_model_open_params cvx_model_open_params_default(void);

/* Opens and validates a pipeline folder. Required components: transformer, vae, scheduler; tokenizer and
 * text_encoder both, or both [null, null] (then cvx_model_component_get returns NULL for them and a generation
 * needs precomputed prompt embeddings) (an unknown class or a missing sub-folder is an error naming it). On failure *out is NULL and err
 * says what is wrong (component, file, tensor). */
cvx_status cvx_model_open(cvx_model **out, const char *dir, const cvx_model_open_params *params, cvx_error *err);
void cvx_model_close(cvx_model *m);
/* The component with that model_index key ("vae"), or NULL. */
const cvx_model_component *cvx_model_component_get(const cvx_model *m, const char *name);

/* Checks one component's weights against its expected tensors (exported for engine loaders that open the
 * weights themselves). Errors name the component, the tensor and `where` (the weights' folder or file). */
cvx_status cvx_model_check_weights(const char *component, const char *where, const cvx_tensor_list *expected,
                                   const cvx_weights *w, cvx_error *err);

/* ---- memory estimate for the default generation ---------------------------------------------------------- */
typedef struct {
    int64_t height, width, frames; /* the default video: sample size × VAE spatial factor, sample_frames (49) */
    int64_t latent_frames;         /* (frames − 1) / temporal ratio + 1 */
    int64_t seq_len;               /* transformer tokens: text + patches */
    uint64_t t5_weights, t5_act;
    uint64_t transformer_weights, transformer_act;
    uint64_t vae_weights, vae_act;
    uint64_t peak;          /* max over the three stages of weights + activations */
    const char *peak_stage; /* "text encoder" | "transformer" | "vae decode" */
} cvx_memory_estimate;

/* Needs the weights checked (stored bytes). */
cvx_status cvx_model_memory_estimate(const cvx_model *m, cvx_memory_estimate *out, cvx_error *err);

#endif
