/* src/media: the MP4 writer (checked with ffprobe: codec, pixel format, frame count, rate, size, faststart),
 * PNG frames decoded back bit-exactly, and no file left behind on error or abort. */
#include <libavcodec/avcodec.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "media/video.h"
#include "testlib.h"

static int file_exists(const char *p) {
    struct stat st;
    return stat(p, &st) == 0;
}

static void fill_frames(uint8_t *rgb, int n, int h, int w) {
    for (int f = 0; f < n; f++)
        for (int y = 0; y < h; y++)
            for (int x = 0; x < w; x++) {
                uint8_t *p = rgb + (((size_t)f * h + y) * w + x) * 3;
                p[0] = (uint8_t)(x * 4 + f * 10);
                p[1] = (uint8_t)(y * 5);
                p[2] = (uint8_t)((x ^ y) * 3 + f);
            }
}

/* ffprobe's "key=value" lines for the first video stream, into buf. */
static int probe(const char *path, char *buf, size_t size) {
    char cmd[4200];
    snprintf(cmd, sizeof cmd,
             "ffprobe -v error -select_streams v:0 -count_frames -show_entries "
             "stream=codec_name,pix_fmt,width,height,r_frame_rate,nb_read_frames -of default=noprint_wrappers=1 '%s'",
             path);
    FILE *p = popen(cmd, "r");
    if (!p) return -1;
    size_t n = fread(buf, 1, size - 1, p);
    buf[n] = '\0';
    return pclose(p);
}

static void test_mp4(const char *dir) {
    const int n = 9, h = 48, w = 80;
    uint8_t *rgb = malloc((size_t)n * h * w * 3);
    fill_frames(rgb, n, h, w);
    char path[512];
    snprintf(path, sizeof path, "%s/out.mp4", dir);
    cvx_error err;
    cvx_error_clear(&err);
    cvx_video_writer *mw;
    CHECK(cvx_video_open(&mw, path, CVX_VIDEO_MP4, w, h, 8, &err) == CVX_OK);
    CHECK(!file_exists(path)); /* only the .part exists while writing */
    CHECK(cvx_video_write_frames(mw, rgb, 4, &err) == CVX_OK);
    CHECK(cvx_video_write_frames(mw, rgb + (size_t)4 * h * w * 3, n - 4, &err) == CVX_OK);
    CHECK_MSG(cvx_video_close(mw, &err) == CVX_OK, "%s", cvx_error_message(&err));
    CHECK(file_exists(path));
    char part[600];
    snprintf(part, sizeof part, "%s.part", path);
    CHECK(!file_exists(part));

    if (system("command -v ffprobe >/dev/null 2>&1") == 0) {
        char out[1024];
        CHECK(probe(path, out, sizeof out) == 0);
        CHECK_MSG(strstr(out, "codec_name=h264"), "%s", out);
        CHECK_MSG(strstr(out, "pix_fmt=yuv420p"), "%s", out);
        CHECK_MSG(strstr(out, "width=80") && strstr(out, "height=48"), "%s", out);
        CHECK_MSG(strstr(out, "r_frame_rate=8/1"), "%s", out);
        CHECK_MSG(strstr(out, "nb_read_frames=9"), "%s", out);
        /* faststart: the moov atom comes before mdat */
        FILE *f = fopen(path, "rb");
        char head[4096];
        size_t got = f ? fread(head, 1, sizeof head, f) : 0;
        if (f) fclose(f);
        const char *moov = memmem(head, got, "moov", 4), *mdat = memmem(head, got, "mdat", 4);
        CHECK(moov != NULL && (mdat == NULL || moov < mdat));
    } else {
        fprintf(stderr, "test_media: ffprobe not installed, skipping the stream checks\n");
    }

    /* Abort leaves nothing. */
    char path2[512];
    snprintf(path2, sizeof path2, "%s/aborted.mp4", dir);
    CHECK(cvx_video_open(&mw, path2, CVX_VIDEO_MP4, w, h, 8, &err) == CVX_OK);
    CHECK(cvx_video_write_frames(mw, rgb, 2, &err) == CVX_OK);
    cvx_video_abort(mw);
    snprintf(part, sizeof part, "%s.part", path2);
    CHECK(!file_exists(path2) && !file_exists(part));
    cvx_video_abort(NULL);

    /* Bad arguments. */
    CHECK(cvx_video_open(&mw, path2, CVX_VIDEO_MP4, 81, 48, 8, &err) == CVX_ERR_INVALID_ARGUMENT && mw == NULL);
    CHECK(strstr(cvx_error_message(&err), "even") != NULL);
    CHECK(cvx_video_open(&mw, path2, CVX_VIDEO_MP4, 80, 48, 0, &err) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(cvx_video_open(&mw, "/nonexistent-dir/x.mp4", CVX_VIDEO_MP4, 80, 48, 8, &err) == CVX_ERR_IO);
    CHECK(strstr(cvx_error_message(&err), "/nonexistent-dir/x.mp4") != NULL);
    free(rgb);
}

/* Animated WebP: a RIFF/WEBP file with an ANIM chunk and one ANMF chunk per frame. */
static void test_webp(const char *dir) {
    const int n = 5, h = 32, w = 48;
    uint8_t *rgb = malloc((size_t)n * h * w * 3);
    fill_frames(rgb, n, h, w);
    char path[512];
    snprintf(path, sizeof path, "%s/preview.webp", dir);
    cvx_error err;
    cvx_video_writer *vw;
    CHECK(cvx_video_open(&vw, path, CVX_VIDEO_WEBP, w, h, 8, &err) == CVX_OK);
    CHECK(cvx_video_write_frames(vw, rgb, n, &err) == CVX_OK);
    CHECK_MSG(cvx_video_close(vw, &err) == CVX_OK, "%s", cvx_error_message(&err));
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (f) {
        static unsigned char buf[1 << 20];
        size_t got = fread(buf, 1, sizeof buf, f);
        fclose(f);
        CHECK(got > 30 && !memcmp(buf, "RIFF", 4) && !memcmp(buf + 8, "WEBPVP8X", 8));
        CHECK(memmem(buf, got, "ANIM", 4) != NULL);
        int frames = 0;
        for (const unsigned char *p = buf; (p = memmem(p, got - (size_t)(p - buf), "ANMF", 4)); p += 4) frames++;
        CHECK_MSG(frames == n, "%d ANMF chunks, expected %d", frames, n);
    }
    free(rgb);
}

/* Decodes a PNG with libavcodec and compares it with the source pixels. */
static void test_png(const char *dir) {
    const int h = 33, w = 47; /* odd sizes are fine for PNG */
    uint8_t *rgb = malloc((size_t)h * w * 3);
    fill_frames(rgb, 1, h, w);
    char path[512];
    snprintf(path, sizeof path, "%s/00000.png", dir);
    cvx_error err;
    CHECK(cvx_png_write(path, rgb, w, h, &err) == CVX_OK);
    FILE *f = fopen(path, "rb");
    CHECK(f != NULL);
    if (!f) return;
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *data = calloc(1, (size_t)size + AV_INPUT_BUFFER_PADDING_SIZE);
    CHECK(fread(data, 1, (size_t)size, f) == (size_t)size);
    fclose(f);
    CHECK(memcmp(data, "\x89PNG", 4) == 0);
    const AVCodec *dec = avcodec_find_decoder(AV_CODEC_ID_PNG);
    AVCodecContext *ctx = avcodec_alloc_context3(dec);
    CHECK(avcodec_open2(ctx, dec, NULL) == 0);
    AVPacket *pkt = av_packet_alloc();
    AVFrame *frame = av_frame_alloc();
    pkt->data = data;
    pkt->size = (int)size;
    CHECK(avcodec_send_packet(ctx, pkt) == 0);
    CHECK(avcodec_receive_frame(ctx, frame) == 0);
    CHECK(frame->width == w && frame->height == h && frame->format == AV_PIX_FMT_RGB24);
    int same = 1;
    for (int y = 0; y < h && same; y++)
        if (memcmp(frame->data[0] + (size_t)y * frame->linesize[0], rgb + (size_t)y * w * 3, (size_t)w * 3)) same = 0;
    CHECK_MSG(same, "PNG pixels differ from the source");
    av_frame_free(&frame);
    pkt->data = NULL;
    av_packet_free(&pkt);
    avcodec_free_context(&ctx);
    free(data);
    CHECK(cvx_png_write("/nonexistent-dir/a.png", rgb, w, h, &err) == CVX_ERR_IO);
    free(rgb);
}

int main(void) {
    char dir[256];
    if (!cvx_test_tmpdir(dir, sizeof dir)) return 1;
    test_mp4(dir);
    test_png(dir);
    test_webp(dir);
    cvx_test_rmtree(dir);
    return cvx_test_finish("test_media");
}
