/* Golden handler for rope/: CogVideoXPipeline._prepare_rotary_positional_embeddings for each entry of
 * case.json "params" ({"<id>": {height_px, width_px, num_latent_frames…, vae_scale_factor_spatial, patch_size,
 * attention_head_dim…, theta, base_size(w,h)}}) → "<id>_cos", "<id>_sin" [T·gh·gw, Dh]. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/rope.h"
#include "golden/golden.h"

/* A numeric field whose key starts with `stem` (the case spells some as "num_latent_frames(temporal_size)"). */
static json_t *field(json_t *obj, const char *stem) {
    const char *key;
    json_t *v;
    size_t n = strlen(stem);
    json_object_foreach(obj, key, v) if (!strncmp(key, stem, n) && (key[n] == '\0' || key[n] == '(')) return v;
    return NULL;
}

static cvx_status int_field(cvx_golden_case *c, json_t *obj, const char *id, const char *stem, int def, int *out) {
    json_t *v = field(obj, stem);
    if (!v) {
        if (def < 0) return cvx_fail(&c->err, CVX_ERR_FORMAT, "rope params %s: \"%s\" missing", id, stem);
        *out = def;
        return CVX_OK;
    }
    if (!json_is_integer(v) || json_integer_value(v) < 0 || json_integer_value(v) > (1 << 20))
        return cvx_fail(&c->err, CVX_ERR_FORMAT, "rope params %s: \"%s\" must be a small non-negative integer", id,
                        stem);
    *out = (int)json_integer_value(v);
    return CVX_OK;
}

cvx_status cvx_golden_rope(cvx_golden_case *c) {
    json_t *params = json_object_get(c->case_json, "params");
    if (!json_is_object(params))
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "%s: case.json has no \"params\" object", c->dir);
    const char *id;
    json_t *pj;
    json_object_foreach(params, id, pj) {
        if (!json_is_object(pj)) return cvx_fail(&c->err, CVX_ERR_FORMAT, "rope params %s: not an object", id);
        cvx_rope_params p = cvx_rope_params_default(0, 0, 0, 0);
        cvx_status st;
        if ((st = int_field(c, pj, id, "height_px", -1, &p.height_px)) != CVX_OK ||
            (st = int_field(c, pj, id, "width_px", -1, &p.width_px)) != CVX_OK ||
            (st = int_field(c, pj, id, "num_latent_frames", -1, &p.num_latent_frames)) != CVX_OK ||
            (st = int_field(c, pj, id, "attention_head_dim", -1, &p.head_dim)) != CVX_OK ||
            (st = int_field(c, pj, id, "vae_scale_factor_spatial", 8, &p.vae_scale_spatial)) != CVX_OK ||
            (st = int_field(c, pj, id, "patch_size", 2, &p.patch_size)) != CVX_OK)
            return st;
        json_t *th = field(pj, "theta");
        if (th) {
            if (!json_is_number(th) || json_number_value(th) <= 0)
                return cvx_fail(&c->err, CVX_ERR_FORMAT, "rope params %s: bad theta", id);
            p.theta = json_number_value(th);
        }
        /* base_size(w, h) is in grid cells; the pipeline derives it from 720 × 480 px */
        json_t *base = field(pj, "base_size");
        if (base) {
            if (!json_is_array(base) || json_array_size(base) != 2 || !json_is_integer(json_array_get(base, 0)) ||
                !json_is_integer(json_array_get(base, 1)))
                return cvx_fail(&c->err, CVX_ERR_FORMAT, "rope params %s: base_size must be [w, h]", id);
            int cell = p.vae_scale_spatial * p.patch_size;
            p.base_width_px = (int)json_integer_value(json_array_get(base, 0)) * cell;
            p.base_height_px = (int)json_integer_value(json_array_get(base, 1)) * cell;
        }
        int gh, gw;
        int64_t rows;
        if ((st = cvx_rope_shape(&p, &gh, &gw, &rows, &c->err)) != CVX_OK) return st;
        float *cs = malloc(sizeof(float) * (size_t)(rows * p.head_dim));
        float *sn = malloc(sizeof(float) * (size_t)(rows * p.head_dim));
        if (!cs || !sn) {
            free(cs), free(sn);
            return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        }
        st = cvx_rope_tables(&p, cs, sn, &c->err);
        int64_t shape[2] = {rows, p.head_dim};
        char name[256];
        for (int k = 0; st == CVX_OK && k < 2; k++) {
            snprintf(name, sizeof name, "%s_%s", id, k ? "sin" : "cos");
            cvx_tensor t = cvx_tensor_view(CVX_DTYPE_F32, k ? sn : cs, 2, shape);
            if (cvx_golden_wants(c, name)) st = cvx_golden_output(c, name, &t);
        }
        free(cs), free(sn);
        if (st != CVX_OK) return st;
    }
    return CVX_OK;
}
