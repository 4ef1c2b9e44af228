/*
 * Memory resources: the counting entry points every frame allocation goes
 * through, the malloc-backed resource, and the default resource (the pool).
 */
#include <stdlib.h>

#include "coring/alloc.h"
#include "alloc_internal.h"

COR_THREAD_LOCAL struct cor__alloc_counts cor__alloc_stats;

static bool is_pow2(size_t x)
{
    return x && !(x & (x - 1));
}

/* Everything cor_mr_allocate does not do inline: checks, pool misses, other resources. */
void *cor__mr_allocate(cor_memory_resource *mr, size_t size, size_t align)
{
    if (!mr || !mr->ops || !size || !is_pow2(align)) {
        cor__alloc_stats.failures++;
        return NULL;
    }
    void *p = mr == &cor__pool_resource ? cor__pool_alloc(size, align)
                                        : mr->ops->allocate(mr, size, align);
    if (!p) {
        cor__alloc_stats.failures++;
        return NULL;
    }
    cor__alloc_stats.allocations++;
    cor__count_bytes(size);
    if (__builtin_expect(!cor__pool.max_pooled, 0))
        cor__pool_count_unpooled();
    return p;
}

void cor__mr_deallocate(cor_memory_resource *mr, void *p, size_t size, size_t align)
{
    if (!p || !mr || !mr->ops)
        return;
    cor__count_free(size);
    if (mr == &cor__pool_resource)
        cor__pool_free(p, size, align);
    else
        mr->ops->deallocate(mr, p, size, align);
    if (__builtin_expect(!cor__pool.max_pooled, 0))
        cor__pool_count_unpooled();
}

static void *malloc_allocate(cor_memory_resource *mr, size_t size, size_t align)
{
    cor__alloc_stats.heap_calls++;
    if (align <= __alignof__(max_align_t))
        return malloc(size);
    /* aligned_alloc wants a size that is a multiple of the alignment. */
    return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

static void malloc_deallocate(cor_memory_resource *mr, void *p, size_t size, size_t align)
{
    free(p);
}

static const cor_memory_resource_ops malloc_ops = {malloc_allocate, malloc_deallocate};
static cor_memory_resource malloc_resource = {&malloc_ops};

cor_memory_resource *cor_malloc_resource(void)
{
    return &malloc_resource;
}

cor_memory_resource *cor_default_resource(void)
{
    return &cor__pool_resource;
}
