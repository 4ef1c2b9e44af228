/*
 * Async backtraces and task dumps (dump.h).
 *
 * What a frame is, as far as a dump can tell: a coroutine (its point is a
 * cor_await_site), a join (COR_FRAME_JOIN; its children in struct
 * cor__join), a timeout (COR_FRAME_IS_VIA; awaited: the task), a launch
 * record (launch.c; awaited: the task), an I/O operation (io_op.c), or
 * another leaf. Down a chain a dump follows `awaited` (the await macros
 * clear it once the child is collected, so it never dangles), up it follows
 * `continuation`.
 *
 * Which frames an io_context's dump reads, and when. Every launch record is
 * on its context's roots list (launch.c); every operation in flight is on
 * one of io's lists (io_op.c). The dump runs on io's driving thread between
 * two handlers, or on a thread that holds io's `running` flag while nobody
 * drives it, so no frame of io changes under it. It does not follow a chain
 * into a coroutine on another execution context: that one may be running
 * elsewhere.
 */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "coring/compose.h"
#include "coring/dump.h"
#include "coring/timer.h"
#include "internal.h"
#include "io_internal.h"

enum { MAX_DEPTH = 64, LINE = 256 };

void cor__text_put(cor__text *t, const char *fmt, ...)
{
    if (t->len >= t->cap)
        return;
    va_list ap;
    va_start(ap, fmt);
    int k = vsnprintf(t->buf + t->len, t->cap - t->len, fmt, ap);
    va_end(ap);
    if (k > 0)
        t->len = t->len + (size_t)k < t->cap ? t->len + (size_t)k : t->cap - 1;
}

struct dumper {
    FILE *out;
    cor_execution_context *ctx; /* frames on it may be read; NULL: follow everything */
    int64_t now;
    int tasks, coroutines;
    const cor_frame *queued; /* a handle queued on an executor: it runs next, it waits for nothing */
};

/* "../../examples/x.c" -> "examples/x.c": the path as the source tree says it. */
static const char *tidy_file(const char *file)
{
    while (!strncmp(file, "../", 3))
        file += 3;
    return file;
}

/* The coroutine's name: its body function without the "__body" COR_DEFINE adds. */
static int name_len(const char *func)
{
    size_t n = strlen(func);
    if (n > 6 && !strcmp(func + n - 6, "__body"))
        n -= 6;
    return (int)n;
}

static bool is_coroutine(const cor_frame *f)
{
    return f->point && !(f->flags & COR_FRAME_IS_VIA);
}

static void describe(struct dumper *d, const cor_frame *f, cor__text *t)
{
    if (f->flags & COR_FRAME_JOIN) {
        const struct cor__join *j = (const struct cor__join *)f;
        cor__text_put(t, "%s of %u children", j->kind == COR__JOIN_ANY ? "when_any" : "when_all",
                      j->n);
    } else if (f->flags & COR_FRAME_IS_VIA) {
        cor__text_put(t, "timeout (COR_TIMEOUT)");
    } else if (cor__is_strand_drainer(f)) {
        cor__text_put(t, "a strand's drainer (cor_strand_dump lists the strand's queue)");
    } else if (cor__is_launch_root(f)) {
        cor__text_put(t, "launched by COR_RUN_ASYNC");
    } else if (cor__io_is_op_frame(f)) {
        cor__io_describe_op(f, t, d->now);
    } else if (is_coroutine(f)) {
        const cor_await_site *s = (const cor_await_site *)f->point;
        cor__text_put(t, "%.*s at %s:%d", name_len(s->func), s->func, tidy_file(s->file), s->line);
        if (f->flags & COR_FRAME_DONE)
            cor__text_put(t, " (finished)");
        else if (!f->awaited)
            cor__text_put(t, " (running, or queued to run)");
    } else if (!(f->flags & COR_FRAME_STARTED)) {
        cor__text_put(t, "a task not started yet");
    } else if (f == d->queued) {
        cor__text_put(t, "a task queued to start");
    } else if (f->awaited) {
        cor__text_put(t, "a record awaiting a task (a task-group child)");
    } else {
        cor__text_put(t, "a leaf awaitable (an event, channel, semaphore or custom leaf)");
    }
}

/*
 * True if d may read g, reached from f: g does not run on another execution
 * context. Only g's executor is read (set before g started, by the thread
 * that started it; NULL before): g's other fields may be changing elsewhere.
 */
static bool readable(struct dumper *d, const cor_frame *f, const cor_frame *g)
{
    return !d->ctx || !g->env.ex.ops || cor__frame_on_ctx(d->ctx, f, g);
}

static void print_frame(struct dumper *d, int indent, int no, const cor_frame *f)
{
    char line[LINE];
    cor__text t = {line, sizeof line, 0};
    describe(d, f, &t);
    fprintf(d->out, "%*s#%d %s\n", indent, "", no, line);
    if (is_coroutine(f) && f->awaited)
        d->coroutines++;
}

static int print_chain(struct dumper *d, const cor_frame *top, int indent);

/* A join's children, each as a chain of its own, below the join's line. */
static void print_children(struct dumper *d, const cor_frame *jf, int indent)
{
    const struct cor__join *j = (const struct cor__join *)jf;
    for (uint32_t i = 0; i < j->n; i++) {
        const cor_frame *c = j->children[i];
        if (c && !readable(d, jf, c)) {
            fprintf(d->out, "%*schild %u: running on another execution context (not followed)\n",
                    indent, "", i);
            continue;
        }
        fprintf(d->out, "%*schild %u:%s\n", indent, "", i,
                !c                            ? " gone"
                : (c->flags & COR_FRAME_DONE) ? " finished"
                                              : "");
        if (c && !(c->flags & COR_FRAME_DONE))
            print_chain(d, c, indent + 2);
    }
}

/*
 * Prints the chain from top down to its bottom, innermost first, numbered
 * from 0; a join at the bottom lists its children under it. Returns the
 * next number.
 */
static int print_chain(struct dumper *d, const cor_frame *top, int indent)
{
    const cor_frame *path[MAX_DEPTH];
    int n = 0;
    const cor_frame *f = top;
    bool foreign = false;
    while (f && n < MAX_DEPTH) {
        path[n++] = f;
        const cor_frame *g = (f->flags & COR_FRAME_JOIN) ? NULL : f->awaited;
        if (g && !readable(d, f, g)) {
            foreign = true;
            break;
        }
        /* A child that finished waits for f to collect it: f is the bottom. */
        f = g && !(g->flags & COR_FRAME_DONE) ? g : NULL;
    }
    int no = 0;
    if (foreign)
        fprintf(d->out, "%*s#%d ... running on another execution context (not followed)\n", indent,
                "", no++);
    else if (f)
        fprintf(d->out, "%*s#%d ... (deeper than %d frames)\n", indent, "", no++, MAX_DEPTH);
    for (int i = n - 1; i >= 0; i--) {
        print_frame(d, indent, no++, path[i]);
        if (i == n - 1 && (path[i]->flags & COR_FRAME_JOIN))
            print_children(d, path[i], indent + 4);
    }
    return no;
}

/* cor_backtrace's body; queued: a handle queued on an executor, which waits for nothing. */
static int backtrace_of(const cor_frame *f, FILE *out, const cor_frame *queued)
{
    if (!f || !out)
        return -EINVAL;
    struct dumper d = {.out = out, .now = cor_clock_now(), .queued = queued};
    int no = print_chain(&d, f, 2);
    int up = 0;
    for (const cor_frame *c = f->continuation; c && up < MAX_DEPTH; c = c->continuation, up++)
        print_frame(&d, 2, no++, c);
    fflush(out);
    return 0;
}

int cor_backtrace(const cor_frame *f, FILE *out)
{
    return backtrace_of(f, out, NULL);
}

int cor__backtrace_queued(const cor_frame *h, FILE *out)
{
    return backtrace_of(h, out, h);
}

/* ---- the io_context's dump ---------------------------------------------------------------- */

/* The top of op's chain: the frame nothing awaits (a launch record, a group child's record). */
static const cor_frame *top_of(struct dumper *d, const cor_frame *f)
{
    for (int i = 0; i < 4 * MAX_DEPTH && f->continuation; i++) {
        const cor_frame *c = f->continuation;
        if (!readable(d, f, c))
            break;
        f = c;
    }
    return f;
}

/* Frames to print, each the top of a chain. */
struct tops {
    const cor_frame **v;
    size_t n, cap;
};

static int tops_add(struct tops *t, const cor_frame *f)
{
    if (t->n == t->cap) {
        size_t cap = t->cap ? 2 * t->cap : 16;
        const cor_frame **v = realloc(t->v, cap * sizeof *v);
        if (!v)
            return -ENOMEM;
        t->v = v;
        t->cap = cap;
    }
    t->v[t->n++] = f;
    return 0;
}

struct collect {
    struct dumper *d;
    struct tops t;
    int rc;
};

/* The roots list is newest first: collected under its lock, printed oldest first. */
static void collect_root(void *arg, cor_frame *root)
{
    struct collect *c = arg;
    if (!c->rc)
        c->rc = tops_add(&c->t, root);
}

static int collect_top(void *arg, cor__io_op *op)
{
    struct collect *c = arg;
    const cor_frame *top = top_of(c->d, cor__op_frame(op));
    if (cor__roots_holds(c->d->ctx, top))
        return 0; /* printed with the launched and spawned tasks */
    return tops_add(&c->t, top);
}

static int by_address(const void *a, const void *b)
{
    uintptr_t x = (uintptr_t) * (const cor_frame *const *)a;
    uintptr_t y = (uintptr_t) * (const cor_frame *const *)b;
    return (x > y) - (x < y);
}

/* Several operations may lead to one top (a join's children): keep each once. */
static void tops_unique(struct tops *t)
{
    if (t->n < 2)
        return;
    qsort(t->v, t->n, sizeof t->v[0], by_address);
    size_t k = 1;
    for (size_t i = 1; i < t->n; i++)
        if (t->v[i] != t->v[k - 1])
            t->v[k++] = t->v[i];
    t->n = k;
}

/* The dump itself, on a thread that may read io's frames now. */
static int dump_now(cor_io_context *io, FILE *out)
{
    struct dumper d = {.out = out, .ctx = &io->ctx, .now = cor_clock_now()};
    fprintf(out, "io_context %p (%s): %ld operations in flight, %ld queued handles, %zu timers\n",
            (void *)io, io->backend == COR_IO_BACKEND_EPOLL ? "epoll" : "io_uring", io->inflight,
            io->queued, io->wheel.count);
    /* Launch and group-child records leave the list only on this thread (they complete on
     * their executor, io's): what was collected stays valid. */
    struct collect roots = {.d = &d};
    cor__roots_walk(&io->ctx, collect_root, &roots);
    for (size_t i = roots.t.n; i-- > 0;) {
        fprintf(out, "task %d (%s):\n", ++d.tasks,
                cor__is_launch_root(roots.t.v[i]) ? "launched" : "spawned in a task group");
        print_chain(&d, roots.t.v[i], 2);
    }
    free(roots.t.v);
    struct collect c = {.d = &d};
    int rc = roots.rc ? roots.rc : cor__io_ops_walk(io, collect_top, &c);
    tops_unique(&c.t);
    for (size_t i = 0; i < c.t.n; i++) {
        fprintf(out, "task %d (not launched on this io_context):\n", ++d.tasks);
        print_chain(&d, c.t.v[i], 2);
    }
    free(c.t.v);
    fprintf(out, "%d tasks, %d suspended coroutines\n", d.tasks, d.coroutines);
    fflush(out);
    return rc;
}

/*
 * A dump posted to the owner. Two references: the caller's and the
 * queue's. The caller waits for `done`; if the owner leaves run first (the
 * request then sits in the queue), the caller takes `running`, marks the
 * request abandoned and dumps itself.
 */
enum { REQ_QUEUED, REQ_TAKEN, REQ_DONE, REQ_ABANDONED };

struct dump_req {
    cor_frame hdr;
    cor_io_context *io;
    FILE *out;
    int refs; /* atomic */
    int state, rc;
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static void req_unref(struct dump_req *r)
{
    if (__atomic_sub_fetch(&r->refs, 1, __ATOMIC_ACQ_REL))
        return;
    pthread_cond_destroy(&r->cond);
    pthread_mutex_destroy(&r->lock);
    free(r);
}

/* Takes the request for the owner; false if the caller gave up on it. */
static bool req_take(struct dump_req *r)
{
    pthread_mutex_lock(&r->lock);
    bool take = r->state == REQ_QUEUED;
    if (take)
        r->state = REQ_TAKEN;
    pthread_mutex_unlock(&r->lock);
    return take;
}

static void req_finish(struct dump_req *r, int rc)
{
    pthread_mutex_lock(&r->lock);
    r->state = REQ_DONE;
    r->rc = rc;
    pthread_cond_signal(&r->cond);
    pthread_mutex_unlock(&r->lock);
}

static cor_handle req_resume(cor_frame *f)
{
    struct dump_req *r = (struct dump_req *)f;
    if (req_take(r))
        req_finish(r, dump_now(r->io, r->out));
    req_unref(r);
    return COR_NOOP;
}

bool cor__io_is_dump_request(const cor_frame *h)
{
    return h->resume == req_resume;
}

/* Discarded with io's queue (teardown): the caller learns it never ran. */
void cor__io_dump_request_destroyed(cor_frame *f)
{
    struct dump_req *r = (struct dump_req *)f;
    if (req_take(r))
        req_finish(r, -ECANCELED);
    req_unref(r);
}

/* Takes io for the print (nobody drives it); a run that starts meanwhile waits for it. */
static bool grab(cor_io_context *io)
{
    uint32_t was = 0;
    return __atomic_compare_exchange_n(&io->running, &was, COR__IO_PEEKING, false, __ATOMIC_ACQUIRE,
                                       __ATOMIC_RELAXED);
}

static void release(cor_io_context *io)
{
    __atomic_store_n(&io->running, 0, __ATOMIC_RELEASE);
}

/* Waits for the owner to run r; if the owner left run meanwhile, dumps here instead. */
static int req_wait(struct dump_req *r)
{
    pthread_mutex_lock(&r->lock);
    while (r->state != REQ_DONE) {
        struct timespec ts;
        clock_gettime(CLOCK_REALTIME, &ts);
        ts.tv_nsec += 20 * 1000 * 1000;
        if (ts.tv_nsec >= 1000000000) {
            ts.tv_sec++;
            ts.tv_nsec -= 1000000000;
        }
        if (pthread_cond_timedwait(&r->cond, &r->lock, &ts) == 0 || r->state != REQ_QUEUED)
            continue;
        if (grab(r->io)) {
            r->state = REQ_ABANDONED;
            pthread_mutex_unlock(&r->lock);
            int rc = dump_now(r->io, r->out);
            release(r->io);
            return rc;
        }
    }
    int rc = r->rc;
    pthread_mutex_unlock(&r->lock);
    return rc;
}

static int dump_posted(cor_io_context *io, FILE *out)
{
    struct dump_req *r = calloc(1, sizeof *r);
    if (!r)
        return -ENOMEM;
    /* In-slot, no on_destroy: a teardown discards it with cor__io_dump_request_destroyed. */
    cor__frame_init(&r->hdr, req_resume, NULL, sizeof *r, _Alignof(struct dump_req),
                    COR_FRAME_IN_SLOT | COR_FRAME_STARTED, 0, 0);
    r->io = io;
    r->out = out;
    r->refs = 2;
    pthread_mutex_init(&r->lock, NULL);
    pthread_cond_init(&r->cond, NULL);
    cor__io_post_remote(io, &r->hdr);
    int rc = req_wait(r);
    req_unref(r);
    return rc;
}

int cor_io_context_dump(cor_io_context *io, FILE *out)
{
    if (!io || !out)
        return -EINVAL;
    if (cor__io_forked(io))
        return -EPERM;
    if (cor__io_running == io)
        return dump_now(io, out);
    if (grab(io)) {
        int rc = dump_now(io, out);
        release(io);
        return rc;
    }
    return dump_posted(io, out);
}
