/*
 * The server loop: accept connections on a listening socket and run one
 * session coroutine per connection, with idle timeouts, back-off when the
 * process runs out of descriptors or memory, bounded concurrency, and a
 * graceful stop. One call serves one listener on the awaiting coroutine's
 * io_context; cor_serve_start runs one per io_context of a cor_io_group on
 * one port (SO_REUSEPORT).
 *
 *     static cor_frame *new_session(void *user, int fd)
 *     {
 *         return COR_FRAME(session(fd));       the session uses fd, never closes it
 *     }
 *     ...
 *     cor_serve_options o = {.idle_timeout = 30 * COR_SEC, .grace = 5 * COR_SEC};
 *     COR_AWAIT(self->rc, cor_serve(listen_fd, new_session, NULL, &o));
 *
 * Sessions. Every accepted connection gets a session: the frame the factory
 * returns, run as a child of the server's task group (compose.h) on the
 * server's executor, frames from the server's allocator. The server owns
 * the connection's descriptor: it closes it (through the io_context) once
 * the session has ended, however it ended; a session must not close it
 * (shutdown is fine). A session's failure (COR_FAIL, a failed await) ends
 * that session only.
 *
 * Stop. When the awaiting coroutine's stop token is stopped the server stops
 * accepting, closes the listener (connections still in its backlog are
 * reset), lets the running sessions go on for the grace period, then stops
 * their tokens (their pending operations complete with -ECANCELED) and
 * waits for every one to end. Only then does the await complete. An
 * io_context destroyed under a running server (no stop first) destroys the
 * server and its sessions like any suspended coroutine, closing the
 * listener and every connection.
 *
 * Errors that are not the server's fault never end it: a connection aborted
 * before it was accepted is skipped; out of descriptors or memory (EMFILE,
 * ENFILE, ENOMEM, ENOBUFS) pauses accepting for the back-off time; a session
 * that cannot be allocated is shed (its connection closed). Each of those is
 * reported through the log hook (log.h; stderr by default) at most once a
 * second per server, with a count of what happened in between. Nothing
 * spins and nothing is dropped silently.
 */
#ifndef CORING_SERVE_H
#define CORING_SERVE_H

#include "coring/common.h"
#include "coring/compose.h"
#include "coring/io_group.h"
#include "coring/net.h"
#include "coring/stop.h"
#include "coring/sync.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/* One second in the nanoseconds the options take. */
#define COR_SEC (1000LL * 1000 * 1000)

/*
 * Creates the session for connected socket fd: returns its frame (for a
 * task, COR_FRAME(session(fd, ...))) or NULL if it could not be allocated
 * (the connection is then closed and counted as shed). Called on the
 * server's thread, inside the server's frame allocator window. user is the
 * pointer given to cor_serve.
 */
typedef cor_frame *(*cor_session_fn)(void *user, int fd);

/*
 * Options of cor_serve and cor_serve_start; zero members take the defaults.
 *  idle_timeout: each operation of a session that waits longer than this
 *                for its peer completes with -ETIME (the session's stop
 *                token carries it: cor_stop_source_set_op_timeout); ns,
 *                0: none.
 *  grace:        after stop, how long sessions may run on before they are
 *                stopped; ns, 0: stopped at once.
 *  max_sessions: sessions at once; at the limit the server accepts again
 *                only when one ends (the kernel's backlog holds the rest).
 *                0: no limit.
 *  backoff:      the pause after EMFILE, ENFILE, ENOMEM or ENOBUFS; ns, 0:
 *                100 ms.
 *  backlog, listen_flags: the listeners cor_serve_start creates (backlog
 *                0: SOMAXCONN; COR_NET_* flags, COR_NET_REUSEPORT added
 *                when there is more than one). cor_serve ignores them.
 *  no_multishot: accept one connection per request even where the backend
 *                offers a multishot accept (it is used when max_sessions is
 *                0 and the backend has it).
 */
typedef struct cor_serve_options {
    int64_t idle_timeout;
    int64_t grace;
    long max_sessions;
    int64_t backoff;
    int backlog;
    unsigned listen_flags;
    bool no_multishot;
    void *reserved[4];
} cor_serve_options;

struct cor_serve;

/*
 * Awaitable (a task; result int): serves listening socket fd on the
 * awaiting coroutine's io_context until its stop token is stopped (see
 * above), starting fn(user, conn) for each connection. Result: 0 after a
 * stop; the accept error that ended it otherwise (-EBADF ..., after the
 * same drain of sessions); -EINVAL for fd < 0, NULL fn, negative options,
 * or an fd that is not a listening stream socket; -EPERM off an io_context.
 * The server owns fd from the call on and closes it in every case (fd < 0
 * aside). o (NULL: defaults) is copied.
 */
COR_API struct cor_serve *cor_serve(int fd, cor_session_fn fn, void *user,
                                    const cor_serve_options *o);

/*
 * Starts one server per io_context of group g, each on its own listener
 * bound to addr (SO_REUSEPORT when g has more than one context, so the
 * kernel spreads connections), with stop token stop (which ends them all)
 * and options o. Returns 0 once all are started; -EINVAL for NULL g, addr
 * or fn; the error of a listener that could not be created (nothing is
 * started then); -ENOMEM if a server could not be launched (the servers
 * already launched run until stop). A server that ends with an error says
 * so through the log hook. Wait for the end with cor_io_group_join. Any thread.
 */
COR_API int cor_serve_start(cor_io_group *g, const cor_sockaddr *addr, cor_session_fn fn,
                            void *user, const cor_serve_options *o, cor_stop_token stop);

/* The frame of cor_serve (fields are the library's). */
struct cor_serve {
    COR_PROMISE(int);
    int fd, conn, err, r, transient;
    bool permit, listening;
    cor_session_fn fn;
    void *user;
    cor_serve_options o;
    struct cor__serve_state *st;
};

COR_END_DECLS

#endif
