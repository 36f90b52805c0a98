/* The AMX-BF16 path of the bf16 fast path: the kernels of amx_tmpl.h on the tile instructions (tdpbf16ps).
 * Selected only when cvx_isa_supported(CVX_ISA_AMX): CPUID AMX-TILE + AMX-BF16, XCR0 tile state, and the Linux
 * ARCH_REQ_XCOMP_PERM grant requested in core/cpu.c. Tested against the reference on AMX hardware
 * (test_kernels) and, through amx_emu.c, on every AVX512-BF16 machine. */
#include <immintrin.h>
#include <string.h>

#include "kernels/kernels_internal.h"

typedef struct {
    uint8_t palette_id;
    uint8_t start_row;
    uint8_t reserved[14];
    uint16_t colsb[16];
    uint8_t rows[16];
} __attribute__((packed, aligned(64))) amx_tile_config;

/* Palette 1, all 8 tiles 16 rows x 64 bytes. */
static void amx_tiles_begin(void) {
    amx_tile_config cfg;
    memset(&cfg, 0, sizeof cfg);
    cfg.palette_id = 1;
    for (int t = 0; t < 8; t++) {
        cfg.rows[t] = 16;
        cfg.colsb[t] = 64;
    }
    /* The whole 64-byte object as the operand: GCC's _tile_loadconfig names only its first 8 bytes as read, so the
     * compiler may drop the stores to the rest once the function is inlined (seen: #UD on the first tile load). */
    __asm__ volatile("ldtilecfg %0" : : "m"(cfg));
}

#define AMX_TABLE cvx_bf16_amx
#define AMX_NAME "amx"
#define AMX_ISA CVX_ISA_AMX
#define TILE_BEGIN() amx_tiles_begin()
#define TILE_END() _tile_release()
#define TILE_ZERO(t) _tile_zero(t)
#define TILE_LOAD(t, p, stride) _tile_loadd(t, (const void *)(p), (long)(stride))
#define TILE_LOAD_T1(t, p, stride) _tile_stream_loadd(t, (const void *)(p), (long)(stride))
#define TILE_STORE(t, p, stride) _tile_stored(t, (void *)(p), (long)(stride))
#define TILE_DP(c, a, b) _tile_dpbf16ps(c, a, b)
#include "kernels/amx_tmpl.h"

/* Register peak: 4 independent accumulator tiles, each tdpbf16ps 16 x 16 x 32 multiply-adds. */
double cvx__peak_amx(int64_t iters) {
    static const uint16_t ones[16 * 32] __attribute__((aligned(64))) = {0};
    amx_tiles_begin();
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
