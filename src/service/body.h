/* Request bodies of the task service (Wiro's API): JSON, multipart/form-data and application/x-www-form-urlencoded,
 * all turned into one flat JSON object of fields, and the coercion of field values (Wiro's clients send numbers as
 * JSON numbers or as strings: "steps": 50, "scale": "6.0", "seed": 123456 all occur).
 *
 * Rules [ours, WIRO_API.md "Framing"]:
 *  - a body whose first non-blank byte is '{' is JSON whatever the content type says (the model page's curl sends
 *    JSON under "Content-Type: multipart/form-data");
 *  - JSON that jansson refuses is retried with a lenient reader for flat objects: bare tokens as values and a trailing
 *    comma (the model page's Task/Detail curl, after the shell strips its inner quotes, sends
 *    `{ "tasktoken": eDcC..., }`);
 *  - multipart parts and urlencoded pairs give string values; file parts are refused unless the caller takes them
 *    (cvx_svc_body_parse_files: an image-to-video model's inputImage); every string must be valid UTF-8 without NUL.
 * Nothing here allocates more than a small multiple of the body size; every error is a message, never a crash. */
#ifndef CVX_SERVICE_BODY_H
#define CVX_SERVICE_BODY_H

#include <stddef.h>

#include <jansson.h>

/* What cvx_svc_body_parse returns for a body refused because a value or name holds a NUL byte (%00, \u0000, a raw
 * NUL in a multipart part): C strings would end there, so the server would use another value than it echoes. */
#define CVX_SVC_BODY_NUL (-2)

/* Parses `data[0..size)` (not NUL-terminated) under `content_type` (may be NULL). On success returns 0 and a new
 * JSON object in *fields (the caller decrefs); on failure returns -1 (CVX_SVC_BODY_NUL for a NUL byte) and a
 * message in err. */
int cvx_svc_body_parse(const char *content_type, const char *data, size_t size, json_t **fields, char *err,
                       size_t err_size);

/* A file part of a multipart body (a part whose Content-Disposition has a filename): its bytes point into the body
 * passed to cvx_svc_body_parse_files, which must outlive it. */
typedef struct {
    char name[256];     /* the part's name */
    char filename[256]; /* as the client sent it ("" when it sent filename="") */
    const char *data;
    size_t size;
} cvx_svc_body_file;

/* cvx_svc_body_parse that also takes file parts: up to max_files of them into files (*n_files), each recorded in
 * fields as its name -> filename (so a client's file name, never its bytes, is what `parameters` echo); a file part
 * beyond max_files is refused ("field [x] is a file; this model takes no file inputs" with max_files 0, "... takes
 * at most N file input(s)" otherwise). Bodies that are not multipart have no file parts. */
int cvx_svc_body_parse_files(const char *content_type, const char *data, size_t size, json_t **fields,
                             cvx_svc_body_file *files, int max_files, int *n_files, char *err, size_t err_size);

/* Field coercion. Each returns 0 when the field is absent (or null, or an empty string), 1 with the value in *out,
 * -1 when it is present but of the wrong kind. */
/* Integers: JSON integers, reals with an integral value, strings holding a decimal integer or an integral decimal
 * number ("50", "+50", "50.0", "5e1"; never hex, "inf" or "nan"); blanks around a string are trimmed. */
int cvx_svc_field_int(const json_t *fields, const char *name, long long *out);
/* Unsigned 64-bit integers (seeds): same forms, 0..2^64-1. */
int cvx_svc_field_u64(const json_t *fields, const char *name, unsigned long long *out);
/* Floats: JSON numbers or strings holding a finite decimal number (blanks around trimmed). */
int cvx_svc_field_double(const json_t *fields, const char *name, double *out);
/* Text: JSON strings as they are; numbers and booleans as their JSON text. *out points into `fields` (or into buf
 * for converted numbers, buf_size >= 64). */
int cvx_svc_field_text(const json_t *fields, const char *name, const char **out, char *buf, size_t buf_size);

#endif
