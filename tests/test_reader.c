/*
 * The buffered reader on both backends: lines (LF and CRLF) split across
 * every byte boundary, leftover bytes kept across calls, read_until and
 * read_exact, a line longer than the buffer (-EMSGSIZE), the end of the
 * stream in the middle of a line (-ENODATA) and at a boundary (0), a pipe,
 * a regular file and a terminal as well as sockets, stop and timeout while waiting, bad
 * input. Descriptors are closed through the
 * engine (cor_close): the numbers are reused from one case to the next, and
 * the epoll backend forgets a registration only when the engine closes it.
 */
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

#define MS (1000LL * 1000)

static int socket_pair(int sv[2])
{
    return socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0, sv);
}

/*
 * Sends text in two pieces, the first `split` bytes, a pause, the rest; then
 * ends the stream. A socket gets cor_send_all, a pipe (pipe) cor_write.
 */
struct writer {
    COR_PROMISE(int);
    int fd;
    bool pipe;
    const char *text;
    size_t split, len;
    ssize_t n;
};
COR_DEFINE_STATIC(writer, (int fd, const char *text, size_t split), {
    self->fd = fd;
    self->pipe = false; /* the caller sets it on the frame before launching it */
    self->text = text;
    self->split = split;
})
{
    COR_BEGIN();
    self->len = strlen(self->text);
    if (self->split && self->pipe)
        COR_AWAIT(self->n, cor_write(self->fd, self->text, self->split, -1));
    else if (self->split)
        COR_AWAIT(self->n, cor_send_all(self->fd, self->text, self->split));
    COR_AWAIT_VOID(cor_sleep_for(MS / 5)); /* the reader sees the first piece alone */
    if (self->pipe)
        COR_AWAIT(self->n,
                  cor_write(self->fd, self->text + self->split, self->len - self->split, -1));
    else
        COR_AWAIT(self->n,
                  cor_send_all(self->fd, self->text + self->split, self->len - self->split));
    COR_AWAIT_VOID(cor_close(self->fd)); /* the reader sees the end of the stream */
    COR_RETURN(0);
}

/* Reads lines until the end, joining them with '|' into out; returns the last result. */
struct line_reader {
    COR_PROMISE(int);
    cor_reader rd;
    int fd;
    char *out;
    char *line;
    size_t len, cap;
    ssize_t n;
};
COR_DEFINE_STATIC(line_reader, (int fd, char *out, size_t cap), {
    self->fd = fd;
    self->out = out;
    self->cap = cap;
})
{
    COR_BEGIN();
    if (cor_reader_init(&self->rd, self->fd, NULL, self->cap))
        COR_RETURN(-1);
    self->out[0] = '\0';
    for (;;) {
        COR_AWAIT(self->n, cor_read_line(&self->rd, &self->line, &self->len));
        if (self->n <= 0)
            break;
        strncat(self->out, self->line, self->len);
        strcat(self->out, "|");
    }
    cor_reader_destroy(&self->rd);
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN((int)self->n);
}

static int store_result;

static void store(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

IO_TEST(reader, lines_split_at_every_byte_boundary)
{
    cor_io_context *io = io_test_create(backend, NULL);
    const char *text = "GET a\r\n\nSET key value\nlong-ish line here\r\nlast\n";
    size_t len = strlen(text);
    for (size_t split = 0; split <= len; split++) {
        int sv[2];
        cr_assert_eq(socket_pair(sv), 0);
        char out[256];
        int r = 1, w = 1;
        cor_launch_options ro = {.on_result = store, .user = &r};
        cor_launch_options wo = {.on_result = store, .user = &w};
        COR_RUN_ASYNC(cor_io_context_executor(io), &ro, line_reader(sv[0], out, 64));
        COR_RUN_ASYNC(cor_io_context_executor(io), &wo, writer(sv[1], text, split));
        cor_io_context_run(io);
        cr_assert_eq(r, 0, "split %zu: a clean end of stream (%d)", split, r);
        cr_assert_str_eq(out, "GET a||SET key value|long-ish line here|last|", "split %zu", split);
    }
    (void)store_result;
    cor_io_context_destroy(io);
}

/*
 * Not a socket: a pipe, written in two pieces with a pause (the reader waits
 * on it), and a regular file, read from its file position (a line the first
 * read cuts in two is put together by the next).
 */
IO_TEST(reader, lines_from_a_pipe_and_a_file)
{
    cor_io_context *io = io_test_create(backend, NULL);
    const char *text = "GET a\r\n\nSET key value\nlong-ish line here\r\nlast\n";
    const char *want = "GET a||SET key value|long-ish line here|last|";
    size_t splits[] = {0, 3, 20};
    for (size_t i = 0; i < sizeof splits / sizeof *splits; i++) {
        int p[2];
        cr_assert_eq(pipe2(p, O_CLOEXEC), 0);
        char out[256];
        int r = 1, w = 1;
        cor_launch_options ro = {.on_result = store, .user = &r};
        cor_launch_options wo = {.on_result = store, .user = &w};
        COR_RUN_ASYNC(cor_io_context_executor(io), &ro, line_reader(p[0], out, 64));
        struct writer *wr = writer(p[1], text, splits[i]);
        cr_assert_not_null(wr);
        wr->pipe = true;
        COR_RUN_ASYNC(cor_io_context_executor(io), &wo, wr);
        cor_io_context_run(io);
        cr_assert_eq(w, 0);
        cr_assert_eq(r, 0, "pipe, split %zu: a clean end of stream (%d)", splits[i], r);
        cr_assert_str_eq(out, want, "pipe, split %zu", splits[i]);
    }
    char path[] = "/tmp/coring-reader-XXXXXX";
    int fd = mkostemp(path, O_CLOEXEC);
    cr_assert_geq(fd, 0);
    unlink(path);
    cr_assert_eq(write(fd, text, strlen(text)), (ssize_t)strlen(text));
    cr_assert_eq(lseek(fd, 0, SEEK_SET), 0);
    char out[256];
    int r = 1;
    cor_launch_options ro = {.on_result = store, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &ro, line_reader(fd, out, 32));
    cor_io_context_run(io);
    cr_assert_eq(r, 0, "file: a clean end (%d)", r);
    cr_assert_str_eq(out, want, "file");
    cor_io_context_destroy(io);
}

/* Reads one line from fd into out (NUL-terminated); the read's result. */
struct one_line {
    COR_PROMISE(int);
    cor_reader rd;
    int fd;
    char *out;
    char *line;
    size_t len;
    ssize_t n;
};
COR_DEFINE_STATIC(one_line, (int fd, char *out), {
    self->fd = fd;
    self->out = out;
})
{
    COR_BEGIN();
    if (cor_reader_init(&self->rd, self->fd, NULL, 64))
        COR_RETURN(-1);
    COR_AWAIT(self->n, cor_read_line(&self->rd, &self->line, &self->len));
    if (self->n > 0) {
        memcpy(self->out, self->line, self->len);
        self->out[self->len] = '\0';
    }
    cor_reader_destroy(&self->rd);
    COR_RETURN((int)self->n);
}

/* A terminal: a line typed on a pseudo-terminal's master is read from its slave. */
IO_TEST(reader, a_line_from_a_terminal)
{
    int m = posix_openpt(O_RDWR | O_NOCTTY | O_CLOEXEC);
    cr_assert_geq(m, 0);
    cr_assert_eq(grantpt(m), 0);
    cr_assert_eq(unlockpt(m), 0);
    int t = open(ptsname(m), O_RDWR | O_NOCTTY | O_CLOEXEC);
    cr_assert_geq(t, 0);
    cor_io_context *io = io_test_create(backend, NULL);
    char out[64] = "";
    int r = 1;
    cor_launch_options ro = {.on_result = store, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &ro, one_line(t, out));
    cor_io_context_run_for(io, 20 * MS);
    cr_assert_eq(r, 1, "nothing typed yet: the read waits");
    cr_assert_eq(write(m, "hello tty\n", 10), 10);
    int64_t end = cor_clock_now() + 5000 * MS;
    while (r == 1 && cor_clock_now() < end)
        cor_io_context_run_for(io, 5 * MS);
    cr_assert_gt(r, 0, "the line: %d", r);
    cr_assert_str_eq(out, "hello tty");
    cor_io_context_destroy(io);
    close(t);
    close(m);
}

IO_TEST(reader, end_of_stream_mid_line_and_a_line_too_long)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    char out[256];
    int r = 1, w = 1;
    cor_launch_options ro = {.on_result = store, .user = &r};
    cor_launch_options wo = {.on_result = store, .user = &w};
    cr_assert_eq(socket_pair(sv), 0);
    COR_RUN_ASYNC(cor_io_context_executor(io), &ro, line_reader(sv[0], out, 64));
    COR_RUN_ASYNC(cor_io_context_executor(io), &wo, writer(sv[1], "one\ntwo-without-end", 5));
    cor_io_context_run(io);
    cr_assert_eq(r, -ENODATA, "the stream ended in the middle of a line");
    cr_assert_str_eq(out, "one|");

    cr_assert_eq(socket_pair(sv), 0);
    COR_RUN_ASYNC(cor_io_context_executor(io), &ro, line_reader(sv[0], out, 8));
    COR_RUN_ASYNC(cor_io_context_executor(io), &wo, writer(sv[1], "short\nmuch-too-long\n", 3));
    cor_io_context_run(io);
    cr_assert_eq(r, -EMSGSIZE, "a line longer than the 8-byte buffer");
    cr_assert_str_eq(out, "short|");
    cor_io_context_destroy(io);
}

/* A length-prefixed protocol: "LL:" then LL bytes, then a "\r\n\r\n"-delimited trailer. */
struct framed {
    COR_PROMISE(int);
    cor_reader rd;
    char storage[32];
    char *p;
    size_t len, peeked;
    ssize_t n;
    int fd, ok;
};
COR_DEFINE_STATIC(framed, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    cor_reader_init(&self->rd, self->fd, self->storage, sizeof self->storage);
    self->ok = 0;
    COR_AWAIT(self->n, cor_read_until(&self->rd, ":", 1, &self->p, &self->len));
    if (self->n != 3 || self->len != 2 || memcmp(self->p, "05", 2))
        COR_RETURN(-1);
    COR_AWAIT(self->n, cor_read_exact(&self->rd, 5, &self->p, &self->len));
    if (self->n != 5 || memcmp(self->p, "hello", 5))
        COR_RETURN(-2);
    COR_AWAIT(self->n, cor_read_until(&self->rd, "\r\n\r\n", 4, &self->p, &self->len));
    if (self->n != 10 || self->len != 6 || memcmp(self->p, "A:1 B2", 6))
        COR_RETURN(-3);
    /* What came after the trailer is still buffered. */
    self->peeked = cor_reader_peek(&self->rd, &self->p);
    if (self->peeked != 4 || memcmp(self->p, "rest", 4))
        COR_RETURN(-4);
    COR_AWAIT(self->n, cor_read_exact(&self->rd, 4, &self->p, &self->len));
    if (self->n != 4)
        COR_RETURN(-5);
    COR_AWAIT(self->n, cor_read_exact(&self->rd, 100, &self->p, &self->len));
    if (self->n != -EMSGSIZE)
        COR_RETURN(-6); /* more than the 32-byte buffer */
    COR_AWAIT(self->n, cor_read_exact(&self->rd, 1, &self->p, &self->len));
    cor_reader_destroy(&self->rd);
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(self->n == 0 ? 1 : -7); /* a clean end */
}

IO_TEST(reader, until_exact_peek_and_leftovers)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socket_pair(sv), 0);
    int r = 0, w = 1;
    cor_launch_options ro = {.on_result = store, .user = &r};
    cor_launch_options wo = {.on_result = store, .user = &w};
    COR_RUN_ASYNC(cor_io_context_executor(io), &ro, framed(sv[0]));
    COR_RUN_ASYNC(cor_io_context_executor(io), &wo, writer(sv[1], "05:helloA:1 B2\r\n\r\nrest", 7));
    cor_io_context_run(io);
    cr_assert_eq(r, 1, "step %d failed", -r);
    cor_io_context_destroy(io);
}

/* Waiting for a line that never comes: stopped, or timed out. */
struct waiting_line {
    COR_PROMISE(int);
    cor_reader rd;
    char *p;
    size_t len;
    ssize_t n;
    int fd, err, timeout;
};
COR_DEFINE_STATIC(waiting_line, (int fd, int timeout), {
    self->fd = fd;
    self->timeout = timeout;
})
{
    COR_BEGIN();
    cor_reader_init(&self->rd, self->fd, NULL, 64);
    self->err = 0;
    if (self->timeout)
        COR_TRY_AWAIT(self->err, self->n,
                      COR_TIMEOUT(10 * MS, cor_read_line(&self->rd, &self->p, &self->len)));
    else
        COR_AWAIT(self->n, cor_read_line(&self->rd, &self->p, &self->len));
    cor_reader_destroy(&self->rd);
    COR_RETURN(self->err ? self->err : (int)self->n);
}

struct stop_later {
    COR_PROMISE(int);
    cor_stop_source *src;
};
COR_DEFINE_STATIC(stop_later, (cor_stop_source * src), { self->src = src; })
{
    COR_BEGIN();
    COR_AWAIT_VOID(cor_sleep_for(5 * MS));
    cor_stop_source_request(self->src);
    COR_RETURN(0);
}

IO_TEST(reader, stop_and_timeout_while_waiting)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int sv[2];
    cr_assert_eq(socket_pair(sv), 0);
    cr_assert_eq(write(sv[1], "partial", 7), 7);
    cor_stop_source src = COR_STOP_SOURCE_INIT;
    int r = 1, s = 1;
    cor_launch_options ro = {.stop = cor_stop_source_token(&src), .on_result = store, .user = &r};
    cor_launch_options so = {.on_result = store, .user = &s};
    COR_RUN_ASYNC(cor_io_context_executor(io), &ro, waiting_line(sv[0], 0));
    COR_RUN_ASYNC(cor_io_context_executor(io), &so, stop_later(&src));
    cor_io_context_run(io);
    cr_assert_eq(r, -ECANCELED);
    cor_launch_options to = {.on_result = store, .user = &r};
    COR_RUN_ASYNC(cor_io_context_executor(io), &to, waiting_line(sv[0], 1));
    cor_io_context_run(io);
    cr_assert_eq(r, -ETIMEDOUT);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}

struct bad_reads {
    COR_PROMISE(int);
    cor_reader rd;
    char *p;
    size_t len;
    ssize_t a, b, c, d;
};
COR_DEFINE_STATIC(bad_reads, (void), {})
{
    COR_BEGIN();
    cor_reader_init(&self->rd, 0, NULL, 16);
    COR_AWAIT(self->a, cor_read_line(NULL, &self->p, &self->len));
    COR_AWAIT(self->b, cor_read_line(&self->rd, NULL, &self->len));
    COR_AWAIT(self->c, cor_read_until(&self->rd, "", 0, &self->p, NULL));
    COR_AWAIT(self->d, cor_read_exact(&self->rd, 0, &self->p, NULL));
    cor_reader_destroy(&self->rd);
    COR_RETURN(self->a == -EINVAL && self->b == -EINVAL && self->c == -EINVAL && self->d == -EINVAL
                   ? 1
                   : -1);
}

Test(reader, bad_input)
{
    cor_reader rd;
    cr_assert_eq(cor_reader_init(NULL, 0, NULL, 16), -EINVAL);
    cr_assert_eq(cor_reader_init(&rd, -1, NULL, 16), -EINVAL);
    cr_assert_eq(cor_reader_init(&rd, 0, NULL, 0), -EINVAL);
    int p[2];
    cr_assert_eq(pipe(p), 0);
    close(p[0]);
    close(p[1]);
    cr_assert_eq(cor_reader_init(&rd, p[0], NULL, 16), -EBADF, "a closed descriptor");
    cr_assert_eq(cor_reader_destroy(NULL), -EINVAL);
    cr_assert_eq(cor_reader_peek(NULL, NULL), 0);
    int r = 0;
    cor_launch_options o = {.on_result = store, .user = &r};
    cr_assert_eq(COR_RUN_ASYNC(cor_inline_executor(), &o, bad_reads()), 0);
    cr_assert_eq(r, 1);
}
