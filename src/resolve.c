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
 *
 * The worker's wake-up posts the caller to its executor, so that
 * executor's destroy must not free it meanwhile: the job counts itself in
 * its context's foreign_wakes while it may still wake the caller, and
 * whichever of the worker (once it has woken the caller) and the caller
 * (once it no longer waits: resumed, or destroyed by that teardown) comes
 * first counts it out, under the job's lock, so the worker never wakes a
 * caller whose context stopped counting it.
 */
#include <errno.h>
#include <netdb.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coring/resolve.h"
#include "coring/sync.h"
#include "coring/thread_pool.h"
#include "internal.h"

/*
 * The pool of this process: a forked child has none of its parent's threads,
 * so it starts its own (the parent's pool memory is left as it is).
 */
static pthread_mutex_t pool_lock = PTHREAD_MUTEX_INITIALIZER;
static cor_thread_pool *pool;
static pid_t pool_pid;

static int pool_start(void)
{
    pthread_mutex_lock(&pool_lock);
    int rc = 0;
    if (!pool || pool_pid != getpid()) {
        rc = cor_thread_pool_create(&pool, 2);
        if (rc == 0)
            pool_pid = getpid();
        else
            pool = NULL;
    }
    pthread_mutex_unlock(&pool_lock);
    return rc;
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
    cor_frame hdr;              /* posted to the pool: runs the lookup */
    cor_async_event done;       /* set by the worker once res/err are in */
    uint32_t refs;              /* the worker's and the coroutine's */
    uint32_t lock;              /* over waiting, ctx and the worker's wake-up */
    bool waiting;               /* the caller still waits on done */
    cor_execution_context *ctx; /* the caller's, counting this job in, or NULL */
    int family, type, err;      /* err: 0, or the lookup's -errno */
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

/* The caller no longer waits (or was woken): counts j out of its context (j's lock held). */
static void count_out_locked(struct cor__resolve_job *j)
{
    __atomic_store_n(&j->waiting, false, __ATOMIC_RELEASE);
    if (j->ctx)
        cor__ctx_foreign_wake_add(j->ctx, -1);
    j->ctx = NULL;
}

/* The caller no longer waits: the worker must not touch its context. */
static void caller_left(struct cor__resolve_job *j)
{
    cor__spin_lock(&j->lock);
    count_out_locked(j);
    cor__spin_unlock(&j->lock);
}

/* The worker wakes the caller if its context still counts the job, then counts it out. */
static void wake_caller(struct cor__resolve_job *j)
{
    cor__spin_lock(&j->lock);
    if (j->waiting)
        cor_async_event_set(&j->done);
    count_out_locked(j);
    cor__spin_unlock(&j->lock);
}

/* The blocking part, on a worker. */
static cor_handle run_lookup(cor_frame *f)
{
    struct cor__resolve_job *j = (struct cor__resolve_job *)f;
    if (!__atomic_load_n(&j->waiting, __ATOMIC_ACQUIRE)) {
        job_put(j); /* the caller left before the lookup began (stopped, destroyed): skip it */
        return COR_NOOP;
    }
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
    wake_caller(j);
    job_put(j);
    return COR_NOOP;
}

/* The pool was destroyed with the job queued (only at process exit): the lookup never runs. */
static void lookup_destroyed(cor_frame *f)
{
    struct cor__resolve_job *j = (struct cor__resolve_job *)f;
    j->err = -ECANCELED;
    wake_caller(j);
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

static struct cor__resolve_job *job_new(const char *host, const char *service, int family, int type,
                                        cor_execution_context *ctx)
{
    size_t text = (host ? strlen(host) + 1 : 0) + (service ? strlen(service) + 1 : 0);
    struct cor__resolve_job *j = calloc(1, sizeof *j + text);
    if (!j)
        return NULL;
    j->hdr.resume = run_lookup;
    j->hdr.on_destroy = lookup_destroyed;
    cor_async_event_init(&j->done);
    j->refs = 2;
    j->waiting = true;
    j->ctx = ctx;
    if (ctx)
        cor__ctx_foreign_wake_add(ctx, 1);
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
    if (self->job) {
        caller_left(self->job);
        job_put(self->job);
    }
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
    int rc = pool_start();
    if (rc)
        COR_RETURN(rc);
    self->job = job_new(self->host, self->service, self->family, self->type,
                        cor_executor_context(COR_THIS_EXECUTOR()));
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
    caller_left(self->job);
    job_put(self->job);
    self->job = NULL;
    COR_RETURN(self->r);
}
