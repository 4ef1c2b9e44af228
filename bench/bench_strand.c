/*
 * bench_strand: strands and the thread pool.
 *
 *  strand.dispatch_uncontended  dispatch of a bare handle through a strand over the inline
 *                               executor, against a plain dispatch on the inline executor.
 *  strand.dispatch_io_context   the same from a handle running on an io_context, through a
 *                               strand over that io_context, against a plain dispatch on it.
 *
 * Both strand rows take turns with their baseline (bench_measure_paired): the
 * two go through the same indirect calls in cor_executor_dispatch, and a plain
 * dispatch measured before any other executor's has those call sites to itself
 * (one target each, the branch predictor's cheapest case: 3.6 ns here, against
 * 4.7-5.2 ns once a second executor has dispatched through them, as in any
 * program with a strand). Measured one after the other, the ratio depended on
 * which ran first and swung between runs.
 *  strand.post_2threads         two threads posting through one strand over a 1-worker pool,
 *                               against the same two threads posting to the pool directly.
 *  pool.post_external           one thread posting batches to a 2-worker pool, waiting for each
 *                               batch: the shared-queue pool against a per-worker-queue pool
 *                               with stealing (a prototype kept here only to measure the choice).
 *  pool.post_from_workers       tokens that re-post themselves from the workers, same two pools.
 *  hop.io_pool_io               a run() round trip from a coroutine on an io_context to a
 *                               1-worker pool and back, against two raw threads handing a
 *                               token back and forth through a futex (no spinning): the same
 *                               two cross-thread hand-offs per round trip. A same-executor
 *                               child await is measured beside it for scale.
 *  hop.manual_pool_manual       the same round trip from a manual executor.
 */
#include <linux/futex.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <coring/coring.h>

#include "harness.h"

/* ---- bare handles ---- */

struct bare {
    cor_frame hdr;
    long *count;
};

static cor_handle bare_resume(cor_frame *f)
{
    struct bare *b = (struct bare *)f;
    __atomic_store_n(b->count, *b->count + 1, __ATOMIC_RELEASE);
    return COR_NOOP;
}

static cor_handle bare_resume_atomic(cor_frame *f)
{
    __atomic_fetch_add(((struct bare *)f)->count, 1, __ATOMIC_RELEASE);
    return COR_NOOP;
}

/* ---- strand dispatch, uncontended ---- */

struct disp_ctx {
    cor_executor ex;
    struct bare b;
    long count;
};

static void dispatch_loop(void *arg, long iters)
{
    struct disp_ctx *d = arg;
    for (long i = 0; i < iters; i++)
        cor_executor_dispatch(d->ex, &d->b.hdr);
}

/*
 * The same loop run by a handle on an io_context's thread: a dispatch there
 * through a strand over that io_context, against a plain dispatch on it.
 */
struct io_disp_ctx {
    cor_frame runner; /* posted to io; runs the loop */
    struct disp_ctx d;
    cor_io_context *io;
    long iters;
};

static cor_handle io_disp_run(cor_frame *f)
{
    struct io_disp_ctx *c = (struct io_disp_ctx *)f;
    dispatch_loop(&c->d, c->iters);
    return COR_NOOP;
}

static void io_dispatch_loop(void *arg, long iters)
{
    struct io_disp_ctx *c = arg;
    c->iters = iters;
    c->runner = (cor_frame){.resume = io_disp_run};
    cor_executor_post(cor_io_context_executor(c->io), &c->runner);
    cor_io_context_run(c->io);
}

/* ---- two threads posting: through a strand, or straight to the pool ---- */

#define BATCH 256

struct poster {
    cor_executor ex;
    long iters;
    long count;
    struct bare frames[BATCH];
};

static void *post_batches(void *arg)
{
    struct poster *p = arg;
    for (long i = 0; i < p->iters; i += BATCH) {
        long n = p->iters - i < BATCH ? p->iters - i : BATCH;
        long target = __atomic_load_n(&p->count, __ATOMIC_ACQUIRE) + n;
        for (long j = 0; j < n; j++)
            cor_executor_post(p->ex, &p->frames[j].hdr);
        while (__atomic_load_n(&p->count, __ATOMIC_ACQUIRE) < target)
            sched_yield();
    }
    return NULL;
}

struct two_posters {
    struct poster p[2];
};

static void two_threads_post(void *arg, long iters)
{
    struct two_posters *t = arg;
    pthread_t th[2];
    for (int k = 0; k < 2; k++) {
        t->p[k].iters = iters / 2;
        pthread_create(&th[k], NULL, post_batches, &t->p[k]);
    }
    for (int k = 0; k < 2; k++)
        pthread_join(th[k], NULL);
}

static void two_posters_init(struct two_posters *t, cor_executor ex, bool atomic)
{
    for (int k = 0; k < 2; k++) {
        t->p[k].ex = ex;
        t->p[k].count = 0;
        for (int j = 0; j < BATCH; j++)
            t->p[k].frames[j] = (struct bare){{.resume = atomic ? bare_resume_atomic : bare_resume},
                                              &t->p[k].count};
    }
}

/* ---- the alternative pool design: per-worker queues with stealing ---- */

#define SP_MAX 8

struct sp_worker {
    pthread_mutex_t lock;
    cor_frame *head, *tail;
    pthread_t thread;
    struct steal_pool *pool;
    char pad[64];
};

struct steal_pool {
    unsigned n;
    struct sp_worker w[SP_MAX];
    pthread_mutex_t sleep_lock;
    pthread_cond_t sleep_cond;
    unsigned sleepers;
    unsigned rr;
    bool stop;
};

static __thread struct sp_worker *sp_self;

static void sp_push(struct sp_worker *w, cor_frame *h)
{
    h->next = NULL;
    pthread_mutex_lock(&w->lock);
    if (w->tail)
        w->tail->next = h;
    else
        w->head = h;
    w->tail = h;
    pthread_mutex_unlock(&w->lock);
}

static cor_frame *sp_pop(struct sp_worker *w)
{
    pthread_mutex_lock(&w->lock);
    cor_frame *h = w->head;
    if (h) {
        w->head = h->next;
        if (!w->head)
            w->tail = NULL;
    }
    pthread_mutex_unlock(&w->lock);
    return h;
}

static void sp_post(struct steal_pool *p, cor_frame *h)
{
    struct sp_worker *w = sp_self && sp_self->pool == p
                              ? sp_self
                              : &p->w[__atomic_fetch_add(&p->rr, 1, __ATOMIC_RELAXED) % p->n];
    sp_push(w, h);
    if (__atomic_load_n(&p->sleepers, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&p->sleep_lock);
        pthread_cond_signal(&p->sleep_cond);
        pthread_mutex_unlock(&p->sleep_lock);
    }
}

/* Own queue first, then steal from the others in turn. */
static cor_frame *sp_find(struct steal_pool *p, struct sp_worker *self)
{
    cor_frame *h = sp_pop(self);
    for (unsigned i = 1; !h && i < p->n; i++)
        h = sp_pop(&p->w[(unsigned)(self - p->w + i) % p->n]);
    return h;
}

static void *sp_main(void *arg)
{
    struct sp_worker *self = arg;
    struct steal_pool *p = self->pool;
    sp_self = self;
    for (;;) {
        cor_frame *h = sp_find(p, self);
        if (h) {
            cor_resume(h);
            continue;
        }
        pthread_mutex_lock(&p->sleep_lock);
        __atomic_fetch_add(&p->sleepers, 1, __ATOMIC_SEQ_CST);
        h = sp_find(p, self);
        if (!h && !p->stop)
            pthread_cond_wait(&p->sleep_cond, &p->sleep_lock);
        __atomic_fetch_sub(&p->sleepers, 1, __ATOMIC_SEQ_CST);
        bool stop = p->stop;
        pthread_mutex_unlock(&p->sleep_lock);
        if (h)
            cor_resume(h);
        else if (stop)
            return NULL;
    }
}

static void sp_start(struct steal_pool *p, unsigned n)
{
    p->n = n;
    p->sleepers = p->rr = 0;
    p->stop = false;
    pthread_mutex_init(&p->sleep_lock, NULL);
    pthread_cond_init(&p->sleep_cond, NULL);
    for (unsigned i = 0; i < n; i++) {
        p->w[i].head = p->w[i].tail = NULL;
        p->w[i].pool = p;
        pthread_mutex_init(&p->w[i].lock, NULL);
    }
    for (unsigned i = 0; i < n; i++)
        pthread_create(&p->w[i].thread, NULL, sp_main, &p->w[i]);
}

static void sp_stop(struct steal_pool *p)
{
    pthread_mutex_lock(&p->sleep_lock);
    p->stop = true;
    pthread_cond_broadcast(&p->sleep_cond);
    pthread_mutex_unlock(&p->sleep_lock);
    for (unsigned i = 0; i < p->n; i++)
        pthread_join(p->w[i].thread, NULL);
}

/* ---- pool benchmarks, run against either design ---- */

struct pool_target {
    cor_thread_pool *shared; /* NULL: use steal */
    struct steal_pool *steal;
};

static void target_post(struct pool_target *t, cor_frame *h)
{
    if (t->shared)
        cor_executor_post(cor_thread_pool_executor(t->shared), h);
    else
        sp_post(t->steal, h);
}

struct external_ctx {
    struct pool_target t;
    long count;
    struct bare frames[BATCH];
};

static void post_external(void *arg, long iters)
{
    struct external_ctx *c = arg;
    for (long i = 0; i < iters; i += BATCH) {
        long n = iters - i < BATCH ? iters - i : BATCH;
        long target = __atomic_load_n(&c->count, __ATOMIC_ACQUIRE) + n;
        for (long j = 0; j < n; j++)
            target_post(&c->t, &c->frames[j].hdr);
        while (__atomic_load_n(&c->count, __ATOMIC_ACQUIRE) < target)
            sched_yield();
    }
}

#define TOKENS 8

struct token {
    cor_frame hdr;
    struct workers_ctx *c;
};

struct workers_ctx {
    struct pool_target t;
    long budget; /* re-posts left */
    long done;   /* tokens that stopped */
    struct token tokens[TOKENS];
};

static cor_handle token_resume(cor_frame *f)
{
    struct token *tk = (struct token *)f;
    struct workers_ctx *c = tk->c;
    if (__atomic_sub_fetch(&c->budget, 1, __ATOMIC_RELAXED) >= 0)
        target_post(&c->t, f);
    else
        __atomic_fetch_add(&c->done, 1, __ATOMIC_RELEASE);
    return COR_NOOP;
}

static void post_from_workers(void *arg, long iters)
{
    struct workers_ctx *c = arg;
    __atomic_store_n(&c->budget, iters, __ATOMIC_RELAXED);
    __atomic_store_n(&c->done, 0, __ATOMIC_RELAXED);
    for (int i = 0; i < TOKENS; i++) {
        c->tokens[i] = (struct token){{.resume = token_resume}, c};
        target_post(&c->t, &c->tokens[i].hdr);
    }
    while (__atomic_load_n(&c->done, __ATOMIC_ACQUIRE) < TOKENS)
        sched_yield();
}

/* ---- two raw threads handing a token back and forth ---- */

struct handoff {
    uint32_t turn;       /* 0: the measuring thread's, 1: the peer's */
    uint32_t waiting[2]; /* the thread waiting for turn == i sleeps (spinning variant) */
    long iters;
    bool spin; /* spin up to 20 us (coring's bound) before sleeping */
};

static void relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#endif
}

/* Waits until turn holds v: in the kernel, after spinning first if asked. */
static void wait_for(struct handoff *h, uint32_t v)
{
    if (h->spin) {
        uint64_t end = bench_now_ns() + 20000;
        while (__atomic_load_n(&h->turn, __ATOMIC_ACQUIRE) != v && bench_now_ns() < end)
            relax();
    }
    uint32_t cur;
    while ((cur = __atomic_load_n(&h->turn, __ATOMIC_ACQUIRE)) != v) {
        __atomic_store_n(&h->waiting[v], 1, __ATOMIC_SEQ_CST);
        syscall(SYS_futex, &h->turn, FUTEX_WAIT_PRIVATE, cur, NULL, NULL, 0);
        __atomic_store_n(&h->waiting[v], 0, __ATOMIC_RELAXED);
    }
}

/* Stores v in turn and wakes a sleeper (without spinning: always). */
static void give(struct handoff *h, uint32_t v)
{
    __atomic_store_n(&h->turn, v, __ATOMIC_SEQ_CST);
    if (!h->spin || __atomic_load_n(&h->waiting[v], __ATOMIC_SEQ_CST))
        syscall(SYS_futex, &h->turn, FUTEX_WAKE_PRIVATE, 1, NULL, NULL, 0);
}

static void *handoff_peer(void *arg)
{
    struct handoff *h = arg;
    for (long i = 0; i < h->iters; i++) {
        wait_for(h, 1);
        give(h, 0);
    }
    return NULL;
}

/* iters round trips: the token goes to the peer and comes back. arg: non-NULL to spin. */
static void thread_handoff(void *arg, long iters)
{
    struct handoff h = {0, {0, 0}, iters, arg != NULL};
    pthread_t t;
    if (pthread_create(&t, NULL, handoff_peer, &h)) {
        fprintf(stderr, "bench_strand: cannot create a thread\n");
        exit(1);
    }
    for (long i = 0; i < iters; i++) {
        give(&h, 1);
        wait_for(&h, 0);
    }
    pthread_join(t, NULL);
}

/* ---- run() hop: manual executor -> pool -> back ---- */

struct child {
    COR_PROMISE(long);
    long x;
};
COR_DEFINE_STATIC(child, (long x), { self->x = x; })
{
    COR_BEGIN();
    COR_RETURN(self->x + 1);
}

struct hop_loop {
    COR_PROMISE(long);
    cor_executor away; /* {NULL, NULL}: await on the same executor */
    long i, n, acc;
};
COR_DEFINE_STATIC(hop_loop, (cor_executor away, long n), {
    self->away = away;
    self->n = n;
})
{
    COR_BEGIN();
    self->acc = 0;
    for (self->i = 0; self->i < self->n; self->i++) {
        if (self->away.ops)
            COR_AWAIT(self->acc, COR_RUN(child(self->acc), .ex = self->away));
        else
            COR_AWAIT(self->acc, child(self->acc));
    }
    COR_RETURN(self->acc);
}

struct hop_ctx {
    cor_executor home;
    long (*drive)(void *home_obj);
    void *home_obj;
    cor_executor away;
};

static void hop_round_trips(void *arg, long iters)
{
    struct hop_ctx *h = arg;
    COR_RUN_ASYNC(h->home, NULL, hop_loop(h->away, iters));
    h->drive(h->home_obj);
}

static long drive_manual(void *m)
{
    return cor_manual_run(m);
}

static long drive_io(void *io)
{
    return cor_io_context_run(io);
}

static cor_thread_pool *make_pool(unsigned n)
{
    cor_thread_pool *p;
    if (cor_thread_pool_create(&p, n)) {
        fprintf(stderr, "bench_strand: cannot create a thread pool\n");
        exit(1);
    }
    return p;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    long n = bench_iters(10 * 1000 * 1000);
    long nt = bench_iters(1000 * 1000);

    if (bench_enabled("strand.dispatch_uncontended")) {
        static struct disp_ctx plain, through;
        plain.ex = cor_inline_executor();
        plain.b = (struct bare){{.resume = bare_resume}, &plain.count};
        static cor_strand s;
        cor_strand_init(&s, cor_inline_executor());
        through.ex = cor_strand_executor(&s);
        through.b = (struct bare){{.resume = bare_resume}, &through.count};
        bench_result base, r;
        bench_measure_paired("baseline.dispatch_inline", dispatch_loop, &plain,
                             "strand.dispatch_uncontended", dispatch_loop, &through, n, &base, &r);
        bench_report(&base, NULL, NULL);
        bench_report(&r, &base, NULL);
        cor_strand_destroy(&s);
    }

    if (bench_enabled("strand.dispatch_io_context")) {
        cor_io_context *io = NULL;
        if (cor_io_context_create(&io, NULL) != 0) {
            fprintf(stderr, "bench_strand: no io_context on this kernel, "
                            "strand.dispatch_io_context skipped\n");
        } else {
            static struct io_disp_ctx plain, through;
            static cor_strand s;
            cor_strand_init(&s, cor_io_context_executor(io));
            plain.io = through.io = io;
            plain.d.ex = cor_io_context_executor(io);
            plain.d.b = (struct bare){{.resume = bare_resume}, &plain.d.count};
            through.d.ex = cor_strand_executor(&s);
            through.d.b = (struct bare){{.resume = bare_resume}, &through.d.count};
            bench_result base, r;
            bench_measure_paired("baseline.dispatch_io_context", io_dispatch_loop, &plain,
                                 "strand.dispatch_io_context", io_dispatch_loop, &through, n, &base,
                                 &r);
            bench_report(&base, NULL, NULL);
            bench_report(&r, &base, NULL);
            cor_strand_destroy(&s);
            cor_io_context_destroy(io);
        }
    }

    if (bench_enabled("strand.post_2threads")) {
        cor_thread_pool *pool = make_pool(1);
        static struct two_posters direct, through;
        static cor_strand s;
        cor_strand_init(&s, cor_thread_pool_executor(pool));
        two_posters_init(&direct, cor_thread_pool_executor(pool), false);
        two_posters_init(&through, cor_strand_executor(&s), false);
        bench_result base =
            bench_measure("baseline.pool_post_2threads", two_threads_post, &direct, nt);
        bench_report(&base, NULL, NULL);
        bench_result r = bench_measure("strand.post_2threads", two_threads_post, &through, nt);
        bench_report(&r, &base, NULL);
        cor_thread_pool_destroy(pool);
        cor_strand_destroy(&s);
    }

    if (bench_enabled("pool.post_external")) {
        static struct external_ctx shared, steal;
        static struct steal_pool sp;
        cor_thread_pool *pool = make_pool(2);
        sp_start(&sp, 2);
        shared.t = (struct pool_target){pool, NULL};
        steal.t = (struct pool_target){NULL, &sp};
        for (int j = 0; j < BATCH; j++) {
            shared.frames[j] = (struct bare){{.resume = bare_resume_atomic}, &shared.count};
            steal.frames[j] = (struct bare){{.resume = bare_resume_atomic}, &steal.count};
        }
        bench_result base =
            bench_measure("baseline.steal_pool_post_external", post_external, &steal, nt);
        bench_report(&base, NULL, NULL);
        bench_result r = bench_measure("pool.post_external", post_external, &shared, nt);
        bench_report(&r, &base, NULL);
        sp_stop(&sp);
        cor_thread_pool_destroy(pool);
    }

    if (bench_enabled("pool.post_from_workers")) {
        static struct workers_ctx shared, steal;
        static struct steal_pool sp;
        cor_thread_pool *pool = make_pool(2);
        sp_start(&sp, 2);
        shared.t = (struct pool_target){pool, NULL};
        steal.t = (struct pool_target){NULL, &sp};
        bench_result base =
            bench_measure("baseline.steal_pool_post_from_workers", post_from_workers, &steal, nt);
        bench_report(&base, NULL, NULL);
        bench_result r = bench_measure("pool.post_from_workers", post_from_workers, &shared, nt);
        bench_report(&r, &base, NULL);
        sp_stop(&sp);
        cor_thread_pool_destroy(pool);
    }

    bench_result handoff = {.ns_median = 0};
    if (bench_enabled("hop.")) {
        handoff = bench_measure("baseline.thread_handoff_futex", thread_handoff, NULL, nt / 20);
        bench_report(&handoff, NULL, NULL);
        /* For scale: the same with coring's bounded spin before each sleep. */
        bench_result spin =
            bench_measure("baseline.thread_handoff_spin_futex", thread_handoff, &handoff, nt / 20);
        bench_report(&spin, &handoff, NULL);
    }
    if (bench_enabled("hop.io_pool_io")) {
        cor_io_context *io;
        if (cor_io_context_create(&io, NULL)) {
            fprintf(stderr, "bench_strand: no io_context on this kernel, hop.io_pool_io skipped\n");
        } else {
            cor_thread_pool *pool = make_pool(1);
            struct hop_ctx same = {cor_io_context_executor(io), drive_io, io, COR_EXECUTOR_NULL};
            struct hop_ctx away = {cor_io_context_executor(io), drive_io, io,
                                   cor_thread_pool_executor(pool)};
            bench_result base = bench_measure("baseline.io_child_await", hop_round_trips, &same, n);
            bench_report(&base, NULL, NULL);
            bench_result r = bench_measure("hop.io_pool_io", hop_round_trips, &away, nt / 20);
            bench_report(&r, &handoff, NULL);
            cor_thread_pool_destroy(pool);
            cor_io_context_destroy(io);
        }
    }
    if (bench_enabled("hop.manual_pool_manual")) {
        cor_thread_pool *pool = make_pool(1);
        cor_manual *m;
        cor_manual_create(&m);
        struct hop_ctx same = {cor_manual_executor(m), drive_manual, m, COR_EXECUTOR_NULL};
        struct hop_ctx away = {cor_manual_executor(m), drive_manual, m,
                               cor_thread_pool_executor(pool)};
        bench_result base = bench_measure("baseline.child_await", hop_round_trips, &same, n);
        bench_report(&base, NULL, NULL);
        bench_result r = bench_measure("hop.manual_pool_manual", hop_round_trips, &away, nt / 20);
        bench_report(&r, &handoff, NULL);
        cor_thread_pool_destroy(pool);
        cor_manual_destroy(m);
    }
    return 0;
}
