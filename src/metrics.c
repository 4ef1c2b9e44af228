/*
 * Metrics of an io_context (metrics.h): the snapshot, the busy clock of the
 * run loop and the stall detector.
 *
 * The busy clock. A pass of the run loop (io_context.c, loop) runs queued
 * handles, delivers completions and fires timers, then calls the backend's
 * run, which may block in the kernel and then delivers completions (their
 * handlers run inside it). A pass's busy time is its length less that wait:
 * the time before the wait is put aside (cor__io_metrics_before_wait) and
 * the clock restarts when the backend says it is back (cor__io_woke). One
 * clock read per pass that does not block, and one more when it blocks
 * (which costs a system call anyway) after running something first: a pass
 * that ran nothing before it may wait (a coroutine resumed by the previous
 * pass's completions awaited again) takes its start as the wait's, so an
 * epoll pass that finds completions ready and does not block reads the
 * clock once. Its loop bookkeeping before the wait then counts as idle
 * when the backend does block: well under a microsecond.
 */
#include <string.h>

#include "coring/metrics.h"
#include "coring/timer.h"
#include "internal.h"
#include "io_internal.h"

static uint64_t load(const uint64_t *p)
{
    return __atomic_load_n(p, __ATOMIC_RELAXED);
}

static void set(uint64_t *p, uint64_t v)
{
    __atomic_store_n(p, v, __ATOMIC_RELAXED);
}

int cor_io_context_metrics(cor_io_context *io, cor_io_metrics *out)
{
    if (!io || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    /* Completed before started (an acquire, paired with the owner's release of each
     * completion): a snapshot never shows more completed than started, on any CPU. */
    out->ops_completed = __atomic_load_n(&io->stats.completed, __ATOMIC_ACQUIRE);
    out->ops_started = load(&io->stats.started);
    out->ops_in_flight = out->ops_started - out->ops_completed;
    out->ops_submitted = load(&io->stats.submitted);
    const cor__backend_stats *bs = io->be_ops->stats(io->be);
    out->sqes = load(&bs->sqes);
    out->enters = load(&bs->enters);
    out->cq_overflows = load(&bs->overflows);
    out->buffer_waits = load(&bs->buffer_waits);
    out->cq_entries = load(&bs->cq_entries);
    out->cq_grows = load(&bs->cq_grows);
    out->wakeups_sent = load(&io->stats.wakeups_sent);
    out->wakeups_received = load(&io->stats.wakeups_received);
    out->posts_local = load(&io->stats.posts_local);
    out->posts_remote = load(&io->stats.posts_remote);
    out->timers = load(&io->stats.timers);
    out->iterations = load(&io->stats.iterations);
    out->longest_ns = load(&io->stats.longest_ns);
    out->stalls = load(&io->stats.stalls);
    int64_t since = __atomic_load_n(&io->stats.busy_since, __ATOMIC_RELAXED);
    if (since) {
        int64_t busy = cor_clock_now() - since;
        out->busy_ns = busy > 0 ? (uint64_t)busy : 0;
    }
    return 0;
}

int cor_io_context_set_stall_threshold(cor_io_context *io, int64_t ns)
{
    if (!io || ns < 0)
        return -EINVAL;
    __atomic_store_n(&io->stall_ns, ns, __ATOMIC_RELAXED);
    return 0;
}

static void busy_from(cor_io_context *io, int64_t now)
{
    io->iter_start = now;
    __atomic_store_n(&io->stats.busy_since, now, __ATOMIC_RELAXED);
}

void cor__io_metrics_begin(cor_io_context *io, int64_t now)
{
    io->busy_acc = 0;
    busy_from(io, now);
}

void cor__io_metrics_timers(cor_io_context *io)
{
    set(&io->stats.timers, io->wheel.count);
}

void cor__io_metrics_before_wait(cor_io_context *io, int64_t wait, bool ran)
{
    if (!wait)
        return;
    /* What this pass's handlers scheduled, visible while the loop blocks on it. */
    cor__io_metrics_timers(io);
    if (ran) {
        int64_t now = cor_clock_now();
        io->busy_acc += now - io->iter_start;
        /* If the backend does not wait after all, the time until the pass ends is busy. */
        io->iter_start = now;
    }
}

void cor__io_sleeps(void)
{
    __atomic_store_n(&cor__io_running->stats.busy_since, 0, __ATOMIC_RELAXED);
}

void cor__io_woke(void)
{
    cor_io_context *io = cor__io_running;
    cor__stat_add(io->stats.wakeups_received, 1);
    busy_from(io, cor_clock_now());
}

void cor__io_metrics_pass(cor_io_context *io)
{
    int64_t now = cor_clock_now();
    int64_t busy = io->busy_acc + (now - io->iter_start);
    io->busy_acc = 0;
    busy_from(io, now);
    cor__stat_add(io->stats.iterations, 1);
    cor__io_metrics_timers(io);
    if ((uint64_t)busy > load(&io->stats.longest_ns))
        set(&io->stats.longest_ns, (uint64_t)busy);
    int64_t limit = __atomic_load_n(&io->stall_ns, __ATOMIC_RELAXED);
    if (COR__UNLIKELY(limit && busy > limit)) {
        cor__stat_add(io->stats.stalls, 1);
        cor__log(COR_LOG_WARNING,
                 "io_context %p stalled: its run loop was busy for %.3f ms without returning "
                 "to the kernel (threshold %.3f ms): a handler blocked or ran too long",
                 (void *)io, (double)busy / 1e6, (double)limit / 1e6);
    }
}
