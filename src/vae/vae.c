/* diffusers 0.30.3 AutoencoderKLCogVideoX: CogVideoXEncoder3D / CogVideoXDecoder3D, their frame batching and
 * conv caches (_encode/_decode), tiled_decode, and the pipeline-side transforms around them. See vae.h.
 *
 * Per decoder call on a frame batch (one sample; zq = the batch's latent frames, L channels):
 *   x = conv_in(zq)                                         [T, H, W, C3]       (C3 = block_out_channels[-1])
 *   x = mid_block(x): 2 resnets                              [T, H, W, C3]
 *   up_blocks i = 0..n-1 (channels reversed(block_out)): layers_per_block+1 resnets, then (not the last)
 *     CogVideoXUpsample3D: nearest 2x in H, W (and in T for i < temporal_compress_level), Conv2d 3x3 per frame
 *   x = conv_out(silu(norm_out(x, zq)))                      [T', S·H, S·W, out_channels]
 * resnet: h = conv1(silu(norm1(x, zq))); h = conv2(silu(norm2(h, zq))); out = h + (shortcut(x) or x), norms are
 * CogVideoXSpatialNorm3D: GroupNorm(f)·conv_y(zq↑) + conv_b(zq↑) with zq↑ the nearest resize of zq to f's size
 * (frame 0 and frames 1.. resized separately when f's T is odd and > 1). conv_y/conv_b are 1x1x1, so they are
 * applied to zq at the latent resolution and looked up through the resize maps (identical numbers).
 * The encoder mirrors it with plain GroupNorm (eps = norm_eps in resnets, 1e-6 in norm_out), CogVideoXDownsample3D
 * (avg-pool pairs of frames when compressing time, keeping frame 0 when T is odd; F.pad (0,1,0,1); Conv2d 3x3
 * stride 2 per frame) and conv_out to 2L channels. */
#include "vae/vae.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "kernels/kernels.h"
#include "vae/vae_ops.h"

enum { CONV_CAUSAL = 0, CONV_2D, CONV_1X1 };

typedef struct {
    cvx_tensor w;    /* stored view: [Cout, Cin, 3, 3, 3] | [Cout, Cin, 3, 3] | [Cout, Cin, 1, 1, 1] */
    float *b;        /* [Cout] f32 */
    int64_t cin, cout;
    int kind;
    int slot;        /* conv cache slot (CONV_CAUSAL) */
} vconv;

typedef struct {
    float *gamma, *beta; /* [C] */
    int64_t C;
    double eps;
    int spatial;         /* CogVideoXSpatialNorm3D */
    vconv conv_y, conv_b;
} vnorm;

typedef struct {
    char name[96];
    int64_t cin, cout;
    vnorm norm1, norm2;
    vconv conv1, conv2;
    int has_shortcut;
    vconv shortcut;
} vresnet;

typedef struct {
    char name[64];
    int n;
    vresnet *r;
    int has_sampler, compress_time;
    vconv sampler;
} vblock;

typedef struct {
    int present;
    vconv conv_in;
    int nb;
    vblock blocks[CVX_VAE_MAX_BLOCKS];
    vresnet mid[2];
    vnorm norm_out;
    vconv conv_out;
} vcoder;

struct cvx_vae {
    cvx_vae_config cfg;
    cvx_weights *own_w;
    cvx_config *own_cfg;
    const cvx_weights *w;
    vcoder enc, dec;
    int nslots;
    cvx_precision precision;
    cvx_error err;
};

/* ---- binding --------------------------------------------------------------------------------------------- */

static cvx_status get_vec(cvx_vae *m, const char *name, int64_t n, float **out) {
    cvx_tensor t;
    cvx_status st = cvx_weights_get(m->w, name, 1, &n, &t, &m->err);
    if (st) return st;
    *out = malloc((size_t)n * sizeof(float));
    if (!*out) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    cvx_to_f32(NULL, *out, &t);
    return CVX_OK;
}

static cvx_status bind_conv(cvx_vae *m, vconv *c, const char *base, int64_t cout, int64_t cin, int kind) {
    char name[160];
    c->cin = cin;
    c->cout = cout;
    c->kind = kind;
    c->slot = kind == CONV_CAUSAL ? m->nslots++ : -1;
    int64_t shape[5] = {cout, cin, kind == CONV_1X1 ? 1 : 3, kind == CONV_1X1 ? 1 : 3, kind == CONV_1X1 ? 1 : 3};
    snprintf(name, sizeof name, "%s.weight", base);
    cvx_status st = cvx_weights_get(m->w, name, kind == CONV_2D ? 4 : 5, shape, &c->w, &m->err);
    if (st) return st;
    snprintf(name, sizeof name, "%s.bias", base);
    return get_vec(m, name, cout, &c->b);
}

static cvx_status bind_norm(cvx_vae *m, vnorm *n, const char *base, int64_t C, int spatial, double eps) {
    char name[160];
    cvx_status st;
    n->C = C;
    n->eps = eps;
    n->spatial = spatial;
    const char *layer = spatial ? ".norm_layer" : "";
    snprintf(name, sizeof name, "%s%s.weight", base, layer);
    if ((st = get_vec(m, name, C, &n->gamma))) return st;
    snprintf(name, sizeof name, "%s%s.bias", base, layer);
    if ((st = get_vec(m, name, C, &n->beta))) return st;
    if (!spatial) return CVX_OK;
    snprintf(name, sizeof name, "%s.conv_y.conv", base);
    if ((st = bind_conv(m, &n->conv_y, name, C, m->cfg.latent_channels, CONV_1X1))) return st;
    snprintf(name, sizeof name, "%s.conv_b.conv", base);
    return bind_conv(m, &n->conv_b, name, C, m->cfg.latent_channels, CONV_1X1);
}

static cvx_status bind_resnet(cvx_vae *m, vresnet *r, const char *base, int64_t cin, int64_t cout, int spatial) {
    char name[160];
    cvx_status st;
    snprintf(r->name, sizeof r->name, "%s", base);
    r->cin = cin;
    r->cout = cout;
    /* SpatialNorm3D's GroupNorm has eps 1e-6 whatever norm_eps says; plain resnets use norm_eps. */
    double eps = spatial ? 1e-6 : m->cfg.norm_eps;
    snprintf(name, sizeof name, "%s.norm1", base);
    if ((st = bind_norm(m, &r->norm1, name, cin, spatial, eps))) return st;
    snprintf(name, sizeof name, "%s.conv1.conv", base);
    if ((st = bind_conv(m, &r->conv1, name, cout, cin, CONV_CAUSAL))) return st;
    snprintf(name, sizeof name, "%s.norm2", base);
    if ((st = bind_norm(m, &r->norm2, name, cout, spatial, eps))) return st;
    snprintf(name, sizeof name, "%s.conv2.conv", base);
    if ((st = bind_conv(m, &r->conv2, name, cout, cout, CONV_CAUSAL))) return st;
    r->has_shortcut = cin != cout;
    if (!r->has_shortcut) return CVX_OK;
    snprintf(name, sizeof name, "%s.conv_shortcut", base);
    return bind_conv(m, &r->shortcut, name, cout, cin, CONV_1X1);
}

static cvx_status bind_decoder(cvx_vae *m) {
    const cvx_vae_config *c = &m->cfg;
    vcoder *d = &m->dec;
    char name[160];
    cvx_status st;
    const int nb = c->n_blocks;
    const int64_t top = c->block_out_channels[nb - 1];
    d->nb = nb;
    if ((st = bind_conv(m, &d->conv_in, "decoder.conv_in.conv", top, c->latent_channels, CONV_CAUSAL))) return st;
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "decoder.mid_block.resnets.%d", i);
        if ((st = bind_resnet(m, &d->mid[i], name, top, top, 1))) return st;
    }
    int64_t out_ch = top;
    for (int i = 0; i < nb; i++) {
        vblock *b = &d->blocks[i];
        int64_t prev = out_ch;
        out_ch = c->block_out_channels[nb - 1 - i];
        snprintf(b->name, sizeof b->name, "decoder.up_blocks.%d", i);
        b->n = (int)c->layers_per_block + 1;
        b->r = calloc((size_t)b->n, sizeof *b->r);
        if (!b->r) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
        for (int j = 0; j < b->n; j++) {
            snprintf(name, sizeof name, "%s.resnets.%d", b->name, j);
            if ((st = bind_resnet(m, &b->r[j], name, j ? out_ch : prev, out_ch, 1))) return st;
        }
        b->has_sampler = i < nb - 1;
        b->compress_time = i < c->temporal_compress_level;
        if (b->has_sampler) {
            snprintf(name, sizeof name, "%s.upsamplers.0.conv", b->name);
            if ((st = bind_conv(m, &b->sampler, name, out_ch, out_ch, CONV_2D))) return st;
        }
    }
    const int64_t bottom = c->block_out_channels[0];
    if ((st = bind_norm(m, &d->norm_out, "decoder.norm_out", bottom, 1, 1e-6))) return st;
    if ((st = bind_conv(m, &d->conv_out, "decoder.conv_out.conv", c->out_channels, bottom, CONV_CAUSAL))) return st;
    d->present = 1;
    return CVX_OK;
}

static cvx_status bind_encoder(cvx_vae *m) {
    const cvx_vae_config *c = &m->cfg;
    vcoder *e = &m->enc;
    char name[160];
    cvx_status st;
    const int nb = c->n_blocks;
    e->nb = nb;
    if ((st = bind_conv(m, &e->conv_in, "encoder.conv_in.conv", c->block_out_channels[0], c->in_channels,
                        CONV_CAUSAL)))
        return st;
    int64_t out_ch = c->block_out_channels[0];
    for (int i = 0; i < nb; i++) {
        vblock *b = &e->blocks[i];
        int64_t in_ch = out_ch;
        out_ch = c->block_out_channels[i];
        snprintf(b->name, sizeof b->name, "encoder.down_blocks.%d", i);
        b->n = (int)c->layers_per_block;
        b->r = calloc((size_t)b->n, sizeof *b->r);
        if (!b->r) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
        for (int j = 0; j < b->n; j++) {
            snprintf(name, sizeof name, "%s.resnets.%d", b->name, j);
            if ((st = bind_resnet(m, &b->r[j], name, j ? out_ch : in_ch, out_ch, 0))) return st;
        }
        b->has_sampler = i < nb - 1;
        b->compress_time = i < c->temporal_compress_level;
        if (b->has_sampler) {
            snprintf(name, sizeof name, "%s.downsamplers.0.conv", b->name);
            if ((st = bind_conv(m, &b->sampler, name, out_ch, out_ch, CONV_2D))) return st;
        }
    }
    const int64_t top = c->block_out_channels[nb - 1];
    for (int i = 0; i < 2; i++) {
        snprintf(name, sizeof name, "encoder.mid_block.resnets.%d", i);
        if ((st = bind_resnet(m, &e->mid[i], name, top, top, 0))) return st;
    }
    if ((st = bind_norm(m, &e->norm_out, "encoder.norm_out", top, 0, 1e-6))) return st;
    if ((st = bind_conv(m, &e->conv_out, "encoder.conv_out.conv", 2 * c->latent_channels, top, CONV_CAUSAL)))
        return st;
    e->present = 1;
    return CVX_OK;
}

static void free_conv(vconv *c) { free(c->b); }
static void free_norm(vnorm *n) {
    free(n->gamma);
    free(n->beta);
    free_conv(&n->conv_y);
    free_conv(&n->conv_b);
}
static void free_resnet(vresnet *r) {
    free_norm(&r->norm1);
    free_norm(&r->norm2);
    free_conv(&r->conv1);
    free_conv(&r->conv2);
    free_conv(&r->shortcut);
}
static void free_coder(vcoder *c) {
    free_conv(&c->conv_in);
    for (int i = 0; i < c->nb; i++) {
        if (c->blocks[i].r)
            for (int j = 0; j < c->blocks[i].n; j++) free_resnet(&c->blocks[i].r[j]);
        free(c->blocks[i].r);
        free_conv(&c->blocks[i].sampler);
    }
    for (int i = 0; i < 2; i++) free_resnet(&c->mid[i]);
    free_norm(&c->norm_out);
    free_conv(&c->conv_out);
}

void cvx_vae_close(cvx_vae *m) {
    if (!m) return;
    free_coder(&m->dec);
    free_coder(&m->enc);
    cvx_weights_close(m->own_w);
    cvx_config_free(m->own_cfg);
    free(m);
}

cvx_status cvx_vae_open_with(cvx_vae **out, const cvx_vae_config *cfg, const cvx_weights *weights, int parts,
                             cvx_error *err) {
    *out = NULL;
    if (!cfg || !weights || !(parts & CVX_VAE_BOTH))
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "VAE: missing config, weights or parts");
    if (strcmp(cfg->act_fn, "silu") && strcmp(cfg->act_fn, "swish"))
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "VAE: act_fn \"%s\" is not supported (CogVideoX uses silu)",
                        cfg->act_fn);
    if (cfg->use_quant_conv || cfg->use_post_quant_conv)
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "VAE: use_quant_conv / use_post_quant_conv are not supported");
    if (cfg->n_blocks < 1) return cvx_fail(err, CVX_ERR_FORMAT, "VAE: block_out_channels is empty");
    cvx_vae *m = calloc(1, sizeof *m);
    if (!m) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    m->cfg = *cfg;
    m->w = weights;
    cvx_status st = CVX_OK;
    if (parts & CVX_VAE_DECODER) st = bind_decoder(m);
    if (!st && (parts & CVX_VAE_ENCODER)) st = bind_encoder(m);
    if (st) {
        cvx_error_copy(err, &m->err);
        cvx_vae_close(m);
        return st;
    }
    *out = m;
    return CVX_OK;
}

cvx_status cvx_vae_open(cvx_vae **out, const char *dir, int parts, cvx_error *err) {
    *out = NULL;
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "VAE: path too long: %s", dir);
    cvx_config *cfgj = NULL;
    cvx_weights *w = NULL;
    cvx_vae_config cfg;
    cvx_status st = cvx_config_load(&cfgj, path, err);
    if (!st) st = cvx_vae_config_read(cfgj, &cfg, err);
    if (!st) st = cvx_weights_open(&w, dir, err);
    if (!st) st = cvx_vae_open_with(out, &cfg, w, parts, err);
    if (st) {
        cvx_error_prefix(err, "VAE %s: ", dir);
        cvx_weights_close(w);
        cvx_config_free(cfgj);
        return st;
    }
    (*out)->own_w = w;
    (*out)->own_cfg = cfgj;
    return CVX_OK;
}

const cvx_vae_config *cvx_vae_get_config(const cvx_vae *m) { return &m->cfg; }
const char *cvx_vae_last_error(const cvx_vae *m) { return m ? cvx_error_message(&m->err) : "no VAE"; }

cvx_status cvx_vae_set_precision(cvx_vae *m, cvx_precision precision) {
    if (!m) return CVX_ERR_INVALID_ARGUMENT;
    if (precision != CVX_PRECISION_FP32 && precision != CVX_PRECISION_BF16)
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "VAE: unknown precision %d", (int)precision);
    m->precision = precision;
    return CVX_OK;
}

cvx_precision cvx_vae_get_precision(const cvx_vae *m) { return m ? m->precision : CVX_PRECISION_FP32; }

cvx_vae_params cvx_vae_params_default(const cvx_vae *m) {
    cvx_vae_params p;
    memset(&p, 0, sizeof p);
    p.latent_frames_batch = 2;
    p.sample_frames_batch = 8;
    p.tile_sample_min_height = m ? m->cfg.sample_height / 2 : 240;
    p.tile_sample_min_width = m ? m->cfg.sample_width / 2 : 360;
    p.tile_overlap_factor_height = 1.0 / 6.0;
    p.tile_overlap_factor_width = 1.0 / 5.0;
    p.cache_memory_limit = (int64_t)2 << 30;
    return p;
}

/* ---- one call of the encoder or decoder on a frame batch ------------------------------------------------- */

typedef struct {
    cvx_vae *m;
    cvx_pool *pool;
    const cvx_vae_params *p;
    cvx__vcache *cache;
    int store;          /* keep the conv caches for a next frame batch */
    int fb, nfb, sample;
    const cvx__vact *zq; /* decoder: this batch's latent frames [T][H][W][L] (this rank's rows of them) */
    /* a row-split decode (p->dist of size > 1): the batch's whole latent frames (SpatialNorm3D's conditioning),
     * and this rank's first latent row; NULL and 0 otherwise */
    const cvx__vact *zfull;
    int64_t ly0;
} run_ctx;

static int tap_wants(const run_ctx *r, const char *kind, const char *module) {
    const cvx_vae_tap *t = r->p->tap;
    if (!t || !t->fn) return 0;
    return !t->wants || t->wants(t->user_data, kind, module, r->fb, r->nfb);
}

/* Reports a channels-last activation as [C, T, H, W]. */
static cvx_status tap_emit(run_ctx *r, const char *kind, const char *module, const cvx__vact *a) {
    const int64_t C = a->C, n = a->T * a->H * a->W;
    float *buf = malloc((size_t)(C * n) * sizeof(float));
    if (!buf) return cvx_fail(&r->m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for a tap");
    for (int64_t p = 0; p < n; p++)
        for (int64_t c = 0; c < C; c++) buf[c * n + p] = a->data[p * C + c];
    int64_t shape[4] = {C, a->T, a->H, a->W};
    cvx_tensor t = cvx_tensor_view(CVX_DTYPE_F32, buf, 4, shape);
    const cvx_vae_tap *tp = r->p->tap;
    cvx_status st = tp->fn(tp->user_data, kind, module, r->fb, r->nfb, r->sample, &t);
    free(buf);
    if (st && !r->m->err.status) cvx_fail(&r->m->err, st, "VAE: tap %s.%s failed", kind, module);
    return st;
}

/* A prepared norm: the folded affine and, for SpatialNorm3D, conv_y/conv_b(zq) with the resize maps. */
typedef struct {
    float *a, *b, *zy, *zb;
    int64_t *maps;
    cvx__vxform xf;
} prep_norm;

static void prep_free(prep_norm *p) {
    free(p->a);
    free(p->b);
    free(p->zy);
    free(p->zb);
    free(p->maps);
    memset(p, 0, sizeof *p);
}

static cvx_status prep(run_ctx *r, const vnorm *n, const cvx__vact *f, prep_norm *p, const char *module) {
    cvx_vae *m = r->m;
    memset(p, 0, sizeof *p);
    const int64_t C = f->C;
    p->a = malloc((size_t)C * sizeof(float));
    p->b = malloc((size_t)C * sizeof(float));
    if (!p->a || !p->b) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    cvx_status st = cvx__vgroupnorm_fold(r->pool, f, m->cfg.norm_num_groups, n->eps, n->gamma, n->beta, p->a, p->b,
                                         r->zfull ? r->p->dist : NULL, &m->err);
    if (st) return st;
    p->xf.a = p->a;
    p->xf.b = p->b;
    p->xf.silu = 1;
    if (!n->spatial) return CVX_OK;
    /* f's rows are rows [off, off + f->H) of the whole frame's Hg (a row-split decode: the latent band scaled by
     * the upsamplings so far) */
    const cvx__vact *z = r->zfull ? r->zfull : r->zq;
    const int64_t scale = f->H / r->zq->H, Hg = z->H * scale, off = r->ly0 * scale;
    const int64_t zn = z->T * z->H * z->W;
    p->zy = malloc((size_t)(zn * C) * sizeof(float));
    p->zb = malloc((size_t)(zn * C) * sizeof(float));
    p->maps = malloc((size_t)(f->T + f->H + 2 + f->W) * sizeof(int64_t));
    if (!p->zy || !p->zb || !p->maps) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    int64_t wshape[2] = {C, z->C};
    cvx_tensor wy = cvx_tensor_view(n->conv_y.w.dtype, n->conv_y.w.data, 2, wshape);
    cvx_tensor wb = cvx_tensor_view(n->conv_b.w.dtype, n->conv_b.w.data, 2, wshape);
    cvx_linear(r->pool, p->zy, z->data, zn, z->C, &wy, n->conv_y.b);
    cvx_linear(r->pool, p->zb, z->data, zn, z->C, &wb, n->conv_b.b);
    int64_t *tm = p->maps, *ym = tm + f->T + 1, *xm = ym + f->H + 1; /* ym[-1] and ym[H]: the neighbours' rows */
    if (f->T > 1 && f->T % 2 == 1) {
        /* Frame 0 and the rest are resized separately (z_first -> 1 frame, z_rest -> T-1 frames). */
        if (z->T < 2)
            return cvx_fail(&m->err, CVX_ERR_SHAPE, "VAE: %s: cannot split %lld latent frame(s) for %lld frames",
                            module, (long long)z->T, (long long)f->T);
        tm[0] = 0;
        for (int64_t t = 1; t < f->T; t++) tm[t] = 1 + cvx__vnearest(t - 1, z->T - 1, f->T - 1);
    } else {
        for (int64_t t = 0; t < f->T; t++) tm[t] = cvx__vnearest(t, z->T, f->T);
    }
    for (int64_t y = -1; y <= f->H; y++) {
        int64_t gy = off + y < 0 ? 0 : off + y >= Hg ? Hg - 1 : off + y;
        ym[y] = cvx__vnearest(gy, z->H, Hg);
    }
    for (int64_t x = 0; x < f->W; x++) xm[x] = cvx__vnearest(x, z->W, f->W);
    p->xf.zy = p->zy;
    p->xf.zb = p->zb;
    p->xf.zH = z->H;
    p->xf.zW = z->W;
    p->xf.tmap = tm;
    p->xf.ymap = ym;
    p->xf.xmap = xm;
    return CVX_OK;
}

/* Taps of a norm: its output (before the SiLU) and, for SpatialNorm3D, the resized z. */
static cvx_status tap_norm(run_ctx *r, const prep_norm *p, const cvx__vact *f, const char *module) {
    char name[160];
    cvx_status st = CVX_OK;
    if (tap_wants(r, "act", module)) {
        cvx__vact o;
        if ((st = cvx__vact_alloc(&o, f->C, f->T, f->H, f->W, &r->m->err))) return st;
        cvx__vxform xf = p->xf;
        xf.silu = 0;
        for (int64_t t = 0; t < f->T; t++)
            for (int64_t y = 0; y < f->H; y++) cvx__vxform_row(&xf, f, t, y, o.data + (t * f->H + y) * f->W * f->C);
        st = tap_emit(r, "act", module, &o);
        cvx__vact_free(&o);
        if (st) return st;
    }
    snprintf(name, sizeof name, "%s.conv_y", module);
    if (p->xf.zy && tap_wants(r, "zq_in", name)) {
        const cvx__vact *z = r->zq;
        cvx__vact o;
        if ((st = cvx__vact_alloc(&o, z->C, f->T, f->H, f->W, &r->m->err))) return st;
        for (int64_t t = 0; t < f->T; t++)
            for (int64_t y = 0; y < f->H; y++)
                for (int64_t x = 0; x < f->W; x++)
                    memcpy(o.data + ((t * f->H + y) * f->W + x) * z->C,
                           z->data + ((p->xf.tmap[t] * z->H + p->xf.ymap[y]) * z->W + p->xf.xmap[x]) * z->C,
                           (size_t)z->C * sizeof(float));
        st = tap_emit(r, "zq_in", name, &o);
        cvx__vact_free(&o);
    }
    return st;
}

/* Runs a conv with its weight packed for the call. */
static cvx_status run_conv(run_ctx *r, const vconv *c, cvx__vconv *cv) {
    float *w = cvx__vpack_conv(&c->w, c->cout, c->cin, c->kind == CONV_CAUSAL ? 3 : 1);
    if (!w) return cvx_fail(&r->m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for a packed weight");
    cv->w = w;
    cv->bias = c->b;
    cv->cout = c->cout;
    if (c->kind == CONV_CAUSAL) {
        cv->kt = 3;
        cv->T_out = cv->src->T;
        cv->cache = r->cache;
        cv->slot = c->slot;
        cv->store_cache = r->store;
    } else {
        cv->kt = 1;
    }
    if (!cv->stride) cv->stride = 1;
    cv->bf16 = r->m->precision == CVX_PRECISION_BF16;
    /* A row-split decode: the rows next to this band, from the neighbours (every conv here has 3x3 taps). */
    float *halo = NULL;
    cvx_status st = CVX_OK;
    const cvx_dist *d = r->zfull ? r->p->dist : NULL;
    if (d) {
        const cvx__vact *s = cv->src;
        const int rk = cvx_dist_rank(d), n = cvx_dist_size(d);
        const int64_t rowf = s->W * s->C, fr = s->T * rowf;
        halo = malloc(sizeof(float) * (size_t)(4 * fr));
        if (!halo) st = cvx_fail(&r->m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for the halo rows");
        float *send = halo + 2 * fr; /* [first rows][last rows] of src's frames */
        for (int64_t t = 0; !st && t < s->T; t++) {
            memcpy(send + t * rowf, s->data + (t * s->H) * rowf, sizeof(float) * (size_t)rowf);
            memcpy(send + fr + t * rowf, s->data + (t * s->H + s->H - 1) * rowf, sizeof(float) * (size_t)rowf);
        }
        if (!st && rk > 0) /* my first rows up, the upper neighbour's last rows down */
            st = cvx_dist_sendrecv(d, send, halo, sizeof(float) * (size_t)fr, rk - 1, &r->m->err);
        if (!st && rk + 1 < n)
            st = cvx_dist_sendrecv(d, send + fr, halo + fr, sizeof(float) * (size_t)fr, rk + 1, &r->m->err);
        cv->halo[0] = rk > 0 ? halo : NULL;
        cv->halo[1] = rk + 1 < n ? halo + fr : NULL;
    }
    if (!st) st = cvx__vconv_run(r->pool, cv, &r->m->err);
    free(halo);
    free(w);
    return st;
}

static cvx_status shortcut_f32(run_ctx *r, const vresnet *rs, float **out) {
    *out = NULL;
    if (!rs->has_shortcut) return CVX_OK;
    *out = malloc((size_t)(rs->cout * rs->cin) * sizeof(float));
    if (!*out) return cvx_fail(&r->m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    cvx_to_f32(NULL, *out, &rs->shortcut.w);
    return CVX_OK;
}

/* CogVideoXResnetBlock3D; x is replaced by the block's output. */
static cvx_status resnet_fwd(run_ctx *r, const vresnet *rs, cvx__vact *x) {
    cvx_vae *m = r->m;
    char name[160];
    prep_norm pn = {0};
    cvx__vact h = {0}, o = {0};
    float *wsc = NULL;
    cvx_status st;
    snprintf(name, sizeof name, "%s.norm1", rs->name);
    if ((st = prep(r, &rs->norm1, x, &pn, name)) || (st = tap_norm(r, &pn, x, name))) goto done;
    if ((st = cvx__vact_alloc(&h, rs->cout, x->T, x->H, x->W, &m->err))) goto done;
    {
        cvx__vconv cv = {.src = x, .xf = &pn.xf, .dst = h.data};
        if ((st = run_conv(r, &rs->conv1, &cv))) goto done;
    }
    prep_free(&pn);
    snprintf(name, sizeof name, "%s.conv1", rs->name);
    if (tap_wants(r, "act", name) && (st = tap_emit(r, "act", name, &h))) goto done;
    snprintf(name, sizeof name, "%s.norm2", rs->name);
    if ((st = prep(r, &rs->norm2, &h, &pn, name)) || (st = tap_norm(r, &pn, &h, name))) goto done;
    if ((st = shortcut_f32(r, rs, &wsc))) goto done;
    snprintf(name, sizeof name, "%s.conv2", rs->name);
    int want_conv2 = tap_wants(r, "act", name);
    /* The output overwrites x frame by frame when it is not wider (conv2 reads h; x frame t is only needed
     * for output frame t). */
    int inplace = rs->cout <= rs->cin && !want_conv2;
    if (!inplace && (st = cvx__vact_alloc(&o, rs->cout, x->T, x->H, x->W, &m->err))) goto done;
    {
        cvx__vconv cv = {.src = &h, .xf = &pn.xf, .dst = inplace ? x->data : o.data, .inplace = inplace};
        if (!want_conv2) {
            cv.res = x;
            cv.wsc = wsc;
            cv.bsc = rs->has_shortcut ? rs->shortcut.b : NULL;
        }
        if ((st = run_conv(r, &rs->conv2, &cv))) goto done;
    }
    if (want_conv2) {
        if ((st = tap_emit(r, "act", name, &o))) goto done;
        const int64_t n = x->T * x->H * x->W;
        if (wsc) {
            float *s = malloc((size_t)(n * rs->cout) * sizeof(float));
            if (!s) {
                st = cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
                goto done;
            }
            int64_t wshape[2] = {rs->cout, rs->cin};
            cvx_tensor wv = cvx_tensor_view(CVX_DTYPE_F32, wsc, 2, wshape);
            cvx_linear(r->pool, s, x->data, n, rs->cin, &wv, rs->shortcut.b);
            for (int64_t i = 0; i < n * rs->cout; i++) o.data[i] += s[i];
            free(s);
        } else {
            for (int64_t i = 0; i < n * rs->cout; i++) o.data[i] += x->data[i];
        }
    }
    if (inplace) {
        x->C = rs->cout;
        if (rs->cout < rs->cin) {
            float *shrunk = realloc(x->data, (size_t)cvx__vact_numel(x) * sizeof(float));
            if (shrunk) x->data = shrunk;
        }
    } else {
        cvx__vact_free(x);
        *x = o;
        o.data = NULL;
    }
    if (tap_wants(r, "act", rs->name)) st = tap_emit(r, "act", rs->name, x);
done:
    prep_free(&pn);
    cvx__vact_free(&h);
    cvx__vact_free(&o);
    free(wsc);
    return st;
}

/* Frames out of CogVideoXUpsample3D with compress_time. */
static int64_t up_frames(int64_t T) { return T > 1 ? (T % 2 ? 2 * T - 1 : 2 * T) : 1; }
/* Frames out of CogVideoXDownsample3D with compress_time. */
static int64_t down_frames(int64_t T) { return T % 2 ? 1 + (T - 1) / 2 : T / 2; }

static cvx_status upsample_fwd(run_ctx *r, const vblock *b, cvx__vact *x) {
    const int64_t T2 = b->compress_time ? up_frames(x->T) : x->T;
    int64_t *tmap = malloc((size_t)T2 * sizeof(int64_t));
    if (!tmap) return cvx_fail(&r->m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    for (int64_t t = 0; t < T2; t++) {
        if (!b->compress_time || x->T == 1)
            tmap[t] = t;
        else if (x->T % 2) /* frame 0 upsampled spatially only, frames 1.. doubled in time */
            tmap[t] = t == 0 ? 0 : 1 + (t - 1) / 2;
        else
            tmap[t] = t / 2;
    }
    cvx__vact y;
    cvx_status st = cvx__vact_alloc(&y, x->C, T2, 2 * x->H, 2 * x->W, &r->m->err);
    if (!st) {
        cvx__vconv cv = {.src = x, .up2x = 1, .tmap = tmap, .T_out = T2, .dst = y.data};
        st = run_conv(r, &b->sampler, &cv);
    }
    free(tmap);
    if (st) {
        cvx__vact_free(&y);
        return st;
    }
    cvx__vact_free(x);
    *x = y;
    return CVX_OK;
}

static cvx_status downsample_fwd(run_ctx *r, const vblock *b, cvx__vact *x) {
    cvx_status st;
    if (b->compress_time) {
        cvx__vact p;
        const int64_t T2 = down_frames(x->T), fr = cvx__vact_frame(x);
        if ((st = cvx__vact_alloc(&p, x->C, T2, x->H, x->W, &r->m->err))) return st;
        int odd = x->T % 2;
        for (int64_t t = 0; t < T2; t++) {
            float *d = p.data + t * fr;
            if (odd && t == 0) {
                memcpy(d, x->data, (size_t)fr * sizeof(float));
                continue;
            }
            const float *a = x->data + (odd ? 2 * t - 1 : 2 * t) * fr, *c = a + fr;
            for (int64_t i = 0; i < fr; i++) d[i] = (a[i] + c[i]) / 2.0f; /* avg_pool1d: sum, then / count */
        }
        cvx__vact_free(x);
        *x = p;
    }
    cvx__vconv cv = {.src = x, .stride = 2, .pad_right_only = 1, .T_out = x->T};
    const int64_t Ho = cvx__vconv_out_size(&cv, x->H), Wo = cvx__vconv_out_size(&cv, x->W);
    if (Ho < 1 || Wo < 1)
        return cvx_fail(&r->m->err, CVX_ERR_SHAPE, "VAE: %s: %lldx%lld is too small to downsample", b->name,
                        (long long)x->H, (long long)x->W);
    cvx__vact y;
    if ((st = cvx__vact_alloc(&y, x->C, x->T, Ho, Wo, &r->m->err))) return st;
    cv.dst = y.data;
    if ((st = run_conv(r, &b->sampler, &cv))) {
        cvx__vact_free(&y);
        return st;
    }
    cvx__vact_free(x);
    *x = y;
    return CVX_OK;
}

static cvx_status tap_act(run_ctx *r, const char *module, const cvx__vact *x) {
    return tap_wants(r, "act", module) ? tap_emit(r, "act", module, x) : CVX_OK;
}

/* CogVideoXDecoder3D.forward on one frame batch: zq [T][H][W][L] -> out [T'][S·H][S·W][out_channels]. */
static cvx_status decoder_fwd(run_ctx *r, cvx__vact *out) {
    const vcoder *d = &r->m->dec;
    cvx__vact x = {0};
    prep_norm pn = {0};
    cvx_status st = cvx__vact_alloc(&x, d->conv_in.cout, r->zq->T, r->zq->H, r->zq->W, &r->m->err);
    if (!st) {
        cvx__vconv cv = {.src = r->zq, .dst = x.data};
        st = run_conv(r, &d->conv_in, &cv);
    }
    if (!st) st = tap_act(r, "decoder.conv_in", &x);
    for (int i = 0; !st && i < 2; i++) st = resnet_fwd(r, &d->mid[i], &x);
    if (!st) st = tap_act(r, "decoder.mid_block", &x);
    for (int i = 0; !st && i < d->nb; i++) {
        const vblock *b = &d->blocks[i];
        for (int j = 0; !st && j < b->n; j++) st = resnet_fwd(r, &b->r[j], &x);
        if (!st && b->has_sampler) st = upsample_fwd(r, b, &x);
        if (!st) st = tap_act(r, b->name, &x);
    }
    if (!st) st = prep(r, &d->norm_out, &x, &pn, "decoder.norm_out");
    if (!st) st = tap_norm(r, &pn, &x, "decoder.norm_out");
    if (!st) st = cvx__vact_alloc(out, d->conv_out.cout, x.T, x.H, x.W, &r->m->err);
    if (!st) {
        cvx__vconv cv = {.src = &x, .xf = &pn.xf, .dst = out->data};
        st = run_conv(r, &d->conv_out, &cv);
    }
    prep_free(&pn);
    cvx__vact_free(&x);
    return st;
}

/* CogVideoXEncoder3D.forward on one frame batch: x [T][H][W][in] -> out [T'][H/S][W/S][2L]. */
static cvx_status encoder_fwd(run_ctx *r, const cvx__vact *in, cvx__vact *out) {
    const vcoder *e = &r->m->enc;
    cvx__vact x = {0};
    prep_norm pn = {0};
    cvx_status st = cvx__vact_alloc(&x, e->conv_in.cout, in->T, in->H, in->W, &r->m->err);
    if (!st) {
        cvx__vconv cv = {.src = in, .dst = x.data};
        st = run_conv(r, &e->conv_in, &cv);
    }
    if (!st) st = tap_act(r, "encoder.conv_in", &x);
    for (int i = 0; !st && i < e->nb; i++) {
        const vblock *b = &e->blocks[i];
        for (int j = 0; !st && j < b->n; j++) st = resnet_fwd(r, &b->r[j], &x);
        if (!st && b->has_sampler) st = downsample_fwd(r, b, &x);
        if (!st) st = tap_act(r, b->name, &x);
    }
    for (int i = 0; !st && i < 2; i++) st = resnet_fwd(r, &e->mid[i], &x);
    if (!st) st = tap_act(r, "encoder.mid_block", &x);
    if (!st) st = prep(r, &e->norm_out, &x, &pn, "encoder.norm_out");
    if (!st) st = tap_norm(r, &pn, &x, "encoder.norm_out");
    if (!st) st = cvx__vact_alloc(out, e->conv_out.cout, x.T, x.H, x.W, &r->m->err);
    if (!st) {
        cvx__vconv cv = {.src = &x, .xf = &pn.xf, .dst = out->data};
        st = run_conv(r, &e->conv_out, &cv);
    }
    prep_free(&pn);
    cvx__vact_free(&x);
    return st;
}

/* ---- conv caches --------------------------------------------------------------------------------------- */

static int64_t resnet_cache(const vresnet *r, int64_t px) { return (r->cin + r->cout) * px; }

/* Floats the conv caches of one decoder (or encoder) pass over an H x W input hold: 2 frames of every causal
 * conv's input at that conv's resolution. */
static int64_t cache_floats(const cvx_vae *m, int enc, int64_t H, int64_t W) {
    const vcoder *c = enc ? &m->enc : &m->dec;
    int64_t n = c->conv_in.cin * H * W;
    if (!enc)
        for (int i = 0; i < 2; i++) n += resnet_cache(&c->mid[i], H * W);
    for (int i = 0; i < c->nb; i++) {
        const vblock *b = &c->blocks[i];
        for (int j = 0; j < b->n; j++) n += resnet_cache(&b->r[j], H * W);
        if (b->has_sampler) {
            H = enc ? (H - 2) / 2 + 1 : 2 * H;
            W = enc ? (W - 2) / 2 + 1 : 2 * W;
        }
    }
    if (enc)
        for (int i = 0; i < 2; i++) n += resnet_cache(&c->mid[i], H * W);
    n += c->conv_out.cin * H * W;
    return 2 * n;
}

static cvx_status open_cache(cvx_vae *m, const cvx_vae_params *p, int enc, int64_t H, int64_t W, int64_t batches,
                             cvx__vcache **out) {
    const char *dir = p->spill_dir;
    int64_t bytes = (int64_t)sizeof(float) * cache_floats(m, enc, H, W);
    if (!dir && batches > 1 && p->cache_memory_limit >= 0 && bytes > p->cache_memory_limit) {
        dir = getenv("TMPDIR");
        if (!dir || !*dir) dir = "/tmp";
    }
    cvx_log_info(NULL, "VAE %s: conv caches %.2f GB %s%s", enc ? "encode" : "decode", (double)bytes / 1e9,
                 dir ? "in a temporary file in " : "in memory", dir ? dir : "");
    return cvx__vcache_new(out, m->nslots, dir, &m->err);
}

/* ---- frame batching, tiling ---------------------------------------------------------------------------- */

static int64_t spatial_factor(const cvx_vae *m) { return (int64_t)1 << (m->cfg.n_blocks - 1); }

static int time_levels(const cvx_vae *m) {
    int l = m->cfg.temporal_compress_level;
    return l < m->cfg.n_blocks - 1 ? l : m->cfg.n_blocks - 1;
}

static int64_t decoded_frames(const cvx_vae *m, int64_t T) {
    for (int i = 0; i < time_levels(m); i++) T = up_frames(T);
    return T;
}

/* The reference's frame batches over n frames with batch size bs (the first takes the remainder). */
static int64_t n_batches(int64_t n, int64_t bs) { return n / bs; }
static void batch_range(int64_t n, int64_t bs, int64_t k, int64_t *s, int64_t *e) {
    *s = bs * k + (k == 0 ? 0 : n % bs);
    *e = bs * (k + 1) + n % bs;
    if (*e > n) *e = n;
}

typedef struct {
    int64_t tlh, tlw;       /* tile size in latents */
    int64_t oh, ow;         /* latent stride between tiles */
    int64_t bh, bw;         /* blend extent in pixels */
    int64_t rh, rw;         /* row limit (kept pixels) */
} tiling;

static cvx_status tiling_plan(cvx_vae *m, const cvx_vae_params *p, int64_t H, int64_t W, int *use, tiling *t) {
    *use = 0;
    if (!p->tiling) return CVX_OK;
    const double S = (double)spatial_factor(m);
    /* Python's int() of double products, exactly as enable_tiling/tiled_decode compute them. */
    t->tlh = (int64_t)((double)p->tile_sample_min_height / S);
    t->tlw = (int64_t)((double)p->tile_sample_min_width / S);
    if (!(W > t->tlw || H > t->tlh)) return CVX_OK;
    t->oh = (int64_t)((double)t->tlh * (1.0 - p->tile_overlap_factor_height));
    t->ow = (int64_t)((double)t->tlw * (1.0 - p->tile_overlap_factor_width));
    t->bh = (int64_t)((double)p->tile_sample_min_height * p->tile_overlap_factor_height);
    t->bw = (int64_t)((double)p->tile_sample_min_width * p->tile_overlap_factor_width);
    t->rh = p->tile_sample_min_height - t->bh;
    t->rw = p->tile_sample_min_width - t->bw;
    if (t->tlh < 1 || t->tlw < 1 || t->oh < 1 || t->ow < 1 || t->rh < 0 || t->rw < 0)
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT,
                        "VAE: tiling %lldx%lld px with overlap %g/%g gives a tile of %lldx%lld latents and a stride of "
                        "%lldx%lld (the reference's range() refuses a zero step)",
                        (long long)p->tile_sample_min_height, (long long)p->tile_sample_min_width,
                        p->tile_overlap_factor_height, p->tile_overlap_factor_width, (long long)t->tlh,
                        (long long)t->tlw, (long long)t->oh, (long long)t->ow);
    *use = 1;
    return CVX_OK;
}

/* Pixels kept along one axis: every tile cropped to the row limit. */
static int64_t tiled_extent(int64_t n, int64_t step, int64_t tile, int64_t S, int64_t limit) {
    int64_t e = 0;
    for (int64_t i = 0; i < n; i += step) {
        int64_t px = S * (n - i < tile ? n - i : tile);
        e += px < limit ? px : limit;
    }
    return e;
}

cvx_status cvx_vae_decode_shape(cvx_vae *m, const cvx_vae_params *p, const int64_t zs[5], int64_t os[5]) {
    cvx_error_clear(&m->err);
    if (!m->dec.present) return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "VAE: the decoder was not loaded");
    for (int i = 0; i < 5; i++)
        if (zs[i] < 1 || zs[i] > (1 << 20))
            return cvx_fail(&m->err, CVX_ERR_SHAPE, "VAE decode: bad latent shape dimension %d = %lld", i,
                            (long long)zs[i]);
    if (zs[1] != m->cfg.latent_channels)
        return cvx_fail(&m->err, CVX_ERR_SHAPE, "VAE decode: the latent has %lld channels, the model %lld",
                        (long long)zs[1], (long long)m->cfg.latent_channels);
    const int64_t bs = p->latent_frames_batch, T = zs[2], S = spatial_factor(m);
    if (bs < 1) return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "VAE decode: latent_frames_batch must be >= 1");
    if (n_batches(T, bs) < 1)
        return cvx_fail(&m->err, CVX_ERR_SHAPE,
                        "VAE decode: %lld latent frame(s) make no frame batch of %lld (diffusers 0.30.3 fails here "
                        "with torch.cat([]))",
                        (long long)T, (long long)bs);
    int64_t F = 0;
    for (int64_t k = 0; k < n_batches(T, bs); k++) {
        int64_t s, e;
        batch_range(T, bs, k, &s, &e);
        F += decoded_frames(m, e - s);
    }
    int use;
    tiling t;
    cvx_status st = tiling_plan(m, p, zs[3], zs[4], &use, &t);
    if (st) return st;
    os[0] = zs[0];
    os[1] = m->cfg.out_channels;
    os[2] = F;
    os[3] = use ? tiled_extent(zs[3], t.oh, t.tlh, S, t.rh) : S * zs[3];
    os[4] = use ? tiled_extent(zs[4], t.ow, t.tlw, S, t.rw) : S * zs[4];
    return CVX_OK;
}

typedef struct {
    int done, total;
} progress;

static cvx_status report(cvx_vae *m, const cvx_vae_params *p, progress *pr) {
    pr->done++;
    if (p->progress && p->progress(p->progress_user_data, pr->done, pr->total))
        return cvx_fail(&m->err, CVX_ERR_CANCELLED, "VAE: cancelled");
    return CVX_OK;
}

/* _decode for one sample: z [L][T][ldh-strided H][W] window -> out [C][F][S·H][S·W]. */
/* stream: out is the caller's output (not a tile), so finished frames are announced (frames_ready). */
static cvx_status decode_one(cvx_vae *m, cvx_pool *pool, const cvx_vae_params *p, cvx__vcache *cache,
                             const float *z, int64_t T, int64_t zH0, int64_t zW0, int64_t y0, int64_t x0, int64_t H,
                             int64_t W, int sample, float *out, progress *pr, int stream) {
    const int64_t L = m->cfg.latent_channels, bs = p->latent_frames_batch, nb = n_batches(T, bs);
    const int64_t S = spatial_factor(m), Ho = S * H, Wo = S * W;
    int64_t F = 0;
    for (int64_t k = 0; k < nb; k++) {
        int64_t s, e;
        batch_range(T, bs, k, &s, &e);
        F += decoded_frames(m, e - s);
    }
    cvx_status st = CVX_OK;
    int64_t f0 = 0;
    /* A row-split decode: this rank's latent rows [ly0, ly0 + lh) (rank j's: cnt[j] from off[j]). */
    const cvx_dist *d = stream && cvx_dist_size(p->dist) > 1 ? p->dist : NULL;
    const int nr = cvx_dist_size(d), rk = cvx_dist_rank(d);
    int64_t *cnt = calloc((size_t)nr * 2, sizeof(int64_t)), *off = cnt ? cnt + nr : NULL;
    if (!cnt) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    for (int j = 0, o0 = 0; j < nr; j++) cnt[j] = H / nr + (j < H % nr), off[j] = o0, o0 += (int)cnt[j];
    const int64_t ly0 = off[rk], lh = cnt[rk];
    cvx__vcache_clear(cache);
    for (int64_t k = 0; !st && k < nb; k++) {
        int64_t s, e;
        batch_range(T, bs, k, &s, &e);
        cvx__vact zq, zf = {0}, o = {0};
        if ((st = cvx__vact_alloc(&zq, L, e - s, lh, W, &m->err))) break;
        if (d && (st = cvx__vact_alloc(&zf, L, e - s, H, W, &m->err))) {
            cvx__vact_free(&zq);
            break;
        }
        for (int64_t t = 0; t < e - s; t++)
            for (int64_t y = 0; y < H; y++)
                for (int64_t x = 0; x < W; x++)
                    for (int64_t c = 0; c < L; c++) {
                        float v = z[((c * T + s + t) * zH0 + y0 + y) * zW0 + x0 + x];
                        if (y >= ly0 && y < ly0 + lh) zq.data[((t * lh + y - ly0) * W + x) * L + c] = v;
                        if (d) zf.data[((t * H + y) * W + x) * L + c] = v;
                    }
        run_ctx r = {m, pool, p, cache, k + 1 < nb, (int)k, (int)nb, sample, &zq, d ? &zf : NULL, ly0};
        st = decoder_fwd(&r, &o);
        cvx__vact_free(&zq);
        cvx__vact_free(&zf);
        if (!st) {
            /* this rank's rows into their place, then every rank's rows everywhere */
            const int64_t C = o.C, n = Ho * Wo, rows = o.H, r0 = S * ly0;
            for (int64_t t = 0; t < o.T; t++)
                for (int64_t i = 0; i < rows * Wo; i++)
                    for (int64_t c = 0; c < C; c++)
                        out[(c * F + f0 + t) * n + r0 * Wo + i] = o.data[(t * rows * Wo + i) * C + c];
            if (d) {
                int64_t *gc = calloc((size_t)nr * 2, sizeof(int64_t)), *gd = gc ? gc + nr : NULL;
                if (!gc) st = cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
                for (int j = 0; !st && j < nr; j++)
                    gc[j] = (int64_t)sizeof(float) * S * cnt[j] * Wo, gd[j] = (int64_t)sizeof(float) * S * off[j] * Wo;
                for (int64_t c = 0; !st && c < C; c++)
                    for (int64_t t = 0; !st && t < o.T; t++)
                        st = cvx_dist_allgatherv(d, out + (c * F + f0 + t) * n, gc, gd, &m->err);
                free(gc);
            }
            f0 += o.T;
            if (stream && p->frames_ready &&
                p->frames_ready(p->frames_ready_user_data, sample, f0 - o.T, f0))
                st = cvx_fail(&m->err, CVX_ERR_CANCELLED, "VAE: cancelled");
        }
        cvx__vact_free(&o);
        if (!st) st = report(m, p, pr);
    }
    cvx__vcache_clear(cache);
    free(cnt);
    return st;
}

/* blend_v / blend_h of the reference, in place on b (a and b are [C][F][h][w] tiles). */
static void blend_v(const float *a, int64_t ah, float *b, int64_t bh, int64_t CF, int64_t w, int64_t extent) {
    int64_t e = ah < bh ? ah : bh;
    if (extent < e) e = extent;
    for (int64_t y = 0; y < e; y++) {
        const float wa = (float)(1.0 - (double)y / (double)e), wb = (float)((double)y / (double)e);
        for (int64_t cf = 0; cf < CF; cf++) {
            const float *ar = a + (cf * ah + ah - e + y) * w;
            float *br = b + (cf * bh + y) * w;
            for (int64_t x = 0; x < w; x++) br[x] = ar[x] * wa + br[x] * wb;
        }
    }
}

static void blend_h(const float *a, int64_t aw, float *b, int64_t bw, int64_t CFH, int64_t extent) {
    int64_t e = aw < bw ? aw : bw;
    if (extent < e) e = extent;
    for (int64_t x = 0; x < e; x++) {
        const float wa = (float)(1.0 - (double)x / (double)e), wb = (float)((double)x / (double)e);
        for (int64_t r = 0; r < CFH; r++) b[r * bw + x] = a[r * aw + aw - e + x] * wa + b[r * bw + x] * wb;
    }
}

typedef struct {
    float *d;
    int64_t h, w; /* pixels */
} tile_buf;

static cvx_status decode_tiled_one(cvx_vae *m, cvx_pool *pool, const cvx_vae_params *p, cvx__vcache *cache,
                                   const tiling *tl, const float *z, int64_t T, int64_t H, int64_t W, int sample,
                                   float *out, const int64_t os[5], progress *pr) {
    const int64_t S = spatial_factor(m), C = os[1], F = os[2], OH = os[3], OW = os[4];
    const int64_t ncols = (W + tl->ow - 1) / tl->ow;
    tile_buf *prev = calloc((size_t)ncols, sizeof *prev), *cur = calloc((size_t)ncols, sizeof *cur);
    cvx_status st = prev && cur ? CVX_OK : cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    int64_t oy = 0;
    for (int64_t i = 0, a = 0; !st && i < H; i += tl->oh, a++) {
        int64_t ox = 0;
        for (int64_t j = 0, b = 0; !st && j < W; j += tl->ow, b++) {
            const int64_t h = H - i < tl->tlh ? H - i : tl->tlh, w = W - j < tl->tlw ? W - j : tl->tlw;
            tile_buf *t = &cur[b];
            t->h = S * h;
            t->w = S * w;
            t->d = malloc((size_t)(C * F * t->h * t->w) * sizeof(float));
            if (!t->d) {
                st = cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for a tile");
                break;
            }
            if ((st = decode_one(m, pool, p, cache, z, T, H, W, i, j, h, w, sample, t->d, pr, 0))) break;
            if (p->tap && p->tap->fn) {
                char name[64];
                snprintf(name, sizeof name, "%lld.%lld", (long long)a, (long long)b);
                if (!p->tap->wants || p->tap->wants(p->tap->user_data, "tile", name, -1, 0)) {
                    int64_t shape[4] = {C, F, t->h, t->w};
                    cvx_tensor tv = cvx_tensor_view(CVX_DTYPE_F32, t->d, 4, shape);
                    if ((st = p->tap->fn(p->tap->user_data, "tile", name, -1, 0, sample, &tv))) {
                        cvx_fail(&m->err, st, "VAE: tap tile.%s failed", name);
                        break;
                    }
                }
            }
            /* In raster order and in place: the neighbours above and to the left are already blended. */
            if (i > 0) blend_v(prev[b].d, prev[b].h, t->d, t->h, C * F, t->w, tl->bh);
            if (j > 0) blend_h(cur[b - 1].d, cur[b - 1].w, t->d, t->w, C * F * t->h, tl->bw);
            const int64_t kh = t->h < tl->rh ? t->h : tl->rh, kw = t->w < tl->rw ? t->w : tl->rw;
            for (int64_t cf = 0; cf < C * F; cf++)
                for (int64_t y = 0; y < kh; y++)
                    memcpy(out + (cf * OH + oy + y) * OW + ox, t->d + (cf * t->h + y) * t->w,
                           (size_t)kw * sizeof(float));
            ox += kw;
        }
        if (!st) {
            oy += cur[0].h < tl->rh ? cur[0].h : tl->rh;
            for (int64_t b = 0; b < ncols; b++) {
                free(prev[b].d);
                prev[b] = cur[b];
                cur[b].d = NULL;
            }
        }
    }
    for (int64_t b = 0; prev && cur && b < ncols; b++) {
        free(prev[b].d);
        free(cur[b].d);
    }
    free(prev);
    free(cur);
    return st;
}

cvx_status cvx_vae_decode(cvx_vae *m, cvx_pool *pool, const cvx_vae_params *p, const float *z, const int64_t zs[5],
                          float *out) {
    int64_t os[5];
    cvx_status st = cvx_vae_decode_shape(m, p, zs, os);
    if (st) return st;
    int use;
    tiling tl;
    if ((st = tiling_plan(m, p, zs[3], zs[4], &use, &tl))) return st;
    const int64_t B = zs[0], L = zs[1], T = zs[2], H = zs[3], W = zs[4];
    if (cvx_dist_size(p->dist) > 1 && (use || H < cvx_dist_size(p->dist)))
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT,
                        "VAE: a decode over %d processes needs untiled decoding and at least as many latent rows "
                        "(%lld)", cvx_dist_size(p->dist), (long long)H);
    cvx__vcache *cache = NULL;
    if ((st = open_cache(m, p, 0, use ? tl.tlh : H, use ? tl.tlw : W, n_batches(T, p->latent_frames_batch), &cache)))
        return st;
    progress pr = {0, (int)(B * n_batches(T, p->latent_frames_batch))};
    if (use) pr.total *= (int)(((H + tl.oh - 1) / tl.oh) * ((W + tl.ow - 1) / tl.ow));
    const int64_t zstride = L * T * H * W, ostride = os[1] * os[2] * os[3] * os[4];
    for (int64_t b = 0; !st && b < B; b++) {
        if (use)
        {
            st = decode_tiled_one(m, pool, p, cache, &tl, z + b * zstride, T, H, W, (int)b, out + b * ostride, os, &pr);
            if (!st && p->frames_ready && p->frames_ready(p->frames_ready_user_data, (int)b, 0, os[2]))
                st = cvx_fail(&m->err, CVX_ERR_CANCELLED, "VAE: cancelled");
        } else {
            st = decode_one(m, pool, p, cache, z + b * zstride, T, H, W, 0, 0, H, W, (int)b, out + b * ostride, &pr, 1);
        }
    }
    cvx__vcache_free(cache);
    return st;
}

/* ---- encode ------------------------------------------------------------------------------------------- */

cvx_status cvx_vae_encode_shape(cvx_vae *m, const cvx_vae_params *p, const int64_t xs[5], int64_t hs[5]) {
    cvx_error_clear(&m->err);
    if (!m->enc.present) return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "VAE: the encoder was not loaded");
    for (int i = 0; i < 5; i++)
        if (xs[i] < 1 || xs[i] > (1 << 20))
            return cvx_fail(&m->err, CVX_ERR_SHAPE, "VAE encode: bad video shape dimension %d = %lld", i,
                            (long long)xs[i]);
    if (xs[1] != m->cfg.in_channels)
        return cvx_fail(&m->err, CVX_ERR_SHAPE, "VAE encode: the video has %lld channels, the model %lld",
                        (long long)xs[1], (long long)m->cfg.in_channels);
    const int64_t bs = p->sample_frames_batch, F = xs[2];
    if (bs < 1) return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "VAE encode: sample_frames_batch must be >= 1");
    const int64_t nb = F > 1 ? F / bs : 1;
    if (nb < 1)
        return cvx_fail(&m->err, CVX_ERR_SHAPE,
                        "VAE encode: %lld frames make no frame batch of %lld (the reference needs 1 or >= %lld; "
                        "torch.cat([]) fails)",
                        (long long)F, (long long)bs, (long long)bs);
    int64_t T = 0, H = xs[3], W = xs[4];
    for (int64_t k = 0; k < nb; k++) {
        int64_t s, e;
        batch_range(F, bs, k, &s, &e);
        int64_t t = e - s;
        for (int i = 0; i < time_levels(m); i++) t = down_frames(t);
        T += t;
    }
    for (int i = 0; i < m->cfg.n_blocks - 1; i++) {
        if (H < 2 || W < 2)
            return cvx_fail(&m->err, CVX_ERR_SHAPE, "VAE encode: %lldx%lld pixels are too small for %d downsamplings",
                            (long long)xs[3], (long long)xs[4], m->cfg.n_blocks - 1);
        H = (H - 2) / 2 + 1;
        W = (W - 2) / 2 + 1;
    }
    hs[0] = xs[0];
    hs[1] = 2 * m->cfg.latent_channels;
    hs[2] = T;
    hs[3] = H;
    hs[4] = W;
    return CVX_OK;
}

cvx_status cvx_vae_encode(cvx_vae *m, cvx_pool *pool, const cvx_vae_params *p, const float *x, const int64_t xs[5],
                          float *h) {
    int64_t hs[5];
    cvx_status st = cvx_vae_encode_shape(m, p, xs, hs);
    if (st) return st;
    const int64_t B = xs[0], C = xs[1], F = xs[2], H = xs[3], W = xs[4], bs = p->sample_frames_batch;
    const int64_t nb = F > 1 ? F / bs : 1, hn = hs[3] * hs[4];
    cvx__vcache *cache = NULL;
    if ((st = open_cache(m, p, 1, H, W, nb, &cache))) return st;
    progress pr = {0, (int)(B * nb)};
    for (int64_t b = 0; !st && b < B; b++) {
        const float *xb = x + b * C * F * H * W;
        float *hb = h + b * hs[1] * hs[2] * hn;
        int64_t t0 = 0;
        cvx__vcache_clear(cache);
        for (int64_t k = 0; !st && k < nb; k++) {
            int64_t s, e;
            batch_range(F, bs, k, &s, &e);
            cvx__vact in, o = {0};
            if ((st = cvx__vact_alloc(&in, C, e - s, H, W, &m->err))) break;
            for (int64_t t = 0; t < e - s; t++)
                for (int64_t i = 0; i < H * W; i++)
                    for (int64_t c = 0; c < C; c++)
                        in.data[(t * H * W + i) * C + c] = xb[(c * F + s + t) * H * W + i];
            run_ctx r = {m, pool, p, cache, k + 1 < nb, (int)k, (int)nb, (int)b, NULL, NULL, 0};
            st = encoder_fwd(&r, &in, &o);
            cvx__vact_free(&in);
            if (!st)
                for (int64_t t = 0; t < o.T; t++)
                    for (int64_t i = 0; i < hn; i++)
                        for (int64_t c = 0; c < o.C; c++)
                            hb[(c * hs[2] + t0 + t) * hn + i] = o.data[(t * hn + i) * o.C + c];
            t0 += o.T;
            cvx__vact_free(&o);
            if (!st) st = report(m, p, &pr);
        }
    }
    cvx__vcache_free(cache);
    return st;
}

/* ---- pipeline-side transforms ------------------------------------------------------------------------- */

void cvx_vae_latents_to_z(const float *lat, const int64_t s[5], double scaling_factor, float *z) {
    const int64_t B = s[0], F = s[1], C = s[2], n = s[3] * s[4];
    const float mult = (float)(1.0 / scaling_factor);
    for (int64_t b = 0; b < B; b++)
        for (int64_t f = 0; f < F; f++)
            for (int64_t c = 0; c < C; c++) {
                const float *src = lat + ((b * F + f) * C + c) * n;
                float *dst = z + ((b * C + c) * F + f) * n;
                for (int64_t i = 0; i < n; i++) dst[i] = src[i] * mult;
            }
}

void cvx_vae_posterior(const float *h, int64_t B, int64_t L, int64_t n, const float *noise, float *mean, float *logvar,
                       float *std, float *sample) {
    for (int64_t b = 0; b < B; b++)
        for (int64_t i = 0; i < L * n; i++) {
            const int64_t o = b * L * n + i;
            float mu = h[b * 2 * L * n + i], lv = h[b * 2 * L * n + L * n + i];
            lv = lv < -30.0f ? -30.0f : lv > 20.0f ? 20.0f : lv;
            float sd = expf(0.5f * lv);
            if (mean) mean[o] = mu;
            if (logvar) logvar[o] = lv;
            if (std) std[o] = sd;
            if (sample && noise) sample[o] = mu + sd * noise[o];
        }
}

void cvx_vae_scale_latents(const float *sample, const int64_t s[5], double scaling_factor, float *out) {
    const int64_t B = s[0], L = s[1], T = s[2], n = s[3] * s[4];
    const float f = (float)scaling_factor;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < L; c++)
            for (int64_t t = 0; t < T; t++) {
                const float *src = sample + ((b * L + c) * T + t) * n;
                float *dst = out + ((b * T + t) * L + c) * n;
                for (int64_t i = 0; i < n; i++) dst[i] = f * src[i];
            }
}

void cvx_vae_postprocess_frames(const float *x, const int64_t s[5], int64_t f0, int64_t f1, float *np, uint8_t *u8,
                                uint8_t *u8_trunc) {
    const int64_t B = s[0], C = s[1], F = s[2], n = s[3] * s[4], Fo = f1 - f0;
    for (int64_t b = 0; b < B; b++)
        for (int64_t c = 0; c < C; c++)
            for (int64_t f = f0; f < f1; f++)
                for (int64_t i = 0; i < n; i++) {
                    float v = x[((b * C + c) * F + f) * n + i] / 2.0f + 0.5f;
                    v = v < 0.0f ? 0.0f : v > 1.0f ? 1.0f : v;
                    const int64_t o = ((b * Fo + f - f0) * n + i) * C + c;
                    const float v255 = v * 255.0f;
                    if (np) np[o] = v;
                    /* NaN survives torch's clamp; its uint8 cast is undefined in C (numpy gives 0 on x86). */
                    if (u8) u8[o] = v != v ? 0 : (uint8_t)rintf(v255); /* numpy's round: half to even */
                    if (u8_trunc) u8_trunc[o] = v != v ? 0 : (uint8_t)v255;
                }
}

void cvx_vae_postprocess(const float *x, const int64_t s[5], float *np, uint8_t *u8, uint8_t *u8_trunc) {
    cvx_vae_postprocess_frames(x, s, 0, s[2], np, u8, u8_trunc);
}
