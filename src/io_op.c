/*
 * Operations: the state machine every operation goes through (new, in
 * flight, done), the stop-token bridge, deadlines and the fault seam; and
 * the two operations that belong to no device, cor_nop and cor_yield.
 *
 * Life of an operation. A constructor (net.c, file.c, timer.c, stream.c)
 * makes a leaf frame with cor__io_await_new and fills the arguments. The
 * await starts it (op_start): checks, the stop link, then the backend's
 * submit (or the timer wheel, for a TIMEOUT), and the deadline on the
 * wheel. Exactly one completion follows: from the backend
 * (cor__io_complete), or from the front end's done list (a TIMEOUT, a fault
 * injected at the seam). op_complete unlinks the op, maps the result
 * (-ECANCELED after a deadline is -ETIME; a descriptor that raced a cancel
 * is closed) and resumes the awaiting coroutine through its executor.
 *
 * The stop-token bridge. An operation in flight must be canceled when the
 * awaiting coroutine's stop token is stopped. Registering a stop callback
 * per operation would take the stop source's lock, and touch its shared
 * list, on every operation: with thousands of operations sharing one
 * server-wide token that lock is the hottest line in the process. Instead
 * the context keeps one link per stop source in use (a hash table by the
 * source's address): the link's callback is registered once, while the
 * link has operations, and the operations join the link's list, a plain
 * owner-thread list. Stop on the owner thread cancels the list at once;
 * from another thread the callback posts the link's request frame to the
 * owner (no allocation), which cancels the list there. A link whose list
 * empties deregisters its callback and goes back to a free list.
 */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coring/timer.h"
#include "internal.h"
#include "io_internal.h"

_Static_assert(sizeof(cor__io_op) <= sizeof(cor_io_op), "the op fits its public storage");
_Static_assert(_Alignof(cor__io_op) <= _Alignof(cor_io_op), "and its alignment");
#if COR_AWAIT_SLOT_SIZE >= 256
_Static_assert(sizeof(struct cor_io_await) <= COR_AWAIT_SLOT_SIZE, "an op fits the await slot");
#endif

/* The op of a public handle. */
static inline cor__io_op *op_from(cor_io_op *pub)
{
    return (cor__io_op *)(void *)pub;
}

/* ---- in-flight lists ------------------------------------------------------------------ */

static void list_add(cor__op_list *l, cor__io_op *op)
{
    op->prev = NULL;
    op->next = l->head;
    if (l->head)
        l->head->prev = op;
    l->head = op;
    l->count++;
}

static void list_del(cor__op_list *l, cor__io_op *op)
{
    if (op->prev)
        op->prev->next = op->next;
    else
        l->head = op->next;
    if (op->next)
        op->next->prev = op->prev;
    l->count--;
}

/* ---- stop links ----------------------------------------------------------------------- */

struct cor__stop_link {
    cor_frame req;          /* posted to the owner by a stop from another thread   */
    cor_stop_callback cb;   /* registered on src while the link has operations     */
    cor_io_context *io;
    cor_stop_source *src;   /* NULL once retired                                   */
    cor__op_list ops;       /* the operations in flight under this source          */
    uint32_t queued;        /* req is in the remote queue (atomic)                 */
    uint32_t fired;         /* stop was requested (atomic)                         */
    cor__stop_link *free_next;
};

enum { LINKS_PER_CHUNK = 32 };

struct link_chunk {
    struct link_chunk *next;
    cor__stop_link links[LINKS_PER_CHUNK];
};

static unsigned link_hash(const cor_stop_source *src, unsigned mask)
{
    uint64_t x = (uint64_t)(uintptr_t)src;
    x ^= x >> 17;
    x *= 0x9e3779b97f4a7c15ull;
    return (unsigned)(x >> 40) & mask;
}

static cor__stop_link *link_find(cor_io_context *io, const cor_stop_source *src)
{
    if (!io->links_cap)
        return NULL;
    unsigned mask = io->links_cap - 1;
    for (unsigned i = link_hash(src, mask); io->links[i]; i = (i + 1) & mask)
        if (io->links[i]->src == src)
            return io->links[i];
    return NULL;
}

/* Inserts link (its src set, not in the table). Returns 0 or -ENOMEM. */
static int link_insert(cor_io_context *io, cor__stop_link *link)
{
    if ((io->links_used + 1) * 2 > io->links_cap) {
        unsigned cap = io->links_cap ? io->links_cap * 2 : 16;
        cor__stop_link **t = cor__fault_alloc() ? NULL : calloc(cap, sizeof *t);
        if (!t)
            return -ENOMEM;
        for (unsigned i = 0; i < io->links_cap; i++) {
            cor__stop_link *l = io->links[i];
            if (!l)
                continue;
            unsigned j = link_hash(l->src, cap - 1);
            while (t[j])
                j = (j + 1) & (cap - 1);
            t[j] = l;
        }
        free(io->links);
        io->links = t;
        io->links_cap = cap;
    }
    unsigned mask = io->links_cap - 1, i = link_hash(link->src, mask);
    while (io->links[i])
        i = (i + 1) & mask;
    io->links[i] = link;
    io->links_used++;
    return 0;
}

/* Removes link from the table (linear probing: the entries behind it shift back). */
static void link_remove(cor_io_context *io, cor__stop_link *link)
{
    unsigned mask = io->links_cap - 1, i = link_hash(link->src, mask);
    while (io->links[i] != link)
        i = (i + 1) & mask;
    io->links[i] = NULL;
    io->links_used--;
    for (unsigned j = (i + 1) & mask; io->links[j]; j = (j + 1) & mask) {
        unsigned k = link_hash(io->links[j]->src, mask);
        /* Move j back to the hole at i unless its home k lies cyclically in (i, j]. */
        bool stays = i <= j ? (i < k && k <= j) : (i < k || k <= j);
        if (!stays) {
            io->links[i] = io->links[j];
            io->links[j] = NULL;
            i = j;
        }
    }
}

static cor_handle link_request(cor_frame *f);

static cor__stop_link *link_alloc(cor_io_context *io)
{
    if (!io->links_free) {
        struct link_chunk *c = cor__fault_alloc() ? NULL : malloc(sizeof *c);
        if (!c)
            return NULL;
        c->next = io->link_chunks;
        io->link_chunks = c;
        for (int i = LINKS_PER_CHUNK - 1; i >= 0; i--) {
            cor__stop_link *l = &c->links[i];
            memset(l, 0, sizeof *l);
            /* In-slot and started: destroying the request frame must not free it. */
            cor__frame_init(&l->req, link_request, NULL, sizeof l->req, _Alignof(cor_frame),
                            COR_FRAME_IN_SLOT | COR_FRAME_STARTED, 0, 0);
            l->io = io;
            l->free_next = io->links_free;
            io->links_free = l;
        }
    }
    cor__stop_link *l = io->links_free;
    io->links_free = l->free_next;
    return l;
}

static void link_free(cor_io_context *io, cor__stop_link *l)
{
    l->free_next = io->links_free;
    io->links_free = l;
}

/* Cancels every operation of the link (none completes inline). Owner thread. */
static void link_cancel(cor__stop_link *l)
{
    for (cor__io_op *op = l->ops.head; op; op = op->next)
        cor__io_op_cancel(l->io, op);
}

/* The stop callback: any thread; it never blocks, so the owner may wait for it in deregister. */
static void link_fn(cor_stop_callback *cb)
{
    cor__stop_link *l = cor__container_of(cb, cor__stop_link, cb);
    __atomic_store_n(&l->fired, 1, __ATOMIC_RELEASE);
    if (cor__io_running == l->io) {
        link_cancel(l);
        return;
    }
    if (!__atomic_exchange_n(&l->queued, 1, __ATOMIC_ACQ_REL))
        cor__io_post_remote(l->io, &l->req);
}

/* The request frame, popped on the owner thread. */
static cor_handle link_request(cor_frame *f)
{
    cor__stop_link *l = cor__container_of(f, cor__stop_link, req);
    __atomic_store_n(&l->queued, 0, __ATOMIC_RELAXED);
    if (l->src)
        link_cancel(l);
    else
        link_free(l->io, l); /* retired while its request was queued */
    return COR_NOOP;
}

bool cor__io_is_link_request(const cor_frame *h)
{
    return h->resume == link_request;
}

void cor__io_link_request_destroyed(cor_frame *h)
{
    cor__stop_link *l = cor__container_of(h, cor__stop_link, req);
    __atomic_store_n(&l->queued, 0, __ATOMIC_RELAXED);
    if (!l->src)
        link_free(l->io, l);
}

/* The link of src on io, made and registered if it has none. NULL: no memory. */
static cor__stop_link *link_get(cor_io_context *io, cor_stop_source *src)
{
    cor__stop_link *l = link_find(io, src);
    if (l)
        return l;
    l = link_alloc(io);
    if (!l)
        return NULL;
    l->src = src;
    l->ops.head = NULL;
    l->ops.count = 0;
    __atomic_store_n(&l->fired, 0, __ATOMIC_RELAXED);
    if (link_insert(io, l)) {
        l->src = NULL;
        link_free(io, l);
        return NULL;
    }
    /* Stopped already: link_fn runs here and marks the link fired. */
    cor_stop_callback_register(&l->cb, cor_stop_source_token(src), link_fn);
    return l;
}

/* The link has no operations left: deregister and retire it. */
static void link_release(cor_io_context *io, cor__stop_link *l)
{
    link_remove(io, l);
    /* After this, link_fn is not running and never will (it may have queued the request). */
    cor_stop_callback_deregister(&l->cb);
    l->src = NULL;
    if (!__atomic_load_n(&l->queued, __ATOMIC_ACQUIRE))
        link_free(io, l);
}

void cor__io_links_destroy(cor_io_context *io, bool deregister)
{
    /* Links still holding operations belong to frames abandoned in flight:
     * their callbacks must not outlive the memory. */
    for (unsigned i = 0; deregister && i < io->links_cap; i++)
        if (io->links[i])
            cor_stop_callback_deregister(&io->links[i]->cb);
    free(io->links);
    io->links = NULL;
    io->links_cap = io->links_used = 0;
    while (io->link_chunks) {
        struct link_chunk *c = io->link_chunks;
        io->link_chunks = c->next;
        free(c);
    }
    io->links_free = NULL;
}

/* ---- creation ------------------------------------------------------------------------- */

static cor_handle op_start(cor_frame *f);

static void op_init(cor__io_op *op, int opcode)
{
    op->opcode = (uint8_t)opcode;
    op->fixed = 0;
    op->state = COR__OP_NEW;
    op->flags = 0;
    op->hints = 0;
    op->fd = -1;
    op->op_flags = 0;
    op->len = 0;
    op->stop = NULL;
    op->timer.slot = COR__TNODE_IDLE;
    op->timer.kind = COR__TNODE_OP;
}

struct cor_io_await *cor__io_await_new(int opcode, size_t size)
{
    struct cor_io_await *a;
    if (size <= sizeof *a)
        a = COR_LEAF_NEW(struct cor_io_await, op_start);
    else
        a = (struct cor_io_await *)cor__leaf_new(size, _Alignof(struct cor_io_await), op_start,
                                                 offsetof(struct cor_io_await, result),
                                                 sizeof(int));
    if (a)
        op_init(cor__op_of(a), opcode);
    return a;
}

struct cor_io_await *cor__io_await_fd(int opcode, int fd, bool valid)
{
    struct cor_io_await *a = cor__io_await_new(opcode, 0);
    if (a) {
        cor__io_op *op = cor__op_of(a);
        op->fd = fd;
        if (!valid)
            cor__io_op_invalid(op);
    }
    return a;
}

/* ---- completion ----------------------------------------------------------------------- */

/* Finishes op: the handle to run next (the awaiting frame, or what its executor says). */
static cor_handle op_finish(cor_io_context *io, cor__io_op *op)
{
    cor_frame *f = cor__op_frame(op);
    op->state = COR__OP_DONE;
    cor_executor ex = f->env.ex;
    cor_handle h = cor_leaf_complete(f);
    /* A coroutine on another executor (a strand, say) resumes through it. */
    if (h && ex.obj != (const void *)io)
        h = ex.ops->dispatch(ex.obj, h);
    return h;
}

/* Completes op at once, without starting it. */
static cor_handle op_now(cor__io_op *op, int res)
{
    cor_frame *f = cor__op_frame(op);
    ((struct cor_io_await *)f)->result = res;
    op->state = COR__OP_DONE;
    return cor_leaf_complete(f);
}

/*
 * The result the awaiting coroutine sees. A cancel the deadline asked for is
 * -ETIME. A new descriptor that arrived after the op was asked to stop is
 * closed: the awaiting coroutine has moved on and would leak it.
 */
static int op_result(cor__io_op *op, int res)
{
    bool timed_out = op->flags & COR__OPF_TIMED_OUT;
    if (op->opcode == COR__IO_STREAM_NEXT)
        res = cor__stream_next_result(op, res);
    else if (cor__io_opinfo[op->opcode].kind == COR__IO_NEWFD && res >= 0 &&
             (op->flags & COR__OPF_CANCEL_SENT)) {
        close(res);
        res = -ECANCELED;
    }
    if (res == -ECANCELED && timed_out)
        res = -ETIME;
    if (COR__UNLIKELY(op->flags & COR__OPF_INJECTED))
        res = op->fault; /* a CLOSE the fault seam fails after the backend closed */
    return res;
}

static inline void op_complete(cor_io_context *io, cor__io_op *op, int res)
{
    io->inflight--;
    /* Release: a metrics snapshot that reads this count (acquire) sees every start before it. */
    __atomic_store_n(&io->stats.completed, io->stats.completed + 1, __ATOMIC_RELEASE);
    if (op->stop) {
        cor__stop_link *l = op->stop;
        list_del(&l->ops, op);
        op->stop = NULL;
        if (!l->ops.count)
            link_release(io, l);
    } else {
        list_del(&io->plain, op);
    }
    if (cor__wheel_holds(&op->timer))
        cor__wheel_remove(&io->wheel, &op->timer);
    if (op->opcode == COR__IO_TIMEOUT)
        cor__timeout_finish(op);
    cor_frame *f = cor__op_frame(op);
    /* Only a stream's result, or an op that was canceled, timed out or failed by the fault seam,
     * needs mapping. */
    if (COR__UNLIKELY(
            (op->flags & (COR__OPF_CANCEL_SENT | COR__OPF_TIMED_OUT | COR__OPF_INJECTED)) ||
            op->opcode == COR__IO_STREAM_NEXT))
        res = op_result(op, res);
    ((struct cor_io_await *)f)->result = res;
    if (COR__UNLIKELY(io->closing)) {
        op->state = COR__OP_DONE;
        cor_frame_destroy(f);
        return;
    }
    cor_resume(op_finish(io, op));
}

void cor__io_complete(cor__io_op *op, int res)
{
    op_complete(cor__io_running, op, res);
}

void cor__io_op_done_later(cor_io_context *io, cor__io_op *op, int res)
{
    op->bk[0] = 0;
    op->bk[1] = (uint64_t)(int64_t)res;
    if (io->done_last)
        io->done_last->bk[0] = (uint64_t)(uintptr_t)op;
    else
        io->done_head = op;
    io->done_last = op;
}

long cor__io_deliver_done(cor_io_context *io, long max)
{
    /* At most what is queued now, not what the resumed coroutines queue. */
    cor__io_op *last = io->done_last;
    long n = 0;
    while (n < max && io->done_head) {
        cor__io_op *op = io->done_head;
        io->done_head = (cor__io_op *)(uintptr_t)op->bk[0];
        if (!io->done_head)
            io->done_last = NULL;
        op_complete(io, op, (int)(int64_t)op->bk[1]);
        n++;
        if (op == last)
            break;
    }
    return n;
}

/* ---- cancel --------------------------------------------------------------------------- */

void cor__io_op_cancel(cor_io_context *io, cor__io_op *op)
{
    if (op->state != COR__OP_IN_FLIGHT || (op->flags & COR__OPF_CANCEL_SENT))
        return;
    op->flags |= COR__OPF_CANCEL_SENT;
    if (COR__UNLIKELY(op->flags & COR__OPF_INJECTED))
        return; /* a fault the seam injected: its completion is queued already (or a CLOSE) */
    if (cor__io_opinfo[op->opcode].wait == COR__IO_WAIT_FRONT) {
        /* A sleep or timer wait: off the wheel, finished from the run loop (unless it fired). */
        if (cor__wheel_holds(&op->timer)) {
            cor__wheel_remove(&io->wheel, &op->timer);
            cor__io_op_done_later(io, op, -ECANCELED);
        }
        return;
    }
    io->be_ops->cancel(io->be, op);
}

static void cancel_list(cor_io_context *io, cor__op_list *l)
{
    for (cor__io_op *op = l->head; op; op = op->next)
        cor__io_op_cancel(io, op);
}

/* Cancels the ops of l that live in the front end only (sleeps, timer waits). */
static void cancel_front_list(cor_io_context *io, cor__op_list *l)
{
    for (cor__io_op *op = l->head; op; op = op->next)
        if (cor__io_opinfo[op->opcode].wait == COR__IO_WAIT_FRONT)
            cor__io_op_cancel(io, op);
}

void cor__io_cancel_front(cor_io_context *io)
{
    cancel_front_list(io, &io->plain);
    for (unsigned i = 0; i < io->links_cap; i++)
        if (io->links[i])
            cancel_front_list(io, &io->links[i]->ops);
}

void cor__io_cancel_all(cor_io_context *io)
{
    cancel_list(io, &io->plain);
    for (unsigned i = 0; i < io->links_cap; i++)
        if (io->links[i])
            cancel_list(io, &io->links[i]->ops);
    /* Whatever else the backend holds (the front end sent what it knows). */
    io->be_ops->cancel_all(io->be);
}

/* A deadline fired: the op is canceled (it then completes with -ETIME) unless a stop came first. */
void cor__io_op_deadline_fired(cor_io_context *io, cor__io_op *op)
{
    if (op->flags & COR__OPF_CANCEL_SENT)
        return;
    op->flags |= COR__OPF_TIMED_OUT;
    cor__io_op_cancel(io, op);
}

/* ---- start ---------------------------------------------------------------------------- */

/* The seam: every submission to a backend passes here, and the fault plan with it (fault.c). */
static int seam_submit(cor_io_context *io, cor__io_op *op)
{
    cor__stat_add(io->stats.submitted, 1);
#if COR_FAULT_INJECTION
    if (COR__UNLIKELY(io->faults.kind) && cor__fault_op(io, op))
        return 0;
#endif
    return io->be_ops->submit(io->be, op);
}

/* Hands op to the backend, or to the wheel for a sleep or a timer wait. Returns 0 or -errno. */
static int op_issue(cor_io_context *io, cor__io_op *op, const struct cor__io_opinfo *info)
{
    return info->wait == COR__IO_WAIT_FRONT ? cor__timeout_start(io, op) : seam_submit(io, op);
}

/* op was issued: it is in flight, on its stop link's list (or the plain one), its deadline on
 * the wheel. */
static void op_in_flight(cor_io_context *io, cor__io_op *op, const struct cor__io_opinfo *info,
                         cor__stop_link *link)
{
    op->state = COR__OP_IN_FLIGHT;
    io->inflight++;
    cor__stat_add(io->stats.started, 1);
    op->stop = link;
    list_add(link ? &link->ops : &io->plain, op);
    if ((op->flags & COR__OPF_DEADLINE) && info->wait != COR__IO_WAIT_FRONT) {
        if (op->flags & COR__OPF_DEADLINE_REL) {
            op->flags &= (uint8_t)~COR__OPF_DEADLINE_REL;
            cor__wheel_add_after(&io->wheel, &op->timer);
        } else {
            cor__wheel_add(&io->wheel, &op->timer);
        }
    }
}

/*
 * Makes op's deadline absolute (a relative one counts from now, the op's
 * start; beyond the clock's range it is INT64_MAX: never) with the one clock
 * read a deadline costs. True if it has already passed.
 */
static bool deadline_passed(cor__io_op *op)
{
    int64_t now = cor_clock_now();
    if (op->flags & COR__OPF_DEADLINE_REL) {
        op->flags &= (uint8_t)~COR__OPF_DEADLINE_REL;
        op->timer.when = cor__time_add(now, op->timer.when);
    }
    return op->timer.when <= now;
}

/* op's deadline is a delay from its start (> 0) that the wheel may place later (add_after). */
static bool deadline_after(const cor__io_op *op, const struct cor__io_opinfo *info)
{
    return (op->flags & COR__OPF_DEADLINE_REL) && op->timer.when > 0 &&
           info->wait != COR__IO_WAIT_FRONT;
}

/*
 * Starts an op with something to check: a stop token, a deadline, a
 * registered file, or a mark its constructor left (bad arguments).
 */
static __attribute__((noinline)) cor_handle op_start_checked(cor_io_context *io, cor_frame *f,
                                                             cor__io_op *op)
{
    if (op->flags & (COR__OPF_EINVAL | COR__OPF_EPERM))
        return op_now(op, (op->flags & COR__OPF_EINVAL) ? -EINVAL : -EPERM);
    const struct cor__io_opinfo *info = &cor__io_opinfo[op->opcode];
    if (COR__UNLIKELY(op->fixed) && !io->be_ops->files_register)
        return op_now(op, -EOPNOTSUPP);
    cor_stop_source *src = f->env.stop.src;
    if (COR__UNLIKELY(info->kind == COR__IO_CLEANUP)) {
        /* Cleanup is never canceled: it runs whatever the token or a deadline says. */
        src = NULL;
        op->flags &= (uint8_t) ~(COR__OPF_DEADLINE | COR__OPF_DEADLINE_REL);
    } else {
        if (src && __atomic_load_n(&src->stopped, __ATOMIC_ACQUIRE))
            return op_now(op, -ECANCELED);
        int64_t limit = src ? __atomic_load_n(&src->op_timeout, __ATOMIC_RELAXED) : 0;
        if (COR__UNLIKELY(limit) && info->wait != COR__IO_WAIT_FRONT &&
            !(op->flags & COR__OPF_DEADLINE)) {
            /* The token's time limit (an idle timeout): a deadline of its own for this op. */
            op->timer.when = limit;
            op->flags |= COR__OPF_DEADLINE | COR__OPF_DEADLINE_REL;
        }
        /* A deadline already past: the op is not issued (a regular-file read, once issued,
         * would run to completion whatever its deadline). A delay from now (an idle
         * timeout, COR_DEADLINE_AFTER) reads no clock: the wheel places it at its next pass
         * (op_in_flight), and an op that completes before then costs no clock read at all. */
        if ((op->flags & COR__OPF_DEADLINE) && !deadline_after(op, info) && deadline_passed(op))
            return op_now(op, -ETIME);
        if (op->flags & COR__OPF_DEADLINE)
            op->hints |= COR__IO_HINT_BOUNDED;
    }
    cor__stop_link *link = NULL;
    if (src) {
        link = link_get(io, src);
        if (!link)
            return op_now(op, -ENOMEM);
        if (COR__UNLIKELY(__atomic_load_n(&link->fired, __ATOMIC_ACQUIRE))) {
            if (!link->ops.count)
                link_release(io, link);
            return op_now(op, -ECANCELED);
        }
    }
    int rc = op_issue(io, op, info);
    if (COR__UNLIKELY(rc)) {
        if (link && !link->ops.count)
            link_release(io, link);
        return op_now(op, rc);
    }
    op_in_flight(io, op, info, link);
    return COR_NOOP;
}

/*
 * The resume function of every op frame: called once, by the await, to
 * start it. The common op (no stop token, no deadline, a plain descriptor,
 * good arguments) goes straight to the backend; the others are checked in
 * op_start_checked.
 */
static cor_handle op_start(cor_frame *f)
{
    cor__io_op *op = (cor__io_op *)(void *)&((struct cor_io_await *)f)->op;
    cor_io_context *io = cor__io_running;
    if (!io || (f->env.ex.ops == &cor__io_executor_ops && f->env.ex.obj != io) ||
        cor__io_forked(io))
        return op_now(op, -EPERM);
    if (COR__UNLIKELY(op->flags || op->fixed || f->env.stop.src))
        return op_start_checked(io, f, op);
    const struct cor__io_opinfo *info = &cor__io_opinfo[op->opcode];
    int rc = op_issue(io, op, info);
    if (COR__UNLIKELY(rc))
        return op_now(op, rc);
    op_in_flight(io, op, info, NULL);
    return COR_NOOP;
}

/* ---- what a dump says about an operation --------------------------------------------- */

static int walk_list(const cor__op_list *l, int (*fn)(void *arg, cor__io_op *op), void *arg)
{
    int rc = 0;
    for (cor__io_op *op = l->head; op && !rc; op = op->next)
        rc = fn(arg, op);
    return rc;
}

int cor__io_ops_walk(cor_io_context *io, int (*fn)(void *arg, cor__io_op *op), void *arg)
{
    int rc = walk_list(&io->plain, fn, arg);
    for (unsigned i = 0; !rc && i < io->links_cap; i++)
        if (io->links[i])
            rc = walk_list(&io->links[i]->ops, fn, arg);
    return rc;
}

bool cor__io_is_op_frame(const cor_frame *f)
{
    return f->resume == op_start;
}

/* Appends ", <what> in|passed <t> s" for the absolute time when, seen at now. */
static void say_when(cor__text *t, const char *what, int64_t when, int64_t now)
{
    int64_t d = when - now;
    cor__text_put(t, ", %s %s %.3f s", what, d < 0 ? "passed" : "in",
                  (double)(d < 0 ? -d : d) / 1e9);
}

void cor__io_describe_op(const cor_frame *f, cor__text *t, int64_t now)
{
    const cor__io_op *op = (const cor__io_op *)(const void *)&((const struct cor_io_await *)f)->op;
    const struct cor__io_opinfo *info = &cor__io_opinfo[op->opcode];
    if (op->opcode == COR__IO_TIMEOUT)
        cor__text_put(t, "%s", op->u.tmo.timer ? "TIMER wait" : "SLEEP");
    else
        cor__text_put(t, "%s", info->name);
    if (info->fd)
        cor__text_put(t, op->fixed ? " registered file %d" : " fd %d", op->fd);
    if (op->opcode == COR__IO_TIMEOUT && !(op->flags & COR__OPF_DEADLINE_FIRST))
        say_when(t, "expires", op->timer.when, now);
    else if ((op->flags & COR__OPF_DEADLINE_REL) || cor__wheel_waits_placing(&op->timer))
        cor__text_put(t, ", deadline %.3f s after its start", (double)op->timer.when / 1e9);
    else if (op->flags & COR__OPF_DEADLINE)
        say_when(t, "deadline", op->timer.when, now);
    else
        cor__text_put(t, ", no deadline");
    if (op->state == COR__OP_NEW)
        cor__text_put(t, ", not started");
    else if (op->state == COR__OP_DONE)
        cor__text_put(t, ", done");
    else if (op->flags & COR__OPF_CANCEL_SENT)
        cor__text_put(t, ", canceled, its completion pending");
}

/* ---- the public calls ----------------------------------------------------------------- */

struct cor_io_await *cor_nop(void)
{
    return cor__io_await_new(COR__IO_NOP, 0);
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

int cor_io_op_deadline_at(cor_io_op *pub, int64_t abs_ns)
{
    if (!pub)
        return -EINVAL;
    cor__io_op *op = op_from(pub);
    if (op->state != COR__OP_NEW)
        return -EINVAL;
    if (abs_ns <= 0) {
        cor__io_op_invalid(op);
        return -EINVAL;
    }
    op->timer.when = abs_ns;
    op->flags = (uint8_t)((op->flags | COR__OPF_DEADLINE) & ~COR__OPF_DEADLINE_REL);
    return 0;
}

int cor_io_op_deadline_after(cor_io_op *pub, int64_t ns)
{
    if (!pub)
        return -EINVAL;
    cor__io_op *op = op_from(pub);
    if (op->state != COR__OP_NEW)
        return -EINVAL;
    if (ns < 0) {
        cor__io_op_invalid(op);
        return -EINVAL;
    }
    /* No clock read here: the start resolves it (deadline_passed) with the one it makes. */
    op->timer.when = ns;
    op->flags |= COR__OPF_DEADLINE | COR__OPF_DEADLINE_REL;
    return 0;
}

int cor_io_op_fixed(cor_io_op *pub)
{
    if (!pub)
        return -EINVAL;
    cor__io_op *op = op_from(pub);
    if (op->state != COR__OP_NEW)
        return -EINVAL;
    if (!cor__io_opinfo[op->opcode].fixed) {
        cor__io_op_invalid(op); /* documented: the op completes with -EINVAL */
        return -EINVAL;
    }
    op->fixed = 1;
    return 0;
}
