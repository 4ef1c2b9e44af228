/*
 * Sockets on both backends (loopback only, every wait bounded): echo round
 * trips over IPv4, IPv6 and Unix sockets, a thousand connections on one
 * io_context, peer reset and half-close, cancellation of a pending accept
 * and recv (same thread and cross-thread), a connect deadline, recv on a
 * closed descriptor, UDP, address helpers, name resolution, multishot
 * accept and receive streams with a provided buffer ring run dry.
 */
#include <fcntl.h>
#include <limits.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <sys/utsname.h>
#include <unistd.h>
#include <sys/wait.h>
#include <criterion/criterion.h>

#include "internal.h" /* COR__TSAN */
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

/* COR_RUN_ASYNC needs the task expression inside it; the frame is already allocated here. */
static int start_on(cor_io_context *io, const cor_launch_options *o, cor_frame *t)
{
    return COR_RUN_ASYNC(cor_io_context_executor(io), o, t);
}

/* Launches t on io with stop token st (may be a default token), result into *res. */
static void launch(cor_io_context *io, cor_frame *t, int *res, cor_stop_token st)
{
    *res = -9999;
    cor_launch_options o = {.stop = st, .on_result = store_int, .on_error = store_err, .user = res};
    cr_assert_eq(start_on(io, &o, t), 0);
}

static cor_stop_token no_stop(void)
{
    cor_stop_token t;
    memset(&t, 0, sizeof t);
    return t;
}

/* A listening socket on text's address (port 0 for IP); skips when the family is unavailable. */
static int listen_on(const char *text, cor_sockaddr *bound, int backlog)
{
    cor_sockaddr a;
    cr_assert_eq(cor_addr_parse(&a, text), 0, "parse %s", text);
    int fd = cor_listen(&a, backlog, 0);
    if (fd == -EADDRNOTAVAIL || fd == -EAFNOSUPPORT)
        cr_skip_test("%s is not available here: %s", text, cor_strerror(fd));
    cr_assert_geq(fd, 0, "listen %s: %s", text, cor_strerror(fd));
    if (a.u.sa.sa_family == AF_UNIX)
        *bound = a;
    else
        cr_assert_eq(cor_local_addr(fd, bound), 0);
    return fd;
}

/* ---- echo server and client coroutines ---- */

struct echo_conn {
    COR_PROMISE(int);
    int fd, n;
    ssize_t w;
    long total;
    char buf[1024];
};
COR_DEFINE_STATIC(echo_conn, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    self->total = 0;
    for (;;) {
        COR_AWAIT(self->n, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
        if (self->n <= 0)
            break;
        self->total += self->n;
        COR_AWAIT(self->w, cor_send_all(self->fd, self->buf, (size_t)self->n));
        if (self->w < 0)
            break;
    }
    COR_AWAIT(self->n, cor_close(self->fd));
    COR_RETURN((int)self->total);
}

/* Accepts n connections, each served by an echo_conn; returns how many were accepted. */
struct echo_server {
    COR_PROMISE(int);
    int lfd, n, i, c;
    int *results;
};
COR_DEFINE_STATIC(echo_server, (int lfd, int n, int *results), {
    self->lfd = lfd;
    self->n = n;
    self->results = results;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        cor_sockaddr peer;
        (void)peer;
        COR_AWAIT(self->c, cor_accept(self->lfd, NULL));
        if (self->c < 0)
            COR_RETURN(self->c);
        cor_launch_options o = {.on_result = store_int, .user = &self->results[self->i]};
        if (COR_RUN_ASYNC(COR_THIS_EXECUTOR(), &o, echo_conn(self->c)))
            COR_RETURN(-ENOMEM);
    }
    COR_RETURN(self->i);
}

/* Connects, sends msgs messages of size bytes (pattern from id and sequence), checks each echo. */
struct echo_client {
    COR_PROMISE(int);
    const cor_sockaddr *addr;
    int id, msgs, size, i, fd, r;
    ssize_t n;
    char out[256], in[256];
};
COR_DEFINE_STATIC(echo_client, (const cor_sockaddr *addr, int id, int msgs, int size), {
    self->addr = addr;
    self->id = id;
    self->msgs = msgs;
    self->size = size;
})
{
    COR_BEGIN();
    self->fd = cor_socket(self->addr->u.sa.sa_family, SOCK_STREAM);
    if (self->fd < 0)
        COR_RETURN(self->fd);
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_connect(self->fd, self->addr), 5000 * MS));
    if (self->r < 0)
        goto out;
    for (self->i = 0; self->i < self->msgs; self->i++) {
        for (int k = 0; k < self->size; k++)
            self->out[k] = (char)(self->id * 31 + self->i * 7 + k);
        COR_AWAIT(self->n, cor_send_all(self->fd, self->out, (size_t)self->size));
        if (self->n != self->size) {
            self->r = -EIO;
            goto out;
        }
        COR_AWAIT(self->n, cor_recv_exact(self->fd, self->in, (size_t)self->size));
        if (self->n != self->size || memcmp(self->in, self->out, (size_t)self->size)) {
            self->r = -EPROTO; /* lost, reordered or mixed up with another connection */
            goto out;
        }
    }
    self->r = self->msgs;
out:
    COR_AWAIT(self->n, cor_shutdown(self->fd, SHUT_WR));
    COR_AWAIT(self->n, cor_close(self->fd));
    COR_RETURN(self->r);
}

static void echo_roundtrip(int backend, const char *text)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    int lfd = listen_on(text, &a, 16);
    int conn_res[2], srv, cli[2];
    launch(io, COR_FRAME(echo_server(lfd, 2, conn_res)), &srv, no_stop());
    launch(io, COR_FRAME(echo_client(&a, 1, 50, 200)), &cli[0], no_stop());
    launch(io, COR_FRAME(echo_client(&a, 2, 50, 17)), &cli[1], no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(srv, 2);
    cr_assert_eq(cli[0], 50, "client 1: %s", cor_strerror(cli[0]));
    cr_assert_eq(cli[1], 50, "client 2: %s", cor_strerror(cli[1]));
    cr_assert_eq(conn_res[0] + conn_res[1], 50 * 200 + 50 * 17, "every byte was echoed");
    close(lfd);
    if (a.u.sa.sa_family == AF_UNIX)
        unlink(a.u.un.sun_path);
    cor_io_context_destroy(io);
}

IO_TEST(net, echo_ipv4)
{
    echo_roundtrip(backend, "127.0.0.1:0");
}

IO_TEST(net, echo_ipv6)
{
    echo_roundtrip(backend, "[::1]:0");
}

IO_TEST(net, echo_unix)
{
    char path[64];
    snprintf(path, sizeof path, "/tmp/coring-net-%d-%d.sock", (int)getpid(), backend);
    echo_roundtrip(backend, path);
}

IO_TEST(net, echo_unix_abstract)
{
    char path[64];
    snprintf(path, sizeof path, "@coring-net-%d-%d", (int)getpid(), backend);
    echo_roundtrip(backend, path);
}

/* ---- a thousand connections ---- */

IO_TEST(net, thousand_connections_no_loss_no_reorder)
{
    enum { N = 1000, MSGS = 5, SIZE = 100 };
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    if (rl.rlim_cur < 2 * N + 64) {
        if (rl.rlim_max < 2 * N + 64)
            cr_skip_test("RLIMIT_NOFILE hard limit %ld is below %d", (long)rl.rlim_max, 2 * N + 64);
        rl.rlim_cur = 2 * N + 64;
        cr_assert_eq(setrlimit(RLIMIT_NOFILE, &rl), 0);
    }
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    int lfd = listen_on("127.0.0.1:0", &a, 4096);
    int *conn_res = calloc(N, sizeof *conn_res), *cli = calloc(N, sizeof *cli), srv;
    launch(io, COR_FRAME(echo_server(lfd, N, conn_res)), &srv, no_stop());
    for (int i = 0; i < N; i++)
        launch(io, COR_FRAME(echo_client(&a, i, MSGS, SIZE)), &cli[i], no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(srv, N);
    long total = 0;
    for (int i = 0; i < N; i++) {
        cr_assert_eq(cli[i], MSGS, "client %d: %s", i, cor_strerror(cli[i]));
        total += conn_res[i];
    }
    cr_assert_eq(total, (long)N * MSGS * SIZE);
    free(conn_res);
    free(cli);
    close(lfd);
    cor_io_context_destroy(io);
}

/* ---- peer reset and half-close ---- */

struct reset_peer {
    COR_PROMISE(int);
    const cor_sockaddr *addr;
    int fd, r;
    bool reset;
    ssize_t n;
    char buf[16];
};
COR_DEFINE_STATIC(reset_peer, (const cor_sockaddr *addr, bool reset), {
    self->addr = addr;
    self->reset = reset;
})
{
    COR_BEGIN();
    self->fd = cor_socket(AF_INET, SOCK_STREAM);
    COR_AWAIT(self->r, cor_connect(self->fd, self->addr));
    if (self->r < 0)
        COR_RETURN(self->r);
    COR_AWAIT(self->n, cor_send_all(self->fd, "ping", 4));
    if (self->reset) {
        /* Linger 0: close sends a reset instead of a FIN. */
        struct linger l = {1, 0};
        setsockopt(self->fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
        COR_AWAIT(self->r, cor_sleep_for(20 * MS));
        COR_AWAIT(self->r, cor_close(self->fd));
        COR_RETURN(0);
    }
    /* Half-close: no more from us, yet the answer still arrives. */
    COR_AWAIT(self->r, cor_shutdown(self->fd, SHUT_WR));
    COR_AWAIT(self->n, cor_recv_exact(self->fd, self->buf, 4));
    self->r = self->n == 4 && !memcmp(self->buf, "pong", 4) ? 1 : -EPROTO;
    COR_AWAIT(self->n, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
    if (self->n != 0)
        self->r = -EPROTO; /* the server closed after answering */
    COR_AWAIT(self->n, cor_close(self->fd));
    COR_RETURN(self->r);
}

/* Server side: reads "ping", then reads again: the second read's result is returned. */
struct reset_server {
    COR_PROMISE(int);
    int lfd, fd, r;
    bool answer;
    ssize_t n;
    char buf[16];
};
COR_DEFINE_STATIC(reset_server, (int lfd, bool answer), {
    self->lfd = lfd;
    self->answer = answer;
})
{
    COR_BEGIN();
    COR_AWAIT(self->fd, cor_accept(self->lfd, NULL));
    if (self->fd < 0)
        COR_RETURN(self->fd);
    COR_AWAIT(self->n, cor_recv_exact(self->fd, self->buf, 4));
    if (self->n != 4)
        COR_RETURN(-EPROTO);
    if (!self->answer) {
        COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_recv(self->fd, self->buf, sizeof self->buf, 0),
                                              5000 * MS));
    } else {
        COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_recv(self->fd, self->buf, sizeof self->buf, 0),
                                              5000 * MS));
        COR_AWAIT(self->n, cor_send_all(self->fd, "pong", 4));
    }
    COR_AWAIT(self->n, cor_close(self->fd));
    COR_RETURN(self->r);
}

IO_TEST(net, peer_reset)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    int lfd = listen_on("127.0.0.1:0", &a, 4);
    int srv, cli;
    launch(io, COR_FRAME(reset_server(lfd, false)), &srv, no_stop());
    launch(io, COR_FRAME(reset_peer(&a, true)), &cli, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(cli, 0);
    cr_assert_eq(srv, -ECONNRESET, "recv after a reset: %s", cor_strerror(srv));
    close(lfd);
    cor_io_context_destroy(io);
}

IO_TEST(net, half_close)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    int lfd = listen_on("127.0.0.1:0", &a, 4);
    int srv, cli;
    launch(io, COR_FRAME(reset_server(lfd, true)), &srv, no_stop());
    launch(io, COR_FRAME(reset_peer(&a, false)), &cli, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(srv, 0, "the server sees end of stream: %s", cor_strerror(srv));
    cr_assert_eq(cli, 1, "the answer arrives after our shutdown: %s", cor_strerror(cli));
    close(lfd);
    cor_io_context_destroy(io);
}

/* ---- cancellation ---- */

struct waiter {
    COR_PROMISE(int);
    int fd, r;
    bool accept;
    char buf[8];
};
COR_DEFINE_STATIC(waiter, (int fd, bool accept), {
    self->fd = fd;
    self->accept = accept;
})
{
    COR_BEGIN();
    if (self->accept)
        COR_AWAIT(self->r, cor_accept(self->fd, NULL));
    else
        COR_AWAIT(self->r, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
    COR_RETURN(self->r);
}

struct stopper {
    COR_PROMISE(int);
    cor_stop_source *src;
    int r;
};
COR_DEFINE_STATIC(stopper, (cor_stop_source * src), { self->src = src; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(20 * MS));
    cor_stop_source_request(self->src);
    COR_RETURN(0);
}

static void *stop_later(void *arg)
{
    struct timespec ts = {0, 30 * 1000 * 1000};
    nanosleep(&ts, NULL);
    cor_stop_source_request(arg);
    return NULL;
}

static void cancel_case(int backend, bool accept, bool cross_thread)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    int lfd = listen_on("127.0.0.1:0", &a, 4);
    int sv[2] = {-1, -1};
    if (!accept)
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    cor_stop_source src;
    cor_stop_source_init(&src);
    int r, s;
    launch(io, COR_FRAME(waiter(accept ? lfd : sv[0], accept)), &r, cor_stop_source_token(&src));
    pthread_t t;
    if (cross_thread)
        cr_assert_eq(pthread_create(&t, NULL, stop_later, &src), 0);
    else
        launch(io, COR_FRAME(stopper(&src)), &s, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    if (cross_thread)
        pthread_join(t, NULL);
    cr_assert_eq(r, -ECANCELED, "%s canceled: %s", accept ? "accept" : "recv", cor_strerror(r));
    close(lfd);
    if (sv[0] >= 0) {
        /* The socket is still usable: nothing was consumed. */
        cr_assert_eq(write(sv[1], "x", 1), 1);
        char c;
        cr_assert_eq(read(sv[0], &c, 1), 1);
        close(sv[0]);
        close(sv[1]);
    }
    cor_io_context_destroy(io);
}

IO_TEST(net, cancel_accept_same_thread)
{
    cancel_case(backend, true, false);
}

IO_TEST(net, cancel_accept_cross_thread)
{
    cancel_case(backend, true, true);
}

IO_TEST(net, cancel_recv_same_thread)
{
    cancel_case(backend, false, false);
}

IO_TEST(net, cancel_recv_cross_thread)
{
    cancel_case(backend, false, true);
}

/* ---- close cancels what is pending on the descriptor ---- */

struct closer {
    COR_PROMISE(int);
    int fd, r;
};
COR_DEFINE_STATIC(closer, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(10 * MS));
    COR_AWAIT(self->r, cor_close(self->fd));
    COR_RETURN(self->r);
}

IO_TEST(net, close_cancels_pending_recv)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int r, c;
    launch(io, COR_FRAME(waiter(sv[0], false)), &r, no_stop());
    launch(io, COR_FRAME(closer(sv[0])), &c, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(c, 0, "close: %s", cor_strerror(c));
    cr_assert_eq(r, -ECANCELED, "the pending recv: %s", cor_strerror(r));
    cr_assert_eq(fcntl(sv[0], F_GETFD), -1, "the descriptor is closed");
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* ---- connect deadline ---- */

struct connector {
    COR_PROMISE(int);
    const cor_sockaddr *addr;
    int64_t ns;
    int fd, r;
};
COR_DEFINE_STATIC(connector, (const cor_sockaddr *addr, int64_t ns), {
    self->addr = addr;
    self->ns = ns;
})
{
    COR_BEGIN();
    self->fd = cor_socket(AF_INET, SOCK_STREAM);
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_connect(self->fd, self->addr), self->ns));
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(self->r);
}

/*
 * A closed loopback port refuses at once, so the deadline needs a listener
 * that never answers: a socket listening with backlog 0 whose accept queue
 * is filled by connections nobody accepts. Linux then drops further SYNs
 * (the client keeps retransmitting), and the connect waits until its
 * deadline. Everything stays on 127.0.0.1.
 */
IO_TEST(net, connect_deadline_on_a_full_backlog)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    int lfd = listen_on("127.0.0.1:0", &a, 1);
    int fill[4];
    for (int i = 0; i < 4; i++)
        launch(io, COR_FRAME(connector(&a, 200 * MS)), &fill[i], no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    int filled = 0;
    for (int i = 0; i < 4; i++)
        filled += fill[i] == 0;
    cr_assert_geq(filled, 1, "the accept queue took some connections");
    int r;
    int64_t t0 = cor_clock_now();
    launch(io, COR_FRAME(connector(&a, 100 * MS)), &r, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    int64_t took = cor_clock_now() - t0;
    cr_assert_eq(r, -ETIME, "connect to a full backlog: %s", cor_strerror(r));
    cr_assert_geq(took, 90 * MS, "not before the deadline");
    close(lfd);
    cor_io_context_destroy(io);
}

IO_TEST(net, connect_refused)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    int lfd = listen_on("127.0.0.1:0", &a, 1);
    close(lfd); /* the port is now closed: refused at once */
    int r;
    launch(io, COR_FRAME(connector(&a, 5000 * MS)), &r, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, -ECONNREFUSED, "%s", cor_strerror(r));
    cor_io_context_destroy(io);
}

/* ---- bad descriptors ---- */

IO_TEST(net, recv_on_a_closed_descriptor)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int fd = cor_socket(AF_INET, SOCK_STREAM);
    cr_assert_geq(fd, 0);
    close(fd);
    int r;
    launch(io, COR_FRAME(waiter(fd, false)), &r, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, -EBADF, "%s", cor_strerror(r));
    launch(io, COR_FRAME(waiter(-1, false)), &r, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, -EBADF, "fd -1: %s", cor_strerror(r));
    cor_io_context_destroy(io);
}

/* ---- UDP ---- */

struct udp_pair {
    COR_PROMISE(int);
    int a, b, r;
    const cor_sockaddr *to;
    cor_sockaddr from;
    char buf[64];
};
COR_DEFINE_STATIC(udp_pair, (int a, int b, const cor_sockaddr *to), {
    self->a = a;
    self->b = b;
    self->to = to;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sendto(self->a, "datagram", 8, 0, self->to));
    if (self->r != 8)
        COR_RETURN(-EIO);
    COR_AWAIT(self->r,
              COR_DEADLINE_AFTER(cor_recvfrom(self->b, self->buf, sizeof self->buf, 0, &self->from),
                                 5000 * MS));
    if (self->r != 8 || memcmp(self->buf, "datagram", 8))
        COR_RETURN(-EPROTO);
    cor_sockaddr mine;
    cor_local_addr(self->a, &mine);
    COR_RETURN(cor_addr_port(&self->from) == cor_addr_port(&mine) ? 1 : -EPROTO);
}

IO_TEST(net, udp_sendto_recvfrom)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr any, bb;
    cor_addr_parse(&any, "127.0.0.1:0");
    int a = cor_udp_bind(&any, 0), b = cor_udp_bind(&any, 0);
    cr_assert_geq(a, 0);
    cr_assert_geq(b, 0);
    cor_local_addr(b, &bb);
    int r;
    launch(io, COR_FRAME(udp_pair(a, b, &bb)), &r, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, 1, "%s", cor_strerror(r));
    close(a);
    close(b);
    cor_io_context_destroy(io);
}

/* ---- address helpers and setup errors ---- */

Test(net, address_parsing)
{
    cor_sockaddr a;
    char buf[128];
    cr_assert_eq(cor_addr_parse(&a, "127.0.0.1:8080"), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET);
    cr_assert_eq(cor_addr_port(&a), 8080);
    cr_assert_eq(cor_addr_format(&a, buf, sizeof buf), 14);
    cr_assert_str_eq(buf, "127.0.0.1:8080");
    cr_assert_eq(cor_addr_parse(&a, "[::1]:80"), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_INET6);
    cr_assert_eq(cor_addr_port(&a), 80);
    cor_addr_format(&a, buf, sizeof buf);
    cr_assert_str_eq(buf, "[::1]:80");
    cr_assert_eq(cor_addr_parse(&a, "/tmp/x.sock"), 0);
    cr_assert_eq(a.u.sa.sa_family, AF_UNIX);
    cor_addr_format(&a, buf, sizeof buf);
    cr_assert_str_eq(buf, "/tmp/x.sock");
    cr_assert_eq(cor_addr_parse(&a, "unix:rel.sock"), 0);
    cor_addr_format(&a, buf, sizeof buf);
    cr_assert_str_eq(buf, "unix:rel.sock");
    cr_assert_eq(cor_addr_parse(&a, "@abstract"), 0);
    cor_addr_format(&a, buf, sizeof buf);
    cr_assert_str_eq(buf, "@abstract");
    cr_assert_eq(cor_addr_port(&a), -EINVAL, "a Unix address has no port");

    const char *bad[] = {"",
                         "127.0.0.1",
                         "127.0.0.1:",
                         "127.0.0.1:65536",
                         "127.0.0.1:-1",
                         "127.0.0.1:80x",
                         "1.2.3:80",
                         "::1:80",
                         "[::1]80",
                         "[::1]:",
                         "[127.0.0.1]:80",
                         "[]:80",
                         "localhost:80",
                         ":80",
                         "unix:",
                         "@",
                         "256.0.0.1:1"};
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        memset(&a, 0x5a, sizeof a);
        cr_assert_eq(cor_addr_parse(&a, bad[i]), -EINVAL, "\"%s\" is refused", bad[i]);
        cr_assert_eq(((unsigned char *)&a)[0], 0x5a, "and *out is untouched");
    }
    char longpath[200];
    memset(longpath, 'a', sizeof longpath - 1);
    longpath[0] = '/';
    longpath[sizeof longpath - 1] = '\0';
    cr_assert_eq(cor_addr_parse(&a, longpath), -EINVAL, "a path longer than sun_path");
    cr_assert_eq(cor_addr_parse(NULL, "1.2.3.4:5"), -EINVAL);
    cr_assert_eq(cor_addr_parse(&a, NULL), -EINVAL);
    cor_addr_parse(&a, "127.0.0.1:8080");
    cr_assert_eq(cor_addr_format(&a, buf, 5), -ENOSPC);
    cr_assert_eq(cor_addr_format(NULL, buf, 5), -EINVAL);
    cr_assert_eq(cor_addr_ip(&a, "::1", 70000), -EINVAL);
    cr_assert_eq(cor_addr_ip(&a, "::1", 7), 0);
    cr_assert_eq(cor_addr_port(&a), 7);
}

Test(net, setup_errors)
{
    cr_assert_eq(cor_socket(12345, SOCK_STREAM), -EINVAL);
    cr_assert_eq(cor_socket(AF_INET, 12345), -EINVAL);
    cr_assert_eq(cor_listen(NULL, 1, 0), -EINVAL);
    cor_sockaddr a;
    cor_addr_parse(&a, "127.0.0.1:0");
    cr_assert_eq(cor_listen(&a, 1, 1u << 20), -EINVAL, "unknown options");
    int fd = cor_listen(&a, 1, COR_NET_REUSEPORT);
    cr_assert_geq(fd, 0);
    cor_sockaddr b;
    cr_assert_eq(cor_local_addr(fd, &b), 0);
    int fd2 = cor_listen(&b, 1, COR_NET_REUSEPORT);
    cr_assert_geq(fd2, 0, "SO_REUSEPORT: a second listener on the same port");
    int fd3 = cor_listen(&b, 1, 0);
    cr_assert_eq(fd3, -EADDRINUSE, "without it the port is taken");
    close(fd);
    close(fd2);
    cr_assert_eq(cor_local_addr(-1, &b), -EBADF);
    cr_assert_eq(cor_local_addr(0, NULL), -EINVAL);
}

/* ---- name resolution ---- */

struct resolver_in {
    COR_PROMISE(int);
    const char *host, *service;
    cor_sockaddr *out;
    int family, r;
};
COR_DEFINE_STATIC(resolver_in,
                  (int family, const char *host, const char *service, cor_sockaddr *out), {
                      self->family = family;
                      self->host = host;
                      self->service = service;
                      self->out = out;
                  })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_resolve(self->host, self->service, self->family, 0, self->out, 4));
    COR_RETURN(self->r);
}

#define resolver(host, service, out) resolver_in(AF_INET, host, service, out)

IO_TEST(net, resolve_numeric_and_localhost)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr out[4];
    int r1, r2, r3, r4;
    launch(io, COR_FRAME(resolver("127.0.0.1", "8080", out)), &r1, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r1, 1, "%s", cor_strerror(r1));
    cr_assert_eq(cor_addr_port(&out[0]), 8080);
    launch(io, COR_FRAME(resolver("localhost", "80", out)), &r2, no_stop());
    launch(io, COR_FRAME(resolver("127.0.0.1", "no-such-service-coring", out)), &r3, no_stop());
    launch(io, COR_FRAME(resolver(NULL, NULL, out)), &r4, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    /* A numeric port above 65535 is refused (the resolver would wrap it), 65535 is not. */
    int r5, r6;
    launch(io, COR_FRAME(resolver("127.0.0.1", "70000", out)), &r5, no_stop());
    launch(io, COR_FRAME(resolver("127.0.0.1", "65535", out)), &r6, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r5, -EINVAL);
    cr_assert_eq(r6, 1, "%s", cor_strerror(r6));
    cr_assert_eq(cor_addr_port(&out[0]), 65535);
    launch(io, COR_FRAME(resolver("127.0.0.1", "99999999999999999999999", out)), &r5, no_stop());
    launch(io, COR_FRAME(resolver("127.0.0.1", "0000080", out)), &r6, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r5, -EINVAL, "a port past unsigned long");
    cr_assert_eq(r6, 1, "leading zeros: %s", cor_strerror(r6));
    cr_assert_eq(cor_addr_port(&out[0]), 80);
    /* getaddrinfo reads a port with strtoul: leading blanks and a sign too. */
    static const char *wrapping[] = {" 65617", "+65617", "\t70000", "-1", " -80"};
    for (size_t i = 0; i < sizeof wrapping / sizeof wrapping[0]; i++) {
        launch(io, COR_FRAME(resolver("127.0.0.1", wrapping[i], out)), &r5, no_stop());
        cr_assert_geq(cor_io_context_run(io), 0);
        cr_assert_eq(r5, -EINVAL, "service \"%s\": %d", wrapping[i], r5);
    }
    /* An address of another family than the one asked for: no such name, not -EIO. */
    launch(io, COR_FRAME(resolver_in(AF_INET6, "127.0.0.1", "80", out)), &r5, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r5, -ENOENT, "%s", cor_strerror(r5));
    if (r2 == -ENOENT || r2 == -EAGAIN)
        cr_log_warn("localhost does not resolve here: %s", cor_strerror(r2));
    else
        cr_assert_geq(r2, 1, "%s", cor_strerror(r2));
    cr_assert_eq(r3, -ENOENT, "%s", cor_strerror(r3));
    cr_assert_eq(r4, -EINVAL);
    cor_io_context_destroy(io);
}

/*
 * An io_context destroyed while lookups it awaits are on the resolver's
 * threads destroys their coroutines at once (no handler runs); the lookups
 * finish on those threads and reach nothing of the freed context (the ASan
 * build checks, after a pause for them to land).
 */
IO_TEST(net, a_context_destroyed_while_resolving_destroys_the_waiting_coroutines)
{
    enum { N = 20 };
    static cor_sockaddr out[N][4];
    int r[N];
    for (int round = 0; round < 3; round++) {
        cor_io_context *io = io_test_create(backend, NULL);
        for (int i = 0; i < N; i++)
            launch(io, COR_FRAME(resolver(i % 2 ? "localhost" : "127.0.0.1", "80", out[i])), &r[i],
                   no_stop());
        cr_assert_geq(cor_io_context_poll(io), 0);
        cor_io_context_destroy(io);
        /* Done before the destroy (a result), or destroyed with it (no handler ran). */
        int destroyed = 0;
        for (int i = 0; i < N; i++) {
            destroyed += r[i] == -9999;
            cr_assert(r[i] == -9999 || r[i] >= 1, "lookup %d: %d", i, r[i]);
        }
        cr_log_info("round %d: %d of %d lookups still away at destroy", round, destroyed, N);
    }
    usleep(100 * 1000);
}

/* The same through a strand (and a strand of strands) over the io_context. */
IO_TEST(net, a_context_destroyed_while_its_strand_resolves_destroys_the_waiting_coroutines)
{
    enum { N = 20 };
    static cor_sockaddr out[N][4];
    int r[N];
    for (int round = 0; round < 3; round++) {
        cor_io_context *io = io_test_create(backend, NULL);
        static cor_strand s, over;
        cr_assert_eq(cor_strand_init(&s, cor_io_context_executor(io)), 0);
        cr_assert_eq(cor_strand_init(&over, cor_strand_executor(&s)), 0); /* a strand of strands */
        for (int i = 0; i < N; i++) {
            r[i] = -9999;
            cor_launch_options o = {.on_result = store_int, .on_error = store_err, .user = &r[i]};
            cor_executor ex = cor_strand_executor(i % 2 ? &s : &over);
            cr_assert_eq(COR_RUN_ASYNC(ex, &o, resolver("127.0.0.1", "80", out[i])), 0);
        }
        cr_assert_geq(cor_io_context_poll(io), 0);
        cor_io_context_destroy(io);
        for (int i = 0; i < N; i++)
            cr_assert(r[i] == -9999 || r[i] == 1, "lookup %d: %d", i, r[i]);
        cr_assert_eq(cor_strand_destroy(&over), 0);
        cr_assert_eq(cor_strand_destroy(&s), 0);
    }
    usleep(100 * 1000);
}

/*
 * A stopped lookup returns -ECANCELED without waiting for getaddrinfo (which
 * cannot be interrupted: it finishes on the resolver's thread, on its own
 * copies of the names, and its result is dropped). Stopped before it starts,
 * deterministically; stopped while it is away, either result.
 */
IO_TEST(net, a_stopped_lookup_returns_canceled_and_leaves_the_lookup_behind)
{
    cor_io_context *io = io_test_create(backend, NULL);
    enum { N = 50 };
    static cor_sockaddr out[N][4];
    int r[N];
    for (int i = 0; i < N; i++) {
        cor_stop_source src;
        cr_assert_eq(cor_stop_source_init(&src), 0);
        char host[16], service[8];
        snprintf(host, sizeof host, "127.0.0.%d", 1 + i % 200);
        snprintf(service, sizeof service, "%d", 1000 + i);
        launch(io, COR_FRAME(resolver(host, service, out[i])), &r[i],
               cor_stop_source_token(&src));
        if (i % 2 == 0) {
            cor_stop_source_request(&src); /* before it starts */
        } else {
            cr_assert_geq(cor_io_context_poll(io), 0); /* the lookup is posted */
            cor_stop_source_request(&src);
            /* Once it started, the names are the caller's again: the lookup has its own copies. */
            memset(host, 'x', sizeof host);
            memset(service, 'y', sizeof service);
        }
        cr_assert_geq(cor_io_context_run(io), 0);
        if (i % 2 == 0)
            cr_assert_eq(r[i], -ECANCELED, "lookup %d: %d", i, r[i]);
        else
            cr_assert(r[i] == -ECANCELED || (r[i] == 1 && cor_addr_port(&out[i][0]) == 1000 + i),
                      "lookup %d: %d", i, r[i]);
    }
    cor_io_context_destroy(io);
    usleep(100 * 1000); /* the dropped lookups land on the resolver's threads */
}

/*
 * Off an io_context (here a manual executor) a lookup counts itself in
 * nowhere: its frame's field for that starts NULL whatever the frame's
 * memory held before (a freed frame of the same size, filled with junk).
 */
struct junk_frame {
    COR_PROMISE(int);
    char junk[sizeof(struct cor_resolve) - sizeof(struct { COR_PROMISE(int); })];
};
COR_DEFINE_STATIC(junk_frame, (void), { memset(self->junk, 0x41, sizeof self->junk); })
{
    COR_BEGIN();
    COR_RETURN(0);
}

struct resolve_after_junk {
    COR_PROMISE(int);
    cor_sockaddr *out;
    int r;
};
COR_DEFINE_STATIC(resolve_after_junk, (cor_sockaddr * out), { self->out = out; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, junk_frame()); /* its block is the lookup's next */
    COR_AWAIT(self->r, cor_resolve("127.0.0.1", "80", AF_INET, 0, self->out, 4));
    COR_RETURN(self->r);
}

Test(net, a_lookup_off_an_io_context_touches_no_context)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_sockaddr out[4];
    for (int i = 0; i < 3; i++) {
        int r = -9999;
        cor_launch_options o = {.on_result = store_int, .on_error = store_err, .user = &r};
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, resolve_after_junk(out)), 0);
        for (int spins = 0; r == -9999 && spins < 10000; spins++)
            if (cor_manual_run(m) == 0)
                usleep(1000); /* the lookup is on the resolver's thread */
        cr_assert_eq(r, 1, "%d", r);
        cr_assert_eq(cor_addr_port(&out[0]), 80);
    }
    cor_manual_destroy(m);
}

/*
 * The caller's executor destroyed around the moment its lookups complete:
 * the resolver's thread may be between taking a waiter off the job's event
 * and posting it, and the destroy must wait for that post and destroy what
 * it brings (the ASan build reports a post into freed memory or a leaked
 * frame; TSan a race). Randomized: each round lands somewhere else.
 */
enum { RACE_MANUAL, RACE_POOL, RACE_IO, RACE_STRAND_IO };

static void spin_us(unsigned us)
{
    struct timespec a, b;
    clock_gettime(CLOCK_MONOTONIC, &a);
    do
        clock_gettime(CLOCK_MONOTONIC, &b);
    while ((b.tv_sec - a.tv_sec) * 1000000L + (b.tv_nsec - a.tv_nsec) / 1000 < (long)us);
}

Test(net, an_executor_destroyed_as_its_lookups_complete_loses_nothing, .timeout = 120)
{
    static cor_sockaddr out[4][4];
    unsigned seed = 1;
    for (int kind = RACE_MANUAL; kind <= RACE_STRAND_IO; kind++) {
        for (int round = 0; round < (COR__TSAN ? 100 : 1500); round++) {
            cor_manual *m = NULL;
            cor_thread_pool *p = NULL;
            cor_io_context *io = NULL;
            static cor_strand s;
            cor_executor ex;
            if (kind == RACE_MANUAL) {
                cr_assert_eq(cor_manual_create(&m), 0);
                ex = cor_manual_executor(m);
            } else if (kind == RACE_POOL) {
                cr_assert_eq(cor_thread_pool_create(&p, 1), 0);
                ex = cor_thread_pool_executor(p);
            } else {
                cr_assert_eq(cor_io_context_create(&io, NULL), 0);
                ex = cor_io_context_executor(io);
                if (kind == RACE_STRAND_IO) {
                    cr_assert_eq(cor_strand_init(&s, ex), 0);
                    ex = cor_strand_executor(&s);
                }
            }
            for (int k = 0; k < 4; k++)
                cr_assert_eq(COR_RUN_ASYNC(ex, NULL, resolver("127.0.0.1", "80", out[k])), 0);
            if (m)
                cor_manual_poll(m);
            if (io)
                cor_io_context_poll(io);
            spin_us(rand_r(&seed) % 200);
            if (m)
                cor_manual_destroy(m);
            if (p)
                cor_thread_pool_destroy(p);
            if (io)
                cor_io_context_destroy(io);
            if (kind == RACE_STRAND_IO)
                cr_assert_eq(cor_strand_destroy(&s), 0, "round %d: a handle left on the strand",
                             round);
        }
    }
    usleep(100 * 1000); /* the last lookups land on the resolver's threads */
}

/*
 * A forked child resolves with a resolver of its own (its parent's threads
 * are not in it). Not under TSan, whose runner keeps every case in one
 * process with the threads of the others: a fork there may copy a lock held.
 */
Test(net, a_forked_child_resolves_too, .timeout = 60, .disabled = COR__TSAN)
{
    cor_io_context *io;
    cor_sockaddr out[4];
    int r;
    cr_assert_eq(cor_io_context_create(&io, NULL), 0);
    launch(io, COR_FRAME(resolver("127.0.0.1", "80", out)), &r, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, 1, "%d", r);
    cor_io_context_destroy(io);
    /* The worker frees its job just after the wake-up: let it, so no allocator lock is held at
     * the fork (the sanitizers' allocators have no fork handlers). */
    usleep(200 * 1000);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(10); /* a hang ends the child */
        if (cor_io_context_create(&io, NULL))
            _exit(2);
        launch(io, COR_FRAME(resolver("127.0.0.1", "81", out)), &r, no_stop());
        cor_io_context_run(io);
        cor_io_context_destroy(io);
        _exit(r == 1 && cor_addr_port(&out[0]) == 81 ? 0 : 1);
    }
    int status;
    cr_assert_eq(waitpid(pid, &status, 0), pid);
    cr_assert(WIFEXITED(status) && WEXITSTATUS(status) == 0, "child status %#x", status);
}

/*
 * A lookup whose allocations run out (the frames, the launch record, the
 * wait on its job) fails with -ENOMEM and lets go of its job: nothing leaks
 * (the ASan build's leak check) and the resource gets every block back.
 */
Test(net, a_lookup_out_of_memory_fails_cleanly)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_sockaddr out[4];
    for (long budget = 0; budget <= 6; budget++) {
        counting_resource cr;
        counting_resource_init(&cr, budget);
        struct outcome oc = {0};
        cor_launch_options o = {
            .alloc = &cr.base, .on_result = rec_result, .on_error = rec_error, .user = &oc};
        int rc = COR_RUN_ASYNC(cor_manual_executor(m), &o, resolver("127.0.0.1", "80", out));
        for (int spins = 0; rc == 0 && oc.results + oc.errors == 0 && spins < 10000; spins++)
            if (cor_manual_run(m) == 0)
                usleep(1000); /* the lookup is on the resolver's thread */
        if (rc == 0) {
            cr_assert_eq(oc.results + oc.errors, 1, "budget %ld", budget);
            if (oc.errors)
                cr_assert_eq(oc.err, -ENOMEM, "budget %ld: %d", budget, oc.err);
            else
                cr_assert(oc.result == 1 || oc.result == -ENOMEM, "budget %ld: %d", budget,
                          oc.result);
        } else {
            cr_assert_eq(rc, -ENOMEM, "budget %ld: %d", budget, rc);
        }
        cr_log_info("budget %ld: launch %d, result %d (%d), error %d (%d)", budget, rc, oc.result,
                    oc.results, oc.err, oc.errors);
        cr_assert_eq(cr.allocs, cr.frees, "budget %ld", budget);
        cr_assert_eq(cr.live_bytes, 0, "budget %ld", budget);
    }
    cor_manual_destroy(m);
}

/* ---- bad arguments stay -EINVAL when a deadline is added afterwards ---- */

struct bad_args_with_deadline {
    COR_PROMISE(int);
    int sock, file, udp, r;
    cor_sockaddr to;
};
COR_DEFINE_STATIC(bad_args_with_deadline, (int sock, int file, int udp), {
    self->sock = sock;
    self->file = file;
    self->udp = udp;
})
{
    COR_BEGIN();
    /* A NULL buffer with a length: each op must complete with -EINVAL without
     * reaching the kernel, deadline or not (the socket has no data, so a
     * submitted recv would wait for its deadline instead). */
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_recv(self->sock, NULL, 10, 0), 2000000000LL));
    if (self->r != -EINVAL)
        COR_RETURN(1000 - self->r); /* step * 1000 + errno */
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_read(self->file, NULL, 10, 0), 2000000000LL));
    if (self->r != -EINVAL)
        COR_RETURN(2000 - self->r); /* step * 1000 + errno */
    cor_addr_ip(&self->to, "127.0.0.1", 9);
    COR_AWAIT(self->r,
              COR_DEADLINE_AFTER(cor_sendto(self->udp, NULL, 10, 0, &self->to), 2000000000LL));
    if (self->r != -EINVAL)
        COR_RETURN(3000 - self->r); /* step * 1000 + errno */
    COR_RETURN(0);
}

IO_TEST(net, bad_arguments_are_einval_even_with_a_deadline)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int file = open("/dev/zero", O_RDONLY | O_CLOEXEC);
    cr_assert_geq(file, 0);
    int udp = cor_socket(AF_INET, SOCK_DGRAM);
    cr_assert_geq(udp, 0);
    int r;
    launch(io, COR_FRAME(bad_args_with_deadline(sv[0], file, udp)), &r, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, 0, "step %d completed with %s", r / 1000, cor_strerror(-(r % 1000)));
    close(sv[0]);
    close(sv[1]);
    close(file);
    close(udp);
    cor_io_context_destroy(io);
}

/* ---- multishot accept ---- */

struct stream_acceptor {
    COR_PROMISE(int);
    cor_stream *s;
    int n, i, fd, r;
};
COR_DEFINE_STATIC(stream_acceptor, (cor_stream * s, int n), {
    self->s = s;
    self->n = n;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        COR_AWAIT(self->fd, COR_DEADLINE_AFTER(cor_stream_next(self->s, NULL), 5000 * MS));
        if (self->fd < 0)
            COR_RETURN(self->fd);
        cor_launch_options o = {0};
        COR_RUN_ASYNC(COR_THIS_EXECUTOR(), &o, echo_conn(self->fd));
    }
    /* Nothing more comes: a deadline ends the wait. */
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_stream_next(self->s, NULL), 20 * MS));
    if (self->r != -ETIME)
        COR_RETURN(-EPROTO);
    COR_RETURN(self->i);
}

IO_TEST(net, multishot_accept_stream)
{
    enum { N = 32 };
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    int lfd = listen_on("127.0.0.1:0", &a, 64);
    cor_stream *s;
    int rc = cor_accept_stream_open(&s, io, lfd);
    if (rc == -EOPNOTSUPP) {
        close(lfd);
        cor_io_context_destroy(io);
        cr_skip_test("multishot accept is not offered by the %s backend",
                     io_test_backend_name(backend));
    }
    cr_assert_eq(rc, 0, "%s", cor_strerror(rc));
    int srv, cli[N];
    launch(io, COR_FRAME(stream_acceptor(s, N)), &srv, no_stop());
    for (int i = 0; i < N; i++)
        launch(io, COR_FRAME(echo_client(&a, i, 3, 10)), &cli[i], no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(srv, N, "%s", cor_strerror(srv));
    for (int i = 0; i < N; i++)
        cr_assert_eq(cli[i], 3);
    cor_stream_close(s);
    close(lfd);
    cor_io_context_destroy(io);
}

/* ---- multishot receive with a provided buffer ring, run dry ---- */

/* Reads a connection through a receive stream; holds each buffer across a yield, checks the byte
 * sequence. */
struct stream_reader {
    COR_PROMISE(int);
    cor_io_context *io;
    cor_buf_ring *ring;
    cor_stream *s;
    int fd, n, y;
    long expect, got, nobufs;
    cor_buf buf;
};
COR_DEFINE_STATIC(stream_reader, (cor_io_context * io, cor_buf_ring *ring, int fd, long expect), {
    self->io = io;
    self->ring = ring;
    self->fd = fd;
    self->expect = expect;
})
{
    COR_BEGIN();
    self->got = self->nobufs = 0;
    if (cor_recv_stream_open(&self->s, self->io, self->fd, self->ring))
        COR_RETURN(-EIO);
    for (;;) {
        COR_AWAIT(self->n, COR_DEADLINE_AFTER(cor_stream_next(self->s, &self->buf), 10000 * MS));
        if (self->n == -ENOBUFS) {
            self->nobufs++;
            continue;
        }
        if (self->n <= 0)
            break;
        for (int i = 0; i < self->n; i++)
            if (((unsigned char *)self->buf.data)[i] != (unsigned char)((self->got + i) % 251)) {
                self->n = -EPROTO;
                goto out;
            }
        self->got += self->n;
        /* Hold the buffer a while, so the ring runs dry under load. */
        COR_AWAIT(self->y, cor_yield());
        cor_buf_ring_put(self->ring, &self->buf);
    }
out:
    cor_stream_close(self->s);
    COR_AWAIT(self->y, cor_close(self->fd));
    if (self->n < 0)
        COR_RETURN(self->n);
    COR_RETURN(self->got == self->expect ? 1 : -EPROTO);
}

struct stream_writer {
    COR_PROMISE(int);
    const cor_sockaddr *addr;
    int fd, r;
    ssize_t n;
    long total, sent;
    size_t k;
    unsigned char chunk[997];
};
COR_DEFINE_STATIC(stream_writer, (const cor_sockaddr *addr, long total), {
    self->addr = addr;
    self->total = total;
})
{
    COR_BEGIN();
    self->fd = cor_socket(AF_INET, SOCK_STREAM);
    COR_AWAIT(self->r, cor_connect(self->fd, self->addr));
    if (self->r < 0)
        COR_RETURN(self->r);
    for (self->sent = 0; self->sent < self->total; self->sent += (long)self->k) {
        self->k = sizeof self->chunk;
        if ((long)self->k > self->total - self->sent)
            self->k = (size_t)(self->total - self->sent);
        for (size_t i = 0; i < self->k; i++)
            self->chunk[i] = (unsigned char)((self->sent + (long)i) % 251);
        COR_AWAIT(self->n, cor_send_all(self->fd, self->chunk, self->k));
        if (self->n < 0)
            COR_RETURN((int)self->n);
    }
    COR_AWAIT(self->r, cor_close(self->fd));
    COR_RETURN(1);
}

/* Accepts n connections and starts a stream_reader on each. */
struct reader_server {
    COR_PROMISE(int);
    cor_io_context *io;
    cor_buf_ring *ring;
    int lfd, n, i, fd;
    long expect;
    int *results;
};
COR_DEFINE_STATIC(reader_server,
                  (cor_io_context * io, cor_buf_ring *ring, int lfd, int n, long expect,
                   int *results),
                  {
                      self->io = io;
                      self->ring = ring;
                      self->lfd = lfd;
                      self->n = n;
                      self->expect = expect;
                      self->results = results;
                  })
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        COR_AWAIT(self->fd, cor_accept(self->lfd, NULL));
        if (self->fd < 0)
            COR_RETURN(self->fd);
        cor_launch_options o = {
            .on_result = store_int, .on_error = store_err, .user = &self->results[self->i]};
        COR_RUN_ASYNC(COR_THIS_EXECUTOR(), &o,
                      stream_reader(self->io, self->ring, self->fd, self->expect));
    }
    COR_RETURN(self->i);
}

/* Writes len copies of digit to fd; true if all went. */
static bool send_digits(int fd, char digit, int len)
{
    char m[16];
    memset(m, digit, sizeof m);
    return len <= (int)sizeof m && write(fd, m, (size_t)len) == len;
}

/* A ring with flags (COR_BUF_RING_*), or the test is skipped where the backend or kernel has none. */
static cor_buf_ring *ring_or_skip(cor_io_context *io, int backend, unsigned count, unsigned size,
                                  unsigned flags)
{
    cor_buf_ring *r = NULL;
    int rc = cor_buf_ring_create_flags(&r, io, count, size, flags);
    if (rc == -EOPNOTSUPP) {
        cor_io_context_destroy(io);
        cr_skip_test("provided buffer rings are not offered by the %s backend (or this kernel)",
                     io_test_backend_name(backend));
    }
    cr_assert_eq(rc, 0, "%s", cor_strerror(rc));
    if (kernel_at_least(6, 12))
        cr_assert(cor_io_context_features(io) & COR_IO_BUF_INCREMENTAL,
                  "incremental buffer rings on 6.12+");
    if (cor_buf_ring_flags(r) != flags) {
        cr_assert_eq(cor_buf_ring_flags(r), 0, "only flags asked for are in force");
        cr_assert_not(cor_io_context_features(io) & COR_IO_BUF_INCREMENTAL);
        cor_buf_ring_destroy(r);
        cor_io_context_destroy(io);
        cr_skip_test("this kernel consumes provided buffers whole (incremental rings: 6.12+)");
    }
    return r;
}

/*
 * 16 connections each write 64 KiB in 997-byte writes into a ring of 8
 * buffers of 256 bytes, whose readers hold each buffer across a yield: the
 * ring runs dry, the streams park and resume, and every byte arrives in
 * order. On 6.10+ one completion fills several buffers (a bundle), which the
 * stream hands out one at a time; on an incremental ring, in pieces.
 */
static void readers_through_a_ring(int backend, unsigned flags)
{
    enum { CONNS = 16, BUFS = 8, BUFSZ = 256 };
    const long total = 64 * 1024;
    cor_io_context *io = io_test_create(backend, NULL);
    cor_buf_ring *ring = ring_or_skip(io, backend, BUFS, BUFSZ, flags);
    if (kernel_at_least(6, 10))
        cr_assert(cor_io_context_features(io) & COR_IO_RECV_BUNDLE, "bundles on 6.10+");
    cor_sockaddr a;
    int lfd = listen_on("127.0.0.1:0", &a, 64);
    int results[CONNS], srv, cli[CONNS];
    launch(io, COR_FRAME(reader_server(io, ring, lfd, CONNS, total, results)), &srv, no_stop());
    for (int i = 0; i < CONNS; i++)
        launch(io, COR_FRAME(stream_writer(&a, total)), &cli[i], no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(srv, CONNS);
    for (int i = 0; i < CONNS; i++) {
        cr_assert_eq(cli[i], 1, "writer %d: %s", i, cor_strerror(cli[i]));
        cr_assert_eq(results[i], 1, "reader %d: every byte, in order: %s", i,
                     cor_strerror(results[i]));
    }
    cor_buf_ring_destroy(ring);
    close(lfd);
    cor_io_context_destroy(io);
}

IO_TEST(net, multishot_recv_buffer_ring_runs_dry_and_recovers)
{
    readers_through_a_ring(backend, 0);
}

IO_TEST(net, multishot_recv_incremental_ring_runs_dry_and_recovers)
{
    readers_through_a_ring(backend, COR_BUF_RING_INCREMENTAL);
}

/*
 * A reader that keeps both buffers of a two-buffer ring sees -ENOBUFS, puts
 * them back, and goes on. Each message is len bytes of one digit: len fills
 * a buffer of an incremental ring, so that the kernel moves on to the next.
 */
struct hoarder {
    COR_PROMISE(int);
    cor_io_context *io;
    cor_buf_ring *ring;
    cor_stream *s;
    int fd, n, r, sv1, len;
    cor_buf b[3];
};
COR_DEFINE_STATIC(hoarder, (cor_io_context * io, cor_buf_ring *ring, int fd, int sv1, int len), {
    self->io = io;
    self->ring = ring;
    self->fd = fd;
    self->sv1 = sv1;
    self->len = len;
})
{
    COR_BEGIN();
    if (cor_recv_stream_open(&self->s, self->io, self->fd, self->ring))
        COR_RETURN(-EIO);
    self->r = -EPROTO;
    if (!send_digits(self->sv1, '1', self->len))
        goto out;
    COR_AWAIT(self->n, COR_DEADLINE_AFTER(cor_stream_next(self->s, &self->b[0]), 5000 * MS));
    if (self->n != self->len || !send_digits(self->sv1, '2', self->len))
        goto out;
    COR_AWAIT(self->n, COR_DEADLINE_AFTER(cor_stream_next(self->s, &self->b[1]), 5000 * MS));
    if (self->n != self->len || !send_digits(self->sv1, '3', self->len))
        goto out;
    /* No buffer left for "3": the stream parks; we hold both, so we are told. */
    COR_AWAIT(self->n, COR_DEADLINE_AFTER(cor_stream_next(self->s, &self->b[2]), 5000 * MS));
    if (self->n != -ENOBUFS)
        goto out;
    cor_buf_ring_put(self->ring, &self->b[0]);
    cor_buf_ring_put(self->ring, &self->b[1]);
    COR_AWAIT(self->n, COR_DEADLINE_AFTER(cor_stream_next(self->s, &self->b[2]), 5000 * MS));
    if (self->n != self->len || ((char *)self->b[2].data)[0] != '3')
        goto out;
    cor_buf_ring_put(self->ring, &self->b[2]);
    self->r = 1;
out:
    cor_stream_close(self->s);
    COR_RETURN(self->r);
}

static void hoard_every_buffer(int backend, unsigned flags, unsigned size, int len)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_buf_ring *ring = ring_or_skip(io, backend, 2, size, flags);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int r;
    cor_io_metrics m0, m1;
    cr_assert_eq(cor_io_context_metrics(io, &m0), 0);
    launch(io, COR_FRAME(hoarder(io, ring, sv[0], sv[1], len)), &r, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, 1, "%s", cor_strerror(r));
    cr_assert_eq(cor_io_context_metrics(io, &m1), 0);
    cr_assert_geq(m1.buffer_waits, m0.buffer_waits + 1, "the stop for lack of buffers is counted");
    cor_buf_ring_destroy(ring);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

IO_TEST(net, multishot_recv_enobufs_when_the_reader_holds_every_buffer)
{
    hoard_every_buffer(backend, 0, 64, 1);
}

IO_TEST(net, multishot_recv_enobufs_when_the_reader_holds_every_piece)
{
    hoard_every_buffer(backend, COR_BUF_RING_INCREMENTAL, 4, 4);
}

/* Takes the next result of a receive stream into *buf (5 s deadline). */
struct piece_taker {
    COR_PROMISE(int);
    cor_stream *s;
    cor_buf *buf;
    int n;
};
COR_DEFINE_STATIC(piece_taker, (cor_stream * s, cor_buf *buf), {
    self->s = s;
    self->buf = buf;
})
{
    COR_BEGIN();
    COR_AWAIT(self->n, COR_DEADLINE_AFTER(cor_stream_next(self->s, self->buf), 5000 * MS));
    COR_RETURN(self->n);
}

/* Writes msg to fd, then takes the stream's next result: its byte count. */
static int take_after(cor_io_context *io, cor_stream *s, int fd, const char *msg, cor_buf *b)
{
    size_t len = strlen(msg);
    if (len)
        cr_assert_eq(write(fd, msg, len), (ssize_t)len);
    int n = INT_MIN;
    launch(io, COR_FRAME(piece_taker(s, b)), &n, no_stop());
    cr_assert_geq(cor_io_context_run(io), 0);
    return n;
}

/* A receive stream through a ring on one end of a socket pair, on a fresh io_context. */
struct piped {
    cor_io_context *io;
    cor_buf_ring *ring;
    cor_stream *s;
    int sv[2]; /* the stream reads sv[0]; the test writes sv[1] */
};

static void piped_open(struct piped *p, int backend, unsigned count, unsigned size,
                       unsigned flags)
{
    p->io = io_test_create(backend, NULL);
    p->ring = ring_or_skip(p->io, backend, count, size, flags);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, p->sv), 0);
    cr_assert_eq(cor_recv_stream_open(&p->s, p->io, p->sv[0], p->ring), 0);
}

/* Closes the stream, lets its cancel complete, and frees the rest. */
static void piped_close(struct piped *p)
{
    cr_assert_eq(cor_stream_close(p->s), 0);
    cr_assert_geq(cor_io_context_run(p->io), 0);
    cr_assert_eq(cor_buf_ring_destroy(p->ring), 0);
    close(p->sv[0]);
    close(p->sv[1]);
    cor_io_context_destroy(p->io);
}

/*
 * An incremental ring hands out pieces: two small messages land one after
 * the other in the same buffer; a buffer is filled to its end before the
 * kernel moves on; a buffer goes back once the kernel is past it and its
 * pieces are put back (a second put of its last piece is refused), and a
 * message bigger than what is left of a buffer arrives in two pieces.
 */
IO_TEST(net, incremental_ring_pieces_share_a_buffer)
{
    struct piped p;
    piped_open(&p, backend, 2, 64, COR_BUF_RING_INCREMENTAL);
    cor_io_context *io = p.io;
    cor_buf_ring *ring = p.ring;
    cor_stream *s = p.s;
    int *sv = p.sv;
    cor_buf a, b, c, d, e;
    cr_assert_eq(take_after(io, s, sv[1], "ab", &a), 2);
    cr_assert_eq(memcmp(a.data, "ab", 2), 0);
    cr_assert_eq(take_after(io, s, sv[1], "cd", &b), 2);
    cr_assert_eq(b.id, a.id, "the second message goes on in the same buffer");
    cr_assert_eq((char *)b.data, (char *)a.data + 2);
    cr_assert_eq(memcmp(b.data, "cd", 2), 0);
    cr_assert_eq(cor_buf_ring_put(ring, &b), 0, "pieces go back in any order");
    cr_assert_eq(cor_buf_ring_put(ring, &a), 0);
    char fill[61];
    memset(fill, 'f', 60);
    fill[60] = '\0';
    cr_assert_eq(take_after(io, s, sv[1], fill, &c), 60, "the rest of the buffer");
    cr_assert_eq(c.id, a.id);
    cr_assert_eq((char *)c.data, (char *)a.data + 4);
    cr_assert_eq(cor_buf_ring_put(ring, &c), 0, "the buffer is full: it goes back to the kernel");
    cr_assert_eq(cor_buf_ring_put(ring, &c), -EINVAL, "no piece of it is out any more");
    /* The kernel went on to the other buffer; 100 bytes need what is left of it and more. */
    char big[101];
    for (int i = 0; i < 100; i++)
        big[i] = (char)('A' + i % 26);
    big[100] = '\0';
    int n1 = take_after(io, s, sv[1], big, &d);
    cr_assert_eq(n1, 64, "the whole of the other buffer: %d", n1);
    cr_assert_neq(d.id, a.id);
    cr_assert_eq(memcmp(d.data, big, 64), 0);
    int n2 = take_after(io, s, sv[1], "", &e);
    cr_assert_eq(n2, 36, "the rest in the buffer put back before: %d", n2);
    cr_assert_eq(e.id, a.id);
    cr_assert_eq(memcmp(e.data, big + 64, 36), 0);
    cr_assert_eq(cor_buf_ring_put(ring, &d), 0);
    cr_assert_eq(cor_buf_ring_put(ring, &e), 0);
    piped_close(&p);
}

/*
 * Single bytes arrive, one receive each, and nobody takes them until the
 * stream's queue must grow past what it holds in itself; that allocation
 * fails. The stream then ends with -ENOMEM after what it queued (in order)
 * and stays ended. Returns the bytes taken before the end (the stream is
 * still open), or -1 when the build has no fault injection.
 */
/* Byte c arrives on p's socket and the stream receives it (a nap runs the loop meanwhile). */
static void arrive(struct piped *p, char c)
{
    cr_assert_eq(write(p->sv[1], &c, 1), 1);
    int slept = 1;
    launch(p->io, COR_FRAME(nap(2 * MS)), &slept, no_stop());
    cr_assert_geq(cor_io_context_run(p->io), 0);
    cr_assert_eq(slept, 0);
}

static int pile_up_without_memory(struct piped *p, int most)
{
    cor_io_context *io = p->io;
    cor_fault f = {.kind = COR_FAULT_ALLOC, .nth = 1};
    int rc = cor_io_context_inject_fault(io, &f);
    if (rc == -EOPNOTSUPP)
        return -1;
    cr_assert_eq(rc, 0);
    for (int i = 0; i < most && cor_io_context_fault_hits(io) == 0; i++)
        arrive(p, (char)('a' + i));
    cr_assert_eq(cor_io_context_fault_hits(io), 1, "the queue could not grow");
    cr_assert_eq(cor_io_context_clear_fault(io), 0);
    int got = 0, n;
    cor_buf b;
    while ((n = take_after(io, p->s, p->sv[1], "", &b)) > 0) {
        for (int i = 0; i < n; i++)
            cr_assert_eq(((char *)b.data)[i], (char)('a' + got + i));
        got += n;
        cr_assert_eq(cor_buf_ring_put(p->ring, &b), 0);
    }
    cr_assert_eq(n, -ENOMEM, "then the stream ends: %s", cor_strerror(n));
    cr_assert_gt(got, 0, "what was queued came first, in order");
    cr_assert_eq(take_after(io, p->s, p->sv[1], "", &b), -ENOMEM, "and stays ended");
    return got;
}

/*
 * An incremental stream whose results pile up (nobody takes them) needs a
 * longer queue; when it cannot have one, the stream ends with -ENOMEM after
 * what it queued, and every piece goes back: a new stream on the ring then
 * fills all of it.
 */
IO_TEST(net, incremental_stream_without_memory_for_its_queue_ends)
{
    enum { BUFS = 4, SIZE = 64 };
    struct piped p;
    piped_open(&p, backend, BUFS, SIZE, COR_BUF_RING_INCREMENTAL);
    cor_io_context *io = p.io;
    cor_buf_ring *ring = p.ring;
    int *sv = p.sv;
    int n;
    cor_buf b;
    if (pile_up_without_memory(&p, 3 * BUFS) < 0) {
        piped_close(&p);
        cr_skip_test("a build without fault injection");
    }
    cr_assert_eq(cor_stream_close(p.s), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    /* Every piece went back. A new stream takes single bytes until one ends a buffer (the
     * ring's memory is page-aligned: buffers start at multiples of SIZE); then the whole
     * ring's worth arrives at once while every piece is held, which needs every buffer
     * (one still counted as out would never come back: -ENOBUFS). */
    char drain[64];
    while (read(sv[0], drain, sizeof drain) > 0)
        ;
    cr_assert_eq(cor_recv_stream_open(&p.s, io, sv[0], ring), 0);
    for (int i = 0;; i++) {
        cr_assert_lt(i, SIZE, "a buffer ends within %d bytes", SIZE);
        n = take_after(io, p.s, sv[1], "y", &b);
        cr_assert_eq(n, 1, "%s", cor_strerror(n));
        cr_assert_eq(cor_buf_ring_put(ring, &b), 0);
        if (((uintptr_t)b.data + 1) % SIZE == 0)
            break;
    }
    char all[BUFS * SIZE];
    memset(all, 'z', sizeof all);
    cr_assert_eq(write(sv[1], all, sizeof all), (ssize_t)sizeof all);
    cor_buf held[BUFS * SIZE];
    int total = 0, k = 0;
    for (; total < (int)sizeof all; total += n, k++) {
        n = take_after(io, p.s, sv[1], "", &held[k]);
        cr_assert_gt(n, 0, "after %d bytes: %s", total, cor_strerror(n));
    }
    for (int i = 0; i < k; i++)
        cr_assert_eq(cor_buf_ring_put(ring, &held[i]), 0);
    piped_close(&p);
}

/*
 * The same on a whole-buffer ring (its queue also starts small and grows
 * when results pile up): -ENOMEM after what was queued, every buffer goes
 * back, and a new stream on the ring queues a result in every one of them
 * (its queue grows meanwhile), handed out in order while all are held.
 */
IO_TEST(net, whole_buffer_stream_without_memory_for_its_queue_ends)
{
    enum { BUFS = 32, SIZE = 64 };
    struct piped p;
    piped_open(&p, backend, BUFS, SIZE, 0);
    if (pile_up_without_memory(&p, BUFS) < 0) {
        piped_close(&p);
        cr_skip_test("a build without fault injection");
    }
    cr_assert_eq(cor_stream_close(p.s), 0);
    cr_assert_geq(cor_io_context_run(p.io), 0);
    char drain[64];
    while (read(p.sv[0], drain, sizeof drain) > 0)
        ;
    cr_assert_eq(cor_recv_stream_open(&p.s, p.io, p.sv[0], p.ring), 0);
    for (int i = 0; i < BUFS; i++)
        arrive(&p, (char)('A' + i));
    cor_buf held[BUFS];
    for (int i = 0; i < BUFS; i++) {
        int n = take_after(p.io, p.s, p.sv[1], "", &held[i]);
        cr_assert_eq(n, 1, "buffer %d of %d: %s", i + 1, BUFS, cor_strerror(n));
        cr_assert_eq(*(char *)held[i].data, (char)('A' + i), "in order");
    }
    for (int i = 0; i < BUFS; i++)
        cr_assert_eq(cor_buf_ring_put(p.ring, &held[i]), 0);
    piped_close(&p);
}

/* Awaits an awaitable made before (outside run, on the thread that then runs io). */
struct await_made {
    COR_PROMISE(int);
    struct cor_io_await *a;
    int r;
};
COR_DEFINE_STATIC(await_made, (struct cor_io_await * a), { self->a = a; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, self->a);
    COR_RETURN(self->r);
}

/* The thread is checked when the next-result await starts, not when the awaitable is made. */
IO_TEST(net, a_stream_next_made_before_run_is_awaited_inside_it)
{
    struct piped p;
    piped_open(&p, backend, 4, 64, 0);
    cr_assert_eq(write(p.sv[1], "hello", 5), 5);
    cor_buf b;
    int r = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(p.io), &lo,
                               await_made(cor_stream_next(p.s, &b))),
                 0);
    int64_t end = cor_clock_now() + 5000 * MS;
    while (r == 0 && cor_clock_now() < end)
        cor_io_context_run_for(p.io, 5 * MS);
    cr_assert_eq(r, 5, "%s", cor_strerror(r));
    cr_assert_eq(memcmp(b.data, "hello", 5), 0);
    cr_assert_eq(cor_buf_ring_put(p.ring, &b), 0);
    piped_close(&p);
}

/*
 * A stream closed while the result it handed its waiter is still on its way
 * (one run_one delivered the other stream's result and stopped there): the
 * waiter gets -ECANCELED, as a close promises, and its buffer goes back, so
 * the ring can be destroyed (the result was delivered anyway, from the
 * destroyed ring: ASan heap-use-after-free).
 */
IO_TEST(net, a_stream_closed_with_its_result_on_the_way_cancels_it)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_buf_ring *ring = ring_or_skip(io, backend, 4, 64, 0);
    int sv[2][2], r[2] = {0, 0};
    cor_stream *s[2];
    cor_buf b[2];
    cor_launch_options lo[2];
    for (int i = 0; i < 2; i++) {
        cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv[i]), 0);
        cr_assert_eq(cor_recv_stream_open(&s[i], io, sv[i][0], ring), 0);
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &r[i]};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], piece_taker(s[i], &b[i])),
                     0);
    }
    cr_assert_geq(cor_io_context_poll(io), 0); /* both wait, both receives armed */
    for (int i = 0; i < 2; i++)
        cr_assert_eq(write(sv[i][1], "data", 4), 4);
    usleep(20000);
    cr_assert_eq(cor_io_context_run_one(io), 1);
    cr_assert_eq((r[0] != 0) + (r[1] != 0), 1, "one result delivered: %d %d", r[0], r[1]);
    int first = r[0] ? 0 : 1;
    cr_assert_eq(r[first], 4);
    cr_assert_eq(cor_buf_ring_put(ring, &b[first]), 0);
    cr_assert_eq(cor_stream_close(s[0]), 0);
    cr_assert_eq(cor_stream_close(s[1]), 0);
    cr_assert_eq(cor_buf_ring_destroy(ring), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r[1 - first], -ECANCELED, "the closed stream's waiter: %d", r[1 - first]);
    cor_io_context_destroy(io);
    for (int i = 0; i < 2; i++) {
        close(sv[i][0]);
        close(sv[i][1]);
    }
}

/*
 * A stream's result reaches its waiter in the pass whose enter brought the
 * data: one poll after the bytes arrived delivers them (the result waited
 * for the next pass, and a poll that found nothing else to do returned
 * without it).
 */
IO_TEST(net, one_poll_delivers_what_a_stream_received)
{
    struct piped p;
    piped_open(&p, backend, 4, 64, 0);
    cor_buf b;
    int r = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    cr_assert_eq(
        COR_RUN_ASYNC(cor_io_context_executor(p.io), &lo, await_made(cor_stream_next(p.s, &b))), 0);
    cr_assert_geq(cor_io_context_poll(p.io), 0); /* the task waits, the receive is armed */
    cr_assert_eq(r, 0);
    cr_assert_eq(write(p.sv[1], "hello", 5), 5);
    usleep(20000);
    cr_assert_geq(cor_io_context_poll(p.io), 1);
    cr_assert_eq(r, 5, "one poll delivered the bytes: %d", r);
    cr_assert_eq(memcmp(b.data, "hello", 5), 0);
    cr_assert_eq(cor_buf_ring_put(p.ring, &b), 0);
    piped_close(&p);
}

/*
 * An io_context destroyed with a ring and a stream still open, results queued
 * on the stream and a stream on a second ring with nothing queued, frees
 * them all itself (the ASan build's leak check sees the backend's part) and
 * closes its own descriptors.
 */
IO_TEST(net, a_context_destroyed_with_rings_and_streams_open_frees_them)
{
    int before = open_fds();
    struct piped p;
    piped_open(&p, backend, 4, 64, 0);
    arrive(&p, 'a');
    arrive(&p, 'b');
    cor_buf_ring *idle = NULL;
    cor_stream *quiet = NULL;
    int sv[2];
    cr_assert_eq(cor_buf_ring_create(&idle, p.io, 2, 64), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    cr_assert_eq(cor_recv_stream_open(&quiet, p.io, sv[0], idle), 0);
    cor_io_context_destroy(p.io);
    for (int i = 0; i < 2; i++) {
        close(p.sv[i]);
        close(sv[i]);
    }
    cr_assert_eq(open_fds(), before, "the context's descriptors are closed");
}

/* Bad arguments of the ring calls; a whole buffer put back twice is refused the second time. */
IO_TEST(net, buffer_ring_arguments_and_double_put)
{
    struct piped p;
    piped_open(&p, backend, 2, 64, 0);
    cor_io_context *io = p.io;
    cor_buf_ring *ring = p.ring;
    cor_stream *s = p.s;
    int *sv = p.sv;
    cr_assert_eq(cor_buf_ring_create(&(cor_buf_ring *){NULL}, io, 3, 64), -EINVAL,
                 "count must be a power of two");
    cr_assert_eq(cor_buf_ring_create_flags(&(cor_buf_ring *){NULL}, io, 2, 64, 1u << 7), -EINVAL,
                 "unknown flags");
    cr_assert_eq(cor_buf_ring_flags(NULL), 0);
    cor_buf a;
    cr_assert_eq(take_after(io, s, sv[1], "xyz", &a), 3);
    cor_buf bad = a;
    bad.data = (char *)a.data + 64;
    cr_assert_eq(cor_buf_ring_put(ring, &bad), -EINVAL, "not where buffer id is");
    bad = a;
    bad.id = 2;
    cr_assert_eq(cor_buf_ring_put(ring, &bad), -EINVAL, "no buffer 2");
    bad = a;
    bad.data = (char *)a.data + 1;
    cr_assert_eq(cor_buf_ring_put(ring, &bad), -EINVAL, "not the start of a whole buffer");
    bad = a;
    bad.holder_ = 12345;
    cr_assert_eq(cor_buf_ring_put(ring, &bad), -EINVAL, "handed to nobody");
    cr_assert_eq(cor_buf_ring_put(ring, &a), 0);
    cr_assert_eq(cor_buf_ring_put(ring, &a), -EINVAL, "put back already");
    /* Both buffers still work: two more messages, each in a buffer of its own. */
    cor_buf b, c;
    cr_assert_eq(take_after(io, s, sv[1], "1", &b), 1);
    cr_assert_eq(take_after(io, s, sv[1], "2", &c), 1);
    cr_assert_neq(b.id, c.id);
    cr_assert_eq(cor_buf_ring_put(ring, &b), 0);
    cr_assert_eq(cor_buf_ring_put(ring, &c), 0);
    piped_close(&p);
}

/* ---- zero-copy sends ---- */

/* A connected TCP pair on 127.0.0.1: *a the client's end, *b the accepted one (both non-blocking). */
static void tcp_pair(int *a, int *b)
{
    cor_sockaddr bound;
    int lfd = listen_on("127.0.0.1:0", &bound, 4);
    *a = cor_socket(AF_INET, SOCK_STREAM);
    cr_assert_geq(*a, 0);
    int rc = connect(*a, &bound.u.sa, bound.len);
    cr_assert(rc == 0 || errno == EINPROGRESS);
    *b = -1;
    for (int i = 0; i < 1000 && *b < 0; i++) {
        *b = accept4(lfd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (*b < 0)
            usleep(1000);
    }
    cr_assert_geq(*b, 0);
    close(lfd);
}

/* An io_context whose sends of 1 KiB or more go zero-copy, and a TCP pair a, b for it. */
static cor_io_context *zc_pair(int backend, int *a, int *b)
{
    cor_io_context_options o = {.send_zc_threshold = 1024};
    cor_io_context *io = io_test_create(backend, &o);
    tcp_pair(a, b);
    return io;
}

/*
 * Sends len bytes of buf with cor_send_all, or (one_op) in one cor_send
 * with MSG_WAITALL; the result.
 */
struct sender {
    COR_PROMISE(int);
    int fd;
    bool one_op;
    const char *buf;
    size_t len;
    ssize_t n;
};
COR_DEFINE_STATIC(sender, (int fd, const char *buf, size_t len, bool one_op), {
    self->fd = fd;
    self->buf = buf;
    self->len = len;
    self->one_op = one_op;
})
{
    COR_BEGIN();
    if (self->one_op)
        COR_AWAIT(self->n, cor_send(self->fd, self->buf, self->len, MSG_WAITALL));
    else
        COR_AWAIT(self->n, cor_send_all(self->fd, self->buf, self->len));
    COR_RETURN((int)self->n);
}

/* Sends st->len bytes of st->buf through registered slot 0 in one MSG_WAITALL send. */
struct fixed_sender_state {
    const char *buf;
    size_t len;
};
struct fixed_sender {
    COR_PROMISE(int);
    struct fixed_sender_state *st;
    ssize_t n;
};
COR_DEFINE_STATIC(fixed_sender, (struct fixed_sender_state * st), { self->st = st; })
{
    COR_BEGIN();
    COR_AWAIT(self->n, COR_FIXED(cor_send(0, self->st->buf, self->st->len, MSG_WAITALL)));
    COR_RETURN((int)self->n);
}

/* Reads what b has (non-blocking) into in + *got, up to cap; the bytes read now. */
static size_t drain(int b, char *in, size_t *got, size_t cap)
{
    size_t now = 0;
    for (;;) {
        ssize_t k = recv(b, in + *got, cap - *got, MSG_DONTWAIT);
        if (k <= 0)
            return now;
        *got += (size_t)k;
        now += (size_t)k;
    }
}

/*
 * Polls io and reads b into in until len bytes have arrived and *r (the
 * sender's result) is set, or 10 s pass; the bytes read. clear, if not
 * NULL, is the sender's buffer, zeroed as soon as the send has completed
 * (the buffer is the caller's again: the bytes still arriving must not
 * change).
 */
static size_t receive_until_sent(cor_io_context *io, int b, char *in, size_t len, const int *r,
                                 char *clear)
{
    size_t got = 0;
    int64_t end = cor_clock_now() + 10000 * MS;
    while ((got < len || *r == 0) && cor_clock_now() < end) {
        cor_io_context_poll(io);
        drain(b, in, &got, len);
        if (clear && *r == (int)len && got < len)
            memset(clear, 0, len);
    }
    return got;
}

/* Fills buf with the pattern i * mul + add of its byte index i. */
static void fill_pattern(char *buf, size_t len, size_t mul, size_t add)
{
    for (size_t i = 0; i < len; i++)
        buf[i] = (char)(i * mul + add);
}

/*
 * One MSG_WAITALL send of 8 MiB, far more than the socket buffers hold, to a
 * peer that reads as it can: one operation, finished by the backend (the
 * kernel's retries on io_uring, the backend's own on epoll), every byte in
 * order.
 */
IO_TEST(net, a_waitall_send_larger_than_the_socket_buffers_sends_every_byte)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int a, b;
    tcp_pair(&a, &b);
    enum { LEN = 8 << 20 };
    char *out = malloc(LEN), *in = malloc(LEN);
    fill_pattern(out, LEN, 13, 5);
    int r = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sender(a, out, LEN, true)), 0);
    size_t got = receive_until_sent(io, b, in, LEN, &r, NULL);
    cr_assert_eq(r, LEN, "one send, the whole buffer: %d", r);
    cr_assert_eq(got, (size_t)LEN);
    cr_assert(!memcmp(in, out, LEN));
    free(out);
    free(in);
    cor_io_context_destroy(io);
    close(a);
    close(b);
}

/*
 * A MSG_WAITALL send to a peer that does not read, ended part-way by a stop
 * (how == 0) or by cor_close of its descriptor from another coroutine (how
 * == 1): its result is the count of bytes it moved, not -ECANCELED, on both
 * backends, and exactly that many reach the peer. Nothing sent goes
 * unreported.
 */
static void waitall_send_ended_part_way(int backend, int how)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int a, b;
    tcp_pair(&a, &b);
    enum { LEN = 64 << 20 };
    char *out = malloc(LEN), *in = malloc(LEN);
    fill_pattern(out, LEN, 31, 7);
    int r = 0;
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_launch_options lo = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sender(a, out, LEN, true)), 0);
    cor_io_context_run_for(io, 50 * MS);
    cr_assert_eq(r, 0, "64 MiB cannot all go to a peer that does not read");
    int closed = 1;
    if (how == 0) {
        cor_stop_source_request(&src);
    } else {
        closed = -1;
        cor_launch_options lc = {.on_result = store_int, .user = &closed};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lc, closer(a)), 0);
    }
    int64_t end = cor_clock_now() + 5000 * MS;
    while ((r == 0 || closed == -1) && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
    cr_assert(r > 0 && r < LEN, "ended part-way: %d", r);
    cr_assert_eq(closed, how == 0 ? 1 : 0);
    /* What the send reported is what arrives: all of it, and then no more. */
    size_t got = 0;
    end = cor_clock_now() + 5000 * MS;
    while (got < (size_t)r && cor_clock_now() < end)
        if (!drain(b, in, &got, LEN))
            usleep(1000);
    usleep(20000);
    drain(b, in, &got, LEN);
    cr_assert_eq(got, (size_t)r, "reported %d, received %zu", r, got);
    cr_assert(!memcmp(in, out, got));
    free(out);
    free(in);
    cor_io_context_destroy(io);
    if (how == 0)
        close(a);
    close(b);
}

/* Receives len (<= 100) bytes into buf in one cor_recv with MSG_WAITALL; the result. */
struct waitall_receiver {
    COR_PROMISE(int);
    int fd, r;
    size_t len;
    char *buf;
};
COR_DEFINE_STATIC(waitall_receiver, (int fd, char *buf, size_t len), {
    self->fd = fd;
    self->buf = buf;
    self->len = len;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_recv(self->fd, self->buf, self->len, MSG_WAITALL));
    COR_RETURN(self->r);
}

/* A MSG_WAITALL recv of 100 bytes that got 40, then stopped: 40, and the 40 bytes. */
IO_TEST(net, a_stopped_waitall_recv_reports_the_bytes_it_got)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int a, b;
    tcp_pair(&a, &b);
    char buf[100] = {0};
    int r = 0;
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_launch_options lo = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, waitall_receiver(b, buf, 100)), 0);
    cor_io_context_run_for(io, 10 * MS);
    cr_assert_eq(send(a, "0123456789012345678901234567890123456789", 40, 0), 40);
    cor_io_context_run_for(io, 50 * MS);
    cr_assert_eq(r, 0, "40 of 100 bytes: still waiting");
    cor_stop_source_request(&src);
    int64_t end = cor_clock_now() + 5000 * MS;
    while (r == 0 && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
    cr_assert_eq(r, 40, "stopped after 40 bytes: %d", r);
    cr_assert(!memcmp(buf, "0123456789012345678901234567890123456789", 40));
    cor_io_context_destroy(io);
    close(a);
    close(b);
}

IO_TEST(net, a_stopped_waitall_send_reports_the_bytes_it_moved)
{
    waitall_send_ended_part_way(backend, 0);
}

IO_TEST(net, a_waitall_send_whose_socket_is_closed_reports_the_bytes_it_moved)
{
    waitall_send_ended_part_way(backend, 1);
}

/*
 * Sends of 1 KiB or more go SEND_ZC (io_uring: the features say so; epoll
 * sends them plainly): 1 MiB arrives intact, and the buffer, changed as soon
 * as the send completed, does not change what was sent.
 */
IO_TEST(net, zero_copy_sends_deliver_every_byte)
{
    cor_io_context_options o = {.send_zc_threshold = 1024};
    cor_io_context *io = io_test_create(backend, &o);
    if (backend == COR_IO_BACKEND_URING)
        cr_assert(cor_io_context_features(io) & COR_IO_SEND_ZC, "the kernel has SEND_ZC (6.0+)");
    else
        cr_assert_eq(cor_io_context_features(io) & COR_IO_SEND_ZC, 0);
    int a, b;
    tcp_pair(&a, &b);
    enum { LEN = 1 << 20 };
    char *out = malloc(LEN), *in = malloc(LEN);
    fill_pattern(out, LEN, 7, 3);
    int r = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sender(a, out, LEN, false)), 0);
    size_t got = receive_until_sent(io, b, in, LEN, &r, out);
    cr_assert_eq(r, LEN);
    cr_assert_eq(got, (size_t)LEN);
    for (size_t i = 0; i < LEN; i++)
        if (in[i] != (char)(i * 7 + 3))
            cr_assert_fail("byte %zu differs", i);
    free(out);
    free(in);
    cor_io_context_destroy(io);
    close(a);
    close(b);
}

/*
 * With a zero-copy threshold, sends on a Unix socket (which the kernel's
 * SEND_ZC refuses) still work: above the threshold they go plain, every
 * byte arrives, and a second large send on the same socket too.
 */
IO_TEST(net, sends_above_the_zero_copy_threshold_work_on_unix_sockets)
{
    cor_io_context_options o = {.send_zc_threshold = 1024};
    cor_io_context *io = io_test_create(backend, &o);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sv), 0);
    enum { LEN = 256 << 10 };
    char *out = malloc(LEN), *in = malloc(LEN);
    for (int round = 0; round < 2; round++) {
        fill_pattern(out, LEN, 5, (size_t)round);
        int r = 0;
        cor_launch_options lo = {.on_result = store_int, .user = &r};
        cr_assert_eq(
            COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sender(sv[0], out, LEN, false)), 0);
        size_t got = receive_until_sent(io, sv[1], in, LEN, &r, NULL);
        cr_assert_eq(r, LEN, "round %d: %d", round, r);
        cr_assert_eq(got, (size_t)LEN);
        cr_assert(!memcmp(in, out, LEN), "round %d: the bytes", round);
    }
    free(out);
    free(in);
    cor_io_context_destroy(io);
    close(sv[0]);
    close(sv[1]);
}

/*
 * A zero-copy send blocked by a peer that does not read, stopped: it
 * completes only once the kernel is done with the buffer (the bytes it
 * queued still reference it), here when the peer's end closes; the buffer
 * may then be freed.
 */
IO_TEST(net, a_stopped_zero_copy_send_completes)
{
    int a, b;
    cor_io_context *io = zc_pair(backend, &a, &b);
    enum { LEN = 64 << 20 };
    char *out = calloc(1, LEN);
    int r = 0;
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_launch_options lo = {.stop = cor_stop_source_token(&src), .on_result = store_int,
                             .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sender(a, out, LEN, false)), 0);
    cor_io_context_run_for(io, 50 * MS);
    cr_assert_eq(r, 0, "64 MiB cannot all go to a peer that does not read");
    cor_stop_source_request(&src);
    cor_io_context_run_for(io, 50 * MS);
    close(b);
    int64_t end = cor_clock_now() + 5000 * MS;
    while (r == 0 && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
    cr_assert(r == -ECANCELED || r == -ECONNRESET || r == -EPIPE || (r > 0 && r < LEN),
              "stopped: %d", r);
    free(out);
    cor_io_context_destroy(io);
    close(a);
}

/* Sends 64 KiB chunks of buf, each under a deadline of 100 ms, until one fails; its result. */
struct deadline_sender {
    COR_PROMISE(int);
    int fd;
    const char *buf;
    ssize_t n;
};
COR_DEFINE_STATIC(deadline_sender, (int fd, const char *buf), {
    self->fd = fd;
    self->buf = buf;
})
{
    COR_BEGIN();
    do
        COR_AWAIT(self->n,
                  COR_DEADLINE_AFTER(cor_send(self->fd, self->buf, 64 << 10, 0), 100 * MS));
    while (self->n > 0);
    COR_RETURN((int)self->n);
}

/*
 * A send with a deadline stays a plain send above the zero-copy threshold:
 * to a peer that does not read, the send that finds no room ends at its
 * deadline with -ETIME (a zero-copy one waited for the peer for ever: its
 * bytes had gone out and the kernel held the buffer).
 */
IO_TEST(net, a_deadline_holds_above_the_zero_copy_threshold)
{
    int a, b;
    cor_io_context *io = zc_pair(backend, &a, &b);
    static char out[64 << 10];
    int r = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, deadline_sender(a, out)), 0);
    int64_t end = cor_clock_now() + 5000 * MS;
    while (r == 0 && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
    cr_assert_eq(r, -ETIME, "the last send ended at its deadline: %d", r);
    cor_io_context_destroy(io);
    close(a);
    close(b);
}

/*
 * A zero-copy send whose bytes went out to a peer that does not read does
 * not hold the destroy: its connection is reset (the peer, having read what
 * had arrived, sees ECONNRESET), whether a stop came first or not. On epoll
 * the send is a plain one and the destroy cancels it.
 */
IO_TEST_OPTS(net, a_held_zero_copy_send_does_not_hold_the_destroy, .timeout = 60)
{
    enum { LEN = 64 << 20 };
    char *out = calloc(1, LEN);
    for (int stopped = 0; stopped < 2; stopped++) {
        int a, b;
        cor_io_context *io = zc_pair(backend, &a, &b);
        int r = 0;
        cor_stop_source src = COR_STOP_SOURCE_INIT;
        cor_launch_options lo = {
            .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sender(a, out, LEN, false)),
                     0);
        cor_io_context_run_for(io, 50 * MS);
        if (stopped) {
            cor_stop_source_request(&src);
            cor_io_context_run_for(io, 50 * MS);
        }
        if (backend == COR_IO_BACKEND_URING)
            cr_assert_eq(r, 0, "stopped %d: the send still waits for its buffer", stopped);
        else
            cr_assert(stopped ? r != 0 : r == 0, "stopped %d: %d", stopped, r);
        cor_io_context_destroy(io);
        if (backend == COR_IO_BACKEND_URING) {
            static char in[1 << 16];
            ssize_t k;
            int64_t end = cor_clock_now() + 5000 * MS;
            do
                k = recv(b, in, sizeof in, MSG_DONTWAIT);
            while ((k > 0 || (k < 0 && errno == EAGAIN)) && cor_clock_now() < end);
            cr_assert(k < 0 && errno == ECONNRESET, "stopped %d: the peer sees a reset: %zd %s",
                      stopped, k, k < 0 ? strerror(errno) : "");
        }
        close(a);
        close(b);
    }
    free(out);
}

/* Closes *fd after ms milliseconds: the watchdog of a destroy that must wait for a peer. */
struct close_later {
    int *fd;
    int ms;
};
static void *close_later_main(void *arg)
{
    struct close_later *c = arg;
    usleep((useconds_t)c->ms * 1000);
    close(*c->fd);
    *c->fd = -1;
    return NULL;
}

/*
 * A held zero-copy send whose descriptor was closed, and its number taken
 * by another connection, does not make the destroy reset that connection
 * (teardown reset whatever the number named by then): the send waits for
 * its own peer, here until the peer's end closes, and the other connection
 * still carries bytes both ways afterwards.
 */
IO_TEST_OPTS(net, a_destroy_resets_no_connection_that_took_a_held_sends_number, .timeout = 60)
{
    int a, b;
    cor_io_context *io = zc_pair(backend, &a, &b);
    enum { LEN = 64 << 20 };
    char *out = calloc(1, LEN);
    int r = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sender(a, out, LEN, false)), 0);
    cor_io_context_run_for(io, 50 * MS);
    cr_assert_eq(r, 0, "the send waits for a peer that does not read");
    int was = a;
    close(a);
    int a2, b2;
    tcp_pair(&a2, &b2);
    if (a2 != was && b2 != was) {
        close(b); /* let the send end, then say why the case could not be made */
        cor_io_context_destroy(io);
        free(out);
        close(a2);
        close(b2);
        cr_skip_test("the new connection did not take descriptor %d", was);
    }
    struct close_later c = {&b, 300};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, close_later_main, &c), 0);
    cor_io_context_destroy(io);
    pthread_join(t, NULL);
    free(out);
    char x = 0;
    cr_assert_eq(send(a2, "p", 1, MSG_NOSIGNAL), 1, "%s", strerror(errno));
    cr_assert_eq(recv(b2, &x, 1, 0), 1, "%s", strerror(errno));
    cr_assert_eq(send(b2, "q", 1, MSG_NOSIGNAL), 1, "%s", strerror(errno));
    cr_assert_eq(recv(a2, &x, 1, 0), 1, "%s", strerror(errno));
    cr_assert_eq(x, 'q');
    close(a2);
    close(b2);
}

/*
 * A send through a registered file is never zero-copy (teardown could not
 * tell which socket a slot names by then): stopped while a peer does not
 * read, it ends at once, as a plain send does.
 */
IO_TEST(net, a_send_through_a_registered_file_is_plain)
{
    int a, b;
    cor_io_context *io = zc_pair(backend, &a, &b);
    cr_assert_eq(cor_io_files_register(io, &a, 1), 0);
    enum { LEN = 64 << 20 };
    char *out = calloc(1, LEN);
    struct fixed_sender_state st = {.buf = out, .len = LEN};
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    int r = 0;
    cor_launch_options lo = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, fixed_sender(&st)), 0);
    cor_io_context_run_for(io, 50 * MS);
    cr_assert_eq(r, 0, "64 MiB cannot all go to a peer that does not read");
    cor_stop_source_request(&src);
    int64_t end = cor_clock_now() + 5000 * MS;
    while (r == 0 && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
    cr_assert(r == -ECANCELED || (r > 0 && r < LEN), "stopped: %d", r);
    cor_io_context_destroy(io);
    free(out);
    close(a);
    close(b);
}
