/*
 * Files on both backends: write then read back with checksums, vectored
 * I/O, short reads at end of file, errors for a directory and a missing
 * file, O_DIRECT with aligned buffers, a sparse file past 4 GiB, statx and
 * fsync, writes whose deadline fired. Every file lives in a fresh directory
 * under /tmp.
 */
#include <dirent.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <unistd.h>
#include <sys/socket.h>
#include <criterion/criterion.h>

#include "io_backends.h"
#include "util.h"

static char dir[64];

static void make_dir(void)
{
    snprintf(dir, sizeof dir, "/tmp/coring-file-XXXXXX");
    cr_assert_not_null(mkdtemp(dir));
}

static void remove_dir(void)
{
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d)))
            if (strcmp(e->d_name, ".") && strcmp(e->d_name, ".."))
                unlinkat(dirfd(d), e->d_name, 0);
        closedir(d);
    }
    rmdir(dir);
}

static void store_int(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

static void store_err(void *user, int err)
{
    *(int *)user = err;
}

static int start_on(cor_io_context *io, const cor_launch_options *o, cor_frame *t)
{
    return COR_RUN_ASYNC(cor_io_context_executor(io), o, t);
}

/* Runs task t alone on io and returns its result (or its error). */
static int run_task(cor_io_context *io, cor_frame *t)
{
    int res = -9999;
    cor_launch_options o = {.on_result = store_int, .on_error = store_err, .user = &res};
    cr_assert_eq(start_on(io, &o, t), 0);
    cr_assert_geq(cor_io_context_run(io), 0);
    return res;
}

static uint64_t checksum(const unsigned char *p, size_t n)
{
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211ull;
    return h;
}

/* ---- write, read back, checksums ---- */

enum { CHUNK = 65536, CHUNKS = 16 };

struct write_read {
    COR_PROMISE(int);
    const char *path;
    int fd, i, r;
    unsigned char *out, *in;
};
COR_DEFINE_STATIC(write_read, (const char *path), { self->path = path; })
{
    COR_BEGIN();
    self->out = malloc(CHUNK * CHUNKS);
    self->in = malloc(CHUNK * CHUNKS);
    for (size_t k = 0; k < (size_t)CHUNK * CHUNKS; k++)
        self->out[k] = (unsigned char)(k * 2654435761u >> 13);
    self->r = -EIO;
    COR_AWAIT(self->fd, cor_open(self->path, O_CREAT | O_RDWR | O_TRUNC, 0600));
    if (self->fd < 0) {
        self->r = self->fd;
        goto out;
    }
    /* Chunks in reverse order at their offsets: the file is right only if offsets are honoured. */
    for (self->i = CHUNKS - 1; self->i >= 0; self->i--) {
        COR_AWAIT(self->r, cor_write(self->fd, self->out + (size_t)self->i * CHUNK, CHUNK,
                                     (int64_t)self->i * CHUNK));
        if (self->r != CHUNK)
            goto close;
    }
    COR_AWAIT(self->r, cor_fsync(self->fd));
    if (self->r)
        goto close;
    COR_AWAIT(self->r, cor_fdatasync(self->fd));
    if (self->r)
        goto close;
    for (self->i = 0; self->i < CHUNKS; self->i++) {
        COR_AWAIT(self->r, cor_read(self->fd, self->in + (size_t)self->i * CHUNK, CHUNK,
                                    (int64_t)self->i * CHUNK));
        if (self->r != CHUNK)
            goto close;
    }
    self->r =
        checksum(self->in, (size_t)CHUNK * CHUNKS) == checksum(self->out, (size_t)CHUNK * CHUNKS)
            ? 1
            : -EPROTO;
close:
    COR_AWAIT_VOID(cor_close(self->fd));
out:
    free(self->out);
    free(self->in);
    COR_RETURN(self->r);
}

IO_TEST(file, write_then_read_back_with_checksums)
{
    make_dir();
    char path[96];
    snprintf(path, sizeof path, "%s/data", dir);
    cor_io_context *io = io_test_create(backend, NULL);
    int r = run_task(io, COR_FRAME(write_read(path)));
    cr_assert_eq(r, 1, "%s", cor_strerror(r));
    struct stat st;
    cr_assert_eq(stat(path, &st), 0);
    cr_assert_eq(st.st_size, (off_t)CHUNK * CHUNKS);
    cor_io_context_destroy(io);
    remove_dir();
}

/* ---- vectored I/O, the file position, short reads ---- */

struct vec_eof {
    COR_PROMISE(int);
    const char *path;
    int fd, r, step;
    char a[10], b[90], in[4096];
    struct iovec iov[2];
};
COR_DEFINE_STATIC(vec_eof, (const char *path), { self->path = path; })
{
    COR_BEGIN();
    self->step = 0;
    COR_AWAIT(self->fd, cor_open(self->path, O_CREAT | O_RDWR | O_TRUNC, 0600));
    if (self->fd < 0)
        COR_RETURN(self->fd);
    memset(self->a, 'a', sizeof self->a);
    memset(self->b, 'b', sizeof self->b);
    self->iov[0] = (struct iovec){self->a, sizeof self->a};
    self->iov[1] = (struct iovec){self->b, sizeof self->b};
    self->step = 1;
    COR_AWAIT(self->r, cor_writev(self->fd, self->iov, 2, 0));
    if (self->r != 100)
        goto out;
    self->step = 2; /* a short read: 100 bytes are there */
    COR_AWAIT(self->r, cor_read(self->fd, self->in, sizeof self->in, 0));
    if (self->r != 100 || self->in[9] != 'a' || self->in[10] != 'b')
        goto out;
    self->step = 3;
    COR_AWAIT(self->r, cor_read(self->fd, self->in, sizeof self->in, 50));
    if (self->r != 50)
        goto out;
    self->step = 4; /* at and past the end */
    COR_AWAIT(self->r, cor_read(self->fd, self->in, sizeof self->in, 100));
    if (self->r != 0)
        goto out;
    COR_AWAIT(self->r, cor_read(self->fd, self->in, sizeof self->in, 1 << 20));
    if (self->r != 0)
        goto out;
    self->step = 5; /* the file position: -1 reads from it and advances it */
    COR_AWAIT(self->r, cor_read(self->fd, self->in, 30, -1));
    if (self->r != 30)
        goto out;
    COR_AWAIT(self->r, cor_read(self->fd, self->in, sizeof self->in, -1));
    if (self->r != 70)
        goto out;
    self->step = 6;
    memset(self->a, 0, sizeof self->a);
    memset(self->b, 0, sizeof self->b);
    COR_AWAIT(self->r, cor_readv(self->fd, self->iov, 2, 0));
    if (self->r != 100 || self->a[0] != 'a' || self->b[89] != 'b')
        goto out;
    self->step = 7;
    COR_AWAIT(self->r, cor_readv(self->fd, self->iov, 0, 0));
    if (self->r != -EINVAL)
        goto out;
    COR_AWAIT(self->r, cor_read(self->fd, NULL, 10, 0));
    if (self->r != -EINVAL)
        goto out;
    self->step = 0;
out:
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(self->step ? -1000 - self->step : 1);
}

IO_TEST(file, vectored_io_position_and_short_reads_at_eof)
{
    make_dir();
    char path[96];
    snprintf(path, sizeof path, "%s/short", dir);
    cor_io_context *io = io_test_create(backend, NULL);
    int r = run_task(io, COR_FRAME(vec_eof(path)));
    cr_assert_eq(r, 1, "failed at step %d (%s)", -1000 - r, cor_strerror(r));
    cor_io_context_destroy(io);
    remove_dir();
}

/* ---- errors ---- */

struct one_open {
    COR_PROMISE(int);
    const char *path;
    int flags, fd, r;
    bool read_it;
    char buf[16];
};
COR_DEFINE_STATIC(one_open, (const char *path, int flags, bool read_it), {
    self->path = path;
    self->flags = flags;
    self->read_it = read_it;
})
{
    COR_BEGIN();
    COR_AWAIT(self->fd, cor_open(self->path, self->flags, 0600));
    if (self->fd < 0 || !self->read_it)
        COR_RETURN(self->fd < 0 ? self->fd : 0);
    COR_AWAIT(self->r, cor_read(self->fd, self->buf, sizeof self->buf, 0));
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(self->r);
}

IO_TEST(file, errors_for_a_directory_and_a_missing_file)
{
    make_dir();
    char path[96];
    snprintf(path, sizeof path, "%s/missing", dir);
    cor_io_context *io = io_test_create(backend, NULL);
    cr_assert_eq(run_task(io, COR_FRAME(one_open(path, O_RDONLY, false))), -ENOENT);
    cr_assert_eq(run_task(io, COR_FRAME(one_open(dir, O_WRONLY, false))), -EISDIR);
    cr_assert_eq(run_task(io, COR_FRAME(one_open(dir, O_RDONLY, true))), -EISDIR,
                 "reading a directory");
    cr_assert_eq(run_task(io, COR_FRAME(one_open(NULL, O_RDONLY, false))), -EINVAL);
    cor_io_context_destroy(io);
    remove_dir();
}

/* ---- O_DIRECT ---- */

struct direct {
    COR_PROMISE(int);
    const char *path;
    int fd, r;
    unsigned char *out, *in;
};
COR_DEFINE_STATIC(direct, (const char *path), { self->path = path; })
{
    COR_BEGIN();
    COR_AWAIT(self->fd, cor_open(self->path, O_CREAT | O_RDWR | O_DIRECT, 0600));
    if (self->fd < 0)
        COR_RETURN(self->fd == -EINVAL ? -EOPNOTSUPP : self->fd);
    self->out = cor_file_alloc_aligned(65536, 4096);
    self->in = cor_file_alloc_aligned(65536, 4096);
    for (int i = 0; i < 65536; i++)
        self->out[i] = (unsigned char)(i * 7);
    COR_AWAIT(self->r, cor_write(self->fd, self->out, 65536, 0));
    if (self->r == -EINVAL) {
        self->r = -EOPNOTSUPP;
    } else if (self->r == 65536) {
        COR_AWAIT(self->r, cor_read(self->fd, self->in, 65536, 0));
        self->r = self->r == 65536 && !memcmp(self->in, self->out, 65536) ? 1 : -EPROTO;
    }
    free(self->out);
    free(self->in);
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(self->r);
}

IO_TEST(file, o_direct_with_aligned_buffers)
{
    /* /tmp is often tmpfs, which refuses O_DIRECT; the build directory is on a disk. */
    char path[256];
    snprintf(path, sizeof path, "coring-odirect-%d-%d", (int)getpid(), backend);
    cor_io_context *io = io_test_create(backend, NULL);
    int r = run_task(io, COR_FRAME(direct(path)));
    unlink(path);
    cor_io_context_destroy(io);
    if (r == -EOPNOTSUPP)
        cr_skip_test("this filesystem refuses O_DIRECT");
    cr_assert_eq(r, 1, "%s", cor_strerror(r));
}

/* ---- past 4 GiB, statx ---- */

struct large {
    COR_PROMISE(int);
    const char *path;
    int fd, r;
    int64_t off;
    char buf[32];
    struct statx stx;
};
COR_DEFINE_STATIC(large, (const char *path, int64_t off), {
    self->path = path;
    self->off = off;
})
{
    COR_BEGIN();
    COR_AWAIT(self->fd, cor_open(self->path, O_CREAT | O_RDWR | O_TRUNC, 0600));
    if (self->fd < 0)
        COR_RETURN(self->fd);
    COR_AWAIT(self->r, cor_write(self->fd, "far away", 8, self->off));
    if (self->r != 8)
        goto out;
    memset(self->buf, 0, sizeof self->buf);
    COR_AWAIT(self->r, cor_read(self->fd, self->buf, sizeof self->buf, self->off));
    if (self->r != 8 || memcmp(self->buf, "far away", 8)) {
        self->r = -EPROTO;
        goto out;
    }
    COR_AWAIT(self->r, cor_read(self->fd, self->buf, 4, self->off - 4));
    if (self->r != 4 || memcmp(self->buf, "\0\0\0\0", 4)) {
        self->r = -EPROTO; /* the hole reads as zeros */
        goto out;
    }
    COR_AWAIT(self->r, cor_statx(AT_FDCWD, self->path, 0, STATX_SIZE | STATX_MODE, &self->stx));
    if (self->r)
        goto out;
    if (!(self->stx.stx_mask & STATX_SIZE) || (int64_t)self->stx.stx_size != self->off + 8 ||
        !S_ISREG(self->stx.stx_mode)) {
        self->r = -EPROTO;
        goto out;
    }
    COR_AWAIT(self->r, cor_statx(self->fd, "", AT_EMPTY_PATH, STATX_SIZE, &self->stx));
    if (self->r || (int64_t)self->stx.stx_size != self->off + 8) {
        self->r = self->r ? self->r : -EPROTO;
        goto out;
    }
    COR_AWAIT(self->r, cor_statx(AT_FDCWD, "/nonexistent/coring", 0, STATX_SIZE, &self->stx));
    self->r = self->r == -ENOENT ? 1 : -EPROTO;
out:
    COR_AWAIT_VOID(cor_close(self->fd));
    COR_RETURN(self->r);
}

IO_TEST(file, sparse_file_past_4gib_and_statx)
{
    make_dir();
    struct statvfs vfs;
    cr_assert_eq(statvfs(dir, &vfs), 0);
    if ((uint64_t)vfs.f_bavail * vfs.f_frsize < (64u << 20))
        cr_skip_test("less than 64 MiB free in /tmp");
    if (vfs.f_namemax && sizeof(off_t) < 8)
        cr_skip_test("32-bit off_t");
    char path[96];
    snprintf(path, sizeof path, "%s/large", dir);
    cor_io_context *io = io_test_create(backend, NULL);
    int64_t off = (5LL << 30) + 12345; /* 5 GiB: only one block is allocated */
    int r = run_task(io, COR_FRAME(large(path, off)));
    if (r == -EFBIG)
        cr_skip_test("the filesystem of /tmp does not take files past 4 GiB");
    cr_assert_eq(r, 1, "%s", cor_strerror(r));
    cor_io_context_destroy(io);
    remove_dir();
}

/*
 * Writes and fsyncs with a deadline too short to meet (1 us): each either ran
 * and keeps its own result, or never ran and reports -ETIME (io_uring cancels
 * the ones its workers have not started; the epoll backend runs file I/O
 * synchronously, so every one keeps its result). -ETIME never hides a write.
 */
enum { DL_WRITES = 24, DL_SIZE = 256 << 10 };

struct dl_write {
    COR_PROMISE(int);
    int fd, r;
    int64_t off;
    const unsigned char *buf;
};
COR_DEFINE_STATIC(dl_write, (int fd, int64_t off, const unsigned char *buf), {
    self->fd = fd;
    self->off = off;
    self->buf = buf;
})
{
    COR_BEGIN();
    if (self->off < 0)
        COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_fsync(self->fd), 1000));
    else
        COR_AWAIT(self->r,
                  COR_DEADLINE_AFTER(cor_write(self->fd, self->buf, DL_SIZE, self->off), 1000));
    COR_RETURN(self->r);
}

IO_TEST(file, a_timed_out_write_was_not_done)
{
    make_dir();
    char path[96];
    snprintf(path, sizeof path, "%s/deadlines", dir);
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0600);
    cr_assert_geq(fd, 0);
    static unsigned char pattern[DL_SIZE], back[DL_SIZE];
    memset(pattern, 0xab, sizeof pattern);
    cor_io_context *io = io_test_create(backend, NULL);
    int res[DL_WRITES + 4];
    cor_launch_options o[DL_WRITES + 4];
    for (int i = 0; i < DL_WRITES + 4; i++) {
        res[i] = -9999;
        o[i] = (cor_launch_options){.on_result = store_int, .on_error = store_err, .user = &res[i]};
        int64_t off = i < DL_WRITES ? (int64_t)i * DL_SIZE : -1; /* the last four: fsync */
        cr_assert_eq(start_on(io, &o[i], COR_FRAME(dl_write(fd, off, pattern))), 0);
    }
    cr_assert_geq(cor_io_context_run(io), 0);
    int timed_out = 0;
    for (int i = 0; i < DL_WRITES + 4; i++) {
        if (res[i] == -ETIME) {
            timed_out++;
            if (i >= DL_WRITES)
                continue;
            /* A hole reads as zeros; past the end of the file nothing is read. */
            ssize_t got = pread(fd, back, DL_SIZE, (off_t)i * DL_SIZE);
            cr_assert_geq(got, 0);
            for (size_t k = 0; k < (size_t)got; k++)
                cr_assert_eq(back[k], 0, "write %d timed out, yet byte %zu was written", i, k);
            continue;
        }
        cr_assert_geq(res[i], 0, "op %d: %s", i, cor_strerror(res[i]));
        if (i >= DL_WRITES)
            continue;
        cr_assert_eq(pread(fd, back, (size_t)res[i], (off_t)i * DL_SIZE), res[i]);
        cr_assert_eq(memcmp(back, pattern, (size_t)res[i]), 0, "write %d", i);
    }
    if (backend == COR_IO_BACKEND_EPOLL)
        cr_assert_eq(timed_out, 0, "epoll runs file I/O at once");
    cr_log_info("%d of %d file ops timed out", timed_out, DL_WRITES + 4);
    cor_io_context_destroy(io);
    close(fd);
    remove_dir();
}

/*
 * cor_read/cor_write on streams: a pipe ignores the offset, a socket takes
 * only 0 or -1 (-ESPIPE otherwise), the same on both backends. And a
 * zero-length receive with no buffer is 0.
 */
struct stream_offsets {
    COR_PROMISE(int);
    int fds[2], r;
    int64_t off;
    char buf[8];
};
COR_DEFINE_STATIC(stream_offsets, (int rd, int wr, int64_t off), {
    self->fds[0] = rd;
    self->fds[1] = wr;
    self->off = off;
})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_write(self->fds[1], "hello", 5, self->off));
    if (self->r != 5)
        COR_RETURN(self->r < 0 ? self->r : -1000);
    COR_AWAIT(self->r, cor_read(self->fds[0], self->buf, sizeof self->buf, self->off));
    if (self->r != 5 || memcmp(self->buf, "hello", 5))
        COR_RETURN(self->r < 0 ? self->r : -2000);
    COR_RETURN(0);
}

struct empty_recv {
    COR_PROMISE(int);
    int fd, r;
};
COR_DEFINE_STATIC(empty_recv, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_recv(self->fd, NULL, 0, 0));
    if (self->r != 0)
        COR_RETURN(self->r);
    COR_AWAIT(self->r, cor_send(self->fd, NULL, 0, 0));
    COR_RETURN(self->r);
}

IO_TEST(file, a_stream_takes_the_offsets_io_uring_takes)
{
    cor_io_context *io = io_test_create(backend, NULL);
    int p[2], sv[2];
    cr_assert_eq(pipe(p), 0);
    cr_assert_eq(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    int64_t offs[] = {-1, 0, 1, 4096};
    for (size_t i = 0; i < sizeof offs / sizeof offs[0]; i++) {
        cr_assert_eq(run_task(io, COR_FRAME(stream_offsets(p[0], p[1], offs[i]))), 0,
                     "a pipe at offset %lld", (long long)offs[i]);
        int want = offs[i] == -1 || offs[i] == 0 ? 0 : -ESPIPE;
        cr_assert_eq(run_task(io, COR_FRAME(stream_offsets(sv[0], sv[1], offs[i]))), want,
                     "a socket at offset %lld", (long long)offs[i]);
    }
    cr_assert_eq(write(sv[1], "x", 1), 1);
    cr_assert_eq(run_task(io, COR_FRAME(empty_recv(sv[0]))), 0);
    close(p[0]);
    close(p[1]);
    close(sv[0]);
    close(sv[1]);
    cor_io_context_destroy(io);
}
