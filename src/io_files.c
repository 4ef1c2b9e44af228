/*
 * Registered files (io_files.h): the front end checks arguments and the
 * thread and keeps the table's size; the backend does the work. The
 * operations name a slot through cor_io_op_fixed (io_op.c).
 */
#include "coring/io_files.h"
#include "internal.h"
#include "io_internal.h"

/* Enters io for a table call: -EOPNOTSUPP without a backend table, -EPERM off the driving thread. */
static int files_enter(cor_io_context *io, bool *held)
{
    *held = false;
    if (!io->be_ops->files_register)
        return -EOPNOTSUPP;
    return cor__io_owner_enter(io, held);
}

int cor_io_files_register(cor_io_context *io, const int *fds, unsigned n)
{
    if (!io || !fds || n == 0 || n > COR_IO_FILES_MAX)
        return -EINVAL;
    for (unsigned i = 0; i < n; i++)
        if (fds[i] < -1)
            return -EINVAL;
    bool held;
    int rc = files_enter(io, &held);
    if (rc)
        return rc;
    if (io->nfiles)
        rc = -EBUSY;
    else if ((rc = io->be_ops->files_register(io->be, fds, n)) == 0)
        io->nfiles = n;
    cor__io_owner_leave(io, held);
    return rc;
}

int cor_io_files_update(cor_io_context *io, unsigned index, int fd)
{
    if (!io || fd < -1)
        return -EINVAL;
    bool held;
    int rc = files_enter(io, &held);
    if (rc)
        return rc;
    if (!io->nfiles)
        rc = -ENXIO;
    else if (index >= io->nfiles)
        rc = -EINVAL;
    else
        rc = io->be_ops->files_update(io->be, index, fd);
    cor__io_owner_leave(io, held);
    return rc;
}

int cor_io_files_unregister(cor_io_context *io)
{
    if (!io)
        return -EINVAL;
    bool held;
    int rc = files_enter(io, &held);
    if (rc)
        return rc;
    if (!io->nfiles)
        rc = -ENXIO;
    else if ((rc = io->be_ops->files_unregister(io->be)) == 0)
        io->nfiles = 0;
    cor__io_owner_leave(io, held);
    return rc;
}

unsigned cor_io_files_count(cor_io_context *io)
{
    return io ? io->nfiles : 0;
}
