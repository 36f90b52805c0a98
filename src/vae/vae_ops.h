/* The VAE's building blocks (internal to src/vae/): channels-last activations, GroupNorm statistics, the conv
 * engine (CogVideoXCausalConv3d, the up/down samplers' per-frame Conv2d, 1x1x1 shortcuts) and the conv caches.
 *
 * Layout: one sample and one frame batch at a time, x[t][y][x][c] (channels-last), so a conv is an implicit
 * GEMM: for a band of output rows, 3·kt products  out[M, Cout] += A[M, 3·Cin] · Wp[Cout, 3·Cin]ᵀ  where A's
 * rows are overlapping windows of the gathered input rows (pixels x·stride .. x·stride+2, contiguous in
 * channels-last) and Wp is the weight repacked as [kt·3 (dt, dy)][Cout][3 (dx)][Cin], packed once per call for
 * the kernels' micro-kernel. The gather applies the preceding GroupNorm / SpatialNorm3D + SiLU per row, so
 * normalised activations are never stored whole. Work is split over row bands of one output frame at a time
 * (results do not depend on the thread count).
 *
 * bf16 (cvx__vconv.bf16): the same gather, bands and taps, but each (dt, dy) tap is one cvx_linear_bf16_ex
 * product out[M, Cout] (+)= bf16(A)[M, 3·Cin] · bf16(Wp)[Cout, 3·Cin]ᵀ on the calling thread (A's overlapping
 * windows copied to rows of their own first), the running sum over taps carried in f32 by the epilogue's
 * residual; weights packed into the kernels' bf16 layout once per conv call. GroupNorm/SpatialNorm statistics
 * and transforms, SiLU, bias, residuals and the caches stay f32. */
#ifndef CVX_VAE_VAE_OPS_H
#define CVX_VAE_VAE_OPS_H

#include <stdint.h>

#include "core/dist.h"
#include "core/error.h"
#include "core/tensor.h"
#include "core/threadpool.h"

/* One sample's activation over one frame batch. */
typedef struct {
    int64_t C, T, H, W;
    float *data; /* [T][H][W][C], malloc'd (cvx__vact_alloc) or borrowed */
} cvx__vact;

cvx_status cvx__vact_alloc(cvx__vact *a, int64_t C, int64_t T, int64_t H, int64_t W, cvx_error *err);
void cvx__vact_free(cvx__vact *a);
static inline int64_t cvx__vact_frame(const cvx__vact *a) { return a->H * a->W * a->C; }
static inline int64_t cvx__vact_numel(const cvx__vact *a) { return a->T * a->H * a->W * a->C; }

/* How conv input frames are transformed while gathered: v = x·a[c] + b[c] (GroupNorm folded into a per-channel
 * affine), then, for SpatialNorm3D, v = v·zy[p] + zb[p] with p the nearest latent pixel (tmap/ymap/xmap map the
 * source frame/row/column to the conditioning's), then SiLU when silu is set. */
typedef struct {
    const float *a, *b;                /* [C] */
    const float *zy, *zb;              /* [Tz][Hz][Wz][C] or NULL (plain GroupNorm) */
    int64_t zH, zW;
    const int64_t *tmap, *ymap, *xmap; /* [T], [H], [W] of the source */
    int silu;
} cvx__vxform;

/* Applies xf to row y of frame t of x (W·C values) into dst. */
void cvx__vxform_row(const cvx__vxform *xf, const cvx__vact *x, int64_t t, int64_t y, float *dst);
/* The same for a row given by its W·C values: y indexes ymap (a neighbour's row: -1 or H, where the maps of a
 * row-split decode have entries). */
void cvx__vxform_apply(const cvx__vxform *xf, const float *src, int64_t W, int64_t C, int64_t t, int64_t y, float *dst);

/* GroupNorm statistics of x per group (channels-in-group × T × H × W, biased variance, accumulated in double),
 * folded with gamma/beta into xf->a/xf->b style vectors a[C], b[C]. With a row-split decode (dist of size > 1)
 * x is this rank's rows and the sums are added over the ranks first. */
cvx_status cvx__vgroupnorm_fold(cvx_pool *pool, const cvx__vact *x, int64_t groups, double eps, const float *gamma,
                                const float *beta, float *a, float *b, const cvx_dist *dist, cvx_error *err);

/* torch's nearest index (F.interpolate mode="nearest", given sizes): dst -> src. */
int64_t cvx__vnearest(int64_t dst, int64_t in_size, int64_t out_size);

/* ---- conv caches ------------------------------------------------------------------------------------- */
/* Every causal conv keeps the last 2 frames of its (front-padded, transformed) input for the next frame batch.
 * Slots live in memory, or in an unlinked temporary file (spill) so that a full-size decode stays small. */
typedef struct cvx__vcache cvx__vcache;

cvx_status cvx__vcache_new(cvx__vcache **out, int nslots, const char *spill_dir, cvx_error *err);
void cvx__vcache_free(cvx__vcache *c);
/* Forgets every slot (the reference's _clear_fake_context_parallel_cache). */
void cvx__vcache_clear(cvx__vcache *c);
int cvx__vcache_valid(const cvx__vcache *c, int slot);

/* ---- the conv engine ------------------------------------------------------------------------------------ */
typedef struct {
    const cvx__vact *src;     /* input [T][H][W][Cin] */
    const cvx__vxform *xf;    /* applied to src frames as they are gathered (NULL: none) */
    /* A row-split decode: the neighbours' rows next to src's first and last rows, untransformed, [src->T][W][C]
     * each (halo[0] above row 0, halo[1] below row H-1), or NULL where src's edge is the image's (zero padding). */
    const float *halo[2];
    int kt;                   /* temporal taps: 3 (causal: 2 front frames from the cache or frame-0 replicas) or 1 */
    int stride;               /* spatial stride 1 or 2 */
    int pad_right_only;       /* F.pad(x, (0, 1, 0, 1)) (downsampler) instead of 1 zero pixel on every side */
    int up2x;                 /* the input is src upsampled 2x (nearest) in H and W, gathered on the fly */
    const int64_t *tmap;      /* kt = 1: source frame of output frame t (NULL: t) */
    int64_t T_out;            /* kt = 3: src->T */
    cvx__vcache *cache;       /* kt = 3 */
    int slot;
    int store_cache;          /* keep this batch's last 2 input frames for the next batch */
    const float *w;           /* packed [kt·3][Cout][3·Cin] */
    const float *bias;        /* [Cout] */
    int64_t cout;
    const cvx__vact *res;     /* residual [T_out][Ho][Wo][Cres] added after the conv (NULL: none) */
    const float *wsc, *bsc;   /* res goes through a 1x1 conv [Cout][Cres] + bias first (NULL: identity) */
    float *dst;               /* [T_out][Ho][Wo][Cout] */
    int inplace;              /* dst overlaps src/res: each output frame is staged before it is stored */
    int bf16;                 /* the products in bf16 (activations rounded, bf16 weights, f32 accumulation) */
} cvx__vconv;

/* Output size of the conv along one spatial axis of virtual (post-upsampling) size n. */
int64_t cvx__vconv_out_size(const cvx__vconv *cv, int64_t n);
cvx_status cvx__vconv_run(cvx_pool *pool, const cvx__vconv *cv, cvx_error *err);

/* Repacks a torch conv weight [Cout, Cin, kt, 3, 3] (kt = 1 may also be a Conv2d [Cout, Cin, 3, 3]) in any
 * float dtype into f32 [kt·3][Cout][3·Cin]; NULL when out of memory. */
float *cvx__vpack_conv(const cvx_tensor *w, int64_t cout, int64_t cin, int kt);

#endif
