/*
 * kv_server: a tiny in-memory key-value server speaking a line protocol on
 * 127.0.0.1:P, one shard per io_context.
 *
 *     SET key value\n   ->  OK\n
 *     GET key\n         ->  VALUE value\n  or  NOT_FOUND\n
 *     DEL key\n         ->  DELETED\n      or  NOT_FOUND\n
 *     anything else     ->  ERROR ...\n    (a line over 4 KiB: ERROR, then close)
 *
 * Keys are single words; a value is the rest of the line. Each shard's
 * table belongs to one io_context's thread and is touched only there: a
 * session, wherever its connection was accepted, hops to the key's shard
 * with COR_RUN(..., .ex = shard's executor) for the table operation and
 * comes back to its own thread to answer -- no lock anywhere. Lines are read
 * with the buffered reader (reader.h); the server loop is the library's.
 *
 *     kv_server [--port P] [--threads N] [--backend uring|epoll] [--idle-ms MS]
 */
#include "cli.h"
#include "linger.h"

enum { MAX_LINE = 4096, BUCKETS = 4096 };

/* ---- a shard: a chained hash table owned by one io_context's thread ---- */

struct entry {
    struct entry *next;
    size_t klen, vlen;
    char *val;
    char key[]; /* klen bytes */
};

struct shard {
    cor_executor ex;
    struct entry *bucket[BUCKETS];
};

static struct shard *shards;
static unsigned nshards;

static uint64_t hash(const char *s, size_t n)
{
    uint64_t h = 1469598103934665603ull; /* FNV-1a */
    for (size_t i = 0; i < n; i++)
        h = (h ^ (unsigned char)s[i]) * 1099511628211ull;
    return h;
}

/* The link that points at key's entry (or at the NULL ending its chain). */
static struct entry **find(struct shard *sh, const char *key, size_t klen)
{
    struct entry **p = &sh->bucket[hash(key, klen) / nshards % BUCKETS];
    while (*p && ((*p)->klen != klen || memcmp((*p)->key, key, klen)))
        p = &(*p)->next;
    return p;
}

enum op { OP_GET, OP_SET, OP_DEL };

/* One table operation, run on the shard's thread. Result: 1 found/stored, 0 not found, -ENOMEM. */
struct table_op {
    COR_PROMISE(int);
    struct shard *sh;
    enum op op;
    const char *key, *val; /* the session's line: it waits while this runs */
    size_t klen, vlen;
    char *out; /* GET: the value is copied here (MAX_LINE bytes) */
    size_t *out_len;
};
COR_DEFINE_STATIC(table_op,
                  (struct shard * sh, enum op op, const char *key, size_t klen, const char *val,
                   size_t vlen, char *out, size_t *out_len),
                  {
                      self->sh = sh;
                      self->op = op;
                      self->key = key;
                      self->klen = klen;
                      self->val = val;
                      self->vlen = vlen;
                      self->out = out;
                      self->out_len = out_len;
                  })
{
    COR_BEGIN();
    struct entry **p = find(self->sh, self->key, self->klen), *e = *p;
    switch (self->op) {
    case OP_GET:
        if (e) {
            memcpy(self->out, e->val, e->vlen);
            *self->out_len = e->vlen;
        }
        COR_RETURN(e != NULL);
    case OP_DEL:
        if (e) {
            *p = e->next;
            free(e->val);
            free(e);
        }
        COR_RETURN(e != NULL);
    case OP_SET: {
        char *v = malloc(self->vlen + 1);
        if (!v)
            COR_RETURN(-ENOMEM);
        memcpy(v, self->val, self->vlen);
        if (!e) {
            if (!(e = malloc(sizeof *e + self->klen))) {
                free(v);
                COR_RETURN(-ENOMEM);
            }
            *e = (struct entry){.next = NULL, .klen = self->klen};
            memcpy(e->key, self->key, self->klen);
            *p = e;
        } else {
            free(e->val);
        }
        e->val = v;
        e->vlen = self->vlen;
        COR_RETURN(1);
    }
    }
    COR_RETURN(-EINVAL);
}

/* ---- a connection ---- */

/* Splits "CMD key [value]" in place. Returns the op, or -1 for a malformed line. */
static int parse(char *line, size_t len, const char **key, size_t *klen, const char **val,
                 size_t *vlen)
{
    char *sp = memchr(line, ' ', len);
    if (!sp || sp == line)
        return -1;
    size_t clen = (size_t)(sp - line);
    *key = sp + 1;
    char *end = line + len, *sp2 = memchr(*key, ' ', (size_t)(end - *key));
    *klen = (size_t)((sp2 ? sp2 : end) - *key);
    *val = sp2 ? sp2 + 1 : end;
    *vlen = (size_t)(end - *val);
    if (*klen == 0)
        return -1;
    if (clen == 3 && !memcmp(line, "GET", 3) && !sp2)
        return OP_GET;
    if (clen == 3 && !memcmp(line, "DEL", 3) && !sp2)
        return OP_DEL;
    if (clen == 3 && !memcmp(line, "SET", 3) && sp2)
        return OP_SET;
    return -1;
}

struct session {
    COR_PROMISE(int);
    int fd, op, r;
    ssize_t n;
    cor_reader rd;
    char *line;
    size_t len, klen, vlen, got, reply_len;
    const char *key, *val, *reply;
    char in[MAX_LINE + 2];
    char out[MAX_LINE + 16];
};
COR_DEFINE_STATIC(session, (int fd), { self->fd = fd; })
{
    COR_BEGIN();
    cor_reader_init(&self->rd, self->fd, self->in, sizeof self->in);
    for (;;) {
        COR_AWAIT(self->n, cor_read_line(&self->rd, &self->line, &self->len));
        if (self->n == -EMSGSIZE) {
            static const char too_long[] = "ERROR line too long\n";
            COR_AWAIT(self->n, cor_send_all(self->fd, too_long, sizeof too_long - 1));
            /* Closing with the rest of the line unread would reset the connection, and the
             * answer with it: stop sending, read what is left (a second in all), then close. */
            COR_AWAIT(self->r, linger_close(self->fd, 1000000000));
            break;
        }
        if (self->n <= 0)
            break; /* closed, idle, stopped, or an error */
        self->op = parse(self->line, self->len, &self->key, &self->klen, &self->val, &self->vlen);
        if (self->op < 0) {
            self->reply = "ERROR usage: GET key | SET key value | DEL key\n";
        } else {
            /* The hop: run the table operation on the key's shard, come back here. */
            struct shard *sh = &shards[hash(self->key, self->klen) % nshards];
            COR_AWAIT(self->r, COR_RUN(table_op(sh, (enum op)self->op, self->key, self->klen,
                                                self->val, self->vlen, self->out + 6, &self->got),
                                       .ex = sh->ex));
            if (self->r < 0)
                self->reply = "ERROR out of memory\n";
            else if (self->op == OP_GET && self->r)
                self->reply = NULL; /* "VALUE " + the value, built in out */
            else
                self->reply = !self->r ? "NOT_FOUND\n" : self->op == OP_SET ? "OK\n" : "DELETED\n";
        }
        if (self->reply) {
            self->reply_len = strlen(self->reply);
        } else {
            memcpy(self->out, "VALUE ", 6);
            self->out[6 + self->got] = '\n';
            self->reply = self->out;
            self->reply_len = 7 + self->got;
        }
        COR_AWAIT(self->n, cor_send_all(self->fd, self->reply, self->reply_len));
        if (self->n < 0)
            break;
    }
    cor_reader_destroy(&self->rd);
    COR_RETURN(0); /* the server closes fd */
}

static cor_frame *new_session(void *user, int fd)
{
    (void)user;
    return COR_FRAME(session(fd));
}

/* One shard per io_context, each on its context's executor. */
static int make_shards(cor_io_group *g, void *user)
{
    (void)user;
    nshards = cor_io_group_size(g);
    shards = calloc(nshards, sizeof *shards);
    if (!shards)
        return -ENOMEM;
    for (unsigned i = 0; i < nshards; i++)
        shards[i].ex = cor_io_group_executor(g, i);
    return 0;
}

/* After the io_contexts are gone: every table, freed. */
static void free_shards(void)
{
    for (unsigned i = 0; shards && i < nshards; i++)
        for (unsigned b = 0; b < BUCKETS; b++)
            for (struct entry *e = shards[i].bucket[b], *next; e; e = next) {
                next = e->next;
                free(e->val);
                free(e);
            }
    free(shards);
}

int main(int argc, char **argv)
{
    server_args a;
    server_parse_args(argc, argv, &a, NULL, NULL);
    int rc = server_main("kv_server", &a, new_session, NULL, make_shards);
    free_shards();
    return rc;
}
