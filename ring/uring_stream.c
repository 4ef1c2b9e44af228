/*
 * The io_uring backend, stream half: provided buffer rings
 * (IORING_REGISTER_PBUF_RING) and multishot streams (accept, and recv with
 * buffer selection). See io_seam.h (stream_open) for the contract.
 *
 * A stream keeps one multishot request armed in the kernel and queues its
 * results until COR__IO_STREAM_NEXT ops take them, in order. Those ops
 * never enter the kernel themselves: a result is handed to the waiting op
 * through the ready list, which a run delivers like a CQE: after its CQEs
 * (what they decided, in the same pass) and before its enter (what
 * handlers decided, the next pass). The queue
 * starts in the stream itself (STREAM_INLINE results) and grows on the heap
 * when results pile up (it never shrinks). A receive stream whose queue
 * cannot grow ends with -ENOMEM after what it queued; an accept stream's
 * closes the connection, and the next waiter learns -ENOMEM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "coring/io_context.h"
#include "coring/stream.h"
#include "uring.h"

/*
 * Who holds pieces handed out by a ring's streams: one per receive stream,
 * kept after the stream is freed until its user has put every piece back,
 * so that a late put never reaches a freed stream.
 */
struct holder {
    cor__stream *st;    /* NULL once the stream is freed   */
    unsigned held;      /* pieces handed out, not put back */
    unsigned next_free; /* on the free list                */
};
#define NO_HOLDER 0xffffffffu

/*
 * A provided buffer ring. A buffer goes back to the kernel once the kernel
 * has moved past it (done) and no piece of it is queued or handed out
 * (refs). A whole-buffer ring hands out each buffer as one piece; an
 * incremental one (IOU_PBUF_RING_INC) as many, each where the kernel's
 * previous receive into that buffer stopped (off).
 */
struct cor__bufring {
    struct io_uring_buf_ring *ring; /* shared with the kernel (mmap)        */
    size_t map_len;
    char *mem; /* buffer i at mem + i * size           */
    unsigned count, size, mask;
    uint16_t bgid;
    bool inc;       /* incremental consumption               */
    uint32_t tail;  /* ring positions filled so far (ours)  */
    uint16_t *slot; /* the buffer id at ring position p & mask */
    uint32_t *pos;  /* the ring position buffer i was put at */
    uint32_t *off;  /* bytes of buffer i the kernel filled   */
    uint32_t *refs; /* pieces of buffer i queued or out      */
    uint8_t *done;  /* the kernel moved past buffer i        */
    struct holder *holders;
    unsigned nholders, free_holder;
    cor__stream *parked; /* streams stopped by -ENOBUFS          */
};

/* A result a stream holds for its next waiter (a receive: a piece of buffer id at off). */
struct shot {
    int32_t res;
    uint32_t id, off;
};

/*
 * Results a stream queues in itself. Taken as they come (the usual case), a
 * stream's results stay on its own cache lines: a queue sized up front for a
 * whole ring (24 KiB a stream at 2,048 buffers) sent every queued result to
 * a line that a thousand such queues, a page-multiple apart, kept evicting
 * from each other (a cache miss per message at 1,000 connections).
 */
#define STREAM_INLINE 4

struct cor__stream {
    cor__backend *b;
    cor__bufring *br; /* receive streams                          */
    int kind, fd;
    bool armed;  /* the multishot request is in the kernel   */
    bool closed; /* the user closed it: free once disarmed   */
    bool parked; /* on br->parked                            */
    bool ended;  /* a receive stream saw its end: end_res    */
    int32_t end_res;
    int32_t lost;    /* an accepted connection could not be queued: -ENOMEM for the next waiter */
    unsigned holder; /* receive streams: its entry in br->holders */
    cor__io_op *waiter;
    struct shot *q; /* circular queue of results: inq, or the heap */
    size_t qhead, qlen, qcap;
    cor__stream *next, *prev, *park_next;
    struct shot inq[STREAM_INLINE];
};

/* ---- buffer rings ----------------------------------------------------------------------- */

/* Registers br's ring with the kernel, incremental if inc. Returns 0 or -errno. */
static int bufring_register(cor__backend *b, void *ring, unsigned count, uint16_t bgid, bool inc)
{
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)ring;
    reg.ring_entries = count;
    reg.bgid = bgid;
    reg.pad = inc ? IOU_PBUF_RING_INC : 0; /* the kernel's io_uring_buf_reg.flags */
    return io_uring_register_buf_ring(&b->ring, &reg, 0);
}

bool cor__uring_bufring_probe_incremental(cor__backend *b)
{
    void *ring = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (ring == MAP_FAILED)
        return false;
    io_uring_buf_ring_init(ring);
    bool ok = bufring_register(b, ring, 1, 0xffff, true) == 0;
    if (ok)
        io_uring_unregister_buf_ring(&b->ring, 0xffff);
    munmap(ring, 4096);
    return ok;
}

static void bufring_free(cor__bufring *br)
{
    free(br->slot);
    free(br->pos);
    free(br->off);
    free(br->refs);
    free(br->done);
    free(br->holders);
    free(br);
}

int cor__uring_bufring_create(cor__backend *b, cor__bufring **out, void *mem, unsigned count,
                              unsigned size, unsigned *flags)
{
    cor__bufring *br = calloc(1, sizeof *br);
    if (!br)
        return -ENOMEM;
    br->slot = calloc(count, sizeof *br->slot);
    br->pos = calloc(count, sizeof *br->pos);
    br->off = calloc(count, sizeof *br->off);
    br->refs = calloc(count, sizeof *br->refs);
    br->done = calloc(count, sizeof *br->done);
    br->free_holder = NO_HOLDER;
    br->map_len = (count * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
    /* liburing 2.3 has no io_uring_setup_buf_ring: map the ring, then register it. */
    void *ring =
        mmap(NULL, br->map_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    int rc = -ENOMEM;
    if (!br->slot || !br->pos || !br->off || !br->refs || !br->done || ring == MAP_FAILED)
        goto fail;
    br->ring = ring;
    br->mem = mem;
    br->count = count;
    br->size = size;
    br->mask = (unsigned)io_uring_buf_ring_mask(count);
    br->bgid = b->next_bgid++;
    br->inc = (*flags & COR_BUF_RING_INCREMENTAL) && (b->features & COR_IO_BUF_INCREMENTAL);
    io_uring_buf_ring_init(br->ring);
    rc = bufring_register(b, ring, count, br->bgid, br->inc);
    if (rc) {
        if (rc == -EINVAL || rc == -ENOSYS)
            rc = -EOPNOTSUPP; /* a kernel without buffer rings */
        goto fail;
    }
    for (unsigned i = 0; i < count; i++) {
        io_uring_buf_ring_add(br->ring, br->mem + (size_t)i * size, size, (unsigned short)i,
                              (int)br->mask, (int)i);
        br->slot[i] = (uint16_t)i;
        br->pos[i] = i;
    }
    br->tail = count;
    io_uring_buf_ring_advance(br->ring, (int)count);
    *flags = br->inc ? COR_BUF_RING_INCREMENTAL : 0;
    *out = br;
    return 0;
fail:
    if (ring != MAP_FAILED)
        munmap(ring, br->map_len);
    bufring_free(br);
    return rc;
}

static void stream_arm(cor__stream *st);

/* Buffer id goes back to the kernel if the kernel is past it and no piece of it is left. */
static void buffer_release(cor__bufring *br, unsigned id)
{
    if (br->refs[id] || !br->done[id])
        return;
    br->done[id] = 0;
    br->off[id] = 0;
    io_uring_buf_ring_add(br->ring, br->mem + (size_t)id * br->size, br->size, (unsigned short)id,
                          (int)br->mask, 0);
    br->slot[br->tail & br->mask] = (uint16_t)id;
    br->pos[id] = br->tail++;
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

/* A queued piece of buffer id is dropped (its stream closed or broke). */
static void piece_drop(cor__bufring *br, unsigned id)
{
    br->refs[id]--;
    buffer_release(br, id);
}

/* Takes a holder entry for stream st: its index, or NO_HOLDER without memory. */
static unsigned holder_take(cor__bufring *br, cor__stream *st)
{
    unsigned h = br->free_holder;
    if (h == NO_HOLDER) {
        unsigned n = br->nholders ? br->nholders * 2 : 16;
        struct holder *t = cor__fault_alloc() ? NULL : realloc(br->holders, n * sizeof *t);
        if (!t)
            return NO_HOLDER;
        for (unsigned i = br->nholders; i < n; i++)
            t[i] = (struct holder){NULL, 0, i + 1 < n ? i + 1 : NO_HOLDER};
        br->holders = t;
        br->free_holder = h = br->nholders;
        br->nholders = n;
    }
    br->free_holder = br->holders[h].next_free;
    br->holders[h] = (struct holder){st, 0, NO_HOLDER};
    return h;
}

/* Holder h is done with once its stream is freed and every piece it holds is back. */
static void holder_settle(cor__bufring *br, unsigned h)
{
    struct holder *e = &br->holders[h];
    if (e->st || e->held)
        return;
    e->next_free = br->free_holder;
    br->free_holder = h;
}

int cor__uring_bufring_put(cor__backend *b, cor__bufring *br, unsigned id, unsigned off,
                           unsigned holder)
{
    (void)b;
    if (id >= br->count || holder >= br->nholders || !br->holders[holder].held ||
        !br->refs[id] || (br->inc ? off >= br->off[id] : off != 0))
        return -EINVAL;
    br->holders[holder].held--;
    holder_settle(br, holder);
    br->refs[id]--;
    buffer_release(br, id);
    return 0;
}

void cor__uring_bufring_destroy(cor__backend *b, cor__bufring *br)
{
    /* Streams closed but not yet freed (their cancel is on the way) forget the ring. */
    for (cor__stream *st = b->streams; st; st = st->next)
        if (st->br == br)
            st->br = NULL;
    io_uring_unregister_buf_ring(&b->ring, br->bgid);
    munmap(br->ring, br->map_len);
    bufring_free(br);
}

/* ---- streams ---------------------------------------------------------------------------- */

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
    if (st->armed || st->closed || st->ended || st->parked || b->closing ||
        cor__uring_reserve(b, 1))
        return;
    struct io_uring_sqe *sqe = cor__uring_sqe(b);
    if (st->kind == COR__STREAM_ACCEPT) {
        io_uring_prep_multishot_accept(sqe, st->fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
    } else {
        io_uring_prep_recv_multishot(sqe, st->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = st->br->bgid;
        if (b->bundles)
            sqe->ioprio |= IORING_RECVSEND_BUNDLE; /* one completion may fill several buffers */
    }
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)st | UD_STREAM);
    st->armed = true;
}

/* Releases what a queued result holds (a descriptor, a piece of a buffer). */
static void shot_drop(cor__stream *st, struct shot sh)
{
    if (st->kind == COR__STREAM_ACCEPT && sh.res >= 0)
        close(sh.res);
    else if (st->kind == COR__STREAM_RECV && sh.res > 0)
        piece_drop(st->br, sh.id);
}

/* Takes the oldest queued result. An emptied queue starts again at its first slot. */
static struct shot shot_pop(cor__stream *st)
{
    struct shot sh = st->q[st->qhead];
    st->qhead = --st->qlen ? (st->qhead + 1 == st->qcap ? 0 : st->qhead + 1) : 0;
    return sh;
}

static void stream_free(cor__stream *st)
{
    cor__backend *b = st->b;
    while (st->qlen)
        shot_drop(st, shot_pop(st));
    if (st->br) {
        unpark(st);
        /* What its user still holds stays counted on the holder until put back. */
        st->br->holders[st->holder].st = NULL;
        holder_settle(st->br, st->holder);
    }
    if (st->prev)
        st->prev->next = st->next;
    else
        b->streams = st->next;
    if (st->next)
        st->next->prev = st->prev;
    if (st->q != st->inq)
        free(st->q);
    free(st);
}

/* Gives the queue room for cap results. Returns false if no memory. */
static bool shot_reserve(cor__stream *st, size_t cap)
{
    if (cap <= st->qcap)
        return true;
    struct shot *q = cor__fault_alloc() ? NULL : malloc(cap * sizeof *q);
    if (!q)
        return false;
    for (size_t i = 0; i < st->qlen; i++)
        q[i] = st->q[(st->qhead + i) % st->qcap];
    if (st->q != st->inq)
        free(st->q);
    st->q = q;
    st->qhead = 0;
    st->qcap = cap;
    return true;
}

/* Queues a result; false if it could not be queued (no memory to grow the queue). */
static bool shot_push(cor__stream *st, int32_t res, uint32_t id, uint32_t off)
{
    if (st->qlen == st->qcap && !shot_reserve(st, st->qcap * 2))
        return false;
    size_t i = st->qhead + st->qlen++;
    st->q[i < st->qcap ? i : i - st->qcap] = (struct shot){res, id, off};
    return true;
}

/* Queues a piece, keeping a place for the stream's end. False if the queue cannot grow. */
static bool piece_push(cor__stream *st, int32_t res, uint32_t id, uint32_t off)
{
    if (st->qlen + 1 >= st->qcap && !shot_reserve(st, st->qcap * 2))
        return false;
    return shot_push(st, res, id, off);
}

/* Completes the waiting op with res (and piece sh, handed to holder) from the next run. */
static void next_finish(cor__backend *b, cor__io_op *op, int32_t res, struct shot sh,
                        unsigned holder)
{
    op->bk[1] = ((uint64_t)(uint32_t)res << 32) | sh.id;
    op->op_flags = sh.off;
    op->len = holder;
    op->bk_flags |= BK_READY;
    cor__uring_fifo_push(&b->ready, &b->ready_last, op);
}

static const struct shot NO_PIECE = {0, 0, 0};

long cor__uring_stream_deliver(cor__backend *b, long max)
{
    long n = 0;
    cor__io_op *last = b->ready_last;
    while (n < max && b->ready) {
        cor__io_op *op = cor__uring_fifo_pop(&b->ready, &b->ready_last);
        op->bk_pending = 0;
        op->bk_flags = 0;
        cor__io_complete(op, (int32_t)(uint32_t)(op->bk[1] >> 32));
        n++;
        if (op == last)
            break; /* what the handlers made ready waits for the next round */
    }
    return n;
}

/* Hands the oldest queued result (or the lost connection's -ENOMEM) to the waiter. */
static void stream_deliver(cor__stream *st)
{
    cor__io_op *op = st->waiter;
    if (!op || (!st->qlen && !st->lost))
        return;
    st->waiter = NULL;
    if (!st->qlen) {
        st->lost = 0;
        next_finish(st->b, op, -ENOMEM, NO_PIECE, 0);
        return;
    }
    struct shot sh = shot_pop(st);
    if (st->kind == COR__STREAM_RECV && sh.res > 0)
        st->br->holders[st->holder].held++;
    next_finish(st->b, op, sh.res, sh, st->holder);
}

/* True if a waiter of st must hear -ENOBUFS: the ring is dry and st's user holds pieces. */
static bool must_put_back(const cor__stream *st)
{
    return st->parked && !st->qlen && st->br->holders[st->holder].held;
}

/*
 * A receive stream's queue could not grow: the stream ends with -ENOMEM
 * after what is queued, and its request is canceled (what it still brings
 * is dropped on arrival).
 */
static void stream_break(cor__stream *st)
{
    st->ended = true;
    st->end_res = -ENOMEM;
    if (st->armed && cor__uring_reserve(st->b, 1) == 0) {
        struct io_uring_sqe *sqe = cor__uring_sqe(st->b);
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)st | UD_STREAM, 0);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
    }
}

/*
 * res bytes landed in ring buffers from buffer bid's ring position on,
 * starting where the kernel left bid (at 0 unless the ring is incremental):
 * each buffer filled to its end but the last (a bundle spans several). The
 * kernel is past every one of them, but the last of an incremental ring if
 * the completion says BUF_MORE. Each piece becomes a result of its own if
 * keep (so a waiter always gets one piece), else goes back at once. (The
 * positions cannot have been refilled: that takes a whole ring's worth of
 * releases, and these buffers are not back.)
 */
static void take_pieces(cor__stream *st, int32_t res, uint32_t bid, uint32_t flags, bool keep)
{
    cor__bufring *br = st->br;
    uint32_t p = br->pos[bid];
    uint32_t left = res > 0 ? (uint32_t)res : 0;
    if (!left) {
        /* An empty result: a whole-buffer ring's kernel still took the buffer. */
        if (!br->inc) {
            br->done[bid] = 1;
            buffer_release(br, bid);
        }
        return;
    }
    for (;;) {
        uint32_t id = br->slot[p & br->mask], off = br->off[id];
        uint32_t n = left < br->size - off ? left : br->size - off;
        left -= n;
        if (br->inc)
            br->off[id] = off + n;
        if (left || !(flags & IORING_CQE_F_BUF_MORE))
            br->done[id] = 1;
        br->refs[id]++;
        if (keep && !piece_push(st, (int32_t)n, id, off)) {
            stream_break(st);
            keep = false;
        }
        if (!keep)
            piece_drop(br, id);
        if (!left)
            return;
        p++;
    }
}

void cor__uring_stream_cqe(cor__backend *b, cor__stream *st, int32_t res, uint32_t flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        st->armed = false;
    bool has_buf = st->kind == COR__STREAM_RECV && (flags & IORING_CQE_F_BUFFER) && st->br;
    uint32_t bid = has_buf ? flags >> IORING_CQE_BUFFER_SHIFT : 0;
    if (st->closed || (st->kind == COR__STREAM_RECV && st->ended)) {
        /* Closed, or broken (stream_break): what still comes is dropped. */
        if (st->kind == COR__STREAM_ACCEPT && res >= 0)
            close(res);
        if (has_buf)
            take_pieces(st, res, bid, flags, false);
        if (st->closed && !st->armed)
            stream_free(st);
        return;
    }
    if (st->kind == COR__STREAM_RECV) {
        if (res == -ENOBUFS && !st->armed) {
            /* Out of buffers: wait for one to come back, unless this
             * stream's own user holds some and waits (it must put them back). */
            cor__stat_add(b->stats.buffer_waits, 1);
            st->parked = true;
            st->park_next = st->br->parked;
            st->br->parked = st;
            if (st->waiter && must_put_back(st)) {
                cor__io_op *op = st->waiter;
                st->waiter = NULL;
                next_finish(b, op, -ENOBUFS, NO_PIECE, 0);
            }
            return;
        }
        if (res == -ECANCELED && !st->armed && b->closing)
            return;
        if (has_buf && res > 0) {
            take_pieces(st, res, bid, flags, true);
            stream_deliver(st);
            return;
        }
        if (has_buf)
            take_pieces(st, res, bid, flags, false);
        if (res <= 0 && !st->armed) {
            st->ended = true;
            st->end_res = res;
        }
    } else if (res == -ECANCELED && !st->armed && b->closing) {
        return;
    }
    if (!shot_push(st, res, 0, 0) && st->kind == COR__STREAM_ACCEPT) {
        /* A receive stream's end fits (piece_push keeps room for it); an accept stream
         * out of room closes the connection, and the next waiter is told. */
        close(res);
        st->lost = -ENOMEM;
    }
    stream_deliver(st);
}

int cor__uring_stream_open(cor__backend *b, cor__stream **out, int kind, int fd, cor__bufring *br)
{
    cor__stream *st = cor__fault_alloc() ? NULL : calloc(1, sizeof *st);
    if (!st)
        return -ENOMEM;
    st->q = st->inq;
    st->qcap = STREAM_INLINE;
    if (br && (st->holder = holder_take(br, st)) == NO_HOLDER) {
        free(st);
        return -ENOMEM;
    }
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

/*
 * st closes while a result it handed to its waiter is still on the ready
 * list: the waiter gets -ECANCELED instead, as a close promises, and what
 * the result carried (a piece of a buffer, a descriptor) goes back. Its
 * delivery would otherwise hand over a buffer of a ring that may be gone.
 */
static void recall_handed(cor__backend *b, cor__stream *st)
{
    for (cor__io_op *op = b->ready; op; op = (cor__io_op *)(uintptr_t)op->bk[0]) {
        if (op->u.next.stream != st)
            continue;
        struct shot sh = {(int32_t)(uint32_t)(op->bk[1] >> 32), (uint32_t)op->bk[1], 0};
        if (st->kind == COR__STREAM_RECV && sh.res > 0 && st->br) {
            st->br->holders[op->len].held--; /* counted when it was handed (stream_deliver) */
            shot_drop(st, sh);
        } else if (st->kind == COR__STREAM_ACCEPT) {
            shot_drop(st, sh);
        }
        op->bk[1] = (uint64_t)(uint32_t)-ECANCELED << 32;
        op->op_flags = 0;
        op->len = 0;
    }
}

void cor__uring_stream_close(cor__backend *b, cor__stream *st)
{
    st->closed = true;
    recall_handed(b, st);
    if (st->waiter) {
        cor__io_op *op = st->waiter;
        st->waiter = NULL;
        next_finish(b, op, -ECANCELED, NO_PIECE, 0);
    }
    if (!st->armed) {
        stream_free(st);
        return;
    }
    /* Its queue is dropped now; what the kernel still posts is dropped on arrival. */
    while (st->qlen)
        shot_drop(st, shot_pop(st));
    if (cor__uring_reserve(b, 1) == 0) {
        struct io_uring_sqe *sqe = cor__uring_sqe(b);
        io_uring_prep_cancel64(sqe, (uint64_t)(uintptr_t)st | UD_STREAM, 0);
        io_uring_sqe_set_data64(sqe, UD_IGNORE);
    }
}

int cor__uring_stream_next(cor__backend *b, cor__io_op *op)
{
    cor__stream *st = op->u.next.stream;
    if (st->b != b)
        return -EPERM;
    if (st->waiter)
        return -EBUSY;
    op->bk_flags = 0;
    op->bk_pending = 1;
    st->waiter = op;
    if (st->qlen || st->lost) {
        stream_deliver(st);
        return 0;
    }
    if (st->ended) {
        st->waiter = NULL;
        next_finish(b, op, st->end_res, NO_PIECE, 0);
        return 0;
    }
    if (st->br && must_put_back(st)) {
        st->waiter = NULL;
        next_finish(b, op, -ENOBUFS, NO_PIECE, 0);
        return 0;
    }
    stream_arm(st);
    return 0;
}

void cor__uring_stream_cancel(cor__backend *b, cor__io_op *op)
{
    if (op->bk_flags & BK_READY)
        return; /* its result is on the way (its stream may be gone already) */
    cor__stream *st = op->u.next.stream;
    st->waiter = NULL;
    next_finish(b, op, -ECANCELED, NO_PIECE, 0);
}

void cor__uring_streams_cancel(cor__backend *b)
{
    for (cor__stream *st = b->streams; st; st = st->next)
        if (st->waiter)
            cor__uring_stream_cancel(b, st->waiter);
}

void cor__uring_streams_free(cor__backend *b)
{
    while (b->streams)
        stream_free(b->streams);
}
