/* Core runtime: f16/bf16 conversions (against an independent nearest-value search), arenas, the thread pool,
 * error messages, tensor helpers, CPU path ordering. */
#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "core/arena.h"
#include "core/error.h"
#include "core/half.h"
#include "core/sha256.h"
#include "core/tensor.h"
#include "core/threadpool.h"
#include "testlib.h"

static uint64_t rng_state = 0x9E3779B97F4A7C15ull;
static uint32_t next_u32(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 16);
}

/* Independent f32 -> f16 reference: the nearest f16 by value (ties to even mantissa), overflow rule of IEEE
 * round-to-nearest (values >= 65520 round to inf). */
static uint16_t f16_nearest(float x) {
    if (isnan(x)) return (uint16_t)((cvx_f32_bits(x) >> 16 & 0x8000u) | 0x7E00u);
    uint16_t sign = (uint16_t)(cvx_f32_bits(x) >> 16 & 0x8000u);
    double a = fabs((double)x);
    if (a >= 65520.0) return sign | 0x7C00u;
    /* binary search over the positive finite f16 codes (monotonic in value) */
    uint16_t lo = 0, hi = 0x7BFF;
    while (lo < hi) {
        uint16_t mid = (uint16_t)((lo + hi + 1) / 2);
        if ((double)cvx_f16_to_f32(mid) <= a) lo = mid;
        else hi = (uint16_t)(mid - 1);
    }
    uint16_t best = lo;
    if (lo < 0x7BFF) {
        double dlo = a - cvx_f16_to_f32(lo), dhi = (double)cvx_f16_to_f32((uint16_t)(lo + 1)) - a;
        if (dhi < dlo || (dhi == dlo && (lo & 1))) best = (uint16_t)(lo + 1);
    } else if (a > 65504.0) {
        best = 0x7BFF; /* (65504, 65520) rounds down */
    }
    return sign | best;
}

static uint16_t bf16_nearest(float x) {
    if (isnan(x)) return 0x7FC0;
    uint32_t u = cvx_f32_bits(x);
    uint32_t lo = u & 0xFFFF0000u, hi = lo + 0x10000u;
    uint32_t rem = u & 0xFFFFu;
    if (rem > 0x8000u || (rem == 0x8000u && (lo >> 16 & 1))) return (uint16_t)(hi >> 16);
    return (uint16_t)(lo >> 16);
}

static void test_half(void) {
    /* f16 -> f32 -> f16 is the identity for every non-NaN code; NaN stays NaN. */
    int bad = 0;
    for (uint32_t h = 0; h < 65536; h++) {
        float f = cvx_f16_to_f32((uint16_t)h);
        uint16_t back = cvx_f32_to_f16(f);
        if (((h & 0x7C00u) == 0x7C00u) && (h & 0x3FFu)) {
            if (!isnan(f) || (back & 0x7C00u) != 0x7C00u || !(back & 0x3FFu)) bad++;
        } else if (back != h) {
            bad++;
        }
    }
    CHECK_MSG(bad == 0, "%d f16 codes do not round-trip", bad);
    CHECK(cvx_f16_to_f32(0x3C00) == 1.0f);
    CHECK(cvx_f16_to_f32(0x0001) == 5.960464477539063e-08f); /* smallest subnormal */
    CHECK(cvx_f16_to_f32(0x7BFF) == 65504.0f);
    CHECK(isinf(cvx_f16_to_f32(0xFC00)) && cvx_f16_to_f32(0xFC00) < 0);
    CHECK(cvx_f32_to_f16(65520.0f) == 0x7C00); /* rounds to inf */
    CHECK(cvx_f32_to_f16(65519.0f) == 0x7BFF);
    CHECK(cvx_f32_to_f16(-0.0f) == 0x8000);
    CHECK(cvx_f32_to_f16(NAN) == 0x7E00);
    CHECK(cvx_f32_to_f16(1e-9f) == 0);                   /* underflow to zero */
    CHECK(cvx_f32_to_f16(2.9802322387695312e-08f) == 0);  /* exactly half the smallest subnormal: tie to even (0) */
    CHECK(cvx_f32_to_f16(2.9802326e-08f) == 1);           /* just above the tie */

    /* Random and structured f32 values against the independent nearest search. */
    int bad16 = 0, badbf = 0;
    for (int i = 0; i < 400000; i++) {
        uint32_t u = next_u32();
        if (i % 4 == 1) u = (u & 0x807FFFFFu) | ((uint32_t)(102 + (u >> 23) % 40) << 23); /* the f16 range */
        if (i % 4 == 2) u = (u & 0xFFFFE000u) | 0x1000u;                                    /* f16 ties */
        if (i % 4 == 3) u = (u & 0xFFFF0000u) | 0x8000u;                                    /* bf16 ties */
        float f = cvx_f32_from_bits(u);
        if (cvx_f32_to_f16(f) != f16_nearest(f)) bad16++;
        if (cvx_f32_to_bf16(f) != bf16_nearest(f)) badbf++;
    }
    CHECK_MSG(bad16 == 0, "%d f32->f16 conversions differ from the nearest value", bad16);
    CHECK_MSG(badbf == 0, "%d f32->bf16 conversions differ from the nearest value", badbf);
    CHECK(cvx_f32_to_bf16(NAN) == 0x7FC0);
    CHECK(cvx_f32_to_bf16(INFINITY) == 0x7F80);
    CHECK(cvx_bf16_to_f32(0x3F80) == 1.0f);
    CHECK(cvx_f32_to_bf16(cvx_f32_from_bits(0x3F808000u)) == 0x3F80); /* tie, even stays */
    CHECK(cvx_f32_to_bf16(cvx_f32_from_bits(0x3F818000u)) == 0x3F82); /* tie, odd rounds up */
}

static void test_arena(void) {
    cvx_arena a;
    CHECK(cvx_arena_init(&a, 1 << 20) == 0);
    void *p = cvx_arena_alloc(&a, 10);
    void *q = cvx_arena_alloc(&a, 100);
    CHECK(p && q && ((uintptr_t)p % 64) == 0 && ((uintptr_t)q % 64) == 0 && (char *)q >= (char *)p + 10);
    size_t mark = cvx_arena_mark(&a);
    void *r = cvx_arena_calloc(&a, 1000);
    CHECK(r && ((unsigned char *)r)[999] == 0);
    cvx_arena_reset(&a, mark);
    CHECK(cvx_arena_alloc(&a, 8) == r);         /* the space after the mark is reused */
    CHECK(cvx_arena_alloc(&a, 2 << 20) == NULL); /* too big: NULL, not a crash */
    CHECK(a.peak >= mark + 1000);
    cvx_arena_free(&a);
    cvx_arena_free(&a); /* twice is fine */
}

typedef struct {
    atomic_llong sum;
    atomic_int calls;
    int max_thread;
} pool_ctx;

static void pool_fn(void *arg, int64_t begin, int64_t end, int thread_index) {
    pool_ctx *c = arg;
    long long s = 0;
    for (int64_t i = begin; i < end; i++) s += i;
    atomic_fetch_add(&c->sum, s);
    atomic_fetch_add(&c->calls, 1);
    if (thread_index < 0 || thread_index >= c->max_thread) atomic_fetch_add(&c->sum, 1000000000000LL);
}

static void test_pool(void) {
    for (int nt = 1; nt <= 4; nt++) {
        cvx_pool *p = cvx_pool_new(nt);
        CHECK(p != NULL);
        CHECK(cvx_pool_size(p) == nt);
        for (int rep = 0; rep < 50; rep++) {
            int64_t n = 1 + rep * 997;
            pool_ctx c = {0};
            c.max_thread = nt;
            cvx_pool_parallel_for(p, n, rep % 3 ? 7 : 0, pool_fn, &c);
            CHECK(atomic_load(&c.sum) == (long long)n * (n - 1) / 2);
        }
        cvx_pool_free(p);
    }
    pool_ctx c = {0};
    c.max_thread = 1;
    cvx_pool_parallel_for(NULL, 100, 0, pool_fn, &c); /* NULL pool runs inline */
    CHECK(atomic_load(&c.sum) == 4950);
    cvx_pool_free(NULL);
}

/* Per-thread scratch: each thread writes its own buffer full of its index; the buffers must not overlap and must
 * keep their size (and address, when no bigger reserve came) between calls. */
typedef struct {
    cvx_pool *pool;
    size_t bytes;
    atomic_int bad;
} scratch_ctx;

static void scratch_fn(void *arg, int64_t begin, int64_t end, int thread_index) {
    scratch_ctx *c = arg;
    for (int64_t t = begin; t < end; t++) {
        unsigned char *b = cvx_pool_scratch(c->pool, thread_index);
        if (!b || ((uintptr_t)b & 63)) {
            atomic_fetch_add(&c->bad, 1);
            continue;
        }
        memset(b, thread_index + 1, c->bytes);
        for (volatile int spin = 0; spin < 2000; spin++) {
        }
        for (size_t i = 0; i < c->bytes; i += 97)
            if (b[i] != (unsigned char)(thread_index + 1)) atomic_fetch_add(&c->bad, 1);
    }
}

static void test_pool_scratch(void) {
    for (int nt = 1; nt <= 3; nt++) {
        cvx_pool *p = cvx_pool_new(nt);
        CHECK(p != NULL);
        CHECK(cvx_pool_scratch(p, 0) == NULL); /* nothing reserved yet */
        size_t sizes[] = {100, 5000, 300, 1 << 20};
        void *first = NULL;
        for (int r = 0; r < 4; r++) {
            CHECK(cvx_pool_reserve_scratch(p, sizes[r]) == 0);
            if (r == 1) first = cvx_pool_scratch(p, 0);
            if (r == 2) CHECK(cvx_pool_scratch(p, 0) == first); /* a smaller reserve keeps the buffer */
            scratch_ctx c = {p, sizes[r], 0};
            cvx_pool_parallel_for(p, 64, 1, scratch_fn, &c);
            CHECK(atomic_load(&c.bad) == 0);
        }
        CHECK(cvx_pool_scratch(p, nt) == NULL && cvx_pool_scratch(p, -1) == NULL);
        cvx_pool_free(p);
    }
    /* NULL pool: the calling thread's own buffer */
    CHECK(cvx_pool_reserve_scratch(NULL, 4096) == 0);
    unsigned char *b = cvx_pool_scratch(NULL, 0);
    CHECK(b != NULL);
    if (b) memset(b, 7, 4096);
    scratch_ctx c = {NULL, 4096, 0};
    cvx_pool_parallel_for(NULL, 3, 1, scratch_fn, &c);
    CHECK(atomic_load(&c.bad) == 0);
}

static void test_error_and_tensor(void) {
    cvx_error e;
    cvx_error_clear(&e);
    CHECK(cvx_fail(&e, CVX_ERR_FORMAT, "bad %s", "header") == CVX_ERR_FORMAT);
    cvx_error_prefix(&e, "file.safetensors: ");
    CHECK(!strcmp(cvx_error_message(&e), "file.safetensors: bad header"));
    CHECK(!strcmp(cvx_status_name(CVX_ERR_SHAPE), "CVX_ERR_SHAPE"));
    CHECK(cvx_fail(NULL, CVX_ERR_IO, "ignored") == CVX_ERR_IO);
    char big[3000];
    memset(big, 'x', sizeof big - 1);
    big[sizeof big - 1] = '\0';
    cvx_fail(&e, CVX_ERR_IO, "%s", big);
    cvx_error_prefix(&e, "%s", big);
    CHECK(strlen(cvx_error_message(&e)) == CVX_ERROR_MESSAGE_MAX - 1);

    int64_t shape[3] = {2, 3, 4};
    float data[24];
    for (int i = 0; i < 24; i++) data[i] = (float)i;
    cvx_tensor t = cvx_tensor_view(CVX_DTYPE_F32, data, 3, shape);
    CHECK(cvx_tensor_numel(&t) == 24 && cvx_tensor_nbytes(&t) == 96);
    CHECK(cvx_tensor_get(&t, 23) == 23.0);
    char buf[64];
    CHECK(!strcmp(cvx_shape_str(3, shape, buf, sizeof buf), "[2, 3, 4]"));
    for (int d = 0; d < CVX_DTYPE_COUNT; d++) CHECK(cvx_dtype_from_name(cvx_dtype_name((cvx_dtype)d)) == d);
    CHECK(cvx_dtype_from_name("F8_E4M3") == -1);
    uint16_t h[3] = {0x3C00, 0xC000, 0x7C00};
    int64_t s1[1] = {3};
    cvx_tensor th = cvx_tensor_view(CVX_DTYPE_F16, h, 1, s1);
    float out[3];
    CHECK(cvx_tensor_to_f32(&th, out) == 0 && out[0] == 1.0f && out[1] == -2.0f && isinf(out[2]));
}

static void test_cpu(void) {
    const cvx_cpu_info *c = cvx_cpu_get();
    CHECK(c == cvx_cpu_get());
    CHECK(cvx_isa_supported(CVX_ISA_REF));
    /* Paths are ordered: a machine that supports one supports all below it. */
    for (int i = 1; i < CVX_ISA_COUNT; i++)
        if (cvx_isa_supported((cvx_isa)i)) CHECK(cvx_isa_supported((cvx_isa)(i - 1)));
    CHECK(cvx_isa_supported(cvx_isa_best()));
    CHECK(cvx_isa_supported(cvx_isa_active()));
    for (int i = 0; i < CVX_ISA_COUNT; i++) CHECK(cvx_isa_from_name(cvx_isa_name((cvx_isa)i)) == i);
    CHECK(cvx_isa_from_name("sse") == -1);
    if (c->avx512_bf16) CHECK(c->avx512f);
    if (c->amx_permitted) CHECK(c->amx_tile);
}

/* FIPS 180-4 / NIST example vectors, a split across update calls, and a length that pads into a second block. */
static void test_sha256(void) {
    char hex[65];
    cvx_sha256_hex("", 0, hex);
    CHECK(!strcmp(hex, "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"));
    cvx_sha256_hex("abc", 3, hex);
    CHECK(!strcmp(hex, "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"));
    const char *m = "abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"; /* 56 bytes: two blocks */
    cvx_sha256_hex(m, strlen(m), hex);
    CHECK(!strcmp(hex, "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"));
    static char million[1000000];
    memset(million, 'a', sizeof million);
    cvx_sha256 st;
    unsigned char d[32], d2[32];
    cvx_sha256_init(&st);
    for (size_t off = 0; off < sizeof million; off += 777)
        cvx_sha256_update(&st, million + off, sizeof million - off < 777 ? sizeof million - off : 777);
    cvx_sha256_final(&st, d);
    static const unsigned char want[32] = {0xcd, 0xc7, 0x6e, 0x5c, 0x99, 0x14, 0xfb, 0x92, 0x81, 0xa1, 0xc7,
                                           0xe2, 0x84, 0xd7, 0x3e, 0x67, 0xf1, 0x80, 0x9a, 0x48, 0xa4, 0x97,
                                           0x20, 0x0e, 0x04, 0x6d, 0x39, 0xcc, 0xc7, 0x11, 0x2c, 0xd0};
    CHECK(!memcmp(d, want, 32));
    cvx_sha256_init(&st);
    cvx_sha256_update(&st, million, sizeof million);
    cvx_sha256_final(&st, d2);
    CHECK(!memcmp(d, d2, 32));
}

int main(void) {
    test_half();
    test_arena();
    test_pool();
    test_pool_scratch();
    test_error_and_tensor();
    test_cpu();
    test_sha256();
    return cvx_test_finish("test_core");
}
