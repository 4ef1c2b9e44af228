#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/utsname.h>
#include <criterion/criterion.h>

#include "util.h"

static void *cr_allocate(cor_memory_resource *mr, size_t size, size_t align)
{
    counting_resource *r = (counting_resource *)mr;
    if (r->budget >= 0 && __atomic_load_n(&r->allocs, __ATOMIC_RELAXED) >= r->budget)
        return NULL;
    __atomic_fetch_add(&r->allocs, 1, __ATOMIC_RELAXED);
    __atomic_fetch_add(&r->live_bytes, (long)size, __ATOMIC_RELAXED);
    __atomic_store_n(&r->last_alloc_align, align, __ATOMIC_RELAXED);
    return aligned_alloc(align, (size + align - 1) & ~(align - 1));
}

static void cr_deallocate(cor_memory_resource *mr, void *p, size_t size, size_t align)
{
    counting_resource *r = (counting_resource *)mr;
    __atomic_fetch_add(&r->frees, 1, __ATOMIC_RELAXED);
    __atomic_fetch_sub(&r->live_bytes, (long)size, __ATOMIC_RELAXED);
    __atomic_store_n(&r->last_free_align, align, __ATOMIC_RELAXED);
    free(p);
}

static const cor_memory_resource_ops cr_ops = {cr_allocate, cr_deallocate};

void counting_resource_init(counting_resource *r, long budget)
{
    r->base.ops = &cr_ops;
    r->allocs = r->frees = r->live_bytes = 0;
    r->last_alloc_align = r->last_free_align = 0;
    r->budget = budget;
}

void rec_result(void *user, void *result)
{
    struct outcome *o = user;
    __atomic_store_n(&o->result, *(int *)result, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o->results, 1, __ATOMIC_RELEASE);
}

void rec_error(void *user, int err)
{
    struct outcome *o = user;
    __atomic_store_n(&o->err, err, __ATOMIC_RELAXED);
    __atomic_fetch_add(&o->errors, 1, __ATOMIC_RELEASE);
}

static cor_handle ce_dispatch(const void *obj, cor_handle h)
{
    counting_executor *c = (counting_executor *)obj;
    __atomic_fetch_add(&c->dispatches, 1, __ATOMIC_RELAXED);
    return c->inner.ops->dispatch(c->inner.obj, h);
}

static void ce_post(const void *obj, cor_handle h)
{
    counting_executor *c = (counting_executor *)obj;
    __atomic_fetch_add(&c->posts, 1, __ATOMIC_RELAXED);
    c->inner.ops->post(c->inner.obj, h);
}

static cor_execution_context *ce_context(const void *obj)
{
    const counting_executor *c = obj;
    return cor_executor_context(c->inner);
}

static void ce_started(const void *obj)
{
    counting_executor *c = (counting_executor *)obj;
    __atomic_fetch_add(&c->started, 1, __ATOMIC_RELAXED);
    c->inner.ops->on_work_started(c->inner.obj);
}

static void ce_finished(const void *obj)
{
    counting_executor *c = (counting_executor *)obj;
    __atomic_fetch_add(&c->finished, 1, __ATOMIC_RELAXED);
    c->inner.ops->on_work_finished(c->inner.obj);
}

static const cor_executor_ops ce_ops = {ce_dispatch, ce_post, ce_context, ce_started, ce_finished};

cor_executor counting_executor_init(counting_executor *c, cor_executor inner)
{
    c->inner = inner;
    c->dispatches = c->posts = c->started = c->finished = 0;
    return (cor_executor){c, &ce_ops};
}

static void *manual_thread_main(void *arg)
{
    manual_thread *t = arg;
    cr_assert_geq(cor_manual_run(t->m), 0);
    return NULL;
}

void manual_thread_start(manual_thread *t)
{
    cr_assert_eq(cor_manual_create(&t->m), 0);
    cor_executor ex = cor_manual_executor(t->m);
    /* A work guard: run() keeps going until manual_thread_stop. */
    ex.ops->on_work_started(ex.obj);
    cr_assert_eq(pthread_create(&t->thread, NULL, manual_thread_main, t), 0);
}

void manual_thread_stop(manual_thread *t)
{
    cor_executor ex = cor_manual_executor(t->m);
    ex.ops->on_work_finished(ex.obj);
    cr_assert_eq(pthread_join(t->thread, NULL), 0);
    cor_manual_destroy(t->m);
}

/* True if the running kernel is at least major.minor. */
bool kernel_at_least(int major, int minor)
{
    struct utsname u;
    int ma = 0, mi = 0;
    if (uname(&u) || sscanf(u.release, "%d.%d", &ma, &mi) != 2)
        return false;
    return ma > major || (ma == major && mi >= minor);
}

COR_DEFINE(nap, (int64_t ns), { self->ns = ns; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(self->ns));
    COR_RETURN(self->r);
}

int open_fds(void)
{
    DIR *d = opendir("/proc/self/fd");
    cr_assert(d);
    int n = 0;
    for (struct dirent *e; (e = readdir(d));)
        n += e->d_name[0] != '.';
    closedir(d);
    return n - 1; /* opendir's own */
}
