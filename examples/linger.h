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

#include <coring/coring.h>

struct linger_close {
    COR_PROMISE(int);
    int fd, r;
    int64_t until; /* the one deadline of every read */
    char drop[512];
};

/* Shuts down fd's sending side, then drains it for at most ns nanoseconds in all. Result: 0. */
COR_DEFINE_STATIC(linger_close, (int fd, int64_t ns), {
    self->fd = fd;
    self->until = cor_clock_now() + ns;
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
