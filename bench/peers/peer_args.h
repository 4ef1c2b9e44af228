/*
 * What the peer echo servers share, for C and C++ alike: the command line
 * (--port, --threads, --duration), the SO_REUSEPORT listening socket every
 * serving thread opens, and the wait for SIGINT, SIGTERM or the duration.
 */
#ifndef CORING_BENCH_PEER_ARGS_H
#define CORING_BENCH_PEER_ARGS_H

#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define PEER_BACKLOG 4096

typedef struct peer_args {
    int port, threads;
    double duration_s; /* 0: until a signal */
} peer_args;

static inline void peer_usage(const char *prog)
{
    fprintf(stderr, "usage: %s --port P [--threads N] [--duration S]\n", prog);
    exit(2);
}

/* Parses the command line into a, exiting with a usage message on a bad one. */
static inline void peer_parse_args(int argc, char **argv, const char *prog, peer_args *a)
{
    a->port = 0;
    a->threads = 1;
    a->duration_s = 0;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            peer_usage(prog);
        char *end;
        double v = strtod(argv[i + 1], &end);
        if (end == argv[i + 1] || *end)
            peer_usage(prog);
        if (!strcmp(argv[i], "--port"))
            a->port = (int)v;
        else if (!strcmp(argv[i], "--threads"))
            a->threads = (int)v;
        else if (!strcmp(argv[i], "--duration"))
            a->duration_s = v;
        else
            peer_usage(prog);
    }
    if (a->port <= 0 || a->port > 65535 || a->threads < 1 || a->threads > 256 || a->duration_s < 0)
        peer_usage(prog);
    /* A thousand connections need more descriptors than the usual soft limit of 1024. */
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
}

/*
 * Blocks SIGINT and SIGTERM in the calling thread and every thread it creates
 * afterwards, so only peer_wait_for_stop receives them.
 */
static inline void peer_block_signals(sigset_t *set)
{
    sigemptyset(set);
    sigaddset(set, SIGINT);
    sigaddset(set, SIGTERM);
    pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* Returns when SIGINT or SIGTERM arrives or, if duration_s > 0, when it has passed. */
static inline void peer_wait_for_stop(const sigset_t *set, double duration_s)
{
    if (duration_s <= 0) {
        int sig;
        sigwait(set, &sig);
        return;
    }
    struct timespec left;
    left.tv_sec = (time_t)duration_s;
    left.tv_nsec = (long)((duration_s - (double)left.tv_sec) * 1e9);
    while (sigtimedwait(set, NULL, &left) < 0 && errno == EINTR)
        ;
}

/*
 * A non-blocking TCP socket listening on 127.0.0.1:port with SO_REUSEPORT,
 * so each serving thread can open its own. Returns the descriptor or -errno.
 */
static inline int peer_listen_socket(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    int one = 1;
    struct sockaddr_in sa;
    memset(&sa, 0, sizeof sa);
    sa.sin_family = AF_INET;
    sa.sin_port = htons((uint16_t)port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) ||
        setsockopt(fd, SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) ||
        bind(fd, (struct sockaddr *)&sa, sizeof sa) || listen(fd, PEER_BACKLOG)) {
        int err = -errno;
        fprintf(stderr, "listen on 127.0.0.1:%d: %s\n", port, strerror(errno));
        close(fd);
        return err;
    }
    return fd;
}

#endif
