/*
 * The io_context: an execution context that owns one I/O backend (an
 * io_uring by default) and is driven by the one thread that calls run. It is
 * the per-core engine: coroutines launched on its executor run on that
 * thread, their I/O operations are submitted to its ring, and completions
 * resume them there.
 *
 *     cor_io_context *io;
 *     cor_io_context_create(&io, NULL);
 *     COR_RUN_ASYNC(cor_io_context_executor(io), NULL, my_task());
 *     cor_io_context_run(io);        returns once no work is left
 *     cor_io_context_destroy(io);
 *
 * Threading. Any thread may post to an io_context (through its executor),
 * request a stop, or count work. One thread at a time drives it (run,
 * run_one, poll, poll_one, run_for); while the ring is in SINGLE_ISSUER
 * mode (the default), the first thread that drives it becomes its owner
 * for good and other threads are refused with -EPERM. Operations are
 * started and completed on the driving thread.
 *
 * I/O operations are leaf awaitables (struct cor_io_await): their state,
 * including the stop callback and the deadline, lives in the awaiting
 * frame's await slot, so awaiting one allocates nothing. Results are values:
 * the kernel's result passes straight through (-ECANCELED, -ETIME, ...).
 */
#ifndef CORING_IO_CONTEXT_H
#define CORING_IO_CONTEXT_H

#include "coring/common.h"
#include "coring/context.h"
#include "coring/executor.h"
#include "coring/stop.h"
#include "coring/task.h"

COR_BEGIN_DECLS

typedef struct cor_io_context cor_io_context;

/* Backends (cor_io_context_options.backend). */
enum {
    COR_IO_BACKEND_DEFAULT = 0, /* the build default (Meson io_backend; io_uring) */
    COR_IO_BACKEND_URING = 1,   /* io_uring: the engine                        */
    COR_IO_BACKEND_EPOLL = 2    /* epoll: the baseline (README, "The epoll baseline") */
};

/*
 * Ring setup flags (cor_io_context_options.flags, cor_io_context_features).
 * SINGLE_ISSUER, DEFER_TASKRUN, COOP_TASKRUN and TASKRUN_FLAG are requested
 * by default; the kernel may refuse some, and the context then falls back
 * to what it accepts. cor_io_context_features reports what is in force.
 */
enum {
    COR_IO_SINGLE_ISSUER = 1u << 0, /* one submitting thread (the owner)               */
    COR_IO_DEFER_TASKRUN = 1u << 1, /* completions run only when the owner asks        */
    COR_IO_COOP_TASKRUN = 1u << 2,  /* no IPI to interrupt the owner for completions   */
    COR_IO_TASKRUN_FLAG = 1u << 3,  /* the kernel flags pending completion work        */
    COR_IO_SQPOLL = 1u << 4,   /* a kernel thread polls the SQ (option; excludes DEFER_TASKRUN) */
    COR_IO_MSG_RING = 1u << 5, /* wake-ups from other rings use IORING_OP_MSG_RING */
    /* Option bits (not ring flags). */
    COR_IO_NO_DEFAULT_FLAGS = 1u << 16, /* request only the ring flags named here       */
    COR_IO_WAKE_EVENTFD = 1u << 17      /* never wake this context by MSG_RING (eventfd only) */
};

/*
 * Options of cor_io_context_create. Zero means the build default throughout
 * (see <coring/config.h>: COR_RING_SQ_ENTRIES, COR_RING_CQ_ENTRIES).
 *  sq_entries:     submission queue size, COR_RING_SQ_MIN..COR_RING_SQ_MAX
 *                  (rounded up to a power of two by the kernel).
 *  cq_entries:     completion queue size, sq_entries..COR_RING_CQ_MAX
 *                  (0: twice the SQ).
 *  flags:          COR_IO_* bits requested in addition to the defaults
 *                  (COR_IO_SQPOLL, COR_IO_WAKE_EVENTFD, COR_IO_NO_DEFAULT_FLAGS).
 *  sqpoll_idle_ms: idle time before the SQPOLL thread sleeps (0: 1000).
 *  backend:        COR_IO_BACKEND_*.
 */
typedef struct cor_io_context_options {
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned flags;
    unsigned sqpoll_idle_ms;
    int backend;
    unsigned reserved[7];
} cor_io_context_options;

/*
 * Creates an io_context in *out with options o (NULL: all defaults).
 * Returns 0; -EINVAL for a NULL out, sizes out of range, unknown flags, an
 * unknown backend, or COR_IO_SQPOLL with the epoll backend (which ignores
 * the other ring flags); -ENOMEM; or the kernel's
 * error when no ring could be set up (-EPERM for SQPOLL without privilege,
 * -ENOSYS without io_uring). On failure *out is untouched. Any thread.
 */
COR_API int cor_io_context_create(cor_io_context **out, const cor_io_context_options *o);

/*
 * Destroys io: cancels every operation still in the kernel, waits for their
 * completions and destroys their frames (and the frames awaiting them, up to
 * their launch; no handler runs), destroys every queued handle, shuts down
 * the services and frees it. Call it on the owning thread (or on any thread
 * once the owner has exited, or when nothing is in flight) and not while a
 * thread drives io. NULL is a no-op.
 */
COR_API void cor_io_context_destroy(cor_io_context *io);

/* Returns the executor of io ({NULL, NULL} for NULL). Dispatch runs inline only on the thread
 * inside io's run. */
COR_API cor_executor cor_io_context_executor(cor_io_context *io);

/* Returns the execution context of io, or NULL for NULL io. */
COR_API cor_execution_context *cor_io_context_context(cor_io_context *io);

/*
 * Runs handlers (queued handles and completions) until no work is left: the
 * queues are empty, no operation is in flight and no outstanding work
 * (launched tasks, work guards) remains; or until stop. Blocks in the
 * kernel while waiting. Returns the number of handlers run; -EINVAL for
 * NULL; -EBUSY while another thread drives io; -EPERM on a thread that is
 * not io's owner; -ECANCELED if io is stopped (call restart first).
 */
COR_API long cor_io_context_run(cor_io_context *io);

/* As run, but returns after at most one handler. Returns 1, 0 (no work left, or stopped meanwhile),
 * or an error as run. */
COR_API long cor_io_context_run_one(cor_io_context *io);

/* Runs every handler that is ready now, without blocking. Returns the count, or an error as run. */
COR_API long cor_io_context_poll(cor_io_context *io);

/* Runs at most one ready handler without blocking. Returns 1, 0, or an error as run. */
COR_API long cor_io_context_poll_one(cor_io_context *io);

/*
 * As run, but returns once ns nanoseconds have passed (ns >= 0). Returns the
 * number of handlers run, -EINVAL for NULL io or ns < 0, or an error as run.
 */
COR_API long cor_io_context_run_for(cor_io_context *io, int64_t ns);

/*
 * Stops io: a thread inside run returns as soon as the handler it is running
 * returns, and later runs return -ECANCELED until restart. Queued work is
 * kept. Returns 0 or -EINVAL. Any thread.
 */
COR_API int cor_io_context_stop(cor_io_context *io);

/* Clears the stopped state so run may be called again. Returns 0, -EINVAL, or -EBUSY while a thread
 * drives io. */
COR_API int cor_io_context_restart(cor_io_context *io);

/* True if io is stopped (false for NULL). Any thread. */
COR_API bool cor_io_context_stopped(cor_io_context *io);

/* The COR_IO_* ring flags in force (requested and accepted by the kernel); 0 for NULL. Any thread.
 */
COR_API unsigned cor_io_context_features(cor_io_context *io);

/* The COR_IO_* ring flags that were requested at creation; 0 for NULL. Any thread. */
COR_API unsigned cor_io_context_requested(cor_io_context *io);

/*
 * The io_context whose run loop is on the calling thread's stack, or NULL.
 * Operations awaited by a coroutine whose executor is not an io_context
 * are submitted to this one.
 */
COR_API cor_io_context *cor_io_context_current(void);

/* ---- operations ------------------------------------------------------------------------ */

typedef struct cor_io_op cor_io_op;

/*
 * The state of one operation, embedded in its leaf frame. Fields are the
 * library's; a backend reads the arguments, the front end the rest.
 */
struct cor_io_op {
    cor_frame *frame;          /* the leaf frame that holds this op           */
    cor_io_context *io;        /* where it is submitted (NULL: from the env)  */
    cor_stop_callback stop_cb; /* registered while it is in the kernel        */
    int64_t deadline;          /* absolute CLOCK_MONOTONIC ns; 0: none; <0: invalid */
    union {
        struct { /* READ, WRITE, RECV, SEND, ACCEPT, CONNECT ... */
            void *addr;
            void *addr2;
            uint64_t off;
            uint32_t len;
        } io;
        struct {                     /* TIMEOUT                                     */
            int64_t when;            /* absolute CLOCK_MONOTONIC ns                 */
            struct cor_timer *timer; /* the timer waited on, or NULL                */
            cor_io_op *next, *prev;  /* the timer's waiters                         */
        } tmo;
    } u;
    uint64_t bk[2]; /* backend-private                             */
    int32_t fd;
    uint32_t op_flags;     /* per opcode: msg flags, poll events ...      */
    uint8_t opcode;        /* the backend's opcode                        */
    uint8_t state;         /* front end: not started, in flight, done     */
    uint8_t flags;         /* front end flags                             */
    uint8_t cancel_queued; /* a cross-thread cancel request is queued     */
    uint8_t bk_pending;    /* backend: completions still expected         */
    uint8_t bk_flags;      /* backend flags                               */
    uint8_t fixed;         /* fd is a registered-file index (cor_io_op_fixed) */
};

/*
 * The leaf awaitable of every operation in this header: its result is the
 * operation's result (0 or a count on success, -errno on failure).
 */
struct cor_io_await {
    COR_LEAF_PROMISE(int);
    cor_io_op op;
};

/*
 * Awaitable no-op: submits IORING_OP_NOP and completes with 0. For
 * measuring the submission path. On the io_context of the awaiting
 * coroutine (its executor's, else the one running on this thread; -EPERM
 * if none). Returns NULL if the frame could not be allocated.
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
 * cor_clock_now). If the operation has not completed by then it is canceled
 * and completes with -ETIME (with io_uring, an IORING_OP_LINK_TIMEOUT linked
 * to it). A deadline already past when the op is awaited completes it with
 * -ETIME at once, without issuing it. A stop request still completes it
 * with -ECANCELED; an operation that completed before the deadline keeps
 * its own result. Some operations cannot be stopped by the kernel once
 * issued: a regular-file read or write (and fsync, open, statx) runs to
 * completion and keeps its own result even after its deadline. close and
 * shutdown ignore deadlines (cleanup always runs). Returns 0, or -EINVAL
 * for NULL op, an op already started, or abs_ns <= 0 (the op then
 * completes with -EINVAL when awaited).
 */
COR_API int cor_io_op_deadline_at(cor_io_op *op, int64_t abs_ns);

/* As cor_io_op_deadline_at, ns from now (ns >= 0; negative: -EINVAL, and the op completes with
 * -EINVAL). */
COR_API int cor_io_op_deadline_after(cor_io_op *op, int64_t ns);

/*
 * Evaluates an operation expression (a call returning a pointer to a leaf
 * awaitable with a cor_io_op member named op) and gives it a deadline ns
 * from now:  COR_AWAIT(r, COR_DEADLINE_AFTER(cor_nop(), 1000000));
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

/* ---- registered files ------------------------------------------------------------------ */

/*
 * Registered (fixed) files: a table of descriptors registered with io once
 * (io_uring_register_files), so an operation names a slot of the table
 * instead of a descriptor and the kernel skips looking the descriptor up
 * and taking a reference to its file on every operation. It pays off for
 * servers doing many small operations on long-lived sockets; a program
 * with few operations per descriptor gains nothing.
 *
 *     int fds[2] = {conn, -1};                 -1: an empty slot
 *     cor_io_files_register(io, fds, 2);
 *     COR_AWAIT(n, COR_FIXED(cor_recv(0, buf, sizeof buf, 0)));    slot 0
 *
 * The table holds its own reference to every file in it: closing the
 * descriptor does not release the file (a socket stays open, its peer sees
 * no end of stream) until its slot is updated (cor_io_files_update with
 * another descriptor or -1) or the table is unregistered; the descriptor
 * itself may be closed as soon as it is registered. An operation naming an
 * empty slot, or an index past the table (or with no table), completes with
 * -EBADF.
 *
 * On the epoll backend the table is emulated: each slot holds a dup of the
 * descriptor (so closing the original behaves as above, but every slot
 * uses a descriptor of the process) and operations are plain operations on
 * that dup; there is no speed-up. Updating or unregistering a slot there
 * completes the operations still waiting on it with -ECANCELED (with
 * io_uring they go on with the file they started with).
 *
 * Threading: the calls below are made on io's driving thread (from a
 * coroutine or handler running on io), or while no thread drives io by a
 * thread that may drive it (with SINGLE_ISSUER in force, the owner once io
 * was driven); otherwise they return -EPERM. io's destroy unregisters the
 * table.
 */

/* The largest table cor_io_files_register accepts (the kernel may refuse less: -EMFILE past
 * RLIMIT_NOFILE). */
#define COR_IO_FILES_MAX (1u << 20)

/*
 * Registers the n descriptors of fds (copied; -1 leaves a slot empty) as
 * io's file table, slot i holding fds[i]. Returns 0; -EINVAL for NULL io or
 * fds, n == 0, n > COR_IO_FILES_MAX, or a descriptor < -1; -EBUSY if io
 * already has a table (unregister it first); -EPERM off the driving thread
 * (see above); -EBADF if a descriptor is not open; or the kernel's -errno
 * (-EMFILE, -ENOMEM). On failure nothing is registered.
 */
COR_API int cor_io_files_register(cor_io_context *io, const int *fds, unsigned n);

/*
 * Replaces slot index of io's table with fd (-1: empties it), releasing the
 * file the slot held. Operations already started keep the file they started
 * with on io_uring (on epoll they complete with -ECANCELED). Returns 0;
 * -EINVAL for NULL io, index past the table or fd < -1; -ENXIO if io has no
 * table; -EPERM off the driving thread; -EBADF if fd is not open.
 */
COR_API int cor_io_files_update(cor_io_context *io, unsigned index, int fd);

/*
 * Unregisters io's table, releasing every file in it (see update for the
 * operations still using them). Returns 0; -EINVAL for NULL io; -ENXIO if
 * io has no table; -EPERM off the driving thread.
 */
COR_API int cor_io_files_unregister(cor_io_context *io);

/* The number of slots of io's table (0: none, or NULL io). io's driving thread. */
COR_API unsigned cor_io_files_count(cor_io_context *io);

/*
 * Makes op (not yet awaited) name a slot of the registered file table: the
 * descriptor argument it was created with is read as the slot index. Works
 * for every operation on a descriptor: accept (on a registered listener; the
 * accepted connection is a plain descriptor), connect, recv, send, recvfrom,
 * sendto, shutdown, read, write, readv, writev, fsync, fdatasync. Returns 0;
 * -EINVAL for NULL op, an op already started, or an operation without a
 * descriptor to replace (nop, sleeps, open, statx, close, stream_next: the op
 * then completes with -EINVAL when awaited). The composed tasks
 * (cor_send_all, cor_recv_exact, cor_recv_until) take descriptors only.
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

COR_END_DECLS

#endif
