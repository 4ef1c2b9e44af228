/*
 * Strands: an MPSC queue of handles plus an atomic count of handles queued or
 * running. The count is the whole state machine: the producer whose
 * increment takes it from 0 owns the job of scheduling the drainer, and the
 * drainer alone decrements it, by the number of handles it ran, re-posting
 * itself while it stays nonzero. So at most one drainer exists at a time and
 * it is the queue's single consumer.
 *
 * The producer that makes the strand busy does not queue its handle: it
 * hands it to the drainer it schedules, in `first` (a plain field: the
 * inner executor's hand-off of the drainer orders it, and nothing else
 * touches it until the drainer took it). An uncontended dispatch thus costs
 * the two atomic operations on the count and no queue traffic; every
 * handle counted before it has run (the count was 0), so FIFO order per
 * posting thread holds. Over an io_context, a dispatch from the thread
 * running it needs no atomic at all while the strand is idle (strand_dispatch).
 *
 * Biased ownership (over executors that run a dispatch inline, any thread):
 * while the count holds BIAS (and the bias's epoch) and no handle, the
 * strand is idle and its owner thread may run a handle with no atomic: it
 * stores owner_in = 1, then reads the count; it goes ahead if the count
 * still holds no handle, and after the handle stores owner_in = 0, then
 * reads the count again. Anyone else counts its handle in (the handle is
 * queued, never in `first`); the first to count into a bias (and the owner,
 * always) then ends it: a thread other than the owner calls
 * membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED) first, then reads owner_in.
 * The system call runs a full barrier on every thread of the process that
 * is running, so of the owner's store-then-read and the other thread's
 * count-then-read at least one sees the other's write (Dekker's argument,
 * with the owner's fence paid by the system call): if owner_in reads 1, the
 * owner's next read of the count sees the handle and the owner ends the
 * bias; if it reads 0, the owner is out and stays out. Whoever clears BIAS
 * (a CAS, so one of them) schedules the drainer for the counted handles, and
 * the strand is an ordinary one again. The CAS expects the epoch the thread
 * counted in: a membarrier call can take milliseconds, and by then the owner
 * may have ended that bias, drained the handle and biased the strand again;
 * ending the new bias on the old reading would schedule a drainer for nothing
 * beside the owner's own run. Only a drainer on the owner's thread biases the
 * strand again (count n -> BIAS and the next epoch, a CAS), after a streak of
 * drains started by the owner's inline dispatches; owner is set once, so a
 * thread that read it stale never thinks itself the owner of a strand biased
 * to another.
 */
#include <linux/membarrier.h>
#include <pthread.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "coring/dump.h"
#include "coring/strand.h"
#include "internal.h"
#include "mpsc.h"

_Static_assert(sizeof(cor__mpsc) <= sizeof(((cor_strand *)0)->queue),
               "cor_strand.queue must hold the MPSC queue");
_Static_assert(_Alignof(cor__mpsc) <= _Alignof(void *), "cor_strand.queue alignment");

/*
 * Handles one drainer runs before it yields the inner executor to others. A
 * testing build keeps it tiny so the re-post path runs in every test.
 */
#if COR_TESTING
#define STRAND_BATCH 4
#else
#define STRAND_BATCH 64
#endif

/*
 * Biased ownership: the count's top bit, the streak of owner-started drains
 * that biases a strand (doubled by each end of a bias; a testing build
 * biases at once, so the tests cross the hand-over constantly), and the ends
 * after which a strand stays unbiased (each costs another thread one
 * membarrier call: 2-50 us here, milliseconds when the owner's CPU is
 * descheduled on a busy virtual machine).
 */
#define BIAS (UINT64_C(1) << 63)
/*
 * A biased count also carries the bias's epoch (15 bits under BIAS; the
 * handles counted are the low 48 bits), so a thread that counted a handle in
 * one bias never ends a later one: by then its handle ran.
 */
#define EPOCH_SHIFT 48
#define EPOCH_MASK (UINT64_C(0x7fff) << EPOCH_SHIFT)
#define COUNT_MASK ((UINT64_C(1) << EPOCH_SHIFT) - 1)
#define STRAND_BIAS (!COR__TSAN)
#if COR_TESTING
#define BIAS_STREAK 1u
#define BIAS_MAX_REVOKES 256u
#else
#define BIAS_STREAK 64u
#define BIAS_MAX_REVOKES 8u
#endif

/* A token for the calling thread (the address of its own thread-local byte). */
static COR_THREAD_LOCAL char self_token;

static uintptr_t self(void)
{
    return (uintptr_t)&self_token;
}

/*
 * The thread runs strand s from here until strand_leave: not its inner
 * executor, so the inner executor's dispatch (and every other's) queues
 * instead of running inline. So a coroutine that run() sent into the strand
 * resumes its caller on the caller's executor after the strand's handle,
 * never nested inside it holding the strand.
 */
static void strand_enter(cor_strand *s)
{
    /* Other threads only compare it with their own token: relaxed. */
    __atomic_store_n(&s->running_in, self(), __ATOMIC_RELAXED);
    s->prev_running = cor__tls.running;
    cor__tls.running = s;
}

static void strand_leave(cor_strand *s)
{
    __atomic_store_n(&s->running_in, 0, __ATOMIC_RELAXED);
    cor__tls.running = s->prev_running;
}

static cor__mpsc *queue_of(cor_strand *s)
{
    return (cor__mpsc *)(void *)s->queue.bytes;
}

/* A dispatch to the inner executor from here would run the handle inline. */
static bool runs_inline(const cor_strand *s)
{
    return s->inner.ops == &cor__inline_executor_ops || cor__tls.running == s->inner.obj;
}

/* A biased strand with nothing counted: its owner may run a handle without atomics. */
static bool biased_idle(uint64_t pending)
{
    return (pending & (BIAS | COUNT_MASK)) == BIAS;
}

#if STRAND_BIAS
static bool membarrier_ready;
static pthread_once_t membarrier_once = PTHREAD_ONCE_INIT;

static void membarrier_register(void)
{
    long cmds = syscall(SYS_membarrier, MEMBARRIER_CMD_QUERY, 0, 0);
    membarrier_ready = cmds > 0 && (cmds & MEMBARRIER_CMD_PRIVATE_EXPEDITED) &&
                       syscall(SYS_membarrier, MEMBARRIER_CMD_REGISTER_PRIVATE_EXPEDITED, 0, 0) == 0;
}

/* This process may call membarrier(MEMBARRIER_CMD_PRIVATE_EXPEDITED). */
static bool can_bias(void)
{
    pthread_once(&membarrier_once, membarrier_register);
    return membarrier_ready;
}

/*
 * A full barrier on every running thread of the process. Registered (a
 * strand is biased only after can_bias), so the call cannot fail.
 */
static void barrier_everywhere(void)
{
    long r = syscall(SYS_membarrier, MEMBARRIER_CMD_PRIVATE_EXPEDITED, 0, 0);
    assert(r == 0);
    (void)r;
}

/* Drains in a row the owner must start before its strand is biased (again). */
static uint32_t streak_needed(const cor_strand *s)
{
    return COR_TESTING ? BIAS_STREAK : BIAS_STREAK << s->revokes;
}

/*
 * The drainer, holding the strand with n handles counted (all run), on a
 * thread that dispatched to the idle strand to start it: counts the streak
 * and, once it is long enough, biases the strand to this thread (true: the
 * strand is idle and biased; false: the caller gives the count back).
 */
static bool bias(cor_strand *s, uint64_t n)
{
    uintptr_t me = self();
    uintptr_t owner = __atomic_load_n(&s->owner, __ATOMIC_RELAXED);
    if (s->hint != me || (owner && owner != me) || s->revokes >= BIAS_MAX_REVOKES ||
        s->inner.ops == &cor__io_executor_ops) {
        s->streak = 0;
        return false;
    }
    if (++s->streak < streak_needed(s))
        return false;
    s->streak = 0;
    if (!can_bias()) {
        s->revokes = BIAS_MAX_REVOKES;
        return false;
    }
    if (!owner)
        __atomic_store_n(&s->owner, me, __ATOMIC_RELAXED);
    s->epoch++;
    uint64_t biased = BIAS | (((uint64_t)s->epoch << EPOCH_SHIFT) & EPOCH_MASK);
    return __atomic_compare_exchange_n(&s->pending, &n, biased, false, __ATOMIC_ACQ_REL,
                                       __ATOMIC_RELAXED);
}

/*
 * Clears BIAS if the count still holds the bias `seen` was read in (same
 * epoch) with handles counted: true for the one thread that does, which then
 * holds the strand for those handles.
 */
static bool unbias(cor_strand *s, uint64_t seen)
{
    uint64_t p = __atomic_load_n(&s->pending, __ATOMIC_ACQUIRE);
    while ((p & BIAS) && (p & EPOCH_MASK) == (seen & EPOCH_MASK) && (p & COUNT_MASK))
        if (__atomic_compare_exchange_n(&s->pending, &p, p & COUNT_MASK, false, __ATOMIC_ACQ_REL,
                                        __ATOMIC_ACQUIRE))
            return true;
    return false;
}

/*
 * Ends the bias in which this thread counted a handle in (`seen`: the count
 * it read then), from outside the strand. If the owner runs a handle of s,
 * its exit ends it; else whoever clears BIAS first schedules the drainer for
 * the handles counted meanwhile (dispatching: through the inner executor's
 * dispatch, whose handle is returned).
 */
static cor_handle end_bias(cor_strand *s, bool dispatching, uint64_t seen)
{
    if (__atomic_load_n(&s->owner, __ATOMIC_RELAXED) == self()) {
        if (__atomic_load_n(&s->owner_in, __ATOMIC_RELAXED))
            return COR_NOOP;
    } else {
        barrier_everywhere();
        if (__atomic_load_n(&s->owner_in, __ATOMIC_ACQUIRE))
            return COR_NOOP;
    }
    if (!unbias(s, seen))
        return COR_NOOP;
    /* This thread holds the strand now, for the handles counted meanwhile. */
    s->revokes++;
    s->streak = 0;
    s->hint = 0;
    if (dispatching)
        return s->inner.ops->dispatch(s->inner.obj, &s->drainer);
    s->inner.ops->post(s->inner.obj, &s->drainer);
    return COR_NOOP;
}

/*
 * The owner's dispatch to its idle biased strand, from where the inner
 * executor would run it inline: claims it with a plain store (owner_in,
 * then the count is read again). True: h is in `fast`, for the runner.
 */
static bool enter_biased(cor_strand *s, cor_handle h)
{
    if (__atomic_load_n(&s->owner, __ATOMIC_RELAXED) != self() ||
        __atomic_load_n(&s->owner_in, __ATOMIC_RELAXED) || !runs_inline(s))
        return false;
    __atomic_store_n(&s->owner_in, 1, __ATOMIC_RELAXED);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    if (!biased_idle(__atomic_load_n(&s->pending, __ATOMIC_ACQUIRE))) {
        __atomic_store_n(&s->owner_in, 0, __ATOMIC_RELEASE);
        return false;
    }
    s->fast = h;
    return true;
}

/*
 * The owner is done with the handle it ran biased: owner_in = 0, then the
 * count is read again; a handle counted in meanwhile ends the bias.
 */
static cor_handle leave_biased(cor_strand *s, bool dispatching)
{
    __atomic_store_n(&s->owner_in, 0, __ATOMIC_RELEASE);
    __atomic_signal_fence(__ATOMIC_SEQ_CST);
    uint64_t p = __atomic_load_n(&s->pending, __ATOMIC_ACQUIRE);
    if ((p & BIAS) && !biased_idle(p))
        return end_bias(s, dispatching, p);
    return COR_NOOP;
}
#else
static bool bias(cor_strand *s, uint64_t n)
{
    return false;
}

static cor_handle end_bias(cor_strand *s, bool dispatching, uint64_t seen)
{
    assert(!"a strand is never biased in this build");
    return COR_NOOP;
}

static bool enter_biased(cor_strand *s, cor_handle h)
{
    return false;
}

static cor_handle leave_biased(cor_strand *s, bool dispatching)
{
    return COR_NOOP;
}
#endif

enum { QUEUED, IDLE, QUEUED_BIASED };

/*
 * Counts h in. Returns IDLE if the strand was idle: h is then in `first`
 * and the caller must schedule the drainer. Otherwise h is queued; if it is
 * the first handle counted into a biased strand (QUEUED_BIASED) the caller
 * must end the bias (end_bias).
 * Counting before pushing keeps the count at or above the number of
 * handles the drainer can reach, so its decrement never underflows; a
 * handle counted but not yet linked only makes the drainer post itself
 * once more.
 */
static int enqueue(cor_strand *s, cor_handle h, uint64_t *seen)
{
    uint64_t old = __atomic_fetch_add(&s->pending, 1, __ATOMIC_ACQ_REL);
    *seen = old;
    if (old == 0) {
        s->first = h;
        return IDLE;
    }
    cor__mpsc_push(queue_of(s), h);
    /*
     * Only the first handle counted into a biased strand ends the bias: the
     * thread that counted it makes sure the bias ends (the owner's exit, or
     * its own unbias), and the drainer that follows runs every handle
     * counted by then. So a burst of posts while the owner runs a long
     * handle costs one membarrier, not one per post. The owner always ends
     * it: a first counter may have read the owner_in it set for a moment
     * before it backed off to count its own handle.
     */
    if ((old & BIAS) && (biased_idle(old) || __atomic_load_n(&s->owner, __ATOMIC_RELAXED) == self()))
        return QUEUED_BIASED;
    return QUEUED;
}

/*
 * The drainer takes the oldest queued handle (true), or finds none. A pop
 * holds qlock, so a dump (cor_strand_dump) may walk the queue meanwhile;
 * an empty queue is seen without it (the uncontended dispatch's path).
 */
static bool pop(cor_strand *s, cor__mpsc *q, cor_frame **h)
{
    if (cor__mpsc_empty(q))
        return false;
    cor__spin_lock(&s->qlock);
    int r = cor__mpsc_pop(q, h);
    cor__spin_unlock(&s->qlock);
    return r == COR__MPSC_ITEM;
}

/* The drainer's next handle: the one that made the strand busy (`first`), then the queue's. */
static bool take(cor_strand *s, cor__mpsc *q, cor_frame **h)
{
    if (s->first) {
        *h = s->first;
        s->first = NULL;
        return true;
    }
    return pop(s, q, h);
}

static cor_handle drain(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, drainer);
    cor__mpsc *q = queue_of(s);
    for (;;) {
        strand_enter(s);
        uint64_t n = 0;
        cor_frame *h;
        while (n < STRAND_BATCH && take(s, q, &h)) {
            n++;
            cor_resume(h);
        }
        strand_leave(s);
        cor_executor inner = s->inner;
        if (bias(s, n))
            return COR_NOOP;
        /*
         * Acquire-release: the handles' writes happen before the next
         * drainer, on whichever thread, sees the count. Once the count
         * reaches 0 another thread may schedule (and run) this drainer
         * again: touch nothing of s after it.
         */
        if (__atomic_sub_fetch(&s->pending, n, __ATOMIC_ACQ_REL) == 0)
            return COR_NOOP;
        /*
         * More is counted. Executors with other work take turns: the
         * drainer goes to the back of the queue. The inline executor has
         * none, and its post would run the drainer nested in this one, a
         * level deeper for every batch: the loop goes on here instead
         * (yielding the CPU while a producer that counted its handle has
         * not linked it yet).
         */
        if (inner.ops != &cor__inline_executor_ops) {
            inner.ops->post(inner.obj, f);
            return COR_NOOP;
        }
        if (n == 0)
            sched_yield();
    }
}

/*
 * The inner executor discards the drainer (it is being destroyed): destroy
 * every handle queued on the strand too, so nothing leaks, including one a
 * producer on another thread counted in and is still pushing (a woken
 * waiter's post, say): until the count is back to zero, when the next
 * producer schedules a drainer of its own.
 */
static void drainer_destroyed(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, drainer);
    for (;;) {
        uint64_t n = 0;
        cor_frame *h;
        while (take(s, queue_of(s), &h)) {
            n++;
            cor_frame_destroy(h);
        }
        if ((__atomic_sub_fetch(&s->pending, n, __ATOMIC_ACQ_REL) & COUNT_MASK) == 0)
            return;
        sched_yield(); /* counted in, not yet pushed */
    }
}

bool cor__is_strand_drainer(const cor_frame *f)
{
    return f->resume == drain;
}

/* Runs the handle an uncounted dispatch left in `fast`, in the strand (running: s). */
static cor_handle run_fast(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, runner);
    cor_frame *h = s->fast;
    s->fast = NULL;
    strand_enter(s);
    while (h) /* cor_resume, inline: the uncounted dispatch's path */
        h = h->resume(h);
    strand_leave(s);
    return COR_NOOP;
}

/* The same for the owner of a biased strand, which then lets go of it. */
static cor_handle run_biased(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, runner);
    run_fast(f);
    return leave_biased(s, true);
}

/* The runner is discarded instead of resumed: so is its handle. */
static void runner_destroyed(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, runner);
    cor_frame *h = s->fast;
    s->fast = NULL;
    if (h)
        cor_frame_destroy(h);
    if (f->resume == run_biased && h)
        leave_biased(s, false);
}

/* A dispatch that counts h in (out of line: the fast paths stay small). */
__attribute__((noinline)) static cor_handle dispatch_counted(cor_strand *s, cor_handle h)
{
    uint64_t seen;
    switch (enqueue(s, h, &seen)) {
    case QUEUED:
        return COR_NOOP;
    case QUEUED_BIASED:
        return end_bias(s, true, seen);
    }
    /* A drain this starts on this thread counts towards biasing the strand to it. */
    s->hint = runs_inline(s) ? self() : 0;
    /* The inner executor may run the drainer right here (it returns it). */
    return s->inner.ops->dispatch(s->inner.obj, &s->drainer);
}

/* Every dispatch but the owner's to its biased strand (out of line, for the same reason). */
__attribute__((noinline)) static cor_handle dispatch_unbiased(cor_strand *s, cor_handle h)
{
    if (cor__tls.running == s)
        return h;
    /*
     * A strand over an io_context, dispatched to by the thread running that
     * io_context now: every handle of the strand runs on that thread (its
     * drainer runs only through the io_context, which one thread drives at
     * a time), so none runs now, and exclusion needs no atomic. If nothing
     * is counted either (no handle queued or running; a drainer another
     * thread schedules meanwhile runs after this one), h runs next on this
     * thread without touching the count: one load instead of two locked
     * operations. It runs through the runner frame the caller resumes (as
     * it would the drainer), never nested in the caller's suspension;
     * `fast` is this thread's alone, and busy only until that resumption.
     */
    if (s->inner.ops == &cor__io_executor_ops && cor__tls.running == s->inner.obj && !s->fast &&
        __atomic_load_n(&s->pending, __ATOMIC_ACQUIRE) == 0) {
        s->fast = h;
        return &s->runner;
    }
    return dispatch_counted(s, h);
}

static cor_handle strand_dispatch(const void *obj, cor_handle h)
{
    cor_strand *s = (cor_strand *)obj;
    if (enter_biased(s, h))
        return &s->runner;
    return dispatch_unbiased(s, h);
}

static void strand_post(const void *obj, cor_handle h)
{
    cor_strand *s = (cor_strand *)obj;
    uint64_t seen;
    switch (enqueue(s, h, &seen)) {
    case IDLE:
        s->hint = 0;
        s->inner.ops->post(s->inner.obj, &s->drainer);
        break;
    case QUEUED_BIASED:
        end_bias(s, false, seen);
        break;
    }
}

static cor_execution_context *strand_context(const void *obj)
{
    return cor_executor_context(((const cor_strand *)obj)->inner);
}

static void strand_work_started(const void *obj)
{
    const cor_strand *s = obj;
    s->inner.ops->on_work_started(s->inner.obj);
}

static void strand_work_finished(const void *obj)
{
    const cor_strand *s = obj;
    s->inner.ops->on_work_finished(s->inner.obj);
}

static const cor_executor_ops strand_ops = {
    .dispatch = strand_dispatch,
    .post = strand_post,
    .context = strand_context,
    .on_work_started = strand_work_started,
    .on_work_finished = strand_work_finished,
};

int cor_strand_init(cor_strand *s, cor_executor inner)
{
    if (!s || !cor_executor_valid(inner))
        return -EINVAL;
    /* In-slot: executors that destroy the drainer must not free it. */
    cor__frame_init(&s->drainer, drain, NULL, sizeof s->drainer, _Alignof(cor_frame),
                    COR_FRAME_IN_SLOT | COR_FRAME_STARTED, 0, 0);
    s->drainer.on_destroy = drainer_destroyed;
    bool io = inner.ops == &cor__io_executor_ops;
    cor__frame_init(&s->runner, io ? run_fast : run_biased, NULL, sizeof s->runner,
                    _Alignof(cor_frame), COR_FRAME_IN_SLOT | COR_FRAME_STARTED, 0, 0);
    s->runner.on_destroy = runner_destroyed;
    s->fast = NULL;
    s->owner = 0;
    s->hint = 0;
    s->owner_in = 0;
    s->streak = 0;
    s->revokes = 0;
    s->epoch = 0;
    s->inner = inner;
    s->pending = 0;
    s->first = NULL;
    s->qlock = 0;
    cor__mpsc_init(queue_of(s));
    return 0;
}

int cor_strand_destroy(cor_strand *s)
{
    if (!s)
        return -EINVAL;
    if ((__atomic_load_n(&s->pending, __ATOMIC_ACQUIRE) & COUNT_MASK) != 0 ||
        __atomic_load_n(&s->owner_in, __ATOMIC_ACQUIRE))
        return -EBUSY;
    s->inner = COR_EXECUTOR_NULL;
    return 0;
}

cor_executor cor_strand_executor(cor_strand *s)
{
    if (!s)
        return COR_EXECUTOR_NULL;
    return (cor_executor){s, &strand_ops};
}

bool cor_strand_running_in_this_thread(const cor_strand *s)
{
    if (!s)
        return false;
    /* Set and cleared by the thread running s: only that thread reads its own token there. */
    return __atomic_load_n(&s->running_in, __ATOMIC_RELAXED) == self();
}

/* ---- dump ----------------------------------------------------------------------------- */

int cor_strand_dump(cor_strand *s, FILE *out)
{
    if (!s || !out)
        return -EINVAL;
    cor__spin_lock(&s->qlock);
    cor__mpsc *q = queue_of(s);
    uint64_t pending = __atomic_load_n(&s->pending, __ATOMIC_ACQUIRE);
    fprintf(out, "strand: %llu handles queued or running%s\n",
            (unsigned long long)(pending & COUNT_MASK), pending & BIAS ? " (biased)" : "");
    unsigned i = 0;
    for (const cor_frame *h = q->tail; h; h = __atomic_load_n(&h->next, __ATOMIC_ACQUIRE)) {
        if (h == &q->stub)
            continue;
        fprintf(out, "queued %u:\n", i++);
        cor__backtrace_queued(h, out);
    }
    cor__spin_unlock(&s->qlock);
    fflush(out);
    return 0;
}
