/* cvx_pipeline_checkpoint_latents (diffusion/pipeline.h), what `cogvideox bench deviation` reads the latents
 * with: on a tiny model folder, the last checkpoint's latents are bit-identical to the pipeline's final_latents
 * (tapped) and step/steps/count are right; damaged blobs (junk, truncated, a count that does not fit, step 0) are
 * CVX_ERR_FORMAT with a message; a cancel asked for once the last checkpoint arrived stops before the VAE (no
 * decode-phase progress) with CVX_ERR_CANCELLED. */
#include <stdlib.h>
#include <string.h>

#include "cogvideox.h"
#include "core/error.h"
#include "diffusion/pipeline.h"
#include "testlib.h"

#define MODEL "tests/data/golden/e2e/t2v_2b_tiny_f32_negprompt/model"

typedef struct {
    void *last;
    size_t size;
    int calls, done, decode_seen;
} capture;

static cvx_status keep(const void *state, size_t size, int step, int steps, void *user_data) {
    capture *c = user_data;
    c->calls++;
    free(c->last);
    c->last = malloc(size);
    if (!c->last) return CVX_ERR_OUT_OF_MEMORY;
    memcpy(c->last, state, size);
    c->size = size;
    if (step == steps) c->done = 1;
    return CVX_OK;
}

static int stop_when_done(void *user_data) { return ((capture *)user_data)->done; }

static void on_progress(const cvx_progress *p, void *user_data) {
    if (p->phase >= CVX_PHASE_DECODE) ((capture *)user_data)->decode_seen = 1;
}

typedef struct {
    float *final;
    int64_t n;
} tapped;

static cvx_status on_tap(void *user_data, const char *name, const cvx_tensor *t) {
    tapped *tp = user_data;
    if (strcmp(name, "final_latents")) return CVX_OK;
    tp->n = cvx_tensor_numel(t);
    tp->final = malloc(sizeof(float) * (size_t)tp->n);
    if (!tp->final) return CVX_ERR_OUT_OF_MEMORY;
    memcpy(tp->final, t->data, sizeof(float) * (size_t)tp->n);
    return CVX_OK;
}

int main(void) {
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = 2;
    cvx_engine *e = NULL;
    char eb[512];
    CHECK_MSG(cvx_engine_open(&e, MODEL, &ep, eb, sizeof eb) == CVX_OK, "%s", eb);
    if (!e) return cvx_test_finish("test_checkpoint_latents");

    cvx_generate_params p = cvx_generate_params_default();
    p.prompt = "a lighthouse in a storm";
    p.steps = 3;
    p.num_frames = 9;
    p.height = 32;
    p.width = 48;
    p.seed = 11;
    capture c = {0};
    p.checkpoint = keep;
    p.checkpoint_user_data = &c;
    tapped tp = {0};
    cvx_pipeline_tap tap = {on_tap, &tp};
    CHECK(cvx_generate_tapped(e, &p, NULL, &tap) == CVX_OK);
    CHECK(c.calls == 3);

    const float *lat = NULL;
    int64_t n = 0;
    int step = 0, steps = 0;
    cvx_error err;
    cvx_error_clear(&err);
    CHECK(cvx_pipeline_checkpoint_latents(c.last, c.size, &lat, &n, &step, &steps, &err) == CVX_OK);
    CHECK(step == 3 && steps == 3);
    CHECK_MSG(tp.final && n == tp.n, "n %lld, tapped %lld", (long long)n, (long long)tp.n);
    if (tp.final && n == tp.n) CHECK(memcmp(lat, tp.final, sizeof(float) * (size_t)n) == 0);
    CHECK(cvx_pipeline_checkpoint_latents(c.last, c.size, &lat, &n, NULL, NULL, &err) == CVX_OK);

    /* damaged blobs */
    unsigned char junk[256] = {0};
    cvx_error_clear(&err);
    CHECK(cvx_pipeline_checkpoint_latents(junk, sizeof junk, &lat, &n, NULL, NULL, &err) == CVX_ERR_FORMAT);
    CHECK(err.message[0] != 0);
    CHECK(cvx_pipeline_checkpoint_latents(NULL, 0, &lat, &n, NULL, NULL, &err) == CVX_ERR_FORMAT);
    CHECK(cvx_pipeline_checkpoint_latents(c.last, c.size - 4, &lat, &n, NULL, NULL, &err) == CVX_ERR_FORMAT);
    CHECK(cvx_pipeline_checkpoint_latents(c.last, 16, &lat, &n, NULL, NULL, &err) == CVX_ERR_FORMAT);
    unsigned char *bad = malloc(c.size);
    if (bad) {
        /* header layout: magic[8], version u32, header_bytes u32, params_hash u64, step i64, count i64, n i64 */
        int64_t v;
        memcpy(bad, c.last, c.size);
        v = INT64_MAX / 2;
        memcpy(bad + 40, &v, sizeof v);
        CHECK(cvx_pipeline_checkpoint_latents(bad, c.size, &lat, &n, NULL, NULL, &err) == CVX_ERR_FORMAT);
        memcpy(bad, c.last, c.size);
        v = 0;
        memcpy(bad + 24, &v, sizeof v);
        CHECK(cvx_pipeline_checkpoint_latents(bad, c.size, &lat, &n, NULL, NULL, &err) == CVX_ERR_FORMAT);
        memcpy(bad, c.last, c.size);
        bad[12] ^= 1; /* header_bytes */
        CHECK(cvx_pipeline_checkpoint_latents(bad, c.size, &lat, &n, NULL, NULL, &err) == CVX_ERR_FORMAT);
        free(bad);
    }

    /* cancel once the last checkpoint arrived: stops before the VAE */
    capture c2 = {0};
    p.checkpoint_user_data = &c2;
    p.should_cancel = stop_when_done;
    p.cancel_user_data = &c2;
    p.progress = on_progress;
    p.progress_user_data = &c2;
    CHECK(cvx_generate(e, &p, NULL) == CVX_ERR_CANCELLED);
    CHECK(c2.calls == 3 && c2.done);
    CHECK_MSG(!c2.decode_seen, "the VAE started after the cancel");
    if (c2.last && c.last && c2.size == c.size)
        CHECK(cvx_pipeline_checkpoint_latents(c2.last, c2.size, &lat, &n, NULL, NULL, &err) == CVX_OK &&
              tp.final && memcmp(lat, tp.final, sizeof(float) * (size_t)n) == 0);

    free(c.last);
    free(c2.last);
    free(tp.final);
    cvx_engine_close(e);
    return cvx_test_finish("test_checkpoint_latents");
}
