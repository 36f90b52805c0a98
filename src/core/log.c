#include "core/log.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

static cvx_log_level level_from_env(void) {
    const char *s = getenv("CVX_LOG_LEVEL");
    if (!s) return CVX_LOG_WARN;
    if (!strcmp(s, "error")) return CVX_LOG_ERROR;
    if (!strcmp(s, "info")) return CVX_LOG_INFO;
    if (!strcmp(s, "debug")) return CVX_LOG_DEBUG;
    return CVX_LOG_WARN;
}

cvx_logger cvx_logger_default(void) {
    cvx_logger lg = {NULL, NULL, level_from_env()};
    return lg;
}

void cvx_log(const cvx_logger *logger, cvx_log_level level, const char *fmt, ...) {
    cvx_logger fallback;
    if (!logger) {
        fallback = cvx_logger_default();
        logger = &fallback;
    }
    if (level > logger->level) return;
    char msg[2048];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    if (logger->fn) {
        logger->fn(level, msg, logger->user_data);
    } else {
        static const char *const names[] = {"error", "warn", "info", "debug"};
        fprintf(stderr, "cogvideox: %s: %s\n", names[level], msg);
    }
}

const char *cvx_format_bytes(uint64_t b, char *buf, size_t size) {
    if (b >= 1000000000ull)
        snprintf(buf, size, "%.2f GB", (double)b / 1e9);
    else if (b >= 1000000ull)
        snprintf(buf, size, "%.1f MB", (double)b / 1e6);
    else if (b >= 1000ull)
        snprintf(buf, size, "%.1f kB", (double)b / 1e3);
    else
        snprintf(buf, size, "%llu B", (unsigned long long)b);
    return buf;
}

double cvx_time_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}
