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
 *    between submit and completion, and nothing else of the op (but see
 *    op->fixed below).
 *  - op->fixed: op->fd is an index into the registered file table (see
 *    files_register; the front end sets it only for opcodes that take a
 *    descriptor other than CLOSE, OPENAT and STATX, and only on a backend
 *    that provides files_register). An index with no file completes with
 *    -EBADF. A backend that emulates the table may replace op->fd with the
 *    descriptor and clear op->fixed in submit.
 */
#ifndef CORING_RING_BACKEND_H
#define CORING_RING_BACKEND_H

#include "coring/io_context.h"

/*
 * Backend-neutral operations; arguments live in cor_io_op. Results are the
 * kernel's (a count or 0 on success, -errno on failure). Descriptors come
 * from the front end already O_NONBLOCK for sockets (accept is asked for
 * SOCK_NONBLOCK | SOCK_CLOEXEC in op_flags); regular files are blocking.
 */
enum cor__io_opcode {
    COR__IO_NOP = 0, /* completes with 0                                              */
    COR__IO_TIMEOUT, /* u.tmo.when: absolute CLOCK_MONOTONIC ns; 0 at expiry          */
    COR__IO_READ,    /* fd, u.io.addr (buffer), u.io.len, u.io.off (-1: file position) */
    COR__IO_WRITE,   /* as READ                                                       */
    COR__IO_RECV,    /* fd, u.io.addr, u.io.len, op_flags: MSG_* flags                */
    COR__IO_SEND,    /* as RECV                                                       */
    COR__IO_ACCEPT,  /* fd, u.io.addr (sockaddr *), u.io.addr2 (socklen_t *), op_flags: SOCK_* flags
                      */
    COR__IO_CONNECT, /* fd, u.io.addr (const sockaddr *), u.io.len (socklen_t)        */
    /*
     * fd. Cancels every operation of this backend still pending on fd first
     * (they complete with -ECANCELED), then closes it; completes with
     * close's result. Multishot streams on fd end as with stream_close.
     */
    COR__IO_CLOSE,
    COR__IO_POLL,     /* fd, op_flags: poll events; completes with the revents        */
    COR__IO_READV,    /* fd, u.io.addr (const struct iovec *), u.io.len (count), u.io.off (-1:
                         position) */
    COR__IO_WRITEV,   /* as READV                                                     */
    COR__IO_SENDMSG,  /* fd, u.io.addr (const struct msghdr *), op_flags: MSG_* flags  */
    COR__IO_RECVMSG,  /* fd, u.io.addr (struct msghdr *), op_flags: MSG_* flags        */
    COR__IO_SHUTDOWN, /* fd, op_flags: SHUT_RD, SHUT_WR or SHUT_RDWR                   */
    COR__IO_FSYNC,    /* fd, op_flags: 0 (fsync) or COR__FSYNC_DATA (fdatasync)        */
    /* fd: directory (AT_FDCWD), u.io.addr (const char *path), op_flags: O_* flags,
     * u.io.len: mode; completes with the new descriptor. */
    COR__IO_OPENAT,
    /* fd: directory, u.io.addr (const char *path), u.io.addr2 (struct statx *),
     * op_flags: AT_* flags, u.io.len: STATX_* mask. */
    COR__IO_STATX,
    /*
     * The next result of a multishot stream (see stream_open): u.io.addr
     * (cor__stream *). An accept stream completes with a descriptor; a
     * receive stream with the byte count (0: end of stream) and, when it is
     * positive, writes the buffer into *(cor_buf *)u.io.addr2. One waiter at
     * a time per stream (the front end enforces it). Deadlines and cancel
     * work as for every op.
     */
    COR__IO_STREAM_NEXT,
    COR__IO_OPCODES
};

/* COR__IO_FSYNC op_flags. */
#define COR__FSYNC_DATA 1u

/* Multishot stream kinds (stream_open). */
enum { COR__STREAM_ACCEPT = 1, COR__STREAM_RECV = 2 };

typedef struct cor__stream cor__stream;
typedef struct cor__bufring cor__bufring;

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

    /*
     * Optional: provided buffer rings and multishot streams. A backend that
     * leaves them NULL makes the public calls return -EOPNOTSUPP (README,
     * "Sockets and files", lists what each backend does). Owner thread.
     *
     * bufring_create: registers count buffers of size bytes each, buffer i
     *   at mem + i * size (the front end owns mem and frees it after
     *   bufring_destroy). count is a power of two <= 32768. Returns 0 or -errno.
     * bufring_put: buffer id is free again (the user returned it).
     * bufring_destroy: unregisters; no stream uses it any more.
     * stream_open: starts a multishot stream of kind COR__STREAM_* on fd
     *   (br: the buffer ring of a receive stream). Results queue in the
     *   stream until COR__IO_STREAM_NEXT ops take them, in order. A receive
     *   stream that runs out of buffers (-ENOBUFS from the kernel) parks and
     *   resumes by itself once any buffer is put back; a waiter sees -ENOBUFS
     *   only when the stream is parked, nothing is queued and buffers this
     *   stream handed out are still held (its user must put them back:
     *   waiting would deadlock). A stream that ends (error, end
     *   of file) delivers that result; the next waiter re-arms an accept
     *   stream, while a receive stream ended by 0 or an error keeps
     *   delivering it.
     * stream_close: ends s: a waiter completes with -ECANCELED, queued
     *   descriptors are closed, queued buffers go back to the ring; the
     *   backend frees s once the kernel is done with it.
     */
    int (*bufring_create)(cor__backend *b, cor__bufring **out, void *mem, unsigned count,
                          unsigned size);
    void (*bufring_put)(cor__backend *b, cor__bufring *br, unsigned id);
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

extern const cor__backend_ops cor__uring_backend;
/*
 * The baseline (ring/epoll.c): every opcode above, by readiness; regular-file
 * I/O, fsync, openat, statx and shutdown run synchronously on the owner
 * thread; it leaves the optional buffer-ring and multishot-stream calls NULL
 * (the public calls answer -EOPNOTSUPP) and emulates the registered file
 * table with dups. README, "The epoll baseline".
 */
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

/*
 * As cor__io_await_new with size bytes (>= sizeof(struct cor_io_await)) for
 * the frame: the bytes past the struct hold per-op state such as a msghdr.
 */
struct cor_io_await *cor__io_await_new_size(cor_io_context *io, int opcode, size_t size);

/*
 * As cor__io_await_new (io: the awaiting coroutine's) for an op on fd. If
 * valid is false the op is marked as made with bad arguments (as by
 * cor__io_op_invalid).
 */
struct cor_io_await *cor__io_await_fd(int opcode, int fd, bool valid);

/*
 * Marks op as made with bad arguments: awaiting it completes with -EINVAL
 * without reaching the backend, whatever is set on it afterwards (a
 * deadline, COR_FIXED).
 */
void cor__io_op_invalid(cor_io_op *op);

/* The backend of io and its ops (for the optional calls above). Owner thread. */
cor__backend *cor__io_backend(cor_io_context *io, const cor__backend_ops **ops);

#endif
