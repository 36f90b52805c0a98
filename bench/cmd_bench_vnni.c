/* `cogvideox bench peak`: the register-resident throughput of AVX512-VNNI vpdpbusd (u8 x s8 -> s32, 4
 * multiply-adds per 32-bit lane), the int8 family the kernels do not use yet (src/kernels holds the fp32,
 * vdpbf16ps and AMX probes). Built with -mavx512f -mavx512vnni (CMakeLists.txt); the caller runs it only when
 * cvx_cpu_get() reports avx512_vnni with the OS saving the ZMM state. */
#include <immintrin.h>
#include <stdint.h>

double cvx_bench_peak_vnni(int64_t iters);

/* 24 independent accumulators (zmm8..zmm31) in inline asm: covers latency 5 x 2 ports (Zen 4 / Sapphire
 * Rapids) with room to spare; with intrinsics GCC kept the accumulators in memory between iterations. */
double cvx_bench_peak_vnni(int64_t iters) {
    __m512i a = _mm512_set1_epi8(1), b = _mm512_set1_epi8(0);
    for (int64_t it = 0; it < iters; it++) {
        __asm__ volatile(
#define CVX__DP(r) "vpdpbusd %[b], %[a], %%zmm" #r "\n\t"
            CVX__DP(8) CVX__DP(9) CVX__DP(10) CVX__DP(11) CVX__DP(12) CVX__DP(13) CVX__DP(14) CVX__DP(15)
            CVX__DP(16) CVX__DP(17) CVX__DP(18) CVX__DP(19) CVX__DP(20) CVX__DP(21) CVX__DP(22) CVX__DP(23)
            CVX__DP(24) CVX__DP(25) CVX__DP(26) CVX__DP(27) CVX__DP(28) CVX__DP(29) CVX__DP(30) CVX__DP(31)
#undef CVX__DP
            :
            : [a] "v"(a), [b] "v"(b)
            : "xmm8", "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "xmm16", "xmm17", "xmm18",
              "xmm19", "xmm20", "xmm21", "xmm22", "xmm23", "xmm24", "xmm25", "xmm26", "xmm27", "xmm28", "xmm29",
              "xmm30", "xmm31");
    }
    return (double)iters * 24.0 * 64.0 * 2.0; /* 64 u8·s8 products per instruction, multiply-add = 2 ops */
}
