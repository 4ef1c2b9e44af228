/*
 * Strands: an executor that serializes the handles it runs on top of any
 * other executor (an io_context, a thread pool, a manual executor).
 *
 * Handles dispatched or posted to a strand never run concurrently with each
 * other, and run in FIFO order per posting thread. The hot path takes no
 * lock: an intrusive lock-free MPSC queue plus an atomic count of queued
 * handles. The thread that makes an idle strand busy schedules one drainer on
 * the inner executor; the drainer runs a bounded batch of handles and posts
 * itself again if more are queued, so strands sharing an executor take turns.
 * dispatch from code already running inside the strand resumes the handle
 * inline.
 *
 * Biased ownership. An uncontended dispatch costs two atomic read-modify-write
 * operations (the strand turns busy, then idle again). A strand over an
 * executor that runs dispatched handles inline (the inline executor, a thread
 * pool's worker, a manual executor's runner, another strand) that one thread
 * keeps dispatching to while it is idle (64 such dispatches in a row) becomes
 * biased towards that thread: its next dispatches there take no atomic at
 * all. Another thread (or a post, or a dispatch the strand cannot run at
 * once) ends the bias; another thread pays for it with one membarrier(2)
 * system call (2-50 us on a 2-vCPU VM, milliseconds when the owner's CPU is
 * descheduled), once per bias. Each end doubles the streak needed
 * to bias it again; after 8 a strand stays unbiased. A strand is only ever
 * biased towards the first thread it was biased to. Nothing changes in what
 * runs when, or where: exclusion and FIFO order per posting thread hold as
 * before. Kernels without MEMBARRIER_CMD_PRIVATE_EXPEDITED (4.14+) and
 * ThreadSanitizer builds (which cannot see the system call's ordering) never
 * bias. A strand over an io_context needs none of this: dispatched to from
 * the io_context's own thread while idle, it takes no atomic anyway.
 *
 * Hops into and out of a strand. COR_AWAIT(r, COR_RUN(child(), .ex = strand))
 * runs child inside the strand; when child completes, the strand is
 * released before its caller goes on: the caller is resumed on its own
 * executor, queued there (never run inline inside the strand's drainer), so
 * other coroutines enter the strand at once while the caller continues.
 * For each pair:
 *  - strand over a thread pool, caller on that pool: the caller is posted
 *    to the pool and resumes on a worker, outside the strand.
 *  - strand over an io_context, caller on that io_context: the caller is
 *    queued on the io_context and resumes on its thread after the drainer
 *    returned, outside the strand.
 *  - io_context -> pool -> io_context (no strand): the caller is posted
 *    back to its io_context's thread.
 *  - nested strands (a strand over a strand): inside the inner one both
 *    report cor_strand_running_in_this_thread; after the hop neither does.
 *  - a caller inside the same strand: the child runs inline (same
 *    executor) and the caller continues inside the strand, as expected.
 * While a drainer runs, every other executor's dispatch queues rather than
 * running inline: code inside a strand never runs another executor's work
 * nested inside it.
 *
 * A strand is a caller-owned, fixed-size struct (embed it in a connection or
 * session object); initializing one allocates nothing.
 *
 *     cor_strand s;
 *     cor_strand_init(&s, cor_thread_pool_executor(pool));
 *     COR_RUN_ASYNC(cor_strand_executor(&s), NULL, session(fd));
 *     ...
 *     cor_strand_destroy(&s);   // -EBUSY while handles are queued or running
 */
#ifndef CORING_STRAND_H
#define CORING_STRAND_H

#include "coring/common.h"
#include "coring/executor.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/*
 * A strand. Fields are the library's; the layout is visible only so that a
 * strand can be embedded. drainer is the handle the strand posts to its inner
 * executor; queue holds the library's MPSC queue.
 */
typedef struct cor_strand {
    /* The side of the thread running the strand (the drainer, or a dispatch that needs no count). */
    cor_frame drainer;
    cor_frame runner; /* runs `fast` in the strand: an uncounted dispatch (strand.c) */
    cor_executor inner;
    cor_frame *first; /* the handle that made the strand busy, for the drainer */
    cor_frame *fast;  /* that dispatch's handle, until the runner runs it       */
    uintptr_t running_in;     /* while it runs: the running thread's token, else 0 */
    const void *prev_running; /* and the executor that thread ran before           */
    /* Biased ownership (strand.c): one thread may run an idle strand without atomics. */
    uintptr_t owner;   /* that thread (set once), or 0                                */
    uintptr_t hint;    /* the thread whose inline dispatch made the strand busy last  */
    uint32_t owner_in; /* 1 while the owner runs a handle of the strand without atomics */
    uint32_t streak;   /* drains in a row started by the owner's inline dispatches      */
    uint32_t revokes;  /* how often the bias ended; the next one needs a longer streak  */
    uint32_t epoch;    /* how often it was biased (the count carries it while biased)   */
    uint32_t qlock;    /* held by the drainer's pops and by a dump's walk of the queue */
    /*
     * The producers' side: the count and the queue's producing end share a
     * cache line that nothing above can share (56 bytes between, whatever
     * the strand's alignment), so producers and the drainer do not take
     * turns on one line for fields only one side writes.
     */
    unsigned char apart[56];
    uint64_t pending; /* handles queued or running; nonzero: a drainer is scheduled */
    union {
        unsigned char bytes[sizeof(cor_frame) + 9 * sizeof(void *)];
        void *align;
    } queue;
} cor_strand;

/*
 * Initializes s as an idle strand over inner. Returns 0, or -EINVAL for a
 * NULL s or an invalid inner executor (s is then untouched). inner must
 * outlive the strand. Allocates nothing. Any thread, before s is shared.
 */
COR_API int cor_strand_init(cor_strand *s, cor_executor inner);

/*
 * Ends the life of an idle strand. Returns 0; -EBUSY if handles are still
 * queued on it, its drainer is running, or (biased) its owner thread runs
 * one of its handles (s is then unchanged and still usable); -EINVAL for
 * NULL. After a 0 return s may be freed or initialized
 * again. Any thread; nothing may post to s concurrently. The last handle's
 * completion (a launch's result handler, a parent resumed elsewhere) happens
 * inside the drainer, just before the strand turns idle: destroy a strand
 * after its inner executor has stopped running it (joined, or run() returned),
 * or retry on -EBUSY; never free it from one of its own handles.
 */
COR_API int cor_strand_destroy(cor_strand *s);

/*
 * Returns the executor of s ({NULL, NULL} for NULL). Its dispatch runs the
 * handle inline when called from inside s, else queues it; post always
 * queues. Its context is the inner executor's; work counting is forwarded to
 * the inner executor, so the inner run loop keeps running while work launched
 * on the strand is outstanding.
 */
COR_API cor_executor cor_strand_executor(cor_strand *s);

/*
 * True if the calling thread is running a handle of s right now (also while
 * it runs a strand nested over s). Any thread.
 */
COR_API bool cor_strand_running_in_this_thread(const cor_strand *s);

COR_END_DECLS

#endif
