/*
 * Async mutex and event: mutual exclusion across threads, FIFO fairness,
 * waiters resume on their own executor, cancellation through the stop token
 * (exactly once, racing the wake-up), broadcast, bad input.
 */
#include <limits.h>
#include <string.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

static int results_of(struct outcome *o)
{
    return __atomic_load_n(&o->results, __ATOMIC_ACQUIRE);
}

/* ---- mutex: the uncontended path and try_lock ---- */

struct lock_once {
    COR_PROMISE(int);
    cor_async_mutex *m;
    int rc;
};
COR_DEFINE_STATIC(lock_once, (cor_async_mutex * m), { self->m = m; })
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_async_mutex_lock(self->m));
    COR_RETURN(self->rc);
}

Test(sync, mutex_free_lock_completes_at_once_without_allocating)
{
    cor_async_mutex m = COR_ASYNC_MUTEX_INIT;
    struct outcome oc = {0};
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_launch_options o = {.alloc = &cr.base, .on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, lock_once(&m)), 0);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, 0);
    cr_assert_eq(cr.allocs, 2, "the task and its launch; the wait lives in the await slot");
    cr_assert_eq(cor_async_mutex_try_lock(&m), -EBUSY);
    cr_assert_eq(cor_async_mutex_destroy(&m), -EBUSY, "a locked mutex is busy");
    cr_assert_eq(cor_async_mutex_unlock(&m), 0);
    cr_assert_eq(cor_async_mutex_unlock(&m), -EPERM, "unlocking an unlocked mutex");
    cr_assert_eq(cor_async_mutex_try_lock(&m), 0);
    cr_assert_eq(cor_async_mutex_unlock(&m), 0);
    cr_assert_eq(cor_async_mutex_destroy(&m), 0);
}

/* ---- mutex: FIFO hand-off ---- */

struct locker {
    COR_PROMISE(int);
    cor_async_mutex *m;
    int id, *log, *len;
    int rc;
};
COR_DEFINE_STATIC(locker, (cor_async_mutex * m, int id, int *log, int *len), {
    self->m = m;
    self->id = id;
    self->log = log;
    self->len = len;
})
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_async_mutex_lock(self->m));
    if (self->rc)
        COR_RETURN(self->rc);
    self->log[(*self->len)++] = self->id;
    cor_async_mutex_unlock(self->m);
    COR_RETURN(0);
}

Test(sync, mutex_is_fifo_fair_and_hands_off_to_the_oldest_waiter)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_mutex mx;
    cr_assert_eq(cor_async_mutex_init(&mx), 0);
    cr_assert_eq(cor_async_mutex_try_lock(&mx), 0); /* held by the test */
    int log[8], len = 0;
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, locker(&mx, i, log, &len)), 0);
    cr_assert_eq(cor_manual_poll(m), 5); /* all five now wait, in launch order */
    cr_assert_eq(len, 0);
    cr_assert_eq(cor_async_mutex_destroy(&mx), -EBUSY);
    cr_assert_eq(cor_async_mutex_unlock(&mx), 0);
    /* Hand-off: waiter 0 owns the mutex before it runs; nobody can barge in. */
    cr_assert_eq(cor_async_mutex_try_lock(&mx), -EBUSY);
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, locker(&mx, 5, log, &len)), 0);
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert_eq(oc.results, 6);
    cr_assert_eq(len, 6);
    for (int i = 0; i < 6; i++)
        cr_assert_eq(log[i], i, "acquired in arrival order");
    cr_assert_eq(cor_async_mutex_destroy(&mx), 0);
    cor_manual_destroy(m);
}

/* ---- mutex: exclusion across threads, waiters resume on their own executor ---- */

#define SYNC_WORKERS 8
#define SYNC_ROUNDS 2000

struct guarded {
    cor_async_mutex m;
    long counter; /* plain: only the mutex guards it */
    int inside;
    long overlaps, wrong_executor;
};

struct nothing {
    COR_PROMISE(int);
};
COR_DEFINE_STATIC(nothing, (void), {})
{
    COR_BEGIN();
    COR_RETURN(0);
}

struct contender {
    COR_PROMISE(int);
    struct guarded *g;
    cor_executor hop;
    cor_thread_pool *pool;
    bool on_pool;
    int i, rc, r;
};
COR_DEFINE_STATIC(contender,
                  (struct guarded * g, cor_executor hop, cor_thread_pool *pool, bool on_pool), {
                      self->g = g;
                      self->hop = hop;
                      self->pool = pool;
                      self->on_pool = on_pool;
                  })
{
    COR_BEGIN();
    for (self->i = 0; self->i < SYNC_ROUNDS; self->i++) {
        COR_AWAIT(self->rc, cor_async_mutex_lock(&self->g->m));
        if (self->rc)
            COR_RETURN(self->rc);
        /* Woken by an unlock on any thread, it resumes where it runs. */
        if (cor_thread_pool_running_in_this_thread(self->pool) != self->on_pool)
            self->g->wrong_executor++;
        if (self->g->inside)
            self->g->overlaps++;
        self->g->inside = 1;
        self->g->counter++;
        /* Hold the mutex across a suspension: the hop lets others queue up. */
        COR_AWAIT(self->r, COR_RUN(nothing(), .ex = self->hop));
        self->g->counter++;
        self->g->inside = 0;
        cor_async_mutex_unlock(&self->g->m);
    }
    COR_RETURN(0);
}

Test(sync, mutex_excludes_coroutines_on_many_threads)
{
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 4), 0);
    manual_thread other;
    manual_thread_start(&other);
    struct guarded g = {.m = COR_ASYNC_MUTEX_INIT};
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    for (int i = 0; i < SYNC_WORKERS; i++) {
        /* Half on the pool hopping to the manual thread, half the other way round. */
        cor_executor run_on = i % 2 ? cor_thread_pool_executor(p) : cor_manual_executor(other.m);
        cor_executor hop = i % 2 ? cor_manual_executor(other.m) : cor_thread_pool_executor(p);
        cr_assert_eq(COR_RUN_ASYNC(run_on, &o, contender(&g, hop, p, i % 2)), 0);
    }
    while (results_of(&oc) + __atomic_load_n(&oc.errors, __ATOMIC_ACQUIRE) < SYNC_WORKERS)
        sched_yield();
    manual_thread_stop(&other);
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.result, 0);
    cr_assert_eq(g.counter, 2L * SYNC_WORKERS * SYNC_ROUNDS);
    cr_assert_eq(g.overlaps, 0, "two holders at once");
    cr_assert_eq(g.wrong_executor, 0);
    cr_assert_eq(cor_async_mutex_destroy(&g.m), 0);
}

/* ---- resumption happens on the waiter's executor and thread ---- */

struct home_waiter {
    COR_PROMISE(int);
    cor_async_mutex *m;
    pthread_t home;
    int rc;
};
COR_DEFINE_STATIC(home_waiter, (cor_async_mutex * m, pthread_t home), {
    self->m = m;
    self->home = home;
})
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_async_mutex_lock(self->m));
    int same = pthread_equal(pthread_self(), self->home);
    cor_async_mutex_unlock(self->m);
    COR_RETURN(self->rc == 0 && same);
}

struct unlock_frame {
    cor_frame hdr;
    cor_async_mutex *m;
    int rc;
};

static cor_handle unlock_resume(cor_frame *h)
{
    struct unlock_frame *u = (struct unlock_frame *)h;
    u->rc = cor_async_mutex_unlock(u->m);
    return COR_NOOP;
}

Test(sync, a_waiter_woken_from_another_thread_resumes_on_its_executor)
{
    cor_manual *home;
    cr_assert_eq(cor_manual_create(&home), 0);
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 1), 0);
    cor_async_mutex mx = COR_ASYNC_MUTEX_INIT;
    cr_assert_eq(cor_async_mutex_try_lock(&mx), 0);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(home), &o, home_waiter(&mx, pthread_self())), 0);
    cr_assert_eq(cor_manual_poll(home), 1); /* now waiting */
    struct unlock_frame u = {.hdr = {.resume = unlock_resume}, .m = &mx};
    cr_assert_eq(cor_executor_post(cor_thread_pool_executor(p), &u.hdr), 0);
    cr_assert_eq(cor_thread_pool_join(p), 0);
    cr_assert_eq(u.rc, 0);
    cr_assert_eq(oc.results, 0, "the unlocking thread did not run the waiter");
    cr_assert_geq(cor_manual_run(home), 1);
    cr_assert_eq(oc.result, 1, "resumed on its home thread, holding the mutex");
    cr_assert_eq(cor_async_mutex_destroy(&mx), 0);
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
    cor_manual_destroy(home);
}

/* ---- mutex cancellation ---- */

Test(sync, mutex_waiter_is_cancelled_by_its_stop_token)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_mutex mx = COR_ASYNC_MUTEX_INIT;
    cr_assert_eq(cor_async_mutex_try_lock(&mx), 0);
    cor_stop_source src;
    cor_stop_source_init(&src);
    int log[4], len = 0;
    struct outcome cancelled = {0}, kept = {0};
    cor_launch_options oc1 = {
        .stop = cor_stop_source_token(&src), .on_result = rec_result, .user = &cancelled};
    cor_launch_options oc2 = {.on_result = rec_result, .user = &kept};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &oc1, locker(&mx, 1, log, &len)), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &oc2, locker(&mx, 2, log, &len)), 0);
    cr_assert_eq(cor_manual_poll(m), 2);
    cr_assert_eq(cor_stop_source_request(&src), 1);
    cr_assert_eq(cancelled.results, 0, "the cancelled waiter resumes on its executor, later");
    cr_assert_eq(cor_manual_poll(m), 1);
    cr_assert_eq(cancelled.results, 1);
    cr_assert_eq(cancelled.result, -ECANCELED);
    /* The cancelled waiter left the list: unlock hands the mutex to waiter 2. */
    cr_assert_eq(cor_async_mutex_unlock(&mx), 0);
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert_eq(kept.result, 0);
    cr_assert_eq(len, 1);
    cr_assert_eq(log[0], 2);
    cr_assert_eq(cor_async_mutex_destroy(&mx), 0);

    /* Stop already requested and the mutex busy: completes at once with -ECANCELED. */
    cr_assert_eq(cor_async_mutex_try_lock(&mx), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &oc1, locker(&mx, 3, log, &len)), 0);
    cr_assert_eq(cor_manual_run(m), 1);
    cr_assert_eq(cancelled.results, 2);
    cr_assert_eq(cancelled.result, -ECANCELED);
    cr_assert_eq(cor_async_mutex_unlock(&mx), 0);
    /* A free mutex is taken whatever the token says. */
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &oc1, locker(&mx, 4, log, &len)), 0);
    cr_assert_eq(cor_manual_run(m), 1);
    cr_assert_eq(cancelled.result, 0);
    cr_assert_eq(cor_async_mutex_destroy(&mx), 0);
    cor_manual_destroy(m);
}

Test(sync, stop_after_the_grant_does_not_cancel)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_mutex mx = COR_ASYNC_MUTEX_INIT;
    cr_assert_eq(cor_async_mutex_try_lock(&mx), 0);
    cor_stop_source src;
    cor_stop_source_init(&src);
    int log[2], len = 0;
    struct outcome oc = {0};
    cor_launch_options o = {
        .stop = cor_stop_source_token(&src), .on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, locker(&mx, 7, log, &len)), 0);
    cr_assert_eq(cor_manual_poll(m), 1);
    cr_assert_eq(cor_async_mutex_unlock(&mx), 0); /* granted, posted */
    cr_assert_eq(cor_stop_source_request(&src), 1);
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert_eq(oc.result, 0, "it owned the mutex before stop was requested");
    cr_assert_eq(len, 1);
    cr_assert_eq(cor_async_mutex_destroy(&mx), 0);
    cor_manual_destroy(m);
}

/* Stop requests racing unlocks from other threads: every waiter gets exactly one outcome. */

#define RACE_WAITERS 6
#define RACE_ROUNDS 300

struct racer {
    COR_PROMISE(int);
    cor_async_mutex *m;
    long *acquired, *cancelled;
    int rc;
};
COR_DEFINE_STATIC(racer, (cor_async_mutex * m, long *acquired, long *cancelled), {
    self->m = m;
    self->acquired = acquired;
    self->cancelled = cancelled;
})
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_async_mutex_lock(self->m));
    if (self->rc == 0) {
        __atomic_fetch_add(self->acquired, 1, __ATOMIC_RELAXED);
        cor_async_mutex_unlock(self->m);
    } else if (self->rc == -ECANCELED) {
        __atomic_fetch_add(self->cancelled, 1, __ATOMIC_RELAXED);
    }
    COR_RETURN(self->rc);
}

static void *request_stop(void *arg)
{
    cor_stop_source_request(arg);
    return NULL;
}

Test(sync, cancellation_racing_unlock_removes_each_waiter_exactly_once)
{
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 3), 0);
    long acquired = 0, cancelled = 0;
    struct outcome oc = {0};
    for (int round = 0; round < RACE_ROUNDS; round++) {
        cor_async_mutex mx = COR_ASYNC_MUTEX_INIT;
        cr_assert_eq(cor_async_mutex_try_lock(&mx), 0);
        cor_stop_source src;
        cor_stop_source_init(&src);
        cor_launch_options o = {.stop = cor_stop_source_token(&src),
                                .on_result = rec_result,
                                .on_error = rec_error,
                                .user = &oc};
        int base = results_of(&oc);
        for (int i = 0; i < RACE_WAITERS; i++)
            cr_assert_eq(
                COR_RUN_ASYNC(cor_thread_pool_executor(p), &o, racer(&mx, &acquired, &cancelled)),
                0);
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, request_stop, &src), 0);
        cr_assert_eq(cor_async_mutex_unlock(&mx), 0);
        pthread_join(t, NULL);
        while (results_of(&oc) < base + RACE_WAITERS)
            sched_yield();
        cr_assert_eq(cor_async_mutex_destroy(&mx), 0, "unlocked, nobody left waiting");
    }
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(acquired + cancelled, (long)RACE_WAITERS * RACE_ROUNDS);
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
}

/* ---- event ---- */

struct waiter {
    COR_PROMISE(int);
    cor_async_event *e;
    pthread_t home;
    int rc;
};
COR_DEFINE_STATIC(waiter, (cor_async_event * e, pthread_t home), {
    self->e = e;
    self->home = home;
})
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_async_event_wait(self->e));
    if (self->rc)
        COR_RETURN(self->rc);
    COR_RETURN(pthread_equal(pthread_self(), self->home) ? 1 : 2);
}

Test(sync, event_single_waiter_set_reset_and_notify_one)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_event e;
    cr_assert_eq(cor_async_event_init(&e), 0);
    cr_assert(!cor_async_event_is_set(&e));
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, waiter(&e, pthread_self())), 0);
    cr_assert_eq(cor_manual_poll(m), 1);
    cr_assert_eq(oc.results, 0);
    cr_assert_eq(cor_async_event_destroy(&e), -EBUSY);
    cr_assert_eq(cor_async_event_set(&e), 1);
    cr_assert(cor_async_event_is_set(&e));
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert_eq(oc.result, 1);
    /* Set latches: the next wait completes at once. */
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, waiter(&e, pthread_self())), 0);
    cr_assert_eq(cor_manual_run(m), 1);
    cr_assert_eq(oc.results, 2);
    cr_assert_eq(cor_async_event_reset(&e), 0);
    cr_assert(!cor_async_event_is_set(&e));
    /* notify_one wakes the oldest of two and latches nothing. */
    cr_assert_eq(cor_async_event_notify_one(&e), 0);
    for (int i = 0; i < 2; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, waiter(&e, pthread_self())), 0);
    cr_assert_eq(cor_manual_poll(m), 2);
    cr_assert_eq(cor_async_event_notify_one(&e), 1);
    cr_assert_eq(cor_manual_poll(m), 1);
    cr_assert_eq(oc.results, 3);
    cr_assert(!cor_async_event_is_set(&e));
    cr_assert_eq(cor_async_event_notify_one(&e), 1);
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert_eq(oc.results, 4);
    cr_assert_eq(cor_async_event_destroy(&e), 0);
    cor_manual_destroy(m);
}

struct driven {
    cor_manual *m;
    pthread_t thread;
};

static void *drive_main(void *arg)
{
    cor_manual_run(((struct driven *)arg)->m);
    return NULL;
}

Test(sync, event_broadcast_wakes_every_waiter_on_its_own_executor)
{
    struct driven d[2];
    struct outcome on[2] = {{0}};
    cor_async_event e = COR_ASYNC_EVENT_INIT;
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 2), 0);
    struct outcome on_pool = {0};
    cor_launch_options op = {.on_result = rec_result, .user = &on_pool};
    for (int k = 0; k < 2; k++) {
        cr_assert_eq(cor_manual_create(&d[k].m), 0);
        cor_launch_options o = {.on_result = rec_result, .user = &on[k]};
        /* Start the thread parked on a work guard, then queue three waiters
         * there and let them suspend. The waiters compare with the thread id. */
        cor_executor ex = cor_manual_executor(d[k].m);
        ex.ops->on_work_started(ex.obj);
        cr_assert_eq(pthread_create(&d[k].thread, NULL, drive_main, &d[k]), 0);
        for (int i = 0; i < 3; i++)
            cr_assert_eq(COR_RUN_ASYNC(ex, &o, waiter(&e, d[k].thread)), 0);
        cr_assert_eq(COR_RUN_ASYNC(cor_thread_pool_executor(p), &op, waiter(&e, pthread_self())),
                     0);
    }
    /* Wait until the event has waiters queued from both threads' executors. */
    while (cor_async_event_destroy(&e) == 0)
        sched_yield();
    int woken = cor_async_event_set(&e);
    cr_assert_geq(woken, 1);
    cr_assert_leq(woken, 8);
    while (results_of(&on[0]) + results_of(&on[1]) + results_of(&on_pool) < 8)
        sched_yield();
    cr_assert_eq(on[0].result, 1, "waiters of the first executor resumed on its thread");
    cr_assert_eq(on[1].result, 1, "waiters of the second executor resumed on its thread");
    cr_assert_eq(on_pool.result, 2, "pool waiters resumed on a worker, not the setter's thread");
    for (int k = 0; k < 2; k++) {
        cor_executor ex = cor_manual_executor(d[k].m);
        ex.ops->on_work_finished(ex.obj);
        pthread_join(d[k].thread, NULL);
        cor_manual_destroy(d[k].m);
    }
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
    cr_assert_eq(cor_async_event_destroy(&e), 0);
}

/* Broadcast with every waiter known to be queued: set wakes them all, in one call. */
Test(sync, event_broadcast_wakes_all_queued_waiters)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_event e = COR_ASYNC_EVENT_INIT;
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    for (int i = 0; i < 50; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, waiter(&e, pthread_self())), 0);
    cr_assert_eq(cor_manual_poll(m), 50);
    cr_assert_eq(oc.results, 0);
    cr_assert_eq(cor_async_event_set(&e), 50);
    cr_assert_eq(oc.results, 0, "woken waiters are posted, not run by the setter");
    cr_assert_eq(cor_manual_run(m), 50);
    cr_assert_eq(oc.results, 50);
    cr_assert_eq(oc.result, 1);
    cr_assert_eq(cor_async_event_set(&e), 0);
    cr_assert_eq(cor_async_event_destroy(&e), 0);
    cor_manual_destroy(m);
}

Test(sync, event_waiter_is_cancelled_by_its_stop_token)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_event e = COR_ASYNC_EVENT_INIT;
    cor_stop_source src;
    cor_stop_source_init(&src);
    struct outcome cancelled = {0}, kept = {0};
    cor_launch_options o1 = {
        .stop = cor_stop_source_token(&src), .on_result = rec_result, .user = &cancelled};
    cor_launch_options o2 = {.on_result = rec_result, .user = &kept};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o1, waiter(&e, pthread_self())), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o2, waiter(&e, pthread_self())), 0);
    cr_assert_eq(cor_manual_poll(m), 2);
    cr_assert_eq(cor_stop_source_request(&src), 1);
    cr_assert_eq(cor_manual_poll(m), 1);
    cr_assert_eq(cancelled.result, -ECANCELED);
    cr_assert_eq(cor_async_event_set(&e), 1, "only the waiter that was not cancelled is left");
    cr_assert_geq(cor_manual_run(m), 1);
    cr_assert_eq(kept.result, 1);
    cr_assert_eq(cancelled.results, 1);
    cr_assert_eq(cor_async_event_destroy(&e), 0);
    cor_manual_destroy(m);
}

/* ---- a waiter queued on an executor that is destroyed ---- */

Test(sync, destroying_the_executor_of_a_woken_waiter_frees_it)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_event e = COR_ASYNC_EVENT_INIT;
    cor_stop_source src;
    cor_stop_source_init(&src);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    cor_launch_options o = {.alloc = &cr.base,
                            .stop = cor_stop_source_token(&src),
                            .on_result = rec_result,
                            .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, waiter(&e, pthread_self())), 0);
    cr_assert_eq(cor_manual_poll(m), 1);
    cr_assert_eq(cor_async_event_set(&e), 1); /* posted to m, never run */
    cor_manual_destroy(m);
    cr_assert_eq(oc.results, 0);
    cr_assert_eq(cr.frees, cr.allocs);
    cr_assert_eq(cr.live_bytes, 0);
    /* Its stop callback was deregistered: requesting stop now touches nothing. */
    cr_assert_eq(cor_stop_source_request(&src), 1);
}

/* ---- bad input ---- */

struct null_waits {
    COR_PROMISE(int);
    int a, b;
};
COR_DEFINE_STATIC(null_waits, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->a, cor_async_mutex_lock(NULL));
    COR_AWAIT(self->b, cor_async_event_wait(NULL));
    COR_RETURN(self->a == -EINVAL && self->b == -EINVAL);
}

Test(sync, bad_input)
{
    cr_assert_eq(cor_async_mutex_init(NULL), -EINVAL);
    cr_assert_eq(cor_async_mutex_destroy(NULL), -EINVAL);
    cr_assert_eq(cor_async_mutex_try_lock(NULL), -EINVAL);
    cr_assert_eq(cor_async_mutex_unlock(NULL), -EINVAL);
    cr_assert_eq(cor_async_event_init(NULL), -EINVAL);
    cr_assert_eq(cor_async_event_destroy(NULL), -EINVAL);
    cr_assert_eq(cor_async_event_set(NULL), -EINVAL);
    cr_assert_eq(cor_async_event_reset(NULL), -EINVAL);
    cr_assert_eq(cor_async_event_notify_one(NULL), -EINVAL);
    cr_assert(!cor_async_event_is_set(NULL));
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, null_waits()), 0);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.result, 1, "awaiting a NULL mutex or event yields -EINVAL as a value");
}

/* ---- semaphore ---- */

/* Acquires n permits and records the order it got them in. */
struct sem_user {
    COR_PROMISE(int);
    cor_async_semaphore *s;
    long n;
    int id, rc;
    int *order, *pos;
};
COR_DEFINE_STATIC(sem_user, (cor_async_semaphore * s, long n, int id, int *order, int *pos), {
    self->s = s;
    self->n = n;
    self->id = id;
    self->order = order;
    self->pos = pos;
})
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_async_semaphore_acquire(self->s, self->n));
    if (self->rc == 0)
        self->order[(*self->pos)++] = self->id;
    COR_RETURN(self->rc);
}

Test(sync, semaphore_grants_in_fifo_order_and_newcomers_wait_their_turn)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_semaphore s;
    cr_assert_eq(cor_async_semaphore_init(&s, 1), 0);
    int order[8] = {0}, pos = 0;
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cor_executor ex = cor_manual_executor(m);
    cr_assert_eq(COR_RUN_ASYNC(ex, &o, sem_user(&s, 1, 1, order, &pos)), 0); /* takes the one */
    cr_assert_eq(COR_RUN_ASYNC(ex, &o, sem_user(&s, 3, 2, order, &pos)), 0); /* waits for 3 */
    cr_assert_eq(COR_RUN_ASYNC(ex, &o, sem_user(&s, 1, 3, order, &pos)), 0); /* waits behind 2 */
    cor_manual_poll(m);
    cr_assert_eq(pos, 1);
    cr_assert_eq(cor_async_semaphore_release(&s, 1), 0, "1 free: 2 wants 3, 3 waits behind it");
    cr_assert_eq(cor_async_semaphore_try_acquire(&s, 1), -EBUSY, "no jumping the queue");
    cr_assert_eq(cor_async_semaphore_release(&s, 3), 2, "4 free: 2 takes 3, then 3 takes 1");
    cor_manual_run(m);
    cr_assert_eq(pos, 3);
    cr_assert_eq(order[0], 1);
    cr_assert_eq(order[1], 2);
    cr_assert_eq(order[2], 3);
    cr_assert_eq(cor_async_semaphore_count(&s), 0);
    cr_assert_eq(oc.results, 3);
    cr_assert_eq(cor_async_semaphore_destroy(&s), 0);
    cor_manual_destroy(m);
}

Test(sync, semaphore_canceled_head_lets_the_next_waiter_through)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_async_semaphore s;
    cr_assert_eq(cor_async_semaphore_init(&s, 2), 0);
    int order[4] = {0}, pos = 0;
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    struct outcome big = {0}, small = {0};
    cor_launch_options bo = {
        .stop = cor_stop_source_token(&src), .on_result = rec_result, .user = &big};
    cor_launch_options so = {.on_result = rec_result, .user = &small};
    cor_executor ex = cor_manual_executor(m);
    cr_assert_eq(COR_RUN_ASYNC(ex, &bo, sem_user(&s, 5, 1, order, &pos)), 0); /* needs 5 of 2 */
    cr_assert_eq(COR_RUN_ASYNC(ex, &so, sem_user(&s, 1, 2, order, &pos)), 0); /* FIFO: waits */
    cor_manual_poll(m);
    cr_assert_eq(pos, 0);
    cor_stop_source_request(&src); /* the head leaves: the one behind it fits in the 2 free */
    cor_manual_run(m);
    cr_assert_eq(big.result, -ECANCELED);
    cr_assert_eq(small.result, 0);
    cr_assert_eq(order[0], 2);
    cr_assert_eq(cor_async_semaphore_count(&s), 1, "the canceled waiter took nothing");
    cr_assert_eq(cor_async_semaphore_destroy(&s), 0);
    cor_manual_destroy(m);
}

/* Bounded concurrency across threads: never more than 3 inside, every task gets in. */
struct bounded {
    COR_PROMISE(int);
    cor_async_semaphore *s;
    int *inside, *peak;
    int rc;
};
COR_DEFINE_STATIC(bounded, (cor_async_semaphore * s, int *inside, int *peak), {
    self->s = s;
    self->inside = inside;
    self->peak = peak;
})
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_async_semaphore_acquire(self->s, 1));
    int now = __atomic_add_fetch(self->inside, 1, __ATOMIC_ACQ_REL);
    int p = __atomic_load_n(self->peak, __ATOMIC_RELAXED);
    while (now > p && !__atomic_compare_exchange_n(self->peak, &p, now, false, __ATOMIC_RELAXED,
                                                   __ATOMIC_RELAXED))
        ;
    COR_AWAIT_VOID(cor_yield());
    __atomic_sub_fetch(self->inside, 1, __ATOMIC_ACQ_REL);
    cor_async_semaphore_release(self->s, 1);
    COR_RETURN(0);
}

Test(sync, semaphore_bounds_concurrency_on_a_pool, .timeout = 60)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 4), 0);
    cor_async_semaphore s;
    cr_assert_eq(cor_async_semaphore_init(&s, 3), 0);
    int inside = 0, peak = 0;
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    for (int i = 0; i < 2000; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_thread_pool_executor(pool), &o, bounded(&s, &inside, &peak)),
                     0);
    cr_assert_eq(cor_thread_pool_join(pool), 0);
    cr_assert_eq(oc.results, 2000);
    cr_assert_leq(peak, 3, "at most 3 inside at once (saw %d)", peak);
    cr_assert_eq(cor_async_semaphore_count(&s), 3);
    cr_assert_eq(cor_async_semaphore_destroy(&s), 0);
    cr_assert_eq(cor_thread_pool_destroy(pool), 0);
}

Test(sync, semaphore_bad_input)
{
    cor_async_semaphore s;
    cr_assert_eq(cor_async_semaphore_init(NULL, 1), -EINVAL);
    cr_assert_eq(cor_async_semaphore_init(&s, -1), -EINVAL);
    cr_assert_eq(cor_async_semaphore_init(&s, 1), 0);
    cr_assert_eq(cor_async_semaphore_try_acquire(&s, 0), -EINVAL);
    cr_assert_eq(cor_async_semaphore_try_acquire(NULL, 1), -EINVAL);
    cr_assert_eq(cor_async_semaphore_release(&s, 0), -EINVAL);
    cr_assert_eq(cor_async_semaphore_release(NULL, 1), -EINVAL);
    cr_assert_eq(cor_async_semaphore_count(NULL), -EINVAL);
    cr_assert_eq(cor_async_semaphore_destroy(NULL), -EINVAL);
    int order[1], pos = 0;
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, sem_user(&s, 0, 1, order, &pos)), 0);
    cr_assert_eq(oc.result, -EINVAL);
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, sem_user(NULL, 1, 1, order, &pos)), 0);
    cr_assert_eq(oc.result, -EINVAL);
    cr_assert_eq(cor_async_semaphore_try_acquire(&s, 1), 0);
    cr_assert_eq(cor_async_semaphore_count(&s), 0);
    cr_assert_eq(cor_async_semaphore_destroy(&s), 0);
    /* A release past LONG_MAX returns nothing. */
    cr_assert_eq(cor_async_semaphore_init(&s, LONG_MAX - 1), 0);
    cr_assert_eq(cor_async_semaphore_release(&s, 2), -EOVERFLOW);
    cr_assert_eq(cor_async_semaphore_count(&s), LONG_MAX - 1);
    cr_assert_eq(cor_async_semaphore_release(&s, 1), 0);
    cr_assert_eq(cor_async_semaphore_count(&s), LONG_MAX);
    cr_assert_eq(cor_async_semaphore_release(&s, 1), -EOVERFLOW);
    cr_assert_eq(cor_async_semaphore_destroy(&s), 0);
}

/* ---- tasks waiting on wait lists when their execution context is destroyed ---- */

enum park_kind { PARK_MUTEX, PARK_EVENT, PARK_SEMAPHORE, PARK_RECV, PARK_SEND, PARK_KINDS };
enum { PARK_SEMAPHORE_TWO = PARK_KINDS }; /* wants two permits */

/* What the parked tasks wait on: a held mutex, an unset event, an empty semaphore, two channels. */
struct park_objects {
    cor_async_mutex m;
    cor_async_event e;
    cor_async_semaphore s;
    cor_channel empty, full;
    long empty_buf[1], full_buf[1];
    int started;   /* parked tasks that began */
    int destroyed; /* COR_ON_DESTROY calls */
};

static void park_objects_init(struct park_objects *p)
{
    memset(p, 0, sizeof *p);
    cr_assert_eq(cor_async_mutex_init(&p->m), 0);
    cr_assert_eq(cor_async_mutex_try_lock(&p->m), 0);
    cr_assert_eq(cor_async_event_init(&p->e), 0);
    cr_assert_eq(cor_async_semaphore_init(&p->s, 0), 0);
    cr_assert_eq(cor_channel_init(&p->empty, sizeof(long), 1, p->empty_buf), 0);
    cr_assert_eq(cor_channel_init(&p->full, sizeof(long), 1, p->full_buf), 0);
    long one = 1;
    cr_assert_eq(cor_channel_try_send(&p->full, &one), 0);
}

/* Every object is usable again: nobody waits any more, the wake-ups below wake no one. */
static void park_objects_check_free(struct park_objects *p)
{
    cr_assert_eq(cor_async_mutex_unlock(&p->m), 0);
    cr_assert_eq(cor_async_mutex_destroy(&p->m), 0, "no waiter left on the mutex");
    cr_assert_eq(cor_async_event_notify_one(&p->e), 0, "no waiter left on the event");
    cr_assert_eq(cor_async_event_destroy(&p->e), 0);
    cr_assert_eq(cor_async_semaphore_release(&p->s, 3), 0);
    cr_assert_eq(cor_async_semaphore_count(&p->s), 3, "no waiter took a permit");
    cr_assert_eq(cor_async_semaphore_destroy(&p->s), 0);
    long v = 7;
    cr_assert_eq(cor_channel_try_send(&p->empty, &v), 0, "no receiver left: the item is buffered");
    cr_assert_eq(cor_channel_size(&p->empty), 1);
    cr_assert_eq(cor_channel_try_recv(&p->full, &v), 0);
    cr_assert_eq(v, 1, "the buffered item, not a dead sender's");
    cr_assert_eq(cor_channel_size(&p->full), 0, "no sender left to refill it");
    cr_assert_eq(cor_channel_destroy(&p->empty), 0);
    cr_assert_eq(cor_channel_destroy(&p->full), 0);
}

struct parked {
    COR_PROMISE(int);
    int kind;
    struct park_objects *p;
    long item;
    int rc;
};

static void parked_destroyed(cor_frame *f)
{
    __atomic_fetch_add(&((struct parked *)f)->p->destroyed, 1, __ATOMIC_RELAXED);
}

COR_DEFINE_STATIC(parked, (int kind, struct park_objects *p), {
    self->kind = kind;
    self->p = p;
})
{
    COR_BEGIN();
    COR_ON_DESTROY(parked_destroyed);
    __atomic_fetch_add(&self->p->started, 1, __ATOMIC_RELEASE);
    self->item = 2;
    if (self->kind == PARK_MUTEX)
        COR_AWAIT(self->rc, cor_async_mutex_lock(&self->p->m));
    else if (self->kind == PARK_EVENT)
        COR_AWAIT(self->rc, cor_async_event_wait(&self->p->e));
    else if (self->kind == PARK_SEMAPHORE || self->kind == PARK_SEMAPHORE_TWO)
        COR_AWAIT(self->rc,
                  cor_async_semaphore_acquire(&self->p->s, self->kind == PARK_SEMAPHORE ? 1 : 2));
    else if (self->kind == PARK_RECV)
        COR_AWAIT(self->rc, cor_channel_recv(&self->p->empty, &self->item));
    else
        COR_AWAIT(self->rc, cor_channel_send(&self->p->full, &self->item));
    COR_RETURN(self->rc);
}

/* Two parked children under one join: the destroy follows the join down to both. */
struct parked_pair {
    COR_PROMISE(int);
    struct park_objects *p;
    int a, b;
};
static void parked_pair_destroyed(cor_frame *f)
{
    __atomic_fetch_add(&((struct parked_pair *)f)->p->destroyed, 1, __ATOMIC_RELAXED);
}

COR_DEFINE_STATIC(parked_pair, (struct park_objects * p), { self->p = p; })
{
    COR_BEGIN();
    COR_ON_DESTROY(parked_pair_destroyed);
    __atomic_fetch_add(&self->p->started, 1, __ATOMIC_RELEASE);
    COR_AWAIT_ALL((self->a, parked(PARK_EVENT, self->p)), (self->b, parked(PARK_RECV, self->p)));
    COR_RETURN(self->a + self->b);
}

/* Launches one task per kind and a join of two on ex; returns the tasks' frame count. */
static int park_all(cor_executor ex, struct park_objects *p, counting_resource *cr,
                    struct outcome *oc)
{
    cor_launch_options o = {
        .alloc = &cr->base, .on_result = rec_result, .on_error = rec_error, .user = oc};
    for (int k = 0; k < PARK_KINDS; k++)
        cr_assert_eq(COR_RUN_ASYNC(ex, &o, parked(k, p)), 0);
    cr_assert_eq(COR_RUN_ASYNC(ex, &o, parked_pair(p)), 0);
    return PARK_KINDS + 3;
}

static void expect_all_destroyed(struct park_objects *p, int frames, counting_resource *cr,
                                 struct outcome *oc)
{
    cr_assert_eq(p->destroyed, frames, "every parked frame destroyed (%d of %d)", p->destroyed,
                 frames);
    cr_assert_eq(oc->results + oc->errors, 0, "no task completed");
    cr_assert_eq(cr->frees, cr->allocs);
    cr_assert_eq(cr->live_bytes, 0);
    park_objects_check_free(p);
}

IO_TEST(sync, destroying_an_io_context_destroys_its_tasks_waiting_on_wait_lists)
{
    cor_io_context *io = io_test_create(backend, NULL);
    struct park_objects p;
    park_objects_init(&p);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    int frames = park_all(cor_io_context_executor(io), &p, &cr, &oc);
    cr_assert_geq(cor_io_context_poll(io), 0);
    cr_assert_eq(p.destroyed, 0, "all parked, none gone yet");
    cor_io_context_destroy(io);
    expect_all_destroyed(&p, frames, &cr, &oc);
}

Test(sync, destroying_a_manual_executor_destroys_its_tasks_waiting_on_wait_lists)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    struct park_objects p;
    park_objects_init(&p);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    int frames = park_all(cor_manual_executor(m), &p, &cr, &oc);
    cr_assert_geq(cor_manual_poll(m), 0);
    cor_manual_destroy(m);
    expect_all_destroyed(&p, frames, &cr, &oc);
}

Test(sync, destroying_a_thread_pool_destroys_its_tasks_waiting_on_wait_lists)
{
    cor_thread_pool *pool;
    cr_assert_eq(cor_thread_pool_create(&pool, 2), 0);
    struct park_objects p;
    park_objects_init(&p);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    int frames = park_all(cor_thread_pool_executor(pool), &p, &cr, &oc);
    /* Each parks in the handler that starts it, which the workers finish before they exit. */
    for (int i = 0; i < 5000 && __atomic_load_n(&p.started, __ATOMIC_ACQUIRE) < frames; i++)
        usleep(1000);
    cr_assert_eq(__atomic_load_n(&p.started, __ATOMIC_ACQUIRE), frames);
    cor_thread_pool_destroy(pool);
    expect_all_destroyed(&p, frames, &cr, &oc);
}

/* A semaphore's head waiter destroyed with its context lets the one behind it through. */
Test(sync, a_destroyed_semaphore_waiter_lets_the_next_one_through)
{
    cor_manual *dying, *live;
    cr_assert_eq(cor_manual_create(&dying), 0);
    cr_assert_eq(cor_manual_create(&live), 0);
    struct park_objects p;
    park_objects_init(&p);
    cr_assert_eq(cor_async_semaphore_release(&p.s, 1), 0);
    struct outcome gone = {0}, ran = {0};
    cor_launch_options og = {.on_result = rec_result, .user = &gone};
    cor_launch_options ol = {.on_result = rec_result, .user = &ran};
    /* The head wants 2 of the 1 permit; the one behind it, wanting 1, waits its turn (FIFO). */
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(dying), &og, parked(PARK_SEMAPHORE_TWO, &p)), 0);
    cr_assert_eq(cor_manual_poll(dying), 1);
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(live), &ol, parked(PARK_SEMAPHORE, &p)), 0);
    cr_assert_eq(cor_manual_poll(live), 1);
    cr_assert_eq(ran.results, 0, "behind the head");
    cor_manual_destroy(dying);
    cr_assert_eq(p.destroyed, 1);
    cr_assert_eq(cor_manual_poll(live), 1, "granted when the head left, posted to its executor");
    cr_assert_eq(ran.results, 1);
    cr_assert_eq(ran.result, 0);
    cr_assert_eq(cor_async_semaphore_count(&p.s), 0);
    cor_manual_destroy(live);
    cr_assert_eq(gone.results, 0);
    cr_assert_eq(p.destroyed, 1);
}

IO_TEST(sync, destroying_an_io_group_destroys_its_tasks_waiting_on_wait_lists)
{
    cor_io_group *g;
    cor_io_context_options co = {.backend = backend};
    cor_io_group_options go = {.no_pin = true, .context = &co};
    cr_assert_eq(cor_io_group_create(&g, 2, &go), 0);
    struct park_objects p[2];
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    int frames = 0;
    for (unsigned i = 0; i < 2; i++) {
        park_objects_init(&p[i]);
        frames = park_all(cor_io_group_executor(g, i), &p[i], &cr, &oc);
    }
    for (int i = 0; i < 5000 && (__atomic_load_n(&p[0].started, __ATOMIC_ACQUIRE) < frames ||
                                 __atomic_load_n(&p[1].started, __ATOMIC_ACQUIRE) < frames);
         i++)
        usleep(1000);
    /* The members' threads end with their tasks still parked; destroy ends those. */
    cr_assert_eq(cor_io_group_stop(g), 0);
    cor_io_group_destroy(g);
    cr_assert_eq(cr.frees, cr.allocs);
    cr_assert_eq(cr.live_bytes, 0);
    cr_assert_eq(oc.results + oc.errors, 0);
    for (unsigned i = 0; i < 2; i++) {
        cr_assert_eq(p[i].destroyed, frames);
        park_objects_check_free(&p[i]);
    }
}
