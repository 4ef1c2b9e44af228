/*
 * The umbrella header, and its version against the library's. Each header
 * alone is compiled by the generated header_*.c files beside this one.
 */
#include <coring/coring.h>

#include <stdio.h>

int main(void)
{
    /* The umbrella's version must be the one the library was built from. */
    printf("coring %d.%d.%d\n", COR_VERSION_MAJOR, COR_VERSION_MINOR, COR_VERSION_PATCH);
    return COR_VERSION == COR_VERSION_MAJOR * 10000 + COR_VERSION_MINOR * 100 + COR_VERSION_PATCH
               ? 0
               : 1;
}
