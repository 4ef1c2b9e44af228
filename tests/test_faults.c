/*
 * Fault injection at the seam (fault.h), on both backends: an echo session
 * over loopback (accept, connect, cor_send_all, cor_recv_exact, recv,
 * close) is driven through every failure point in turn -- the nth
 * operation fails, for every n until the session no longer reaches n --
 * then with every operation of one opcode failing, with short counts at
 * every point, and with each internal allocation failing in turn. Each run
 * must end cleanly: the injected error reported by the side that saw it,
 * every descriptor closed, every frame freed (a counting resource), no hang
 * (each run is bounded).
 */
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

#define MS (1000LL * 1000)
#define INJECTED (-EIO) /* the error the plans inject: nothing in a loopback session makes it */
#define MSG_LEN 3000
#define NOT_DONE 1 /* a result slot before its coroutine finished */

/* Keeps the first error of a coroutine. */
static void keep(int *first, long r)
{
    if (r < 0 && !*first)
        *first = (int)r;
}

/* The server: accepts one connection, closes the listener, echoes until the peer closes. */
struct server {
    COR_PROMISE(int);
    int lfd, fd, err;
    long n, sent;
    char buf[1024];
};
COR_DEFINE_STATIC(server, (int lfd), {
    self->lfd = lfd;
    self->err = 0;
})
{
    COR_BEGIN();
    COR_AWAIT(self->fd, cor_accept(self->lfd, NULL));
    keep(&self->err, self->fd);
    COR_AWAIT(self->n, cor_close(self->lfd));
    keep(&self->err, self->n);
    if (self->fd < 0)
        COR_RETURN(self->err);
    for (;;) {
        COR_AWAIT(self->n, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
        if (self->n <= 0) {
            keep(&self->err, self->n);
            break;
        }
        COR_AWAIT(self->sent, cor_send_all(self->fd, self->buf, (size_t)self->n));
        if (self->sent < 0) {
            keep(&self->err, self->sent);
            break;
        }
    }
    COR_AWAIT(self->n, cor_close(self->fd));
    keep(&self->err, self->n);
    COR_RETURN(self->err);
}

/* The client: connects, sends MSG_LEN bytes, reads them back, closes; then stops the server. */
struct client {
    COR_PROMISE(int);
    cor_sockaddr addr;
    cor_stop_source *server_stop;
    int fd, err;
    long n;
    char out[MSG_LEN], in[MSG_LEN];
};
COR_DEFINE_STATIC(client, (const cor_sockaddr *addr, cor_stop_source *server_stop), {
    self->addr = *addr;
    self->server_stop = server_stop;
    self->err = 0;
    for (int i = 0; i < MSG_LEN; i++)
        self->out[i] = (char)('a' + i % 26);
})
{
    COR_BEGIN();
    self->fd = cor_socket(AF_INET, SOCK_STREAM);
    if (self->fd < 0)
        COR_RETURN(self->fd);
    COR_AWAIT(self->n, cor_connect(self->fd, &self->addr));
    keep(&self->err, self->n);
    /* The connect never left: the server still waits in accept, and a supervisor stops it. (Once
     * connected, the client's close ends the server's session: stopping it as well would race its
     * end of file.) */
    if (self->err)
        cor_stop_source_request(self->server_stop);
    if (!self->err) {
        COR_AWAIT(self->n, cor_send_all(self->fd, self->out, MSG_LEN));
        keep(&self->err, self->n);
    }
    if (!self->err) {
        COR_AWAIT(self->n, cor_recv_exact(self->fd, self->in, MSG_LEN));
        keep(&self->err, self->n);
        if (!self->err && (self->n != MSG_LEN || memcmp(self->in, self->out, MSG_LEN)))
            self->err = -EBADMSG; /* the echo came back short or wrong */
    }
    COR_AWAIT(self->n, cor_close(self->fd));
    keep(&self->err, self->n);
    COR_RETURN(self->err);
}

static void store(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

static void store_error(void *user, int err)
{
    *(int *)user = err;
}

struct outcome2 {
    int server, client;
    long hits;
};

/*
 * One echo session on a fresh io_context of backend with plan f (NULL:
 * none). Checks that it ends cleanly and returns what each side reported.
 */
static struct outcome2 session(int backend, const cor_fault *f)
{
    counting_resource mr;
    counting_resource_init(&mr, -1);
    cor_io_context *io = io_test_create(backend, NULL);
    cr_assert_eq(cor_execution_context_set_resource(cor_io_context_context(io), &mr.base), 0);
    int fds_before = open_fds();
    cor_sockaddr addr;
    cr_assert_eq(cor_addr_ip(&addr, "127.0.0.1", 0), 0);
    int lfd = cor_listen(&addr, 4, 0);
    cr_assert_geq(lfd, 0);
    cr_assert_eq(cor_local_addr(lfd, &addr), 0);
    cor_stop_source stop;
    cor_stop_source_init(&stop);
    struct outcome2 o = {NOT_DONE, NOT_DONE, 0};
    if (f)
        cr_assert_eq(cor_io_context_inject_fault(io, f), 0);
    cor_launch_options ls = {.stop = cor_stop_source_token(&stop),
                             .on_result = store,
                             .on_error = store_error,
                             .user = &o.server};
    cor_launch_options lc = {.on_result = store, .on_error = store_error, .user = &o.client};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &ls, server(lfd)), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lc, client(&addr, &stop)), 0);
    /* No hang: the session is over well within 5 s, or the run fails. */
    int64_t until = cor_clock_now() + 5000 * MS;
    while ((o.server == NOT_DONE || o.client == NOT_DONE) && cor_clock_now() < until)
        cr_assert_geq(cor_io_context_run_for(io, 50 * MS), 0);
    o.hits = cor_io_context_fault_hits(io);
    cr_assert(o.server != NOT_DONE && o.client != NOT_DONE,
              "the session hung (server %d, client %d, fault hits %ld)", o.server, o.client,
              o.hits);
    cr_assert_eq(open_fds(), fds_before, "a descriptor leaked (server %d, client %d)", o.server,
                 o.client);
    cor_io_context_destroy(io);
    cr_assert_eq(mr.allocs, mr.frees, "frames leaked: %ld allocated, %ld freed", mr.allocs,
                 mr.frees);
    return o;
}

IO_TEST(faults, session_without_faults)
{
    struct outcome2 o = session(backend, NULL);
    cr_assert_eq(o.server, 0);
    cr_assert_eq(o.client, 0);
}

/* The nth operation fails, for every n the session reaches. */
IO_TEST(faults, every_failure_point_in_turn)
{
    int points = 0;
    for (long n = 1; n < 200; n++) {
        cor_fault f = {.kind = COR_FAULT_ERROR, .nth = n, .error = INJECTED};
        struct outcome2 o = session(backend, &f);
        if (!o.hits)
            break; /* the session no longer reaches an nth operation */
        points++;
        cr_assert(o.server == INJECTED || o.client == INJECTED,
                  "operation %ld failed but nobody reported it (server %d, client %d)", n, o.server,
                  o.client);
    }
    cr_log_info("%d failure points", points);
    cr_assert_geq(points, 8, "only %d failure points", points);
}

/* Every operation of one kind fails. */
IO_TEST(faults, every_operation_of_an_opcode)
{
    static const char *ops[] = {"ACCEPT", "CONNECT", "SEND", "RECV", "CLOSE"};
    for (size_t i = 0; i < sizeof ops / sizeof ops[0]; i++) {
        cor_fault f = {.kind = COR_FAULT_ERROR, .opcode = ops[i], .nth = 0, .error = INJECTED};
        struct outcome2 o = session(backend, &f);
        cr_assert_gt(o.hits, 0, "no %s was made", ops[i]);
        cr_assert(o.server == INJECTED || o.client == INJECTED,
                  "every %s failed but nobody reported it (server %d, client %d)", ops[i], o.server,
                  o.client);
    }
}

/* A short count at every point: send_all, recv_exact and the echo loop carry on. */
IO_TEST(faults, short_counts_at_every_point)
{
    int points = 0;
    for (long n = 1; n < 200; n++) {
        cor_fault f = {.kind = COR_FAULT_SHORT, .nth = n, .short_len = 1};
        struct outcome2 o = session(backend, &f);
        if (!o.hits)
            break;
        points++;
        cr_assert_eq(o.server, 0, "a short count at %ld: server %d", n, o.server);
        cr_assert_eq(o.client, 0, "a short count at %ld: client %d", n, o.client);
    }
    cr_log_info("%d short-count points", points);
    cr_assert_geq(points, 4, "only %d points", points);
    /* Every send moves one byte: still the whole message, in order. */
    cor_fault f = {.kind = COR_FAULT_SHORT, .opcode = "SEND", .nth = 0, .short_len = 1};
    struct outcome2 o = session(backend, &f);
    cr_assert_geq(o.hits, MSG_LEN);
    cr_assert_eq(o.server, 0);
    cr_assert_eq(o.client, 0);
}

/*
 * Each internal allocation fails in turn (a stop-token link, its table, the
 * epoll descriptor table): the operation that needed it fails with -ENOMEM.
 */
IO_TEST(faults, internal_allocations_fail_in_turn)
{
    int points = 0;
    for (long n = 1; n < 50; n++) {
        cor_fault f = {.kind = COR_FAULT_ALLOC, .nth = n};
        struct outcome2 o = session(backend, &f);
        if (!o.hits)
            break;
        points++;
        cr_assert(o.server == -ENOMEM || o.client == -ENOMEM,
                  "allocation %ld failed but nobody reported -ENOMEM (server %d, client %d)", n,
                  o.server, o.client);
    }
    /* The server's stop token makes a link (two allocations the first time). */
    cr_log_info("%d allocation points", points);
    cr_assert_geq(points, 2, "only %d allocation points", points);
}

/* ---- a multishot accept stream whose queue cannot grow (io_uring) ---- */

struct stream_taker {
    COR_PROMISE(int);
    cor_stream *s;
    int r;
};
COR_DEFINE_STATIC(stream_taker, (cor_stream * s), { self->s = s; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_stream_next(self->s, NULL));
    if (self->r >= 0)
        COR_AWAIT_VOID(cor_close(self->r));
    COR_RETURN(self->r);
}

Test(faults, accept_stream_queue_out_of_memory)
{
    cor_io_context_options o = {.backend = COR_IO_BACKEND_URING};
    cor_io_context *io = io_test_create(COR_IO_BACKEND_URING, &o);
    int fds_before = open_fds();
    cor_sockaddr addr;
    cr_assert_eq(cor_addr_ip(&addr, "127.0.0.1", 0), 0);
    int lfd = cor_listen(&addr, 4, 0);
    cr_assert_geq(lfd, 0);
    cr_assert_eq(cor_local_addr(lfd, &addr), 0);
    cor_stream *s;
    int rc = cor_accept_stream_open(&s, io, lfd);
    if (rc == -EOPNOTSUPP || rc == -EINVAL)
        cr_skip_test("this kernel has no multishot accept: %s", cor_strerror(rc));
    cr_assert_eq(rc, 0);
    /*
     * Connections pile up with nobody taking them until the queue must grow
     * past what the stream holds in itself; that allocation fails.
     */
    cor_fault f = {.kind = COR_FAULT_ALLOC, .nth = 1};
    cr_assert_eq(cor_io_context_inject_fault(io, &f), 0);
    enum { MOST = 16 };
    int c[MOST + 1], nc = 0;
    while (nc < MOST && cor_io_context_fault_hits(io) == 0) {
        c[nc] = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_eq(connect(c[nc], &addr.u.sa, addr.len), 0);
        nc++;
        /* A nap keeps the loop running while the accept completes. */
        int slept = 1;
        cor_launch_options nl = {.on_result = store, .user = &slept};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &nl, nap(5 * MS)), 0);
        while (slept == 1)
            cr_assert_geq(cor_io_context_run(io), 0);
    }
    cr_assert_eq(cor_io_context_fault_hits(io), 1, "the queue could not grow");
    cr_assert_eq(cor_io_context_clear_fault(io), 0);
    /* The queued connections come first, then the lost one's -ENOMEM. */
    int result, taken = 0;
    cor_launch_options lo = {.on_result = store, .user = &result};
    for (;;) {
        result = 1;
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, stream_taker(s)), 0);
        for (int i = 0; i < 100 && result == 1; i++)
            cor_io_context_run_for(io, 10 * MS);
        if (result < 0)
            break;
        taken++;
    }
    cr_assert_eq(result, -ENOMEM, "the waiter learns the connection was lost: %d", result);
    cr_assert_eq(taken, nc - 1, "every connection but the lost one was queued: %d of %d", taken,
                 nc);
    /* The next connection is queued normally. */
    c[nc] = socket(AF_INET, SOCK_STREAM, 0);
    cr_assert_eq(connect(c[nc], &addr.u.sa, addr.len), 0);
    nc++;
    result = 1;
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, stream_taker(s)), 0);
    for (int i = 0; i < 100 && result == 1; i++)
        cor_io_context_run_for(io, 10 * MS);
    cr_assert_geq(result, 0);
    cr_assert_eq(cor_stream_close(s), 0);
    cor_io_context_run_for(io, 10 * MS);
    for (int i = 0; i < nc; i++)
        close(c[i]);
    close(lfd);
    cr_assert_eq(open_fds(), fds_before);
    cor_io_context_destroy(io);
}

Test(faults, bad_plans)
{
    cor_io_context *io;
    cr_assert_eq(cor_io_context_create(&io, NULL), 0);
    cor_fault ok = {.kind = COR_FAULT_ERROR, .nth = 1, .error = -EIO};
    cr_assert_eq(cor_io_context_inject_fault(NULL, &ok), -EINVAL);
    cr_assert_eq(cor_io_context_inject_fault(io, NULL), -EINVAL);
    cor_fault bad[] = {
        {.kind = 0},
        {.kind = 9},
        {.kind = COR_FAULT_ERROR, .error = 0},
        {.kind = COR_FAULT_ERROR, .error = EIO},
        {.kind = COR_FAULT_ERROR, .error = -EIO, .nth = -1},
        {.kind = COR_FAULT_ERROR, .error = -EIO, .opcode = "FROB"},
        {.kind = COR_FAULT_SHORT, .short_len = 0},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(cor_io_context_inject_fault(io, &bad[i]), -EINVAL, "plan %zu", i);
    cr_assert_eq(cor_io_context_inject_fault(io, &ok), 0);
    cr_assert_eq(cor_io_context_fault_hits(io), 0);
    cr_assert_eq(cor_io_context_clear_fault(io), 0);
    cr_assert_eq(cor_io_context_clear_fault(NULL), -EINVAL);
    cr_assert_eq(cor_io_context_fault_hits(NULL), 0);
    cor_io_context_destroy(io);
}
