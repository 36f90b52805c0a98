/* The engine API (include/cogvideox.h) on a tiny model folder: checkpoints and resume give the identical video
 * (DDIM and the DPM scheduler, whose generator state is part of the checkpoint); blobs for other parameters and
 * damaged blobs are refused; a failing checkpoint callback fails the run; cancel stops with CVX_ERR_CANCELLED and
 * no output file; parameter validation; progress is monotonic. */
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cogvideox.h"
#include "core/error.h"
#include "io/model_maker.h"
#include "testlib.h"

#define MODEL "tests/data/golden/e2e/t2v_2b_tiny_f32_negprompt/model"
#define MAX_STEPS 16

typedef struct {
    void *blob[MAX_STEPS + 1];
    size_t size[MAX_STEPS + 1];
    int calls;
    int fail_at; /* return an error at this step (0 = never) */
} ckpts;

static cvx_status keep(const void *state, size_t size, int step, int steps, void *user_data) {
    ckpts *c = user_data;
    c->calls++;
    if (c->fail_at && step == c->fail_at) return CVX_ERR_IO;
    if (step < 1 || step > MAX_STEPS) return CVX_ERR_INTERNAL;
    free(c->blob[step]);
    c->blob[step] = malloc(size);
    memcpy(c->blob[step], state, size);
    c->size[step] = size;
    return CVX_OK;
}

typedef struct {
    double last_fraction;
    int monotonic, calls, cancel_at_step, last_step;
} prog;

static void on_progress(const cvx_progress *p, void *user_data) {
    prog *g = user_data;
    if (p->fraction + 1e-12 < g->last_fraction) g->monotonic = 0;
    g->last_fraction = p->fraction;
    if (p->phase == CVX_PHASE_DENOISE) g->last_step = p->step;
    g->calls++;
}

static int cancel_when(void *user_data) {
    prog *g = user_data;
    return g->cancel_at_step && g->last_step >= g->cancel_at_step;
}

static cvx_generate_params base(const char *scheduler) {
    cvx_generate_params p = cvx_generate_params_default();
    p.prompt = "a lighthouse in a storm";
    p.negative_prompt = "blurry";
    p.steps = 6;
    p.num_frames = 9;
    p.height = 32;
    p.width = 48;
    p.seed = 7;
    p.scheduler = scheduler;
    return p;
}

static void test_resume(cvx_engine *e, const char *scheduler) {
    cvx_generate_params p = base(scheduler);
    ckpts c;
    memset(&c, 0, sizeof c);
    p.checkpoint = keep;
    p.checkpoint_user_data = &c;
    cvx_video full;
    CHECK_MSG(cvx_generate(e, &p, &full) == CVX_OK, "%s", cvx_engine_last_error(e));
    CHECK(c.calls == 6);
    size_t bytes = (size_t)full.num_frames * full.height * full.width * 3;
    for (int k = 1; k <= 6; k++) {
        cvx_generate_params r = base(scheduler);
        r.resume_state = c.blob[k];
        r.resume_state_size = c.size[k];
        cvx_video v;
        cvx_status st = cvx_generate(e, &r, &v);
        CHECK_MSG(st == CVX_OK, "%s resume at %d: %s", scheduler ? scheduler : "ddim", k, cvx_engine_last_error(e));
        CHECK_MSG(st == CVX_OK && v.num_frames == full.num_frames && !memcmp(v.frames, full.frames, bytes),
                  "%s: resuming after step %d gives other frames", scheduler ? scheduler : "ddim", k);
        cvx_video_free(&v);
    }
    /* a blob for other parameters */
    cvx_generate_params other = base(scheduler);
    other.seed = 8;
    other.resume_state = c.blob[3];
    other.resume_state_size = c.size[3];
    CHECK(cvx_generate(e, &other, NULL) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(strstr(cvx_engine_last_error(e), "other generation parameters") != NULL);
    /* damaged blobs */
    cvx_generate_params bad = base(scheduler);
    bad.resume_state = c.blob[3];
    bad.resume_state_size = c.size[3] - 4;
    CHECK(cvx_generate(e, &bad, NULL) == CVX_ERR_FORMAT);
    unsigned char junk[256] = {0};
    bad.resume_state = junk;
    bad.resume_state_size = sizeof junk;
    CHECK(cvx_generate(e, &bad, NULL) == CVX_ERR_FORMAT);
    bad.resume_state = NULL;
    bad.resume_state_size = 10;
    CHECK(cvx_generate(e, &bad, NULL) == CVX_ERR_INVALID_ARGUMENT);
    for (int k = 0; k <= MAX_STEPS; k++) free(c.blob[k]);
    cvx_video_free(&full);

    /* a checkpoint that cannot be stored fails the run */
    memset(&c, 0, sizeof c);
    c.fail_at = 2;
    p.checkpoint_user_data = &c;
    CHECK(cvx_generate(e, &p, NULL) == CVX_ERR_IO);
    CHECK(c.calls == 2);
    for (int k = 0; k <= MAX_STEPS; k++) free(c.blob[k]);
}

static void test_cancel_and_validation(cvx_engine *e, const char *tmp) {
    char out[512];
    snprintf(out, sizeof out, "%s/c.mp4", tmp);
    cvx_generate_params p = base(NULL);
    prog g = {0, 1, 0, 3, 0};
    p.progress = on_progress;
    p.progress_user_data = &g;
    p.should_cancel = cancel_when;
    p.cancel_user_data = &g;
    p.output_path = out;
    CHECK(cvx_generate(e, &p, NULL) == CVX_ERR_CANCELLED);
    struct stat st;
    CHECK(stat(out, &st) != 0);
    CHECK(g.last_step == 3);

    g = (prog){0, 1, 0, 0, 0};
    cvx_video v;
    CHECK(cvx_generate(e, &p, &v) == CVX_OK);
    CHECK(g.monotonic);
    CHECK(g.calls > 6);
    CHECK_MSG(g.last_fraction == 1.0, "last fraction %.17g", g.last_fraction);
    CHECK(stat(out, &st) == 0 && st.st_size > 0);
    CHECK(v.num_frames == 9 && v.width == 48 && v.height == 32 && v.fps == 8 && v.seed == 7);
    cvx_video_free(&v);

    struct {
        int steps, frames, height, width, fps;
        float g;
        const char *sched;
    } bad[] = {{0, 9, 32, 48, 8, 6, NULL},  {6, 10, 32, 48, 8, 6, NULL}, {6, 53, 32, 48, 8, 6, NULL},
               {6, 1, 32, 48, 8, 6, NULL},  {6, 9, 40, 48, 8, 6, NULL},  {6, 9, 32, 50, 8, 6, NULL},
               {6, 9, 32, 48, 0, 6, NULL},  {6, 9, 32, 48, 8, -1, NULL}, {6, 9, 32, 48, 8, 6, "euler"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        cvx_generate_params q = base(bad[i].sched);
        q.steps = bad[i].steps;
        q.num_frames = bad[i].frames;
        q.height = bad[i].height;
        q.width = bad[i].width;
        q.fps = bad[i].fps;
        q.guidance_scale = bad[i].g;
        q.output_path = out;
        remove(out);
        CHECK_MSG(cvx_generate(e, &q, NULL) == CVX_ERR_INVALID_ARGUMENT, "case %zu", i);
        CHECK(stat(out, &st) != 0);
    }
    cvx_generate_params q = base(NULL);
    q.precision = (cvx_precision)7;
    CHECK(cvx_generate(e, &q, NULL) == CVX_ERR_INVALID_ARGUMENT);
    q = base(NULL);
    q.prompt = NULL;
    CHECK(cvx_generate(e, &q, NULL) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_generate(NULL, &q, NULL) == CVX_ERR_INVALID_ARGUMENT);
}

/* Frames reach the files while the VAE still decodes: after the first of two frame batches, its 8 frames are on
 * disk. */
typedef struct {
    const char *dir;
    int seen_mid_decode;
    int pngs_mid_decode;
} stream_probe;

static void probe_progress(const cvx_progress *p, void *user_data) {
    stream_probe *sp = user_data;
    if (p->phase != CVX_PHASE_DECODE || sp->seen_mid_decode) return;
    char path[600];
    snprintf(path, sizeof path, "%s/00000.png", sp->dir);
    struct stat st;
    if (stat(path, &st) != 0) return;
    sp->seen_mid_decode = 1;
    for (int i = 0; i < 64; i++) {
        snprintf(path, sizeof path, "%s/%05d.png", sp->dir, i);
        if (stat(path, &st) == 0) sp->pngs_mid_decode++;
    }
}

static void test_streaming(cvx_engine *e, const char *tmp) {
    char dir[512];
    snprintf(dir, sizeof dir, "%s/stream", tmp);
    cvx_generate_params p = base(NULL);
    p.num_frames = 13; /* 4 latent frames: two VAE batches of 2 → 8 + 8 frames */
    p.steps = 2;
    p.frames_dir = dir;
    stream_probe sp = {dir, 0, 0};
    p.progress = probe_progress;
    p.progress_user_data = &sp;
    cvx_video v;
    CHECK(cvx_generate(e, &p, &v) == CVX_OK);
    CHECK(v.num_frames == 16);
    CHECK_MSG(sp.seen_mid_decode && sp.pngs_mid_decode == 8, "frames on disk during decode: %d",
              sp.pngs_mid_decode);
    cvx_video_free(&v);
}

/* Issue 13, defect 4: a checkpoint written with one model folder is refused by an engine on another folder with the
 * same shapes but other weights (the task then restarts from step 0), and accepted by a copy of the same folder. */
static void test_other_model(const char *tmp) {
    char dirs[3][512];
    cvx_engine *e[3] = {NULL, NULL, NULL};
    cvx_engine_params ep = cvx_engine_params_default();
    for (int i = 0; i < 3; i++) {
        snprintf(dirs[i], sizeof dirs[i], "%s/model%d", tmp, i);
        cvx_make_model_params mp = cvx_make_model_params_default();
        mp.seed = i == 1 ? 2 : 1; /* 0 and 2: the same weights in two folders */
        mp.threads = 2;
        cvx_error err;
        cvx_error_clear(&err);
        CHECK_MSG(cvx_make_model(dirs[i], &mp, &err) == CVX_OK, "%s", cvx_error_message(&err));
        char eb[512];
        CHECK_MSG(cvx_engine_open(&e[i], dirs[i], &ep, eb, sizeof eb) == CVX_OK, "%s", eb);
    }
    if (e[0] && e[1] && e[2]) {
        cvx_generate_params p = base(NULL);
        p.steps = 3;
        ckpts c;
        memset(&c, 0, sizeof c);
        p.checkpoint = keep;
        p.checkpoint_user_data = &c;
        CHECK_MSG(cvx_generate(e[0], &p, NULL) == CVX_OK, "%s", cvx_engine_last_error(e[0]));
        cvx_generate_params r = base(NULL);
        r.steps = 3;
        r.resume_state = c.blob[2];
        r.resume_state_size = c.size[2];
        CHECK(cvx_generate(e[1], &r, NULL) == CVX_ERR_INVALID_ARGUMENT);
        CHECK_MSG(strstr(cvx_engine_last_error(e[1]), "another model") != NULL, "%s", cvx_engine_last_error(e[1]));
        CHECK_MSG(cvx_generate(e[2], &r, NULL) == CVX_OK, "the same weights elsewhere: %s", cvx_engine_last_error(e[2]));
        /* issue 13, defect 10: latents overwritten with NaN (0xff bytes over the blob's second half, which holds the
         * end of the latents) are refused, not resumed into a black video */
        unsigned char *nan = malloc(c.size[2]);
        memcpy(nan, c.blob[2], c.size[2]);
        memset(nan + c.size[2] / 2, 0xff, c.size[2] - c.size[2] / 2);
        r.resume_state = nan;
        CHECK(cvx_generate(e[0], &r, NULL) == CVX_ERR_FORMAT);
        CHECK_MSG(strstr(cvx_engine_last_error(e[0]), "is not finite") != NULL, "%s", cvx_engine_last_error(e[0]));
        free(nan);
        for (int k = 0; k <= MAX_STEPS; k++) free(c.blob[k]);
    }
    for (int i = 0; i < 3; i++) cvx_engine_close(e[i]);
}

int main(void) {
    char err[1024];
    cvx_engine *e = NULL;
    cvx_engine_params ep = cvx_engine_params_default();
    CHECK(cvx_engine_open(&e, "/nonexistent/model", &ep, err, sizeof err) != CVX_OK && e == NULL);
    CHECK(strstr(err, "/nonexistent/model") != NULL);
    if (cvx_engine_open(&e, MODEL, &ep, err, sizeof err) != CVX_OK) {
        fprintf(stderr, "test_pipeline: %s\n", err);
        return 1;
    }
    char tmp[256];
    if (!cvx_test_tmpdir(tmp, sizeof tmp)) return 1;
    test_resume(e, NULL);
    test_resume(e, "dpm");
    test_cancel_and_validation(e, tmp);
    test_streaming(e, tmp);
    test_other_model(tmp);
    cvx_engine_close(e);
    cvx_engine_close(NULL);
    cvx_test_rmtree(tmp);
    return cvx_test_finish("test_pipeline");
}
