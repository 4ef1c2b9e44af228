/*
 * Operations on an io_context: the leaf awaitable every I/O operation and
 * timer returns (struct cor_io_await), deadlines, registered-file slots, the
 * two operations that belong to no device (cor_nop, cor_yield) and the one
 * both sockets and files use (cor_close).
 *
 * An operation runs on the io_context of the awaiting coroutine: its
 * executor's, else the one running on the awaiting thread (-EPERM if
 * none). Its state lives in the awaiting frame's await slot: awaiting one
 * allocates nothing. Results are values, not errors: the kernel's result
 * passes straight through (a count or 0 on success, -errno on failure:
 * -ECANCELED when the awaiting coroutine's stop token was stopped, -ETIME at
 * a deadline). An awaitable call that returns NULL (no memory) fails the
 * await with -ENOMEM.
 *
 *     COR_AWAIT(n, COR_DEADLINE_AFTER(cor_recv(fd, buf, len, 0), 5 * 1000000000LL));
 *     if (n == -ETIME) ...  five seconds without data
 */
#ifndef CORING_IO_OP_H
#define CORING_IO_OP_H

#include "coring/common.h"
#include "coring/io_context.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/*
 * The state of one operation, embedded in its leaf frame. Its layout is the
 * library's (it may change between versions; its size is fixed so that an
 * operation fits the await slot); touch it only through the calls below.
 */
typedef struct cor_io_op {
    uint64_t opaque[15];
} cor_io_op;

/*
 * The leaf awaitable of every operation: its result is the operation's
 * result (0 or a count on success, -errno on failure).
 */
struct cor_io_await {
    COR_LEAF_PROMISE(int);
    cor_io_op op;
};

/*
 * Awaitable no-op: completes with 0 after a trip through the backend (an
 * IORING_OP_NOP on io_uring; no syscall on epoll). For measuring the
 * submission path.
 */
COR_API struct cor_io_await *cor_nop(void);

/*
 * Awaitable yield: requeues the awaiting coroutine at the back of its
 * executor's queue (post) and completes with 0 when it runs again. Works on
 * any executor.
 */
COR_API struct cor_io_await *cor_yield(void);

/*
 * Gives op (not yet awaited) a deadline at abs_ns on CLOCK_MONOTONIC (see
 * cor_clock_now in timer.h). If the operation has not completed by then it
 * is canceled and completes with -ETIME. A deadline already past when the
 * op is awaited completes it with -ETIME at once, without issuing it. A stop
 * request still completes it with -ECANCELED; an operation that completed
 * before the deadline keeps its own result. Some operations cannot be
 * stopped once the kernel has started them: a regular-file read or write
 * (and fsync, open, statx) that is running when its deadline fires runs to
 * completion and keeps its own result; one still queued for io_uring's
 * workers is canceled (-ETIME: it was not done). The epoll backend runs
 * those synchronously, so they always keep their result. close and
 * shutdown ignore deadlines (cleanup always runs). An accept or open whose
 * deadline came while the kernel was completing it closes the new
 * descriptor and reports -ETIME. Deadlines live on the io_context's timer
 * wheel: giving one costs no system call, and one that does not fire is
 * never seen by the kernel. Called again before the await, the later call's
 * deadline replaces the earlier one (sooner or later alike). Returns 0, or
 * -EINVAL for NULL op, an op already started, or abs_ns <= 0 (the op then
 * completes with -EINVAL when awaited).
 */
COR_API int cor_io_op_deadline_at(cor_io_op *op, int64_t abs_ns);

/*
 * As cor_io_op_deadline_at, ns (>= 0) after the op starts, when it is
 * awaited. Neither this call nor the start reads the clock (but for a sleep
 * or timer wait, whose start reads it once): the io_context's next pass
 * measures the ns from the time it reads, so the deadline is never early
 * and late by at most that pass; an op that completes before then costs
 * no clock read. ns beyond the clock's range is a deadline that never comes.
 * Returns 0, or -EINVAL for NULL op, an op already started, or ns < 0 (the
 * op then completes with -EINVAL when awaited).
 */
COR_API int cor_io_op_deadline_after(cor_io_op *op, int64_t ns);

/*
 * Evaluates an operation expression (a call returning a pointer to a leaf
 * awaitable with a cor_io_op member named op) and gives it a deadline ns
 * after its start, which is now when the expression is awaited at once:
 * COR_AWAIT(r, COR_DEADLINE_AFTER(cor_nop(), 1000000));
 */
#define COR_DEADLINE_AFTER(op_expr, ns)                                                            \
    __extension__({                                                                                \
        __typeof__(op_expr) cor__dop = (op_expr);                                                  \
        if (cor__dop)                                                                              \
            cor_io_op_deadline_after(&cor__dop->op, (ns));                                         \
        cor__dop;                                                                                  \
    })

/* As COR_DEADLINE_AFTER with an absolute CLOCK_MONOTONIC deadline. */
#define COR_DEADLINE_AT(op_expr, abs_ns)                                                           \
    __extension__({                                                                                \
        __typeof__(op_expr) cor__dop = (op_expr);                                                  \
        if (cor__dop)                                                                              \
            cor_io_op_deadline_at(&cor__dop->op, (abs_ns));                                        \
        cor__dop;                                                                                  \
    })

/*
 * Makes op (not yet awaited) name a slot of the registered file table
 * (io_files.h): the descriptor argument it was created with is read as the
 * slot index. Works for every operation on a descriptor: accept (on a
 * registered listener; the accepted connection is a plain descriptor),
 * connect, recv, send, recvfrom, sendto, shutdown, read, write, readv,
 * writev, fsync, fdatasync, poll. Returns 0; -EINVAL for NULL op, an op
 * already started, or an operation without a descriptor to replace (nop,
 * sleeps, open, statx, close, stream_next: the op then completes with
 * -EINVAL when awaited). The composed tasks (cor_send_all, cor_recv_exact,
 * cor_recv_until) take descriptors only.
 */
COR_API int cor_io_op_fixed(cor_io_op *op);

/*
 * Evaluates an operation expression and makes it use a registered slot:
 * COR_AWAIT(n, COR_FIXED(cor_send(slot, buf, len, 0)));  Combines with
 * COR_DEADLINE_AFTER in either order.
 */
#define COR_FIXED(op_expr)                                                                         \
    __extension__({                                                                                \
        __typeof__(op_expr) cor__fop = (op_expr);                                                  \
        if (cor__fop)                                                                              \
            cor_io_op_fixed(&cor__fop->op);                                                        \
        cor__fop;                                                                                  \
    })

/*
 * Closes fd, a socket or a file: first cancels every operation still pending
 * on it in this io_context (they complete with -ECANCELED), then closes it.
 * Result: 0 or -errno (-EBADF for a descriptor that is not open; -EPERM off
 * an io_context, and fd is then left open). The descriptor is released even
 * when the result is an error other than -EBADF and -EPERM. Closing is
 * cleanup and is never canceled: it ignores the awaiting coroutine's stop
 * token (a stopped token still closes) and any deadline given to it.
 */
COR_API struct cor_io_await *cor_close(int fd);

COR_END_DECLS

#endif
