/*
 * The io_context: its executor and queues, cross-thread posting and
 * wake-ups, the run loop, creation and teardown. Operations are in
 * io_op.c, timers in timer.c and wheel.c, registered files in io_files.c,
 * streams in stream.c; the kernel side is behind io_seam.h.
 *
 * Sleeping and wake-ups (a Dekker pair, both sides sequentially consistent):
 *   owner:  sleeping = 1; fence; check remote queue, stop flag, work;
 *           only then block in the backend.
 *   poster: push to the remote queue (or stop, or drop the last work);
 *           fence; if sleeping was 1, clear it and wake the owner.
 * Either the owner sees the new item or the poster sees the flag. A pop
 * that reports BUSY (a producer between its two steps) counts as "not
 * empty": the owner does not block while it lasts.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coring/timer.h"
#include "internal.h"
#include "io_internal.h"

COR_THREAD_LOCAL cor_io_context *cor__io_running;
uint32_t cor__fork_gen;

/* ---- queues ------------------------------------------------------------------------- */

static void local_push(cor_io_context *io, cor_frame *h)
{
    cor__fifo_push(&io->local, h);
    io->queued++;
}

static cor_frame *local_pop(cor_io_context *io)
{
    cor_frame *h = cor__fifo_pop(&io->local);
    if (h)
        io->queued--;
    return h;
}

/*
 * Another thread's touch of io. Once a post lands or the last work is
 * finished, the owner may return from run and destroy io while the toucher
 * still has to read `sleeping` and wake it. So a toucher raises `touching`
 * before the act that can let the owner finish and drops it as its last
 * access to io (a release, like a reference count); destroy waits for zero.
 */
static void touch_begin(cor_io_context *io)
{
    __atomic_fetch_add(&io->touching, 1, __ATOMIC_SEQ_CST);
}

static void touch_end(cor_io_context *io)
{
    __atomic_fetch_sub(&io->touching, 1, __ATOMIC_RELEASE);
}

static void wake_if_sleeping(cor_io_context *io)
{
    /* A forked child's copy of the flag says nothing about the parent: never wake it from here. */
    if (cor__io_forked(io))
        return;
    if (!__atomic_load_n(&io->sleeping, __ATOMIC_SEQ_CST) ||
        !__atomic_exchange_n(&io->sleeping, 0, __ATOMIC_SEQ_CST))
        return;
    __atomic_fetch_add(&io->stats.wakeups_sent, 1, __ATOMIC_RELAXED);
    cor_io_context *cur = cor__io_running;
    io->be_ops->wake(io->be, cur && cur != io && cur->be_ops == io->be_ops ? cur->be : NULL);
}

/* Posts h from another thread; end_work: and ends a unit of work, in the same touch. */
static void post_remote(cor_io_context *io, cor_frame *h, bool end_work)
{
    touch_begin(io);
    __atomic_fetch_add(&io->stats.posts_remote, 1, __ATOMIC_RELAXED);
    cor__mpsc_push(&io->remote, h);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (end_work)
        __atomic_sub_fetch(&io->work, 1, __ATOMIC_SEQ_CST);
    wake_if_sleeping(io);
    touch_end(io);
}

void cor__io_post_remote(cor_io_context *io, cor_frame *h)
{
    post_remote(io, h, false);
}

/* Moves what other threads posted into the local FIFO. Returns true if a producer is mid-push. */
static bool drain_remote(cor_io_context *io)
{
    for (;;) {
        cor_frame *h;
        int r = cor__mpsc_pop(&io->remote, &h);
        if (r != COR__MPSC_ITEM)
            return r == COR__MPSC_BUSY;
        local_push(io, h);
    }
}

/* ---- executor ----------------------------------------------------------------------- */

static void io_post(const void *obj, cor_handle h)
{
    cor_io_context *io = (cor_io_context *)obj;
    if (cor__io_running == io) {
        cor__stat_add(io->stats.posts_local, 1);
        local_push(io, h);
    } else {
        cor__io_post_remote(io, h);
    }
}

static cor_handle io_dispatch(const void *obj, cor_handle h)
{
    if (cor__tls.running == obj)
        return h;
    io_post(obj, h);
    return COR_NOOP;
}

/*
 * A child that run() sent to another executor returns to c, its awaiter on
 * io: the dispatch of c and the end of the work the hop started. From
 * another thread both are one touch (destroy, once it has destroyed c,
 * waits for this thread's last access).
 */
cor_handle cor__io_return(cor_io_context *io, cor_frame *c)
{
    if (cor__io_running != io) {
        post_remote(io, c, true);
        return COR_NOOP;
    }
    cor_handle h = io_dispatch(io, c);
    __atomic_sub_fetch(&io->work, 1, __ATOMIC_SEQ_CST);
    return h;
}

static cor_execution_context *io_context_of(const void *obj)
{
    return &((cor_io_context *)obj)->ctx;
}

static void io_work_started(const void *obj)
{
    cor_io_context *io = (cor_io_context *)obj;
    __atomic_fetch_add(&io->work, 1, __ATOMIC_RELAXED);
}

static void io_work_finished(const void *obj)
{
    cor_io_context *io = (cor_io_context *)obj;
    if (cor__io_running == io) {
        __atomic_sub_fetch(&io->work, 1, __ATOMIC_SEQ_CST);
        return;
    }
    touch_begin(io);
    if (__atomic_sub_fetch(&io->work, 1, __ATOMIC_SEQ_CST) == 0)
        wake_if_sleeping(io);
    touch_end(io);
}

const cor_executor_ops cor__io_executor_ops = {
    .dispatch = io_dispatch,
    .post = io_post,
    .context = io_context_of,
    .on_work_started = io_work_started,
    .on_work_finished = io_work_finished,
};

/* ---- creation and options ------------------------------------------------------------ */

static unsigned default_flags(void)
{
    unsigned f = COR_IO_COOP_TASKRUN | COR_IO_TASKRUN_FLAG;
#if COR_RING_DEFER_TASKRUN
    f |= COR_IO_SINGLE_ISSUER | COR_IO_DEFER_TASKRUN;
#endif
#if COR_RING_SQPOLL
    f |= COR_IO_SQPOLL;
#endif
    return f;
}

/*
 * Checks o and resolves it against the build defaults into cfg and
 * *backend (COR_IO_BACKEND_URING or _EPOLL). *may_fall_back: the caller
 * left the backend to the library, so a refused io_uring means epoll.
 */
static int resolve_options(const cor_io_context_options *o, cor__backend_config *cfg,
                           int *backend, bool *may_fall_back)
{
    cor_io_context_options d;
    memset(&d, 0, sizeof d);
    if (o)
        d = *o;
    unsigned sq = d.sq_entries ? d.sq_entries : COR_RING_SQ_ENTRIES;
    if (sq < COR_RING_SQ_MIN || sq > COR_RING_SQ_MAX)
        return -EINVAL;
    unsigned cq = d.cq_entries;
    if (!cq)
        cq = COR_RING_CQ_ENTRIES >= sq           ? COR_RING_CQ_ENTRIES
             : 16 * sq <= (unsigned)COR_RING_CQ_MAX ? 16 * sq
                                                  : (unsigned)COR_RING_CQ_MAX;
    if (cq < sq || cq > COR_RING_CQ_MAX)
        return -EINVAL;
    const unsigned known = COR_IO_SINGLE_ISSUER | COR_IO_DEFER_TASKRUN | COR_IO_COOP_TASKRUN |
                           COR_IO_TASKRUN_FLAG | COR_IO_SQPOLL | COR_IO_NO_DEFAULT_FLAGS |
                           COR_IO_WAKE_EVENTFD;
    if (d.flags & ~known)
        return -EINVAL;
    /* A kernel thread polling the SQ excludes deferred task work (the kernel says so too). */
    if ((d.flags & COR_IO_SQPOLL) && (d.flags & COR_IO_DEFER_TASKRUN))
        return -EINVAL;
    for (size_t i = 0; i < sizeof d.reserved / sizeof d.reserved[0]; i++)
        if (d.reserved[i])
            return -EINVAL;
    unsigned flags = d.flags & ~COR_IO_NO_DEFAULT_FLAGS;
    if (!(d.flags & COR_IO_NO_DEFAULT_FLAGS))
        flags |= default_flags();
    *backend = d.backend == COR_IO_BACKEND_DEFAULT ? COR_IO_BACKEND_BUILD_DEFAULT : d.backend;
    if (*backend != COR_IO_BACKEND_URING && *backend != COR_IO_BACKEND_EPOLL)
        return -EINVAL;
    /* Ring flags mean nothing to epoll; a deliberate SQPOLL is refused, not dropped. */
    if (*backend == COR_IO_BACKEND_EPOLL && (d.flags & COR_IO_SQPOLL))
        return -EINVAL;
    /* SQPOLL asked for by name is a deliberate choice: its -EPERM is the caller's to see. */
    *may_fall_back = d.backend == COR_IO_BACKEND_DEFAULT && !(d.flags & COR_IO_SQPOLL);
    cfg->sq_entries = sq;
    cfg->cq_entries = cq;
    cfg->flags = flags;
    cfg->sqpoll_idle_ms = d.sqpoll_idle_ms;
    if (d.send_zc_threshold < -1)
        return -EINVAL;
    cfg->send_zc_min = d.send_zc_threshold == -1 ? 0
                       : d.send_zc_threshold   ? (unsigned)d.send_zc_threshold
                                               : (unsigned)COR_SEND_ZC_THRESHOLD;
    return 0;
}

static const cor__backend_ops *backend_ops(int backend)
{
    return backend == COR_IO_BACKEND_EPOLL ? &cor__epoll_backend : &cor__uring_backend;
}

/* The kernel refuses io_uring (a seccomp profile, io_uring_disabled) or lacks what we need. */
static bool uring_refused(int rc)
{
    return rc == -EPERM || rc == -EACCES || rc == -ENOSYS;
}

/* Says once per process that default-backend contexts run on epoll, and why. */
static void say_fallback(const char *why)
{
    static uint32_t said;
    if (!__atomic_exchange_n(&said, 1, __ATOMIC_RELAXED))
        cor__log(COR_LOG_WARNING,
                 "io_uring is not available, io_contexts with the default backend run on epoll: %s",
                 why);
}

/* Creates io's backend; a refused io_uring falls back to epoll when may_fall_back. */
static int backend_create(cor_io_context *io, cor__backend_config *cfg, int backend,
                          bool may_fall_back)
{
    cfg->why = io->fallback_why;
    cfg->why_len = sizeof io->fallback_why;
    int rc = backend_ops(backend)->create(&io->be, cfg);
    if (rc && backend == COR_IO_BACKEND_URING && may_fall_back && uring_refused(rc)) {
        io->fallback_err = rc;
        if (!io->fallback_why[0])
            snprintf(io->fallback_why, sizeof io->fallback_why, "%s", cor_strerror(rc));
        cfg->why = NULL;
        cfg->why_len = 0;
        backend = COR_IO_BACKEND_EPOLL;
        rc = cor__epoll_backend.create(&io->be, cfg);
        if (!rc)
            say_fallback(io->fallback_why);
    }
    if (rc)
        return rc;
    if (!io->fallback_err)
        io->fallback_why[0] = 0;
    io->backend = backend;
    io->be_ops = backend_ops(backend);
    return 0;
}

static void fork_child(void)
{
    __atomic_fetch_add(&cor__fork_gen, 1, __ATOMIC_RELAXED);
}

static void fork_watch(void)
{
    pthread_atfork(NULL, NULL, fork_child);
}

int cor_io_context_create(cor_io_context **out, const cor_io_context_options *o)
{
    if (!out)
        return -EINVAL;
    cor__backend_config cfg;
    int backend;
    bool may_fall_back;
    int rc = resolve_options(o, &cfg, &backend, &may_fall_back);
    if (rc)
        return rc;
    static pthread_once_t once = PTHREAD_ONCE_INIT;
    pthread_once(&once, fork_watch);

    cor_io_context *io = calloc(1, sizeof *io);
    if (!io)
        return -ENOMEM;
    rc = cor_execution_context_init(&io->ctx);
    if (rc)
        goto fail_ctx;
    cor__mpsc_init(&io->remote);
    cor__wheel_init(&io->wheel, cor_clock_now());
    io->requested = cfg.flags & ~COR_IO_WAKE_EVENTFD;
    io->fork_gen = __atomic_load_n(&cor__fork_gen, __ATOMIC_RELAXED);
    rc = backend_create(io, &cfg, backend, may_fall_back);
    if (rc)
        goto fail_be;
    *out = io;
    return 0;
fail_be:
    cor_execution_context_destroy(&io->ctx);
fail_ctx:
    free(io);
    return rc;
}

/* ---- the run loop -------------------------------------------------------------------- */

static bool no_work(cor_io_context *io)
{
    return io->inflight == 0 && io->queued == 0 && io->timeouts == 0 && !io->done_head &&
           __atomic_load_n(&io->work, __ATOMIC_SEQ_CST) == 0 && cor__mpsc_empty(&io->remote);
}

static bool is_stopped(cor_io_context *io)
{
    return __atomic_load_n(&io->stopped, __ATOMIC_RELAXED);
}

/* The thread may drive io: bound to it, or not bound at all (or not SINGLE_ISSUER). */
static bool may_drive(cor_io_context *io)
{
    bool single = io->be_ops->features(io->be) & COR_IO_SINGLE_ISSUER;
    return !io->bound || !single || pthread_equal(io->owner, pthread_self());
}

/* Runs the handles queued at the start of the round (not those they queue); counts them in *n. */
static long run_round(cor_io_context *io, long *n, long max)
{
    long progress = 0;
    for (long round = io->queued; round > 0 && *n < max; round--) {
        cor_frame *h = local_pop(io);
        /* A stop link's cancel request is bookkeeping, not a handler. */
        if (!cor__io_is_link_request(h))
            ++*n;
        progress++;
        cor_resume(h);
        if (is_stopped(io))
            break;
    }
    return progress;
}

/* What the owner spins for: a post from another thread, a stop, or the last work gone. */
static bool post_arrived(void *arg)
{
    cor_io_context *io = arg;
    return !cor__mpsc_empty(&io->remote) || is_stopped(io) ||
           __atomic_load_n(&io->work, __ATOMIC_RELAXED) == 0;
}

/*
 * Before blocking for wait ns (-1: no limit) with nothing in flight, only
 * another thread can bring work (a coroutine coming back from a hop, a leaf
 * completed elsewhere, a stop): watch for it in user space for a bounded
 * time (COR__SPIN_NS, skipped after spins that found nothing: cor__spinner)
 * instead of making both sides pay a wake-up. Not with operations in flight
 * (the kernel completes those, and a spin would delay them), nor with no
 * work held elsewhere. True if something came.
 */
static bool spin_for_post(cor_io_context *io, int64_t wait)
{
    if (io->inflight || (wait >= 0 && wait < COR__SPIN_NS) ||
        __atomic_load_n(&io->work, __ATOMIC_RELAXED) == 0)
        return false;
    return cor__spin_try(&io->spin, post_arrived, io);
}

/*
 * How long the owner may block (ns; -1: no limit), or 0 to go on without
 * blocking. Sets the sleeping flag when it returns a wait; returns -2 when
 * the loop should end (no work left, or the run_for deadline passed).
 */
static int64_t wait_time(cor_io_context *io, int64_t deadline, int64_t tnext, int64_t now)
{
    if (no_work(io))
        return -2;
    int64_t wait = -1;
    if (deadline >= 0 || tnext != INT64_MAX) {
        if (!now)
            now = cor_clock_now();
        if (deadline >= 0) {
            wait = deadline - now;
            if (wait <= 0)
                return -2;
        }
        if (tnext != INT64_MAX) {
            int64_t tw = tnext - now;
            if (tw <= 0)
                return 0;
            if (wait < 0 || tw < wait)
                wait = tw;
        }
    }
    if (spin_for_post(io, wait))
        return 0;
    /* The fence orders the flag before the checks (one barrier, not a locked store and a fence). */
    __atomic_store_n(&io->sleeping, 1, __ATOMIC_RELAXED);
    __atomic_thread_fence(__ATOMIC_SEQ_CST);
    if (!cor__mpsc_empty(&io->remote) || is_stopped(io) || no_work(io)) {
        __atomic_store_n(&io->sleeping, 0, __ATOMIC_RELAXED);
        return 0;
    }
    return wait;
}

static long loop(cor_io_context *io, long max, int64_t timeout_ns, bool block)
{
    int64_t deadline = timeout_ns >= 0 ? cor__time_after(timeout_ns) : -1;
    long n = 0;
    while (n < max && !is_stopped(io)) {
        long progress = run_round(io, &n, max);
        if (n >= max || is_stopped(io))
            break;
        if (io->done_head) {
            long k = cor__io_deliver_done(io, max - n);
            n += k;
            progress += k;
            if (n >= max || is_stopped(io))
                break;
        }
        int64_t now = 0, tnext = cor__wheel_next(&io->wheel);
        if (tnext != INT64_MAX) {
            now = cor_clock_now();
            if (now >= tnext) {
                progress += cor__io_expire_timers(io, now);
                tnext = cor__wheel_next(&io->wheel);
            }
        }
        bool busy = drain_remote(io);
        bool idle = io->queued == 0 && !busy && !io->done_head;
        int64_t wait = 0;
        if (idle && block) {
            wait = wait_time(io, deadline, tnext, now);
            if (wait == -2)
                break;
        }
        cor__io_metrics_before_wait(io, wait, progress != 0);
        long k = io->be_ops->run(io->be, wait, max - n);
        if (wait)
            __atomic_store_n(&io->sleeping, 0, __ATOMIC_RELAXED);
        cor__io_metrics_pass(io);
        if (k < 0)
            return k;
        /* A handler forked and this is the child: leave the parent's ring alone. */
        if (cor__io_forked(io))
            return -EPERM;
        n += k;
        progress += k;
        if (busy && !progress && io->queued == 0)
            sched_yield(); /* a producer is between its two steps */
        else if (!block && !progress && idle)
            break;
        if (deadline >= 0 && cor_clock_now() >= deadline)
            break;
    }
    return n;
}

/*
 * Takes io's running flag for this thread; false if another thread drives
 * io. A dump printing from another thread while nobody drove io holds it for
 * the print: wait for it.
 */
static bool take_running(cor_io_context *io)
{
    for (;;) {
        uint32_t was = 0;
        if (__atomic_compare_exchange_n(&io->running, &was, COR__IO_DRIVING, false,
                                        __ATOMIC_ACQUIRE, __ATOMIC_RELAXED))
            return true;
        if (was != COR__IO_PEEKING)
            return false;
        sched_yield();
    }
}

static long drive(cor_io_context *io, long max, int64_t timeout_ns, bool block)
{
    if (!io)
        return -EINVAL;
    if (cor__io_forked(io))
        return -EPERM;
    if (!take_running(io))
        return -EBUSY;
    long rc = 0;
    if (!may_drive(io)) {
        rc = -EPERM;
        goto out;
    }
    if (__atomic_load_n(&io->stopped, __ATOMIC_ACQUIRE)) {
        rc = -ECANCELED;
        goto out;
    }
    if (!io->bound) {
        rc = io->be_ops->bind(io->be);
        if (rc)
            goto out;
        io->bound = true;
    }
    io->owner = pthread_self();
    cor_io_context *prev_io = cor__io_running;
    const void *prev_running = cor__tls.running;
    cor__io_running = io;
    cor__tls.running = io;
    cor__io_metrics_begin(io, cor_clock_now());
    rc = loop(io, max, timeout_ns, block);
    /* A handler forked and this is the child, whichever way the loop ended. */
    if (cor__io_forked(io))
        rc = -EPERM;
    /* Deadlines the last pass started count from now, not from the next run's first pass. */
    if (io->wheel.after)
        cor__wheel_place(&io->wheel, cor_clock_now());
    cor__io_metrics_pass(io); /* the last pass, cut short */
    cor__io_metrics_begin(io, 0);
    cor__tls.running = prev_running;
    cor__io_running = prev_io;
out:
    __atomic_store_n(&io->running, 0, __ATOMIC_RELEASE);
    return rc;
}

long cor_io_context_run(cor_io_context *io)
{
    return drive(io, __LONG_MAX__, -1, true);
}

long cor_io_context_run_one(cor_io_context *io)
{
    return drive(io, 1, -1, true);
}

long cor_io_context_poll(cor_io_context *io)
{
    return drive(io, __LONG_MAX__, -1, false);
}

long cor_io_context_poll_one(cor_io_context *io)
{
    return drive(io, 1, -1, false);
}

long cor_io_context_run_for(cor_io_context *io, int64_t ns)
{
    if (!io || ns < 0)
        return -EINVAL;
    return drive(io, __LONG_MAX__, ns, true);
}

int cor_io_context_stop(cor_io_context *io)
{
    if (!io)
        return -EINVAL;
    if (cor__io_forked(io))
        return -EPERM;
    touch_begin(io);
    __atomic_store_n(&io->stopped, 1, __ATOMIC_SEQ_CST);
    wake_if_sleeping(io);
    touch_end(io);
    return 0;
}

int cor_io_context_restart(cor_io_context *io)
{
    if (!io)
        return -EINVAL;
    if (cor__io_forked(io))
        return -EPERM;
    if (__atomic_load_n(&io->running, __ATOMIC_ACQUIRE) == COR__IO_DRIVING)
        return -EBUSY;
    __atomic_store_n(&io->stopped, 0, __ATOMIC_SEQ_CST);
    return 0;
}

bool cor_io_context_stopped(cor_io_context *io)
{
    return io && __atomic_load_n(&io->stopped, __ATOMIC_ACQUIRE);
}

unsigned cor_io_context_features(cor_io_context *io)
{
    if (!io)
        return 0;
    return io->be_ops->features(io->be) | (io->fallback_err ? COR_IO_FALLBACK : 0u);
}

int cor_io_context_get_info(cor_io_context *io, cor_io_context_info *out)
{
    if (!io || !out)
        return -EINVAL;
    memset(out, 0, sizeof *out);
    out->backend = io->backend;
    out->features = cor_io_context_features(io);
    out->requested = io->requested;
    out->fallback_error = io->fallback_err;
    snprintf(out->fallback_reason, sizeof out->fallback_reason, "%s", io->fallback_why);
    return 0;
}

unsigned cor_io_context_requested(cor_io_context *io)
{
    return io ? io->requested : 0;
}

cor_io_context *cor_io_context_current(void)
{
    return cor__io_running;
}

cor_executor cor_io_context_executor(cor_io_context *io)
{
    if (!io)
        return COR_EXECUTOR_NULL;
    return (cor_executor){io, &cor__io_executor_ops};
}

cor_execution_context *cor_io_context_context(cor_io_context *io)
{
    return io ? &io->ctx : NULL;
}

/* ---- calls that belong to the driving thread ------------------------------------------ */

int cor__io_owner_enter(cor_io_context *io, bool *held)
{
    *held = false;
    if (cor__io_forked(io))
        return -EPERM;
    if (cor__io_running == io)
        return 0;
    if (!take_running(io))
        return -EPERM;
    if (!may_drive(io)) {
        __atomic_store_n(&io->running, 0, __ATOMIC_RELEASE);
        return -EPERM;
    }
    *held = true;
    return 0;
}

void cor__io_owner_leave(cor_io_context *io, bool held)
{
    if (held)
        __atomic_store_n(&io->running, 0, __ATOMIC_RELEASE);
}

/* ---- teardown ------------------------------------------------------------------------ */

/* Destroys a queued handle: a frame, a stop link's request or a dump request. */
static void destroy_queued(cor_frame *h)
{
    if (cor__io_is_link_request(h))
        cor__io_link_request_destroyed(h);
    else if (cor__io_is_dump_request(h))
        cor__io_dump_request_destroyed(h); /* it frees itself: not through cor_frame_destroy */
    else
        cor_frame_destroy(h);
}

/* On the owner: cancels what is in flight and collects every completion (frames are destroyed). */
static void drain_in_flight(cor_io_context *io)
{
    cor__io_cancel_all(io);
    while (io->inflight > 0) {
        cor__io_deliver_done(io, __LONG_MAX__);
        if (io->inflight > 0 && io->be_ops->run(io->be, -1, __LONG_MAX__) < 0)
            break;
    }
}

/*
 * Cancels every op in flight and waits for their completions, destroying
 * their frames (on the owner thread, or with no ring binding; else only what
 * the kernel already completed), then (waits) the tasks waiting on wait
 * lists, then every queued handle. waits only where no other thread destroys
 * frames meanwhile: a chain that crosses contexts is read from its root.
 */
static void quiesce(cor_io_context *io, bool waits)
{
    io->closing = true;
    cor_io_context *prev_io = cor__io_running;
    const void *prev_running = cor__tls.running;
    cor__io_running = io;
    cor__tls.running = io;
    if (io->inflight > 0 && io->bound) {
        if (may_drive(io)) {
            drain_in_flight(io);
        } else {
            /* The owner's exit canceled its requests: collect what is there. Sleeps and
             * timer waits live in the front end: they end here. */
            cor__io_cancel_front(io);
            io->be_ops->run(io->be, 0, __LONG_MAX__);
            cor__io_deliver_done(io, __LONG_MAX__);
        }
    }
    /* Tasks waiting on a mutex, an event, a semaphore or a channel would never run again. */
    if (waits)
        cor__roots_abandon_waits(&io->ctx);
    for (;;) {
        cor_frame *h;
        int r;
        while ((h = local_pop(io)))
            destroy_queued(h);
        while ((r = cor__mpsc_pop(&io->remote, &h)) == COR__MPSC_ITEM)
            destroy_queued(h);
        if (r == COR__MPSC_EMPTY && cor__fifo_empty(&io->local))
            break;
        if (r == COR__MPSC_BUSY)
            sched_yield();
    }
    cor__io_metrics_timers(io); /* the sleeps and timer waits it ended */
    cor__tls.running = prev_running;
    cor__io_running = prev_io;
}

void cor__io_context_quiesce(cor_io_context *io, bool waits)
{
    quiesce(io, waits);
    io->closing = false;
}

/*
 * Destroy in a forked child: the ring, the epoll set and the eventfd are
 * shared with the parent, so nothing is canceled, submitted or deregistered;
 * the child's copies of the descriptors and mappings are released and its
 * copy of the memory freed. Frames and services are abandoned.
 */
static void destroy_forked(cor_io_context *io)
{
    io->be_ops->destroy(io->be);
    cor__io_links_destroy(io, false);
    free(io);
}

void cor_io_context_destroy(cor_io_context *io)
{
    if (!io)
        return;
    if (cor__io_forked(io)) {
        destroy_forked(io);
        return;
    }
    quiesce(io, true);
    cor_execution_context_destroy(&io->ctx);
    /*
     * Services may have posted while shutting down, and a lookup's thread may
     * be posting a waiter it woke: it counts out only once its post has
     * landed, so a zero read before a quiesce is final.
     */
    for (;;) {
        uint32_t foreign = cor__ctx_foreign_wakes(&io->ctx);
        quiesce(io, true);
        if (!foreign)
            break;
        sched_yield();
    }
    if (io->inflight > 0)
        cor__log(COR_LOG_WARNING,
                 "io_context destroyed off its owner thread with %ld operations in flight; "
                 "their frames are abandoned",
                 io->inflight);
    /* Another thread may still be finishing a post, a stop or its last work. */
    while (__atomic_load_n(&io->touching, __ATOMIC_ACQUIRE))
        sched_yield();
    cor__io_links_destroy(io, true);
    cor__stream_handles_free(io);
    io->be_ops->destroy(io->be);
    free(io);
}
