/*
 * The thread pool: one mutex-protected intrusive FIFO shared by every worker,
 * with a condition variable that only sleeping workers wait on.
 *
 * Why one shared queue rather than per-worker queues with stealing: the pool
 * exists for work that blocks or runs long. With per-worker queues a handle
 * queued behind a worker stuck in getaddrinfo waits until another worker
 * steals it, and stealing needs a scan of every queue on each idle turn; a
 * shared queue hands the next handle to whichever worker is free, in FIFO
 * order, with one lock. bench_strand measures both designs (the stealing one
 * as a prototype in the benchmark) and the README records the figures.
 *
 * A worker that finds the queue empty first spins for COR__SPIN_NS watching
 * the queue's length (an atomic copy, so it needs no lock) before it sleeps
 * on the condition variable: a post that comes within that time (the next
 * hop of a coroutine going back and forth) costs no futex call on either
 * side, since a post signals only when no worker spins. One worker spins at
 * a time, only once per time it ran out of work, and spins that find nothing
 * make the next ones be skipped (cor__spinner).
 */
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "coring/context.h"
#include "coring/dump.h"
#include "coring/task.h"
#include "coring/thread_pool.h"
#include "fifo.h"
#include "internal.h"

struct cor_thread_pool {
    cor_execution_context ctx; /* first: the context of the executor */
    pthread_mutex_t lock;
    pthread_cond_t cond; /* workers wait for a handle or for the end */
    cor__fifo queue;     /* queued handles, under lock                */
    uint32_t queued;     /* their number: written under lock, read by a spinner (atomic) */
    unsigned idle;       /* workers waiting on cond, under lock      */
    bool spinning;       /* a worker watches queued, under lock      */
    cor__spinner spin;   /* whether to spin before sleeping, under lock */
    bool stopped;        /* stop requested, under lock                */
    bool joining;        /* join started; written under lock, read by work_finished */
    bool joined;         /* the workers are gone                      */
    long work;           /* outstanding work (atomic)                 */
    uint32_t touching;   /* threads still inside work_finished (atomic) */
    unsigned nthreads;
    pthread_t threads[];
};

/* The pool whose worker this thread is, if any. */
static COR_THREAD_LOCAL const cor_thread_pool *worker_of;

/* Adds d to the queue's length (under lock; a spinner reads it without). */
static void count_queued(cor_thread_pool *p, int d)
{
    __atomic_store_n(&p->queued, __atomic_load_n(&p->queued, __ATOMIC_RELAXED) + (uint32_t)d,
                     __ATOMIC_RELAXED);
}

static void pool_post(const void *obj, cor_handle h)
{
    cor_thread_pool *p = (cor_thread_pool *)obj;
    pthread_mutex_lock(&p->lock);
    cor__fifo_push(&p->queue, h);
    count_queued(p, 1);
    /* Busy workers come back for the queue by themselves, a spinning one sees it: wake only a
     * sleeper, and only when nobody spins. */
    if (p->idle && !p->spinning)
        pthread_cond_signal(&p->cond);
    pthread_mutex_unlock(&p->lock);
}

static cor_handle pool_dispatch(const void *obj, cor_handle h)
{
    if (cor__tls.running == obj)
        return h;
    pool_post(obj, h);
    return COR_NOOP;
}

static cor_execution_context *pool_context(const void *obj)
{
    return &((cor_thread_pool *)obj)->ctx;
}

static void pool_work_started(const void *obj)
{
    cor_thread_pool *p = (cor_thread_pool *)obj;
    __atomic_fetch_add(&p->work, 1, __ATOMIC_RELAXED);
}

static void pool_work_finished(const void *obj)
{
    cor_thread_pool *p = (cor_thread_pool *)obj;
    /*
     * Once work reaches 0 the workers may exit and join and destroy may
     * free p while this thread still reads joining: destroy waits until
     * `touching` drops, which is this function's last access to p.
     */
    __atomic_fetch_add(&p->touching, 1, __ATOMIC_SEQ_CST);
    /*
     * Sequentially consistent with join's store of joining and the workers'
     * load of work: either join sees the count at 0, or this sees joining
     * and wakes the workers. The lock orders the broadcast with their wait.
     */
    if (__atomic_sub_fetch(&p->work, 1, __ATOMIC_SEQ_CST) == 0 &&
        __atomic_load_n(&p->joining, __ATOMIC_SEQ_CST)) {
        pthread_mutex_lock(&p->lock);
        pthread_cond_broadcast(&p->cond);
        pthread_mutex_unlock(&p->lock);
    }
    __atomic_fetch_sub(&p->touching, 1, __ATOMIC_RELEASE);
}

static const cor_executor_ops pool_ops = {
    .dispatch = pool_dispatch,
    .post = pool_post,
    .context = pool_context,
    .on_work_started = pool_work_started,
    .on_work_finished = pool_work_finished,
};

/* What a spinning worker waits for: a queued handle, or a join. */
static bool work_arrived(void *arg)
{
    cor_thread_pool *p = arg;
    return __atomic_load_n(&p->queued, __ATOMIC_RELAXED) ||
           __atomic_load_n(&p->joining, __ATOMIC_RELAXED);
}

/* Spins (without the lock, which the caller holds and gets back) for a post, unless skipped. */
static void spin(cor_thread_pool *p)
{
    cor__spinner s = p->spin;
    p->spinning = true;
    pthread_mutex_unlock(&p->lock);
    cor__spin_try(&s, work_arrived, p);
    pthread_mutex_lock(&p->lock);
    p->spinning = false;
    p->spin = s;
}

static void *worker_main(void *arg)
{
    cor_thread_pool *p = arg;
    worker_of = p;
    cor__tls.running = p;
    bool spun = false; /* spun since it last ran a handle: sleep next */
    pthread_mutex_lock(&p->lock);
    while (!p->stopped) {
        cor_handle h = cor__fifo_pop(&p->queue);
        if (h) {
            count_queued(p, -1);
            spun = false;
            /* Posts made while a worker spun woke nobody: hand the rest to a sleeper. */
            if (p->idle && !cor__fifo_empty(&p->queue))
                pthread_cond_signal(&p->cond);
            pthread_mutex_unlock(&p->lock);
            cor_resume(h);
            pthread_mutex_lock(&p->lock);
            continue;
        }
        if (__atomic_load_n(&p->joining, __ATOMIC_SEQ_CST) &&
            __atomic_load_n(&p->work, __ATOMIC_SEQ_CST) == 0)
            break;
        if (!spun && !p->spinning) {
            spun = true;
            spin(p);
            continue;
        }
        p->idle++;
        pthread_cond_wait(&p->cond, &p->lock);
        p->idle--;
    }
    pthread_mutex_unlock(&p->lock);
    cor__tls.running = NULL;
    worker_of = NULL;
    return NULL;
}

static void join_workers(cor_thread_pool *p, unsigned n)
{
    for (unsigned i = 0; i < n; i++)
        pthread_join(p->threads[i], NULL);
}

int cor_thread_pool_create(cor_thread_pool **out, unsigned threads)
{
    if (!out || threads > COR_THREAD_POOL_MAX_THREADS)
        return -EINVAL;
    if (threads == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        threads = cpus < 1                             ? 1
                  : cpus > COR_THREAD_POOL_MAX_THREADS ? COR_THREAD_POOL_MAX_THREADS
                                                       : (unsigned)cpus;
    }
    cor_thread_pool *p = calloc(1, sizeof *p + threads * sizeof(pthread_t));
    if (!p)
        return -ENOMEM;
    int rc = cor_execution_context_init(&p->ctx);
    if (rc)
        goto fail_ctx;
    rc = -pthread_mutex_init(&p->lock, NULL);
    if (rc)
        goto fail_lock;
    rc = -pthread_cond_init(&p->cond, NULL);
    if (rc)
        goto fail_cond;
    p->nthreads = threads;
    for (unsigned i = 0; i < threads; i++) {
        rc = -pthread_create(&p->threads[i], NULL, worker_main, p);
        if (rc) {
            pthread_mutex_lock(&p->lock);
            p->stopped = true;
            pthread_cond_broadcast(&p->cond);
            pthread_mutex_unlock(&p->lock);
            join_workers(p, i);
            goto fail_threads;
        }
    }
    *out = p;
    return 0;
fail_threads:
    pthread_cond_destroy(&p->cond);
fail_cond:
    pthread_mutex_destroy(&p->lock);
fail_lock:
    cor_execution_context_destroy(&p->ctx);
fail_ctx:
    free(p);
    return rc;
}

cor_executor cor_thread_pool_executor(cor_thread_pool *p)
{
    if (!p)
        return COR_EXECUTOR_NULL;
    return (cor_executor){p, &pool_ops};
}

cor_execution_context *cor_thread_pool_context(cor_thread_pool *p)
{
    return p ? &p->ctx : NULL;
}

unsigned cor_thread_pool_size(cor_thread_pool *p)
{
    return p ? p->nthreads : 0;
}

bool cor_thread_pool_running_in_this_thread(cor_thread_pool *p)
{
    return p && worker_of == p;
}

int cor_thread_pool_stop(cor_thread_pool *p)
{
    if (!p)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    p->stopped = true;
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    return 0;
}

int cor_thread_pool_join(cor_thread_pool *p)
{
    if (!p)
        return -EINVAL;
    if (worker_of == p)
        return -EDEADLK;
    if (p->joined)
        return 0;
    pthread_mutex_lock(&p->lock);
    __atomic_store_n(&p->joining, true, __ATOMIC_SEQ_CST);
    pthread_cond_broadcast(&p->cond);
    pthread_mutex_unlock(&p->lock);
    join_workers(p, p->nthreads);
    p->joined = true;
    return 0;
}

int cor_thread_pool_destroy(cor_thread_pool *p)
{
    if (!p)
        return -EINVAL;
    if (worker_of == p)
        return -EDEADLK;
    cor_thread_pool_stop(p);
    cor_thread_pool_join(p);
    cor__ctx_empty_queue(&p->ctx, &p->lock, &p->queue);
    cor_execution_context_destroy(&p->ctx);
    while (__atomic_load_n(&p->touching, __ATOMIC_ACQUIRE))
        sched_yield();
    pthread_cond_destroy(&p->cond);
    pthread_mutex_destroy(&p->lock);
    free(p);
    return 0;
}

long cor_thread_pool_outstanding(cor_thread_pool *p)
{
    return p ? __atomic_load_n(&p->work, __ATOMIC_RELAXED) : 0;
}

/* ---- dump ----------------------------------------------------------------------------- */

int cor_thread_pool_dump(cor_thread_pool *p, FILE *out)
{
    if (!p || !out)
        return -EINVAL;
    pthread_mutex_lock(&p->lock);
    fprintf(out, "thread pool: %u workers (%u waiting for work), %u queued handles, %ld work%s\n",
            p->nthreads, p->idle, __atomic_load_n(&p->queued, __ATOMIC_RELAXED),
            __atomic_load_n(&p->work, __ATOMIC_RELAXED), p->stopped ? ", stopped" : "");
    unsigned i = 0;
    for (const cor_frame *h = p->queue.head; h; h = h->next) {
        fprintf(out, "queued %u:\n", i++);
        cor__backtrace_queued(h, out);
    }
    pthread_mutex_unlock(&p->lock);
    fflush(out);
    return 0;
}
