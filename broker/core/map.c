#include "map.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include "heap.h"
#include "lq_assert.h"

static inline uint32_t home(const lq_map *m, uint64_t k)
{
    k ^= k >> 33;
    k *= 0xff51afd7ed558ccdull;
    k ^= k >> 33;
    return (uint32_t)k & m->mask;
}

void lq_map_free(lq_map *m)
{
    free(m->keys);
    free(m->vals);
    memset(m, 0, sizeof *m);
}

static uint32_t find_bucket(const lq_map *m, uint64_t key)
{
    for (uint32_t b = home(m, key);; b = (b + 1) & m->mask) {
        if (m->vals[b] == LQ_NONE || m->keys[b] == key)
            return b;
    }
}

uint32_t lq_map_get(const lq_map *m, uint64_t key)
{
    if (!m->vals)
        return LQ_NONE;
    return m->vals[find_bucket(m, key)];
}

static lq_err grow(lq_map *m)
{
    uint32_t old_n = m->vals ? m->mask + 1 : 0;
    uint32_t nb = old_n ? old_n * 2 : 16;
    uint64_t *nk = malloc((size_t)nb * sizeof *nk); /* owner: m */
    uint32_t *nv = malloc((size_t)nb * sizeof *nv); /* owner: m */
    if (!nk || !nv) {
        free(nk);
        free(nv);
        return LQ_E_NOMEM;
    }
    memset(nv, 0xff, (size_t)nb * sizeof *nv);
    uint64_t *ok = m->keys;
    uint32_t *ov = m->vals;
    m->keys = nk;
    m->vals = nv;
    m->mask = nb - 1;
    for (uint32_t i = 0; i < old_n; i++) {
        if (ov[i] == LQ_NONE)
            continue;
        uint32_t b = find_bucket(m, ok[i]);
        m->keys[b] = ok[i];
        m->vals[b] = ov[i];
    }
    free(ok);
    free(ov);
    return LQ_OK;
}

lq_err lq_map_put(lq_map *m, uint64_t key, uint32_t val)
{
    LQ_ASSERT(val != LQ_NONE);
    if (!m->vals || (uint64_t)(m->n + 1) * 2 > (uint64_t)m->mask + 1) {
        lq_err e = grow(m);
        if (e != LQ_OK)
            return e;
    }
    uint32_t b = find_bucket(m, key);
    if (m->vals[b] == LQ_NONE)
        m->n++;
    m->keys[b] = key;
    m->vals[b] = val;
    return LQ_OK;
}

void lq_map_del(lq_map *m, uint64_t key)
{
    if (!m->vals)
        return;
    uint32_t i = find_bucket(m, key);
    if (m->vals[i] == LQ_NONE)
        return;
    for (uint32_t k = (i + 1) & m->mask; m->vals[k] != LQ_NONE; k = (k + 1) & m->mask) {
        uint32_t h = home(m, m->keys[k]);
        bool in_range = i <= k ? (i < h && h <= k) : (i < h || h <= k);
        if (!in_range) {
            m->keys[i] = m->keys[k];
            m->vals[i] = m->vals[k];
            i = k;
        }
    }
    m->vals[i] = LQ_NONE;
    m->n--;
}

void lq_map_replace(lq_map *m, uint64_t key, uint32_t val)
{
    LQ_ASSERT(m->vals && val != LQ_NONE);
    uint32_t b = find_bucket(m, key);
    LQ_ASSERT(m->vals[b] != LQ_NONE);
    m->vals[b] = val;
}
