/*
 * Registered (fixed) files on both backends (io_uring natively, epoll by
 * emulation), loopback only and every wait bounded: an echo round trip where
 * accept, connect, send, recv and shutdown all name registered slots; file
 * reads and writes (vectored too) and fsync through a slot; a slot updated to
 * another socket; a slot keeping its file after the descriptor is closed and
 * releasing it on update; bad indexes (-EBADF); ops without a descriptor
 * (-EINVAL); bad arguments; calls from a thread that does not drive the
 * context (-EPERM); destroy with a table and a fixed recv in flight.
 */
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <criterion/criterion.h>
#include <coring/coring.h>
#include <coring/file.h>
#include <coring/net.h>

#include "io_backends.h"

#define MS (1000LL * 1000)

static void store_int(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

static void store_err(void *user, int err)
{
    *(int *)user = err;
}

/* COR_RUN_ASYNC needs the task expression inside it; the frame is already allocated here. */
static int start_on(cor_io_context *io, const cor_launch_options *o, cor_frame *t)
{
    return COR_RUN_ASYNC(cor_io_context_executor(io), o, t);
}

static void launch(cor_io_context *io, cor_frame *t, int *res)
{
    *res = -9999;
    cor_launch_options o = {.on_result = store_int, .on_error = store_err, .user = res};
    cr_assert_eq(start_on(io, &o, t), 0);
}

/* Waits (bounded) until fd is readable and returns what one read gives: 0 means end of stream. */
static int read_within(int fd, char *buf, size_t len, int ms)
{
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int r = poll(&p, 1, ms);
    if (r <= 0)
        return -ETIMEDOUT;
    ssize_t n = read(fd, buf, len);
    return n < 0 ? -errno : (int)n;
}

/* ---- echo over registered sockets ---- */

enum { SLOT_LISTEN, SLOT_SERVER, SLOT_CLIENT, NSLOTS };

/* Accepts on the registered listener, puts the connection in SLOT_SERVER and echoes through it. */
struct fx_server {
    COR_PROMISE(int);
    int fd, n, r;
    long total;
    char buf[512];
};
COR_DEFINE_STATIC(fx_server, (void), {})
{
    COR_BEGIN();
    self->total = 0;
    COR_AWAIT(self->fd, COR_DEADLINE_AFTER(COR_FIXED(cor_accept(SLOT_LISTEN, NULL)), 5000 * MS));
    if (self->fd < 0)
        COR_RETURN(self->fd);
    self->r = cor_io_files_update(cor_io_context_current(), SLOT_SERVER, self->fd);
    close(self->fd); /* the slot holds the socket now */
    if (self->r < 0)
        COR_RETURN(self->r);
    for (;;) {
        COR_AWAIT(self->n, COR_FIXED(cor_recv(SLOT_SERVER, self->buf, sizeof self->buf, 0)));
        if (self->n <= 0)
            break;
        self->total += self->n;
        COR_AWAIT(self->r, COR_FIXED(cor_send(SLOT_SERVER, self->buf, (size_t)self->n, 0)));
        if (self->r != self->n)
            COR_RETURN(self->r < 0 ? self->r : -EIO);
    }
    if (self->n < 0)
        COR_RETURN(self->n);
    COR_RETURN((int)self->total);
}

/* Connects the socket in SLOT_CLIENT and checks msgs echoes of size bytes, all through the slot. */
struct fx_client {
    COR_PROMISE(int);
    const cor_sockaddr *addr;
    int msgs, size, i, r, got;
    char out[300], in[300];
};
COR_DEFINE_STATIC(fx_client, (const cor_sockaddr *addr, int msgs, int size), {
    self->addr = addr;
    self->msgs = msgs;
    self->size = size;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r,
              COR_FIXED(COR_DEADLINE_AFTER(cor_connect(SLOT_CLIENT, self->addr), 5000 * MS)));
    if (self->r < 0)
        COR_RETURN(self->r);
    for (self->i = 0; self->i < self->msgs; self->i++) {
        for (int k = 0; k < self->size; k++)
            self->out[k] = (char)(self->i * 13 + k);
        COR_AWAIT(self->r, COR_FIXED(cor_send(SLOT_CLIENT, self->out, (size_t)self->size, 0)));
        if (self->r != self->size)
            COR_RETURN(self->r < 0 ? self->r : -EIO);
        for (self->got = 0; self->got < self->size; self->got += self->r) {
            COR_AWAIT(self->r,
                      COR_DEADLINE_AFTER(COR_FIXED(cor_recv(SLOT_CLIENT, self->in + self->got,
                                                            (size_t)(self->size - self->got), 0)),
                                         5000 * MS));
            if (self->r <= 0)
                COR_RETURN(self->r < 0 ? self->r : -EPROTO);
        }
        if (memcmp(self->in, self->out, (size_t)self->size))
            COR_RETURN(-EPROTO);
    }
    COR_AWAIT(self->r, COR_FIXED(cor_shutdown(SLOT_CLIENT, SHUT_WR)));
    if (self->r < 0)
        COR_RETURN(self->r);
    COR_RETURN(self->msgs);
}

IO_TEST(fixed, echo_over_registered_sockets)
{
    cor_io_context *io = io_test_create(backend, NULL);
    cor_sockaddr a;
    cr_assert_eq(cor_addr_parse(&a, "127.0.0.1:0"), 0);
    int lfd = cor_listen(&a, 4, 0);
    cr_assert_geq(lfd, 0, "listen: %s", cor_strerror(lfd));
    cr_assert_eq(cor_local_addr(lfd, &a), 0);
    int cfd = cor_socket(AF_INET, SOCK_STREAM);
    cr_assert_geq(cfd, 0);
    int fds[NSLOTS] = {lfd, -1, cfd};
    /* Before anyone drives io: the creating thread may register. */
    cr_assert_eq(cor_io_files_register(io, fds, NSLOTS), 0);
    cr_assert_eq(cor_io_files_count(io), NSLOTS);
    /* The table holds its own references: the descriptors may go. */
    close(lfd);
    close(cfd);
    int srv, cli;
    launch(io, COR_FRAME(fx_server()), &srv);
    launch(io, COR_FRAME(fx_client(&a, 40, 300)), &cli);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(cli, 40, "client: %s", cor_strerror(cli));
    cr_assert_eq(srv, 40 * 300, "server: %s", cor_strerror(srv));
    cr_assert_eq(cor_io_files_unregister(io), 0);
    cr_assert_eq(cor_io_files_count(io), 0);
    cor_io_context_destroy(io);
}

/* ---- files through a slot ---- */

struct fx_file {
    COR_PROMISE(int);
    int r, step;
    char w1[8], w2[8], r1[8], r2[8], all[16];
    struct iovec wv[2], rv[2];
};
COR_DEFINE_STATIC(fx_file, (void), {})
{
    COR_BEGIN();
    self->step = 0;
    memcpy(self->w1, "fixed-wr", 8);
    memcpy(self->w2, "itev-ok!", 8);
    COR_AWAIT(self->r, COR_FIXED(cor_write(0, "registered", 10, 0)));
    if (self->r != 10)
        COR_RETURN(self->r < 0 ? self->r : -EIO);
    self->step = 1;
    self->wv[0] = (struct iovec){self->w1, 8};
    self->wv[1] = (struct iovec){self->w2, 8};
    COR_AWAIT(self->r, COR_FIXED(cor_writev(0, self->wv, 2, 10)));
    if (self->r != 16)
        COR_RETURN(self->r < 0 ? self->r : -EIO);
    self->step = 2;
    COR_AWAIT(self->r, COR_FIXED(cor_fsync(0)));
    if (self->r < 0)
        COR_RETURN(self->r);
    self->step = 3;
    COR_AWAIT(self->r, COR_FIXED(cor_read(0, self->all, 10, 0)));
    if (self->r != 10 || memcmp(self->all, "registered", 10))
        COR_RETURN(self->r < 0 ? self->r : -EPROTO);
    self->step = 4;
    self->rv[0] = (struct iovec){self->r1, 8};
    self->rv[1] = (struct iovec){self->r2, 8};
    COR_AWAIT(self->r, COR_FIXED(cor_readv(0, self->rv, 2, 10)));
    if (self->r != 16 || memcmp(self->r1, self->w1, 8) || memcmp(self->r2, self->w2, 8))
        COR_RETURN(self->r < 0 ? self->r : -EPROTO);
    self->step = 5;
    COR_AWAIT(self->r, COR_FIXED(cor_fdatasync(0)));
    if (self->r < 0)
        COR_RETURN(self->r);
    COR_AWAIT(self->r, COR_FIXED(cor_read(0, self->all, 16, 26)));
    COR_RETURN(self->r == 0 ? 6 : -EPROTO); /* end of file */
}

IO_TEST(fixed, file_read_write_vectored_fsync_through_a_slot)
{
    cor_io_context *io = io_test_create(backend, NULL);
    char path[] = "/tmp/coring-fixed-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    int fds[1] = {fd};
    cr_assert_eq(cor_io_files_register(io, fds, 1), 0);
    close(fd);
    int r;
    launch(io, COR_FRAME(fx_file()), &r);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, 6, "file ops through a slot: %s", cor_strerror(r));
    cor_io_context_destroy(io); /* releases the table: the file goes */
}

/* ---- update a slot ---- */

struct fx_update {
    COR_PROMISE(int);
    int a, b, r;
};
COR_DEFINE_STATIC(fx_update, (int a, int b), {
    self->a = a;
    self->b = b;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_FIXED(cor_send(0, "one", 3, 0)));
    if (self->r != 3)
        COR_RETURN(self->r < 0 ? self->r : -EIO);
    /* From a coroutine on io (its driving thread). */
    self->r = cor_io_files_update(cor_io_context_current(), 0, self->b);
    if (self->r)
        COR_RETURN(self->r);
    COR_AWAIT(self->r, COR_FIXED(cor_send(0, "two", 3, 0)));
    if (self->r != 3)
        COR_RETURN(self->r < 0 ? self->r : -EIO);
    /* Emptied: the slot names nothing. */
    self->r = cor_io_files_update(cor_io_context_current(), 0, -1);
    if (self->r)
        COR_RETURN(self->r);
    COR_AWAIT(self->r, COR_FIXED(cor_send(0, "three", 5, 0)));
    COR_RETURN(self->r);
}

IO_TEST(fixed, update_a_slot_to_another_socket)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sa[2], sb[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sa), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sb), 0);
    int fds[1] = {sa[0]};
    cr_assert_eq(cor_io_files_register(io, fds, 1), 0);
    int r;
    launch(io, COR_FRAME(fx_update(sa[0], sb[0])), &r);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, -EBADF, "send on an emptied slot: %s", cor_strerror(r));
    char buf[8];
    cr_assert_eq(read_within(sa[1], buf, sizeof buf, 5000), 3);
    cr_assert_eq(memcmp(buf, "one", 3), 0);
    cr_assert_eq(read_within(sb[1], buf, sizeof buf, 5000), 3);
    cr_assert_eq(memcmp(buf, "two", 3), 0, "the updated slot names the other socket");
    cr_assert_eq(read(sa[1], buf, sizeof buf), -1, "nothing more on the first socket");
    cr_assert_eq(errno, EAGAIN);
    cor_io_context_destroy(io);
    for (int i = 0; i < 2; i++) {
        close(sa[i]);
        close(sb[i]);
    }
}

/* ---- a closed descriptor and its slot ---- */

struct fx_send_one {
    COR_PROMISE(int);
    int slot, r;
};
COR_DEFINE_STATIC(fx_send_one, (int slot), { self->slot = slot; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_FIXED(cor_send(self->slot, "x", 1, 0)));
    COR_RETURN(self->r);
}

IO_TEST(fixed, a_closed_descriptor_lives_on_in_its_slot_until_updated)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int fds[2] = {-1, sv[0]};
    cr_assert_eq(cor_io_files_register(io, fds, 2), 0);
    close(sv[0]);
    int r;
    launch(io, COR_FRAME(fx_send_one(1)), &r);
    cr_assert_geq(cor_io_context_run(io), 0);
    cr_assert_eq(r, 1, "send through the slot of a closed descriptor: %s", cor_strerror(r));
    char c;
    cr_assert_eq(read_within(sv[1], &c, 1, 5000), 1, "the peer got the byte, no end of stream");
    cr_assert_eq(read(sv[1], &c, 1), -1);
    cr_assert_eq(errno, EAGAIN, "the socket is still open: the slot holds it");
    /* Updating the slot releases the last reference: the peer sees the end. */
    cr_assert_eq(cor_io_files_update(io, 1, -1), 0);
    cr_assert_eq(read_within(sv[1], &c, 1, 5000), 0, "end of stream once the slot let go");
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* ---- bad indexes and ops without a descriptor ---- */

struct fx_bad {
    COR_PROMISE(int);
    int slot, r;
    char buf[4];
};
COR_DEFINE_STATIC(fx_bad, (int slot), { self->slot = slot; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, COR_FIXED(cor_recv(self->slot, self->buf, sizeof self->buf, 0)));
    COR_RETURN(self->r);
}

struct fx_nodesc {
    COR_PROMISE(int);
    int r, which;
    struct statx stx;
};
COR_DEFINE_STATIC(fx_nodesc, (int which), { self->which = which; })
{
    COR_BEGIN();
    switch (self->which) {
    case 0:
        COR_AWAIT(self->r, COR_FIXED(cor_close(0)));
        break;
    case 1:
        COR_AWAIT(self->r, COR_FIXED(cor_nop()));
        break;
    case 2:
        COR_AWAIT(self->r, COR_FIXED(cor_open("/dev/null", O_RDONLY, 0)));
        break;
    case 3:
        COR_AWAIT(self->r, COR_FIXED(cor_sleep_for(1)));
        break;
    default:
        COR_AWAIT(self->r, COR_FIXED(cor_statx(AT_FDCWD, "/", 0, STATX_BASIC_STATS, &self->stx)));
        break;
    }
    COR_RETURN(self->r);
}

static int run_one_task(cor_io_context *io, cor_frame *t)
{
    int r;
    launch(io, t, &r);
    cr_assert_geq(cor_io_context_run(io), 0);
    return r;
}

IO_TEST(fixed, bad_index_completes_with_ebadf)
{
    cor_io_context *io = io_test_create(backend, NULL);
    /* No table at all. */
    cr_assert_eq(run_one_task(io, COR_FRAME(fx_bad(0))), -EBADF);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int fds[2] = {sv[0], -1};
    cr_assert_eq(cor_io_files_register(io, fds, 2), 0);
    cr_assert_eq(run_one_task(io, COR_FRAME(fx_bad(2))), -EBADF, "past the table");
    cr_assert_eq(run_one_task(io, COR_FRAME(fx_bad(1000000))), -EBADF, "far past the table");
    cr_assert_eq(run_one_task(io, COR_FRAME(fx_bad(1))), -EBADF, "an empty slot");
    cr_assert_eq(run_one_task(io, COR_FRAME(fx_bad(-1))), -EBADF, "a negative index");
    /* Slot 0 works meanwhile. */
    cr_assert_eq(write(sv[1], "ok", 2), 2);
    cr_assert_eq(run_one_task(io, COR_FRAME(fx_bad(0))), 2);
    cor_io_context_destroy(io);
    close(sv[0]);
    close(sv[1]);
}

IO_TEST(fixed, ops_without_a_descriptor_complete_with_einval)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int fds[1] = {sv[0]};
    cr_assert_eq(cor_io_files_register(io, fds, 1), 0);
    for (int which = 0; which < 5; which++)
        cr_assert_eq(run_one_task(io, COR_FRAME(fx_nodesc(which))), -EINVAL, "case %d", which);
    /* The close was refused, not run: slot 0 still works. */
    cr_assert_eq(write(sv[1], "ok", 2), 2);
    cr_assert_eq(run_one_task(io, COR_FRAME(fx_bad(0))), 2);
    cr_assert_eq(cor_io_op_fixed(NULL), -EINVAL);
    cor_io_context_destroy(io);
    close(sv[0]);
    close(sv[1]);
}

/* ---- bad arguments ---- */

IO_TEST(fixed, bad_arguments)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int fds[2] = {sv[0], sv[1]};
    int bad[2] = {sv[0], -2};
    cr_assert_eq(cor_io_files_register(NULL, fds, 2), -EINVAL);
    cr_assert_eq(cor_io_files_register(io, NULL, 2), -EINVAL);
    cr_assert_eq(cor_io_files_register(io, fds, 0), -EINVAL);
    cr_assert_eq(cor_io_files_register(io, fds, COR_IO_FILES_MAX + 1), -EINVAL);
    cr_assert_eq(cor_io_files_register(io, bad, 2), -EINVAL);
    cr_assert_eq(cor_io_files_update(io, 0, sv[0]), -ENXIO, "no table yet");
    cr_assert_eq(cor_io_files_unregister(io), -ENXIO, "no table yet");
    /* A descriptor that is not open: nothing is registered. */
    int dead = dup(sv[0]);
    close(dead);
    int closed[2] = {sv[0], dead};
    cr_assert_eq(cor_io_files_register(io, closed, 2), -EBADF);
    cr_assert_eq(cor_io_files_count(io), 0);
    cr_assert_eq(cor_io_files_register(io, fds, 2), 0);
    cr_assert_eq(cor_io_files_register(io, fds, 2), -EBUSY, "a second table");
    cr_assert_eq(cor_io_files_count(io), 2);
    cr_assert_eq(cor_io_files_update(NULL, 0, sv[0]), -EINVAL);
    cr_assert_eq(cor_io_files_update(io, 2, sv[0]), -EINVAL, "index past the table");
    cr_assert_eq(cor_io_files_update(io, 0, -2), -EINVAL);
    dead = dup(sv[0]); /* the table's own references may have taken the old number */
    close(dead);
    cr_assert_eq(cor_io_files_update(io, 0, dead), -EBADF);
    cr_assert_eq(cor_io_files_update(io, 1, -1), 0);
    cr_assert_eq(cor_io_files_unregister(NULL), -EINVAL);
    cr_assert_eq(cor_io_files_unregister(io), 0);
    cr_assert_eq(cor_io_files_unregister(io), -ENXIO, "unregistered twice");
    /* A new table after unregistering. */
    cr_assert_eq(cor_io_files_register(io, fds, 1), 0);
    cr_assert_eq(cor_io_files_count(io), 1);
    cr_assert_eq(cor_io_files_count(NULL), 0);
    cor_io_context_destroy(io);
    close(sv[0]);
    close(sv[1]);
}

/* ---- threads ---- */

struct other_thread {
    cor_io_context *io;
    int fd;
    int reg, upd, unreg; /* results of the three calls */
    int started, done;   /* atomics */
};

static void *call_from_other_thread(void *arg)
{
    struct other_thread *t = arg;
    for (int i = 0; i < 5000 && !__atomic_load_n(&t->started, __ATOMIC_ACQUIRE); i++) {
        struct timespec ts = {0, 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    int fds[1] = {t->fd};
    t->reg = cor_io_files_register(t->io, fds, 1);
    t->upd = cor_io_files_update(t->io, 0, t->fd);
    t->unreg = cor_io_files_unregister(t->io);
    __atomic_store_n(&t->done, 1, __ATOMIC_RELEASE);
    return NULL;
}

/* Keeps io running (sleeping in short steps) until the other thread is done, bounded. */
struct fx_keep_busy {
    COR_PROMISE(int);
    struct other_thread *t;
    int i, r;
};
COR_DEFINE_STATIC(fx_keep_busy, (struct other_thread * t), { self->t = t; })
{
    COR_BEGIN();
    __atomic_store_n(&self->t->started, 1, __ATOMIC_RELEASE);
    for (self->i = 0; self->i < 5000 && !__atomic_load_n(&self->t->done, __ATOMIC_ACQUIRE);
         self->i++)
        COR_AWAIT(self->r, cor_sleep_for(1 * MS));
    COR_RETURN(__atomic_load_n(&self->t->done, __ATOMIC_ACQUIRE) ? 0 : -ETIMEDOUT);
}

IO_TEST(fixed, calls_from_a_thread_not_driving_the_context_get_eperm)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    struct other_thread t = {.io = io, .fd = sv[0], .reg = 1, .upd = 1, .unreg = 1};
    pthread_t th;
    cr_assert_eq(pthread_create(&th, NULL, call_from_other_thread, &t), 0);
    int r;
    launch(io, COR_FRAME(fx_keep_busy(&t)), &r);
    cr_assert_geq(cor_io_context_run(io), 0);
    pthread_join(th, NULL);
    cr_assert_eq(r, 0);
    cr_assert_eq(t.reg, -EPERM, "register while another thread drives io: %s", cor_strerror(t.reg));
    cr_assert_eq(t.upd, -EPERM);
    cr_assert_eq(t.unreg, -EPERM);
    cr_assert_eq(cor_io_files_count(io), 0, "nothing was registered");

    /* Nobody drives io now. Under SINGLE_ISSUER only its owner may call;
     * otherwise (epoll, or a kernel without it) any one thread at a time. */
    bool single = cor_io_context_features(io) & COR_IO_SINGLE_ISSUER;
    struct other_thread t2 = {.io = io, .fd = sv[0], .started = 1};
    cr_assert_eq(pthread_create(&th, NULL, call_from_other_thread, &t2), 0);
    pthread_join(th, NULL);
    if (single) {
        cr_assert_eq(t2.reg, -EPERM, "a thread other than the owner: %s", cor_strerror(t2.reg));
        cr_assert_eq(t2.upd, -EPERM);
        cr_assert_eq(t2.unreg, -EPERM);
    } else {
        cr_assert_eq(t2.reg, 0, "%s", cor_strerror(t2.reg));
        cr_assert_eq(t2.upd, 0);
        cr_assert_eq(t2.unreg, 0);
    }
    /* The owner may. */
    int fds[1] = {sv[0]};
    cr_assert_eq(cor_io_files_register(io, fds, 1), 0);
    cor_io_context_destroy(io);
    close(sv[0]);
    close(sv[1]);
}

/* ---- destroy ---- */

IO_TEST(fixed, destroy_with_files_registered_and_a_fixed_recv_in_flight)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv), 0);
    int fds[3] = {sv[0], -1, sv[0]};
    cr_assert_eq(cor_io_files_register(io, fds, 3), 0);
    close(sv[0]);
    int r;
    launch(io, COR_FRAME(fx_bad(0)), &r); /* a recv that waits: nothing is sent */
    for (int i = 0; i < 3; i++)
        cr_assert_geq(cor_io_context_run_for(io, 5 * MS), 0);
    cr_assert_eq(r, -9999, "the recv is still waiting");
    cor_io_context_destroy(io); /* its frame is destroyed, the table released */
    char c;
    cr_assert_eq(read_within(sv[1], &c, 1, 5000), 0, "the socket closed with the table");
    close(sv[1]);
}
