/* The resume blob a generation hands to its checkpoint callback after every denoising step (cvx_checkpoint_fn) and
 * takes back as resume_state: written and read here only.
 *
 * Layout (host byte order, x86-64): a header ("CVXCKPT1", version, the parameter digest, the step completed of the
 * loop's count, the latent count n, the scheduler's carried timestep and flags, the generator after the step), the
 * latents after the step [n], the scheduler's carried x0 [n]; with a step cache (TeaCache) a section ("TEACACHE":
 * acc, B, S, D, E, count, flags) + emb_prev [B, E] + residual [B, S, D] + one byte per timestep, 1 where the
 * transformer ran. The parameter digest (the model's identity, every generation parameter, the cache settings when
 * on) ties a blob to the run that wrote it; blobs of runs without a cache are those of the versions before it. */
#ifndef CVX_DIFFUSION_CHECKPOINT_H
#define CVX_DIFFUSION_CHECKPOINT_H

#include <stddef.h>
#include <stdint.h>

#include "cogvideox.h"
#include "core/error.h"
#include "diffusion/denoise.h"
#include "diffusion/rng.h"

/* What a blob holds (pointers into it; the values may be unaligned: copy with memcpy). */
typedef struct {
    uint64_t params_hash;
    int64_t step, count, n, timestep_back;
    int has_pred, has_back;
    cvx_rng rng;
    const unsigned char *latents, *pred; /* [n] f32 each */
    /* the step cache section, when has_cache */
    int has_cache, has_prev, has_residual;
    double acc;
    int64_t B, S, D, E;
    const unsigned char *emb_prev, *residual, *computed; /* [B, E] f32, [B, S, D] f32, [count] bytes */
} cvx_ckpt_view;

/* The digest of the parameters a checkpoint belongs to (with the model's identity). */
uint64_t cvx_ckpt_params_hash(const cvx_generate_params *p, const cvx_cache_params *cache, int height, int width,
                              uint64_t model_id);
/* Bytes of a blob of n latent values, with the cache section of tc (NULL: none) over count timesteps. */
size_t cvx_ckpt_bytes(int64_t n, const cvx_dit_teacache *tc, int64_t count);
/* Writes the blob after step s (cvx_ckpt_bytes(n, s->teacache, s->total) bytes at blob): computed[i] for the steps
 * up to s->step (the others 0) when there is a cache. */
void cvx_ckpt_write(void *blob, uint64_t params_hash, const cvx_denoise_step *s, int64_t n,
                    const unsigned char *computed);
/* Reads and checks a blob: its format and version, sizes that hold what the header says, the step in range, a
 * generator state in range, finite latents (a damaged blob must not turn into a silent black video). The messages
 * start with `what` ("checkpoint", "resume state"). */
cvx_status cvx_ckpt_read(const void *blob, size_t size, const char *what, cvx_ckpt_view *v, cvx_error *err);

#endif
