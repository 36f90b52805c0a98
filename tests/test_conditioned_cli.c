/* issue 18 through the binary: `cogvideox generate --image FILE` (i2v cases) and `generate --video DIR --strength S`
 * (v2v cases) with `--embeddings` (the case's io.safetensors: it holds prompt_embeds and negative_prompt_embeds),
 * the case's sizes, steps, guidance, dynamic CFG, seed and --precision fp32 on the case's model folder (no text
 * encoder) write PNG frames (--frames-dir) within the case's uint8 rule (±1 on at most 0.1 % of the values). The
 * case's uint8 image / video go in as a PNG file / a folder of PNG frames written by our PNG writer (lossless).
 * Then the error paths: a wrong-size image, an image for a text-to-video model, no image for the i2v model, a video
 * too short, an unreadable image, a missing embeddings tensor, no --embeddings for a folder without a text
 * encoder: exit 1 or 2 with a message, and no output file. Runs over tests/data/golden/{i2v,v2v}, then
 * ../shared/golden/{i2v,v2v} when present. */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "media/frame_reader.h"
#include "media/video.h"
#include "testlib.h"

static char g_bin[1024];
static char g_stderr[4096]; /* the last run's stderr */

/* Runs the binary with argv (NULL-terminated, argv[0] ignored); returns the exit status, stderr in g_stderr. */
static int run(char **argv, const char *tmp) {
    char errf[600];
    snprintf(errf, sizeof errf, "%s/stderr.txt", tmp);
    pid_t pid = fork();
    if (pid == 0) {
        int fd = open(errf, O_WRONLY | O_CREAT | O_TRUNC, 0644);
        if (fd >= 0) dup2(fd, 2);
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 1);
        argv[0] = g_bin;
        execv(g_bin, argv);
        _exit(127);
    }
    int status = 0;
    waitpid(pid, &status, 0);
    g_stderr[0] = '\0';
    FILE *f = fopen(errf, "r");
    if (f) {
        size_t n = fread(g_stderr, 1, sizeof g_stderr - 1, f);
        g_stderr[n] = '\0';
        fclose(f);
    }
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

/* The case's uint8 input as PNG: one file (image [H, W, 3]) or DIR/00000.png ... (video [T, H, W, 3]). */
static int write_input(const cvx_st_tensor *t, const char *path) {
    cvx_error err;
    if (t->ndim == 3) return cvx_png_write(path, t->data, (int)t->shape[1], (int)t->shape[0], &err) == CVX_OK;
    mkdir(path, 0755);
    const size_t fb = (size_t)(t->shape[1] * t->shape[2] * 3);
    for (int64_t f = 0; f < t->shape[0]; f++) {
        char p[800];
        snprintf(p, sizeof p, "%s/%05d.png", path, (int)f);
        if (cvx_png_write(p, (const uint8_t *)t->data + f * fb, (int)t->shape[2], (int)t->shape[1], &err) != CVX_OK)
            return 0;
    }
    return 1;
}

static void run_case(const char *case_dir, int video, const char *tmp, int *error_paths_done) {
    char path[700], model[700], io_path[700], input[700], frames_dir[700], mp4[700];
    snprintf(path, sizeof path, "%s/case.json", case_dir);
    json_error_t je;
    json_t *cj = json_load_file(path, 0, &je);
    CHECK_MSG(cj != NULL, "%s: %s", path, je.text);
    if (!cj) return;
    json_t *params = json_object_get(cj, "params");
    snprintf(model, sizeof model, "%s/model", case_dir);
    snprintf(io_path, sizeof io_path, "%s/io.safetensors", case_dir);
    snprintf(input, sizeof input, "%s/%s", tmp, video ? "video_in" : "image.png");
    snprintf(frames_dir, sizeof frames_dir, "%s/frames", tmp);
    snprintf(mp4, sizeof mp4, "%s/out.mp4", tmp);
    cvx_safetensors *io = NULL;
    cvx_error err;
    CHECK(cvx_safetensors_open(&io, io_path, &err) == CVX_OK);
    const cvx_st_tensor *in = io ? cvx_safetensors_find(io, video ? "video_uint8" : "image_uint8") : NULL;
    const cvx_st_tensor *ref = io ? cvx_safetensors_find(io, "frames_uint8") : NULL;
    json_t *rule = json_object_get(json_object_get(json_object_get(cj, "check"), "compare"), "frames_uint8");
    CHECK(in && ref && ref->ndim == 4 && rule);
    if (!in || !ref || ref->ndim != 4 || !rule) goto done;
    CHECK(write_input(in, input));

    char seed[32], steps[32], g[40], nf[32], h[32], w[32], strength[40];
    snprintf(seed, sizeof seed, "%lld", (long long)json_integer_value(json_object_get(params, "seed")));
    snprintf(steps, sizeof steps, "%lld", (long long)json_integer_value(json_object_get(params, "num_inference_steps")));
    snprintf(g, sizeof g, "%.17g", json_number_value(json_object_get(params, "guidance_scale")));
    snprintf(nf, sizeof nf, "%lld", (long long)(video ? in->shape[0] : json_integer_value(json_object_get(params, "num_frames"))));
    snprintf(h, sizeof h, "%lld", (long long)json_integer_value(json_object_get(params, "height")));
    snprintf(w, sizeof w, "%lld", (long long)json_integer_value(json_object_get(params, "width")));
    snprintf(strength, sizeof strength, "%.17g", json_number_value(json_object_get(params, "strength")));
    char *argv[40] = {"", "generate", "-m", model, "--embeddings", io_path, video ? "--video" : "--image", input,
                      "--frames", nf, "--height", h, "--width", w, "--steps", steps, "--guidance", g, "--seed", seed,
                      "--precision", "fp32", "--frames-dir", frames_dir, "-o", mp4, "--quiet"};
    int k = 27;
    if (json_is_true(json_object_get(params, "use_dynamic_cfg"))) argv[k++] = "--dynamic-cfg";
    if (video) argv[k++] = "--strength", argv[k++] = strength;
    argv[k] = NULL;
    int rc = run(argv, tmp);
    CHECK_MSG(rc == 0, "%s: generate exited %d: %s", case_dir, rc, g_stderr);

    /* the PNG frames (read back by the frame reader) against frames_uint8 with the case's rule */
    cvx_frames out;
    memset(&out, 0, sizeof out);
    if (rc == 0) CHECK_MSG(cvx_frames_read_video(frames_dir, 0, &out, &err) == CVX_OK, "%s", err.message);
    const int64_t F = ref->shape[0], H = ref->shape[1], W = ref->shape[2];
    CHECK_MSG(out.frames == F && out.height == H && out.width == W, "%s: %d frames %dx%d, expected %lld %lldx%lld",
              case_dir, out.frames, out.width, out.height, (long long)F, (long long)W, (long long)H);
    if (out.frames == F && out.height == H && out.width == W) {
        double max_diff = json_number_value(json_object_get(rule, "uint8_max_diff"));
        double max_fraction = json_number_value(json_object_get(rule, "max_fraction"));
        const uint8_t *r = ref->data;
        int64_t differing = 0, too_far = 0, total = F * H * W * 3;
        for (int64_t i = 0; i < total; i++) {
            int d = abs((int)out.rgb[i] - (int)r[i]);
            differing += d != 0;
            too_far += d > max_diff;
        }
        CHECK_MSG(too_far == 0 && differing <= max_fraction * (double)total,
                  "%s: %lld values differ (%lld by more than %g) of %lld", case_dir, (long long)differing,
                  (long long)too_far, max_diff, (long long)total);
        printf("%s through the CLI: %lld frames, %lld of %lld uint8 values differ by 1\n", case_dir, (long long)F,
               (long long)differing, (long long)total);
    }
    cvx_frames_free(&out);
    CHECK(exists(mp4));

    if (!*error_paths_done) {
        /* error paths on this model: exit code, a message, no output */
        char small[700], bad[700], emb[700], out2[700], frames2[700];
        snprintf(out2, sizeof out2, "%s/bad.mp4", tmp);
        snprintf(frames2, sizeof frames2, "%s/badframes", tmp);
        snprintf(small, sizeof small, "%s/small.png", tmp);
        snprintf(bad, sizeof bad, "%s/bad.png", tmp);
        snprintf(emb, sizeof emb, "%s/noembeds.safetensors", tmp);
        uint8_t px[16 * 16 * 3] = {0};
        CHECK(cvx_png_write(small, px, 16, 16, &err) == CVX_OK);
        FILE *f = fopen(bad, "wb");
        if (f) fputs("not an image", f), fclose(f);
        cvx_st_entry e = {"something_else", CVX_DTYPE_F32, 1, {3}, (float[3]){1, 2, 3}};
        CHECK(cvx_safetensors_write(emb, &e, 1, NULL, NULL, NULL, &err) == CVX_OK);
        struct {
            const char *flag, *value, *emb, *want; /* want: a piece of the message */
            int rc;
        } cases[] = {
            {video ? "--video" : "--image", small, io_path, video ? "frames" : "16x16", 1},
            {video ? "--video" : "--image", bad, io_path, "bad.png", 2},
            {"--image", "/nonexistent/x.png", io_path, "/nonexistent/x.png", 2},
            {video ? "--video" : "--image", input, emb, "prompt_embeds", 2},
            {video ? "--video" : "--image", input, NULL, "text encoder", 1},
            {video ? "--image" : "--video", video ? small : small, io_path, video ? "takes no image" : "frames", 1},
        };
        for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
            char *a[32] = {"", "generate", "-m", model, (char *)cases[i].flag, (char *)cases[i].value, "-o", out2,
                           "--frames-dir", frames2, "--quiet", "--precision", "fp32"};
            int n = 13;
            if (cases[i].emb) a[n++] = "--embeddings", a[n++] = (char *)cases[i].emb;
            else a[n++] = "-p", a[n++] = "a prompt";
            a[n] = NULL;
            int r = run(a, tmp);
            CHECK_MSG(r == cases[i].rc && strstr(g_stderr, cases[i].want), "%s %s: exit %d (wanted %d), stderr: %s",
                      cases[i].flag, cases[i].value, r, cases[i].rc, g_stderr);
            char first_png[800];
            snprintf(first_png, sizeof first_png, "%s/00000.png", frames2);
            CHECK_MSG(!exists(out2) && !exists(first_png), "%s %s left an output", cases[i].flag, cases[i].value);
        }
        printf("%s: error paths checked\n", case_dir);
        *error_paths_done = 1;
    }
done:
    cvx_safetensors_close(io);
    char cmd[3000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s' '%s'", frames_dir, mp4, input);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    json_decref(cj);
}

static int run_dir(const char *root, int video, const char *tmp) {
    DIR *d = opendir(root);
    if (!d) return 0;
    int n = 0, errors_done = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char case_dir[600], cj[700];
        snprintf(case_dir, sizeof case_dir, "%s/%s", root, e->d_name);
        snprintf(cj, sizeof cj, "%s/case.json", case_dir);
        if (!exists(cj)) continue;
        run_case(case_dir, video, tmp, &errors_done);
        n++;
    }
    closedir(d);
    return n;
}

int main(void) {
    const char *build = getenv("CVX_BUILD_DIR");
    snprintf(g_bin, sizeof g_bin, "%s/cogvideox", build ? build : "build");
    if (!exists(g_bin)) {
        fprintf(stderr, "test_conditioned_cli: %s not found (set CVX_BUILD_DIR)\n", g_bin);
        return 1;
    }
    char tmp[256], root[512];
    if (!cvx_test_tmpdir(tmp, sizeof tmp)) return 1;
    /* the project's copies, then ../shared/golden's when present */
    int n = run_dir("tests/data/golden/i2v", 0, tmp) + run_dir("tests/data/golden/v2v", 1, tmp);
    CHECK(n >= 2);
    const char *shared = cvx_test_shared_golden();
    if (shared) {
        snprintf(root, sizeof root, "%s/i2v", shared);
        run_dir(root, 0, tmp);
        snprintf(root, sizeof root, "%s/v2v", shared);
        run_dir(root, 1, tmp);
    }
    cvx_test_rmtree(tmp);
    return cvx_test_finish("test_conditioned_cli");
}
