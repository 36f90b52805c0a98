/* The engine's lifecycle (include/cogvideox.h): opening a model folder (configs, tokenizer, scheduler config, the
 * thread pool), the defaults and limits every front end takes (cvx_engine_info), the model's identity that every
 * checkpoint carries, and the file writers of libcogvideox-media. One generation is pipeline.c. */
#include "diffusion/engine.h"

#include <dirent.h>
#include <jansson.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "core/fs.h"
#include "diffusion/scheduler.h"
#include "io/model_maker.h"

uint64_t cvx__fnv1a(uint64_t h, const void *data, size_t n) {
    const unsigned char *p = data;
    for (size_t i = 0; i < n; i++) h = (h ^ p[i]) * 0x100000001b3ull;
    return h;
}


/* ---- the file writers: libcogvideox-media's (cvx_engine_use_writers), else the ones linked in ------------------- */
static _Atomic(const cvx_media_writers *) g_writers;
extern const cvx_media_writers cvx__media_builtin __attribute__((weak, visibility("hidden")));

void cvx_engine_use_writers(const cvx_media_writers *w) { atomic_store(&g_writers, w); }

const cvx_media_writers *cvx__engine_writers(void) {
    const cvx_media_writers *w = atomic_load(&g_writers);
    return w ? w : (&cvx__media_builtin ? &cvx__media_builtin : NULL);
}

/* ---- defaults and limits: the one source (cvx_engine_info) ----------------------------------------------------- */
static void base_info(cvx_model_info *o) {
    memset(o, 0, sizeof *o);
    o->default_steps = 50;
    o->default_guidance_scale = 6.0f;
    o->default_seed = 123456;
    o->default_frames = 49;
    o->default_height = 480;
    o->default_width = 720;
    o->default_fps = 8;
    snprintf(o->default_scheduler, sizeof o->default_scheduler, "ddim");
    snprintf(o->kind, sizeof o->kind, "t2v");
    o->has_text_encoder = 1;
    o->min_steps = 1;
    o->max_steps = 1000;
    o->min_guidance_scale = 0.0f;
    o->max_guidance_scale = 100.0f;
    o->min_frames = 5;
    o->max_frames = 49;
    o->frames_step = 4;
    o->min_size = 16;
    o->max_size = 2048;
    o->size_multiple = 16;
    o->min_fps = 1;
    o->max_fps = 120;
    o->weights = CVX_WEIGHTS_UNKNOWN;
}

const char *cvx_weights_kind_name(cvx_weights_kind k) {
    switch (k) {
    case CVX_WEIGHTS_RANDOM: return "random";
    case CVX_WEIGHTS_CHECKPOINT: return "checkpoint";
    default: return "unknown";
    }
}

/* The model's values: defaults from its configs, the frame and size rules from its VAE and patch size, and what its
 * weights are: make-model's marker file says random; without it, the shapes of a published model say checkpoint. */
/* A folder make-model wrote before it left its marker: the transformer's final norm scale holds make-model's draws
 * for seed 0, its default (the first 16 values, to the stored dtype's precision). */
static int made_by_make_model(const cvx_model *m) {
    const cvx_model_component *tr = cvx_model_component_get(m, "transformer");
    long idx = tr ? cvx_tensor_list_find(&tr->expected, "norm_final.weight") : -1;
    if (idx < 0) return 0;
    cvx_weights *w = NULL;
    cvx_error err;
    cvx_error_clear(&err);
    if (cvx_weights_open(&w, tr->dir, &err) != CVX_OK) return 0;
    const cvx_expected_tensor *e = &tr->expected.t[idx];
    const cvx_st_tensor *st = cvx_weights_find(w, e->name);
    int same = 0;
    if (st) {
        cvx_tensor t = cvx_st_view(st);
        int64_t count = cvx_tensor_numel(&t), n = count < 16 ? count : 16;
        same = n > 0;
        for (int64_t i = 0; i < n && same; i++) {
            double want = cvx_make_model_value(0, e, 0, (uint64_t)i), got = cvx_tensor_get(&t, i);
            same = fabs(got - want) <= 1e-2 * fabs(want) + 1e-6; /* f16 / bf16 rounding */
        }
    }
    cvx_weights_close(w);
    return same;
}

void cvx_model_info_of(const cvx_model *m, const char *dir, cvx_model_info *o) {
    base_info(o);
    const cvx_transformer_config *tc = &cvx_model_component_get(m, "transformer")->cfg.transformer;
    const cvx_vae_config *vc = &cvx_model_component_get(m, "vae")->cfg.vae;
    int spatial = 1 << (vc->n_blocks - 1);
    o->frames_step = (int)vc->temporal_compression_ratio;
    o->min_frames = o->frames_step + 1;
    o->max_frames = 12 * o->frames_step + 1; /* 49 for the factor 4 of every CogVideoX VAE */
    int64_t f = tc->sample_frames;
    if (f < o->min_frames || f > o->max_frames || (f - 1) % o->frames_step) f = o->max_frames;
    o->default_frames = (int)f;
    o->size_multiple = spatial * (int)tc->patch_size;
    o->min_size = o->size_multiple;
    o->default_height = (int)tc->sample_height * spatial;
    o->default_width = (int)tc->sample_width * spatial;
    const cvx_model_component *sc = cvx_model_component_get(m, "scheduler");
    if (sc && sc->cls == CVX_CLASS_DPM_SCHEDULER) snprintf(o->default_scheduler, sizeof o->default_scheduler, "dpm");
    /* the folder's name, without trailing slashes */
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') len--;
    size_t start = len;
    while (start > 0 && dir[start - 1] != '/') start--;
    snprintf(o->model_name, sizeof o->model_name, "%.*s", (int)(len - start), dir + start);
    int is_2b = tc->num_layers == 30 && tc->num_attention_heads == 30 && tc->attention_head_dim == 64 &&
                !tc->use_rotary_positional_embeddings;
    int is_5b = tc->num_layers == 42 && tc->num_attention_heads == 48 && tc->attention_head_dim == 64 &&
                tc->use_rotary_positional_embeddings;
    const int i2v = tc->in_channels == 2 * tc->out_channels;
    snprintf(o->kind, sizeof o->kind, "%s", i2v ? "i2v" : "t2v");
    o->has_text_encoder = cvx_model_component_get(m, "text_encoder") != NULL;
    snprintf(o->model_variant, sizeof o->model_variant, "%s",
             is_2b && !i2v ? "CogVideoX-2b"
             : is_5b && i2v && tc->use_learned_positional_embeddings ? "CogVideoX-5b-I2V"
             : is_5b && !i2v ? "CogVideoX-5b"
                             : "custom");
    char *marker = cvx_path_join(dir, CVX_RANDOM_WEIGHTS_MARKER);
    json_t *mk = marker ? json_load_file(marker, 0, NULL) : NULL;
    free(marker);
    if (mk) {
        const char *preset = json_string_value(json_object_get(mk, "preset"));
        json_t *seed = json_object_get(mk, "seed");
        o->weights = CVX_WEIGHTS_RANDOM;
        snprintf(o->weights_origin, sizeof o->weights_origin,
                 "random weights from cogvideox make-model --preset %s (seed %lld): the videos are noise",
                 preset ? preset : "?", (long long)json_integer_value(seed));
        json_decref(mk);
    } else if (made_by_make_model(m)) {
        o->weights = CVX_WEIGHTS_RANDOM;
        snprintf(o->weights_origin, sizeof o->weights_origin,
                 "cogvideox make-model's random weights (seed 0; written before it marked its folders): the "
                 "videos are noise");
    } else if (is_2b || is_5b) {
        o->weights = CVX_WEIGHTS_CHECKPOINT;
        snprintf(o->weights_origin, sizeof o->weights_origin,
                 "no make-model marker and not its seed-0 weights; the shapes of %s (the weights are not compared "
                 "with the hub's)",
                 o->model_variant);
    } else {
        o->weights = CVX_WEIGHTS_UNKNOWN;
        snprintf(o->weights_origin, sizeof o->weights_origin,
                 "no make-model marker and not its seed-0 weights; not the shapes of a published CogVideoX model");
    }
}

cvx_status cvx_engine_info(const cvx_engine *e, cvx_model_info *out) {
    if (!out) return CVX_ERR_INVALID_ARGUMENT;
    if (e) *out = e->info;
    else base_info(out);
    return CVX_OK;
}

cvx_engine_params cvx_engine_params_default(void) {
    cvx_engine_params p;
    memset(&p, 0, sizeof p);
    p.threads = 0;
    p.logger = cvx_logger_default();
    return p;
}

cvx_generate_params cvx_generate_params_default(void) {
    cvx_generate_params p;
    memset(&p, 0, sizeof p);
    p.prompt = "";
    p.negative_prompt = "";
    p.steps = 50;
    p.guidance_scale = 6.0f;
    p.seed = 123456;
    p.num_frames = 0; /* the model's sample_frames */
    p.fps = 8;
    p.precision = CVX_PRECISION_FP32;
    p.noise_dtype = CVX_NOISE_F32;
    p.strength = 0.8; /* CogVideoXVideoToVideoPipeline's default */
    return p;
}

/* ---- model identity ------------------------------------------------------------------------------------------
 * A checkpoint is only applied by the model that wrote it. The identity is a digest of the folder: every file's
 * path and size (the root and one level of component folders), the whole of every config and the tokenizer, and of
 * each weight file its safetensors header plus 16 samples of 4 KiB spread over the data — so two folders with the
 * same shapes but other weights differ, at the cost of a few reads per file, not the weights' gigabytes. */

static int cmp_names(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static uint64_t hash_file(uint64_t h, const char *path, uint64_t size, int whole) {
    FILE *f = fopen(path, "rb");
    if (!f) return cvx__fnv1a(h, "?", 1);
    unsigned char buf[4096];
    if (whole) {
        size_t got;
        while ((got = fread(buf, 1, sizeof buf, f)) > 0) h = cvx__fnv1a(h, buf, got);
    } else {
        uint64_t head = 0; /* safetensors: 8-byte header length, JSON header, data */
        if (fread(&head, 1, 8, f) == 8 && head < size && head < ((uint64_t)64 << 20)) {
            for (uint64_t left = head; left > 0;) {
                size_t want = left < sizeof buf ? (size_t)left : sizeof buf, got = fread(buf, 1, want, f);
                if (got == 0) break;
                h = cvx__fnv1a(h, buf, got);
                left -= got;
            }
        }
        for (int k = 0; k < 16 && size > sizeof buf; k++) {
            uint64_t at = (size - sizeof buf) / 15 * (uint64_t)k;
            if (fseeko(f, (off_t)at, SEEK_SET) != 0) break;
            size_t got = fread(buf, 1, sizeof buf, f);
            h = cvx__fnv1a(h, buf, got);
        }
    }
    fclose(f);
    return h;
}

/* depth 0: the model folder (its files, then its folders at depth 1); depth 1: a component's files. */
static uint64_t hash_dir(uint64_t h, const char *dir, const char *rel, int depth) {
    DIR *d = opendir(dir);
    if (!d) return h;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *de;
    while ((de = readdir(d))) {
        if (de->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof *names);
            if (!nn) break;
            names = nn;
        }
        if (!(names[n] = strdup(de->d_name))) break;
        n++;
    }
    closedir(d);
    if (n) qsort(names, n, sizeof *names, cmp_names);
    for (size_t i = 0; i < n; i++) {
        char path[4096], name[1024];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        snprintf(name, sizeof name, "%s%s", rel, names[i]);
        struct stat st;
        if (stat(path, &st) == 0 && S_ISREG(st.st_mode)) {
            uint64_t size = (uint64_t)st.st_size;
            h = cvx__fnv1a(h, name, strlen(name) + 1);
            h = cvx__fnv1a(h, &size, sizeof size);
            size_t l = strlen(names[i]);
            int weights = l > 12 && !strcmp(names[i] + l - 12, ".safetensors");
            int small = size <= ((uint64_t)16 << 20); /* configs, index files, the tokenizer */
            if (weights || small) h = hash_file(h, path, size, !weights);
        } else if (depth == 0 && stat(path, &st) == 0 && S_ISDIR(st.st_mode)) {
            char sub[1024];
            snprintf(sub, sizeof sub, "%s/", names[i]);
            h = hash_dir(h, path, sub, 1);
        }
        free(names[i]);
    }
    free(names);
    return h;
}

static uint64_t model_identity(const char *dir) { return hash_dir(0xcbf29ce484222325ull, dir, "", 0); }

cvx_status cvx_engine_open(cvx_engine **out, const char *model_dir, const cvx_engine_params *params, char *err_buf,
                           size_t err_buf_size) {
    *out = NULL;
    cvx_engine_params defaults = cvx_engine_params_default();
    if (!params) params = &defaults;
    cvx_engine *e = calloc(1, sizeof *e);
    cvx_error err;
    cvx_error_clear(&err);
    cvx_status st;
    char *path = NULL;
    if (!e) {
        st = cvx_fail(&err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        goto fail;
    }
    e->logger = params->logger;
    e->dir = strdup(model_dir);
    cvx_model_open_params mp = cvx_model_open_params_default();
    mp.check_weights = 1;
    st = cvx_model_open(&e->model, model_dir, &mp, &err);
    if (st != CVX_OK) goto fail;
    const cvx_model_component *tok = cvx_model_component_get(e->model, "tokenizer");
    if (tok) { /* a folder without a text encoder takes prompt embeddings only */
        path = cvx_path_join(tok->dir, "spiece.model");
        st = cvx_t5_tokenizer_load_file(path, &e->tokenizer, &err);
        if (st != CVX_OK) goto fail;
        free(path);
    }
    const cvx_model_component *sc = cvx_model_component_get(e->model, "scheduler");
    path = cvx_path_join(sc->dir, "scheduler_config.json");
    json_error_t je;
    e->scheduler_config = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!e->scheduler_config) {
        st = cvx_fail(&err, CVX_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
        goto fail;
    }
    /* Check the scheduler config now, not in the middle of a generation. */
    cvx_scheduler *probe = NULL;
    st = cvx_scheduler_create(&probe, e->scheduler_config, CVX_SCHED_AUTO, path, &err);
    cvx_scheduler_free(probe);
    if (st != CVX_OK) goto fail;
    free(path);
    path = NULL;
    e->pool = cvx_pool_new(params->threads);
    if (!e->pool) {
        st = cvx_fail(&err, CVX_ERR_OUT_OF_MEMORY, "cannot start %d worker threads", params->threads);
        goto fail;
    }
    e->model_id = model_identity(model_dir);
    cvx_model_info_of(e->model, model_dir, &e->info);
    cvx_log_info(&e->logger, "opened %s (%d threads)", model_dir, cvx_pool_size(e->pool));
    *out = e;
    return CVX_OK;
fail:
    free(path);
    if (err_buf && err_buf_size) snprintf(err_buf, err_buf_size, "%s", cvx_error_message(&err));
    cvx_engine_close(e);
    return st;
}

void cvx_engine_close(cvx_engine *e) {
    if (!e) return;
    cvx_pool_free(e->pool);
    json_decref(e->scheduler_config);
    cvx_t5_tokenizer_free(e->tokenizer);
    cvx_model_close(e->model);
    free(e->dir);
    free(e);
}

const char *cvx_engine_last_error(const cvx_engine *e) { return e ? e->err.message : ""; }

void cvx_video_free(cvx_video *v) {
    if (!v) return;
    free(v->frames);
    v->frames = NULL;
    free(v->computed_steps);
    v->computed_steps = NULL;
    v->num_computed_steps = 0;
}

