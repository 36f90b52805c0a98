/* make-model: presets, the huggingface_hub shard split, deterministic random weights, streaming writes.
 * See model_maker.h. The cogvideox-2b configs below are ../shared/golden/real/cogvideox-2b/ (what diffusers
 * 0.30.3 / transformers save for the real checkpoint); the tiny preset changes only sizes. */
#include "io/model_maker.h"
#include "core/fs.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/half.h"
#include "core/threadpool.h"
#include "io/config.h"
#include "io/embedded.h"
#include "io/safetensors.h"

#define TRY(expr)                                                                                                      \
    do {                                                                                                               \
        cvx_status st_ = (expr);                                                                                       \
        if (st_ != CVX_OK) return st_;                                                                                 \
    } while (0)

/* ---- preset configs ------------------------------------------------------------------------------------ */
static const char model_index_2b[] = "{\"_class_name\": \"CogVideoXPipeline\", \"_diffusers_version\": \"0.30.3\","
                                     " \"scheduler\": [\"diffusers\", \"CogVideoXDDIMScheduler\"], \"text_encoder\": "
                                     "[\"transformers\", \"T5EncoderModel\"],"
                                     " \"tokenizer\": [\"transformers\", \"T5Tokenizer\"],"
                                     " \"transformer\": [\"diffusers\", \"CogVideoXTransformer3DModel\"], \"vae\": "
                                     "[\"diffusers\", \"AutoencoderKLCogVideoX\"]}";

static const char scheduler_2b[] =
    "{\"_class_name\": \"CogVideoXDDIMScheduler\", \"_diffusers_version\": \"0.30.3\", \"beta_end\": 0.012,"
    " \"beta_schedule\": \"scaled_linear\", \"beta_start\": 0.00085, \"clip_sample\": false, \"clip_sample_range\": "
    "1.0,"
    " \"num_train_timesteps\": 1000, \"prediction_type\": \"v_prediction\", \"rescale_betas_zero_snr\": true,"
    " \"sample_max_value\": 1.0, \"set_alpha_to_one\": true, \"snr_shift_scale\": 3.0, \"steps_offset\": 0,"
    " \"timestep_spacing\": \"trailing\", \"trained_betas\": null}";

static const char text_encoder_2b[] =
    "{\"_name_or_path\": \"google/t5-v1_1-xxl\", \"architectures\": [\"T5EncoderModel\"], \"classifier_dropout\": 0.0,"
    " \"d_ff\": 10240, \"d_kv\": 64, \"d_model\": 4096, \"decoder_start_token_id\": 0, \"dense_act_fn\": \"gelu_new\","
    " \"dropout_rate\": 0.1, \"eos_token_id\": 1, \"feed_forward_proj\": \"gated-gelu\", \"initializer_factor\": 1.0,"
    " \"is_encoder_decoder\": true, \"is_gated_act\": true, \"layer_norm_epsilon\": 1e-06, \"model_type\": \"t5\","
    " \"num_decoder_layers\": 24, \"num_heads\": 64, \"num_layers\": 24, \"output_past\": true, \"pad_token_id\": 0,"
    " \"relative_attention_max_distance\": 128, \"relative_attention_num_buckets\": 32, \"tie_word_embeddings\": false,"
    " \"torch_dtype\": \"float16\", \"use_cache\": true, \"vocab_size\": 32128}";

static const char transformer_2b[] =
    "{\"_class_name\": \"CogVideoXTransformer3DModel\", \"_diffusers_version\": \"0.30.3\","
    " \"activation_fn\": \"gelu-approximate\", \"attention_bias\": true, \"attention_head_dim\": 64, \"dropout\": 0.0,"
    " \"flip_sin_to_cos\": true, \"freq_shift\": 0, \"in_channels\": 16, \"max_text_seq_length\": 226,"
    " \"norm_elementwise_affine\": true, \"norm_eps\": 1e-05, \"num_attention_heads\": 30, \"num_layers\": 30,"
    " \"out_channels\": 16, \"patch_size\": 2, \"sample_frames\": 49, \"sample_height\": 60, \"sample_width\": 90,"
    " \"spatial_interpolation_scale\": 1.875, \"temporal_compression_ratio\": 4, \"temporal_interpolation_scale\": 1.0,"
    " \"text_embed_dim\": 4096, \"time_embed_dim\": 512, \"timestep_activation_fn\": \"silu\","
    " \"use_learned_positional_embeddings\": false, \"use_rotary_positional_embeddings\": false}";

static const char vae_2b[] =
    "{\"_class_name\": \"AutoencoderKLCogVideoX\", \"_diffusers_version\": \"0.30.3\", \"act_fn\": \"silu\","
    " \"block_out_channels\": [128, 256, 256, 512], \"down_block_types\": [\"CogVideoXDownBlock3D\","
    " \"CogVideoXDownBlock3D\", \"CogVideoXDownBlock3D\", \"CogVideoXDownBlock3D\"], \"force_upcast\": true,"
    " \"in_channels\": 3, \"latent_channels\": 16, \"latents_mean\": null, \"latents_std\": null, "
    "\"layers_per_block\": 3,"
    " \"norm_eps\": 1e-06, \"norm_num_groups\": 32, \"out_channels\": 3, \"sample_height\": 480, \"sample_width\": 720,"
    " \"scaling_factor\": 1.15258426, \"shift_factor\": null, \"temporal_compression_ratio\": 4,"
    " \"up_block_types\": [\"CogVideoXUpBlock3D\", \"CogVideoXUpBlock3D\", \"CogVideoXUpBlock3D\","
    " \"CogVideoXUpBlock3D\"], \"use_post_quant_conv\": false, \"use_quant_conv\": false}";

/* The tiny preset: sizes only (the e2e golden model's shapes), keys as in the 2b files. */
static const char text_encoder_tiny[] =
    "{\"d_ff\": 24, \"d_kv\": 8, \"d_model\": 16, \"num_decoder_layers\": 2, \"num_heads\": 2, \"num_layers\": 2}";
static const char transformer_tiny[] =
    "{\"attention_head_dim\": 16, \"num_attention_heads\": 2, \"num_layers\": 2, \"sample_frames\": 9,"
    " \"sample_height\": 6, \"sample_width\": 10, \"text_embed_dim\": 16, \"time_embed_dim\": 16}";
static const char vae_tiny[] = "{\"block_out_channels\": [4, 8, 8, 16], \"norm_num_groups\": 2}";
/* tiny-6h: the tiny pipeline with a 6-head transformer (6 × 8), for the sequence-parallel tests (6 heads split
 * over 3 ranks per CFG half) */
static const char transformer_tiny6[] =
    "{\"attention_head_dim\": 8, \"num_attention_heads\": 6, \"num_layers\": 2, \"sample_frames\": 9,"
    " \"sample_height\": 6, \"sample_width\": 10, \"text_embed_dim\": 16, \"time_embed_dim\": 16}";

/* The image-to-video presets: THUDM/CogVideoX-5b-I2V's configs as diffusers 0.30.3 saves them (the 5b
 * transformer with in_channels 32 and the learned positional table beside rope; the 5b's scheduler, snr_shift_scale
 * 1.0; the VAE with scaling_factor 0.7), and the same at the tiny sizes. */
static const char model_index_i2v[] = "{\"_class_name\": \"CogVideoXImageToVideoPipeline\"}";
static const char scheduler_5b[] = "{\"snr_shift_scale\": 1.0}";
static const char transformer_5b_i2v[] =
    "{\"attention_head_dim\": 64, \"num_attention_heads\": 48, \"num_layers\": 42, \"in_channels\": 32,"
    " \"use_learned_positional_embeddings\": true, \"use_rotary_positional_embeddings\": true}";
static const char transformer_tiny_i2v[] =
    "{\"attention_head_dim\": 16, \"num_attention_heads\": 2, \"num_layers\": 2, \"sample_frames\": 9,"
    " \"sample_height\": 6, \"sample_width\": 10, \"text_embed_dim\": 16, \"time_embed_dim\": 16, \"in_channels\": 32,"
    " \"use_learned_positional_embeddings\": true, \"use_rotary_positional_embeddings\": true}";
static const char vae_5b[] = "{\"scaling_factor\": 0.7}";
static const char vae_tiny_i2v[] = "{\"block_out_channels\": [4, 8, 8, 16], \"norm_num_groups\": 2, \"scaling_factor\": 0.7}";

enum { PRESET_TINY, PRESET_2B, PRESET_TINY6, PRESET_5B_I2V, PRESET_TINY_I2V };
#define PRESET_NAMES "tiny, tiny-6h, tiny-i2v, cogvideox-2b or cogvideox-5b-i2v"

static int preset_id(const char *preset) {
    if (!preset || !strcmp(preset, "tiny")) return PRESET_TINY;
    if (!strcmp(preset, "cogvideox-2b")) return PRESET_2B;
    if (!strcmp(preset, "tiny-6h")) return PRESET_TINY6;
    if (!strcmp(preset, "cogvideox-5b-i2v")) return PRESET_5B_I2V;
    if (!strcmp(preset, "tiny-i2v")) return PRESET_TINY_I2V;
    return -1;
}

int cvx_make_model_preset_known(const char *preset) { return preset && preset_id(preset) >= 0; }

cvx_status cvx_make_model_config(const char *preset, const char *component, json_t **out, cvx_error *err) {
    *out = NULL;
    int id = preset_id(preset);
    if (id < 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "unknown preset \"%s\" (expected " PRESET_NAMES ")",
                        preset);
    const int i2v = id == PRESET_5B_I2V || id == PRESET_TINY_I2V, small = id != PRESET_2B && id != PRESET_5B_I2V;
    const char *base = NULL, *tiny = NULL; /* tiny: the overrides of the preset */
    if (!strcmp(component, "model_index"))
        base = model_index_2b, tiny = i2v ? model_index_i2v : NULL;
    else if (!strcmp(component, "scheduler"))
        base = scheduler_2b, tiny = i2v ? scheduler_5b : NULL;
    else if (!strcmp(component, "text_encoder"))
        base = text_encoder_2b, tiny = small ? text_encoder_tiny : NULL;
    else if (!strcmp(component, "transformer"))
        base = transformer_2b, tiny = id == PRESET_TINY6 ? transformer_tiny6 : id == PRESET_5B_I2V ? transformer_5b_i2v
                                      : id == PRESET_TINY_I2V ? transformer_tiny_i2v : small ? transformer_tiny : NULL;
    else if (!strcmp(component, "vae"))
        base = vae_2b, tiny = id == PRESET_5B_I2V ? vae_5b : id == PRESET_TINY_I2V ? vae_tiny_i2v : small ? vae_tiny : NULL;
    else
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "unknown component \"%s\"", component);
    json_error_t je;
    json_t *cfg = json_loads(base, 0, &je);
    if (!cfg) return cvx_fail(err, CVX_ERR_INTERNAL, "preset %s/%s: %s", preset, component, je.text);
    if (tiny) {
        json_t *upd = json_loads(tiny, 0, &je);
        if (!upd || json_object_update_existing(cfg, upd)) {
            json_decref(upd);
            json_decref(cfg);
            return cvx_fail(err, CVX_ERR_INTERNAL, "preset %s/%s: bad override", preset, component);
        }
        json_decref(upd);
    }
    *out = cfg;
    return CVX_OK;
}

/* ---- shards ---------------------------------------------------------------------------------------------- */
int cvx_shard_split(const cvx_tensor_list *l, size_t elem_size, uint64_t max_bytes, int *shard_of) {
    int n_shards = 0, current = -1;
    uint64_t current_size = 0;
    /* Shard numbers are assigned in the order shards are appended to huggingface_hub's list: an oversized
     * tensor's shard is appended at once, the running shard only when it is closed. */
    int *pending = malloc((l->n ? l->n : 1) * sizeof *pending);
    size_t n_pending = 0;
    if (!pending) return -1;
    for (size_t i = 0; i < l->n; i++) {
        uint64_t size = (uint64_t)l->t[i].numel * elem_size;
        if (size > max_bytes) {
            shard_of[i] = n_shards++;
            continue;
        }
        if (current_size + size > max_bytes) {
            current = n_shards++;
            for (size_t k = 0; k < n_pending; k++)
                shard_of[pending[k]] = current;
            n_pending = 0;
            current_size = 0;
        }
        pending[n_pending++] = (int)i;
        current_size += size;
    }
    if (n_pending) {
        current = n_shards++;
        for (size_t k = 0; k < n_pending; k++)
            shard_of[pending[k]] = current;
    }
    free(pending);
    return n_shards;
}

void cvx_shard_filename(char *buf, size_t size, const char *stem, int shard, int n_shards) {
    if (n_shards <= 1)
        snprintf(buf, size, "%s.safetensors", stem);
    else
        snprintf(buf, size, "%s-%05d-of-%05d.safetensors", stem, shard + 1, n_shards);
}

json_t *cvx_shard_index_json(const cvx_tensor_list *l, const int *shard_of, int n_shards, const char *stem,
                             size_t elem_size) {
    json_t *root = json_object(), *map = json_object(), *meta = json_object();
    uint64_t total = 0;
    char file[256];
    for (size_t i = 0; i < l->n && root && map; i++) {
        cvx_shard_filename(file, sizeof file, stem, shard_of[i], n_shards);
        json_object_set_new(map, l->t[i].name, json_string(file));
        total += (uint64_t)l->t[i].numel * elem_size;
    }
    if (!root || !map || !meta) {
        json_decref(root);
        json_decref(map);
        json_decref(meta);
        return NULL;
    }
    json_object_set_new(meta, "total_size", json_integer((json_int_t)total));
    json_object_set_new(root, "metadata", meta);
    json_object_set_new(root, "weight_map", map);
    return root;
}

/* ---- random values ----------------------------------------------------------------------------------------- */
static uint64_t splitmix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static uint64_t fnv1a64(const char *s) {
    uint64_t h = 0xCBF29CE484222325ull;
    for (; *s; s++)
        h = (h ^ (unsigned char)*s) * 0x100000001B3ull;
    return h;
}

/* Element i of the stream `key`: a bell-shaped value with mean 0 and variance 1 (the sum of four 16-bit
 * uniforms, Irwin-Hall, rescaled). One hash per element, no transcendental functions. */
static inline float stream_normal(uint64_t key, uint64_t i) {
    uint64_t r = splitmix64(key + (i + 1) * 0x9E3779B97F4A7C15ull);
    uint32_t s =
        (uint32_t)(r & 0xFFFF) + (uint32_t)((r >> 16) & 0xFFFF) + (uint32_t)((r >> 32) & 0xFFFF) + (uint32_t)(r >> 48);
    /* each term uniform on {0..65535}: mean 4·32767.5, variance 4·(65536² − 1)/12 */
    return (float)(((double)s - 131070.0) * (1.7320508075688772 / 65536.0));
}

typedef struct {
    float mean, std;
} init_rule;

/* The init of one tensor of a component (see model_maker.h). t5_d_kv > 0 for the T5 encoder: its q projection
 * also carries T5's 1/sqrt(d_kv) (the encoder does not scale q·k), as HF's _init_weights does. */
static init_rule rule_for(const cvx_expected_tensor *e, int64_t t5_d_kv) {
    init_rule r = {0.0f, 0.02f};
    size_t n = strlen(e->name);
    switch (e->kind) {
    case CVX_PARAM_WEIGHT:
        r.std = (float)(1.0 / sqrt((double)e->fan_in));
        if (t5_d_kv > 0 && n > 23 && !strcmp(e->name + n - 23, ".SelfAttention.q.weight"))
            r.std = (float)(1.0 / sqrt((double)e->fan_in * (double)t5_d_kv));
        /* Halved so that decoded videos of a random model mostly stay inside [-1, 1] (std ≈ 0.5 instead of 1). */
        if (!strcmp(e->name, "decoder.conv_out.conv.weight")) r.std *= 0.5f;
        break;
    case CVX_PARAM_BIAS:
        /* SpatialNorm3D multiplies by conv_y(z): centred on 1 it starts as a plain GroupNorm. */
        if (n > 17 && !strcmp(e->name + n - 17, ".conv_y.conv.bias")) r.mean = 1.0f;
        break;
    case CVX_PARAM_NORM_WEIGHT: r.mean = 1.0f, r.std = 0.1f; break;
    case CVX_PARAM_NORM_BIAS: break;
    case CVX_PARAM_EMBEDDING: r.std = 1.0f; break;
    case CVX_PARAM_POS_EMBEDDING: break;
    }
    return r;
}

typedef struct {
    const cvx_expected_tensor *e;
    uint64_t key;
    init_rule rule;
    cvx_dtype dtype;
    void *dst;
} fill_job;

#define FILL_CHUNK 65536

static void fill_range(void *ctx, int64_t begin, int64_t end, int thread_index) {
    const fill_job *j = ctx;
    for (int64_t c = begin; c < end; c++) {
        int64_t lo = c * FILL_CHUNK, hi = lo + FILL_CHUNK;
        if (hi > j->e->numel) hi = j->e->numel;
        for (int64_t i = lo; i < hi; i++) {
            float v = j->rule.mean + j->rule.std * stream_normal(j->key, (uint64_t)i);
            switch (j->dtype) {
            case CVX_DTYPE_F16: ((uint16_t *)j->dst)[i] = cvx_f32_to_f16(v); break;
            case CVX_DTYPE_BF16: ((uint16_t *)j->dst)[i] = cvx_f32_to_bf16(v); break;
            default: ((float *)j->dst)[i] = v; break;
            }
        }
    }
}

float cvx_make_model_value(uint64_t seed, const cvx_expected_tensor *e, int64_t t5_d_kv, uint64_t i) {
    init_rule r = rule_for(e, t5_d_kv);
    return r.mean + r.std * stream_normal(splitmix64(splitmix64(seed) ^ fnv1a64(e->name)), i);
}

/* ---- writing ----------------------------------------------------------------------------------------------- */
typedef struct {
    const cvx_make_model_params *p;
    cvx_pool *pool;
    const cvx_tensor_list *list;
    const size_t *order; /* file entry -> tensor index */
    int64_t t5_d_kv;
    const char *path;
    uint64_t *done, total;
} writer_ctx;

static cvx_status fill_tensor(void *user_data, size_t index, void *dst, size_t nbytes, cvx_error *err) {
    writer_ctx *w = user_data;
    const cvx_expected_tensor *e = &w->list->t[w->order[index]];
    if ((uint64_t)e->numel * cvx_dtype_size(w->p->dtype) != nbytes)
        return cvx_fail(err, CVX_ERR_INTERNAL, "size mismatch for %s", e->name);
    /* the same values as cvx_make_model_value, a chunk at a time */
    fill_job j = {e, splitmix64(splitmix64(w->p->seed) ^ fnv1a64(e->name)), rule_for(e, w->t5_d_kv), w->p->dtype, dst};
    int64_t chunks = (e->numel + FILL_CHUNK - 1) / FILL_CHUNK;
    cvx_pool_parallel_for(chunks > 1 ? w->pool : NULL, chunks, 1, fill_range, &j);
    /* Progress counts the tensor once it is produced; the write of a tensor follows at once. */
    *w->done += nbytes;
    if (w->p->progress) w->p->progress(w->path, *w->done, w->total, w->p->user_data);
    return CVX_OK;
}

static cvx_status mkdir_p(const char *path, cvx_error *err) {
    int rc = cvx_mkdirs(path);
    if (rc == ENAMETOOLONG) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: path too long", path);
    if (rc == ENOTDIR) return cvx_fail(err, CVX_ERR_IO, "%s: not a folder", path);
    if (rc != 0) return cvx_fail(err, CVX_ERR_IO, "%s: cannot create the folder: %s", path, strerror(rc));
    return CVX_OK;
}

/* Weight files of an earlier run would confuse the loader (an index next to a single file). */
static void remove_old_weights(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *de;
    char path[4096];
    while ((de = readdir(d))) {
        size_t n = strlen(de->d_name);
        int weight = (n > 12 && !strcmp(de->d_name + n - 12, ".safetensors")) ||
                     (n > 23 && !strcmp(de->d_name + n - 23, ".safetensors.index.json"));
        if (weight && snprintf(path, sizeof path, "%s/%s", dir, de->d_name) < (int)sizeof path) remove(path);
    }
    closedir(d);
}

static cvx_status write_bytes(const char *path, const void *data, size_t n, cvx_error *err) {
    char tmp[4096];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: path too long", path);
    FILE *f = fopen(tmp, "wb");
    if (!f) return cvx_fail(err, CVX_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    int bad = fwrite(data, 1, n, f) != n;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        remove(tmp);
        return cvx_fail(err, CVX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return CVX_OK;
}

static int cmp_names(const void *a, const void *b, void *list) {
    const cvx_tensor_list *l = list;
    return strcmp(l->t[*(const size_t *)a].name, l->t[*(const size_t *)b].name);
}

/* One weight-bearing component: config.json, shards (names sorted inside each file, as safetensors' Python
 * API writes them), and an index when there is more than one shard. */
static cvx_status write_component(const char *dir, const char *component, cvx_class cls, const char *stem,
                                  uint64_t max_shard, writer_ctx *w, cvx_error *err) {
    char cdir[4352], path[8192];
    snprintf(cdir, sizeof cdir, "%s/%s", dir, component);
    TRY(mkdir_p(cdir, err));
    remove_old_weights(cdir);
    json_t *cfg_json;
    TRY(cvx_make_model_config(w->p->preset, component, &cfg_json, err));
    snprintf(path, sizeof path, "%s/config.json", cdir);
    cvx_status st = cvx_json_write_python(path, cfg_json, err);
    cvx_config *cfg = NULL;
    cvx_tensor_list list = {0};
    int *shard_of = NULL;
    size_t *order = NULL;
    cvx_st_entry *entries = NULL;
    if (!st) st = cvx_config_from_json(&cfg, cfg_json, path, err);
    json_decref(cfg_json);
    if (!st) st = cvx_model_expected_tensors(cls, cfg, &list, err);
    w->t5_d_kv = 0;
    if (!st && cls == CVX_CLASS_T5_ENCODER) {
        cvx_t5_config t5;
        st = cvx_t5_config_read(cfg, &t5, err);
        w->t5_d_kv = t5.d_kv;
    }
    const size_t esz = cvx_dtype_size(w->p->dtype);
    if (!st && (!(shard_of = malloc(list.n * sizeof *shard_of)) || !(order = malloc(list.n * sizeof *order)) ||
                !(entries = calloc(list.n, sizeof *entries))))
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    int n_shards = 0;
    if (!st && (n_shards = cvx_shard_split(&list, esz, max_shard, shard_of)) < 1)
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    for (int s = 0; s < n_shards && !st; s++) {
        size_t n = 0;
        for (size_t i = 0; i < list.n; i++)
            if (shard_of[i] == s) order[n++] = i;
        qsort_r(order, n, sizeof *order, cmp_names, &list);
        for (size_t k = 0; k < n; k++) {
            const cvx_expected_tensor *e = &list.t[order[k]];
            entries[k] = (cvx_st_entry){.name = e->name, .dtype = w->p->dtype, .ndim = e->ndim, .data = NULL};
            memcpy(entries[k].shape, e->shape, sizeof e->shape);
        }
        char file[256];
        cvx_shard_filename(file, sizeof file, stem, s, n_shards);
        snprintf(path, sizeof path, "%s/%s", cdir, file);
        w->list = &list;
        w->order = order;
        w->path = path;
        st = cvx_safetensors_write(path, entries, n, NULL, fill_tensor, w, err);
    }
    if (!st && n_shards > 1) {
        json_t *idx = cvx_shard_index_json(&list, shard_of, n_shards, stem, esz);
        char name[256];
        snprintf(name, sizeof name, "%s.safetensors.index.json", stem);
        snprintf(path, sizeof path, "%s/%s", cdir, name);
        st = idx ? cvx_json_write_python(path, idx, err) : cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        json_decref(idx);
    }
    free(entries);
    free(order);
    free(shard_of);
    cvx_tensor_list_free(&list);
    cvx_config_free(cfg);
    return st;
}

/* Total tensor bytes of the whole folder, for progress. */
static cvx_status total_bytes(const cvx_make_model_params *p, uint64_t *total, cvx_error *err) {
    static const char *const comps[] = {"text_encoder", "transformer", "vae"};
    static const cvx_class classes[] = {CVX_CLASS_T5_ENCODER, CVX_CLASS_TRANSFORMER_3D, CVX_CLASS_VAE};
    *total = 0;
    for (int i = 0; i < 3; i++) {
        json_t *j;
        TRY(cvx_make_model_config(p->preset, comps[i], &j, err));
        cvx_config *c;
        cvx_status st = cvx_config_from_json(&c, j, comps[i], err);
        json_decref(j);
        if (st) return st;
        cvx_tensor_list l;
        st = cvx_model_expected_tensors(classes[i], c, &l, err);
        *total += (uint64_t)l.numel * cvx_dtype_size(p->dtype);
        cvx_tensor_list_free(&l);
        cvx_config_free(c);
        if (st) return st;
    }
    return CVX_OK;
}

cvx_make_model_params cvx_make_model_params_default(void) {
    cvx_make_model_params p = {.preset = "tiny", .seed = 0, .dtype = CVX_DTYPE_F16, .threads = 0};
    return p;
}

/* save_pretrained's default max_shard_size ("5GB"); the tiny text encoder uses 1 MB so that, like the real
 * one, it is sharded (shared.weight alone in the first shard, as in the e2e golden model). */
#define HUB_MAX_SHARD 5000000000ull
#define TINY_T5_MAX_SHARD 1000000ull

cvx_status cvx_make_model(const char *dir, const cvx_make_model_params *params, cvx_error *err) {
    cvx_make_model_params p = params ? *params : cvx_make_model_params_default();
    if (!p.preset) p.preset = "tiny";
    int id = preset_id(p.preset);
    if (id < 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "unknown preset \"%s\" (expected " PRESET_NAMES ")",
                        p.preset);
    if (p.dtype != CVX_DTYPE_F16 && p.dtype != CVX_DTYPE_BF16 && p.dtype != CVX_DTYPE_F32)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "make-model: dtype %s is not supported (f16, bf16, f32)",
                        cvx_dtype_name(p.dtype));
    if (!dir || !*dir) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "make-model: no output folder");
    if (strlen(dir) > 4000) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "make-model: output path too long");
    TRY(mkdir_p(dir, err));
    char path[4096];
    /* model_index.json goes last: remove a previous one first so that a failed run cannot look complete. */
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    remove(path);

    uint64_t done = 0, total;
    TRY(total_bytes(&p, &total, err));
    cvx_pool *pool = cvx_pool_new(p.threads);
    if (!pool) return cvx_fail(err, CVX_ERR_INTERNAL, "make-model: cannot start threads");
    writer_ctx w = {.p = &p, .pool = pool, .done = &done, .total = total};

    /* tokenizer/: the embedded real files */
    snprintf(path, sizeof path, "%s/tokenizer", dir);
    cvx_status st = mkdir_p(path, err);
    static const struct {
        const char *name;
        const unsigned char *(*get)(size_t *);
    } tok[] = {{"spiece.model", cvx_embedded_t5_spiece},
               {"tokenizer_config.json", cvx_embedded_t5_tokenizer_config},
               {"special_tokens_map.json", cvx_embedded_t5_special_tokens_map},
               {"added_tokens.json", cvx_embedded_t5_added_tokens}};
    for (size_t i = 0; i < sizeof tok / sizeof tok[0] && !st; i++) {
        size_t n;
        const unsigned char *data = tok[i].get(&n);
        snprintf(path, sizeof path, "%s/tokenizer/%s", dir, tok[i].name);
        st = write_bytes(path, data, n, err);
    }
    if (!st)
        st = write_component(dir, "text_encoder", CVX_CLASS_T5_ENCODER, "model",
                             id == PRESET_TINY ? TINY_T5_MAX_SHARD : HUB_MAX_SHARD, &w, err);
    if (!st)
        st = write_component(dir, "transformer", CVX_CLASS_TRANSFORMER_3D, "diffusion_pytorch_model", HUB_MAX_SHARD, &w,
                             err);
    if (!st) st = write_component(dir, "vae", CVX_CLASS_VAE, "diffusion_pytorch_model", HUB_MAX_SHARD, &w, err);
    json_t *j = NULL;
    if (!st) {
        snprintf(path, sizeof path, "%s/scheduler", dir);
        st = mkdir_p(path, err);
    }
    if (!st) st = cvx_make_model_config(p.preset, "scheduler", &j, err);
    if (!st) {
        snprintf(path, sizeof path, "%s/scheduler/scheduler_config.json", dir);
        st = cvx_json_write_python(path, j, err);
    }
    json_decref(j);
    j = NULL;
    /* the marker that tells every front end these weights are random (cvx_engine_info, the served model's name) */
    if (!st) {
        j = json_pack("{s:s, s:s, s:s, s:I, s:s}", "weights", "random", "made_by", "cogvideox make-model", "preset",
                      p.preset, "seed", (json_int_t)p.seed, "dtype", cvx_dtype_name(p.dtype));
        snprintf(path, sizeof path, "%s/%s", dir, CVX_RANDOM_WEIGHTS_MARKER);
        st = j ? cvx_json_write_python(path, j, err) : cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        json_decref(j);
        j = NULL;
    }
    if (!st) st = cvx_make_model_config(p.preset, "model_index", &j, err);
    if (!st) {
        snprintf(path, sizeof path, "%s/model_index.json", dir);
        st = cvx_json_write_python(path, j, err);
    }
    json_decref(j);
    cvx_pool_free(pool);
    return st;
}
