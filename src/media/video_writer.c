/* Video writers on libavformat/libavcodec: H.264 MP4 (libx264) and animated WebP (libwebp), with libswscale for
 * RGB -> yuv420p. */
#include <libavcodec/avcodec.h>
#include <libavformat/avformat.h>
#include <libavutil/error.h>
#include <libavutil/imgutils.h>
#include <libavutil/opt.h>
#include <libswscale/swscale.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cpuid.h>

#include "cogvideox.h"
#include "media/media_error.h"
#include "media/video.h"
#include "cogvideox_media.h"

/* x264's instruction sets without AVX-512. Its AVX-512 code reads memory it never wrote (seen with MALLOC_PERTURB_:
 * the MP4's bytes changed with the heap's old contents while the frames were the same), so the same frames did
 * not always give the same file. With AVX2 at most the output is reproducible and the speed difference is
 * irrelevant next to the model. Only sets this CPU has are named (naming one it lacks would crash x264). */

static void x264_asm_without_avx512(char *buf, size_t size) {
    const cvx_cpu_info *c = cvx_cpu_get();
    unsigned a = 0, b = 0, cx = 0, d = 0;
    int sse3 = 0, ssse3 = 0, sse41 = 0, bmi1 = 0, bmi2 = 0, lzcnt = 0;
    if (__get_cpuid(1, &a, &b, &cx, &d)) {
        sse3 = cx & 1u;
        ssse3 = (cx >> 9) & 1u;
        sse41 = (cx >> 19) & 1u;
    }
    if (__get_cpuid_max(0, NULL) >= 7) {
        __cpuid_count(7, 0, a, b, cx, d);
        bmi1 = (b >> 3) & 1u;
        bmi2 = (b >> 8) & 1u;
    }
    if (__get_cpuid(0x80000001, &a, &b, &cx, &d)) lzcnt = (cx >> 5) & 1u;
    snprintf(buf, size, "asm=MMX2,SSE,SSE2%s%s%s%s%s%s%s%s%s%s", sse3 ? ",SSE3" : "", ssse3 ? ",SSSE3" : "",
             sse41 ? ",SSE4.1" : "", c->sse42 ? ",SSE4.2" : "", c->avx ? ",AVX" : "", c->fma ? ",FMA3" : "",
             bmi1 ? ",BMI1" : "", bmi2 ? ",BMI2" : "", c->avx2 ? ",AVX2" : "", lzcnt ? ",LZCNT" : "");
}

struct cvx_video_writer {
    char *path, *part_path;
    int width, height;
    AVFormatContext *fmt;
    AVCodecContext *enc;
    AVStream *stream;
    struct SwsContext *sws;
    AVFrame *frame;
    AVPacket *pkt;
    int64_t next_pts;
    int header_written;
};

static cvx_status av_fail(cvx_error *err, const char *path, const char *what, int averr) {
    char buf[AV_ERROR_MAX_STRING_SIZE] = {0};
    av_strerror(averr, buf, sizeof buf);
    return cvx_media_fail(err, CVX_ERR_IO, "%s: %s: %s", path, what, buf);
}

static void writer_free(cvx_video_writer *w, int remove_part) {
    if (!w) return;
    if (w->fmt && w->fmt->pb) avio_closep(&w->fmt->pb);
    if (remove_part && w->part_path) remove(w->part_path);
    avformat_free_context(w->fmt);
    avcodec_free_context(&w->enc);
    sws_freeContext(w->sws);
    av_frame_free(&w->frame);
    av_packet_free(&w->pkt);
    free(w->path);
    free(w->part_path);
    free(w);
}

cvx_status cvx_video_open(cvx_video_writer **out, const char *path, cvx_video_format format, int width, int height,
                          int fps, cvx_error *err) {
    return cvx_video_open_tagged(out, path, format, width, height, fps, NULL, err);
}

cvx_status cvx_video_open_tagged(cvx_video_writer **out, const char *path, cvx_video_format format, int width,
                                 int height, int fps, const char *const *tags, cvx_error *err) {
    *out = NULL;
    if (width <= 0 || height <= 0 || (width & 1) || (height & 1))
        return cvx_media_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: H.264 yuv420p needs an even frame size, got %dx%d", path,
                        width, height);
    if (fps < 1 || fps > 240) return cvx_media_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: fps %d out of range", path, fps);
    if (format != CVX_VIDEO_MP4 && format != CVX_VIDEO_WEBP)
        return cvx_media_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: unknown video format", path);
    const int mp4 = format == CVX_VIDEO_MP4;
    av_log_set_level(AV_LOG_ERROR);
    cvx_video_writer *w = calloc(1, sizeof *w);
    if (!w) return cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    w->width = width;
    w->height = height;
    w->path = strdup(path);
    size_t n = strlen(path) + 6;
    w->part_path = malloc(n);
    if (!w->path || !w->part_path) {
        writer_free(w, 0);
        return cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    }
    snprintf(w->part_path, n, "%s.part", path);

    cvx_status st;
    int rc = avformat_alloc_output_context2(&w->fmt, NULL, mp4 ? "mp4" : "webp", w->part_path);
    if (rc < 0) {
        st = av_fail(err, path, mp4 ? "cannot create an MP4 muxer" : "cannot create a WebP muxer", rc);
        goto fail;
    }
    const char *codec_name = mp4 ? "libx264" : "libwebp_anim";
    const AVCodec *codec = avcodec_find_encoder_by_name(codec_name);
    if (!codec) {
        st = cvx_media_fail(err, CVX_ERR_UNSUPPORTED, "%s: this FFmpeg build has no %s encoder", path, codec_name);
        goto fail;
    }
    w->stream = avformat_new_stream(w->fmt, NULL);
    w->enc = avcodec_alloc_context3(codec);
    w->frame = av_frame_alloc();
    w->pkt = av_packet_alloc();
    if (!w->stream || !w->enc || !w->frame || !w->pkt) {
        st = cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    w->enc->width = width;
    w->enc->height = height;
    w->enc->pix_fmt = AV_PIX_FMT_YUV420P;
    w->enc->time_base = (AVRational){1, fps};
    w->enc->framerate = (AVRational){fps, 1};
    w->enc->gop_size = fps * 2;
    w->enc->color_range = AVCOL_RANGE_MPEG;
    w->enc->colorspace = AVCOL_SPC_BT709;
    w->enc->color_primaries = AVCOL_PRI_BT709;
    w->enc->color_trc = AVCOL_TRC_BT709;
    if (w->fmt->oformat->flags & AVFMT_GLOBALHEADER) w->enc->flags |= AV_CODEC_FLAG_GLOBAL_HEADER;
    if (mp4) {
        av_opt_set(w->enc->priv_data, "preset", "medium", 0);
        av_opt_set(w->enc->priv_data, "crf", "18", 0);
        av_opt_set(w->enc->priv_data, "profile", "high", 0);
        char params[256];
        x264_asm_without_avx512(params, sizeof params);
        av_opt_set(w->enc->priv_data, "x264-params", params, 0);
    } else {
        av_opt_set(w->enc->priv_data, "quality", "75", 0);
        av_opt_set(w->enc->priv_data, "preset", "picture", 0);
    }
    /* One thread: the engine's own pool owns the cores; encoding 49 frames is cheap next to the model. */
    w->enc->thread_count = 1;
    rc = avcodec_open2(w->enc, codec, NULL);
    if (rc < 0) {
        st = av_fail(err, path, "cannot open the H.264 encoder", rc);
        goto fail;
    }
    rc = avcodec_parameters_from_context(w->stream->codecpar, w->enc);
    if (rc < 0) {
        st = av_fail(err, path, "encoder parameters", rc);
        goto fail;
    }
    w->stream->time_base = w->enc->time_base;
    w->stream->avg_frame_rate = w->enc->framerate;

    w->frame->format = AV_PIX_FMT_YUV420P;
    w->frame->width = width;
    w->frame->height = height;
    rc = av_frame_get_buffer(w->frame, 0);
    if (rc < 0) {
        st = av_fail(err, path, "frame buffer", rc);
        goto fail;
    }
    w->sws = sws_getContext(width, height, AV_PIX_FMT_RGB24, width, height, AV_PIX_FMT_YUV420P,
                            SWS_BICUBIC | SWS_ACCURATE_RND | SWS_FULL_CHR_H_INT, NULL, NULL, NULL);
    if (!w->sws) {
        st = cvx_media_fail(err, CVX_ERR_UNSUPPORTED, "%s: no RGB -> yuv420p conversion", path);
        goto fail;
    }
    const int *coefs = sws_getCoefficients(SWS_CS_ITU709);
    sws_setColorspaceDetails(w->sws, coefs, 1 /* full-range RGB in */, coefs, 0 /* limited-range YUV out */, 0,
                             1 << 16, 1 << 16);

    rc = avio_open(&w->fmt->pb, w->part_path, AVIO_FLAG_WRITE);
    if (rc < 0) {
        st = av_fail(err, path, "cannot create the file", rc);
        goto fail;
    }
    /* the generation's parameters as container tags (mdta keys with use_metadata_tags: any name, read back by
     * ffprobe as format tags) */
    for (int k = 0; mp4 && tags && tags[k] && tags[k + 1]; k += 2) av_dict_set(&w->fmt->metadata, tags[k], tags[k + 1], 0);
    AVDictionary *opts = NULL;
    if (mp4) av_dict_set(&opts, "movflags", tags ? "+faststart+use_metadata_tags" : "+faststart", 0);
    else av_dict_set(&opts, "loop", "0", 0); /* loop forever */
    rc = avformat_write_header(w->fmt, &opts);
    av_dict_free(&opts);
    if (rc < 0) {
        st = av_fail(err, path, "cannot write the header", rc);
        goto fail;
    }
    w->header_written = 1;
    *out = w;
    return CVX_OK;
fail:
    writer_free(w, 1);
    return st;
}

/* Sends one frame (NULL = flush) and writes every packet the encoder has ready. */
static cvx_status encode(cvx_video_writer *w, AVFrame *frame, cvx_error *err) {
    int rc = avcodec_send_frame(w->enc, frame);
    if (rc < 0) return av_fail(err, w->path, "encoding", rc);
    for (;;) {
        rc = avcodec_receive_packet(w->enc, w->pkt);
        if (rc == AVERROR(EAGAIN) || rc == AVERROR_EOF) return CVX_OK;
        if (rc < 0) return av_fail(err, w->path, "encoding", rc);
        av_packet_rescale_ts(w->pkt, w->enc->time_base, w->stream->time_base);
        w->pkt->stream_index = w->stream->index;
        rc = av_interleaved_write_frame(w->fmt, w->pkt);
        if (rc < 0) return av_fail(err, w->path, "writing", rc);
    }
}

cvx_status cvx_video_write_frames(cvx_video_writer *w, const uint8_t *rgb, int n, cvx_error *err) {
    size_t frame_bytes = (size_t)w->width * (size_t)w->height * 3;
    for (int i = 0; i < n; i++) {
        int rc = av_frame_make_writable(w->frame);
        if (rc < 0) return av_fail(err, w->path, "frame buffer", rc);
        const uint8_t *src[1] = {rgb + (size_t)i * frame_bytes};
        int src_stride[1] = {w->width * 3};
        sws_scale(w->sws, src, src_stride, 0, w->height, w->frame->data, w->frame->linesize);
        w->frame->pts = w->next_pts++;
        cvx_status st = encode(w, w->frame, err);
        if (st != CVX_OK) return st;
    }
    return CVX_OK;
}

cvx_status cvx_video_close(cvx_video_writer *w, cvx_error *err) {
    if (!w) return CVX_OK;
    cvx_status st = encode(w, NULL, err);
    if (st == CVX_OK) {
        int rc = av_write_trailer(w->fmt);
        if (rc < 0) st = av_fail(err, w->path, "cannot finish the file", rc);
    }
    if (st == CVX_OK) {
        int rc = avio_closep(&w->fmt->pb);
        if (rc < 0) st = av_fail(err, w->path, "closing", rc);
    }
    if (st == CVX_OK && rename(w->part_path, w->path) != 0)
        st = cvx_media_fail(err, CVX_ERR_IO, "%s: cannot rename %s into place", w->path, w->part_path);
    writer_free(w, st != CVX_OK);
    return st;
}

void cvx_video_abort(cvx_video_writer *w) { writer_free(w, 1); }

cvx_status cvx_png_write(const char *path, const uint8_t *rgb, int width, int height, cvx_error *err) {
    const AVCodec *codec = avcodec_find_encoder(AV_CODEC_ID_PNG);
    if (!codec) return cvx_media_fail(err, CVX_ERR_UNSUPPORTED, "%s: this FFmpeg build has no PNG encoder", path);
    AVCodecContext *enc = avcodec_alloc_context3(codec);
    AVFrame *frame = av_frame_alloc();
    AVPacket *pkt = av_packet_alloc();
    cvx_status st = CVX_OK;
    char part[4096];
    snprintf(part, sizeof part, "%s.part", path);
    FILE *f = NULL;
    if (!enc || !frame || !pkt) {
        st = cvx_media_fail(err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    enc->width = width;
    enc->height = height;
    enc->pix_fmt = AV_PIX_FMT_RGB24;
    enc->time_base = (AVRational){1, 1};
    int rc = avcodec_open2(enc, codec, NULL);
    if (rc < 0) {
        st = av_fail(err, path, "cannot open the PNG encoder", rc);
        goto done;
    }
    frame->format = AV_PIX_FMT_RGB24;
    frame->width = width;
    frame->height = height;
    rc = av_image_fill_arrays(frame->data, frame->linesize, rgb, AV_PIX_FMT_RGB24, width, height, 1);
    if (rc < 0) {
        st = av_fail(err, path, "frame", rc);
        goto done;
    }
    rc = avcodec_send_frame(enc, frame);
    if (rc >= 0) rc = avcodec_receive_packet(enc, pkt);
    if (rc < 0) {
        st = av_fail(err, path, "PNG encoding", rc);
        goto done;
    }
    f = fopen(part, "wb");
    int written = f != NULL && fwrite(pkt->data, 1, (size_t)pkt->size, f) == (size_t)pkt->size;
    if (f && fclose(f) != 0) written = 0;
    if (!written) {
        remove(part);
        st = cvx_media_fail(err, CVX_ERR_IO, "%s: cannot write the file", path);
        goto done;
    }
    if (rename(part, path) != 0) {
        remove(part);
        st = cvx_media_fail(err, CVX_ERR_IO, "%s: cannot rename into place", path);
    }
done:
    av_packet_free(&pkt);
    av_frame_free(&frame);
    avcodec_free_context(&enc);
    return st;
}

extern const cvx_media_writers cvx__media_builtin;
const cvx_media_writers cvx__media_builtin = {cvx_video_open_tagged, cvx_video_write_frames, cvx_video_close,
                                              cvx_video_abort, cvx_png_write};

cvx_status cvx_media_enable(void) {
    cvx_engine_use_writers(&cvx__media_builtin);
    return CVX_OK;
}
