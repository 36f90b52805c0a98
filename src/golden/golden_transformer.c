/* Golden handler for transformer/ cases: CogVideoXTransformer3DModel.from_config(config.json) +
 * weights.safetensors, called on the expected file's inputs. A case holds one call ("hidden_states",
 * "encoder_hidden_states", "timestep", optional "image_rotary_emb_cos/sin" → "output") or several, each with a
 * "call<k>_" prefix. Intermediates ("int_*") come from the model's taps, re-laid out as the reference
 * recorded them (split into video/text streams, the patch conv as [B·F, D, Hp, Wp]). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/transformer.h"
#include "golden/golden.h"

typedef struct {
    cvx_golden_case *c;
    const char *prefix;
    int64_t B, F, Hp, Wp, L, N, D;
} tx_ctx;

static int want(tx_ctx *x, const char *name, char *full, size_t size) {
    snprintf(full, size, "%s%s", x->prefix, name);
    return cvx_golden_wants(x->c, full);
}

/* Rows [off, off+cnt) of each batch of a joint [B, S, D] tensor, as [B, cnt, D]. */
static cvx_status out_rows(tx_ctx *x, const char *name, const cvx_tensor *t, int64_t off, int64_t cnt) {
    char full[160];
    if (!want(x, name, full, sizeof full)) return CVX_OK;
    int64_t B = t->shape[0], S = t->shape[1], D = t->shape[2];
    float *buf = malloc(sizeof(float) * (size_t)(B * cnt * D) + 1);
    if (!buf) return cvx_fail(&x->c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    const float *src = t->data;
    for (int64_t b = 0; b < B; b++) memcpy(buf + b * cnt * D, src + (b * S + off) * D, sizeof(float) * (size_t)(cnt * D));
    int64_t shape[3] = {B, cnt, D};
    cvx_tensor o = cvx_tensor_view(CVX_DTYPE_F32, buf, 3, shape);
    cvx_status st = cvx_golden_output(x->c, full, &o);
    free(buf);
    return st;
}

/* Chunk `idx` of a [B, n·D] modulation as [B, 1, D]. */
static cvx_status out_chunk(tx_ctx *x, const char *name, const cvx_tensor *t, int idx) {
    char full[160];
    if (!want(x, name, full, sizeof full)) return CVX_OK;
    int64_t B = t->shape[0], W = t->shape[1], D = x->D;
    float *buf = malloc(sizeof(float) * (size_t)(B * D));
    if (!buf) return cvx_fail(&x->c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    for (int64_t b = 0; b < B; b++) memcpy(buf + b * D, (const float *)t->data + b * W + idx * D, sizeof(float) * (size_t)D);
    int64_t shape[3] = {B, 1, D};
    cvx_tensor o = cvx_tensor_view(CVX_DTYPE_F32, buf, 3, shape);
    cvx_status st = cvx_golden_output(x->c, full, &o);
    free(buf);
    return st;
}

static cvx_status out_same(tx_ctx *x, const char *name, const cvx_tensor *t) {
    char full[160];
    if (!want(x, name, full, sizeof full)) return CVX_OK;
    return cvx_golden_output(x->c, full, t);
}

static cvx_status tx_tap(void *user, const char *name, const cvx_tensor *t) {
    tx_ctx *x = user;
    char full[160], g[96];
    int i, end = 0;
    if (!strcmp(name, "time_proj")) return out_same(x, "int_time_proj", t);
    if (!strcmp(name, "time_embedding")) return out_same(x, "int_time_embedding", t);
    if (!strcmp(name, "text_proj")) return out_same(x, "int_patch_embed_text_proj", t);
    if (!strcmp(name, "patch_embed")) return out_same(x, "int_patch_embed", t);
    if (!strcmp(name, "norm_final")) return out_same(x, "int_norm_final", t);
    if (!strcmp(name, "norm_out")) return out_same(x, "int_norm_out", t);
    if (!strcmp(name, "proj_out")) return out_same(x, "int_proj_out", t);
    if (!strcmp(name, "patch_conv")) {
        /* [B, N, D] tokens → the conv's own [B·F, D, Hp, Wp] */
        if (!want(x, "int_patch_embed_proj_conv", full, sizeof full)) return CVX_OK;
        int64_t HW = x->Hp * x->Wp, D = x->D, BF = x->B * x->F;
        float *buf = malloc(sizeof(float) * (size_t)(BF * HW * D));
        if (!buf) return cvx_fail(&x->c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        const float *src = t->data;
        for (int64_t f = 0; f < BF; f++)
            for (int64_t s = 0; s < HW; s++)
                for (int64_t d = 0; d < D; d++) buf[(f * D + d) * HW + s] = src[(f * HW + s) * D + d];
        int64_t shape[4] = {BF, D, x->Hp, x->Wp};
        cvx_tensor o = cvx_tensor_view(CVX_DTYPE_F32, buf, 4, shape);
        cvx_status st = cvx_golden_output(x->c, full, &o);
        free(buf);
        return st;
    }
    if (!strcmp(name, "pos_embedding")) {
        /* the joint table [1, L + N, D] with zero text rows */
        if (!want(x, "int_pos_embedding", full, sizeof full)) return CVX_OK;
        int64_t D = x->D;
        float *buf = calloc((size_t)((x->L + x->N) * D), sizeof(float));
        if (!buf) return cvx_fail(&x->c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        memcpy(buf + x->L * D, t->data, sizeof(float) * (size_t)(x->N * D));
        int64_t shape[3] = {1, x->L + x->N, D};
        cvx_tensor o = cvx_tensor_view(CVX_DTYPE_F32, buf, 3, shape);
        cvx_status st = cvx_golden_output(x->c, full, &o);
        free(buf);
        return st;
    }
    if (sscanf(name, "block%d.%n", &i, &end) != 1 || end == 0) return CVX_OK;
    const char *stage = name + end;
    cvx_status st = CVX_OK;
    if (!strcmp(stage, "norm1") || !strcmp(stage, "norm2")) {
        snprintf(g, sizeof g, "int_block%d_%s_norm_hidden_states", i, stage);
        if ((st = out_rows(x, g, t, x->L, x->N)) != CVX_OK) return st;
        snprintf(g, sizeof g, "int_block%d_%s_norm_encoder_hidden_states", i, stage);
        return out_rows(x, g, t, 0, x->L);
    }
    if (!strcmp(stage, "norm1_mod") || !strcmp(stage, "norm2_mod")) {
        const char *gate = stage[4] == '1' ? "msa" : "ff";
        snprintf(g, sizeof g, "int_block%d_norm%c_gate_%s", i, stage[4], gate);
        if ((st = out_chunk(x, g, t, 2)) != CVX_OK) return st;
        snprintf(g, sizeof g, "int_block%d_norm%c_enc_gate_%s", i, stage[4], gate);
        return out_chunk(x, g, t, 5);
    }
    if (!strcmp(stage, "attn1") || !strcmp(stage, "out")) {
        snprintf(g, sizeof g, "int_block%d_%s_hidden_states", i, stage);
        if ((st = out_rows(x, g, t, x->L, x->N)) != CVX_OK) return st;
        snprintf(g, sizeof g, "int_block%d_%s_encoder_hidden_states", i, stage);
        return out_rows(x, g, t, 0, x->L);
    }
    if (!strcmp(stage, "ff")) {
        snprintf(g, sizeof g, "int_block%d_ff", i);
        return out_same(x, g, t);
    }
    return CVX_OK;
}

static cvx_status input_f32(cvx_golden_case *c, const char *prefix, const char *name, int ndim, float **out,
                            int64_t *shape) {
    char full[160];
    snprintf(full, sizeof full, "%s%s", prefix, name);
    const cvx_st_tensor *t = cvx_golden_tensor(c, full);
    if (!t) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "input tensor %s missing", full);
    if (t->ndim != ndim) return cvx_fail(&c->err, CVX_ERR_SHAPE, "input tensor %s has %d dims, expected %d", full, t->ndim, ndim);
    memcpy(shape, t->shape, sizeof(int64_t) * (size_t)ndim);
    return cvx_golden_tensor_f32(c, full, -1, out);
}

static cvx_status run_call(cvx_golden_case *c, cvx_dit *m, const char *prefix) {
    const cvx_dit_config *cfg = cvx_dit_get_config(m);
    float *lat = NULL, *text = NULL, *cosv = NULL, *sinv = NULL, *out = NULL;
    int64_t *ts = NULL;
    int64_t ls[5], tsh[3], rs[2];
    char full[160];
    cvx_status st = input_f32(c, prefix, "hidden_states", 5, &lat, ls);
    if (st == CVX_OK) st = input_f32(c, prefix, "encoder_hidden_states", 3, &text, tsh);
    if (st != CVX_OK) goto done;
    if (ls[2] != cfg->in_channels || tsh[0] != ls[0] || tsh[2] != cfg->text_embed_dim) {
        st = cvx_fail(&c->err, CVX_ERR_SHAPE, "%shidden_states / encoder_hidden_states shapes do not fit the config",
                      prefix);
        goto done;
    }
    snprintf(full, sizeof full, "%stimestep", prefix);
    const cvx_st_tensor *tt = cvx_golden_tensor(c, full);
    if (!tt || tt->ndim != 1 || tt->shape[0] != ls[0]) {
        st = cvx_fail(&c->err, CVX_ERR_SHAPE, "%s missing or not [B]", full);
        goto done;
    }
    ts = malloc(sizeof(int64_t) * (size_t)ls[0]);
    cvx_tensor tv = cvx_st_view(tt);
    for (int64_t b = 0; b < ls[0]; b++) ts[b] = (int64_t)cvx_tensor_get(&tv, b);
    snprintf(full, sizeof full, "%simage_rotary_emb_cos", prefix);
    if (cvx_golden_tensor(c, full)) {
        if ((st = input_f32(c, prefix, "image_rotary_emb_cos", 2, &cosv, rs)) != CVX_OK) goto done;
        if ((st = input_f32(c, prefix, "image_rotary_emb_sin", 2, &sinv, rs)) != CVX_OK) goto done;
        int64_t p = cfg->patch_size, N = ls[1] * (ls[3] / p) * (ls[4] / p);
        if (rs[0] != N || rs[1] != cfg->attention_head_dim) {
            st = cvx_fail(&c->err, CVX_ERR_SHAPE, "rope tables are [%lld, %lld], the call needs [%lld, %d]",
                          (long long)rs[0], (long long)rs[1], (long long)N, cfg->attention_head_dim);
            goto done;
        }
    }
    int64_t numel = ls[0] * ls[1] * cfg->out_channels * ls[3] * ls[4];
    out = malloc(sizeof(float) * (size_t)numel);
    if (!out || !ts) {
        st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    tx_ctx x = {c, prefix, ls[0], ls[1], ls[3] / cfg->patch_size, ls[4] / cfg->patch_size, tsh[1], 0, cfg->inner_dim};
    x.N = x.F * x.Hp * x.Wp;
    cvx_dit_tap tap = {NULL, tx_tap, &x};
    cvx_dit_call call = {ls[0], ls[1], ls[3], ls[4], tsh[1], lat, text, ts, cosv, sinv, out, c->pool, &tap, NULL, NULL, NULL};
    st = cvx_dit_forward(m, &call);
    if (st != CVX_OK) {
        if (c->err.status == CVX_OK) cvx_error_copy(&c->err, cvx_dit_error(m));
        goto done;
    }
    if (want(&x, "output", full, sizeof full)) {
        int64_t oshape[5] = {ls[0], ls[1], cfg->out_channels, ls[3], ls[4]};
        cvx_tensor o = cvx_tensor_view(CVX_DTYPE_F32, out, 5, oshape);
        st = cvx_golden_output(c, full, &o);
    }
done:
    free(lat), free(text), free(cosv), free(sinv), free(out), free(ts);
    return st;
}

cvx_status cvx_golden_transformer(cvx_golden_case *c) {
    if (!c->config) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "%s: config.json missing", c->dir);
    if (!c->expected) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "%s: expected file is not safetensors", c->dir);
    cvx_dit_config cfg;
    cvx_status st = cvx_dit_config_parse(&cfg, c->config, &c->err);
    if (st != CVX_OK) return st;
    char path[4096];
    cvx_dit *m = NULL;
    st = cvx_dit_open(&m, &cfg, cvx_golden_path(c, "weights.safetensors", path, sizeof path), &c->err);
    if (st != CVX_OK) return st;
    if ((st = cvx_dit_set_precision(m, c->precision, c->pool)) != CVX_OK) {
        cvx_error_copy(&c->err, cvx_dit_error(m));
        cvx_dit_free(m);
        return st;
    }
    if (cvx_golden_tensor(c, "hidden_states")) {
        st = run_call(c, m, "");
    } else {
        int calls = 0;
        for (int k = 0; st == CVX_OK; k++) {
            char prefix[32], name[64];
            snprintf(prefix, sizeof prefix, "call%d_", k);
            snprintf(name, sizeof name, "%shidden_states", prefix);
            if (!cvx_golden_tensor(c, name)) break;
            st = run_call(c, m, prefix);
            calls++;
        }
        if (st == CVX_OK && calls == 0)
            st = cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "no hidden_states or call<k>_hidden_states input");
    }
    cvx_dit_free(m);
    return st;
}
