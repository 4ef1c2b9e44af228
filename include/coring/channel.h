/*
 * Channels: a bounded queue of fixed-size items between coroutines, on one
 * executor or on several threads. A send suspends while the channel is full,
 * a receive while it is empty; each resumes on its own executor. Closing
 * wakes everyone: senders get -EPIPE, receivers drain what is left and then
 * get -EPIPE. Waiting is cancellable through the stop token, and a canceled
 * send or receive moves nothing: no item is lost or delivered twice.
 *
 *     cor_channel ch;
 *     cor_channel_init(&ch, sizeof(struct job), 64, NULL);    64 jobs, buffer allocated
 *     COR_AWAIT(self->rc, cor_channel_send(&ch, &self->job));     0, or -EPIPE once closed
 *     COR_AWAIT(self->rc, cor_channel_recv(&ch, &self->job));     0, or -EPIPE: closed and empty
 *     cor_channel_close(&ch);
 *     cor_channel_destroy(&ch);
 *
 * One short spin lock guards the buffer and the waiters (a local channel,
 * used from one thread, takes none); an item is copied once into the buffer
 * and once out (or straight from a waiting sender to a waiting receiver).
 * Sends and receives live in the awaiting frame's await slot: nothing is
 * allocated per item. COR_CHANNEL_SEND / COR_CHANNEL_RECV skip the await
 * while the channel has room or items.
 */
#ifndef CORING_CHANNEL_H
#define CORING_CHANNEL_H

#include <string.h>

#include "coring/common.h"
#include "coring/sync.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/* A channel. Caller-owned and fixed-size (embed it); fields are the library's. */
typedef struct cor_channel {
    cor__wait_list waiters; /* senders (full) or receivers (empty), never both */
    char *buf;              /* capacity items of item_size bytes               */
    size_t item_size, capacity;
    size_t head, count; /* the oldest item, how many are buffered          */
    uint32_t closed, owned;
    unsigned flags;       /* COR_CHANNEL_*                                   */
    unsigned long thread; /* a local channel's thread (pthread_t)            */
} cor_channel;

/*
 * Channel flags (cor_channel_init_flags).
 *  COR_CHANNEL_LOCAL: every send, receive, close and query comes from the
 *    thread that initialized the channel (coroutines of one executor that
 *    runs on one thread, such as an io_context). The channel then takes no
 *    lock at all; a call from another thread fails with -EPERM (an await
 *    completes with it).
 */
enum { COR_CHANNEL_LOCAL = 1u << 0 };

/*
 * Initializes ch for items of item_size bytes (1..65536) with room for
 * capacity of them (1..2^24), in buf (item_size * capacity bytes, which must
 * outlive ch) or, if buf is NULL, in a buffer ch allocates. Thread-safe.
 * Returns 0; -EINVAL for NULL ch or sizes out of range; -ENOMEM.
 */
COR_API int cor_channel_init(cor_channel *ch, size_t item_size, size_t capacity, void *buf);

/* As cor_channel_init with COR_CHANNEL_* flags (-EINVAL for unknown ones). Any thread. */
COR_API int cor_channel_init_flags(cor_channel *ch, size_t item_size, size_t capacity, void *buf,
                                   unsigned flags);

/*
 * Ends the life of ch and frees its own buffer. Returns 0; -EBUSY while a
 * coroutine waits on it (close it and let them go first); -EINVAL for NULL.
 */
COR_API int cor_channel_destroy(cor_channel *ch);

/*
 * Awaitable: sends the item at `item` (item_size bytes, copied; it must
 * stay valid until the send completes). Result: 0 once the item is in the
 * channel (or in a receiver's hands); -EPIPE if the channel is closed (the
 * item was not sent); -ECANCELED if stop was requested while it waited
 * (not sent); -EINVAL for NULL arguments. NULL if no memory (the await
 * fails with -ENOMEM).
 */
COR_API cor_sync_wait *cor_channel_send(cor_channel *ch, const void *item);

/*
 * Awaitable: receives the oldest item into `out` (item_size bytes). Result:
 * 0 with *out filled; -EPIPE once the channel is closed and empty;
 * -ECANCELED if stop was requested while it waited (nothing was taken);
 * -EINVAL for NULL arguments. Under COR_TIMEOUT (compose.h) the timeout
 * can win the race with a send that already handed the item over: the
 * item is then in *out although the await says -ETIMEDOUT. Where no item
 * may be missed, wait with a stop token instead and fire it from a timer:
 * the receive's -ECANCELED means nothing was taken.
 */
COR_API cor_sync_wait *cor_channel_recv(cor_channel *ch, void *out);

/* Sends without waiting: 0, -EAGAIN if full, -EPIPE if closed, -EINVAL. Any thread. */
COR_API int cor_channel_try_send(cor_channel *ch, const void *item);

/* Receives without waiting: 0, -EAGAIN if empty, -EPIPE if closed and empty, -EINVAL. Any thread.
 */
COR_API int cor_channel_try_recv(cor_channel *ch, void *out);

/*
 * Inside a coroutine: sends *item as COR_AWAIT(rc, cor_channel_send(ch,
 * item)) would, but takes the fast path first: no await at all while there
 * is room (on a local channel, no call either: the copy is inlined). item
 * points to the item's type; a size that is not the channel's item_size
 * gives -EINVAL.
 */
#define COR_CHANNEL_SEND(rc, ch, item)                                                             \
    do {                                                                                           \
        (rc) = cor__channel_send_fast((ch), (item), sizeof *(item));                               \
        if ((rc) == -EAGAIN)                                                                       \
            COR_AWAIT(rc, cor_channel_send((ch), (item)));                                         \
    } while (0)

/* Inside a coroutine: receives into *out as cor_channel_recv would, fast path first. */
#define COR_CHANNEL_RECV(rc, ch, out)                                                              \
    do {                                                                                           \
        (rc) = cor__channel_recv_fast((ch), (out), sizeof *(out));                                 \
        if ((rc) == -EAGAIN)                                                                       \
            COR_AWAIT(rc, cor_channel_recv((ch), (out)));                                          \
    } while (0)

/*
 * Closes ch: waiting senders complete with -EPIPE, later sends fail with
 * -EPIPE; receivers get the items still buffered, then -EPIPE. Returns 0
 * (also when already closed) or -EINVAL. Any thread.
 */
COR_API int cor_channel_close(cor_channel *ch);

/*
 * The number of items buffered now (0 for NULL; 0 also for a LOCAL channel
 * asked from another thread than its own). Any thread.
 */
COR_API size_t cor_channel_size(cor_channel *ch);

/* ---- internals: the fast paths of the macros above. Not for direct use. ---- */

/* The calling thread's identity, as a local channel records it (a thread-local address). */
static inline unsigned long cor__thread_id(void)
{
    return (unsigned long)(uintptr_t)&cor__tls;
}

/* True if ch is a local channel used from its thread with nobody waiting: no lock needed. */
static inline bool cor__channel_alone(cor_channel *ch)
{
    return (ch->flags & COR_CHANNEL_LOCAL) && ch->thread == cor__thread_id() &&
           !__atomic_load_n(&ch->waiters.head, __ATOMIC_ACQUIRE) && !ch->closed;
}

/*
 * Copies an item. Items of whole 8-byte words are moved a word at a time:
 * a caller usually has just written the item field by field, and one wider
 * load across those narrower stores would wait for them to reach the cache
 * (a store-forwarding stall of about ten cycles, more than the copy).
 */
static inline void cor__channel_copy(void *dst, const void *src, size_t size)
{
    if (size % 8 == 0 && size <= 64) {
        for (size_t i = 0; i < size; i += 8) {
            uint64_t w;
            memcpy(&w, (const char *)src + i, 8);
            __asm__("" : "+r"(w)); /* one word at a time: do not merge the moves */
            memcpy((char *)dst + i, &w, 8);
        }
    } else {
        memcpy(dst, src, size);
    }
}

static inline int cor__channel_send_fast(cor_channel *ch, const void *item, size_t size)
{
    if (!ch || !item || size != ch->item_size)
        return -EINVAL;
    if (!cor__channel_alone(ch) || ch->count == ch->capacity)
        return cor_channel_try_send(ch, item);
    size_t k = ch->head + ch->count;
    if (k >= ch->capacity)
        k -= ch->capacity;
    cor__channel_copy(ch->buf + k * size, item, size);
    ch->count++;
    return 0;
}

static inline int cor__channel_recv_fast(cor_channel *ch, void *out, size_t size)
{
    if (!ch || !out || size != ch->item_size)
        return -EINVAL;
    if (!cor__channel_alone(ch) || !ch->count)
        return cor_channel_try_recv(ch, out);
    cor__channel_copy(out, ch->buf + ch->head * size, size);
    if (++ch->head == ch->capacity)
        ch->head = 0;
    ch->count--;
    return 0;
}

COR_END_DECLS

#endif
