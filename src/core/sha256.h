/* SHA-256 (FIPS 180-4), for digests the engine reports (the final latents' latents_sha256) without linking a crypto
 * library into libcogvideox. Incremental: init, update any number of times, final. */
#ifndef CVX_CORE_SHA256_H
#define CVX_CORE_SHA256_H

#include <stddef.h>
#include <stdint.h>

typedef struct {
    uint32_t h[8];
    uint64_t bytes;
    unsigned char block[64];
    size_t fill;
} cvx_sha256;

void cvx_sha256_init(cvx_sha256 *s);
void cvx_sha256_update(cvx_sha256 *s, const void *data, size_t n);
void cvx_sha256_final(cvx_sha256 *s, unsigned char digest[32]);
/* The digest of n bytes as 64 lowercase hex digits and a NUL (out: 65 bytes). */
void cvx_sha256_hex(const void *data, size_t n, char out[65]);

#endif
