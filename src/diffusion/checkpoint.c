/* The resume blob (checkpoint.h): one writer, one reader. */
#include "diffusion/checkpoint.h"

#include <math.h>
#include <string.h>

#include "diffusion/engine.h"

#define CKPT_MAGIC "CVXCKPT1"
#define CKPT_VERSION 1u
#define CKPT_CACHE_MAGIC "TEACACHE"
#define CKPT_CACHE_VERSION 1u

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    uint64_t params_hash;
    int64_t step;  /* steps completed */
    int64_t count; /* timesteps in the loop */
    int64_t n;     /* latent values */
    int64_t timestep_back;
    int32_t has_pred, has_back;
    cvx_rng rng; /* the generator after the step */
} ckpt_header;

typedef struct {
    char magic[8];
    uint32_t version;
    uint32_t header_bytes;
    double acc;         /* accumulated_rel_l1_distance after the step */
    int64_t B, S, D, E; /* emb_prev [B, E], residual [B, S, D] */
    int64_t count;      /* computed flags (the loop's timesteps) */
    int32_t has_prev, has_residual;
} ckpt_cache_header;

static size_t cache_bytes(int64_t B, int64_t S, int64_t D, int64_t E, int64_t count) {
    return sizeof(ckpt_cache_header) + sizeof(float) * (size_t)(B * E + B * S * D) + (size_t)count;
}

uint64_t cvx_ckpt_params_hash(const cvx_generate_params *p, const cvx_cache_params *cache, int height, int width,
                              uint64_t model_id) {
    uint64_t h = 0xcbf29ce484222325ull;
    h = cvx__fnv1a(h, &model_id, sizeof model_id); /* a checkpoint is only for the model that wrote it */
    const char *neg = p->negative_prompt ? p->negative_prompt : "";
    const char *sched = p->scheduler ? p->scheduler : "";
    const char *prompt = p->prompt ? p->prompt : "";
    h = cvx__fnv1a(h, prompt, strlen(prompt) + 1);
    h = cvx__fnv1a(h, neg, strlen(neg) + 1);
    h = cvx__fnv1a(h, sched, strlen(sched) + 1);
    int32_t ints[8] = {p->steps, p->num_frames, height, width, p->use_dynamic_cfg, (int32_t)p->noise_dtype,
                       (int32_t)p->precision, 0};
    h = cvx__fnv1a(h, ints, sizeof ints);
    h = cvx__fnv1a(h, &p->guidance_scale, sizeof p->guidance_scale);
    h = cvx__fnv1a(h, &p->seed, sizeof p->seed);
    if (cache->mode != CVX_CACHE_OFF) { /* off: the digest of the versions before the cache */
        int32_t mode = (int32_t)cache->mode;
        h = cvx__fnv1a(h, "cache", 6);
        h = cvx__fnv1a(h, &mode, sizeof mode);
        h = cvx__fnv1a(h, &cache->threshold, sizeof cache->threshold);
        h = cvx__fnv1a(h, cache->coefficients, sizeof cache->coefficients);
    }
    /* the conditioning of image-to-video, video-to-video and precomputed embeddings (absent: the earlier digest) */
    if (p->image) {
        int32_t d[2] = {p->image_width, p->image_height};
        h = cvx__fnv1a(h, "image", 6);
        h = cvx__fnv1a(h, d, sizeof d);
        h = cvx__fnv1a(h, p->image, (size_t)p->image_width * (size_t)p->image_height * 3);
    }
    if (p->video) {
        int32_t d[3] = {p->video_frames, p->video_width, p->video_height};
        h = cvx__fnv1a(h, "video", 6);
        h = cvx__fnv1a(h, d, sizeof d);
        h = cvx__fnv1a(h, &p->strength, sizeof p->strength);
        h = cvx__fnv1a(h, p->video, (size_t)p->video_frames * (size_t)p->video_width * (size_t)p->video_height * 3);
    }
    if (p->prompt_embeds) {
        size_t n = (size_t)p->embeds_length * (size_t)p->embeds_dim * sizeof(float);
        h = cvx__fnv1a(h, "embeds", 7);
        h = cvx__fnv1a(h, p->prompt_embeds, n);
        if (p->negative_prompt_embeds) h = cvx__fnv1a(h, p->negative_prompt_embeds, n);
    }
    return h;
}

size_t cvx_ckpt_bytes(int64_t n, const cvx_dit_teacache *tc, int64_t count) {
    return sizeof(ckpt_header) + 2 * (size_t)n * sizeof(float) + (tc ? cache_bytes(tc->B, tc->S, tc->D, tc->E, count) : 0);
}

void cvx_ckpt_write(void *blob, uint64_t params_hash, const cvx_denoise_step *s, int64_t n,
                    const unsigned char *computed) {
    ckpt_header h;
    memset(&h, 0, sizeof h);
    memcpy(h.magic, CKPT_MAGIC, 8);
    h.version = CKPT_VERSION;
    h.header_bytes = sizeof h;
    h.params_hash = params_hash;
    h.step = s->step + 1;
    h.count = s->total;
    h.n = n;
    h.timestep_back = s->state->timestep_back;
    h.has_pred = s->state->has_pred;
    h.has_back = s->state->has_back;
    if (s->generator) h.rng = *s->generator;
    unsigned char *b = blob;
    memcpy(b, &h, sizeof h);
    memcpy(b + sizeof h, s->latents, sizeof(float) * (size_t)n);
    memcpy(b + sizeof h + sizeof(float) * (size_t)n, s->state->pred_original_sample, sizeof(float) * (size_t)n);
    const cvx_dit_teacache *tc = s->teacache;
    if (!tc) return;
    unsigned char *sec = b + sizeof h + 2 * sizeof(float) * (size_t)n;
    ckpt_cache_header ch;
    memset(&ch, 0, sizeof ch);
    memcpy(ch.magic, CKPT_CACHE_MAGIC, 8);
    ch.version = CKPT_CACHE_VERSION;
    ch.header_bytes = sizeof ch;
    ch.acc = tc->acc;
    ch.B = tc->B, ch.S = tc->S, ch.D = tc->D, ch.E = tc->E;
    ch.count = s->total;
    ch.has_prev = tc->has_prev;
    ch.has_residual = tc->has_residual;
    memcpy(sec, &ch, sizeof ch);
    sec += sizeof ch;
    memcpy(sec, tc->emb_prev, sizeof(float) * (size_t)(tc->B * tc->E));
    sec += sizeof(float) * (size_t)(tc->B * tc->E);
    memcpy(sec, tc->residual, sizeof(float) * (size_t)(tc->B * tc->S * tc->D));
    sec += sizeof(float) * (size_t)(tc->B * tc->S * tc->D);
    for (int64_t i = 0; i < s->total; i++) sec[i] = i <= s->step ? computed[i] : 0;
}

cvx_status cvx_ckpt_read(const void *blob, size_t size, const char *what, cvx_ckpt_view *v, cvx_error *err) {
    memset(v, 0, sizeof *v);
    ckpt_header h;
    if (!blob || size < sizeof h) return cvx_fail(err, CVX_ERR_FORMAT, "%s: not a cogvideox checkpoint", what);
    memcpy(&h, blob, sizeof h);
    if (memcmp(h.magic, CKPT_MAGIC, 8) != 0) return cvx_fail(err, CVX_ERR_FORMAT, "%s: not a cogvideox checkpoint", what);
    if (h.version != CKPT_VERSION || h.header_bytes != sizeof h)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: version %u is not this build's %u", what, h.version, CKPT_VERSION);
    /* n bounded by the blob before it is multiplied: a corrupt count cannot wrap the size check */
    if (h.n < 1 || (uint64_t)h.n > (size - sizeof h) / (2 * sizeof(float)))
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: %zu bytes do not hold %lld latent values", what, size, (long long)h.n);
    const unsigned char *b = blob;
    const size_t base = sizeof h + 2 * (size_t)h.n * sizeof(float);
    if (size != base) { /* the step cache section */
        ckpt_cache_header ch;
        if (size - base < sizeof ch)
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: %zu bytes do not hold %lld latent values", what, size, (long long)h.n);
        memcpy(&ch, b + base, sizeof ch);
        if (memcmp(ch.magic, CKPT_CACHE_MAGIC, 8) != 0 || ch.version != CKPT_CACHE_VERSION ||
            ch.header_bytes != sizeof ch || ch.B < 1 || ch.B > 4096 || ch.S < 1 || ch.D < 1 || ch.E < 1 || ch.count < 1 ||
            ch.count > 1002 || ch.S > (int64_t)1 << 30 || ch.D > (int64_t)1 << 20 || ch.E > (int64_t)1 << 20 ||
            (double)ch.B * (double)ch.S * (double)ch.D * 4.0 > 1e12 ||
            size - base != cache_bytes(ch.B, ch.S, ch.D, ch.E, ch.count))
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: %zu bytes do not hold %lld latent values", what, size, (long long)h.n);
        v->has_cache = 1;
        v->acc = ch.acc;
        v->B = ch.B, v->S = ch.S, v->D = ch.D, v->E = ch.E;
        v->has_prev = ch.has_prev, v->has_residual = ch.has_residual;
        v->emb_prev = b + base + sizeof ch;
        v->residual = v->emb_prev + sizeof(float) * (size_t)(ch.B * ch.E);
        v->computed = v->residual + sizeof(float) * (size_t)(ch.B * ch.S * ch.D);
        if (ch.count != h.count)
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: the step cache is for %lld steps, the loop has %lld", what,
                            (long long)ch.count, (long long)h.count);
    }
    if (h.step < 1 || h.step > h.count || h.count > INT32_MAX || h.rng.next < 0 || h.rng.next > CVX_MT19937_N)
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: step %lld of %lld is out of range", what, (long long)h.step,
                        (long long)h.count);
    for (int64_t i = 0; i < (h.has_pred ? 2 * h.n : h.n); i++) {
        float x;
        memcpy(&x, b + sizeof h + 4 * (size_t)i, 4);
        if (!isfinite(x))
            return cvx_fail(err, CVX_ERR_FORMAT, "%s: latent value %lld is not finite", what, (long long)i);
    }
    v->params_hash = h.params_hash;
    v->step = h.step, v->count = h.count, v->n = h.n, v->timestep_back = h.timestep_back;
    v->has_pred = h.has_pred, v->has_back = h.has_back;
    v->rng = h.rng;
    v->latents = b + sizeof h;
    v->pred = v->latents + sizeof(float) * (size_t)h.n;
    return CVX_OK;
}
