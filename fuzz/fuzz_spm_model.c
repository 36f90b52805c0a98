/* libFuzzer target for the SentencePiece ModelProto reader (cvx_spm_load_memory): any input must be rejected
 * with a message or give a model that encodes text without reading outside its buffers. Whatever loads is
 * driven through normalization and encoding of a few texts that reach every path (user-defined symbols,
 * unknown runs, invalid UTF-8, whitespace runs, U+2581), and every output token is checked to cover its span. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "text/spm.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_result(const cvx_spm *m, const cvx_spm_result *r) {
    size_t pos = 0;
    for (size_t i = 0; i < r->n_tokens; i++) {
        const cvx_spm_token *t = &r->tokens[i];
        if (t->id < 0 || t->id >= cvx_spm_piece_count(m)) abort();
        if (t->offset != pos || t->length == 0) abort(); /* tokens tile the normalized text */
        pos += t->length;
        size_t len;
        const char *p = cvx_spm_token_text(m, r, i, &len);
        volatile char sink = len ? p[len - 1] : 0;
        (void)sink;
    }
    if (r->n_tokens && pos != r->normalized_len) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    uint8_t *buf = malloc(size ? size : 1); /* exactly `size` bytes so ASan sees a read past the end */
    if (!buf) return 0;
    memcpy(buf, data, size);
    cvx_error err;
    cvx_error_clear(&err);
    cvx_spm *m = NULL;
    if (cvx_spm_load_memory(buf, size, &m, &err) != CVX_OK) {
        if (!err.message[0] || m) abort();
        free(buf);
        return 0;
    }
    free(buf); /* the model keeps its own copy */
#define TEXT(s) {s, sizeof(s) - 1}
    static const struct {
        const char *s;
        size_t n;
    } texts[] = {
        TEXT("Hello world"), TEXT("  a  b\t\tc  "), TEXT("\xe2\x96\x81x \xe2\x96\x81"), TEXT("<sep>[MASK]<x>ab"),
        TEXT("\xff\xfe\xc0\x80\0z"),
        TEXT("\xe6\x9d\xb1\xe4\xba\xac \xf0\x9f\x98\x80\xf0\x9f\x98\x80 caf\xc3\xa9 \xef\xbc\xa1\xc2\xbd"),
    };
#undef TEXT
    cvx_spm_result r = {0};
    for (size_t i = 0; i < sizeof texts / sizeof texts[0]; i++) {
        cvx_error_clear(&err);
        if (cvx_spm_encode(m, texts[i].s, texts[i].n, &r, &err) == CVX_OK) check_result(m, &r);
        else if (!err.message[0]) abort();
    }
    /* the input itself as text */
    if (cvx_spm_encode(m, (const char *)data, size < 4096 ? size : 4096, &r, &err) == CVX_OK) check_result(m, &r);
    cvx_spm_result_free(&r);
    cvx_spm_free(m);
    return 0;
}
