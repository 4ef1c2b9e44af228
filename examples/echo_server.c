/*
 * echo_server: accepts TCP connections on 127.0.0.1:P and sends every byte
 * back. One coroutine accepts; one coroutine per connection echoes.
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
    COR_BEGIN(self);
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

/* The accept loop of one io_context: a session per connection, on the same executor and stop token.
 */
struct acceptor {
    COR_PROMISE(int);
    int fd, conn, slept;
    cor_launch_options opts;
};
COR_DEFINE_STATIC(acceptor, (int fd), { self->fd = fd; })
{
    COR_BEGIN(self);
    self->opts = (cor_launch_options){.stop = COR_THIS_STOP_TOKEN()};
    for (;;) {
        COR_AWAIT(self->conn, cor_accept(self->fd, NULL));
        if (self->conn == -ECANCELED)
            break;
        if (self->conn < 0) {
            /* Out of descriptors or memory: back off instead of spinning. */
            if (self->conn == -EMFILE || self->conn == -ENFILE || self->conn == -ENOMEM)
                COR_AWAIT(self->slept, cor_sleep_for(1000000));
            continue;
        }
        if (COR_RUN_ASYNC(COR_THIS_EXECUTOR(), &self->opts, session(self->conn)) != 0)
            close(self->conn);
    }
    COR_AWAIT(self->conn, cor_close(self->fd));
    COR_RETURN(0);
}

static cor_frame *start(int fd)
{
    return (cor_frame *)acceptor(fd);
}

int main(int argc, char **argv)
{
    server_args a;
    server_parse_args(argc, argv, &a);
    cor_stop_source stop;
    cor_stop_source_init(&stop);
    return server_run("echo_server", &a, start, &stop);
}
