/*
 * echo_client: a coroutine load generator for an echo server. N connections
 * on one io_context, each keeping `depth` messages of `size` bytes in
 * flight; it checks every echoed byte and prints messages per second and
 * round-trip latency percentiles.
 *
 *     echo_client [--host 127.0.0.1] [--port 8080] [--conns 64] [--size 64]
 *                 [--depth 1] [--duration 2]
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>

#include <coring/coring.h>

#include "args.h"

#define MAX_SIZE (1 << 20)
#define MAX_DEPTH 64
#define MAX_WINDOW (2 << 20) /* size x depth: what the client sends before it reads */

static struct {
    cor_sockaddr addr;
    size_t size;
    int depth;
    cor_stop_source stop;
    uint64_t *lat; /* round trips in ns, one per message */
    size_t nlat, cap;
    long errors;
} g;

static void record(uint64_t ns)
{
    if (g.nlat == g.cap) {
        size_t cap = g.cap ? g.cap * 2 : 1 << 16;
        uint64_t *p = realloc(g.lat, cap * sizeof *p);
        if (!p)
            return; /* keep running; the percentiles use what fits */
        g.lat = p;
        g.cap = cap;
    }
    g.lat[g.nlat++] = ns;
}

/* The byte a message carries: its sequence number, so reordering or loss shows. */
static void fill(char *buf, size_t n, uint64_t seq)
{
    memset(buf, (int)('a' + seq % 26), n);
}

struct client {
    COR_PROMISE(int);
    int fd, r;
    ssize_t n;
    uint64_t sent, recvd;
    int64_t start[MAX_DEPTH]; /* send time of each message in flight */
    char *out, *in;
};
COR_DEFINE_STATIC(client, (void), {})
{
    COR_BEGIN();
    self->out = malloc(g.size);
    self->in = malloc(g.size);
    self->fd = cor_socket(g.addr.u.sa.sa_family, SOCK_STREAM);
    if (!self->out || !self->in || self->fd < 0)
        goto fail;
    COR_AWAIT(self->r, COR_DEADLINE_AFTER(cor_connect(self->fd, &g.addr), 5000000000));
    if (self->r < 0)
        goto fail;
    for (self->sent = self->recvd = 0;;) {
        while (self->sent - self->recvd < (uint64_t)g.depth) {
            fill(self->out, g.size, self->sent);
            self->start[self->sent % MAX_DEPTH] = cor_clock_now();
            COR_AWAIT(self->n, cor_send_all(self->fd, self->out, g.size));
            if (self->n < 0)
                goto fail;
            self->sent++;
        }
        COR_AWAIT(self->n, cor_recv_exact(self->fd, self->in, g.size));
        if (self->n == -ECANCELED)
            break; /* the run is over */
        if (self->n != (ssize_t)g.size)
            goto fail;
        fill(self->out, g.size, self->recvd);
        if (memcmp(self->in, self->out, g.size)) {
            fprintf(stderr, "echo_client: wrong bytes echoed\n");
            goto fail;
        }
        record((uint64_t)(cor_clock_now() - self->start[self->recvd % MAX_DEPTH]));
        self->recvd++;
    }
    goto out;
fail:
    if (!cor_stop_requested(COR_THIS_STOP_TOKEN()))
        g.errors++;
out:
    if (self->fd >= 0)
        COR_AWAIT(self->r, cor_close(self->fd));
    free(self->out);
    free(self->in);
    COR_RETURN(0);
}

/* Ends the run after ns: every pending operation completes with -ECANCELED. */
struct stopper {
    COR_PROMISE(int);
    int64_t ns;
    int r;
};
COR_DEFINE_STATIC(stopper, (int64_t ns), { self->ns = ns; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(self->ns));
    cor_stop_source_request(&g.stop);
    COR_RETURN(0);
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

static double pct(double p)
{
    if (!g.nlat)
        return 0;
    size_t i = (size_t)(p * (double)g.nlat);
    return (double)g.lat[i < g.nlat ? i : g.nlat - 1] / 1000.0;
}

static void usage(void)
{
    fprintf(stderr, "usage: echo_client [--host H] [--port P] [--conns N] [--size B] "
                    "[--depth D] [--duration S]\n");
    exit(2);
}

int main(int argc, char **argv)
{
    const char *host = "127.0.0.1";
    int port = 8080, conns = 64;
    double duration = 2;
    g.size = 64;
    g.depth = 1;
    for (int i = 1; i < argc; i += 2) {
        if (i + 1 >= argc)
            usage();
        const char *v = argv[i + 1];
        long long x;
        if (!strcmp(argv[i], "--host"))
            host = v;
        else if (!strcmp(argv[i], "--port") && arg_int(v, 1, 65535, &x))
            port = (int)x;
        else if (!strcmp(argv[i], "--conns") && arg_int(v, 1, 100000, &x))
            conns = (int)x;
        else if (!strcmp(argv[i], "--size") && arg_int(v, 1, MAX_SIZE, &x))
            g.size = (size_t)x;
        else if (!strcmp(argv[i], "--depth") && arg_int(v, 1, MAX_DEPTH, &x))
            g.depth = (int)x;
        else if (!strcmp(argv[i], "--duration") && arg_real(v, 0.001, 86400, &duration))
            ;
        else
            usage();
    }
    /* The client sends its whole window before it reads: more than the sockets buffer would stall
     * both ends. */
    if (cor_addr_ip(&g.addr, host, port) || g.size * (size_t)g.depth > MAX_WINDOW)
        usage();
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    cor_io_context *io;
    int rc = cor_io_context_create(&io, NULL);
    if (rc) {
        fprintf(stderr, "echo_client: io_context: %s\n", cor_strerror(rc));
        return 1;
    }
    cor_stop_source_init(&g.stop);
    cor_launch_options opts = {.stop = cor_stop_source_token(&g.stop)};
    cor_executor ex = cor_io_context_executor(io);
    for (int i = 0; i < conns; i++)
        if (COR_RUN_ASYNC(ex, &opts, client()))
            g.errors++;
    cor_launch_options plain = {0};
    COR_RUN_ASYNC(ex, &plain, stopper((int64_t)(duration * 1e9)));
    int64_t t0 = cor_clock_now();
    cor_io_context_run(io);
    double secs = (double)(cor_clock_now() - t0) / 1e9;
    cor_io_context_destroy(io);
    if (g.nlat)
        qsort(g.lat, g.nlat, sizeof *g.lat, cmp_u64);
    printf("%d connections, %zu B, depth %d: %.0f msgs/s over %.2f s; latency us p50 %.1f "
           "p90 %.1f p99 %.1f p99.9 %.1f max %.1f; %ld failed connections\n",
           conns, g.size, g.depth, (double)g.nlat / secs, secs, pct(0.5), pct(0.9), pct(0.99),
           pct(0.999), g.nlat ? (double)g.lat[g.nlat - 1] / 1000.0 : 0.0, g.errors);
    free(g.lat);
    return g.errors ? 1 : 0;
}
