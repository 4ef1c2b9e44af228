/* coring version. scripts/version reads these lines to version the build. */
#ifndef CORING_VERSION_H
#define CORING_VERSION_H

#define COR_VERSION_MAJOR 0
#define COR_VERSION_MINOR 1
#define COR_VERSION_PATCH 0

/* COR_VERSION: one integer that orders releases, major * 10000 + minor * 100 + patch. */
#define COR_VERSION (COR_VERSION_MAJOR * 10000 + COR_VERSION_MINOR * 100 + COR_VERSION_PATCH)

#endif
