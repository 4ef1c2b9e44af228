/*
 * Stop sources and callbacks. A spin lock guards the callback list; the
 * callbacks run outside it. The running/destroyed/done fields implement the
 * std::stop_callback rule: deregistering a callback that another thread is
 * running waits for it, while a callback may deregister itself.
 */
#include <pthread.h>
#include <sched.h>

#include "coring/stop.h"
#include "internal.h"

int cor_stop_source_init(cor_stop_source *s)
{
    if (!s)
        return -EINVAL;
    *s = (cor_stop_source)COR_STOP_SOURCE_INIT;
    return 0;
}

int cor_stop_source_set_op_timeout(cor_stop_source *s, int64_t ns)
{
    if (!s || ns < 0)
        return -EINVAL;
    __atomic_store_n(&s->op_timeout, ns, __ATOMIC_RELAXED);
    return 0;
}

cor_stop_token cor_stop_source_token(cor_stop_source *s)
{
    return (cor_stop_token){s};
}

bool cor_stop_requested(cor_stop_token t)
{
    return t.src && __atomic_load_n(&t.src->stopped, __ATOMIC_ACQUIRE);
}

bool cor_stop_possible(cor_stop_token t)
{
    return t.src != NULL;
}

int cor_stop_source_request(cor_stop_source *s)
{
    if (!s)
        return -EINVAL;
    cor__spin_lock(&s->lock);
    if (s->stopped) {
        cor__spin_unlock(&s->lock);
        return 0;
    }
    __atomic_store_n(&s->stopped, 1, __ATOMIC_RELEASE);
    while (s->head) {
        cor_stop_callback *cb = s->head;
        s->head = cb->next;
        if (s->head)
            s->head->prev = NULL;
        else
            s->tail = NULL;
        cb->linked = 0;
        bool destroyed = false;
        cb->destroyed = &destroyed;
        s->running = cb;
        s->running_thread = (unsigned long)pthread_self();
        cor__spin_unlock(&s->lock);

        cb->fn(cb);

        /* If fn deregistered cb, cb may already be freed: do not touch it. */
        if (!destroyed) {
            cb->destroyed = NULL;
            __atomic_store_n(&cb->done, 1, __ATOMIC_RELEASE);
        }
        cor__spin_lock(&s->lock);
        s->running = NULL;
    }
    cor__spin_unlock(&s->lock);
    return 1;
}

int cor_stop_callback_register(cor_stop_callback *cb, cor_stop_token t, cor_stop_fn fn)
{
    if (!cb || !fn || !t.src)
        return -EINVAL;
    cor_stop_source *s = t.src;
    cb->fn = fn;
    cb->src = s;
    cb->destroyed = NULL;
    cb->prev = cb->next = NULL;
    cor__spin_lock(&s->lock);
    if (s->stopped) {
        cor__spin_unlock(&s->lock);
        cb->linked = 0;
        fn(cb);
        __atomic_store_n(&cb->done, 1, __ATOMIC_RELEASE);
        return 1;
    }
    __atomic_store_n(&cb->done, 0, __ATOMIC_RELAXED);
    /* Append (callbacks run in registration order) in O(1): a server keeps
     * one registration per pending operation on its shutdown token. */
    cb->linked = 1;
    cb->prev = s->tail;
    if (s->tail)
        s->tail->next = cb;
    else
        s->head = cb;
    s->tail = cb;
    cor__spin_unlock(&s->lock);
    return 0;
}

int cor_stop_callback_deregister(cor_stop_callback *cb)
{
    if (!cb)
        return -EINVAL;
    cor_stop_source *s = cb->src;
    if (!s)
        return 0;
    cor__spin_lock(&s->lock);
    if (cb->linked) {
        if (cb->prev)
            cb->prev->next = cb->next;
        else
            s->head = cb->next;
        if (cb->next)
            cb->next->prev = cb->prev;
        else
            s->tail = cb->prev;
        cb->linked = 0;
        cb->src = NULL;
        cor__spin_unlock(&s->lock);
        return 0;
    }
    if (s->running == cb) {
        if (s->running_thread == (unsigned long)pthread_self()) {
            /* fn is deregistering its own callback: do not wait for ourselves. */
            *cb->destroyed = true;
            cb->src = NULL;
            cor__spin_unlock(&s->lock);
            return 0;
        }
        cor__spin_unlock(&s->lock);
        while (!__atomic_load_n(&cb->done, __ATOMIC_ACQUIRE))
            sched_yield();
        cb->src = NULL;
        return 0;
    }
    cor__spin_unlock(&s->lock);
    cb->src = NULL;
    return 0;
}

/* The parent stopped: stop the linked source (its callbacks run here, on the parent's thread). */
static void linked_fired(cor_stop_callback *cb)
{
    cor_linked_stop_source *s = cor__container_of(cb, cor_linked_stop_source, link);
    cor_stop_source_request(&s->source);
}

int cor_linked_stop_source_init(cor_linked_stop_source *s, cor_stop_token parent)
{
    if (!s)
        return -EINVAL;
    cor_stop_source_init(&s->source);
    /* The operation time limit flows down too: when_any children keep a session's idle limit. */
    if (parent.src)
        s->source.op_timeout = __atomic_load_n(&parent.src->op_timeout, __ATOMIC_RELAXED);
    s->link.src = NULL;
    if (parent.src)
        cor_stop_callback_register(&s->link, parent, linked_fired);
    return 0;
}

cor_stop_token cor_linked_stop_source_token(cor_linked_stop_source *s)
{
    return (cor_stop_token){s ? &s->source : NULL};
}

int cor_linked_stop_source_destroy(cor_linked_stop_source *s)
{
    if (!s)
        return -EINVAL;
    return cor_stop_callback_deregister(&s->link);
}
