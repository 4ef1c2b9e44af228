/* The README's first example: two coroutines, one await chain, a manual executor. */
#include <stdio.h>
#include <coring/coring.h>

struct add {                 /* a coroutine's frame: promise, parameters, locals */
    COR_PROMISE(int);
    int a, b;
};
COR_DEFINE(add, (int a, int b), { self->a = a; self->b = b; })
{
    COR_BEGIN();
    COR_RETURN(self->a + self->b);
}

struct sum3 {
    COR_PROMISE(int);
    int x, r;                /* locals that live across an await are fields */
};
COR_DEFINE(sum3, (int x), { self->x = x; })
{
    COR_BEGIN();
    COR_AWAIT(self->r, add(self->x, 1));        /* typed: r = add's int result */
    COR_AWAIT(self->r, add(self->r, 2));
    COR_RETURN(self->r);
}

static void print_result(void *user, void *result) { (void)user; printf("%d\n", *(int *)result); }

int main(void)
{
    cor_manual *m;
    cor_manual_create(&m);
    cor_launch_options o = {.on_result = print_result};
    COR_RUN_ASYNC(cor_manual_executor(m), &o, sum3(39));   /* allocator first, then the frame */
    cor_manual_run(m);                                      /* prints 42 */
    cor_manual_destroy(m);
}
