/* CogVideoXTransformer3DModel forward (diffusers 0.30.3), see transformer.h for the data flow and letters.
 *
 * Layout: the hidden state is one joint buffer x [B, S, D] with each batch's L text rows first, so the
 * reference's cat([text, video]) (attention, feed-forward) costs nothing and the two streams differ only in
 * which modulation chunk a row uses. The feed-forward runs over row chunks so its 4D-wide hidden never
 * exists for the whole sequence.
 *
 * bf16 precision (cvx_dit_set_precision): every weight matrix gets a packed bf16 copy (cvx_pack_bf16) that
 * the products use instead of the mapping, whose pages are then dropped from the process; the attention's
 * q·kᵀ and p·v go through cvx_attention_bf16. Norms, modulation, rope, gates, residual stream and the
 * time/position tables stay f32. */
#include "diffusion/transformer.h"

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/log.h"
#include "io/config.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

#define DIT_MAX_DIM (1 << 20)
#define DIT_FF_ROWS 4032 /* feed-forward rows per chunk: 28 GEMM row blocks of 144 (even across 2 threads); the [rows, 4D] hidden is 124 MB at the 2b */

/* A linear layer: the stored weight [out, in] (mmap'd, any float dtype), its bf16 packed copy (NULL in fp32) and
 * the bias (f32, or NULL). */
typedef struct {
    cvx_tensor w;
    cvx_packed *p;
    float *b;
} dit_linear;

typedef struct {
    dit_linear norm1_lin;             /* [6D, E] */
    float *norm1_w, *norm1_b;         /* [D] (NULL without elementwise affine) */
    float *nq_w, *nq_b, *nk_w, *nk_b; /* [Dh] per-head q/k LayerNorm (always affine) */
    dit_linear q, k, v, o;            /* [D, D] (q/k/v biases NULL without attention_bias) */
    dit_linear norm2_lin;             /* [6D, E] */
    float *norm2_w, *norm2_b;         /* [D] */
    dit_linear ff1;                   /* [4D, D] */
    dit_linear ff2;                   /* [D, 4D] */
} dit_block;

struct cvx_dit {
    cvx_dit_config cfg;
    cvx_weights *weights;
    dit_linear patch;          /* [D, C_in·p·p] view of the conv weight [D, C_in, p, p]; bias NULL (patch_bias false) */
    dit_linear text;           /* [D, Dt] */
    dit_linear t1, t2;         /* [E, D], [E, E] */
    float *nf_w, *nf_b;        /* norm_final [D] */
    dit_linear out_lin;        /* norm_out.linear [2D, E] */
    float *out_norm_w, *out_norm_b; /* [D] */
    float *pos_learned;        /* 5b-I2V: patch_embed.pos_embedding [L_max + N_sample, D] (f32 copy), else NULL */
    dit_linear proj;           /* [C_out·p·p, D] */
    cvx_precision precision;
    dit_block *blocks;
    float **vecs;              /* f32 copies of small vectors and aligned copies of misaligned matrices */
    size_t n_vecs, cap_vecs;
    int64_t n_expected;        /* tensors the config implies (a checkpoint with more is refused) */
    char **expected;
    cvx_arena arena;
    cvx_dit_timings timings;   /* of the last forward */
    cvx_dit_teacache *teacache; /* attached step-skipping state, or NULL */
    cvx_error err;
};

/* ---- config -------------------------------------------------------------------------------------------- */

cvx_status cvx_dit_config_parse(cvx_dit_config *cfg, const json_t *j, cvx_error *err) {
    memset(cfg, 0, sizeof *cfg);
    if (!json_is_object(j)) return cvx_fail(err, CVX_ERR_FORMAT, "transformer config: not a JSON object");
    /* the class defaults and range checks live in one place (io/config.c); this adds what the engine needs */
    cvx_config *c = NULL;
    cvx_transformer_config t;
    int patch_bias = 1;
    cvx_status st = cvx_config_from_json(&c, (json_t *)j, "transformer config", err);
    if (st == CVX_OK) st = cvx_transformer_config_read(c, &t, err);
    if (st == CVX_OK) st = cvx_config_bool(c, "patch_bias", 1, &patch_bias, err);
    /* CogVideoX 1.5 options (not in diffusers 0.30.3) are not implemented */
    const char *later[] = {"patch_size_t", "ofs_embed_dim"};
    for (size_t i = 0; st == CVX_OK && i < sizeof later / sizeof later[0]; i++)
        if (cvx_config_has(c, later[i]))
            st = cvx_fail(err, CVX_ERR_UNSUPPORTED, "transformer config: \"%s\" (CogVideoX 1.5) is not supported",
                          later[i]);
    cvx_config_free(c);
    if (st != CVX_OK) return st;
    if (strcmp(t.timestep_activation_fn, "silu") != 0 && strcmp(t.timestep_activation_fn, "swish") != 0)
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "transformer config: timestep_activation_fn \"%s\" is not supported",
                        t.timestep_activation_fn);
    if (!(t.spatial_interpolation_scale > 0) || !(t.temporal_interpolation_scale > 0))
        return cvx_fail(err, CVX_ERR_FORMAT, "transformer config: interpolation scales must be positive");
    cfg->num_attention_heads = (int)t.num_attention_heads;
    cfg->attention_head_dim = (int)t.attention_head_dim;
    cfg->in_channels = (int)t.in_channels;
    cfg->out_channels = (int)t.out_channels;
    cfg->flip_sin_to_cos = t.flip_sin_to_cos;
    cfg->freq_shift = (double)t.freq_shift;
    cfg->time_embed_dim = (int)t.time_embed_dim;
    cfg->text_embed_dim = (int)t.text_embed_dim;
    cfg->num_layers = (int)t.num_layers;
    cfg->attention_bias = t.attention_bias;
    cfg->sample_width = (int)t.sample_width;
    cfg->sample_height = (int)t.sample_height;
    cfg->sample_frames = (int)t.sample_frames;
    cfg->patch_size = (int)t.patch_size;
    cfg->temporal_compression_ratio = (int)t.temporal_compression_ratio;
    cfg->max_text_seq_length = (int)t.max_text_seq_length;
    cfg->activation = strcmp(t.activation_fn, "gelu") == 0 ? CVX_DIT_GELU_ERF : CVX_DIT_GELU_TANH;
    cfg->norm_elementwise_affine = t.norm_elementwise_affine;
    cfg->norm_eps = t.norm_eps;
    cfg->spatial_interpolation_scale = t.spatial_interpolation_scale;
    cfg->temporal_interpolation_scale = t.temporal_interpolation_scale;
    cfg->use_rotary_positional_embeddings = t.use_rotary_positional_embeddings;
    cfg->use_learned_positional_embeddings = t.use_learned_positional_embeddings;
    cfg->patch_bias = patch_bias;
    cfg->inner_dim = (int)t.inner_dim;
    /* get_3d_sincos_pos_embed splits D into D/4 temporal + 2 × 3D/8 spatial, each an even sin|cos width. */
    if (!cfg->use_rotary_positional_embeddings && cfg->inner_dim % 16 != 0)
        return cvx_fail(err, CVX_ERR_FORMAT,
                        "transformer config: sincos positions need heads x head_dim = %d divisible by 16",
                        cfg->inner_dim);
    return CVX_OK;
}

/* ---- weights ------------------------------------------------------------------------------------------- */

static cvx_status expect_name(cvx_dit *m, const char *name) {
    if (m->n_expected % 64 == 0) {
        char **p = realloc(m->expected, sizeof(char *) * (size_t)(m->n_expected + 64));
        if (!p) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        m->expected = p;
    }
    m->expected[m->n_expected] = strdup(name);
    if (!m->expected[m->n_expected]) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    m->n_expected++;
    return CVX_OK;
}

static cvx_status keep_buffer(cvx_dit *m, float *v) {
    if (m->n_vecs == m->cap_vecs) {
        size_t cap = m->cap_vecs ? 2 * m->cap_vecs : 64;
        float **p = realloc(m->vecs, sizeof(float *) * cap);
        if (!p) {
            free(v);
            return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        }
        m->vecs = p;
        m->cap_vecs = cap;
    }
    m->vecs[m->n_vecs++] = v;
    return CVX_OK;
}

/* A matrix stays a view into the mapping; the kernels read F32/F16/BF16 only. A tensor a crafted file stores
 * misaligned for its dtype (never in files save_pretrained writes) gets an aligned private copy. */
static cvx_status get_mat(cvx_dit *m, const char *name, int ndim, const int64_t *shape, cvx_tensor *out) {
    cvx_status st = cvx_weights_get(m->weights, name, ndim, shape, out, &m->err);
    if (st != CVX_OK) return st;
    if (out->dtype != CVX_DTYPE_F32 && out->dtype != CVX_DTYPE_F16 && out->dtype != CVX_DTYPE_BF16)
        return cvx_fail(&m->err, CVX_ERR_SHAPE, "tensor \"%s\" has dtype %s; weights must be F32, F16 or BF16", name,
                        cvx_dtype_name(out->dtype));
    if ((uintptr_t)out->data % cvx_dtype_size(out->dtype) != 0) {
        size_t bytes = cvx_tensor_nbytes(out);
        float *copy = malloc(bytes + 4);
        if (!copy) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for an aligned copy of \"%s\"", name);
        memcpy(copy, out->data, bytes);
        if ((st = keep_buffer(m, copy)) != CVX_OK) return st;
        out->data = copy;
    }
    return expect_name(m, name);
}

static cvx_status get_mat2(cvx_dit *m, const char *name, int64_t rows, int64_t cols, cvx_tensor *out) {
    int64_t shape[2] = {rows, cols};
    return get_mat(m, name, 2, shape, out);
}

/* Small tensors are copied to f32 (norm weights and biases, the learned position table feed f32 loops). */
static cvx_status get_vec_shaped(cvx_dit *m, const char *name, int ndim, const int64_t *shape, float **out) {
    cvx_tensor t;
    cvx_status st = cvx_weights_get(m->weights, name, ndim, shape, &t, &m->err);
    if (st != CVX_OK) return st;
    int64_t n = 1;
    for (int d = 0; d < ndim; d++) n *= shape[d];
    float *v = malloc(sizeof(float) * (size_t)n);
    if (!v) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for \"%s\"", name);
    if ((st = keep_buffer(m, v)) != CVX_OK) return st;
    if (cvx_tensor_to_f32(&t, v) != 0)
        return cvx_fail(&m->err, CVX_ERR_SHAPE, "tensor \"%s\": dtype %s is not a float type", name,
                        cvx_dtype_name(t.dtype));
    *out = v;
    return expect_name(m, name);
}

static cvx_status get_vec(cvx_dit *m, const char *name, int64_t n, float **out) {
    return get_vec_shaped(m, name, 1, &n, out);
}

/* "<prefix>.weight" [n] and "<prefix>.bias" [n] of a LayerNorm, when it has them. */
static cvx_status get_norm(cvx_dit *m, const char *prefix, int affine, int64_t n, float **w, float **b) {
    char name[256];
    *w = *b = NULL;
    if (!affine) return CVX_OK;
    snprintf(name, sizeof name, "%s.weight", prefix);
    cvx_status st = get_vec(m, name, n, w);
    if (st != CVX_OK) return st;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return get_vec(m, name, n, b);
}

static cvx_status get_linear(cvx_dit *m, const char *prefix, int64_t out_f, int64_t in_f, int bias, dit_linear *l) {
    char name[256];
    snprintf(name, sizeof name, "%s.weight", prefix);
    l->p = NULL;
    l->b = NULL;
    cvx_status st = get_mat2(m, name, out_f, in_f, &l->w);
    if (st != CVX_OK || !bias) return st;
    snprintf(name, sizeof name, "%s.bias", prefix);
    return get_vec(m, name, out_f, &l->b);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static cvx_status bind_weights(cvx_dit *m) {
    const cvx_dit_config *c = &m->cfg;
    int64_t D = c->inner_dim, E = c->time_embed_dim, Dh = c->attention_head_dim, p = c->patch_size;
    int aff = c->norm_elementwise_affine;
    cvx_status st;
#define TRY(x)                     \
    if ((st = (x)) != CVX_OK) return st
    if (c->use_learned_positional_embeddings) {
        /* the persistent buffer [1, L_max + N_sample, D], N_sample from the config's sample size */
        int64_t rows = c->max_text_seq_length + (int64_t)(c->sample_height / p) * (c->sample_width / p) *
                                                    ((c->sample_frames - 1) / c->temporal_compression_ratio + 1);
        TRY(get_vec_shaped(m, "patch_embed.pos_embedding", 3, (int64_t[3]){1, rows, D}, &m->pos_learned));
    }
    int64_t conv_shape[4] = {D, c->in_channels, p, p};
    TRY(get_mat(m, "patch_embed.proj.weight", 4, conv_shape, &m->patch.w));
    m->patch.w.ndim = 2;
    m->patch.w.shape[1] = c->in_channels * p * p;
    m->patch.w.shape[2] = m->patch.w.shape[3] = 1;
    m->patch.b = NULL;
    if (c->patch_bias) TRY(get_vec(m, "patch_embed.proj.bias", D, &m->patch.b));
    TRY(get_linear(m, "patch_embed.text_proj", D, c->text_embed_dim, 1, &m->text));
    TRY(get_linear(m, "time_embedding.linear_1", E, D, 1, &m->t1));
    TRY(get_linear(m, "time_embedding.linear_2", E, E, 1, &m->t2));
    m->blocks = calloc((size_t)c->num_layers + 1, sizeof(dit_block));
    if (!m->blocks) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    char pre[128], name[192];
    for (int i = 0; i < c->num_layers; i++) {
        dit_block *b = &m->blocks[i];
        snprintf(pre, sizeof pre, "transformer_blocks.%d", i);
#define NAME(fmt) (snprintf(name, sizeof name, "%s." fmt, pre), name)
        TRY(get_linear(m, NAME("norm1.linear"), 6 * D, E, 1, &b->norm1_lin));
        TRY(get_norm(m, NAME("norm1.norm"), aff, D, &b->norm1_w, &b->norm1_b));
        TRY(get_norm(m, NAME("attn1.norm_q"), 1, Dh, &b->nq_w, &b->nq_b));
        TRY(get_norm(m, NAME("attn1.norm_k"), 1, Dh, &b->nk_w, &b->nk_b));
        TRY(get_linear(m, NAME("attn1.to_q"), D, D, c->attention_bias, &b->q));
        TRY(get_linear(m, NAME("attn1.to_k"), D, D, c->attention_bias, &b->k));
        TRY(get_linear(m, NAME("attn1.to_v"), D, D, c->attention_bias, &b->v));
        TRY(get_linear(m, NAME("attn1.to_out.0"), D, D, 1, &b->o));
        TRY(get_linear(m, NAME("norm2.linear"), 6 * D, E, 1, &b->norm2_lin));
        TRY(get_norm(m, NAME("norm2.norm"), aff, D, &b->norm2_w, &b->norm2_b));
        TRY(get_linear(m, NAME("ff.net.0.proj"), 4 * D, D, 1, &b->ff1));
        TRY(get_linear(m, NAME("ff.net.2"), D, 4 * D, 1, &b->ff2));
#undef NAME
    }
    TRY(get_norm(m, "norm_final", aff, D, &m->nf_w, &m->nf_b));
    TRY(get_linear(m, "norm_out.linear", 2 * D, E, 1, &m->out_lin));
    TRY(get_norm(m, "norm_out.norm", aff, D, &m->out_norm_w, &m->out_norm_b));
    TRY(get_linear(m, "proj_out", (int64_t)c->out_channels * p * p, D, 1, &m->proj));
#undef TRY
    /* load_state_dict(strict=True) also refuses tensors the config does not know (e.g. a deeper checkpoint). */
    if ((int64_t)cvx_weights_count(m->weights) != m->n_expected) {
        qsort(m->expected, (size_t)m->n_expected, sizeof(char *), cmp_str);
        for (size_t i = 0; i < cvx_weights_count(m->weights); i++) {
            const char *nm = cvx_weights_at(m->weights, i)->name;
            if (!bsearch(&nm, m->expected, (size_t)m->n_expected, sizeof(char *), cmp_str))
                return cvx_fail(&m->err, CVX_ERR_SHAPE,
                                "unexpected tensor \"%s\" in the transformer weights (the config implies %lld tensors, "
                                "the checkpoint has %zu)",
                                nm, (long long)m->n_expected, cvx_weights_count(m->weights));
        }
    }
    return CVX_OK;
}

/* ---- bf16 copies of the weights ---------------------------------------------------------------------------- */

typedef struct {
    const cvx_tensor *w;
    cvx_packed **p;
} mat_ref;

/* Every weight matrix with the slot of its packed copy; returns the count (refs may be NULL to count). */
static size_t list_mats(cvx_dit *m, mat_ref *refs) {
    size_t n = 0;
#define MAT(owner, field)                                                     \
    do {                                                                      \
        if (refs) refs[n] = (mat_ref){&(owner)->field.w, &(owner)->field.p};    \
        n++;                                                                  \
    } while (0)
    MAT(m, patch);
    MAT(m, text);
    MAT(m, t1);
    MAT(m, t2);
    MAT(m, out_lin);
    MAT(m, proj);
    for (int i = 0; m->blocks && i < m->cfg.num_layers; i++) {
        dit_block *b = &m->blocks[i];
        MAT(b, norm1_lin);
        MAT(b, q);
        MAT(b, k);
        MAT(b, v);
        MAT(b, o);
        MAT(b, norm2_lin);
        MAT(b, ff1);
        MAT(b, ff2);
    }
#undef MAT
    return n;
}

static void free_packs(cvx_dit *m) {
    size_t n = list_mats(m, NULL);
    mat_ref *refs = malloc(sizeof(mat_ref) * (n ? n : 1));
    if (!refs) return; /* only reachable from a failed open, before anything was packed */
    list_mats(m, refs);
    for (size_t i = 0; i < n; i++) {
        cvx_packed_free(*refs[i].p);
        *refs[i].p = NULL;
    }
    free(refs);
}

/* Drops a packed matrix's mapped pages from the process (the pages whole inside it). Never for an aligned
 * private copy (MADV_DONTNEED would zero it): those are in m->vecs. A later access refaults the same bytes. */
static void release_pages(const cvx_dit *m, const cvx_tensor *t) {
    for (size_t i = 0; i < m->n_vecs; i++)
        if ((const void *)m->vecs[i] == t->data) return;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    uintptr_t lo = ((uintptr_t)t->data + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t hi = ((uintptr_t)t->data + cvx_tensor_nbytes(t)) & ~(uintptr_t)(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

cvx_status cvx_dit_set_precision(cvx_dit *m, cvx_precision precision, cvx_pool *pool) {
    cvx_error_clear(&m->err);
    if (precision != CVX_PRECISION_FP32 && precision != CVX_PRECISION_BF16)
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "transformer: unknown precision %d", (int)precision);
    if (precision == m->precision) return CVX_OK;
    free_packs(m);
    m->precision = CVX_PRECISION_FP32;
    if (precision == CVX_PRECISION_FP32) return CVX_OK;
    size_t n = list_mats(m, NULL);
    mat_ref *refs = malloc(sizeof(mat_ref) * n);
    if (!refs) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "transformer: out of memory");
    list_mats(m, refs);
    double t0 = cvx_time_seconds();
    size_t bytes = 0;
    for (size_t i = 0; i < n; i++) {
        cvx_status st = cvx_pack_bf16(pool, refs[i].w, refs[i].p);
        if (st != CVX_OK) {
            free(refs);
            free_packs(m);
            return cvx_fail(&m->err, st, "transformer: cannot pack the weights for bf16 (%s; %zu MB packed so far)",
                            cvx_status_text(st), bytes >> 20);
        }
        bytes += cvx_packed_bytes(*refs[i].p);
        release_pages(m, refs[i].w);
    }
    free(refs);
    m->precision = CVX_PRECISION_BF16;
    cvx_log_info(NULL, "transformer: %zu weight matrices packed for bf16 (%.0f MB) in %.2f s", n,
                 (double)bytes / (1 << 20), cvx_time_seconds() - t0);
    return CVX_OK;
}

cvx_precision cvx_dit_get_precision(const cvx_dit *m) { return m->precision; }

uint64_t cvx_dit_packed_bytes(const cvx_dit *m) {
    uint64_t bytes = 0;
    size_t n = list_mats((cvx_dit *)m, NULL);
    mat_ref *refs = malloc(sizeof(mat_ref) * (n ? n : 1));
    if (!refs) return 0;
    list_mats((cvx_dit *)m, refs);
    for (size_t i = 0; i < n; i++)
        if (*refs[i].p) bytes += cvx_packed_bytes(*refs[i].p);
    free(refs);
    return bytes;
}

void cvx_dit_free(cvx_dit *m) {
    if (!m) return;
    free_packs(m);
    for (size_t i = 0; i < m->n_vecs; i++) free(m->vecs[i]);
    free(m->vecs);
    for (int64_t i = 0; i < m->n_expected; i++) free(m->expected[i]);
    free(m->expected);
    free(m->blocks);
    cvx_weights_close(m->weights);
    cvx_arena_free(&m->arena);
    free(m);
}

cvx_status cvx_dit_open(cvx_dit **out, const cvx_dit_config *cfg, const char *weights_path, cvx_error *err) {
    *out = NULL;
    cvx_dit *m = calloc(1, sizeof *m);
    if (!m) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    m->cfg = *cfg;
    cvx_status st = cvx_weights_open(&m->weights, weights_path, &m->err);
    if (st == CVX_OK) st = bind_weights(m);
    if (st != CVX_OK) {
        cvx_error_copy(err, &m->err);
        cvx_error_prefix(err, "transformer: ");
        cvx_dit_free(m);
        return st;
    }
    *out = m;
    return CVX_OK;
}

cvx_status cvx_dit_open_dir(cvx_dit **out, const char *dir, cvx_error *err) {
    *out = NULL;
    char path[4096];
    snprintf(path, sizeof path, "%s/config.json", dir);
    json_error_t jerr;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES, &jerr);
    if (!j) return cvx_fail(err, CVX_ERR_FORMAT, "%s: %s (line %d)", path, jerr.text, jerr.line);
    cvx_dit_config cfg;
    cvx_status st = cvx_dit_config_parse(&cfg, j, err);
    json_decref(j);
    if (st != CVX_OK) return cvx_error_prefix(err, "%s: ", path);
    return cvx_dit_open(out, &cfg, dir, err);
}

const cvx_dit_config *cvx_dit_get_config(const cvx_dit *m) { return &m->cfg; }
const cvx_error *cvx_dit_error(const cvx_dit *m) { return &m->err; }
const cvx_dit_timings *cvx_dit_last_timings(const cvx_dit *m) { return &m->timings; }

/* ---- position and time tables -------------------------------------------------------------------------- */

void cvx_dit_timestep_proj(const int64_t *t, int64_t n, int dim, int flip_sin_to_cos, double freq_shift, float *out) {
    int half = dim / 2;
    /* torch: float32 arange × (float)(−ln 10000), / (half − shift), exp, × (float)t, then sin/cos — each a
     * float32 rounding; the transcendental functions are evaluated in double and rounded once. */
    const float neg_log = (float)-log(10000.0);
    const float denom = (float)((double)half - freq_shift);
    for (int64_t b = 0; b < n; b++) {
        float tf = (float)t[b];
        float *o = out + b * dim;
        for (int k = 0; k < half; k++) {
            float e = (neg_log * (float)k) / denom;
            float f = (float)exp((double)e);
            float a = tf * f;
            float s = (float)sin((double)a), c = (float)cos((double)a);
            o[k] = flip_sin_to_cos ? c : s;
            o[half + k] = flip_sin_to_cos ? s : c;
        }
        if (dim % 2) o[dim - 1] = 0.0f;
    }
}

/* get_1d_sincos_pos_embed_from_grid for positions 0..n-1 (pos = fl32(i / scale)): out [n, d] rows
 * [sin(pos·ω_k) | cos(pos·ω_k)], ω_k = 10000^(−k/(d/2)) in float64, stored as float32. */
static void sincos_axis(int d, int64_t n, float scale, float *out) {
    int h = d / 2;
    for (int64_t i = 0; i < n; i++) {
        double pos = (double)((float)i / scale); /* numpy: float32 arange / python float → float32 */
        for (int k = 0; k < h; k++) {
            double a = pos * (1.0 / pow(10000.0, (double)k / ((double)d / 2.0)));
            out[i * d + k] = (float)sin(a);
            out[i * d + h + k] = (float)cos(a);
        }
    }
}

cvx_status cvx_dit_sincos_table(int D, int64_t F, int64_t Hp, int64_t Wp, double spatial_scale, double temporal_scale,
                                float *out) {
    int dt = D / 4, dh = 3 * D / 4 / 2;
    float *tt = malloc(sizeof(float) * (size_t)(F * dt)), *tx = malloc(sizeof(float) * (size_t)(Wp * dh));
    float *ty = malloc(sizeof(float) * (size_t)(Hp * dh));
    if (!tt || !tx || !ty) {
        free(tt), free(tx), free(ty);
        return CVX_ERR_OUT_OF_MEMORY;
    }
    sincos_axis(dt, F, (float)temporal_scale, tt);
    sincos_axis(dh, Wp, (float)spatial_scale, tx);
    sincos_axis(dh, Hp, (float)spatial_scale, ty);
    for (int64_t f = 0; f < F; f++)
        for (int64_t y = 0; y < Hp; y++)
            for (int64_t x = 0; x < Wp; x++) {
                float *row = out + ((f * Hp + y) * Wp + x) * D;
                /* [temporal | spatial]; meshgrid(w, h): the first spatial half encodes the column (x) */
                memcpy(row, tt + f * dt, sizeof(float) * (size_t)dt);
                memcpy(row + dt, tx + x * dh, sizeof(float) * (size_t)dh);
                memcpy(row + dt + dh, ty + y * dh, sizeof(float) * (size_t)dh);
            }
    free(tt), free(tx), free(ty);
    return CVX_OK;
}

double cvx_dit_flops(const cvx_dit_config *c, int64_t B, int64_t F, int64_t H, int64_t W, int64_t L) {
    double p = c->patch_size, D = c->inner_dim, E = c->time_embed_dim;
    double N = (double)F * (double)(H / c->patch_size) * (double)(W / c->patch_size), S = (double)L + N;
    double f = 2.0 * B * (D * E + E * E);                       /* time embedding */
    f += 2.0 * B * N * c->in_channels * p * p * D;                /* patch conv */
    f += 2.0 * B * L * c->text_embed_dim * D;                     /* text projection */
    double blk = 2.0 * 2.0 * B * E * 6.0 * D                      /* the two LayerNormZero linears */
                 + 4.0 * 2.0 * B * S * D * D                      /* q, k, v, out */
                 + 2.0 * 2.0 * B * S * S * D                      /* q·kᵀ and p·v over all heads */
                 + 2.0 * 2.0 * B * S * D * 4.0 * D;               /* feed-forward */
    f += blk * c->num_layers;
    f += 2.0 * B * E * 2.0 * D + 2.0 * B * N * D * c->out_channels * p * p;
    return f;
}

/* ---- forward ------------------------------------------------------------------------------------------- */

/* One forward: the call, its geometry and the activation buffers (the model's arena), shared by the parts below. */
typedef struct {
    cvx_dit *m;
    const cvx_dit_call *call;
    cvx_pool *pool;
    int64_t B, F, H, W, L, p, Hp, Wp, N, S, D, E, Hd, Dh, Cin, Cout, K, Cpp, FFD, ff_rows;
    /* sequence parallel (call->seq of degree dg): this rank's joint tokens [s0, s0 + Sl) of each batch item, rank
     * j's cnt[j] from off[j]; Dl = D/dg channels = Hl heads per rank around the attention. dg = 1: all of them. */
    int dg;
    int64_t Sl, s0, Dl, Hl;
    int64_t cnt[DIT_MAX_SEQ_RANKS], off[DIT_MAX_SEQ_RANKS];
    float *tproj, *emb, *semb, *mod;  /* [B, D], [B, E], [B, E] silu(emb), [B, 6D] */
    float *x, *n, *q, *k, *v, *o;     /* [B, Sl, D]: hidden (text rows first), normed, q, k, v, attention/ff out */
    float *col, *hid, *proj;          /* [B, N, C_in·p·p] patches, [ff_rows, 4D], [B, N, C_out·p·p] */
    float *qa, *ka, *va, *oa, *xch;   /* [B, S, Dl] by heads and the exchange buffer (dg > 1; else q, k, v, o) */
    int compute;                      /* TeaCache's should_calc (1 without a cache) */
} fwd;

static int tap_wants(const fwd *f, const char *name) {
    const cvx_dit_tap *tap = f->call->tap;
    return tap && tap->fn && (!tap->wants || tap->wants(tap->user_data, name));
}

static cvx_status tap_emit(fwd *f, const char *name, const float *data, int ndim, const int64_t *shape) {
    if (!tap_wants(f, name)) return CVX_OK;
    cvx_tensor t = cvx_tensor_view(CVX_DTYPE_F32, (void *)data, ndim, shape);
    cvx_status st = f->call->tap->fn(f->call->tap->user_data, name, &t);
    if (st != CVX_OK && f->m->err.status == CVX_OK)
        cvx_fail(&f->m->err, st, "transformer: the observer stopped the forward at \"%s\"", name);
    return st;
}

/* Emits rows [off, off+cnt) of each batch of a [B, S, D] buffer as a [B, cnt, D] tensor. */
static cvx_status tap_rows(fwd *f, const char *name, const float *x, int64_t B, int64_t S, int64_t off, int64_t cnt,
                           int64_t D) {
    if (!tap_wants(f, name)) return CVX_OK;
    float *tmp = malloc(sizeof(float) * (size_t)(B * cnt * D) + 1);
    if (!tmp) return cvx_fail(&f->m->err, CVX_ERR_OUT_OF_MEMORY, "out of memory for observer tensor %s", name);
    for (int64_t b = 0; b < B; b++) memcpy(tmp + b * cnt * D, x + (b * S + off) * D, sizeof(float) * (size_t)(cnt * D));
    int64_t shape[3] = {B, cnt, D};
    cvx_status st = tap_emit(f, name, tmp, 3, shape);
    free(tmp);
    return st;
}

/* Row-parallel elementwise passes over the joint [B, S, D] buffer — or, in a sequence-parallel forward, over this
 * rank's S rows of each batch item, which start at joint token s0 (the text/video test uses the joint index). */
typedef struct {
    float *y;          /* [B·S, D] rows updated in place */
    const float *src;  /* residual source rows (gate pass) */
    const float *mod;  /* [B, 6D] modulation of the block, or [B, 2D] for norm_out */
    int64_t S, s0, L, D, mod_stride;
    int shift_v, scale_v, shift_t, scale_t, gate_v, gate_t; /* chunk indices into a mod row */
} rows_ctx;

/* LayerNormZero / AdaLayerNorm: y = LayerNorm(x)·(1 + scale) + shift per row of rc (text rows with the enc_
 * chunks), each row modulated right after its norm while it is in cache (x may be rc->y). */
typedef struct {
    const rows_ctx *rc;
    const cvx_kernel_table *kt;
    const float *x, *w, *b;
    float eps;
} norm_mod_ctx;

static void norm_modulate_task(void *arg, int64_t begin, int64_t end, int ti) {
    const norm_mod_ctx *nc = arg;
    const rows_ctx *c = nc->rc;
    const int64_t D = c->D;
    for (int64_t r = begin; r < end; r++) {
        float *y = c->y + r * D;
        nc->kt->norm_row(y, nc->x + r * D, D, nc->w, nc->b, nc->eps, 0);
        int64_t b = r / c->S, s = c->s0 + r % c->S;
        int text = s < c->L;
        const float *mrow = c->mod + b * c->mod_stride;
        const float *shift = mrow + (text ? c->shift_t : c->shift_v) * D;
        const float *scale = mrow + (text ? c->scale_t : c->scale_v) * D;
        for (int64_t d = 0; d < D; d++) y[d] = y[d] * (1.0f + scale[d]) + shift[d];
    }
}

/* Gated residual: y += gate · src, text rows with enc_gate. */
static void gate_task(void *arg, int64_t begin, int64_t end, int ti) {
    const rows_ctx *c = arg;
    for (int64_t r = begin; r < end; r++) {
        int64_t b = r / c->S, s = c->s0 + r % c->S;
        const float *gate = c->mod + b * c->mod_stride + (s < c->L ? c->gate_t : c->gate_v) * c->D;
        float *y = c->y + r * c->D;
        const float *x = c->src + r * c->D;
        for (int64_t d = 0; d < c->D; d++) y[d] = y[d] + gate[d] * x[d];
    }
}

/* bf16 path: the gated residual y += gate·(x·Wᵀ + b) for joint rows [r0, r0 + rows) in the GEMM's epilogue,
 * while each output block is in cache (no [rows, D] product buffer, no separate pass). x holds those rows
 * from its own row 0 ([rows, K]); y is the [B·S, D] residual stream. The rows are split where the gate changes
 * (text/video, batch item): each run has one gate row. */
static cvx_status gated_linear_bf16(cvx_dit *m, cvx_pool *pool, const rows_ctx *rc, float *y, const float *x,
                                    int64_t r0, int64_t rows, int64_t K, const cvx_packed *p, const float *bias) {
    const int64_t S = rc->S, L = rc->L, D = rc->D;
    for (int64_t r = r0; r < r0 + rows;) {
        int64_t b = r / S, s = rc->s0 + r % S, end = b * S + (s < L ? L - rc->s0 : S);
        if (end > r0 + rows) end = r0 + rows;
        const float *gate = rc->mod + b * rc->mod_stride + (s < L ? rc->gate_t : rc->gate_v) * D;
        cvx_epilogue e = {CVX_ACT_NONE, gate, end - r, D, y + r * D, D};
        cvx_status st = cvx_linear_bf16_ex(pool, y + r * D, D, x + (r - r0) * K, K, end - r, K, p, bias, &e);
        if (st != CVX_OK) return cvx_fail(&m->err, st, "transformer: fused gated linear refused its arguments");
        r = end;
    }
    return CVX_OK;
}

typedef struct {
    float *q, *k;             /* [B, S, D]: S rows per batch item from joint token s0 */
    const float *cos, *sin;   /* [N, Dh] */
    int64_t S, s0, L, H, Dh;
} rope_ctx;

/* apply_rotary_emb on the video rows: pairs (x0, x1) → (x0·cos − x1·sin, x1·cos + x0·sin). */
static void rope_task(void *arg, int64_t begin, int64_t end, int ti) {
    const rope_ctx *c = arg;
    for (int64_t r = begin; r < end; r++) {
        int64_t n = c->s0 + r % c->S - c->L; /* video token */
        if (n < 0) continue;
        const float *cs = c->cos + n * c->Dh, *sn = c->sin + n * c->Dh;
        for (int which = 0; which < 2; which++) {
            float *row = (which ? c->k : c->q) + r * c->H * c->Dh;
            for (int64_t h = 0; h < c->H; h++) {
                float *x = row + h * c->Dh;
                for (int64_t d = 0; d + 1 < c->Dh; d += 2) {
                    float x0 = x[d], x1 = x[d + 1];
                    x[d] = x0 * cs[d] - x1 * sn[d];
                    x[d + 1] = x1 * cs[d + 1] + x0 * sn[d + 1];
                }
            }
        }
    }
}

static void gelu_erf_task(void *arg, int64_t begin, int64_t end, int ti) {
    float *x = arg;
    for (int64_t i = begin; i < end; i++) x[i] = (float)(0.5 * x[i] * (1.0 + erf(x[i] * 0.7071067811865476)));
}

/* y = x·Wᵀ + b through the packed bf16 copy when there is one, else the reference f32 product. */
static void lin(cvx_pool *pool, float *y, const float *x, int64_t M, int64_t K, const dit_linear *l) {
    if (l->p) cvx_linear_bf16(pool, y, x, M, K, l->p, l->b);
    else cvx_linear(pool, y, x, M, K, &l->w, l->b);
}

/* ---- TeaCache ------------------------------------------------------------------------------------------ */

void cvx_teacache_published_coefficients(int rotary, double out[5]) {
    /* cogvideox.py: "CogVideoX-2B" when not use_rotary_positional_embeddings, else "CogVideoX-5B" */
    static const double c2b[5] = {-3.10658903e+01, 2.54732368e+01, -5.92380459e+00, 1.75769064e+00, -3.61568434e-03};
    static const double c5b[5] = {-1.53880483e+03, 8.43202495e+02, -1.34363087e+02, 7.97131516e+00, -5.23162339e-02};
    memcpy(out, rotary ? c5b : c2b, sizeof c2b);
}

cvx_status cvx_dit_teacache_init(cvx_dit_teacache *tc, const cvx_dit_config *cfg, int64_t B, int64_t S,
                                 double threshold, const double coefficients[5], cvx_error *err) {
    memset(tc, 0, sizeof *tc);
    if (B <= 0 || S <= 0 || (double)B * (double)S * cfg->inner_dim * 4.0 > 1e12)
        return cvx_fail(err, CVX_ERR_SHAPE, "teacache: invalid sizes B=%lld S=%lld", (long long)B, (long long)S);
    tc->threshold = threshold;
    memcpy(tc->coefficients, coefficients, sizeof tc->coefficients);
    tc->B = B;
    tc->S = S;
    tc->D = cfg->inner_dim;
    tc->E = cfg->time_embed_dim;
    tc->rel_l1 = NAN;
    tc->emb_prev = calloc((size_t)(B * tc->E), sizeof(float));
    tc->residual = calloc((size_t)(B * S * tc->D), sizeof(float));
    if (!tc->emb_prev || !tc->residual) {
        cvx_dit_teacache_release(tc);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "teacache: out of memory for the %lld MB residual cache",
                        (long long)((B * S * cfg->inner_dim * 4) >> 20));
    }
    return CVX_OK;
}

void cvx_dit_teacache_release(cvx_dit_teacache *tc) {
    if (!tc) return;
    free(tc->emb_prev);
    free(tc->residual);
    tc->emb_prev = tc->residual = NULL;
}

void cvx_dit_set_teacache(cvx_dit *m, cvx_dit_teacache *tc) { m->teacache = tc; }

/* ((emb − prev).abs().mean() / prev.abs().mean()).item(): each mean an f32 tensor (the sums in double here, then
 * rounded once), the quotient an f32 division, returned as the Python float it becomes. */
static double teacache_rel_l1(const float *emb, const float *prev, int64_t n) {
    double sd = 0, sp = 0;
    for (int64_t i = 0; i < n; i++) {
        sd += fabsf(emb[i] - prev[i]);
        sp += fabsf(prev[i]);
    }
    float md = (float)(sd / (double)n), mp = (float)(sp / (double)n);
    float rel = md / mp;
    return (double)rel;
}

/* np.poly1d(c)(x) = np.polyval: y = 0; y = y·x + c[i] for each coefficient, highest power first, float64. */
static double teacache_poly(const double c[5], double x) {
    double y = 0;
    for (int i = 0; i < 5; i++) y = y * x + c[i];
    return y;
}

/* The rule of teacache_forward for this forward: whether the blocks run. Updates acc and emb_prev. */
static cvx_status teacache_decide(cvx_dit *m, cvx_dit_teacache *tc, const float *emb, int *compute) {
    const int64_t n = tc->B * tc->E;
    tc->rel_l1 = NAN;
    if (tc->step == 0 || tc->step == tc->num_steps - 1) {
        *compute = 1;
        tc->acc = 0;
    } else {
        if (!tc->has_prev)
            return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT,
                            "teacache: step %lld has no previous time embedding (the state was not carried over)",
                            (long long)tc->step);
        tc->rel_l1 = teacache_rel_l1(emb, tc->emb_prev, n);
        tc->acc += teacache_poly(tc->coefficients, tc->rel_l1);
        if (tc->acc < tc->threshold) {
            *compute = 0;
        } else {
            *compute = 1;
            tc->acc = 0;
        }
    }
    memcpy(tc->emb_prev, emb, sizeof(float) * (size_t)n);
    tc->has_prev = 1;
    if (!*compute && !tc->has_residual)
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT,
                        "teacache: step %lld would reuse a residual, but no step has been computed", (long long)tc->step);
    return CVX_OK;
}

typedef struct {
    float *x, *r;
    int subtract; /* 0: x += r; 1: r = x − r */
} residual_ctx;

static void residual_task(void *arg, int64_t begin, int64_t end, int ti) {
    const residual_ctx *c = arg;
    if (c->subtract)
        for (int64_t i = begin; i < end; i++) c->r[i] = c->x[i] - c->r[i];
    else
        for (int64_t i = begin; i < end; i++) c->x[i] = c->x[i] + c->r[i];
}

static cvx_status check_call(cvx_dit *m, const cvx_dit_call *c) {
    const cvx_dit_config *cfg = &m->cfg;
    int64_t p = cfg->patch_size;
    if (!c->latents || !c->text || !c->timesteps || !c->out)
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "transformer: latents, text, timesteps and out are required");
    if (c->B <= 0 || c->F <= 0 || c->H <= 0 || c->W <= 0 || c->L <= 0 || c->B > 4096 || c->F > DIT_MAX_DIM ||
        c->H > DIT_MAX_DIM || c->W > DIT_MAX_DIM || c->L > DIT_MAX_DIM)
        return cvx_fail(&m->err, CVX_ERR_SHAPE, "transformer: invalid sizes B=%lld F=%lld H=%lld W=%lld L=%lld",
                        (long long)c->B, (long long)c->F, (long long)c->H, (long long)c->W, (long long)c->L);
    if (c->H % p || c->W % p)
        return cvx_fail(&m->err, CVX_ERR_SHAPE, "transformer: latent size %lldx%lld is not a multiple of patch %lld",
                        (long long)c->H, (long long)c->W, (long long)p);
    if ((!cfg->use_rotary_positional_embeddings || cfg->use_learned_positional_embeddings) &&
        c->L != cfg->max_text_seq_length)
        return cvx_fail(&m->err, CVX_ERR_SHAPE,
                        "transformer: %lld text tokens, but the position table is laid out for max_text_seq_length %d",
                        (long long)c->L, cfg->max_text_seq_length);
    /* v0.30.3 CogVideoXPatchEmbed: a learned table only at the sample size (else ValueError); another frame count
     * silently recomputes a sincos table */
    if (cfg->use_learned_positional_embeddings && (c->H != cfg->sample_height || c->W != cfg->sample_width))
        return cvx_fail(&m->err, CVX_ERR_UNSUPPORTED,
                        "transformer: this model's learned positional embedding (5b-I2V) is for %dx%d latents "
                        "(%dx%d pixels at 8x); it cannot generate %lldx%lld latents",
                        cfg->sample_height, cfg->sample_width, cfg->sample_height * 8, cfg->sample_width * 8,
                        (long long)c->H, (long long)c->W);
    if (cfg->use_learned_positional_embeddings &&
        (c->F - 1) * cfg->temporal_compression_ratio + 1 != cfg->sample_frames && cfg->inner_dim % 16 != 0)
        return cvx_fail(&m->err, CVX_ERR_SHAPE,
                        "transformer: %lld latent frames need the sincos table, which needs heads x head_dim = %d "
                        "divisible by 16", (long long)c->F, cfg->inner_dim);
    if (cfg->use_rotary_positional_embeddings && (!c->rope_cos || !c->rope_sin))
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT,
                        "transformer: this model uses rotary embeddings; rope_cos/rope_sin are required");
    const int dg = cvx_dist_size(c->seq);
    if (dg > 1) {
        if (dg > DIT_MAX_SEQ_RANKS || cfg->num_attention_heads % dg)
            return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT,
                            "transformer: %d sequence-parallel ranks do not divide the %d attention heads", dg,
                            cfg->num_attention_heads);
        if (c->tap || m->teacache)
            return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT,
                            "transformer: a sequence-parallel forward takes no observer and no TeaCache state");
        if (c->L + c->F * (c->H / p) * (c->W / p) < dg)
            return cvx_fail(&m->err, CVX_ERR_SHAPE, "transformer: fewer tokens than sequence-parallel ranks");
    }
    const cvx_dit_teacache *tc = m->teacache;
    if (tc) {
        int64_t S = c->L + c->F * (c->H / p) * (c->W / p);
        if (tc->B != c->B || tc->S != S || tc->D != cfg->inner_dim || tc->E != cfg->time_embed_dim || !tc->emb_prev ||
            !tc->residual)
            return cvx_fail(&m->err, CVX_ERR_SHAPE,
                            "transformer: the TeaCache state is for B=%lld S=%lld, this forward has B=%lld S=%lld",
                            (long long)tc->B, (long long)tc->S, (long long)c->B, (long long)S);
    }
    /* every buffer of the plan must stay far from int64/size_t overflow */
    double tokens = (double)c->B * ((double)c->L + (double)c->F * (double)(c->H / p) * (double)(c->W / p));
    double lat = (double)c->B * (double)c->F * (double)(cfg->in_channels > cfg->out_channels ? cfg->in_channels
                                                                                             : cfg->out_channels) *
                 (double)c->H * (double)c->W;
    if (tokens * cfg->inner_dim * 4.0 > 1e12 || lat * 4.0 > 1e12 ||
        (double)c->B * (double)c->L * cfg->text_embed_dim * 4.0 > 1e12)
        return cvx_fail(&m->err, CVX_ERR_SHAPE, "transformer: %.0f tokens / %.0f latent values is too many", tokens,
                        lat);
    return CVX_OK;
}

/* The all-to-all of a sequence-parallel forward (seq of degree dg; this rank holds Sl = cnt[rk] tokens of each
 * batch item from joint token off[rk]). to_heads: loc [B, Sl, D] (all heads) -> by [B, S, Dl] (every token, this
 * rank's D/dg channels = its heads). Else by -> loc. xch and by hold B·(S + dg)·Dl floats: the packed side of the
 * exchange ([rank][b][rows][Dl]) and the other. */
static cvx_status seq_exchange(cvx_dit *m, const cvx_dist *seq, float *loc, float *by, float *xch, int64_t B, int64_t S,
                               int64_t D, const int64_t *cnt, const int64_t *off, int to_heads) {
    const int dg = cvx_dist_size(seq), rk = cvx_dist_rank(seq);
    const int64_t Dl = D / dg, Sl = cnt[rk];
    int64_t mine[DIT_MAX_SEQ_RANKS], mined[DIT_MAX_SEQ_RANKS], theirs[DIT_MAX_SEQ_RANKS], theirsd[DIT_MAX_SEQ_RANKS];
    int64_t p0 = 0, p1 = 0;
    for (int j = 0; j < dg; j++) { /* bytes of this rank's rows for j; of j's rows for this rank */
        mine[j] = (int64_t)sizeof(float) * B * Sl * Dl, mined[j] = (int64_t)sizeof(float) * p0, p0 += B * Sl * Dl;
        theirs[j] = (int64_t)sizeof(float) * B * cnt[j] * Dl, theirsd[j] = (int64_t)sizeof(float) * p1, p1 += B * cnt[j] * Dl;
    }
    cvx_status st;
    if (to_heads) {
        for (int j = 0; j < dg; j++) /* to rank j: channels [j·Dl, (j+1)·Dl) of this rank's rows */
            for (int64_t r = 0; r < B * Sl; r++)
                memcpy(xch + mined[j] / 4 + r * Dl, loc + r * D + j * Dl, sizeof(float) * (size_t)Dl);
        if ((st = cvx_dist_alltoallv(seq, xch, mine, mined, by, theirs, theirsd, &m->err)) != CVX_OK) return st;
        /* by holds [j][b][cnt[j]][Dl]: to token order [b][S][Dl] through xch */
        memcpy(xch, by, sizeof(float) * (size_t)(B * S * Dl));
        for (int j = 0; j < dg; j++)
            for (int64_t b = 0; b < B; b++)
                memcpy(by + (b * S + off[j]) * Dl, xch + theirsd[j] / 4 + b * cnt[j] * Dl, sizeof(float) * (size_t)(cnt[j] * Dl));
        return CVX_OK;
    }
    for (int j = 0; j < dg; j++) /* to rank j: its tokens' rows of this rank's channels */
        for (int64_t b = 0; b < B; b++)
            memcpy(xch + theirsd[j] / 4 + b * cnt[j] * Dl, by + (b * S + off[j]) * Dl, sizeof(float) * (size_t)(cnt[j] * Dl));
    if ((st = cvx_dist_alltoallv(seq, xch, theirs, theirsd, by, mine, mined, &m->err)) != CVX_OK) return st;
    for (int j = 0; j < dg; j++) /* from rank j: its channels of this rank's rows */
        for (int64_t r = 0; r < B * Sl; r++)
            memcpy(loc + r * D + j * Dl, by + mined[j] / 4 + r * Dl, sizeof(float) * (size_t)Dl);
    return CVX_OK;
}

/* The geometry of the call and one arena of activations sized from it. */
static cvx_status fwd_plan(fwd *f) {
    cvx_dit *m = f->m;
    const cvx_dit_config *cfg = &m->cfg;
    const cvx_dit_call *call = f->call;
    f->pool = call->pool;
    f->B = call->B, f->F = call->F, f->H = call->H, f->W = call->W, f->L = call->L;
    f->p = cfg->patch_size, f->Hp = f->H / f->p, f->Wp = f->W / f->p, f->N = f->F * f->Hp * f->Wp, f->S = f->L + f->N;
    f->D = cfg->inner_dim, f->E = cfg->time_embed_dim, f->Hd = cfg->num_attention_heads, f->Dh = cfg->attention_head_dim;
    f->Cin = cfg->in_channels, f->Cout = cfg->out_channels;
    f->K = f->Cin * f->p * f->p, f->Cpp = f->Cout * f->p * f->p, f->FFD = 4 * f->D;
    const int64_t B = f->B, S = f->S, N = f->N, D = f->D, E = f->E;
    f->dg = cvx_dist_size(call->seq);
    for (int j = 0, o0 = 0; j < f->dg; j++) {
        f->cnt[j] = S / f->dg + (j < S % f->dg);
        f->off[j] = o0;
        o0 += (int)f->cnt[j];
    }
    const int rk = cvx_dist_rank(call->seq);
    f->Sl = f->cnt[rk], f->s0 = f->off[rk], f->Dl = D / f->dg, f->Hl = f->Hd / f->dg;
    f->ff_rows = B * f->Sl < DIT_FF_ROWS ? B * f->Sl : DIT_FF_ROWS;
    f->compute = 1;

    size_t joint = sizeof(float) * (size_t)(B * S * D);
    size_t hb = sizeof(float) * (size_t)(B * (S + f->dg) * f->Dl);
    size_t gathered = f->dg > 1 ? 5 * (hb + 64) : 0;
    size_t need = 6 * (joint + 64) + gathered +
                  sizeof(float) * (size_t)(B * D + 2 * B * E + B * 6 * D + B * 2 * D + B * N * f->K +
                                           f->ff_rows * f->FFD + B * N * f->Cpp) + 16 * 64;
    if (m->arena.capacity < need) {
        cvx_arena_free(&m->arena);
        if (cvx_arena_init(&m->arena, need) != 0)
            return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "transformer: cannot reserve %zu MB of activations",
                            need >> 20);
    }
    cvx_arena *a = &m->arena;
    cvx_arena_reset(a, 0);
    f->tproj = cvx_arena_alloc(a, sizeof(float) * (size_t)(B * D));
    f->emb = cvx_arena_alloc(a, sizeof(float) * (size_t)(B * E));
    f->semb = cvx_arena_alloc(a, sizeof(float) * (size_t)(B * E));
    f->mod = cvx_arena_alloc(a, sizeof(float) * (size_t)(B * 6 * D));
    f->x = cvx_arena_alloc(a, joint); /* the whole [B, S, D] while embedding; then this rank's rows */
    f->n = cvx_arena_alloc(a, joint);
    f->q = cvx_arena_alloc(a, joint);
    f->k = cvx_arena_alloc(a, joint);
    f->v = cvx_arena_alloc(a, joint);
    f->o = cvx_arena_alloc(a, joint);
    f->col = cvx_arena_alloc(a, sizeof(float) * (size_t)(B * N * f->K));
    f->hid = cvx_arena_alloc(a, sizeof(float) * (size_t)(f->ff_rows * f->FFD));
    f->proj = cvx_arena_alloc(a, sizeof(float) * (size_t)(B * N * f->Cpp));
    if (!f->tproj || !f->emb || !f->semb || !f->mod || !f->x || !f->n || !f->q || !f->k || !f->v || !f->o ||
        !f->col || !f->hid || !f->proj)
        return cvx_fail(&m->err, CVX_ERR_INTERNAL, "transformer: arena plan too small");
    f->qa = f->q, f->ka = f->k, f->va = f->v, f->oa = f->o, f->xch = NULL;
    if (f->dg > 1) {
        f->qa = cvx_arena_alloc(a, hb), f->ka = cvx_arena_alloc(a, hb), f->va = cvx_arena_alloc(a, hb);
        f->oa = cvx_arena_alloc(a, hb), f->xch = cvx_arena_alloc(a, hb);
        if (!f->qa || !f->ka || !f->va || !f->oa || !f->xch)
            return cvx_fail(&m->err, CVX_ERR_INTERNAL, "transformer: arena plan too small");
    }
    return CVX_OK;
}

/* time_proj -> time_embedding (linear_1, SiLU, linear_2) = emb [B, E]; semb = silu(emb), which every modulation
 * linear reads; TeaCache's decision for this step. */
static cvx_status fwd_time_embedding(fwd *f) {
    cvx_dit *m = f->m;
    const cvx_dit_config *cfg = &m->cfg;
    const int64_t B = f->B, D = f->D, E = f->E;
    cvx_status st;
    cvx_dit_timestep_proj(f->call->timesteps, B, (int)D, cfg->flip_sin_to_cos, cfg->freq_shift, f->tproj);
    int64_t shp[2] = {B, D};
    if ((st = tap_emit(f, "time_proj", f->tproj, 2, shp)) != CVX_OK) return st;
    lin(f->pool, f->semb, f->tproj, B, D, &m->t1);
    cvx_silu(f->pool, f->semb, B * E);
    lin(f->pool, f->emb, f->semb, B, E, &m->t2);
    shp[1] = E;
    if ((st = tap_emit(f, "time_embedding", f->emb, 2, shp)) != CVX_OK) return st;
    if (m->teacache && (st = teacache_decide(m, m->teacache, f->emb, &f->compute)) != CVX_OK) return st;
    memcpy(f->semb, f->emb, sizeof(float) * (size_t)(B * E));
    cvx_silu(f->pool, f->semb, B * E);
    return CVX_OK;
}

/* patch_embed: text_proj of the text rows, the patch conv per frame as patches × weight [D, C·p·p]ᵀ, the sincos
 * positions (2b) -> x [B, S, D] (each batch item's L text rows first); then this rank's rows [B, Sl, D]. */
static cvx_status fwd_patch_embedding(fwd *f) {
    cvx_dit *m = f->m;
    const cvx_dit_config *cfg = &m->cfg;
    const cvx_dit_call *call = f->call;
    const int64_t B = f->B, F = f->F, H = f->H, W = f->W, L = f->L, p = f->p, Hp = f->Hp, Wp = f->Wp, N = f->N,
                  S = f->S, D = f->D, K = f->K, Cin = f->Cin;
    float *x = f->x, *col = f->col;
    cvx_status st;
    for (int64_t b = 0; b < B; b++)
        lin(f->pool, x + b * S * D, call->text + b * L * cfg->text_embed_dim, L, cfg->text_embed_dim, &m->text);
    if ((st = tap_rows(f, "text_proj", x, B, S, 0, L, D)) != CVX_OK) return st;
    for (int64_t b = 0; b < B; b++)
        for (int64_t fr = 0; fr < F; fr++)
            for (int64_t y = 0; y < Hp; y++)
                for (int64_t xx = 0; xx < Wp; xx++) {
                    float *dst = col + ((b * F + fr) * Hp * Wp + y * Wp + xx) * K;
                    for (int64_t c = 0; c < Cin; c++)
                        for (int64_t dy = 0; dy < p; dy++)
                            for (int64_t dx = 0; dx < p; dx++)
                                dst[(c * p + dy) * p + dx] =
                                    call->latents[(((b * F + fr) * Cin + c) * H + y * p + dy) * W + xx * p + dx];
                }
    for (int64_t b = 0; b < B; b++) lin(f->pool, x + (b * S + L) * D, col + b * N * K, N, K, &m->patch);
    if ((st = tap_rows(f, "patch_conv", x, B, S, L, N, D)) != CVX_OK) return st;
    const int learned_fits = cfg->use_learned_positional_embeddings &&
                             (F - 1) * cfg->temporal_compression_ratio + 1 == cfg->sample_frames;
    if (learned_fits) {
        /* 5b-I2V at its sample size: the stored table added to cat([text, video]), text rows included */
        for (int64_t b = 0; b < B; b++) {
            float *xb = x + b * S * D;
            for (int64_t i = 0; i < S * D; i++) xb[i] = xb[i] + m->pos_learned[i];
        }
    } else if (!cfg->use_rotary_positional_embeddings || cfg->use_learned_positional_embeddings) {
        /* v0.30.3 recomputes the table for the runtime F/H/W (text rows zero); at the config's sample size that
         * equals the 2b's non-persistent buffer */
        float *pos = f->q;
        if (cvx_dit_sincos_table((int)D, F, Hp, Wp, cfg->spatial_interpolation_scale,
                                 cfg->temporal_interpolation_scale, pos) != CVX_OK)
            return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "transformer: out of memory for the sincos table");
        int64_t pshape[2] = {N, D};
        if ((st = tap_emit(f, "pos_embedding", pos, 2, pshape)) != CVX_OK) return st;
        for (int64_t b = 0; b < B; b++) {
            float *xv = x + (b * S + L) * D;
            for (int64_t i = 0; i < N * D; i++) xv[i] = xv[i] + pos[i];
        }
    }
    int64_t jshape[3] = {B, S, D};
    if ((st = tap_emit(f, "patch_embed", x, 3, jshape)) != CVX_OK) return st;
    if (f->dg > 1) /* this rank's rows of each batch item, packed [B, Sl, D] (moves rows down only) */
        for (int64_t b = 0; b < B; b++)
            memmove(x + b * f->Sl * D, x + (b * S + f->s0) * D, sizeof(float) * (size_t)(f->Sl * D));
    return CVX_OK;
}

/* A block's LayerNormZero `which` (1 or 2): shift, scale, gate, enc_shift, enc_scale, enc_gate =
 * linear(silu(emb)).chunk(6) into mod; n = LayerNorm(x) modulated (text rows with the enc_ chunks). */
static cvx_status fwd_norm_zero(fwd *f, int i, int which, const dit_linear *mod_lin, const float *w, const float *b,
                                rows_ctx *rc) {
    const int64_t B = f->B, D = f->D, Sl = f->Sl;
    int64_t mshape[2] = {B, 6 * D}, jshape[3] = {B, f->S, D};
    char name[64];
    cvx_status st;
    lin(f->pool, f->mod, f->semb, B, f->E, mod_lin);
    rc->y = f->n;
    rc->src = NULL;
    norm_mod_ctx nc = {rc, cvx_kernels_active(), f->x, w, b, (float)f->m->cfg.norm_eps};
    cvx_pool_parallel_for(f->pool, B * Sl, 0, norm_modulate_task, &nc);
    snprintf(name, sizeof name, "block%d.norm%d_mod", i, which);
    if ((st = tap_emit(f, name, f->mod, 2, mshape)) != CVX_OK) return st;
    snprintf(name, sizeof name, "block%d.norm%d", i, which);
    return tap_emit(f, name, f->n, 3, jshape);
}

/* A block's first half: norm1 (LayerNormZero), the joint attention (q/k/v, per-head q/k LayerNorm, RoPE on the video rows, with
 * the all-to-alls of a sequence-parallel forward around it), to_out and the gated residual into x. */
static cvx_status fwd_block_attention(fwd *f, int i, rows_ctx *rc) {
    cvx_dit *m = f->m;
    const cvx_dit_config *cfg = &m->cfg;
    const cvx_dit_call *call = f->call;
    const dit_block *blk = &m->blocks[i];
    cvx_pool *pool = f->pool;
    const int64_t B = f->B, S = f->S, D = f->D, Sl = f->Sl, Hd = f->Hd, Dh = f->Dh, Dl = f->Dl;
    float *x = f->x, *n = f->n, *q = f->q, *k = f->k, *v = f->v, *o = f->o;
    const float scale = (float)(1.0 / sqrt((double)Dh));
    int64_t jshape[3] = {B, S, D};
    char name[64];
    cvx_status st;
    if ((st = fwd_norm_zero(f, i, 1, &blk->norm1_lin, blk->norm1_w, blk->norm1_b, rc)) != CVX_OK) return st;

    double t_a = cvx_time_seconds();
    lin(pool, q, n, B * Sl, D, &blk->q);
    lin(pool, k, n, B * Sl, D, &blk->k);
    lin(pool, v, n, B * Sl, D, &blk->v);
    cvx_layernorm(pool, q, q, B * Sl * Hd, Dh, blk->nq_w, blk->nq_b, 1e-6f);
    cvx_layernorm(pool, k, k, B * Sl * Hd, Dh, blk->nk_w, blk->nk_b, 1e-6f);
    if (cfg->use_rotary_positional_embeddings) {
        rope_ctx r = {q, k, call->rope_cos, call->rope_sin, Sl, f->s0, f->L, Hd, Dh};
        cvx_pool_parallel_for(pool, B * Sl, 0, rope_task, &r);
    }
    double t_b = cvx_time_seconds();
    if (f->dg > 1) { /* tokens -> heads: rank j gets heads [j·Hl, (j+1)·Hl) of this rank's rows */
        if ((st = seq_exchange(m, call->seq, q, f->qa, f->xch, B, S, D, f->cnt, f->off, 1)) != CVX_OK ||
            (st = seq_exchange(m, call->seq, k, f->ka, f->xch, B, S, D, f->cnt, f->off, 1)) != CVX_OK ||
            (st = seq_exchange(m, call->seq, v, f->va, f->xch, B, S, D, f->cnt, f->off, 1)) != CVX_OK)
            return st;
    }
    double t_x = cvx_time_seconds();
    if (m->precision == CVX_PRECISION_BF16)
        cvx_attention_bf16(pool, f->oa, Dl, f->qa, Dl, f->ka, Dl, f->va, Dl, B, f->Hl, S, S, Dh, scale, NULL);
    else
        cvx_attention(pool, f->oa, Dl, f->qa, Dl, f->ka, Dl, f->va, Dl, B, f->Hl, S, S, Dh, scale, NULL);
    double t_y = cvx_time_seconds();
    if (f->dg > 1 && (st = seq_exchange(m, call->seq, o, f->oa, f->xch, B, S, D, f->cnt, f->off, 0)) != CVX_OK)
        return st;
    double t_c = cvx_time_seconds();
    m->timings.communication += (t_x - t_b) + (t_c - t_y);
    snprintf(name, sizeof name, "block%d.attn1", i);
    /* bf16 without an observer of the projection itself: x += gate·(o·Woᵀ + b) in the GEMM's epilogue. */
    int fuse = blk->o.p && !tap_wants(f, name);
    if (fuse) {
        if ((st = gated_linear_bf16(m, pool, rc, x, o, 0, B * Sl, D, blk->o.p, blk->o.b)) != CVX_OK) return st;
    } else {
        lin(pool, q, o, B * Sl, D, &blk->o);
    }
    double t_d = cvx_time_seconds();
    m->timings.projections += (t_b - t_a) + (t_d - t_c);
    m->timings.attention += t_y - t_x;
    if (!fuse) {
        if ((st = tap_emit(f, name, q, 3, jshape)) != CVX_OK) return st;
        rc->y = x;
        rc->src = q;
        cvx_pool_parallel_for(pool, B * Sl, 0, gate_task, rc);
    }
    return CVX_OK;
}

/* A block's second half: norm2 (LayerNormZero) and the feed-forward on cat([text, video]) (GELU), its gated
 * residual into x, in chunks of ff_rows rows. */
static cvx_status fwd_block_feed_forward(fwd *f, int i, rows_ctx *rc) {
    cvx_dit *m = f->m;
    const cvx_dit_config *cfg = &m->cfg;
    const dit_block *blk = &m->blocks[i];
    cvx_pool *pool = f->pool;
    const int64_t B = f->B, S = f->S, D = f->D, Sl = f->Sl, FFD = f->FFD, ff_rows = f->ff_rows;
    float *x = f->x, *n = f->n, *o = f->o, *hid = f->hid;
    int64_t jshape[3] = {B, S, D};
    char name[64];
    cvx_status st;
    if ((st = fwd_norm_zero(f, i, 2, &blk->norm2_lin, blk->norm2_w, blk->norm2_b, rc)) != CVX_OK) return st;
    double t_e = cvx_time_seconds();
    snprintf(name, sizeof name, "block%d.ff", i);
    /* bf16: tanh-GELU in the first GEMM's epilogue, the gated residual in the second's (as attn1). */
    int fuse = blk->ff2.p && !tap_wants(f, name);
    for (int64_t r0 = 0; r0 < B * Sl; r0 += ff_rows) {
        int64_t rows = B * Sl - r0 < ff_rows ? B * Sl - r0 : ff_rows;
        if (blk->ff1.p && cfg->activation == CVX_DIT_GELU_TANH) {
            cvx_epilogue gelu = {CVX_ACT_GELU_TANH, NULL, 1, 0, NULL, 0};
            if ((st = cvx_linear_bf16_ex(pool, hid, FFD, n + r0 * D, D, rows, D, blk->ff1.p, blk->ff1.b, &gelu)) !=
                CVX_OK)
                return cvx_fail(&m->err, st, "transformer: fused GELU linear refused its arguments");
        } else {
            lin(pool, hid, n + r0 * D, rows, D, &blk->ff1);
            if (cfg->activation == CVX_DIT_GELU_TANH)
                cvx_gelu_tanh(pool, hid, rows * FFD);
            else
                cvx_pool_parallel_for(pool, rows * FFD, 1 << 14, gelu_erf_task, hid);
        }
        if (fuse) {
            if ((st = gated_linear_bf16(m, pool, rc, x, hid, r0, rows, FFD, blk->ff2.p, blk->ff2.b)) != CVX_OK)
                return st;
        } else {
            lin(pool, o + r0 * D, hid, rows, FFD, &blk->ff2);
        }
    }
    m->timings.feed_forward += cvx_time_seconds() - t_e;
    if (!fuse) {
        if ((st = tap_emit(f, name, o, 3, jshape)) != CVX_OK) return st;
        rc->y = x;
        rc->src = o;
        cvx_pool_parallel_for(pool, B * Sl, 0, gate_task, rc);
    }
    snprintf(name, sizeof name, "block%d.out", i);
    return tap_emit(f, name, x, 3, jshape);
}

/* The output head: norm_final (the 5b applies it to cat([text, video]) and slices: the same rows, and its observer
 * sees the joint tensor the reference recorded), AdaLayerNorm (shift = first half, scale = second half of
 * linear(silu(emb))), proj_out -> [B, N, C·p·p] (a sequence-parallel forward gathers every rank's video rows),
 * unpatchify -> out [B, F, C, H, W]. */
static cvx_status fwd_head(fwd *f) {
    cvx_dit *m = f->m;
    const cvx_dit_config *cfg = &m->cfg;
    const cvx_dit_call *call = f->call;
    cvx_pool *pool = f->pool;
    const int64_t B = f->B, F = f->F, H = f->H, W = f->W, L = f->L, p = f->p, Hp = f->Hp, Wp = f->Wp, N = f->N,
                  S = f->S, D = f->D, E = f->E, Sl = f->Sl, s0 = f->s0, Cpp = f->Cpp, Cout = f->Cout;
    float *x = f->x, *n = f->n, *proj = f->proj;
    const float eps = (float)cfg->norm_eps;
    cvx_status st;
    /* This rank's video rows: joint tokens [max(s0, L), s0 + Sl) = video tokens [v0, v0 + Nl). From here on the
     * video rows of n are packed [B, Nl, D]. */
    const int64_t vskip = L > s0 ? (L - s0 < Sl ? L - s0 : Sl) : 0, Nl = Sl - vskip, v0 = s0 + vskip - L;
    int64_t vshape[3] = {B, N, D}, jshape[3] = {B, S, D};
    if (cfg->use_rotary_positional_embeddings) {
        cvx_layernorm(pool, n, x, B * Sl, D, m->nf_w, m->nf_b, eps);
        if ((st = tap_emit(f, "norm_final", n, 3, jshape)) != CVX_OK) return st;
        for (int64_t b = 0; b < B; b++) /* packing moves rows down only, so ascending b never overwrites a source */
            memmove(n + b * Nl * D, n + (b * Sl + vskip) * D, sizeof(float) * (size_t)(Nl * D));
    } else {
        for (int64_t b = 0; b < B; b++)
            cvx_layernorm(pool, n + b * Nl * D, x + (b * Sl + vskip) * D, Nl, D, m->nf_w, m->nf_b, eps);
        if ((st = tap_emit(f, "norm_final", n, 3, vshape)) != CVX_OK) return st;
    }
    lin(pool, f->mod, f->semb, B, E, &m->out_lin);
    rows_ctx oc = {n, NULL, f->mod, Nl, 0, 0, D, 2 * D, 0, 1, 0, 1, 0, 0};
    norm_mod_ctx nc = {&oc, cvx_kernels_active(), n, m->out_norm_w, m->out_norm_b, eps};
    cvx_pool_parallel_for(pool, B * Nl, 0, norm_modulate_task, &nc);
    if ((st = tap_emit(f, "norm_out", n, 3, vshape)) != CVX_OK) return st;
    lin(pool, proj, n, B * Nl, D, &m->proj);
    if (f->dg > 1) { /* every rank of the group gets every video row: [B, N, C·p·p] */
        double t_g = cvx_time_seconds();
        for (int64_t b = B - 1; b >= 0; b--) /* spread [B, Nl] to [B, N] at this rank's place (moves rows up) */
            memmove(proj + (b * N + v0) * Cpp, proj + b * Nl * Cpp, sizeof(float) * (size_t)(Nl * Cpp));
        int64_t gc[DIT_MAX_SEQ_RANKS], gd[DIT_MAX_SEQ_RANKS];
        for (int j = 0; j < f->dg; j++) {
            int64_t js = f->off[j], jv = L > js ? (L - js < f->cnt[j] ? L - js : f->cnt[j]) : 0;
            gc[j] = (int64_t)sizeof(float) * (f->cnt[j] - jv) * Cpp;
            gd[j] = gc[j] ? (int64_t)sizeof(float) * (js + jv - L) * Cpp : 0; /* a rank of text rows only: none */
        }
        for (int64_t b = 0; b < B; b++)
            if ((st = cvx_dist_allgatherv(call->seq, proj + b * N * Cpp, gc, gd, &m->err)) != CVX_OK) return st;
        m->timings.communication += cvx_time_seconds() - t_g;
    }
    vshape[2] = Cpp;
    if ((st = tap_emit(f, "proj_out", proj, 3, vshape)) != CVX_OK) return st;
    /* unpatchify: reshape(B, F, Hp, Wp, C, p, p).permute(0, 1, 4, 2, 5, 3, 6) */
    for (int64_t b = 0; b < B; b++)
        for (int64_t fr = 0; fr < F; fr++)
            for (int64_t y = 0; y < Hp; y++)
                for (int64_t xx = 0; xx < Wp; xx++) {
                    const float *src = proj + ((b * F + fr) * Hp * Wp + y * Wp + xx) * Cpp;
                    for (int64_t c = 0; c < Cout; c++)
                        for (int64_t dy = 0; dy < p; dy++)
                            for (int64_t dx = 0; dx < p; dx++)
                                call->out[(((b * F + fr) * Cout + c) * H + y * p + dy) * W + xx * p + dx] =
                                    src[(c * p + dy) * p + dx];
                }
    return CVX_OK;
}

/* CogVideoXTransformer3DModel.forward, part by part (transformer.h). */
static cvx_status forward_impl(cvx_dit *m, const cvx_dit_call *call) {
    fwd f;
    memset(&f, 0, sizeof f);
    f.m = m, f.call = call;
    cvx_status st;
    if ((st = fwd_plan(&f)) != CVX_OK || (st = fwd_time_embedding(&f)) != CVX_OK ||
        (st = fwd_patch_embedding(&f)) != CVX_OK)
        return st;
    /* TeaCache: a skipped step adds the cached residual of both streams (hidden_states += previous_residual,
     * encoder_hidden_states += previous_residual_encoder) and goes to the head; a computed step keeps its input
     * (ori_hidden_states) to take the residual after the blocks. */
    cvx_dit_teacache *tc = m->teacache;
    const size_t rows_bytes = sizeof(float) * (size_t)(f.B * f.Sl * f.D);
    residual_ctx resid = {f.x, tc ? tc->residual : NULL, 0};
    if (tc && !f.compute) cvx_pool_parallel_for(f.pool, f.B * f.Sl * f.D, 1 << 16, residual_task, &resid);
    if (tc && f.compute) memcpy(tc->residual, f.x, rows_bytes);
    for (int i = 0; f.compute && i < m->cfg.num_layers; i++) {
        if (call->cancel && call->cancel(call->cancel_user_data))
            return cvx_fail(&m->err, CVX_ERR_CANCELLED, "transformer: cancelled before block %d", i);
        rows_ctx rc = {f.n, NULL, f.mod, f.Sl, f.s0, f.L, f.D, 6 * f.D, 0, 1, 3, 4, 2, 5};
        if ((st = fwd_block_attention(&f, i, &rc)) != CVX_OK || (st = fwd_block_feed_forward(&f, i, &rc)) != CVX_OK)
            return st;
    }
    if (call->cancel && call->cancel(call->cancel_user_data))
        return cvx_fail(&m->err, CVX_ERR_CANCELLED, "transformer: cancelled after the last block");
    if (tc && f.compute) {
        /* previous_residual(_encoder) = hidden_states − ori_hidden_states, both streams */
        resid.subtract = 1;
        cvx_pool_parallel_for(f.pool, f.B * f.Sl * f.D, 1 << 16, residual_task, &resid);
        tc->has_residual = 1;
    }
    if (tc) tc->computed = f.compute;
    return fwd_head(&f);
}

cvx_status cvx_dit_forward(cvx_dit *m, const cvx_dit_call *call) {
    cvx_error_clear(&m->err);
    memset(&m->timings, 0, sizeof m->timings);
    cvx_status st = check_call(m, call);
    if (st != CVX_OK) return st;
    double t0 = cvx_time_seconds();
    st = forward_impl(m, call);
    m->timings.total = cvx_time_seconds() - t0;
    /* The activations stay resident for the next step's forward; cvx_dit_free releases them. */
    cvx_arena_rewind(&m->arena, 0);
    return st;
}
