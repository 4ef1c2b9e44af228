/*
 * The wait list of sync.c, shared with channel.c: suspending a waiter on a
 * list, granting it (its result set, off the list) and resuming it on its
 * own executor. See the top of sync.c for who resumes a waiter. Not
 * installed.
 */
#ifndef CORING_SRC_SYNC_WAIT_H
#define CORING_SRC_SYNC_WAIT_H

#include "coring/sync.h"

/* A new wait on obj whose start (resume function) is start; NULL if out of memory. */
cor_sync_wait *cor__wait_new(void *obj, cor_resume_fn start);

/* Completes w at once with result (from its start function). */
cor_handle cor__wait_complete(cor_sync_wait *w, int result);

/*
 * Queues w on l, whose lock the caller holds (and which this releases), and
 * suspends it, cancellable through its stop token. Returns the handle to run
 * next.
 */
cor_handle cor__wait_suspend_locked(cor_sync_wait *w, cor__wait_list *l);

/* Takes the oldest waiter off l (lock held), its result 0; NULL if none. */
cor_sync_wait *cor__wait_pop_locked(cor__wait_list *l);

/* Drops the waker's reference of a waiter taken off its list: it resumes on its executor. */
void cor__wait_release(cor_sync_wait *w);

/* cor__wait_release for each waiter of a chain linked through next. */
void cor__wait_release_chain(cor_sync_wait *w);

#endif
