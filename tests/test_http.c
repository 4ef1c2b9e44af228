/*
 * The http_hello example: its request parser as a function (complete,
 * partial, pipelined, malformed, oversized requests), and the program itself
 * end to end on loopback (keep-alive, pipelining, 400 then a clean close,
 * 431 beyond the header limit, SIGTERM shutdown). The binary's path comes
 * from HTTP_HELLO in the environment (set by meson).
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

#include "http_parse.h"

#define P(s) http_parse(s, strlen(s), 8192, 8192, &r)

Test(http, parser_accepts_requests)
{
    http_request r;
    const char *get = "GET /x HTTP/1.1\r\nHost: a\r\n\r\n";
    cr_assert_eq(P(get), (int)strlen(get));
    cr_assert_eq(r.method_len, 3);
    cr_assert_eq(r.target_len, 2);
    cr_assert(r.keep_alive, "HTTP/1.1 keeps the connection by default");
    cr_assert_eq(P("GET / HTTP/1.1\r\nConnection: close\r\n\r\n"), 37);
    cr_assert_not(r.keep_alive);
    P("GET / HTTP/1.0\r\n\r\n");
    cr_assert_not(r.keep_alive, "HTTP/1.0 closes by default");
    P("GET / HTTP/1.0\r\nConnection: Keep-Alive\r\n\r\n");
    cr_assert(r.keep_alive);
    const char *post = "POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhelloGET";
    cr_assert_eq(P(post), (int)strlen(post) - 3, "the body belongs to the request, no more");
    cr_assert_eq(r.body_len, 5);
}

Test(http, parser_waits_for_more)
{
    http_request r;
    cr_assert_eq(P(""), 0);
    cr_assert_eq(P("GET / HTTP/1.1\r\nHost: a\r\n"), 0);
    cr_assert_eq(P("GET / HTTP/1.1\r\nHost: a\r\n\r"), 0);
    cr_assert_eq(P("POST / HTTP/1.1\r\nContent-Length: 5\r\n\r\nhel"), 0);
}

Test(http, parser_pipelined_requests_one_at_a_time)
{
    http_request r;
    const char *two = "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n";
    int n = P(two);
    cr_assert_eq(n, 19);
    cr_assert_eq(http_parse(two + n, strlen(two) - (size_t)n, 8192, 8192, &r), 19);
    cr_assert_eq(r.target[1], 'b');
}

Test(http, parser_rejects_malformed_requests)
{
    http_request r;
    const char *bad[] = {
        "GET\r\n\r\n",
        "GET /\r\n\r\n",
        "GET / HTTP/2.0\r\n\r\n",
        "GET / HTTP/1.1 \r\n\r\n",
        " GET / HTTP/1.1\r\n\r\n",
        "GET  / HTTP/1.1\r\n\r\n",
        "G(T / HTTP/1.1\r\n\r\n",
        "GET / HTTP/1.1\r\nNo colon\r\n\r\n",
        "GET / HTTP/1.1\r\nSpace : before colon\r\n\r\n",
        "GET / HTTP/1.1\r\n: empty name\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: x\r\n\r\n",
        "GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
        "GET / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n",
        "GET / HTTP/1.1\r\nX: a\001b\r\n\r\n",
        "\x16\x03\x01\x02\x01\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++)
        cr_assert_eq(P(bad[i]), HTTP_BAD, "case %zu is refused", i);
    cr_assert_eq(P("BAD LINE\r\n"), HTTP_BAD, "a bad request line is refused before the head ends");
}

Test(http, parser_bounds_the_head_and_body)
{
    http_request r;
    char big[9000];
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    memset(big + 19, 'a', sizeof big - 19);
    cr_assert_eq(http_parse(big, sizeof big, 8192, 8192, &r), HTTP_TOO_LARGE);
    cr_assert_eq(http_parse(big, 8191, 8192, 8192, &r), 0, "below the limit: wait for more");
    cr_assert_eq(P("POST / HTTP/1.1\r\nContent-Length: 100000\r\n\r\n"), HTTP_BODY_LARGE);
}

/* ---- the program, end to end ---- */

static pid_t server;
static int port;

static int try_connect(void)
{
    return prog_dial(port);
}

/* Starts http_hello on a free port with extra arguments (NULL-terminated, or NULL). */
static void start_server_with(const char *const *extra)
{
    port = prog_free_port();
    char ps[16];
    snprintf(ps, sizeof ps, "%d", port);
    const char *args[16] = {"--port", ps};
    for (int i = 0; extra && extra[i] && i < 12; i++)
        args[2 + i] = extra[i];
    server = prog_spawn("HTTP_HELLO", port, args);
}

static void start_server(void)
{
    start_server_with(NULL);
}

static void stop_server(void)
{
    cr_assert_eq(prog_terminate(server), 0, "clean exit after SIGTERM");
}

/* Reads until the peer closes or n bytes; returns the count. */
static size_t read_all(int fd, char *buf, size_t n, bool *closed)
{
    size_t got = 0;
    *closed = false;
    while (got < n) {
        ssize_t k = read(fd, buf + got, n - got);
        if (k == 0) {
            *closed = true;
            break;
        }
        if (k < 0)
            break;
        got += (size_t)k;
    }
    return got;
}

static int count(const char *hay, const char *needle)
{
    int n = 0;
    for (const char *p = hay; (p = strstr(p, needle)); p++)
        n++;
    return n;
}

Test(http, end_to_end, .timeout = 60)
{
    start_server();
    char buf[8192];
    bool closed;
    /* Keep-alive and pipelining: three requests in one write, three answers, connection open. */
    int fd = try_connect();
    const char *three = "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET /a HTTP/1.1\r\n\r\n"
                        "POST /b HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
    cr_assert_eq(write(fd, three, strlen(three)), (ssize_t)strlen(three));
    const char *one =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world";
    size_t got = read_all(fd, buf, 3 * strlen(one), &closed);
    buf[got] = '\0';
    cr_assert_eq(got, 3 * strlen(one), "three answers: %s", buf);
    cr_assert_eq(count(buf, "hello world"), 3);
    /* The same connection serves a fourth request, split across two writes. */
    cr_assert_eq(write(fd, "GET / HT", 8), 8);
    usleep(20000);
    cr_assert_eq(write(fd, "TP/1.1\r\n\r\n", 10), 10);
    got = read_all(fd, buf, strlen(one), &closed);
    cr_assert_eq(got, strlen(one));
    close(fd);

    /* Malformed: 400, then the server closes cleanly (FIN, not a reset). */
    fd = try_connect();
    const char *bad = "GET / HTTP/1.1\r\nBad header\r\n\r\n";
    cr_assert_eq(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    got = read_all(fd, buf, sizeof buf - 1, &closed);
    buf[got] = '\0';
    cr_assert(closed, "the server closed the connection (got %zu bytes: %s)", got, buf);
    cr_assert(!strncmp(buf, "HTTP/1.1 400 ", 13), "%s", buf);
    close(fd);

    /* A head beyond 8 KiB: 431 and close. */
    fd = try_connect();
    char big[9000];
    memcpy(big, "GET / HTTP/1.1\r\nX: ", 19);
    memset(big + 19, 'a', sizeof big - 19);
    cr_assert_eq(write(fd, big, sizeof big), (ssize_t)sizeof big);
    got = read_all(fd, buf, sizeof buf - 1, &closed);
    buf[got] = '\0';
    cr_assert(!strncmp(buf, "HTTP/1.1 431 ", 13), "%s", buf);
    cr_assert(closed);
    close(fd);

    /* Connection: close is honoured. */
    fd = try_connect();
    const char *cl = "GET / HTTP/1.1\r\nConnection: close\r\n\r\n";
    cr_assert_eq(write(fd, cl, strlen(cl)), (ssize_t)strlen(cl));
    got = read_all(fd, buf, sizeof buf - 1, &closed);
    buf[got] = '\0';
    cr_assert(closed);
    cr_assert_eq(count(buf, "hello world"), 1);
    close(fd);

    /* An idle connection does not hold up shutdown. */
    fd = try_connect();
    stop_server();
    close(fd);
}

/*
 * Pipelining that fills the 16 KiB output buffer: N requests in one write,
 * then a malformed one. For every N around the point where the answers
 * fill the buffer to within one answer, the client gets N answers and the
 * 400, byte for byte, then the close.
 */
Test(http, pipelined_answers_fill_the_output_buffer_exactly, .timeout = 120)
{
    start_server();
    static const char req[] = "GET / HTTP/1.1\r\n\r\n";
    static const char bad[] = "GET / HTTP/1.1\r\nBad header\r\n\r\n";
    static const char ok[] =
        "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 11\r\n\r\nhello world";
    static const char err[] =
        "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    const size_t out_cap = 16384, L = sizeof ok - 1, E = sizeof err - 1;
    static char in[300 * sizeof req + sizeof bad], want[300 * sizeof ok + sizeof err], got[32768];
    /* From two answers short of full to two past it. */
    for (size_t n = (out_cap - E) / L - 2; n <= out_cap / L + 2; n++) {
        size_t ilen = 0, wlen = 0;
        for (size_t i = 0; i < n; i++) {
            memcpy(in + ilen, req, sizeof req - 1);
            ilen += sizeof req - 1;
            memcpy(want + wlen, ok, L);
            wlen += L;
        }
        memcpy(in + ilen, bad, sizeof bad - 1);
        ilen += sizeof bad - 1;
        memcpy(want + wlen, err, E);
        wlen += E;
        int fd = try_connect();
        cr_assert_geq(fd, 0, "the server is still up before N = %zu", n);
        cr_assert_eq(write(fd, in, ilen), (ssize_t)ilen);
        bool closed;
        size_t k = read_all(fd, got, sizeof got, &closed);
        cr_assert(closed, "N = %zu: the server closed after the 400", n);
        cr_assert_eq(k, wlen, "N = %zu: %zu bytes, expected %zu", n, k, wlen);
        cr_assert(!memcmp(got, want, wlen), "N = %zu: the answers differ", n);
        close(fd);
    }
    stop_server();
}

/* Milliseconds until the server closes fd (reading and dropping what it sends), at most 5 s. */
static long ms_until_closed(int fd)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    char buf[512];
    for (;;) {
        ssize_t k = read(fd, buf, sizeof buf);
        if (k <= 0)
            break; /* closed, or the 5 s receive timeout */
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
}

Test(http, an_idle_connection_is_closed_after_idle_ms, .timeout = 60)
{
    const char *const args[] = {"--idle-ms", "200", NULL};
    start_server_with(args);
    int fd = try_connect();
    cr_assert_geq(fd, 0);
    long ms = ms_until_closed(fd);
    cr_assert(ms >= 150 && ms < 3000, "closed after %ld ms", ms);
    close(fd);
    /* A connection in use is not idle: two requests 150 ms apart on one connection. */
    fd = try_connect();
    const char *req = "GET / HTTP/1.1\r\n\r\n";
    char buf[512];
    for (int i = 0; i < 2; i++) {
        usleep(150 * 1000);
        cr_assert_eq(write(fd, req, strlen(req)), (ssize_t)strlen(req), "request %d", i);
        ssize_t k = read(fd, buf, sizeof buf);
        cr_assert_gt(k, 0, "answer %d", i);
    }
    close(fd);
    stop_server();
}

Test(http, a_request_trickling_in_is_cut_at_header_ms, .timeout = 60)
{
    const char *const args[] = {"--header-ms", "300", NULL};
    start_server_with(args);
    int fd = try_connect();
    cr_assert_geq(fd, 0);
    /* A byte every 100 ms: never idle for long, but the head takes too long to arrive. */
    const char *req = "GET / HTTP/1.1\r\nX: slow\r\n";
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    bool cut = false;
    for (size_t i = 0; i < strlen(req); i++) {
        if (send(fd, req + i, 1, MSG_NOSIGNAL) != 1) {
            cut = true;
            break;
        }
        usleep(100 * 1000);
        char b;
        if (recv(fd, &b, 1, MSG_DONTWAIT) == 0) {
            cut = true;
            break;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cr_assert(cut, "the server kept a trickling request for %ld ms", ms);
    cr_assert(ms >= 250 && ms < 2000, "cut after %ld ms", ms);
    close(fd);
    stop_server();
}

/* The largest --header-ms accepted is a deadline that never comes, not one in the past. */
Test(http, a_request_in_two_parts_is_answered_under_the_largest_header_ms, .timeout = 60)
{
    const char *const args[] = {"--header-ms", "9223372036854", NULL};
    start_server_with(args);
    int fd = try_connect();
    cr_assert_geq(fd, 0);
    const char *part1 = "GET / HTTP/1.1\r\n", *part2 = "Host: x\r\n\r\n";
    cr_assert_eq(write(fd, part1, strlen(part1)), (ssize_t)strlen(part1));
    usleep(100 * 1000);
    cr_assert_eq(write(fd, part2, strlen(part2)), (ssize_t)strlen(part2));
    char buf[512];
    ssize_t k = read(fd, buf, sizeof buf - 1);
    cr_assert_gt(k, 0, "no answer: %zd", k);
    buf[k] = '\0';
    cr_assert(strncmp(buf, "HTTP/1.1 200", 12) == 0, "%s", buf);
    close(fd);
    stop_server();
}

/* After an error answer the server reads what the client still sends for a second in all. */
Test(http, after_an_error_a_trickling_client_is_closed_within_the_second, .timeout = 60)
{
    start_server();
    int fd = try_connect();
    cr_assert_geq(fd, 0);
    const char *bad = "BAD\r\n\r\n";
    cr_assert_eq(write(fd, bad, strlen(bad)), (ssize_t)strlen(bad));
    char buf[512];
    bool closed;
    size_t n = read_all(fd, buf, sizeof buf - 1, &closed);
    buf[n] = 0;
    cr_assert(closed && strstr(buf, " 400 "), "the answer, then end of file: %s", buf);
    /* A byte every 100 ms: each read the server makes finds data, so only the whole-wait
     * limit ends it (64 reads of a second each held such a client for 6.4 s). */
    long ms = prog_trickle_until_closed(fd);
    cr_assert(ms >= 0 && ms < 3000, "closed after %ld ms (-1: still open after 6 s)", ms);
    close(fd);
    stop_server();
}

/*
 * SIGTERM: the listener closes at once (a new connection is refused), a
 * request in progress is still answered within the grace period, and the
 * server exits as soon as its last session ends.
 */
Test(http, sigterm_refuses_new_connections_and_finishes_requests_in_progress, .timeout = 60)
{
    const char *const args[] = {"--grace-ms", "5000", NULL};
    start_server_with(args);
    int fd = try_connect();
    cr_assert_geq(fd, 0);
    const char *head = "GET / HTTP/1.1\r\n";
    cr_assert_eq(write(fd, head, strlen(head)), (ssize_t)strlen(head));
    usleep(50 * 1000);
    kill(server, SIGTERM);
    int refused = 0;
    for (int i = 0; i < 100 && !refused; i++) {
        usleep(10 * 1000);
        int probe = try_connect();
        if (probe < 0)
            refused = 1;
        else
            close(probe);
    }
    cr_assert(refused, "connections were still accepted after SIGTERM");
    cr_assert_eq(write(fd, "\r\n", 2), 2);
    char buf[512];
    bool closed;
    size_t got = read_all(fd, buf, 78, &closed);
    buf[got] = 0;
    cr_assert(strstr(buf, "hello world"), "the request in progress was answered: %s", buf);
    close(fd);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    int st = 0;
    cr_assert_eq(waitpid(server, &st, 0), server);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    long ms = (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "status %#x", st);
    cr_assert_lt(ms, 3000, "exited %ld ms after its last session ended, not at the grace's end", ms);
}
