/*
 * A group of io_contexts, one per thread, each thread pinned to a core: the
 * many-cores setup. Work moves between them by posting handles.
 *
 *     cor_io_group *g;
 *     cor_io_group_create(&g, 0, NULL);            one per online CPU
 *     COR_RUN_ASYNC(cor_io_group_executor(g, 1), NULL, task());
 *     ...
 *     cor_io_group_destroy(g);                      stop, join, free
 */
#ifndef CORING_IO_GROUP_H
#define CORING_IO_GROUP_H

#include "coring/common.h"
#include "coring/executor.h"
#include "coring/io_context.h"

COR_BEGIN_DECLS

typedef struct cor_io_group cor_io_group;

/*
 * Options of cor_io_group_create. Zero means the default:
 *  no_pin:  do not pin thread i to CPU i modulo the CPUs online.
 *  context: options of every io_context (NULL: defaults).
 */
typedef struct cor_io_group_options {
    bool no_pin;
    const cor_io_context_options *context;
    void *reserved[4];
} cor_io_group_options;

/*
 * Creates n io_contexts (0: one per online CPU, at most 1024) and starts one
 * thread running each; every context holds a work guard, so its run lasts
 * until cor_io_group_stop or cor_io_group_join. Returns 0; -EINVAL for NULL
 * out or n > 1024; or the error of the context or thread that failed
 * (everything created is then torn down again). Any thread.
 */
COR_API int cor_io_group_create(cor_io_group **out, unsigned n, const cor_io_group_options *o);

/* The number of contexts (0 for NULL). */
COR_API unsigned cor_io_group_size(cor_io_group *g);

/* Context i, or NULL for NULL g or i out of range. Valid until cor_io_group_destroy. */
COR_API cor_io_context *cor_io_group_context(cor_io_group *g, unsigned i);

/* The executor of context i ({NULL, NULL} for bad arguments). */
COR_API cor_executor cor_io_group_executor(cor_io_group *g, unsigned i);

/*
 * Posts h to context i. Returns 0; -EINVAL for NULL g or h or i out of
 * range; -ESHUTDOWN after stop or join began. Any thread.
 */
COR_API int cor_io_group_post(cor_io_group *g, unsigned i, cor_handle h);

/*
 * Graceful shutdown: waits until the whole group has run out of work (a
 * coroutine may move from one context to another with run(), so a context
 * with nothing to do keeps running while another has work: join polls every
 * millisecond until all of them were idle twice in a row), then drops the
 * work guards and joins the threads. A coroutine that never finishes keeps
 * it waiting. Returns 0 (also if already stopped or joined) or -EINVAL. Not
 * from one of the group's threads.
 */
COR_API int cor_io_group_join(cor_io_group *g);

/*
 * Abrupt shutdown: stops every context and joins the threads. Each thread,
 * before it exits, cancels the operations still in flight on its ring and
 * destroys their frames and its queued handles. Returns 0 or -EINVAL. Not
 * from one of the group's threads.
 */
COR_API int cor_io_group_stop(cor_io_group *g);

/*
 * Stops (if needed), joins and frees everything: every context's remaining
 * frames are destroyed before any context is freed (a frame on one may
 * await a child on another). NULL is a no-op. Not from one of the group's
 * threads.
 */
COR_API void cor_io_group_destroy(cor_io_group *g);

COR_END_DECLS

#endif
