/* A program a user builds against coring from outside its tree (tests/usage/build_against.sh). */
#include <stdio.h>

#include <coring/coring.h>

struct nap {
    COR_PROMISE(int);
    int r;
};
COR_DEFINE_STATIC(nap, (void), {})
{
    COR_BEGIN();
    COR_AWAIT(self->r, cor_sleep_for(1000000));
    COR_RETURN(self->r == 0 ? 42 : self->r);
}

static void print(void *user, void *result)
{
    (void)user;
    printf("coring %d: %d\n", COR_VERSION, *(int *)result);
}

int main(void)
{
    cor_io_context *io;
    if (cor_io_context_create(&io, NULL))
        return 1;
    cor_launch_options o = {.on_result = print};
    if (COR_RUN_ASYNC(cor_io_context_executor(io), &o, nap()))
        return 1;
    cor_io_context_run(io);
    cor_io_context_destroy(io);
    return 0;
}
