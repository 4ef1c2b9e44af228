/*
 * Provided buffer rings and multishot streams, for servers: a multishot
 * accept stream hands out every connection of a listener from one armed
 * request; a multishot receive stream delivers the data of one socket into
 * buffers of a ring shared by many sockets, so a thousand idle connections
 * hold no buffer. io_uring only: on the epoll backend these calls return
 * -EOPNOTSUPP (README, "The epoll baseline", lists each backend).
 *
 * An io_context destroyed with streams still open or buffer rings not yet
 * destroyed (their coroutines torn down with it) frees them itself.
 *
 * Threading: every call here is made on the io_context's driving thread
 * (from a coroutine or handler running on it), or while no thread drives it
 * by a thread that may drive it; otherwise it returns -EPERM (or, for
 * cor_stream_next, its await completes with -EPERM).
 */
#ifndef CORING_STREAM_H
#define CORING_STREAM_H

#include "coring/common.h"
#include "coring/io_context.h"
#include "coring/io_op.h"

COR_BEGIN_DECLS

/*
 * A provided buffer ring: count buffers of size bytes that the kernel fills
 * as data arrives. Opaque; owned by one io_context and used on its thread.
 */
typedef struct cor_buf_ring cor_buf_ring;

/*
 * A buffer handed to a coroutine by a receive stream, or a piece of one (a
 * ring consumed incrementally). Return it with cor_buf_ring_put, as it was
 * received: every piece separately.
 */
typedef struct cor_buf {
    void *data;       /* the bytes (valid until put back)                 */
    unsigned id;      /* the index in its ring of the buffer they are in  */
    unsigned holder_; /* internal: who it was handed to                   */
} cor_buf;

/* Flags of cor_buf_ring_create_flags (and cor_buf_ring_flags). */
enum {
    /*
     * Incremental consumption (kernel 6.12+, COR_IO_BUF_INCREMENTAL in
     * cor_io_context_features): a receive takes only the bytes it fills from
     * the ring's current buffer, and the next receive, of any stream on the
     * ring, goes on in the same buffer. A stream then hands out pieces: data
     * points into buffer id at the piece's offset, and a buffer goes back to
     * the kernel once the kernel has moved past it and every piece of it is
     * put back. Small messages from many connections then share buffers
     * instead of taking one each. A receive may end at a buffer's end
     * (the rest of the message is the stream's next result).
     */
    COR_BUF_RING_INCREMENTAL = 1u << 0
};

/*
 * Creates a ring of count buffers (a power of two, 1..32768) of size bytes
 * (1..1 MiB) on io. Returns 0 and *out (the caller owns it; destroy it
 * after every stream using it is closed), -EINVAL, -EOPNOTSUPP (backend or
 * kernel without buffer rings), -ENOMEM, -EPERM off the driving thread,
 * or the kernel's -errno.
 */
COR_API int cor_buf_ring_create(cor_buf_ring **out, cor_io_context *io, unsigned count,
                                unsigned size);

/*
 * As cor_buf_ring_create, with COR_BUF_RING_* flags. A flag the kernel
 * cannot honour is left out (the ring works without it); cor_buf_ring_flags
 * says what is in force. Unknown flags: -EINVAL.
 */
COR_API int cor_buf_ring_create_flags(cor_buf_ring **out, cor_io_context *io, unsigned count,
                                      unsigned size, unsigned flags);

/* The COR_BUF_RING_* flags in force on r (0 for NULL). Any thread. */
COR_API unsigned cor_buf_ring_flags(const cor_buf_ring *r);

/*
 * Gives buffer b (or piece b) back to ring r so the kernel may fill it
 * again. Returns 0; -EINVAL for NULL arguments, a buffer that is not r's or
 * one that is not out (given back already: on an incremental ring this is
 * seen only once no piece of that buffer is out); -EPERM off the driving
 * thread (the buffer is then still the caller's). On an incremental ring a
 * piece put back twice while other pieces of its buffer are out returns 0
 * and counts as one of them: the buffer may then go back to the kernel
 * while a piece is still being read, and be overwritten under it. Put each
 * piece back exactly once.
 */
COR_API int cor_buf_ring_put(cor_buf_ring *r, const cor_buf *b);

/*
 * Unregisters and frees r. Returns 0; -EINVAL for NULL; -EBUSY while a
 * receive stream using r is open (close it first); -EPERM off the driving
 * thread. On an error r is untouched.
 */
COR_API int cor_buf_ring_destroy(cor_buf_ring *r);

/* A multishot stream: one kernel request yielding many results. Opaque. */
typedef struct cor_stream cor_stream;

/*
 * Opens a multishot accept stream on listening socket fd: one armed request
 * accepts every connection; cor_stream_next hands them out in order.
 * Returns 0 and *out (close it with cor_stream_close), -EINVAL,
 * -EOPNOTSUPP (backend without streams), -ENOMEM, -EPERM off the driving
 * thread.
 */
COR_API int cor_accept_stream_open(cor_stream **out, cor_io_context *io, int fd);

/*
 * Opens a multishot receive stream on connected socket fd: data lands in
 * buffers of ring r. Returns as cor_accept_stream_open.
 */
COR_API int cor_recv_stream_open(cor_stream **out, cor_io_context *io, int fd, cor_buf_ring *r);

/*
 * Awaitable: the next result of stream s. Accept stream: a descriptor (the
 * awaiting coroutine owns it) or -errno; a connection that arrives for a
 * waiter already asked to stop is closed (the result is then -ECANCELED, or
 * -ETIME at a deadline). Receive stream: the byte count with *buf set to
 * the buffer (or piece) that holds them (give it back with
 * cor_buf_ring_put), 0 once the peer ended the stream, or -errno (-ENOMEM
 * once results arrived faster than they were taken and there was no memory
 * to queue them: the stream has ended, after the results it queued). When
 * the ring runs dry the stream
 * pauses and resumes by itself as soon as any buffer is put back; -ENOBUFS
 * is the answer only if the ring is dry and buffers from this stream are
 * still held (put them back, await again). One waiter per stream at a time
 * (a second one completes with -EBUSY). Honours stop tokens and deadlines
 * like every operation. Awaited off s's driving thread: -EPERM; NULL s, or
 * a receive stream without buf: -EINVAL.
 */
COR_API struct cor_io_await *cor_stream_next(cor_stream *s, cor_buf *buf);

/*
 * Closes stream s (not the socket) and frees it: a pending cor_stream_next
 * completes with -ECANCELED (also one whose result was already on its way
 * but not yet delivered: what it carried goes back), queued descriptors
 * are closed and queued buffers go back to the ring. Returns 0; -EINVAL for
 * NULL; -EPERM off the driving thread (s is then still open).
 */
COR_API int cor_stream_close(cor_stream *s);

COR_END_DECLS

#endif
