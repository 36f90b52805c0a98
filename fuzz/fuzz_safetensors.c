/* libFuzzer target for the safetensors header parser (cvx_safetensors_parse): any input must either be rejected
 * with a message or give tensors whose views lie inside the input. Every tensor byte is read (so ASan flags any
 * view outside the buffer), every tensor is found again by name, and float tensors are up-cast to f32 (which
 * exercises the misaligned-load paths). */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* A private copy of exactly `size` bytes: ASan then catches a read one past the end. */
    uint8_t *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    cvx_error err;
    cvx_error_clear(&err);
    cvx_safetensors *st = NULL;
    if (cvx_safetensors_parse(&st, buf, size, "fuzz.safetensors", &err) != CVX_OK) {
        if (!err.message[0] || strncmp(err.message, "fuzz.safetensors: ", 18)) abort(); /* every error names the file */
        free(buf);
        return 0;
    }
    volatile unsigned sum = 0;
    uint64_t prev_end = 0;
    for (size_t i = 0; i < cvx_safetensors_count(st); i++) {
        const cvx_st_tensor *t = cvx_safetensors_at(st, i);
        if (t->begin != prev_end) abort(); /* the offsets tile the data section */
        prev_end = t->end;
        const unsigned char *p = t->data;
        for (uint64_t k = 0; k < t->end - t->begin; k++) sum += p[k];
        if (cvx_safetensors_find(st, t->name) != t) abort();
        cvx_tensor v = cvx_st_view(t);
        if (cvx_tensor_nbytes(&v) != t->end - t->begin) abort();
        int64_t numel = cvx_tensor_numel(&v);
        if (cvx_dtype_is_float(t->dtype) && numel > 0 && numel <= (1 << 20)) {
            float *f = malloc((size_t)numel * sizeof *f);
            if (f) {
                if (cvx_tensor_to_f32(&v, f) != 0) abort();
                uint32_t bits;
                memcpy(&bits, &f[numel - 1], 4);
                sum += bits;
                free(f);
            }
        }
        if (numel > 0) {
            double d = cvx_tensor_get(&v, numel - 1);
            sum += d == d;
        }
    }
    (void)sum;
    (void)cvx_safetensors_metadata(st, "format");
    cvx_safetensors_close(st);
    free(buf);
    return 0;
}
