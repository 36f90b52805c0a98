/* transformers T5Tokenizer (slow, legacy=True) call path: PreTrainedTokenizer.tokenize (added-token Trie split,
 * AddedToken lstrip/rstrip), T5Tokenizer._tokenize (sentencepiece encode per chunk), build_inputs_with_special_
 * tokens (</s> unless already last) and prepare_for_model (truncation reserving one id for </s>, max_length
 * padding). See t5_tokenizer.h. */
#include "text/t5_tokenizer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/embedded.h"

struct cvx_t5_tokenizer {
    cvx_spm *spm;
    int pad_id, eos_id, unk_id;
    int n_pieces;
};

static cvx_status finish_load(cvx_spm *spm, cvx_t5_tokenizer **out, cvx_error *err) {
    cvx_t5_tokenizer *t = calloc(1, sizeof *t);
    if (!t) {
        cvx_spm_free(spm);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "t5 tokenizer: out of memory");
    }
    t->spm = spm;
    t->n_pieces = cvx_spm_piece_count(spm);
    t->pad_id = cvx_spm_piece_to_id(spm, "<pad>", 5);
    t->eos_id = cvx_spm_piece_to_id(spm, "</s>", 4);
    t->unk_id = cvx_spm_piece_to_id(spm, "<unk>", 5);
    *out = t;
    return CVX_OK;
}

cvx_status cvx_t5_tokenizer_load_file(const char *spiece_path, cvx_t5_tokenizer **out, cvx_error *err) {
    cvx_spm *spm;
    *out = NULL;
    cvx_status st = cvx_spm_load_file(spiece_path, &spm, err);
    return st ? st : finish_load(spm, out, err);
}

cvx_status cvx_t5_tokenizer_load_memory(const void *data, size_t size, cvx_t5_tokenizer **out, cvx_error *err) {
    cvx_spm *spm;
    *out = NULL;
    cvx_status st = cvx_spm_load_memory(data, size, &spm, err);
    return st ? st : finish_load(spm, out, err);
}

cvx_status cvx_t5_tokenizer_load_embedded(cvx_t5_tokenizer **out, cvx_error *err) {
    size_t size;
    const unsigned char *data = cvx_embedded_t5_spiece(&size);
    cvx_status st = cvx_t5_tokenizer_load_memory(data, size, out, err);
    if (st) cvx_error_prefix(err, "embedded spiece.model: ");
    return st;
}

void cvx_t5_tokenizer_free(cvx_t5_tokenizer *tok) {
    if (!tok) return;
    cvx_spm_free(tok->spm);
    free(tok);
}

const cvx_spm *cvx_t5_tokenizer_spm(const cvx_t5_tokenizer *tok) { return tok->spm; }
int cvx_t5_tokenizer_vocab_size(const cvx_t5_tokenizer *tok) { return tok->n_pieces + CVX_T5_EXTRA_IDS; }
int cvx_t5_tokenizer_eos_id(const cvx_t5_tokenizer *tok) { return tok->eos_id; }
int cvx_t5_tokenizer_pad_id(const cvx_t5_tokenizer *tok) { return tok->pad_id; }

const char *cvx_t5_tokenizer_id_text(const cvx_t5_tokenizer *tok, int id, char *buf, size_t *len) {
    if (id >= tok->n_pieces && id < tok->n_pieces + CVX_T5_EXTRA_IDS) {
        *len = (size_t)snprintf(buf, 16, "<extra_id_%d>", tok->n_pieces + CVX_T5_EXTRA_IDS - 1 - id);
        return buf;
    }
    return cvx_spm_piece(tok->spm, id, len);
}

void cvx_t5_tokens_free(cvx_t5_tokens *t) {
    if (!t) return;
    free(t->ids_no_special);
    free(t->piece_text);
    free(t->piece_off);
    free(t->ids);
    free(t->attention_mask);
    cvx_spm_result_free(&t->spm);
    memset(t, 0, sizeof *t);
}

/* ---- added tokens ----------------------------------------------------------------------------------- */

/* The added token starting at s (n bytes left): its length and id, and whether it strips whitespace. */
static size_t match_added(const cvx_t5_tokenizer *tok, const char *s, size_t n, int *id, int *strip) {
    *strip = 0;
    if (n >= 5 && !memcmp(s, "<pad>", 5)) return *id = tok->pad_id, 5;
    if (n >= 4 && !memcmp(s, "</s>", 4)) return *id = tok->eos_id, 4;
    if (n >= 5 && !memcmp(s, "<unk>", 5)) return *id = tok->unk_id, 5;
    if (n >= 12 && !memcmp(s, "<extra_id_", 10)) {
        size_t i = 10;
        int v = 0;
        while (i < n && i < 12 && s[i] >= '0' && s[i] <= '9') v = v * 10 + (s[i++] - '0');
        size_t digits = i - 10;
        if (digits == 0 || i >= n || s[i] != '>' || (digits == 2 && s[10] == '0')) return 0;
        *id = tok->n_pieces + CVX_T5_EXTRA_IDS - 1 - v;
        *strip = 1;
        return i + 1;
    }
    return 0;
}

/* Python str.isspace() for a code point. */
static int py_isspace(uint32_t c) {
    return (c >= 0x09 && c <= 0x0D) || (c >= 0x1C && c <= 0x20) || c == 0x85 || c == 0xA0 || c == 0x1680 ||
           (c >= 0x2000 && c <= 0x200A) || c == 0x2028 || c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

/* Decodes the UTF-8 character at s (n > 0 bytes); returns its length, or 0 when malformed. */
static size_t utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    if (s[0] < 0x80) return *cp = s[0], 1;
    size_t len = s[0] >= 0xF0 && s[0] < 0xF5 ? 4 : s[0] >= 0xE0 ? 3 : s[0] >= 0xC2 && s[0] < 0xE0 ? 2 : 0;
    if (!len || len > n || s[0] >= 0xF5) return 0;
    uint32_t c = s[0] & (0xFF >> (len + 1));
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) return 0;
        c = c << 6 | (s[i] & 0x3F);
    }
    static const uint32_t min[5] = {0, 0, 0x80, 0x800, 0x10000};
    if (c < min[len] || c > 0x10FFFF || (c >= 0xD800 && c < 0xE000)) return 0;
    *cp = c;
    return len;
}

static void lstrip(const char *s, size_t *b, size_t e) {
    while (*b < e) {
        uint32_t c;
        size_t l = utf8_decode((const unsigned char *)s + *b, e - *b, &c);
        if (!l || !py_isspace(c)) return;
        *b += l;
    }
}

static void rstrip(const char *s, size_t b, size_t *e) {
    while (*e > b) {
        size_t start = *e - 1;
        while (start > b && *e - start < 4 && ((unsigned char)s[start] & 0xC0) == 0x80) start--;
        uint32_t c;
        size_t l = utf8_decode((const unsigned char *)s + start, *e - start, &c);
        if (!l || start + l != *e || !py_isspace(c)) return;
        *e = start;
    }
}

/* ---- output buffers --------------------------------------------------------------------------------- */

static cvx_status grow(void **p, size_t *cap, size_t need, size_t elem, cvx_error *err) {
    if (need <= *cap) return CVX_OK;
    size_t c = *cap ? *cap : 64;
    while (c < need) c *= 2;
    void *q = realloc(*p, c * elem);
    if (!q) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "t5 tokenizer: out of memory");
    *p = q;
    *cap = c;
    return CVX_OK;
}

static cvx_status push(cvx_t5_tokens *o, int32_t id, const char *text, size_t len, cvx_error *err) {
    size_t used = o->piece_off[o->n_no_special];
    cvx_status st = grow((void **)&o->ids_no_special, &o->cap_no_special, o->n_no_special + 1, sizeof(int32_t), err);
    if (!st) st = grow((void **)&o->piece_off, &o->cap_off, o->n_no_special + 2, sizeof(uint32_t), err);
    if (!st) st = grow((void **)&o->piece_text, &o->cap_text, used + len + 1, 1, err);
    if (st) return st;
    if (used + len > UINT32_MAX) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "t5 tokenizer: text too long");
    memcpy(o->piece_text + used, text, len);
    o->piece_text[used + len] = 0;
    o->ids_no_special[o->n_no_special++] = id;
    o->piece_off[o->n_no_special] = (uint32_t)(used + len);
    return CVX_OK;
}

static cvx_status tokenize(const cvx_t5_tokenizer *tok, const char *text, size_t len, int max_length,
                           cvx_t5_tokens *o, cvx_error *err) {
    cvx_status st;
    o->n_no_special = o->n_ids = o->n_unpadded = 0;
    o->truncated = 0;
    if (!text && len) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "t5 tokenizer: NULL text");
    if (len > CVX_SPM_MAX_INPUT)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "t5 tokenizer: text of %zu bytes exceeds the %zu-byte limit",
                        len, CVX_SPM_MAX_INPUT);
    if ((st = grow((void **)&o->piece_off, &o->cap_off, 1, sizeof(uint32_t), err))) return st;
    o->piece_off[0] = 0;

    /* Split on added tokens; a text chunk [b, e) runs up to the next one. Each extra id strips the whitespace
     * of its neighbours: the chunk before loses its trailing, the chunk after its leading whitespace. */
    size_t chunk = 0;   /* start of the pending text chunk */
    int strip_next = 0; /* the pending chunk follows an extra id */
    for (size_t i = 0; i <= len; i++) {
        int id = -1, strip = 0;
        size_t tl = 0;
        if (i < len && text[i] == '<') tl = match_added(tok, text + i, len - i, &id, &strip);
        if (i < len && !tl) continue;
        size_t b = chunk, e = i;
        if (strip_next) lstrip(text, &b, e);
        if (strip) rstrip(text, b, &e);
        if (e > b) {
            if ((st = cvx_spm_encode(tok->spm, text + b, e - b, &o->spm, err))) return st;
            for (size_t k = 0; k < o->spm.n_tokens; k++) {
                size_t pl;
                const char *p = cvx_spm_token_text(tok->spm, &o->spm, k, &pl);
                if ((st = push(o, o->spm.tokens[k].id, p, pl, err))) return st;
            }
        }
        if (i == len) break;
        if ((st = push(o, id, text + i, tl, err))) return st;
        strip_next = strip;
        chunk = i + tl;
        i += tl - 1;
    }

    /* Truncation keeps room for </s> even when the text already ends with one (prepare_for_model counts the
     * special tokens of an empty sequence), then </s> is added unless already last. */
    size_t keep = o->n_no_special;
    if (max_length > 0 && keep + 1 > (size_t)max_length) {
        keep = (size_t)max_length - 1;
        o->truncated = 1;
    }
    size_t n = keep + (keep == 0 || o->ids_no_special[keep - 1] != tok->eos_id);
    size_t total = max_length > 0 ? (size_t)max_length : n;
    if ((st = grow((void **)&o->ids, &o->cap_ids, total, sizeof(int32_t), err))) return st;
    if ((st = grow((void **)&o->attention_mask, &o->cap_mask, total, sizeof(int32_t), err))) return st;
    if (keep) memcpy(o->ids, o->ids_no_special, keep * sizeof(int32_t));
    if (n > keep) o->ids[keep] = tok->eos_id;
    for (size_t i = 0; i < total; i++) {
        if (i >= n) o->ids[i] = tok->pad_id;
        o->attention_mask[i] = i < n;
    }
    o->n_unpadded = n;
    o->n_ids = total;
    return CVX_OK;
}

cvx_status cvx_t5_tokenize(const cvx_t5_tokenizer *tok, const char *text, size_t len, int max_length,
                           cvx_t5_tokens *o, cvx_error *err) {
    cvx_status st = tokenize(tok, text, len, max_length, o, err);
    if (st) o->n_no_special = o->n_ids = o->n_unpadded = 0; /* no partial output */
    return st;
}
