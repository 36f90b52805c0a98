/* libFuzzer target for the hub listing parser (src/io/hub.h cvx_hub_listing_parse): any bytes, read as the
 * model info API's answer, must either be refused with a message naming where they came from, or give files
 * whose fields are consistent (a path, an LFS sha256 of 64 lower-case hex digits, a 40-digit blob id or none).
 * The selection filter and the partial-file naming run on every accepted path. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "io/hub.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static int lower_hex(const char *s, size_t n) {
    if (strlen(s) != n) return 0;
    for (size_t i = 0; i < n; i++)
        if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f'))) return 0;
    return 1;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    cvx_hub_listing *l = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    if (cvx_hub_listing_parse((const char *)data, size, "http://127.0.0.1:1", "org/name", "main", "fuzz-listing", &l,
                              &err) != CVX_OK) {
        if (l || !strstr(err.message, "fuzz-listing")) abort();
        return 0;
    }
    if (!l || !l->commit || strcmp(l->repo_id, "org/name")) abort();
    char buf[8192];
    for (size_t i = 0; i < l->n_files; i++) {
        const cvx_hub_file *f = &l->files[i];
        if (!f->path) abort();
        if (f->lfs && !lower_hex(f->sha256, 64)) abort();
        if (!f->lfs && f->sha256[0]) abort();
        if (f->blob_id[0] && !lower_hex(f->blob_id, 40)) abort();
        (void)cvx_hub_wanted(f->path);
        cvx_hub_partial_path(buf, sizeof buf, "/tmp/x", f);
    }
    cvx_hub_listing_free(l);
    return 0;
}
