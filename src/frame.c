/*
 * Frames: the trampoline, starting and completing children across
 * executors, error propagation and destruction of suspended chains.
 */
#include <stdio.h>

#include "coring/task.h"
#include "internal.h"

COR_THREAD_LOCAL struct cor__tls cor__tls;

/*
 * The per-thread trampoline: resume functions return the next handle instead
 * of calling it, so a chain of any length runs in constant stack (awaits
 * call their child directly for at most 15 levels: cor__await).
 */
void cor_resume(cor_handle h)
{
    while (h)
        h = h->resume(h);
}

/*
 * Starts child so that it completes to cont, in environment env (what the
 * child inherits; run() choices win). Timeouts attached to the child
 * (COR_TIMEOUT) are started first and stand between the two. Returns the
 * handle to run next on this thread.
 */
cor_handle cor__child_start(cor_frame *cont, const cor_env *env, cor_frame *child)
{
    /*
     * env is read field by field, not copied whole: a join builds it just
     * before with a narrower store into its middle (the stop token), and a
     * wider load across the two would wait for the store to retire.
     */
    cor_env via;
    if (child->flags & COR_FRAME_VIA) {
        via = *env;
        cor__via_start(&cont, &via, child);
        env = &via;
    }
    child->flags |= COR_FRAME_STARTED;
    child->continuation = cont;
    if (!(child->flags & COR_FRAME_SET_EX) || child->error)
        child->env.ex = env->ex;
    if (!(child->flags & COR_FRAME_SET_STOP))
        child->env.stop = env->stop;
    if (!(child->flags & COR_FRAME_SET_ALLOC))
        child->env.alloc = env->alloc;
    if (child->error) /* run() rejected its options, or a timeout could not start */
        return cor__complete(child);
    if (cor_executor_equal(child->env.ex, env->ex))
        return child;
    /* The awaiter's executor must not run dry while the child is away. */
    env->ex.ops->on_work_started(env->ex.obj);
    return child->env.ex.ops->dispatch(child->env.ex.obj, child);
}

/*
 * The slow path of cor__await: run() chose part of the child's environment,
 * a timeout waits to start with it, or the child was already started (a
 * programming error reported as -EINVAL through the error channel rather
 * than by corrupting the other await).
 */
cor_handle cor__start_child(cor_frame *parent, cor_frame *child)
{
    if (child->flags & COR_FRAME_STARTED) {
        parent->awaited = NULL;
        parent->error = -EINVAL;
        return cor__complete(parent);
    }
    return cor__child_start(parent, &parent->env, child);
}

cor_handle cor__complete_slow(cor_frame *f, cor_frame *c)
{
    /* A child of when_all / when_any: the join learns which one finished. */
    if (c->flags & COR_FRAME_JOIN)
        return cor__join_child_done(c, f);
    cor_executor ex = c->env.ex;
    if (ex.ops == &cor__io_executor_ops)
        return cor__io_return((struct cor_io_context *)ex.obj, c);
    cor_handle h = ex.ops->dispatch(ex.obj, c);
    ex.ops->on_work_finished(ex.obj);
    return h;
}

cor_handle cor__fail_from_child(cor_frame *parent)
{
    cor_frame *child = parent->awaited;
    int err = -ENOMEM;
    if (child) {
        err = child->error;
        cor__frame_free(child);
    }
    parent->awaited = NULL;
    return cor__fail(parent, err);
}

void cor_frame_destroy(cor_handle h)
{
    cor_frame *from = NULL; /* the frame destroyed just before h (its child) */
    bool from_via = false;  /* from was a timeout (read before it was freed) */
    while (h) {
        cor_frame *c = h->continuation;
        if (h->on_destroy)
            h->on_destroy(h);
        /* A child that finished but was not yet collected by its parent. Nested timeouts
         * share their task (awaited): the innermost one, reached first, saw to it. */
        bool shared = from_via && (h->flags & COR_FRAME_IS_VIA);
        if (h->awaited && h->awaited != from && !shared && (h->awaited->flags & COR_FRAME_DONE))
            cor__frame_free_any(h->awaited);
        from_via = h->flags & COR_FRAME_IS_VIA;
        if (c && (c->flags & COR_FRAME_JOIN)) {
            /* One child of a join: the join goes on only with its last child. */
            bool last = cor__join_child_destroyed(c, h);
            cor__frame_free(h);
            if (!last)
                return;
        } else {
            if (c && !(h->flags & COR_FRAME_JOIN) && !cor_executor_equal(h->env.ex, c->env.ex) &&
                (h->flags & COR_FRAME_STARTED) && cor_executor_valid(c->env.ex))
                c->env.ex.ops->on_work_finished(c->env.ex.obj);
            cor__frame_free(h);
        }
        from = h;
        h = c;
    }
}

int cor_leaf_hold(cor_frame *f)
{
    if (!f || !cor_executor_valid(f->env.ex))
        return -EINVAL;
    f->env.ex.ops->on_work_started(f->env.ex.obj);
    return 0;
}

/* A leaf brought back by cor_leaf_complete_post: complete it here, on its executor. */
static cor_handle leaf_posted(cor_frame *f)
{
    cor_executor ex = f->env.ex;
    cor_handle h = cor__complete(f);
    ex.ops->on_work_finished(ex.obj);
    return h;
}

int cor_leaf_complete_post(cor_frame *f)
{
    if (!f || !cor_executor_valid(f->env.ex))
        return -EINVAL;
    f->resume = leaf_posted;
    f->env.ex.ops->post(f->env.ex.obj, f);
    return 0;
}

int cor_executor_dispatch(cor_executor ex, cor_handle h)
{
    if (!cor_executor_valid(ex) || !h)
        return -EINVAL;
    cor_resume(ex.ops->dispatch(ex.obj, h));
    return 0;
}

int cor_executor_post(cor_executor ex, cor_handle h)
{
    if (!cor_executor_valid(ex) || !h)
        return -EINVAL;
    ex.ops->post(ex.obj, h);
    return 0;
}

cor_execution_context *cor_executor_context(cor_executor ex)
{
    if (!cor_executor_valid(ex) || !ex.ops->context)
        return NULL;
    return ex.ops->context(ex.obj);
}

static cor_handle inline_dispatch(const void *obj, cor_handle h)
{
    return h;
}

static void inline_post(const void *obj, cor_handle h)
{
    cor_resume(h);
}

static cor_execution_context *inline_context(const void *obj)
{
    return NULL;
}

static void inline_work(const void *obj)
{
}

const cor_executor_ops cor__inline_executor_ops = {
    .dispatch = inline_dispatch,
    .post = inline_post,
    .context = inline_context,
    .on_work_started = inline_work,
    .on_work_finished = inline_work,
};

static const char inline_obj;

cor_executor cor_inline_executor(void)
{
    return (cor_executor){&inline_obj, &cor__inline_executor_ops};
}
