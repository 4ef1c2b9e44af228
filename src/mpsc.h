/*
 * An intrusive lock-free multi-producer single-consumer FIFO of frames
 * (Vyukov's algorithm), linked through cor_frame.next. Producers never
 * block or spin: a push is one exchange and one store. The consumer may see
 * the queue momentarily inconsistent while a producer is between those two
 * steps; pop then reports COR__MPSC_BUSY rather than "empty", so a consumer
 * about to sleep knows an item is on its way and must not lose its wake-up.
 */
#ifndef CORING_SRC_MPSC_H
#define CORING_SRC_MPSC_H

#include "coring/task.h"

typedef struct cor__mpsc {
    cor_frame *head; /* producers: the most recently pushed node */
    char pad[64 - sizeof(cor_frame *)];
    cor_frame *tail; /* consumer: the next node to pop          */
    cor_frame stub;
} cor__mpsc;

enum { COR__MPSC_ITEM = 0, COR__MPSC_EMPTY = 1, COR__MPSC_BUSY = 2 };

static inline void cor__mpsc_init(cor__mpsc *q)
{
    q->stub.next = NULL;
    q->head = &q->stub;
    q->tail = &q->stub;
}

/* Any thread. */
static inline void cor__mpsc_push(cor__mpsc *q, cor_frame *n)
{
    __atomic_store_n(&n->next, NULL, __ATOMIC_RELAXED);
    cor_frame *prev = __atomic_exchange_n(&q->head, n, __ATOMIC_ACQ_REL);
    /* Until this store the consumer cannot reach n: that is the BUSY window. */
    __atomic_store_n(&prev->next, n, __ATOMIC_RELEASE);
}

/* Consumer only. Stores the oldest frame in *out and returns COR__MPSC_ITEM, or EMPTY, or BUSY. */
static inline int cor__mpsc_pop(cor__mpsc *q, cor_frame **out)
{
    cor_frame *tail = q->tail;
    cor_frame *next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
    if (tail == &q->stub) {
        if (!next)
            return __atomic_load_n(&q->head, __ATOMIC_ACQUIRE) == tail ? COR__MPSC_EMPTY
                                                                       : COR__MPSC_BUSY;
        q->tail = next;
        tail = next;
        next = __atomic_load_n(&next->next, __ATOMIC_ACQUIRE);
    }
    if (next) {
        q->tail = next;
        *out = tail;
        return COR__MPSC_ITEM;
    }
    if (__atomic_load_n(&q->head, __ATOMIC_ACQUIRE) != tail)
        return COR__MPSC_BUSY;
    /* tail is the last node: put the stub behind it so tail can be handed out. */
    cor__mpsc_push(q, &q->stub);
    next = __atomic_load_n(&tail->next, __ATOMIC_ACQUIRE);
    if (next) {
        q->tail = next;
        *out = tail;
        return COR__MPSC_ITEM;
    }
    return COR__MPSC_BUSY;
}

/* Consumer only: true if nothing is queued and no push is in flight. */
static inline bool cor__mpsc_empty(cor__mpsc *q)
{
    return q->tail == &q->stub && !__atomic_load_n(&q->stub.next, __ATOMIC_ACQUIRE) &&
           __atomic_load_n(&q->head, __ATOMIC_ACQUIRE) == &q->stub;
}

#endif
