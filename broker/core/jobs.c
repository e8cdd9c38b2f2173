#include "jobs.h"

#include <stdlib.h>
#include <string.h>

#include "core.h"
#include "lq_assert.h"

static inline uint32_t home(const lq_jobs *t, uint64_t id)
{
    /* Fibonacci hashing: ids are sequential, the multiply spreads them over the table. */
    return (uint32_t)((id * 0x9E3779B97F4A7C15ull) >> 32) & t->mask;
}

void lq_jobs_init(lq_jobs *t)
{
    memset(t, 0, sizeof *t);
    t->free_head = LQ_NONE;
}

void lq_jobs_free(lq_jobs *t)
{
    for (uint32_t i = 0; i < t->n_chunks; i++)
        free(t->chunks[i]);
    free(t->chunks);
    free(t->buckets);
    memset(t, 0, sizeof *t);
    t->free_head = LQ_NONE;
}

static lq_err rehash(lq_jobs *t, uint32_t n_buckets)
{
    uint32_t *nb = malloc((size_t)n_buckets * sizeof *nb); /* owner: t */
    if (!nb)
        return LQ_E_NOMEM;
    memset(nb, 0xff, (size_t)n_buckets * sizeof *nb);
    uint32_t old_n = t->buckets ? t->mask + 1 : 0;
    uint32_t *old = t->buckets;
    t->buckets = nb;
    t->mask = n_buckets - 1;
    for (uint32_t i = 0; i < old_n; i++) {
        if (old[i] == LQ_NONE)
            continue;
        uint32_t b = home(t, lq_jobs_at(t, old[i])->id);
        while (nb[b] != LQ_NONE)
            b = (b + 1) & t->mask;
        nb[b] = old[i];
    }
    free(old);
    return LQ_OK;
}

lq_err lq_jobs_reserve(lq_jobs *t)
{
    if (t->free_head == LQ_NONE && t->n_slots == t->n_chunks * LQ_JOB_CHUNK) {
        if (t->n_chunks >= (LQ_NONE >> LQ_JOB_CHUNK_BITS) - 1)
            return LQ_E_LIMIT;
        if (t->n_chunks == t->cap_chunks) {
            uint32_t ncap = t->cap_chunks ? t->cap_chunks * 2 : 16;
            lq_job **nc = realloc(t->chunks, (size_t)ncap * sizeof *nc); /* owner: t */
            if (!nc)
                return LQ_E_NOMEM;
            t->chunks = nc;
            t->cap_chunks = ncap;
        }
        lq_job *chunk = malloc(sizeof(lq_job) * LQ_JOB_CHUNK); /* owner: t */
        if (!chunk)
            return LQ_E_NOMEM;
        t->chunks[t->n_chunks++] = chunk;
    }
    uint64_t n_buckets = t->buckets ? (uint64_t)t->mask + 1 : 0;
    /* at most 3/4 full: linear probing stays short, 4 bytes a bucket */
    if ((uint64_t)(t->n_live + 1) * 4 > n_buckets * 3) {
        uint64_t nb = n_buckets ? n_buckets * 2 : 1024;
        if (nb > (1ull << 31))
            return LQ_E_LIMIT;
        lq_err e = rehash(t, (uint32_t)nb);
        if (e != LQ_OK)
            return e;
    }
    return LQ_OK;
}

uint32_t lq_jobs_add(lq_jobs *t, uint64_t id)
{
    uint32_t slot;
    if (t->free_head != LQ_NONE) {
        slot = t->free_head;
        t->free_head = lq_jobs_at(t, slot)->heap_pos;
    } else {
        LQ_ASSERT(t->n_slots < t->n_chunks * LQ_JOB_CHUNK);
        slot = t->n_slots++;
    }
    lq_job *j = lq_jobs_at(t, slot);
    memset(j, 0, sizeof *j);
    j->id = id;
    j->heap_pos = j->sess_prev = j->sess_next = j->session = LQ_NONE;
    LQ_ASSERT((uint64_t)(t->n_live + 1) * 4 <= ((uint64_t)t->mask + 1) * 3);
    uint32_t b = home(t, id);
    while (t->buckets[b] != LQ_NONE)
        b = (b + 1) & t->mask;
    t->buckets[b] = slot;
    t->n_live++;
    return slot;
}

uint32_t lq_jobs_find(const lq_jobs *t, uint64_t id)
{
    if (!t->buckets)
        return LQ_NONE;
    for (uint32_t b = home(t, id);; b = (b + 1) & t->mask) {
        uint32_t s = t->buckets[b];
        if (s == LQ_NONE || lq_jobs_at(t, s)->id == id)
            return s;
    }
}

void lq_jobs_del(lq_jobs *t, uint32_t slot)
{
    lq_job *j = lq_jobs_at(t, slot);
    uint32_t i = home(t, j->id);
    while (t->buckets[i] != slot) {
        LQ_ASSERT(t->buckets[i] != LQ_NONE);
        i = (i + 1) & t->mask;
    }
    /* Backward-shift deletion: no tombstones, so lookups never slow down with churn. */
    for (uint32_t k = (i + 1) & t->mask; t->buckets[k] != LQ_NONE; k = (k + 1) & t->mask) {
        uint32_t h = home(t, lq_jobs_at(t, t->buckets[k])->id);
        /* the entry at k may move to i when its home is not cyclically in (i, k] */
        bool in_range = i <= k ? (i < h && h <= k) : (i < h || h <= k);
        if (!in_range) {
            t->buckets[i] = t->buckets[k];
            i = k;
        }
    }
    t->buckets[i] = LQ_NONE;
    j->state = 0;
    j->id = 0;
    j->heap_pos = t->free_head;
    t->free_head = slot;
    t->n_live--;
}

uint64_t lq_jobs_bytes(const lq_jobs *t)
{
    uint64_t b = (uint64_t)t->n_chunks * LQ_JOB_CHUNK * sizeof(lq_job);
    if (t->buckets)
        b += ((uint64_t)t->mask + 1) * sizeof(uint32_t);
    return b;
}
