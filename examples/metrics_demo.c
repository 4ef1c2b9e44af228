/*
 * metrics_demo: an echo server to look into while it runs.
 *
 *     metrics_demo [--port P] [--stall-ms MS]
 *     kill -USR1 <pid>     one line of counters on stderr (metrics.h)
 *     kill -USR2 <pid>     every suspended coroutine with its await chain (dump.h)
 *     kill -TERM <pid>     stop (or SIGINT)
 *
 * One io_context on the main thread, created with the default backend (so
 * it runs on epoll, and says why, where io_uring is refused). The signals
 * are taken by a coroutine (cor_signal_wait), so the counters and the dump
 * are printed on the io_context's own thread, between two handlers. With
 * --stall-ms, a run-loop iteration busier than that is logged once.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <coring/coring.h>

#include "args.h"

struct session {
    COR_PROMISE(int);
    int fd, n;
    ssize_t sent;
    char buf[4096];
};
COR_DEFINE_STATIC(session, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    for (;;) {
        COR_AWAIT(self->n, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
        if (self->n <= 0)
            break;
        COR_AWAIT(self->sent, cor_send_all(self->fd, self->buf, (size_t)self->n));
        if (self->sent < 0)
            break;
    }
    COR_AWAIT(self->n, cor_close(self->fd));
    COR_RETURN(0);
}

struct acceptor {
    COR_PROMISE(int);
    int fd, conn;
    cor_launch_options opts;
};
COR_DEFINE_STATIC(acceptor, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    self->opts = (cor_launch_options){.stop = COR_THIS_STOP_TOKEN()};
    for (;;) {
        COR_AWAIT(self->conn, cor_accept(self->fd, NULL));
        if (self->conn == -ECANCELED)
            break;
        if (self->conn < 0) {
            /* Out of descriptors (EMFILE) or memory: back off instead of spinning on accept. */
            COR_AWAIT_VOID(cor_sleep_for(100 * 1000 * 1000));
            continue;
        }
        if (COR_RUN_ASYNC(COR_THIS_EXECUTOR(), &self->opts, session(self->conn)) != 0)
            close(self->conn);
    }
    COR_AWAIT(self->conn, cor_close(self->fd));
    COR_RETURN(0);
}

static void print_metrics(cor_io_context *io)
{
    cor_io_metrics m;
    if (cor_io_context_metrics(io, &m))
        return;
    fprintf(stderr,
            "metrics: ops %llu started, %llu completed, %llu in flight | %llu SQEs in %llu "
            "enters (%.2f per enter), %llu CQ overflows | wake-ups %llu sent, %llu received | "
            "posts %llu local, %llu remote | %llu timers | %llu iterations, longest %.3f ms, "
            "%llu stalls\n",
            (unsigned long long)m.ops_started, (unsigned long long)m.ops_completed,
            (unsigned long long)m.ops_in_flight, (unsigned long long)m.sqes,
            (unsigned long long)m.enters, m.enters ? (double)m.sqes / (double)m.enters : 0.0,
            (unsigned long long)m.cq_overflows, (unsigned long long)m.wakeups_sent,
            (unsigned long long)m.wakeups_received, (unsigned long long)m.posts_local,
            (unsigned long long)m.posts_remote, (unsigned long long)m.timers,
            (unsigned long long)m.iterations, (double)m.longest_ns / 1e6,
            (unsigned long long)m.stalls);
}

/* Takes SIGUSR1 (metrics), SIGUSR2 (dump), SIGINT and SIGTERM (stop). */
struct watcher {
    COR_PROMISE(int);
    sigset_t set;
    cor_stop_source *stop;
    int sig;
};
COR_DEFINE_STATIC(watcher, (const sigset_t *set, cor_stop_source *stop), {
    self->set = *set;
    self->stop = stop;
})
{
    COR_BEGIN();
    for (;;) {
        COR_AWAIT(self->sig, cor_signal_wait(&self->set));
        if (self->sig == SIGUSR1)
            print_metrics(cor_io_context_current());
        else if (self->sig == SIGUSR2)
            cor_io_context_dump(cor_io_context_current(), stderr);
        else
            break;
    }
    fprintf(stderr, "metrics_demo: stopping\n");
    cor_stop_source_request(self->stop);
    COR_RETURN(0);
}

int main(int argc, char **argv)
{
    int port = 8080;
    long long stall_ms = 0, x;
    bool ok = argc % 2 == 1;
    for (int i = 1; ok && i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port") && arg_int(argv[i + 1], 1, 65535, &x))
            port = (int)x;
        else if (!strcmp(argv[i], "--stall-ms") && arg_int(argv[i + 1], 0, ARG_MS_MAX, &x))
            stall_ms = x;
        else
            ok = false;
    }
    if (!ok) {
        fprintf(stderr, "usage: %s [--port P] [--stall-ms MS]\n", argv[0]);
        return 2;
    }
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGUSR1);
    sigaddset(&set, SIGUSR2);
    sigaddset(&set, SIGINT);
    sigaddset(&set, SIGTERM);
    cor_signals_block(&set);
    signal(SIGPIPE, SIG_IGN);

    cor_io_context *io;
    int rc = cor_io_context_create(&io, NULL);
    if (rc) {
        fprintf(stderr, "metrics_demo: io_context: %s\n", cor_strerror(rc));
        return 1;
    }
    cor_io_context_set_stall_threshold(io, stall_ms * 1000000);
    cor_sockaddr addr;
    cor_addr_ip(&addr, "127.0.0.1", port);
    int fd = cor_listen(&addr, 128, 0);
    if (fd < 0) {
        fprintf(stderr, "metrics_demo: listen on 127.0.0.1:%d: %s\n", port, cor_strerror(fd));
        cor_io_context_destroy(io);
        return 1;
    }
    cor_stop_source stop;
    cor_stop_source_init(&stop);
    cor_launch_options lo = {.stop = cor_stop_source_token(&stop)};
    cor_executor ex = cor_io_context_executor(io);
    if (COR_RUN_ASYNC(ex, &lo, acceptor(fd)) || COR_RUN_ASYNC(ex, NULL, watcher(&set, &stop))) {
        fprintf(stderr, "metrics_demo: launch failed\n");
        return 1;
    }
    cor_io_context_info info;
    cor_io_context_get_info(io, &info);
    fprintf(stderr,
            "metrics_demo: pid %d, echo on 127.0.0.1:%d (%s); SIGUSR1: metrics, "
            "SIGUSR2: dump\n",
            (int)getpid(), port, info.backend == COR_IO_BACKEND_EPOLL ? "epoll" : "io_uring");
    long n = cor_io_context_run(io);
    print_metrics(io);
    cor_io_context_destroy(io);
    return n < 0 ? 1 : 0;
}
