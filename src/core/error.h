/* Per-object error state: a status code and the message of the last failure.
 * Every object that can fail (engine, model folder, safetensors file, golden case, …) embeds one; nothing
 * process-global. Usage: `return cvx_fail(&obj->err, CVX_ERR_FORMAT, "%s: header length %llu", path, n);` */
#ifndef CVX_CORE_ERROR_H
#define CVX_CORE_ERROR_H

#include <stdarg.h>
#include <stdio.h>

#include "cogvideox.h"

#define CVX_ERROR_MESSAGE_MAX 1024

typedef struct {
    cvx_status status;
    char message[CVX_ERROR_MESSAGE_MAX];
} cvx_error;

void cvx_error_clear(cvx_error *err);
/* The body of cvx_fail, inline so that a library that may not call the engine's internal symbols (libcogvideox-media,
 * media_error.h) fills the record with the same code. */
static inline cvx_status cvx_error_vfail(cvx_error *err, cvx_status status, const char *fmt, va_list ap) {
    if (!err) return status;
    err->status = status;
    vsnprintf(err->message, sizeof err->message, fmt, ap);
    return status;
}
/* Records status + formatted message in err (err may be NULL) and returns status. */
cvx_status cvx_fail(cvx_error *err, cvx_status status, const char *fmt, ...) __attribute__((format(printf, 3, 4)));
/* Prepends context to the message already in err ("loading vae: " + old). Returns err->status. */
cvx_status cvx_error_prefix(cvx_error *err, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
/* Copies src into dst (dst may be NULL) and returns the status. */
cvx_status cvx_error_copy(cvx_error *dst, const cvx_error *src);
/* The message, or the status text when no message was set. */
const char *cvx_error_message(const cvx_error *err);

#endif
