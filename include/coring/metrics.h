/*
 * Metrics of an io_context: what it did (operations, submissions, kernel
 * entries, wake-ups, posts) and how long its run loop stays busy between two
 * returns to the kernel, with a stall detector.
 *
 * The owner thread keeps the counters as it runs, as single-writer 64-bit
 * values stored with relaxed atomics (plain moves on x86: no locked
 * instruction on the hot path). Any thread may take a snapshot at any time
 * and never sees a torn value; the fields of one snapshot are read one
 * after the other, so they may be a few events apart. Counters only grow
 * (but the gauges in_flight, timers and busy_ns): subtract two snapshots for
 * rates.
 *
 *     cor_io_metrics m;
 *     cor_io_context_metrics(io, &m);
 *     printf("%.2f SQEs per enter\n", m.enters ? (double)m.sqes / m.enters : 0.0);
 */
#ifndef CORING_METRICS_H
#define CORING_METRICS_H

#include "coring/common.h"
#include "coring/io_context.h"

COR_BEGIN_DECLS

/* A snapshot of an io_context's counters (cor_io_context_metrics). */
typedef struct cor_io_metrics {
    uint64_t ops_started;   /* operations that went in flight (to the backend or the timer wheel) */
    uint64_t ops_completed; /* of those, completed (any result)                                 */
    uint64_t ops_in_flight; /* gauge: started and not yet completed                             */
    uint64_t ops_submitted; /* handed to the backend (started, less sleeps and timer waits)     */
    uint64_t sqes;   /* io_uring: SQEs handed to the kernel; epoll: syscalls made for operations */
    uint64_t enters; /* io_uring_enter / epoll_wait calls; sqes / enters: batching           */
    uint64_t cq_overflows; /* times completions waited in the kernel's overflow list (io_uring) */
    uint64_t wakeups_sent; /* wake-ups sent to the owner by threads that posted or stopped   */
    uint64_t wakeups_received; /* times the owner blocked in the kernel and got up again         */
    uint64_t posts_local;      /* handles posted from inside the io_context's run                */
    uint64_t posts_remote;     /* handles posted from anywhere else (another thread, or the owner
                                  between runs): through the cross-thread queue                  */
    uint64_t timers; /* gauge: sleeps, timer waits, deadlines and task timeouts on the wheel   */
    uint64_t iterations;   /* run-loop iterations                                              */
    uint64_t longest_ns;   /* the longest iteration's busy time (the wait in the kernel excluded) */
    uint64_t stalls;       /* iterations busy for longer than the stall threshold               */
    uint64_t busy_ns;      /* gauge: how long the owner has been busy without returning to the
                              kernel (0 while it waits there or nobody runs io): a stall seen
                              from outside while it lasts                                     */
    uint64_t buffer_waits; /* multishot receives stopped because their buffer ring was empty
                              (-ENOBUFS; they go on when a buffer comes back): if it grows in
                              steady state, give the ring more buffers                        */
    uint64_t cq_entries; /* gauge: io_uring's completion queue size (0 on epoll)           */
    uint64_t cq_grows;   /* times that queue doubled after an overflow (COR_IO_CQ_GROW)      */
    uint64_t reserved[13]; /* zero                                                            */
} cor_io_metrics;

/*
 * Stores a snapshot of io's counters in *out. Returns 0, or -EINVAL for a
 * NULL argument. Any thread, at any time (also while io runs).
 */
COR_API int cor_io_context_metrics(cor_io_context *io, cor_io_metrics *out);

/*
 * Sets io's stall threshold: a run-loop iteration busy for longer than ns
 * nanoseconds (a handler that blocks or computes too long holds up every
 * coroutine of io) counts in `stalls` and is logged once, through the log
 * hook (log.h), when the iteration ends. 0 (the default) turns detection
 * off. Returns 0, or -EINVAL for NULL io or ns < 0. Any thread.
 */
COR_API int cor_io_context_set_stall_threshold(cor_io_context *io, int64_t ns);

COR_END_DECLS

#endif
