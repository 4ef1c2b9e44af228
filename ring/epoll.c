/*
 * The epoll backend: the baseline coring is measured against. Readiness is
 * turned into completions behind the same seam as io_uring (src/io_seam.h), so
 * the same programs and tests run on both.
 *
 * How an operation runs. submit tries the non-blocking syscall at once
 * (recv/send with MSG_DONTWAIT, read/write through preadv2/pwritev2 with
 * RWF_NOWAIT, accept4/connect on sockets the front end made O_NONBLOCK). A result,
 * success or error, goes to the ready list and is delivered by the next run
 * (submit never completes inline). -EAGAIN puts the op on its descriptor's
 * queue for its direction (in: READ, RECV, ACCEPT; out: WRITE, SEND,
 * CONNECT; POLL has its own queue), and an epoll event for that descriptor
 * retries the queue head first, in FIFO order, until one answers -EAGAIN.
 * A new op on a descriptor whose queue is not empty joins the queue without
 * trying, so two reads on one socket complete in submission order.
 *
 * Edge-triggered, persistent registration. A descriptor is added to the
 * epoll set (EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET) the first time an
 * op has to wait on it, and stays there until it is closed through the
 * engine (COR__IO_CLOSE deletes it first). Under edge triggering an idle
 * registration costs nothing (an edge with no waiter is dropped; the next
 * op tries its syscall first, so nothing is lost), so no op ever needs an
 * epoll_ctl: the steady state of a connection is one syscall per op plus
 * the batched epoll_wait. Level triggering would need an EPOLL_CTL_MOD each
 * time a queue empties (or it reports an always-writable socket forever),
 * and EPOLLONESHOT a MOD to re-arm every wait: both add a syscall per wait.
 *
 * Timers and deadlines are the front end's (its timer wheel): run waits
 * with epoll_pwait2 (nanosecond timeout; a kernel without it: epoll_wait
 * rounded up to the next millisecond) as long as the front end says.
 *
 * Wake-ups. An eventfd registered edge-triggered: every write is a new
 * edge, so the owner never reads it (one syscall saved per wake-up).
 *
 * Regular files cannot be waited on with epoll (EPERM): READ/WRITE(V) on
 * them run synchronously inside submit. RWF_NOWAIT serves cached data
 * without blocking; when it answers -EAGAIN and epoll refuses the file, the
 * plain blocking pread/pwrite runs on the owner thread. FSYNC, OPENAT,
 * STATX and SHUTDOWN always run synchronously there (sync_op). Multishot
 * streams and provided buffer rings are io_uring's: the optional ops are
 * left NULL, so the public calls answer -EOPNOTSUPP on epoll.
 *
 * Registered files are emulated: each slot holds a dup of the registered
 * descriptor (a reference of its own, as io_uring's table holds), submit
 * turns a slot index into that dup, and releasing a slot closes the dup as
 * COR__IO_CLOSE does (what waits on it completes with -ECANCELED).
 *
 * Which queue an op waits on, and whether it runs synchronously, is its
 * opcode table row's `wait` column (io_seam.h).
 *
 * op->bk[0]: the queue link (a descriptor queue or the ready list).
 * op->bk[1]: bytes already moved by a MSG_WAITALL recv/send. On the ready
 *            list, the result.
 */
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/uio.h>

#include "coring/io_context.h"
#include "io_seam.h"

#ifndef RWF_NOWAIT
#define RWF_NOWAIT 0x00000008
#endif

/* bk_flags */
enum {
    BK_QUEUED = 1u << 0,      /* on its descriptor's queue               */
    BK_READY = 1u << 1,       /* on the ready list, result in bk[1]      */
    BK_CONNECTING = 1u << 2,  /* connect answered EINPROGRESS            */
    BK_BLOCKING_RW = 1u << 3, /* no RWF_NOWAIT here: O_NONBLOCK was set   */
    BK_STREAM = 1u << 4       /* a MSG_WAITALL op is on a stream socket  */
};

enum { Q_IN, Q_OUT, Q_POLL, NQ };

#define WAKE_TAG UINT64_MAX /* the eventfd's epoll data; a descriptor's is its number */

struct opq {
    cor__io_op *head, *tail;
};

struct fd_entry {
    struct opq q[NQ];
    bool registered; /* in the epoll set */
};

struct cor__backend {
    int epfd;
    int efd;
    bool have_pwait2;
    struct opq ready;
    long waiting; /* ops on descriptor queues */
    struct fd_entry *fds;
    size_t nfds;
    struct epoll_event *events;
    int max_events;
    int *files; /* the registered file table: dups, -1 for an empty slot */
    unsigned nfiles;
    cor__backend_stats stats;
};

/* ---- queues ------------------------------------------------------------------------- */

static inline cor__io_op *link_of(cor__io_op *op)
{
    return (cor__io_op *)(uintptr_t)op->bk[0];
}

static void q_push(struct opq *q, cor__io_op *op)
{
    op->bk[0] = 0;
    if (q->tail)
        q->tail->bk[0] = (uint64_t)(uintptr_t)op;
    else
        q->head = op;
    q->tail = op;
}

static cor__io_op *q_pop(struct opq *q)
{
    cor__io_op *op = q->head;
    if (op) {
        q->head = link_of(op);
        if (!q->head)
            q->tail = NULL;
    }
    return op;
}

/* Unlinks op from q (descriptor queues are short: a walk is cheaper than a second link). */
static void q_remove(struct opq *q, cor__io_op *op)
{
    cor__io_op *prev = NULL;
    for (cor__io_op *p = q->head; p; prev = p, p = link_of(p)) {
        if (p != op)
            continue;
        if (prev)
            prev->bk[0] = op->bk[0];
        else
            q->head = link_of(op);
        if (q->tail == op)
            q->tail = prev;
        return;
    }
}

static int queue_of(const cor__io_op *op)
{
    switch ((enum cor__io_wait)cor__io_opinfo[op->opcode].wait) {
    case COR__IO_WAIT_OUT:
        return Q_OUT;
    case COR__IO_WAIT_POLL:
        return Q_POLL;
    case COR__IO_WAIT_IN:
    case COR__IO_WAIT_NOW:
    case COR__IO_WAIT_SYNC:
    case COR__IO_WAIT_CLOSE:
    case COR__IO_WAIT_STREAM:
    case COR__IO_WAIT_FRONT:
        break;
    }
    return Q_IN;
}

static struct fd_entry *entry_of(cor__backend *b, int fd)
{
    if ((size_t)fd < b->nfds)
        return &b->fds[fd];
    size_t n = b->nfds ? b->nfds : 64;
    while (n <= (size_t)fd)
        n *= 2;
    struct fd_entry *t = cor__fault_alloc() ? NULL : realloc(b->fds, n * sizeof *t);
    if (!t)
        return NULL;
    memset(t + b->nfds, 0, (n - b->nfds) * sizeof *t);
    b->fds = t;
    b->nfds = n;
    return &t[fd];
}

/* ---- completion ----------------------------------------------------------------------- */

/* Takes op off every wait structure and queues its result for the next delivery. */
static void make_ready(cor__backend *b, cor__io_op *op, int res)
{
    if (op->bk_flags & BK_QUEUED) {
        q_remove(&b->fds[op->fd].q[queue_of(op)], op);
        op->bk_flags &= (uint8_t)~BK_QUEUED;
        b->waiting--;
    }
    op->bk_flags |= BK_READY;
    op->bk[1] = (uint64_t)(int64_t)res;
    q_push(&b->ready, op);
}

/* ---- the syscalls --------------------------------------------------------------------- */

static int set_nonblock(int fd)
{
    int fl = fcntl(fd, F_GETFL);
    if (fl < 0)
        return -errno;
    if (!(fl & O_NONBLOCK) && fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0)
        return -errno;
    return 0;
}

static bool is_socket(int fd)
{
    struct stat st;
    return fstat(fd, &st) == 0 && S_ISSOCK(st.st_mode);
}

/*
 * read/write without blocking: preadv2/pwritev2 with RWF_NOWAIT (the raw
 * syscall, so an offset of -1 means the file position everywhere). A pipe
 * ignores the offset and a socket takes only 0, as with io_uring. A file that does not
 * support RWF_NOWAIT is made O_NONBLOCK once and uses plain read/write.
 */
static int rw_nowait(cor__io_op *op, bool write)
{
    struct iovec one = {op->u.io.addr, op->len};
    const struct iovec *v = &one;
    int cnt = 1;
    if (op->opcode == COR__IO_READV || op->opcode == COR__IO_WRITEV) {
        v = (const struct iovec *)op->u.io.addr;
        cnt = (int)op->len;
    }
    long off = (long)op->u.io.off;
    long nr = write ? SYS_pwritev2 : SYS_preadv2;
    for (;;) {
        long r;
        if (op->bk_flags & BK_BLOCKING_RW) {
            if (off == -1)
                r = write ? (long)writev(op->fd, v, cnt) : (long)readv(op->fd, v, cnt);
            else
                r = write ? (long)pwritev(op->fd, v, cnt, off) : (long)preadv(op->fd, v, cnt, off);
        } else {
            r = syscall(nr, op->fd, v, cnt, off, off == -1 ? -1L : 0L, RWF_NOWAIT);
        }
        if (r >= 0)
            return (int)r;
        int e = errno;
        if (e == EINTR)
            continue;
        /* A stream ignores the offset, as io_uring does; a socket takes only 0 (as there). */
        if (e == ESPIPE && off != -1 && (off == 0 || !is_socket(op->fd))) {
            off = -1;
            continue;
        }
        if (e == EOPNOTSUPP && !(op->bk_flags & BK_BLOCKING_RW)) {
            int rc = set_nonblock(op->fd);
            if (rc)
                return rc;
            op->bk_flags |= BK_BLOCKING_RW;
            continue;
        }
        return e == EWOULDBLOCK ? -EAGAIN : -e;
    }
}

/* A regular file: epoll cannot wait on it, so the blocking call runs here. */
static int rw_sync(cor__io_op *op, bool write)
{
    op->bk_flags |= BK_BLOCKING_RW;
    return rw_nowait(op, write);
}

static int sock_io(cor__io_op *op, bool send_)
{
    bool all = op->op_flags & MSG_WAITALL;
    int flags = (int)(op->op_flags & ~(uint32_t)MSG_WAITALL) | MSG_DONTWAIT;
    uint32_t done = (uint32_t)op->bk[1];
    for (;;) {
        char *p = (char *)op->u.io.addr;
        if (done) /* never an offset to NULL (a zero-length op may have no buffer) */
            p += done;
        size_t len = op->len - done;
        ssize_t r = send_ ? send(op->fd, p, len, flags) : recv(op->fd, p, len, flags);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0) {
            int e = errno == EWOULDBLOCK ? EAGAIN : errno;
            /* MSG_WAITALL: what was moved counts; the error comes next time. */
            if (done && e != EAGAIN)
                return (int)done;
            return -e;
        }
        done += (uint32_t)r;
        /* MSG_WAITALL keeps going until len, EOF or an error, on a stream
         * only (as io_uring): a datagram is one message. */
        if (!all || r == 0 || done == op->len)
            return (int)done;
        if (!(op->bk_flags & BK_STREAM)) {
            int type = 0;
            socklen_t tl = sizeof type;
            if (getsockopt(op->fd, SOL_SOCKET, SO_TYPE, &type, &tl) < 0 ||
                (type != SOCK_STREAM && type != SOCK_SEQPACKET))
                return (int)done;
            op->bk_flags |= BK_STREAM;
        }
        op->bk[1] = done;
    }
}

/*
 * Runs op's syscall once more. ev: the epoll events that prompted the retry
 * (0 at submission). Returns the result, or -EAGAIN to keep waiting.
 */
static int try_op(cor__io_op *op, uint32_t ev)
{
    int r;
    switch ((enum cor__io_opcode)op->opcode) {
    case COR__IO_READ:
    case COR__IO_READV:
        return rw_nowait(op, false);
    case COR__IO_WRITE:
    case COR__IO_WRITEV:
        return rw_nowait(op, true);
    case COR__IO_RECV:
    case COR__IO_SEND:
        return sock_io(op, op->opcode == COR__IO_SEND);
    case COR__IO_RECVMSG:
    case COR__IO_SENDMSG: {
        ssize_t n;
        int flags = (int)op->op_flags | MSG_DONTWAIT;
        do
            n = op->opcode == COR__IO_SENDMSG
                    ? sendmsg(op->fd, (const struct msghdr *)op->u.io.addr, flags)
                    : recvmsg(op->fd, (struct msghdr *)op->u.io.addr, flags);
        while (n < 0 && errno == EINTR);
        return n >= 0 ? (int)n : (errno == EWOULDBLOCK ? -EAGAIN : -errno);
    }
    case COR__IO_ACCEPT:
        do
            r = accept4(op->fd, (struct sockaddr *)op->u.io.addr, (socklen_t *)op->u.io.addr2,
                        (int)op->op_flags);
        while (r < 0 && errno == EINTR);
        return r >= 0 ? r : (errno == EWOULDBLOCK ? -EAGAIN : -errno);
    case COR__IO_CONNECT:
        if (op->bk_flags & BK_CONNECTING) {
            int err = 0;
            socklen_t len = sizeof err;
            if (getsockopt(op->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0)
                return -errno;
            if (err)
                return -err;
            return ev & EPOLLOUT ? 0 : -EAGAIN;
        }
        r = connect(op->fd, (const struct sockaddr *)op->u.io.addr, (socklen_t)op->len);
        if (r == 0)
            return 0;
        if (errno == EINPROGRESS || errno == EINTR) {
            op->bk_flags |= BK_CONNECTING;
            return -EAGAIN;
        }
        return errno == EWOULDBLOCK ? -EAGAIN : -errno;
    case COR__IO_POLL: {
        if (ev) {
            uint32_t m = ev & (op->op_flags | POLLERR | POLLHUP);
            return m ? (int)m : -EAGAIN;
        }
        struct pollfd p = {.fd = op->fd, .events = (short)op->op_flags};
        r = poll(&p, 1, 0);
        if (r < 0)
            return -errno;
        return r ? p.revents : -EAGAIN;
    }
    case COR__IO_NOP: /* not readiness operations (their table rows say so) */
    case COR__IO_TIMEOUT:
    case COR__IO_CLOSE:
    case COR__IO_SHUTDOWN:
    case COR__IO_FSYNC:
    case COR__IO_OPENAT:
    case COR__IO_STATX:
    case COR__IO_STREAM_NEXT:
    case COR__IO_OPCODES:
        break;
    }
    return -EOPNOTSUPP;
}

/*
 * Operations epoll cannot wait for (files, metadata, shutdown): they run
 * here, on the owner thread, and block it for as long as the kernel takes.
 */
static int sync_op(cor__io_op *op)
{
    int r = -1;
    errno = EOPNOTSUPP;
    switch ((enum cor__io_opcode)op->opcode) {
    case COR__IO_SHUTDOWN:
        r = shutdown(op->fd, (int)op->op_flags);
        break;
    case COR__IO_FSYNC:
        r = (op->op_flags & COR__FSYNC_DATA) ? fdatasync(op->fd) : fsync(op->fd);
        break;
    case COR__IO_OPENAT:
        r = openat(op->fd, (const char *)op->u.io.addr, (int)op->op_flags, (mode_t)op->len);
        break;
    case COR__IO_STATX:
        r = statx(op->fd, (const char *)op->u.io.addr, (int)op->op_flags, op->len,
                  (struct statx *)op->u.io.addr2);
        break;
    case COR__IO_NOP: /* not synchronous operations (their table rows say so) */
    case COR__IO_TIMEOUT:
    case COR__IO_READ:
    case COR__IO_WRITE:
    case COR__IO_RECV:
    case COR__IO_SEND:
    case COR__IO_ACCEPT:
    case COR__IO_CONNECT:
    case COR__IO_CLOSE:
    case COR__IO_POLL:
    case COR__IO_READV:
    case COR__IO_WRITEV:
    case COR__IO_SENDMSG:
    case COR__IO_RECVMSG:
    case COR__IO_STREAM_NEXT:
    case COR__IO_OPCODES:
        break;
    }
    return r < 0 ? -errno : r;
}

/* ---- the backend ops ------------------------------------------------------------------ */

static int ep_create(cor__backend **out, const cor__backend_config *cfg)
{
    cor__backend *b = calloc(1, sizeof *b);
    if (!b)
        return -ENOMEM;
    int rc;
    /* cq_entries is the completion batch of io_uring; here, of epoll_wait. */
    b->max_events = (int)(cfg->cq_entries < 4096 ? cfg->cq_entries : 4096);
    b->events = calloc((size_t)b->max_events, sizeof *b->events);
    if (!b->events) {
        rc = -ENOMEM;
        goto fail_events;
    }
    b->epfd = epoll_create1(EPOLL_CLOEXEC);
    if (b->epfd < 0) {
        rc = -errno;
        goto fail_ep;
    }
    b->efd = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
    if (b->efd < 0) {
        rc = -errno;
        goto fail_efd;
    }
    struct epoll_event e = {.events = EPOLLIN | EPOLLET, .data.u64 = WAKE_TAG};
    if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, b->efd, &e) < 0) {
        rc = -errno;
        goto fail_add;
    }
    b->have_pwait2 = true;
    *out = b;
    return 0;
fail_add:
    close(b->efd);
fail_efd:
    close(b->epfd);
fail_ep:
    free(b->events);
fail_events:
    free(b);
    return rc;
}

static int ep_bind(cor__backend *b)
{
    (void)b;
    return 0;
}

static void ep_destroy(cor__backend *b)
{
    for (unsigned i = 0; i < b->nfiles; i++)
        if (b->files[i] >= 0)
            close(b->files[i]);
    free(b->files);
    close(b->efd);
    close(b->epfd);
    free(b->events);
    free(b->fds);
    free(b);
}

/* Puts op on its descriptor's queue, registering the descriptor on first use. */
static int wait_fd(cor__backend *b, cor__io_op *op)
{
    struct fd_entry *e = entry_of(b, op->fd);
    if (!e)
        return -ENOMEM;
    if (!e->registered) {
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLRDHUP | EPOLLET,
                                 .data.u64 = (uint64_t)op->fd};
        if (epoll_ctl(b->epfd, EPOLL_CTL_ADD, op->fd, &ev) < 0 && errno != EEXIST)
            return -errno;
        e->registered = true;
    }
    q_push(&e->q[queue_of(op)], op);
    op->bk_flags |= BK_QUEUED;
    b->waiting++;
    return 0;
}

/*
 * The result of a waiting op canceled (a stop, a deadline, its descriptor
 * closed): -ECANCELED, or the bytes a MSG_WAITALL recv/send moved before it
 * had to wait, as io_uring reports a partial transfer: nothing sent or
 * received goes unreported.
 */
static int canceled_result(const cor__io_op *op)
{
    return op->bk[1] ? (int)(uint32_t)op->bk[1] : -ECANCELED;
}

/* Completes every op waiting on fd (it is being closed), as canceled. */
static void cancel_fd(cor__backend *b, struct fd_entry *e)
{
    for (int q = 0; q < NQ; q++)
        while (e->q[q].head)
            make_ready(b, e->q[q].head, canceled_result(e->q[q].head));
}

static int do_close(cor__backend *b, int fd)
{
    if ((size_t)fd < b->nfds) {
        struct fd_entry *e = &b->fds[fd];
        cancel_fd(b, e);
        /* A dup of fd would keep the file in the set after close. */
        if (e->registered)
            epoll_ctl(b->epfd, EPOLL_CTL_DEL, fd, NULL);
        e->registered = false;
    }
    return close(fd) < 0 && errno != EINTR ? -errno : 0;
}

static int ep_submit(cor__backend *b, cor__io_op *op)
{
    op->bk_flags = 0;
    op->bk[0] = 0;
    op->bk[1] = 0;
    op->bk_pending = 1;
    if (op->fixed) {
        int f = (unsigned)op->fd < b->nfiles ? b->files[op->fd] : -1;
        if (f < 0)
            return -EBADF;
        op->fd = f;
        op->fixed = 0;
    }
    int r;
    switch ((enum cor__io_wait)cor__io_opinfo[op->opcode].wait) {
    case COR__IO_WAIT_NOW:
        make_ready(b, op, 0);
        return 0;
    case COR__IO_WAIT_CLOSE:
        if (op->fd < 0)
            return -EBADF;
        cor__stat_add(b->stats.sqes, 1);
        make_ready(b, op, do_close(b, op->fd));
        return 0;
    case COR__IO_WAIT_SYNC:
        cor__stat_add(b->stats.sqes, 1);
        make_ready(b, op, sync_op(op));
        return 0;
    case COR__IO_WAIT_IN:
    case COR__IO_WAIT_OUT:
    case COR__IO_WAIT_POLL:
        break;
    case COR__IO_WAIT_STREAM: /* multishot streams are io_uring's: never here */
    case COR__IO_WAIT_FRONT:  /* the front end's: never here */
        return -EOPNOTSUPP;
    }
    if (op->fd < 0)
        return -EBADF;
    /* FIFO per direction: behind a waiting op, an op waits too. */
    int q = queue_of(op);
    if (q != Q_POLL && (size_t)op->fd < b->nfds && b->fds[op->fd].q[q].head)
        return wait_fd(b, op);
    cor__stat_add(b->stats.sqes, 1);
    r = try_op(op, 0);
    if (r != -EAGAIN) {
        make_ready(b, op, r);
        return 0;
    }
    r = wait_fd(b, op);
    if (r == -EPERM && (op->opcode == COR__IO_READ || op->opcode == COR__IO_WRITE ||
                        op->opcode == COR__IO_READV || op->opcode == COR__IO_WRITEV)) {
        /* A regular file whose data is not cached: epoll cannot wait on it. */
        make_ready(b, op, rw_sync(op, queue_of(op) == Q_OUT));
        return 0;
    }
    return r;
}

static void ep_cancel(cor__backend *b, cor__io_op *op)
{
    if (op->bk_flags & BK_READY)
        return; /* it won the race: its result is queued */
    make_ready(b, op, canceled_result(op));
}

static void ep_cancel_all(cor__backend *b)
{
    for (size_t fd = 0; fd < b->nfds && b->waiting; fd++)
        cancel_fd(b, &b->fds[fd]);
}

/* Retries the ops waiting in q after events ev, in order, until one must wait again. */
static void drive_queue(cor__backend *b, struct opq *q, uint32_t ev, bool all)
{
    cor__io_op *op = q->head;
    while (op) {
        cor__io_op *next = link_of(op);
        cor__stat_add(b->stats.sqes, 1);
        int r = try_op(op, ev);
        if (r != -EAGAIN)
            make_ready(b, op, r);
        else if (!all)
            return;
        op = next;
    }
}

static void on_event(cor__backend *b, const struct epoll_event *e)
{
    uint64_t fd = e->data.u64;
    if (fd == WAKE_TAG || fd >= b->nfds)
        return;
    struct fd_entry *ent = &b->fds[fd];
    uint32_t ev = e->events;
    if (ev & (EPOLLIN | EPOLLRDHUP | EPOLLERR | EPOLLHUP))
        drive_queue(b, &ent->q[Q_IN], ev, false);
    if (ev & (EPOLLOUT | EPOLLERR | EPOLLHUP))
        drive_queue(b, &ent->q[Q_OUT], ev, false);
    /* Each POLL op waits for its own events: look at every one. */
    drive_queue(b, &ent->q[Q_POLL], ev, true);
}

/* One batched epoll_wait; timeout_ns < 0 waits without limit. Returns the event count. */
static int wait_events(cor__backend *b, int64_t timeout_ns)
{
    int n;
    if (b->have_pwait2) {
        struct timespec ts, *tsp = NULL;
        if (timeout_ns >= 0) {
            ts.tv_sec = timeout_ns / 1000000000;
            ts.tv_nsec = timeout_ns % 1000000000;
            tsp = &ts;
        }
        n = epoll_pwait2(b->epfd, b->events, b->max_events, tsp, NULL);
        if (n >= 0 || errno != ENOSYS)
            return n < 0 ? 0 : n;
        b->have_pwait2 = false;
    }
    int ms = -1;
    if (timeout_ns >= 0) {
        int64_t m = (timeout_ns + 999999) / 1000000; /* never wake early */
        ms = m > INT32_MAX ? INT32_MAX : (int)m;
    }
    n = epoll_wait(b->epfd, b->events, b->max_events, ms);
    return n < 0 ? 0 : n;
}

static long ep_run(cor__backend *b, int64_t timeout_ns, long max)
{
    int64_t tmo = b->ready.head ? 0 : timeout_ns;
    /* Nothing can be ready on a descriptor nobody waits on, and wake-ups need no read:
     * with completions queued and no waiter, epoll_wait would be a wasted syscall. */
    if (tmo != 0 || b->waiting) {
        cor__stat_add(b->stats.enters, 1);
        if (tmo != 0)
            cor__io_sleeps();
        int n = wait_events(b, tmo);
        if (tmo != 0)
            cor__io_woke();
        for (int i = 0; i < n; i++)
            on_event(b, &b->events[i]);
    }
    /* Deliver what is ready now, not what the handlers make ready. */
    cor__io_op *last = b->ready.tail;
    long n = 0;
    while (n < max && b->ready.head) {
        cor__io_op *op = q_pop(&b->ready);
        bool end = op == last;
        op->bk_flags &= (uint8_t)~BK_READY;
        op->bk_pending = 0;
        cor__io_complete(op, (int)(int64_t)op->bk[1]);
        n++;
        if (end)
            break;
    }
    return n;
}

static void ep_wake(cor__backend *t, cor__backend *from)
{
    (void)from;
    uint64_t one = 1;
    /* EAGAIN: the counter is at its maximum, so an edge is pending anyway. */
    while (write(t->efd, &one, sizeof one) < 0 && errno == EINTR)
        ;
}

static unsigned ep_features(cor__backend *b)
{
    (void)b;
    return 0;
}

static const cor__backend_stats *ep_stats(cor__backend *b)
{
    return &b->stats;
}

/* ---- registered files (emulated) ------------------------------------------------------- */

static int ep_files_register(cor__backend *b, const int *fds, unsigned n)
{
    /* Check every descriptor first: a dup could take the number of a closed one. */
    for (unsigned i = 0; i < n; i++)
        if (fds[i] >= 0 && fcntl(fds[i], F_GETFD) < 0)
            return -errno;
    int *t = malloc(n * sizeof *t);
    if (!t)
        return -ENOMEM;
    for (unsigned i = 0; i < n; i++) {
        t[i] = -1;
        if (fds[i] >= 0 && (t[i] = fcntl(fds[i], F_DUPFD_CLOEXEC, 0)) < 0) {
            int rc = -errno;
            while (i--)
                if (t[i] >= 0)
                    close(t[i]);
            free(t);
            return rc;
        }
    }
    b->files = t;
    b->nfiles = n;
    return 0;
}

static int ep_files_update(cor__backend *b, unsigned index, int fd)
{
    int d = -1;
    if (fd >= 0 && (d = fcntl(fd, F_DUPFD_CLOEXEC, 0)) < 0)
        return -errno;
    int old = b->files[index];
    b->files[index] = d;
    if (old >= 0)
        do_close(b, old);
    return 0;
}

static int ep_files_unregister(cor__backend *b)
{
    for (unsigned i = 0; i < b->nfiles; i++)
        if (b->files[i] >= 0)
            do_close(b, b->files[i]);
    free(b->files);
    b->files = NULL;
    b->nfiles = 0;
    return 0;
}

const cor__backend_ops cor__epoll_backend = {
    .name = "epoll",
    .create = ep_create,
    .bind = ep_bind,
    .destroy = ep_destroy,
    .submit = ep_submit,
    .cancel = ep_cancel,
    .cancel_all = ep_cancel_all,
    .run = ep_run,
    .wake = ep_wake,
    .features = ep_features,
    .stats = ep_stats,
    .files_register = ep_files_register,
    .files_update = ep_files_update,
    .files_unregister = ep_files_unregister,
};
