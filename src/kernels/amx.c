/* The AMX-BF16 path of the bf16 fast path (Intel Sapphire Rapids and later): tdpbf16ps on tile registers.
 *
 * UNTESTED ON HARDWARE: written from the Intel SDM / intrinsics guide on a machine without AMX; it is only
 * selected when cvx_isa_supported(CVX_ISA_AMX) (CPUID AMX-TILE + AMX-BF16, XCR0 tile state, and the Linux
 * ARCH_REQ_XCOMP_PERM grant requested in core/cpu.c), and test_kernels checks it against exact sums there.
 *
 * Tiles (palette 1, all 16 rows x 64 bytes): tmm0-3 accumulate a 32 x 32 block of C (2 x 2 tiles of 16 x 16
 * f32); tmm4-5 hold two A tiles (16 rows x 32 bf16 of K); tmm6-7 two B tiles (16 K pairs x 16 columns, the
 * VNNI layout). The packed weights are the CVX_PACK_PAIRS panels shared with the AVX512-BF16 path: a B tile is
 * 16 pair rows of one half of a 32-column panel, at a 128-byte stride; K is padded to 32 there. A is
 * converted to bf16 rows (vcvtne2ps2bf16, round to nearest even) with K padded to 32 and rows to 32.
 * The tile block is stored to a 32 x 32 f32 scratch and added/masked into C by AVX-512 (bias, accumulate,
 * edges), once per K block of up to 2048.
 *
 * Attention runs on the AVX512-BF16 kernels (every AMX machine has them). */
#include <immintrin.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "kernels/kernels_internal.h"

#define NR CVX_PACK_NR /* 32 */
#define TM 32          /* rows of C per tile block */
#define KC_MAX 2048
#define MC 128 /* rows of A converted per block (a multiple of TM) */

static int64_t min64(int64_t a, int64_t b) { return a < b ? a : b; }
static int64_t round_up(int64_t x, int64_t m) { return (x + m - 1) / m * m; }
static int64_t ceil_div(int64_t x, int64_t m) { return (x + m - 1) / m; }

static inline __mmask16 lanes(int n) {
    return n >= 16 ? (__mmask16)0xFFFF : n <= 0 ? (__mmask16)0 : (__mmask16)((1u << n) - 1u);
}

typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) tile_config;

/* Every thread that touches tiles loads the configuration first and releases the tile state afterwards. */
static void tiles_begin(void) {
    tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    _tile_loadconfig(&cfg);
}

/* rows x k floats (row stride lda) -> bf16 rows of kpad values (row stride kpad), zero-padded to `rows_pad`
 * rows and kpad columns. */
static void pack_a_rows(const float *A, int64_t lda, int64_t rows, int64_t k, int64_t kpad, int64_t rows_pad,
                        uint16_t *dst) {
    for (int64_t i = 0; i < rows_pad; i++) {
        uint16_t *d = dst + i * kpad;
        if (i >= rows) {
            memset(d, 0, (size_t)kpad * sizeof(uint16_t));
            continue;
        }
        const float *s = A + i * lda;
        for (int64_t p = 0; p < kpad; p += 32) {
            int n = (int)min64(32, k - p);
            __m512 lo = n > 0 ? _mm512_maskz_loadu_ps(lanes(n), s + p) : _mm512_setzero_ps();
            __m512 hi = n > 16 ? _mm512_maskz_loadu_ps(lanes(n - 16), s + p + 16) : _mm512_setzero_ps();
            _mm512_storeu_si512(d + p, (__m512i)_mm512_cvtne2ps_pbh(hi, lo));
        }
    }
}

/* scratch (32 x 32 f32, row stride 32) -> C rows < m, columns < n, with accumulate / bias as ukernel. */
static void store_block(const float *scratch, float *C, int64_t ldc, int m, int n, int acc, const float *bias) {
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

/* C block (32 x 32) = A rows [32][kpad] (stride lda_b bytes) · panel (pairs, 128-byte rows) over kpad/32
 * steps, into scratch. */
static void tile_block(const uint16_t *a, int64_t lda_b, const uint32_t *panel, int64_t ksteps, float *scratch) {
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    for (int64_t s = 0; s < ksteps; s++) {
        const uint16_t *ak = a + s * 32;
        const uint32_t *bk = panel + s * 16 * NR;
        _tile_loadd(4, ak, lda_b);
        _tile_loadd(5, (const char *)ak + 16 * lda_b, lda_b);
        _tile_loadd(6, bk, NR * 4);
        _tile_loadd(7, bk + 16, NR * 4);
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    _tile_stored(0, scratch, 32 * 4);
    _tile_stored(1, scratch + 16, 32 * 4);
    _tile_stored(2, scratch + 16 * 32, 32 * 4);
    _tile_stored(3, scratch + 16 * 32 + 16, 32 * 4);
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
    uint16_t *abufs; /* per thread: mc x kc bf16 */
    int64_t abuf_elems;
} amx_ctx;

static void amx_block(const amx_ctx *c, uint16_t *abuf, int64_t m0, int64_t mlen, int64_t n0, int64_t nlen) {
    float scratch[32 * 32] __attribute__((aligned(64)));
    for (int64_t pc = 0; pc < c->K; pc += c->kc) {
        int64_t kk = min64(c->kc, c->K - pc), kpad = round_up(kk, 32);
        int acc = c->accumulate || pc > 0;
        pack_a_rows(c->A + m0 * c->lda + pc, c->lda, mlen, kk, kpad, round_up(mlen, TM), abuf);
        for (int64_t jr = n0; jr < n0 + nlen; jr += NR) {
            const uint32_t *bp = c->B + (jr / NR) * NR * (c->bkp / 2) + (pc / 2) * NR;
            int nn = (int)min64(NR, n0 + nlen - jr);
            const float *bias = !acc && c->bias ? c->bias + jr : NULL;
            for (int64_t ir = 0; ir < mlen; ir += TM) {
                tile_block(abuf + ir * kpad, kpad * 2, bp, kpad / 32, scratch);
                float *cp = c->C + (m0 + ir) * c->ldc + jr;
                int mm = (int)min64(TM, mlen - ir);
                if (c->epi)
                    cvx__bf16_epilogue_avx512(scratch, 32, cp, c->ldc, m0 + ir, mm, jr, nn, c->bias ? c->bias + jr : NULL,
                                              c->epi, pc == 0, pc + c->kc >= c->K);
                else
                    store_block(scratch, cp, c->ldc, mm, nn, acc, bias);
            }
        }
    }
}

static void amx_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    amx_ctx *c = arg;
    uint16_t *abuf = c->abufs + thread_index * c->abuf_elems;
    tiles_begin();
    for (int64_t t = begin; t < end; t++) {
        int64_t m0 = (t / c->nparts) * c->mc, n0 = (t % c->nparts) * c->part_w;
        if (m0 >= c->M || n0 >= c->N) continue;
        amx_block(c, abuf, m0, min64(c->mc, c->M - m0), n0, min64(c->part_w, c->N - n0));
    }
    _tile_release();
}

/* Returns 0 when the buffers cannot be allocated (nothing written). */
static int amx_gemm(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const uint32_t *B,
                    int64_t bkp, float *C, int64_t ldc, int accumulate, const float *bias, const cvx_epilogue *epi) {
    if (M <= 0 || N <= 0) return 1;
    if (K <= 0 && epi) return 0; /* the AVX512-BF16 driver handles the empty sum with an epilogue */
    if (K <= 0) {
        if (!accumulate)
            for (int64_t m = 0; m < M; m++)
                for (int64_t n = 0; n < N; n++) C[m * ldc + n] = bias ? bias[n] : 0.0f;
        return 1;
    }
    int nt = cvx_pool_size(pool);
    amx_ctx c = {M, N, K, A, lda, B, bkp, C, ldc, accumulate, bias, epi, 0, 0, 1, round_up(N, NR), NULL, 0};
    int64_t kblocks = ceil_div(K, KC_MAX);
    c.kc = round_up(ceil_div(K, kblocks), CVX_PACK_KALIGN);
    c.mc = min64(MC, round_up(M, TM));
    int64_t mblocks = ceil_div(M, c.mc);
    int64_t target = nt > 1 ? 4 * (int64_t)nt : 1;
    if (mblocks < target) {
        c.nparts = min64(ceil_div(target, mblocks), ceil_div(N, 2 * NR));
        c.part_w = round_up(ceil_div(N, c.nparts), NR);
        c.nparts = ceil_div(N, c.part_w);
    }
    c.abuf_elems = round_up(round_up(c.mc, TM) * c.kc, 32);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (size_t)(c.abuf_elems * nt) * sizeof(uint16_t)) != 0) return 0;
    c.abufs = mem;
    int64_t tasks = mblocks * c.nparts;
    cvx_pool_parallel_for(tasks > 1 ? pool : NULL, tasks, 1, amx_task, &c);
    free(mem);
    return 1;
}

static void amx_linear(cvx_pool *pool, float *y, int64_t ldy, const float *x, int64_t ldx, int64_t M, int64_t K,
                       const cvx_packed *W, const float *bias, const cvx_epilogue *epi) {
    if (amx_gemm(pool, M, W->n, K, x, ldx, (const uint32_t *)W->data, W->kp, y, ldy, 0, bias, epi)) return;
    /* Same layout; the AVX512-BF16 driver has a no-allocation fallback. */
    cvx_bf16_avx512bf16.linear(pool, y, ldy, x, ldx, M, K, W, bias, epi);
}

typedef struct {
    const float *B;
    int64_t ldb, N, K, kp;
    uint16_t *dst;
} packb_ctx;

static void packb_task(void *arg, int64_t begin, int64_t end, int thread_index) {
    (void)thread_index;
    packb_ctx *c = arg;
    for (int64_t p = begin; p < end; p++)
        cvx_bf16_avx512bf16.pack_panel(c->B + p * NR * c->ldb, c->ldb, min64(NR, c->N - p * NR), c->K, c->kp,
                                       c->dst + p * NR * c->kp);
}

static void amx_gemm_nt(cvx_pool *pool, int64_t M, int64_t N, int64_t K, const float *A, int64_t lda, const float *B,
                        int64_t ldb, float *C, int64_t ldc, int accumulate) {
    if (M <= 0 || N <= 0) return;
    int64_t kp = round_up(K > 0 ? K : 1, CVX_PACK_KALIGN), panels = ceil_div(N, NR);
    void *mem = NULL;
    if (posix_memalign(&mem, 64, (size_t)(panels * NR * kp) * sizeof(uint16_t)) == 0) {
        packb_ctx pc = {B, ldb, N, K, kp, mem};
        cvx_pool_parallel_for(pool, panels, 1, packb_task, &pc);
        int ok = amx_gemm(pool, M, N, K, A, lda, mem, kp, C, ldc, accumulate, NULL, NULL);
        free(mem);
        if (ok) return;
    }
    cvx_bf16_avx512bf16.gemm_nt(pool, M, N, K, A, lda, B, ldb, C, ldc, accumulate);
}

static void amx_attention(cvx_pool *pool, float *out, int64_t ldo, const float *q, int64_t ldq, const float *k,
                          int64_t ldk, const float *v, int64_t ldv, int64_t B, int64_t H, int64_t Lq, int64_t Lk,
                          int64_t D, float scale, const float *bias) {
    cvx_bf16_avx512bf16.attention(pool, out, ldo, q, ldq, k, ldk, v, ldv, B, H, Lq, Lk, D, scale, bias);
}

static void amx_pack_panel(const float *rows, int64_t ld, int64_t n, int64_t k, int64_t kp, uint16_t *dst) {
    cvx_bf16_avx512bf16.pack_panel(rows, ld, n, k, kp, dst);
}

/* Register peak: 4 independent accumulator tiles, each tdpbf16ps 16 x 16 x 32 multiply-adds. */
double cvx__peak_amx(int64_t iters) {
    static const uint16_t ones[16 * 32] __attribute__((aligned(64))) = {0};
    tiles_begin();
    _tile_zero(0);
    _tile_zero(1);
    _tile_zero(2);
    _tile_zero(3);
    _tile_loadd(4, ones, 64);
    _tile_loadd(5, ones, 64);
    _tile_loadd(6, ones, 64);
    _tile_loadd(7, ones, 64);
    for (int64_t it = 0; it < iters; it++) {
        _tile_dpbf16ps(0, 4, 6);
        _tile_dpbf16ps(1, 4, 7);
        _tile_dpbf16ps(2, 5, 6);
        _tile_dpbf16ps(3, 5, 7);
    }
    float sink[16 * 16] __attribute__((aligned(64)));
    _tile_stored(0, sink, 64);
    _tile_release();
    volatile float s = sink[0];
    (void)s;
    return (double)iters * 4.0 * 16.0 * 16.0 * 32.0 * 2.0;
}

const cvx_bf16_table cvx_bf16_amx = {
    .isa = CVX_ISA_AMX,
    .name = "amx",
    .layout = CVX_PACK_PAIRS,
    .linear = amx_linear,
    .gemm_nt = amx_gemm_nt,
    .attention = amx_attention,
    .pack_panel = amx_pack_panel,
};
