#include "harness.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <coring/alloc.h>

static struct {
    bool json, quick;
    int reps;
    const char *filter;
    bool header_done;
} cfg = {.reps = 5};

void bench_init(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        if (!strcmp(argv[i], "--json"))
            cfg.json = true;
        else if (!strcmp(argv[i], "--quick"))
            cfg.quick = true;
        else if (!strcmp(argv[i], "--reps") && i + 1 < argc)
            cfg.reps = atoi(argv[++i]);
        else if (!strcmp(argv[i], "--filter") && i + 1 < argc)
            cfg.filter = argv[++i];
        else {
            fprintf(stderr, "usage: %s [--json] [--quick] [--reps N] [--filter SUBSTR]\n", argv[0]);
            exit(2);
        }
    }
    if (cfg.reps < 1)
        cfg.reps = 1;
    if (cfg.reps > 64)
        cfg.reps = 64;
}

bool bench_enabled(const char *name)
{
    return !cfg.filter || strstr(name, cfg.filter);
}

long bench_iters(long iters)
{
    return cfg.quick ? (iters / 10 > 0 ? iters / 10 : 1) : iters;
}

uint64_t bench_now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

bench_result bench_measure(const char *name, bench_fn fn, void *arg, long iters)
{
    bench_result r;
    memset(&r, 0, sizeof r);
    snprintf(r.name, sizeof r.name, "%s", name);
    r.iters = iters;
    fn(arg, iters / 10 > 0 ? iters / 10 : 1); /* warm-up: caches, pools, branch predictors */
    double ns[64];
    cor_alloc_stats before, after;
    cor_alloc_stats_get(&before);
    for (int i = 0; i < cfg.reps; i++) {
        uint64_t t0 = bench_now_ns();
        fn(arg, iters);
        ns[i] = (double)(bench_now_ns() - t0) / (double)iters;
    }
    cor_alloc_stats_get(&after);
    qsort(ns, (size_t)cfg.reps, sizeof ns[0], cmp_double);
    r.ns_min = ns[0];
    r.ns_max = ns[cfg.reps - 1];
    r.ns_median = ns[cfg.reps / 2];
    double ops = (double)iters * cfg.reps;
    r.allocs_per_op = (double)(after.allocations - before.allocations) / ops;
    r.heap_per_op = (double)(after.heap_calls - before.heap_calls) / ops;
    return r;
}

static void header(void)
{
    if (cfg.json || cfg.header_done)
        return;
    cfg.header_done = true;
    printf("%-44s %10s %10s %10s %9s %9s  %s\n", "benchmark", "ns/op", "min", "max", "allocs/op",
           "heap/op", "vs baseline");
}

void bench_report(const bench_result *r, const bench_result *baseline, const char *extra_json)
{
    double ratio = baseline && baseline->ns_median > 0 ? r->ns_median / baseline->ns_median : 0;
    if (cfg.json) {
        printf("{\"bench\": \"%s\", \"ns_per_op\": %.3f, \"ns_min\": %.3f, \"ns_max\": %.3f, "
               "\"allocs_per_op\": %.4f, \"heap_per_op\": %.4f, \"iters\": %ld",
               r->name, r->ns_median, r->ns_min, r->ns_max, r->allocs_per_op, r->heap_per_op,
               r->iters);
        if (baseline)
            printf(", \"baseline\": \"%s\", \"baseline_ns_per_op\": %.3f, \"ratio\": %.3f",
                   baseline->name, baseline->ns_median, ratio);
        if (extra_json)
            printf(", %s", extra_json);
        printf("}\n");
    } else {
        header();
        printf("%-44s %10.2f %10.2f %10.2f %9.3f %9.3f", r->name, r->ns_median, r->ns_min,
               r->ns_max, r->allocs_per_op, r->heap_per_op);
        if (baseline)
            printf("  %.2fx %s", ratio, baseline->name);
        printf("\n");
    }
    fflush(stdout);
}

void bench_report_value(const char *name, const char *unit, double value, const char *baseline_name,
                        double baseline_value)
{
    double ratio = baseline_name && baseline_value > 0 ? value / baseline_value : 0;
    if (cfg.json) {
        printf("{\"bench\": \"%s\", \"value\": %.3f, \"unit\": \"%s\"", name, value, unit);
        if (baseline_name)
            printf(", \"baseline\": \"%s\", \"baseline_value\": %.3f, \"ratio\": %.3f",
                   baseline_name, baseline_value, ratio);
        printf("}\n");
    } else {
        header();
        printf("%-44s %10.2f %-10s", name, value, unit);
        if (baseline_name)
            printf("  %.2fx %s (%.2f)", ratio, baseline_name, baseline_value);
        printf("\n");
    }
    fflush(stdout);
}
