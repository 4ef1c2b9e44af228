/*
 * The benchmark harness: warm-up, repetitions, min/median/max ns per
 * operation, allocations per operation from the allocation statistics, a
 * human table and, with --json, one JSON object per line. Every figure with
 * a baseline carries the baseline measured in the same run and the ratio.
 */
#ifndef CORING_BENCH_HARNESS_H
#define CORING_BENCH_HARNESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* Runs iters operations. Called once for warm-up and once per repetition. */
typedef void (*bench_fn)(void *arg, long iters);

typedef struct bench_result {
    char name[96];
    long iters;
    double ns_min, ns_median, ns_max; /* per operation                    */
    double allocs_per_op;             /* cor_mr_allocate calls per op     */
    double heap_per_op;               /* of those, calls that hit the heap */
    double paired_ratio;              /* bench_measure_paired: the median of the
                                         repetitions' ratios to the baseline, else 0 */
} bench_result;

/* Parses --json, --reps N, --quick (fewer iterations) and --filter SUBSTR. Call first. */
void bench_init(int argc, char **argv);

/* True if a benchmark named name should run (--filter). */
bool bench_enabled(const char *name);

/* Scales an iteration count down under --quick. */
long bench_iters(long iters);

/* Measures fn: one warm-up run, then the configured repetitions of iters operations each. */
bench_result bench_measure(const char *name, bench_fn fn, void *arg, long iters);

/*
 * Measures fn against its baseline base_fn taking turns: each repetition runs
 * both back to back (in alternating order), so a slow spell of the machine
 * lands on both alike. *base and *r get each one's figures; r->paired_ratio
 * is the median of the repetitions' ratios, which bench_report prints as the
 * ratio when r is reported against a baseline.
 */
void bench_measure_paired(const char *base_name, bench_fn base_fn, void *base_arg, const char *name,
                          bench_fn fn, void *arg, long iters, bench_result *base, bench_result *r);

/*
 * Prints r (a table row, or a JSON line), with the baseline and ratio when
 * baseline is non-NULL. extra_json, if non-NULL, is appended inside the JSON
 * object (e.g. "\"p99_ns\": 1234").
 */
void bench_report(const bench_result *r, const bench_result *baseline, const char *extra_json);

/* Prints a figure that is not a time per op (a throughput, a percentile), with an optional
 * baseline. */
void bench_report_value(const char *name, const char *unit, double value, const char *baseline_name,
                        double baseline_value);

/* True under --json (targets that print their own lines follow the same mode). */
bool bench_json(void);

/* True under --quick (targets with long fixed-time phases shorten them). */
bool bench_quick(void);

/* A latency distribution in nanoseconds, from samples taken one per operation. */
typedef struct bench_latency {
    size_t n;
    double min, mean, p50, p90, p99, p999, max;
} bench_latency;

/*
 * The p-quantile (0 <= p <= 1) of n samples already sorted ascending, by the
 * nearest-rank method: the smallest sample with at least p * n samples at or
 * below it. Returns 0 for n == 0.
 */
double bench_percentile(const uint64_t *sorted, size_t n, double p);

/* Sorts samples (nanoseconds) in place and summarizes them. */
bench_latency bench_latency_of(uint64_t *samples, size_t n);

/*
 * Prints a latency distribution (a table row, or a JSON line with n, min_ns,
 * mean_ns, p50_ns, p90_ns, p99_ns, p999_ns and max_ns). With a baseline, adds
 * its name, its p50 and p99 and the ratios of p50 and p99.
 */
void bench_report_latency(const char *name, const bench_latency *l, const char *baseline_name,
                          const bench_latency *baseline);

/* Monotonic nanoseconds. */
uint64_t bench_now_ns(void);

/* Keeps the compiler from optimizing away v. */
#define bench_keep(v) __asm__ volatile("" : : "g"(v) : "memory")

#endif
