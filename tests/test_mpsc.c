/* The intrusive MPSC queue: every node popped exactly once, FIFO per producer. */
#include <stdlib.h>
#include <pthread.h>
#include <criterion/criterion.h>

#include "mpsc.h"

struct node {
    cor_frame hdr;
    int producer;
    long seq;
};

Test(mpsc, single_thread_fifo_and_empty)
{
    cor__mpsc q;
    cor__mpsc_init(&q);
    cor_frame *out;
    cr_assert(cor__mpsc_empty(&q));
    cr_assert_eq(cor__mpsc_pop(&q, &out), COR__MPSC_EMPTY);
    struct node n[5];
    for (int i = 0; i < 5; i++) {
        n[i].seq = i;
        cor__mpsc_push(&q, &n[i].hdr);
    }
    cr_assert(!cor__mpsc_empty(&q));
    for (int i = 0; i < 5; i++) {
        cr_assert_eq(cor__mpsc_pop(&q, &out), COR__MPSC_ITEM);
        cr_assert_eq(((struct node *)out)->seq, i);
    }
    cr_assert_eq(cor__mpsc_pop(&q, &out), COR__MPSC_EMPTY);
    cr_assert(cor__mpsc_empty(&q));
    /* Reuse after draining (the stub went around). */
    cor__mpsc_push(&q, &n[0].hdr);
    cr_assert_eq(cor__mpsc_pop(&q, &out), COR__MPSC_ITEM);
    cr_assert_eq(out, &n[0].hdr);
}

#define PRODUCERS 4
#define PER 250000

struct prod {
    cor__mpsc *q;
    struct node *nodes;
    int id;
};

static void *produce(void *arg)
{
    struct prod *p = arg;
    for (long i = 0; i < PER; i++) {
        p->nodes[i].producer = p->id;
        p->nodes[i].seq = i;
        cor__mpsc_push(p->q, &p->nodes[i].hdr);
    }
    return NULL;
}

Test(mpsc, four_producers_every_node_once_fifo_per_producer, .timeout = 120)
{
    cor__mpsc q;
    cor__mpsc_init(&q);
    struct prod p[PRODUCERS];
    pthread_t t[PRODUCERS];
    for (int i = 0; i < PRODUCERS; i++) {
        p[i].q = &q;
        p[i].id = i;
        p[i].nodes = calloc(PER, sizeof(struct node));
        cr_assert_not_null(p[i].nodes);
        cr_assert_eq(pthread_create(&t[i], NULL, produce, &p[i]), 0);
    }
    long next[PRODUCERS] = {0};
    long got = 0, busy = 0;
    while (got < (long)PRODUCERS * PER) {
        cor_frame *out;
        int rc = cor__mpsc_pop(&q, &out);
        if (rc == COR__MPSC_ITEM) {
            struct node *n = (struct node *)out;
            cr_assert_eq(n->seq, next[n->producer], "producer %d out of order", n->producer);
            next[n->producer]++;
            got++;
        } else if (rc == COR__MPSC_BUSY) {
            busy++;
        }
    }
    for (int i = 0; i < PRODUCERS; i++) {
        pthread_join(t[i], NULL);
        cr_assert_eq(next[i], PER);
        free(p[i].nodes);
    }
    cor_frame *out;
    cr_assert_eq(cor__mpsc_pop(&q, &out), COR__MPSC_EMPTY);
    cr_log_info("busy pops seen: %ld", busy);
}
