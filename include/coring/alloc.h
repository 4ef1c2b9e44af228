/*
 * Frame allocation: the memory_resource interface every coroutine frame is
 * allocated through, the library's default resource, and per-thread
 * allocation statistics.
 */
#ifndef CORING_ALLOC_H
#define CORING_ALLOC_H

#include "coring/common.h"

COR_BEGIN_DECLS

/*
 * The operations of a memory resource (the C counterpart of
 * std::pmr::memory_resource). allocate returns memory of at least size bytes
 * aligned to align (a power of two), or NULL on failure. deallocate is given
 * exactly the size and align that allocate was. Both may be called from any
 * thread unless the resource documents otherwise; a frame allocated on one
 * thread may be freed on another.
 */
typedef struct cor_memory_resource_ops {
    void *(*allocate)(cor_memory_resource *mr, size_t size, size_t align);
    void (*deallocate)(cor_memory_resource *mr, void *p, size_t size, size_t align);
} cor_memory_resource_ops;

/* A memory resource. Embed it as the first member of your own resource struct. */
struct cor_memory_resource {
    const cor_memory_resource_ops *ops;
};

/*
 * Returns the resource backed by the C library's malloc/free. Thread-safe,
 * never NULL, lives for the whole process.
 */
COR_API cor_memory_resource *cor_malloc_resource(void);

/*
 * Returns the library's default frame allocator: the resource a frame is
 * allocated from when neither a launch, a run() nor an execution context
 * names one. Never NULL; lives for the whole process; any thread.
 */
COR_API cor_memory_resource *cor_default_resource(void);

/*
 * Allocates size bytes aligned to align from mr, counting the call in the
 * calling thread's statistics. Returns NULL if mr is NULL, size is 0, align
 * is not a power of two, or the resource is out of memory.
 */
COR_API void *cor_mr_allocate(cor_memory_resource *mr, size_t size, size_t align);

/* Returns p (from cor_mr_allocate on mr with the same size and align) to mr. NULL p is a no-op. */
COR_API void cor_mr_deallocate(cor_memory_resource *mr, void *p, size_t size, size_t align);

/*
 * Allocation statistics of one thread: counts of what passed through
 * cor_mr_allocate/cor_mr_deallocate (every frame allocation does) and, for the
 * library's own resources, how the memory was obtained.
 */
typedef struct cor_alloc_stats {
    uint64_t allocations;  /* successful allocate calls                     */
    uint64_t frees;        /* deallocate calls                              */
    uint64_t bytes;        /* bytes handed out by allocate, cumulative      */
    uint64_t failures;     /* allocate calls that returned NULL             */
    uint64_t heap_calls;   /* calls that reached malloc or a jemalloc arena */
    uint64_t reserved[8];
} cor_alloc_stats;

/* Copies the calling thread's statistics into *out. Returns 0, or -EINVAL if out is NULL. */
COR_API int cor_alloc_stats_get(cor_alloc_stats *out);

/* Zeroes the calling thread's statistics. */
COR_API void cor_alloc_stats_reset(void);

COR_END_DECLS

#endif
