/* Rotary tables of CogVideoXPipeline._prepare_rotary_positional_embeddings (see rope.h). */
#include "diffusion/rope.h"

#include <math.h>
#include <stdlib.h>

cvx_rope_params cvx_rope_params_default(int height_px, int width_px, int num_latent_frames, int head_dim) {
    cvx_rope_params p = {height_px, width_px, num_latent_frames, 8, 2, head_dim, 10000.0, 720, 480};
    return p;
}

/* Python's round() on a double is half-to-even, which is rint() in the default rounding mode. */
static int py_round(double x) { return (int)rint(x); }

void cvx_rope_crop_region(int gh, int gw, int base_w, int base_h, int crop[4]) {
    double r = (double)gh / (double)gw;
    int rh, rw;
    if (r > (double)base_h / (double)base_w) {
        rh = base_h;
        rw = py_round((double)base_h / (double)gh * (double)gw);
    } else {
        rw = base_w;
        rh = py_round((double)base_w / (double)gw * (double)gh);
    }
    int top = py_round((double)(base_h - rh) / 2.0);
    int left = py_round((double)(base_w - rw) / 2.0);
    crop[0] = top;
    crop[1] = left;
    crop[2] = top + rh;
    crop[3] = left + rw;
}

/* Length of arange(0, dim, 2) repeated twice. */
static int axis_channels(int dim) { return 2 * ((dim + 1) / 2); }

cvx_status cvx_rope_shape(const cvx_rope_params *p, int *gh, int *gw, int64_t *rows, cvx_error *err) {
    if (p->vae_scale_spatial <= 0 || p->patch_size <= 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "rope: vae scale %d and patch size %d must be positive",
                        p->vae_scale_spatial, p->patch_size);
    int cell = p->vae_scale_spatial * p->patch_size;
    int h = p->height_px / cell, w = p->width_px / cell;
    if (p->height_px <= 0 || p->width_px <= 0 || h <= 0 || w <= 0 || p->num_latent_frames <= 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                        "rope: %dx%d px with %d latent frames gives an empty %dx%d grid (cell %d px)", p->height_px,
                        p->width_px, p->num_latent_frames, h, w, cell);
    if (p->base_width_px / cell <= 0 || p->base_height_px / cell <= 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "rope: base grid %dx%d px is empty for cell %d px",
                        p->base_height_px, p->base_width_px, cell);
    int D = p->head_dim;
    if (D <= 0 || axis_channels(D / 4) + 2 * axis_channels(D / 8 * 3) != D)
        return cvx_fail(err, CVX_ERR_UNSUPPORTED,
                        "rope: head_dim %d does not split into temporal %d + height %d + width %d channels", D,
                        D / 4, D / 8 * 3, D / 8 * 3);
    *gh = h;
    *gw = w;
    *rows = (int64_t)p->num_latent_frames * h * w;
    return CVX_OK;
}

/* np.linspace(start, stop, n, endpoint=False, dtype=float32): float64 i·step + start, then rounded. */
static void linspace_f32(double start, double stop, int n, float *out) {
    double step = (stop - start) / (double)n;
    for (int i = 0; i < n; i++) out[i] = (float)((double)i * step + start);
}

/* 1 / theta^(k/dim) for k = 0, 2, 4, ... < dim, in float32 as torch computes it. */
static void axis_freqs(int dim, double theta, float *out) {
    for (int k = 0, j = 0; k < dim; k += 2, j++) {
        float e = (float)k / (float)dim;
        float pw = (float)pow((float)theta, (double)e);
        out[j] = 1.0f / pw;
    }
}

/* One axis: for position pos, channels f0,f0,f1,f1,... of angle fl32(pos·f_j). */
static void axis_fill(float pos, const float *freqs, int dim, float *cos_out, float *sin_out) {
    int n = axis_channels(dim);
    for (int c = 0; c < n; c++) {
        float a = pos * freqs[c / 2];
        cos_out[c] = (float)cos((double)a);
        sin_out[c] = (float)sin((double)a);
    }
}

cvx_status cvx_rope_tables(const cvx_rope_params *p, float *cos_out, float *sin_out, cvx_error *err) {
    int gh, gw;
    int64_t rows;
    cvx_status st = cvx_rope_shape(p, &gh, &gw, &rows, err);
    if (st != CVX_OK) return st;
    int cell = p->vae_scale_spatial * p->patch_size;
    int crop[4];
    cvx_rope_crop_region(gh, gw, p->base_width_px / cell, p->base_height_px / cell, crop);

    int D = p->head_dim, T = p->num_latent_frames;
    int dt = D / 4, dh = D / 8 * 3;
    int ct = axis_channels(dt), ch = axis_channels(dh);
    float *pos_h = malloc(sizeof(float) * (size_t)gh), *pos_w = malloc(sizeof(float) * (size_t)gw);
    float *ft = malloc(sizeof(float) * (size_t)(ct / 2 + 1)), *fh = malloc(sizeof(float) * (size_t)(ch / 2 + 1));
    /* per-axis cos/sin rows, computed once and copied into every token row */
    float *tc = malloc(sizeof(float) * (size_t)T * ct), *ts = malloc(sizeof(float) * (size_t)T * ct);
    float *hc = malloc(sizeof(float) * (size_t)gh * ch), *hs = malloc(sizeof(float) * (size_t)gh * ch);
    float *wc = malloc(sizeof(float) * (size_t)gw * ch), *ws = malloc(sizeof(float) * (size_t)gw * ch);
    if (!pos_h || !pos_w || !ft || !fh || !tc || !ts || !hc || !hs || !wc || !ws) {
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "rope: out of memory for a %dx%dx%d table", T, gh, gw);
        goto done;
    }
    linspace_f32(crop[0], crop[2], gh, pos_h);
    linspace_f32(crop[1], crop[3], gw, pos_w);
    axis_freqs(dt, p->theta, ft);
    axis_freqs(dh, p->theta, fh); /* height and width use the same dim, hence the same frequencies */
    for (int t = 0; t < T; t++) axis_fill((float)t, ft, dt, tc + (size_t)t * ct, ts + (size_t)t * ct);
    for (int h = 0; h < gh; h++) axis_fill(pos_h[h], fh, dh, hc + (size_t)h * ch, hs + (size_t)h * ch);
    for (int w = 0; w < gw; w++) axis_fill(pos_w[w], fh, dh, wc + (size_t)w * ch, ws + (size_t)w * ch);

    for (int t = 0; t < T; t++)
        for (int h = 0; h < gh; h++)
            for (int w = 0; w < gw; w++) {
                size_t row = (((size_t)t * gh + h) * gw + w) * (size_t)D;
                float *c = cos_out + row, *s = sin_out + row;
                for (int i = 0; i < ct; i++) c[i] = tc[(size_t)t * ct + i], s[i] = ts[(size_t)t * ct + i];
                for (int i = 0; i < ch; i++)
                    c[ct + i] = hc[(size_t)h * ch + i], s[ct + i] = hs[(size_t)h * ch + i];
                for (int i = 0; i < ch; i++)
                    c[ct + ch + i] = wc[(size_t)w * ch + i], s[ct + ch + i] = ws[(size_t)w * ch + i];
            }
done:
    free(pos_h), free(pos_w), free(ft), free(fh), free(tc), free(ts), free(hc), free(hs), free(wc), free(ws);
    return st;
}
