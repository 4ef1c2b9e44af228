/*
 * The tcp_proxy example end to end, on both backends: bytes round-trip
 * through the proxy to echo_server on many connections at once; a client's
 * half-close is passed on and the rest of its answer still arrives; an idle
 * connection is closed and a busy one kept; a refused backend and a backend
 * that never answers (its accept queue full) close the client's connection,
 * the latter at the connect deadline; SIGTERM refuses new connections, lets
 * one in progress finish, and the proxy exits 0. The binaries come from
 * TCP_PROXY and ECHO_SERVER in the environment (set by meson).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "program.h"

static const char *backends[] = {"uring", "epoll"};

static long now_ms(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec * 1000 + t.tv_nsec / 1000000;
}

struct setup {
    pid_t echo, proxy;
    int echo_port, proxy_port;
};

/* echo_server on one port, tcp_proxy in front of it on another, both on backend b. */
static void start(struct setup *s, const char *b, const char *const *proxy_extra)
{
    char ep[16], pp[16], to[32];
    s->echo_port = prog_free_port();
    s->proxy_port = prog_free_port();
    snprintf(ep, sizeof ep, "%d", s->echo_port);
    snprintf(pp, sizeof pp, "%d", s->proxy_port);
    snprintf(to, sizeof to, "127.0.0.1:%d", s->echo_port);
    const char *echo_args[] = {"--port", ep, "--backend", b, NULL};
    s->echo = prog_spawn("ECHO_SERVER", s->echo_port, echo_args);
    const char *args[20] = {"--port", pp, "--to", to, "--backend", b};
    for (int i = 0; proxy_extra && proxy_extra[i] && i < 12; i++)
        args[6 + i] = proxy_extra[i];
    s->proxy = prog_spawn("TCP_PROXY", s->proxy_port, args);
}

static void stop(struct setup *s)
{
    cr_assert_eq(prog_terminate(s->proxy), 0, "the proxy exits 0 after SIGTERM");
    cr_assert_eq(prog_terminate(s->echo), 0);
}

/* Sends len bytes and reads them back, interleaved in 4 KiB steps. Returns 1 if all matched. */
static int round_trip(int fd, const unsigned char *out, size_t len)
{
    static unsigned char in[1 << 16];
    size_t sent = 0, got = 0;
    while (got < len) {
        if (sent < len) {
            size_t k = len - sent < 4096 ? len - sent : 4096;
            if (send(fd, out + sent, k, MSG_NOSIGNAL) != (ssize_t)k)
                return 0;
            sent += k;
        }
        while (got < sent) {
            ssize_t k = recv(fd, in + got, sent - got, 0);
            if (k <= 0)
                return 0;
            got += (size_t)k;
        }
    }
    return !memcmp(in, out, len);
}

Test(proxy, bytes_round_trip_through_the_proxy_on_many_connections, .timeout = 120)
{
    static unsigned char data[1 << 16];
    srand(7);
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)rand();
    for (int b = 0; b < 2; b++) {
        struct setup s;
        start(&s, backends[b], NULL);
        enum { N = 32 };
        int fds[N];
        for (int i = 0; i < N; i++)
            cr_assert_geq(fds[i] = prog_dial(s.proxy_port), 0);
        /* Every connection open at once; each sends 64 KiB of its own bytes. */
        for (int round = 0; round < 2; round++)
            for (int i = 0; i < N; i++)
                cr_assert(round_trip(fds[i], data + (i * 997) % 1024, sizeof data - 1024),
                          "%s: connection %d, round %d", backends[b], i, round);
        for (int i = 0; i < N; i++)
            close(fds[i]);
        stop(&s);
    }
}

/*
 * A client that half-closes (shutdown SHUT_WR after its last bytes) still
 * gets every byte back, then the end of stream: the proxy passes the end on
 * to the backend and keeps the other direction open until the backend ends.
 */
Test(proxy, a_half_close_is_passed_on_and_the_answer_still_arrives, .timeout = 60)
{
    static unsigned char data[1 << 16], back[1 << 16];
    for (size_t i = 0; i < sizeof data; i++)
        data[i] = (unsigned char)(i * 31 + 7);
    for (int b = 0; b < 2; b++) {
        struct setup s;
        start(&s, backends[b], NULL);
        int fd = prog_dial(s.proxy_port);
        cr_assert_geq(fd, 0);
        size_t half = sizeof data / 2;
        cr_assert(round_trip(fd, data, half), "%s: the first half", backends[b]);
        /* The second half in one go, the end of stream right behind it. */
        cr_assert_eq(send(fd, data + half, half, MSG_NOSIGNAL), (ssize_t)half);
        cr_assert_eq(shutdown(fd, SHUT_WR), 0);
        size_t got = 0;
        ssize_t k;
        while (got < half && (k = recv(fd, back + got, half - got, 0)) > 0)
            got += (size_t)k;
        cr_assert_eq(got, half, "%s: %zu of %zu bytes after the half-close", backends[b], got,
                     half);
        cr_assert(!memcmp(back, data + half, half), "%s: the bytes", backends[b]);
        char c;
        cr_assert_eq(recv(fd, &c, 1, 0), 0, "%s: then the end of stream", backends[b]);
        close(fd);
        stop(&s);
    }
}

/* Milliseconds until the peer closes fd (what it sends is dropped); at most the 5 s timeout. */
static long ms_until_closed(int fd)
{
    long t0 = now_ms();
    char buf[512];
    while (read(fd, buf, sizeof buf) > 0)
        ;
    return now_ms() - t0;
}

Test(proxy, an_idle_connection_is_closed_and_a_busy_one_kept, .timeout = 60)
{
    for (int b = 0; b < 2; b++) {
        struct setup s;
        const char *extra[] = {"--idle-ms", "300", NULL};
        start(&s, backends[b], extra);
        int idle = prog_dial(s.proxy_port);
        int busy = prog_dial(s.proxy_port);
        /* The busy one sends every 100 ms for a second: never 300 ms quiet. */
        long t0 = now_ms();
        for (int i = 0; i < 10; i++) {
            usleep(100 * 1000);
            cr_assert(round_trip(busy, (const unsigned char *)"ping", 4), "%s: busy %d",
                      backends[b], i);
        }
        cr_assert_geq(now_ms() - t0, 1000);
        char c;
        cr_assert_eq(recv(idle, &c, 1, MSG_DONTWAIT), 0, "%s: the idle one was closed",
                     backends[b]);
        long ms = ms_until_closed(busy);
        cr_assert(ms >= 200 && ms < 3000, "%s: the busy one closed %ld ms after it went quiet",
                  backends[b], ms);
        close(idle);
        close(busy);
        stop(&s);
    }
}

/*
 * A refused backend: the client's connection is closed at once. A backend
 * whose accept queue is full (the kernel drops the SYN): closed at the
 * connect deadline, not before.
 */
Test(proxy, a_backend_that_refuses_or_never_answers_closes_the_client, .timeout = 60)
{
    for (int b = 0; b < 2; b++) {
        char pp[16], to[32];
        int port = prog_free_port(), dead = prog_free_port();
        snprintf(pp, sizeof pp, "%d", port);
        snprintf(to, sizeof to, "127.0.0.1:%d", dead);
        const char *args[] = {"--port", pp, "--to", to, "--backend", backends[b],
                              "--connect-ms", "1000", NULL};
        pid_t proxy = prog_spawn("TCP_PROXY", port, args);
        int fd = prog_dial(port);
        long ms = ms_until_closed(fd);
        /* At once: well before the connect deadline (a loaded machine may take a while). */
        cr_assert_lt(ms, 800, "%s: refused: closed after %ld ms", backends[b], ms);
        close(fd);
        cr_assert_eq(prog_terminate(proxy), 0);

        /* A listener nobody accepts on, its queue filled. */
        int full = socket(AF_INET, SOCK_STREAM, 0);
        struct sockaddr_in a = {.sin_family = AF_INET};
        a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
        socklen_t len = sizeof a;
        cr_assert_eq(bind(full, (struct sockaddr *)&a, sizeof a), 0);
        cr_assert_eq(listen(full, 0), 0);
        getsockname(full, (struct sockaddr *)&a, &len);
        int fillers[4], nf = 0;
        for (; nf < 4; nf++) {
            fillers[nf] = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
            connect(fillers[nf], (struct sockaddr *)&a, sizeof a);
        }
        usleep(50 * 1000);
        port = prog_free_port();
        snprintf(pp, sizeof pp, "%d", port);
        snprintf(to, sizeof to, "127.0.0.1:%d", ntohs(a.sin_port));
        proxy = prog_spawn("TCP_PROXY", port, args);
        fd = prog_dial(port);
        ms = ms_until_closed(fd);
        cr_assert(ms >= 900 && ms < 4000, "%s: unanswered: closed after %ld ms (deadline 1000)",
                  backends[b], ms);
        close(fd);
        cr_assert_eq(prog_terminate(proxy), 0);
        for (int i = 0; i < nf; i++)
            close(fillers[i]);
        close(full);
    }
}

Test(proxy, sigterm_refuses_new_connections_and_drains, .timeout = 60)
{
    for (int b = 0; b < 2; b++) {
        struct setup s;
        const char *extra[] = {"--grace-ms", "5000", NULL};
        start(&s, backends[b], extra);
        int fd = prog_dial(s.proxy_port);
        cr_assert(round_trip(fd, (const unsigned char *)"before", 6));
        kill(s.proxy, SIGTERM);
        int refused = 0;
        for (int i = 0; i < 100 && !refused; i++) {
            usleep(10 * 1000);
            int probe = prog_dial(s.proxy_port);
            refused = probe < 0;
            if (probe >= 0)
                close(probe);
        }
        cr_assert(refused, "%s: new connections refused after SIGTERM", backends[b]);
        cr_assert(round_trip(fd, (const unsigned char *)"during the grace", 16),
                  "%s: the open connection still works", backends[b]);
        close(fd);
        long t0 = now_ms();
        int st = 0;
        cr_assert_eq(waitpid(s.proxy, &st, 0), s.proxy);
        cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s: status %#x", backends[b], st);
        cr_assert_lt(now_ms() - t0, 3000, "%s: exited once its last connection ended",
                     backends[b]);
        cr_assert_eq(prog_terminate(s.echo), 0);
    }
}

/* echo_server alone: --idle-ms closes a quiet connection, on both backends. */
Test(proxy, echo_server_closes_an_idle_connection, .timeout = 60)
{
    for (int b = 0; b < 2; b++) {
        char ep[16];
        int port = prog_free_port();
        snprintf(ep, sizeof ep, "%d", port);
        const char *args[] = {"--port", ep, "--backend", backends[b], "--idle-ms", "200", NULL};
        pid_t echo = prog_spawn("ECHO_SERVER", port, args);
        int fd = prog_dial(port);
        cr_assert(round_trip(fd, (const unsigned char *)"hello", 5), "%s", backends[b]);
        long ms = ms_until_closed(fd);
        cr_assert(ms >= 150 && ms < 3000, "%s: closed %ld ms after going quiet", backends[b], ms);
        close(fd);
        cr_assert_eq(prog_terminate(echo), 0);
    }
}
