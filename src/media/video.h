/* Video and image output through FFmpeg's libavformat/libavcodec:
 *  - H.264 MP4 (libx264, yuv420p, BT.709 limited range, constant frame rate, "+faststart" so browsers can play it
 *    while it downloads), fed frame by frame so the VAE's temporal batches go out as they are decoded;
 *  - PNG (8-bit RGB, the exact uint8 frames).
 * Files are written under a temporary name (path + ".part") and renamed when complete, so a failed or cancelled
 * write never leaves a partial file under the real name. */
#ifndef CVX_MEDIA_VIDEO_H
#define CVX_MEDIA_VIDEO_H

#include <stdint.h>

#include "core/error.h"

typedef struct cvx_mp4_writer cvx_mp4_writer;

/* width and height must be even (yuv420p); fps >= 1. */
cvx_status cvx_mp4_open(cvx_mp4_writer **out, const char *path, int width, int height, int fps, cvx_error *err);
/* Encodes n frames of RGB [n, height, width, 3]. */
cvx_status cvx_mp4_write_frames(cvx_mp4_writer *w, const uint8_t *rgb, int n, cvx_error *err);
/* Flushes the encoder, finishes the file and renames it into place; frees w (also on failure, which removes the
 * partial file). */
cvx_status cvx_mp4_close(cvx_mp4_writer *w, cvx_error *err);
/* Stops without a file: removes the partial output and frees w (NULL is fine). */
void cvx_mp4_abort(cvx_mp4_writer *w);

/* Writes one RGB image [height, width, 3] as an 8-bit PNG. */
cvx_status cvx_png_write(const char *path, const uint8_t *rgb, int width, int height, cvx_error *err);

#endif
