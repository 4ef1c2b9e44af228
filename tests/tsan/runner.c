/* The TSan-build test runner: runs every registered test in this process, one at a time. */
#include <pthread.h>
#include <stdarg.h>
#include <stdlib.h>

#include "criterion/criterion.h"

static struct crs_test *head, **tail = &head;
static jmp_buf jump;
static pthread_t test_thread;
static int outcome; /* 0 pass, 1 fail, 2 skip */

void crs_register(struct crs_test *t)
{
    *tail = t;
    tail = &t->next;
}

void crs_fail(const char *file, int line, const char *expr, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[----] %s:%d: assertion failed: %s: ", file, line, expr);
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    if (!pthread_equal(pthread_self(), test_thread))
        abort(); /* cannot unwind another thread: the run fails as a crash */
    outcome = 1;
    longjmp(jump, 1);
}

void crs_skip(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[SKIP] ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
    outcome = 2;
    longjmp(jump, 1);
}

void crs_log(const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "[LOG ] ");
    vfprintf(stderr, fmt, ap);
    fprintf(stderr, "\n");
    va_end(ap);
}

int main(int argc, char **argv)
{
    int tested = 0, passed = 0, failed = 0;
    const char *filter = argc > 1 ? argv[1] : NULL;
    test_thread = pthread_self();
    for (struct crs_test *t = head; t; t = t->next) {
        if (t->data.disabled || (filter && !strstr(t->name, filter)))
            continue;
        outcome = 0;
        fprintf(stderr, "[RUN ] %s::%s\n", t->suite, t->name);
        if (!setjmp(jump)) {
            if (t->data.init)
                t->data.init();
            t->fn();
        }
        if (t->data.fini)
            t->data.fini();
        if (outcome == 2)
            continue;
        tested++;
        if (outcome == 0)
            passed++;
        else
            failed++;
        fprintf(stderr, "[%s] %s::%s\n", outcome ? "FAIL" : "PASS", t->suite, t->name);
    }
    printf("[====] Synthesis: Tested: %d | Passing: %d | Failing: %d | Crashing: 0 \n", tested,
           passed, failed);
    return failed ? 1 : 0;
}
