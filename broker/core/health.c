/* Worker health: loss rings, quarantine, the admin's view of sessions (lq_core_sessions) and
 * lq_core_clear_suspect. */
#include "health.h"

#include <stdlib.h>
#include <string.h>

#include "core_int.h"

static bool suspect_less(const void *ctx, uint32_t a, uint32_t b)
{
    const lq_worker *x = &((const lq_core *)ctx)->workers[a], *y = &((const lq_core *)ctx)->workers[b];
    return x->suspect_until_ms != y->suspect_until_ms ? x->suspect_until_ms < y->suspect_until_ms : a < b;
}
static void suspect_set_pos(void *ctx, uint32_t item, uint32_t pos) { ((lq_core *)ctx)->workers[item].heap_pos = pos; }
static uint32_t suspect_get_pos(const void *ctx, uint32_t item) { return ((const lq_core *)ctx)->workers[item].heap_pos; }

static const lq_heap_ops suspect_ops = {suspect_less, suspect_set_pos, suspect_get_pos};

static uint64_t *ring(const lq_core *c, uint32_t wi) { return &c->loss_times[(size_t)wi * c->cfg.quarantine_losses]; }

static uint64_t ring_at(const lq_core *c, uint32_t wi, uint32_t k)
{
    const lq_worker *w = &c->workers[wi];
    return ring(c, wi)[(w->first_loss + k) % c->cfg.quarantine_losses];
}

static bool in_window(const lq_core *c, uint64_t t, uint64_t now_ms)
{
    return lq_add_sat(t, c->cfg.quarantine_window_ms) > now_ms;
}

/* Losses come in time order (now_ms is monotonic), so the ring is oldest first. */
static void prune(lq_core *c, uint32_t wi, uint64_t now_ms)
{
    lq_worker *w = &c->workers[wi];
    while (w->n_losses > 0 && !in_window(c, ring_at(c, wi, 0), now_ms)) {
        w->first_loss = (w->first_loss + 1) % c->cfg.quarantine_losses;
        w->n_losses--;
    }
}

static uint32_t recent_losses(const lq_core *c, uint32_t wi, uint64_t now_ms)
{
    uint32_t n = 0;
    for (uint32_t k = 0; k < c->workers[wi].n_losses; k++)
        n += in_window(c, ring_at(c, wi, k), now_ms);
    return n;
}

/* Parked dequeues of a worker whose quarantine lifted wait in queues that may hold ready jobs
 * nobody marked dirty since: mark every such queue (<= LQ_QUEUES_MAX, and lifts are rare). */
static void mark_waiting_queues(lq_core *c)
{
    for (uint32_t qi = 0; qi < c->n_queues; qi++) {
        lq_queue *q = &c->queues[qi];
        if (q->n_waiters > 0 && q->ready > 0 && !q->dirty) {
            LQ_ASSERT(c->n_dirty < LQ_QUEUES_MAX);
            q->dirty = true;
            c->dirty[c->n_dirty++] = qi;
        }
    }
}

static void unsuspect(lq_core *c, uint32_t wi)
{
    lq_worker *w = &c->workers[wi];
    if (w->heap_pos != LQ_NONE)
        lq_heap_remove(&c->suspect_heap, &suspect_ops, c, w->heap_pos);
    w->suspect_until_ms = 0;
    mark_waiting_queues(c);
}

static void forget(lq_core *c, uint32_t wi)
{
    lq_worker *w = &c->workers[wi];
    LQ_ASSERT(w->name != LQ_NONE && w->n_sessions == 0);
    if (w->heap_pos != LQ_NONE)
        lq_heap_remove(&c->suspect_heap, &suspect_ops, c, w->heap_pos);
    lq_map_del(&c->worker_by_name, w->name);
    w->name = LQ_NONE;
    w->suspect_until_ms = 0;
    w->next_free = c->workers_free;
    c->workers_free = wi;
    c->n_live_workers--;
}

/* Only when the table is full: the offline id with the fewest recent losses, then the one whose
 * newest loss is oldest. max_workers > max_sessions, so an offline one exists. */
static bool evict_one(lq_core *c, uint64_t now_ms)
{
    uint32_t best = LQ_NONE, best_n = 0;
    uint64_t best_t = 0;
    for (uint32_t wi = 0; wi < c->n_workers; wi++) {
        const lq_worker *w = &c->workers[wi];
        if (w->name == LQ_NONE || w->n_sessions > 0)
            continue;
        uint32_t n = recent_losses(c, wi, now_ms);
        uint64_t t = w->n_losses ? ring_at(c, wi, w->n_losses - 1) : 0;
        if (best == LQ_NONE || n < best_n || (n == best_n && t < best_t)) {
            best = wi;
            best_n = n;
            best_t = t;
        }
    }
    if (best == LQ_NONE)
        return false;
    forget(c, best);
    return true;
}

static lq_err grow(lq_core *c)
{
    uint32_t ncap = c->cap_workers ? c->cap_workers * 2 : 64;
    lq_worker *nw = realloc(c->workers, (size_t)ncap * sizeof *nw); /* owner: core */
    if (!nw)
        return LQ_E_NOMEM;
    c->workers = nw;
    size_t q = c->cfg.quarantine_losses;
    if (q > 0) {
        uint64_t *nr = realloc(c->loss_times, (size_t)ncap * q * sizeof *nr); /* owner: core */
        if (!nr)
            return LQ_E_NOMEM; /* the larger workers array is harmless: cap_workers unchanged */
        c->loss_times = nr;
    }
    c->cap_workers = ncap;
    return LQ_OK;
}

lq_err lq_health_attach(lq_core *c, uint64_t now_ms, lq_str id, uint32_t *wi)
{
    *wi = LQ_NONE;
    if (id.len == 0)
        return LQ_OK;
    uint32_t nid = lq_names_find(&c->names, id);
    uint32_t found = nid == LQ_NONE ? LQ_NONE : lq_map_get(&c->worker_by_name, nid);
    if (found != LQ_NONE) {
        c->workers[found].n_sessions++;
        *wi = found;
        return LQ_OK;
    }
    if (c->n_live_workers >= c->max_workers && !evict_one(c, now_ms))
        return LQ_E_LIMIT;
    lq_err e = lq_names_intern(&c->names, id, &nid);
    if (e == LQ_OK && c->workers_free == LQ_NONE && c->n_workers == c->cap_workers)
        e = grow(c);
    if (e != LQ_OK)
        return e;
    uint32_t i = c->workers_free != LQ_NONE ? c->workers_free : c->n_workers;
    e = lq_map_put(&c->worker_by_name, nid, i);
    if (e != LQ_OK)
        return e;
    if (i == c->workers_free)
        c->workers_free = c->workers[i].next_free;
    else
        c->n_workers++;
    c->workers[i] = (lq_worker){
        .name = nid,
        .n_sessions = 1,
        .heap_pos = LQ_NONE,
        .next_free = LQ_NONE,
    };
    c->n_live_workers++;
    *wi = i;
    return LQ_OK;
}

void lq_health_detach(lq_core *c, uint64_t now_ms, uint32_t wi)
{
    if (wi == LQ_NONE)
        return;
    lq_worker *w = &c->workers[wi];
    LQ_ASSERT(w->name != LQ_NONE && w->n_sessions > 0);
    w->n_sessions--;
    if (w->n_sessions > 0 || c->cfg.quarantine_losses == 0) {
        if (w->n_sessions == 0)
            forget(c, wi);
        return;
    }
    prune(c, wi, now_ms);
    if (w->n_losses == 0 && w->suspect_until_ms <= now_ms)
        forget(c, wi);
}

void lq_health_loss(lq_core *c, uint64_t now_ms, uint32_t wi, lq_events *ev)
{
    uint32_t q = c->cfg.quarantine_losses;
    if (wi == LQ_NONE || q == 0)
        return;
    lq_worker *w = &c->workers[wi];
    prune(c, wi, now_ms);
    if (w->n_losses == q) { /* full: the oldest gives way */
        w->first_loss = (w->first_loss + 1) % q;
        w->n_losses--;
    }
    ring(c, wi)[(w->first_loss + w->n_losses) % q] = now_ms;
    w->n_losses++;
    if (w->n_losses < q || !in_window(c, ring_at(c, wi, 0), now_ms))
        return;
    uint64_t until = lq_add_sat(ring_at(c, wi, 0), c->cfg.quarantine_window_ms);
    bool was = w->suspect_until_ms > now_ms;
    if (was && until <= w->suspect_until_ms)
        return;
    w->suspect_until_ms = until;
    if (w->heap_pos == LQ_NONE)
        lq_must(lq_heap_push(&c->suspect_heap, &suspect_ops, c, wi));
    else
        lq_heap_fix(&c->suspect_heap, &suspect_ops, c, w->heap_pos);
    if (!was) {
        lq_ev *e = lq_ev_add(ev, LQ_EV_WORKER_SUSPECT, 0);
        e->u.suspect.worker_id = lq_names_get(&c->names, w->name);
        e->u.suspect.losses = w->n_losses;
    }
}

void lq_health_tick(lq_core *c, uint64_t now_ms)
{
    for (uint32_t wi; (wi = lq_heap_top(&c->suspect_heap)) != LQ_NONE && c->workers[wi].suspect_until_ms <= now_ms;) {
        unsuspect(c, wi);
        prune(c, wi, now_ms);
        if (c->workers[wi].n_sessions == 0 && c->workers[wi].n_losses == 0)
            forget(c, wi);
    }
}

uint64_t lq_health_next(const lq_core *c)
{
    uint32_t wi = lq_heap_top(&c->suspect_heap);
    return wi == LQ_NONE ? LQ_TIME_NEVER : c->workers[wi].suspect_until_ms;
}

void lq_health_free(lq_core *c)
{
    free(c->workers);
    free(c->loss_times);
    lq_map_free(&c->worker_by_name);
    lq_heap_free(&c->suspect_heap);
}

/* ---- the API ------------------------------------------------------------------------------ */

void lq_core_sessions(const lq_core *c, uint64_t now_ms, lq_session_info_fn fn, void *ctx)
{
    for (uint32_t si = 0; si < c->n_sessions; si++) {
        const lq_session *s = &c->sessions[si];
        if (!s->open || si == c->detached_si)
            continue;
        lq_session_info info = {
            .session = si + 1,
            .worker_id = lq_str_c(""),
            .heartbeat_ms = s->heartbeat_ms,
            .leases_held = s->n_leases,
            .last_seen_ms = s->last_seen_ms,
            .stalled = s->stalled,
        };
        if (s->worker != LQ_NONE) {
            const lq_worker *w = &c->workers[s->worker];
            info.worker_id = lq_names_get(&c->names, w->name);
            info.suspect = w->suspect_until_ms > now_ms;
            info.suspect_until_ms = info.suspect ? w->suspect_until_ms : 0;
            info.recent_losses = c->cfg.quarantine_losses ? recent_losses(c, s->worker, now_ms) : 0;
        }
        fn(ctx, &info);
    }
}

lq_err lq_core_clear_suspect(lq_core *c, uint64_t now_ms, lq_str worker_id)
{
    uint32_t nid = worker_id.len ? lq_names_find(&c->names, worker_id) : LQ_NONE;
    uint32_t wi = nid == LQ_NONE ? LQ_NONE : lq_map_get(&c->worker_by_name, nid);
    if (wi == LQ_NONE)
        return LQ_E_NOT_FOUND;
    unsuspect(c, wi);
    c->workers[wi].n_losses = 0;
    c->workers[wi].first_loss = 0;
    if (c->workers[wi].n_sessions == 0)
        forget(c, wi);
    return LQ_OK;
}

void lq_health_check(const lq_core *c)
{
    lq_heap_check(&c->suspect_heap, &suspect_ops, c);
    uint32_t live = 0, suspect = 0;
    for (uint32_t wi = 0; wi < c->n_workers; wi++) {
        const lq_worker *w = &c->workers[wi];
        if (w->name == LQ_NONE) {
            LQ_ASSERT(w->heap_pos == LQ_NONE);
            continue;
        }
        live++;
        LQ_ASSERT(w->name < c->names.n && lq_map_get(&c->worker_by_name, w->name) == wi);
        LQ_ASSERT(w->n_losses <= c->cfg.quarantine_losses);
        LQ_ASSERT(w->n_losses == 0 || w->first_loss < c->cfg.quarantine_losses);
        for (uint32_t k = 1; k < w->n_losses; k++)
            LQ_ASSERT(ring_at(c, wi, k - 1) <= ring_at(c, wi, k));
        /* suspect exactly while it is in the heap; a suspect id had a full ring when it became one */
        LQ_ASSERT((w->suspect_until_ms != 0) == (w->heap_pos != LQ_NONE));
        if (w->heap_pos != LQ_NONE) {
            LQ_ASSERT(c->suspect_heap.v[w->heap_pos] == wi);
            LQ_ASSERT(w->n_losses > 0);
            suspect++;
        }
    }
    LQ_ASSERT(live == c->n_live_workers && live == c->worker_by_name.n && live <= c->max_workers);
    LQ_ASSERT(suspect == c->suspect_heap.n);
    /* each entry's session count equals a recount (O(workers + sessions)) */
    uint32_t *n = calloc(c->n_workers + 1, sizeof *n); /* owner: this function */
    LQ_ASSERT(n != NULL);
    for (uint32_t si = 0; si < c->n_sessions; si++) {
        uint32_t wi = c->sessions[si].worker;
        if (!c->sessions[si].open || wi == LQ_NONE)
            continue;
        LQ_ASSERT(wi < c->n_workers && c->workers[wi].name != LQ_NONE);
        n[wi]++;
    }
    for (uint32_t wi = 0; wi < c->n_workers; wi++)
        LQ_ASSERT(n[wi] == (c->workers[wi].name == LQ_NONE ? 0 : c->workers[wi].n_sessions));
    free(n);
}
