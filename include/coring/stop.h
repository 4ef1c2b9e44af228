/*
 * Stop sources, tokens and callbacks: the C counterparts of std::stop_source,
 * std::stop_token and std::stop_callback, allocation-free.
 *
 * A cor_stop_source is caller-owned and must outlive every token taken from
 * it and every callback registered on it. A token is a plain value (copy it
 * freely); the zero token {NULL} can never be stopped.
 */
#ifndef CORING_STOP_H
#define CORING_STOP_H

#include "coring/common.h"

COR_BEGIN_DECLS

typedef struct cor_stop_source cor_stop_source;
typedef struct cor_stop_callback cor_stop_callback;

/* Called once when stop is requested; cb is the registered callback. */
typedef void (*cor_stop_fn)(cor_stop_callback *cb);

/* The state of a stop request. Initialize with cor_stop_source_init or COR_STOP_SOURCE_INIT. */
struct cor_stop_source {
    uint32_t lock;                /* spin lock over the list and running fields */
    uint32_t stopped;             /* set once, by the first request              */
    cor_stop_callback *head;      /* registered callbacks not yet run, oldest first */
    cor_stop_callback *tail;      /* the newest of them                          */
    cor_stop_callback *running;   /* the callback being invoked, if any          */
    unsigned long running_thread; /* pthread_t of the thread invoking it         */
    int64_t op_timeout;           /* 0, or each operation's time limit (below)   */
};

#define COR_STOP_SOURCE_INIT                                                                       \
    {                                                                                              \
        0, 0, NULL, NULL, NULL, 0, 0                                                               \
    }

/* A token: a reference to a stop source, or {NULL} for "never stops". */
typedef struct cor_stop_token {
    cor_stop_source *src;
} cor_stop_token;

/*
 * The token that can never be stopped, as a value, and as a pointer for
 * COR_RUN's .stop: COR_RUN(cleanup(fd), .stop = COR_STOP_NEVER) shields a
 * child from every stop request (launch.h, "Shielding").
 */
#define COR_STOP_TOKEN_NEVER ((cor_stop_token){NULL})
#define COR_STOP_NEVER (&(const cor_stop_token){NULL})

/* A registration; caller-owned, typically embedded in the object the callback acts on. */
struct cor_stop_callback {
    cor_stop_fn fn;
    cor_stop_callback *prev, *next;
    cor_stop_source *src;
    bool *destroyed; /* set while running: lets fn deregister its own callback */
    uint32_t done;   /* 1 once fn has returned (or fn will never run)          */
    uint32_t linked; /* 1 while in src's list                                  */
};

/* Initializes s as not stopped. Returns 0, or -EINVAL if s is NULL. */
COR_API int cor_stop_source_init(cor_stop_source *s);

/* Returns a token for s (the never-stopping token if s is NULL). */
COR_API cor_stop_token cor_stop_source_token(cor_stop_source *s);

/*
 * Gives every I/O operation awaited under a token of s a time limit of ns
 * (0: none, the default): an operation without a deadline of its own gets
 * one ns after it starts, and completes with -ETIME if it is still waiting
 * then (io_op.h, deadlines). This is how an idle timeout is written: a
 * receive that waits longer than ns for the peer ends the session, and the
 * limit is re-armed by every new operation, in O(1) on the io_context's
 * timer wheel. Sleeps, timer waits and cleanup (close, shutdown) are not
 * limited. Applies to operations started after the call. A linked source
 * (cor_linked_stop_source_init: the children of when_all, when_any, task
 * groups, COR_TIMEOUT) starts with its parent's limit as it is at linking.
 * Returns 0, or -EINVAL for NULL s or ns < 0. Any thread.
 */
COR_API int cor_stop_source_set_op_timeout(cor_stop_source *s, int64_t ns);

/*
 * Requests stop: the first call marks s stopped and runs every registered
 * callback on the calling thread, in registration order, then returns 1.
 * Later calls return 0. Returns -EINVAL if s is NULL. Any thread.
 */
COR_API int cor_stop_source_request(cor_stop_source *s);

/* True once stop has been requested on the token's source. Any thread. */
COR_API bool cor_stop_requested(cor_stop_token t);

/* True if the token refers to a source (so stop can be requested at all). */
COR_API bool cor_stop_possible(cor_stop_token t);

/*
 * Registers cb to run fn when stop is requested on t. Returns 0 when
 * registered; 1 when stop was already requested, in which case fn has already
 * run on the calling thread before the return; -EINVAL for a NULL cb or fn,
 * or a token that can never stop (nothing is registered then). cb must stay
 * valid until cor_stop_callback_deregister returns.
 */
COR_API int cor_stop_callback_register(cor_stop_callback *cb, cor_stop_token t, cor_stop_fn fn);

/*
 * Removes cb. If fn is running on another thread, waits until it returns; if
 * fn is running on this thread (fn deregistering its own callback), returns at
 * once. After the return fn is not running and will never run, and cb may be
 * freed. Deregistering a callback that is not registered is a no-op. Returns
 * 0, or -EINVAL for NULL.
 */
COR_API int cor_stop_callback_deregister(cor_stop_callback *cb);

/*
 * A stop source linked to a parent token: it is stopped when the parent is
 * (at once, if the parent already is), and can also be stopped on its own
 * (its stop never reaches the parent). Caller-owned; the parent's source must
 * outlive it. Cancellation flows down only.
 */
typedef struct cor_linked_stop_source {
    cor_stop_source source;
    cor_stop_callback link; /* on the parent's source, while linked */
} cor_linked_stop_source;

/*
 * Initializes s, linked to parent (a never-stopping parent links nothing),
 * with parent's operation time limit.
 * Returns 0, or -EINVAL for NULL s. If parent is already stopped, s is
 * stopped before the return. Any thread.
 */
COR_API int cor_linked_stop_source_init(cor_linked_stop_source *s, cor_stop_token parent);

/* The token of s (its own source's). */
COR_API cor_stop_token cor_linked_stop_source_token(cor_linked_stop_source *s);

/*
 * Unlinks s from its parent (waits if the link is being run on another
 * thread). Afterwards s may be freed; callbacks still registered on s itself
 * are the caller's to remove first. Returns 0, or -EINVAL for NULL. Any
 * thread.
 */
COR_API int cor_linked_stop_source_destroy(cor_linked_stop_source *s);

COR_END_DECLS

#endif
