/* Input frames for image-to-video and video-to-video, read through FFmpeg (libavformat/libavcodec/libswscale)
 * into uint8 RGB: an image file (PNG, JPEG, WebP, BMP, ... anything FFmpeg decodes; its first picture), a video
 * file (MP4, WebM, MKV, AVI, GIF ...; its best video stream, every frame in decoding output order; FFmpeg 5.1
 * cannot decode animated WebP), or a
 * folder of PNG frames taken in name order (byte order of the names: 00000.png, 00001.png, ... as
 * `generate --frames-out` writes them).
 *
 * Frames are taken at their own size (nothing is resized: the engine refuses a size other than the video's, with
 * the sizes in the message); every frame of one input must have the first one's size. Errors (unreadable file,
 * no picture, no video stream, empty folder, frames of different sizes, more frames or pixels than the limits)
 * are clear messages in err; nothing is returned then. */
#ifndef CVX_MEDIA_FRAME_READER_H
#define CVX_MEDIA_FRAME_READER_H

#include <stdint.h>

#include "core/error.h"

/* Limits of one input: 8192 pixels a side, 2^31 bytes of frames in all. */
#define CVX_FRAMES_MAX_SIDE 8192

typedef struct {
    int frames, width, height;
    uint8_t *rgb; /* [frames, height, width, 3] */
} cvx_frames;

/* One picture: the first frame FFmpeg decodes from the file. */
cvx_status cvx_frames_read_image(const char *path, cvx_frames *out, cvx_error *err);
/* A video file or a folder of PNG frames: its first max_frames frames (<= 0: all of them). */
cvx_status cvx_frames_read_video(const char *path, int max_frames, cvx_frames *out, cvx_error *err);
void cvx_frames_free(cvx_frames *f);

#endif
