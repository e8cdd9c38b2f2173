/* A small open-addressing hash map u64 -> u32 (tenant buckets, queues by name, waiters by
 * handle). Linear probing with backward-shift deletion, at most half full. */
#ifndef LQ_MAP_H
#define LQ_MAP_H

#include <stdint.h>

#include "lq_err.h"

typedef struct {
    uint64_t *keys; /* owner: the map */
    uint32_t *vals; /* owner: the map; LQ_NONE marks an empty bucket */
    uint32_t mask, n;
} lq_map;

void lq_map_free(lq_map *m);
lq_err lq_map_put(lq_map *m, uint64_t key, uint32_t val); /* insert or overwrite; val != LQ_NONE */
uint32_t lq_map_get(const lq_map *m, uint64_t key);       /* LQ_NONE when absent */
void lq_map_del(lq_map *m, uint64_t key);
/* Overwrites the value of a key that is present (never allocates, so it cannot fail). */
void lq_map_replace(lq_map *m, uint64_t key, uint32_t val);

#endif
