/* Binary resources linked into the library with the assembler's .incbin (no code generation step).
 * CVX_EMBED_SPIECE_PATH is set by CMakeLists.txt to data/t5/spiece.model. */
#include "io/embedded.h"

__asm__(".section .rodata\n"
        ".balign 16\n"
        "cvx__spiece_begin:\n"
        ".incbin \"" CVX_EMBED_SPIECE_PATH "\"\n"
        "cvx__spiece_end:\n"
        ".previous\n");

extern const unsigned char cvx__spiece_begin[] __asm__("cvx__spiece_begin");
extern const unsigned char cvx__spiece_end[] __asm__("cvx__spiece_end");

const unsigned char *cvx_embedded_t5_spiece(size_t *size) {
    *size = (size_t)(cvx__spiece_end - cvx__spiece_begin);
    return cvx__spiece_begin;
}
