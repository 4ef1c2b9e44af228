/*
 * The io_uring backend: the only file that touches SQEs, CQEs and ring
 * setup. See backend.h for the contract it implements.
 *
 * user_data encoding. An operation's SQE carries the cor_io_op pointer
 * (8-byte aligned); its linked timeout carries the same pointer with bit 0
 * set; a multishot stream's request carries the cor__stream pointer with
 * bit 1 set. Values below UD_LIMIT are internal tags (no pointer is that
 * small). liburing's own timeout tag (LIBURING_UDATA_TIMEOUT) is ignored.
 *
 * Multishot streams. A stream keeps one multishot request (accept, or
 * recv with buffer selection) armed in the kernel and queues its results
 * until COR__IO_STREAM_NEXT ops take them. Those ops never enter the
 * kernel themselves (only their deadline does, as a standalone timeout):
 * they complete through the stash, which run delivers like CQEs.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <liburing.h>

#include "backend.h"
#include "coring/net.h"
#include "internal.h"

enum {
    UD_IGNORE = 0,  /* cancel requests, failed MSG_RING sends            */
    UD_EVENTFD = 2, /* the armed eventfd read: a cross-thread wake-up    */
    UD_MSG = 4,     /* a MSG_RING wake-up from another ring              */
    UD_LIMIT = 4096
};

/* bk_flags */
enum {
    BK_TIMED_OUT = 1u << 0,     /* the linked timeout fired              */
    BK_DEADLINE_FIRST = 1u << 1 /* a TIMEOUT op waits for its deadline   */
};

/* A completion taken off the CQ ring to make room, or a stream op's result, not yet delivered. */
struct stashed {
    uint64_t ud;
    int32_t res;
    uint32_t flags;
};

/* A provided buffer ring (IORING_REGISTER_PBUF_RING). */
struct cor__bufring {
    struct io_uring_buf_ring *ring; /* shared with the kernel (mmap)        */
    size_t map_len;
    char *mem; /* buffer i at mem + i * size           */
    unsigned count, size, mask;
    uint16_t bgid;
    cor__stream **owner; /* the stream that handed buffer i out  */
    cor__stream *parked; /* streams stopped by -ENOBUFS          */
};

/* A result a stream holds for its next waiter. */
struct shot {
    int32_t res;
    uint32_t bid;
};

struct cor__stream {
    cor__backend *b;
    cor__bufring *br; /* receive streams                          */
    int kind, fd;
    bool armed;  /* the multishot request is in the kernel   */
    bool closed; /* the user closed it: free once disarmed   */
    bool parked; /* on br->parked                            */
    bool ended;  /* a receive stream saw its end: end_res    */
    int32_t end_res;
    unsigned held; /* buffers handed out and not yet put back  */
    cor_io_op *waiter;
    struct shot *q; /* circular queue of results                */
    size_t qhead, qlen, qcap;
    cor__stream *next, *prev, *park_next;
};

struct cor__backend {
    struct io_uring ring;
    unsigned features;  /* COR_IO_* in force                          */
    unsigned requested; /* COR_IO_* requested                          */
    int efd;            /* wake-up eventfd                             */
    bool efd_armed;     /* a read on efd is in the ring                */
    bool closing;       /* cancel_all was called: do not re-arm        */
    bool disabled;      /* created with R_DISABLED, not yet enabled    */
    struct stashed *stash;
    size_t stash_head, stash_len, stash_cap;
    cor__stream *streams; /* every stream not yet freed              */
    uint16_t next_bgid;
};

/* The eventfd read's destination. Its value is never used, so one shared
 * word serves every ring and cannot dangle after a context is freed. */
static uint64_t eventfd_sink;

static void stash_push(cor__backend *b, uint64_t ud, int32_t res, uint32_t flags)
{
    if (b->stash_head + b->stash_len == b->stash_cap) {
        if (b->stash_head) {
            memmove(b->stash, b->stash + b->stash_head, b->stash_len * sizeof *b->stash);
            b->stash_head = 0;
        } else {
            size_t cap = b->stash_cap ? b->stash_cap * 2 : 64;
            struct stashed *s = realloc(b->stash, cap * sizeof *s);
            if (!s)
                abort(); /* losing a completion would corrupt a frame */
            b->stash = s;
            b->stash_cap = cap;
        }
    }
    b->stash[b->stash_head + b->stash_len++] = (struct stashed){ud, res, flags};
}

/* Moves every CQE off the ring into the stash, so the kernel can post more. */
static void stash_cqes(cor__backend *b)
{
    struct io_uring_cqe *cqe;
    while (io_uring_peek_cqe(&b->ring, &cqe) == 0 && cqe) {
        stash_push(b, cqe->user_data, cqe->res, cqe->flags);
        io_uring_cqe_seen(&b->ring, cqe);
    }
}

/* Hands the kernel what is in the SQ; retries until it takes it or fails for good. */
static int flush(cor__backend *b)
{
    for (;;) {
        int r = io_uring_submit(&b->ring);
        if (r >= 0)
            return 0;
        if (r == -EINTR)
            continue;
        if (r == -EBUSY || r == -EAGAIN) {
            /* The CQ is full and the kernel wants room first. */
            stash_cqes(b);
            if (io_uring_cq_has_overflow(&b->ring))
                io_uring_get_events(&b->ring);
            stash_cqes(b);
            continue;
        }
        return r;
    }
}

/* Returns n free SQEs' worth of room (flushing if needed), or -errno. */
static int reserve(cor__backend *b, unsigned n)
{
    while (io_uring_sq_space_left(&b->ring) < n) {
        int r;
        if (b->ring.flags & IORING_SETUP_SQPOLL) {
            io_uring_submit(&b->ring);
            r = io_uring_sqring_wait(&b->ring);
            if (r == -EINTR)
                r = 0;
        } else {
            r = flush(b);
        }
        if (r < 0)
            return r;
    }
    return 0;
}

static struct io_uring_sqe *sqe_get(cor__backend *b)
{
    /* reserve() made room, so this cannot fail. */
    return io_uring_get_sqe(&b->ring);
}

static void ts_from_ns(struct __kernel_timespec *ts, int64_t ns)
{
    ts->tv_sec = ns / 1000000000;
    ts->tv_nsec = ns % 1000000000;
}

static void arm_eventfd(cor__backend *b)
{
    if (b->efd_armed || b->closing || reserve(b, 1))
        return;
    struct io_uring_sqe *sqe = sqe_get(b);
    io_uring_prep_read(sqe, b->efd, &eventfd_sink, sizeof eventfd_sink, 0);
    io_uring_sqe_set_data64(sqe, UD_EVENTFD);
    b->efd_armed = true;
}

static unsigned to_features(unsigned setup, unsigned kfeat)
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
    return f;
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
    static const unsigned drop_order[] = {IORING_SETUP_TASKRUN_FLAG, IORING_SETUP_DEFER_TASKRUN,
                                          IORING_SETUP_SINGLE_ISSUER, IORING_SETUP_COOP_TASKRUN};
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
        int r = io_uring_queue_init_params(cfg->sq_entries, &b->ring, &p);
        if (r == 0) {
            b->disabled = (p.flags & IORING_SETUP_R_DISABLED) != 0;
            b->features = to_features(want, p.features);
            if (!(p.features & IORING_FEAT_NODROP) || !(p.features & IORING_FEAT_EXT_ARG)) {
                io_uring_queue_exit(&b->ring);
                return -ENOSYS; /* a kernel that can drop completions is not supported */
            }
            return 0;
        }
        if (r != -EINVAL)
            return r;
        while (drop < sizeof drop_order / sizeof drop_order[0] && !(want & drop_order[drop]))
            drop++;
        if (drop == sizeof drop_order / sizeof drop_order[0])
            return r;
        want &= ~drop_order[drop];
        if (!(want & (IORING_SETUP_COOP_TASKRUN | IORING_SETUP_DEFER_TASKRUN)))
            want &= ~IORING_SETUP_TASKRUN_FLAG;
    }
}

static int uring_create(cor__backend **out, const cor__backend_config *cfg, cor_io_context *io)
{
    cor__backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    b->requested = cfg->flags;
    int rc;
    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0) {
        rc = -errno;
        goto fail_efd;
    }
    rc = setup_ring(b, cfg);
    if (rc)
        goto fail_ring;
    if (!(cfg->flags & COR_IO_WAKE_EVENTFD))
        b->features |= COR_IO_MSG_RING;
    *out = b;
    return 0;
fail_ring:
    close(b->efd);
fail_efd:
    free(b);
    return rc;
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
    arm_eventfd(b);
    return 0;
}

static void stream_free(cor__stream *st);

static void uring_destroy(cor__backend *b)
{
    /* The kernel is done with every stream once the ring is gone. */
    io_uring_queue_exit(&b->ring);
    while (b->streams)
        stream_free(b->streams);
    close(b->efd);
    free(b->stash);
    free(b);
}

static int stream_next_submit(cor__backend *b, cor_io_op *op);

static int uring_submit(cor__backend *b, cor_io_op *op)
{
    if (op->opcode >= COR__IO_OPCODES)
        return -EOPNOTSUPP;
    if (op->opcode == COR__IO_STREAM_NEXT)
        return stream_next_submit(b, op);
    bool linked = op->deadline > 0 && op->opcode != COR__IO_TIMEOUT;
    /* CLOSE is two SQEs: cancel everything on the descriptor, then close. */
    int r = reserve(b, (linked ? 2u : 1u) + (op->opcode == COR__IO_CLOSE));
    if (r)
        return r;
    struct io_uring_sqe *sqe = sqe_get(b);
    /* bk holds the kernel timespec: the kernel reads it at submission
     * (later with SQPOLL), and the op outlives that. */
    struct __kernel_timespec *ts = (struct __kernel_timespec *)op->bk;
    _Static_assert(sizeof op->bk >= sizeof *ts, "bk holds a timespec");
    op->bk_flags = 0;
    switch (op->opcode) {
    case COR__IO_NOP:
        io_uring_prep_nop(sqe);
        break;
    case COR__IO_TIMEOUT: {
        int64_t when = op->u.tmo.when;
        if (op->deadline > 0 && op->deadline < when) {
            when = op->deadline;
            op->bk_flags |= BK_DEADLINE_FIRST;
        }
        ts_from_ns(ts, when);
        io_uring_prep_timeout(sqe, ts, 0, IORING_TIMEOUT_ABS);
        break;
    }
    case COR__IO_READ:
        io_uring_prep_read(sqe, op->fd, op->u.io.addr, op->u.io.len, op->u.io.off);
        break;
    case COR__IO_WRITE:
        io_uring_prep_write(sqe, op->fd, op->u.io.addr, op->u.io.len, op->u.io.off);
        break;
    case COR__IO_RECV:
        io_uring_prep_recv(sqe, op->fd, op->u.io.addr, op->u.io.len, (int)op->op_flags);
        break;
    case COR__IO_SEND:
        io_uring_prep_send(sqe, op->fd, op->u.io.addr, op->u.io.len, (int)op->op_flags);
        break;
    case COR__IO_ACCEPT:
        io_uring_prep_accept(sqe, op->fd, (struct sockaddr *)op->u.io.addr,
                             (socklen_t *)op->u.io.addr2, (int)op->op_flags);
        break;
    case COR__IO_CONNECT:
        io_uring_prep_connect(sqe, op->fd, (const struct sockaddr *)op->u.io.addr,
                              (socklen_t)op->u.io.len);
        break;
    case COR__IO_CLOSE:
        /* A hard link runs the close even when nothing was there to
         * cancel (-ENOENT); the cancel's own completion is ignored. */
        io_uring_prep_cancel_fd(sqe, op->fd, IORING_ASYNC_CANCEL_ALL);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
        sqe->flags |= IOSQE_IO_HARDLINK;
        sqe = sqe_get(b);
        io_uring_prep_close(sqe, op->fd);
        break;
    case COR__IO_POLL:
        io_uring_prep_poll_add(sqe, op->fd, op->op_flags);
        break;
    case COR__IO_READV:
        io_uring_prep_readv(sqe, op->fd, (const struct iovec *)op->u.io.addr, op->u.io.len,
                            op->u.io.off);
        break;
    case COR__IO_WRITEV:
        io_uring_prep_writev(sqe, op->fd, (const struct iovec *)op->u.io.addr, op->u.io.len,
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
        io_uring_prep_openat(sqe, op->fd, (const char *)op->u.io.addr, (int)op->op_flags,
                             op->u.io.len);
        break;
    case COR__IO_STATX:
        io_uring_prep_statx(sqe, op->fd, (const char *)op->u.io.addr, (int)op->op_flags,
                            op->u.io.len, (struct statx *)op->u.io.addr2);
        break;
    }
    /* A registered-file index (the front end allows it only where the kernel does). */
    if (op->fixed)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data(sqe, op);
    op->bk_pending = 1;
    if (linked) {
        sqe->flags |= IOSQE_IO_LINK;
        struct io_uring_sqe *lt = sqe_get(b);
        ts_from_ns(ts, op->deadline);
        io_uring_prep_link_timeout(lt, ts, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(lt, (uint64_t)(uintptr_t)op | 1);
        op->bk_pending = 2;
    }
    return 0;
}

static void stream_next_cancel(cor__backend *b, cor_io_op *op);

static void uring_cancel(cor__backend *b, cor_io_op *op)
{
    if (op->opcode == COR__IO_STREAM_NEXT) {
        stream_next_cancel(b, op);
        return;
    }
    if (reserve(b, 1))
        return;
    struct io_uring_sqe *sqe = sqe_get(b);
    io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)op, 0);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

static void uring_cancel_all(cor__backend *b)
{
    b->closing = true;
    for (cor__stream *st = b->streams; st; st = st->next)
        if (st->waiter)
            stream_next_cancel(b, st->waiter);
    if (reserve(b, 1))
        return;
    struct io_uring_sqe *sqe = sqe_get(b);
    io_uring_prep_cancel64(sqe, 0, IORING_ASYNC_CANCEL_ANY);
    io_uring_sqe_set_data64(sqe, UD_IGNORE);
}

static void on_stream_cqe(cor__backend *b, cor__stream *st, int32_t res, uint32_t flags);
static void stream_timed_out(cor__backend *b, cor_io_op *op);

/* Handles one completion; returns 1 if it completed an operation. */
static long on_cqe(cor__backend *b, uint64_t ud, int32_t res, uint32_t flags)
{
    if (ud < UD_LIMIT || ud == LIBURING_UDATA_TIMEOUT) {
        if (ud == UD_EVENTFD) {
            b->efd_armed = false;
            arm_eventfd(b);
        }
        return 0;
    }
    if (ud & 2) {
        on_stream_cqe(b, (cor__stream *)(uintptr_t)(ud & ~(uint64_t)3), res, flags);
        return 0;
    }
    cor_io_op *op = (cor_io_op *)(uintptr_t)(ud & ~(uint64_t)1);
    if (ud & 1) {
        if (res == -ETIME) {
            op->bk_flags |= BK_TIMED_OUT;
            if (op->opcode == COR__IO_STREAM_NEXT)
                stream_timed_out(b, op);
        }
    } else {
        if (op->opcode == COR__IO_TIMEOUT && res == -ETIME)
            res = (op->bk_flags & BK_DEADLINE_FIRST) ? -ETIME : 0;
        /* The SQEs were consumed long ago: bk may now keep the result. */
        op->bk[0] = (uint64_t)(int64_t)res;
    }
    if (--op->bk_pending)
        return 0;
    res = (int32_t)(int64_t)op->bk[0];
    if (res == -ECANCELED && (op->bk_flags & BK_TIMED_OUT))
        res = -ETIME;
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

static long uring_run(cor__backend *b, int64_t timeout_ns, long max)
{
    struct io_uring *r = &b->ring;
    arm_eventfd(b);
    int rc = 0;
    if (timeout_ns != 0 && !b->stash_len && !io_uring_cq_ready(r)) {
        struct __kernel_timespec ts, *tsp = NULL;
        if (timeout_ns > 0) {
            ts_from_ns(&ts, timeout_ns);
            tsp = &ts;
        }
        if (tsp) {
            struct io_uring_cqe *cqe;
            rc = io_uring_submit_and_wait_timeout(r, &cqe, 1, tsp, NULL);
        } else {
            /* One io_uring_enter: submit and wait for a completion. */
            rc = io_uring_submit_and_wait(r, 1);
        }
    } else if (needs_enter(b)) {
        rc = io_uring_submit_and_get_events(r);
    }
    if (rc == -EBUSY || rc == -EAGAIN)
        stash_cqes(b);
    if (rc == -ETIME || rc == -EINTR || rc == -EBUSY || rc == -EAGAIN || rc > 0)
        rc = 0;
    long n = 0;
    bool flushed = false;
    while (n < max) {
        uint64_t ud;
        int32_t res;
        uint32_t flags;
        if (b->stash_len) {
            struct stashed s = b->stash[b->stash_head];
            b->stash_head++;
            if (--b->stash_len == 0)
                b->stash_head = 0;
            ud = s.ud;
            res = s.res;
            flags = s.flags;
        } else {
            struct io_uring_cqe *cqe;
            if (io_uring_peek_cqe(r, &cqe) || !cqe) {
                /* Completions the CQ had no room for wait in the kernel. */
                if (!flushed && io_uring_cq_has_overflow(r)) {
                    flushed = true;
                    io_uring_get_events(r);
                    continue;
                }
                break;
            }
            ud = cqe->user_data;
            res = cqe->res;
            flags = cqe->flags;
            /* Consume before delivering: the handler may re-enter. */
            io_uring_cqe_seen(r, cqe);
        }
        n += on_cqe(b, ud, res, flags);
    }
    /* Deliver what was there even if entering the kernel failed. */
    return n ? n : rc;
}

static void uring_wake(cor__backend *t, cor__backend *from)
{
    if (from && (t->features & COR_IO_MSG_RING) && reserve(from, 1) == 0) {
        struct io_uring_sqe *sqe = sqe_get(from);
        io_uring_prep_msg_ring(sqe, t->ring.ring_fd, 0, UD_MSG, 0);
        /* Only a failure posts a completion on the sender. */
        sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
        if (flush(from) == 0)
            return;
    }
    uint64_t one = 1;
    while (write(t->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static unsigned uring_features(cor__backend *b)
{
    return b->features;
}

/* ---- provided buffer rings and multishot streams ---------------------------------------- */

static int uring_bufring_create(cor__backend *b, cor__bufring **out, void *mem, unsigned count,
                                unsigned size)
{
    cor__bufring *br = calloc(1, sizeof *br);
    if (!br)
        return -ENOMEM;
    br->owner = calloc(count, sizeof *br->owner);
    br->map_len = (count * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
    /* liburing 2.3 has no io_uring_setup_buf_ring: map the ring, then register it. */
    void *ring =
        mmap(NULL, br->map_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    int rc = -ENOMEM;
    if (!br->owner || ring == MAP_FAILED)
        goto fail;
    br->ring = ring;
    br->mem = mem;
    br->count = count;
    br->size = size;
    br->mask = (unsigned)io_uring_buf_ring_mask(count);
    br->bgid = b->next_bgid++;
    io_uring_buf_ring_init(br->ring);
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)ring;
    reg.ring_entries = count;
    reg.bgid = br->bgid;
    rc = io_uring_register_buf_ring(&b->ring, &reg, 0);
    if (rc) {
        if (rc == -EINVAL || rc == -ENOSYS)
            rc = -EOPNOTSUPP; /* a kernel without buffer rings */
        goto fail;
    }
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(br->ring, br->mem + (size_t)i * size, size, (unsigned short)i,
                              (int)br->mask, (int)i);
    io_uring_buf_ring_advance(br->ring, (int)count);
    *out = br;
    return 0;
fail:
    if (ring != MAP_FAILED)
        munmap(ring, br->map_len);
    free(br->owner);
    free(br);
    return rc;
}

static void stream_arm(cor__stream *st);

static void uring_bufring_put(cor__backend *b, cor__bufring *br, unsigned id)
{
    (void)b;
    cor__stream *o = br->owner[id];
    if (o) {
        o->held--;
        br->owner[id] = NULL;
    }
    io_uring_buf_ring_add(br->ring, br->mem + (size_t)id * br->size, br->size, (unsigned short)id,
                          (int)br->mask, 0);
    io_uring_buf_ring_advance(br->ring, 1);
    /* A buffer is back: the streams -ENOBUFS stopped may go on. */
    cor__stream *p = br->parked;
    br->parked = NULL;
    while (p) {
        cor__stream *next = p->park_next;
        p->parked = false;
        p->park_next = NULL;
        stream_arm(p);
        p = next;
    }
}

static void uring_bufring_destroy(cor__backend *b, cor__bufring *br)
{
    io_uring_unregister_buf_ring(&b->ring, br->bgid);
    munmap(br->ring, br->map_len);
    free(br->owner);
    free(br);
}

static void unpark(cor__stream *st)
{
    if (!st->parked)
        return;
    cor__stream **pp = &st->br->parked;
    while (*pp != st)
        pp = &(*pp)->park_next;
    *pp = st->park_next;
    st->park_next = NULL;
    st->parked = false;
}

/* Arms the multishot request if the stream may take more. */
static void stream_arm(cor__stream *st)
{
    cor__backend *b = st->b;
    if (st->armed || st->closed || st->ended || st->parked || b->closing || reserve(b, 1))
        return;
    struct io_uring_sqe *sqe = sqe_get(b);
    if (st->kind == COR__STREAM_ACCEPT) {
        io_uring_prep_multishot_accept(sqe, st->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } else {
        io_uring_prep_recv_multishot(sqe, st->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = st->br->bgid;
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)st | 2);
    st->armed = true;
}

static void stream_free(cor__stream *st)
{
    cor__backend *b = st->b;
    for (size_t i = 0; i < st->qlen; i++) {
        struct shot *sh = &st->q[(st->qhead + i) % st->qcap];
        if (st->kind == COR__STREAM_ACCEPT && sh->res >= 0)
            close(sh->res);
        else if (st->kind == COR__STREAM_RECV && sh->res > 0)
            uring_bufring_put(b, st->br, sh->bid);
    }
    if (st->br) {
        unpark(st);
        for (unsigned i = 0; st->held && i < st->br->count; i++)
            if (st->br->owner[i] == st) {
                st->br->owner[i] = NULL;
                st->held--;
            }
    }
    if (st->prev)
        st->prev->next = st->next;
    else
        b->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    free(st->q);
    free(st);
}

static void shot_push(cor__stream *st, int32_t res, uint32_t bid)
{
    if (st->qlen == st->qcap) {
        size_t cap = st->qcap ? st->qcap * 2 : 16;
        struct shot *q = malloc(cap * sizeof *q);
        if (!q)
            abort(); /* dropping an accepted descriptor or a buffer would leak it */
        for (size_t i = 0; i < st->qlen; i++)
            q[i] = st->q[(st->qhead + i) % st->qcap];
        free(st->q);
        st->q = q;
        st->qhead = 0;
        st->qcap = cap;
    }
    st->q[(st->qhead + st->qlen++) % st->qcap] = (struct shot){res, bid};
}

/* Completes the waiting op with res through the stash; removes its deadline's timeout. */
static void next_finish(cor__backend *b, cor_io_op *op, int32_t res)
{
    stash_push(b, (uint64_t)(uintptr_t)op, res, 0);
    if (op->bk_pending == 2 && reserve(b, 1) == 0) {
        struct io_uring_sqe *sqe = sqe_get(b);
        io_uring_prep_timeout_remove(sqe, (uint64_t)(uintptr_t)op | 1, 0);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
    }
}

/* Hands the oldest queued result to the waiter. */
static void stream_deliver(cor__stream *st)
{
    cor_io_op *op = st->waiter;
    if (!op || !st->qlen)
        return;
    struct shot sh = st->q[st->qhead];
    st->qhead = (st->qhead + 1) % st->qcap;
    st->qlen--;
    st->waiter = NULL;
    if (st->kind == COR__STREAM_RECV && sh.res > 0) {
        cor_buf *out = (cor_buf *)op->u.io.addr2;
        out->data = st->br->mem + (size_t)sh.bid * st->br->size;
        out->id = sh.bid;
        st->br->owner[sh.bid] = st;
        st->held++;
    }
    next_finish(st->b, op, sh.res);
}

static void on_stream_cqe(cor__backend *b, cor__stream *st, int32_t res, uint32_t flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        st->armed = false;
    bool has_buf = st->kind == COR__STREAM_RECV && (flags & IORING_CQE_F_BUFFER);
    uint32_t bid = has_buf ? flags >> IORING_CQE_BUFFER_SHIFT : 0;
    if (st->closed) {
        if (st->kind == COR__STREAM_ACCEPT && res >= 0)
            close(res);
        if (has_buf)
            uring_bufring_put(b, st->br, bid);
        if (!st->armed)
            stream_free(st);
        return;
    }
    if (st->kind == COR__STREAM_RECV) {
        if (res == -ENOBUFS && !st->armed) {
            /* Out of buffers: wait for one to come back, unless this
             * stream's own user holds some and waits (it must put them back). */
            st->parked = true;
            st->park_next = st->br->parked;
            st->br->parked = st;
            if (st->waiter && !st->qlen && st->held) {
                cor_io_op *op = st->waiter;
                st->waiter = NULL;
                next_finish(b, op, -ENOBUFS);
            }
            return;
        }
        if (res == -ECANCELED && !st->armed && b->closing)
            return;
        if (res <= 0 && !st->armed) {
            st->ended = true;
            st->end_res = res;
        }
    } else if (res == -ECANCELED && !st->armed && b->closing) {
        return;
    }
    shot_push(st, res, bid);
    stream_deliver(st);
}

static int uring_stream_open(cor__backend *b, cor__stream **out, int kind, int fd, cor__bufring *br)
{
    cor__stream *st = calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->b = b;
    st->kind = kind;
    st->fd = fd;
    st->br = br;
    st->next = b->streams;
    if (b->streams)
        b->streams->prev = st;
    b->streams = st;
    stream_arm(st);
    *out = st;
    return 0;
}

static void uring_stream_close(cor__backend *b, cor__stream *st)
{
    st->closed = true;
    if (st->waiter) {
        cor_io_op *op = st->waiter;
        st->waiter = NULL;
        next_finish(b, op, -ECANCELED);
    }
    if (!st->armed) {
        stream_free(st);
        return;
    }
    /* Its queue is dropped now; what the kernel still posts is dropped on arrival. */
    while (st->qlen) {
        struct shot sh = st->q[st->qhead];
        st->qhead = (st->qhead + 1) % st->qcap;
        st->qlen--;
        if (st->kind == COR__STREAM_ACCEPT && sh.res >= 0)
            close(sh.res);
        else if (st->kind == COR__STREAM_RECV && sh.res > 0)
            uring_bufring_put(b, st->br, sh.bid);
    }
    if (reserve(b, 1) == 0) {
        struct io_uring_sqe *sqe = sqe_get(b);
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)st | 2, 0);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
    }
}

static int stream_next_submit(cor__backend *b, cor_io_op *op)
{
    cor__stream *st = (cor__stream *)op->u.io.addr;
    if (st->waiter)
        return -EBUSY;
    op->bk_flags = 0;
    op->bk_pending = 1;
    st->waiter = op;
    if (st->qlen) {
        stream_deliver(st);
        return 0;
    }
    if (st->ended) {
        st->waiter = NULL;
        next_finish(b, op, st->end_res);
        return 0;
    }
    if (st->parked && st->held) {
        st->waiter = NULL;
        next_finish(b, op, -ENOBUFS);
        return 0;
    }
    stream_arm(st);
    if (op->deadline > 0 && reserve(b, 1) == 0) {
        struct __kernel_timespec *ts = (struct __kernel_timespec *)op->bk;
        ts_from_ns(ts, op->deadline);
        struct io_uring_sqe *sqe = sqe_get(b);
        io_uring_prep_timeout(sqe, ts, 0, IORING_TIMEOUT_ABS);
        io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)op | 1);
        op->bk_pending = 2;
    }
    return 0;
}

static void stream_next_cancel(cor__backend *b, cor_io_op *op)
{
    cor__stream *st = (cor__stream *)op->u.io.addr;
    if (st->waiter != op)
        return; /* its result is already on the way */
    st->waiter = NULL;
    next_finish(b, op, -ECANCELED);
}

/* The deadline of a waiting op fired (its timeout's completion was counted). */
static void stream_timed_out(cor__backend *b, cor_io_op *op)
{
    cor__stream *st = (cor__stream *)op->u.io.addr;
    if (st->waiter != op)
        return;
    st->waiter = NULL;
    stash_push(b, (uint64_t)(uintptr_t)op, -ECANCELED, 0);
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
    .bufring_create = uring_bufring_create,
    .bufring_put = uring_bufring_put,
    .bufring_destroy = uring_bufring_destroy,
    .stream_open = uring_stream_open,
    .stream_close = uring_stream_close,
    .files_register = uring_files_register,
    .files_update = uring_files_update,
    .files_unregister = uring_files_unregister,
};
