#include "idem.h"

#include <stdlib.h>
#include <string.h>

#include "core_int.h"

static bool idem_less(const void *ctx, uint32_t a, uint32_t b)
{
    const lq_idem *x = &((const lq_core *)ctx)->idem[a], *y = &((const lq_core *)ctx)->idem[b];
    return x->expires_ms != y->expires_ms ? x->expires_ms < y->expires_ms : a < b;
}
static void idem_set_pos(void *ctx, uint32_t item, uint32_t pos) { ((lq_core *)ctx)->idem[item].heap_pos = pos; }
static uint32_t idem_get_pos(const void *ctx, uint32_t item) { return ((const lq_core *)ctx)->idem[item].heap_pos; }

static const lq_heap_ops idem_ops = {idem_less, idem_set_pos, idem_get_pos};

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* The length goes in first, so (queue "ab", key "c") and (queue "a", key "bc") differ. */
static uint64_t hash_bytes(uint64_t h, lq_str s)
{
    const unsigned char *p = (const unsigned char *)s.ptr;
    uint32_t n = s.len;
    h = mix64(h ^ n);
    for (; n >= 8; p += 8, n -= 8) {
        uint64_t w;
        memcpy(&w, p, 8);
        h = mix64(h ^ w);
    }
    if (n) {
        uint64_t w = 0;
        memcpy(&w, p, n);
        h = mix64(h ^ w ^ (uint64_t)n << 56);
    }
    return h;
}

uint64_t lq_idem_hash(const lq_core *c, lq_str queue, lq_str key)
{
    return hash_bytes(hash_bytes(c->hash_key, queue), key);
}

/* Finished entries are at most all entries: reserving that much keeps lq_idem_finish from
 * ever needing memory. */
static lq_err reserve_heap(lq_core *c, uint32_t n)
{
    lq_heap *h = &c->idem_heap;
    if (h->cap >= n)
        return LQ_OK;
    uint32_t ncap = h->cap ? h->cap : 64;
    while (ncap < n)
        ncap *= 2;
    uint32_t *nv = realloc(h->v, (size_t)ncap * sizeof *nv); /* owner: the heap */
    if (!nv)
        return LQ_E_NOMEM;
    h->v = nv;
    h->cap = ncap;
    return LQ_OK;
}

static void free_entry(lq_core *c, uint32_t ei)
{
    lq_idem *x = &c->idem[ei];
    LQ_ASSERT(x->job_id != 0);
    if (x->heap_pos != LQ_NONE)
        lq_heap_remove(&c->idem_heap, &idem_ops, c, x->heap_pos);
    else
        lq_map_del(&c->idem_by_job, x->job_id);
    lq_map_del(&c->idem_by_hash, x->hash);
    x->job_id = 0;
    x->next_free = c->idem_free;
    c->idem_free = ei;
    c->n_live_idem--;
}

/* A fresh entry registered under hash (not yet under a job, not in the heap), or LQ_NONE. */
static uint32_t new_entry(lq_core *c, uint64_t hash, uint64_t job_id, lq_err *err)
{
    LQ_ASSERT(job_id != 0 && lq_map_get(&c->idem_by_hash, hash) == LQ_NONE);
    *err = LQ_OK;
    if (c->idem_free == LQ_NONE && c->n_idem == c->cap_idem) {
        if (c->cap_idem >= LQ_NONE / 2) {
            *err = LQ_E_LIMIT;
            return LQ_NONE;
        }
        uint32_t ncap = c->cap_idem ? c->cap_idem * 2 : 64;
        lq_idem *nv = realloc(c->idem, (size_t)ncap * sizeof *nv); /* owner: core */
        if (!nv) {
            *err = LQ_E_NOMEM;
            return LQ_NONE;
        }
        c->idem = nv;
        c->cap_idem = ncap;
    }
    *err = reserve_heap(c, c->n_live_idem + 1);
    if (*err != LQ_OK)
        return LQ_NONE;
    uint32_t ei = c->idem_free != LQ_NONE ? c->idem_free : c->n_idem;
    *err = lq_map_put(&c->idem_by_hash, hash, ei);
    if (*err != LQ_OK)
        return LQ_NONE;
    if (ei == c->idem_free)
        c->idem_free = c->idem[ei].next_free;
    else
        c->n_idem++;
    c->idem[ei] = (lq_idem){.hash = hash, .job_id = job_id, .heap_pos = LQ_NONE, .next_free = LQ_NONE};
    c->n_live_idem++;
    return ei;
}

uint64_t lq_idem_lookup(lq_core *c, uint64_t now_ms, uint64_t hash)
{
    uint32_t ei = lq_map_get(&c->idem_by_hash, hash);
    if (ei == LQ_NONE)
        return 0;
    const lq_idem *x = &c->idem[ei];
    if (x->heap_pos != LQ_NONE && x->expires_ms <= now_ms) {
        free_entry(c, ei);
        return 0;
    }
    return x->job_id;
}

lq_err lq_idem_add(lq_core *c, uint64_t hash, uint64_t job_id)
{
    lq_err e;
    uint32_t ei = new_entry(c, hash, job_id, &e);
    if (ei == LQ_NONE)
        return e;
    e = lq_map_put(&c->idem_by_job, job_id, ei);
    if (e != LQ_OK) {
        /* not under the job yet, not in the heap: only the hash map knows it */
        lq_map_del(&c->idem_by_hash, hash);
        c->idem[ei].job_id = 0;
        c->idem[ei].next_free = c->idem_free;
        c->idem_free = ei;
        c->n_live_idem--;
    }
    return e;
}

static void push_finished(lq_core *c, uint32_t ei, uint64_t expires_ms)
{
    /* the cap: the entry that would expire first goes now */
    if (c->idem_heap.n >= LQ_IDEM_FINISHED_MAX)
        free_entry(c, lq_heap_top(&c->idem_heap));
    c->idem[ei].expires_ms = expires_ms;
    lq_must(lq_heap_push(&c->idem_heap, &idem_ops, c, ei)); /* reserved: never allocates */
}

lq_err lq_idem_add_finished(lq_core *c, uint64_t hash, uint64_t job_id, uint64_t finished_ms)
{
    lq_err e;
    uint32_t ei = new_entry(c, hash, job_id, &e);
    if (ei == LQ_NONE)
        return e;
    push_finished(c, ei, lq_add_sat(finished_ms, c->cfg.idem_window_ms));
    return LQ_OK;
}

void lq_idem_finish(lq_core *c, uint64_t now_ms, uint64_t job_id)
{
    uint32_t ei = lq_map_get(&c->idem_by_job, job_id);
    LQ_ASSERT(ei != LQ_NONE && c->idem[ei].heap_pos == LQ_NONE);
    lq_map_del(&c->idem_by_job, job_id);
    push_finished(c, ei, lq_add_sat(now_ms, c->cfg.idem_window_ms));
}

void lq_idem_drop(lq_core *c, uint64_t job_id)
{
    uint32_t ei = lq_map_get(&c->idem_by_job, job_id);
    LQ_ASSERT(ei != LQ_NONE);
    free_entry(c, ei);
}

void lq_idem_sweep(lq_core *c, uint64_t now_ms)
{
    for (uint32_t n = 0; n < LQ_IDEM_SWEEP_MAX; n++) {
        uint32_t ei = lq_heap_top(&c->idem_heap);
        if (ei == LQ_NONE || c->idem[ei].expires_ms > now_ms)
            return;
        free_entry(c, ei);
    }
}

uint64_t lq_idem_next(const lq_core *c)
{
    uint32_t ei = lq_heap_top(&c->idem_heap);
    return ei == LQ_NONE ? LQ_TIME_NEVER : c->idem[ei].expires_ms;
}

void lq_idem_free(lq_core *c)
{
    free(c->idem);
    lq_map_free(&c->idem_by_hash);
    lq_map_free(&c->idem_by_job);
    lq_heap_free(&c->idem_heap);
}

void lq_idem_check(const lq_core *c)
{
    lq_heap_check(&c->idem_heap, &idem_ops, c);
    uint32_t live = 0, owned = 0;
    for (uint32_t ei = 0; ei < c->n_idem; ei++) {
        const lq_idem *x = &c->idem[ei];
        if (x->job_id == 0) {
            LQ_ASSERT(x->heap_pos == LQ_NONE);
            continue;
        }
        live++;
        LQ_ASSERT(lq_map_get(&c->idem_by_hash, x->hash) == ei);
        if (x->heap_pos != LQ_NONE) {
            LQ_ASSERT(c->idem_heap.v[x->heap_pos] == ei);
            continue; /* finished: its job may be gone, or recovered from the results */
        }
        /* owned by a job that the core holds, flagged */
        owned++;
        LQ_ASSERT(lq_map_get(&c->idem_by_job, x->job_id) == ei);
        uint32_t slot = lq_jobs_find(&c->jobs, x->job_id);
        LQ_ASSERT(slot != LQ_NONE && (lq_job_at(c, slot)->flags & LQ_JOB_F_IDEM));
    }
    LQ_ASSERT(live == c->n_live_idem && live == c->idem_by_hash.n && owned == c->idem_by_job.n);
    LQ_ASSERT(live - owned == c->idem_heap.n && c->idem_heap.n <= LQ_IDEM_FINISHED_MAX);
    LQ_ASSERT(c->idem_heap.cap >= live);
    uint32_t flagged = 0;
    for (uint32_t slot = 0; slot < c->jobs.n_slots; slot++) {
        const lq_job *j = lq_job_at(c, slot);
        if (j->state != 0 && (j->flags & LQ_JOB_F_IDEM))
            flagged++;
    }
    LQ_ASSERT(flagged == owned);
}
