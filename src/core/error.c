#include "core/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

const char *cvx_version(void) { return CVX_VERSION_STRING; }

const char *cvx_status_name(cvx_status status) {
    switch (status) {
#define CVX__STATUS_NAME(name, value, text) \
    case CVX_##name: return "CVX_" #name;
        CVX_STATUS_MAP(CVX__STATUS_NAME)
#undef CVX__STATUS_NAME
    }
    return "CVX_ERR_UNKNOWN";
}

const char *cvx_status_text(cvx_status status) {
    switch (status) {
#define CVX__STATUS_TEXT(name, value, text) \
    case CVX_##name: return text;
        CVX_STATUS_MAP(CVX__STATUS_TEXT)
#undef CVX__STATUS_TEXT
    }
    return "unknown status";
}

void cvx_error_clear(cvx_error *err) {
    if (!err) return;
    err->status = CVX_OK;
    err->message[0] = '\0';
}

cvx_status cvx_fail(cvx_error *err, cvx_status status, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    cvx_error_vfail(err, status, fmt, ap);
    va_end(ap);
    return status;
}

cvx_status cvx_error_prefix(cvx_error *err, const char *fmt, ...) {
    if (!err) return CVX_ERR_INTERNAL;
    char prefix[CVX_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(prefix, sizeof prefix, fmt, ap);
    va_end(ap);
    size_t plen = strlen(prefix), mlen = strnlen(err->message, sizeof err->message - 1);
    if (plen > sizeof err->message - 1) plen = sizeof err->message - 1;
    if (plen + mlen > sizeof err->message - 1) mlen = sizeof err->message - 1 - plen;
    memmove(err->message + plen, err->message, mlen);
    memcpy(err->message, prefix, plen);
    err->message[plen + mlen] = '\0';
    return err->status;
}

cvx_status cvx_error_copy(cvx_error *dst, const cvx_error *src) {
    if (dst && src && dst != src) *dst = *src;
    return src ? src->status : CVX_ERR_INTERNAL;
}

const char *cvx_error_message(const cvx_error *err) {
    if (!err) return "";
    if (err->message[0]) return err->message;
    return cvx_status_text(err->status);
}
