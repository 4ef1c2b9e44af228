/*
 * Signals on both backends: SIGUSR1 and SIGTERM raised at the process and
 * taken by a waiting coroutine, one signal per waiter across two io_contexts,
 * a stopped wait that leaves the signal pending, bad input. Each case runs
 * in a forked child of one thread, which blocks the signals before anything
 * else: the test runner's own threads never see them.
 */
#include <signal.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

#define MS (1000LL * 1000)

/* Runs body(backend) in a child; the test passes if the child exits 0. */
static void in_child(int backend, int (*body)(int backend))
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20); /* a hang fails the case (SIGALRM) instead of the run */
        sigset_t set;
        sigemptyset(&set);
        sigaddset(&set, SIGUSR1);
        sigaddset(&set, SIGTERM);
        if (cor_signals_block(&set))
            _exit(90);
        _exit(body(backend));
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the child died of signal %d", WTERMSIG(st));
    cr_assert_eq(WEXITSTATUS(st), 0, "the child failed at step %d", WEXITSTATUS(st));
}

struct waiter {
    COR_PROMISE(int);
    sigset_t set;
    int sig, *count;
};
COR_DEFINE_STATIC(waiter, (int signo, int *count), {
    sigemptyset(&self->set);
    sigaddset(&self->set, signo);
    self->count = count;
})
{
    COR_BEGIN();
    COR_AWAIT(self->sig, cor_signal_wait(&self->set));
    if (self->count && self->sig > 0)
        __atomic_fetch_add(self->count, 1, __ATOMIC_RELAXED);
    COR_RETURN(self->sig);
}

struct raiser {
    COR_PROMISE(int);
    int sig;
};
COR_DEFINE_STATIC(raiser, (int sig), { self->sig = sig; })
{
    COR_BEGIN();
    COR_AWAIT_VOID(cor_sleep_for(5 * MS));
    COR_RETURN(kill(getpid(), self->sig));
}

static void store(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

static int raise_and_take(int backend)
{
    cor_io_context_options o = {.backend = backend};
    cor_io_context *io;
    if (cor_io_context_create(&io, &o))
        return 1;
    int sigs[] = {SIGUSR1, SIGTERM};
    for (int i = 0; i < 2; i++) {
        int got = 0, raised = -1;
        cor_launch_options wo = {.on_result = store, .user = &got};
        cor_launch_options ro = {.on_result = store, .user = &raised};
        COR_RUN_ASYNC(cor_io_context_executor(io), &wo, waiter(sigs[i], NULL));
        COR_RUN_ASYNC(cor_io_context_executor(io), &ro, raiser(sigs[i]));
        cor_io_context_run(io);
        if (raised != 0)
            return 2 + i;
        if (got != sigs[i])
            return 4 + i;
    }
    cor_io_context_destroy(io);
    return 0;
}

IO_TEST(signals, sigusr1_and_sigterm_reach_the_waiting_coroutine)
{
    in_child(backend, raise_and_take);
}

/* Two io_contexts wait for SIGUSR1; two signals: each is taken exactly once. */
static int two_contexts(int backend)
{
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.no_pin = true, .context = &co};
    cor_io_group *g;
    if (cor_io_group_create(&g, 2, &go))
        return 10;
    int count = 0;
    for (unsigned i = 0; i < 2; i++)
        if (COR_RUN_ASYNC(cor_io_group_executor(g, i), NULL, waiter(SIGUSR1, &count)))
            return 11;
    usleep(20 * 1000); /* both waiting */
    kill(getpid(), SIGUSR1);
    for (int i = 0; i < 500 && __atomic_load_n(&count, __ATOMIC_RELAXED) < 1; i++)
        usleep(1000);
    usleep(20 * 1000);
    if (__atomic_load_n(&count, __ATOMIC_RELAXED) != 1)
        return 12; /* one signal, one waiter */
    kill(getpid(), SIGUSR1);
    for (int i = 0; i < 500 && __atomic_load_n(&count, __ATOMIC_RELAXED) < 2; i++)
        usleep(1000);
    if (__atomic_load_n(&count, __ATOMIC_RELAXED) != 2)
        return 13;
    cor_io_group_join(g);
    cor_io_group_destroy(g);
    return 0;
}

IO_TEST(signals, each_signal_reaches_exactly_one_of_several_contexts)
{
    in_child(backend, two_contexts);
}

/* A stopped wait returns -ECANCELED and takes nothing: the signal stays pending. */
static int stopped_wait(int backend)
{
    cor_io_context_options o = {.backend = backend};
    cor_io_context *io;
    if (cor_io_context_create(&io, &o))
        return 20;
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    cor_stop_source_request(&src);
    int got = 0;
    cor_launch_options wo = {.stop = cor_stop_source_token(&src), .on_result = store, .user = &got};
    kill(getpid(), SIGUSR1);
    COR_RUN_ASYNC(cor_io_context_executor(io), &wo, waiter(SIGUSR1, NULL));
    cor_io_context_run(io);
    if (got != -ECANCELED)
        return 21;
    sigset_t pending;
    sigpending(&pending);
    if (!sigismember(&pending, SIGUSR1))
        return 22;
    /* A bad set. */
    sigset_t none;
    sigemptyset(&none);
    struct outcome oc = {0};
    cor_launch_options bo = {.on_result = rec_result, .user = &oc};
    COR_RUN_ASYNC(cor_io_context_executor(io), &bo, cor_signal_wait(&none));
    COR_RUN_ASYNC(cor_io_context_executor(io), &bo, cor_signal_wait(NULL));
    cor_io_context_run(io);
    if (oc.results != 2 || oc.result != -EINVAL)
        return 23;
    if (cor_signals_block(NULL) != -EINVAL)
        return 24;
    cor_io_context_destroy(io);
    return 0;
}

IO_TEST(signals, a_stopped_wait_leaves_the_signal_pending)
{
    in_child(backend, stopped_wait);
}

/* Waits pending when their io_context is destroyed close their signalfds. */
static int destroyed_while_waiting(int backend)
{
    int before = open_fds();
    for (int i = 0; i < 3; i++) {
        cor_io_context_options o = {.backend = backend};
        cor_io_context *io;
        if (cor_io_context_create(&io, &o))
            return 30;
        int got = 0;
        cor_launch_options wo = {.on_result = store, .user = &got};
        COR_RUN_ASYNC(cor_io_context_executor(io), &wo, waiter(SIGUSR1, NULL));
        COR_RUN_ASYNC(cor_io_context_executor(io), &wo, waiter(SIGTERM, NULL));
        if (cor_io_context_poll(io) < 0)
            return 31;
        cor_io_context_destroy(io);
        if (got != 0)
            return 32;
    }
    return open_fds() == before ? 0 : 33;
}

IO_TEST(signals, waits_pending_at_destroy_close_their_signalfds)
{
    in_child(backend, destroyed_while_waiting);
}
