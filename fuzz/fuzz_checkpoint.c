/* libFuzzer target for cvx_ckpt_read (the resume blob, src/diffusion/checkpoint.h: a service stores these and reads
 * them back after a restart, so a damaged file must be refused, never trusted): any bytes are either refused with a
 * message, or give a view whose every pointer and count lies inside the blob, finite latents and a step in range —
 * checked by touching every byte the view names. The first input also writes a valid blob and reads it back. */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/checkpoint.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static void touch(const unsigned char *p, size_t n, const uint8_t *blob, size_t size) {
    if (n && (p < blob || p + n > blob + size)) abort();
    volatile unsigned char sink = 0;
    for (size_t i = 0; i < n; i++) sink ^= p[i];
    (void)sink;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    /* the blob copied to its own allocation: ASan then sees any read past its end */
    uint8_t *blob = malloc(size ? size : 1);
    if (!blob) return 0;
    memcpy(blob, data, size);
    cvx_ckpt_view v;
    cvx_error err;
    cvx_error_clear(&err);
    if (cvx_ckpt_read(blob, size, "fuzz", &v, &err) != CVX_OK) {
        if (!err.message[0]) abort();
    } else {
        if (v.n < 1 || v.step < 1 || v.step > v.count) abort();
        touch(v.latents, sizeof(float) * (size_t)v.n, blob, size);
        touch(v.pred, sizeof(float) * (size_t)v.n, blob, size);
        for (int64_t i = 0; i < (v.has_pred ? 2 : 1) * v.n; i++) {
            float x;
            memcpy(&x, v.latents + 4 * (size_t)i, 4);
            if (!isfinite(x)) abort();
        }
        if (v.has_cache) {
            touch(v.emb_prev, sizeof(float) * (size_t)(v.B * v.E), blob, size);
            touch(v.residual, sizeof(float) * (size_t)(v.B * v.S * v.D), blob, size);
            touch(v.computed, (size_t)v.count, blob, size);
        }
    }
    free(blob);

    static int wrote;
    if (!wrote) { /* a real blob round trip: 3 latent values after step 2 of 5 */
        wrote = 1;
        float lat[3] = {1, 2, 3}, pred[3] = {4, 5, 6};
        cvx_sched_state st = {.n = 3, .pred_original_sample = pred, .has_pred = 1, .timestep_back = 7, .has_back = 1};
        cvx_rng g;
        cvx_rng_seed(&g, 5);
        cvx_denoise_step s;
        memset(&s, 0, sizeof s);
        s.step = 1, s.total = 5, s.latents = lat, s.state = &st, s.generator = &g;
        size_t n = cvx_ckpt_bytes(3, NULL, 5);
        unsigned char *b = malloc(n);
        if (!b) return 0;
        cvx_ckpt_write(b, 42, &s, 3, NULL);
        if (cvx_ckpt_read(b, n, "fuzz", &v, &err) != CVX_OK || v.step != 2 || v.count != 5 || v.params_hash != 42 ||
            memcmp(v.latents, lat, sizeof lat) || memcmp(v.pred, pred, sizeof pred))
            abort();
        free(b);
    }
    return 0;
}
