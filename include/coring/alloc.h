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
 * names one. It is the per-thread recycling pool: an allocation is served
 * from the calling thread's cache of blocks of its size class, and a free
 * goes to the freeing thread's cache, so a frame may be freed on any thread.
 * Never NULL; lives for the whole process; any thread.
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
 * library's own resources, how the memory was obtained. Counters are
 * cumulative since the thread started (or the last cor_alloc_stats_reset);
 * cached and cached_bytes describe the thread's pool now.
 */
typedef struct cor_alloc_stats {
    uint64_t allocations;  /* successful allocate calls                        */
    uint64_t frees;        /* deallocate calls                                 */
    uint64_t bytes;        /* bytes handed out by allocate, cumulative         */
    uint64_t failures;     /* allocate calls that returned NULL                */
    uint64_t heap_calls;   /* allocate calls that reached malloc or an arena   */
    uint64_t pool_hits;    /* pool allocations served from the thread's cache  */
    uint64_t pool_misses;  /* pool allocations the cache could not serve       */
    uint64_t arena_calls;  /* calls the pool made to its backing heap, both
                              ways: refills, overflow frees, trims, exit flush */
    int64_t live_bytes;    /* bytes allocated minus bytes freed on this thread
                              (negative when it frees what others allocated)  */
    int64_t peak_bytes;    /* highest live_bytes seen                          */
    uint64_t cached;       /* blocks in the thread's pool cache now            */
    uint64_t cached_bytes; /* their size                                       */
    uint64_t reserved[4];
} cor_alloc_stats;

/* Copies the calling thread's statistics into *out. Returns 0, or -EINVAL if out is NULL. */
COR_API int cor_alloc_stats_get(cor_alloc_stats *out);

/*
 * Copies into *out the sum of the statistics of every thread that has
 * exited (its pool flushed on exit; cached is then 0). Returns 0, or -EINVAL
 * if out is NULL. Any thread.
 */
COR_API int cor_alloc_stats_retired(cor_alloc_stats *out);

/* Zeroes the calling thread's counters (cached and cached_bytes still describe its pool). */
COR_API void cor_alloc_stats_reset(void);

/* How the pool refills (cor_alloc_options.arena). */
enum {
    COR_ALLOC_ARENA_DEFAULT = 0, /* the build default (-Dalloc_arena)               */
    COR_ALLOC_ARENA_THREAD = 1,  /* a jemalloc arena and tcache owned by the thread */
    COR_ALLOC_ARENA_SHARED = 2   /* jemalloc's shared arenas and automatic tcache    */
};

/*
 * Settings of a thread's pool. Zero members mean the build default
 * (<coring/config.h>):
 *  max_pooled:  the largest allocation, in bytes, served from the cache
 *               (COR_ALLOC_MAX_POOLED); 64 to 65536. Larger allocations go
 *               straight to the backing heap.
 *  cache_depth: blocks cached per size class (COR_ALLOC_CACHE_DEPTH); 1 to
 *               4096. A free finding its class full goes to the backing heap.
 *  arena:       COR_ALLOC_ARENA_* (COR_ALLOC_ARENA_MODE).
 */
typedef struct cor_alloc_options {
    uint32_t max_pooled;
    uint32_t cache_depth;
    int arena;
    uint32_t reserved[5];
} cor_alloc_options;

/*
 * Applies o to the calling thread's pool: returns its cached blocks to the
 * backing heap, then uses the new settings. Blocks it already handed out stay
 * valid and may be freed on any thread. Returns 0; -EINVAL for a NULL o or a
 * member out of range; -ENOTSUP for an arena mode on a build whose pool
 * refills from malloc (COR_ALLOC_JEMALLOC 0); -EPERM from a thread that is
 * exiting. Calling thread only.
 */
COR_API int cor_alloc_configure(const cor_alloc_options *o);

/*
 * Returns every block cached by the calling thread's pool to the backing
 * heap. Returns the number of blocks returned (>= 0). Calling thread only.
 */
COR_API int cor_alloc_trim(void);

COR_END_DECLS

#endif
