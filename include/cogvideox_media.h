/* libcogvideox-media: the file writers of cvx_generate (include/cogvideox.h, "output files") on FFmpeg — H.264 MP4
 * (libx264, yuv420p, faststart, the generation's parameters as container tags), animated WebP, PNG. Link it with
 * `pkg-config --libs cogvideox-media` (which brings libcogvideox) and call cvx_media_enable() once before the first
 * cvx_generate that sets output_path, preview_path or frames_dir. */
#ifndef COGVIDEOX_MEDIA_H
#define COGVIDEOX_MEDIA_H

#include "cogvideox.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Gives the engine the writers (cvx_engine_use_writers); safe to call more than once, from any thread. */
CVX_API cvx_status cvx_media_enable(void);

#ifdef __cplusplus
}
#endif
#endif /* COGVIDEOX_MEDIA_H */
