/*
 * Sockets: address helpers, synchronous setup, the socket operations (leaf
 * awaitables on the common operation path of io_op.c) and the composed
 * tasks.
 */
#include <arpa/inet.h>
#include <limits.h>
#include <net/if.h>
#include <netinet/tcp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "coring/net.h"
#include "internal.h"
#include "io_internal.h"

/* ---- addresses --------------------------------------------------------------------------- */

static int parse_port(const char *s)
{
    if (!*s)
        return -EINVAL;
    long v = 0;
    for (; *s; s++) {
        if (*s < '0' || *s > '9')
            return -EINVAL;
        v = v * 10 + (*s - '0');
        if (v > 65535)
            return -EINVAL;
    }
    return (int)v;
}

static int unix_addr(cor_sockaddr *out, const char *path, bool abstract)
{
    size_t n = strlen(path);
    cor_sockaddr a;
    memset(&a, 0, sizeof a);
    if (n == 0 || n >= sizeof a.u.un.sun_path)
        return -EINVAL;
    a.u.un.sun_family = AF_UNIX;
    if (abstract) {
        /* The abstract namespace: a leading NUL, the name, no terminator. */
        memcpy(a.u.un.sun_path + 1, path, n);
        a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + n);
    } else {
        memcpy(a.u.un.sun_path, path, n + 1);
        a.len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
    }
    *out = a;
    return 0;
}

int cor_addr_ip(cor_sockaddr *out, const char *host, int port)
{
    if (!out || !host || port < 0 || port > 65535)
        return -EINVAL;
    cor_sockaddr a;
    memset(&a, 0, sizeof a);
    if (inet_pton(AF_INET, host, &a.u.in.sin_addr) == 1) {
        a.u.in.sin_family = AF_INET;
        a.u.in.sin_port = htons((uint16_t)port);
        a.len = sizeof a.u.in;
        *out = a;
        return 0;
    }
    char h[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    size_t n = strlen(host);
    if (n >= sizeof h)
        return -EINVAL;
    memcpy(h, host, n + 1);
    char *scope = strchr(h, '%');
    if (scope)
        *scope++ = '\0';
    if (inet_pton(AF_INET6, h, &a.u.in6.sin6_addr) != 1)
        return -EINVAL;
    if (scope) {
        unsigned idx = if_nametoindex(scope);
        if (!idx) {
            int v = parse_port(scope); /* a numeric scope id */
            if (v < 0)
                return -EINVAL;
            idx = (unsigned)v;
        }
        a.u.in6.sin6_scope_id = idx;
    }
    a.u.in6.sin6_family = AF_INET6;
    a.u.in6.sin6_port = htons((uint16_t)port);
    a.len = sizeof a.u.in6;
    *out = a;
    return 0;
}

int cor_addr_parse(cor_sockaddr *out, const char *text)
{
    if (!out || !text)
        return -EINVAL;
    if (text[0] == '/' || text[0] == '.')
        return unix_addr(out, text, false);
    if (!strncmp(text, "unix:", 5))
        return unix_addr(out, text + 5, false);
    if (text[0] == '@')
        return unix_addr(out, text + 1, true);
    char host[INET6_ADDRSTRLEN + IF_NAMESIZE + 2];
    const char *colon;
    size_t hlen;
    if (text[0] == '[') {
        const char *close = strchr(text, ']');
        if (!close || close[1] != ':')
            return -EINVAL;
        hlen = (size_t)(close - text - 1);
        if (hlen == 0 || hlen >= sizeof host)
            return -EINVAL;
        memcpy(host, text + 1, hlen);
        colon = close + 1;
        host[hlen] = '\0';
        if (!strchr(host, ':'))
            return -EINVAL; /* brackets are for IPv6 only */
    } else {
        colon = strrchr(text, ':');
        if (!colon)
            return -EINVAL;
        hlen = (size_t)(colon - text);
        if (hlen == 0 || hlen >= sizeof host)
            return -EINVAL;
        memcpy(host, text, hlen);
        host[hlen] = '\0';
        if (strchr(host, ':'))
            return -EINVAL; /* IPv6 needs brackets */
    }
    int port = parse_port(colon + 1);
    if (port < 0)
        return -EINVAL;
    return cor_addr_ip(out, host, port);
}

int cor_addr_format(const cor_sockaddr *a, char *buf, size_t cap)
{
    if (!a || !buf || cap == 0)
        return -EINVAL;
    char tmp[sizeof(struct sockaddr_un) + INET6_ADDRSTRLEN + 16];
    int n;
    switch (a->u.sa.sa_family) {
    case AF_INET: {
        char h[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &a->u.in.sin_addr, h, sizeof h);
        n = snprintf(tmp, sizeof tmp, "%s:%u", h, ntohs(a->u.in.sin_port));
        break;
    }
    case AF_INET6: {
        char h[INET6_ADDRSTRLEN];
        inet_ntop(AF_INET6, &a->u.in6.sin6_addr, h, sizeof h);
        if (a->u.in6.sin6_scope_id)
            n = snprintf(tmp, sizeof tmp, "[%s%%%u]:%u", h, a->u.in6.sin6_scope_id,
                         ntohs(a->u.in6.sin6_port));
        else
            n = snprintf(tmp, sizeof tmp, "[%s]:%u", h, ntohs(a->u.in6.sin6_port));
        break;
    }
    case AF_UNIX: {
        size_t off = offsetof(struct sockaddr_un, sun_path);
        size_t plen = a->len > off ? a->len - off : 0;
        if (plen > sizeof a->u.un.sun_path)
            return -EINVAL;
        if (plen > 0 && a->u.un.sun_path[0] == '\0') {
            n = snprintf(tmp, sizeof tmp, "@%.*s", (int)(plen - 1), a->u.un.sun_path + 1);
        } else {
            size_t l = strnlen(a->u.un.sun_path, plen);
            const char *p = a->u.un.sun_path;
            /* A relative path reads back as unix:path. */
            n = snprintf(tmp, sizeof tmp, "%s%.*s",
                         (l && p[0] != '/' && p[0] != '.') ? "unix:" : "", (int)l, p);
        }
        break;
    }
    default:
        return -EINVAL;
    }
    if (n < 0)
        return -EINVAL;
    if ((size_t)n >= cap)
        return -ENOSPC;
    memcpy(buf, tmp, (size_t)n + 1);
    return n;
}

int cor_addr_port(const cor_sockaddr *a)
{
    if (!a)
        return -EINVAL;
    if (a->u.sa.sa_family == AF_INET)
        return ntohs(a->u.in.sin_port);
    if (a->u.sa.sa_family == AF_INET6)
        return ntohs(a->u.in6.sin6_port);
    return -EINVAL;
}

static int name_of(int fd, cor_sockaddr *out, bool peer)
{
    if (!out)
        return -EINVAL;
    cor_sockaddr a;
    memset(&a, 0, sizeof a);
    a.len = sizeof a.u;
    int r = peer ? getpeername(fd, &a.u.sa, &a.len) : getsockname(fd, &a.u.sa, &a.len);
    if (r < 0)
        return -errno;
    *out = a;
    return 0;
}

int cor_local_addr(int fd, cor_sockaddr *out)
{
    return name_of(fd, out, false);
}

int cor_peer_addr(int fd, cor_sockaddr *out)
{
    return name_of(fd, out, true);
}

/* ---- setup ------------------------------------------------------------------------------- */

static bool valid_addr(const cor_sockaddr *a)
{
    if (!a || a->len == 0 || a->len > sizeof a->u)
        return false;
    int f = a->u.sa.sa_family;
    return f == AF_INET || f == AF_INET6 || f == AF_UNIX;
}

static int set_int(int fd, int level, int opt, int v)
{
    return setsockopt(fd, level, opt, &v, sizeof v) < 0 ? -errno : 0;
}

int cor_socket(int family, int type)
{
    if ((family != AF_INET && family != AF_INET6 && family != AF_UNIX) ||
        (type != SOCK_STREAM && type != SOCK_DGRAM))
        return -EINVAL;
    int fd = socket(family, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        return -errno;
    if (type == SOCK_STREAM && family != AF_UNIX)
        set_int(fd, IPPROTO_TCP, TCP_NODELAY, 1); /* best effort: latency over batching */
    return fd;
}

static int bound_socket(const cor_sockaddr *a, int type, unsigned opts)
{
    if (!valid_addr(a) || (opts & ~(unsigned)(COR_NET_REUSEADDR | COR_NET_REUSEPORT |
                                              COR_NET_V6ONLY | COR_NET_NODELAY)))
        return -EINVAL;
    int family = a->u.sa.sa_family;
    int fd = cor_socket(family, type);
    if (fd < 0)
        return fd;
    int rc = 0;
    if (family != AF_UNIX) {
        if ((opts & COR_NET_REUSEADDR) || type == SOCK_STREAM)
            rc = set_int(fd, SOL_SOCKET, SO_REUSEADDR, 1);
        if (!rc && (opts & COR_NET_REUSEPORT))
            rc = set_int(fd, SOL_SOCKET, SO_REUSEPORT, 1);
        if (!rc && family == AF_INET6)
            rc = set_int(fd, IPPROTO_IPV6, IPV6_V6ONLY, (opts & COR_NET_V6ONLY) != 0);
    } else if (a->u.un.sun_path[0] != '\0') {
        /* A stale socket file from an earlier run would make bind fail. */
        struct stat st;
        if (stat(a->u.un.sun_path, &st) == 0 && S_ISSOCK(st.st_mode))
            unlink(a->u.un.sun_path);
    }
    if (!rc && bind(fd, &a->u.sa, a->len) < 0)
        rc = -errno;
    if (rc) {
        close(fd);
        return rc;
    }
    return fd;
}

int cor_listen(const cor_sockaddr *a, int backlog, unsigned opts)
{
    int fd = bound_socket(a, SOCK_STREAM, opts);
    if (fd < 0)
        return fd;
    if (listen(fd, backlog > 0 ? backlog : SOMAXCONN) < 0) {
        int rc = -errno;
        close(fd);
        return rc;
    }
    return fd;
}

int cor_udp_bind(const cor_sockaddr *a, unsigned opts)
{
    if (a && a->u.sa.sa_family == AF_UNIX)
        return -EINVAL;
    return bound_socket(a, SOCK_DGRAM, opts);
}

/* ---- operations -------------------------------------------------------------------------- */

/* A new op for the awaiting coroutine's io_context; bad arguments make it complete with -EINVAL. */
static struct cor_io_await *buf_op(int opcode, int fd, void *buf, size_t len, uint32_t flags)
{
    struct cor_io_await *a = cor__io_await_fd(opcode, fd, (buf || len == 0) && len <= INT_MAX);
    if (a) {
        cor__io_op *op = cor__op_of(a);
        op->u.io.addr = buf;
        op->len = (uint32_t)len;
        op->op_flags = flags;
    }
    return a;
}

/* Accept's address goes straight into the caller's cor_sockaddr; its len is the in/out length. */
struct cor_io_await *cor_accept(int fd, cor_sockaddr *peer)
{
    struct cor_io_await *a = cor__io_await_fd(COR__IO_ACCEPT, fd, true);
    if (a) {
        cor__io_op *op = cor__op_of(a);
        if (peer) {
            peer->len = sizeof peer->u;
            op->u.io.addr = &peer->u.sa;
            op->u.io.addr2 = &peer->len;
        } else {
            op->u.io.addr = NULL;
            op->u.io.addr2 = NULL;
        }
        op->op_flags = SOCK_NONBLOCK | SOCK_CLOEXEC;
    }
    return a;
}

struct cor_io_await *cor_connect(int fd, const cor_sockaddr *addr)
{
    struct cor_io_await *a = cor__io_await_fd(COR__IO_CONNECT, fd, valid_addr(addr));
    if (a) {
        cor__io_op *op = cor__op_of(a);
        op->u.io.addr = addr ? (void *)&addr->u.sa : NULL;
        op->len = addr ? addr->len : 0;
    }
    return a;
}

struct cor_io_await *cor_recv(int fd, void *buf, size_t len, int flags)
{
    return buf_op(COR__IO_RECV, fd, buf, len, (uint32_t)flags);
}

struct cor_io_await *cor_send(int fd, const void *buf, size_t len, int flags)
{
    return buf_op(COR__IO_SEND, fd, (void *)buf, len, (uint32_t)(flags | MSG_NOSIGNAL));
}

/* A datagram op keeps its msghdr and iovec in the frame, past the op. */
struct msg_state {
    struct msghdr msg;
    struct iovec iov;
};

static struct cor_io_await *msg_op(int opcode, int fd, void *buf, size_t len, int flags,
                                   cor_sockaddr *addr, bool valid)
{
    size_t off = (sizeof(struct cor_io_await) + _Alignof(struct msg_state) - 1) &
                 ~(_Alignof(struct msg_state) - 1);
    struct cor_io_await *a = cor__io_await_new(opcode, off + sizeof(struct msg_state));
    if (!a)
        return NULL;
    cor__io_op *op = cor__op_of(a);
    op->fd = fd;
    if (!valid || (!buf && len) || len > INT_MAX)
        cor__io_op_invalid(op);
    struct msg_state *m = (struct msg_state *)((char *)a + off);
    memset(m, 0, sizeof *m);
    m->iov.iov_base = buf;
    m->iov.iov_len = len;
    m->msg.msg_iov = &m->iov;
    m->msg.msg_iovlen = 1;
    if (addr) {
        m->msg.msg_name = &addr->u.sa;
        m->msg.msg_namelen = opcode == COR__IO_RECVMSG ? (socklen_t)sizeof addr->u : addr->len;
    }
    op->u.io.addr = &m->msg;
    op->op_flags = (uint32_t)flags;
    return a;
}

/*
 * recvfrom's source length comes back in the msghdr, which dies with the
 * op's frame, so from->len is set to the IPv6 size up front: for IP (the
 * only datagram families offered) the family tells the real length.
 */
struct cor_io_await *cor_recvfrom(int fd, void *buf, size_t len, int flags, cor_sockaddr *from)
{
    if (from) {
        memset(from, 0, sizeof *from);
        from->len = sizeof from->u.in6;
    }
    return msg_op(COR__IO_RECVMSG, fd, buf, len, flags, from, true);
}

struct cor_io_await *cor_sendto(int fd, const void *buf, size_t len, int flags,
                                const cor_sockaddr *to)
{
    return msg_op(COR__IO_SENDMSG, fd, (void *)buf, len, flags | MSG_NOSIGNAL, (cor_sockaddr *)to,
                  !to || valid_addr(to));
}

struct cor_io_await *cor_shutdown(int fd, int how)
{
    struct cor_io_await *a = cor__io_await_fd(COR__IO_SHUTDOWN, fd,
                                              how == SHUT_RD || how == SHUT_WR || how == SHUT_RDWR);
    if (a)
        cor__op_of(a)->op_flags = (uint32_t)how;
    return a;
}

struct cor_io_await *cor_close(int fd)
{
    return cor__io_await_fd(COR__IO_CLOSE, fd, true);
}

/* ---- composed operations ------------------------------------------------------------------ */

COR_DEFINE(cor_send_all, (int fd, const void *buf, size_t len), {
    self->fd = fd;
    self->buf = (const char *)buf;
    self->len = len;
})
{
    COR_BEGIN();
    if ((!self->buf && self->len) || self->len > SSIZE_MAX)
        COR_RETURN(-EINVAL);
    for (self->done = 0; self->done < self->len;) {
        size_t chunk = self->len - self->done;
        if (chunk > INT_MAX)
            chunk = INT_MAX;
        COR_AWAIT(self->r, cor_send(self->fd, self->buf + self->done, chunk, 0));
        if (self->r < 0)
            COR_RETURN(self->r);
        self->done += (size_t)self->r;
    }
    COR_RETURN((ssize_t)self->len);
}

COR_DEFINE(cor_recv_exact, (int fd, void *buf, size_t len), {
    self->fd = fd;
    self->buf = (char *)buf;
    self->len = len;
})
{
    COR_BEGIN();
    if ((!self->buf && self->len) || self->len > SSIZE_MAX)
        COR_RETURN(-EINVAL);
    for (self->done = 0; self->done < self->len;) {
        size_t chunk = self->len - self->done;
        if (chunk > INT_MAX)
            chunk = INT_MAX;
        COR_AWAIT(self->r, cor_recv(self->fd, self->buf + self->done, chunk, 0));
        if (self->r < 0)
            COR_RETURN(self->r);
        if (self->r == 0)
            break;
        self->done += (size_t)self->r;
    }
    COR_RETURN((ssize_t)self->done);
}

/* The end of the first delimiter in buf[0, n) at or after from, or 0. */
static size_t find_delim(const char *buf, size_t n, size_t from, const char *d, size_t dlen)
{
    for (size_t i = from; i + dlen <= n; i++)
        if (buf[i] == d[0] && !memcmp(buf + i, d, dlen))
            return i + dlen;
    return 0;
}

COR_DEFINE(cor_recv_until,
           (int fd, void *buf, size_t cap, size_t *have, const void *delim, size_t dlen), {
               self->fd = fd;
               self->buf = (char *)buf;
               self->cap = cap;
               self->have = have;
               self->delim = (const char *)delim;
               self->dlen = dlen;
           })
{
    COR_BEGIN();
    if (!self->buf || !self->have || !self->delim || self->dlen == 0 || *self->have > self->cap ||
        self->cap > SSIZE_MAX)
        COR_RETURN(-EINVAL);
    self->scanned = 0;
    for (;;) {
        size_t end = find_delim(self->buf, *self->have, self->scanned, self->delim, self->dlen);
        if (end)
            COR_RETURN((ssize_t)end);
        /* Resume the scan where a delimiter could still start. */
        self->scanned = *self->have >= self->dlen ? *self->have - self->dlen + 1 : 0;
        if (*self->have == self->cap)
            COR_RETURN(-ENOBUFS);
        size_t room = self->cap - *self->have;
        if (room > INT_MAX)
            room = INT_MAX;
        COR_AWAIT(self->r, cor_recv(self->fd, self->buf + *self->have, room, 0));
        if (self->r < 0)
            COR_RETURN(self->r);
        if (self->r == 0)
            COR_RETURN(0);
        *self->have += (size_t)self->r;
    }
}
