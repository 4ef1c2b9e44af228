/*
 * cor_resolve: getaddrinfo on a worker of an internal thread pool, so the
 * ring's thread never blocks in the resolver. The pool (two workers) starts
 * on first use and lives as long as the process: a resolver call may take
 * seconds, and tearing the pool down under one would only trade a hang for
 * a crash.
 *
 * getaddrinfo cannot be interrupted, so the lookup is a job of its own,
 * shared by the worker and the awaiting coroutine (two references): the
 * worker posts the job, fills in its result and sets its event; the
 * coroutine waits on the event, which honours its stop token and is left by
 * the teardown of its executor. Whichever lets go of the job last frees it,
 * so a caller that was stopped (or destroyed) leaves the lookup to finish on
 * the worker with nothing of the caller's in reach: it has its own copies of
 * the host and the service, and its addresses stay in the job until the
 * caller copies them out.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#include "coring/resolve.h"
#include "coring/sync.h"
#include "coring/thread_pool.h"
#include "internal.h"

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
#ifdef EAI_ADDRFAMILY
    case EAI_ADDRFAMILY: /* none of the family asked for ("127.0.0.1" as AF_INET6) */
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

/* One lookup, shared by the worker running it and the coroutine awaiting it. */
struct cor__resolve_job {
    cor_frame hdr;         /* posted to the pool: runs the lookup */
    cor_async_event done;  /* set by the worker once res/err are in */
    uint32_t refs;         /* the worker's and the coroutine's */
    int family, type, err; /* err: 0, or the lookup's -errno */
    struct addrinfo *res;
    const char *host, *service; /* into text, or NULL */
    char text[];
};

static void job_put(struct cor__resolve_job *j)
{
    if (__atomic_sub_fetch(&j->refs, 1, __ATOMIC_ACQ_REL))
        return;
    if (j->res)
        freeaddrinfo(j->res);
    cor_async_event_destroy(&j->done);
    free(j);
}

/* The blocking part, on a worker. */
static cor_handle run_lookup(cor_frame *f)
{
    struct cor__resolve_job *j = (struct cor__resolve_job *)f;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = j->family;
    hints.ai_socktype = j->type;
    hints.ai_flags = AI_ADDRCONFIG;
    int e = getaddrinfo(j->host, j->service, &hints, &j->res);
    if (e == EAI_SYSTEM)
        j->err = errno ? -errno : -EIO;
    else if (e)
        j->err = map_eai(e);
    if (j->err)
        j->res = NULL;
    cor_async_event_set(&j->done);
    job_put(j);
    return COR_NOOP;
}

/* The pool was destroyed with the job queued (only at process exit): the lookup never runs. */
static void lookup_destroyed(cor_frame *f)
{
    struct cor__resolve_job *j = (struct cor__resolve_job *)f;
    j->err = -ECANCELED;
    cor_async_event_set(&j->done);
    job_put(j);
}

static char *put_text(char **at, const char *s)
{
    if (!s)
        return NULL;
    char *r = *at;
    size_t n = strlen(s) + 1;
    memcpy(r, s, n);
    *at += n;
    return r;
}

static struct cor__resolve_job *job_new(const char *host, const char *service, int family, int type)
{
    size_t text = (host ? strlen(host) + 1 : 0) + (service ? strlen(service) + 1 : 0);
    struct cor__resolve_job *j = calloc(1, sizeof *j + text);
    if (!j)
        return NULL;
    j->hdr.resume = run_lookup;
    j->hdr.on_destroy = lookup_destroyed;
    cor_async_event_init(&j->done);
    j->refs = 2;
    j->family = family;
    j->type = type;
    char *at = j->text;
    j->host = put_text(&at, host);
    j->service = put_text(&at, service);
    return j;
}

/* Copies up to max of the job's addresses into out: their number, or -ENOENT for none. */
static int copy_out(const struct cor__resolve_job *j, cor_sockaddr *out, int max)
{
    int n = 0;
    for (const struct addrinfo *ai = j->res; ai && n < max; ai = ai->ai_next) {
        if (ai->ai_addrlen > sizeof out[n].u)
            continue;
        memset(&out[n], 0, sizeof out[n]);
        memcpy(&out[n].u, ai->ai_addr, ai->ai_addrlen);
        out[n].len = ai->ai_addrlen;
        n++;
    }
    return n ? n : -ENOENT;
}

/* Destroyed while it waited (its executor's teardown): the worker frees the job. */
static void resolve_destroyed(cor_frame *f)
{
    struct cor_resolve *self = (struct cor_resolve *)f;
    if (self->job)
        job_put(self->job);
}

/*
 * A service that strtoul reads whole is a port to getaddrinfo (leading
 * blanks and a sign included): at most 65535 and not negative, or
 * getaddrinfo would wrap it.
 */
static bool port_ok(const char *service)
{
    if (!service || !*service)
        return true;
    char *end;
    errno = 0;
    unsigned long port = strtoul(service, &end, 10);
    if (end == service || *end)
        return true; /* a name ("http") */
    return errno == 0 && port <= 65535 && !strchr(service, '-');
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
               self->job = NULL;
           })
{
    COR_BEGIN();
    if (!self->out || self->max <= 0 || (!self->host && !self->service) ||
        (self->family != AF_UNSPEC && self->family != AF_INET && self->family != AF_INET6) ||
        (self->type != SOCK_STREAM && self->type != SOCK_DGRAM) || !port_ok(self->service))
        COR_RETURN(-EINVAL);
    if (cor_stop_requested(COR_THIS_STOP_TOKEN()))
        COR_RETURN(-ECANCELED); /* stopped before it started: no lookup */
    pthread_once(&pool_once, pool_start);
    if (pool_err)
        COR_RETURN(pool_err);
    self->job = job_new(self->host, self->service, self->family, self->type);
    if (!self->job)
        COR_RETURN(-ENOMEM);
    COR_ON_DESTROY(resolve_destroyed);
    cor_executor_post(cor_thread_pool_executor(pool), &self->job->hdr);
    /* 0 once the lookup is done; -ECANCELED if stopped first; an error (-ENOMEM: no wait) is
     * caught so the job is let go of here too. */
    COR_TRY_AWAIT(self->err, self->r, cor_async_event_wait(&self->job->done));
    if (self->err)
        self->r = self->err;
    else if (self->r == 0)
        self->r = self->job->err ? self->job->err : copy_out(self->job, self->out, self->max);
    self->cor_hdr.on_destroy = NULL;
    job_put(self->job);
    self->job = NULL;
    COR_RETURN(self->r);
}
