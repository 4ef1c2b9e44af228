/*
 * The command line and main loop the example servers share:
 *
 *     --port P         127.0.0.1:P (default 8080)
 *     --threads N      one io_context per thread, one listener each (SO_REUSEPORT)
 *     --backend B      uring or epoll (default: io_uring, or epoll where the
 *                      kernel refuses io_uring, said once on stderr)
 *     --idle-ms MS     close a connection idle that long (0: never; default 60000)
 *     --grace-ms MS    on SIGINT/SIGTERM, let sessions finish for that long (default 1000)
 *
 * The server loop itself is the library's (serve.h): this file only turns
 * the command line into cor_serve_options, starts cor_serve_start on an
 * io_group, and waits for SIGINT or SIGTERM to stop it.
 */
#ifndef CORING_EXAMPLES_CLI_H
#define CORING_EXAMPLES_CLI_H

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <coring/coring.h>

#include "args.h"

typedef struct server_args {
    int port, threads, backend;
    long long idle_ms, grace_ms;
} server_args;

static void server_usage(const char *prog, const char *extra_usage)
{
    fprintf(stderr,
            "usage: %s [--port P] [--threads N] [--backend uring|epoll] [--idle-ms MS]"
            " [--grace-ms MS]%s%s\n",
            prog, extra_usage ? " " : "", extra_usage ? extra_usage : "");
    exit(2);
}

/*
 * Parses the shared options; extra(name, value) may claim others (returns 0
 * if it did), which extra_usage names for the usage line (NULL: none).
 */
static void server_parse_args(int argc, char **argv, server_args *a,
                              int (*extra)(const char *name, const char *value),
                              const char *extra_usage)
{
    *a = (server_args){.port = 8080, .threads = 1, .backend = COR_IO_BACKEND_DEFAULT,
                       .idle_ms = 60000, .grace_ms = 1000};
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            server_usage(argv[0], extra_usage);
        const char *k = argv[i], *v = argv[i + 1];
        long long x;
        if (!strcmp(k, "--port") && arg_int(v, 1, 65535, &x))
            a->port = (int)x;
        else if (!strcmp(k, "--threads") && arg_int(v, 1, 1024, &x))
            a->threads = (int)x;
        else if (!strcmp(k, "--idle-ms") && arg_int(v, 0, ARG_MS_MAX, &x))
            a->idle_ms = x;
        else if (!strcmp(k, "--grace-ms") && arg_int(v, 0, ARG_MS_MAX, &x))
            a->grace_ms = x;
        else if (!strcmp(k, "--backend") && (!strcmp(v, "uring") || !strcmp(v, "io_uring")))
            a->backend = COR_IO_BACKEND_URING;
        else if (!strcmp(k, "--backend") && !strcmp(v, "epoll"))
            a->backend = COR_IO_BACKEND_EPOLL;
        else if (!extra || extra(k, v))
            server_usage(argv[0], extra_usage);
    }
}

/*
 * Serves 127.0.0.1:port with session() on a->threads io_contexts until
 * SIGINT or SIGTERM, then stops gracefully. ready(g, user), if not NULL,
 * runs once the io_contexts exist, before the first connection (a non-zero
 * return ends the program). Returns the exit status.
 */
static int server_main(const char *name, const server_args *a, cor_session_fn session, void *user,
                       int (*ready)(cor_io_group *g, void *user))
{
    /* A thousand connections need more descriptors than the usual soft limit. */
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    /* Blocked before any thread starts, so every thread inherits the mask. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    cor_signals_block(&sigs);
    signal(SIGPIPE, SIG_IGN);

    cor_io_context_options io_opts = {.backend = a->backend};
    /* One thread is left where it runs (taskset decides); several are pinned, one per CPU. */
    cor_io_group_options g_opts = {.no_pin = a->threads == 1, .context = &io_opts};
    cor_io_group *g;
    int rc = cor_io_group_create(&g, (unsigned)a->threads, &g_opts);
    if (rc) {
        fprintf(stderr, "%s: cannot start %d io_context(s): %s\n", name, a->threads,
                cor_strerror(rc));
        return 1;
    }
    if (ready && (rc = ready(g, user)) != 0) {
        fprintf(stderr, "%s: %s\n", name, cor_strerror(rc));
        cor_io_group_destroy(g);
        return 1;
    }
    cor_sockaddr addr;
    cor_addr_ip(&addr, "127.0.0.1", a->port);
    cor_serve_options o = {.idle_timeout = a->idle_ms * 1000000LL,
                           .grace = a->grace_ms * 1000000LL,
                           .backlog = 4096};
    cor_stop_source stop;
    cor_stop_source_init(&stop);
    rc = cor_serve_start(g, &addr, session, user, &o, cor_stop_source_token(&stop));
    if (rc) {
        fprintf(stderr, "%s: serve on 127.0.0.1:%d: %s\n", name, a->port, cor_strerror(rc));
        cor_stop_source_request(&stop);
        cor_io_group_join(g);
        cor_io_group_destroy(g);
        return 1;
    }
    cor_io_context_info info;
    cor_io_context_get_info(cor_io_group_context(g, 0), &info);
    fprintf(stderr, "%s: listening on 127.0.0.1:%d with %d io_context(s) (%s)\n", name, a->port,
            a->threads, info.backend == COR_IO_BACKEND_EPOLL ? "epoll" : "io_uring");
    int sig = 0;
    sigwait(&sigs, &sig);
    fprintf(stderr, "%s: %s, shutting down\n", name, sig == SIGINT ? "SIGINT" : "SIGTERM");
    cor_stop_source_request(&stop);
    cor_io_group_join(g);
    cor_io_group_destroy(g);
    return 0;
}

#endif
