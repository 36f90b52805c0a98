/* The T5 tokenizer as the CogVideoX pipeline calls it: transformers' slow `T5Tokenizer` (legacy=True) with
 * `padding="max_length", max_length=226, truncation=True, add_special_tokens=True`.
 *
 *   text ──split on added tokens──▶ [text chunk | <pad> | </s> | <unk> | <extra_id_N>]...
 *        ──each text chunk encoded on its own by sentencepiece (own dummy prefix)──▶ ids_no_special
 *        ──keep max_length-1 ids if longer, append </s> unless already last, pad with <pad>──▶ ids [max_length]
 *
 * Added tokens: <pad>, </s>, <unk> (the sentencepiece pieces' ids; they strip nothing) and <extra_id_0> ..
 * <extra_id_99> (id = piece_count + 99 - N: 32099 - N for T5; they strip Python-str.isspace whitespace on both
 * sides). Matching is exact and case-sensitive; <extra_id_100>, <extra_id_05>, <s> are plain text. */
#ifndef CVX_TEXT_T5_TOKENIZER_H
#define CVX_TEXT_T5_TOKENIZER_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "text/spm.h"

#define CVX_T5_MAX_LENGTH 226 /* CogVideoX's tokenizer_config model_max_length */
#define CVX_T5_EXTRA_IDS 100

typedef struct cvx_t5_tokenizer cvx_t5_tokenizer;

/* From a spiece.model file, from memory (copied), or from the copy embedded in the library. */
cvx_status cvx_t5_tokenizer_load_file(const char *spiece_path, cvx_t5_tokenizer **out, cvx_error *err);
cvx_status cvx_t5_tokenizer_load_memory(const void *data, size_t size, cvx_t5_tokenizer **out, cvx_error *err);
cvx_status cvx_t5_tokenizer_load_embedded(cvx_t5_tokenizer **out, cvx_error *err);
void cvx_t5_tokenizer_free(cvx_t5_tokenizer *tok);

const cvx_spm *cvx_t5_tokenizer_spm(const cvx_t5_tokenizer *tok);
int cvx_t5_tokenizer_vocab_size(const cvx_t5_tokenizer *tok); /* pieces + 100 extra ids (32100) */
int cvx_t5_tokenizer_eos_id(const cvx_t5_tokenizer *tok);
int cvx_t5_tokenizer_pad_id(const cvx_t5_tokenizer *tok);
/* The token text of an id: a sentencepiece piece or "<extra_id_N>" (into buf, size >= 16), or NULL. */
const char *cvx_t5_tokenizer_id_text(const cvx_t5_tokenizer *tok, int id, char *buf, size_t *len);

/* One call's output; zero-initialize, reuse across calls, free with cvx_t5_tokens_free. */
typedef struct {
    /* convert_tokens_to_ids(tokenize(text)): before truncation and </s> */
    int32_t *ids_no_special;
    size_t n_no_special;
    /* the token texts of ids_no_special (HF `tokens`: a run of unknown characters appears as its normalized
     * text): token i is piece_text[piece_off[i] .. piece_off[i + 1]) */
    char *piece_text;
    uint32_t *piece_off;
    /* the final ids: truncated, </s>, padded to max_length (n_ids == max_length; without a max_length,
     * n_ids == n_unpadded) and the attention mask (1 for ids_unpadded, 0 for padding) */
    int32_t *ids;
    int32_t *attention_mask;
    size_t n_ids;
    size_t n_unpadded;
    int truncated; /* n_no_special + 1 > max_length */
    /* internal */
    size_t cap_no_special, cap_off, cap_text, cap_ids, cap_mask;
    cvx_spm_result spm;
} cvx_t5_tokens;

void cvx_t5_tokens_free(cvx_t5_tokens *t);

/* Tokenizes text (len bytes; any bytes). max_length > 0: truncate and pad to it (226 in the pipeline);
 * max_length <= 0: no truncation, no padding. Thread-safe for a shared tokenizer. */
cvx_status cvx_t5_tokenize(const cvx_t5_tokenizer *tok, const char *text, size_t len, int max_length,
                           cvx_t5_tokens *out, cvx_error *err);

#endif
