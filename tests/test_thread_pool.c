/*
 * The thread pool: handles run on workers, dispatch inline on a worker, join
 * waits for outstanding work, stop/join/destroy with pending work destroys the
 * frames, run() hops to the pool and back, bad input.
 */
#include <sys/resource.h>
#include <time.h>
#include <criterion/criterion.h>

#include "util.h"

/* ---- bare handles ---- */

struct probe {
    cor_frame hdr;
    cor_thread_pool *pool;
    long *ran, *on_worker;
};

static cor_handle probe_resume(cor_frame *h)
{
    struct probe *p = (struct probe *)h;
    if (cor_thread_pool_running_in_this_thread(p->pool))
        __atomic_fetch_add(p->on_worker, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(p->ran, 1, __ATOMIC_RELAXED);
    return COR_NOOP;
}

Test(thread_pool, posted_handles_run_on_workers_and_join_drains_the_queue)
{
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 4), 0);
    cr_assert_eq(cor_thread_pool_size(p), 4);
    cr_assert_not_null(cor_thread_pool_context(p));
    cr_assert_eq(cor_executor_context(cor_thread_pool_executor(p)), cor_thread_pool_context(p));
    cr_assert(!cor_thread_pool_running_in_this_thread(p));
    static struct probe probes[5000];
    long ran = 0, on_worker = 0;
    for (int i = 0; i < 5000; i++) {
        probes[i] = (struct probe){{.resume = probe_resume}, p, &ran, &on_worker};
        /* From a thread that is not a worker, dispatch queues like post. */
        if (i % 2)
            cr_assert_eq(cor_executor_post(cor_thread_pool_executor(p), &probes[i].hdr), 0);
        else
            cr_assert_eq(cor_executor_dispatch(cor_thread_pool_executor(p), &probes[i].hdr), 0);
    }
    cr_assert_eq(cor_thread_pool_join(p), 0);
    cr_assert_eq(ran, 5000);
    cr_assert_eq(on_worker, 5000);
    cr_assert_eq(cor_thread_pool_join(p), 0, "join is idempotent");
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
}

Test(thread_pool, default_size_is_one_worker_per_cpu)
{
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 0), 0);
    cr_assert_geq(cor_thread_pool_size(p), 1);
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
}

/* ---- dispatch from a worker runs inline ---- */

struct inline_check {
    cor_frame hdr;
    cor_thread_pool *pool;
    struct probe inner;
    long ran_before_return; /* inner's ran count right after dispatch returned */
    long ran, on_worker;
    int join_rc, destroy_rc;
};

static cor_handle inline_check_resume(cor_frame *h)
{
    struct inline_check *c = (struct inline_check *)h;
    cor_executor_dispatch(cor_thread_pool_executor(c->pool), &c->inner.hdr);
    c->ran_before_return = __atomic_load_n(&c->ran, __ATOMIC_RELAXED);
    c->join_rc = cor_thread_pool_join(c->pool);
    c->destroy_rc = cor_thread_pool_destroy(c->pool);
    return COR_NOOP;
}

Test(thread_pool, dispatch_on_a_worker_runs_inline)
{
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 2), 0);
    struct inline_check c = {.hdr = {.resume = inline_check_resume}, .pool = p};
    c.inner = (struct probe){{.resume = probe_resume}, p, &c.ran, &c.on_worker};
    cr_assert_eq(cor_executor_post(cor_thread_pool_executor(p), &c.hdr), 0);
    cr_assert_eq(cor_thread_pool_join(p), 0);
    cr_assert_eq(c.ran_before_return, 1, "dispatch on a worker ran the handle before returning");
    cr_assert_eq(c.on_worker, 1);
    cr_assert_eq(c.join_rc, -EDEADLK, "a worker cannot join its own pool");
    cr_assert_eq(c.destroy_rc, -EDEADLK, "nor destroy it");
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
}

/* ---- launches: work counting keeps the workers until tasks are done ---- */

struct leaf {
    COR_PROMISE(int);
    int x;
};
COR_DEFINE_STATIC(leaf, (int x), { self->x = x; })
{
    COR_BEGIN();
    COR_RETURN(self->x);
}

struct away_and_back {
    COR_PROMISE(int);
    cor_executor away;
    cor_thread_pool *pool;
    int r, ok;
};
COR_DEFINE_STATIC(away_and_back, (cor_thread_pool * pool, cor_executor away), {
    self->pool = pool;
    self->away = away;
})
{
    COR_BEGIN();
    self->ok = cor_thread_pool_running_in_this_thread(self->pool);
    /* While the child runs elsewhere the pool's queue is empty: only the
     * work count keeps a joining pool's workers alive. */
    COR_AWAIT(self->r, COR_RUN(leaf(7), .ex = self->away));
    self->ok = self->ok && cor_thread_pool_running_in_this_thread(self->pool);
    COR_RETURN(self->ok ? self->r : -1);
}

Test(thread_pool, join_waits_for_tasks_that_hop_away)
{
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 2), 0);
    manual_thread away;
    manual_thread_start(&away);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    for (int i = 0; i < 50; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_thread_pool_executor(p), &o,
                                   away_and_back(p, cor_manual_executor(away.m))),
                     0);
    cr_assert_eq(cor_thread_pool_join(p), 0);
    cr_assert_eq(oc.results, 50);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.result, 7);
    cr_assert_eq(cor_thread_pool_outstanding(p), 0);
    manual_thread_stop(&away);
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
}

/* ---- run(): from a manual executor to the pool and back ---- */

struct hop_child {
    COR_PROMISE(int);
    cor_thread_pool *pool;
    cor_executor want;
};
COR_DEFINE_STATIC(hop_child, (cor_thread_pool * pool, cor_executor want), {
    self->pool = pool;
    self->want = want;
})
{
    COR_BEGIN();
    COR_RETURN(cor_thread_pool_running_in_this_thread(self->pool) &&
               cor_executor_equal(COR_THIS_EXECUTOR(), self->want));
}

struct hop_parent {
    COR_PROMISE(int);
    cor_thread_pool *pool;
    pthread_t home;
    cor_executor home_ex;
    int i, r, ok;
};
COR_DEFINE_STATIC(hop_parent, (cor_thread_pool * pool, pthread_t home), {
    self->pool = pool;
    self->home = home;
})
{
    COR_BEGIN();
    self->ok = 1;
    for (self->i = 0; self->i < 1000; self->i++) {
        self->home_ex = COR_THIS_EXECUTOR();
        COR_AWAIT(self->r, COR_RUN(hop_child(self->pool, cor_thread_pool_executor(self->pool)),
                                   .ex = cor_thread_pool_executor(self->pool)));
        if (!self->r || !pthread_equal(pthread_self(), self->home) ||
            !cor_executor_equal(self->home_ex, COR_THIS_EXECUTOR()))
            self->ok = 0;
    }
    COR_RETURN(self->ok);
}

Test(thread_pool, run_hops_to_the_pool_and_back_home)
{
    cor_manual *home;
    cr_assert_eq(cor_manual_create(&home), 0);
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 2), 0);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(home), &o, hop_parent(p, pthread_self())), 0);
    cr_assert_gt(cor_manual_run(home), 1000);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.result, 1, "the child ran on the pool, the parent resumed at home each time");
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
    cor_manual_destroy(home);
}

/* ---- idle: the bounded spins before sleeping burn no CPU ---- */

static double cpu_seconds(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec) / 1e6;
}

static void *drive_io(void *io)
{
    cor_io_context_run(io);
    return NULL;
}

Test(thread_pool, an_idle_pool_and_io_context_burn_no_cpu, .timeout = 60)
{
    cor_io_context *io;
    cr_assert_eq(cor_io_context_create(&io, NULL), 0);
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 2), 0);
    /* Hops first: both sides spin before they sleep while work goes back and forth. */
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &o, hop_parent(p, pthread_self())),
                 0);
    cr_assert_gt(cor_io_context_run(io), 0);
    cr_assert_eq(oc.result, 1);
    /* Then nothing to do: the owner blocks with work held, the workers wait for posts. */
    cor_executor ex = cor_io_context_executor(io);
    ex.ops->on_work_started(ex.obj);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, drive_io, io), 0);
    double cpu0 = cpu_seconds();
    struct timespec second = {1, 0};
    nanosleep(&second, NULL);
    double cpu = cpu_seconds() - cpu0;
    ex.ops->on_work_finished(ex.obj);
    pthread_join(t, NULL);
    cr_assert_lt(cpu, 0.5, "idle for 1 s, the process used %.3f s of CPU", cpu);
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
    cor_io_context_destroy(io);
}

/* ---- stop and join with pending work; destroy destroys never-run frames ---- */

struct gate {
    cor_frame hdr;
    int open, entered;
};

static cor_handle gate_resume(cor_frame *h)
{
    struct gate *g = (struct gate *)h;
    __atomic_store_n(&g->entered, 1, __ATOMIC_RELEASE);
    while (!__atomic_load_n(&g->open, __ATOMIC_ACQUIRE))
        sched_yield();
    return COR_NOOP;
}

Test(thread_pool, stop_and_join_with_pending_work_destroys_the_frames)
{
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 1), 0);
    struct gate g = {.hdr = {.resume = gate_resume}};
    cr_assert_eq(cor_executor_post(cor_thread_pool_executor(p), &g.hdr), 0);
    while (!__atomic_load_n(&g.entered, __ATOMIC_ACQUIRE))
        sched_yield();
    /* The only worker is busy: these launches stay queued. */
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    cor_launch_options o = {
        .alloc = &cr.base, .on_result = rec_result, .on_error = rec_error, .user = &oc};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_thread_pool_executor(p), &o, leaf(i)), 0);
    cr_assert_eq(cor_thread_pool_outstanding(p), 10);
    cr_assert_eq(cor_thread_pool_stop(p), 0);
    cr_assert_eq(cor_thread_pool_stop(p), 0, "stop is idempotent");
    __atomic_store_n(&g.open, 1, __ATOMIC_RELEASE);
    /* join returns after stop even though work is outstanding. */
    cr_assert_eq(cor_thread_pool_join(p), 0);
    /* Posting after stop queues; destroy destroys it with the rest. */
    cr_assert_eq(COR_RUN_ASYNC(cor_thread_pool_executor(p), &o, leaf(99)), 0);
    cr_assert_eq(cr.allocs, 22);
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
    cr_assert_eq(oc.results, 0, "no task ran after stop");
    cr_assert_eq(oc.errors, 0, "destroyed tasks call no handler");
    cr_assert_eq(cr.frees, 22);
    cr_assert_eq(cr.live_bytes, 0);
}

Test(thread_pool, destroy_without_join_stops_the_workers_and_destroys_queued_frames)
{
    cor_thread_pool *p;
    cr_assert_eq(cor_thread_pool_create(&p, 1), 0);
    struct gate g = {.hdr = {.resume = gate_resume}};
    cr_assert_eq(cor_executor_post(cor_thread_pool_executor(p), &g.hdr), 0);
    while (!__atomic_load_n(&g.entered, __ATOMIC_ACQUIRE))
        sched_yield();
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_launch_options o = {.alloc = &cr.base};
    for (int i = 0; i < 5; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_thread_pool_executor(p), &o, leaf(i)), 0);
    /* A strand over the pool with queued work: its drainer is queued on the pool. */
    cor_strand s;
    cr_assert_eq(cor_strand_init(&s, cor_thread_pool_executor(p)), 0);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_strand_executor(&s), &o, leaf(i)), 0);
    __atomic_store_n(&g.open, 1, __ATOMIC_RELEASE);
    cr_assert_eq(cor_thread_pool_stop(p), 0);
    cr_assert_eq(cor_thread_pool_destroy(p), 0);
    /* Either the worker ran some before it saw stop, or destroy destroyed them: none leaks. */
    cr_assert_eq(cr.frees, cr.allocs);
    cr_assert_eq(cr.live_bytes, 0);
    cr_assert_eq(cor_strand_destroy(&s), 0);
}

/* ---- bad input ---- */

Test(thread_pool, bad_input)
{
    cor_thread_pool *p = NULL;
    cr_assert_eq(cor_thread_pool_create(NULL, 1), -EINVAL);
    cr_assert_eq(cor_thread_pool_create(&p, COR_THREAD_POOL_MAX_THREADS + 1), -EINVAL);
    cr_assert_null(p);
    cr_assert_eq(cor_thread_pool_stop(NULL), -EINVAL);
    cr_assert_eq(cor_thread_pool_join(NULL), -EINVAL);
    cr_assert_eq(cor_thread_pool_destroy(NULL), -EINVAL);
    cr_assert(!cor_executor_valid(cor_thread_pool_executor(NULL)));
    cr_assert_null(cor_thread_pool_context(NULL));
    cr_assert_eq(cor_thread_pool_size(NULL), 0);
    cr_assert_eq(cor_thread_pool_outstanding(NULL), 0);
    cr_assert(!cor_thread_pool_running_in_this_thread(NULL));
}
