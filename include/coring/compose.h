/*
 * Running several things at once: when_all, when_any, a timeout for a whole
 * task, and task groups (nurseries). Structured: every child has a parent
 * that outlives it; a stopped or losing child is stopped *and awaited*
 * before its parent goes on, so no child frame, descriptor or buffer
 * outlives the await that made it. Cancellation flows down through stop
 * sources linked to the parent's token; failure flows up through the error
 * channel.
 *
 *     struct pair { COR_PROMISE(int); int a, b, err, idx; };
 *     ...
 *     COR_AWAIT_ALL((self->a, fetch(1)), (self->b, fetch(2)));  both, concurrently
 *     COR_AWAIT_ANY(self->idx, (self->a, fetch(1)), (self->b, fetch(2)));  the first wins
 *     COR_AWAIT(self->a, COR_TIMEOUT(2 * 1000000000LL, fetch(1)));  -ETIMEDOUT after 2 s
 *
 * Children are task expressions (or leaf awaitables such as cor_recv) given
 * as (destination, expression) pairs, at most 8 in a list; the _N forms take
 * any number. Each child runs concurrently on the awaiting coroutine's
 * executor (or where COR_RUN sends it), with its own stop token linked to
 * the awaiting coroutine's. Each result is assigned to its destination with
 * the same compile-time check as COR_AWAIT (a narrowing is an error), after
 * every child has finished. The join state lives in the awaiting frame's
 * await slot for up to two children (more: one allocation from the frame
 * allocator); the children's frames come from the frame allocator in force,
 * like any await.
 */
#ifndef CORING_COMPOSE_H
#define CORING_COMPOSE_H

#include "coring/common.h"
#include "coring/executor.h"
#include "coring/launch.h"
#include "coring/stop.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/* ==== when_all =========================================================================== */

/*
 * COR_AWAIT_ALL((dst, task), ...): runs every task concurrently and waits for
 * all of them. Fail-fast: the first child that fails (error channel)
 * requests stop on its siblings (a sibling blocked on a recv completes with
 * -ECANCELED, a sibling not yet started is not started); once every child
 * has finished, the first error propagates (this coroutine fails with it) or,
 * if none, every destination holds its child's result.
 */
#define COR_AWAIT_ALL(...)                                                                         \
    COR__JOIN_LIST(COR__JOIN_ALL, COR__JOIN_PROPAGATE, cor__jnone, cor__jnone, NULL, __VA_ARGS__)

/*
 * As COR_AWAIT_ALL, catching the error: err (an int lvalue) receives the
 * first child's error (-ENOMEM if a child or the join could not be
 * allocated), or 0. Each destination whose child returned is assigned, the
 * others are left as they were.
 */
#define COR_TRY_AWAIT_ALL(err, ...)                                                                \
    COR__JOIN_LIST(COR__JOIN_ALL, COR__JOIN_CATCH, err, cor__jnone, NULL, __VA_ARGS__)

/*
 * The array form: n children (n evaluated once), child i made by task_expr
 * with the identifier i (a size_t the macro declares) in scope; child i's
 * result goes to dst[i]. COR_AWAIT_ALL_N(self->res, self->n, i, work(self->in[i])).
 */
#define COR_AWAIT_ALL_N(dst, n, i, task_expr)                                                      \
    COR__JOIN_ARRAY(COR__JOIN_ALL, COR__JOIN_PROPAGATE, cor__jnone, cor__jnone, NULL, dst, n, i,   \
                    task_expr)

/* The array form of COR_TRY_AWAIT_ALL. */
#define COR_TRY_AWAIT_ALL_N(err, dst, n, i, task_expr)                                             \
    COR__JOIN_ARRAY(COR__JOIN_ALL, COR__JOIN_CATCH, err, cor__jnone, NULL, dst, n, i, task_expr)

/* ==== when_any =========================================================================== */

/*
 * COR_AWAIT_ANY(idx, (dst, task), ...): runs every task concurrently; the
 * first to finish wins. idx (an int lvalue) receives the winner's index (0
 * for the first pair) and its destination its result; the others are
 * stopped and awaited before this coroutine goes on, and their results are
 * discarded (see COR_TRY_AWAIT_ANY_DISCARD for results that hold
 * resources). If the winner failed (error channel), its error propagates.
 * Exactly one winner, also when several finish together.
 */
#define COR_AWAIT_ANY(idx, ...)                                                                    \
    COR__JOIN_LIST(COR__JOIN_ANY, COR__JOIN_PROPAGATE, cor__jnone, idx, NULL, __VA_ARGS__)

/* As COR_AWAIT_ANY, catching the winner's error in err (0 if it returned; dst then assigned). */
#define COR_TRY_AWAIT_ANY(err, idx, ...)                                                           \
    COR__JOIN_LIST(COR__JOIN_ANY, COR__JOIN_CATCH, err, idx, NULL, __VA_ARGS__)

/*
 * As COR_TRY_AWAIT_ANY, and every loser that returned a result anyway
 * (it finished before the stop reached it) is passed to
 * discard(index, result_pointer) before its frame is freed, so the caller
 * can release what the result holds (close a descriptor):
 *     static void close_fd(int index, void *result) { close(*(int *)result); }
 * Losers that failed, or were stopped before they started, are not passed.
 */
#define COR_TRY_AWAIT_ANY_DISCARD(err, idx, discard, ...)                                          \
    COR__JOIN_LIST(COR__JOIN_ANY, COR__JOIN_CATCH, err, idx, discard, __VA_ARGS__)

/*
 * The array form of COR_TRY_AWAIT_ANY: the winner's result goes to dst[idx].
 * With n == 0 nothing runs and nothing wins: err is 0 and idx -1.
 */
#define COR_TRY_AWAIT_ANY_N(err, idx, dst, n, i, task_expr)                                        \
    COR__JOIN_ARRAY(COR__JOIN_ANY, COR__JOIN_CATCH, err, idx, NULL, dst, n, i, task_expr)

/* ==== a timeout for a whole task ========================================================= */

/*
 * COR_AWAIT(dst, COR_TIMEOUT(ns, task)): runs task with a stop token that
 * fires ns nanoseconds from now (and still fires when the awaiting
 * coroutine's own token does). If the deadline comes first, the await fails
 * with -ETIMEDOUT through the error channel (COR_TRY_AWAIT catches it) once
 * the task has finished unwinding -- even if the task caught the stop and
 * returned normally: the deadline fired. A task that finishes first keeps
 * its result. Works for any task, composed ones included (cor_send_all,
 * cor_recv_until), and nests: the earliest deadline wins. A task that
 * ignores its stop token is awaited, not abandoned: the await then ends when
 * the task does. The timer is a node of the timer wheel of the io_context
 * running on the awaiting thread (no io_context there: the await fails with
 * -EPERM); arming and disarming it costs no system call. ns < 0: -EINVAL.
 * Evaluates to the task (COR_RUN and COR_TIMEOUT combine in any order).
 */
#define COR_TIMEOUT(ns, task) COR__TIMEOUT(cor__timeout_after(ns), task)

/* As COR_TIMEOUT with an absolute CLOCK_MONOTONIC deadline (cor_clock_now, timer.h). */
#define COR_TIMEOUT_AT(abs_ns, task) COR__TIMEOUT(cor__timeout_at(abs_ns), task)

/* ==== task groups ======================================================================== */

/* Failure policies of a task group. */
enum {
    COR_GROUP_FAIL_FAST = 0,  /* the first child that fails stops the others (default) */
    COR_GROUP_COLLECT_ALL = 1 /* a failure stops nobody; the join still reports the first */
};

/*
 * A task group (a nursery): spawn children into it at any time, each on an
 * executor of your choice with a stop token linked to the group's; stop the
 * group to stop them all; await cor_task_group_join to wait for every child.
 * Embed it in a frame (or anything that outlives its children). Fields are
 * the library's.
 *
 *     cor_task_group_init(&self->g, COR_THIS_STOP_TOKEN(), COR_GROUP_FAIL_FAST);
 *     for (...) COR_SPAWN(&self->g, session(fd));     -ENOMEM when no frame
 *     ...
 *     cor_task_group_stop(&self->g);                   graceful shutdown: stop,
 *     COR_AWAIT(self->err, cor_task_group_join(&self->g));    then join
 *     cor_task_group_destroy(&self->g);
 */
typedef struct cor_task_group {
    cor_linked_stop_source stop; /* the children's token; linked to the owner's     */
    uint32_t lock;               /* spin lock over the fields below                  */
    int policy;
    long live;         /* children spawned and not yet finished            */
    long spawned;      /* children ever spawned                            */
    int first_error;   /* the first child failure, or 0                    */
    cor_frame *joiner; /* the leaf of a pending join                       */
    /* The library's: run (instead of touching g again) when the last child
     * ends with no join waiting; it may free g. */
    void (*on_empty)(struct cor_task_group *g);
} cor_task_group;

/*
 * Initializes g, linked to parent (the group stops when parent stops; the
 * never-stopping token links nothing), with policy COR_GROUP_*. Returns 0,
 * or -EINVAL for NULL g or an unknown policy. Any thread.
 */
COR_API int cor_task_group_init(cor_task_group *g, cor_stop_token parent, int policy);

/*
 * Inside a coroutine: launches task (a task call, evaluated with the group's
 * frame allocator window: this coroutine's allocator) on this coroutine's
 * executor as a child of group g. Evaluates to 0, or -ENOMEM (the frame, or
 * the child's record, could not be allocated: nothing was started),
 * -ESHUTDOWN if g is stopped (nothing is started), -EINVAL for NULL g.
 */
#define COR_SPAWN(g, task) COR_SPAWN_ON(g, COR_THIS_EXECUTOR(), COR_THIS_ALLOCATOR(), task)

/*
 * Anywhere: as COR_SPAWN on executor ex, frames from memory resource mr
 * (NULL: ex's context's, else the library's). -EINVAL also for an invalid
 * executor.
 */
#define COR_SPAWN_ON(g, ex, mr, task)                                                              \
    __extension__({                                                                                \
        cor__launch cor__sl;                                                                       \
        cor_launch_options cor__so = {.alloc = (mr)};                                              \
        cor__launch_begin(&cor__sl, (ex), &cor__so);                                               \
        cor__task_group_spawn((g), &cor__sl, COR_FRAME(task));                                     \
    })

/* Requests stop on every child, present and future (later spawns get -ESHUTDOWN). Returns 0 or
 * -EINVAL. Any thread. */
COR_API int cor_task_group_stop(cor_task_group *g);

/*
 * Awaitable: completes once no child of g is running, with the first child
 * failure (a child's error channel: COR_FAIL, a failed await, -ENOMEM), or
 * 0. Children spawned while it waits are waited for too. One join at a time
 * (a second completes with -EBUSY); -EINVAL for NULL g. Resumes on the
 * joining coroutine's executor. The joining coroutine's stop token does not
 * cut the join short: a stopped joiner still waits for every child (stop
 * the group to hurry them), so whatever the children use outlives them.
 */
COR_API struct cor_group_join *cor_task_group_join(cor_task_group *g);

/* The number of children running now (0 for NULL). Any thread. */
COR_API long cor_task_group_size(cor_task_group *g);

/*
 * Ends the life of g. Returns 0; -EBUSY while children run or a join waits
 * (g is unchanged: stop it, join it, then destroy); -EINVAL for NULL. Any
 * thread.
 */
COR_API int cor_task_group_destroy(cor_task_group *g);

/* ==== internals: what the macros above expand to. Not for direct use. ==================== */

enum { COR__JOIN_ALL = 1, COR__JOIN_ANY = 2 };
enum { COR__JOIN_PROPAGATE = 0, COR__JOIN_CATCH = 1 };
enum { COR__JOIN_INLINE = 2 };

/*
 * The join state of when_all / when_any: a leaf frame the awaiting
 * coroutine awaits. Its children complete to it; its executor is the join
 * itself (cor__join_ops), which makes every child completion take the slow
 * path, where the join learns which child finished.
 */
struct cor__join {
    COR_LEAF_PROMISE(int); /* the first error (all) or the winner's (any), or 0 */
    uint32_t count;        /* children not finished, +1 while starting (atomic) */
    uint32_t n;            /* children                                          */
    uint32_t done_here;    /* finished inside the start, not counted yet (its thread) */
    uint16_t kind;         /* COR__JOIN_ALL or COR__JOIN_ANY                    */
    uint16_t flags;        /* internal                                          */
    int32_t winner;        /* when_any: the first to finish, -1 before (atomic) */
    void (*discard)(int index, void *result);
    cor_linked_stop_source stop; /* the children's token                        */
    cor_frame **children;        /* inl, or the array after the struct           */
    cor_frame *inl[COR__JOIN_INLINE];
};

COR_API struct cor__join *cor__join_new(int kind, size_t n, void (*discard)(int, void *));
COR_API void cor__join_set(struct cor__join *j, size_t i, cor_frame *child);
COR_API cor_handle cor__join_await(cor_frame *parent, struct cor__join *j);
COR_API void cor__join_free(struct cor__join *j);
COR_API struct cor__join *cor__join_after(cor_frame *parent);

/* Child i returned (finished, not failed): its result may be read. */
static inline bool cor__join_ok(const struct cor__join *j, size_t i)
{
    cor_frame *c = j->children[i];
    return c && (c->flags & COR_FRAME_DONE) && !c->error;
}

/* The result (err, idx) of the join, and whether the parent must fail with err. */
static inline int cor__join_error(const struct cor__join *j)
{
    return j ? j->result : -ENOMEM;
}

#define COR__PDST_(d, t) d
#define COR__PTASK_(d, t) t
#define COR__PDST(p) COR__PDST_ p
#define COR__PTASK(p) COR__PTASK_ p

#define COR__NPAIRS(...) COR__NPAIRS_(__VA_ARGS__, 8, 7, 6, 5, 4, 3, 2, 1, 0)
#define COR__NPAIRS_(_1, _2, _3, _4, _5, _6, _7, _8, n, ...) n
#define COR__EACH_1(M, x, p0) M(x, 0, p0)
#define COR__EACH_2(M, x, p0, p1) M(x, 0, p0) M(x, 1, p1)
#define COR__EACH_3(M, x, p0, p1, p2) M(x, 0, p0) M(x, 1, p1) M(x, 2, p2)
#define COR__EACH_4(M, x, p0, p1, p2, p3) M(x, 0, p0) M(x, 1, p1) M(x, 2, p2) M(x, 3, p3)
#define COR__EACH_5(M, x, p0, p1, p2, p3, p4)                                                      \
    M(x, 0, p0) M(x, 1, p1) M(x, 2, p2) M(x, 3, p3) M(x, 4, p4)
#define COR__EACH_6(M, x, p0, p1, p2, p3, p4, p5)                                                  \
    M(x, 0, p0) M(x, 1, p1) M(x, 2, p2) M(x, 3, p3) M(x, 4, p4) M(x, 5, p5)
#define COR__EACH_7(M, x, p0, p1, p2, p3, p4, p5, p6)                                              \
    M(x, 0, p0) M(x, 1, p1) M(x, 2, p2) M(x, 3, p3) M(x, 4, p4) M(x, 5, p5) M(x, 6, p6)
#define COR__EACH_8(M, x, p0, p1, p2, p3, p4, p5, p6, p7)                                          \
    M(x, 0, p0) M(x, 1, p1) M(x, 2, p2) M(x, 3, p3) M(x, 4, p4) M(x, 5, p5) M(x, 6, p6) M(x, 7, p7)
#define COR__EACH(M, x, ...) COR__CAT(COR__EACH_, COR__NPAIRS(__VA_ARGS__))(M, x, __VA_ARGS__)

/* Makes child i of join j (in the window: from this coroutine's allocator). */
#define COR__JOIN_SET(j, i, p) cor__join_set(j, i, COR_FRAME(COR__PTASK(p)));

/* Assigns child i's result (all: every child that returned; any: the winner). */
#define COR__JOIN_TAKE(j, i, p)                                                                    \
    if (cor__join_ok(j, i) && (j->kind == COR__JOIN_ALL || j->winner == (i)))                      \
        COR__ASSIGN_RESULT(COR__PDST(p), ((__typeof__(COR__PTASK(p)))j->children[i])->result);

/*
 * What follows the join: the winner's index (-1 if none), the error caught or
 * propagated. Unused err / idx arguments are cor__jnone, a dummy declared here.
 */
#define COR__JOIN_END(kind, mode, err, idx, j)                                                     \
    do {                                                                                           \
        int cor__jnone = 0;                                                                        \
        int cor__je = cor__join_error(j);                                                          \
        if (kind == COR__JOIN_ANY)                                                                 \
            idx = (j) ? (j)->winner : -1;                                                          \
        cor__join_free(j);                                                                         \
        if (mode == COR__JOIN_CATCH)                                                               \
            err = cor__je;                                                                         \
        else if (cor__je)                                                                          \
            return cor__fail(&self->cor_hdr, cor__je);                                             \
        (void)cor__jnone;                                                                          \
    } while (0)

#define COR__JOIN_LIST(kind, mode, err, idx, discard, ...)                                         \
    COR__JOIN_LIST_(kind, mode, err, idx, discard, __COUNTER__, __VA_ARGS__)
#define COR__JOIN_LIST_(kind, mode, err, idx, discard, ctr, ...)                                   \
    do {                                                                                           \
        (void)COR_BEGIN_must_open_the_body;                                                        \
        {                                                                                          \
            cor__window cor__jw = cor__window_enter(self->cor_hdr.env.alloc, &self->cor_slot);     \
            struct cor__join *cor__j = cor__join_new(kind, COR__NPAIRS(__VA_ARGS__), discard);     \
            COR__EACH(COR__JOIN_SET, cor__j, __VA_ARGS__)                                          \
            cor__window_leave(cor__jw);                                                            \
            COR__SET_SITE(self->cor_hdr.point, COR__CAT(cor__l, ctr), ctr);                        \
            return cor__join_await(&self->cor_hdr, cor__j);                                        \
        }                                                                                          \
        COR__CAT(cor__l, ctr) :;                                                                   \
        {                                                                                          \
            struct cor__join *cor__j = cor__join_after(&self->cor_hdr);                            \
            if (cor__j) {                                                                          \
                COR__EACH(COR__JOIN_TAKE, cor__j, __VA_ARGS__)                                     \
            }                                                                                      \
            COR__JOIN_END(kind, mode, err, idx, cor__j);                                           \
        }                                                                                          \
    } while (0)

#define COR__JOIN_ARRAY(kind, mode, err, idx, discard, dst, cnt, i, task_expr)                     \
    COR__JOIN_ARRAY_(kind, mode, err, idx, discard, dst, cnt, i, task_expr, __COUNTER__)
#define COR__JOIN_ARRAY_(kind, mode, err, idx, discard, dst, cnt, i, task_expr, ctr)               \
    do {                                                                                           \
        (void)COR_BEGIN_must_open_the_body;                                                        \
        {                                                                                          \
            cor__window cor__jw = cor__window_enter(self->cor_hdr.env.alloc, &self->cor_slot);     \
            size_t cor__jn = (size_t)(cnt);                                                        \
            struct cor__join *cor__j = cor__join_new(kind, cor__jn, discard);                      \
            for (size_t i = 0; i < cor__jn; i++)                                                   \
                cor__join_set(cor__j, i, COR_FRAME(task_expr));                                    \
            cor__window_leave(cor__jw);                                                            \
            COR__SET_SITE(self->cor_hdr.point, COR__CAT(cor__l, ctr), ctr);                        \
            return cor__join_await(&self->cor_hdr, cor__j);                                        \
        }                                                                                          \
        COR__CAT(cor__l, ctr) :;                                                                   \
        {                                                                                          \
            struct cor__join *cor__j = cor__join_after(&self->cor_hdr);                            \
            for (size_t i = 0; cor__j && i < cor__j->n; i++)                                       \
                if (cor__join_ok(cor__j, i) &&                                                     \
                    (kind == COR__JOIN_ALL || cor__j->winner == (int)i))                           \
                    COR__ASSIGN_RESULT((dst)[i],                                                   \
                                       ((__typeof__(task_expr))cor__j->children[i])->result);      \
            COR__JOIN_END(kind, mode, err, idx, cor__j);                                           \
        }                                                                                          \
    } while (0)

/* ---- timeouts: a frame between the task and its awaiter ---- */

COR_API void *cor__timeout_after(int64_t ns);
COR_API void *cor__timeout_at(int64_t abs_ns);
COR_API void cor__timeout_attach(void *t, cor_frame *task);

#define COR__TIMEOUT(make, task) COR__TIMEOUT_(make, task, __COUNTER__)
#define COR__TIMEOUT_(make, task, ctr)                                                             \
    __extension__({                                                                                \
        void *COR__CAT(cor__tv, ctr) = (make);                                                     \
        __typeof__(task) COR__CAT(cor__tk, ctr) = (task);                                          \
        cor__timeout_attach(COR__CAT(cor__tv, ctr), COR_FRAME(COR__CAT(cor__tk, ctr)));            \
        COR__CAT(cor__tk, ctr);                                                                    \
    })

/* ---- task groups ---- */

COR_API int cor__task_group_spawn(cor_task_group *g, cor__launch *l, cor_frame *task);

/* The leaf a join awaits (fields are the library's). */
struct cor_group_join {
    COR_LEAF_PROMISE(int);
    cor_task_group *g;
};

COR_END_DECLS

#endif
