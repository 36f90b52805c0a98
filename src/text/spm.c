/* SentencePiece (sentencepiece 0.1.97: ModelProto, normalizer::Normalizer, unigram::Model::EncodeOptimized,
 * bpe::Model::SampleEncode(alpha=0), word/char models, SentencePieceProcessor::PopulateSentencePieceText)
 * re-implemented from the reference's behaviour. See spm.h for the pipeline.
 *
 * Numerics that decide ties (they must match or a different segmentation wins):
 *  - unigram: a piece's candidate path score is computed in double (score + best-so-far) and compared with the
 *    stored float; the stored best is rounded to float; the unknown-character candidate is float + float.
 *    Candidates are visited start position ascending, then length ascending; only a strictly better candidate
 *    replaces the stored one. USER_DEFINED pieces score len * max_score - 0.1 (max_score starts at FLT_MIN).
 *  - bpe: highest score first, ties to the leftmost pair. */
#include "text/spm.h"

#include <errno.h>
#include <float.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- model ------------------------------------------------------------------------------------------ */

typedef struct {
    uint32_t off, len; /* the piece string in m->buf */
    float score;
    uint8_t type; /* cvx_spm_piece_type */
} spm_piece;

/* A string -> id hash set over piece strings (open addressing, ids stored, -1 = empty). */
typedef struct {
    int32_t *slots;
    size_t mask;
} spm_strmap;

/* Byte trie over the NORMAL / USER_DEFINED / UNUSED pieces: node 0 is the root; an edge (node, byte) -> child
 * lives in an open-addressing table keyed by node * 256 + byte; the root's edges are also a direct table. */
typedef struct {
    uint64_t *keys; /* key + 1, 0 = empty */
    uint32_t *child;
    size_t mask, n_edges;
    int32_t *value; /* per node: piece id or -1 */
    uint32_t n_nodes, cap_nodes;
    uint32_t root[256]; /* child of the root per byte, 0 = none */
} spm_trie;

struct cvx_spm {
    uint8_t *buf; /* the serialized model (owned) */
    size_t size;
    spm_piece *pieces;
    int n_pieces;
    int model_type;
    int unk_id; /* the UNKNOWN piece */
    int bos_id, eos_id, pad_id, trainer_unk_id;
    int byte_fallback, treat_ws_as_suffix;
    /* normalizer spec */
    uint32_t name_off, name_len;
    int add_dummy_prefix, remove_extra_ws, escape_ws;
    uint32_t *units; /* charsmap double array, host order (NULL: no charsmap) */
    size_t n_units;
    const char *cm_strings; /* NUL-terminated replacements, into buf */
    size_t cm_strings_len;
    char name[64];
    /* lookups */
    spm_strmap normal, reserved;
    spm_trie trie;
    float min_score, max_score;
    int32_t byte_ids[256];
    int has_user_defined;
};

static const char kSpace[] = "\xe2\x96\x81"; /* U+2581, the escaped space */

static uint64_t hash_bytes(const uint8_t *s, size_t n) {
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++) h = (h ^ s[i]) * 1099511628211ull;
    return h ^ (h >> 29);
}

static cvx_status strmap_init(spm_strmap *t, size_t n, cvx_error *err) {
    size_t cap = 16;
    while (cap < 2 * n + 16) cap <<= 1;
    t->slots = malloc(cap * sizeof *t->slots);
    if (!t->slots) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (piece table)");
    memset(t->slots, 0xff, cap * sizeof *t->slots);
    t->mask = cap - 1;
    return CVX_OK;
}

/* Finds the id of piece (s, n) in t, or -1. */
static int strmap_find(const cvx_spm *m, const spm_strmap *t, const uint8_t *s, size_t n) {
    if (!t->slots) return -1;
    for (size_t i = hash_bytes(s, n) & t->mask;; i = (i + 1) & t->mask) {
        int32_t id = t->slots[i];
        if (id < 0) return -1;
        const spm_piece *p = &m->pieces[id];
        if (p->len == n && !memcmp(m->buf + p->off, s, n)) return id;
    }
}

/* Inserts id; returns the id already holding that string, or -1 when inserted. */
static int strmap_insert(const cvx_spm *m, spm_strmap *t, int id) {
    const spm_piece *p = &m->pieces[id];
    const uint8_t *s = m->buf + p->off;
    size_t i = hash_bytes(s, p->len) & t->mask;
    for (;; i = (i + 1) & t->mask) {
        int32_t o = t->slots[i];
        if (o < 0) break;
        if (m->pieces[o].len == p->len && !memcmp(m->buf + m->pieces[o].off, s, p->len)) return o;
    }
    t->slots[i] = id;
    return -1;
}

static inline size_t trie_slot(uint64_t key, size_t mask) {
    return (size_t)((key * 0x9E3779B97F4A7C15ull) >> 20) & mask;
}

static inline uint32_t trie_next(const spm_trie *t, uint32_t node, uint8_t byte) {
    if (node == 0) return t->root[byte];
    uint64_t key = ((uint64_t)node << 8 | byte) + 1;
    for (size_t i = trie_slot(key, t->mask);; i = (i + 1) & t->mask) {
        uint64_t k = t->keys[i];
        if (k == key) return t->child[i];
        if (k == 0) return 0;
    }
}

static cvx_status trie_grow_edges(spm_trie *t, cvx_error *err) {
    size_t cap = (t->mask + 1) * 2;
    uint64_t *keys = calloc(cap, sizeof *keys);
    uint32_t *child = malloc(cap * sizeof *child);
    if (!keys || !child) {
        free(keys);
        free(child);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (trie)");
    }
    for (size_t i = 0; t->keys && i <= t->mask; i++) {
        if (!t->keys[i]) continue;
        size_t j = trie_slot(t->keys[i], cap - 1);
        while (keys[j]) j = (j + 1) & (cap - 1);
        keys[j] = t->keys[i];
        child[j] = t->child[i];
    }
    free(t->keys);
    free(t->child);
    t->keys = keys;
    t->child = child;
    t->mask = cap - 1;
    return CVX_OK;
}

static cvx_status trie_new_node(spm_trie *t, uint32_t *node, cvx_error *err) {
    if (t->n_nodes == t->cap_nodes) {
        uint32_t cap = t->cap_nodes ? t->cap_nodes * 2 : 1024;
        int32_t *v = realloc(t->value, cap * sizeof *v);
        if (!v) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (trie)");
        t->value = v;
        t->cap_nodes = cap;
    }
    t->value[t->n_nodes] = -1;
    *node = t->n_nodes++;
    return CVX_OK;
}

static cvx_status trie_insert(spm_trie *t, const uint8_t *s, size_t n, int32_t id, cvx_error *err) {
    uint32_t node = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t next = trie_next(t, node, s[i]);
        if (!next) {
            cvx_status st = trie_new_node(t, &next, err);
            if (st) return st;
            if (node == 0) {
                t->root[s[i]] = next;
            } else {
                if ((t->n_edges + 1) * 2 > t->mask + 1 && (st = trie_grow_edges(t, err))) return st;
                uint64_t key = ((uint64_t)node << 8 | s[i]) + 1;
                size_t j = trie_slot(key, t->mask);
                while (t->keys[j]) j = (j + 1) & t->mask;
                t->keys[j] = key;
                t->child[j] = next;
                t->n_edges++;
            }
        }
        node = next;
    }
    t->value[node] = id;
    return CVX_OK;
}

static void trie_free(spm_trie *t) {
    free(t->keys);
    free(t->child);
    free(t->value);
}

void cvx_spm_free(cvx_spm *m) {
    if (!m) return;
    free(m->buf);
    free(m->pieces);
    free(m->units);
    free(m->normal.slots);
    free(m->reserved.slots);
    trie_free(&m->trie);
    free(m);
}

/* ---- protobuf wire format --------------------------------------------------------------------------- */

typedef struct {
    const uint8_t *p, *end;
} pb_reader;

enum { PB_VARINT = 0, PB_I64 = 1, PB_LEN = 2, PB_I32 = 5 };

static int pb_varint(pb_reader *r, uint64_t *v) {
    uint64_t x = 0;
    for (int shift = 0; shift < 64; shift += 7) {
        if (r->p >= r->end) return -1;
        uint8_t b = *r->p++;
        x |= (uint64_t)(b & 0x7f) << shift;
        if (!(b & 0x80)) {
            *v = x;
            return 0;
        }
    }
    return -1; /* more than 10 bytes */
}

/* Reads a field key; 1 = got one, 0 = end of message, -1 = malformed. */
static int pb_key(pb_reader *r, uint32_t *field, int *wire) {
    if (r->p == r->end) return 0;
    uint64_t k;
    if (pb_varint(r, &k) || (k >> 3) == 0 || (k >> 3) > 0x1fffffff) return -1;
    *field = (uint32_t)(k >> 3);
    *wire = (int)(k & 7);
    return 1;
}

static int pb_len(pb_reader *r, const uint8_t **data, size_t *len) {
    uint64_t n;
    if (pb_varint(r, &n) || n > (uint64_t)(r->end - r->p)) return -1;
    *data = r->p;
    *len = (size_t)n;
    r->p += n;
    return 0;
}

static int pb_skip(pb_reader *r, int wire) {
    uint64_t v;
    const uint8_t *d;
    size_t n;
    switch (wire) {
    case PB_VARINT: return pb_varint(r, &v);
    case PB_I64:
        if (r->end - r->p < 8) return -1;
        r->p += 8;
        return 0;
    case PB_LEN: return pb_len(r, &d, &n);
    case PB_I32:
        if (r->end - r->p < 4) return -1;
        r->p += 4;
        return 0;
    default: return -1; /* groups (3, 4) and 6, 7 are not valid here */
    }
}

/* The value of a varint field as int32 / bool, checking the wire type. */
static int pb_int32(pb_reader *r, int wire, int32_t *v) {
    uint64_t x;
    if (wire != PB_VARINT || pb_varint(r, &x)) return -1;
    *v = (int32_t)(uint32_t)x;
    return 0;
}

static int pb_bool(pb_reader *r, int wire, int *v) {
    uint64_t x;
    if (wire != PB_VARINT || pb_varint(r, &x)) return -1;
    *v = x != 0;
    return 0;
}

#define PB_BAD(what) cvx_fail(err, CVX_ERR_FORMAT, "spm: malformed model: %s (byte %zu)", what, (size_t)(r.p - m->buf))

static cvx_status parse_piece(cvx_spm *m, const uint8_t *d, size_t n, spm_piece *out, cvx_error *err) {
    pb_reader r = {d, d + n};
    out->off = 0;
    out->len = 0;
    out->score = 0.0f;
    out->type = CVX_SPM_NORMAL;
    int has_piece = 0;
    uint32_t field;
    int wire, k;
    while ((k = pb_key(&r, &field, &wire)) == 1) {
        if (field == 1) {
            const uint8_t *s;
            size_t len;
            if (wire != PB_LEN || pb_len(&r, &s, &len)) return PB_BAD("piece string");
            out->off = (uint32_t)(s - m->buf);
            out->len = (uint32_t)len;
            has_piece = 1;
        } else if (field == 2) {
            if (wire != PB_I32 || r.end - r.p < 4) return PB_BAD("piece score");
            uint32_t bits = (uint32_t)r.p[0] | (uint32_t)r.p[1] << 8 | (uint32_t)r.p[2] << 16 | (uint32_t)r.p[3] << 24;
            memcpy(&out->score, &bits, 4);
            r.p += 4;
        } else if (field == 3) {
            int32_t t;
            if (pb_int32(&r, wire, &t)) return PB_BAD("piece type");
            if (t < CVX_SPM_NORMAL || t > CVX_SPM_BYTE)
                return cvx_fail(err, CVX_ERR_FORMAT, "spm: malformed model: piece %d has unknown type %d",
                                m->n_pieces, (int)t);
            out->type = (uint8_t)t;
        } else if (pb_skip(&r, wire)) {
            return PB_BAD("piece field");
        }
    }
    if (k < 0) return PB_BAD("piece field key");
    (void)has_piece;
    return CVX_OK;
}

static cvx_status parse_trainer(cvx_spm *m, const uint8_t *d, size_t n, cvx_error *err) {
    pb_reader r = {d, d + n};
    uint32_t field;
    int wire, k;
    while ((k = pb_key(&r, &field, &wire)) == 1) {
        int bad = 0;
        switch (field) {
        case 3: bad = pb_int32(&r, wire, &m->model_type); break;
        case 24: bad = pb_bool(&r, wire, &m->treat_ws_as_suffix); break;
        case 35: bad = pb_bool(&r, wire, &m->byte_fallback); break;
        case 40: bad = pb_int32(&r, wire, &m->trainer_unk_id); break;
        case 41: bad = pb_int32(&r, wire, &m->bos_id); break;
        case 42: bad = pb_int32(&r, wire, &m->eos_id); break;
        case 43: bad = pb_int32(&r, wire, &m->pad_id); break;
        default: bad = pb_skip(&r, wire);
        }
        if (bad) return PB_BAD("trainer_spec field");
    }
    if (k < 0) return PB_BAD("trainer_spec field key");
    return CVX_OK;
}

static cvx_status parse_normalizer(cvx_spm *m, const uint8_t *d, size_t n, const uint8_t **charsmap,
                                   size_t *charsmap_len, cvx_error *err) {
    pb_reader r = {d, d + n};
    uint32_t field;
    int wire, k;
    while ((k = pb_key(&r, &field, &wire)) == 1) {
        int bad = 0;
        const uint8_t *s;
        size_t len;
        switch (field) {
        case 1:
            if (wire != PB_LEN || pb_len(&r, &s, &len)) return PB_BAD("normalizer name");
            m->name_off = (uint32_t)(s - m->buf);
            m->name_len = (uint32_t)len;
            break;
        case 2:
            if (wire != PB_LEN || pb_len(&r, &s, &len)) return PB_BAD("precompiled_charsmap");
            *charsmap = s;
            *charsmap_len = len;
            break;
        case 3: bad = pb_bool(&r, wire, &m->add_dummy_prefix); break;
        case 4: bad = pb_bool(&r, wire, &m->remove_extra_ws); break;
        case 5: bad = pb_bool(&r, wire, &m->escape_ws); break;
        default: bad = pb_skip(&r, wire);
        }
        if (bad) return PB_BAD("normalizer_spec field");
    }
    if (k < 0) return PB_BAD("normalizer_spec field key");
    return CVX_OK;
}

/* "<0xNN>" (upper-case hex, as sentencepiece writes them) -> 0..255, else -1. */
static int piece_to_byte(const uint8_t *s, size_t n) {
    if (n != 6 || s[0] != '<' || s[1] != '0' || s[2] != 'x' || s[5] != '>') return -1;
    int v = 0;
    for (int i = 3; i < 5; i++) {
        int c = s[i];
        if (c >= '0' && c <= '9') v = v * 16 + (c - '0');
        else if (c >= 'A' && c <= 'F') v = v * 16 + (c - 'A' + 10);
        else return -1;
    }
    return v;
}

static cvx_status parse_model(cvx_spm *m, cvx_error *err) {
    pb_reader r = {m->buf, m->buf + m->size};
    const uint8_t *charsmap = NULL;
    size_t charsmap_len = 0;
    int cap = 0;
    uint32_t field;
    int wire, k;
    cvx_status st;

    /* proto2 defaults */
    m->model_type = CVX_SPM_UNIGRAM;
    m->trainer_unk_id = 0;
    m->bos_id = 1;
    m->eos_id = 2;
    m->pad_id = -1;
    m->add_dummy_prefix = m->remove_extra_ws = m->escape_ws = 1;

    if (m->size == 0) return cvx_fail(err, CVX_ERR_FORMAT, "spm: empty model file");
    while ((k = pb_key(&r, &field, &wire)) == 1) {
        const uint8_t *d;
        size_t n;
        if (field >= 1 && field <= 3) {
            if (wire != PB_LEN || pb_len(&r, &d, &n)) return PB_BAD("ModelProto field");
            if (field == 1) {
                if (m->n_pieces == cap) {
                    int ncap = cap ? cap * 2 : 1024;
                    spm_piece *p = realloc(m->pieces, (size_t)ncap * sizeof *p);
                    if (!p) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (pieces)");
                    m->pieces = p;
                    cap = ncap;
                }
                if ((st = parse_piece(m, d, n, &m->pieces[m->n_pieces], err))) return st;
                m->n_pieces++;
            } else if (field == 2) {
                if ((st = parse_trainer(m, d, n, err))) return st;
            } else {
                if ((st = parse_normalizer(m, d, n, &charsmap, &charsmap_len, err))) return st;
            }
        } else if (pb_skip(&r, wire)) {
            return PB_BAD("ModelProto field");
        }
    }
    if (k < 0) return PB_BAD("ModelProto field key");
    if (m->n_pieces == 0) return cvx_fail(err, CVX_ERR_FORMAT, "spm: model has no pieces (not a sentencepiece model?)");

    if (m->model_type < CVX_SPM_UNIGRAM || m->model_type > CVX_SPM_CHAR)
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "spm: unknown model_type %d", m->model_type);

    size_t nl = m->name_len < sizeof m->name - 1 ? m->name_len : sizeof m->name - 1;
    memcpy(m->name, m->buf + m->name_off, nl);
    m->name[nl] = 0;

    /* The precompiled charsmap: <u32 trie size><double array><NUL-terminated replacement strings>. */
    if (charsmap_len) {
        if (charsmap_len <= 4) return cvx_fail(err, CVX_ERR_FORMAT, "spm: normalization rule blob is broken");
        uint32_t trie_size = (uint32_t)charsmap[0] | (uint32_t)charsmap[1] << 8 | (uint32_t)charsmap[2] << 16 |
                             (uint32_t)charsmap[3] << 24;
        if (trie_size > charsmap_len - 4)
            return cvx_fail(err, CVX_ERR_FORMAT, "spm: charsmap trie size %u exceeds the blob (%zu bytes)",
                            trie_size, charsmap_len);
        m->n_units = trie_size / 4;
        m->units = malloc((m->n_units ? m->n_units : 1) * sizeof *m->units);
        if (!m->units) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (charsmap)");
        const uint8_t *u = charsmap + 4;
        for (size_t i = 0; i < m->n_units; i++)
            m->units[i] = (uint32_t)u[4 * i] | (uint32_t)u[4 * i + 1] << 8 | (uint32_t)u[4 * i + 2] << 16 |
                          (uint32_t)u[4 * i + 3] << 24;
        m->cm_strings = (const char *)charsmap + 4 + trie_size;
        m->cm_strings_len = charsmap_len - 4 - trie_size;
    }

    /* Pieces (ModelInterface::InitializePieces). */
    if ((st = strmap_init(&m->normal, (size_t)m->n_pieces, err)) || (st = strmap_init(&m->reserved, (size_t)m->n_pieces, err)))
        return st;
    int bytes_found = 0;
    m->unk_id = -1;
    for (int i = 0; i < 256; i++) m->byte_ids[i] = -1;
    for (int i = 0; i < m->n_pieces; i++) {
        spm_piece *p = &m->pieces[i];
        const uint8_t *s = m->buf + p->off;
        if (p->len == 0) return cvx_fail(err, CVX_ERR_FORMAT, "spm: piece %d is empty", i);
        if (memchr(s, 0, p->len)) return cvx_fail(err, CVX_ERR_FORMAT, "spm: piece %d contains a NUL byte", i);
        int normal = p->type == CVX_SPM_NORMAL || p->type == CVX_SPM_USER_DEFINED || p->type == CVX_SPM_UNUSED;
        spm_strmap *t = normal ? &m->normal : &m->reserved;
        int dup = strmap_insert(m, t, i);
        if (dup >= 0)
            return cvx_fail(err, CVX_ERR_FORMAT, "spm: piece %d \"%.*s\" is already defined (id %d)", i,
                            (int)(p->len > 64 ? 64 : p->len), (const char *)s, dup);
        if (p->type == CVX_SPM_USER_DEFINED) m->has_user_defined = 1;
        if (p->type == CVX_SPM_UNKNOWN) {
            if (m->unk_id >= 0) return cvx_fail(err, CVX_ERR_FORMAT, "spm: unk is defined twice (ids %d, %d)", m->unk_id, i);
            m->unk_id = i;
        }
        if (p->type == CVX_SPM_BYTE) {
            if (!m->byte_fallback)
                return cvx_fail(err, CVX_ERR_FORMAT, "spm: byte piece %d found although byte_fallback is false", i);
            int b = piece_to_byte(s, p->len);
            if (b < 0) return cvx_fail(err, CVX_ERR_FORMAT, "spm: byte piece %d \"%.*s\" is invalid", i,
                                       (int)(p->len > 64 ? 64 : p->len), (const char *)s);
            if (m->byte_ids[b] < 0) bytes_found++;
            m->byte_ids[b] = i;
        }
    }
    if (m->unk_id < 0) return cvx_fail(err, CVX_ERR_FORMAT, "spm: unk is not defined");
    if (m->byte_fallback && bytes_found != 256)
        return cvx_fail(err, CVX_ERR_FORMAT, "spm: byte_fallback is true but only %d of 256 byte pieces exist",
                        bytes_found);

    /* Scores over NORMAL pieces (unigram::Model::Model; FLT_MIN, not -FLT_MAX, is the reference's start). */
    m->min_score = FLT_MAX;
    m->max_score = FLT_MIN;
    int n_trie = 0;
    for (int i = 0; i < m->n_pieces; i++) {
        const spm_piece *p = &m->pieces[i];
        if (p->type == CVX_SPM_NORMAL) {
            if (p->score < m->min_score) m->min_score = p->score;
            if (p->score > m->max_score) m->max_score = p->score;
        }
        if (p->type == CVX_SPM_NORMAL || p->type == CVX_SPM_USER_DEFINED || p->type == CVX_SPM_UNUSED) n_trie++;
    }
    if (m->model_type == CVX_SPM_UNIGRAM && n_trie == 0)
        return cvx_fail(err, CVX_ERR_FORMAT, "spm: unigram model has no normal pieces");

    uint32_t root;
    if ((st = trie_new_node(&m->trie, &root, err)) || (st = trie_grow_edges(&m->trie, err))) return st;
    for (int i = 0; i < m->n_pieces; i++) {
        const spm_piece *p = &m->pieces[i];
        if (p->type == CVX_SPM_NORMAL || p->type == CVX_SPM_USER_DEFINED || p->type == CVX_SPM_UNUSED)
            if ((st = trie_insert(&m->trie, m->buf + p->off, p->len, i, err))) return st;
    }
    return CVX_OK;
}

cvx_status cvx_spm_load_memory(const void *data, size_t size, cvx_spm **out, cvx_error *err) {
    *out = NULL;
    if (!data && size) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "spm: NULL model data");
    if (size > ((size_t)1 << 31)) return cvx_fail(err, CVX_ERR_FORMAT, "spm: model too large (%zu bytes)", size);
    cvx_spm *m = calloc(1, sizeof *m);
    if (!m) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory");
    m->buf = malloc(size ? size : 1);
    if (!m->buf) {
        free(m);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory");
    }
    if (size) memcpy(m->buf, data, size);
    m->size = size;
    cvx_status st = parse_model(m, err);
    if (st) {
        cvx_spm_free(m);
        return st;
    }
    *out = m;
    return CVX_OK;
}

cvx_status cvx_spm_load_file(const char *path, cvx_spm **out, cvx_error *err) {
    *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return cvx_fail(err, CVX_ERR_IO, "spm: cannot open %s: %s", path, strerror(errno));
    uint8_t *data = NULL;
    size_t n = 0, cap = 0;
    for (;;) {
        if (n == cap) {
            if (cap >= ((size_t)1 << 31)) {
                free(data);
                fclose(f);
                return cvx_fail(err, CVX_ERR_FORMAT, "spm: %s is too large for a model", path);
            }
            cap = cap ? cap * 2 : 1 << 20;
            uint8_t *d = realloc(data, cap);
            if (!d) {
                free(data);
                fclose(f);
                return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory reading %s", path);
            }
            data = d;
        }
        size_t got = fread(data + n, 1, cap - n, f);
        n += got;
        if (got == 0) break;
    }
    int bad = ferror(f);
    fclose(f);
    if (bad) {
        free(data);
        return cvx_fail(err, CVX_ERR_IO, "spm: error reading %s", path);
    }
    cvx_status st = cvx_spm_load_memory(data, n, out, err);
    free(data);
    if (st) cvx_error_prefix(err, "%s: ", path);
    return st;
}

cvx_spm_model_type cvx_spm_model(const cvx_spm *m) { return (cvx_spm_model_type)m->model_type; }

const char *cvx_spm_model_name(const cvx_spm *m) {
    static const char *const names[] = {"", "unigram", "bpe", "word", "char"};
    return names[m->model_type];
}

int cvx_spm_piece_count(const cvx_spm *m) { return m->n_pieces; }

const char *cvx_spm_piece(const cvx_spm *m, int id, size_t *len) {
    if (id < 0 || id >= m->n_pieces) return NULL;
    *len = m->pieces[id].len;
    return (const char *)m->buf + m->pieces[id].off;
}

float cvx_spm_piece_score(const cvx_spm *m, int id) {
    return id >= 0 && id < m->n_pieces ? m->pieces[id].score : 0.0f;
}

cvx_spm_piece_type cvx_spm_piece_kind(const cvx_spm *m, int id) {
    return id >= 0 && id < m->n_pieces ? (cvx_spm_piece_type)m->pieces[id].type : (cvx_spm_piece_type)0;
}

int cvx_spm_piece_to_id(const cvx_spm *m, const char *piece, size_t len) {
    int id = strmap_find(m, &m->reserved, (const uint8_t *)piece, len);
    if (id < 0) id = strmap_find(m, &m->normal, (const uint8_t *)piece, len);
    return id < 0 ? m->unk_id : id;
}

int cvx_spm_unk_id(const cvx_spm *m) { return m->unk_id; }
int cvx_spm_bos_id(const cvx_spm *m) { return m->bos_id; }
int cvx_spm_eos_id(const cvx_spm *m) { return m->eos_id; }
int cvx_spm_pad_id(const cvx_spm *m) { return m->pad_id; }
int cvx_spm_byte_fallback(const cvx_spm *m) { return m->byte_fallback; }
const char *cvx_spm_normalizer_name(const cvx_spm *m) { return m->name; }

/* ---- normalizer ------------------------------------------------------------------------------------- */

/* sentencepiece's string_util::DecodeUTF8 validity: returns the length of a valid character at s, or 0. */
static size_t utf8_valid_len(const uint8_t *s, size_t n) {
    uint32_t c;
    if (s[0] < 0x80) return 1;
    if (n >= 2 && (s[0] & 0xE0) == 0xC0) {
        c = (uint32_t)(s[0] & 0x1F) << 6 | (s[1] & 0x3F);
        if ((s[1] & 0xC0) == 0x80 && c >= 0x80) return 2;
    } else if (n >= 3 && (s[0] & 0xF0) == 0xE0) {
        c = (uint32_t)(s[0] & 0x0F) << 12 | (uint32_t)(s[1] & 0x3F) << 6 | (s[2] & 0x3F);
        if ((s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && c >= 0x800 && (c < 0xD800 || c >= 0xE000)) return 3;
    } else if (n >= 4 && (s[0] & 0xF8) == 0xF0) {
        c = (uint32_t)(s[0] & 0x07) << 18 | (uint32_t)(s[1] & 0x3F) << 12 | (uint32_t)(s[2] & 0x3F) << 6 |
            (s[3] & 0x3F);
        if ((s[1] & 0xC0) == 0x80 && (s[2] & 0xC0) == 0x80 && (s[3] & 0xC0) == 0x80 && c >= 0x10000 &&
            c <= 0x10FFFF)
            return 4;
    }
    return 0;
}

/* string_util::OneCharLen: the length a lead byte announces. */
static inline size_t one_char_len(uint8_t b) { return "\1\1\1\1\1\1\1\1\1\1\1\1\2\2\3\4"[b >> 4]; }

/* The longest USER_DEFINED piece that prefixes s, or 0. */
static size_t user_defined_prefix(const cvx_spm *m, const uint8_t *s, size_t n) {
    uint32_t node = 0;
    size_t best = 0;
    for (size_t i = 0; i < n; i++) {
        node = trie_next(&m->trie, node, s[i]);
        if (!node) break;
        int32_t id = m->trie.value[node];
        if (id >= 0 && m->pieces[id].type == CVX_SPM_USER_DEFINED) best = i + 1;
    }
    return best;
}

/* darts-clone DoubleArray::commonPrefixSearch over the charsmap, keeping what Normalizer::NormalizePrefix keeps:
 * the longest of the first 32 matches. Indices outside the array end the search (never read). */
static size_t charsmap_longest(const cvx_spm *m, const uint8_t *key, size_t n, uint32_t *value) {
    const uint32_t *a = m->units;
    size_t na = m->n_units;
    if (na == 0) return 0;
#define DA_OFFSET(u) ((size_t)((u) >> 10) << (((u) & (1u << 9)) >> 6))
#define DA_LABEL(u) ((u) & ((1u << 31) | 0xFFu))
#define DA_HAS_LEAF(u) (((u) >> 8) & 1u)
#define DA_VALUE(u) ((u) & ((1u << 31) - 1))
    size_t pos = DA_OFFSET(a[0]);
    size_t best = 0, found = 0;
    for (size_t i = 0; i < n; i++) {
        pos ^= key[i];
        if (pos >= na) break;
        uint32_t u = a[pos];
        if (DA_LABEL(u) != key[i]) break;
        pos ^= DA_OFFSET(u);
        if (DA_HAS_LEAF(u)) {
            if (pos >= na) break;
            if (found < 32) {
                best = i + 1;
                *value = DA_VALUE(a[pos]);
            }
            found++;
        }
    }
    return best;
#undef DA_OFFSET
#undef DA_LABEL
#undef DA_HAS_LEAF
#undef DA_VALUE
}

/* Normalizer::NormalizePrefix: what the first characters of s become, and how many bytes they are. */
static cvx_status normalize_prefix(const cvx_spm *m, const uint8_t *s, size_t n, const char **rep, size_t *rep_len,
                                   size_t *consumed, cvx_error *err) {
    if (m->has_user_defined) {
        size_t ud = user_defined_prefix(m, s, n);
        if (ud) {
            *rep = (const char *)s;
            *rep_len = *consumed = ud;
            return CVX_OK;
        }
    }
    uint32_t value = 0;
    size_t len = m->units ? charsmap_longest(m, s, n, &value) : 0;
    if (len) {
        const char *z = value < m->cm_strings_len ? memchr(m->cm_strings + value, 0, m->cm_strings_len - value) : NULL;
        if (!z)
            return cvx_fail(err, CVX_ERR_FORMAT, "spm: charsmap replacement at %u is outside its string blob",
                            value);
        *rep = m->cm_strings + value;
        *rep_len = (size_t)(z - *rep);
        *consumed = len;
        return CVX_OK;
    }
    size_t cl = utf8_valid_len(s, n);
    if (cl) {
        *rep = (const char *)s;
        *rep_len = *consumed = cl;
    } else { /* malformed UTF-8: U+FFFD, one byte consumed */
        *rep = "\xEF\xBF\xBD";
        *rep_len = 3;
        *consumed = 1;
    }
    return CVX_OK;
}

static cvx_status ensure_normalized(cvx_spm_result *r, size_t need, cvx_error *err) {
    if (need + 1 <= r->normalized_cap) return CVX_OK;
    /* lattice positions and token spans are 32-bit */
    if (need >= (size_t)INT32_MAX)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "spm: the normalized text would exceed 2 GiB");
    size_t cap = r->normalized_cap ? r->normalized_cap : 256;
    while (cap < need + 1) cap *= 2;
    char *p = realloc(r->normalized, cap);
    if (!p) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (normalized text)");
    r->normalized = p;
    r->normalized_cap = cap;
    return CVX_OK;
}

static cvx_status append_ws(const cvx_spm *m, cvx_spm_result *r, cvx_error *err) {
    size_t n = m->escape_ws ? 3 : 1;
    cvx_status st = ensure_normalized(r, r->normalized_len + n, err);
    if (st) return st;
    memcpy(r->normalized + r->normalized_len, m->escape_ws ? kSpace : " ", n);
    r->normalized_len += n;
    return CVX_OK;
}

static cvx_status normalize_text(const cvx_spm *m, const char *text, size_t len, cvx_spm_result *r, cvx_error *err) {
    const uint8_t *in = (const uint8_t *)text;
    cvx_status st;
    r->normalized_len = 0;
    r->n_tokens = 0;
    if (len > CVX_SPM_MAX_INPUT)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "spm: text of %zu bytes exceeds the %zu-byte limit", len,
                        CVX_SPM_MAX_INPUT);
    if (!text && len) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "spm: NULL text");
    if ((st = ensure_normalized(r, len + len / 4 + 16, err))) return st;
    r->normalized[0] = 0;
    const char *rep;
    size_t rep_len, used;

    if (m->remove_extra_ws) { /* leading whitespace */
        while (len) {
            if ((st = normalize_prefix(m, in, len, &rep, &rep_len, &used, err))) return st;
            if (rep_len != 1 || rep[0] != ' ') break;
            in += used;
            len -= used;
        }
    }
    if (len == 0) {
        r->normalized[0] = 0;
        return CVX_OK;
    }
    if (!m->treat_ws_as_suffix && m->add_dummy_prefix && (st = append_ws(m, r, err))) return st;

    int prev_space = m->remove_extra_ws;
    while (len) {
        if ((st = normalize_prefix(m, in, len, &rep, &rep_len, &used, err))) return st;
        while (prev_space && rep_len && rep[0] == ' ') {
            rep++;
            rep_len--;
        }
        if (rep_len) {
            if ((st = ensure_normalized(r, r->normalized_len + rep_len * 3, err))) return st;
            char *o = r->normalized + r->normalized_len;
            for (size_t i = 0; i < rep_len; i++) {
                if (m->escape_ws && rep[i] == ' ') {
                    memcpy(o, kSpace, 3);
                    o += 3;
                } else {
                    *o++ = rep[i];
                }
            }
            r->normalized_len = (size_t)(o - r->normalized);
            prev_space = rep[rep_len - 1] == ' ';
        }
        in += used;
        len -= used;
        if (!m->remove_extra_ws) prev_space = 0;
    }
    if (m->remove_extra_ws) { /* trailing whitespace (an input U+2581 the charsmap kept counts too) */
        const char *sp = m->escape_ws ? kSpace : " ";
        size_t sn = m->escape_ws ? 3 : 1;
        while (r->normalized_len >= sn && !memcmp(r->normalized + r->normalized_len - sn, sp, sn))
            r->normalized_len -= sn;
    }
    if (m->treat_ws_as_suffix && m->add_dummy_prefix && (st = append_ws(m, r, err))) return st;
    r->normalized[r->normalized_len] = 0;
    return CVX_OK;
}

cvx_status cvx_spm_normalize(const cvx_spm *m, const char *text, size_t len, cvx_spm_result *r, cvx_error *err) {
    cvx_status st = normalize_text(m, text, len, r, err);
    if (st) { /* leave an empty, terminated text behind, never a partial one */
        r->normalized_len = 0;
        if (r->normalized) r->normalized[0] = 0;
    }
    return st;
}

/* ---- encoders --------------------------------------------------------------------------------------- */

typedef struct {
    uint32_t off, len;
    int32_t id;
} raw_piece;

static cvx_status push_token(cvx_spm_result *r, int32_t id, size_t off, size_t len, cvx_error *err) {
    if (r->n_tokens == r->tokens_cap) {
        size_t cap = r->tokens_cap ? r->tokens_cap * 2 : 64;
        cvx_spm_token *t = realloc(r->tokens, cap * sizeof *t);
        if (!t) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (tokens)");
        r->tokens = t;
        r->tokens_cap = cap;
    }
    r->tokens[r->n_tokens++] = (cvx_spm_token){id, (uint32_t)off, (uint32_t)len};
    return CVX_OK;
}

/* PopulateSentencePieceText: unknown pieces become bytes (byte fallback) or merge with a preceding unknown. */
static cvx_status emit(const cvx_spm *m, cvx_spm_result *r, int *prev_unk, int32_t id, size_t off, size_t len,
                       cvx_error *err) {
    if (len == 0) return cvx_fail(err, CVX_ERR_INTERNAL, "spm: empty piece");
    if (id < 0 || id >= m->n_pieces) return cvx_fail(err, CVX_ERR_INTERNAL, "spm: piece id %d out of range", id);
    int type = m->pieces[id].type;
    /* The reference gives a control piece no text, then fails its "all characters consumed" check. */
    if (type == CVX_SPM_CONTROL)
        return cvx_fail(err, CVX_ERR_UNSUPPORTED, "spm: text segment \"%.*s\" is the control piece %d",
                        (int)(len > 64 ? 64 : len), r->normalized + off, id);
    int unk = type == CVX_SPM_UNKNOWN;
    cvx_status st = CVX_OK;
    if (unk && m->byte_fallback) {
        for (size_t i = 0; i < len && !st; i++)
            st = push_token(r, m->byte_ids[(uint8_t)r->normalized[off + i]], off + i, 1, err);
    } else if (unk && *prev_unk) {
        r->tokens[r->n_tokens - 1].length += (uint32_t)len;
    } else {
        st = push_token(r, id, off, len, err);
    }
    *prev_unk = unk;
    return st;
}

static cvx_status ensure_scratch(cvx_spm_result *r, size_t bytes, cvx_error *err) {
    if (bytes <= r->scratch_cap) return CVX_OK;
    void *p = malloc(bytes);
    if (!p) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (%zu bytes of lattice)", bytes);
    free(r->scratch);
    r->scratch = p;
    r->scratch_cap = bytes;
    return CVX_OK;
}

typedef struct {
    float score; /* best path score ending here */
    int32_t start; /* where its last piece starts, -1 = unreached */
    int32_t id;
} best_node;

static cvx_status encode_unigram(const cvx_spm *m, cvx_spm_result *r, cvx_error *err) {
    const uint8_t *s = (const uint8_t *)r->normalized;
    const size_t size = r->normalized_len;
    cvx_status st = ensure_scratch(r, (size + 1) * sizeof(best_node) + size * sizeof(raw_piece), err);
    if (st) return st;
    best_node *best = r->scratch;
    for (size_t i = 0; i <= size; i++) best[i] = (best_node){0.0f, -1, -1};
    const float unk_score = m->min_score - 10.0f; /* kUnkPenalty */
    const spm_trie *t = &m->trie;

    for (size_t start = 0; start < size;) {
        const float here = best[start].score;
        size_t mblen = one_char_len(s[start]);
        if (mblen > size - start) mblen = size - start;
        int single = 0;
        uint32_t node = 0;
        for (size_t k = start; k < size; k++) {
            node = trie_next(t, node, s[k]);
            if (!node) break;
            int32_t id = t->value[node];
            if (id < 0) continue;
            const spm_piece *p = &m->pieces[id];
            if (p->type == CVX_SPM_UNUSED) continue;
            size_t length = k + 1 - start;
            best_node *target = &best[k + 1];
            double score = p->type == CVX_SPM_USER_DEFINED ? (double)((float)length * m->max_score) - 0.1
                                                            : (double)p->score;
            double cand = score + (double)here;
            if (target->start < 0 || cand > (double)target->score) {
                target->score = (float)cand;
                target->start = (int32_t)start;
                target->id = id;
            }
            if (length == mblen) single = 1;
        }
        if (!single) {
            best_node *target = &best[start + mblen];
            float cand = unk_score + here;
            if (target->start < 0 || cand > target->score) {
                target->score = cand;
                target->start = (int32_t)start;
                target->id = m->unk_id;
            }
        }
        start += mblen;
    }

    /* Backtrack into the tail of the scratch (pieces come out last to first), then emit in order. */
    raw_piece *raw = (raw_piece *)(best + size + 1);
    size_t n = 0;
    for (size_t end = size; end > 0; end = (size_t)best[end].start) {
        size_t b = (size_t)best[end].start;
        raw[size - 1 - n++] = (raw_piece){(uint32_t)b, (uint32_t)(end - b), best[end].id};
    }
    int prev_unk = 0;
    for (size_t j = size - n; j < size && !st; j++) st = emit(m, r, &prev_unk, raw[j].id, raw[j].off, raw[j].len, err);
    return st;
}

/* ---- BPE (bpe::Model::SampleEncode with alpha = 0) ---- */

typedef struct {
    int32_t prev, next;
    uint32_t off, len;
    int freeze;
} bpe_symbol;

typedef struct {
    int32_t left, right;
    float score;
    uint32_t size;
} bpe_pair;

/* Max-heap order: higher score first, then the smaller left index. */
static int bpe_before(const bpe_pair *a, const bpe_pair *b) {
    return a->score > b->score || (a->score == b->score && a->left < b->left);
}

typedef struct {
    bpe_pair *heap;
    size_t n, cap;
} bpe_agenda;

static int agenda_push(bpe_agenda *q, bpe_pair p) {
    if (q->n == q->cap) {
        size_t cap = q->cap ? q->cap * 2 : 64;
        bpe_pair *h = realloc(q->heap, cap * sizeof *h);
        if (!h) return -1;
        q->heap = h;
        q->cap = cap;
    }
    size_t i = q->n++;
    while (i > 0) {
        size_t parent = (i - 1) / 2;
        if (!bpe_before(&p, &q->heap[parent])) break;
        q->heap[i] = q->heap[parent];
        i = parent;
    }
    q->heap[i] = p;
    return 0;
}

static bpe_pair agenda_pop(bpe_agenda *q) {
    bpe_pair top = q->heap[0], last = q->heap[--q->n];
    size_t i = 0;
    for (;;) {
        size_t c = 2 * i + 1;
        if (c >= q->n) break;
        if (c + 1 < q->n && bpe_before(&q->heap[c + 1], &q->heap[c])) c++;
        if (!bpe_before(&q->heap[c], &last)) break;
        q->heap[i] = q->heap[c];
        i = c;
    }
    if (q->n) q->heap[i] = last;
    return top;
}

/* rev_merge: merged UNUSED piece string -> the length of its left part (last write wins, as the reference's
 * map assignment does). */
typedef struct {
    uint32_t off, len, left_len;
    int used;
} rev_entry;

typedef struct {
    rev_entry *e;
    size_t mask, n;
} rev_map;

static rev_entry *rev_find(rev_map *mp, const char *text, uint32_t off, uint32_t len) {
    for (size_t i = hash_bytes((const uint8_t *)text + off, len) & mp->mask;; i = (i + 1) & mp->mask) {
        rev_entry *e = &mp->e[i];
        if (!e->used) return e;
        if (e->len == len && !memcmp(text + e->off, text + off, len)) return e;
    }
}

typedef struct {
    const cvx_spm *m;
    const char *text;
    bpe_symbol *sym;
    bpe_agenda q;
    rev_map rev;
    int oom;
} bpe_state;

static void bpe_maybe_add(bpe_state *b, int32_t left, int32_t right) {
    if (left < 0 || right < 0 || b->sym[left].freeze || b->sym[right].freeze) return;
    uint32_t off = b->sym[left].off, len = b->sym[left].len + b->sym[right].len;
    int id = strmap_find(b->m, &b->m->normal, (const uint8_t *)b->text + off, len);
    if (id < 0) return;
    if (agenda_push(&b->q, (bpe_pair){left, right, b->m->pieces[id].score, len})) {
        b->oom = 1;
        return;
    }
    if (b->m->pieces[id].type == CVX_SPM_UNUSED) {
        if ((b->rev.n + 1) * 2 > b->rev.mask + 1) {
            size_t cap = (b->rev.mask + 1) * 2;
            rev_map nm = {calloc(cap, sizeof(rev_entry)), cap - 1, b->rev.n};
            if (!nm.e) {
                b->oom = 1;
                return;
            }
            for (size_t i = 0; i <= b->rev.mask; i++)
                if (b->rev.e[i].used) *rev_find(&nm, b->text, b->rev.e[i].off, b->rev.e[i].len) = b->rev.e[i];
            free(b->rev.e);
            b->rev = nm;
        }
        rev_entry *e = rev_find(&b->rev, b->text, off, len);
        if (!e->used) b->rev.n++;
        *e = (rev_entry){off, len, b->sym[left].len, 1};
    }
}

static cvx_status encode_bpe(const cvx_spm *m, cvx_spm_result *r, cvx_error *err) {
    const size_t size = r->normalized_len;
    const char *text = r->normalized;
    cvx_status st = CVX_OK;
    bpe_state b = {m, text, NULL, {NULL, 0, 0}, {calloc(64, sizeof(rev_entry)), 63, 0}, 0};
    raw_piece *stack = NULL;
    b.sym = malloc((size ? size : 1) * sizeof *b.sym);
    if (!b.sym || !b.rev.e) {
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (bpe)");
        goto done;
    }
    int32_t n = 0;
    for (size_t pos = 0; pos < size; n++) {
        bpe_symbol *s = &b.sym[n];
        size_t ud = m->has_user_defined ? user_defined_prefix(m, (const uint8_t *)text + pos, size - pos) : 0;
        size_t len = ud ? ud : one_char_len((uint8_t)text[pos]);
        if (len > size - pos) len = size - pos;
        *s = (bpe_symbol){n - 1, pos + len < size ? n + 1 : -1, (uint32_t)pos, (uint32_t)len, ud != 0};
        pos += len;
    }
    for (int32_t i = 1; i < n; i++) bpe_maybe_add(&b, i - 1, i);
    while (b.q.n && !b.oom) {
        bpe_pair top = agenda_pop(&b.q);
        bpe_symbol *l = &b.sym[top.left], *rr = &b.sym[top.right];
        if (l->len == 0 || rr->len == 0 || l->len + rr->len != top.size) continue; /* stale */
        l->len += rr->len;
        l->next = rr->next;
        if (rr->next >= 0) b.sym[rr->next].prev = top.left;
        rr->len = 0;
        bpe_maybe_add(&b, l->prev, top.left);
        bpe_maybe_add(&b, top.left, l->next);
    }
    if (b.oom) {
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (bpe)");
        goto done;
    }
    /* Resegment UNUSED pieces into the pieces they were merged from (explicit stack, left part on top). */
    stack = malloc((size ? size : 1) * sizeof *stack);
    if (!stack) {
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "spm: out of memory (bpe)");
        goto done;
    }
    int prev_unk = 0;
    for (int32_t i = n ? 0 : -1; i != -1 && !st; i = b.sym[i].next) {
        size_t sp = 0;
        stack[sp++] = (raw_piece){b.sym[i].off, b.sym[i].len, 0};
        while (sp && !st) {
            raw_piece w = stack[--sp];
            int id = cvx_spm_piece_to_id(m, text + w.off, w.len);
            rev_entry *e = m->pieces[id].type == CVX_SPM_UNUSED ? rev_find(&b.rev, text, w.off, w.len) : NULL;
            if (!e || !e->used || e->left_len == 0 || e->left_len >= w.len) {
                st = emit(m, r, &prev_unk, id, w.off, w.len, err);
                continue;
            }
            stack[sp++] = (raw_piece){w.off + e->left_len, w.len - e->left_len, 0};
            stack[sp++] = (raw_piece){w.off, e->left_len, 0};
        }
    }
done:
    free(stack);
    free(b.sym);
    free(b.q.heap);
    free(b.rev.e);
    return st;
}

static cvx_status encode_word(const cvx_spm *m, cvx_spm_result *r, cvx_error *err) {
    /* SplitIntoWords(normalized): a word starts at the beginning and at every U+2581. */
    const char *s = r->normalized;
    const size_t size = r->normalized_len;
    int prev_unk = 0;
    size_t word = 0;
    for (size_t pos = 0; pos < size;) {
        size_t len = one_char_len((uint8_t)s[pos]);
        if (len > size - pos) len = size - pos;
        if (pos > 0 && len == 3 && !memcmp(s + pos, kSpace, 3)) {
            cvx_status st = emit(m, r, &prev_unk, cvx_spm_piece_to_id(m, s + word, pos - word), word, pos - word, err);
            if (st) return st;
            word = pos;
        }
        pos += len;
    }
    if (size) return emit(m, r, &prev_unk, cvx_spm_piece_to_id(m, s + word, size - word), word, size - word, err);
    return CVX_OK;
}

static cvx_status encode_char(const cvx_spm *m, cvx_spm_result *r, cvx_error *err) {
    const char *s = r->normalized;
    const size_t size = r->normalized_len;
    int prev_unk = 0;
    for (size_t pos = 0; pos < size;) {
        size_t len = m->has_user_defined ? user_defined_prefix(m, (const uint8_t *)s + pos, size - pos) : 0;
        if (!len) len = one_char_len((uint8_t)s[pos]);
        if (len > size - pos) len = size - pos;
        cvx_status st = emit(m, r, &prev_unk, cvx_spm_piece_to_id(m, s + pos, len), pos, len, err);
        if (st) return st;
        pos += len;
    }
    return CVX_OK;
}

cvx_status cvx_spm_encode(const cvx_spm *m, const char *text, size_t len, cvx_spm_result *r, cvx_error *err) {
    cvx_status st = cvx_spm_normalize(m, text, len, r, err);
    if (st || r->normalized_len == 0) return st;
    switch (m->model_type) {
    case CVX_SPM_UNIGRAM: st = encode_unigram(m, r, err); break;
    case CVX_SPM_BPE: st = encode_bpe(m, r, err); break;
    case CVX_SPM_WORD: st = encode_word(m, r, err); break;
    default: st = encode_char(m, r, err);
    }
    if (st) r->n_tokens = 0; /* no partial output */
    return st;
}

const char *cvx_spm_token_text(const cvx_spm *m, const cvx_spm_result *r, size_t i, size_t *len) {
    const cvx_spm_token *t = &r->tokens[i];
    if (t->id >= 0 && t->id < m->n_pieces && m->pieces[t->id].type == CVX_SPM_BYTE) {
        *len = m->pieces[t->id].len;
        return (const char *)m->buf + m->pieces[t->id].off;
    }
    *len = t->length;
    return r->normalized + t->offset;
}

void cvx_spm_result_free(cvx_spm_result *r) {
    if (!r) return;
    free(r->normalized);
    free(r->tokens);
    free(r->scratch);
    memset(r, 0, sizeof *r);
}
