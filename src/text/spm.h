/* SentencePiece in C: the ModelProto reader, the normalizer and the encoders, matching sentencepiece 0.1.97
 * (SentencePieceProcessor::Encode as the Python binding's `encode(text)` calls it) id for id.
 *
 *   model file (`spiece.model`)  ──cvx_spm_load_*──▶  cvx_spm (immutable, shareable across threads)
 *   text (UTF-8 bytes, any bytes) ──normalize──▶ normalized (charsmap, whitespace, U+2581 escape)
 *                                  ──encode────▶ tokens {id, span of the normalized text}
 *
 * Model types: UNIGRAM (Viterbi, sentencepiece's EncodeOptimized), BPE (greedy merges by score, with the
 * resegmentation of UNUSED pieces), WORD and CHAR. Piece types: NORMAL, UNKNOWN, CONTROL, USER_DEFINED
 * (matched before normalization, never split), UNUSED (never emitted), BYTE (byte fallback for unknown
 * characters). Normalization: the model's precompiled charsmap (a darts-clone double-array trie plus
 * NUL-terminated replacement strings; nmt_nfkc, nfkc, ... are all just data), applied by longest prefix match;
 * add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces, treat_whitespace_as_suffix.
 *
 * Every malformed model (bad protobuf wire format, truncated file, inconsistent pieces, broken charsmap) is
 * refused with a message; any byte string is valid text (invalid UTF-8 bytes become U+FFFD one byte at a time,
 * as sentencepiece does). */
#ifndef CVX_TEXT_SPM_H
#define CVX_TEXT_SPM_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"

typedef struct cvx_spm cvx_spm;

/* TrainerSpec.ModelType */
typedef enum { CVX_SPM_UNIGRAM = 1, CVX_SPM_BPE = 2, CVX_SPM_WORD = 3, CVX_SPM_CHAR = 4 } cvx_spm_model_type;

/* ModelProto.SentencePiece.Type */
typedef enum {
    CVX_SPM_NORMAL = 1,
    CVX_SPM_UNKNOWN = 2,
    CVX_SPM_CONTROL = 3,
    CVX_SPM_USER_DEFINED = 4,
    CVX_SPM_UNUSED = 5,
    CVX_SPM_BYTE = 6
} cvx_spm_piece_type;

/* Reads a serialized ModelProto from a file / from memory (the bytes are copied). */
cvx_status cvx_spm_load_file(const char *path, cvx_spm **out, cvx_error *err);
cvx_status cvx_spm_load_memory(const void *data, size_t size, cvx_spm **out, cvx_error *err);
void cvx_spm_free(cvx_spm *m);

cvx_spm_model_type cvx_spm_model(const cvx_spm *m);
const char *cvx_spm_model_name(const cvx_spm *m); /* "unigram", "bpe", "word", "char" */
int cvx_spm_piece_count(const cvx_spm *m);
/* The piece string of id (not NUL-terminated; *len gets its length), or NULL for an id out of range. */
const char *cvx_spm_piece(const cvx_spm *m, int id, size_t *len);
float cvx_spm_piece_score(const cvx_spm *m, int id);
cvx_spm_piece_type cvx_spm_piece_kind(const cvx_spm *m, int id); /* 0 for an id out of range */
/* sentencepiece's PieceToId: CONTROL/UNKNOWN/BYTE pieces first, then the others, else the unk id. */
int cvx_spm_piece_to_id(const cvx_spm *m, const char *piece, size_t len);
int cvx_spm_unk_id(const cvx_spm *m); /* the UNKNOWN piece's id */
/* trainer_spec ids as stored (-1 = none) */
int cvx_spm_bos_id(const cvx_spm *m);
int cvx_spm_eos_id(const cvx_spm *m);
int cvx_spm_pad_id(const cvx_spm *m);
int cvx_spm_byte_fallback(const cvx_spm *m);
const char *cvx_spm_normalizer_name(const cvx_spm *m); /* "" when the spec has none */

/* One output piece. For a piece covering normalized text, [offset, offset + length) is its span in
 * cvx_spm_result.normalized (a run of unknown characters is one piece, id = unk). With byte fallback an unknown
 * character becomes one BYTE piece per UTF-8 byte, each spanning its byte. */
typedef struct {
    int32_t id;
    uint32_t offset;
    uint32_t length;
} cvx_spm_token;

/* Output and scratch buffers of an encode; zero-initialize, reuse across calls, free with cvx_spm_result_free. */
typedef struct {
    char *normalized; /* NUL-terminated */
    size_t normalized_len;
    cvx_spm_token *tokens;
    size_t n_tokens;
    /* internal */
    size_t normalized_cap, tokens_cap;
    void *scratch;
    size_t scratch_cap;
} cvx_spm_result;

void cvx_spm_result_free(cvx_spm_result *r);

/* Longest accepted input (bytes); longer text is refused with CVX_ERR_INVALID_ARGUMENT. */
#define CVX_SPM_MAX_INPUT ((size_t)1 << 28)

/* Normalizes text (len bytes, any content) into r->normalized; r->tokens is left empty. */
cvx_status cvx_spm_normalize(const cvx_spm *m, const char *text, size_t len, cvx_spm_result *r, cvx_error *err);
/* Normalizes and encodes text: r->normalized and r->tokens. Thread-safe for a shared model. */
cvx_status cvx_spm_encode(const cvx_spm *m, const char *text, size_t len, cvx_spm_result *r, cvx_error *err);
/* The piece text of token i of r: the piece itself for BYTE pieces, else its span of the normalized text
 * (which equals the piece string for known pieces). */
const char *cvx_spm_token_text(const cvx_spm *m, const cvx_spm_result *r, size_t i, size_t *len);

#endif
