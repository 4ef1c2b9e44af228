/*
 * Sockets on the io_context: TCP over IPv4 and IPv6, Unix stream sockets and
 * UDP, as awaitable operations, plus address helpers.
 *
 *     struct session { COR_PROMISE(int); int fd; char buf[4096]; int n; };
 *     COR_DEFINE(session, (int fd), { self->fd = fd; })
 *     {
 *         COR_BEGIN();
 *         for (;;) {
 *             COR_AWAIT(self->n, cor_recv(self->fd, self->buf, sizeof self->buf, 0));
 *             if (self->n <= 0)
 *                 break;
 *             COR_AWAIT(self->n, cor_send_all(self->fd, self->buf, (size_t)self->n));
 *             if (self->n < 0)
 *                 break;
 *         }
 *         COR_AWAIT(self->n, cor_close(self->fd));
 *         COR_RETURN(0);
 *     }
 *
 * Setting a socket up (cor_socket, cor_listen, cor_udp_bind) is synchronous:
 * socket, bind and listen never wait. Everything that waits is an awaitable
 * returning struct cor_io_await * (io_context.h): its result is the kernel's
 * (a count or 0 on success, -errno on failure), it honours the awaiting
 * coroutine's stop token (-ECANCELED) and a deadline given with
 * COR_DEADLINE_AFTER (-ETIME) -- except the cleanup operations cor_close
 * and cor_shutdown, which always run -- and it runs on the awaiting coroutine's
 * io_context (its executor's, else the one running on this thread; -EPERM
 * if none). Results are values, not errors: a failed recv does not fail the
 * awaiting coroutine. Awaitables returning NULL (no memory) fail the await
 * with -ENOMEM. Buffers and addresses passed to an operation must stay
 * valid until it completes (keep them in the frame).
 *
 * Sockets made here are non-blocking and close-on-exec; their operations
 * still suspend the coroutine until they complete.
 */
#ifndef CORING_NET_H
#define CORING_NET_H

#include <sys/types.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <netinet/in.h>

#include "coring/common.h"
#include "coring/io_context.h"
#include "coring/io_op.h"
#include "coring/stream.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/* ---- addresses --------------------------------------------------------------------------- */

/* A socket address of any family, with its length. */
typedef struct cor_sockaddr {
    union {
        struct sockaddr sa;
        struct sockaddr_in in;
        struct sockaddr_in6 in6;
        struct sockaddr_un un;
        struct sockaddr_storage ss;
    } u;
    socklen_t len;
} cor_sockaddr;

/*
 * Parses text into *out: "127.0.0.1:8080" (IPv4), "[::1]:8080" (IPv6, a
 * scope as "[fe80::1%eth0]:80"), or a Unix socket path ("/tmp/s", "./s",
 * "unix:relative", "@name" for the abstract namespace). Numeric only (see
 * cor_resolve for names). Returns 0, or -EINVAL for NULL arguments or bad
 * text (no port, port > 65535, a path longer than sun_path); *out is then
 * untouched. Any thread.
 */
COR_API int cor_addr_parse(cor_sockaddr *out, const char *text);

/* Fills *out with an IPv4 or IPv6 address (numeric host) and port. Returns 0 or -EINVAL. */
COR_API int cor_addr_ip(cor_sockaddr *out, const char *host, int port);

/*
 * Writes a as text into buf (cap bytes, NUL-terminated), in the form
 * cor_addr_parse reads. Returns the length, -EINVAL for bad arguments (NULL
 * a or buf, cap 0) or an unknown family, -ENOSPC if cap is too small for the
 * text. Any thread.
 */
COR_API int cor_addr_format(const cor_sockaddr *a, char *buf, size_t cap);

/* The port of an IPv4 or IPv6 address, or -EINVAL. */
COR_API int cor_addr_port(const cor_sockaddr *a);

/* The local address of socket fd (after binding to port 0, say). Returns 0 or -errno. */
COR_API int cor_local_addr(int fd, cor_sockaddr *out);

/* The peer address of connected socket fd. Returns 0 or -errno. */
COR_API int cor_peer_addr(int fd, cor_sockaddr *out);

/* ---- setting sockets up (synchronous) ------------------------------------------------------ */

/* Options of cor_listen and cor_udp_bind. */
enum {
    COR_NET_REUSEADDR = 1u << 0, /* SO_REUSEADDR (TCP listeners always set it)         */
    COR_NET_REUSEPORT = 1u << 1, /* SO_REUSEPORT: one listener per core on one port    */
    COR_NET_V6ONLY = 1u << 2,    /* IPV6_V6ONLY on an IPv6 socket                      */
    COR_NET_NODELAY =
        1u << 3 /* TCP_NODELAY on accepted sockets (cor_listen only: it is inherited) */
};

/*
 * Creates a non-blocking, close-on-exec socket of family (AF_INET, AF_INET6,
 * AF_UNIX) and type (SOCK_STREAM, SOCK_DGRAM). TCP sockets get TCP_NODELAY.
 * Returns the descriptor (the caller owns it) or -errno. Any thread.
 */
COR_API int cor_socket(int family, int type);

/*
 * A listening stream socket on a (TCP or Unix) with backlog (<= 0: SOMAXCONN)
 * and COR_NET_* opts. A Unix path that exists as a socket is replaced.
 * Returns the descriptor or -errno (-EINVAL for NULL a or unknown opts;
 * -EADDRINUSE ...). Any thread.
 */
COR_API int cor_listen(const cor_sockaddr *a, int backlog, unsigned opts);

/* A UDP socket bound to a with COR_NET_* opts. Returns the descriptor or -errno. Any thread. */
COR_API int cor_udp_bind(const cor_sockaddr *a, unsigned opts);

/* ---- operations (awaitables) -------------------------------------------------------------- */

/*
 * Accepts a connection on listening socket fd. Result: the new descriptor
 * (non-blocking, close-on-exec; the awaiting coroutine owns it) or -errno.
 * peer, if not NULL, receives the peer's address.
 */
COR_API struct cor_io_await *cor_accept(int fd, cor_sockaddr *peer);

/* Connects socket fd to a. Result: 0 or -errno (-ECONNREFUSED, -ETIME at a deadline ...). */
COR_API struct cor_io_await *cor_connect(int fd, const cor_sockaddr *a);

/*
 * Receives up to len bytes (len <= INT_MAX). Result: the count, 0 at end of
 * stream, or -errno. With MSG_WAITALL on a stream socket, one operation
 * waits for all len bytes (fewer only at end of stream, after an error, or
 * when a stop, a deadline or cor_close ends it: then the count so far, if
 * any, instead of the error).
 */
COR_API struct cor_io_await *cor_recv(int fd, void *buf, size_t len, int flags);

/*
 * Sends up to len bytes (MSG_NOSIGNAL is always added). Result: the count
 * sent or -errno. With MSG_WAITALL on a stream socket, one operation sends
 * all len bytes, the backend finishing short sends (no task, unlike
 * cor_send_all); fewer come back only after an error or when a stop, a
 * deadline or cor_close ends it, and then the count is what the kernel took.
 */
COR_API struct cor_io_await *cor_send(int fd, const void *buf, size_t len, int flags);

/*
 * Receives a datagram of up to len bytes; from, if not NULL, receives the
 * sender's address (its len is set to sizeof(struct sockaddr_in6) up front;
 * the family tells IPv4 from IPv6). Result: the count or -errno.
 */
COR_API struct cor_io_await *cor_recvfrom(int fd, void *buf, size_t len, int flags,
                                          cor_sockaddr *from);

/* Sends a datagram to to (NULL: the connected peer). Result: the count or -errno. */
COR_API struct cor_io_await *cor_sendto(int fd, const void *buf, size_t len, int flags,
                                        const cor_sockaddr *to);

/*
 * Shuts down one or both directions of fd (SHUT_RD, SHUT_WR, SHUT_RDWR).
 * Result: 0 or -errno. Cleanup, like cor_close: it ignores the stop token
 * and any deadline and always runs.
 */
COR_API struct cor_io_await *cor_shutdown(int fd, int how);

/* cor_close, for sockets as for files, is declared in io_op.h. */

/* ---- composed operations (tasks) ---------------------------------------------------------- */

struct cor_send_all;
struct cor_recv_exact;
struct cor_recv_until;

/*
 * Sends all len bytes, looping over short sends. Result (ssize_t): len, or
 * -errno of the send that failed (bytes before it were sent). A task: its
 * frame comes from the frame allocator.
 */
COR_API struct cor_send_all *cor_send_all(int fd, const void *buf, size_t len);

/*
 * Receives exactly len bytes, looping over short receives. Result (ssize_t):
 * len; the smaller count received before the peer ended the stream; or
 * -errno (bytes before it are in buf).
 */
COR_API struct cor_recv_exact *cor_recv_exact(int fd, void *buf, size_t len);

/*
 * Reads until delim (dlen bytes) appears in buf. buf holds *have bytes on
 * entry (data left over from an earlier call) and up to cap bytes in all;
 * *have is updated with every receive. Result (ssize_t): the length of the
 * data up to and including the first delimiter (the bytes after it, up to
 * *have, belong to the next message: move them to the front before the next
 * call); 0 if the stream ended first; -ENOBUFS if cap bytes hold no
 * delimiter; -EINVAL for bad arguments; or a receive's -errno.
 */
COR_API struct cor_recv_until *cor_recv_until(int fd, void *buf, size_t cap, size_t *have,
                                              const void *delim, size_t dlen);

/* The frames of the composed operations (fields are the library's). */
struct cor_send_all {
    COR_PROMISE(ssize_t);
    int fd, r;
    const char *buf;
    size_t len, done;
};

struct cor_recv_exact {
    COR_PROMISE(ssize_t);
    int fd, r;
    char *buf;
    size_t len, done;
};

struct cor_recv_until {
    COR_PROMISE(ssize_t);
    int fd, r;
    char *buf;
    size_t cap, *have, scanned;
    const char *delim;
    size_t dlen;
};

COR_END_DECLS

#endif
