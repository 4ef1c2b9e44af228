/* The request parser of http_hello (see http_parse.h). Strict: CRLF line ends, no obsolete folding.
 */
#include <string.h>
#include <strings.h>

#include "http_parse.h"

/* RFC 9110 token characters. */
static bool tchar(unsigned char c)
{
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))
        return true;
    return c && strchr("!#$%&'*+-.^_`|~", c) != NULL;
}

static const char *find_crlf(const char *p, const char *end)
{
    for (; p + 1 < end; p++)
        if (p[0] == '\r' && p[1] == '\n')
            return p;
    return NULL;
}

static int request_line(const char *p, const char *eol, http_request *r)
{
    const char *m = p;
    while (p < eol && tchar((unsigned char)*p))
        p++;
    if (p == m || p == eol || *p != ' ')
        return HTTP_BAD;
    r->method = m;
    r->method_len = (size_t)(p - m);
    const char *t = ++p;
    while (p < eol && (unsigned char)*p > ' ' && (unsigned char)*p < 127)
        p++;
    if (p == t || p == eol || *p != ' ')
        return HTTP_BAD;
    r->target = t;
    r->target_len = (size_t)(p - t);
    p++;
    if (eol - p != 8 || memcmp(p, "HTTP/1.", 7) || (p[7] != '0' && p[7] != '1'))
        return HTTP_BAD;
    r->minor = p[7] - '0';
    return 0;
}

/* True if the comma-separated value v (n bytes) names token tok. */
static bool has_token(const char *v, size_t n, const char *tok)
{
    size_t tl = strlen(tok);
    const char *end = v + n;
    while (v < end) {
        while (v < end && (*v == ' ' || *v == '\t' || *v == ','))
            v++;
        const char *s = v;
        while (v < end && *v != ',')
            v++;
        const char *e = v;
        while (e > s && (e[-1] == ' ' || e[-1] == '\t'))
            e--;
        if ((size_t)(e - s) == tl && !strncasecmp(s, tok, tl))
            return true;
    }
    return false;
}

int http_parse(const char *buf, size_t len, size_t max_head, size_t max_body, http_request *r)
{
    const char *end = buf + (len < max_head ? len : max_head);
    const char *eol = find_crlf(buf, end);
    if (!eol)
        return len >= max_head ? HTTP_TOO_LARGE : 0;
    memset(r, 0, sizeof *r);
    if (request_line(buf, eol, r))
        return HTTP_BAD;
    bool have_len = false, conn_close = false, conn_keep = false;
    const char *p = eol + 2;
    for (;;) {
        eol = find_crlf(p, end);
        if (!eol)
            return len >= max_head ? HTTP_TOO_LARGE : 0;
        if (eol == p)
            break; /* the blank line ends the head */
        const char *name = p;
        while (p < eol && tchar((unsigned char)*p))
            p++;
        if (p == name || p == eol || *p != ':')
            return HTTP_BAD; /* also rejects whitespace before the colon */
        size_t nlen = (size_t)(p - name);
        p++;
        while (p < eol && (*p == ' ' || *p == '\t'))
            p++;
        const char *v = p, *ve = eol;
        while (ve > v && (ve[-1] == ' ' || ve[-1] == '\t'))
            ve--;
        for (const char *c = v; c < ve; c++)
            if (((unsigned char)*c < ' ' && *c != '\t') || *c == 127)
                return HTTP_BAD;
        size_t vlen = (size_t)(ve - v);
        if (nlen == 14 && !strncasecmp(name, "Content-Length", 14)) {
            if (vlen == 0 || vlen > 18)
                return HTTP_BAD;
            size_t n = 0;
            for (size_t i = 0; i < vlen; i++) {
                if (v[i] < '0' || v[i] > '9')
                    return HTTP_BAD;
                n = n * 10 + (size_t)(v[i] - '0');
            }
            if (have_len && n != r->body_len)
                return HTTP_BAD; /* conflicting lengths: a smuggling attempt */
            have_len = true;
            r->body_len = n;
        } else if (nlen == 17 && !strncasecmp(name, "Transfer-Encoding", 17)) {
            return HTTP_BAD; /* chunked bodies are not supported by this example */
        } else if (nlen == 10 && !strncasecmp(name, "Connection", 10)) {
            conn_close |= has_token(v, vlen, "close");
            conn_keep |= has_token(v, vlen, "keep-alive");
        }
        p = eol + 2;
    }
    r->head_len = (size_t)(eol + 2 - buf);
    if (r->body_len > max_body)
        return HTTP_BODY_LARGE;
    r->keep_alive = r->minor == 1 ? !conn_close : (conn_keep && !conn_close);
    size_t total = r->head_len + r->body_len;
    return len >= total ? (int)total : 0;
}
