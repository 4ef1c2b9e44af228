/*
 * An intrusive FIFO of frames linked through cor_frame.next: the queue of
 * the manual executor and the thread pool (under their locks) and the
 * io_context's owner-thread queue. Posting a handle never allocates.
 */
#ifndef CORING_SRC_FIFO_H
#define CORING_SRC_FIFO_H

#include "coring/task.h"

typedef struct cor__fifo {
    cor_frame *head, *tail;
} cor__fifo;

static inline bool cor__fifo_empty(const cor__fifo *q)
{
    return q->head == NULL;
}

static inline void cor__fifo_push(cor__fifo *q, cor_frame *h)
{
    h->next = NULL;
    if (q->tail)
        q->tail->next = h;
    else
        q->head = h;
    q->tail = h;
}

/* The oldest frame, or NULL when empty. */
static inline cor_frame *cor__fifo_pop(cor__fifo *q)
{
    cor_frame *h = q->head;
    if (h) {
        q->head = h->next;
        if (!q->head)
            q->tail = NULL;
        h->next = NULL;
    }
    return h;
}

#endif
