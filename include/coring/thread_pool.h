/*
 * The thread pool: N worker threads sharing one FIFO of handles, an executor
 * for blocking or CPU-bound work (name resolution, file work, hashing).
 * Inside a coroutine on another executor,
 *
 *     COR_AWAIT(rc, COR_RUN(resolve(host), .ex = cor_thread_pool_executor(pool)));
 *
 * runs the child on a worker and resumes the caller on its own executor.
 *
 * Workers run until the pool is stopped (cor_thread_pool_stop: they finish
 * the handle in hand and exit; queued handles stay queued) or joined
 * (cor_thread_pool_join: they exit once the queue is empty and no work is
 * outstanding). Destroying the pool destroys every handle that never ran.
 */
#ifndef CORING_THREAD_POOL_H
#define CORING_THREAD_POOL_H

#include "coring/common.h"
#include "coring/executor.h"

COR_BEGIN_DECLS

typedef struct cor_thread_pool cor_thread_pool;

/* The most workers a pool may have. */
#define COR_THREAD_POOL_MAX_THREADS 1024

/*
 * Creates a pool of threads workers (0: one per online CPU) in *out and
 * starts them. Returns 0; -EINVAL for NULL out or more than
 * COR_THREAD_POOL_MAX_THREADS; -ENOMEM; or the -errno of a failed
 * pthread_create (workers already started are stopped and joined; nothing is
 * left allocated). Any thread.
 */
COR_API int cor_thread_pool_create(cor_thread_pool **out, unsigned threads);

/*
 * Returns the executor of p ({NULL, NULL} for NULL). dispatch runs the handle
 * inline when called on one of p's workers, else queues it; post always
 * queues. Both are thread-safe. Handles posted after stop stay queued until
 * destroy destroys them.
 */
COR_API cor_executor cor_thread_pool_executor(cor_thread_pool *p);

/* Returns the execution context of p, or NULL for NULL p. */
COR_API cor_execution_context *cor_thread_pool_context(cor_thread_pool *p);

/* Returns the number of workers of p (0 for NULL). */
COR_API unsigned cor_thread_pool_size(cor_thread_pool *p);

/* True if the calling thread is one of p's workers. Any thread. */
COR_API bool cor_thread_pool_running_in_this_thread(cor_thread_pool *p);

/*
 * Asks the workers to exit as soon as the handle each is running returns;
 * queued handles stay queued. Does not wait (join does). Returns 0, or
 * -EINVAL for NULL. Any thread, including a worker; idempotent.
 */
COR_API int cor_thread_pool_stop(cor_thread_pool *p);

/*
 * Waits until the workers have exited: they exit when the queue is empty
 * and no work is outstanding (launched tasks, hops away from the pool), or
 * at once after stop. Returns 0; -EINVAL for NULL; -EDEADLK when called on
 * one of p's workers. Idempotent; call from one thread at a time.
 */
COR_API int cor_thread_pool_join(cor_thread_pool *p);

/*
 * Stops and joins p if that was not done, destroys every handle still queued
 * (and the frames awaiting them, up to their launch; no handler runs) and
 * every task launched on p that waits on an async mutex, event, semaphore or
 * channel (off that wait list first), shuts down its context's services and
 * frees p. Returns 0; -EINVAL for NULL; -EDEADLK on one of p's workers (p is
 * then untouched). Frames suspended elsewhere that would resume on p must be
 * gone first.
 */
COR_API int cor_thread_pool_destroy(cor_thread_pool *p);

/* Returns the outstanding work count of p (0 for NULL). For tests and diagnostics. */
COR_API long cor_thread_pool_outstanding(cor_thread_pool *p);

COR_END_DECLS

#endif
