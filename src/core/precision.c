/* The precision rule shared by the front ends (cogvideox generate, cogvideox serve): bf16 is the default only
 * where the kernels multiply bf16 natively. The rule reads the kernel path in use, not the CPU's best one, so that
 * CVX_FORCE_ISA=avx512 or avx2 (a path without bf16 dot products) also gives fp32. */
#include <string.h>

#include "cogvideox.h"

int cvx_precision_native(cvx_precision p) {
    if (p == CVX_PRECISION_FP32) return 1;
    if (p == CVX_PRECISION_BF16) return cvx_isa_active() >= CVX_ISA_AVX512BF16; /* avx512bf16, amx */
    return 0;
}

cvx_precision cvx_precision_default(void) {
    return cvx_precision_native(CVX_PRECISION_BF16) ? CVX_PRECISION_BF16 : CVX_PRECISION_FP32;
}

const char *cvx_precision_name(cvx_precision p) {
    switch (p) {
    case CVX_PRECISION_FP32: return "fp32";
    case CVX_PRECISION_BF16: return "bf16";
    default: return "?";
    }
}

int cvx_precision_from_name(const char *name) {
    if (!name) return -1;
    if (!strcmp(name, "fp32")) return CVX_PRECISION_FP32;
    if (!strcmp(name, "bf16")) return CVX_PRECISION_BF16;
    return -1;
}
