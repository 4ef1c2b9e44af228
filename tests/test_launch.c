/* Launchers: run_async handlers and allocator window, run() hops, stop tokens, bad input. */
#include <criterion/criterion.h>

#include "util.h"

/* ---- allocator window: every frame of the chain comes from the launch's resource ---- */

struct leaf {
    COR_PROMISE(int);
    int x;
};
COR_DEFINE_STATIC(leaf, (int x), { self->x = x; })
{
    COR_BEGIN();
    COR_RETURN(self->x);
}

struct fan {
    COR_PROMISE(int);
    int i, n, sum, r;
};
COR_DEFINE_STATIC(fan, (int n), { self->n = n; })
{
    COR_BEGIN();
    self->sum = 0;
    for (self->i = 0; self->i < self->n; self->i++) {
        COR_AWAIT(self->r, leaf(self->i));
        self->sum += self->r;
    }
    COR_RETURN(self->sum);
}

Test(launch, every_frame_comes_from_the_launch_resource)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_alloc_stats before, after;
    cor_alloc_stats_get(&before);
    struct outcome oc = {0};
    cor_launch_options o = {.alloc = &cr.base, .on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, fan(10)), 0);
    cr_assert_eq(oc.result, 45);
    /* fan, ten leaves, and the launch record. */
    cr_assert_eq(cr.allocs, 12);
    cr_assert_eq(cr.frees, 12);
    cr_assert_eq(cr.live_bytes, 0);
    cor_alloc_stats_get(&after);
    cr_assert_eq(after.allocations - before.allocations, 12, "the thread statistics count them");
    cr_assert_eq(after.heap_calls, before.heap_calls, "nothing went to the default heap");
}

Test(launch, context_default_resource_is_used_when_the_launch_names_none)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cr_assert_eq(cor_execution_context_set_resource(cor_manual_context(m), &cr.base), 0);
    cr_assert_eq(cor_execution_context_resource(cor_manual_context(m)), &cr.base);
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), NULL, fan(3)), 0);
    cr_assert_eq(cor_manual_run(m), 1);
    cr_assert_eq(cr.allocs, 5);
    cr_assert_eq(cr.frees, 5);
    cor_manual_destroy(m);
}

Test(launch, exhausted_resource_fails_the_chain_through_the_error_channel)
{
    counting_resource cr;
    counting_resource_init(&cr, 5); /* fan + launch record + 3 leaves, then -ENOMEM */
    struct outcome oc = {0};
    cor_launch_options o = {
        .alloc = &cr.base, .on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, fan(10)), 0);
    cr_assert_eq(oc.errors, 1);
    cr_assert_eq(oc.err, -ENOMEM);
    cr_assert_eq(oc.results, 0);
    cr_assert_eq(cr.allocs, cr.frees);
    cr_assert_eq(cr.live_bytes, 0);
}

/* ---- bad input ---- */

Test(launch, null_executor_is_rejected_and_frees_the_task)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    cor_launch_options o = {.alloc = &cr.base};
    cr_assert_eq(COR_RUN_ASYNC(COR_EXECUTOR_NULL, &o, leaf(1)), -EINVAL);
    cr_assert_eq(cr.allocs, 1);
    cr_assert_eq(cr.frees, 1);
    cor_executor_ops half = {0};
    cor_executor broken = {&half, &half};
    cr_assert_eq(COR_RUN_ASYNC(broken, &o, leaf(1)), -EINVAL);
    cr_assert_eq(cr.live_bytes, 0);
}

Test(launch, failed_task_allocation_is_enomem)
{
    counting_resource cr;
    counting_resource_init(&cr, 0);
    struct outcome oc = {0};
    cor_launch_options o = {.alloc = &cr.base, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, leaf(1)), -ENOMEM);
    cr_assert_eq(oc.errors, 0, "a launch that failed calls no handler");
    /* The task fits but the launch record does not. */
    counting_resource_init(&cr, 1);
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, leaf(1)), -ENOMEM);
    cr_assert_eq(cr.frees, 1);
}

Test(launch, executor_helpers_reject_bad_input)
{
    cr_assert_eq(cor_executor_dispatch(COR_EXECUTOR_NULL, NULL), -EINVAL);
    cr_assert_eq(cor_executor_post(cor_inline_executor(), NULL), -EINVAL);
    cr_assert_null(cor_executor_context(COR_EXECUTOR_NULL));
    cr_assert_null(cor_executor_context(cor_inline_executor()));
    cr_assert_eq(cor_manual_create(NULL), -EINVAL);
    cr_assert_eq(cor_manual_run(NULL), -EINVAL);
    cr_assert_eq(cor_manual_poll_one(NULL), -EINVAL);
    cr_assert(!cor_executor_valid(cor_manual_executor(NULL)));
}

/* ---- run(): hop to another executor and back ---- */

static __thread int thread_tag;

struct where {
    COR_PROMISE(int);
    cor_executor ex;
    int tag;
};
COR_DEFINE_STATIC(where, (void), {})
{
    COR_BEGIN();
    self->ex = COR_THIS_EXECUTOR();
    COR_RETURN(thread_tag);
}

struct hopper {
    COR_PROMISE(int);
    cor_executor other;
    int away_tag, home_tag_before, home_tag_after, r;
    bool identity_ok;
};
COR_DEFINE_STATIC(hopper, (cor_executor other), { self->other = other; })
{
    COR_BEGIN();
    self->home_tag_before = thread_tag;
    self->identity_ok = true;
    for (self->r = 0; self->r < 3; self->r++) {
        COR_AWAIT(self->away_tag, COR_RUN(where(), .ex = self->other));
        if (thread_tag != self->home_tag_before)
            self->identity_ok = false;
    }
    self->home_tag_after = thread_tag;
    COR_RETURN(self->away_tag * 100 + self->home_tag_after * 10 + (self->identity_ok ? 1 : 0));
}

static void *run_tagged(void *arg)
{
    manual_thread *t = arg;
    thread_tag = 2;
    cor_manual_run(t->m);
    return NULL;
}

Test(launch, run_hops_to_another_executor_and_back)
{
    cor_manual *home;
    cr_assert_eq(cor_manual_create(&home), 0);
    manual_thread away;
    cr_assert_eq(cor_manual_create(&away.m), 0);
    cor_executor aex = cor_manual_executor(away.m);
    aex.ops->on_work_started(aex.obj);
    cr_assert_eq(pthread_create(&away.thread, NULL, run_tagged, &away), 0);

    thread_tag = 1;
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(home), &o, hopper(aex)), 0);
    /* run() returns only once the task is done: the hop kept home's work count up. */
    cr_assert_gt(cor_manual_run(home), 1);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, 2 * 100 + 1 * 10 + 1,
                 "away on thread 2, home on thread 1 after every hop");
    cr_assert_eq(cor_manual_outstanding(home), 0);

    aex.ops->on_work_finished(aex.obj);
    pthread_join(away.thread, NULL);
    cor_manual_destroy(away.m);
    cor_manual_destroy(home);
}

struct hop_identity {
    COR_PROMISE(int);
    cor_executor other, home;
    int r;
};
COR_DEFINE_STATIC(hop_identity, (cor_executor other), { self->other = other; })
{
    COR_BEGIN();
    self->home = COR_THIS_EXECUTOR();
    COR_AWAIT(self->r, COR_RUN(where(), .ex = self->other));
    COR_RETURN(cor_executor_equal(COR_THIS_EXECUTOR(), self->home) ? 1 : 0);
}

Test(launch, run_with_an_invalid_executor_fails_the_await)
{
    cor_executor_ops half = {0};
    cor_executor broken = {&half, &half};
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, hop_identity(broken)), 0);
    cr_assert_eq(oc.errors, 1);
    cr_assert_eq(oc.err, -EINVAL);
}

Test(launch, run_on_the_same_thread_other_executor)
{
    /* Two manual executors driven by one thread: the child is queued on the other one. */
    cor_manual *a, *b;
    cr_assert_eq(cor_manual_create(&a), 0);
    cr_assert_eq(cor_manual_create(&b), 0);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(a), &o, hop_identity(cor_manual_executor(b))),
                 0);
    cr_assert_eq(cor_manual_poll(a), 1);        /* runs until the hop */
    cr_assert_eq(cor_manual_outstanding(a), 2); /* the launch and the hop */
    cr_assert_eq(cor_manual_poll(b), 1);        /* the child, which posts the parent home */
    cr_assert_eq(oc.results, 0);
    cr_assert_eq(cor_manual_run(a), 1);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, 1, "the parent resumed on its own executor");
    cor_manual_destroy(a);
    cor_manual_destroy(b);
}

/* ---- stop tokens flow forward and run() overrides them ---- */

struct stop_probe {
    COR_PROMISE(int);
};
COR_DEFINE_STATIC(stop_probe, (void), {})
{
    COR_BEGIN();
    cor_stop_token t = COR_THIS_STOP_TOKEN();
    COR_RETURN(!cor_stop_possible(t) ? 0 : cor_stop_requested(t) ? 2 : 1);
}

struct stop_none_or_fail {
    COR_PROMISE(int);
    struct outcome *oc;
};
COR_DEFINE_STATIC(stop_none_or_fail, (struct outcome * oc), { self->oc = oc; })
{
    COR_BEGIN();
    if (!cor_stop_possible(COR_THIS_STOP_TOKEN()))
        self->oc->results++;
    COR_RETURN(0);
}

struct stop_chain {
    COR_PROMISE(int);
    cor_stop_token other;
    int inherited, overridden, cleared;
};
COR_DEFINE_STATIC(stop_chain, (cor_stop_token other), { self->other = other; })
{
    COR_BEGIN();
    COR_AWAIT(self->inherited, stop_probe());
    COR_AWAIT(self->overridden, COR_RUN(stop_probe(), .stop = &self->other));
    {
        static const cor_stop_token never = {NULL};
        COR_AWAIT(self->cleared, COR_RUN(stop_probe(), .stop = &never));
    }
    COR_RETURN(self->inherited * 100 + self->overridden * 10 + self->cleared);
}

Test(launch, a_launch_without_options_has_the_never_stopping_token)
{
    /* Launch records are recycled (LIFO): leave one that held a real token
     * on top of the pool, then launch with NULL options right after. */
    cor_stop_source junk;
    cor_stop_source_init(&junk);
    cor_launch_options with_token = {.stop = cor_stop_source_token(&junk)};
    struct outcome oc = {0};
    for (int i = 0; i < 4; i++) {
        cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &with_token, stop_probe()), 0);
        cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), NULL, stop_none_or_fail(&oc)), 0);
    }
    cr_assert_eq(oc.results, 4, "a NULL-options launch saw a stop token nobody gave it");
}

Test(launch, stop_token_propagates_and_run_overrides_it)
{
    cor_stop_source outer, other;
    cor_stop_source_init(&outer);
    cor_stop_source_init(&other);
    cor_stop_source_request(&other);
    struct outcome oc = {0};
    cor_launch_options o = {
        .stop = cor_stop_source_token(&outer), .on_result = rec_result, .user = &oc};
    cr_assert_eq(
        COR_RUN_ASYNC(cor_inline_executor(), &o, stop_chain(cor_stop_source_token(&other))), 0);
    /* inherited: possible, not requested (1); overridden: requested (2); cleared: not possible (0).
     */
    cr_assert_eq(oc.result, 120);
}

/* ---- run() with an allocator ---- */

struct alloc_probe {
    COR_PROMISE(int);
    cor_memory_resource *seen;
    int r;
};
COR_DEFINE_STATIC(alloc_probe, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, leaf(3));
    COR_RETURN(self->r);
}

struct alloc_switch {
    COR_PROMISE(int);
    cor_memory_resource *mr;
    int r;
};
COR_DEFINE_STATIC(alloc_switch, (cor_memory_resource * mr), { self->mr = mr; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_RUN(alloc_probe(), .alloc = self->mr));
    if (COR_THIS_ALLOCATOR() == self->mr)
        COR_FAIL(-EFAULT);
    COR_RETURN(self->r);
}

Test(launch, run_switches_the_frame_allocator_for_one_child)
{
    counting_resource launch_mr, child_mr;
    counting_resource_init(&launch_mr, -1);
    counting_resource_init(&child_mr, -1);
    struct outcome oc = {0};
    cor_launch_options o = {
        .alloc = &launch_mr.base, .on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, alloc_switch(&child_mr.base)), 0);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.result, 3);
    cr_assert_eq(launch_mr.allocs, 2, "alloc_switch and the launch record");
    cr_assert_eq(child_mr.allocs, 2, "alloc_probe and its child leaf");
    cr_assert_eq(child_mr.frees, 2);
    cr_assert_eq(launch_mr.frees, 2);
}

/* ---- context destruction frees queued frames ---- */

Test(launch, destroying_a_context_destroys_queued_frames)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    cor_launch_options o = {.alloc = &cr.base, .on_result = rec_result, .user = &oc};
    for (int i = 0; i < 10; i++)
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, fan(3)), 0);
    cr_assert_eq(cr.allocs, 20);
    cr_assert_eq(cor_manual_outstanding(m), 10);
    cor_manual_destroy(m);
    cr_assert_eq(oc.results, 0);
    cr_assert_eq(cr.frees, 20);
    cr_assert_eq(cr.live_bytes, 0);
}

Test(launch, result_handler_runs_on_the_executor_thread)
{
    manual_thread t;
    manual_thread_start(&t);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(t.m), &o, leaf(42)), 0);
    manual_thread_stop(&t);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, 42);
}
