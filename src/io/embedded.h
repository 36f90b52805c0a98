#ifndef CVX_IO_EMBEDDED_H
#define CVX_IO_EMBEDDED_H
#include <stddef.h>

/* The real T5 spiece.model (data/t5/spiece.model), embedded at build time. */
const unsigned char *cvx_embedded_t5_spiece(size_t *size);

/* The CogVideoX-2b tokenizer/ JSON files (data/t5/{tokenizer_config,special_tokens_map,added_tokens}.json, see
 * data/t5/PROVENANCE.md), byte for byte. */
const unsigned char *cvx_embedded_t5_tokenizer_config(size_t *size);   /* tokenizer_config.json */
const unsigned char *cvx_embedded_t5_special_tokens_map(size_t *size); /* special_tokens_map.json */
const unsigned char *cvx_embedded_t5_added_tokens(size_t *size);       /* added_tokens.json */

#endif
