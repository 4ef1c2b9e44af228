/*
 * Execution contexts and services. A context (the manual executor's, an
 * io_context, a thread pool) owns services, created on first use and shut
 * down and destroyed in reverse order of creation, and the default frame
 * allocator for launches on its executors that name none.
 */
#ifndef CORING_CONTEXT_H
#define CORING_CONTEXT_H

#include <pthread.h>

#include "coring/common.h"

COR_BEGIN_DECLS

typedef struct cor__service cor__service;
struct cor__root;

/*
 * A service type. The definition's address is its identity: one instance per
 * context per definition. init is called once, under the context's lock, with
 * size zeroed bytes; it returns 0 or -errno (the service is then not
 * created). The lock is not recursive: init must not use or find services of
 * the same context (create those first). shutdown (optional) runs for every
 * service, newest first, before any destroy (optional), also newest first.
 */
typedef struct cor_service_def {
    const char *name;
    size_t size;
    int (*init)(void *svc, cor_execution_context *ctx);
    void (*shutdown)(void *svc);
    void (*destroy)(void *svc);
} cor_service_def;

/*
 * The context core. Contexts embed it; a custom execution context may too,
 * with cor_execution_context_init/_shutdown. Fields are the library's.
 */
struct cor_execution_context {
    pthread_mutex_t lock;
    cor__service *services;        /* newest first                */
    cor_memory_resource *resource; /* default frame allocator, NULL: library default */
    bool shut_down;
    uint32_t roots_lock;     /* a spin lock over roots                                  */
    struct cor__root_link *roots; /* launched tasks and group children, not finished (dump.h) */
    uint32_t foreign_wakes;  /* the library's own threads that may still post a wake-up here
                                (a cor_resolve lookup): destroy waits for them             */
};

/* Initializes ctx with no services. Returns 0, or -EINVAL for NULL. */
COR_API int cor_execution_context_init(cor_execution_context *ctx);

/*
 * Shuts down and destroys every service, newest first, and frees them; later
 * cor_use_service calls fail with -ESHUTDOWN. Idempotent. Returns 0 or -EINVAL.
 * Call from one thread, once no other thread uses the context.
 */
COR_API int cor_execution_context_shutdown(cor_execution_context *ctx);

/*
 * Shuts ctx down (if it was not yet) and releases what init acquired. The
 * context must not be used afterwards. Returns 0 or -EINVAL.
 */
COR_API int cor_execution_context_destroy(cor_execution_context *ctx);

/*
 * Returns the service of type def in ctx through *out, creating it on first
 * use. Returns 0; -EINVAL for NULL arguments or a def without size or init;
 * -ESHUTDOWN after shutdown; -ENOMEM; or the error init returned. Any thread.
 */
COR_API int cor_use_service(cor_execution_context *ctx, const cor_service_def *def, void **out);

/* Returns the service of type def in ctx if it exists, else NULL. Any thread. */
COR_API void *cor_find_service(cor_execution_context *ctx, const cor_service_def *def);

/*
 * Sets the default frame allocator of launches on ctx's executors (NULL
 * restores the library default). mr must outlive every frame allocated from
 * it. Returns 0 or -EINVAL for a NULL ctx. Call before launching work.
 */
COR_API int cor_execution_context_set_resource(cor_execution_context *ctx, cor_memory_resource *mr);

/* Returns the default frame allocator of ctx: its own, else the library default. Never NULL. */
COR_API cor_memory_resource *cor_execution_context_resource(cor_execution_context *ctx);

COR_END_DECLS

#endif
