/*
 * Strict numbers for the examples' command lines: the whole argument must be
 * a number within the given range (atoi would take "80x" as 80, and a
 * millisecond count times 1,000,000 could overflow).
 */
#ifndef CORING_EXAMPLES_ARGS_H
#define CORING_EXAMPLES_ARGS_H

#include <errno.h>
#include <math.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

/* The most milliseconds a nanosecond count (int64_t) holds. */
#define ARG_MS_MAX ((long long)(INT64_MAX / 1000000))

/* *out = v if v is an integer in [lo, hi]; false (and *out untouched) otherwise. */
static inline bool arg_int(const char *v, long long lo, long long hi, long long *out)
{
    char *end;
    errno = 0;
    long long x = strtoll(v, &end, 10);
    if (errno || end == v || *end || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

/* *out = v if v is a finite number in [lo, hi]; false otherwise. */
static inline bool arg_real(const char *v, double lo, double hi, double *out)
{
    char *end;
    errno = 0;
    double x = strtod(v, &end);
    if (errno || end == v || *end || !isfinite(x) || x < lo || x > hi)
        return false;
    *out = x;
    return true;
}

#endif
