#include "loadgen.h"

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

/*
 * Every byte on every connection is PATTERN_PERIOD-periodic in its stream
 * offset, so a received chunk is checked with one memcmp against the pattern
 * at the same offset: an echo that drops, reorders or alters bytes is caught.
 */
#define PATTERN_PERIOD 251
#define IO_CHUNK 65536

static unsigned char pattern[PATTERN_PERIOD + IO_CHUNK];

enum { PHASE_WARMUP, PHASE_MEASURE, PHASE_STOP };

/*
 * Latency histogram, log-linear: values below 2 * SUB are exact; above, each
 * power of two is split into SUB buckets (under 1% relative error).
 */
#define SUB_BITS 7
#define SUB (1u << SUB_BITS)
#define HIST_BUCKETS (2 * SUB + 56 * SUB)

typedef struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t n, min, max;
    double sum;
} hist;

static unsigned hist_index(uint64_t v)
{
    if (v < 2 * SUB)
        return (unsigned)v;
    unsigned e = (unsigned)(63 - __builtin_clzll(v)) - SUB_BITS; /* v >> e in [SUB, 2 SUB) */
    unsigned idx = 2 * SUB + (e - 1) * SUB + (unsigned)((v >> e) - SUB);
    return idx < HIST_BUCKETS ? idx : HIST_BUCKETS - 1;
}

/* The midpoint of bucket idx. */
static double hist_value(unsigned idx)
{
    if (idx < 2 * SUB)
        return idx;
    unsigned e = (idx - 2 * SUB) / SUB + 1;
    uint64_t m = (idx - 2 * SUB) % SUB + SUB;
    return (double)(m << e) + (double)((1ull << e) - 1) / 2;
}

static void hist_add(hist *h, uint64_t v)
{
    h->count[hist_index(v)]++;
    if (h->n == 0 || v < h->min)
        h->min = v;
    if (v > h->max)
        h->max = v;
    h->n++;
    h->sum += (double)v;
}

static void hist_merge(hist *into, const hist *h)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->count[i] += h->count[i];
    if (h->n && (into->n == 0 || h->min < into->min))
        into->min = h->min;
    if (h->max > into->max)
        into->max = h->max;
    into->n += h->n;
    into->sum += h->sum;
}

/* Nearest rank, clamped to the exact extremes. */
static double hist_quantile(const hist *h, double p)
{
    if (h->n == 0)
        return 0;
    if (p <= 0)
        return (double)h->min;
    if (p >= 1)
        return (double)h->max;
    double rank = p * (double)h->n;
    uint64_t want = (uint64_t)rank + ((double)(uint64_t)rank < rank);
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= want) {
            double v = hist_value(i);
            return v < (double)h->min ? (double)h->min : v > (double)h->max ? (double)h->max : v;
        }
    }
    return (double)h->max;
}

typedef struct conn {
    int fd;
    bool want_out;     /* EPOLLOUT armed */
    uint64_t queued;   /* stream bytes issued (whole messages) */
    uint64_t sent;     /* stream bytes written */
    uint64_t received; /* stream bytes read back */
    uint64_t done;     /* messages whose echo fully arrived */
    unsigned head, inflight;
    uint64_t *ts; /* issue time of each in-flight message (ring) */
} conn;

typedef struct worker {
    const loadgen_config *c;
    pthread_t thread;
    int index;
    conn *conns;
    int nconns;
    int epfd;
    int error;
    _Atomic long measured; /* round trips completed while measuring */
    _Atomic int ready;     /* connections with a round trip done */
    hist h;
} worker;

static struct {
    _Atomic int phase;
    _Atomic int error;
} run;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ns(uint64_t ns)
{
    struct timespec ts = {(time_t)(ns / 1000000000u), (long)(ns % 1000000000u)};
    while (nanosleep(&ts, &ts) && errno == EINTR)
        ;
}

/* Records the first error and stops every worker. */
static void fail(int err)
{
    int zero = 0;
    atomic_compare_exchange_strong(&run.error, &zero, err);
    atomic_store(&run.phase, PHASE_STOP);
}

static void issue(const loadgen_config *c, conn *k, uint64_t now)
{
    k->ts[(k->head + k->inflight) % (unsigned)c->depth] = now;
    k->inflight++;
    k->queued += c->msg_size;
}

/* Writes what is queued; arms EPOLLOUT if the socket is full. */
static int flush(worker *w, conn *k)
{
    while (k->sent < k->queued) {
        uint64_t left = k->queued - k->sent;
        size_t len = left < IO_CHUNK ? (size_t)left : IO_CHUNK;
        ssize_t n = send(k->fd, pattern + k->sent % PATTERN_PERIOD, len, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            if (errno != EAGAIN)
                return -errno;
            break;
        }
        k->sent += (uint64_t)n;
    }
    bool want = k->sent < k->queued;
    if (want != k->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = k};
        if (epoll_ctl(w->epfd, EPOLL_CTL_MOD, k->fd, &ev))
            return -errno;
        k->want_out = want;
    }
    return 0;
}

/* Reads what arrived, checks it, completes the messages it finishes and issues new ones. */
static int receive(worker *w, conn *k, unsigned char *buf, uint64_t *last_rx)
{
    const loadgen_config *c = w->c;
    for (;;) {
        ssize_t n = recv(k->fd, buf, IO_CHUNK, 0);
        if (n == 0)
            return -ECONNRESET;
        if (n < 0) {
            if (errno == EINTR)
                continue;
            return errno == EAGAIN ? 0 : -errno;
        }
        uint64_t now = now_ns();
        *last_rx = now;
        if (k->received + (uint64_t)n > k->sent ||
            memcmp(buf, pattern + k->received % PATTERN_PERIOD, (size_t)n))
            return -EPROTO;
        k->received += (uint64_t)n;
        if (k->done == 0 && k->received >= c->msg_size)
            atomic_fetch_add_explicit(&w->ready, 1, memory_order_relaxed);
        int phase = atomic_load_explicit(&run.phase, memory_order_relaxed);
        while (k->inflight && k->received >= (k->done + 1) * c->msg_size) {
            uint64_t lat = now - k->ts[k->head];
            k->head = (k->head + 1) % (unsigned)c->depth;
            k->inflight--;
            k->done++;
            if (phase == PHASE_MEASURE) {
                hist_add(&w->h, lat);
                atomic_fetch_add_explicit(&w->measured, 1, memory_order_relaxed);
            }
            if (phase != PHASE_STOP)
                issue(c, k, now);
        }
        if ((size_t)n < IO_CHUNK)
            return 0; /* drained: the next read would most likely be EAGAIN */
    }
}

static void *worker_main(void *arg)
{
    worker *w = arg;
    const loadgen_config *c = w->c;
    if (c->ncpus > 0) {
        cpu_set_t set;
        CPU_ZERO(&set);
        CPU_SET(c->cpus[w->index % c->ncpus], &set);
        pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    }
    unsigned char *buf = malloc(IO_CHUNK);
    struct epoll_event evs[256];
    int err = buf ? 0 : -ENOMEM;
    uint64_t now = now_ns(), last_rx = now;
    for (int i = 0; i < w->nconns && !err; i++) {
        conn *k = &w->conns[i];
        for (int d = 0; d < c->depth; d++)
            issue(c, k, now);
        err = flush(w, k);
    }
    while (!err && atomic_load_explicit(&run.phase, memory_order_relaxed) != PHASE_STOP) {
        int n = epoll_wait(w->epfd, evs, 256, 5);
        if (n < 0) {
            if (errno == EINTR)
                continue;
            err = -errno;
            break;
        }
        for (int i = 0; i < n && !err; i++) {
            conn *k = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                err = receive(w, k, buf, &last_rx);
            if (!err)
                err = flush(w, k);
        }
        if (n == 0 && now_ns() - last_rx > (uint64_t)c->stall_ms * 1000000u)
            err = -ETIMEDOUT;
    }
    free(buf);
    if (err)
        fail(err);
    return NULL;
}

void loadgen_config_default(loadgen_config *c)
{
    memset(c, 0, sizeof *c);
    c->host = "127.0.0.1";
    c->conns = 1;
    c->msg_size = 64;
    c->depth = 1;
    c->threads = 1;
    c->duration_s = 2;
    c->warmup_s = 0.3;
    c->stall_ms = 5000;
    c->connect_timeout_ms = 5000;
}

/* Connects one socket, retrying a refused connect until the deadline; the server may be starting.
 */
static int connect_one(const loadgen_config *c, const struct sockaddr_storage *sa, socklen_t len,
                       uint64_t deadline)
{
    for (;;) {
        int fd = socket(sa->ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0)
            return -errno;
        if (connect(fd, (const struct sockaddr *)sa, len) == 0) {
            int one = 1;
            setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
            fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
            return fd;
        }
        int err = -errno;
        close(fd);
        if (err != -ECONNREFUSED || now_ns() > deadline)
            return err;
        sleep_ns(10 * 1000000u);
    }
}

static int parse_addr(const loadgen_config *c, struct sockaddr_storage *sa, socklen_t *len)
{
    memset(sa, 0, sizeof *sa);
    struct sockaddr_in *v4 = (struct sockaddr_in *)sa;
    struct sockaddr_in6 *v6 = (struct sockaddr_in6 *)sa;
    if (inet_pton(AF_INET, c->host, &v4->sin_addr) == 1) {
        v4->sin_family = AF_INET;
        v4->sin_port = htons((uint16_t)c->port);
        *len = sizeof *v4;
        return 0;
    }
    if (inet_pton(AF_INET6, c->host, &v6->sin6_addr) == 1) {
        v6->sin6_family = AF_INET6;
        v6->sin6_port = htons((uint16_t)c->port);
        *len = sizeof *v6;
        return 0;
    }
    return -EINVAL;
}

/* user + system time of process pid in seconds, or -1. */
static double process_cpu_s(pid_t pid)
{
    char path[64], line[1024];
    snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    size_t n = fread(line, 1, sizeof line - 1, f);
    fclose(f);
    line[n] = 0;
    char *p = strrchr(line, ')'); /* the command name may contain spaces */
    unsigned long utime, stime;
    /* After ")": state ppid pgrp session tty tpgid flags minflt cminflt majflt cmajflt utime stime
     */
    if (!p ||
        sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

static const double cdf_quantiles[] = {
    0.0,  0.02, 0.04, 0.06,  0.08,  0.10,  0.15,  0.20,  0.25,   0.30,   0.35,  0.40, 0.45,
    0.50, 0.55, 0.60, 0.65,  0.70,  0.75,  0.80,  0.85,  0.875,  0.90,   0.925, 0.95, 0.96,
    0.97, 0.98, 0.99, 0.993, 0.995, 0.997, 0.998, 0.999, 0.9995, 0.9999, 1.0,
};

int loadgen_run(const loadgen_config *c, loadgen_result *r)
{
    if (!c || !r || c->port <= 0 || c->port > 65535 || c->conns < 1 || c->msg_size < 1 ||
        c->msg_size > (1u << 24) || c->depth < 1 || c->threads < 1 ||
        c->threads > LOADGEN_MAX_THREADS || c->ncpus < 0 || c->ncpus > LOADGEN_MAX_THREADS ||
        (c->messages <= 0 && c->duration_s <= 0) || c->warmup_s < 0 || c->stall_ms < 1)
        return -EINVAL;
    struct sockaddr_storage sa;
    socklen_t salen;
    if (parse_addr(c, &sa, &salen))
        return -EINVAL;
    memset(r, 0, sizeof *r);
    for (size_t i = 0; i < sizeof pattern; i++)
        pattern[i] = (unsigned char)(i % PATTERN_PERIOD);

    /* A thousand connections need more descriptors than the usual soft limit of 1024. */
    struct rlimit rl;
    if (!getrlimit(RLIMIT_NOFILE, &rl) && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }

    int nthreads = c->threads < c->conns ? c->threads : c->conns;
    worker *ws = calloc((size_t)nthreads, sizeof *ws);
    conn *cs = calloc((size_t)c->conns, sizeof *cs);
    uint64_t *ts = calloc((size_t)c->conns * (size_t)c->depth, sizeof *ts);
    int err = ws && cs && ts ? 0 : -ENOMEM;
    int started = 0, connected = 0;
    atomic_store(&run.phase, PHASE_WARMUP);
    atomic_store(&run.error, 0);
    for (int i = 0; i < nthreads && !err; i++) {
        ws[i].epfd = -1;
        ws[i].c = c;
        ws[i].index = i;
    }

    uint64_t deadline = now_ns() + (uint64_t)c->connect_timeout_ms * 1000000u;
    for (; connected < c->conns && !err; connected++) {
        int fd = connect_one(c, &sa, salen, deadline);
        if (fd < 0)
            err = fd;
        else {
            cs[connected].fd = fd;
            cs[connected].ts = ts + (size_t)connected * (size_t)c->depth;
        }
    }

    /* Connections are dealt out in contiguous runs, one run per thread. */
    for (int i = 0; i < nthreads && !err; i++) {
        worker *w = &ws[i];
        int lo = (int)((long)c->conns * i / nthreads),
            hi = (int)((long)c->conns * (i + 1) / nthreads);
        w->conns = cs + lo;
        w->nconns = hi - lo;
        w->epfd = epoll_create1(EPOLL_CLOEXEC);
        if (w->epfd < 0) {
            err = -errno;
            break;
        }
        for (int j = 0; j < w->nconns && !err; j++) {
            struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &w->conns[j]};
            if (epoll_ctl(w->epfd, EPOLL_CTL_ADD, w->conns[j].fd, &ev))
                err = -errno;
        }
    }
    for (; started < nthreads && !err; started++)
        if ((err = -pthread_create(&ws[started].thread, NULL, worker_main, &ws[started])))
            break;

    if (!err) {
        uint64_t tick = 2 * 1000000u;
        /*
         * The warm-up starts once every connection has completed a round trip,
         * so a server still accepting a thousand connections does not show up
         * as the measured latency of their first messages.
         */
        uint64_t t = now_ns(), ready_end = t + (uint64_t)c->stall_ms * 1000000u;
        for (;;) {
            int ready = 0;
            for (int i = 0; i < nthreads; i++)
                ready += atomic_load_explicit(&ws[i].ready, memory_order_relaxed);
            if (ready == c->conns || atomic_load(&run.phase) == PHASE_STOP)
                break;
            if (now_ns() > ready_end) {
                fail(-ETIMEDOUT);
                break;
            }
            sleep_ns(tick);
        }
        uint64_t warm_end = now_ns() + (uint64_t)(c->warmup_s * 1e9);
        while (now_ns() < warm_end && atomic_load(&run.phase) != PHASE_STOP)
            sleep_ns(tick);
        double cpu0 = c->server_pid > 0 ? process_cpu_s(c->server_pid) : -1;
        uint64_t t0 = now_ns();
        int expected = PHASE_WARMUP;
        atomic_compare_exchange_strong(&run.phase, &expected, PHASE_MEASURE);
        uint64_t end = t0 + (uint64_t)(c->duration_s * 1e9);
        for (;;) {
            sleep_ns(tick);
            if (atomic_load(&run.phase) == PHASE_STOP)
                break;
            if (c->messages > 0) {
                long sum = 0;
                for (int i = 0; i < nthreads; i++)
                    sum += atomic_load_explicit(&ws[i].measured, memory_order_relaxed);
                if (sum >= c->messages)
                    break;
            } else if (now_ns() >= end) {
                break;
            }
        }
        uint64_t t1 = now_ns();
        atomic_store(&run.phase, PHASE_STOP);
        double cpu1 = c->server_pid > 0 ? process_cpu_s(c->server_pid) : -1;
        r->elapsed_s = (double)(t1 - t0) / 1e9;
        r->server_cpu_s = cpu0 >= 0 && cpu1 >= 0 ? cpu1 - cpu0 : -1;
    }
    atomic_store(&run.phase, PHASE_STOP);
    for (int i = 0; i < started; i++)
        pthread_join(ws[i].thread, NULL);
    if (!err)
        err = atomic_load(&run.error);

    if (!err) {
        hist *all = calloc(1, sizeof *all);
        if (!all)
            err = -ENOMEM;
        else {
            for (int i = 0; i < nthreads; i++)
                hist_merge(all, &ws[i].h);
            r->messages = (long)all->n;
            r->msgs_per_s = r->elapsed_s > 0 ? (double)all->n / r->elapsed_s : 0;
            r->min_ns = hist_quantile(all, 0);
            r->mean_ns = all->n ? all->sum / (double)all->n : 0;
            r->p50_ns = hist_quantile(all, 0.50);
            r->p90_ns = hist_quantile(all, 0.90);
            r->p99_ns = hist_quantile(all, 0.99);
            r->p999_ns = hist_quantile(all, 0.999);
            r->max_ns = hist_quantile(all, 1);
            r->cdf_n = (int)(sizeof cdf_quantiles / sizeof cdf_quantiles[0]);
            for (int i = 0; i < r->cdf_n; i++) {
                r->cdf_p[i] = cdf_quantiles[i];
                r->cdf_ns[i] = hist_quantile(all, cdf_quantiles[i]);
            }
            r->server_cpu_ns_per_msg =
                r->server_cpu_s >= 0 && all->n ? r->server_cpu_s * 1e9 / (double)all->n : -1;
            r->server_cpu_util =
                r->server_cpu_s >= 0 && r->elapsed_s > 0 ? r->server_cpu_s / r->elapsed_s : -1;
            free(all);
        }
    }

    for (int i = 0; i < nthreads && ws; i++)
        if (ws[i].epfd >= 0)
            close(ws[i].epfd);
    for (int i = 0; i < connected && cs; i++)
        close(cs[i].fd);
    free(ts);
    free(cs);
    free(ws);
    return err;
}

void loadgen_print_json(FILE *out, const char *name, const char *engine, const loadgen_config *c,
                        const loadgen_result *r)
{
    fprintf(out,
            "{\"bench\": \"%s\", \"engine\": \"%s\", \"conns\": %d, \"msg_size\": %zu, "
            "\"depth\": %d, \"client_threads\": %d, \"value\": %.1f, \"unit\": \"msgs/s\", "
            "\"msgs_per_s\": %.1f, \"messages\": %ld, \"elapsed_s\": %.3f, \"min_ns\": %.0f, "
            "\"mean_ns\": %.0f, \"p50_ns\": %.0f, \"p90_ns\": %.0f, \"p99_ns\": %.0f, "
            "\"p999_ns\": %.0f, \"max_ns\": %.0f",
            name, engine, c->conns, c->msg_size, c->depth, c->threads, r->msgs_per_s, r->msgs_per_s,
            r->messages, r->elapsed_s, r->min_ns, r->mean_ns, r->p50_ns, r->p90_ns, r->p99_ns,
            r->p999_ns, r->max_ns);
    if (r->server_cpu_s >= 0)
        fprintf(out, ", \"server_cpu_ns_per_msg\": %.1f, \"server_cpu_util\": %.3f",
                r->server_cpu_ns_per_msg, r->server_cpu_util);
    fprintf(out, "}");
}

void loadgen_write_cdf(FILE *out, const loadgen_result *r)
{
    for (int i = 0; i < r->cdf_n; i++)
        fprintf(out, "%.6f %.3f\n", r->cdf_p[i], r->cdf_ns[i] / 1000.0);
}
