/*
 * Launchers: COR_RUN_ASYNC's root frame, which receives the launched task's
 * completion and calls the handlers, and COR_RUN's environment overrides.
 *
 * The roots of an execution context. Every launch record (and every
 * task-group child's record, compose.c) is on its executor's context's list
 * (a spin lock guards it: launches come from any thread) from the launch
 * until the task finishes or is destroyed, so a dump (dump.h) finds every
 * task launched or spawned there, suspended on whatever it waits for. Two
 * short critical sections per launch; nothing on the await path.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coring/compose.h"
#include "coring/context.h"
#include "coring/launch.h"
#include "internal.h"

/* The launch record: the launched task's continuation. */
struct cor__root {
    cor_frame hdr;
    void (*on_result)(void *user, void *result);
    void (*on_error)(void *user, int err);
    void *user;
    cor__root_link link;
};

void cor__roots_add(cor_execution_context *ctx, cor__root_link *l, cor_frame *f)
{
    l->frame = f;
    l->ctx = ctx;
    if (!ctx)
        return;
    cor__spin_lock(&ctx->roots_lock);
    l->next = ctx->roots;
    l->pprev = &ctx->roots;
    if (ctx->roots)
        ctx->roots->pprev = &l->next;
    ctx->roots = l;
    cor__spin_unlock(&ctx->roots_lock);
}

void cor__roots_del(cor__root_link *l)
{
    cor_execution_context *ctx = l->ctx;
    if (!ctx)
        return;
    cor__spin_lock(&ctx->roots_lock);
    *l->pprev = l->next;
    if (l->next)
        l->next->pprev = l->pprev;
    cor__spin_unlock(&ctx->roots_lock);
    l->ctx = NULL;
}

int cor__roots_walk(cor_execution_context *ctx, void (*fn)(void *arg, cor_frame *root), void *arg)
{
    int n = 0;
    cor__spin_lock(&ctx->roots_lock);
    for (cor__root_link *l = ctx->roots; l; l = l->next, n++)
        fn(arg, l->frame);
    cor__spin_unlock(&ctx->roots_lock);
    return n;
}

/* ---- a destroyed context's tasks that wait on a wait list ---- */

enum { WAITS_INLINE = 16, JOIN_DEPTH = 64 };

struct waits {
    cor_frame **v;
    size_t n, cap;
    bool full; /* some were left out: look again after these */
    cor_frame *inl[WAITS_INLINE];
};

static void waits_add(struct waits *w, cor_frame *f)
{
    if (w->n == w->cap) {
        size_t cap = w->cap * 2;
        cor_frame **v = w->v == w->inl ? NULL : w->v;
        v = realloc(v, cap * sizeof *v);
        if (!v) {
            w->full = true;
            return;
        }
        if (w->v == w->inl)
            memcpy(v, w->inl, sizeof w->inl);
        w->v = v;
        w->cap = cap;
    }
    w->v[w->n++] = f;
}

bool cor__frame_on_ctx(const cor_execution_context *ctx, const cor_frame *f, const cor_frame *g)
{
    return cor_executor_equal(f->env.ex, g->env.ex) || cor_executor_context(g->env.ex) == ctx;
}

/* Follows f's chain down to its bottom (each child of a join in turn). */
static void collect_waits(cor_execution_context *ctx, cor_frame *f, struct waits *w, int depth)
{
    while (!(f->flags & COR_FRAME_JOIN)) {
        cor_frame *g = f->awaited;
        /* A frame of another context may be running: nothing of it but its executor is read. */
        if (g && !cor__frame_on_ctx(ctx, f, g))
            return;
        if (!g || (g->flags & COR_FRAME_DONE)) {
            if (cor__is_sync_wait(f))
                waits_add(w, f);
            return;
        }
        f = g;
    }
    struct cor__join *j = (struct cor__join *)f;
    for (uint32_t i = 0; i < j->n && depth < JOIN_DEPTH; i++) {
        cor_frame *c = j->children[i];
        if (c && cor__frame_on_ctx(ctx, f, c) && !(c->flags & COR_FRAME_DONE))
            collect_waits(ctx, c, w, depth + 1);
    }
}

int cor__roots_abandon_waits(cor_execution_context *ctx)
{
    int total = 0;
    for (;;) {
        struct waits w = {.cap = WAITS_INLINE};
        w.v = w.inl;
        cor__spin_lock(&ctx->roots_lock);
        for (cor__root_link *l = ctx->roots; l; l = l->next)
            collect_waits(ctx, l->frame, &w, 0);
        cor__spin_unlock(&ctx->roots_lock);
        /* Destroying one wait's chain frees only frames above it: the others stay valid. */
        int n = 0;
        for (size_t i = 0; i < w.n; i++)
            n += cor__wait_abandon(w.v[i]);
        if (w.v != w.inl)
            free(w.v);
        total += n;
        if (!w.full || n == 0)
            return total;
    }
}

static cor_handle root_resume(cor_frame *f);

bool cor__is_launch_root(const cor_frame *f)
{
    return f->resume == root_resume;
}

bool cor__roots_holds(const cor_execution_context *ctx, const cor_frame *top)
{
    if (cor__is_launch_root(top))
        return ((const struct cor__root *)top)->link.ctx == ctx;
    const cor__root_link *l = cor__group_child_link(top);
    return l && l->ctx == ctx;
}

static cor_handle root_resume(cor_frame *f)
{
    struct cor__root *r = (struct cor__root *)f;
    cor__roots_del(&r->link);
    cor_frame *t = f->awaited;
    int err = t->error;
    if (err) {
        if (r->on_error)
            r->on_error(r->user, err);
        else
            cor__log(COR_LOG_ERROR, "a launched task failed: %s", cor_strerror(err));
    } else if (r->on_result) {
        r->on_result(r->user, (char *)t + t->result_off);
    }
    cor_executor ex = f->env.ex;
    cor__frame_free(t);
    cor__frame_free(f);
    ex.ops->on_work_finished(ex.obj);
    return COR_NOOP;
}

static void root_destroy(cor_frame *f)
{
    cor__roots_del(&((struct cor__root *)f)->link);
    f->env.ex.ops->on_work_finished(f->env.ex.obj);
}

void cor__launch_begin(cor__launch *l, cor_executor ex, const cor_launch_options *opts)
{
    l->ex = ex;
    l->opts = opts;
    l->err = cor_executor_valid(ex) ? 0 : -EINVAL;
    l->ctx = l->err ? NULL : cor_executor_context(ex);
    if (opts && opts->alloc)
        l->mr = opts->alloc;
    else
        l->mr = cor_execution_context_resource(l->ctx);
    l->prev = cor__window_enter(l->mr, NULL);
}

int cor__launch_end(cor__launch *l, cor_frame *task)
{
    cor__window_leave(l->prev);
    if (l->err || !task) {
        if (task)
            cor__frame_free(task);
        return l->err ? l->err : -ENOMEM;
    }
    if (task->flags & COR_FRAME_STARTED)
        return -EINVAL;
    struct cor__root *r =
        (struct cor__root *)cor_mr_allocate(l->mr, sizeof *r, __alignof__(max_align_t));
    if (!r) {
        cor__frame_free(task);
        return -ENOMEM;
    }
    cor__frame_init(&r->hdr, root_resume, l->mr, sizeof *r, __alignof__(max_align_t),
                    COR_FRAME_STARTED, 0, 0);
    r->hdr.on_destroy = root_destroy;
    r->hdr.env.ex = l->ex;
    r->hdr.env.stop = (cor_stop_token){NULL};
    r->hdr.env.alloc = l->mr;
    r->hdr.awaited = task;
    r->on_result = NULL;
    r->on_error = NULL;
    r->user = NULL;
    if (l->opts) {
        r->hdr.env.stop = l->opts->stop;
        r->on_result = l->opts->on_result;
        r->on_error = l->opts->on_error;
        r->user = l->opts->user;
    }
    task->flags |= COR_FRAME_STARTED;
    task->continuation = &r->hdr;
    task->env = r->hdr.env;
    /* Listed once fully made: a dump on the executor's thread may read it from now on. */
    cor__roots_add(l->ctx, &r->link, &r->hdr);
    l->ex.ops->on_work_started(l->ex.obj);
    cor_resume(l->ex.ops->dispatch(l->ex.obj, task));
    return 0;
}

cor__window cor__run_enter(const cor_run_options *o)
{
    cor_memory_resource *mr = o->alloc ? o->alloc : cor__tls.alloc;
    return cor__window_enter(mr, cor__tls.slot);
}

void cor__run_leave(const cor_run_options *o, cor__window prev, cor_frame *child)
{
    /* A leaf op may have taken the slot: keep what the window holds now. */
    void *slot = cor__tls.slot;
    cor__window_leave(prev);
    if (prev.slot && !slot)
        cor__tls.slot = NULL;
    if (!child)
        return;
    if (o->ex.ops) {
        child->flags |= COR_FRAME_SET_EX;
        if (cor_executor_valid(o->ex))
            child->env.ex = o->ex;
        else
            child->error = -EINVAL;
    }
    if (o->stop) {
        child->flags |= COR_FRAME_SET_STOP;
        child->env.stop = *o->stop;
    }
    if (o->alloc) {
        child->flags |= COR_FRAME_SET_ALLOC;
        child->env.alloc = o->alloc;
    }
}
