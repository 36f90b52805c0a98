/* The golden runner (see golden.h): discovers case folders, dispatches on the component, compares what the
 * handler computed with the reference's numbers following the case's "check" object, prints one line per case
 * (PASS / FAIL / SKIP), and optionally dumps what it computed. */
#include "golden/golden.h"

#include <dirent.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

/* Handlers live in their own files; a component whose handler is not linked in reports SKIP. */
#pragma weak cvx_golden_rng
#pragma weak cvx_golden_scheduler
#pragma weak cvx_golden_transformer
#pragma weak cvx_golden_rope
#pragma weak cvx_golden_pipeline
#pragma weak cvx_golden_t5
#pragma weak cvx_golden_tokenizer
#pragma weak cvx_golden_vae
#pragma weak cvx_golden_e2e
#pragma weak cvx_golden_i2v
#pragma weak cvx_golden_v2v

static const struct {
    const char *component;
    cvx_golden_handler handler;
} handlers[] = {
    {"rng", cvx_golden_rng},
    {"scheduler", cvx_golden_scheduler},
    {"transformer", cvx_golden_transformer},
    {"rope", cvx_golden_rope},
    {"pipeline", cvx_golden_pipeline},
    {"t5", cvx_golden_t5},
    {"tokenizer", cvx_golden_tokenizer},
    {"vae", cvx_golden_vae},
    {"e2e", cvx_golden_e2e},
    {"i2v", cvx_golden_i2v},
    {"v2v", cvx_golden_v2v},
};

/* ---- the handler-facing API ------------------------------------------------------------------------------ */

const cvx_st_tensor *cvx_golden_tensor(const cvx_golden_case *c, const char *name) {
    return c->expected ? cvx_safetensors_find(c->expected, name) : NULL;
}

cvx_status cvx_golden_tensor_f32(cvx_golden_case *c, const char *name, int64_t numel, float **out) {
    *out = NULL;
    const cvx_st_tensor *t = cvx_golden_tensor(c, name);
    if (!t) return cvx_fail(&c->err, CVX_ERR_NOT_FOUND, "tensor \"%s\" is not in the case's expected file", name);
    cvx_tensor v = cvx_st_view(t);
    int64_t n = cvx_tensor_numel(&v);
    if (numel >= 0 && n != numel)
        return cvx_fail(&c->err, CVX_ERR_SHAPE, "tensor \"%s\" has %lld elements, expected %lld", name, (long long)n,
                        (long long)numel);
    float *buf = malloc((size_t)(n > 0 ? n : 1) * sizeof(float));
    if (!buf) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "tensor \"%s\": out of memory", name);
    if (cvx_dtype_is_float(v.dtype)) {
        cvx_tensor_to_f32(&v, buf);
    } else {
        for (int64_t i = 0; i < n; i++) buf[i] = (float)cvx_tensor_get(&v, i);
    }
    *out = buf;
    return CVX_OK;
}

int cvx_golden_wants(const cvx_golden_case *c, const char *name) {
    json_t *compare = json_object_get(c->check, "compare");
    return compare && json_object_get(compare, name) != NULL;
}

cvx_status cvx_golden_output(cvx_golden_case *c, const char *name, const cvx_tensor *t) {
    for (size_t i = 0; i < c->n_outputs; i++)
        if (!strcmp(c->outputs[i].name, name))
            return cvx_fail(&c->err, CVX_ERR_INTERNAL, "output \"%s\" reported twice", name);
    if (c->n_outputs == c->cap_outputs) {
        size_t cap = c->cap_outputs ? c->cap_outputs * 2 : 16;
        struct cvx_golden_output *o = realloc(c->outputs, cap * sizeof *o);
        if (!o) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
        c->outputs = o;
        c->cap_outputs = cap;
    }
    size_t nbytes = cvx_tensor_nbytes(t);
    void *copy = malloc(nbytes ? nbytes : 1);
    char *name_copy = strdup(name);
    if (!copy || !name_copy) {
        free(copy);
        free(name_copy);
        return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "out of memory");
    }
    if (nbytes) memcpy(copy, t->data, nbytes);
    struct cvx_golden_output *o = &c->outputs[c->n_outputs++];
    o->name = name_copy;
    o->t = *t;
    o->t.data = copy;
    return CVX_OK;
}

void cvx_golden_set_results(cvx_golden_case *c, json_t *results) {
    json_decref(c->set_results);
    c->set_results = results;
}

const char *cvx_golden_path(const cvx_golden_case *c, const char *file, char *buf, size_t size) {
    snprintf(buf, size, "%s/%s", c->dir, file);
    return buf;
}

/* ---- comparison -------------------------------------------------------------------------------------------- */

typedef struct {
    int failed;           /* any target out of tolerance / missing */
    double worst_ratio;   /* max over targets of err / allowed (0 = exact) */
    char worst_name[256];
    double worst_abs, worst_rel;
    int compared;
    char first_problem[512];
} compare_summary;

static void note_problem(compare_summary *s, const char *fmt, const char *name, const char *what) {
    s->failed = 1;
    if (!s->first_problem[0]) snprintf(s->first_problem, sizeof s->first_problem, fmt, name, what);
}

static const struct cvx_golden_output *find_output(const cvx_golden_case *c, const char *name) {
    for (size_t i = 0; i < c->n_outputs; i++)
        if (!strcmp(c->outputs[i].name, name)) return &c->outputs[i];
    return NULL;
}

static int same_value_exact(double a, double b) {
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return a == b;
}

static void compare_tensor(const cvx_golden_case *c, const char *name, json_t *rule, compare_summary *s, int verbose) {
    const cvx_st_tensor *exp_t = cvx_golden_tensor(c, name);
    if (!exp_t) {
        note_problem(s, "\"%s\": %s", name, "target is not in the expected file");
        return;
    }
    const struct cvx_golden_output *out = find_output(c, name);
    if (!out) {
        note_problem(s, "\"%s\": %s", name, "not computed");
        return;
    }
    cvx_tensor ref = cvx_st_view(exp_t);
    int64_t n = cvx_tensor_numel(&ref);
    if (cvx_tensor_numel(&out->t) != n) {
        char a[96], b[96], msg[256];
        snprintf(msg, sizeof msg, "computed shape %s, expected %s", cvx_shape_str(out->t.ndim, out->t.shape, a, sizeof a),
                 cvx_shape_str(ref.ndim, ref.shape, b, sizeof b));
        note_problem(s, "\"%s\": %s", name, msg);
        return;
    }
    s->compared++;
    int exact = json_is_true(json_object_get(rule, "exact"));
    json_t *u8 = json_object_get(rule, "uint8_max_diff");
    double atol = json_number_value(json_object_get(rule, "atol"));
    double rtol = json_number_value(json_object_get(rule, "rtol"));
    double max_abs = 0, max_rel = 0, ratio = 0, ref_sq = 0;
    int64_t bad = 0, differing = 0, first_bad = -1, finite = 0;
    for (int64_t i = 0; i < n; i++) {
        double r = cvx_tensor_get(&ref, i), o = cvx_tensor_get(&out->t, i);
        double d;
        if (isfinite(r)) ref_sq += r * r, finite++;
        if (isinf(r) || isinf(o) || isnan(r) || isnan(o))
            d = same_value_exact(r, o) ? 0.0 : INFINITY;
        else
            d = fabs(o - r);
        if (d > max_abs) max_abs = d;
        double rel = r != 0 ? d / fabs(r) : (d > 0 ? INFINITY : 0);
        if (rel > max_rel) max_rel = rel;
        if (d > 0) differing++;
        if (exact) {
            if (!same_value_exact(r, o)) {
                bad++;
                if (first_bad < 0) first_bad = i;
            }
        } else if (u8) {
            if (d > json_number_value(u8)) {
                bad++;
                if (first_bad < 0) first_bad = i;
            }
        } else {
            double allowed = atol + rtol * fabs(r);
            double q = allowed > 0 ? d / allowed : (d > 0 ? INFINITY : 0);
            if (q > ratio) ratio = q;
            if (!(d <= allowed)) {
                bad++;
                if (first_bad < 0) first_bad = i;
            }
        }
    }
    char msg[320];
    msg[0] = '\0';
    if (exact) {
        ratio = bad ? INFINITY : 0;
        if (bad) snprintf(msg, sizeof msg, "%lld of %lld values differ (first at %lld: got %.9g, expected %.9g)",
                          (long long)bad, (long long)n, (long long)first_bad, cvx_tensor_get(&out->t, first_bad),
                          cvx_tensor_get(&ref, first_bad));
    } else if (u8) {
        double max_fraction = json_number_value(json_object_get(rule, "max_fraction"));
        double frac = n ? (double)differing / (double)n : 0;
        ratio = max_fraction > 0 ? frac / max_fraction : (differing ? INFINITY : 0);
        if (bad)
            snprintf(msg, sizeof msg, "%lld values differ by more than %g (max %g)", (long long)bad,
                     json_number_value(u8), max_abs);
        else if (frac > max_fraction)
            snprintf(msg, sizeof msg, "%.4g%% of values differ (allowed %.4g%%)", 100 * frac, 100 * max_fraction);
        if (bad) ratio = INFINITY;
    } else if (bad) {
        snprintf(msg, sizeof msg, "%lld of %lld values out of tolerance (max abs %.3g, atol %g rtol %g; first at %lld: "
                 "got %.9g, expected %.9g)", (long long)bad, (long long)n, max_abs, atol, rtol, (long long)first_bad,
                 cvx_tensor_get(&out->t, first_bad), cvx_tensor_get(&ref, first_bad));
    }
    if (msg[0]) note_problem(s, "\"%s\": %s", name, msg);
    if (verbose) {
        /* max_abs / rms(ref): the scale-free deviation the bf16 bound is derived from (docs/bf16-tolerances.md) */
        double rms = finite ? sqrt(ref_sq / (double)finite) : 0;
        printf("    %-48s max_abs %.3g max_rel %.3g abs/rms %.3g ratio %.3g%s%s\n", name, max_abs, max_rel,
               rms > 0 ? max_abs / rms : 0.0, ratio, msg[0] ? "  " : "", msg);
    }
    if (ratio > s->worst_ratio || !s->worst_name[0]) {
        s->worst_ratio = ratio;
        s->worst_abs = max_abs;
        s->worst_rel = max_rel;
        snprintf(s->worst_name, sizeof s->worst_name, "%s", name);
    }
}

static void compare_set(const cvx_golden_case *c, compare_summary *s, int verbose) {
    json_t *cases = json_object_get(c->case_json, "cases");
    json_t *compare = json_object_get(c->check, "compare");
    if (!json_is_array(cases) || !json_is_object(compare)) {
        note_problem(s, "%s%s", "cases.json", ": no \"cases\" array or no check.compare object");
        return;
    }
    if (!json_is_array(c->set_results) || json_array_size(c->set_results) != json_array_size(cases)) {
        note_problem(s, "%s%s", "results", ": the handler did not produce one result per case");
        return;
    }
    size_t mismatching = 0;
    for (size_t i = 0; i < json_array_size(cases); i++) {
        json_t *exp = json_array_get(cases, i), *got = json_array_get(c->set_results, i);
        const char *case_name = json_string_value(json_object_get(exp, "name"));
        char label[128];
        if (!case_name) {
            snprintf(label, sizeof label, "case %zu", i);
            case_name = label;
        }
        const char *field;
        json_t *rule;
        int case_bad = 0;
        json_object_foreach(compare, field, rule) {
            json_t *want = json_object_get(exp, field);
            if (!want) continue; /* this case does not record the field */
            s->compared++;
            json_t *have = json_object_get(got, field);
            if (!have || !json_equal(want, have)) {
                case_bad = 1;
                char what[160];
                snprintf(what, sizeof what, "%s %s", field, have ? "differs" : "not computed");
                note_problem(s, "\"%s\": %s", case_name, what);
                if (verbose) printf("    %-40s %s\n", case_name, what);
            }
        }
        if (case_bad) mismatching++;
    }
    s->worst_ratio = mismatching ? INFINITY : 0;
    snprintf(s->worst_name, sizeof s->worst_name, "%zu of %zu cases differ", mismatching,
             json_array_size(cases));
}

/* ---- dump -------------------------------------------------------------------------------------------------- */

static int dump_case(const cvx_golden_case *c, const char *dir, cvx_error *err) {
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        cvx_fail(err, CVX_ERR_IO, "--dump %s: %s", dir, strerror(errno));
        return -1;
    }
    char path[4096];
    if (c->set_results) {
        snprintf(path, sizeof path, "%s/%s.json", dir, c->name);
        json_t *ids = json_array();
        for (size_t i = 0; i < json_array_size(c->set_results); i++) {
            json_t *v = json_object_get(json_array_get(c->set_results, i), "ids");
            json_array_append(ids, v ? v : json_null());
        }
        int rc = json_dump_file(ids, path, JSON_COMPACT);
        json_decref(ids);
        if (rc != 0) {
            cvx_fail(err, CVX_ERR_IO, "cannot write %s", path);
            return -1;
        }
        return 0;
    }
    snprintf(path, sizeof path, "%s/%s.safetensors", dir, c->name);
    cvx_st_entry *entries = calloc(c->n_outputs ? c->n_outputs : 1, sizeof *entries);
    if (!entries) return -1;
    for (size_t i = 0; i < c->n_outputs; i++) {
        entries[i].name = c->outputs[i].name;
        entries[i].dtype = c->outputs[i].t.dtype;
        entries[i].ndim = c->outputs[i].t.ndim;
        memcpy(entries[i].shape, c->outputs[i].t.shape, sizeof entries[i].shape);
        entries[i].data = c->outputs[i].t.data;
    }
    cvx_status st = cvx_safetensors_write(path, entries, c->n_outputs, NULL, NULL, NULL, err);
    free(entries);
    return st == CVX_OK ? 0 : -1;
}

/* ---- running one case --------------------------------------------------------------------------------------- */

static json_t *load_json(const char *path, cvx_error *err) {
    json_error_t je;
    json_t *j = json_load_file(path, JSON_REJECT_DUPLICATES | JSON_ALLOW_NUL, &je);
    if (!j) cvx_fail(err, CVX_ERR_FORMAT, "%s: line %d: %s", path, je.line, je.text);
    return j;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISREG(st.st_mode);
}

static const char *base_name(const char *path, char *buf, size_t size) {
    size_t n = strlen(path);
    while (n > 1 && path[n - 1] == '/') n--;
    size_t start = n;
    while (start > 0 && path[start - 1] != '/') start--;
    snprintf(buf, size, "%.*s", (int)(n - start), path + start);
    return buf;
}

static void free_case(cvx_golden_case *c) {
    for (size_t i = 0; i < c->n_outputs; i++) {
        free(c->outputs[i].name);
        free(c->outputs[i].t.data);
    }
    free(c->outputs);
    json_decref(c->set_results);
    cvx_safetensors_close(c->expected);
}

typedef struct {
    int pass, fail, skip;
    json_t *bf16_table; /* --precision bf16: the tolerance table, else NULL */
} tally;

static void run_case(const char *dir, const cvx_golden_options *opt, cvx_pool *pool, tally *t) {
    cvx_golden_case c;
    memset(&c, 0, sizeof c);
    char name[256], parent[256], path[4096];
    c.dir = dir;
    c.name = base_name(dir, name, sizeof name);
    c.pool = pool;
    c.logger = opt->logger;
    double t0 = cvx_time_seconds();

    int is_set = 0;
    snprintf(path, sizeof path, "%s/case.json", dir);
    if (!file_exists(path)) {
        snprintf(path, sizeof path, "%s/cases.json", dir);
        is_set = 1;
    }
    json_t *case_json = load_json(path, &c.err);
    json_t *config = NULL;
    const char *label = c.name;
    char label_buf[600];
    if (!case_json) goto fail;
    c.case_json = case_json;
    c.check = json_object_get(case_json, "check");
    if (!json_is_object(c.check)) {
        cvx_fail(&c.err, CVX_ERR_FORMAT, "%s: no \"check\" object", path);
        goto fail;
    }
    /* Component: stated in check or case.json, else the parent folder's name (the folder's own for rng/rope). */
    c.component = json_string_value(json_object_get(c.check, "component"));
    if (!c.component) c.component = json_string_value(json_object_get(case_json, "component"));
    if (!c.component) {
        char tmp[4096];
        snprintf(tmp, sizeof tmp, "%s/..", dir);
        char *real = realpath(tmp, NULL);
        base_name(real ? real : tmp, parent, sizeof parent);
        free(real);
        c.component = (!strcmp(c.name, "rng") || !strcmp(c.name, "rope")) ? c.name : parent;
    }
    if (strcmp(c.component, c.name)) {
        snprintf(label_buf, sizeof label_buf, "%s/%s", c.component, c.name);
        label = label_buf;
    }
    cvx_golden_handler handler = NULL;
    int known = 0;
    for (size_t i = 0; i < sizeof handlers / sizeof handlers[0]; i++)
        if (!strcmp(handlers[i].component, c.component)) {
            handler = handlers[i].handler;
            known = 1;
        }
    if (t->bf16_table && cvx_golden_bf16_component(t->bf16_table, c.component)) {
        c.precision = CVX_PRECISION_BF16;
        if (label != label_buf) snprintf(label_buf, sizeof label_buf, "%s", c.name);
        size_t used = strlen(label_buf);
        snprintf(label_buf + used, sizeof label_buf - used, " [bf16]");
        label = label_buf;
    }
    if (!handler) {
        printf("SKIP %-44s (%s)\n", label, known ? "not implemented" : "unknown component");
        t->skip++;
        goto done;
    }
    snprintf(path, sizeof path, "%s/config.json", dir);
    if (file_exists(path)) {
        config = load_json(path, &c.err);
        if (!config) goto fail;
        c.config = config;
    }
    const char *expected_file = json_string_value(json_object_get(c.check, "expected_file"));
    if (expected_file && strlen(expected_file) > 12 && !strcmp(expected_file + strlen(expected_file) - 12, ".safetensors")) {
        snprintf(path, sizeof path, "%s/%s", dir, expected_file);
        if (cvx_safetensors_open(&c.expected, path, &c.err) != CVX_OK) goto fail;
    } else if (!is_set) {
        cvx_fail(&c.err, CVX_ERR_FORMAT, "%s/case.json: check.expected_file is not a .safetensors file", dir);
        goto fail;
    }

    cvx_status st = handler(&c);
    if (st == CVX_ERR_UNSUPPORTED) {
        printf("SKIP %-44s (%s)\n", label, cvx_error_message(&c.err));
        t->skip++;
        goto done;
    }
    if (st != CVX_OK) goto fail;

    compare_summary s;
    memset(&s, 0, sizeof s);
    if (is_set) {
        compare_set(&c, &s, opt->verbose);
    } else {
        json_t *compare = json_object_get(c.check, "compare");
        const char *tname;
        json_t *rule;
        json_object_foreach(compare, tname, rule) {
            json_t *r = c.precision == CVX_PRECISION_BF16 ? cvx_golden_bf16_rule(t->bf16_table, &c, tname, rule) : NULL;
            compare_tensor(&c, tname, r ? r : rule, &s, opt->verbose);
            json_decref(r);
        }
    }
    if (s.compared == 0 && !s.failed) note_problem(&s, "%s%s", "check.compare", " names nothing to compare");
    double secs = cvx_time_seconds() - t0;
    if (s.failed) {
        printf("FAIL %-44s %s  [%.1fs]\n", label, s.first_problem, secs);
        t->fail++;
    } else if (is_set) {
        printf("PASS %-44s %d fields exact  [%.1fs]\n", label, s.compared, secs);
        t->pass++;
    } else {
        printf("PASS %-44s %d tensors, max abs %.3g rel %.3g at %.3g of tolerance (worst %s)  [%.1fs]\n", label,
               s.compared, s.worst_abs, s.worst_rel, s.worst_ratio, s.worst_name, secs);
        t->pass++;
    }
    if (opt->dump_dir) {
        cvx_error derr;
        cvx_error_clear(&derr);
        if (dump_case(&c, opt->dump_dir, &derr) != 0) fprintf(stderr, "cogvideox golden: %s\n", cvx_error_message(&derr));
    }
    goto done;

fail:
    printf("FAIL %-44s %s\n", label, cvx_error_message(&c.err));
    t->fail++;
done:
    fflush(stdout);
    free_case(&c);
    json_decref(config);
    json_decref(case_json);
}

static int is_case_dir(const char *dir) {
    char path[4096];
    snprintf(path, sizeof path, "%s/case.json", dir);
    if (file_exists(path)) return 1;
    snprintf(path, sizeof path, "%s/cases.json", dir);
    return file_exists(path);
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

/* Runs dir if it is a case, else every case below it (sorted, up to 3 levels). Returns the cases found. */
static int walk(const char *dir, int depth, const cvx_golden_options *opt, cvx_pool *pool, tally *t) {
    if (is_case_dir(dir)) {
        run_case(dir, opt, pool, t);
        return 1;
    }
    if (depth >= 3) return 0;
    DIR *d = opendir(dir);
    if (!d) return 0;
    char **names = NULL;
    size_t n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? cap * 2 : 32;
            char **nn = realloc(names, cap * sizeof *nn);
            if (!nn) break;
            names = nn;
        }
        names[n++] = strdup(e->d_name);
    }
    closedir(d);
    qsort(names, n, sizeof *names, cmp_str);
    int found = 0;
    for (size_t i = 0; i < n; i++) {
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", dir, names[i]);
        struct stat st;
        if (stat(sub, &st) == 0 && S_ISDIR(st.st_mode)) found += walk(sub, depth + 1, opt, pool, t);
        free(names[i]);
    }
    free(names);
    return found;
}

int cvx_golden_run(const char *const *paths, int n_paths, const cvx_golden_options *opt) {
    tally t = {0, 0, 0, NULL};
    if (opt->precision == CVX_PRECISION_BF16) {
        cvx_error err;
        cvx_error_clear(&err);
        if (!(t.bf16_table = cvx_golden_bf16_table(opt->bf16_tolerances, &err))) {
            fprintf(stderr, "cogvideox golden: %s\n", cvx_error_message(&err));
            return -1;
        }
    }
    cvx_pool *pool = cvx_pool_new(opt->threads);
    int usage_error = 0;
    for (int i = 0; i < n_paths; i++) {
        struct stat st;
        if (stat(paths[i], &st) != 0 || !S_ISDIR(st.st_mode)) {
            fprintf(stderr, "cogvideox golden: %s: not a directory\n", paths[i]);
            usage_error = 1;
            continue;
        }
        if (walk(paths[i], 0, opt, pool, &t) == 0) {
            fprintf(stderr, "cogvideox golden: %s: no case.json or cases.json found\n", paths[i]);
            usage_error = 1;
        }
    }
    cvx_pool_free(pool);
    json_decref(t.bf16_table);
    printf("golden: %d passed, %d failed, %d skipped\n", t.pass, t.fail, t.skip);
    if (usage_error && t.fail == 0) return -1;
    return t.fail;
}
