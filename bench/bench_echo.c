/*
 * bench_echo: coring's echo server in-process on one core, driven by the
 * echo load generator (bench/loadgen.h) pinned to the other core. For 1, 64
 * and 1,000 connections at 64 B and 4 KiB it reports messages per second,
 * p50, p99 and p99.9 round trip, and the server thread's CPU time per message, on
 * io_uring with the epoll backend measured in the same run as baseline
 * (each figure's name carries its backend).
 *
 * Batching: the server context's metrics (metrics.h) over the whole load
 * run give SQEs per io_uring_enter (on epoll: syscalls per epoll_wait), SQEs
 * and enters per message (the run's messages estimated from the measured
 * window's rate), the CQ overflows seen and the multishot receives stopped
 * for lack of ring buffers.
 *
 * Server CPU per message: the server thread's CPU clock
 * (pthread_getcpuclockid) over the whole load run (connect, warm-up,
 * measurement) scaled to the measured window, divided by the window's
 * messages; it assumes the server is as busy in the warm-up as in the window.
 */
#include <errno.h>
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <coring/coring.h>

#include "echo_session.h"
#include "harness.h"
#include "loadgen.h"

struct server {
    int backend, cpu, port, err, result;
    int64_t idle_ns; /* the sessions' idle timeout (0: none) */
    int lfd;
    cor_io_context *io;
    cor_stop_source stop;
    pthread_t thread;
    clockid_t clock;
    pthread_barrier_t ready;
};

static void served(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

/* The server thread: examples/echo_server's session under the library's server loop. */
static void *server_main(void *arg)
{
    struct server *s = arg;
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(s->cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
    cor_io_context_options o = {.backend = s->backend};
    s->err = cor_io_context_create(&s->io, &o);
    cor_sockaddr a;
    cor_addr_ip(&a, "127.0.0.1", 0);
    if (!s->err) {
        s->lfd = cor_listen(&a, 4096, 0);
        if (s->lfd < 0)
            s->err = s->lfd;
    }
    if (!s->err) {
        cor_sockaddr b;
        cor_local_addr(s->lfd, &b);
        s->port = cor_addr_port(&b);
        cor_stop_source_init(&s->stop);
        cor_serve_options so = {.idle_timeout = s->idle_ns};
        cor_launch_options lo = {.stop = cor_stop_source_token(&s->stop), .on_result = served,
                                 .user = &s->result};
        s->err = COR_RUN_ASYNC(cor_io_context_executor(s->io), &lo,
                               cor_serve(s->lfd, echo_new_session, NULL, &so));
    }
    pthread_barrier_wait(&s->ready);
    if (s->err)
        return NULL;
    /* Runs until the server's stop: it closes the listener, the sessions end, run returns. */
    cor_io_context_run(s->io);
    cor_io_context_destroy(s->io);
    return NULL;
}

static double thread_cpu_s(clockid_t c)
{
    struct timespec ts;
    clock_gettime(c, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

/* What the server's metrics say about a load run. */
struct batching {
    double sqes_per_enter;
    double sqes_per_msg, enters_per_msg;
    double cq_overflows, buffer_waits;
};

/* From the counters before and after a run of msgs messages. */
static struct batching batching_of(const cor_io_metrics *m0, const cor_io_metrics *m1, long msgs)
{
    double enters = (double)(m1->enters - m0->enters), sqes = (double)(m1->sqes - m0->sqes);
    double n = msgs > 0 ? (double)msgs : 1;
    return (struct batching){.sqes_per_enter = enters > 0 ? sqes / enters : 0,
                             .sqes_per_msg = sqes / n,
                             .enters_per_msg = enters / n,
                             .cq_overflows = (double)(m1->cq_overflows - m0->cq_overflows),
                             .buffer_waits = (double)(m1->buffer_waits - m0->buffer_waits)};
}

/* One load run against a fresh in-process server. Returns 0 and fills r, *cpu_ns_per_msg, *bt. */
static int measure(int backend, int64_t idle_ns, int conns, size_t size, int server_cpu,
                   int client_cpu, loadgen_result *r, double *cpu_ns_per_msg, struct batching *bt)
{
    struct server s = {.backend = backend, .idle_ns = idle_ns, .cpu = server_cpu, .lfd = -1};
    pthread_barrier_init(&s.ready, NULL, 2);
    if (pthread_create(&s.thread, NULL, server_main, &s))
        return -EAGAIN;
    pthread_barrier_wait(&s.ready);
    pthread_barrier_destroy(&s.ready);
    if (s.err) {
        pthread_join(s.thread, NULL);
        if (s.io)
            cor_io_context_destroy(s.io);
        return s.err;
    }
    pthread_getcpuclockid(s.thread, &s.clock);
    loadgen_config c;
    loadgen_config_default(&c);
    c.port = s.port;
    c.conns = conns;
    c.msg_size = size;
    c.duration_s = bench_quick() ? 0.3 : 1.0;
    /* Many connections started at once take about a second to settle (scripts/bench). */
    c.warmup_s = bench_quick() ? 0.1 : conns >= 64 ? 1.5 : 0.3;
    c.cpus[0] = client_cpu;
    c.ncpus = 1;
    struct timespec w0, w1;
    clock_gettime(CLOCK_MONOTONIC, &w0);
    double cpu0 = thread_cpu_s(s.clock);
    cor_io_metrics m0, m1;
    cor_io_context_metrics(s.io, &m0);
    int rc = loadgen_run(&c, r);
    cor_io_context_metrics(s.io, &m1);
    double cpu1 = thread_cpu_s(s.clock);
    clock_gettime(CLOCK_MONOTONIC, &w1);
    double wall = (double)(w1.tv_sec - w0.tv_sec) + (double)(w1.tv_nsec - w0.tv_nsec) / 1e9;
    /* The counters cover the whole run: per message, the messages of the whole run (est.). */
    long all = r->elapsed_s > 0 ? (long)((double)r->messages * wall / r->elapsed_s) : 0;
    *bt = batching_of(&m0, &m1, all);
    cor_stop_source_request(&s.stop);
    pthread_join(s.thread, NULL);
    if (rc)
        return rc;
    *cpu_ns_per_msg = r->messages > 0 && wall > 0
                          ? (cpu1 - cpu0) * (r->elapsed_s / wall) * 1e9 / (double)r->messages
                          : -1;
    return 0;
}

/*
 * The same io_uring run with a 30 s idle timeout on every session (re-armed
 * by every operation): its server CPU per message against the run without.
 */
static void idle_row(const char *base, int server_cpu, int client_cpu, double cpu_plain)
{
    loadgen_result r;
    double cpu;
    struct batching bt;
    int rc = measure(COR_IO_BACKEND_URING, 30 * 1000000000LL, 1000, 64, server_cpu, client_cpu,
                     &r, &cpu, &bt);
    if (rc) {
        fprintf(stderr, "bench_echo: %s with an idle timeout: %s\n", base, cor_strerror(rc));
        return;
    }
    char n[128], bn[128];
    snprintf(n, sizeof n, "%s.io_uring_idle30s.server_cpu", base);
    snprintf(bn, sizeof bn, "%s.io_uring.server_cpu", base);
    bench_report_value(n, "ns/msg", cpu, bn, cpu_plain);
    snprintf(n, sizeof n, "%s.io_uring_idle30s.msgs_per_s", base);
    bench_report_value(n, "msgs/s", r.msgs_per_s, NULL, 0);
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
    }
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    int server_cpu = 0, client_cpu = ncpu > 1 ? 1 : 0;
    if (ncpu < 2)
        fprintf(stderr, "bench_echo: one CPU: server and load generator share it\n");
    static const int conns[] = {1, 64, 1000};
    static const size_t sizes[] = {64, 4096};
    static const int backends[] = {COR_IO_BACKEND_EPOLL, COR_IO_BACKEND_URING};
    static const char *const names[] = {"epoll", "io_uring"};
    for (size_t si = 0; si < 2; si++) {
        for (size_t ci = 0; ci < 3; ci++) {
            char base[64];
            snprintf(base, sizeof base, "echo.c%d.s%zu", conns[ci], sizes[si]);
            if (!bench_enabled(base))
                continue;
            loadgen_result res[2];
            double cpu[2];
            struct batching bt[2];
            int ok[2];
            for (int b = 0; b < 2; b++) {
                int rc = measure(backends[b], 0, conns[ci], sizes[si], server_cpu, client_cpu,
                                 &res[b], &cpu[b], &bt[b]);
                ok[b] = rc == 0;
                if (rc)
                    fprintf(stderr, "bench_echo: %s on %s: %s\n", base, names[b], cor_strerror(rc));
            }
            /* io_uring against the epoll baseline of the same run. */
            for (int b = 1; b >= 0; b--) {
                if (!ok[b])
                    continue;
                bool with_base = b == 1 && ok[0];
                char n[128], bn[128];
                struct {
                    const char *what, *unit;
                    double v[2];
                } fig[] = {
                    {"msgs_per_s", "msgs/s", {res[0].msgs_per_s, res[1].msgs_per_s}},
                    {"p50", "ns/round_trip", {res[0].p50_ns, res[1].p50_ns}},
                    {"p99", "ns/round_trip", {res[0].p99_ns, res[1].p99_ns}},
                    {"p999", "ns/round_trip", {res[0].p999_ns, res[1].p999_ns}},
                    {"server_cpu", "ns/msg", {cpu[0], cpu[1]}},
                    /* Not ratios to epoll: there they count syscalls per epoll_wait. */
                    {"sqes_per_enter", "SQEs/enter", {bt[0].sqes_per_enter, bt[1].sqes_per_enter}},
                    {"sqes_per_msg", "SQEs/msg", {bt[0].sqes_per_msg, bt[1].sqes_per_msg}},
                    {"enters_per_msg", "enters/msg", {bt[0].enters_per_msg, bt[1].enters_per_msg}},
                    {"cq_overflows", "overflows", {bt[0].cq_overflows, bt[1].cq_overflows}},
                    {"buffer_waits", "stops", {bt[0].buffer_waits, bt[1].buffer_waits}},
                };
                if (b == 0 && ok[1])
                    continue; /* epoll is printed as io_uring's baseline */
                for (size_t k = 0; k < sizeof fig / sizeof fig[0]; k++) {
                    bool base_k = with_base && k < 5;
                    snprintf(n, sizeof n, "%s.%s.%s", base, names[b], fig[k].what);
                    snprintf(bn, sizeof bn, "%s.%s.%s", base, names[0], fig[k].what);
                    bench_report_value(n, fig[k].unit, fig[k].v[b], base_k ? bn : NULL,
                                       base_k ? fig[k].v[0] : 0);
                }
            }
            if (conns[ci] == 1000 && sizes[si] == 64 && ok[1])
                idle_row(base, server_cpu, client_cpu, cpu[1]);
        }
    }
    return 0;
}
