/*
 * tcp_proxy: forwards every TCP connection accepted on 127.0.0.1:P to a
 * backend, bytes both ways, until both sides have ended. An end of stream
 * from one side is passed on (shutdown of the sending side towards the
 * other) while the other direction goes on, so a client that half-closes
 * still gets its answer; a reset or an error in either direction ends both.
 * The backend connect has a deadline; a connection with no traffic either
 * way for --idle-ms is closed; SIGINT or SIGTERM stops accepting at once and
 * lets connections finish for --grace-ms.
 *
 *     tcp_proxy --to IP:PORT [--port P] [--connect-ms MS] [--idle-ms MS]
 *               [--grace-ms MS] [--backend uring|epoll]
 *
 * Written with the toolkit: the server loop (serve.h) accepts and owns the
 * client descriptors, when_all (compose.h) runs the two directions and
 * stops the survivor when one fails, cor_signal_wait (signals.h) ends the
 * server, which is itself one branch of a when_any.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coring/coring.h>

#include "args.h"

#define MS (1000LL * 1000)

static cor_sockaddr upstream;
static int64_t connect_ns = 2000 * MS, idle_ns = 60000 * MS;

/* ---- the session logic ---- */

/*
 * One direction, from -> to, until end of stream (passed on: `to` is shut
 * down for writing; result 0), an error or stop (the pump fails with it, so
 * the join stops the other direction). A receive cut by the idle limit ends
 * it only if the other direction was idle as long: *last is when either
 * direction last moved bytes.
 */
struct pump {
    COR_PROMISE(int);
    int from, to, n;
    ssize_t sent;
    int64_t *last;
    char buf[16384];
};
COR_DEFINE_STATIC(pump, (int from, int to, int64_t *last), {
    self->from = from;
    self->to = to;
    self->last = last;
})
{
    COR_BEGIN();
    for (;;) {
        COR_AWAIT(self->n, cor_recv(self->from, self->buf, sizeof self->buf, 0));
        if (self->n == -ETIME && cor_clock_now() - *self->last < idle_ns)
            continue; /* this way is quiet, the other is not: the connection is in use */
        if (self->n < 0)
            COR_FAIL(self->n);
        if (self->n == 0)
            break;
        *self->last = cor_clock_now();
        COR_AWAIT(self->sent, cor_send_all(self->to, self->buf, (size_t)self->n));
        if (self->sent < 0)
            COR_FAIL((int)self->sent);
    }
    COR_AWAIT(self->n, cor_shutdown(self->to, SHUT_WR));
    if (self->n < 0 && self->n != -ENOTCONN)
        COR_FAIL(self->n);
    COR_RETURN(0);
}

/* One client: connect to the backend (with a deadline), then pump both ways until both end. */
struct session {
    COR_PROMISE(int);
    int client, backend, r, up, down;
    int64_t last;
};
COR_DEFINE_STATIC(session, (int client), { self->client = client; })
{
    COR_BEGIN();
    self->backend = cor_socket(upstream.u.sa.sa_family, SOCK_STREAM);
    if (self->backend < 0)
        COR_RETURN(self->backend);
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_connect(self->backend, &upstream), connect_ns));
    if (self->r == 0) {
        self->last = cor_clock_now();
        /* Both directions to their end; the first to fail stops the other. */
        COR_TRY_AWAIT_ALL(self->r, (self->up, pump(self->client, self->backend, &self->last)),
                          (self->down, pump(self->backend, self->client, &self->last)));
    }
    COR_AWAIT_VOID(cor_close(self->backend)); /* the client's is closed by the server loop */
    COR_RETURN(self->r);
}

static cor_frame *new_session(void *user, int fd)
{
    (void)user;
    return COR_FRAME(session(fd));
}

/* The program: serve until SIGINT or SIGTERM, whichever comes first ends the other. */
struct proxy {
    COR_PROMISE(int);
    int listener, which, served, sig;
    cor_serve_options o;
    sigset_t signals;
};
COR_DEFINE_STATIC(proxy, (int listener, const cor_serve_options *o, const sigset_t *signals), {
    self->listener = listener;
    self->o = *o;
    self->signals = *signals;
})
{
    COR_BEGIN();
    COR_AWAIT_ANY(self->which, (self->served, cor_serve(self->listener, new_session, NULL, &self->o)),
                  (self->sig, cor_signal_wait(&self->signals)));
    if (self->which == 1)
        fprintf(stderr, "tcp_proxy: %s, stopped\n", self->sig == SIGINT ? "SIGINT" : "SIGTERM");
    COR_RETURN(self->which == 0 ? self->served : 0);
}

/* ---- the command line ---- */

static void usage(void)
{
    fprintf(stderr, "usage: tcp_proxy --to IP:PORT [--port P] [--connect-ms MS] [--idle-ms MS]"
                    " [--grace-ms MS] [--backend uring|epoll]\n");
    exit(2);
}

static void on_result(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

int main(int argc, char **argv)
{
    int port = 8080, backend = COR_IO_BACKEND_DEFAULT;
    const char *to = NULL;
    cor_serve_options o = {.idle_timeout = idle_ns, .grace = 1000 * MS, .backlog = 4096};
    for (int i = 1; i < argc; i += 2) {
        const char *k = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
        long long x;
        if (!strcmp(k, "--to"))
            to = v;
        else if (!strcmp(k, "--port") && arg_int(v, 1, 65535, &x))
            port = (int)x;
        else if (!strcmp(k, "--connect-ms") && arg_int(v, 1, ARG_MS_MAX, &x))
            connect_ns = x * MS;
        else if (!strcmp(k, "--idle-ms") && arg_int(v, 0, ARG_MS_MAX, &x))
            o.idle_timeout = idle_ns = x * MS;
        else if (!strcmp(k, "--grace-ms") && arg_int(v, 0, ARG_MS_MAX, &x))
            o.grace = x * MS;
        else if (!strcmp(k, "--backend") && (!strcmp(v, "uring") || !strcmp(v, "epoll")))
            backend = !strcmp(v, "epoll") ? COR_IO_BACKEND_EPOLL : COR_IO_BACKEND_URING;
        else
            usage();
    }
    if (!to || cor_addr_parse(&upstream, to) || cor_addr_port(&upstream) == 0)
        usage();
    /* Blocked before anything else, so only cor_signal_wait takes them. */
    sigset_t signals;
    sigemptyset(&signals);
    sigaddset(&signals, SIGINT);
    sigaddset(&signals, SIGTERM);
    cor_signals_block(&signals);
    signal(SIGPIPE, SIG_IGN);

    cor_io_context *io;
    cor_io_context_options io_opts = {.backend = backend};
    int rc = cor_io_context_create(&io, &io_opts);
    if (rc) {
        fprintf(stderr, "tcp_proxy: io_context: %s\n", cor_strerror(rc));
        return 1;
    }
    cor_sockaddr addr;
    cor_addr_ip(&addr, "127.0.0.1", port);
    int fd = cor_listen(&addr, o.backlog, COR_NET_NODELAY);
    int result = fd < 0 ? fd : -1;
    cor_launch_options lo = {.on_result = on_result, .user = &result};
    if (fd >= 0 && (rc = COR_RUN_ASYNC(cor_io_context_executor(io), &lo, proxy(fd, &o, &signals)))) {
        close(fd); /* the server never started: the listener is still ours */
        result = rc;
    }
    if (fd >= 0 && !rc) {
        fprintf(stderr, "tcp_proxy: 127.0.0.1:%d -> %s\n", port, to);
        cor_io_context_run(io);
    }
    cor_io_context_destroy(io);
    if (result)
        fprintf(stderr, "tcp_proxy: %s\n", cor_strerror(result));
    return result ? 1 : 0;
}
