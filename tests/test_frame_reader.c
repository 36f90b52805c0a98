/* media/frame_reader.h: the inputs of image- and video-to-video. Round trips through our own writers: a PNG reads
 * back bit-exactly, a folder of PNG frames in name order, an MP4 (H.264, lossy: close, with the right count and
 * size); max_frames; and the error paths (missing, empty,
 * garbage, not a picture, an empty folder, frames of two sizes), each with a message naming the path. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "media/frame_reader.h"
#include "media/video.h"
#include "testlib.h"

static void pattern(uint8_t *rgb, int w, int h, int f) {
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            for (int c = 0; c < 3; c++)
                rgb[(y * w + x) * 3 + c] = (uint8_t)((x * 7 + y * 13 + c * 61 + f * 29 + (x * y) % 17) & 255);
}

static void write_file(const char *path, const void *data, size_t n) {
    FILE *f = fopen(path, "wb");
    if (f) {
        if (n) fwrite(data, 1, n, f);
        fclose(f);
    }
}

int main(void) {
    char tmp[256], path[1024], dir[400];
    if (!cvx_test_tmpdir(tmp, sizeof tmp)) return 1;
    cvx_error err;
    cvx_error_clear(&err);
    const int W = 48, H = 32, T = 9;
    uint8_t *src = malloc((size_t)T * W * H * 3);
    for (int f = 0; f < T; f++) pattern(src + (size_t)f * W * H * 3, W, H, f);

    /* PNG: exact */
    snprintf(path, sizeof path, "%s/a.png", tmp);
    CHECK(cvx_png_write(path, src, W, H, &err) == CVX_OK);
    cvx_frames fr;
    CHECK(cvx_frames_read_image(path, &fr, &err) == CVX_OK);
    CHECK(fr.frames == 1 && fr.width == W && fr.height == H && fr.rgb && !memcmp(fr.rgb, src, (size_t)W * H * 3));
    cvx_frames_free(&fr);
    /* a name that looks like an image-sequence pattern is still one file */
    snprintf(path, sizeof path, "%s/frame%%03d.png", tmp);
    CHECK(cvx_png_write(path, src, W, H, &err) == CVX_OK);
    CHECK_MSG(cvx_frames_read_image(path, &fr, &err) == CVX_OK && fr.frames == 1 &&
                  !memcmp(fr.rgb, src, (size_t)W * H * 3), "%s: %s", path, err.message);
    cvx_frames_free(&fr);
    snprintf(path, sizeof path, "%s/a.png", tmp);
    /* the same file as a one-frame "video" */
    CHECK(cvx_frames_read_video(path, 0, &fr, &err) == CVX_OK && fr.frames == 1);
    cvx_frames_free(&fr);

    /* a folder of PNG frames, written out of order, read in name order; max_frames */
    snprintf(dir, sizeof dir, "%s/frames", tmp);
    mkdir(dir, 0755);
    for (int f = T - 1; f >= 0; f--) {
        snprintf(path, sizeof path, "%s/%05d.png", dir, f);
        CHECK(cvx_png_write(path, src + (size_t)f * W * H * 3, W, H, &err) == CVX_OK);
    }
    snprintf(path, sizeof path, "%s/notes.txt", dir);
    write_file(path, "not a frame", 11); /* other files are ignored */
    CHECK(cvx_frames_read_video(dir, 0, &fr, &err) == CVX_OK);
    CHECK(fr.frames == T && fr.width == W && fr.height == H && !memcmp(fr.rgb, src, (size_t)T * W * H * 3));
    cvx_frames_free(&fr);
    CHECK(cvx_frames_read_video(dir, 5, &fr, &err) == CVX_OK && fr.frames == 5 &&
          !memcmp(fr.rgb, src, (size_t)5 * W * H * 3));
    cvx_frames_free(&fr);

    /* MP4 (H.264 yuv420p: lossy) and the WebP preview: count, size, and close to the source */
    static const struct {
        const char *name;
        cvx_video_format fmt;
        double max_mean;
    } vids[] = {{"v.mp4", CVX_VIDEO_MP4, 6.0}}; /* (FFmpeg 5.1 cannot decode animated WebP) */
    uint8_t *smooth = malloc((size_t)T * W * H * 3);
    for (int f = 0; f < T; f++)
        for (int y = 0; y < H; y++)
            for (int x = 0; x < W; x++) {
                uint8_t *px = smooth + (((size_t)f * H + y) * W + x) * 3;
                px[0] = (uint8_t)(40 + 3 * x + 4 * f), px[1] = (uint8_t)(60 + 4 * y), px[2] = (uint8_t)(200 - 2 * (x + y));
            }
    for (size_t k = 0; k < sizeof vids / sizeof vids[0]; k++) {
        snprintf(path, sizeof path, "%s/%s", tmp, vids[k].name);
        cvx_video_writer *vw = NULL;
        CHECK(cvx_video_open(&vw, path, vids[k].fmt, W, H, 8, &err) == CVX_OK);
        if (vw) {
            CHECK(cvx_video_write_frames(vw, smooth, T, &err) == CVX_OK);
            CHECK(cvx_video_close(vw, &err) == CVX_OK);
        }
        memset(&fr, 0, sizeof fr);
        cvx_status st = cvx_frames_read_video(path, 0, &fr, &err);
        CHECK_MSG(st == CVX_OK, "%s: %s", path, err.message);
        if (st != CVX_OK) continue;
        CHECK_MSG(fr.frames == T && fr.width == W && fr.height == H, "%s: %d frames %dx%d", path, fr.frames, fr.width,
                  fr.height);
        double sum = 0;
        size_t n = (size_t)(fr.frames < T ? fr.frames : T) * W * H * 3;
        for (size_t i = 0; i < n; i++) sum += abs((int)fr.rgb[i] - (int)smooth[i]);
        CHECK_MSG(n && sum / (double)n < vids[k].max_mean, "%s: mean |difference| %.2f", path, sum / (double)n);
        printf("%s: %d frames %dx%d, mean |read - written| %.2f levels\n", vids[k].name, fr.frames, fr.width, fr.height,
               n ? sum / (double)n : 0.0);
        cvx_frames_free(&fr);
        CHECK(cvx_frames_read_video(path, 3, &fr, &err) == CVX_OK && fr.frames == 3);
        cvx_frames_free(&fr);
    }

    /* errors: a message naming the path, nothing returned */
    struct {
        const char *name;
        const char *bytes;
        size_t n;
        cvx_status want;
    } bad[] = {{"missing.png", NULL, 0, CVX_ERR_NOT_FOUND},
               {"empty.png", "", 0, CVX_ERR_FORMAT},
               {"garbage.png", "\x89PNG\r\n\x1a\nthis is not a png at all", 32, CVX_ERR_FORMAT},
               {"text.jpg", "hello, world\n", 13, CVX_ERR_FORMAT}};
    for (size_t k = 0; k < sizeof bad / sizeof bad[0]; k++) {
        snprintf(path, sizeof path, "%s/%s", tmp, bad[k].name);
        if (bad[k].bytes) write_file(path, bad[k].bytes, bad[k].n);
        memset(&fr, 0x55, sizeof fr);
        cvx_error_clear(&err);
        cvx_status st = cvx_frames_read_image(path, &fr, &err);
        CHECK_MSG(st != CVX_OK && fr.rgb == NULL && fr.frames == 0 && strstr(err.message, bad[k].name),
                  "%s: status %d, message '%s'", bad[k].name, (int)st, err.message);
        CHECK_MSG(bad[k].want == CVX_ERR_FORMAT ? st == CVX_ERR_FORMAT || st == CVX_ERR_NOT_FOUND : st == bad[k].want,
                  "%s: status %d", bad[k].name, (int)st);
    }
    CHECK(cvx_frames_read_image(tmp, &fr, &err) != CVX_OK && fr.rgb == NULL); /* a folder is not an image */
    snprintf(dir, sizeof dir, "%s/none", tmp);
    mkdir(dir, 0755);
    CHECK(cvx_frames_read_video(dir, 0, &fr, &err) == CVX_ERR_NOT_FOUND && strstr(err.message, ".png"));
    /* two sizes in one folder */
    snprintf(dir, sizeof dir, "%s/mixed", tmp);
    mkdir(dir, 0755);
    snprintf(path, sizeof path, "%s/0.png", dir);
    CHECK(cvx_png_write(path, src, W, H, &err) == CVX_OK);
    snprintf(path, sizeof path, "%s/1.png", dir);
    CHECK(cvx_png_write(path, src, H, W, &err) == CVX_OK);
    CHECK(cvx_frames_read_video(dir, 0, &fr, &err) == CVX_ERR_FORMAT && fr.rgb == NULL &&
          strstr(err.message, "frame 2 is 32x48"));
    printf("mixed sizes: %s\n", err.message);

    free(src);
    free(smooth);
    cvx_test_rmtree(tmp);
    return cvx_test_finish("test_frame_reader");
}
