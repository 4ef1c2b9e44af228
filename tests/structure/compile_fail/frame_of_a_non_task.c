/* COR_FRAME takes a coroutine frame pointer, nothing else. */
#include <coring/task.h>

cor_frame *frame_of_an_int(int *p);
cor_frame *frame_of_an_int(int *p)
{
    return COR_FRAME(p);
}
