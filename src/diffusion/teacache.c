/* The string form of the step-skipping settings (cvx_cache_params, include/cogvideox.h), one parser for every
 * front end (generate --cache, the service's `cache` input):
 *
 *   off | none | teacache[:THRESHOLD[:C4,C3,C2,C1,C0]]
 *
 * THRESHOLD is TeaCache's rel_l1_thresh (default 0.1, the published "slow" setting), the coefficients the
 * rescaling polynomial, highest power first (numpy poly1d order; default: the published set for the model). */
#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include "cogvideox.h"

#define CACHE_DEFAULT_THRESHOLD 0.1

static cvx_status parse_fail(char *err, size_t n, const char *fmt, ...) {
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return CVX_ERR_INVALID_ARGUMENT;
}

/* A whole token [s, s+len) as a finite double: 0 ok, -1 not a number, -2 not finite. */
static int parse_number(const char *s, size_t len, double *out) {
    char buf[64];
    if (len == 0 || len >= sizeof buf || isspace((unsigned char)s[0])) return -1;
    memcpy(buf, s, len);
    buf[len] = '\0';
    char *end;
    double v = strtod(buf, &end);
    if (*end) return -1;
    if (!isfinite(v)) return -2;
    *out = v;
    return 0;
}

cvx_status cvx_cache_parse(const char *spec, cvx_cache_params *out, char *err, size_t n) {
    if (err && n) err[0] = '\0';
    if (!spec || !*spec) return parse_fail(err, n, "empty cache setting (off, or teacache[:THRESHOLD[:C4,C3,C2,C1,C0]])");
    cvx_cache_params c;
    memset(&c, 0, sizeof c);
    if (!strcasecmp(spec, "off") || !strcasecmp(spec, "none")) {
        *out = c;
        return CVX_OK;
    }
    const char *colon = strchr(spec, ':');
    size_t mode_len = colon ? (size_t)(colon - spec) : strlen(spec);
    if (mode_len != 8 || strncasecmp(spec, "teacache", 8) != 0)
        return parse_fail(err, n, "unknown cache mode '%.*s' (expected off, none or teacache)",
                          (int)(mode_len > 40 ? 40 : mode_len), spec);
    c.mode = CVX_CACHE_TEACACHE;
    c.threshold = CACHE_DEFAULT_THRESHOLD;
    if (!colon) {
        *out = c;
        return CVX_OK;
    }
    const char *t = colon + 1, *colon2 = strchr(t, ':');
    size_t tlen = colon2 ? (size_t)(colon2 - t) : strlen(t);
    int r = parse_number(t, tlen, &c.threshold);
    if (r == -1) return parse_fail(err, n, "teacache threshold '%.*s' is not a number", (int)(tlen > 40 ? 40 : tlen), t);
    if (r == -2) return parse_fail(err, n, "teacache threshold '%.*s' is not finite", (int)(tlen > 40 ? 40 : tlen), t);
    if (c.threshold < 0) return parse_fail(err, n, "teacache threshold %g must not be negative", c.threshold);
    if (!colon2) {
        *out = c;
        return CVX_OK;
    }
    const char *list = colon2 + 1;
    if (strchr(list, ':')) return parse_fail(err, n, "teacache takes at most THRESHOLD:C4,C3,C2,C1,C0 after the mode");
    int count = 1;
    for (const char *q = list; *q; q++) count += *q == ',';
    if (count != 5)
        return parse_fail(err, n, "teacache needs 5 coefficients C4,C3,C2,C1,C0 (highest power first), got %d", count);
    const char *q = list;
    for (int i = 0; i < 5; i++) {
        const char *comma = strchr(q, ',');
        size_t len = comma ? (size_t)(comma - q) : strlen(q);
        r = parse_number(q, len, &c.coefficients[i]);
        if (r == -1)
            return parse_fail(err, n, "teacache coefficient %d '%.*s' is not a number", i + 1, (int)(len > 40 ? 40 : len),
                              q);
        if (r == -2)
            return parse_fail(err, n, "teacache coefficient %d '%.*s' is not finite", i + 1, (int)(len > 40 ? 40 : len),
                              q);
        q = comma ? comma + 1 : q + len;
    }
    c.has_coefficients = 1;
    *out = c;
    return CVX_OK;
}

/* The shortest of %.15g/%.16g/%.17g that reads back to v exactly. */
static void shortest(double v, char *buf, size_t n) {
    for (int prec = 15; prec <= 17; prec++) {
        snprintf(buf, n, "%.*g", prec, v);
        if (strtod(buf, NULL) == v) return;
    }
}

int cvx_cache_format(const cvx_cache_params *c, char *buf, size_t size) {
    if (!c || c->mode != CVX_CACHE_TEACACHE) return snprintf(buf, size, "off");
    char t[40], k[5][40];
    shortest(c->threshold, t, sizeof t);
    if (!c->has_coefficients) return snprintf(buf, size, "teacache:%s", t);
    for (int i = 0; i < 5; i++) shortest(c->coefficients[i], k[i], sizeof k[i]);
    return snprintf(buf, size, "teacache:%s:%s,%s,%s,%s,%s", t, k[0], k[1], k[2], k[3], k[4]);
}
