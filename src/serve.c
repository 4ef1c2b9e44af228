/*
 * The server loop (serve.h). A server is a coroutine that accepts, and a
 * task group of sessions; each session runs inside a small wrapper
 * (serve_conn) that owns the connection's descriptor and its permit, so
 * whatever the session does, the descriptor is closed and the permit given
 * back once it ends. The state the wrappers share with the server lives in
 * one allocation that outlives them all: the server frees it only after
 * joining the group.
 */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/socket.h>

#include "coring/file.h"
#include "coring/io_context.h"
#include "coring/launch.h"
#include "coring/log.h"
#include "coring/serve.h"
#include "coring/stream.h"
#include "coring/timer.h"
#include "internal.h"
#include "io_internal.h"

#define DEFAULT_BACKOFF (100LL * 1000 * 1000)
/* Transient accept errors in a row before the server pauses as if out of descriptors. */
#define TRANSIENT_RUN 64

struct cor__serve_state {
    cor_task_group sessions; /* first: on_empty finds the state from it */
    cor_async_semaphore permits; /* max_sessions > 0 only */
    cor_io_context *io;
    cor_stream *accepts; /* the multishot accept stream, or NULL */
    cor__timeout grace;  /* stops the sessions when the grace period ends */
    int fd;
    bool limited;
    int64_t logged_at; /* the last report, cor_clock_now() */
    long unreported;   /* events since then */
};

/* ---- reports, at most one a second per server ---- */

static void report(struct cor__serve_state *st, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void report(struct cor__serve_state *st, const char *fmt, ...)
{
    int64_t now = cor_clock_now();
    if (st->logged_at && now - st->logged_at < COR_SEC) {
        st->unreported++;
        return;
    }
    char line[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    if (st->unreported)
        cor__log(COR_LOG_WARNING, "server on fd %d: %s (%ld more such events in the last %.1f s)",
                 st->fd, line, st->unreported, (double)(now - st->logged_at) / 1e9);
    else
        cor__log(COR_LOG_WARNING, "server on fd %d: %s", st->fd, line);
    st->logged_at = now;
    st->unreported = 0;
}

/* ---- one connection ---- */

struct serve_conn {
    COR_PROMISE(int);
    struct cor_serve *srv;
    int fd, err;
};

/* Destroyed with its io_context (teardown): the connection is closed all the same. */
static void conn_destroyed(cor_frame *f)
{
    struct serve_conn *self = (struct serve_conn *)f;
    if (self->fd >= 0)
        close(self->fd);
}

COR_DEFINE_STATIC(serve_conn, (struct cor_serve * srv, int fd), {
    self->srv = srv;
    self->fd = fd;
    self->cor_hdr.on_destroy = conn_destroyed;
})
{
    COR_BEGIN();
    COR_TRY_AWAIT_VOID(self->err, self->srv->fn(self->srv->user, self->fd));
    if (self->err == -ENOMEM && !self->cor_hdr.awaited)
        report(self->srv->st, "no memory for a session: connection shed");
    /* The descriptor is closed through the io_context (the epoll backend must forget it); once
     * the close is issued it is not the teardown's to close again. */
    self->cor_hdr.on_destroy = NULL;
    COR_TRY_AWAIT_VOID(self->err, cor_close(self->fd));
    if (self->err)
        close(self->fd);
    if (self->srv->st->limited)
        cor_async_semaphore_release(&self->srv->st->permits, 1);
    COR_RETURN(0);
}

/* The end of the grace period: stop every session. */
static void grace_over(cor__timeout *t)
{
    struct cor__serve_state *st = cor__container_of(t, struct cor__serve_state, grace);
    cor_task_group_stop(&st->sessions);
}

/* ---- the server ---- */

static bool is_listener(int fd)
{
    int on = 0;
    socklen_t len = sizeof on;
    return getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &on, &len) == 0 && on;
}

static bool options_ok(const cor_serve_options *o)
{
    return o->idle_timeout >= 0 && o->grace >= 0 && o->max_sessions >= 0 && o->backoff >= 0 &&
           o->backlog >= 0;
}

/* What an accept error means for the server. */
enum accept_error { AE_STOP, AE_SKIP, AE_PAUSE, AE_FATAL };

static enum accept_error classify(int err)
{
    switch (-err) {
    case ECANCELED:
        return AE_STOP;
    case EMFILE:
    case ENFILE:
    case ENOMEM:
    case ENOBUFS:
        return AE_PAUSE;
    /* accept(2): errors of the pending connection itself, to be treated as EAGAIN. */
    case ECONNABORTED:
    case EPROTO:
    case ENETDOWN:
    case ENOPROTOOPT:
    case EHOSTDOWN:
    case ENONET:
    case EHOSTUNREACH:
    case EOPNOTSUPP:
    case ENETUNREACH:
    case EPERM: /* a firewall rule */
    case EAGAIN:
    case EINTR:
    case ETIME: /* a time limit on the server's token */
        return AE_SKIP;
    default:
        return AE_FATAL;
    }
}

static struct cor__serve_state *state_new(struct cor_serve *self)
{
    struct cor__serve_state *st = calloc(1, sizeof *st);
    if (!st)
        return NULL;
    st->fd = self->fd;
    st->io = cor_io_context_current();
    st->limited = self->o.max_sessions > 0;
    st->grace.fire = grace_over;
    st->grace.node.slot = COR__TNODE_IDLE; /* not on the wheel */
    cor_task_group_init(&st->sessions, COR_STOP_TOKEN_NEVER, COR_GROUP_COLLECT_ALL);
    cor_stop_source_set_op_timeout(&st->sessions.stop.source, self->o.idle_timeout);
    if (st->limited)
        cor_async_semaphore_init(&st->permits, self->o.max_sessions);
    if (!st->limited && !self->o.no_multishot &&
        cor_accept_stream_open(&st->accepts, st->io, self->fd) != 0)
        st->accepts = NULL; /* the backend has none: one accept per connection */
    return st;
}

static void state_free(struct cor__serve_state *st)
{
    cor_task_group_destroy(&st->sessions);
    if (st->limited)
        cor_async_semaphore_destroy(&st->permits);
    free(st);
}

/* The last session of a server destroyed before them (teardown) frees the state. */
static void orphan_empty(cor_task_group *g)
{
    state_free(cor__container_of(g, struct cor__serve_state, sessions));
}

/*
 * The server's frame destroyed while it served (its io_context torn down
 * under it): the listener is closed, and the state freed now or, if
 * sessions are still to be destroyed, by the last of them.
 */
static void serve_destroyed(cor_frame *f)
{
    struct cor_serve *self = (struct cor_serve *)f;
    struct cor__serve_state *st = self->st;
    if (self->listening)
        close(self->fd);
    cor__io_timeout_disarm(st->io, &st->grace);
    cor__spin_lock(&st->sessions.lock);
    bool empty = st->sessions.live == 0;
    if (!empty)
        st->sessions.on_empty = orphan_empty;
    cor__spin_unlock(&st->sessions.lock);
    if (empty)
        state_free(st);
}

/* After stop: sessions get the grace period, then their stop. */
static void begin_drain(struct cor__serve_state *st, int64_t grace)
{
    if (st->accepts) {
        cor_stream_close(st->accepts);
        st->accepts = NULL;
    }
    if (grace > 0 && cor_task_group_size(&st->sessions) > 0)
        cor__io_timeout_arm(st->io, &st->grace, cor__time_after(grace));
    else
        cor_task_group_stop(&st->sessions);
}

COR_DEFINE(cor_serve, (int fd, cor_session_fn fn, void *user, const cor_serve_options *o), {
    self->fd = fd;
    self->fn = fn;
    self->user = user;
    self->o = o ? *o : (cor_serve_options){0};
    self->st = NULL;
})
{
    COR_BEGIN();
    if (self->fd < 0)
        COR_RETURN(-EINVAL);
    self->err = !self->fn || !options_ok(&self->o) || !is_listener(self->fd) ? -EINVAL
                : !cor_io_context_current()                                 ? -EPERM
                                                                            : 0;
    if (!self->err && !(self->st = state_new(self)))
        self->err = -ENOMEM;
    if (self->err) {
        /* Off an io_context cor_close cannot run (it ends with -EPERM): close(2) instead. */
        self->r = -EPERM;
        if (cor_io_context_current()) {
            COR_TRY_AWAIT_VOID(self->r, cor_close(self->fd));
        }
        if (self->r)
            close(self->fd);
        COR_RETURN(self->err);
    }
    self->listening = true;
    self->cor_hdr.on_destroy = serve_destroyed;
    for (;;) {
        self->conn = 0;
        self->permit = false;
        if (self->st->limited) {
            COR_TRY_AWAIT(self->r, self->conn, cor_async_semaphore_acquire(&self->st->permits, 1));
            if (self->r)
                self->conn = self->r;
            self->permit = self->conn == 0;
        }
        if (self->conn == 0) {
            if (self->st->accepts)
                COR_TRY_AWAIT(self->r, self->conn, cor_stream_next(self->st->accepts, NULL));
            else
                COR_TRY_AWAIT(self->r, self->conn, cor_accept(self->fd, NULL));
            if (self->r)
                self->conn = self->r;
        }
        if (self->conn >= 0) {
            self->transient = 0;
            /* The session's wrapper takes the descriptor and the permit. */
            if (COR_SPAWN(&self->st->sessions, serve_conn(self, self->conn)) == 0)
                continue;
            report(self->st, "no memory for a session: connection shed");
            COR_TRY_AWAIT_VOID(self->r, cor_close(self->conn));
            self->conn = -ENOMEM;
        }
        if (self->permit)
            cor_async_semaphore_release(&self->st->permits, 1);
        enum accept_error what = classify(self->conn);
        if (what == AE_STOP)
            break;
        if (what == AE_FATAL) {
            self->err = self->conn;
            break;
        }
        if (what == AE_SKIP && ++self->transient < TRANSIENT_RUN)
            continue;
        self->transient = 0;
        report(self->st, "accept: %s: pausing %.0f ms", cor_strerror(self->conn),
               (double)(self->o.backoff ? self->o.backoff : DEFAULT_BACKOFF) / 1e6);
        COR_TRY_AWAIT(self->r, self->conn,
                      cor_sleep_for(self->o.backoff ? self->o.backoff : DEFAULT_BACKOFF));
        if (self->conn == -ECANCELED)
            break;
    }
    begin_drain(self->st, self->o.grace);
    self->listening = false;
    COR_TRY_AWAIT_VOID(self->r, cor_close(self->fd));
    if (self->r)
        close(self->fd);
    /* The join's leaf lives in this frame's await slot, so it cannot fail for memory; the
     * state must outlive the sessions whatever happens, hence the loop. */
    do
        COR_TRY_AWAIT_VOID(self->r, cor_task_group_join(&self->st->sessions));
    while (self->r == -ENOMEM);
    cor__io_timeout_disarm(self->st->io, &self->st->grace);
    self->cor_hdr.on_destroy = NULL;
    state_free(self->st);
    COR_RETURN(self->err);
}

/* ---- one server per io_context of a group ---- */

static void server_failed(void *user, int err)
{
    cor__log(COR_LOG_ERROR, "server %ld failed: %s", (long)(intptr_t)user, cor_strerror(err));
}

static void server_ended(void *user, void *result)
{
    int rc = *(int *)result;
    if (rc)
        server_failed(user, rc);
}

int cor_serve_start(cor_io_group *g, const cor_sockaddr *addr, cor_session_fn fn, void *user,
                    const cor_serve_options *o, cor_stop_token stop)
{
    cor_serve_options opts = {0};
    if (o)
        opts = *o;
    if (!g || !addr || !fn || !options_ok(&opts))
        return -EINVAL;
    unsigned n = cor_io_group_size(g);
    unsigned flags = opts.listen_flags | (n > 1 ? COR_NET_REUSEPORT : 0);
    int *fds = calloc(n, sizeof *fds);
    if (!fds)
        return -ENOMEM;
    int rc = 0;
    unsigned made = 0;
    for (; made < n; made++) {
        fds[made] = cor_listen(addr, opts.backlog, flags);
        if (fds[made] < 0) {
            rc = fds[made];
            break;
        }
    }
    for (unsigned i = 0; i < n && !rc; i++) {
        cor_launch_options lo = {
            .stop = stop, .on_result = server_ended, .on_error = server_failed,
            .user = (void *)(intptr_t)i};
        rc = COR_RUN_ASYNC(cor_io_group_executor(g, i), &lo, cor_serve(fds[i], fn, user, &opts));
        if (!rc)
            fds[i] = -1; /* the server owns it now */
    }
    for (unsigned i = 0; i < made; i++)
        if (fds[i] >= 0)
            close(fds[i]);
    free(fds);
    return rc;
}
