/*
 * bench_send: large sends over TCP loopback, plain IORING_OP_SEND against
 * IORING_OP_SEND_ZC (an io_context with send_zc_threshold = 1), at 64 KiB
 * and 1 MiB per send. One coroutine sends 256 MiB with cor_send_all on an
 * io_context pinned to CPU 0; a plain thread on CPU 1 reads and drops it.
 * Reported: ns per send and the sender thread's CPU per send; the zero-copy
 * rows have the plain ones of the same run as baseline. On loopback the
 * kernel copies a zero-copy send's pages to the receiver anyway, so this
 * shows the cost of the notification machinery, not the gain on a NIC.
 */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>
#include <sys/socket.h>

#include <coring/coring.h>

#include "harness.h"

struct drain {
    int fd;
    pthread_t thread;
};

static void pin(int cpu)
{
    cpu_set_t set;
    CPU_ZERO(&set);
    CPU_SET(cpu, &set);
    pthread_setaffinity_np(pthread_self(), sizeof set, &set);
}

/* Reads until the end of the stream. */
static void *drain_main(void *arg)
{
    struct drain *d = arg;
    pin(sysconf(_SC_NPROCESSORS_ONLN) > 1 ? 1 : 0);
    static char buf[1 << 20];
    while (recv(d->fd, buf, sizeof buf, 0) > 0)
        ;
    return NULL;
}

struct sender {
    COR_PROMISE(int);
    int fd;
    const char *buf;
    size_t size;
    long count, i;
    ssize_t n;
};
COR_DEFINE_STATIC(sender, (int fd, const char *buf, size_t size, long count), {
    self->fd = fd;
    self->buf = buf;
    self->size = size;
    self->count = count;
})
{
    COR_BEGIN();
    for (self->i = 0; self->i < self->count; self->i++) {
        COR_AWAIT(self->n, cor_send_all(self->fd, self->buf, self->size));
        if (self->n != (ssize_t)self->size)
            COR_RETURN(-1);
    }
    COR_RETURN(0);
}

static void store(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

static double thread_cpu_ns(void)
{
    struct timespec t;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &t);
    return (double)t.tv_sec * 1e9 + (double)t.tv_nsec;
}

/* Sends count sends of size bytes; fills *wall_ns and *cpu_ns per send. Returns 0 or -errno. */
static int run(int zc_threshold, size_t size, long count, double *wall_ns, double *cpu_ns,
               bool *zc_used)
{
    cor_sockaddr a;
    cor_addr_ip(&a, "127.0.0.1", 0);
    int lfd = cor_listen(&a, 4, 0);
    if (lfd < 0)
        return lfd;
    cor_sockaddr bound;
    cor_local_addr(lfd, &bound);
    int out = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (connect(out, &bound.u.sa, bound.len) < 0) {
        close(lfd);
        close(out);
        return -errno;
    }
    struct drain d = {.fd = accept4(lfd, NULL, NULL, SOCK_CLOEXEC)};
    close(lfd);
    pthread_create(&d.thread, NULL, drain_main, &d);
    cor_io_context_options o = {.send_zc_threshold = zc_threshold};
    cor_io_context *io;
    int rc = cor_io_context_create(&io, &o);
    if (rc == 0) {
        *zc_used = cor_io_context_features(io) & COR_IO_SEND_ZC;
        static char buf[1 << 20];
        memset(buf, 'x', sizeof buf);
        int result = -EIO;
        cor_launch_options lo = {.on_result = store, .user = &result};
        uint64_t t0 = bench_now_ns();
        double c0 = thread_cpu_ns();
        rc = COR_RUN_ASYNC(cor_io_context_executor(io), &lo, sender(out, buf, size, count));
        if (rc == 0)
            cor_io_context_run(io);
        double c1 = thread_cpu_ns();
        uint64_t t1 = bench_now_ns();
        *wall_ns = (double)(t1 - t0) / (double)count;
        *cpu_ns = (c1 - c0) / (double)count;
        cor_io_context_destroy(io);
        if (rc == 0)
            rc = result;
    }
    shutdown(out, SHUT_WR);
    pthread_join(d.thread, NULL);
    close(out);
    close(d.fd);
    return rc;
}

int main(int argc, char **argv)
{
    bench_init(argc, argv);
    pin(0);
    static const size_t sizes[] = {64 << 10, 1 << 20};
    static const char *const names[] = {"64k", "1m"};
    long total = bench_quick() ? 32L << 20 : 256L << 20;
    for (int i = 0; i < 2; i++) {
        char base[64], zc[64], basecpu[64], zccpu[64];
        snprintf(base, sizeof base, "send.%s.plain", names[i]);
        snprintf(zc, sizeof zc, "send.%s.zero_copy", names[i]);
        snprintf(basecpu, sizeof basecpu, "send.%s.plain.cpu", names[i]);
        snprintf(zccpu, sizeof zccpu, "send.%s.zero_copy.cpu", names[i]);
        if (!bench_enabled(base) && !bench_enabled(zc))
            continue;
        long count = total / (long)sizes[i];
        double w[2], c[2];
        bool used[2];
        int rc0 = run(-1, sizes[i], count, &w[0], &c[0], &used[0]);
        int rc1 = run(1, sizes[i], count, &w[1], &c[1], &used[1]);
        if (rc0 || rc1) {
            fprintf(stderr, "bench_send: %s: %s\n", names[i], cor_strerror(rc0 ? rc0 : rc1));
            continue;
        }
        if (!used[1])
            fprintf(stderr, "bench_send: the kernel has no SEND_ZC: both rows are plain sends\n");
        bench_report_value(base, "ns/send", w[0], NULL, 0);
        bench_report_value(zc, "ns/send", w[1], base, w[0]);
        bench_report_value(basecpu, "ns/send", c[0], NULL, 0);
        bench_report_value(zccpu, "ns/send", c[1], basecpu, c[0]);
    }
    return 0;
}
