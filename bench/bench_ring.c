/*
 * bench_ring: the io_context on io_uring.
 *  1. await of cor_nop in a tight loop (B coroutines, so B nops per
 *     kernel entry) against a raw liburing loop submitting the same nops
 *     with the same batch size and the same ring flags, in the same run
 *     (the two take turns: bench_measure_paired);
 *  2. cross-thread post throughput (1 and 2 producers) and the ping-pong
 *     round-trip latency between two io_contexts on two threads, woken by
 *     IORING_OP_MSG_RING against woken by eventfd;
 *  3. timer schedule + cancel throughput against a raw liburing
 *     timeout + async-cancel loop;
 *  4. socket ping-pong: 64-byte round trips over 1 and 32 AF_UNIX stream
 *     socketpairs on one io_context (real readiness: every receive waits);
 *     on io_uring also with every socket in the registered file table
 *     (COR_FIXED), against the plain descriptors of the same run.
 *  5. the stop-token bridge: ns per nop when 1 and 10,000 operations in
 *     flight share one stop token, against the same nops with no token.
 * Each of 1-4 also runs on the epoll backend in the same run: an epoll.*
 * row has the io_uring row as its baseline (ratio > 1: epoll is slower).
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>

#include <liburing.h>
#include <coring/coring.h>

#include "harness.h"
#include "raw_ring.h"

static const cor_io_context_options bench_opts = {.sq_entries = 256, .cq_entries = 512};

static cor_io_context *make_on(int backend, unsigned flags)
{
    cor_io_context_options o = bench_opts;
    o.flags = flags;
    o.backend = backend;
    cor_io_context *io;
    if (cor_io_context_create(&io, &o)) {
        fprintf(stderr, "bench_ring: cannot create an io_context\n");
        exit(1);
    }
    return io;
}

static cor_io_context *make(unsigned flags)
{
    return make_on(COR_IO_BACKEND_URING, flags);
}

/* ---- 1. nop: coring await vs raw liburing ---- */

struct nop_loop {
    COR_PROMISE(int);
    long i, n;
    int r;
};
COR_DEFINE_STATIC(nop_loop, (long n), { self->n = n; })
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++)
        COR_AWAIT(self->r, cor_nop());
    COR_RETURN(0);
}

struct nop_arg {
    cor_io_context *io;
    struct io_uring ring;
    int batch;
};

static void coring_nops(void *arg, long iters)
{
    struct nop_arg *a = arg;
    for (int b = 0; b < a->batch; b++)
        COR_RUN_ASYNC(cor_io_context_executor(a->io), NULL, nop_loop(iters / a->batch));
    cor_io_context_run(a->io);
}

static void raw_nops(void *arg, long iters)
{
    struct nop_arg *a = arg;
    struct io_uring *r = &a->ring;
    for (long done = 0; done + a->batch <= iters; done += a->batch) {
        for (int b = 0; b < a->batch; b++) {
            struct io_uring_sqe *sqe = io_uring_get_sqe(r);
            io_uring_prep_nop(sqe);
            io_uring_sqe_set_data64(sqe, (uint64_t)b + 1);
        }
        io_uring_submit_and_wait(r, (unsigned)a->batch);
        for (int b = 0; b < a->batch; b++) {
            struct io_uring_cqe *cqe;
            while (io_uring_peek_cqe(r, &cqe) || !cqe)
                io_uring_get_events(r);
            bench_keep(cqe->res);
            io_uring_cqe_seen(r, cqe);
        }
    }
}

static void bench_nops(int batch)
{
    char name[64], base_name[64];
    snprintf(name, sizeof name, "ring.nop_await.batch%d", batch);
    snprintf(base_name, sizeof base_name, "baseline.raw_liburing_nop.batch%d", batch);
    if (!bench_enabled(name))
        return;
    struct nop_arg a = {.io = make(0), .batch = batch};
    if (bench_raw_ring_init(&a.ring, a.io, bench_opts.sq_entries, bench_opts.cq_entries)) {
        fprintf(stderr, "bench_ring: raw ring setup failed\n");
        exit(1);
    }
    long n = bench_iters(2 * 1000 * 1000) / batch * batch;
    bench_result base, r;
    bench_measure_paired(base_name, raw_nops, &a, name, coring_nops, &a, n, &base, &r);
    bench_report(&base, NULL, NULL);
    bench_report(&r, &base, NULL);
    io_uring_queue_exit(&a.ring);
    cor_io_context_destroy(a.io);
    /* On epoll a nop never leaves user space: this measures the front end. */
    snprintf(name, sizeof name, "epoll.nop_await.batch%d", batch);
    struct nop_arg e = {.io = make_on(COR_IO_BACKEND_EPOLL, 0), .batch = batch};
    bench_result er = bench_measure(name, coring_nops, &e, n);
    bench_report(&er, &r, NULL);
    cor_io_context_destroy(e.io);
}

/* ---- 2a. cross-thread post throughput ---- */

enum { POOL = 4096 };

struct xframe {
    cor_frame hdr;
    struct xbench *x;
    uint32_t busy;
};

struct xbench {
    cor_io_context *io;
    int producers;
    long per_producer, seen;
    struct xframe *frames;
};

static void release(cor_io_context *io)
{
    cor_executor ex = cor_io_context_executor(io);
    ex.ops->on_work_finished(ex.obj);
}

static cor_handle xframe_resume(cor_frame *f)
{
    struct xframe *x = (struct xframe *)f;
    __atomic_store_n(&x->busy, 0, __ATOMIC_RELEASE);
    if (++x->x->seen == x->x->producers * x->x->per_producer)
        release(x->x->io);
    return COR_NOOP;
}

struct producer {
    struct xbench *x;
    int id;
};

static void *producer_main(void *arg)
{
    struct producer *p = arg;
    cor_executor ex = cor_io_context_executor(p->x->io);
    for (long s = 0; s < p->x->per_producer; s++) {
        struct xframe *f = &p->x->frames[p->id * POOL + s % POOL];
        while (__atomic_load_n(&f->busy, __ATOMIC_ACQUIRE))
            sched_yield();
        f->busy = 1;
        ex.ops->post(ex.obj, &f->hdr);
    }
    return NULL;
}

static double post_throughput(int backend, int producers, long total)
{
    struct xbench x = {
        .io = make_on(backend, 0), .producers = producers, .per_producer = total / producers};
    x.frames = calloc((size_t)producers * POOL, sizeof *x.frames);
    for (int i = 0; i < producers * POOL; i++)
        x.frames[i] = (struct xframe){.hdr = {.resume = xframe_resume}, .x = &x};
    cor_executor ex = cor_io_context_executor(x.io);
    ex.ops->on_work_started(ex.obj);
    pthread_t th[2];
    struct producer p[2];
    uint64_t t0 = bench_now_ns();
    for (int i = 0; i < producers; i++) {
        p[i] = (struct producer){&x, i};
        pthread_create(&th[i], NULL, producer_main, &p[i]);
    }
    cor_io_context_run(x.io);
    uint64_t t1 = bench_now_ns();
    for (int i = 0; i < producers; i++)
        pthread_join(th[i], NULL);
    free(x.frames);
    cor_io_context_destroy(x.io);
    return (double)(t1 - t0) / (double)(x.per_producer * producers);
}

/* ---- 2b. ping-pong between two io_contexts ---- */

struct ball {
    cor_frame hdr;
    cor_io_context *a, *b;
    long rounds, n;
    uint64_t t0;
    uint64_t *lat;
};

static cor_handle ball_resume(cor_frame *f)
{
    struct ball *bl = (struct ball *)f;
    cor_io_context *here = cor_io_context_current();
    if (here == bl->b) {
        cor_executor_post(cor_io_context_executor(bl->a), f);
        return COR_NOOP;
    }
    uint64_t now = bench_now_ns();
    if (bl->n > 0)
        bl->lat[bl->n - 1] = now - bl->t0;
    if (bl->n++ == bl->rounds) {
        release(bl->a);
        release(bl->b);
        return COR_NOOP;
    }
    bl->t0 = bench_now_ns();
    cor_executor_post(cor_io_context_executor(bl->b), f);
    return COR_NOOP;
}

static void *run_main(void *arg)
{
    cor_io_context_run(arg);
    return NULL;
}

static int cmp_u64(const void *x, const void *y)
{
    uint64_t a = *(const uint64_t *)x, b = *(const uint64_t *)y;
    return a < b ? -1 : a > b;
}

static void ping_pong(int backend, unsigned flags, long rounds, double *p50, double *p99)
{
    struct ball bl = {.hdr = {.resume = ball_resume},
                      .a = make_on(backend, flags),
                      .b = make_on(backend, flags),
                      .rounds = rounds};
    bl.lat = calloc((size_t)rounds, sizeof *bl.lat);
    cor_executor ea = cor_io_context_executor(bl.a), eb = cor_io_context_executor(bl.b);
    ea.ops->on_work_started(ea.obj);
    eb.ops->on_work_started(eb.obj);
    pthread_t tb;
    pthread_create(&tb, NULL, run_main, bl.b);
    cor_executor_post(ea, &bl.hdr);
    cor_io_context_run(bl.a);
    pthread_join(tb, NULL);
    qsort(bl.lat, (size_t)rounds, sizeof *bl.lat, cmp_u64);
    *p50 = (double)bl.lat[rounds / 2];
    *p99 = (double)bl.lat[rounds * 99 / 100];
    free(bl.lat);
    cor_io_context_destroy(bl.a);
    cor_io_context_destroy(bl.b);
}

/* ---- 3. timer schedule + cancel ---- */

struct timer_waiter {
    COR_PROMISE(int);
    cor_timer *t;
    long *count;
    int r;
};
COR_DEFINE_STATIC(timer_waiter, (cor_timer * t, long *count), {
    self->t = t;
    self->count = count;
})
{
    COR_BEGIN();
    for (;;) {
        COR_AWAIT(self->r, cor_timer_wait(self->t));
        if (self->r != -ECANCELED)
            break;
        ++*self->count;
    }
    COR_RETURN(0);
}

struct timer_resetter {
    COR_PROMISE(int);
    cor_timer *t;
    long *count, n;
};
COR_DEFINE_STATIC(timer_resetter, (cor_timer * t, long *count, long n), {
    self->t = t;
    self->count = count;
    self->n = n;
})
{
    COR_BEGIN();
    while (*self->count < self->n) {
        /* A new expiry cancels the waiter's wait; it then waits again. */
        cor_timer_expires_after(self->t, 1000LL * 1000 * 1000);
        COR_AWAIT_VOID(cor_yield());
    }
    cor_timer_expires_at(self->t, 0); /* expire it: the waiter ends */
    COR_RETURN(0);
}

static void coring_timers(void *arg, long iters)
{
    cor_io_context *io = arg;
    cor_timer t;
    cor_timer_init(&t, io);
    long count = 0;
    COR_RUN_ASYNC(cor_io_context_executor(io), NULL, timer_waiter(&t, &count));
    COR_RUN_ASYNC(cor_io_context_executor(io), NULL, timer_resetter(&t, &count, iters));
    cor_io_context_run(io);
}

static void raw_timers(void *arg, long iters)
{
    struct io_uring *r = arg;
    struct __kernel_timespec ts = {.tv_sec = 1};
    for (long i = 0; i < iters; i++) {
        struct io_uring_sqe *sqe = io_uring_get_sqe(r);
        io_uring_prep_timeout(sqe, &ts, 0, 0);
        io_uring_sqe_set_data64(sqe, 1);
        sqe = io_uring_get_sqe(r);
        io_uring_prep_cancel64(sqe, 1, 0);
        io_uring_sqe_set_data64(sqe, 2);
        io_uring_submit_and_wait(r, 2);
        for (int k = 0; k < 2; k++) {
            struct io_uring_cqe *cqe;
            while (io_uring_peek_cqe(r, &cqe) || !cqe)
                io_uring_get_events(r);
            io_uring_cqe_seen(r, cqe);
        }
    }
}

/* ---- 4. socket ping-pong ---- */

enum { MSG = 64 };

/* A send or receive on fd, or (slot >= 0) on that registered-file slot instead. */
static struct cor_io_await *sock_op(bool send_, int fd, int slot, void *buf, uint32_t len)
{
    int d = slot >= 0 ? slot : fd;
    struct cor_io_await *a = send_ ? cor_send(d, buf, len, 0) : cor_recv(d, buf, len, 0);
    if (a && slot >= 0)
        cor_io_op_fixed(&a->op);
    return a;
}

/* Sends MSG bytes and waits for them to come back, n times; then ends the stream. */
struct pinger {
    COR_PROMISE(int);
    int fd, slot;
    long i, n;
    uint32_t got;
    char buf[MSG];
    int r;
};
COR_DEFINE_STATIC(pinger, (int fd, int slot, long n), {
    self->fd = fd;
    self->slot = slot;
    self->n = n;
})
{
    COR_BEGIN();
    memset(self->buf, 'x', sizeof self->buf);
    for (self->i = 0; self->i < self->n; self->i++) {
        COR_AWAIT(self->r, sock_op(true, self->fd, self->slot, self->buf, MSG));
        if (self->r != MSG)
            break;
        for (self->got = 0; self->got < MSG; self->got += (uint32_t)self->r) {
            COR_AWAIT(self->r, sock_op(false, self->fd, self->slot, self->buf + self->got,
                                       MSG - self->got));
            if (self->r <= 0)
                COR_RETURN(-1);
        }
    }
    shutdown(self->fd, SHUT_WR);
    COR_AWAIT(self->r, cor_close(self->fd));
    COR_RETURN(0);
}

/* Echoes what it receives until the end of the stream. */
struct ponger {
    COR_PROMISE(int);
    int fd, slot;
    char buf[MSG];
    int r, w;
};
COR_DEFINE_STATIC(ponger, (int fd, int slot), {
    self->fd = fd;
    self->slot = slot;
})
{
    COR_BEGIN();
    for (;;) {
        COR_AWAIT(self->r, sock_op(false, self->fd, self->slot, self->buf, MSG));
        if (self->r <= 0)
            break;
        COR_AWAIT(self->w,
                  sock_op(true, self->fd, self->slot, self->buf, (uint32_t)self->r));
        if (self->w != self->r)
            break;
    }
    COR_AWAIT(self->r, cor_close(self->fd));
    COR_RETURN(0);
}

struct sock_arg {
    cor_io_context *io;
    int pairs;
    bool fixed; /* every socket in the registered file table */
};

static void sock_pingpong(void *arg, long iters)
{
    struct sock_arg *a = arg;
    cor_executor ex = cor_io_context_executor(a->io);
    int fds[64];
    for (int p = 0; p < a->pairs; p++) {
        int *sv = &fds[2 * p];
        if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv)) {
            perror("bench_ring: socketpair");
            exit(1);
        }
    }
    if (a->fixed && cor_io_files_register(a->io, fds, (unsigned)(2 * a->pairs))) {
        fprintf(stderr, "bench_ring: cannot register files\n");
        exit(1);
    }
    for (int p = 0; p < a->pairs; p++) {
        COR_RUN_ASYNC(ex, NULL, ponger(fds[2 * p + 1], a->fixed ? 2 * p + 1 : -1));
        COR_RUN_ASYNC(ex, NULL, pinger(fds[2 * p], a->fixed ? 2 * p : -1, iters / a->pairs));
    }
    cor_io_context_run(a->io);
    if (a->fixed)
        cor_io_files_unregister(a->io);
}

static void bench_sockets(int pairs)
{
    char name[64], ename[64];
    snprintf(name, sizeof name, "ring.socket_ping_pong.pairs%d", pairs);
    snprintf(ename, sizeof ename, "epoll.socket_ping_pong.pairs%d", pairs);
    if (!bench_enabled(name))
        return;
    long n = bench_iters(200 * 1000) / pairs * pairs;
    struct sock_arg u = {.io = make(0), .pairs = pairs};
    struct sock_arg e = {.io = make_on(COR_IO_BACKEND_EPOLL, 0), .pairs = pairs};
    bench_result ur = bench_measure(name, sock_pingpong, &u, n);
    bench_report(&ur, NULL, NULL);
    bench_result er = bench_measure(ename, sock_pingpong, &e, n);
    bench_report(&er, &ur, NULL);
    snprintf(name, sizeof name, "ring.socket_ping_pong_fixed.pairs%d", pairs);
    u.fixed = true;
    bench_result fr = bench_measure(name, sock_pingpong, &u, n);
    bench_report(&fr, &ur, NULL);
    cor_io_context_destroy(u.io);
    cor_io_context_destroy(e.io);
}

/* ---- 5. stop-token cost per operation ---- */

struct stop_arg {
    cor_io_context *io;
    int ops;          /* coroutines, each with one nop in flight at a time */
    cor_stop_source *src; /* shared by every coroutine, or NULL: no token */
};

static void stop_nops(void *arg, long iters)
{
    struct stop_arg *a = arg;
    cor_launch_options lo = {0};
    if (a->src)
        lo.stop = cor_stop_source_token(a->src);
    for (int b = 0; b < a->ops; b++)
        COR_RUN_ASYNC(cor_io_context_executor(a->io), &lo, nop_loop(iters / a->ops));
    cor_io_context_run(a->io);
}

/*
 * ring.nop_stop_token.opsN: N coroutines await nops under one shared stop
 * source, so N operations are linked to it at once; the baseline is the
 * same N without a token. The ratio is the bridge's cost per operation.
 */
static void bench_stop_cost(int ops)
{
    char name[64], base_name[64];
    snprintf(name, sizeof name, "ring.nop_stop_token.ops%d", ops);
    snprintf(base_name, sizeof base_name, "baseline.nop_no_token.ops%d", ops);
    if (!bench_enabled(name))
        return;
    cor_io_context_options o = bench_opts;
    o.sq_entries = 4096;
    o.cq_entries = 16384;
    cor_io_context *io;
    if (cor_io_context_create(&io, &o)) {
        fprintf(stderr, "bench_ring: cannot create an io_context\n");
        exit(1);
    }
    cor_stop_source src;
    cor_stop_source_init(&src);
    long n = bench_iters(2 * 1000 * 1000) / ops * ops;
    struct stop_arg base = {.io = io, .ops = ops}, tok = {.io = io, .ops = ops, .src = &src};
    bench_result b = bench_measure(base_name, stop_nops, &base, n);
    bench_report(&b, NULL, NULL);
    bench_result t = bench_measure(name, stop_nops, &tok, n);
    bench_report(&t, &b, NULL);
    cor_io_context_destroy(io);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);

    bench_nops(1);
    bench_nops(16);

    if (bench_enabled("ring.post_throughput")) {
        long total = bench_iters(4 * 1000 * 1000);
        double one = post_throughput(COR_IO_BACKEND_URING, 1, total);
        double two = post_throughput(COR_IO_BACKEND_URING, 2, total);
        double eone = post_throughput(COR_IO_BACKEND_EPOLL, 1, total);
        double etwo = post_throughput(COR_IO_BACKEND_EPOLL, 2, total);
        bench_report_value("ring.post_throughput.1_producer", "ns/post", one, NULL, 0);
        bench_report_value("ring.post_throughput.2_producers", "ns/post", two,
                           "ring.post_throughput.1_producer", one);
        bench_report_value("epoll.post_throughput.1_producer", "ns/post", eone,
                           "ring.post_throughput.1_producer", one);
        bench_report_value("epoll.post_throughput.2_producers", "ns/post", etwo,
                           "ring.post_throughput.2_producers", two);
    }
    if (bench_enabled("ring.ping_pong")) {
        long rounds = bench_iters(100000);
        double e50, e99, m50, m99, p50, p99;
        ping_pong(COR_IO_BACKEND_URING, COR_IO_WAKE_EVENTFD, rounds, &e50, &e99);
        ping_pong(COR_IO_BACKEND_URING, 0, rounds, &m50, &m99);
        ping_pong(COR_IO_BACKEND_EPOLL, 0, rounds, &p50, &p99);
        bench_report_value("baseline.ping_pong_eventfd.p50", "ns/round_trip", e50, NULL, 0);
        bench_report_value("baseline.ping_pong_eventfd.p99", "ns/round_trip", e99, NULL, 0);
        bench_report_value("ring.ping_pong_msg_ring.p50", "ns/round_trip", m50,
                           "baseline.ping_pong_eventfd.p50", e50);
        bench_report_value("ring.ping_pong_msg_ring.p99", "ns/round_trip", m99,
                           "baseline.ping_pong_eventfd.p99", e99);
        bench_report_value("epoll.ping_pong_eventfd.p50", "ns/round_trip", p50,
                           "ring.ping_pong_msg_ring.p50", m50);
        bench_report_value("epoll.ping_pong_eventfd.p99", "ns/round_trip", p99,
                           "ring.ping_pong_msg_ring.p99", m99);
    }
    if (bench_enabled("ring.timer_schedule_cancel")) {
        cor_io_context *io = make(0);
        struct io_uring r;
        if (bench_raw_ring_init(&r, io, bench_opts.sq_entries, bench_opts.cq_entries))
            return 1;
        long n = bench_iters(500 * 1000);
        bench_result base =
            bench_measure("baseline.raw_liburing_timeout_cancel", raw_timers, &r, n);
        bench_report(&base, NULL, NULL);
        bench_result t = bench_measure("ring.timer_schedule_cancel", coring_timers, io, n);
        bench_report(&t, &base, NULL);
        io_uring_queue_exit(&r);
        cor_io_context_destroy(io);
        cor_io_context *eio = make_on(COR_IO_BACKEND_EPOLL, 0);
        bench_result et = bench_measure("epoll.timer_schedule_cancel", coring_timers, eio, n);
        bench_report(&et, &t, NULL);
        cor_io_context_destroy(eio);
    }
    bench_sockets(1);
    bench_sockets(32);
    bench_stop_cost(1);
    bench_stop_cost(10000);
    return 0;
}
