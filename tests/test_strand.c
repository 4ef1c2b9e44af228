/*
 * Strands: no two handles of a strand overlap, FIFO per producer, dispatch
 * from inside runs inline, strands over the thread pool and the manual
 * executor, executor identity through nested hops, teardown and bad input.
 */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "internal.h"
#include "util.h"

/* Increments per visit to the strand: 1, every increment is its own entry (about 2 s under TSan).
 */
#define INCREMENTS_PER_HOP 1
#define TOTAL_INCREMENTS 1000000L
#define COUNTERS 8

/* ---- 8 coroutines, one strand, a 4-thread pool, a plain counter ---- */

struct shared {
    cor_strand *strand;
    long counter;  /* plain: only the strand serializes it */
    int in_strand; /* plain: set while a body runs inside the strand */
    long overlaps, outside;
};

struct nothing {
    COR_PROMISE(int);
};
COR_DEFINE_STATIC(nothing, (void), {})
{
    COR_BEGIN();
    COR_RETURN(0);
}

/*
 * A leaf that bounces its awaiter off another executor: it posts itself
 * there (never inline), then dispatches itself back through the awaiter's
 * executor from that thread, then completes. Run from a strand over a pool,
 * the way back is an enqueue on the strand from an arbitrary worker.
 */
struct bounce {
    COR_LEAF_PROMISE(int);
    cor_executor via;
};

static cor_handle bounce_home(cor_frame *f)
{
    ((struct bounce *)f)->result = 0;
    return cor_leaf_complete(f);
}

static cor_handle bounce_away(cor_frame *f)
{
    f->resume = bounce_home;
    return f->env.ex.ops->dispatch(f->env.ex.obj, f);
}

static cor_handle bounce_start(cor_frame *f)
{
    struct bounce *b = (struct bounce *)f;
    f->resume = bounce_away;
    b->via.ops->post(b->via.obj, f);
    return COR_NOOP;
}

static struct bounce *bounce_off(cor_executor via)
{
    struct bounce *b = COR_LEAF_NEW(struct bounce, bounce_start);
    if (b)
        b->via = via;
    return b;
}

struct incrementer {
    COR_PROMISE(int);
    struct shared *sh;
    cor_executor away;
    long n, i;
    int j, r;
};
COR_DEFINE_STATIC(incrementer, (struct shared * sh, cor_executor away, long n), {
    self->sh = sh;
    self->away = away;
    self->n = n;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i += INCREMENTS_PER_HOP) {
        if (self->sh->in_strand)
            self->sh->overlaps++;
        self->sh->in_strand = 1;
        if (!cor_strand_running_in_this_thread(self->sh->strand))
            self->sh->outside++;
        for (self->j = 0; self->j < INCREMENTS_PER_HOP && self->i + self->j < self->n; self->j++)
            self->sh->counter++;
        self->sh->in_strand = 0;
        /* Leave the strand for the pool and come back: the return is a
         * dispatch to the strand from a pool worker, racing the others. */
        COR_AWAIT(self->r, bounce_off(self->away));
    }
    COR_RETURN(0);
}

Test(strand, eight_coroutines_on_a_pool_never_overlap, .timeout = 300)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 4), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_thread_pool_executor(pool)), 0);
    struct shared sh = {.strand = &s};
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    for (int i = 0; i < COUNTERS; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), &o,
                                   incrementer(&sh, cor_thread_pool_executor(pool),
                                               TOTAL_INCREMENTS / COUNTERS)),
                     0);
    /* join returns once the launches (outstanding work) are done. */
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(oc.results, COUNTERS);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(sh.counter, TOTAL_INCREMENTS);
    cr_assert_eq(sh.overlaps, 0, "two bodies of the strand overlapped");
    cr_assert_eq(sh.outside, 0, "a body ran outside its strand");
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
}

/* ---- FIFO order per producer, with producers on four threads ---- */

#define PRODUCERS 4
#define PER_PRODUCER 20000

struct item {
    cor_frame hdr;
    struct fifo *f;
    int producer;
    long seq;
};

struct fifo {
    cor_strand *s;
    long next[PRODUCERS]; /* plain: touched only inside the strand */
    long ran, disorder, overlaps;
    int in_strand;
    struct item *items;
};

static cor_handle item_resume(cor_frame *h)
{
    struct item *it = (struct item *)h;
    struct fifo *f = it->f;
    if (f->in_strand)
        f->overlaps++;
    f->in_strand = 1;
    if (f->next[it->producer] != it->seq)
        f->disorder++;
    f->next[it->producer] = it->seq + 1;
    f->in_strand = 0;
    __atomic_fetch_add(&f->ran, 1, __ATOMIC_RELEASE);
    return COR_NOOP;
}

struct producer {
    struct fifo *f;
    int id;
    bool use_dispatch;
    long failures; /* asserts stay on the test's thread */
};

static void *produce(void *arg)
{
    struct producer *p = arg;
    cor_executor ex = cor_strand_executor(p->f->s);
    for (long i = 0; i < PER_PRODUCER; i++) {
        struct item *it = &p->f->items[p->id * PER_PRODUCER + i];
        it->hdr.resume = item_resume;
        it->f = p->f;
        it->producer = p->id;
        it->seq = i;
        int rc =
            p->use_dispatch ? cor_executor_dispatch(ex, &it->hdr) : cor_executor_post(ex, &it->hdr);
        if (rc)
            p->failures++;
    }
    return NULL;
}

Test(strand, fifo_per_producer_over_the_pool)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 4), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_thread_pool_executor(pool)), 0);
    struct fifo f = {.s = &s};
    f.items = calloc(PRODUCERS * PER_PRODUCER, sizeof *f.items);
    cr_assert_not_null(f.items);
    pthread_t t[PRODUCERS];
    struct producer p[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i] = (struct producer){&f, i, i % 2 == 0, 0};
        cr_assert_eq(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(p[i].failures, 0);
    }
    /* Posted handles are queued work of the pool: join runs them all first. */
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(f.ran, PRODUCERS * PER_PRODUCER);
    cr_assert_eq(f.disorder, 0, "a producer's handles ran out of order");
    cr_assert_eq(f.overlaps, 0);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
    free(f.items);
}

/* ---- dispatch from inside runs inline; from outside it queues ---- */

struct flag_frame {
    cor_frame hdr;
    int ran;
    bool inside;
    cor_strand *s;
};

static cor_handle flag_resume(cor_frame *h)
{
    struct flag_frame *f = (struct flag_frame *)h;
    f->ran++;
    f->inside = cor_strand_running_in_this_thread(f->s);
    return COR_NOOP;
}

struct dispatcher {
    COR_PROMISE(int);
    struct flag_frame *inl, *posted;
};
COR_DEFINE_STATIC(dispatcher, (struct flag_frame * inl, struct flag_frame *posted), {
    self->inl = inl;
    self->posted = posted;
})
{
    COR_BEGIN();
    cor_executor ex = COR_THIS_EXECUTOR();
    if (cor_executor_dispatch(ex, &self->inl->hdr))
        COR_FAIL(-EFAULT);
    int inline_ran = self->inl->ran; /* 1: it ran before dispatch returned */
    if (cor_executor_post(ex, &self->posted->hdr))
        COR_FAIL(-EFAULT);
    int post_ran = self->posted->ran; /* 0: post never runs inline */
    COR_RETURN(inline_ran * 10 + post_ran);
}

Test(strand, dispatch_from_inside_runs_inline_and_post_queues)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_manual_executor(m)), 0);
    struct flag_frame inl = {.hdr = {.resume = flag_resume}, .s = &s};
    struct flag_frame posted = {.hdr = {.resume = flag_resume}, .s = &s};
    struct flag_frame outside = {.hdr = {.resume = flag_resume}, .s = &s};

    /* From outside (not in the strand, not in m's run loop): dispatch queues. */
    cr_assert_eq(cor_executor_dispatch(cor_strand_executor(&s), &outside.hdr), 0);
    cr_assert_eq(outside.ran, 0);
    cr_assert_eq(cor_strand_destroy(&s), -EBUSY, "a strand with queued handles is busy");

    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), &o, dispatcher(&inl, &posted)), 0);
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.result, 10, "inline dispatch ran at once, post did not");
    cr_assert_eq(outside.ran, 1);
    cr_assert_eq(inl.ran, 1);
    cr_assert_eq(posted.ran, 1);
    cr_assert(outside.inside && inl.inside && posted.inside, "every handle ran inside the strand");
    cr_assert(!cor_strand_running_in_this_thread(&s));
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cor_manual_destroy(m);
}

/* A handle of a strand over a strand runs inside both; another thread is in neither. */
struct nested_probe {
    cor_frame hdr;
    cor_strand *inner, *outer;
    int in_inner, in_outer, elsewhere;
};

static void *ask_from_another_thread(void *arg)
{
    struct nested_probe *p = arg;
    p->elsewhere =
        cor_strand_running_in_this_thread(p->inner) + cor_strand_running_in_this_thread(p->outer);
    return NULL;
}

static cor_handle nested_probe_resume(cor_frame *h)
{
    struct nested_probe *p = (struct nested_probe *)h;
    p->in_inner = cor_strand_running_in_this_thread(p->inner);
    p->in_outer = cor_strand_running_in_this_thread(p->outer);
    pthread_t t;
    if (pthread_create(&t, NULL, ask_from_another_thread, p) == 0)
        pthread_join(t, NULL);
    else
        p->elsewhere = -1;
    return COR_NOOP;
}

Test(strand, a_strand_over_a_strand_runs_its_handles_inside_both)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_strand outer, inner;
    cr_assert_eq(cor_strand_init(&outer, cor_manual_executor(m)), 0);
    cr_assert_eq(cor_strand_init(&inner, cor_strand_executor(&outer)), 0);
    struct nested_probe p = {
        .hdr = {.resume = nested_probe_resume}, .inner = &inner, .outer = &outer};
    cr_assert_eq(cor_executor_post(cor_strand_executor(&inner), &p.hdr), 0);
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert(p.in_inner && p.in_outer);
    cr_assert_eq(p.elsewhere, 0);
    cr_assert(!cor_strand_running_in_this_thread(&inner));
    cr_assert(!cor_strand_running_in_this_thread(&outer));
    cr_assert_eq(cor_strand_destroy(&inner), 0);
    cr_assert_eq(cor_strand_destroy(&outer), 0);
    cor_manual_destroy(m);
}

/* ---- strand over the manual executor: context, work counting, fairness ---- */

struct ctx_probe {
    COR_PROMISE(int);
    cor_execution_context *want;
    cor_strand *s;
    int ok;
};
COR_DEFINE_STATIC(ctx_probe, (cor_strand * s, cor_execution_context *want), {
    self->s = s;
    self->want = want;
})
{
    COR_BEGIN();
    self->ok = cor_executor_context(COR_THIS_EXECUTOR()) == self->want &&
               cor_strand_running_in_this_thread(self->s);
    COR_AWAIT_VOID(nothing());
    COR_RETURN(self->ok && cor_strand_running_in_this_thread(self->s));
}

Test(strand, over_the_manual_executor)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_manual_executor(m)), 0);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(
            COR_RUN_ASYNC(cor_strand_executor(&s), &o, ctx_probe(&s, cor_manual_context(m))), 0);
    /* Launches on the strand count as work of m: run returns only when they are done. */
    cr_assert_eq(cor_manual_outstanding(m), 10);
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert_eq(oc.results, 10);
    cr_assert_eq(oc.result, 1, "context is the inner executor's, and bodies run in the strand");
    cr_assert_eq(cor_manual_outstanding(m), 0);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cor_manual_destroy(m);
}

#define FAIR_ITEMS 200

struct order_item {
    cor_frame hdr;
    int strand_id;
    int *log;
    int *len;
};

static cor_handle order_resume(cor_frame *h)
{
    struct order_item *it = (struct order_item *)h;
    it->log[(*it->len)++] = it->strand_id;
    return COR_NOOP;
}

Test(strand, drainer_runs_a_bounded_batch_so_strands_take_turns)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_strand a, b;
    cr_assert_eq(cor_strand_init(&a, cor_manual_executor(m)), 0);
    cr_assert_eq(cor_strand_init(&b, cor_manual_executor(m)), 0);
    static struct order_item items[2 * FAIR_ITEMS];
    static int log[2 * FAIR_ITEMS];
    int len = 0;
    for (int i = 0; i < 2 * FAIR_ITEMS; i++) {
        items[i] = (struct order_item){.hdr = {.resume = order_resume},
                                       .strand_id = i < FAIR_ITEMS ? 0 : 1,
                                       .log = log,
                                       .len = &len};
        cor_strand *s = i < FAIR_ITEMS ? &a : &b;
        cr_assert_eq(cor_executor_post(cor_strand_executor(s), &items[i].hdr), 0);
    }
    cr_assert_geq(cor_manual_run(m), 2);
    cr_assert_eq(len, 2 * FAIR_ITEMS);
    int last_a = 0, first_b = -1;
    for (int i = 0; i < len; i++) {
        if (log[i] == 0)
            last_a = i;
        else if (first_b < 0)
            first_b = i;
    }
    cr_assert_lt(first_b, last_a, "strand b ran before strand a had drained everything");
    cr_assert_eq(cor_strand_destroy(&a), 0);
    cr_assert_eq(cor_strand_destroy(&b), 0);
    cor_manual_destroy(m);
}

/* ---- nested hops keep every resumption on the right executor ---- */

struct env_check {
    cor_thread_pool *pool;
    cor_strand *s;
    pthread_t home_thread;
    cor_executor home, pool_ex, strand_ex;
};

/* Where the calling code runs: 1 home thread, 2 pool outside the strand, 3 strand on the pool. */
static int where_am_i(const struct env_check *e)
{
    if (pthread_equal(pthread_self(), e->home_thread))
        return 1;
    if (!cor_thread_pool_running_in_this_thread(e->pool))
        return 0;
    return cor_strand_running_in_this_thread(e->s) ? 3 : 2;
}

struct in_strand {
    COR_PROMISE(int);
    struct env_check *e;
};
COR_DEFINE_STATIC(in_strand, (struct env_check * e), { self->e = e; })
{
    COR_BEGIN();
    if (!cor_executor_equal(COR_THIS_EXECUTOR(), self->e->strand_ex) || where_am_i(self->e) != 3)
        COR_RETURN(0);
    COR_AWAIT_VOID(nothing()); /* a same-executor await stays in the strand */
    COR_RETURN(where_am_i(self->e) == 3);
}

struct on_pool {
    COR_PROMISE(int);
    struct env_check *e;
    int r, ok;
};
COR_DEFINE_STATIC(on_pool, (struct env_check * e), { self->e = e; })
{
    COR_BEGIN();
    self->ok =
        cor_executor_equal(COR_THIS_EXECUTOR(), self->e->pool_ex) && where_am_i(self->e) == 2;
    COR_AWAIT(self->r, COR_RUN(in_strand(self->e), .ex = self->e->strand_ex));
    self->ok = self->ok && self->r == 1;
    /* Back from the strand: on the pool, resumed through the pool's executor. */
    self->ok = self->ok && cor_executor_equal(COR_THIS_EXECUTOR(), self->e->pool_ex) &&
               cor_thread_pool_running_in_this_thread(self->e->pool);
    COR_RETURN(self->ok);
}

struct at_home {
    COR_PROMISE(int);
    struct env_check *e;
    int i, r, ok;
};
COR_DEFINE_STATIC(at_home, (struct env_check * e), { self->e = e; })
{
    COR_BEGIN();
    self->ok = 1;
    for (self->i = 0; self->i < 200; self->i++) {
        if (!cor_executor_equal(COR_THIS_EXECUTOR(), self->e->home) || where_am_i(self->e) != 1)
            self->ok = 0;
        COR_AWAIT(self->r, COR_RUN(on_pool(self->e), .ex = self->e->pool_ex));
        if (!self->r)
            self->ok = 0;
        if (!cor_executor_equal(COR_THIS_EXECUTOR(), self->e->home) || where_am_i(self->e) != 1)
            self->ok = 0;
        /* Straight from home into the strand and back. */
        COR_AWAIT(self->r, COR_RUN(in_strand(self->e), .ex = self->e->strand_ex));
        if (!self->r || where_am_i(self->e) != 1)
            self->ok = 0;
    }
    COR_RETURN(self->ok);
}

/* Runs at_home on home (driven by drive on this thread) with a strand over a 3-worker pool. */
static void nested_hops_from(cor_executor home, long (*drive)(void *), void *home_obj)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 3), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_thread_pool_executor(pool)), 0);
    struct env_check e = {.pool = pool,
                          .s = &s,
                          .home_thread = pthread_self(),
                          .home = home,
                          .pool_ex = cor_thread_pool_executor(pool),
                          .strand_ex = cor_strand_executor(&s)};
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(e.home, &o, at_home(&e)), 0);
    cr_assert_gt(drive(home_obj), 1);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, 1, "every step ran on the executor and thread it belongs to");
    /* The drainer that resumed the last parent may still be finishing on a
     * worker: the strand is idle for certain once the pool is joined. */
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
}

static long drive_manual(void *m)
{
    return cor_manual_run(m);
}

Test(strand, nested_hops_home_pool_strand_and_back_keep_executor_identity)
{
    cor_manual *home;
    cr_assert_eq(cor_manual_create(&home), 0);
    nested_hops_from(cor_manual_executor(home), drive_manual, home);
    cr_assert_eq(cor_manual_outstanding(home), 0);
    cor_manual_destroy(home);
}

/* ---- io_context: as the home of a hop chain, and as a strand's inner executor ---- */

static cor_io_context *make_io_or_skip(void)
{
    cor_io_context *io;
    int rc = cor_io_context_create(&io, NULL);
    if (rc)
        cr_skip_test("no io_context on this kernel: %s", cor_strerror(rc));
    return io;
}

static long drive_io(void *io)
{
    return cor_io_context_run(io);
}

Test(strand, nested_hops_io_context_pool_strand_and_back_keep_executor_identity)
{
    cor_io_context *io = make_io_or_skip();
    nested_hops_from(cor_io_context_executor(io), drive_io, io);
    cor_io_context_destroy(io);
}

struct io_incrementer {
    COR_PROMISE(int);
    struct shared *sh;
    cor_io_context *io;
    int i, n, r;
};
COR_DEFINE_STATIC(io_incrementer, (struct shared * sh, cor_io_context *io, int n), {
    self->sh = sh;
    self->io = io;
    self->n = n;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        if (self->sh->in_strand)
            self->sh->overlaps++;
        self->sh->in_strand = 1;
        if (!cor_strand_running_in_this_thread(self->sh->strand) ||
            cor_io_context_current() != self->io)
            self->sh->outside++;
        self->sh->counter++;
        self->sh->in_strand = 0;
        /* Through the kernel and back through the strand, then to the back of its queue. */
        if (self->i % 2)
            COR_AWAIT(self->r, cor_nop());
        else
            COR_AWAIT(self->r, cor_yield());
        if (self->r)
            COR_RETURN(self->r);
    }
    COR_RETURN(0);
}

Test(strand, over_an_io_context)
{
    cor_io_context *io = make_io_or_skip();
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_io_context_executor(io)), 0);
    struct shared sh = {.strand = &s};
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    for (int i = 0; i < COUNTERS; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), &o, io_incrementer(&sh, io, 1000)), 0);
    cr_assert_gt(cor_io_context_run(io), 1);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.results, COUNTERS);
    cr_assert_eq(oc.result, 0);
    cr_assert_eq(sh.counter, COUNTERS * 1000);
    cr_assert_eq(sh.overlaps, 0);
    cr_assert_eq(sh.outside, 0, "every resumption went through the strand on the io thread");
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cor_io_context_destroy(io);
}

/*
 * A strand over an io_context, used from a coroutine running on it (not in
 * the strand): a dispatch into the idle strand runs the handle before the
 * dispatch returns, inside the strand; what that handle dispatches to the
 * io_context waits until it is done; once a handle is posted (the strand
 * busy), a dispatch queues behind it.
 */
struct stamp_frame {
    cor_frame hdr;
    cor_strand *s;
    cor_executor io_ex;
    int *clock, at;
    bool inside;
    struct stamp_frame *then; /* dispatched to io_ex from inside this one */
    int then_seen;            /* then->at when this one finished       */
};

static cor_handle stamp_resume(cor_frame *h)
{
    struct stamp_frame *f = (struct stamp_frame *)h;
    f->at = ++*f->clock;
    f->inside = cor_strand_running_in_this_thread(f->s);
    if (f->then)
        cor_executor_dispatch(f->io_ex, &f->then->hdr);
    f->then_seen = f->then ? f->then->at : 0;
    return COR_NOOP;
}

struct io_side {
    COR_PROMISE(int);
    cor_strand *s;
    struct stamp_frame *a, *b, *d;
};
COR_DEFINE_STATIC(io_side, (cor_strand * s, struct stamp_frame *a, struct stamp_frame *b,
                            struct stamp_frame *d),
                  {
                      self->s = s;
                      self->a = a;
                      self->b = b;
                      self->d = d;
                  })
{
    COR_BEGIN();
    cor_executor sx = cor_strand_executor(self->s);
    if (cor_executor_dispatch(sx, &self->a->hdr))
        COR_FAIL(-EFAULT);
    int a_ran = self->a->at != 0; /* 1: the idle strand ran it at once */
    if (cor_executor_post(sx, &self->b->hdr) || cor_executor_dispatch(sx, &self->d->hdr))
        COR_FAIL(-EFAULT);
    int d_ran = self->d->at != 0; /* 0: the strand is busy with b, d queues behind it */
    COR_RETURN(a_ran * 10 + d_ran);
}

Test(strand, io_context_dispatch_on_its_thread_runs_at_once_and_keeps_order)
{
    cor_io_context *io = make_io_or_skip();
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_io_context_executor(io)), 0);
    int clock = 0;
    cor_executor io_ex = cor_io_context_executor(io);
    struct stamp_frame e = {{.resume = stamp_resume}, &s, io_ex, &clock, 0, false, NULL, 0};
    struct stamp_frame a = {{.resume = stamp_resume}, &s, io_ex, &clock, 0, false, &e, 0};
    struct stamp_frame b = {{.resume = stamp_resume}, &s, io_ex, &clock, 0, false, NULL, 0};
    struct stamp_frame d = {{.resume = stamp_resume}, &s, io_ex, &clock, 0, false, NULL, 0};
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(io_ex, &o, io_side(&s, &a, &b, &d)), 0);
    cr_assert_gt(cor_io_context_run(io), 0);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.result, 10, "a ran before its dispatch returned, d did not");
    cr_assert(a.inside && b.inside && d.inside, "each ran inside the strand");
    cr_assert_not(e.inside, "what a dispatched to the io_context ran outside the strand");
    cr_assert_eq(a.then_seen, 0, "and only after a was done");
    cr_assert_lt(a.at, b.at);
    cr_assert_lt(b.at, d.at, "d queued behind the posted b");
    cr_assert_gt(e.at, a.at);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cor_io_context_destroy(io);
}

/* Posts n handles into a strand from another thread while the io_context's own coroutines use it. */
struct bare_inc {
    cor_frame hdr;
    struct shared *sh;
    cor_io_context *io;
};

struct poster_arg {
    cor_strand *s;
    struct shared *sh;
    int n;
    struct bare_inc *frames;
};

static cor_handle bare_inc_resume(cor_frame *h)
{
    struct bare_inc *f = (struct bare_inc *)h;
    struct shared *sh = f->sh;
    if (sh->in_strand)
        sh->overlaps++;
    sh->in_strand = 1;
    if (!cor_strand_running_in_this_thread(sh->strand) || cor_io_context_current() != f->io)
        sh->outside++;
    sh->counter++;
    sh->in_strand = 0;
    return COR_NOOP;
}

static void *post_from_thread(void *p)
{
    struct poster_arg *a = p;
    for (int i = 0; i < a->n; i++) {
        cor_executor_post(cor_strand_executor(a->s), &a->frames[i].hdr);
        if (i % 64 == 0)
            usleep(100);
    }
    return NULL;
}

/*
 * Coroutines of the io_context go through the strand (each completion is a
 * dispatch on the io thread, which takes the uncounted path whenever the
 * strand is idle) while another thread posts into it: nothing overlaps,
 * everything runs on the io thread inside the strand, nothing is lost.
 */
Test(strand, io_context_dispatches_and_posts_from_another_thread)
{
    enum { POSTS = 2000, PER = 500 };
    cor_io_context *io = make_io_or_skip();
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_io_context_executor(io)), 0);
    struct shared sh = {.strand = &s};
    struct bare_inc *frames = calloc(POSTS, sizeof *frames);
    cr_assert_not_null(frames);
    for (int i = 0; i < POSTS; i++)
        frames[i] = (struct bare_inc){{.resume = bare_inc_resume}, &sh, io};
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    for (int i = 0; i < COUNTERS; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), &o, io_incrementer(&sh, io, PER)), 0);
    struct poster_arg pa = {&s, &sh, POSTS, frames};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, post_from_thread, &pa), 0);
    /* Run until the poster is done and everything ran (at most 30 s). */
    bool joined = false;
    for (int i = 0; i < 6000 && !(joined && sh.counter == COUNTERS * PER + POSTS); i++) {
        cor_io_context_run_for(io, 5 * 1000 * 1000);
        if (!joined && pthread_tryjoin_np(t, NULL) == 0)
            joined = true;
        if (!joined || sh.counter != COUNTERS * PER + POSTS)
            usleep(100);
    }
    if (!joined)
        pthread_join(t, NULL);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.results, COUNTERS);
    cr_assert_eq(sh.counter, COUNTERS * PER + POSTS, "every increment ran");
    cr_assert_eq(sh.overlaps, 0);
    cr_assert_eq(sh.outside, 0, "all of it on the io thread, inside the strand");
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cor_io_context_destroy(io);
    free(frames);
}

/* ---- teardown: destroying the inner executor destroys what the strand queued ---- */

Test(strand, destroying_the_inner_executor_destroys_queued_frames)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_manual_executor(m)), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    cor_launch_options o = {.alloc = &cr.base, .on_result = rec_result, .user = &oc};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), &o, nothing()), 0);
    cr_assert_eq(cr.allocs, 10);
    cr_assert_eq(cor_strand_destroy(&s), -EBUSY);
    cor_manual_destroy(m);
    cr_assert_eq(oc.results, 0, "no handler runs for destroyed frames");
    cr_assert_eq(cr.frees, 10);
    cr_assert_eq(cr.live_bytes, 0);
    cr_assert_eq(cor_strand_destroy(&s), 0, "idle once its queue was destroyed");
}

/* ---- bad input ---- */

struct self_destroy {
    COR_PROMISE(int);
    cor_strand *s;
};
COR_DEFINE_STATIC(self_destroy, (cor_strand * s), { self->s = s; })
{
    COR_BEGIN();
    COR_RETURN(cor_strand_destroy(self->s));
}

Test(strand, bad_input)
{
    cor_strand s;
    cr_assert_eq(cor_strand_init(NULL, cor_inline_executor()), -EINVAL);
    cr_assert_eq(cor_strand_init(&s, COR_EXECUTOR_NULL), -EINVAL);
    cor_executor_ops half = {0};
    cr_assert_eq(cor_strand_init(&s, (cor_executor){&half, &half}), -EINVAL);
    cr_assert_eq(cor_strand_destroy(NULL), -EINVAL);
    cr_assert(!cor_executor_valid(cor_strand_executor(NULL)));
    cr_assert(!cor_strand_running_in_this_thread(NULL));

    /* Destroying the strand from one of its own bodies: busy, not a crash. */
    cr_assert_eq(cor_strand_init(&s, cor_inline_executor()), 0);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), &o, self_destroy(&s)), 0);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, -EBUSY);
    cr_assert_eq(cor_strand_destroy(&s), 0);
}

/* ---- a run() into a strand releases it before the caller goes on ---- */

/* Sets *flag (atomically) from inside strand `in`, checking that the thread runs it. */
struct mark {
    COR_PROMISE(int);
    int *flag;
    const cor_strand *in, *outer;
};
COR_DEFINE_STATIC(mark, (int *flag, const cor_strand *in, const cor_strand *outer), {
    self->flag = flag;
    self->in = in;
    self->outer = outer;
})
{
    COR_BEGIN();
    __atomic_store_n(self->flag, 1, __ATOMIC_RELEASE);
    COR_RETURN(cor_strand_running_in_this_thread(self->in) &&
               (!self->outer || cor_strand_running_in_this_thread(self->outer)));
}

/* Waits (blocking the thread, as blocking work would) until *flag is set, for at most 5 s. */
static int wait_flag(int *flag)
{
    for (int i = 0; i < 5000 && !__atomic_load_n(flag, __ATOMIC_ACQUIRE); i++)
        usleep(1000);
    return __atomic_load_n(flag, __ATOMIC_ACQUIRE);
}

/*
 * Hops into strand s (over `outer`, if nested) and back, then checks the
 * caller is outside every strand, and that the strand is free: a coroutine
 * launched on it from here runs while this one still holds its thread. On a
 * single-threaded executor it runs before the launch returns (the strand is
 * idle and this thread runs its inner executor); on a pool the drainer may
 * still be finishing on the other worker, so this blocks (bounded) until the
 * launched coroutine has run, which it could not while this one held the
 * strand.
 */
struct hop_and_release {
    COR_PROMISE(int);
    cor_strand *s, *outer;
    bool threads;
    int inside, launched, ok;
};
COR_DEFINE_STATIC(hop_and_release, (cor_strand * s, cor_strand *outer, bool threads), {
    self->s = s;
    self->outer = outer;
    self->threads = threads;
})
{
    COR_BEGIN();
    self->launched = 0;
    COR_AWAIT(self->inside, COR_RUN(mark(&self->launched, self->s, self->outer),
                                    .ex = cor_strand_executor(self->s)));
    self->ok = self->inside ? 1 : -1;
    if (self->ok > 0 && cor_strand_running_in_this_thread(self->s))
        self->ok = -2;
    if (self->ok > 0 && self->outer && cor_strand_running_in_this_thread(self->outer))
        self->ok = -3;
    self->launched = 0;
    if (self->ok > 0 && COR_RUN_ASYNC(cor_strand_executor(self->s), NULL,
                                      mark(&self->launched, self->s, self->outer)) != 0)
        self->ok = -4;
    if (self->ok > 0 && self->threads)
        wait_flag(&self->launched);
    if (self->ok > 0 && !__atomic_load_n(&self->launched, __ATOMIC_ACQUIRE))
        self->ok = -5; /* it could not enter: the strand was still held */
    COR_RETURN(self->ok);
}

static void check_release(cor_executor home, long (*drive)(void *), void *obj, cor_strand *s,
                          cor_strand *outer)
{
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(home, &o, hop_and_release(s, outer, drive == NULL)), 0);
    if (drive)
        drive(obj);
    for (int i = 0; i < 5000 && !__atomic_load_n(&oc.results, __ATOMIC_ACQUIRE); i++)
        usleep(1000);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, 1,
                 "-1: not in the strand inside; -2/-3: caller still inside a strand after the "
                 "hop; -4: launch failed; -5: the strand was still held (got %d)",
                 oc.result);
}

Test(strand, run_into_a_strand_over_the_pool_releases_it)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 2), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_thread_pool_executor(pool)), 0);
    check_release(cor_thread_pool_executor(pool), NULL, NULL, &s, NULL);
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
}

Test(strand, run_into_a_strand_over_an_io_context_releases_it)
{
    cor_io_context *io = make_io_or_skip();
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_io_context_executor(io)), 0);
    check_release(cor_io_context_executor(io), drive_io, io, &s, NULL);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cor_io_context_destroy(io);
}

Test(strand, run_into_nested_strands_releases_both)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 2), 0);
    cor_strand outer, inner;
    cr_assert_eq(cor_strand_init(&outer, cor_thread_pool_executor(pool)), 0);
    cr_assert_eq(cor_strand_init(&inner, cor_strand_executor(&outer)), 0);
    check_release(cor_thread_pool_executor(pool), NULL, NULL, &inner, &outer);
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(cor_strand_destroy(&inner), 0);
    cr_assert_eq(cor_strand_destroy(&outer), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
}

/*
 * The reported case: A hops into an idle strand and back, then blocks its
 * pool thread until B has been through the same strand. B enters at once
 * only if A's hop released the strand.
 */
struct blocker {
    COR_PROMISE(int);
    cor_strand *s;
    int *a_out, *b_in;
    int inside;
};
COR_DEFINE_STATIC(blocker, (cor_strand * s, int *a_out, int *b_in), {
    self->s = s;
    self->a_out = a_out;
    self->b_in = b_in;
})
{
    COR_BEGIN();
    COR_AWAIT(self->inside,
              COR_RUN(mark(self->a_out, self->s, NULL), .ex = cor_strand_executor(self->s)));
    COR_RETURN(wait_flag(self->b_in)); /* blocking work on the pool thread */
}

Test(strand, blocking_work_after_a_hop_does_not_hold_the_strand)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 3), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_thread_pool_executor(pool)), 0);
    int a_out = 0, b_in = 0;
    struct outcome a = {0}, b = {0};
    cor_launch_options ao = {.on_result = rec_result, .on_error = rec_error, .user = &a};
    cor_launch_options bo = {.on_result = rec_result, .on_error = rec_error, .user = &b};
    cr_assert_eq(COR_RUN_ASYNC(cor_thread_pool_executor(pool), &ao, blocker(&s, &a_out, &b_in)), 0);
    cr_assert(wait_flag(&a_out), "A went through the strand");
    cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), &bo, mark(&b_in, &s, NULL)), 0);
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(a.results, 1);
    cr_assert_eq(a.result, 1, "B entered the strand while A blocked its thread after the hop");
    cr_assert_eq(b.results, 1);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
}

/* ---- biased ownership (strand.h): one thread runs an idle strand without atomics ---- */

/* Whether this build biases strands (ThreadSanitizer builds never do: strand.c). */
static bool bias_built(void)
{
    return !COR__TSAN;
}

/* What cor_strand_dump says about s contains `what`. */
static bool dump_says(cor_strand *s, const char *what)
{
    char buf[4096] = {0};
    FILE *f = fmemopen(buf, sizeof buf - 1, "w");
    cr_assert_not_null(f);
    cr_assert_eq(cor_strand_dump(s, f), 0);
    fclose(f);
    return strstr(buf, what) != NULL;
}

/* A handle that tries to destroy its strand from inside (-EBUSY expected). */
struct destroyer {
    cor_frame hdr;
    cor_strand *s;
    int r;
};

static cor_handle destroyer_resume(cor_frame *h)
{
    struct destroyer *d = (struct destroyer *)h;
    d->r = cor_strand_destroy(d->s);
    return COR_NOOP;
}

Test(strand, a_thread_that_keeps_dispatching_runs_it_biased)
{
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_inline_executor()), 0);
    cr_assert(!dump_says(&s, "(biased)"), "a new strand is not biased");
    struct flag_frame f = {.hdr = {.resume = flag_resume}, .s = &s};
    cr_assert_eq(cor_executor_dispatch(cor_strand_executor(&s), &f.hdr), 0);
    cr_assert_eq(f.ran, 1);
    cr_assert_eq(dump_says(&s, "(biased)"), bias_built(),
                 "a testing build biases after one drain the owner started");
    cr_assert(dump_says(&s, "0 handles queued or running"));
    for (int i = 0; i < 100; i++) {
        f.inside = false;
        cr_assert_eq(cor_executor_dispatch(cor_strand_executor(&s), &f.hdr), 0);
        cr_assert(f.inside, "dispatch %d ran inside the strand", i);
        cr_assert(!cor_strand_running_in_this_thread(&s));
    }
    cr_assert_eq(f.ran, 101);
    cr_assert_eq(dump_says(&s, "(biased)"), bias_built());

    /* Running biased, the handle holds the strand: destroying it from there is refused. */
    struct destroyer d = {.hdr = {.resume = destroyer_resume}, .s = &s, .r = 1};
    cr_assert_eq(cor_executor_dispatch(cor_strand_executor(&s), &d.hdr), 0);
    cr_assert_eq(d.r, -EBUSY);
    cr_assert_eq(cor_strand_destroy(&s), 0, "an idle biased strand can be destroyed");

    /* Initialized again, it starts unbiased. */
    cr_assert_eq(cor_strand_init(&s, cor_inline_executor()), 0);
    cr_assert(!dump_says(&s, "(biased)"));
    cr_assert_eq(cor_strand_destroy(&s), 0);
}

/* Posts `then` to its strand from inside, and logs its own run. */
struct poster_frame {
    cor_frame hdr;
    cor_strand *s;
    struct flag_frame *then;
    int then_ran_inside; /* `then` had run when this handle ended: must stay 0 */
};

static cor_handle poster_resume(cor_frame *h)
{
    struct poster_frame *p = (struct poster_frame *)h;
    cor_executor_post(cor_strand_executor(p->s), &p->then->hdr);
    p->then_ran_inside = p->then->ran;
    return COR_NOOP;
}

Test(strand, a_post_from_a_biased_handle_runs_after_it_and_ends_the_bias)
{
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_inline_executor()), 0);
    struct flag_frame warm = {.hdr = {.resume = flag_resume}, .s = &s};
    cr_assert_eq(cor_executor_dispatch(cor_strand_executor(&s), &warm.hdr), 0);
    cr_assert_eq(dump_says(&s, "(biased)"), bias_built());

    struct flag_frame then = {.hdr = {.resume = flag_resume}, .s = &s};
    struct poster_frame p = {.hdr = {.resume = poster_resume}, .s = &s, .then = &then};
    cr_assert_eq(cor_executor_dispatch(cor_strand_executor(&s), &p.hdr), 0);
    cr_assert_eq(p.then_ran_inside, 0, "the posted handle did not run nested in its poster");
    cr_assert_eq(then.ran, 1, "it ran when the poster left the strand");
    cr_assert(then.inside);
    cr_assert(!dump_says(&s, "(biased)"), "the post ended the bias");
    cr_assert(dump_says(&s, "0 handles queued or running"));

    /* The owner's next dispatch to the idle strand biases it again. */
    cr_assert_eq(cor_executor_dispatch(cor_strand_executor(&s), &warm.hdr), 0);
    cr_assert_eq(warm.ran, 2);
    cr_assert_eq(dump_says(&s, "(biased)"), bias_built());
    cr_assert_eq(cor_strand_destroy(&s), 0);
}

/*
 * Two threads dispatching and posting through one strand over the inline
 * executor: the main thread owns it biased at the start, and in a testing
 * build every drain on it biases it again, so the strand changes hands
 * between biased and counted tens of thousands of times. No two handles
 * overlap, none is lost, each thread's handles run in its order.
 */
#define HANDOVER_ITEMS 100000

struct handover {
    cor_strand s;
    int in;                 /* atomic: a handle is running */
    long overlaps, counter; /* plain: the strand serializes them */
    long last[2];           /* per producer: sequence number of its last handle run */
    long out_of_order;
};

struct ho_item {
    cor_frame hdr;
    struct handover *h;
    int producer;
    long seq;
};

static cor_handle ho_resume(cor_frame *f)
{
    struct ho_item *it = (struct ho_item *)f;
    struct handover *h = it->h;
    if (__atomic_exchange_n(&h->in, 1, __ATOMIC_ACQ_REL))
        __atomic_add_fetch(&h->overlaps, 1, __ATOMIC_RELAXED);
    if (it->seq != h->last[it->producer] + 1)
        h->out_of_order++;
    h->last[it->producer] = it->seq;
    h->counter++;
    __atomic_store_n(&h->in, 0, __ATOMIC_RELEASE);
    return COR_NOOP;
}

struct ho_producer {
    struct handover *h;
    int id;
    struct ho_item *items;
    pthread_barrier_t *start;
};

static void *ho_produce(void *arg)
{
    struct ho_producer *p = arg;
    cor_executor ex = cor_strand_executor(&p->h->s);
    pthread_barrier_wait(p->start);
    for (long i = 0; i < HANDOVER_ITEMS; i++) {
        p->items[i] = (struct ho_item){{.resume = ho_resume}, p->h, p->id, i + 1};
        int r = i % 3 == 2 ? cor_executor_post(ex, &p->items[i].hdr)
                           : cor_executor_dispatch(ex, &p->items[i].hdr);
        if (r != 0)
            abort();
    }
    return NULL;
}

Test(strand, two_threads_hand_a_biased_strand_back_and_forth, .timeout = 120)
{
    static struct handover h;
    cr_assert_eq(cor_strand_init(&h.s, cor_inline_executor()), 0);
    struct ho_item warm = {{.resume = ho_resume}, &h, 0, 0};
    h.last[0] = -1;
    cr_assert_eq(cor_executor_dispatch(cor_strand_executor(&h.s), &warm.hdr), 0);
    cr_assert_eq(dump_says(&h.s, "(biased)"), bias_built());

    pthread_barrier_t start;
    cr_assert_eq(pthread_barrier_init(&start, NULL, 2), 0);
    struct ho_producer p[2];
    for (int i = 0; i < 2; i++) {
        p[i] = (struct ho_producer){&h, i, calloc(HANDOVER_ITEMS, sizeof(struct ho_item)), &start};
        cr_assert_not_null(p[i].items);
    }
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, ho_produce, &p[1]), 0);
    ho_produce(&p[0]);
    cr_assert_eq(pthread_join(t, NULL), 0);

    /* Every dispatch and post has returned: each handle has run (its drainer ran to idle). */
    cr_assert_eq(h.counter, 1 + 2 * HANDOVER_ITEMS);
    cr_assert_eq(h.overlaps, 0);
    cr_assert_eq(h.out_of_order, 0);
    cr_assert_eq(h.last[0], HANDOVER_ITEMS);
    cr_assert_eq(h.last[1], HANDOVER_ITEMS);
    cr_assert(dump_says(&h.s, "0 handles queued or running"));
    cr_assert_eq(cor_strand_destroy(&h.s), 0);
    for (int i = 0; i < 2; i++)
        free(p[i].items);
    pthread_barrier_destroy(&start);
}
