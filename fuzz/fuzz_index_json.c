/* libFuzzer target for the shard index parser (cvx_weights_parse_index, the model.safetensors.index.json of
 * sharded weights): any input is rejected with a message naming it, or gives a sorted, consistent map whose shard
 * names are plain file names. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *buf = malloc(size ? size : 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    cvx_error err;
    cvx_error_clear(&err);
    cvx_st_index *idx = NULL;
    if (cvx_weights_parse_index(&idx, buf, size, "fuzz.index.json", &err) != CVX_OK) {
        if (strncmp(err.message, "fuzz.index.json: ", 17)) abort();
        free(buf);
        return 0;
    }
    for (size_t i = 0; i < idx->n; i++) {
        if (i && strcmp(idx->names[i - 1], idx->names[i]) >= 0) abort();
        if (idx->file_of[i] >= idx->n_files) abort();
    }
    for (size_t f = 0; f < idx->n_files; f++) {
        const char *s = idx->files[f];
        if (!*s || strchr(s, '/') || !strcmp(s, "..")) abort();
        if (f && strcmp(idx->files[f - 1], s) >= 0) abort();
    }
    cvx_st_index_free(idx);
    free(buf);
    return 0;
}
