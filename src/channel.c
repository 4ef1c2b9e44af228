/*
 * Channels (channel.h) on the wait list of sync.c. With capacity >= 1 the
 * waiters are all senders (the buffer is full) or all receivers (it is
 * empty), so one list and its lock guard everything. A waiter's `arg` is its
 * item: the sender's, to copy from, or the receiver's destination. Whoever
 * takes a waiter off the list under the lock moves its item and sets its
 * result; it resumes on its own executor once released (sync.c).
 */
#include <stdlib.h>
#include <string.h>

#include "coring/channel.h"
#include "internal.h"
#include "sync_wait.h"

enum { SENDER = 1, RECEIVER = 0 };

/* Item i after the oldest (i < capacity): a wrap instead of a division. */
static char *slot_at(cor_channel *ch, size_t i)
{
    size_t k = ch->head + i;
    if (k >= ch->capacity)
        k -= ch->capacity;
    return ch->buf + k * ch->item_size;
}

/*
 * Takes ch's lock. A local channel takes it only while coroutines wait on
 * it: only its own thread adds waiters, so a list found empty stays empty
 * meanwhile, and the other threads (stop callbacks canceling a waiter) touch
 * nothing but the list. Returns 1 if the lock is held, 0 if not, or -EPERM
 * for a local channel used from another thread.
 */
static int enter(cor_channel *ch)
{
    if (ch->flags & COR_CHANNEL_LOCAL) {
        if (ch->thread != cor__thread_id())
            return -EPERM;
        if (!__atomic_load_n(&ch->waiters.head, __ATOMIC_ACQUIRE))
            return 0;
    }
    cor__spin_lock(&ch->waiters.lock);
    return 1;
}

static void leave(cor_channel *ch, int locked)
{
    if (locked)
        cor__spin_unlock(&ch->waiters.lock);
}

/* Suspends w on ch (the lock held from here on, whatever enter did). */
static cor_handle suspend(cor_channel *ch, int locked, cor_sync_wait *w)
{
    if (!locked)
        cor__spin_lock(&ch->waiters.lock);
    return cor__wait_suspend_locked(w, &ch->waiters);
}

int cor_channel_init(cor_channel *ch, size_t item_size, size_t capacity, void *buf)
{
    return cor_channel_init_flags(ch, item_size, capacity, buf, 0);
}

int cor_channel_init_flags(cor_channel *ch, size_t item_size, size_t capacity, void *buf,
                           unsigned flags)
{
    if (!ch || item_size == 0 || item_size > 65536 || capacity == 0 || capacity > (1u << 24) ||
        (flags & ~(unsigned)COR_CHANNEL_LOCAL))
        return -EINVAL;
    ch->flags = flags;
    ch->thread = cor__thread_id();
    ch->owned = !buf;
    if (!buf && !(buf = malloc(item_size * capacity)))
        return -ENOMEM;
    ch->waiters = (cor__wait_list){0, NULL, NULL, NULL};
    ch->buf = buf;
    ch->item_size = item_size;
    ch->capacity = capacity;
    ch->head = ch->count = 0;
    ch->closed = 0;
    return 0;
}

int cor_channel_destroy(cor_channel *ch)
{
    if (!ch)
        return -EINVAL;
    int locked = enter(ch);
    if (locked < 0)
        return locked;
    bool busy = ch->waiters.head != NULL;
    leave(ch, locked);
    if (busy)
        return -EBUSY;
    if (ch->owned)
        free(ch->buf);
    ch->buf = NULL;
    return 0;
}

/*
 * Sends item under the lock. Returns 0 (done; *woken is a receiver to
 * release, or NULL), -EAGAIN (full), or -EPIPE (closed).
 */
static int send_locked(cor_channel *ch, const void *item, cor_sync_wait **woken)
{
    *woken = NULL;
    if (ch->closed)
        return -EPIPE;
    cor_sync_wait *r = ch->waiters.head;
    if (r && r->n == RECEIVER) {
        /* Straight into the oldest waiting receiver (the buffer is empty). */
        memcpy(r->arg, item, ch->item_size);
        *woken = cor__wait_pop_locked(&ch->waiters);
        return 0;
    }
    if (ch->count == ch->capacity)
        return -EAGAIN;
    memcpy(slot_at(ch, ch->count), item, ch->item_size);
    ch->count++;
    return 0;
}

/*
 * Receives into out under the lock. Returns 0 (*woken is a sender whose
 * item took the freed place, to release, or NULL), -EAGAIN (empty), or
 * -EPIPE (closed and empty).
 */
static int recv_locked(cor_channel *ch, void *out, cor_sync_wait **woken)
{
    *woken = NULL;
    if (!ch->count)
        return ch->closed ? -EPIPE : -EAGAIN;
    memcpy(out, slot_at(ch, 0), ch->item_size);
    if (++ch->head == ch->capacity)
        ch->head = 0;
    ch->count--;
    cor_sync_wait *s = ch->waiters.head;
    if (s && s->n == SENDER) {
        /* The oldest waiting sender's item takes the freed place, in order. */
        memcpy(slot_at(ch, ch->count), s->arg, ch->item_size);
        ch->count++;
        *woken = cor__wait_pop_locked(&ch->waiters);
    }
    return 0;
}

static cor_handle send_start(cor_frame *f)
{
    cor_sync_wait *w = (cor_sync_wait *)f;
    cor_channel *ch = w->obj;
    if (!ch || !w->arg)
        return cor__wait_complete(w, -EINVAL);
    int locked = enter(ch);
    if (locked < 0)
        return cor__wait_complete(w, locked);
    cor_sync_wait *woken;
    int rc = send_locked(ch, w->arg, &woken);
    if (rc == -EAGAIN)
        return suspend(ch, locked, w);
    leave(ch, locked);
    if (woken)
        cor__wait_release(woken);
    return cor__wait_complete(w, rc);
}

static cor_handle recv_start(cor_frame *f)
{
    cor_sync_wait *w = (cor_sync_wait *)f;
    cor_channel *ch = w->obj;
    if (!ch || !w->arg)
        return cor__wait_complete(w, -EINVAL);
    int locked = enter(ch);
    if (locked < 0)
        return cor__wait_complete(w, locked);
    cor_sync_wait *woken;
    int rc = recv_locked(ch, w->arg, &woken);
    if (rc == -EAGAIN)
        return suspend(ch, locked, w);
    leave(ch, locked);
    if (woken)
        cor__wait_release(woken);
    return cor__wait_complete(w, rc);
}

cor_sync_wait *cor_channel_send(cor_channel *ch, const void *item)
{
    cor_sync_wait *w = cor__wait_new(ch, send_start);
    if (w) {
        w->arg = (void *)item;
        w->n = SENDER;
    }
    return w;
}

cor_sync_wait *cor_channel_recv(cor_channel *ch, void *out)
{
    cor_sync_wait *w = cor__wait_new(ch, recv_start);
    if (w) {
        w->arg = out;
        w->n = RECEIVER;
    }
    return w;
}

int cor_channel_try_send(cor_channel *ch, const void *item)
{
    if (!ch || !item)
        return -EINVAL;
    int locked = enter(ch);
    if (locked < 0)
        return locked;
    cor_sync_wait *woken;
    int rc = send_locked(ch, item, &woken);
    leave(ch, locked);
    if (woken)
        cor__wait_release(woken);
    return rc;
}

int cor_channel_try_recv(cor_channel *ch, void *out)
{
    if (!ch || !out)
        return -EINVAL;
    int locked = enter(ch);
    if (locked < 0)
        return locked;
    cor_sync_wait *woken;
    int rc = recv_locked(ch, out, &woken);
    leave(ch, locked);
    if (woken)
        cor__wait_release(woken);
    return rc;
}

int cor_channel_close(cor_channel *ch)
{
    if (!ch)
        return -EINVAL;
    int locked = enter(ch);
    if (locked < 0)
        return locked;
    ch->closed = 1;
    /* Waiting senders: their items never go in. Waiting receivers: nothing is buffered. */
    cor_sync_wait *first = NULL, *last = NULL, *w;
    while ((w = cor__wait_pop_locked(&ch->waiters))) {
        w->result = -EPIPE;
        w->next = NULL;
        if (last)
            last->next = w;
        else
            first = w;
        last = w;
    }
    leave(ch, locked);
    cor__wait_release_chain(first);
    return 0;
}

size_t cor_channel_size(cor_channel *ch)
{
    int locked = ch ? enter(ch) : -EINVAL;
    if (locked < 0)
        return 0;
    size_t n = ch->count;
    leave(ch, locked);
    return n;
}
