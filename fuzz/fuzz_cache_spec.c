/* libFuzzer target for cvx_cache_parse (the string form of the step-cache settings, include/cogvideox.h): any
 * bytes either parse, and then the canonical form cvx_cache_format writes parses back to the same settings (bit
 * for bit, finite numbers, threshold >= 0), or are refused with a message and leave the output untouched. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "cogvideox.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char *spec = malloc(size + 1);
    if (!spec) return 0;
    memcpy(spec, data, size);
    spec[size] = '\0';
    cvx_cache_params c, d, guard;
    memset(&guard, 0x5a, sizeof guard);
    c = guard;
    char err[256] = "";
    if (cvx_cache_parse(spec, &c, err, sizeof err) != CVX_OK) {
        if (!err[0] || memcmp(&c, &guard, sizeof c) != 0) abort();
        free(spec);
        return 0;
    }
    if (c.mode != CVX_CACHE_OFF && c.mode != CVX_CACHE_TEACACHE) abort();
    if (c.mode == CVX_CACHE_TEACACHE) {
        if (!isfinite(c.threshold) || c.threshold < 0) abort();
        for (int i = 0; c.has_coefficients && i < 5; i++)
            if (!isfinite(c.coefficients[i])) abort();
    }
    char buf[512];
    int n = cvx_cache_format(&c, buf, sizeof buf);
    if (n < 0 || (size_t)n >= sizeof buf) abort();
    if (cvx_cache_parse(buf, &d, err, sizeof err) != CVX_OK || d.mode != c.mode) abort();
    if (c.mode == CVX_CACHE_TEACACHE &&
        (memcmp(&d.threshold, &c.threshold, sizeof d.threshold) != 0 || d.has_coefficients != c.has_coefficients ||
         (c.has_coefficients && memcmp(d.coefficients, c.coefficients, sizeof d.coefficients) != 0)))
        abort();
    free(spec);
    return 0;
}
