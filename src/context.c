/* Execution contexts: services created on first use, torn down newest first. */
#include <stdlib.h>

#include "coring/alloc.h"
#include "coring/context.h"
#include "fifo.h"
#include "internal.h"

struct cor__service {
    cor__service *next; /* older service */
    const cor_service_def *def;
    max_align_t data[]; /* the service object */
};

int cor_execution_context_init(cor_execution_context *ctx)
{
    if (!ctx)
        return -EINVAL;
    int rc = pthread_mutex_init(&ctx->lock, NULL);
    if (rc)
        return -rc;
    ctx->services = NULL;
    ctx->resource = NULL;
    ctx->shut_down = false;
    ctx->roots_lock = 0;
    ctx->roots = NULL;
    ctx->foreign_wakes = 0;
    return 0;
}

int cor_execution_context_shutdown(cor_execution_context *ctx)
{
    if (!ctx)
        return -EINVAL;
    pthread_mutex_lock(&ctx->lock);
    if (ctx->shut_down) {
        pthread_mutex_unlock(&ctx->lock);
        return 0;
    }
    ctx->shut_down = true;
    cor__service *list = ctx->services;
    ctx->services = NULL;
    pthread_mutex_unlock(&ctx->lock);

    /* The list is newest first, which is the order both passes need. */
    for (cor__service *s = list; s; s = s->next)
        if (s->def->shutdown)
            s->def->shutdown(s->data);
    while (list) {
        cor__service *next = list->next;
        if (list->def->destroy)
            list->def->destroy(list->data);
        free(list);
        list = next;
    }
    return 0;
}

int cor_execution_context_destroy(cor_execution_context *ctx)
{
    if (!ctx)
        return -EINVAL;
    cor_execution_context_shutdown(ctx);
    pthread_mutex_destroy(&ctx->lock);
    return 0;
}

static cor__service *find_locked(cor_execution_context *ctx, const cor_service_def *def)
{
    for (cor__service *s = ctx->services; s; s = s->next)
        if (s->def == def)
            return s;
    return NULL;
}

int cor_use_service(cor_execution_context *ctx, const cor_service_def *def, void **out)
{
    if (!ctx || !def || !out || !def->size || !def->init)
        return -EINVAL;
    pthread_mutex_lock(&ctx->lock);
    int rc = 0;
    if (ctx->shut_down) {
        rc = -ESHUTDOWN;
        goto out;
    }
    cor__service *s = find_locked(ctx, def);
    if (!s) {
        s = calloc(1, sizeof *s + def->size);
        if (!s) {
            rc = -ENOMEM;
            goto out;
        }
        s->def = def;
        rc = def->init(s->data, ctx);
        if (rc) {
            free(s);
            goto out;
        }
        s->next = ctx->services;
        ctx->services = s;
    }
    *out = s->data;
out:
    pthread_mutex_unlock(&ctx->lock);
    return rc;
}

void *cor_find_service(cor_execution_context *ctx, const cor_service_def *def)
{
    if (!ctx || !def)
        return NULL;
    pthread_mutex_lock(&ctx->lock);
    cor__service *s = ctx->shut_down ? NULL : find_locked(ctx, def);
    pthread_mutex_unlock(&ctx->lock);
    return s ? s->data : NULL;
}

int cor_execution_context_set_resource(cor_execution_context *ctx, cor_memory_resource *mr)
{
    if (!ctx)
        return -EINVAL;
    ctx->resource = mr;
    return 0;
}

cor_memory_resource *cor_execution_context_resource(cor_execution_context *ctx)
{
    return ctx && ctx->resource ? ctx->resource : cor_default_resource();
}

uint32_t cor__ctx_foreign_wakes(const cor_execution_context *ctx)
{
    return __atomic_load_n(&ctx->foreign_wakes, __ATOMIC_ACQUIRE);
}

void cor__ctx_foreign_wake_add(cor_execution_context *ctx, int delta)
{
    __atomic_add_fetch(&ctx->foreign_wakes, (uint32_t)delta, __ATOMIC_ACQ_REL);
}

void cor__ctx_empty_queue(cor_execution_context *ctx, pthread_mutex_t *lock, struct cor__fifo *q)
{
    /* Read before emptying: a lookup's thread counts out only after its post has landed. */
    uint32_t foreign = cor__ctx_foreign_wakes(ctx);
    for (;;) {
        pthread_mutex_lock(lock);
        cor_handle h = cor__fifo_pop(q);
        pthread_mutex_unlock(lock);
        if (h) {
            cor_frame_destroy(h);
            continue;
        }
        /* Tasks waiting on a wait list would never run again; what they release may queue. */
        if (cor__roots_abandon_waits(ctx))
            continue;
        /* A lookup's thread may be posting a waiter it woke: wait for it, then empty again. */
        if (!foreign)
            break;
        sched_yield();
        foreign = cor__ctx_foreign_wakes(ctx);
    }
}
