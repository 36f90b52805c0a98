/* The one dispatcher of the kernels layer: which fp32 table (kernels.h) and which bf16 table (kernels_internal.h)
 * each path uses. Every per-ISA file provides the tables it has; a path without an entry of a kind uses the next
 * path down that has one (AVX512-BF16 and AMX run the AVX-512 fp32 kernels; ref, AVX2 and AVX-512 run the bf16
 * emulation, which rounds and then uses their fp32 kernels). The active tables are picked once, from
 * cvx_isa_active(). */
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>

#include "kernels/kernels_internal.h"

static const cvx_kernel_table *const g_fp32[CVX_ISA_COUNT] = {
    [CVX_ISA_REF] = &cvx_kernels_ref,
    [CVX_ISA_AVX2] = &cvx_kernels_avx2,
    [CVX_ISA_AVX512] = &cvx_kernels_avx512,
};
static const cvx_bf16_table *const g_bf16[CVX_ISA_COUNT] = {
    [CVX_ISA_REF] = &cvx_bf16_emu,
    [CVX_ISA_AVX512BF16] = &cvx_bf16_avx512bf16,
    [CVX_ISA_AMX] = &cvx_bf16_amx,
};

const cvx_kernel_table *cvx_kernels_for(cvx_isa isa) {
    if ((int)isa < 0 || isa >= CVX_ISA_COUNT) return NULL;
    for (int i = (int)isa; i >= 0; i--)
        if (g_fp32[i]) return g_fp32[i];
    return NULL;
}

const cvx_bf16_table *cvx_bf16_kernels_for(cvx_isa isa) {
    if ((int)isa < 0 || isa >= CVX_ISA_COUNT) return NULL;
    for (int i = (int)isa; i >= 0; i--)
        if (g_bf16[i]) return g_bf16[i];
    return NULL;
}

const cvx_bf16_table *cvx_bf16_kernels_amx_emulated(void) {
    return cvx_isa_supported(CVX_ISA_AVX512BF16) ? &cvx_bf16_amx_emulated : NULL;
}

const char *cvx_bf16_kernels_name(const cvx_bf16_table *t) { return t ? t->name : "none"; }

static const cvx_kernel_table *g_active;
static const cvx_bf16_table *g_active_bf16;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static _Atomic(const cvx_kernel_table *) g_override;
static _Atomic(const cvx_bf16_table *) g_override_bf16;
static void pick(void) {
    g_active = cvx_kernels_for(cvx_isa_active());
    g_active_bf16 = cvx_bf16_kernels_for(cvx_isa_active());
}

const cvx_kernel_table *cvx_kernels_active(void) {
    const cvx_kernel_table *kt = atomic_load_explicit(&g_override, memory_order_acquire);
    if (kt) return kt;
    pthread_once(&g_once, pick);
    return g_active;
}

const cvx_bf16_table *cvx_bf16_kernels_active(void) {
    const cvx_bf16_table *t = atomic_load_explicit(&g_override_bf16, memory_order_acquire);
    if (t) return t;
    pthread_once(&g_once, pick);
    return g_active_bf16;
}

void cvx_kernels_set_active_for_testing(const cvx_kernel_table *kt) {
    atomic_store_explicit(&g_override, kt, memory_order_release);
}

void cvx_bf16_kernels_set_active_for_testing(const cvx_bf16_table *t) {
    atomic_store_explicit(&g_override_bf16, t, memory_order_release);
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
