/*
 * The kv_server example end to end, on both backends, with two shards:
 * eight clients on eight threads at once, each setting, reading, deleting
 * and re-reading its own keys (which land on both shards), every answer
 * checked; a value written on one connection is read on another; malformed
 * and overlong lines; SIGTERM. The binary comes from KV_SERVER in the
 * environment (set by meson).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "program.h"

static int port;

static int dial(void)
{
    return prog_dial(port);
}

static pid_t start(const char *backend)
{
    port = prog_free_port();
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    const char *args[] = {"--port", ps, "--threads", "2", "--backend", backend, NULL};
    return prog_spawn("KV_SERVER", port, args);
}

static void stop(pid_t pid)
{
    cr_assert_eq(prog_terminate(pid), 0, "clean exit after SIGTERM");
}

/* A connection with a line reader of its own. */
struct conn {
    int fd;
    char buf[8192];
    size_t have;
};

/* Sends line (with "\n") and reads one answer line into out (without "\n"). Returns 0 or -1. */
static int ask(struct conn *c, const char *line, char *out, size_t cap)
{
    /* One send: a second small one would wait on Nagle for the server's delayed ACK. */
    char req[8192];
    int n = snprintf(req, sizeof req, "%s\n", line);
    if (n < 0 || (size_t)n >= sizeof req || send(c->fd, req, (size_t)n, MSG_NOSIGNAL) != n)
        return -1;
    for (;;) {
        char *nl = memchr(c->buf, '\n', c->have);
        if (nl) {
            size_t len = (size_t)(nl - c->buf);
            if (len >= cap)
                return -1;
            memcpy(out, c->buf, len);
            out[len] = 0;
            memmove(c->buf, nl + 1, c->have - len - 1);
            c->have -= len + 1;
            return 0;
        }
        ssize_t k = recv(c->fd, c->buf + c->have, sizeof c->buf - c->have, 0);
        if (k <= 0)
            return -1;
        c->have += (size_t)k;
    }
}

struct client {
    int id, errors;
    char first_error[256];
};

static void fail(struct client *cl, const char *what, const char *got)
{
    if (!cl->errors++)
        snprintf(cl->first_error, sizeof cl->first_error, "%.100s: got %.100s", what, got);
}

static void *client_main(void *arg)
{
    struct client *cl = arg;
    struct conn c = {.fd = dial()};
    if (c.fd < 0) {
        fail(cl, "connect", "");
        return NULL;
    }
    char line[256], want[256], got[512];
    for (int i = 0; i < 300; i++) {
        snprintf(line, sizeof line, "SET k%d.%d value %d of client %d", cl->id, i, i, cl->id);
        if (ask(&c, line, got, sizeof got) || strcmp(got, "OK"))
            fail(cl, line, got);
    }
    for (int i = 0; i < 300; i++) {
        snprintf(line, sizeof line, "GET k%d.%d", cl->id, i);
        snprintf(want, sizeof want, "VALUE value %d of client %d", i, cl->id);
        if (ask(&c, line, got, sizeof got) || strcmp(got, want))
            fail(cl, line, got);
    }
    for (int i = 0; i < 300; i += 2) {
        snprintf(line, sizeof line, "DEL k%d.%d", cl->id, i);
        if (ask(&c, line, got, sizeof got) || strcmp(got, "DELETED"))
            fail(cl, line, got);
    }
    for (int i = 0; i < 300; i++) {
        snprintf(line, sizeof line, "GET k%d.%d", cl->id, i);
        snprintf(want, sizeof want, "VALUE value %d of client %d", i, cl->id);
        if (ask(&c, line, got, sizeof got) || strcmp(got, i % 2 ? want : "NOT_FOUND"))
            fail(cl, line, got);
    }
    close(c.fd);
    return NULL;
}

static void concurrent_clients(const char *backend)
{
    pid_t pid = start(backend);
    enum { N = 8 };
    pthread_t t[N];
    struct client cl[N];
    for (int i = 0; i < N; i++) {
        cl[i] = (struct client){.id = i};
        cr_assert_eq(pthread_create(&t[i], NULL, client_main, &cl[i]), 0);
    }
    for (int i = 0; i < N; i++)
        pthread_join(t[i], NULL);
    for (int i = 0; i < N; i++)
        cr_assert_eq(cl[i].errors, 0, "%s: client %d: %d errors, first %s", backend, i,
                     cl[i].errors, cl[i].first_error);
    /* What one connection wrote, another reads. */
    struct conn a = {.fd = dial()}, b = {.fd = dial()};
    char got[256];
    cr_assert_eq(ask(&a, "SET shared across connections", got, sizeof got), 0);
    cr_assert_str_eq(got, "OK");
    cr_assert_eq(ask(&b, "GET shared", got, sizeof got), 0);
    cr_assert_str_eq(got, "VALUE across connections");
    close(a.fd);
    close(b.fd);
    stop(pid);
}

Test(kv, concurrent_clients_on_two_shards_uring, .timeout = 120)
{
    concurrent_clients("uring");
}

Test(kv, concurrent_clients_on_two_shards_epoll, .timeout = 120)
{
    concurrent_clients("epoll");
}

Test(kv, bad_lines_get_an_error_and_an_overlong_one_closes, .timeout = 60)
{
    pid_t pid = start("uring");
    struct conn c = {.fd = dial()};
    char got[256];
    const char *bad[] = {"HELLO", "GET", "GET a b", "SET a", "PUT a b", " GET a"};
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        cr_assert_eq(ask(&c, bad[i], got, sizeof got), 0, "%s", bad[i]);
        cr_assert(!strncmp(got, "ERROR", 5), "'%s' -> '%s'", bad[i], got);
    }
    cr_assert_eq(ask(&c, "GET missing", got, sizeof got), 0);
    cr_assert_str_eq(got, "NOT_FOUND");
    static char big[6000];
    memset(big, 'x', sizeof big - 1);
    memcpy(big, "SET big ", 8);
    cr_assert_eq(ask(&c, big, got, sizeof got), 0);
    cr_assert_str_eq(got, "ERROR line too long");
    /* Closed: an end of stream, or a reset since the rest of the line was never read. */
    char b;
    ssize_t k = recv(c.fd, &b, 1, 0);
    cr_assert(k == 0 || (k < 0 && errno == ECONNRESET), "closed after the overlong line: %zd", k);
    close(c.fd);
    stop(pid);
}

/* After the overlong-line answer the server reads what the client still sends for a second in all.
 */
Test(kv, after_an_overlong_line_a_trickling_client_is_closed_within_the_second, .timeout = 60)
{
    const char *backends[] = {"uring", "epoll"};
    for (int b = 0; b < 2; b++) {
        pid_t pid = start(backends[b]);
        int fd = dial();
        cr_assert_geq(fd, 0);
        static char big[6000];
        memset(big, 'x', sizeof big); /* no end of line: the server drains the rest */
        cr_assert_eq(send(fd, big, sizeof big, MSG_NOSIGNAL), (ssize_t)sizeof big);
        char ans[64];
        size_t n = 0;
        for (ssize_t k; n < sizeof ans - 1 && (k = recv(fd, ans + n, sizeof ans - 1 - n, 0)) > 0;)
            n += (size_t)k;
        ans[n] = 0;
        cr_assert_str_eq(ans, "ERROR line too long\n", "%s: the answer, then end of file",
                         backends[b]);
        /* A byte every 100 ms: every read finds data; only the limit on the whole wait ends it. */
        long ms = prog_trickle_until_closed(fd);
        cr_assert(ms >= 0 && ms < 3000, "%s: closed after %ld ms (-1: still open after 6 s)",
                  backends[b], ms);
        close(fd);
        stop(pid);
    }
}
