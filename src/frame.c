/*
 * Frames: the trampoline, starting and completing children across
 * executors, error propagation and destruction of suspended chains.
 */
#include <stdio.h>

#include "coring/task.h"
#include "internal.h"

__thread struct cor__tls cor__tls;

/*
 * The per-thread trampoline: resume functions return the next handle instead
 * of calling it, so a chain of any length runs in constant stack.
 */
void cor_resume(cor_handle h)
{
    while (h)
        h = h->resume(h);
}

/*
 * The slow path of cor__await: run() chose part of the child's environment,
 * or the child was already started (a programming error reported as -EINVAL
 * through the error channel rather than by corrupting the other await).
 */
cor_handle cor__start_child(cor_frame *parent, cor_frame *child)
{
    if (child->flags & COR_FRAME_STARTED) {
        parent->awaited = NULL;
        parent->error = -EINVAL;
        return cor__complete(parent);
    }
    child->flags |= COR_FRAME_STARTED;
    child->continuation = parent;
    if (!(child->flags & COR_FRAME_SET_EX))
        child->env.ex = parent->env.ex;
    if (!(child->flags & COR_FRAME_SET_STOP))
        child->env.stop = parent->env.stop;
    if (!(child->flags & COR_FRAME_SET_ALLOC))
        child->env.alloc = parent->env.alloc;
    if (child->error) {
        /* run() rejected its options: complete at once with the error. */
        child->flags |= COR_FRAME_DONE;
        return parent;
    }
    if (cor_executor_equal(child->env.ex, parent->env.ex))
        return child;
    /* The parent's executor must not run dry while the child is away. */
    parent->env.ex.ops->on_work_started(parent->env.ex.obj);
    return child->env.ex.ops->dispatch(child->env.ex.obj, child);
}

cor_handle cor__complete_slow(cor_frame *f, cor_frame *c)
{
    cor_executor ex = c->env.ex;
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
    while (h) {
        cor_frame *c = h->continuation;
        if (h->on_destroy)
            h->on_destroy(h);
        /* A child that finished but was not yet collected by its parent. */
        if (h->awaited && h->awaited != from && (h->awaited->flags & COR_FRAME_DONE))
            cor__frame_free(h->awaited);
        if (c && !cor_executor_equal(h->env.ex, c->env.ex) && (h->flags & COR_FRAME_STARTED) &&
            cor_executor_valid(c->env.ex))
            c->env.ex.ops->on_work_finished(c->env.ex.obj);
        cor__frame_free(h);
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

static const cor_executor_ops inline_ops = {
    .dispatch = inline_dispatch,
    .post = inline_post,
    .context = inline_context,
    .on_work_started = inline_work,
    .on_work_finished = inline_work,
};

static const char inline_obj;

cor_executor cor_inline_executor(void)
{
    return (cor_executor){&inline_obj, &inline_ops};
}
