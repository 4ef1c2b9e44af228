/*
 * bench_channel: a channel send + receive per item (compose.h's sibling,
 * channel.h), against a mutex + condition-variable bounded queue measured in
 * the same run, both with room for 64 items of 16 bytes:
 *  1. within one executor: a producer and a consumer coroutine on one
 *     io_context, against one thread pushing and popping the locked queue;
 *  2. across two threads: the producer's executor on one thread, the
 *     consumer's on another, against a producer and a consumer thread on
 *     the locked queue (each blocks on its condition variable when full or
 *     empty).
 * The channel side uses COR_CHANNEL_SEND / COR_CHANNEL_RECV (no await while
 * there is room or an item); within one executor it is measured twice, as a
 * thread-safe channel and as a COR_CHANNEL_LOCAL one. ns per item (sent and
 * received), allocations per item on the calling thread.
 */
#include <pthread.h>
#include <string.h>

#include <coring/coring.h>

#include "harness.h"

enum { CAP = 64 };

struct item {
    uint64_t seq, payload;
};

/* ---- the baseline: a mutex + condvar bounded queue ---- */

struct locked_queue {
    pthread_mutex_t lock;
    pthread_cond_t not_empty, not_full;
    struct item buf[CAP];
    size_t head, count;
};

static void lq_init(struct locked_queue *q)
{
    pthread_mutex_init(&q->lock, NULL);
    pthread_cond_init(&q->not_empty, NULL);
    pthread_cond_init(&q->not_full, NULL);
    q->head = q->count = 0;
}

static void lq_destroy(struct locked_queue *q)
{
    pthread_cond_destroy(&q->not_full);
    pthread_cond_destroy(&q->not_empty);
    pthread_mutex_destroy(&q->lock);
}

static void lq_push(struct locked_queue *q, const struct item *it)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == CAP)
        pthread_cond_wait(&q->not_full, &q->lock);
    q->buf[(q->head + q->count++) % CAP] = *it;
    pthread_cond_signal(&q->not_empty);
    pthread_mutex_unlock(&q->lock);
}

static void lq_pop(struct locked_queue *q, struct item *it)
{
    pthread_mutex_lock(&q->lock);
    while (q->count == 0)
        pthread_cond_wait(&q->not_empty, &q->lock);
    *it = q->buf[q->head];
    q->head = (q->head + 1) % CAP;
    q->count--;
    pthread_cond_signal(&q->not_full);
    pthread_mutex_unlock(&q->lock);
}

static void lq_one_thread(void *arg, long iters)
{
    struct locked_queue *q = arg;
    struct item it = {0, 0}, out;
    uint64_t sum = 0;
    for (long i = 0; i < iters; i += CAP) {
        long n = iters - i < CAP ? iters - i : CAP;
        for (long k = 0; k < n; k++) {
            it.seq = (uint64_t)(i + k);
            lq_push(q, &it);
        }
        for (long k = 0; k < n; k++) {
            lq_pop(q, &out);
            sum += out.seq;
        }
    }
    bench_keep(sum);
}

struct lq_run {
    struct locked_queue *q;
    long n;
};

static void *lq_producer(void *arg)
{
    struct lq_run *r = arg;
    struct item it = {0, 0};
    for (long i = 0; i < r->n; i++) {
        it.seq = (uint64_t)i;
        lq_push(r->q, &it);
    }
    return NULL;
}

static void lq_two_threads(void *arg, long iters)
{
    struct lq_run r = {arg, iters};
    pthread_t t;
    pthread_create(&t, NULL, lq_producer, &r);
    struct item out;
    uint64_t sum = 0;
    for (long i = 0; i < iters; i++) {
        lq_pop(r.q, &out);
        sum += out.seq;
    }
    pthread_join(t, NULL);
    bench_keep(sum);
}

/* ---- the channel ---- */

struct sender {
    COR_PROMISE(int);
    cor_channel *ch;
    long i, n;
    struct item it;
    int rc;
};
COR_DEFINE_STATIC(sender, (cor_channel * ch, long n), {
    self->ch = ch;
    self->n = n;
})
{
    COR_BEGIN();
    self->it.payload = 0;
    for (self->i = 0; self->i < self->n; self->i++) {
        self->it.seq = (uint64_t)self->i;
        COR_CHANNEL_SEND(self->rc, self->ch, &self->it);
    }
    COR_RETURN(0);
}

struct receiver {
    COR_PROMISE(int);
    cor_channel *ch;
    long i, n;
    uint64_t sum;
    struct item it;
    int rc;
};
COR_DEFINE_STATIC(receiver, (cor_channel * ch, long n), {
    self->ch = ch;
    self->n = n;
})
{
    COR_BEGIN();
    self->sum = 0;
    for (self->i = 0; self->i < self->n; self->i++) {
        COR_CHANNEL_RECV(self->rc, self->ch, &self->it);
        self->sum += self->it.seq;
    }
    bench_keep(self->sum);
    COR_RETURN(0);
}

struct ch_arg {
    cor_manual *a, *b;
    cor_io_context *io;
    cor_channel ch, local;
};

/* Producer and consumer on one io_context (its owner-thread queue resumes a waiter). */
static void ch_one_executor(void *arg, long iters)
{
    struct ch_arg *c = arg;
    COR_RUN_ASYNC(cor_io_context_executor(c->io), NULL, receiver(&c->ch, iters));
    COR_RUN_ASYNC(cor_io_context_executor(c->io), NULL, sender(&c->ch, iters));
    cor_io_context_run(c->io);
}

static void ch_local(void *arg, long iters)
{
    struct ch_arg *c = arg;
    COR_RUN_ASYNC(cor_io_context_executor(c->io), NULL, receiver(&c->local, iters));
    COR_RUN_ASYNC(cor_io_context_executor(c->io), NULL, sender(&c->local, iters));
    cor_io_context_run(c->io);
}

static void *run_manual(void *m)
{
    cor_manual_run(m);
    return NULL;
}

static void ch_two_threads(void *arg, long iters)
{
    struct ch_arg *c = arg;
    COR_RUN_ASYNC(cor_manual_executor(c->b), NULL, sender(&c->ch, iters));
    pthread_t t;
    pthread_create(&t, NULL, run_manual, c->b);
    COR_RUN_ASYNC(cor_manual_executor(c->a), NULL, receiver(&c->ch, iters));
    cor_manual_run(c->a);
    pthread_join(t, NULL);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    long n = bench_iters(2 * 1000 * 1000);
    struct locked_queue q;
    lq_init(&q);
    struct ch_arg c;
    if (cor_manual_create(&c.a) || cor_manual_create(&c.b) || cor_io_context_create(&c.io, NULL) ||
        cor_channel_init(&c.ch, sizeof(struct item), CAP, NULL) ||
        cor_channel_init_flags(&c.local, sizeof(struct item), CAP, NULL, COR_CHANNEL_LOCAL))
        return 1;
    if (bench_enabled("channel.one_executor")) {
        bench_result base =
            bench_measure("baseline.mutex_condvar_queue.one_thread", lq_one_thread, &q, n);
        bench_report(&base, NULL, NULL);
        bench_result r = bench_measure("channel.one_executor", ch_one_executor, &c, n);
        bench_report(&r, &base, NULL);
        bench_result l = bench_measure("channel.one_executor_local", ch_local, &c, n);
        bench_report(&l, &base, NULL);
    }
    if (bench_enabled("channel.two_threads")) {
        long m = n / 4;
        bench_result base =
            bench_measure("baseline.mutex_condvar_queue.two_threads", lq_two_threads, &q, m);
        bench_report(&base, NULL, NULL);
        bench_result r = bench_measure("channel.two_threads", ch_two_threads, &c, m);
        bench_report(&r, &base, NULL);
    }
    cor_channel_destroy(&c.ch);
    cor_channel_destroy(&c.local);
    cor_manual_destroy(c.a);
    cor_manual_destroy(c.b);
    cor_io_context_destroy(c.io);
    lq_destroy(&q);
    return 0;
}
