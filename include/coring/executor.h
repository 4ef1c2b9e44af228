/*
 * Executors: cor_executor is an executor_ref, two pointers naming an executor
 * object and its operations. Frames are resumed through executors; an
 * executor decides on which thread and when.
 */
#ifndef CORING_EXECUTOR_H
#define CORING_EXECUTOR_H

#include "coring/common.h"

COR_BEGIN_DECLS

/*
 * The operations every executor implements. obj is the executor object.
 *  dispatch: run h inline when that is safe (return h: the caller resumes it
 *            through its trampoline), else queue h and return COR_NOOP.
 *  post:     queue h to run later; never runs it inline (the inline executor,
 *            which has no queue, is the one documented exception).
 *  context:  the execution context the executor belongs to (may be NULL).
 *  on_work_started / on_work_finished: count outstanding work, so a run loop
 *            does not return while work that will post to it is pending.
 */
typedef struct cor_executor_ops {
    cor_handle (*dispatch)(const void *obj, cor_handle h);
    void (*post)(const void *obj, cor_handle h);
    cor_execution_context *(*context)(const void *obj);
    void (*on_work_started)(const void *obj);
    void (*on_work_finished)(const void *obj);
} cor_executor_ops;

/* An executor reference. Equality is identity of the referenced executor. */
typedef struct cor_executor {
    const void *obj;
    const cor_executor_ops *ops;
} cor_executor;

/* The null executor: {NULL, NULL}. Valid nowhere; "inherit" where an option allows it. */
#define COR_EXECUTOR_NULL ((cor_executor){NULL, NULL})

/* True if a and b reference the same executor. */
static inline bool cor_executor_equal(cor_executor a, cor_executor b)
{
    return a.obj == b.obj && a.ops == b.ops;
}

/* True if ex has every operation a usable executor needs. */
static inline bool cor_executor_valid(cor_executor ex)
{
    return ex.ops && ex.ops->dispatch && ex.ops->post && ex.ops->on_work_started &&
           ex.ops->on_work_finished;
}

/*
 * Dispatches h on ex and runs whatever is to run inline on the calling
 * thread's trampoline before returning. Returns 0, or -EINVAL for an invalid
 * executor or a NULL handle (h is then untouched and still the caller's).
 */
COR_API int cor_executor_dispatch(cor_executor ex, cor_handle h);

/* Posts h to ex. Returns 0, or -EINVAL for an invalid executor or NULL h. */
COR_API int cor_executor_post(cor_executor ex, cor_handle h);

/* Returns the execution context of ex, or NULL if ex is invalid or has none. */
COR_API cor_execution_context *cor_executor_context(cor_executor ex);

/*
 * The inline executor: dispatch and post both resume h on the calling thread
 * at once (it has no queue). Its context is NULL. Any thread.
 */
COR_API cor_executor cor_inline_executor(void);

/*
 * Resumes h and every handle it transfers to, on the calling thread, until
 * the chain suspends (symmetric transfer through a per-thread trampoline, so
 * the stack does not grow with the chain). NULL is a no-op. For executor
 * implementations: call it on the thread and at the time the executor chose.
 */
COR_API void cor_resume(cor_handle h);

/*
 * Destroys the suspended frame h and every frame awaiting it, up to and
 * including its launch; no completion handler runs. For executors and
 * contexts discarding work they will never run. NULL is a no-op.
 */
COR_API void cor_frame_destroy(cor_handle h);

COR_END_DECLS

#endif
