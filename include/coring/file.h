/*
 * Files on the io_context: open, read and write at an offset (vectored too),
 * fsync, statx and close, as awaitable operations with the same contract as
 * the socket operations in net.h: the result is the kernel's (a count or 0,
 * or -errno), the stop token and COR_DEADLINE_AFTER are honoured, buffers
 * and paths must stay valid until the operation completes.
 *
 * Offsets are 64-bit: files past 4 GiB need nothing special. O_DIRECT works
 * when buffer, offset and length are aligned as the filesystem requires
 * (the logical block size; cor_file_alloc_aligned helps), else the kernel
 * answers -EINVAL.
 */
#ifndef CORING_FILE_H
#define CORING_FILE_H

#include <fcntl.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/uio.h>

#include "coring/common.h"
#include "coring/io_context.h"
#include "coring/io_op.h"

COR_BEGIN_DECLS

/*
 * Opens path (relative to the working directory) with open(2) flags and
 * mode (used with O_CREAT or O_TMPFILE); O_CLOEXEC is always added. Result:
 * the descriptor (the awaiting coroutine owns it) or -errno (-ENOENT,
 * -EISDIR for a directory opened for writing ...).
 */
COR_API struct cor_io_await *cor_open(const char *path, int flags, mode_t mode);

/* As cor_open, relative to directory descriptor dirfd (AT_FDCWD: the working directory). */
COR_API struct cor_io_await *cor_openat(int dirfd, const char *path, int flags, mode_t mode);

/*
 * Reads up to len bytes (<= INT_MAX) at offset off (-1: the file position,
 * which then advances). Result: the count (short at end of file, 0 at or
 * past it) or -errno (-EISDIR on a directory).
 */
COR_API struct cor_io_await *cor_read(int fd, void *buf, size_t len, int64_t off);

/* Writes up to len bytes at offset off (-1: the file position). Result: the count or -errno. */
COR_API struct cor_io_await *cor_write(int fd, const void *buf, size_t len, int64_t off);

/*
 * Reads into iovcnt buffers (1..IOV_MAX) at off. Result: the total count or
 * -errno. The iov array itself, not only the buffers, must stay valid until
 * the read completes (io_uring reads it after the coroutine suspended): not
 * an array local to the coroutine body's C block, a field of the frame.
 */
COR_API struct cor_io_await *cor_readv(int fd, const struct iovec *iov, int iovcnt, int64_t off);

/* Writes iovcnt buffers at off. Result: the total count or -errno. iov stays valid as for
 * cor_readv. */
COR_API struct cor_io_await *cor_writev(int fd, const struct iovec *iov, int iovcnt, int64_t off);

/* Flushes fd's data and metadata to storage. Result: 0 or -errno. */
COR_API struct cor_io_await *cor_fsync(int fd);

/* Flushes fd's data (and the metadata needed to read it back). Result: 0 or -errno. */
COR_API struct cor_io_await *cor_fdatasync(int fd);

/*
 * statx(2) of path relative to dirfd (AT_FDCWD), with AT_* flags
 * (AT_EMPTY_PATH and path "" for dirfd itself) and STATX_* mask. Result: 0
 * with *out filled, or -errno.
 */
struct statx;
COR_API struct cor_io_await *cor_statx(int dirfd, const char *path, int flags, unsigned mask,
                                       struct statx *out);

/*
 * Allocates size bytes aligned to align (a power of two; 0: 4096) for
 * O_DIRECT transfers. Free with free(). Returns NULL on failure. Any thread.
 */
COR_API void *cor_file_alloc_aligned(size_t size, size_t align);

/* cor_close, for files as for sockets, is declared in io_op.h. */

COR_END_DECLS

#endif
