/*
 * Channels: order and exactly-once delivery within one executor and across
 * threads (MPSC and MPMC, a million items each, every sender's items in
 * order), suspension when full and empty, close (senders refused, receivers
 * drain then get -EPIPE), cancellation of waiting sends and receives
 * without loss or duplication, and bad input.
 */
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <criterion/criterion.h>

#include "util.h"

/* An item: who sent it and its sequence number. */
struct item {
    uint32_t sender, seq;
};

/* Sends n items tagged `id`, then returns how many went in. */
struct producer {
    COR_PROMISE(long);
    cor_channel *ch;
    uint32_t id;
    long n, i;
    struct item it;
    int rc;
};
COR_DEFINE_STATIC(producer, (cor_channel * ch, uint32_t id, long n), {
    self->ch = ch;
    self->id = id;
    self->n = n;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        self->it = (struct item){self->id, (uint32_t)self->i};
        COR_AWAIT(self->rc, cor_channel_send(self->ch, &self->it));
        if (self->rc)
            COR_RETURN(-1000 + self->rc);
    }
    COR_RETURN(self->i);
}

/* Receives until the channel is closed and empty, checking per-sender order in next[]. */
struct consumer {
    COR_PROMISE(long);
    cor_channel *ch;
    uint32_t *next; /* next expected seq per sender (shared: each sender's items reach one
                       consumer at a time only in the MPSC tests) */
    long got, bad;
    struct item it;
    int rc;
    bool check_order;
};
COR_DEFINE_STATIC(consumer, (cor_channel * ch, uint32_t *next, bool check_order), {
    self->ch = ch;
    self->next = next;
    self->check_order = check_order;
})
{
    COR_BEGIN();
    self->got = self->bad = 0;
    for (;;) {
        COR_AWAIT(self->rc, cor_channel_recv(self->ch, &self->it));
        if (self->rc == -EPIPE)
            break;
        if (self->rc)
            COR_RETURN(-2000 + self->rc);
        if (self->check_order && self->it.seq != self->next[self->it.sender]++)
            self->bad++;
        self->got++;
    }
    COR_RETURN(self->bad ? -1 : self->got);
}

static void add_long(void *user, void *result)
{
    __atomic_fetch_add((long *)user, *(long *)result, __ATOMIC_RELAXED);
}

static void store_int(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

/* Closes ch once `remaining` producers are done (the last producer to finish does it). */
struct closer_state {
    cor_channel *ch;
    long remaining, sent;
};

static void producer_done(void *user, void *result)
{
    struct closer_state *c = user;
    __atomic_fetch_add(&c->sent, *(long *)result, __ATOMIC_RELAXED);
    if (__atomic_sub_fetch(&c->remaining, 1, __ATOMIC_ACQ_REL) == 0)
        cor_channel_close(c->ch);
}

Test(channel, one_executor_fifo_with_a_small_buffer)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_channel ch;
    cr_assert_eq(cor_channel_init(&ch, sizeof(struct item), 4, NULL), 0);
    static uint32_t next[1];
    next[0] = 0;
    struct closer_state cs = {.ch = &ch, .remaining = 1};
    long got = 0;
    cor_launch_options po = {.on_result = producer_done, .user = &cs};
    cor_launch_options co = {.on_result = add_long, .user = &got};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &co, consumer(&ch, next, true)), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &po, producer(&ch, 0, 100000)), 0);
    cor_manual_run(m);
    cr_assert_eq(cs.sent, 100000);
    cr_assert_eq(got, 100000, "every item once, in order (got %ld)", got);
    cr_assert_eq(cor_channel_destroy(&ch), 0);
    cor_manual_destroy(m);
}

/* Runs a manual executor on a thread of its own until it has no work. */
static void *run_manual(void *m)
{
    cor_manual_run(m);
    return NULL;
}

/* producers x consumers, each on its own thread and executor, n items per producer. */
static void threads(int producers, int consumers, long n, size_t capacity)
{
    enum { MAX = 4 };
    cor_manual *pm[MAX], *cm[MAX];
    pthread_t pt[MAX], ct[MAX];
    cor_channel ch;
    cr_assert_eq(cor_channel_init(&ch, sizeof(struct item), capacity, NULL), 0);
    static uint32_t next[MAX][MAX];
    memset(next, 0, sizeof next);
    struct closer_state cs = {.ch = &ch, .remaining = producers};
    long got = 0;
    cor_launch_options po = {.on_result = producer_done, .user = &cs};
    cor_launch_options co = {.on_result = add_long, .user = &got};
    for (int c = 0; c < consumers; c++) {
        cr_assert_eq(cor_manual_create(&cm[c]), 0);
        /* One consumer sees each sender's items in send order; several share them. */
        cr_assert_eq(
            COR_RUN_ASYNC(cor_manual_executor(cm[c]), &co, consumer(&ch, next[c], consumers == 1)),
            0);
        cr_assert_eq(pthread_create(&ct[c], NULL, run_manual, cm[c]), 0);
    }
    for (int p = 0; p < producers; p++) {
        cr_assert_eq(cor_manual_create(&pm[p]), 0);
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(pm[p]), &po, producer(&ch, (uint32_t)p, n)),
                     0);
        cr_assert_eq(pthread_create(&pt[p], NULL, run_manual, pm[p]), 0);
    }
    for (int p = 0; p < producers; p++)
        pthread_join(pt[p], NULL);
    for (int c = 0; c < consumers; c++)
        pthread_join(ct[c], NULL);
    cr_assert_eq(cs.sent, producers * n);
    cr_assert_eq(got, producers * n, "every item exactly once: %ld of %ld", got, producers * n);
    cr_assert_eq(cor_channel_destroy(&ch), 0);
    for (int p = 0; p < producers; p++)
        cor_manual_destroy(pm[p]);
    for (int c = 0; c < consumers; c++)
        cor_manual_destroy(cm[c]);
}

Test(channel, mpsc_three_threads_a_million_items_in_order, .timeout = 120)
{
    threads(3, 1, 1000000 / 3, 64);
}

/* Several consumers: exactly once overall (each consumer's count adds up), order not checked. */
Test(channel, mpmc_two_by_two_a_million_items_exactly_once, .timeout = 120)
{
    threads(2, 2, 500000, 16);
}

/* Close: a blocked sender gets -EPIPE; receivers drain what is buffered, then -EPIPE. */
struct send_n {
    COR_PROMISE(int);
    cor_channel *ch;
    int i, n, rc, v;
};
COR_DEFINE_STATIC(send_n, (cor_channel * ch, int n), {
    self->ch = ch;
    self->n = n;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        self->v = self->i;
        COR_AWAIT(self->rc, cor_channel_send(self->ch, &self->v));
        if (self->rc)
            COR_RETURN(self->rc == -EPIPE ? self->i : -1);
    }
    COR_RETURN(self->i);
}

struct drain {
    COR_PROMISE(int);
    cor_channel *ch;
    int v, rc, sum, count;
};
COR_DEFINE_STATIC(drain, (cor_channel * ch), { self->ch = ch; })
{
    COR_BEGIN();
    self->sum = self->count = 0;
    for (;;) {
        COR_AWAIT(self->rc, cor_channel_recv(self->ch, &self->v));
        if (self->rc)
            break;
        self->sum += self->v;
        self->count++;
    }
    COR_RETURN(self->rc == -EPIPE ? self->count : -1);
}

Test(channel, close_refuses_senders_and_lets_receivers_drain)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_channel ch;
    int storage[3];
    cr_assert_eq(cor_channel_init(&ch, sizeof(int), 3, storage), 0, "a caller's buffer");
    struct outcome s = {0}, d = {0};
    cor_launch_options so = {.on_result = rec_result, .user = &s};
    cor_launch_options dopt = {.on_result = rec_result, .user = &d};
    /* 3 fit, the 4th send waits. */
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &so, send_n(&ch, 10)), 0);
    cor_manual_poll(m);
    cr_assert_eq(cor_channel_size(&ch), 3);
    cr_assert_eq(cor_channel_close(&ch), 0);
    cor_manual_poll(m);
    cr_assert_eq(s.results, 1);
    cr_assert_eq(s.result, 3, "the waiting send was refused with -EPIPE after 3 went in");
    cr_assert_eq(cor_channel_try_send(&ch, &(int){5}), -EPIPE);
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &dopt, drain(&ch)), 0);
    cor_manual_run(m);
    cr_assert_eq(d.result, 3, "the 3 buffered items, then -EPIPE");
    int v;
    cr_assert_eq(cor_channel_try_recv(&ch, &v), -EPIPE);
    cr_assert_eq(cor_channel_close(&ch), 0, "closing twice is fine");
    cr_assert_eq(cor_channel_destroy(&ch), 0);
    cor_manual_destroy(m);
}

/* Cancellation: waiting sends and receives stopped; nothing lost, nothing twice. */
struct stoppable_recv {
    COR_PROMISE(int);
    cor_channel *ch;
    int v, rc;
};
COR_DEFINE_STATIC(stoppable_recv, (cor_channel * ch), { self->ch = ch; })
{
    COR_BEGIN();
    self->v = -1;
    COR_AWAIT(self->rc, cor_channel_recv(self->ch, &self->v));
    COR_RETURN(self->rc ? self->rc : self->v);
}

Test(channel, canceled_waits_move_nothing)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_channel ch;
    cr_assert_eq(cor_channel_init(&ch, sizeof(int), 1, NULL), 0);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    struct outcome r = {0};
    cor_launch_options ro = {
        .stop = cor_stop_source_token(&src), .on_result = rec_result, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &ro, stoppable_recv(&ch)), 0);
    cor_manual_poll(m);
    cor_stop_source_request(&src);
    cor_manual_run(m);
    cr_assert_eq(r.result, -ECANCELED);
    /* The item sent now is not lost: the canceled receiver did not take it. */
    cr_assert_eq(cor_channel_try_send(&ch, &(int){42}), 0);
    int v;
    cr_assert_eq(cor_channel_try_recv(&ch, &v), 0);
    cr_assert_eq(v, 42);

    /* A waiting send, stopped: its item never goes in. */
    cor_stop_source s2 = COR_STOP_SOURCE_INIT;
    struct outcome s = {0};
    cor_launch_options so = {
        .stop = cor_stop_source_token(&s2), .on_result = rec_result, .user = &s};
    cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &so, send_n(&ch, 5)), 0);
    cor_manual_poll(m);
    cr_assert_eq(cor_channel_size(&ch), 1, "one in, the second send waits");
    cor_stop_source_request(&s2);
    cor_manual_run(m);
    cr_assert_eq(s.results, 1);
    cr_assert_eq(s.result, -1, "send_n reports a non-EPIPE error as -1 (it was -ECANCELED)");
    cr_assert_eq(cor_channel_size(&ch), 1);
    cr_assert_eq(cor_channel_try_recv(&ch, &v), 0);
    cr_assert_eq(v, 0);
    cr_assert_eq(cor_channel_try_recv(&ch, &v), -EAGAIN, "the canceled send's item never went in");
    cr_assert_eq(cor_channel_destroy(&ch), 0);
    cor_manual_destroy(m);
}

/* Cross-thread cancellation racing the hand-off: every item accounted for exactly once. */
struct racer {
    COR_PROMISE(int);
    cor_channel *ch;
    long *received;
    int v, rc;
};
COR_DEFINE_STATIC(racer, (cor_channel * ch, long *received), {
    self->ch = ch;
    self->received = received;
})
{
    COR_BEGIN();
    COR_AWAIT(self->rc, cor_channel_recv(self->ch, &self->v));
    if (self->rc == 0)
        __atomic_fetch_add(self->received, 1, __ATOMIC_RELAXED);
    COR_RETURN(self->rc);
}

struct stopper_arg {
    cor_stop_source *src;
    cor_channel *ch;
    long *sent;
};

static void *stop_only(void *p)
{
    struct stopper_arg *a = p;
    cor_stop_source_request(a->src);
    return NULL;
}

static void *stop_and_send(void *p)
{
    struct stopper_arg *a = p;
    if (cor_channel_try_send(a->ch, &(int){1}) == 0)
        ++*a->sent;
    cor_stop_source_request(a->src);
    return NULL;
}

Test(channel, cancellation_racing_a_send_loses_nothing, .timeout = 120)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_channel ch;
    cr_assert_eq(cor_channel_init(&ch, sizeof(int), 8, NULL), 0);
    long received = 0, sent = 0;
    for (int i = 0; i < 2000; i++) {
        cor_stop_source src = COR_STOP_SOURCE_INIT;
        cor_launch_options o = {.stop = cor_stop_source_token(&src)};
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, racer(&ch, &received)), 0);
        cor_manual_poll(m); /* the receiver waits now */
        struct stopper_arg a = {&src, &ch, &sent};
        pthread_t t;
        cr_assert_eq(pthread_create(&t, NULL, stop_and_send, &a), 0);
        pthread_join(t, NULL);
        cor_manual_run(m);
        /* Whatever the race decided, an item is either received or still buffered. */
        int v;
        while (cor_channel_try_recv(&ch, &v) == 0)
            received++;
        cr_assert_eq(received, sent, "round %d: %ld sent, %ld received", i, sent, received);
    }
    cr_assert_eq(cor_channel_destroy(&ch), 0);
    cor_manual_destroy(m);
}

Test(channel, bad_input)
{
    cor_channel ch;
    int v = 0;
    cr_assert_eq(cor_channel_init(NULL, 4, 4, NULL), -EINVAL);
    cr_assert_eq(cor_channel_init(&ch, 0, 4, NULL), -EINVAL);
    cr_assert_eq(cor_channel_init(&ch, 4, 0, NULL), -EINVAL);
    cr_assert_eq(cor_channel_init(&ch, 70000, 4, NULL), -EINVAL);
    cr_assert_eq(cor_channel_try_send(NULL, &v), -EINVAL);
    cr_assert_eq(cor_channel_try_recv(NULL, &v), -EINVAL);
    cr_assert_eq(cor_channel_close(NULL), -EINVAL);
    cr_assert_eq(cor_channel_destroy(NULL), -EINVAL);
    cr_assert_eq(cor_channel_size(NULL), 0);
    cr_assert_eq(cor_channel_init(&ch, sizeof v, 2, NULL), 0);
    cr_assert_eq(cor_channel_try_send(&ch, NULL), -EINVAL);
    cr_assert_eq(cor_channel_try_recv(&ch, &v), -EAGAIN);
    struct outcome oc = {0};
    cor_launch_options o = {.on_result = rec_result, .user = &oc};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, stoppable_recv(NULL)), 0);
    cr_assert_eq(oc.result, -EINVAL);
    cr_assert_eq(cor_channel_destroy(&ch), 0);
}

/* ---- the fast-path macros and local channels ---- */

struct macro_pair {
    COR_PROMISE(long);
    cor_channel *ch;
    long i, n, sum;
    int rc, v;
    bool sender;
};
COR_DEFINE_STATIC(macro_pair, (cor_channel * ch, long n, bool sender), {
    self->ch = ch;
    self->n = n;
    self->sender = sender;
})
{
    COR_BEGIN();
    self->sum = 0;
    for (self->i = 0; self->i < self->n; self->i++) {
        if (self->sender) {
            self->v = (int)self->i;
            COR_CHANNEL_SEND(self->rc, self->ch, &self->v);
        } else {
            COR_CHANNEL_RECV(self->rc, self->ch, &self->v);
            if (self->rc == 0 && self->v != (int)self->i)
                COR_RETURN(-1); /* out of order */
            self->sum += self->v;
        }
        if (self->rc)
            COR_RETURN(self->rc);
    }
    COR_RETURN(self->sum);
}

static void pair_on_io(unsigned flags)
{
    cor_io_context *io;
    cr_assert_eq(cor_io_context_create(&io, NULL), 0);
    cor_channel ch;
    cr_assert_eq(cor_channel_init_flags(&ch, sizeof(int), 5, NULL, flags), 0);
    long got = 0, sent = 0;
    cor_launch_options ro = {.on_result = add_long, .user = &got};
    cor_launch_options so = {.on_result = add_long, .user = &sent};
    long n = 100000;
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &ro, macro_pair(&ch, n, false)), 0);
    cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &so, macro_pair(&ch, n, true)), 0);
    cor_io_context_run(io);
    cr_assert_eq(got, n * (n - 1) / 2, "every item once, in order");
    cr_assert_eq(cor_channel_destroy(&ch), 0);
    cor_io_context_destroy(io);
}

Test(channel, fast_path_macros_on_an_io_context)
{
    pair_on_io(0);
}

Test(channel, local_channel_on_an_io_context)
{
    pair_on_io(COR_CHANNEL_LOCAL);
}

/* Items of whole words go through the fast paths' word-by-word copy: every field arrives. */
struct words {
    uint64_t a, b, c;
};

struct word_pair {
    COR_PROMISE(int);
    cor_channel *ch;
    long i, n;
    int rc;
    bool sender;
    struct words w;
};
COR_DEFINE_STATIC(word_pair, (cor_channel * ch, long n, bool sender), {
    self->ch = ch;
    self->n = n;
    self->sender = sender;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->n; self->i++) {
        if (self->sender) {
            self->w.a = (uint64_t)self->i;
            self->w.b = ~self->w.a;
            self->w.c = self->w.a * 0x9e3779b97f4a7c15ull;
            COR_CHANNEL_SEND(self->rc, self->ch, &self->w);
        } else {
            memset(&self->w, 0, sizeof self->w);
            COR_CHANNEL_RECV(self->rc, self->ch, &self->w);
            /* (A local does not live across an await: the index is read again.) */
            uint64_t x = (uint64_t)self->i;
            if (self->rc == 0 && (self->w.a != x || self->w.b != ~x ||
                                  self->w.c != x * 0x9e3779b97f4a7c15ull))
                COR_RETURN(-1);
        }
        if (self->rc)
            COR_RETURN(self->rc);
    }
    COR_RETURN(0);
}

Test(channel, word_sized_items_arrive_whole_on_both_kinds)
{
    for (int local = 0; local < 2; local++) {
        cor_io_context *io;
        cr_assert_eq(cor_io_context_create(&io, NULL), 0);
        cor_channel ch;
        cr_assert_eq(cor_channel_init_flags(&ch, sizeof(struct words), 7, NULL,
                                            local ? COR_CHANNEL_LOCAL : 0),
                     0);
        int got = 1, sent = 1;
        cor_launch_options ro = {.on_result = store_int, .user = &got};
        cor_launch_options so = {.on_result = store_int, .user = &sent};
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &ro, word_pair(&ch, 10000, false)),
                     0);
        cr_assert_eq(COR_RUN_ASYNC(cor_io_context_executor(io), &so, word_pair(&ch, 10000, true)),
                     0);
        cor_io_context_run(io);
        cr_assert_eq(got, 0, "%s channel: every item whole and in order", local ? "local" : "shared");
        cr_assert_eq(sent, 0);
        cr_assert_eq(cor_channel_destroy(&ch), 0);
        cor_io_context_destroy(io);
    }
}

static void *try_from_elsewhere(void *p)
{
    cor_channel *ch = p;
    int v = 1;
    long rc = cor_channel_try_send(ch, &v);
    return (void *)rc;
}

Test(channel, local_channel_refuses_other_threads_and_bad_sizes)
{
    cor_channel ch;
    cr_assert_eq(cor_channel_init_flags(&ch, sizeof(int), 2, NULL, 7), -EINVAL);
    cr_assert_eq(cor_channel_init_flags(&ch, sizeof(int), 2, NULL, COR_CHANNEL_LOCAL), 0);
    pthread_t t;
    void *rc;
    cr_assert_eq(pthread_create(&t, NULL, try_from_elsewhere, &ch), 0);
    pthread_join(t, &rc);
    cr_assert_eq((long)rc, -EPERM, "another thread is refused");
    cr_assert_eq(cor_channel_size(&ch), 0);
    long wrong = 0;
    cr_assert_eq(cor__channel_send_fast(&ch, &wrong, sizeof wrong), -EINVAL,
                 "a long is not an int");
    int v = 3;
    cr_assert_eq(cor__channel_send_fast(&ch, &v, sizeof v), 0);
    cr_assert_eq(cor__channel_recv_fast(&ch, &v, sizeof v), 0);
    cr_assert_eq(v, 3);
    cr_assert_eq(cor_channel_destroy(&ch), 0);
}

/* A local channel's waiter canceled from another thread: the list is still consistent. */
Test(channel, local_channel_waiter_canceled_from_another_thread)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_channel ch;
    cr_assert_eq(cor_channel_init_flags(&ch, sizeof(int), 1, NULL, COR_CHANNEL_LOCAL), 0);
    long received = 0, sent = 0;
    for (int i = 0; i < 500; i++) {
        cor_stop_source src = COR_STOP_SOURCE_INIT;
        cor_launch_options o = {.stop = cor_stop_source_token(&src)};
        cr_assert_eq(COR_RUN_ASYNC(cor_manual_executor(m), &o, racer(&ch, &received)), 0);
        cor_manual_poll(m);
        pthread_t t;
        struct stopper_arg a = {&src, &ch, &sent};
        /* Only the stop crosses threads here (a send from there would be -EPERM). */
        a.ch = NULL;
        cr_assert_eq(pthread_create(&t, NULL, stop_only, &a), 0);
        pthread_join(t, NULL);
        cor_manual_run(m);
        int v = i;
        cr_assert_eq(cor_channel_try_send(&ch, &v), 0, "round %d: the slot is free", i);
        cr_assert_eq(cor_channel_try_recv(&ch, &v), 0);
        cr_assert_eq(v, i);
    }
    cr_assert_eq(received, 0);
    cr_assert_eq(cor_channel_destroy(&ch), 0);
    cor_manual_destroy(m);
}
