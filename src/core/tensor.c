#include "core/tensor.h"

#include <stdio.h>
#include <string.h>

#include "core/half.h"

static const struct {
    const char *name;
    size_t size;
} dtype_info[CVX_DTYPE_COUNT] = {
    [CVX_DTYPE_F32] = {"F32", 4},  [CVX_DTYPE_F16] = {"F16", 2}, [CVX_DTYPE_BF16] = {"BF16", 2},
    [CVX_DTYPE_F64] = {"F64", 8},  [CVX_DTYPE_I64] = {"I64", 8}, [CVX_DTYPE_I32] = {"I32", 4},
    [CVX_DTYPE_I16] = {"I16", 2},  [CVX_DTYPE_I8] = {"I8", 1},   [CVX_DTYPE_U8] = {"U8", 1},
    [CVX_DTYPE_U16] = {"U16", 2},  [CVX_DTYPE_U32] = {"U32", 4}, [CVX_DTYPE_U64] = {"U64", 8},
    [CVX_DTYPE_BOOL] = {"BOOL", 1},
};

size_t cvx_dtype_size(cvx_dtype dt) { return (unsigned)dt < CVX_DTYPE_COUNT ? dtype_info[dt].size : 0; }

const char *cvx_dtype_name(cvx_dtype dt) { return (unsigned)dt < CVX_DTYPE_COUNT ? dtype_info[dt].name : "?"; }

int cvx_dtype_from_name(const char *name) {
    for (int i = 0; i < CVX_DTYPE_COUNT; i++)
        if (!strcmp(name, dtype_info[i].name)) return i;
    return -1;
}

int cvx_dtype_is_float(cvx_dtype dt) {
    return dt == CVX_DTYPE_F32 || dt == CVX_DTYPE_F16 || dt == CVX_DTYPE_BF16 || dt == CVX_DTYPE_F64;
}

cvx_tensor cvx_tensor_view(cvx_dtype dt, void *data, int ndim, const int64_t *shape) {
    cvx_tensor t;
    t.dtype = dt;
    t.ndim = ndim < 0 ? 0 : (ndim > CVX_MAX_DIMS ? CVX_MAX_DIMS : ndim);
    for (int i = 0; i < CVX_MAX_DIMS; i++) t.shape[i] = i < t.ndim ? shape[i] : 1;
    t.data = data;
    return t;
}

int64_t cvx_tensor_numel(const cvx_tensor *t) {
    int64_t n = 1;
    for (int i = 0; i < t->ndim; i++) n *= t->shape[i];
    return n;
}

size_t cvx_tensor_nbytes(const cvx_tensor *t) { return (size_t)cvx_tensor_numel(t) * cvx_dtype_size(t->dtype); }

int cvx_tensor_same_shape(const cvx_tensor *a, const cvx_tensor *b) {
    if (a->ndim != b->ndim) return 0;
    for (int i = 0; i < a->ndim; i++)
        if (a->shape[i] != b->shape[i]) return 0;
    return 1;
}

char *cvx_shape_str(int ndim, const int64_t *shape, char *buf, size_t size) {
    size_t off = 0;
    off += (size_t)snprintf(buf + off, size - off, "[");
    for (int i = 0; i < ndim && off < size; i++)
        off += (size_t)snprintf(buf + off, size - off, "%s%lld", i ? ", " : "", (long long)shape[i]);
    if (off < size) snprintf(buf + off, size - off, "]");
    return buf;
}

double cvx_tensor_get(const cvx_tensor *t, int64_t i) {
    const unsigned char *p = (const unsigned char *)t->data + (size_t)i * cvx_dtype_size(t->dtype);
    switch (t->dtype) {
    case CVX_DTYPE_F32: { float v; memcpy(&v, p, 4); return v; }
    case CVX_DTYPE_F64: { double v; memcpy(&v, p, 8); return v; }
    case CVX_DTYPE_F16: { uint16_t v; memcpy(&v, p, 2); return cvx_f16_to_f32(v); }
    case CVX_DTYPE_BF16: { uint16_t v; memcpy(&v, p, 2); return cvx_bf16_to_f32(v); }
    case CVX_DTYPE_I64: { int64_t v; memcpy(&v, p, 8); return (double)v; }
    case CVX_DTYPE_I32: { int32_t v; memcpy(&v, p, 4); return v; }
    case CVX_DTYPE_I16: { int16_t v; memcpy(&v, p, 2); return v; }
    case CVX_DTYPE_I8: return (double)*(const int8_t *)p;
    case CVX_DTYPE_U8: case CVX_DTYPE_BOOL: return *p;
    case CVX_DTYPE_U16: { uint16_t v; memcpy(&v, p, 2); return v; }
    case CVX_DTYPE_U32: { uint32_t v; memcpy(&v, p, 4); return v; }
    case CVX_DTYPE_U64: { uint64_t v; memcpy(&v, p, 8); return (double)v; }
    default: return 0.0;
    }
}

int cvx_tensor_to_f32(const cvx_tensor *t, float *dst) {
    size_t n = (size_t)cvx_tensor_numel(t);
    switch (t->dtype) {
    case CVX_DTYPE_F32: memmove(dst, t->data, n * 4); return 0;
    case CVX_DTYPE_F16: cvx_f16_to_f32_array(t->data, dst, n); return 0;
    case CVX_DTYPE_BF16: cvx_bf16_to_f32_array(t->data, dst, n); return 0;
    case CVX_DTYPE_F64:
        for (size_t i = 0; i < n; i++) { /* possibly misaligned (mmap'd safetensors): memcpy */
            double v;
            memcpy(&v, (const unsigned char *)t->data + 8 * i, 8);
            dst[i] = (float)v;
        }
        return 0;
    default: return -1;
    }
}
