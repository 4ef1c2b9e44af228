/*
 * Timers: sleep_for/sleep_until, ordering, many concurrent timers, the timer
 * object, deadlines, re-arming, and the timer wheel itself (src/wheel.c):
 * time order, never early, no wake-up before a node is due, a million nodes
 * scheduled and removed.
 */
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "io_internal.h"
#include "util.h"

#define MS (1000LL * 1000)

static cor_io_context *make(int backend)
{
    return io_test_create(backend, NULL);
}

static void store_int(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

/* ---- sleeps ---- */

struct order_log {
    int ids[16];
    int n;
};

struct sleeper {
    COR_PROMISE(int);
    int64_t ns;
    int id;
    struct order_log *log;
    int64_t t0;
    int r;
};
COR_DEFINE_STATIC(sleeper, (int64_t ns, int id, struct order_log *log), {
    self->ns = ns;
    self->id = id;
    self->log = log;
})
{
    COR_BEGIN();
    self->t0 = cor_clock_now();
    COR_AWAIT(self->r, cor_sleep_for(self->ns));
    if (self->r == 0 && cor_clock_now() - self->t0 < self->ns)
        COR_RETURN(-1000); /* woke early */
    if (self->log)
        self->log->ids[self->log->n++] = self->id;
    COR_RETURN(self->r);
}

IO_TEST(timer, sleeps_complete_in_deadline_order)
{
    cor_io_context *io = make(backend);
    struct order_log log = {.n = 0};
    int r[3] = {-1, -1, -1};
    cor_launch_options lo[3];
    const int64_t d[3] = {30 * MS, 10 * MS, 20 * MS};
    for (int i = 0; i < 3; i++) {
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &r[i]};
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], sleeper(d[i], i, &log));
    }
    cr_assert_geq(cor_io_context_run(io), 3);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r[i], 0, "sleep %d: 0 at expiry, not early", i);
    cr_assert_eq(log.n, 3);
    cr_assert_eq(log.ids[0], 1);
    cr_assert_eq(log.ids[1], 2);
    cr_assert_eq(log.ids[2], 0);
    cor_io_context_destroy(io);
}

struct until {
    COR_PROMISE(int);
    int64_t when;
    int r;
};
COR_DEFINE_STATIC(until, (int64_t when), { self->when = when; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_until(self->when));
    COR_RETURN(self->r);
}

IO_TEST(timer, bad_durations_and_past_deadlines)
{
    cor_io_context *io = make(backend);
    int r = 1;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sleeper(-5, 0, NULL));
    cor_io_context_run(io);
    cr_assert_eq(r, -EINVAL, "negative duration");
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, until(-1));
    cor_io_context_run(io);
    cr_assert_eq(r, -EINVAL, "negative time");
    r = 1;
    int64_t t0 = cor_clock_now();
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, until(t0 - 1000 * MS));
    cor_io_context_run(io);
    cr_assert_eq(r, 0, "a time in the past expires at once");
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sleeper(0, 0, NULL));
    cor_io_context_run(io);
    cr_assert_eq(r, 0, "zero duration");
    cor_io_context_destroy(io);
}

struct outside {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(outside, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(MS));
    COR_RETURN(self->r);
}

/* No io_context at all: the same on every backend. */
Test(timer, sleep_without_an_io_context_is_refused)
{
    int r = 1;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_inline_executor(), &lo, outside());
    cr_assert_eq(r, -EPERM);
}

IO_TEST_OPTS(timer, ten_thousand_concurrent_timers, .timeout = 60)
{
    cor_io_context *io = make(backend);
    enum { N = 10000 };
    static int r[N];
    static cor_launch_options lo[N];
    srand(7);
    for (int i = 0; i < N; i++) {
        r[i] = 1;
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &r[i]};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i],
                                   sleeper((1 + rand() % 50) * MS, i, NULL)),
                     0);
    }
    cr_assert_geq(cor_io_context_run(io), 2 * N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(r[i], 0, "timer %d expired once, not early", i);
    cor_io_context_destroy(io);
}

/* ---- the timer object ---- */

struct waiter {
    COR_PROMISE(int);
    cor_timer *t;
    int r;
};
COR_DEFINE_STATIC(waiter, (cor_timer * t), { self->t = t; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_timer_wait(self->t));
    COR_RETURN(self->r);
}

struct canceller {
    COR_PROMISE(int);
    cor_timer *t;
    int64_t after;
    int r;
};
COR_DEFINE_STATIC(canceller, (cor_timer * t, int64_t after), {
    self->t = t;
    self->after = after;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(self->after));
    COR_RETURN(cor_timer_cancel(self->t));
}

IO_TEST(timer, several_waiters_wake_at_the_expiry)
{
    cor_io_context *io = make(backend);
    cor_timer t;
    cr_assert_eq(cor_timer_init(&t, io), 0);
    cr_assert_eq(cor_timer_expiry(&t), INT64_MAX, "no expiry yet");
    cr_assert_eq(cor_timer_expires_after(&t, 20 * MS), 0, "nobody waited");
    int64_t t0 = cor_clock_now();
    int r[3];
    cor_launch_options lo[3];
    for (int i = 0; i < 3; i++) {
        r[i] = 1;
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &r[i]};
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], waiter(&t));
    }
    cor_io_context_run(io);
    cr_assert_geq(cor_clock_now() - t0, 20 * MS);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r[i], 0);
    cr_assert_eq(t.count, 0, "no waiter left");
    cor_io_context_destroy(io);
}

IO_TEST(timer, cancel_completes_every_waiter_with_ecanceled)
{
    cor_io_context *io = make(backend);
    cor_timer t;
    cor_timer_init(&t, io); /* no expiry: waits until canceled */
    int r[3], n = -1;
    cor_launch_options lo[3];
    for (int i = 0; i < 3; i++) {
        r[i] = 1;
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &r[i]};
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], waiter(&t));
    }
    cor_launch_options cl = {.on_result = store_int, .user = &n};
    COR_RUN_ASYNC(cor_io_context_executor(io), &cl, canceller(&t, 10 * MS));
    cor_io_context_run(io);
    cr_assert_eq(n, 3, "cancel reports how many it canceled");
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r[i], -ECANCELED);
    cr_assert_eq(cor_timer_cancel(&t), 0, "nobody left");
    cor_io_context_destroy(io);
}

struct resetter {
    COR_PROMISE(int);
    cor_timer *t;
    int r;
};
COR_DEFINE_STATIC(resetter, (cor_timer * t), { self->t = t; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(5 * MS));
    COR_RETURN(cor_timer_expires_after(self->t, 5 * MS));
}

IO_TEST(timer, new_expiry_cancels_current_waiters)
{
    cor_io_context *io = make(backend);
    cor_timer t;
    cor_timer_init(&t, io);
    cor_timer_expires_after(&t, 10 * 1000 * MS);
    int r = 1, n = -1;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    cor_launch_options rl = {.on_result = store_int, .user = &n};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, waiter(&t));
    COR_RUN_ASYNC(cor_io_context_executor(io), &rl, resetter(&t));
    cor_io_context_run(io);
    cr_assert_eq(n, 1);
    cr_assert_eq(r, -ECANCELED);
    /* The new expiry holds for later waiters. */
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, waiter(&t));
    cor_io_context_run(io);
    cr_assert_eq(r, 0);
    cor_io_context_destroy(io);
}

IO_TEST(timer, bad_input)
{
    cor_io_context *io = make(backend);
    cor_timer t;
    cr_assert_eq(cor_timer_init(NULL, io), -EINVAL);
    cr_assert_eq(cor_timer_init(&t, NULL), -EINVAL);
    cr_assert_eq(cor_timer_init(&t, io), 0);
    cr_assert_eq(cor_timer_expires_after(&t, -1), -EINVAL);
    cr_assert_eq(cor_timer_expires_at(&t, -1), -EINVAL);
    cr_assert_eq(cor_timer_expires_after(NULL, 1), -EINVAL);
    cr_assert_eq(cor_timer_cancel(NULL), -EINVAL);
    cr_assert_eq(cor_timer_expiry(NULL), -EINVAL);
    int r = 1;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, waiter(NULL));
    cor_io_context_run(io);
    cr_assert_eq(r, -EINVAL, "waiting on NULL");
    /* A timer of another context. */
    cor_io_context *other = make(backend);
    cor_timer ot;
    cor_timer_init(&ot, other);
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, waiter(&ot));
    cor_io_context_run(io);
    cr_assert_eq(r, -EPERM);
    cor_io_context_destroy(other);
    cor_io_context_destroy(io);
}

/* ---- deadlines (nodes of the timer wheel) ---- */

struct deadline_read {
    COR_PROMISE(int);
    int fd;
    int64_t ns;
    char buf[4];
    int r;
};
COR_DEFINE_STATIC(deadline_read, (int fd, int64_t ns), {
    self->fd = fd;
    self->ns = ns;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(pipe_read(self->fd, self->buf), self->ns));
    COR_RETURN(self->r);
}

struct deadline_nop {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(deadline_nop, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_nop(), 1000 * MS));
    COR_RETURN(self->r);
}

struct deadline_sleep {
    COR_PROMISE(int);
    int64_t sleep, deadline;
    int r;
};
COR_DEFINE_STATIC(deadline_sleep, (int64_t sleep, int64_t deadline), {
    self->sleep = sleep;
    self->deadline = deadline;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_sleep_for(self->sleep), self->deadline));
    COR_RETURN(self->r);
}

IO_TEST(timer, deadline_expires_a_long_operation_with_etime)
{
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    int r = 1;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    int64_t t0 = cor_clock_now();
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, deadline_read(p[0], 15 * MS));
    cor_io_context_run(io);
    cr_assert_eq(r, -ETIME);
    cr_assert_geq(cor_clock_now() - t0, 15 * MS);

    r = 1;
    cr_assert_eq(write(p[1], "x", 1), 1);
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, deadline_read(p[0], 1000 * MS));
    cor_io_context_run(io);
    cr_assert_eq(r, 1, "completed before the deadline: its own result");

    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, deadline_read(p[0], -1));
    cor_io_context_run(io);
    cr_assert_eq(r, -EINVAL, "negative deadline");
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

/* A nop, then a read of fd with a deadline ns after its start (*started set in between). */
struct nop_then_read {
    COR_PROMISE(int);
    int fd;
    int64_t ns;
    bool *started;
    char buf[4];
    int r;
};
COR_DEFINE_STATIC(nop_then_read, (int fd, int64_t ns, bool *started), {
    self->fd = fd;
    self->ns = ns;
    self->started = started;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_nop());
    *self->started = true;
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(pipe_read(self->fd, self->buf), self->ns));
    COR_RETURN(self->r);
}

/*
 * A deadline given as a delay waits for the run loop's next pass to be
 * placed, or for the run to return: a read started by the last handler of a
 * run (the nop's completion) counts from that run's return, not from
 * whenever the context is run next. 120 ms later its 50 ms have passed: it
 * fires at once.
 */
IO_TEST(timer, a_delay_deadline_counts_from_the_run_that_started_it)
{
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    int r = 1;
    bool started = false;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, nop_then_read(p[0], 50 * MS, &started));
    for (int i = 0; i < 100 && !started; i++)
        cr_assert_geq(cor_io_context_run_one(io), 0);
    cr_assert(started);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(r, 1, "still waiting");
    cr_assert(!io->wheel.after, "placed as the run returned");
    while (cor_clock_now() - t0 < 120 * MS)
        usleep(10 * 1000);
    int64_t t1 = cor_clock_now();
    cor_io_context_run(io);
    cr_assert_eq(r, -ETIME);
    cr_assert_lt(cor_clock_now() - t1, 40 * MS, "fired at once, not 50 ms after this run began");
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

IO_TEST(timer, deadline_on_nop_and_on_sleeps)
{
    cor_io_context *io = make(backend);
    int r = 1;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, deadline_nop());
    cor_io_context_run(io);
    cr_assert_eq(r, 0);
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, deadline_sleep(1000 * MS, 10 * MS));
    cor_io_context_run(io);
    cr_assert_eq(r, -ETIME, "the deadline came first");
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, deadline_sleep(5 * MS, 1000 * MS));
    cor_io_context_run(io);
    cr_assert_eq(r, 0, "the sleep came first");
    cr_assert_eq(cor_io_op_deadline_at(NULL, 1), -EINVAL);
    cor_io_context_destroy(io);
}

/* A nop with a deadline ns after its start, made before a sleep of sleep_ns and awaited after. */
struct later_nop {
    COR_PROMISE(int);
    int64_t ns, sleep_ns;
    struct cor_io_await *op;
    int r;
};
COR_DEFINE_STATIC(later_nop, (int64_t ns, int64_t sleep_ns), {
    self->ns = ns;
    self->sleep_ns = sleep_ns;
})
{
    COR_BEGIN();
    self->op = cor_nop();
    if (!self->op || cor_io_op_deadline_after(&self->op->op, self->ns))
        COR_RETURN(-1000);
    COR_AWAIT(self->r, cor_sleep_for(self->sleep_ns));
    COR_AWAIT(self->r, self->op);
    COR_RETURN(self->r);
}

struct far_nop {
    COR_PROMISE(int);
    int64_t ns;
    int r;
};
COR_DEFINE_STATIC(far_nop, (int64_t ns), { self->ns = ns; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_nop(), self->ns));
    COR_RETURN(self->r);
}

struct plain_nop {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(plain_nop, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_nop());
    COR_RETURN(self->r);
}

IO_TEST(timer, a_relative_deadline_counts_from_the_start_and_never_overflows)
{
    cor_io_context *io = make(backend);
    int r = 1;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, later_nop(20 * MS, 50 * MS));
    cor_io_context_run(io);
    cr_assert_eq(r, 0, "20 ms after the start, not after the call 50 ms before it");
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, later_nop(0, 0));
    cor_io_context_run(io);
    cr_assert_eq(r, -ETIME, "0 ns after the start is already past");
    int64_t far[] = {INT64_MAX, INT64_MAX - 1, INT64_MAX - cor_clock_now() + 1};
    for (int i = 0; i < 3; i++) {
        r = 1;
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo, far_nop(far[i]));
        cor_io_context_run(io);
        cr_assert_eq(r, 0, "a deadline beyond the clock's range never comes (%d: %d)", i, r);
    }
    /* An operation time limit that far, too. */
    cor_stop_source src;
    cor_stop_source_init(&src);
    cr_assert_eq(cor_stop_source_set_op_timeout(&src, INT64_MAX), 0);
    cor_launch_options limited = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &limited, later_nop(INT64_MAX, 0));
    cor_io_context_run(io);
    cr_assert_eq(r, 0);
    r = 1;
    COR_RUN_ASYNC(cor_io_context_executor(io), &limited, plain_nop());
    cor_io_context_run(io);
    cr_assert_eq(r, 0, "the limit beyond the clock's range never comes");
    cr_assert_eq(io->wheel.count, 0);
    cor_io_context_destroy(io);
}

/* ---- ordering ---- */

struct logged_sleep {
    COR_PROMISE(int);
    int64_t when;
    int64_t *log;
    int *n;
    int r;
};
COR_DEFINE_STATIC(logged_sleep, (int64_t when, int64_t *log, int *n), {
    self->when = when;
    self->log = log;
    self->n = n;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_until(self->when));
    if (self->r == 0 && cor_clock_now() < self->when)
        COR_RETURN(-1000); /* woke early */
    self->log[(*self->n)++] = self->when;
    COR_RETURN(self->r);
}

/* Keeps the thread busy until the clock reaches until: whatever is due meanwhile is due together.
 */
struct hog {
    COR_PROMISE(int);
    int64_t until;
};
COR_DEFINE_STATIC(hog, (int64_t until), { self->until = until; })
{
    COR_BEGIN();
    while (cor_clock_now() < self->until)
        ;
    COR_RETURN(0);
}

IO_TEST(timer, sleeps_due_together_complete_in_time_order)
{
    cor_io_context *io = make(backend);
    enum { N = 1000 };
    static int64_t log[N];
    static int r[N];
    static cor_launch_options lo[N];
    int n = 0;
    srand(11);
    int64_t base = cor_clock_now() + 2 * MS;
    for (int i = 0; i < N; i++) {
        r[i] = 1;
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &r[i]};
        /* Spread over 3 ms, a few microseconds apart: several wheel slots and levels. */
        int64_t when = base + (int64_t)(rand() % (3 * MS));
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], logged_sleep(when, log, &n));
    }
    COR_RUN_ASYNC(cor_io_context_executor(io), NULL, hog(base + 6 * MS));
    cor_io_context_run(io);
    cr_assert_eq(n, N);
    for (int i = 0; i < N; i++)
        cr_assert_eq(r[i], 0, "sleep %d: 0, not early", i);
    for (int i = 1; i < N; i++)
        cr_assert_leq(log[i - 1], log[i], "completion %d is earlier than the one before it", i);
    cor_io_context_destroy(io);
}

/* ---- re-arming ---- */

struct timed_wait {
    COR_PROMISE(int);
    cor_timer *t;
    int64_t *woke;
    int r;
};
COR_DEFINE_STATIC(timed_wait, (cor_timer * t, int64_t *woke), {
    self->t = t;
    self->woke = woke;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_timer_wait(self->t));
    *self->woke = cor_clock_now();
    COR_RETURN(self->r);
}

IO_TEST(timer, rearming_without_waiters_moves_the_expiry_either_way)
{
    cor_io_context *io = make(backend);
    cor_timer t;
    cor_timer_init(&t, io);
    int r = 1;
    int64_t woke = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};

    /* Earlier: the wait ends at the new expiry, long before the old one. */
    cr_assert_eq(cor_timer_expires_after(&t, 10 * 1000 * MS), 0);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(cor_timer_expires_after(&t, 10 * MS), 0, "nobody waits: nothing canceled");
    int64_t at = cor_timer_expiry(&t);
    cr_assert_geq(at, t0 + 10 * MS);
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, timed_wait(&t, &woke));
    cor_io_context_run(io);
    cr_assert_eq(r, 0);
    cr_assert_geq(woke, at, "not before the new expiry");
    cr_assert_lt(woke, t0 + 10 * 1000 * MS, "the old expiry is gone");

    /* Later: the wait does not end at the old expiry. */
    r = 1;
    cr_assert_eq(cor_timer_expires_after(&t, 5 * MS), 0);
    cr_assert_eq(cor_timer_expires_after(&t, 40 * MS), 0);
    at = cor_timer_expiry(&t);
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, timed_wait(&t, &woke));
    cor_io_context_run(io);
    cr_assert_eq(r, 0);
    cr_assert_geq(woke, at);
    cor_io_context_destroy(io);
}

/* Waits on t again and again while its waits are canceled by re-arms; returns how many were. */
struct rearmed_waiter {
    COR_PROMISE(int);
    cor_timer *t;
    int n, r;
};
COR_DEFINE_STATIC(rearmed_waiter, (cor_timer * t), {
    self->t = t;
    self->n = 0;
})
{
    COR_BEGIN();
    for (;;) {
        COR_AWAIT(self->r, cor_timer_wait(self->t));
        if (self->r != -ECANCELED)
            break;
        self->n++;
    }
    COR_RETURN(self->r == 0 ? self->n : self->r);
}

/* Re-arms t n times, each once its waiter waits again; checks the wheel keeps one node. */
struct rearmer {
    COR_PROMISE(int);
    cor_timer *t;
    int i, n, bad;
};
COR_DEFINE_STATIC(rearmer, (cor_timer * t, int n), {
    self->t = t;
    self->n = n;
    self->bad = 0;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        while (self->t->count == 0)
            COR_AWAIT_VOID(cor_yield());
        if (cor_timer_expires_after(self->t, 60 * 1000 * MS) != 1)
            self->bad++; /* one waiter canceled, no more, no less */
        if (self->t->io->wheel.count > 1)
            self->bad++; /* the canceled wait left the wheel at once */
    }
    while (self->t->count == 0)
        COR_AWAIT_VOID(cor_yield());
    cor_timer_expires_after(self->t, MS);
    COR_RETURN(self->bad);
}

IO_TEST(timer, rearming_with_a_waiter_cancels_its_wait_and_keeps_one_node)
{
    cor_io_context *io = make(backend);
    cor_timer t;
    cor_timer_init(&t, io);
    cor_timer_expires_after(&t, 60 * 1000 * MS);
    enum { N = 100000 };
    int waited = -1, bad = -1;
    cor_launch_options wl = {.on_result = store_int, .user = &waited};
    cor_launch_options rl = {.on_result = store_int, .user = &bad};
    COR_RUN_ASYNC(cor_io_context_executor(io), &wl, rearmed_waiter(&t));
    COR_RUN_ASYNC(cor_io_context_executor(io), &rl, rearmer(&t, N));
    cor_io_context_run(io);
    cr_assert_eq(bad, 0, "every re-arm canceled exactly the one wait, and the wheel kept one node");
    cr_assert_eq(waited, N + 1, "N canceled waits, then the last expiry: %d", waited);
    cr_assert_eq(io->wheel.count, 0);
    cor_io_context_destroy(io);
}

/* Gives a not yet awaited op two deadlines, one after the other. */
static struct cor_io_await *two_deadlines(struct cor_io_await *a, int64_t first, int64_t second)
{
    if (a) {
        cr_assert_eq(cor_io_op_deadline_after(&a->op, first), 0);
        cr_assert_eq(cor_io_op_deadline_after(&a->op, second), 0);
    }
    return a;
}

struct read_two_deadlines {
    COR_PROMISE(int);
    int fd;
    int64_t first, second;
    char buf[4];
    int r;
};
COR_DEFINE_STATIC(read_two_deadlines, (int fd, int64_t first, int64_t second), {
    self->fd = fd;
    self->first = first;
    self->second = second;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, two_deadlines(pipe_read(self->fd, self->buf), self->first, self->second));
    COR_RETURN(self->r);
}

struct late_write {
    COR_PROMISE(int);
    int fd;
    int64_t after;
    int r;
};
COR_DEFINE_STATIC(late_write, (int fd, int64_t after), {
    self->fd = fd;
    self->after = after;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(self->after));
    COR_RETURN((int)write(self->fd, "x", 1));
}

IO_TEST(timer, a_second_deadline_replaces_the_first)
{
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    int r = 1;
    cor_launch_options lo = {.on_result = store_int, .user = &r};

    /* Pushed back: the first (10 ms) would have fired before the data (30 ms). */
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, read_two_deadlines(p[0], 10 * MS, 5000 * MS));
    COR_RUN_ASYNC(cor_io_context_executor(io), NULL, late_write(p[1], 30 * MS));
    cor_io_context_run(io);
    cr_assert_eq(r, 1, "the later deadline holds: the read completed");

    /* Brought forward: the first (5 s) is gone. */
    r = 1;
    int64_t t0 = cor_clock_now();
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, read_two_deadlines(p[0], 5000 * MS, 10 * MS));
    cor_io_context_run(io);
    cr_assert_eq(r, -ETIME);
    cr_assert_geq(cor_clock_now() - t0, 10 * MS);
    cr_assert_lt(cor_clock_now() - t0, 5000 * MS);
    cr_assert_eq(io->wheel.count, 0);
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

/* Reads one byte at a time, each read with an idle deadline; returns the bytes read before -ETIME.
 */
struct idle_reader {
    COR_PROMISE(int);
    int fd, n;
    int64_t idle, *last;
    char buf[4];
    int r;
};
COR_DEFINE_STATIC(idle_reader, (int fd, int64_t idle, int64_t *last), {
    self->fd = fd;
    self->idle = idle;
    self->last = last;
    self->n = 0;
})
{
    COR_BEGIN();
    for (;;) {
        COR_AWAIT(self->r, COR_DEADLINE_AFTER(pipe_read(self->fd, self->buf), self->idle));
        if (self->r != 1)
            break;
        self->n++;
        *self->last = cor_clock_now();
    }
    COR_RETURN(self->r == -ETIME ? self->n : self->r);
}

/* Writes n bytes, one every gap ns. */
struct trickle {
    COR_PROMISE(int);
    int fd, i, n;
    int64_t gap;
    int r;
};
COR_DEFINE_STATIC(trickle, (int fd, int n, int64_t gap), {
    self->fd = fd;
    self->n = n;
    self->gap = gap;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        COR_AWAIT(self->r, cor_sleep_for(self->gap));
        if (write(self->fd, "x", 1) != 1)
            COR_RETURN(-1);
    }
    COR_RETURN(0);
}

IO_TEST(timer, an_idle_deadline_rearmed_per_read_fires_only_after_silence)
{
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    enum { BYTES = 15 };
    const int64_t idle = 200 * MS, gap = 20 * MS; /* traffic lasts 300 ms, longer than idle */
    int n = -1;
    int64_t last = 0, t0 = cor_clock_now();
    cor_launch_options lo = {.on_result = store_int, .user = &n};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, idle_reader(p[0], idle, &last));
    COR_RUN_ASYNC(cor_io_context_executor(io), NULL, trickle(p[1], BYTES, gap));
    cor_io_context_run(io);
    int64_t end = cor_clock_now();
    cr_assert_eq(n, BYTES, "every byte read before the idle deadline fired: %d", n);
    cr_assert_geq(last - t0, BYTES * gap, "the traffic outlasted one idle period");
    cr_assert_geq(end - last, idle, "the deadline fired an idle period after the last byte");
    cr_assert_eq(io->wheel.count, 0);
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

/* ---- durations up to INT64_MAX ---- */

struct stopper {
    COR_PROMISE(int);
    cor_stop_source *src;
    int r;
};
COR_DEFINE_STATIC(stopper, (cor_stop_source * src), { self->src = src; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(10 * MS));
    COR_RETURN(cor_stop_source_request(self->src));
}

IO_TEST(timer, the_longest_durations_wait_until_stopped)
{
    cor_io_context *io = make(backend);
    cor_stop_source src;
    cor_stop_source_init(&src);
    int r = 1, t = 1;
    cor_launch_options lo = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    cor_launch_options to = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &t};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sleeper(INT64_MAX, 0, NULL));
    cor_timer tm;
    cor_timer_init(&tm, io);
    cr_assert_eq(cor_timer_expires_after(&tm, INT64_MAX), 0);
    cr_assert_eq(cor_timer_expiry(&tm), INT64_MAX, "beyond the clock's range: no expiry");
    COR_RUN_ASYNC(cor_io_context_executor(io), &to, waiter(&tm));
    COR_RUN_ASYNC(cor_io_context_executor(io), NULL, stopper(&src));
    cor_io_context_run(io);
    cr_assert_eq(r, -ECANCELED);
    cr_assert_eq(t, -ECANCELED);
    cr_assert_eq(io->wheel.count, 0);
    cor_io_context_destroy(io);
}

/* ---- a million timers ---- */

enum { M_WAITERS = 10000, M_ROUNDS = 100 };

struct m_waiter {
    COR_PROMISE(int);
    cor_timer *t;
    long *canceled, *expired;
    int i, r;
};
COR_DEFINE_STATIC(m_waiter, (cor_timer * t, long *canceled, long *expired), {
    self->t = t;
    self->canceled = canceled;
    self->expired = expired;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < M_ROUNDS; self->i++) {
        COR_AWAIT(self->r, cor_timer_wait(self->t));
        if (self->r == -ECANCELED)
            ++*self->canceled;
        else
            ++*self->expired;
    }
    COR_RETURN(0);
}

/* Each round: once every waiter waits, cancels them all; returns the rounds that did not. */
struct m_canceler {
    COR_PROMISE(int);
    cor_timer *t;
    int i, bad;
};
COR_DEFINE_STATIC(m_canceler, (cor_timer * t), {
    self->t = t;
    self->bad = 0;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < M_ROUNDS; self->i++) {
        while (self->t->count < M_WAITERS)
            COR_AWAIT_VOID(cor_yield());
        if ((size_t)self->t->io->wheel.count != M_WAITERS)
            self->bad++;
        if (cor_timer_cancel(self->t) != M_WAITERS)
            self->bad++;
    }
    COR_RETURN(self->bad);
}

IO_TEST_OPTS(timer, a_million_timer_waits_canceled_without_firing_return_their_memory,
             .timeout = 300)
{
    cor_io_context *io = make(backend);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_timer t;
    cor_timer_init(&t, io);
    cor_timer_expires_after(&t, 3600 * 1000 * MS);
    long canceled = 0, expired = 0;
    int bad = -1;
    cor_launch_options lo = {.alloc = &cr.base};
    for (int i = 0; i < M_WAITERS; i++)
        cr_assert_eq(
            COR_RUN_ASYNC(cor_io_context_executor(io), &lo, m_waiter(&t, &canceled, &expired)), 0);
    cor_launch_options cl = {.alloc = &cr.base, .on_result = store_int, .user = &bad};
    COR_RUN_ASYNC(cor_io_context_executor(io), &cl, m_canceler(&t));
    cor_io_context_run(io);
    cr_assert_eq(bad, 0, "each round canceled every waiter, each holding one wheel node");
    cr_assert_eq(canceled, (long)M_WAITERS * M_ROUNDS);
    cr_assert_eq(expired, 0, "none fired");
    cr_assert_eq(io->wheel.count, 0, "the wheel holds nothing");
    /* A launch allocates its frame and its record; a wait allocates nothing. */
    cr_assert_leq(cr.allocs, 2 * (M_WAITERS + 1), "allocations per wait: %ld in all", cr.allocs);
    cr_assert_eq(cr.frees, cr.allocs, "every frame returned");
    cr_assert_eq(cr.live_bytes, 0);
    cor_io_context_destroy(io);
}

enum { D_TASKS = 100, D_OPS = 10000 };

/* D_OPS nops with a deadline an hour away; records the most wheel nodes seen after a completion. */
struct d_loop {
    COR_PROMISE(int);
    cor_io_context *io;
    size_t *most;
    int i, r;
};
COR_DEFINE_STATIC(d_loop, (cor_io_context * io, size_t *most), {
    self->io = io;
    self->most = most;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < D_OPS; self->i++) {
        COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_nop(), 3600 * 1000 * MS));
        if (self->r != 0)
            COR_RETURN(self->r);
        if (self->io->wheel.count > *self->most)
            *self->most = self->io->wheel.count;
    }
    COR_RETURN(0);
}

IO_TEST_OPTS(timer, a_million_deadlines_leave_the_wheel_when_their_ops_complete_first,
             .timeout = 300)
{
    cor_io_context *io = make(backend);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    size_t most = 0;
    int r[D_TASKS];
    cor_launch_options lo[D_TASKS];
    for (int i = 0; i < D_TASKS; i++) {
        r[i] = 1;
        lo[i] = (cor_launch_options){.alloc = &cr.base, .on_result = store_int, .user = &r[i]};
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], d_loop(io, &most));
    }
    cor_io_context_run(io);
    for (int i = 0; i < D_TASKS; i++)
        cr_assert_eq(r[i], 0, "task %d: every op kept its own result", i);
    cr_assert_lt(most, (size_t)D_TASKS, "a completed op's deadline is off the wheel: %zu", most);
    cr_assert_eq(io->wheel.count, 0);
    cr_assert_leq(cr.allocs, 2 * D_TASKS, "allocations per op: %ld in all", cr.allocs);
    cr_assert_eq(cr.frees, cr.allocs, "every frame returned");
    cr_assert_eq(cr.live_bytes, 0);
    cor_io_context_destroy(io);
}

/* ---- the wheel alone (src/wheel.c) ---- */

#define BASE (1000LL * 1000 * MS) /* an arbitrary start of the clock, 1000 s */

static uint64_t wheel_rng = 0x9e3779b97f4a7c15ull;

static uint64_t next_rand(void)
{
    wheel_rng ^= wheel_rng << 13;
    wheel_rng ^= wheel_rng >> 7;
    wheel_rng ^= wheel_rng << 17;
    return wheel_rng;
}

/* A delay with every magnitude equally likely, from 0 to 2^bits ns: every level of the wheel. */
static int64_t any_delay(unsigned bits)
{
    unsigned b = (unsigned)(next_rand() % (bits + 1));
    return (int64_t)(next_rand() & ((1ull << b) - 1));
}

/* The time (ns) a node expiring at when may fire: its 1.024 us tick, rounded up. */
static int64_t tick_time(int64_t when)
{
    return (int64_t)((((uint64_t)when + 1023) >> 10) << 10);
}

static bool wheel_is_empty(const cor__wheel *w)
{
    for (int l = 0; l < COR__WHEEL_LEVELS; l++) {
        if (w->occupied[l])
            return false;
        for (int s = 0; s < COR__WHEEL_SLOTS; s++)
            if (w->slots[l][s])
                return false;
    }
    return w->count == 0 && !w->due && !w->fired && !w->after && !w->stamped &&
           cor__wheel_next(w) == INT64_MAX;
}

Test(timer, a_million_wheel_nodes_removed_before_firing_leave_it_empty)
{
    enum { N = 1000 * 1000 };
    cor__tnode *nodes = calloc(N, sizeof *nodes);
    uint32_t *order = malloc(N * sizeof *order);
    cr_assert(nodes && order);
    cor__wheel w;
    cor__wheel_init(&w, BASE);
    for (uint32_t i = 0; i < N; i++) {
        /* Every level, a few beyond the top (60 days) and a few already due. */
        int64_t d = i % 1000 == 0 ? 60LL * 24 * 3600 * 1000 * MS : any_delay(50);
        nodes[i].slot = COR__TNODE_IDLE;
        if (i % 3 == 0) {
            /* A delay from now, removed before the wheel places it. */
            nodes[i].when = 1 + d;
            cor__wheel_add_after(&w, &nodes[i]);
        } else {
            nodes[i].when = i % 997 == 0 ? BASE - 5 : BASE + 1 + d;
            cor__wheel_add(&w, &nodes[i]);
        }
        order[i] = i;
    }
    cr_assert_eq(w.count, (size_t)N);
    for (uint32_t i = N - 1; i > 0; i--) {
        uint32_t j = (uint32_t)(next_rand() % (i + 1)), x = order[i];
        order[i] = order[j];
        order[j] = x;
    }
    for (uint32_t i = 0; i < N; i++) {
        cor__wheel_remove(&w, &nodes[order[i]]);
        cr_assert(!cor__wheel_holds(&nodes[order[i]]));
    }
    cr_assert(wheel_is_empty(&w), "no node, no slot, no due or fired list left");
    /* The wheel keeps no pointer into the nodes: freed, then the clock runs past them all. */
    free(nodes);
    free(order);
    cor__wheel_expire(&w, BASE + 100LL * 24 * 3600 * 1000 * MS);
    cr_assert_null(cor__wheel_pop_fired(&w), "nothing fires");
    cr_assert(wheel_is_empty(&w));
}

/*
 * The clock crosses a turn of the top level (2^42 ticks, 52 days of
 * CLOCK_MONOTONIC) between the wheel's time and a node's: the node waits
 * in the top level's slot a turn ahead and fires on time, not when that
 * turn's farthest slot comes (50 days late). Both ways of adding.
 */
Test(timer, a_node_past_a_turn_of_the_top_level_fires_on_time)
{
    const int64_t turn = (int64_t)1 << (COR__WHEEL_LEVELS * 6 + COR__WHEEL_TICK_SHIFT);
    for (int after = 0; after < 2; after++) {
        for (int64_t k = 1; k <= 3; k++) {
            cor__wheel w;
            int64_t now = k * turn - 10 * 1024; /* ten ticks before the turn */
            cor__wheel_init(&w, now);
            cor__tnode n = {.slot = COR__TNODE_IDLE};
            int64_t delay = 100 * 1024;
            if (after) {
                n.when = delay;
                cor__wheel_add_after(&w, &n);
                cor__wheel_expire(&w, now); /* its start: now */
                cr_assert(cor__wheel_waits_placing(&n));
                cr_assert_eq(cor__wheel_next(&w), now + delay, "due at its start plus its delay");
                cor__wheel_expire(&w, now); /* placed */
            } else {
                n.when = now + delay;
                cor__wheel_add(&w, &n);
            }
            cr_assert_eq(n.when, now + delay);
            cr_assert_leq(cor__wheel_next(&w), tick_time(n.when), "turn %" PRId64 ": woken late",
                          k);
            cor__wheel_expire(&w, n.when - 1024);
            cr_assert_null(cor__wheel_pop_fired(&w), "not early");
            cor__wheel_expire(&w, tick_time(n.when));
            cr_assert_eq(cor__wheel_pop_fired(&w), &n, "fires at its time");
            cr_assert(wheel_is_empty(&w));
        }
    }
}

/*
 * A delay from now (an operation's idle timeout) is stamped with the time of
 * the expiry after its adding and takes a slot only at the expiry after that,
 * or when it falls due first: an operation that completes within a pass or
 * two (a send) never touches a slot.
 */
Test(timer, a_delay_node_removed_before_the_second_expiry_never_takes_a_slot)
{
    cor__wheel w;
    cor__wheel_init(&w, BASE);
    cor__tnode n = {.slot = COR__TNODE_IDLE, .when = 30LL * 1000 * MS};
    cor__tnode m = {.slot = COR__TNODE_IDLE, .when = 5 * MS};
    cor__wheel_add_after(&w, &n);
    cor__wheel_add_after(&w, &m);
    cr_assert_eq(cor__wheel_next(&w), 0, "a start to read");
    cor__wheel_expire(&w, BASE + 1000);
    for (int l = 0; l < COR__WHEEL_LEVELS; l++)
        cr_assert_eq(w.occupied[l], 0, "level %d: no slot taken at the first expiry", l);
    cr_assert(cor__wheel_waits_placing(&n) && cor__wheel_waits_placing(&m));
    cr_assert_eq(cor__wheel_next(&w), BASE + 1000 + 5 * MS, "woken for the shorter delay");
    cor__wheel_remove(&w, &n);
    cor__wheel_remove(&w, &m);
    cor__wheel_expire(&w, BASE + 2000);
    cr_assert(wheel_is_empty(&w), "nothing was ever placed");
    /* One that stays is placed at the next expiry, at its start plus its delay. */
    cor__wheel_add_after(&w, &m);
    cor__wheel_expire(&w, BASE + 3000);
    cor__wheel_expire(&w, BASE + 4000);
    cr_assert(!cor__wheel_waits_placing(&m));
    cr_assert_eq(m.when, BASE + 3000 + 5 * MS);
    cor__wheel_expire(&w, BASE + 3000 + 5 * MS - 1024);
    cr_assert_null(cor__wheel_pop_fired(&w), "not early");
    cor__wheel_expire(&w, tick_time(BASE + 3000 + 5 * MS));
    cr_assert_eq(cor__wheel_pop_fired(&w), &m);
    cr_assert(wheel_is_empty(&w));
}

enum { MODEL_N = 4000 };

/* The earliest expiry each node may have: its time, or (add_after) its delay after its adding. */
static int64_t model_min[MODEL_N];
/* The expiries the wheel had made when each node was added. */
static long model_added[MODEL_N];

/*
 * Checks after expiry number `expiries` at now: an add_after node is placed
 * by the second expiry after its adding; what fired was due, in time order;
 * what is left is not due.
 */
static void check_expired(cor__wheel *w, cor__tnode *nodes, bool *held, int64_t now, long expiries)
{
    int64_t prev = INT64_MIN;
    cor__tnode *x;
    for (size_t i = 0; i < MODEL_N; i++)
        cr_assert(!held[i] || model_added[i] > expiries - 2 || !cor__wheel_waits_placing(&nodes[i]),
                  "node %zu not placed", i);
    while ((x = cor__wheel_pop_fired(w))) {
        size_t i = (size_t)(x - nodes);
        cr_assert(held[i], "node %zu fired twice, or after its removal", i);
        cr_assert_geq(x->when, model_min[i], "node %zu was placed early", i);
        cr_assert_leq(tick_time(x->when), (now >> 10) << 10, "node %zu fired early", i);
        cr_assert_geq(x->when, prev, "node %zu fired out of time order", i);
        cr_assert(x->fired);
        prev = x->when;
        held[i] = false;
    }
    int64_t earliest = INT64_MAX;
    for (size_t i = 0; i < MODEL_N; i++) {
        if (!held[i])
            continue;
        /* Not placed yet: stamped with this expiry's time, its when still a delay. */
        int64_t when = nodes[i].when;
        if (cor__wheel_waits_placing(&nodes[i])) {
            cr_assert_eq(w->stamp, now, "node %zu: started at this expiry", i);
            when += w->stamp;
        }
        cr_assert_gt(tick_time(when), (now >> 10) << 10, "node %zu was due, not fired", i);
        if (when < earliest)
            earliest = when;
    }
    cr_assert_leq(cor__wheel_next(w), earliest == INT64_MAX ? INT64_MAX : tick_time(earliest),
                  "the wheel's next time is never later than its earliest node");
}

/*
 * A random model of the wheel: nodes added at a time (past, near, far) or
 * as a delay from now (add_after), removed, and expired at random steps.
 */
Test(timer, the_wheel_fires_every_node_once_in_time_order_and_never_early)
{
    static cor__tnode nodes[MODEL_N];
    static bool held[MODEL_N];
    cor__wheel w;
    int64_t now = BASE;
    long expiries = 0;
    cor__wheel_init(&w, now);
    for (size_t i = 0; i < MODEL_N; i++)
        nodes[i].slot = COR__TNODE_IDLE;
    for (int step = 0; step < 200000; step++) {
        size_t i = (size_t)(next_rand() % MODEL_N);
        unsigned what = (unsigned)(next_rand() % 8);
        if (what == 3 && !held[i]) {
            /* A delay from now, started at the next expiry (its time is that expiry's now). */
            nodes[i].when = 1 + any_delay(44);
            model_min[i] = now + nodes[i].when;
            model_added[i] = expiries;
            cor__wheel_add_after(&w, &nodes[i]);
            cr_assert(cor__wheel_waits_placing(&nodes[i]));
            cr_assert_eq(cor__wheel_next(&w), 0, "the wheel asks to be expired at once");
            held[i] = true;
        } else if (what < 3 && !held[i]) {
            /* Up to 2^44 ns (4.9 h) ahead, now and then in the past or far beyond the top. */
            nodes[i].when = what == 0 ? now - any_delay(20) : now + any_delay(44);
            if (what == 1 && next_rand() % 64 == 0)
                nodes[i].when = now + 60LL * 24 * 3600 * 1000 * MS;
            model_min[i] = nodes[i].when;
            cor__wheel_add(&w, &nodes[i]);
            held[i] = true;
        } else if (what < 6 && held[i]) {
            cor__wheel_remove(&w, &nodes[i]);
            held[i] = false;
        } else if (what == 7) {
            /* Any step: within a tick, across slots, across levels. */
            now += any_delay(next_rand() % 4 == 0 ? 46 : 24);
            cor__wheel_expire(&w, now);
            check_expired(&w, nodes, held, now, ++expiries);
        }
    }
    /* The rest, waking at each time the wheel names, as the run loop does. */
    while (cor__wheel_next(&w) != INT64_MAX) {
        now = cor__wheel_next(&w) > now ? cor__wheel_next(&w) : now;
        cor__wheel_expire(&w, now);
        check_expired(&w, nodes, held, now, ++expiries);
    }
    for (size_t i = 0; i < MODEL_N; i++)
        cr_assert(!held[i], "node %zu never fired", i);
    cr_assert(wheel_is_empty(&w));
}

Test(timer, the_wheel_wakes_its_context_only_when_a_node_is_due)
{
    enum { N = 20000 };
    static cor__tnode nodes[N];
    cor__wheel w;
    cor__wheel_init(&w, BASE);
    for (size_t i = 0; i < N; i++) {
        nodes[i].slot = COR__TNODE_IDLE;
        /* Up to 2^50 ns (13 days): every level, all within the top level's reach. */
        nodes[i].when = BASE + 1 + any_delay(50);
        cor__wheel_add(&w, &nodes[i]);
    }
    long wakes = 0, fired = 0;
    while (cor__wheel_next(&w) != INT64_MAX) {
        int64_t now = cor__wheel_next(&w);
        cor__wheel_expire(&w, now);
        long k = 0;
        while (cor__wheel_pop_fired(&w))
            k++;
        cr_assert_gt(k, 0, "wake-up %ld at %" PRId64 " fired nothing", wakes, now);
        fired += k;
        wakes++;
        /* Adds after an expiry pass, also into slots a pass just filled. */
        if (wakes % 64 == 0 && fired < N / 2) {
            size_t i = (size_t)(next_rand() % N);
            if (!cor__wheel_holds(&nodes[i])) {
                nodes[i].when = now + 1 + any_delay(40);
                cor__wheel_add(&w, &nodes[i]);
                fired--;
            }
        }
    }
    cr_assert_eq(fired, N);
    cr_assert(wheel_is_empty(&w));
}
