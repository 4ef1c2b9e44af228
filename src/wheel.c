/* The hierarchical timer wheel (see wheel.h for the layout). */
#include <string.h>

#include "wheel.h"

#define LEVELS COR__WHEEL_LEVELS
#define SLOT_BITS 6
#define SLOT_MASK (COR__WHEEL_SLOTS - 1)
#define SHIFT COR__WHEEL_TICK_SHIFT

/* Slot markers beyond the wheel's levels (SLOT_AFTER: cor__wheel_waits_placing). */
enum { SLOT_DUE = 0xfffe, SLOT_FIRED = 0xfffd, SLOT_AFTER = COR__WHEEL_SLOT_AFTER };

_Static_assert(LEVELS * COR__WHEEL_SLOTS < SLOT_AFTER, "slot numbers fit the marker space");

static inline unsigned digit(uint64_t tick, unsigned level)
{
    return (unsigned)(tick >> (level * SLOT_BITS)) & SLOT_MASK;
}

/* The tick a node expiring at when fires at: rounded up, so never early. */
static inline uint64_t tick_of(int64_t when)
{
    if (when <= 0)
        return 0;
    return ((uint64_t)when + ((1u << SHIFT) - 1)) >> SHIFT;
}

static void hlist_add(cor__tnode **head, cor__tnode *n)
{
    n->next = *head;
    if (n->next)
        n->next->pprev = &n->next;
    *head = n;
    n->pprev = head;
}

static void hlist_del(cor__tnode *n)
{
    *n->pprev = n->next;
    if (n->next)
        n->next->pprev = n->pprev;
}

void cor__wheel_init(cor__wheel *w, int64_t now)
{
    memset(w, 0, sizeof *w);
    w->elapsed = now > 0 ? (uint64_t)now >> SHIFT : 0;
    w->next = UINT64_MAX;
    w->after_min = INT64_MAX;
    w->stamped_min = INT64_MAX;
}

/* The first tick of slot s of level l, given the wheel's current tick. */
static uint64_t slot_start(uint64_t elapsed, unsigned l, unsigned s)
{
    unsigned span = (l + 1) * SLOT_BITS;
    uint64_t base = span >= 64 ? 0 : (elapsed >> span) << span;
    uint64_t start = base + ((uint64_t)s << (l * SLOT_BITS));
    if (s < digit(elapsed, l) && span < 64)
        start += (uint64_t)1 << span; /* the farthest slot, one turn ahead */
    return start;
}

static void place(cor__wheel *w, cor__tnode *n)
{
    uint64_t t = tick_of(n->when);
    if (t <= w->elapsed) {
        hlist_add(&w->due, n);
        n->slot = SLOT_DUE;
        w->next = w->elapsed;
        return;
    }
    unsigned l = (unsigned)(63 - __builtin_clzll(t ^ w->elapsed)) / SLOT_BITS;
    unsigned s;
    uint64_t first = t; /* when the wheel must look at n next */
    if (l >= LEVELS && t - w->elapsed < (uint64_t)1 << (LEVELS * SLOT_BITS) &&
        digit(t, LEVELS - 1) != digit(w->elapsed, LEVELS - 1))
        l = LEVELS - 1; /* past a turn of the top level but within one: its slot, a turn ahead */
    if (l < LEVELS) {
        s = digit(t, l);
    } else {
        /* Beyond the top level: wait in its farthest slot, then be placed again. */
        l = LEVELS - 1;
        s = (digit(w->elapsed, l) + SLOT_MASK) & SLOT_MASK;
        first = slot_start(w->elapsed, l, s);
    }
    uint64_t bit = (uint64_t)1 << s;
    if (!(w->occupied[l] & bit) || first < w->first[l][s])
        w->first[l][s] = first;
    hlist_add(&w->slots[l][s], n);
    n->slot = (uint16_t)(l * COR__WHEEL_SLOTS + s);
    w->occupied[l] |= bit;
    if (first < w->next)
        w->next = first;
}

void cor__wheel_add(cor__wheel *w, cor__tnode *n)
{
    n->fired = 0;
    w->count++;
    place(w, n);
}

void cor__wheel_add_after(cor__wheel *w, cor__tnode *n)
{
    n->fired = 0;
    w->count++;
    if (!w->after)
        w->after_min = INT64_MAX; /* the list emptied by removals since it was last stamped */
    hlist_add(&w->after, n);
    n->slot = SLOT_AFTER;
    if (n->when < w->after_min)
        w->after_min = n->when;
}

void cor__wheel_remove(cor__wheel *w, cor__tnode *n)
{
    if (n->slot == COR__TNODE_IDLE)
        return;
    hlist_del(n);
    if (n->slot < LEVELS * COR__WHEEL_SLOTS) {
        unsigned l = n->slot / COR__WHEEL_SLOTS, s = n->slot % COR__WHEEL_SLOTS;
        if (!w->slots[l][s])
            w->occupied[l] &= ~((uint64_t)1 << s);
    }
    n->slot = COR__TNODE_IDLE;
    w->count--;
}

int64_t cor__wheel_next(const cor__wheel *w)
{
    if (w->after)
        return 0;
    int64_t t = INT64_MAX;
    if (w->count && w->next != UINT64_MAX)
        t = w->next >= (uint64_t)INT64_MAX >> SHIFT ? INT64_MAX - 1 : (int64_t)(w->next << SHIFT);
    if (w->stamped) {
        /* The earliest a stamped node can expire (its shortest delay may have gone since). */
        int64_t s = cor__time_add(w->stamp, w->stamped_min);
        if (s < t)
            t = s == INT64_MAX ? INT64_MAX - 1 : s;
    }
    return t;
}

/* The lowest occupied level and its next slot; false if every slot is empty. */
static bool next_slot(const cor__wheel *w, unsigned *level, unsigned *slot)
{
    for (unsigned l = 0; l < LEVELS; l++) {
        uint64_t occ = w->occupied[l];
        if (!occ)
            continue;
        unsigned d = digit(w->elapsed, l);
        /* Rotate so the current slot is bit 0; the first set bit is the next slot. */
        uint64_t rot = d ? (occ >> d) | (occ << (64 - d)) : occ;
        *level = l;
        *slot = (d + (unsigned)__builtin_ctzll(rot)) & SLOT_MASK;
        return true;
    }
    return false;
}

/* Sorts a singly linked list by when, stably (merge sort); returns the new head. */
static cor__tnode *sort_by_when(cor__tnode *head, size_t n)
{
    if (n < 2)
        return head;
    cor__tnode *mid = head;
    for (size_t i = 1; i < n / 2; i++)
        mid = mid->next;
    cor__tnode *right = mid->next;
    mid->next = NULL;
    cor__tnode *a = sort_by_when(head, n / 2), *b = sort_by_when(right, n - n / 2);
    cor__tnode *out = NULL, **tail = &out;
    while (a && b) {
        cor__tnode **take = b->when < a->when ? &b : &a;
        *tail = *take;
        tail = &(*take)->next;
        *take = (*take)->next;
    }
    *tail = a ? a : b;
    return out;
}

/* Places every node of list, each at start plus its delay. */
static void place_from(cor__wheel *w, cor__tnode *list, int64_t start)
{
    while (list) {
        cor__tnode *next = list->next;
        list->when = cor__time_add(start, list->when);
        place(w, list);
        list = next;
    }
}

/* Places the stamped nodes (they have waited an expiry). */
static void place_stamped(cor__wheel *w)
{
    cor__tnode *x = w->stamped;
    w->stamped = NULL;
    w->stamped_min = INT64_MAX;
    place_from(w, x, w->stamp);
}

void cor__wheel_place(cor__wheel *w, int64_t now)
{
    place_stamped(w);
    cor__tnode *x = w->after;
    w->after = NULL;
    w->after_min = INT64_MAX;
    place_from(w, x, now);
}

void cor__wheel_expire(cor__wheel *w, int64_t now)
{
    if (w->stamped)
        place_stamped(w);
    if (w->after) {
        /* Their start is now; placed at the next expiry if still here (most are gone by then). */
        w->stamped = w->after;
        w->stamped->pprev = &w->stamped;
        w->stamp = now;
        w->stamped_min = w->after_min;
        w->after = NULL;
        w->after_min = INT64_MAX;
    }
    uint64_t t_now = now > 0 ? (uint64_t)now >> SHIFT : 0;
    /* What fires this time, unsorted, as a singly linked list. */
    cor__tnode *batch = NULL, **tail = &batch;
    size_t n = 0;
    unsigned l, s;
    while (next_slot(w, &l, &s)) {
        uint64_t start = slot_start(w->elapsed, l, s);
        if (start > t_now)
            break;
        w->elapsed = start;
        cor__tnode *list = w->slots[l][s];
        w->slots[l][s] = NULL;
        w->occupied[l] &= ~((uint64_t)1 << s);
        while (list) {
            cor__tnode *x = list;
            list = x->next;
            /* Due now (a level-0 slot's nodes all are): fire it rather than move it down. */
            if (l == 0 || tick_of(x->when) <= t_now) {
                *tail = x;
                tail = &x->next;
                n++;
            } else {
                place(w, x); /* a level down (or, beyond the top, the farthest slot again) */
            }
        }
    }
    /* Moving the wheel up to now skips no slot: every occupied one starts later. */
    if (w->elapsed < t_now)
        w->elapsed = t_now;
    for (cor__tnode *x = w->due; x; x = x->next, n++) {
        *tail = x;
        tail = &x->next;
    }
    w->due = NULL;
    *tail = NULL;
    if (n) {
        batch = sort_by_when(batch, n);
        /* Append behind what fired earlier and was not taken yet, then mend the back links. */
        cor__tnode **end = &w->fired;
        while (*end)
            end = &(*end)->next;
        *end = batch;
        for (cor__tnode **pp = end; *pp; pp = &(*pp)->next) {
            (*pp)->pprev = pp;
            (*pp)->slot = SLOT_FIRED;
        }
    }
    /* The next slot holds the earliest nodes: come back at its first tick, not at its start. */
    w->next = UINT64_MAX;
    if (next_slot(w, &l, &s))
        w->next = w->first[l][s];
}

cor__tnode *cor__wheel_pop_fired(cor__wheel *w)
{
    cor__tnode *n = w->fired;
    if (!n)
        return NULL;
    hlist_del(n);
    n->slot = COR__TNODE_IDLE;
    n->fired = 1;
    w->count--;
    return n;
}
