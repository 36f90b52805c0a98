/* Tokenizer tests: every golden case (tests/data/golden/tokenizer and ../shared/golden/tokenizer when present)
 * checked field by field without the golden runner; the embedded vocabulary; hand-built models for each
 * rejection and for the charsmap / user-defined / byte-fallback paths; truncated and mutated model files;
 * hostile text (invalid UTF-8, NULs, 1 MB). */
#include <dirent.h>
#include <jansson.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/embedded.h"
#include "testlib.h"
#include "text/spm.h"
#include "text/t5_tokenizer.h"

/* ---- helpers ---------------------------------------------------------------------------------------- */

static unsigned char *read_file(const char *path, size_t *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc(n > 0 ? (size_t)n : 1);
    *size = buf ? fread(buf, 1, (size_t)n, f) : 0;
    fclose(f);
    return buf;
}

static char *hex_decode(const char *h, size_t *len) {
    size_t n = strlen(h) / 2;
    char *out = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v;
        sscanf(h + 2 * i, "%2x", &v);
        out[i] = (char)v;
    }
    out[n] = 0;
    *len = n;
    return out;
}

static int ids_equal(json_t *want, const int32_t *got, size_t n) {
    if (!json_is_array(want) || json_array_size(want) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (json_integer_value(json_array_get(want, i)) != got[i]) return 0;
    return 1;
}

static int str_equal(json_t *want, const char *s, size_t n) {
    return json_is_string(want) && json_string_length(want) == n && !memcmp(json_string_value(want), s, n);
}

/* ---- golden sets ------------------------------------------------------------------------------------ */

static void check_t5_set(const char *dir, json_t *root) {
    char path[4096];
    if (snprintf(path, sizeof path, "%s/spiece.model", dir) >= (int)sizeof path) return;
    cvx_error err;
    cvx_t5_tokenizer *tok = NULL;
    if (cvx_t5_tokenizer_load_file(path, &tok, &err)) {
        CHECK_MSG(0, "%s", cvx_error_message(&err));
        return;
    }
    json_t *ml = json_object_get(json_object_get(root, "meta"), "max_length");
    int max_length = json_is_integer(ml) ? (int)json_integer_value(ml) : CVX_T5_MAX_LENGTH;
    json_t *cases = json_object_get(root, "cases");
    cvx_t5_tokens o = {0};
    size_t bad = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *name = json_string_value(json_object_get(c, "name"));
        size_t len;
        char *text = hex_decode(json_string_value(json_object_get(c, "prompt_utf8_hex")), &len);
        cvx_status st = cvx_t5_tokenize(tok, text, len, max_length, &o, &err);
        free(text);
        CHECK_MSG(st == CVX_OK, "%s: %s", name, cvx_error_message(&err));
        if (st) continue;
        int ok = 1;
        json_t *w;
        if ((w = json_object_get(c, "ids"))) ok &= ids_equal(w, o.ids, o.n_ids);
        if ((w = json_object_get(c, "ids_unpadded"))) ok &= ids_equal(w, o.ids, o.n_unpadded);
        if ((w = json_object_get(c, "ids_no_special"))) ok &= ids_equal(w, o.ids_no_special, o.n_no_special);
        if ((w = json_object_get(c, "attention_mask"))) ok &= ids_equal(w, o.attention_mask, o.n_ids);
        if ((w = json_object_get(c, "num_tokens_untruncated")))
            ok &= json_integer_value(w) == (json_int_t)o.n_no_special;
        if ((w = json_object_get(c, "truncated"))) ok &= json_is_true(w) == (o.truncated != 0);
        if ((w = json_object_get(c, "ids_untruncated_with_eos"))) {
            size_t n = json_array_size(w);
            int eos_added = !o.n_no_special || o.ids_no_special[o.n_no_special - 1] != 1;
            ok &= n == o.n_no_special + (size_t)eos_added;
            for (size_t k = 0; ok && k < o.n_no_special; k++)
                ok &= json_integer_value(json_array_get(w, k)) == o.ids_no_special[k];
            if (ok && eos_added) ok &= json_integer_value(json_array_get(w, n - 1)) == 1;
        }
        /* informational, but a cheap way to localize a normalization bug: HF's token strings */
        if ((w = json_object_get(c, "tokens")) && json_array_size(w) == o.n_no_special)
            for (size_t k = 0; k < o.n_no_special; k++)
                ok &= str_equal(json_array_get(w, k), o.piece_text + o.piece_off[k], o.piece_off[k + 1] - o.piece_off[k]);
        CHECK_MSG(ok, "%s/%s: ids differ from the reference", dir, name ? name : "?");
        bad += !ok;
    }
    printf("  %s: %zu T5 cases, %zu differ\n", dir, json_array_size(cases), bad);
    cvx_t5_tokens_free(&o);
    cvx_t5_tokenizer_free(tok);
}

static void check_spm_set(const char *dir, json_t *root) {
    json_t *models = json_object_get(json_object_get(root, "meta"), "models");
    json_t *cases = json_object_get(root, "cases");
    cvx_spm_result r = {0};
    cvx_error err;
    size_t bad = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *c = json_array_get(cases, i);
        const char *model = json_string_value(json_object_get(c, "model"));
        const char *file = json_string_value(json_object_get(json_object_get(models, model), "file"));
        char path[4096];
        if (snprintf(path, sizeof path, "%s/%s", dir, file ? file : "?") >= (int)sizeof path) continue;
        cvx_spm *m = NULL;
        if (cvx_spm_load_file(path, &m, &err)) {
            CHECK_MSG(0, "%s", cvx_error_message(&err));
            continue;
        }
        size_t len;
        char *text = hex_decode(json_string_value(json_object_get(c, "text_utf8_hex")), &len);
        cvx_status st = cvx_spm_encode(m, text, len, &r, &err);
        CHECK_MSG(st == CVX_OK, "case %zu: %s", i, cvx_error_message(&err));
        int ok = st == CVX_OK;
        json_t *ids = json_object_get(c, "ids"), *pieces = json_object_get(c, "pieces"), *norm;
        ok &= json_array_size(ids) == r.n_tokens && json_array_size(pieces) == r.n_tokens;
        for (size_t k = 0; ok && k < r.n_tokens; k++) {
            size_t pl;
            const char *p = cvx_spm_token_text(m, &r, k, &pl);
            ok &= json_integer_value(json_array_get(ids, k)) == r.tokens[k].id &&
                  str_equal(json_array_get(pieces, k), p, pl);
        }
        if ((norm = json_object_get(c, "normalized"))) ok &= str_equal(norm, r.normalized, r.normalized_len);
        CHECK_MSG(ok, "%s case %zu (%s, \"%s\") differs", dir, i, model, text);
        bad += !ok;
        free(text);
        cvx_spm_free(m);
    }
    printf("  %s: %zu sentencepiece cases, %zu differ\n", dir, json_array_size(cases), bad);
    cvx_spm_result_free(&r);
}

static int check_golden_root(const char *root) {
    DIR *d = opendir(root);
    if (!d) return 0;
    int sets = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char dir[4096], path[4200];
        if (snprintf(dir, sizeof dir, "%s/%s", root, e->d_name) >= (int)sizeof dir ||
            snprintf(path, sizeof path, "%s/cases.json", dir) >= (int)sizeof path)
            continue;
        json_error_t je;
        json_t *j = json_load_file(path, JSON_ALLOW_NUL, &je);
        if (!j) continue;
        if (json_is_object(json_object_get(json_object_get(j, "meta"), "models"))) check_spm_set(dir, j);
        else check_t5_set(dir, j);
        json_decref(j);
        sets++;
    }
    closedir(d);
    return sets;
}

/* ---- the real vocabulary ---------------------------------------------------------------------------- */

static void check_embedded(void) {
    size_t size, fsize;
    const unsigned char *data = cvx_embedded_t5_spiece(&size);
    unsigned char *file = read_file("data/t5/spiece.model", &fsize);
    CHECK(file && fsize == size && !memcmp(file, data, size));
    free(file);

    cvx_error err;
    cvx_t5_tokenizer *tok = NULL;
    CHECK(cvx_t5_tokenizer_load_embedded(&tok, &err) == CVX_OK);
    if (!tok) return;
    const cvx_spm *m = cvx_t5_tokenizer_spm(tok);
    CHECK(cvx_spm_piece_count(m) == 32000 && cvx_t5_tokenizer_vocab_size(tok) == 32100);
    CHECK(cvx_spm_unk_id(m) == 2 && cvx_spm_eos_id(m) == 1 && cvx_spm_pad_id(m) == 0 && cvx_spm_bos_id(m) == -1);
    CHECK(cvx_spm_model(m) == CVX_SPM_UNIGRAM && !strcmp(cvx_spm_normalizer_name(m), "nmt_nfkc"));
    CHECK(cvx_spm_piece_to_id(m, "\xe2\x96\x81" "Hello", 8) == 8774 && cvx_spm_piece_to_id(m, "no such piece!", 14) == 2);

    struct {
        const char *text;
        int ids[12];
    } known[] = {/* ids published in transformers' T5 tokenizer tests (t5-base, same vocabulary) */
                 {"Hello world", {8774, 296, 1}},
                 {"<pad> Today is <unk> nice day </s>", {0, 1960, 19, 2, 1245, 239, 1}},
                 {"Hey how are you doing", {9459, 149, 33, 25, 692, 1}},
                 {"", {1}},
                 {"a<extra_id_0>b", {3, 9, 32099, 3, 115, 1}}};
    cvx_t5_tokens o = {0};
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        CHECK(cvx_t5_tokenize(tok, known[i].text, strlen(known[i].text), 0, &o, &err) == CVX_OK);
        int ok = 1;
        for (size_t k = 0; k < o.n_ids; k++) ok &= o.ids[k] == known[i].ids[k];
        ok &= known[i].ids[o.n_ids] == 0 && o.n_ids == o.n_unpadded;
        CHECK_MSG(ok, "\"%s\"", known[i].text);
    }
    /* padding, mask, and the text of every kind of id */
    CHECK(cvx_t5_tokenize(tok, "Hello world", 11, 226, &o, &err) == CVX_OK);
    CHECK(o.n_ids == 226 && o.n_unpadded == 3 && o.ids[2] == 1 && o.ids[3] == 0 && o.ids[225] == 0);
    CHECK(o.attention_mask[2] == 1 && o.attention_mask[3] == 0 && !o.truncated);
    char buf[16];
    size_t len;
    const char *t = cvx_t5_tokenizer_id_text(tok, 32099, buf, &len);
    CHECK(t && len == 12 && !memcmp(t, "<extra_id_0>", 12));
    t = cvx_t5_tokenizer_id_text(tok, 32000, buf, &len);
    CHECK(t && !strcmp(t, "<extra_id_99>"));
    t = cvx_t5_tokenizer_id_text(tok, 1, buf, &len);
    CHECK(t && len == 4 && !memcmp(t, "</s>", 4));
    CHECK(cvx_t5_tokenizer_id_text(tok, 32100, buf, &len) == NULL && cvx_t5_tokenizer_id_text(tok, -1, buf, &len) == NULL);

    /* hostile text: invalid UTF-8 and NULs become U+FFFD / unknowns, never a failure */
    static const char weird[] = "\xff\xfe a\0b \xc0\x80 \xed\xa0\x80 \xf4\x90\x80\x80 \xe2\x82 <extra_id_\0>";
    CHECK(cvx_t5_tokenize(tok, weird, sizeof weird - 1, 226, &o, &err) == CVX_OK && o.n_ids == 226);
    CHECK(cvx_t5_tokenize(tok, NULL, 5, 226, &o, &err) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_t5_tokenize(tok, NULL, 0, 226, &o, &err) == CVX_OK && o.n_unpadded == 1);

    /* 1 MB of text: truncated to 225 + </s>; the raw encode has every piece */
    size_t big = 1 << 20;
    char *text = malloc(big);
    static const char para[] = "The camera zooms through the streets, capturing the hustle and bustle. ";
    for (size_t i = 0; i < big; i++) text[i] = para[i % (sizeof para - 1)];
    CHECK(cvx_t5_tokenize(tok, text, big, 226, &o, &err) == CVX_OK && o.truncated && o.n_unpadded == 226 &&
          o.ids[225] == 1 && o.n_no_special > 200000);
    for (size_t i = 0; i < big; i++) text[i] = (char)(rand() & 0xff);
    CHECK(cvx_t5_tokenize(tok, text, big, 226, &o, &err) == CVX_OK && o.n_ids == 226);
    free(text);
    cvx_t5_tokens_free(&o);
    cvx_t5_tokenizer_free(tok);
}

/* ---- hand-built models ------------------------------------------------------------------------------ */

typedef struct {
    unsigned char b[4096];
    size_t n;
} pbuf;

static void put_varint(pbuf *p, uint64_t v) {
    do {
        p->b[p->n++] = (unsigned char)((v & 0x7f) | (v > 0x7f ? 0x80 : 0));
        v >>= 7;
    } while (v);
}
static void put_key(pbuf *p, unsigned field, unsigned wire) { put_varint(p, (uint64_t)field << 3 | wire); }
static void put_bytes(pbuf *p, unsigned field, const void *d, size_t n) {
    put_key(p, field, 2);
    put_varint(p, n);
    memcpy(p->b + p->n, d, n);
    p->n += n;
}
static void put_msg(pbuf *p, unsigned field, const pbuf *m) { put_bytes(p, field, m->b, m->n); }
static void put_piece(pbuf *p, const char *s, float score, int type) {
    pbuf m = {.n = 0};
    put_bytes(&m, 1, s, strlen(s));
    put_key(&m, 2, 5);
    memcpy(m.b + m.n, &score, 4);
    m.n += 4;
    if (type != 1) {
        put_key(&m, 3, 0);
        put_varint(&m, (uint64_t)type);
    }
    put_msg(p, 1, &m);
}

/* A tiny unigram model: <unk>, ▁, a, b, ab, user-defined "<x>", with an optional normalizer blob. */
static size_t tiny_model(pbuf *p, const void *charsmap, size_t charsmap_len, int extra) {
    p->n = 0;
    put_piece(p, "<unk>", 0, 2);
    put_piece(p, "\xe2\x96\x81", -1, 1);
    put_piece(p, "a", -2, 1);
    put_piece(p, "b", -2, 1);
    put_piece(p, "ab", -3, 1);
    put_piece(p, "<x>", 0, 4);
    if (extra == 1) put_piece(p, "a", -5, 1);     /* duplicate */
    if (extra == 2) put_piece(p, "<0x41>", 0, 6); /* byte piece without byte_fallback */
    if (extra == 3) put_piece(p, "<u2>", 0, 2);   /* second unk */
    if (extra == 4) put_piece(p, "", 0, 1);       /* empty piece */
    if (extra == 5) put_piece(p, "q", 0, 9);      /* unknown type */
    pbuf t = {.n = 0};
    put_key(&t, 3, 0);
    put_varint(&t, extra == 6 ? 7 : 1); /* model_type */
    if (extra == 7) {
        put_key(&t, 35, 0);
        put_varint(&t, 1); /* byte_fallback without byte pieces */
    }
    put_msg(p, 2, &t);
    pbuf nm = {.n = 0};
    put_bytes(&nm, 1, "test", 4);
    if (charsmap_len) put_bytes(&nm, 2, charsmap, charsmap_len);
    put_msg(p, 3, &nm);
    return p->n;
}

/* A charsmap by hand: a darts-clone double array mapping "a" -> the string at `value` of `strings`. */
static size_t tiny_charsmap(unsigned char *out, uint32_t value, const char *strings, size_t strings_len) {
    uint32_t units[0x61] = {0};
    units[0] = 1u << 10;                           /* root: offset 1 */
    units[0x60] = 0x61u | 0x100u | (0x20u << 10); /* label 'a', has a leaf, offset 0x20 */
    units[0x40] = 0x80000000u | value;             /* the leaf's value */
    uint32_t size = sizeof units;
    memcpy(out, &size, 4);
    memcpy(out + 4, units, sizeof units);
    memcpy(out + 4 + sizeof units, strings, strings_len);
    return 4 + sizeof units + strings_len;
}

static cvx_status encode_ids(const cvx_spm *m, const char *text, int *ids, size_t *n, char *norm) {
    cvx_spm_result r = {0};
    cvx_error err;
    cvx_status st = cvx_spm_encode(m, text, strlen(text), &r, &err);
    *n = r.n_tokens;
    for (size_t i = 0; i < r.n_tokens && i < 16; i++) ids[i] = r.tokens[i].id;
    if (norm) snprintf(norm, 64, "%s", r.normalized ? r.normalized : "");
    cvx_spm_result_free(&r);
    return st;
}

static void check_hand_built(void) {
    pbuf p;
    cvx_spm *m = NULL;
    cvx_error err;
    int ids[16];
    size_t n;
    char norm[64];

    CHECK(cvx_spm_load_memory(p.b, tiny_model(&p, NULL, 0, 0), &m, &err) == CVX_OK);
    if (m) {
        /* "abab" -> ▁ab ab? No ▁ab piece: ▁ + ab + ab; unknown run "zz" merges; <x> is never split */
        CHECK(encode_ids(m, "abab", ids, &n, norm) == CVX_OK && n == 3 && ids[0] == 1 && ids[1] == 4 && ids[2] == 4);
        CHECK(encode_ids(m, "zz a", ids, &n, norm) == CVX_OK && n == 4 && ids[1] == 0 && ids[2] == 1 && ids[3] == 2);
        CHECK(encode_ids(m, "a<x>b", ids, &n, norm) == CVX_OK && n == 4 && ids[2] == 5 && ids[3] == 3);
        CHECK(encode_ids(m, "  a   b  ", ids, &n, norm) == CVX_OK && !strcmp(norm, "\xe2\x96\x81" "a\xe2\x96\x81" "b"));
        CHECK(cvx_spm_piece_kind(m, 5) == CVX_SPM_USER_DEFINED && cvx_spm_piece_kind(m, 99) == 0);
        cvx_spm_free(m);
    }
    /* a charsmap: "a" -> "xy" */
    unsigned char cm[1024];
    size_t cl = tiny_charsmap(cm, 0, "xy\0", 3);
    CHECK(cvx_spm_load_memory(p.b, tiny_model(&p, cm, cl, 0), &m, &err) == CVX_OK);
    if (m) {
        CHECK(encode_ids(m, "bab", ids, &n, norm) == CVX_OK && !strcmp(norm, "\xe2\x96\x81" "bxyb"));
        cvx_spm_free(m);
    }
    /* a charsmap whose replacement lies outside its strings: a clear error when used, not a read */
    cl = tiny_charsmap(cm, 7, "xy\0", 3);
    CHECK(cvx_spm_load_memory(p.b, tiny_model(&p, cm, cl, 0), &m, &err) == CVX_OK);
    if (m) {
        CHECK(encode_ids(m, "bbb", ids, &n, norm) == CVX_OK);
        CHECK(encode_ids(m, "bab", ids, &n, norm) == CVX_ERR_FORMAT);
        cvx_spm_free(m);
    }
    cl = tiny_charsmap(cm, 0, "xy", 2); /* no NUL terminator */
    CHECK(cvx_spm_load_memory(p.b, tiny_model(&p, cm, cl, 0), &m, &err) == CVX_OK);
    if (m) {
        CHECK(encode_ids(m, "a", ids, &n, norm) == CVX_ERR_FORMAT);
        cvx_spm_free(m);
    }
    /* broken charsmap headers */
    uint32_t huge = 0x7fffffff;
    memcpy(cm, &huge, 4);
    CHECK(cvx_spm_load_memory(p.b, tiny_model(&p, cm, 16, 0), &m, &err) == CVX_ERR_FORMAT);
    CHECK(cvx_spm_load_memory(p.b, tiny_model(&p, cm, 3, 0), &m, &err) == CVX_ERR_FORMAT);

    /* inconsistent pieces */
    for (int extra = 1; extra <= 7; extra++) {
        cvx_error_clear(&err);
        cvx_status st = cvx_spm_load_memory(p.b, tiny_model(&p, NULL, 0, extra), &m, &err);
        CHECK_MSG(st != CVX_OK && m == NULL && err.message[0], "variant %d: %s", extra, cvx_error_message(&err));
        if (st == CVX_OK) cvx_spm_free(m);
    }
    /* wire-format damage */
    static const unsigned char bad[][12] = {
        {0x0a, 0x05, 0x0a},                                     /* length past the end */
        {0x0b},                                                  /* group start */
        {0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}, /* 11-byte varint */
        {0x00, 0x00},                                            /* field 0 */
        {0x0d, 0x00},                                            /* 32-bit field cut short */
    };
    static const size_t bad_len[] = {3, 1, 12, 2, 2};
    for (size_t i = 0; i < sizeof bad_len / sizeof bad_len[0]; i++) {
        CHECK(cvx_spm_load_memory(bad[i], bad_len[i], &m, &err) == CVX_ERR_FORMAT && m == NULL);
    }
    CHECK(cvx_spm_load_memory("", 0, &m, &err) == CVX_ERR_FORMAT);
    CHECK(cvx_spm_load_memory("hello, I am not a model", 23, &m, &err) == CVX_ERR_FORMAT);
    CHECK(cvx_spm_load_file("/nonexistent/spiece.model", &m, &err) == CVX_ERR_IO && strstr(err.message, "nonexistent"));
}

/* Every prefix of a small model and a spread of prefixes of the real one; random byte damage. Whatever loads
 * must encode. */
static void check_damaged_models(void) {
    size_t size;
    unsigned char *data = read_file("tests/data/golden/tokenizer/spm_small/unigram_identity_v400.model", &size);
    CHECK(data != NULL);
    if (!data) return;
    cvx_error err;
    cvx_spm *m;
    cvx_spm_result r = {0};
    static const char text[] = "Hello world \xff <sep> caf\xc3\xa9";
    int loaded = 0;
    for (size_t n = 0; n < size; n++) {
        cvx_error_clear(&err);
        cvx_status st = cvx_spm_load_memory(data, n, &m, &err);
        if (st == CVX_OK) {
            loaded++;
            CHECK(cvx_spm_encode(m, text, sizeof text - 1, &r, &err) == CVX_OK || err.message[0]);
            cvx_spm_free(m);
        } else {
            CHECK(err.message[0] != 0);
        }
    }
    printf("  %zu truncations of a %zu-byte model: %d loaded, the rest refused\n", size, size, loaded);
    srand(1234);
    unsigned char *copy = malloc(size);
    for (int iter = 0; iter < 1500; iter++) {
        memcpy(copy, data, size);
        for (int k = 0, flips = 1 + rand() % 8; k < flips; k++) copy[rand() % size] = (unsigned char)rand();
        if (cvx_spm_load_memory(copy, size, &m, &err) == CVX_OK) {
            cvx_status st = cvx_spm_encode(m, text, sizeof text - 1, &r, &err);
            CHECK(st == CVX_OK || err.message[0]);
            cvx_spm_free(m);
        }
    }
    free(copy);
    free(data);

    data = read_file("tests/data/golden/tokenizer/t5/spiece.model", &size);
    CHECK(data != NULL);
    for (size_t n = 0; data && n < size; n += 1 + n / 8) {
        if (cvx_spm_load_memory(data, n, &m, &err) == CVX_OK) {
            CHECK(cvx_spm_encode(m, text, sizeof text - 1, &r, &err) == CVX_OK || err.message[0]);
            cvx_spm_free(m);
        }
    }
    free(data);
    cvx_spm_result_free(&r);
}

int main(void) {
    int sets = check_golden_root("tests/data/golden/tokenizer");
    CHECK_MSG(sets == 2, "expected the t5 and spm_small sets under tests/data/golden/tokenizer, found %d", sets);
    const char *shared = cvx_test_shared_golden();
    if (shared) {
        char dir[4096];
        snprintf(dir, sizeof dir, "%s/tokenizer", shared);
        check_golden_root(dir);
    }
    check_embedded();
    check_hand_built();
    check_damaged_models();
    return cvx_test_finish("test_tokenizer");
}
