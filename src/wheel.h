/*
 * The timer wheel of an io_context: every sleep, timer wait, operation
 * deadline and whole-task timeout on the context is a node here, and the
 * context arms one kernel wait for the earliest of them (the timeout of its
 * next wait for completions). Adding and removing a node is O(1) and
 * touches nothing but the node and its slot; nothing is allocated (nodes
 * are embedded in operations and timeouts). Owner thread only. Not
 * installed.
 *
 * Layout: hierarchical, 7 levels of 64 slots. A tick is 2^10 ns (1.024
 * us); level L's slots span 64^L ticks each, so level 0 covers 65 us,
 * level 3 17 s and level 6 52 days (later expiries wait in the farthest
 * slot and are placed again when it is reached; one past a turn of the top
 * level but less than a turn away waits in its own slot, a turn ahead). A
 * node lives at the lowest level whose slot still separates its expiry tick
 * from the wheel's current tick; when the wheel reaches a slot of level
 * L > 0, those of its nodes that are due fire and the others move down a
 * level (each node moves at most 6 times in its life, and a node removed
 * before that -- the usual fate of a deadline -- never moves).
 *
 * A node never fires early: its tick is its expiry rounded up. Expiry
 * delivers the due nodes sorted by expiry time (a stable sort: equal times
 * keep their order), so timers fire in time order.
 *
 * The time it reports (cor__wheel_next), which the context gives the kernel
 * as the timeout of its wait, is the earliest expiry's tick: each occupied
 * slot keeps the earliest tick added to it since it was last empty, so the
 * nodes of a high level's slot (which spans up to 64^6 ticks) do not wake
 * the context at the slot's start just to move down a level; they move when
 * the earliest of them is due. The time is early only when that earliest
 * node was removed (a deadline whose operation completed): the context then
 * wakes once for nothing, and the slot's nodes move down. Nodes beyond the
 * top level are looked at when their slot starts.
 *
 * A node may also be added with a time relative to now (cor__wheel_add_after)
 * without reading the clock: it waits on a list until the wheel next
 * expires, which the context does at its next pass (cor__wheel_next is then
 * 0), or until the context's run returns (cor__wheel_place). That expiry's
 * time becomes the node's start (its expiry is that time plus its delay),
 * and the node waits, stamped, on a second list until the expiry after, or
 * until that expiry time comes if it is sooner (cor__wheel_next counts it),
 * and only then takes a slot. Since its start is read after the node was
 * added, it never fires early either; it may fire one pass late. A node
 * removed before it is placed -- an operation that completed in the pass
 * that started it or in the next, as a send does -- costs no clock read of
 * its own and never touches a slot.
 */
#ifndef CORING_SRC_WHEEL_H
#define CORING_SRC_WHEEL_H

#include "io_seam.h"

#define COR__WHEEL_LEVELS 7
#define COR__WHEEL_SLOTS 64
#define COR__WHEEL_TICK_SHIFT 10
#define COR__WHEEL_SLOT_AFTER 0xfffcu /* cor__tnode.slot of a node waiting to be placed */

typedef struct cor__wheel {
    uint64_t elapsed; /* the current tick: every node in a slot is later       */
    uint64_t next;    /* no node is due before this tick (UINT64_MAX: none)     */
    size_t count;     /* nodes held, in slots, due or fired                     */
    uint64_t occupied[COR__WHEEL_LEVELS];
    cor__tnode *slots[COR__WHEEL_LEVELS][COR__WHEEL_SLOTS];
    /* per occupied slot: no node in it needs the wheel's attention before this tick */
    uint64_t first[COR__WHEEL_LEVELS][COR__WHEEL_SLOTS];
    cor__tnode *due;     /* added with a tick already reached                   */
    cor__tnode *after;   /* added relative to a time not yet read (add_after)   */
    cor__tnode *stamped; /* add_after nodes whose start is stamp, not yet placed */
    cor__tnode *fired;   /* expired, in time order, not yet taken               */
    int64_t after_min;   /* the shortest delay on after (INT64_MAX: none)       */
    int64_t stamp;       /* the start of the stamped nodes (ns)                 */
    int64_t stamped_min; /* the shortest delay stamped (INT64_MAX: none)        */
} cor__wheel;

/* start + ns (ns >= 0), INT64_MAX (never) past the clock's range. */
static inline int64_t cor__time_add(int64_t start, int64_t ns)
{
    return ns > INT64_MAX - start ? INT64_MAX : start + ns;
}

/* Initializes w empty at time now (CLOCK_MONOTONIC ns). */
void cor__wheel_init(cor__wheel *w, int64_t now);

/* Adds n (not in the wheel) to expire at n->when. */
void cor__wheel_add(cor__wheel *w, cor__tnode *n);

/*
 * Adds n (not in the wheel) to expire n->when ns (> 0) after the time the
 * wheel reads at its next expiry, no earlier than that much after now.
 */
void cor__wheel_add_after(cor__wheel *w, cor__tnode *n);

/* Places the nodes added with add_after: the stamped ones, and the others taking now as
 * their start. */
void cor__wheel_place(cor__wheel *w, int64_t now);

/* True if n waits to be placed (added with add_after, not yet in a slot). */
static inline bool cor__wheel_waits_placing(const cor__tnode *n)
{
    return n->slot == COR__WHEEL_SLOT_AFTER;
}

/* Removes n, wherever it is in the wheel (a no-op if it is in none). */
void cor__wheel_remove(cor__wheel *w, cor__tnode *n);

/*
 * The time (ns) by which cor__wheel_expire must run next; INT64_MAX if the
 * wheel is empty; 0 while nodes wait to be placed.
 */
int64_t cor__wheel_next(const cor__wheel *w);

/*
 * Places the stamped add_after nodes, stamps the newer ones with now, then
 * moves every node whose expiry is at or before now to the fired list, in
 * time order.
 */
void cor__wheel_expire(cor__wheel *w, int64_t now);

/* Takes the oldest fired node (marked fired, out of the wheel), or NULL. */
cor__tnode *cor__wheel_pop_fired(cor__wheel *w);

/* True if n is in the wheel (scheduled, due or fired and not yet taken). */
static inline bool cor__wheel_holds(const cor__tnode *n)
{
    return n->slot != COR__TNODE_IDLE;
}

#endif
