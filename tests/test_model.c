/* Model folders, configs and make-model:
 *  - names/shapes derived from the real CogVideoX-2b/5b configs == the reference's manifests
 *    (tests/data/real, copied from ../shared/golden/real);
 *  - the config writer reproduces the real config files byte for byte; the T5 shard split reproduces the
 *    predicted model.safetensors.index.json;
 *  - every golden case's weights (../shared/golden, when present) match the names/shapes derived from its config;
 *  - make-model tiny → open → counts; the corruption cases fail with a message naming the problem. */
#include <dirent.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/config.h"
#include "io/model.h"
#include "io/model_maker.h"
#include "io/safetensors.h"
#include "testlib.h"

#define REAL "tests/data/real"

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    if (buf && fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        buf = NULL;
    }
    fclose(f);
    if (buf) buf[n] = '\0';
    if (len) *len = (size_t)n;
    return buf;
}

static int file_exists(const char *p) {
    struct stat sb;
    return stat(p, &sb) == 0;
}

/* ---- derived tensors == manifests ------------------------------------------------------------------------- */
static void check_manifest(cvx_class cls, const char *config_path, const char *manifest_path, const char *list_key,
                           const char *count_key) {
    cvx_error err = {0};
    cvx_config *cfg = NULL;
    CHECK_MSG(cvx_config_load(&cfg, config_path, &err) == CVX_OK, "%s", err.message);
    if (!cfg) return;
    cvx_tensor_list l;
    cvx_status st = cvx_model_expected_tensors(cls, cfg, &l, &err);
    CHECK_MSG(st == CVX_OK, "%s", err.message);
    json_error_t je;
    json_t *man = json_load_file(manifest_path, 0, &je);
    CHECK_MSG(man != NULL, "%s: %s", manifest_path, je.text);
    json_t *arr = json_object_get(man, list_key);
    CHECK(json_is_array(arr));
    CHECK_MSG(json_array_size(arr) == l.n, "%s: %zu tensors derived, manifest has %zu", manifest_path, l.n,
              json_array_size(arr));
    int bad = 0;
    for (size_t i = 0; i < l.n && i < json_array_size(arr) && bad < 5; i++) {
        json_t *e = json_array_get(arr, i), *shape = json_object_get(e, "shape");
        const char *name = json_string_value(json_object_get(e, "name"));
        int same = name && !strcmp(name, l.t[i].name) && (int)json_array_size(shape) == l.t[i].ndim;
        for (int d = 0; same && d < l.t[i].ndim; d++)
            same = json_integer_value(json_array_get(shape, (size_t)d)) == l.t[i].shape[d];
        if (!same) bad++;
        CHECK_MSG(same, "%s: entry %zu: derived %s, manifest %s", manifest_path, i, l.t[i].name, name ? name : "?");
    }
    json_int_t count = json_integer_value(json_object_get(man, count_key));
    CHECK_MSG(count == l.numel, "%s: %lld parameters derived, manifest says %lld", manifest_path, (long long)l.numel,
              (long long)count);
    printf("  %s: %zu tensors, %lld parameters == manifest\n", manifest_path, l.n, (long long)l.numel);
    json_decref(man);
    cvx_tensor_list_free(&l);
    cvx_config_free(cfg);
}

static void test_manifests(void) {
    check_manifest(CVX_CLASS_T5_ENCODER, REAL "/cogvideox-2b/text_encoder_config.json",
                   REAL "/cogvideox-2b/text_encoder_manifest.json", "parameters", "total_parameters");
    check_manifest(CVX_CLASS_TRANSFORMER_3D, REAL "/cogvideox-2b/transformer/config.json",
                   REAL "/cogvideox-2b/transformer_manifest.json", "tensors_in_state_dict_order", "num_parameters");
    check_manifest(CVX_CLASS_VAE, REAL "/cogvideox-2b/vae_config.json", REAL "/cogvideox-2b/vae_manifest.json",
                   "parameters", "num_parameters");
    check_manifest(CVX_CLASS_TRANSFORMER_3D, REAL "/cogvideox-5b/transformer/config.json",
                   REAL "/cogvideox-5b/transformer_manifest.json", "tensors_in_state_dict_order", "num_parameters");
}

/* ---- config text: byte-exact with the reference's files --------------------------------------------------- */
static void check_same_text(const char *what, const char *got, size_t got_len, const char *path) {
    size_t len;
    char *want = read_file(path, &len);
    CHECK_MSG(want != NULL, "cannot read %s", path);
    if (!want) return;
    CHECK_MSG(got && got_len == len && !memcmp(got, want, len), "%s differs from %s", what, path);
    free(want);
}

static void test_config_text(void) {
    static const char *const files[] = {REAL "/cogvideox-2b/model_index.json",
                                        REAL "/cogvideox-2b/scheduler/scheduler_config.json",
                                        REAL "/cogvideox-2b/text_encoder_config.json",
                                        REAL "/cogvideox-2b/transformer/config.json",
                                        REAL "/cogvideox-2b/vae_config.json",
                                        REAL "/cogvideox-5b/transformer/config.json",
                                        REAL "/cogvideox-5b/scheduler/scheduler_config.json",
                                        REAL "/cogvideox-2b/tokenizer/tokenizer_config.json",
                                        REAL "/cogvideox-2b/text_encoder_index.predicted.json"};
    /* parse + re-emit reproduces every file */
    for (size_t i = 0; i < sizeof files / sizeof files[0]; i++) {
        json_error_t je;
        json_t *j = json_load_file(files[i], 0, &je);
        CHECK_MSG(j != NULL, "%s: %s", files[i], je.text);
        size_t len;
        char *text = cvx_json_dumps_python(j, &len);
        check_same_text("re-emitted JSON", text, len, files[i]);
        free(text);
        json_decref(j);
    }
    /* the 2b preset's configs are the real ones */
    static const char *const comps[][2] = {{"model_index", REAL "/cogvideox-2b/model_index.json"},
                                           {"scheduler", REAL "/cogvideox-2b/scheduler/scheduler_config.json"},
                                           {"text_encoder", REAL "/cogvideox-2b/text_encoder_config.json"},
                                           {"transformer", REAL "/cogvideox-2b/transformer/config.json"},
                                           {"vae", REAL "/cogvideox-2b/vae_config.json"}};
    for (size_t i = 0; i < sizeof comps / sizeof comps[0]; i++) {
        json_t *j = NULL;
        cvx_error err = {0};
        CHECK_MSG(cvx_make_model_config("cogvideox-2b", comps[i][0], &j, &err) == CVX_OK, "%s", err.message);
        size_t len = 0;
        char *text = j ? cvx_json_dumps_python(j, &len) : NULL;
        check_same_text(comps[i][0], text, len, comps[i][1]);
        free(text);
        json_decref(j);
    }
    /* the tiny preset's transformer / VAE configs are the e2e golden model's */
    const char *g = cvx_test_shared_golden();
    if (g) {
        static const char *const tiny[][2] = {{"transformer", "transformer/config.json"},
                                              {"vae", "vae/config.json"},
                                              {"scheduler", "scheduler/scheduler_config.json"},
                                              {"model_index", "model_index.json"}};
        for (size_t i = 0; i < sizeof tiny / sizeof tiny[0]; i++) {
            char path[512];
            snprintf(path, sizeof path, "%s/e2e/t2v_2b_tiny_f16/model/%s", g, tiny[i][1]);
            if (!file_exists(path)) continue;
            json_t *j = NULL;
            CHECK(cvx_make_model_config("tiny", tiny[i][0], &j, NULL) == CVX_OK);
            size_t len = 0;
            char *text = j ? cvx_json_dumps_python(j, &len) : NULL;
            check_same_text(tiny[i][0], text, len, path);
            free(text);
            json_decref(j);
        }
    }
    /* Python's float repr and ensure_ascii */
    json_t *j =
        json_pack("{s:f,s:f,s:f,s:f,s:f,s:f,s:f,s:s,s:[],s:{}}", "a", 1e-05, "b", 0.0001, "c", 1e16, "d", 123456789.125,
                  "e", -0.0, "f", 1.5e-300, "g", 0.1, "h", "\xc3\xa9\xf0\x9f\x98\x80\"\\\n\x01", "i", "j");
    size_t len;
    char *text = cvx_json_dumps_python(j, &len);
    const char *want =
        "{\n  \"a\": 1e-05,\n  \"b\": 0.0001,\n  \"c\": 1e+16,\n  \"d\": 123456789.125,\n  \"e\": -0.0,\n"
        "  \"f\": 1.5e-300,\n  \"g\": 0.1,\n  \"h\": \"\\u00e9\\ud83d\\ude00\\\"\\\\\\n\\u0001\",\n"
        "  \"i\": [],\n  \"j\": {}\n}\n";
    CHECK_MSG(text && !strcmp(text, want), "python dumps: got\n%s", text ? text : "(null)");
    free(text);
    json_decref(j);
}

/* ---- the huggingface_hub shard split reproduces the predicted T5 index ----------------------------------- */
static void test_shards(void) {
    cvx_config *cfg = NULL;
    cvx_error err = {0};
    CHECK(cvx_config_load(&cfg, REAL "/cogvideox-2b/text_encoder_config.json", &err) == CVX_OK);
    if (!cfg) return;
    cvx_tensor_list l;
    CHECK(cvx_model_expected_tensors(CVX_CLASS_T5_ENCODER, cfg, &l, &err) == CVX_OK);
    int *shard_of = malloc(l.n * sizeof *shard_of);
    int n = cvx_shard_split(&l, 2, 5000000000ull, shard_of);
    CHECK(n == 2);
    json_t *idx = cvx_shard_index_json(&l, shard_of, n, "model", 2);
    size_t len;
    char *text = cvx_json_dumps_python(idx, &len);
    check_same_text("T5 fp16 index", text, len, REAL "/cogvideox-2b/text_encoder_index.predicted.json");
    free(text);
    json_decref(idx);
    /* shard bytes as in the manifest */
    json_t *man = json_load_file(REAL "/cogvideox-2b/text_encoder_manifest.json", 0, NULL);
    json_t *bytes = json_object_get(json_object_get(man, "predicted_sharding"), "shard_bytes");
    uint64_t got[2] = {0, 0};
    for (size_t i = 0; i < l.n; i++)
        got[shard_of[i]] += (uint64_t)l.t[i].numel * 2;
    CHECK(json_integer_value(json_object_get(bytes, "model-00001-of-00002.safetensors")) == (json_int_t)got[0]);
    CHECK(json_integer_value(json_object_get(bytes, "model-00002-of-00002.safetensors")) == (json_int_t)got[1]);
    /* fp32: 4 shards, as mochi's fp32 T5-XXL index */
    CHECK(cvx_shard_split(&l, 4, 5000000000ull, shard_of) == 4);
    json_decref(man);
    free(shard_of);
    cvx_tensor_list_free(&l);
    cvx_config_free(cfg);
}

/* ---- golden cases: every stored checkpoint matches the names/shapes derived from its config --------------- */
static void check_case_weights(const char *config_path, const char *weights_path, cvx_class cls) {
    cvx_error err = {0};
    cvx_config *cfg = NULL;
    cvx_weights *w = NULL;
    cvx_tensor_list l = {0};
    CHECK_MSG(cvx_config_load(&cfg, config_path, &err) == CVX_OK, "%s", err.message);
    if (cfg) CHECK_MSG(cvx_model_expected_tensors(cls, cfg, &l, &err) == CVX_OK, "%s", err.message);
    CHECK_MSG(cvx_weights_open(&w, weights_path, &err) == CVX_OK, "%s", err.message);
    if (w && l.n)
        CHECK_MSG(cvx_model_check_weights(config_path, weights_path, &l, w, &err) == CVX_OK, "%s", err.message);
    cvx_weights_close(w);
    cvx_tensor_list_free(&l);
    cvx_config_free(cfg);
}

static void test_golden_cases(void) {
    const char *g = cvx_test_shared_golden();
    if (!g) {
        printf("  ../shared/golden not present: golden checkpoints skipped\n");
        return;
    }
    static const char *const comps[] = {"transformer", "vae", "pipeline", "t5"};
    int n_checked = 0;
    for (size_t c = 0; c < 4; c++) {
        char dir[512];
        snprintf(dir, sizeof dir, "%s/%s", g, comps[c]);
        DIR *d = opendir(dir);
        if (!d) continue;
        struct dirent *de;
        while ((de = readdir(d))) {
            if (de->d_name[0] == '.') continue;
            char cfgp[1024], wp[1024];
            if (c == 3) {
                snprintf(cfgp, sizeof cfgp, "%s/%s/text_encoder/config.json", dir, de->d_name);
                snprintf(wp, sizeof wp, "%s/%s/text_encoder", dir, de->d_name);
                if (!file_exists(cfgp)) continue;
                check_case_weights(cfgp, wp, CVX_CLASS_T5_ENCODER);
            } else {
                snprintf(cfgp, sizeof cfgp, "%s/%s/config.json", dir, de->d_name);
                snprintf(wp, sizeof wp, "%s/%s/weights.safetensors", dir, de->d_name);
                if (!file_exists(cfgp) || !file_exists(wp)) continue;
                json_t *j = json_load_file(cfgp, 0, NULL);
                cvx_class cls = cvx_class_from_name(json_string_value(json_object_get(j, "_class_name")));
                json_decref(j);
                CHECK_MSG(cls == CVX_CLASS_TRANSFORMER_3D || cls == CVX_CLASS_VAE, "%s: class", cfgp);
                check_case_weights(cfgp, wp, cls);
            }
            n_checked++;
        }
        closedir(d);
    }
    /* The e2e cases are complete pipeline folders. */
    char dir[512];
    snprintf(dir, sizeof dir, "%s/e2e", g);
    DIR *d = opendir(dir);
    struct dirent *de;
    while (d && (de = readdir(d))) {
        char mp[1024];
        snprintf(mp, sizeof mp, "%s/%s/model", dir, de->d_name);
        if (de->d_name[0] == '.' || !file_exists(mp)) continue;
        cvx_model *m = NULL;
        cvx_error err = {0};
        CHECK_MSG(cvx_model_open(&m, mp, NULL, &err) == CVX_OK, "%s", err.message);
        cvx_model_close(m);
        n_checked++;
    }
    if (d) closedir(d);
    printf("  %d golden checkpoints match their derived names/shapes\n", n_checked);
    CHECK(n_checked > 0);
}

/* ---- config errors name the file and the key ------------------------------------------------------------- */
static void expect_config_error(cvx_class cls, const char *text, const char *needle) {
    cvx_config *c = NULL;
    cvx_error err = {0};
    cvx_status st = cvx_config_parse(&c, text, strlen(text), "cfg.json", &err);
    if (!st) {
        cvx_tensor_list l;
        st = cvx_model_expected_tensors(cls, c, &l, &err);
        cvx_tensor_list_free(&l);
    }
    CHECK_MSG(st != CVX_OK && strstr(err.message, needle) && strstr(err.message, "cfg.json"),
              "config %s: expected an error mentioning \"%s\", got \"%s\"", text, needle, err.message);
    cvx_config_free(c);
}

static void test_config_errors(void) {
    expect_config_error(CVX_CLASS_TRANSFORMER_3D, "{\"num_layers\": \"30\"}", "num_layers");
    expect_config_error(CVX_CLASS_TRANSFORMER_3D, "{\"num_layers\": -1}", "num_layers");
    expect_config_error(CVX_CLASS_TRANSFORMER_3D, "{\"num_attention_heads\": 1e3}", "num_attention_heads");
    expect_config_error(CVX_CLASS_TRANSFORMER_3D, "{\"activation_fn\": \"relu6\"}", "activation_fn");
    expect_config_error(CVX_CLASS_TRANSFORMER_3D, "{\"_class_name\": \"UNet2DModel\"}", "_class_name");
    expect_config_error(CVX_CLASS_TRANSFORMER_3D, "{\"use_learned_positional_embeddings\": true}",
                        "use_learned_positional_embeddings");
    expect_config_error(CVX_CLASS_TRANSFORMER_3D, "{\"attention_bias\": 1}", "attention_bias");
    expect_config_error(CVX_CLASS_VAE, "{\"block_out_channels\": [128, 256]}", "down_block_types");
    expect_config_error(CVX_CLASS_VAE, "{\"norm_num_groups\": 3}", "norm_num_groups");
    expect_config_error(CVX_CLASS_VAE, "{\"block_out_channels\": []}", "block_out_channels");
    expect_config_error(CVX_CLASS_T5_ENCODER, "{\"feed_forward_proj\": \"gated-gelu-x\"}", "feed_forward_proj");
    expect_config_error(CVX_CLASS_T5_ENCODER, "{\"d_model\": null}", "d_model");
    expect_config_error(CVX_CLASS_T5_ENCODER, "{\"model_type\": \"bert\"}", "model_type");
    expect_config_error(CVX_CLASS_T5_ENCODER, "[1, 2]", "object");
    expect_config_error(CVX_CLASS_T5_ENCODER, "{\"a\": 1, \"a\": 2}", "invalid JSON");
    expect_config_error(CVX_CLASS_T5_ENCODER, "{\"d_model\": 4096", "invalid JSON");

    /* A config without keys gets the class defaults: the real 2b transformer / VAE. */
    cvx_config *c = NULL;
    CHECK(cvx_config_parse(&c, "{}", 2, "empty", NULL) == CVX_OK);
    cvx_tensor_list l;
    CHECK(cvx_model_expected_tensors(CVX_CLASS_TRANSFORMER_3D, c, &l, NULL) == CVX_OK);
    CHECK(l.n == 736 && l.numel == 1693783872);
    cvx_tensor_list_free(&l);
    CHECK(cvx_model_expected_tensors(CVX_CLASS_VAE, c, &l, NULL) == CVX_OK);
    CHECK(l.n == 436 && l.numel == 215583907);
    cvx_tensor_list_free(&l);
    cvx_scheduler_config sc;
    CHECK(cvx_scheduler_config_read(c, CVX_CLASS_DDIM_SCHEDULER, &sc, NULL) == CVX_OK);
    CHECK(sc.num_train_timesteps == 1000 && !strcmp(sc.timestep_spacing, "leading") && sc.snr_shift_scale == 3.0);
    cvx_config_free(c);
    const char *s5 = "{\"_class_name\": \"CogVideoXDPMScheduler\", \"timestep_spacing\": \"trailing\", "
                     "\"snr_shift_scale\": 1.0, \"prediction_type\": \"v_prediction\"}";
    CHECK(cvx_config_parse(&c, s5, strlen(s5), "s5", NULL) == CVX_OK);
    CHECK(cvx_scheduler_config_read(c, CVX_CLASS_DPM_SCHEDULER, &sc, NULL) == CVX_OK);
    CHECK(sc.cls == CVX_CLASS_DPM_SCHEDULER && sc.snr_shift_scale == 1.0 &&
          !strcmp(sc.prediction_type, "v_prediction"));
    cvx_config_free(c);
}

/* ---- make-model tiny, open, corruption cases -------------------------------------------------------------- */
static void expect_open_error(const char *dir, const char *needle1, const char *needle2) {
    cvx_model *m = NULL;
    cvx_error err = {0};
    cvx_status st = cvx_model_open(&m, dir, NULL, &err);
    CHECK_MSG(st != CVX_OK && !m, "opening a broken folder succeeded (expected \"%s\")", needle1);
    CHECK_MSG(strstr(err.message, needle1) && (!needle2 || strstr(err.message, needle2)),
              "expected \"%s\"%s%s in \"%s\"", needle1, needle2 ? " and " : "", needle2 ? needle2 : "", err.message);
    printf("  broken folder: %s\n", err.message);
    cvx_model_close(m);
}

static int copy_file(const char *from, const char *to) {
    size_t n;
    char *buf = read_file(from, &n);
    if (!buf) return -1;
    FILE *f = fopen(to, "wb");
    int rc = f && fwrite(buf, 1, n, f) == n ? 0 : -1;
    if (f) fclose(f);
    free(buf);
    return rc;
}

/* Rewrites a safetensors file, dropping `drop` and/or giving `reshape` a different (same-size) shape. */
static int rewrite(const char *path, const char *drop, const char *reshape) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.orig", path);
    if (rename(path, tmp)) return -1;
    cvx_safetensors *st = NULL;
    if (cvx_safetensors_open(&st, tmp, NULL)) return -1;
    size_t n = cvx_safetensors_count(st), k = 0;
    cvx_st_entry *e = calloc(n, sizeof *e);
    for (size_t i = 0; i < n; i++) {
        const cvx_st_tensor *t = cvx_safetensors_at(st, i);
        if (drop && !strcmp(t->name, drop)) continue;
        e[k] = (cvx_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
        memcpy(e[k].shape, t->shape, sizeof t->shape);
        if (reshape && !strcmp(t->name, reshape) && t->ndim == 2) {
            e[k].shape[0] = t->shape[1];
            e[k].shape[1] = t->shape[0];
        }
        k++;
    }
    int rc = cvx_safetensors_write(path, e, k, NULL, NULL, NULL, NULL) ? -1 : 0;
    free(e);
    cvx_safetensors_close(st);
    return rc;
}

static void restore(const char *path) {
    char tmp[1024];
    snprintf(tmp, sizeof tmp, "%s.orig", path);
    rename(tmp, path);
}

static void test_tiny(void) {
    char tmpdir[256];
    if (!cvx_test_tmpdir(tmpdir, sizeof tmpdir)) {
        CHECK(0);
        return;
    }
    char dir[512];
    snprintf(dir, sizeof dir, "%s/tiny", tmpdir);
    cvx_make_model_params p = cvx_make_model_params_default();
    p.threads = 2;
    cvx_error err = {0};
    CHECK_MSG(cvx_make_model(dir, &p, &err) == CVX_OK, "%s", err.message);

    cvx_model *m = NULL;
    CHECK_MSG(cvx_model_open(&m, dir, NULL, &err) == CVX_OK, "%s", err.message);
    if (m) {
        CHECK(!strcmp(m->pipeline_class, "CogVideoXPipeline"));
        const cvx_model_component *te = cvx_model_component_get(m, "text_encoder"),
                                  *tr = cvx_model_component_get(m, "transformer"),
                                  *va = cvx_model_component_get(m, "vae"),
                                  *tok = cvx_model_component_get(m, "tokenizer"),
                                  *sc = cvx_model_component_get(m, "scheduler");
        CHECK(te && tr && va && tok && sc);
        if (te && tr && va && tok && sc) {
            CHECK(te->n_params == te->expected.numel && te->n_files == 2);
            CHECK(te->expected.t[0].shape[0] == 32128 && te->expected.t[0].shape[1] == 16);
            CHECK(tr->n_params == tr->expected.numel && tr->n_files == 1 && tr->cfg.transformer.num_layers == 2);
            CHECK(va->n_params == va->expected.numel && va->cfg.vae.block_out_channels[3] == 16);
            CHECK(te->dtype_params[CVX_DTYPE_F16] == te->n_params);
            CHECK(tok->spiece_bytes == 791656 && tok->model_max_length == 226);
            CHECK(sc->cls == CVX_CLASS_DDIM_SCHEDULER && sc->cfg.scheduler.rescale_betas_zero_snr);
            printf("  tiny: text_encoder %lld, transformer %lld, vae %lld parameters\n", (long long)te->n_params,
                   (long long)tr->n_params, (long long)va->n_params);
        }
        cvx_memory_estimate me;
        CHECK(cvx_model_memory_estimate(m, &me, &err) == CVX_OK);
        CHECK(me.height == 48 && me.width == 80 && me.frames == 9 && me.latent_frames == 3); /* sample_frames */
        CHECK(me.peak >= me.vae_weights && me.peak >= me.transformer_weights + me.transformer_act);
        cvx_model_close(m);
    }

    /* Deterministic: the same seed writes the same bytes; a different seed does not. */
    char dir2[512], f1[600], f2[600];
    snprintf(dir2, sizeof dir2, "%s/tiny2", tmpdir);
    CHECK(cvx_make_model(dir2, &p, &err) == CVX_OK);
    snprintf(f1, sizeof f1, "%s/transformer/diffusion_pytorch_model.safetensors", dir);
    snprintf(f2, sizeof f2, "%s/transformer/diffusion_pytorch_model.safetensors", dir2);
    size_t n1, n2;
    char *b1 = read_file(f1, &n1), *b2 = read_file(f2, &n2);
    CHECK(b1 && b2 && n1 == n2 && !memcmp(b1, b2, n1));
    free(b2);
    p.seed = 7;
    CHECK(cvx_make_model(dir2, &p, &err) == CVX_OK);
    b2 = read_file(f2, &n2);
    CHECK(b1 && b2 && n1 == n2 && memcmp(b1, b2, n1));
    free(b1);
    free(b2);
    /* bf16 and f32 variants open too */
    p.dtype = CVX_DTYPE_F32;
    CHECK(cvx_make_model(dir2, &p, &err) == CVX_OK);
    CHECK_MSG(cvx_model_open(&m, dir2, NULL, &err) == CVX_OK, "%s", err.message);
    if (m) CHECK(cvx_model_component_get(m, "vae")->dtype_params[CVX_DTYPE_F32] > 0);
    cvx_model_close(m);

    /* Corruption cases, each undone before the next. */
    char path[700];
    snprintf(path, sizeof path, "%s/transformer/diffusion_pytorch_model.safetensors", dir);
    CHECK(rewrite(path, "transformer_blocks.1.attn1.to_k.weight", NULL) == 0);
    expect_open_error(dir, "transformer_blocks.1.attn1.to_k.weight", "missing");
    restore(path);
    CHECK(rewrite(path, NULL, "transformer_blocks.0.ff.net.2.weight") == 0);
    expect_open_error(dir, "transformer_blocks.0.ff.net.2.weight", "shape");
    restore(path);

    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    char orig[760];
    snprintf(orig, sizeof orig, "%s.orig", path);
    CHECK(copy_file(path, orig) == 0);
    struct stat sb;
    stat(path, &sb);
    CHECK(truncate(path, sb.st_size - 1000) == 0);
    expect_open_error(dir, "vae", "diffusion_pytorch_model.safetensors");
    restore(path);

    snprintf(path, sizeof path, "%s/text_encoder/model-00002-of-00002.safetensors", dir);
    snprintf(orig, sizeof orig, "%s.orig", path);
    CHECK(copy_file(path, orig) == 0);
    FILE *f = fopen(path, "r+b");
    if (f) {
        fseek(f, 8, SEEK_SET);
        fputs("#!", f);
        fclose(f);
    }
    expect_open_error(dir, "text_encoder", "model-00002-of-00002.safetensors");
    restore(path);

    /* An extra tensor, an unknown class, a missing component */
    snprintf(path, sizeof path, "%s/vae/diffusion_pytorch_model.safetensors", dir);
    {
        char tmp[760];
        snprintf(tmp, sizeof tmp, "%s.orig", path);
        rename(path, tmp);
        cvx_safetensors *st = NULL;
        CHECK(cvx_safetensors_open(&st, tmp, NULL) == CVX_OK);
        size_t n = cvx_safetensors_count(st);
        cvx_st_entry *e = calloc(n + 1, sizeof *e);
        for (size_t i = 0; i < n; i++) {
            const cvx_st_tensor *t = cvx_safetensors_at(st, i);
            e[i] = (cvx_st_entry){.name = t->name, .dtype = t->dtype, .ndim = t->ndim, .data = t->data};
            memcpy(e[i].shape, t->shape, sizeof t->shape);
        }
        static const uint16_t zero[4];
        e[n] = (cvx_st_entry){.name = "decoder.temb_proj.weight", .dtype = CVX_DTYPE_F16, .ndim = 1, .data = zero};
        e[n].shape[0] = 4;
        CHECK(cvx_safetensors_write(path, e, n + 1, NULL, NULL, NULL, NULL) == CVX_OK);
        free(e);
        cvx_safetensors_close(st);
        expect_open_error(dir, "decoder.temb_proj.weight", "unexpected");
        restore(path);
    }
    snprintf(path, sizeof path, "%s/model_index.json", dir);
    snprintf(orig, sizeof orig, "%s.orig", path);
    CHECK(copy_file(path, orig) == 0);
    f = fopen(path, "wb");
    if (f) {
        fputs("{\"_class_name\": \"CogVideoXPipeline\", \"scheduler\": [\"diffusers\", \"EulerDiscreteScheduler\"]}",
              f);
        fclose(f);
    }
    expect_open_error(dir, "EulerDiscreteScheduler", "scheduler");
    f = fopen(path, "wb");
    if (f) {
        fputs("{\"_class_name\": \"StableDiffusionPipeline\"}", f);
        fclose(f);
    }
    expect_open_error(dir, "StableDiffusionPipeline", NULL);
    /* a 5b-style folder: the DPM scheduler class is accepted */
    f = fopen(path, "wb");
    if (f) {
        fputs("{\"_class_name\": \"CogVideoXPipeline\", \"scheduler\": [\"diffusers\", \"CogVideoXDPMScheduler\"], "
              "\"text_encoder\": [\"transformers\", \"T5EncoderModel\"], \"tokenizer\": [\"transformers\", "
              "\"T5Tokenizer\"], "
              "\"transformer\": [\"diffusers\", \"CogVideoXTransformer3DModel\"], \"vae\": [\"diffusers\", "
              "\"AutoencoderKLCogVideoX\"]}",
              f);
        fclose(f);
    }
    CHECK_MSG(cvx_model_open(&m, dir, NULL, &err) == CVX_OK, "%s", err.message);
    if (m) CHECK(cvx_model_component_get(m, "scheduler")->cls == CVX_CLASS_DPM_SCHEDULER);
    cvx_model_close(m);
    restore(path);
    snprintf(path, sizeof path, "%s/transformer/config.json", dir);
    snprintf(orig, sizeof orig, "%s.orig", path);
    CHECK(copy_file(path, orig) == 0);
    f = fopen(path, "wb");
    if (f) {
        fputs("{\"_class_name\": \"CogVideoXTransformer3DModel\", \"num_layers\": 3, \"num_attention_heads\": 2, "
              "\"attention_head_dim\": 16, \"text_embed_dim\": 16, \"time_embed_dim\": 16}",
              f);
        fclose(f);
    }
    expect_open_error(dir, "transformer_blocks.2.", "missing");
    restore(path);

    /* after all the restores the folder opens again */
    CHECK_MSG(cvx_model_open(&m, dir, NULL, &err) == CVX_OK, "%s", err.message);
    cvx_model_close(m);
    cvx_test_rmtree(tmpdir);
}

int main(void) {
    test_manifests();
    test_config_text();
    test_shards();
    test_golden_cases();
    test_config_errors();
    test_tiny();
    return cvx_test_finish("test_model");
}
