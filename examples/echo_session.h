/*
 * The echo session of echo_server (and of bench/bench_echo, which runs the
 * same code in-process): send every byte back until the peer closes, the
 * connection idles out, or stop.
 *
 * On io_uring the fast path is a multishot receive: one armed request
 * delivers the connection's data into buffers of a ring that every session
 * of the thread shares (a thousand idle connections hold no buffer), and
 * each buffer goes back to the ring as soon as its bytes are sent. Where the
 * backend has no multishot receive (epoll), or the ring cannot be made, the
 * session reads into a buffer of its own with cor_recv.
 */
#ifndef CORING_EXAMPLES_ECHO_SESSION_H
#define CORING_EXAMPLES_ECHO_SESSION_H

#include <coring/coring.h>

/*
 * Two buffers per connection at a thousand connections: a session holds the
 * buffer it is echoing until the send completes, and its peer's next message
 * may already have taken another. With fewer, receives stop for lack of
 * buffers (cor_io_metrics.buffer_waits) and wait for one to come back, which
 * at 1,000 connections tripled the p99 round trip (25-29 ms against 11-13).
 */
enum { ECHO_RING_BUFFERS = 2048, ECHO_BUFFER = 4096 };

/* The buffer ring of this thread's io_context, shared by its sessions. */
static __thread struct echo_ring {
    cor_buf_ring *ring;
    long users;
    bool unavailable; /* the backend or kernel has none: do not ask again */
} echo_ring;

/* The thread's ring (made on first use), or NULL: then use cor_recv. */
static cor_buf_ring *echo_ring_get(void)
{
    if (echo_ring.unavailable)
        return NULL;
    if (!echo_ring.ring &&
        cor_buf_ring_create_flags(&echo_ring.ring, cor_io_context_current(), ECHO_RING_BUFFERS,
                                  ECHO_BUFFER, COR_BUF_RING_INCREMENTAL) != 0) {
        echo_ring.ring = NULL;
        echo_ring.unavailable = true;
        return NULL;
    }
    echo_ring.users++;
    return echo_ring.ring;
}

/* The last session of the thread frees the ring (its streams are all closed by then). */
static void echo_ring_put(void)
{
    if (--echo_ring.users == 0) {
        cor_buf_ring_destroy(echo_ring.ring);
        echo_ring.ring = NULL;
    }
}

/* The fallback: cor_recv into the frame's own buffer, one MSG_WAITALL send back. */
struct echo_plain {
    COR_PROMISE(int);
    int fd, n, err;
    ssize_t sent;
    char buf[ECHO_BUFFER];
};
COR_DEFINE_STATIC(echo_plain, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    for (;;) {
        COR_TRY_AWAIT(self->err, self->n, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
        if (self->err || self->n <= 0)
            break; /* 0: the peer closed; -ETIME: idle; -ECANCELED: shutdown; else an error */
        COR_TRY_AWAIT(self->err, self->sent,
                      cor_send(self->fd, self->buf, (size_t)self->n, MSG_WAITALL));
        if (self->err || self->sent != self->n)
            break; /* fewer bytes than asked: an error came after them, or a stop */
    }
    COR_RETURN(0);
}

/* One connection; its frame holds no data buffer (the ring's buffers carry the bytes). */
struct echo_session {
    COR_PROMISE(int);
    int fd, n, err;
    ssize_t sent;
    cor_buf_ring *ring;
    cor_stream *stream;
    cor_buf b;
};
COR_DEFINE_STATIC(echo_session, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    self->ring = echo_ring_get();
    if (!self->ring ||
        cor_recv_stream_open(&self->stream, cor_io_context_current(), self->fd, self->ring) != 0) {
        COR_TRY_AWAIT(self->err, self->n, echo_plain(self->fd));
    } else {
        for (;;) {
            COR_TRY_AWAIT(self->err, self->n, cor_stream_next(self->stream, &self->b));
            if (self->err || self->n <= 0)
                break;
            /* One send for the whole message: with MSG_WAITALL the backend itself
             * finishes a short send (io_uring's kernel retries on a stream socket),
             * so the session needs no task of its own (cor_send_all) to loop.
             * Fewer bytes than asked: an error came after them, or a stop. */
            COR_TRY_AWAIT(self->err, self->sent,
                          cor_send(self->fd, self->b.data, (size_t)self->n, MSG_WAITALL));
            cor_buf_ring_put(self->ring, &self->b);
            if (self->err || self->sent != self->n)
                break;
        }
        cor_stream_close(self->stream);
    }
    if (self->ring)
        echo_ring_put();
    COR_RETURN(0); /* the server loop closes fd */
}

/* The cor_session_fn of the echo servers. */
static cor_frame *echo_new_session(void *user, int fd)
{
    (void)user;
    return COR_FRAME(echo_session(fd));
}

#endif
