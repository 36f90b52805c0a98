/* safetensors reader (mmap), sharded weights through *.safetensors.index.json, and a streaming writer.
 *
 * Validation follows huggingface/safetensors (safetensors/src/tensor.rs, SafeTensors::read_metadata and
 * Metadata::validate): header length <= the size limit and <= file size - 8; the header is a JSON object of
 * {name: {dtype, shape, data_offsets}} plus an optional "__metadata__" {str: str}; once the tensors are sorted by
 * data_offsets, each must begin exactly where the previous one ended (starting at 0) and the last must end exactly
 * at the end of the file: the offsets tile the data section with no gap, no overlap and no trailing bytes
 * (the reference's InvalidOffset and MetadataIncompleteBuffer errors). dtype size x numel is computed with overflow
 * checks (ValidationOverflow) and must equal end - begin (TensorInvalidInfo). Unknown fields inside an entry are
 * ignored, as serde does. Zero-size tensors are legal (begin == end).
 *
 * Tensor data is used in place (mmap'd, or the caller's buffer), so views may be misaligned for their dtype:
 * see cvx_st_view in safetensors.h. */
#include "io/safetensors.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

struct cvx_safetensors {
    char *path;                  /* the file path or the caller's label */
    void *map;                   /* the mmap'd file, or NULL for cvx_safetensors_parse */
    size_t map_size;
    const unsigned char *data;   /* the data section: [data_size] bytes after the header */
    uint64_t data_size;
    cvx_st_tensor *tensors;      /* [n] in data-offset order */
    size_t n;
    const cvx_st_tensor **by_name; /* [n] sorted by name, for bsearch */
    char **meta;                 /* [2 * n_meta]: key, value, key, value, ... */
    size_t n_meta;
};

static char *xstrdup(const char *s) {
    size_t n = strlen(s) + 1;
    char *p = malloc(n);
    if (p) memcpy(p, s, n);
    return p;
}

/* cvx_fail with "label: " in front of the message. */
static cvx_status failp(cvx_error *err, cvx_status status, const char *label, const char *fmt, ...)
    __attribute__((format(printf, 4, 5)));
static cvx_status failp(cvx_error *err, cvx_status status, const char *label, const char *fmt, ...) {
    char msg[CVX_ERROR_MESSAGE_MAX];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return cvx_fail(err, status, "%s: %s", label, msg);
}

static const char *json_type_name(const json_t *v) {
    switch (json_typeof(v)) {
    case JSON_OBJECT: return "an object";
    case JSON_ARRAY: return "an array";
    case JSON_STRING: return "a string";
    case JSON_INTEGER: return "an integer";
    case JSON_REAL: return "a real number";
    case JSON_TRUE:
    case JSON_FALSE: return "a boolean";
    case JSON_NULL: return "null";
    }
    return "?";
}

/* jansson reports a duplicate key without naming it (unless it is short); its position is the byte just after
 * the key's closing quote, so the key is recovered from the text: walk back to the opening quote (a quote is
 * the opening one when it is preceded by an even number of backslashes) and decode that JSON string. */
static void duplicate_key_name(const char *text, size_t len, size_t pos, char *out, size_t size) {
    snprintf(out, size, "?");
    if (pos < 2 || pos > len || text[pos - 1] != '"') return;
    for (size_t i = pos - 1; i-- > 0;) {
        if (text[i] != '"') continue;
        size_t bs = 0;
        while (bs < i && text[i - 1 - bs] == '\\') bs++;
        if (bs % 2) continue;
        json_t *s = json_loadb(text + i, pos - i, JSON_DECODE_ANY, NULL);
        if (s && json_is_string(s)) snprintf(out, size, "%s", json_string_value(s));
        json_decref(s);
        return;
    }
}

static cvx_status json_error(cvx_error *err, const char *label, const char *what, const json_error_t *je,
                             const char *text, size_t len) {
    if (json_error_code(je) == json_error_duplicate_key) {
        char key[256];
        duplicate_key_name(text, len, (size_t)je->position, key, sizeof key);
        return failp(err, CVX_ERR_FORMAT, label, "%s has a duplicate key \"%s\" (line %d, column %d, byte %d)", what,
                     key, je->line, je->column, je->position);
    }
    return failp(err, CVX_ERR_FORMAT, label, "%s is not valid JSON: %s (line %d, column %d, byte %d)", what, je->text,
                 je->line, je->column, je->position);
}

/* ---- reader ----------------------------------------------------------------------------------------------- */

void cvx_safetensors_close(cvx_safetensors *st) {
    if (!st) return;
    for (size_t i = 0; i < st->n; i++) free((void *)st->tensors[i].name);
    for (size_t i = 0; i < 2 * st->n_meta; i++) free(st->meta[i]);
    free(st->meta);
    free(st->tensors);
    free(st->by_name);
    if (st->map) munmap(st->map, st->map_size);
    free(st->path);
    free(st);
}

static int cmp_offsets(const void *a, const void *b) {
    const cvx_st_tensor *x = a, *y = b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    if (x->end != y->end) return x->end < y->end ? -1 : 1;
    return strcmp(x->name, y->name);
}

static int cmp_tensor_ptr_name(const void *a, const void *b) {
    return strcmp((*(const cvx_st_tensor *const *)a)->name, (*(const cvx_st_tensor *const *)b)->name);
}

static int cmp_key_tensor_ptr(const void *key, const void *elem) {
    return strcmp((const char *)key, (*(const cvx_st_tensor *const *)elem)->name);
}

static int is_known_unsupported_dtype(const char *s) {
    static const char *const names[] = {"F8_E5M2", "F8_E4M3", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4", "C64"};
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (!strcmp(s, names[i])) return 1;
    return 0;
}

static cvx_status parse_metadata(cvx_safetensors *st, json_t *obj, cvx_error *err) {
    if (json_is_null(obj)) return CVX_OK; /* serde reads null as "no metadata" (an Option) */
    if (!json_is_object(obj))
        return failp(err, CVX_ERR_FORMAT, st->path, "\"__metadata__\" is %s, expected an object of strings",
                     json_type_name(obj));
    size_t n = json_object_size(obj);
    st->meta = calloc(2 * n + 1, sizeof *st->meta);
    if (!st->meta) return failp(err, CVX_ERR_OUT_OF_MEMORY, st->path, "out of memory");
    const char *k;
    json_t *v;
    json_object_foreach(obj, k, v) {
        if (!json_is_string(v))
            return failp(err, CVX_ERR_FORMAT, st->path, "\"__metadata__\" value of \"%s\" is %s, expected a string",
                         k, json_type_name(v));
        char *kk = xstrdup(k), *vv = xstrdup(json_string_value(v));
        st->meta[2 * st->n_meta] = kk;
        st->meta[2 * st->n_meta + 1] = vv;
        st->n_meta++;
        if (!kk || !vv) return failp(err, CVX_ERR_OUT_OF_MEMORY, st->path, "out of memory");
    }
    return CVX_OK;
}

/* A JSON integer in [0, INT64_MAX] into *out; 0 if it is anything else. */
static int json_u63(const json_t *v, uint64_t *out) {
    if (!json_is_integer(v) || json_integer_value(v) < 0) return 0;
    *out = (uint64_t)json_integer_value(v);
    return 1;
}

static cvx_status parse_entry(cvx_safetensors *st, const char *name, json_t *e, cvx_st_tensor *t, cvx_error *err) {
    const char *p = st->path;
    t->file = st->path;
    if (!json_is_object(e))
        return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": entry is %s, expected an object", name,
                     json_type_name(e));

    json_t *dt = json_object_get(e, "dtype");
    if (!dt) return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": missing \"dtype\"", name);
    if (!json_is_string(dt))
        return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": \"dtype\" is %s, expected a string", name,
                     json_type_name(dt));
    const char *dts = json_string_value(dt);
    int d = cvx_dtype_from_name(dts);
    if (d < 0) {
        if (is_known_unsupported_dtype(dts))
            return failp(err, CVX_ERR_UNSUPPORTED, p, "tensor \"%s\": dtype %s is not supported", name, dts);
        return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": unknown dtype \"%s\"", name, dts);
    }
    t->dtype = (cvx_dtype)d;

    json_t *sh = json_object_get(e, "shape");
    if (!sh) return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": missing \"shape\"", name);
    if (!json_is_array(sh))
        return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": \"shape\" is %s, expected an array of integers", name,
                     json_type_name(sh));
    size_t nd = json_array_size(sh);
    if (nd > CVX_MAX_DIMS)
        return failp(err, CVX_ERR_UNSUPPORTED, p, "tensor \"%s\": shape has %zu dims, more than the %d supported",
                     name, nd, CVX_MAX_DIMS);
    t->ndim = (int)nd;
    for (int i = 0; i < CVX_MAX_DIMS; i++) t->shape[i] = 1;
    for (size_t i = 0; i < nd; i++) {
        uint64_t v;
        if (!json_u63(json_array_get(sh, i), &v))
            return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": shape[%zu] is not a non-negative integer", name, i);
        t->shape[i] = (int64_t)v;
    }
    char shs[160];
    cvx_shape_str(t->ndim, t->shape, shs, sizeof shs);

    /* numel x dtype size, with the reference's in-order checked product; the product of the non-zero dims must
     * also fit in int64 so that no later numel/stride computation can overflow. */
    uint64_t nbytes = cvx_dtype_size(t->dtype), nonzero = 1;
    int overflow = 0;
    for (int i = 0; i < t->ndim; i++) {
        uint64_t v = (uint64_t)t->shape[i];
        if (v && nbytes > UINT64_MAX / v) overflow = 1;
        nbytes *= v;
        if (v) {
            if (nonzero > (uint64_t)INT64_MAX / v) overflow = 1;
            else nonzero *= v;
        }
    }
    if (overflow || nbytes > (uint64_t)INT64_MAX)
        return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": shape %s overflows", name, shs);

    json_t *off = json_object_get(e, "data_offsets");
    if (!off) return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": missing \"data_offsets\"", name);
    if (!json_is_array(off) || json_array_size(off) != 2 || !json_u63(json_array_get(off, 0), &t->begin) ||
        !json_u63(json_array_get(off, 1), &t->end))
        return failp(err, CVX_ERR_FORMAT, p,
                     "tensor \"%s\": \"data_offsets\" must be [begin, end], two non-negative integers", name);
    if (t->begin > t->end)
        return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": data_offsets [%llu, %llu] have begin > end", name,
                     (unsigned long long)t->begin, (unsigned long long)t->end);
    if (t->end - t->begin != nbytes)
        return failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": data_offsets [%llu, %llu] are %llu bytes but %s %s needs %llu",
                     name, (unsigned long long)t->begin, (unsigned long long)t->end,
                     (unsigned long long)(t->end - t->begin), cvx_dtype_name(t->dtype), shs,
                     (unsigned long long)nbytes);
    if (t->end > st->data_size)
        return failp(err, CVX_ERR_FORMAT, p,
                     "tensor \"%s\": data_offsets [%llu, %llu] extend past the data section (%llu bytes)", name,
                     (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)st->data_size);
    return CVX_OK;
}

/* Fills st from the file image buf[size]; st->path is set. */
static cvx_status parse_image(cvx_safetensors *st, const unsigned char *buf, size_t size, cvx_error *err) {
    const char *p = st->path;
    if (size < 8)
        return failp(err, CVX_ERR_FORMAT, p, "file is %zu bytes, shorter than the 8-byte header length", size);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | buf[i];
    if (hlen > CVX_SAFETENSORS_MAX_HEADER)
        return failp(err, CVX_ERR_FORMAT, p, "header length %llu exceeds the limit of %u bytes",
                     (unsigned long long)hlen, (unsigned)CVX_SAFETENSORS_MAX_HEADER);
    if (hlen > size - 8)
        return failp(err, CVX_ERR_FORMAT, p, "header length %llu exceeds the file size (%zu bytes after the length)",
                     (unsigned long long)hlen, size - 8);
    const char *text = (const char *)buf + 8;
    st->data = buf + 8 + hlen;
    st->data_size = size - 8 - hlen;

    json_error_t je;
    json_t *root = json_loadb(text, (size_t)hlen, JSON_REJECT_DUPLICATES, &je);
    if (!root) return json_error(err, p, "header", &je, text, (size_t)hlen);
    cvx_status s = CVX_OK;
    if (!json_is_object(root)) {
        s = failp(err, CVX_ERR_FORMAT, p, "header is %s, expected a JSON object", json_type_name(root));
        goto done;
    }

    size_t cap = json_object_size(root);
    st->tensors = calloc(cap ? cap : 1, sizeof *st->tensors);
    st->by_name = calloc(cap ? cap : 1, sizeof *st->by_name);
    if (!st->tensors || !st->by_name) {
        s = failp(err, CVX_ERR_OUT_OF_MEMORY, p, "out of memory");
        goto done;
    }
    const char *key;
    json_t *val;
    json_object_foreach(root, key, val) {
        if (!strcmp(key, "__metadata__")) {
            if ((s = parse_metadata(st, val, err))) goto done;
            continue;
        }
        cvx_st_tensor *t = &st->tensors[st->n];
        if ((s = parse_entry(st, key, val, t, err))) goto done;
        if (!(t->name = xstrdup(key))) {
            s = failp(err, CVX_ERR_OUT_OF_MEMORY, p, "out of memory");
            goto done;
        }
        st->n++;
    }

    /* Tile check, as Metadata::validate: sorted by offsets, each tensor starts where the previous one ended. */
    qsort(st->tensors, st->n, sizeof *st->tensors, cmp_offsets);
    uint64_t pos = 0;
    for (size_t i = 0; i < st->n; i++) {
        const cvx_st_tensor *t = &st->tensors[i];
        if (t->begin < pos)
            s = failp(err, CVX_ERR_FORMAT, p, "tensor \"%s\": data_offsets [%llu, %llu] overlap tensor \"%s\" [%llu, %llu]",
                      t->name, (unsigned long long)t->begin, (unsigned long long)t->end, st->tensors[i - 1].name,
                      (unsigned long long)st->tensors[i - 1].begin, (unsigned long long)st->tensors[i - 1].end);
        else if (t->begin > pos)
            s = failp(err, CVX_ERR_FORMAT, p,
                      "tensor \"%s\": data_offsets [%llu, %llu] leave a gap: bytes [%llu, %llu) of the data section "
                      "belong to no tensor",
                      t->name, (unsigned long long)t->begin, (unsigned long long)t->end, (unsigned long long)pos,
                      (unsigned long long)t->begin);
        if (s) goto done;
        pos = t->end;
    }
    if (pos != st->data_size) {
        s = failp(err, CVX_ERR_FORMAT, p,
                  "the data section is %llu bytes but the tensors cover only %llu: %llu trailing bytes belong to no "
                  "tensor",
                  (unsigned long long)st->data_size, (unsigned long long)pos, (unsigned long long)(st->data_size - pos));
        goto done;
    }
    for (size_t i = 0; i < st->n; i++) {
        st->tensors[i].data = st->data + st->tensors[i].begin;
        st->by_name[i] = &st->tensors[i];
    }
    qsort(st->by_name, st->n, sizeof *st->by_name, cmp_tensor_ptr_name);
done:
    json_decref(root);
    return s;
}

static cvx_safetensors *st_new(const char *label) {
    cvx_safetensors *st = calloc(1, sizeof *st);
    if (!st) return NULL;
    if (!(st->path = xstrdup(label))) {
        free(st);
        return NULL;
    }
    return st;
}

cvx_status cvx_safetensors_parse(cvx_safetensors **out, const void *buf, size_t size, const char *label,
                                 cvx_error *err) {
    *out = NULL;
    if (!label) label = "<memory>";
    if (!buf && size) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: NULL buffer", label);
    cvx_safetensors *st = st_new(label);
    if (!st) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", label);
    cvx_status s = parse_image(st, buf, size, err);
    if (s) {
        cvx_safetensors_close(st);
        return s;
    }
    *out = st;
    return CVX_OK;
}

cvx_status cvx_safetensors_open(cvx_safetensors **out, const char *path, cvx_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cvx_fail(err, errno == ENOENT ? CVX_ERR_NOT_FOUND : CVX_ERR_IO, "%s: cannot open: %s", path,
                                strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0) {
        int e = errno;
        close(fd);
        return cvx_fail(err, CVX_ERR_IO, "%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(sb.st_mode)) {
        close(fd);
        return cvx_fail(err, CVX_ERR_IO, "%s: not a regular file", path);
    }
    size_t size = (size_t)sb.st_size;
    cvx_safetensors *st = st_new(path);
    if (!st) {
        close(fd);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    if (size >= 8) { /* mmap of 0 bytes fails; parse_image reports a short file */
        void *m = mmap(NULL, size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            cvx_safetensors_close(st);
            return cvx_fail(err, CVX_ERR_IO, "%s: cannot mmap %zu bytes: %s", path, size, strerror(e));
        }
        st->map = m;
        st->map_size = size;
    }
    close(fd);
    cvx_status s = parse_image(st, st->map ? st->map : (const void *)"", size, err);
    if (s) {
        cvx_safetensors_close(st);
        return s;
    }
    *out = st;
    return CVX_OK;
}

size_t cvx_safetensors_count(const cvx_safetensors *st) { return st ? st->n : 0; }

const cvx_st_tensor *cvx_safetensors_at(const cvx_safetensors *st, size_t i) {
    return st && i < st->n ? &st->tensors[i] : NULL;
}

const cvx_st_tensor *cvx_safetensors_find(const cvx_safetensors *st, const char *name) {
    if (!st || !name || !st->n) return NULL;
    const cvx_st_tensor *const *r = bsearch(name, st->by_name, st->n, sizeof *st->by_name, cmp_key_tensor_ptr);
    return r ? *r : NULL;
}

const char *cvx_safetensors_metadata(const cvx_safetensors *st, const char *key) {
    if (!st || !key) return NULL;
    for (size_t i = 0; i < st->n_meta; i++)
        if (!strcmp(st->meta[2 * i], key)) return st->meta[2 * i + 1];
    return NULL;
}

const char *cvx_safetensors_path(const cvx_safetensors *st) { return st ? st->path : NULL; }

cvx_tensor cvx_st_view(const cvx_st_tensor *t) {
    return cvx_tensor_view(t->dtype, (void *)(uintptr_t)t->data, t->ndim, t->shape);
}

/* ---- shard index ------------------------------------------------------------------------------------------ */

void cvx_st_index_free(cvx_st_index *idx) {
    if (!idx) return;
    for (size_t i = 0; i < idx->n; i++) free(idx->names[i]);
    for (size_t i = 0; i < idx->n_files; i++) free(idx->files[i]);
    free(idx->names);
    free(idx->file_of);
    free(idx->files);
    free(idx);
}

static int cmp_str_ptr(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

typedef struct {
    const char *name, *file;
} index_pair;

static int cmp_pair_name(const void *a, const void *b) {
    return strcmp(((const index_pair *)a)->name, ((const index_pair *)b)->name);
}

cvx_status cvx_weights_parse_index(cvx_st_index **out, const char *json, size_t len, const char *label,
                                   cvx_error *err) {
    *out = NULL;
    if (!label) label = "<index>";
    json_error_t je;
    json_t *root = json_loadb(json, len, JSON_REJECT_DUPLICATES, &je);
    if (!root) return json_error(err, label, "index", &je, json, len);
    cvx_status s = CVX_OK;
    index_pair *pairs = NULL;
    cvx_st_index *idx = calloc(1, sizeof *idx);
    if (!idx) {
        s = failp(err, CVX_ERR_OUT_OF_MEMORY, label, "out of memory");
        goto done;
    }
    if (!json_is_object(root)) {
        s = failp(err, CVX_ERR_FORMAT, label, "index is %s, expected a JSON object", json_type_name(root));
        goto done;
    }
    json_t *meta = json_object_get(root, "metadata");
    if (meta && !json_is_object(meta)) {
        s = failp(err, CVX_ERR_FORMAT, label, "\"metadata\" is %s, expected an object", json_type_name(meta));
        goto done;
    }
    json_t *map = json_object_get(root, "weight_map");
    if (!map || !json_is_object(map)) {
        s = failp(err, CVX_ERR_FORMAT, label, "\"weight_map\" is %s, expected an object {tensor name: shard file}",
                  map ? json_type_name(map) : "missing");
        goto done;
    }
    size_t n = json_object_size(map);
    pairs = calloc(n ? n : 1, sizeof *pairs);
    idx->names = calloc(n ? n : 1, sizeof *idx->names);
    idx->file_of = calloc(n ? n : 1, sizeof *idx->file_of);
    idx->files = calloc(n ? n : 1, sizeof *idx->files);
    if (!pairs || !idx->names || !idx->file_of || !idx->files) {
        s = failp(err, CVX_ERR_OUT_OF_MEMORY, label, "out of memory");
        goto done;
    }
    const char *key;
    json_t *val;
    size_t k = 0;
    json_object_foreach(map, key, val) {
        if (!json_is_string(val)) {
            s = failp(err, CVX_ERR_FORMAT, label, "weight_map: tensor \"%s\" is mapped to %s, expected a file name",
                      key, json_type_name(val));
            goto done;
        }
        const char *f = json_string_value(val);
        /* Shards live next to the index: a path could reach any file on the machine. */
        if (!*f || strchr(f, '/') || !strcmp(f, ".") || !strcmp(f, "..")) {
            s = failp(err, CVX_ERR_FORMAT, label,
                      "weight_map: tensor \"%s\" is mapped to \"%s\", which is not a file name in the index's folder",
                      key, f);
            goto done;
        }
        pairs[k].name = key;
        pairs[k].file = f;
        k++;
    }
    /* Distinct shard files, sorted. */
    size_t nf = 0;
    for (size_t i = 0; i < n; i++) {
        size_t j = 0;
        while (j < nf && strcmp(idx->files[j], pairs[i].file)) j++;
        if (j < nf) continue;
        if (!(idx->files[nf] = xstrdup(pairs[i].file))) {
            s = failp(err, CVX_ERR_OUT_OF_MEMORY, label, "out of memory");
            goto done;
        }
        idx->n_files = ++nf;
    }
    qsort(idx->files, nf, sizeof *idx->files, cmp_str_ptr);
    qsort(pairs, n, sizeof *pairs, cmp_pair_name);
    for (size_t i = 0; i < n; i++) {
        char *const *f = bsearch(&pairs[i].file, idx->files, nf, sizeof *idx->files, cmp_str_ptr);
        idx->file_of[i] = (size_t)(f - idx->files);
        if (!(idx->names[i] = xstrdup(pairs[i].name))) {
            s = failp(err, CVX_ERR_OUT_OF_MEMORY, label, "out of memory");
            goto done;
        }
        idx->n = i + 1;
    }
done:
    free(pairs);
    json_decref(root);
    if (s) {
        cvx_st_index_free(idx);
        return s;
    }
    *out = idx;
    return CVX_OK;
}

/* ---- weights: one file or shards -------------------------------------------------------------------------- */

struct cvx_weights {
    char *path;
    cvx_safetensors **files;
    size_t n_files;
    const cvx_st_tensor **sorted; /* [n] by name */
    size_t n;
    uint64_t nbytes;
};

void cvx_weights_close(cvx_weights *w) {
    if (!w) return;
    for (size_t i = 0; i < w->n_files; i++) cvx_safetensors_close(w->files[i]);
    free(w->files);
    free(w->sorted);
    free(w->path);
    free(w);
}

static int ends_with(const char *s, const char *suffix) {
    size_t a = strlen(s), b = strlen(suffix);
    return a >= b && !strcmp(s + a - b, suffix);
}

/* Reads a whole (small) file into a malloc'd buffer. */
static cvx_status read_small_file(const char *path, size_t limit, char **out, size_t *len, cvx_error *err) {
    *out = NULL;
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return cvx_fail(err, errno == ENOENT ? CVX_ERR_NOT_FOUND : CVX_ERR_IO, "%s: cannot open: %s", path,
                                strerror(errno));
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return cvx_fail(err, CVX_ERR_IO, "%s: not a readable regular file", path);
    }
    if ((uint64_t)sb.st_size > limit) {
        close(fd);
        return cvx_fail(err, CVX_ERR_FORMAT, "%s: %lld bytes, more than the limit of %zu", path,
                        (long long)sb.st_size, limit);
    }
    size_t size = (size_t)sb.st_size, got = 0;
    char *buf = malloc(size + 1);
    if (!buf) {
        close(fd);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    while (got < size) {
        ssize_t r = read(fd, buf + got, size - got);
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            int e = r < 0 ? errno : EIO;
            free(buf);
            close(fd);
            return cvx_fail(err, CVX_ERR_IO, "%s: read failed: %s", path, strerror(e));
        }
        got += (size_t)r;
    }
    close(fd);
    buf[size] = '\0';
    *out = buf;
    *len = size;
    return CVX_OK;
}

static cvx_status weights_finish(cvx_weights *w, cvx_error *err) {
    for (size_t i = 0; i < w->n; i++) w->nbytes += w->sorted[i]->end - w->sorted[i]->begin;
    return CVX_OK;
}

static cvx_status weights_single(cvx_weights *w, const char *file, cvx_error *err) {
    w->files = calloc(1, sizeof *w->files);
    if (!w->files) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
    cvx_status s = cvx_safetensors_open(&w->files[0], file, err);
    if (s) return s;
    w->n_files = 1;
    cvx_safetensors *st = w->files[0];
    w->sorted = calloc(st->n ? st->n : 1, sizeof *w->sorted);
    if (!w->sorted) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", file);
    memcpy(w->sorted, st->by_name, st->n * sizeof *w->sorted);
    w->n = st->n;
    return weights_finish(w, err);
}

static cvx_status weights_index(cvx_weights *w, const char *index_path, cvx_error *err) {
    char *text = NULL;
    size_t len = 0;
    cvx_status s = read_small_file(index_path, CVX_SAFETENSORS_MAX_HEADER, &text, &len, err);
    if (s) return s;
    cvx_st_index *idx = NULL;
    s = cvx_weights_parse_index(&idx, text, len, index_path, err);
    free(text);
    if (s) return s;

    /* The shards are in the index's folder. */
    const char *slash = strrchr(index_path, '/');
    size_t dirlen = slash ? (size_t)(slash - index_path) + 1 : 0;
    char *path = NULL;
    w->files = calloc(idx->n_files ? idx->n_files : 1, sizeof *w->files);
    w->sorted = calloc(idx->n ? idx->n : 1, sizeof *w->sorted);
    if (!w->files || !w->sorted) {
        s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", index_path);
        goto done;
    }
    for (size_t f = 0; f < idx->n_files; f++) {
        size_t need = dirlen + strlen(idx->files[f]) + 1;
        free(path);
        if (!(path = malloc(need))) {
            s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", index_path);
            goto done;
        }
        memcpy(path, index_path, dirlen);
        strcpy(path + dirlen, idx->files[f]);
        s = cvx_safetensors_open(&w->files[f], path, err);
        if (s) {
            size_t first = 0;
            while (idx->file_of[first] != f) first++;
            cvx_error_prefix(err, "%s: shard \"%s\" (holding tensor \"%s\"): ", index_path, idx->files[f],
                             idx->names[first]);
            goto done;
        }
        w->n_files = f + 1;
    }
    /* Every weight_map entry is in its shard. */
    for (size_t i = 0; i < idx->n; i++) {
        const cvx_safetensors *st = w->files[idx->file_of[i]];
        const cvx_st_tensor *t = cvx_safetensors_find(st, idx->names[i]);
        if (!t) {
            s = cvx_fail(err, CVX_ERR_FORMAT, "%s: tensor \"%s\" is mapped to shard \"%s\", but %s does not contain it",
                         index_path, idx->names[i], idx->files[idx->file_of[i]], st->path);
            goto done;
        }
        w->sorted[i] = t;
    }
    w->n = idx->n;
    /* Every shard tensor is in the weight_map, mapped to that shard (so no tensor is in two shards). */
    for (size_t f = 0; f < w->n_files; f++) {
        const cvx_safetensors *st = w->files[f];
        for (size_t j = 0; j < st->n; j++) {
            const char *name = st->tensors[j].name;
            char *const *hit = bsearch(&name, idx->names, idx->n, sizeof *idx->names, cmp_str_ptr);
            if (!hit) {
                s = cvx_fail(err, CVX_ERR_FORMAT, "%s: tensor \"%s\" is not in the weight_map of %s", st->path, name,
                             index_path);
                goto done;
            }
            size_t mf = idx->file_of[hit - idx->names];
            if (mf != f) {
                s = cvx_fail(err, CVX_ERR_FORMAT, "%s: tensor \"%s\" is in both %s and %s (the weight_map names %s)",
                             index_path, name, st->path, w->files[mf]->path, idx->files[mf]);
                goto done;
            }
        }
    }
    s = weights_finish(w, err);
done:
    free(path);
    cvx_st_index_free(idx);
    return s;
}

/* Finds exactly one file in dir ending with suffix. Returns 1 (found, *out malloc'd), 0 (none) or an error. */
static cvx_status find_one(const char *dir, const char *suffix, char **out, int *found, cvx_error *err) {
    *out = NULL;
    *found = 0;
    DIR *d = opendir(dir);
    if (!d) return cvx_fail(err, CVX_ERR_IO, "%s: cannot list the folder: %s", dir, strerror(errno));
    char *first = NULL, *second = NULL;
    int count = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.' || !ends_with(de->d_name, suffix)) continue;
        count++;
        if (count == 1) first = xstrdup(de->d_name);
        else if (count == 2) second = xstrdup(de->d_name);
    }
    closedir(d);
    cvx_status s = CVX_OK;
    if (count > 1) {
        s = cvx_fail(err, CVX_ERR_FORMAT, "%s: %d \"*%s\" files (e.g. %s, %s): expected exactly one", dir, count,
                     suffix, first ? first : "?", second ? second : "?");
    } else if (count == 1) {
        if (!first) {
            s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
        } else {
            size_t need = strlen(dir) + strlen(first) + 2;
            if ((*out = malloc(need))) {
                snprintf(*out, need, "%s/%s", dir, first);
                *found = 1;
            } else {
                s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", dir);
            }
        }
    }
    free(first);
    free(second);
    return s;
}

cvx_status cvx_weights_open(cvx_weights **out, const char *path, cvx_error *err) {
    *out = NULL;
    struct stat sb;
    if (stat(path, &sb) != 0)
        return cvx_fail(err, errno == ENOENT ? CVX_ERR_NOT_FOUND : CVX_ERR_IO, "%s: %s", path, strerror(errno));
    cvx_weights *w = calloc(1, sizeof *w);
    if (!w || !(w->path = xstrdup(path))) {
        free(w);
        return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    }
    cvx_status s;
    if (S_ISDIR(sb.st_mode)) {
        char *file = NULL;
        int found = 0;
        s = find_one(path, ".safetensors.index.json", &file, &found, err);
        if (!s && found) {
            s = weights_index(w, file, err);
        } else if (!s) {
            s = find_one(path, ".safetensors", &file, &found, err);
            if (!s && found) s = weights_single(w, file, err);
            else if (!s)
                s = cvx_fail(err, CVX_ERR_NOT_FOUND,
                             "%s: no \"*.safetensors.index.json\" and no \"*.safetensors\" file in the folder", path);
        }
        free(file);
    } else if (ends_with(path, ".json")) {
        s = weights_index(w, path, err);
    } else {
        s = weights_single(w, path, err);
    }
    if (s) {
        cvx_weights_close(w);
        return s;
    }
    *out = w;
    return CVX_OK;
}

size_t cvx_weights_count(const cvx_weights *w) { return w ? w->n : 0; }

const cvx_st_tensor *cvx_weights_at(const cvx_weights *w, size_t i) { return w && i < w->n ? w->sorted[i] : NULL; }

const cvx_st_tensor *cvx_weights_find(const cvx_weights *w, const char *name) {
    if (!w || !name || !w->n) return NULL;
    const cvx_st_tensor *const *r = bsearch(name, w->sorted, w->n, sizeof *w->sorted, cmp_key_tensor_ptr);
    return r ? *r : NULL;
}

uint64_t cvx_weights_nbytes(const cvx_weights *w) { return w ? w->nbytes : 0; }

cvx_status cvx_weights_get(const cvx_weights *w, const char *name, int ndim, const int64_t *shape, cvx_tensor *out,
                           cvx_error *err) {
    const cvx_st_tensor *t = cvx_weights_find(w, name);
    if (!t)
        return cvx_fail(err, CVX_ERR_NOT_FOUND, "tensor \"%s\" not found in %s", name ? name : "(null)",
                        w ? w->path : "(no weights)");
    if (!cvx_dtype_is_float(t->dtype))
        return cvx_fail(err, CVX_ERR_SHAPE, "%s: tensor \"%s\" has dtype %s, expected a float type", t->file, name,
                        cvx_dtype_name(t->dtype));
    int same = t->ndim == ndim;
    for (int i = 0; same && i < ndim; i++) same = t->shape[i] == shape[i];
    if (!same) {
        char have[160], want[160];
        cvx_shape_str(t->ndim, t->shape, have, sizeof have);
        cvx_shape_str(ndim < 0 ? 0 : ndim > CVX_MAX_DIMS ? CVX_MAX_DIMS : ndim, shape, want, sizeof want);
        return cvx_fail(err, CVX_ERR_SHAPE, "%s: tensor \"%s\" has shape %s but the config implies %s", t->file, name,
                        have, want);
    }
    if (out) *out = cvx_st_view(t);
    return CVX_OK;
}

/* ---- writer ----------------------------------------------------------------------------------------------- */

static int write_all(int fd, const void *buf, size_t n) {
    const unsigned char *p = buf;
    while (n) {
        ssize_t w = write(fd, p, n > ((size_t)1 << 30) ? ((size_t)1 << 30) : n);
        if (w < 0 && errno == EINTR) continue;
        if (w < 0) return -1;
        if (w == 0) {
            errno = EIO;
            return -1;
        }
        p += w;
        n -= (size_t)w;
    }
    return 0;
}

static int cmp_entry_ptr_name(const void *a, const void *b) {
    return strcmp((*(const cvx_st_entry *const *)a)->name, (*(const cvx_st_entry *const *)b)->name);
}

/* Builds the padded header text; entries already validated. */
static cvx_status build_header(const char *path, const cvx_st_entry *entries, size_t n, const uint64_t *nbytes,
                               const char *const *metadata, char **out, size_t *len, cvx_error *err) {
    *out = NULL;
    cvx_status s = CVX_OK;
    json_t *root = json_object(), *meta = json_object();
    if (!root || !meta || json_object_set_new(root, "__metadata__", meta)) {
        if (!root) json_decref(meta);
        s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    json_object_set_new(meta, "format", json_string("pt"));
    for (size_t i = 0; metadata && metadata[i]; i += 2) {
        if (!metadata[i + 1]) {
            s = cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: metadata key \"%s\" has no value", path, metadata[i]);
            goto done;
        }
        json_t *v = json_string(metadata[i + 1]);
        if (!v || json_object_set_new(meta, metadata[i], v)) {
            s = cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: metadata \"%s\" is not valid UTF-8", path, metadata[i]);
            goto done;
        }
    }
    uint64_t off = 0;
    for (size_t i = 0; i < n; i++) {
        const cvx_st_entry *e = &entries[i];
        json_t *t = json_object(), *shape = json_array(), *offs = json_array();
        if (!t || !shape || !offs) {
            json_decref(t), json_decref(shape), json_decref(offs);
            s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
            goto done;
        }
        json_object_set_new(t, "dtype", json_string(cvx_dtype_name(e->dtype)));
        for (int d = 0; d < e->ndim; d++) json_array_append_new(shape, json_integer(e->shape[d]));
        json_object_set_new(t, "shape", shape);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + nbytes[i])));
        json_object_set_new(t, "data_offsets", offs);
        off += nbytes[i];
        if (json_object_set_new(root, e->name, t)) {
            s = cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: tensor name \"%s\" is not valid UTF-8", path, e->name);
            goto done;
        }
    }
    char *text = json_dumps(root, JSON_COMPACT);
    if (!text) {
        s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    size_t tl = strlen(text), padded = (tl + 7) / 8 * 8;
    char *buf = malloc(padded + 1);
    if (!buf) {
        free(text);
        s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    memcpy(buf, text, tl);
    memset(buf + tl, ' ', padded - tl);
    buf[padded] = '\0';
    free(text);
    *out = buf;
    *len = padded;
done:
    json_decref(root);
    return s;
}

static cvx_status validate_entries(const char *path, const cvx_st_entry *entries, size_t n, cvx_st_fill_fn fill,
                                   uint64_t *nbytes, cvx_error *err) {
    for (size_t i = 0; i < n; i++) {
        const cvx_st_entry *e = &entries[i];
        if (!e->name)
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: entry %zu has no name", path, i);
        if (!strcmp(e->name, "__metadata__"))
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: \"__metadata__\" is reserved, not a tensor name", path);
        if ((unsigned)e->dtype >= CVX_DTYPE_COUNT)
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\": invalid dtype %d", path, e->name,
                            (int)e->dtype);
        if (e->ndim < 0 || e->ndim > CVX_MAX_DIMS)
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\": %d dims (0..%d supported)", path,
                            e->name, e->ndim, CVX_MAX_DIMS);
        uint64_t b = cvx_dtype_size(e->dtype);
        for (int d = 0; d < e->ndim; d++) {
            if (e->shape[d] < 0)
                return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\": negative dim %lld", path, e->name,
                                (long long)e->shape[d]);
            uint64_t v = (uint64_t)e->shape[d];
            if (v && b > (uint64_t)INT64_MAX / v)
                return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\": shape overflows", path, e->name);
            b *= v;
        }
        if (b > SIZE_MAX)
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" is too large", path, e->name);
        nbytes[i] = b;
        if (!e->data && b && !fill)
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" has no data and there is no fill function",
                            path, e->name);
    }
    uint64_t total = 0;
    for (size_t i = 0; i < n; i++) {
        if (total > (uint64_t)INT64_MAX - nbytes[i])
            return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: total size overflows", path);
        total += nbytes[i];
    }
    /* Duplicate names would silently shadow each other in every reader's dict. */
    const cvx_st_entry **sorted = malloc((n ? n : 1) * sizeof *sorted);
    if (!sorted) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    for (size_t i = 0; i < n; i++) sorted[i] = &entries[i];
    qsort(sorted, n, sizeof *sorted, cmp_entry_ptr_name);
    for (size_t i = 1; i < n; i++)
        if (!strcmp(sorted[i - 1]->name, sorted[i]->name)) {
            cvx_status s = cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "%s: tensor \"%s\" is listed twice", path,
                                    sorted[i]->name);
            free(sorted);
            return s;
        }
    free(sorted);
    return CVX_OK;
}

cvx_status cvx_safetensors_write(const char *path, const cvx_st_entry *entries, size_t n, const char *const *metadata,
                                 cvx_st_fill_fn fill, void *user_data, cvx_error *err) {
    if (!path || (n && !entries)) return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "safetensors write: bad arguments");
    uint64_t *nbytes = calloc(n ? n : 1, sizeof *nbytes);
    if (!nbytes) return cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
    char *header = NULL, *tmp = NULL;
    unsigned char *buf = NULL;
    int fd = -1, created = 0;
    size_t hlen = 0;
    cvx_status s = validate_entries(path, entries, n, fill, nbytes, err);
    if (!s) s = build_header(path, entries, n, nbytes, metadata, &header, &hlen, err);
    if (s) goto done;

    /* One buffer, the size of the largest tensor that fill() produces: a 13 GB file never sits in memory. */
    size_t bufsize = 0;
    for (size_t i = 0; i < n; i++)
        if (!entries[i].data && nbytes[i] > bufsize) bufsize = (size_t)nbytes[i];
    if (bufsize && !(buf = malloc(bufsize))) {
        s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: cannot allocate %zu bytes for the largest tensor", path, bufsize);
        goto done;
    }
    size_t tl = strlen(path) + 5;
    if (!(tmp = malloc(tl))) {
        s = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "%s: out of memory", path);
        goto done;
    }
    snprintf(tmp, tl, "%s.tmp", path);
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        s = cvx_fail(err, CVX_ERR_IO, "%s: cannot create %s: %s", path, tmp, strerror(errno));
        goto done;
    }
    created = 1;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));
    if (write_all(fd, len8, 8) || write_all(fd, header, hlen)) {
        s = cvx_fail(err, CVX_ERR_IO, "%s: write failed: %s", path, strerror(errno));
        goto done;
    }
    for (size_t i = 0; i < n; i++) {
        const void *src = entries[i].data;
        if (!nbytes[i]) continue;
        if (!src) {
            cvx_error_clear(err);
            s = fill(user_data, i, buf, (size_t)nbytes[i], err);
            if (s) {
                if (err && err->message[0]) cvx_error_prefix(err, "%s: tensor \"%s\": ", path, entries[i].name);
                else s = cvx_fail(err, s, "%s: tensor \"%s\": fill failed", path, entries[i].name);
                goto done;
            }
            src = buf;
        }
        if (write_all(fd, src, (size_t)nbytes[i])) {
            s = cvx_fail(err, CVX_ERR_IO, "%s: write failed at tensor \"%s\": %s", path, entries[i].name,
                         strerror(errno));
            goto done;
        }
    }
    if (fsync(fd) != 0) {
        s = cvx_fail(err, CVX_ERR_IO, "%s: fsync failed: %s", path, strerror(errno));
        goto done;
    }
    int rc = close(fd);
    fd = -1;
    if (rc != 0) {
        s = cvx_fail(err, CVX_ERR_IO, "%s: close failed: %s", path, strerror(errno));
        goto done;
    }
    if (rename(tmp, path) != 0) {
        s = cvx_fail(err, CVX_ERR_IO, "%s: cannot rename %s into place: %s", path, tmp, strerror(errno));
        goto done;
    }
    /* Make the rename itself durable. */
    {
        const char *slash = strrchr(path, '/');
        char dir[4096];
        if (!slash) snprintf(dir, sizeof dir, ".");
        else if (slash == path) snprintf(dir, sizeof dir, "/");
        else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
        int dfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dfd >= 0) {
            (void)fsync(dfd);
            close(dfd);
        }
    }
done:
    if (fd >= 0) close(fd);
    if (s && created) unlink(tmp);
    free(tmp);
    free(buf);
    free(header);
    free(nbytes);
    return s;
}
