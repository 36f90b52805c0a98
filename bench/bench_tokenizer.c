/* Tokenizer throughput on a long English text (a paragraph repeated to > 1 MB) with the real T5 vocabulary:
 * normalization alone, the plain sentencepiece encode, and the full T5 call (special-token split, </s>,
 * truncation/padding to 226 ids: the whole text is still encoded before truncation); plus the pipeline's
 * per-prompt cost on the demo prompt. Usage: bench_tokenizer [MB] (default 4). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "text/spm.h"
#include "text/t5_tokenizer.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

static const char paragraph[] =
    "A sprawling futuristic city illuminated by neon lights, with flying cars zipping through the air. The "
    "skyline is filled with towering skyscrapers, and holographic advertisements flicker on every corner. The "
    "camera zooms through the streets, capturing the hustle and bustle of a technologically advanced society. ";

int main(int argc, char **argv) {
    double mb = argc > 1 ? atof(argv[1]) : 4.0;
    if (mb <= 0 || mb > 256) {
        fprintf(stderr, "usage: bench_tokenizer [MB in (0, 256]]\n");
        return 2;
    }
    size_t size = (size_t)(mb * 1048576.0), plen = sizeof paragraph - 1;
    char *text = malloc(size);
    if (!text) return 1;
    for (size_t i = 0; i < size; i++) text[i] = paragraph[i % plen];

    cvx_error err;
    cvx_t5_tokenizer *tok = NULL;
    double t0 = now();
    if (cvx_t5_tokenizer_load_embedded(&tok, &err)) {
        fprintf(stderr, "bench_tokenizer: %s\n", cvx_error_message(&err));
        return 1;
    }
    printf("load spiece.model (embedded, 32000 pieces): %.1f ms\n", 1e3 * (now() - t0));
    const cvx_spm *m = cvx_t5_tokenizer_spm(tok);
    cvx_spm_result r = {0};
    cvx_t5_tokens o = {0};

    /* warm-up (allocations) then best of 3 */
    double best_norm = 1e30, best_enc = 1e30, best_t5 = 1e30;
    for (int rep = 0; rep < 4; rep++) {
        t0 = now();
        if (cvx_spm_normalize(m, text, size, &r, &err)) goto fail;
        double t1 = now();
        if (cvx_spm_encode(m, text, size, &r, &err)) goto fail;
        double t2 = now();
        if (cvx_t5_tokenize(tok, text, size, CVX_T5_MAX_LENGTH, &o, &err)) goto fail;
        double t3 = now();
        if (rep == 0) continue;
        if (t1 - t0 < best_norm) best_norm = t1 - t0;
        if (t2 - t1 < best_enc) best_enc = t2 - t1;
        if (t3 - t2 < best_t5) best_t5 = t3 - t2;
    }
    double mib = (double)size / 1048576.0;
    printf("text: %.2f MiB (paragraph of %zu bytes repeated), %zu pieces\n", mib, plen, r.n_tokens);
    printf("normalize only            %8.1f MB/s\n", mib / best_norm);
    printf("sentencepiece encode      %8.1f MB/s  (%.2f M pieces/s)\n", mib / best_enc,
           (double)r.n_tokens / best_enc / 1e6);
    printf("T5 call (226 ids)         %8.1f MB/s\n", mib / best_t5);

    /* the pipeline's call: one prompt (~300 bytes) -> 226 ids */
    int iters = 20000;
    t0 = now();
    for (int i = 0; i < iters; i++)
        if (cvx_t5_tokenize(tok, paragraph, plen, CVX_T5_MAX_LENGTH, &o, &err)) goto fail;
    double per = (now() - t0) / iters;
    printf("demo prompt (%zu bytes) -> %d ids: %.1f us per call\n", plen, CVX_T5_MAX_LENGTH, 1e6 * per);

    cvx_spm_result_free(&r);
    cvx_t5_tokens_free(&o);
    cvx_t5_tokenizer_free(tok);
    free(text);
    return 0;
fail:
    fprintf(stderr, "bench_tokenizer: %s\n", cvx_error_message(&err));
    return 1;
}
