/* Configs: typed access to config.json files with the reference classes' defaults (diffusers 0.30.3
 * CogVideoXTransformer3DModel / AutoencoderKLCogVideoX / CogVideoX{DDIM,DPM}Scheduler __init__ signatures,
 * transformers T5Config.__init__), and a Python-compatible JSON writer. See config.h. */
#include "io/config.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct cvx_config {
    json_t *root; /* a JSON object */
    char *label;  /* the file path (or a caller's label) for messages */
};

/* ---- classes ------------------------------------------------------------------------------------------- */
static const struct {
    const char *name;
    cvx_class cls;
} class_names[] = {
    {"T5Tokenizer", CVX_CLASS_T5_TOKENIZER},
    {"T5TokenizerFast", CVX_CLASS_T5_TOKENIZER},
    {"T5EncoderModel", CVX_CLASS_T5_ENCODER},
    {"CogVideoXTransformer3DModel", CVX_CLASS_TRANSFORMER_3D},
    {"AutoencoderKLCogVideoX", CVX_CLASS_VAE},
    {"CogVideoXDDIMScheduler", CVX_CLASS_DDIM_SCHEDULER},
    {"CogVideoXDPMScheduler", CVX_CLASS_DPM_SCHEDULER},
};

cvx_class cvx_class_from_name(const char *name) {
    if (!name) return CVX_CLASS_UNKNOWN;
    for (size_t i = 0; i < sizeof class_names / sizeof class_names[0]; i++)
        if (!strcmp(name, class_names[i].name)) return class_names[i].cls;
    return CVX_CLASS_UNKNOWN;
}

const char *cvx_class_name(cvx_class cls) {
    for (size_t i = 0; i < sizeof class_names / sizeof class_names[0]; i++)
        if (class_names[i].cls == cls) return class_names[i].name;
    return "unknown";
}

/* ---- parsing ------------------------------------------------------------------------------------------- */
static char *dup_str(const char *s) {
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

cvx_status cvx_config_from_json(cvx_config **out, json_t *obj, const char *label, cvx_error *err) {
    *out = NULL;
    if (!label) label = "config";
    if (!json_is_object(obj)) return cvx_fail(err, CVX_ERR_FORMAT, "%s: the top level is not a JSON object", label);
    cvx_config *c = calloc(1, sizeof *c);
    if (!c || !(c->label = dup_str(label))) {
        free(c);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    }
    c->root = json_incref(obj);
    *out = c;
    return CVX_OK;
}

cvx_status cvx_config_parse(cvx_config **out, const void *text, size_t size, const char *label, cvx_error *err) {
    *out = NULL;
    if (!label) label = "config";
    if (size > CVX_CONFIG_MAX_FILE)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: %zu bytes is too large for a config (limit %u)", label, size,
                        CVX_CONFIG_MAX_FILE);
    json_error_t je;
    /* JSON_ALLOW_NUL keeps a stray NUL from silently truncating keys; duplicates would be ambiguous. */
    json_t *root = json_loadb(text, size, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!root)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: invalid JSON at line %d column %d: %s", label, je.line, je.column,
                        je.text);
    cvx_status st = cvx_config_from_json(out, root, label, err);
    json_decref(root);
    return st;
}

cvx_status cvx_config_load(cvx_config **out, const char *path, cvx_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f)
        return cvx_fail(err, errno == ENOENT ? CVX_ERR_NOT_FOUND : CVX_ERR_IO, "%s: cannot open: %s", path,
                        strerror(errno));
    char *buf = malloc(CVX_CONFIG_MAX_FILE + 1);
    if (!buf) {
        fclose(f);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    size_t n = fread(buf, 1, CVX_CONFIG_MAX_FILE + 1, f);
    int bad = ferror(f);
    fclose(f);
    cvx_status st;
    if (bad)
        st = cvx_fail(err, CVX_ERR_IO, "%s: read error", path);
    else
        st = cvx_config_parse(out, buf, n, path, err);
    free(buf);
    return st;
}

void cvx_config_free(cvx_config *c) {
    if (!c) return;
    json_decref(c->root);
    free(c->label);
    free(c);
}

const char *cvx_config_label(const cvx_config *c) { return c->label; }
json_t *cvx_config_json(const cvx_config *c) { return c->root; }

int cvx_config_has(const cvx_config *c, const char *key) {
    json_t *v = json_object_get(c->root, key);
    return v && !json_is_null(v);
}

/* ---- getters ------------------------------------------------------------------------------------------- */
static const char *json_kind(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

cvx_status cvx_config_int(const cvx_config *c, const char *key, int64_t def, int64_t min, int64_t max, int64_t *out,
                          cvx_error *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v) {
        *out = def;
        return CVX_OK;
    }
    if (!json_is_integer(v))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be an integer, not %s", c->label, key, json_kind(v));
    json_int_t x = json_integer_value(v);
    if (x < min || x > max)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" = %lld is out of range [%lld, %lld]", c->label, key,
                        (long long)x, (long long)min, (long long)max);
    *out = (int64_t)x;
    return CVX_OK;
}

cvx_status cvx_config_float(const cvx_config *c, const char *key, double def, double min, double max, double *out,
                            cvx_error *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v) {
        *out = def;
        return CVX_OK;
    }
    if (!json_is_number(v))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be a number, not %s", c->label, key, json_kind(v));
    double x = json_number_value(v);
    if (!(x >= min && x <= max))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" = %g is out of range [%g, %g]", c->label, key, x, min, max);
    *out = x;
    return CVX_OK;
}

cvx_status cvx_config_bool(const cvx_config *c, const char *key, int def, int *out, cvx_error *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v) {
        *out = def;
        return CVX_OK;
    }
    if (!json_is_boolean(v))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be true or false, not %s", c->label, key, json_kind(v));
    *out = json_is_true(v);
    return CVX_OK;
}

cvx_status cvx_config_string(const cvx_config *c, const char *key, const char *def, const char **out, cvx_error *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v) {
        *out = def;
        return CVX_OK;
    }
    if (!json_is_string(v))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be a string, not %s", c->label, key, json_kind(v));
    *out = json_string_value(v);
    if (strlen(*out) != json_string_length(v))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" contains a NUL character", c->label, key);
    return CVX_OK;
}

cvx_status cvx_config_enum(const cvx_config *c, const char *key, const char *def, const char *const *allowed,
                           int *index, cvx_error *err) {
    const char *s;
    cvx_status st = cvx_config_string(c, key, def, &s, err);
    if (st) return st;
    char list[256];
    size_t off = 0;
    list[0] = '\0';
    for (int i = 0; allowed[i]; i++) {
        if (!strcmp(s, allowed[i])) {
            *index = i;
            return CVX_OK;
        }
        if (off < sizeof list)
            off += (size_t)snprintf(list + off, sizeof list - off, "%s\"%s\"", i ? ", " : "", allowed[i]);
    }
    return cvx_fail(err, CVX_ERR_UNSUPPORTED, "%s: \"%s\" = \"%.64s\" is not supported (expected one of %s)", c->label,
                    key, s, list);
}

cvx_status cvx_config_int_array(const cvx_config *c, const char *key, const int64_t *def, int ndef, int max_n,
                                int64_t min, int64_t max, int64_t *out, int *n, cvx_error *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v) {
        for (int i = 0; i < ndef; i++)
            out[i] = def[i];
        *n = ndef;
        return CVX_OK;
    }
    if (!json_is_array(v))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be an array of integers, not %s", c->label, key,
                        json_kind(v));
    size_t len = json_array_size(v);
    if (len < 1 || len > (size_t)max_n)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" has %zu entries (expected 1 to %d)", c->label, key, len,
                        max_n);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_integer(e))
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\"[%zu] must be an integer, not %s", c->label, key, i,
                            json_kind(e));
        json_int_t x = json_integer_value(e);
        if (x < min || x > max)
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\"[%zu] = %lld is out of range [%lld, %lld]", c->label, key,
                            i, (long long)x, (long long)min, (long long)max);
        out[i] = (int64_t)x;
    }
    *n = (int)len;
    return CVX_OK;
}

cvx_status cvx_config_string_array(const cvx_config *c, const char *key, const char *const *def, int ndef, int max_n,
                                   const char **out, int *n, cvx_error *err) {
    json_t *v = json_object_get(c->root, key);
    if (!v) {
        for (int i = 0; i < ndef; i++)
            out[i] = def[i];
        *n = ndef;
        return CVX_OK;
    }
    if (!json_is_array(v))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" must be an array of strings, not %s", c->label, key,
                        json_kind(v));
    size_t len = json_array_size(v);
    if (len < 1 || len > (size_t)max_n)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" has %zu entries (expected 1 to %d)", c->label, key, len,
                        max_n);
    for (size_t i = 0; i < len; i++) {
        json_t *e = json_array_get(v, i);
        if (!json_is_string(e))
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\"[%zu] must be a string, not %s", c->label, key, i,
                            json_kind(e));
        out[i] = json_string_value(e);
    }
    *n = (int)len;
    return CVX_OK;
}

/* ---- typed configs --------------------------------------------------------------------------------------- */
#define TRY(expr)                                                                                                      \
    do {                                                                                                               \
        cvx_status st_ = (expr);                                                                                       \
        if (st_ != CVX_OK) return st_;                                                                                 \
    } while (0)

/* src may be dst itself (a field that is its own default): then there is nothing to copy, and snprintf with
 * overlapping buffers would be undefined. */
static void copy_str(char *dst, size_t size, const char *src) {
    if (src != dst) snprintf(dst, size, "%s", src);
}

/* Where the class lets the value be a string of limited length. */
static cvx_status bounded_string(const cvx_config *c, const char *key, const char *def, char *dst, size_t size,
                                 cvx_error *err) {
    const char *s = NULL; /* set when the call succeeds (gcc cannot tell once it inlines it) */
    TRY(cvx_config_string(c, key, def, &s, err));
    if (strlen(s) >= size)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"%s\" is too long (%zu characters)", c->label, key, strlen(s));
    copy_str(dst, size, s);
    return CVX_OK;
}

/* `_class_name` (diffusers) must name the class the folder says it is. */
static cvx_status check_class_name(const cvx_config *c, const char *want, cvx_error *err) {
    const char *s = NULL;
    TRY(cvx_config_string(c, "_class_name", want, &s, err));
    if (strcmp(s, want))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"_class_name\" is \"%.64s\", expected \"%s\"", c->label, s, want);
    return CVX_OK;
}

#define DIM CVX_CONFIG_MAX_DIM

cvx_status cvx_t5_config_read(const cvx_config *c, cvx_t5_config *o, cvx_error *err) {
    memset(o, 0, sizeof *o);
    const char *model_type = NULL;
    TRY(cvx_config_string(c, "model_type", "t5", &model_type, err));
    if (strcmp(model_type, "t5"))
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "%s: \"model_type\" is \"%.64s\", expected \"t5\"", c->label,
                        model_type);
    TRY(cvx_config_int(c, "vocab_size", 32128, 1, DIM, &o->vocab_size, err));
    TRY(cvx_config_int(c, "d_model", 512, 1, 65536, &o->d_model, err));
    TRY(cvx_config_int(c, "d_kv", 64, 1, 65536, &o->d_kv, err));
    TRY(cvx_config_int(c, "d_ff", 2048, 1, 262144, &o->d_ff, err));
    TRY(cvx_config_int(c, "num_layers", 6, 1, CVX_CONFIG_MAX_LAYERS, &o->num_layers, err));
    TRY(cvx_config_int(c, "num_heads", 8, 1, 4096, &o->num_heads, err));
    if (o->num_heads * o->d_kv > 262144)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: num_heads * d_kv = %lld is too large", c->label,
                        (long long)(o->num_heads * o->d_kv));
    TRY(cvx_config_int(c, "relative_attention_num_buckets", 32, 1, 65536, &o->relative_attention_num_buckets, err));
    TRY(cvx_config_int(c, "relative_attention_max_distance", 128, 1, 1 << 30, &o->relative_attention_max_distance,
                       err));
    TRY(cvx_config_float(c, "layer_norm_epsilon", 1e-6, 0.0, 1.0, &o->layer_norm_epsilon, err));
    TRY(cvx_config_int(c, "pad_token_id", 0, 0, o->vocab_size - 1, &o->pad_token_id, err));
    TRY(cvx_config_int(c, "eos_token_id", 1, 0, o->vocab_size - 1, &o->eos_token_id, err));
    TRY(bounded_string(c, "feed_forward_proj", "relu", o->feed_forward_proj, sizeof o->feed_forward_proj, err));
    /* T5Config: "gated-<act>" or "<act>"; anything else raises in transformers. */
    const char *ffp = o->feed_forward_proj, *dash = strchr(ffp, '-');
    if (dash && (strncmp(ffp, "gated-", 6) || strchr(dash + 1, '-') || !dash[1]))
        return cvx_fail(err, CVX_ERR_FORMAT,
                        "%s: \"feed_forward_proj\" = \"%s\" is not a valid activation (use \"gated-gelu\" or \"relu\")",
                        c->label, ffp);
    if (!*ffp) return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"feed_forward_proj\" is empty", c->label);
    o->is_gated_act = dash != NULL;
    copy_str(o->dense_act_fn, sizeof o->dense_act_fn, dash ? dash + 1 : ffp);
    if (!strcmp(ffp, "gated-gelu")) copy_str(o->dense_act_fn, sizeof o->dense_act_fn, "gelu_new");
    /* Saved files repeat the derived values; PretrainedConfig sets leftover kwargs after __init__, so a saved
     * value wins over the derived one. */
    TRY(cvx_config_bool(c, "is_gated_act", o->is_gated_act, &o->is_gated_act, err));
    TRY(bounded_string(c, "dense_act_fn", o->dense_act_fn, o->dense_act_fn, sizeof o->dense_act_fn, err));
    return CVX_OK;
}

cvx_status cvx_transformer_config_read(const cvx_config *c, cvx_transformer_config *o, cvx_error *err) {
    memset(o, 0, sizeof *o);
    TRY(check_class_name(c, "CogVideoXTransformer3DModel", err));
    TRY(cvx_config_int(c, "num_attention_heads", 30, 1, 4096, &o->num_attention_heads, err));
    TRY(cvx_config_int(c, "attention_head_dim", 64, 1, 65536, &o->attention_head_dim, err));
    o->inner_dim = o->num_attention_heads * o->attention_head_dim;
    if (o->inner_dim > 262144)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: num_attention_heads * attention_head_dim = %lld is too large",
                        c->label, (long long)o->inner_dim);
    TRY(cvx_config_int(c, "in_channels", 16, 1, 65536, &o->in_channels, err));
    TRY(cvx_config_int(c, "out_channels", 16, 1, 65536, &o->out_channels, err));
    TRY(cvx_config_bool(c, "flip_sin_to_cos", 1, &o->flip_sin_to_cos, err));
    TRY(cvx_config_int(c, "freq_shift", 0, -65536, 65536, &o->freq_shift, err));
    TRY(cvx_config_int(c, "time_embed_dim", 512, 1, 262144, &o->time_embed_dim, err));
    TRY(cvx_config_int(c, "text_embed_dim", 4096, 1, 262144, &o->text_embed_dim, err));
    TRY(cvx_config_int(c, "num_layers", 30, 1, CVX_CONFIG_MAX_LAYERS, &o->num_layers, err));
    TRY(cvx_config_float(c, "dropout", 0.0, 0.0, 1.0, &o->dropout, err));
    TRY(cvx_config_bool(c, "attention_bias", 1, &o->attention_bias, err));
    TRY(cvx_config_int(c, "sample_width", 90, 1, 65536, &o->sample_width, err));
    TRY(cvx_config_int(c, "sample_height", 60, 1, 65536, &o->sample_height, err));
    TRY(cvx_config_int(c, "sample_frames", 49, 1, 65536, &o->sample_frames, err));
    TRY(cvx_config_int(c, "patch_size", 2, 1, 64, &o->patch_size, err));
    TRY(cvx_config_int(c, "temporal_compression_ratio", 4, 1, 64, &o->temporal_compression_ratio, err));
    TRY(cvx_config_int(c, "max_text_seq_length", 226, 1, 65536, &o->max_text_seq_length, err));
    static const char *const acts[] = {"gelu-approximate", "gelu", NULL};
    static const char *const tacts[] = {"silu", "swish", "gelu", "mish", "relu", NULL};
    int idx;
    TRY(cvx_config_enum(c, "activation_fn", "gelu-approximate", acts, &idx, err));
    copy_str(o->activation_fn, sizeof o->activation_fn, acts[idx]);
    TRY(cvx_config_enum(c, "timestep_activation_fn", "silu", tacts, &idx, err));
    copy_str(o->timestep_activation_fn, sizeof o->timestep_activation_fn, tacts[idx]);
    TRY(cvx_config_bool(c, "norm_elementwise_affine", 1, &o->norm_elementwise_affine, err));
    TRY(cvx_config_float(c, "norm_eps", 1e-5, 0.0, 1.0, &o->norm_eps, err));
    TRY(cvx_config_float(c, "spatial_interpolation_scale", 1.875, -1e6, 1e6, &o->spatial_interpolation_scale, err));
    TRY(cvx_config_float(c, "temporal_interpolation_scale", 1.0, -1e6, 1e6, &o->temporal_interpolation_scale, err));
    TRY(cvx_config_bool(c, "use_rotary_positional_embeddings", 0, &o->use_rotary_positional_embeddings, err));
    TRY(cvx_config_bool(c, "use_learned_positional_embeddings", 0, &o->use_learned_positional_embeddings, err));
    if (o->use_learned_positional_embeddings && !o->use_rotary_positional_embeddings)
        return cvx_fail(err, CVX_ERR_FORMAT,
                        "%s: use_learned_positional_embeddings without use_rotary_positional_embeddings is rejected "
                        "by the reference (no such checkpoint exists)",
                        c->label);
    return CVX_OK;
}

cvx_status cvx_vae_config_read(const cvx_config *c, cvx_vae_config *o, cvx_error *err) {
    memset(o, 0, sizeof *o);
    TRY(check_class_name(c, "AutoencoderKLCogVideoX", err));
    TRY(cvx_config_int(c, "in_channels", 3, 1, 65536, &o->in_channels, err));
    TRY(cvx_config_int(c, "out_channels", 3, 1, 65536, &o->out_channels, err));
    static const int64_t def_boc[] = {128, 256, 256, 512};
    TRY(cvx_config_int_array(c, "block_out_channels", def_boc, 4, CVX_VAE_MAX_BLOCKS, 1, 65536, o->block_out_channels,
                             &o->n_blocks, err));
    static const char *const def_down[] = {"CogVideoXDownBlock3D", "CogVideoXDownBlock3D", "CogVideoXDownBlock3D",
                                           "CogVideoXDownBlock3D"};
    static const char *const def_up[] = {"CogVideoXUpBlock3D", "CogVideoXUpBlock3D", "CogVideoXUpBlock3D",
                                         "CogVideoXUpBlock3D"};
    const char *types[CVX_VAE_MAX_BLOCKS];
    int n;
    TRY(cvx_config_string_array(c, "down_block_types", def_down, 4, CVX_VAE_MAX_BLOCKS, types, &n, err));
    for (int i = 0; i < n; i++)
        if (strcmp(types[i], "CogVideoXDownBlock3D"))
            return cvx_fail(err, CVX_ERR_UNSUPPORTED,
                            "%s: \"down_block_types\"[%d] = \"%.64s\" (only CogVideoXDownBlock3D exists)", c->label, i,
                            types[i]);
    /* The encoder walks down_block_types and indexes block_out_channels with the same i. */
    if (n != o->n_blocks)
        return cvx_fail(err, CVX_ERR_FORMAT,
                        "%s: \"down_block_types\" has %d entries but \"block_out_channels\" has %d", c->label, n,
                        o->n_blocks);
    TRY(cvx_config_string_array(c, "up_block_types", def_up, 4, CVX_VAE_MAX_BLOCKS, types, &n, err));
    for (int i = 0; i < n; i++)
        if (strcmp(types[i], "CogVideoXUpBlock3D"))
            return cvx_fail(err, CVX_ERR_UNSUPPORTED,
                            "%s: \"up_block_types\"[%d] = \"%.64s\" (only CogVideoXUpBlock3D exists)", c->label, i,
                            types[i]);
    if (n != o->n_blocks)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"up_block_types\" has %d entries but \"block_out_channels\" has %d",
                        c->label, n, o->n_blocks);
    TRY(cvx_config_int(c, "latent_channels", 16, 1, 65536, &o->latent_channels, err));
    TRY(cvx_config_int(c, "layers_per_block", 3, 1, 64, &o->layers_per_block, err));
    static const char *const acts[] = {"silu", "swish", "mish", "gelu", "relu", NULL};
    int idx;
    TRY(cvx_config_enum(c, "act_fn", "silu", acts, &idx, err));
    copy_str(o->act_fn, sizeof o->act_fn, acts[idx]);
    TRY(cvx_config_float(c, "norm_eps", 1e-6, 0.0, 1.0, &o->norm_eps, err));
    TRY(cvx_config_int(c, "norm_num_groups", 32, 1, 65536, &o->norm_num_groups, err));
    /* nn.GroupNorm raises unless the groups divide every channel count it normalises. */
    for (int i = 0; i < o->n_blocks; i++)
        if (o->block_out_channels[i] % o->norm_num_groups)
            return cvx_fail(err, CVX_ERR_FORMAT,
                            "%s: \"norm_num_groups\" = %lld does not divide block_out_channels[%d] = %lld", c->label,
                            (long long)o->norm_num_groups, i, (long long)o->block_out_channels[i]);
    TRY(cvx_config_float(c, "temporal_compression_ratio", 4, 1, 1 << 20, &o->temporal_compression_ratio, err));
    o->temporal_compress_level = (int)floor(log2(o->temporal_compression_ratio));
    TRY(cvx_config_int(c, "sample_height", 480, 1, 1 << 20, &o->sample_height, err));
    TRY(cvx_config_int(c, "sample_width", 720, 1, 1 << 20, &o->sample_width, err));
    TRY(cvx_config_float(c, "scaling_factor", 1.15258426, -1e30, 1e30, &o->scaling_factor, err));
    if (o->scaling_factor == 0.0) return cvx_fail(err, CVX_ERR_FORMAT, "%s: \"scaling_factor\" is 0", c->label);
    o->has_shift_factor = cvx_config_has(c, "shift_factor");
    if (o->has_shift_factor) TRY(cvx_config_float(c, "shift_factor", 0.0, -1e30, 1e30, &o->shift_factor, err));
    TRY(cvx_config_bool(c, "force_upcast", 1, &o->force_upcast, err));
    TRY(cvx_config_bool(c, "use_quant_conv", 0, &o->use_quant_conv, err));
    TRY(cvx_config_bool(c, "use_post_quant_conv", 0, &o->use_post_quant_conv, err));
    return CVX_OK;
}

cvx_status cvx_scheduler_config_read(const cvx_config *c, cvx_class cls, cvx_scheduler_config *o, cvx_error *err) {
    memset(o, 0, sizeof *o);
    if (cls != CVX_CLASS_DDIM_SCHEDULER && cls != CVX_CLASS_DPM_SCHEDULER)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: not a scheduler class", c->label);
    o->cls = cls;
    const char *cn;
    TRY(cvx_config_string(c, "_class_name", cvx_class_name(cls), &cn, err));
    cvx_class file_cls = cvx_class_from_name(cn);
    if (file_cls != CVX_CLASS_DDIM_SCHEDULER && file_cls != CVX_CLASS_DPM_SCHEDULER)
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "%s: \"_class_name\" = \"%.64s\" is not a CogVideoX scheduler",
                        c->label, cn);
    TRY(cvx_config_int(c, "num_train_timesteps", 1000, 1, 1 << 20, &o->num_train_timesteps, err));
    TRY(cvx_config_float(c, "beta_start", 0.00085, 0.0, 1.0, &o->beta_start, err));
    TRY(cvx_config_float(c, "beta_end", 0.012, 0.0, 1.0, &o->beta_end, err));
    static const char *const schedules[] = {"scaled_linear", "linear", "squaredcos_cap_v2", NULL};
    static const char *const predictions[] = {"epsilon", "v_prediction", "sample", NULL};
    static const char *const spacings[] = {"leading", "trailing", "linspace", NULL};
    int idx;
    TRY(cvx_config_enum(c, "beta_schedule", "scaled_linear", schedules, &idx, err));
    copy_str(o->beta_schedule, sizeof o->beta_schedule, schedules[idx]);
    if (cvx_config_has(c, "trained_betas"))
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "%s: \"trained_betas\" is not supported (use a beta_schedule)",
                        c->label);
    TRY(cvx_config_bool(c, "clip_sample", 1, &o->clip_sample, err));
    TRY(cvx_config_bool(c, "set_alpha_to_one", 1, &o->set_alpha_to_one, err));
    TRY(cvx_config_int(c, "steps_offset", 0, 0, 1 << 20, &o->steps_offset, err));
    TRY(cvx_config_enum(c, "prediction_type", "epsilon", predictions, &idx, err));
    copy_str(o->prediction_type, sizeof o->prediction_type, predictions[idx]);
    TRY(cvx_config_float(c, "clip_sample_range", 1.0, 0.0, 1e30, &o->clip_sample_range, err));
    TRY(cvx_config_float(c, "sample_max_value", 1.0, 0.0, 1e30, &o->sample_max_value, err));
    TRY(cvx_config_enum(c, "timestep_spacing", "leading", spacings, &idx, err));
    copy_str(o->timestep_spacing, sizeof o->timestep_spacing, spacings[idx]);
    TRY(cvx_config_bool(c, "rescale_betas_zero_snr", 0, &o->rescale_betas_zero_snr, err));
    TRY(cvx_config_float(c, "snr_shift_scale", 3.0, 1e-30, 1e30, &o->snr_shift_scale, err));
    return CVX_OK;
}

/* ---- Python-compatible JSON text ------------------------------------------------------------------------- */
typedef struct {
    char *buf;
    size_t len, cap;
    int oom;
} sbuf;

static void sb_put(sbuf *b, const char *s, size_t n) {
    if (b->oom) return;
    if (b->len + n + 1 > b->cap) {
        size_t cap = b->cap ? b->cap : 256;
        while (cap < b->len + n + 1)
            cap *= 2;
        char *nb = realloc(b->buf, cap);
        if (!nb) {
            b->oom = 1;
            return;
        }
        b->buf = nb;
        b->cap = cap;
    }
    memcpy(b->buf + b->len, s, n);
    b->len += n;
    b->buf[b->len] = '\0';
}
static void sb_puts(sbuf *b, const char *s) { sb_put(b, s, strlen(s)); }

static void sb_indent(sbuf *b, int level) {
    sb_put(b, "\n", 1);
    for (int i = 0; i < level; i++)
        sb_put(b, "  ", 2);
}

/* json.dumps' ensure_ascii: every character outside ' '..'~' becomes an escape, non-BMP as a surrogate pair. */
static void put_string(sbuf *b, const char *s, size_t n) {
    sb_put(b, "\"", 1);
    char tmp[16];
    for (size_t i = 0; i < n;) {
        unsigned char ch = (unsigned char)s[i];
        uint32_t cp;
        size_t len = 1;
        if (ch < 0x80)
            cp = ch;
        else if ((ch & 0xE0) == 0xC0 && i + 1 < n)
            cp = ch & 0x1F, len = 2;
        else if ((ch & 0xF0) == 0xE0 && i + 2 < n)
            cp = ch & 0x0F, len = 3;
        else if ((ch & 0xF8) == 0xF0 && i + 3 < n)
            cp = ch & 0x07, len = 4;
        else
            cp = 0xFFFD; /* jansson only holds valid UTF-8, so this is unreachable */
        for (size_t k = 1; k < len; k++)
            cp = (cp << 6) | ((unsigned char)s[i + k] & 0x3F);
        i += len;
        switch (cp) {
        case '"': sb_puts(b, "\\\""); continue;
        case '\\': sb_puts(b, "\\\\"); continue;
        case '\n': sb_puts(b, "\\n"); continue;
        case '\r': sb_puts(b, "\\r"); continue;
        case '\t': sb_puts(b, "\\t"); continue;
        case '\b': sb_puts(b, "\\b"); continue;
        case '\f': sb_puts(b, "\\f"); continue;
        default: break;
        }
        if (cp >= 0x20 && cp <= 0x7E) {
            char c1 = (char)cp;
            sb_put(b, &c1, 1);
        } else if (cp < 0x10000) {
            snprintf(tmp, sizeof tmp, "\\u%04x", (unsigned)cp);
            sb_puts(b, tmp);
        } else {
            uint32_t v = cp - 0x10000;
            snprintf(tmp, sizeof tmp, "\\u%04x\\u%04x", (unsigned)(0xD800 + (v >> 10)),
                     (unsigned)(0xDC00 + (v & 0x3FF)));
            sb_puts(b, tmp);
        }
    }
    sb_put(b, "\"", 1);
}

/* float.__repr__: the shortest digit string that reads back to the same double; positional notation when the
 * decimal exponent is in [-4, 16), else scientific with a signed two-digit (at least) exponent. */
static int put_float(sbuf *b, double v) {
    if (!isfinite(v)) return -1;
    if (v == 0.0) {
        sb_puts(b, signbit(v) ? "-0.0" : "0.0");
        return 0;
    }
    char sci[40];
    for (int prec = 0; prec < 17; prec++) {
        snprintf(sci, sizeof sci, "%.*e", prec, v);
        if (strtod(sci, NULL) == v) break;
    }
    /* sci = [-]d[.ddd]e[+-]XX */
    const char *p = sci;
    int neg = *p == '-';
    if (neg) p++;
    char digits[24];
    int nd = 0;
    for (; *p && *p != 'e'; p++)
        if (*p >= '0' && *p <= '9') digits[nd++] = *p;
    while (nd > 1 && digits[nd - 1] == '0')
        nd--;
    digits[nd] = '\0';
    int exp10 = atoi(p + 1);
    char out[64];
    size_t o = 0;
    if (neg) out[o++] = '-';
    if (exp10 >= -4 && exp10 < 16) {
        if (exp10 < 0) {
            out[o++] = '0';
            out[o++] = '.';
            for (int i = 0; i < -exp10 - 1; i++)
                out[o++] = '0';
            for (int i = 0; i < nd; i++)
                out[o++] = digits[i];
        } else {
            for (int i = 0; i <= exp10; i++)
                out[o++] = i < nd ? digits[i] : '0';
            out[o++] = '.';
            if (nd > exp10 + 1)
                for (int i = exp10 + 1; i < nd; i++)
                    out[o++] = digits[i];
            else
                out[o++] = '0';
        }
        out[o] = '\0';
    } else {
        out[o++] = digits[0];
        if (nd > 1) {
            out[o++] = '.';
            for (int i = 1; i < nd; i++)
                out[o++] = digits[i];
        }
        snprintf(out + o, sizeof out - o, "e%c%02d", exp10 < 0 ? '-' : '+', exp10 < 0 ? -exp10 : exp10);
    }
    sb_puts(b, out);
    return 0;
}

static int cmp_keys(const void *a, const void *b) { return strcmp(*(const char *const *)a, *(const char *const *)b); }

static int put_value(sbuf *b, const json_t *v, int level) {
    char tmp[32];
    switch (json_typeof(v)) {
    case JSON_NULL: sb_puts(b, "null"); return 0;
    case JSON_TRUE: sb_puts(b, "true"); return 0;
    case JSON_FALSE: sb_puts(b, "false"); return 0;
    case JSON_INTEGER:
        snprintf(tmp, sizeof tmp, "%lld", (long long)json_integer_value(v));
        sb_puts(b, tmp);
        return 0;
    case JSON_REAL: return put_float(b, json_real_value(v));
    case JSON_STRING: put_string(b, json_string_value(v), json_string_length(v)); return 0;
    case JSON_ARRAY: {
        size_t n = json_array_size(v);
        if (!n) {
            sb_puts(b, "[]");
            return 0;
        }
        sb_puts(b, "[");
        for (size_t i = 0; i < n; i++) {
            if (i) sb_puts(b, ",");
            sb_indent(b, level + 1);
            if (put_value(b, json_array_get(v, i), level + 1)) return -1;
        }
        sb_indent(b, level);
        sb_puts(b, "]");
        return 0;
    }
    case JSON_OBJECT: {
        size_t n = json_object_size(v);
        if (!n) {
            sb_puts(b, "{}");
            return 0;
        }
        const char **keys = malloc(n * sizeof *keys);
        if (!keys) return -1;
        size_t k = 0;
        const char *key;
        json_t *val;
        json_object_foreach((json_t *)v, key, val) keys[k++] = key;
        qsort(keys, k, sizeof *keys, cmp_keys);
        sb_puts(b, "{");
        int rc = 0;
        for (size_t i = 0; i < k && !rc; i++) {
            if (i) sb_puts(b, ",");
            sb_indent(b, level + 1);
            put_string(b, keys[i], strlen(keys[i]));
            sb_puts(b, ": ");
            rc = put_value(b, json_object_get(v, keys[i]), level + 1);
        }
        free(keys);
        if (rc) return -1;
        sb_indent(b, level);
        sb_puts(b, "}");
        return 0;
    }
    }
    return -1;
}

char *cvx_json_dumps_python(const json_t *v, size_t *len) {
    sbuf b = {0};
    if (put_value(&b, v, 0) || (sb_puts(&b, "\n"), b.oom)) {
        free(b.buf);
        return NULL;
    }
    if (len) *len = b.len;
    return b.buf;
}

cvx_status cvx_json_write_python(const char *path, const json_t *v, cvx_error *err) {
    size_t len;
    char *text = cvx_json_dumps_python(v, &len);
    if (!text) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: cannot format the JSON", path);
    char tmp[4096];
    if ((size_t)snprintf(tmp, sizeof tmp, "%s.tmp", path) >= sizeof tmp) {
        free(text);
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: path too long", path);
    }
    FILE *f = fopen(tmp, "wb");
    if (!f) {
        free(text);
        return cvx_fail(err, CVX_ERR_IO, "%s: cannot create: %s", tmp, strerror(errno));
    }
    int bad = fwrite(text, 1, len, f) != len;
    bad |= fclose(f) != 0;
    free(text);
    if (bad || rename(tmp, path)) {
        remove(tmp);
        return cvx_fail(err, CVX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
    }
    return CVX_OK;
}
