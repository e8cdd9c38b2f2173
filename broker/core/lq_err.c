#include "lq_err.h"

const char *lq_err_name(lq_err e)
{
    switch (e) {
    case LQ_OK: return "OK";
    case LQ_E_INVALID_ARGUMENT: return "INVALID_ARGUMENT";
    case LQ_E_NOT_FOUND: return "NOT_FOUND";
    case LQ_E_LEASE_LOST: return "LEASE_LOST";
    case LQ_E_QUEUE_FULL: return "QUEUE_FULL";
    case LQ_E_STORAGE_FULL: return "STORAGE_FULL";
    case LQ_E_DRAINING: return "DRAINING";
    case LQ_E_UNAUTHENTICATED: return "UNAUTHENTICATED";
    case LQ_E_PERMISSION_DENIED: return "PERMISSION_DENIED";
    case LQ_E_FRAME_TOO_LARGE: return "FRAME_TOO_LARGE";
    case LQ_E_PROTOCOL_ERROR: return "PROTOCOL_ERROR";
    case LQ_E_DEADLINE_EXCEEDED: return "DEADLINE_EXCEEDED";
    case LQ_E_INTERNAL: return "INTERNAL";
    case LQ_E_UNAVAILABLE: return "UNAVAILABLE";
    case LQ_E_NOMEM: return "NOMEM";
    case LQ_E_IO: return "IO";
    case LQ_E_CORRUPT: return "CORRUPT";
    case LQ_E_LIMIT: return "LIMIT";
    }
    return "UNKNOWN";
}
