/* libFuzzer target for the config parsers (src/io/config.h) and the name/shape derivation (src/io/model.h):
 * any bytes, read as each component's config.json, must either be refused with a message naming the file, or
 * give a tensor list whose shapes are positive and whose counts add up. Accepted JSON must also survive the
 * Python-style writer: re-parsing its text gives an equal value. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "io/config.h"
#include "io/model.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void check_error(const cvx_error *err) {
    if (!err->message[0] || !strstr(err->message, "fuzz.json")) abort(); /* every error names the file */
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cvx_config *c = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    if (cvx_config_parse(&c, data, size, "fuzz.json", &err) != CVX_OK) {
        if (c) abort();
        check_error(&err);
        return 0;
    }
    static const cvx_class classes[] = {CVX_CLASS_T5_ENCODER, CVX_CLASS_TRANSFORMER_3D, CVX_CLASS_VAE};
    for (size_t k = 0; k < sizeof classes / sizeof classes[0]; k++) {
        cvx_tensor_list l;
        cvx_error_clear(&err);
        if (cvx_model_expected_tensors(classes[k], c, &l, &err) != CVX_OK) {
            check_error(&err);
        } else {
            int64_t sum = 0;
            for (size_t i = 0; i < l.n; i++) {
                const cvx_expected_tensor *t = &l.t[i];
                int64_t numel = 1;
                for (int d = 0; d < t->ndim; d++) {
                    if (t->shape[d] < 1) abort();
                    numel *= t->shape[d];
                }
                if (numel != t->numel || !t->name[0] || cvx_tensor_list_find(&l, t->name) < 0) abort();
                sum += numel;
            }
            if (sum != l.numel || !l.n) abort();
        }
        cvx_tensor_list_free(&l);
    }
    cvx_scheduler_config sc;
    for (int k = 0; k < 2; k++) {
        cvx_error_clear(&err);
        if (cvx_scheduler_config_read(c, k ? CVX_CLASS_DPM_SCHEDULER : CVX_CLASS_DDIM_SCHEDULER, &sc, &err))
            check_error(&err);
    }
    /* the writer: Python's json.dumps text re-parses to the same value */
    size_t len;
    char *text = cvx_json_dumps_python(cvx_config_json(c), &len);
    if (text) {
        json_error_t je;
        json_t *back = json_loadb(text, len, JSON_ALLOW_NUL, &je);
        if (!back || !json_equal(back, cvx_config_json(c))) abort();
        json_decref(back);
        free(text);
    }
    cvx_config_free(c);
    return 0;
}
