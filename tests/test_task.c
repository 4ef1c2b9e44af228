/* Coroutine tasks: results, errors, the trampoline, leaf awaitables, this_coro. */
#include <pthread.h>
#include <sys/resource.h>
#include <criterion/criterion.h>

#include "util.h"

/* ---- a three-level chain that records the executor each level saw ---- */

static cor_executor seen[3];

struct leaf3 {
    COR_PROMISE(int);
    int x;
};
COR_DEFINE_STATIC(leaf3, (int x), { self->x = x; })
{
    COR_BEGIN();
    seen[2] = COR_THIS_EXECUTOR();
    COR_RETURN(self->x * 2);
}

struct mid3 {
    COR_PROMISE(int);
    int x, r;
};
COR_DEFINE_STATIC(mid3, (int x), { self->x = x; })
{
    COR_BEGIN();
    seen[1] = COR_THIS_EXECUTOR();
    COR_AWAIT(self->r, leaf3(self->x + 1));
    COR_RETURN(self->r + 1);
}

struct top3 {
    COR_PROMISE(long);
    int x, r;
};
COR_DEFINE_STATIC(top3, (int x), { self->x = x; })
{
    COR_BEGIN();
    seen[0] = COR_THIS_EXECUTOR();
    COR_AWAIT(self->r, mid3(self->x));
    COR_RETURN((long)self->r * 10);
}

static void store_long(void *user, void *result)
{
    *(long *)user = *(long *)result;
}

Test(task, three_level_chain_propagates_executor_and_results)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    counting_executor ce;
    cor_executor ex = counting_executor_init(&ce, cor_manual_executor(m));
    long out = -1;
    cor_launch_options o = {.on_result = store_long, .user = &out};
    cr_assert_eq(COR_RUN_ASYNC(ex, &o, top3(4)), 0);
    cr_assert_eq(out, -1, "a task on a manual executor must not run before run()");
    cr_assert_eq(cor_manual_run(m), 1);
    cr_assert_eq(out, ((4 + 1) * 2 + 1) * 10);
    for (int i = 0; i < 3; i++)
        cr_assert(cor_executor_equal(seen[i], ex), "level %d ran with another executor", i);
    /* Same-executor completions never touch a queue: one dispatch (the launch), no post. */
    cr_assert_eq(ce.dispatches, 1);
    cr_assert_eq(ce.posts, 0);
    cr_assert_eq(ce.started, 1);
    cr_assert_eq(ce.finished, 1);
    cor_manual_destroy(m);
}

/* ---- error channel ---- */

struct failer {
    COR_PROMISE(int);
    int err;
};
COR_DEFINE_STATIC(failer, (int err), { self->err = err; })
{
    COR_BEGIN();
    if (self->err)
        COR_FAIL(self->err);
    COR_RETURN(7);
}

static int after_failed_await;

struct propagates {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(propagates, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, failer(-EIO));
    after_failed_await = 1;
    COR_RETURN(self->r);
}

struct catches {
    COR_PROMISE(int);
    int err, r;
};
COR_DEFINE_STATIC(catches, (void), {})
{
    COR_BEGIN();
    self->r = -1;
    COR_TRY_AWAIT(self->err, self->r, failer(-EPIPE));
    if (self->err != -EPIPE || self->r != -1)
        COR_RETURN(-100);
    COR_TRY_AWAIT(self->err, self->r, failer(0));
    if (self->err != 0)
        COR_RETURN(-200);
    COR_RETURN(self->r);
}

Test(task, error_propagates_through_await_and_skips_the_rest)
{
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    after_failed_await = 0;
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, propagates()), 0);
    cr_assert_eq(oc.errors, 1);
    cr_assert_eq(oc.results, 0);
    cr_assert_eq(oc.err, -EIO);
    cr_assert_eq(after_failed_await, 0, "code after a failed await must not run");
}

Test(task, try_await_catches_the_error)
{
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, catches()), 0);
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, 7);
}

Test(task, fail_with_a_non_negative_code_becomes_einval)
{
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, failer(5)), 0);
    cr_assert_eq(oc.errors, 1);
    cr_assert_eq(oc.err, -EINVAL);
}

/* ---- constant stack through the trampoline ---- */

struct one {
    COR_PROMISE(int);
};
COR_DEFINE_STATIC(one, (void), {})
{
    COR_BEGIN();
    COR_RETURN(1);
}

struct many {
    COR_PROMISE(long);
    long i, n, sum;
    int r;
};
COR_DEFINE_STATIC(many, (long n), { self->n = n; })
{
    COR_BEGIN();
    for (self->i = 0, self->sum = 0; self->i < self->n; self->i++) {
        COR_AWAIT(self->r, one());
        self->sum += self->r;
    }
    COR_RETURN(self->sum);
}

static void *ten_million(void *arg)
{
    long *out = arg;
    cor_launch_options o = {.on_result = store_long, .user = out};
    if (COR_RUN_ASYNC(cor_inline_executor(), &o, many(10 * 1000 * 1000)) != 0)
        *out = -2;
    return NULL;
}

Test(task, ten_million_synchronous_awaits_run_in_a_64k_stack)
{
    /* 10M nested resumptions would need gigabytes of stack; 64 KiB proves
     * the stack does not grow with the number of awaits. */
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_t t;
    long out = -1;
    cr_assert_eq(pthread_create(&t, &a, ten_million, &out), 0);
    pthread_join(t, NULL);
    pthread_attr_destroy(&a);
    cr_assert_eq(out, 10 * 1000 * 1000);
}

/* An await chain 50,000 deep: each level awaits the next, which completes at once. */
struct deep {
    COR_PROMISE(long);
    long n, r;
};
COR_DEFINE_STATIC(deep, (long n), { self->n = n; })
{
    COR_BEGIN();
    if (self->n == 0)
        COR_RETURN(0);
    COR_AWAIT(self->r, deep(self->n - 1));
    COR_RETURN(self->r + 1);
}

static void *deep_chain(void *arg)
{
    long *out = arg;
    cor_launch_options o = {.on_result = store_long, .user = out};
    if (COR_RUN_ASYNC(cor_inline_executor(), &o, deep(50000)) != 0)
        *out = -2;
    return NULL;
}

Test(task, a_deep_await_chain_runs_in_a_64k_stack)
{
    /* Awaits call their child directly only near the trampoline's frame: a
     * chain of any depth takes bounded stack. */
    pthread_attr_t a;
    pthread_attr_init(&a);
    pthread_attr_setstacksize(&a, 64 * 1024);
    pthread_t t;
    long out = -1;
    cr_assert_eq(pthread_create(&t, &a, deep_chain, &out), 0);
    pthread_join(t, NULL);
    pthread_attr_destroy(&a);
    cr_assert_eq(out, 50000);
}

/* ---- leaf awaitables live in the awaiting frame's slot ---- */

struct add_leaf {
    COR_LEAF_PROMISE(int);
    int a, b;
};

static cor_handle add_leaf_start(cor_frame *f)
{
    struct add_leaf *l = (struct add_leaf *)f;
    l->result = l->a + l->b;
    return cor_leaf_complete(f);
}

static struct add_leaf *add_op(int a, int b)
{
    struct add_leaf *l = COR_LEAF_NEW(struct add_leaf, add_leaf_start);
    if (l) {
        l->a = a;
        l->b = b;
    }
    return l;
}

/* A leaf that completes later, from outside (as an I/O completion would). */
struct later_leaf {
    COR_LEAF_PROMISE(int);
};
static cor_frame *pending_leaf;

static cor_handle later_start(cor_frame *f)
{
    pending_leaf = f;
    return COR_NOOP;
}

static struct later_leaf *later_op(void)
{
    return COR_LEAF_NEW(struct later_leaf, later_start);
}

struct uses_leaves {
    COR_PROMISE(int);
    int a, b, i;
};
COR_DEFINE_STATIC(uses_leaves, (void), {})
{
    COR_BEGIN();
    for (self->i = 0; self->i < 100; self->i++)
        COR_AWAIT(self->a, add_op(self->i, 1));
    COR_AWAIT(self->b, later_op());
    COR_RETURN(self->a + self->b);
}

Test(task, leaf_awaitables_use_the_slot_and_can_complete_later)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    cor_launch_options o = {.alloc = &cr.base, .on_result = rec_result, .user = &oc};
    pending_leaf = NULL;
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, uses_leaves()), 0);
    /* The task and the launch record only: the 101 leaves took no memory. */
    cr_assert_eq(cr.allocs, 2);
    cr_assert_not_null(pending_leaf);
    cr_assert_eq(oc.results, 0);
    ((struct later_leaf *)pending_leaf)->result = 1000;
    cor_resume(cor_leaf_complete(pending_leaf));
    cr_assert_eq(oc.results, 1);
    cr_assert_eq(oc.result, 100 + 1000);
    cr_assert_eq(cr.frees, 2);
}

/* ---- switch statements around awaits ---- */

struct switcher {
    COR_PROMISE(int);
    int state, acc, r;
};
COR_DEFINE_STATIC(switcher, (void), {})
{
    COR_BEGIN();
    self->acc = 0;
    for (self->state = 0; self->state < 3; self->state++) {
        switch (self->state) {
        case 0:
            COR_AWAIT(self->r, add_op(1, 2));
            self->acc += self->r;
            break;
        case 1:
            COR_AWAIT(self->r, one());
            self->acc += self->r * 10;
            break;
        default:
            self->acc += 100;
            break;
        }
    }
    COR_RETURN(self->acc);
}

Test(task, awaits_inside_switch_cases)
{
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, switcher()), 0);
    cr_assert_eq(oc.result, 3 + 10 + 100);
}

/* ---- a coroutine without awaits, and void tasks ---- */

static int void_ran;
struct void_task {
    COR_PROMISE_VOID();
};
COR_DEFINE_STATIC(void_task, (void), {})
{
    COR_BEGIN();
    void_ran++;
    COR_RETURN_VOID();
}

struct awaits_void {
    COR_PROMISE_VOID();
};
COR_DEFINE_STATIC(awaits_void, (void), {})
{
    COR_BEGIN();
    COR_AWAIT_VOID(void_task());
    COR_AWAIT_VOID(void_task());
    COR_RETURN_VOID();
}

Test(task, void_tasks)
{
    void_ran = 0;
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), NULL, awaits_void()), 0);
    cr_assert_eq(void_ran, 2);
}

Test(task, calling_a_task_does_not_start_it)
{
    void_ran = 0;
    struct void_task *t = void_task();
    cr_assert_not_null(t);
    cr_assert_eq(void_ran, 0);
    cr_assert_eq(t->cor_hdr.flags & COR_FRAME_STARTED, 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), NULL, t), 0);
    cr_assert_eq(void_ran, 1);
}

/* ---- destroying a suspended chain runs on_destroy hooks and frees every frame ---- */

static int destroyed_hooks;
static void count_destroy(cor_frame *f)
{
    destroyed_hooks++;
}

struct waits_forever {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(waits_forever, (void), {})
{
    COR_BEGIN();
    COR_ON_DESTROY(count_destroy);
    COR_AWAIT(self->r, later_op());
    COR_RETURN(self->r);
}

struct outer_forever {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(outer_forever, (void), {})
{
    COR_BEGIN();
    COR_ON_DESTROY(count_destroy);
    COR_AWAIT(self->r, waits_forever());
    COR_RETURN(self->r);
}

Test(task, destroying_a_suspended_chain_frees_it)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    counting_executor ce;
    cor_executor ex = counting_executor_init(&ce, cor_inline_executor());
    struct outcome oc = {0};
    cor_launch_options o = {
        .alloc = &cr.base, .on_result = rec_result, .on_error = rec_error, .user = &oc};
    destroyed_hooks = 0;
    pending_leaf = NULL;
    cr_assert_eq(COR_RUN_ASYNC(ex, &o, outer_forever()), 0);
    cr_assert_not_null(pending_leaf);
    cr_assert_eq(cr.allocs, 3);
    cor_frame_destroy(pending_leaf);
    cr_assert_eq(destroyed_hooks, 2);
    cr_assert_eq(cr.frees, 3);
    cr_assert_eq(cr.live_bytes, 0);
    cr_assert_eq(oc.results + oc.errors, 0, "no handler runs for a destroyed launch");
    cr_assert_eq(ce.started, ce.finished, "the launch's work must be finished");
}

/* ---- over-aligned frames are freed with the alignment they were allocated with ---- */

struct aligned_task {
    COR_PROMISE(int);
    _Alignas(128) char line[128];
};
COR_DEFINE_STATIC(aligned_task, (void), {})
{
    COR_BEGIN();
    COR_RETURN(((uintptr_t)self->line % 128) == 0 ? 1 : 0);
}

struct awaits_aligned {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(awaits_aligned, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, aligned_task());
    COR_RETURN(self->r);
}

Test(task, over_aligned_frames_round_trip_their_alignment)
{
    counting_resource cr;
    counting_resource_init(&cr, -1);
    struct outcome oc = {0};
    cor_launch_options o = {.alloc = &cr.base, .on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, awaits_aligned()), 0);
    cr_assert_eq(oc.result, 1, "the over-aligned field is aligned");
    cr_assert_eq(cr.allocs, 3);
    cr_assert_eq(cr.frees, 3);
    /* The launch record is freed last, so check the child's own calls directly. */
    counting_resource_init(&cr, -1);
    struct aligned_task *t;
    {
        cor__window w = cor__window_enter(&cr.base, NULL);
        t = aligned_task();
        cor__window_leave(w);
    }
    cr_assert_not_null(t);
    cr_assert_eq(cr.last_alloc_align, 128);
    cr_assert_eq(((uintptr_t)t % 128), 0);
    cor__frame_free(&t->cor_hdr);
    cr_assert_eq(cr.last_free_align, 128);
    cr_assert_eq(cr.live_bytes, 0);
}

/* ---- a leaf completed from another thread ---- */

struct posted_leaf {
    COR_LEAF_PROMISE(int);
    pthread_t th;
};

static void *complete_from_thread(void *p)
{
    struct posted_leaf *l = p;
    l->result = 42;
    cor_leaf_complete_post(&l->cor_hdr);
    return NULL;
}

static cor_handle posted_start(cor_frame *f)
{
    struct posted_leaf *l = (struct posted_leaf *)f;
    cr_assert_eq(cor_leaf_hold(f), 0);
    cr_assert_eq(pthread_create(&l->th, NULL, complete_from_thread, l), 0);
    pthread_detach(l->th);
    return COR_NOOP;
}

struct await_posted {
    COR_PROMISE(int);
    pthread_t home;
    int r;
};
COR_DEFINE_STATIC(await_posted, (void), { self->home = pthread_self(); })
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_LEAF_NEW(struct posted_leaf, posted_start));
    /* Back on the manual executor's thread (the one that runs it), with the result. */
    COR_RETURN(pthread_equal(pthread_self(), self->home) ? self->r : -1);
}

Test(task, a_leaf_completed_from_another_thread_resumes_on_its_executor)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .on_error = rec_error, .user = &oc};
    for (int i = 0; i < 100; i++) {
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, await_posted()), 0);
        /* The hold keeps run going until the foreign thread has posted the leaf back. */
        cor_manual_run(m);
        cr_assert_eq(oc.results, i + 1);
        cr_assert_eq(oc.result, 42);
    }
    cr_assert_eq(oc.errors, 0);
    cr_assert_eq(cor_manual_outstanding(m), 0);
    cr_assert_eq(cor_leaf_hold(NULL), -EINVAL);
    cr_assert_eq(cor_leaf_complete_post(NULL), -EINVAL);
    cor_frame bare = {0};
    cr_assert_eq(cor_leaf_complete_post(&bare), -EINVAL, "no executor: refused, untouched");
    cor_manual_destroy(m);
}
