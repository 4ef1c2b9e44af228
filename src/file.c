/*
 * Files: the file operations as leaf awaitables on the common operation
 * path of io_op.c, and aligned allocation for O_DIRECT.
 */
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/uio.h>

#include "coring/file.h"
#include "internal.h"
#include "io_internal.h"

struct cor_io_await *cor_openat(int dirfd, const char *path, int flags, mode_t mode)
{
    struct cor_io_await *a = cor__io_await_fd(COR__IO_OPENAT, dirfd, path != NULL);
    if (a) {
        cor__io_op *op = cor__op_of(a);
        op->u.io.addr = (void *)path;
        op->len = (uint32_t)mode;
        op->op_flags = (uint32_t)(flags | O_CLOEXEC);
    }
    return a;
}

struct cor_io_await *cor_open(const char *path, int flags, mode_t mode)
{
    return cor_openat(AT_FDCWD, path, flags, mode);
}

static struct cor_io_await *rw_op(int opcode, int fd, void *buf, size_t len, int64_t off)
{
    struct cor_io_await *a =
        cor__io_await_fd(opcode, fd, (buf || !len) && len <= INT_MAX && off >= -1);
    if (a) {
        cor__io_op *op = cor__op_of(a);
        op->u.io.addr = buf;
        op->len = (uint32_t)len;
        op->u.io.off = (uint64_t)off;
    }
    return a;
}

struct cor_io_await *cor__file_read(int fd, void *buf, size_t len, int64_t off)
{
    return rw_op(COR__IO_READ, fd, buf, len, off);
}

struct cor_io_await *cor_read(int fd, void *buf, size_t len, int64_t off)
{
    return cor__file_read(fd, buf, len, off);
}

struct cor_io_await *cor_write(int fd, const void *buf, size_t len, int64_t off)
{
    return rw_op(COR__IO_WRITE, fd, (void *)buf, len, off);
}

static struct cor_io_await *rwv_op(int opcode, int fd, const struct iovec *iov, int iovcnt,
                                   int64_t off)
{
    struct cor_io_await *a =
        cor__io_await_fd(opcode, fd, iov && iovcnt > 0 && iovcnt <= IOV_MAX && off >= -1);
    if (a) {
        cor__io_op *op = cor__op_of(a);
        op->u.io.addr = (void *)iov;
        op->len = (uint32_t)(iovcnt > 0 ? iovcnt : 0);
        op->u.io.off = (uint64_t)off;
    }
    return a;
}

struct cor_io_await *cor_readv(int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
    return rwv_op(COR__IO_READV, fd, iov, iovcnt, off);
}

struct cor_io_await *cor_writev(int fd, const struct iovec *iov, int iovcnt, int64_t off)
{
    return rwv_op(COR__IO_WRITEV, fd, iov, iovcnt, off);
}

struct cor_io_await *cor_fsync(int fd)
{
    return cor__io_await_fd(COR__IO_FSYNC, fd, true);
}

struct cor_io_await *cor_fdatasync(int fd)
{
    struct cor_io_await *a = cor__io_await_fd(COR__IO_FSYNC, fd, true);
    if (a)
        cor__op_of(a)->op_flags = COR__FSYNC_DATA;
    return a;
}

struct cor_io_await *cor_statx(int dirfd, const char *path, int flags, unsigned mask,
                               struct statx *out)
{
    struct cor_io_await *a = cor__io_await_fd(COR__IO_STATX, dirfd, path && out);
    if (a) {
        cor__io_op *op = cor__op_of(a);
        op->u.io.addr = (void *)path;
        op->u.io.addr2 = out;
        op->len = mask;
        op->op_flags = (uint32_t)flags;
    }
    return a;
}

void *cor_file_alloc_aligned(size_t size, size_t align)
{
    if (!align)
        align = 4096;
    if (align & (align - 1) || align < sizeof(void *))
        return NULL;
    void *p = NULL;
    if (posix_memalign(&p, align, size ? size : align))
        return NULL;
    return p;
}
