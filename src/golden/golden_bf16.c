/* The bf16 bound of `cogvideox golden --precision bf16`: a tolerance table (tests/data/bf16_tolerances.json,
 * built into the binary; docs/bf16-tolerances.md says how its numbers were derived from measured fp32-vs-bf16
 * deviations) that replaces a case's fp32 tolerances for the components that have a bf16 path.
 *
 * Table: {"format": "cogvideox-bf16-tolerances/1",
 *         "components": {"<component>": {"default": {"atol_rms": a, "rtol": r},
 *                                        "tensors": {"<name or glob>": {"atol_rms": a, "rtol": r} | "fp32"},
 *                                        "uint8": {"uint8_max_diff": d, "max_fraction": f}}}}
 * A float target then passes when |out − ref| <= max(atol, a·rms(ref)) + max(rtol, r)·|ref| elementwise, with
 * atol/rtol the case's own fp32 rule and rms(ref) the root mean square of the reference tensor's finite values:
 * bf16 rounding errors scale with the magnitude of the whole tensor, not of the element. "fp32" keeps the case's
 * rule (a value computed before any bf16 product); exact targets (ids, timesteps) always stay exact. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "golden/golden.h"

#define CVX__EMBED(sym, path)                                                                                          \
    __asm__(".section .rodata\n"                                                                                       \
            ".balign 16\n" #sym "_begin:\n"                                                                            \
            ".incbin \"" path "\"\n" #sym "_end:\n"                                                                    \
            ".previous\n");                                                                                            \
    extern const unsigned char sym##_begin[] __asm__(#sym "_begin");                                                   \
    extern const unsigned char sym##_end[] __asm__(#sym "_end");

/* CVX_EMBED_BF16_TOLERANCES is set by CMakeLists.txt (tests/data/bf16_tolerances.json). */
CVX__EMBED(cvx__bf16_tolerances, CVX_EMBED_BF16_TOLERANCES)

#define TABLE_FORMAT "cogvideox-bf16-tolerances/1"

static int is_nonneg_number(json_t *v) { return json_is_number(v) && json_number_value(v) >= 0; }

static cvx_status check_rule(json_t *rule, const char *where, cvx_error *err) {
    if (json_is_string(rule) && !strcmp(json_string_value(rule), "fp32")) return CVX_OK;
    if (!json_is_object(rule) || !is_nonneg_number(json_object_get(rule, "atol_rms")) ||
        !is_nonneg_number(json_object_get(rule, "rtol")))
        return cvx_fail(err, CVX_ERR_FORMAT, "bf16 tolerances: %s needs non-negative \"atol_rms\" and \"rtol\"", where);
    return CVX_OK;
}

json_t *cvx_golden_bf16_table(const char *path, cvx_error *err) {
    json_error_t je;
    json_t *t;
    const char *label = path ? path : "the built-in bf16 tolerance table";
    if (path) {
        t = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    } else {
        size_t n = (size_t)(cvx__bf16_tolerances_end - cvx__bf16_tolerances_begin);
        t = json_loadb((const char *)cvx__bf16_tolerances_begin, n, JSON_REJECT_DUPLICATES, &je);
    }
    if (!t) {
        cvx_fail(err, CVX_ERR_FORMAT, "%s: line %d: %s", label, je.line, je.text);
        return NULL;
    }
    const char *fmt = json_string_value(json_object_get(t, "format"));
    json_t *comps = json_object_get(t, "components");
    if (!fmt || strcmp(fmt, TABLE_FORMAT) || !json_is_object(comps)) {
        cvx_fail(err, CVX_ERR_FORMAT, "%s: not a \"%s\" table with a \"components\" object", label, TABLE_FORMAT);
        json_decref(t);
        return NULL;
    }
    const char *cname;
    json_t *comp;
    json_object_foreach(comps, cname, comp) {
        char where[256];
        snprintf(where, sizeof where, "components.%s.default", cname);
        cvx_status st = json_is_object(comp) ? check_rule(json_object_get(comp, "default"), where, err)
                                             : cvx_fail(err, CVX_ERR_FORMAT, "%s: components.%s is not an object",
                                                        label, cname);
        json_t *tensors = json_object_get(comp, "tensors");
        if (!st && tensors && !json_is_object(tensors))
            st = cvx_fail(err, CVX_ERR_FORMAT, "%s: components.%s.tensors is not an object", label, cname);
        const char *tname;
        json_t *rule;
        if (!st && tensors) json_object_foreach(tensors, tname, rule) {
                snprintf(where, sizeof where, "components.%s.tensors.%s", cname, tname);
                if ((st = check_rule(rule, where, err))) break;
            }
        json_t *u8 = json_object_get(comp, "uint8");
        if (!st && u8 &&
            (!is_nonneg_number(json_object_get(u8, "uint8_max_diff")) ||
             !is_nonneg_number(json_object_get(u8, "max_fraction"))))
            st = cvx_fail(err, CVX_ERR_FORMAT,
                          "%s: components.%s.uint8 needs non-negative \"uint8_max_diff\" and \"max_fraction\"", label,
                          cname);
        if (st) {
            cvx_error_prefix(err, "%s: ", label);
            json_decref(t);
            return NULL;
        }
    }
    return t;
}

int cvx_golden_bf16_component(json_t *table, const char *component) {
    return component && json_object_get(json_object_get(table, "components"), component) != NULL;
}

/* Glob match where '*' stands for any run of characters (tensor names have no other wildcard). */
static int glob_match(const char *pat, const char *s) {
    if (*pat == '\0') return *s == '\0';
    if (*pat == '*') {
        for (;; s++) {
            if (glob_match(pat + 1, s)) return 1;
            if (*s == '\0') return 0;
        }
    }
    return *pat == *s && glob_match(pat + 1, s + 1);
}

/* The table's rule for a tensor: its exact name, else the matching pattern with the most literal characters,
 * else the default. */
static json_t *find_rule(json_t *comp, const char *name) {
    json_t *tensors = json_object_get(comp, "tensors");
    json_t *r = json_object_get(tensors, name);
    if (r) return r;
    size_t best = 0;
    const char *key;
    json_t *v;
    json_object_foreach(tensors, key, v) {
        size_t literal = 0;
        for (const char *k = key; *k; k++) literal += *k != '*';
        if (strchr(key, '*') && (!r || literal > best) && glob_match(key, name)) {
            best = literal;
            r = v;
        }
    }
    return r ? r : json_object_get(comp, "default");
}

double cvx_golden_bf16_atol_rms(json_t *table, const char *component, const char *name) {
    json_t *comp = json_object_get(json_object_get(table, "components"), component);
    json_t *rule = comp ? find_rule(comp, name) : NULL;
    return json_is_object(rule) ? json_number_value(json_object_get(rule, "atol_rms")) : -1;
}

json_t *cvx_golden_bf16_rule(json_t *table, const cvx_golden_case *c, const char *name, json_t *fp32_rule) {
    json_t *comp = json_object_get(json_object_get(table, "components"), c->component);
    if (!comp || json_is_true(json_object_get(fp32_rule, "exact"))) return json_incref(fp32_rule);
    if (json_object_get(fp32_rule, "uint8_max_diff")) {
        json_t *u8 = json_object_get(comp, "uint8");
        return json_incref(u8 ? u8 : fp32_rule);
    }
    json_t *rule = find_rule(comp, name);
    const cvx_st_tensor *ref = cvx_golden_tensor(c, name);
    if (!json_is_object(rule) || !ref) return json_incref(fp32_rule); /* "fp32", or the runner reports the miss */
    cvx_tensor v = cvx_st_view(ref);
    int64_t n = cvx_tensor_numel(&v), finite = 0;
    double sum2 = 0;
    for (int64_t i = 0; i < n; i++) {
        double x = cvx_tensor_get(&v, i);
        if (isfinite(x)) sum2 += x * x, finite++;
    }
    double rms = finite ? sqrt(sum2 / (double)finite) : 0;
    double atol = json_number_value(json_object_get(fp32_rule, "atol"));
    double rtol = json_number_value(json_object_get(fp32_rule, "rtol"));
    double a = json_number_value(json_object_get(rule, "atol_rms")) * rms;
    double r = json_number_value(json_object_get(rule, "rtol"));
    return json_pack("{s:f, s:f}", "atol", a > atol ? a : atol, "rtol", r > rtol ? r : rtol);
}
