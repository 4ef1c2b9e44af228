/* Allocation internals shared inside the library; not installed. */
#ifndef CORING_ALLOC_INTERNAL_H
#define CORING_ALLOC_INTERNAL_H

#include "coring/alloc.h"

#if defined(__SANITIZE_ADDRESS__)
#define COR__ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define COR__ASAN 1
#endif
#endif

#ifdef COR__ASAN
#include <sanitizer/asan_interface.h>
/* A cached block is poisoned, so a use after free of a pooled frame is reported. */
#define COR__POISON(p, n) ASAN_POISON_MEMORY_REGION((p), (n))
#define COR__UNPOISON(p, n) ASAN_UNPOISON_MEMORY_REGION((p), (n))
#else
#define COR__POISON(p, n) ((void)(p), (void)(n))
#define COR__UNPOISON(p, n) ((void)(p), (void)(n))
#endif

/* The calling thread's allocation statistics. */
extern __thread cor_alloc_stats cor__alloc_stats;

/*
 * Size classes. Every allocation of at most COR__POOL_ABS_MAX bytes with the
 * default alignment gets a block of its class's size from the backing heap,
 * whatever the allocating thread's max_pooled is, so any thread can cache any
 * such block on free or give it back with the class size. Classes are 64
 * bytes apart up to 1 KiB, then four per doubling (1280, 1536, 1792, 2048,
 * 2560, ...), up to 64 KiB: 40 classes.
 */
#define COR__POOL_ABS_MAX 65536u
#define COR__POOL_CLASSES 40u
#define COR__POOL_ALIGN __alignof__(max_align_t)

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

/* A size class's cache: an intrusive stack threaded through the blocks. */
struct cor__pool_bin {
    void *head;
    uint32_t count;
};

enum { COR__POOL_UNINIT = 0, COR__POOL_LIVE, COR__POOL_DEAD };

/*
 * One thread's pool. max_pooled is 0 until the pool is set up and again once
 * the thread has exited, so the fast paths' one size test sends those calls
 * to the slow path.
 */
struct cor__pool {
    uint32_t max_pooled;
    uint32_t depth;
    struct cor__pool_bin bins[COR__POOL_CLASSES];
    int state;               /* COR__POOL_*                                 */
    int mode;                /* COR_ALLOC_ARENA_THREAD or _SHARED            */
    int alloc_flags;         /* jemalloc flags of refills                   */
    int free_flags;          /* jemalloc flags of frees                     */
    unsigned arena, tcache;  /* when mode is COR_ALLOC_ARENA_THREAD         */
    bool has_arena;
};

extern __thread struct cor__pool cor__pool;
extern cor_memory_resource cor__pool_resource;

void *cor__pool_alloc_slow(size_t size, size_t align);
void cor__pool_free_slow(void *p, size_t size, size_t align);

/* The pool's fast path: pop a cached block of the size's class. No atomics, no heap call. */
static inline void *cor__pool_alloc(size_t size, size_t align)
{
    struct cor__pool *p = &cor__pool;
    if (__builtin_expect(size <= p->max_pooled && align <= COR__POOL_ALIGN, 1)) {
        struct cor__pool_bin *b = &p->bins[cor__pool_class(size)];
        void *blk = b->head;
        if (__builtin_expect(blk != NULL, 1)) {
            COR__UNPOISON(blk, sizeof(void *));
            b->head = *(void **)blk;
            b->count--;
            COR__UNPOISON(blk, cor__pool_class_size(cor__pool_class(size)));
            cor__alloc_stats.pool_hits++;
            return blk;
        }
    }
    return cor__pool_alloc_slow(size, align);
}

/* The pool's fast path of a free: push the block on its class's cache if there is room. */
static inline void cor__pool_free(void *blk, size_t size, size_t align)
{
    struct cor__pool *p = &cor__pool;
    if (__builtin_expect(size <= p->max_pooled && align <= COR__POOL_ALIGN, 1)) {
        unsigned c = cor__pool_class(size);
        struct cor__pool_bin *b = &p->bins[c];
        if (__builtin_expect(b->count < p->depth, 1)) {
            *(void **)blk = b->head;
            b->head = blk;
            b->count++;
            COR__POISON(blk, cor__pool_class_size(c));
            return;
        }
    }
    cor__pool_free_slow(blk, size, align);
}

#endif
