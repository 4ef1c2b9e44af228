/*
 * Closing a connection after an error answer without losing the answer: a
 * close with unread input resets the connection, and the peer may then never
 * see the answer. So the server stops sending (shutdown SHUT_WR, the peer
 * reads the answer then end of file) and reads and drops what the peer still
 * sends until it closes, an error, or a limit on the whole wait -- one
 * deadline for every read together, so a peer trickling a byte at a time
 * cannot hold the connection longer. The caller closes fd afterwards.
 */
#ifndef CORING_EXAMPLES_LINGER_H
#define CORING_EXAMPLES_LINGER_H

#include <stdint.h>

#include <coring/coring.h>

/* The CLOCK_MONOTONIC time ns (>= 0) from now, INT64_MAX (never) past the clock's range. */
static inline int64_t deadline_in(int64_t ns)
{
    int64_t now = cor_clock_now();
    return ns > INT64_MAX - now ? INT64_MAX : now + ns;
}

struct linger_close {
    COR_PROMISE(int);
    int fd, r;
    int64_t until; /* the one deadline of every read */
    char drop[512];
};

/* Shuts down fd's sending side, then drains it for at most ns nanoseconds in all. Result: 0. */
COR_DEFINE_STATIC(linger_close, (int fd, int64_t ns), {
    self->fd = fd;
    self->until = deadline_in(ns);
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_shutdown(self->fd, SHUT_WR));
    do
        COR_AWAIT(self->r, COR_DEADLINE_AT(cor_recv(self->fd, self->drop, sizeof self->drop, 0),
                                           self->until));
    while (self->r > 0);
    COR_RETURN(0);
}

#endif
