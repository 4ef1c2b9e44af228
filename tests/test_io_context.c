/*
 * io_context: options, run loop semantics, posting (local and cross-thread),
 * wake-ups, tiny rings, io_group. IO_TEST bodies run on io_uring and epoll.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

#if defined(__SANITIZE_THREAD__)
#define UNDER_TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define UNDER_TSAN 1
#endif
#endif
#ifndef UNDER_TSAN
#define UNDER_TSAN 0
#endif

/* LeakSanitizer is told about frames a test abandons on purpose. */
#if defined(__SANITIZE_ADDRESS__)
#define UNDER_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define UNDER_ASAN 1
#endif
#endif
#ifdef UNDER_ASAN
#include <sanitizer/lsan_interface.h>
#define ABANDONED_BEGIN() __lsan_disable()
#define ABANDONED_END() __lsan_enable()
#else
#define ABANDONED_BEGIN() ((void)0)
#define ABANDONED_END() ((void)0)
#endif

static cor_io_context *make(int backend)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cr_assert_not_null(io);
    return io;
}

static void guard(cor_io_context *io, bool on)
{
    cor_executor ex = cor_io_context_executor(io);
    if (on)
        ex.ops->on_work_started(ex.obj);
    else
        ex.ops->on_work_finished(ex.obj);
}

/* ---- options and bad input ---- */

Test(io_context, create_rejects_bad_options)
{
    cor_io_context *io = NULL;
    cr_assert_eq(cor_io_context_create(NULL, NULL), -EINVAL);
    cor_io_context_options o = {.sq_entries = 1};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL);
    o = (cor_io_context_options){.sq_entries = COR_RING_SQ_MAX + 1};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL);
    o = (cor_io_context_options){.sq_entries = 64, .cq_entries = 32};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL, "a CQ smaller than the SQ");
    o = (cor_io_context_options){.cq_entries = COR_RING_CQ_MAX + 1};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL);
    o = (cor_io_context_options){.flags = 1u << 30};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL);
    o = (cor_io_context_options){.backend = 99};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL);
    o = (cor_io_context_options){.backend = COR_IO_BACKEND_EPOLL, .flags = COR_IO_SQPOLL};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL, "epoll has no SQ polling thread");
    o = (cor_io_context_options){.flags = COR_IO_SQPOLL | COR_IO_DEFER_TASKRUN};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL, "SQ polling excludes deferred work");
    o = (cor_io_context_options){.flags = COR_IO_MSG_RING};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL, "a feature bit, not an option");
    o = (cor_io_context_options){.reserved = {[5] = 1}};
    cr_assert_eq(cor_io_context_create(&io, &o), -EINVAL, "reserved fields are zero");
    cr_assert_null(io, "nothing was created");
}

IO_TEST(io_context, null_arguments_are_refused)
{
    cr_assert_eq(cor_io_context_run(NULL), -EINVAL);
    cr_assert_eq(cor_io_context_run_one(NULL), -EINVAL);
    cr_assert_eq(cor_io_context_poll(NULL), -EINVAL);
    cr_assert_eq(cor_io_context_poll_one(NULL), -EINVAL);
    cr_assert_eq(cor_io_context_run_for(NULL, 1), -EINVAL);
    cr_assert_eq(cor_io_context_stop(NULL), -EINVAL);
    cr_assert_eq(cor_io_context_restart(NULL), -EINVAL);
    cr_assert_not(cor_io_context_stopped(NULL));
    cr_assert_eq(cor_io_context_features(NULL), 0);
    cr_assert_null(cor_io_context_context(NULL));
    cr_assert_not(cor_executor_valid(cor_io_context_executor(NULL)));
    cor_io_context_destroy(NULL);
    cor_io_context *io = make(backend);
    cr_assert_eq(cor_io_context_run_for(io, -1), -EINVAL, "negative duration");
    cr_assert_eq(cor_executor_post(cor_io_context_executor(io), NULL), -EINVAL, "post of NULL");
    cr_assert_eq(cor_executor_dispatch(cor_io_context_executor(io), NULL), -EINVAL);
    cor_io_context_destroy(io);
}

/* Bits that only report what was found, never requested. */
#define FOUND_ONLY                                                                            \
    (COR_IO_MSG_RING | COR_IO_FALLBACK | COR_IO_RING_FD_REGISTERED | COR_IO_SEND_ZC |          \
     COR_IO_RECV_BUNDLE | COR_IO_BUF_INCREMENTAL | COR_IO_NO_SQARRAY | COR_IO_CQ_GROW)

/* Ring flags are io_uring's: epoll reports none (epoll_has_no_ring_flags below). */
Test(io_context, default_flags_and_the_query)
{
    cor_io_context *io = make(COR_IO_BACKEND_URING);
    unsigned req = cor_io_context_requested(io), got = cor_io_context_features(io);
    cr_assert(req & COR_IO_COOP_TASKRUN);
#if COR_RING_DEFER_TASKRUN
    cr_assert(req & COR_IO_SINGLE_ISSUER);
    cr_assert(req & COR_IO_DEFER_TASKRUN);
#endif
    cr_assert_eq(got & ~(req | FOUND_ONLY), 0, "in force only what was requested");
    if ((got & req) != req)
        cr_log_warn("kernel refused ring flags: requested %#x, in force %#x", req, got);
    cor_io_context_destroy(io);

    cor_io_context_options o = {.flags = COR_IO_NO_DEFAULT_FLAGS};
    cr_assert_eq(cor_io_context_create(&io, &o), 0);
    cr_assert_eq(cor_io_context_features(io) & ~FOUND_ONLY, 0, "plain ring on request");
    cor_io_context_destroy(io);
}

Test(io_context, epoll_has_no_ring_flags)
{
    cor_io_context *io = make(COR_IO_BACKEND_EPOLL);
    cr_assert_eq(cor_io_context_features(io), 0, "no ring flag is in force on epoll");
    cor_io_context_destroy(io);
    cor_io_context_options o = {.flags = COR_IO_WAKE_EVENTFD | COR_IO_NO_DEFAULT_FLAGS};
    io = io_test_create(COR_IO_BACKEND_EPOLL, &o);
    cr_assert_eq(cor_io_context_features(io), 0, "ring flags are accepted and ignored");
    cor_io_context_destroy(io);
}

/* ---- run loop semantics ---- */

struct nops {
    COR_PROMISE(int);
    int i, n, r, sum;
};
COR_DEFINE_STATIC(nops, (int n), { self->n = n; })
{
    COR_BEGIN();
    self->sum = 0;
    for (self->i = 0; self->i < self->n; self->i++) {
        COR_AWAIT(self->r, cor_nop());
        self->sum += self->r == 0;
    }
    COR_RETURN(self->sum);
}

static void store_int(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

/*
 * On 6.6+ the SQ has no index array whatever flags are asked for (coring maps
 * such a ring itself), and the ring works: nops through a testing build's
 * 8-entry SQ wrap it many times, with the default flags and without.
 */
Test(io_context, sq_without_index_array)
{
    cor_io_context_options plain = {.flags = COR_IO_NO_DEFAULT_FLAGS};
    cor_io_context_options *opts[] = {NULL, &plain};
    for (int i = 0; i < 2; i++) {
        cor_io_context *io = NULL;
        cr_assert_eq(cor_io_context_create(&io, opts[i]), 0);
        unsigned got = cor_io_context_features(io);
        if (kernel_at_least(6, 6))
            cr_assert(got & COR_IO_NO_SQARRAY, "NO_SQARRAY on 6.6+ (features %#x)", got);
        int sum = -1;
        cor_launch_options lo = {.on_result = store_int, .user = &sum};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, nops(1000)), 0);
        cr_assert_gt(cor_io_context_run(io), 0);
        cr_assert_eq(sum, 1000, "every nop completed with 0");
        cor_io_context_destroy(io);
    }
}

IO_TEST(io_context, run_returns_when_idle)
{
    cor_io_context *io = make(backend);
    cr_assert_eq(cor_io_context_run(io), 0, "nothing to do");
    cr_assert_eq(cor_io_context_poll(io), 0);
    int got = -1;
    cor_launch_options lo = {.on_result = store_int, .user = &got};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, nops(100)), 0);
    cr_assert_eq(got, -1, "launched from outside run: queued, not run inline");
    cr_assert_gt(cor_io_context_run(io), 0);
    cr_assert_eq(got, 100, "every nop completed with 0");
    cr_assert_eq(cor_io_context_run(io), 0, "idle again");
    cor_io_context_destroy(io);
}

struct bare {
    cor_frame hdr;
    long *log;
    long id;
    int *count;
};

static cor_handle bare_resume(cor_frame *f)
{
    struct bare *b = (struct bare *)f;
    b->log[(*b->count)++] = b->id;
    return COR_NOOP;
}

IO_TEST(io_context, poll_one_poll_run_one)
{
    cor_io_context *io = make(backend);
    cor_executor ex = cor_io_context_executor(io);
    long log[8];
    int count = 0;
    struct bare b[3];
    for (int i = 0; i < 3; i++) {
        b[i] = (struct bare){.hdr = {.resume = bare_resume}, .log = log, .id = i, .count = &count};
        cr_assert_eq(cor_executor_post(ex, &b[i].hdr), 0);
    }
    cr_assert_eq(cor_io_context_poll_one(io), 1);
    cr_assert_eq(count, 1);
    cr_assert_eq(cor_io_context_run_one(io), 1);
    cr_assert_eq(cor_io_context_poll(io), 1);
    cr_assert_eq(count, 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(log[i], i, "FIFO");
    cr_assert_eq(cor_io_context_poll_one(io), 0);
    cr_assert_eq(cor_io_context_run_one(io), 0, "no work: returns at once");
    cor_io_context_destroy(io);
}

struct spinner {
    COR_PROMISE(int);
    int *flag;
    long turns;
};
COR_DEFINE_STATIC(spinner, (int *flag), { self->flag = flag; })
{
    COR_BEGIN();
    self->turns = 0;
    while (!*self->flag) {
        COR_AWAIT_VOID(cor_yield());
        self->turns++;
    }
    COR_RETURN(0);
}

struct stopper {
    COR_PROMISE(int);
    cor_io_context *io;
};
COR_DEFINE_STATIC(stopper, (cor_io_context * io), { self->io = io; })
{
    COR_BEGIN();
    COR_AWAIT_VOID(cor_yield());
    COR_AWAIT_VOID(cor_yield());
    cor_io_context_stop(self->io);
    COR_RETURN(0);
}

IO_TEST(io_context, stop_and_restart)
{
    cor_io_context *io = make(backend);
    int flag = 0;
    cor_executor ex = cor_io_context_executor(io);
    cr_assert_eq(COR_RUN_ASYNC(ex, NULL, spinner(&flag)), 0);
    cr_assert_eq(COR_RUN_ASYNC(ex, NULL, stopper(io)), 0);
    cr_assert_geq(cor_io_context_run(io), 1, "returns once stopped, with work left");
    cr_assert(cor_io_context_stopped(io));
    cr_assert_eq(cor_io_context_run(io), -ECANCELED, "a stopped context does not run");
    cr_assert_eq(cor_io_context_poll(io), -ECANCELED);
    cr_assert_eq(cor_io_context_restart(io), 0);
    cr_assert_not(cor_io_context_stopped(io));
    flag = 1;
    cr_assert_geq(cor_io_context_run(io), 1);
    cr_assert_eq(cor_io_context_run(io), 0, "the spinner finished");
    cor_io_context_destroy(io);
}

IO_TEST(io_context, run_for_returns_after_the_duration)
{
    cor_io_context *io = make(backend);
    guard(io, true);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(cor_io_context_run_for(io, 20 * 1000 * 1000), 0);
    cr_assert_geq(cor_clock_now() - t0, 20 * 1000 * 1000, "waited the whole duration");
    guard(io, false);
    cr_assert_eq(cor_io_context_run_for(io, 1000LL * 1000 * 1000), 0, "no work: at once");
    /* A duration past the clock's range: until the work is done. */
    int got = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &got};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, nops(10)), 0);
    cr_assert_geq(cor_io_context_run_for(io, INT64_MAX), 1);
    cr_assert_eq(got, 10);
    cor_io_context_destroy(io);
}

struct runner {
    cor_io_context *io;
    long result;
    pthread_t thread;
};

static void *runner_main(void *arg)
{
    struct runner *r = arg;
    r->result = cor_io_context_run(r->io);
    return NULL;
}

static void runner_start(struct runner *r, cor_io_context *io)
{
    r->io = io;
    r->result = -1;
    cr_assert_eq(pthread_create(&r->thread, NULL, runner_main, r), 0);
}

static void runner_join(struct runner *r)
{
    cr_assert_eq(pthread_join(r->thread, NULL), 0);
}

struct flag_frame {
    cor_frame hdr;
    uint32_t *flag;
};

static cor_handle flag_resume(cor_frame *f)
{
    __atomic_store_n(((struct flag_frame *)f)->flag, 1, __ATOMIC_RELEASE);
    return COR_NOOP;
}

/* Starts a runner and returns once it is inside run (it ran a handle posted first). */
static void runner_start_inside(struct runner *r, cor_io_context *io)
{
    runner_start(r, io);
    uint32_t inside = 0;
    struct flag_frame ff = {.hdr = {.resume = flag_resume}, .flag = &inside};
    cor_executor_post(cor_io_context_executor(io), &ff.hdr);
    while (!__atomic_load_n(&inside, __ATOMIC_ACQUIRE))
        sched_yield();
}

IO_TEST(io_context, second_driver_is_refused)
{
    cor_io_context *io = make(backend);
    guard(io, true);
    struct runner r;
    runner_start_inside(&r, io);
    cr_assert_eq(cor_io_context_poll(io), -EBUSY);
    cr_assert_eq(cor_io_context_run(io), -EBUSY);
    cr_assert_eq(cor_io_context_restart(io), -EBUSY);
    cor_io_context_stop(io);
    runner_join(&r);
    cr_assert_geq(r.result, 0);
    if (cor_io_context_features(io) & COR_IO_SINGLE_ISSUER) {
        cor_io_context_restart(io);
        cr_assert_eq(cor_io_context_poll(io), -EPERM, "the ring is bound to its first driver");
    }
    guard(io, false);
    cor_io_context_destroy(io);
}

/* Reads one byte of fd: an operation that stays in flight until data comes. */
struct one_read {
    COR_PROMISE(int);
    int fd, r;
    char b;
};
COR_DEFINE_STATIC(one_read, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_read(self->fd, &self->b, 1, -1));
    COR_RETURN(self->r);
}

/*
 * The ring fd is registered by the thread that drives a SINGLE_ISSUER ring
 * (features say so). Context a, registered on a thread that is gone, is
 * torn down from main, where context b is registered too: the teardown
 * completes and b goes on working. a's read stays in flight (a pipe read is
 * not canceled by its submitter's exit), so its frame is abandoned, as
 * cor_io_context_destroy says of a teardown off the owner thread.
 */
Test(io_context, the_ring_fd_is_registered_by_its_driving_thread)
{
    cor_io_context *a = make(COR_IO_BACKEND_URING), *b = make(COR_IO_BACKEND_URING);
    if (!(cor_io_context_features(a) & COR_IO_SINGLE_ISSUER))
        cr_skip_test("no SINGLE_ISSUER ring here: the ring fd is not registered");
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    int pending = 1;
    cor_launch_options lo = {.on_result = store_int, .user = &pending};
    ABANDONED_BEGIN();
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(a), &lo, one_read(p[0])), 0);
    ABANDONED_END();
    struct runner r;
    runner_start(&r, a);
    usleep(20 * 1000); /* the read is in a's ring */
    cor_io_context_stop(a);
    runner_join(&r);
    cr_assert(cor_io_context_features(a) & COR_IO_RING_FD_REGISTERED);
    int sum = 0;
    cor_launch_options lb = {.on_result = store_int, .user = &sum};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(b), &lb, nops(8)), 0);
    cor_io_context_run(b);
    cr_assert_eq(sum, 8);
    cr_assert(cor_io_context_features(b) & COR_IO_RING_FD_REGISTERED);
    cor_io_context_destroy(a); /* from main, with a's read in flight */
    cr_assert_eq(pending, 1, "a's read never completed: it was torn down");
    sum = 0;
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(b), &lb, nops(8)), 0);
    cor_io_context_run(b);
    cr_assert_eq(sum, 8, "b is untouched");
    cor_io_context_destroy(b);
    close(p[0]);
    close(p[1]);
}

static void add_int(void *user, void *result)
{
    __atomic_fetch_add((int *)user, *(int *)result, __ATOMIC_RELAXED);
}

/* Awaits nops until *stop is set or its budget of n nops is spent; returns how many it did. */
struct nop_storm {
    COR_PROMISE(int);
    const int *stop;
    int i, n, r;
};
COR_DEFINE_STATIC(nop_storm, (const int *stop, int n), {
    self->stop = stop;
    self->n = n;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n && !__atomic_load_n(self->stop, __ATOMIC_RELAXED); self->i++)
        COR_AWAIT(self->r, cor_nop());
    COR_RETURN(self->i);
}

/* Sleeps ns, then sets *stop. */
struct storm_stopper {
    COR_PROMISE(int);
    int *stop;
    int r;
};
COR_DEFINE_STATIC(storm_stopper, (int *stop), { self->stop = stop; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(20 * 1000 * 1000));
    __atomic_store_n(self->stop, 1, __ATOMIC_RELAXED);
    COR_RETURN(0);
}

/*
 * Completions that keep coming (64 coroutines awaiting nops back to back,
 * more than the SQ holds, so each submission brings new completions) do not
 * keep the loop from its timers: a 20 ms sleep fires and stops the storm
 * long before the coroutines spend their budgets.
 */
IO_TEST(io_context, timers_fire_while_completions_keep_coming)
{
    enum { STORMS = 64, BUDGET = 200000 };
    cor_io_context *io = make(backend);
    int stop = 0, sum = 0, stopped = -1;
    cor_launch_options ls = {.on_result = add_int, .user = &sum};
    for (int i = 0; i < STORMS; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &ls, nop_storm(&stop, BUDGET)), 0);
    cor_launch_options lt = {.on_result = store_int, .user = &stopped};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lt, storm_stopper(&stop)), 0);
    cr_assert_geq(cor_io_context_run(io), 1);
    cr_assert_eq(stopped, 0, "the sleep fired");
    cr_assert_lt(sum, STORMS * BUDGET / 2, "the storm ran %d nops before the sleep stopped it", sum);
    cor_io_context_destroy(io);
}

static int warnings;

static void count_warnings(void *user, int level, const char *msg)
{
    (void)user;
    (void)msg;
    if (level == COR_LOG_WARNING)
        __atomic_fetch_add(&warnings, 1, __ATOMIC_RELAXED);
}

/*
 * Sleeps live in the front end, not the kernel: a context torn down from
 * another thread once its owner has exited ends them and destroys their
 * frames (nothing is abandoned, nothing logged).
 */
IO_TEST(io_context, a_teardown_off_the_owner_ends_its_sleeps)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_io_context *io = make(backend);
    cor_launch_options lo = {.alloc = &cr.base};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, nap(30LL * 1000 * 1000 * 1000)),
                     0);
    struct runner r;
    runner_start_inside(&r, io);
    cor_io_context_stop(io);
    runner_join(&r);
    warnings = 0;
    cr_assert_eq(cor_set_log_hook(count_warnings, NULL), 0);
    cor_io_context_destroy(io); /* from main, the owner gone */
    cor_set_log_hook(NULL, NULL);
    cr_assert_eq(warnings, 0, "nothing was abandoned");
    cr_assert_eq(cr.allocs, cr.frees, "every sleeping coroutine was destroyed");
}

/* ---- posting ---- */

struct local_order {
    COR_PROMISE(int);
    struct bare b[16];
    long log[16];
    int count, i;
};
COR_DEFINE_STATIC(local_order, (void), {})
{
    COR_BEGIN();
    self->count = 0;
    for (self->i = 0; self->i < 16; self->i++) {
        self->b[self->i] = (struct bare){
            .hdr = {.resume = bare_resume}, .log = self->log, .id = self->i, .count = &self->count};
        cor_executor_post(COR_THIS_EXECUTOR(), &self->b[self->i].hdr);
    }
    /* Posted handles run after this coroutine yields (post never runs inline). */
    if (self->count != 0)
        COR_RETURN(-1);
    COR_AWAIT_VOID(cor_yield());
    for (self->i = 0; self->i < 16; self->i++)
        if (self->log[self->i] != self->i)
            COR_RETURN(-2);
    COR_RETURN(self->count);
}

IO_TEST(io_context, local_posts_run_in_fifo_order)
{
    cor_io_context *io = make(backend);
    int got = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &got};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, local_order());
    cr_assert_gt(cor_io_context_run(io), 0);
    cr_assert_eq(got, 16);
    cor_io_context_destroy(io);
}

/* Cross-thread: producers post recycled frames; the consumer checks per-producer order. */
enum { PRODUCERS = 4, POOL = 1024 };

struct xframe {
    cor_frame hdr;
    struct xtest *t;
    int producer;
    long seq;
    uint32_t busy;
};

struct xtest {
    cor_io_context *io;
    long per_producer;
    long next[PRODUCERS]; /* consumer: next expected seq per producer */
    long total, errors;
    struct xframe *frames; /* PRODUCERS * POOL */
    int index[PRODUCERS];
};

static cor_handle xframe_resume(cor_frame *f)
{
    struct xframe *x = (struct xframe *)f;
    struct xtest *t = x->t;
    if (x->seq != t->next[x->producer])
        t->errors++;
    t->next[x->producer] = x->seq + 1;
    __atomic_store_n(&x->busy, 0, __ATOMIC_RELEASE);
    if (++t->total == PRODUCERS * t->per_producer)
        guard(t->io, false);
    return COR_NOOP;
}

struct producer_arg {
    struct xtest *t;
    int id;
};

static void *producer_main(void *arg)
{
    struct producer_arg *a = arg;
    struct xtest *t = a->t;
    cor_executor ex = cor_io_context_executor(t->io);
    for (long s = 0; s < t->per_producer; s++) {
        struct xframe *x = &t->frames[a->id * POOL + s % POOL];
        while (__atomic_load_n(&x->busy, __ATOMIC_ACQUIRE))
            sched_yield();
        x->seq = s;
        x->busy = 1;
        cor_executor_post(ex, &x->hdr);
    }
    return NULL;
}

static void cross_thread_posts(int backend, long per_producer, unsigned flags)
{
    struct xtest t = {.per_producer = per_producer};
    cor_io_context_options o = {.flags = flags};
    t.io = io_test_create(backend, &o);
    t.frames = calloc(PRODUCERS * POOL, sizeof *t.frames);
    for (int p = 0; p < PRODUCERS; p++)
        for (int i = 0; i < POOL; i++)
            t.frames[p * POOL + i] =
                (struct xframe){.hdr = {.resume = xframe_resume}, .t = &t, .producer = p};
    guard(t.io, true); /* released by the last handle */
    pthread_t th[PRODUCERS];
    struct producer_arg args[PRODUCERS];
    for (int p = 0; p < PRODUCERS; p++) {
        args[p] = (struct producer_arg){&t, p};
        cr_assert_eq(pthread_create(&th[p], NULL, producer_main, &args[p]), 0);
    }
    long n = cor_io_context_run(t.io);
    for (int p = 0; p < PRODUCERS; p++)
        pthread_join(th[p], NULL);
    cr_assert_eq(n, PRODUCERS * per_producer, "every handle resumed exactly once");
    cr_assert_eq(t.total, PRODUCERS * per_producer);
    cr_assert_eq(t.errors, 0, "FIFO per producer");
    for (int p = 0; p < PRODUCERS; p++)
        cr_assert_eq(t.next[p], per_producer);
    free(t.frames);
    cor_io_context_destroy(t.io);
}

IO_TEST_OPTS(io_context, cross_thread_posts_4x1m_exactly_once_fifo, .timeout = 120)
{
    cross_thread_posts(backend, UNDER_TSAN ? 100000 : 1000000, 0);
}

IO_TEST_OPTS(io_context, cross_thread_posts_eventfd_wakeups, .timeout = 120)
{
    cross_thread_posts(backend, UNDER_TSAN ? 20000 : 200000, COR_IO_WAKE_EVENTFD);
}

/* Wake-up of a sleeping owner: from a plain thread (eventfd) and from inside another ring
 * (MSG_RING). */
struct release_frame {
    cor_frame hdr;
    cor_io_context *io;
    int ran;
};

static cor_handle release_resume(cor_frame *f)
{
    struct release_frame *r = (struct release_frame *)f;
    r->ran++;
    guard(r->io, false);
    return COR_NOOP;
}

static void *late_poster(void *arg)
{
    struct release_frame *r = arg;
    usleep(30 * 1000); /* the owner is asleep in the kernel by now */
    cor_executor_post(cor_io_context_executor(r->io), &r->hdr);
    return NULL;
}

IO_TEST(io_context, sleeping_owner_is_woken_by_a_plain_thread)
{
    cor_io_context *io = make(backend);
    struct release_frame r = {.hdr = {.resume = release_resume}, .io = io};
    guard(io, true);
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, late_poster, &r), 0);
    cr_assert_eq(cor_io_context_run(io), 1);
    cr_assert_eq(r.ran, 1);
    pthread_join(th, NULL);
    cor_io_context_destroy(io);
}

struct ring_poster {
    COR_PROMISE(int);
    struct release_frame *r;
    int rc;
};
COR_DEFINE_STATIC(ring_poster, (struct release_frame * r), { self->r = r; })
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_sleep_for(30 * 1000 * 1000));
    /* Inside this context's run: on io_uring the wake-up goes by MSG_RING. */
    cor_executor_post(cor_io_context_executor(self->r->io), &self->r->hdr);
    COR_RETURN(0);
}

IO_TEST(io_context, sleeping_owner_is_woken_from_another_ring)
{
    cor_io_context *io = make(backend), *other = make(backend);
    struct release_frame r = {.hdr = {.resume = release_resume}, .io = io};
    guard(io, true);
    COR_RUN_ASYNC(cor_io_context_executor(other), NULL, ring_poster(&r));
    struct runner th;
    runner_start(&th, other);
    cr_assert_eq(cor_io_context_run(io), 1);
    cr_assert_eq(r.ran, 1);
    runner_join(&th);
    cr_assert_geq(th.result, 1);
    if (backend == COR_IO_BACKEND_URING)
        cr_assert(cor_io_context_features(io) & COR_IO_MSG_RING);
    cor_io_context_destroy(other);
    cor_io_context_destroy(io);
}

IO_TEST(io_context, stop_wakes_a_sleeping_owner)
{
    cor_io_context *io = make(backend);
    guard(io, true);
    struct runner r;
    /* Stopped before its run began, run would return -ECANCELED at once. */
    runner_start_inside(&r, io);
    usleep(20 * 1000);
    cr_assert_eq(cor_io_context_stop(io), 0);
    runner_join(&r);
    cr_assert_eq(r.result, 1, "the handle that showed the runner inside run");
    guard(io, false);
    cor_io_context_destroy(io);
}

IO_TEST(io_context, launch_from_another_thread_is_run)
{
    cor_io_context *io = make(backend);
    guard(io, true);
    struct runner r;
    runner_start(&r, io);
    usleep(10 * 1000);
    int got = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &got};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, nops(10)), 0);
    guard(io, false); /* run ends once the launch is done */
    runner_join(&r);
    cr_assert_geq(r.result, 1);
    cr_assert_eq(got, 10);
    cor_io_context_destroy(io);
}

/*
 * ---- tiny rings: SQ full, CQ overflow ----
 * On epoll there is no SQ and cq_entries is the epoll_wait batch: the same
 * bodies check that a tiny batch delivers every completion.
 */

IO_TEST(io_context, full_sq_is_flushed_not_dropped)
{
    cor_io_context_options o = {.sq_entries = 2, .cq_entries = 64};
    cor_io_context *io = io_test_create(backend, &o);
    int got[200];
    cor_launch_options lo[200];
    for (int i = 0; i < 200; i++) {
        got[i] = 0;
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &got[i]};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], nops(20)), 0);
    }
    cr_assert_gt(cor_io_context_run(io), 0);
    for (int i = 0; i < 200; i++)
        cr_assert_eq(got[i], 20, "task %d: every nop completed", i);
    cor_io_context_destroy(io);
}

/* Launches n tasks of k nops each on io (results in got[], options in lo[]), for a storm. */
static void launch_nop_storm(cor_io_context *io, int *got, cor_launch_options *lo, int n, int k)
{
    for (int i = 0; i < n; i++) {
        got[i] = 0;
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &got[i]};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], nops(k)), 0);
    }
}

IO_TEST(io_context, cq_overflow_loses_nothing)
{
    cor_io_context_options o = {.sq_entries = 4, .cq_entries = 4};
    cor_io_context *io = io_test_create(backend, &o);
    enum { N = 2000 };
    static int got[N];
    static cor_launch_options lo[N];
    /* One round submits them all: far more completions than the CQ holds. */
    launch_nop_storm(io, got, lo, N, 1);
    cr_assert_eq(cor_io_context_run(io), 2 * N, "N starts and N completions");
    for (int i = 0; i < N; i++)
        cr_assert_eq(got[i], 1, "nop %d completed once", i);
    cor_io_metrics m;
    cr_assert_eq(cor_io_context_metrics(io, &m), 0);
    if (backend == COR_IO_BACKEND_URING) {
        cr_assert_geq(m.cq_overflows, 1, "the tiny CQ overflowed");
        /* Where the CQ can grow (6.13+ with DEFER_TASKRUN), it doubled at least once. */
        if (kernel_at_least(6, 13) && (cor_io_context_features(io) & COR_IO_DEFER_TASKRUN))
            cr_assert(cor_io_context_features(io) & COR_IO_CQ_GROW, "features %#x",
                      cor_io_context_features(io));
        if (cor_io_context_features(io) & COR_IO_CQ_GROW) {
            cr_assert_geq(m.cq_grows, 1);
            cr_assert_gt(m.cq_entries, 4, "the CQ grew: %llu entries",
                         (unsigned long long)m.cq_entries);
        } else {
            cr_assert_eq(m.cq_grows, 0);
        }
    } else {
        cr_assert_eq(m.cq_entries, 0, "epoll has no CQ");
    }
    cor_io_context_destroy(io);
}

/*
 * The CQ grows while the storm lasts, not after it: one run of 3,000 tasks
 * of 3 nops each keeps the overflow list full from start to end, and the
 * CQ of 4 doubles again and again inside that run (it grew once, after the
 * run's last overflow, when growing waited for the list to empty).
 */
IO_TEST(io_context, the_cq_grows_during_a_storm)
{
    cor_io_context_options o = {.sq_entries = 4, .cq_entries = 4};
    cor_io_context *io = io_test_create(backend, &o);
    enum { N = 3000 };
    static int got[N];
    static cor_launch_options lo[N];
    launch_nop_storm(io, got, lo, N, 3);
    cr_assert_gt(cor_io_context_run(io), 0);
    for (int i = 0; i < N; i++)
        cr_assert_eq(got[i], 3, "task %d: every nop completed", i);
    /* The first run asked the kernel whether the CQ can grow. */
    if (!(cor_io_context_features(io) & COR_IO_CQ_GROW)) {
        cor_io_context_destroy(io);
        cr_skip_test("no CQ growth here (epoll, or a kernel before 6.13)");
    }
    cor_io_metrics m;
    cr_assert_eq(cor_io_context_metrics(io, &m), 0);
    cr_assert_geq(m.cq_grows, 3, "the CQ doubled %llu times in the run",
                  (unsigned long long)m.cq_grows);
    cr_assert_geq(m.cq_entries, 32, "%llu entries", (unsigned long long)m.cq_entries);
    cor_io_context_destroy(io);
}

/*
 * A CQ that grew keeps working: after the storm that made it grow, a
 * second one completes every nop too, and the CQ ends no bigger than
 * COR_RING_CQ_MAX whatever the load.
 */
IO_TEST(io_context, a_grown_cq_keeps_working)
{
    cor_io_context_options o = {.sq_entries = 4, .cq_entries = 4};
    cor_io_context *io = io_test_create(backend, &o);
    enum { N = 3000 };
    static int got[N];
    static cor_launch_options lo[N];
    for (int round = 0; round < 3; round++) {
        launch_nop_storm(io, got, lo, N, 3);
        cr_assert_gt(cor_io_context_run(io), 0);
        for (int i = 0; i < N; i++)
            cr_assert_eq(got[i], 3, "round %d, task %d: every nop completed", round, i);
    }
    cor_io_metrics m;
    cr_assert_eq(cor_io_context_metrics(io, &m), 0);
    cr_assert_leq(m.cq_entries, COR_RING_CQ_MAX);
    if (cor_io_context_features(io) & COR_IO_CQ_GROW)
        cr_assert_geq(m.cq_grows, 1);
    cor_io_context_destroy(io);
}

/* ---- io_group ---- */

struct on_thread {
    COR_PROMISE(int);
    cor_io_context *io;
    int r;
};
COR_DEFINE_STATIC(on_thread, (cor_io_context * io), { self->io = io; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_nop());
    COR_RETURN(cor_io_context_current() == self->io && self->r == 0 ? 1 : -1);
}

IO_TEST(io_group, start_post_join)
{
    cor_io_group *g;
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.context = &co};
    cr_assert_eq(cor_io_group_create(NULL, 2, &go), -EINVAL);
    cr_assert_eq(cor_io_group_create(&g, 2000, &go), -EINVAL);
    cr_assert_eq(cor_io_group_create(&g, 3, &go), 0);
    cr_assert_eq(cor_io_group_size(g), 3);
    cr_assert_null(cor_io_group_context(g, 3));
    int sum = 0;
    cor_launch_options lo = {.on_result = add_int, .user = &sum};
    for (unsigned i = 0; i < 3; i++)
        for (int k = 0; k < 10; k++)
            cr_assert_eq(COR_RUN_ASYNC(cor_io_group_executor(g, i), &lo,
                                       on_thread(cor_io_group_context(g, i))),
                         0);
    struct release_frame dummy = {.hdr = {.resume = release_resume}};
    cr_assert_eq(cor_io_group_post(g, 5, &dummy.hdr), -EINVAL);
    cr_assert_eq(cor_io_group_post(g, 0, NULL), -EINVAL);
    cr_assert_eq(cor_io_group_join(g), 0, "graceful: waits for the work");
    cr_assert_eq(sum, 30, "every task ran on its own context's thread");
    cr_assert_eq(cor_io_group_post(g, 0, &dummy.hdr), -ESHUTDOWN);
    cor_io_group_destroy(g);
}

struct long_sleep {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(long_sleep, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(60LL * 1000 * 1000 * 1000));
    COR_RETURN(self->r);
}

IO_TEST(io_group, stop_cancels_pending_work_and_frees_it)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_io_group *g;
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.no_pin = true, .context = &co};
    cr_assert_eq(cor_io_group_create(&g, 2, &go), 0);
    cor_launch_options lo = {.alloc = &cr.base};
    for (unsigned i = 0; i < 2; i++)
        for (int k = 0; k < 5; k++)
            cr_assert_eq(COR_RUN_ASYNC(cor_io_group_executor(g, i), &lo, long_sleep()), 0);
    usleep(20 * 1000);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(cor_io_group_stop(g), 0);
    cr_assert_lt(cor_clock_now() - t0, 10LL * 1000 * 1000 * 1000, "did not wait for the sleeps");
    cor_io_group_destroy(g);
    cr_assert_eq(cr.allocs, cr.frees, "every frame was destroyed");
    cr_assert_eq(cr.live_bytes, 0);
}

/* Awaits a child on member `other` of the group: a 50 ms sleep there, or a return at once. */
struct group_child {
    COR_PROMISE(int);
    int r;
    int64_t ns;
};
COR_DEFINE_STATIC(group_child, (int64_t ns), { self->ns = ns; })
{
    COR_BEGIN();
    if (self->ns)
        COR_AWAIT(self->r, cor_sleep_for(self->ns));
    COR_RETURN(7);
}

struct group_parent {
    COR_PROMISE(int);
    cor_io_group *g;
    unsigned other;
    int r;
    int64_t before, child_ns;
};
COR_DEFINE_STATIC(group_parent, (cor_io_group * g, unsigned other, int64_t before, int64_t child_ns),
                  {
                      self->g = g;
                      self->other = other;
                      self->before = before;
                      self->child_ns = child_ns;
                  })
{
    COR_BEGIN();
    if (self->before)
        COR_AWAIT(self->r, cor_sleep_for(self->before));
    COR_AWAIT(self->r,
              COR_RUN(group_child(self->child_ns), .ex = cor_io_group_executor(self->g, self->other)));
    COR_RETURN(self->r);
}

/*
 * join waits for the whole group: a coroutine on member 0 that hops to
 * member 1 only after member 1 ran out of work still finds it running.
 */
IO_TEST(io_group, join_waits_for_a_hop_into_a_member_that_was_idle)
{
    cor_io_group *g;
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.no_pin = true, .context = &co};
    cr_assert_eq(cor_io_group_create(&g, 2, &go), 0);
    int sum = 0;
    cor_launch_options lo = {.on_result = add_int, .user = &sum};
    for (int k = 0; k < 4; k++)
        cr_assert_eq(COR_RUN_ASYNC(cor_io_group_executor(g, 0), &lo,
                                   group_parent(g, 1, 50 * 1000 * 1000, 0)),
                     0);
    cr_assert_eq(cor_io_group_join(g), 0);
    cr_assert_eq(sum, 4 * 7, "every parent got its child's result before join returned");
    cor_io_group_destroy(g);
}

/*
 * Stopped while coroutines on each member await children sleeping on the
 * other: every frame is destroyed, and destroy frees no member while another
 * still has frames to destroy (the ASan build checks).
 */
IO_TEST(io_group, stop_with_awaits_across_members_frees_every_frame)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.no_pin = true, .context = &co};
    for (int round = 0; round < 20; round++) {
        cor_io_group *g;
        cr_assert_eq(cor_io_group_create(&g, 2, &go), 0);
        cor_launch_options lo = {.alloc = &cr.base};
        for (unsigned i = 0; i < 50; i++)
            cr_assert_eq(COR_RUN_ASYNC(cor_io_group_executor(g, i % 2), &lo,
                                       group_parent(g, (i + 1) % 2, 0, 20LL * 1000 * 1000 * 1000)),
                         0);
        if (round % 2)
            usleep(20 * 1000);
        cr_assert_eq(cor_io_group_stop(g), 0);
        cor_io_group_destroy(g);
    }
    cr_assert_eq(cr.allocs, cr.frees, "every frame was destroyed");
}

/* Reads what fd (a pipe) holds without blocking, into buf (NUL-terminated). */
static size_t drain_pipe(int fd, char *buf, size_t cap)
{
    size_t n = 0;
    ssize_t r;
    while (n + 1 < cap && (r = read(fd, buf + n, cap - 1 - n)) > 0)
        n += (size_t)r;
    buf[n] = '\0';
    return n;
}

IO_TEST(io_group, an_ordinary_stop_prints_nothing)
{
    /* stderr goes to a pipe while groups start and stop at once, often before their threads enter
     * run. */
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC | O_NONBLOCK), 0);
    fflush(stderr);
    int saved = dup(2);
    cr_assert_geq(saved, 0);
    dup2(p[1], 2);
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.no_pin = true, .context = &co};
    int rc = 0;
    for (int i = 0; i < 50 && !rc; i++) {
        cor_io_group *g;
        rc = cor_io_group_create(&g, 2, &go);
        if (!rc) {
            cor_io_group_stop(g);
            cor_io_group_destroy(g);
        }
    }
    fflush(stderr);
    dup2(saved, 2);
    close(saved);
    char out[512];
    size_t n = drain_pipe(p[0], out, sizeof out);
    close(p[0]);
    close(p[1]);
    cr_assert_eq(rc, 0);
    cr_assert_eq(n, 0, "stop printed: %s", out);
}
