/* libFuzzer target for the service's request bodies (src/service/body.h): the first line of the input is the
 * Content-Type, the rest the body. Any bytes must either be refused with a message or give a JSON object whose every
 * field survives the coercions Run applies (integer, u64, float, text) without a crash; accepted objects must also
 * serialize (all strings are valid UTF-8). Every body is also parsed where file parts are taken
 * (cvx_svc_body_parse_files, as Run of an image-to-video model): each file part must lie inside the body under a
 * field of its name, and a body accepted without file parts must be accepted there too, with none. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "service/body.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The same body where file parts are taken (Run of an image-to-video model: one, inputImage): refused with a message,
 * or accepted with each file part inside the body and a field of its name holding its filename. 0 accepted. */
static int parse_with_files(const char *content_type, const char *copy, size_t body_len, int *n_out) {
    json_t *fields = NULL;
    char err[256];
    cvx_svc_body_file files[2];
    int n_files = -1;
    if (cvx_svc_body_parse_files(content_type, copy, body_len, &fields, files, 2, &n_files, err, sizeof err) != 0) {
        if (fields || !err[0]) abort();
        return -1;
    }
    if (!json_is_object(fields) || n_files < 0 || n_files > 2) abort();
    for (int k = 0; k < n_files; k++) {
        const cvx_svc_body_file *f = &files[k];
        if (f->data < copy || f->size > body_len || f->data + f->size > copy + body_len) abort();
        if (!memchr(f->name, 0, sizeof f->name) || !memchr(f->filename, 0, sizeof f->filename)) abort();
        if (!json_is_string(json_object_get(fields, f->name))) abort();
    }
    json_decref(fields);
    *n_out = n_files;
    return 0;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    const uint8_t *nl = memchr(data, '\n', size);
    size_t ct_len = nl ? (size_t)(nl - data) : 0;
    char ct[256];
    const char *content_type = NULL;
    if (nl && ct_len < sizeof ct && !memchr(data, 0, ct_len)) {
        memcpy(ct, data, ct_len);
        ct[ct_len] = 0;
        content_type = ct;
    }
    const char *body = (const char *)data + (nl ? ct_len + 1 : 0);
    size_t body_len = size - (nl ? ct_len + 1 : 0);
    /* the server hands the parser a heap copy of exactly the received bytes */
    char *copy = malloc(body_len ? body_len : 1);
    if (!copy) return 0;
    memcpy(copy, body, body_len);
    json_t *fields = NULL;
    char err[256];
    int n_files = 0;
    const int with_files = parse_with_files(content_type, copy, body_len, &n_files);
    if (cvx_svc_body_parse(content_type, copy, body_len, &fields, err, sizeof err) != 0) {
        if (fields || !err[0]) abort(); /* a refusal says why and returns nothing */
        free(copy);
        return 0;
    }
    if (with_files != 0 || n_files != 0) abort(); /* accepted without files: the same with files allowed */
    if (!json_is_object(fields)) abort();
    const char *key;
    json_t *value;
    json_object_foreach(fields, key, value) {
        long long i;
        unsigned long long u;
        double d;
        const char *text;
        char buf[64];
        int r = cvx_svc_field_int(fields, key, &i);
        if (r < -1 || r > 1) abort();
        r = cvx_svc_field_u64(fields, key, &u);
        if (r < -1 || r > 1) abort();
        r = cvx_svc_field_double(fields, key, &d);
        if (r == 1 && d != d) abort(); /* never NaN */
        r = cvx_svc_field_text(fields, key, &text, buf, sizeof buf);
        if (r == 1 && !text) abort();
    }
    char *dump = json_dumps(fields, JSON_COMPACT);
    if (!dump) abort();
    free(dump);
    json_decref(fields);
    free(copy);
    return 0;
}
