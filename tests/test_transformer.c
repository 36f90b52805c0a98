/* CogVideoX transformer, rope tables and denoising loop tests:
 *  - golden parity through the runner: tests/data/golden/{transformer,rope,pipeline} (and ../shared/golden's
 *    when present), every compared tensor within the case's tolerance;
 *  - an independent float64 evaluation of random small models, written here from the reference's description,
 *    for the config paths the goldens do not cover (exact-erf GELU, no norm affine, no q/k/v bias, no patch
 *    bias, in ≠ out channels, freq_shift 1 / sin-first sinusoid, other interpolation scales, patch 1 and 3,
 *    runtime sizes, batch 3, F16/BF16 storage, rope with arbitrary tables);
 *  - config, weight and call validation (messages name the key / tensor), cancellation and observer stops;
 *  - rope crop rounding and shape errors; dynamic CFG in float64; the loop's cancel and progress hooks. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "diffusion/denoise.h"
#include "diffusion/rope.h"
#include "diffusion/transformer.h"
#include "golden/golden.h"
#include "io/safetensors.h"
#include "testlib.h"

/* ---- a random model: parameters kept in float64 (after rounding to the storage dtype) ------------------------ */

#define MAX_PARAMS 256

typedef struct {
    char name[96];
    int ndim;
    int64_t shape[4];
    int64_t n;
    double *v;
} param;

typedef struct {
    param p[MAX_PARAMS];
    int n;
    uint64_t s;
    cvx_dtype dt;
} model_params;

static double urand(uint64_t *s) {
    *s ^= *s << 13, *s ^= *s >> 7, *s ^= *s << 17;
    return (double)(*s >> 11) / 9007199254740992.0 * 2.0 - 1.0;
}

/* kind: 'w' weight U·√3/√fan_in, 'b' bias 0.1·U, 'n' norm weight 1 + 0.25·U, 'z' norm bias 0.1·U */
static void add_param(model_params *m, char kind, int64_t fan_in, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                      const char *fmt, ...) __attribute__((format(printf, 9, 10)));
static void add_param(model_params *m, char kind, int64_t fan_in, int ndim, int64_t d0, int64_t d1, int64_t d2, int64_t d3,
                      const char *fmt, ...) {
    param *p = &m->p[m->n++];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(p->name, sizeof p->name, fmt, ap);
    va_end(ap);
    p->ndim = ndim;
    int64_t d[4] = {d0, d1, d2, d3};
    p->n = 1;
    for (int i = 0; i < ndim; i++) p->shape[i] = d[i], p->n *= d[i];
    p->v = malloc(sizeof(double) * (size_t)p->n);
    for (int64_t i = 0; i < p->n; i++) {
        double u = urand(&m->s), x;
        if (kind == 'w') x = u * 1.7320508 / sqrt((double)fan_in);
        else if (kind == 'n') x = 1.0 + 0.25 * u;
        else x = 0.1 * u;
        float f = (float)x; /* what the file holds, read back exactly */
        if (m->dt == CVX_DTYPE_F16) f = cvx_f16_to_f32(cvx_f32_to_f16(f));
        if (m->dt == CVX_DTYPE_BF16) f = cvx_bf16_to_f32(cvx_f32_to_bf16(f));
        p->v[i] = f;
    }
}

static const double *P(const model_params *m, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static const double *P(const model_params *m, const char *fmt, ...) {
    char name[96];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(name, sizeof name, fmt, ap);
    va_end(ap);
    for (int i = 0; i < m->n; i++)
        if (!strcmp(m->p[i].name, name)) return m->p[i].v;
    return NULL;
}

static void free_params(model_params *m) {
    for (int i = 0; i < m->n; i++) free(m->p[i].v);
    m->n = 0;
}

static void make_params(model_params *m, const cvx_dit_config *c, cvx_dtype dt, uint64_t seed) {
    memset(m, 0, sizeof *m);
    m->s = seed;
    m->dt = dt;
    int64_t D = c->inner_dim, E = c->time_embed_dim, Dh = c->attention_head_dim, p = c->patch_size;
    int aff = c->norm_elementwise_affine;
    add_param(m, 'w', c->in_channels * p * p, 4, D, c->in_channels, p, p, "patch_embed.proj.weight");
    if (c->patch_bias) add_param(m, 'b', 0, 1, D, 0, 0, 0, "patch_embed.proj.bias");
    add_param(m, 'w', c->text_embed_dim, 2, D, c->text_embed_dim, 0, 0, "patch_embed.text_proj.weight");
    add_param(m, 'b', 0, 1, D, 0, 0, 0, "patch_embed.text_proj.bias");
    add_param(m, 'w', D, 2, E, D, 0, 0, "time_embedding.linear_1.weight");
    add_param(m, 'b', 0, 1, E, 0, 0, 0, "time_embedding.linear_1.bias");
    add_param(m, 'w', E, 2, E, E, 0, 0, "time_embedding.linear_2.weight");
    add_param(m, 'b', 0, 1, E, 0, 0, 0, "time_embedding.linear_2.bias");
    for (int i = 0; i < c->num_layers; i++) {
        const char *pre = "transformer_blocks";
        for (int k = 1; k <= 2; k++) {
            add_param(m, 'w', E, 2, 6 * D, E, 0, 0, "%s.%d.norm%d.linear.weight", pre, i, k);
            add_param(m, 'b', 0, 1, 6 * D, 0, 0, 0, "%s.%d.norm%d.linear.bias", pre, i, k);
            if (aff) {
                add_param(m, 'n', 0, 1, D, 0, 0, 0, "%s.%d.norm%d.norm.weight", pre, i, k);
                add_param(m, 'z', 0, 1, D, 0, 0, 0, "%s.%d.norm%d.norm.bias", pre, i, k);
            }
        }
        add_param(m, 'n', 0, 1, Dh, 0, 0, 0, "%s.%d.attn1.norm_q.weight", pre, i);
        add_param(m, 'z', 0, 1, Dh, 0, 0, 0, "%s.%d.attn1.norm_q.bias", pre, i);
        add_param(m, 'n', 0, 1, Dh, 0, 0, 0, "%s.%d.attn1.norm_k.weight", pre, i);
        add_param(m, 'z', 0, 1, Dh, 0, 0, 0, "%s.%d.attn1.norm_k.bias", pre, i);
        const char *qkv[3] = {"to_q", "to_k", "to_v"};
        for (int j = 0; j < 3; j++) {
            add_param(m, 'w', D, 2, D, D, 0, 0, "%s.%d.attn1.%s.weight", pre, i, qkv[j]);
            if (c->attention_bias) add_param(m, 'b', 0, 1, D, 0, 0, 0, "%s.%d.attn1.%s.bias", pre, i, qkv[j]);
        }
        add_param(m, 'w', D, 2, D, D, 0, 0, "%s.%d.attn1.to_out.0.weight", pre, i);
        add_param(m, 'b', 0, 1, D, 0, 0, 0, "%s.%d.attn1.to_out.0.bias", pre, i);
        add_param(m, 'w', D, 2, 4 * D, D, 0, 0, "%s.%d.ff.net.0.proj.weight", pre, i);
        add_param(m, 'b', 0, 1, 4 * D, 0, 0, 0, "%s.%d.ff.net.0.proj.bias", pre, i);
        add_param(m, 'w', 4 * D, 2, D, 4 * D, 0, 0, "%s.%d.ff.net.2.weight", pre, i);
        add_param(m, 'b', 0, 1, D, 0, 0, 0, "%s.%d.ff.net.2.bias", pre, i);
    }
    if (aff) {
        add_param(m, 'n', 0, 1, D, 0, 0, 0, "norm_final.weight");
        add_param(m, 'z', 0, 1, D, 0, 0, 0, "norm_final.bias");
    }
    add_param(m, 'w', E, 2, 2 * D, E, 0, 0, "norm_out.linear.weight");
    add_param(m, 'b', 0, 1, 2 * D, 0, 0, 0, "norm_out.linear.bias");
    if (aff) {
        add_param(m, 'n', 0, 1, D, 0, 0, 0, "norm_out.norm.weight");
        add_param(m, 'z', 0, 1, D, 0, 0, 0, "norm_out.norm.bias");
    }
    int64_t po = c->out_channels * p * p;
    add_param(m, 'w', D, 2, po, D, 0, 0, "proj_out.weight");
    add_param(m, 'b', 0, 1, po, 0, 0, 0, "proj_out.bias");
}

/* Writes the parameters (skipping `skip`, and with `reshape`'s first dim +1 when given) to path; `half` (if
 * given) is stored as F16 in an otherwise wider file, which shifts every later tensor off its alignment. */
static int write_params_ex(const model_params *m, const char *path, const char *skip, const char *reshape,
                           const char *extra, const char *half) {
    cvx_st_entry e[MAX_PARAMS + 1];
    memset(e, 0, sizeof e);
    void *bufs[MAX_PARAMS + 1] = {0};
    int n = 0;
    for (int i = 0; i < m->n; i++) {
        const param *p = &m->p[i];
        if (skip && !strcmp(skip, p->name)) continue;
        cvx_dtype dt = half && !strcmp(half, p->name) ? CVX_DTYPE_F16 : m->dt;
        e[n].name = p->name;
        e[n].dtype = dt;
        e[n].ndim = p->ndim;
        memset(e[n].shape, 0, sizeof e[n].shape);
        for (int k = 0; k < p->ndim; k++) e[n].shape[k] = p->shape[k];
        int64_t cnt = p->n;
        if (reshape && !strcmp(reshape, p->name)) {
            cnt = cnt / p->shape[0] * (p->shape[0] + 1);
            e[n].shape[0]++;
        }
        size_t es = cvx_dtype_size(dt);
        unsigned char *b = calloc((size_t)cnt, es);
        for (int64_t k = 0; k < p->n; k++) {
            float f = (float)p->v[k];
            if (dt == CVX_DTYPE_F32) memcpy(b + k * es, &f, 4);
            else {
                uint16_t h = dt == CVX_DTYPE_F16 ? cvx_f32_to_f16(f) : cvx_f32_to_bf16(f);
                memcpy(b + k * es, &h, 2);
            }
        }
        e[n].data = bufs[n] = b;
        n++;
    }
    static float one = 1.0f;
    if (extra) e[n++] = (cvx_st_entry){extra, CVX_DTYPE_F32, 1, {1}, &one};
    cvx_error err = {0};
    cvx_status st = cvx_safetensors_write(path, e, (size_t)n, NULL, NULL, NULL, &err);
    for (int i = 0; i < n; i++) free(bufs[i]);
    if (st) fprintf(stderr, "write_params: %s\n", err.message);
    return st;
}

static int write_params(const model_params *m, const char *path, const char *skip, const char *reshape,
                        const char *extra) {
    return write_params_ex(m, path, skip, reshape, extra, NULL);
}

/* ---- the float64 reference forward ------------------------------------------------------------------------ */

static void lin(double *y, const double *x, int64_t M, int64_t K, int64_t N, const double *W, const double *b) {
    for (int64_t m = 0; m < M; m++)
        for (int64_t n = 0; n < N; n++) {
            double s = b ? b[n] : 0.0;
            for (int64_t k = 0; k < K; k++) s += x[m * K + k] * W[n * K + k];
            y[m * N + n] = s;
        }
}

static void layer_norm(double *y, const double *x, int64_t dim, const double *w, const double *b, double eps) {
    double mean = 0, var = 0;
    for (int64_t i = 0; i < dim; i++) mean += x[i];
    mean /= (double)dim;
    for (int64_t i = 0; i < dim; i++) var += (x[i] - mean) * (x[i] - mean);
    var /= (double)dim;
    for (int64_t i = 0; i < dim; i++) y[i] = (x[i] - mean) / sqrt(var + eps) * (w ? w[i] : 1.0) + (b ? b[i] : 0.0);
}

static double silu(double x) { return x / (1.0 + exp(-x)); }

/* get_1d_sincos_pos_embed_from_grid: [sin(pos ω_k) | cos(pos ω_k)], ω_k = 10000^(-k/(d/2)) */
static void sincos1d(double *out, int d, double pos) {
    for (int k = 0; k < d / 2; k++) {
        double a = pos * pow(10000.0, -(double)k / (d / 2.0));
        out[k] = sin(a);
        out[d / 2 + k] = cos(a);
    }
}

static void ref_forward(const cvx_dit_config *c, const model_params *m, int64_t B, int64_t F, int64_t H, int64_t W,
                        int64_t L, const float *lat, const float *text, const int64_t *ts, const float *rcos,
                        const float *rsin, double *out) {
    const int64_t p = c->patch_size, Hp = H / p, Wp = W / p, N = F * Hp * Wp, S = L + N, D = c->inner_dim;
    const int64_t E = c->time_embed_dim, Hd = c->num_attention_heads, Dh = c->attention_head_dim;
    const int64_t Cin = c->in_channels, Cout = c->out_channels, Dt = c->text_embed_dim;
    double *emb = calloc((size_t)(B * E), sizeof(double)), *tp = calloc((size_t)(B * D), sizeof(double));
    double *h1 = calloc((size_t)(B * E), sizeof(double));
    double *x = calloc((size_t)(B * S * D), sizeof(double)), *nrm = calloc((size_t)(B * S * D), sizeof(double));
    double *q = calloc((size_t)(B * S * D), sizeof(double)), *k = calloc((size_t)(B * S * D), sizeof(double));
    double *v = calloc((size_t)(B * S * D), sizeof(double)), *att = calloc((size_t)(B * S * D), sizeof(double));
    double *o = calloc((size_t)(B * S * D), sizeof(double)), *hid = calloc((size_t)(4 * D), sizeof(double));
    double *mod = calloc((size_t)(6 * D), sizeof(double)), *se = calloc((size_t)E, sizeof(double));
    double *sc = calloc((size_t)S, sizeof(double)), *tmp = calloc((size_t)D, sizeof(double));
    int64_t half = D / 2;
    for (int64_t b = 0; b < B; b++) {
        for (int64_t j = 0; j < half; j++) {
            /* the reference forces this sinusoid to float32 (argument up to ~1e3: ulp 6e-5), so the argument is
             * formed as torch forms it; everything after it is float64 */
            float e = ((float)-log(10000.0) * (float)j) / (float)((double)half - c->freq_shift);
            double a = (double)((float)ts[b] * (float)exp((double)e));
            tp[b * D + j] = c->flip_sin_to_cos ? cos(a) : sin(a);
            tp[b * D + half + j] = c->flip_sin_to_cos ? sin(a) : cos(a);
        }
    }
    lin(h1, tp, B, D, E, P(m, "time_embedding.linear_1.weight"), P(m, "time_embedding.linear_1.bias"));
    for (int64_t i = 0; i < B * E; i++) h1[i] = silu(h1[i]);
    lin(emb, h1, B, E, E, P(m, "time_embedding.linear_2.weight"), P(m, "time_embedding.linear_2.bias"));
    const double *pw = P(m, "patch_embed.proj.weight"), *pb = P(m, "patch_embed.proj.bias");
    for (int64_t b = 0; b < B; b++) {
        double *tin = malloc(sizeof(double) * (size_t)(L * Dt));
        for (int64_t i = 0; i < L * Dt; i++) tin[i] = text[b * L * Dt + i];
        lin(x + b * S * D, tin, L, Dt, D, P(m, "patch_embed.text_proj.weight"), P(m, "patch_embed.text_proj.bias"));
        free(tin);
        for (int64_t f = 0; f < F; f++)
            for (int64_t yy = 0; yy < Hp; yy++)
                for (int64_t xx = 0; xx < Wp; xx++) {
                    double *row = x + (b * S + L + (f * Hp + yy) * Wp + xx) * D;
                    for (int64_t d = 0; d < D; d++) {
                        double s = pb ? pb[d] : 0.0;
                        for (int64_t ci = 0; ci < Cin; ci++)
                            for (int64_t dy = 0; dy < p; dy++)
                                for (int64_t dx = 0; dx < p; dx++)
                                    s += pw[((d * Cin + ci) * p + dy) * p + dx] *
                                         lat[(((b * F + f) * Cin + ci) * H + yy * p + dy) * W + xx * p + dx];
                        row[d] = s;
                    }
                    if (!c->use_rotary_positional_embeddings) {
                        double *pe = malloc(sizeof(double) * (size_t)D);
                        int dt4 = (int)D / 4, dsp = (int)(3 * D / 4) / 2;
                        sincos1d(pe, dt4, (double)f / c->temporal_interpolation_scale);
                        sincos1d(pe + dt4, dsp, (double)xx / c->spatial_interpolation_scale);
                        sincos1d(pe + dt4 + dsp, dsp, (double)yy / c->spatial_interpolation_scale);
                        for (int64_t d = 0; d < D; d++) row[d] += pe[d];
                        free(pe);
                    }
                }
    }
    for (int l = 0; l < c->num_layers; l++) {
        const char *pre = "transformer_blocks";
        for (int part = 1; part <= 2; part++) {
            for (int64_t b = 0; b < B; b++) {
                for (int64_t i = 0; i < E; i++) se[i] = silu(emb[b * E + i]);
                lin(mod, se, 1, E, 6 * D, P(m, "%s.%d.norm%d.linear.weight", pre, l, part),
                    P(m, "%s.%d.norm%d.linear.bias", pre, l, part));
                for (int64_t s = 0; s < S; s++) {
                    int txt = s < L;
                    layer_norm(nrm + (b * S + s) * D, x + (b * S + s) * D, D, P(m, "%s.%d.norm%d.norm.weight", pre, l, part),
                               P(m, "%s.%d.norm%d.norm.bias", pre, l, part), c->norm_eps);
                    for (int64_t d = 0; d < D; d++)
                        nrm[(b * S + s) * D + d] =
                            nrm[(b * S + s) * D + d] * (1.0 + mod[(txt ? 4 : 1) * D + d]) + mod[(txt ? 3 : 0) * D + d];
                }
            }
            if (part == 1) {
                lin(q, nrm, B * S, D, D, P(m, "%s.%d.attn1.to_q.weight", pre, l), P(m, "%s.%d.attn1.to_q.bias", pre, l));
                lin(k, nrm, B * S, D, D, P(m, "%s.%d.attn1.to_k.weight", pre, l), P(m, "%s.%d.attn1.to_k.bias", pre, l));
                lin(v, nrm, B * S, D, D, P(m, "%s.%d.attn1.to_v.weight", pre, l), P(m, "%s.%d.attn1.to_v.bias", pre, l));
                for (int64_t r = 0; r < B * S * Hd; r++) {
                    layer_norm(q + r * Dh, q + r * Dh, Dh, P(m, "%s.%d.attn1.norm_q.weight", pre, l),
                               P(m, "%s.%d.attn1.norm_q.bias", pre, l), 1e-6);
                    layer_norm(k + r * Dh, k + r * Dh, Dh, P(m, "%s.%d.attn1.norm_k.weight", pre, l),
                               P(m, "%s.%d.attn1.norm_k.bias", pre, l), 1e-6);
                }
                if (c->use_rotary_positional_embeddings)
                    for (int64_t b = 0; b < B; b++)
                        for (int64_t n = 0; n < N; n++)
                            for (int64_t h = 0; h < Hd; h++)
                                for (int which = 0; which < 2; which++) {
                                    double *t = (which ? k : q) + ((b * S + L + n) * Hd + h) * Dh;
                                    for (int64_t d = 0; d < Dh; d += 2) {
                                        double x0 = t[d], x1 = t[d + 1];
                                        t[d] = x0 * rcos[n * Dh + d] - x1 * rsin[n * Dh + d];
                                        t[d + 1] = x1 * rcos[n * Dh + d + 1] + x0 * rsin[n * Dh + d + 1];
                                    }
                                }
                for (int64_t b = 0; b < B; b++)
                    for (int64_t h = 0; h < Hd; h++)
                        for (int64_t i = 0; i < S; i++) {
                            double mx = -INFINITY, sum = 0;
                            for (int64_t j = 0; j < S; j++) {
                                double s = 0;
                                for (int64_t d = 0; d < Dh; d++)
                                    s += q[((b * S + i) * Hd + h) * Dh + d] * k[((b * S + j) * Hd + h) * Dh + d];
                                sc[j] = s / sqrt((double)Dh);
                                if (sc[j] > mx) mx = sc[j];
                            }
                            for (int64_t j = 0; j < S; j++) sum += sc[j] = exp(sc[j] - mx);
                            for (int64_t d = 0; d < Dh; d++) {
                                double a = 0;
                                for (int64_t j = 0; j < S; j++) a += sc[j] * v[((b * S + j) * Hd + h) * Dh + d];
                                att[((b * S + i) * Hd + h) * Dh + d] = a / sum;
                            }
                        }
                lin(o, att, B * S, D, D, P(m, "%s.%d.attn1.to_out.0.weight", pre, l),
                    P(m, "%s.%d.attn1.to_out.0.bias", pre, l));
            } else {
                for (int64_t r = 0; r < B * S; r++) {
                    lin(hid, nrm + r * D, 1, D, 4 * D, P(m, "%s.%d.ff.net.0.proj.weight", pre, l),
                        P(m, "%s.%d.ff.net.0.proj.bias", pre, l));
                    for (int64_t i = 0; i < 4 * D; i++) {
                        double z = hid[i];
                        hid[i] = c->activation == CVX_DIT_GELU_TANH
                                     ? 0.5 * z * (1.0 + tanh(sqrt(2.0 / M_PI) * (z + 0.044715 * z * z * z)))
                                     : 0.5 * z * (1.0 + erf(z / sqrt(2.0)));
                    }
                    lin(o + r * D, hid, 1, 4 * D, D, P(m, "%s.%d.ff.net.2.weight", pre, l), P(m, "%s.%d.ff.net.2.bias", pre, l));
                }
            }
            /* gated residual with the gate chunks (2 for video, 5 for text) */
            for (int64_t b = 0; b < B; b++) {
                for (int64_t i = 0; i < E; i++) se[i] = silu(emb[b * E + i]);
                lin(mod, se, 1, E, 6 * D, P(m, "%s.%d.norm%d.linear.weight", pre, l, part),
                    P(m, "%s.%d.norm%d.linear.bias", pre, l, part));
                for (int64_t s = 0; s < S; s++)
                    for (int64_t d = 0; d < D; d++)
                        x[(b * S + s) * D + d] += mod[(s < L ? 5 : 2) * D + d] * o[(b * S + s) * D + d];
            }
        }
    }
    const int64_t po = Cout * p * p;
    double *pr = malloc(sizeof(double) * (size_t)po);
    for (int64_t b = 0; b < B; b++) {
        for (int64_t i = 0; i < E; i++) se[i] = silu(emb[b * E + i]);
        lin(mod, se, 1, E, 2 * D, P(m, "norm_out.linear.weight"), P(m, "norm_out.linear.bias"));
        for (int64_t n = 0; n < N; n++) {
            layer_norm(tmp, x + (b * S + L + n) * D, D, P(m, "norm_final.weight"), P(m, "norm_final.bias"), c->norm_eps);
            layer_norm(tmp, tmp, D, P(m, "norm_out.norm.weight"), P(m, "norm_out.norm.bias"), c->norm_eps);
            for (int64_t d = 0; d < D; d++) tmp[d] = tmp[d] * (1.0 + mod[D + d]) + mod[d];
            lin(pr, tmp, 1, D, po, P(m, "proj_out.weight"), P(m, "proj_out.bias"));
            int64_t f = n / (Hp * Wp), yy = n / Wp % Hp, xx = n % Wp;
            for (int64_t ch = 0; ch < Cout; ch++)
                for (int64_t dy = 0; dy < p; dy++)
                    for (int64_t dx = 0; dx < p; dx++)
                        out[(((b * F + f) * Cout + ch) * H + yy * p + dy) * W + xx * p + dx] = pr[(ch * p + dy) * p + dx];
        }
    }
    free(pr), free(emb), free(tp), free(h1), free(x), free(nrm), free(q), free(k), free(v), free(att), free(o);
    free(hid), free(mod), free(se), free(sc), free(tmp);
}

/* ---- random-model parity ------------------------------------------------------------------------------------ */

static const char *tmp_root;

static json_t *base_config(void) {
    return json_pack("{s:s, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:i, s:b}", "_class_name",
                     "CogVideoXTransformer3DModel", "num_attention_heads", 2, "attention_head_dim", 8, "in_channels", 3,
                     "out_channels", 3, "text_embed_dim", 7, "time_embed_dim", 12, "num_layers", 2, "patch_size", 2,
                     "sample_frames", 5, "sample_height", 4, "sample_width", 6, "max_text_seq_length", 5,
                     "use_rotary_positional_embeddings", 0);
}

typedef struct {
    const char *what;
    json_t *cfg; /* stolen */
    cvx_dtype dt;
    int64_t B, F, H, W, L;
    const char *half; /* a tensor stored as F16 (odd length: later tensors land misaligned) */
} variant;

static void run_variant(variant *va, cvx_pool *pool) {
    cvx_dit_config c;
    cvx_error err = {0};
    cvx_status st = cvx_dit_config_parse(&c, va->cfg, &err);
    CHECK_MSG(st == CVX_OK, "%s: %s", va->what, err.message);
    if (st) {
        json_decref(va->cfg);
        return;
    }
    model_params mp;
    make_params(&mp, &c, va->dt, 77 + (uint64_t)va->B * 1000 + (uint64_t)va->W);
    for (int i = 0; va->half && i < mp.n; i++)
        if (!strcmp(mp.p[i].name, va->half))
            for (int64_t k = 0; k < mp.p[i].n; k++) mp.p[i].v[k] = cvx_f16_to_f32(cvx_f32_to_f16((float)mp.p[i].v[k]));
    char path[4096];
    snprintf(path, sizeof path, "%s/w.safetensors", tmp_root);
    CHECK(write_params_ex(&mp, path, NULL, NULL, NULL, va->half) == 0);
    cvx_dit *m = NULL;
    st = cvx_dit_open(&m, &c, path, &err);
    CHECK_MSG(st == CVX_OK, "%s: %s", va->what, err.message);
    const int64_t B = va->B, F = va->F, H = va->H, W = va->W, L = va->L;
    const int64_t nl = B * F * c.in_channels * H * W, no = B * F * c.out_channels * H * W;
    const int64_t N = F * (H / c.patch_size) * (W / c.patch_size), Dh = c.attention_head_dim;
    float *lat = malloc(sizeof(float) * (size_t)nl), *text = malloc(sizeof(float) * (size_t)(B * L * c.text_embed_dim));
    float *out = malloc(sizeof(float) * (size_t)no), *rc = NULL, *rs = NULL;
    double *ref = malloc(sizeof(double) * (size_t)no);
    int64_t ts[8] = {999, 1, 500, 37, 0, 250, 998, 3};
    uint64_t s = 99;
    for (int64_t i = 0; i < nl; i++) lat[i] = (float)urand(&s);
    for (int64_t i = 0; i < B * L * c.text_embed_dim; i++) text[i] = (float)urand(&s);
    if (c.use_rotary_positional_embeddings) {
        rc = malloc(sizeof(float) * (size_t)(N * Dh));
        rs = malloc(sizeof(float) * (size_t)(N * Dh));
        for (int64_t i = 0; i < N * Dh; i++) {
            double a = 3.0 * urand(&s);
            rc[i] = (float)cos(a), rs[i] = (float)sin(a);
        }
    }
    if (!st) {
        cvx_dit_call call = {B, F, H, W, L, lat, text, ts, rc, rs, out, pool, NULL, NULL, NULL, NULL};
        st = cvx_dit_forward(m, &call);
        CHECK_MSG(st == CVX_OK, "%s: %s", va->what, cvx_error_message(cvx_dit_error(m)));
        ref_forward(&c, &mp, B, F, H, W, L, lat, text, ts, rc, rs, ref);
        double worst = 0, maxref = 0;
        int64_t bad = 0;
        for (int64_t i = 0; i < no; i++) {
            double d = fabs(out[i] - ref[i]);
            if (d > worst) worst = d;
            if (fabs(ref[i]) > maxref) maxref = fabs(ref[i]);
            if (!(d <= 2e-5 + 2e-5 * fabs(ref[i]))) bad++;
        }
        CHECK_MSG(bad == 0, "%s: %lld of %lld outputs differ from the float64 evaluation (max |diff| %.3g)", va->what,
                  (long long)bad, (long long)no, worst);
        CHECK_MSG(maxref > 0.05, "%s: degenerate output (max |ref| %.3g)", va->what, maxref);
        printf("  %-58s max |f32 - f64| %.2e (max |out| %.2f)\n", va->what, worst, maxref);
    }
    cvx_dit_free(m);
    free_params(&mp);
    free(lat), free(text), free(out), free(rc), free(rs), free(ref);
    json_decref(va->cfg);
}

static void test_random_models(cvx_pool *pool) {
    variant v[5];
    /* sincos at a runtime size ≠ sample size, in ≠ out channels, sin-first sinusoid with freq_shift 1, other
     * interpolation scales, batch 3 with different timesteps */
    v[0] = (variant){"sincos, in 3 -> out 5, freq_shift 1, sin|cos, scales 1.5/2", base_config(), CVX_DTYPE_F32,
                     3, 3, 6, 4, 5, NULL};
    json_object_set_new(v[0].cfg, "out_channels", json_integer(5));
    json_object_set_new(v[0].cfg, "freq_shift", json_integer(1));
    json_object_set_new(v[0].cfg, "flip_sin_to_cos", json_false());
    json_object_set_new(v[0].cfg, "spatial_interpolation_scale", json_real(1.5));
    json_object_set_new(v[0].cfg, "temporal_interpolation_scale", json_real(2.0));
    /* rope, exact GELU, no norm affine, no q/k/v bias, no patch bias, BF16, patch 1 with odd sizes, L free */
    v[1] = (variant){"rope, erf GELU, no affine/qkv bias/patch bias, BF16, p 1", base_config(), CVX_DTYPE_BF16, 2, 2, 3,
                     5, 4, NULL};
    json_object_set_new(v[1].cfg, "use_rotary_positional_embeddings", json_true());
    json_object_set_new(v[1].cfg, "num_attention_heads", json_integer(3));
    json_object_set_new(v[1].cfg, "activation_fn", json_string("gelu"));
    json_object_set_new(v[1].cfg, "norm_elementwise_affine", json_false());
    json_object_set_new(v[1].cfg, "attention_bias", json_false());
    json_object_set_new(v[1].cfg, "patch_bias", json_false());
    json_object_set_new(v[1].cfg, "patch_size", json_integer(1));
    /* F16, patch 3, 4 heads x 4, one layer, norm_eps 1e-3 */
    v[2] = (variant){"sincos, F16, p 3, 4 heads x 4, norm_eps 1e-3", base_config(), CVX_DTYPE_F16, 1, 2, 6, 9, 5, NULL};
    json_object_set_new(v[2].cfg, "patch_size", json_integer(3));
    json_object_set_new(v[2].cfg, "num_attention_heads", json_integer(4));
    json_object_set_new(v[2].cfg, "attention_head_dim", json_integer(4));
    json_object_set_new(v[2].cfg, "num_layers", json_integer(1));
    json_object_set_new(v[2].cfg, "norm_eps", json_real(1e-3));
    /* a single frame at the config's own sample size (the table the reference keeps as a buffer), three layers */
    v[3] = (variant){"sincos at the sample size, 1 frame, 3 layers, swish", base_config(), CVX_DTYPE_F32, 2, 1, 4, 6, 5, NULL};
    json_object_set_new(v[3].cfg, "sample_frames", json_integer(1));
    json_object_set_new(v[3].cfg, "num_layers", json_integer(3));
    json_object_set_new(v[3].cfg, "timestep_activation_fn", json_string("swish"));
    /* head_dim 1 (16 heads): norm_q.weight [1] stored F16 leaves every later F32 tensor 2 bytes off alignment */
    v[4] = (variant){"misaligned F32 tensors (an F16 [1] ahead), 16 heads x 1", base_config(), CVX_DTYPE_F32, 1, 2, 4, 6,
                     5, "transformer_blocks.0.attn1.norm_q.weight"};
    json_object_set_new(v[4].cfg, "num_attention_heads", json_integer(16));
    json_object_set_new(v[4].cfg, "attention_head_dim", json_integer(1));
    json_object_set_new(v[4].cfg, "num_layers", json_integer(1));
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++) run_variant(&v[i], pool);
}

/* ---- validation ----------------------------------------------------------------------------------------- */

static void expect_config_error(const char *key, json_t *val, cvx_status want, const char *needle) {
    json_t *j = base_config();
    json_object_set_new(j, key, val);
    cvx_dit_config c;
    cvx_error err = {0};
    cvx_status st = cvx_dit_config_parse(&c, j, &err);
    CHECK_MSG(st == want, "config %s: status %d, expected %d (%s)", key, st, want, err.message);
    CHECK_MSG(strstr(err.message, needle) != NULL, "config %s: message \"%s\" lacks \"%s\"", key, err.message, needle);
    json_decref(j);
}

static int cancel_after(void *user) {
    int *n = user;
    return --*n < 0;
}

static int tap_calls;
static cvx_status stop_tap(void *user, const char *name, const cvx_tensor *t) {
    tap_calls++;
    return strcmp(name, (const char *)user) ? CVX_OK : CVX_ERR_MISMATCH;
}

static void test_validation(void) {
    cvx_dit_config c;
    cvx_error err = {0};
    json_t *arr = json_array();
    CHECK(cvx_dit_config_parse(&c, arr, &err) == CVX_ERR_FORMAT);
    json_decref(arr);
    expect_config_error("num_layers", json_string("2"), CVX_ERR_FORMAT, "num_layers");
    expect_config_error("attention_head_dim", json_integer(-3), CVX_ERR_FORMAT, "attention_head_dim");
    expect_config_error("patch_size", json_real(2.5), CVX_ERR_FORMAT, "patch_size");
    expect_config_error("norm_eps", json_string("x"), CVX_ERR_FORMAT, "norm_eps");
    expect_config_error("activation_fn", json_string("relu"), CVX_ERR_UNSUPPORTED, "relu");
    expect_config_error("timestep_activation_fn", json_string("mish"), CVX_ERR_UNSUPPORTED, "mish");
    expect_config_error("spatial_interpolation_scale", json_real(0.0), CVX_ERR_FORMAT, "interpolation");
    expect_config_error("num_layers", json_integer(100000), CVX_ERR_FORMAT, "num_layers");
    expect_config_error("use_learned_positional_embeddings", json_true(), CVX_ERR_FORMAT, "learned"); /* sincos */
    {
        json_t *jl = base_config();
        json_object_set_new(jl, "use_rotary_positional_embeddings", json_true());
        json_object_set_new(jl, "use_learned_positional_embeddings", json_true()); /* 5b-I2V: rope + learned */
        CHECK(cvx_dit_config_parse(&c, jl, &err) == CVX_OK && c.use_learned_positional_embeddings &&
              c.use_rotary_positional_embeddings);
        json_decref(jl);
    }
    expect_config_error("patch_size_t", json_integer(2), CVX_ERR_UNSUPPORTED, "patch_size_t");
    expect_config_error("_class_name", json_string("AutoencoderKLCogVideoX"), CVX_ERR_FORMAT, "AutoencoderKLCogVideoX");
    expect_config_error("num_attention_heads", json_integer(3), CVX_ERR_FORMAT, "divisible by 16"); /* 24 sincos */
    expect_config_error("use_rotary_positional_embeddings", json_integer(1), CVX_ERR_FORMAT,
                        "use_rotary_positional_embeddings");

    /* weights: missing, misshapen, extra, F64 matrices; each message names the tensor */
    json_t *j = base_config();
    CHECK(cvx_dit_config_parse(&c, j, &err) == CVX_OK);
    json_decref(j);
    model_params mp;
    make_params(&mp, &c, CVX_DTYPE_F32, 5);
    char path[4096];
    snprintf(path, sizeof path, "%s/bad.safetensors", tmp_root);
    cvx_dit *m = NULL;
    struct {
        const char *skip, *reshape, *extra, *needle;
    } bad[] = {
        {"transformer_blocks.1.attn1.norm_k.bias", NULL, NULL, "transformer_blocks.1.attn1.norm_k.bias"},
        {NULL, "transformer_blocks.0.ff.net.2.weight", NULL, "transformer_blocks.0.ff.net.2.weight"},
        {NULL, NULL, "transformer_blocks.2.attn1.to_q.weight", "transformer_blocks.2.attn1.to_q.weight"},
        {"proj_out.bias", NULL, NULL, "proj_out.bias"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CHECK(write_params(&mp, path, bad[i].skip, bad[i].reshape, bad[i].extra) == 0);
        cvx_error e2 = {0};
        cvx_status st = cvx_dit_open(&m, &c, path, &e2);
        CHECK_MSG(st != CVX_OK && m == NULL, "bad weights %zu accepted", i);
        CHECK_MSG(strstr(e2.message, bad[i].needle) != NULL, "message \"%s\" lacks \"%s\"", e2.message, bad[i].needle);
    }
    CHECK(cvx_dit_open(&m, &c, "/nonexistent/weights.safetensors", &err) != CVX_OK && m == NULL);

    /* call validation, cancellation, observer stop */
    CHECK(write_params(&mp, path, NULL, NULL, NULL) == 0);
    CHECK(cvx_dit_open(&m, &c, path, &err) == CVX_OK);
    if (m) {
        int64_t B = 1, F = 2, H = 4, W = 6, L = 5;
        float lat[2 * 3 * 4 * 6] = {0}, text[5 * 7] = {0}, out[2 * 3 * 4 * 6];
        int64_t ts[1] = {10};
        cvx_dit_call call = {B, F, H, W, L, lat, text, ts, NULL, NULL, out, NULL, NULL, NULL, NULL, NULL};
        CHECK(cvx_dit_forward(m, &call) == CVX_OK);
        call.W = 5;
        CHECK(cvx_dit_forward(m, &call) == CVX_ERR_SHAPE);
        CHECK(strstr(cvx_error_message(cvx_dit_error(m)), "multiple of patch") != NULL);
        call.W = 6, call.L = 4;
        CHECK(cvx_dit_forward(m, &call) == CVX_ERR_SHAPE);
        CHECK(strstr(cvx_error_message(cvx_dit_error(m)), "max_text_seq_length") != NULL);
        call.L = 5, call.latents = NULL;
        CHECK(cvx_dit_forward(m, &call) == CVX_ERR_INVALID_ARGUMENT);
        call.latents = lat;
        int polls = 1;
        call.cancel = cancel_after, call.cancel_user_data = &polls;
        CHECK(cvx_dit_forward(m, &call) == CVX_ERR_CANCELLED);
        CHECK(polls == -1); /* polled before block 0 (continue), before block 1 (stop) */
        call.cancel = NULL;
        cvx_dit_tap tap = {NULL, stop_tap, (void *)"block0.attn1"};
        call.tap = &tap;
        tap_calls = 0;
        CHECK(cvx_dit_forward(m, &call) == CVX_ERR_MISMATCH);
        CHECK(strstr(cvx_error_message(cvx_dit_error(m)), "block0.attn1") != NULL);
        CHECK(tap_calls > 3);
        call.tap = NULL;
        CHECK(cvx_dit_forward(m, &call) == CVX_OK);
        cvx_dit_free(m);
    }
    free_params(&mp);

    /* a rope model refuses a call without tables */
    j = base_config();
    json_object_set_new(j, "use_rotary_positional_embeddings", json_true());
    CHECK(cvx_dit_config_parse(&c, j, &err) == CVX_OK);
    json_decref(j);
    make_params(&mp, &c, CVX_DTYPE_F32, 6);
    CHECK(write_params(&mp, path, NULL, NULL, NULL) == 0);
    m = NULL;
    CHECK(cvx_dit_open(&m, &c, path, &err) == CVX_OK);
    if (m) {
        float lat[3 * 4 * 6] = {0}, text[3 * 7] = {0}, out[3 * 4 * 6];
        int64_t ts[1] = {10};
        cvx_dit_call call = {1, 1, 4, 6, 3, lat, text, ts, NULL, NULL, out, NULL, NULL, NULL, NULL, NULL};
        CHECK(cvx_dit_forward(m, &call) == CVX_ERR_INVALID_ARGUMENT);
        CHECK(strstr(cvx_error_message(cvx_dit_error(m)), "rope") != NULL);
        cvx_dit_free(m);
    }
    free_params(&mp);
    cvx_dit_free(NULL);
}

/* ---- rope ------------------------------------------------------------------------------------------------ */

static void test_rope(void) {
    int crop[4];
    cvx_rope_crop_region(45, 30, 45, 30, crop); /* 720 × 480 portrait: left = round(12.5) = 12 (half to even) */
    CHECK(crop[0] == 0 && crop[1] == 12 && crop[2] == 30 && crop[3] == 32);
    cvx_rope_crop_region(30, 45, 45, 30, crop);
    CHECK(crop[0] == 0 && crop[1] == 0 && crop[2] == 30 && crop[3] == 45);
    cvx_rope_crop_region(3, 5, 45, 30, crop); /* 48 × 80 px */
    CHECK(crop[0] == 2 && crop[1] == 0 && crop[2] == 29 && crop[3] == 45);
    cvx_rope_crop_region(16, 16, 45, 30, crop); /* 256 × 256 px */
    CHECK(crop[0] == 0 && crop[1] == 8 && crop[2] == 30 && crop[3] == 38);

    cvx_error err = {0};
    int gh, gw;
    int64_t rows;
    cvx_rope_params p = cvx_rope_params_default(480, 720, 13, 64);
    CHECK(cvx_rope_shape(&p, &gh, &gw, &rows, &err) == CVX_OK && gh == 30 && gw == 45 && rows == 13 * 30 * 45);
    p = cvx_rope_params_default(8, 720, 13, 64); /* less than one patch high */
    CHECK(cvx_rope_shape(&p, &gh, &gw, &rows, &err) == CVX_ERR_INVALID_ARGUMENT);
    p = cvx_rope_params_default(480, 720, 1, 20); /* 20 = 6 + 6 + 6 + 2 left over */
    CHECK(cvx_rope_shape(&p, &gh, &gw, &rows, &err) == CVX_ERR_UNSUPPORTED);
    float cs[4 * 16], sn[4 * 16];
    CHECK(cvx_rope_tables(&p, cs, sn, &err) == CVX_ERR_UNSUPPORTED);

    /* frame 0, row 0, column 0 of a 480 × 720 table: every angle is 0 */
    p = cvx_rope_params_default(480, 720, 2, 16);
    float *c2 = malloc(sizeof(float) * 2 * 30 * 45 * 16), *s2 = malloc(sizeof(float) * 2 * 30 * 45 * 16);
    CHECK(cvx_rope_tables(&p, c2, s2, &err) == CVX_OK);
    int zero_ok = 1;
    for (int d = 0; d < 16; d++) zero_ok &= c2[d] == 1.0f && s2[d] == 0.0f;
    CHECK(zero_ok);
    /* row of frame 1, h 0, w 0: temporal channels (first 4) rotate by t·θ_k, pairs equal; the rest stay 0 */
    const float *r1 = c2 + (size_t)(30 * 45) * 16, *q1 = s2 + (size_t)(30 * 45) * 16;
    CHECK(fabsf(r1[0] - cosf(1.0f)) < 1e-6f && r1[0] == r1[1] && fabsf(q1[2] - sinf(0.01f)) < 1e-6f);
    CHECK(r1[4] == 1.0f && q1[15] == 0.0f);
    free(c2), free(s2);
}

/* ---- denoising loop -------------------------------------------------------------------------------------- */

typedef struct {
    int steps;
    int stop_at_poll;
    int polls;
} loop_ctx;

static void count_step(void *user, const cvx_denoise_step *s) { ((loop_ctx *)user)->steps++; }
static int loop_cancel(void *user) {
    loop_ctx *l = user;
    return ++l->polls > l->stop_at_poll;
}

static void test_denoise(const char *golden_dir, cvx_pool *pool) {
    cvx_denoise_params p = cvx_denoise_params_default();
    p.use_dynamic_cfg = 1;
    CHECK(fabs(cvx_denoise_guidance(&p, 999) - 2.2915) < 1e-4); /* float32 would give 1.0004 */
    p.use_dynamic_cfg = 0;
    CHECK(cvx_denoise_guidance(&p, 999) == 6.0);

    /* the tiny 2b-style pipeline case: cancel mid-loop, progress per step, argument checks */
    char path[4096];
    cvx_dit *m = NULL;
    cvx_error err = {0};
    cvx_dit_config dc;
    json_error_t je;
    snprintf(path, sizeof path, "%s/pipeline/t2v_2b_style_ddim/config.json", golden_dir);
    json_t *cj = json_load_file(path, 0, &je);
    cvx_status st = cj ? cvx_dit_config_parse(&dc, cj, &err) : CVX_ERR_IO;
    json_decref(cj);
    snprintf(path, sizeof path, "%s/pipeline/t2v_2b_style_ddim/weights.safetensors", golden_dir);
    if (st != CVX_OK || cvx_dit_open(&m, &dc, path, &err) != CVX_OK) {
        CHECK_MSG(0, "%s: %s", path, err.message);
        return;
    }
    snprintf(path, sizeof path, "%s/pipeline/t2v_2b_style_ddim/scheduler_config.json", golden_dir);
    json_t *sj = json_load_file(path, 0, &je);
    cvx_scheduler *s = NULL;
    CHECK(sj && cvx_scheduler_create(&s, sj, CVX_SCHED_AUTO, path, &err) == CVX_OK);
    json_decref(sj);
    const cvx_dit_config *c = cvx_dit_get_config(m);
    int64_t L = c->max_text_seq_length, F = 3, H = 6, W = 10, n = F * c->in_channels * H * W;
    float *pe = calloc((size_t)(L * c->text_embed_dim), sizeof(float)), *lat = malloc(sizeof(float) * (size_t)n);
    cvx_rng g;
    cvx_rng_seed(&g, 42);
    cvx_denoise_initial_latents(&g, lat, n);
    loop_ctx lc = {0, 3 * (c->num_layers + 2) + 1, 0};
    p.num_inference_steps = 10;
    p.height_px = 48, p.width_px = 80;
    p.pool = pool;
    p.progress = count_step, p.progress_user_data = &lc;
    p.cancel = loop_cancel, p.cancel_user_data = &lc;
    CHECK(cvx_denoise(m, s, &p, pe, NULL, 1, L, lat, F, H, W, &g, &err) == CVX_ERR_INVALID_ARGUMENT); /* no negative */
    st = s ? cvx_denoise(m, s, &p, pe, pe, 1, L, lat, F, H, W, &g, &err) : CVX_ERR_INTERNAL;
    CHECK_MSG(st == CVX_ERR_CANCELLED, "cancel: status %d (%s)", st, err.message);
    CHECK_MSG(lc.steps == 3, "cancel: %d steps finished, expected 3", lc.steps);
    int finite = 1;
    for (int64_t i = 0; i < n; i++) finite &= isfinite(lat[i]);
    CHECK(finite);
    p.cancel = NULL;
    p.guidance_scale = 1.0; /* no CFG: batch of one, negative not needed */
    lc.steps = 0;
    st = s ? cvx_denoise(m, s, &p, pe, NULL, 1, L, lat, F, H, W, &g, &err) : CVX_ERR_INTERNAL;
    CHECK_MSG(st == CVX_OK && lc.steps == 10, "no-CFG loop: status %d, %d steps (%s)", st, lc.steps, err.message);
    free(pe), free(lat);
    cvx_scheduler_free(s);
    cvx_dit_free(m);
}

int main(void) {
    char tmp[4096];
    tmp_root = cvx_test_tmpdir(tmp, sizeof tmp);
    CHECK(tmp_root != NULL);
    if (!tmp_root) return cvx_test_finish("test_transformer");
    cvx_pool *pool = cvx_pool_new(2);

    cvx_golden_options opt = {0};
    opt.threads = 2;
    const char *paths[] = {"tests/data/golden/transformer", "tests/data/golden/rope", "tests/data/golden/pipeline"};
    CHECK_MSG(cvx_golden_run(paths, 3, &opt) == 0, "project golden cases failed");
    const char *shared = cvx_test_shared_golden();
    if (shared) {
        char a[1024], b[1024], d[1024];
        snprintf(a, sizeof a, "%s/transformer", shared);
        snprintf(b, sizeof b, "%s/rope", shared);
        snprintf(d, sizeof d, "%s/pipeline", shared);
        const char *sp[] = {a, b, d};
        CHECK_MSG(cvx_golden_run(sp, 3, &opt) == 0, "shared golden cases failed");
    }

    test_random_models(pool);
    test_validation();
    test_rope();
    test_denoise("tests/data/golden", pool);

    cvx_pool_free(pool);
    cvx_test_rmtree(tmp_root);
    return cvx_test_finish("test_transformer");
}
