// Each public header compiles from C++ (extern "C" declarations).
#include <coring/common.h>
#include <coring/version.h>
#include <coring/alloc.h>
#include <coring/stop.h>
#include <coring/executor.h>
#include <coring/context.h>
#include <coring/task.h>
#include <coring/launch.h>
#include <coring/manual.h>
#include <coring/strand.h>
#include <coring/thread_pool.h>
#include <coring/sync.h>
#include <coring/io_context.h>
#include <coring/timer.h>
#include <coring/io_group.h>
#include <coring/net.h>
#include <coring/file.h>
#include <coring/resolve.h>
#include <coring/coring.h>

#include <cstdio>

int main(void)
{
    /* The umbrella's version must be the one the library was built from. */
    printf("coring %d.%d.%d\n", COR_VERSION_MAJOR, COR_VERSION_MINOR, COR_VERSION_PATCH);
    return COR_VERSION == COR_VERSION_MAJOR * 10000 + COR_VERSION_MINOR * 100 + COR_VERSION_PATCH
               ? 0
               : 1;
}
