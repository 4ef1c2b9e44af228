/* An ssize_t result awaited into an int must draw -Wconversion (an error under -Werror). */
#include <sys/types.h>
#include <coring/task.h>

struct wide {
    COR_PROMISE(ssize_t);
};
COR_DEFINE(wide, (void), {})
{
    COR_BEGIN();
    COR_RETURN(1);
}

struct narrow {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE(narrow, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, wide());
    COR_RETURN(self->r);
}
