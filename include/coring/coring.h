/* coring: the umbrella header. Include this, or the one-concept headers it lists. */
#ifndef CORING_CORING_H
#define CORING_CORING_H

#include "coring/common.h"
#include "coring/version.h"
#include "coring/log.h"
#include "coring/alloc.h"
#include "coring/stop.h"
#include "coring/executor.h"
#include "coring/context.h"
#include "coring/task.h"
#include "coring/launch.h"
#include "coring/compose.h"
#include "coring/manual.h"
#include "coring/strand.h"
#include "coring/thread_pool.h"
#include "coring/sync.h"
#include "coring/channel.h"
#include "coring/io_context.h"
#include "coring/metrics.h"
#include "coring/io_op.h"
#include "coring/io_files.h"
#include "coring/timer.h"
#include "coring/io_group.h"
#include "coring/net.h"
#include "coring/reader.h"
#include "coring/stream.h"
#include "coring/file.h"
#include "coring/resolve.h"
#include "coring/serve.h"
#include "coring/signals.h"

#endif
