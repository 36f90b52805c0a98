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
 *   TILE_LOAD_T1(t, ptr, stride)   the same with a non-temporal hint (tileloaddt1: the lines need not stay in L1)
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
 * Blocking (gemm_driver.h's plan and loop nest; this file supplies the tile): K blocks of up to KC_MAX, row blocks of up to MC_MAX rows (at most A_BLOCK_BYTES of
 * packed A, which stays in L2). A row block is converted to bf16 tiles group by group (32 rows) during its first
 * panel; each weight panel slice (KSUB x 32) then stays in L1 while every row group takes its KSUB/32 steps,
 * partial sums kept in a per-thread L2 buffer between sub-blocks, the next panel prefetched into L2 meanwhile.
 * Accumulators start from zero, the bias row (a stride-0 tile load) or C itself; full blocks leave by streaming
 * stores (C is not read for them), edge blocks and fused epilogues through a 32 x 32 f32 scratch tile.
 * Measured on a 2-core Xeon (GNR-class, 2 MB L2): 30-38 % of the tdpbf16ps peak at the transformer's shapes;
 * the conversion of A (~15 %), C's stores and the sub-blocks' partial sums are what is left
 * (docs/performance.md). */

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

/* The starting values of an edge block (m < 32 rows or n < 32 columns of C at C, row stride ldc) in the 32 x 32
 * scratch, zero-padded: C itself when accumulating, else the bias row (or 0). An edge row then takes exactly the
 * arithmetic of a full block's row (accumulators start from the same values), so a row's result does not depend on
 * where it sits in A (what bit-identical multi-process runs need). */
static void amx_edge_start(float *scratch, const float *C, int64_t ldc, int m, int n, int acc, const float *bias) {
    for (int i = 0; i < TM; i++)
        for (int h = 0; h < 2; h++) {
            __mmask16 k = i < m ? lanes(n - 16 * h) : 0;
            __m512 v = acc ? _mm512_maskz_loadu_ps(k, C + i * ldc + 16 * h)
                           : bias ? _mm512_maskz_loadu_ps(k, bias + 16 * h) : _mm512_setzero_ps();
            _mm512_store_ps(scratch + i * TM + 16 * h, v);
        }
}

/* scratch (32 x 32 f32, row stride 32) -> C rows < m, columns < n. */
static void amx_store_scratch(const float *scratch, float *C, int64_t ldc, int m, int n) {
    for (int i = 0; i < m; i++)
        for (int h = 0; h < 2; h++)
            _mm512_mask_storeu_ps(C + i * ldc + 16 * h, lanes(n - 16 * h), _mm512_loadu_ps(scratch + i * TM + 16 * h));
}

/* tmm0-3 += A tiles (amx_pack_a_tiles layout, from step 0 at a) · panel (pair rows of 32 words) over ksteps.
 * A's tiles stream from L2 and are not read again before the next panel, so they are loaded with the
 * non-temporal hint: they then do not push the panel slice and the partial sums, which are read again, out of
 * L1 (measured: the transformer's GEMMs 0-7 % faster, the FF as the block runs it 5 %; results identical). */
static inline __attribute__((always_inline)) void amx_block_dp(const uint16_t *a, const uint32_t *panel, int64_t ksteps) {
    for (int64_t s = 0; s < ksteps; s++) {
        const uint16_t *ak = a + s * 1024;
        const uint32_t *bk = panel + s * 16 * NR;
        TILE_LOAD_T1(4, ak, 64);
        TILE_LOAD_T1(5, ak + 512, 64);
        TILE_LOAD(6, bk, NR * 4);
        TILE_LOAD(7, bk + 16, NR * 4);
        TILE_DP(0, 4, 6);
        TILE_DP(1, 4, 7);
        TILE_DP(2, 5, 6);
        TILE_DP(3, 5, 7);
    }
}

/* 32 x 32 f32 (row stride 32, aligned) -> C (64-byte aligned rows, row stride ldc) by streaming stores. */
static inline void amx_stream_block(float *C, int64_t ldc, const float *blk) {
    for (int i = 0; i < TM; i++) {
        _mm512_stream_ps(C + i * ldc, _mm512_load_ps(blk + i * TM));
        _mm512_stream_ps(C + i * ldc + 16, _mm512_load_ps(blk + i * TM + 16));
    }
}

/* bias + tanh-GELU of a 32 x 32 f32 block (row stride 32, aligned; bias at the block's column or NULL) -> C by
 * streaming stores: the FF's first linear when its whole K is one block, the same arithmetic as bf16_epilogue
 * (bias + t, then v_gelu), but C's lines are written without being read first. Its own loop rather than
 * bf16_epilogue into the scratch then amx_stream_block: that second pass measured 5-8 % slower for this GEMM. */
static inline void amx_gelu_stream_block(float *C, int64_t ldc, const float *blk, const float *bias) {
    const __m512 b0 = bias ? _mm512_loadu_ps(bias) : _mm512_setzero_ps();
    const __m512 b1 = bias ? _mm512_loadu_ps(bias + 16) : _mm512_setzero_ps();
    for (int i = 0; i < TM; i++) {
        _mm512_stream_ps(C + i * ldc, v_gelu(_mm512_add_ps(b0, _mm512_load_ps(blk + i * TM))));
        _mm512_stream_ps(C + i * ldc + 16, v_gelu(_mm512_add_ps(b1, _mm512_load_ps(blk + i * TM + 16))));
    }
}

/* Rows of f32 that a block reads after (or, for C, before) its products, 2 lines per row (32 columns), prefetched
 * into L1 a share per K sub-block, so that the loads neither stall on memory nor come in one burst that fills the
 * line-fill buffers. Inlined by force: GCC 12 finds a function of nothing but prefetches pure and drops its calls. */
static inline __attribute__((always_inline)) void amx_prefetch_rows(const float *src, int64_t ld, int rows,
                                                                   const cvx_gemm_tile *t) {
    const int64_t lines = 2 * (int64_t)rows, per = ceil_div(lines, t->subs);
    for (int64_t l = t->sub * per; l < min64(lines, (t->sub + 1) * per); l++)
        _mm_prefetch((const char *)(src + (l >> 1) * ld + (l & 1) * 16), _MM_HINT_T0);
}

/* What a tile's block will read: an epilogue block reads the residual (its first K block; measured: the gated
 * out-projection 9-18 % faster) or C (later ones) after its last sub-block; a full block of a K block after the
 * first loads C into its accumulators before its first, so the next panel's block is fetched meanwhile (the
 * K = 7,680 GEMM 5-8 % faster). */
static inline __attribute__((always_inline)) void amx_prefetch_block_inputs(const cvx_gemm_job *j, const cvx_gemm_tile *t,
                                                                           const float *cp, int direct) {
    const cvx_epilogue *e = j->epi;
    if (e) {
        if (!t->first || j->accumulate)
            amx_prefetch_rows(cp, j->ldc, t->m, t);
        else if (e->act == CVX_ACT_NONE && e->residual) /* else nothing is read */
            amx_prefetch_rows(e->residual + t->row * e->ldres + t->col, e->ldres, t->m, t);
    } else if (direct && t->acc && t->b_next) {
        amx_prefetch_rows(cp + NR, j->ldc, TM, t);
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

/* A task's state: the edge/epilogue scratch tile and two L1 buffers through which full blocks leave by streaming
 * stores, each written out while the next block's tile products run (its stores sit in the instruction stream right
 * after them). */
typedef struct {
    float scratch[TM * TM] __attribute__((aligned(64)));
    float stream[2][TM * TM] __attribute__((aligned(64)));
    float *pending;
    int pbuf, aligned;
    int64_t share; /* lines of the next panel each tile prefetches */
} amx_gemm_state;

static void amx_gd_pack_a(const cvx_gemm_job *j, const float *src, int rows, int64_t k, int64_t kpad, unsigned char *dst) {
    amx_pack_a_tiles(src, j->lda, rows, k, kpad, (uint16_t *)dst);
}

/* One 32-row group x one 32-column panel x one sub-block of KSUB K values (the panel slice, KSUB x 32 bf16 = 16 KB,
 * stays in L1 for every row group): tmm0-3 start from C / bias / zero (first sub-block) or the group's partial sums
 * (extra: mc x 32 f32), take the sub-block's steps with A tiles from L2 and B tiles from L1, and end in the partial
 * sums or, at the last sub-block, in C (streaming stores) or through the scratch tile and the epilogue. The next
 * panel is prefetched into L2 meanwhile, a share per row group and sub-block. */
static inline __attribute__((always_inline)) void amx_gd_tile(const cvx_gemm_job *j, void *state, const cvx_gemm_tile *t) {
    amx_gemm_state *st = state;
    const int64_t ldc = j->ldc, s0 = t->k0 / 32, sn = t->kn / 32;
    const int mm = t->m, nn = t->n;
    float *cp = j->C + t->row * ldc + t->col, *cb = (float *)t->extra + t->group * TM * TM;
    if (t->b_next) { /* the slice's kpad lines of 64 bytes, a share per tile (computed at the panel's first tile) */
        const int64_t lines = t->kpad, part = t->sub * t->groups + t->group;
        if (part == 0) st->share = ceil_div(lines, t->groups * t->subs);
        for (int64_t l = part * st->share; l < min64(lines, (part + 1) * st->share); l++)
            _mm_prefetch((const char *)t->b_next + 64 * l, _MM_HINT_T1);
    }
    const int direct = !j->epi && mm == TM && nn == NR;
    amx_prefetch_block_inputs(j, t, cp, direct);
    if (t->sub_first && !direct && !j->epi) {
        amx_edge_start(st->scratch, cp, ldc, mm, nn, t->acc, t->bias);
        TILE_LOAD(0, st->scratch, TM * 4);
        TILE_LOAD(1, st->scratch + 16, TM * 4);
        TILE_LOAD(2, st->scratch + 16 * TM, TM * 4);
        TILE_LOAD(3, st->scratch + 16 * TM + 16, TM * 4);
    } else if (t->sub_first) {
        AMX_GEMM_INIT(direct, t->acc, cp, ldc, t->bias);
    } else {
        TILE_LOAD(0, cb, TM * 4);
        TILE_LOAD(1, cb + 16, TM * 4);
        TILE_LOAD(2, cb + 16 * TM, TM * 4);
        TILE_LOAD(3, cb + 16 * TM + 16, TM * 4);
    }
    amx_block_dp((const uint16_t *)t->a + s0 * 1024, (const uint32_t *)t->b + s0 * 16 * NR, sn);
    if (!t->sub_last) {
        AMX_GEMM_STORE4(cb, TM * 4);
        return;
    }
    if (direct && st->aligned) {
        /* Streaming stores: C is written once per K block, and a plain store would first read each of its lines
         * from memory. */
        if (st->pending) amx_stream_block(st->pending, ldc, st->stream[st->pbuf]);
        st->pbuf ^= 1;
        AMX_GEMM_STORE4(st->stream[st->pbuf], TM * 4);
        st->pending = cp;
    } else if (direct) {
        AMX_GEMM_STORE4(cp, ldc * 4);
    } else if (j->epi && j->epi->act == CVX_ACT_GELU_TANH && !j->epi->gate && t->first && t->last && !j->accumulate &&
               mm == TM && nn == NR && st->aligned) {
        AMX_GEMM_STORE4(st->scratch, TM * 4);
        amx_gelu_stream_block(cp, ldc, st->scratch, j->bias ? j->bias + t->col : NULL);
    } else {
        AMX_GEMM_STORE4(st->scratch, TM * 4);
        if (j->epi)
            bf16_epilogue(st->scratch, TM, cp, ldc, t->row, mm, t->col, nn, j->bias ? j->bias + t->col : NULL, j->epi,
                          t->first, t->last);
        else
            amx_store_scratch(st->scratch, cp, ldc, mm, nn);
    }
}

/* The pending block leaves before the next K block reads C. */
static void amx_gd_kblock_end(const cvx_gemm_job *j, void *state) {
    amx_gemm_state *st = state;
    if (st->pending) amx_stream_block(st->pending, j->ldc, st->stream[st->pbuf]);
    st->pending = NULL;
}

static size_t amx_gd_extra(const cvx_gemm_job *j) { return (size_t)j->mc * TM * sizeof(float); } /* partial sums */

static const cvx_gemm_desc amx_gemm_desc = {
    .mr = TM, .nr = NR, .kalign = 32, .ksub = KSUB, .kc_max = KC_MAX, .equal_kblocks = 1, .mc_max = MC_MAX,
    .a_block_bytes = A_BLOCK_BYTES, .a_elem = 2, .columns_first = 0,
    .pack_a = amx_gd_pack_a, .pack_b = NULL, .b_panel = pairs_b_panel, .tile = amx_gd_tile,
    .kblock_end = amx_gd_kblock_end, .extra_bytes = amx_gd_extra,
};

static void amx_gemm_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    const cvx_gemm_job *j = arg;
    amx_gemm_state st;
    st.pending = NULL, st.pbuf = 0, st.share = 0, st.aligned = !((uintptr_t)j->C & 63) && !(j->ldc & 15);
    TILE_BEGIN();
    cvx_gemm_run_tasks(&amx_gemm_desc, j, &st, cvx_gemm_scratch(j, thread_index), begin, end);
    TILE_END();
    _mm_sfence(); /* the streaming stores are visible before the task ends */
}

/* Always runs (returns 1): without memory for the per-thread buffers, one 32-row group and 256 K values at a time
 * from the stack. */
static int amx_gemm(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const uint32_t *B,
                    int64_t bkp, float *C, int64_t ldc, int accumulate, const float *bias, const cvx_epilogue *epi) {
    unsigned char small[TM * 256 * 2 + TM * TM * 4] __attribute__((aligned(64)));
    return bf16_pairs_gemm(&amx_gemm_desc, amx_gemm_task, small, 256, TM * TM * 4, pool, M, N, K, A, lda, B, bkp, C,
                           ldc, accumulate, bias, epi);
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
 * Computed transposed, so that every softmax statistic is a vector lane: per (batch, head), Sᵀ = K·Qᵀ (A tiles:
 * 16 keys x 32 head-dim values of K; B tiles: Qᵀ as 16 head-dim pairs x 16 queries) and Oᵀ += Vᵀ·Pᵀ (A tiles: 16
 * channels x 32 keys of Vᵀ; B tiles: Pᵀ as 16 key pairs x 16 queries). A row of an Sᵀ tile is one key for 16
 * queries, so the running maximum, the sums and O's rescaling are lane-wise operations over rows — no
 * reduction across a register, no per-query work. Per block of AT_BQ queries, per block of AT_BK keys (whose
 * packed K and Vᵀ stay in L1 while every query tile of the block uses them), per tile of 16 queries:
 *   Sᵀ: the tile's Qᵀ chunks in tmm4-5, K tiles through tmm6-7 (one load per tdpbf16ps), 64 keys in tmm0-3,
 *   stored f32 [keys][16 queries] -> on AVX-512, per key row: p = 2^(y - m) with y = s·scale·log2(e) (or
 *   (s·scale + bias)·log2(e)) against the queries' running maxima m, the f32 sums of p, two key rows rounded
 *   to bf16 and interleaved into one Pᵀ pair row -> Oᵀ (f32 [channels][16 queries], in L2 between key blocks)
 *   loaded into tmm0-3, += one Pᵀ tile (tmm4) times four Vᵀ tiles (tmm5-7) per 32 keys, stored back.
 * Rescaling is lazy (as in the AVX512-BF16 kernel): once a query has a maximum, a later block's scores are
 * turned into probabilities against it directly, and that query is redone exactly (new maximum, O and the sum
 * rescaled) only when a score exceeds it by more than LAZY_T (log2 units). Never an Lq x Lk buffer.
 * The three stages run in sequence: on the Xeon this was measured on (docs/performance.md), tile loads take the
 * vector ports while they run and vcvtne2ps2bf16 does not run beside a product, so issuing the next tile's scores
 * (or the previous tile's P·V) inside the softmax was never faster, in any arrangement tried; the transposed
 * layout instead removed the per-query reductions (12 % faster than the row-wise softmax it replaced). */

#define AT_BQ 256 /* queries per block: a multiple of AT_R; Oᵀ (AT_BQ x dq f32) stays in L2 */
#define AT_BK 128 /* keys per block: a multiple of 64; the K and Vᵀ blocks are reused by every query tile */
#define AT_R 16   /* queries per tile */
#define LAZY_T 8.0f

typedef struct {
    float *out;
    const float *q, *k, *v, *bias;
    int64_t ldo, ldq, ldk, ldv, B, H, Lq, Lk, D;
    float scale;
    int64_t qparts, qpart_len;
    int64_t dq, lkp; /* head dim rounded up to 32; keys rounded up to 64 */
    int64_t off_v, off_q, off_s, off_p, off_o, off_bias, off_stat, buf_bytes; /* per-thread buffer layout (bytes) */
    cvx_pool *pool; /* whose per-thread scratch holds the buffers */
} amx_att_ctx;

static void amx_att_layout(amx_att_ctx *c) {
    int64_t n = 0;
    n += c->lkp * c->dq * 2; /* K tiles */
    c->off_v = n, n += c->lkp * c->dq * 2; /* Vᵀ tiles */
    c->off_q = n, n += AT_BQ * c->dq * 2;  /* Qᵀ pairs */
    c->off_s = n, n += AT_BK * AT_R * 4;   /* Sᵀ of one query tile and key block */
    c->off_p = n, n += AT_BK * AT_R * 2;   /* its Pᵀ pairs */
    c->off_o = n, n += AT_BQ * c->dq * 4;  /* Oᵀ */
    c->off_bias = n, n += c->bias ? AT_BK * AT_R * 4 : 0; /* the bias block, transposed like Sᵀ */
    c->off_stat = n, n += 2 * AT_BQ * 4;   /* running maxima (log2 units) and sums */
    c->buf_bytes = round_up(n, 64);
}

/* K [Lk, D] (row stride ldk) -> A tiles: key tile j (16 keys), head-dim chunk s (32 values) at kt + (j·ks + s)·512
 * words, 16 rows of 64 bytes; keys past Lk (up to lkp) and values past D are 0. */
static void amx_pack_k_tiles(const float *K, int64_t ldk, int64_t Lk, int64_t D, int64_t dq, int64_t lkp, uint16_t *kt) {
    const int64_t ks = dq / 32;
    for (int64_t key = 0; key < lkp; key++) {
        uint16_t *d = kt + ((key / 16) * ks) * 512 + (key % 16) * 32;
        const float *s = K + key * ldk;
        if (key + 8 < Lk) /* rows are far apart (a fused qkv buffer) */
            for (int64_t p = 0; p < D; p += 16) _mm_prefetch((const char *)(s + 8 * ldk + p), _MM_HINT_T0);
        for (int64_t c = 0; c < ks; c++) {
            __m512 w = key < Lk ? cvt_pairs(s + 32 * c, (int)max64(0, min64(32, D - 32 * c))) : _mm512_setzero_ps();
            _mm512_storeu_ps((float *)(d + c * 512), w);
        }
    }
}

/* Vm [Lk, D] (row stride ldv) -> Vᵀ A tiles: key chunk c (32 keys), channel tile t (16 channels) at
 * vt + (c·(dq/16) + t)·512 words, row = channel, 32 keys in order; keys past Lk and channels past D are 0. */
static void amx_pack_vt_tiles(const float *Vm, int64_t ldv, int64_t Lk, int64_t D, int64_t dq, int64_t lkp, uint16_t *vt) {
    __m512 r0[16], r1[16];
    for (int64_t c = 0; c < lkp / 32; c++)
        for (int64_t t = 0; t < dq / 16; t++) {
            const __mmask16 k = lanes((int)(D - 16 * t));
            for (int i = 0; i < 16; i++) {
                int64_t k0 = 32 * c + i, k1 = k0 + 16;
                r0[i] = k0 < Lk ? _mm512_maskz_loadu_ps(k, Vm + k0 * ldv + 16 * t) : _mm512_setzero_ps();
                r1[i] = k1 < Lk ? _mm512_maskz_loadu_ps(k, Vm + k1 * ldv + 16 * t) : _mm512_setzero_ps();
            }
            cvx__transpose16_ps(r0);
            cvx__transpose16_ps(r1);
            uint16_t *d = vt + (c * (dq / 16) + t) * 512;
            for (int i = 0; i < 16; i++) _mm512_storeu_si512(d + 32 * i, (__m512i)_mm512_cvtne2ps_pbh(r1[i], r0[i]));
        }
}

/* Sᵀ [nkp keys][16 queries] f32 = K tiles of the block (kb, nkp keys, a multiple of 64) · Qᵀ pairs of one query
 * tile (qt: dq/2 rows of 16 words): the Qᵀ chunks stay in tmm4-5 (ks <= 2) or are reloaded per chunk, K tiles
 * stream through tmm6-7, 64 keys accumulate in tmm0-3 (each accumulator's chain finishes before the next
 * starts, so its store overlaps the following products). */
static inline __attribute__((always_inline)) void amx_att_scores(const uint32_t *qt, int64_t dq, const uint16_t *kb,
                                                                 int64_t nkp, float *S) {
    const int64_t ks = dq / 32;
    if (ks <= 2) { /* the non-temporal hint: see amx_att_pv */
        TILE_LOAD_T1(4, qt, 64);
        if (ks == 2) TILE_LOAD_T1(5, qt + 256, 64);
    }
    for (int64_t j = 0; j < nkp; j += 64) {
        TILE_ZERO(0);
        TILE_ZERO(1);
        TILE_ZERO(2);
        TILE_ZERO(3);
#define AMX_ATT_S_ACC(acc)                                                                                    \
    for (int64_t s_ = 0; s_ < ks; s_++) {                                                                     \
        const uint16_t *k_ = kb + ((j / 16 + (acc)) * ks + s_) * 512;                                         \
        if (ks > 2) {                                                                                         \
            TILE_LOAD(4, qt + s_ * 256, 64);                                                                  \
            TILE_LOAD(6, k_, 64);                                                                             \
            TILE_DP(acc, 6, 4);                                                                               \
        } else if (s_ == 0) {                                                                                 \
            TILE_LOAD(6, k_, 64);                                                                             \
            TILE_DP(acc, 6, 4);                                                                               \
        } else {                                                                                              \
            TILE_LOAD(7, k_, 64);                                                                             \
            TILE_DP(acc, 7, 5);                                                                               \
        }                                                                                                     \
    }
        AMX_ATT_S_ACC(0)
        AMX_ATT_S_ACC(1)
        AMX_ATT_S_ACC(2)
        AMX_ATT_S_ACC(3)
#undef AMX_ATT_S_ACC
        TILE_STORE(0, S + j * 16, 64);
        TILE_STORE(1, S + (j + 16) * 16, 64);
        TILE_STORE(2, S + (j + 32) * 16, 64);
        TILE_STORE(3, S + (j + 48) * 16, 64);
    }
}

/* Oᵀ of one query tile (dq/16 tiles of 16 channels x 16 queries f32, contiguous) += Vᵀ tiles of the block (vb)
 * · Pᵀ pair rows (P, nkp/2 rows of 16 words): up to 64 channels (4 tiles) at a time stay in tmm0-3 over all nkp
 * keys, the Pᵀ tile of 32 keys in tmm4, the Vᵀ tiles through tmm5-7. A tile's Oᵀ (and its Qᵀ in the scores) is
 * read once per key block while every tile reads the block's K and Vᵀ, so Oᵀ and Qᵀ are loaded with the
 * non-temporal hint, leaving L1 to K, Vᵀ, Sᵀ and Pᵀ (measured: L = 17,776, 30 heads, batch 2, 3.31 -> 3.19 s
 * best of 5 in one process; L1 holds 48 KB, those four 44 KB). */
static inline __attribute__((always_inline)) void amx_att_pv(float *O, int64_t dq, const uint32_t *P, int64_t nkp,
                                                             const uint16_t *vb) {
    const int64_t ct = dq / 16;
    for (int64_t t0 = 0; t0 < ct; t0 += 4) {
        float *o = O + t0 * 256;
        const int four = ct - t0 >= 4;
        TILE_LOAD_T1(0, o, 64);
        TILE_LOAD_T1(1, o + 256, 64);
        if (four) {
            TILE_LOAD_T1(2, o + 512, 64);
            TILE_LOAD_T1(3, o + 768, 64);
        }
        for (int64_t c = 0; c < nkp / 32; c++) {
            const uint16_t *v = vb + (c * ct + t0) * 512;
            TILE_LOAD(4, P + c * 256, 64);
            TILE_LOAD(5, v, 64);
            TILE_DP(0, 5, 4);
            TILE_LOAD(6, v + 512, 64);
            TILE_DP(1, 6, 4);
            if (four) {
                TILE_LOAD(7, v + 1024, 64);
                TILE_DP(2, 7, 4);
                TILE_LOAD(5, v + 1536, 64);
                TILE_DP(3, 5, 4);
            }
        }
        TILE_STORE(0, o, 64);
        TILE_STORE(1, o + 256, 64);
        if (four) {
            TILE_STORE(2, o + 512, 64);
            TILE_STORE(3, o + 768, 64);
        }
    }
}

/* Two key rows' probabilities (16 queries each) -> one Pᵀ pair row: word 2n = p0[n], word 2n+1 = p1[n]. */
INL void amx_att_store_pair(uint32_t *prow, __m512 p0, __m512 p1, __m512i interleave) {
    _mm512_storeu_si512(prow, _mm512_permutexvar_epi16(interleave, (__m512i)_mm512_cvtne2ps_pbh(p1, p0)));
}

INL __m512i amx_att_interleave(void) {
    return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22, 6, 21, 5, 20, 4,
                            19, 3, 18, 2, 17, 1, 16, 0);
}

/* The softmax of one query tile over one key block against the queries' running maxima m[16] (log2 units, none
 * -inf): Sᵀ rows (nk valid of nkp) -> Pᵀ pair rows (0 past nk). A score
 * more than LAZY_T above its query's maximum gives p > 2^LAZY_T, so that query's sum exceeds 2^LAZY_T too: the
 * sums are the overflow check (several large p can also exceed it, which only sends the query down the exact
 * path; NaN and inf propagate as there). Returns the queries to redo exactly (0: the sums were added to l). */
static inline __attribute__((always_inline)) __mmask16 amx_att_softmax_lazy(const float *S, int64_t nk, int64_t nkp,
                                                                            float scale, const float *m, float *l,
                                                                            uint32_t *P) {
    const __m512i interleave = amx_att_interleave();
    for (int64_t r = round_up(nk, 2); r < nkp; r += 2) _mm512_storeu_si512(P + r * 8, _mm512_setzero_si512());
    const __m512 va = _mm512_set1_ps(scale * 1.44269504088896341f);
    const __m512 vneg = _mm512_sub_ps(_mm512_setzero_ps(), _mm512_loadu_ps(m));
    const int64_t pairs = nk / 2;
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    int64_t r = 0;
    for (int64_t i = 0; i < pairs; i++, r += 2) {
        __m512 p0 = exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(S + r * 16), va, vneg));
        __m512 p1 = exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(S + r * 16 + 16), va, vneg));
        sum0 = _mm512_add_ps(sum0, p0);
        sum1 = _mm512_add_ps(sum1, p1);
        amx_att_store_pair(P + r * 8, p0, p1, interleave);
    }
    if (r < nk) {
        __m512 p0 = exp2_neg(_mm512_fmadd_ps(_mm512_loadu_ps(S + r * 16), va, vneg));
        sum0 = _mm512_add_ps(sum0, p0);
        amx_att_store_pair(P + r * 8, p0, _mm512_setzero_ps(), interleave);
    }
    const __m512 sum = _mm512_add_ps(sum0, sum1);
    const __mmask16 redo = _mm512_cmp_ps_mask(sum, _mm512_set1_ps(256.0f /* 2^LAZY_T */), _CMP_GT_OQ);
    if (!redo) _mm512_storeu_ps(l, _mm512_add_ps(_mm512_loadu_ps(l), sum));
    return redo;
}

/* The exact way for the queries in `redo` (all of them on a query block's first key block and with a bias):
 * this block's maxima first, y = a·v with v = s (a = scale·log2e) or v = s·scale + bias (bt: the bias block in
 * Sᵀ's layout, or NULL); the other queries keep their maxima and so their probabilities. Writes the Pᵀ pair
 * rows, updates m and l, and returns 1 when the tile's O must be scaled by corr[16] first. */
static int amx_att_softmax_exact(const float *S, const float *bt, int64_t nk, int64_t nkp, float scale,
                                 __mmask16 redo, float *m, float *l, uint32_t *P, float *corr) {
    const __m512i interleave = amx_att_interleave();
    for (int64_t r = round_up(nk, 2); r < nkp; r += 2) _mm512_storeu_si512(P + r * 8, _mm512_setzero_si512());
    const float log2e = 1.44269504088896341f;
    const __m512 m_old = _mm512_loadu_ps(m);
    const __m512 va = _mm512_set1_ps(bt ? log2e : scale * log2e), vs = _mm512_set1_ps(scale);
    __m512 vmax = _mm512_set1_ps(-INFINITY);
    __mmask16 nan = 0;
    for (int64_t r = 0; r < nk; r++) {
        __m512 x = _mm512_loadu_ps(S + r * 16);
        if (bt) x = _mm512_fmadd_ps(x, vs, _mm512_loadu_ps(bt + r * 16));
        __m512 y = _mm512_mul_ps(x, va);
        nan |= _mm512_cmp_ps_mask(y, y, _CMP_UNORD_Q);
        vmax = _mm512_max_ps(vmax, y);
    }
    vmax = _mm512_mask_mov_ps(vmax, nan, _mm512_set1_ps(NAN));
    /* m_new = max(m_old, block max), NaN when the block has a NaN score (the query is NaN, as in torch) */
    __m512 m_new = _mm512_mask_mov_ps(m_old, _mm512_cmp_ps_mask(vmax, m_old, _CMP_GT_OQ) | nan, vmax);
    m_new = _mm512_mask_mov_ps(m_old, redo, m_new);
    const __m512 use = _mm512_mask_mov_ps(m_new, _mm512_cmp_ps_mask(m_new, _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ),
                                          _mm512_setzero_ps());
    float mo[16], us[16];
    _mm512_storeu_ps(mo, m_old);
    _mm512_storeu_ps(us, use);
    int rescale = 0;
    for (int n = 0; n < 16; n++) {
        /* no earlier key counted: 0 (the sums are 0, unless they hold a NaN that must stay) */
        corr[n] = mo[n] == -INFINITY ? 0.0f : mo[n] == us[n] ? 1.0f : exp2f(mo[n] - us[n]);
        rescale |= corr[n] != 1.0f;
    }
    const __m512 vneg = _mm512_sub_ps(_mm512_setzero_ps(), use);
    __m512 sum0 = _mm512_setzero_ps(), sum1 = _mm512_setzero_ps();
    for (int64_t r = 0; r < nk; r += 2) {
        __m512 x0 = _mm512_loadu_ps(S + r * 16);
        if (bt) x0 = _mm512_fmadd_ps(x0, vs, _mm512_loadu_ps(bt + r * 16));
        __m512 p0 = exp2_neg_clamped(_mm512_fmadd_ps(x0, va, vneg)), p1 = _mm512_setzero_ps();
        if (r + 1 < nk) {
            __m512 x1 = _mm512_loadu_ps(S + r * 16 + 16);
            if (bt) x1 = _mm512_fmadd_ps(x1, vs, _mm512_loadu_ps(bt + r * 16 + 16));
            p1 = exp2_neg_clamped(_mm512_fmadd_ps(x1, va, vneg));
        }
        sum0 = _mm512_add_ps(sum0, p0);
        sum1 = _mm512_add_ps(sum1, p1);
        amx_att_store_pair(P + r * 8, p0, p1, interleave);
    }
    _mm512_storeu_ps(l, _mm512_fmadd_ps(_mm512_loadu_ps(l), _mm512_loadu_ps(corr), _mm512_add_ps(sum0, sum1)));
    _mm512_storeu_ps(m, m_new);
    return rescale;
}

static void amx_att_head(const amx_att_ctx *c, unsigned char *buf, int64_t b, int64_t h, int64_t q0, int64_t qlen) {
    const int64_t D = c->D, Lk = c->Lk, dq = c->dq;
    uint16_t *kt = (uint16_t *)buf, *vt = (uint16_t *)(buf + c->off_v);
    uint32_t *qt = (uint32_t *)(buf + c->off_q), *pb = (uint32_t *)(buf + c->off_p);
    float *sb = (float *)(buf + c->off_s), *ob = (float *)(buf + c->off_o), *m = (float *)(buf + c->off_stat);
    float *bt = c->bias ? (float *)(buf + c->off_bias) : NULL;
    float *l = m + AT_BQ;
    const int lazy_ok = !c->bias;

    amx_pack_k_tiles(c->k + b * Lk * c->ldk + h * D, c->ldk, Lk, D, dq, c->lkp, kt);
    amx_pack_vt_tiles(c->v + b * Lk * c->ldv + h * D, c->ldv, Lk, D, dq, c->lkp, vt);

    for (int64_t i0 = q0; i0 < q0 + qlen; i0 += AT_BQ) {
        const int64_t nq = min64(AT_BQ, q0 + qlen - i0), tiles = ceil_div(nq, AT_R);
        for (int64_t t = 0; t < tiles; t++) {
            uint32_t *dst = qt + t * AT_R * (dq / 2);
            pack_pairs_transposed(c->q + (b * c->Lq + i0 + t * AT_R) * c->ldq + h * D, c->ldq,
                                  (int)min64(AT_R, nq - t * AT_R), D, dst, 16, 16);
            for (int64_t p = (D + 1) / 2; p < dq / 2; p++) memset(dst + p * 16, 0, 16 * sizeof(uint32_t));
        }
        for (int64_t i = 0; i < tiles * AT_R; i++) m[i] = -INFINITY, l[i] = 0.0f;
        memset(ob, 0, (size_t)(tiles * AT_R * dq) * sizeof(float));
        for (int64_t j0 = 0; j0 < Lk; j0 += AT_BK) {
            const int64_t nk = min64(AT_BK, Lk - j0), nkp = round_up(nk, 64);
            const uint16_t *kb = kt + j0 * dq, *vb = vt + j0 * dq;
            for (int64_t t = 0; t < tiles; t++) {
                float *O = ob + t * AT_R * dq, corr[16];
                amx_att_scores(qt + t * AT_R * (dq / 2), dq, kb, nkp, sb);
                __mmask16 redo = 0xFFFF;
                if (lazy_ok && _mm512_cmp_ps_mask(_mm512_loadu_ps(m + t * AT_R), _mm512_set1_ps(-INFINITY), _CMP_EQ_OQ) == 0)
                    redo = amx_att_softmax_lazy(sb, nk, nkp, c->scale, m + t * AT_R, l + t * AT_R, pb);
                if (redo) {
                    if (bt) { /* bias[h][query][key] -> [key][16 queries] (padding queries: 0) */
                        const int64_t rows = min64(AT_R, nq - t * AT_R);
                        for (int64_t r = 0; r < nk; r++)
                            for (int64_t n = 0; n < AT_R; n++)
                                bt[r * 16 + n] = n < rows ? c->bias[(h * c->Lq + i0 + t * AT_R + n) * Lk + j0 + r] : 0.0f;
                    }
                    if (amx_att_softmax_exact(sb, bt, nk, nkp, c->scale, redo, m + t * AT_R, l + t * AT_R, pb, corr)) {
                        const __m512 vc = _mm512_loadu_ps(corr);
                        const __mmask16 keep = _mm512_cmp_ps_mask(vc, _mm512_setzero_ps(), _CMP_NEQ_UQ);
                        for (int64_t r = 0; r < dq; r++) /* Oᵀ rows: one channel of the 16 queries */
                            _mm512_storeu_ps(O + r * 16, _mm512_maskz_mul_ps(keep, _mm512_loadu_ps(O + r * 16), vc));
                    }
                }
                amx_att_pv(O, dq, pb, nkp, vb);
            }
        }
        /* out[query][channel] = Oᵀ[channel][query] / l[query] */
        for (int64_t t = 0; t < tiles; t++) {
            const int64_t rows = min64(AT_R, nq - t * AT_R);
            const __m512 inv = _mm512_div_ps(_mm512_set1_ps(1.0f), _mm512_loadu_ps(l + t * AT_R));
            for (int64_t ct = 0; ct < D; ct += 16) {
                __m512 r[16];
                const float *o = ob + t * AT_R * dq + ct * 16;
                for (int i = 0; i < 16; i++) r[i] = _mm512_mul_ps(_mm512_loadu_ps(o + i * 16), inv);
                cvx__transpose16_ps(r);
                const __mmask16 k = lanes((int)(D - ct));
                for (int64_t n = 0; n < rows; n++)
                    _mm512_mask_storeu_ps(c->out + (b * c->Lq + i0 + t * AT_R + n) * c->ldo + h * D + ct, k, r[n]);
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
                     round_up(Lk, 64), 0, 0, 0, 0, 0, 0, 0, 0, pool};
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
