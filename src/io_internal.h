/*
 * The io_context's front end, shared by the files that implement it:
 * io_context.c (executor, queues, run loop, lifecycle), io_op.c (the
 * operation state machine and the stop-token bridge), timer.c (sleeps and
 * timer objects on the wheel), io_files.c (registered files), stream.c
 * (buffer rings and multishot streams), io_group.c and compose.c. Not
 * installed.
 *
 * Who touches what. Fields under "owner" are touched only by the thread
 * that drives the context (inside run), or by anyone while nobody does (the
 * `running` flag, taken with acquire and released with release, orders
 * successive drivers). Fields under "shared" are atomics.
 */
#ifndef CORING_SRC_IO_INTERNAL_H
#define CORING_SRC_IO_INTERNAL_H

#include <pthread.h>

#include "coring/io_context.h"
#include "coring/io_op.h"
#include "fifo.h"
#include "internal.h"
#include "io_seam.h"
#include "mpsc.h"
#include "wheel.h"

/*
 * cor_io_context.running: a thread drives io (inside run, or an owner-only
 * call while nobody runs it), or a dump reads io from another thread while
 * nobody drives it (a driver waits for the dump to end instead of failing).
 */
enum { COR__IO_DRIVING = 1, COR__IO_PEEKING = 2 };

/* Op states (cor__io_op.state). */
enum { COR__OP_NEW, COR__OP_IN_FLIGHT, COR__OP_DONE };

/* Op flags (cor__io_op.flags). */
enum {
    COR__OPF_CANCEL_SENT = 1u << 0,    /* it was asked to stop (backend cancel sent)      */
    COR__OPF_EINVAL = 1u << 1,         /* created with bad arguments: -EINVAL at start    */
    COR__OPF_EPERM = 1u << 2,          /* created for another context: -EPERM at start    */
    COR__OPF_DEADLINE = 1u << 3,       /* timer.when holds a deadline                      */
    COR__OPF_DEADLINE_FIRST = 1u << 4, /* a TIMEOUT's deadline is earlier than its expiry  */
    COR__OPF_TIMED_OUT = 1u << 5,      /* its deadline fired (before any stop)             */
    COR__OPF_INJECTED = 1u << 6,       /* the fault seam fails it (result: op->fault)      */
    COR__OPF_DEADLINE_REL = 1u << 7    /* until start, timer.when is ns after the start    */
};

/* A fault plan (fault.h), kept by the owner. kind 0: none. */
typedef struct cor__fault_plan {
    int kind;           /* COR_FAULT_*                                  */
    int opcode;         /* the opcode to match, -1: any                 */
    long left;          /* matches until the one that fails (nth)       */
    bool every;         /* every match fails                            */
    int error;          /* COR_FAULT_ERROR                              */
    unsigned short_len; /* COR_FAULT_SHORT                              */
    long hits;          /* faults made so far                           */
} cor__fault_plan;

/* A list of in-flight operations (doubly linked through cor__io_op.next/prev). */
typedef struct cor__op_list {
    cor__io_op *head;
    long count;
} cor__op_list;

/*
 * A whole-task timeout or any other timer that runs a function when it
 * expires, on the owner thread, from the run loop (compose.c).
 */
typedef struct cor__timeout {
    cor__tnode node; /* kind COR__TNODE_CALLBACK */
    void (*fire)(struct cor__timeout *t);
} cor__timeout;

struct cor_io_context {
    cor_execution_context ctx; /* first: the context of the executor */
    const cor__backend_ops *be_ops;
    cor__backend *be;
    unsigned requested;
    int backend;            /* COR_IO_BACKEND_URING or _EPOLL: the one in use               */
    int fallback_err;       /* why a default-backend context fell back to epoll, or 0       */
    char fallback_why[120]; /* the same in words                                            */
    uint32_t fork_gen;      /* cor__fork_gen at creation: another value is a forked child   */

    /* owner */
    cor__fifo local;        /* posts from the owner thread                     */
    long queued;            /* its length                                      */
    long inflight;          /* operations started and not yet completed        */
    long timeouts;          /* armed cor__timeout nodes (they count as work)   */
    cor__op_list plain;     /* in-flight ops whose coroutine cannot be stopped */
    cor__io_op *done_head;  /* front-end completions waiting for delivery      */
    cor__io_op *done_last;  /* (linked through bk[0], results in bk[1])        */
    cor__wheel wheel;       /* sleeps, timer waits, deadlines, task timeouts   */
    struct cor_stream *streams;   /* stream.h handles not yet closed (freed at destroy) */
    struct cor_buf_ring *rings;   /* buffer rings not yet destroyed (likewise)         */
    pthread_t owner;        /* the driving thread once bound                   */
    bool bound;             /* the backend was bound to a thread               */
    bool closing;           /* destroy is draining                             */
    unsigned nfiles;        /* slots of the registered file table              */
    cor__fault_plan faults; /* fault injection (fault.c)                      */
    int64_t iter_start;     /* when the owner last became busy (a pass began, or it woke) */
    int64_t busy_acc;       /* busy time of the current pass before it waited          */
    cor__spinner spin;      /* whether to spin for a post before blocking (io_context.c) */

    /*
     * Counters (metrics.h): written with cor__stat_add by the owner (posters
     * add to posts_remote and wakeups_sent atomically), read from anywhere.
     */
    struct {
        uint64_t started;          /* operations that went in flight          */
        uint64_t submitted;        /* operations handed to the backend        */
        uint64_t completed;        /* operations completed (any way)          */
        uint64_t posts_local, posts_remote; /* handles posted from inside / outside */
        uint64_t wakeups_sent;     /* wake-ups this context's posters sent     */
        uint64_t wakeups_received; /* times the owner blocked and was woken    */
        uint64_t iterations;       /* run-loop passes                          */
        uint64_t longest_ns;       /* the longest pass's busy time             */
        uint64_t stalls;           /* passes busy beyond stall_ns              */
        uint64_t timers;           /* wheel nodes: before a wait, after a pass */
        int64_t busy_since;        /* iter_start while busy in run, else 0     */
    } stats;
    int64_t stall_ns; /* the stall threshold (0: off); set from any thread (atomic) */

    /* The stop-token bridge (io_op.c): one link per stop source in use. */
    cor__stop_link **links; /* open-addressing table by source address        */
    unsigned links_cap;     /* a power of two, or 0                            */
    unsigned links_used;
    cor__stop_link *links_free; /* links ready for reuse                       */
    void *link_chunks;          /* the blocks links are carved from           */

    /* shared */
    uint32_t running;   /* COR__IO_DRIVING or COR__IO_PEEKING, or 0    */
    uint32_t stopped;   /* stop was requested                          */
    uint32_t sleeping;  /* the owner is (about to be) blocked          */
    uint32_t touching;  /* threads inside a cross-thread touch of io   */
    long work;          /* work guards and launches                    */
    char pad[64];
    cor__mpsc remote; /* posts from other threads                    */
};

/* The io_context whose run loop is on this thread's stack, or NULL. */
extern COR_THREAD_LOCAL cor_io_context *cor__io_running;

/* ---- io_context.c ---- */

/* Posts h to io from any thread (the cross-thread path: MPSC queue and wake-up). */
void cor__io_post_remote(cor_io_context *io, cor_frame *h);

/*
 * Enters io for a call that must run on its driving thread (registered
 * files, buffer rings, streams): from inside io's run, or while nobody
 * drives io from a thread that may (it then holds `running` itself until
 * cor__io_owner_leave). Returns 0, or -EPERM. *held says what to release.
 */
int cor__io_owner_enter(cor_io_context *io, bool *held);
void cor__io_owner_leave(cor_io_context *io, bool held);

/*
 * On the owner thread, after run returned: cancels every operation in
 * flight, waits for their completions and destroys their frames and every
 * queued handle, so the context can later be destroyed from any thread.
 * waits: also the tasks waiting on wait lists (cor__roots_abandon_waits),
 * only while no other thread destroys frames.
 */
void cor__io_context_quiesce(cor_io_context *io, bool waits);

/* ---- metrics.c ---- */

/* The run loop is starting (or ending, with now 0): the busy clock starts (or stops). */
void cor__io_metrics_begin(cor_io_context *io, int64_t now);

/* Publishes the timers gauge (wheel nodes now). */
void cor__io_metrics_timers(cor_io_context *io);

/*
 * About to call the backend's run, allowed to block (wait != 0) or not; ran:
 * this pass ran handlers, delivered completions or fired timers so far.
 */
void cor__io_metrics_before_wait(cor_io_context *io, int64_t wait, bool ran);

/* A pass of the run loop ended: counts it, its busy time, and a stall. */
void cor__io_metrics_pass(cor_io_context *io);

/* ---- fault.c ---- */

/*
 * The fault seam: called by seam_submit for every operation on its way to
 * the backend while a plan is in force. Returns 1 if the op now fails
 * without reaching the backend (its completion is queued), else 0 (maybe
 * shortened, or marked to fail after the backend ran it: a CLOSE).
 */
int cor__fault_op(cor_io_context *io, cor__io_op *op);

/* ---- fork ---- */

/* Bumped in the child of every fork (pthread_atfork): an io_context made before is the parent's. */
extern uint32_t cor__fork_gen;

/* True if io was created in a process this one was forked from: it must not be touched. */
static inline bool cor__io_forked(const cor_io_context *io)
{
    return __builtin_expect(__atomic_load_n(&cor__fork_gen, __ATOMIC_RELAXED) != io->fork_gen, 0);
}

/* ---- io_op.c ---- */

/* The op of a leaf frame made by cor__io_await_new. */
static inline cor__io_op *cor__op_of(struct cor_io_await *a)
{
    return (cor__io_op *)(void *)&a->op;
}

/* The leaf frame holding op. */
static inline cor_frame *cor__op_frame(cor__io_op *op)
{
    return (cor_frame *)((char *)op - offsetof(struct cor_io_await, op));
}

/*
 * Allocates a leaf struct cor_io_await for opcode in the current await slot
 * (or from the frame allocator) with no arguments set; the caller fills
 * fd, len, u, op_flags. size (0: the struct's) bytes for the frame: the
 * bytes past the struct hold per-op state such as a msghdr. Returns NULL if
 * the frame could not be allocated.
 */
struct cor_io_await *cor__io_await_new(int opcode, size_t size);

/*
 * As cor__io_await_new for an op on fd. If valid is false the op is marked
 * as made with bad arguments: awaiting it completes with -EINVAL without
 * reaching the backend, whatever is set on it afterwards (a deadline,
 * COR_FIXED).
 */
struct cor_io_await *cor__io_await_fd(int opcode, int fd, bool valid);

/* Marks op as made with bad arguments (see cor__io_await_fd). */
static inline void cor__io_op_invalid(cor__io_op *op)
{
    op->flags |= COR__OPF_EINVAL;
}

/* Completes op (in flight, handled by the front end) with res from the run loop, never inline. */
void cor__io_op_done_later(cor_io_context *io, cor__io_op *op, int res);

/* Delivers up to max of the front-end completions queued so far; returns how many. Owner. */
long cor__io_deliver_done(cor_io_context *io, long max);

/* Cancels op (in flight): the backend's cancel, or the front end's for a FRONT op. */
void cor__io_op_cancel(cor_io_context *io, cor__io_op *op);

/* Cancels every operation in flight (teardown). */
void cor__io_cancel_all(cor_io_context *io);

/* Cancels only the ops the kernel never sees (sleeps, timer waits): any thread, from teardown. */
void cor__io_cancel_front(cor_io_context *io);

/* A deadline fired for op (a backend op): cancel it unless a stop came first. */
void cor__io_op_deadline_fired(cor_io_context *io, cor__io_op *op);

/* True if h is a stop link's request frame (bookkeeping, not a handler). */
bool cor__io_is_link_request(const cor_frame *h);

/* A queued stop-link request is being discarded (teardown). */
void cor__io_link_request_destroyed(cor_frame *h);

/* dump.c: true if h is a dump request another thread posted to io. */
bool cor__io_is_dump_request(const cor_frame *h);

/* A queued dump request discarded with io's queue: its caller learns it never ran. */
void cor__io_dump_request_destroyed(cor_frame *h);

/* Calls fn(arg, op) for every operation in flight, until one returns non-zero (returned). */
int cor__io_ops_walk(cor_io_context *io, int (*fn)(void *arg, cor__io_op *op), void *arg);

/* True if f is an operation's leaf frame (made by cor__io_await_new). */
bool cor__io_is_op_frame(const cor_frame *f);

/* Describes the operation of leaf frame f (opcode, descriptor, deadline, state) into t. */
void cor__io_describe_op(const cor_frame *f, cor__text *t, int64_t now);

/* Frees the stop links (destroy), deregistering any still in use if deregister (not in a
 * forked child, whose stop sources are copies that nothing will ever stop). */
void cor__io_links_destroy(cor_io_context *io, bool deregister);

/* ---- stream.c ---- */

/* The result of a STREAM_NEXT op: hands a receive stream's buffer to the waiter's cor_buf. */
int cor__stream_next_result(cor__io_op *op, int res);

/* Before the backend goes: closes the streams and destroys the buffer rings their users left open. */
void cor__stream_handles_free(cor_io_context *io);

/* ---- timer.c ---- */

/* Starts a TIMEOUT op (a sleep or a timer wait) on the wheel. Returns 0 or -errno. */
int cor__timeout_start(cor_io_context *io, cor__io_op *op);

/* A TIMEOUT op left the wheel (completed or canceled): forget its timer object. */
void cor__timeout_finish(cor__io_op *op);

/*
 * Runs the timers due at now: fired deadlines cancel their ops, fired
 * sleeps complete, fired cor__timeouts run their function. Returns how many
 * fired. Owner, inside run.
 */
long cor__io_expire_timers(cor_io_context *io, int64_t now);

/* Arms t to fire at when on io (owner thread; t must not be armed). */
void cor__io_timeout_arm(cor_io_context *io, cor__timeout *t, int64_t when);

/* Disarms t if it is armed (owner thread). */
void cor__io_timeout_disarm(cor_io_context *io, cor__timeout *t);

#endif
