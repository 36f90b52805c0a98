/* Golden handler for t5/ cases: T5EncoderModel(input_ids).last_hidden_state, plus every intermediate the case
 * compares (embeddings, position_bias, relative_position_bucket, block.{i}.*, hf_hidden_states.{j}).
 * The model folder is case.json's weights.dir ("text_encoder/" when absent); input_ids come from the expected
 * file. HF's hidden_states tuple is j = 0: embeddings, j = 1..n-1: outputs of blocks 0..n-2, j = n: the
 * final-norm output (the last block's raw output is only block.{n-1}.out). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "golden/golden.h"
#include "text/t5.h"

typedef struct {
    cvx_golden_case *c;
    int64_t num_layers;
} t5_golden;

/* The hf_hidden_states.{j} name that is the same tensor as a tap name, or 0. */
static int hf_alias(const t5_golden *g, const char *name, char *buf, size_t size) {
    if (!strcmp(name, "embeddings")) {
        snprintf(buf, size, "hf_hidden_states.0");
        return 1;
    }
    long long i;
    int end = 0;
    if (sscanf(name, "block.%lld.out%n", &i, &end) == 1 && name[end] == '\0' && i >= 0 && i < g->num_layers - 1) {
        snprintf(buf, size, "hf_hidden_states.%lld", i + 1);
        return 1;
    }
    return 0;
}

static int t5_wants(void *user, const char *name) {
    t5_golden *g = user;
    char alias[64];
    return cvx_golden_wants(g->c, name) || (hf_alias(g, name, alias, sizeof alias) && cvx_golden_wants(g->c, alias));
}

static cvx_status t5_record(void *user, const char *name, const cvx_tensor *t) {
    t5_golden *g = user;
    char alias[64];
    cvx_status st = CVX_OK;
    if (cvx_golden_wants(g->c, name)) st = cvx_golden_output(g->c, name, t);
    if (!st && hf_alias(g, name, alias, sizeof alias) && cvx_golden_wants(g->c, alias))
        st = cvx_golden_output(g->c, alias, t);
    return st;
}

cvx_status cvx_golden_t5(cvx_golden_case *c) {
    const char *sub = "text_encoder";
    const json_t *wdir = json_object_get(json_object_get(c->case_json, "weights"), "dir");
    if (json_is_string(wdir)) sub = json_string_value(wdir);
    char dir[4096];
    cvx_golden_path(c, sub, dir, sizeof dir);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') dir[--len] = '\0';

    const cvx_st_tensor *ids_st = cvx_golden_tensor(c, "input_ids");
    if (!ids_st) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "t5 case %s: no input_ids in the expected file", c->name);
    cvx_tensor ids = cvx_st_view(ids_st);

    cvx_t5 *model = NULL;
    cvx_status st = cvx_t5_open(&model, dir, &c->err);
    if (st) return st;
    if ((st = cvx_t5_set_precision(model, c->precision))) {
        cvx_fail(&c->err, st, "%s", cvx_t5_last_error(model));
        cvx_t5_close(model);
        return st;
    }
    const cvx_t5_config *cfg = cvx_t5_get_config(model);
    const int64_t B = ids.ndim == 2 ? ids.shape[0] : 1, L = ids.shape[ids.ndim > 0 ? ids.ndim - 1 : 0];
    float *out = malloc((size_t)(B * L * cfg->d_model) * sizeof(float));
    if (!out) {
        cvx_t5_close(model);
        return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "t5 case %s: out of memory", c->name);
    }
    t5_golden g = {c, cfg->num_layers};
    cvx_t5_tap tap = {t5_wants, t5_record, &g};
    st = cvx_t5_encode_tap(model, c->pool, &ids, out, &tap);
    if (st) {
        if (!c->err.status) cvx_fail(&c->err, st, "%s", cvx_t5_last_error(model));
    } else {
        int64_t shape[3] = {B, L, cfg->d_model};
        cvx_tensor t = cvx_tensor_view(CVX_DTYPE_F32, out, 3, shape);
        char last[64];
        snprintf(last, sizeof last, "hf_hidden_states.%lld", (long long)cfg->num_layers);
        st = cvx_golden_output(c, "last_hidden_state", &t);
        if (!st && cvx_golden_wants(c, last)) st = cvx_golden_output(c, last, &t);
    }
    free(out);
    cvx_t5_close(model);
    return st;
}
