/*
 * Timers on an io_context: sleeps, timer objects and the whole-task
 * timeouts of compose.c, all nodes of the context's timer wheel (wheel.c);
 * and the expiry pass the run loop makes, which also fires operation
 * deadlines. A sleep or a timer wait is an operation that never reaches a
 * backend (its row in the opcode table says FRONT): it starts on the wheel
 * and completes from the run loop.
 */
#include <time.h>

#include "coring/timer.h"
#include "internal.h"
#include "io_internal.h"

int64_t cor_clock_now(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000000000 + ts.tv_nsec;
}

int64_t cor__time_after(int64_t ns)
{
    return cor__time_add(cor_clock_now(), ns);
}

/* ---- TIMEOUT operations ------------------------------------------------------------------ */

static struct cor_io_await *timeout_new(int64_t when, cor_timer *t, bool valid)
{
    struct cor_io_await *a = cor__io_await_new(COR__IO_TIMEOUT, 0);
    if (a) {
        cor__io_op *op = cor__op_of(a);
        op->u.tmo.timer = t;
        op->u.tmo.u.when = when;
        if (!valid)
            cor__io_op_invalid(op);
    }
    return a;
}

static void waiter_link(cor_timer *t, cor__io_op *op)
{
    cor__io_op *head = (cor__io_op *)(void *)t->waiters;
    op->u.tmo.u.waiters.prev = NULL;
    op->u.tmo.u.waiters.next = head;
    if (head)
        head->u.tmo.u.waiters.prev = op;
    t->waiters = (cor_io_op *)(void *)op;
    t->count++;
}

void cor__timeout_finish(cor__io_op *op)
{
    cor_timer *t = op->u.tmo.timer;
    if (!t)
        return;
    cor__io_op *prev = op->u.tmo.u.waiters.prev, *next = op->u.tmo.u.waiters.next;
    if (prev)
        prev->u.tmo.u.waiters.next = next;
    else
        t->waiters = (cor_io_op *)(void *)next;
    if (next)
        next->u.tmo.u.waiters.prev = prev;
    t->count--;
    op->u.tmo.timer = NULL;
}

int cor__timeout_start(cor_io_context *io, cor__io_op *op)
{
    cor_timer *t = op->u.tmo.timer;
    int64_t expiry;
    if (t) {
        if (t->io != io)
            return -EPERM;
        expiry = t->when;
        waiter_link(t, op);
    } else {
        expiry = op->u.tmo.u.when;
    }
    int64_t when = expiry;
    if ((op->flags & COR__OPF_DEADLINE) && op->timer.when < expiry) {
        when = op->timer.when;
        op->flags |= COR__OPF_DEADLINE_FIRST;
    }
    op->timer.when = when;
    cor__wheel_add(&io->wheel, &op->timer);
    return 0;
}

struct cor_io_await *cor_sleep_for(int64_t ns)
{
    return timeout_new(ns >= 0 ? cor__time_after(ns) : 0, NULL, ns >= 0);
}

struct cor_io_await *cor_sleep_until(int64_t abs_ns)
{
    return timeout_new(abs_ns, NULL, abs_ns >= 0);
}

struct cor_io_await *cor_timer_wait(cor_timer *t)
{
    return timeout_new(0, t, t != NULL);
}

/* ---- timer objects ----------------------------------------------------------------------- */

int cor_timer_init(cor_timer *t, cor_io_context *io)
{
    if (!t || !io)
        return -EINVAL;
    t->io = io;
    t->when = INT64_MAX;
    t->waiters = NULL;
    t->count = 0;
    return 0;
}

int cor_timer_cancel(cor_timer *t)
{
    if (!t)
        return -EINVAL;
    if (!t->count)
        return 0;
    if (cor__io_running != t->io)
        return -EPERM;
    int n = 0;
    cor__io_op *op = (cor__io_op *)(void *)t->waiters;
    while (op) {
        cor__io_op *next = op->u.tmo.u.waiters.next;
        op->u.tmo.timer = NULL;
        cor__io_op_cancel(t->io, op);
        n++;
        op = next;
    }
    t->waiters = NULL;
    t->count = 0;
    return n;
}

int cor_timer_expires_at(cor_timer *t, int64_t abs_ns)
{
    if (!t || abs_ns < 0)
        return -EINVAL;
    int n = cor_timer_cancel(t);
    if (n >= 0)
        t->when = abs_ns;
    return n;
}

int cor_timer_expires_after(cor_timer *t, int64_t ns)
{
    if (!t || ns < 0)
        return -EINVAL;
    return cor_timer_expires_at(t, cor__time_after(ns));
}

int64_t cor_timer_expiry(const cor_timer *t)
{
    return t ? t->when : -EINVAL;
}

/* ---- callback timers and the expiry pass -------------------------------------------------- */

void cor__io_timeout_arm(cor_io_context *io, cor__timeout *t, int64_t when)
{
    t->node.kind = COR__TNODE_CALLBACK;
    t->node.when = when;
    cor__wheel_add(&io->wheel, &t->node);
    io->timeouts++;
}

void cor__io_timeout_disarm(cor_io_context *io, cor__timeout *t)
{
    if (!cor__wheel_holds(&t->node))
        return;
    cor__wheel_remove(&io->wheel, &t->node);
    io->timeouts--;
}

long cor__io_expire_timers(cor_io_context *io, int64_t now)
{
    cor__wheel_expire(&io->wheel, now);
    long n = 0;
    cor__tnode *x;
    while ((x = cor__wheel_pop_fired(&io->wheel))) {
        n++;
        if (x->kind == COR__TNODE_CALLBACK) {
            cor__timeout *t = cor__container_of(x, cor__timeout, node);
            io->timeouts--;
            t->fire(t);
            continue;
        }
        cor__io_op *op = cor__container_of(x, cor__io_op, timer);
        if (op->opcode == COR__IO_TIMEOUT)
            cor__io_op_done_later(io, op, (op->flags & COR__OPF_DEADLINE_FIRST) ? -ETIME : 0);
        else
            cor__io_op_deadline_fired(io, op);
    }
    return n;
}
