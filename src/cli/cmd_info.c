/* cogvideox info DIR [--json] [--no-weights]   describes a model folder (src/io/model.h)
 * cogvideox info --cpu [--json]                 describes this CPU and the kernel path in use */
#include <inttypes.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "cli/cli.h"
#include "diffusion/pipeline.h"
#include "cogvideox.h"
#include "io/model.h"
#include "kernels/kernels.h"
#include "core/log.h"

static void usage(FILE *f) {
    fprintf(f, "usage: cogvideox info DIR [--json] [--no-weights]\n"
               "       cogvideox info --cpu [--json]\n"
               "Describes a CogVideoX pipeline folder: components, classes, key config values, parameters per\n"
               "component, storage dtypes, bytes on disk and an estimate of peak memory for the default\n"
               "generation; every weight file is opened and every tensor's name and shape checked against the\n"
               "config (--no-weights: configs only). --cpu: the instruction sets this CPU and OS support and the\n"
               "kernel path in use (CVX_FORCE_ISA=ref|avx2|avx512|avx512bf16|amx selects a lower one).\n"
               "example: cogvideox info models/tiny    cogvideox info --cpu\n");
}

/* ---- --cpu --------------------------------------------------------------------------------------------- */
static int info_cpu(int json) {
    const cvx_cpu_info *c = cvx_cpu_get();
    const cvx_kernel_table *kt = cvx_kernels_active();
    const char *forced = getenv("CVX_FORCE_ISA");
    const struct {
        const char *name;
        int v;
    } feats[] = {{"sse4.2", c->sse42},
                 {"avx", c->avx},
                 {"avx2", c->avx2},
                 {"fma", c->fma},
                 {"f16c", c->f16c},
                 {"avx512f", c->avx512f},
                 {"avx512bw", c->avx512bw},
                 {"avx512vl", c->avx512vl},
                 {"avx512dq", c->avx512dq},
                 {"avx512_bf16", c->avx512_bf16},
                 {"avx512_vnni", c->avx512_vnni},
                 {"avx_vnni", c->avx_vnni},
                 {"amx_tile", c->amx_tile},
                 {"amx_bf16", c->amx_bf16},
                 {"amx_int8", c->amx_int8}};
    const int nf = (int)(sizeof feats / sizeof feats[0]);
    int amx_usable = cvx_isa_supported(CVX_ISA_AMX);
    if (json) {
        json_t *o = json_object(), *f = json_object(), *paths = json_object();
        json_object_set_new(o, "vendor", json_string(c->vendor));
        json_object_set_new(o, "brand", json_string(c->brand));
        json_object_set_new(o, "logical_cpus", json_integer(c->logical_cpus));
        for (int i = 0; i < nf; i++)
            json_object_set_new(f, feats[i].name, json_boolean(feats[i].v));
        json_object_set_new(o, "features", f);
        json_object_set_new(o, "os_avx", json_boolean(c->os_avx));
        json_object_set_new(o, "os_avx512", json_boolean(c->os_avx512));
        json_object_set_new(o, "os_amx", json_boolean(c->os_amx));
        json_object_set_new(o, "amx_permitted", json_boolean(c->amx_permitted));
        json_object_set_new(o, "amx_usable", json_boolean(amx_usable));
        for (int i = 0; i < CVX_ISA_COUNT; i++)
            json_object_set_new(paths, cvx_isa_name((cvx_isa)i),
                                json_pack("{s:b,s:b}", "supported", cvx_isa_supported((cvx_isa)i), "built",
                                          cvx_kernels_for((cvx_isa)i) != NULL));
        json_object_set_new(o, "paths", paths);
        json_object_set_new(o, "best_path", json_string(cvx_isa_name(cvx_isa_best())));
        json_object_set_new(o, "active_path", json_string(cvx_isa_name(cvx_isa_active())));
        json_object_set_new(o, "kernel_table", json_string(cvx_isa_name(kt->isa)));
        json_object_set_new(o, "fp32_kernels", json_string(cvx_isa_name(kt->isa)));
        json_object_set_new(o, "bf16_kernels", json_string(cvx_bf16_kernels_name(cvx_bf16_kernels_active())));
        json_object_set_new(o, "bf16_native", json_boolean(cvx_precision_native(CVX_PRECISION_BF16)));
        json_object_set_new(o, "precision_auto", json_string(cvx_precision_name(cvx_precision_default())));
        json_object_set_new(o, "force_isa", forced && *forced ? json_string(forced) : json_null());
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s ? s : "{}");
        free(s);
        json_decref(o);
        return 0;
    }
    printf("cpu          %s (%s), %d logical CPUs\n", c->brand[0] ? c->brand : "?", c->vendor, c->logical_cpus);
    printf("features    ");
    for (int i = 0; i < nf; i++)
        printf(" %s%s", feats[i].v ? "+" : "-", feats[i].name);
    printf("\nos support   avx state %s, avx-512 state %s, amx tile state %s; amx permission %s\n",
           c->os_avx ? "on" : "off", c->os_avx512 ? "on" : "off", c->os_amx ? "on" : "off",
           c->amx_permitted ? "granted" : "not granted");
    printf("amx          %s\n", amx_usable    ? "usable"
                                : c->amx_tile ? "present but not usable (OS state or permission)"
                                              : "not present");
    printf("paths       ");
    for (int i = 0; i < CVX_ISA_COUNT; i++)
        printf(" %s%s%s", cvx_isa_name((cvx_isa)i), cvx_isa_supported((cvx_isa)i) ? "" : "(unsupported)",
               cvx_kernels_for((cvx_isa)i) ? "" : "(not built)");
    printf("\nbest path    %s\n", cvx_isa_name(cvx_isa_best()));
    printf("active path  %s%s%s%s\n", cvx_isa_name(cvx_isa_active()), forced && *forced ? " (CVX_FORCE_ISA=" : "",
           forced && *forced ? forced : "", forced && *forced ? ")" : "");
    /* the fp32 products and the bf16 ones may run on different kernels (no fp32 AMX: fp32 stays on AVX-512) */
    printf("kernels      fp32 (--precision fp32, norms, softmax) on %s; bf16 (--precision bf16) on %s%s\n",
           cvx_isa_name(kt->isa), cvx_bf16_kernels_name(cvx_bf16_kernels_active()),
           cvx_precision_native(CVX_PRECISION_BF16) ? "" : " (slower than fp32, refused by generate)");
    printf("precision    auto = %s here\n", cvx_precision_name(cvx_precision_default()));
    return 0;
}

/* ---- a model folder -------------------------------------------------------------------------------------- */
static const char *commas(int64_t v, char *buf, size_t size) {
    char tmp[32];
    snprintf(tmp, sizeof tmp, "%lld", (long long)(v < 0 ? -v : v));
    size_t len = strlen(tmp), o = 0;
    if (v < 0 && o + 1 < size) buf[o++] = '-';
    for (size_t i = 0; i < len && o + 2 < size; i++) {
        if (i && (len - i) % 3 == 0) buf[o++] = ',';
        buf[o++] = tmp[i];
    }
    buf[o] = '\0';
    return buf;
}

static void dtypes_str(const cvx_model_component *c, char *buf, size_t size) {
    size_t o = 0;
    buf[0] = '\0';
    for (int d = 0; d < CVX_DTYPE_COUNT; d++) {
        if (!c->dtype_params[d]) continue;
        int mixed = c->dtype_params[d] != c->n_params;
        if (mixed)
            o += (size_t)snprintf(buf + o, o < size ? size - o : 0, "%s%s %.0f%%", o ? ", " : "",
                                  cvx_dtype_name((cvx_dtype)d), 100.0 * c->dtype_params[d] / c->n_params);
        else
            o += (size_t)snprintf(buf + o, o < size ? size - o : 0, "%s", cvx_dtype_name((cvx_dtype)d));
        if (o >= size) break;
    }
}

static void describe(const cvx_model_component *c, char *buf, size_t size) {
    switch (c->cls) {
    case CVX_CLASS_T5_TOKENIZER:
        if (c->model_max_length > 0)
            snprintf(buf, size, "spiece.model %" PRIu64 " bytes, model_max_length %lld", c->spiece_bytes,
                     (long long)c->model_max_length);
        else
            snprintf(buf, size, "spiece.model %" PRIu64 " bytes", c->spiece_bytes);
        break;
    case CVX_CLASS_T5_ENCODER: {
        const cvx_t5_config *t = &c->cfg.t5;
        snprintf(buf, size, "d_model %lld, %lld layers, %lld heads x %lld, d_ff %lld, %s, vocab %lld, eps %g",
                 (long long)t->d_model, (long long)t->num_layers, (long long)t->num_heads, (long long)t->d_kv,
                 (long long)t->d_ff, t->feed_forward_proj, (long long)t->vocab_size, t->layer_norm_epsilon);
        break;
    }
    case CVX_CLASS_TRANSFORMER_3D: {
        const cvx_transformer_config *t = &c->cfg.transformer;
        snprintf(buf, size,
                 "%lld layers, %lld heads x %lld (width %lld), time %lld, text %lld x %lld, patch %lld, sample %lld "
                 "frames x %lld x %lld latents, %s positions",
                 (long long)t->num_layers, (long long)t->num_attention_heads, (long long)t->attention_head_dim,
                 (long long)t->inner_dim, (long long)t->time_embed_dim, (long long)t->max_text_seq_length,
                 (long long)t->text_embed_dim, (long long)t->patch_size, (long long)t->sample_frames,
                 (long long)t->sample_height, (long long)t->sample_width,
                 t->use_rotary_positional_embeddings
                     ? (t->use_learned_positional_embeddings ? "rotary + learned" : "rotary")
                     : "sincos");
        break;
    }
    case CVX_CLASS_VAE: {
        const cvx_vae_config *v = &c->cfg.vae;
        char ch[96] = "";
        size_t o = 0;
        for (int i = 0; i < v->n_blocks && o < sizeof ch; i++)
            o += (size_t)snprintf(ch + o, sizeof ch - o, "%s%lld", i ? "/" : "", (long long)v->block_out_channels[i]);
        snprintf(buf, size,
                 "channels %s, %lld layers per block, %lld groups, latent %lld, scaling_factor %.9g, temporal x%g, "
                 "spatial x%lld",
                 ch, (long long)v->layers_per_block, (long long)v->norm_num_groups, (long long)v->latent_channels,
                 v->scaling_factor, v->temporal_compression_ratio, (long long)1 << (v->n_blocks - 1));
        break;
    }
    default: {
        const cvx_scheduler_config *s = &c->cfg.scheduler;
        snprintf(buf, size, "%s, %s spacing, %lld train steps, %s beta %g..%g%s, snr_shift_scale %g",
                 s->prediction_type, s->timestep_spacing, (long long)s->num_train_timesteps, s->beta_schedule,
                 s->beta_start, s->beta_end, s->rescale_betas_zero_snr ? ", zero-SNR rescale" : "", s->snr_shift_scale);
        break;
    }
    }
}

static int info_model(const char *dir, int json, int check_weights) {
    cvx_model_open_params p = cvx_model_open_params_default();
    p.check_weights = check_weights;
    cvx_model *m = NULL;
    cvx_error err = {0};
    if (cvx_model_open(&m, dir, &p, &err)) {
        fprintf(stderr, "cogvideox info: %s\n", cvx_error_message(&err));
        return 2;
    }
    cvx_model_info mi; /* what generate and serve report: name, variant, random weights or not */
    cvx_model_info_of(m, dir, &mi);
    cvx_memory_estimate me;
    int have_me = check_weights && cvx_model_memory_estimate(m, &me, &err) == CVX_OK;
    int64_t total_params = 0;
    uint64_t total_bytes = 0;
    for (int i = 0; i < m->n_comp; i++)
        total_params += m->comp[i].n_params, total_bytes += m->comp[i].file_bytes;
    char desc[512], a[64], b[64], dt[96];
    if (json) {
        json_t *o = json_object(), *comps = json_array();
        json_object_set_new(o, "folder", json_string(dir));
        json_object_set_new(o, "model_name", json_string(mi.model_name));
        json_object_set_new(o, "variant", json_string(mi.model_variant));
        json_object_set_new(o, "kind", json_string(mi.kind));
        json_object_set_new(o, "text_encoder", json_boolean(mi.has_text_encoder));
        json_object_set_new(o, "weights", json_string(cvx_weights_kind_name(mi.weights)));
        json_object_set_new(o, "weights_origin", json_string(mi.weights_origin));
        json_object_set_new(o, "pipeline", json_string(m->pipeline_class));
        json_object_set_new(o, "diffusers_version", json_string(m->diffusers_version));
        for (int i = 0; i < m->n_comp; i++) {
            const cvx_model_component *c = &m->comp[i];
            describe(c, desc, sizeof desc);
            json_t *cj = json_pack("{s:s,s:s,s:s,s:s}", "name", c->name, "library", c->library, "class", c->class_name,
                                   "summary", desc);
            if (c->config && c->cls != CVX_CLASS_T5_TOKENIZER)
                json_object_set(cj, "config", cvx_config_json(c->config));
            if (c->expected.n) {
                json_object_set_new(cj, "tensors", json_integer((json_int_t)c->expected.n));
                json_object_set_new(cj, "parameters_expected", json_integer(c->expected.numel));
            }
            if (c->weights_checked) {
                json_t *dts = json_object();
                for (int d = 0; d < CVX_DTYPE_COUNT; d++)
                    if (c->dtype_params[d])
                        json_object_set_new(dts, cvx_dtype_name((cvx_dtype)d), json_integer(c->dtype_params[d]));
                json_object_set_new(cj, "parameters", json_integer(c->n_params));
                json_object_set_new(cj, "dtypes", dts);
                json_object_set_new(cj, "files", json_integer(c->n_files));
                json_object_set_new(cj, "file_bytes", json_integer((json_int_t)c->file_bytes));
                json_object_set_new(cj, "data_bytes", json_integer((json_int_t)c->data_bytes));
            }
            json_array_append_new(comps, cj);
        }
        json_object_set_new(o, "components", comps);
        if (check_weights) {
            json_object_set_new(o, "total_parameters", json_integer(total_params));
            json_object_set_new(o, "total_file_bytes", json_integer((json_int_t)total_bytes));
        }
        if (have_me)
            json_object_set_new(
                o, "memory_estimate",
                json_pack("{s:I,s:I,s:I,s:I,s:I,s:{s:I,s:I},s:{s:I,s:I},s:{s:I,s:I},s:I,s:s}", "height",
                          (json_int_t)me.height, "width", (json_int_t)me.width, "frames", (json_int_t)me.frames,
                          "latent_frames", (json_int_t)me.latent_frames, "transformer_tokens", (json_int_t)me.seq_len,
                          "text_encoder", "weights", (json_int_t)me.t5_weights, "activations", (json_int_t)me.t5_act,
                          "transformer", "weights", (json_int_t)me.transformer_weights, "activations",
                          (json_int_t)me.transformer_act, "vae", "weights", (json_int_t)me.vae_weights, "activations",
                          (json_int_t)me.vae_act, "peak_bytes", (json_int_t)me.peak, "peak_stage", me.peak_stage));
        char *s = json_dumps(o, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        puts(s ? s : "{}");
        free(s);
        json_decref(o);
        cvx_model_close(m);
        return 0;
    }
    printf("folder        %s\n", dir);
    printf("kind          %s (%s)%s\n", mi.kind,
           !strcmp(mi.kind, "i2v") ? "image-to-video: generate --image FILE" : "text-to-video; video-to-video with "
                                                                               "generate --video",
           mi.has_text_encoder ? "" : "; no text encoder: generate --embeddings FILE");
    printf("weights       %s: %s\n", cvx_weights_kind_name(mi.weights), mi.weights_origin);
    printf("pipeline      %s%s%s\n", m->pipeline_class, m->diffusers_version[0] ? ", diffusers " : "",
           m->diffusers_version);
    for (int i = 0; i < m->n_comp; i++) {
        const cvx_model_component *c = &m->comp[i];
        describe(c, desc, sizeof desc);
        if (c->weights_checked) {
            dtypes_str(c, dt, sizeof dt);
            printf("%-13s %-28s %15s params  %-5s %10s in %d file%s (%zu tensors, names and shapes checked)\n", c->name,
                   c->class_name, commas(c->n_params, a, sizeof a), dt, cvx_format_bytes(c->file_bytes, b, sizeof b), c->n_files,
                   c->n_files == 1 ? "" : "s", c->expected.n);
        } else if (c->expected.n) {
            printf("%-13s %-28s %15s params (from the config; weights not opened)\n", c->name, c->class_name,
                   commas(c->expected.numel, a, sizeof a));
        } else {
            printf("%-13s %s\n", c->name, c->class_name);
        }
        printf("%-13s   %s\n", "", desc);
    }
    if (check_weights)
        printf("total         %s params, %s of weights\n", commas(total_params, a, sizeof a),
               cvx_format_bytes(total_bytes, b, sizeof b));
    if (have_me) {
        char w1[32], x1[32], w2[32], x2[32], w3[32], x3[32], pk[32];
        printf("default video %lld frames of %lldx%lld (%lld latent frames, %lld transformer tokens)\n",
               (long long)me.frames, (long long)me.height, (long long)me.width, (long long)me.latent_frames,
               (long long)me.seq_len);
        printf("peak memory   ~%s (%s stage): text encoder %s + %s, transformer %s + %s, vae decode %s + %s\n",
               cvx_format_bytes(me.peak, pk, sizeof pk), me.peak_stage, cvx_format_bytes(me.t5_weights, w1, sizeof w1),
               cvx_format_bytes(me.t5_act, x1, sizeof x1), cvx_format_bytes(me.transformer_weights, w2, sizeof w2),
               cvx_format_bytes(me.transformer_act, x2, sizeof x2), cvx_format_bytes(me.vae_weights, w3, sizeof w3),
               cvx_format_bytes(me.vae_act, x3, sizeof x3));
        printf("              (each stage holds only its own weights, as stored, + its f32 activations: CFG batch 2, "
               "attention streamed, VAE in frame batches)\n");
    }
    cvx_model_close(m);
    return 0;
}

int cvx_cmd_info(int argc, char **argv) {
    int cpu = 0, json = 0, check_weights = 1;
    const char *dir = NULL;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "-h") || !strcmp(argv[i], "--help")) {
            usage(stdout);
            return 0;
        } else if (!strcmp(argv[i], "--cpu"))
            cpu = 1;
        else if (!strcmp(argv[i], "--json"))
            json = 1;
        else if (!strcmp(argv[i], "--no-weights"))
            check_weights = 0;
        else if (argv[i][0] == '-' && argv[i][1]) {
            CVX_CLI_UNKNOWN("info", argv[i], "--cpu", "--json", "--no-weights", "--help");
            usage(stderr);
            return 1;
        } else if (!dir)
            dir = argv[i];
        else {
            fprintf(stderr, "cogvideox info: more than one folder given\n");
            return 1;
        }
    }
    if (cpu) return info_cpu(json);
    if (!dir) {
        usage(stderr);
        return 1;
    }
    int rc = cvx_cli_check_model_dir("info", dir);
    if (rc) return rc;
    return info_model(dir, json, check_weights);
}
