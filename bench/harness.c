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

/*
 * min/median/max of n repetitions' ns per op (sorted in place) into r, whose
 * allocation counts (summed by timed) become per op.
 */
static void summarize(bench_result *r, const char *name, long iters, double *ns, int n)
{
    snprintf(r->name, sizeof r->name, "%s", name);
    r->allocs_per_op /= (double)iters * n;
    r->heap_per_op /= (double)iters * n;
    r->iters = iters;
    qsort(ns, (size_t)n, sizeof ns[0], cmp_double);
    r->ns_min = ns[0];
    r->ns_max = ns[n - 1];
    r->ns_median = ns[n / 2];
}

/* One repetition: ns per op, with its allocations added to r. */
static double timed(bench_result *r, bench_fn fn, void *arg, long iters)
{
    cor_alloc_stats before, after;
    cor_alloc_stats_get(&before);
    uint64_t t0 = bench_now_ns();
    fn(arg, iters);
    double ns = (double)(bench_now_ns() - t0) / (double)iters;
    cor_alloc_stats_get(&after);
    r->allocs_per_op += (double)(after.allocations - before.allocations);
    r->heap_per_op += (double)(after.heap_calls - before.heap_calls);
    return ns;
}

bench_result bench_measure(const char *name, bench_fn fn, void *arg, long iters)
{
    bench_result r;
    memset(&r, 0, sizeof r);
    fn(arg, iters / 10 > 0 ? iters / 10 : 1); /* warm-up: caches, pools, branch predictors */
    double ns[64];
    for (int i = 0; i < cfg.reps; i++)
        ns[i] = timed(&r, fn, arg, iters);
    summarize(&r, name, iters, ns, cfg.reps);
    return r;
}

void bench_measure_paired(const char *base_name, bench_fn base_fn, void *base_arg, const char *name,
                          bench_fn fn, void *arg, long iters, bench_result *base, bench_result *r)
{
    memset(base, 0, sizeof *base);
    memset(r, 0, sizeof *r);
    long warm = iters / 10 > 0 ? iters / 10 : 1;
    base_fn(base_arg, warm);
    fn(arg, warm);
    double b[64], t[64], ratio[64];
    for (int i = 0; i < cfg.reps; i++) {
        if (i % 2 == 0) {
            b[i] = timed(base, base_fn, base_arg, iters);
            t[i] = timed(r, fn, arg, iters);
        } else {
            t[i] = timed(r, fn, arg, iters);
            b[i] = timed(base, base_fn, base_arg, iters);
        }
        ratio[i] = b[i] > 0 ? t[i] / b[i] : 0;
    }
    summarize(base, base_name, iters, b, cfg.reps);
    summarize(r, name, iters, t, cfg.reps);
    qsort(ratio, (size_t)cfg.reps, sizeof ratio[0], cmp_double);
    r->paired_ratio = ratio[cfg.reps / 2];
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
    if (baseline && r->paired_ratio > 0)
        ratio = r->paired_ratio;
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

bool bench_json(void)
{
    return cfg.json;
}

bool bench_quick(void)
{
    return cfg.quick;
}

double bench_percentile(const uint64_t *sorted, size_t n, double p)
{
    if (n == 0)
        return 0;
    if (p <= 0)
        return (double)sorted[0];
    double rank = p * (double)n;
    size_t k = (size_t)rank;
    if ((double)k < rank)
        k++; /* ceil: at least p * n samples at or below the answer */
    return (double)sorted[k > 0 ? (k > n ? n : k) - 1 : 0];
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

bench_latency bench_latency_of(uint64_t *samples, size_t n)
{
    bench_latency l;
    memset(&l, 0, sizeof l);
    l.n = n;
    if (n == 0)
        return l;
    qsort(samples, n, sizeof samples[0], cmp_u64);
    double sum = 0;
    for (size_t i = 0; i < n; i++)
        sum += (double)samples[i];
    l.min = (double)samples[0];
    l.max = (double)samples[n - 1];
    l.mean = sum / (double)n;
    l.p50 = bench_percentile(samples, n, 0.50);
    l.p90 = bench_percentile(samples, n, 0.90);
    l.p99 = bench_percentile(samples, n, 0.99);
    l.p999 = bench_percentile(samples, n, 0.999);
    return l;
}

void bench_report_latency(const char *name, const bench_latency *l, const char *baseline_name,
                          const bench_latency *baseline)
{
    bool base = baseline_name && baseline && baseline->p50 > 0 && baseline->p99 > 0;
    if (cfg.json) {
        printf("{\"bench\": \"%s\", \"unit\": \"ns\", \"n\": %zu, \"min_ns\": %.1f, "
               "\"mean_ns\": %.1f, \"p50_ns\": %.1f, \"p90_ns\": %.1f, \"p99_ns\": %.1f, "
               "\"p999_ns\": %.1f, \"max_ns\": %.1f",
               name, l->n, l->min, l->mean, l->p50, l->p90, l->p99, l->p999, l->max);
        if (base)
            printf(", \"baseline\": \"%s\", \"baseline_p50_ns\": %.1f, \"baseline_p99_ns\": %.1f, "
                   "\"ratio\": %.3f, \"ratio_p99\": %.3f",
                   baseline_name, baseline->p50, baseline->p99, l->p50 / baseline->p50,
                   l->p99 / baseline->p99);
        printf("}\n");
    } else {
        header();
        printf("%-44s %10.0f %-10s p90 %.0f p99 %.0f p999 %.0f max %.0f", name, l->p50, "ns p50",
               l->p90, l->p99, l->p999, l->max);
        if (base)
            printf("  %.2fx p50, %.2fx p99 %s", l->p50 / baseline->p50, l->p99 / baseline->p99,
                   baseline_name);
        printf("\n");
    }
    fflush(stdout);
}
