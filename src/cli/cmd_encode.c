/* cogvideox encode -m DIR [--threads N] [--max-length N] [--ids FILE] [--out FILE] ["prompt" ["negative"]]
 *
 * The pipeline's text path: the T5 tokenizer (padding to max_length 226, truncation, </s>) and the T5 encoder
 * (T5EncoderModel(ids)[0], no attention mask), then the embedding's shape and statistics. The prompts are
 * encoded as one batch (rows are independent: no mask, no cross-row term). */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli/cli.h"
#include "core/log.h"
#include "core/threadpool.h"
#include "io/safetensors.h"
#include "text/t5.h"
#include "text/t5_tokenizer.h"

#define MAX_IDS_FILE (64u << 20)
#define MAX_PROMPTS 64

static void usage(FILE *f) {
    fprintf(f,
            "usage: cogvideox encode -m DIR [--threads N] [--max-length N] [--out FILE] \"prompt\" [\"negative\"]\n"
            "       cogvideox encode -m DIR [--threads N] [--out FILE] --ids FILE\n"
            "Runs the T5 text encoder of a model folder (DIR/text_encoder, or DIR itself when it is a text_encoder\n"
            "folder) on prompts tokenized as the CogVideoX pipeline does (DIR/tokenizer/spiece.model, padded and\n"
            "truncated to max_length), or on token ids, and prints each embedding's shape and statistics.\n"
            "  -m, --model DIR   model folder\n"
            "  --threads N       worker threads (default: all cores)\n"
            "  --max-length N    tokenizer max_length (default %d, the pipeline's max_sequence_length)\n"
            "  --ids FILE        token ids instead of prompts: one sequence per line, integers separated by spaces\n"
            "                    or commas, every line the same length ('-' reads stdin)\n"
            "  --out FILE        also write the embeddings and \"input_ids\" to a .safetensors file: for a prompt and\n"
            "                    a negative prompt F32 \"prompt_embeds\" and \"negative_prompt_embeds\" [1, L, d_model]\n"
            "                    each (what generate --embeddings takes), else \"prompt_embeds\" [B, L, d_model]\n"
            "example: cogvideox encode -m models/tiny \"a red fox in the snow\" \"\"\n",
            CVX_T5_MAX_LENGTH);
}

static int is_dir(const char *p) {
    struct stat st;
    return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

/* Reads the ids file into a malloc'd [rows, cols] int64 array. */
static int read_ids(const char *path, int64_t **out, int64_t *rows, int64_t *cols) {
    FILE *f = strcmp(path, "-") ? fopen(path, "rb") : stdin;
    if (!f) {
        fprintf(stderr, "cogvideox encode: %s: %s\n", path, strerror(errno));
        return -1;
    }
    char *text = malloc(MAX_IDS_FILE + 1);
    size_t n = text ? fread(text, 1, MAX_IDS_FILE + 1, f) : 0;
    if (f != stdin) fclose(f);
    if (!text || n > MAX_IDS_FILE) {
        fprintf(stderr, "cogvideox encode: %s: %s\n", path, text ? "file too large" : "out of memory");
        free(text);
        return -1;
    }
    text[n] = '\0';
    int64_t cap = 1024, count = 0, r = 0, c = -1, in_row = 0;
    int64_t *ids = malloc((size_t)cap * sizeof *ids);
    int rc = -1;
    for (char *p = text;; ) {
        while (*p == ' ' || *p == '\t' || *p == ',' || *p == '\r') p++;
        if (*p == '\n' || *p == '\0') {
            if (in_row) {
                int64_t len = count - r * (c < 0 ? 0 : c);
                if (c < 0) c = len;
                if (len != c) {
                    fprintf(stderr, "cogvideox encode: %s: line %lld has %lld ids, the first had %lld\n", path,
                            (long long)r + 1, (long long)len, (long long)c);
                    goto out;
                }
                r++, in_row = 0;
            }
            if (*p == '\0') break;
            p++;
            continue;
        }
        char *end;
        errno = 0;
        long long v = strtoll(p, &end, 10);
        if (end == p || errno || (*end && !strchr(" \t,\r\n", *end))) {
            fprintf(stderr, "cogvideox encode: %s: not an integer: \"%.*s\"\n", path,
                    (int)(strcspn(p, " \t,\r\n") < 32 ? strcspn(p, " \t,\r\n") : 32), p);
            goto out;
        }
        if (count == cap) {
            int64_t *grown = realloc(ids, (size_t)(cap *= 2) * sizeof *ids);
            if (!grown) goto out;
            ids = grown;
        }
        ids[count++] = v, in_row = 1, p = end;
    }
    if (r == 0) {
        fprintf(stderr, "cogvideox encode: %s: no ids\n", path);
        goto out;
    }
    *out = ids, *rows = r, *cols = c, ids = NULL, rc = 0;
out:
    free(ids);
    free(text);
    return rc;
}

static void print_stats(const char *label, const float *x, int64_t L, int64_t D) {
    double sum = 0, sq = 0, mn = INFINITY, mx = -INFINITY;
    int64_t n = L * D;
    for (int64_t i = 0; i < n; i++) {
        double v = x[i];
        sum += v, sq += v * v;
        if (v < mn) mn = v;
        if (v > mx) mx = v;
    }
    double mean = sum / (double)n, var = sq / (double)n - mean * mean;
    printf("%-10s [1, %lld, %lld]  mean %+.6f  std %.6f  min %+.6f  max %+.6f\n", label, (long long)L,
           (long long)D, mean, sqrt(var > 0 ? var : 0), mn, mx);
}

int cvx_cmd_encode(int argc, char **argv) {
    const char *model_dir = NULL, *ids_path = NULL, *out_path = NULL;
    const char *prompts[MAX_PROMPTS];
    int n_prompts = 0, threads = 0;
    long long max_length = CVX_T5_MAX_LENGTH;
    for (int i = 1; i < argc; i++) {
        long long v;
        if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h")) {
            usage(stdout);
            return 0;
        } else if ((!strcmp(argv[i], "-m") || !strcmp(argv[i], "--model")) && i + 1 < argc) {
            model_dir = argv[++i];
        } else if (!strcmp(argv[i], "--threads") && i + 1 < argc) {
            if (cvx_cli_parse_int(argv[++i], 1, 1024, &v)) {
                fprintf(stderr, "cogvideox encode: --threads needs a number from 1 to 1024\n");
                return 1;
            }
            threads = (int)v;
        } else if (!strcmp(argv[i], "--max-length") && i + 1 < argc) {
            if (cvx_cli_parse_int(argv[++i], 1, 1 << 15, &max_length)) {
                fprintf(stderr, "cogvideox encode: --max-length needs a number from 1 to 32768\n");
                return 1;
            }
        } else if (!strcmp(argv[i], "--ids") && i + 1 < argc) {
            ids_path = argv[++i];
        } else if (!strcmp(argv[i], "--out") && i + 1 < argc) {
            out_path = argv[++i];
        } else if (argv[i][0] == '-' && argv[i][1] != '\0') {
            CVX_CLI_UNKNOWN("encode", argv[i], "-m", "--model", "--threads", "--max-length", "--ids", "--out", "--help");
            usage(stderr);
            return 1;
        } else if (n_prompts < MAX_PROMPTS) {
            prompts[n_prompts++] = argv[i];
        } else {
            fprintf(stderr, "cogvideox encode: at most %d prompts\n", MAX_PROMPTS);
            return 1;
        }
    }
    if (!model_dir || (!ids_path && n_prompts == 0) || (ids_path && n_prompts > 0)) {
        usage(stderr);
        return 1;
    }

    char te_dir[4096], tok_path[4096];
    snprintf(te_dir, sizeof te_dir, "%s/text_encoder", model_dir);
    if (!is_dir(te_dir)) snprintf(te_dir, sizeof te_dir, "%s", model_dir);

    cvx_error err = {0};
    int64_t *ids = NULL, B = 0, L = 0;
    double t0 = cvx_time_seconds();
    if (ids_path) {
        if (read_ids(ids_path, &ids, &B, &L)) return 2;
    } else {
        snprintf(tok_path, sizeof tok_path, "%s/tokenizer/spiece.model", model_dir);
        cvx_t5_tokenizer *tok = NULL;
        if (cvx_t5_tokenizer_load_file(tok_path, &tok, &err)) {
            fprintf(stderr, "cogvideox encode: %s\n", cvx_error_message(&err));
            return 2;
        }
        B = n_prompts, L = max_length;
        ids = malloc((size_t)(B * L) * sizeof *ids);
        cvx_t5_tokens tk = {0};
        for (int b = 0; ids && b < n_prompts; b++) {
            if (cvx_t5_tokenize(tok, prompts[b], strlen(prompts[b]), (int)max_length, &tk, &err)) {
                fprintf(stderr, "cogvideox encode: tokenizing prompt %d: %s\n", b + 1, cvx_error_message(&err));
                free(ids);
                ids = NULL;
                break;
            }
            for (int64_t j = 0; j < L; j++) ids[b * L + j] = tk.ids[j];
            printf("prompt %d: %zu tokens%s\n", b + 1, tk.n_unpadded, tk.truncated ? " (truncated)" : "");
        }
        cvx_t5_tokens_free(&tk);
        cvx_t5_tokenizer_free(tok);
        if (!ids) return 2;
    }

    double t_load = cvx_time_seconds();
    cvx_t5 *model = NULL;
    if (cvx_t5_open(&model, te_dir, &err)) {
        fprintf(stderr, "cogvideox encode: %s\n", cvx_error_message(&err));
        free(ids);
        return 2;
    }
    const cvx_t5_config *cfg = cvx_t5_get_config(model);
    const int64_t D = cfg->d_model;
    printf("text encoder: %s (%lld layers, d_model %lld, %lld heads x %lld, d_ff %lld, %.2f GB of weights)\n", te_dir,
           (long long)cfg->num_layers, (long long)D, (long long)cfg->num_heads, (long long)cfg->d_kv,
           (long long)cfg->d_ff, (double)cvx_t5_weight_bytes(model) / 1e9);
    cvx_pool *pool = cvx_pool_new(threads);
    float *out = malloc((size_t)(B * L * D) * sizeof(float));
    int rc = 2;
    if (!pool || !out) {
        fprintf(stderr, "cogvideox encode: out of memory\n");
        goto done;
    }
    int64_t shape[2] = {B, L};
    cvx_tensor tids = cvx_tensor_view(CVX_DTYPE_I64, ids, 2, shape);
    double t_enc = cvx_time_seconds();
    if (cvx_t5_encode(model, pool, &tids, out)) {
        fprintf(stderr, "cogvideox encode: %s\n", cvx_t5_last_error(model));
        goto done;
    }
    double t_end = cvx_time_seconds();
    for (int64_t b = 0; b < B; b++) {
        char label[32];
        if (!ids_path && B <= 2) snprintf(label, sizeof label, "%s", b == 0 ? "prompt" : "negative");
        else snprintf(label, sizeof label, "%s %lld", ids_path ? "ids" : "prompt", (long long)b + 1);
        print_stats(label, out + b * L * D, L, D);
    }
    printf("embedding [%lld, %lld, %lld]; %d threads, kernels %s; tokenize %.2f s, load %.2f s, encode %.2f s\n",
           (long long)B, (long long)L, (long long)D, cvx_pool_size(pool), cvx_isa_name(cvx_isa_active()),
           t_load - t0, t_enc - t_load, t_end - t_enc);
    if (out_path) {
        /* a prompt and its negative: diffusers' prompt_embeds / negative_prompt_embeds, [1, L, D] each, the file
         * `generate --embeddings` takes */
        const int pair = !ids_path && B == 2;
        cvx_st_entry e[3] = {
            {"input_ids", CVX_DTYPE_I64, 2, {B, L}, ids},
            {"prompt_embeds", CVX_DTYPE_F32, 3, {pair ? 1 : B, L, D}, out},
            {"negative_prompt_embeds", CVX_DTYPE_F32, 3, {1, L, D}, out + L * D},
        };
        if (cvx_safetensors_write(out_path, e, pair ? 3 : 2, NULL, NULL, NULL, &err)) {
            fprintf(stderr, "cogvideox encode: %s\n", cvx_error_message(&err));
            goto done;
        }
        printf("wrote %s\n", out_path);
    }
    rc = 0;
done:
    free(out);
    cvx_pool_free(pool);
    cvx_t5_close(model);
    free(ids);
    return rc;
}
