/* issue 7's end-to-end check through the binary: `cogvideox generate -m CASE/model` with the case's prompt,
 * negative prompt, seed, steps, guidance, frames and size writes PNG frames within the case's uint8 rule and an
 * MP4 whose stream (ffprobe) has the frame count, rate and size; bad arguments and bad folders give exit codes
 * 1 and 2 and leave no file; SIGINT cancels with 130 and leaves no file. Runs over tests/data/golden/e2e and
 * ../shared/golden/e2e. */
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <libavcodec/avcodec.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include "io/safetensors.h"
#include "testlib.h"

static char g_bin[1024];

/* Runs the binary with argv (NULL-terminated, argv[0] ignored); returns the exit status (128+sig if signalled).
 * interrupt_after_ms > 0 sends SIGINT after that long. */
static int run(char **argv, int interrupt_after_ms) {
    pid_t pid = fork();
    if (pid == 0) {
        int devnull = open("/dev/null", O_WRONLY);
        if (devnull >= 0) dup2(devnull, 2);
        argv[0] = g_bin;
        execv(g_bin, argv);
        _exit(127);
    }
    int status = 0;
    if (interrupt_after_ms > 0) {
        struct timespec ts = {interrupt_after_ms / 1000, (long)(interrupt_after_ms % 1000) * 1000000L};
        nanosleep(&ts, NULL);
        kill(pid, SIGINT);
    }
    waitpid(pid, &status, 0);
    if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
    return WEXITSTATUS(status);
}

static int exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static int count_files(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)))
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static uint8_t *read_png(const char *path, int *w, int *h) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = calloc(1, (size_t)size + AV_INPUT_BUFFER_PADDING_SIZE);
    size_t got = fread(data, 1, (size_t)size, f);
    fclose(f);
    uint8_t *rgb = NULL;
    const AVCodec *dec = avcodec_find_decoder(AV_CODEC_ID_PNG);
    AVCodecContext *ctx = avcodec_alloc_context3(dec);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    if (got == (size_t)size && avcodec_open2(ctx, dec, NULL) == 0) {
        pkt->data = data;
        pkt->size = (int)size;
        if (avcodec_send_packet(ctx, pkt) == 0 && avcodec_receive_frame(ctx, frame) == 0 &&
            frame->format == AV_PIX_FMT_RGB24) {
            *w = frame->width;
            *h = frame->height;
            rgb = malloc((size_t)*w * *h * 3);
            for (int y = 0; y < *h; y++)
                memcpy(rgb + (size_t)y * *w * 3, frame->data[0] + (size_t)y * frame->linesize[0], (size_t)*w * 3);
        }
    }
    pkt->data = NULL;
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&ctx);
    free(data);
    return rgb;
}

static char *hex_text(json_t *params, const char *key) {
    char k[64];
    snprintf(k, sizeof k, "%s_utf8_hex", key);
    const char *hex = json_string_value(json_object_get(params, k));
    if (!hex) {
        const char *s = json_string_value(json_object_get(params, key));
        return strdup(s ? s : "");
    }
    size_t n = strlen(hex) / 2;
    char *s = malloc(n + 1);
    for (size_t i = 0; i < n; i++) {
        unsigned v = 0;
        sscanf(hex + 2 * i, "%2x", &v);
        s[i] = (char)v;
    }
    s[n] = '\0';
    return s;
}

static void run_case(const char *case_dir, const char *tmp) {
    char path[8192];
    snprintf(path, sizeof path, "%s/case.json", case_dir);
    json_error_t je;
    json_t *cj = json_load_file(path, 0, &je);
    CHECK_MSG(cj != NULL, "%s: %s", path, je.text);
    if (!cj) return;
    json_t *params = json_object_get(cj, "params");
    char *prompt = hex_text(params, "prompt"), *negative = hex_text(params, "negative_prompt");
    char model[8192], frames_dir[8192], mp4[8192], seed[32], steps[32], g[32], nf[32], h[32], w[32];
    snprintf(model, sizeof model, "%s/model", case_dir);
    snprintf(frames_dir, sizeof frames_dir, "%s/frames", tmp);
    snprintf(mp4, sizeof mp4, "%s/out.mp4", tmp);
    snprintf(seed, sizeof seed, "%lld", (long long)json_integer_value(json_object_get(params, "seed")));
    snprintf(steps, sizeof steps, "%lld", (long long)json_integer_value(json_object_get(params, "num_inference_steps")));
    snprintf(g, sizeof g, "%.17g", json_number_value(json_object_get(params, "guidance_scale")));
    snprintf(nf, sizeof nf, "%lld", (long long)json_integer_value(json_object_get(params, "num_frames")));
    snprintf(h, sizeof h, "%lld", (long long)json_integer_value(json_object_get(params, "height")));
    snprintf(w, sizeof w, "%lld", (long long)json_integer_value(json_object_get(params, "width")));
    char *argv[] = {"", "generate", "-m", model, "-p", prompt, "-n", negative, "--seed", seed, "--steps", steps,
                    "--guidance", g, "--frames", nf, "--height", h, "--width", w, "--precision", "fp32",
                    "--frames-dir", frames_dir, "-o", mp4, "--quiet", NULL};
    int rc = run(argv, 0);
    CHECK_MSG(rc == 0, "%s: generate exited %d", case_dir, rc);

    /* PNG frames against frames_uint8 with the case's rule */
    snprintf(path, sizeof path, "%s/io.safetensors", case_dir);
    cvx_safetensors *io = NULL;
    cvx_error err;
    CHECK(cvx_safetensors_open(&io, path, &err) == CVX_OK);
    const cvx_st_tensor *ref = io ? cvx_safetensors_find(io, "frames_uint8") : NULL;
    json_t *rule = json_object_get(json_object_get(json_object_get(cj, "check"), "compare"), "frames_uint8");
    CHECK(ref != NULL && ref->ndim == 4 && rule != NULL);
    if (ref && ref->ndim == 4 && rule) {
        int64_t F = ref->shape[0], H = ref->shape[1], W = ref->shape[2];
        double max_diff = json_number_value(json_object_get(rule, "uint8_max_diff"));
        double max_fraction = json_number_value(json_object_get(rule, "max_fraction"));
        CHECK_MSG(count_files(frames_dir) == F, "%s: %d PNG files, expected %lld", case_dir, count_files(frames_dir),
                  (long long)F);
        int64_t differing = 0, too_far = 0, total = 0;
        for (int64_t f = 0; f < F; f++) {
            snprintf(path, sizeof path, "%.4000s/%05d.png", frames_dir, (int)f);
            int pw = 0, ph = 0;
            uint8_t *rgb = read_png(path, &pw, &ph);
            CHECK_MSG(rgb && pw == W && ph == H, "%s: bad PNG", path);
            if (!rgb) continue;
            const uint8_t *r = (const uint8_t *)ref->data + (size_t)f * H * W * 3;
            for (int64_t i = 0; i < H * W * 3; i++) {
                int d = abs((int)rgb[i] - (int)r[i]);
                if (d) differing++;
                if (d > max_diff) too_far++;
            }
            total += H * W * 3;
            free(rgb);
        }
        CHECK_MSG(too_far == 0 && differing <= max_fraction * total,
                  "%s: %lld values differ (%lld by more than %g) of %lld", case_dir, (long long)differing,
                  (long long)too_far, max_diff, (long long)total);
        printf("%s: %lld frames, %lld of %lld uint8 values differ by 1\n", case_dir, (long long)F,
               (long long)differing, (long long)total);
        if (system("command -v ffprobe >/dev/null 2>&1") == 0) {
            char cmd[9000], out[1024] = "";
            snprintf(cmd, sizeof cmd,
                     "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
                     "stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames -of "
                     "default=noprint_wrappers=1 '%s'", mp4);
            FILE *p = popen(cmd, "r");
            size_t n = p ? fread(out, 1, sizeof out - 1, p) : 0;
            out[n] = '\0';
            if (p) pclose(p);
            char want[128];
            snprintf(want, sizeof want, "nb_read_frames=%lld", (long long)F);
            CHECK_MSG(strstr(out, "codec_name=h264") && strstr(out, "pix_fmt=yuv420p") && strstr(out, want) &&
                          strstr(out, "r_frame_rate=8/1"),
                      "%s: ffprobe says %s", mp4, out);
            snprintf(want, sizeof want, "width=%lld\nheight=%lld", (long long)W, (long long)H);
            CHECK_MSG(strstr(out, want), "%s: ffprobe says %s", mp4, out);
        }
    }
    cvx_safetensors_close(io);
    char cmd[17000];
    snprintf(cmd, sizeof cmd, "rm -rf '%s' '%s'", frames_dir, mp4);
    if (system(cmd) != 0) fprintf(stderr, "cleanup failed\n");
    free(prompt);
    free(negative);
    json_decref(cj);
}

/* Error paths with the first case's model. */
static void error_paths(const char *model, const char *tmp) {
    char mp4[4096], frames[4096];
    snprintf(mp4, sizeof mp4, "%s/bad.mp4", tmp);
    snprintf(frames, sizeof frames, "%s/badframes", tmp);
    struct {
        const char *flag, *value;
    } bad[] = {{"--steps", "0"},      {"--frames", "10"},     {"--frames", "53"},  {"--height", "40"},
               {"--width", "50"},     {"--scheduler", "euler"}, {"--precision", "fp8"}, {"--seed", "-2"},
               {"--guidance", "abc"}, {"--fps", "0"},         {"--noise-dtype", "f64"}};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        char *argv[] = {"", "generate", "-m", (char *)model, "-p", "x", (char *)bad[i].flag, (char *)bad[i].value,
                        "-o", mp4, "--frames-dir", frames, "--quiet", NULL};
        int rc = run(argv, 0);
        CHECK_MSG(rc == 1, "%s %s: exit %d, expected 1", bad[i].flag, bad[i].value, rc);
        CHECK(!exists(mp4) && count_files(frames) == 0);
    }
    char *no_prompt[] = {"", "generate", "-m", (char *)model, "-o", mp4, NULL};
    CHECK(run(no_prompt, 0) == 1);
    char *bad_model[] = {"", "generate", "-m", (char *)tmp, "-p", "x", "-o", mp4, "--quiet", NULL};
    CHECK(run(bad_model, 0) == 2);
    char *missing_model[] = {"", "generate", "-m", "/nonexistent/model", "-p", "x", "-o", mp4, "--quiet", NULL};
    CHECK(run(missing_model, 0) == 2);
    CHECK(!exists(mp4));

    /* SIGINT mid-generation: exit 130, no MP4, no .part, no PNG frames. Many steps keep it running long enough. */
    char *longrun[] = {"", "generate", "-m", (char *)model, "-p", "a long run", "--steps", "1000", "-o", mp4,
                       "--frames-dir", frames, "--quiet", NULL};
    int rc = run(longrun, 700);
    CHECK_MSG(rc == 130, "SIGINT: exit %d, expected 130", rc);
    char part[8192];
    snprintf(part, sizeof part, "%s.part", mp4);
    CHECK(!exists(mp4) && !exists(part) && count_files(frames) == 0);
}

static void run_dir(const char *root, const char *tmp, int *first_done) {
    DIR *d = opendir(root);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        char case_dir[4096], cj[8192];
        snprintf(case_dir, sizeof case_dir, "%s/%s", root, e->d_name);
        snprintf(cj, sizeof cj, "%s/case.json", case_dir);
        if (!exists(cj)) continue;
        run_case(case_dir, tmp);
        if (!*first_done) {
            char model[8192];
            snprintf(model, sizeof model, "%s/model", case_dir);
            error_paths(model, tmp);
            *first_done = 1;
        }
    }
    closedir(d);
}

int main(void) {
    const char *build = getenv("CVX_BUILD_DIR");
    snprintf(g_bin, sizeof g_bin, "%s/cogvideox", build ? build : "build");
    if (!exists(g_bin)) {
        fprintf(stderr, "test_e2e_cli: %s not found (set CVX_BUILD_DIR)\n", g_bin);
        return 1;
    }
    char tmp[256];
    if (!cvx_test_tmpdir(tmp, sizeof tmp)) return 1;
    int first = 0;
    run_dir("tests/data/golden/e2e", tmp, &first);
    if (cvx_test_shared_golden()) run_dir("../shared/golden/e2e", tmp, &first);
    CHECK(first == 1);
    cvx_test_rmtree(tmp);
    return cvx_test_finish("test_e2e_cli");
}
