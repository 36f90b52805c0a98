/* The AVX512-BF16 path of the bf16 fast path: vdpbf16ps (two bf16 products per f32 lane, f32 accumulation).
 *
 * GEMM, C[M, N] = bf16(A)[M, K] · W[N, K]ᵀ (+ bias): W is packed once (CVX_PACK_PAIRS, kernels_internal.h:
 * panels of 32 output columns, K pairs interleaved, so one 64-byte row of a panel is the second operand of
 * vdpbf16ps for 16 columns). A is converted while it is packed (vcvtne2ps2bf16, round to nearest even) into
 * micro-panels of MR rows: for each K pair, MR 32-bit words that the micro-kernel broadcasts.
 * Micro-tile: MR = 12 rows x 32 columns in 24 zmm accumulators; per K pair two panel loads and 12 broadcasts
 * feed 24 vdpbf16ps (the instruction's latency is 6 cycles at 2 per cycle, so 12+ chains keep it busy).
 * Blocking (gemm_driver.h's plan and loop nest; this file supplies the micro-kernel): KC (<= 2048 K values) x MC (144 rows) of packed A stays in L2 while each 32-column panel slice
 * (KC x 32 bf16, <= 128 KB) streams through L1/L2 once per row block; long K blocks amortise the C tile's
 * read-modify-write, which otherwise costs more than the L1 reuse of a short block gains (measured), and the
 * tile is prefetched at the start of each later K block. A's f32 rows arrive from memory under software
 * prefetch while they are packed: at K = 7680 (FF down-projection) converting A is ~5 % of the work, and
 * MC = 144 instead of 96 streams the weights a third less often (81.7 % -> ~90 % of peak there, Zen 5).
 * Threads split rows first (row blocks of MC), then columns when there are too few row blocks.
 *
 * vcvtne2ps2bf16 and vdpbf16ps treat f32/bf16 subnormal inputs as zero (torch would keep a bf16 subnormal);
 * everything else matches c10::BFloat16's rounding. */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/half.h"
#include "kernels/bf16_avx512.h"

#define MR 12
#define NR CVX_PACK_NR /* 32: two zmm of columns */
#define KC_MAX 2048
#define MC 144 /* multiple of MR; 144 x KC bf16 of A (576 KB) + a B panel slice fit the 1 MB L2 of Zen 4/5 */

/* A[m, k] (row stride lda) -> ceil(m/MR) micro-panels of ceil(k/2) x MR words (panel stride MR·ceil(k/2)). */
static void pack_a(const float *A, int64_t lda, int64_t m, int64_t k, uint32_t *dst) {
    int64_t kp = (k + 1) / 2;
    for (int64_t i0 = 0; i0 < m; i0 += MR, dst += MR * kp)
        pack_pairs_transposed(A + i0 * lda, lda, (int)min64(MR, m - i0), k, dst, MR, MR);
}

/* ---- micro-kernel ----------------------------------------------------------------------------------------- */

INL void store_tile_row(float *c, __m512 v, int n, int acc, const float *bias) {
    if (n >= 16) {
        if (acc) v = _mm512_add_ps(v, _mm512_loadu_ps(c));
        else if (bias) v = _mm512_add_ps(v, _mm512_loadu_ps(bias));
        _mm512_storeu_ps(c, v);
    } else if (n > 0) {
        __mmask16 k = lanes(n);
        if (acc) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, c));
        else if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias));
        _mm512_mask_storeu_ps(c, k, v);
    }
}

/* C[i, j] (+)= sum_t a[t*MR + i] · b[t*NR + j] (bf16 pairs) for i < m, j < n; m is a compile-time constant
 * after inlining, so the accumulators live in registers. */
INL void ukernel_m(const int m, int64_t kp, const uint32_t *a, const uint32_t *b, float *C, int64_t ldc, int n,
                   int acc, const float *bias, float *rmax) {
    __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
    for (int i = 0; i < m; i++) c0[i] = c1[i] = _mm512_setzero_ps();
    if (acc) { /* the C tile was last touched a K block ago: have it in L1 by the time the sums are merged */
#pragma GCC unroll 16
        for (int i = 0; i < m; i++) {
            _mm_prefetch((const char *)(C + i * ldc), _MM_HINT_T0);
            _mm_prefetch((const char *)(C + i * ldc + 16), _MM_HINT_T0);
        }
    }
    for (int64_t t = 0; t < kp; t++, a += MR, b += NR) {
        __m512bh b0 = (__m512bh)_mm512_loadu_si512(b), b1 = (__m512bh)_mm512_loadu_si512(b + 16);
#pragma GCC unroll 16
        for (int i = 0; i < m; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)a[i]);
            c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
            c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
        }
    }
    int n0 = n < 16 ? n : 16, n1 = n - n0;
#pragma GCC unroll 16
    for (int i = 0; i < m; i++) {
        store_tile_row(C + i * ldc, c0[i], n0, acc, bias);
        store_tile_row(C + i * ldc + 16, c1[i], n1, acc, bias ? bias + 16 : NULL);
        if (rmax) { /* attention scores: the running row maxima, lane-wise, while the tile is in registers */
            __m512 r = _mm512_loadu_ps(rmax + 16 * i);
            r = _mm512_mask_max_ps(r, lanes(n0), r, c0[i]);
            r = _mm512_mask_max_ps(r, lanes(n1), r, c1[i]);
            _mm512_storeu_ps(rmax + 16 * i, r);
        }
    }
}

static void ukernel(int m, int64_t kp, const uint32_t *a, const uint32_t *b, float *C, int64_t ldc, int n, int acc,
                    const float *bias) {
    switch (m) {
#define UK_CASE(i) \
    case i: ukernel_m(i, kp, a, b, C, ldc, n, acc, bias, NULL); break;
        UK_CASE(1) UK_CASE(2) UK_CASE(3) UK_CASE(4) UK_CASE(5) UK_CASE(6)
        UK_CASE(7) UK_CASE(8) UK_CASE(9) UK_CASE(10) UK_CASE(11) UK_CASE(12)
#undef UK_CASE
    default: break;
    }
}

/* Q·Kᵀ tile of the attention: stores S like ukernel (no bias, no accumulation) and folds each row's scores
 * into rmax[16 i + lane] (running maxima). */
static void s_kernel(int m, int64_t kp, const uint32_t *a, const uint32_t *b, float *S, int64_t lds, int n,
                     float *rmax) {
    switch (m) {
#define SK_CASE(i) \
    case i: ukernel_m(i, kp, a, b, S, lds, n, 0, NULL, rmax); break;
        SK_CASE(1) SK_CASE(2) SK_CASE(3) SK_CASE(4) SK_CASE(5) SK_CASE(6)
        SK_CASE(7) SK_CASE(8) SK_CASE(9) SK_CASE(10) SK_CASE(11) SK_CASE(12)
#undef SK_CASE
    default: break;
    }
}

/* ---- GEMM on the one driver (gemm_driver.h) ------------------------------------------------------------------ */

static void pd_pack_a(const cvx_gemm_job *j, const float *src, int rows, int64_t k, int64_t kpad, unsigned char *dst) {
    (void)kpad;
    pack_pairs_transposed(src, j->lda, rows, k, (uint32_t *)dst, MR, MR);
}

/* One MR x 32 tile over the whole K block (no sub-blocks): straight into C (bias fused), or with an epilogue into the
 * L1 tile (extra) and merged by it (y may hold the residual). */
static void pd_tile(const cvx_gemm_job *j, void *state, const cvx_gemm_tile *t) {
    (void)state;
    const uint32_t *a = (const uint32_t *)t->a, *b = t->b;
    float *cp = j->C + t->row * j->ldc + t->col;
    const int64_t kp = t->kpad / 2;
    if (!j->epi) {
        ukernel(t->m, kp, a, b, cp, j->ldc, t->n, t->acc, t->bias);
    } else {
        float *tile = (float *)t->extra;
        ukernel(t->m, kp, a, b, tile, NR, t->n, 0, NULL);
        bf16_epilogue(tile, NR, cp, j->ldc, t->row, t->m, t->col, t->n, j->bias ? j->bias + t->col : NULL, j->epi,
                      t->first, t->last);
    }
}

static size_t pd_extra(const cvx_gemm_job *j) { return j->epi ? MR * NR * sizeof(float) : 0; }

/* MC = 144 rows x KC bf16 of A (576 KB) + a B panel slice fit the 1 MB L2 of Zen 4/5. */
static const cvx_gemm_desc pairs_desc = {
    .mr = MR, .nr = NR, .kalign = 2, .ksub = 0, .kc_max = KC_MAX, .equal_kblocks = 1, .mc_max = MC,
    .a_block_bytes = 0, .a_elem = 2, .columns_first = 0,
    .pack_a = pd_pack_a, .pack_b = NULL, .b_panel = pairs_b_panel, .tile = pd_tile, .extra_bytes = pd_extra,
};

static void gemm_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    const cvx_gemm_job *j = arg;
    cvx_gemm_run_tasks(&pairs_desc, j, NULL, cvx_gemm_scratch(j, thread_index), begin, end);
}

/* Always runs (returns 1): without memory for the per-thread buffers, one row group and 64 K values at a time
 * from the stack. */
static int gemm_pairs(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const uint32_t *B,
                      int64_t bkp, float *C, int64_t ldc, int accumulate, const float *bias, const cvx_epilogue *epi) {
    unsigned char small[MR * 64 * 2 + MR * NR * 4] __attribute__((aligned(64)));
    return bf16_pairs_gemm(&pairs_desc, gemm_task, small, 64, MR * NR * 4, pool, M, N, K, A, lda, B, bkp, C, ldc,
                           accumulate, bias, epi);
}

static void bf16_linear(cvx_pool *pool, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t K,
                        const cvx_packed *W, const float *bias, const cvx_epilogue *epi) {
    (void)gemm_pairs(pool, M, W->n, K, x, ldx, (const uint32_t *)W->data, W->kp, y, ldy, 0, bias, epi);
}

static void bf16_gemm_nt(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda,
                         const float *B, int64_t ldb, float *C, int64_t ldc, int accumulate) {
    bf16_gemm_nt_via_pairs(gemm_pairs, pool, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/* ---- flash attention ---------------------------------------------------------------------------------------
 * Per (batch, head): K is packed once as CVX_PACK_PAIRS panels (32 keys x head-dim pairs: the B operand of
 * the GEMM micro-kernel) and V as key pairs x channels (word (t, d) = V[2t, d], V[2t+1, d]). Per block of
 * ATT_BQ queries (packed like GEMM A rows) and tile of ATT_BK keys:
 *   S = Q·Kᵀ (f32, the GEMM micro-kernel) -> per query row the running max (in log2 units), p = 2^(y - max)
 *   with y = s·scale·log2(e) (or (s·scale + bias)·log2(e)), the f32 sum of p, and p rounded to bf16 in key
 *   order (vcvtne2ps2bf16 gives the pairs directly) -> O += P·V (vdpbf16ps, P words broadcast from its rows).
 * The running sum l takes the f32 probabilities, P·V the bf16 ones; O and l share each correction factor.
 * Never an Lq x Lk buffer: S and P are ATT_BQ x ATT_BK. */

#define ATT_BQ 48  /* queries per block: a multiple of MR and of PV_MR */
#define ATT_BK 256 /* keys per tile: a multiple of NR */
#define PV_MR 6    /* P·V micro-tile: 6 queries x 64 channels (24 accumulators) */

/* O[i, 16j + c] += sum_t P[i*ldp + t] · V[t*ldv + 16j + c] (bf16 pairs) for i < m, j < nv. */
INL void pv_kernel_m(const int m, const int nv, int64_t kp, const uint32_t *p, int64_t ldp, const uint32_t *v,
                     int64_t ldv, float *o, int64_t ldo) {
    __m512 c[PV_MR][4];
#pragma GCC unroll 8
    for (int i = 0; i < m; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++) c[i][j] = _mm512_setzero_ps();
    for (int64_t t = 0; t < kp; t++, v += ldv) {
        __m512bh b[4];
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++) b[j] = (__m512bh)_mm512_loadu_si512(v + 16 * j);
#pragma GCC unroll 8
        for (int i = 0; i < m; i++) {
            __m512bh ai = (__m512bh)_mm512_set1_epi32((int)p[i * ldp + t]);
#pragma GCC unroll 4
            for (int j = 0; j < nv; j++) c[i][j] = _mm512_dpbf16_ps(c[i][j], ai, b[j]);
        }
    }
#pragma GCC unroll 8
    for (int i = 0; i < m; i++)
#pragma GCC unroll 4
        for (int j = 0; j < nv; j++) {
            float *dst = o + i * ldo + 16 * j;
            _mm512_storeu_ps(dst, _mm512_add_ps(_mm512_loadu_ps(dst), c[i][j]));
        }
}

static void pv_kernel(int m, int nv, int64_t kp, const uint32_t *p, int64_t ldp, const uint32_t *v, int64_t ldv,
                      float *o, int64_t ldo) {
#define PV_NV(mm)                                                                  \
    switch (nv) {                                                                  \
    case 1: pv_kernel_m(mm, 1, kp, p, ldp, v, ldv, o, ldo); break;                 \
    case 2: pv_kernel_m(mm, 2, kp, p, ldp, v, ldv, o, ldo); break;                 \
    case 3: pv_kernel_m(mm, 3, kp, p, ldp, v, ldv, o, ldo); break;                 \
    default: pv_kernel_m(mm, 4, kp, p, ldp, v, ldv, o, ldo); break;                \
    }
    switch (m) {
    case 1: PV_NV(1) break;
    case 2: PV_NV(2) break;
    case 3: PV_NV(3) break;
    case 4: PV_NV(4) break;
    case 5: PV_NV(5) break;
    default: PV_NV(6) break;
    }
#undef PV_NV
}

typedef struct {
    float *out;
    const float *q, *k, *v, *bias;
    int64_t ldo, ldq, ldk, ldv, B, H, Lq, Lk, D;
    float scale;
    int64_t qparts, qpart_len;
    int64_t kpd, dv;          /* head-dim pairs; channels rounded up to 16 */
    int64_t off_v, off_q, off_s, off_p, off_o, off_stat, buf_bytes; /* per-thread buffer layout (bytes) */
    cvx_pool *pool; /* whose per-thread scratch holds the buffers */
} att_ctx;

static void att_layout(att_ctx *c) {
    int64_t n = 0;
    n += round_up(round_up(c->Lk, NR) * c->kpd * 4, 64); /* packed K */
    c->off_v = n, n += round_up((c->Lk + 1) / 2 * c->dv * 4, 64);
    c->off_q = n, n += round_up(round_up(ATT_BQ, MR) * c->kpd * 4, 64);
    c->off_s = n, n += ATT_BQ * ATT_BK * 4;
    c->off_p = n, n += ATT_BQ * ATT_BK * 2;
    c->off_o = n, n += ATT_BQ * c->dv * 4;
    c->off_stat = n, n += 2 * ATT_BQ * 4 + 2 * ATT_BQ * 16 * 4; /* running max, sum; lane maxima; lazy sums */
    c->buf_bytes = round_up(n, 64);
}

/* Softmax of one query row over one key tile; returns the correction factor for the row's O and l. P words
 * are written up to the next multiple of 32 keys (zeros past nk). */
INL float softmax_row(float *srow, const float *brow, int64_t nk, float scale, const float *rmax, float *m2, float *l,
                      uint32_t *prow) {
    const float log2e = 1.44269504088896341f;
    /* y = a·v: v = s (a = scale·log2e) or v = scale·s + bias (a = log2e). max(a·v) = a·max(v) for a >= 0. */
    float a = brow ? log2e : scale * log2e;
    int64_t full = nk / 32 * 32;
    __m512 vmax = _mm512_set1_ps(-INFINITY), vmin = _mm512_set1_ps(INFINITY), vs = _mm512_set1_ps(scale);
    if (brow) {
        for (int64_t j = 0; j < nk; j += 16) {
            __mmask16 k = lanes((int)min64(16, nk - j));
            __m512 x = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(k, srow + j), vs, _mm512_maskz_loadu_ps(k, brow + j));
            _mm512_mask_storeu_ps(srow + j, k, x);
            vmax = _mm512_mask_max_ps(vmax, k, vmax, x);
        }
    } else if (a >= 0.0f) {
        vmax = _mm512_loadu_ps(rmax); /* folded in by s_kernel */
    } else {
        for (int64_t j = 0; j < nk; j += 16) {
            __mmask16 k = lanes((int)min64(16, nk - j));
            vmin = _mm512_mask_min_ps(vmin, k, vmin, _mm512_maskz_loadu_ps(k, srow + j));
        }
    }
    float mt = a >= 0.0f ? a * _mm512_reduce_max_ps(vmax) : a * _mm512_reduce_min_ps(vmin);
    float m_old = *m2, m_new = mt > m_old ? mt : m_old;
    if (mt != mt) m_new = mt; /* NaN scores: the row is NaN, as in torch */
    float use = m_new == -INFINITY ? 0.0f : m_new;
    float corr = m_old == -INFINITY ? 0.0f : m_old == use ? 1.0f : exp2f(m_old - use);
    __m512 va = _mm512_set1_ps(a), vneg = _mm512_set1_ps(-use), sum0 = _mm512_setzero_ps(), sum1 = sum0;
    if (!brow) {
        /* Finite scores (no masks): no clamp, no lane masks in whole chunks. */
        for (int64_t j = 0; j < full; j += 32) {
            __m512 p0 = exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(srow + j), va, vneg));
            __m512 p1 = exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(srow + j + 16), va, vneg));
            sum0 = _mm512_add_ps(sum0, p0);
            sum1 = _mm512_add_ps(sum1, p1);
            _mm512_storeu_si512(prow + j / 2, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
        }
    } else {
        full = 0;
    }
    for (int64_t j = full; j < nk; j += 32) {
        __mmask16 k0 = lanes((int)min64(16, nk - j)), k1 = lanes((int)min64(16, max64(0, nk - j - 16)));
        __m512 p0 = exp2_neg_clamped(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(k0, srow + j), va, vneg));
        __m512 p1 = exp2_neg_clamped(_mm512_fmadd_ps(_mm512_maskz_loadu_ps(k1, srow + j + 16), va, vneg));
        p0 = _mm512_maskz_mov_ps(k0, p0);
        p1 = _mm512_maskz_mov_ps(k1, p1);
        sum0 = _mm512_add_ps(sum0, p0);
        sum1 = _mm512_add_ps(sum1, p1);
        _mm512_storeu_si512(prow + j / 2, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
    }
    *l = *l * corr + _mm512_reduce_add_ps(_mm512_add_ps(sum0, sum1));
    *m2 = m_new;
    return corr;
}

/* Scores of a later key tile with the row's running maximum kept ("lazy" rescaling): for unbiased attention
 * after the first tile, the Q·Kᵀ tile epilogue turns scores straight into probabilities against the running
 * maximum m2 (log2 units): p = 2^(a·s - m2), allowed up to 2^LAZY_T, so a row's maximum (and O, l) only
 * move when a score exceeds it by more than LAZY_T; such a row is flagged, its scores are computed again and it
 * is redone by softmax_row (the scores are not stored otherwise). The exp work then sits in the same instruction stream as the next tile's dot products
 * (out-of-order overlap), and the per-row reductions and rescaling of O vanish. f32 holds 2^8·Lk easily. */
#define LAZY_T 8.0f

INL void s_lazy_m(const int m, int64_t kp, const uint32_t *a, const uint32_t *b, int64_t nk, const float *m2, float sa,
                  float *lt, uint32_t *P, int64_t ldp, int *flags) {
    const __m512 va = _mm512_set1_ps(sa), vt = _mm512_set1_ps(LAZY_T);
    /* All of the tile's 32-key slices in one loop: the exponentials of one slice overlap the next one's dot
     * products in the out-of-order window. */
    for (int64_t j = 0; j < nk; j += NR, b += NR * kp, P += NR / 2) {
        const uint32_t *ap = a, *bp = b;
        __m512 c0[MR], c1[MR];
#pragma GCC unroll 16
        for (int i = 0; i < m; i++) c0[i] = c1[i] = _mm512_setzero_ps();
        for (int64_t t = 0; t < kp; t++, ap += MR, bp += NR) {
            __m512bh b0 = (__m512bh)_mm512_loadu_si512(bp), b1 = (__m512bh)_mm512_loadu_si512(bp + 16);
#pragma GCC unroll 16
            for (int i = 0; i < m; i++) {
                __m512bh ai = (__m512bh)_mm512_set1_epi32((int)ap[i]);
                c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
                c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
            }
        }
        int n = (int)min64(NR, nk - j);
        __mmask16 k0 = lanes(n), k1 = lanes(n - 16);
#pragma GCC unroll 16
        for (int i = 0; i < m; i++) {
            __m512 vneg = _mm512_set1_ps(-m2[i]);
            __m512 y0 = _mm512_fmadd_ps(c0[i], va, vneg), y1 = _mm512_fmadd_ps(c1[i], va, vneg);
            if ((_mm512_mask_cmp_ps_mask(k0, y0, vt, _CMP_GT_OQ) | _mm512_mask_cmp_ps_mask(k1, y1, vt, _CMP_GT_OQ)) != 0)
                flags[i] = 1;
            __m512 p0 = _mm512_maskz_mov_ps(k0, exp2_neg(y0)), p1 = _mm512_maskz_mov_ps(k1, exp2_neg(y1));
            _mm512_storeu_ps(lt + 16 * i, _mm512_add_ps(_mm512_loadu_ps(lt + 16 * i), _mm512_add_ps(p0, p1)));
            _mm512_storeu_si512(P + i * ldp, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
        }
    }
}

/* One group of m <= MR query rows against nk keys (panels from b on): P and the lane sums lt, flags. */
static void s_lazy(int m, int64_t kp, const uint32_t *a, const uint32_t *b, int64_t nk, const float *m2, float sa,
                   float *lt, uint32_t *P, int64_t ldp, int *flags) {
    switch (m) {
#define SL_CASE(i) \
    case i: s_lazy_m(i, kp, a, b, nk, m2, sa, lt, P, ldp, flags); break;
        SL_CASE(1) SL_CASE(2) SL_CASE(3) SL_CASE(4) SL_CASE(5) SL_CASE(6)
        SL_CASE(7) SL_CASE(8) SL_CASE(9) SL_CASE(10) SL_CASE(11) SL_CASE(12)
#undef SL_CASE
    default: break;
    }
}

static void att_head(const att_ctx *c, unsigned char *buf, int64_t b, int64_t h, int64_t q0, int64_t qlen) {
    const int64_t D = c->D, Lk = c->Lk, kpd = c->kpd, dv = c->dv;
    uint32_t *kp = (uint32_t *)buf, *vp = (uint32_t *)(buf + c->off_v), *qp = (uint32_t *)(buf + c->off_q);
    float *st = (float *)(buf + c->off_s), *ob = (float *)(buf + c->off_o), *m2 = (float *)(buf + c->off_stat);
    float *l = m2 + ATT_BQ, *rmax = l + ATT_BQ, *lt = rmax + 16 * ATT_BQ;
    const float sa = c->scale * 1.44269504088896341f;
    const int lazy_ok = !c->bias && sa > 0.0f;
    uint32_t *pb = (uint32_t *)(buf + c->off_p);
    const int64_t ldp = ATT_BK / 2;

    pack_b_pairs(c->k + b * Lk * c->ldk + h * D, c->ldk, Lk, D, 2 * kpd, kp);
    pack_v_pairs(c->v + b * Lk * c->ldv + h * D, c->ldv, Lk, D, dv, vp);

    for (int64_t i0 = q0; i0 < q0 + qlen; i0 += ATT_BQ) {
        int64_t nq = min64(ATT_BQ, q0 + qlen - i0);
        pack_a(c->q + (b * c->Lq + i0) * c->ldq + h * D, c->ldq, nq, D, qp);
        for (int64_t i = 0; i < nq; i++) m2[i] = -INFINITY, l[i] = 0.0f;
        memset(ob, 0, (size_t)(nq * dv) * sizeof(float));
        for (int64_t j0 = 0; j0 < Lk; j0 += ATT_BK) {
            int64_t nk = min64(ATT_BK, Lk - j0);
            /* Per group of MR query rows: scores, softmax, P·V, so that the phases follow each other closely
             * (out-of-order overlap at their boundaries) and the group's S and P rows stay in L1. */
            for (int64_t g = 0; g < nq; g += MR) {
                int64_t gn = min64(MR, nq - g);
                int lazy = lazy_ok, flags[MR] = {0};
                for (int64_t i = g; i < g + gn; i++) lazy &= m2[i] != -INFINITY;
                if (!lazy) {
                    for (int64_t i = 16 * g; i < 16 * (g + gn); i++) rmax[i] = -INFINITY;
                    for (int64_t j = 0; j < nk; j += NR)
                        s_kernel((int)gn, kpd, qp + g * kpd, kp + (j0 + j) * kpd, st + g * ATT_BK + j, ATT_BK,
                                 (int)min64(NR, nk - j), rmax + 16 * g);
                } else {
                    memset(lt + 16 * g, 0, (size_t)(16 * gn) * sizeof(float));
                    s_lazy((int)gn, kpd, qp + g * kpd, kp + j0 * kpd, nk, m2 + g, sa, lt + 16 * g, pb + g * ldp, ldp,
                           flags);
                }
                for (int64_t i = g; i < g + gn; i++) {
                    if (lazy && !flags[i - g]) {
                        l[i] += _mm512_reduce_add_ps(_mm512_loadu_ps(lt + 16 * i));
                        continue;
                    }
                    if (lazy) { /* a score far above the running maximum: this row's scores again, the exact way */
                        for (int64_t j = 0; j < nk; j += NR)
                            s_kernel(1, kpd, qp + g * kpd + (i - g), kp + (j0 + j) * kpd, st + i * ATT_BK + j, ATT_BK,
                                     (int)min64(NR, nk - j), NULL);
                        __m512 vm = _mm512_set1_ps(-INFINITY);
                        for (int64_t j = 0; j < nk; j += 16) {
                            __mmask16 k = lanes((int)min64(16, nk - j));
                            vm = _mm512_mask_max_ps(vm, k, vm, _mm512_maskz_loadu_ps(k, st + i * ATT_BK + j));
                        }
                        _mm512_storeu_ps(rmax + 16 * i, vm);
                    }
                    const float *brow = c->bias ? c->bias + (h * c->Lq + i0 + i) * Lk + j0 : NULL;
                    float corr = softmax_row(st + i * ATT_BK, brow, nk, c->scale, rmax + 16 * i, &m2[i], &l[i], pb + i * ldp);
                    if (corr != 1.0f) {
                        __m512 vc = _mm512_set1_ps(corr);
                        for (int64_t d = 0; d < dv; d += 16)
                            _mm512_storeu_ps(ob + i * dv + d, _mm512_mul_ps(_mm512_loadu_ps(ob + i * dv + d), vc));
                    }
                }
                for (int64_t i = g; i < g + gn; i += PV_MR)
                    for (int64_t d = 0; d < dv; d += 64)
                        pv_kernel((int)min64(PV_MR, g + gn - i), (int)min64(4, (dv - d) / 16), (nk + 1) / 2, pb + i * ldp,
                                  ldp, vp + (j0 / 2) * dv + d, dv, ob + i * dv + d, dv);
            }
        }
        for (int64_t i = 0; i < nq; i++) {
            float inv = 1.0f / l[i];
            float *dst = c->out + (b * c->Lq + i0 + i) * c->ldo + h * D;
            for (int64_t d = 0; d < D; d += 16) {
                __mmask16 k = lanes((int)min64(16, D - d));
                _mm512_mask_storeu_ps(dst + d, k, _mm512_mul_ps(_mm512_loadu_ps(ob + i * dv + d), _mm512_set1_ps(inv)));
            }
        }
    }
}

static void att_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    att_ctx *c = arg;
    unsigned char *buf = cvx_pool_scratch(c->pool, thread_index);
    for (int64_t t = begin; t < end; t++) {
        int64_t part = t % c->qparts, bh = t / c->qparts, q0 = part * c->qpart_len;
        if (q0 >= c->Lq) continue;
        att_head(c, buf, bh / c->H, bh % c->H, q0, min64(c->qpart_len, c->Lq - q0));
    }
}

static void bf16_attention(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                           int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                           int64_t D, float scale, const float *bias) {
    if (bf16_attention_degenerate(out, ldo, B, H, Lq, Lk, D)) return;
    int nt = cvx_pool_size(pool);
    att_ctx c = {out, q, k, v, bias, ldo, ldq, ldk, ldv, B, H, Lq, Lk, D, scale, 1, Lq, (D + 1) / 2, round_up(D, 16),
                 0, 0, 0, 0, 0, 0, 0, pool};
    bf16_plan_heads(B * H, Lq, nt, ATT_BQ, 1, &c.qparts, &c.qpart_len);
    att_layout(&c);
    if (cvx_pool_reserve_scratch(pool, (size_t)c.buf_bytes) != 0) {
        cvx__attention_rowwise(out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias, 1);
        return;
    }
    cvx_pool_parallel_for(pool, B * H * c.qparts, 1, att_task, &c);
}

/* ---- packing of weights ------------------------------------------------------------------------------------ */

static void pack_panel(const float *rows, int64_t ld, int64_t n, int64_t k, int64_t kp, uint16_t *dst) {
    pack_b_pairs(rows, ld, n, k, kp, (uint32_t *)dst);
}

/* ---- register peak ----------------------------------------------------------------------------------------- */

double cvx__peak_avx512bf16(int64_t iters) {
    __m512 c[24];
    for (int i = 0; i < 24; i++) c[i] = _mm512_set1_ps((float)i);
    __m512bh a = (__m512bh)_mm512_set1_epi16(0x3F80), b = (__m512bh)_mm512_set1_epi16(0);
    for (int64_t it = 0; it < iters; it++) {
#pragma GCC unroll 24
        for (int i = 0; i < 24; i++) c[i] = _mm512_dpbf16_ps(c[i], a, b);
        __asm__ volatile("" : "+v"(a)); /* keeps the loop from being folded */
    }
    __m512 s = c[0];
    for (int i = 1; i < 24; i++) s = _mm512_add_ps(s, c[i]);
    volatile float sink = _mm512_reduce_add_ps(s);
    (void)sink;
    return (double)iters * 24.0 * 64.0;
}

const cvx_bf16_table cvx_bf16_avx512bf16 = {
    .isa = CVX_ISA_AVX512BF16,
    .name = "avx512bf16",
    .layout = CVX_PACK_PAIRS,
    .linear = bf16_linear,
    .gemm_nt = bf16_gemm_nt,
    .attention = bf16_attention,
    .pack_panel = pack_panel,
};
