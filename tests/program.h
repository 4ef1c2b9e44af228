/*
 * Helpers for the end-to-end tests of the example programs (http_hello,
 * tcp_proxy, kv_server, echo_server): a free loopback port, a blocking
 * client connection, starting a program and waiting until it listens,
 * stopping it with SIGTERM, and a client that trickles bytes until closed.
 * The program's path comes from the environment (meson sets it); without it
 * the test is skipped.
 */
#ifndef CORING_TESTS_PROGRAM_H
#define CORING_TESTS_PROGRAM_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <criterion/criterion.h>

/* A port nobody listens on right now (the kernel's choice: bind to 0, read it, release it). */
static inline int prog_free_port(void)
{
    int s = socket(AF_INET, SOCK_STREAM, 0);
    struct sockaddr_in a = {.sin_family = AF_INET};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    cr_assert_geq(s, 0);
    cr_assert_eq(bind(s, (struct sockaddr *)&a, sizeof a), 0);
    cr_assert_eq(getsockname(s, (struct sockaddr *)&a, &len), 0);
    close(s);
    return ntohs(a.sin_port);
}

/* A blocking connection to 127.0.0.1:port with a 5 s receive timeout, or -1. */
static inline int prog_dial(int port)
{
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    if (fd < 0)
        return -1;
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, (struct sockaddr *)&a, sizeof a) < 0) {
        close(fd);
        return -1;
    }
    struct timeval tv = {5, 0};
    setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    return fd;
}

/*
 * Starts the program named by environment variable env_name with args
 * (NULL-terminated, at most 22) and waits (up to 5 s) until port accepts.
 * The child dies with the test process, so a failed test leaves no server.
 */
static inline pid_t prog_spawn(const char *env_name, int port, const char *const *args)
{
    const char *bin = getenv(env_name);
    if (!bin)
        cr_skip_test("%s is not set (run through meson test)", env_name);
    pid_t pid = fork();
    cr_assert_geq(pid, 0);
    if (pid == 0) {
        prctl(PR_SET_PDEATHSIG, SIGKILL);
        const char *argv[24] = {bin};
        for (int i = 0; args && args[i] && i < 22; i++)
            argv[1 + i] = args[i];
        execv(bin, (char *const *)argv);
        _exit(127);
    }
    for (int i = 0; i < 500; i++) {
        int fd = prog_dial(port);
        if (fd >= 0) {
            close(fd);
            return pid;
        }
        usleep(10000);
    }
    kill(pid, SIGKILL);
    cr_assert_fail("%s did not start listening on %d", env_name, port);
    return -1;
}

/* SIGTERM, then the exit status (128 + signal if killed; -1 if it did not exit within 10 s). */
static inline int prog_terminate(pid_t pid)
{
    kill(pid, SIGTERM);
    for (int i = 0; i < 1000; i++) {
        int st;
        if (waitpid(pid, &st, WNOHANG) == pid)
            return WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        usleep(10000);
    }
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return -1;
}

/*
 * Sends a byte every 100 ms until a send fails (the server closed the
 * connection), at most 6 s. Returns the milliseconds that took, or -1 if
 * the connection was still open at the end.
 */
static inline long prog_trickle_until_closed(int fd)
{
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    for (int i = 0; i < 60; i++) {
        if (send(fd, "x", 1, MSG_NOSIGNAL) != 1) {
            clock_gettime(CLOCK_MONOTONIC, &t1);
            return (t1.tv_sec - t0.tv_sec) * 1000 + (t1.tv_nsec - t0.tv_nsec) / 1000000;
        }
        usleep(100 * 1000);
    }
    return -1;
}

#endif
