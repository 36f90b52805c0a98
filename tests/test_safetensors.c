/* safetensors reader / sharded weights / writer: round trips, every rejection with a crafted file (status and
 * message naming the file and the problem), sharded folders with an index, and the reference's own files
 * (tests/data/safetensors, and ../shared/golden when present). */
#include <errno.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "core/half.h"
#include "io/safetensors.h"
#include "testlib.h"

static char tmp[512];

static const char *tpath(const char *name) {
    static char buf[8][1024];
    static int k;
    char *b = buf[k++ % 8];
    snprintf(b, sizeof buf[0], "%s/%s", tmp, name);
    return b;
}

static int exists(const char *path) {
    struct stat sb;
    return stat(path, &sb) == 0;
}

/* Writes a raw file: an 8-byte length (hlen, or strlen(header) when hlen < 0), the header, then data_len bytes
 * of data (i * 7 + 1). */
static const char *raw_hlen(const char *name, const char *header, long long hlen, size_t data_len) {
    const char *path = tpath(name);
    FILE *f = fopen(path, "wb");
    if (!f) return path;
    uint64_t n = hlen < 0 ? (uint64_t)strlen(header) : (uint64_t)hlen;
    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(n >> (8 * i));
    fwrite(len8, 1, 8, f);
    fwrite(header, 1, strlen(header), f);
    for (size_t i = 0; i < data_len; i++) fputc((int)(i * 7 + 1) & 255, f);
    fclose(f);
    return path;
}

static const char *raw(const char *name, const char *header, size_t data_len) {
    return raw_hlen(name, header, -1, data_len);
}

static void write_text(const char *path, const char *text) {
    FILE *f = fopen(path, "w");
    if (!f) return;
    fputs(text, f);
    fclose(f);
}

/* Opening `path` fails with `status` and a message that starts with the path and contains each of the given
 * fragments. */
#define EXPECT_REJECT(path, status, ...) expect_reject(__LINE__, path, status, (const char *[]){__VA_ARGS__, NULL})
static void expect_reject(int line, const char *path, cvx_status status, const char **frags) {
    cvx_safetensors *st = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    cvx_status s = cvx_safetensors_open(&st, path, &err);
    CHECK_MSG(s == status, "line %d: status %s, expected %s (%s)", line, cvx_status_name(s), cvx_status_name(status),
              err.message);
    CHECK_MSG(st == NULL, "line %d: object returned on failure", line);
    CHECK_MSG(!strncmp(err.message, path, strlen(path)), "line %d: message does not start with the path: %s", line,
              err.message);
    for (; *frags; frags++)
        CHECK_MSG(strstr(err.message, *frags) != NULL, "line %d: message lacks \"%s\": %s", line, *frags, err.message);
    cvx_safetensors_close(st);
}

#define EXPECT_WEIGHTS_REJECT(path, status, ...) \
    expect_weights_reject(__LINE__, path, status, (const char *[]){__VA_ARGS__, NULL})
static void expect_weights_reject(int line, const char *path, cvx_status status, const char **frags) {
    cvx_weights *w = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    cvx_status s = cvx_weights_open(&w, path, &err);
    CHECK_MSG(s == status, "line %d: status %s, expected %s (%s)", line, cvx_status_name(s), cvx_status_name(status),
              err.message);
    CHECK_MSG(w == NULL, "line %d: object returned on failure", line);
    for (; *frags; frags++)
        CHECK_MSG(strstr(err.message, *frags) != NULL, "line %d: message lacks \"%s\": %s", line, *frags, err.message);
    cvx_weights_close(w);
}

/* ---- round trip ----------------------------------------------------------------------------------------- */

static unsigned char pattern(size_t index, size_t k) { return (unsigned char)(index * 31 + k * 7 + 3); }

static cvx_status fill_pattern(void *user_data, size_t index, void *dst, size_t nbytes, cvx_error *err) {
    int *calls = user_data;
    (*calls)++;
    for (size_t k = 0; k < nbytes; k++) ((unsigned char *)dst)[k] = pattern(index, k);
    return CVX_OK;
}

static void test_round_trip(void) {
    /* Every dtype; a scalar, a zero-size and a 5-D tensor; an odd-sized U8 first so that later tensors are
     * misaligned in the file; some entries given by pointer, the rest produced by fill(). */
    enum { N = 16 };
    cvx_st_entry e[N];
    memset(e, 0, sizeof e);
    static const char *names[N] = {"odd.u8", "a.f32", "b.f16", "c.bf16", "d.f64", "e.i64", "f.i32", "g.i16",
                                   "h.i8",   "i.u16", "j.u32", "k.u64",  "l.bool", "scalar", "zero", "five.d"};
    static const cvx_dtype dts[N] = {CVX_DTYPE_U8,  CVX_DTYPE_F32, CVX_DTYPE_F16,  CVX_DTYPE_BF16,
                                     CVX_DTYPE_F64, CVX_DTYPE_I64, CVX_DTYPE_I32,  CVX_DTYPE_I16,
                                     CVX_DTYPE_I8,  CVX_DTYPE_U16, CVX_DTYPE_U32,  CVX_DTYPE_U64,
                                     CVX_DTYPE_BOOL, CVX_DTYPE_F32, CVX_DTYPE_F16, CVX_DTYPE_BF16};
    unsigned char *bufs[N] = {0};
    for (int i = 0; i < N; i++) {
        e[i].name = names[i];
        e[i].dtype = dts[i];
        e[i].ndim = 2;
        e[i].shape[0] = 3;
        e[i].shape[1] = i + 1;
    }
    e[0].ndim = 1, e[0].shape[0] = 3;
    e[13].ndim = 0;
    e[14].ndim = 3, e[14].shape[0] = 2, e[14].shape[1] = 0, e[14].shape[2] = 5;
    e[15].ndim = 5;
    for (int d = 0; d < 5; d++) e[15].shape[d] = d % 2 ? 2 : 3;
    for (int i = 0; i < N; i += 2) { /* even entries by pointer */
        cvx_tensor v = cvx_tensor_view(e[i].dtype, NULL, e[i].ndim, e[i].shape);
        size_t nb = cvx_tensor_nbytes(&v);
        bufs[i] = malloc(nb ? nb : 1);
        for (size_t k = 0; k < nb; k++) bufs[i][k] = pattern((size_t)i, k);
        e[i].data = bufs[i];
    }
    const char *meta[] = {"producer", "test_safetensors", "note", "ünïcødé", NULL};
    int calls = 0;
    cvx_error err;
    cvx_error_clear(&err);
    const char *path = tpath("rt.safetensors");
    cvx_status s = cvx_safetensors_write(path, e, N, meta, fill_pattern, &calls, &err);
    CHECK_MSG(s == CVX_OK, "write: %s", err.message);
    CHECK(calls == 8); /* once per odd (fill-produced) entry */
    CHECK(!exists(tpath("rt.safetensors.tmp")));

    /* Layout: header length a multiple of 8, padded with spaces, data right after. */
    FILE *f = fopen(path, "rb");
    unsigned char len8[8] = {0};
    CHECK(f && fread(len8, 1, 8, f) == 8);
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    CHECK(hlen % 8 == 0);
    char *hdr = calloc(1, hlen + 1);
    CHECK(f && fread(hdr, 1, hlen, f) == hlen);
    CHECK(hdr[0] == '{');
    CHECK(strstr(hdr, "\"__metadata__\":{\"format\":\"pt\"") != NULL);
    if (f) fclose(f);
    free(hdr);

    cvx_safetensors *st = NULL;
    s = cvx_safetensors_open(&st, path, &err);
    CHECK_MSG(s == CVX_OK, "open: %s", err.message);
    if (st) {
        CHECK(cvx_safetensors_count(st) == N);
        CHECK(!strcmp(cvx_safetensors_path(st), path));
        CHECK(cvx_safetensors_metadata(st, "format") && !strcmp(cvx_safetensors_metadata(st, "format"), "pt"));
        CHECK(cvx_safetensors_metadata(st, "note") && !strcmp(cvx_safetensors_metadata(st, "note"), "ünïcødé"));
        CHECK(cvx_safetensors_metadata(st, "missing") == NULL);
        uint64_t pos = 0;
        for (size_t i = 0; i < N; i++) {
            const cvx_st_tensor *t = cvx_safetensors_at(st, i);
            CHECK(t->begin == pos);
            pos = t->end;
        }
        CHECK(cvx_safetensors_at(st, N) == NULL);
        for (int i = 0; i < N; i++) {
            const cvx_st_tensor *t = cvx_safetensors_find(st, names[i]);
            CHECK_MSG(t != NULL, "%s missing", names[i]);
            if (!t) continue;
            CHECK(t == cvx_safetensors_at(st, (size_t)i)); /* given order kept (zero-size sorts at its offset) */
            CHECK(t->dtype == e[i].dtype && t->ndim == e[i].ndim);
            for (int d = 0; d < t->ndim; d++) CHECK(t->shape[d] == e[i].shape[d]);
            cvx_tensor v = cvx_st_view(t);
            size_t nb = cvx_tensor_nbytes(&v);
            CHECK(nb == t->end - t->begin);
            int same = 1;
            for (size_t k = 0; k < nb; k++) same &= ((const unsigned char *)t->data)[k] == pattern((size_t)i, k);
            CHECK_MSG(same, "%s bytes differ", names[i]);
            CHECK(!strcmp(t->file, path));
        }
        CHECK(cvx_safetensors_find(st, "nope") == NULL);
        /* Misaligned f16/f32/bf16 views (odd.u8 is 3 bytes) convert through memcpy-safe loads. */
        const cvx_st_tensor *b = cvx_safetensors_find(st, "b.f16");
        if (b) {
            CHECK(((uintptr_t)b->data & 1) || ((uintptr_t)cvx_safetensors_find(st, "a.f32")->data & 3));
            cvx_tensor v = cvx_st_view(b);
            int64_t n = cvx_tensor_numel(&v);
            float *out = malloc((size_t)n * sizeof *out);
            CHECK(cvx_tensor_to_f32(&v, out) == 0);
            int ok = 1;
            for (int64_t k = 0; k < n; k++) {
                uint16_t h = (uint16_t)(pattern(2, (size_t)(2 * k)) | pattern(2, (size_t)(2 * k + 1)) << 8);
                float want = cvx_f16_to_f32(h);
                ok &= (out[k] == want) || (out[k] != out[k] && want != want);
            }
            CHECK(ok);
            free(out);
        }
        cvx_safetensors_close(st);
    }

    /* cvx_weights on the single file. */
    cvx_weights *w = NULL;
    s = cvx_weights_open(&w, path, &err);
    CHECK_MSG(s == CVX_OK, "weights: %s", err.message);
    if (w) {
        CHECK(cvx_weights_count(w) == N);
        for (size_t i = 1; i < N; i++) CHECK(strcmp(cvx_weights_at(w, i - 1)->name, cvx_weights_at(w, i)->name) < 0);
        uint64_t total = 0;
        for (int i = 0; i < N; i++) {
            cvx_tensor v = cvx_tensor_view(e[i].dtype, NULL, e[i].ndim, e[i].shape);
            total += cvx_tensor_nbytes(&v);
        }
        CHECK(cvx_weights_nbytes(w) == total);
        cvx_tensor t;
        int64_t want[2] = {3, 2};
        CHECK(cvx_weights_get(w, "a.f32", 2, want, &t, &err) == CVX_OK && t.dtype == CVX_DTYPE_F32);
        int64_t bad[2] = {4, 4};
        CHECK(cvx_weights_get(w, "a.f32", 2, bad, &t, &err) == CVX_ERR_SHAPE);
        CHECK_MSG(strstr(err.message, "tensor \"a.f32\" has shape [3, 2] but the config implies [4, 4]"), "%s",
                  err.message);
        CHECK(cvx_weights_get(w, "a.f32", 1, bad, &t, &err) == CVX_ERR_SHAPE);
        CHECK(cvx_weights_get(w, "e.i64", 2, want, &t, &err) == CVX_ERR_SHAPE);
        CHECK_MSG(strstr(err.message, "tensor \"e.i64\"") && strstr(err.message, "I64"), "%s", err.message);
        CHECK(cvx_weights_get(w, "a.b", 2, want, &t, &err) == CVX_ERR_NOT_FOUND);
        CHECK_MSG(strstr(err.message, "tensor \"a.b\" not found in ") && strstr(err.message, path), "%s", err.message);
        cvx_weights_close(w);
    }

    /* Same bytes through cvx_safetensors_parse on a buffer. */
    FILE *g = fopen(path, "rb");
    fseek(g, 0, SEEK_END);
    long size = ftell(g);
    fseek(g, 0, SEEK_SET);
    unsigned char *img = malloc((size_t)size);
    CHECK(fread(img, 1, (size_t)size, g) == (size_t)size);
    fclose(g);
    s = cvx_safetensors_parse(&st, img, (size_t)size, "mem", &err);
    CHECK(s == CVX_OK && cvx_safetensors_count(st) == N);
    if (st) CHECK(cvx_safetensors_find(st, "scalar")->data == img + 8 + hlen + cvx_safetensors_find(st, "scalar")->begin);
    cvx_safetensors_close(st);
    s = cvx_safetensors_parse(&st, img, 5, "mem", &err);
    CHECK(s == CVX_ERR_FORMAT && !strncmp(err.message, "mem: ", 5));
    free(img);

    /* Empty file (no tensors) round trips too. */
    s = cvx_safetensors_write(tpath("empty.safetensors"), NULL, 0, NULL, NULL, NULL, &err);
    CHECK_MSG(s == CVX_OK, "%s", err.message);
    s = cvx_safetensors_open(&st, tpath("empty.safetensors"), &err);
    CHECK(s == CVX_OK && cvx_safetensors_count(st) == 0 && cvx_safetensors_find(st, "x") == NULL);
    cvx_safetensors_close(st);

    for (int i = 0; i < N; i++) free(bufs[i]);
}

/* ---- writer errors -------------------------------------------------------------------------------------- */

static cvx_status fill_fail(void *user_data, size_t index, void *dst, size_t nbytes, cvx_error *err) {
    if (index == 1) return cvx_fail(err, CVX_ERR_CANCELLED, "stopped by the test");
    memset(dst, 0, nbytes);
    return CVX_OK;
}

static void test_writer_errors(void) {
    cvx_error err;
    float d[4] = {1, 2, 3, 4};
    cvx_st_entry e[2] = {{.name = "x", .dtype = CVX_DTYPE_F32, .ndim = 1, .shape = {4}, .data = d},
                         {.name = "y", .dtype = CVX_DTYPE_F32, .ndim = 1, .shape = {4}, .data = NULL}};
    const char *path = tpath("w.safetensors");

    /* A failing fill: the error names the file and tensor, and neither the file nor the .tmp remains. */
    cvx_status s = cvx_safetensors_write(path, e, 2, NULL, fill_fail, NULL, &err);
    CHECK(s == CVX_ERR_CANCELLED);
    CHECK_MSG(strstr(err.message, path) && strstr(err.message, "tensor \"y\"") && strstr(err.message, "stopped"), "%s",
              err.message);
    CHECK(!exists(path) && !exists(tpath("w.safetensors.tmp")));

    /* No data and no fill. */
    s = cvx_safetensors_write(path, e, 2, NULL, NULL, NULL, &err);
    CHECK(s == CVX_ERR_INVALID_ARGUMENT && strstr(err.message, "\"y\""));

    /* Duplicate names, reserved name, bad dims. */
    cvx_st_entry dup[2] = {e[0], e[0]};
    s = cvx_safetensors_write(path, dup, 2, NULL, NULL, NULL, &err);
    CHECK(s == CVX_ERR_INVALID_ARGUMENT && strstr(err.message, "\"x\" is listed twice"));
    cvx_st_entry bad = e[0];
    bad.name = "__metadata__";
    CHECK(cvx_safetensors_write(path, &bad, 1, NULL, NULL, NULL, &err) == CVX_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.ndim = CVX_MAX_DIMS + 1;
    CHECK(cvx_safetensors_write(path, &bad, 1, NULL, NULL, NULL, &err) == CVX_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.shape[0] = -1;
    CHECK(cvx_safetensors_write(path, &bad, 1, NULL, NULL, NULL, &err) == CVX_ERR_INVALID_ARGUMENT);
    bad = e[0];
    bad.name = "\xff\xfe";
    CHECK(cvx_safetensors_write(path, &bad, 1, NULL, NULL, NULL, &err) == CVX_ERR_INVALID_ARGUMENT);
    const char *odd_meta[] = {"k", NULL};
    CHECK(cvx_safetensors_write(path, e, 1, odd_meta, NULL, NULL, &err) == CVX_ERR_INVALID_ARGUMENT);
    CHECK(!exists(path) && !exists(tpath("w.safetensors.tmp")));

    /* A folder that does not exist. */
    const char *nodir = tpath("no/such/dir/w.safetensors");
    s = cvx_safetensors_write(nodir, e, 1, NULL, NULL, NULL, &err);
    CHECK(s == CVX_ERR_IO && strstr(err.message, nodir));

    /* A write that runs out of space halfway (file size limit, like ENOSPC): error, no half file. */
    struct rlimit old, lim;
    if (getrlimit(RLIMIT_FSIZE, &old) == 0) {
        void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
        lim = old;
        lim.rlim_cur = 4096;
        if (setrlimit(RLIMIT_FSIZE, &lim) == 0) {
            cvx_st_entry big = {.name = "big", .dtype = CVX_DTYPE_U8, .ndim = 1, .shape = {1 << 16}, .data = NULL};
            s = cvx_safetensors_write(path, &big, 1, NULL, fill_fail, NULL, &err);
            setrlimit(RLIMIT_FSIZE, &old);
            CHECK_MSG(s == CVX_ERR_IO && strstr(err.message, path) && strstr(err.message, "big"), "%s: %s",
                      cvx_status_name(s), err.message);
            CHECK(!exists(path) && !exists(tpath("w.safetensors.tmp")));
        }
        signal(SIGXFSZ, prev);
    }

    /* An existing file is replaced only by a complete one. */
    CHECK(cvx_safetensors_write(path, e, 1, NULL, NULL, NULL, &err) == CVX_OK);
    CHECK(cvx_safetensors_write(path, e, 2, NULL, fill_fail, NULL, &err) == CVX_ERR_CANCELLED);
    cvx_safetensors *st = NULL;
    CHECK(cvx_safetensors_open(&st, path, &err) == CVX_OK && cvx_safetensors_count(st) == 1);
    cvx_safetensors_close(st);
}

/* ---- rejections ----------------------------------------------------------------------------------------- */

static void test_rejections(void) {
    const char *p;
    char big[600];

    p = tpath("short.safetensors");
    write_text(p, "abc");
    EXPECT_REJECT(p, CVX_ERR_FORMAT, "3 bytes", "shorter than the 8-byte header length");
    p = tpath("zero.safetensors");
    write_text(p, "");
    EXPECT_REJECT(p, CVX_ERR_FORMAT, "0 bytes");

    p = raw_hlen("hlen_big.safetensors", "{}", 1000, 0);
    EXPECT_REJECT(p, CVX_ERR_FORMAT, "header length 1000 exceeds the file size");
    p = raw_hlen("hlen_huge.safetensors", "{}", (long long)CVX_SAFETENSORS_MAX_HEADER + 1, 0);
    EXPECT_REJECT(p, CVX_ERR_FORMAT, "exceeds the limit");
    p = raw_hlen("hlen_max.safetensors", "{}", -2 /* all ones */, 0);
    {
        FILE *f = fopen(p, "r+b");
        unsigned char ff[8] = {255, 255, 255, 255, 255, 255, 255, 255};
        fwrite(ff, 1, 8, f);
        fclose(f);
    }
    EXPECT_REJECT(p, CVX_ERR_FORMAT, "header length 18446744073709551615");

    EXPECT_REJECT(raw("bad_json.safetensors", "{\"x\": {\"dtype\": \"F32\",, }}", 0), CVX_ERR_FORMAT,
                  "not valid JSON", "line 1");
    EXPECT_REJECT(raw("utf8.safetensors", "{\"\xff\": 1}", 0), CVX_ERR_FORMAT, "not valid JSON");
    EXPECT_REJECT(raw("array.safetensors", "[1, 2]", 0), CVX_ERR_FORMAT, "header is an array, expected a JSON object");
    EXPECT_REJECT(raw("trailing_json.safetensors", "{} {}", 0), CVX_ERR_FORMAT, "not valid JSON");
    EXPECT_REJECT(raw("entry.safetensors", "{\"x\": 5}", 0), CVX_ERR_FORMAT, "tensor \"x\"", "entry is an integer");
    EXPECT_REJECT(raw("nodtype.safetensors", "{\"x\": {\"shape\": [1], \"data_offsets\": [0, 4]}}", 4), CVX_ERR_FORMAT,
                  "tensor \"x\"", "missing \"dtype\"");
    EXPECT_REJECT(raw("dtype_num.safetensors", "{\"x\": {\"dtype\": 3, \"shape\": [1], \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "\"dtype\" is an integer");
    EXPECT_REJECT(raw("dtype_unk.safetensors", "{\"x\": {\"dtype\": \"F7\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "unknown dtype \"F7\"");
    EXPECT_REJECT(raw("dtype_f8.safetensors", "{\"x\": {\"dtype\": \"F8_E4M3\", \"shape\": [1], \"data_offsets\": [0, 1]}}", 1),
                  CVX_ERR_UNSUPPORTED, "tensor \"x\"", "F8_E4M3 is not supported");
    EXPECT_REJECT(raw("noshape.safetensors", "{\"x\": {\"dtype\": \"F32\", \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "missing \"shape\"");
    EXPECT_REJECT(raw("shape_obj.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": {}, \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "\"shape\" is an object");
    EXPECT_REJECT(raw("shape_neg.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [2, -1], \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "shape[1] is not a non-negative integer");
    EXPECT_REJECT(raw("shape_real.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [1.0], \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "shape[0]");
    EXPECT_REJECT(raw("shape_str.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [\"1\"], \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "shape[0]");
    {
        char h[512], dims[128] = "1", want[64];
        for (int d = 1; d <= CVX_MAX_DIMS; d++) strcat(dims, ",1");
        snprintf(h, sizeof h, "{\"x\": {\"dtype\": \"F32\", \"shape\": [%s], \"data_offsets\": [0, 4]}}", dims);
        snprintf(want, sizeof want, "%d dims, more than the %d supported", CVX_MAX_DIMS + 1, CVX_MAX_DIMS);
        EXPECT_REJECT(raw("shape_toomany.safetensors", h, 4), CVX_ERR_UNSUPPORTED, "tensor \"x\"", want);
        /* exactly CVX_MAX_DIMS dims is fine */
        strcpy(dims, "1");
        for (int d = 1; d < CVX_MAX_DIMS; d++) strcat(dims, ",1");
        snprintf(h, sizeof h, "{\"x\": {\"dtype\": \"F32\", \"shape\": [%s], \"data_offsets\": [0, 4]}}", dims);
        cvx_safetensors *st = NULL;
        cvx_error err;
        CHECK(cvx_safetensors_open(&st, raw("shape_max.safetensors", h, 4), &err) == CVX_OK &&
              cvx_safetensors_at(st, 0)->ndim == CVX_MAX_DIMS);
        cvx_safetensors_close(st);
    }
    EXPECT_REJECT(raw("shape_ovf.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [4294967296, 4294967296, 16], \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "shape [4294967296, 4294967296, 16] overflows");
    EXPECT_REJECT(raw("shape_ovf2.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [0, 4294967296, 4294967296], \"data_offsets\": [0, 0]}}", 0),
                  CVX_ERR_FORMAT, "tensor \"x\"", "overflows");
    EXPECT_REJECT(raw("shape_ovf3.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [9223372036854775807], \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "overflows");
    EXPECT_REJECT(raw("nooff.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [1]}}", 4), CVX_ERR_FORMAT,
                  "tensor \"x\"", "missing \"data_offsets\"");
    EXPECT_REJECT(raw("off3.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4, 8]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "[begin, end]");
    EXPECT_REJECT(raw("offneg.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [-4, 0]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "[begin, end]");
    EXPECT_REJECT(raw("offstr.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": \"0-4\"}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "[begin, end]");
    EXPECT_REJECT(raw("offrev.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [0], \"data_offsets\": [4, 0]}}", 4),
                  CVX_ERR_FORMAT, "tensor \"x\"", "data_offsets [4, 0] have begin > end");
    EXPECT_REJECT(raw("nbytes.safetensors", "{\"x.weight\": {\"dtype\": \"F32\", \"shape\": [2, 2], \"data_offsets\": [0, 12]}}", 12),
                  CVX_ERR_FORMAT, "tensor \"x.weight\": data_offsets [0, 12] are 12 bytes but F32 [2, 2] needs 16");
    EXPECT_REJECT(raw("past.safetensors", "{\"x\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 6),
                  CVX_ERR_FORMAT, "tensor \"x\"", "extend past the data section (6 bytes)");
    EXPECT_REJECT(raw("overlap.safetensors",
                      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [4, 12]}}", 12),
                  CVX_ERR_FORMAT, "tensor \"b\"", "overlap tensor \"a\"");
    EXPECT_REJECT(raw("same.safetensors",
                      "{\"a\": {\"dtype\": \"F32\", \"shape\": [2], \"data_offsets\": [0, 8]},"
                      " \"b\": {\"dtype\": \"I32\", \"shape\": [2], \"data_offsets\": [0, 8]}}", 8),
                  CVX_ERR_FORMAT, "overlap");
    EXPECT_REJECT(raw("gap.safetensors",
                      "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [8, 12]}}", 12),
                  CVX_ERR_FORMAT, "tensor \"b\"", "gap", "[4, 8)");
    EXPECT_REJECT(raw("gap0.safetensors", "{\"b\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8),
                  CVX_ERR_FORMAT, "tensor \"b\"", "gap", "[0, 4)");
    EXPECT_REJECT(raw("trailing.safetensors", "{\"a\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 7),
                  CVX_ERR_FORMAT, "3 trailing bytes");
    EXPECT_REJECT(raw("trailing0.safetensors", "{}", 1), CVX_ERR_FORMAT, "1 trailing bytes");

    EXPECT_REJECT(raw("dup.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"x\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8),
                  CVX_ERR_FORMAT, "duplicate key \"x\"");
    EXPECT_REJECT(raw("dup_long.safetensors",
                      "{\"transformer_blocks.0.attn1.to_q.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      " \"transformer_blocks.0.attn1.to_q.weight\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8),
                  CVX_ERR_FORMAT, "duplicate key \"transformer_blocks.0.attn1.to_q.weight\"");
    EXPECT_REJECT(raw("dup_esc.safetensors",
                      "{\"a\\\"b\\\\\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 4]},"
                      "\"a\\\"b\\\\\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [4, 8]}}", 8),
                  CVX_ERR_FORMAT, "duplicate key \"a\"b\\\"");
    EXPECT_REJECT(raw("dup_field.safetensors",
                      "{\"x\": {\"dtype\": \"F32\", \"dtype\": \"F16\", \"shape\": [1], \"data_offsets\": [0, 4]}}", 4),
                  CVX_ERR_FORMAT, "duplicate key \"dtype\"");
    EXPECT_REJECT(raw("meta_arr.safetensors", "{\"__metadata__\": [\"pt\"]}", 0), CVX_ERR_FORMAT,
                  "\"__metadata__\" is an array");
    EXPECT_REJECT(raw("meta_val.safetensors", "{\"__metadata__\": {\"format\": \"pt\", \"n\": 3}}", 0), CVX_ERR_FORMAT,
                  "\"__metadata__\" value of \"n\" is an integer");

    /* A long tensor name is still named (the message is truncated at the buffer size, never overflowed). */
    memset(big, 'n', sizeof big);
    big[sizeof big - 1] = '\0';
    char hdr[1024];
    snprintf(hdr, sizeof hdr, "{\"%s\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [0, 2]}}", big);
    EXPECT_REJECT(raw("longname.safetensors", hdr, 2), CVX_ERR_FORMAT, "tensor \"nnnn");

    /* Missing file, folder instead of file. */
    EXPECT_REJECT(tpath("does_not_exist.safetensors"), CVX_ERR_NOT_FOUND, "cannot open");
    EXPECT_REJECT(tmp, CVX_ERR_IO, "not a regular file");
}

static void test_legal_oddities(void) {
    cvx_error err;
    cvx_safetensors *st = NULL;
    /* Zero-size tensors anywhere (also several at one offset and at the very end), unknown extra fields,
     * unpadded header, misaligned data, a header with leading whitespace, tensors listed out of offset order. */
    const char *p = raw("odd_ok.safetensors",
                        " {\"z2\": {\"dtype\": \"F64\", \"shape\": [0, 3], \"data_offsets\": [5, 5]},"
                        "\"u\": {\"dtype\": \"U8\", \"shape\": [1], \"data_offsets\": [0, 1], \"extra\": [1, 2]},"
                        "\"f\": {\"dtype\": \"F32\", \"shape\": [1], \"data_offsets\": [1, 5]},"
                        "\"z1\": {\"dtype\": \"F16\", \"shape\": [0], \"data_offsets\": [1, 1]},"
                        "\"z0\": {\"dtype\": \"BF16\", \"shape\": [2, 0], \"data_offsets\": [0, 0]},"
                        "\"__metadata__\": null}",
                        5);
    cvx_status s = cvx_safetensors_open(&st, p, &err);
    CHECK_MSG(s == CVX_OK, "%s", err.message);
    if (st) {
        CHECK(cvx_safetensors_count(st) == 5);
        const char *order[5] = {"z0", "u", "z1", "f", "z2"};
        for (int i = 0; i < 5; i++) CHECK(!strcmp(cvx_safetensors_at(st, (size_t)i)->name, order[i]));
        const cvx_st_tensor *f = cvx_safetensors_find(st, "f");
        cvx_tensor v = cvx_st_view(f);
        float x;
        CHECK(cvx_tensor_to_f32(&v, &x) == 0);
        unsigned char want[4] = {8, 15, 22, 29}; /* data bytes 1..4 of the pattern i*7+1 */
        float wx;
        memcpy(&wx, want, 4);
        CHECK(memcmp(&x, &wx, 4) == 0);
        CHECK(cvx_tensor_get(&v, 0) == (double)wx);
        cvx_safetensors_close(st);
    }
}

/* ---- sharded weights ------------------------------------------------------------------------------------ */

static void write_shard(const char *path, const char *const *names, int n, const char *extra_meta) {
    cvx_st_entry e[8];
    static float vals[8][6];
    for (int i = 0; i < n; i++) {
        for (int k = 0; k < 6; k++) vals[i][k] = (float)(i * 10 + k);
        e[i] = (cvx_st_entry){.name = names[i], .dtype = CVX_DTYPE_F32, .ndim = 2, .shape = {2, 3}, .data = vals[i]};
    }
    const char *meta[] = {"note", extra_meta, NULL};
    cvx_error err;
    cvx_status s = cvx_safetensors_write(path, e, (size_t)n, extra_meta ? meta : NULL, NULL, NULL, &err);
    CHECK_MSG(s == CVX_OK, "%s", err.message);
}

static void test_sharded(void) {
    char dir[1024], p[1200];
    cvx_error err;

    /* A good folder: 2 shards + index. */
    snprintf(dir, sizeof dir, "%s/sharded", tmp);
    mkdir(dir, 0755);
    const char *s1[] = {"layer.0.w", "emb"}, *s2[] = {"layer.1.w"};
    snprintf(p, sizeof p, "%s/model-00001-of-00002.safetensors", dir);
    write_shard(p, s1, 2, NULL);
    snprintf(p, sizeof p, "%s/model-00002-of-00002.safetensors", dir);
    write_shard(p, s2, 1, "shard 2");
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, "{\"metadata\": {\"total_size\": 72}, \"weight_map\": {"
                  "\"layer.1.w\": \"model-00002-of-00002.safetensors\","
                  "\"emb\": \"model-00001-of-00002.safetensors\","
                  "\"layer.0.w\": \"model-00001-of-00002.safetensors\"}}");
    cvx_weights *w = NULL;
    cvx_status s = cvx_weights_open(&w, dir, &err);
    CHECK_MSG(s == CVX_OK, "%s", err.message);
    if (w) {
        CHECK(cvx_weights_count(w) == 3);
        CHECK(cvx_weights_nbytes(w) == 72);
        CHECK(!strcmp(cvx_weights_at(w, 0)->name, "emb") && !strcmp(cvx_weights_at(w, 2)->name, "layer.1.w"));
        const cvx_st_tensor *t = cvx_weights_find(w, "layer.1.w");
        CHECK(t && strstr(t->file, "model-00002-of-00002.safetensors"));
        cvx_tensor v;
        int64_t sh[2] = {2, 3};
        CHECK(cvx_weights_get(w, "layer.1.w", 2, sh, &v, &err) == CVX_OK);
        float got[6];
        CHECK(cvx_tensor_to_f32(&v, got) == 0 && got[0] == 0.0f && got[5] == 5.0f);
        CHECK(cvx_weights_get(w, "emb", 2, sh, &v, &err) == CVX_OK);
        CHECK(cvx_tensor_to_f32(&v, got) == 0 && got[5] == 15.0f);
        CHECK(cvx_weights_find(w, "nope") == NULL && cvx_weights_at(w, 3) == NULL);
        cvx_weights_close(w);
    }
    /* The index path itself works too. */
    s = cvx_weights_open(&w, p, &err);
    CHECK_MSG(s == CVX_OK && cvx_weights_count(w) == 3, "%s", err.message);
    cvx_weights_close(w);

    /* Variants, each in its own folder, starting from the same shards. */
    struct {
        const char *name, *index, *extra_shard2; /* extra tensor written into shard 2 */
        cvx_status status;
        const char *frag1, *frag2;
    } cases[] = {
        {"missing_in_shard",
         "{\"weight_map\": {\"layer.0.w\": \"a.safetensors\", \"emb\": \"a.safetensors\", \"layer.1.w\": \"b.safetensors\","
         " \"ghost\": \"b.safetensors\"}}",
         NULL, CVX_ERR_FORMAT, "tensor \"ghost\" is mapped to shard \"b.safetensors\"", "does not contain it"},
        {"extra_in_shard",
         "{\"weight_map\": {\"layer.0.w\": \"a.safetensors\", \"emb\": \"a.safetensors\", \"layer.1.w\": \"b.safetensors\"}}",
         "stray", CVX_ERR_FORMAT, "b.safetensors: tensor \"stray\" is not in the weight_map", "index.json"},
        {"in_both",
         "{\"weight_map\": {\"layer.0.w\": \"a.safetensors\", \"emb\": \"a.safetensors\", \"layer.1.w\": \"b.safetensors\"}}",
         "emb", CVX_ERR_FORMAT, "tensor \"emb\" is in both", "a.safetensors"},
        {"missing_shard",
         "{\"weight_map\": {\"layer.0.w\": \"a.safetensors\", \"emb\": \"a.safetensors\", \"layer.1.w\": \"c.safetensors\"}}",
         NULL, CVX_ERR_NOT_FOUND, "shard \"c.safetensors\" (holding tensor \"layer.1.w\")", "cannot open"},
        {"path_escape",
         "{\"weight_map\": {\"layer.0.w\": \"../sharded/a.safetensors\"}}",
         NULL, CVX_ERR_FORMAT, "tensor \"layer.0.w\" is mapped to \"../sharded/a.safetensors\"", "not a file name"},
        {"no_map", "{\"metadata\": {}}", NULL, CVX_ERR_FORMAT, "\"weight_map\" is missing", "index.json"},
        {"map_value", "{\"weight_map\": {\"emb\": 1}}", NULL, CVX_ERR_FORMAT, "tensor \"emb\" is mapped to an integer",
         "index.json"},
        {"bad_json", "{\"weight_map\": {\"emb\": \"a.safetensors\",}}", NULL, CVX_ERR_FORMAT, "not valid JSON",
         "index.json"},
        {"dup_json", "{\"weight_map\": {\"emb\": \"a.safetensors\", \"emb\": \"b.safetensors\"}}", NULL, CVX_ERR_FORMAT,
         "duplicate key \"emb\"", "index.json"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        snprintf(dir, sizeof dir, "%s/%s", tmp, cases[c].name);
        mkdir(dir, 0755);
        snprintf(p, sizeof p, "%s/a.safetensors", dir);
        write_shard(p, s1, 2, NULL);
        const char *b2[] = {"layer.1.w", cases[c].extra_shard2};
        snprintf(p, sizeof p, "%s/b.safetensors", dir);
        write_shard(p, b2, cases[c].extra_shard2 ? 2 : 1, NULL);
        snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
        write_text(p, cases[c].index);
        EXPECT_WEIGHTS_REJECT(dir, cases[c].status, cases[c].frag1, cases[c].frag2);
    }

    /* Folder forms: two indexes, none at all, several files without an index, one file without an index. */
    snprintf(dir, sizeof dir, "%s/two_index", tmp);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/a.safetensors.index.json", dir);
    write_text(p, "{\"weight_map\": {}}");
    snprintf(p, sizeof p, "%s/b.safetensors.index.json", dir);
    write_text(p, "{\"weight_map\": {}}");
    EXPECT_WEIGHTS_REJECT(dir, CVX_ERR_FORMAT, "2 \"*.safetensors.index.json\" files", "expected exactly one");

    snprintf(dir, sizeof dir, "%s/empty_dir", tmp);
    mkdir(dir, 0755);
    EXPECT_WEIGHTS_REJECT(dir, CVX_ERR_NOT_FOUND, "no \"*.safetensors.index.json\" and no \"*.safetensors\"");

    snprintf(dir, sizeof dir, "%s/two_files", tmp);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/a.safetensors", dir);
    write_shard(p, s1, 2, NULL);
    snprintf(p, sizeof p, "%s/b.safetensors", dir);
    write_shard(p, s2, 1, NULL);
    EXPECT_WEIGHTS_REJECT(dir, CVX_ERR_FORMAT, "2 \"*.safetensors\" files", "expected exactly one");

    snprintf(dir, sizeof dir, "%s/one_file", tmp);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/diffusion_pytorch_model.safetensors", dir);
    write_shard(p, s1, 2, NULL);
    s = cvx_weights_open(&w, dir, &err);
    CHECK_MSG(s == CVX_OK && cvx_weights_count(w) == 2, "%s", err.message);
    cvx_weights_close(w);

    /* An empty index is an empty set of weights. */
    snprintf(dir, sizeof dir, "%s/empty_index", tmp);
    mkdir(dir, 0755);
    snprintf(p, sizeof p, "%s/model.safetensors.index.json", dir);
    write_text(p, "{\"weight_map\": {}}");
    s = cvx_weights_open(&w, dir, &err);
    CHECK_MSG(s == CVX_OK && cvx_weights_count(w) == 0 && cvx_weights_find(w, "x") == NULL, "%s", err.message);
    cvx_weights_close(w);

    EXPECT_WEIGHTS_REJECT(tpath("nothing_here"), CVX_ERR_NOT_FOUND, "nothing_here");

    /* The index parser on its own. */
    cvx_st_index *idx = NULL;
    const char *json = "{\"weight_map\": {\"b\": \"s2\", \"a\": \"s1\", \"c\": \"s2\"}}";
    s = cvx_weights_parse_index(&idx, json, strlen(json), "idx", &err);
    CHECK(s == CVX_OK && idx && idx->n == 3 && idx->n_files == 2);
    if (idx) {
        CHECK(!strcmp(idx->names[0], "a") && !strcmp(idx->files[idx->file_of[0]], "s1"));
        CHECK(!strcmp(idx->names[2], "c") && !strcmp(idx->files[idx->file_of[2]], "s2"));
    }
    cvx_st_index_free(idx);
    s = cvx_weights_parse_index(&idx, "[]", 2, "idx", &err);
    CHECK(s == CVX_ERR_FORMAT && !strncmp(err.message, "idx: ", 5) && idx == NULL);
}

/* ---- the reference's own files -------------------------------------------------------------------------- */

/* Every tensor of `lowp` equals the f32 tensor of the same name in `ref` rounded to its dtype. */
static void check_rounded(const char *what, cvx_weights *lowp, cvx_weights *ref) {
    size_t checked = 0, bad = 0;
    for (size_t i = 0; i < cvx_weights_count(lowp); i++) {
        const cvx_st_tensor *t = cvx_weights_at(lowp, i);
        const cvx_st_tensor *r = cvx_weights_find(ref, t->name);
        CHECK_MSG(r != NULL, "%s: %s missing in the f32 weights", what, t->name);
        if (!r || r->dtype != CVX_DTYPE_F32) continue;
        cvx_tensor vt = cvx_st_view(t), vr = cvx_st_view(r);
        CHECK(cvx_tensor_same_shape(&vt, &vr));
        int64_t n = cvx_tensor_numel(&vt);
        for (int64_t k = 0; k < n; k++) {
            float x;
            uint16_t h;
            memcpy(&x, (const char *)r->data + 4 * k, 4);
            memcpy(&h, (const char *)t->data + 2 * k, 2);
            uint16_t want = t->dtype == CVX_DTYPE_F16 ? cvx_f32_to_f16(x) : cvx_f32_to_bf16(x);
            bad += h != want;
        }
        checked++;
    }
    CHECK_MSG(bad == 0, "%s: %zu elements differ from the rounded f32 weights", what, bad);
    CHECK(checked == cvx_weights_count(lowp));
}

/* a: the sharded F16 text_encoder folder, b: the single-file BF16 one (same weights). */
static void test_reference_files(const char *a, const char *b) {
    char c[1024];
    cvx_weights *w16 = NULL, *wb = NULL;
    cvx_error err;
    cvx_status s = cvx_weights_open(&w16, a, &err);
    CHECK_MSG(s == CVX_OK, "%s", err.message);
    s = cvx_weights_open(&wb, b, &err);
    CHECK_MSG(s == CVX_OK, "%s", err.message);
    if (w16 && wb) {
        CHECK(cvx_weights_count(w16) == cvx_weights_count(wb) && cvx_weights_count(w16) > 0);
        CHECK(cvx_weights_nbytes(w16) == cvx_weights_nbytes(wb));
        const cvx_st_tensor *t = cvx_weights_find(w16, "shared.weight");
        CHECK(t && t->dtype == CVX_DTYPE_F16 && t->ndim == 2);
        CHECK(cvx_weights_find(w16, "encoder.embed_tokens.weight") == NULL); /* dropped by save_pretrained */
        for (size_t i = 0; i < cvx_weights_count(w16); i++) {
            const cvx_st_tensor *x = cvx_weights_at(w16, i), *y = cvx_weights_find(wb, x->name);
            CHECK(x->dtype == CVX_DTYPE_F16 && y && y->dtype == CVX_DTYPE_BF16 && x->ndim == y->ndim);
            CHECK(((uintptr_t)x->data & 1) == 0); /* the reference aligns its data */
        }
        /* The HF shard metadata. */
        const cvx_st_tensor *y = cvx_weights_find(wb, "shared.weight");
        cvx_safetensors *st = NULL;
        if (y && cvx_safetensors_open(&st, y->file, &err) == CVX_OK) {
            const char *fmt = cvx_safetensors_metadata(st, "format");
            CHECK(fmt && !strcmp(fmt, "pt"));
        }
        cvx_safetensors_close(st);
    }
    /* With the shared golden data, the f16/bf16 weights are the f32 ones rounded (PyTorch's rounding). */
    const char *shared = cvx_test_shared_golden();
    if (shared && w16 && wb) {
        snprintf(c, sizeof c, "%s/t5/tiny_a_fp32/text_encoder", shared);
        cvx_weights *w32 = NULL;
        s = cvx_weights_open(&w32, c, &err);
        CHECK_MSG(s == CVX_OK, "%s", err.message);
        if (w32) {
            check_rounded("fp16", w16, w32);
            check_rounded("bf16", wb, w32);
        }
        cvx_weights_close(w32);
    }
    cvx_weights_close(w16);
    cvx_weights_close(wb);
}

/* Every safetensors file and weights folder under ../shared/golden opens cleanly. */
static int n_shared_files;
static void open_all(const char *dir, int depth) {
    char cmd[1200];
    snprintf(cmd, sizeof cmd, "find '%s' -maxdepth %d \\( -name '*.safetensors' -o -name '*.index.json' \\)", dir,
             depth);
    FILE *f = popen(cmd, "r");
    if (!f) return;
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        line[strcspn(line, "\n")] = '\0';
        cvx_weights *w = NULL;
        cvx_error err;
        cvx_status s = cvx_weights_open(&w, line, &err);
        CHECK_MSG(s == CVX_OK, "%s", err.message);
        cvx_weights_close(w);
        n_shared_files++;
    }
    pclose(f);
}

int main(void) {
    if (!cvx_test_tmpdir(tmp, sizeof tmp)) {
        fprintf(stderr, "cannot create a temporary directory: %s\n", strerror(errno));
        return 1;
    }
    test_round_trip();
    test_writer_errors();
    test_rejections();
    test_legal_oddities();
    test_sharded();
    test_reference_files("tests/data/safetensors/t5_tiny_a_fp16/text_encoder",
                         "tests/data/safetensors/t5_tiny_a_bf16/text_encoder");
    const char *shared = cvx_test_shared_golden();
    if (shared) {
        char a[1024], b[1024];
        snprintf(a, sizeof a, "%s/t5/tiny_a_fp16/text_encoder", shared);
        snprintf(b, sizeof b, "%s/t5/tiny_a_bf16/text_encoder", shared);
        test_reference_files(a, b);
        open_all(shared, 4);
        printf("opened %d safetensors/index files under %s\n", n_shared_files, shared);
    }
    cvx_test_rmtree(tmp);
    return cvx_test_finish("test_safetensors");
}
