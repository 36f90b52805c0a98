/* CogVideoXPipeline's denoising loop (see denoise.h). */
#include "diffusion/denoise.h"

#include <stdio.h>

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "core/log.h"
#include "diffusion/rope.h"

cvx_denoise_params cvx_denoise_params_default(void) {
    cvx_denoise_params p;
    memset(&p, 0, sizeof p);
    p.num_inference_steps = 50;
    p.guidance_scale = 6.0;
    p.height_px = 480;
    p.width_px = 720;
    p.vae_scale_spatial = 8;
    return p;
}

double cvx_denoise_guidance(const cvx_denoise_params *p, int64_t timestep) {
    if (!p->use_dynamic_cfg) return p->guidance_scale;
    /* Python: (N − t) / N is true division of ints, ** 5.0 and math.cos in float64; the argument is about
     * −7.7e6 at t = 999, where float32 would be meaningless. */
    double N = (double)p->num_inference_steps;
    double x = ((double)p->num_inference_steps - (double)timestep) / N;
    return 1.0 + p->guidance_scale * ((1.0 - cos(M_PI * pow(x, 5.0))) / 2.0);
}

cvx_status cvx_denoise_check_ranks(int heads, int cfg_on, int ranks, cvx_error *err) {
    if (ranks <= 1) return CVX_OK;
    int ok = cfg_on ? ranks % 2 == 0 && heads % (ranks / 2) == 0 && ranks / 2 <= DIT_MAX_SEQ_RANKS
                    : heads % ranks == 0 && ranks <= DIT_MAX_SEQ_RANKS;
    if (ok) return CVX_OK;
    char valid[256] = "1";
    size_t len = 1;
    for (int d = cfg_on ? 1 : 2; d <= heads && d <= DIT_MAX_SEQ_RANKS && len < sizeof valid - 16; d++)
        if (heads % d == 0) len += (size_t)snprintf(valid + len, sizeof valid - len, ", %d", cfg_on ? 2 * d : d);
    if (cfg_on)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                        "%d processes do not fit this model: with guidance the processes split into the two CFG halves "
                        "(N even) and each half splits the sequence over N/2 ranks, which must divide the %d attention "
                        "heads; valid N: %s", ranks, heads, valid);
    return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                    "%d processes do not fit this model: without guidance the N ranks split the sequence, and N must "
                    "divide the %d attention heads; valid N: %s", ranks, heads, valid);
}

void cvx_denoise_initial_latents(cvx_rng *g, float *latents, int64_t numel) {
    cvx_rng_randn_f32(g, latents, numel, CVX_RNG_AVX2);
    /* init_noise_sigma is 1.0 for both CogVideoX schedulers: the multiplication is exact */
}

cvx_status cvx_denoise(cvx_dit *model, cvx_scheduler *sched, const cvx_denoise_params *p, const float *prompt,
                       const float *negative, int64_t nb, int64_t L, float *latents, int64_t F, int64_t H, int64_t W,
                       cvx_rng *g, cvx_error *err) {
    const cvx_dit_config *cfg = cvx_dit_get_config(model);
    const int64_t C = cfg->out_channels, Ci = cfg->in_channels - cfg->out_channels, Dt = cfg->text_embed_dim;
    const int cfg_on = p->guidance_scale > 1.0;
    const int64_t Bm = cfg_on ? 2 * nb : nb;
    const int64_t n = nb * F * C * H * W; /* one copy of the latents */
    const int64_t n_in = nb * F * (C + Ci) * H * W; /* one copy of the transformer input */
    if (!prompt || !latents || nb <= 0 || L <= 0 || F <= 0 || H <= 0 || W <= 0)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "denoise: prompt, latents and positive sizes are required");
    if (cfg_on && !negative)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "denoise: guidance_scale %g > 1 needs negative prompt embeddings",
                        p->guidance_scale);
    if (Ci < 0 || (Ci > 0) != (p->image_latents != NULL))
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT,
                        Ci > 0 ? "denoise: the model takes %d input channels for %d output channels: it needs image "
                                 "latents (image-to-video)"
                               : "denoise: the model maps %d channels to %d: it takes no image latents",
                        cfg->in_channels, cfg->out_channels);
    if (cvx_scheduler_kind(sched) == CVX_SCHED_DPM && !g)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "denoise: the DPM scheduler needs the pipeline's generator");
    cvx_status st = cvx_scheduler_set_timesteps(sched, p->num_inference_steps, err);
    if (st != CVX_OK) return st;
    int64_t count = 0;
    const int64_t *timesteps = cvx_scheduler_timesteps(sched, &count);
    if (p->first_step < 0 || p->first_step >= count)
        return cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "denoise: no timesteps left after the first %lld of %lld",
                        (long long)p->first_step, (long long)count);
    timesteps += p->first_step; /* get_timesteps: timesteps[t_start:] */
    count -= p->first_step;

    /* Several processes (p->world): the CFG halves on two halves of the ranks, each half sequence-parallel over
     * its dg ranks; the halves swap their noise predictions after every forward. */
    const int ranks = cvx_dist_size(p->world), rank = cvx_dist_rank(p->world);
    if ((st = cvx_denoise_check_ranks(cfg->num_attention_heads, cfg_on, ranks, err)) != CVX_OK) return st;
    const int halves = ranks > 1 && cfg_on ? 2 : 1, dg = ranks / halves, half = rank / dg;
    cvx_dist *seq = NULL;
    if (ranks > 1 && (st = cvx_dist_split(p->world, half, rank, &seq, err)) != CVX_OK) return st;

    float *model_in = malloc(sizeof(float) * (size_t)(Bm / nb * n_in)); /* [Bm, F, C + Ci, H, W] */
    float *model_out = malloc(sizeof(float) * (size_t)(Bm / nb * n)); /* [Bm, F, C, H, W] */
    float *guided = malloc(sizeof(float) * (size_t)n);                /* [nb, F, C, H, W] */
    float *text = malloc(sizeof(float) * (size_t)(Bm * L * Dt));      /* [Bm, L, Dt] = cat([negative, prompt]) */
    int64_t *tsteps = malloc(sizeof(int64_t) * (size_t)Bm);
    float *rope_cos = NULL, *rope_sin = NULL;
    cvx_sched_state state;
    memset(&state, 0, sizeof state);
    if (!model_in || !model_out || !guided || !text || !tsteps) {
        st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "denoise: out of memory");
        goto done;
    }
    if ((st = cvx_sched_state_init(&state, n, err)) != CVX_OK) goto done;
    if (p->start_step < 0 || p->start_step > count || (p->start_step > 0 && !p->resume_state)) {
        st = cvx_fail(err, CVX_ERR_INVALID_ARGUMENT, "denoise: cannot resume at step %lld of %lld%s",
                      (long long)p->start_step, (long long)count, p->resume_state ? "" : " without a scheduler state");
        goto done;
    }
    if (p->start_step > 0) {
        const cvx_sched_state *rs = p->resume_state;
        if (rs->n != n) {
            st = cvx_fail(err, CVX_ERR_SHAPE, "denoise: the resume state holds %lld values, the latents %lld",
                          (long long)rs->n, (long long)n);
            goto done;
        }
        memcpy(state.pred_original_sample, rs->pred_original_sample, sizeof(float) * (size_t)n);
        state.has_pred = rs->has_pred;
        state.timestep_back = rs->timestep_back;
        state.has_back = rs->has_back;
    }
    if (cfg_on) {
        memcpy(text, negative, sizeof(float) * (size_t)(nb * L * Dt));
        memcpy(text + nb * L * Dt, prompt, sizeof(float) * (size_t)(nb * L * Dt));
    } else {
        memcpy(text, prompt, sizeof(float) * (size_t)(nb * L * Dt));
    }
    if (cfg->use_rotary_positional_embeddings) {
        cvx_rope_params rp = cvx_rope_params_default(p->height_px, p->width_px, (int)F, cfg->attention_head_dim);
        rp.vae_scale_spatial = p->vae_scale_spatial;
        rp.patch_size = cfg->patch_size;
        int gh, gw;
        int64_t rows;
        if ((st = cvx_rope_shape(&rp, &gh, &gw, &rows, err)) != CVX_OK) goto done;
        if (rows != F * (H / cfg->patch_size) * (W / cfg->patch_size)) {
            st = cvx_fail(err, CVX_ERR_SHAPE,
                          "denoise: %dx%d px gives a %dx%d rope grid but the latents give %lldx%lld patches",
                          p->height_px, p->width_px, gh, gw, (long long)(H / cfg->patch_size),
                          (long long)(W / cfg->patch_size));
            goto done;
        }
        rope_cos = malloc(sizeof(float) * (size_t)(rows * cfg->attention_head_dim));
        rope_sin = malloc(sizeof(float) * (size_t)(rows * cfg->attention_head_dim));
        if (!rope_cos || !rope_sin) {
            st = cvx_fail(err, CVX_ERR_OUT_OF_MEMORY, "denoise: out of memory");
            goto done;
        }
        if ((st = cvx_rope_tables(&rp, rope_cos, rope_sin, err)) != CVX_OK) goto done;
    }

    cvx_dit_set_teacache(model, p->teacache);
    for (int64_t i = p->start_step; i < count; i++) {
        if (p->cancel && p->cancel(p->cancel_user_data)) {
            st = cvx_fail(err, CVX_ERR_CANCELLED, "denoise: cancelled before step %lld of %lld", (long long)i,
                          (long long)count);
            goto done;
        }
        double t0 = cvx_time_seconds();
        int64_t t = timesteps[i];
        if (Ci == 0) {
            for (int64_t k = 0; k < Bm / nb; k++) memcpy(model_in + k * n, latents, sizeof(float) * (size_t)n);
        } else { /* cat([latents, image_latents], dim=2) per batch row and frame */
            const int64_t hw = H * W;
            for (int64_t r = 0; r < Bm * F; r++) {
                const int64_t src = r % (nb * F);
                memcpy(model_in + r * (C + Ci) * hw, latents + src * C * hw, sizeof(float) * (size_t)(C * hw));
                memcpy(model_in + r * (C + Ci) * hw + C * hw, p->image_latents + src * Ci * hw,
                       sizeof(float) * (size_t)(Ci * hw));
            }
        }
        for (int64_t b = 0; b < Bm; b++) tsteps[b] = t;
        if (p->teacache) {
            p->teacache->step = i;
            p->teacache->num_steps = count;
        }
        cvx_dit_call call = {Bm, F, H, W, L, model_in, text, tsteps, rope_cos, rope_sin, model_out, p->pool, NULL,
                             p->cancel, p->cancel_user_data, seq};
        if (halves == 2) { /* this rank's half of the CFG batch */
            call.B = nb;
            call.text = text + half * nb * L * Dt;
            call.out = model_out + half * n;
        }
        if ((st = cvx_dit_forward(model, &call)) != CVX_OK) {
            cvx_error_copy(err, cvx_dit_error(model));
            goto done;
        }
        if (halves == 2 &&
            (st = cvx_dist_sendrecv(p->world, model_out + half * n, model_out + (1 - half) * n, sizeof(float) * (size_t)n,
                                    (rank + dg) % ranks, err)) != CVX_OK)
            goto done;
        double gs = cvx_denoise_guidance(p, t);
        const float *v = model_out;
        if (cfg_on) {
            const float gf = (float)gs, *unc = model_out, *txt = model_out + n;
            for (int64_t j = 0; j < n; j++) guided[j] = unc[j] + gf * (txt[j] - unc[j]);
            v = guided;
        }
        if ((st = cvx_scheduler_step(sched, &state, v, t, latents, g, latents, err)) != CVX_OK) goto done;
        if (p->progress) {
            cvx_denoise_step info = {i,      count, t, gs, model_in, model_out, latents, cvx_time_seconds() - t0,
                                     &state, g,     p->teacache ? p->teacache->computed : 1,      p->teacache};
            p->progress(p->progress_user_data, &info);
        }
    }
done:
    cvx_dist_free(seq);
    cvx_dit_set_teacache(model, NULL);
    cvx_sched_state_release(&state);
    free(model_in), free(model_out), free(guided), free(text), free(tsteps), free(rope_cos), free(rope_sin);
    return st;
}
