/* Golden handler for pipeline/ cases: the closed denoising loop of CogVideoXPipeline.__call__ with
 * output_type="latent" and given prompt embeddings (config.json + weights.safetensors for the transformer,
 * scheduler_config.json, case.json "params": height, width, num_frames, num_inference_steps, guidance_scale,
 * use_dynamic_cfg, seed). Outputs: initial_latents, step_timesteps, step_guidance_scale, step_transformer_output,
 * step_latents_after [steps, nb, F, C, H, W], output_latents, and the rope tables for rope models.
 * With vae=None the pipeline's VAE factors are 8 (spatial) and 4 (temporal). */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/denoise.h"
#include "diffusion/rope.h"
#include "golden/golden.h"

#define VAE_SCALE_SPATIAL 8
#define VAE_SCALE_TEMPORAL 4

typedef struct {
    int64_t steps, per_step_out, per_step_lat;
    int64_t *timesteps;
    double *guidance;
    float *outputs, *latents;
} pipe_rec;

static void record_step(void *user, const cvx_denoise_step *s) {
    pipe_rec *r = user;
    if (s->step >= r->steps) return;
    r->timesteps[s->step] = s->timestep;
    r->guidance[s->step] = s->guidance_scale;
    memcpy(r->outputs + s->step * r->per_step_out, s->model_output, sizeof(float) * (size_t)r->per_step_out);
    memcpy(r->latents + s->step * r->per_step_lat, s->latents, sizeof(float) * (size_t)r->per_step_lat);
}

static cvx_status param_num(cvx_golden_case *c, json_t *params, const char *key, double *out) {
    json_t *v = json_object_get(params, key);
    if (!json_is_number(v)) return cvx_fail(&c->err, CVX_ERR_FORMAT, "case.json params.%s missing or not a number", key);
    *out = json_number_value(v);
    return CVX_OK;
}

static cvx_status emit(cvx_golden_case *c, const char *name, cvx_dtype dt, void *data, int ndim, const int64_t *shape) {
    if (!cvx_golden_wants(c, name)) return CVX_OK;
    cvx_tensor t = cvx_tensor_view(dt, data, ndim, shape);
    return cvx_golden_output(c, name, &t);
}

cvx_status cvx_golden_pipeline(cvx_golden_case *c) {
    json_t *params = json_object_get(c->case_json, "params");
    if (!c->config || !json_is_object(params))
        return cvx_fail(&c->err, CVX_ERR_UNSUPPORTED, "%s: needs config.json and case.json params", c->dir);
    double height = 0, width = 0, frames = 0, steps = 0, gs = 0, seed = 0;
    cvx_status st;
    if ((st = param_num(c, params, "height", &height)) || (st = param_num(c, params, "width", &width)) ||
        (st = param_num(c, params, "num_frames", &frames)) || (st = param_num(c, params, "num_inference_steps", &steps)) ||
        (st = param_num(c, params, "guidance_scale", &gs)) || (st = param_num(c, params, "seed", &seed)))
        return st;
    if (height < 1 || width < 1 || frames < 1 || steps < 1 || height > 1e5 || width > 1e5 || frames > 1e5 || steps > 1e5 ||
        seed < 0)
        return cvx_fail(&c->err, CVX_ERR_FORMAT, "case.json params out of range");
    int dyn = json_is_true(json_object_get(params, "use_dynamic_cfg"));

    cvx_dit_config cfg;
    if ((st = cvx_dit_config_parse(&cfg, c->config, &c->err)) != CVX_OK) return st;
    char path[4096];
    json_error_t jerr;
    json_t *scfg = json_load_file(cvx_golden_path(c, "scheduler_config.json", path, sizeof path), 0, &jerr);
    if (!scfg) return cvx_fail(&c->err, CVX_ERR_FORMAT, "%s: %s", path, jerr.text);
    cvx_scheduler *sched = NULL;
    cvx_dit *m = NULL;
    float *prompt = NULL, *negative = NULL, *lat = NULL;
    pipe_rec rec;
    memset(&rec, 0, sizeof rec);
    st = cvx_scheduler_create(&sched, scfg, CVX_SCHED_AUTO, path, &c->err);
    json_decref(scfg);
    if (st != CVX_OK) goto done;
    if ((st = cvx_dit_open(&m, &cfg, cvx_golden_path(c, "weights.safetensors", path, sizeof path), &c->err)) != CVX_OK)
        goto done;
    if ((st = cvx_dit_set_precision(m, c->precision, c->pool)) != CVX_OK) {
        cvx_error_copy(&c->err, cvx_dit_error(m));
        goto done;
    }

    const cvx_st_tensor *pe = cvx_golden_tensor(c, "prompt_embeds");
    if (!pe || pe->ndim != 3 || pe->shape[2] != cfg.text_embed_dim) {
        st = cvx_fail(&c->err, CVX_ERR_SHAPE, "prompt_embeds missing or not [nb, L, %d]", cfg.text_embed_dim);
        goto done;
    }
    int64_t nb = pe->shape[0], L = pe->shape[1];
    if ((st = cvx_golden_tensor_f32(c, "prompt_embeds", nb * L * cfg.text_embed_dim, &prompt)) != CVX_OK) goto done;
    if (gs > 1.0 &&
        (st = cvx_golden_tensor_f32(c, "negative_prompt_embeds", nb * L * cfg.text_embed_dim, &negative)) != CVX_OK)
        goto done;

    /* prepare_latents: [nb, (frames − 1) // 4 + 1, C, height // 8, width // 8] from the seeded generator */
    int64_t F = ((int64_t)frames - 1) / VAE_SCALE_TEMPORAL + 1, C = cfg.in_channels;
    int64_t H = (int64_t)height / VAE_SCALE_SPATIAL, W = (int64_t)width / VAE_SCALE_SPATIAL;
    int64_t n = nb * F * C * H * W;
    lat = malloc(sizeof(float) * (size_t)n);
    if (!lat) {
        st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    cvx_rng g;
    cvx_rng_seed(&g, (uint64_t)seed);
    cvx_denoise_initial_latents(&g, lat, n);
    int64_t lshape[6] = {nb, F, C, H, W};
    if ((st = emit(c, "initial_latents", CVX_DTYPE_F32, lat, 5, lshape)) != CVX_OK) goto done;

    cvx_denoise_params p = cvx_denoise_params_default();
    p.num_inference_steps = (int64_t)steps;
    p.guidance_scale = gs;
    p.use_dynamic_cfg = dyn;
    p.height_px = (int)height;
    p.width_px = (int)width;
    p.vae_scale_spatial = VAE_SCALE_SPATIAL;
    p.pool = c->pool;
    if (cfg.use_rotary_positional_embeddings &&
        (cvx_golden_wants(c, "image_rotary_emb_cos") || cvx_golden_wants(c, "image_rotary_emb_sin"))) {
        cvx_rope_params rp = cvx_rope_params_default(p.height_px, p.width_px, (int)F, cfg.attention_head_dim);
        rp.patch_size = cfg.patch_size;
        int gh, gw;
        int64_t rows;
        if ((st = cvx_rope_shape(&rp, &gh, &gw, &rows, &c->err)) != CVX_OK) goto done;
        float *tab = malloc(sizeof(float) * (size_t)(2 * rows * cfg.attention_head_dim));
        if (!tab) {
            st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
        int64_t rshape[2] = {rows, cfg.attention_head_dim};
        st = cvx_rope_tables(&rp, tab, tab + rows * cfg.attention_head_dim, &c->err);
        if (st == CVX_OK) st = emit(c, "image_rotary_emb_cos", CVX_DTYPE_F32, tab, 2, rshape);
        if (st == CVX_OK)
            st = emit(c, "image_rotary_emb_sin", CVX_DTYPE_F32, tab + rows * cfg.attention_head_dim, 2, rshape);
        free(tab);
        if (st != CVX_OK) goto done;
    }

    int64_t count = 0;
    {
        int64_t *all = malloc(sizeof(int64_t) * (size_t)((int64_t)steps + 1));
        if (!all) {
            st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
            goto done;
        }
        st = cvx_scheduler_timesteps_for(sched, (int64_t)steps, all, &count, &c->err);
        free(all);
        if (st != CVX_OK) goto done;
    }
    int64_t Bm = gs > 1.0 ? 2 * nb : nb;
    rec.steps = count;
    rec.per_step_lat = n;
    rec.per_step_out = Bm / nb * n;
    rec.timesteps = malloc(sizeof(int64_t) * (size_t)count);
    rec.guidance = malloc(sizeof(double) * (size_t)count);
    rec.outputs = malloc(sizeof(float) * (size_t)(count * rec.per_step_out));
    rec.latents = malloc(sizeof(float) * (size_t)(count * n));
    if (!rec.timesteps || !rec.guidance || !rec.outputs || !rec.latents) {
        st = cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto done;
    }
    p.progress = record_step;
    p.progress_user_data = &rec;
    if ((st = cvx_denoise(m, sched, &p, prompt, negative, nb, L, lat, F, H, W, &g, &c->err)) != CVX_OK) goto done;

    int64_t s1[1] = {count}, s6[6] = {count, nb, F, C, H, W}, so[6] = {count, Bm, F, C, H, W};
    if ((st = emit(c, "step_timesteps", CVX_DTYPE_I64, rec.timesteps, 1, s1)) != CVX_OK ||
        (st = emit(c, "step_guidance_scale", CVX_DTYPE_F64, rec.guidance, 1, s1)) != CVX_OK ||
        (st = emit(c, "step_transformer_output", CVX_DTYPE_F32, rec.outputs, 6, so)) != CVX_OK ||
        (st = emit(c, "step_latents_after", CVX_DTYPE_F32, rec.latents, 6, s6)) != CVX_OK ||
        (st = emit(c, "output_latents", CVX_DTYPE_F32, lat, 5, lshape)) != CVX_OK)
        goto done;
done:
    free(rec.timesteps), free(rec.guidance), free(rec.outputs), free(rec.latents);
    free(prompt), free(negative), free(lat);
    cvx_dit_free(m);
    cvx_scheduler_free(sched);
    return st;
}
