/*
 * The manual executor: a mutex-protected FIFO drained by the thread that
 * calls run. It is the simplest correct executor, for tests, tools and
 * programs that drive their own loop; io_context is the fast one.
 */
#include <stdlib.h>

#include "coring/context.h"
#include "coring/manual.h"
#include "coring/task.h"
#include "fifo.h"
#include "internal.h"

struct cor_manual {
    cor_execution_context ctx; /* first: the context of the executor */
    pthread_mutex_t lock;
    pthread_cond_t cond;
    cor__fifo queue; /* queued handles, under lock           */
    long work;       /* outstanding work, under lock         */
    bool running;    /* a thread is inside run/poll          */
};

static void manual_post(const void *obj, cor_handle h)
{
    cor_manual *m = (cor_manual *)obj;
    pthread_mutex_lock(&m->lock);
    cor__fifo_push(&m->queue, h);
    pthread_cond_signal(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static cor_handle manual_dispatch(const void *obj, cor_handle h)
{
    /* Inline only on the thread that is draining this executor right now. */
    if (cor__tls.running == obj)
        return h;
    manual_post(obj, h);
    return COR_NOOP;
}

static cor_execution_context *manual_context(const void *obj)
{
    return &((cor_manual *)obj)->ctx;
}

static void manual_work_started(const void *obj)
{
    cor_manual *m = (cor_manual *)obj;
    pthread_mutex_lock(&m->lock);
    m->work++;
    pthread_mutex_unlock(&m->lock);
}

static void manual_work_finished(const void *obj)
{
    cor_manual *m = (cor_manual *)obj;
    pthread_mutex_lock(&m->lock);
    if (--m->work == 0)
        pthread_cond_broadcast(&m->cond);
    pthread_mutex_unlock(&m->lock);
}

static const cor_executor_ops manual_ops = {
    .dispatch = manual_dispatch,
    .post = manual_post,
    .context = manual_context,
    .on_work_started = manual_work_started,
    .on_work_finished = manual_work_finished,
};

int cor_manual_create(cor_manual **out)
{
    if (!out)
        return -EINVAL;
    cor_manual *m = calloc(1, sizeof *m);
    if (!m)
        return -ENOMEM;
    int rc = cor_execution_context_init(&m->ctx);
    if (rc)
        goto fail_ctx;
    rc = -pthread_mutex_init(&m->lock, NULL);
    if (rc)
        goto fail_lock;
    rc = -pthread_cond_init(&m->cond, NULL);
    if (rc)
        goto fail_cond;
    *out = m;
    return 0;
fail_cond:
    pthread_mutex_destroy(&m->lock);
fail_lock:
    cor_execution_context_destroy(&m->ctx);
fail_ctx:
    free(m);
    return rc;
}

void cor_manual_destroy(cor_manual *m)
{
    if (!m)
        return;
    cor__ctx_empty_queue(&m->ctx, &m->lock, &m->queue);
    cor_execution_context_destroy(&m->ctx);
    pthread_cond_destroy(&m->cond);
    pthread_mutex_destroy(&m->lock);
    free(m);
}

cor_executor cor_manual_executor(cor_manual *m)
{
    if (!m)
        return COR_EXECUTOR_NULL;
    return (cor_executor){m, &manual_ops};
}

cor_execution_context *cor_manual_context(cor_manual *m)
{
    return m ? &m->ctx : NULL;
}

long cor_manual_outstanding(cor_manual *m)
{
    if (!m)
        return 0;
    pthread_mutex_lock(&m->lock);
    long w = m->work;
    pthread_mutex_unlock(&m->lock);
    return w;
}

/* Runs up to max handles; blocks for more while work is outstanding if block is set. */
static long drive(cor_manual *m, long max, bool block)
{
    if (!m)
        return -EINVAL;
    pthread_mutex_lock(&m->lock);
    if (m->running) {
        pthread_mutex_unlock(&m->lock);
        return -EBUSY;
    }
    m->running = true;
    const void *prev = cor__tls.running;
    cor__tls.running = m;
    long n = 0;
    while (n < max) {
        cor_handle h = cor__fifo_pop(&m->queue);
        if (!h) {
            if (!block || m->work == 0)
                break;
            pthread_cond_wait(&m->cond, &m->lock);
            continue;
        }
        pthread_mutex_unlock(&m->lock);
        cor_resume(h);
        n++;
        pthread_mutex_lock(&m->lock);
    }
    cor__tls.running = prev;
    m->running = false;
    pthread_mutex_unlock(&m->lock);
    return n;
}

long cor_manual_run(cor_manual *m)
{
    return drive(m, __LONG_MAX__, true);
}

long cor_manual_run_one(cor_manual *m)
{
    return drive(m, 1, true);
}

long cor_manual_poll(cor_manual *m)
{
    return drive(m, __LONG_MAX__, false);
}

long cor_manual_poll_one(cor_manual *m)
{
    return drive(m, 1, false);
}
