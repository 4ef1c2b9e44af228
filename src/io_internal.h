/* Internal entry points of the io_context shared with io_group.c; not installed. */
#ifndef CORING_SRC_IO_INTERNAL_H
#define CORING_SRC_IO_INTERNAL_H

#include "coring/io_context.h"

/*
 * On the owner thread, after run returned: cancels every operation in
 * flight, waits for their completions and destroys their frames and every
 * queued handle, so the context can later be destroyed from any thread.
 */
void cor__io_context_quiesce(cor_io_context *io);

#endif
