/*
 * The seam between the io_context front end (src/io_*.c, src/timer.c,
 * src/stream.c) and the I/O backends (ring/uring*.c, ring/epoll.c). The
 * only header the backends include from src/, and the only place both
 * sides meet. Not installed.
 *
 * Division of labour.
 *  Front end: executor and queues, run-loop policy (what counts as work,
 *    stop, the sleeping flag), cross-thread posting, the op state machine,
 *    the stop-token bridge, timers and deadlines (one timer wheel per
 *    context, src/timer.c), registered-file bookkeeping, teardown policy,
 *    fault injection.
 *  Backend: the kernel. It turns an operation (opcode + arguments, all
 *    backend-neutral) into whatever the kernel needs, waits for events up
 *    to a timeout the front end gives, and reports each operation's
 *    completion exactly once through cor__io_complete. It owns wake-up
 *    objects (eventfd, MSG_RING). It knows nothing of frames, executors,
 *    stop tokens or deadlines.
 *
 * Threading. Every call except wake is made on the context's driving
 * thread (the owner). cor__io_complete is called from inside run (and from
 * nothing else), on that thread; it may resume user code, which may call
 * submit, cancel or wake again: run must tolerate that re-entry.
 *
 * Operation contract.
 *  - submit(op): start op. Returns 0 (op is in flight: exactly one
 *    cor__io_complete(op, res) follows, from a later run call, never from
 *    inside submit) or -errno (op never started; the front end completes it
 *    with that result). A full submission queue is flushed and retried,
 *    never reported as an error. Only opcodes whose table row says so reach
 *    a backend (COR__IO_WAIT_FRONT ones never do).
 *  - cancel(op): best effort; op completes (through the normal path) with
 *    -ECANCELED, or with its real result if it won the race. Calling it for
 *    an op that already completed is a bug; twice is harmless.
 *  - cancel_all(): as cancel for every op in flight (teardown).
 *  - The backend may use op->bk, op->bk_pending and op->bk_flags freely
 *    between submit and completion (a STREAM_NEXT hands its piece back in
 *    op->bk[1], op->op_flags and op->len, see stream_open), and touches
 *    nothing else (but see op->fixed).
 *  - op->fixed: op->fd is an index into the registered file table (see
 *    files_register; the front end sets it only for opcodes whose table row
 *    allows it, and only on a backend that provides files_register). An
 *    index with no file completes with -EBADF. A backend that emulates the
 *    table may replace op->fd with the descriptor and clear op->fixed in
 *    submit.
 *
 * Adding an operation: a row in COR__IO_OPS below, its case in the io_uring
 * prep switch (ring/uring.c) and in the epoll syscall switches
 * (ring/epoll.c) -- -Wswitch names both -- and its public constructor with
 * a test. docs/design.md has the checklist.
 */
#ifndef CORING_SRC_IO_SEAM_H
#define CORING_SRC_IO_SEAM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "coring/config.h"

/*
 * How the epoll backend waits for an opcode (and which ops reach a backend
 * at all).
 *  NOW:    completes at once, in user space.
 *  IN/OUT: a readiness wait in that direction (queued per descriptor).
 *  POLL:   waits for the events it names.
 *  SYNC:   runs synchronously on the owner thread (epoll cannot wait on it).
 *  CLOSE:  cancels what waits on the descriptor, then closes it.
 *  STREAM: the next result of a multishot stream (optional backend calls).
 *  FRONT:  handled by the front end alone; never reaches a backend.
 */
enum cor__io_wait {
    COR__IO_WAIT_NOW,
    COR__IO_WAIT_IN,
    COR__IO_WAIT_OUT,
    COR__IO_WAIT_POLL,
    COR__IO_WAIT_SYNC,
    COR__IO_WAIT_CLOSE,
    COR__IO_WAIT_STREAM,
    COR__IO_WAIT_FRONT
};

/*
 * What the front end does beyond passing the result through.
 *  PLAIN:   nothing.
 *  CLEANUP: never canceled: it ignores the stop token and deadlines.
 *  NEWFD:   a positive result is a new descriptor; if a stop request or a
 *           deadline raced the completion, the descriptor is closed and the
 *           op completes with -ECANCELED (or -ETIME), so nothing leaks.
 */
enum cor__io_kind { COR__IO_PLAIN, COR__IO_CLEANUP, COR__IO_NEWFD };

/*
 * Argument shapes (what the op's fields hold; documentation for backends,
 * and the fault seam may shorten a BUF op's len to produce a short count).
 *  NONE  nothing; TIME u.tmo (front end); BUF u.io.addr + len (+ u.io.off
 *  for files, -1: the file position); IOV u.io.addr = iovec array, len =
 *  count (+ u.io.off); MSG u.io.addr = msghdr; ADDR u.io.addr = sockaddr,
 *  len = socklen; PEER u.io.addr = sockaddr out, u.io.addr2 = socklen_t *
 *  in/out; EVENTS op_flags = poll events; HOW op_flags = SHUT_*; FLAGS
 *  op_flags; PATH u.io.addr = path (+ u.io.addr2 = struct statx *, len =
 *  mask or mode); NEXT u.next.
 */
enum cor__io_args {
    COR__IO_ARGS_NONE,
    COR__IO_ARGS_TIME,
    COR__IO_ARGS_BUF,
    COR__IO_ARGS_IOV,
    COR__IO_ARGS_MSG,
    COR__IO_ARGS_ADDR,
    COR__IO_ARGS_PEER,
    COR__IO_ARGS_EVENTS,
    COR__IO_ARGS_HOW,
    COR__IO_ARGS_FLAGS,
    COR__IO_ARGS_PATH,
    COR__IO_ARGS_NEXT
};

/*
 * The opcode table: one row per operation, the single place that says what
 * each one is. Columns: name; takes a descriptor (fd, or a directory
 * descriptor for OPENAT and STATX); accepts a registered-file index
 * (COR_FIXED); how epoll waits for it; its kind; its argument shape.
 * Results are the kernel's (a count or 0 on success, -errno on failure).
 * Descriptors come from the front end already O_NONBLOCK for sockets
 * (ACCEPT asks for SOCK_NONBLOCK | SOCK_CLOEXEC in op_flags); regular files
 * are blocking.
 *
 *   TIMEOUT      0 at u.tmo.when (absolute CLOCK_MONOTONIC ns).
 *   CLOSE        cancels every op of this backend still pending on fd
 *                (they complete with -ECANCELED), then closes it; multishot
 *                streams on fd end as with stream_close.
 *   POLL         completes with the revents.
 *   FSYNC        op_flags: 0 (fsync) or COR__FSYNC_DATA (fdatasync).
 *   OPENAT       completes with the new descriptor; op_flags: O_* flags,
 *                len: mode.
 *   STATX        op_flags: AT_* flags, len: STATX_* mask.
 *   STREAM_NEXT  the next result of a multishot stream (see stream_open).
 */
#define COR__IO_OPS(X)                                                                             \
    /*name        fd fixed wait     kind     args */                                               \
    X(NOP,         0, 0,   NOW,     PLAIN,   NONE)                                                 \
    X(TIMEOUT,     0, 0,   FRONT,   PLAIN,   TIME)                                                 \
    X(READ,        1, 1,   IN,      PLAIN,   BUF)                                                  \
    X(WRITE,       1, 1,   OUT,     PLAIN,   BUF)                                                  \
    X(RECV,        1, 1,   IN,      PLAIN,   BUF)                                                  \
    X(SEND,        1, 1,   OUT,     PLAIN,   BUF)                                                  \
    X(ACCEPT,      1, 1,   IN,      NEWFD,   PEER)                                                 \
    X(CONNECT,     1, 1,   OUT,     PLAIN,   ADDR)                                                 \
    X(CLOSE,       1, 0,   CLOSE,   CLEANUP, NONE)                                                 \
    X(POLL,        1, 1,   POLL,    PLAIN,   EVENTS)                                               \
    X(READV,       1, 1,   IN,      PLAIN,   IOV)                                                  \
    X(WRITEV,      1, 1,   OUT,     PLAIN,   IOV)                                                  \
    X(SENDMSG,     1, 1,   OUT,     PLAIN,   MSG)                                                  \
    X(RECVMSG,     1, 1,   IN,      PLAIN,   MSG)                                                  \
    X(SHUTDOWN,    1, 1,   SYNC,    CLEANUP, HOW)                                                  \
    X(FSYNC,       1, 1,   SYNC,    PLAIN,   FLAGS)                                                \
    X(OPENAT,      1, 0,   SYNC,    NEWFD,   PATH)                                                 \
    X(STATX,       1, 0,   SYNC,    PLAIN,   PATH)                                                 \
    X(STREAM_NEXT, 0, 0,   STREAM,  PLAIN,   NEXT)

enum cor__io_opcode {
#define COR__IO_ENUM(name, fd, fixed, wait, kind, args) COR__IO_##name,
    COR__IO_OPS(COR__IO_ENUM)
#undef COR__IO_ENUM
        COR__IO_OPCODES
};

/* One row of the table. */
struct cor__io_opinfo {
    const char *name;
    uint8_t fd, fixed, wait, kind, args;
};

static const struct cor__io_opinfo cor__io_opinfo[COR__IO_OPCODES] = {
#define COR__IO_ROW(name_, fd_, fixed_, wait_, kind_, args_)                                       \
    [COR__IO_##name_] = {.name = #name_,                                                           \
                         .fd = fd_,                                                                \
                         .fixed = fixed_,                                                          \
                         .wait = COR__IO_WAIT_##wait_,                                             \
                         .kind = COR__IO_##kind_,                                                  \
                         .args = COR__IO_ARGS_##args_},
    COR__IO_OPS(COR__IO_ROW)
#undef COR__IO_ROW
};

/* COR__IO_FSYNC op_flags. */
#define COR__FSYNC_DATA 1u

/* Multishot stream kinds (stream_open). */
enum { COR__STREAM_ACCEPT = 1, COR__STREAM_RECV = 2 };

typedef struct cor__stream cor__stream;
typedef struct cor__bufring cor__bufring;
typedef struct cor__backend cor__backend;
typedef struct cor__io_op cor__io_op;
typedef struct cor__stop_link cor__stop_link;

/*
 * A node of the context's timer wheel (src/timer.c): an operation's
 * deadline or expiry, or a whole task's timeout. Front end only.
 */
typedef struct cor__tnode {
    struct cor__tnode *next, **pprev;
    int64_t when;  /* absolute CLOCK_MONOTONIC ns                      */
    uint16_t slot; /* where the wheel holds it (COR__TNODE_IDLE: nowhere) */
    uint8_t kind;  /* what it is embedded in (COR__TNODE_*)            */
    uint8_t fired; /* it expired                                       */
} cor__tnode;

/* cor__tnode.kind: an operation's (cor__io_op.timer), or a struct cor__timeout's. */
enum { COR__TNODE_OP = 0, COR__TNODE_CALLBACK = 1 };
#define COR__TNODE_IDLE 0xffffu

/*
 * cor__io_op.hints: what the front end knows of an op that changes how a
 * backend may issue it. BOUNDED: a deadline may cut it short, so it must
 * stay cancelable (io_uring: a send is never zero-copy then).
 */
enum { COR__IO_HINT_BOUNDED = 1u << 0 };

/*
 * The state of one operation. The arguments (first part) are what a backend
 * reads; bk* are the backend's; the rest is the front end's. It lives in
 * the op's leaf frame (struct cor_io_await, in the awaiting frame's slot)
 * behind the public, opaque cor_io_op.
 */
struct cor__io_op {
    uint8_t opcode;     /* enum cor__io_opcode                            */
    uint8_t fixed;      /* fd is a registered-file index                  */
    uint8_t bk_pending; /* backend: completions still expected            */
    uint8_t bk_flags;   /* backend flags                                  */
    uint8_t state;      /* front end: new, in flight, done                */
    uint8_t flags;      /* front end flags                                */
    uint8_t hints;      /* front end to backend: COR__IO_HINT_*           */
    uint8_t spare;
    int32_t fd;
    uint32_t op_flags; /* per opcode: msg flags, poll events, O_* ...    */
    uint32_t len;      /* byte count, iovec count, socklen, mode, mask    */
    int32_t fault;     /* front end: the error the fault seam gives a CLOSE */
    union {
        struct { /* BUF, IOV, MSG, ADDR, PEER, PATH                      */
            void *addr;
            void *addr2;
            uint64_t off;
        } io;
        struct {                     /* TIMEOUT (front end)                */
            struct cor_timer *timer; /* the timer object waited on, or NULL */
            union {
                int64_t when;        /* a sleep: its expiry (absolute ns)   */
                struct {             /* a timer wait: the timer's waiters  */
                    cor__io_op *next, *prev;
                } waiters;
            } u;
        } tmo;
        struct {                 /* STREAM_NEXT                           */
            cor__stream *stream; /* the backend's stream                  */
            void *ring;          /* the front end's: its buffer ring      */
            void *out;           /* the front end's: where a buffer goes  */
        } next;
    } u;
    /*
     * Backend-private while the op is in flight. A STREAM_NEXT result > 0
     * of a receive stream comes back with its piece: the buffer id in the
     * low 32 bits of bk[1], its offset in the buffer in op_flags and who
     * holds it in len (see stream_open). The front end uses bk for ops
     * that never reach a backend.
     */
    uint64_t bk[2];
    /* Front end. */
    cor__io_op *next, *prev; /* in-flight list (its stop link's or the context's) */
    cor__stop_link *stop;    /* the stop token's link on the context, or NULL      */
    cor__tnode timer;        /* the deadline (or a TIMEOUT's expiry)                */
};

/*
 * What the front end asks of a backend at creation (sizes already validated
 * and resolved). A create that fails writes why, in words, to why (why_len
 * bytes, NUL-terminated): the front end logs it when it falls back.
 */
typedef struct cor__backend_config {
    unsigned sq_entries;     /* submission queue size                     */
    unsigned cq_entries;     /* completion queue size                     */
    unsigned flags;          /* COR_IO_* ring flags requested             */
    unsigned sqpoll_idle_ms; /* SQPOLL idle time                          */
    unsigned send_zc_min;    /* sends this long or longer go zero-copy (0: never) */
    char *why;               /* out: the reason a create failed            */
    size_t why_len;
} cor__backend_config;

/*
 * Adds v to a counter that one thread writes and any thread may read: a
 * relaxed load and store (plain moves on x86), so readers never see a torn
 * value and the writer pays no locked instruction. Every metrics counter
 * (the front end's and the backends') is updated this way.
 */
#define cor__stat_add(field, v)                                                                    \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (v), __ATOMIC_RELAXED)

/* Counters a backend keeps for the context's metrics (owner thread writes with cor__stat_add,
 * anyone reads with relaxed loads). */
typedef struct cor__backend_stats {
    uint64_t sqes;      /* SQEs handed to the kernel (io_uring) or syscalls made for ops (epoll) */
    uint64_t enters;    /* io_uring_enter / epoll_wait calls                            */
    uint64_t overflows; /* times completions were found waiting in the kernel's overflow list */
    uint64_t buffer_waits; /* multishot receives stopped by an empty buffer ring (-ENOBUFS) */
    uint64_t cq_entries;   /* gauge: the completion queue's size (io_uring)                  */
    uint64_t cq_grows;     /* times the completion queue grew after an overflow (io_uring)   */
} cor__backend_stats;

typedef struct cor__backend_ops {
    const char *name;
    /*
     * Creates a backend in *out. Returns 0 or -errno (for io_uring: -EPERM,
     * -EACCES or -ENOSYS when the kernel refuses io_uring or lacks an opcode
     * or feature the backend needs, which a default-backend context answers
     * by falling back to epoll). Any thread.
     */
    int (*create)(cor__backend **out, const cor__backend_config *cfg);
    /* Called once, on the thread that first drives the context, before any other call but wake. */
    int (*bind)(cor__backend *b);
    /* Frees everything. Nothing is in flight any more, or the owner thread has exited. */
    void (*destroy)(cor__backend *b);
    /* See the operation contract above. */
    int (*submit)(cor__backend *b, cor__io_op *op);
    void (*cancel)(cor__backend *b, cor__io_op *op);
    void (*cancel_all)(cor__backend *b);
    /*
     * Submits what is pending, then waits up to timeout_ns (0: do not
     * wait; < 0: no limit) until at least one event arrives (a completion,
     * or a wake-up), then delivers up to max completions through
     * cor__io_complete. Returns the number delivered (0 after a wake-up or
     * a timeout), or -errno on a fatal error.
     */
    long (*run)(cor__backend *b, int64_t timeout_ns, long max);
    /*
     * Wakes the owner of target out of a blocking run. Any thread. from is
     * the calling thread's own backend of the same kind when it is inside
     * its own run (it may submit on it, e.g. IORING_OP_MSG_RING), else NULL.
     */
    void (*wake)(cor__backend *target, cor__backend *from);
    /* COR_IO_* flags in force. Any thread. */
    unsigned (*features)(cor__backend *b);
    /* The backend's counters (a pointer into it; fields written by the owner). Any thread. */
    const cor__backend_stats *(*stats)(cor__backend *b);

    /*
     * Optional: provided buffer rings and multishot streams. A backend that
     * leaves them NULL makes the public calls return -EOPNOTSUPP (README,
     * "The epoll baseline", lists what each backend does). Owner thread.
     *
     * bufring_create: registers count buffers of size bytes each, buffer i
     *   at mem + i * size (the front end owns mem and frees it after
     *   bufring_destroy). count is a power of two <= 32768. *flags: the
     *   COR_BUF_RING_* flags asked for; on return, those in force. Returns
     *   0 or -errno.
     * bufring_put: the piece of buffer id at offset off, handed to holder,
     *   is free again (the user returned it). Returns 0, or -EINVAL if no
     *   such piece is out (nothing changes then).
     * bufring_destroy: unregisters; no stream uses it any more.
     * stream_open: starts a multishot stream of kind COR__STREAM_* on fd
     *   (br: the buffer ring of a receive stream). Results queue in the
     *   stream until COR__IO_STREAM_NEXT ops take them, in order. A receive
     *   result > 0 comes with a piece of a buffer (a whole buffer unless
     *   the ring is incremental): the backend stores its id in the low 32
     *   bits of op->bk[1], its offset in op->op_flags and its holder (a
     *   value bufring_put takes back) in op->len before completing the op
     *   (plain values: the front end knows where buffer i is). A receive stream that runs out of buffers (-ENOBUFS from the
     *   kernel) parks and resumes by itself once any buffer is put back; a
     *   waiter sees -ENOBUFS only when the stream is parked, nothing is
     *   queued and buffers this stream handed out are still held (its user
     *   must put them back: waiting would deadlock). A stream that ends
     *   (error, end of file) delivers that result; the next waiter re-arms
     *   an accept stream, while a receive stream ended by 0 or an error
     *   keeps delivering it. One waiter at a time (the front end enforces
     *   it; a second submit answers -EBUSY).
     * stream_close: ends s: a waiter completes with -ECANCELED, queued
     *   descriptors are closed, queued buffers go back to the ring; the
     *   backend frees s once the kernel is done with it.
     */
    int (*bufring_create)(cor__backend *b, cor__bufring **out, void *mem, unsigned count,
                          unsigned size, unsigned *flags);
    int (*bufring_put)(cor__backend *b, cor__bufring *br, unsigned id, unsigned off,
                       unsigned holder);
    void (*bufring_destroy)(cor__backend *b, cor__bufring *br);
    int (*stream_open)(cor__backend *b, cor__stream **out, int kind, int fd, cor__bufring *br);
    void (*stream_close)(cor__backend *b, cor__stream *s);

    /*
     * Optional: the registered file table (cor_io_files_*; NULL makes the
     * public calls return -EOPNOTSUPP). The front end validates arguments,
     * the thread, and whether a table exists (it tracks the size n), so
     * these only do the work. The table holds its own reference to each
     * file. Owner thread, or before anyone drives the context.
     * files_register: slot i holds fds[i] (-1: empty); 0 or -errno, nothing
     *   registered on failure.
     * files_update: slot index (< n) holds fd (-1: empty); 0 or -errno.
     * files_unregister: releases the table; 0 or -errno (it is kept).
     *   destroy releases it too.
     */
    int (*files_register)(cor__backend *b, const int *fds, unsigned n);
    int (*files_update)(cor__backend *b, unsigned index, int fd);
    int (*files_unregister)(cor__backend *b);
} cor__backend_ops;

/* The engine (ring/uring.c, ring/uring_stream.c). */
extern const cor__backend_ops cor__uring_backend;

/*
 * The baseline (ring/epoll.c): every opcode that reaches a backend, by
 * readiness; regular-file I/O, fsync, openat, statx and shutdown run
 * synchronously on the owner thread; it leaves the optional buffer-ring and
 * multishot-stream calls NULL (the public calls answer -EOPNOTSUPP) and
 * emulates the registered file table with dups. README, "The epoll
 * baseline".
 */
extern const cor__backend_ops cor__epoll_backend;

/*
 * Implemented by the front end: true if the internal allocation about to be
 * made must fail (a fault plan of kind COR_FAULT_ALLOC, fault.h). Every
 * allocation a backend makes for an operation asks first; the operation
 * then completes with -ENOMEM. Always false in a build without fault
 * injection. Owner thread.
 */
#if COR_FAULT_INJECTION
bool cor__fault_alloc(void);
#else
static inline bool cor__fault_alloc(void)
{
    return false;
}
#endif

/* Implemented by the front end: op has completed with res. Owner thread, inside run. */
void cor__io_complete(cor__io_op *op, int res);

/*
 * Implemented by the front end: run is back from a wait in the kernel that
 * was allowed to block (call it right after the waiting call returns,
 * whatever woke it). The run loop's busy time (the metrics' longest
 * iteration, the stall detector) leaves the wait out, and the wait counts
 * in wakeups_received. Owner thread, inside run.
 */
void cor__io_woke(void);

/*
 * Implemented by the front end: run is about to block in the kernel (call
 * it right before the waiting call; a run that does not wait after all,
 * because completions are ready, does not call it). Until cor__io_woke the
 * loop counts as idle: busy_ns reads 0. Owner thread, inside run.
 */
void cor__io_sleeps(void);

#endif
