/* The AMX-BF16 kernels of the bf16 fast path (GEMM and flash attention on tdpbf16ps tiles), written once against
 * a small tile interface and compiled twice: amx.c maps it to the tile instructions (Intel Sapphire Rapids and
 * later), amx_emu.c to a C emulation of them, so the same code is tested on machines without AMX (any
 * AVX512-BF16 machine: the softmax, packing and epilogues are AVX-512 code that both share).
 *
 * The including file defines, before including this header:
 *   AMX_TABLE (the cvx_bf16_table's name), AMX_NAME (its name string), AMX_ISA (the path it runs on), and
 *   TILE_BEGIN() / TILE_END()      load the configuration (palette 1, all 8 tiles 16 rows x 64 bytes) / release
 *   TILE_ZERO(t)                   tile t = 0
 *   TILE_LOAD(t, ptr, stride)      16 rows of 64 bytes at ptr, ptr + stride, ... (stride in bytes, may be 0)
 *   TILE_STORE(t, ptr, stride)
 *   TILE_DP(c, a, b)               tdpbf16ps: C[m][n] += sum_k A[m][2k]·B[k][2n] + A[m][2k+1]·B[k][2n+1]
 *                                  (A: 16 rows x 32 bf16; B: 16 K-pair rows x 16 columns of bf16 pairs)
 *
 * Every per-thread task brackets its tile work in TILE_BEGIN/TILE_END. Tiles tmm0-3 accumulate a 32 x 32 block
 * (2 x 2 tiles of 16 x 16 f32), tmm4-5 hold two A tiles and tmm6-7 two B tiles: four loads feed four
 * tdpbf16ps (16 cycles each), the ratio the tile unit sustains when one operand streams from L2.
 *
 * Numerics are those of every bf16 path (kernels.h): inputs rounded to the nearest bf16 (vcvtne2ps2bf16),
 * products exact in f32, f32 accumulation (in a different order than the AVX512-BF16 kernels). */
#ifndef AMX_TABLE
#error "define AMX_TABLE, AMX_NAME, AMX_ISA and the TILE_* operations before including amx_tmpl.h"
#endif

#include <stdlib.h>

#include "core/half.h"
#include "kernels/bf16_avx512.h"

#define NR CVX_PACK_NR /* 32: columns of a weight panel = two B tiles */
#define TM 32          /* rows of C per tile block */
#define KC_MAX 2048    /* K values per block of the GEMM */
#define A_BLOCK_BYTES (1 << 20) /* packed A of one row block: stays in L2 (2 MB per core on AMX machines) */
#define MC_MAX 256
#define KSUB 256 /* K values of a panel slice that stays in L1 (16 KB; 512 measured 30 % slower: L1 thrash) */

/* ---- GEMM ------------------------------------------------------------------------------------------------
 * C[M, N] = bf16(A)[M, K] · W[N, K]ᵀ (+ bias, or + C, or a fused epilogue), W packed as CVX_PACK_PAIRS panels
 * (kernels_internal.h): a B tile is 16 K-pair rows of one half of a 32-column panel, at a 128-byte stride.
 * Blocking (bf16_plan_gemm): K blocks of up to KC_MAX, row blocks of up to MC_MAX rows (at most A_BLOCK_BYTES of
 * packed A, which stays in L2). A row block is converted to bf16 tiles group by group (32 rows) during its first
 * panel; each weight panel slice (KSUB x 32) then stays in L1 while every row group takes its KSUB/32 steps,
 * partial sums kept in a per-thread L2 buffer between sub-blocks, the next panel prefetched into L2 meanwhile.
 * Accumulators start from zero, the bias row (a stride-0 tile load) or C itself; full blocks leave by streaming
 * stores (C is not read for them), edge blocks and fused epilogues through a 32 x 32 f32 scratch tile.
 * Measured on a 2-core Xeon (GNR-class, 2 MB L2): 30-38 % of the tdpbf16ps peak at the transformer's shapes;
 * the conversion of A (~15 %), C's stores and the sub-blocks' partial sums are what is left
 * (docs/performance.md). */

/* rows x k floats (row stride lda) -> bf16 rows of kpad values (row stride kpad), zero-padded to rows_pad rows. */
static void amx_pack_a(const float *A, int64_t lda, int64_t rows, int64_t k, int64_t kpad, int64_t rows_pad,
                       uint16_t *dst) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint16_t *d = dst + i * kpad;
        if (i >= rows) {
            memset(d, 0, (size_t)kpad * sizeof(uint16_t));
            continue;
        }
        const float *s = A + i * lda;
        if (i + 2 < rows) /* the row after next, fresh from memory */
            for (int64_t p = 0; p < k; p += 16) _mm_prefetch((const char *)(s + 2 * lda + p), _MM_HINT_T0);
        for (int64_t p = 0; p < kpad; p += 32)
            _mm512_storeu_si512(d + p, _mm512_castps_si512(cvt_pairs(s + p, (int)max64(0, min64(32, k - p)))));
    }
}

/* One 32-row group of A (rows <= 32 of k floats, row stride lda) -> A tiles laid out in the order the kernel
 * loads them: for each K step of 32, the tile of rows 0-15 then the tile of rows 16-31, each 16 rows x 64
 * bytes contiguous (1 KB), so a tile load reads 16 consecutive cache lines. Rows past `rows` are 0. */
static void amx_pack_a_tiles(const float *A, int64_t lda, int rows, int64_t k, int64_t kpad, uint16_t *dst) {
    for (int i = 0; i < TM; i++) {
        uint16_t *d = dst + (i / 16) * 512 + (i % 16) * 32;
        if (i >= rows) {
            for (int64_t p = 0; p < kpad; p += 32) memset(d + (p / 32) * 1024, 0, 64);
            continue;
        }
        const float *s = A + i * lda;
        for (int64_t p = 0; p < kpad; p += 32)
            _mm512_storeu_si512(d + (p / 32) * 1024, _mm512_castps_si512(cvt_pairs(s + p, (int)max64(0, min64(32, k - p)))));
    }
}

/* scratch (32 x 32 f32, row stride 32) -> C rows < m, columns < n: C (+)= scratch (+ bias when !acc). */
static void amx_store_scratch(const float *scratch, float *C, int64_t ldc, int m, int n, int acc, const float *bias) {
    for (int i = 0; i < m; i++)
        for (int h = 0; h < 2; h++) {
            int cnt = n - 16 * h;
            if (cnt <= 0) break;
            __mmask16 k = lanes(cnt);
            __m512 v = _mm512_loadu_ps(scratch + i * 32 + 16 * h);
            float *c = C + i * ldc + 16 * h;
            if (acc) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, c));
            else if (bias) v = _mm512_add_ps(v, _mm512_maskz_loadu_ps(k, bias + 16 * h));
            _mm512_mask_storeu_ps(c, k, v);
        }
}

/* tmm0-3 += A tiles (amx_pack_a_tiles layout, from step 0 at a) · panel (pair rows of 32 words) over ksteps. */
static inline __attribute__((always_inline)) void amx_block_dp(const uint16_t *a, const uint32_t *panel, int64_t ksteps) {
    for (int64_t s = 0; s < ksteps; s++) {
        const uint16_t *ak = a + s * 1024;
        const uint32_t *bk = panel + s * 16 * NR;
        TILE_LOAD(4, ak, 64);
        TILE_LOAD(5, ak + 512, 64);
        TILE_LOAD(6, bk, NR * 4);
        TILE_LOAD(7, bk + 16, NR * 4);
        TILE_DP(0, 4, 6);
        TILE_DP(1, 4, 7);
        TILE_DP(2, 5, 6);
        TILE_DP(3, 5, 7);
    }
}

typedef struct {
    int64_t M, N, K;
    const float *A;
    int64_t lda;
    const uint32_t *B; /* CVX_PACK_PAIRS panels, K padded to bkp */
    int64_t bkp;
    float *C;
    int64_t ldc;
    int accumulate;
    const float *bias;
    const cvx_epilogue *epi;
    int64_t kc, mc, nparts, part_w;
    cvx_pool *pool;  /* whose per-thread scratch holds each thread's buffers (cvx_pool_scratch) */
    uint16_t *abufs; /* or these (the out-of-memory path): mc x kc bf16 (A tiles), then mc x 32 f32 (partial sums) */
    int64_t abuf_elems;
} amx_gemm_ctx;

/* 32 x 32 f32 (row stride 32, aligned) -> C (64-byte aligned rows, row stride ldc) by streaming stores. */
static inline void amx_stream_block(float *C, int64_t ldc, const float *blk) {
    for (int i = 0; i < TM; i++) {
        _mm512_stream_ps(C + i * ldc, _mm512_load_ps(blk + i * TM));
        _mm512_stream_ps(C + i * ldc + 16, _mm512_load_ps(blk + i * TM + 16));
    }
}

/* The tiles' starting value for one 32 x 32 block (cp: C at the block): C itself when accumulating, the bias row
 * (stride-0 loads) or zero. */
#define AMX_GEMM_INIT(direct, acc, cp, ldc, bias)          \
    do {                                                   \
        if ((direct) && (acc)) {                           \
            TILE_LOAD(0, cp, (ldc) * 4);                   \
            TILE_LOAD(1, (cp) + 16, (ldc) * 4);            \
            TILE_LOAD(2, (cp) + 16 * (ldc), (ldc) * 4);    \
            TILE_LOAD(3, (cp) + 16 * (ldc) + 16, (ldc) * 4); \
        } else if ((direct) && (bias)) {                   \
            TILE_LOAD(0, bias, 0);                         \
            TILE_LOAD(1, (bias) + 16, 0);                  \
            TILE_LOAD(2, bias, 0);                         \
            TILE_LOAD(3, (bias) + 16, 0);                  \
        } else {                                           \
            TILE_ZERO(0);                                  \
            TILE_ZERO(1);                                  \
            TILE_ZERO(2);                                  \
            TILE_ZERO(3);                                  \
        }                                                  \
    } while (0)

#define AMX_GEMM_STORE4(p, stride)                 \
    do {                                           \
        TILE_STORE(0, p, stride);                  \
        TILE_STORE(1, (p) + 16, stride);           \
        TILE_STORE(2, (p) + 16 * ((stride) / 4), stride); \
        TILE_STORE(3, (p) + 16 * ((stride) / 4) + 16, stride); \
    } while (0)

/* One task's block of C: rows m0 .. m0+mlen, columns n0 .. n0+nlen. Per K block (kc): per weight panel (32
 * columns), per K sub-block of KSUB (the panel slice, KSUB x 32 bf16 = 16 KB, stays in L1 for all row groups),
 * per 32-row group: tmm0-3 start from C / bias / zero (first sub-block) or the group's partial sums in cbuf, take
 * KSUB/32 steps with A tiles from L2 (abuf, converted group by group during the first panel) and B tiles from L1,
 * and end in cbuf or, at the last sub-block, in C (streaming stores) or through the scratch tile and the
 * epilogue. */
static void amx_gemm_block(const amx_gemm_ctx *c, uint16_t *abuf, float *cbuf, int64_t m0, int64_t mlen, int64_t n0,
                           int64_t nlen) {
    float scratch[TM * TM] __attribute__((aligned(64)));
    /* Full blocks leave through one of two L1 buffers with streaming stores, each written out while the next
     * block's tile products run (its stores sit in the instruction stream right after them). */
    float stream[2][TM * TM] __attribute__((aligned(64)));
    float *pending = NULL;
    int pbuf = 0;
    const int64_t groups = ceil_div(mlen, TM);
    const int aligned = !((uintptr_t)c->C & 63) && !(c->ldc & 15);
    for (int64_t pc = 0; pc < c->K; pc += c->kc) {
        const int64_t kk = min64(c->kc, c->K - pc), kpad = round_up(kk, 32), ksteps = kpad / 32;
        const int acc = c->accumulate || pc > 0, first = pc == 0, last = pc + c->kc >= c->K;
        for (int64_t jr = n0; jr < n0 + nlen; jr += NR) {
            const uint32_t *bp = c->B + (jr / NR) * NR * (c->bkp / 2) + (pc / 2) * NR;
            /* The next panel slice (64·kpad bytes) into L2, a share per row group and sub-block. */
            const char *next = jr + NR < n0 + nlen ? (const char *)(bp + NR * (c->bkp / 2)) : NULL;
            const int nn = (int)min64(NR, n0 + nlen - jr);
            const float *bias = !acc && c->bias ? c->bias + jr : NULL;
            const int64_t subs = ceil_div(ksteps, KSUB / 32), lines = kpad, share = ceil_div(lines, groups * subs);
            for (int64_t sb = 0; sb < subs; sb++) {
                const int64_t s0 = sb * (KSUB / 32), sn = min64(KSUB / 32, ksteps - s0);
                const int sub_first = sb == 0, sub_last = sb == subs - 1;
                for (int64_t g = 0; g < groups; g++) {
                    const int64_t ir = g * TM;
                    const int mm = (int)min64(TM, mlen - ir);
                    float *cp = c->C + (m0 + ir) * c->ldc + jr, *cb = cbuf + g * TM * TM;
                    if (next)
                        for (int64_t l = (sb * groups + g) * share; l < min64(lines, (sb * groups + g + 1) * share); l++)
                            _mm_prefetch(next + 64 * l, _MM_HINT_T1);
                    /* A's 32-row groups are converted while the first panel is processed, each just before its
                     * first use, so their f32 source streams through L2 without pushing the packed rows out. */
                    if (jr == n0 && sub_first)
                        amx_pack_a_tiles(c->A + (m0 + ir) * c->lda + pc, c->lda, mm, kk, kpad, abuf + ir * kpad);
                    const int direct = !c->epi && mm == TM && nn == NR;
                    if (sub_first) AMX_GEMM_INIT(direct, acc, cp, c->ldc, bias);
                    else {
                        TILE_LOAD(0, cb, TM * 4);
                        TILE_LOAD(1, cb + 16, TM * 4);
                        TILE_LOAD(2, cb + 16 * TM, TM * 4);
                        TILE_LOAD(3, cb + 16 * TM + 16, TM * 4);
                    }
                    amx_block_dp(abuf + ir * kpad + s0 * 1024, bp + s0 * 16 * NR, sn);
                    if (!sub_last) {
                        AMX_GEMM_STORE4(cb, TM * 4);
                        continue;
                    }
                    if (direct && aligned) {
                        /* Streaming stores: C is written once per K block, and a plain store would first read each
                         * of its lines from memory. */
                        if (pending) amx_stream_block(pending, c->ldc, stream[pbuf]);
                        pbuf ^= 1;
                        AMX_GEMM_STORE4(stream[pbuf], TM * 4);
                        pending = cp;
                    } else if (direct) {
                        AMX_GEMM_STORE4(cp, c->ldc * 4);
                    } else {
                        AMX_GEMM_STORE4(scratch, TM * 4);
                        if (c->epi)
                            bf16_epilogue(scratch, TM, cp, c->ldc, m0 + ir, mm, jr, nn, c->bias ? c->bias + jr : NULL,
                                          c->epi, first, last);
                        else
                            amx_store_scratch(scratch, cp, c->ldc, mm, nn, acc, bias);
                    }
                }
            }
        }
        if (pending) amx_stream_block(pending, c->ldc, stream[pbuf]); /* before the next K block reads C */
        pending = NULL;
    }
    _mm_sfence(); /* the streaming stores are visible before the task ends */
}

static void amx_gemm_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    amx_gemm_ctx *c = arg;
    uint16_t *abuf = c->abufs ? c->abufs : cvx_pool_scratch(c->pool, thread_index);
    TILE_BEGIN();
    for (int64_t t = begin; t < end; t++) {
        int64_t m0 = (t / c->nparts) * c->mc, n0 = (t % c->nparts) * c->part_w;
        if (m0 >= c->M || n0 >= c->N) continue;
        amx_gemm_block(c, abuf, (float *)(abuf + round_up(c->mc * c->kc, 32)), m0, min64(c->mc, c->M - m0), n0,
                       min64(c->part_w, c->N - n0));
    }
    TILE_END();
}

/* The empty sum (K = 0): bias, the epilogue of 0, or nothing when accumulating. */
static void amx_gemm_empty(int64_t M, int64_t N, float *C, int64_t ldc, int accumulate, const float *bias,
                           const cvx_epilogue *epi) {
    if (epi) {
        float zeros[NR] = {0};
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n += NR)
                bf16_epilogue(zeros, 0, C + m * ldc + n, ldc, m, 1, n, (int)min64(NR, N - n), bias ? bias + n : NULL, epi,
                              1, 1);
    } else if (!accumulate) {
        for (int64_t m = 0; m < M; m++)
            for (int64_t n = 0; n < N; n++) C[m * ldc + n] = bias ? bias[n] : 0.0f;
    }
}

/* Always runs (returns 1): without memory for the per-thread buffers it works from the stack. */
static int amx_gemm(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const uint32_t *B,
                    int64_t bkp, float *C, int64_t ldc, int accumulate, const float *bias, const cvx_epilogue *epi) {
    if (M <= 0 || N <= 0) return 1;
    if (K <= 0) {
        amx_gemm_empty(M, N, C, ldc, accumulate, bias, epi);
        return 1;
    }
    int nt = cvx_pool_size(pool);
    amx_gemm_ctx c = {M, N, K, A, lda, B, bkp, C, ldc, accumulate, bias, epi, 0, 0, 1, round_up(N, NR), pool, NULL, 0};
    bf16_gemm_plan pl = bf16_plan_gemm(M, N, K, nt, TM, MC_MAX, KC_MAX, A_BLOCK_BYTES);
    c.kc = pl.kc, c.mc = pl.mc, c.nparts = pl.nparts, c.part_w = pl.part_w;
    c.abuf_elems = round_up(c.mc * c.kc, 32) + 2 * c.mc * TM;
    if (cvx_pool_reserve_scratch(pool, (size_t)c.abuf_elems * sizeof(uint16_t)) == 0) {
        cvx_pool_parallel_for(pl.tasks > 1 ? pool : NULL, pl.tasks, 1, amx_gemm_task, &c);
        return 1;
    }
    /* Out of memory for the packing buffers: one 32-row group and 256 K values at a time, from the stack. */
    uint16_t small[TM * 256 + 2 * TM * TM] __attribute__((aligned(64)));
    c.kc = 256, c.mc = TM, c.nparts = 1, c.part_w = round_up(N, NR), c.abufs = small;
    amx_gemm_task(&c, 0, ceil_div(M, TM), 0);
    return 1;
}

static void amx_linear(cvx_pool *pool, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t K,
                       const cvx_packed *W, const float *bias, const cvx_epilogue *epi) {
    (void)amx_gemm(pool, M, W->n, K, x, ldx, (const uint32_t *)W->data, W->kp, y, ldy, 0, bias, epi);
}

static void amx_gemm_nt(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                        int64_t ldb, float *C, int64_t ldc, int accumulate) {
    bf16_gemm_nt_via_pairs(amx_gemm, pool, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

/* ---- flash attention ---------------------------------------------------------------------------------------
 * Per (batch, head): K packed as B tiles (16 keys x 16 head-dim pairs each, head dim padded to dq, a multiple of
 * 32), V as key pairs x channels (B tiles of P·V: 16 key pairs x 16 channels at a 4·dq-byte stride). Per block
 * of AT_BQ queries (bf16 rows: the A tiles of Q·Kᵀ), per block of AT_BK keys, per tile of 16 queries:
 *   S = Q·Kᵀ: the query tile's head-dim chunks stay in tmm4-5, tmm0-3 accumulate 64 keys, K tiles stream
 *   through tmm6-7 (one load per tdpbf16ps), S stored f32 -> per row, on AVX-512: p = 2^(y - m) with
 *   y = s·scale·log2(e) (or (s·scale + bias)·log2(e)) against the running maximum m, the f32 sum of p (kept
 *   lane-wise), p rounded to bf16 rows (the A tiles of P·V) -> O += P·V: tmm0-3 hold 16 queries x 64 channels
 *   of O over the whole key block, one P tile and four V tiles per 32 keys.
 * The Q·Kᵀ tiles of the next query tile are issued before this tile's softmax, so the tile unit works while the
 * vector units compute exponentials. Rescaling is lazy (as in the AVX512-BF16 kernel): once a row has a
 * maximum, a later block's scores are turned into probabilities against it directly and the row is redone
 * exactly (new maximum, O and the sum rescaled) only when a score exceeds it by more than LAZY_T (log2 units).
 * Never an Lq x Lk buffer. */

#define AT_BQ 256 /* queries per block: a multiple of AT_R; O (AT_BQ x dq f32) stays in L2 */
#define AT_BK 128 /* keys per block: a multiple of 64; the K and V blocks are reused by every query tile */
#define AT_R 16   /* queries per tile */
#define LAZY_T 8.0f

typedef struct {
    float *out;
    const float *q, *k, *v, *bias;
    int64_t ldo, ldq, ldk, ldv, B, H, Lq, Lk, D;
    float scale;
    int64_t qparts, qpart_len;
    int64_t dq, lkp; /* head dim rounded up to 32; keys rounded up to 64 */
    int64_t off_v, off_q, off_s, off_p, off_o, off_stat, buf_bytes; /* per-thread buffer layout (bytes) */
    cvx_pool *pool; /* whose per-thread scratch holds the buffers */
} amx_att_ctx;

static void amx_att_layout(amx_att_ctx *c) {
    int64_t n = 0;
    n += round_up(c->lkp * c->dq * 2, 64); /* packed K */
    c->off_v = n, n += round_up(c->lkp * c->dq * 2, 64);
    c->off_q = n, n += AT_BQ * c->dq * 2;
    c->off_s = n, n += 2 * AT_R * AT_BK * 4; /* two S buffers: the next tile's scores while this one's softmax runs */
    c->off_p = n, n += AT_R * AT_BK * 2;
    c->off_o = n, n += AT_BQ * c->dq * 4;
    c->off_stat = n, n += AT_BQ * 4 + AT_BQ * 64; /* running max (log2 units); running sums, lane-wise */
    c->buf_bytes = round_up(n, 64);
}

/* K [Lk, D] (row stride ldk) -> lkp/16 tiles' worth of B rows: key tile j (16 keys) holds dq/2 pair rows of 16
 * words at kp + j·8·dq; keys past Lk and pairs past D are 0. */
static void amx_pack_k(const float *K, int64_t ldk, int64_t Lk, int64_t D, int64_t dq, int64_t lkp, uint32_t *kp) {
    for (int64_t j0 = 0; j0 < lkp; j0 += 16) {
        uint32_t *dst = kp + j0 * (dq / 2);
        int rows = (int)max64(0, min64(16, Lk - j0));
        if (rows > 0) pack_pairs_transposed(K + j0 * ldk, ldk, rows, D, dst, 16, 16);
        int64_t from = rows > 0 ? (D + 1) / 2 : 0;
        if (from < dq / 2) memset(dst + from * 16, 0, (size_t)((dq / 2 - from) * 16) * sizeof(uint32_t));
    }
}

/* Accumulator `acc` (tmm0-3) += Q tile · K tile of key tile kt (16 keys at ktile) over the head-dim chunks: with
 * the Q chunks resident in tmm4-5 (ks <= 2) or reloaded per chunk. */
#define AMX_ATT_S_ACC(acc, ktile)                                                                        \
    for (int64_t s_ = 0; s_ < ks; s_++) {                                                                \
        const uint32_t *kt_ = (ktile) + s_ * 256;                                                        \
        if (ks > 2) {                                                                                    \
            TILE_LOAD(4, qr + 32 * s_, dq * 2);                                                          \
            TILE_LOAD(6, kt_, 64);                                                                       \
            TILE_DP(acc, 4, 6);                                                                          \
        } else if (s_ == 0) {                                                                            \
            TILE_LOAD(6, kt_, 64);                                                                       \
            TILE_DP(acc, 4, 6);                                                                          \
        } else {                                                                                         \
            TILE_LOAD(7, kt_, 64);                                                                       \
            TILE_DP(acc, 5, 7);                                                                          \
        }                                                                                                \
    }

/* Q·Kᵀ for one query tile (16 bf16 rows at qr, row stride dq) against the keys of kb (nkp of them, a multiple of
 * 64): S[r][j] (row stride AT_BK). */
static inline __attribute__((always_inline)) void amx_att_scores(const uint16_t *qr, int64_t dq, const uint32_t *kb,
                                                                 int64_t nkp, float *S) {
    const int64_t ks = dq / 32;
    if (ks <= 2) {
        TILE_LOAD(4, qr, dq * 2);
        if (ks == 2) TILE_LOAD(5, qr + 32, dq * 2);
    }
    for (int64_t j = 0; j < nkp; j += 64) {
        const uint32_t *kt = kb + j * (dq / 2);
        TILE_ZERO(0);
        TILE_ZERO(1);
        TILE_ZERO(2);
        TILE_ZERO(3);
        AMX_ATT_S_ACC(0, kt)
        AMX_ATT_S_ACC(1, kt + 8 * dq)
        AMX_ATT_S_ACC(2, kt + 16 * dq)
        AMX_ATT_S_ACC(3, kt + 24 * dq)
        TILE_STORE(0, S + j, AT_BK * 4);
        TILE_STORE(1, S + j + 16, AT_BK * 4);
        TILE_STORE(2, S + j + 32, AT_BK * 4);
        TILE_STORE(3, S + j + 48, AT_BK * 4);
    }
}

/* One row's softmax over one key block: nk valid scores in s (nkp written, a multiple of 32), bias row brow (or
 * NULL); updates the running max m (log2 units) and the running sum, kept lane-wise in l[16] (reduced once, at
 * the end of the row), writes the nkp probabilities as bf16 (0 past nk) and returns the factor for the row's O
 * (1 when unchanged). */
static inline __attribute__((always_inline)) float amx_att_softmax_row(const float *s, const float *brow, int64_t nk,
                                                                       int64_t nkp, float scale, int lazy_ok, float *m,
                                                                       float *l, uint16_t *p) {
    const float log2e = 1.44269504088896341f;
    if (lazy_ok && *m != -INFINITY) {
        /* Against the running maximum. A score more than LAZY_T above it gives p > 2^LAZY_T, so its lane of the
         * sums exceeds 2^LAZY_T too: the sums are the overflow check (a lane can also exceed it with several
         * large p, which only sends the row down the exact path; NaN and inf propagate as in the exact path). */
        const __m512 va = _mm512_set1_ps(scale * log2e), vneg = _mm512_set1_ps(-*m);
        __m512 sum = _mm512_setzero_ps();
        const int64_t full = nk / 32 * 32;
        for (int64_t j = 0; j < full; j += 32) { /* whole chunks: no lane masks */
            __m512 p0 = exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(s + j), va, vneg));
            __m512 p1 = exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(s + j + 16), va, vneg));
            sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
            _mm512_storeu_si512(p + j, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
        }
        for (int64_t j = full; j < nkp; j += 32) {
            __mmask16 k0 = lanes((int)(nk - j)), k1 = lanes((int)(nk - j - 16));
            __m512 p0 = _mm512_maskz_mov_ps(k0, exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(s + j), va, vneg)));
            __m512 p1 = _mm512_maskz_mov_ps(k1, exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(s + j + 16), va, vneg)));
            sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
            _mm512_storeu_si512(p + j, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
        }
        if (_mm512_cmp_ps_mask(sum, _mm512_set1_ps(256.0f /* 2^LAZY_T */), _CMP_GT_OQ) == 0) {
            _mm512_store_ps(l, _mm512_add_ps(_mm512_load_ps(l), sum));
            return 1.0f;
        }
    }
    /* The exact way: this block's maximum first. y = a·v with v = s (a = scale·log2e) or v = s·scale + bias. */
    const float a = brow ? log2e : scale * log2e;
    const __m512 va = _mm512_set1_ps(a), vs = _mm512_set1_ps(scale);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    int has_nan = 0;
    for (int64_t j = 0; j < nk; j += 16) {
        __mmask16 k = lanes((int)(nk - j));
        __m512 x = _mm512_maskz_loadu_ps(k, s + j);
        if (brow) x = _mm512_fmadd_ps(x, vs, _mm512_maskz_loadu_ps(k, brow + j));
        __m512 y = _mm512_mul_ps(x, va);
        has_nan |= _mm512_mask_cmp_ps_mask(k, y, y, _CMP_UNORD_Q) != 0;
        vmax = _mm512_mask_max_ps(vmax, k, vmax, y);
    }
    float mt = has_nan ? NAN : _mm512_reduce_max_ps(vmax);
    float m_old = *m, m_new = mt > m_old ? mt : m_old;
    if (mt != mt) m_new = mt; /* NaN scores: the row is NaN, as in torch */
    float use = m_new == -INFINITY ? 0.0f : m_new;
    float corr = m_old == -INFINITY ? 0.0f : m_old == use ? 1.0f : exp2f(m_old - use);
    const __m512 vneg = _mm512_set1_ps(-use);
    __m512 sum = _mm512_setzero_ps();
    for (int64_t j = 0; j < nkp; j += 32) {
        __mmask16 k0 = lanes((int)(nk - j)), k1 = lanes((int)(nk - j - 16));
        __m512 x0 = _mm512_maskz_loadu_ps(k0, s + j), x1 = _mm512_maskz_loadu_ps(k1, s + j + 16);
        if (brow) {
            x0 = _mm512_fmadd_ps(x0, vs, _mm512_maskz_loadu_ps(k0, brow + j));
            x1 = _mm512_fmadd_ps(x1, vs, _mm512_maskz_loadu_ps(k1, brow + j + 16));
        }
        __m512 p0 = _mm512_maskz_mov_ps(k0, exp2_neg_clamped(_mm512_fmadd_ps(x0, va, vneg)));
        __m512 p1 = _mm512_maskz_mov_ps(k1, exp2_neg_clamped(_mm512_fmadd_ps(x1, va, vneg)));
        sum = _mm512_add_ps(sum, _mm512_add_ps(p0, p1));
        _mm512_storeu_si512(p + j, (__m512i)_mm512_cvtne2ps_pbh(p1, p0));
    }
    __m512 lv = _mm512_load_ps(l);
    /* corr = 0 (no earlier key counted): the sums are 0, unless they hold a NaN that must stay */
    _mm512_store_ps(l, _mm512_fmadd_ps(lv, _mm512_set1_ps(corr), sum));
    *m = m_new;
    return corr;
}

/* O[16 rows][dq] (f32, row stride dq) += P[16][nkp] (bf16, row stride AT_BK) · V pair rows vb (row stride dq
 * words): 64 channels (4 tiles) at a time stay in tmm0-3 over all nkp keys. */
static inline __attribute__((always_inline)) void amx_att_pv(float *O, int64_t dq, const uint16_t *P, int64_t nkp,
                                                             const uint32_t *vb) {
    for (int64_t d = 0; d < dq; d += 64) {
        float *o = O + d;
        const int four = dq - d >= 64;
        TILE_LOAD(0, o, dq * 4);
        TILE_LOAD(1, o + 16, dq * 4);
        if (four) {
            TILE_LOAD(2, o + 32, dq * 4);
            TILE_LOAD(3, o + 48, dq * 4);
        }
        for (int64_t j = 0; j < nkp; j += 32) {
            const uint32_t *vt = vb + (j / 2) * dq + d;
            TILE_LOAD(4, P + j, AT_BK * 2);
            TILE_LOAD(5, vt, dq * 4);
            TILE_DP(0, 4, 5);
            TILE_LOAD(6, vt + 16, dq * 4);
            TILE_DP(1, 4, 6);
            if (four) {
                TILE_LOAD(7, vt + 32, dq * 4);
                TILE_DP(2, 4, 7);
                TILE_LOAD(5, vt + 48, dq * 4);
                TILE_DP(3, 4, 5);
            }
        }
        TILE_STORE(0, o, dq * 4);
        TILE_STORE(1, o + 16, dq * 4);
        if (four) {
            TILE_STORE(2, o + 32, dq * 4);
            TILE_STORE(3, o + 48, dq * 4);
        }
    }
}

static void amx_att_head(const amx_att_ctx *c, unsigned char *buf, int64_t b, int64_t h, int64_t q0, int64_t qlen) {
    const int64_t D = c->D, Lk = c->Lk, dq = c->dq;
    uint32_t *kp = (uint32_t *)buf, *vp = (uint32_t *)(buf + c->off_v);
    uint16_t *qp = (uint16_t *)(buf + c->off_q), *pb = (uint16_t *)(buf + c->off_p);
    float *sb = (float *)(buf + c->off_s), *ob = (float *)(buf + c->off_o), *m = (float *)(buf + c->off_stat);
    float *l = m + AT_BQ; /* [AT_BQ][16] */
    const int lazy_ok = !c->bias;

    amx_pack_k(c->k + b * Lk * c->ldk + h * D, c->ldk, Lk, D, dq, c->lkp, kp);
    pack_v_pairs(c->v + b * Lk * c->ldv + h * D, c->ldv, Lk, D, dq, vp);
    int64_t vrows = (Lk + 1) / 2;
    memset(vp + vrows * dq, 0, (size_t)((c->lkp / 2 - vrows) * dq) * sizeof(uint32_t));

    for (int64_t i0 = q0; i0 < q0 + qlen; i0 += AT_BQ) {
        const int64_t nq = min64(AT_BQ, q0 + qlen - i0), tiles = ceil_div(nq, AT_R);
        amx_pack_a(c->q + (b * c->Lq + i0) * c->ldq + h * D, c->ldq, nq, D, dq, tiles * AT_R, qp);
        for (int64_t i = 0; i < tiles * AT_R; i++) m[i] = -INFINITY;
        memset(l, 0, (size_t)(tiles * AT_R * 16) * sizeof(float));
        memset(ob, 0, (size_t)(tiles * AT_R * dq) * sizeof(float));
        for (int64_t j0 = 0; j0 < Lk; j0 += AT_BK) {
            const int64_t nk = min64(AT_BK, Lk - j0), nkp = round_up(nk, 64);
            const uint32_t *kb = kp + j0 * (dq / 2), *vb = vp + (j0 / 2) * dq;
            amx_att_scores(qp, dq, kb, nkp, sb);
            for (int64_t t = 0; t < tiles; t++) {
                float *S = sb + (t & 1) * AT_R * AT_BK;
                if (t + 1 < tiles) amx_att_scores(qp + (t + 1) * AT_R * dq, dq, kb, nkp, sb + ((t + 1) & 1) * AT_R * AT_BK);
                const int64_t rows = min64(AT_R, nq - t * AT_R);
                for (int64_t r = 0; r < AT_R; r++) {
                    uint16_t *prow = pb + r * AT_BK;
                    if (r >= rows) { /* padding rows: no probabilities */
                        memset(prow, 0, (size_t)nkp * sizeof(uint16_t));
                        continue;
                    }
                    const int64_t i = t * AT_R + r;
                    const float *brow = c->bias ? c->bias + (h * c->Lq + i0 + i) * Lk + j0 : NULL;
                    float corr = amx_att_softmax_row(S + r * AT_BK, brow, nk, nkp, c->scale, lazy_ok, &m[i], l + 16 * i, prow);
                    if (corr != 1.0f) {
                        float *o = ob + i * dq;
                        __m512 vc = _mm512_set1_ps(corr);
                        for (int64_t d = 0; d < dq; d += 16)
                            _mm512_storeu_ps(o + d, corr == 0.0f ? _mm512_setzero_ps() : _mm512_mul_ps(_mm512_loadu_ps(o + d), vc));
                    }
                }
                amx_att_pv(ob + t * AT_R * dq, dq, pb, nkp, vb);
            }
        }
        for (int64_t i = 0; i < nq; i++) {
            const __m512 inv = _mm512_set1_ps(1.0f / _mm512_reduce_add_ps(_mm512_load_ps(l + 16 * i)));
            float *dst = c->out + (b * c->Lq + i0 + i) * c->ldo + h * D;
            for (int64_t d = 0; d < D; d += 16) {
                __mmask16 k = lanes((int)(D - d));
                _mm512_mask_storeu_ps(dst + d, k, _mm512_mul_ps(_mm512_loadu_ps(ob + i * dq + d), inv));
            }
        }
    }
}

static void amx_att_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    amx_att_ctx *c = arg;
    unsigned char *buf = cvx_pool_scratch(c->pool, thread_index);
    TILE_BEGIN();
    for (int64_t t = begin; t < end; t++) {
        int64_t part = t % c->qparts, bh = t / c->qparts, q0 = part * c->qpart_len;
        if (q0 >= c->Lq) continue;
        amx_att_head(c, buf, bh / c->H, bh % c->H, q0, min64(c->qpart_len, c->Lq - q0));
    }
    TILE_END();
}

static void amx_attention(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                          int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                          int64_t D, float scale, const float *bias) {
    if (bf16_attention_degenerate(out, ldo, B, H, Lq, Lk, D)) return;
    int nt = cvx_pool_size(pool);
    amx_att_ctx c = {out, q, k, v, bias, ldo, ldq, ldk, ldv, B, H, Lq, Lk, D, scale, 1, Lq, round_up(D, 32),
                     round_up(Lk, 64), 0, 0, 0, 0, 0, 0, 0, pool};
    bf16_plan_heads(B * H, Lq, nt, AT_R, AT_R, &c.qparts, &c.qpart_len);
    amx_att_layout(&c);
    if (cvx_pool_reserve_scratch(pool, (size_t)c.buf_bytes) != 0) {
        cvx__attention_rowwise(out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias, 1);
        return;
    }
    cvx_pool_parallel_for(pool, B * H * c.qparts, 1, amx_att_task, &c);
}

static void amx_pack_panel(const float *rows, int64_t ld, int64_t n, int64_t k, int64_t kp, uint16_t *dst) {
    pack_b_pairs(rows, ld, n, k, kp, (uint32_t *)dst);
}

const cvx_bf16_table AMX_TABLE = {
    .isa = AMX_ISA,
    .name = AMX_NAME,
    .layout = CVX_PACK_PAIRS,
    .linear = amx_linear,
    .gemm_nt = amx_gemm_nt,
    .attention = amx_attention,
    .pack_panel = amx_pack_panel,
};
