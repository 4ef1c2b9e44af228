/*
 * Async coordination for coroutines: a mutex, an event and a counting
 * semaphore that suspend the awaiting coroutine, never the thread.
 *
 *     COR_AWAIT(self->rc, cor_async_mutex_lock(&conn->lock));
 *     if (self->rc < 0)            // -ECANCELED: stop was requested while waiting
 *         COR_RETURN(self->rc);
 *     ... critical section, may await ...
 *     cor_async_mutex_unlock(&conn->lock);
 *
 * All are caller-owned fixed-size structs, thread-safe, usable from
 * coroutines on any executors at once. A waiter always resumes on its own
 * executor: the thread that wakes it (unlock, set, or a stop request) posts
 * it there and never runs it inline, so a waiter never runs nested inside the
 * code that woke it. Waiting is cancellable through the awaiting coroutine's
 * stop token: a stop request removes the waiter from the wait list exactly
 * once and completes its await with the value -ECANCELED (a result, not an
 * error), unless it was granted first, in which case it completes with 0.
 * The wait operation lives in the awaiting frame's await slot: waiting
 * allocates nothing.
 */
#ifndef CORING_SYNC_H
#define CORING_SYNC_H

#include "coring/common.h"
#include "coring/stop.h"
#include "coring/task.h"

COR_BEGIN_DECLS

typedef struct cor_sync_wait cor_sync_wait;

/*
 * A wait list: a spin lock over a FIFO of waiters. regrant, if set, runs
 * under the lock after a waiter left by cancellation (a semaphore may then
 * grant the ones behind it) and returns those it granted, linked through
 * next. Fields are the library's.
 */
typedef struct cor__wait_list {
    uint32_t lock;
    cor_sync_wait *head, *tail;
    cor_sync_wait *(*regrant)(struct cor__wait_list *l);
} cor__wait_list;

/*
 * A wait on a mutex, an event, a semaphore or a channel (channel.h): a leaf
 * awaitable whose result is 0 or -ECANCELED (-EINVAL when created for a
 * NULL object; a channel adds -EPIPE). Fields are the library's.
 */
struct cor_sync_wait {
    COR_LEAF_PROMISE(int);
    void *obj;            /* the mutex, event, semaphore or channel        */
    cor__wait_list *list; /* its wait list, once queued                    */
    cor_sync_wait *prev, *next;
    cor_stop_callback stop_cb;
    void *arg;        /* a channel item (to send, or to receive into)  */
    long n;           /* permits a semaphore acquire wants; a channel: 1 to send */
    uint32_t waiting; /* 1 while in the list, under the list's lock    */
    uint32_t refs;    /* the suspender and the waker; 0: resume it     */
    uint32_t has_cb;  /* stop_cb was registered                        */
};

/* ---- mutex ---- */

/*
 * An async mutex: FIFO-fair (unlock hands the mutex straight to the oldest
 * waiter, so a newcomer cannot overtake it). Not recursive. Initialize with
 * COR_ASYNC_MUTEX_INIT or cor_async_mutex_init.
 */
typedef struct cor_async_mutex {
    cor__wait_list waiters;
    uint32_t locked;
} cor_async_mutex;

#define COR_ASYNC_MUTEX_INIT                                                                       \
    {                                                                                              \
        {0, NULL, NULL, NULL}, 0                                                                   \
    }

/* Initializes m unlocked. Returns 0, or -EINVAL for NULL. */
COR_API int cor_async_mutex_init(cor_async_mutex *m);

/*
 * Ends the life of m. Returns 0 if m is unlocked with no waiters (it may then
 * be freed); -EBUSY otherwise (m is unchanged); -EINVAL for NULL. Any thread.
 */
COR_API int cor_async_mutex_destroy(cor_async_mutex *m);

/*
 * Awaitable: COR_AWAIT(rc, cor_async_mutex_lock(&m)) acquires m. rc is 0 once
 * the coroutine holds m; -ECANCELED if stop was requested on its stop token
 * while it waited (it does not hold m then); -EINVAL for NULL m. A free mutex
 * is taken without suspending, whatever the token says. Returns NULL only if
 * the operation could not be allocated (the await then fails with -ENOMEM).
 */
COR_API cor_sync_wait *cor_async_mutex_lock(cor_async_mutex *m);

/* Takes m if it is free. Returns 0 (the caller holds m), -EBUSY, or -EINVAL. Any thread. */
COR_API int cor_async_mutex_try_lock(cor_async_mutex *m);

/*
 * Releases m: the oldest waiter, if any, now holds m and is posted to its
 * executor. Returns 0; -EPERM if m is not locked; -EINVAL for NULL. Call from
 * the holder (any thread: a mutex is not tied to a thread).
 */
COR_API int cor_async_mutex_unlock(cor_async_mutex *m);

/* ---- event ---- */

/*
 * An async event: waiters suspend until it is set. set wakes every waiter
 * (broadcast) and latches: later waits complete at once until reset.
 * notify_one wakes only the oldest waiter and latches nothing. Initialize with
 * COR_ASYNC_EVENT_INIT or cor_async_event_init.
 */
typedef struct cor_async_event {
    cor__wait_list waiters;
    uint32_t set;
} cor_async_event;

#define COR_ASYNC_EVENT_INIT                                                                       \
    {                                                                                              \
        {0, NULL, NULL, NULL}, 0                                                                   \
    }

/* Initializes e not set. Returns 0, or -EINVAL for NULL. */
COR_API int cor_async_event_init(cor_async_event *e);

/* Ends the life of e. Returns 0 if nothing waits on it; -EBUSY otherwise; -EINVAL for NULL. */
COR_API int cor_async_event_destroy(cor_async_event *e);

/*
 * Awaitable: COR_AWAIT(rc, cor_async_event_wait(&e)) suspends until e is set
 * or notified. rc is 0 when woken (at once if e is set); -ECANCELED if stop
 * was requested while it waited; -EINVAL for NULL e. Returns NULL only if the
 * operation could not be allocated (the await then fails with -ENOMEM).
 */
COR_API cor_sync_wait *cor_async_event_wait(cor_async_event *e);

/* Sets e and wakes every waiter. Returns the number woken, or -EINVAL. Any thread. */
COR_API int cor_async_event_set(cor_async_event *e);

/* Clears e; later waits suspend. Returns 0 or -EINVAL. Any thread. */
COR_API int cor_async_event_reset(cor_async_event *e);

/* Wakes the oldest waiter without setting e. Returns 1 if one was woken, 0 if none, or -EINVAL. Any
 * thread. */
COR_API int cor_async_event_notify_one(cor_async_event *e);

/* True if e is set (false for NULL). Any thread. */
COR_API bool cor_async_event_is_set(cor_async_event *e);

/* ---- semaphore ---- */

/*
 * An async counting semaphore, for bounded concurrency. FIFO-fair: a waiter
 * is granted its permits in the order it asked, and a newcomer waits behind
 * the waiters already queued even if enough permits are free. Initialize
 * with cor_async_semaphore_init. Fields are the library's.
 */
typedef struct cor_async_semaphore {
    cor__wait_list waiters;
    long count; /* free permits */
} cor_async_semaphore;

/* Initializes s with count free permits (count >= 0). Returns 0, or -EINVAL. */
COR_API int cor_async_semaphore_init(cor_async_semaphore *s, long count);

/* Ends the life of s. Returns 0 if nothing waits; -EBUSY otherwise; -EINVAL for NULL. */
COR_API int cor_async_semaphore_destroy(cor_async_semaphore *s);

/*
 * Awaitable: COR_AWAIT(rc, cor_async_semaphore_acquire(&s, n)) takes n
 * permits (n >= 1). rc is 0 once taken; -ECANCELED if stop was requested
 * while it waited (nothing is taken then, and the waiters behind it may be
 * granted); -EINVAL for NULL s or n < 1. Returns NULL only if the operation
 * could not be allocated (the await fails with -ENOMEM).
 */
COR_API cor_sync_wait *cor_async_semaphore_acquire(cor_async_semaphore *s, long n);

/* Takes n permits if they are free and nobody waits. Returns 0, -EBUSY, or -EINVAL. Any thread. */
COR_API int cor_async_semaphore_try_acquire(cor_async_semaphore *s, long n);

/*
 * Returns n permits (n >= 1) and grants the oldest waiters they now
 * satisfy, in order (each is posted to its executor). Returns the number of
 * waiters granted; -EINVAL for NULL s or n < 1; -EOVERFLOW if the count
 * would pass LONG_MAX (nothing is returned then). Any thread.
 */
COR_API int cor_async_semaphore_release(cor_async_semaphore *s, long n);

/* The free permits now (-EINVAL for NULL). Any thread. */
COR_API long cor_async_semaphore_count(cor_async_semaphore *s);

COR_END_DECLS

#endif
