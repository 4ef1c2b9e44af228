/*
 * bench_dispatch: the cost of the execution model. ns/op and allocs/op for a
 * same-executor child-task await round trip, a dispatch, a post+run through
 * the manual executor and a run() hop to another executor and back, each
 * against two indirect calls through function pointers measured in the same
 * run (the child await taking turns with it); and the composition
 * primitives (compose.h) on an io_context: when_all and when_any of two
 * synchronously completing children against awaiting the same two one
 * after the other, and a timeout around one such child against awaiting it
 * plainly.
 */
#include <coring/coring.h>

#include "harness.h"

/* ---- baseline: two indirect calls ---- */

__attribute__((noinline)) static long add_one(long x)
{
    return x + 1;
}

static long (*volatile fp_a)(long) = add_one;
static long (*volatile fp_b)(long) = add_one;

static void two_indirect_calls(void *arg, long iters)
{
    long x = 0;
    for (long i = 0; i < iters; i++) {
        x = fp_a(x);
        x = fp_b(x);
    }
    bench_keep(x);
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
    for (self->i = 0; self->i < self->n; self->i++)
        COR_AWAIT(self->acc, child(self->acc));
    COR_RETURN(self->acc);
}

static void child_await(void *arg, long iters)
{
    cor_manual *m = arg;
    COR_RUN_ASYNC(cor_manual_executor(m), NULL, await_loop(iters));
    cor_manual_run(m);
}

/* ---- dispatch and post of a bare handle ---- */

struct bare {
    cor_frame hdr;
    long count;
};

static cor_handle bare_resume(cor_frame *f)
{
    ((struct bare *)f)->count++;
    return COR_NOOP;
}

static void dispatch_inline(void *arg, long iters)
{
    struct bare *b = arg;
    cor_executor ex = cor_inline_executor();
    for (long i = 0; i < iters; i++)
        cor_executor_dispatch(ex, &b->hdr);
}

struct post_ctx {
    cor_manual *m;
    struct bare frames[256];
};

static void post_and_run(void *arg, long iters)
{
    struct post_ctx *p = arg;
    cor_executor ex = cor_manual_executor(p->m);
    for (long i = 0; i < iters; i += 256) {
        long batch = iters - i < 256 ? iters - i : 256;
        for (long j = 0; j < batch; j++)
            cor_executor_post(ex, &p->frames[j].hdr);
        cor_manual_poll(p->m);
    }
}

/* ---- run() hop to another executor and back ---- */

static cor_handle other_dispatch(const void *obj, cor_handle h)
{
    return h;
}
static void other_post(const void *obj, cor_handle h)
{
    cor_resume(h);
}
static void other_work(const void *obj)
{
}
static const cor_executor_ops other_ops = {other_dispatch, other_post, NULL, other_work,
                                           other_work};
static const char other_obj;

struct hop_loop {
    COR_PROMISE(long);
    long i, n, acc;
};
COR_DEFINE_STATIC(hop_loop, (long n), { self->n = n; })
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++)
        COR_AWAIT(self->acc,
                  COR_RUN(child(self->acc), .ex = ((cor_executor){&other_obj, &other_ops})));
    COR_RETURN(self->acc);
}

static void run_hop(void *arg, long iters)
{
    cor_manual *m = arg;
    COR_RUN_ASYNC(cor_manual_executor(m), NULL, hop_loop(iters));
    cor_manual_run(m);
}

/* ---- composition: when_all, when_any, timeout ---- */

enum { SEQ2, ALL2, ANY2, SEQ1, TIMEOUT1 };

struct compose_loop {
    COR_PROMISE(long);
    long i, n, a, b;
    int kind, idx;
};
COR_DEFINE_STATIC(compose_loop, (long n, int kind), {
    self->n = n;
    self->kind = kind;
})
{
    COR_BEGIN();
    self->a = self->b = 0;
    for (self->i = 0; self->i < self->n; self->i++) {
        switch (self->kind) {
        case SEQ2:
            COR_AWAIT(self->a, child(self->a));
            COR_AWAIT(self->b, child(self->b));
            break;
        case ALL2:
            COR_AWAIT_ALL((self->a, child(self->a)), (self->b, child(self->b)));
            break;
        case ANY2:
            COR_AWAIT_ANY(self->idx, (self->a, child(self->a)), (self->b, child(self->b)));
            break;
        case SEQ1:
            COR_AWAIT(self->a, child(self->a));
            break;
        default:
            COR_AWAIT(self->a, COR_TIMEOUT(1000000000, child(self->a)));
            break;
        }
    }
    COR_RETURN(self->a + self->b);
}

struct compose_arg {
    cor_io_context *io;
    int kind;
};

static void compose_run(void *arg, long iters)
{
    struct compose_arg *c = arg;
    COR_RUN_ASYNC(cor_io_context_executor(c->io), NULL, compose_loop(iters, c->kind));
    cor_io_context_run(c->io);
}

static void bench_compose(long n)
{
    if (!bench_enabled("compose"))
        return;
    cor_io_context *io;
    if (cor_io_context_create(&io, NULL))
        return;
    struct compose_arg a = {io, SEQ2};
    bench_result seq2 = bench_measure("baseline.two_sequential_awaits", compose_run, &a, n);
    bench_report(&seq2, NULL, NULL);
    a.kind = ALL2;
    bench_result all2 = bench_measure("compose.when_all_2", compose_run, &a, n);
    bench_report(&all2, &seq2, NULL);
    a.kind = ANY2;
    bench_result any2 = bench_measure("compose.when_any_2", compose_run, &a, n);
    bench_report(&any2, &seq2, NULL);
    a.kind = SEQ1;
    bench_result seq1 = bench_measure("baseline.one_await", compose_run, &a, n);
    bench_report(&seq1, NULL, NULL);
    a.kind = TIMEOUT1;
    bench_result t1 = bench_measure("compose.timeout_1", compose_run, &a, n);
    bench_report(&t1, &seq1, NULL);
    cor_io_context_destroy(io);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    long n = bench_iters(10 * 1000 * 1000);
    cor_manual *m;
    if (cor_manual_create(&m))
        return 1;

    /*
     * The child await takes turns with its baseline (a slow spell of the
     * machine lands on both); the rows after it use that baseline's median.
     */
    bench_result base, await;
    if (bench_enabled("dispatch.child_await")) {
        bench_measure_paired("baseline.two_indirect_calls", two_indirect_calls, NULL,
                             "dispatch.child_await", child_await, m, n, &base, &await);
        bench_report(&base, NULL, NULL);
        bench_report(&await, &base, NULL);
    } else {
        base = bench_measure("baseline.two_indirect_calls", two_indirect_calls, NULL, n);
        bench_report(&base, NULL, NULL);
    }
    if (bench_enabled("dispatch.dispatch_inline")) {
        struct bare b = {.hdr = {.resume = bare_resume}};
        bench_result r = bench_measure("dispatch.dispatch_inline", dispatch_inline, &b, n);
        bench_report(&r, &base, NULL);
    }
    if (bench_enabled("dispatch.post_run_manual")) {
        static struct post_ctx p;
        p.m = m;
        for (int i = 0; i < 256; i++)
            p.frames[i].hdr.resume = bare_resume;
        bench_result r = bench_measure("dispatch.post_run_manual", post_and_run, &p, n / 4);
        bench_report(&r, &base, NULL);
    }
    if (bench_enabled("dispatch.run_hop")) {
        bench_result r = bench_measure("dispatch.run_hop", run_hop, m, n / 2);
        bench_report(&r, &base, NULL);
    }
    cor_manual_destroy(m);
    bench_compose(n / 4);
    return 0;
}
