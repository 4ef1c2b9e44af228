/*
 * Fault injection at the seam between an io_context and its backend, for
 * tests: the syscall-level counterpart of a memory resource that fails
 * after a budget. An operation the plan picks completes with the error it
 * names without reaching the kernel, or moves fewer bytes than asked; or
 * the library's own internal allocations on the context fail. So every
 * error path of a program (a recv that resets, an accept that runs out of
 * descriptors, a short send) runs in a test, on both backends, the same way.
 *
 *     cor_fault f = {.kind = COR_FAULT_ERROR, .opcode = "SEND", .nth = 2, .error = -EPIPE};
 *     cor_io_context_inject_fault(io, &f);    the second send from now fails with -EPIPE
 *
 * Built when the Meson option fault_injection is enabled (auto: in a
 * testing build, as scripts/test configures; off in a release build, where
 * the seam costs nothing and these calls answer -EOPNOTSUPP).
 */
#ifndef CORING_FAULT_H
#define CORING_FAULT_H

#include "coring/common.h"
#include "coring/io_context.h"

COR_BEGIN_DECLS

/* What a fault does (cor_fault.kind). */
enum cor_fault_kind {
    /* The operation completes with cor_fault.error and never reaches the kernel. A CLOSE
     * still closes its descriptor first (close(2) releases it whatever it reports). */
    COR_FAULT_ERROR = 1,
    /* A READ, WRITE, RECV or SEND moves at most cor_fault.short_len bytes (others never match). */
    COR_FAULT_SHORT = 2,
    /* An internal allocation of the context fails: a stop-token link, the epoll descriptor
     * table, a multishot stream's queue. The operation that needed it completes with -ENOMEM. */
    COR_FAULT_ALLOC = 3
};

/*
 * A fault plan. Operations count in the order the context hands them to
 * its backend (sleeps and timer waits never do); allocations in the order
 * they are made.
 *  kind:      COR_FAULT_*.
 *  opcode:    the operation to match, by the name dumps print ("RECV",
 *             "SEND", "ACCEPT", "CONNECT", "CLOSE", "READ", "WRITE", "POLL",
 *             "SENDMSG", "RECVMSG", "SHUTDOWN", "FSYNC", "OPENAT", "STATX",
 *             "READV", "WRITEV", "NOP", "STREAM_NEXT"); NULL: any. Ignored
 *             by COR_FAULT_ALLOC.
 *  nth:       fault the nth match from now (1: the next); 0: every match.
 *  error:     COR_FAULT_ERROR: the -errno the operation completes with.
 *  short_len: COR_FAULT_SHORT: the most bytes it may move (>= 1).
 */
typedef struct cor_fault {
    int kind;
    const char *opcode;
    long nth;
    int error;
    unsigned short_len;
    unsigned reserved[8];
} cor_fault;

/*
 * Installs plan f on io (replacing any plan; the count starts now). Call it
 * on io's driving thread, or while nobody drives io. Returns 0; -EINVAL for
 * a NULL argument, an unknown kind or opcode name, nth < 0, an error >= 0
 * (COR_FAULT_ERROR) or a short_len of 0 (COR_FAULT_SHORT); -EPERM from
 * another thread while io runs (or in a forked child); -EOPNOTSUPP in a
 * build without fault injection.
 */
COR_API int cor_io_context_inject_fault(cor_io_context *io, const cor_fault *f);

/* Removes io's plan. Returns 0, -EINVAL for NULL, -EPERM or -EOPNOTSUPP as above. */
COR_API int cor_io_context_clear_fault(cor_io_context *io);

/*
 * How many operations (or allocations) io's current plan has faulted so
 * far (a plan with nth > 0 faults at most one); 0 without a plan, or for
 * NULL. On io's driving thread, or while nobody drives io.
 */
COR_API long cor_io_context_fault_hits(cor_io_context *io);

COR_END_DECLS

#endif
