/*
 * A buffered reader over a socket (it receives with cor_recv) or any other
 * readable descriptor, a pipe, a file, a terminal (it reads with cor_read
 * at the descriptor's file position, which it advances): read a line, read
 * up to a delimiter, read exactly n bytes, peek.
 * Bytes received past the record asked for stay buffered for the next call,
 * so line and length-prefixed protocols need no leftover handling of their
 * own.
 *
 *     cor_reader rd;
 *     cor_reader_init(&rd, fd, NULL, 8192);          8 KiB buffer, records of up to 8 KiB
 *     for (;;) {
 *         COR_AWAIT(self->n, cor_read_line(&self->rd, &self->line, &self->len));
 *         if (self->n <= 0)
 *             break;       0: end of stream; -ENODATA: it ended mid-line; -EMSGSIZE: too long
 *         ... self->line[0 .. self->len) is the line, without its "\n" or "\r\n"
 *     }
 *     cor_reader_destroy(&rd);
 *
 * The record handed out points into the reader's buffer and stays valid
 * until the next call on the reader. The buffer never grows: a record longer
 * than it is refused with -EMSGSIZE (its bytes stay buffered: peek at them,
 * or give up on the connection). The reads are tasks built on cor_recv (or
 * cor_read): they honour the awaiting coroutine's stop token (-ECANCELED)
 * and COR_TIMEOUT (compose.h). One read at a time per reader, from the
 * coroutines of one io_context.
 */
#ifndef CORING_READER_H
#define CORING_READER_H

#include <sys/types.h>

#include "coring/common.h"
#include "coring/task.h"

COR_BEGIN_DECLS

/* A reader. Caller-owned, fixed-size (embed it in a frame); fields are the library's. */
typedef struct cor_reader {
    int fd;
    bool owned; /* buf was allocated by init          */
    bool eof;   /* the peer ended the stream          */
    bool file;  /* not a socket: read with cor_read    */
    char *buf;
    size_t cap;        /* buffer size: the longest record     */
    size_t start, end; /* the unread bytes: buf[start, end)   */
    size_t consume;    /* the last record: dropped at the next call */
} cor_reader;

/*
 * Initializes r to read fd (which the caller keeps owning; a socket, or a
 * pipe, file or terminal, read from its file position) into buf, cap bytes
 * (1..2^30), which must outlive r; if buf is NULL, r allocates cap bytes
 * itself. Returns 0, -EINVAL (NULL r, fd < 0, cap out of range), -EBADF (fd
 * is not open) or -ENOMEM. Any thread.
 */
COR_API int cor_reader_init(cor_reader *r, int fd, void *buf, size_t cap);

/* Frees r's own buffer (not the descriptor). Returns 0, or -EINVAL for NULL. */
COR_API int cor_reader_destroy(cor_reader *r);

struct cor_read;

/*
 * Awaitable (a task; result ssize_t): the next line, ended by "\n" or
 * "\r\n". Result: the bytes the line took, terminator included (> 0); 0 at
 * the end of the stream with nothing buffered; -ENODATA if the stream ended
 * in the middle of a line (its bytes stay visible to cor_reader_peek);
 * -EMSGSIZE if no terminator comes within the buffer's size; or a receive's
 * -errno (-ECANCELED, -ECONNRESET ...). *line (and *len, if not NULL:
 * the length without the terminator) are set when the result is > 0.
 */
COR_API struct cor_read *cor_read_line(cor_reader *r, char **line, size_t *len);

/*
 * Awaitable: the bytes up to and including the delimiter delim (dlen bytes,
 * >= 1). Results as cor_read_line; *len excludes the delimiter.
 */
COR_API struct cor_read *cor_read_until(cor_reader *r, const void *delim, size_t dlen, char **data,
                                        size_t *len);

/*
 * Awaitable: exactly n bytes (1..the buffer's size). Result: n; 0 at the end
 * of the stream with nothing buffered; -ENODATA if it ended with fewer;
 * -EMSGSIZE if n is larger than the buffer; or a receive's -errno. *data
 * (and *len = n) are set when the result is n.
 */
COR_API struct cor_read *cor_read_exact(cor_reader *r, size_t n, char **data, size_t *len);

/*
 * The unread bytes buffered now (after the last record handed out), without
 * reading: *data points at them (valid until the next call). Returns their
 * count, or 0 for NULL r. Owner coroutine's thread.
 */
COR_API size_t cor_reader_peek(cor_reader *r, char **data);

/* The frame of the reads (fields are the library's). */
struct cor_read {
    COR_PROMISE(ssize_t);
    cor_reader *r;
    int mode, rc;
    const char *delim;
    size_t dlen, n, scanned;
    char **out;
    size_t *len;
};

COR_END_DECLS

#endif
