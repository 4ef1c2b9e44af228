/*
 * cor_resolve: getaddrinfo on a worker of an internal thread pool, so the
 * ring's thread never blocks in the resolver. The pool (two workers) starts
 * on first use and lives as long as the process: a resolver call may take
 * seconds, and tearing the pool down under one would only trade a hang for
 * a crash.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "coring/launch.h"
#include "coring/resolve.h"
#include "coring/thread_pool.h"
#include "internal.h"
#include "io_internal.h"

static pthread_once_t pool_once = PTHREAD_ONCE_INIT;
static cor_thread_pool *pool;
static int pool_err;

static void pool_start(void)
{
    pool_err = cor_thread_pool_create(&pool, 2);
}

static int map_eai(int e)
{
    switch (e) {
    case EAI_NONAME:
#ifdef EAI_NODATA
    case EAI_NODATA:
#endif
    case EAI_SERVICE:
        return -ENOENT;
    case EAI_AGAIN:
        return -EAGAIN;
    case EAI_MEMORY:
        return -ENOMEM;
    case EAI_FAMILY:
    case EAI_SOCKTYPE:
    case EAI_BADFLAGS:
        return -EINVAL;
    default:
        return -EIO;
    }
}

/* The blocking part, on a worker. */
struct lookup {
    COR_PROMISE(int);
    struct cor_resolve *req;
};
COR_DEFINE_STATIC(lookup, (struct cor_resolve * req), { self->req = req; })
{
    COR_BEGIN();
    struct cor_resolve *q = self->req;
    struct addrinfo hints, *res = NULL;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = q->family;
    hints.ai_socktype = q->type;
    hints.ai_flags = AI_ADDRCONFIG;
    int e = getaddrinfo(q->host, q->service, &hints, &res);
    if (e == EAI_SYSTEM)
        COR_RETURN(errno ? -errno : -EIO);
    if (e)
        COR_RETURN(map_eai(e));
    int n = 0;
    for (struct addrinfo *ai = res; ai && n < q->max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof q->out[n].u)
            continue;
        memset(&q->out[n], 0, sizeof q->out[n]);
        memcpy(&q->out[n].u, ai->ai_addr, ai->ai_addrlen);
        q->out[n].len = ai->ai_addrlen;
        n++;
    }
    freeaddrinfo(res);
    COR_RETURN(n ? n : -ENOENT);
}

/*
 * On an io_context, a lookup in progress is counted in io->resolving until
 * its coroutine is back: the context's destroy waits for it (the lookup's
 * return would otherwise post to freed memory). Destroyed instead of resumed
 * (that teardown), the frame counts itself out.
 */
static void count_out(struct cor_resolve *self)
{
    if (!self->io)
        return;
    self->cor_hdr.on_destroy = NULL;
    __atomic_sub_fetch(&((cor_io_context *)self->io)->resolving, 1, __ATOMIC_RELEASE);
    self->io = NULL;
}

static void resolve_destroyed(cor_frame *f)
{
    count_out((struct cor_resolve *)f);
}

/* A service given as digits is a port: at most 65535 (getaddrinfo would wrap it). */
static bool port_ok(const char *service)
{
    if (!service || !*service || strspn(service, "0123456789") != strlen(service))
        return true;
    errno = 0;
    unsigned long port = strtoul(service, NULL, 10);
    return errno == 0 && port <= 65535;
}

COR_DEFINE(cor_resolve,
           (const char *host, const char *service, int family, int type, cor_sockaddr *out,
            int max),
           {
               self->host = host;
               self->service = service;
               self->family = family;
               self->type = type ? type : SOCK_STREAM;
               self->out = out;
               self->max = max;
           })
{
    COR_BEGIN();
    if (!self->out || self->max <= 0 || (!self->host && !self->service) ||
        (self->family != AF_UNSPEC && self->family != AF_INET && self->family != AF_INET6) ||
        (self->type != SOCK_STREAM && self->type != SOCK_DGRAM) || !port_ok(self->service))
        COR_RETURN(-EINVAL);
    pthread_once(&pool_once, pool_start);
    if (pool_err)
        COR_RETURN(pool_err);
    if (COR_THIS_EXECUTOR().ops == &cor__io_executor_ops) {
        self->io = (void *)COR_THIS_EXECUTOR().obj;
        __atomic_add_fetch(&((cor_io_context *)self->io)->resolving, 1, __ATOMIC_RELAXED);
        COR_ON_DESTROY(resolve_destroyed);
    }
    COR_TRY_AWAIT(self->err, self->r, COR_RUN(lookup(self), .ex = cor_thread_pool_executor(pool)));
    count_out(self);
    COR_RETURN(self->err ? self->err : self->r);
}
