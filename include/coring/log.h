/*
 * The library's own messages: the few things coring says without being
 * asked (an io_context that fell back to epoll, a stalled run loop, a
 * launched task that failed with no error handler, an io_context destroyed
 * with operations in flight). By default each one is a single line on
 * stderr, "coring: <message>". A program that has a logger of its own routes
 * them there with cor_set_log_hook:
 *
 *     static void to_syslog(void *user, int level, const char *msg)
 *     {
 *         syslog(level == COR_LOG_ERROR ? LOG_ERR : LOG_WARNING, "%s", msg);
 *     }
 *     cor_set_log_hook(to_syslog, NULL);
 */
#ifndef CORING_LOG_H
#define CORING_LOG_H

#include "coring/common.h"

COR_BEGIN_DECLS

/* How serious a message is (the level argument of a log hook). */
enum cor_log_level {
    COR_LOG_ERROR = 0,   /* something failed and nobody else was told      */
    COR_LOG_WARNING = 1, /* the program goes on, but an operator should know */
    COR_LOG_INFO = 2     /* for the record                                  */
};

/*
 * A log hook: called with the user pointer given to cor_set_log_hook, a
 * COR_LOG_* level and the message (one line, no trailing newline, no
 * "coring: " prefix; valid only during the call). It may be called from any
 * thread, concurrently, and from inside a run loop: it must not block for
 * long and must not call cor_set_log_hook.
 */
typedef void (*cor_log_fn)(void *user, int level, const char *msg);

/*
 * Routes the library's messages to fn (with user); NULL restores the
 * default, one line on stderr. A message being logged while the hook
 * changes goes to the old hook or the new one, never half to each. Returns
 * 0, or -EINVAL for a NULL fn with a non-NULL user. Any thread.
 */
COR_API int cor_set_log_hook(cor_log_fn fn, void *user);

COR_END_DECLS

#endif
