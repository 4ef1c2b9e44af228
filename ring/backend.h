/*
 * The one internal seam between the io_context front end (src/io_context.c)
 * and an I/O backend (ring/uring.c; an epoll baseline later). Not installed.
 *
 * Division of labour.
 *  Front end: executor and queues, run-loop policy (what counts as work,
 *    stop, sleeping flag), cross-thread posting, the stop-token bridge, the
 *    op state machine, timer objects, teardown policy.
 *  Backend: the kernel. It turns a cor_io_op (opcode + arguments, all
 *    backend-neutral) into whatever the kernel needs, waits for events,
 *    and reports each operation's completion exactly once through
 *    cor__io_complete. It owns wake-up objects (eventfd, MSG_RING).
 *
 * Threading. Every call except wake is made on the context's driving thread
 * (the owner). cor__io_complete is called from inside run (and from nothing
 * else), on that thread; it may resume user code, which may call submit,
 * cancel or wake again: run must tolerate that re-entry.
 *
 * Operation contract.
 *  - submit(op): start op. Returns 0 (op is in flight: exactly one
 *    cor__io_complete(op, res) follows, from a later run call, never from
 *    inside submit) or -errno (op never started; the front end completes it
 *    with that result). A full submission queue is flushed and retried,
 *    never reported as an error.
 *  - op->deadline != 0: if op has not completed at that CLOCK_MONOTONIC time
 *    it is canceled and completes with -ETIME. For COR__IO_TIMEOUT the
 *    result is 0 at u.tmo.when, -ETIME if the deadline came first.
 *  - cancel(op): best effort; op completes (through the normal path) with
 *    -ECANCELED, or with its real result if it won the race. Calling it
 *    for an op that already completed is a bug; twice is harmless.
 *  - cancel_all(): as cancel for every op in flight (teardown).
 *  - The backend may use op->bk, op->bk_pending and op->bk_flags freely
 *    between submit and completion, and nothing else of the op.
 */
#ifndef CORING_RING_BACKEND_H
#define CORING_RING_BACKEND_H

#include "coring/io_context.h"

/* Backend-neutral operations; arguments live in cor_io_op. */
enum cor__io_opcode {
    COR__IO_NOP = 0, /* completes with 0                                              */
    COR__IO_TIMEOUT, /* u.tmo.when: absolute CLOCK_MONOTONIC ns; 0 at expiry          */
    COR__IO_READ,    /* fd, u.io.addr (buffer), u.io.len, u.io.off (-1: file position) */
    COR__IO_WRITE,   /* as READ                                                       */
    COR__IO_RECV,    /* fd, u.io.addr, u.io.len, op_flags: MSG_* flags                */
    COR__IO_SEND,    /* as RECV                                                       */
    COR__IO_ACCEPT,  /* fd, u.io.addr (sockaddr *), u.io.addr2 (socklen_t *), op_flags: SOCK_* flags */
    COR__IO_CONNECT, /* fd, u.io.addr (const sockaddr *), u.io.len (socklen_t)        */
    COR__IO_CLOSE,   /* fd                                                            */
    COR__IO_POLL,    /* fd, op_flags: poll events; completes with the revents         */
    COR__IO_OPCODES
};

typedef struct cor__backend cor__backend;

/* What the front end asks of a backend at creation (sizes already validated and resolved). */
typedef struct cor__backend_config {
    unsigned sq_entries;     /* submission queue size                     */
    unsigned cq_entries;     /* completion queue size                     */
    unsigned flags;          /* COR_IO_* ring flags requested             */
    unsigned sqpoll_idle_ms; /* SQPOLL idle time                          */
} cor__backend_config;

typedef struct cor__backend_ops {
    const char *name;
    /* Creates the backend for io in *out. Returns 0 or -errno. Any thread. */
    int (*create)(cor__backend **out, const cor__backend_config *cfg, cor_io_context *io);
    /* Called once, on the thread that first drives the context, before any other call but wake. */
    int (*bind)(cor__backend *b);
    /* Frees everything. Nothing is in flight any more, or the owner thread has exited. */
    void (*destroy)(cor__backend *b);
    /* See the operation contract above. */
    int (*submit)(cor__backend *b, cor_io_op *op);
    void (*cancel)(cor__backend *b, cor_io_op *op);
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
} cor__backend_ops;

extern const cor__backend_ops cor__uring_backend;
extern const cor__backend_ops cor__epoll_backend;

/* Implemented by the front end: op has completed with res. Owner thread, inside run. */
void cor__io_complete(cor_io_op *op, int res);

/*
 * Implemented by the front end, for other op awaitables (sockets, files):
 * allocates a leaf struct cor_io_await for opcode in the current await slot
 * (or the frame allocator) with no arguments set; the caller fills fd,
 * u.io, op_flags. io may be NULL (the awaiting coroutine's io_context).
 * Returns NULL if the frame could not be allocated.
 */
struct cor_io_await *cor__io_await_new(cor_io_context *io, int opcode);

#endif
