/* cogvideox — CogVideoX text-to-video inference in C.
 *
 * The public API. Conventions:
 *  - every fallible function returns a cvx_status (0 = ok, negative = error); the detailed message of the
 *    last failure lives on the object that failed (cvx_model_last_error(...)), never in a global;
 *  - every _open/_new has a _close/_free that accepts NULL; whoever creates frees;
 *  - callbacks always come with a void *user_data;
 *  - params structs come with a by-value _default() function and only ever gain fields at the end.
 */
#ifndef COGVIDEOX_H
#define COGVIDEOX_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

#define CVX_VERSION_MAJOR 0
#define CVX_VERSION_MINOR 1
#define CVX_VERSION_PATCH 0

/* Version of the library, "MAJOR.MINOR.PATCH". */
const char *cvx_version(void);

/* ---- status codes ------------------------------------------------------------------------------------ */
/* XX(name, value, text) */
#define CVX_STATUS_MAP(XX)                                                                                  \
    XX(OK, 0, "ok")                                                                                         \
    XX(ERR_INVALID_ARGUMENT, -1, "invalid argument")                                                        \
    XX(ERR_OUT_OF_MEMORY, -2, "out of memory")                                                              \
    XX(ERR_IO, -3, "input/output error")                                                                    \
    XX(ERR_FORMAT, -4, "malformed data")                                                                    \
    XX(ERR_NOT_FOUND, -5, "not found")                                                                      \
    XX(ERR_SHAPE, -6, "unexpected tensor shape or dtype")                                                   \
    XX(ERR_UNSUPPORTED, -7, "not supported")                                                                \
    XX(ERR_CANCELLED, -8, "cancelled")                                                                      \
    XX(ERR_MISMATCH, -9, "result differs from the reference")                                               \
    XX(ERR_INTERNAL, -10, "internal error")

typedef enum {
#define CVX__STATUS_ENUM(name, value, text) CVX_##name = value,
    CVX_STATUS_MAP(CVX__STATUS_ENUM)
#undef CVX__STATUS_ENUM
} cvx_status;

/* "CVX_ERR_IO" etc.; never NULL. */
const char *cvx_status_name(cvx_status status);
/* A short description of the code itself; the object's last-error message says what happened. */
const char *cvx_status_text(cvx_status status);

/* ---- logging ----------------------------------------------------------------------------------------- */
typedef enum { CVX_LOG_ERROR = 0, CVX_LOG_WARN = 1, CVX_LOG_INFO = 2, CVX_LOG_DEBUG = 3 } cvx_log_level;
typedef void (*cvx_log_fn)(cvx_log_level level, const char *message, void *user_data);

/* A logger: where messages at or below `level` go. fn == NULL writes to stderr. */
typedef struct {
    cvx_log_fn fn;
    void *user_data;
    cvx_log_level level;
} cvx_logger;

cvx_logger cvx_logger_default(void); /* stderr, CVX_LOG_WARN (CVX_LOG_LEVEL=error|warn|info|debug overrides) */

/* ---- CPU features and kernel paths ------------------------------------------------------------------- */
typedef enum {
    CVX_ISA_REF = 0,     /* portable C, always built */
    CVX_ISA_AVX2 = 1,    /* AVX2 + FMA + F16C */
    CVX_ISA_AVX512 = 2,  /* AVX-512 F/BW/VL/DQ */
    CVX_ISA_AVX512BF16 = 3, /* + AVX512-BF16 (vdpbf16ps) */
    CVX_ISA_AMX = 4,     /* + AMX-BF16 tiles */
    CVX_ISA_COUNT
} cvx_isa;

typedef struct {
    char vendor[16];
    char brand[64];
    int sse42, avx, avx2, fma, f16c;
    int avx512f, avx512bw, avx512vl, avx512dq, avx512_bf16, avx512_vnni, avx_vnni;
    int amx_tile, amx_bf16, amx_int8;
    int os_avx;      /* XCR0 enables the YMM state */
    int os_avx512;   /* XCR0 enables the opmask/ZMM states */
    int os_amx;      /* XCR0 enables the tile states (XTILECFG/XTILEDATA) */
    int amx_permitted; /* Linux granted XFEATURE_XTILEDATA to this process (arch_prctl) */
    int logical_cpus;
} cvx_cpu_info;

/* Detects the CPU once (thread-safe) and returns the cached result. */
const cvx_cpu_info *cvx_cpu_get(void);
/* The best path this CPU and OS support. */
cvx_isa cvx_isa_best(void);
/* The path the kernels use: the best one, or CVX_FORCE_ISA=ref|avx2|avx512|avx512bf16|amx when it is set
 * to a path the machine supports (a path it does not support is refused with a warning, best is used). */
cvx_isa cvx_isa_active(void);
const char *cvx_isa_name(cvx_isa isa);
/* Parses "ref", "avx2", ... ; returns -1 for an unknown name. */
int cvx_isa_from_name(const char *name);
/* Whether the machine can run that path (CPU + OS support). */
int cvx_isa_supported(cvx_isa isa);

#ifdef __cplusplus
}
#endif
#endif /* COGVIDEOX_H */
