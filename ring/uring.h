/*
 * What the two halves of the io_uring backend share: ring/uring.c (setup,
 * submission, completion, wake-ups, registered files) and
 * ring/uring_stream.c (provided buffer rings and multishot streams). Not
 * installed; nothing outside ring/ includes it.
 *
 * user_data encoding. An operation's SQE carries the cor__io_op pointer
 * (8-byte aligned); a multishot stream's request carries the cor__stream
 * pointer with bit 1 set. Values below UD_LIMIT are internal tags (no
 * pointer is that small). liburing's own timeout tag
 * (LIBURING_UDATA_TIMEOUT) is ignored.
 */
#ifndef CORING_RING_URING_H
#define CORING_RING_URING_H

#include <pthread.h>
#include <liburing.h>

#include "io_seam.h"

enum {
    UD_IGNORE = 0,  /* cancel requests, failed MSG_RING sends            */
    UD_EVENTFD = 2, /* the armed eventfd read: a cross-thread wake-up    */
    UD_MSG = 4,     /* a MSG_RING wake-up from another ring              */
    UD_LIMIT = 4096,
    UD_STREAM = 2 /* tag bit of a stream's request                       */
};

/* bk_flags */
enum {
    BK_BACKLOG = 1u << 0,        /* waiting in the backlog for room in the SQ      */
    BK_CANCELED = 1u << 1,       /* canceled while in the backlog                  */
    BK_CANCEL_BACKLOG = 1u << 2, /* its cancel waits for room in the SQ            */
    BK_READY = 1u << 3,          /* a STREAM_NEXT whose result is on the ready list */
    BK_ZC = 1u << 4,             /* a SEND issued as SEND_ZC                        */
    BK_ZC_SENT = 1u << 5,        /* its result came (in bk[1]); its notification not */
    BK_PLAIN = 1u << 6,          /* a SEND that SEND_ZC refused: issued again, plain */
    BK_STOP_ASKED = 1u << 7      /* its cancel was asked for (sent or waiting)      */
};

/* Newer than liburing 2.3 (kernel 6.10+): receive bundles, probed at setup. */
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif
/* Newer than liburing 2.3 (kernel 6.6+): an SQ without its index array (uring.c maps it). */
#ifndef IORING_SETUP_NO_SQARRAY
#define IORING_SETUP_NO_SQARRAY (1U << 16)
#endif
/* Newer than liburing 2.3 (kernel 6.13+): growing the CQ, probed when the driving thread binds. */
#ifndef IORING_REGISTER_RESIZE_RINGS
#define IORING_REGISTER_RESIZE_RINGS 33
#endif
/* Newer than liburing 2.3 (kernel 6.12+): incrementally consumed buffer rings, probed at setup. */
#ifndef IOU_PBUF_RING_INC
#define IOU_PBUF_RING_INC 2 /* io_uring_buf_reg.flags (liburing 2.3 calls that field pad) */
#endif
#ifndef IORING_CQE_F_BUF_MORE
#define IORING_CQE_F_BUF_MORE (1U << 4) /* the kernel goes on filling the buffer */
#endif

struct cor__backend {
    struct io_uring ring;
    unsigned features;  /* COR_IO_* in force                          */
    unsigned requested; /* COR_IO_* requested                          */
    int efd;            /* wake-up eventfd                             */
    bool efd_armed;     /* a read on efd is in the ring                */
    bool closing;       /* cancel_all was called: do not re-arm        */
    bool disabled;      /* created with R_DISABLED, not yet enabled    */
    bool no_msg_ring;   /* the kernel lacks IORING_OP_MSG_RING         */
    unsigned send_zc_min; /* sends of at least this many bytes go SEND_ZC (0: none) */
    int zc_refused_fd;    /* the last socket SEND_ZC refused (a Unix socket): plain sends */
    bool bundles;         /* multishot receives take bundles (IORING_FEAT_RECVSEND_BUNDLE) */
    unsigned *sq_array;   /* NO_SQARRAY: where liburing's sq.array points (the kernel reads none) */
    bool cq_grow_probed;  /* bind asked the kernel whether the CQ can grow        */
    bool cq_grow;         /* it can (COR_IO_CQ_GROW; other threads read it atomically) */
    bool grow_wanted;     /* the CQ overflowed: grow it at the next safe point  */
    /* The driving thread registered the ring fd: who, and the ring's fields before. */
    bool fd_registered;
    pthread_t fd_thread;
    int plain_enter_fd;
    uint8_t plain_int_flags;
    /*
     * Operations the SQ had no room for while the kernel refused to take
     * more (-EBUSY: completions must be reaped first), linked through
     * bk[0]; submitted by the next run, in order. Cancels the same way.
     */
    cor__io_op *backlog, *backlog_last;
    cor__io_op *cancels, *cancels_last;
    /*
     * STREAM_NEXT results decided by a stream (uring_stream.c), delivered
     * by the run (a CQE's, after that run's CQEs; a handler's, by the next
     * run): linked through bk[0], the result in the high half of bk[1].
     */
    cor__io_op *ready, *ready_last;
    /*
     * Zero-copy sends asked to stop after their bytes went out (BK_ZC_SENT
     * and BK_STOP_ASKED): they wait for the kernel to release the buffer,
     * which a peer that stops reading puts off for ever. Linked through
     * bk[0]; teardown resets their connections (zc_release).
     */
    cor__io_op *zc_held, *zc_held_last;
    cor__stream *streams; /* every stream not yet freed              */
    uint16_t next_bgid;
    cor__backend_stats stats;
};

/* Appends op to the list (*head, *last) linked through bk[0]. */
static inline void cor__uring_fifo_push(cor__io_op **head, cor__io_op **last, cor__io_op *op)
{
    op->bk[0] = 0;
    if (*last)
        (*last)->bk[0] = (uint64_t)(uintptr_t)op;
    else
        *head = op;
    *last = op;
}

/* Takes the oldest op of the list (*head, *last), or NULL. */
static inline cor__io_op *cor__uring_fifo_pop(cor__io_op **head, cor__io_op **last)
{
    cor__io_op *op = *head;
    if (op) {
        *head = (cor__io_op *)(uintptr_t)op->bk[0];
        if (!*head)
            *last = NULL;
    }
    return op;
}

/* Returns n free SQEs' worth of room (flushing if needed): 0, -EBUSY (reap first), or -errno. */
int cor__uring_reserve(cor__backend *b, unsigned n);

/* An SQE after cor__uring_reserve made room (cannot fail then). */
static inline struct io_uring_sqe *cor__uring_sqe(cor__backend *b)
{
    cor__stat_add(b->stats.sqes, 1);
    return io_uring_get_sqe(&b->ring);
}

/* ---- uring_stream.c ---- */

int cor__uring_stream_next(cor__backend *b, cor__io_op *op);
void cor__uring_stream_cancel(cor__backend *b, cor__io_op *op);
void cor__uring_stream_cqe(cor__backend *b, cor__stream *st, int32_t res, uint32_t flags);
/* Delivers the queued STREAM_NEXT results, up to max; returns how many. */
long cor__uring_stream_deliver(cor__backend *b, long max);
/* Cancel_all: every stream waiter completes with -ECANCELED. */
void cor__uring_streams_cancel(cor__backend *b);
/* Destroy: frees every stream (the ring is gone: the kernel is done with them). */
void cor__uring_streams_free(cor__backend *b);

int cor__uring_bufring_create(cor__backend *b, cor__bufring **out, void *mem, unsigned count,
                              unsigned size, unsigned *flags);
int cor__uring_bufring_put(cor__backend *b, cor__bufring *br, unsigned id, unsigned off,
                           unsigned holder);
/* Setup: whether the kernel takes incrementally consumed buffer rings (6.12+). */
bool cor__uring_bufring_probe_incremental(cor__backend *b);
void cor__uring_bufring_destroy(cor__backend *b, cor__bufring *br);
int cor__uring_stream_open(cor__backend *b, cor__stream **out, int kind, int fd, cor__bufring *br);
void cor__uring_stream_close(cor__backend *b, cor__stream *s);

#endif
