/* cvx_media_fail (media_error.h). */
#include "media/media_error.h"

#include <stdarg.h>
#include <stdio.h>

cvx_status cvx_media_fail(cvx_error *err, cvx_status status, const char *fmt, ...) {
    if (!err) return status;
    err->status = status;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    va_end(ap);
    return status;
}
