/*
 * A minimal in-process stand-in for Criterion's test API, used only for the
 * ThreadSanitizer build: Criterion's runner cannot start under TSan (its
 * inheritable arena collides with TSan's memory layout; Criterion issue 274).
 * It supports what the suites use: Test() with .init/.fini/.timeout/.disabled,
 * the cr_assert family, cr_skip_test and cr_log_*; it prints Criterion's
 * Synthesis line so scripts/test counts the cases the same way.
 */
#ifndef CORING_TSAN_CRITERION_H
#define CORING_TSAN_CRITERION_H

/* Like the real header, a system header: its macros take zero variadic arguments. */
#pragma GCC system_header
#ifdef __clang__
#pragma clang diagnostic ignored "-Wgnu-zero-variadic-macro-arguments"
#pragma clang diagnostic ignored "-Winitializer-overrides"
#endif

#include <setjmp.h>
#include <stdbool.h>
#include <stdio.h>
#include <string.h>

struct criterion_test_extra_data {
    void (*init)(void);
    void (*fini)(void);
    double timeout;
    bool disabled;
    int exit_code;
    int signal;
    const char *description;
};

struct crs_test {
    const char *suite, *name;
    void (*fn)(void);
    struct criterion_test_extra_data data;
    struct crs_test *next;
};

void crs_register(struct crs_test *t);
void crs_fail(const char *file, int line, const char *expr, const char *fmt, ...)
    __attribute__((noreturn, format(printf, 4, 5)));
void crs_skip(const char *fmt, ...) __attribute__((noreturn, format(printf, 1, 2)));
void crs_log(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

#define Test(suite, name, ...)                                                                     \
    static void suite##_##name##_impl(void);                                                       \
    static struct crs_test suite##_##name##_t = {                                                  \
        #suite, #name, suite##_##name##_impl, {.timeout = 0, __VA_ARGS__}, NULL};                  \
    __attribute__((constructor)) static void suite##_##name##_reg(void)                            \
    {                                                                                              \
        crs_register(&suite##_##name##_t);                                                         \
    }                                                                                              \
    static void suite##_##name##_impl(void)

#define cr_assert(cond, ...)                                                                       \
    do {                                                                                           \
        if (!(cond))                                                                               \
            crs_fail(__FILE__, __LINE__, #cond, "" __VA_ARGS__);                                   \
    } while (0)
#define cr_expect cr_assert
#define cr_assert_not(cond, ...) cr_assert(!(cond), __VA_ARGS__)
#define crs_cmp(a, op, b, ...)                                                                     \
    do {                                                                                           \
        if (!((a)op(b)))                                                                           \
            crs_fail(__FILE__, __LINE__, #a " " #op " " #b, "" __VA_ARGS__);                       \
    } while (0)
#define cr_assert_eq(a, b, ...) crs_cmp(a, ==, b, __VA_ARGS__)
#define cr_assert_neq(a, b, ...) crs_cmp(a, !=, b, __VA_ARGS__)
#define cr_assert_lt(a, b, ...) crs_cmp(a, <, b, __VA_ARGS__)
#define cr_assert_leq(a, b, ...) crs_cmp(a, <=, b, __VA_ARGS__)
#define cr_assert_gt(a, b, ...) crs_cmp(a, >, b, __VA_ARGS__)
#define cr_assert_geq(a, b, ...) crs_cmp(a, >=, b, __VA_ARGS__)
#define cr_expect_eq cr_assert_eq
#define cr_expect_neq cr_assert_neq
#define cr_expect_lt cr_assert_lt
#define cr_expect_leq cr_assert_leq
#define cr_expect_gt cr_assert_gt
#define cr_expect_geq cr_assert_geq
#define cr_assert_null(p, ...) cr_assert((p) == NULL, __VA_ARGS__)
#define cr_assert_not_null(p, ...) cr_assert((p) != NULL, __VA_ARGS__)
#define cr_assert_str_eq(a, b, ...) cr_assert(strcmp((a), (b)) == 0, __VA_ARGS__)
#define cr_assert_str_neq(a, b, ...) cr_assert(strcmp((a), (b)) != 0, __VA_ARGS__)
#define cr_assert_fail(...) crs_fail(__FILE__, __LINE__, "cr_assert_fail", "" __VA_ARGS__)
#define cr_skip_test(...) crs_skip("" __VA_ARGS__)
#define cr_log_info(...) crs_log(__VA_ARGS__)
#define cr_log_warn(...) crs_log(__VA_ARGS__)
#define cr_log_error(...) crs_log(__VA_ARGS__)

#endif
