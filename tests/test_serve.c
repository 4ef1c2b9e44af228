/*
 * The server loop on both backends (loopback only, every wait bounded):
 * 1,000 connections served at once; sessions whose descriptor the server
 * closes however they end; a session that cannot be allocated, and one that
 * fails; idle timeouts; a limit on sessions; back-off and recovery when the
 * process runs out of descriptors; stop with and without a grace period
 * (the listener is closed at once: new connections are refused); servers on
 * every io_context of a group; bad arguments.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <criterion/criterion.h>

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

/* A listener on 127.0.0.1 at a free port; *bound receives its address. */
static int listener(cor_sockaddr *bound)
{
    cor_sockaddr a;
    cr_assert_eq(cor_addr_ip(&a, "127.0.0.1", 0), 0);
    int fd = cor_listen(&a, 4096, 0);
    cr_assert_geq(fd, 0, "listen: %s", cor_strerror(fd));
    cr_assert_eq(cor_local_addr(fd, bound), 0);
    return fd;
}

/* Enough descriptors for a thousand connections at both ends. */
static void raise_nofile(void)
{
    struct rlimit rl;
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 4096 && rl.rlim_max > rl.rlim_cur) {
        rl.rlim_cur = rl.rlim_max < 4096 ? rl.rlim_max : 4096;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    cr_assert_eq(getrlimit(RLIMIT_NOFILE, &rl), 0);
    if (rl.rlim_cur < 2200)
        cr_skip_test("RLIMIT_NOFILE is %lu: a thousand connections need 2,200",
                     (unsigned long)rl.rlim_cur);
}

/* ---- sessions ---- */

/* Sessions of a group's servers run on several threads: counters are atomic. Returns the new value. */
static int count(int *c, int by)
{
    return __atomic_add_fetch(c, by, __ATOMIC_RELAXED);
}

struct stats {
    int started, ended, cancelled, timed_out;
};

/* Echoes until the peer closes, after an optional pause per message; counts how it ended. */
struct echo {
    COR_PROMISE(int);
    int fd, n, slept;
    int64_t pause;
    ssize_t sent;
    struct stats *st;
    char buf[256];
};
COR_DEFINE_STATIC(echo, (int fd, int64_t pause, struct stats *st), {
    self->fd = fd;
    self->pause = pause;
    self->st = st;
})
{
    COR_BEGIN();
    count(&self->st->started, 1);
    for (;;) {
        COR_AWAIT(self->n, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
        if (self->n <= 0)
            break;
        if (self->pause) {
            COR_AWAIT(self->slept, cor_sleep_for(self->pause));
            if (self->slept < 0) {
                self->n = self->slept;
                break;
            }
        }
        COR_AWAIT(self->sent, cor_send_all(self->fd, self->buf, (size_t)self->n));
        if (self->sent < 0) {
            self->n = (int)self->sent;
            break;
        }
    }
    count(&self->st->ended, 1);
    count(&self->st->cancelled, self->n == -ECANCELED);
    count(&self->st->timed_out, self->n == -ETIME);
    COR_RETURN(0);
}

/* How the test's servers make sessions. */
struct factory {
    struct stats st;
    int64_t pause;
    int fail_every; /* > 0: every fail_every-th session cannot be allocated */
    int made;
    bool fail_inside; /* sessions fail through the error channel right away */
};

struct failing {
    COR_PROMISE(int);
};
COR_DEFINE_STATIC(failing, (void), {})
{
    COR_BEGIN();
    COR_FAIL(-EPROTO);
}

static cor_frame *new_session(void *user, int fd)
{
    struct factory *f = user;
    int made = count(&f->made, 1);
    if (f->fail_every && made % f->fail_every == 0)
        return NULL;
    if (f->fail_inside)
        return COR_FRAME(failing());
    return COR_FRAME(echo(fd, f->pause, &f->st));
}

/* ---- clients ---- */

/* Connects, sends "hello <id>", expects it back, closes. Result: 1 echoed, 0 EOF, or -errno. */
struct client {
    COR_PROMISE(int);
    cor_sockaddr addr;
    int fd, r, id;
    ssize_t n;
    int *done;
    char out[32], in[32];
    size_t len;
};
COR_DEFINE_STATIC(client, (const cor_sockaddr *a, int id, int *done), {
    self->addr = *a;
    self->id = id;
    self->done = done;
})
{
    COR_BEGIN();
    self->fd = cor_socket(AF_INET, SOCK_STREAM);
    if (self->fd < 0)
        COR_RETURN(self->fd);
    COR_AWAIT(self->r, cor_connect(self->fd, &self->addr));
    if (self->r == 0) {
        self->len = (size_t)snprintf(self->out, sizeof self->out, "hello %d", self->id);
        COR_AWAIT(self->n, cor_send_all(self->fd, self->out, self->len));
        COR_AWAIT(self->n, cor_recv_exact(self->fd, self->in, self->len));
        self->r = self->n == (ssize_t)self->len && !memcmp(self->in, self->out, self->len) ? 1
                  : self->n < 0                                                         ? (int)self->n
                                                                                        : 0;
    }
    COR_AWAIT_VOID(cor_close(self->fd));
    (*self->done)++;
    COR_RETURN(self->r);
}

/* Runs io until *count reaches want or max_ms pass. */
static void run_until(cor_io_context *io, const int *count, int want, int max_ms)
{
    int64_t end = cor_clock_now() + max_ms * MS;
    while (*count < want && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
}

/* Runs io until *v is no longer unset (a launch stored its result), at most max_ms. */
static void run_while_unset(cor_io_context *io, const int *v, int unset, int max_ms)
{
    int64_t end = cor_clock_now() + max_ms * MS;
    while (*v == unset && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
}

struct server_run {
    cor_stop_source stop;
    int result;
};

static void start_server(cor_io_context *io, struct server_run *s, int fd, struct factory *f,
                         const cor_serve_options *o)
{
    cor_stop_source_init(&s->stop);
    s->result = 1;
    cor_launch_options lo = {.stop = cor_stop_source_token(&s->stop),
                             .on_result = store_int,
                             .on_error = store_err,
                             .user = &s->result};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, cor_serve(fd, new_session, f, o)),
                 0);
}

/* Requests stop and runs io until the server's await completed. */
static void stop_server(cor_io_context *io, struct server_run *s)
{
    cor_stop_source_request(&s->stop);
    int64_t end = cor_clock_now() + 5000 * MS;
    while (s->result == 1 && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
    cr_assert_eq(s->result, 0, "the server ended with %d", s->result);
}

struct client_set {
    int results[1000];
    int done;
};

static void start_clients(cor_io_context *io, struct client_set *c, const cor_sockaddr *a, int n)
{
    for (int i = 0; i < n; i++) {
        c->results[i] = -9999;
        cor_launch_options lo = {.on_result = store_int, .on_error = store_err, .user = &c->results[i]};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, client(a, i, &c->done)), 0);
    }
}

IO_TEST(serve, a_thousand_connections_are_served_and_every_descriptor_closed)
{
    raise_nofile();
    cor_io_context *io = io_test_create(backend, NULL);
    int before = open_fds();
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {0};
    struct server_run s;
    start_server(io, &s, fd, &f, NULL);
    static struct client_set c;
    memset(&c, 0, sizeof c);
    start_clients(io, &c, &addr, 1000);
    run_until(io, &c.done, 1000, 20000);
    cr_assert_eq(c.done, 1000);
    for (int i = 0; i < 1000; i++)
        cr_assert_eq(c.results[i], 1, "client %d: %d", i, c.results[i]);
    run_until(io, &f.st.ended, 1000, 5000);
    cr_assert_eq(f.st.started, 1000);
    cr_assert_eq(f.st.ended, 1000);
    stop_server(io, &s);
    cr_assert_eq(open_fds(), before, "the listener and every connection are closed");
    cor_io_context_destroy(io);
}

static int shed_reports;

static void count_sheds(void *user, int level, const char *msg)
{
    (void)user;
    shed_reports += level == COR_LOG_WARNING && strstr(msg, "connection shed") != NULL;
}

IO_TEST(serve, sessions_that_cannot_be_allocated_or_fail_are_closed_and_the_server_goes_on)
{
    shed_reports = 0;
    cr_assert_eq(cor_set_log_hook(count_sheds, NULL), 0);
    cor_io_context *io = io_test_create(backend, NULL);
    int before = open_fds();
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {.fail_every = 2};
    struct server_run s;
    start_server(io, &s, fd, &f, NULL);
    struct client_set c = {0};
    start_clients(io, &c, &addr, 10);
    run_until(io, &c.done, 10, 5000);
    int echoed = 0, shed = 0;
    for (int i = 0; i < 10; i++) {
        echoed += c.results[i] == 1;
        shed += c.results[i] == 0 || c.results[i] == -ECONNRESET;
    }
    cr_assert_eq(echoed, 5, "every other session was allocated");
    cr_assert_eq(shed, 5, "the others saw their connection closed");
    cr_assert_eq(shed_reports, 1, "the shedding was reported, once for the burst");
    cor_set_log_hook(NULL, NULL);
    f.fail_every = 0;
    f.fail_inside = true;
    c.done = 0;
    start_clients(io, &c, &addr, 3);
    run_until(io, &c.done, 3, 5000);
    for (int i = 0; i < 3; i++)
        cr_assert(c.results[i] == 0 || c.results[i] == -ECONNRESET, "%d", c.results[i]);
    stop_server(io, &s);
    cr_assert_eq(open_fds(), before);
    cor_io_context_destroy(io);
}

/* Holds a connection open without sending; result: what the first recv saw, and when. */
struct idler {
    COR_PROMISE(int);
    cor_sockaddr addr;
    int fd, r, sends, done;
    int64_t every, took;
    char b[8];
};
COR_DEFINE_STATIC(idler, (const cor_sockaddr *a, int sends, int64_t every), {
    self->addr = *a;
    self->sends = sends;
    self->every = every;
})
{
    COR_BEGIN();
    self->fd = cor_socket(AF_INET, SOCK_STREAM);
    COR_AWAIT(self->r, cor_connect(self->fd, &self->addr));
    self->took = cor_clock_now();
    for (self->done = 0; self->done < self->sends; self->done++) {
        COR_AWAIT(self->r, cor_sleep_for(self->every));
        COR_AWAIT(self->r, cor_send(self->fd, "x", 1, 0));
        COR_AWAIT(self->r, cor_recv(self->fd, self->b, 1, 0));
        if (self->r != 1)
            break;
    }
    if (self->done == self->sends)
        COR_AWAIT(self->r, cor_recv(self->fd, self->b, 1, 0)); /* now idle: the server ends it */
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(self->done == self->sends ? self->r : -EPROTO);
}

IO_TEST(serve, an_idle_connection_is_closed_and_an_active_one_kept)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {0};
    struct server_run s;
    /* 30 ms between messages against a limit of 200: room for a loaded, sanitized run. */
    cor_serve_options o = {.idle_timeout = 200 * MS};
    start_server(io, &s, fd, &f, &o);
    int idle = 1, active = 1;
    cor_launch_options li = {.on_result = store_int, .on_error = store_err, .user = &idle};
    cor_launch_options la = {.on_result = store_int, .on_error = store_err, .user = &active};
    int64_t t0 = cor_clock_now();
    COR_RUN_ASYNC(cor_io_context_executor(io), &li, idler(&addr, 0, 0));
    /* Ten messages 30 ms apart: 300 ms of activity, never 200 ms idle. */
    COR_RUN_ASYNC(cor_io_context_executor(io), &la, idler(&addr, 10, 30 * MS));
    run_until(io, &f.st.timed_out, 2, 5000);
    /* The server has closed both: the clients see it on their next pass. */
    run_while_unset(io, &idle, 1, 5000);
    run_while_unset(io, &active, 1, 5000);
    cr_assert_eq(idle, 0, "the idle client saw the server close: %d", idle);
    cr_assert_eq(active, 0, "the active client was served, then closed when idle: %d", active);
    cr_assert_eq(f.st.timed_out, 2);
    cr_assert_geq(cor_clock_now() - t0, 300 * MS, "activity kept the second one open");
    stop_server(io, &s);
    cor_io_context_destroy(io);
}

/* A client that sends and never reads: the session's send waits, and the idle limit ends it. */
IO_TEST(serve, a_client_that_never_reads_is_cut_at_the_idle_timeout)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {0};
    struct server_run s;
    cor_serve_options o = {.idle_timeout = 100 * MS};
    start_server(io, &s, fd, &f, &o);
    int cl = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
    int small = 4096;
    setsockopt(cl, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
    connect(cl, &addr.u.sa, addr.len);
    static char chunk[65536];
    int64_t end = cor_clock_now() + 5000 * MS;
    while (!f.st.timed_out && cor_clock_now() < end) {
        (void)send(cl, chunk, sizeof chunk, MSG_DONTWAIT | MSG_NOSIGNAL);
        cor_io_context_run_for(io, 2 * MS);
    }
    cr_assert_eq(f.st.timed_out, 1, "the blocked send ended at the idle limit");
    cr_assert_eq(f.st.ended, 1);
    close(cl);
    stop_server(io, &s);
    cor_io_context_destroy(io);
}

IO_TEST(serve, at_the_session_limit_a_connection_waits_for_a_free_place)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {0};
    struct server_run s;
    cor_serve_options o = {.max_sessions = 2};
    start_server(io, &s, fd, &f, &o);
    /* Two idle connections take both places; the third is accepted only when one ends. */
    int r1 = 1, r2 = 1;
    cor_launch_options l1 = {.on_result = store_int, .user = &r1};
    cor_launch_options l2 = {.on_result = store_int, .user = &r2};
    COR_RUN_ASYNC(cor_io_context_executor(io), &l1, idler(&addr, 1, 1 * MS));
    COR_RUN_ASYNC(cor_io_context_executor(io), &l2, idler(&addr, 1, 1 * MS));
    run_until(io, &f.st.started, 2, 2000);
    cr_assert_eq(f.st.started, 2);
    struct client_set c = {0};
    start_clients(io, &c, &addr, 1);
    cor_io_context_run_for(io, 100 * MS);
    cr_assert_eq(f.st.started, 2, "no third session while two run");
    cr_assert_eq(c.done, 0);
    stop_server(io, &s); /* no grace: the two idle sessions are stopped, the third never runs */
    cr_assert_eq(f.st.cancelled, 2);
    run_until(io, &c.done, 1, 2000);
    cr_assert_neq(c.results[0], 1, "the waiting connection was never served");
    cor_io_context_destroy(io);
}

/* The stderr of the test process, redirected to a file for the block that reads it. */
struct captured {
    int saved, file;
};

static void capture_stderr(struct captured *c)
{
    char path[] = "/tmp/coring-serve-XXXXXX";
    c->file = mkstemp(path);
    cr_assert_geq(c->file, 0);
    unlink(path);
    fflush(stderr);
    c->saved = dup(2);
    dup2(c->file, 2);
}

static int count_lines_with(struct captured *c, const char *needle)
{
    fflush(stderr);
    dup2(c->saved, 2);
    close(c->saved);
    static char text[65536];
    ssize_t n = pread(c->file, text, sizeof text - 1, 0);
    close(c->file);
    text[n > 0 ? n : 0] = 0;
    int lines = 0;
    for (char *p = text; (p = strstr(p, needle)); p++)
        lines++;
    return lines;
}

/* Runs io until socket fd (non-blocking) has n bytes to read into buf, for at most 5 s. */
static ssize_t await_bytes(cor_io_context *io, int fd, char *buf, size_t n)
{
    size_t have = 0;
    int64_t end = cor_clock_now() + 5000 * MS;
    while (have < n && cor_clock_now() < end) {
        cor_io_context_run_for(io, 2 * MS);
        ssize_t r = recv(fd, buf + have, n - have, MSG_DONTWAIT);
        if (r == 0)
            break;
        if (r > 0)
            have += (size_t)r;
    }
    return (ssize_t)have;
}

IO_TEST(serve, out_of_descriptors_the_server_pauses_reports_once_and_recovers)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {0};
    struct server_run s;
    cor_serve_options o = {.backoff = 10 * MS};
    start_server(io, &s, fd, &f, &o);
    cor_io_context_run_for(io, 10 * MS);
    /* The clients' sockets and the capture file first, then every other descriptor taken. */
    int cl[4];
    for (int i = 0; i < 4; i++)
        cr_assert_geq(cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), 0);
    struct captured cap;
    capture_stderr(&cap);
    static int fill[65536];
    int nfill = 0, d;
    while (nfill < 65536 && (d = dup(0)) >= 0)
        fill[nfill++] = d;
    cr_assert_eq(errno, EMFILE);
    /* The kernel completes the handshakes; the server cannot take the connections. */
    for (int i = 0; i < 4; i++)
        cr_assert_eq(connect(cl[i], &addr.u.sa, addr.len), 0);
    cor_io_context_run_for(io, 150 * MS); /* about 15 attempts, all EMFILE */
    int started_while_full = f.st.started;
    for (int i = 0; i < nfill; i++)
        close(fill[i]);
    for (int i = 0; i < 4; i++) {
        char buf[8];
        cr_assert_eq(send(cl[i], "ping", 4, MSG_NOSIGNAL), 4);
        cr_assert_eq(await_bytes(io, cl[i], buf, 4), 4, "client %d is served after recovery", i);
        cr_assert_eq(memcmp(buf, "ping", 4), 0);
        close(cl[i]);
    }
    int reports = count_lines_with(&cap, "Too many open files");
    cr_assert_eq(started_while_full, 0);
    cr_assert_eq(reports, 1, "one report for many attempts, not %d", reports);
    stop_server(io, &s);
    cor_io_context_destroy(io);
}

IO_TEST(serve, stop_with_grace_lets_sessions_finish_and_refuses_new_connections)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {.pause = 100 * MS}; /* each echo takes 100 ms */
    struct server_run s;
    cor_serve_options o = {.grace = 2000 * MS};
    start_server(io, &s, fd, &f, &o);
    struct client_set c = {0};
    start_clients(io, &c, &addr, 3);
    run_until(io, &f.st.started, 3, 2000);
    cor_io_context_run_for(io, 10 * MS); /* the messages are in, the echoes pending */
    cor_stop_source_request(&s.stop);
    cor_io_context_run_for(io, 10 * MS);
    /* The listener is closed at once: a new connection is refused. */
    int probe = cor_socket(AF_INET, SOCK_STREAM);
    cr_assert_geq(probe, 0);
    int fl = fcntl(probe, F_GETFL);
    fcntl(probe, F_SETFL, fl & ~O_NONBLOCK);
    cr_assert_eq(connect(probe, &addr.u.sa, addr.len), -1, "connect after stop succeeded");
    cr_assert_eq(errno, ECONNREFUSED);
    close(probe);
    run_until(io, &c.done, 3, 3000);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(c.results[i], 1, "client %d was answered within the grace: %d (%d %d %d)", i,
                     c.results[i], f.st.ended, f.st.cancelled, f.st.timed_out);
    stop_server(io, &s);
    cr_assert_eq(f.st.ended, 3);
    cr_assert_eq(f.st.cancelled, 0);
    cor_io_context_destroy(io);
}

IO_TEST(serve, stop_without_grace_cancels_sessions_at_once)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {.pause = 10000 * MS};
    struct server_run s;
    start_server(io, &s, fd, &f, NULL);
    struct client_set c = {0};
    start_clients(io, &c, &addr, 3);
    run_until(io, &f.st.started, 3, 2000);
    cor_io_context_run_for(io, 10 * MS);
    int64_t t0 = cor_clock_now();
    stop_server(io, &s);
    cr_assert_lt(cor_clock_now() - t0, 2000 * MS, "not the 10 s the sessions would take");
    cr_assert_eq(f.st.ended, 3);
    run_until(io, &c.done, 3, 2000);
    for (int i = 0; i < 3; i++)
        cr_assert_neq(c.results[i], 1);
    cor_io_context_destroy(io);
}

IO_TEST(serve, grace_ends_sessions_that_outlast_it)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {.pause = 10000 * MS};
    struct server_run s;
    cor_serve_options o = {.grace = 100 * MS};
    start_server(io, &s, fd, &f, &o);
    struct client_set c = {0};
    start_clients(io, &c, &addr, 2);
    run_until(io, &f.st.started, 2, 2000);
    cor_io_context_run_for(io, 10 * MS);
    int64_t t0 = cor_clock_now();
    stop_server(io, &s);
    int64_t took = cor_clock_now() - t0;
    cr_assert_geq(took, 90 * MS, "the sessions had their grace period");
    cr_assert_lt(took, 2000 * MS);
    cr_assert_eq(f.st.cancelled, 2);
    cor_io_context_destroy(io);
}

IO_TEST(serve, servers_on_every_context_of_a_group)
{
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.no_pin = true, .context = &co};
    cor_io_group *g;
    int rc = cor_io_group_create(&g, 2, &go);
    if (backend == COR_IO_BACKEND_URING && (rc == -EPERM || rc == -ENOSYS))
        cr_skip_test("no io_uring here");
    cr_assert_eq(rc, 0);
    /* A port that is free now; the group's listeners share it. */
    cor_sockaddr addr;
    int probe = listener(&addr);
    close(probe);
    static struct factory f; /* sessions on two threads: only their results are read */
    memset(&f, 0, sizeof f);
    cor_stop_source stop = COR_STOP_SOURCE_INIT;
    cr_assert_eq(cor_serve_start(g, &addr, new_session, &f, NULL, cor_stop_source_token(&stop)),
                 0);
    cr_assert_eq(cor_serve_start(NULL, &addr, new_session, &f, NULL, cor_stop_source_token(&stop)),
                 -EINVAL);
    cr_assert_eq(cor_serve_start(g, &addr, NULL, &f, NULL, cor_stop_source_token(&stop)), -EINVAL);
    /* A second start on the same port without SO_REUSEPORT on its side fails to listen. */
    cor_io_context *io = io_test_create(backend, NULL);
    struct client_set c = {0};
    start_clients(io, &c, &addr, 50);
    run_until(io, &c.done, 50, 10000);
    for (int i = 0; i < 50; i++)
        cr_assert_eq(c.results[i], 1, "client %d: %d", i, c.results[i]);
    cor_stop_source_request(&stop);
    cr_assert_eq(cor_io_group_join(g), 0);
    cor_io_group_destroy(g);
    cor_io_context_destroy(io);
}

static void run_serve(cor_io_context *io, cor_frame *t, int *res)
{
    *res = 1;
    cor_launch_options lo = {.on_result = store_int, .on_error = store_err, .user = res};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, t), 0);
    cor_io_context_run(io);
}

IO_TEST(serve, bad_arguments)
{
    cor_io_context *io = io_test_create(backend, NULL);
    struct factory f = {0};
    int r;
    run_serve(io, COR_FRAME(cor_serve(-1, new_session, &f, NULL)), &r);
    cr_assert_eq(r, -EINVAL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    run_serve(io, COR_FRAME(cor_serve(fd, NULL, &f, NULL)), &r);
    cr_assert_eq(r, -EINVAL);
    cr_assert_lt(fcntl(fd, F_GETFD), 0, "the server closed its listener");
    fd = listener(&addr);
    cor_serve_options bad = {.grace = -1};
    run_serve(io, COR_FRAME(cor_serve(fd, new_session, &f, &bad)), &r);
    cr_assert_eq(r, -EINVAL);
    int udp = cor_socket(AF_INET, SOCK_DGRAM);
    run_serve(io, COR_FRAME(cor_serve(udp, new_session, &f, NULL)), &r);
    cr_assert_eq(r, -EINVAL, "not a listening stream socket");
    cr_assert_lt(fcntl(udp, F_GETFD), 0);
    /* Off an io_context: -EPERM. */
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 1), 0);
    fd = listener(&addr);
    struct outcome oc = {0};
    cor_launch_options lo = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_thread_pool_executor(pool), &lo,
                               cor_serve(fd, new_session, &f, NULL)),
                 0);
    cor_thread_pool_join(pool);
    cr_assert_eq(oc.result, -EPERM);
    cr_assert_lt(fcntl(fd, F_GETFD), 0, "closed off an io_context too");
    cor_thread_pool_destroy(pool);
    cor_io_context_destroy(io);
}

/* Torn down under a running server: listener and connections closed, nothing leaked (ASan checks). */
IO_TEST(serve, destroying_the_context_under_a_running_server_closes_everything)
{
    int before = open_fds(); /* the context's own descriptors go with it too */
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr addr;
    int fd = listener(&addr);
    struct factory f = {0};
    struct server_run s;
    start_server(io, &s, fd, &f, NULL);
    int cl[3];
    for (int i = 0; i < 3; i++) {
        cl[i] = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        struct timeval tv = {5, 0};
        setsockopt(cl[i], SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        cr_assert_eq(connect(cl[i], &addr.u.sa, addr.len), 0);
    }
    run_until(io, &f.st.started, 3, 2000);
    cr_assert_eq(f.st.started, 3);
    cor_io_context_destroy(io);
    for (int i = 0; i < 3; i++) {
        char b;
        cr_assert_eq(recv(cl[i], &b, 1, 0), 0, "connection %d closed by the teardown", i);
        close(cl[i]);
    }
    cr_assert_eq(open_fds(), before, "the listener and the connections are closed");
}
