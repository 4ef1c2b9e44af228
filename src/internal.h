/* Definitions shared by the library's source files; not installed. */
#ifndef CORING_SRC_INTERNAL_H
#define CORING_SRC_INTERNAL_H

#include <assert.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>

#define COR__API __attribute__((visibility("default")))

/* The struct that contains member `m` at address p. */
#define cor__container_of(p, type, m) ((type *)((char *)(p)-offsetof(type, m)))

#define COR__LIKELY(x) __builtin_expect(!!(x), 1)
#define COR__UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * A test-and-test-and-set spin lock for short critical sections that must
 * not allocate or sleep in the kernel on the fast path (stop callback
 * lists, wait lists). Contended waiters yield the CPU.
 */
static inline void cor__spin_lock(uint32_t *l)
{
    for (;;) {
        if (!__atomic_exchange_n(l, 1, __ATOMIC_ACQUIRE))
            return;
        while (__atomic_load_n(l, __ATOMIC_RELAXED))
            sched_yield();
    }
}

static inline void cor__spin_unlock(uint32_t *l)
{
    __atomic_store_n(l, 0, __ATOMIC_RELEASE);
}

#endif
