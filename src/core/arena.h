/* Arenas: one reservation of virtual memory (mmap, committed lazily by the OS), bump allocation with 64-byte
 * alignment, marks to free everything allocated after a point. A job sizes its arena from a planning pass
 * over the shapes; a failed allocation is an error, not a crash. */
#ifndef CVX_CORE_ARENA_H
#define CVX_CORE_ARENA_H

#include <stddef.h>

typedef struct {
    unsigned char *base;
    size_t capacity; /* bytes reserved */
    size_t used;     /* bytes handed out (including alignment padding) */
    size_t peak;     /* high-water mark of used */
} cvx_arena;

/* Reserves `capacity` bytes. Returns 0, or -1 when the reservation fails. */
int cvx_arena_init(cvx_arena *a, size_t capacity);
/* Releases the reservation (a may be zeroed or already freed). */
void cvx_arena_free(cvx_arena *a);
/* 64-byte aligned, uninitialised; NULL when the arena is full. */
void *cvx_arena_alloc(cvx_arena *a, size_t bytes);
/* Same, zero-filled. */
void *cvx_arena_calloc(cvx_arena *a, size_t bytes);
static inline size_t cvx_arena_mark(const cvx_arena *a) { return a->used; }
/* Frees everything allocated after the mark. */
void cvx_arena_reset(cvx_arena *a, size_t mark);
/* As cvx_arena_reset, keeping every page resident: for an arena refilled at once by the next call (a
 * transformer forward per denoising step), where handing the pages back would have the kernel fault in and
 * clear them again each time (with transparent huge pages, 2 MB at a time). */
void cvx_arena_rewind(cvx_arena *a, size_t mark);

#endif
