/* Golden handler for the `rng` component (../shared/golden/rng): torch.Generator('cpu').manual_seed(S) draws.
 *
 * Every name in check.compare is parsed following the case's naming grammar and regenerated:
 *   mt19937_seed{S}_u32_{a}_to_{b}                 raw MT19937 outputs a..b (0-based), as I64 (or U32/U64)
 *   randn_{f32|f16|bf16}[_genericpath]_seed{S}_shape{AxBx...}[_first{K}|_last{K}]
 *                                                  torch.randn in that dtype (genericpath: the non-AVX2 kernel);
 *                                                  _first/_last: the flattened head/tail of K values
 *   seq_seed{S}_call{i}_shape{AxB...}              consecutive calls i = 0, 1, ... on one generator seeded once
 * A name that does not parse is an error naming it: nothing is silently skipped. Output shapes follow the
 * expected tensor (its element count must match what the name says). */
#include <errno.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>

#include "diffusion/rng.h"
#include "golden/golden.h"

#define RNG_MAX_NUMEL (1ll << 28)  /* a name asking for more is rejected, not allocated */
#define RNG_MAX_SKIP (1ull << 28)  /* raw draws skipped before an mt19937 window */

typedef struct {
    const char *s; /* cursor into the name */
} cursor;

static int eat(cursor *cur, const char *lit) {
    size_t n = strlen(lit);
    if (strncmp(cur->s, lit, n) != 0) return 0;
    cur->s += n;
    return 1;
}

static int eat_u64(cursor *cur, uint64_t *out) {
    if (*cur->s < '0' || *cur->s > '9') return 0;
    char *end;
    errno = 0;
    unsigned long long v = strtoull(cur->s, &end, 10);
    if (errno == ERANGE) return 0;
    *out = v;
    cur->s = end;
    return 1;
}

/* "AxBxC" */
static int eat_shape(cursor *cur, int *ndim, int64_t *shape, int max_dims, int64_t *numel) {
    int n = 0;
    int64_t total = 1;
    for (;;) {
        uint64_t d;
        if (n >= max_dims || !eat_u64(cur, &d) || d > (uint64_t)RNG_MAX_NUMEL) return 0;
        shape[n++] = (int64_t)d;
        total *= (int64_t)d;
        if (total > RNG_MAX_NUMEL) return 0;
        if (!eat(cur, "x")) break;
    }
    *ndim = n;
    *numel = total;
    return 1;
}

typedef enum { DT_F32, DT_F16, DT_BF16 } draw_dtype;

typedef struct {
    draw_dtype dt;
    int generic;
    uint64_t seed;
    int ndim;
    int64_t shape[16];
    int64_t numel;
    int part;       /* 0 whole, 1 first K, 2 last K */
    int64_t part_n; /* K */
} randn_req;

static cvx_status bad_name(cvx_golden_case *c, const char *name, const char *why) {
    return cvx_fail(&c->err, CVX_ERR_FORMAT, "rng: cannot parse compare name '%s' (%s)", name, why);
}

/* The output's shape: the expected tensor's when it has our element count, else ours (1-D if it has more dims
 * than a tensor view holds). */
static cvx_status out_shape(cvx_golden_case *c, const char *name, int64_t numel, int ndim, const int64_t *shape,
                            int *ondim, int64_t *oshape) {
    const cvx_st_tensor *e = cvx_golden_tensor(c, name);
    if (e) {
        int64_t en = 1;
        for (int i = 0; i < e->ndim; i++) en *= e->shape[i];
        if (en != numel)
            return cvx_fail(&c->err, CVX_ERR_SHAPE, "rng: '%s': the name asks for %" PRId64
                            " values but the expected tensor has %" PRId64, name, numel, en);
        *ondim = e->ndim;
        for (int i = 0; i < e->ndim; i++) oshape[i] = e->shape[i];
        return CVX_OK;
    }
    if (ndim > CVX_MAX_DIMS) {
        *ondim = 1;
        oshape[0] = numel;
    } else {
        *ondim = ndim;
        for (int i = 0; i < ndim; i++) oshape[i] = shape[i];
    }
    return CVX_OK;
}

/* Draws `numel` values of dtype dt from g into a malloc'd buffer (4 bytes per f32 value, 2 per f16/bf16). */
static void *draw(cvx_rng *g, draw_dtype dt, int generic, int64_t numel) {
    size_t esz = dt == DT_F32 ? 4 : 2;
    void *buf = malloc((size_t)(numel > 0 ? numel : 1) * esz);
    if (!buf) return NULL;
    if (dt == DT_F32)
        cvx_rng_randn_f32(g, buf, numel, generic ? CVX_RNG_GENERIC : CVX_RNG_AVX2);
    else if (dt == DT_F16)
        cvx_rng_randn_f16(g, buf, numel);
    else
        cvx_rng_randn_bf16(g, buf, numel);
    return buf;
}

static cvx_dtype tensor_dtype(draw_dtype dt) {
    return dt == DT_F32 ? CVX_DTYPE_F32 : dt == DT_F16 ? CVX_DTYPE_F16 : CVX_DTYPE_BF16;
}

static cvx_status emit_draw(cvx_golden_case *c, const char *name, draw_dtype dt, const void *buf, int64_t offset,
                            int64_t numel, int ndim, const int64_t *shape) {
    int ondim = 0;
    int64_t oshape[16];
    cvx_status st = out_shape(c, name, numel, ndim, shape, &ondim, oshape);
    if (st) return st;
    size_t esz = dt == DT_F32 ? 4 : 2;
    cvx_tensor t = cvx_tensor_view(tensor_dtype(dt), (char *)(uintptr_t)buf + (size_t)offset * esz, ondim, oshape);
    return cvx_golden_output(c, name, &t);
}

static cvx_status do_mt(cvx_golden_case *c, const char *name) {
    cursor cur = {name};
    uint64_t seed, a, b;
    if (!eat(&cur, "mt19937_seed") || !eat_u64(&cur, &seed) || !eat(&cur, "_u32_") || !eat_u64(&cur, &a) ||
        !eat(&cur, "_to_") || !eat_u64(&cur, &b) || *cur.s)
        return bad_name(c, name, "expected mt19937_seed{S}_u32_{a}_to_{b}");
    if (b < a || b - a >= (uint64_t)RNG_MAX_NUMEL || a > RNG_MAX_SKIP)
        return bad_name(c, name, "empty or too large draw window");
    int64_t n = (int64_t)(b - a + 1);
    const cvx_st_tensor *e = cvx_golden_tensor(c, name);
    cvx_dtype dt = e ? e->dtype : CVX_DTYPE_I64;
    if (dt != CVX_DTYPE_I64 && dt != CVX_DTYPE_U64 && dt != CVX_DTYPE_U32)
        return cvx_fail(&c->err, CVX_ERR_SHAPE, "rng: '%s': expected dtype %s is not an integer type for u32 draws",
                        name, cvx_dtype_name(dt));
    cvx_rng g;
    cvx_rng_seed(&g, seed);
    for (uint64_t i = 0; i < a; i++) cvx_rng_next_u32(&g);
    void *buf = malloc((size_t)n * 8);
    if (!buf) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "rng: '%s': out of memory", name);
    for (int64_t i = 0; i < n; i++) {
        uint32_t v = cvx_rng_next_u32(&g);
        if (dt == CVX_DTYPE_U32)
            ((uint32_t *)buf)[i] = v;
        else
            ((uint64_t *)buf)[i] = v; /* I64 and U64 hold the same bits for a u32 value */
    }
    int ondim = 0;
    int64_t oshape[16], shape1[1] = {n};
    cvx_status st = out_shape(c, name, n, 1, shape1, &ondim, oshape);
    if (!st) {
        cvx_tensor t = cvx_tensor_view(dt, buf, ondim, oshape);
        st = cvx_golden_output(c, name, &t);
    }
    free(buf);
    return st;
}

static cvx_status parse_randn(cvx_golden_case *c, const char *name, randn_req *r) {
    cursor cur = {name};
    memset(r, 0, sizeof *r);
    if (!eat(&cur, "randn_")) return bad_name(c, name, "expected randn_");
    if (eat(&cur, "f32_"))
        r->dt = DT_F32;
    else if (eat(&cur, "f16_"))
        r->dt = DT_F16;
    else if (eat(&cur, "bf16_"))
        r->dt = DT_BF16;
    else
        return bad_name(c, name, "dtype must be f32, f16 or bf16");
    if (eat(&cur, "genericpath_")) {
        if (r->dt != DT_F32) return bad_name(c, name, "genericpath exists for f32 only");
        r->generic = 1;
    }
    if (!eat(&cur, "seed") || !eat_u64(&cur, &r->seed)) return bad_name(c, name, "expected seed{S}");
    if (!eat(&cur, "_shape") || !eat_shape(&cur, &r->ndim, r->shape, 16, &r->numel))
        return bad_name(c, name, "expected _shape{AxB...} of a sane size");
    if (*cur.s) {
        uint64_t k;
        if (eat(&cur, "_first"))
            r->part = 1;
        else if (eat(&cur, "_last"))
            r->part = 2;
        else
            return bad_name(c, name, "unknown suffix");
        if (!eat_u64(&cur, &k) || *cur.s || k == 0 || k > (uint64_t)r->numel)
            return bad_name(c, name, "_first/_last count must be 1..numel");
        r->part_n = (int64_t)k;
    }
    return CVX_OK;
}

static cvx_status do_randn(cvx_golden_case *c, const char *name) {
    randn_req r;
    cvx_status st = parse_randn(c, name, &r);
    if (st) return st;
    cvx_rng g;
    cvx_rng_seed(&g, r.seed);
    void *buf = draw(&g, r.dt, r.generic, r.numel);
    if (!buf) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "rng: '%s': out of memory", name);
    if (r.part == 0) {
        st = emit_draw(c, name, r.dt, buf, 0, r.numel, r.ndim, r.shape);
    } else {
        int64_t off = r.part == 1 ? 0 : r.numel - r.part_n;
        int64_t shape1[1] = {r.part_n};
        st = emit_draw(c, name, r.dt, buf, off, r.part_n, 1, shape1);
    }
    free(buf);
    return st;
}

/* seq_seed{S}_call{i}_shape{...}: all calls of one seed are replayed on one generator in call order. */
typedef struct {
    const char *name;
    uint64_t seed;
    uint64_t call;
    int ndim;
    int64_t shape[16];
    int64_t numel;
} seq_req;

static int seq_cmp(const void *pa, const void *pb) {
    const seq_req *a = pa, *b = pb;
    if (a->seed != b->seed) return a->seed < b->seed ? -1 : 1;
    if (a->call != b->call) return a->call < b->call ? -1 : 1;
    return 0;
}

static cvx_status do_seq(cvx_golden_case *c, seq_req *reqs, size_t n) {
    qsort(reqs, n, sizeof *reqs, seq_cmp);
    cvx_rng g;
    for (size_t i = 0; i < n; i++) {
        seq_req *r = &reqs[i];
        int first = i == 0 || reqs[i - 1].seed != r->seed;
        if (first) {
            if (r->call != 0)
                return cvx_fail(&c->err, CVX_ERR_FORMAT,
                                "rng: '%s': calls of seed %" PRIu64 " must start at call0 (the shapes of earlier "
                                "calls are unknown)", r->name, r->seed);
            cvx_rng_seed(&g, r->seed);
        } else if (r->call != reqs[i - 1].call + 1) {
            return cvx_fail(&c->err, CVX_ERR_FORMAT,
                            "rng: '%s': call%" PRIu64 " of seed %" PRIu64 " is missing or repeated (the sequence "
                            "cannot be replayed)", r->name, reqs[i - 1].call + 1, r->seed);
        }
        const cvx_st_tensor *e = cvx_golden_tensor(c, r->name);
        draw_dtype dt = DT_F32;
        if (e && e->dtype == CVX_DTYPE_F16) dt = DT_F16;
        if (e && e->dtype == CVX_DTYPE_BF16) dt = DT_BF16;
        void *buf = draw(&g, dt, 0, r->numel);
        if (!buf) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "rng: '%s': out of memory", r->name);
        cvx_status st = emit_draw(c, r->name, dt, buf, 0, r->numel, r->ndim, r->shape);
        free(buf);
        if (st) return st;
    }
    return CVX_OK;
}

cvx_status cvx_golden_rng(cvx_golden_case *c) {
    json_t *compare = c->check ? json_object_get(c->check, "compare") : NULL;
    if (!json_is_object(compare)) return cvx_fail(&c->err, CVX_ERR_FORMAT, "rng: check.compare is not an object");
    size_t n = json_object_size(compare);
    seq_req *seq = calloc(n ? n : 1, sizeof *seq);
    if (!seq) return cvx_fail(&c->err, CVX_ERR_OUT_OF_MEMORY, "rng: out of memory");
    size_t nseq = 0;
    cvx_status st = CVX_OK;
    const char *name;
    json_t *val;
    json_object_foreach(compare, name, val) {
        if (strncmp(name, "mt19937_", 8) == 0) {
            st = do_mt(c, name);
        } else if (strncmp(name, "randn_", 6) == 0) {
            st = do_randn(c, name);
        } else if (strncmp(name, "seq_", 4) == 0) {
            seq_req *r = &seq[nseq];
            cursor cur = {name};
            r->name = name;
            if (!eat(&cur, "seq_seed") || !eat_u64(&cur, &r->seed) || !eat(&cur, "_call") ||
                !eat_u64(&cur, &r->call) || !eat(&cur, "_shape") ||
                !eat_shape(&cur, &r->ndim, r->shape, 16, &r->numel) || *cur.s)
                st = bad_name(c, name, "expected seq_seed{S}_call{i}_shape{AxB...}");
            else
                nseq++;
        } else {
            st = bad_name(c, name, "unknown prefix");
        }
        if (st) break;
    }
    if (!st && nseq) st = do_seq(c, seq, nseq);
    free(seq);
    return st;
}
