/* Model folders (diffusers pipeline layout) and the checkpoint names/shapes of each component class.
 *
 * Name derivation follows the reference modules' registration order (= state_dict order):
 *  - transformers T5EncoderModel: shared [V, D]; block i: layer.0.SelfAttention.{q,k,v} [I, D], .o [D, I],
 *    relative_attention_bias [buckets, H] (block 0 only), layer.0.layer_norm [D], layer.1.DenseReluDense
 *    .wi_0/.wi_1 (gated) or .wi [F, D], .wo [D, F], layer.1.layer_norm [D]; encoder.final_layer_norm [D].
 *    save_pretrained drops the tied alias encoder.embed_tokens.weight; either name is accepted.
 *  - diffusers CogVideoXTransformer3DModel (C = heads × head_dim, T = time_embed_dim): patch_embed (learned
 *    pos_embedding buffer [1, text + patches, C] only for 5b-I2V; the sincos one is non-persistent), proj
 *    [C, in, p, p], text_proj [C, text]; time_embedding.linear_1 [T, C], linear_2 [T, T]; per block: norm1
 *    (LayerNormZero: linear [6C, T], norm [C]), attn1 (norm_q/norm_k [head_dim], to_q/k/v [C, C], to_out.0),
 *    norm2, ff.net.0.proj [4C, C], ff.net.2 [C, 4C]; norm_final [C]; norm_out (linear [2C, T], norm [C]);
 *    proj_out [p·p·out, C].
 *  - diffusers AutoencoderKLCogVideoX: encoder (conv_in, down_blocks × layers_per_block resnets + a 2D
 *    downsampler except in the last block, mid_block 2 resnets, GroupNorm norm_out, conv_out [2·latent, ...]),
 *    decoder (conv_in, mid_block, up_blocks × (layers_per_block + 1) resnets with SpatialNorm3D norms + a 2D
 *    upsampler except in the last block, norm_out, conv_out). Causal convs hold their Conv3d as `.conv`. */
#include "io/model.h"

#include "core/fs.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define TRY(expr)                                                                                                      \
    do {                                                                                                               \
        cvx_status st_ = (expr);                                                                                       \
        if (st_ != CVX_OK) return st_;                                                                                 \
    } while (0)

/* ---- tensor lists ---------------------------------------------------------------------------------------- */
void cvx_tensor_list_free(cvx_tensor_list *l) {
    if (!l) return;
    free(l->t);
    memset(l, 0, sizeof *l);
}

long cvx_tensor_list_find(const cvx_tensor_list *l, const char *name) {
    for (size_t i = 0; i < l->n; i++)
        if (!strcmp(l->t[i].name, name) || (l->t[i].alt_name[0] && !strcmp(l->t[i].alt_name, name))) return (long)i;
    return -1;
}

/* No config within the getters' ranges comes near this; it bounds what a hostile config can make us build. */
#define MAX_TENSORS 100000
#define MAX_NUMEL ((int64_t)1 << 40)

typedef struct {
    cvx_tensor_list *l;
    cvx_error *err;
    const char *label;
} builder;

static cvx_status add(builder *b, cvx_param_kind kind, int64_t fan_in, int ndim, const int64_t *shape, const char *fmt,
                      ...) __attribute__((format(printf, 6, 7)));
static cvx_status add(builder *b, cvx_param_kind kind, int64_t fan_in, int ndim, const int64_t *shape, const char *fmt,
                      ...) {
    cvx_tensor_list *l = b->l;
    if (l->n >= MAX_TENSORS)
        return cvx_fail(b->err, CVX_ERR_FORMAT, "%s: the config implies more than %d tensors", b->label, MAX_TENSORS);
    if (l->n == l->cap) {
        size_t cap = l->cap ? l->cap * 2 : 256;
        cvx_expected_tensor *t = realloc(l->t, cap * sizeof *t);
        if (!t) return cvx_fail(b->err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", b->label);
        l->t = t;
        l->cap = cap;
    }
    cvx_expected_tensor *e = &l->t[l->n];
    memset(e, 0, sizeof *e);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(e->name, sizeof e->name, fmt, ap);
    va_end(ap);
    e->ndim = ndim;
    e->numel = 1;
    for (int i = 0; i < ndim; i++) {
        e->shape[i] = shape[i];
        /* every factor is >= 1 and <= 2^20 (config ranges), so this test cannot itself overflow */
        if (shape[i] < 1 || e->numel > MAX_NUMEL / shape[i])
            return cvx_fail(b->err, CVX_ERR_FORMAT, "%s: tensor \"%s\" would be too large", b->label, e->name);
        e->numel *= shape[i];
    }
    if (l->numel > INT64_MAX - e->numel)
        return cvx_fail(b->err, CVX_ERR_FORMAT, "%s: the model would be too large", b->label);
    e->kind = kind;
    e->fan_in = fan_in;
    l->numel += e->numel;
    l->n++;
    return CVX_OK;
}

#define S(...) ((const int64_t[]){__VA_ARGS__})
/* A Linear(in, out): weight [out, in] (+ bias [out]). */
static cvx_status linear(builder *b, const char *prefix, int64_t in, int64_t out, int bias) {
    TRY(add(b, CVX_PARAM_WEIGHT, in, 2, S(out, in), "%s.weight", prefix));
    if (bias) TRY(add(b, CVX_PARAM_BIAS, 0, 1, S(out), "%s.bias", prefix));
    return CVX_OK;
}
/* A LayerNorm / GroupNorm with affine parameters: weight, bias [c]. */
static cvx_status norm(builder *b, const char *prefix, int64_t c) {
    TRY(add(b, CVX_PARAM_NORM_WEIGHT, 0, 1, S(c), "%s.weight", prefix));
    return add(b, CVX_PARAM_NORM_BIAS, 0, 1, S(c), "%s.bias", prefix);
}
/* A Conv3d(in, out, k) with bias: weight [out, in, k, k, k]. */
static cvx_status conv3d(builder *b, const char *prefix, int64_t in, int64_t out, int64_t k) {
    TRY(add(b, CVX_PARAM_WEIGHT, in * k * k * k, 5, S(out, in, k, k, k), "%s.weight", prefix));
    return add(b, CVX_PARAM_BIAS, 0, 1, S(out), "%s.bias", prefix);
}
static cvx_status conv2d(builder *b, const char *prefix, int64_t in, int64_t out, int64_t k) {
    TRY(add(b, CVX_PARAM_WEIGHT, in * k * k, 4, S(out, in, k, k), "%s.weight", prefix));
    return add(b, CVX_PARAM_BIAS, 0, 1, S(out), "%s.bias", prefix);
}

static cvx_status t5_tensors(builder *b, const cvx_config *cfg) {
    cvx_t5_config c;
    TRY(cvx_t5_config_read(cfg, &c, b->err));
    const int64_t D = c.d_model, I = c.num_heads * c.d_kv, F = c.d_ff;
    TRY(add(b, CVX_PARAM_EMBEDDING, 0, 2, S(c.vocab_size, D), "shared.weight"));
    snprintf(b->l->t[b->l->n - 1].alt_name, CVX_TENSOR_NAME_MAX, "encoder.embed_tokens.weight");
    char p[CVX_TENSOR_NAME_MAX];
    for (int64_t i = 0; i < c.num_layers; i++) {
        const char *q[] = {"q", "k", "v"};
        for (int k = 0; k < 3; k++) {
            snprintf(p, sizeof p, "encoder.block.%lld.layer.0.SelfAttention.%s", (long long)i, q[k]);
            TRY(linear(b, p, D, I, 0));
        }
        snprintf(p, sizeof p, "encoder.block.%lld.layer.0.SelfAttention.o", (long long)i);
        TRY(linear(b, p, I, D, 0));
        if (i == 0)
            TRY(add(b, CVX_PARAM_EMBEDDING, 0, 2, S(c.relative_attention_num_buckets, c.num_heads),
                    "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight"));
        TRY(add(b, CVX_PARAM_NORM_WEIGHT, 0, 1, S(D), "encoder.block.%lld.layer.0.layer_norm.weight", (long long)i));
        if (c.is_gated_act) {
            snprintf(p, sizeof p, "encoder.block.%lld.layer.1.DenseReluDense.wi_0", (long long)i);
            TRY(linear(b, p, D, F, 0));
            snprintf(p, sizeof p, "encoder.block.%lld.layer.1.DenseReluDense.wi_1", (long long)i);
            TRY(linear(b, p, D, F, 0));
        } else {
            snprintf(p, sizeof p, "encoder.block.%lld.layer.1.DenseReluDense.wi", (long long)i);
            TRY(linear(b, p, D, F, 0));
        }
        snprintf(p, sizeof p, "encoder.block.%lld.layer.1.DenseReluDense.wo", (long long)i);
        TRY(linear(b, p, F, D, 0));
        TRY(add(b, CVX_PARAM_NORM_WEIGHT, 0, 1, S(D), "encoder.block.%lld.layer.1.layer_norm.weight", (long long)i));
    }
    return add(b, CVX_PARAM_NORM_WEIGHT, 0, 1, S(D), "encoder.final_layer_norm.weight");
}

static cvx_status transformer_tensors(builder *b, const cvx_config *cfg) {
    cvx_transformer_config c;
    TRY(cvx_transformer_config_read(cfg, &c, b->err));
    const int64_t C = c.inner_dim, T = c.time_embed_dim, p = c.patch_size, hd = c.attention_head_dim;
    const int affine = c.norm_elementwise_affine;
    if (c.use_learned_positional_embeddings) {
        /* A persistent buffer of patch_embed itself, so it precedes the sub-modules' parameters. */
        int64_t patches =
            (c.sample_height / p) * (c.sample_width / p) * ((c.sample_frames - 1) / c.temporal_compression_ratio + 1);
        TRY(add(b, CVX_PARAM_POS_EMBEDDING, 0, 3, S(1, c.max_text_seq_length + patches, C),
                "patch_embed.pos_embedding"));
    }
    TRY(add(b, CVX_PARAM_WEIGHT, c.in_channels * p * p, 4, S(C, c.in_channels, p, p), "patch_embed.proj.weight"));
    TRY(add(b, CVX_PARAM_BIAS, 0, 1, S(C), "patch_embed.proj.bias"));
    TRY(linear(b, "patch_embed.text_proj", c.text_embed_dim, C, 1));
    TRY(linear(b, "time_embedding.linear_1", C, T, 1));
    TRY(linear(b, "time_embedding.linear_2", T, T, 1));
    char p1[CVX_TENSOR_NAME_MAX];
    for (int64_t i = 0; i < c.num_layers; i++) {
        const long long li = (long long)i;
        for (int n = 1; n <= 2; n++) {
            snprintf(p1, sizeof p1, "transformer_blocks.%lld.norm%d.linear", li, n);
            TRY(linear(b, p1, T, 6 * C, 1));
            if (affine) {
                snprintf(p1, sizeof p1, "transformer_blocks.%lld.norm%d.norm", li, n);
                TRY(norm(b, p1, C));
            }
            if (n == 2) break;
            /* Attention(qk_norm="layer_norm") builds its norms with elementwise_affine=True whatever the block's
             * norm_elementwise_affine says. */
            snprintf(p1, sizeof p1, "transformer_blocks.%lld.attn1.norm_q", li);
            TRY(norm(b, p1, hd));
            snprintf(p1, sizeof p1, "transformer_blocks.%lld.attn1.norm_k", li);
            TRY(norm(b, p1, hd));
            const char *qkv[] = {"to_q", "to_k", "to_v"};
            for (int k = 0; k < 3; k++) {
                snprintf(p1, sizeof p1, "transformer_blocks.%lld.attn1.%s", li, qkv[k]);
                TRY(linear(b, p1, C, C, c.attention_bias));
            }
            snprintf(p1, sizeof p1, "transformer_blocks.%lld.attn1.to_out.0", li);
            TRY(linear(b, p1, C, C, 1));
        }
        snprintf(p1, sizeof p1, "transformer_blocks.%lld.ff.net.0.proj", li);
        TRY(linear(b, p1, C, 4 * C, 1));
        snprintf(p1, sizeof p1, "transformer_blocks.%lld.ff.net.2", li);
        TRY(linear(b, p1, 4 * C, C, 1));
    }
    if (affine) TRY(norm(b, "norm_final", C));
    TRY(linear(b, "norm_out.linear", T, 2 * C, 1));
    if (affine) TRY(norm(b, "norm_out.norm", C));
    return linear(b, "proj_out", C, p * p * c.out_channels, 1);
}

/* CogVideoXResnetBlock3D (temb_channels = 0: no temb_proj). zq > 0: decoder block with SpatialNorm3D norms. */
static cvx_status vae_resnet(builder *b, const char *prefix, int64_t cin, int64_t cout, int64_t zq) {
    char p[CVX_TENSOR_NAME_MAX];
    for (int n = 1; n <= 2; n++) {
        int64_t ch = n == 1 ? cin : cout;
        if (zq) {
            snprintf(p, sizeof p, "%s.norm%d.norm_layer", prefix, n);
            TRY(norm(b, p, ch));
            snprintf(p, sizeof p, "%s.norm%d.conv_y.conv", prefix, n);
            TRY(conv3d(b, p, zq, ch, 1));
            snprintf(p, sizeof p, "%s.norm%d.conv_b.conv", prefix, n);
            TRY(conv3d(b, p, zq, ch, 1));
        } else {
            snprintf(p, sizeof p, "%s.norm%d", prefix, n);
            TRY(norm(b, p, ch));
        }
    }
    snprintf(p, sizeof p, "%s.conv1.conv", prefix);
    TRY(conv3d(b, p, cin, cout, 3));
    snprintf(p, sizeof p, "%s.conv2.conv", prefix);
    TRY(conv3d(b, p, cout, cout, 3));
    if (cin != cout) {
        snprintf(p, sizeof p, "%s.conv_shortcut", prefix); /* a plain 1×1×1 Conv3d, no .conv */
        TRY(conv3d(b, p, cin, cout, 1));
    }
    return CVX_OK;
}

static cvx_status vae_tensors(builder *b, const cvx_config *cfg) {
    cvx_vae_config c;
    TRY(cvx_vae_config_read(cfg, &c, b->err));
    const int n = c.n_blocks;
    const int64_t *boc = c.block_out_channels, last = boc[n - 1], lat = c.latent_channels;
    char p[CVX_TENSOR_NAME_MAX];
    /* encoder */
    TRY(conv3d(b, "encoder.conv_in.conv", c.in_channels, boc[0], 3));
    int64_t ch = boc[0];
    for (int i = 0; i < n; i++) {
        for (int64_t j = 0; j < c.layers_per_block; j++) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.resnets.%lld", i, (long long)j);
            TRY(vae_resnet(b, p, j == 0 ? ch : boc[i], boc[i], 0));
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "encoder.down_blocks.%d.downsamplers.0.conv", i);
            TRY(conv2d(b, p, boc[i], boc[i], 3));
        }
        ch = boc[i];
    }
    TRY(vae_resnet(b, "encoder.mid_block.resnets.0", last, last, 0));
    TRY(vae_resnet(b, "encoder.mid_block.resnets.1", last, last, 0));
    TRY(norm(b, "encoder.norm_out", last));
    TRY(conv3d(b, "encoder.conv_out.conv", last, 2 * lat, 3));
    /* decoder: block_out_channels reversed */
    TRY(conv3d(b, "decoder.conv_in.conv", lat, last, 3));
    TRY(vae_resnet(b, "decoder.mid_block.resnets.0", last, last, lat));
    TRY(vae_resnet(b, "decoder.mid_block.resnets.1", last, last, lat));
    ch = last;
    for (int i = 0; i < n; i++) {
        int64_t out = boc[n - 1 - i];
        for (int64_t j = 0; j < c.layers_per_block + 1; j++) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.resnets.%lld", i, (long long)j);
            TRY(vae_resnet(b, p, j == 0 ? ch : out, out, lat));
        }
        if (i < n - 1) {
            snprintf(p, sizeof p, "decoder.up_blocks.%d.upsamplers.0.conv", i);
            TRY(conv2d(b, p, out, out, 3));
        }
        ch = out;
    }
    TRY(norm(b, "decoder.norm_out.norm_layer", boc[0]));
    TRY(conv3d(b, "decoder.norm_out.conv_y.conv", lat, boc[0], 1));
    TRY(conv3d(b, "decoder.norm_out.conv_b.conv", lat, boc[0], 1));
    TRY(conv3d(b, "decoder.conv_out.conv", boc[0], c.out_channels, 3));
    /* The reference sizes these from the VAE's out_channels (not latent_channels); kept as written. */
    if (c.use_quant_conv) TRY(conv3d(b, "quant_conv", 2 * c.out_channels, 2 * c.out_channels, 1));
    if (c.use_post_quant_conv) TRY(conv3d(b, "post_quant_conv", c.out_channels, c.out_channels, 1));
    return CVX_OK;
}

cvx_status cvx_model_expected_tensors(cvx_class cls, const cvx_config *cfg, cvx_tensor_list *out, cvx_error *err) {
    memset(out, 0, sizeof *out);
    if (!cfg) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "expected tensors: no config");
    builder b = {out, err, cvx_config_label(cfg)};
    switch (cls) {
    case CVX_CLASS_T5_ENCODER: return t5_tensors(&b, cfg);
    case CVX_CLASS_TRANSFORMER_3D: return transformer_tensors(&b, cfg);
    case CVX_CLASS_VAE: return vae_tensors(&b, cfg);
    default:
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: class %s has no weights", b.label, cvx_class_name(cls));
    }
}

/* ---- checking weights ------------------------------------------------------------------------------------ */
cvx_status cvx_model_check_weights(const char *component, const char *where, const cvx_tensor_list *expected,
                                   const cvx_weights *w, cvx_error *err) {
    cvx_status first = CVX_OK;
    int problems = 0;
    char msg[CVX_ERROR_MESSAGE_MAX], have[96], want[96];
    for (size_t i = 0; i < expected->n; i++) {
        const cvx_expected_tensor *e = &expected->t[i];
        const cvx_st_tensor *t = cvx_weights_find(w, e->name);
        if (!t && e->alt_name[0]) t = cvx_weights_find(w, e->alt_name);
        cvx_status st = CVX_OK;
        cvx_shape_str(e->ndim, e->shape, want, sizeof want);
        if (!t) {
            st = CVX_ERR_NOT_FOUND;
            snprintf(msg, sizeof msg, "%s: tensor \"%s\" %s is missing from %s", component, e->name, want, where);
        } else if (t->dtype != CVX_DTYPE_F32 && t->dtype != CVX_DTYPE_F16 && t->dtype != CVX_DTYPE_BF16) {
            st = CVX_ERR_SHAPE;
            snprintf(msg, sizeof msg, "%s: tensor \"%s\" in %s has dtype %s (expected F32, F16 or BF16)", component,
                     t->name, t->file, cvx_dtype_name(t->dtype));
        } else {
            int same = t->ndim == e->ndim;
            for (int d = 0; same && d < e->ndim; d++)
                same = t->shape[d] == e->shape[d];
            if (!same) {
                st = CVX_ERR_SHAPE;
                snprintf(msg, sizeof msg, "%s: tensor \"%s\" in %s has shape %s, but the config implies %s", component,
                         t->name, t->file, cvx_shape_str(t->ndim, t->shape, have, sizeof have), want);
            }
        }
        /* Both spellings of a tied tensor may be present; then they must agree too. */
        if (!st && e->alt_name[0] && cvx_weights_find(w, e->name) && cvx_weights_find(w, e->alt_name)) {
            const cvx_st_tensor *a = cvx_weights_find(w, e->alt_name);
            int same = a->ndim == e->ndim;
            for (int d = 0; same && d < e->ndim; d++)
                same = a->shape[d] == e->shape[d];
            if (!same) {
                st = CVX_ERR_SHAPE;
                snprintf(msg, sizeof msg, "%s: tensor \"%s\" in %s has shape %s, but the config implies %s", component,
                         a->name, a->file, cvx_shape_str(a->ndim, a->shape, have, sizeof have), want);
            }
        }
        if (st) {
            if (!problems++) {
                first = st;
                cvx_fail(err, st, "%s", msg);
            }
        }
    }
    size_t n = cvx_weights_count(w);
    for (size_t i = 0; i < n; i++) {
        const cvx_st_tensor *t = cvx_weights_at(w, i);
        if (cvx_tensor_list_find(expected, t->name) >= 0) continue;
        if (!problems++) {
            first = CVX_ERR_FORMAT;
            cvx_fail(err, first, "%s: unexpected tensor \"%s\" in %s (the config implies no such tensor)", component,
                     t->name, t->file);
        }
    }
    if (problems > 1) {
        size_t len = strnlen(err->message, sizeof err->message);
        snprintf(err->message + len, sizeof err->message - len, " (and %d more problem%s)", problems - 1,
                 problems > 2 ? "s" : "");
    }
    return first;
}

/* ---- the folder ------------------------------------------------------------------------------------------- */
cvx_model_open_params cvx_model_open_params_default(void) {
    cvx_model_open_params p = {.check_weights = 1};
    return p;
}

static int is_dir(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static uint64_t file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode) ? (uint64_t)sb.st_size : 0;
}

static const struct {
    const char *name;
    const char *library;
    cvx_class cls1, cls2; /* the classes this slot accepts */
    const char *supported;
    int optional; /* may be [null, null]: a folder used with precomputed prompt embeddings (diffusers'
                   * from_pretrained(..., tokenizer=None, text_encoder=None) and save_pretrained of such a pipeline) */
} slots[] = {
    {"tokenizer", "transformers", CVX_CLASS_T5_TOKENIZER, CVX_CLASS_T5_TOKENIZER, "T5Tokenizer, T5TokenizerFast", 1},
    {"text_encoder", "transformers", CVX_CLASS_T5_ENCODER, CVX_CLASS_T5_ENCODER, "T5EncoderModel", 1},
    {"transformer", "diffusers", CVX_CLASS_TRANSFORMER_3D, CVX_CLASS_TRANSFORMER_3D, "CogVideoXTransformer3DModel", 0},
    {"vae", "diffusers", CVX_CLASS_VAE, CVX_CLASS_VAE, "AutoencoderKLCogVideoX", 0},
    {"scheduler", "diffusers", CVX_CLASS_DDIM_SCHEDULER, CVX_CLASS_DPM_SCHEDULER,
     "CogVideoXDDIMScheduler, CogVideoXDPMScheduler", 0},
};
#define N_SLOTS ((int)(sizeof slots / sizeof slots[0]))

static const char *const pipelines[] = {"CogVideoXPipeline", "CogVideoXImageToVideoPipeline",
                                        "CogVideoXVideoToVideoPipeline", NULL};

static cvx_status open_weights(cvx_model_component *c, cvx_error *err) {
    cvx_weights *w;
    cvx_status st = cvx_weights_open(&w, c->dir, err);
    if (st) return cvx_error_prefix(err, "%s: ", c->name);
    st = cvx_model_check_weights(c->name, c->dir, &c->expected, w, err);
    if (!st) {
        size_t n = cvx_weights_count(w);
        const char *files[256];
        int nf = 0;
        for (size_t i = 0; i < n; i++) {
            const cvx_st_tensor *t = cvx_weights_at(w, i);
            int64_t numel = 1;
            for (int d = 0; d < t->ndim; d++)
                numel *= t->shape[d];
            c->n_params += numel;
            c->dtype_params[t->dtype] += numel;
            int seen = 0;
            for (int k = 0; k < nf && !seen; k++)
                seen = !strcmp(files[k], t->file);
            if (!seen && nf < 256) {
                files[nf++] = t->file;
                c->file_bytes += file_size(t->file);
            }
        }
        /* A tied tensor stored under both names is one parameter. */
        for (size_t i = 0; i < c->expected.n; i++) {
            const cvx_expected_tensor *e = &c->expected.t[i];
            const cvx_st_tensor *a;
            if (e->alt_name[0] && cvx_weights_find(w, e->name) && (a = cvx_weights_find(w, e->alt_name))) {
                c->n_params -= e->numel;
                c->dtype_params[a->dtype] -= e->numel;
            }
        }
        c->n_files = nf;
        c->data_bytes = cvx_weights_nbytes(w);
        DIR *d = opendir(c->dir);
        if (d) {
            struct dirent *de;
            while ((de = readdir(d))) {
                size_t len = strlen(de->d_name), sl = strlen(".safetensors.index.json");
                if (len > sl && !strcmp(de->d_name + len - sl, ".safetensors.index.json")) {
                    char *ip = cvx_path_join(c->dir, de->d_name);
                    if (ip) c->file_bytes += file_size(ip);
                    free(ip);
                }
            }
            closedir(d);
        }
        c->weights_checked = 1;
    }
    cvx_weights_close(w);
    return st;
}

static cvx_status open_component(cvx_model_component *c, const cvx_model_open_params *p, cvx_error *err) {
    const char *cfg_file = c->cls == CVX_CLASS_T5_TOKENIZER ? "tokenizer_config.json"
                           : (c->cls == CVX_CLASS_DDIM_SCHEDULER || c->cls == CVX_CLASS_DPM_SCHEDULER)
                               ? "scheduler_config.json"
                               : "config.json";
    char *cfg_path = cvx_path_join(c->dir, cfg_file);
    if (!cfg_path) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    cvx_status st = CVX_OK;
    if (c->cls == CVX_CLASS_T5_TOKENIZER) {
        char *sp = cvx_path_join(c->dir, "spiece.model");
        c->spiece_bytes = sp ? file_size(sp) : 0;
        if (!c->spiece_bytes)
            st = cvx_fail(err, CVX_ERR_NOT_FOUND, "tokenizer: %s is missing or empty (the T5 SentencePiece model)",
                          sp ? sp : "spiece.model");
        free(sp);
        c->model_max_length = -1;
        if (!st && file_size(cfg_path)) {
            st = cvx_config_load(&c->config, cfg_path, err);
            /* transformers stores a huge sentinel when there is no limit; only a real one is reported. */
            json_t *v = st ? NULL : json_object_get(cvx_config_json(c->config), "model_max_length");
            if (json_is_integer(v) && json_integer_value(v) > 0 && json_integer_value(v) < (1 << 30))
                c->model_max_length = json_integer_value(v);
        }
        free(cfg_path);
        return st;
    }
    st = cvx_config_load(&c->config, cfg_path, err);
    free(cfg_path);
    if (st) return cvx_error_prefix(err, "%s: ", c->name);
    switch (c->cls) {
    case CVX_CLASS_T5_ENCODER: st = cvx_t5_config_read(c->config, &c->cfg.t5, err); break;
    case CVX_CLASS_TRANSFORMER_3D: st = cvx_transformer_config_read(c->config, &c->cfg.transformer, err); break;
    case CVX_CLASS_VAE: st = cvx_vae_config_read(c->config, &c->cfg.vae, err); break;
    default: st = cvx_scheduler_config_read(c->config, c->cls, &c->cfg.scheduler, err); break;
    }
    if (st) return cvx_error_prefix(err, "%s: ", c->name);
    if (c->cls == CVX_CLASS_DDIM_SCHEDULER || c->cls == CVX_CLASS_DPM_SCHEDULER) return CVX_OK;
    st = cvx_model_expected_tensors(c->cls, c->config, &c->expected, err);
    if (st) return cvx_error_prefix(err, "%s: ", c->name);
    return p->check_weights ? open_weights(c, err) : CVX_OK;
}

static cvx_status read_index(cvx_model *m, cvx_error *err) {
    char *path = cvx_path_join(m->dir, "model_index.json");
    if (!path) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    cvx_config *idx;
    cvx_status st = cvx_config_load(&idx, path, err);
    free(path);
    if (st) return st;
    const char *s;
    int k;
    st = cvx_config_enum(idx, "_class_name", "", pipelines, &k, err);
    if (st == CVX_ERR_UNSUPPORTED || (!st && !cvx_config_has(idx, "_class_name"))) {
        cvx_config_string(idx, "_class_name", "(none)", &s, NULL);
        st = cvx_fail(err, CVX_ERR_UNSUPPORTED,
                      "%s: pipeline class \"%.64s\" is not supported (expected CogVideoXPipeline, "
                      "CogVideoXImageToVideoPipeline or CogVideoXVideoToVideoPipeline)",
                      cvx_config_label(idx),
                      json_is_string(json_object_get(cvx_config_json(idx), "_class_name")) ? s : "(none)");
    }
    if (!st) snprintf(m->pipeline_class, sizeof m->pipeline_class, "%s", pipelines[k]);
    if (!st) st = cvx_config_string(idx, "_diffusers_version", "", &s, err);
    if (!st) snprintf(m->diffusers_version, sizeof m->diffusers_version, "%.31s", s);

    /* Every non-underscore key is a component [library, class] (or [null, null] for an absent optional one). */
    const char *key;
    json_t *val;
    json_object_foreach(cvx_config_json(idx), key, val) {
        if (st) break;
        if (key[0] == '_') continue;
        int slot = -1;
        for (int i = 0; i < N_SLOTS; i++)
            if (!strcmp(key, slots[i].name)) slot = i;
        if (json_is_array(val) && json_array_size(val) == 2 && json_is_null(json_array_get(val, 0)) &&
            json_is_null(json_array_get(val, 1))) {
            if (slot >= 0 && !slots[slot].optional)
                st = cvx_fail(err, CVX_ERR_NOT_FOUND, "%s: component \"%s\" is null, but the pipeline needs it",
                              cvx_config_label(idx), key);
            if (slot >= 0) m->null_slots |= 1u << slot;
            continue;
        }
        if (!json_is_array(val) || json_array_size(val) != 2 || !json_is_string(json_array_get(val, 0)) ||
            !json_is_string(json_array_get(val, 1))) {
            st = cvx_fail(err, CVX_ERR_FORMAT, "%s: component \"%.64s\" must be [library, class]",
                          cvx_config_label(idx), key);
            break;
        }
        const char *lib = json_string_value(json_array_get(val, 0)), *cls = json_string_value(json_array_get(val, 1));
        if (slot < 0) {
            st = cvx_fail(err, CVX_ERR_UNSUPPORTED, "%s: unknown component \"%.64s\" (class \"%.64s\")",
                          cvx_config_label(idx), key, cls);
            break;
        }
        cvx_class c = cvx_class_from_name(cls);
        if (c != slots[slot].cls1 && c != slots[slot].cls2) {
            st = cvx_fail(err, CVX_ERR_UNSUPPORTED,
                          "%s: component \"%s\" has class \"%.64s\", which is not supported (supported: %s)",
                          cvx_config_label(idx), key, cls, slots[slot].supported);
            break;
        }
        cvx_model_component *mc = &m->comp[slot];
        snprintf(mc->name, sizeof mc->name, "%s", key);
        snprintf(mc->library, sizeof mc->library, "%.31s", lib);
        snprintf(mc->class_name, sizeof mc->class_name, "%.63s", cls);
        mc->cls = c;
    }
    /* the tokenizer and the text encoder come together or not at all */
    if (!st && ((m->null_slots & 1u) != 0) != ((m->null_slots & 2u) != 0))
        st = cvx_fail(err, CVX_ERR_UNSUPPORTED,
                      "%s: tokenizer and text_encoder must both be present or both [null, null]",
                      cvx_config_label(idx));
    for (int i = 0; i < N_SLOTS && !st; i++)
        if (!m->comp[i].cls && !(m->null_slots & (1u << i)))
            st = cvx_fail(err, CVX_ERR_NOT_FOUND, "%s: no \"%s\" component (a %s pipeline needs one)",
                          cvx_config_label(idx), slots[i].name, m->pipeline_class);
    cvx_config_free(idx);
    return st;
}

cvx_status cvx_model_open(cvx_model **out, const char *dir, const cvx_model_open_params *params, cvx_error *err) {
    *out = NULL;
    cvx_model_open_params p = params ? *params : cvx_model_open_params_default();
    if (!dir) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "model: no folder given");
    if (!is_dir(dir)) return cvx_fail(err, CVX_ERR_NOT_FOUND, "%s: not a folder", dir);
    cvx_model *m = calloc(1, sizeof *m);
    if (!m || !(m->dir = strdup(dir))) {
        free(m);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    }
    cvx_status st = read_index(m, err);
    if (!st) { /* the present components, in slot order */
        int n = 0;
        for (int i = 0; i < N_SLOTS; i++)
            if (m->comp[i].cls) m->comp[n++] = m->comp[i];
        for (int i = n; i < N_SLOTS; i++) memset(&m->comp[i], 0, sizeof m->comp[i]);
        m->n_comp = n;
    }
    for (int i = 0; i < m->n_comp && !st; i++) {
        cvx_model_component *c = &m->comp[i];
        if (!(c->dir = cvx_path_join(dir, c->name)))
            st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        else if (!is_dir(c->dir))
            st = cvx_fail(err, CVX_ERR_NOT_FOUND, "%s: the \"%s\" component's folder is missing", c->dir, c->name);
        else
            st = open_component(c, &p, err);
    }
    if (st) {
        cvx_model_close(m);
        return st;
    }
    *out = m;
    return CVX_OK;
}

void cvx_model_close(cvx_model *m) {
    if (!m) return;
    for (int i = 0; i < CVX_MODEL_MAX_COMPONENTS; i++) {
        free(m->comp[i].dir);
        cvx_config_free(m->comp[i].config);
        cvx_tensor_list_free(&m->comp[i].expected);
    }
    free(m->dir);
    free(m);
}

const cvx_model_component *cvx_model_component_get(const cvx_model *m, const char *name) {
    for (int i = 0; i < m->n_comp; i++)
        if (!strcmp(m->comp[i].name, name)) return &m->comp[i];
    return NULL;
}

/* ---- memory estimate -------------------------------------------------------------------------------------- */
cvx_status cvx_model_memory_estimate(const cvx_model *m, cvx_memory_estimate *e, cvx_error *err) {
    memset(e, 0, sizeof *e);
    const cvx_model_component *te = cvx_model_component_get(m, "text_encoder"),
                              *tr = cvx_model_component_get(m, "transformer"), *va = cvx_model_component_get(m, "vae");
    if (!tr || !va || (te && !te->weights_checked) || !tr->weights_checked || !va->weights_checked)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "memory estimate: the weights were not checked");
    static const cvx_t5_config no_t5; /* a folder without a text encoder: nothing to run */
    const cvx_t5_config *t5 = te ? &te->cfg.t5 : &no_t5;
    const cvx_transformer_config *tc = &tr->cfg.transformer;
    const cvx_vae_config *vc = &va->cfg.vae;
    const uint64_t f32 = 4, B = 2; /* classifier-free guidance runs the uncond and cond rows together */
    const int64_t spatial = (int64_t)1 << (vc->n_blocks - 1), tcr = (int64_t)vc->temporal_compression_ratio;
    e->height = tc->sample_height * spatial;
    e->width = tc->sample_width * spatial;
    /* the defaults of a generation (cvx_engine_info): the transformer's sample_frames when it is a valid count
     * (4N+1 up to 49), and its sample size (480×720 for the real models) */
    e->frames = tc->sample_frames >= tcr + 1 && tc->sample_frames <= 12 * tcr + 1 && (tc->sample_frames - 1) % tcr == 0
                    ? tc->sample_frames
                    : 12 * tcr + 1;
    e->latent_frames = (e->frames - 1) / tcr + 1;
    const int64_t L = tc->max_text_seq_length, hl = tc->sample_height, wl = tc->sample_width;
    e->seq_len = L + e->latent_frames * (hl / tc->patch_size) * (wl / tc->patch_size);

    /* T5: hidden, normed, q, k, v, attention out, two FFN branches per row, plus the shared position bias. */
    const uint64_t inner = (uint64_t)(t5->num_heads * t5->d_kv);
    e->t5_weights = te ? te->data_bytes : 0;
    e->t5_act = f32 * B * (uint64_t)L * (3 * (uint64_t)t5->d_model + 4 * inner + 2 * (uint64_t)t5->d_ff) +
                f32 * (uint64_t)t5->num_heads * (uint64_t)L * (uint64_t)L;
    /* Transformer: per token, the residual, the modulated norm, q, k, v, the attention output (6C) and the FFN's
     * inner 4C; attention itself streams (online softmax), so no S×S matrix. */
    e->transformer_weights = tr->data_bytes;
    e->transformer_act = f32 * B * (uint64_t)e->seq_len * 10 * (uint64_t)tc->inner_dim;
    /* VAE decode: frame batches of 2 latent frames (3 first when odd); the largest feature map of the decoder
     * (channels × frames × H × W) held twice (a resnet's input and the map it writes over frame by frame), plus
     * the decoded video. */
    int64_t T = e->latent_frames > 1 && (e->latent_frames & 1) ? 3 : e->latent_frames < 2 ? e->latent_frames : 2;
    int64_t H = hl, W = wl, ch = vc->block_out_channels[vc->n_blocks - 1];
    uint64_t largest = (uint64_t)(ch * T * H * W);
    for (int i = 0; i < vc->n_blocks; i++) {
        int64_t out = vc->block_out_channels[vc->n_blocks - 1 - i];
        uint64_t here = (uint64_t)((ch > out ? ch : out) * T * H * W);
        if (here > largest) largest = here;
        if (i < vc->n_blocks - 1) {
            H *= 2, W *= 2;
            if (i < vc->temporal_compress_level) T = T > 1 && (T & 1) ? 2 * T - 1 : T > 1 ? 2 * T : 1;
            here = (uint64_t)(out * T * H * W);
            if (here > largest) largest = here;
        }
        ch = out;
    }
    int64_t out_frames = e->latent_frames & 1 ? 4 * e->latent_frames - 3 : 4 * e->latent_frames;
    e->vae_weights = va->data_bytes;
    e->vae_act = f32 * 2 * largest + f32 * (uint64_t)(vc->out_channels * out_frames * e->height * e->width);
    uint64_t s1 = e->t5_weights + e->t5_act, s2 = e->transformer_weights + e->transformer_act,
             s3 = e->vae_weights + e->vae_act;
    e->peak = s1, e->peak_stage = "text encoder";
    if (s2 > e->peak) e->peak = s2, e->peak_stage = "transformer";
    if (s3 > e->peak) e->peak = s3, e->peak_stage = "vae decode";
    return CVX_OK;
}
