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
 */
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

/* The drainers on this thread's stack, innermost first (a strand over a strand nests them). */
struct running {
    const cor_strand *s;
    const struct running *outer;
    const void *prev; /* cor__tls.running before */
};
static __thread const struct running *running_chain;

/*
 * The thread runs strand s from here (link lives on the caller's stack) until
 * strand_leave: not its inner executor, so the inner executor's dispatch (and
 * every other's) queues instead of running inline. So a coroutine that run()
 * sent into the strand resumes its caller on the caller's executor after the
 * strand's handle, never nested inside it holding the strand.
 */
static void strand_enter(cor_strand *s, struct running *link)
{
    *link = (struct running){s, running_chain, cor__tls.running};
    cor__tls.running = s;
    running_chain = link;
}

static void strand_leave(const struct running *link)
{
    running_chain = link->outer;
    cor__tls.running = link->prev;
}

static cor__mpsc *queue_of(cor_strand *s)
{
    return (cor__mpsc *)(void *)s->queue.bytes;
}

/*
 * Counts h in. Returns true if the strand was idle: h is then in `first` and
 * the caller must schedule the drainer. Otherwise h is queued. Counting
 * before pushing keeps the count at or above the number of handles the
 * drainer can reach, so its decrement never underflows; a handle counted but
 * not yet linked only makes the drainer post itself once more.
 */
static bool enqueue(cor_strand *s, cor_handle h)
{
    if (__atomic_fetch_add(&s->pending, 1, __ATOMIC_ACQ_REL) == 0) {
        s->first = h;
        return true;
    }
    cor__mpsc_push(queue_of(s), h);
    return false;
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

static cor_handle drain(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, drainer);
    cor__mpsc *q = queue_of(s);
    struct running link;
    strand_enter(s, &link);
    uint64_t n = 0;
    cor_frame *h = s->first;
    if (h) {
        s->first = NULL;
        n++;
        cor_resume(h);
    }
    while (n < STRAND_BATCH && pop(s, q, &h)) {
        n++;
        cor_resume(h);
    }
    strand_leave(&link);
    cor_executor inner = s->inner;
    /*
     * Acquire-release: the handles' writes happen before the next drainer,
     * on whichever thread, sees the count. Once the count reaches 0 another
     * thread may schedule (and run) this drainer again: touch nothing of s
     * after it.
     */
    if (__atomic_sub_fetch(&s->pending, n, __ATOMIC_ACQ_REL) != 0)
        inner.ops->post(inner.obj, f);
    return COR_NOOP;
}

/*
 * The inner executor discards the drainer (it is being destroyed): destroy
 * every handle queued on the strand too, so nothing leaks.
 */
static void drainer_destroyed(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, drainer);
    uint64_t n = 0;
    cor_frame *h = s->first;
    if (h) {
        s->first = NULL;
        n++;
        cor_frame_destroy(h);
    }
    while (pop(s, queue_of(s), &h)) {
        n++;
        cor_frame_destroy(h);
    }
    __atomic_sub_fetch(&s->pending, n, __ATOMIC_ACQ_REL);
}

bool cor__is_strand_drainer(const cor_frame *f)
{
    return f->resume == drain;
}

extern const cor_executor_ops cor__io_executor_ops;

/* Runs the handle an uncounted dispatch left in `fast`, in the strand (running: s). */
static cor_handle run_fast(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, runner);
    cor_frame *h = s->fast;
    s->fast = NULL;
    struct running link;
    strand_enter(s, &link);
    cor_resume(h);
    strand_leave(&link);
    return COR_NOOP;
}

/* The runner is discarded instead of resumed: so is its handle. */
static void runner_destroyed(cor_frame *f)
{
    cor_strand *s = cor__container_of(f, cor_strand, runner);
    cor_frame *h = s->fast;
    s->fast = NULL;
    if (h)
        cor_frame_destroy(h);
}

static cor_handle strand_dispatch(const void *obj, cor_handle h)
{
    cor_strand *s = (cor_strand *)obj;
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
    if (!enqueue(s, h))
        return COR_NOOP;
    /* The inner executor may run the drainer right here (it returns it). */
    return s->inner.ops->dispatch(s->inner.obj, &s->drainer);
}

static void strand_post(const void *obj, cor_handle h)
{
    cor_strand *s = (cor_strand *)obj;
    if (enqueue(s, h))
        s->inner.ops->post(s->inner.obj, &s->drainer);
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
    cor__frame_init(&s->runner, run_fast, NULL, sizeof s->runner, _Alignof(cor_frame),
                    COR_FRAME_IN_SLOT | COR_FRAME_STARTED, 0, 0);
    s->runner.on_destroy = runner_destroyed;
    s->fast = NULL;
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
    if (__atomic_load_n(&s->pending, __ATOMIC_ACQUIRE) != 0)
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
    for (const struct running *r = running_chain; r; r = r->outer)
        if (r->s == s)
            return true;
    return false;
}

/* ---- dump ----------------------------------------------------------------------------- */

int cor_strand_dump(cor_strand *s, FILE *out)
{
    if (!s || !out)
        return -EINVAL;
    cor__spin_lock(&s->qlock);
    cor__mpsc *q = queue_of(s);
    fprintf(out, "strand: %llu handles queued or running\n",
            (unsigned long long)__atomic_load_n(&s->pending, __ATOMIC_ACQUIRE));
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
