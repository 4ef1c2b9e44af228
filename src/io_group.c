/* io_group: N io_contexts, one pinned thread each. */
#include <pthread.h>
#include <sched.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "coring/io_group.h"
#include "internal.h"
#include "io_internal.h"

struct member {
    cor_io_group *g;
    cor_io_context *io;
    pthread_t thread;
    unsigned index;
    bool started;
    uint32_t ran_out; /* its run returned (the thread is finishing) */
    long result;      /* what run returned */
};

struct cor_io_group {
    unsigned n;
    bool pin;
    uint32_t closing; /* stop or join began */
    bool joined;
    pthread_mutex_t lock; /* serializes stop/join */
    struct member m[];
};

static void *member_main(void *arg)
{
    struct member *m = arg;
    if (m->g->pin) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        if (cpus > 0) {
            cpu_set_t set;
            CPU_ZERO(&set);
            CPU_SET(m->index % (unsigned long)cpus, &set);
            /* Pinning is a hint: a restricted cpuset may refuse it. */
            pthread_setaffinity_np(pthread_self(), sizeof set, &set);
        }
    }
    m->result = cor_io_context_run(m->io);
    __atomic_store_n(&m->ran_out, 1, __ATOMIC_RELEASE);
    /* -ECANCELED: cor_io_group_stop came before this thread entered run, an ordinary shutdown. */
    if (m->result < 0 && m->result != -ECANCELED)
        cor__log(COR_LOG_ERROR, "io_group thread %u: run failed: %s", m->index,
                 cor_strerror((int)m->result));
    /* Only this thread may enter its ring: clean up in flight work here. */
    /* Other members may be destroying frames of chains that cross into this one: no waits. */
    cor__io_context_quiesce(m->io, false);
    return NULL;
}

static void release_guard(struct member *m)
{
    cor_executor ex = cor_io_context_executor(m->io);
    ex.ops->on_work_finished(ex.obj);
}

/*
 * True if every member still running is blocked in a wait with nothing but
 * its guard as work (no coroutine lives on it, none is away from it);
 * records each one's count of passes.
 */
static bool all_idle(cor_io_group *g, uint64_t *passes)
{
    for (unsigned i = 0; i < g->n; i++) {
        struct member *m = &g->m[i];
        passes[i] = 0;
        if (!m->started || __atomic_load_n(&m->ran_out, __ATOMIC_ACQUIRE))
            continue;
        if (__atomic_load_n(&m->io->work, __ATOMIC_ACQUIRE) != 1 ||
            !__atomic_load_n(&m->io->sleeping, __ATOMIC_ACQUIRE))
            return false;
        passes[i] = __atomic_load_n(&m->io->stats.iterations, __ATOMIC_RELAXED);
    }
    return true;
}

/*
 * A coroutine may move to another member at any time (run() with its
 * executor), so a member out of work must keep running while another has
 * some: the guards go together, once every member was idle twice, 1 ms
 * apart, without a pass in between (nothing ran anywhere in the group
 * meanwhile, so nothing in it can start work again).
 */
static void wait_until_all_idle(cor_io_group *g)
{
    uint64_t a[1024], b[1024];
    for (;;) {
        bool idle = all_idle(g, a);
        usleep(1000);
        if (idle && all_idle(g, b) && !memcmp(a, b, g->n * sizeof a[0]))
            return;
    }
}

static void join_all(cor_io_group *g)
{
    for (unsigned i = 0; i < g->n; i++)
        if (g->m[i].started) {
            pthread_join(g->m[i].thread, NULL);
            g->m[i].started = false;
        }
    g->joined = true;
}

int cor_io_group_create(cor_io_group **out, unsigned n, const cor_io_group_options *o)
{
    if (!out || n > 1024)
        return -EINVAL;
    if (n == 0) {
        long cpus = sysconf(_SC_NPROCESSORS_ONLN);
        n = cpus > 0 ? (unsigned)(cpus > 1024 ? 1024 : cpus) : 1;
    }
    cor_io_group *g = calloc(1, sizeof *g + n * sizeof g->m[0]);
    if (!g)
        return -ENOMEM;
    g->n = n;
    g->pin = !(o && o->no_pin);
    int rc = -pthread_mutex_init(&g->lock, NULL);
    if (rc) {
        free(g);
        return rc;
    }
    for (unsigned i = 0; i < n; i++) {
        struct member *m = &g->m[i];
        m->g = g;
        m->index = i;
        rc = cor_io_context_create(&m->io, o ? o->context : NULL);
        if (rc)
            goto fail;
        cor_executor ex = cor_io_context_executor(m->io);
        ex.ops->on_work_started(ex.obj); /* the guard: run lasts until stop/join */
    }
    for (unsigned i = 0; i < n; i++) {
        rc = -pthread_create(&g->m[i].thread, NULL, member_main, &g->m[i]);
        if (rc)
            goto fail;
        g->m[i].started = true;
    }
    *out = g;
    return 0;
fail:
    cor_io_group_destroy(g);
    return rc;
}

unsigned cor_io_group_size(cor_io_group *g)
{
    return g ? g->n : 0;
}

cor_io_context *cor_io_group_context(cor_io_group *g, unsigned i)
{
    return g && i < g->n ? g->m[i].io : NULL;
}

cor_executor cor_io_group_executor(cor_io_group *g, unsigned i)
{
    return cor_io_context_executor(cor_io_group_context(g, i));
}

int cor_io_group_post(cor_io_group *g, unsigned i, cor_handle h)
{
    if (!g || i >= g->n || !h)
        return -EINVAL;
    if (__atomic_load_n(&g->closing, __ATOMIC_ACQUIRE))
        return -ESHUTDOWN;
    return cor_executor_post(cor_io_context_executor(g->m[i].io), h);
}

int cor_io_group_join(cor_io_group *g)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->lock);
    if (!__atomic_exchange_n(&g->closing, 1, __ATOMIC_ACQ_REL)) {
        wait_until_all_idle(g);
        for (unsigned i = 0; i < g->n; i++)
            if (g->m[i].io)
                release_guard(&g->m[i]);
    }
    join_all(g);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

int cor_io_group_stop(cor_io_group *g)
{
    if (!g)
        return -EINVAL;
    pthread_mutex_lock(&g->lock);
    bool first = !__atomic_exchange_n(&g->closing, 1, __ATOMIC_ACQ_REL);
    for (unsigned i = 0; i < g->n; i++) {
        if (!g->m[i].io)
            continue;
        if (first)
            release_guard(&g->m[i]);
        cor_io_context_stop(g->m[i].io);
    }
    join_all(g);
    pthread_mutex_unlock(&g->lock);
    return 0;
}

void cor_io_group_destroy(cor_io_group *g)
{
    if (!g)
        return;
    cor_io_group_stop(g);
    /*
     * A coroutine destroyed on one member may end work its awaiter holds on
     * another (a child queued there late): every member is emptied while all
     * of them exist, and only then is any freed. Their threads have exited.
     */
    for (int pass = 0; pass < 2; pass++)
        for (unsigned i = 0; i < g->n; i++)
            if (g->m[i].io)
                cor__io_context_quiesce(g->m[i].io, true);
    for (unsigned i = 0; i < g->n; i++)
        cor_io_context_destroy(g->m[i].io);
    pthread_mutex_destroy(&g->lock);
    free(g);
}
