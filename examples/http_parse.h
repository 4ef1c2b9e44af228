/*
 * A small HTTP/1.x request parser for http_hello: it finds where one
 * request ends (head and Content-Length body) so pipelined requests in one
 * buffer are answered in order, and rejects what it does not understand.
 */
#ifndef CORING_EXAMPLES_HTTP_PARSE_H
#define CORING_EXAMPLES_HTTP_PARSE_H

#include <stdbool.h>
#include <stddef.h>

enum {
    HTTP_BAD = -400,       /* malformed: answer 400 and close              */
    HTTP_TOO_LARGE = -431, /* the head exceeds max_head: answer 431, close */
    HTTP_BODY_LARGE = -413 /* Content-Length above max_body: 413, close   */
};

typedef struct http_request {
    const char *method, *target;
    size_t method_len, target_len;
    int minor;       /* HTTP/1.minor                                  */
    size_t head_len; /* request line and headers, through the blank line */
    size_t body_len; /* Content-Length (0 without one)                */
    bool keep_alive; /* the connection stays open after the answer    */
} http_request;

/*
 * Parses the request at the start of buf[0, len). Returns its total length
 * (head and body) with *r filled; 0 if more bytes are needed; or HTTP_BAD,
 * HTTP_TOO_LARGE, HTTP_BODY_LARGE. A malformed request line is reported as
 * soon as its line is complete, without waiting for the whole head.
 */
int http_parse(const char *buf, size_t len, size_t max_head, size_t max_body, http_request *r);

#endif
