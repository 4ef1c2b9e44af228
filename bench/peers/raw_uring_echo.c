/*
 * raw_uring_echo: a TCP echo server written directly on liburing (2.3), a peer
 * the echo benchmark compares coring against: the practical floor for an
 * io_uring echo server, with no runtime between the loop and the ring.
 *
 * One thread per --threads, each with its own ring (SINGLE_ISSUER|DEFER_TASKRUN
 * when the kernel takes them, COOP_TASKRUN or nothing otherwise; a CQ of 8192
 * entries, which a thousand connections cannot fill: each has at most one recv
 * and one send in flight, and buffer CQEs are bounded by NBUFS) and
 * its own SO_REUSEPORT listener on 127.0.0.1:port with one multishot accept;
 * the ring's own descriptor is registered (io_uring_register_ring_fd).
 * The loop reaps every CQE with io_uring_for_each_cqe, advances the CQ once,
 * and submits and waits with one io_uring_submit_and_wait.
 *
 * Two modes:
 *   multishot (default): every connection has one multishot recv that picks
 *     its buffers from a provided buffer ring (NBUFS buffers of BUF_SIZE bytes,
 *     registered by hand with io_uring_register_buf_ring on an mmap'ed ring).
 *     Each received buffer is echoed by one send; a connection keeps its
 *     received buffers in a FIFO (linked through a per-buffer array) and has
 *     at most one send in flight, so bytes leave in the order they came and a
 *     short send is simply resubmitted for the rest. A buffer goes back to the
 *     ring once all its bytes are sent (the returns of one loop are published
 *     with a single tail update). The recv is re-armed when the kernel ends it
 *     (no IORING_CQE_F_MORE); a connection whose recv ended with -ENOBUFS waits
 *     on a list until buffers come back.
 *   single (--mode single): one single-shot recv into a per-connection buffer
 *     of SINGLE_BUF_SIZE bytes, then sends until all of it is echoed, then the
 *     next recv.
 *
 * Allocation-free in steady state: the buffers, the ring and the FIFO links are
 * allocated when a thread starts, and a connection's state (with its buffer in
 * single mode) when it is accepted; a message only moves indices around.
 *
 *   raw_uring_echo --port 7000 [--threads N] [--duration S] [--mode multishot|single]
 * Runs until SIGINT or SIGTERM (exit status 0), or for S seconds.
 */
#include <errno.h>
#include <liburing.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <semaphore.h>
#include <signal.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <unistd.h>

#include "peer_args.h"

#define SQ_ENTRIES 1024
#define CQ_ENTRIES 8192
#define NBUFS 2048 /* buffer ring entries: a power of two, at most 32768 */
#define BUF_SIZE 4096
#define SINGLE_BUF_SIZE 65536
#define BGID 0

/* The low bits of a CQE's user_data say what completed; the rest is the connection. */
enum { OP_RECV = 1, OP_SEND = 2, OP_ACCEPT = 3, OP_STOP = 4, OP_MASK = 7 };

typedef struct conn {
    struct conn *next, *prev;   /* every open connection of the worker */
    struct conn *snext, *sprev; /* the worker's starved list (multishot) */
    int fd;
    bool recv_armed, send_busy; /* operations in flight */
    bool eof, dead, starved, shut;
    int qhead, qtail; /* multishot: buffer ids received, not yet fully sent; -1 none */
    unsigned sent;    /* bytes of the head buffer (or of buf) already sent */
    unsigned len;     /* single: bytes in buf */
    char buf[];       /* single mode only */
} conn;

typedef struct worker {
    struct io_uring ring;
    pthread_t thread;
    sem_t ready;
    int port, error, run_error; /* error: of the setup, read once ready is posted */
    int listen_fd, stop_fd;
    bool multishot, stopping, ring_ok;
    unsigned setup_flags;
    uint64_t stop_val;
    conn *conns, *starved;
    /* multishot: the provided buffers */
    struct io_uring_buf_ring *br;
    char *bufs;
    unsigned free_bufs; /* buffers the kernel can pick */
    unsigned returns;   /* buffers added to the ring since the last tail update */
    int buf_next[NBUFS];
    unsigned buf_len[NBUFS];
} worker;

static const char *mode_name(bool multishot)
{
    return multishot ? "multishot" : "single";
}

static struct io_uring_sqe *get_sqe(worker *w)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&w->ring);
    if (!sqe) {
        io_uring_submit(&w->ring);
        sqe = io_uring_get_sqe(&w->ring);
    }
    return sqe;
}

static void set_op(struct io_uring_sqe *sqe, conn *c, unsigned op)
{
    io_uring_sqe_set_data64(sqe, (uint64_t)(uintptr_t)c | op);
}

static void arm_accept(worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_multishot_accept(sqe, w->listen_fd, NULL, NULL, SOCK_CLOEXEC);
    set_op(sqe, NULL, OP_ACCEPT);
}

static void arm_stop(worker *w)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    io_uring_prep_read(sqe, w->stop_fd, &w->stop_val, sizeof w->stop_val, 0);
    set_op(sqe, NULL, OP_STOP);
}

static void arm_recv(worker *w, conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    if (w->multishot) {
        io_uring_prep_recv_multishot(sqe, c->fd, NULL, 0, 0);
        sqe->flags |= IOSQE_BUFFER_SELECT;
        sqe->buf_group = BGID;
    } else {
        io_uring_prep_recv(sqe, c->fd, c->buf, SINGLE_BUF_SIZE, 0);
    }
    set_op(sqe, c, OP_RECV);
    c->recv_armed = true;
}

/* Sends what is left of the head buffer (multishot) or of c->buf (single). */
static void send_rest(worker *w, conn *c)
{
    struct io_uring_sqe *sqe = get_sqe(w);
    if (w->multishot) {
        int bid = c->qhead;
        io_uring_prep_send(sqe, c->fd, w->bufs + (size_t)bid * BUF_SIZE + c->sent,
                           w->buf_len[bid] - c->sent, MSG_NOSIGNAL);
    } else {
        io_uring_prep_send(sqe, c->fd, c->buf + c->sent, c->len - c->sent, MSG_NOSIGNAL);
    }
    set_op(sqe, c, OP_SEND);
    c->send_busy = true;
}

/* Hands buffer bid back to the kernel; publish_returns makes it visible. */
static void recycle(worker *w, int bid)
{
    io_uring_buf_ring_add(w->br, w->bufs + (size_t)bid * BUF_SIZE, BUF_SIZE, (unsigned short)bid,
                          io_uring_buf_ring_mask(NBUFS), (int)w->returns++);
}

static void publish_returns(worker *w)
{
    if (!w->returns)
        return;
    io_uring_buf_ring_advance(w->br, (int)w->returns);
    w->free_bufs += w->returns;
    w->returns = 0;
}

static void starve(worker *w, conn *c)
{
    c->starved = true;
    c->sprev = NULL;
    c->snext = w->starved;
    if (w->starved)
        w->starved->sprev = c;
    w->starved = c;
}

static void unstarve(worker *w, conn *c)
{
    if (c->sprev)
        c->sprev->snext = c->snext;
    else
        w->starved = c->snext;
    if (c->snext)
        c->snext->sprev = c->sprev;
    c->starved = false;
}

static void conn_free(worker *w, conn *c)
{
    if (c->prev)
        c->prev->next = c->next;
    else
        w->conns = c->next;
    if (c->next)
        c->next->prev = c->prev;
    close(c->fd);
    free(c);
}

/*
 * Closes c once it is finished (dead, or at end of file with everything echoed)
 * and nothing of it is in flight; a dead connection with operations in flight
 * is shut down so they complete.
 */
static void conn_check(worker *w, conn *c)
{
    if (!c->dead && !(c->eof && c->qhead < 0 && !c->send_busy))
        return;
    if (c->recv_armed || c->send_busy) {
        if (!c->shut) {
            shutdown(c->fd, SHUT_RDWR);
            c->shut = true;
        }
        return;
    }
    if (c->starved)
        unstarve(w, c);
    for (int bid = c->qhead; bid >= 0; bid = w->buf_next[bid])
        recycle(w, bid);
    conn_free(w, c);
}

static void on_accept(worker *w, struct io_uring_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_MORE) && !w->stopping)
        arm_accept(w);
    if (cqe->res < 0) {
        if (cqe->res != -ECANCELED)
            fprintf(stderr, "raw_uring_echo: accept: %s\n", strerror(-cqe->res));
        return;
    }
    int fd = cqe->res;
    conn *c = malloc(sizeof *c + (w->multishot ? 0 : SINGLE_BUF_SIZE));
    if (!c) {
        close(fd);
        return;
    }
    memset(c, 0, sizeof *c);
    c->fd = fd;
    c->qhead = c->qtail = -1;
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    c->next = w->conns;
    if (w->conns)
        w->conns->prev = c;
    w->conns = c;
    arm_recv(w, c);
}

static void on_recv_multishot(worker *w, conn *c, struct io_uring_cqe *cqe)
{
    int res = cqe->res;
    c->recv_armed = (cqe->flags & IORING_CQE_F_MORE) != 0;
    if (cqe->flags & IORING_CQE_F_BUFFER) {
        int bid = (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
        w->free_bufs--;
        if (res > 0 && !c->dead) {
            w->buf_len[bid] = (unsigned)res;
            w->buf_next[bid] = -1;
            if (c->qtail >= 0)
                w->buf_next[c->qtail] = bid;
            else
                c->qhead = bid;
            c->qtail = bid;
            if (!c->send_busy)
                send_rest(w, c);
        } else {
            recycle(w, bid);
        }
    }
    if (res == 0)
        c->eof = true;
    else if (res == -ENOBUFS && !c->dead)
        starve(w, c); /* re-armed once buffers come back */
    else if (res < 0)
        c->dead = true;
    else if (!c->recv_armed && !c->dead)
        arm_recv(w, c);
    conn_check(w, c);
}

static void on_recv_single(worker *w, conn *c, struct io_uring_cqe *cqe)
{
    c->recv_armed = false;
    if (cqe->res > 0 && !c->dead) {
        c->len = (unsigned)cqe->res;
        c->sent = 0;
        send_rest(w, c);
    } else if (cqe->res == 0) {
        c->eof = true;
    } else {
        c->dead = true;
    }
    conn_check(w, c);
}

static void on_send(worker *w, conn *c, struct io_uring_cqe *cqe)
{
    c->send_busy = false;
    if (cqe->res <= 0) {
        c->dead = true;
    } else {
        c->sent += (unsigned)cqe->res;
        unsigned len = w->multishot ? w->buf_len[c->qhead] : c->len;
        if (c->sent < len) {
            if (!c->dead)
                send_rest(w, c); /* a short send: the rest goes before anything else */
        } else {
            c->sent = 0;
            if (w->multishot) {
                int bid = c->qhead;
                c->qhead = w->buf_next[bid];
                if (c->qhead < 0)
                    c->qtail = -1;
                recycle(w, bid);
                if (c->qhead >= 0 && !c->dead)
                    send_rest(w, c);
            } else if (!c->dead) {
                arm_recv(w, c);
            }
        }
    }
    conn_check(w, c);
}

static void handle(worker *w, struct io_uring_cqe *cqe)
{
    uint64_t data = io_uring_cqe_get_data64(cqe);
    conn *c = (conn *)(uintptr_t)(data & ~(uint64_t)OP_MASK);
    switch (data & OP_MASK) {
    case OP_RECV:
        if (w->multishot)
            on_recv_multishot(w, c, cqe);
        else
            on_recv_single(w, c, cqe);
        break;
    case OP_SEND:
        on_send(w, c, cqe);
        break;
    case OP_ACCEPT:
        on_accept(w, cqe);
        break;
    case OP_STOP:
        w->stopping = true;
        break;
    }
}

static int run(worker *w)
{
    arm_stop(w);
    arm_accept(w);
    while (!w->stopping) {
        int ret = io_uring_submit_and_wait(&w->ring, 1);
        if (ret < 0 && ret != -EINTR && ret != -EAGAIN && ret != -EBUSY) {
            fprintf(stderr, "raw_uring_echo: io_uring_submit_and_wait: %s\n", strerror(-ret));
            return ret;
        }
        struct io_uring_cqe *cqe;
        unsigned head, n = 0;
        io_uring_for_each_cqe(&w->ring, head, cqe)
        {
            handle(w, cqe);
            n++;
        }
        io_uring_cq_advance(&w->ring, n);
        publish_returns(w);
        /* Connections whose recv ran out of buffers get it back, as many as there are buffers. */
        while (w->starved && w->free_bufs > 0 && !w->stopping) {
            conn *c = w->starved;
            unstarve(w, c);
            arm_recv(w, c);
        }
    }
    return 0;
}

static int ring_setup(worker *w)
{
    /* The strongest setup the kernel accepts, with a CQ that cannot overflow. */
    static const unsigned tries[] = {
        IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
        IORING_SETUP_COOP_TASKRUN,
        0,
    };
    int ret = -EINVAL;
    for (size_t i = 0; i < sizeof tries / sizeof tries[0]; i++) {
        struct io_uring_params p;
        memset(&p, 0, sizeof p);
        p.flags = IORING_SETUP_CQSIZE | tries[i];
        p.cq_entries = CQ_ENTRIES;
        ret = io_uring_queue_init_params(SQ_ENTRIES, &w->ring, &p);
        if (!ret) {
            w->ring_ok = true;
            w->setup_flags = tries[i];
            break;
        }
    }
    if (ret) {
        fprintf(stderr, "raw_uring_echo: io_uring_queue_init: %s\n", strerror(-ret));
        return ret;
    }
    /* io_uring_enter then skips the file table look-up of the ring (ignored where unsupported). */
    io_uring_register_ring_fd(&w->ring);
    if (!w->multishot)
        return 0;

    /* The provided buffer ring, by hand: liburing 2.3 has no io_uring_setup_buf_ring. */
    size_t ring_size = NBUFS * sizeof(struct io_uring_buf);
    void *br = mmap(NULL, ring_size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    void *bufs = mmap(NULL, (size_t)NBUFS * BUF_SIZE, PROT_READ | PROT_WRITE,
                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (br == MAP_FAILED || bufs == MAP_FAILED) {
        ret = -errno;
        fprintf(stderr, "raw_uring_echo: mmap: %s\n", strerror(errno));
        if (br != MAP_FAILED)
            munmap(br, ring_size);
        if (bufs != MAP_FAILED)
            munmap(bufs, (size_t)NBUFS * BUF_SIZE);
        return ret;
    }
    w->br = br;
    w->bufs = bufs;
    struct io_uring_buf_reg reg;
    memset(&reg, 0, sizeof reg);
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = NBUFS;
    reg.bgid = BGID;
    ret = io_uring_register_buf_ring(&w->ring, &reg, 0);
    if (ret) {
        fprintf(stderr, "raw_uring_echo: io_uring_register_buf_ring: %s\n", strerror(-ret));
        return ret;
    }
    io_uring_buf_ring_init(w->br);
    for (int i = 0; i < NBUFS; i++)
        recycle(w, i);
    publish_returns(w);
    return 0;
}

static void worker_cleanup(worker *w)
{
    if (w->ring_ok)
        io_uring_queue_exit(&w->ring); /* cancels whatever is still in flight */
    while (w->conns)
        conn_free(w, w->conns);
    if (w->br)
        munmap(w->br, NBUFS * sizeof(struct io_uring_buf));
    if (w->bufs)
        munmap(w->bufs, (size_t)NBUFS * BUF_SIZE);
    if (w->listen_fd >= 0)
        close(w->listen_fd);
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    w->listen_fd = peer_listen_socket(w->port);
    if (w->listen_fd < 0) {
        w->error = w->listen_fd;
        sem_post(&w->ready);
        return NULL;
    }
    /* The ring is created here: SINGLE_ISSUER ties it to the thread that creates it. */
    w->error = ring_setup(w);
    sem_post(&w->ready);
    if (!w->error)
        w->run_error = run(w);
    worker_cleanup(w);
    return NULL;
}

/* Takes --mode out of argv (into *multishot) and returns the new argc. */
static int parse_mode(int argc, char **argv, bool *multishot)
{
    int out = 1;
    *multishot = true;
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--mode") && i + 1 < argc) {
            if (!strcmp(argv[i + 1], "multishot"))
                *multishot = true;
            else if (!strcmp(argv[i + 1], "single"))
                *multishot = false;
            else {
                fprintf(stderr, "usage: raw_uring_echo --port P [--threads N] [--duration S] "
                                "[--mode multishot|single]\n");
                exit(2);
            }
            i++;
            continue;
        }
        argv[out++] = argv[i];
    }
    argv[out] = NULL;
    return out;
}

static const char *flags_name(unsigned flags)
{
    if (flags & IORING_SETUP_DEFER_TASKRUN)
        return "SINGLE_ISSUER|DEFER_TASKRUN";
    if (flags & IORING_SETUP_COOP_TASKRUN)
        return "COOP_TASKRUN";
    return "no setup flags";
}

int main(int argc, char **argv)
{
    bool multishot;
    argc = parse_mode(argc, argv, &multishot);
    peer_args a;
    peer_parse_args(argc, argv, "raw_uring_echo", &a);
    sigset_t set;
    peer_block_signals(&set);
    worker *workers = calloc((size_t)a.threads, sizeof *workers);
    if (!workers)
        return 1;
    int started = 0, rc = 0;
    for (; started < a.threads; started++) {
        worker *w = &workers[started];
        w->port = a.port;
        w->multishot = multishot;
        w->listen_fd = -1;
        w->stop_fd = eventfd(0, EFD_CLOEXEC);
        if (w->stop_fd < 0 || sem_init(&w->ready, 0, 0) ||
            pthread_create(&w->thread, NULL, worker_main, w)) {
            perror("raw_uring_echo");
            if (w->stop_fd >= 0)
                close(w->stop_fd);
            rc = 1;
            break;
        }
        sem_wait(&w->ready);
        if (w->error) {
            rc = 1;
            started++; /* joined below */
            break;
        }
    }
    if (!rc) {
        fprintf(stderr, "raw_uring_echo: liburing, %s recv, %s, port %d, %d thread(s)\n",
                mode_name(multishot), flags_name(workers[0].setup_flags), a.port, a.threads);
        peer_wait_for_stop(&set, a.duration_s);
    }
    for (int i = 0; i < started; i++) {
        uint64_t one = 1;
        if (write(workers[i].stop_fd, &one, sizeof one) != sizeof one)
            perror("raw_uring_echo: eventfd");
        pthread_join(workers[i].thread, NULL);
        if (workers[i].error || workers[i].run_error)
            rc = 1;
        close(workers[i].stop_fd);
        sem_destroy(&workers[i].ready);
    }
    free(workers);
    return rc;
}
