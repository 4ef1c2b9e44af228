/* cor_strerror: names for coring's result codes. */
#include <limits.h>
#include <string.h>

#include "coring/common.h"

const char *cor_strerror(int err)
{
    if (err == 0)
        return "success";
    if (err > 0)
        return "not an error code (positive value)";
    if (err == INT_MIN)
        return "unknown error"; /* -INT_MIN does not exist */
    switch (-err) {
    case ECANCELED:
        return "operation canceled";
    case ETIME:
        return "deadline expired";
    case ESHUTDOWN:
        return "context shut down";
    default:
        break;
    }
    /* strerrordesc_np is thread-safe and returns static storage. */
    const char *s = strerrordesc_np(-err);
    return s ? s : "unknown error";
}
