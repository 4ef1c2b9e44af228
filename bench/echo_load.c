/*
 * echo_load: drives any TCP echo server on loopback with the load generator
 * (bench/loadgen.h) and prints messages per second, round-trip latency
 * percentiles and, given the server's pid, its CPU time per message.
 *
 *   echo_load --port 7000 --conns 64 --size 64 --duration 2 --cpus 1 --server-pid 1234 --json
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "loadgen.h"

static void usage(const char *prog)
{
    fprintf(stderr,
            "usage: %s --port P [--host ADDR] [--conns N] [--size BYTES] [--depth D]\n"
            "          [--threads T] [--duration S | --messages N] [--warmup S]\n"
            "          [--cpus C[,C...]] [--server-pid PID] [--engine NAME] [--name NAME]\n"
            "          [--json] [--cdf FILE]\n"
            "  --conns     connections (default 1)        --size   message bytes (default 64)\n"
            "  --depth     messages in flight per conn (1) --threads client threads (1)\n"
            "  --duration  measured seconds (2)           --messages stop after N round trips\n"
            "  --warmup    unmeasured seconds first (0.3) --cpus   pin client thread i to C[i]\n"
            "  --server-pid  report the server's CPU time per message\n"
            "  --cdf FILE    write the latency distribution (quantile, microseconds)\n",
            prog);
    exit(2);
}

static double num(const char *prog, const char *s)
{
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end)
        usage(prog);
    return v;
}

int main(int argc, char **argv)
{
    loadgen_config c;
    loadgen_config_default(&c);
    const char *engine = "server", *name = NULL, *cdf = NULL;
    int json = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--json")) {
            json = 1;
            continue;
        }
        if (i + 1 >= argc)
            usage(argv[0]);
        const char *v = argv[++i];
        if (!strcmp(a, "--port"))
            c.port = (int)num(argv[0], v);
        else if (!strcmp(a, "--host"))
            c.host = v;
        else if (!strcmp(a, "--conns"))
            c.conns = (int)num(argv[0], v);
        else if (!strcmp(a, "--size"))
            c.msg_size = (size_t)num(argv[0], v);
        else if (!strcmp(a, "--depth"))
            c.depth = (int)num(argv[0], v);
        else if (!strcmp(a, "--threads"))
            c.threads = (int)num(argv[0], v);
        else if (!strcmp(a, "--duration"))
            c.duration_s = num(argv[0], v);
        else if (!strcmp(a, "--messages"))
            c.messages = (long)num(argv[0], v);
        else if (!strcmp(a, "--warmup"))
            c.warmup_s = num(argv[0], v);
        else if (!strcmp(a, "--server-pid"))
            c.server_pid = (pid_t)num(argv[0], v);
        else if (!strcmp(a, "--engine"))
            engine = v;
        else if (!strcmp(a, "--name"))
            name = v;
        else if (!strcmp(a, "--cdf"))
            cdf = v;
        else if (!strcmp(a, "--cpus")) {
            char *s = strdup(v), *save = NULL;
            for (char *t = strtok_r(s, ",", &save); t && c.ncpus < LOADGEN_MAX_THREADS;
                 t = strtok_r(NULL, ",", &save))
                c.cpus[c.ncpus++] = (int)num(argv[0], t);
            free(s);
        } else
            usage(argv[0]);
    }
    if (c.port <= 0)
        usage(argv[0]);

    char defname[128];
    if (!name) {
        snprintf(defname, sizeof defname, "echo.%s.c%d.s%zu", engine, c.conns, c.msg_size);
        name = defname;
    }
    loadgen_result r;
    int err = loadgen_run(&c, &r);
    if (err) {
        fprintf(stderr, "echo_load: %s: %s\n", name, strerror(-err));
        return 1;
    }
    if (cdf) {
        FILE *f = fopen(cdf, "w");
        if (!f) {
            fprintf(stderr, "echo_load: %s: %s\n", cdf, strerror(errno));
            return 1;
        }
        loadgen_write_cdf(f, &r);
        fclose(f);
    }
    if (json) {
        loadgen_print_json(stdout, name, engine, &c, &r);
        printf("\n");
    } else {
        printf("%s: %d conns x %zu B, depth %d: %.0f msgs/s over %.2f s (%ld round trips)\n", name,
               c.conns, c.msg_size, c.depth, r.msgs_per_s, r.elapsed_s, r.messages);
        printf("  latency us: p50 %.1f  p90 %.1f  p99 %.1f  p999 %.1f  max %.1f\n", r.p50_ns / 1e3,
               r.p90_ns / 1e3, r.p99_ns / 1e3, r.p999_ns / 1e3, r.max_ns / 1e3);
        if (r.server_cpu_s >= 0)
            printf("  server CPU: %.0f ns/msg, %.0f%% of one core\n", r.server_cpu_ns_per_msg,
                   r.server_cpu_util * 100);
    }
    return 0;
}
