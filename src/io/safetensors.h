/* safetensors (https://github.com/huggingface/safetensors format): an 8-byte little-endian header length N,
 * N bytes of JSON {name: {dtype, shape, data_offsets: [begin, end]}, "__metadata__": {str: str}}, then the
 * data section. Files are mmap'd read-only; tensor views point into the mapping.
 *
 * Everything is validated on open: header length vs file size, header size limit, well-formed JSON, known
 * dtypes, shapes (<= CVX_MAX_DIMS dims, non-negative), dtype × shape = byte length, offsets in range,
 * no two tensors overlapping, duplicate names. Every rejection names the file and the problem. */
#ifndef CVX_IO_SAFETENSORS_H
#define CVX_IO_SAFETENSORS_H

#include <stddef.h>
#include <stdint.h>

#include "core/error.h"
#include "core/tensor.h"

#define CVX_SAFETENSORS_MAX_HEADER (100u << 20) /* the reference implementation's limit: 100 MB */

typedef struct {
    const char *name;
    cvx_dtype dtype;
    int ndim;
    int64_t shape[CVX_MAX_DIMS];
    uint64_t begin, end; /* byte offsets within the data section */
    const void *data;    /* points into the mapping (or the parsed buffer) */
    const char *file;    /* path of the file that holds it */
} cvx_st_tensor;

typedef struct cvx_safetensors cvx_safetensors;

/* Opens and validates one .safetensors file (mmap). */
cvx_status cvx_safetensors_open(cvx_safetensors **out, const char *path, cvx_error *err);
/* Validates a file image already in memory (not copied: buf must outlive the object). `label` names it in
 * errors. This is what the fuzzer drives. */
cvx_status cvx_safetensors_parse(cvx_safetensors **out, const void *buf, size_t size, const char *label,
                                 cvx_error *err);
void cvx_safetensors_close(cvx_safetensors *st);

size_t cvx_safetensors_count(const cvx_safetensors *st);
/* Tensors in data-offset order. */
const cvx_st_tensor *cvx_safetensors_at(const cvx_safetensors *st, size_t i);
const cvx_st_tensor *cvx_safetensors_find(const cvx_safetensors *st, const char *name);
/* A "__metadata__" value, or NULL. */
const char *cvx_safetensors_metadata(const cvx_safetensors *st, const char *key);
const char *cvx_safetensors_path(const cvx_safetensors *st);

/* The tensor as a view (data points into the mapping). The format allows any byte offset, so the data may be
 * misaligned for its dtype (the reference's files are aligned: header padded to 8 bytes, tensors sorted by
 * descending dtype size; cvx_safetensors_write keeps the caller's order, and a crafted file may be anything):
 * readers must load elements with memcpy-safe accesses (cvx_tensor_get / cvx_tensor_to_f32 do). */
cvx_tensor cvx_st_view(const cvx_st_tensor *t);

/* ---- a component's weights: one file, or shards through *.safetensors.index.json ----------------------- */
typedef struct cvx_weights cvx_weights;

/* `path` is a directory (it looks for exactly one "*.safetensors.index.json"; without one, for exactly one
 * "*.safetensors" file), an index file, or a single .safetensors file. With an index, every weight_map entry
 * must exist in the shard it names, and every tensor of every shard must be in the weight_map. */
cvx_status cvx_weights_open(cvx_weights **out, const char *path, cvx_error *err);
void cvx_weights_close(cvx_weights *w);
size_t cvx_weights_count(const cvx_weights *w);
const cvx_st_tensor *cvx_weights_at(const cvx_weights *w, size_t i); /* sorted by name */
const cvx_st_tensor *cvx_weights_find(const cvx_weights *w, const char *name);
/* Total bytes of tensor data. */
uint64_t cvx_weights_nbytes(const cvx_weights *w);
/* Looks up `name` and checks its shape (ndim dims); dtype must be a float type. Errors name the tensor. */
cvx_status cvx_weights_get(const cvx_weights *w, const char *name, int ndim, const int64_t *shape, cvx_tensor *out,
                           cvx_error *err);

/* The shard index (HF "model.safetensors.index.json": {"metadata": {...}, "weight_map": {name: shard file}})
 * parsed from memory; cvx_weights_open uses it, and so do the tests and fuzz/fuzz_index_json.c. Shard names must
 * be plain file names in the index's folder (no '/', not "." or ".."). */
typedef struct {
    size_t n;         /* weight_map entries */
    char **names;     /* [n], sorted by name (strcmp) */
    size_t *file_of;  /* [n]: index into files of the shard that holds names[i] */
    size_t n_files;
    char **files;     /* [n_files] distinct shard file names, sorted */
} cvx_st_index;

cvx_status cvx_weights_parse_index(cvx_st_index **out, const char *json, size_t len, const char *label,
                                   cvx_error *err);
void cvx_st_index_free(cvx_st_index *idx);

/* ---- writer -------------------------------------------------------------------------------------------- */
typedef struct {
    const char *name;
    cvx_dtype dtype;
    int ndim;
    int64_t shape[CVX_MAX_DIMS];
    const void *data; /* the tensor's bytes, or NULL: then fill() produces them */
} cvx_st_entry;

/* Produces entry `index`'s bytes into dst (nbytes = dtype size × numel). */
typedef cvx_status (*cvx_st_fill_fn)(void *user_data, size_t index, void *dst, size_t nbytes, cvx_error *err);

/* Writes a .safetensors file (tensors in the given order, header padded to 8 bytes with spaces, metadata
 * {"format": "pt"} plus `metadata` key/value pairs: a NULL-terminated array "k1", "v1", ..., NULL, may be NULL).
 * Writes to path + ".tmp" then renames, so a failed write never leaves a half file under the real name. */
cvx_status cvx_safetensors_write(const char *path, const cvx_st_entry *entries, size_t n, const char *const *metadata,
                                 cvx_st_fill_fn fill, void *user_data, cvx_error *err);

#endif
