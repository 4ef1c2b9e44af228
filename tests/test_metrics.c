/*
 * Metrics of an io_context on both backends: operations, submissions and
 * kernel entries, local and cross-thread posts and wake-ups, the timer
 * gauge, read from another thread while the owner runs (TSan checks the
 * counters never race), and the stall detector: one log line per long
 * iteration, the busy gauge seen from outside while it lasts.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

#define MS (1000LL * 1000)

static cor_io_metrics snap(cor_io_context *io)
{
    cor_io_metrics m;
    cr_assert_eq(cor_io_context_metrics(io, &m), 0);
    return m;
}

/* n round trips of one byte over a socket pair. */
struct pingpong {
    COR_PROMISE(int);
    int a, b, i, n, r;
    char c;
};
COR_DEFINE_STATIC(pingpong, (int a, int b, int n), {
    self->a = a;
    self->b = b;
    self->n = n;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        COR_AWAIT(self->r, cor_send(self->a, "x", 1, 0));
        if (self->r != 1)
            COR_RETURN(-1);
        COR_AWAIT(self->r, cor_recv(self->b, &self->c, 1, 0));
        if (self->r != 1)
            COR_RETURN(-2);
    }
    COR_RETURN(0);
}

static void store(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

IO_TEST(metrics, operations_and_batching)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_io_metrics m0 = snap(io);
    cr_assert_eq(m0.ops_started, 0);
    cr_assert_eq(m0.ops_in_flight, 0);
    int sv[2], result = -9;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    cor_launch_options lo = {.on_result = store, .user = &result};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, pingpong(sv[0], sv[1], 50)), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(result, 0);
    cor_io_metrics m = snap(io);
    cr_assert_eq(m.ops_started, 100);
    cr_assert_eq(m.ops_completed, 100);
    cr_assert_eq(m.ops_in_flight, 0);
    cr_assert_eq(m.ops_submitted, 100);
    cr_assert_geq(m.sqes, 100, "every operation made an SQE or a syscall: %lu",
                  (unsigned long)m.sqes);
    /* epoll needs no epoll_wait when every operation succeeds at once. */
    cr_assert(backend == COR_IO_BACKEND_EPOLL || m.enters > 0);
    cr_assert_gt(m.iterations, 0);
    cr_assert_eq(m.cq_overflows, 0);
    cr_assert_eq(m.busy_ns, 0, "nobody runs io: not busy");
    for (size_t i = 0; i < sizeof m.reserved / sizeof m.reserved[0]; i++)
        cr_assert_eq(m.reserved[i], 0);
    cor_io_context_destroy(io);
    close(sv[0]);
    close(sv[1]);
}

struct timer_probe {
    cor_io_context *io;
    uint64_t seen;
};

/* Posted while the sleeps are on the wheel: what the gauge says then. */
struct probe_frame {
    cor_frame hdr;
    struct timer_probe *p;
};

static cor_handle probe_resume(cor_frame *f)
{
    struct probe_frame *pf = (struct probe_frame *)f;
    cor_io_metrics m;
    cor_io_context_metrics(pf->p->io, &m);
    pf->p->seen = m.timers;
    return COR_NOOP;
}

IO_TEST(metrics, timers_and_local_posts)
{
    cor_io_context *io = io_test_create(backend, NULL);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, nap(30 * MS)), 0);
    cr_assert_eq(cor_io_context_poll(io), 3);
    struct timer_probe p = {.io = io};
    struct probe_frame pf = {.hdr = {.resume = probe_resume}, .p = &p};
    cor_io_metrics before = snap(io);
    cr_assert_eq(cor_executor_post(cor_io_context_executor(io), &pf.hdr), 0);
    cr_assert_geq(cor_io_context_poll(io), 1);
    cr_assert_eq(p.seen, 3, "three sleeps on the wheel, the gauge says %lu", (unsigned long)p.seen);
    cr_assert_eq(snap(io).posts_remote, before.posts_remote + 1, "posted from outside run");
    cr_assert_geq(cor_io_context_run(io), 0);
    cor_io_metrics m = snap(io);
    cr_assert_eq(m.timers, 0);
    cr_assert_eq(m.ops_started, 3);
    cr_assert_eq(m.ops_submitted, 0, "sleeps never reach the backend");
    cr_assert_geq(m.wakeups_received, 1, "the owner blocked until the sleeps expired");
    cor_io_context_destroy(io);
}

struct poster_args {
    cor_io_context *io;
    struct probe_frame *f;
    int n;
    pid_t owner; /* the thread running io (post_later waits until it sleeps) */
};

/* Posts from inside run: a coroutine that yields (cor_yield posts its frame) n times. */
struct yielder {
    COR_PROMISE(int);
    int i, r;
};
COR_DEFINE_STATIC(yielder, (void), {})
{
    COR_BEGIN();
    for (self->i = 0; self->i < 10; self->i++)
        COR_AWAIT(self->r, cor_yield());
    COR_RETURN(0);
}

IO_TEST(metrics, local_posts)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, yielder()), 0);
    uint64_t remote = snap(io).posts_remote;
    cr_assert_geq(cor_io_context_run(io), 0);
    cor_io_metrics m = snap(io);
    cr_assert_geq(m.posts_local, 10);
    cr_assert_eq(m.posts_remote, remote);
    cor_io_context_destroy(io);
}

/* ---- reading from another thread ---- */

struct reader_args {
    cor_io_context *io;
    int stop;
    long reads;
    int ok;
};

static void *reader(void *arg)
{
    struct reader_args *r = arg;
    cor_io_metrics prev = {0};
    r->ok = 1;
    while (!__atomic_load_n(&r->stop, __ATOMIC_ACQUIRE)) {
        cor_io_metrics m;
        if (cor_io_context_metrics(r->io, &m) || m.ops_completed > m.ops_started ||
            m.ops_started < prev.ops_started || m.sqes < prev.sqes || m.enters < prev.enters)
            r->ok = 0;
        prev = m;
        __atomic_add_fetch(&r->reads, 1, __ATOMIC_RELEASE);
    }
    return NULL;
}

IO_TEST(metrics, read_from_another_thread_while_running)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2], result = -9;
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct reader_args r = {.io = io};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, reader, &r), 0);
    /* The reader is reading before the run starts (the run may be over before it is scheduled). */
    while (!__atomic_load_n(&r.reads, __ATOMIC_ACQUIRE))
        sched_yield();
    cor_launch_options lo = {.on_result = store, .user = &result};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, pingpong(sv[0], sv[1], 2000)), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    __atomic_store_n(&r.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    cr_assert_eq(result, 0);
    cr_assert(r.ok, "a snapshot went backwards or showed more completed than started");
    cor_io_context_destroy(io);
    close(sv[0]);
    close(sv[1]);
}

/* ---- wake-ups ---- */

/* Whether thread tid of this process sleeps in the kernel now (state S in /proc). */
static bool thread_sleeps(pid_t tid)
{
    char path[64], buf[256];
    snprintf(path, sizeof path, "/proc/self/task/%d/stat", (int)tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = 0;
    const char *st = strrchr(buf, ')'); /* the state follows the command name */
    return st && st[1] == ' ' && st[2] == 'S';
}

/*
 * Posts once the owner is asleep in the kernel: 20 ms, then until /proc says
 * so (at most 5 s more; a slow or loaded machine may take the owner longer
 * than 20 ms to get there), then 5 ms more.
 */
static void *post_later(void *arg)
{
    struct poster_args *a = arg;
    usleep(20000);
    for (int i = 0; i < 5000 && !thread_sleeps(a->owner); i++)
        usleep(1000);
    usleep(5000);
    cor_executor_post(cor_io_context_executor(a->io), &a->f->hdr);
    return NULL;
}

static cor_handle noop_resume(cor_frame *f)
{
    (void)f;
    return COR_NOOP;
}

IO_TEST(metrics, wakeups_sent_and_received)
{
    cor_io_context *io = io_test_create(backend, NULL);
    struct probe_frame f = {.hdr = {.resume = noop_resume}};
    struct poster_args a = {.io = io, .f = &f, .owner = (pid_t)syscall(SYS_gettid)};
    /* A work guard keeps run blocking until the post arrives. */
    cor_executor ex = cor_io_context_executor(io);
    ex.ops->on_work_started(ex.obj);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, post_later, &a), 0);
    cr_assert_eq(cor_io_context_run_one(io), 1);
    pthread_join(t, NULL);
    ex.ops->on_work_finished(ex.obj);
    cor_io_metrics m = snap(io);
    cr_assert_eq(m.posts_remote, 1);
    cr_assert_eq(m.wakeups_sent, 1, "the poster found the owner asleep and woke it");
    cr_assert_geq(m.wakeups_received, 1);
    cor_io_context_destroy(io);
}

/* n nops, one after the other. */
struct nops {
    COR_PROMISE(int);
    int i, n, r;
};
COR_DEFINE_STATIC(nops, (int n), { self->n = n; })
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++)
        COR_AWAIT(self->r, cor_nop());
    COR_RETURN(0);
}

Test(metrics, completions_ready_at_once_are_no_wakeup)
{
    /* On epoll a nop is ready when submitted: every pass may block and none does. */
    cor_io_context *io = io_test_create(COR_IO_BACKEND_EPOLL, NULL);
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, nops(1000)), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    cor_io_metrics m = snap(io);
    cr_assert_eq(m.ops_completed, 1000);
    cr_assert_geq(m.iterations, 1000, "one pass per nop: %lu", (unsigned long)m.iterations);
    cr_assert_eq(m.wakeups_received, 0, "the owner never blocked, %lu wake-ups counted",
                 (unsigned long)m.wakeups_received);
    cr_assert_eq(m.enters, 0);
    cor_io_context_destroy(io);
}

/* ---- the stall detector ---- */

static struct {
    int lines;
    char last[512];
} logged;

/* Installs the hook with nothing logged yet (the TSan runner keeps one process for all cases). */
static void hook_install(void);

static void hook(void *user, int level, const char *msg)
{
    (void)user;
    if (level == COR_LOG_WARNING && strstr(msg, "stalled"))
        __atomic_fetch_add(&logged.lines, 1, __ATOMIC_RELAXED);
    snprintf(logged.last, sizeof logged.last, "%s", msg);
}

static void hook_install(void)
{
    logged.lines = 0;
    logged.last[0] = 0;
    cr_assert_eq(cor_set_log_hook(hook, NULL), 0);
}

static void spin_ms(long ms)
{
    int64_t until = cor_clock_now() + ms * MS;
    while (cor_clock_now() < until)
        ;
}

/* Holds the loop for ms milliseconds after a first await, then once more after a second. */
struct hog {
    COR_PROMISE(int);
    long ms;
    int r;
};
COR_DEFINE_STATIC(hog, (long ms), { self->ms = ms; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(1 * MS));
    spin_ms(self->ms);
    COR_AWAIT(self->r, cor_yield());
    spin_ms(self->ms);
    COR_RETURN(0);
}

IO_TEST(metrics, stall_logged_once_per_stall)
{
    hook_install();
    cor_io_context *io = io_test_create(backend, NULL);
    cr_assert_eq(cor_io_context_set_stall_threshold(io, 50 * MS), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, hog(150)), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    cor_io_metrics m = snap(io);
    cr_assert_eq(m.stalls, 2, "two long iterations, %lu stalls", (unsigned long)m.stalls);
    cr_assert_eq(logged.lines, 2, "one line per stall; last: %s", logged.last);
    cr_assert(strstr(logged.last, "threshold 50.000 ms"), "%s", logged.last);
    cr_assert_geq(m.longest_ns, 150 * MS);
    /* Off again: the same hog counts nothing. */
    cr_assert_eq(cor_io_context_set_stall_threshold(io, 0), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, hog(30)), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(snap(io).stalls, 2);
    cr_assert_eq(logged.lines, 2);
    cor_io_context_destroy(io);
    cor_set_log_hook(NULL, NULL);
}

IO_TEST(metrics, quiet_loop_is_no_stall)
{
    hook_install();
    cor_io_context *io = io_test_create(backend, NULL);
    cr_assert_eq(cor_io_context_set_stall_threshold(io, 500 * MS), 0);
    /* A long sleep is a wait in the kernel, not a busy loop. */
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, nap(600 * MS)), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    cor_io_metrics m = snap(io);
    cr_assert_eq(m.stalls, 0);
    cr_assert_lt(m.longest_ns, 500 * MS, "the sleep was counted as busy: %lu ns",
                 (unsigned long)m.longest_ns);
    cr_assert_eq(logged.lines, 0);
    cor_io_context_destroy(io);
    cor_set_log_hook(NULL, NULL);
}

struct watcher_args {
    cor_io_context *io;
    uint64_t max_busy;
    int stop;
};

static void *watch(void *arg)
{
    struct watcher_args *w = arg;
    while (!__atomic_load_n(&w->stop, __ATOMIC_ACQUIRE)) {
        cor_io_metrics m;
        cor_io_context_metrics(w->io, &m);
        if (m.busy_ns > w->max_busy)
            w->max_busy = m.busy_ns;
        usleep(1000);
    }
    return NULL;
}

/* Holds the loop for ms milliseconds after a nop: a completion ready without a wait on epoll. */
struct hog_after_nop {
    COR_PROMISE(int);
    long ms;
    int r;
};
COR_DEFINE_STATIC(hog_after_nop, (long ms), { self->ms = ms; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_nop());
    spin_ms(self->ms);
    COR_RETURN(0);
}

/* A watcher thread's highest busy_ns while the loop runs an 80 ms hog (after a nop or a sleep). */
static uint64_t busy_seen(cor_io_context *io, bool after_nop)
{
    struct watcher_args w = {.io = io};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, watch, &w), 0);
    if (after_nop)
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, hog_after_nop(80)), 0);
    else
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, hog(80)), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    __atomic_store_n(&w.stop, 1, __ATOMIC_RELEASE);
    pthread_join(t, NULL);
    return w.max_busy;
}

/* After a wait in the kernel (the sleep), and after a completion that needed none (the nop). */
IO_TEST(metrics, busy_gauge_seen_from_outside)
{
    cor_io_context *io = io_test_create(backend, NULL);
    uint64_t busy = busy_seen(io, false);
    cr_assert_geq(busy, 20 * MS, "a watcher saw the loop busy for %lu ns at most",
                  (unsigned long)busy);
    busy = busy_seen(io, true);
    cr_assert_geq(busy, 20 * MS, "after a nop: busy for %lu ns at most", (unsigned long)busy);
    cor_io_context_destroy(io);
}

Test(metrics, bad_arguments)
{
    cor_io_metrics m;
    cr_assert_eq(cor_io_context_metrics(NULL, &m), -EINVAL);
    cr_assert_eq(cor_io_context_set_stall_threshold(NULL, 1), -EINVAL);
    cor_io_context *io;
    cr_assert_eq(cor_io_context_create(&io, NULL), 0);
    cr_assert_eq(cor_io_context_metrics(io, NULL), -EINVAL);
    cr_assert_eq(cor_io_context_set_stall_threshold(io, -1), -EINVAL);
    cor_io_context_destroy(io);
}

/* The timers gauge, read from another thread while the owner blocks on them and after a stop. */
struct blocked_runner {
    cor_io_context *io;
    long rc;
};

static void *run_for_a_while(void *arg)
{
    struct blocked_runner *b = arg;
    b->rc = cor_io_context_run_for(b->io, 400 * MS);
    return NULL;
}

IO_TEST(metrics, timers_gauge_while_blocked_and_after_teardown)
{
    cor_io_context *io = io_test_create(backend, NULL);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, nap(10000 * MS)), 0);
    struct blocked_runner b = {.io = io};
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, run_for_a_while, &b), 0);
    uint64_t seen = 0;
    for (int i = 0; i < 200 && seen != 10; i++) {
        usleep(1000);
        seen = snap(io).timers;
    }
    cr_assert_eq(seen, 10, "the gauge while the loop blocks on ten sleeps: %lu",
                 (unsigned long)seen);
    pthread_join(t, NULL);
    cr_assert_geq(b.rc, 0);
    cor_io_context_destroy(io);

    /* An io_group member's thread ends its sleeps when it exits: the gauge follows. */
    cor_io_group *g;
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.no_pin = true, .context = &co};
    cr_assert_eq(cor_io_group_create(&g, 1, &go), 0);
    for (int i = 0; i < 10; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_io_group_executor(g, 0), NULL, nap(10000 * MS)), 0);
    cor_io_context *m = cor_io_group_context(g, 0);
    seen = 0;
    for (int i = 0; i < 2000 && seen != 10; i++) {
        usleep(1000);
        seen = snap(m).timers;
    }
    cr_assert_eq(seen, 10);
    cr_assert_eq(cor_io_group_stop(g), 0);
    cr_assert_eq(snap(m).timers, 0, "the sleeps ended with the member's thread");
    cor_io_group_destroy(g);
}
