/* Stop sources, tokens and callbacks, including the deregistration rules. */
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <criterion/criterion.h>

#include "util.h"

struct rec {
    cor_stop_callback cb;
    int order[8];
    int *n;
    int id;
};

static int calls;

static void record(cor_stop_callback *cb)
{
    struct rec *r = (struct rec *)cb;
    r->order[0] = ++calls;
    r->id = -r->id;
}

static void count_calls(cor_stop_callback *cb)
{
    (void)cb;
    calls++;
}

Test(stop, request_runs_callbacks_once_in_registration_order)
{
    cor_stop_source s;
    cr_assert_eq(cor_stop_source_init(&s), 0);
    cor_stop_token t = cor_stop_source_token(&s);
    cr_assert(cor_stop_possible(t));
    cr_assert(!cor_stop_requested(t));
    struct rec a = {.id = 1}, b = {.id = 2}, c = {.id = 3};
    calls = 0;
    cr_assert_eq(cor_stop_callback_register(&a.cb, t, record), 0);
    cr_assert_eq(cor_stop_callback_register(&b.cb, t, record), 0);
    cr_assert_eq(cor_stop_callback_register(&c.cb, t, record), 0);
    cr_assert_eq(cor_stop_callback_deregister(&b.cb), 0);
    cr_assert_eq(cor_stop_source_request(&s), 1);
    cr_assert_eq(cor_stop_source_request(&s), 0, "only the first request counts");
    cr_assert(cor_stop_requested(t));
    cr_assert_eq(calls, 2);
    cr_assert_eq(a.order[0], 1);
    cr_assert_eq(c.order[0], 2);
    cr_assert_eq(b.order[0], 0, "a deregistered callback never runs");
    cr_assert_eq(cor_stop_callback_deregister(&a.cb), 0);
}

Test(stop, register_after_request_runs_at_once)
{
    cor_stop_source s = COR_STOP_SOURCE_INIT;
    cor_stop_source_request(&s);
    struct rec a = {.id = 1};
    calls = 0;
    cr_assert_eq(cor_stop_callback_register(&a.cb, cor_stop_source_token(&s), record), 1);
    cr_assert_eq(calls, 1);
    cr_assert_eq(cor_stop_callback_deregister(&a.cb), 0);
}

Test(stop, bad_input)
{
    struct rec a = {.id = 1};
    cor_stop_token never = {NULL};
    cr_assert(!cor_stop_possible(never));
    cr_assert(!cor_stop_requested(never));
    cr_assert_eq(cor_stop_callback_register(&a.cb, never, record), -EINVAL);
    cr_assert_eq(cor_stop_callback_register(NULL, never, record), -EINVAL);
    cor_stop_source s = COR_STOP_SOURCE_INIT;
    cr_assert_eq(cor_stop_callback_register(&a.cb, cor_stop_source_token(&s), NULL), -EINVAL);
    cr_assert_eq(cor_stop_callback_deregister(NULL), -EINVAL);
    cr_assert_eq(cor_stop_source_request(NULL), -EINVAL);
    cr_assert_eq(cor_stop_source_init(NULL), -EINVAL);
}

static void self_deregister(cor_stop_callback *cb)
{
    struct rec *r = (struct rec *)cb;
    r->order[0] = ++calls;
    cr_assert_eq(cor_stop_callback_deregister(cb), 0);
    r->id = 99; /* still ours: deregistration from inside did not wait or free */
}

Test(stop, callback_may_deregister_itself)
{
    cor_stop_source s = COR_STOP_SOURCE_INIT;
    struct rec a = {.id = 1};
    calls = 0;
    cr_assert_eq(cor_stop_callback_register(&a.cb, cor_stop_source_token(&s), self_deregister), 0);
    cr_assert_eq(cor_stop_source_request(&s), 1);
    cr_assert_eq(a.id, 99);
    cr_assert_eq(calls, 1);
}

/* Deregistering while another thread runs the callback waits for it to return. */
static int slow_state;

static void slow(cor_stop_callback *cb)
{
    __atomic_store_n(&slow_state, 1, __ATOMIC_RELEASE);
    usleep(100 * 1000);
    __atomic_store_n(&slow_state, 2, __ATOMIC_RELEASE);
}

static void *requester(void *arg)
{
    cor_stop_source_request(arg);
    return NULL;
}

Test(stop, deregister_waits_for_a_callback_running_elsewhere)
{
    cor_stop_source s = COR_STOP_SOURCE_INIT;
    struct rec a = {.id = 1};
    slow_state = 0;
    cr_assert_eq(cor_stop_callback_register(&a.cb, cor_stop_source_token(&s), slow), 0);
    pthread_t t;
    cr_assert_eq(pthread_create(&t, NULL, requester, &s), 0);
    while (__atomic_load_n(&slow_state, __ATOMIC_ACQUIRE) == 0)
        usleep(100);
    cr_assert_eq(cor_stop_callback_deregister(&a.cb), 0);
    cr_assert_eq(__atomic_load_n(&slow_state, __ATOMIC_ACQUIRE), 2,
                 "deregister returned while the callback was still running");
    pthread_join(t, NULL);
}

/* Many threads registering and deregistering while one requests: each callback runs at most once.
 */
struct racer {
    cor_stop_source *s;
    long ran;
};

static __thread struct racer *cur;
static long race_runs;

static void count_run(cor_stop_callback *cb)
{
    __atomic_fetch_add(&race_runs, 1, __ATOMIC_RELAXED);
}

static void *churn(void *arg)
{
    cor_stop_source *s = arg;
    long registered_after = 0;
    for (int i = 0; i < 20000; i++) {
        cor_stop_callback cb;
        int rc = cor_stop_callback_register(&cb, cor_stop_source_token(s), count_run);
        if (rc == 1)
            registered_after++;
        cor_stop_callback_deregister(&cb);
    }
    (void)cur;
    return (void *)registered_after;
}

Test(stop, concurrent_register_deregister_and_request)
{
    cor_stop_source s = COR_STOP_SOURCE_INIT;
    race_runs = 0;
    pthread_t th[3];
    for (int i = 0; i < 3; i++)
        cr_assert_eq(pthread_create(&th[i], NULL, churn, &s), 0);
    usleep(2000);
    cor_stop_source_request(&s);
    long after = 0;
    for (int i = 0; i < 3; i++) {
        void *r;
        pthread_join(th[i], &r);
        after += (long)r;
    }
    /* Every registration after the request ran synchronously; at most one per thread
     * was live (and run by the requester) at the moment of the request. */
    cr_assert_geq(race_runs, after);
    cr_assert_leq(race_runs, after + 3);
}

static int order_log[16];
static int order_n;

static void log_id(cor_stop_callback *cb)
{
    order_log[order_n++] = ((struct rec *)cb)->id;
}

Test(stop, removing_the_newest_or_oldest_keeps_the_order_of_the_rest)
{
    cor_stop_source s = COR_STOP_SOURCE_INIT;
    cor_stop_token t = cor_stop_source_token(&s);
    struct rec r[6];
    for (int i = 0; i < 6; i++)
        r[i].id = i + 1;
    order_n = 0;
    cr_assert_eq(cor_stop_callback_register(&r[0].cb, t, log_id), 0);
    cr_assert_eq(cor_stop_callback_register(&r[1].cb, t, log_id), 0);
    cr_assert_eq(cor_stop_callback_register(&r[2].cb, t, log_id), 0);
    cr_assert_eq(cor_stop_callback_deregister(&r[2].cb), 0); /* the newest */
    cr_assert_eq(cor_stop_callback_register(&r[3].cb, t, log_id), 0);
    cr_assert_eq(cor_stop_callback_deregister(&r[0].cb), 0); /* the oldest */
    cr_assert_eq(cor_stop_callback_register(&r[4].cb, t, log_id), 0);
    cr_assert_eq(cor_stop_callback_deregister(&r[1].cb), 0);
    cr_assert_eq(cor_stop_callback_deregister(&r[3].cb), 0);
    cr_assert_eq(cor_stop_callback_deregister(&r[4].cb), 0); /* now empty */
    cr_assert_eq(cor_stop_callback_register(&r[5].cb, t, log_id), 0);
    cr_assert_eq(cor_stop_callback_register(&r[1].cb, t, log_id), 0);
    cr_assert_eq(cor_stop_source_request(&s), 1);
    cr_assert_eq(order_n, 2);
    cr_assert_eq(order_log[0], 6);
    cr_assert_eq(order_log[1], 2);
}

Test(stop, ten_thousand_registrations_each_run_once)
{
    enum { N = 10000 };
    cor_stop_source s = COR_STOP_SOURCE_INIT;
    cor_stop_callback *cbs = calloc(N, sizeof *cbs);
    cr_assert_not_null(cbs);
    calls = 0;
    for (int i = 0; i < N; i++)
        cr_assert_eq(cor_stop_callback_register(&cbs[i], cor_stop_source_token(&s), count_calls),
                     0);
    for (int i = 0; i < N; i += 2)
        cr_assert_eq(cor_stop_callback_deregister(&cbs[i]), 0);
    cr_assert_eq(cor_stop_source_request(&s), 1);
    cr_assert_eq(calls, N / 2);
    free(cbs);
}

/* ---- linked stop sources ---- */

static int fired_count;

static void count_fired(cor_stop_callback *cb)
{
    (void)cb;
    fired_count++;
}

Test(stop, linked_source_stops_with_its_parent_not_the_other_way)
{
    cor_stop_source parent = COR_STOP_SOURCE_INIT;
    cor_linked_stop_source child;
    cr_assert_eq(cor_linked_stop_source_init(&child, cor_stop_source_token(&parent)), 0);
    cor_stop_token t = cor_linked_stop_source_token(&child);
    cr_assert(cor_stop_possible(t));
    cr_assert_not(cor_stop_requested(t));
    /* The child's own stop does not reach the parent. */
    cor_linked_stop_source sibling;
    cr_assert_eq(cor_linked_stop_source_init(&sibling, cor_stop_source_token(&parent)), 0);
    cr_assert_eq(cor_stop_source_request(&sibling.source), 1);
    cr_assert_not(cor_stop_requested(cor_stop_source_token(&parent)));
    cr_assert_eq(cor_linked_stop_source_destroy(&sibling), 0);
    /* The parent's reaches the child and its callbacks. */
    cor_stop_callback cb;
    fired_count = 0;
    cr_assert_eq(cor_stop_callback_register(&cb, t, count_fired), 0);
    cr_assert_eq(cor_stop_source_request(&parent), 1);
    cr_assert(cor_stop_requested(t));
    cr_assert_eq(fired_count, 1);
    cr_assert_eq(cor_stop_callback_deregister(&cb), 0);
    cr_assert_eq(cor_linked_stop_source_destroy(&child), 0);
}

Test(stop, linked_source_of_a_stopped_parent_is_stopped_and_destroy_unlinks)
{
    cor_stop_source parent = COR_STOP_SOURCE_INIT;
    cor_stop_source_request(&parent);
    cor_linked_stop_source child;
    cr_assert_eq(cor_linked_stop_source_init(&child, cor_stop_source_token(&parent)), 0);
    cr_assert(cor_stop_requested(cor_linked_stop_source_token(&child)));
    cr_assert_eq(cor_linked_stop_source_destroy(&child), 0);

    /* Destroyed before the parent stops: the parent's stop no longer touches it. */
    cor_stop_source p2 = COR_STOP_SOURCE_INIT;
    cor_linked_stop_source c2;
    cr_assert_eq(cor_linked_stop_source_init(&c2, cor_stop_source_token(&p2)), 0);
    cr_assert_eq(cor_linked_stop_source_destroy(&c2), 0);
    memset(&c2, 0xa5, sizeof c2); /* freed, as far as the parent knows */
    cr_assert_eq(cor_stop_source_request(&p2), 1);

    /* A never-stopping parent links nothing; the source still stops on its own. */
    cor_linked_stop_source c3;
    cr_assert_eq(cor_linked_stop_source_init(&c3, COR_STOP_TOKEN_NEVER), 0);
    cr_assert_eq(cor_stop_source_request(&c3.source), 1);
    cr_assert_eq(cor_linked_stop_source_destroy(&c3), 0);
    cr_assert_eq(cor_linked_stop_source_init(NULL, COR_STOP_TOKEN_NEVER), -EINVAL);
    cr_assert_eq(cor_linked_stop_source_destroy(NULL), -EINVAL);
    cr_assert_not(cor_stop_possible(cor_linked_stop_source_token(NULL)));
}
