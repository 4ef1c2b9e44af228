/*
 * The manual executor: a queue of handles that the caller drains with run,
 * run_one, poll or poll_one (the design's run_blocking). Posting is
 * thread-safe; one thread at a time drives it. Its context owns services.
 */
#ifndef CORING_MANUAL_H
#define CORING_MANUAL_H

#include "coring/common.h"
#include "coring/executor.h"

COR_BEGIN_DECLS

typedef struct cor_manual cor_manual;

/* Creates a manual executor in *out. Returns 0, -EINVAL for NULL out, or -ENOMEM. */
COR_API int cor_manual_create(cor_manual **out);

/*
 * Destroys m: destroys every frame still queued (and the frames awaiting
 * them, up to their launch) and every task launched on m that waits on an
 * async mutex, event, semaphore or channel (off that wait list first),
 * shuts down its services and frees it. Frames suspended elsewhere whose
 * continuation would post to m must be gone first. NULL is a no-op. Not
 * while a thread runs m.
 */
COR_API void cor_manual_destroy(cor_manual *m);

/* Returns the executor of m ({NULL, NULL} for NULL m). */
COR_API cor_executor cor_manual_executor(cor_manual *m);

/* Returns the execution context of m, or NULL for NULL m. */
COR_API cor_execution_context *cor_manual_context(cor_manual *m);

/*
 * Runs queued handles until no work is left: the queue is empty and no
 * outstanding work (launched tasks, hops to other executors) remains. Blocks
 * while work is outstanding and the queue is empty. Returns the number of
 * handles run, -EINVAL for NULL, or -EBUSY if a thread already runs m.
 */
COR_API long cor_manual_run(cor_manual *m);

/* Runs at most one handle, blocking for one while work is outstanding. Returns 1, 0 (no work), or
 * an error as run. */
COR_API long cor_manual_run_one(cor_manual *m);

/* Runs every handle ready now without blocking. Returns the count, or an error as run. */
COR_API long cor_manual_poll(cor_manual *m);

/* Runs at most one ready handle without blocking. Returns 1, 0, or an error as run. */
COR_API long cor_manual_poll_one(cor_manual *m);

/* Returns the number of outstanding work items of m (0 for NULL). For tests and diagnostics. */
COR_API long cor_manual_outstanding(cor_manual *m);

COR_END_DECLS

#endif
