/*
 * The default frame allocator: a per-thread recycling pool.
 *
 * Each thread caches freed blocks per size class (<coring/alloc.h>) in
 * intrusive stacks bounded by its cache depth. Allocation pops, free pushes:
 * thread-local, no atomics, no heap call. A miss refills one block from the
 * backing heap and a free that finds its class full returns the block there.
 * A class that keeps doing both (a free overflows it, then an allocation
 * misses) caches too little for its working set: its depth doubles, up to
 * the thread's cache_max.
 *
 * The backing heap is, per thread, a jemalloc arena created for it
 * (arenas.create) used through an explicit tcache (tcache.create) with
 * mallocx(MALLOCX_ARENA | MALLOCX_TCACHE) and sdallocx; or jemalloc's shared
 * arenas; or, in a COR_ALLOC_JEMALLOC 0 build, malloc. jemalloc frees a block
 * of any arena from any thread, so a frame freed on another thread than the
 * one that allocated it lands in the freeing thread's cache or goes back to
 * jemalloc through the freeing thread's tcache.
 *
 * A thread's exit (a pthread key destructor) returns its cached blocks,
 * destroys its tcache and puts its arena on a free list for the next thread:
 * arenas cannot be destroyed while other threads may still hold their blocks.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "alloc_internal.h"

#if COR_ALLOC_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

COR_THREAD_LOCAL struct cor__pool cor__pool;

enum { POOL_UNINIT = 0, POOL_LIVE, POOL_DEAD };

/* The rest of a thread's pool, which only the library's slow paths touch. */
struct pool_state {
    int state;              /* POOL_*                                 */
    int mode;               /* COR_ALLOC_ARENA_THREAD or _SHARED       */
    int alloc_flags;        /* jemalloc flags of refills               */
    int free_flags;         /* jemalloc flags of frees                 */
    unsigned arena, tcache; /* when mode is COR_ALLOC_ARENA_THREAD     */
    bool has_arena;
    uint32_t cache_max;  /* the depth a class may grow to           */
    uint64_t overflowed; /* classes a free found full since their
                            last miss: bit c for class c            */
};

_Static_assert(COR__POOL_CLASSES <= 64, "pool_state.overflowed has a bit per class");

static COR_THREAD_LOCAL struct pool_state ps;

static void *pool_allocate(cor_memory_resource *mr, size_t size, size_t align)
{
    return cor__pool_alloc(size, align);
}

static void pool_deallocate(cor_memory_resource *mr, void *p, size_t size, size_t align)
{
    cor__pool_free(p, size, align);
}

static const cor_memory_resource_ops pool_ops = {pool_allocate, pool_deallocate};
cor_memory_resource cor__pool_resource = {&pool_ops};

/* ---- process-wide state: the exit hook, recycled arenas, retired statistics ---------- */

static pthread_once_t key_once = PTHREAD_ONCE_INIT;
static pthread_key_t key;
static bool key_ok;
static pthread_mutex_t global_lock = PTHREAD_MUTEX_INITIALIZER;
static cor_alloc_stats retired;
#if COR_ALLOC_JEMALLOC
static unsigned *free_arenas;
static size_t n_free_arenas, cap_free_arenas;
#endif

static void pool_exit(void *arg);

static void make_key(void)
{
    key_ok = pthread_key_create(&key, pool_exit) == 0;
}

/* The size a block of (size, align) has in the backing heap: its class's, if it has one. */
static size_t block_size(size_t size, size_t align)
{
    if (size <= COR__POOL_ABS_MAX && align <= COR__POOL_ALIGN)
        return cor__pool_class_size(cor__pool_class(size));
    return size;
}

/* ---- the backing heap ------------------------------------------------------------------ */

static void *heap_alloc(struct pool_state *p, size_t size, size_t align)
{
    cor__alloc_stats.arena_calls++;
#if COR_ALLOC_JEMALLOC
    int flags = p->alloc_flags;
    if (align > COR__POOL_ALIGN)
        flags |= MALLOCX_ALIGN(align);
    return mallocx(size, flags);
#else
    if (align <= COR__POOL_ALIGN)
        return malloc(size);
    return aligned_alloc(align, (size + align - 1) & ~(align - 1));
#endif
}

static void heap_free(struct pool_state *p, void *blk, size_t size, size_t align)
{
    cor__alloc_stats.arena_calls++;
#if COR_ALLOC_JEMALLOC
    int flags = p->free_flags;
    if (align > COR__POOL_ALIGN)
        flags |= MALLOCX_ALIGN(align);
    sdallocx(blk, size, flags);
#else
    free(blk);
#endif
}

#if COR_ALLOC_JEMALLOC
/* Gives the thread an arena (a recycled one if any) and a tcache; false if jemalloc refused. */
static bool arena_acquire(struct pool_state *p)
{
    unsigned arena = 0;
    bool have = false;
    pthread_mutex_lock(&global_lock);
    if (n_free_arenas) {
        arena = free_arenas[--n_free_arenas];
        have = true;
    }
    pthread_mutex_unlock(&global_lock);
    size_t len = sizeof arena;
    if (!have && mallctl("arenas.create", &arena, &len, NULL, 0) != 0)
        return false;
    unsigned tc;
    len = sizeof tc;
    if (mallctl("tcache.create", &tc, &len, NULL, 0) != 0) {
        pthread_mutex_lock(&global_lock);
        if (n_free_arenas < cap_free_arenas)
            free_arenas[n_free_arenas++] = arena;
        pthread_mutex_unlock(&global_lock);
        return false;
    }
    p->arena = arena;
    p->tcache = tc;
    p->has_arena = true;
    return true;
}

/* Destroys the thread's tcache (flushing it) and puts its arena on the free list. */
static void arena_release(struct pool_state *p)
{
    if (!p->has_arena)
        return;
    unsigned tc = p->tcache;
    mallctl("tcache.destroy", NULL, NULL, &tc, sizeof tc);
    p->has_arena = false;
    pthread_mutex_lock(&global_lock);
    if (n_free_arenas == cap_free_arenas) {
        size_t cap = cap_free_arenas ? cap_free_arenas * 2 : 16;
        unsigned *a = realloc(free_arenas, cap * sizeof *a);
        if (a) {
            free_arenas = a;
            cap_free_arenas = cap;
        }
    }
    /* Without room the arena is simply not reused; jemalloc keeps it. */
    if (n_free_arenas < cap_free_arenas)
        free_arenas[n_free_arenas++] = p->arena;
    pthread_mutex_unlock(&global_lock);
}
#endif

/* Switches the refill path; the cache must be empty. A failed arena setup falls back to shared. */
static void set_mode(struct pool_state *p, int mode)
{
#if COR_ALLOC_JEMALLOC
    if (mode == COR_ALLOC_ARENA_THREAD && (p->has_arena || arena_acquire(p))) {
        p->mode = COR_ALLOC_ARENA_THREAD;
        p->alloc_flags = MALLOCX_ARENA(p->arena) | MALLOCX_TCACHE(p->tcache);
        p->free_flags = MALLOCX_TCACHE(p->tcache);
        return;
    }
    arena_release(p);
    p->mode = COR_ALLOC_ARENA_SHARED;
    p->alloc_flags = 0;
    p->free_flags = 0;
#else
    p->mode = mode;
#endif
}

/* Every class caches up to d blocks again, and may grow to max (at least d). */
static void set_depths(uint32_t d, uint32_t max)
{
    cor__pool.depth = d;
    for (unsigned c = 0; c < COR__POOL_CLASSES; c++)
        cor__pool.bins[c].depth = d;
    ps.cache_max = max > d ? max : d;
    ps.overflowed = 0;
}

static void pool_init(void)
{
    pthread_once(&key_once, make_key);
    /* Without the exit hook the thread's cached blocks would outlive it: do not cache. */
    if (!key_ok || pthread_setspecific(key, &ps) != 0) {
        ps.state = POOL_DEAD;
        return;
    }
    ps.state = POOL_LIVE;
    set_depths(COR_ALLOC_CACHE_DEPTH, COR_ALLOC_CACHE_MAX);
    cor__pool.max_pooled = COR_ALLOC_MAX_POOLED;
    set_mode(&ps, COR_ALLOC_ARENA_MODE);
}

/* Returns every block the calling thread caches to the backing heap; returns how many. */
static int flush(void)
{
    int n = 0;
    for (unsigned c = 0; c < COR__POOL_CLASSES; c++) {
        struct cor__pool_bin *b = &cor__pool.bins[c];
        size_t size = cor__pool_class_size(c);
        while (b->head) {
            void *blk = b->head;
            COR__UNPOISON(blk, size);
            b->head = *(void **)blk;
            heap_free(&ps, blk, size, COR__POOL_ALIGN);
            n++;
        }
        b->count = 0;
    }
    return n;
}

/* The public statistics of counters c (the cache's gauges left at 0). */
static void stats_of(const struct cor__alloc_counts *c, cor_alloc_stats *out)
{
    memset(out, 0, sizeof *out);
    out->allocations = c->allocations + c->inline_hits;
    out->frees = c->frees;
    out->bytes = c->bytes;
    out->failures = c->failures;
    out->heap_calls = c->heap_calls;
    out->pool_hits = c->pool_hits + c->inline_hits;
    out->pool_misses = c->pool_misses;
    out->arena_calls = c->arena_calls;
    out->cache_grows = c->cache_grows;
    out->live_bytes = (int64_t)(c->bytes - c->freed_bytes);
    out->peak_bytes = c->peak_bytes;
}

/* Adds the thread's counters to the retired sum and zeroes them (the global lock held). */
static void retire_counts(void)
{
    cor_alloc_stats st;
    stats_of(&cor__alloc_stats, &st);
    const cor_alloc_stats *s = &st;
    retired.allocations += s->allocations;
    retired.frees += s->frees;
    retired.bytes += s->bytes;
    retired.failures += s->failures;
    retired.heap_calls += s->heap_calls;
    retired.pool_hits += s->pool_hits;
    retired.pool_misses += s->pool_misses;
    retired.arena_calls += s->arena_calls;
    retired.cache_grows += s->cache_grows;
    retired.live_bytes += s->live_bytes;
    if (s->peak_bytes > retired.peak_bytes)
        retired.peak_bytes = s->peak_bytes;
    struct cor__alloc_counts zero = {0};
    cor__alloc_stats = zero;
}

void cor__pool_count_unpooled(void)
{
    if (ps.state != POOL_DEAD)
        return;
    pthread_mutex_lock(&global_lock);
    retire_counts();
    pthread_mutex_unlock(&global_lock);
}

/* The thread exits: flush, release the arena, keep its statistics in the retired sum. */
static void pool_exit(void *arg)
{
    flush();
#if COR_ALLOC_JEMALLOC
    arena_release(&ps);
    /* Whatever the thread's other exit hooks free goes straight to jemalloc. */
    ps.alloc_flags = ps.free_flags = MALLOCX_TCACHE_NONE;
#endif
    cor__pool.max_pooled = 0;
    ps.state = POOL_DEAD;
    pthread_mutex_lock(&global_lock);
    retire_counts();
    pthread_mutex_unlock(&global_lock);
}

/* ---- the pool's entry points ------------------------------------------------------------- */

/* Class c is empty: if a free found it full since its last miss, its depth doubles. */
static void grow(unsigned c)
{
    uint64_t bit = UINT64_C(1) << c;
    if (!(ps.overflowed & bit))
        return;
    ps.overflowed &= ~bit;
    struct cor__pool_bin *b = &cor__pool.bins[c];
    if (b->depth >= ps.cache_max)
        return;
    b->depth = b->depth < ps.cache_max / 2 ? b->depth * 2 : ps.cache_max;
    cor__alloc_stats.cache_grows++;
}

void *cor__pool_alloc(size_t size, size_t align)
{
    struct cor__pool *p = &cor__pool;
    if (cor__pool_fits(p, size, align)) {
        unsigned c = cor__pool_class(size);
        void *blk = p->bins[c].head;
        if (blk) {
            p->bins[c].head = *(void **)blk;
            p->bins[c].count--;
            COR__UNPOISON(blk, cor__pool_class_size(c));
            cor__alloc_stats.pool_hits++;
            return blk;
        }
        grow(c);
    }
    if (ps.state == POOL_UNINIT) {
        pool_init();
        if (ps.state == POOL_LIVE)
            return cor__pool_alloc(size, align);
    }
    cor__alloc_stats.pool_misses++;
    cor__alloc_stats.heap_calls++;
    return heap_alloc(&ps, block_size(size, align), align);
}

void cor__pool_free(void *blk, size_t size, size_t align)
{
    struct cor__pool *p = &cor__pool;
    if (cor__pool_fits(p, size, align)) {
        unsigned c = cor__pool_class(size);
        struct cor__pool_bin *b = &p->bins[c];
        if (b->count < b->depth) {
            *(void **)blk = b->head;
            b->head = blk;
            b->count++;
            COR__POISON_CACHED(blk, cor__pool_class_size(c));
            return;
        }
        ps.overflowed |= UINT64_C(1) << c;
    }
    if (ps.state == POOL_UNINIT) {
        pool_init();
        if (ps.state == POOL_LIVE) {
            cor__pool_free(blk, size, align);
            return;
        }
    }
    heap_free(&ps, blk, block_size(size, align), align);
}

/* ---- public API ------------------------------------------------------------------------- */

int cor_alloc_configure(const cor_alloc_options *o)
{
    if (!o)
        return -EINVAL;
    if (o->max_pooled && (o->max_pooled < 64 || o->max_pooled > COR__POOL_ABS_MAX))
        return -EINVAL;
    uint32_t depth = o->cache_depth ? o->cache_depth : COR_ALLOC_CACHE_DEPTH;
    if (o->cache_depth > 4096 || o->cache_max > 4096 || (o->cache_max && o->cache_max < depth))
        return -EINVAL;
    if (o->arena != COR_ALLOC_ARENA_DEFAULT && o->arena != COR_ALLOC_ARENA_THREAD &&
        o->arena != COR_ALLOC_ARENA_SHARED)
        return -EINVAL;
    for (size_t i = 0; i < sizeof o->reserved / sizeof o->reserved[0]; i++)
        if (o->reserved[i])
            return -EINVAL;
    if (!COR_ALLOC_JEMALLOC && o->arena != COR_ALLOC_ARENA_DEFAULT)
        return -ENOTSUP;
    if (ps.state == POOL_UNINIT)
        pool_init();
    if (ps.state != POOL_LIVE)
        return -EPERM;
    flush();
    cor__pool.max_pooled = o->max_pooled ? o->max_pooled : COR_ALLOC_MAX_POOLED;
    set_depths(depth, o->cache_max ? o->cache_max : COR_ALLOC_CACHE_MAX);
    set_mode(&ps, o->arena ? o->arena : COR_ALLOC_ARENA_MODE);
    return 0;
}

int cor_alloc_trim(void)
{
    return flush();
}

int cor_alloc_stats_get(cor_alloc_stats *out)
{
    if (!out)
        return -EINVAL;
    stats_of(&cor__alloc_stats, out);
    for (unsigned c = 0; c < COR__POOL_CLASSES; c++) {
        out->cached += cor__pool.bins[c].count;
        out->cached_bytes += cor__pool.bins[c].count * cor__pool_class_size(c);
    }
    return 0;
}

int cor_alloc_stats_retired(cor_alloc_stats *out)
{
    if (!out)
        return -EINVAL;
    pthread_mutex_lock(&global_lock);
    *out = retired;
    pthread_mutex_unlock(&global_lock);
    return 0;
}

void cor_alloc_stats_reset(void)
{
    struct cor__alloc_counts zero = {0};
    cor__alloc_stats = zero;
}
