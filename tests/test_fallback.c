/*
 * The fallback to epoll where io_uring is refused, for real: each case runs
 * in a forked child that installs a seccomp filter making io_uring_setup
 * fail with EPERM (the way Docker's default profile does), then checks that
 * a default-backend io_context runs on epoll, says so once through the log
 * hook and reports why; that asking for io_uring by name gets the error;
 * and that the echo example, started under the same filter, serves on
 * epoll with the line printed.
 */
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "program.h"

#include "io_backends.h"
#include "util.h"

#if defined(__x86_64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_X86_64
#elif defined(__aarch64__)
#define AUDIT_ARCH_HERE AUDIT_ARCH_AARCH64
#endif

enum { NO_SECCOMP = 77 };

/* Makes system call nr fail with EPERM in this process and its children. Returns 0 or -errno. */
static int refuse_syscall(long nr)
{
#ifdef AUDIT_ARCH_HERE
    struct sock_filter f[] = {
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_HERE, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (uint32_t)nr, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | (EPERM & SECCOMP_RET_DATA)),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    };
    struct sock_fprog prog = {.len = sizeof f / sizeof f[0], .filter = f};
    if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) < 0 ||
        prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog) < 0)
        return -errno;
    return 0;
#else
    (void)nr;
    return -ENOSYS;
#endif
}

static int refuse_io_uring(void)
{
    return refuse_syscall(__NR_io_uring_setup);
}

/* Runs body in a forked child under the filter; the test passes if it exits 0. */
static void in_refusing_child(int (*body)(void))
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20); /* a hang fails the case (SIGALRM) instead of the run */
        if (refuse_io_uring())
            _exit(NO_SECCOMP);
        _exit(body());
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the child died of signal %d", WTERMSIG(st));
    if (WEXITSTATUS(st) == NO_SECCOMP)
        cr_skip_test("seccomp filters are not available here");
    cr_assert_eq(WEXITSTATUS(st), 0, "the child failed at step %d", WEXITSTATUS(st));
}

/* What the log hook received. */
static struct {
    int lines, level;
    char last[512];
} logged;

static void hook(void *user, int level, const char *msg)
{
    (void)user;
    logged.lines++;
    logged.level = level;
    snprintf(logged.last, sizeof logged.last, "%s", msg);
}

struct echo_once {
    COR_PROMISE(int);
    int fds[2], n;
    char buf[8];
};
COR_DEFINE_STATIC(echo_once, (int a, int b), {
    self->fds[0] = a;
    self->fds[1] = b;
})
{
    COR_BEGIN();
    COR_AWAIT(self->n, cor_send(self->fds[0], "ping", 4, 0));
    if (self->n != 4)
        COR_RETURN(-1);
    COR_AWAIT(self->n, cor_recv(self->fds[1], self->buf, sizeof self->buf, 0));
    COR_RETURN(self->n == 4 && !memcmp(self->buf, "ping", 4) ? 0 : -1);
}

static void store(void *user, void *result)
{
    *(int *)user = *(int *)result;
}

/* A default-backend context: epoll, one log line for two contexts, the reason, and it works. */
static int default_falls_back(void)
{
    if (cor_set_log_hook(hook, NULL))
        return 1;
    cor_io_context *io, *io2;
    if (cor_io_context_create(&io, NULL) || cor_io_context_create(&io2, NULL))
        return 2;
    if (logged.lines != 1 || logged.level != COR_LOG_WARNING || !strstr(logged.last, "epoll") ||
        !strstr(logged.last, "io_uring_setup"))
        return 3;
    cor_io_context_info info;
    if (cor_io_context_get_info(io, &info))
        return 4;
    if (info.backend != COR_IO_BACKEND_EPOLL || info.fallback_error != -EPERM ||
        !strstr(info.fallback_reason, "Operation not permitted"))
        return 5;
    if (!(cor_io_context_features(io) & COR_IO_FALLBACK))
        return 6;
    int sv[2], result = -1;
    if (socketpair(AF_UNIX, SOCK_STREAM | SOCK_NONBLOCK, 0, sv))
        return 7;
    cor_launch_options lo = {.on_result = store, .user = &result};
    if (COR_RUN_ASYNC(cor_io_context_executor(io), &lo, echo_once(sv[0], sv[1])))
        return 8;
    if (cor_io_context_run(io) < 0 || result != 0)
        return 9;
    cor_io_context_destroy(io2);
    cor_io_context_destroy(io);
    close(sv[0]);
    close(sv[1]);
    return logged.lines == 1 ? 0 : 10;
}

Test(fallback, default_backend_runs_on_epoll)
{
    in_refusing_child(default_falls_back);
}

/* Asking for io_uring by name: the kernel's error, nothing logged. */
static int explicit_uring_fails(void)
{
    if (cor_set_log_hook(hook, NULL))
        return 1;
    cor_io_context_options o = {.backend = COR_IO_BACKEND_URING};
    cor_io_context *io = NULL;
    if (cor_io_context_create(&io, &o) != -EPERM || io)
        return 2;
    /* SQPOLL by name is as deliberate: no fallback either. */
    cor_io_context_options sq = {.flags = COR_IO_SQPOLL};
    if (cor_io_context_create(&io, &sq) != -EPERM || io)
        return 3;
    return logged.lines == 0 ? 0 : 4;
}

Test(fallback, explicit_uring_gets_the_error)
{
    in_refusing_child(explicit_uring_fails);
}

/*
 * io_uring_setup works but io_uring_register does not: the opcode probe
 * cannot tell what the kernel supports (nor could the ring be enabled), so
 * a default-backend context falls back too, and says why.
 */
static int probe_refused_falls_back(void)
{
    if (refuse_syscall(__NR_io_uring_register))
        return NO_SECCOMP;
    if (cor_set_log_hook(hook, NULL))
        return 1;
    cor_io_context *io;
    if (cor_io_context_create(&io, NULL))
        return 2;
    cor_io_context_info info;
    if (cor_io_context_get_info(io, &info) || info.backend != COR_IO_BACKEND_EPOLL ||
        info.fallback_error != -ENOSYS || !strstr(info.fallback_reason, "opcode probe"))
        return 3;
    if (logged.lines != 1 || !strstr(logged.last, "opcode probe failed: Operation not permitted"))
        return 4;
    cor_io_context_destroy(io);
    cor_io_context_options o = {.backend = COR_IO_BACKEND_URING};
    return cor_io_context_create(&io, &o) == -ENOSYS ? 0 : 5;
}

Test(fallback, opcode_probe_refused)
{
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20);
        _exit(probe_refused_falls_back());
    }
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    cr_assert(WIFEXITED(st), "the child died of signal %d", WTERMSIG(st));
    if (WEXITSTATUS(st) == NO_SECCOMP)
        cr_skip_test("seccomp filters are not available here");
    cr_assert_eq(WEXITSTATUS(st), 0, "the child failed at step %d", WEXITSTATUS(st));
}

/* Without a filter nothing falls back (where io_uring works at all). */
Test(fallback, no_fallback_where_io_uring_works)
{
    cor_io_context *io;
    cor_io_context_options o = {.backend = COR_IO_BACKEND_URING};
    if (cor_io_context_create(&io, &o))
        cr_skip_test("the kernel refuses io_uring here");
    cor_io_context_destroy(io);
    cr_assert_eq(cor_io_context_create(&io, NULL), 0);
    cor_io_context_info info;
    cr_assert_eq(cor_io_context_get_info(io, &info), 0);
    cr_assert_eq(info.backend, COR_IO_BACKEND_URING);
    cr_assert_eq(info.fallback_error, 0);
    cr_assert_eq(info.fallback_reason[0], 0);
    cr_assert_eq(cor_io_context_features(io) & COR_IO_FALLBACK, 0);
    cor_io_context_destroy(io);
}

Test(fallback, bad_arguments)
{
    cor_io_context_info info;
    cr_assert_eq(cor_io_context_get_info(NULL, &info), -EINVAL);
    cor_io_context *io;
    cr_assert_eq(cor_io_context_create(&io, NULL), 0);
    cr_assert_eq(cor_io_context_get_info(io, NULL), -EINVAL);
    cor_io_context_destroy(io);
    cr_assert_eq(cor_set_log_hook(NULL, &info), -EINVAL);
    cr_assert_eq(cor_set_log_hook(NULL, NULL), 0);
}

/* Connects to 127.0.0.1:port, retrying while the server starts (bounded). */
static int connect_retry(int port)
{
    struct sockaddr_in a = {.sin_family = AF_INET,
                            .sin_port = htons((uint16_t)port),
                            .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
    for (int i = 0; i < 200; i++) {
        int s = socket(AF_INET, SOCK_STREAM, 0);
        if (s >= 0 && connect(s, (struct sockaddr *)&a, sizeof a) == 0)
            return s;
        if (s >= 0)
            close(s);
        usleep(10000);
    }
    return -1;
}

/* Reads what fd has (up to cap - 1 bytes) until it closes, waiting at most ms per read. */
static size_t read_all(int fd, char *buf, size_t cap, int ms)
{
    size_t have = 0;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    while (have + 1 < cap && poll(&p, 1, ms) == 1) {
        ssize_t n = read(fd, buf + have, cap - 1 - have);
        if (n <= 0)
            break;
        have += (size_t)n;
    }
    buf[have] = 0;
    return have;
}

/* The echo example under the filter: serves on epoll and says why in one line. */
Test(fallback, echo_server_serves_on_epoll)
{
    const char *exe = getenv("ECHO_SERVER");
    cr_assert(exe, "ECHO_SERVER names the echo_server binary (tests/meson.build)");
    int port = prog_free_port();
    char port_s[16];
    snprintf(port_s, sizeof port_s, "%d", port);
    int err[2];
    cr_assert_eq(pipe(err), 0);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        alarm(20);
        dup2(err[1], 2);
        close(err[0]);
        if (refuse_io_uring())
            _exit(NO_SECCOMP);
        execl(exe, exe, "--port", port_s, (char *)NULL);
        _exit(127);
    }
    close(err[1]);
    int s = connect_retry(port);
    char buf[64] = {0};
    ssize_t got = -1;
    if (s >= 0) {
        struct timeval tv = {.tv_sec = 5};
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
        if (send(s, "hello", 5, 0) == 5)
            got = recv(s, buf, 5, MSG_WAITALL);
        close(s);
    }
    kill(pid, SIGTERM);
    int st = 0;
    cr_assert_eq(waitpid(pid, &st, 0), pid);
    char out[4096];
    read_all(err[0], out, sizeof out, 2000);
    close(err[0]);
    if (WIFEXITED(st) && WEXITSTATUS(st) == NO_SECCOMP)
        cr_skip_test("seccomp filters are not available here");
    cr_assert_geq(s, 0, "could not connect to echo_server; its stderr:\n%s", out);
    cr_assert_eq(got, 5, "echo_server did not echo; its stderr:\n%s", out);
    cr_assert_str_eq(buf, "hello");
    cr_assert(strstr(out, "coring: io_uring is not available, io_contexts with the default "
                          "backend run on epoll: io_uring_setup: Operation not permitted"),
              "no fallback line; stderr:\n%s", out);
    cr_assert(strstr(out, "(epoll)"), "not listening on epoll; stderr:\n%s", out);
    cr_assert(WIFEXITED(st) && WEXITSTATUS(st) == 0, "echo_server exit status %d; stderr:\n%s", st,
              out);
}
