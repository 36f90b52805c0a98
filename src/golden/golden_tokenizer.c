/* Golden handler for `tokenizer/` case sets (cases.json; see ../shared/golden/README.md, "Tokenizer"):
 *  - a T5 set (no meta.models): every case's prompt through the T5Tokenizer call path with meta.max_length,
 *    using spiece.model from the case folder -> ids, ids_unpadded, ids_no_special, ids_untruncated_with_eos,
 *    num_tokens_untruncated, truncated, attention_mask;
 *  - a plain sentencepiece set (meta.models: name -> {file}): every case's text encoded with its model ->
 *    ids, pieces, normalized.
 * Texts are read from the *_utf8_hex fields when present (exact bytes, NULs included). The runner compares
 * the fields check.compare names against each case's own values. */
#include <stdlib.h>
#include <string.h>

#include "golden/golden.h"
#include "text/spm.h"
#include "text/t5_tokenizer.h"

static int hex_val(char ch) {
    if (ch >= '0' && ch <= '9') return ch - '0';
    if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
    if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
    return -1;
}

/* The case's text: hex_field decoded when present, else text_field. *buf is malloc'd (caller frees). */
static cvx_status case_text(cvx_golden_case *c, json_t *cs, size_t index, const char *text_field,
                            const char *hex_field, char **buf, size_t *len) {
    json_t *hex = json_object_get(cs, hex_field);
    *buf = NULL;
    if (json_is_string(hex)) {
        const char *h = json_string_value(hex);
        size_t n = json_string_length(hex);
        if (n % 2) return cvx_fail(&c->err, CVX_ERR_FORMAT, "case %zu: odd-length %s", index, hex_field);
        *buf = malloc(n / 2 + 1);
        if (!*buf) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        for (size_t i = 0; i < n / 2; i++) {
            int hi = hex_val(h[2 * i]), lo = hex_val(h[2 * i + 1]);
            if (hi < 0 || lo < 0) {
                free(*buf);
                *buf = NULL;
                return cvx_fail(&c->err, CVX_ERR_FORMAT, "case %zu: bad hex digit in %s", index, hex_field);
            }
            (*buf)[i] = (char)(hi << 4 | lo);
        }
        *len = n / 2;
        return CVX_OK;
    }
    json_t *t = json_object_get(cs, text_field);
    if (!json_is_string(t)) return cvx_fail(&c->err, CVX_ERR_FORMAT, "case %zu: no \"%s\"", index, text_field);
    *len = json_string_length(t);
    *buf = malloc(*len + 1);
    if (!*buf) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    memcpy(*buf, json_string_value(t), *len);
    return CVX_OK;
}

static json_t *int_array(const int32_t *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static cvx_status run_t5_set(cvx_golden_case *c, json_t *meta, json_t *cases, json_t *results) {
    char path[4096];
    cvx_t5_tokenizer *tok = NULL;
    cvx_t5_tokens out;
    memset(&out, 0, sizeof out);
    json_t *ml = json_object_get(meta, "max_length");
    int max_length = json_is_integer(ml) ? (int)json_integer_value(ml) : CVX_T5_MAX_LENGTH;
    if (json_is_integer(ml) && (json_integer_value(ml) < 1 || json_integer_value(ml) > 1 << 20))
        return cvx_fail(&c->err, CVX_ERR_FORMAT, "meta.max_length %lld out of range", (long long)json_integer_value(ml));
    cvx_status st = cvx_t5_tokenizer_load_file(cvx_golden_path(c, "spiece.model", path, sizeof path), &tok, &c->err);
    for (size_t i = 0; !st && i < json_array_size(cases); i++) {
        char *text;
        size_t len;
        if ((st = case_text(c, json_array_get(cases, i), i, "prompt", "prompt_utf8_hex", &text, &len))) break;
        st = cvx_t5_tokenize(tok, text, len, max_length, &out, &c->err);
        free(text);
        if (st) break;
        json_t *r = json_object();
        json_object_set_new(r, "ids", int_array(out.ids, out.n_ids));
        json_object_set_new(r, "ids_unpadded", int_array(out.ids, out.n_unpadded));
        json_object_set_new(r, "ids_no_special", int_array(out.ids_no_special, out.n_no_special));
        json_t *with_eos = int_array(out.ids_no_special, out.n_no_special);
        int eos = cvx_t5_tokenizer_eos_id(tok);
        if (!out.n_no_special || out.ids_no_special[out.n_no_special - 1] != eos)
            json_array_append_new(with_eos, json_integer(eos));
        json_object_set_new(r, "ids_untruncated_with_eos", with_eos);
        json_object_set_new(r, "num_tokens_untruncated", json_integer((json_int_t)out.n_no_special));
        json_object_set_new(r, "truncated", json_boolean(out.truncated));
        json_object_set_new(r, "attention_mask", int_array(out.attention_mask, out.n_ids));
        json_t *tokens = json_array();
        for (size_t k = 0; k < out.n_no_special; k++)
            json_array_append_new(tokens, json_stringn_nocheck(out.piece_text + out.piece_off[k],
                                                               out.piece_off[k + 1] - out.piece_off[k]));
        json_object_set_new(r, "tokens", tokens);
        json_array_append_new(results, r);
    }
    cvx_t5_tokens_free(&out);
    cvx_t5_tokenizer_free(tok);
    return st;
}

typedef struct {
    const char *name;
    cvx_spm *spm;
} named_model;

static cvx_status run_spm_set(cvx_golden_case *c, json_t *models, json_t *cases, json_t *results) {
    size_t n_models = json_object_size(models), n_loaded = 0;
    named_model *loaded = calloc(n_models ? n_models : 1, sizeof *loaded);
    if (!loaded) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    cvx_spm_result res;
    memset(&res, 0, sizeof res);
    cvx_status st = CVX_OK;
    for (size_t i = 0; !st && i < json_array_size(cases); i++) {
        json_t *cs = json_array_get(cases, i);
        const char *name = json_string_value(json_object_get(cs, "model"));
        json_t *info = name ? json_object_get(models, name) : NULL;
        if (!info) {
            st = cvx_fail(&c->err, CVX_ERR_FORMAT, "case %zu: model \"%s\" is not in meta.models", i, name ? name : "");
            break;
        }
        cvx_spm *m = NULL;
        for (size_t k = 0; k < n_loaded; k++)
            if (!strcmp(loaded[k].name, name)) m = loaded[k].spm;
        if (!m) {
            char file[512], path[4096];
            const char *f = json_string_value(json_object_get(info, "file"));
            if (f) snprintf(file, sizeof file, "%s", f);
            else snprintf(file, sizeof file, "%s.model", name);
            if (strchr(file, '/')) {
                st = cvx_fail(&c->err, CVX_ERR_FORMAT, "model file \"%s\" must be in the case folder", file);
                break;
            }
            if ((st = cvx_spm_load_file(cvx_golden_path(c, file, path, sizeof path), &m, &c->err))) break;
            loaded[n_loaded].name = name;
            loaded[n_loaded++].spm = m;
        }
        char *text;
        size_t len;
        if ((st = case_text(c, cs, i, "text", "text_utf8_hex", &text, &len))) break;
        st = cvx_spm_encode(m, text, len, &res, &c->err);
        free(text);
        if (st) break;
        json_t *r = json_object(), *ids = json_array(), *pieces = json_array();
        for (size_t k = 0; k < res.n_tokens; k++) {
            size_t pl;
            const char *p = cvx_spm_token_text(m, &res, k, &pl);
            json_array_append_new(ids, json_integer(res.tokens[k].id));
            json_array_append_new(pieces, json_stringn_nocheck(p, pl));
        }
        json_object_set_new(r, "ids", ids);
        json_object_set_new(r, "pieces", pieces);
        json_object_set_new(r, "normalized", json_stringn_nocheck(res.normalized, res.normalized_len));
        json_array_append_new(results, r);
    }
    for (size_t k = 0; k < n_loaded; k++) cvx_spm_free(loaded[k].spm);
    free(loaded);
    cvx_spm_result_free(&res);
    return st;
}

cvx_status cvx_golden_tokenizer(cvx_golden_case *c) {
    json_t *cases = json_object_get(c->case_json, "cases");
    if (!json_is_array(cases))
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "tokenizer cases come as a cases.json set with a \"cases\" array");
    json_t *meta = json_object_get(c->case_json, "meta");
    json_t *models = json_object_get(meta, "models");
    json_t *results = json_array();
    if (!results) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    cvx_status st = json_is_object(models) ? run_spm_set(c, models, cases, results) : run_t5_set(c, meta, cases, results);
    if (st) {
        json_decref(results);
        return st;
    }
    cvx_golden_set_results(c, results);
    return CVX_OK;
}
