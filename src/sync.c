/*
 * Async mutex and event. Both keep their waiters in a wait list: a spin lock
 * (the critical sections are a few pointer moves) over a doubly linked FIFO
 * of wait operations, which live in their awaiting frames' await slots.
 *
 * Who resumes a waiter. Two parties race for every waiter: the suspending
 * coroutine, which must finish registering its stop callback, and the waker
 * (unlock, set, notify_one or the stop callback), which takes it off the list
 * under the lock and decides its result. Each drops one of the waiter's two
 * references; whoever drops the last resumes it: the suspender inline (it is
 * already on the waiter's executor), the waker by posting it to the waiter's
 * executor. The `waiting` flag, read and cleared under the lock, makes the
 * removal happen exactly once whichever waker comes first.
 */

#include <limits.h>

#include "coring/sync.h"
#include "internal.h"
#include "sync_wait.h"

/* ---- the wait list, under its lock ---- */

/*
 * The head is stored atomically: a local channel's thread reads it without
 * the lock to see whether anyone waits (channel.c).
 */
static void append_locked(cor__wait_list *l, cor_sync_wait *w)
{
    w->next = NULL;
    w->prev = l->tail;
    if (l->tail)
        l->tail->next = w;
    else
        __atomic_store_n(&l->head, w, __ATOMIC_RELEASE);
    l->tail = w;
    w->waiting = 1;
}

static void unlink_locked(cor__wait_list *l, cor_sync_wait *w)
{
    if (w->prev)
        w->prev->next = w->next;
    else
        __atomic_store_n(&l->head, w->next, __ATOMIC_RELEASE);
    if (w->next)
        w->next->prev = w->prev;
    else
        l->tail = w->prev;
    w->waiting = 0;
}

cor_sync_wait *cor__wait_pop_locked(cor__wait_list *l)
{
    cor_sync_wait *w = l->head;
    if (w) {
        unlink_locked(l, w);
        w->result = 0;
    }
    return w;
}

/* ---- suspending and resuming a waiter ---- */

/* The waiter resumes: drop the stop callback and complete the await. */
static cor_handle wait_finish(cor_frame *f)
{
    cor_sync_wait *w = (cor_sync_wait *)f;
    /* Waits, if the callback runs on another thread, until it returns. */
    if (w->has_cb)
        cor_stop_callback_deregister(&w->stop_cb);
    f->on_destroy = NULL;
    return cor_leaf_complete(f);
}

/* An executor destroys the waiter while it is queued to resume. */
static void wait_destroyed(cor_frame *f)
{
    cor_sync_wait *w = (cor_sync_wait *)f;
    if (w->has_cb)
        cor_stop_callback_deregister(&w->stop_cb);
}

void cor__wait_release(cor_sync_wait *w)
{
    if (__atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) == 0) {
        cor_executor ex = w->cor_hdr.env.ex;
        ex.ops->post(ex.obj, &w->cor_hdr);
    }
}

/* Releases a chain of granted waiters linked through next (read before each release). */
void cor__wait_release_chain(cor_sync_wait *w)
{
    while (w) {
        /* Once released, w may resume and vanish: read the link first. */
        cor_sync_wait *next = w->next;
        cor__wait_release(w);
        w = next;
    }
}

/*
 * Takes w off its list if it is still there (its result then `result`);
 * *granted: the waiters a semaphore grants behind it, for the caller to
 * release after w. True if this call took w: the waker's reference is the
 * caller's.
 */
static bool leave_list(cor_sync_wait *w, int result, cor_sync_wait **granted)
{
    cor__wait_list *l = w->list;
    *granted = NULL;
    cor__spin_lock(&l->lock);
    uint32_t mine = w->waiting;
    if (mine) {
        unlink_locked(l, w);
        w->result = result;
        if (l->regrant)
            *granted = l->regrant(l);
    }
    cor__spin_unlock(&l->lock);
    return mine;
}

static void wait_cancel(cor_stop_callback *cb)
{
    cor_sync_wait *w = cor__container_of(cb, cor_sync_wait, stop_cb);
    cor_sync_wait *granted;
    if (leave_list(w, -ECANCELED, &granted))
        cor__wait_release(w);
    cor__wait_release_chain(granted);
}

bool cor__is_sync_wait(const cor_frame *f)
{
    return f->resume == wait_finish;
}

bool cor__wait_abandon(cor_frame *f)
{
    cor_sync_wait *granted;
    bool mine = leave_list((cor_sync_wait *)f, -ECANCELED, &granted);
    if (mine)
        cor_frame_destroy(f);
    cor__wait_release_chain(granted);
    return mine;
}

cor_handle cor__wait_suspend_locked(cor_sync_wait *w, cor__wait_list *l)
{
    cor_frame *f = &w->cor_hdr;
    w->list = l;
    w->refs = 2;
    w->has_cb = 0;
    f->resume = wait_finish;
    f->on_destroy = wait_destroyed;
    append_locked(l, w);
    cor__spin_unlock(&l->lock);
    if (cor_stop_possible(f->env.stop)) {
        w->has_cb = 1;
        /* Stop already requested: wait_cancel has run here and dropped its reference. */
        cor_stop_callback_register(&w->stop_cb, f->env.stop, wait_cancel);
    }
    if (__atomic_sub_fetch(&w->refs, 1, __ATOMIC_ACQ_REL) == 0)
        return wait_finish(f);
    return COR_NOOP;
}

cor_sync_wait *cor__wait_new(void *obj, cor_resume_fn start)
{
    cor_sync_wait *w = COR_LEAF_NEW(cor_sync_wait, start);
    if (w)
        w->obj = obj;
    return w;
}

cor_handle cor__wait_complete(cor_sync_wait *w, int result)
{
    w->result = result;
    return cor_leaf_complete(&w->cor_hdr);
}

/* ---- mutex ---- */

int cor_async_mutex_init(cor_async_mutex *m)
{
    if (!m)
        return -EINVAL;
    *m = (cor_async_mutex)COR_ASYNC_MUTEX_INIT;
    return 0;
}

int cor_async_mutex_destroy(cor_async_mutex *m)
{
    if (!m)
        return -EINVAL;
    cor__spin_lock(&m->waiters.lock);
    int rc = m->locked || m->waiters.head ? -EBUSY : 0;
    cor__spin_unlock(&m->waiters.lock);
    return rc;
}

static cor_handle mutex_lock_start(cor_frame *f)
{
    cor_sync_wait *w = (cor_sync_wait *)f;
    cor_async_mutex *m = w->obj;
    if (!m)
        return cor__wait_complete(w, -EINVAL);
    cor__spin_lock(&m->waiters.lock);
    if (!m->locked) {
        m->locked = 1;
        cor__spin_unlock(&m->waiters.lock);
        return cor__wait_complete(w, 0);
    }
    return cor__wait_suspend_locked(w, &m->waiters);
}

cor_sync_wait *cor_async_mutex_lock(cor_async_mutex *m)
{
    return cor__wait_new(m, mutex_lock_start);
}

int cor_async_mutex_try_lock(cor_async_mutex *m)
{
    if (!m)
        return -EINVAL;
    cor__spin_lock(&m->waiters.lock);
    int rc = m->locked ? -EBUSY : 0;
    m->locked = 1;
    cor__spin_unlock(&m->waiters.lock);
    return rc;
}

int cor_async_mutex_unlock(cor_async_mutex *m)
{
    if (!m)
        return -EINVAL;
    cor__spin_lock(&m->waiters.lock);
    if (!m->locked) {
        cor__spin_unlock(&m->waiters.lock);
        return -EPERM;
    }
    /* Hand-off: with a waiter, m stays locked and the waiter owns it. */
    cor_sync_wait *w = cor__wait_pop_locked(&m->waiters);
    if (!w)
        m->locked = 0;
    cor__spin_unlock(&m->waiters.lock);
    if (w)
        cor__wait_release(w);
    return 0;
}

/* ---- event ---- */

int cor_async_event_init(cor_async_event *e)
{
    if (!e)
        return -EINVAL;
    *e = (cor_async_event)COR_ASYNC_EVENT_INIT;
    return 0;
}

int cor_async_event_destroy(cor_async_event *e)
{
    if (!e)
        return -EINVAL;
    cor__spin_lock(&e->waiters.lock);
    int rc = e->waiters.head ? -EBUSY : 0;
    cor__spin_unlock(&e->waiters.lock);
    return rc;
}

static cor_handle event_wait_start(cor_frame *f)
{
    cor_sync_wait *w = (cor_sync_wait *)f;
    cor_async_event *e = w->obj;
    if (!e)
        return cor__wait_complete(w, -EINVAL);
    cor__spin_lock(&e->waiters.lock);
    if (e->set) {
        cor__spin_unlock(&e->waiters.lock);
        return cor__wait_complete(w, 0);
    }
    return cor__wait_suspend_locked(w, &e->waiters);
}

cor_sync_wait *cor_async_event_wait(cor_async_event *e)
{
    return cor__wait_new(e, event_wait_start);
}

int cor_async_event_set(cor_async_event *e)
{
    if (!e)
        return -EINVAL;
    cor__spin_lock(&e->waiters.lock);
    __atomic_store_n(&e->set, 1, __ATOMIC_RELEASE);
    /* Take every waiter off the list under the lock; wake them outside it. */
    cor_sync_wait *first = NULL, *last = NULL, *w;
    while ((w = cor__wait_pop_locked(&e->waiters))) {
        w->next = NULL;
        if (last)
            last->next = w;
        else
            first = w;
        last = w;
    }
    cor__spin_unlock(&e->waiters.lock);
    int n = 0;
    for (w = first; w; w = w->next)
        n++;
    cor__wait_release_chain(first);
    return n;
}

int cor_async_event_reset(cor_async_event *e)
{
    if (!e)
        return -EINVAL;
    cor__spin_lock(&e->waiters.lock);
    __atomic_store_n(&e->set, 0, __ATOMIC_RELEASE);
    cor__spin_unlock(&e->waiters.lock);
    return 0;
}

int cor_async_event_notify_one(cor_async_event *e)
{
    if (!e)
        return -EINVAL;
    cor__spin_lock(&e->waiters.lock);
    cor_sync_wait *w = cor__wait_pop_locked(&e->waiters);
    cor__spin_unlock(&e->waiters.lock);
    if (!w)
        return 0;
    cor__wait_release(w);
    return 1;
}

bool cor_async_event_is_set(cor_async_event *e)
{
    return e && __atomic_load_n(&e->set, __ATOMIC_ACQUIRE);
}

/* ---- semaphore ---- */

/* Grants the oldest waiters the free permits satisfy, in order; returns them linked by next. */
static cor_sync_wait *grant_locked(cor__wait_list *l)
{
    cor_async_semaphore *s = cor__container_of(l, cor_async_semaphore, waiters);
    cor_sync_wait *first = NULL, *last = NULL;
    while (l->head && l->head->n <= s->count) {
        s->count -= l->head->n;
        cor_sync_wait *w = cor__wait_pop_locked(l);
        w->next = NULL;
        if (last)
            last->next = w;
        else
            first = w;
        last = w;
    }
    return first;
}

int cor_async_semaphore_init(cor_async_semaphore *s, long count)
{
    if (!s || count < 0)
        return -EINVAL;
    s->waiters = (cor__wait_list){0, NULL, NULL, grant_locked};
    s->count = count;
    return 0;
}

int cor_async_semaphore_destroy(cor_async_semaphore *s)
{
    if (!s)
        return -EINVAL;
    cor__spin_lock(&s->waiters.lock);
    int rc = s->waiters.head ? -EBUSY : 0;
    cor__spin_unlock(&s->waiters.lock);
    return rc;
}

static cor_handle sem_acquire_start(cor_frame *f)
{
    cor_sync_wait *w = (cor_sync_wait *)f;
    cor_async_semaphore *s = w->obj;
    if (!s || w->n < 1)
        return cor__wait_complete(w, -EINVAL);
    cor__spin_lock(&s->waiters.lock);
    if (!s->waiters.head && s->count >= w->n) {
        s->count -= w->n;
        cor__spin_unlock(&s->waiters.lock);
        return cor__wait_complete(w, 0);
    }
    return cor__wait_suspend_locked(w, &s->waiters);
}

cor_sync_wait *cor_async_semaphore_acquire(cor_async_semaphore *s, long n)
{
    cor_sync_wait *w = cor__wait_new(s, sem_acquire_start);
    if (w)
        w->n = n;
    return w;
}

int cor_async_semaphore_try_acquire(cor_async_semaphore *s, long n)
{
    if (!s || n < 1)
        return -EINVAL;
    cor__spin_lock(&s->waiters.lock);
    int rc = -EBUSY;
    if (!s->waiters.head && s->count >= n) {
        s->count -= n;
        rc = 0;
    }
    cor__spin_unlock(&s->waiters.lock);
    return rc;
}

int cor_async_semaphore_release(cor_async_semaphore *s, long n)
{
    if (!s || n < 1)
        return -EINVAL;
    cor__spin_lock(&s->waiters.lock);
    if (n > LONG_MAX - s->count) {
        cor__spin_unlock(&s->waiters.lock);
        return -EOVERFLOW;
    }
    s->count += n;
    cor_sync_wait *granted = grant_locked(&s->waiters);
    cor__spin_unlock(&s->waiters.lock);
    int k = 0;
    for (cor_sync_wait *w = granted; w; w = w->next)
        k++;
    cor__wait_release_chain(granted);
    return k;
}

long cor_async_semaphore_count(cor_async_semaphore *s)
{
    if (!s)
        return -EINVAL;
    cor__spin_lock(&s->waiters.lock);
    long n = s->count;
    cor__spin_unlock(&s->waiters.lock);
    return n;
}
