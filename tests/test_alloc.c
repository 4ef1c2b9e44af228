/*
 * Frame allocation: the per-thread pool (steady state, size classes, cross-thread
 * frees, thread exit), custom and budget-limited resources, options, statistics.
 */
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>

#include "alloc/alloc_internal.h"
#include "util.h"

#if COR_ALLOC_JEMALLOC
#include <jemalloc/jemalloc.h>
#endif

static cor_alloc_stats stats(void)
{
    cor_alloc_stats s;
    cr_assert_eq(cor_alloc_stats_get(&s), 0);
    return s;
}

struct long_outcome {
    long result;
    int err, results, errors;
};

static void rec_long_result(void *user, void *result)
{
    struct long_outcome *o = user;
    __atomic_store_n(&o->result, *(long *)result, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o->results, 1, __ATOMIC_RELEASE);
}

static void rec_long_error(void *user, int err)
{
    struct long_outcome *o = user;
    __atomic_store_n(&o->err, err, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o->errors, 1, __ATOMIC_RELEASE);
}

/* ---- coroutines used throughout ---- */

struct child {
    COR_PROMISE(long);
    long x;
};
COR_DEFINE_STATIC(child, (long x), { self->x = x; })
{
    COR_BEGIN();
    COR_RETURN(self->x + 1);
}

struct await_loop {
    COR_PROMISE(long);
    long i, n, acc;
};
COR_DEFINE_STATIC(await_loop, (long n), { self->n = n; })
{
    COR_BEGIN();
    self->acc = 0;
    for (self->i = 0; self->i < self->n; self->i++)
        COR_AWAIT(self->acc, child(self->acc));
    COR_RETURN(self->acc);
}

/* A chain three frames deep, n leaves at the bottom. */
struct mid {
    COR_PROMISE(long);
    long n, r;
};
COR_DEFINE_STATIC(mid, (long n), { self->n = n; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, await_loop(self->n));
    COR_RETURN(self->r);
}

struct top {
    COR_PROMISE(long);
    long n, r;
};
COR_DEFINE_STATIC(top, (long n), { self->n = n; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, mid(self->n));
    COR_RETURN(self->r * 10);
}

/* ---- steady state ---- */

Test(alloc, default_resource_is_the_pool)
{
    cr_assert_not_null(cor_default_resource());
    cr_assert_neq(cor_default_resource(), cor_malloc_resource());
    cr_assert_eq(cor_execution_context_resource(NULL), cor_default_resource());
}

Test(alloc, steady_state_child_awaits_make_no_arena_calls)
{
    struct long_outcome oc = {0};
    cor_launch_options o = {.on_result = rec_long_result, .user = &oc};
    /* Warm-up: the loop frame, a child frame and the launch record get cached. */
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, await_loop(1000)), 0);
    cr_assert_eq(oc.result, 1000);

    cor_alloc_stats a = stats();
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, await_loop(1000000)), 0);
    cr_assert_eq(oc.result, 1000000);
    cor_alloc_stats b = stats();
    /* A million children, the loop frame and the launch record. */
    cr_assert_eq(b.allocations - a.allocations, 1000002);
    cr_assert_eq(b.frees - a.frees, 1000002);
    cr_assert_eq(b.pool_hits - a.pool_hits, 1000002);
    cr_assert_eq(b.pool_misses, a.pool_misses, "every allocation came from the cache");
    cr_assert_eq(b.arena_calls, a.arena_calls, "no refill, no overflow free");
    cr_assert_eq(b.heap_calls, a.heap_calls);
    cr_assert_eq(b.live_bytes, a.live_bytes);
}

Test(alloc, steady_state_on_a_manual_executor)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    struct long_outcome oc = {0};
    cor_launch_options o = {.on_result = rec_long_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, top(10)), 0);
    cr_assert_eq(cor_manual_run(m), 1);
    cor_alloc_stats a = stats();
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, top(100)), 0);
        cr_assert_eq(cor_manual_run(m), 1);
    }
    cr_assert_eq(oc.result, 1000);
    cor_alloc_stats b = stats();
    cr_assert_eq(b.arena_calls, a.arena_calls);
    cr_assert_eq(b.pool_hits - a.pool_hits, 100 * (100 + 4));
    cor_manual_destroy(m);
}

/* ---- size classes ---- */

/*
 * Allocates, fills and frees size twice; returns whether the second
 * allocation was served from the thread's cache.
 */
static bool recycles(size_t size, size_t align)
{
    cor_memory_resource *mr = cor_default_resource();
    unsigned char *p = cor_mr_allocate(mr, size, align);
    cr_assert_not_null(p);
    cr_assert_eq((uintptr_t)p % align, 0);
    memset(p, 0xa5, size);
    cor_mr_deallocate(mr, p, size, align);
    uint64_t hits = stats().pool_hits;
    unsigned char *q = cor_mr_allocate(mr, size, align);
    bool hit = stats().pool_hits == hits + 1;
    cr_assert_not_null(q);
    cr_assert_eq((uintptr_t)q % align, 0);
    if (hit)
        cr_assert_eq(p, q, "a cached block is the one freed last");
    memset(q, 0x5a, size);
    cor_mr_deallocate(mr, q, size, align);
    return hit;
}

Test(alloc, size_class_edges)
{
    static const size_t edges[] = {64, 128, 576, 1024, 1280, 1536, 2048, 2560, 4096};
    cr_assert_eq(COR_ALLOC_MAX_POOLED, 4096, "this test assumes the default -Dalloc_max_pooled");
    for (size_t i = 0; i < sizeof edges / sizeof edges[0]; i++) {
        size_t s = edges[i];
        unsigned c = cor__pool_class(s);
        cr_assert_eq(cor__pool_class_size(c), s, "%zu is a class size", s);
        cr_assert_eq(cor__pool_class(s + 1), c + 1, "%zu starts the next class", s + 1);
        cr_assert_geq(cor__pool_class_size(c + 1), s + 1);

        cor_alloc_trim();
        cor_alloc_stats a = stats();
        cr_assert(recycles(s, 16), "an exact class size is cached: %zu", s);
        cor_alloc_stats b = stats();
        cr_assert_eq(b.pool_misses - a.pool_misses, 1);
        cr_assert_eq(b.pool_hits - a.pool_hits, 1);

        /* Any size of the same class reuses the block; one past the class does not. */
        cor_memory_resource *mr = cor_default_resource();
        void *p = cor_mr_allocate(mr, s, 16);
        cor_mr_deallocate(mr, p, s, 16);
        void *q = cor_mr_allocate(mr, s - 1, 16);
        cr_assert_eq(p, q, "%zu and %zu share a class", s, s - 1);
        cor_mr_deallocate(mr, q, s - 1, 16);
        a = stats();
        void *r = cor_mr_allocate(mr, s + 1, 16);
        cr_assert_not_null(r);
        memset(r, 1, s + 1);
        b = stats();
        if (s < COR_ALLOC_MAX_POOLED) {
            cr_assert_neq(r, p);
            cr_assert_eq(b.pool_misses - a.pool_misses, 1, "class of %zu was empty", s + 1);
        }
        cor_mr_deallocate(mr, r, s + 1, 16);
    }

    /* Larger than the largest pooled size: straight to the backing heap, both ways. */
    cor_alloc_trim();
    size_t sizes[] = {COR_ALLOC_MAX_POOLED + 1, 3 * COR_ALLOC_MAX_POOLED, COR__POOL_ABS_MAX + 1};
    for (size_t i = 0; i < 3; i++) {
        cor_alloc_stats a = stats();
        cr_assert_not(recycles(sizes[i], 16));
        cor_alloc_stats b = stats();
        cr_assert_eq(b.pool_misses - a.pool_misses, 2, "%zu is not pooled", sizes[i]);
        cr_assert_eq(b.pool_hits, a.pool_hits);
        cr_assert_eq(b.arena_calls - a.arena_calls, 4);
        cr_assert_eq(b.cached, 0);
    }
    /* Alignment beyond max_align_t is honoured and bypasses the cache. */
    cor_alloc_stats a = stats();
    cr_assert_not(recycles(256, 64));
    cr_assert_not(recycles(100, 4096));
    cor_alloc_stats b = stats();
    cr_assert_eq(b.pool_misses - a.pool_misses, 4);
    cr_assert_eq(b.cached, 0);
}

Test(alloc, cache_is_bounded_and_overflow_goes_to_the_heap)
{
    cor_alloc_options o = {.cache_depth = 3};
    cr_assert_eq(cor_alloc_configure(&o), 0);
    cor_memory_resource *mr = cor_default_resource();
    void *p[5];
    for (int i = 0; i < 5; i++)
        p[i] = cor_mr_allocate(mr, 500, 16);
    cor_alloc_stats a = stats();
    for (int i = 0; i < 5; i++)
        cor_mr_deallocate(mr, p[i], 500, 16);
    cor_alloc_stats b = stats();
    cr_assert_eq(b.cached, 3);
    cr_assert_eq(b.cached_bytes, 3 * 512);
    cr_assert_eq(b.arena_calls - a.arena_calls, 2, "two frees found the class full");
    cr_assert_eq(cor_alloc_trim(), 3);
    cr_assert_eq(stats().cached, 0);
    cr_assert_eq(cor_alloc_trim(), 0);
}

/* The build's settings and an empty cache (the TSan runner keeps one process for all cases). */
static void restore_defaults(void)
{
    cr_assert_eq(cor_alloc_configure(&(cor_alloc_options){0}), 0);
}

/*
 * One round of a working set: n blocks of 300 bytes live at once, then all
 * freed (a batch of n connections each awaiting a child frame). Returns the
 * calls the pool made to its heap in the round.
 */
static uint64_t working_set_round(int n)
{
    cor_memory_resource *mr = cor_default_resource();
    void *p[128];
    cr_assert_leq(n, 128);
    uint64_t before = stats().arena_calls;
    for (int i = 0; i < n; i++)
        cr_assert_not_null(p[i] = cor_mr_allocate(mr, 300, 16));
    for (int i = 0; i < n; i++)
        cor_mr_deallocate(mr, p[i], 300, 16);
    return stats().arena_calls - before;
}

Test(alloc, a_class_deeper_than_its_cache_grows_to_cache_max)
{
    cor_alloc_options o = {.cache_depth = 4, .cache_max = 64};
    cr_assert_eq(cor_alloc_configure(&o), 0);
    uint64_t g0 = stats().cache_grows;
    /* 50 misses and 46 overflow frees; then each round's first miss doubles the depth. */
    cr_assert_eq(working_set_round(50), 50 + 46);
    cr_assert_eq(working_set_round(50), (50 - 4) + (50 - 8), "depth 4 -> 8");
    cr_assert_eq(working_set_round(50), (50 - 8) + (50 - 16), "depth 8 -> 16");
    cr_assert_eq(working_set_round(50), (50 - 16) + (50 - 32), "depth 16 -> 32");
    cr_assert_eq(working_set_round(50), 50 - 32, "depth 32 -> 64: every free is cached");
    cr_assert_eq(stats().cache_grows - g0, 4);
    for (int round = 0; round < 100; round++)
        cr_assert_eq(working_set_round(50), 0, "steady state, round %d", round);
    cr_assert_eq(stats().cached, 50);
    cr_assert_eq(stats().cache_grows - g0, 4, "a class that fits stops growing");

    /* Past cache_max the class stays at 64 and the rest cycles through the heap. */
    cr_assert_eq(working_set_round(100), (100 - 50) + (100 - 64));
    for (int round = 0; round < 5; round++)
        cr_assert_eq(working_set_round(100), 2 * (100 - 64), "round %d", round);
    cr_assert_eq(stats().cache_grows - g0, 4);
    cr_assert_eq(stats().cached, 64);
    restore_defaults();
}

Test(alloc, trim_keeps_the_depths_and_configure_resets_them)
{
    cor_alloc_options o = {.cache_depth = 4, .cache_max = 64};
    cr_assert_eq(cor_alloc_configure(&o), 0);
    for (int round = 0; round < 6; round++)
        working_set_round(40);
    cr_assert_eq(working_set_round(40), 0);

    cr_assert_eq(cor_alloc_trim(), 40);
    cr_assert_eq(working_set_round(40), 40, "40 refills, and the class still holds all 40");
    cr_assert_eq(working_set_round(40), 0);

    cr_assert_eq(cor_alloc_configure(&o), 0);
    cr_assert_eq(stats().cached, 0);
    cr_assert_eq(working_set_round(40), 40 + 36, "back at depth 4");
    restore_defaults();
}

Test(alloc, depths_stay_fixed_when_cache_max_is_cache_depth)
{
    cor_alloc_options o = {.cache_depth = 4, .cache_max = 4};
    cr_assert_eq(cor_alloc_configure(&o), 0);
    uint64_t g0 = stats().cache_grows;
    working_set_round(20);
    for (int round = 0; round < 10; round++)
        cr_assert_eq(working_set_round(20), 2 * (20 - 4), "round %d", round);
    cr_assert_eq(stats().cache_grows, g0);
    /* The build's default: fixed in a testing build, growing in any other. */
    cr_assert_eq(cor_alloc_configure(&(cor_alloc_options){.cache_depth = 4}), 0);
    working_set_round(20);
    working_set_round(20);
    cr_assert_eq(stats().cache_grows - g0, COR_ALLOC_CACHE_MAX > 4 ? 1 : 0);
    restore_defaults();
}

/* ---- options ---- */

Test(alloc, options_out_of_range_are_rejected)
{
    cr_assert_eq(cor_alloc_configure(NULL), -EINVAL);
    cor_alloc_options bad[] = {
        {.max_pooled = 63},
        {.max_pooled = COR__POOL_ABS_MAX + 1},
        {.cache_depth = 4097},
        {.arena = 3},
        {.arena = -1},
        {.cache_max = 4097},
        {.cache_depth = 8, .cache_max = 4},
        {.reserved = {[3] = 1}},
    };
    /* Fill the cache so a rejected call can be seen to change nothing. */
    cor_memory_resource *mr = cor_default_resource();
    void *p = cor_mr_allocate(mr, 300, 16);
    cor_mr_deallocate(mr, p, 300, 16);
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(cor_alloc_configure(&bad[i]), -EINVAL, "case %zu", i);
    cr_assert_eq(stats().cached, 1);

    cor_alloc_options edge = {.max_pooled = 64, .cache_depth = 4096};
    cr_assert_eq(cor_alloc_configure(&edge), 0);
    cr_assert_eq(stats().cached, 0, "configure flushes the cache");
    edge = (cor_alloc_options){.max_pooled = COR__POOL_ABS_MAX, .cache_depth = 1};
    cr_assert_eq(cor_alloc_configure(&edge), 0);
    edge = (cor_alloc_options){.cache_depth = 4096, .cache_max = 4096};
    cr_assert_eq(cor_alloc_configure(&edge), 0);

    cor_alloc_options thread = {.arena = COR_ALLOC_ARENA_THREAD};
    cor_alloc_options shared = {.arena = COR_ALLOC_ARENA_SHARED};
#if COR_ALLOC_JEMALLOC
    cr_assert_eq(cor_alloc_configure(&shared), 0);
    cr_assert(recycles(700, 16));
    cr_assert_eq(cor_alloc_configure(&thread), 0);
    cr_assert(recycles(700, 16));
#else
    cr_assert_eq(cor_alloc_configure(&thread), -ENOTSUP);
    cr_assert_eq(cor_alloc_configure(&shared), -ENOTSUP);
#endif
    cor_alloc_options defaults = {0};
    cr_assert_eq(cor_alloc_configure(&defaults), 0);
}

Test(alloc, options_change_what_is_pooled)
{
    cor_memory_resource *mr = cor_default_resource();
    cor_alloc_options o = {.max_pooled = 1024};
    cr_assert_eq(cor_alloc_configure(&o), 0);
    cr_assert_not(recycles(2000, 16), "above max_pooled nothing is cached");
    cr_assert(recycles(1000, 16));

    /* Zero members restore the build defaults. */
    o = (cor_alloc_options){0};
    cr_assert_eq(cor_alloc_configure(&o), 0);
    cr_assert(recycles(2000, 16));
    void *p[COR_ALLOC_CACHE_DEPTH + 1];
    for (int i = 0; i <= COR_ALLOC_CACHE_DEPTH; i++)
        p[i] = cor_mr_allocate(mr, 200, 16);
    for (int i = 0; i <= COR_ALLOC_CACHE_DEPTH; i++)
        cor_mr_deallocate(mr, p[i], 200, 16);
    cr_assert_eq(stats().cached, COR_ALLOC_CACHE_DEPTH + 1, "the 2000-byte block and 200s");
}

/* ---- statistics ---- */

Test(alloc, stats_count_live_and_peak_bytes)
{
    cr_assert_eq(cor_alloc_stats_get(NULL), -EINVAL);
    cr_assert_eq(cor_alloc_stats_retired(NULL), -EINVAL);
    cor_alloc_stats_reset();
    cor_alloc_stats s = stats();
    cr_assert_eq(s.allocations, 0);
    cr_assert_eq(s.peak_bytes, 0);
    cor_memory_resource *mr = cor_default_resource();
    void *p[3];
    for (int i = 0; i < 3; i++)
        p[i] = cor_mr_allocate(mr, 1000, 16);
    for (int i = 0; i < 3; i++)
        cor_mr_deallocate(mr, p[i], 1000, 16);
    s = stats();
    cr_assert_eq(s.allocations, 3);
    cr_assert_eq(s.frees, 3);
    cr_assert_eq(s.bytes, 3000);
    cr_assert_eq(s.live_bytes, 0);
    cr_assert_eq(s.peak_bytes, 3000);
    cr_assert_eq(s.pool_hits + s.pool_misses, 3);
    cr_assert_null(cor_mr_allocate(mr, 0, 16));
    cr_assert_null(cor_mr_allocate(mr, 16, 3));
    cr_assert_eq(stats().failures, 2);
}

/* ---- custom resources ---- */

Test(alloc, custom_resource_gets_every_frame_of_the_chain)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_alloc_stats a = stats();
    struct long_outcome oc = {0};
    cor_launch_options o = {.alloc = &cr.base, .on_result = rec_long_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, top(20)), 0);
    cr_assert_eq(oc.result, 200);
    /* Launch record, top, mid, await_loop and twenty children. */
    cr_assert_eq(cr.allocs, 24);
    cr_assert_eq(cr.frees, 24);
    cr_assert_eq(cr.live_bytes, 0);
    cor_alloc_stats b = stats();
    cr_assert_eq(b.pool_hits, a.pool_hits, "the pool served nothing");
    cr_assert_eq(b.pool_misses, a.pool_misses);
    cr_assert_eq(b.allocations - a.allocations, 24);
}

/* The budget resource of the README: at most `budget` bytes live at once. */
typedef struct budget_resource {
    cor_memory_resource base;
    cor_memory_resource *upstream;
    size_t budget, used;
} budget_resource;

static void *budget_allocate(cor_memory_resource *mr, size_t size, size_t align)
{
    budget_resource *b = (budget_resource *)mr;
    if (__atomic_add_fetch(&b->used, size, __ATOMIC_RELAXED) > b->budget) {
        __atomic_sub_fetch(&b->used, size, __ATOMIC_RELAXED);
        return NULL;
    }
    /* Through the upstream's ops: cor_mr_allocate already counted this allocation. */
    void *p = b->upstream->ops->allocate(b->upstream, size, align);
    if (!p)
        __atomic_sub_fetch(&b->used, size, __ATOMIC_RELAXED);
    return p;
}

static void budget_deallocate(cor_memory_resource *mr, void *p, size_t size, size_t align)
{
    budget_resource *b = (budget_resource *)mr;
    b->upstream->ops->deallocate(b->upstream, p, size, align);
    __atomic_sub_fetch(&b->used, size, __ATOMIC_RELAXED);
}

/* The launch record's size (src/launch.c): a frame header and three pointers. */
#define ROOT_SIZE (sizeof(cor_frame) + 3 * sizeof(void *))

static const cor_memory_resource_ops budget_ops = {budget_allocate, budget_deallocate};

static void budget_init(budget_resource *b, size_t budget)
{
    b->base.ops = &budget_ops;
    b->upstream = cor_default_resource();
    b->budget = budget;
    b->used = 0;
}

Test(alloc, budget_resource_fails_mid_chain_through_the_error_channel)
{
    /* Enough for top, the launch record and mid, not for await_loop. */
    budget_resource br;
    budget_init(&br, sizeof(struct top) + ROOT_SIZE + sizeof(struct mid) +
                         sizeof(struct await_loop) - 1);
    cor_alloc_stats a = stats();
    struct long_outcome oc = {0};
    cor_launch_options o = {
        .alloc = &br.base, .on_result = rec_long_result, .on_error = rec_long_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, top(5)), 0);
    cr_assert_eq(oc.errors, 1);
    cr_assert_eq(oc.err, -ENOMEM);
    cr_assert_eq(oc.results, 0);
    cr_assert_eq(br.used, 0, "every frame went back");
    cor_alloc_stats b = stats();
    cr_assert_eq(b.failures - a.failures, 1);
    cr_assert_eq(b.allocations - a.allocations, 3);
    cr_assert_eq(b.frees - a.frees, 3);
    cr_assert_eq(b.live_bytes, a.live_bytes);

    /* With room the same chain completes, and its frames come from the pool beneath. */
    budget_init(&br, 1 << 20);
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, top(5)), 0);
    cr_assert_eq(oc.result, 50);
    cr_assert_eq(br.used, 0);
}

struct catcher {
    COR_PROMISE(long);
    int err;
    long r;
};
COR_DEFINE_STATIC(catcher, (void), {})
{
    COR_BEGIN();
    self->r = 0;
    COR_TRY_AWAIT(self->err, self->r, mid(3));
    COR_RETURN(self->err == -ENOMEM ? -1 : self->r);
}

Test(alloc, budget_exhaustion_can_be_caught)
{
    budget_resource br;
    budget_init(&br, sizeof(struct catcher) + ROOT_SIZE + sizeof(struct mid) +
                         sizeof(struct await_loop) - 1);
    struct long_outcome oc = {0};
    cor_launch_options o = {
        .alloc = &br.base, .on_result = rec_long_result, .on_error = rec_long_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, catcher()), 0);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.result, -1, "the caller saw -ENOMEM and went on");
    cr_assert_eq(br.used, 0);
}

/* ---- threads ---- */

enum { XT_THREADS = 4, XT_ROUNDS = 4000, XT_RING = 64 };

/* A bounded hand-off ring: blocks allocated on one thread are freed on another. */
struct xt_shared {
    pthread_mutex_t lock;
    void *blk[XT_RING];
    size_t size[XT_RING];
    int head, count;
    long bad;
};

struct xt_thread {
    struct xt_shared *sh;
    pthread_t tid;
    int id;
    cor_alloc_stats st;
};

static void xt_free_one(struct xt_shared *sh, void *blk, size_t size)
{
    unsigned char *c = blk;
    if (c[0] != (unsigned char)size || c[size - 1] != (unsigned char)(size >> 3))
        __atomic_fetch_add(&sh->bad, 1, __ATOMIC_RELAXED);
    cor_mr_deallocate(cor_default_resource(), blk, size, 16);
}

static void *xt_main(void *arg)
{
    struct xt_thread *t = arg;
    struct xt_shared *sh = t->sh;
    cor_memory_resource *mr = cor_default_resource();
    for (int i = 0; i < XT_ROUNDS; i++) {
        size_t size = 64 + (size_t)((i * 37 + t->id * 101) % 3000);
        unsigned char *c = cor_mr_allocate(mr, size, 16);
        cr_assert_not_null(c);
        c[0] = (unsigned char)size;
        c[size - 1] = (unsigned char)(size >> 3);
        void *give = NULL;
        size_t give_size = 0;
        pthread_mutex_lock(&sh->lock);
        if (sh->count == XT_RING) {
            /* Take the oldest (most likely another thread's) and free it here. */
            give = sh->blk[sh->head];
            give_size = sh->size[sh->head];
            sh->head = (sh->head + 1) % XT_RING;
            sh->count--;
        }
        int slot = (sh->head + sh->count) % XT_RING;
        sh->blk[slot] = c;
        sh->size[slot] = size;
        sh->count++;
        pthread_mutex_unlock(&sh->lock);
        if (give)
            xt_free_one(sh, give, give_size);
    }
    cr_assert_eq(cor_alloc_stats_get(&t->st), 0);
    return NULL;
}

Test(alloc, blocks_freed_on_other_threads)
{
    struct xt_shared sh = {.lock = PTHREAD_MUTEX_INITIALIZER};
    struct xt_thread t[XT_THREADS];
    for (int i = 0; i < XT_THREADS; i++) {
        t[i] = (struct xt_thread){.sh = &sh, .id = i};
        cr_assert_eq(pthread_create(&t[i].tid, NULL, xt_main, &t[i]), 0);
    }
    for (int i = 0; i < XT_THREADS; i++)
        cr_assert_eq(pthread_join(t[i].tid, NULL), 0);
    cor_alloc_stats a = stats();
    while (sh.count) {
        xt_free_one(&sh, sh.blk[sh.head], sh.size[sh.head]);
        sh.head = (sh.head + 1) % XT_RING;
        sh.count--;
    }
    cor_alloc_stats b = stats();
    cr_assert_eq(sh.bad, 0, "no block was handed out twice");
    uint64_t allocs = 0, frees = b.frees - a.frees;
    for (int i = 0; i < XT_THREADS; i++) {
        allocs += t[i].st.allocations;
        frees += t[i].st.frees;
    }
    cr_assert_eq(allocs, (uint64_t)XT_THREADS * XT_ROUNDS);
    cr_assert_eq(frees, allocs);
}

Test(alloc, frames_launched_here_complete_and_free_on_another_thread)
{
    manual_thread mt[2];
    manual_thread_start(&mt[0]);
    manual_thread_start(&mt[1]);
    struct long_outcome oc = {0};
    cor_launch_options o = {.on_result = rec_long_result, .on_error = rec_long_error, .user = &oc};
    enum { N = 2000 };
    for (int i = 0; i < N; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(mt[i & 1].m), &o, top(3)), 0);
    manual_thread_stop(&mt[0]);
    manual_thread_stop(&mt[1]);
    cr_assert_eq(__atomic_load_n(&oc.results, __ATOMIC_ACQUIRE), N);
    cr_assert_eq(oc.errors, 0);
    cor_alloc_stats s = stats();
    cr_assert_geq(s.allocations, 2 * N, "each launch allocated its record and top here");
}

/* ---- thread exit ---- */

struct exit_arg {
    cor_alloc_stats at_end;
    void *leftover; /* allocated here, freed by the main thread after the exit */
};

static void *cache_and_exit(void *arg)
{
    struct exit_arg *e = arg;
    cor_memory_resource *mr = cor_default_resource();
    void *p[4];
    size_t sizes[4] = {100, 600, 2000, 4000};
    for (int i = 0; i < 4; i++)
        p[i] = cor_mr_allocate(mr, sizes[i], 16);
    for (int i = 0; i < 4; i++)
        cor_mr_deallocate(mr, p[i], sizes[i], 16);
    e->leftover = cor_mr_allocate(mr, 100, 16);
    cor_alloc_stats_get(&e->at_end);
    return NULL;
}

#if COR_ALLOC_JEMALLOC
static unsigned narenas(void)
{
    unsigned n = 0;
    size_t len = sizeof n;
    cr_assert_eq(mallctl("arenas.narenas", &n, &len, NULL, 0), 0);
    return n;
}
#endif

Test(alloc, thread_exit_returns_cached_blocks)
{
    cor_alloc_stats r0;
    cr_assert_eq(cor_alloc_stats_retired(&r0), 0);
    /* This thread's own pool (and arena) exists before counting arenas. */
    cor_mr_deallocate(cor_default_resource(), cor_mr_allocate(cor_default_resource(), 64, 16), 64,
                      16);
#if COR_ALLOC_JEMALLOC
    unsigned arenas_before = narenas();
#endif
    for (int round = 0; round < 5; round++) {
        struct exit_arg e = {0};
        pthread_t tid;
        cr_assert_eq(pthread_create(&tid, NULL, cache_and_exit, &e), 0);
        cr_assert_eq(pthread_join(tid, NULL), 0);
        cr_assert_eq(e.at_end.cached, 3, "the cached 100-byte block was reused");
        cor_alloc_stats r;
        cr_assert_eq(cor_alloc_stats_retired(&r), 0);
        cr_assert_eq(r.cached, 0);
        cr_assert_eq(r.allocations - r0.allocations, 5);
        cr_assert_eq(r.frees - r0.frees, 4);
        /* Four refills, then the exit flushed the three cached blocks. */
        cr_assert_eq(r.arena_calls - r0.arena_calls, 4 + 3, "round %d", round);
        r0 = r;
        /* The dead thread's block is still good and can be freed here. */
        memset(e.leftover, 7, 100);
        cor_mr_deallocate(cor_default_resource(), e.leftover, 100, 16);
    }
#if COR_ALLOC_JEMALLOC
    if (COR_ALLOC_ARENA_MODE == COR_ALLOC_ARENA_THREAD)
        cr_assert_leq(narenas() - arenas_before, 1, "exited threads' arenas are reused: %u new",
                      narenas() - arenas_before);
#endif
}

/* ---- a thread's exit hooks that run after the pool's ---- */

static pthread_key_t late_key;
static void *late_block;

/* Frees a block main allocated, then allocates and frees one: after the pool's own exit hook. */
static void late_destructor(void *arg)
{
    (void)arg;
    cor_memory_resource *mr = cor_default_resource();
    cor_mr_deallocate(mr, late_block, 300, 16);
    void *p = cor_mr_allocate(mr, 200, 16);
    cor_mr_deallocate(mr, p, 200, 16);
}

static void *late_thread(void *arg)
{
    (void)arg;
    cor_memory_resource *mr = cor_default_resource();
    void *p = cor_mr_allocate(mr, 100, 16);
    cor_mr_deallocate(mr, p, 100, 16);
    pthread_setspecific(late_key, (void *)1);
    return NULL;
}

Test(alloc, late_exit_hooks_count_in_the_retired_sum)
{
    cor_memory_resource *mr = cor_default_resource();
    /* The pool's exit key exists before this one: its hook runs first. */
    cor_mr_deallocate(mr, cor_mr_allocate(mr, 100, 16), 100, 16);
    cr_assert_eq(pthread_key_create(&late_key, late_destructor), 0);
    late_block = cor_mr_allocate(mr, 300, 16);
    cr_assert_not_null(late_block);
    cor_alloc_stats r0, r1;
    cr_assert_eq(cor_alloc_stats_retired(&r0), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, late_thread, NULL), 0);
    cr_assert_eq(pthread_join(t, NULL), 0);
    cr_assert_eq(cor_alloc_stats_retired(&r1), 0);
    cr_assert_eq(r1.allocations - r0.allocations, 2, "the thread's block and the late one");
    cr_assert_eq(r1.frees - r0.frees, 3, "those two and main's block");
    pthread_key_delete(late_key);
}
