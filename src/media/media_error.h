/* The error record of libcogvideox-media. The media library uses only libcogvideox's public API (cvx_cpu_get,
 * cvx_engine_use_writers), and the engine's internal cvx_fail is not exported, so the media files fill the record
 * through this one function of their own (the same body: cvx_error_vfail, inline in core/error.h). */
#ifndef CVX_MEDIA_ERROR_H
#define CVX_MEDIA_ERROR_H

#include "core/error.h" /* the record type only: cvx_fail itself is the engine's */

/* err->status = status and the formatted message (err may be NULL); returns status. */
cvx_status cvx_media_fail(cvx_error *err, cvx_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#endif
