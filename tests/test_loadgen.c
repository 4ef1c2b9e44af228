/*
 * The benchmark tooling: the echo load generator (bench/loadgen.c) against an
 * in-process echo server that can misbehave, and the harness's latency
 * percentiles (bench/harness.c).
 */
#include <criterion/criterion.h>

#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "harness.h"
#include "loadgen.h"

enum mode { ECHO, CORRUPT, CLOSE, SILENT };

#define MAX_CLIENTS 16

/* A one-thread poll() echo server on 127.0.0.1 that behaves as told. */
typedef struct server {
    enum mode mode;
    int listener, port;
    atomic_bool stop;
    pthread_t thread;
} server;

static void *server_main(void *arg)
{
    server *s = arg;
    struct pollfd fds[1 + MAX_CLIENTS];
    int n = 1;
    char buf[65536];
    fds[0] = (struct pollfd){.fd = s->listener, .events = POLLIN};
    while (!atomic_load(&s->stop)) {
        if (poll(fds, (nfds_t)n, 10) <= 0)
            continue;
        if ((fds[0].revents & POLLIN) && n < 1 + MAX_CLIENTS) {
            int fd = accept(s->listener, NULL, NULL);
            if (fd >= 0)
                fds[n++] = (struct pollfd){.fd = fd, .events = POLLIN};
        }
        for (int i = 1; i < n; i++) {
            if (!(fds[i].revents & (POLLIN | POLLHUP | POLLERR)))
                continue;
            ssize_t got = read(fds[i].fd, buf, sizeof buf);
            if (got <= 0 || s->mode == CLOSE) {
                close(fds[i].fd);
                fds[i--] = fds[--n];
                continue;
            }
            if (s->mode == SILENT)
                continue;
            if (s->mode == CORRUPT)
                buf[0] ^= 0x5a;
            for (ssize_t off = 0; off < got;) {
                ssize_t w = send(fds[i].fd, buf + off, (size_t)(got - off), MSG_NOSIGNAL);
                if (w <= 0)
                    break;
                off += w;
            }
        }
    }
    for (int i = 1; i < n; i++)
        close(fds[i].fd);
    return NULL;
}

static void server_start(server *s, enum mode mode)
{
    s->mode = mode;
    atomic_init(&s->stop, false);
    s->listener = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    cr_assert_geq(s->listener, 0);
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    socklen_t len = sizeof sa;
    cr_assert_eq(bind(s->listener, (struct sockaddr *)&sa, sizeof sa), 0);
    cr_assert_eq(listen(s->listener, 64), 0);
    cr_assert_eq(getsockname(s->listener, (struct sockaddr *)&sa, &len), 0);
    s->port = ntohs(sa.sin_port);
    cr_assert_eq(pthread_create(&s->thread, NULL, server_main, s), 0);
}

static void server_stop(server *s)
{
    atomic_store(&s->stop, true);
    pthread_join(s->thread, NULL);
    close(s->listener);
}

static loadgen_config config(int port)
{
    loadgen_config c;
    loadgen_config_default(&c);
    c.port = port;
    c.warmup_s = 0.05;
    c.stall_ms = 2000;
    c.connect_timeout_ms = 500;
    return c;
}

Test(loadgen, counts_round_trips_and_orders_percentiles)
{
    server s;
    server_start(&s, ECHO);
    loadgen_config c = config(s.port);
    c.conns = 4;
    c.depth = 3;
    c.threads = 2;
    c.msg_size = 100; /* not a divisor of the pattern period: offsets wrap mid-message */
    c.messages = 3000;
    c.server_pid = getpid();
    loadgen_result r;
    cr_assert_eq(loadgen_run(&c, &r), 0);
    server_stop(&s);
    cr_assert_geq(r.messages, 3000);
    cr_assert_gt(r.msgs_per_s, 0);
    cr_assert_gt(r.elapsed_s, 0);
    cr_assert_leq(r.min_ns, r.p50_ns);
    cr_assert_leq(r.p50_ns, r.p90_ns);
    cr_assert_leq(r.p90_ns, r.p99_ns);
    cr_assert_leq(r.p99_ns, r.p999_ns);
    cr_assert_leq(r.p999_ns, r.max_ns);
    cr_assert_gt(r.min_ns, 0);
    cr_assert_geq(r.server_cpu_s, 0, "the server's CPU time is read from /proc");
    cr_assert_gt(r.cdf_n, 2);
    for (int i = 1; i < r.cdf_n; i++) {
        cr_assert_gt(r.cdf_p[i], r.cdf_p[i - 1]);
        cr_assert_geq(r.cdf_ns[i], r.cdf_ns[i - 1]);
    }
}

Test(loadgen, a_duration_run_stops_by_itself)
{
    server s;
    server_start(&s, ECHO);
    loadgen_config c = config(s.port);
    c.conns = 8;
    c.msg_size = 4096;
    c.duration_s = 0.2;
    loadgen_result r;
    uint64_t t0 = bench_now_ns();
    cr_assert_eq(loadgen_run(&c, &r), 0);
    double took = (double)(bench_now_ns() - t0) / 1e9;
    server_stop(&s);
    cr_assert_geq(r.elapsed_s, 0.2);
    cr_assert_lt(took, 5.0);
    cr_assert_gt(r.messages, 0);
    cr_assert_lt(r.server_cpu_s, 0, "no server pid given: no CPU figure");
}

Test(loadgen, an_altered_echo_is_an_error)
{
    server s;
    server_start(&s, CORRUPT);
    loadgen_config c = config(s.port);
    c.messages = 100;
    loadgen_result r;
    cr_assert_eq(loadgen_run(&c, &r), -EPROTO);
    server_stop(&s);
}

Test(loadgen, a_server_that_closes_is_an_error)
{
    server s;
    server_start(&s, CLOSE);
    loadgen_config c = config(s.port);
    c.messages = 100;
    loadgen_result r;
    int err = loadgen_run(&c, &r);
    server_stop(&s);
    cr_assert(err == -ECONNRESET || err == -EPIPE, "got %d", err);
}

Test(loadgen, a_silent_server_ends_the_run_after_the_stall_time)
{
    server s;
    server_start(&s, SILENT);
    loadgen_config c = config(s.port);
    c.messages = 100;
    c.stall_ms = 200;
    loadgen_result r;
    uint64_t t0 = bench_now_ns();
    cr_assert_eq(loadgen_run(&c, &r), -ETIMEDOUT);
    cr_assert_lt((double)(bench_now_ns() - t0) / 1e9, 5.0);
    server_stop(&s);
}

Test(loadgen, nobody_listening_is_refused_after_the_connect_timeout)
{
    server s;
    server_start(&s, ECHO);
    int port = s.port;
    server_stop(&s); /* the port is now closed */
    loadgen_config c = config(port);
    c.connect_timeout_ms = 100;
    loadgen_result r;
    cr_assert_eq(loadgen_run(&c, &r), -ECONNREFUSED);
}

Test(loadgen, rejects_bad_configs)
{
    loadgen_config c = config(7);
    loadgen_result r;
    cr_assert_eq(loadgen_run(NULL, &r), -EINVAL);
    cr_assert_eq(loadgen_run(&c, NULL), -EINVAL);
    loadgen_config bad = c;
    bad.port = 0;
    cr_assert_eq(loadgen_run(&bad, &r), -EINVAL);
    bad = c;
    bad.conns = 0;
    cr_assert_eq(loadgen_run(&bad, &r), -EINVAL);
    bad = c;
    bad.depth = 0;
    cr_assert_eq(loadgen_run(&bad, &r), -EINVAL);
    bad = c;
    bad.msg_size = 0;
    cr_assert_eq(loadgen_run(&bad, &r), -EINVAL);
    bad = c;
    bad.threads = LOADGEN_MAX_THREADS + 1;
    cr_assert_eq(loadgen_run(&bad, &r), -EINVAL);
    bad = c;
    bad.host = "localhost"; /* numeric addresses only */
    cr_assert_eq(loadgen_run(&bad, &r), -EINVAL);
}

Test(harness, percentiles_use_the_nearest_rank)
{
    uint64_t v[100];
    for (int i = 0; i < 100; i++)
        v[i] = (uint64_t)(100 - i); /* 100 .. 1, unsorted */
    bench_latency l = bench_latency_of(v, 100);
    cr_assert_eq(l.n, 100);
    cr_assert_eq(v[0], 1, "sorted in place");
    cr_assert_eq(l.min, 1);
    cr_assert_eq(l.max, 100);
    cr_assert_eq(l.p50, 50);
    cr_assert_eq(l.p90, 90);
    cr_assert_eq(l.p99, 99);
    cr_assert_eq(l.p999, 100);
    cr_assert(l.mean > 50.499 && l.mean < 50.501);
    cr_assert_eq(bench_percentile(v, 100, 0), 1);
    cr_assert_eq(bench_percentile(v, 100, 1), 100);
    cr_assert_eq(bench_percentile(v, 100, 0.505), 51);
}

Test(harness, an_empty_sample_set_is_all_zero)
{
    bench_latency l = bench_latency_of(NULL, 0);
    cr_assert_eq(l.n, 0);
    cr_assert_eq(l.p50, 0);
    cr_assert_eq(l.max, 0);
    cr_assert_eq(bench_percentile(NULL, 0, 0.5), 0);
}

/* A measured function for bench_measure_paired: logs its calls, spins `us` per iteration. */
typedef struct spinner {
    char tag;
    long us;
    char *log; /* one tag per call, shared by both spinners */
    long *iters_seen;
} spinner;

static void spin_for(void *arg, long iters)
{
    spinner *s = arg;
    size_t n = strlen(s->log);
    s->log[n] = s->tag;
    s->log[n + 1] = '\0';
    s->iters_seen[n] = iters;
    uint64_t until = bench_now_ns() + (uint64_t)(iters * s->us) * 1000u;
    while (bench_now_ns() < until) {
    }
}

Test(harness, a_paired_measurement_takes_turns_and_reports_the_median_ratio)
{
    char log[32] = "";
    long seen[32];
    spinner base = {'b', 100, log, seen}, three = {'t', 300, log, seen};
    bench_result b, t;
    bench_measure_paired("base", spin_for, &base, "three", spin_for, &three, 10, &b, &t);
    /* Warm-up of each (a tenth of the iterations), then five repetitions in alternating order. */
    cr_assert_str_eq(log, "btbttbbttbbt");
    cr_assert_eq(seen[0], 1);
    cr_assert_eq(seen[1], 1);
    for (int i = 2; i < 12; i++)
        cr_assert_eq(seen[i], 10);
    cr_assert_str_eq(b.name, "base");
    cr_assert_str_eq(t.name, "three");
    cr_assert_eq(b.paired_ratio, 0);
    cr_assert(b.ns_min <= b.ns_median && b.ns_median <= b.ns_max);
    cr_assert(t.ns_min <= t.ns_median && t.ns_median <= t.ns_max);
    cr_assert_geq(b.ns_min, 100e3, "each iteration spins 100 us: %f", b.ns_min);
    cr_assert_geq(t.ns_min, 300e3, "%f", t.ns_min);
    /* The median of the repetitions' ratios lies between the extreme ratios of their times
     * (about 3 on a quiet machine; a busy one stretches any spin, so no figure is asserted). */
    double lo = t.ns_min / b.ns_max, hi = t.ns_max / b.ns_min;
    cr_assert(t.paired_ratio >= lo * 0.999 && t.paired_ratio <= hi * 1.001, "%f not in %f-%f",
              t.paired_ratio, lo, hi);
    cr_assert_eq(b.allocs_per_op, 0);
    cr_assert_eq(t.allocs_per_op, 0);
}
