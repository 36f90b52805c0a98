/* libFuzzer target for text encoding: the input is arbitrary bytes (invalid UTF-8, NULs, literal special
 * tokens). The first byte picks the path: the T5 tokenizer call (real vocabulary, embedded) with a max_length
 * taken from the second byte, or the plain sentencepiece encode with the real vocabulary or, when run from the
 * source root, one of the small golden models (byte fallback, identity normalization, user-defined symbols).
 * Checks the output's invariants: tokens tile the normalized text, ids are in range, the T5 ids end with </s>
 * before the padding and the mask matches. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/spm.h"
#include "text/t5_tokenizer.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static cvx_t5_tokenizer *t5;
static cvx_spm *small[3];

static void init(void) {
    cvx_error err;
    if (cvx_t5_tokenizer_load_embedded(&t5, &err)) abort();
    static const char *const files[] = {
        "tests/data/golden/tokenizer/spm_small/unigram_nfkc_bytefallback_v700.model",
        "tests/data/golden/tokenizer/spm_small/unigram_identity_v400.model",
        "tests/data/golden/tokenizer/spm_small/unigram_nmt_nfkc_v800.model",
    };
    for (int i = 0; i < 3; i++)
        if (cvx_spm_load_file(files[i], &small[i], &err)) small[i] = NULL;
}

static void check_spm(const cvx_spm *m, const cvx_spm_result *r) {
    size_t pos = 0;
    for (size_t i = 0; i < r->n_tokens; i++) {
        const cvx_spm_token *t = &r->tokens[i];
        if (t->id < 0 || t->id >= cvx_spm_piece_count(m) || t->offset != pos || !t->length) abort();
        pos += t->length;
        size_t len;
        const char *p = cvx_spm_token_text(m, r, i, &len);
        /* a known piece's text is its span of the normalized text */
        if (cvx_spm_piece_kind(m, t->id) == CVX_SPM_NORMAL &&
            (len != t->length || memcmp(p, r->normalized + t->offset, len)))
            abort();
    }
    if (pos != r->normalized_len || r->normalized[r->normalized_len] != 0) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!t5) init();
    if (size < 2) return 0;
    int which = data[0] % 5, max_length = data[1];
    uint8_t *text = malloc(size - 2 ? size - 2 : 1); /* exact size: ASan sees an over-read */
    if (!text) return 0;
    memcpy(text, data + 2, size - 2);
    size_t len = size - 2;
    cvx_error err;
    cvx_error_clear(&err);
    if (which == 0) {
        cvx_t5_tokens o = {0};
        if (cvx_t5_tokenize(t5, (const char *)text, len, max_length, &o, &err)) abort();
        if (max_length > 0 && (o.n_ids != (size_t)max_length || o.n_unpadded > o.n_ids)) abort();
        if (!o.n_unpadded || o.ids[o.n_unpadded - 1] != cvx_t5_tokenizer_eos_id(t5)) abort();
        if (o.truncated != (max_length > 0 && o.n_no_special + 1 > (size_t)max_length)) abort();
        for (size_t i = 0; i < o.n_ids; i++) {
            if (o.ids[i] < 0 || o.ids[i] >= cvx_t5_tokenizer_vocab_size(t5)) abort();
            if (o.attention_mask[i] != (i < o.n_unpadded)) abort();
        }
        cvx_t5_tokens_free(&o);
    } else {
        const cvx_spm *m = which == 1 ? cvx_t5_tokenizer_spm(t5) : small[which - 2];
        if (m) {
            cvx_spm_result r = {0};
            if (cvx_spm_encode(m, (const char *)text, len, &r, &err)) abort();
            check_spm(m, &r);
            cvx_spm_result_free(&r);
        }
    }
    free(text);
    return 0;
}
