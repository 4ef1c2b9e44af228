/*
 * Stackless coroutine tasks.
 *
 * A coroutine is a struct (its frame) whose first member is the promise,
 * declared with COR_PROMISE(T): a frame header, a typed result and the await
 * slot. Parameters and every local that lives across an await are fields of
 * the frame. The body is a function that resumes at the last await point
 * (labels as values), so it runs in ordinary C and returns to a per-thread
 * trampoline at every suspension.
 *
 *     struct add { COR_PROMISE(int); int a, b; };
 *     COR_DEFINE(add, (int a, int b), { self->a = a; self->b = b; })
 *     {
 *         COR_BEGIN();
 *         COR_RETURN(self->a + self->b);
 *     }
 *
 *     struct twice { COR_PROMISE(int); int x, r; };
 *     COR_DEFINE(twice, (int x), { self->x = x; })
 *     {
 *         COR_BEGIN();
 *         COR_AWAIT(self->r, add(self->x, self->x));
 *         COR_RETURN(self->r);
 *     }
 *
 * Calling add(1, 2) allocates the frame from the thread's current frame
 * allocator and runs the initializer; it does not start the body (tasks are
 * lazy). Awaiting it (COR_AWAIT) or launching it (COR_RUN_ASYNC, launch.h)
 * starts it. The frame of an awaited task is freed by the awaiting coroutine
 * once the await completes; a launched one by its launch.
 *
 * Rules of the body, which the macros rely on (and check where they can):
 *  - COR_BEGIN() is the body's first statement: without it, every await and
 *    return fails to compile ("COR_BEGIN_must_open_the_body undeclared").
 *  - The frame is `self` (the body's parameter): COR_AWAIT, COR_RETURN and
 *    the COR_THIS_* queries use it.
 *  - Locals declared in the body do not survive an await; keep such values in
 *    the frame.
 *  - No await inside a GNU statement expression; switch statements and loops
 *    around awaits work normally.
 *  - Every path ends in COR_RETURN, COR_RETURN_VOID or COR_FAIL.
 *
 * Results and errors. A task's result is typed: COR_AWAIT(dst, t) assigns the
 * child's result to dst, and the compiler checks the assignment: a result
 * that does not fit dst (an ssize_t into an int, a signed value into an
 * unsigned one) is a compile error (-Wconversion) at the await. System-level
 * failure travels in a separate error channel (an int -errno in the
 * promise): a frame that could not be allocated, or COR_FAIL(err). An error
 * propagates from child to parent through COR_AWAIT, like an exception,
 * until a COR_TRY_AWAIT catches it. I/O results such as a short read or
 * -ECONNRESET are values, not errors.
 */
#ifndef CORING_TASK_H
#define CORING_TASK_H

#include <string.h>

#include "coring/common.h"
#include "coring/alloc.h"
#include "coring/executor.h"
#include "coring/stop.h"

COR_BEGIN_DECLS

/* ==== the coroutine surface ============================================================= */

/* The environment a coroutine runs in; it flows forward from caller to callee at every await. */
typedef struct cor_env {
    cor_executor ex;            /* where the coroutine is resumed            */
    cor_stop_token stop;        /* cancellation requests it should honour     */
    cor_memory_resource *alloc; /* allocator for the frames it creates        */
} cor_env;

/* The promise of a coroutine that returns T; the first member of its frame struct. */
#define COR_PROMISE(T)                                                                             \
    cor_frame cor_hdr;                                                                             \
    T result;                                                                                      \
    cor_await_slot cor_slot

/* The promise of a coroutine that returns nothing (finish it with COR_RETURN_VOID). */
#define COR_PROMISE_VOID() COR_PROMISE(cor_void)

/* The result type of a task that returns nothing. */
typedef struct cor_void {
    char none;
} cor_void;

/* Declares the task function of coroutine `name` (for headers): struct name *name params. */
#define COR_DECLARE(name, params)                                                                  \
    struct name;                                                                                   \
    struct name *name params

/*
 * Defines coroutine `name`: struct name must already be declared with a
 * COR_PROMISE. params is the parenthesized parameter list of the task
 * function; the remaining arguments are the initializer, run with `self`
 * pointing at the new frame (copy the parameters into it). The body follows
 * the macro as a block, with `self` in scope. The task function returns the
 * new frame, or NULL if it could not be allocated (awaiting or launching NULL
 * fails with -ENOMEM).
 */
#define COR_DEFINE(name, params, ...) COR__DEFINE(, name, params, __VA_ARGS__)

/* COR_DEFINE with a static (file-local) task function. */
#define COR_DEFINE_STATIC(name, params, ...) COR__DEFINE(static, name, params, __VA_ARGS__)

/* First statement of a body: continues at the last await point. */
#define COR_BEGIN()                                                                                \
    enum { COR_BEGIN_must_open_the_body = 1 };                                                     \
    do {                                                                                           \
        if (self->cor_hdr.point)                                                                   \
            __extension__({ goto *((const cor_await_site *)self->cor_hdr.point)->label; });        \
        COR__SET_SITE(self->cor_hdr.point, cor__begin, begin);                                     \
    } while (0);                                                                                   \
    cor__begin:

/*
 * Awaits expr (a task or a leaf awaitable) and assigns its result to dst.
 * If the child failed (or could not be allocated) the error propagates: this
 * coroutine fails with the same error and does not continue.
 */
#define COR_AWAIT(dst, expr) COR__AWAIT(dst, expr, __COUNTER__)

/* Awaits expr and discards its result; errors propagate as with COR_AWAIT. */
#define COR_AWAIT_VOID(expr) COR__AWAIT_VOID(expr, __COUNTER__)

/*
 * Awaits expr and catches its error: err (an int lvalue) receives 0 or the
 * child's -errno; dst is assigned only when err is 0.
 */
#define COR_TRY_AWAIT(err, dst, expr) COR__TRY_AWAIT(err, dst, expr, __COUNTER__)

/* COR_TRY_AWAIT without a result. */
#define COR_TRY_AWAIT_VOID(err, expr) COR__TRY_AWAIT_VOID(err, expr, __COUNTER__)

/* Completes the coroutine with result v. */
#define COR_RETURN(v)                                                                              \
    do {                                                                                           \
        (void)COR_BEGIN_must_open_the_body;                                                        \
        self->result = (v);                                                                        \
        return cor__complete(&self->cor_hdr);                                                      \
    } while (0)

/* Completes a COR_PROMISE_VOID coroutine. */
#define COR_RETURN_VOID()                                                                          \
    do {                                                                                           \
        (void)COR_BEGIN_must_open_the_body;                                                        \
        return cor__complete(&self->cor_hdr);                                                      \
    } while (0)

/* Fails the coroutine with err (a negative errno) through the error channel. */
#define COR_FAIL(err)                                                                              \
    do {                                                                                           \
        (void)COR_BEGIN_must_open_the_body;                                                        \
        return cor__fail(&self->cor_hdr, (err));                                                   \
    } while (0)

/* this_coro queries: read the environment without suspending. */
#define COR_THIS_EXECUTOR() (self->cor_hdr.env.ex)
#define COR_THIS_STOP_TOKEN() (self->cor_hdr.env.stop)
#define COR_THIS_ALLOCATOR() (self->cor_hdr.env.alloc)

/*
 * Registers fn to run if this frame is destroyed before it completes (for
 * example when its execution context is destroyed while it is suspended), so
 * it can release what it holds. Not called on normal completion.
 */
#define COR_ON_DESTROY(fn) (self->cor_hdr.on_destroy = (fn))

/*
 * The frame header (a cor_frame *) of t, an expression that calls a task
 * function: the handle executors and cor_frame_destroy take. Type-checked (t
 * must point to a coroutine frame); NULL if t is NULL. Evaluates t once.
 */
#define COR_FRAME(t) COR__FRAME(t, __COUNTER__)

/* ==== leaf awaitables =================================================================== */

/*
 * A leaf awaitable is a frame that never awaits anything itself (I/O
 * operations, timers, custom awaitables). It has no await slot, so it is
 * small enough to live in its parent's slot. Its resume function is called
 * once when it is awaited (to start it) and must not await anything. It
 * either completes at once (return cor_leaf_complete(f)) or arranges to be
 * completed later and returns COR_NOOP. examples/custom_leaf.c shows one that
 * another thread completes.
 */
#define COR_LEAF_PROMISE(T)                                                                        \
    cor_frame cor_hdr;                                                                             \
    T result

/* Allocates a leaf of type `type` with resume function resume_fn: in the awaiting frame's slot
 * when it fits (no allocation at all), else from the frame allocator. NULL if out of memory. */
#define COR_LEAF_NEW(type, resume_fn)                                                              \
    ((type *)cor__leaf_new(sizeof(type), _Alignof(type), (resume_fn), offsetof(type, result),      \
                           sizeof(((type *)0)->result)))

/*
 * Completes leaf f (its result already stored) and returns the handle to run
 * next: return it from the leaf's resume function, or resume it with
 * cor_resume. Call it on a thread that runs f's executor (cor_frame_env(f)->
 * ex) right now: from the leaf's own resume function, or from a handle that
 * executor is running. From any other thread use cor_leaf_complete_post.
 */
static inline cor_handle cor_leaf_complete(cor_frame *f);

/*
 * For a leaf completed from another thread: call in its resume function,
 * before handing f to that thread. It counts outstanding work on f's
 * executor, so that executor's run loop keeps running until
 * cor_leaf_complete_post brings f back. Returns 0, or -EINVAL for a NULL f
 * or a frame without a valid executor.
 */
COR_API int cor_leaf_hold(cor_frame *f);

/*
 * Completes leaf f (its result already stored; cor_leaf_hold called when it
 * started) from any thread, once: f is posted to its own executor and
 * completes there, so the awaiting coroutine resumes on its executor's
 * thread, never on the caller's, and the hold ends. The stores to the result
 * happen before the resumption (the post orders them). Returns 0, or -EINVAL
 * for a NULL f or a frame without a valid executor (f is untouched then).
 */
COR_API int cor_leaf_complete_post(cor_frame *f);

/* The environment of frame f (for leaf awaitables). */
static inline const cor_env *cor_frame_env(const cor_frame *f);

/* ==== internals: what the macros above expand to. Not for direct use. ==================== */

typedef cor_handle (*cor_resume_fn)(cor_frame *self);

/* Frame flags (cor_frame.flags). */
enum {
    COR_FRAME_STARTED = 1u << 0,     /* awaited or launched                       */
    COR_FRAME_DONE = 1u << 1,        /* returned or failed                        */
    COR_FRAME_IN_SLOT = 1u << 2,     /* lives in its parent's await slot          */
    COR_FRAME_SET_EX = 1u << 3,      /* run() chose its executor                  */
    COR_FRAME_SET_STOP = 1u << 4,    /* run() chose its stop token                */
    COR_FRAME_SET_ALLOC = 1u << 5,   /* run() chose its frame allocator          */
    COR_FRAME_OVERALIGNED = 1u << 6, /* allocated with more than max_align_t    */
    COR_FRAME_VIA = 1u << 7,         /* timeouts wait to start with it (compose.h) */
    COR_FRAME_JOIN = 1u << 8,        /* a when_all / when_any join (compose.h)    */
    COR_FRAME_IS_VIA = 1u << 9,      /* a timeout between a task and its awaiter  */
    COR_FRAME_DEPTH = 15u << 12      /* its depth in the await chain, modulo 16   */
};

/*
 * Where a coroutine is suspended: one static, read-only record per await in
 * the source (and one per COR_BEGIN), made by the await macros. A started
 * coroutine's frame points at the record of its last await, so a frame
 * always knows its source location (dump.h prints it) at no cost beyond
 * storing that pointer; resuming jumps to the record's label.
 */
typedef struct cor_await_site {
    void *label;      /* where the body resumes (a label's address)  */
    const char *file; /* __FILE__ of the await                        */
    const char *func; /* the body function (NAME__body for COR_DEFINE(NAME)) */
    int line;         /* __LINE__ of the await                        */
} cor_await_site;

/*
 * The frame header. Fields are the library's; a coroutine reads its
 * environment through the COR_THIS_* macros. Only the thread currently
 * resuming a frame touches it; queues hand frames between threads with
 * release/acquire ordering.
 */
struct cor_frame {
    cor_resume_fn resume;            /* the body                                  */
    void *point;                     /* a coroutine's cor_await_site, NULL: start */
    cor_frame *next;                 /* intrusive link of whichever queue holds it */
    cor_frame *continuation;         /* who awaits this frame                     */
    cor_frame *awaited;              /* the child this frame awaits               */
    cor_env env;                     /* the environment it runs in                */
    cor_memory_resource *mr;         /* the resource the frame came from          */
    void (*on_destroy)(cor_frame *); /* cleanup when destroyed before completion  */
    uint32_t size;                   /* bytes allocated for the frame             */
    int32_t error;                   /* error channel: 0 or -errno                */
    uint16_t flags;                  /* COR_FRAME_*                               */
    uint16_t align;                  /* alignment the frame was allocated with    */
    uint16_t result_off;             /* offset of the typed result                */
    uint16_t result_size;            /* its size                                  */
};

/* Storage each awaiting frame reserves for the leaf operation it awaits. */
typedef union cor_await_slot {
    unsigned char bytes[COR_AWAIT_SLOT_SIZE];
    max_align_t align;
} cor_await_slot;

/* Per-thread state: the frame allocator window and the await slot on offer. */
struct cor__tls {
    cor_memory_resource *alloc; /* current frame allocator (NULL: the default) */
    void *slot;                 /* await slot a leaf op may take, or NULL       */
    const void *running;        /* executor object whose run loop is on the stack */
};
COR_API extern COR_THREAD_LOCAL struct cor__tls cor__tls;

typedef struct cor__window {
    cor_memory_resource *alloc;
    void *slot;
} cor__window;

static inline cor__window cor__window_enter(cor_memory_resource *alloc, void *slot)
{
    cor__window prev = {cor__tls.alloc, cor__tls.slot};
    cor__tls.alloc = alloc;
    cor__tls.slot = slot;
    return prev;
}

static inline void cor__window_leave(cor__window prev)
{
    cor__tls.alloc = prev.alloc;
    cor__tls.slot = prev.slot;
}

#define COR__UNLIKELY_FLAG(flags, bit) __builtin_expect(((flags) & (bit)) != 0, 0)

static inline void cor__frame_init(cor_frame *f, cor_resume_fn resume, cor_memory_resource *mr,
                                   size_t size, size_t align, unsigned flags, size_t result_off,
                                   size_t result_size)
{
    /* Every field is read only after it is written, except these: `next` is
     * set by whichever queue takes the frame and `env` when it starts; until
     * then env.ex.ops is NULL, so a dump (dump.h) can tell a frame not yet
     * started from one started elsewhere without reading its flags, which
     * another thread may be writing. */
    f->resume = resume;
    f->point = NULL;
    f->env.ex.ops = NULL;
    f->continuation = NULL;
    f->awaited = NULL;
    f->mr = mr;
    f->on_destroy = NULL;
    f->size = (uint32_t)size;
    f->error = 0;
    f->flags = (uint16_t)(align > __alignof__(max_align_t) ? flags | COR_FRAME_OVERALIGNED : flags);
    f->align = (uint16_t)align;
    f->result_off = (uint16_t)result_off;
    f->result_size = (uint16_t)result_size;
}

/* Allocates and initializes a frame from the thread's current frame allocator. */
static inline cor_frame *cor__frame_new(size_t size, size_t align, cor_resume_fn resume,
                                        size_t result_off, size_t result_size)
{
    cor_memory_resource *mr = cor__tls.alloc ? cor__tls.alloc : cor_default_resource();
    if (align < __alignof__(max_align_t))
        align = __alignof__(max_align_t);
    cor_frame *f = (cor_frame *)cor_mr_allocate(mr, size, align);
    if (f)
        cor__frame_init(f, resume, mr, size, align, 0, result_off, result_size);
    return f;
}

/*
 * Allocates a leaf frame: in the await slot on offer when it fits (no
 * allocation at all), otherwise from the current frame allocator.
 */
static inline cor_frame *cor__leaf_new(size_t size, size_t align, cor_resume_fn resume,
                                       size_t result_off, size_t result_size)
{
    void *slot = cor__tls.slot;
    if (slot && size <= COR_AWAIT_SLOT_SIZE && align <= __alignof__(max_align_t)) {
        cor__tls.slot = NULL;
        cor_frame *f = (cor_frame *)slot;
        cor__frame_init(f, resume, NULL, size, align, COR_FRAME_IN_SLOT, result_off, result_size);
        return f;
    }
    return cor__frame_new(size, align, resume, result_off, result_size);
}

static inline void cor__frame_free(cor_frame *f)
{
    /* One test for the common frame, allocated with the ordinary alignment:
     * the alignment is then a constant, so the allocator's fast path folds
     * its checks. An over-aligned frame takes the library's path. */
    if (!COR__UNLIKELY_FLAG(f->flags, COR_FRAME_IN_SLOT | COR_FRAME_OVERALIGNED))
        cor_mr_deallocate(f->mr, f, f->size, __alignof__(max_align_t));
    else if (!(f->flags & COR_FRAME_IN_SLOT))
        cor__mr_deallocate(f->mr, f, f->size, f->align);
}

/*
 * After an await: frees the finished child and forgets it, so a frame's
 * `awaited` is only ever the child it waits for (or one that finished and
 * waits to be collected): what a dump (dump.h) may follow.
 */
static inline void cor__frame_collect(cor_frame *parent)
{
    cor__frame_free(parent->awaited);
    parent->awaited = NULL;
}

COR_API cor_handle cor__start_child(cor_frame *parent, cor_frame *child);
COR_API cor_handle cor__child_start(cor_frame *cont, const cor_env *env, cor_frame *child);
COR_API cor_handle cor__complete_slow(cor_frame *f, cor_frame *c);
COR_API cor_handle cor__fail_from_child(cor_frame *parent);

/*
 * Finishes f and returns the handle to run next: the awaiting frame when it
 * runs on the same executor (symmetric transfer, no queue), else whatever the
 * awaiting frame's executor dispatch returns.
 */
static inline cor_handle cor__complete(cor_frame *f)
{
    cor_frame *c = f->continuation;
    f->flags |= COR_FRAME_DONE;
    if (cor_executor_equal(f->env.ex, c->env.ex))
        return c;
    return cor__complete_slow(f, c);
}

static inline cor_handle cor__fail(cor_frame *f, int err)
{
    f->error = err < 0 ? err : -EINVAL;
    return cor__complete(f);
}

/*
 * Starts child as the awaited task of parent and returns the handle to run
 * next; parent itself when the child completed at once (the await site goes
 * on without a trip through the trampoline). Inlined: this is the hot path
 * of every await. On the same executor the child runs now, so it is called
 * directly, as a C++ compiler's symmetric transfer would jump to it, except
 * at every 16th level of an await chain (COR_FRAME_DEPTH: the parent's
 * depth plus one, in the flags word the await stores anyway), which is
 * handed to the trampoline (cor_resume): a frame resumed by the trampoline
 * has at most 15 direct calls above it on the stack, so a chain of any
 * depth runs in bounded stack.
 */
static inline cor_handle cor__await(cor_frame *parent, cor_frame *child)
{
    parent->awaited = child;
    if (child->flags & (COR_FRAME_SET_EX | COR_FRAME_SET_STOP | COR_FRAME_SET_ALLOC |
                        COR_FRAME_STARTED | COR_FRAME_VIA))
        return cor__start_child(parent, child);
    unsigned depth = (parent->flags + (1u << 12)) & COR_FRAME_DEPTH;
    child->flags |= (uint16_t)(COR_FRAME_STARTED | depth);
    child->continuation = parent;
    child->env = parent->env;
    if (__builtin_expect(!depth, 0))
        return child;
    return child->resume(child);
}

static inline cor_handle cor_leaf_complete(cor_frame *f)
{
    return cor__complete(f);
}

static inline const cor_env *cor_frame_env(const cor_frame *f)
{
    return &f->env;
}

#define COR__CAT2(a, b) a##b
#define COR__CAT(a, b) COR__CAT2(a, b)

#define COR__FRAME(t, ctr)                                                                         \
    __extension__({                                                                                \
        __typeof__(t) COR__CAT(cor__ft, ctr) = (t);                                                \
        COR__CAT(cor__ft, ctr) ? &COR__CAT(cor__ft, ctr)->cor_hdr : (cor_frame *)0;                \
    })

/*
 * Makes the static await site (cor_await_site) of label, named by n, and
 * stores its address in dst. The record is a constant (labels' addresses
 * are, in static initializers), so this is one store, as storing the label
 * itself was; resuming costs one more load. The uintptr_t detour keeps a
 * -Wcast-qual build quiet: the record is const, dst a plain pointer.
 */
#define COR__SET_SITE(dst, label, n)                                                               \
    static const cor_await_site COR__CAT(cor__site_, n) = {__extension__ && label, __FILE__,       \
                                                           __func__, __LINE__};                    \
    (dst) = (void *)(uintptr_t)&COR__CAT(cor__site_, n)

/*
 * Assigns an awaited result to its destination with -Wconversion in force,
 * as an error, for this one assignment, whatever the user's flags: narrowing
 * a result (an ssize_t into an int, an int into a size_t) is a bug the
 * compiler can see.
 */
#define COR__ASSIGN_RESULT(dst, src)                                                               \
    do {                                                                                           \
        _Pragma("GCC diagnostic push") _Pragma("GCC diagnostic error \"-Wconversion\"")(dst) =     \
            (src);                                                                                 \
        _Pragma("GCC diagnostic pop")                                                              \
    } while (0)

/*
 * Evaluates expr with this frame's allocator and await slot in the window,
 * then awaits it: suspends, unless it completed at once (cor__await returned
 * this frame), in which case the body goes on at the label as a resumption
 * would.
 */
#define COR__AWAIT_START(expr, n)                                                                  \
    (void)COR_BEGIN_must_open_the_body;                                                            \
    cor__window COR__CAT(cor__w, n) = cor__window_enter(self->cor_hdr.env.alloc, &self->cor_slot); \
    __typeof__(expr) COR__CAT(cor__t, n) = (expr);                                                 \
    cor__window_leave(COR__CAT(cor__w, n));                                                        \
    COR__SET_SITE(self->cor_hdr.point, COR__CAT(cor__l, n), n);                                    \
    if (COR__CAT(cor__t, n)) {                                                                     \
        cor_handle COR__CAT(cor__h, n) =                                                           \
            cor__await(&self->cor_hdr, (cor_frame *)COR__CAT(cor__t, n));                          \
        if (COR__CAT(cor__h, n) != &self->cor_hdr)                                                 \
            return COR__CAT(cor__h, n);                                                            \
    } else {                                                                                       \
        self->cor_hdr.awaited = NULL;                                                              \
    }                                                                                              \
    COR__CAT(cor__l, n) :;

#define COR__AWAIT(dst, expr, n)                                                                   \
    do {                                                                                           \
        COR__AWAIT_START(expr, n)                                                                  \
        if (!self->cor_hdr.awaited || self->cor_hdr.awaited->error)                                \
            return cor__fail_from_child(&self->cor_hdr);                                           \
        COR__ASSIGN_RESULT(dst, ((__typeof__(COR__CAT(cor__t, n)))self->cor_hdr.awaited)->result); \
        cor__frame_collect(&self->cor_hdr);                                                        \
    } while (0)

#define COR__AWAIT_VOID(expr, n)                                                                   \
    do {                                                                                           \
        COR__AWAIT_START(expr, n)                                                                  \
        if (!self->cor_hdr.awaited || self->cor_hdr.awaited->error)                                \
            return cor__fail_from_child(&self->cor_hdr);                                           \
        cor__frame_collect(&self->cor_hdr);                                                        \
    } while (0)

#define COR__TRY_AWAIT(err, dst, expr, n)                                                          \
    do {                                                                                           \
        COR__AWAIT_START(expr, n)                                                                  \
        if (!self->cor_hdr.awaited) {                                                              \
            (err) = -ENOMEM;                                                                       \
        } else {                                                                                   \
            (err) = self->cor_hdr.awaited->error;                                                  \
            if (!(err))                                                                            \
                COR__ASSIGN_RESULT(                                                                \
                    dst, ((__typeof__(COR__CAT(cor__t, n)))self->cor_hdr.awaited)->result);        \
            cor__frame_collect(&self->cor_hdr);                                                    \
        }                                                                                          \
    } while (0)

#define COR__TRY_AWAIT_VOID(err, expr, n)                                                          \
    do {                                                                                           \
        COR__AWAIT_START(expr, n)                                                                  \
        if (!self->cor_hdr.awaited) {                                                              \
            (err) = -ENOMEM;                                                                       \
        } else {                                                                                   \
            (err) = self->cor_hdr.awaited->error;                                                  \
            cor__frame_collect(&self->cor_hdr);                                                    \
        }                                                                                          \
    } while (0)

#define COR__DEFINE(storage, name, params, ...)                                                    \
    static cor_handle name##__body(struct name *self);                                             \
    static cor_handle name##__resume(cor_frame *f)                                                 \
    {                                                                                              \
        return name##__body((struct name *)f);                                                     \
    }                                                                                              \
    storage struct name *name params;                                                              \
    storage struct name *name params                                                               \
    {                                                                                              \
        struct name *self = (struct name *)cor__frame_new(                                         \
            sizeof(struct name), _Alignof(struct name), name##__resume,                            \
            offsetof(struct name, result), sizeof(((struct name *)0)->result));                    \
        if (!self)                                                                                 \
            return NULL;                                                                           \
        __VA_ARGS__                                                                                \
        return self;                                                                               \
    }                                                                                              \
    static cor_handle name##__body(struct name *self)

COR_END_DECLS

#endif
