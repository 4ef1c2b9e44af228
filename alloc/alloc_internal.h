/* Allocation internals shared inside the library; not installed. */
#ifndef CORING_ALLOC_INTERNAL_H
#define CORING_ALLOC_INTERNAL_H

#include "coring/alloc.h"

#define COR__POOL_ALIGN __alignof__(max_align_t)

/*
 * The pool's own entry points (the resource's ops): a cached block when
 * there is one, else the backing heap. They count pool hits, misses and heap
 * calls; cor_mr_allocate counts the allocation itself.
 */
void *cor__pool_alloc(size_t size, size_t align);
void cor__pool_free(void *p, size_t size, size_t align);

/*
 * Called after counting an allocation or a free while the thread's pool is
 * not live (max_pooled 0): on a thread whose pool already exited (another
 * thread-exit hook allocating or freeing late), what was counted goes to
 * the retired sum at once.
 */
void cor__pool_count_unpooled(void);

#endif
