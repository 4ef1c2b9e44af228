/*
 * Task dumps and async backtraces on both backends: an echo server with
 * stuck sessions dumped from another thread while it runs, from inside a
 * coroutine, and while nobody drives it; the await chain through a join, a
 * timeout and nested tasks down to the operation and its deadline; a
 * task-group child; a chain that leaves for a thread pool; a thread pool's
 * queue (a task, a COR_RUN child, a strand's drainer); a strand's queue
 * while one of its handles is stuck; a coroutine's
 * own backtrace; bad arguments; a dump request the owner left queued when it
 * stopped (discarded at destroy) and a run started while another thread
 * dumps (it waits for the dump). Nothing the dump reads changes: the
 * sessions go on afterwards and every frame is freed (a counting resource).
 */
#include <netinet/in.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

#define MS (1000LL * 1000)

/* A memory stream that collects what a dump prints. */
struct text {
    char *buf;
    size_t len;
    FILE *f;
};

static void text_open(struct text *t)
{
    t->buf = NULL;
    t->len = 0;
    t->f = open_memstream(&t->buf, &t->len);
    cr_assert(t->f);
}

static void text_close(struct text *t)
{
    fclose(t->f);
}

static int count(const char *s, const char *what)
{
    int n = 0;
    for (const char *p = s; (p = strstr(p, what)); p += strlen(what))
        n++;
    return n;
}

/* ---- an echo server whose clients never send ---- */

struct session {
    COR_PROMISE(int);
    int fd, n;
    ssize_t sent;
    char buf[256];
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
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(0);
}

struct acceptor {
    COR_PROMISE(int);
    int fd, conn, left;
    cor_launch_options opts;
};
COR_DEFINE_STATIC(acceptor, (int fd, int n), {
    self->fd = fd;
    self->left = n;
})
{
    COR_BEGIN();
    self->opts = (cor_launch_options){.stop = COR_THIS_STOP_TOKEN()};
    while (self->left > 0) {
        COR_AWAIT(self->conn, cor_accept(self->fd, NULL));
        if (self->conn < 0)
            break;
        self->left--;
        COR_RUN_ASYNC(COR_THIS_EXECUTOR(), &self->opts, session(self->conn));
    }
    /* Stays until stopped: one more accept that nobody will answer. */
    COR_AWAIT(self->conn, cor_accept(self->fd, NULL));
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(0);
}

struct server {
    cor_io_context *io;
    counting_resource mr;
    cor_stop_source stop;
    int lfd, port, clients[3];
    pthread_t thread;
};

static uint64_t in_flight(cor_io_context *io)
{
    cor_io_metrics m;
    cor_io_context_metrics(io, &m);
    return m.ops_in_flight;
}

static void *run_io(void *arg)
{
    cor_io_context_run(((struct server *)arg)->io);
    return NULL;
}

/* Starts the server with 3 connected clients whose sessions wait in their first recv. */
static void server_start(struct server *s, int backend, bool thread)
{
    counting_resource_init(&s->mr, -1);
    s->io = io_test_create(backend, NULL);
    cr_assert_eq(cor_execution_context_set_resource(cor_io_context_context(s->io), &s->mr.base), 0);
    cor_stop_source_init(&s->stop);
    cor_sockaddr addr;
    cr_assert_eq(cor_addr_ip(&addr, "127.0.0.1", 0), 0);
    s->lfd = cor_listen(&addr, 16, 0);
    cr_assert_geq(s->lfd, 0);
    struct sockaddr_in in;
    socklen_t len = sizeof in;
    cr_assert_eq(getsockname(s->lfd, (struct sockaddr *)&in, &len), 0);
    cor_launch_options lo = {.stop = cor_stop_source_token(&s->stop)};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(s->io), &lo, acceptor(s->lfd, 3)), 0);
    for (int i = 0; i < 3; i++) {
        s->clients[i] = socket(AF_INET, SOCK_STREAM, 0);
        cr_assert_eq(connect(s->clients[i], (struct sockaddr *)&in, sizeof in), 0);
    }
    if (thread) {
        cr_assert_eq(pthread_create(&s->thread, NULL, run_io, s), 0);
    } else {
        /* Until the three sessions wait in recv (bounded). */
        for (int i = 0; i < 200 && in_flight(s->io) < 4; i++)
            cor_io_context_run_for(s->io, 5 * MS);
    }
}

static void server_stop(struct server *s, bool thread)
{
    for (int i = 0; i < 3; i++)
        close(s->clients[i]);
    cor_stop_source_request(&s->stop);
    if (thread)
        pthread_join(s->thread, NULL);
    else
        cor_io_context_run(s->io);
    cor_io_context_destroy(s->io);
    cr_assert_eq(s->mr.allocs, s->mr.frees, "every frame freed: %ld allocated, %ld freed",
                 s->mr.allocs, s->mr.frees);
}

static void check_server_dump(const char *out)
{
    cr_assert_eq(count(out, "RECV fd "), 3, "three sessions in recv:\n%s", out);
    cr_assert_eq(count(out, "session at tests/test_dump.c:"), 3, "%s", out);
    cr_assert_eq(count(out, "ACCEPT fd "), 1, "%s", out);
    cr_assert_eq(count(out, "acceptor at tests/test_dump.c:"), 1, "%s", out);
    cr_assert_eq(count(out, "launched by COR_RUN_ASYNC"), 4, "%s", out);
    cr_assert(strstr(out, "4 operations in flight"), "%s", out);
    cr_assert(strstr(out, "4 tasks, 4 suspended coroutines"), "%s", out);
}

/* Polls until the server thread has the three sessions in recv (bounded). */
static void wait_in_flight(struct server *s, uint64_t n)
{
    for (int i = 0; i < 1000; i++) {
        if (in_flight(s->io) >= n)
            return;
        usleep(2000);
    }
    cr_assert_fail("the sessions never waited in recv");
}

IO_TEST(dump, stuck_sessions_from_another_thread)
{
    struct server s;
    server_start(&s, backend, true);
    wait_in_flight(&s, 4);
    struct text t;
    text_open(&t);
    cr_assert_eq(cor_io_context_dump(s.io, t.f), 0);
    text_close(&t);
    check_server_dump(t.buf);
    free(t.buf);
    /* The sessions go on: one echoes. */
    char c;
    cr_assert_eq(send(s.clients[1], "e", 1, 0), 1);
    cr_assert_eq(recv(s.clients[1], &c, 1, 0), 1);
    cr_assert_eq(c, 'e');
    server_stop(&s, true);
}

IO_TEST(dump, while_nobody_drives)
{
    struct server s;
    server_start(&s, backend, false);
    struct text t;
    text_open(&t);
    cr_assert_eq(cor_io_context_dump(s.io, t.f), 0);
    text_close(&t);
    check_server_dump(t.buf);
    free(t.buf);
    server_stop(&s, false);
}

/* ---- a deeper chain: a timeout around a join of a reader and a sleeper ---- */

struct reader {
    COR_PROMISE(int);
    int fd, r;
    char c;
};
COR_DEFINE_STATIC(reader, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_read(self->fd, &self->c, 1, -1));
    COR_RETURN(self->r);
}

struct sleeper {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(sleeper, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(10000 * MS));
    COR_RETURN(self->r);
}

struct pair {
    COR_PROMISE(int);
    int fd, a, b;
};
COR_DEFINE_STATIC(pair, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT_ALL((self->a, reader(self->fd)), (self->b, sleeper()));
    COR_RETURN(self->a);
}

/* Dumps io into *out from inside run, then waits for its pair to finish. */
struct outer {
    COR_PROMISE(int);
    int fd, r, err;
    struct text *out;
};
COR_DEFINE_STATIC(outer, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_TRY_AWAIT(self->err, self->r, COR_TIMEOUT(20000 * MS, pair(self->fd)));
    COR_RETURN(self->err ? self->err : self->r);
}

struct dumper {
    COR_PROMISE(int);
    struct text *out;
    int r;
};
COR_DEFINE_STATIC(dumper, (struct text * out), { self->out = out; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_yield()); /* after outer reached its operations */
    COR_RETURN(cor_io_context_dump(cor_io_context_current(), self->out->f));
}

static void store(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

IO_TEST(dump, join_timeout_and_nesting_from_inside)
{
    counting_resource mr;
    counting_resource_init(&mr, -1);
    cor_io_context *io = io_test_create(backend, NULL);
    cor_execution_context_set_resource(cor_io_context_context(io), &mr.base);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    struct text t;
    text_open(&t);
    int outer_result = -1, dump_result = -1;
    cor_launch_options lo = {.on_result = store, .user = &outer_result};
    cor_launch_options ld = {.on_result = store, .user = &dump_result};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, outer(p[0])), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &ld, dumper(&t)), 0);
    for (int i = 0; i < 100 && dump_result == -1; i++)
        cor_io_context_run_for(io, 5 * MS);
    text_close(&t);
    cr_assert_eq(dump_result, 0);
    const char *out = t.buf;
    cr_log_info("the dump:\n%s", out);
    cr_assert(strstr(out, "when_all of 2 children"), "%s", out);
    cr_assert(strstr(out, "timeout (COR_TIMEOUT)"), "%s", out);
    cr_assert(strstr(out, "READ fd"), "%s", out);
    cr_assert(strstr(out, "SLEEP, expires in "), "%s", out);
    cr_assert_eq(count(out, "reader at tests/test_dump.c:"), 1, "%s", out);
    cr_assert_eq(count(out, "sleeper at tests/test_dump.c:"), 1, "%s", out);
    cr_assert_eq(count(out, "pair at tests/test_dump.c:"), 1, "%s", out);
    cr_assert_eq(count(out, "outer at tests/test_dump.c:"), 1, "%s", out);
    /* The dumping coroutine itself is running. */
    cr_assert(strstr(out, "dumper at tests/test_dump.c:"), "%s", out);
    cr_assert(strstr(out, "(running, or queued to run)"), "%s", out);
    /* Innermost first: the read is #0 of its child chain, outer after pair. */
    cr_assert_lt(strstr(out, "READ fd") - out, strstr(out, "reader at") - out, "%s", out);
    cr_assert_lt(strstr(out, "pair at") - out, strstr(out, "outer at") - out, "%s", out);
    free(t.buf);
    /* The reader gets its byte; the join stops the sleeper; everything unwinds. */
    cr_assert_eq(write(p[1], "q", 1), 1);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(outer_result, 1);
    cor_io_context_destroy(io);
    close(p[0]);
    close(p[1]);
    cr_assert_eq(mr.allocs, mr.frees);
}

/* ---- a task group's child and a chain that leaves for a thread pool ---- */

struct blocker {
    COR_PROMISE(int);
};
COR_DEFINE_STATIC(blocker, (void), {})
{
    COR_BEGIN();
    usleep(50000);
    COR_RETURN(7);
}

/* Runs blocker() on ex (a thread pool, a strand) and returns its result. */
struct hopper {
    COR_PROMISE(int);
    cor_executor ex;
    int r;
};
COR_DEFINE_STATIC(hopper, (cor_executor ex), { self->ex = ex; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_RUN(blocker(), .ex = self->ex));
    COR_RETURN(self->r);
}

struct grouped {
    COR_PROMISE(int);
    cor_task_group g;
    int fd, r;
};
COR_DEFINE_STATIC(grouped, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    cor_task_group_init(&self->g, COR_THIS_STOP_TOKEN(), COR_GROUP_FAIL_FAST);
    COR_SPAWN(&self->g, reader(self->fd));
    COR_AWAIT(self->r, cor_task_group_join(&self->g));
    cor_task_group_destroy(&self->g);
    COR_RETURN(self->r);
}

IO_TEST(dump, group_child_and_thread_pool)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 1), 0);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    int hop = -1;
    cor_launch_options lo = {.on_result = store, .user = &hop};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, grouped(p[0])), 0);
    cr_assert_eq(
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo, hopper(cor_thread_pool_executor(pool))), 0);
    cor_io_context_poll(io);
    struct text t;
    text_open(&t);
    cr_assert_eq(cor_io_context_dump(io, t.f), 0);
    text_close(&t);
    const char *out = t.buf;
    cr_assert(strstr(out, "(spawned in a task group):\n  #0 READ fd"), "%s", out);
    cr_assert(strstr(out, "a task-group child"), "%s", out);
    cr_assert(!strstr(out, "(not launched on this io_context)"), "listed twice:\n%s", out);
    cr_assert(strstr(out, "running on another execution context (not followed)"), "%s", out);
    cr_assert(strstr(out, "hopper at tests/test_dump.c:"), "%s", out);
    cr_assert(!strstr(out, "blocker at"), "a frame on the pool was read:\n%s", out);
    free(t.buf);
    cr_assert_eq(write(p[1], "g", 1), 1);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(hop, 7);
    cor_io_context_destroy(io);
    cor_thread_pool_destroy(pool);
    close(p[0]);
    close(p[1]);
}

/* ---- a group child that waits for no operation ---- */

struct event_waiter {
    COR_PROMISE(int);
    cor_async_event *e;
    int r;
};
COR_DEFINE_STATIC(event_waiter, (cor_async_event * e), { self->e = e; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_async_event_wait(self->e));
    COR_RETURN(self->r);
}

struct event_group {
    COR_PROMISE(int);
    cor_task_group g;
    cor_async_event *e;
    int r;
};
COR_DEFINE_STATIC(event_group, (cor_async_event * e), { self->e = e; })
{
    COR_BEGIN();
    cor_task_group_init(&self->g, COR_THIS_STOP_TOKEN(), COR_GROUP_FAIL_FAST);
    COR_SPAWN(&self->g, event_waiter(self->e));
    COR_AWAIT(self->r, cor_task_group_join(&self->g));
    cor_task_group_destroy(&self->g);
    COR_RETURN(self->r);
}

/* Nothing of the child is in flight: the dump finds it on the context's list of roots. */
IO_TEST(dump, group_child_waiting_on_an_event)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_async_event e;
    cr_assert_eq(cor_async_event_init(&e), 0);
    int r = -1;
    cor_launch_options lo = {.on_result = store, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, event_group(&e)), 0);
    cor_io_context_poll(io);
    struct text t;
    text_open(&t);
    cr_assert_eq(cor_io_context_dump(io, t.f), 0);
    text_close(&t);
    const char *out = t.buf;
    cr_assert(strstr(out, "(spawned in a task group):"), "%s", out);
    cr_assert(strstr(out, "event_waiter at tests/test_dump.c:"), "%s", out);
    cr_assert(strstr(out, "event_group at tests/test_dump.c:"), "%s", out);
    cr_assert(strstr(out, "2 tasks, 2 suspended coroutines"), "%s", out);
    free(t.buf);
    cr_assert_eq(cor_async_event_set(&e), 1, "the one waiter woken");
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, 0);
    cr_assert_eq(cor_async_event_destroy(&e), 0);
    cor_io_context_destroy(io);
}

/* ---- a thread pool's queue ---- */

struct gate {
    COR_PROMISE(int);
    int *entered, *open;
};
COR_DEFINE_STATIC(gate, (int *entered, int *open), {
    self->entered = entered;
    self->open = open;
})
{
    COR_BEGIN();
    __atomic_store_n(self->entered, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(self->open, __ATOMIC_ACQUIRE))
        usleep(1000);
    COR_RETURN(0);
}

/*
 * The pool's one worker is held in a gate while a task, a COR_RUN child
 * (its parent on a manual executor) and a strand's drainer queue up behind
 * it: the dump lists the three with their chains, then everything runs.
 */
Test(dump, thread_pool_queue)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 1), 0);
    cor_executor pex = cor_thread_pool_executor(pool);
    int entered = 0, open = 0;
    cr_assert_eq(COR_RUN_ASYNC(pex, NULL, gate(&entered, &open)), 0);
    while (!__atomic_load_n(&entered, __ATOMIC_ACQUIRE))
        usleep(1000);
    cr_assert_eq(COR_RUN_ASYNC(pex, NULL, blocker()), 0);
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    int hop = -1;
    cor_launch_options lo = {.on_result = store, .user = &hop};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &lo, hopper(cor_thread_pool_executor(pool))),
                 0);
    cor_manual_poll(m);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, pex), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), NULL, blocker()), 0);

    struct text t;
    text_open(&t);
    cr_assert_eq(cor_thread_pool_dump(pool, t.f), 0);
    text_close(&t);
    const char *out = t.buf;
    cr_assert(strstr(out, "thread pool: 1 workers (0 waiting for work), 3 queued handles"), "%s",
              out);
    cr_assert(strstr(out, "queued 0:") && strstr(out, "queued 2:") && !strstr(out, "queued 3:"),
              "%s", out);
    cr_assert_eq(count(out, "launched by COR_RUN_ASYNC"), 2, "%s", out);
    cr_assert_eq(count(out, "a task queued to start"), 2, "%s", out);
    cr_assert(strstr(out, "hopper at tests/test_dump.c:"), "%s", out);
    cr_assert(strstr(out, "a strand's drainer"), "%s", out);
    cr_assert(!strstr(out, "gate at"), "the running handle is not listed:\n%s", out);
    free(t.buf);

    __atomic_store_n(&open, 1, __ATOMIC_RELEASE);
    cor_manual_run(m);
    cr_assert_eq(hop, 7);
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
    cor_manual_destroy(m);
}

/*
 * A strand over the pool: its first task is stuck in a gate on the only
 * worker, two more tasks and a COR_RUN child queue on the strand. The
 * strand's dump lists the three (not the running one); the pool's shows
 * nothing queued. Then the gate opens and everything runs.
 */
Test(dump, strand_queue_while_a_handle_is_stuck)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 1), 0);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_thread_pool_executor(pool)), 0);
    cor_executor sex = cor_strand_executor(&s);
    int entered = 0, open = 0;
    cr_assert_eq(COR_RUN_ASYNC(sex, NULL, gate(&entered, &open)), 0);
    while (!__atomic_load_n(&entered, __ATOMIC_ACQUIRE))
        usleep(1000);
    cr_assert_eq(COR_RUN_ASYNC(sex, NULL, blocker()), 0);
    cr_assert_eq(COR_RUN_ASYNC(sex, NULL, blocker()), 0);
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    int hop = -1;
    cor_launch_options lo = {.on_result = store, .user = &hop};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &lo, hopper(cor_strand_executor(&s))), 0);
    cor_manual_poll(m);

    struct text t;
    text_open(&t);
    cr_assert_eq(cor_strand_dump(&s, t.f), 0);
    text_close(&t);
    const char *out = t.buf;
    cr_assert(strstr(out, "strand: 4 handles queued or running"), "%s", out);
    cr_assert(strstr(out, "queued 2:") && !strstr(out, "queued 3:"), "%s", out);
    cr_assert_eq(count(out, "a task queued to start"), 3, "%s", out);
    cr_assert(strstr(out, "hopper at tests/test_dump.c:"), "%s", out);
    cr_assert(!strstr(out, "gate at"), "the running handle is not listed:\n%s", out);
    free(t.buf);
    text_open(&t);
    cr_assert_eq(cor_thread_pool_dump(pool, t.f), 0);
    text_close(&t);
    cr_assert(strstr(t.buf, "0 queued handles"), "%s", t.buf);
    free(t.buf);

    __atomic_store_n(&open, 1, __ATOMIC_RELEASE);
    cor_manual_run(m);
    cr_assert_eq(hop, 7);
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
    cor_manual_destroy(m);
}

/* ---- a coroutine's own backtrace ---- */

struct inner {
    COR_PROMISE(int);
    struct text *out;
};
COR_DEFINE_STATIC(inner, (struct text * out), { self->out = out; })
{
    COR_BEGIN();
    COR_RETURN(cor_backtrace(&self->cor_hdr, self->out->f));
}

struct middle {
    COR_PROMISE(int);
    struct text *out;
    int r;
};
COR_DEFINE_STATIC(middle, (struct text * out), { self->out = out; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, inner(self->out));
    COR_RETURN(self->r);
}

Test(dump, own_backtrace)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    struct text t;
    text_open(&t);
    int r = -1;
    cor_launch_options lo = {.on_result = store, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &lo, middle(&t)), 0);
    cor_manual_run(m);
    text_close(&t);
    cr_assert_eq(r, 0);
    const char *out = t.buf;
    cr_assert(strstr(out, "#0 inner at tests/test_dump.c:"), "%s", out);
    cr_assert(strstr(out, "#1 middle at tests/test_dump.c:"), "%s", out);
    cr_assert(strstr(out, "#2 launched by COR_RUN_ASYNC"), "%s", out);
    free(t.buf);
    cor_manual_destroy(m);
}

Test(dump, bad_arguments)
{
    cr_assert_eq(cor_backtrace(NULL, stderr), -EINVAL);
    cr_assert_eq(cor_io_context_dump(NULL, stderr), -EINVAL);
    cr_assert_eq(cor_thread_pool_dump(NULL, stderr), -EINVAL);
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 1), 0);
    cr_assert_eq(cor_thread_pool_dump(pool, NULL), -EINVAL);
    cr_assert_eq(cor_strand_dump(NULL, stderr), -EINVAL);
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_thread_pool_executor(pool)), 0);
    cr_assert_eq(cor_strand_dump(&s, NULL), -EINVAL);
    cr_assert_eq(cor_strand_destroy(&s), 0);
    cor_thread_pool_destroy(pool);
    cor_io_context *io;
    cr_assert_eq(cor_io_context_create(&io, NULL), 0);
    cr_assert_eq(cor_io_context_dump(io, NULL), -EINVAL);
    cor_frame f = {0};
    cr_assert_eq(cor_backtrace(&f, NULL), -EINVAL);
    cor_io_context_destroy(io);
}

/* ---- a dump from another thread racing the owner's stop and run ---- */

/* Blocks its thread 300 ms (a dump request arrives meanwhile), then stops io. */
struct stopper {
    COR_PROMISE(int);
    cor_io_context *io;
    int r;
};
COR_DEFINE_STATIC(stopper, (cor_io_context * io), { self->io = io; })
{
    COR_BEGIN();
    usleep(300 * 1000);
    cor_io_context_stop(self->io);
    COR_AWAIT(self->r, cor_yield());
    COR_RETURN(0);
}

struct dump_thread {
    cor_io_context *io;
    FILE *f;
    int rc;
};

static void *dump_main(void *arg)
{
    struct dump_thread *d = arg;
    d->rc = cor_io_context_dump(d->io, d->f);
    return NULL;
}

static void *run_main(void *arg)
{
    cor_io_context_run(arg);
    return NULL;
}

/*
 * The owner stops with the dump request still queued: the dumping thread
 * prints on its own once the owner left, and destroy discards the request
 * it left behind (the ASan build checks that nothing is read after free).
 */
IO_TEST(dump, a_request_the_owner_left_queued_is_discarded_at_destroy)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, stopper(io)), 0);
    pthread_t runner, dumper;
    cr_assert_eq(pthread_create(&runner, NULL, run_main, io), 0);
    usleep(100 * 1000);
    struct text t;
    text_open(&t);
    struct dump_thread d = {.io = io, .f = t.f, .rc = 1};
    cr_assert_eq(pthread_create(&dumper, NULL, dump_main, &d), 0);
    pthread_join(runner, NULL);
    pthread_join(dumper, NULL);
    text_close(&t);
    cr_assert_eq(d.rc, 0);
    cr_assert(strstr(t.buf, "io_context"), "%s", t.buf);
    free(t.buf);
    cor_io_context_destroy(io);
}

/* A FILE whose writes take 20 ms each: a dump into it lasts. */
static int slow_writes;

static ssize_t slow_write(void *cookie, const char *buf, size_t n)
{
    (void)cookie;
    (void)buf;
    __atomic_fetch_add(&slow_writes, 1, __ATOMIC_RELEASE);
    usleep(20 * 1000);
    return (ssize_t)n;
}

struct seven {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(seven, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(MS));
    COR_RETURN(7);
}

/* While another thread dumps (nobody drove io), the owner's run waits for it, then runs. */
IO_TEST(dump, a_run_started_during_a_dump_from_another_thread_waits_for_it)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int got = 0;
    cor_launch_options lo = {.on_result = store, .user = &got};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, seven()), 0);
    FILE *f = fopencookie(NULL, "w", (cookie_io_functions_t){.write = slow_write});
    cr_assert_not_null(f);
    setvbuf(f, NULL, _IONBF, 0); /* every line a write */
    __atomic_store_n(&slow_writes, 0, __ATOMIC_RELAXED);
    struct dump_thread d = {.io = io, .f = f, .rc = 1};
    pthread_t dumper;
    cr_assert_eq(pthread_create(&dumper, NULL, dump_main, &d), 0);
    while (__atomic_load_n(&slow_writes, __ATOMIC_ACQUIRE) == 0)
        usleep(1000);
    long n = cor_io_context_run(io);
    cr_assert_geq(n, 1, "run during the dump: %ld", n);
    cr_assert_eq(got, 7);
    pthread_join(dumper, NULL);
    cr_assert_eq(d.rc, 0);
    fclose(f);
    cor_io_context_destroy(io);
}
