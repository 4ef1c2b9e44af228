/* Definitions shared by the library's source files; not installed. */
#ifndef CORING_SRC_INTERNAL_H
#define CORING_SRC_INTERNAL_H

#include <assert.h>
#include <pthread.h>
#include <sched.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include "coring/common.h"
#include "coring/log.h"

/* The struct that contains member `m` at address p. */
#define cor__container_of(p, type, m) ((type *)((char *)(p)-offsetof(type, m)))

/* The inline executor's operations (frame.c): its dispatch always runs the handle inline. */
extern const struct cor_executor_ops cor__inline_executor_ops;

/*
 * 1 in a ThreadSanitizer build (GCC defines __SANITIZE_THREAD__; Clang 14
 * only answers __has_feature). Code whose ordering TSan cannot see (a
 * membarrier-based fence) is left out of such builds.
 */
#if defined(__SANITIZE_THREAD__)
#define COR__TSAN 1
#elif defined(__has_feature)
#if __has_feature(thread_sanitizer)
#define COR__TSAN 1
#endif
#endif
#ifndef COR__TSAN
#define COR__TSAN 0
#endif

#define COR__LIKELY(x) __builtin_expect(!!(x), 1)
#define COR__UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * A test-and-test-and-set spin lock for short critical sections that must
 * not allocate or sleep in the kernel on the fast path (stop callback
 * lists, wait lists). Contended waiters yield the CPU.
 */
static inline void cor__spin_lock(uint32_t *l)
{
    for (;;) {
        if (!__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
            return;
        while (__atomic_load_n(l, __ATOMIC_RELAXED))
            sched_yield();
    }
}

static inline void cor__spin_unlock(uint32_t *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

/*
 * How long a thread about to sleep until another thread hands it work (a
 * pool worker, an io_context's owner with nothing in flight) first watches
 * for it in user space: a hand-off within that time costs neither side a
 * system call, and the bound keeps an idle process from burning CPU.
 */
#define COR__SPIN_NS 20000

/* One step of a busy-wait loop: PAUSE on x86, YIELD on Arm, nothing elsewhere. */
static inline void cor__cpu_relax(void)
{
#if defined(__x86_64__) || defined(__i386__)
    __builtin_ia32_pause();
#elif defined(__aarch64__)
    __asm__ volatile("yield");
#endif
}

/*
 * Spins until ready(arg) is true (returns true) or COR__SPIN_NS have passed
 * (returns false). Every 64 checks it reads the clock and yields the CPU: a
 * thread that is ready to run on this CPU (the one the spinner waits for, on
 * a machine with more threads than CPUs) runs first.
 */
static inline bool cor__spin_wait(bool (*ready)(void *arg), void *arg)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    int64_t end = (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec + COR__SPIN_NS;
    for (;;) {
        for (int i = 0; i < 64; i++) {
            if (ready(arg))
                return true;
            cor__cpu_relax();
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);
        if ((int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec >= end)
            return false;
        sched_yield();
    }
}

/*
 * The state of one place that spins before it sleeps. A spin that found
 * nothing makes the next ones be skipped: one, then twice as many after each
 * further miss, up to 64. On a loaded machine, where the other side cannot
 * run in time, spins stop costing 20 us per sleep; a hit spins every time
 * again.
 */
typedef struct cor__spinner {
    uint8_t skip;    /* sleeps left to take without spinning */
    uint8_t backoff; /* skips after the next miss / 2         */
} cor__spinner;

/* Spins (cor__spin_wait) unless s says to skip this time. True if ready(arg) came true. */
static inline bool cor__spin_try(cor__spinner *s, bool (*ready)(void *arg), void *arg)
{
    if (s->skip) {
        s->skip--;
        return false;
    }
    if (cor__spin_wait(ready, arg)) {
        s->backoff = 0;
        return true;
    }
    s->backoff = s->backoff ? (uint8_t)(s->backoff < 32 ? s->backoff * 2 : 64) : 1;
    s->skip = s->backoff;
    return false;
}

/*
 * Logs one message (printf format, one line, no newline) through the log
 * hook (log.h) at a COR_LOG_* level. Any thread.
 */
void cor__log(int level, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- dump.c ---- */

/* A line being written into a fixed buffer (what does not fit is cut). */
typedef struct cor__text {
    char *buf;
    size_t cap, len;
} cor__text;

/* Appends printf-formatted text to t. */
void cor__text_put(cor__text *t, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

/* ---- io_context.c: a hop's return to an io_context (frame.c) ---- */

extern const struct cor_executor_ops cor__io_executor_ops;
struct cor_io_context;

/* c, awaiting a child that ran on another executor, is resumed on io (ex.obj). */
cor_handle cor__io_return(struct cor_io_context *io, cor_frame *c);

/* ---- timer.c ---- */

/* The time ns (>= 0) from now; INT64_MAX (never) when that is beyond the clock's range. */
int64_t cor__time_after(int64_t ns);

/* ---- launch.c: the roots of an execution context (dump.c) ---- */

/*
 * A frame on an execution context's roots list: a launch record, or a
 * task-group child's record. On the list from its start until it finishes
 * or is destroyed, so a dump finds every task that ends there.
 */
typedef struct cor__root_link {
    cor_frame *frame;
    struct cor_execution_context *ctx; /* whose list holds it, or NULL */
    struct cor__root_link *next, **pprev;
} cor__root_link;

/* Puts f (whose link is l) on ctx's list; nothing for a NULL ctx. Any thread. */
void cor__roots_add(struct cor_execution_context *ctx, cor__root_link *l, cor_frame *f);

/* Takes l off its list, if it is on one. Any thread. */
void cor__roots_del(cor__root_link *l);

/* True if f is a launch record (COR_RUN_ASYNC's root frame; awaited: the task). */
bool cor__is_launch_root(const cor_frame *f);

/* True if top (a launch or group-child record) is on ctx's list. Under the conditions a dump reads frames. */
bool cor__roots_holds(const cor_execution_context *ctx, const cor_frame *top);

/* Calls fn(arg, frame) for every frame on ctx's list, under its lock. Returns the count. */
int cor__roots_walk(cor_execution_context *ctx, void (*fn)(void *arg, cor_frame *root), void *arg);

/*
 * ctx is being destroyed, nothing runs on it: every task on its list that
 * waits on a wait list (an async mutex, event or semaphore, a channel: the
 * wait is the bottom of its chain, followed down through joins while the
 * frames are on ctx) leaves that list and is destroyed with its chain, as a
 * suspended frame queued on ctx would be. Returns how many were destroyed.
 */
int cor__roots_abandon_waits(cor_execution_context *ctx);

/*
 * g, awaited by f, runs on ctx (f's executor, or one of ctx's): with ctx
 * idle, g may be read. Only g's executor is read (set before g started):
 * elsewhere g's other fields may be changing. ctx is not NULL.
 */
bool cor__frame_on_ctx(const cor_execution_context *ctx, const cor_frame *f, const cor_frame *g);

/* sync.c: true if f is a sync wait that suspended (on a list, or granted and posted). */
bool cor__is_sync_wait(const cor_frame *f);

/*
 * The sync wait f leaves its wait list and is destroyed with its chain. False
 * (nothing done) if a waker took it first: it is posted to its executor.
 */
bool cor__wait_abandon(cor_frame *f);

/* compose.c: the link of a task-group child's record, or NULL if f is not one. */
const cor__root_link *cor__group_child_link(const cor_frame *f);

/* ---- dump.c ---- */

/* cor_backtrace of a handle queued on an executor (a frame with no await site is a task to start). */
int cor__backtrace_queued(const cor_frame *h, FILE *out);

/* ---- context.c ---- */

/*
 * The library's own threads that may still post a wake-up to ctx (a
 * cor_resolve lookup): added before such a thread can wake a waiter of ctx,
 * dropped once it never will; destroys wait for none.
 */
uint32_t cor__ctx_foreign_wakes(const cor_execution_context *ctx);
void cor__ctx_foreign_wake_add(cor_execution_context *ctx, int delta);

/*
 * Empties the queue q (guarded by lock) of an executor of ctx that is being
 * destroyed: destroys each handle (taken under the lock, destroyed outside:
 * destroying a chain may queue more), the tasks waiting on wait lists and
 * the wake-ups the library's own threads are posting meanwhile, until none
 * is left (the manual executor's and the thread pool's destroy).
 */
struct cor__fifo;
void cor__ctx_empty_queue(cor_execution_context *ctx, pthread_mutex_t *lock, struct cor__fifo *q);

/* ---- strand.c ---- */

/* True if f is a strand's drainer (the handle a strand posts to its inner executor). */
bool cor__is_strand_drainer(const cor_frame *f);

/* ---- file.c: cor_read, for reader.c (whose read task is named cor_read) ---- */

struct cor_io_await *cor__file_read(int fd, void *buf, size_t len, int64_t off);

/* ---- compose.c: what frame.c calls for joins and timeouts ---- */

struct cor_env;

/*
 * Starts the timeouts attached to child (COR_FRAME_VIA), outermost first:
 * each stands between the child and *cont, which becomes the innermost one,
 * and *env becomes the environment the child inherits (the innermost
 * timeout's stop token). A timeout that cannot start sets child->error.
 */
void cor__via_start(cor_frame **cont, struct cor_env *env, cor_frame *child);

/* Child f (or a timeout in front of it) of join jf finished: the handle to run next. */
cor_frame *cor__join_child_done(cor_frame *jf, cor_frame *f);

/* Child h of join jf is being destroyed (teardown). True if it was the last: jf goes too. */
bool cor__join_child_destroyed(cor_frame *jf, cor_frame *h);

/* Frees a finished frame that its awaiter did not collect: a join with its children, or one frame. */
void cor__frame_free_any(cor_frame *f);

#endif
