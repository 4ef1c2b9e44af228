/*
 * bench_alloc: the frame allocator. ns per allocate+free pair for the
 * per-thread pool (through cor_mr_allocate/cor_mr_deallocate, counting
 * included), the process malloc/free, jemalloc mallocx/sdallocx on an
 * explicit arena and tcache, and glibc's own allocator, for 64, 256, 1024 and
 * 4096 bytes, each against malloc/free measured in the same run. Then the
 * child-task await round trip of bench_dispatch with frames from the pool,
 * against the same loop with frames from the malloc resource.
 *
 * Debian's libjemalloc is unprefixed and coring links it, so "malloc" here is
 * jemalloc's malloc (its automatic tcache); "libc_malloc" is glibc's
 * allocator called through __libc_malloc/__libc_free.
 */
#include <stdio.h>
#include <stdlib.h>

#include <jemalloc/jemalloc.h>
#include <coring/coring.h>

#include "harness.h"

extern void *__libc_malloc(size_t size);
extern void __libc_free(void *p);

struct pair_arg {
    size_t size;
    int flags; /* mallocx flags: explicit arena and tcache */
    int free_flags;
};

static void pool_pair(void *arg, long iters)
{
    const struct pair_arg *a = arg;
    cor_memory_resource *mr = cor_default_resource();
    for (long i = 0; i < iters; i++) {
        void *p = cor_mr_allocate(mr, a->size, 16);
        bench_keep(p);
        cor_mr_deallocate(mr, p, a->size, 16);
    }
}

static void malloc_pair(void *arg, long iters)
{
    const struct pair_arg *a = arg;
    for (long i = 0; i < iters; i++) {
        void *p = malloc(a->size);
        bench_keep(p);
        free(p);
    }
}

static void mallocx_pair(void *arg, long iters)
{
    const struct pair_arg *a = arg;
    for (long i = 0; i < iters; i++) {
        void *p = mallocx(a->size, a->flags);
        bench_keep(p);
        sdallocx(p, a->size, a->free_flags);
    }
}

static void libc_pair(void *arg, long iters)
{
    const struct pair_arg *a = arg;
    for (long i = 0; i < iters; i++) {
        void *p = __libc_malloc(a->size);
        bench_keep(p);
        __libc_free(p);
    }
}

/* ---- child-task await round trip ---- */

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

struct await_arg {
    cor_manual *m;
    cor_memory_resource *mr; /* NULL: the default (the pool) */
};

static void child_await(void *arg, long iters)
{
    struct await_arg *a = arg;
    cor_launch_options o = {.alloc = a->mr};
    COR_RUN_ASYNC(cor_manual_executor(a->m), &o, await_loop(iters));
    cor_manual_run(a->m);
}

/* Runs fn once more and reports the pool's hits and backing-heap calls per operation. */
static void report_pool_counters(const char *name, bench_fn fn, void *arg, long iters)
{
    cor_alloc_stats a, b;
    cor_alloc_stats_get(&a);
    fn(arg, iters);
    cor_alloc_stats_get(&b);
    char n[128];
    snprintf(n, sizeof n, "%s.pool_hits_per_op", name);
    bench_report_value(n, "hits/op", (double)(b.pool_hits - a.pool_hits) / (double)iters, NULL, 0);
    snprintf(n, sizeof n, "%s.arena_calls_per_op", name);
    bench_report_value(n, "calls/op", (double)(b.arena_calls - a.arena_calls) / (double)iters, NULL,
                       0);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    long n = bench_iters(20 * 1000 * 1000);

    unsigned arena, tcache;
    size_t len = sizeof arena;
    if (mallctl("arenas.create", &arena, &len, NULL, 0) ||
        (len = sizeof tcache, mallctl("tcache.create", &tcache, &len, NULL, 0))) {
        fprintf(stderr, "bench_alloc: jemalloc refused an arena or a tcache\n");
        return 1;
    }

    static const size_t sizes[] = {64, 256, 1024, 4096};
    for (size_t i = 0; i < sizeof sizes / sizeof sizes[0]; i++) {
        struct pair_arg a = {.size = sizes[i],
                             .flags = MALLOCX_ARENA(arena) | MALLOCX_TCACHE(tcache),
                             .free_flags = MALLOCX_TCACHE(tcache)};
        char name[96], prefix[64];
        snprintf(prefix, sizeof prefix, "alloc.pair.%zu", sizes[i]);
        if (!bench_enabled(prefix))
            continue;
        snprintf(name, sizeof name, "%s.malloc", prefix);
        bench_result base = bench_measure(name, malloc_pair, &a, n);
        bench_report(&base, NULL, NULL);

        snprintf(name, sizeof name, "%s.pool", prefix);
        bench_result pool = bench_measure(name, pool_pair, &a, n);
        char extra[64];
        snprintf(extra, sizeof extra, "\"speedup\": %.3f",
                 pool.ns_median > 0 ? base.ns_median / pool.ns_median : 0);
        bench_report(&pool, &base, extra);

        snprintf(name, sizeof name, "%s.mallocx_arena", prefix);
        bench_result mx = bench_measure(name, mallocx_pair, &a, n);
        bench_report(&mx, &base, NULL);

        snprintf(name, sizeof name, "%s.libc_malloc", prefix);
        bench_result lc = bench_measure(name, libc_pair, &a, n);
        bench_report(&lc, &base, NULL);
    }

    cor_manual *m;
    if (cor_manual_create(&m))
        return 1;
    if (bench_enabled("alloc.child_await")) {
        long k = bench_iters(10 * 1000 * 1000);
        struct await_arg ma = {m, cor_malloc_resource()};
        bench_result base = bench_measure("alloc.child_await.malloc", child_await, &ma, k);
        bench_report(&base, NULL, NULL);
        struct await_arg pa = {m, NULL};
        bench_result pool = bench_measure("alloc.child_await.pool", child_await, &pa, k);
        bench_report(&pool, &base, NULL);
        report_pool_counters("alloc.child_await.pool", child_await, &pa, k);
    }
    cor_manual_destroy(m);
    mallctl("tcache.destroy", NULL, NULL, &tcache, sizeof tcache);
    return 0;
}
