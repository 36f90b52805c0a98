/* Picks the kernel table once, from cvx_isa_active(). Paths without their own table yet use the closest
 * lower one (the bf16 and AMX paths currently run the AVX-512 fp32 kernels). */
#include <pthread.h>
#include <stdatomic.h>

#include <string.h>

#include "kernels/kernels_internal.h"

const cvx_kernel_table *cvx_kernels_for(cvx_isa isa) {
    switch (isa) {
    case CVX_ISA_REF: return &cvx_kernels_ref;
    case CVX_ISA_AVX2: return &cvx_kernels_avx2;
    case CVX_ISA_AVX512:
    case CVX_ISA_AVX512BF16:
    case CVX_ISA_AMX: return &cvx_kernels_avx512;
    default: return NULL;
    }
}

static const cvx_kernel_table *g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Atomic(const cvx_kernel_table *) g_override;
static void pick(void) { g_active = cvx_kernels_for(cvx_isa_active()); }

const cvx_kernel_table *cvx_kernels_active(void) {
    const cvx_kernel_table *kt = atomic_load_explicit(&g_override, memory_order_acquire);
    if (kt) return kt;
    pthread_once(&g_once, pick);
    return g_active;
}

void cvx_kernels_set_active_for_testing(const cvx_kernel_table *kt) {
    atomic_store_explicit(&g_override, kt, memory_order_release);
}

double cvx_kernels_peak_probe(const char *family, int64_t iters) {
    if (!family) return 0.0;
    if (!strcmp(family, "fp32")) {
        if (cvx_isa_supported(CVX_ISA_AVX512)) return cvx__peak_avx512(iters);
        if (cvx_isa_supported(CVX_ISA_AVX2)) return cvx__peak_avx2(iters);
        return 0.0;
    }
    if (!strcmp(family, "bf16")) return cvx_isa_supported(CVX_ISA_AVX512BF16) ? cvx__peak_avx512bf16(iters) : 0.0;
    if (!strcmp(family, "amx")) return cvx_isa_supported(CVX_ISA_AMX) ? cvx__peak_amx(iters) : 0.0;
    return 0.0;
}
