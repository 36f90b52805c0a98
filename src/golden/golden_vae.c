/* Golden handler for the VAE cases (../shared/golden/vae, see its README): the case's inputs decide the call.
 *   latents [B, F, C, H, W]  CogVideoXPipeline.decode_latents (permute + 1/scaling_factor), decode, post-processing
 *   z [B, L, T, H, W]        vae.decode(z) (tiled when case.json has "tiling_args"), post-processing
 *   x [B, 3, F, H, W]        vae.encode(x).latent_dist: h, mean, logvar, std, a sample with the given noise,
 *                            and the video-to-video init_latents
 *   video (no model)         VideoProcessor.postprocess_video only
 * Intermediates come from the model's taps, named as the reference's hooks: act.[batch{k}.]<module>,
 * zq_in.[batch{k}.]<norm>.conv_y, tile.<a>.<b>. Everything else (sizes, tolerances, names) is read from the case. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden/golden.h"
#include "io/config.h"
#include "vae/vae.h"

/* Taps are per sample; they are gathered here and reported as [B, C, T, H, W]. */
typedef struct {
    char *name;
    int64_t shape[4];
    float *data;
    int64_t count; /* samples so far */
} gathered;

typedef struct {
    cvx_golden_case *c;
    gathered *g;
    size_t n, cap;
} tap_state;

static void tap_name(char *buf, size_t size, const char *kind, const char *module, int fb, int nfb) {
    if (nfb > 1)
        snprintf(buf, size, "%s.batch%d.%s", kind, fb, module);
    else
        snprintf(buf, size, "%s.%s", kind, module);
}

static int tap_wants(void *u, const char *kind, const char *module, int fb, int nfb) {
    tap_state *s = u;
    char name[256];
    tap_name(name, sizeof name, kind, module, fb, nfb);
    return cvx_golden_wants(s->c, name);
}

static cvx_status tap_fn(void *u, const char *kind, const char *module, int fb, int nfb, int sample,
                         const cvx_tensor *t) {
    tap_state *s = u;
    char name[256];
    tap_name(name, sizeof name, kind, module, fb, nfb);
    gathered *g = NULL;
    for (size_t i = 0; i < s->n; i++)
        if (!strcmp(s->g[i].name, name)) g = &s->g[i];
    const int64_t n = cvx_tensor_numel(t);
    if (!g) {
        if (s->n == s->cap) {
            size_t cap = s->cap ? 2 * s->cap : 16;
            gathered *ng = realloc(s->g, cap * sizeof *ng);
            if (!ng) return CVX_ERR_OUT_OF_MEMORY;
            s->g = ng;
            s->cap = cap;
        }
        g = &s->g[s->n++];
        memset(g, 0, sizeof *g);
        g->name = strdup(name);
        if (!g->name) return CVX_ERR_OUT_OF_MEMORY;
        memcpy(g->shape, t->shape, sizeof g->shape);
    }
    if (sample != g->count || cvx_tensor_numel(t) != g->shape[0] * g->shape[1] * g->shape[2] * g->shape[3])
        return cvx_fail(&s->c->err, CVX_ERR_INTERNAL, "tap %s: unexpected sample %d / shape", name, sample);
    float *d = realloc(g->data, (size_t)(n * (g->count + 1)) * sizeof(float));
    if (!d) return CVX_ERR_OUT_OF_MEMORY;
    g->data = d;
    memcpy(g->data + n * g->count, t->data, (size_t)n * sizeof(float));
    g->count++;
    return CVX_OK;
}

static cvx_status tap_flush(tap_state *s) {
    cvx_status st = CVX_OK;
    for (size_t i = 0; i < s->n; i++) {
        gathered *g = &s->g[i];
        if (!st) {
            int64_t shape[5] = {g->count, g->shape[0], g->shape[1], g->shape[2], g->shape[3]};
            cvx_tensor t = cvx_tensor_view(CVX_DTYPE_F32, g->data, 5, shape);
            st = cvx_golden_output(s->c, g->name, &t);
        }
        free(g->name);
        free(g->data);
    }
    free(s->g);
    s->g = NULL;
    s->n = s->cap = 0;
    return st;
}

static int has_input(const cvx_golden_case *c, const char *name) {
    json_t *in = json_object_get(c->check, "inputs");
    size_t i;
    json_t *v;
    json_array_foreach(in, i, v) if (json_is_string(v) && !strcmp(json_string_value(v), name)) return 1;
    return 0;
}

/* An input tensor of the expected file with its 5-D shape. */
static cvx_status input5(cvx_golden_case *c, const char *name, float **data, int64_t shape[5]) {
    const cvx_st_tensor *t = cvx_golden_tensor(c, name);
    if (!t) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "input \"%s\" is not in the expected file", name);
    if (t->ndim != 5) return cvx_fail(&c->err, CVX_ERR_SHAPE, "input \"%s\" is not 5-D", name);
    memcpy(shape, t->shape, 5 * sizeof(int64_t));
    return cvx_golden_tensor_f32(c, name, -1, data);
}

static cvx_status output(cvx_golden_case *c, const char *name, cvx_dtype dt, void *data, const int64_t shape[5]) {
    if (!cvx_golden_wants(c, name)) return CVX_OK;
    cvx_tensor t = cvx_tensor_view(dt, data, 5, shape);
    return cvx_golden_output(c, name, &t);
}

/* video_np / video_uint8 / video_uint8_trunc of a decoded sample [B, C, F, H, W]. */
static cvx_status postprocess(cvx_golden_case *c, const float *sample, const int64_t s[5]) {
    const int64_t n = s[0] * s[1] * s[2] * s[3] * s[4];
    const int64_t vs[5] = {s[0], s[2], s[3], s[4], s[1]};
    float *np = malloc((size_t)n * sizeof(float));
    uint8_t *u8 = malloc((size_t)n), *tr = malloc((size_t)n);
    cvx_status st = np && u8 && tr ? CVX_OK : cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    if (!st) {
        cvx_vae_postprocess(sample, s, np, u8, tr);
        st = output(c, "video_np", CVX_DTYPE_F32, np, vs);
    }
    if (!st) st = output(c, "video_uint8", CVX_DTYPE_U8, u8, vs);
    if (!st) st = output(c, "video_uint8_trunc", CVX_DTYPE_U8, tr, vs);
    free(np);
    free(u8);
    free(tr);
    return st;
}

static cvx_status open_model(cvx_golden_case *c, cvx_weights **w, cvx_vae **vae, int parts) {
    char path[4096];
    cvx_config *cfgj = NULL;
    cvx_vae_config cfg;
    if (!c->config) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "the case has no config.json");
    cvx_status st = cvx_config_from_json(&cfgj, c->config, "config.json", &c->err);
    if (!st) st = cvx_vae_config_read(cfgj, &cfg, &c->err);
    if (!st) st = cvx_weights_open(w, cvx_golden_path(c, "weights.safetensors", path, sizeof path), &c->err);
    if (!st) st = cvx_vae_open_with(vae, &cfg, *w, parts, &c->err);
    if (!st && (st = cvx_vae_set_precision(*vae, c->precision))) cvx_fail(&c->err, st, "%s", cvx_vae_last_error(*vae));
    cvx_config_free(cfgj);
    return st;
}

static cvx_status run_decode(cvx_golden_case *c, cvx_vae *vae, cvx_vae_params *p) {
    float *in = NULL, *z = NULL, *out = NULL;
    int64_t zs[5], os[5];
    cvx_status st;
    if (has_input(c, "latents")) { /* the pipeline's decode_latents */
        int64_t ls[5];
        if ((st = input5(c, "latents", &in, ls))) return st;
        zs[0] = ls[0], zs[1] = ls[2], zs[2] = ls[1], zs[3] = ls[3], zs[4] = ls[4];
        if (!(z = malloc((size_t)(zs[0] * zs[1] * zs[2] * zs[3] * zs[4]) * sizeof(float)))) {
            free(in);
            return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        }
        cvx_vae_latents_to_z(in, ls, cvx_vae_get_config(vae)->scaling_factor, z);
        free(in);
        if ((st = output(c, "z", CVX_DTYPE_F32, z, zs))) goto done;
    } else if ((st = input5(c, "z", &z, zs))) {
        return st;
    }
    json_t *ta = json_object_get(c->case_json, "tiling_args");
    if (ta) {
        /* enable_tiling(...): a missing or null argument keeps the default (the reference's `x or default`). */
        json_t *v;
        p->tiling = 1;
        if ((v = json_object_get(ta, "tile_sample_min_height")) && json_is_number(v))
            p->tile_sample_min_height = (int64_t)json_number_value(v);
        if ((v = json_object_get(ta, "tile_sample_min_width")) && json_is_number(v))
            p->tile_sample_min_width = (int64_t)json_number_value(v);
        if ((v = json_object_get(ta, "tile_overlap_factor_height")) && json_is_number(v))
            p->tile_overlap_factor_height = json_number_value(v);
        if ((v = json_object_get(ta, "tile_overlap_factor_width")) && json_is_number(v))
            p->tile_overlap_factor_width = json_number_value(v);
    }
    if ((st = cvx_vae_decode_shape(vae, p, zs, os))) goto model_err;
    if (!(out = malloc((size_t)(os[0] * os[1] * os[2] * os[3] * os[4]) * sizeof(float)))) {
        st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if ((st = cvx_vae_decode(vae, c->pool, p, z, zs, out))) goto model_err;
    if ((st = output(c, "sample", CVX_DTYPE_F32, out, os))) goto done;
    st = postprocess(c, out, os);
    goto done;
model_err:
    cvx_fail(&c->err, st, "%s", cvx_vae_last_error(vae));
done:
    free(z);
    free(out);
    return st;
}

static cvx_status run_encode(cvx_golden_case *c, cvx_vae *vae, cvx_vae_params *p) {
    float *x = NULL, *noise = NULL, *h = NULL, *buf = NULL;
    int64_t xs[5], hs[5];
    cvx_status st = input5(c, "x", &x, xs);
    if (st) return st;
    if ((st = cvx_vae_encode_shape(vae, p, xs, hs))) {
        cvx_fail(&c->err, st, "%s", cvx_vae_last_error(vae));
        goto done;
    }
    const int64_t hn = hs[0] * hs[1] * hs[2] * hs[3] * hs[4], L = hs[1] / 2, n = hs[2] * hs[3] * hs[4];
    const int64_t ls[5] = {hs[0], L, hs[2], hs[3], hs[4]}, ln = hn / 2;
    h = malloc((size_t)hn * sizeof(float));
    buf = malloc((size_t)(5 * ln) * sizeof(float));
    if (!h || !buf) {
        st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    if ((st = cvx_vae_encode(vae, c->pool, p, x, xs, h))) {
        cvx_fail(&c->err, st, "%s", cvx_vae_last_error(vae));
        goto done;
    }
    if ((st = output(c, "h", CVX_DTYPE_F32, h, hs))) goto done;
    float *mean = buf, *logvar = buf + ln, *sd = buf + 2 * ln, *smp = buf + 3 * ln, *init = buf + 4 * ln;
    if (has_input(c, "noise") && (st = cvx_golden_tensor_f32(c, "noise", ln, &noise))) goto done;
    cvx_vae_posterior(h, hs[0], L, n, noise, mean, logvar, sd, smp);
    if ((st = output(c, "mean", CVX_DTYPE_F32, mean, ls)) || (st = output(c, "logvar", CVX_DTYPE_F32, logvar, ls)) ||
        (st = output(c, "std", CVX_DTYPE_F32, sd, ls)))
        goto done;
    if (noise) {
        const int64_t is[5] = {ls[0], ls[2], ls[1], ls[3], ls[4]};
        cvx_vae_scale_latents(smp, ls, cvx_vae_get_config(vae)->scaling_factor, init);
        if ((st = output(c, "latent_sample", CVX_DTYPE_F32, smp, ls)) ||
            (st = output(c, "init_latents_v2v", CVX_DTYPE_F32, init, is)))
            goto done;
    }
done:
    free(x);
    free(noise);
    free(h);
    free(buf);
    return st;
}

cvx_status cvx_golden_vae(cvx_golden_case *c) {
    if (has_input(c, "video")) { /* post-processing only */
        float *v = NULL;
        int64_t s[5];
        cvx_status st = input5(c, "video", &v, s);
        if (!st) st = postprocess(c, v, s);
        free(v);
        return st;
    }
    int enc = has_input(c, "x");
    if (!enc && !has_input(c, "z") && !has_input(c, "latents"))
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "no known input (latents, z, x, video) in check.inputs");
    cvx_weights *w = NULL;
    cvx_vae *vae = NULL;
    cvx_status st = open_model(c, &w, &vae, enc ? CVX_VAE_ENCODER : CVX_VAE_DECODER);
    if (!st) {
        tap_state ts = {c, NULL, 0, 0};
        cvx_vae_tap tap = {tap_wants, tap_fn, &ts};
        cvx_vae_params p = cvx_vae_params_default(vae);
        p.tap = &tap;
        st = enc ? run_encode(c, vae, &p) : run_decode(c, vae, &p);
        cvx_status st2 = tap_flush(&ts);
        if (!st) st = st2;
    }
    cvx_vae_close(vae);
    cvx_weights_close(w);
    return st;
}
