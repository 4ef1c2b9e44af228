/*
 * echo_server: accepts TCP connections on 127.0.0.1:P and sends every byte
 * back. The accept loop (server_main.h) starts one coroutine per connection.
 *
 *     echo_server [--port P] [--threads N] [--backend uring|epoll]
 */
#include "server_main.h"

/* One connection: receive, send it all back, until the peer closes or stop is requested. */
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
            break; /* 0: the peer closed; -ECANCELED: shutdown; else an error */
        COR_AWAIT(self->sent, cor_send_all(self->fd, self->buf, (size_t)self->n));
        if (self->sent < 0)
            break;
    }
    COR_AWAIT(self->n, cor_close(self->fd));
    COR_RETURN(0);
}

static cor_frame *new_session(int fd)
{
    return COR_FRAME(session(fd));
}

int main(int argc, char **argv)
{
    server_args a;
    server_parse_args(argc, argv, &a);
    cor_stop_source stop;
    cor_stop_source_init(&stop);
    return server_run("echo_server", &a, new_session, &stop);
}
