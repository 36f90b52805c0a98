/* Video and image output through FFmpeg's libavformat/libavcodec:
 *  - H.264 MP4 (libx264, yuv420p, BT.709 limited range, constant frame rate, "+faststart" so browsers can play it
 *    while it downloads), fed frame by frame so the VAE's temporal batches go out as they are decoded;
 *  - an animated WebP preview (libwebp, lossy, looping) — small enough for a gallery or a chat message;
 *  - PNG (8-bit RGB, the exact uint8 frames).
 * Files are written under a temporary name (path + ".part") and renamed when complete, so a failed or cancelled
 * write never leaves a partial file under the real name. */
#ifndef CVX_MEDIA_VIDEO_H
#define CVX_MEDIA_VIDEO_H

#include <stdint.h>

#include "core/error.h"

typedef struct cvx_video_writer cvx_video_writer;

typedef enum {
    CVX_VIDEO_MP4 = 0, /* H.264 in MP4 */
    CVX_VIDEO_WEBP = 1 /* animated WebP */
} cvx_video_format;

/* width and height must be even (yuv420p); fps from 1 to 240. */
cvx_status cvx_video_open(cvx_video_writer **out, const char *path, cvx_video_format format, int width, int height,
                          int fps, cvx_error *err);
/* As cvx_video_open, with container metadata: tags holds key, value, key, value, ..., NULL (NULL for none). An MP4
 * stores each as a tag ffprobe lists under the format (`-show_entries format_tags`), in the order given; nothing
 * that varies between runs is added (no creation time), so the same frames and tags give the same bytes. The WebP
 * preview has no metadata. */
cvx_status cvx_video_open_tagged(cvx_video_writer **out, const char *path, cvx_video_format format, int width,
                                 int height, int fps, const char *const *tags, cvx_error *err);
/* Encodes n frames of RGB [n, height, width, 3]. */
cvx_status cvx_video_write_frames(cvx_video_writer *w, const uint8_t *rgb, int n, cvx_error *err);
/* Flushes the encoder, finishes the file and renames it into place; frees w (also on failure, which removes the
 * partial file). */
cvx_status cvx_video_close(cvx_video_writer *w, cvx_error *err);
/* Stops without a file: removes the partial output and frees w (NULL is fine). */
void cvx_video_abort(cvx_video_writer *w);

/* Writes one RGB image [height, width, 3] as an 8-bit PNG. */
cvx_status cvx_png_write(const char *path, const uint8_t *rgb, int width, int height, cvx_error *err);

/* The writers as the engine calls them. The engine (libcogvideox) links no FFmpeg: it takes this table from
 * libcogvideox-media, which hands it over in cvx_media_enable() (include/cogvideox_media.h); a program linked with the
 * objects themselves (the cogvideox binary, the tests) has it through the engine's weak reference to the table,
 * cvx__media_builtin (src/media/video_writer.c). */
struct cvx_media_writers {
    cvx_status (*open_tagged)(cvx_video_writer **out, const char *path, cvx_video_format format, int width, int height,
                              int fps, const char *const *tags, cvx_error *err);
    cvx_status (*write_frames)(cvx_video_writer *w, const uint8_t *rgb, int n, cvx_error *err);
    cvx_status (*close)(cvx_video_writer *w, cvx_error *err);
    void (*abort)(cvx_video_writer *w);
    cvx_status (*png_write)(const char *path, const uint8_t *rgb, int width, int height, cvx_error *err);
};

#endif
