/* transformers T5EncoderModel (modeling_t5.py), encoder path only, f32 compute. See t5.h for shapes.
 *
 * Per block i (pre-norm, residual after each sub-layer):
 *   n  = RMSNorm(x) · ln_attn                               x, n: [T, D]  (T = B·L tokens)
 *   q, k, v = n·Wqᵀ, n·Wkᵀ, n·Wvᵀ                           [T, I]
 *   a  = softmax_j(q_h·k_hᵀ + pb[h]) v_h  (no 1/√K scaling)  [T, I]
 *   x += a·Woᵀ                                               [T, D]
 *   n  = RMSNorm(x) · ln_ff
 *   g  = act(n·Wi0ᵀ) * (n·Wi1ᵀ)  (gated)  |  act(n·Wiᵀ)       [T, F]
 *   x += g·Wwoᵀ
 * then last_hidden_state = RMSNorm(x) · final_ln. pb [H, L, L] is computed once from block 0's
 * relative_attention_bias and added in every block (T5Stack passes block 0's position_bias on).
 *
 * bf16 precision: the seven matrices of block i are packed (cvx_pack_bf16) right before block i runs and freed
 * after it; the products above go through cvx_linear_bf16 / cvx_attention_bf16, everything else is unchanged. */
#include "text/t5.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#include "core/arena.h"
#include "core/log.h"
#include "io/safetensors.h"
#include "kernels/kernels.h"

/* dense_act_fn, as ACT2FN names it. */
typedef enum { ACT_RELU, ACT_GELU_NEW, ACT_GELU, ACT_SILU } t5_act;

static int parse_act(const char *name, t5_act *act) {
    static const struct {
        const char *name;
        t5_act act;
    } acts[] = {{"relu", ACT_RELU}, {"gelu_new", ACT_GELU_NEW}, {"gelu_pytorch_tanh", ACT_GELU_NEW},
                {"gelu", ACT_GELU}, {"silu", ACT_SILU},         {"swish", ACT_SILU}};
    for (size_t i = 0; i < sizeof acts / sizeof acts[0]; i++)
        if (!strcmp(name, acts[i].name)) {
            *act = acts[i].act;
            return 0;
        }
    return -1;
}

/* What the encoder needs beyond cvx_t5_config_read's range checks. */
static cvx_status check_config(const cvx_t5_config *c, const char *label, t5_act *act, cvx_error *err) {
    /* dense_act_fn as T5Config derives it from feed_forward_proj when the file does not repeat it. */
    const char *name = c->dense_act_fn;
    if (!*name) name = !strcmp(c->feed_forward_proj, "gated-gelu") ? "gelu_new"
                       : strncmp(c->feed_forward_proj, "gated-", 6) ? c->feed_forward_proj
                                                                    : c->feed_forward_proj + 6;
    if (parse_act(name, act))
        return cvx_fail(err, CVX_ERR_UNSUPPORTED,
                        "%s: activation \"%s\" (feed_forward_proj \"%s\") is not supported (relu, gelu_new, gelu, silu)",
                        label, name, c->feed_forward_proj);
    /* The bucket maths halves num_buckets twice and divides by log(max_distance / max_exact). */
    if (c->relative_attention_num_buckets < 4)
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "%s: relative_attention_num_buckets = %lld is below 4", label,
                        (long long)c->relative_attention_num_buckets);
    if (c->relative_attention_max_distance <= c->relative_attention_num_buckets / 4)
        return cvx_fail(err, CVX_ERR_FORMAT,
                        "%s: relative_attention_max_distance (%lld) must exceed relative_attention_num_buckets/4 (%lld)",
                        label, (long long)c->relative_attention_max_distance,
                        (long long)(c->relative_attention_num_buckets / 4));
    return CVX_OK;
}

/* ---- model -------------------------------------------------------------------------------------------- */

typedef struct {
    cvx_tensor q, k, v; /* [I, D] */
    cvx_tensor o;       /* [D, I] */
    cvx_tensor wi0;     /* [F, D] (wi_0, or wi when not gated) */
    cvx_tensor wi1;     /* [F, D] (gated only) */
    cvx_tensor wo;      /* [D, F] */
    float *ln_attn;     /* [D] f32 copy of layer.0.layer_norm.weight */
    float *ln_ff;       /* [D] f32 copy of layer.1.layer_norm.weight */
} t5_block;

struct cvx_t5 {
    cvx_t5_config cfg;
    t5_act act;
    float eps;
    cvx_weights *w;
    cvx_tensor embed; /* [V, D] shared.weight */
    float *rel_bias;  /* [NB, H] f32 copy of block 0's relative_attention_bias (indexed [bucket, head]) */
    float *final_ln;  /* [D] */
    t5_block *blocks; /* [num_layers] */
    float *vecs;      /* the one allocation behind rel_bias, final_ln and the blocks' norm weights */
    void **copies;    /* aligned copies of tensors a crafted file stored misaligned (normally none) */
    size_t n_copies, cap_copies;
    cvx_precision precision;
    cvx_error err;
};

/* The kernels read weights through typed pointers, but safetensors allows any byte offset: a tensor that is
 * misaligned for its dtype (never in files save_pretrained writes) gets an aligned private copy. */
static cvx_status align_weight(cvx_t5 *m, const char *name, cvx_tensor *t, cvx_error *err) {
    size_t es = cvx_dtype_size(t->dtype);
    if (es == 0 || (uintptr_t)t->data % es == 0) return CVX_OK;
    if (m->n_copies == m->cap_copies) {
        size_t cap = m->cap_copies ? 2 * m->cap_copies : 8;
        void **p = realloc(m->copies, cap * sizeof *p);
        if (!p) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", name);
        m->copies = p, m->cap_copies = cap;
    }
    size_t bytes = cvx_tensor_nbytes(t);
    void *copy = NULL;
    if (posix_memalign(&copy, 64, bytes ? bytes : 64))
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory for an aligned copy", name);
    memcpy(copy, t->data, bytes);
    m->copies[m->n_copies++] = copy;
    t->data = copy;
    cvx_log_debug(NULL, "t5: %s is misaligned in its file; using an aligned copy", name);
    return CVX_OK;
}

static cvx_status get_weight(cvx_t5 *m, const char *name, int64_t d0, int64_t d1, int ndim, cvx_tensor *out,
                             cvx_error *err) {
    int64_t shape[2] = {d0, d1};
    cvx_status st = cvx_weights_get(m->w, name, ndim, shape, out, err);
    if (st) return st;
    /* cvx_linear up-casts these three storage types on the fly. */
    if (out->dtype != CVX_DTYPE_F32 && out->dtype != CVX_DTYPE_F16 && out->dtype != CVX_DTYPE_BF16)
        return cvx_fail(err, CVX_ERR_SHAPE, "tensor \"%s\" is stored as %s; expected F32, F16 or BF16", name,
                        cvx_dtype_name(out->dtype));
    return align_weight(m, name, out, err);
}

/* A small float weight, up-cast into dst (n floats). */
static cvx_status get_vector(cvx_t5 *m, const char *name, int ndim, int64_t d0, int64_t d1, float *dst,
                             cvx_error *err) {
    cvx_tensor t;
    cvx_status st = get_weight(m, name, d0, d1, ndim, &t, err);
    if (st) return st;
    if (cvx_tensor_to_f32(&t, dst)) return cvx_fail(err, CVX_ERR_SHAPE, "%s: not a float tensor", name);
    return CVX_OK;
}

static cvx_status bind_weights(cvx_t5 *m, cvx_error *err) {
    const cvx_t5_config *c = &m->cfg;
    const int64_t D = c->d_model, I = c->num_heads * c->d_kv, F = c->d_ff, V = c->vocab_size;
    cvx_status st;
    char name[256];

    /* T5EncoderModel ties encoder.embed_tokens to shared; save_pretrained keeps only shared.weight. */
    const char *emb = cvx_weights_find(m->w, "shared.weight") ? "shared.weight" : "encoder.embed_tokens.weight";
    if (!cvx_weights_find(m->w, emb))
        return cvx_fail(err, CVX_ERR_NOT_FOUND, "tensor \"shared.weight\" (or its tied alias %s) not found", emb);
    if ((st = get_weight(m, emb, V, D, 2, &m->embed, err))) return st;

    const int64_t NB = c->relative_attention_num_buckets;
    size_t nvec = (size_t)(NB * c->num_heads + D + 2 * c->num_layers * D);
    m->vecs = malloc(nvec * sizeof(float));
    m->blocks = calloc((size_t)c->num_layers, sizeof *m->blocks);
    if (!m->vecs || !m->blocks) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "T5: out of memory for the weight table");
    float *p = m->vecs;
    m->rel_bias = p, p += NB * c->num_heads;
    m->final_ln = p, p += D;

    if ((st = get_vector(m, "encoder.block.0.layer.0.SelfAttention.relative_attention_bias.weight", 2,
                         NB, c->num_heads, m->rel_bias, err)) ||
        (st = get_vector(m, "encoder.final_layer_norm.weight", 1, D, 1, m->final_ln, err)))
        return st;

    for (int64_t i = 0; i < c->num_layers; i++) {
        t5_block *b = &m->blocks[i];
        b->ln_attn = p, p += D;
        b->ln_ff = p, p += D;
#define W2(field, fmt, d0, d1)                                                     \
    do {                                                                           \
        snprintf(name, sizeof name, "encoder.block.%lld." fmt, (long long)i);      \
        if ((st = get_weight(m, name, d0, d1, 2, &b->field, err))) return st;      \
    } while (0)
        W2(q, "layer.0.SelfAttention.q.weight", I, D);
        W2(k, "layer.0.SelfAttention.k.weight", I, D);
        W2(v, "layer.0.SelfAttention.v.weight", I, D);
        W2(o, "layer.0.SelfAttention.o.weight", D, I);
        if (c->is_gated_act) {
            W2(wi0, "layer.1.DenseReluDense.wi_0.weight", F, D);
            W2(wi1, "layer.1.DenseReluDense.wi_1.weight", F, D);
        } else {
            W2(wi0, "layer.1.DenseReluDense.wi.weight", F, D);
        }
        W2(wo, "layer.1.DenseReluDense.wo.weight", D, F);
#undef W2
        snprintf(name, sizeof name, "encoder.block.%lld.layer.0.layer_norm.weight", (long long)i);
        if ((st = get_vector(m, name, 1, D, 1, b->ln_attn, err))) return st;
        snprintf(name, sizeof name, "encoder.block.%lld.layer.1.layer_norm.weight", (long long)i);
        if ((st = get_vector(m, name, 1, D, 1, b->ln_ff, err))) return st;
    }
    return CVX_OK;
}

cvx_status cvx_t5_open(cvx_t5 **out, const char *dir, cvx_error *err) {
    *out = NULL;
    cvx_t5 *m = calloc(1, sizeof *m);
    if (!m) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "T5: out of memory");
    char path[4096];
    if ((size_t)snprintf(path, sizeof path, "%s/config.json", dir) >= sizeof path) {
        free(m);
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "T5: path too long: %s", dir);
    }
    cvx_config *cfg = NULL;
    cvx_status st = cvx_config_load(&cfg, path, err);
    if (!st) st = cvx_t5_config_read(cfg, &m->cfg, err);
    if (!st) st = check_config(&m->cfg, path, &m->act, err);
    cvx_config_free(cfg);
    m->eps = (float)m->cfg.layer_norm_epsilon;
    if (!st) st = cvx_weights_open(&m->w, dir, err);
    if (!st) {
        st = bind_weights(m, err);
        if (st) cvx_error_prefix(err, "T5 text encoder %s: ", dir);
    }
    if (st) {
        cvx_t5_close(m);
        return st;
    }
    *out = m;
    return CVX_OK;
}

void cvx_t5_close(cvx_t5 *m) {
    if (!m) return;
    cvx_weights_close(m->w);
    for (size_t i = 0; i < m->n_copies; i++) free(m->copies[i]);
    free(m->copies);
    free(m->vecs);
    free(m->blocks);
    free(m);
}

const cvx_t5_config *cvx_t5_get_config(const cvx_t5 *m) { return &m->cfg; }

cvx_status cvx_t5_set_precision(cvx_t5 *m, cvx_precision precision) {
    if (precision != CVX_PRECISION_FP32 && precision != CVX_PRECISION_BF16)
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "T5: unknown precision %d", (int)precision);
    m->precision = precision;
    return CVX_OK;
}

cvx_precision cvx_t5_get_precision(const cvx_t5 *m) { return m->precision; }
const char *cvx_t5_last_error(const cvx_t5 *m) { return m ? cvx_error_message(&m->err) : "no model"; }
uint64_t cvx_t5_weight_bytes(const cvx_t5 *m) { return m ? cvx_weights_nbytes(m->w) : 0; }

/* ---- forward ------------------------------------------------------------------------------------------ */

int64_t cvx_t5_relative_bucket(int64_t rel, int64_t num_buckets, int64_t max_distance) {
    int64_t nb = num_buckets / 2; /* bidirectional: the upper half is for keys after the query */
    int64_t bucket = rel > 0 ? nb : 0;
    int64_t n = rel < 0 ? -rel : rel;
    int64_t max_exact = nb / 2;
    if (n < max_exact) return bucket + n;
    /* The reference's float32 chain, operation by operation: f32(n) / max_exact, log in f32, divided by
     * f32(log(max_distance / max_exact)) (a Python double), times (nb - max_exact), truncated. The order
     * decides the buckets at exact powers (|d| = 16, 32, 64 with the default sizes). */
    float r = (float)n / (float)max_exact;
    float v = logf(r) / (float)log((double)max_distance / (double)max_exact) * (float)(nb - max_exact);
    int64_t large = v >= (float)nb ? nb : max_exact + (int64_t)v;
    if (large > nb - 1) large = nb - 1;
    return bucket + large;
}

typedef struct {
    float *x;
    int64_t n;
    t5_act act;
    const float *mul; /* may be NULL */
} act_ctx;

static void act_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    act_ctx *c = arg;
    float *x = c->x;
    for (int64_t i = begin; i < end; i++) {
        float v = x[i];
        switch (c->act) {
        case ACT_RELU: v = v > 0.0f ? v : 0.0f; break;
        case ACT_GELU: v = 0.5f * v * (1.0f + erff(v * 0.70710678118654752f)); break;
        default: break; /* applied by the kernels before this pass */
        }
        x[i] = c->mul ? v * c->mul[i] : v;
    }
}

/* x = act(x) (* mul). gelu_new and silu go through the kernels layer (they are shared with the transformer). */
static void activation(cvx_pool *pool, t5_act act, float *x, const float *mul, int64_t n) {
    if (act == ACT_GELU_NEW) cvx_gelu_tanh(pool, x, n);
    else if (act == ACT_SILU) cvx_silu(pool, x, n);
    act_ctx c = {x, n, act, mul};
    if (!mul && (act == ACT_GELU_NEW || act == ACT_SILU)) return;
    cvx_pool_parallel_for(pool, n, 1 << 14, act_task, &c);
}

/* Asks the kernel to start reading a weight's pages from the file (MADV_WILLNEED is asynchronous readahead).
 * Touching a cold mmap'd checkpoint page by page reads it several times slower than the disk streams, so the
 * next block's weights are requested while the current block computes. Advice only: failures are ignored. */
static void prefetch(const cvx_tensor *t) {
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    uintptr_t lo = (uintptr_t)t->data & ~(uintptr_t)(page - 1);
    uintptr_t hi = (uintptr_t)t->data + cvx_tensor_nbytes(t);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_WILLNEED);
}

static void prefetch_block(const cvx_t5 *m, int64_t i) {
    if (i < 0 || i >= m->cfg.num_layers) return;
    const t5_block *b = &m->blocks[i];
    const cvx_tensor *ts[] = {&b->q, &b->k, &b->v, &b->o, &b->wi0, &b->wi1, &b->wo};
    for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++)
        if (ts[j]->data) prefetch(ts[j]);
}

/* Drops a used weight's pages from the process (the pages whole inside it: neighbours may still be needed).
 * Only for views into the read-only file mapping: MADV_DONTNEED on a private copy would zero it. A later
 * access refaults the same bytes from the page cache or the file, so this never changes a result. */
static void release(const cvx_t5 *m, const cvx_tensor *t) {
    if (!t->data) return;
    for (size_t i = 0; i < m->n_copies; i++)
        if (m->copies[i] == t->data) return;
    long page = sysconf(_SC_PAGESIZE);
    if (page <= 0) page = 4096;
    uintptr_t lo = ((uintptr_t)t->data + (uintptr_t)page - 1) & ~(uintptr_t)(page - 1);
    uintptr_t hi = ((uintptr_t)t->data + cvx_tensor_nbytes(t)) & ~(uintptr_t)(page - 1);
    if (hi > lo) (void)madvise((void *)lo, hi - lo, MADV_DONTNEED);
}

static void release_block(const cvx_t5 *m, int64_t i) {
    const t5_block *b = &m->blocks[i];
    const cvx_tensor *ts[] = {&b->q, &b->k, &b->v, &b->o, &b->wi0, &b->wi1, &b->wo};
    for (size_t j = 0; j < sizeof ts / sizeof ts[0]; j++) release(m, ts[j]);
}

/* One block's matrices in the bf16 kernels' layout (packed just before the block runs). */
enum { PK_Q, PK_K, PK_V, PK_O, PK_WI0, PK_WI1, PK_WO, PK_COUNT };

static void free_packs(cvx_packed **pk) {
    for (int j = 0; j < PK_COUNT; j++) {
        cvx_packed_free(pk[j]);
        pk[j] = NULL;
    }
}

static cvx_status pack_block(cvx_t5 *m, cvx_pool *pool, int64_t i, cvx_packed **pk) {
    const t5_block *b = &m->blocks[i];
    const cvx_tensor *ts[PK_COUNT] = {&b->q, &b->k, &b->v, &b->o, &b->wi0, &b->wi1, &b->wo};
    static const char *const names[PK_COUNT] = {"q", "k", "v", "o", "wi_0", "wi_1", "wo"};
    for (int j = 0; j < PK_COUNT; j++) {
        if (!ts[j]->data) continue; /* wi_1 of a non-gated model */
        cvx_status st = cvx_pack_bf16(pool, ts[j], &pk[j]);
        if (st) {
            free_packs(pk);
            return cvx_fail(&m->err, st, "T5 encode: cannot pack block %lld's %s weight for bf16 (%s)", (long long)i,
                            names[j], cvx_status_text(st));
        }
    }
    return CVX_OK;
}

/* y = x·Wᵀ through the packed bf16 weight when there is one, else the reference f32 product. */
static void linear(cvx_pool *pool, float *y, const float *x, int64_t M, int64_t K, const cvx_tensor *w,
                   const cvx_packed *p) {
    if (p) cvx_linear_bf16(pool, y, x, M, K, p, NULL);
    else cvx_linear(pool, y, x, M, K, w, NULL);
}

static void add_inplace(float *x, const float *y, int64_t n) {
    for (int64_t i = 0; i < n; i++) x[i] += y[i];
}

typedef struct {
    const cvx_t5_tap *tap;
    cvx_status st;
} tapper;

static int tap_wants(tapper *t, const char *name) {
    if (!t->tap || !t->tap->fn || t->st) return 0;
    return t->tap->wants ? t->tap->wants(t->tap->user_data, name) : 1;
}

/* Reports an f32 activation [B, L, C] (or any shape) under a per-block name. */
static void tap_f32(tapper *t, const char *name, float *data, int ndim, const int64_t *shape) {
    if (!tap_wants(t, name)) return;
    cvx_tensor v = cvx_tensor_view(CVX_DTYPE_F32, data, ndim, shape);
    t->st = t->tap->fn(t->tap->user_data, name, &v);
}

static void tap_block(tapper *t, int64_t i, const char *what, float *data, int64_t B, int64_t L, int64_t C) {
    char name[96];
    snprintf(name, sizeof name, "block.%lld.%s", (long long)i, what);
    int64_t shape[3] = {B, L, C};
    tap_f32(t, name, data, 3, shape);
}

/* Bytes of `count` buffers of `floats` floats each in the arena (64-byte aligned starts). */
static void add_size(size_t *total, int count, int64_t floats) {
    *total += (size_t)count * (((size_t)floats * sizeof(float) + 63) & ~(size_t)63);
}

cvx_status cvx_t5_encode(cvx_t5 *m, cvx_pool *pool, const cvx_tensor *ids, float *out) {
    return cvx_t5_encode_tap(m, pool, ids, out, NULL);
}

cvx_status cvx_t5_encode_tap(cvx_t5 *m, cvx_pool *pool, const cvx_tensor *ids, float *out, const cvx_t5_tap *tap) {
    cvx_error_clear(&m->err);
    const cvx_t5_config *c = &m->cfg;
    const int64_t D = c->d_model, H = c->num_heads, K = c->d_kv, I = H * K, F = c->d_ff;
    char sbuf[64];

    if (!ids || !ids->data || (ids->dtype != CVX_DTYPE_I64 && ids->dtype != CVX_DTYPE_I32) || ids->ndim < 1 ||
        ids->ndim > 2)
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "T5 encode: input ids must be an I64/I32 tensor [B, L]%s%s",
                        ids ? ", got " : "", ids ? cvx_shape_str(ids->ndim, ids->shape, sbuf, sizeof sbuf) : "");
    const int64_t B = ids->ndim == 2 ? ids->shape[0] : 1, L = ids->shape[ids->ndim - 1];
    /* L² · H floats for the position bias and T·F for the FFN must stay addressable. */
    if (B < 1 || L < 1 || L > (1 << 15) || B > (1 << 20) || B * L > (1 << 22))
        return cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT, "T5 encode: unsupported ids shape %s",
                        cvx_shape_str(ids->ndim, ids->shape, sbuf, sizeof sbuf));
    const int64_t T = B * L;
    int64_t *tok = malloc((size_t)T * sizeof *tok);
    if (!tok) return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "T5 encode: out of memory");
    for (int64_t t = 0; t < T; t++) {
        if (ids->dtype == CVX_DTYPE_I64) {
            memcpy(&tok[t], (const char *)ids->data + t * 8, 8);
        } else {
            int32_t v32;
            memcpy(&v32, (const char *)ids->data + t * 4, 4);
            tok[t] = v32;
        }
        if (tok[t] < 0 || tok[t] >= c->vocab_size) {
            cvx_status st = cvx_fail(&m->err, CVX_ERR_INVALID_ARGUMENT,
                                     "T5 encode: token id %lld at [%lld, %lld] is outside the vocabulary [0, %lld)",
                                     (long long)tok[t], (long long)(t / L), (long long)(t % L),
                                     (long long)c->vocab_size);
            free(tok);
            return st;
        }
    }

    /* One arena for every activation. */
    size_t total = 0;
    add_size(&total, 1, H * L * L);                  /* pb */
    add_size(&total, 2, T * D);                      /* x, n */
    add_size(&total, 4, T * I);                      /* q, k, v, a */
    add_size(&total, c->is_gated_act ? 2 : 1, T * F); /* g (, g1) */
    cvx_arena arena;
    /* The arena only reserves address space: refuse sizes no machine could back instead of faulting later. */
    if (total > ((size_t)1 << 37) || cvx_arena_init(&arena, total)) {
        free(tok);
        return cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "T5 encode: cannot reserve %zu bytes of activations", total);
    }
    float *pb = cvx_arena_alloc(&arena, (size_t)(H * L * L) * sizeof(float)); /* [H, L, L] */
    float *x = cvx_arena_alloc(&arena, (size_t)(T * D) * sizeof(float));      /* [T, D] residual stream */
    float *n = cvx_arena_alloc(&arena, (size_t)(T * D) * sizeof(float));      /* [T, D] normed / sub-layer out */
    float *q = cvx_arena_alloc(&arena, (size_t)(T * I) * sizeof(float));      /* [T, I] */
    float *k = cvx_arena_alloc(&arena, (size_t)(T * I) * sizeof(float));      /* [T, I] */
    float *v = cvx_arena_alloc(&arena, (size_t)(T * I) * sizeof(float));      /* [T, I] */
    float *a = cvx_arena_alloc(&arena, (size_t)(T * I) * sizeof(float));      /* [T, I] attention out */
    float *g = cvx_arena_alloc(&arena, (size_t)(T * F) * sizeof(float));      /* [T, F] */
    float *g1 = c->is_gated_act ? cvx_arena_alloc(&arena, (size_t)(T * F) * sizeof(float)) : NULL; /* [T, F] */
    tapper tp = {tap, CVX_OK};
    cvx_status st = CVX_OK;
    if (!pb || !x || !n || !q || !k || !v || !a || !g || (c->is_gated_act && !g1)) {
        st = cvx_fail(&m->err, CVX_ERR_INTERNAL, "T5 encode: activation plan too small");
        goto done;
    }
    double t0 = cvx_time_seconds();

    /* Relative position bias, pb[h, i, j] = rel_bias[bucket(j - i), h]; buckets depend only on j - i. */
    int64_t *bucket = malloc((size_t)(2 * L - 1) * sizeof *bucket); /* [2L-1], index d + L - 1 */
    if (!bucket) {
        st = cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "T5 encode: out of memory");
        goto done;
    }
    for (int64_t d = -(L - 1); d <= L - 1; d++)
        bucket[d + L - 1] =
            cvx_t5_relative_bucket(d, c->relative_attention_num_buckets, c->relative_attention_max_distance);
    for (int64_t h = 0; h < H; h++)
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < L; j++) pb[(h * L + i) * L + j] = m->rel_bias[bucket[j - i + L - 1] * H + h];
    if (tap_wants(&tp, "relative_position_bucket")) {
        int64_t *tab = malloc((size_t)(L * L) * sizeof *tab);
        if (!tab) {
            free(bucket);
            st = cvx_fail(&m->err, CVX_ERR_OUT_OF_MEMORY, "T5 encode: out of memory");
            goto done;
        }
        for (int64_t i = 0; i < L; i++)
            for (int64_t j = 0; j < L; j++) tab[i * L + j] = bucket[j - i + L - 1];
        int64_t shape[2] = {L, L};
        cvx_tensor tv = cvx_tensor_view(CVX_DTYPE_I64, tab, 2, shape);
        tp.st = tap->fn(tap->user_data, "relative_position_bucket", &tv);
        free(tab);
    }
    free(bucket);
    {
        int64_t shape[4] = {1, H, L, L};
        tap_f32(&tp, "position_bias", pb, 4, shape);
    }

    /* Embedding lookup (no scaling in T5). */
    for (int64_t t = 0; t < T; t++) {
        int64_t rshape[1] = {D};
        cvx_tensor row = cvx_tensor_view(m->embed.dtype,
                                         (char *)m->embed.data + (size_t)(tok[t] * D) * cvx_dtype_size(m->embed.dtype),
                                         1, rshape);
        cvx_to_f32(NULL, x + t * D, &row);
    }
    {
        int64_t shape[3] = {B, L, D};
        tap_f32(&tp, "embeddings", x, 3, shape);
    }

    prefetch_block(m, 0);
    const int bf16 = m->precision == CVX_PRECISION_BF16;
    cvx_packed *pk[PK_COUNT] = {NULL};
    for (int64_t li = 0; li < c->num_layers && !tp.st; li++) {
        const t5_block *b = &m->blocks[li];
        double tb = cvx_time_seconds();
        prefetch_block(m, li + 1);
        if (bf16 && (st = pack_block(m, pool, li, pk))) goto done;
        /* Self-attention sub-layer. */
        cvx_rmsnorm(pool, n, x, T, D, b->ln_attn, m->eps);
        tap_block(&tp, li, "attn_layernorm_out", n, B, L, D);
        linear(pool, q, n, T, D, &b->q, pk[PK_Q]);
        linear(pool, k, n, T, D, &b->k, pk[PK_K]);
        linear(pool, v, n, T, D, &b->v, pk[PK_V]);
        if (bf16) cvx_attention_bf16(pool, a, I, q, I, k, I, v, I, B, H, L, L, K, 1.0f, pb);
        else cvx_attention(pool, a, I, q, I, k, I, v, I, B, H, L, L, K, 1.0f, pb);
        linear(pool, n, a, T, I, &b->o, pk[PK_O]);
        tap_block(&tp, li, "attn_out_before_residual", n, B, L, D);
        add_inplace(x, n, T * D);
        tap_block(&tp, li, "after_attn_residual", x, B, L, D);
        /* Feed-forward sub-layer. */
        cvx_rmsnorm(pool, n, x, T, D, b->ln_ff, m->eps);
        tap_block(&tp, li, "ff_layernorm_out", n, B, L, D);
        linear(pool, g, n, T, D, &b->wi0, pk[PK_WI0]);
        if (c->is_gated_act) linear(pool, g1, n, T, D, &b->wi1, pk[PK_WI1]);
        activation(pool, m->act, g, c->is_gated_act ? g1 : NULL, T * F);
        tap_block(&tp, li, "ff_gated_hidden", g, B, L, F);
        linear(pool, n, g, T, F, &b->wo, pk[PK_WO]);
        add_inplace(x, n, T * D);
        tap_block(&tp, li, "out", x, B, L, D);
        free_packs(pk);
        release_block(m, li);
        cvx_log_debug(NULL, "t5: block %lld/%lld %.2f s", (long long)li + 1, (long long)c->num_layers,
                      cvx_time_seconds() - tb);
    }
    if (tp.st) {
        st = tp.st;
        if (!m->err.status) cvx_fail(&m->err, st, "T5 encode: the intermediate-tensor observer failed");
        goto done;
    }
    cvx_rmsnorm(pool, out, x, T, D, m->final_ln, m->eps);
    cvx_log_info(NULL, "t5: encoded %lld × %lld tokens in %.2f s (%s)", (long long)B, (long long)L,
                 cvx_time_seconds() - t0, bf16 ? "bf16" : "fp32");
done:
    cvx_arena_free(&arena);
    free(tok);
    return st;
}
