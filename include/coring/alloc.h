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
    uint64_t cache_grows;  /* times a class's cache depth doubled (see
                              cor_alloc_options.cache_max), cumulative        */
    uint64_t reserved[3];
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
 *  cache_depth: blocks each size class caches at first (COR_ALLOC_CACHE_DEPTH);
 *               1 to 4096. A free finding its class full goes to the backing
 *               heap.
 *  arena:       COR_ALLOC_ARENA_* (COR_ALLOC_ARENA_MODE).
 *  cache_max:   the depth a class may grow to (COR_ALLOC_CACHE_MAX, or
 *               cache_depth if that is larger); cache_depth to 4096. A class
 *               whose free found it full and whose next allocation then finds
 *               it empty (its working set is deeper than its cache) doubles
 *               its depth, up to cache_max: a thread serving a thousand
 *               connections stops cycling frames through the heap, while a
 *               class whose frees and allocations do not take turns that way
 *               keeps its depth. Equal to cache_depth: depths stay fixed.
 *  reserved:    zero.
 */
typedef struct cor_alloc_options {
    uint32_t max_pooled;
    uint32_t cache_depth;
    int arena;
    uint32_t cache_max;
    uint32_t reserved[4];
} cor_alloc_options;

/*
 * Applies o to the calling thread's pool: returns its cached blocks to the
 * backing heap, then uses the new settings (every class back at cache_depth).
 * Blocks it already handed out stay valid and may be freed on any thread.
 * Returns 0; -EINVAL for a NULL o, a member out of range or a nonzero
 * reserved field; -ENOTSUP for an arena mode on a build whose pool refills
 * from malloc (COR_ALLOC_JEMALLOC 0); -EPERM from a thread that is exiting.
 * Calling thread only.
 */
COR_API int cor_alloc_configure(const cor_alloc_options *o);

/*
 * Returns every block cached by the calling thread's pool to the backing
 * heap; the depths the classes grew to stay. Returns the number of blocks
 * returned (>= 0). Calling thread only.
 */
COR_API int cor_alloc_trim(void);

/* ---- library internals the inline fast paths expand to ------------------------------ */

/*
 * Size classes of the pool. Every allocation of at most COR__POOL_ABS_MAX
 * bytes with at most max_align_t alignment gets a block of its class's size
 * from the backing heap, whatever the allocating thread's max_pooled is, so
 * any thread can cache any such block when it is freed. Classes are 64 bytes
 * apart up to 1 KiB, then four per doubling (1280, 1536, 1792, 2048, 2560,
 * ...) up to 64 KiB: 40 classes.
 */
#define COR__POOL_ABS_MAX 65536u
#define COR__POOL_CLASSES 40u

static inline unsigned cor__pool_class(size_t size)
{
    if (size <= 1024)
        return (unsigned)((size - 1) >> 6);
    unsigned lg = 63u - (unsigned)__builtin_clzll((unsigned long long)(size - 1));
    return 16u + (lg - 10u) * 4u + (unsigned)(((size - 1) >> (lg - 2u)) & 3u);
}

static inline size_t cor__pool_class_size(unsigned c)
{
    if (c < 16)
        return (size_t)(c + 1) * 64;
    unsigned j = c - 16, lg = 10 + j / 4;
    return (size_t)(5 + j % 4) << (lg - 2);
}

/* A size class's cache: an intrusive stack threaded through the free blocks. */
struct cor__pool_bin {
    void *head;
    uint32_t count;
    uint32_t depth; /* the most blocks it holds now (grows, see cache_max) */
};

/*
 * The part of a thread's pool the inline fast paths touch. max_pooled is 0
 * until the pool is set up and again once its thread is exiting, so the one
 * size test sends those calls to the library.
 */
struct cor__pool {
    uint32_t max_pooled;
    uint32_t depth; /* every class's depth at start (cache_depth) */
    struct cor__pool_bin bins[COR__POOL_CLASSES];
};

/*
 * A thread's counters as the allocation paths keep them, with fewer stores
 * per allocation than cor_alloc_stats has fields: cor_alloc_stats_get
 * derives allocations (allocations + inline_hits), pool_hits (pool_hits +
 * inline_hits) and live_bytes (bytes - freed_bytes).
 */
struct cor__alloc_counts {
    uint64_t inline_hits; /* allocations the inline fast path served from the cache */
    uint64_t allocations; /* successful allocations made by the library's path      */
    uint64_t pool_hits;   /* of those, served from the cache                          */
    uint64_t bytes;       /* bytes handed out, cumulative (both paths)                */
    uint64_t frees;       /* deallocate calls (both paths)                            */
    uint64_t freed_bytes; /* bytes given back, cumulative                             */
    int64_t peak_bytes;   /* highest bytes - freed_bytes seen                         */
    uint64_t failures, heap_calls, pool_misses, arena_calls; /* as in cor_alloc_stats  */
    uint64_t cache_grows;                                    /* as in cor_alloc_stats  */
};

COR_API extern COR_THREAD_LOCAL struct cor__pool cor__pool;
COR_API extern COR_THREAD_LOCAL struct cor__alloc_counts cor__alloc_stats;
COR_API extern cor_memory_resource cor__pool_resource;
COR_API void *cor__mr_allocate(cor_memory_resource *mr, size_t size, size_t align);
COR_API void cor__mr_deallocate(cor_memory_resource *mr, void *p, size_t size, size_t align);

#if COR_ALLOC_POISON
/* An AddressSanitizer build poisons cached blocks: a use after free of a frame is reported. */
void __asan_poison_memory_region(void const volatile *addr, size_t size);
void __asan_unpoison_memory_region(void const volatile *addr, size_t size);
#define COR__POISON(p, n) __asan_poison_memory_region((p), (n))
#define COR__UNPOISON(p, n) __asan_unpoison_memory_region((p), (n))
#else
#define COR__POISON(p, n) ((void)(p), (void)(n))
#define COR__UNPOISON(p, n) ((void)(p), (void)(n))
#endif
/*
 * A cached block's first word (the stack link) stays unpoisoned: LeakSanitizer
 * does not scan poisoned memory, and the blocks below the top of a class's
 * stack are reachable only through those links.
 */
#define COR__POISON_CACHED(p, n) COR__POISON((char *)(p) + sizeof(void *), (n) - sizeof(void *))

/* Counts size bytes handed out: the cumulative count and the peak of the live ones. */
static inline void cor__count_bytes(size_t size)
{
    struct cor__alloc_counts *st = &cor__alloc_stats;
    uint64_t bytes = st->bytes + size;
    st->bytes = bytes;
    int64_t live = (int64_t)(bytes - st->freed_bytes);
    if (__builtin_expect(live > st->peak_bytes, 0))
        st->peak_bytes = live;
}

/* Counts size bytes given back. */
static inline void cor__count_free(size_t size)
{
    cor__alloc_stats.frees++;
    cor__alloc_stats.freed_bytes += size;
}

/* True if (size, align) may be served from the calling thread's cache. */
static inline bool cor__pool_fits(struct cor__pool *p, size_t size, size_t align)
{
    return size - 1 < p->max_pooled && align - 1 < __alignof__(max_align_t) &&
           !(align & (align - 1));
}

/* ---- allocating through a resource ---------------------------------------------------- */

/*
 * Allocates size bytes aligned to align from mr, counting the call in the
 * calling thread's statistics. Returns NULL if mr is NULL, size is 0, align
 * is not a power of two, or the resource is out of memory. Any thread.
 *
 * Inline: a hit in the calling thread's pool (the default resource) pops a
 * cached block here, without a call; everything else goes to the library.
 */
static inline void *cor_mr_allocate(cor_memory_resource *mr, size_t size, size_t align)
{
    struct cor__pool *p = &cor__pool;
    if (__builtin_expect(mr == &cor__pool_resource && cor__pool_fits(p, size, align), 1)) {
        unsigned c = cor__pool_class(size);
        void *blk = p->bins[c].head;
        if (__builtin_expect(blk != NULL, 1)) {
            p->bins[c].head = *(void **)blk;
            p->bins[c].count--;
            COR__UNPOISON(blk, cor__pool_class_size(c));
            cor__alloc_stats.inline_hits++;
            cor__count_bytes(size);
            return blk;
        }
    }
    return cor__mr_allocate(mr, size, align);
}

/*
 * Returns p (from cor_mr_allocate on mr with the same size and align) to mr.
 * NULL p is a no-op. Any thread: a block of the default resource goes to the
 * calling thread's cache (inline, when its class has room) or to the heap.
 */
static inline void cor_mr_deallocate(cor_memory_resource *mr, void *p, size_t size, size_t align)
{
    struct cor__pool *pool = &cor__pool;
    if (__builtin_expect(mr == &cor__pool_resource && p && cor__pool_fits(pool, size, align), 1)) {
        unsigned c = cor__pool_class(size);
        struct cor__pool_bin *b = &pool->bins[c];
        if (__builtin_expect(b->count < b->depth, 1)) {
            cor__count_free(size);
            *(void **)p = b->head;
            b->head = p;
            b->count++;
            COR__POISON_CACHED(p, cor__pool_class_size(c));
            return;
        }
    }
    cor__mr_deallocate(mr, p, size, align);
}

COR_END_DECLS

#endif
