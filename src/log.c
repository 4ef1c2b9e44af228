/* The library's messages (log.h): one hook, stderr by default. */
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>

#include "coring/log.h"
#include "internal.h"

static pthread_mutex_t hook_lock = PTHREAD_MUTEX_INITIALIZER;
static cor_log_fn hook_fn;
static void *hook_user;

int cor_set_log_hook(cor_log_fn fn, void *user)
{
    if (!fn && user)
        return -EINVAL;
    pthread_mutex_lock(&hook_lock);
    hook_fn = fn;
    hook_user = user;
    pthread_mutex_unlock(&hook_lock);
    return 0;
}

void cor__log(int level, const char *fmt, ...)
{
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    /* The pair is copied under the lock and called outside it: a slow hook
     * does not hold up cor_set_log_hook, and two messages may be logged at once. */
    pthread_mutex_lock(&hook_lock);
    cor_log_fn fn = hook_fn;
    void *user = hook_user;
    pthread_mutex_unlock(&hook_lock);
    if (fn)
        fn(user, level, msg);
    else
        fprintf(stderr, "coring: %s\n", msg);
}
