/*
 * The stop-token bridge to the backend's cancel (IORING_OP_ASYNC_CANCEL on
 * io_uring): pending timers and long operations canceled from the same
 * thread, another thread, before start, and racing completion; teardown
 * with operations in flight. Every test runs on io_uring and epoll.
 */
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"
#include "coring/file.h"
#include "coring/net.h"

#define MS (1000LL * 1000)

static cor_io_context *make(int backend)
{
    return io_test_create(backend, NULL);
}

static void store_int(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

struct count_outcome {
    int r, calls;
};

static void count_result(void *user, void *result)
{
    struct count_outcome *o = user;
    o->r = *(int *)result;
    o->calls++;
}

/* kind 0: a 10 s sleep; kind 1: a read on pipe fd. */
struct victim {
    COR_PROMISE(int);
    int kind, fd;
    int64_t ns;
    char buf[4];
    int r;
};
COR_DEFINE_STATIC(victim, (int kind, int fd, int64_t ns), {
    self->kind = kind;
    self->fd = fd;
    self->ns = ns;
})
{
    COR_BEGIN();
    if (self->kind == 0)
        COR_AWAIT(self->r, cor_sleep_for(self->ns));
    else
        COR_AWAIT(self->r, pipe_read(self->fd, self->buf));
    COR_RETURN(self->r);
}

struct requester {
    COR_PROMISE(int);
    cor_stop_source *src;
    int r;
};
COR_DEFINE_STATIC(requester, (cor_stop_source * src), { self->src = src; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(10 * MS));
    COR_RETURN(cor_stop_source_request(self->src));
}

static void same_thread(int backend, int kind)
{
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    int r = 1, q = -1;
    cor_launch_options lo = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    cor_launch_options ql = {.on_result = store_int, .user = &q};
    int64_t t0 = cor_clock_now();
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, victim(kind, p[0], 10000 * MS));
    COR_RUN_ASYNC(cor_io_context_executor(io), &ql, requester(&src));
    cor_io_context_run(io);
    cr_assert_eq(q, 1);
    cr_assert_eq(r, -ECANCELED);
    cr_assert_lt(cor_clock_now() - t0, 5000 * MS);
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

IO_TEST(cancel, pending_timer_from_the_same_thread)
{
    same_thread(backend, 0);
}

IO_TEST(cancel, long_operation_from_the_same_thread)
{
    same_thread(backend, 1);
}

struct delayed_stop {
    cor_stop_source *src;
    int64_t delay_ns;
    pthread_t th;
};

static void *delayed_stop_main(void *arg)
{
    struct delayed_stop *d = arg;
    if (d->delay_ns)
        usleep((useconds_t)(d->delay_ns / 1000));
    cor_stop_source_request(d->src);
    return NULL;
}

static void other_thread(int backend, int kind)
{
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    int r = 1;
    cor_launch_options lo = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, victim(kind, p[0], 10000 * MS));
    struct delayed_stop d = {.src = &src, .delay_ns = 20 * MS};
    cr_assert_eq(pthread_create(&d.th, NULL, delayed_stop_main, &d), 0);
    int64_t t0 = cor_clock_now();
    cor_io_context_run(io);
    pthread_join(d.th, NULL);
    cr_assert_eq(r, -ECANCELED);
    cr_assert_lt(cor_clock_now() - t0, 5000 * MS, "the sleeping owner was reached");
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

IO_TEST(cancel, pending_timer_from_another_thread)
{
    other_thread(backend, 0);
}

IO_TEST(cancel, long_operation_from_another_thread)
{
    other_thread(backend, 1);
}

IO_TEST(cancel, stop_before_start_never_enters_the_kernel)
{
    cor_io_context *io = make(backend);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_stop_source_request(&src);
    int r = 1;
    cor_launch_options lo = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, victim(0, -1, 10000 * MS));
    /* One handler: the launch, which completes inline; no completion follows. */
    cr_assert_eq(cor_io_context_run(io), 1);
    cr_assert_eq(r, -ECANCELED);
    cor_io_context_destroy(io);
}

/*
 * Racing: the operation completes on its own at about the time another
 * thread requests stop. Every iteration ends with exactly one outcome.
 */
struct racer {
    cor_stop_source *src;
    uint32_t go, done, quit;
    int64_t delay_ns, write_ns;
    int wfd; /* kind 1: the pipe to write the byte to; -1 for kind 0 */
};

static void *racer_main(void *arg)
{
    struct racer *x = arg;
    for (;;) {
        while (!__atomic_load_n(&x->go, __ATOMIC_ACQUIRE))
            sched_yield();
        __atomic_store_n(&x->go, 0, __ATOMIC_RELAXED);
        if (__atomic_load_n(&x->quit, __ATOMIC_ACQUIRE))
            return NULL;
        /* Kind 1: write the byte the read waits for, before or after the stop. */
        int64_t t0 = cor_clock_now();
        bool written = x->wfd < 0;
        if (!written && x->write_ns <= x->delay_ns) {
            while (cor_clock_now() < t0 + x->write_ns)
                ;
            written = write(x->wfd, "y", 1) == 1;
        }
        while (cor_clock_now() < t0 + x->delay_ns)
            ;
        cor_stop_source_request(x->src);
        if (!written) {
            while (cor_clock_now() < t0 + x->write_ns)
                ;
            if (write(x->wfd, "y", 1) != 1)
                abort();
        }
        __atomic_store_n(&x->done, 1, __ATOMIC_RELEASE);
    }
}

static void race(int backend, int kind, int iterations)
{
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    struct racer x = {.go = 0};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, racer_main, &x), 0);
    int completed = 0, canceled = 0, other = 0;
    srand(11);
    for (int i = 0; i < iterations; i++) {
        cor_stop_source src = COR_STOP_SOURCE_INIT;
        x.src = &src;
        x.delay_ns = (rand() % 60) * 1000;
        struct count_outcome oc = {1000, 0};
        cor_launch_options lo = {
            .stop = cor_stop_source_token(&src), .on_result = count_result, .user = &oc};
        int64_t own = (rand() % 60) * 1000;
        x.write_ns = own;
        x.wfd = kind == 1 ? p[1] : -1;
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo, victim(kind, p[0], own));
        cor_io_context_poll(io); /* submitted before the race starts */
        __atomic_store_n(&x.go, 1, __ATOMIC_RELEASE);
        cor_io_context_run(io);
        while (!__atomic_load_n(&x.done, __ATOMIC_ACQUIRE))
            sched_yield();
        __atomic_store_n(&x.done, 0, __ATOMIC_RELAXED);
        cr_assert_eq(oc.calls, 1, "one completion: never none, never two");
        int r = oc.r;
        if (kind == 1 && r != 1) {
            char c;
            cr_assert_eq(read(p[0], &c, 1), 1, "the byte is left when the read was canceled");
        }
        if (r == (kind == 0 ? 0 : 1))
            completed++;
        else if (r == -ECANCELED)
            canceled++;
        else
            other++;
    }
    __atomic_store_n(&x.quit, 1, __ATOMIC_RELEASE);
    __atomic_store_n(&x.go, 1, __ATOMIC_RELEASE);
    pthread_join(th, NULL);
    cr_log_info("race kind %d: %d completed, %d canceled", kind, completed, canceled);
    cr_assert_eq(other, 0, "no other outcome");
    cr_assert_eq(completed + canceled, iterations, "exactly one outcome each time");
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

IO_TEST_OPTS(cancel, timer_racing_a_cross_thread_stop, .timeout = 60)
{
    race(backend, 0, 2000);
}

IO_TEST_OPTS(cancel, read_racing_a_cross_thread_stop, .timeout = 60)
{
    race(backend, 1, 2000);
}

/* ---- teardown ---- */

IO_TEST(cancel, destroy_with_operations_in_flight_frees_every_frame)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    int results = 0;
    cor_launch_options lo = {.alloc = &cr.base,
                             .stop = cor_stop_source_token(&src),
                             .on_result = store_int,
                             .user = &results};
    for (int i = 0; i < 50; i++) {
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo, victim(0, -1, 10000 * MS));
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo, victim(1, p[0], 0));
    }
    cor_timer t;
    cor_timer_init(&t, io);
    cor_io_context_run_for(io, 10 * MS);
    cr_assert_gt(cr.allocs, 0);
    cr_assert_neq(cr.allocs, cr.frees, "suspended in the kernel");
    cor_io_context_destroy(io);
    cr_assert_eq(cr.allocs, cr.frees, "destroy freed every frame");
    cr_assert_eq(cr.live_bytes, 0);
    cr_assert_eq(results, 0, "no handler ran");
    /* The stop callbacks were deregistered: requesting stop touches nothing freed. */
    cor_stop_source_request(&src);
    close(p[0]);
    close(p[1]);
}

IO_TEST(cancel, destroy_with_a_queued_cross_thread_cancel_request)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_io_context *io = make(backend);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_launch_options lo = {.alloc = &cr.base, .stop = cor_stop_source_token(&src)};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, victim(0, -1, 10000 * MS));
    cor_io_context_poll(io);
    /* Not inside run: the request is queued for the owner. */
    struct delayed_stop d = {.src = &src};
    cr_assert_eq(pthread_create(&d.th, NULL, delayed_stop_main, &d), 0);
    pthread_join(d.th, NULL);
    cor_io_context_destroy(io);
    cr_assert_eq(cr.allocs, cr.frees);
}

/* ---- cleanup is never canceled ---- */

/* Closes fd (kind 0) or shuts down its write side (kind 1), optionally with a deadline. */
struct cleanup {
    COR_PROMISE(int);
    int fd, kind, r;
    int64_t deadline;
};
COR_DEFINE_STATIC(cleanup, (int fd, int kind, int64_t deadline), {
    self->fd = fd;
    self->kind = kind;
    self->deadline = deadline;
})
{
    COR_BEGIN();
    if (self->kind == 0 && self->deadline)
        COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_close(self->fd), self->deadline));
    else if (self->kind == 0)
        COR_AWAIT(self->r, cor_close(self->fd));
    else
        COR_AWAIT(self->r, cor_shutdown(self->fd, SHUT_WR));
    COR_RETURN(self->r);
}

static int run_cleanup(cor_io_context *io, cor_stop_token st, int fd, int kind, int64_t deadline)
{
    int r = 1;
    cor_launch_options lo = {.stop = st, .on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, cleanup(fd, kind, deadline)), 0);
    cor_io_context_run(io);
    return r;
}

IO_TEST(cancel, close_with_a_stopped_token_still_closes)
{
    cor_io_context *io = make(backend);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_stop_source_request(&src);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_eq(run_cleanup(io, cor_stop_source_token(&src), p[0], 0, 0), 0);
    cr_assert_eq(fcntl(p[0], F_GETFD), -1, "the descriptor is gone");
    cr_assert_eq(errno, EBADF);
    /* A deadline (even one that is already due) does not keep the descriptor open either. */
    cr_assert_eq(run_cleanup(io, cor_stop_source_token(&src), p[1], 0, 1), 0);
    cr_assert_eq(fcntl(p[1], F_GETFD), -1);
    cr_assert_eq(errno, EBADF);
    cor_io_context_destroy(io);
}

IO_TEST(cancel, shutdown_with_a_stopped_token_still_shuts_down)
{
    cor_io_context *io = make(backend);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_stop_source_request(&src);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(run_cleanup(io, cor_stop_source_token(&src), sv[0], 1, 0), 0);
    char c;
    cr_assert_eq(recv(sv[1], &c, 1, MSG_DONTWAIT), 0, "the peer sees the end of the stream");
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* ---- a deadline already past ---- */

struct past_read {
    COR_PROMISE(int);
    int fd, r;
    char buf[16];
};
COR_DEFINE_STATIC(past_read, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_DEADLINE_AT(cor_read(self->fd, self->buf, sizeof self->buf, 0),
                                       cor_clock_now() - MS));
    COR_RETURN(self->r);
}

IO_TEST(cancel, a_past_deadline_is_not_issued_on_a_file_or_a_pipe)
{
    cor_io_context *io = make(backend);
    char path[] = "/tmp/coring-past-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(write(fd, "data", 4), 4);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cr_assert_eq(write(p[1], "data", 4), 4);
    int fds[2] = {fd, p[0]};
    for (int i = 0; i < 2; i++) {
        int r = 1;
        cor_launch_options lo = {.on_result = store_int, .user = &r};
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo, past_read(fds[i]));
        cor_io_context_run(io);
        cr_assert_eq(r, -ETIME, "%s: %s", i ? "pipe" : "file", cor_strerror(r));
    }
    char buf[8];
    cr_assert_eq(read(p[0], buf, sizeof buf), 4, "nothing was read from the pipe");
    close(fd);
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

/*
 * A token's operation time limit: a read on an empty pipe ends with -ETIME
 * after the limit, measured from its own start (two reads in a row each get
 * the full limit); an op's own deadline wins; sleeps and close are not
 * limited; a completing op keeps its result.
 */
struct limits_seen {
    int r[5];
    int64_t t[3];
};
struct limited {
    COR_PROMISE(int);
    int fd;
    int64_t t0;
    struct limits_seen *o;
    char buf[4];
};
COR_DEFINE_STATIC(limited, (int fd, struct limits_seen *o), {
    self->fd = fd;
    self->o = o;
})
{
    COR_BEGIN();
    self->t0 = cor_clock_now();
    COR_AWAIT(self->o->r[0], pipe_read(self->fd, self->buf));
    self->o->t[0] = cor_clock_now() - self->t0;
    self->t0 = cor_clock_now();
    COR_AWAIT(self->o->r[1], pipe_read(self->fd, self->buf));
    self->o->t[1] = cor_clock_now() - self->t0;
    self->t0 = cor_clock_now();
    COR_AWAIT(self->o->r[2], COR_DEADLINE_AFTER(pipe_read(self->fd, self->buf), 5 * MS));
    self->o->t[2] = cor_clock_now() - self->t0;
    COR_AWAIT(self->o->r[3], cor_sleep_for(60 * MS)); /* longer than the limit: not cut short */
    COR_AWAIT(self->o->r[4], pipe_read(self->fd, self->buf)); /* data written meanwhile */
    COR_RETURN(0);
}

IO_TEST(cancel, a_tokens_op_timeout_limits_each_operation)
{
    cor_io_context *io = make(backend);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cr_assert_eq(cor_stop_source_set_op_timeout(&src, 30 * MS), 0);
    cr_assert_eq(cor_stop_source_set_op_timeout(&src, -1), -EINVAL);
    cr_assert_eq(cor_stop_source_set_op_timeout(NULL, 1), -EINVAL);
    struct limits_seen seen;
    memset(&seen, 0, sizeof seen);
    struct limits_seen *t = &seen;
    cor_launch_options lo = {.stop = cor_stop_source_token(&src)};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, limited(p[0], t)), 0);
    /* Let the first three reads time out and the sleep begin, then write a byte. */
    cor_io_context_run_for(io, 90 * MS);
    cr_assert_eq(write(p[1], "x", 1), 1);
    cor_io_context_run(io);
    cr_assert_eq(t->r[0], -ETIME);
    cr_assert_eq(t->r[1], -ETIME);
    cr_assert_geq(t->t[0], 30 * MS);
    cr_assert_geq(t->t[1], 30 * MS, "the second read gets the full limit from its own start");
    cr_assert_eq(t->r[2], -ETIME);
    cr_assert_lt(t->t[2], 30 * MS, "the op's own deadline (5 ms) wins");
    cr_assert_eq(t->r[3], 0, "a sleep is not limited");
    cr_assert_eq(t->r[4], 1, "a read that completes keeps its result");
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}
