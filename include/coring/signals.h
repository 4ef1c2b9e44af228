/*
 * Waiting for signals on an io_context: the way to handle SIGTERM, SIGINT
 * and SIGHUP (graceful shutdown, reload) in a coring program.
 *
 *     int main(void)
 *     {
 *         sigset_t set;
 *         sigemptyset(&set);
 *         sigaddset(&set, SIGTERM);
 *         sigaddset(&set, SIGINT);
 *         cor_signals_block(&set);      first, before any thread starts
 *         ...
 *     }
 *     ... in a coroutine:
 *         COR_AWAIT(self->sig, cor_signal_wait(&self->set));   SIGTERM or SIGINT
 *         cor_task_group_stop(&self->sessions);
 *
 * A signal a waiter is to receive must be blocked in every thread of the
 * process (otherwise its default action, or a handler, takes it first):
 * block it in main before any thread starts, since threads inherit the
 * mask. A blocked signal stays pending until a waiter takes it; each wait
 * reads one through a signalfd on the awaiting coroutine's io_context, on
 * both backends. Each signal is delivered to exactly one waiter: with
 * several waiters (on one io_context or several), the one whose read the
 * kernel completes first; which one is not specified.
 */
#ifndef CORING_SIGNALS_H
#define CORING_SIGNALS_H

#include <signal.h>

#include "coring/common.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/*
 * Blocks the signals of set in the calling thread (pthread_sigmask), for
 * cor_signal_wait. Returns 0, or -EINVAL for NULL set. Call it in main
 * before any thread is created.
 */
COR_API int cor_signals_block(const sigset_t *set);

struct cor_signal_wait;

/*
 * Awaitable (a task; result int): waits until one of the signals of set is
 * pending and takes it. Result: the signal's number (> 0); -EINVAL for a
 * NULL or empty set; -ECANCELED if the awaiting coroutine's stop token was
 * stopped first (COR_TIMEOUT works too); or the -errno of creating or
 * reading the signalfd (-EMFILE ...). set is copied.
 */
COR_API struct cor_signal_wait *cor_signal_wait(const sigset_t *set);

/* Its frame (fields are the library's). */
struct cor_signal_wait {
    COR_PROMISE(int);
    sigset_t set;
    int fd, r, ok;
    unsigned char info[128]; /* a struct signalfd_siginfo */
};

COR_END_DECLS

#endif
