/* Execution contexts: services are created on first use and torn down newest first. */
#include <limits.h>
#include <criterion/criterion.h>

#include "util.h"

static char events[64];
static int nevents;

struct svc {
    char tag;
    cor_execution_context *ctx;
};

static int svc_init(void *p, cor_execution_context *ctx)
{
    struct svc *s = p;
    s->ctx = ctx;
    s->tag = (char)('a' + nevents % 26);
    events[nevents++] = 'i';
    return 0;
}

static void svc_shutdown(void *p)
{
    struct svc *s = p;
    events[nevents++] = s->tag == 'a' ? 'S' : s->tag == 'b' ? 'T' : 'U';
}

static void svc_destroy(void *p)
{
    struct svc *s = p;
    events[nevents++] = s->tag == 'a' ? 'D' : s->tag == 'b' ? 'E' : 'F';
}

static const cor_service_def def_a = {"a", sizeof(struct svc), svc_init, svc_shutdown, svc_destroy};
static const cor_service_def def_b = {"b", sizeof(struct svc), svc_init, svc_shutdown, svc_destroy};
static const cor_service_def def_c = {"c", sizeof(struct svc), svc_init, svc_shutdown, svc_destroy};

static int failing_init(void *p, cor_execution_context *ctx)
{
    return -EIO;
}
static const cor_service_def def_fail = {"fail", 8, failing_init, NULL, NULL};

Test(context, services_created_once_and_torn_down_in_reverse)
{
    cor_manual *m;
    cr_assert_eq(cor_manual_create(&m), 0);
    cor_execution_context *ctx = cor_manual_context(m);
    nevents = 0;
    void *a, *b, *c, *a2;
    cr_assert_null(cor_find_service(ctx, &def_a));
    cr_assert_eq(cor_use_service(ctx, &def_a, &a), 0); /* tag a */
    cr_assert_eq(cor_use_service(ctx, &def_b, &b), 0); /* tag b */
    cr_assert_eq(cor_use_service(ctx, &def_a, &a2), 0);
    cr_assert_eq(a, a2, "one instance per definition");
    cr_assert_eq(cor_use_service(ctx, &def_c, &c), 0); /* tag c */
    cr_assert_eq(cor_find_service(ctx, &def_b), b);
    cr_assert_eq(((struct svc *)b)->ctx, ctx);
    cr_assert_eq(nevents, 3);
    cor_manual_destroy(m);
    events[nevents] = 0;
    /* init x3, then every shutdown newest first, then every destroy newest first. */
    cr_assert_str_eq(events, "iiiUTSFED");
}

Test(context, failed_init_creates_nothing_and_bad_input_is_rejected)
{
    cor_execution_context ctx;
    cr_assert_eq(cor_execution_context_init(&ctx), 0);
    void *p = NULL;
    cr_assert_eq(cor_use_service(&ctx, &def_fail, &p), -EIO);
    cr_assert_null(p);
    cr_assert_null(cor_find_service(&ctx, &def_fail));
    cr_assert_eq(cor_use_service(NULL, &def_a, &p), -EINVAL);
    cr_assert_eq(cor_use_service(&ctx, NULL, &p), -EINVAL);
    cr_assert_eq(cor_use_service(&ctx, &def_a, NULL), -EINVAL);
    cor_service_def no_init = {"x", 8, NULL, NULL, NULL};
    cr_assert_eq(cor_use_service(&ctx, &no_init, &p), -EINVAL);
    cr_assert_eq(cor_execution_context_shutdown(&ctx), 0);
    cr_assert_eq(cor_use_service(&ctx, &def_a, &p), -ESHUTDOWN);
    cr_assert_eq(cor_execution_context_shutdown(NULL), -EINVAL);
    cr_assert_eq(cor_execution_context_destroy(&ctx), 0);
    cr_assert_eq(cor_execution_context_destroy(NULL), -EINVAL);
    cr_assert_eq(cor_execution_context_init(NULL), -EINVAL);
    cr_assert_eq(cor_execution_context_set_resource(NULL, NULL), -EINVAL);
    cr_assert_eq(cor_execution_context_resource(NULL), cor_default_resource());
}

static void *use_a(void *arg)
{
    void *p;
    cr_assert_eq(cor_use_service(arg, &def_a, &p), 0);
    return p;
}

Test(context, concurrent_first_use_creates_one_instance)
{
    cor_execution_context ctx;
    cr_assert_eq(cor_execution_context_init(&ctx), 0);
    nevents = 0;
    pthread_t t[4];
    void *r[4];
    for (int i = 0; i < 4; i++)
        pthread_create(&t[i], NULL, use_a, &ctx);
    for (int i = 0; i < 4; i++)
        pthread_join(t[i], &r[i]);
    for (int i = 1; i < 4; i++)
        cr_assert_eq(r[i], r[0]);
    cr_assert_eq(nevents, 1);
    cor_execution_context_destroy(&ctx);
}

Test(context, strerror_names_codes)
{
    cr_assert_str_eq(cor_strerror(0), "success");
    cr_assert_str_eq(cor_strerror(-ECANCELED), "operation canceled");
    cr_assert_str_eq(cor_strerror(-ETIME), "deadline expired");
    cr_assert_not_null(cor_strerror(-ENOMEM));
    cr_assert_str_neq(cor_strerror(-ENOMEM), "unknown error");
    cr_assert_not_null(cor_strerror(-99999));
    cr_assert_not_null(cor_strerror(3));
    /* Any int names something: the extremes included (-INT_MIN does not exist). */
    const int odd[] = {INT_MIN, INT_MIN + 1, -4096, -4095, INT_MAX, 1};
    for (size_t i = 0; i < sizeof odd / sizeof odd[0]; i++) {
        const char *s = cor_strerror(odd[i]);
        cr_assert(s && *s, "cor_strerror(%d)", odd[i]);
    }
}
