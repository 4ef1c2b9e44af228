/*
 * libevent_echo: a TCP echo server on libevent 2.1, a peer the echo benchmark
 * compares coring against. One event_base per thread (EVENT_BASE_FLAG_NOLOCK:
 * nothing is shared between threads), each with its own SO_REUSEPORT listener
 * on 127.0.0.1:port watched by a plain persistent read event that accepts.
 *
 * No bufferevents: they read into evbuffer chains that are allocated as data
 * arrives and freed once drained, i.e. allocation per message even when
 * evbuffer_add_buffer moves the chains without copying. Instead each
 * connection owns one 64 KiB buffer and two events made at accept: a persistent
 * read event that is always pending in steady state (read, then write straight
 * back from the buffer), and a write event used only when a write is short:
 * reading then pauses and the write event sends the rest before reading goes
 * on, so the bytes stay in order. Steady state allocates nothing and changes no
 * event registration.
 *
 *   libevent_echo --port 7000 [--threads N] [--duration S]
 * Runs until SIGINT or SIGTERM (exit status 0), or for S seconds.
 */
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <event2/event.h>

#include "peer_args.h"

#define BUF_SIZE 65536
#define ACCEPTS_PER_WAKEUP 64

struct loop_ctx;

typedef struct client {
    struct client *next, *prev; /* every open connection of the loop */
    struct loop_ctx *loop;
    struct event *rev, *wev;
    int fd;
    size_t len, sent; /* bytes in buf, bytes of them written back */
    char buf[BUF_SIZE];
} client;

typedef struct loop_ctx {
    struct event_base *base;
    struct event *accept_ev, *stop_ev;
    pthread_t thread;
    int port, listen_fd, stop_fd;
    client *clients;
} loop_ctx;

static void client_close(client *c)
{
    loop_ctx *l = c->loop;
    if (c->prev)
        c->prev->next = c->next;
    else
        l->clients = c->next;
    if (c->next)
        c->next->prev = c->prev;
    event_free(c->rev);
    event_free(c->wev);
    close(c->fd);
    free(c);
}

/* Writes what is left of c->buf; returns 1 when all of it is out, 0 if not yet, -1 on error. */
static int flush(client *c)
{
    while (c->sent < c->len) {
        ssize_t n = send(c->fd, c->buf + c->sent, c->len - c->sent, MSG_NOSIGNAL);
        if (n > 0) {
            c->sent += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return 0;
        return -1;
    }
    return 1;
}

static void on_writable(evutil_socket_t fd, short what, void *arg)
{
    client *c = arg;
    int r = flush(c);
    if (r < 0) {
        client_close(c);
    } else if (r > 0) {
        event_del(c->wev);
        event_add(c->rev, NULL);
    }
}

static void on_readable(evutil_socket_t fd, short what, void *arg)
{
    client *c = arg;
    ssize_t n = recv(fd, c->buf, BUF_SIZE, 0);
    if (n <= 0) {
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR))
            return;
        client_close(c); /* end of file or an error */
        return;
    }
    c->len = (size_t)n;
    c->sent = 0;
    int r = flush(c);
    if (r < 0) {
        client_close(c);
    } else if (r == 0) {
        /* A short write: the buffer is busy until the rest is out, so stop reading into it. */
        event_del(c->rev);
        event_add(c->wev, NULL);
    }
}

static void on_accept(evutil_socket_t fd, short what, void *arg)
{
    loop_ctx *l = arg;
    for (int i = 0; i < ACCEPTS_PER_WAKEUP; i++) {
        int cfd = accept4(fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR && errno != ECONNABORTED)
                fprintf(stderr, "libevent_echo: accept: %s\n", strerror(errno));
            return;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        client *c = malloc(sizeof *c);
        if (c) {
            c->loop = l;
            c->fd = cfd;
            c->len = c->sent = 0;
            c->rev = event_new(l->base, cfd, EV_READ | EV_PERSIST, on_readable, c);
            c->wev = event_new(l->base, cfd, EV_WRITE | EV_PERSIST, on_writable, c);
        }
        if (!c || !c->rev || !c->wev || event_add(c->rev, NULL)) {
            if (c) {
                if (c->rev)
                    event_free(c->rev);
                if (c->wev)
                    event_free(c->wev);
                free(c);
            }
            close(cfd);
            continue;
        }
        c->prev = NULL;
        c->next = l->clients;
        if (l->clients)
            l->clients->prev = c;
        l->clients = c;
    }
}

static void on_stop(evutil_socket_t fd, short what, void *arg)
{
    loop_ctx *l = arg;
    event_base_loopbreak(l->base);
}

static void *loop_main(void *arg)
{
    loop_ctx *l = arg;
    event_base_dispatch(l->base);
    while (l->clients)
        client_close(l->clients);
    return NULL;
}

static int loop_setup(loop_ctx *l)
{
    l->listen_fd = peer_listen_socket(l->port);
    if (l->listen_fd < 0)
        return -1;
    l->stop_fd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (l->stop_fd < 0) {
        perror("libevent_echo: eventfd");
        return -1;
    }
    /* Each base is used by its own thread only: no locking. */
    struct event_config *cfg = event_config_new();
    if (cfg) {
        event_config_set_flag(cfg, EVENT_BASE_FLAG_NOLOCK);
        l->base = event_base_new_with_config(cfg);
        event_config_free(cfg);
    }
    if (!l->base) {
        fprintf(stderr, "libevent_echo: cannot create an event_base\n");
        return -1;
    }
    l->accept_ev = event_new(l->base, l->listen_fd, EV_READ | EV_PERSIST, on_accept, l);
    l->stop_ev = event_new(l->base, l->stop_fd, EV_READ, on_stop, l);
    if (!l->accept_ev || !l->stop_ev || event_add(l->accept_ev, NULL) ||
        event_add(l->stop_ev, NULL)) {
        fprintf(stderr, "libevent_echo: cannot add the listener's events\n");
        return -1;
    }
    return 0;
}

static void loop_cleanup(loop_ctx *l)
{
    if (l->accept_ev)
        event_free(l->accept_ev);
    if (l->stop_ev)
        event_free(l->stop_ev);
    if (l->base)
        event_base_free(l->base);
    if (l->listen_fd >= 0)
        close(l->listen_fd);
    if (l->stop_fd >= 0)
        close(l->stop_fd);
}

int main(int argc, char **argv)
{
    peer_args a;
    peer_parse_args(argc, argv, "libevent_echo", &a);
    sigset_t set;
    peer_block_signals(&set);
    loop_ctx *loops = calloc((size_t)a.threads, sizeof *loops);
    if (!loops)
        return 1;
    for (int i = 0; i < a.threads; i++)
        loops[i].listen_fd = loops[i].stop_fd = -1;
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
        fprintf(stderr, "libevent_echo: libevent %s (%s), port %d, %d thread(s)\n",
                event_get_version(), event_base_get_method(loops[0].base), a.port, a.threads);
        peer_wait_for_stop(&set, a.duration_s);
    }
    for (int i = 0; i < started; i++) {
        uint64_t one = 1;
        if (write(loops[i].stop_fd, &one, sizeof one) != sizeof one)
            perror("libevent_echo: eventfd");
        pthread_join(loops[i].thread, NULL);
    }
    for (int i = 0; i < a.threads; i++)
        loop_cleanup(&loops[i]);
    free(loops);
    return rc;
}
