/*
 * Common definitions shared by every coring header: the export macro, the
 * frame and handle types, and error naming.
 */
#ifndef CORING_COMMON_H
#define CORING_COMMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <errno.h>

#include "coring/config.h"
#include "coring/version.h"

#if defined(COR_BUILDING_LIBRARY)
#define COR_API __attribute__((visibility("default")))
#else
#define COR_API
#endif

/*
 * The library's thread-local variables use the initial-exec model: from the
 * shared library too, an access is one %fs-relative load, not a call to
 * __tls_get_addr. A program that loads libcoring.so with dlopen() after it
 * started needs that much static TLS to spare (the library has under 1 KiB,
 * which glibc's spare room holds). jemalloc, which the library links, uses
 * the same model with more: dlopen() of libcoring.so fails with "cannot
 * allocate memory in static TLS block" unless jemalloc is loaded at start
 * (linked, or LD_PRELOAD).
 */
#define COR_THREAD_LOCAL __thread __attribute__((tls_model("initial-exec")))

#ifdef __cplusplus
#define COR_BEGIN_DECLS extern "C" {
#define COR_END_DECLS }
#else
#define COR_BEGIN_DECLS
#define COR_END_DECLS
#endif

COR_BEGIN_DECLS

/* A coroutine frame. Every frame starts with this header (task.h). */
typedef struct cor_frame cor_frame;

/* A handle is a pointer to a frame header; NULL is the noop handle. */
typedef cor_frame *cor_handle;

/* The noop handle: resuming it does nothing; a trampoline stops on it. */
#define COR_NOOP ((cor_handle)0)

/* An execution context: owns services and a default frame allocator (context.h). */
typedef struct cor_execution_context cor_execution_context;

/* A memory resource: allocate/deallocate through an ops table (alloc.h). */
typedef struct cor_memory_resource cor_memory_resource;

/*
 * Returns a static, human-readable name for a coring result code: 0 for
 * success or any -errno value returned by a coring function. Never NULL.
 * Any thread.
 */
COR_API const char *cor_strerror(int err);

COR_END_DECLS

#endif
