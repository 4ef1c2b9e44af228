/*
 * The io_context front end: executor, run loop, posting, operations, the
 * stop-token bridge and timers. The kernel side is behind ring/backend.h.
 *
 * Who touches what. Fields under "owner" are touched only by the thread
 * that drives the context (inside run), or by anyone while nobody does (the
 * `running` flag, taken with acquire and released with release, orders
 * successive drivers). Fields under "shared" are atomics.
 *
 * Sleeping and wake-ups (a Dekker pair, both sides sequentially consistent):
 *   owner:  sleeping = 1; fence; check remote queue, stop flag, work;
 *           only then block in the backend.
 *   poster: push to the remote queue (or stop, or drop the last work);
 *           fence; if sleeping was 1, clear it and wake the owner.
 * Either the owner sees the new item or the poster sees the flag. A pop
 * that reports BUSY (a producer between its two steps) counts as "not
 * empty": the owner does not block while it lasts.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "coring/io_context.h"
#include "coring/timer.h"
#include "fifo.h"
#include "internal.h"
#include "io_internal.h"
#include "mpsc.h"
#include "ring/backend.h"

struct cor_io_context {
    cor_execution_context ctx; /* first: the context of the executor */
    const cor__backend_ops *be_ops;
    cor__backend *be;
    unsigned requested;

    /* owner */
    cor__fifo local; /* posts from the owner thread           */
    long queued;     /* its length                            */
    long inflight;   /* operations in the backend             */
    pthread_t owner; /* the driving thread once bound         */
    bool bound;      /* the backend was bound to a thread     */
    bool closing;    /* destroy is draining                   */
    unsigned nfiles; /* slots of the registered file table    */

    /* shared */
    uint32_t running;  /* a thread is inside run                      */
    uint32_t stopped;  /* stop was requested                          */
    uint32_t sleeping; /* the owner is (about to be) blocked          */
    uint32_t touching; /* threads inside a cross-thread touch of io   */
    long work;         /* work guards and launches                    */
    char pad[64];
    cor__mpsc remote; /* posts from other threads                    */
};

/* The io_context whose run is on this thread's stack. */
static __thread cor_io_context *io_current;

/* Op states. */
enum { OP_NEW, OP_IN_FLIGHT, OP_COMPLETED, OP_DONE };

/* Op flags. */
enum {
    OPF_STOP_CB = 1u << 0,     /* a stop callback is registered            */
    OPF_CANCEL_SENT = 1u << 1, /* the backend was asked to cancel it       */
    OPF_EINVAL = 1u << 2       /* created with bad arguments               */
};

static cor_handle io_op_resume(cor_frame *f);
static void wake_if_sleeping(cor_io_context *io);

/* ---- queues ------------------------------------------------------------------------- */

static void local_push(cor_io_context *io, cor_frame *h)
{
    cor__fifo_push(&io->local, h);
    io->queued++;
}

static cor_frame *local_pop(cor_io_context *io)
{
    cor_frame *h = cor__fifo_pop(&io->local);
    if (h)
        io->queued--;
    return h;
}

/*
 * Another thread's touch of io. Once a post lands or the last work is
 * finished, the owner may return from run and destroy io while the toucher
 * still has to read `sleeping` and wake it. So a toucher raises `touching`
 * before the act that can let the owner finish and drops it as its last
 * access to io (a release, like a reference count); destroy waits for zero.
 */
static void touch_begin(cor_io_context *io)
{
    __atomic_fetch_add(&io->touching, 1, __ATOMIC_SEQ_CST);
}

static void touch_end(cor_io_context *io)
{
    __atomic_fetch_sub(&io->touching, 1, __ATOMIC_RELEASE);
}

static void post_remote(cor_io_context *io, cor_frame *h)
{
    touch_begin(io);
    cor__mpsc_push(&io->remote, h);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    wake_if_sleeping(io);
    touch_end(io);
}

/* Moves what other threads posted into the local FIFO. Returns true if a producer is mid-push. */
static bool drain_remote(cor_io_context *io)
{
    for (;;) {
        cor_frame *h;
        int r = cor__mpsc_pop(&io->remote, &h);
        if (r != COR__MPSC_ITEM)
            return r == COR__MPSC_BUSY;
        local_push(io, h);
    }
}

static void wake_if_sleeping(cor_io_context *io)
{
    if (!__atomic_load_n(&io->sleeping, __ATOMIC_SEQ_CST) ||
        !__atomic_exchange_n(&io->sleeping, 0, __ATOMIC_SEQ_CST))
        return;
    cor_io_context *cur = io_current;
    io->be_ops->wake(io->be, cur && cur != io && cur->be_ops == io->be_ops ? cur->be : NULL);
}

/* ---- executor ----------------------------------------------------------------------- */

static void io_post(const void *obj, cor_handle h)
{
    cor_io_context *io = (cor_io_context *)obj;
    if (io_current == io)
        local_push(io, h);
    else
        post_remote(io, h);
}

static cor_handle io_dispatch(const void *obj, cor_handle h)
{
    if (cor__tls.running == obj)
        return h;
    io_post(obj, h);
    return COR_NOOP;
}

static cor_execution_context *io_context_of(const void *obj)
{
    return &((cor_io_context *)obj)->ctx;
}

static void io_work_started(const void *obj)
{
    cor_io_context *io = (cor_io_context *)obj;
    __atomic_fetch_add(&io->work, 1, __ATOMIC_RELAXED);
}

static void io_work_finished(const void *obj)
{
    cor_io_context *io = (cor_io_context *)obj;
    if (io_current == io) {
        __atomic_sub_fetch(&io->work, 1, __ATOMIC_SEQ_CST);
        return;
    }
    touch_begin(io);
    if (__atomic_sub_fetch(&io->work, 1, __ATOMIC_SEQ_CST) == 0)
        wake_if_sleeping(io);
    touch_end(io);
}

static const cor_executor_ops io_ops = {
    .dispatch = io_dispatch,
    .post = io_post,
    .context = io_context_of,
    .on_work_started = io_work_started,
    .on_work_finished = io_work_finished,
};

/* ---- creation and options ------------------------------------------------------------ */

static unsigned default_flags(void)
{
    unsigned f = COR_IO_COOP_TASKRUN | COR_IO_TASKRUN_FLAG;
#if COR_RING_DEFER_TASKRUN
    f |= COR_IO_SINGLE_ISSUER | COR_IO_DEFER_TASKRUN;
#endif
#if COR_RING_SQPOLL
    f |= COR_IO_SQPOLL;
#endif
    return f;
}

int cor_io_context_create(cor_io_context **out, const cor_io_context_options *o)
{
    if (!out)
        return -EINVAL;
    cor_io_context_options d;
    memset(&d, 0, sizeof d);
    if (o)
        d = *o;
    unsigned sq = d.sq_entries ? d.sq_entries : COR_RING_SQ_ENTRIES;
    if (sq < COR_RING_SQ_MIN || sq > COR_RING_SQ_MAX)
        return -EINVAL;
    unsigned cq = d.cq_entries;
    if (!cq)
        cq = COR_RING_CQ_ENTRIES >= sq ? COR_RING_CQ_ENTRIES : 2 * sq;
    if (cq < sq || cq > COR_RING_CQ_MAX)
        return -EINVAL;
    const unsigned known = COR_IO_SINGLE_ISSUER | COR_IO_DEFER_TASKRUN | COR_IO_COOP_TASKRUN |
                           COR_IO_TASKRUN_FLAG | COR_IO_SQPOLL | COR_IO_NO_DEFAULT_FLAGS |
                           COR_IO_WAKE_EVENTFD;
    if (d.flags & ~known)
        return -EINVAL;
    unsigned flags = d.flags & ~COR_IO_NO_DEFAULT_FLAGS;
    if (!(d.flags & COR_IO_NO_DEFAULT_FLAGS))
        flags |= default_flags();
    const cor__backend_ops *be_ops;
    switch (d.backend == COR_IO_BACKEND_DEFAULT ? COR_IO_BACKEND_BUILD_DEFAULT : d.backend) {
    case COR_IO_BACKEND_URING:
        be_ops = &cor__uring_backend;
        break;
    case COR_IO_BACKEND_EPOLL:
        /* Ring flags mean nothing to epoll; a deliberate SQPOLL is refused, not dropped. */
        if (d.flags & COR_IO_SQPOLL)
            return -EINVAL;
        be_ops = &cor__epoll_backend;
        break;
    default:
        return -EINVAL;
    }

    cor_io_context *io = calloc(1, sizeof *io);
    if (!io)
        return -ENOMEM;
    int rc = cor_execution_context_init(&io->ctx);
    if (rc)
        goto fail_ctx;
    cor__mpsc_init(&io->remote);
    io->be_ops = be_ops;
    io->requested = flags & ~COR_IO_WAKE_EVENTFD;
    cor__backend_config cfg = {
        .sq_entries = sq, .cq_entries = cq, .flags = flags, .sqpoll_idle_ms = d.sqpoll_idle_ms};
    rc = be_ops->create(&io->be, &cfg, io);
    if (rc)
        goto fail_be;
    *out = io;
    return 0;
fail_be:
    cor_execution_context_destroy(&io->ctx);
fail_ctx:
    free(io);
    return rc;
}

/* ---- operations ---------------------------------------------------------------------- */

/* The op of a leaf frame: it follows the typed result (struct cor_io_await's layout). */
static inline cor_io_op *op_of(cor_frame *f)
{
    size_t a = _Alignof(cor_io_op);
    size_t off = ((size_t)f->result_off + f->result_size + a - 1) & ~(a - 1);
    return (cor_io_op *)((char *)f + off);
}

_Static_assert(offsetof(struct cor_io_await, op) == ((offsetof(struct cor_io_await, result) +
                                                      sizeof(int) + _Alignof(cor_io_op) - 1) &
                                                     ~(_Alignof(cor_io_op) - 1)),
               "op follows the result");
#if COR_AWAIT_SLOT_SIZE >= 256
_Static_assert(sizeof(struct cor_io_await) <= COR_AWAIT_SLOT_SIZE, "an op fits the await slot");
#endif

static void store_result(cor_frame *f, int res)
{
    char *p = (char *)f + f->result_off;
    if (f->result_size == sizeof(int64_t)) {
        int64_t v = res;
        memcpy(p, &v, sizeof v);
    } else {
        memcpy(p, &res, sizeof res);
    }
}

static void op_init(cor_io_op *op, cor_frame *f, cor_io_context *io, int opcode)
{
    op->frame = f;
    op->io = io;
    op->deadline = 0;
    op->fd = -1;
    op->op_flags = 0;
    op->opcode = (uint8_t)opcode;
    op->state = OP_NEW;
    op->flags = 0;
    op->cancel_queued = 0;
    op->fixed = 0;
}

struct cor_io_await *cor__io_await_new(cor_io_context *io, int opcode)
{
    struct cor_io_await *a = COR_LEAF_NEW(struct cor_io_await, io_op_resume);
    if (a)
        op_init(&a->op, &a->cor_hdr, io, opcode);
    return a;
}

struct cor_io_await *cor__io_await_new_size(cor_io_context *io, int opcode, size_t size)
{
    if (size < sizeof(struct cor_io_await))
        size = sizeof(struct cor_io_await);
    struct cor_io_await *a =
        (struct cor_io_await *)cor__leaf_new(size, _Alignof(struct cor_io_await), io_op_resume,
                                             offsetof(struct cor_io_await, result), sizeof(int));
    if (a)
        op_init(&a->op, &a->cor_hdr, io, opcode);
    return a;
}

struct cor_io_await *cor__io_await_fd(int opcode, int fd, bool valid)
{
    struct cor_io_await *a = cor__io_await_new(NULL, opcode);
    if (a) {
        a->op.fd = fd;
        if (!valid)
            cor__io_op_invalid(&a->op);
    }
    return a;
}

void cor__io_op_invalid(cor_io_op *op)
{
    op->flags |= OPF_EINVAL;
}

cor__backend *cor__io_backend(cor_io_context *io, const cor__backend_ops **ops)
{
    *ops = io->be_ops;
    return io->be;
}

/* Finishes op: the handle to run next (the awaiting frame, or what its executor says). */
static cor_handle op_finish(cor_io_op *op)
{
    cor_frame *f = op->frame;
    op->state = OP_DONE;
    cor_executor ex = f->env.ex;
    cor_handle h = cor_leaf_complete(f);
    /* A coroutine on another executor (a strand, say) resumes through it. */
    if (h && ex.obj != (const void *)op->io)
        h = ex.ops->dispatch(ex.obj, h);
    return h;
}

/* Completes op at once, without the kernel. */
static cor_handle op_now(cor_io_op *op, int res)
{
    store_result(op->frame, res);
    op->state = OP_DONE;
    return cor_leaf_complete(op->frame);
}

static void op_cancel(cor_io_op *op)
{
    if (op->state != OP_IN_FLIGHT || (op->flags & OPF_CANCEL_SENT))
        return;
    op->flags |= OPF_CANCEL_SENT;
    op->io->be_ops->cancel(op->io->be, op);
}

static void timer_link(cor_timer *t, cor_io_op *op)
{
    op->u.tmo.prev = NULL;
    op->u.tmo.next = t->waiters;
    if (t->waiters)
        t->waiters->u.tmo.prev = op;
    t->waiters = op;
    t->count++;
}

static void timer_unlink(cor_io_op *op)
{
    cor_timer *t = op->u.tmo.timer;
    if (!t)
        return;
    if (op->u.tmo.prev)
        op->u.tmo.prev->u.tmo.next = op->u.tmo.next;
    else
        t->waiters = op->u.tmo.next;
    if (op->u.tmo.next)
        op->u.tmo.next->u.tmo.prev = op->u.tmo.prev;
    t->count--;
    op->u.tmo.timer = NULL;
}

/*
 * The stop callback of an op in flight. On the owning thread (inside run) it
 * asks the backend to cancel at once; elsewhere it posts the op's own frame
 * to the owner as a cancel request (the frame is free to queue: it waits in
 * the kernel, in no queue). It never blocks, so the owner may wait for it in
 * cor_stop_callback_deregister without deadlock.
 */
static void op_stop_fn(cor_stop_callback *cb)
{
    cor_io_op *op = cor__container_of(cb, cor_io_op, stop_cb);
    cor_io_context *io = op->io;
    if (io_current == io) {
        op_cancel(op);
        return;
    }
    __atomic_store_n(&op->cancel_queued, 1, __ATOMIC_RELAXED); /* published by the push */
    post_remote(io, op->frame);
}

static cor_handle op_start(cor_frame *f, cor_io_op *op)
{
    cor_io_context *io = op->io;
    if (!io)
        io = f->env.ex.ops == &io_ops ? (cor_io_context *)f->env.ex.obj : io_current;
    if (!io || io != io_current)
        return op_now(op, -EPERM);
    op->io = io;
    if ((op->flags & OPF_EINVAL) || op->deadline < 0)
        return op_now(op, -EINVAL);
    if (COR__UNLIKELY(op->fixed) && !io->be_ops->files_register)
        return op_now(op, -EOPNOTSUPP);
    cor_stop_source *src = f->env.stop.src;
    if (op->opcode == COR__IO_CLOSE || op->opcode == COR__IO_SHUTDOWN) {
        /* Cleanup is never canceled: it runs whatever the token or a deadline says. */
        src = NULL;
        op->deadline = 0;
    } else {
        if (src && __atomic_load_n(&src->stopped, __ATOMIC_ACQUIRE))
            return op_now(op, -ECANCELED);
        /* A deadline already past: the op is not issued (a regular-file read, once issued,
         * would run to completion whatever its deadline). */
        if (op->deadline > 0 && op->deadline <= cor_clock_now())
            return op_now(op, -ETIME);
    }
    cor_timer *t = NULL;
    if (op->opcode == COR__IO_TIMEOUT && (t = op->u.tmo.timer)) {
        if (t->io != io)
            return op_now(op, -EPERM);
        op->u.tmo.when = t->when;
        timer_link(t, op);
    }
    int rc = io->be_ops->submit(io->be, op);
    if (COR__UNLIKELY(rc)) {
        if (t)
            timer_unlink(op);
        return op_now(op, rc);
    }
    op->state = OP_IN_FLIGHT;
    io->inflight++;
    if (src) {
        op->flags |= OPF_STOP_CB;
        /* If stop was requested meanwhile, op_stop_fn runs here, inline. */
        cor_stop_callback_register(&op->stop_cb, f->env.stop, op_stop_fn);
    }
    return COR_NOOP;
}

/*
 * The resume function of every op frame. Called once by the await (start);
 * again only as a cancel request posted from another thread, or to finish an
 * op whose completion arrived while that request was queued.
 */
static cor_handle io_op_resume(cor_frame *f)
{
    cor_io_op *op = op_of(f);
    switch (op->state) {
    case OP_NEW:
        return op_start(f, op);
    case OP_IN_FLIGHT:
        __atomic_store_n(&op->cancel_queued, 0, __ATOMIC_RELAXED);
        op_cancel(op);
        return COR_NOOP;
    case OP_COMPLETED:
        __atomic_store_n(&op->cancel_queued, 0, __ATOMIC_RELAXED);
        return op_finish(op);
    default:
        return COR_NOOP;
    }
}

void cor__io_complete(cor_io_op *op, int res)
{
    cor_io_context *io = op->io;
    io->inflight--;
    /* After this, op_stop_fn is not running and never will. */
    if (op->flags & OPF_STOP_CB) {
        op->flags &= (uint8_t)~OPF_STOP_CB;
        cor_stop_callback_deregister(&op->stop_cb);
    }
    if (op->opcode == COR__IO_TIMEOUT)
        timer_unlink(op);
    store_result(op->frame, res);
    op->state = OP_COMPLETED;
    /* A cancel request for op is queued: op finishes when it is popped,
     * so the frame never sits in a queue after its awaiter moved on. */
    if (__atomic_load_n(&op->cancel_queued, __ATOMIC_ACQUIRE))
        return;
    if (COR__UNLIKELY(io->closing)) {
        op->state = OP_DONE;
        cor_frame_destroy(op->frame);
        return;
    }
    cor_resume(op_finish(op));
}

/* ---- awaitables ---------------------------------------------------------------------- */

struct cor_io_await *cor_nop(void)
{
    return cor__io_await_new(NULL, COR__IO_NOP);
}

static cor_handle yield_resume(cor_frame *f)
{
    ((struct cor_io_await *)f)->result = 0;
    cor_executor ex = f->env.ex;
    cor_handle c = cor_leaf_complete(f);
    if (c)
        ex.ops->post(ex.obj, c);
    return COR_NOOP;
}

struct cor_io_await *cor_yield(void)
{
    return COR_LEAF_NEW(struct cor_io_await, yield_resume);
}

int cor_io_op_deadline_at(cor_io_op *op, int64_t abs_ns)
{
    if (!op)
        return -EINVAL;
    if (op->state != OP_NEW)
        return -EINVAL;
    if (abs_ns <= 0) {
        op->deadline = -1;
        return -EINVAL;
    }
    op->deadline = abs_ns;
    return 0;
}

int cor_io_op_deadline_after(cor_io_op *op, int64_t ns)
{
    if (!op)
        return -EINVAL;
    if (ns < 0) {
        if (op->state == OP_NEW)
            op->deadline = -1;
        return -EINVAL;
    }
    return cor_io_op_deadline_at(op, cor_clock_now() + ns);
}

int cor_io_op_fixed(cor_io_op *op)
{
    if (!op || op->state != OP_NEW)
        return -EINVAL;
    switch (op->opcode) {
    case COR__IO_READ:
    case COR__IO_WRITE:
    case COR__IO_RECV:
    case COR__IO_SEND:
    case COR__IO_ACCEPT:
    case COR__IO_CONNECT:
    case COR__IO_POLL:
    case COR__IO_READV:
    case COR__IO_WRITEV:
    case COR__IO_SENDMSG:
    case COR__IO_RECVMSG:
    case COR__IO_SHUTDOWN:
    case COR__IO_FSYNC:
        op->fixed = 1;
        return 0;
    default:
        op->flags |= OPF_EINVAL; /* documented: the op completes with -EINVAL */
        return -EINVAL;
    }
}

int64_t cor_clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

static struct cor_io_await *timeout_new(int64_t when, cor_timer *t, bool valid)
{
    struct cor_io_await *a = cor__io_await_new(NULL, COR__IO_TIMEOUT);
    if (a) {
        a->op.u.tmo.when = when;
        a->op.u.tmo.timer = t;
        if (!valid)
            a->op.flags |= OPF_EINVAL;
    }
    return a;
}

struct cor_io_await *cor_sleep_for(int64_t ns)
{
    return timeout_new(ns >= 0 ? cor_clock_now() + ns : 0, NULL, ns >= 0);
}

struct cor_io_await *cor_sleep_until(int64_t abs_ns)
{
    return timeout_new(abs_ns, NULL, abs_ns >= 0);
}

int cor_timer_init(cor_timer *t, cor_io_context *io)
{
    if (!t || !io)
        return -EINVAL;
    t->io = io;
    t->when = INT64_MAX;
    t->waiters = NULL;
    t->count = 0;
    return 0;
}

int cor_timer_cancel(cor_timer *t)
{
    if (!t)
        return -EINVAL;
    if (!t->count)
        return 0;
    if (io_current != t->io)
        return -EPERM;
    int n = 0;
    cor_io_op *op = t->waiters;
    while (op) {
        cor_io_op *next = op->u.tmo.next;
        op->u.tmo.timer = NULL;
        op_cancel(op);
        n++;
        op = next;
    }
    t->waiters = NULL;
    t->count = 0;
    return n;
}

int cor_timer_expires_at(cor_timer *t, int64_t abs_ns)
{
    if (!t || abs_ns < 0)
        return -EINVAL;
    int n = cor_timer_cancel(t);
    if (n >= 0)
        t->when = abs_ns;
    return n;
}

int cor_timer_expires_after(cor_timer *t, int64_t ns)
{
    if (!t || ns < 0)
        return -EINVAL;
    return cor_timer_expires_at(t, cor_clock_now() + ns);
}

int64_t cor_timer_expiry(const cor_timer *t)
{
    return t ? t->when : -EINVAL;
}

struct cor_io_await *cor_timer_wait(cor_timer *t)
{
    return timeout_new(0, t, t != NULL);
}

/* ---- the run loop -------------------------------------------------------------------- */

static bool no_work(cor_io_context *io)
{
    return io->inflight == 0 && io->queued == 0 &&
           __atomic_load_n(&io->work, __ATOMIC_SEQ_CST) == 0 && cor__mpsc_empty(&io->remote);
}

static bool is_stopped(cor_io_context *io)
{
    return __atomic_load_n(&io->stopped, __ATOMIC_RELAXED);
}

static long drive(cor_io_context *io, long max, int64_t timeout_ns, bool block)
{
    if (!io)
        return -EINVAL;
    if (__atomic_exchange_n(&io->running, 1, __ATOMIC_ACQUIRE))
        return -EBUSY;
    long rc = 0;
    pthread_t self = pthread_self();
    bool single = io->be_ops->features(io->be) & COR_IO_SINGLE_ISSUER;
    if (io->bound && single && !pthread_equal(io->owner, self)) {
        rc = -EPERM;
        goto out;
    }
    if (__atomic_load_n(&io->stopped, __ATOMIC_ACQUIRE)) {
        rc = -ECANCELED;
        goto out;
    }
    if (!io->bound) {
        rc = io->be_ops->bind(io->be);
        if (rc)
            goto out;
        io->bound = true;
    }
    io->owner = self;

    cor_io_context *prev_io = io_current;
    const void *prev_running = cor__tls.running;
    io_current = io;
    cor__tls.running = io;
    int64_t deadline = timeout_ns >= 0 ? cor_clock_now() + timeout_ns : -1;
    long n = 0;
    while (n < max && !is_stopped(io)) {
        /* A round: the handles queued now, not those they queue. */
        long progress = 0;
        for (long round = io->queued; round > 0 && n < max; round--) {
            cor_frame *h = local_pop(io);
            /* A cancel request is bookkeeping, not a handler. */
            if (h->resume != io_op_resume || ((cor_io_op *)op_of(h))->state != OP_IN_FLIGHT)
                n++;
            progress++;
            cor_resume(h);
            if (is_stopped(io))
                break;
        }
        if (n >= max || is_stopped(io))
            break;
        bool busy = drain_remote(io);
        int64_t wait = 0;
        if (io->queued == 0 && !busy && block) {
            if (no_work(io))
                break;
            if (deadline >= 0) {
                wait = deadline - cor_clock_now();
                if (wait <= 0)
                    break;
            } else {
                wait = -1;
            }
            __atomic_store_n(&io->sleeping, 1, __ATOMIC_SEQ_CST);
            __atomic_thread_fence(__ATOMIC_SEQ_CST);
            if (!cor__mpsc_empty(&io->remote) || is_stopped(io) || no_work(io)) {
                __atomic_store_n(&io->sleeping, 0, __ATOMIC_RELAXED);
                continue;
            }
        }
        long k = io->be_ops->run(io->be, wait, max - n);
        if (wait)
            __atomic_store_n(&io->sleeping, 0, __ATOMIC_RELAXED);
        if (k < 0) {
            rc = k;
            break;
        }
        n += k;
        progress += k;
        if (busy && !progress && io->queued == 0)
            sched_yield(); /* a producer is between its two steps */
        else if (!block && !progress && io->queued == 0 && !busy)
            break;
        if (deadline >= 0 && cor_clock_now() >= deadline)
            break;
    }
    cor__tls.running = prev_running;
    io_current = prev_io;
    if (!rc)
        rc = n;
out:
    __atomic_store_n(&io->running, 0, __ATOMIC_RELEASE);
    return rc;
}

long cor_io_context_run(cor_io_context *io)
{
    return drive(io, __LONG_MAX__, -1, true);
}

long cor_io_context_run_one(cor_io_context *io)
{
    return drive(io, 1, -1, true);
}

long cor_io_context_poll(cor_io_context *io)
{
    return drive(io, __LONG_MAX__, -1, false);
}

long cor_io_context_poll_one(cor_io_context *io)
{
    return drive(io, 1, -1, false);
}

long cor_io_context_run_for(cor_io_context *io, int64_t ns)
{
    if (!io || ns < 0)
        return -EINVAL;
    return drive(io, __LONG_MAX__, ns, true);
}

int cor_io_context_stop(cor_io_context *io)
{
    if (!io)
        return -EINVAL;
    touch_begin(io);
    __atomic_store_n(&io->stopped, 1, __ATOMIC_SEQ_CST);
    wake_if_sleeping(io);
    touch_end(io);
    return 0;
}

int cor_io_context_restart(cor_io_context *io)
{
    if (!io)
        return -EINVAL;
    if (__atomic_load_n(&io->running, __ATOMIC_ACQUIRE))
        return -EBUSY;
    __atomic_store_n(&io->stopped, 0, __ATOMIC_SEQ_CST);
    return 0;
}

bool cor_io_context_stopped(cor_io_context *io)
{
    return io && __atomic_load_n(&io->stopped, __ATOMIC_ACQUIRE);
}

unsigned cor_io_context_features(cor_io_context *io)
{
    return io ? io->be_ops->features(io->be) : 0;
}

unsigned cor_io_context_requested(cor_io_context *io)
{
    return io ? io->requested : 0;
}

cor_io_context *cor_io_context_current(void)
{
    return io_current;
}

cor_executor cor_io_context_executor(cor_io_context *io)
{
    if (!io)
        return COR_EXECUTOR_NULL;
    return (cor_executor){io, &io_ops};
}

cor_execution_context *cor_io_context_context(cor_io_context *io)
{
    return io ? &io->ctx : NULL;
}

/* ---- registered files ------------------------------------------------------------------ */

/*
 * The table calls run on the thread inside io's run, or while nobody drives
 * io: they then hold `running` themselves (as a driver would), so no run
 * can start meanwhile. *held says whether to release it. A backend without
 * registered files makes every table call -EOPNOTSUPP.
 */
static int files_enter(cor_io_context *io, bool *held)
{
    *held = false;
    if (!io->be_ops->files_register)
        return -EOPNOTSUPP;
    if (io_current == io)
        return 0;
    if (__atomic_exchange_n(&io->running, 1, __ATOMIC_ACQUIRE))
        return -EPERM;
    bool single = io->be_ops->features(io->be) & COR_IO_SINGLE_ISSUER;
    if (io->bound && single && !pthread_equal(io->owner, pthread_self())) {
        __atomic_store_n(&io->running, 0, __ATOMIC_RELEASE);
        return -EPERM;
    }
    *held = true;
    return 0;
}

static void files_leave(cor_io_context *io, bool held)
{
    if (held)
        __atomic_store_n(&io->running, 0, __ATOMIC_RELEASE);
}

int cor_io_files_register(cor_io_context *io, const int *fds, unsigned n)
{
    if (!io || !fds || n == 0 || n > COR_IO_FILES_MAX)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++)
        if (fds[i] < -1)
            return -EINVAL;
    bool held;
    int rc = files_enter(io, &held);
    if (rc)
        return rc;
    if (io->nfiles)
        rc = -EBUSY;
    else if ((rc = io->be_ops->files_register(io->be, fds, n)) == 0)
        io->nfiles = n;
    files_leave(io, held);
    return rc;
}

int cor_io_files_update(cor_io_context *io, unsigned index, int fd)
{
    if (!io || fd < -1)
        return -EINVAL;
    bool held;
    int rc = files_enter(io, &held);
    if (rc)
        return rc;
    if (!io->nfiles)
        rc = -ENXIO;
    else if (index >= io->nfiles)
        rc = -EINVAL;
    else
        rc = io->be_ops->files_update(io->be, index, fd);
    files_leave(io, held);
    return rc;
}

int cor_io_files_unregister(cor_io_context *io)
{
    if (!io)
        return -EINVAL;
    bool held;
    int rc = files_enter(io, &held);
    if (rc)
        return rc;
    if (!io->nfiles)
        rc = -ENXIO;
    else if ((rc = io->be_ops->files_unregister(io->be)) == 0)
        io->nfiles = 0;
    files_leave(io, held);
    return rc;
}

unsigned cor_io_files_count(cor_io_context *io)
{
    return io ? io->nfiles : 0;
}

/* ---- teardown ------------------------------------------------------------------------ */

/* Destroys a queued handle: a frame, or an op frame queued as a cancel request. */
static void destroy_queued(cor_frame *h)
{
    if (h->resume == io_op_resume) {
        cor_io_op *op = op_of(h);
        __atomic_store_n(&op->cancel_queued, 0, __ATOMIC_RELAXED);
        /* Completed while queued: nothing else owns it now. Still in
         * flight: its completion (drained or abandoned) decides. */
        if (op->state != OP_COMPLETED)
            return;
        op->state = OP_DONE;
    }
    cor_frame_destroy(h);
}

/*
 * Cancels every op in flight and waits for their completions, destroying
 * their frames, then destroys every queued handle. On the owner thread (or
 * with no ring binding), else only what the kernel already completed.
 */
static void quiesce(cor_io_context *io)
{
    io->closing = true;
    cor_io_context *prev_io = io_current;
    const void *prev_running = cor__tls.running;
    io_current = io;
    cor__tls.running = io;
    bool single = io->be_ops->features(io->be) & COR_IO_SINGLE_ISSUER;
    bool owner = !io->bound || !single || pthread_equal(io->owner, pthread_self());
    if (io->inflight > 0 && io->bound) {
        if (owner) {
            io->be_ops->cancel_all(io->be);
            while (io->inflight > 0)
                if (io->be_ops->run(io->be, -1, __LONG_MAX__) < 0)
                    break;
        } else {
            /* The owner's exit canceled its requests: collect what is there. */
            io->be_ops->run(io->be, 0, __LONG_MAX__);
        }
    }
    for (;;) {
        cor_frame *h;
        int r;
        while ((h = local_pop(io)))
            destroy_queued(h);
        while ((r = cor__mpsc_pop(&io->remote, &h)) == COR__MPSC_ITEM)
            destroy_queued(h);
        if (r == COR__MPSC_EMPTY && cor__fifo_empty(&io->local))
            break;
        if (r == COR__MPSC_BUSY)
            sched_yield();
    }
    cor__tls.running = prev_running;
    io_current = prev_io;
    if (io->inflight > 0)
        fprintf(stderr,
                "coring: io_context destroyed off its owner thread with %ld operations in "
                "flight; their frames are abandoned\n",
                io->inflight);
}

void cor__io_context_quiesce(cor_io_context *io)
{
    quiesce(io);
    io->closing = false;
}

void cor_io_context_destroy(cor_io_context *io)
{
    if (!io)
        return;
    quiesce(io);
    cor_execution_context_destroy(&io->ctx);
    /* Services may have posted while shutting down. */
    quiesce(io);
    /* Another thread may still be finishing a post, a stop or its last work. */
    while (__atomic_load_n(&io->touching, __ATOMIC_ACQUIRE))
        sched_yield();
    io->be_ops->destroy(io->be);
    free(io);
}
