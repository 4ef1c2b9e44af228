/*
 * Provided buffer rings and multishot streams (stream.h) over the
 * backend's optional calls, with the driving-thread check every call of
 * stream.h makes; the STREAM_NEXT operation's constructor and result.
 */
#include <stdlib.h>
#include <unistd.h>

#include "coring/file.h"
#include "coring/stream.h"
#include "internal.h"
#include "io_internal.h"

struct cor_buf_ring {
    cor_buf_ring *next, **pprev; /* on io->rings */
    cor_io_context *io;
    cor__bufring *br;
    char *mem;
    unsigned count, size;
    unsigned flags;   /* COR_BUF_RING_* in force                  */
    unsigned streams; /* receive streams using it, not yet closed */
};

struct cor_stream {
    cor_stream *next, **pprev; /* on io->streams */
    cor_io_context *io;
    cor__stream *s;
    cor_buf_ring *ring; /* receive streams */
};

/* The handles a context holds, so that its destroy frees what its users left open. */
#define HANDLE_LINK(head, h)                                                                       \
    do {                                                                                           \
        (h)->next = *(head);                                                                       \
        if ((h)->next)                                                                             \
            (h)->next->pprev = &(h)->next;                                                         \
        (h)->pprev = (head);                                                                       \
        *(head) = (h);                                                                             \
    } while (0)
#define HANDLE_UNLINK(h)                                                                           \
    do {                                                                                           \
        *(h)->pprev = (h)->next;                                                                   \
        if ((h)->next)                                                                             \
            (h)->next->pprev = (h)->pprev;                                                         \
    } while (0)

int cor_buf_ring_create(cor_buf_ring **out, cor_io_context *io, unsigned count, unsigned size)
{
    return cor_buf_ring_create_flags(out, io, count, size, 0);
}

int cor_buf_ring_create_flags(cor_buf_ring **out, cor_io_context *io, unsigned count,
                              unsigned size, unsigned flags)
{
    if (!out || !io || count == 0 || count > 32768 || (count & (count - 1)) || size == 0 ||
        size > (1u << 20) || (flags & ~(unsigned)COR_BUF_RING_INCREMENTAL))
        return -EINVAL;
    if (!io->be_ops->bufring_create)
        return -EOPNOTSUPP;
    bool held;
    int rc = cor__io_owner_enter(io, &held);
    if (rc)
        return rc;
    rc = -ENOMEM;
    cor_buf_ring *r = calloc(1, sizeof *r);
    if (!r)
        goto out;
    r->mem = cor_file_alloc_aligned((size_t)count * size, 4096);
    if (!r->mem)
        goto fail;
    rc = io->be_ops->bufring_create(io->be, &r->br, r->mem, count, size, &flags);
    if (rc)
        goto fail;
    r->io = io;
    r->count = count;
    r->size = size;
    r->flags = flags;
    HANDLE_LINK(&io->rings, r);
    *out = r;
    goto out;
fail:
    free(r->mem);
    free(r);
out:
    cor__io_owner_leave(io, held);
    return rc;
}

unsigned cor_buf_ring_flags(const cor_buf_ring *r)
{
    return r ? r->flags : 0;
}

int cor_buf_ring_put(cor_buf_ring *r, const cor_buf *b)
{
    if (!r || !b || b->id >= r->count)
        return -EINVAL;
    const char *start = r->mem + (size_t)b->id * r->size;
    if ((const char *)b->data < start || (const char *)b->data >= start + r->size)
        return -EINVAL;
    bool held;
    int rc = cor__io_owner_enter(r->io, &held);
    if (rc)
        return rc;
    rc = r->io->be_ops->bufring_put(r->io->be, r->br, b->id,
                                    (unsigned)((const char *)b->data - start), b->holder_);
    cor__io_owner_leave(r->io, held);
    return rc;
}

int cor_buf_ring_destroy(cor_buf_ring *r)
{
    if (!r)
        return -EINVAL;
    if (r->streams)
        return -EBUSY;
    bool held;
    int rc = cor__io_owner_enter(r->io, &held);
    if (rc)
        return rc;
    r->io->be_ops->bufring_destroy(r->io->be, r->br);
    HANDLE_UNLINK(r);
    cor__io_owner_leave(r->io, held);
    free(r->mem);
    free(r);
    return 0;
}

static int stream_open(cor_stream **out, cor_io_context *io, int fd, int kind, cor_buf_ring *r)
{
    if (!out || !io || fd < 0 || (kind == COR__STREAM_RECV && (!r || r->io != io)))
        return -EINVAL;
    if (!io->be_ops->stream_open)
        return -EOPNOTSUPP;
    bool held;
    int rc = cor__io_owner_enter(io, &held);
    if (rc)
        return rc;
    rc = -ENOMEM;
    cor_stream *s = calloc(1, sizeof *s);
    if (s && (rc = io->be_ops->stream_open(io->be, &s->s, kind, fd, r ? r->br : NULL)) == 0) {
        s->io = io;
        s->ring = r;
        if (r)
            r->streams++;
        HANDLE_LINK(&io->streams, s);
        *out = s;
    } else {
        free(s);
    }
    cor__io_owner_leave(io, held);
    return rc;
}

int cor_accept_stream_open(cor_stream **out, cor_io_context *io, int fd)
{
    return stream_open(out, io, fd, COR__STREAM_ACCEPT, NULL);
}

int cor_recv_stream_open(cor_stream **out, cor_io_context *io, int fd, cor_buf_ring *r)
{
    return stream_open(out, io, fd, COR__STREAM_RECV, r);
}

struct cor_io_await *cor_stream_next(cor_stream *s, cor_buf *buf)
{
    struct cor_io_await *a = cor__io_await_new(COR__IO_STREAM_NEXT, 0);
    if (!a)
        return NULL;
    cor__io_op *op = cor__op_of(a);
    if (!s || (s->ring && !buf)) {
        cor__io_op_invalid(op);
        return a;
    }
    /* Awaited off s's driving thread: the backend refuses it at the start (-EPERM). */
    op->u.next.stream = s->s;
    op->u.next.ring = s->ring;
    op->u.next.out = s->ring ? buf : NULL;
    return a;
}

int cor__stream_next_result(cor__io_op *op, int res)
{
    cor_buf *out = op->u.next.out;
    if (out) {
        if (res > 0) {
            const cor_buf_ring *r = op->u.next.ring;
            out->id = (uint32_t)op->bk[1];
            out->data = r->mem + (size_t)out->id * r->size + op->op_flags;
            out->holder_ = op->len;
        }
        return res;
    }
    /* An accept stream: a connection handed to a waiter that was asked to stop is closed. */
    if (res >= 0 && (op->flags & COR__OPF_CANCEL_SENT)) {
        close(res);
        return -ECANCELED;
    }
    return res;
}

int cor_stream_close(cor_stream *s)
{
    if (!s)
        return -EINVAL;
    bool held;
    int rc = cor__io_owner_enter(s->io, &held);
    if (rc)
        return rc;
    s->io->be_ops->stream_close(s->io->be, s->s);
    HANDLE_UNLINK(s);
    cor__io_owner_leave(s->io, held);
    if (s->ring)
        s->ring->streams--;
    free(s);
    return 0;
}

void cor__stream_handles_free(cor_io_context *io)
{
    /* A closed stream the kernel still holds is freed with the backend. */
    while (io->streams) {
        cor_stream *s = io->streams;
        io->streams = s->next;
        io->be_ops->stream_close(io->be, s->s);
        free(s);
    }
    while (io->rings) {
        cor_buf_ring *r = io->rings;
        io->rings = r->next;
        io->be_ops->bufring_destroy(io->be, r->br);
        free(r->mem);
        free(r);
    }
}
