/* An await in a body without COR_BEGIN() must not compile either. */
#include <coring/task.h>

struct leaf {
    COR_PROMISE(int);
};
COR_DEFINE(leaf, (void), {})
{
    COR_BEGIN();
    COR_RETURN(2);
}

struct no_begin {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE(no_begin, (void), {})
{
    COR_AWAIT(self->r, leaf());
    COR_RETURN(self->r);
}
