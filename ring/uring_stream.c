/*
 * The io_uring backend, stream half: provided buffer rings
 * (IORING_REGISTER_PBUF_RING) and multishot streams (accept, and recv with
 * buffer selection). See io_seam.h (stream_open) for the contract.
 *
 * A stream keeps one multishot request armed in the kernel and queues its
 * results until COR__IO_STREAM_NEXT ops take them, in order. Those ops
 * never enter the kernel themselves: a result is handed to the waiting op
 * through the ready list, which the next run delivers like a CQE. A receive
 * stream's queue is sized once, at open, for every buffer of its ring plus
 * its end, so it never grows; an accept stream's queue grows, and if it
 * cannot, the connection is closed and the next waiter learns -ENOMEM.
 */
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include "uring.h"

/* A provided buffer ring. */
struct cor__bufring {
    struct io_uring_buf_ring *ring; /* shared with the kernel (mmap)        */
    size_t map_len;
    char *mem; /* buffer i at mem + i * size           */
    unsigned count, size, mask;
    uint16_t bgid;
    uint32_t tail;       /* ring positions filled so far (ours)  */
    uint16_t *slot;      /* the buffer id at ring position p & mask */
    uint32_t *pos;       /* the ring position buffer i was put at */
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
    int32_t lost; /* an accepted connection could not be queued: -ENOMEM for the next waiter */
    unsigned held; /* buffers handed out and not yet put back  */
    cor__io_op *waiter;
    struct shot *q; /* circular queue of results                */
    size_t qhead, qlen, qcap;
    cor__stream *next, *prev, *park_next;
};

/* ---- buffer rings ----------------------------------------------------------------------- */

int cor__uring_bufring_create(cor__backend *b, cor__bufring **out, void *mem, unsigned count,
                              unsigned size)
{
    cor__bufring *br = calloc(1, sizeof *br);
    if (!br)
        return -ENOMEM;
    br->owner = calloc(count, sizeof *br->owner);
    br->slot = calloc(count, sizeof *br->slot);
    br->pos = calloc(count, sizeof *br->pos);
    br->map_len = (count * sizeof(struct io_uring_buf) + 4095) & ~(size_t)4095;
    /* liburing 2.3 has no io_uring_setup_buf_ring: map the ring, then register it. */
    void *ring =
        mmap(NULL, br->map_len, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    int rc = -ENOMEM;
    if (!br->owner || !br->slot || !br->pos || ring == MAP_FAILED)
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
    for (unsigned i = 0; i < count; i++) {
        io_uring_buf_ring_add(br->ring, br->mem + (size_t)i * size, size, (unsigned short)i,
                              (int)br->mask, (int)i);
        br->slot[i] = (uint16_t)i;
        br->pos[i] = i;
    }
    br->tail = count;
    io_uring_buf_ring_advance(br->ring, (int)count);
    *out = br;
    return 0;
fail:
    if (ring != MAP_FAILED)
        munmap(ring, br->map_len);
    free(br->owner);
    free(br->slot);
    free(br->pos);
    free(br);
    return rc;
}

static void stream_arm(cor__stream *st);

void cor__uring_bufring_put(cor__backend *b, cor__bufring *br, unsigned id)
{
    (void)b;
    cor__stream *o = br->owner[id];
    if (o) {
        o->held--;
        br->owner[id] = NULL;
    }
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

void cor__uring_bufring_destroy(cor__backend *b, cor__bufring *br)
{
    io_uring_unregister_buf_ring(&b->ring, br->bgid);
    munmap(br->ring, br->map_len);
    free(br->owner);
    free(br->slot);
    free(br->pos);
    free(br);
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

/* Releases what a queued result holds (a descriptor, a buffer). */
static void shot_drop(cor__stream *st, struct shot sh)
{
    if (st->kind == COR__STREAM_ACCEPT && sh.res >= 0)
        close(sh.res);
    else if (st->kind == COR__STREAM_RECV && sh.res > 0)
        cor__uring_bufring_put(st->b, st->br, sh.bid);
}

static struct shot shot_pop(cor__stream *st)
{
    struct shot sh = st->q[st->qhead];
    st->qhead = (st->qhead + 1) % st->qcap;
    st->qlen--;
    return sh;
}

static void stream_free(cor__stream *st)
{
    cor__backend *b = st->b;
    while (st->qlen)
        shot_drop(st, shot_pop(st));
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
    free(st->q);
    st->q = q;
    st->qhead = 0;
    st->qcap = cap;
    return true;
}

/* Queues a result; false if it could not be queued (an accept stream out of memory). */
static bool shot_push(cor__stream *st, int32_t res, uint32_t bid)
{
    if (st->qlen == st->qcap && !shot_reserve(st, st->qcap ? st->qcap * 2 : 16))
        return false;
    st->q[(st->qhead + st->qlen++) % st->qcap] = (struct shot){res, bid};
    return true;
}

/* Completes the waiting op with res (and buffer id bid) from the next run. */
static void next_finish(cor__backend *b, cor__io_op *op, int32_t res, uint32_t bid)
{
    op->bk[1] = ((uint64_t)(uint32_t)res << 32) | bid;
    op->bk_flags |= BK_READY;
    cor__uring_fifo_push(&b->ready, &b->ready_last, op);
}

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
        next_finish(st->b, op, -ENOMEM, 0);
        return;
    }
    struct shot sh = shot_pop(st);
    if (st->kind == COR__STREAM_RECV && sh.res > 0) {
        st->br->owner[sh.bid] = st;
        st->held++;
    }
    next_finish(st->b, op, sh.res, sh.bid);
}

/*
 * A bundle: res bytes in consecutive ring positions from buffer bid's, each
 * buffer full but the last. Each buffer becomes a result of its own, so a
 * waiter always gets one buffer. (The positions cannot have been refilled:
 * that takes a whole ring's worth of puts, and these buffers are not back.)
 */
static void push_bundle(cor__stream *st, int32_t res, uint32_t bid)
{
    cor__bufring *br = st->br;
    uint32_t p = br->pos[bid];
    for (uint32_t left = (uint32_t)res; left; p++) {
        uint32_t n = left < br->size ? left : br->size;
        shot_push(st, (int32_t)n, br->slot[p & br->mask]); /* sized at open: cannot fail */
        left -= n;
    }
}

void cor__uring_stream_cqe(cor__backend *b, cor__stream *st, int32_t res, uint32_t flags)
{
    if (!(flags & IORING_CQE_F_MORE))
        st->armed = false;
    bool has_buf = st->kind == COR__STREAM_RECV && (flags & IORING_CQE_F_BUFFER);
    uint32_t bid = has_buf ? flags >> IORING_CQE_BUFFER_SHIFT : 0;
    if (st->closed) {
        if (st->kind == COR__STREAM_ACCEPT && res >= 0)
            close(res);
        if (has_buf)
            cor__uring_bufring_put(b, st->br, bid);
        if (!st->armed)
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
            if (st->waiter && !st->qlen && st->held) {
                cor__io_op *op = st->waiter;
                st->waiter = NULL;
                next_finish(b, op, -ENOBUFS, 0);
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
    if (has_buf && (uint32_t)res > st->br->size) {
        push_bundle(st, res, bid);
        stream_deliver(st);
        return;
    }
    if (!shot_push(st, res, bid)) {
        /* Only an accept stream can run out of room (a receive stream's queue is sized at
         * open): the connection is closed, and the next waiter is told. */
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
    /* A receive stream queues at most every buffer of its ring and its end. */
    if (br && !shot_reserve(st, (size_t)br->count + 2)) {
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

void cor__uring_stream_close(cor__backend *b, cor__stream *st)
{
    st->closed = true;
    if (st->waiter) {
        cor__io_op *op = st->waiter;
        st->waiter = NULL;
        next_finish(b, op, -ECANCELED, 0);
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
        next_finish(b, op, st->end_res, 0);
        return 0;
    }
    if (st->parked && st->held) {
        st->waiter = NULL;
        next_finish(b, op, -ENOBUFS, 0);
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
    next_finish(b, op, -ECANCELED, 0);
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
