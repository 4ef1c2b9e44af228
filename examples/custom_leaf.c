/*
 * custom_leaf: writing your own leaf awaitable. offload(fn, arg) runs a
 * blocking function on a thread of its own and completes the await back on
 * the awaiting coroutine's executor, so the coroutine never runs on the
 * foreign thread.
 *
 * The three rules of a leaf completed from another thread:
 *  1. its resume function (called once, when the leaf is awaited) takes a
 *     hold on the executor (cor_leaf_hold), so the run loop waits for it;
 *  2. the other thread stores the result, then calls cor_leaf_complete_post
 *     exactly once and touches the leaf no more (it lives in the awaiting
 *     frame's await slot, which the resumed coroutine reuses);
 *  3. the coroutine then resumes on its own executor's thread.
 *
 *     custom_leaf          prints "sum 5050, resumed on the io_context's thread"
 */
#include <pthread.h>
#include <stdio.h>
#include <coring/coring.h>

/* The leaf: its result, and what to run. */
struct offload {
    COR_LEAF_PROMISE(long);
    long (*fn)(void *arg);
    void *arg;
};

static void *offload_thread(void *p)
{
    struct offload *o = p;
    o->result = o->fn(o->arg);
    cor_leaf_complete_post(&o->cor_hdr); /* the last touch of o on this thread */
    return NULL;
}

/* Called once, when the leaf is awaited. */
static cor_handle offload_start(cor_frame *f)
{
    struct offload *o = (struct offload *)f;
    cor_leaf_hold(f);
    pthread_attr_t attr;
    pthread_t th;
    pthread_attr_init(&attr);
    pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
    int rc = pthread_create(&th, &attr, offload_thread, o);
    pthread_attr_destroy(&attr);
    if (rc) {
        o->result = -rc; /* no thread: complete at once, still through the executor */
        cor_leaf_complete_post(f);
    }
    return COR_NOOP;
}

/* The awaitable: COR_AWAIT(n, offload(fn, arg)) gives fn(arg), or -errno without a thread. */
static struct offload *offload(long (*fn)(void *arg), void *arg)
{
    struct offload *o = COR_LEAF_NEW(struct offload, offload_start);
    if (o) {
        o->fn = fn;
        o->arg = arg;
    }
    return o;
}

/* Something slow that must not run on the ring's thread. */
static long slow_sum(void *arg)
{
    long n = *(const int *)arg, sum = 0;
    for (long i = 1; i <= n; i++)
        sum += i;
    return sum;
}

struct app {
    COR_PROMISE(int);
    cor_io_context *io;
    int n;
    long sum;
};
COR_DEFINE(app, (cor_io_context * io), { self->io = io; })
{
    COR_BEGIN();
    self->n = 100;
    COR_AWAIT(self->sum, offload(slow_sum, &self->n));
    printf("sum %ld, resumed on %s\n", self->sum,
           cor_io_context_current() == self->io ? "the io_context's thread" : "another thread");
    COR_RETURN(0);
}

int main(void)
{
    cor_io_context *io;
    int rc = cor_io_context_create(&io, NULL);
    if (rc) {
        fprintf(stderr, "custom_leaf: %s\n", cor_strerror(rc));
        return 1;
    }
    COR_RUN_ASYNC(cor_io_context_executor(io), NULL, app(io));
    cor_io_context_run(io); /* returns once the offloaded call is back and app is done */
    cor_io_context_destroy(io);
    return 0;
}
