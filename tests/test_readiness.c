/*
 * Operations that wait for a descriptor to become ready, on both backends:
 * a canceled or timed-out wait leaves the descriptor usable and consumes
 * nothing, waits in opposite directions on one descriptor complete
 * independently, waits in one direction each get their own data (in
 * submission order on epoll), a
 * descriptor number reused after an engine close works, and regular files
 * complete. On epoll these are the paths of the readiness engine (queues
 * per descriptor and direction, edge-triggered registration, the timer
 * heap); on io_uring the same contract holds.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/socket.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include <coring/net.h>
#include "util.h"

#define MS (1000LL * 1000)

/* The operations these tests use, by kind, through the public calls. */
enum { OP_READ, OP_WRITE, OP_RECV, OP_SEND, OP_CLOSE };

/* An op on fd: read/write len bytes at off (-1: the position), recv/send len bytes, or close. */
static struct cor_io_await *op_io(int kind, int fd, void *buf, uint32_t len, int64_t off)
{
    switch (kind) {
    case OP_READ:
        return cor_read(fd, buf, len, off);
    case OP_WRITE:
        return cor_write(fd, buf, len, off);
    case OP_RECV:
        return cor_recv(fd, buf, len, 0);
    case OP_SEND:
        return cor_send(fd, buf, len, 0);
    default:
        return cor_close(fd);
    }
}

static void store_int(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

/* One op awaited: its result, and the first byte of its buffer in *byte. */
struct one_op {
    COR_PROMISE(int);
    int opcode, fd;
    int64_t deadline_ns;
    char *byte;
    char buf[8];
    int r;
};
COR_DEFINE_STATIC(one_op, (int opcode, int fd, int64_t deadline_ns, char *byte), {
    self->opcode = opcode;
    self->fd = fd;
    self->deadline_ns = deadline_ns;
    self->byte = byte;
})
{
    COR_BEGIN();
    self->buf[0] = 0;
    if (self->deadline_ns)
        COR_AWAIT(self->r,
                  COR_DEADLINE_AFTER(op_io(self->opcode, self->fd, self->buf, 1, -1),
                                     self->deadline_ns));
    else
        COR_AWAIT(self->r, op_io(self->opcode, self->fd, self->buf, 1, -1));
    if (self->byte)
        *self->byte = self->buf[0];
    COR_RETURN(self->r);
}

/* Sleeps, then writes one byte c to fd with a plain write. */
struct late_write {
    COR_PROMISE(int);
    int fd;
    int64_t ns;
    char c;
    int r;
};
COR_DEFINE_STATIC(late_write, (int fd, int64_t ns, char c), {
    self->fd = fd;
    self->ns = ns;
    self->c = c;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(self->ns));
    COR_RETURN((int)write(self->fd, &self->c, 1));
}

/* Runs one read of fd to completion on io, with a byte written after write_ns (0: none). */
static int read_once(cor_io_context *io, int rfd, int wfd, int64_t write_ns, int64_t deadline_ns,
                     char *byte)
{
    int r = 1000, w = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    cor_launch_options wo = {.on_result = store_int, .user = &w};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, one_op(OP_READ, rfd, deadline_ns, byte));
    if (write_ns)
        COR_RUN_ASYNC(cor_io_context_executor(io), &wo, late_write(wfd, write_ns, 'y'));
    cor_io_context_run(io);
    return r;
}

IO_TEST(readiness, canceled_wait_consumes_nothing_and_leaves_the_descriptor_usable)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    int r = 1000;
    cor_launch_options lo = {
        .stop = cor_stop_source_token(&src), .on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, one_op(OP_READ, p[0], 0, NULL));
    cr_assert_eq(cor_io_context_poll(io), 1, "the read waits");
    cor_stop_source_request(&src);
    cor_io_context_run(io);
    cr_assert_eq(r, -ECANCELED);
    /* The canceled read took nothing: the byte written now is there for the next one. */
    cr_assert_eq(write(p[1], "z", 1), 1);
    char c = 0;
    cr_assert_eq(read_once(io, p[0], p[1], 0, 0, &c), 1);
    cr_assert_eq(c, 'z');
    /* Waiting again on the same descriptor still sees new data. */
    c = 0;
    cr_assert_eq(read_once(io, p[0], p[1], 5 * MS, 0, &c), 1);
    cr_assert_eq(c, 'y');
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

IO_TEST(readiness, deadline_fires_while_waiting_then_the_descriptor_works)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    int64_t t0 = cor_clock_now();
    cr_assert_eq(read_once(io, sv[0], sv[1], 0, 10 * MS, NULL), -ETIME);
    cr_assert_geq(cor_clock_now() - t0, 10 * MS, "not before the deadline");
    char c = 0;
    cr_assert_eq(read_once(io, sv[0], sv[1], 5 * MS, 1000 * MS, &c), 1, "data before the deadline");
    cr_assert_eq(c, 'y');
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

IO_TEST(readiness, waits_in_one_direction_each_get_their_own_data)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    int r[3] = {1000, 1000, 1000};
    char c[3] = {0, 0, 0};
    cor_launch_options lo[3];
    for (int i = 0; i < 3; i++) {
        lo[i] = (cor_launch_options){.on_result = store_int, .user = &r[i]};
        COR_RUN_ASYNC(cor_io_context_executor(io), &lo[i], one_op(OP_READ, p[0], 0, &c[i]));
    }
    cr_assert_eq(cor_io_context_poll(io), 3, "three reads wait");
    cr_assert_eq(write(p[1], "abc", 3), 3);
    cor_io_context_run(io);
    for (int i = 0; i < 3; i++)
        cr_assert_eq(r[i], 1);
    cr_assert(c[0] != c[1] && c[1] != c[2] && c[0] != c[2], "each byte was read once");
    /* io_uring does not promise an order among waits on one descriptor; epoll keeps FIFO. */
    if (backend == COR_IO_BACKEND_EPOLL)
        for (int i = 0; i < 3; i++)
            cr_assert_eq(c[i], "abc"[i], "read %d got its byte in submission order", i);
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

/* Receives one byte on fd while a send on the same fd waits for room. */
IO_TEST(readiness, opposite_directions_on_one_descriptor_complete_independently)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv), 0);
    /* Fill sv[0]'s way out, so a send on it has to wait. */
    enum { CHUNK = 4096 };
    static char fill[CHUNK];
    long filled = 0;
    ssize_t k;
    while ((k = send(sv[0], fill, sizeof fill, MSG_DONTWAIT)) > 0)
        filled += k;
    cr_assert_gt(filled, 0);
    int rr = 1000, sr = 1000;
    char rc = 0;
    static char out[CHUNK];
    cor_launch_options rl = {.on_result = store_int, .user = &rr};
    cor_launch_options sl = {.on_result = store_int, .user = &sr};
    COR_RUN_ASYNC(cor_io_context_executor(io), &rl, one_op(OP_RECV, sv[0], 0, &rc));
    COR_RUN_ASYNC(cor_io_context_executor(io), &sl, one_op(OP_SEND, sv[0], 0, NULL));
    cr_assert_eq(cor_io_context_poll(io), 2, "both wait");
    /* Data arrives: the receive completes, the send still waits. */
    cr_assert_eq(write(sv[1], "q", 1), 1);
    for (int i = 0; i < 100 && rr == 1000; i++)
        cor_io_context_run_for(io, MS);
    cr_assert_eq(rr, 1);
    cr_assert_eq(rc, 'q');
    cr_assert_eq(sr, 1000, "the send is still waiting for room");
    /* Room appears: the send completes. */
    while (filled > 0 && (k = recv(sv[1], out, sizeof out, MSG_DONTWAIT)) > 0)
        filled -= k;
    cor_io_context_run(io);
    cr_assert_eq(sr, 1, "the send went out once there was room");
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

/* A descriptor closed through the engine, its number reused by a new pipe, waited on again. */
struct close_then_read {
    COR_PROMISE(int);
    int p[2];
    char c;
    int r;
};
COR_DEFINE_STATIC(close_then_read, (int rfd, int wfd), {
    self->p[0] = rfd;
    self->p[1] = wfd;
})
{
    COR_BEGIN();
    /* Make the engine wait on the read end once (registering it), with a deadline. */
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(
                           op_io(OP_READ, self->p[0], &self->c, 1, -1), 2 * MS));
    if (self->r != -ETIME)
        COR_RETURN(-100);
    COR_AWAIT(self->r, op_io(OP_CLOSE, self->p[0], NULL, 0, 0));
    if (self->r != 0)
        COR_RETURN(-101);
    close(self->p[1]);
    if (pipe2(self->p, O_CLOEXEC))
        COR_RETURN(-102);
    COR_RETURN(self->p[0]);
}

IO_TEST(readiness, descriptor_number_reused_after_an_engine_close)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int p[2];
    cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
    int fd = -1;
    cor_launch_options lo = {.on_result = store_int, .user = &fd};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, close_then_read(p[0], p[1]));
    cor_io_context_run(io);
    cr_assert_eq(fd, p[0], "the new pipe's read end has the old number (%d)", fd);
    /* pipe2 returned the lowest free numbers: the write end is the old one too. */
    char c = 0;
    cr_assert_eq(read_once(io, p[0], p[1], 5 * MS, 0, &c), 1, "the new descriptor is waited on");
    cr_assert_eq(c, 'y');
    close(p[0]);
    close(p[1]);
    cor_io_context_destroy(io);
}

/* Regular files: a write then a read at an offset complete with their counts. */
struct file_rw {
    COR_PROMISE(int);
    int fd;
    char buf[16];
    int r;
};
COR_DEFINE_STATIC(file_rw, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    memcpy(self->buf, "hello, file", 11);
    COR_AWAIT(self->r, op_io(OP_WRITE, self->fd, self->buf, 11, 0));
    if (self->r != 11)
        COR_RETURN(-1);
    memset(self->buf, 0, sizeof self->buf);
    COR_AWAIT(self->r, op_io(OP_READ, self->fd, self->buf, 4, 7));
    if (self->r != 4 || memcmp(self->buf, "file", 4))
        COR_RETURN(-2);
    COR_AWAIT(self->r, op_io(OP_READ, self->fd, self->buf, 4, 100));
    COR_RETURN(self->r == 0 ? 1 : -3); /* past the end: 0 */
}

IO_TEST(readiness, regular_file_reads_and_writes_complete)
{
    cor_io_context *io = io_test_create(backend, NULL);
    char path[] = "/tmp/coring-readiness-XXXXXX";
    int fd = mkstemp(path);
    cr_assert_geq(fd, 0);
    unlink(path);
    int r = 0;
    cor_launch_options lo = {.on_result = store_int, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &lo, file_rw(fd));
    cor_io_context_run(io);
    cr_assert_eq(r, 1, "write, read at an offset, read past the end (step %d failed)", -r);
    close(fd);
    cor_io_context_destroy(io);
}
