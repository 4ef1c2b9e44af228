/* Definitions shared by the library's source files; not installed. */
#ifndef CORING_SRC_INTERNAL_H
#define CORING_SRC_INTERNAL_H

#include <assert.h>
#include <stddef.h>

#define COR__API __attribute__((visibility("default")))

/* The struct that contains member `m` at address p. */
#define cor__container_of(p, type, m) ((type *)((char *)(p)-offsetof(type, m)))

#define COR__LIKELY(x) __builtin_expect(!!(x), 1)
#define COR__UNLIKELY(x) __builtin_expect(!!(x), 0)

#endif
