/* Golden handler for e2e/ cases: the whole text-to-video path (CogVideoXPipeline.__call__ with output_type
 * "pil") on the case's own model folder, run through the public engine with an observer on every seam: ids,
 * embeddings, initial noise, timesteps, step-0 transformer output, latents after every step, decoded video and
 * uint8 frames. Parameters come from case.json's "params". */
#include <stdlib.h>
#include <string.h>

#include "diffusion/pipeline.h"
#include "golden/golden.h"

static cvx_status collect(void *user_data, const char *name, const cvx_tensor *t) {
    cvx_golden_case *c = user_data;
    return cvx_golden_output(c, name, t);
}

/* The text of params[key], from key + "_utf8_hex" when present (exact bytes), else the JSON string. */
static char *param_text(cvx_golden_case *c, json_t *params, const char *key) {
    char hex_key[64];
    snprintf(hex_key, sizeof hex_key, "%s_utf8_hex", key);
    const char *hex = json_string_value(json_object_get(params, hex_key));
    if (hex) {
        size_t n = strlen(hex);
        if (n % 2) return NULL;
        char *s = malloc(n / 2 + 1);
        if (!s) return NULL;
        for (size_t i = 0; i < n / 2; i++) {
            unsigned v;
            if (sscanf(hex + 2 * i, "%2x", &v) != 1) {
                free(s);
                return NULL;
            }
            s[i] = (char)v;
        }
        s[n / 2] = '\0';
        if (strlen(s) != n / 2) { /* an embedded NUL cannot go through the C API */
            free(s);
            return NULL;
        }
        return s;
    }
    json_t *v = json_object_get(params, key);
    if (!v || json_is_null(v)) return strdup("");
    return json_is_string(v) ? strdup(json_string_value(v)) : NULL;
}

cvx_status cvx_golden_e2e(cvx_golden_case *c) {
    json_t *params = json_object_get(c->case_json, "params");
    if (!json_is_object(params)) return cvx_fail(&c->err, CVX_ERR_FORMAT, "case.json has no \"params\" object");
    const char *dtype = json_string_value(json_object_get(params, "torch_dtype"));
    if (dtype && strcmp(dtype, "float32"))
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "torch_dtype %s (the golden path computes in float32)", dtype);
    json_t *npp = json_object_get(params, "num_videos_per_prompt");
    if (npp && json_integer_value(npp) != 1)
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "num_videos_per_prompt %lld", (long long)json_integer_value(npp));

    char model_dir[4096];
    cvx_golden_path(c, "model", model_dir, sizeof model_dir);
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = cvx_pool_size(c->pool);
    if (c->logger) ep.logger = *c->logger;
    cvx_engine *engine = NULL;
    char err[1024];
    cvx_status st = cvx_engine_open(&engine, model_dir, &ep, err, sizeof err);
    if (st != CVX_OK) return cvx_fail(&c->err, st, "%s", err);

    char *prompt = param_text(c, params, "prompt");
    char *negative = param_text(c, params, "negative_prompt");
    if (!prompt || !negative) {
        st = cvx_fail(&c->err, CVX_ERR_FORMAT, "case.json params: prompt / negative_prompt unreadable");
        goto done;
    }
    cvx_generate_params p = cvx_generate_params_default();
    p.prompt = prompt;
    p.negative_prompt = negative;
    json_t *v;
    if ((v = json_object_get(params, "seed"))) p.seed = (uint64_t)json_integer_value(v);
    if ((v = json_object_get(params, "num_frames"))) p.num_frames = (int)json_integer_value(v);
    if ((v = json_object_get(params, "height"))) p.height = (int)json_integer_value(v);
    if ((v = json_object_get(params, "width"))) p.width = (int)json_integer_value(v);
    if ((v = json_object_get(params, "num_inference_steps"))) p.steps = (int)json_integer_value(v);
    if ((v = json_object_get(params, "guidance_scale"))) p.guidance_scale = (float)json_number_value(v);
    if ((v = json_object_get(params, "use_dynamic_cfg"))) p.use_dynamic_cfg = json_is_true(v);
    p.output_path = NULL;
    p.precision = c->precision;
    cvx_pipeline_tap tap = {collect, c};
    st = cvx_generate_tapped(engine, &p, NULL, &tap);
    if (st != CVX_OK && c->err.status == CVX_OK) cvx_fail(&c->err, st, "%s", cvx_engine_last_error(engine));
done:
    free(prompt);
    free(negative);
    cvx_engine_close(engine);
    return st;
}
