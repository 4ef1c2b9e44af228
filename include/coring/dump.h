/*
 * Async backtraces and task dumps: where each suspended coroutine waits,
 * and on what.
 *
 * Every await records its source location in the awaiting frame (a pointer
 * to a static record of file, line and function, cor_await_site in task.h,
 * stored where the resume point was stored before: no cost of its own), and
 * every frame knows the child it awaits and the frame that awaits it. So
 * the chain of a suspended coroutine can be printed like a stack, innermost
 * first:
 *
 *     task 2 (launched):
 *       #0 RECV fd 7, no deadline
 *       #1 session at examples/echo_server.c:22
 *       #2 launched by COR_RUN_ASYNC
 *
 * A join (COR_AWAIT_ALL, COR_AWAIT_ANY) prints each child's chain below its
 * line; a timeout (COR_TIMEOUT) shows as its own line. The function is the
 * body's (COR_DEFINE's NAME, without the library's "__body" suffix).
 */
#ifndef CORING_DUMP_H
#define CORING_DUMP_H

#include <stdio.h>

#include "coring/common.h"
#include "coring/io_context.h"
#include "coring/strand.h"
#include "coring/thread_pool.h"

COR_BEGIN_DECLS

/*
 * Prints the await chain through frame f to out: what f awaits, down to the
 * operation or leaf at the bottom, innermost first, then f, then every
 * frame that awaits it, up to its launch. A coroutine may print its own:
 * cor_backtrace(&self->cor_hdr, stderr) (it shows as running, at its last
 * await). Call it on the thread that runs f's chain, or while nothing
 * resumes it. Returns 0, or -EINVAL for a NULL argument.
 */
COR_API int cor_backtrace(const cor_frame *f, FILE *out);

/*
 * Prints to out every coroutine suspended on io, each with its await chain
 * and the operation it waits for (opcode, descriptor, deadline): the tasks
 * launched on io's executor (and on strands over it) and the task-group
 * children spawned there that have not finished, whatever they wait for
 * (an operation, an event, a channel), and every chain that leads to an
 * operation in flight on io (coroutines started elsewhere), each once. The
 * first line sums it up (backend, operations in flight, queued handles,
 * timers).
 *
 * Any thread. The chains are read on io's driving thread between two
 * handlers, so they are consistent: called inside io's run (a coroutine of
 * io, a signal watcher) it prints at once; from another thread while a
 * thread drives io, it posts the dump there and waits for it (as long as
 * the running handler takes: a stalled loop delays it); while nobody
 * drives io, it prints on the calling thread (a run started meanwhile
 * waits for the print to end, then runs). A chain that passes to
 * another execution context (COR_RUN to a thread pool) is followed no
 * further. Returns 0; -EINVAL for a NULL argument; -EPERM in a forked
 * child; -ECANCELED if io was torn down before the dump ran; -ENOMEM.
 */
COR_API int cor_io_context_dump(cor_io_context *io, FILE *out);

/*
 * Prints to out what pool holds: a first line with its workers (how many
 * wait for work), the handles queued and the outstanding work, then every
 * handle queued on it and not yet taken by a worker, in queue order, each
 * with its await chain (a task not started yet, a COR_RUN child and the
 * frames awaiting it, a strand's drainer). The queue is read under the
 * pool's lock, so workers wait while it prints; what the workers are
 * running, and coroutines suspended on something else (an operation: see
 * cor_io_context_dump; an event, a channel), are not listed, nor are the
 * handles queued on a strand over the pool (cor_strand_dump prints those).
 * Any thread. Returns 0, or -EINVAL for a NULL argument.
 */
COR_API int cor_thread_pool_dump(cor_thread_pool *pool, FILE *out);

/*
 * Prints to out what strand s holds: a first line with the handles queued
 * on it or running, then every handle in its queue, oldest first, each with
 * its await chain. The queue is read under a lock that the strand's drainer
 * takes only to pop a handle (not while a handle runs), so a dump works
 * while a handle of s is stuck; the drainer waits for the dump to finish
 * before it takes the next handle. Not listed: the handle running, and the
 * handle that made an idle strand busy (it runs first, as soon as the
 * strand's drainer runs). Over any executor (a thread pool, an io_context).
 * Any thread; not while s is being destroyed. Returns 0, or -EINVAL for a
 * NULL argument.
 */
COR_API int cor_strand_dump(cor_strand *s, FILE *out);

COR_END_DECLS

#endif
