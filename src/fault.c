/*
 * Fault injection (fault.h): the plan of an io_context and the two places
 * that consult it, seam_submit (io_op.c) for operations and
 * cor__fault_alloc for the internal allocations of the front end and the
 * backends. Compiled in when COR_FAULT_INJECTION is 1; otherwise the public
 * calls answer -EOPNOTSUPP and the seam has no check at all.
 */
#include <string.h>

#include "coring/fault.h"
#include "internal.h"
#include "io_internal.h"

#if COR_FAULT_INJECTION

/* The opcode called name, or -1. */
static int opcode_named(const char *name)
{
    for (int i = 0; i < COR__IO_OPCODES; i++)
        if (!strcmp(cor__io_opinfo[i].name, name))
            return i;
    return -1;
}

static int check_plan(const cor_fault *f, int *opcode)
{
    *opcode = -1;
    if (f->nth < 0 || f->kind < COR_FAULT_ERROR || f->kind > COR_FAULT_ALLOC)
        return -EINVAL;
    switch ((enum cor_fault_kind)f->kind) {
    case COR_FAULT_ERROR:
        if (f->error >= 0)
            return -EINVAL;
        break;
    case COR_FAULT_SHORT:
        if (!f->short_len)
            return -EINVAL;
        break;
    case COR_FAULT_ALLOC:
        return 0;
    }
    if (f->opcode && (*opcode = opcode_named(f->opcode)) < 0)
        return -EINVAL;
    return 0;
}

int cor_io_context_inject_fault(cor_io_context *io, const cor_fault *f)
{
    if (!io || !f)
        return -EINVAL;
    int opcode;
    int rc = check_plan(f, &opcode);
    if (rc)
        return rc;
    bool held;
    rc = cor__io_owner_enter(io, &held);
    if (rc)
        return rc;
    io->faults = (cor__fault_plan){.kind = f->kind,
                                   .opcode = opcode,
                                   .left = f->nth,
                                   .every = f->nth == 0,
                                   .error = f->error,
                                   .short_len = f->short_len};
    cor__io_owner_leave(io, held);
    return 0;
}

int cor_io_context_clear_fault(cor_io_context *io)
{
    if (!io)
        return -EINVAL;
    bool held;
    int rc = cor__io_owner_enter(io, &held);
    if (rc)
        return rc;
    memset(&io->faults, 0, sizeof io->faults);
    cor__io_owner_leave(io, held);
    return 0;
}

long cor_io_context_fault_hits(cor_io_context *io)
{
    return io ? io->faults.hits : 0;
}

/* One more match of the plan: true if this one is to fail. */
static bool fires(cor__fault_plan *p)
{
    if (!p->every && (p->left == 0 || --p->left != 0))
        return false;
    p->hits++;
    return true;
}

int cor__fault_op(cor_io_context *io, cor__io_op *op)
{
    cor__fault_plan *p = &io->faults;
    if (p->kind == COR_FAULT_ALLOC || (p->opcode >= 0 && p->opcode != op->opcode))
        return 0;
    if (p->kind == COR_FAULT_SHORT &&
        (cor__io_opinfo[op->opcode].args != COR__IO_ARGS_BUF || op->len <= p->short_len))
        return 0;
    if (!fires(p))
        return 0;
    if (p->kind == COR_FAULT_SHORT) {
        op->len = p->short_len;
        return 0;
    }
    op->flags |= COR__OPF_INJECTED;
    op->fault = p->error;
    /* A close releases its descriptor even when it fails: the backend closes, the result lies. */
    if (op->opcode == COR__IO_CLOSE)
        return 0;
    cor__io_op_done_later(io, op, p->error);
    return 1;
}

bool cor__fault_alloc(void)
{
    cor_io_context *io = cor__io_running;
    return io && io->faults.kind == COR_FAULT_ALLOC && fires(&io->faults);
}

#else

int cor_io_context_inject_fault(cor_io_context *io, const cor_fault *f)
{
    return !io || !f ? -EINVAL : -EOPNOTSUPP;
}

int cor_io_context_clear_fault(cor_io_context *io)
{
    return !io ? -EINVAL : -EOPNOTSUPP;
}

long cor_io_context_fault_hits(cor_io_context *io)
{
    (void)io;
    return 0;
}

#endif
