/* Tensor views: a dtype, up to CVX_MAX_DIMS dims, contiguous row-major data owned by someone else (an mmap'd file,
 * an arena, a malloc'd buffer). A view never frees its data. */
#ifndef CVX_CORE_TENSOR_H
#define CVX_CORE_TENSOR_H

#include <stddef.h>
#include <stdint.h>

#define CVX_MAX_DIMS 8 /* the golden files hold up to 6-D tensors (per-step stacks of 5-D latents) */

typedef enum {
    CVX_DTYPE_F32 = 0,
    CVX_DTYPE_F16,
    CVX_DTYPE_BF16,
    CVX_DTYPE_F64,
    CVX_DTYPE_I64,
    CVX_DTYPE_I32,
    CVX_DTYPE_I16,
    CVX_DTYPE_I8,
    CVX_DTYPE_U8,
    CVX_DTYPE_U16,
    CVX_DTYPE_U32,
    CVX_DTYPE_U64,
    CVX_DTYPE_BOOL,
    CVX_DTYPE_COUNT
} cvx_dtype;

/* Size of one element in bytes. */
size_t cvx_dtype_size(cvx_dtype dt);
/* The safetensors spelling ("F32", "BF16", ...). */
const char *cvx_dtype_name(cvx_dtype dt);
/* Parses a safetensors dtype name; returns -1 when unknown. */
int cvx_dtype_from_name(const char *name);
int cvx_dtype_is_float(cvx_dtype dt);

typedef struct {
    cvx_dtype dtype;
    int ndim;                     /* 0..CVX_MAX_DIMS (0 = scalar) */
    int64_t shape[CVX_MAX_DIMS];  /* unused dims are 1 */
    void *data;                   /* contiguous, row-major */
} cvx_tensor;

cvx_tensor cvx_tensor_view(cvx_dtype dt, void *data, int ndim, const int64_t *shape);
/* Number of elements (1 for a scalar). */
int64_t cvx_tensor_numel(const cvx_tensor *t);
size_t cvx_tensor_nbytes(const cvx_tensor *t);
/* Same dtype-independent shape? */
int cvx_tensor_same_shape(const cvx_tensor *a, const cvx_tensor *b);
/* "[2, 226, 4096]" into buf; returns buf. */
char *cvx_shape_str(int ndim, const int64_t *shape, char *buf, size_t size);
/* Reads element i as double (any dtype). */
double cvx_tensor_get(const cvx_tensor *t, int64_t i);
/* Converts any float dtype to f32 (exact up-cast for f16/bf16); dst has numel floats. Returns 0, or -1 if the
 * dtype is not a float type. */
int cvx_tensor_to_f32(const cvx_tensor *t, float *dst);

#endif
