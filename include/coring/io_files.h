/*
 * Registered (fixed) files: a table of descriptors registered with io once
 * (io_uring_register_files), so an operation names a slot of the table
 * instead of a descriptor and the kernel skips looking the descriptor up
 * and taking a reference to its file on every operation. It pays off for
 * servers doing many small operations on long-lived sockets; a program
 * with few operations per descriptor gains nothing.
 *
 *     int fds[2] = {conn, -1};                 -1: an empty slot
 *     cor_io_files_register(io, fds, 2);
 *     COR_AWAIT(n, COR_FIXED(cor_recv(0, buf, sizeof buf, 0)));    slot 0 (io_op.h)
 *
 * The table holds its own reference to every file in it: closing the
 * descriptor does not release the file (a socket stays open, its peer sees
 * no end of stream) until its slot is updated (cor_io_files_update with
 * another descriptor or -1) or the table is unregistered; the descriptor
 * itself may be closed as soon as it is registered. An operation naming an
 * empty slot, or an index past the table (or with no table), completes with
 * -EBADF.
 *
 * On the epoll backend the table is emulated: each slot holds a dup of the
 * descriptor (so closing the original behaves as above, but every slot
 * uses a descriptor of the process) and operations are plain operations on
 * that dup; there is no speed-up. Updating or unregistering a slot there
 * completes the operations still waiting on it with -ECANCELED (with
 * io_uring they go on with the file they started with).
 *
 * Threading: the calls below are made on io's driving thread (from a
 * coroutine or handler running on io), or while no thread drives io by a
 * thread that may drive it (with SINGLE_ISSUER in force, the owner once io
 * was driven); otherwise they return -EPERM. io's destroy unregisters the
 * table.
 */
#ifndef CORING_IO_FILES_H
#define CORING_IO_FILES_H

#include "coring/common.h"
#include "coring/io_context.h"

COR_BEGIN_DECLS

/* The largest table cor_io_files_register accepts (the kernel may refuse less: -EMFILE past
 * RLIMIT_NOFILE). */
#define COR_IO_FILES_MAX (1u << 20)

/*
 * Registers the n descriptors of fds (copied; -1 leaves a slot empty) as
 * io's file table, slot i holding fds[i]. Returns 0; -EINVAL for NULL io or
 * fds, n == 0, n > COR_IO_FILES_MAX, or a descriptor < -1; -EBUSY if io
 * already has a table (unregister it first); -EPERM off the driving thread
 * (see above); -EBADF if a descriptor is not open; or the kernel's -errno
 * (-EMFILE, -ENOMEM). On failure nothing is registered.
 */
COR_API int cor_io_files_register(cor_io_context *io, const int *fds, unsigned n);

/*
 * Replaces slot index of io's table with fd (-1: empties it), releasing the
 * file the slot held. Operations already started keep the file they started
 * with on io_uring (on epoll they complete with -ECANCELED). Returns 0;
 * -EINVAL for NULL io, index past the table or fd < -1; -ENXIO if io has no
 * table; -EPERM off the driving thread; -EBADF if fd is not open.
 */
COR_API int cor_io_files_update(cor_io_context *io, unsigned index, int fd);

/*
 * Unregisters io's table, releasing every file in it (see update for the
 * operations still using them). Returns 0; -EINVAL for NULL io; -ENXIO if
 * io has no table; -EPERM off the driving thread.
 */
COR_API int cor_io_files_unregister(cor_io_context *io);

/* The number of slots of io's table (0: none, or NULL io). io's driving thread. */
COR_API unsigned cor_io_files_count(cor_io_context *io);

COR_END_DECLS

#endif
