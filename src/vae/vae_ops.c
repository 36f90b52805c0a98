/* The VAE's conv engine, GroupNorm statistics and conv caches (see vae_ops.h for the layout). */
#include "vae/vae_ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "kernels/kernels.h"

cvx_status cvx__vact_alloc(cvx__vact *a, int64_t C, int64_t T, int64_t H, int64_t W, cvx_error *err) {
    a->C = C;
    a->T = T;
    a->H = H;
    a->W = W;
    a->data = NULL;
    int64_t n = C * T * H * W;
    if (C <= 0 || T <= 0 || H <= 0 || W <= 0 || n / C / T / H != W)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "VAE: bad activation size %lldx%lldx%lldx%lld", (long long)C,
                        (long long)T, (long long)H, (long long)W);
    a->data = malloc((size_t)n * sizeof(float));
    if (!a->data)
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for a %lldx%lldx%lldx%lld activation (%.2f GB)",
                        (long long)C, (long long)T, (long long)H, (long long)W, (double)n * 4 / 1e9);
    return CVX_OK;
}

void cvx__vact_free(cvx__vact *a) {
    free(a->data);
    a->data = NULL;
}

int64_t cvx__vnearest(int64_t dst, int64_t in_size, int64_t out_size) {
    /* ATen's nearest_idx: the same size and exact doubling are special-cased, otherwise
     * floor(dst · (float)in/out) in float, clamped. */
    if (out_size == in_size) return dst;
    if (out_size == 2 * in_size) return dst >> 1;
    float scale = (float)in_size / (float)out_size;
    int64_t s = (int64_t)floorf((float)dst * scale);
    return s < in_size - 1 ? s : in_size - 1;
}

void cvx__vxform_row(const cvx__vxform *xf, const cvx__vact *x, int64_t t, int64_t y, float *dst) {
    cvx__vxform_apply(xf, x->data + ((t * x->H + y) * x->W) * x->C, x->W, x->C, t, y, dst);
}

void cvx__vxform_apply(const cvx__vxform *xf, const float *src, int64_t W, int64_t C, int64_t t, int64_t y, float *dst) {
    const cvx_kernel_table *kt = cvx_kernels_active();
    const float *zyr = NULL, *zbr = NULL;
    if (xf->zy) {
        zyr = xf->zy + ((xf->tmap[t] * xf->zH + xf->ymap[y]) * xf->zW) * C;
        zbr = xf->zb + ((xf->tmap[t] * xf->zH + xf->ymap[y]) * xf->zW) * C;
    }
    /* one pixel at a time: its C values stay in L1 from the norm to the SiLU */
    for (int64_t i = 0; i < W; i++)
        kt->affine_silu(src + i * C, xf->a, xf->b, zyr ? zyr + xf->xmap[i] * C : NULL,
                        zbr ? zbr + xf->xmap[i] * C : NULL, dst + i * C, C, xf->silu);
}

/* ---- GroupNorm statistics ------------------------------------------------------------------------------ */

#define GN_CHUNKS 64

typedef struct {
    const cvx__vact *x;
    int64_t rows, nchunks;
    double *part; /* [nchunks][2][C] */
} gn_ctx;

static void gn_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    gn_ctx *g = arg;
    const int64_t C = g->x->C, W = g->x->W;
    for (int64_t ch = begin; ch < end; ch++) {
        double *s = g->part + ch * 2 * C, *q = s + C;
        memset(s, 0, (size_t)(2 * C) * sizeof(double));
        int64_t r0 = g->rows * ch / g->nchunks, r1 = g->rows * (ch + 1) / g->nchunks;
        cvx_kernels_active()->channel_moments(g->x->data + r0 * W * C, (r1 - r0) * W, C, s, q);
    }
}

cvx_status cvx__vgroupnorm_fold(cvx_pool *pool, const cvx__vact *x, int64_t groups, double eps, const float *gamma,
                                const float *beta, float *a, float *b, const cvx_dist *dist, cvx_error *err) {
    const int64_t C = x->C, cg = C / groups;
    gn_ctx g = {x, x->T * x->H, 0, NULL};
    /* A fixed partition (not per thread) keeps the sums, and so the result, independent of the thread count. */
    g.nchunks = g.rows < GN_CHUNKS ? g.rows : GN_CHUNKS;
    g.part = malloc((size_t)(g.nchunks * 2 * C + 1) * sizeof(double));
    double *tot = calloc((size_t)(2 * C + 1), sizeof(double)); /* sums, squares, and the pixel count */
    if (!g.part || !tot) {
        free(g.part);
        free(tot);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    }
    cvx_pool_parallel_for(pool, g.nchunks, 1, gn_task, &g);
    for (int64_t ch = 0; ch < g.nchunks; ch++)
        for (int64_t c = 0; c < 2 * C; c++) tot[c] += g.part[ch * 2 * C + c];
    tot[2 * C] = (double)(x->T * x->H * x->W);
    if (cvx_dist_size(dist) > 1 && cvx_dist_allreduce_sum(dist, tot, 2 * C + 1, err) != CVX_OK) {
        free(g.part);
        free(tot);
        return err->status;
    }
    const double n = (double)cg * tot[2 * C];
    for (int64_t gi = 0; gi < groups; gi++) {
        double s = 0, q = 0;
        for (int64_t c = gi * cg; c < (gi + 1) * cg; c++) {
            s += tot[c];
            q += tot[C + c];
        }
        double mean = s / n, var = q / n - mean * mean;
        if (var < 0) var = 0;
        double rstd = 1.0 / sqrt(var + eps);
        for (int64_t c = gi * cg; c < (gi + 1) * cg; c++) {
            double sc = rstd * (double)gamma[c];
            a[c] = (float)sc;
            b[c] = (float)((double)beta[c] - mean * sc);
        }
    }
    free(g.part);
    free(tot);
    return CVX_OK;
}

/* ---- conv caches --------------------------------------------------------------------------------------- */

struct cvx__vcache {
    int n;
    int64_t *elems; /* per slot: 2 frames */
    int *valid;
    float **mem;
    int fd;          /* spill file, -1 = memory */
    int64_t *offset; /* per slot, bytes */
    int64_t file_end;
};

cvx_status cvx__vcache_new(cvx__vcache **out, int nslots, const char *spill_dir, cvx_error *err) {
    *out = NULL;
    cvx__vcache *c = calloc(1, sizeof *c);
    if (!c) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    c->n = nslots;
    c->fd = -1;
    c->elems = calloc((size_t)nslots + 1, sizeof *c->elems);
    c->valid = calloc((size_t)nslots + 1, sizeof *c->valid);
    c->mem = calloc((size_t)nslots + 1, sizeof *c->mem);
    c->offset = calloc((size_t)nslots + 1, sizeof *c->offset);
    if (!c->elems || !c->valid || !c->mem || !c->offset) {
        cvx__vcache_free(c);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    }
    if (spill_dir) {
        char path[4096];
        if ((size_t)snprintf(path, sizeof path, "%s/cvx-vae-cache-XXXXXX", spill_dir) >= sizeof path) {
            cvx__vcache_free(c);
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "VAE: spill directory path too long");
        }
        c->fd = mkstemp(path);
        if (c->fd < 0) {
            int e = errno;
            cvx__vcache_free(c);
            return cvx_fail(err, CVX_ERR_IO, "VAE: cannot create a conv-cache file in %s: %s", spill_dir, strerror(e));
        }
        unlink(path); /* gone when closed, even after a crash */
    }
    *out = c;
    return CVX_OK;
}

void cvx__vcache_clear(cvx__vcache *c) {
    if (!c) return;
    for (int i = 0; i < c->n; i++) {
        free(c->mem[i]);
        c->mem[i] = NULL;
        c->valid[i] = 0;
        c->elems[i] = 0;
        c->offset[i] = 0;
    }
    if (c->fd >= 0 && c->file_end) {
        c->file_end = 0;
        if (ftruncate(c->fd, 0)) { /* only frees disk space early; the file is unlinked anyway */
        }
    }
}

void cvx__vcache_free(cvx__vcache *c) {
    if (!c) return;
    if (c->mem)
        for (int i = 0; i < c->n; i++) free(c->mem[i]);
    if (c->fd >= 0) close(c->fd);
    free(c->elems);
    free(c->valid);
    free(c->mem);
    free(c->offset);
    free(c);
}

int cvx__vcache_valid(const cvx__vcache *c, int slot) { return c && slot >= 0 && slot < c->n && c->valid[slot]; }

static int io_full(int fd, void *buf, size_t n, off_t off, int write) {
    char *p = buf;
    while (n) {
        size_t chunk = n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n;
        ssize_t r = write ? pwrite(fd, p, chunk, off) : pread(fd, p, chunk, off);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) return -1;
        p += r;
        n -= (size_t)r;
        off += r;
    }
    return 0;
}

/* Makes `slot` hold 2 frames of frame_elems (keeping its content when the size is unchanged). */
static cvx_status cache_prepare(cvx__vcache *c, int slot, int64_t frame_elems, cvx_error *err) {
    int64_t elems = 2 * frame_elems;
    if (c->elems[slot] == elems && (c->fd >= 0 || c->mem[slot])) return CVX_OK;
    c->valid[slot] = 0;
    c->elems[slot] = elems;
    if (c->fd >= 0) {
        c->offset[slot] = c->file_end;
        c->file_end += elems * (int64_t)sizeof(float);
        return CVX_OK;
    }
    free(c->mem[slot]);
    c->mem[slot] = malloc((size_t)elems * sizeof(float));
    if (!c->mem[slot])
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for a conv cache (%.2f GB)",
                        (double)elems * 4 / 1e9);
    return CVX_OK;
}

static int cache_rw(cvx__vcache *c, int slot, int64_t off_elems, int64_t n, float *buf, int write) {
    if (c->fd < 0) {
        float *p = c->mem[slot] + off_elems;
        if (write)
            memcpy(p, buf, (size_t)n * sizeof(float));
        else
            memcpy(buf, p, (size_t)n * sizeof(float));
        return 0;
    }
    return io_full(c->fd, buf, (size_t)n * sizeof(float), (off_t)(c->offset[slot] + off_elems * (int64_t)sizeof(float)),
                   write);
}

/* ---- weights ------------------------------------------------------------------------------------------- */

float *cvx__vpack_conv(const cvx_tensor *w, int64_t cout, int64_t cin, int kt) {
    int64_t n = cout * cin * kt * 9;
    float *full = malloc((size_t)n * sizeof(float));
    float *p = malloc((size_t)n * sizeof(float));
    if (!full || !p) {
        free(full);
        free(p);
        return NULL;
    }
    cvx_to_f32(NULL, full, w); /* [Cout][Cin][kt][3][3] */
    for (int64_t o = 0; o < cout; o++)
        for (int64_t i = 0; i < cin; i++)
            for (int dt = 0; dt < kt; dt++)
                for (int dy = 0; dy < 3; dy++)
                    for (int dx = 0; dx < 3; dx++)
                        p[(((int64_t)(dt * 3 + dy) * cout + o) * 3 + dx) * cin + i] =
                            full[(((o * cin + i) * kt + dt) * 3 + dy) * 3 + dx];
    free(full);
    return p;
}

/* ---- GEMM with the weights packed once per conv --------------------------------------------------------- */
/* The blocked loop of the kernels' GEMM driver (ops.c), with B (the weights) packed once per conv call instead
 * of once per GEMM: the table's packing and micro-kernel, K in blocks of PG_KC, A in blocks of PG_MC rows. */
#define PG_KC 256
#define PG_MC 192

typedef struct {
    int64_t N, K, npad; /* npad = N rounded up to nr */
    float *data;        /* K block b (k0 = b·PG_KC) at data + b·PG_KC·npad: ceil(N/nr) panels of kc x nr */
} packed_b;

static int64_t round_up64(int64_t x, int64_t m) { return (x + m - 1) / m * m; }

static float *alloc_aligned(int64_t n) {
    void *p = NULL;
    return posix_memalign(&p, 64, (size_t)(n > 0 ? n : 1) * sizeof(float)) ? NULL : p;
}

/* B [N][K] f32 (row stride K). */
static int pack_b(const cvx_kernel_table *kt, const float *B, int64_t N, int64_t K, packed_b *pb) {
    pb->N = N;
    pb->K = K;
    pb->npad = round_up64(N, kt->gemm_nr);
    pb->data = alloc_aligned(round_up64(K, PG_KC) * pb->npad);
    if (!pb->data) return -1;
    for (int64_t k0 = 0; k0 < K; k0 += PG_KC)
        kt->gemm_pack_b(CVX_DTYPE_F32, B, K, 0, N, k0, K - k0 < PG_KC ? K - k0 : PG_KC, pb->data + k0 * pb->npad);
    return 0;
}

/* C[M, N] (+)= A[M, K] · Bᵀ; pa holds PG_MC x PG_KC floats (rounded up to mr). */
static void pgemm(const cvx_kernel_table *kt, int64_t M, const float *A, int64_t lda, const packed_b *pb, float *C,
                  int64_t ldc, int accumulate, float *pa) {
    const int64_t mr = kt->gemm_mr, nr = kt->gemm_nr, N = pb->N, K = pb->K;
    for (int64_t k0 = 0; k0 < K; k0 += PG_KC) {
        const int64_t kc = K - k0 < PG_KC ? K - k0 : PG_KC;
        const float *bb = pb->data + k0 * pb->npad;
        const int acc = accumulate || k0 > 0;
        for (int64_t i0 = 0; i0 < M; i0 += PG_MC) {
            const int64_t mc = M - i0 < PG_MC ? M - i0 : PG_MC;
            kt->gemm_pack_a(A + i0 * lda + k0, lda, mc, kc, pa);
            for (int64_t j = 0; j < N; j += nr) {
                const int nn = (int)(N - j < nr ? N - j : nr);
                for (int64_t i = 0; i < mc; i += mr)
                    kt->gemm_ukernel(kc, pa + i * kc, mr, bb + j * kc, C + (i0 + i) * ldc + j, ldc,
                                     (int)(mc - i < mr ? mc - i : mr), nn, acc, NULL);
            }
        }
    }
}

/* ---- the conv engine ----------------------------------------------------------------------------------- */

/* bf16: the weights of every (dt, dy) tap [Cout][3·Cin], then the shortcut [Cout][Cres], in the bf16 kernels'
 * layout. *out has npk entries. */
static cvx_status pack_bf16_taps(cvx_pool *pool, const cvx__vconv *cv, int64_t cin, int npk, cvx_packed ***out,
                                 cvx_error *err) {
    const int64_t cout = cv->cout;
    cvx_packed **pk = calloc((size_t)npk, sizeof *pk);
    cvx_status st = pk ? CVX_OK : cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for packed weights");
    for (int g = 0; !st && g < npk; g++) {
        cvx_tensor t = g < cv->kt * 3
                           ? cvx_tensor_view(CVX_DTYPE_F32, (void *)(cv->w + (int64_t)g * cout * 3 * cin), 2,
                                             (int64_t[]){cout, 3 * cin})
                           : cvx_tensor_view(CVX_DTYPE_F32, (void *)cv->wsc, 2, (int64_t[]){cout, cv->res->C});
        if (cvx_pack_bf16(pool, &t, &pk[g]) != CVX_OK)
            st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for bf16 packed weights");
    }
    *out = pk;
    return st;
}

/* Output rows per task: the gathered (transformed) input rows are shared by the band's outputs and the GEMMs
 * get about this many rows of A. */
#define BAND_PIXELS 2048

typedef struct {
    const cvx__vconv *cv;
    const cvx_kernel_table *kt;
    int64_t Cin, Hv, Wv, Wp, Ho, Wo, pad, band, nbands, row_elems;
    int64_t t;       /* output frame (when not band_outer) */
    float *out;      /* where frame t goes (when not band_outer) */
    int band_outer;  /* each task's bands over every output frame, written straight to cv->dst */
    int64_t out_frame; /* elements of one output frame */
    float **scratch; /* per thread: patch + one transformed source row + band output */
    float **pa;      /* per thread: packed A block */
    packed_b *pb;    /* per (dt, dy) tap, then the shortcut */
    cvx_packed **pk; /* bf16: per (dt, dy) tap [Cout][3·Cin], then the shortcut [Cout][Cres]; NULL: f32 */
    int64_t patch_elems;
    int *failed;     /* per thread: 1 a cache read failed, 2 a bf16 product was refused */
    int64_t cache_row0, cache_rows; /* the cache's row of src row 0, rows per cache frame */
} conv_ctx;

/* C[M, Cout] (+)= A · W_gᵀ for tap g = dt·3 + dy (A's rows: lda apart, 3·Cin values = the dx = 0..2 pixels, so
 * rows overlap when lda < 3·Cin) or the shortcut (g = kt·3, A [M][Cres]). In bf16 the running sum over taps is
 * carried in f32 by the epilogue's residual (y itself). */
static void tap_gemm(const conv_ctx *x, int thread_index, int g, int64_t M, const float *A, int64_t lda, float *C,
                     int64_t ldc, int accumulate, float *pa) {
    if (!x->pk) {
        pgemm(x->kt, M, A, lda, &x->pb[g], C, ldc, accumulate, pa);
        return;
    }
    const cvx_packed *w = x->pk[g];
    const int64_t K = cvx_packed_cols(w);
    const cvx_epilogue sum = {.residual = C, .ldres = ldc};
    if (cvx_linear_bf16_ex(NULL, C, ldc, A, lda, M, K, w, NULL, accumulate ? &sum : NULL))
        x->failed[thread_index] = 2;
}

/* The input frame for output frame t, temporal tap dt: source frame index, or -1 - j for cache frame j. */
static int64_t tap_frame(const conv_ctx *x, int64_t t, int dt) {
    const cvx__vconv *cv = x->cv;
    if (cv->kt == 1) return cv->tmap ? cv->tmap[t] : t;
    int64_t p = t + dt; /* index into the front-padded sequence */
    if (p >= 2) return p - 2;
    if (cvx__vcache_valid(cv->cache, cv->slot)) return -1 - p;
    return 0; /* no context yet: replicas of frame 0 */
}

/* Gathers source row r of frame f (transformed) into dst (W·Cin values, duplicated to 2W when up2x). r = -1 and
 * r = H are the neighbours' rows of a row-split decode (cv->halo). */
static int gather_row(const conv_ctx *x, int64_t f, int64_t r, float *dst, float *tmp) {
    const cvx__vconv *cv = x->cv;
    const cvx__vact *s = cv->src;
    const int64_t C = s->C, W = s->W;
    if (f < 0) { /* cache frame: already the conv's input (its rows from -1 when there are halos) */
        return cache_rw(cv->cache, cv->slot, (-1 - f) * x->cache_rows * W * C + (r + x->cache_row0) * W * C, W * C,
                        dst, 0);
    }
    const float *src = r < 0 ? cv->halo[0] + f * W * C : r >= s->H ? cv->halo[1] + f * W * C
                                                                   : s->data + ((f * s->H + r) * W) * C;
    const float *row;
    if (cv->xf) {
        float *o = cv->up2x ? tmp : dst;
        cvx__vxform_apply(cv->xf, src, W, C, f, r, o);
        row = o;
    } else {
        row = src;
        if (!cv->up2x) {
            memcpy(dst, row, (size_t)(W * C) * sizeof(float));
            return 0;
        }
    }
    if (cv->up2x)
        for (int64_t i = 0; i < W; i++) {
            memcpy(dst + (2 * i) * C, row + i * C, (size_t)C * sizeof(float));
            memcpy(dst + (2 * i + 1) * C, row + i * C, (size_t)C * sizeof(float));
        }
    return 0;
}

/* Gathers the rows of source frame f that band y0 (nrows input rows) reads into one tap slot of the patch:
 * [nrows][Wp][Cin], zero outside the (virtual) input. */
static void gather_band(const conv_ctx *x, int thread_index, int64_t f, int64_t y0, int64_t nrows, float *slot,
                        float *tmp) {
    const cvx__vconv *cv = x->cv;
    const int64_t Cin = x->Cin, Wp = x->Wp;
    for (int64_t rr = 0; rr < nrows; rr++) {
        float *prow = slot + rr * Wp * Cin;
        int64_t iy = y0 * cv->stride - x->pad + rr;
        /* outside the (virtual) input: zero padding, or a neighbour's row in a row-split decode */
        int64_t sy = iy < 0 ? -1 : iy >= x->Hv ? cv->src->H : cv->up2x ? iy / 2 : iy;
        if ((iy < 0 && (iy < -1 || !cv->halo[0])) || (iy >= x->Hv && (iy > x->Hv || !cv->halo[1]))) {
            memset(prow, 0, (size_t)(Wp * Cin) * sizeof(float));
            continue;
        }
        if (x->pad) memset(prow, 0, (size_t)Cin * sizeof(float));
        memset(prow + (x->pad + x->Wv) * Cin, 0, (size_t)((Wp - x->pad - x->Wv) * Cin) * sizeof(float));
        if (gather_row(x, f, sy, prow + x->pad * Cin, tmp)) x->failed[thread_index] = 1;
    }
}

/* The residual (through the shortcut GEMM or added) and the biases of output row yo of frame t, in crow. */
static void finish_row(const conv_ctx *x, int thread_index, int64_t t, int64_t yo, float *crow, float *pa) {
    const cvx__vconv *cv = x->cv;
    const int64_t Wo = x->Wo, Cout = cv->cout;
    if (cv->res) {
        const cvx__vact *r = cv->res;
        const float *rrow = r->data + ((t * r->H + yo) * r->W) * r->C;
        if (cv->wsc)
            tap_gemm(x, thread_index, cv->kt * 3, Wo, rrow, r->C, crow, Cout, 1, pa);
        else
            for (int64_t i = 0; i < Wo * Cout; i++) crow[i] += rrow[i];
    }
    if (cv->bias || cv->bsc)
        for (int64_t i = 0; i < Wo; i++) {
            float *c = crow + i * Cout;
            if (cv->bias)
                for (int64_t o = 0; o < Cout; o++) c[o] += cv->bias[o];
            if (cv->bsc)
                for (int64_t o = 0; o < Cout; o++) c[o] += cv->bsc[o];
        }
}

/* Bands of output rows, each over output frames t0 .. t1 (x->band_outer: every frame, else x->t alone). A band's
 * patch holds one slot per temporal tap, each the band's gathered (transformed) rows of one source frame, and the
 * slots are kept from one output frame to the next: with 3 causal taps, output frame t+1 reads two of frame t's
 * three source frames, so each source frame is gathered and normalized once per band instead of once per tap. */
static void conv_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    conv_ctx *x = arg;
    const cvx__vconv *cv = x->cv;
    const int64_t Cin = x->Cin, Cout = cv->cout, Wp = x->Wp, Wo = x->Wo, st = cv->stride;
    float *patch = x->scratch[thread_index], *tmp = patch + x->patch_elems, *ctmp = tmp + x->row_elems;
    float *pa = x->pa[thread_index];
    const int64_t t0 = x->band_outer ? 0 : x->t, t1 = x->band_outer ? cv->T_out : x->t + 1;
    for (int64_t band = begin; band < end; band++) {
        int64_t y0 = band * x->band, rows = x->Ho - y0 < x->band ? x->Ho - y0 : x->band;
        int64_t nrows = (rows - 1) * st + 3, slot_elems = nrows * Wp * Cin;
        int64_t held[3]; /* the source frame in each slot (gather_row's convention); INT64_MIN: none */
        for (int s = 0; s < 3; s++) held[s] = INT64_MIN;
        for (int64_t t = t0; t < t1; t++) {
            const float *tap[3];
            int64_t f[3];
            int used = 0; /* slots this frame's taps read */
            for (int dt = 0; dt < cv->kt; dt++) {
                f[dt] = tap_frame(x, t, dt);
                tap[dt] = NULL;
                for (int s = 0; s < cv->kt; s++)
                    if (held[s] == f[dt]) tap[dt] = patch + s * slot_elems, used |= 1 << s;
            }
            for (int dt = 0; dt < cv->kt; dt++) {
                if (tap[dt]) continue;
                int s = 0;
                while (used & (1 << s)) s++; /* a slot no tap of this frame reads (kt slots, <= kt frames) */
                gather_band(x, thread_index, f[dt], y0, nrows, patch + s * slot_elems, tmp);
                held[s] = f[dt], used |= 1 << s;
                for (int d2 = dt; d2 < cv->kt; d2++)
                    if (f[d2] == f[dt]) tap[d2] = patch + s * slot_elems;
            }
            float *out = x->band_outer ? cv->dst + t * x->out_frame : x->out;
            if (st == 1) {
                /* One GEMM per tap over the whole band: A's rows run through the gathered rows back to back, so
                 * the 2 padding pixels of each row give 2 discarded outputs, and the weights are packed once per
                 * band instead of once per row. The rows are finished in ctmp and then copied, so that an output
                 * written over its own residual (cv->inplace) reads the residual first. */
                const int64_t M = (rows - 1) * Wp + Wo;
                int acc = 0;
                for (int dt = 0; dt < cv->kt; dt++)
                    for (int dy = 0; dy < 3; dy++) {
                        /* tap dy starts dy·Wp pixels in; a row is the 3 pixels from there (lda = Cin) */
                        tap_gemm(x, thread_index, dt * 3 + dy, M, tap[dt] + dy * Wp * Cin, Cin, ctmp, Cout, acc, pa);
                        acc = 1;
                    }
                for (int64_t r = 0; r < rows; r++) {
                    float *crow = ctmp + r * Wp * Cout;
                    finish_row(x, thread_index, t, y0 + r, crow, pa);
                    memcpy(out + (y0 + r) * Wo * Cout, crow, (size_t)(Wo * Cout) * sizeof(float));
                }
                continue;
            }
            for (int64_t yo = y0; yo < y0 + rows; yo++) {
                float *crow = out + yo * Wo * Cout;
                int acc = 0;
                for (int dt = 0; dt < cv->kt; dt++)
                    for (int dy = 0; dy < 3; dy++) {
                        const float *A = tap[dt] + ((yo - y0) * st + dy) * Wp * Cin;
                        tap_gemm(x, thread_index, dt * 3 + dy, Wo, A, st * Cin, crow, Cout, acc, pa);
                        acc = 1;
                    }
                finish_row(x, thread_index, t, yo, crow, pa);
            }
        }
    }
}

int64_t cvx__vconv_out_size(const cvx__vconv *cv, int64_t n) {
    int64_t padded = cv->pad_right_only ? n + 1 : n + 2;
    return (padded - 3) / cv->stride + 1;
}

/* Stores the last 2 frames of the front-padded, transformed input as the next batch's context. */
typedef struct {
    const conv_ctx *x;
    int64_t f, off; /* source frame (gather_row's convention), element offset of the cache frame */
} store_ctx;

static void store_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    store_ctx *c = arg;
    const cvx__vconv *cv = c->x->cv;
    const int64_t rowe = c->x->row_elems;
    float *row = c->x->scratch[thread_index], *tmp = row + rowe;
    for (int64_t i = begin; i < end; i++) {
        int64_t r = i - c->x->cache_row0; /* -1 and H: the neighbours' rows, when there are */
        if ((r < 0 && !cv->halo[0]) || (r >= cv->src->H && !cv->halo[1])) continue;
        if (gather_row(c->x, c->f, r, row, tmp) || cache_rw(cv->cache, cv->slot, c->off + i * rowe, rowe, row, 1))
            c->x->failed[thread_index] = 1;
    }
}

/* Stores the last 2 frames of the front-padded, transformed input as the next batch's context. Frame 0 is
 * written before frame 1 is: with a 1-frame input, new frame 0 is the old frame 1 of the same slot. */
static cvx_status store_cache(cvx_pool *pool, conv_ctx *x, cvx_error *err) {
    const cvx__vconv *cv = x->cv;
    const int64_t frame = x->cache_rows * x->row_elems;
    int had = cvx__vcache_valid(cv->cache, cv->slot);
    cvx_status st = cache_prepare(cv->cache, cv->slot, frame, err);
    if (st) return st;
    if (had && !cvx__vcache_valid(cv->cache, cv->slot)) had = 0; /* resized: the old context is gone */
    for (int j = 0; j < 2; j++) {
        int64_t p = cv->src->T + j; /* padded index of the frame that becomes cache frame j */
        store_ctx c = {x, p >= 2 ? p - 2 : had ? -1 - p : 0, j * frame};
        cvx_pool_parallel_for(pool, x->cache_rows, 0, store_task, &c);
        for (int i = 0; i < cvx_pool_size(pool); i++)
            if (x->failed[i]) return cvx_fail(err, CVX_ERR_IO, "VAE: conv cache I/O failed: %s", strerror(errno));
    }
    cv->cache->valid[cv->slot] = 1;
    return CVX_OK;
}

cvx_status cvx__vconv_run(cvx_pool *pool, const cvx__vconv *cv, cvx_error *err) {
    const cvx__vact *s = cv->src;
    conv_ctx x = {0};
    x.cv = cv;
    x.kt = cvx_kernels_active();
    x.Cin = s->C;
    x.Hv = cv->up2x ? 2 * s->H : s->H;
    x.Wv = cv->up2x ? 2 * s->W : s->W;
    x.pad = cv->pad_right_only ? 0 : 1;
    x.Wp = x.Wv + (cv->pad_right_only ? 1 : 2);
    x.Ho = cvx__vconv_out_size(cv, x.Hv);
    x.Wo = cvx__vconv_out_size(cv, x.Wv);
    int nth = cvx_pool_size(pool);
    x.band = (BAND_PIXELS + x.Wp - 1) / x.Wp;
    if (x.band > (x.Ho + 2 * nth - 1) / (2 * nth)) x.band = (x.Ho + 2 * nth - 1) / (2 * nth); /* >= 2 tasks/thread */
    if (x.band < 1) x.band = 1;
    x.nbands = (x.Ho + x.band - 1) / x.band;
    int64_t band_rows = (x.band - 1) * cv->stride + 3;
    x.patch_elems = cv->kt * band_rows * x.Wp * x.Cin;
    x.row_elems = s->W * s->C;
    /* the cache keeps the neighbours' rows too (rows -1 .. H) in a row-split decode */
    x.cache_row0 = cv->halo[0] || cv->halo[1] ? 1 : 0;
    x.cache_rows = s->H + 2 * x.cache_row0;
    int64_t scratch_elems = x.patch_elems + x.row_elems + (cv->stride == 1 ? x.band * x.Wp * cv->cout : 0);
    if (scratch_elems < 2 * x.row_elems) scratch_elems = 2 * x.row_elems; /* store_cache: row + tmp */
    const int64_t out_frame = x.Ho * x.Wo * cv->cout;
    float *stage = NULL;
    const int ntaps = cv->kt * 3 + (cv->wsc ? 1 : 0);
    x.scratch = calloc((size_t)nth, sizeof(float *));
    x.pa = calloc((size_t)nth, sizeof(float *));
    x.failed = calloc((size_t)nth, sizeof(int));
    x.pb = calloc((size_t)ntaps, sizeof(packed_b));
    cvx_status st = CVX_OK;
    if (!x.scratch || !x.pa || !x.failed || !x.pb) st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory");
    for (int i = 0; !st && i < nth; i++)
        if (!(x.scratch[i] = malloc((size_t)scratch_elems * sizeof(float))) ||
            !(x.pa[i] = alloc_aligned(round_up64(PG_MC, x.kt->gemm_mr) * PG_KC)))
            st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for conv scratch");
    const int npk = ntaps;
    if (!st && cv->bf16) st = pack_bf16_taps(pool, cv, x.Cin, npk, &x.pk, err);
    for (int g = 0; !st && !cv->bf16 && g < ntaps; g++) {
        int sc = g == cv->kt * 3; /* the shortcut [Cout][Cres] */
        int64_t K = sc ? cv->res->C : 3 * x.Cin;
        if (pack_b(x.kt, sc ? cv->wsc : cv->w + (int64_t)g * cv->cout * K, cv->cout, K, &x.pb[g]))
            st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for packed weights");
    }
    /* Stride 1 (every decoder conv): bands outer, frames inner (conv_task), in one parallel pass — unless the output
     * overwrites a wider residual (a narrower frame then lands on earlier frames' residual rows, which a band
     * behind may still read). Otherwise frame by frame, staged when the output overwrites its input. */
    x.band_outer = cv->stride == 1 && !(cv->inplace && cv->res && cv->res->C != cv->cout);
    x.out_frame = out_frame;
    if (!st && cv->inplace && !x.band_outer && !(stage = malloc((size_t)out_frame * sizeof(float))))
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "VAE: out of memory for a staged frame (%.2f GB)",
                      (double)out_frame * 4 / 1e9);
    for (int64_t t = 0; !st && t < (x.band_outer ? 1 : cv->T_out); t++) {
        x.t = t;
        x.out = cv->inplace ? stage : cv->dst + t * out_frame;
        cvx_pool_parallel_for(pool, x.nbands, 1, conv_task, &x);
        for (int i = 0; i < nth && !st; i++)
            if (x.failed[i] == 2) st = cvx_fail(err, CVX_ERR_INTERNAL, "VAE: a bf16 conv product was refused");
            else if (x.failed[i]) st = cvx_fail(err, CVX_ERR_IO, "VAE: reading a conv cache failed: %s", strerror(errno));
        if (!st && cv->inplace && !x.band_outer) memmove(cv->dst + t * out_frame, stage, (size_t)out_frame * sizeof(float));
    }
    if (!st && cv->kt == 3 && cv->store_cache) st = store_cache(pool, &x, err);
    for (int i = 0; i < nth; i++) {
        if (x.scratch) free(x.scratch[i]);
        if (x.pa) free(x.pa[i]);
    }
    for (int g = 0; x.pb && g < ntaps; g++) free(x.pb[g].data);
    for (int g = 0; x.pk && g < npk; g++) cvx_packed_free(x.pk[g]);
    free(x.pk);
    free(x.scratch);
    free(x.pa);
    free(x.pb);
    free(x.failed);
    free(stage);
    return st;
}
