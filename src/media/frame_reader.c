/* Input frames through libavformat/libavcodec, converted to RGB24 by libswscale (see frame_reader.h). */
#include "media/frame_reader.h"

#include <dirent.h>
#include <errno.h>
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/dict.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>

#include "media/media_error.h"

#define MAX_BYTES ((uint64_t)1 << 31)


void cvx_frames_free(cvx_frames *f) {
    if (!f) return;
    free(f->rgb);
    memset(f, 0, sizeof *f);
}

/* Appends one decoded picture as RGB24 (the first one fixes the size). */
static cvx_status append_frame(cvx_frames *out, const AVFrame *fr, struct SwsContext **sws, const char *path,
                               cvx_error *err) {
    if (fr->width <= 0 || fr->height <= 0 || fr->width > CVX_FRAMES_MAX_SIDE || fr->height > CVX_FRAMES_MAX_SIDE)
        return cvx_media_fail(err, CVX_ERR_UNSUPPORTED, "%s: a %dx%d picture (at most %d pixels a side)", path, fr->width,
                       fr->height, CVX_FRAMES_MAX_SIDE);
    if (out->frames == 0) {
        out->width = fr->width;
        out->height = fr->height;
    } else if (fr->width != out->width || fr->height != out->height) {
        return cvx_media_fail(err, CVX_ERR_FORMAT, "%s: frame %d is %dx%d, the first one %dx%d (every frame must have one size)",
                       path, out->frames + 1, fr->width, fr->height, out->width, out->height);
    }
    const size_t fb = (size_t)out->width * (size_t)out->height * 3;
    if ((uint64_t)(out->frames + 1) * fb > MAX_BYTES)
        return cvx_media_fail(err, CVX_ERR_UNSUPPORTED, "%s: more than %llu MB of frames", path,
                       (unsigned long long)(MAX_BYTES >> 20));
    uint8_t *p = realloc(out->rgb, (size_t)(out->frames + 1) * fb);
    if (!p) return cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory for the frames", path);
    out->rgb = p;
    *sws = sws_getCachedContext(*sws, fr->width, fr->height, (enum AVPixelFormat)fr->format, out->width, out->height,
                                AV_PIX_FMT_RGB24, SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL,
                                NULL);
    if (!*sws) return cvx_media_fail(err, CVX_ERR_UNSUPPORTED, "%s: cannot convert pixel format %d to RGB", path, fr->format);
    uint8_t *dst[4] = {p + (size_t)out->frames * fb, NULL, NULL, NULL};
    int dst_stride[4] = {out->width * 3, 0, 0, 0};
    if (sws_scale(*sws, (const uint8_t *const *)fr->data, fr->linesize, 0, fr->height, dst, dst_stride) != out->height)
        return cvx_media_fail(err, CVX_ERR_FORMAT, "%s: cannot convert frame %d to RGB", path, out->frames + 1);
    out->frames++;
    return CVX_OK;
}

/* Decodes the best video stream of a file, appending up to `limit` frames (<= 0: all) to out. */
static cvx_status read_file(const char *path, int limit, cvx_frames *out, cvx_error *err) {
    struct stat sb;
    if (stat(path, &sb) != 0) return cvx_media_fail(err, CVX_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return cvx_media_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: not a file", path);
    if (sb.st_size == 0) return cvx_media_fail(err, CVX_ERR_FORMAT, "%s: the file is empty", path);
    av_log_set_level(AV_LOG_FATAL); /* the message we return says what went wrong */
    AVFormatContext *fmt = NULL;
    AVCodecContext *dec = NULL;
    AVPacket *pkt = NULL;
    AVFrame *fr = NULL;
    struct SwsContext *sws = NULL;
    cvx_status st = CVX_OK;
    char why[AV_ERROR_MAX_STRING_SIZE];
    /* a file name is a file name: no image-sequence pattern ("%03d") expansion by the image2 demuxer */
    AVDictionary *opts = NULL;
    av_dict_set(&opts, "pattern_type", "none", 0);
    int rc = avformat_open_input(&fmt, path, NULL, &opts);
    av_dict_free(&opts);
    if (rc < 0) {
        av_strerror(rc, why, sizeof why);
        return cvx_media_fail(err, CVX_ERR_FORMAT, "%s: not an image or video FFmpeg can read (%s)", path, why);
    }
    if ((rc = avformat_find_stream_info(fmt, NULL)) < 0) {
        av_strerror(rc, why, sizeof why);
        st = cvx_media_fail(err, CVX_ERR_FORMAT, "%s: unreadable streams (%s)", path, why);
        goto done;
    }
    const AVCodec *codec = NULL;
    int si = av_find_best_stream(fmt, AVMEDIA_TYPE_VIDEO, -1, -1, &codec, 0);
    if (si < 0 || !codec) {
        st = cvx_media_fail(err, CVX_ERR_FORMAT, "%s: no picture or video stream%s", path,
                     si == AVERROR_DECODER_NOT_FOUND ? " this FFmpeg can decode" : "");
        goto done;
    }
    dec = avcodec_alloc_context3(codec);
    pkt = av_packet_alloc();
    fr = av_frame_alloc();
    if (!dec || !pkt || !fr) {
        st = cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    if (avcodec_parameters_to_context(dec, fmt->streams[si]->codecpar) < 0 || avcodec_open2(dec, codec, NULL) < 0) {
        st = cvx_media_fail(err, CVX_ERR_FORMAT, "%s: cannot open the %s decoder", path, codec->name);
        goto done;
    }
    const int start = out->frames;
    int eof = 0;
    while (st == CVX_OK && (limit <= 0 || out->frames - start < limit)) {
        rc = avcodec_receive_frame(dec, fr);
        if (rc == 0) {
            st = append_frame(out, fr, &sws, path, err);
            av_frame_unref(fr);
            continue;
        }
        if (rc == AVERROR_EOF) break;
        if (rc != AVERROR(EAGAIN)) {
            av_strerror(rc, why, sizeof why);
            st = cvx_media_fail(err, CVX_ERR_FORMAT, "%s: cannot decode frame %d (%s)", path, out->frames - start + 1, why);
            break;
        }
        if (eof) break;
        rc = av_read_frame(fmt, pkt);
        if (rc < 0) { /* end of the file (or a read error, reported as the end): drain the decoder */
            eof = 1;
            avcodec_send_packet(dec, NULL);
            continue;
        }
        if (pkt->stream_index == si && (rc = avcodec_send_packet(dec, pkt)) < 0 && rc != AVERROR(EAGAIN)) {
            av_strerror(rc, why, sizeof why);
            st = cvx_media_fail(err, CVX_ERR_FORMAT, "%s: corrupt data (%s)", path, why);
        }
        av_packet_unref(pkt);
    }
    if (st == CVX_OK && out->frames == start) st = cvx_media_fail(err, CVX_ERR_FORMAT, "%s: no frame could be decoded", path);
done:
    sws_freeContext(sws);
    av_frame_free(&fr);
    av_packet_free(&pkt);
    avcodec_free_context(&dec);
    avformat_close_input(&fmt);
    return st;
}

cvx_status cvx_frames_read_image(const char *path, cvx_frames *out, cvx_error *err) {
    memset(out, 0, sizeof *out);
    if (!path) return cvx_media_fail(err, CVX_ERR_INVALID_ARGUMENT, "no image path");
    cvx_status st = read_file(path, 1, out, err);
    if (st != CVX_OK) cvx_frames_free(out);
    return st;
}

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int is_png_name(const char *n) {
    size_t len = strlen(n);
    return n[0] != '.' && len > 4 && !strcasecmp(n + len - 4, ".png");
}

/* A folder of PNG frames, in name order. */
static cvx_status read_folder(const char *path, int limit, cvx_frames *out, cvx_error *err) {
    DIR *d = opendir(path);
    if (!d) return cvx_media_fail(err, CVX_ERR_IO, "%s: %s", path, strerror(errno));
    char **names = NULL;
    size_t n = 0, cap = 0;
    cvx_status st = CVX_OK;
    struct dirent *de;
    while (st == CVX_OK && (de = readdir(d))) {
        if (!is_png_name(de->d_name)) continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 64;
            char **p = cap < 1000000 ? realloc(names, cap * sizeof *names) : NULL;
            if (!p) {
                st = cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: too many files", path);
                break;
            }
            names = p;
        }
        if (!(names[n] = strdup(de->d_name))) st = cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        else n++;
    }
    closedir(d);
    if (st == CVX_OK && n == 0) st = cvx_media_fail(err, CVX_ERR_NOT_FOUND, "%s: the folder has no .png frames", path);
    if (st == CVX_OK) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; st == CVX_OK && i < n && (limit <= 0 || out->frames < limit); i++) {
        size_t len = strlen(path) + strlen(names[i]) + 2;
        char *file = malloc(len);
        if (!file) {
            st = cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            break;
        }
        snprintf(file, len, "%s/%s", path, names[i]);
        st = read_file(file, 1, out, err);
        free(file);
    }
    for (size_t i = 0; i < n; i++) free(names[i]);
    free(names);
    return st;
}

cvx_status cvx_frames_read_video(const char *path, int max_frames, cvx_frames *out, cvx_error *err) {
    memset(out, 0, sizeof *out);
    if (!path) return cvx_media_fail(err, CVX_ERR_INVALID_ARGUMENT, "no video path");
    struct stat sb;
    if (stat(path, &sb) != 0) return cvx_media_fail(err, CVX_ERR_NOT_FOUND, "%s: %s", path, strerror(errno));
    cvx_status st = S_ISDIR(sb.st_mode) ? read_folder(path, max_frames, out, err) : read_file(path, max_frames, out, err);
    if (st != CVX_OK) cvx_frames_free(out);
    return st;
}
