/*
 * The echo load generator: N TCP connections to host:port, each keeping
 * `depth` messages of `msg_size` bytes in flight, for a fixed time or a fixed
 * number of messages. It measures messages per second, the round-trip latency
 * of every message (send to the last byte of its echo) and, given the server's
 * pid, the server's CPU time per message.
 *
 * Plain C with epoll and threads, independent of coring, so every echo server
 * (coring's and its peers') is driven by the identical client. Every run is
 * bounded: it stops at its deadline, and a server that stops answering for
 * stall_ms ends the run with -ETIMEDOUT.
 */
#ifndef CORING_BENCH_LOADGEN_H
#define CORING_BENCH_LOADGEN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <sys/types.h>

#define LOADGEN_MAX_THREADS 64
#define LOADGEN_CDF_POINTS 64

typedef struct loadgen_config {
    const char *host;              /* numeric IPv4 or IPv6 address; default 127.0.0.1 */
    int port;                      /* required */
    int conns;                     /* connections; default 1 */
    size_t msg_size;               /* bytes per message; default 64 */
    int depth;                     /* messages in flight per connection; default 1 */
    int threads;                   /* client threads; default 1, at most conns */
    double duration_s;             /* measured time; default 2 (ignored if messages > 0) */
    double warmup_s;               /* unmeasured time before it; default 0.3 */
    long messages;                 /* if > 0: stop after this many measured messages */
    int cpus[LOADGEN_MAX_THREADS]; /* thread i pins to cpus[i % ncpus] */
    int ncpus;                     /* 0: no pinning */
    pid_t server_pid;              /* if > 0: measure its CPU time (/proc/pid/stat) */
    int stall_ms;                  /* no byte received for this long: fail; default 5000 */
    int connect_timeout_ms;        /* waiting for the server to listen; default 5000 */
} loadgen_config;

typedef struct loadgen_result {
    long messages;    /* round trips completed in the measured window */
    double elapsed_s; /* length of the measured window */
    double msgs_per_s;
    double min_ns, mean_ns, p50_ns, p90_ns, p99_ns, p999_ns, max_ns;
    double server_cpu_s;          /* server user+system time in the window, or -1 */
    double server_cpu_ns_per_msg; /* or -1 */
    double server_cpu_util;       /* server CPU time / window, or -1 */
    /* The latency distribution: cdf_ns[i] is the cdf_p[i] quantile. */
    double cdf_p[LOADGEN_CDF_POINTS], cdf_ns[LOADGEN_CDF_POINTS];
    int cdf_n;
} loadgen_result;

/* One run at a time per process (runs share the byte pattern and the stop flag). */

/* Fills c with the defaults above (port 0: the caller must set it). */
void loadgen_config_default(loadgen_config *c);

/*
 * Connects, warms up, measures and disconnects. Returns 0 and fills r, or
 * -errno: -EINVAL for a bad config, a connect error (-ECONNREFUSED once the
 * connect timeout passes), -EPROTO if an echoed byte differs from the byte
 * sent, -ECONNRESET if the server closes a connection, -ETIMEDOUT on a stall.
 * Call from any thread; it starts and joins its own threads.
 */
int loadgen_run(const loadgen_config *c, loadgen_result *r);

/* Prints one JSON object (no newline) describing c and r under the given name and engine. */
void loadgen_print_json(FILE *out, const char *name, const char *engine, const loadgen_config *c,
                        const loadgen_result *r);

/* Writes the distribution, one "quantile latency_us" pair per line (gnuplot input). */
void loadgen_write_cdf(FILE *out, const loadgen_result *r);

#endif
