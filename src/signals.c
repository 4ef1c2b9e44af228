/* Signals on the io_context (signals.h): a signalfd read per wait. */
#include <pthread.h>
#include <string.h>
#include <signal.h>
#include <unistd.h>
#include <sys/signalfd.h>

#include "coring/file.h"
#include "coring/net.h"
#include "coring/signals.h"
#include "internal.h"

_Static_assert(sizeof(struct signalfd_siginfo) == sizeof(((struct cor_signal_wait *)0)->info),
               "the frame holds one signalfd_siginfo");

int cor_signals_block(const sigset_t *set)
{
    if (!set)
        return -EINVAL;
    return -pthread_sigmask(SIG_BLOCK, set, NULL);
}

/* Destroyed with its io_context while it waits: the signalfd is closed all the same. */
static void signal_wait_destroyed(cor_frame *f)
{
    close(((struct cor_signal_wait *)f)->fd);
}

COR_DEFINE(cor_signal_wait, (const sigset_t *set), {
    self->ok = set && !sigisemptyset(set);
    if (self->ok)
        self->set = *set;
})
{
    COR_BEGIN();
    if (!self->ok)
        COR_RETURN(-EINVAL);
    self->fd = signalfd(-1, &self->set, SFD_NONBLOCK | SFD_CLOEXEC);
    if (self->fd < 0)
        COR_RETURN(-errno);
    COR_ON_DESTROY(signal_wait_destroyed);
    COR_AWAIT(self->r, cor_read(self->fd, self->info, sizeof self->info, -1));
    /* Closing is cleanup: it runs whatever the token says; once issued, it is not the
     * teardown's to close again. */
    COR_ON_DESTROY(NULL);
    COR_AWAIT_VOID(cor_close(self->fd));
    if (self->r < 0)
        COR_RETURN(self->r);
    if (self->r != (int)sizeof self->info)
        COR_RETURN(-EIO);
    struct signalfd_siginfo si;
    memcpy(&si, self->info, sizeof si);
    COR_RETURN((int)si.ssi_signo);
}
