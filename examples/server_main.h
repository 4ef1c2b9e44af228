/*
 * What echo_server and http_hello share: the command line
 * (--port P, --threads N, --backend uring|epoll), one SO_REUSEPORT listener
 * per io_context, and a clean shutdown on SIGINT or SIGTERM.
 *
 * Shutdown. Every coroutine runs with one stop token. The main thread
 * blocks the two signals (the io_context threads inherit the mask) and
 * waits for one with sigwait; it then requests stop: each pending accept
 * and recv completes with -ECANCELED, the coroutines close their sockets
 * and return, each io_context runs out of work and cor_io_group_join
 * returns.
 */
#ifndef CORING_EXAMPLES_SERVER_MAIN_H
#define CORING_EXAMPLES_SERVER_MAIN_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include <coring/coring.h>

typedef struct server_args {
    int port, threads, backend;
} server_args;

static void server_usage(const char *prog)
{
    fprintf(stderr, "usage: %s [--port P] [--threads N] [--backend uring|epoll]\n", prog);
    exit(2);
}

static void server_parse_args(int argc, char **argv, server_args *a)
{
    a->port = 8080;
    a->threads = 1;
    a->backend = COR_IO_BACKEND_URING;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            server_usage(argv[0]);
        const char *v = argv[i + 1];
        if (!strcmp(argv[i], "--port")) {
            a->port = atoi(v);
        } else if (!strcmp(argv[i], "--threads")) {
            a->threads = atoi(v);
        } else if (!strcmp(argv[i], "--backend")) {
            if (!strcmp(v, "uring") || !strcmp(v, "io_uring"))
                a->backend = COR_IO_BACKEND_URING;
            else if (!strcmp(v, "epoll"))
                a->backend = COR_IO_BACKEND_EPOLL;
            else
                server_usage(argv[0]);
        } else {
            server_usage(argv[0]);
        }
    }
    if (a->port <= 0 || a->port > 65535 || a->threads < 1 || a->threads > 1024)
        server_usage(argv[0]);
}

/* Creates the coroutine that serves one accepted connection (it owns fd). */
typedef cor_frame *(*server_session_fn)(int fd);

/*
 * The accept loop of one io_context: a session per connection, launched on
 * the same executor with the same (shutdown) stop token. It owns the
 * listener and ends when stop cancels its accept.
 */
struct acceptor {
    COR_PROMISE(int);
    int fd, conn, slept;
    server_session_fn session;
    cor_launch_options opts;
};
COR_DEFINE_STATIC(acceptor, (int fd, server_session_fn session), {
    self->fd = fd;
    self->session = session;
})
{
    COR_BEGIN();
    self->opts = (cor_launch_options){.stop = COR_THIS_STOP_TOKEN()};
    for (;;) {
        COR_AWAIT(self->conn, cor_accept(self->fd, NULL));
        if (self->conn == -ECANCELED)
            break;
        if (self->conn < 0) {
            /* Out of descriptors or memory: back off instead of spinning. */
            if (self->conn == -EMFILE || self->conn == -ENFILE || self->conn == -ENOMEM)
                COR_AWAIT(self->slept, cor_sleep_for(1000000));
            continue;
        }
        if (COR_RUN_ASYNC(COR_THIS_EXECUTOR(), &self->opts, self->session(self->conn)) != 0)
            close(self->conn);
    }
    COR_AWAIT(self->conn, cor_close(self->fd));
    COR_RETURN(0);
}

/*
 * Runs a server: one listener on 127.0.0.1:port and one io_context per
 * thread, each running an accept loop that starts session(fd) for every
 * connection, with the shutdown stop token. Returns the process exit status.
 */
static int server_run(const char *name, const server_args *a, server_session_fn session,
                      cor_stop_source *stop)
{
    /* A thousand connections need more descriptors than the usual soft limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    cor_io_context_options io_opts = {.backend = a->backend};
    /* One thread is left where it runs (taskset decides); several are pinned, one per CPU. */
    cor_io_group_options g_opts = {.no_pin = a->threads == 1, .context = &io_opts};
    cor_io_group *g;
    int rc = cor_io_group_create(&g, (unsigned)a->threads, &g_opts);
    if (rc) {
        fprintf(stderr, "%s: cannot start %d io_context(s) on the %s backend: %s\n", name,
                a->threads, a->backend == COR_IO_BACKEND_EPOLL ? "epoll" : "io_uring",
                cor_strerror(rc));
        return 1;
    }
    cor_sockaddr addr;
    cor_addr_ip(&addr, "127.0.0.1", a->port);
    cor_launch_options l_opts = {.stop = cor_stop_source_token(stop)};
    for (int i = 0; i < a->threads; i++) {
        int fd = cor_listen(&addr, 4096, a->threads > 1 ? COR_NET_REUSEPORT : 0);
        if (fd < 0) {
            fprintf(stderr, "%s: listen on 127.0.0.1:%d: %s\n", name, a->port, cor_strerror(fd));
            cor_io_group_destroy(g);
            return 1;
        }
        rc = COR_RUN_ASYNC(cor_io_group_executor(g, (unsigned)i), &l_opts, acceptor(fd, session));
        if (rc) {
            close(fd);
            fprintf(stderr, "%s: launch: %s\n", name, cor_strerror(rc));
            cor_io_group_destroy(g);
            return 1;
        }
    }
    fprintf(stderr, "%s: listening on 127.0.0.1:%d with %d io_context(s) (%s)\n", name, a->port,
            a->threads, a->backend == COR_IO_BACKEND_EPOLL ? "epoll" : "io_uring");
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "%s: %s, shutting down\n", name, sig == SIGINT ? "SIGINT" : "SIGTERM");
    cor_stop_source_request(stop);
    cor_io_group_join(g);
    cor_io_group_destroy(g);
    return 0;
}

#endif
