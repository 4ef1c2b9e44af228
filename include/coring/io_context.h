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
 * I/O operations (io_op.h, net.h, file.h, timer.h) are leaf awaitables:
 * their state lives in the awaiting frame's await slot, so awaiting one
 * allocates nothing. Registered files: io_files.h; buffer rings and
 * multishot streams: stream.h. Counters and the stall detector: metrics.h;
 * a dump of every suspended coroutine: dump.h.
 *
 * The backend. A context created with COR_IO_BACKEND_DEFAULT uses io_uring
 * and falls back to epoll where the kernel refuses io_uring (a container's
 * seccomp profile, sysctl kernel.io_uring_disabled, a kernel too old or
 * lacking an operation coring issues): the first such fallback of the
 * process is logged once through the log hook (log.h), and
 * cor_io_context_features reports COR_IO_FALLBACK (cor_io_context_get_info:
 * the backend and the reason). A context that names COR_IO_BACKEND_URING
 * gets the kernel's error instead.
 *
 * fork(). A child process inherits a copy of every io_context, but the
 * kernel objects behind it (the ring and its shared memory, the epoll set,
 * the wake-up eventfd) are the parent's, still in the parent's use. The
 * child must leave them alone, and the library makes sure it does: in the
 * child, run, run_one, poll, poll_one, run_for, stop, restart and every
 * call that needs the driving thread return -EPERM; an operation awaited
 * there completes with -EPERM without reaching the kernel; a post from the
 * child never wakes the parent (the handle stays in the child's copy and
 * never runs); a handler that forks inside run makes the child's run
 * return -EPERM after that pass. cor_io_context_destroy in the child frees
 * the child's copy (descriptors, mappings, memory) without canceling,
 * submitting or deregistering anything, and abandons its frames and
 * services. The parent goes on unaffected. A child that needs I/O creates
 * io_contexts of its own.
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
    COR_IO_MSG_RING = 1u << 5, /* features only: wake-ups from other rings use IORING_OP_MSG_RING */
    COR_IO_FALLBACK = 1u << 6, /* features only: io_uring was refused, this context runs on epoll */
    COR_IO_RING_FD_REGISTERED = 1u << 7, /* features only: io_uring_enter uses a registered ring fd */
    COR_IO_SEND_ZC = 1u << 8, /* features only: sends of send_zc_threshold bytes or more go SEND_ZC */
    COR_IO_RECV_BUNDLE = 1u << 9, /* features only: a multishot receive fills several buffers at once */
    COR_IO_BUF_INCREMENTAL = 1u << 10, /* features only: buffer rings may be consumed in pieces (stream.h) */
    COR_IO_NO_SQARRAY = 1u << 11, /* features only: the SQ has no index array (6.6+): SQEs go in ring order */
    COR_IO_CQ_GROW = 1u << 12, /* features only: the CQ doubles after an overflow (6.13+), up to COR_RING_CQ_MAX */
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
 *                  (0: 16 times the SQ, at most COR_RING_CQ_MAX: room for a
 *                  completion per operation of a thousand connections
 *                  without going through the kernel's overflow list).
 *  flags:          COR_IO_* bits requested in addition to the defaults
 *                  (COR_IO_SQPOLL, COR_IO_WAKE_EVENTFD, COR_IO_NO_DEFAULT_FLAGS).
 *  sqpoll_idle_ms: idle time before the SQPOLL thread sleeps (0: 1000).
 *  backend:        COR_IO_BACKEND_*.
 *  send_zc_threshold: sends of at least this many bytes are issued as
 *                  IORING_OP_SEND_ZC (zero-copy: the kernel sends from the
 *                  caller's buffer; the send completes once the kernel no
 *                  longer needs it). 0: the build's (Meson send_zc_threshold);
 *                  -1: never. Used where the kernel has SEND_ZC (6.0+; the
 *                  features say COR_IO_SEND_ZC), plain sends elsewhere and on
 *                  epoll; a socket SEND_ZC refuses (a Unix socket) gets a
 *                  plain send instead (the first one costs a second
 *                  submission). Zero-copy pays off for large sends to a real NIC;
 *                  on loopback the kernel copies anyway (README, figures).
 *                  A send under a deadline (COR_DEADLINE_AFTER/_AT, or a
 *                  stop source's op timeout such as cor_serve's
 *                  idle_timeout) is always a plain one, so its deadline
 *                  holds; so is a send through a registered file
 *                  (COR_FIXED). Any other such send completes (its result,
 *                  or -ECANCELED when stopped before anything went out)
 *                  only once the kernel no longer reads the buffer: bytes
 *                  queued to a peer that does not read keep it, stop or
 *                  not, until the peer reads them or its end closes. The
 *                  io_context's destroy does not wait for that: it resets
 *                  the connection (a connect to AF_UNSPEC; the kernel drops
 *                  the queued bytes and lets the buffer go), provided the
 *                  send's descriptor still names that socket (closed, or
 *                  taken by another file meanwhile: the destroy waits for
 *                  the peer, or for the kernel to drop the connection).
 *  reserved:       zero.
 */
typedef struct cor_io_context_options {
    unsigned sq_entries;
    unsigned cq_entries;
    unsigned flags;
    unsigned sqpoll_idle_ms;
    int backend;
    int send_zc_threshold;
    unsigned reserved[6];
} cor_io_context_options;

/*
 * Creates an io_context in *out with options o (NULL: all defaults).
 * Returns 0; -EINVAL for a NULL out, sizes out of range, unknown flags
 * (feature-only bits included), COR_IO_SQPOLL with COR_IO_DEFER_TASKRUN (it
 * drops the default one), an unknown backend, COR_IO_SQPOLL with the epoll
 * backend (which ignores the other ring flags), or a nonzero reserved
 * field; -ENOMEM; or the kernel's error when no ring could be set up
 * (-EPERM for SQPOLL without privilege or where io_uring is blocked,
 * -ENOSYS without io_uring or an operation coring needs). With
 * the default backend (and no COR_IO_SQPOLL asked for) a refused io_uring
 * (-EPERM, -EACCES, -ENOSYS) is no error: the context runs on epoll (see
 * "The backend" above). On failure *out is untouched. Any thread.
 */
COR_API int cor_io_context_create(cor_io_context **out, const cor_io_context_options *o);

/*
 * Destroys io: cancels every operation still in the kernel, waits for their
 * completions and destroys their frames (and the frames awaiting them, up to
 * their launch; no handler runs), destroys every task launched on io that
 * waits on an async mutex, event, semaphore or channel (it leaves that wait
 * list first, so the object stays usable), destroys every queued handle,
 * shuts down the services and frees it. Call it on the owning thread (or on
 * any thread once the owner has exited, or when nothing is in flight) and
 * not while a thread drives io. Off the owner thread of a ring bound to it
 * (SINGLE_ISSUER) nothing in the kernel can be canceled: sleeps and timer
 * waits (front-end only) end as on the owner, but operations the kernel
 * has not completed (a read on a pipe survives its submitter's exit) are
 * abandoned with their frames, reported in one warning through the log
 * hook. A zero-copy send whose bytes went out and that still waits for the
 * kernel to let its buffer go has its connection reset (send_zc_threshold
 * above). A coroutine awaiting a name lookup (cor_resolve) is destroyed like
 * one waiting on an event, without waiting for the lookup. A coroutine the
 * application sent to another executor with run() must be back first (or
 * its frames destroyed with that executor): its return would reach freed
 * memory. NULL is a no-op. In a forked child it only frees the child's copy
 * (see "fork()" above).
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
 * not io's owner, or in a forked child; -ECANCELED if io is stopped (call
 * restart first).
 */
COR_API long cor_io_context_run(cor_io_context *io);

/* As run, but returns after at most one handler. Returns 1, 0 (no work left, or stopped meanwhile),
 * or an error as run. */
COR_API long cor_io_context_run_one(cor_io_context *io);

/*
 * Runs every handler that is ready now, without blocking: pass after pass
 * until one finds nothing to run, so under a steady flow of completions it
 * returns only when the flow pauses (poll_one, or run_for with a short
 * time, bounds a call). Returns the count, or an error as run.
 */
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
 * kept. Returns 0, -EINVAL, or -EPERM in a forked child. Any thread.
 */
COR_API int cor_io_context_stop(cor_io_context *io);

/* Clears the stopped state so run may be called again. Returns 0, -EINVAL, -EBUSY while a thread
 * drives io, or -EPERM in a forked child. */
COR_API int cor_io_context_restart(cor_io_context *io);

/* True if io is stopped (false for NULL). Any thread. */
COR_API bool cor_io_context_stopped(cor_io_context *io);

/*
 * The COR_IO_* ring flags in force (requested and accepted by the kernel),
 * plus COR_IO_FALLBACK if io was created for the default backend and runs
 * on epoll because io_uring was refused; 0 for NULL. Any thread.
 */
COR_API unsigned cor_io_context_features(cor_io_context *io);

/* What an io_context runs on (cor_io_context_get_info). */
typedef struct cor_io_context_info {
    int backend;        /* COR_IO_BACKEND_URING or COR_IO_BACKEND_EPOLL: the one in use      */
    unsigned features;  /* as cor_io_context_features                                       */
    unsigned requested; /* as cor_io_context_requested                                      */
    int fallback_error; /* 0, or the kernel's refusal (-EPERM, -EACCES, -ENOSYS) that made a
                           default-backend context fall back to epoll                      */
    char fallback_reason[120]; /* "" or that refusal in words                               */
    unsigned reserved[8];
} cor_io_context_info;

/* Fills *out with what io runs on. Returns 0, or -EINVAL for a NULL argument. Any thread. */
COR_API int cor_io_context_get_info(cor_io_context *io, cor_io_context_info *out);

/* The COR_IO_* ring flags that were requested at creation; 0 for NULL. Any thread. */
COR_API unsigned cor_io_context_requested(cor_io_context *io);

/*
 * The io_context whose run loop is on the calling thread's stack, or NULL.
 * Operations awaited by a coroutine whose executor is not an io_context
 * are submitted to this one.
 */
COR_API cor_io_context *cor_io_context_current(void);

COR_END_DECLS

#endif
