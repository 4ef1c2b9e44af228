/*
 * http_hello: a minimal HTTP/1.1 server on 127.0.0.1:P answering every
 * request with "hello world". Keep-alive, pipelining (every complete request
 * in a read is answered, in order, with one send), Content-Length bodies,
 * 400 for a malformed request, 431 for a head above 8 KiB, 413 for a body
 * above 8 KiB; after an error answer the connection is closed cleanly
 * (shutdown of the sending side, then the rest of the request is read
 * until the peer closes, for at most a second in all, so the answer is not
 * lost to a reset: linger.h).
 *
 * Timeouts: a connection idle between requests (or a peer that stops
 * reading) is closed after --idle-ms (the server loop's idle timeout), and a
 * request (head and body) must arrive in full within --header-ms of its
 * first byte (a client trickling a byte at a time cannot hold a session
 * forever).
 *
 *     http_hello [--port P] [--threads N] [--backend uring|epoll]
 *                [--idle-ms MS] [--grace-ms MS] [--header-ms MS]
 */
#include "cli.h"
#include "http_parse.h"
#include "linger.h"

static int64_t header_ns = 10000 * 1000000LL;

enum { MAX_HEAD = 8192, MAX_BODY = 8192, IN_CAP = MAX_HEAD + MAX_BODY, OUT_CAP = 16384 };

static const char ok_keep[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                              "Content-Length: 11\r\n\r\nhello world";
static const char ok_keep10[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                                "Connection: keep-alive\r\nContent-Length: 11\r\n\r\nhello world";
static const char ok_close[] = "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                               "Connection: close\r\nContent-Length: 11\r\n\r\nhello world";

static const char *error_answer(int status)
{
    switch (status) {
    case HTTP_TOO_LARGE:
        return "HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n"
               "Content-Length: 0\r\n\r\n";
    case HTTP_BODY_LARGE:
        return "HTTP/1.1 413 Content Too Large\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    default:
        return "HTTP/1.1 400 Bad Request\r\nConnection: close\r\nContent-Length: 0\r\n\r\n";
    }
}

struct conn {
    COR_PROMISE(int);
    int fd, r, status;
    bool closing;
    size_t have, pos, olen, alen;
    const char *answer;
    ssize_t sent;
    int64_t head_deadline; /* while a request is incomplete: when its head must be in */
    http_request req;
    char in[IN_CAP];
    char out[OUT_CAP];
};

/*
 * Appends n bytes to the output; the caller made room (flushing first when
 * they would not fit). An overrun would land inside the frame, where no
 * sanitizer sees it: stop loudly instead.
 */
static void append(struct conn *c, const char *s, size_t n)
{
    if (c->olen + n > OUT_CAP)
        abort();
    memcpy(c->out + c->olen, s, n);
    c->olen += n;
}

/* The answer to a request the parser accepted. */
static const char *ok_answer(const http_request *req)
{
    if (!req->keep_alive)
        return ok_close;
    return req->minor == 0 ? ok_keep10 : ok_keep;
}

COR_DEFINE_STATIC(conn, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    self->have = self->pos = self->olen = 0;
    self->status = 0;
    self->closing = false;
    self->head_deadline = 0;
    for (;;) {
        /* Answer every complete request in the buffer, in order, then a parse error if any. */
        for (;;) {
            self->r = http_parse(self->in + self->pos, self->have - self->pos, MAX_HEAD, MAX_BODY,
                                 &self->req);
            if (self->r == 0)
                break;
            if (self->r < 0) {
                self->status = self->r;
                self->answer = error_answer(self->status);
            } else {
                self->answer = ok_answer(&self->req);
                self->pos += (size_t)self->r;
                self->head_deadline = 0; /* the next request's clock starts with its first byte */
                self->closing = !self->req.keep_alive;
            }
            self->alen = strlen(self->answer);
            if (self->olen + self->alen > OUT_CAP) {
                COR_AWAIT(self->sent, cor_send_all(self->fd, self->out, self->olen));
                if (self->sent < 0)
                    goto done;
                self->olen = 0;
            }
            append(self, self->answer, self->alen);
            if (self->status || self->closing)
                break;
        }
        if (self->olen) {
            COR_AWAIT(self->sent, cor_send_all(self->fd, self->out, self->olen));
            if (self->sent < 0)
                goto done;
            self->olen = 0;
        }
        if (self->status || self->closing)
            break;
        memmove(self->in, self->in + self->pos, self->have - self->pos);
        self->have -= self->pos;
        self->pos = 0;
        if (self->have == 0) {
            self->head_deadline = 0; /* between requests: only the idle timeout applies */
            COR_AWAIT(self->r, cor_recv(self->fd, self->in, IN_CAP, 0));
        } else {
            if (!self->head_deadline)
                self->head_deadline = deadline_in(header_ns);
            COR_AWAIT(self->r,
                      COR_DEADLINE_AT(cor_recv(self->fd, self->in + self->have,
                                               IN_CAP - self->have, 0),
                                      self->head_deadline));
        }
        if (self->r <= 0)
            goto done; /* closed, idle (-ETIME), too slow (-ETIME), stopped, or an error */
        self->have += (size_t)self->r;
    }
    /* Closing after an answer: stop sending, read what the client still sends (a second in all). */
    COR_AWAIT(self->r, linger_close(self->fd, 1000000000));
done:
    COR_RETURN(0); /* the server closes fd */
}

static cor_frame *new_session(void *user, int fd)
{
    (void)user;
    return COR_FRAME(conn(fd));
}

static int header_option(const char *name, const char *value)
{
    long long ms;
    if (strcmp(name, "--header-ms") || !arg_int(value, 1, ARG_MS_MAX, &ms))
        return -1;
    header_ns = ms * 1000000LL;
    return 0;
}

int main(int argc, char **argv)
{
    server_args a;
    server_parse_args(argc, argv, &a, header_option, "[--header-ms MS]");
    return server_main("http_hello", &a, new_session, NULL, NULL);
}
