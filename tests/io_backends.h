/*
 * I/O tests run against every backend from one source. IO_TEST(suite, name)
 * defines two Criterion tests, suite::name_uring and suite::name_epoll; the
 * body sees `backend` (a COR_IO_BACKEND_* value) and creates its contexts
 * with io_test_create(backend, ...). Both backends are always built; where
 * the kernel refuses io_uring (a seccomp profile, io_uring_disabled, an old
 * kernel) the io_uring variant is skipped with the reason printed, never
 * passed silently.
 */
#ifndef CORING_TESTS_IO_BACKENDS_H
#define CORING_TESTS_IO_BACKENDS_H

#include <criterion/criterion.h>
#include <coring/file.h>
#include <coring/io_context.h>

static inline const char *io_test_backend_name(int backend)
{
    return backend == COR_IO_BACKEND_EPOLL ? "epoll" : "io_uring";
}

/*
 * Creates an io_context on backend with options o (NULL: defaults; o's own
 * backend field is overridden). Skips the test if the kernel refuses
 * io_uring; fails it on any other error.
 */
static inline cor_io_context *io_test_create(int backend, const cor_io_context_options *o)
{
    cor_io_context_options opts = {0};
    if (o)
        opts = *o;
    opts.backend = backend;
    cor_io_context *io = NULL;
    int rc = cor_io_context_create(&io, &opts);
    if (backend == COR_IO_BACKEND_URING && (rc == -EPERM || rc == -ENOSYS || rc == -EACCES))
        cr_skip_test("the kernel refuses io_uring here: %s", cor_strerror(rc));
    cr_assert_eq(rc, 0, "cor_io_context_create(%s): %s", io_test_backend_name(backend),
                 cor_strerror(rc));
    return io;
}

/*
 * A one-byte read of fd at the file position: on an empty pipe, an operation
 * that completes only when data arrives, its deadline passes or it is canceled.
 */
static inline struct cor_io_await *pipe_read(int fd, char *buf)
{
    return cor_read(fd, buf, 1, -1);
}

#define IO_TEST_OPTS(suite, name, ...)                                                             \
    static void suite##_##name##_body(int backend);                                                \
    Test(suite, name##_uring, __VA_ARGS__)                                                         \
    {                                                                                              \
        suite##_##name##_body(COR_IO_BACKEND_URING);                                               \
    }                                                                                              \
    Test(suite, name##_epoll, __VA_ARGS__)                                                         \
    {                                                                                              \
        suite##_##name##_body(COR_IO_BACKEND_EPOLL);                                               \
    }                                                                                              \
    static void suite##_##name##_body(int backend)

#define IO_TEST(suite, name) IO_TEST_OPTS(suite, name, .disabled = false)

#endif
