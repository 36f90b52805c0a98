/* Progress of a generation as a user sees it (issue 14, item 2), on a small real run of a random-weight model
 * (the tiny preset at 128x192, 13 frames: its decoder dominates, as the 2b's does on a CPU): every stage is
 * reported and named, the fraction never goes back and ends at 1, and the remaining time the engine gives when
 * the decode starts is within 30 % of the time the run then really takes (the decode and the writing). Timings
 * on a shared machine move: one math thread, and the check takes the best of up to three runs. */
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "cogvideox.h"
#include "core/error.h"
#include "io/model_maker.h"
#include "testlib.h"

static double now_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct {
    double last_fraction, decode_start, decode_remaining, write_start;
    int monotonic, seen[4], labelled, decode_reports, last_done;
} watch;

static void on_progress(const cvx_progress *p, void *user_data) {
    watch *w = user_data;
    if (p->fraction + 1e-12 < w->last_fraction || p->fraction > 1) w->monotonic = 0;
    w->last_fraction = p->fraction;
    if ((unsigned)p->phase > CVX_PHASE_WRITE) return;
    w->seen[p->phase]++;
    if (!p->label || strcmp(p->label, cvx_phase_label(p->phase))) w->labelled = 0;
    if (p->phase == CVX_PHASE_DECODE) {
        if (w->decode_start == 0) {
            w->decode_start = now_s();
            w->decode_remaining = p->remaining_seconds;
        }
        if (p->total <= 0 || p->done < w->last_done) w->labelled = 0;
        w->last_done = p->done;
        w->decode_reports++;
    }
}

/* Returns |estimate / truth - 1| of one run. */
static double one_run(cvx_engine *e, const char *out) {
    cvx_generate_params p = cvx_generate_params_default();
    p.prompt = "a red fox in the snow";
    p.steps = 3;
    p.num_frames = 13;
    p.height = 128;
    p.width = 192;
    p.output_path = out;
    watch w;
    memset(&w, 0, sizeof w);
    w.monotonic = w.labelled = 1;
    p.progress = on_progress;
    p.progress_user_data = &w;
    cvx_video v;
    CHECK_MSG(cvx_generate(e, &p, &v) == CVX_OK, "%s", cvx_engine_last_error(e));
    double end = now_s();
    cvx_video_free(&v);
    CHECK(w.monotonic);
    CHECK_MSG(fabs(w.last_fraction - 1.0) < 1e-12, "last fraction %g", w.last_fraction);
    CHECK(w.labelled);
    for (int k = 0; k < 4; k++) CHECK_MSG(w.seen[k] > 0, "phase %d never reported", k);
    CHECK_MSG(w.decode_reports >= 3, "%d decode reports", w.decode_reports); /* the start and every batch */
    CHECK(strcmp(cvx_phase_label(CVX_PHASE_DECODE), "decoding the video") == 0);
    double truth = end - w.decode_start;
    printf("test_progress: at the start of the decode %.3f s left, really %.3f s\n", w.decode_remaining, truth);
    CHECK(w.decode_remaining > 0);
    return w.decode_remaining > 0 ? fabs(w.decode_remaining / truth - 1) : 1e9;
}

int main(void) {
    char tmp[256], model[300], out[300], err[1024];
    if (!cvx_test_tmpdir(tmp, sizeof tmp)) return 1;
    snprintf(model, sizeof model, "%s/tiny", tmp);
    snprintf(out, sizeof out, "%s/out.mp4", tmp);
    cvx_error merr;
    cvx_error_clear(&merr);
    cvx_make_model_params mp = cvx_make_model_params_default();
    CHECK_MSG(cvx_make_model(model, &mp, &merr) == CVX_OK, "%s", cvx_error_message(&merr));
    cvx_engine *e = NULL;
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = 1; /* ctest runs tests side by side: one thread is timed far more steadily than a pool that waits */
    if (cvx_engine_open(&e, model, &ep, err, sizeof err) != CVX_OK) {
        fprintf(stderr, "test_progress: %s\n", err);
        return 1;
    }
    double off = one_run(e, out);
    for (int k = 0; k < 2 && off > 0.3; k++) off = fmin(off, one_run(e, out));
    CHECK_MSG(off <= 0.3, "the remaining time at the start of the decode is off by %.0f %%", off * 100);
    cvx_engine_close(e);
    cvx_test_rmtree(tmp);
    return cvx_test_finish("test_progress");
}
