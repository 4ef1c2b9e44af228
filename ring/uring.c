/*
 * The io_uring backend, core half: ring setup with flag fallbacks,
 * submission (one SQE per operation; CLOSE is two), completion, the
 * backlog for a full SQ, wake-ups and registered files. Buffer rings and
 * multishot streams are in uring_stream.c. The only files that touch SQEs,
 * CQEs and ring setup. See io_seam.h for the contract.
 *
 * A full SQ is submitted and retried. If the kernel refuses to take more
 * (-EBUSY: its CQ overflowed and completions must be reaped first), the
 * operation waits on the backlog (linked through bk[0], no allocation) and
 * the next run reaps, then submits it; a cancel that finds no room waits
 * the same way. Completions beyond the CQ wait in the kernel's overflow
 * list (IORING_FEAT_NODROP is required) and are flushed as the CQ drains.
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "coring/config.h"
#include "coring/io_context.h"
#include "uring.h"

/* The eventfd read's destination. Its value is never used, so one shared
 * word serves every ring and cannot dangle after a context is freed. */
static uint64_t eventfd_sink;

/* ---- submission ------------------------------------------------------------------------ */

static void forget_ring_fd(cor__backend *b);

/*
 * Which socket fd names: the low half of its inode number (unique among
 * live sockets, and only reused after billions more), or 0 if unknown. A
 * zero-copy send keeps it (high half of bk[1]) so that teardown resets the
 * connection the send went out on, not whatever holds the number by then.
 */
static uint32_t sock_id(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode) ? (uint32_t)st.st_ino : 0;
}

/* A send goes zero-copy: large enough, not under a deadline, on a socket it may go on. */
static bool zc_wanted(const cor__backend *b, const cor__io_op *op)
{
    return b->send_zc_min && op->len >= b->send_zc_min && !(op->bk_flags & BK_PLAIN) &&
           !(op->hints & COR__IO_HINT_BOUNDED) && !op->fixed && op->fd != b->zc_refused_fd;
}

/*
 * A thread other than the one that registered the ring fd is about to
 * enter the kernel (teardown from another thread): the registration means
 * nothing there (or another ring), so enter by the plain fd from now on.
 */
static inline void check_enter_thread(cor__backend *b)
{
    if (__builtin_expect(b->fd_registered, 1) && !pthread_equal(b->fd_thread, pthread_self()))
        forget_ring_fd(b);
}

int cor__uring_reserve(cor__backend *b, unsigned n)
{
    if (io_uring_sq_space_left(&b->ring) < n)
        check_enter_thread(b);
    while (io_uring_sq_space_left(&b->ring) < n) {
        int r;
        cor__stat_add(b->stats.enters, 1);
        if (b->ring.flags & IORING_SETUP_SQPOLL) {
            io_uring_submit(&b->ring);
            r = io_uring_sqring_wait(&b->ring);
        } else {
            r = io_uring_submit(&b->ring);
        }
        if (r < 0 && r != -EINTR)
            return r == -EAGAIN ? -EBUSY : r;
    }
    return 0;
}

static void arm_eventfd(cor__backend *b)
{
    if (b->efd_armed || b->closing || cor__uring_reserve(b, 1))
        return;
    struct io_uring_sqe *sqe = cor__uring_sqe(b);
    io_uring_prep_read(sqe, b->efd, &eventfd_sink, sizeof eventfd_sink, 0);
    io_uring_sqe_set_data64(sqe, UD_EVENTFD);
    b->efd_armed = true;
}

/* Prepares sqe for op (CLOSE takes a second SQE, reserved by the caller). */
static void prep(cor__backend *b, struct io_uring_sqe *sqe, cor__io_op *op)
{
    switch ((enum cor__io_opcode)op->opcode) {
    case COR__IO_NOP:
        io_uring_prep_nop(sqe);
        break;
    case COR__IO_READ:
        io_uring_prep_read(sqe, op->fd, op->u.io.addr, op->len, op->u.io.off);
        break;
    case COR__IO_WRITE:
        io_uring_prep_write(sqe, op->fd, op->u.io.addr, op->len, op->u.io.off);
        break;
    case COR__IO_RECV:
        io_uring_prep_recv(sqe, op->fd, op->u.io.addr, op->len, (int)op->op_flags);
        break;
    case COR__IO_SEND: {
        /* Not under a deadline: a zero-copy send whose bytes went out ends only when the
         * kernel releases the buffer, which a peer that does not read puts off past any.
         * Not on a registered file: teardown could not tell which socket a slot names. */
        uint32_t id = zc_wanted(b, op) ? sock_id(op->fd) : 0;
        if (id) {
            io_uring_prep_send_zc(sqe, op->fd, op->u.io.addr, op->len, (int)op->op_flags, 0);
            op->bk_flags |= BK_ZC;
            op->bk[1] = (uint64_t)id << 32;
        } else {
            io_uring_prep_send(sqe, op->fd, op->u.io.addr, op->len, (int)op->op_flags);
        }
        break;
    }
    case COR__IO_ACCEPT:
        io_uring_prep_accept(sqe, op->fd, (struct sockaddr *)op->u.io.addr,
                             (socklen_t *)op->u.io.addr2, (int)op->op_flags);
        break;
    case COR__IO_CONNECT:
        io_uring_prep_connect(sqe, op->fd, (const struct sockaddr *)op->u.io.addr,
                              (socklen_t)op->len);
        break;
    case COR__IO_CLOSE:
        /* A hard link runs the close even when nothing was there to
         * cancel (-ENOENT); the cancel's own completion is ignored. */
        io_uring_prep_cancel_fd(sqe, op->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
        sqe->flags |= IOSQE_IO_HARDLINK;
        sqe = cor__uring_sqe(b);
        io_uring_prep_close(sqe, op->fd);
        break;
    case COR__IO_POLL:
        io_uring_prep_poll_add(sqe, op->fd, op->op_flags);
        break;
    case COR__IO_READV:
        io_uring_prep_readv(sqe, op->fd, (const struct iovec *)op->u.io.addr, op->len,
                            op->u.io.off);
        break;
    case COR__IO_WRITEV:
        io_uring_prep_writev(sqe, op->fd, (const struct iovec *)op->u.io.addr, op->len,
                             op->u.io.off);
        break;
    case COR__IO_SENDMSG:
        io_uring_prep_sendmsg(sqe, op->fd, (const struct msghdr *)op->u.io.addr, op->op_flags);
        break;
    case COR__IO_RECVMSG:
        io_uring_prep_recvmsg(sqe, op->fd, (struct msghdr *)op->u.io.addr, op->op_flags);
        break;
    case COR__IO_SHUTDOWN:
        io_uring_prep_shutdown(sqe, op->fd, (int)op->op_flags);
        break;
    case COR__IO_FSYNC:
        io_uring_prep_fsync(sqe, op->fd,
                            (op->op_flags & COR__FSYNC_DATA) ? IORING_FSYNC_DATASYNC : 0);
        break;
    case COR__IO_OPENAT:
        io_uring_prep_openat(sqe, op->fd, (const char *)op->u.io.addr, (int)op->op_flags, op->len);
        break;
    case COR__IO_STATX:
        io_uring_prep_statx(sqe, op->fd, (const char *)op->u.io.addr, (int)op->op_flags, op->len,
                            (struct statx *)op->u.io.addr2);
        break;
    case COR__IO_TIMEOUT:     /* the front end's (the timer wheel): never here */
    case COR__IO_STREAM_NEXT: /* uring_stream.c: never here                    */
    case COR__IO_OPCODES:
        io_uring_prep_nop(sqe);
        break;
    }
    /* A registered-file index (the front end allows it only where the kernel does). */
    if (op->fixed)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, op);
}

/* Puts op's SQE(s) in the SQ. Returns 0, -EBUSY (no room until completions are reaped), -errno. */
static int submit_one(cor__backend *b, cor__io_op *op)
{
    int r = cor__uring_reserve(b, op->opcode == COR__IO_CLOSE ? 2u : 1u);
    if (r)
        return r;
    prep(b, cor__uring_sqe(b), op);
    op->bk_pending = 1;
    return 0;
}

/* Unlinks op from list (a walk: the cancel backlog is short and rarely used). */
static void fifo_remove(cor__io_op **head, cor__io_op **last, cor__io_op *op)
{
    cor__io_op *prev = NULL;
    for (cor__io_op *p = *head; p; prev = p, p = (cor__io_op *)(uintptr_t)p->bk[0]) {
        if (p != op)
            continue;
        if (prev)
            prev->bk[0] = op->bk[0];
        else
            *head = (cor__io_op *)(uintptr_t)op->bk[0];
        if (*last == op)
            *last = prev;
        return;
    }
}

static int uring_submit(cor__backend *b, cor__io_op *op)
{
    if (op->opcode == COR__IO_STREAM_NEXT)
        return cor__uring_stream_next(b, op);
    op->bk_flags = 0;
    /* Behind a backlog, an op waits its turn: submission order is kept. */
    int r = b->backlog ? -EBUSY : submit_one(b, op);
    if (r == -EBUSY) {
        op->bk_flags |= BK_BACKLOG;
        op->bk_pending = 1;
        cor__uring_fifo_push(&b->backlog, &b->backlog_last, op);
        return 0;
    }
    return r;
}

static void send_cancel(cor__backend *b, cor__io_op *op)
{
    struct io_uring_sqe *sqe = cor__uring_sqe(b);
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

static void zc_hold(cor__backend *b, cor__io_op *op);

static void uring_cancel(cor__backend *b, cor__io_op *op)
{
    if (op->opcode == COR__IO_STREAM_NEXT) {
        cor__uring_stream_cancel(b, op);
        return;
    }
    if (op->bk_flags & BK_BACKLOG) {
        op->bk_flags |= BK_CANCELED; /* not in the kernel yet: it never will be */
        return;
    }
    uint8_t was = op->bk_flags;
    op->bk_flags |= BK_STOP_ASKED;
    if (was & BK_ZC_SENT) {
        if (!(was & BK_STOP_ASKED))
            zc_hold(b, op); /* its bytes went out: it waits for its notification */
        return;
    }
    if (was & BK_CANCEL_BACKLOG)
        return;
    if (!b->cancels && cor__uring_reserve(b, 1) == 0) {
        send_cancel(b, op);
        return;
    }
    op->bk_flags |= BK_CANCEL_BACKLOG;
    cor__uring_fifo_push(&b->cancels, &b->cancels_last, op);
}

/*
 * Submits what waited for room, in order. A backlogged op whose cancel was
 * asked for never enters the kernel: it completes with -ECANCELED here.
 * Returns the number of operations completed that way.
 */
static long drain_backlog(cor__backend *b)
{
    long n = 0;
    while (b->cancels && cor__uring_reserve(b, 1) == 0) {
        cor__io_op *op = cor__uring_fifo_pop(&b->cancels, &b->cancels_last);
        op->bk_flags &= (uint8_t)~BK_CANCEL_BACKLOG;
        send_cancel(b, op);
    }
    while (b->backlog) {
        cor__io_op *op = b->backlog;
        uint8_t was = op->bk_flags;
        bool canceled = was & BK_CANCELED;
        op->bk_flags = was & BK_PLAIN; /* prep may set its own (BK_ZC) */
        if (!canceled && submit_one(b, op)) {
            op->bk_flags = was;
            break;
        }
        cor__uring_fifo_pop(&b->backlog, &b->backlog_last);
        if (canceled) {
            op->bk_pending = 0;
            cor__io_complete(op, -ECANCELED);
            n++;
        }
    }
    return n;
}

/*
 * Makes the kernel release the buffer of op, a zero-copy send whose bytes
 * went out, by resetting its connection (a connect to AF_UNSPEC: TCP drops
 * what it had queued, and the notification follows). Teardown only: a
 * peer that does not read would otherwise hold the destroy for ever. Only
 * if op's descriptor still names the socket the send went out on (closed
 * or reused meanwhile: op waits for its peer, or for the kernel to drop
 * the orphaned connection), and if the SQ has room.
 */
static void zc_release(cor__backend *b, cor__io_op *op)
{
    static const struct sockaddr unspec = {.sa_family = AF_UNSPEC};
    if (sock_id(op->fd) != (uint32_t)(op->bk[1] >> 32) || cor__uring_reserve(b, 1))
        return;
    struct io_uring_sqe *sqe = cor__uring_sqe(b);
    io_uring_prep_connect(sqe, op->fd, &unspec, sizeof unspec);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

/* op, a zero-copy send whose bytes went out, was asked to stop: it waits on zc_held. */
static void zc_hold(cor__backend *b, cor__io_op *op)
{
    cor__uring_fifo_push(&b->zc_held, &b->zc_held_last, op);
    if (b->closing)
        zc_release(b, op);
}

static void uring_cancel_all(cor__backend *b)
{
    b->closing = true;
    cor__uring_streams_cancel(b);
    for (cor__io_op *op = b->zc_held; op; op = (cor__io_op *)(uintptr_t)op->bk[0])
        zc_release(b, op);
    if (cor__uring_reserve(b, 1))
        return;
    struct io_uring_sqe *sqe = cor__uring_sqe(b);
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

/* ---- completion ------------------------------------------------------------------------ */

/* Handles one completion; returns 1 if it completed an operation. */
/*
 * A SEND_ZC posts its result, then (IORING_CQE_F_MORE) a notification once
 * the kernel no longer reads the buffer; the op completes at the latter,
 * with the former's result, so the caller may reuse the buffer at once.
 * True when op is done (*res set).
 */
static bool zc_done(cor__backend *b, cor__io_op *op, int32_t *res, uint32_t flags)
{
    if (flags & IORING_CQE_F_NOTIF) {
        *res = (int32_t)(uint32_t)op->bk[1];
        if (op->bk_flags & BK_STOP_ASKED)
            fifo_remove(&b->zc_held, &b->zc_held_last, op);
        return true;
    }
    if (!(flags & IORING_CQE_F_MORE))
        return true; /* no notification follows (an error before anything was sent) */
    op->bk[1] = (op->bk[1] & ~(uint64_t)UINT32_MAX) | (uint32_t)*res; /* the socket's id stays */
    op->bk_flags |= BK_ZC_SENT;
    if (op->bk_flags & BK_STOP_ASKED)
        zc_hold(b, op); /* its cancel came too late: the bytes went out */
    return false;
}

/*
 * SEND_ZC refused op's socket before sending anything (the kernel has zero
 * copy for TCP and UDP, not for Unix sockets): the socket is remembered and
 * op goes again as a plain send, through the backlog (submission order
 * kept), unless its cancel was asked for. True when it was requeued.
 */
static bool zc_refused(cor__backend *b, cor__io_op *op)
{
    b->zc_refused_fd = op->fd;
    if (op->bk_flags & BK_STOP_ASKED)
        return false;
    op->bk_flags = BK_PLAIN | BK_BACKLOG;
    op->bk_pending = 1;
    cor__uring_fifo_push(&b->backlog, &b->backlog_last, op);
    return true;
}

static long on_cqe(cor__backend *b, uint64_t ud, int32_t res, uint32_t flags)
{
    if (ud < UD_LIMIT || ud == LIBURING_UDATA_TIMEOUT) {
        if (ud == UD_EVENTFD) {
            b->efd_armed = false;
            arm_eventfd(b);
        }
        return 0;
    }
    if (ud & UD_STREAM) {
        cor__uring_stream_cqe(b, (cor__stream *)(uintptr_t)(ud & ~(uint64_t)3), res, flags);
        return 0;
    }
    cor__io_op *op = (cor__io_op *)(uintptr_t)ud;
    if (__builtin_expect((op->bk_flags & BK_CANCEL_BACKLOG) != 0, 0))
        fifo_remove(&b->cancels, &b->cancels_last, op); /* done before its cancel went out */
    if (__builtin_expect((op->bk_flags & BK_ZC) != 0, 0)) {
        if (!zc_done(b, op, &res, flags))
            return 0;
        if (res == -EOPNOTSUPP) {
            if (zc_refused(b, op))
                return 0;
            res = -ECANCELED; /* stopped, and nothing was sent */
        }
    }
    op->bk_pending = 0;
    op->bk_flags = 0;
    cor__io_complete(op, res);
    return 1;
}

static bool needs_enter(cor__backend *b)
{
    if (io_uring_sq_ready(&b->ring))
        return true;
    unsigned kflags = IO_URING_READ_ONCE(*b->ring.sq.kflags);
    if (kflags & (IORING_SQ_TASKRUN | IORING_SQ_CQ_OVERFLOW))
        return true;
    /* Without the flag the kernel cannot tell us that deferred completion
     * work is waiting, so ask every time. */
    return (b->features & (COR_IO_DEFER_TASKRUN | COR_IO_COOP_TASKRUN)) &&
           !(b->features & COR_IO_TASKRUN_FLAG);
}

/* Submits what is in the SQ and waits up to timeout_ns for a completion (see run). */
static int enter(cor__backend *b, int64_t timeout_ns)
{
    struct io_uring *r = &b->ring;
    int rc = 0;
    if (timeout_ns != 0 && !io_uring_cq_ready(r)) {
        cor__stat_add(b->stats.enters, 1);
        cor__io_sleeps();
        if (timeout_ns > 0) {
            struct __kernel_timespec ts = {.tv_sec = timeout_ns / 1000000000,
                                           .tv_nsec = timeout_ns % 1000000000};
            struct io_uring_cqe *cqe;
            rc = io_uring_submit_and_wait_timeout(r, &cqe, 1, &ts, NULL);
        } else {
            /* One io_uring_enter: submit and wait for a completion. */
            rc = io_uring_submit_and_wait(r, 1);
        }
        cor__io_woke();
    } else if (needs_enter(b)) {
        cor__stat_add(b->stats.enters, 1);
        rc = io_uring_submit_and_get_events(r);
    }
    if (rc == -ETIME || rc == -EINTR || rc == -EBUSY || rc == -EAGAIN || rc > 0)
        rc = 0;
    return rc;
}

static int grow_cq(cor__backend *b);

static long uring_run(cor__backend *b, int64_t timeout_ns, long max)
{
    struct io_uring *r = &b->ring;
    check_enter_thread(b);
    arm_eventfd(b);
    long n = 0;
    if (b->backlog || b->cancels)
        n += drain_backlog(b);
    n += cor__uring_stream_deliver(b, max - n);
    /* Something to deliver, or to submit once the CQ drains: do not block. */
    if (n || b->backlog || b->cancels || b->ready)
        timeout_ns = 0;
    int rc = enter(b, timeout_ns);
    /* Completions the CQ had no room for wait in the kernel's overflow list;
     * peeking flushes them as the CQ drains, and the CQ grows where it can. */
    if (io_uring_cq_has_overflow(r)) {
        cor__stat_add(b->stats.overflows, 1);
        b->grow_wanted = __atomic_load_n(&b->cq_grow, __ATOMIC_RELAXED);
    }
    /* What the CQ holds now, not what the handlers' submissions add meanwhile: the run loop gets
     * its turn (timers, other threads' posts, stop) after every batch. */
    for (unsigned batch = io_uring_cq_ready(r); n < max && batch; batch--) {
        struct io_uring_cqe *cqe;
        if (io_uring_peek_cqe(r, &cqe) || !cqe)
            break;
        uint64_t ud = cqe->user_data;
        int32_t res = cqe->res;
        uint32_t flags = cqe->flags;
        /* Consume before delivering: the handler may re-enter. */
        io_uring_cqe_seen(r, cqe);
        n += on_cqe(b, ud, res, flags);
    }
    /* The stream results those CQEs decided go now: waiting for the next run cost an enter. */
    if (b->ready && n < max)
        n += cor__uring_stream_deliver(b, max - n);
    if (b->grow_wanted) {
        int g = grow_cq(b); /* no CQE is in use here */
        if (g)
            return g;
    }
    /* Deliver what was there even if entering the kernel failed. */
    return n ? n : rc;
}

/* ---- setup ------------------------------------------------------------------------------ */

static unsigned to_features(unsigned setup)
{
    unsigned f = 0;
    if (setup & IORING_SETUP_SINGLE_ISSUER)
        f |= COR_IO_SINGLE_ISSUER;
    if (setup & IORING_SETUP_DEFER_TASKRUN)
        f |= COR_IO_DEFER_TASKRUN;
    if (setup & IORING_SETUP_COOP_TASKRUN)
        f |= COR_IO_COOP_TASKRUN;
    if (setup & IORING_SETUP_TASKRUN_FLAG)
        f |= COR_IO_TASKRUN_FLAG;
    if (setup & IORING_SETUP_SQPOLL)
        f |= COR_IO_SQPOLL;
    if (setup & IORING_SETUP_NO_SQARRAY)
        f |= COR_IO_NO_SQARRAY;
    return f;
}

/*
 * Maps the rings of fd as p describes them into *r, filling it as liburing
 * fills a ring it set up (sq.array: sq_array, memory of ours the kernel does
 * not read). Returns 0 or -ENOMEM (nothing is left mapped then).
 */
static int map_rings(struct io_uring *r, int fd, const struct io_uring_params *p,
                     unsigned *sq_array)
{
    size_t cq_sz = p->cq_off.cqes + p->cq_entries * sizeof(struct io_uring_cqe);
    size_t sq_sz = p->sq_off.array ? p->sq_off.array + p->sq_entries * sizeof(unsigned) : cq_sz;
    if (p->features & IORING_FEAT_SINGLE_MMAP)
        sq_sz = cq_sz = sq_sz > cq_sz ? sq_sz : cq_sz;
    size_t sqes_sz = p->sq_entries * sizeof(struct io_uring_sqe);
    void *sq = mmap(NULL, sq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                    IORING_OFF_SQ_RING);
    void *cq = sq;
    if (!(p->features & IORING_FEAT_SINGLE_MMAP) && sq != MAP_FAILED)
        cq = mmap(NULL, cq_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                  IORING_OFF_CQ_RING);
    void *sqes = mmap(NULL, sqes_sz, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_POPULATE, fd,
                      IORING_OFF_SQES);
    if (sq == MAP_FAILED || cq == MAP_FAILED || sqes == MAP_FAILED) {
        if (sqes != MAP_FAILED)
            munmap(sqes, sqes_sz);
        if (cq != MAP_FAILED && cq != sq)
            munmap(cq, cq_sz);
        if (sq != MAP_FAILED)
            munmap(sq, sq_sz);
        return -ENOMEM;
    }
    char *s = sq, *c = cq;
    r->sq.khead = (unsigned *)(s + p->sq_off.head);
    r->sq.ktail = (unsigned *)(s + p->sq_off.tail);
    r->sq.kring_mask = (unsigned *)(s + p->sq_off.ring_mask);
    r->sq.kring_entries = (unsigned *)(s + p->sq_off.ring_entries);
    r->sq.kflags = (unsigned *)(s + p->sq_off.flags);
    r->sq.kdropped = (unsigned *)(s + p->sq_off.dropped);
    r->sq.array = sq_array;
    r->sq.sqes = sqes;
    r->sq.ring_sz = sq_sz;
    r->sq.ring_ptr = sq;
    r->sq.ring_mask = *r->sq.kring_mask;
    r->sq.ring_entries = *r->sq.kring_entries;
    r->cq.khead = (unsigned *)(c + p->cq_off.head);
    r->cq.ktail = (unsigned *)(c + p->cq_off.tail);
    r->cq.kring_mask = (unsigned *)(c + p->cq_off.ring_mask);
    r->cq.kring_entries = (unsigned *)(c + p->cq_off.ring_entries);
    r->cq.koverflow = (unsigned *)(c + p->cq_off.overflow);
    r->cq.cqes = (struct io_uring_cqe *)(c + p->cq_off.cqes);
    r->cq.kflags = p->cq_off.flags ? (unsigned *)(c + p->cq_off.flags) : NULL;
    r->cq.ring_sz = cq_sz;
    r->cq.ring_ptr = cq;
    r->cq.ring_mask = *r->cq.kring_mask;
    r->cq.ring_entries = *r->cq.kring_entries;
    return 0;
}

/* Unmaps what map_rings mapped (as io_uring_queue_exit does). */
static void unmap_rings(struct io_uring *r)
{
    munmap(r->sq.sqes, r->sq.ring_entries * sizeof(struct io_uring_sqe));
    if (r->cq.ring_ptr && r->cq.ring_ptr != r->sq.ring_ptr)
        munmap(r->cq.ring_ptr, r->cq.ring_sz);
    munmap(r->sq.ring_ptr, r->sq.ring_sz);
}

/*
 * A ring without an SQ index array (IORING_SETUP_NO_SQARRAY, 6.6+): the
 * kernel takes SQEs in ring order, sparing a load and a store per SQE.
 * liburing 2.3 does not know the flag and would fill an array at offset 0
 * of the SQ ring (over its head and tail), so coring sets such a ring up
 * itself: the setup call and map_rings, so that every liburing call
 * (queue_exit included) works on it. Returns 0 or -errno (-EINVAL: a
 * kernel without the flag).
 */
static int queue_init_no_sqarray(cor__backend *b, unsigned entries, struct io_uring_params *p)
{
    struct io_uring *r = &b->ring;
    int fd = (int)syscall(__NR_io_uring_setup, entries, p);
    if (fd < 0)
        return -errno;
    memset(r, 0, sizeof *r);
    b->sq_array = calloc(p->sq_entries, sizeof *b->sq_array);
    if (!b->sq_array || map_rings(r, fd, p, b->sq_array)) {
        free(b->sq_array);
        b->sq_array = NULL;
        close(fd);
        return -ENOMEM;
    }
    r->flags = p->flags;
    r->ring_fd = r->enter_ring_fd = fd;
    r->features = p->features;
    return 0;
}

/*
 * Whether the CQ may grow: the ring is coring's own mapping (NO_SQARRAY),
 * DEFER_TASKRUN (the kernel resizes only those) and the kernel has
 * IORING_REGISTER_RESIZE_RINGS (6.13+). Asked with an argument in the
 * never-mapped first page: a kernel that knows the call fails to read it
 * (-EFAULT), an older one does not know the call (-EINVAL). On the driving
 * thread.
 */
static bool probe_cq_grow(cor__backend *b)
{
    if ((b->features & (COR_IO_NO_SQARRAY | COR_IO_DEFER_TASKRUN)) !=
        (COR_IO_NO_SQARRAY | COR_IO_DEFER_TASKRUN))
        return false;
    return syscall(__NR_io_uring_register, b->ring.ring_fd, IORING_REGISTER_RESIZE_RINGS,
                   (void *)8, 1) < 0 &&
           errno == EFAULT;
}

/*
 * The CQ overflowed: doubles it (up to COR_RING_CQ_MAX) right away, while
 * completions still wait in the kernel's overflow list (they are the
 * context's, not the rings': the next enter flushes them into the new CQ;
 * waiting for the list to empty first never happened under a load that
 * keeps it full). The kernel copies what the rings
 * hold into new ones, SQEs from its head to its tail: so the SQEs prepared
 * since the last submission are made visible first (as liburing's flush
 * does; the next enter submits them). The new rings are mapped before the
 * old ones go. Returns 0, or -ENOMEM if the new rings cannot be mapped
 * (the context cannot go on: its run reports it).
 */
static int grow_cq(cor__backend *b)
{
    struct io_uring *r = &b->ring;
    if (r->sq.sqe_head != r->sq.sqe_tail) {
        r->sq.sqe_head = r->sq.sqe_tail;
        __atomic_store_n(r->sq.ktail, r->sq.sqe_tail, __ATOMIC_RELEASE);
    }
    b->grow_wanted = false;
    unsigned cq = r->cq.ring_entries;
    if (cq >= COR_RING_CQ_MAX)
        return 0;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.sq_entries = r->sq.ring_entries;
    p.cq_entries = cq * 2;
    p.flags = IORING_SETUP_CQSIZE;
    if (syscall(__NR_io_uring_register, r->ring_fd, IORING_REGISTER_RESIZE_RINGS, &p, 1) < 0)
        return 0; /* (from another thread at teardown: -EEXIST) the CQ stays as it is */
    struct io_uring fresh = *r;
    if (map_rings(&fresh, r->ring_fd, &p, b->sq_array))
        return -ENOMEM;
    fresh.sq.sqe_head = r->sq.sqe_head;
    fresh.sq.sqe_tail = r->sq.sqe_tail;
    unmap_rings(r);
    *r = fresh;
    cor__stat_add(b->stats.cq_grows, 1);
    __atomic_store_n(&b->stats.cq_entries, r->cq.ring_entries, __ATOMIC_RELAXED);
    return 0;
}

/* Unmaps and closes the ring (either setup's), and frees what a NO_SQARRAY ring had of ours. */
static void ring_exit(cor__backend *b)
{
    io_uring_queue_exit(&b->ring);
    free(b->sq_array);
    b->sq_array = NULL;
}

/*
 * Sets the ring up with the requested flags, dropping the optional ones one
 * at a time (newest kernel feature first) while the kernel answers -EINVAL.
 * SQPOLL is never dropped silently: it is a deliberate choice.
 */
static int setup_ring(cor__backend *b, const cor__backend_config *cfg)
{
    unsigned want = 0;
    if (cfg->flags & COR_IO_SQPOLL)
        want |= IORING_SETUP_SQPOLL;
    if (cfg->flags & COR_IO_SINGLE_ISSUER)
        want |= IORING_SETUP_SINGLE_ISSUER;
    if ((cfg->flags & COR_IO_DEFER_TASKRUN) && !(want & IORING_SETUP_SQPOLL))
        want |= IORING_SETUP_DEFER_TASKRUN;
    if ((cfg->flags & COR_IO_COOP_TASKRUN) && !(want & IORING_SETUP_SQPOLL))
        want |= IORING_SETUP_COOP_TASKRUN;
    if ((cfg->flags & COR_IO_TASKRUN_FLAG) &&
        (want & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN)))
        want |= IORING_SETUP_TASKRUN_FLAG;
    want |= IORING_SETUP_NO_SQARRAY; /* always asked for: invisible but for the features */
    static const unsigned drop_order[] = {IORING_SETUP_NO_SQARRAY, IORING_SETUP_TASKRUN_FLAG,
                                          IORING_SETUP_DEFER_TASKRUN, IORING_SETUP_SINGLE_ISSUER,
                                          IORING_SETUP_COOP_TASKRUN};
    size_t drop = 0;
    for (;;) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = want | IORING_SETUP_CQSIZE;
        p.cq_entries = cfg->cq_entries;
        /* A SINGLE_ISSUER ring binds to the thread that enables it: the
         * first thread that drives the context, not the one creating it. */
        if (want & IORING_SETUP_SINGLE_ISSUER)
            p.flags |= IORING_SETUP_R_DISABLED;
        if (want & IORING_SETUP_SQPOLL)
            p.sq_thread_idle = cfg->sqpoll_idle_ms ? cfg->sqpoll_idle_ms : 1000;
        int r = want & IORING_SETUP_NO_SQARRAY
                    ? queue_init_no_sqarray(b, cfg->sq_entries, &p)
                    : io_uring_queue_init_params(cfg->sq_entries, &b->ring, &p);
        if (r == 0) {
            b->disabled = (p.flags & IORING_SETUP_R_DISABLED) != 0;
            b->stats.cq_entries = b->ring.cq.ring_entries;
            b->features = to_features(want);
            b->bundles = (p.features & IORING_FEAT_RECVSEND_BUNDLE) != 0;
            if (b->bundles)
                b->features |= COR_IO_RECV_BUNDLE;
            if (!(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_EXT_ARG)) {
                ring_exit(b);
                snprintf(cfg->why, cfg->why_len,
                         "the kernel's io_uring lacks IORING_FEAT_NODROP or EXT_ARG (5.11+)");
                return -ENOSYS; /* a kernel that can drop completions is not supported */
            }
            return 0;
        }
        if (r != -EINVAL) {
            snprintf(cfg->why, cfg->why_len, "io_uring_setup: %s%s", cor_strerror(r),
                     r == -EPERM || r == -EACCES
                         ? " (a seccomp profile, or sysctl kernel.io_uring_disabled)"
                     : r == -ENOSYS ? " (a kernel without io_uring, or a seccomp profile)"
                                    : "");
            return r;
        }
        while (drop < sizeof drop_order / sizeof drop_order[0] && !(want & drop_order[drop]))
            drop++;
        if (drop == sizeof drop_order / sizeof drop_order[0]) {
            snprintf(cfg->why, cfg->why_len, "io_uring_setup: %s", cor_strerror(r));
            return r;
        }
        want &= ~drop_order[drop];
        if (!(want & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN)))
            want &= ~IORING_SETUP_TASKRUN_FLAG;
    }
}

/* The kernel opcode behind each operation (-1: none; CLOSE also needs ASYNC_CANCEL). */
static int kernel_op(enum cor__io_opcode op)
{
    switch (op) {
    case COR__IO_NOP:
        return IORING_OP_NOP;
    case COR__IO_READ:
        return IORING_OP_READ;
    case COR__IO_WRITE:
        return IORING_OP_WRITE;
    case COR__IO_RECV:
        return IORING_OP_RECV;
    case COR__IO_SEND:
        return IORING_OP_SEND;
    case COR__IO_ACCEPT:
        return IORING_OP_ACCEPT;
    case COR__IO_CONNECT:
        return IORING_OP_CONNECT;
    case COR__IO_CLOSE:
        return IORING_OP_CLOSE;
    case COR__IO_POLL:
        return IORING_OP_POLL_ADD;
    case COR__IO_READV:
        return IORING_OP_READV;
    case COR__IO_WRITEV:
        return IORING_OP_WRITEV;
    case COR__IO_SENDMSG:
        return IORING_OP_SENDMSG;
    case COR__IO_RECVMSG:
        return IORING_OP_RECVMSG;
    case COR__IO_SHUTDOWN:
        return IORING_OP_SHUTDOWN;
    case COR__IO_FSYNC:
        return IORING_OP_FSYNC;
    case COR__IO_OPENAT:
        return IORING_OP_OPENAT;
    case COR__IO_STATX:
        return IORING_OP_STATX;
    case COR__IO_TIMEOUT:     /* the front end's                         */
    case COR__IO_STREAM_NEXT: /* multishot streams: probed when opened   */
    case COR__IO_OPCODES:
        break;
    }
    return -1;
}

static bool op_supported(const struct io_uring_probe *p, int op)
{
    return op <= p->last_op && (p->ops[op].flags & IO_URING_OP_SUPPORTED);
}

/*
 * Checks that the kernel has every opcode the backend issues (a seccomp
 * profile may also refuse the probe itself). MSG_RING is optional: without
 * it wake-ups go through the eventfd. Returns 0 or -ENOSYS (why written).
 */
static int probe_ops(cor__backend *b, const cor__backend_config *cfg)
{
    enum { NOPS = 256 };
    struct io_uring_probe *p = calloc(1, sizeof *p + NOPS * sizeof p->ops[0]);
    if (!p) {
        snprintf(cfg->why, cfg->why_len, "no memory for the opcode probe");
        return -ENOMEM;
    }
    int rc = io_uring_register_probe(&b->ring, p, NOPS);
    if (rc < 0) {
        snprintf(cfg->why, cfg->why_len, "the io_uring opcode probe failed: %s", cor_strerror(rc));
        rc = -ENOSYS;
        goto out;
    }
    for (int op = 0; op < COR__IO_OPCODES; op++) {
        int k = kernel_op((enum cor__io_opcode)op);
        if (k >= 0 && !op_supported(p, k)) {
            snprintf(cfg->why, cfg->why_len, "the kernel's io_uring lacks the %s operation",
                     cor__io_opinfo[op].name);
            rc = -ENOSYS;
            goto out;
        }
    }
    if (!op_supported(p, IORING_OP_ASYNC_CANCEL)) {
        snprintf(cfg->why, cfg->why_len, "the kernel's io_uring lacks ASYNC_CANCEL");
        rc = -ENOSYS;
        goto out;
    }
    if (!op_supported(p, IORING_OP_MSG_RING))
        b->no_msg_ring = true;
    b->zc_refused_fd = -1;
    if (cfg->send_zc_min && op_supported(p, IORING_OP_SEND_ZC)) {
        b->send_zc_min = cfg->send_zc_min;
        b->features |= COR_IO_SEND_ZC;
    }
out:
    free(p);
    return rc;
}

static int uring_create(cor__backend **out, const cor__backend_config *cfg)
{
    cor__backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->requested = cfg->flags;
    int rc;
    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0) {
        rc = -errno;
        snprintf(cfg->why, cfg->why_len, "eventfd: %s", cor_strerror(-errno));
        goto fail_efd;
    }
    rc = setup_ring(b, cfg);
    if (rc)
        goto fail_ring;
    rc = probe_ops(b, cfg);
    if (rc)
        goto fail_probe;
    if (!(cfg->flags & COR_IO_WAKE_EVENTFD) && !b->no_msg_ring)
        b->features |= COR_IO_MSG_RING;
    if (cor__uring_bufring_probe_incremental(b))
        b->features |= COR_IO_BUF_INCREMENTAL;
    *out = b;
    return 0;
fail_probe:
    ring_exit(b);
fail_ring:
    close(b->efd);
fail_efd:
    free(b);
    return rc;
}

/*
 * A registered ring fd spares every io_uring_enter the fd lookup (5.18+).
 * The registration belongs to the calling thread, so only a SINGLE_ISSUER
 * ring (one submitting thread for its whole life) takes one, on that
 * thread, here in bind. Without it enters use the plain fd.
 */
static void register_ring_fd(cor__backend *b)
{
    if (!(b->features & COR_IO_SINGLE_ISSUER) || b->fd_registered)
        return;
    b->plain_enter_fd = b->ring.enter_ring_fd;
    b->plain_int_flags = b->ring.int_flags;
    if (io_uring_register_ring_fd(&b->ring) != 1)
        return;
    b->fd_thread = pthread_self();
    /* Not in features: other threads read those (uring_wake) while the owner binds. */
    __atomic_store_n(&b->fd_registered, true, __ATOMIC_RELAXED);
}

/*
 * Entering from a thread other than the registering one (teardown from
 * another thread): that thread's registration cannot be undone from here
 * (the kernel drops it when the thread exits), so the ring goes back to
 * entering by its plain fd.
 */
static void forget_ring_fd(cor__backend *b)
{
    if (!b->fd_registered || pthread_equal(b->fd_thread, pthread_self()))
        return;
    b->ring.enter_ring_fd = b->plain_enter_fd;
    b->ring.int_flags = b->plain_int_flags;
    __atomic_store_n(&b->fd_registered, false, __ATOMIC_RELAXED);
}

static int uring_bind(cor__backend *b)
{
    if (b->disabled) {
        /* liburing 2.3 declares io_uring_enable_rings but does not export it. */
        if (syscall(__NR_io_uring_register, b->ring.ring_fd, IORING_REGISTER_ENABLE_RINGS, NULL,
                    0) < 0)
            return -errno;
        b->disabled = false;
    }
    register_ring_fd(b);
    if (!b->cq_grow_probed) {
        b->cq_grow_probed = true;
        /* Not in features: other threads read those (uring_features). */
        __atomic_store_n(&b->cq_grow, probe_cq_grow(b), __ATOMIC_RELAXED);
    }
    arm_eventfd(b);
    return 0;
}

static void uring_destroy(cor__backend *b)
{
    forget_ring_fd(b);
    /* The kernel is done with every stream once the ring is gone. */
    ring_exit(b);
    cor__uring_streams_free(b);
    close(b->efd);
    free(b);
}

static void uring_wake(cor__backend *t, cor__backend *from)
{
    if (from && (t->features & COR_IO_MSG_RING) && cor__uring_reserve(from, 1) == 0) {
        struct io_uring_sqe *sqe = cor__uring_sqe(from);
        io_uring_prep_msg_ring(sqe, t->ring.ring_fd, 0, UD_MSG, 0);
        /* Only a failure posts a completion on the sender. */
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
        cor__stat_add(from->stats.enters, 1);
        if (io_uring_submit(&from->ring) >= 0)
            return;
    }
    uint64_t one = 1;
    while (write(t->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static unsigned uring_features(cor__backend *b)
{
    bool reg = __atomic_load_n(&b->fd_registered, __ATOMIC_RELAXED);
    bool grow = __atomic_load_n(&b->cq_grow, __ATOMIC_RELAXED);
    return b->features | (reg ? COR_IO_RING_FD_REGISTERED : 0) | (grow ? COR_IO_CQ_GROW : 0);
}

static const cor__backend_stats *uring_stats(cor__backend *b)
{
    return &b->stats;
}

/* ---- registered files ------------------------------------------------------------------ */

static int uring_files_register(cor__backend *b, const int *fds, unsigned n)
{
    /* Not io_uring_register_files: on -EMFILE it raises the process's
     * RLIMIT_NOFILE behind the caller's back and retries. */
    if (syscall(__NR_io_uring_register, b->ring.ring_fd, IORING_REGISTER_FILES, fds, n) < 0)
        return -errno;
    return 0;
}

static int uring_files_update(cor__backend *b, unsigned index, int fd)
{
    int r = io_uring_register_files_update(&b->ring, index, &fd, 1);
    return r < 0 ? r : 0;
}

static int uring_files_unregister(cor__backend *b)
{
    return io_uring_unregister_files(&b->ring);
}

const cor__backend_ops cor__uring_backend = {
    .name = "io_uring",
    .create = uring_create,
    .bind = uring_bind,
    .destroy = uring_destroy,
    .submit = uring_submit,
    .cancel = uring_cancel,
    .cancel_all = uring_cancel_all,
    .run = uring_run,
    .wake = uring_wake,
    .features = uring_features,
    .stats = uring_stats,
    .bufring_create = cor__uring_bufring_create,
    .bufring_put = cor__uring_bufring_put,
    .bufring_destroy = cor__uring_bufring_destroy,
    .stream_open = cor__uring_stream_open,
    .stream_close = cor__uring_stream_close,
    .files_register = uring_files_register,
    .files_update = uring_files_update,
    .files_unregister = uring_files_unregister,
};
