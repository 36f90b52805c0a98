/* Model configs: typed, validated access to a component's config.json (diffusers' ConfigMixin files and
 * transformers' PretrainedConfig files), the class defaults each reference class applies when a key is absent,
 * and a writer that reproduces Python's `json.dumps(obj, indent=2, sort_keys=True) + "\n"` byte for byte (the
 * text diffusers' `save_config` and transformers' `save_pretrained` write).
 *
 * Classes (reference: diffusers 0.30.3, transformers T5Config):
 *   T5EncoderModel               -> cvx_t5_config
 *   CogVideoXTransformer3DModel  -> cvx_transformer_config
 *   AutoencoderKLCogVideoX       -> cvx_vae_config
 *   CogVideoXDDIMScheduler / CogVideoXDPMScheduler -> cvx_scheduler_config
 *
 * Every error names the file (the config's label) and the key. Values are range-checked so that a hostile
 * config can never drive the tensor-name derivation (src/io/model.h) into huge allocations or overflow. */
#ifndef CVX_IO_CONFIG_H
#define CVX_IO_CONFIG_H

#include <jansson.h>
#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

/* The component classes CogVideoX pipelines use (model_index.json spellings via cvx_class_from_name). */
typedef enum {
    CVX_CLASS_UNKNOWN = 0,
    CVX_CLASS_T5_TOKENIZER,   /* transformers T5Tokenizer (also T5TokenizerFast: same spiece.model) */
    CVX_CLASS_T5_ENCODER,     /* transformers T5EncoderModel */
    CVX_CLASS_TRANSFORMER_3D, /* diffusers CogVideoXTransformer3DModel */
    CVX_CLASS_VAE,            /* diffusers AutoencoderKLCogVideoX */
    CVX_CLASS_DDIM_SCHEDULER, /* diffusers CogVideoXDDIMScheduler */
    CVX_CLASS_DPM_SCHEDULER,  /* diffusers CogVideoXDPMScheduler */
    CVX_CLASS_COUNT
} cvx_class;

/* "T5EncoderModel" -> CVX_CLASS_T5_ENCODER, ...; CVX_CLASS_UNKNOWN for anything else. */
cvx_class cvx_class_from_name(const char *name);
/* The canonical class name ("T5Tokenizer", ...); "unknown" for CVX_CLASS_UNKNOWN. */
const char *cvx_class_name(cvx_class cls);

/* ---- a parsed config.json ------------------------------------------------------------------------------ */
typedef struct cvx_config cvx_config;

#define CVX_CONFIG_MAX_FILE (16u << 20) /* a config.json larger than this is rejected */

/* Reads and parses `path` (must hold a JSON object; duplicate keys are rejected). */
cvx_status cvx_config_load(cvx_config **out, const char *path, cvx_error *err);
/* Parses a config held in memory; `label` names it in errors (the fuzzer drives this). */
cvx_status cvx_config_parse(cvx_config **out, const void *text, size_t size, const char *label, cvx_error *err);
/* Wraps an already parsed JSON object (a new reference is taken). */
cvx_status cvx_config_from_json(cvx_config **out, json_t *obj, const char *label, cvx_error *err);
void cvx_config_free(cvx_config *c);
const char *cvx_config_label(const cvx_config *c);
json_t *cvx_config_json(const cvx_config *c); /* borrowed */

/* Is `key` present with a non-null value? */
int cvx_config_has(const cvx_config *c, const char *key);

/* Getters: an absent key (or, for the *_or_null forms, a null) gives `def`; a present key of the wrong type
 * or out of [min, max] is an error naming the file and the key. JSON null is an error for the plain forms. */
cvx_status cvx_config_int(const cvx_config *c, const char *key, int64_t def, int64_t min, int64_t max, int64_t *out,
                          cvx_error *err);
/* Accepts JSON integers and reals (Python passes ints where floats are declared). */
cvx_status cvx_config_float(const cvx_config *c, const char *key, double def, double min, double max, double *out,
                            cvx_error *err);
cvx_status cvx_config_bool(const cvx_config *c, const char *key, int def, int *out, cvx_error *err);
/* *out is borrowed from the config (or is `def`). */
cvx_status cvx_config_string(const cvx_config *c, const char *key, const char *def, const char **out, cvx_error *err);
/* The value must be one of `allowed` (NULL-terminated); *index gets its position. */
cvx_status cvx_config_enum(const cvx_config *c, const char *key, const char *def, const char *const *allowed,
                           int *index, cvx_error *err);
/* An array of at most max_n integers in [min, max]; an absent key gives def[0..ndef). */
cvx_status cvx_config_int_array(const cvx_config *c, const char *key, const int64_t *def, int ndef, int max_n,
                                int64_t min, int64_t max, int64_t *out, int *n, cvx_error *err);
/* An array of at most max_n strings (borrowed); an absent key gives def[0..ndef). */
cvx_status cvx_config_string_array(const cvx_config *c, const char *key, const char *const *def, int ndef, int max_n,
                                   const char **out, int *n, cvx_error *err);

/* ---- typed configs with the class defaults ---------------------------------------------------------------- */
#define CVX_CONFIG_MAX_DIM (1 << 20) /* any width, channel count or vocabulary */
#define CVX_CONFIG_MAX_LAYERS 512
#define CVX_VAE_MAX_BLOCKS 8

/* transformers T5Config (the encoder half is all T5EncoderModel uses). */
typedef struct {
    int64_t vocab_size;                      /* 32128 */
    int64_t d_model;                         /* 512 */
    int64_t d_kv;                            /* 64: per-head width; inner = num_heads * d_kv may differ from d_model */
    int64_t d_ff;                            /* 2048 */
    int64_t num_layers;                      /* 6 */
    int64_t num_heads;                       /* 8 */
    int64_t relative_attention_num_buckets;  /* 32 */
    int64_t relative_attention_max_distance; /* 128 */
    double layer_norm_epsilon;               /* 1e-6 */
    char feed_forward_proj[32];              /* "relu"; "gated-gelu" for T5 v1.1 */
    char dense_act_fn[32];                   /* derived from feed_forward_proj ("gated-gelu" -> "gelu_new") */
    int is_gated_act;                        /* derived: wi_0/wi_1 instead of wi */
    int64_t pad_token_id, eos_token_id;      /* 0, 1 */
} cvx_t5_config;

/* diffusers CogVideoXTransformer3DModel (v0.30.3 __init__). */
typedef struct {
    int64_t num_attention_heads;           /* 30 */
    int64_t attention_head_dim;            /* 64 */
    int64_t in_channels, out_channels;     /* 16, 16 */
    int flip_sin_to_cos;                   /* true */
    int64_t freq_shift;                    /* 0 */
    int64_t time_embed_dim;                /* 512 */
    int64_t text_embed_dim;                /* 4096 */
    int64_t num_layers;                    /* 30 */
    double dropout;                        /* 0.0 */
    int attention_bias;                    /* true: to_q/to_k/to_v carry biases */
    int64_t sample_width, sample_height;   /* 90, 60 (latent pixels) */
    int64_t sample_frames;                 /* 49 (video frames) */
    int64_t patch_size;                    /* 2 */
    int64_t temporal_compression_ratio;    /* 4 */
    int64_t max_text_seq_length;           /* 226 */
    char activation_fn[32];                /* "gelu-approximate" (or "gelu") */
    char timestep_activation_fn[32];       /* "silu" */
    int norm_elementwise_affine;           /* true */
    double norm_eps;                       /* 1e-5 */
    double spatial_interpolation_scale;    /* 1.875 */
    double temporal_interpolation_scale;   /* 1.0 */
    int use_rotary_positional_embeddings;  /* false (2b), true (5b) */
    int use_learned_positional_embeddings; /* false (true only for 5b-I2V) */
    int64_t inner_dim;                     /* derived: heads * head_dim */
} cvx_transformer_config;

/* diffusers AutoencoderKLCogVideoX (v0.30.3 __init__). */
typedef struct {
    int64_t in_channels, out_channels;              /* 3, 3 */
    int n_blocks;                                   /* len(block_out_channels) = len(down/up_block_types) */
    int64_t block_out_channels[CVX_VAE_MAX_BLOCKS]; /* 128, 256, 256, 512 */
    int64_t latent_channels;                        /* 16 */
    int64_t layers_per_block;                       /* 3 (decoder blocks have one more) */
    char act_fn[16];                                /* "silu" */
    double norm_eps;                                /* 1e-6 */
    int64_t norm_num_groups;                        /* 32 */
    double temporal_compression_ratio;              /* 4 (declared float) */
    int temporal_compress_level;                    /* derived: int(log2(ratio)) */
    int64_t sample_height, sample_width;            /* 480, 720 */
    double scaling_factor;                          /* 1.15258426 */
    int has_shift_factor;
    double shift_factor;                     /* null */
    int force_upcast;                        /* true */
    int use_quant_conv, use_post_quant_conv; /* false, false */
} cvx_vae_config;

/* diffusers CogVideoXDDIMScheduler / CogVideoXDPMScheduler (same __init__ in v0.30.3). */
typedef struct {
    cvx_class cls;               /* CVX_CLASS_DDIM_SCHEDULER or CVX_CLASS_DPM_SCHEDULER */
    int64_t num_train_timesteps; /* 1000 */
    double beta_start, beta_end; /* 0.00085, 0.012 */
    char beta_schedule[32];      /* "scaled_linear" | "linear" | "squaredcos_cap_v2" */
    int clip_sample;             /* true */
    int set_alpha_to_one;        /* true */
    int64_t steps_offset;        /* 0 */
    char prediction_type[32];    /* "epsilon" | "v_prediction" | "sample" */
    double clip_sample_range;    /* 1.0 */
    double sample_max_value;     /* 1.0 */
    char timestep_spacing[16];   /* "leading" | "trailing" | "linspace" */
    int rescale_betas_zero_snr;  /* false */
    double snr_shift_scale;      /* 3.0 */
} cvx_scheduler_config;

cvx_status cvx_t5_config_read(const cvx_config *c, cvx_t5_config *out, cvx_error *err);
cvx_status cvx_transformer_config_read(const cvx_config *c, cvx_transformer_config *out, cvx_error *err);
cvx_status cvx_vae_config_read(const cvx_config *c, cvx_vae_config *out, cvx_error *err);
/* cls: which scheduler class the config is read as (model_index.json decides; `_class_name` must agree when
 * present, except that DDIM and DPM configs are interchangeable as diffusers' from_config allows). */
cvx_status cvx_scheduler_config_read(const cvx_config *c, cvx_class cls, cvx_scheduler_config *out, cvx_error *err);

/* ---- writing configs as Python does ---------------------------------------------------------------------- */
/* `json.dumps(v, indent=2, sort_keys=True) + "\n"` (ensure_ascii, floats as Python's repr). The result is
 * malloc'd (caller frees); NULL when out of memory or v holds something JSON cannot (NaN). */
char *cvx_json_dumps_python(const json_t *v, size_t *len);
/* Writes that text to `path` (through path.tmp + rename). */
cvx_status cvx_json_write_python(const char *path, const json_t *v, cvx_error *err);

#endif
