/* CPU feature detection with the OS checks.
 * CPUID says what the core implements; XGETBV(XCR0) says which register states the OS saves (YMM for AVX,
 * opmask+ZMM for AVX-512, XTILECFG+XTILEDATA for AMX). On Linux a process must also ask for the AMX tile
 * data state (arch_prctl ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) before it touches a tile register. */
#include <cpuid.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "cogvideox.h"
#include "core/log.h"
#include "core/threadpool.h"

#define ARCH_GET_XCOMP_PERM 0x1022
#define ARCH_REQ_XCOMP_PERM 0x1023
#define XFEATURE_XTILEDATA 18

static cvx_cpu_info g_cpu;
static pthread_once_t g_cpu_once = PTHREAD_ONCE_INIT;
static cvx_isa g_active;
static pthread_once_t g_active_once = PTHREAD_ONCE_INIT;

static uint64_t read_xcr0(void) {
    uint32_t eax, edx;
    __asm__ volatile("xgetbv" : "=a"(eax), "=d"(edx) : "c"(0));
    return ((uint64_t)edx << 32) | eax;
}

static int request_amx_permission(void) {
#ifdef __linux__
    if (syscall(SYS_arch_prctl, ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA) != 0) return 0;
    unsigned long bitmask = 0;
    if (syscall(SYS_arch_prctl, ARCH_GET_XCOMP_PERM, &bitmask) != 0) return 0;
    return (bitmask & (1ul << XFEATURE_XTILEDATA)) != 0;
#else
    return 0;
#endif
}

static void detect(void) {
    cvx_cpu_info *c = &g_cpu;
    memset(c, 0, sizeof *c);
    c->logical_cpus = cvx_cpu_count();
    unsigned a, b, cx, d;
    if (!__get_cpuid(0, &a, &b, &cx, &d)) return;
    unsigned max_leaf = a;
    memcpy(c->vendor + 0, &b, 4);
    memcpy(c->vendor + 4, &d, 4);
    memcpy(c->vendor + 8, &cx, 4);
    c->vendor[12] = '\0';

    __cpuid(1, a, b, cx, d);
    int osxsave = (cx >> 27) & 1;
    c->sse42 = (cx >> 20) & 1;
    c->fma = (cx >> 12) & 1;
    c->f16c = (cx >> 29) & 1;
    c->avx = (cx >> 28) & 1;
    uint64_t xcr0 = osxsave ? read_xcr0() : 0;
    c->os_avx = (xcr0 & 0x6) == 0x6;
    c->os_avx512 = c->os_avx && (xcr0 & 0xE0) == 0xE0;
    c->os_amx = (xcr0 & 0x60000) == 0x60000;

    if (max_leaf >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        c->avx2 = (b >> 5) & 1;
        c->avx512f = (b >> 16) & 1;
        c->avx512dq = (b >> 17) & 1;
        c->avx512bw = (b >> 30) & 1;
        c->avx512vl = (b >> 31) & 1;
        c->avx512_vnni = (cx >> 11) & 1;
        c->amx_bf16 = (d >> 22) & 1;
        c->amx_tile = (d >> 24) & 1;
        c->amx_int8 = (d >> 25) & 1;
        unsigned sub_leaves = a;
        if (sub_leaves >= 1) {
            __cpuid_count(7, 1, a, b, cx, d);
            c->avx_vnni = (a >> 4) & 1;
            c->avx512_bf16 = (a >> 5) & 1;
        }
    }
    /* Without the OS saving the state, the instructions fault: report them as absent. */
    if (!c->os_avx) c->avx = c->avx2 = c->fma = c->f16c = c->avx_vnni = 0;
    if (!c->os_avx512) c->avx512f = c->avx512bw = c->avx512vl = c->avx512dq = c->avx512_bf16 = c->avx512_vnni = 0;
    if (!c->os_amx) c->amx_tile = c->amx_bf16 = c->amx_int8 = 0;
    if (c->amx_tile) c->amx_permitted = request_amx_permission();

    unsigned ext_max = __get_cpuid_max(0x80000000, NULL);
    if (ext_max >= 0x80000004) {
        unsigned regs[12];
        for (unsigned i = 0; i < 3; i++) __cpuid(0x80000002 + i, regs[4 * i], regs[4 * i + 1], regs[4 * i + 2], regs[4 * i + 3]);
        char brand[49];
        memcpy(brand, regs, 48);
        brand[48] = '\0';
        const char *s = brand;
        while (*s == ' ') s++;
        strncpy(c->brand, s, sizeof c->brand - 1);
        size_t n = strlen(c->brand);
        while (n > 0 && c->brand[n - 1] == ' ') c->brand[--n] = '\0';
    }
}

const cvx_cpu_info *cvx_cpu_get(void) {
    pthread_once(&g_cpu_once, detect);
    return &g_cpu;
}

int cvx_isa_supported(cvx_isa isa) {
    const cvx_cpu_info *c = cvx_cpu_get();
    int avx2 = c->avx2 && c->fma && c->f16c;
    int avx512 = avx2 && c->avx512f && c->avx512bw && c->avx512vl && c->avx512dq;
    switch (isa) {
    case CVX_ISA_REF: return 1;
    case CVX_ISA_AVX2: return avx2;
    case CVX_ISA_AVX512: return avx512;
    case CVX_ISA_AVX512BF16: return avx512 && c->avx512_bf16;
    case CVX_ISA_AMX: return avx512 && c->avx512_bf16 && c->amx_tile && c->amx_bf16 && c->amx_permitted;
    default: return 0;
    }
}

cvx_isa cvx_isa_best(void) {
    for (int i = CVX_ISA_COUNT - 1; i > 0; i--)
        if (cvx_isa_supported((cvx_isa)i)) return (cvx_isa)i;
    return CVX_ISA_REF;
}

static const char *const isa_names[CVX_ISA_COUNT] = {"ref", "avx2", "avx512", "avx512bf16", "amx"};

const char *cvx_isa_name(cvx_isa isa) { return (unsigned)isa < CVX_ISA_COUNT ? isa_names[isa] : "?"; }

int cvx_isa_from_name(const char *name) {
    for (int i = 0; i < CVX_ISA_COUNT; i++)
        if (!strcmp(name, isa_names[i])) return i;
    return -1;
}

static void pick_active(void) {
    g_active = cvx_isa_best();
    const char *forced = getenv("CVX_FORCE_ISA");
    if (forced && *forced) {
        int isa = cvx_isa_from_name(forced);
        if (isa < 0)
            cvx_log_warn(NULL, "CVX_FORCE_ISA=%s is not a kernel path (ref, avx2, avx512, avx512bf16, amx); using %s",
                         forced, cvx_isa_name(g_active));
        else if (!cvx_isa_supported((cvx_isa)isa))
            cvx_log_warn(NULL, "CVX_FORCE_ISA=%s: this CPU/OS does not support it; using %s", forced,
                         cvx_isa_name(g_active));
        else
            g_active = (cvx_isa)isa;
    }
}

cvx_isa cvx_isa_active(void) {
    pthread_once(&g_active_once, pick_active);
    return g_active;
}
