/*
 * Name resolution that never blocks the ring: cor_resolve runs getaddrinfo
 * on a worker of an internal thread pool (two threads, started on first use
 * and kept for the life of the process) and resumes the caller on its own
 * executor.
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
 * -EINVAL (bad arguments, a numeric service above 65535), -ENOENT (no such name), -EAGAIN
 * (temporary failure), -ENOMEM, -EIO (any other resolver failure). host, service and out must stay
 * valid until it completes. Any coroutine; one on an io_context destroyed meanwhile is destroyed
 * once its lookup is back (cor_io_context_destroy waits for it).
 */
COR_API struct cor_resolve *cor_resolve(const char *host, const char *service, int family, int type,
                                        cor_sockaddr *out, int max);

/* Its frame (fields are the library's). */
struct cor_resolve {
    COR_PROMISE(int);
    const char *host, *service;
    int family, type, max, r, err;
    cor_sockaddr *out;
    void *io; /* the io_context it waits on, counted in until the lookup is back */
};

COR_END_DECLS

#endif
