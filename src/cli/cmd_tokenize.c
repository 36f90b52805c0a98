/* cogvideox tokenize (-m DIR | --spm FILE | --builtin) [--max-length N] [--raw] [--json] "text" ...
 *
 * Prints the token ids (and their pieces) the CogVideoX pipeline feeds its text encoder: the T5Tokenizer call
 * with </s> and max_length padding/truncation, or (--raw) the plain sentencepiece encode of the model. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "cli/cli.h"
#include "text/spm.h"
#include "text/t5_tokenizer.h"

#define MAX_STDIN_TEXT ((size_t)64 << 20)

static void usage(FILE *f) {
    fprintf(f,
            "usage: cogvideox tokenize (-m DIR | --spm FILE | --builtin) [--max-length N] [--raw] [--json] TEXT...\n"
            "Tokenizes each TEXT ('-' reads stdin) as the CogVideoX pipeline does: T5Tokenizer with </s>, padded\n"
            "and truncated to max_length, and prints the ids and pieces.\n"
            "  -m, --model DIR   model folder: reads DIR/tokenizer/spiece.model\n"
            "  --spm FILE        a sentencepiece model file\n"
            "  --builtin         the T5 vocabulary built into this binary\n"
            "  --max-length N    pad/truncate to N ids (default %d; 0 = neither)\n"
            "  --raw             plain sentencepiece encode (no special tokens, </s> or padding); also prints the\n"
            "                    normalized text\n"
            "  --json            one JSON object per text\n"
            "example: cogvideox tokenize -m models/tiny \"a red fox in the snow\"\n",
            CVX_T5_MAX_LENGTH);
}

static char *read_stdin(size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    while (buf) {
        size_t got = fread(buf + n, 1, cap - n, stdin);
        n += got;
        if (got == 0) break;
        if (n == cap) {
            if (cap >= MAX_STDIN_TEXT) {
                free(buf);
                return NULL;
            }
            char *b = realloc(buf, cap * 2);
            if (!b) {
                free(buf);
                return NULL;
            }
            buf = b;
            cap *= 2;
        }
    }
    *len = n;
    return buf;
}

static void print_piece(const char *p, size_t n) {
    for (size_t i = 0; i < n; i++) {
        unsigned char ch = (unsigned char)p[i];
        if (ch < 0x20 || ch == 0x7f) printf("\\x%02x", ch);
        else putchar(ch);
    }
}

static json_t *ids_json(const int32_t *v, size_t n) {
    json_t *a = json_array();
    for (size_t i = 0; i < n; i++) json_array_append_new(a, json_integer(v[i]));
    return a;
}

static void print_json(json_t *o) {
    char *s = json_dumps(o, JSON_COMPACT | JSON_ENSURE_ASCII);
    if (s) puts(s);
    free(s);
    json_decref(o);
}

static int tokenize_raw(const cvx_spm *m, const char *text, size_t len, int as_json, cvx_spm_result *r) {
    cvx_error err;
    cvx_error_clear(&err);
    if (cvx_spm_encode(m, text, len, r, &err)) {
        fprintf(stderr, "cogvideox tokenize: %s\n", cvx_error_message(&err));
        return 2;
    }
    if (as_json) {
        json_t *o = json_object(), *ids = json_array(), *pieces = json_array();
        for (size_t i = 0; i < r->n_tokens; i++) {
            size_t pl;
            const char *p = cvx_spm_token_text(m, r, i, &pl);
            json_array_append_new(ids, json_integer(r->tokens[i].id));
            json_array_append_new(pieces, json_stringn_nocheck(p, pl));
        }
        json_object_set_new(o, "ids", ids);
        json_object_set_new(o, "pieces", pieces);
        json_object_set_new(o, "normalized", json_stringn_nocheck(r->normalized, r->normalized_len));
        print_json(o);
        return 0;
    }
    printf("# %zu pieces; normalized: ", r->n_tokens);
    print_piece(r->normalized, r->normalized_len);
    printf("\nids:");
    for (size_t i = 0; i < r->n_tokens; i++) printf(" %d", r->tokens[i].id);
    putchar('\n');
    for (size_t i = 0; i < r->n_tokens; i++) {
        size_t pl;
        const char *p = cvx_spm_token_text(m, r, i, &pl);
        printf("%6zu %6d  ", i, r->tokens[i].id);
        print_piece(p, pl);
        putchar('\n');
    }
    return 0;
}

static int tokenize_t5(const cvx_t5_tokenizer *tok, const char *text, size_t len, int max_length, int as_json,
                       cvx_t5_tokens *t) {
    cvx_error err;
    cvx_error_clear(&err);
    if (cvx_t5_tokenize(tok, text, len, max_length, t, &err)) {
        fprintf(stderr, "cogvideox tokenize: %s\n", cvx_error_message(&err));
        return 2;
    }
    /* The pieces of the final ids: the first ids are the text's (as long as they were kept), then </s>. */
    size_t kept = t->n_unpadded < t->n_no_special ? t->n_unpadded : t->n_no_special;
    if (kept && t->ids[kept - 1] != t->ids_no_special[kept - 1]) kept--;
    if (as_json) {
        json_t *o = json_object(), *pieces = json_array();
        char buf[16];
        for (size_t i = 0; i < t->n_unpadded; i++) {
            size_t pl;
            const char *p = i < kept ? t->piece_text + t->piece_off[i] : NULL;
            pl = i < kept ? t->piece_off[i + 1] - t->piece_off[i] : 0;
            if (!p) p = cvx_t5_tokenizer_id_text(tok, t->ids[i], buf, &pl);
            json_array_append_new(pieces, p ? json_stringn_nocheck(p, pl) : json_null());
        }
        json_object_set_new(o, "ids", ids_json(t->ids, t->n_ids));
        json_object_set_new(o, "pieces", pieces);
        json_object_set_new(o, "num_tokens", json_integer((json_int_t)t->n_no_special));
        json_object_set_new(o, "truncated", json_boolean(t->truncated));
        json_object_set_new(o, "attention_mask", ids_json(t->attention_mask, t->n_ids));
        print_json(o);
        return 0;
    }
    printf("# %zu text tokens", t->n_no_special);
    if (t->truncated) printf(", truncated to %zu", t->n_unpadded - 1);
    printf("; %zu ids with </s>", t->n_unpadded);
    if (t->n_ids > t->n_unpadded) printf(", padded to %zu", t->n_ids);
    printf("\nids:");
    for (size_t i = 0; i < t->n_ids; i++) printf(" %d", t->ids[i]);
    putchar('\n');
    char buf[16];
    for (size_t i = 0; i < t->n_unpadded; i++) {
        size_t pl = 0;
        const char *p = i < kept ? t->piece_text + t->piece_off[i] : cvx_t5_tokenizer_id_text(tok, t->ids[i], buf, &pl);
        if (i < kept) pl = t->piece_off[i + 1] - t->piece_off[i];
        printf("%6zu %6d  ", i, t->ids[i]);
        if (p) print_piece(p, pl);
        putchar('\n');
    }
    return 0;
}

int cvx_cmd_tokenize(int argc, char **argv) {
    const char *model_dir = NULL, *spm_path = NULL;
    int builtin = 0, raw = 0, as_json = 0, n_texts = 0;
    long long max_length = CVX_T5_MAX_LENGTH;
    char **texts = calloc((size_t)argc + 1, sizeof *texts);
    if (!texts) return 2;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
            usage(stdout);
            free(texts);
            return 0;
        } else if ((!strcmp(a, "-m") || !strcmp(a, "--model")) && i + 1 < argc) {
            model_dir = argv[++i];
        } else if (!strcmp(a, "--spm") && i + 1 < argc) {
            spm_path = argv[++i];
        } else if (!strcmp(a, "--max-length") && i + 1 < argc) {
            if (cvx_cli_parse_int(argv[++i], 0, 1 << 24, &max_length)) {
                fprintf(stderr, "cogvideox tokenize: --max-length wants an integer in 0..%d, got '%s'\n", 1 << 24,
                        argv[i]);
                free(texts);
                return 1;
            }
        } else if (!strcmp(a, "--builtin")) {
            builtin = 1;
        } else if (!strcmp(a, "--raw")) {
            raw = 1;
        } else if (!strcmp(a, "--json")) {
            as_json = 1;
        } else if (!strcmp(a, "--")) {
            while (++i < argc) texts[n_texts++] = argv[i];
        } else if (a[0] == '-' && a[1]) {
            CVX_CLI_UNKNOWN("tokenize", a, "-m", "--model", "--spm", "--max-length", "--builtin", "--raw", "--json", "--help");
            usage(stderr);
            free(texts);
            return 1;
        } else {
            texts[n_texts++] = argv[i];
        }
    }
    if ((model_dir != NULL) + (spm_path != NULL) + builtin != 1 || n_texts == 0) {
        fprintf(stderr, "cogvideox tokenize: %s\n\n",
                n_texts == 0 ? "no text given" : "give exactly one of -m DIR, --spm FILE, --builtin");
        usage(stderr);
        free(texts);
        return 1;
    }

    char path[4096];
    if (model_dir) {
        snprintf(path, sizeof path, "%s/tokenizer/spiece.model", model_dir);
        spm_path = path;
    }
    cvx_error err;
    cvx_error_clear(&err);
    cvx_t5_tokenizer *tok = NULL;
    cvx_status st = builtin ? cvx_t5_tokenizer_load_embedded(&tok, &err) : cvx_t5_tokenizer_load_file(spm_path, &tok, &err);
    if (st) {
        fprintf(stderr, "cogvideox tokenize: %s\n", cvx_error_message(&err));
        free(texts);
        return 2;
    }
    int rc = 0;
    cvx_spm_result r;
    cvx_t5_tokens t;
    memset(&r, 0, sizeof r);
    memset(&t, 0, sizeof t);
    for (int i = 0; i < n_texts && !rc; i++) {
        char *owned = NULL;
        const char *text = texts[i];
        size_t len = strlen(text);
        if (!strcmp(text, "-")) {
            if (!(owned = read_stdin(&len))) {
                fprintf(stderr, "cogvideox tokenize: cannot read stdin (out of memory or over %zu bytes)\n",
                        MAX_STDIN_TEXT);
                rc = 2;
                break;
            }
            text = owned;
        }
        rc = raw ? tokenize_raw(cvx_t5_tokenizer_spm(tok), text, len, as_json, &r)
                 : tokenize_t5(tok, text, len, (int)max_length, as_json, &t);
        free(owned);
    }
    cvx_spm_result_free(&r);
    cvx_t5_tokens_free(&t);
    cvx_t5_tokenizer_free(tok);
    free(texts);
    return rc;
}
