/*
 * Running several things at once (compose.h): when_all, when_any, whole-task
 * timeouts and task groups, on both backends where I/O is involved; linked
 * and never-stopping stop tokens. Every frame is counted: a counting memory
 * resource must see as many frees as allocations once a test is done.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

#define MS (1000LL * 1000)

static void store_int(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

static void store_err(void *user, int err)
{
    *(int *)user = err;
}

/* Runs t on io (with counting resource cr) until io runs out of work; returns its result or error.
 */
static int run_on(cor_io_context *io, counting_resource *cr, cor_frame *t)
{
    int r = -9999;
    cor_launch_options o = {
        .alloc = cr ? &cr->base : NULL, .on_result = store_int, .on_error = store_err, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &o, t), 0);
    cor_io_context_run(io);
    return r;
}

/* ---- small children ---- */

/* Returns v after sleeping ns (0: at once, without suspending). */
struct value_after {
    COR_PROMISE(int);
    int v, r;
    int64_t ns;
};
COR_DEFINE_STATIC(value_after, (int v, int64_t ns), {
    self->v = v;
    self->ns = ns;
})
{
    COR_BEGIN();
    if (self->ns)
        COR_AWAIT(self->r, cor_sleep_for(self->ns));
    COR_RETURN(self->ns && self->r ? self->r : self->v);
}

/* Fails with err after sleeping ns. */
struct fail_after {
    COR_PROMISE(int);
    int err, r;
    int64_t ns;
};
COR_DEFINE_STATIC(fail_after, (int err, int64_t ns), {
    self->err = err;
    self->ns = ns;
})
{
    COR_BEGIN();
    if (self->ns)
        COR_AWAIT(self->r, cor_sleep_for(self->ns));
    COR_FAIL(self->err);
}

/* Waits for a byte on fd; returns the recv result (-ECANCELED when stopped). */
struct blocked_recv {
    COR_PROMISE(int);
    int fd, r;
    char c;
};
COR_DEFINE_STATIC(blocked_recv, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_recv(self->fd, &self->c, 1, 0));
    COR_RETURN(self->r);
}

/* ---- when_all ---- */

struct all_two {
    COR_PROMISE(int);
    int a, b;
};
COR_DEFINE_STATIC(all_two, (void), {})
{
    COR_BEGIN();
    self->a = self->b = 0;
    COR_AWAIT_ALL((self->a, value_after(7, 0)), (self->b, value_after(35, 2 * MS)));
    COR_RETURN(self->a + self->b);
}

IO_TEST(compose, when_all_delivers_every_result)
{
    cor_io_context *io = io_test_create(backend, NULL);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cr_assert_eq(run_on(io, &cr, COR_FRAME(all_two())), 42);
    cr_assert_eq(cr.allocs, cr.frees, "every frame freed: %ld allocs, %ld frees", cr.allocs,
                 cr.frees);
    cor_io_context_destroy(io);
}

/* The first failure stops a sibling blocked on a recv and is the join's error. */
struct all_fail {
    COR_PROMISE(int);
    int fd, a, b, c, err;
};
COR_DEFINE_STATIC(all_fail, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    self->a = self->b = self->c = 99;
    COR_TRY_AWAIT_ALL(self->err, (self->a, blocked_recv(self->fd)),
                      (self->b, fail_after(-EPROTO, 5 * MS)), (self->c, value_after(3, 0)));
    /* a: its recv was canceled by the stop, so it returned -ECANCELED. */
    COR_RETURN(self->err == -EPROTO && self->a == -ECANCELED && self->b == 99 && self->c == 3 ? 1
                                                                                              : -1);
}

IO_TEST(compose, when_all_first_failure_stops_the_siblings)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(run_on(io, &cr, COR_FRAME(all_fail(sv[0]))), 1);
    cr_assert_lt(cor_clock_now() - t0, 5000 * MS, "the blocked sibling did not hold the join");
    cr_assert_eq(cr.allocs, cr.frees);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* The propagating form fails the awaiting coroutine with the first error. */
struct all_propagate {
    COR_PROMISE(int);
    int a, b;
};
COR_DEFINE_STATIC(all_propagate, (void), {})
{
    COR_BEGIN();
    COR_AWAIT_ALL((self->a, fail_after(-EIO, 0)), (self->b, value_after(1, 1 * MS)));
    COR_RETURN(0); /* not reached */
}

IO_TEST(compose, when_all_propagates_the_first_error)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cr_assert_eq(run_on(io, NULL, COR_FRAME(all_propagate())), -EIO);
    cor_io_context_destroy(io);
}

/* The array form: 10,000 children, each returns its index times 2. */
struct all_many {
    COR_PROMISE(int);
    int n, err, *res;
    long sum;
};
COR_DEFINE_STATIC(all_many, (int n, int *res), {
    self->n = n;
    self->res = res;
})
{
    COR_BEGIN();
    COR_TRY_AWAIT_ALL_N(self->err, self->res, self->n, i,
                        value_after((int)i * 2, i % 3 ? 0 : (int64_t)(i % 7) * MS));
    if (self->err)
        COR_RETURN(self->err);
    self->sum = 0;
    for (int i = 0; i < self->n; i++)
        if (self->res[i] != 2 * i)
            COR_RETURN(-1000 - i);
    COR_RETURN(1);
}

IO_TEST_OPTS(compose, when_all_array_of_ten_thousand_and_of_none, .timeout = 60)
{
    cor_io_context *io = io_test_create(backend, NULL);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    static int res[10000];
    cr_assert_eq(run_on(io, &cr, COR_FRAME(all_many(10000, res))), 1);
    cr_assert_eq(run_on(io, &cr, COR_FRAME(all_many(0, res))), 1,
                 "an empty list completes at once");
    cr_assert_eq(cr.allocs, cr.frees);
    cor_io_context_destroy(io);
}

/* The array form of when_any over no children: nothing wins. */
struct any_none {
    COR_PROMISE(int);
    int err, idx, res[1];
};
COR_DEFINE_STATIC(any_none, (void), {})
{
    COR_BEGIN();
    self->err = -1;
    self->idx = 7;
    COR_TRY_AWAIT_ANY_N(self->err, self->idx, self->res, 0, i, value_after((int)i, 0));
    COR_RETURN(self->err == 0 && self->idx == -1 ? 1 : -1);
}

Test(compose, when_any_array_of_none)
{
    cor_io_context *io = io_test_create(COR_IO_BACKEND_URING, NULL);
    cr_assert_eq(run_on(io, NULL, COR_FRAME(any_none())), 1);
    cor_io_context_destroy(io);
}

/* Children on a thread pool and on another io_context; the parent resumes on its own. */
struct where {
    COR_PROMISE(int);
    int tag;
};
COR_DEFINE_STATIC(where, (int tag), { self->tag = tag; })
{
    COR_BEGIN();
    COR_RETURN(self->tag);
}

struct all_elsewhere {
    COR_PROMISE(int);
    cor_executor pool, other;
    cor_io_context *home;
    int a, b, c, i;
};
COR_DEFINE_STATIC(all_elsewhere, (cor_io_context * home, cor_executor pool, cor_executor other), {
    self->home = home;
    self->pool = pool;
    self->other = other;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < 200; self->i++) {
        self->a = self->b = self->c = 0;
        COR_AWAIT_ALL((self->a, COR_RUN(where(1), .ex = self->pool)),
                      (self->b, COR_RUN(where(2), .ex = self->other)), (self->c, where(3)));
        if (self->a != 1 || self->b != 2 || self->c != 3)
            COR_RETURN(-1);
        if (cor_io_context_current() != self->home)
            COR_RETURN(-2); /* resumed on the wrong thread */
    }
    COR_RETURN(1);
}

static void *run_io(void *io)
{
    cor_io_context_run(io);
    return NULL;
}

IO_TEST_OPTS(compose, when_all_children_on_other_executors, .timeout = 60)
{
    cor_io_context *io = io_test_create(backend, NULL), *other = io_test_create(backend, NULL);
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 2), 0);
    cor_executor oex = cor_io_context_executor(other);
    oex.ops->on_work_started(oex.obj); /* keep the other context running */
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, run_io, other), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cr_assert_eq(run_on(io, &cr, COR_FRAME(all_elsewhere(io, cor_thread_pool_executor(pool), oex))),
                 1);
    oex.ops->on_work_finished(oex.obj);
    pthread_join(th, NULL);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
    cr_assert_eq(cr.allocs, cr.frees);
    cor_io_context_destroy(other);
    cor_io_context_destroy(io);
}

/* ---- when_any ---- */

struct any_fast {
    COR_PROMISE(int);
    int a, b, idx, err;
};
COR_DEFINE_STATIC(any_fast, (void), {})
{
    COR_BEGIN();
    self->a = self->b = 0;
    COR_TRY_AWAIT_ANY(self->err, self->idx, (self->a, value_after(1, 10000 * MS)),
                      (self->b, value_after(2, 2 * MS)));
    COR_RETURN(self->err == 0 && self->idx == 1 && self->b == 2 && self->a == 0 ? 1 : -1);
}

IO_TEST(compose, when_any_fastest_wins_and_the_loser_is_stopped_and_freed)
{
    cor_io_context *io = io_test_create(backend, NULL);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(run_on(io, &cr, COR_FRAME(any_fast())), 1);
    cr_assert_lt(cor_clock_now() - t0, 5000 * MS, "the 10 s loser was stopped");
    cr_assert_eq(cr.allocs, cr.frees, "no frame alive after the await");
    cr_assert_eq(cr.live_bytes, 0);
    cor_io_context_destroy(io);
}

/* Both finish at once (no suspension): exactly one winner, the first started. */
struct any_tie {
    COR_PROMISE(int);
    int a, b, idx, r, i, wins[2];
};
COR_DEFINE_STATIC(any_tie, (void), {})
{
    COR_BEGIN();
    self->wins[0] = self->wins[1] = 0;
    for (self->i = 0; self->i < 100; self->i++) {
        self->a = self->b = -1;
        COR_AWAIT_ANY(self->idx, (self->a, value_after(10, 0)), (self->b, value_after(20, 0)));
        if (self->idx < 0 || self->idx > 1)
            COR_RETURN(-1);
        if ((self->idx == 0 && (self->a != 10 || self->b != -1)) ||
            (self->idx == 1 && (self->b != 20 || self->a != -1)))
            COR_RETURN(-2); /* only the winner's destination is written */
        self->wins[self->idx]++;
    }
    COR_RETURN(self->wins[0] + self->wins[1] == 100 ? 1 : -3);
}

IO_TEST(compose, when_any_simultaneous_completion_has_one_winner)
{
    cor_io_context *io = io_test_create(backend, NULL);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cr_assert_eq(run_on(io, &cr, COR_FRAME(any_tie())), 1);
    cr_assert_eq(cr.allocs, cr.frees);
    cor_io_context_destroy(io);
}

/* Accept (a connection is already waiting) against a nop: whoever loses, no descriptor leaks. */
struct accepter {
    COR_PROMISE(int);
    int lfd, fd;
};
COR_DEFINE_STATIC(accepter, (int lfd), { self->lfd = lfd; })
{
    COR_BEGIN();
    COR_AWAIT(self->fd, cor_accept(self->lfd, NULL));
    COR_RETURN(self->fd);
}

struct nopper {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(nopper, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_nop());
    COR_RETURN(100);
}

static int discarded, accept_index;

/* A loser that returned anyway: only the accept's result is a descriptor. */
static void close_discarded(int index, void *result)
{
    if (index != accept_index)
        return;
    discarded++;
    close(*(int *)result);
}

struct any_accept {
    COR_PROMISE(int);
    int lfd, fd, n, idx, err, first;
};
COR_DEFINE_STATIC(any_accept, (int lfd, int first), {
    self->lfd = lfd;
    self->first = first;
})
{
    COR_BEGIN();
    self->fd = -1;
    accept_index = self->first;
    if (self->first == 0)
        COR_TRY_AWAIT_ANY_DISCARD(self->err, self->idx, close_discarded,
                                  (self->fd, accepter(self->lfd)), (self->n, nopper()));
    else
        COR_TRY_AWAIT_ANY_DISCARD(self->err, self->idx, close_discarded, (self->n, nopper()),
                                  (self->fd, accepter(self->lfd)));
    if (self->err)
        COR_RETURN(self->err);
    if (self->fd >= 0)
        close(self->fd);                          /* the accept won: the descriptor is ours */
    COR_RETURN(self->idx == self->first ? 2 : 1); /* 2: the accept won, 1: the nop won */
}

IO_TEST_OPTS(compose, when_any_an_accept_that_loses_leaks_no_descriptor, .timeout = 60)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    cr_assert_eq(cor_addr_parse(&a, "127.0.0.1:0"), 0);
    int lfd = cor_listen(&a, 128, 0);
    cr_assert_geq(lfd, 0);
    cr_assert_eq(cor_local_addr(lfd, &a), 0);
    int before = open_fds();
    int outcomes[3] = {0};
    discarded = 0;
    for (int i = 0; i < 200; i++) {
        int c = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        cr_assert_eq(connect(c, &a.u.sa, a.len), 0);
        int r = run_on(io, NULL, COR_FRAME(any_accept(lfd, i % 2)));
        cr_assert(r == 1 || r == 2, "round %d: %d", i, r);
        outcomes[r]++;
        close(c);
    }
    /* Connections the losing accepts never took are still queued on the listener: drain them. */
    for (int fd; (fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0;)
        close(fd);
    cr_assert_eq(open_fds(), before, "every accepted descriptor was closed");
    cr_log_info("accept won %d, nop won %d, discarded %d", outcomes[2], outcomes[1], discarded);
    close(lfd);
    cor_io_context_destroy(io);
}

/* Connects a client to a (a blocking connect on loopback: the handshake completes at once) and
 * wins. */
struct connector {
    COR_PROMISE(int);
    const cor_sockaddr *a;
    int *client;
};
COR_DEFINE_STATIC(connector, (const cor_sockaddr *a, int *client), {
    self->a = a;
    self->client = client;
})
{
    COR_BEGIN();
    *self->client = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    COR_RETURN(connect(*self->client, &self->a->u.sa, self->a->len) == 0 ? 0 : -errno);
}

struct accept_race {
    COR_PROMISE(int);
    int lfd, fd, r, idx, err, *client;
    const cor_sockaddr *a;
};
COR_DEFINE_STATIC(accept_race, (int lfd, const cor_sockaddr *a, int *client), {
    self->lfd = lfd;
    self->a = a;
    self->client = client;
})
{
    COR_BEGIN();
    self->fd = -1;
    accept_index = 0;
    /* The accept waits in the kernel when the connection arrives; the stop races its completion. */
    COR_TRY_AWAIT_ANY_DISCARD(self->err, self->idx, close_discarded,
                              (self->fd, accepter(self->lfd)),
                              (self->r, connector(self->a, self->client)));
    if (self->idx == 0 && self->fd >= 0)
        close(self->fd);
    COR_RETURN(self->err ? self->err : self->idx);
}

IO_TEST_OPTS(compose, when_any_an_accept_stopped_in_flight_leaks_no_descriptor, .timeout = 60)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    cr_assert_eq(cor_addr_parse(&a, "127.0.0.1:0"), 0);
    int lfd = cor_listen(&a, 1024, 0);
    cr_assert_geq(lfd, 0);
    cr_assert_eq(cor_local_addr(lfd, &a), 0);
    int before = open_fds();
    discarded = 0;
    for (int i = 0; i < 300; i++) {
        int client = -1;
        int r = run_on(io, NULL, COR_FRAME(accept_race(lfd, &a, &client)));
        cr_assert(r == 0 || r == 1, "round %d: %d", i, r);
        close(client);
    }
    for (int fd; (fd = accept4(lfd, NULL, NULL, SOCK_NONBLOCK)) >= 0;)
        close(fd);
    cr_assert_eq(open_fds(), before, "every accepted descriptor was closed");
    close(lfd);
    cor_io_context_destroy(io);
}

/* ---- timeouts ---- */

struct timed_recv {
    COR_PROMISE(int);
    int fd, err, r;
    int64_t ns;
};
COR_DEFINE_STATIC(timed_recv, (int fd, int64_t ns), {
    self->fd = fd;
    self->ns = ns;
})
{
    COR_BEGIN();
    self->r = 12345;
    COR_TRY_AWAIT(self->err, self->r, COR_TIMEOUT(self->ns, blocked_recv(self->fd)));
    COR_RETURN(self->err ? self->err : self->r);
}

IO_TEST(compose, timeout_fires_on_a_recv_without_data_and_not_when_faster)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(run_on(io, &cr, COR_FRAME(timed_recv(sv[0], 20 * MS))), -ETIMEDOUT);
    int64_t took = cor_clock_now() - t0;
    cr_assert_geq(took, 20 * MS, "not early");
    cr_assert_lt(took, 5000 * MS);
    cr_assert_eq(write(sv[1], "x", 1), 1);
    cr_assert_eq(run_on(io, &cr, COR_FRAME(timed_recv(sv[0], 5000 * MS))), 1,
                 "data first: the result, no timeout");
    cr_assert_eq(cr.allocs, cr.frees);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* A send_all to a peer that never reads: the timeout stops it. */
struct timed_send_all {
    COR_PROMISE(int);
    int fd, err;
    ssize_t n;
    char *buf;
};
COR_DEFINE_STATIC(timed_send_all, (int fd, char *buf), {
    self->fd = fd;
    self->buf = buf;
})
{
    COR_BEGIN();
    COR_TRY_AWAIT(self->err, self->n,
                  COR_TIMEOUT(30 * MS, cor_send_all(self->fd, self->buf, 64 << 20)));
    COR_RETURN(self->err);
}

IO_TEST(compose, timeout_stops_a_send_all_to_a_peer_that_never_reads)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    char *buf = calloc(1, 64 << 20);
    cr_assert_eq(run_on(io, NULL, COR_FRAME(timed_send_all(sv[0], buf))), -ETIMEDOUT);
    free(buf);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* Nested: the shorter deadline wins, inside or outside. */
struct nested {
    COR_PROMISE(int);
    int fd, err, r;
    int64_t inner, outer;
};
COR_DEFINE_STATIC(nested, (int fd, int64_t inner, int64_t outer), {
    self->fd = fd;
    self->inner = inner;
    self->outer = outer;
})
{
    COR_BEGIN();
    COR_TRY_AWAIT(self->err, self->r,
                  COR_TIMEOUT(self->outer, COR_TIMEOUT(self->inner, blocked_recv(self->fd))));
    COR_RETURN(self->err);
}

/* Three timeouts around one task. */
struct outer_nested {
    COR_PROMISE(int);
    int fd, err, r;
    int64_t ns;
};
COR_DEFINE_STATIC(outer_nested, (int fd, int64_t ns), {
    self->fd = fd;
    self->ns = ns;
})
{
    COR_BEGIN();
    COR_TRY_AWAIT(
        self->err, self->r,
        COR_TIMEOUT(self->ns + 2,
                    COR_TIMEOUT(self->ns + 1, COR_TIMEOUT(self->ns, blocked_recv(self->fd)))));
    COR_RETURN(self->err ? self->err : self->r);
}

IO_TEST(compose, nested_timeouts_the_earliest_wins)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    for (int k = 0; k < 2; k++) {
        int64_t t0 = cor_clock_now();
        int64_t in = k ? 20 * MS : 5000 * MS, out = k ? 5000 * MS : 20 * MS;
        cr_assert_eq(run_on(io, &cr, COR_FRAME(nested(sv[0], in, out))), -ETIMEDOUT);
        cr_assert_lt(cor_clock_now() - t0, 3000 * MS, "the 20 ms one fired (%s)",
                     k ? "inner" : "outer");
    }
    cr_assert_eq(cr.allocs, cr.frees);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* Destroyed while nested timeouts wait: every frame freed, each timeout's task once. */
IO_TEST(compose, destroying_the_context_under_nested_timeouts_frees_every_frame)
{
    for (int depth = 2; depth <= 3; depth++) {
        cor_io_context *io = io_test_create(backend, NULL);
        int sv[2];
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
        counting_resource cr;
        counting_resource_init(&cr, -1);
        int r = 1;
        cor_launch_options lo = {.alloc = &cr.base, .on_result = store_int, .user = &r};
        if (depth == 2)
            cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo,
                                       nested(sv[0], 3000 * MS, 4000 * MS)),
                         0);
        else
            cr_assert_eq(
                COR_RUN_ASYNC(cor_io_context_executor(io), &lo, outer_nested(sv[0], 5000 * MS)), 0);
        cr_assert_geq(cor_io_context_run_for(io, 20 * MS), 0);
        cr_assert_gt(cr.allocs, cr.frees, "depth %d: waiting", depth);
        cor_io_context_destroy(io);
        cr_assert_eq(r, 1, "no handler ran");
        cr_assert_eq(cr.allocs, cr.frees, "depth %d: every frame freed", depth);
        close(sv[0]);
        close(sv[1]);
    }
}

/* A task that catches the stop and returns normally: the deadline fired, so -ETIMEDOUT. */
struct stubborn {
    COR_PROMISE(int);
    int fd, r;
};
COR_DEFINE_STATIC(stubborn, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, blocked_recv(self->fd));
    COR_RETURN(self->r == -ECANCELED ? 7 : self->r); /* "handled" */
}

struct timed_stubborn {
    COR_PROMISE(int);
    int fd, err, r;
};
COR_DEFINE_STATIC(timed_stubborn, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_TRY_AWAIT(self->err, self->r, COR_TIMEOUT(10 * MS, stubborn(self->fd)));
    COR_RETURN(self->err);
}

IO_TEST(compose, timeout_of_a_task_that_catches_the_stop_is_still_etimedout)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cr_assert_eq(run_on(io, NULL, COR_FRAME(timed_stubborn(sv[0]))), -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* Bad input, and no io_context on the thread. */
struct timed_bad {
    COR_PROMISE(int);
    int err, r;
};
COR_DEFINE_STATIC(timed_bad, (void), {})
{
    COR_BEGIN();
    COR_TRY_AWAIT(self->err, self->r, COR_TIMEOUT(-1, value_after(1, 0)));
    COR_RETURN(self->err);
}

/* A duration past the clock's range never fires: the child's own result. */
struct timed_forever {
    COR_PROMISE(int);
    int err, r;
    int64_t ns;
};
COR_DEFINE_STATIC(timed_forever, (int64_t ns), { self->ns = ns; })
{
    COR_BEGIN();
    COR_TRY_AWAIT(self->err, self->r, COR_TIMEOUT(self->ns, value_after(5, 2 * MS)));
    COR_RETURN(self->err ? self->err : self->r);
}

Test(compose, timeout_beyond_the_clock_is_never)
{
    cor_io_context *io = io_test_create(COR_IO_BACKEND_URING, NULL);
    cr_assert_eq(run_on(io, NULL, COR_FRAME(timed_forever(INT64_MAX))), 5);
    cr_assert_eq(run_on(io, NULL, COR_FRAME(timed_forever(INT64_MAX - 1000))), 5);
    cor_io_context_destroy(io);
}

Test(compose, timeout_bad_duration_and_no_io_context)
{
    cor_io_context *io = io_test_create(COR_IO_BACKEND_URING, NULL);
    cr_assert_eq(run_on(io, NULL, COR_FRAME(timed_bad())), -EINVAL);
    cor_io_context_destroy(io);
    /* On a manual executor there is no timer wheel. */
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, timed_recv(-1, MS)), 0);
    cor_manual_run(m);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, -EPERM);
    cor_manual_destroy(m);
}

/* ---- task groups ---- */

/* A session: a nop, a short sleep, then counts itself; or fails with err. */
struct session {
    COR_PROMISE(int);
    long *done;
    int r, err;
    int64_t ns;
};
COR_DEFINE_STATIC(session, (long *done, int64_t ns, int err), {
    self->done = done;
    self->ns = ns;
    self->err = err;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_nop());
    COR_AWAIT(self->r, cor_sleep_for(self->ns));
    if (self->err)
        COR_FAIL(self->err);
    __atomic_fetch_add(self->done, 1, __ATOMIC_RELAXED);
    COR_RETURN(self->r);
}

struct server {
    COR_PROMISE(int);
    cor_task_group g;
    long done, n, i;
    int err, rc;
};
COR_DEFINE_STATIC(server, (long n), { self->n = n; })
{
    COR_BEGIN();
    self->done = 0;
    cor_task_group_init(&self->g, COR_THIS_STOP_TOKEN(), COR_GROUP_FAIL_FAST);
    for (self->i = 0; self->i < self->n; self->i++) {
        self->rc = COR_SPAWN(&self->g, session(&self->done, (self->i % 5) * MS, 0));
        if (self->rc)
            COR_RETURN(self->rc);
    }
    if (cor_task_group_destroy(&self->g) != -EBUSY)
        COR_RETURN(-100); /* live children: refused */
    COR_AWAIT(self->err, cor_task_group_join(&self->g));
    if (cor_task_group_size(&self->g) != 0 || cor_task_group_destroy(&self->g) != 0)
        COR_RETURN(-101);
    COR_RETURN(self->err ? self->err : (int)self->done);
}

IO_TEST_OPTS(compose, task_group_joins_a_thousand_sessions, .timeout = 60)
{
    cor_io_context *io = io_test_create(backend, NULL);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cr_assert_eq(run_on(io, &cr, COR_FRAME(server(1000))), 1000);
    cr_assert_eq(cr.allocs, cr.frees, "every child frame and record came back: %ld/%ld", cr.allocs,
                 cr.frees);
    cor_io_context_destroy(io);
}

/* Children blocked on a recv each; the group is stopped, then joined. */
struct stopped_group {
    COR_PROMISE(int);
    cor_task_group g;
    int fd, i, err;
    int canceled;
};

struct counted_recv {
    COR_PROMISE(int);
    int fd, r;
    int *canceled;
    char c;
};
COR_DEFINE_STATIC(counted_recv, (int fd, int *canceled), {
    self->fd = fd;
    self->canceled = canceled;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_recv(self->fd, &self->c, 1, 0));
    if (self->r == -ECANCELED)
        ++*self->canceled;
    COR_RETURN(self->r);
}

COR_DEFINE_STATIC(stopped_group, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    self->canceled = 0;
    cor_task_group_init(&self->g, COR_THIS_STOP_TOKEN(), COR_GROUP_FAIL_FAST);
    for (self->i = 0; self->i < 100; self->i++)
        if (COR_SPAWN(&self->g, counted_recv(self->fd, &self->canceled)))
            COR_RETURN(-1);
    COR_AWAIT_VOID(cor_sleep_for(5 * MS));
    cor_task_group_stop(&self->g);
    if (COR_SPAWN(&self->g, counted_recv(self->fd, &self->canceled)) != -ESHUTDOWN)
        COR_RETURN(-2);
    COR_AWAIT(self->err, cor_task_group_join(&self->g));
    cor_task_group_destroy(&self->g);
    COR_RETURN(self->err ? self->err : self->canceled);
}

IO_TEST(compose, task_group_stop_cancels_every_child)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cr_assert_eq(run_on(io, &cr, COR_FRAME(stopped_group(sv[0]))), 100);
    cr_assert_eq(cr.allocs, cr.frees);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* One child fails at 5 ms; the others would sleep 10 s (fail-fast) or 20 ms (collect-all). */
struct policy_group {
    COR_PROMISE(int);
    cor_task_group g;
    int policy, err, i;
    long done;
};
COR_DEFINE_STATIC(policy_group, (int policy), { self->policy = policy; })
{
    COR_BEGIN();
    self->done = 0;
    cor_task_group_init(&self->g, COR_THIS_STOP_TOKEN(), self->policy);
    for (self->i = 0; self->i < 10; self->i++)
        COR_SPAWN(&self->g, session(&self->done,
                                    self->policy == COR_GROUP_FAIL_FAST ? 10000 * MS : 20 * MS, 0));
    COR_SPAWN(&self->g, session(&self->done, 5 * MS, -EPIPE));
    COR_AWAIT(self->err, cor_task_group_join(&self->g));
    cor_task_group_destroy(&self->g);
    /* Fail-fast: the sleepers were stopped (their sleep completed with -ECANCELED, and
     * counted). Collect-all: they ran to the end. Either way the join reports -EPIPE. */
    COR_RETURN(self->err == -EPIPE ? (int)self->done : -1);
}

IO_TEST(compose, task_group_failure_policies)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(run_on(io, NULL, COR_FRAME(policy_group(COR_GROUP_FAIL_FAST))), 10);
    cr_assert_lt(cor_clock_now() - t0, 5000 * MS, "fail-fast stopped the 10 s sleepers");
    cr_assert_eq(run_on(io, NULL, COR_FRAME(policy_group(COR_GROUP_COLLECT_ALL))), 10);
    cor_io_context_destroy(io);
}

/* Spawning with no memory left: -ENOMEM, nothing started, nothing leaked. */
struct starved_group {
    COR_PROMISE(int);
    cor_task_group g;
    int rc, err;
    long done;
};
COR_DEFINE_STATIC(starved_group, (void), {})
{
    COR_BEGIN();
    self->done = 0;
    cor_task_group_init(&self->g, COR_THIS_STOP_TOKEN(), COR_GROUP_FAIL_FAST);
    do
        self->rc = COR_SPAWN(&self->g, session(&self->done, 0, 0));
    while (self->rc == 0);
    COR_AWAIT(self->err, cor_task_group_join(&self->g));
    cor_task_group_destroy(&self->g);
    COR_RETURN(self->rc == -ENOMEM && self->err == 0 && self->done == self->g.spawned ? 1 : -1);
}

Test(compose, task_group_spawn_out_of_memory)
{
    cor_io_context *io = io_test_create(COR_IO_BACKEND_URING, NULL);
    for (long budget = 1; budget < 12; budget++) {
        counting_resource cr;
        counting_resource_init(&cr, budget);
        int r = run_on(io, &cr, COR_FRAME(starved_group()));
        cr_assert(r == 1 || r == -ENOMEM, "budget %ld: %d", budget, r);
        cr_assert_eq(cr.allocs, cr.frees, "budget %ld: nothing leaked", budget);
    }
    cor_io_context_destroy(io);
}

/* Children spawned on a thread pool, joined from the io_context (TSan runs this). */
struct pool_child {
    COR_PROMISE(int);
    long *done;
};
COR_DEFINE_STATIC(pool_child, (long *done), { self->done = done; })
{
    COR_BEGIN();
    __atomic_fetch_add(self->done, 1, __ATOMIC_RELAXED);
    COR_RETURN(0);
}

struct pool_group {
    COR_PROMISE(int);
    cor_task_group g;
    cor_executor pool;
    cor_io_context *io;
    long done, i;
    int err;
};
COR_DEFINE_STATIC(pool_group, (cor_executor pool, cor_io_context *io), {
    self->pool = pool;
    self->io = io;
})
{
    COR_BEGIN();
    self->done = 0;
    cor_task_group_init(&self->g, COR_THIS_STOP_TOKEN(), COR_GROUP_FAIL_FAST);
    for (self->i = 0; self->i < 2000; self->i++)
        if (COR_SPAWN_ON(&self->g, self->pool, COR_THIS_ALLOCATOR(), pool_child(&self->done)))
            COR_RETURN(-1);
    COR_AWAIT(self->err, cor_task_group_join(&self->g));
    cor_task_group_destroy(&self->g);
    if (cor_io_context_current() != self->io)
        COR_RETURN(-2);
    COR_RETURN(self->err ? self->err : (int)__atomic_load_n(&self->done, __ATOMIC_RELAXED));
}

Test(compose, task_group_children_on_a_pool, .timeout = 60)
{
    cor_io_context *io = io_test_create(COR_IO_BACKEND_URING, NULL);
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 2), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cr_assert_eq(run_on(io, &cr, COR_FRAME(pool_group(cor_thread_pool_executor(pool), io))), 2000);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
    cr_assert_eq(cr.allocs, cr.frees);
    cor_io_context_destroy(io);
}

Test(compose, task_group_bad_input)
{
    cor_task_group g;
    cr_assert_eq(cor_task_group_init(NULL, COR_STOP_TOKEN_NEVER, 0), -EINVAL);
    cr_assert_eq(cor_task_group_init(&g, COR_STOP_TOKEN_NEVER, 7), -EINVAL);
    cr_assert_eq(cor_task_group_stop(NULL), -EINVAL);
    cr_assert_eq(cor_task_group_destroy(NULL), -EINVAL);
    cr_assert_eq(cor_task_group_size(NULL), 0);
    cr_assert_eq(cor_task_group_init(&g, COR_STOP_TOKEN_NEVER, COR_GROUP_COLLECT_ALL), 0);
    long done = 0;
    cr_assert_eq(COR_SPAWN_ON(&g, COR_EXECUTOR_NULL, NULL, pool_child(&done)), -EINVAL);
    cr_assert_eq(
        COR_SPAWN_ON((cor_task_group *)NULL, cor_inline_executor(), NULL, pool_child(&done)),
        -EINVAL);
    /* On the inline executor the child runs at once, inside the spawn. */
    cr_assert_eq(COR_SPAWN_ON(&g, cor_inline_executor(), NULL, pool_child(&done)), 0);
    cr_assert_eq(done, 1);
    cr_assert_eq(cor_task_group_size(&g), 0);
    cr_assert_eq(cor_task_group_destroy(&g), 0);
}

/* The owner's token stops the group. */
struct owned_group {
    COR_PROMISE(int);
    cor_task_group g;
    cor_stop_source *owner;
    int fd, err, canceled, i;
};
COR_DEFINE_STATIC(owned_group, (int fd, cor_stop_source *owner), {
    self->fd = fd;
    self->owner = owner;
})
{
    COR_BEGIN();
    self->canceled = 0;
    cor_task_group_init(&self->g, cor_stop_source_token(self->owner), COR_GROUP_FAIL_FAST);
    for (self->i = 0; self->i < 10; self->i++)
        COR_SPAWN(&self->g, counted_recv(self->fd, &self->canceled));
    cor_stop_source_request(self->owner);
    COR_AWAIT(self->err, cor_task_group_join(&self->g));
    cor_task_group_destroy(&self->g);
    COR_RETURN(self->canceled);
}

IO_TEST(compose, the_owners_stop_reaches_the_group)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    cor_stop_source owner = COR_STOP_SOURCE_INIT;
    cr_assert_eq(run_on(io, NULL, COR_FRAME(owned_group(sv[0], &owner))), 10);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* ---- shielding ---- */

struct shielded {
    COR_PROMISE(int);
    int r, s;
};
COR_DEFINE_STATIC(shielded, (void), {})
{
    COR_BEGIN();
    /* This coroutine's token is stopped: an unshielded sleep is canceled at once, a shielded
     * one runs to its end. */
    COR_AWAIT(self->r, cor_sleep_for(5 * MS));
    COR_AWAIT(self->s, COR_RUN(value_after(9, 5 * MS), .stop = COR_STOP_NEVER));
    COR_RETURN(self->r == -ECANCELED && self->s == 9 ? 1 : -1);
}

IO_TEST(compose, cleanup_shielded_with_the_never_stopping_token)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_stop_source_request(&src);
    int r = 0;
    cor_launch_options o = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &o, shielded()), 0);
    cor_io_context_run(io);
    cr_assert_eq(r, 1);
    cor_io_context_destroy(io);
}
