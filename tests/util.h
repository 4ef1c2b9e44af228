/* Helpers shared by the Criterion tests. */
#ifndef CORING_TESTS_UTIL_H
#define CORING_TESTS_UTIL_H

#include <pthread.h>
#include <coring/coring.h>

/* True if the running kernel is at least major.minor. */
bool kernel_at_least(int major, int minor);

/* The number of descriptors open in this process (for before/after comparisons). */
int open_fds(void);

/* A task that sleeps ns (cor_sleep_for) and returns the sleep's result. */
struct nap {
    COR_PROMISE(int);
    int64_t ns;
    int r;
};
COR_DECLARE(nap, (int64_t ns));

/* A memory resource that counts and can be made to fail after a budget of allocations. */
typedef struct counting_resource {
    cor_memory_resource base;
    long allocs, frees;
    long budget; /* allocations allowed; < 0: unlimited */
    long live_bytes;
    size_t last_alloc_align, last_free_align; /* alignment of the latest calls */
} counting_resource;

void counting_resource_init(counting_resource *r, long budget);

/* What a launch's handlers saw (thread-safe: handlers may run on any thread). */
struct outcome {
    int result, err, results, errors;
};

/* cor_launch_options.on_result for int tasks; user is a struct outcome. */
void rec_result(void *user, void *result);

/* cor_launch_options.on_error; user is a struct outcome. */
void rec_error(void *user, int err);

/* An executor wrapper around another that counts dispatch and post calls. */
typedef struct counting_executor {
    cor_executor inner;
    long dispatches, posts, started, finished;
} counting_executor;

cor_executor counting_executor_init(counting_executor *c, cor_executor inner);

/* Runs a manual executor on its own thread until told to stop. */
typedef struct manual_thread {
    cor_manual *m;
    pthread_t thread;
} manual_thread;

void manual_thread_start(manual_thread *t);
void manual_thread_stop(manual_thread *t);

#endif
