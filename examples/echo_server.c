/*
 * echo_server: accepts TCP connections on 127.0.0.1:P and sends every byte
 * back. The library's server loop (serve.h) runs one session per connection;
 * the command line is cli.h's.
 *
 *     echo_server [--port P] [--threads N] [--backend uring|epoll]
 *                 [--idle-ms MS] [--grace-ms MS]
 */
#include "cli.h"

/* One connection: receive, send it all back, until the peer closes, it idles, or stop. */
struct session {
    COR_PROMISE(int);
    int fd, n;
    ssize_t sent;
    char buf[4096];
};
COR_DEFINE_STATIC(session, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    for (;;) {
        COR_AWAIT(self->n, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
        if (self->n <= 0)
            break; /* 0: the peer closed; -ETIME: idle; -ECANCELED: shutdown; else an error */
        COR_AWAIT(self->sent, cor_send_all(self->fd, self->buf, (size_t)self->n));
        if (self->sent < 0)
            break;
    }
    COR_RETURN(0); /* the server closes fd */
}

static cor_frame *new_session(void *user, int fd)
{
    (void)user;
    return COR_FRAME(session(fd));
}

int main(int argc, char **argv)
{
    server_args a;
    server_parse_args(argc, argv, &a, NULL);
    return server_main("echo_server", &a, new_session, NULL, NULL);
}
