/* The AMX kernels of amx_tmpl.h on a C emulation of the tile registers and instructions, so that the tile code
 * paths (blocking, edges, the attention's softmax between tile products) are tested on machines without AMX.
 * Runs wherever AVX512-BF16 does (the shared AVX-512 parts need it); slow, for tests only
 * (cvx_bf16_kernels_amx_emulated()). Semantics follow the Intel SDM: tdpbf16ps treats bf16 subnormal inputs as
 * zero and adds each row's pair products to the f32 accumulator; a tile row is 64 bytes, 16 rows. */
#include <string.h>

#include "core/half.h"
#include "kernels/kernels_internal.h"

static _Thread_local unsigned char g_tiles[8][16][64];

static void emu_load(int t, const void *p, long stride) {
    for (int r = 0; r < 16; r++) memcpy(g_tiles[t][r], (const unsigned char *)p + r * stride, 64);
}
static void emu_store(int t, void *p, long stride) {
    for (int r = 0; r < 16; r++) memcpy((unsigned char *)p + r * stride, g_tiles[t][r], 64);
}
static float emu_bf16(const unsigned char *p) {
    uint16_t h;
    memcpy(&h, p, 2);
    if ((h & 0x7F80u) == 0) h &= 0x8000u; /* subnormal inputs are zero */
    return cvx_bf16_to_f32(h);
}
static void emu_dp(int c, int a, int b) {
    for (int m = 0; m < 16; m++)
        for (int n = 0; n < 16; n++) {
            float acc;
            memcpy(&acc, g_tiles[c][m] + 4 * n, 4);
            for (int k = 0; k < 16; k++) {
                float a0 = emu_bf16(g_tiles[a][m] + 4 * k), a1 = emu_bf16(g_tiles[a][m] + 4 * k + 2);
                float b0 = emu_bf16(g_tiles[b][k] + 4 * n), b1 = emu_bf16(g_tiles[b][k] + 4 * n + 2);
                acc += a0 * b0 + a1 * b1;
            }
            memcpy(g_tiles[c][m] + 4 * n, &acc, 4);
        }
}

#define AMX_TABLE cvx_bf16_amx_emulated
#define AMX_NAME "amx-emulated"
#define AMX_ISA CVX_ISA_AVX512BF16
#define TILE_BEGIN() ((void)0)
#define TILE_END() ((void)0)
#define TILE_ZERO(t) memset(g_tiles[t], 0, sizeof g_tiles[t])
#define TILE_LOAD(t, p, stride) emu_load(t, p, (long)(stride))
#define TILE_LOAD_T1(t, p, stride) emu_load(t, p, (long)(stride)) /* a cache hint only */
#define TILE_STORE(t, p, stride) emu_store(t, p, (long)(stride))
#define TILE_DP(c, a, b) emu_dp(c, a, b)
#include "kernels/amx_tmpl.h"
