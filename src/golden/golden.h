/* The golden runner: runs one case folder in the formats of ../shared/golden (see its README) and compares
 * what we compute with what the reference computed, following the case's "check" object:
 *   check = {component, expected_file, inputs: [...], compare: {name: {atol, rtol} | {exact} |
 *            {uint8_max_diff, max_fraction}}, informational: [...]}
 * Nothing about tolerances or sizes is hard-coded: a component handler reads what it needs from the case
 * (config.json, case.json, weights, the expected file's input tensors) and reports its outputs; the runner
 * does the comparison, the printing and the --dump. */
#ifndef CVX_GOLDEN_GOLDEN_H
#define CVX_GOLDEN_GOLDEN_H

#include <jansson.h>

#include "cogvideox.h" /* cvx_precision */
#include "core/error.h"
#include "core/log.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "io/safetensors.h"

typedef struct cvx_golden_case cvx_golden_case;

struct cvx_golden_case {
    const char *dir;       /* the case folder */
    const char *name;      /* its last path component ("rng" for rng/) */
    const char *component; /* "rng", "scheduler", "transformer", "rope", "pipeline", "t5", "tokenizer", "vae", "e2e",
                            * "i2v", "v2v" */
    json_t *case_json;     /* case.json, or cases.json for a set (borrowed) */
    json_t *check;         /* its "check" object (borrowed) */
    json_t *config;        /* config.json when the folder has one, else NULL (borrowed) */
    cvx_safetensors *expected; /* the expected_file when it is a safetensors file, else NULL */
    cvx_pool *pool;
    const cvx_logger *logger;
    cvx_precision precision; /* the compute precision the handler runs in (bf16 only for components that have a
                              * bf16 path: t5, transformer, pipeline, e2e, vae; the others get fp32) */
    cvx_error err;         /* a handler's failure message */

    /* Outputs, filled by the handler through the functions below (owned by the runner). */
    struct cvx_golden_output *outputs;
    size_t n_outputs, cap_outputs;
    /* For a cases.json set: one JSON object per case, in order, holding the computed compare fields
     * (e.g. {"ids": [...], "pieces": [...]}). Set by the handler with cvx_golden_set_results (stolen). */
    json_t *set_results;
};

struct cvx_golden_output {
    char *name;
    cvx_tensor t; /* owns t.data */
};

/* A tensor of the expected file (inputs and targets alike), or NULL. */
const cvx_st_tensor *cvx_golden_tensor(const cvx_golden_case *c, const char *name);
/* Loads an expected-file tensor up-cast to f32 into a malloc'd buffer (caller frees); checks the element
 * count when numel >= 0. Fails with a message naming the tensor. */
cvx_status cvx_golden_tensor_f32(cvx_golden_case *c, const char *name, int64_t numel, float **out);
/* Is `name` one of check.compare's keys? (Handlers skip work for outputs nobody compares.) */
int cvx_golden_wants(const cvx_golden_case *c, const char *name);
/* Records a computed tensor under `name` (the data is copied). */
cvx_status cvx_golden_output(cvx_golden_case *c, const char *name, const cvx_tensor *t);
/* Records a cases.json set's results (an array, one object per case; the reference is stolen). */
void cvx_golden_set_results(cvx_golden_case *c, json_t *results);
/* Path of a file in the case folder (into buf). */
const char *cvx_golden_path(const cvx_golden_case *c, const char *file, char *buf, size_t size);

/* A component handler: computes the case's outputs. Returns CVX_ERR_UNSUPPORTED for a case form it does not
 * handle (printed as SKIP), any other error for a failure (printed as FAIL with c->err's message). */
typedef cvx_status (*cvx_golden_handler)(cvx_golden_case *c);

/* Handlers, one per component, each in its own file (src/golden/golden_<component>.c). A component without
 * one reports "SKIP (not implemented)". */
cvx_status cvx_golden_rng(cvx_golden_case *c);
cvx_status cvx_golden_scheduler(cvx_golden_case *c);
cvx_status cvx_golden_transformer(cvx_golden_case *c);
cvx_status cvx_golden_rope(cvx_golden_case *c);
cvx_status cvx_golden_pipeline(cvx_golden_case *c);
cvx_status cvx_golden_t5(cvx_golden_case *c);
cvx_status cvx_golden_tokenizer(cvx_golden_case *c);
cvx_status cvx_golden_vae(cvx_golden_case *c);
cvx_status cvx_golden_e2e(cvx_golden_case *c);
cvx_status cvx_golden_i2v(cvx_golden_case *c); /* golden_conditioned.c */
cvx_status cvx_golden_v2v(cvx_golden_case *c);

typedef struct {
    const char *dump_dir; /* NULL: no dump */
    int threads;
    int verbose;          /* print every compared tensor */
    const cvx_logger *logger;
    /* CVX_PRECISION_BF16: components with a bf16 path run in it and are compared with the bf16 bound of the
     * tolerance table (docs/bf16-tolerances.md) instead of the case's fp32 tolerances; exact targets stay exact. */
    cvx_precision precision;
    const char *bf16_tolerances; /* the table's JSON file; NULL: the one built into the binary */
} cvx_golden_options;

/* The bf16 bound (golden_bf16.c): loads and checks the tolerance table (path NULL: the built-in one); does the
 * component have a bf16 path (an entry in the table)?; the rule that replaces a compare rule of the case in bf16
 * (a new reference; exact rules are returned as they are). */
json_t *cvx_golden_bf16_table(const char *path, cvx_error *err);
int cvx_golden_bf16_component(json_t *table, const char *component);
json_t *cvx_golden_bf16_rule(json_t *table, const cvx_golden_case *c, const char *name, json_t *fp32_rule);
/* The table's atol_rms for a float target of a component (its per-tensor rule or the default); -1 when the
 * component has no entry or the tensor keeps its fp32 rule. */
double cvx_golden_bf16_atol_rms(json_t *table, const char *component, const char *name);

/* Runs every case under each path (a case folder, a component folder, or the golden root). Prints one line per
 * case. Returns the number of FAILs (0 = all passed or skipped), or -1 on a usage error. */
int cvx_golden_run(const char *const *paths, int n_paths, const cvx_golden_options *opt);

#endif
