/*
 * The raw liburing baselines of bench_ring and bench_timer: a ring set up
 * with the flags a coring io_context has in force, so each comparison
 * differs only in what coring adds.
 */
#ifndef CORING_BENCH_RAW_RING_H
#define CORING_BENCH_RAW_RING_H

#include <string.h>

#include <liburing.h>
#include <coring/coring.h>

/* Sets r up with io's ring flags, sq_entries and a CQ of cq_entries. Returns 0 or -errno. */
static inline int bench_raw_ring_init(struct io_uring *r, cor_io_context *io, unsigned sq_entries,
                                      unsigned cq_entries)
{
    unsigned f = cor_io_context_features(io), setup = 0;
    if (f & COR_IO_SINGLE_ISSUER)
        setup |= IORING_SETUP_SINGLE_ISSUER;
    if (f & COR_IO_DEFER_TASKRUN)
        setup |= IORING_SETUP_DEFER_TASKRUN;
    if (f & COR_IO_COOP_TASKRUN)
        setup |= IORING_SETUP_COOP_TASKRUN;
    if (f & COR_IO_TASKRUN_FLAG)
        setup |= IORING_SETUP_TASKRUN_FLAG;
    struct io_uring_params p;
    memset(&p, 0, sizeof p);
    p.flags = setup | IORING_SETUP_CQSIZE;
    p.cq_entries = cq_entries;
    return io_uring_queue_init_params(sq_entries, r, &p);
}

#endif
