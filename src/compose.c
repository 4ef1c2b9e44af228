/*
 * Running several things at once (compose.h): when_all and when_any joins,
 * whole-task timeouts, task groups.
 *
 * Joins. A join is a leaf frame in the awaiting coroutine's await slot;
 * every child's continuation is the join. The join's executor is the join
 * itself (cor__join_ops, forwarding to the awaiter's), so no child's
 * executor ever equals it: each child completion takes cor__complete_slow,
 * which hands it to cor__join_child_done together with the child that
 * finished. Children are started one after another from join_start; a count
 * of unfinished children, one more while starting, decides who resumes the
 * awaiting coroutine (through its executor). Children that finish inside the
 * start, on its thread, are counted in a plain field and subtracted once at
 * its end (starting_join), so a join whose children complete at once makes
 * no atomic read-modify-write on the count. The children's frames stay
 * alive until the awaiting coroutine has read their results
 * (cor__join_after, then cor__join_free in the macro's expansion).
 *
 * Timeouts. COR_TIMEOUT puts a small frame, a "via", between a task and its
 * awaiter: the task's awaited field holds the via (and the via's point the
 * next via inward, for nested timeouts) until the await starts it
 * (cor__via_start). A via owns a stop source linked to the awaiter's token,
 * which the task sees, and a timer on the io_context's wheel that stops it.
 * When the task finishes it completes to the via, which disarms the timer,
 * turns the result into -ETIMEDOUT if the timer fired, and completes to the
 * awaiter.
 *
 * Task groups. Each spawned child completes to a record of its own
 * (group_child); the last to finish completes a pending join
 * (cor_leaf_complete_post, so the joiner resumes on its own executor).
 */
#include <stdlib.h>
#include <string.h>

#include "coring/compose.h"
#include "coring/launch.h"
#include "coring/timer.h"
#include "internal.h"
#include "io_internal.h"

/* ---- the join's executor ------------------------------------------------------------------ */

/* The executor a join frame runs on: the awaiting coroutine's, reached through the join. */
static cor_executor awaiter_ex(const void *obj)
{
    return ((const cor_frame *)obj)->continuation->env.ex;
}

static cor_handle join_dispatch(const void *obj, cor_handle h)
{
    cor_executor ex = awaiter_ex(obj);
    return ex.ops->dispatch(ex.obj, h);
}

static void join_post(const void *obj, cor_handle h)
{
    cor_executor ex = awaiter_ex(obj);
    ex.ops->post(ex.obj, h);
}

static cor_execution_context *join_context(const void *obj)
{
    return cor_executor_context(awaiter_ex(obj));
}

static void join_work_started(const void *obj)
{
    cor_executor ex = awaiter_ex(obj);
    ex.ops->on_work_started(ex.obj);
}

static void join_work_finished(const void *obj)
{
    cor_executor ex = awaiter_ex(obj);
    ex.ops->on_work_finished(ex.obj);
}

static const cor_executor_ops join_ops = {
    .dispatch = join_dispatch,
    .post = join_post,
    .context = join_context,
    .on_work_started = join_work_started,
    .on_work_finished = join_work_finished,
};

/* ---- timeouts (vias) ---------------------------------------------------------------------- */

enum { VIA_FIRED = 1u << 0, VIA_ARMED = 1u << 1 };

struct via {
    cor_frame hdr;               /* awaited: the task; point: the next via inward (before start) */
    uint32_t flags;              /* VIA_*                                                         */
    int32_t err;                 /* an error to start with (-EINVAL: a negative duration)         */
    cor_linked_stop_source stop; /* what the task sees                                    */
    cor__timeout timer;          /* on the wheel of io                                            */
    cor_io_context *io;
};

#if COR_AWAIT_SLOT_SIZE >= 256
_Static_assert(sizeof(struct via) <= COR_AWAIT_SLOT_SIZE, "a timeout fits the await slot");
_Static_assert(sizeof(struct cor__join) <= COR_AWAIT_SLOT_SIZE, "a join of two fits the slot");
#endif

static cor_handle via_done(cor_frame *f);

static void via_disarm(struct via *v)
{
    if (v->flags & VIA_ARMED) {
        cor__io_timeout_disarm(v->io, &v->timer);
        v->flags &= ~(uint32_t)VIA_ARMED;
    }
    cor_linked_stop_source_destroy(&v->stop);
}

/* Destroyed with its chain before it finished (teardown). */
static void via_destroyed(cor_frame *f)
{
    struct via *v = (struct via *)f;
    if (f->flags & COR_FRAME_STARTED)
        via_disarm(v);
}

static void via_fired(cor__timeout *t)
{
    struct via *v = cor__container_of(t, struct via, timer);
    v->flags = (v->flags & ~(uint32_t)VIA_ARMED) | VIA_FIRED;
    cor_stop_source_request(&v->stop.source);
}

static void *via_new(int64_t when, int err)
{
    struct via *v = (struct via *)cor__leaf_new(sizeof *v, _Alignof(struct via), via_done, 0, 0);
    if (!v)
        return NULL;
    v->hdr.flags |= COR_FRAME_IS_VIA;
    v->hdr.on_destroy = via_destroyed;
    v->flags = 0;
    v->err = err;
    v->timer.node.when = when;
    v->timer.fire = via_fired;
    v->io = NULL;
    return v;
}

void *cor__timeout_after(int64_t ns)
{
    return ns >= 0 ? via_new(cor__time_after(ns), 0) : via_new(0, -EINVAL);
}

void *cor__timeout_at(int64_t abs_ns)
{
    return abs_ns >= 0 ? via_new(abs_ns, 0) : via_new(0, -EINVAL);
}

/* Frees a task that never started, with the timeouts attached to it. */
static void free_unstarted(cor_frame *task)
{
    if (task->flags & COR_FRAME_VIA) {
        cor_frame *v = task->awaited;
        while (v) {
            cor_frame *inner = v->point;
            cor__frame_free(v);
            v = inner;
        }
    }
    cor__frame_free(task);
}

void cor__timeout_attach(void *t, cor_frame *task)
{
    struct via *v = t;
    if (!task) {
        if (v)
            cor__frame_free(&v->hdr);
        return;
    }
    if (!v) {
        /* The timeout could not be allocated: the task fails with -ENOMEM when awaited. */
        task->error = -ENOMEM;
        task->flags |= COR_FRAME_SET_EX;
        task->env.ex = COR_EXECUTOR_NULL;
        return;
    }
    /* The newest timeout is the outermost: it sees the previous one as the next inward. */
    v->hdr.point = (task->flags & COR_FRAME_VIA) ? task->awaited : NULL;
    task->awaited = &v->hdr;
    task->flags |= COR_FRAME_VIA;
}

void cor__via_start(cor_frame **cont, cor_env *env, cor_frame *child)
{
    cor_frame *vf = child->awaited;
    child->awaited = NULL;
    child->flags &= (uint16_t)~COR_FRAME_VIA;
    /* The awaiter points at the outermost via while it waits (teardown walks through it). */
    if (!((*cont)->flags & (COR_FRAME_JOIN | COR_FRAME_IS_VIA)))
        (*cont)->awaited = vf;
    cor_io_context *io = cor__io_running;
    while (vf) {
        struct via *v = (struct via *)vf;
        cor_frame *inner = vf->point;
        vf->point = NULL;
        vf->flags |= COR_FRAME_STARTED;
        vf->continuation = *cont;
        vf->env = *env;
        vf->awaited = child;
        cor_linked_stop_source_init(&v->stop, env->stop);
        env->stop = cor_linked_stop_source_token(&v->stop);
        if (!v->err && !io)
            v->err = -EPERM; /* no timer wheel on this thread */
        if (v->err) {
            if (!child->error)
                child->error = v->err;
        } else {
            v->io = io;
            v->flags |= VIA_ARMED;
            cor__io_timeout_arm(io, &v->timer, v->timer.node.when);
        }
        *cont = vf;
        vf = inner;
    }
}

/* The task finished: disarm, report -ETIMEDOUT if the deadline came first, go on outward. */
static cor_handle via_done(cor_frame *f)
{
    struct via *v = (struct via *)f;
    cor_frame *task = f->awaited, *c = f->continuation;
    via_disarm(v);
    if (v->flags & VIA_FIRED)
        task->error = -ETIMEDOUT;
    if (!(c->flags & (COR_FRAME_JOIN | COR_FRAME_IS_VIA)))
        c->awaited = task; /* what the awaiter's COR_AWAIT reads */
    cor_handle h = cor__complete(f);
    cor__frame_free(f); /* nothing reads the via any more */
    return h;
}

/* ---- joins -------------------------------------------------------------------------------- */

static cor_handle join_start(cor_frame *jf);

/*
 * The join whose children this thread is starting. A child that finishes
 * inside the start (it completed at once, on this thread) is counted in a
 * plain field that the start subtracts once at its end, instead of by an
 * atomic decrement each.
 */
static COR_THREAD_LOCAL struct cor__join *starting_join;

struct cor__join *cor__join_new(int kind, size_t n, void (*discard)(int, void *))
{
    if (n > UINT32_MAX / 2)
        return NULL;
    size_t extra = n > COR__JOIN_INLINE ? n * sizeof(cor_frame *) : 0;
    struct cor__join *j =
        (struct cor__join *)cor__leaf_new(sizeof *j + extra, _Alignof(struct cor__join), join_start,
                                          offsetof(struct cor__join, result), sizeof(int));
    if (!j)
        return NULL;
    j->cor_hdr.flags |= COR_FRAME_JOIN;
    j->result = 0;
    j->count = 0;
    j->n = (uint32_t)n;
    j->kind = (uint16_t)kind;
    j->flags = 0;
    j->winner = -1;
    j->discard = discard;
    j->children = extra ? (cor_frame **)(void *)(j + 1) : j->inl;
    memset(j->children, 0, (extra ? n : COR__JOIN_INLINE) * sizeof(cor_frame *));
    return j;
}

void cor__join_set(struct cor__join *j, size_t i, cor_frame *child)
{
    if (!j) {
        if (child)
            free_unstarted(child);
        return;
    }
    j->children[i] = child;
}

/* Records a child failure: when_all keeps the first and stops the others. */
static void child_failed(struct cor__join *j, int err)
{
    int zero = 0;
    if (j->kind == COR__JOIN_ALL && __atomic_compare_exchange_n(&j->result, &zero, err, false,
                                                                __ATOMIC_ACQ_REL, __ATOMIC_ACQUIRE))
        cor_stop_source_request(&j->stop.source);
}

/* The index of child f of j (found once, for the winner). */
static int index_of(const struct cor__join *j, const cor_frame *f)
{
    for (uint32_t i = 0; i < j->n; i++)
        if (j->children[i] == f)
            return (int)i;
    return -1;
}

/* Every child finished: unlink from the awaiter's token and resume it. */
static cor_handle join_finish(struct cor__join *j, bool on_awaiter)
{
    cor_frame *parent = j->cor_hdr.continuation;
    cor_linked_stop_source_destroy(&j->stop);
    j->cor_hdr.flags |= COR_FRAME_DONE;
    if (on_awaiter)
        return parent;
    return parent->env.ex.ops->dispatch(parent->env.ex.obj, parent);
}

cor_frame *cor__join_child_done(cor_frame *jf, cor_frame *f)
{
    struct cor__join *j = (struct cor__join *)jf;
    cor_executor ex = jf->continuation->env.ex;
    /* A child on another executor counted as work of the awaiter's until now. */
    bool away = !cor_executor_equal(f->env.ex, ex);
    if (f->flags & COR_FRAME_IS_VIA)
        f = f->awaited; /* the task behind its timeout */
    if (f->error)
        child_failed(j, f->error);
    if (j->kind == COR__JOIN_ANY) {
        int none = -1;
        if (__atomic_compare_exchange_n(&j->winner, &none, index_of(j, f), false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE)) {
            j->result = f->error;
            cor_stop_source_request(&j->stop.source); /* the others lost */
        }
    }
    cor_handle h = COR_NOOP;
    if (starting_join == j)
        j->done_here++;
    else if (__atomic_sub_fetch(&j->count, 1, __ATOMIC_ACQ_REL) == 0)
        h = join_finish(j, false);
    if (away)
        ex.ops->on_work_finished(ex.obj);
    return h;
}

/* The resume function of a join: starts every child, in order. */
static cor_handle join_start(cor_frame *jf)
{
    struct cor__join *j = (struct cor__join *)jf;
    cor_env env = jf->continuation->env;
    env.stop = cor_linked_stop_source_token(&j->stop);
    __atomic_store_n(&j->count, j->n + 1, __ATOMIC_RELEASE);
    j->done_here = 0;
    struct cor__join *outer = starting_join;
    starting_join = j;
    for (uint32_t i = 0; i < j->n; i++) {
        cor_frame *c = j->children[i];
        if (!c) {
            /* Its frame could not be allocated. */
            child_failed(j, -ENOMEM);
            if (j->kind == COR__JOIN_ANY) {
                int none = -1;
                if (__atomic_compare_exchange_n(&j->winner, &none, (int)i, false, __ATOMIC_ACQ_REL,
                                                __ATOMIC_ACQUIRE)) {
                    j->result = -ENOMEM;
                    cor_stop_source_request(&j->stop.source);
                }
            }
            j->done_here++;
            continue;
        }
        if (__atomic_load_n(&j->result, __ATOMIC_ACQUIRE) ||
            __atomic_load_n(&j->winner, __ATOMIC_ACQUIRE) >= 0) {
            /* A sibling failed (all) or won (any): this one is not started. */
            j->done_here++;
            continue;
        }
        cor_resume(cor__child_start(jf, &env, c));
    }
    starting_join = outer;
    /* What finished here, and the start's own count. If that is all that is
     * left, every other child is done too and nothing else touches count. */
    uint32_t here = j->done_here + 1;
    if (__atomic_load_n(&j->count, __ATOMIC_ACQUIRE) == here ||
        __atomic_sub_fetch(&j->count, here, __ATOMIC_ACQ_REL) == 0)
        return join_finish(j, true);
    return COR_NOOP;
}

cor_handle cor__join_await(cor_frame *parent, struct cor__join *j)
{
    if (!j) {
        parent->awaited = NULL;
        return parent; /* straight to the label: the join failed with -ENOMEM */
    }
    parent->awaited = &j->cor_hdr;
    cor_frame *jf = &j->cor_hdr;
    jf->flags |= COR_FRAME_STARTED;
    jf->continuation = parent;
    jf->env = parent->env;
    jf->env.ex = (cor_executor){jf, &join_ops};
    cor_linked_stop_source_init(&j->stop, parent->env.stop);
    return jf; /* the trampoline runs join_start */
}

struct cor__join *cor__join_after(cor_frame *parent)
{
    struct cor__join *j = (struct cor__join *)parent->awaited;
    parent->awaited = NULL;
    return j;
}

void cor__join_free(struct cor__join *j)
{
    if (!j)
        return;
    for (uint32_t i = 0; i < j->n; i++) {
        cor_frame *c = j->children[i];
        if (!c)
            continue;
        if (!(c->flags & COR_FRAME_STARTED)) {
            free_unstarted(c);
            continue;
        }
        /* A loser that returned anyway: its result may hold a resource. */
        if (j->kind == COR__JOIN_ANY && j->discard && (int)i != j->winner &&
            (c->flags & COR_FRAME_DONE) && !c->error)
            j->discard((int)i, (char *)c + c->result_off);
        cor__frame_free_any(c);
    }
    cor__frame_free(&j->cor_hdr);
}

void cor__frame_free_any(cor_frame *f)
{
    if (f->flags & COR_FRAME_JOIN)
        cor__join_free((struct cor__join *)f);
    else
        cor__frame_free(f);
}

bool cor__join_child_destroyed(cor_frame *jf, cor_frame *h)
{
    struct cor__join *j = (struct cor__join *)jf;
    cor_frame *task = (h->flags & COR_FRAME_IS_VIA) ? h->awaited : h;
    /* The walk frees the task (and its timeouts): the join must not free it again. */
    int i = index_of(j, task);
    if (i >= 0)
        j->children[i] = NULL;
    cor_executor ex = jf->continuation->env.ex;
    if (!cor_executor_equal(h->env.ex, ex) && cor_executor_valid(ex))
        ex.ops->on_work_finished(ex.obj);
    if (__atomic_sub_fetch(&j->count, 1, __ATOMIC_ACQ_REL) != 0)
        return false;
    /* The last one: the finished children go with the join. */
    for (uint32_t k = 0; k < j->n; k++)
        if (j->children[k]) {
            cor__frame_free_any(j->children[k]);
            j->children[k] = NULL;
        }
    cor_linked_stop_source_destroy(&j->stop);
    return true;
}

/* ---- task groups -------------------------------------------------------------------------- */

/* The record a spawned child completes to. */
struct group_child {
    cor_frame hdr; /* awaited: the child task */
    cor_task_group *g;
    cor__root_link link; /* on the spawning executor's context's roots (dumps) */
};

static cor_handle group_child_done(cor_frame *f);

const cor__root_link *cor__group_child_link(const cor_frame *f)
{
    return f->resume == group_child_done ? &((const struct group_child *)f)->link : NULL;
}

int cor_task_group_init(cor_task_group *g, cor_stop_token parent, int policy)
{
    if (!g || (policy != COR_GROUP_FAIL_FAST && policy != COR_GROUP_COLLECT_ALL))
        return -EINVAL;
    cor_linked_stop_source_init(&g->stop, parent);
    g->lock = 0;
    g->policy = policy;
    g->live = 0;
    g->spawned = 0;
    g->first_error = 0;
    g->joiner = NULL;
    g->on_empty = NULL;
    return 0;
}

/* A child of g finished with err (0: it returned). Touches g only while the child is live. */
static void group_finished(cor_task_group *g, int err)
{
    bool stop = false;
    if (err) {
        cor__spin_lock(&g->lock);
        if (!g->first_error) {
            g->first_error = err;
            stop = g->policy == COR_GROUP_FAIL_FAST;
        }
        cor__spin_unlock(&g->lock);
    }
    /* Before the count drops: a joiner could destroy g right after. */
    if (stop)
        cor_stop_source_request(&g->stop.source);
    cor__spin_lock(&g->lock);
    cor_frame *joiner = NULL;
    void (*empty)(cor_task_group *) = NULL;
    if (--g->live == 0) {
        joiner = g->joiner;
        g->joiner = NULL;
        if (joiner)
            ((struct cor_group_join *)joiner)->result = g->first_error;
        else
            empty = g->on_empty;
    }
    cor__spin_unlock(&g->lock);
    if (joiner)
        cor_leaf_complete_post(joiner);
    else if (empty)
        empty(g); /* may free g: nothing touches it after */
}

static cor_handle group_child_done(cor_frame *f)
{
    struct group_child *rec = (struct group_child *)f;
    cor__roots_del(&rec->link);
    cor_frame *task = f->awaited;
    int err = task->error;
    cor_executor ex = f->env.ex;
    cor_task_group *g = rec->g;
    cor__frame_free_any(task);
    cor__frame_free(f);
    group_finished(g, err);
    ex.ops->on_work_finished(ex.obj);
    return COR_NOOP;
}

/* Destroyed with its chain (teardown): the child counts as finished, stopped. */
static void group_child_destroyed(cor_frame *f)
{
    struct group_child *rec = (struct group_child *)f;
    cor__roots_del(&rec->link);
    group_finished(rec->g, -ECANCELED);
    f->env.ex.ops->on_work_finished(f->env.ex.obj);
}

int cor__task_group_spawn(cor_task_group *g, cor__launch *l, cor_frame *task)
{
    cor__window_leave(l->prev);
    int rc = !g ? -EINVAL : l->err ? l->err : !task ? -ENOMEM : 0;
    if (!rc && (task->flags & COR_FRAME_STARTED))
        rc = -EINVAL;
    if (!rc && cor_stop_requested(cor_linked_stop_source_token(&g->stop)))
        rc = -ESHUTDOWN;
    struct group_child *rec = NULL;
    if (!rc) {
        rec = (struct group_child *)cor_mr_allocate(l->mr, sizeof *rec, __alignof__(max_align_t));
        if (!rec)
            rc = -ENOMEM;
    }
    if (rc) {
        if (task && !(task->flags & COR_FRAME_STARTED))
            free_unstarted(task);
        return rc;
    }
    cor__frame_init(&rec->hdr, group_child_done, l->mr, sizeof *rec, __alignof__(max_align_t),
                    COR_FRAME_STARTED, 0, 0);
    rec->hdr.on_destroy = group_child_destroyed;
    rec->hdr.env.ex = l->ex;
    rec->hdr.env.stop = cor_linked_stop_source_token(&g->stop);
    rec->hdr.env.alloc = l->mr;
    rec->hdr.awaited = task;
    rec->g = g;
    /* Listed once fully made, like a launch record: a dump may read it from now on. */
    cor__roots_add(l->ctx, &rec->link, &rec->hdr);
    cor__spin_lock(&g->lock);
    g->live++;
    g->spawned++;
    cor__spin_unlock(&g->lock);
    l->ex.ops->on_work_started(l->ex.obj);
    /* Started as an await of the record: run() choices and timeouts apply. */
    cor_handle h = cor__child_start(&rec->hdr, &rec->hdr.env, task);
    /* "Run it here" means on ex, which may not be this thread: dispatch. (Sent to another
     * executor, it was dispatched there already.) */
    if (h == task && cor_executor_equal(task->env.ex, l->ex))
        h = l->ex.ops->dispatch(l->ex.obj, task);
    cor_resume(h);
    return 0;
}

int cor_task_group_stop(cor_task_group *g)
{
    if (!g)
        return -EINVAL;
    cor_stop_source_request(&g->stop.source);
    return 0;
}

static cor_handle group_join_start(cor_frame *f)
{
    struct cor_group_join *jn = (struct cor_group_join *)f;
    cor_task_group *g = jn->g;
    if (!g) {
        jn->result = -EINVAL;
        return cor_leaf_complete(f);
    }
    cor__spin_lock(&g->lock);
    if (g->joiner) {
        cor__spin_unlock(&g->lock);
        jn->result = -EBUSY;
        return cor_leaf_complete(f);
    }
    if (g->live == 0) {
        jn->result = g->first_error;
        cor__spin_unlock(&g->lock);
        return cor_leaf_complete(f);
    }
    /* The executor keeps running until the last child posts the join back. */
    cor_leaf_hold(f);
    g->joiner = f;
    cor__spin_unlock(&g->lock);
    return COR_NOOP;
}

/* A join destroyed while it waited (teardown): the group forgets it. */
static void group_join_destroyed(cor_frame *f)
{
    cor_task_group *g = ((struct cor_group_join *)f)->g;
    cor__spin_lock(&g->lock);
    bool waiting = g->joiner == f;
    if (waiting)
        g->joiner = NULL;
    cor__spin_unlock(&g->lock);
    if (waiting)
        f->env.ex.ops->on_work_finished(f->env.ex.obj);
}

struct cor_group_join *cor_task_group_join(cor_task_group *g)
{
    struct cor_group_join *jn = COR_LEAF_NEW(struct cor_group_join, group_join_start);
    if (jn) {
        jn->g = g;
        if (g)
            jn->cor_hdr.on_destroy = group_join_destroyed;
    }
    return jn;
}

long cor_task_group_size(cor_task_group *g)
{
    if (!g)
        return 0;
    cor__spin_lock(&g->lock);
    long n = g->live;
    cor__spin_unlock(&g->lock);
    return n;
}

int cor_task_group_destroy(cor_task_group *g)
{
    if (!g)
        return -EINVAL;
    cor__spin_lock(&g->lock);
    bool busy = g->live || g->joiner;
    cor__spin_unlock(&g->lock);
    if (busy)
        return -EBUSY;
    return cor_linked_stop_source_destroy(&g->stop);
}
