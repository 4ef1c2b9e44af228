/*
 * Launchers. COR_RUN_ASYNC starts a task from ordinary code; COR_RUN, inside a
 * coroutine, runs one child with another executor, stop token or frame
 * allocator.
 *
 * Two phases, and why they are macros. The launcher must install its frame
 * allocator before the task expression runs, because calling a task
 * allocates its frame (as a C++ coroutine's operator new does). C leaves the
 * order of a call's argument evaluations unspecified, so a plain function
 * taking the launcher and the task could allocate the frame first. Both
 * macros are GNU statement expressions: the first statement installs the
 * allocator window, the second evaluates the task expression, the third
 * closes the window and starts the task. Evaluating the task expression
 * anywhere else (say, into a variable before the launch) allocates its frame
 * from whatever allocator was current there.
 */
#ifndef CORING_LAUNCH_H
#define CORING_LAUNCH_H

#include "coring/common.h"
#include "coring/executor.h"
#include "coring/stop.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/*
 * Options of a launch. Zero means the default throughout:
 *  stop:      the token the task sees (default: never stops).
 *  alloc:     the frame allocator of the task and its children (default: the
 *             executor's context's, else the library's).
 *  on_result: called with user and a pointer to the task's result once it
 *             returns; on the executor's thread; the pointer dies after.
 *  on_error:  called with user and the -errno the task failed with. Without
 *             it a failed task's error is logged at COR_LOG_ERROR through
 *             the log hook (log.h: one line on stderr by default).
 */
typedef struct cor_launch_options {
    cor_stop_token stop;
    cor_memory_resource *alloc;
    void (*on_result)(void *user, void *result);
    void (*on_error)(void *user, int err);
    void *user;
    void *reserved[4];
} cor_launch_options;

typedef struct cor__launch {
    cor_executor ex;
    const cor_launch_options *opts;
    cor_memory_resource *mr;
    cor_execution_context *ctx; /* ex's context, NULL if it has none */
    cor__window prev;
    int err;
} cor__launch;

COR_API void cor__launch_begin(cor__launch *l, cor_executor ex, const cor_launch_options *opts);
COR_API int cor__launch_end(cor__launch *l, cor_frame *task);

/*
 * Launches task (an expression that calls a task function) on executor ex
 * with options opts (a const cor_launch_options *, or NULL). The task's frame
 * is allocated from the launch's allocator. The task is dispatched on ex: on
 * an executor that can run it inline here it runs until its first
 * suspension before this returns; otherwise it is queued. The launch counts
 * as outstanding work of ex until the task completes.
 *
 * Evaluates to 0 once launched; -EINVAL for an invalid executor; -ENOMEM if
 * the task's frame (or the launch's own record) could not be allocated. On
 * failure no handler runs and nothing is left allocated.
 */
#define COR_RUN_ASYNC(ex, opts, task)                                                              \
    __extension__({                                                                                \
        cor__launch cor__l;                                                                        \
        cor__launch_begin(&cor__l, (ex), (opts));                                                  \
        cor__launch_end(&cor__l, (cor_frame *)(task));                                             \
    })

/*
 * Options of COR_RUN. Zero members inherit the awaiting coroutine's:
 *  ex:    the executor the child runs on (the parent resumes on its own).
 *  stop:  pointer to the token the child sees; NULL inherits.
 *  alloc: the frame allocator of the child and its descendants.
 */
typedef struct cor_run_options {
    cor_executor ex;
    const cor_stop_token *stop;
    cor_memory_resource *alloc;
} cor_run_options;

COR_API cor__window cor__run_enter(const cor_run_options *o);
COR_API void cor__run_leave(const cor_run_options *o, cor__window prev, cor_frame *child);

/*
 * Inside a coroutine: COR_AWAIT(dst, COR_RUN(task, .ex = pool_ex)) runs the
 * child task with the named options (designated initializers of
 * cor_run_options) and resumes the caller on its own executor afterwards.
 * The child's frame is allocated from .alloc when given. An invalid .ex makes
 * the await fail with -EINVAL.
 */
#define COR_RUN(task, ...) COR__RUN(task, __COUNTER__, __VA_ARGS__)
#define COR__RUN(task, ctr, ...)                                                                   \
    __extension__({                                                                                \
        cor_run_options COR__CAT(cor__ro, ctr) = {__VA_ARGS__};                                    \
        cor__window COR__CAT(cor__rw, ctr) = cor__run_enter(&COR__CAT(cor__ro, ctr));              \
        __typeof__(task) COR__CAT(cor__rt, ctr) = (task);                                          \
        cor__run_leave(&COR__CAT(cor__ro, ctr), COR__CAT(cor__rw, ctr),                            \
                       (cor_frame *)COR__CAT(cor__rt, ctr));                                       \
        COR__CAT(cor__rt, ctr);                                                                    \
    })

COR_END_DECLS

#endif
