/* Timers: sleep_for/sleep_until, ordering, many concurrent timers, the timer object, deadlines. */
#include <fcntl.h>
#include <stdlib.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
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

/* ---- deadlines (linked timeouts) ---- */

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
