/* Request body parsing and field coercion for the task service; the rules are in body.h. */
#include "service/body.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

/* More fields than any client sends; bounds the work on hostile bodies. */
#define MAX_FIELDS 256

static int fail(char *err, size_t n, const char *fmt, ...) {
    if (err && n) {
        va_list ap;
        va_start(ap, fmt);
        vsnprintf(err, n, fmt, ap);
        va_end(ap);
    }
    return -1;
}

static int is_blank(int c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Adds name -> string value; the bytes must be UTF-8 without NUL (jansson checks). */
static int add_string(json_t *obj, const char *name, size_t name_len, const char *val, size_t val_len, char *err,
                      size_t n) {
    if (json_object_size(obj) >= MAX_FIELDS) return fail(err, n, "more than %d fields", MAX_FIELDS);
    if (name_len == 0) return fail(err, n, "a field without a name");
    if (memchr(name, 0, name_len)) {
        fail(err, n, "a field name holds a NUL byte");
        return CVX_SVC_BODY_NUL;
    }
    char *key = strndup(name, name_len);
    if (key && memchr(val, 0, val_len)) {
        fail(err, n, "field [%.64s] holds a NUL byte", key);
        free(key);
        return CVX_SVC_BODY_NUL;
    }
    if (!key) return fail(err, n, "out of memory");
    json_t *v = json_stringn(val, val_len);
    if (!v) {
        int r = fail(err, n, "field [%.64s] is not valid UTF-8 text", key);
        free(key);
        return r;
    }
    int rc = json_object_set_new(obj, key, v);
    free(key);
    return rc ? fail(err, n, "field name is not valid UTF-8") : 0;
}

/* ---- JSON ------------------------------------------------------------------------------------------------ */

/* A JSON string literal starting at s[*i] == '"': returns its decoded value (new reference) or NULL. */
static json_t *lenient_string(const char *s, size_t size, size_t *i) {
    size_t j = *i + 1;
    while (j < size && s[j] != '"') j += (s[j] == '\\') ? 2 : 1;
    if (j >= size) return NULL;
    json_t *v = json_loadb(s + *i, j + 1 - *i, JSON_DECODE_ANY | JSON_ALLOW_NUL, NULL);
    if (v && !json_is_string(v)) {
        json_decref(v);
        v = NULL;
    }
    if (v && memchr(json_string_value(v), 0, json_string_length(v))) {
        json_decref(v);
        v = NULL;
    }
    *i = j + 1;
    return v;
}

static int bare_char(int c) { return isalnum(c) || c == '_' || c == '.' || c == '-' || c == '+'; }

/* The lenient reader of body.h: a flat object whose keys and values may be bare tokens, trailing comma allowed. */
static json_t *lenient_object(const char *s, size_t size) {
    size_t i = 0;
    while (i < size && is_blank((unsigned char)s[i])) i++;
    if (i >= size || s[i] != '{') return NULL;
    i++;
    json_t *obj = json_object();
    if (!obj) return NULL;
    for (;;) {
        while (i < size && is_blank((unsigned char)s[i])) i++;
        if (i >= size) goto bad;
        if (s[i] == '}') {
            i++;
            break;
        }
        /* key */
        char key[256];
        if (s[i] == '"') {
            json_t *k = lenient_string(s, size, &i);
            if (!k || json_string_length(k) == 0 || json_string_length(k) >= sizeof key) {
                json_decref(k);
                goto bad;
            }
            memcpy(key, json_string_value(k), json_string_length(k) + 1);
            json_decref(k);
        } else {
            size_t st = i;
            while (i < size && bare_char((unsigned char)s[i])) i++;
            if (i == st || i - st >= sizeof key) goto bad;
            memcpy(key, s + st, i - st);
            key[i - st] = 0;
        }
        while (i < size && is_blank((unsigned char)s[i])) i++;
        if (i >= size || s[i] != ':') goto bad;
        i++;
        while (i < size && is_blank((unsigned char)s[i])) i++;
        if (i >= size) goto bad;
        json_t *v;
        if (s[i] == '"') {
            v = lenient_string(s, size, &i);
        } else {
            size_t st = i;
            while (i < size && bare_char((unsigned char)s[i])) i++;
            if (i == st) goto bad;
            /* numbers, true/false/null keep their JSON meaning; anything else is a string */
            v = json_loadb(s + st, i - st, JSON_DECODE_ANY, NULL);
            if (!v) v = json_stringn(s + st, i - st);
        }
        if (!v || json_object_size(obj) >= MAX_FIELDS || json_object_set_new(obj, key, v)) goto bad;
        while (i < size && is_blank((unsigned char)s[i])) i++;
        if (i < size && s[i] == ',') {
            i++;
            continue;
        }
        if (i < size && s[i] == '}') {
            i++;
            break;
        }
        goto bad;
    }
    while (i < size && is_blank((unsigned char)s[i])) i++;
    if (i != size) goto bad;
    return obj;
bad:
    json_decref(obj);
    return NULL;
}

static int parse_json(const char *data, size_t size, json_t **out, char *err, size_t n) {
    json_error_t jerr;
    json_t *v = json_loadb(data, size, 0, &jerr);
    if (!v) {
        v = lenient_object(data, size);
        if (!v && strstr(jerr.text, "\\u0000")) {
            fail(err, n, "a JSON string holds a NUL byte (\\u0000)");
            return CVX_SVC_BODY_NUL;
        }
        if (!v) return fail(err, n, "body is not valid JSON (line %d column %d: %s)", jerr.line, jerr.column, jerr.text);
    }
    if (!json_is_object(v)) {
        json_decref(v);
        return fail(err, n, "the JSON body is not an object");
    }
    *out = v;
    return 0;
}

/* ---- application/x-www-form-urlencoded ------------------------------------------------------------------- */

static int hexval(int c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Decodes in place ('+' is a blank; a malformed %XX stays literal, as browsers leave it); returns the new length. */
static size_t url_decode(char *s, size_t len) {
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        if (s[i] == '+') {
            s[o++] = ' ';
        } else if (s[i] == '%' && i + 2 < len && hexval((unsigned char)s[i + 1]) >= 0 &&
                   hexval((unsigned char)s[i + 2]) >= 0) {
            s[o++] = (char)(hexval((unsigned char)s[i + 1]) * 16 + hexval((unsigned char)s[i + 2]));
            i += 2;
        } else {
            s[o++] = s[i];
        }
    }
    return o;
}

static int parse_urlencoded(const char *data, size_t size, json_t **out, char *err, size_t n) {
    json_t *obj = json_object();
    char *buf = malloc(size + 1);
    if (!obj || !buf) {
        json_decref(obj);
        free(buf);
        return fail(err, n, "out of memory");
    }
    memcpy(buf, data, size);
    buf[size] = 0;
    size_t i = 0;
    int rc = 0;
    while (i < size && rc == 0) {
        size_t end = i;
        while (end < size && buf[end] != '&') end++;
        size_t eq = i;
        while (eq < end && buf[eq] != '=') eq++;
        size_t klen = url_decode(buf + i, eq - i);
        size_t vlen = eq < end ? url_decode(buf + eq + 1, end - eq - 1) : 0;
        /* blank pairs (a trailing '&', a newline that curl --data-binary kept) carry nothing */
        int blank = 1;
        for (size_t k = 0; k < klen; k++) blank &= is_blank((unsigned char)buf[i + k]);
        if (!blank) rc = add_string(obj, buf + i, klen, buf + eq + 1, vlen, err, n);
        i = end + 1;
    }
    free(buf);
    if (rc) {
        json_decref(obj);
        return rc;
    }
    *out = obj;
    return 0;
}

/* ---- multipart/form-data --------------------------------------------------------------------------------- */

/* The value of parameter `param` in a header value like `form-data; name="x"` (quoted or token). */
static int header_param(const char *h, size_t hlen, const char *param, char *out, size_t out_size) {
    size_t plen = strlen(param);
    size_t i = 0;
    while (i < hlen) {
        while (i < hlen && h[i] != ';') {
            if (h[i] == '"') { /* skip quoted strings: a ';' inside one separates nothing */
                i++;
                while (i < hlen && h[i] != '"') i += (h[i] == '\\') ? 2 : 1;
            }
            i++;
        }
        if (i >= hlen) break;
        i++;
        while (i < hlen && is_blank((unsigned char)h[i])) i++;
        if (hlen - i > plen && !strncasecmp(h + i, param, plen) && h[i + plen] == '=') {
            i += plen + 1;
            size_t o = 0;
            if (i < hlen && h[i] == '"') {
                i++;
                while (i < hlen && h[i] != '"') {
                    if (h[i] == '\\' && i + 1 < hlen) i++;
                    if (o + 1 >= out_size) return -1;
                    out[o++] = h[i++];
                }
                if (i >= hlen) return -1;
            } else {
                while (i < hlen && h[i] != ';' && !is_blank((unsigned char)h[i])) {
                    if (o + 1 >= out_size) return -1;
                    out[o++] = h[i++];
                }
            }
            out[o] = 0;
            return 1;
        }
    }
    return 0;
}

static const char *find(const char *hay, size_t hay_len, const char *needle, size_t needle_len) {
    return memmem(hay, hay_len, needle, needle_len);
}

static int parse_multipart(const char *content_type, const char *data, size_t size, json_t **out,
                           cvx_svc_body_file *files, int max_files, int *n_files, char *err, size_t n) {
    char boundary[80];
    int r = header_param(content_type, strlen(content_type), "boundary", boundary, sizeof boundary);
    if (r != 1 || !boundary[0]) return fail(err, n, "multipart/form-data body without a usable boundary");
    char delim[84];
    int dlen = snprintf(delim, sizeof delim, "--%s", boundary);
    json_t *obj = json_object();
    if (!obj) return fail(err, n, "out of memory");
    /* the first delimiter may start the body or follow a preamble line */
    const char *p = find(data, size, delim, (size_t)dlen);
    if (!p) goto bad_frame;
    for (;;) {
        p += dlen;
        size_t left = size - (size_t)(p - data);
        if (left >= 2 && p[0] == '-' && p[1] == '-') break; /* close delimiter */
        while (left > 0 && (*p == ' ' || *p == '\t')) p++, left--;
        if (left >= 2 && p[0] == '\r' && p[1] == '\n') p += 2;
        else if (left >= 1 && p[0] == '\n') p += 1;
        else goto bad_frame;
        left = size - (size_t)(p - data);
        /* headers end at the first blank line */
        const char *hend = find(p, left, "\r\n\r\n", 4);
        size_t hsep = 4;
        const char *hend_lf = find(p, left, "\n\n", 2);
        if (!hend || (hend_lf && hend_lf < hend)) hend = hend_lf, hsep = 2;
        if (!hend) goto bad_frame;
        char name[256] = "", fname[256] = "";
        int is_file = 0, has_disp = 0;
        for (const char *h = p; h < hend;) {
            const char *eol = memchr(h, '\n', (size_t)(hend - h));
            if (!eol) eol = hend;
            size_t hl = (size_t)(eol - h);
            if (hl > 0 && h[hl - 1] == '\r') hl--;
            if (hl > 20 && !strncasecmp(h, "content-disposition:", 20)) {
                has_disp = 1;
                if (header_param(h, hl, "name", name, sizeof name) != 1) {
                    json_decref(obj);
                    return fail(err, n, "multipart part without a usable name");
                }
                int fr = header_param(h, hl, "filename", fname, sizeof fname);
                if (fr != 0) is_file = 1;
                if (fr < 0) fname[0] = 0; /* a name too long to keep: the file is still a file */
            }
            h = eol + 1;
        }
        if (!has_disp || !name[0]) {
            json_decref(obj);
            return fail(err, n, "multipart part without Content-Disposition name");
        }
        if (is_file && *n_files >= max_files) {
            json_decref(obj);
            if (max_files > 0)
                return fail(err, n, "field [%s] is a file; this model takes at most %d file input%s", name, max_files,
                            max_files > 1 ? "s" : "");
            return fail(err, n, "field [%s] is a file; this model takes no file inputs", name);
        }
        const char *content = hend + hsep;
        size_t cleft = size - (size_t)(content - data);
        /* the part ends at CRLF (or LF) + delimiter */
        const char *next = find(content, cleft, delim, (size_t)dlen);
        if (!next) goto bad_frame;
        const char *cend = next;
        if (cend > content && cend[-1] == '\n') cend--;
        if (cend > content && cend[-1] == '\r') cend--;
        int ar;
        if (is_file) { /* the bytes stay in the body; the field holds the file's name */
            cvx_svc_body_file *f = &files[(*n_files)++];
            snprintf(f->name, sizeof f->name, "%s", name);
            snprintf(f->filename, sizeof f->filename, "%s", fname);
            f->data = content;
            f->size = (size_t)(cend - content);
            ar = add_string(obj, name, strlen(name), fname, strlen(fname), err, n);
        } else {
            ar = add_string(obj, name, strlen(name), content, (size_t)(cend - content), err, n);
        }
        if (ar) {
            json_decref(obj);
            return ar;
        }
        p = next;
    }
    *out = obj;
    return 0;
bad_frame:
    json_decref(obj);
    return fail(err, n, "malformed multipart/form-data body");
}

/* ---- entry point ----------------------------------------------------------------------------------------- */

static int type_is(const char *ct, const char *type) {
    size_t tl = strlen(type);
    while (*ct == ' ' || *ct == '\t') ct++;
    if (strncasecmp(ct, type, tl)) return 0;
    return ct[tl] == 0 || ct[tl] == ';' || ct[tl] == ' ' || ct[tl] == '\t';
}

int cvx_svc_body_parse(const char *content_type, const char *data, size_t size, json_t **fields, char *err,
                       size_t err_size) {
    int n_files = 0;
    return cvx_svc_body_parse_files(content_type, data, size, fields, NULL, 0, &n_files, err, err_size);
}

int cvx_svc_body_parse_files(const char *content_type, const char *data, size_t size, json_t **fields,
                             cvx_svc_body_file *files, int max_files, int *n_files, char *err, size_t err_size) {
    *fields = NULL;
    *n_files = 0;
    if (err && err_size) err[0] = 0;
    size_t i = 0;
    while (i < size && is_blank((unsigned char)data[i])) i++;
    if (i == size) {
        *fields = json_object();
        return *fields ? 0 : fail(err, err_size, "out of memory");
    }
    if (data[i] == '{') return parse_json(data + i, size - i, fields, err, err_size);
    if (content_type && type_is(content_type, "application/json"))
        return fail(err, err_size, "the JSON body is not an object");
    if (content_type && type_is(content_type, "multipart/form-data"))
        return parse_multipart(content_type, data, size, fields, files, max_files, n_files, err, err_size);
    return parse_urlencoded(data, size, fields, err, err_size);
}

/* ---- coercion -------------------------------------------------------------------------------------------- */

static const json_t *present(const json_t *fields, const char *name) {
    const json_t *v = json_object_get(fields, name);
    if (!v || json_is_null(v)) return NULL;
    if (json_is_string(v)) {
        const char *s = json_string_value(v);
        while (is_blank((unsigned char)*s)) s++;
        if (!*s) return NULL;
    }
    return v;
}

/* A decimal string trimmed of blanks into [start, end). */
static int trimmed(const char *s, char *buf, size_t size) {
    while (is_blank((unsigned char)*s)) s++;
    size_t len = strlen(s);
    while (len && is_blank((unsigned char)s[len - 1])) len--;
    if (len == 0 || len >= size) return -1;
    memcpy(buf, s, len);
    buf[len] = 0;
    return 0;
}

/* [+-] digits [. digits] [(e|E) [+-] digits], at least one digit before the exponent: what JSON and C's decimal
 * notation share. */
static int decimal_number(const char *s) {
    if (*s == '+' || *s == '-') s++;
    int digits = 0;
    while (isdigit((unsigned char)*s)) s++, digits++;
    if (*s == '.') {
        s++;
        while (isdigit((unsigned char)*s)) s++, digits++;
    }
    if (!digits) return 0;
    if (*s == 'e' || *s == 'E') {
        s++;
        if (*s == '+' || *s == '-') s++;
        if (!isdigit((unsigned char)*s)) return 0;
        while (isdigit((unsigned char)*s)) s++;
    }
    return *s == 0;
}

int cvx_svc_field_int(const json_t *fields, const char *name, long long *out) {
    const json_t *v = present(fields, name);
    if (!v) return 0;
    if (json_is_integer(v)) {
        *out = json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) {
        double d = json_real_value(v);
        if (d != floor(d) || d < -9.2e18 || d > 9.2e18) return -1;
        *out = (long long)d;
        return 1;
    }
    if (!json_is_string(v)) return -1;
    char buf[64];
    if (trimmed(json_string_value(v), buf, sizeof buf)) return -1;
    char *end;
    errno = 0;
    long long x = strtoll(buf, &end, 10);
    if (!errno && !*end && end != buf) {
        *out = x;
        return 1;
    }
    /* "50.0" from a form that formats every number as a float; decimal only (strtod would also read hex such as
     * "0x10", and "inf"/"nan") */
    if (!decimal_number(buf)) return -1;
    errno = 0;
    double d = strtod(buf, &end);
    if (errno || *end || end == buf || !isfinite(d) || d != floor(d) || d < -9.2e18 || d > 9.2e18) return -1;
    *out = (long long)d;
    return 1;
}

int cvx_svc_field_u64(const json_t *fields, const char *name, unsigned long long *out) {
    const json_t *v = present(fields, name);
    if (!v) return 0;
    if (json_is_integer(v)) {
        if (json_integer_value(v) < 0) return -1;
        *out = (unsigned long long)json_integer_value(v);
        return 1;
    }
    if (json_is_real(v)) { /* JSON numbers beyond 2^63 arrive as reals: only exact ones are seeds */
        double d = json_real_value(v);
        if (d != floor(d) || d < 0 || d >= 18446744073709551616.0) return -1;
        *out = (unsigned long long)d;
        return 1;
    }
    if (!json_is_string(v)) return -1;
    char buf[64];
    if (trimmed(json_string_value(v), buf, sizeof buf)) return -1;
    if (!isdigit((unsigned char)buf[0])) return -1;
    char *end;
    errno = 0;
    unsigned long long x = strtoull(buf, &end, 10);
    if (errno || *end) return -1;
    *out = x;
    return 1;
}

int cvx_svc_field_double(const json_t *fields, const char *name, double *out) {
    const json_t *v = present(fields, name);
    if (!v) return 0;
    if (json_is_number(v)) {
        *out = json_number_value(v);
        return 1;
    }
    if (!json_is_string(v)) return -1;
    char buf[64];
    if (trimmed(json_string_value(v), buf, sizeof buf)) return -1;
    /* decimal only: strtod would also take "nan", "inf" and hex floats */
    if (!decimal_number(buf)) return -1;
    char *end;
    errno = 0;
    double d = strtod(buf, &end);
    if (errno || *end || end == buf || !isfinite(d)) return -1;
    *out = d;
    return 1;
}

int cvx_svc_field_text(const json_t *fields, const char *name, const char **out, char *buf, size_t buf_size) {
    const json_t *v = json_object_get(fields, name);
    if (!v || json_is_null(v)) return 0;
    if (json_is_string(v)) {
        if (json_string_length(v) == 0) return 0;
        *out = json_string_value(v);
        return 1;
    }
    if (json_is_integer(v)) {
        snprintf(buf, buf_size, "%lld", (long long)json_integer_value(v));
    } else if (json_is_real(v)) {
        snprintf(buf, buf_size, "%.17g", json_real_value(v));
    } else if (json_is_boolean(v)) {
        snprintf(buf, buf_size, "%s", json_is_true(v) ? "true" : "false");
    } else {
        return -1;
    }
    *out = buf;
    return 1;
}
