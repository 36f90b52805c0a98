/* Binary resources linked into the library with the assembler's .incbin (no code generation step).
 * CVX_EMBED_SPIECE_PATH and CVX_EMBED_T5_DIR are set by CMakeLists.txt (data/t5/spiece.model, data/t5). */
#include "io/embedded.h"

#define CVX__EMBED(sym, path)                                                                                          \
    __asm__(".section .rodata\n"                                                                                       \
            ".balign 16\n" #sym "_begin:\n"                                                                            \
            ".incbin \"" path "\"\n" #sym "_end:\n"                                                                    \
            ".previous\n");                                                                                            \
    extern const unsigned char sym##_begin[] __asm__(#sym "_begin");                                                   \
    extern const unsigned char sym##_end[] __asm__(#sym "_end");

CVX__EMBED(cvx__spiece, CVX_EMBED_SPIECE_PATH)
CVX__EMBED(cvx__t5_tokenizer_config, CVX_EMBED_T5_DIR "/tokenizer_config.json")
CVX__EMBED(cvx__t5_special_tokens_map, CVX_EMBED_T5_DIR "/special_tokens_map.json")
CVX__EMBED(cvx__t5_added_tokens, CVX_EMBED_T5_DIR "/added_tokens.json")

const unsigned char *cvx_embedded_t5_spiece(size_t *size) {
    *size = (size_t)(cvx__spiece_end - cvx__spiece_begin);
    return cvx__spiece_begin;
}

const unsigned char *cvx_embedded_t5_tokenizer_config(size_t *size) {
    *size = (size_t)(cvx__t5_tokenizer_config_end - cvx__t5_tokenizer_config_begin);
    return cvx__t5_tokenizer_config_begin;
}

const unsigned char *cvx_embedded_t5_special_tokens_map(size_t *size) {
    *size = (size_t)(cvx__t5_special_tokens_map_end - cvx__t5_special_tokens_map_begin);
    return cvx__t5_special_tokens_map_begin;
}

const unsigned char *cvx_embedded_t5_added_tokens(size_t *size) {
    *size = (size_t)(cvx__t5_added_tokens_end - cvx__t5_added_tokens_begin);
    return cvx__t5_added_tokens_begin;
}
