/* Allocation internals shared inside the library; not installed. */
#ifndef CORING_ALLOC_INTERNAL_H
#define CORING_ALLOC_INTERNAL_H

#include "coring/alloc.h"

/* The calling thread's allocation statistics. */
extern __thread cor_alloc_stats cor__alloc_stats;

#endif
