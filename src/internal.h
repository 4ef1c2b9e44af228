/* Definitions shared by the library's source files; not installed. */
#ifndef CORING_SRC_INTERNAL_H
#define CORING_SRC_INTERNAL_H

#include <assert.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>

/* The struct that contains member `m` at address p. */
#define cor__container_of(p, type, m) ((type *)((char *)(p)-offsetof(type, m)))

#define COR__LIKELY(x) __builtin_expect(!!(x), 1)
#define COR__UNLIKELY(x) __builtin_expect(!!(x), 0)

/*
 * Adds v to a counter that one thread writes and any thread may read: a
 * relaxed load and store (plain moves on x86), so readers never see a torn
 * value and the writer pays no locked instruction.
 */
#define cor__stat_add(field, v)                                                                    \
    __atomic_store_n(&(field), __atomic_load_n(&(field), __ATOMIC_RELAXED) + (v), __ATOMIC_RELAXED)

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
