/*
 * bench_timer: timers and deadlines at scale.
 *  1. coring against raw liburing, in the same run, at the same batch B (1
 *     and 32 timers per kernel round on both sides), ns per timer:
 *     - baseline.raw_liburing_timeout_remove.batchB: B IORING_OP_TIMEOUT
 *       (60 s) and B IORING_OP_TIMEOUT_REMOVE of them in one submit, the 2B
 *       completions reaped;
 *     - timer.cor_timer_cancel.batchB: B coroutines each waiting on its own
 *       cor_timer (60 s), one coroutine canceling the B timers each round:
 *       a wait started, canceled and its coroutine resumed;
 *     - timer.deadline.batchB: B coroutines awaiting cor_nop() with a 60 s
 *       deadline, against the same nops without one (baseline.nop.batchB);
 *       the difference is what a deadline that does not fire costs (set,
 *       put on the wheel, taken off when the nop completes first).
 *     The same coring rows on the epoll backend (no kernel timer either way).
 *  2. The structure behind them: the io_context's timer wheel (src/wheel.c)
 *     against a binary heap (below) at 1,000, 100,000 and 1,000,000 timers,
 *     ns per timer:
 *     - schedule_cancel: schedule N timers 1 ms to 60 s ahead, then cancel
 *       them all in random order;
 *     - rearm: N timers live, one at a time canceled and scheduled again
 *       30 to 60 s ahead (an idle timeout pushed back by traffic);
 *     - schedule_fire: schedule N timers up to 10 s ahead, then, like the
 *       run loop, wake at the time the structure says is next and fire what
 *       is due, until none is left; the wake-ups per timer are reported.
 * --quick leaves out the 1,000,000-timer rows and shortens the rest.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <liburing.h>
#include <coring/coring.h>

#include "harness.h"
#include "raw_ring.h"
#include "wheel.h"

#define SEC (1000LL * 1000 * 1000)
#define MS (1000LL * 1000)

static const cor_io_context_options bench_opts = {.sq_entries = 256, .cq_entries = 512};

static cor_io_context *make_on(int backend)
{
    cor_io_context_options o = bench_opts;
    o.backend = backend;
    cor_io_context *io;
    if (cor_io_context_create(&io, &o)) {
        fprintf(stderr, "bench_timer: cannot create an io_context\n");
        exit(1);
    }
    return io;
}

/* The raw ring gets the flags the io_context has in force. */
static void raw_ring_init(struct io_uring *r, cor_io_context *io)
{
    if (bench_raw_ring_init(r, io, bench_opts.sq_entries, bench_opts.cq_entries)) {
        fprintf(stderr, "bench_timer: raw ring setup failed\n");
        exit(1);
    }
}

/* ---- 1a. raw liburing: IORING_OP_TIMEOUT + IORING_OP_TIMEOUT_REMOVE ---- */

enum { MAX_BATCH = 32, UD_REMOVE = 1u << 16 };

struct raw_arg {
    struct io_uring ring;
    int batch;
};

static void raw_reap(struct io_uring *r, int n)
{
    for (int k = 0; k < n; k++) {
        struct io_uring_cqe *cqe;
        while (io_uring_peek_cqe(r, &cqe) || !cqe)
            io_uring_get_events(r);
        /* A remove that did not find its timeout would make the baseline a no-op. */
        if (cqe->user_data >= UD_REMOVE && cqe->res != 0) {
            fprintf(stderr, "bench_timer: TIMEOUT_REMOVE failed: %d\n", cqe->res);
            exit(1);
        }
        io_uring_cqe_seen(r, cqe);
    }
}

static void raw_timeouts(void *arg, long iters)
{
    struct raw_arg *a = arg;
    struct io_uring *r = &a->ring;
    struct __kernel_timespec ts = {.tv_sec = 60};
    for (long done = 0; done + a->batch <= iters; done += a->batch) {
        for (int b = 0; b < a->batch; b++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            io_uring_prep_timeout(sqe, &ts, 0, 0);
            io_uring_sqe_set_data64(sqe, (uint64_t)b + 1);
        }
        for (int b = 0; b < a->batch; b++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            io_uring_prep_timeout_remove(sqe, (uint64_t)b + 1, 0);
            io_uring_sqe_set_data64(sqe, UD_REMOVE + (uint64_t)b);
        }
        io_uring_submit_and_wait(r, (unsigned)(2 * a->batch));
        raw_reap(r, 2 * a->batch);
    }
}

/* ---- 1b. coring: cor_timer waits canceled ---- */

/* Waits on t until a wait ends by expiry (0) rather than by cancel. */
struct timer_waiter {
    COR_PROMISE(int);
    cor_timer *t;
    int r;
};
COR_DEFINE_STATIC(timer_waiter, (cor_timer * t), { self->t = t; })
{
    COR_BEGIN();
    do {
        COR_AWAIT(self->r, cor_timer_wait(self->t));
    } while (self->r == -ECANCELED);
    COR_RETURN(0);
}

/* Cancels the waits on t[0..b) round after round until n were canceled; then lets them expire. */
struct timer_canceler {
    COR_PROMISE(int);
    cor_timer *t;
    int b;
    long n, done;
};
COR_DEFINE_STATIC(timer_canceler, (cor_timer * t, int b, long n), {
    self->t = t;
    self->b = b;
    self->n = n;
    self->done = 0;
})
{
    COR_BEGIN();
    while (self->done < self->n) {
        for (int i = 0; i < self->b; i++)
            self->done += cor_timer_cancel(&self->t[i]);
        /* The canceled waiters resume and wait again before this runs again. */
        COR_AWAIT_VOID(cor_yield());
    }
    for (int i = 0; i < self->b; i++)
        cor_timer_expires_at(&self->t[i], 0);
    COR_RETURN(0);
}

struct coring_arg {
    cor_io_context *io;
    int batch;
    bool deadline;
};

static void coring_timers(void *arg, long iters)
{
    struct coring_arg *a = arg;
    cor_executor ex = cor_io_context_executor(a->io);
    cor_timer t[MAX_BATCH];
    for (int i = 0; i < a->batch; i++) {
        cor_timer_init(&t[i], a->io);
        cor_timer_expires_after(&t[i], 60 * SEC);
        COR_RUN_ASYNC(ex, NULL, timer_waiter(&t[i]));
    }
    COR_RUN_ASYNC(ex, NULL, timer_canceler(t, a->batch, iters));
    cor_io_context_run(a->io);
}

/* ---- 1c. coring: deadlines that do not fire ---- */

struct nop_loop {
    COR_PROMISE(int);
    long i, n;
    bool deadline;
    int r;
};
COR_DEFINE_STATIC(nop_loop, (long n, bool deadline), {
    self->n = n;
    self->deadline = deadline;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        if (self->deadline)
            COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_nop(), 60 * SEC));
        else
            COR_AWAIT(self->r, cor_nop());
        if (self->r)
            COR_RETURN(self->r);
    }
    COR_RETURN(0);
}

static void coring_nops(void *arg, long iters)
{
    struct coring_arg *a = arg;
    for (int b = 0; b < a->batch; b++)
        COR_RUN_ASYNC(cor_io_context_executor(a->io), NULL,
                      nop_loop(iters / a->batch, a->deadline));
    cor_io_context_run(a->io);
}

/* Prints name = what / base as a speed-up ("x faster"), the figure the goal is stated in. */
static void report_speedup(const char *name, double raw_ns, double coring_ns)
{
    bench_report_value(name, "x_faster", coring_ns > 0 ? raw_ns / coring_ns : 0, NULL, 0);
}

static void bench_against_raw(int batch)
{
    char name[96], raw_name[96], nop_name[96];
    snprintf(name, sizeof name, "timer.cor_timer_cancel.batch%d", batch);
    if (!bench_enabled(name))
        return;
    /* A kernel round per timer at batch 1: fewer of them take as long. */
    long n = bench_iters(batch == 1 ? 200 * 1000 : 1000 * 1000) / batch * batch;
    struct coring_arg c = {.io = make_on(COR_IO_BACKEND_URING), .batch = batch};
    struct raw_arg raw = {.batch = batch};
    raw_ring_init(&raw.ring, c.io);
    snprintf(raw_name, sizeof raw_name, "baseline.raw_liburing_timeout_remove.batch%d", batch);
    bench_result base = bench_measure(raw_name, raw_timeouts, &raw, n);
    bench_report(&base, NULL, NULL);
    io_uring_queue_exit(&raw.ring);

    bench_result t = bench_measure(name, coring_timers, &c, n);
    bench_report(&t, &base, NULL);
    snprintf(name, sizeof name, "timer.cor_timer_cancel.batch%d.speedup_vs_raw", batch);
    report_speedup(name, base.ns_median, t.ns_median);

    snprintf(nop_name, sizeof nop_name, "baseline.nop.batch%d", batch);
    bench_result nop = bench_measure(nop_name, coring_nops, &c, n);
    bench_report(&nop, NULL, NULL);
    c.deadline = true;
    snprintf(name, sizeof name, "timer.nop_with_deadline.batch%d", batch);
    bench_result dl = bench_measure(name, coring_nops, &c, n);
    bench_report(&dl, &nop, NULL);
    double cost = dl.ns_median - nop.ns_median;
    snprintf(name, sizeof name, "timer.deadline.batch%d", batch);
    bench_report_value(name, "ns/op", cost, raw_name, base.ns_median);
    snprintf(name, sizeof name, "timer.deadline.batch%d.speedup_vs_raw", batch);
    report_speedup(name, base.ns_median, cost);
    cor_io_context_destroy(c.io);

    /* The same on epoll: the wheel is the front end's, so only the nop differs. */
    struct coring_arg e = {.io = make_on(COR_IO_BACKEND_EPOLL), .batch = batch};
    snprintf(name, sizeof name, "epoll.cor_timer_cancel.batch%d", batch);
    bench_result et = bench_measure(name, coring_timers, &e, n);
    bench_report(&et, &t, NULL);
    snprintf(nop_name, sizeof nop_name, "epoll.nop.batch%d", batch);
    bench_result enop = bench_measure(nop_name, coring_nops, &e, n);
    bench_report(&enop, NULL, NULL);
    e.deadline = true;
    snprintf(name, sizeof name, "epoll.nop_with_deadline.batch%d", batch);
    bench_result edl = bench_measure(name, coring_nops, &e, n);
    bench_report(&edl, &enop, NULL);
    snprintf(name, sizeof name, "epoll.deadline.batch%d", batch);
    bench_report_value(name, "ns/op", edl.ns_median - enop.ns_median, raw_name, base.ns_median);
    cor_io_context_destroy(e.io);
}

/* ---- 2. the structure: the wheel against a binary heap ---- */

/*
 * A binary min-heap of timers with their index kept in the node, so that a
 * cancel is O(log n) without a search.
 */
struct hnode {
    int64_t when;
    uint32_t idx; /* position in the heap, HEAP_NONE when not in it */
};

#define HEAP_NONE UINT32_MAX

struct heap {
    struct hnode **a;
    uint32_t n;
};

static inline bool heap_less(const struct hnode *x, const struct hnode *y)
{
    return x->when < y->when;
}

static inline void heap_set(struct heap *h, uint32_t i, struct hnode *x)
{
    h->a[i] = x;
    x->idx = i;
}

static void heap_up(struct heap *h, uint32_t i)
{
    struct hnode *x = h->a[i];
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (!heap_less(x, h->a[p]))
            break;
        heap_set(h, i, h->a[p]);
        i = p;
    }
    heap_set(h, i, x);
}

static void heap_down(struct heap *h, uint32_t i)
{
    struct hnode *x = h->a[i];
    for (;;) {
        uint32_t c = 2 * i + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && heap_less(h->a[c + 1], h->a[c]))
            c++;
        if (!heap_less(h->a[c], x))
            break;
        heap_set(h, i, h->a[c]);
        i = c;
    }
    heap_set(h, i, x);
}

static void heap_add(struct heap *h, struct hnode *x)
{
    heap_set(h, h->n++, x);
    heap_up(h, x->idx);
}

static void heap_remove(struct heap *h, struct hnode *x)
{
    uint32_t i = x->idx;
    x->idx = HEAP_NONE;
    struct hnode *last = h->a[--h->n];
    if (i == h->n)
        return;
    heap_set(h, i, last);
    if (i > 0 && heap_less(last, h->a[(i - 1) / 2]))
        heap_up(h, i);
    else
        heap_down(h, i);
}

/* Fires (removes) every timer due at now; returns how many. */
static long heap_expire(struct heap *h, int64_t now)
{
    long n = 0;
    while (h->n && h->a[0]->when <= now) {
        heap_remove(h, h->a[0]);
        n++;
    }
    return n;
}

/* N timers on one structure: the wheel or the heap, the times, a random order. */
struct timers {
    bool heap;
    uint32_t n;
    int64_t base;      /* the clock at the start                  */
    int64_t *when;     /* per timer: its expiry                   */
    uint32_t *order;   /* a random permutation of 0..n-1          */
    cor__tnode *wnode; /* the wheel's nodes                       */
    cor__wheel wheel;
    struct hnode *hnode; /* the heap's nodes                       */
    struct heap h;
    long wakes;
};

static inline void t_add(struct timers *t, uint32_t i, int64_t when)
{
    if (t->heap) {
        t->hnode[i].when = when;
        heap_add(&t->h, &t->hnode[i]);
    } else {
        t->wnode[i].when = when;
        cor__wheel_add(&t->wheel, &t->wnode[i]);
    }
}

static inline void t_cancel(struct timers *t, uint32_t i)
{
    if (t->heap)
        heap_remove(&t->h, &t->hnode[i]);
    else
        cor__wheel_remove(&t->wheel, &t->wnode[i]);
}

static inline int64_t t_next(const struct timers *t)
{
    if (t->heap)
        return t->h.n ? t->h.a[0]->when : INT64_MAX;
    return cor__wheel_next(&t->wheel);
}

static inline long t_expire(struct timers *t, int64_t now)
{
    if (t->heap)
        return heap_expire(&t->h, now);
    cor__wheel_expire(&t->wheel, now);
    long n = 0;
    while (cor__wheel_pop_fired(&t->wheel))
        n++;
    return n;
}

static void t_reset(struct timers *t)
{
    cor__wheel_init(&t->wheel, t->base);
    t->h.n = 0;
}

static uint64_t rng_state = 88172645463325252ull;

static uint64_t rng(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Times min..min+span ahead of base, a shuffled order. */
static void t_times(struct timers *t, int64_t min, int64_t span)
{
    for (uint32_t i = 0; i < t->n; i++) {
        t->when[i] = t->base + min + (int64_t)(rng() % (uint64_t)span);
        t->order[i] = i;
    }
    for (uint32_t i = t->n - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(rng() % (i + 1));
        uint32_t x = t->order[i];
        t->order[i] = t->order[j];
        t->order[j] = x;
    }
}

static void t_alloc(struct timers *t, uint32_t n)
{
    memset(t, 0, sizeof *t);
    t->n = n;
    t->base = 1000 * SEC;
    t->when = malloc(n * sizeof *t->when);
    t->order = malloc(n * sizeof *t->order);
    t->wnode = calloc(n, sizeof *t->wnode);
    t->hnode = calloc(n, sizeof *t->hnode);
    t->h.a = malloc(n * sizeof *t->h.a);
    if (!t->when || !t->order || !t->wnode || !t->hnode || !t->h.a) {
        fprintf(stderr, "bench_timer: out of memory for %u timers\n", n);
        exit(1);
    }
    for (uint32_t i = 0; i < n; i++)
        t->wnode[i].slot = COR__TNODE_IDLE;
}

static void t_free(struct timers *t)
{
    free(t->when);
    free(t->order);
    free(t->wnode);
    free(t->hnode);
    free(t->h.a);
}

/* iters timers (at most n): scheduled, then canceled in random order. */
static void schedule_cancel(void *arg, long iters)
{
    struct timers *t = arg;
    t_reset(t);
    uint32_t n = iters < (long)t->n ? (uint32_t)iters : t->n;
    for (uint32_t i = 0; i < n; i++)
        t_add(t, i, t->when[i]);
    for (uint32_t i = 0; i < t->n; i++)
        if (t->order[i] < n)
            t_cancel(t, t->order[i]);
}

/* iters timers (at most n): scheduled, then fired by waking at each next time. */
static void schedule_fire(void *arg, long iters)
{
    struct timers *t = arg;
    t_reset(t);
    uint32_t n = iters < (long)t->n ? (uint32_t)iters : t->n;
    for (uint32_t i = 0; i < n; i++)
        t_add(t, i, t->when[i]);
    long fired = 0;
    t->wakes = 0;
    for (int64_t next; (next = t_next(t)) != INT64_MAX; t->wakes++)
        fired += t_expire(t, next);
    if (fired != n) {
        fprintf(stderr, "bench_timer: %ld of %u timers fired\n", fired, n);
        exit(1);
    }
}

/* iters re-arms of timers already scheduled (all n live): cancel one, schedule it later. */
static void rearm(void *arg, long iters)
{
    struct timers *t = arg;
    for (long k = 0; k < iters; k++) {
        uint32_t i = t->order[k % t->n];
        t_cancel(t, i);
        t_add(t, i, t->when[(i + (uint32_t)k) % t->n]);
    }
}

/* True if --filter selects any row of the structures at n timers. */
static bool structure_enabled(uint32_t n)
{
    static const char *const rows[] = {"schedule_cancel", "rearm", "schedule_fire"};
    char name[96];
    for (int k = 0; k < 2; k++)
        for (int i = 0; i < 3; i++) {
            snprintf(name, sizeof name, "%s.%s.n%u", k ? "heap" : "wheel", rows[i], n);
            if (bench_enabled(name))
                return true;
        }
    return false;
}

static void bench_structure(uint32_t n)
{
    char name[96], base_name[96];
    if (!structure_enabled(n))
        return;
    struct timers t;
    t_alloc(&t, n);
    bench_result r[2];

    t_times(&t, MS, 60 * SEC);
    for (int k = 0; k < 2; k++) {
        t.heap = k == 1;
        snprintf(name, sizeof name, "%s.schedule_cancel.n%u", t.heap ? "heap" : "wheel", n);
        r[k] = bench_measure(name, schedule_cancel, &t, n);
    }
    bench_report(&r[1], NULL, NULL);
    bench_report(&r[0], &r[1], NULL);

    /* Re-arm: every timer live, each re-arm 30 to 60 s ahead. */
    t_times(&t, 30 * SEC, 30 * SEC);
    long rearms = bench_iters(400 * 1000);
    for (int k = 0; k < 2; k++) {
        t.heap = k == 1;
        t_reset(&t);
        for (uint32_t i = 0; i < n; i++)
            t_add(&t, i, t.when[i]);
        snprintf(name, sizeof name, "%s.rearm.n%u", t.heap ? "heap" : "wheel", n);
        r[k] = bench_measure(name, rearm, &t, rearms);
        for (uint32_t i = 0; i < n; i++)
            t_cancel(&t, i);
    }
    bench_report(&r[1], NULL, NULL);
    bench_report(&r[0], &r[1], NULL);

    /* Fire: up to 10 s ahead; a 1 us tick on the wheel, exact times on the heap. */
    t_times(&t, 1, 10 * SEC);
    double wakes[2];
    for (int k = 0; k < 2; k++) {
        t.heap = k == 1;
        snprintf(name, sizeof name, "%s.schedule_fire.n%u", t.heap ? "heap" : "wheel", n);
        r[k] = bench_measure(name, schedule_fire, &t, n);
        wakes[k] = (double)t.wakes / n;
    }
    bench_report(&r[1], NULL, NULL);
    bench_report(&r[0], &r[1], NULL);
    snprintf(base_name, sizeof base_name, "heap.schedule_fire.n%u.wakeups", n);
    bench_report_value(base_name, "wakeups/timer", wakes[1], NULL, 0);
    snprintf(name, sizeof name, "wheel.schedule_fire.n%u.wakeups", n);
    bench_report_value(name, "wakeups/timer", wakes[0], base_name, wakes[1]);
    t_free(&t);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    bench_against_raw(1);
    bench_against_raw(MAX_BATCH);
    bench_structure(1000);
    bench_structure(100 * 1000);
    if (!bench_quick())
        bench_structure(1000 * 1000);
    return 0;
}
