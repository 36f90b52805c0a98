/* Picks the kernel table once, from cvx_isa_active(). Paths without their own table yet use the closest
 * lower one. */
#include <pthread.h>

#include "kernels/kernels.h"

const cvx_kernel_table *cvx_kernels_for(cvx_isa isa) {
    switch (isa) {
    case CVX_ISA_REF: return &cvx_kernels_ref;
    default: return &cvx_kernels_ref;
    }
}

static const cvx_kernel_table *g_active;
static pthread_once_t g_once = PTHREAD_ONCE_INIT;
static void pick(void) { g_active = cvx_kernels_for(cvx_isa_active()); }

const cvx_kernel_table *cvx_kernels_active(void) {
    pthread_once(&g_once, pick);
    return g_active;
}
