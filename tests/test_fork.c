/*
 * fork() on both backends: a child that touches its parent's io_context
 * gets -EPERM from every call that would drive it, an operation awaited in
 * the child fails without reaching the kernel, destroying the child's copy
 * touches nothing of the parent's, and the parent's operation in flight
 * across the fork completes normally afterwards. Also a handler that forks
 * inside run. Every child has an alarm so a hang fails the case.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

/* Reads one byte from a pipe; its result is the byte or -errno. */
struct reader {
    COR_PROMISE(int);
    int fd, r;
    char c;
};
COR_DEFINE_STATIC(reader, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, pipe_read(self->fd, &self->c));
    COR_RETURN(self->r == 1 ? self->c : self->r);
}

static void store(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

/* Waits for pid; returns its exit status, or 100 + the signal that killed it. */
static int reap(pid_t pid)
{
    int st = 0;
    if (waitpid(pid, &st, 0) != pid)
        return 99;
    return WIFEXITED(st) ? WEXITSTATUS(st) : 100 + WTERMSIG(st);
}

/* What the child does with its copy of the parent's context; returns the failing step or 0. */
static int child_touches(cor_io_context *io, int rfd)
{
    if (cor_io_context_run(io) != -EPERM)
        return 1;
    if (cor_io_context_poll(io) != -EPERM || cor_io_context_run_one(io) != -EPERM ||
        cor_io_context_poll_one(io) != -EPERM || cor_io_context_run_for(io, 1000) != -EPERM)
        return 2;
    if (cor_io_context_stop(io) != -EPERM || cor_io_context_restart(io) != -EPERM)
        return 3;
    /* A post lands in the child's copy and never runs; it must not wake the parent. */
    int result = -1;
    cor_launch_options lo = {.on_result = store, .user = &result};
    if (COR_RUN_ASYNC(cor_io_context_executor(io), &lo, reader(rfd)) != 0)
        return 4;
    if (result != -1)
        return 5;
    /* Metrics are a read of the child's copy: allowed. */
    cor_io_metrics m;
    if (cor_io_context_metrics(io, &m) || m.ops_in_flight != 1)
        return 6;
    cor_io_context_destroy(io);
    return 0;
}

IO_TEST(fork, child_cannot_touch_the_parents_context)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    int result = -1;
    cor_launch_options lo = {.on_result = store, .user = &result};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, reader(p[0])), 0);
    cr_assert_geq(cor_io_context_poll(io), 1); /* the read is in flight now */
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20);
        _exit(child_touches(io, p[0]));
    }
    cr_assert_eq(reap(pid), 0, "the child failed (step or 100 + signal)");
    /* The parent's ring is intact: the read in flight across the fork completes. */
    cr_assert_eq(write(p[1], "k", 1), 1);
    cr_assert_geq(cor_io_context_run(io), 1);
    cr_assert_eq(result, 'k');
    cor_io_metrics m;
    cr_assert_eq(cor_io_context_metrics(io, &m), 0);
    cr_assert_eq(m.ops_in_flight, 0);
    cor_io_context_destroy(io);
    close(p[0]);
    close(p[1]);
}

/* A coroutine that forks: the child's copy of it tries an operation, which must fail. */
struct forker {
    COR_PROMISE(int);
    int fd, r;
    pid_t pid;
    char c;
};
COR_DEFINE_STATIC(forker, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    self->pid = fork();
    if (self->pid == 0)
        alarm(20);
    COR_AWAIT(self->r, pipe_read(self->fd, &self->c));
    if (self->pid == 0)
        _exit(self->r == -EPERM ? 0 : 1);
    COR_RETURN(self->r == 1 ? self->pid : -1);
}

IO_TEST(fork, handler_that_forks_inside_run)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(write(p[1], "z", 1), 1);
    int result = -1;
    cor_launch_options lo = {.on_result = store, .user = &result};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &lo, forker(p[0])), 0);
    cr_assert_geq(cor_io_context_run(io), 1);
    cr_assert_gt(result, 0, "the parent's read failed: %d", result);
    cr_assert_eq(reap((pid_t)result), 0, "the child's read did not fail with -EPERM");
    cor_io_context_destroy(io);
    close(p[0]);
    close(p[1]);
}

/* A handler that forks as the run's last work: the child's run returns -EPERM all the same. */
struct fork_last {
    COR_PROMISE(int);
    pid_t *child;
};
COR_DEFINE_STATIC(fork_last, (pid_t * child), { self->child = child; })
{
    COR_BEGIN();
    *self->child = fork();
    if (*self->child == 0)
        alarm(20);
    COR_RETURN(0);
}

IO_TEST(fork, the_child_of_a_handler_that_forks_last_gets_eperm_from_run)
{
    cor_io_context *io = io_test_create(backend, NULL);
    pid_t parent = getpid(), child = -1;
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), NULL, fork_last(&child)), 0);
    long r = cor_io_context_run(io);
    if (getpid() != parent)
        _exit(r == -EPERM ? 0 : 1);
    cr_assert_eq(r, 1);
    cr_assert_gt(child, 0);
    cr_assert_eq(reap(child), 0, "the child's run did not return -EPERM");
    cor_io_context_destroy(io);
}

/* A child may create and run io_contexts of its own. */
static int child_runs_its_own(int backend)
{
    cor_io_context_options o = {.backend = backend};
    cor_io_context *io;
    if (cor_io_context_create(&io, &o))
        return 1;
    int p[2];
    if (pipe(p) || write(p[1], "c", 1) != 1)
        return 2;
    int result = -1;
    cor_launch_options lo = {.on_result = store, .user = &result};
    if (COR_RUN_ASYNC(cor_io_context_executor(io), &lo, reader(p[0])))
        return 3;
    if (cor_io_context_run(io) < 1 || result != 'c')
        return 4;
    cor_io_context_destroy(io);
    return 0;
}

IO_TEST(fork, child_creates_its_own)
{
    cor_io_context *parent = io_test_create(backend, NULL);
    cr_assert_eq(cor_io_context_poll(parent), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20);
        _exit(child_runs_its_own(backend));
    }
    cr_assert_eq(reap(pid), 0);
    cor_io_context_destroy(parent);
}
