#ifndef CVX_CORE_LOG_H
#define CVX_CORE_LOG_H

#include <stddef.h>
#include <stdint.h>

#include "cogvideox.h"

/* Formats and sends a message to the logger (NULL = the default stderr logger). */
void cvx_log(const cvx_logger *logger, cvx_log_level level, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

#define cvx_log_error(lg, ...) cvx_log((lg), CVX_LOG_ERROR, __VA_ARGS__)
#define cvx_log_warn(lg, ...) cvx_log((lg), CVX_LOG_WARN, __VA_ARGS__)
#define cvx_log_info(lg, ...) cvx_log((lg), CVX_LOG_INFO, __VA_ARGS__)
#define cvx_log_debug(lg, ...) cvx_log((lg), CVX_LOG_DEBUG, __VA_ARGS__)

/* A byte count for people: "812 B", "1.6 kB", "13.3 MB", "9.52 GB" (decimal units). Returns buf. */
const char *cvx_format_bytes(uint64_t bytes, char *buf, size_t size);

/* Monotonic seconds, for stage timings. */
double cvx_time_seconds(void);

#endif
