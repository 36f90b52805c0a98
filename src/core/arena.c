#include "core/arena.h"

#include <string.h>
#include <sys/mman.h>

#define CVX_ARENA_ALIGN 64

int cvx_arena_init(cvx_arena *a, size_t capacity) {
    memset(a, 0, sizeof *a);
    if (capacity == 0) capacity = CVX_ARENA_ALIGN;
    void *p = mmap(NULL, capacity, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (p == MAP_FAILED) return -1;
    a->base = p;
    a->capacity = capacity;
    return 0;
}

void cvx_arena_free(cvx_arena *a) {
    if (a->base) munmap(a->base, a->capacity);
    memset(a, 0, sizeof *a);
}

void *cvx_arena_alloc(cvx_arena *a, size_t bytes) {
    size_t start = (a->used + CVX_ARENA_ALIGN - 1) & ~(size_t)(CVX_ARENA_ALIGN - 1);
    if (!a->base || start > a->capacity || bytes > a->capacity - start) return NULL;
    a->used = start + bytes;
    if (a->used > a->peak) a->peak = a->used;
    return a->base + start;
}

void *cvx_arena_calloc(cvx_arena *a, size_t bytes) {
    void *p = cvx_arena_alloc(a, bytes);
    if (p) memset(p, 0, bytes);
    return p;
}

void cvx_arena_reset(cvx_arena *a, size_t mark) {
    if (mark > a->used) return;
    /* Give large freed tails back to the OS so a stage's peak does not stay resident. */
    size_t page = 4096;
    size_t from = (mark + page - 1) & ~(page - 1);
    size_t to = a->used & ~(page - 1);
    if (to > from && to - from >= ((size_t)64 << 20)) madvise(a->base + from, to - from, MADV_DONTNEED);
    a->used = mark;
}

void cvx_arena_rewind(cvx_arena *a, size_t mark) {
    if (mark <= a->used) a->used = mark;
}
