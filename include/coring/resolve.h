/*
 * Name resolution that never blocks the ring: cor_resolve runs getaddrinfo
 * on a worker of an internal thread pool (two threads, started on first use
 * and kept for the life of the process; they inherit the CPU affinity of
 * the thread that started them) and resumes the caller on its own executor.
 */
#ifndef CORING_RESOLVE_H
#define CORING_RESOLVE_H

#include "coring/common.h"
#include "coring/net.h"
#include "coring/task.h"

COR_BEGIN_DECLS

struct cor_resolve;

/*
 * Resolves host ("localhost", "127.0.0.1", "::1"; NULL: the loopback) and
 * service ("8080", "http"; NULL: port 0), not both NULL, into at most max
 * addresses in out, in getaddrinfo's order (AI_ADDRCONFIG: only families
 * configured on this host).
 * family: AF_UNSPEC, AF_INET or AF_INET6; type: SOCK_STREAM or SOCK_DGRAM
 * (0: SOCK_STREAM). A task; result (int): the number of addresses (>= 1), or
 * -EINVAL (bad arguments, a numeric service above 65535 or negative, as
 * strtoul reads it), -ENOENT (no such name, or no address of that family),
 * -EAGAIN (temporary failure), -ENOMEM, -ECANCELED (stop was requested),
 * the -errno of a system error, -EIO (any other resolver failure). host and service must stay valid
 * until the task has started (at once when awaited: the lookup copies
 * them), out until it completes. getaddrinfo cannot be interrupted: a stop
 * (or a COR_TIMEOUT around the lookup) resumes the caller at once with
 * -ECANCELED and leaves the lookup to finish on the pool, its result
 * dropped (a lookup whose caller left before it began is skipped). Any
 * coroutine, on any executor; one whose executor is destroyed while it
 * waits is destroyed with the others waiting there, without waiting for the
 * lookup (a destroy waits only for a wake-up being posted at that moment).
 * A forked child starts a pool of its own on its first lookup.
 */
COR_API struct cor_resolve *cor_resolve(const char *host, const char *service, int family, int type,
                                        cor_sockaddr *out, int max);

/* Its frame (fields are the library's). */
struct cor_resolve {
    COR_PROMISE(int);
    const char *host, *service;
    int family, type, max, r, err;
    cor_sockaddr *out;
    struct cor__resolve_job *job; /* the lookup, shared with the resolver's thread (resolve.c) */
};

COR_END_DECLS

#endif
