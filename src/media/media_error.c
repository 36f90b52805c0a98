/* cvx_media_fail (media_error.h). */
#include "media/media_error.h"

#include <stdarg.h>

cvx_status cvx_media_fail(cvx_error *err, cvx_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cvx_error_vfail(err, status, fmt, ap);
    va_end(ap);
    return status;
}
