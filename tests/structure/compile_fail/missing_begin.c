/* A body without COR_BEGIN() must not compile (it would restart from the top at every resume). */
#include <coring/task.h>

struct no_begin {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE(no_begin, (void), {})
{
    COR_RETURN(1);
}
