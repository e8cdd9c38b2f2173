/* Interned names (queues, lanes, tenants, worker ids): each distinct string is copied once and
 * then referred to by a u32 id, so a job carries 4 bytes instead of three strings. Names are
 * never removed (events and lq_session_info hand them out as core-owned strings): their count
 * is bounded by the queues, lanes, tenants and worker ids ever seen. */
#ifndef LQ_NAMES_H
#define LQ_NAMES_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

typedef struct {
    char *s;       /* owner: the table; NUL-terminated copy */
    uint32_t len;
    uint64_t hash;
} lq_name;

typedef struct {
    lq_name *v;    /* owner: the table */
    uint32_t n, cap;
    uint32_t *buckets; /* owner: the table; name id or LQ_NONE */
    uint32_t mask;
} lq_names;

void lq_names_free(lq_names *t);
lq_err lq_names_intern(lq_names *t, lq_str s, uint32_t *id);
uint32_t lq_names_find(const lq_names *t, lq_str s); /* LQ_NONE when absent */
static inline lq_str lq_names_get(const lq_names *t, uint32_t id)
{
    return (lq_str){t->v[id].s, t->v[id].len};
}

/* 1..LQ_NAME_MAX bytes of [A-Za-z0-9-+/;.$_()], not starting with '-' (beanstalkd tubes). */
bool lq_name_valid(lq_str s);

#endif
