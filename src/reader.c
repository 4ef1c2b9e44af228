/*
 * The buffered reader (reader.h): one task serves the three reads. The
 * unread bytes are buf[start, end); the record handed out last is dropped
 * at the start of the next call (so the pointer given out stays valid until
 * then). When the buffer is full of unread bytes and holds no record, the
 * record is too long. Before a receive, unread bytes move to the front so
 * the whole buffer is usable. A socket is read with cor_recv, anything
 * else (a pipe, a file, a terminal) with cor_read at its file position.
 */
#include <errno.h>
#include <limits.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "coring/net.h"
#include "coring/reader.h"
#include "internal.h"

enum { READ_LINE, READ_UNTIL, READ_EXACT };

int cor_reader_init(cor_reader *r, int fd, void *buf, size_t cap)
{
    if (!r || fd < 0 || cap == 0 || cap > (1u << 30))
        return -EINVAL;
    struct stat st;
    if (fstat(fd, &st) < 0)
        return -errno;
    r->file = !S_ISSOCK(st.st_mode);
    r->owned = !buf;
    if (!buf && !(buf = malloc(cap)))
        return -ENOMEM;
    r->fd = fd;
    r->buf = buf;
    r->cap = cap;
    r->start = r->end = r->consume = 0;
    r->eof = false;
    return 0;
}

int cor_reader_destroy(cor_reader *r)
{
    if (!r)
        return -EINVAL;
    if (r->owned)
        free(r->buf);
    r->buf = NULL;
    r->owned = false;
    return 0;
}

/* Drops the record handed out last. */
static void drop_consumed(cor_reader *r)
{
    r->start += r->consume;
    r->consume = 0;
    if (r->start == r->end)
        r->start = r->end = 0;
}

size_t cor_reader_peek(cor_reader *r, char **data)
{
    if (!r)
        return 0;
    drop_consumed(r);
    if (data)
        *data = r->buf + r->start;
    return r->end - r->start;
}

/* The end (exclusive) of the first delimiter in buf[from, to), or 0. */
static size_t find(const char *buf, size_t from, size_t to, const char *d, size_t dlen)
{
    if (dlen == 1) {
        const char *p = memchr(buf + from, d[0], to - from);
        return p ? (size_t)(p - buf) + 1 : 0;
    }
    for (size_t i = from; i + dlen <= to; i++)
        if (buf[i] == d[0] && !memcmp(buf + i, d, dlen))
            return i + dlen;
    return 0;
}

/* Hands out buf[start, start + n) as the record; len excludes its last `trim` bytes. */
static ssize_t hand_out(struct cor_read *t, size_t n, size_t trim)
{
    cor_reader *r = t->r;
    *t->out = r->buf + r->start;
    if (t->len)
        *t->len = n - trim;
    r->consume = n;
    return (ssize_t)n;
}

/*
 * A record complete in the buffer: its length (> 0), or 0 if more bytes are
 * needed, or -EMSGSIZE if it cannot fit.
 */
static ssize_t complete_record(struct cor_read *t)
{
    cor_reader *r = t->r;
    size_t avail = r->end - r->start;
    if (t->mode == READ_EXACT)
        return avail >= t->n ? hand_out(t, t->n, 0) : 0;
    size_t e = find(r->buf, r->start + t->scanned, r->end, t->delim, t->dlen);
    if (e) {
        size_t n = e - r->start, trim = t->dlen;
        /* A line may end in "\r\n": the "\r" is not part of it. */
        if (t->mode == READ_LINE && n >= 2 && r->buf[e - 2] == '\r')
            trim = 2;
        return hand_out(t, n, trim);
    }
    if (avail >= r->cap)
        return -EMSGSIZE;
    /* Search again where a delimiter could still start. */
    t->scanned = avail >= t->dlen ? avail - t->dlen + 1 : 0;
    return 0;
}

COR_DEFINE_STATIC(cor_read, (cor_reader * r, int mode), {
    self->r = r;
    self->mode = mode;
})
{
    COR_BEGIN();
    if (!self->r)
        COR_RETURN(-EINVAL); /* made with bad arguments */
    if (self->mode == READ_EXACT && self->n > self->r->cap)
        COR_RETURN(-EMSGSIZE);
    drop_consumed(self->r);
    self->scanned = 0;
    for (;;) {
        ssize_t k = complete_record(self);
        if (k)
            COR_RETURN(k);
        if (self->r->eof)
            COR_RETURN(self->r->end > self->r->start ? -ENODATA : 0);
        if (self->r->start) {
            cor_reader *r = self->r;
            memmove(r->buf, r->buf + r->start, r->end - r->start);
            r->end -= r->start;
            r->start = 0;
        }
        size_t room = self->r->cap - self->r->end;
        if (room > INT_MAX)
            room = INT_MAX;
        if (self->r->file) /* a pipe, a file, a terminal: at (and advancing) its position */
            COR_AWAIT(self->rc, cor__file_read(self->r->fd, self->r->buf + self->r->end, room, -1));
        else
            COR_AWAIT(self->rc, cor_recv(self->r->fd, self->r->buf + self->r->end, room, 0));
        if (self->rc < 0)
            COR_RETURN(self->rc);
        if (self->rc == 0)
            self->r->eof = true;
        self->r->end += (size_t)self->rc;
    }
}

/* A read made with bad arguments: awaiting it gives -EINVAL. */
static struct cor_read *invalid_read(void)
{
    return cor_read(NULL, -1);
}

static struct cor_read *read_new(cor_reader *r, int mode, char **out, size_t *len)
{
    struct cor_read *t = cor_read(r, mode);
    if (t) {
        t->out = out;
        t->len = len;
        t->delim = "\n";
        t->dlen = 1;
        t->n = 0;
    }
    return t;
}

struct cor_read *cor_read_line(cor_reader *r, char **line, size_t *len)
{
    if (!r || !r->buf || !line)
        return invalid_read();
    return read_new(r, READ_LINE, line, len);
}

struct cor_read *cor_read_until(cor_reader *r, const void *delim, size_t dlen, char **data,
                                size_t *len)
{
    if (!r || !r->buf || !data || !delim || dlen == 0 || dlen > r->cap)
        return invalid_read();
    struct cor_read *t = read_new(r, READ_UNTIL, data, len);
    if (t) {
        t->delim = delim;
        t->dlen = dlen;
    }
    return t;
}

struct cor_read *cor_read_exact(cor_reader *r, size_t n, char **data, size_t *len)
{
    if (!r || !r->buf || !data || n == 0)
        return invalid_read();
    struct cor_read *t = read_new(r, READ_EXACT, data, len);
    if (t)
        t->n = n;
    return t;
}
