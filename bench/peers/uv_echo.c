/*
 * uv_echo: a TCP echo server on libuv, a peer the echo benchmark compares
 * coring against. One loop per thread, each with its own SO_REUSEPORT
 * listener on 127.0.0.1:port (the kernel spreads connections across them).
 * Each connection owns one 64 KiB buffer: a read is written back with
 * uv_try_write, and only a partial write falls back to uv_write with reading
 * paused until it completes, so steady state allocates nothing.
 *
 *   uv_echo --port 7000 [--threads N] [--duration S]
 * Runs until SIGINT or SIGTERM, or for S seconds.
 */
#include <errno.h>
#include <netinet/in.h>
#include <pthread.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <uv.h>

#include "peer_args.h"

#define BUF_SIZE 65536

typedef struct client {
    uv_tcp_t tcp;
    uv_write_t wreq;
    char buf[BUF_SIZE];
} client;

typedef struct loop_ctx {
    uv_loop_t loop;
    uv_tcp_t server;
    uv_async_t stop;
    pthread_t thread;
    int port, error;
} loop_ctx;

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf)
{
    client *c = h->data;
    *buf = uv_buf_init(c->buf, BUF_SIZE);
}

static void on_close(uv_handle_t *h)
{
    free(h->data);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void on_write(uv_write_t *req, int status)
{
    client *c = req->data;
    if (status < 0)
        uv_close((uv_handle_t *)&c->tcp, on_close);
    else
        uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf)
{
    client *c = s->data;
    if (nread == 0)
        return;
    if (nread < 0) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    uv_buf_t out = uv_buf_init(c->buf, (unsigned)nread);
    int n = uv_try_write(s, &out, 1);
    if (n == nread)
        return;
    if (n < 0 && n != UV_EAGAIN) {
        uv_close((uv_handle_t *)s, on_close);
        return;
    }
    if (n > 0)
        out = uv_buf_init(c->buf + n, (unsigned)(nread - n));
    /* The buffer is in use until the write completes: stop reading into it. */
    uv_read_stop(s);
    c->wreq.data = c;
    if (uv_write(&c->wreq, s, &out, 1, on_write) < 0)
        uv_close((uv_handle_t *)s, on_close);
}

static void on_connection(uv_stream_t *server, int status)
{
    if (status < 0)
        return;
    client *c = malloc(sizeof *c);
    if (!c)
        return;
    uv_tcp_init(server->loop, &c->tcp);
    c->tcp.data = c;
    if (uv_accept(server, (uv_stream_t *)&c->tcp)) {
        uv_close((uv_handle_t *)&c->tcp, on_close);
        return;
    }
    uv_tcp_nodelay(&c->tcp, 1);
    uv_read_start((uv_stream_t *)&c->tcp, on_alloc, on_read);
}

static void close_handle(uv_handle_t *h, void *arg)
{
    if (!uv_is_closing(h))
        uv_close(h, h->data ? on_close : NULL);
}

static void on_stop(uv_async_t *a)
{
    uv_walk(a->loop, close_handle, NULL);
}

static void *loop_main(void *arg)
{
    loop_ctx *l = arg;
    uv_run(&l->loop, UV_RUN_DEFAULT);
    uv_loop_close(&l->loop);
    return NULL;
}

static int loop_setup(loop_ctx *l)
{
    int fd = peer_listen_socket(l->port);
    if (fd < 0)
        return fd;
    int err = uv_loop_init(&l->loop);
    if (!err)
        err = uv_tcp_init(&l->loop, &l->server);
    if (!err) {
        l->server.data = NULL;
        err = uv_tcp_open(&l->server, fd);
    }
    if (!err)
        err = uv_listen((uv_stream_t *)&l->server, PEER_BACKLOG, on_connection);
    if (!err) {
        err = uv_async_init(&l->loop, &l->stop, on_stop);
        l->stop.data = NULL;
    }
    if (err)
        fprintf(stderr, "uv_echo: %s\n", uv_strerror(err));
    return err;
}

int main(int argc, char **argv)
{
    peer_args a;
    peer_parse_args(argc, argv, "uv_echo", &a);
    sigset_t set;
    peer_block_signals(&set);
    loop_ctx *loops = calloc((size_t)a.threads, sizeof *loops);
    if (!loops)
        return 1;
    int started = 0, rc = 0;
    for (; started < a.threads; started++) {
        loops[started].port = a.port;
        if (loop_setup(&loops[started]) ||
            pthread_create(&loops[started].thread, NULL, loop_main, &loops[started])) {
            rc = 1;
            break;
        }
    }
    if (!rc) {
        fprintf(stderr, "uv_echo: libuv %s, port %d, %d thread(s)\n", uv_version_string(), a.port,
                a.threads);
        peer_wait_for_stop(&set, a.duration_s);
    }
    for (int i = 0; i < started; i++) {
        uv_async_send(&loops[i].stop);
        pthread_join(loops[i].thread, NULL);
    }
    free(loops);
    return rc;
}
