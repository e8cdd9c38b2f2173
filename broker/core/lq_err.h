/* Typed error codes shared by every broker module.
 * The values 0..13 are the wire ErrorCode values of schema/leaseq.proto, so a core result
 * can be put on the wire without a table. Values from 100 up never leave the broker. */
#ifndef LQ_ERR_H
#define LQ_ERR_H

typedef enum {
    LQ_OK = 0,
    LQ_E_INVALID_ARGUMENT = 1,
    LQ_E_NOT_FOUND = 2,
    LQ_E_LEASE_LOST = 3,
    LQ_E_QUEUE_FULL = 4,
    LQ_E_STORAGE_FULL = 5,
    LQ_E_DRAINING = 6,
    LQ_E_UNAUTHENTICATED = 7,
    LQ_E_PERMISSION_DENIED = 8,
    LQ_E_FRAME_TOO_LARGE = 9,
    LQ_E_PROTOCOL_ERROR = 10,
    LQ_E_DEADLINE_EXCEEDED = 11,
    LQ_E_INTERNAL = 12,
    LQ_E_UNAVAILABLE = 13,

    /* broker-internal; mapped to INTERNAL on the wire */
    LQ_E_NOMEM = 100,
    LQ_E_IO = 101,
    LQ_E_CORRUPT = 102,   /* a stored record failed its checksum or version check */
    LQ_E_LIMIT = 103,     /* a fixed capacity (queues, lanes, sessions) is exhausted */
} lq_err;

/* Static English name, e.g. "LEASE_LOST". Never NULL. */
const char *lq_err_name(lq_err e);

/* The code to put on the wire for e (internal codes become LQ_E_INTERNAL). */
static inline lq_err lq_err_wire(lq_err e) { return (unsigned)e <= LQ_E_UNAVAILABLE ? e : LQ_E_INTERNAL; }

#endif
