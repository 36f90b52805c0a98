/* Golden handlers for i2v/ and v2v/ cases: CogVideoXImageToVideoPipeline and CogVideoXVideoToVideoPipeline
 * (output_type "pil") on the case's own model folder (tokenizer and text encoder [null, null]), run through the
 * public engine with the case's prompt embeddings, its uint8 image or video and an observer on every seam: the
 * preprocessed input, the VAE posterior (mean, logvar, std, the generator's noise, the sample), the scaled
 * conditioning latents, the initial noise / latents, the timesteps, the transformer's input and output and the
 * latents of every step, the DPM draws, the decoded video and the uint8 frames. I2V cases also compare the rope
 * tables the loop uses. Parameters come from case.json's "params"; inputs from check.inputs in the expected file. */
#include <stdlib.h>
#include <string.h>

#include "diffusion/pipeline.h"
#include "diffusion/rope.h"
#include "golden/golden.h"

static cvx_status collect(void *user_data, const char *name, const cvx_tensor *t) {
    cvx_golden_case *c = user_data;
    return cvx_golden_output(c, name, t);
}

/* A U8 input of the expected file with the given rank; its dims into dims. */
static cvx_status u8_input(cvx_golden_case *c, const char *name, int ndim, int64_t *dims, const uint8_t **data) {
    const cvx_st_tensor *t = cvx_golden_tensor(c, name);
    if (!t) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "the expected file has no input \"%s\"", name);
    cvx_tensor v = cvx_st_view(t);
    if (v.dtype != CVX_DTYPE_U8 || v.ndim != ndim || v.shape[ndim - 1] != 3)
        return cvx_fail(&c->err, CVX_ERR_SHAPE, "input \"%s\" must be U8 [..., 3] of rank %d", name, ndim);
    for (int d = 0; d < ndim; d++) dims[d] = v.shape[d];
    *data = v.data;
    return CVX_OK;
}

/* The rope tables the denoising loop computes for this size (i2v/ compares them). */
static cvx_status rope_outputs(cvx_golden_case *c, const cvx_generate_params *p, int latent_frames, int head_dim) {
    cvx_rope_params rp = cvx_rope_params_default(p->height, p->width, latent_frames, head_dim);
    int gh, gw;
    int64_t rows;
    cvx_status st = cvx_rope_shape(&rp, &gh, &gw, &rows, &c->err);
    if (st != CVX_OK) return st;
    float *cs = malloc(sizeof(float) * (size_t)(2 * rows * head_dim));
    if (!cs) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    st = cvx_rope_tables(&rp, cs, cs + rows * head_dim, &c->err);
    int64_t shape[2] = {rows, head_dim};
    cvx_tensor t = cvx_tensor_view(CVX_DTYPE_F32, cs, 2, shape);
    if (st == CVX_OK) st = cvx_golden_output(c, "image_rotary_emb_cos", &t);
    t.data = cs + rows * head_dim;
    if (st == CVX_OK) st = cvx_golden_output(c, "image_rotary_emb_sin", &t);
    free(cs);
    return st;
}

static cvx_status run_case(cvx_golden_case *c, int video) {
    json_t *params = json_object_get(c->case_json, "params");
    if (!json_is_object(params)) return cvx_fail(&c->err, CVX_ERR_FORMAT, "case.json has no \"params\" object");
    const char *dtype = json_string_value(json_object_get(params, "torch_dtype"));
    if (dtype && strcmp(dtype, "float32"))
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "torch_dtype %s (the golden path computes in float32)", dtype);
    json_t *v = json_object_get(params, "num_videos_per_prompt");
    if (v && json_integer_value(v) != 1)
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "num_videos_per_prompt %lld", (long long)json_integer_value(v));
    if ((v = json_object_get(params, "latents")) && !json_is_null(v))
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "given latents");
    if ((v = json_object_get(params, "eta")) && json_number_value(v) != 0)
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "eta %g", json_number_value(v));

    cvx_generate_params p = cvx_generate_params_default();
    float *pe = NULL, *ne = NULL;
    cvx_engine *engine = NULL;
    cvx_status st;
    const cvx_st_tensor *pt = cvx_golden_tensor(c, "prompt_embeds");
    if (!pt || pt->ndim != 3 || pt->shape[0] != 1)
        return cvx_fail(&c->err, CVX_ERR_SHAPE, "the expected file has no prompt_embeds [1, L, D]");
    p.embeds_length = (int)pt->shape[1];
    p.embeds_dim = (int)pt->shape[2];
    const int64_t ne_numel = pt->shape[1] * pt->shape[2];
    if ((st = cvx_golden_tensor_f32(c, "prompt_embeds", ne_numel, &pe)) != CVX_OK) goto done;
    if (cvx_golden_tensor(c, "negative_prompt_embeds") &&
        (st = cvx_golden_tensor_f32(c, "negative_prompt_embeds", ne_numel, &ne)) != CVX_OK)
        goto done;
    p.prompt_embeds = pe;
    p.negative_prompt_embeds = ne;
    int64_t dims[4];
    if (video) {
        if ((st = u8_input(c, "video_uint8", 4, dims, &p.video)) != CVX_OK) goto done;
        p.video_frames = (int)dims[0], p.video_height = (int)dims[1], p.video_width = (int)dims[2];
    } else {
        if ((st = u8_input(c, "image_uint8", 3, dims, &p.image)) != CVX_OK) goto done;
        p.image_height = (int)dims[0], p.image_width = (int)dims[1];
    }
    if ((v = json_object_get(params, "seed"))) p.seed = (uint64_t)json_integer_value(v);
    if (!video && (v = json_object_get(params, "num_frames"))) p.num_frames = (int)json_integer_value(v);
    if ((v = json_object_get(params, "height"))) p.height = (int)json_integer_value(v);
    if ((v = json_object_get(params, "width"))) p.width = (int)json_integer_value(v);
    if ((v = json_object_get(params, "num_inference_steps"))) p.steps = (int)json_integer_value(v);
    if ((v = json_object_get(params, "guidance_scale"))) p.guidance_scale = (float)json_number_value(v);
    if ((v = json_object_get(params, "use_dynamic_cfg"))) p.use_dynamic_cfg = json_is_true(v);
    if ((v = json_object_get(params, "strength"))) p.strength = json_number_value(v);
    p.precision = c->precision;

    char model_dir[4096];
    cvx_golden_path(c, "model", model_dir, sizeof model_dir);
    cvx_engine_params ep = cvx_engine_params_default();
    ep.threads = cvx_pool_size(c->pool);
    if (c->logger) ep.logger = *c->logger;
    char err[1024];
    if ((st = cvx_engine_open(&engine, model_dir, &ep, err, sizeof err)) != CVX_OK) {
        cvx_fail(&c->err, st, "%s", err);
        goto done;
    }
    cvx_pipeline_tap tap = {collect, c};
    st = cvx_generate_tapped(engine, &p, NULL, &tap);
    if (st != CVX_OK && c->err.status == CVX_OK) cvx_fail(&c->err, st, "%s", cvx_engine_last_error(engine));
    if (st == CVX_OK && cvx_golden_wants(c, "image_rotary_emb_cos")) {
        /* the latent frame count the run used, the head size from the transformer's config */
        int64_t F = 0;
        for (size_t i = 0; i < c->n_outputs; i++)
            if (!strcmp(c->outputs[i].name, "initial_latents") && c->outputs[i].t.ndim == 5) F = c->outputs[i].t.shape[1];
        char cfg_path[4200];
        snprintf(cfg_path, sizeof cfg_path, "%s/transformer/config.json", model_dir);
        json_t *cfg = json_load_file(cfg_path, 0, NULL);
        json_t *hd = cfg ? json_object_get(cfg, "attention_head_dim") : NULL;
        if (!F || !json_is_integer(hd))
            st = cvx_fail(&c->err, CVX_ERR_FORMAT, "%s: no attention_head_dim (or no initial latents)", cfg_path);
        else
            st = rope_outputs(c, &p, (int)F, (int)json_integer_value(hd));
        json_decref(cfg);
    }
done:
    cvx_engine_close(engine);
    free(pe);
    free(ne);
    return st;
}

cvx_status cvx_golden_i2v(cvx_golden_case *c) { return run_case(c, 0); }
cvx_status cvx_golden_v2v(cvx_golden_case *c) { return run_case(c, 1); }
