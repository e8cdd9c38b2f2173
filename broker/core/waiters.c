#include "waiters.h"

#include <stdlib.h>
#include <string.h>

#include "core_int.h"
#include "lease.h"

#define NODE(wi, k) ((wi) * LQ_DEQUEUE_QUEUES_MAX + (k))
#define NODE_W(n) ((n) / LQ_DEQUEUE_QUEUES_MAX)
#define NODE_K(n) ((n) % LQ_DEQUEUE_QUEUES_MAX)

static bool wait_less(const void *ctx, uint32_t a, uint32_t b)
{
    const lq_waiter *x = &((const lq_core *)ctx)->waiters[a], *y = &((const lq_core *)ctx)->waiters[b];
    return x->expires_ms != y->expires_ms ? x->expires_ms < y->expires_ms : a < b;
}
static void wait_set_pos(void *ctx, uint32_t item, uint32_t pos) { ((lq_core *)ctx)->waiters[item].heap_pos = pos; }
static uint32_t wait_get_pos(const void *ctx, uint32_t item) { return ((const lq_core *)ctx)->waiters[item].heap_pos; }

static const lq_heap_ops wait_ops = {wait_less, wait_set_pos, wait_get_pos};

static uint32_t *node_next(lq_core *c, uint32_t n) { return &c->waiters[NODE_W(n)].next[NODE_K(n)]; }
static uint32_t *node_prev(lq_core *c, uint32_t n) { return &c->waiters[NODE_W(n)].prev[NODE_K(n)]; }

uint32_t lq_waiter_find(const lq_core *c, uint64_t handle) { return lq_map_get(&c->waiter_by_handle, handle); }

lq_err lq_waiter_park(lq_core *c, uint64_t now_ms, uint64_t handle, uint32_t si, const uint32_t *qis,
                      uint32_t n_queues, uint32_t max_jobs, uint32_t lease_ms, uint32_t wait_ms)
{
    LQ_ASSERT(n_queues >= 1 && n_queues <= LQ_DEQUEUE_QUEUES_MAX);
    if (c->n_live_waiters >= c->cfg.max_parked)
        return LQ_E_LIMIT;
    if (lq_waiter_find(c, handle) != LQ_NONE)
        return LQ_E_INVALID_ARGUMENT;
    uint32_t wi;
    bool from_free = c->waiters_free != LQ_NONE;
    if (from_free) {
        wi = c->waiters_free;
    } else {
        if (c->n_waiters == c->cap_waiters) {
            uint32_t ncap = c->cap_waiters ? c->cap_waiters * 2 : 64;
            lq_waiter *nw = realloc(c->waiters, (size_t)ncap * sizeof *nw); /* owner: core */
            if (!nw)
                return LQ_E_NOMEM;
            c->waiters = nw;
            c->cap_waiters = ncap;
        }
        wi = c->n_waiters;
    }
    uint32_t saved_next = from_free ? c->waiters[wi].next_free : LQ_NONE;
    lq_err e = lq_map_put(&c->waiter_by_handle, handle, wi);
    if (e != LQ_OK)
        return e;
    lq_waiter *w = &c->waiters[wi];
    *w = (lq_waiter){
        .handle = handle,
        .arrival = ++c->waiter_arrivals,
        .expires_ms = lq_add_sat(now_ms, wait_ms),
        .heap_pos = LQ_NONE,
        .session = si,
        .lease_ms = lease_ms,
        .max_jobs = max_jobs,
        .n_queues = n_queues,
        .sess_prev = LQ_NONE,
        .sess_next = c->sessions[si].wait_head,
        .next_free = LQ_NONE,
        .live = true,
    };
    e = lq_heap_push(&c->wait_heap, &wait_ops, c, wi);
    if (e != LQ_OK) {
        lq_map_del(&c->waiter_by_handle, handle);
        w->live = false;
        w->next_free = saved_next;
        return e;
    }
    if (from_free)
        c->waiters_free = saved_next;
    else
        c->n_waiters++;
    for (uint32_t k = 0; k < n_queues; k++) {
        lq_queue *q = &c->queues[qis[k]];
        w->queues[k] = qis[k];
        w->prev[k] = q->wait_tail;
        w->next[k] = LQ_NONE;
        if (q->wait_tail != LQ_NONE)
            *node_next(c, q->wait_tail) = NODE(wi, k);
        else
            q->wait_head = NODE(wi, k);
        q->wait_tail = NODE(wi, k);
        q->n_waiters++;
    }
    if (w->sess_next != LQ_NONE)
        c->waiters[w->sess_next].sess_prev = wi;
    c->sessions[si].wait_head = wi;
    c->n_live_waiters++;
    return LQ_OK;
}

void lq_waiter_finish(lq_core *c, uint32_t wi, lq_events *ev)
{
    lq_waiter *w = &c->waiters[wi];
    LQ_ASSERT(w->live);
    if (ev) {
        lq_ev *e = lq_ev_add(ev, LQ_EV_WAITER_DONE, 0);
        e->u.waiter_done.waiter = w->handle;
    }
    for (uint32_t k = 0; k < w->n_queues; k++) {
        lq_queue *q = &c->queues[w->queues[k]];
        if (w->prev[k] != LQ_NONE)
            *node_next(c, w->prev[k]) = w->next[k];
        else
            q->wait_head = w->next[k];
        if (w->next[k] != LQ_NONE)
            *node_prev(c, w->next[k]) = w->prev[k];
        else
            q->wait_tail = w->prev[k];
        q->n_waiters--;
    }
    if (w->heap_pos != LQ_NONE)
        lq_heap_remove(&c->wait_heap, &wait_ops, c, w->heap_pos);
    lq_session *s = &c->sessions[w->session];
    if (w->sess_prev != LQ_NONE)
        c->waiters[w->sess_prev].sess_next = w->sess_next;
    else
        s->wait_head = w->sess_next;
    if (w->sess_next != LQ_NONE)
        c->waiters[w->sess_next].sess_prev = w->sess_prev;
    lq_map_del(&c->waiter_by_handle, w->handle);
    w->live = false;
    w->next_free = c->waiters_free;
    c->waiters_free = wi;
    c->n_live_waiters--;
}

void lq_waiters_of_session(lq_core *c, uint32_t si, lq_events *ev)
{
    while (c->sessions[si].wait_head != LQ_NONE)
        lq_waiter_finish(c, c->sessions[si].wait_head, ev);
}

/* The first waiter on queue qi that may be served now (quarantined ones wait on). */
static uint32_t first_servable(const lq_core *c, uint32_t qi, uint64_t now_ms)
{
    for (uint32_t node = c->queues[qi].wait_head; node != LQ_NONE;) {
        uint32_t wi = NODE_W(node);
        const lq_waiter *w = &c->waiters[wi];
        if (!lq_session_suspect(c, w->session, now_ms))
            return wi;
        node = w->next[NODE_K(node)];
    }
    return LQ_NONE;
}

/* The queues of waiter wi on which no earlier servable waiter is parked: a waiter parked on
 * several queues must not take a job that an earlier waiter of that queue is waiting for. */
static uint32_t claimable_queues(const lq_core *c, uint32_t wi, uint64_t now_ms, uint32_t *out)
{
    const lq_waiter *w = &c->waiters[wi];
    uint32_t n = 0;
    for (uint32_t k = 0; k < w->n_queues; k++) {
        uint32_t first = first_servable(c, w->queues[k], now_ms);
        if (first == wi || first == LQ_NONE || c->waiters[first].arrival > w->arrival)
            out[n++] = w->queues[k];
    }
    return n;
}

void lq_waiters_serve(lq_core *c, uint64_t now_ms, lq_events *ev)
{
    for (uint32_t i = 0; i < c->n_dirty; i++) {
        uint32_t qi = c->dirty[i];
        c->queues[qi].dirty = false;
        uint32_t node = c->queues[qi].wait_head;
        while (node != LQ_NONE && c->queues[qi].ready > 0) {
            uint32_t wi = NODE_W(node);
            lq_waiter *w = &c->waiters[wi];
            node = w->next[NODE_K(node)]; /* another waiter's node: serving wi leaves it alone */
            if (lq_session_suspect(c, w->session, now_ms))
                continue; /* quarantined: waits on, served if the quarantine lifts in time */
            uint32_t qis[LQ_DEQUEUE_QUEUES_MAX];
            uint32_t nq = claimable_queues(c, wi, now_ms, qis);
            LQ_ASSERT(nq >= 1); /* wi is the first servable waiter of qi */
            uint32_t cursor = w->cursor % nq;
            uint32_t n = lq_lease_grant_many(c, now_ms, w->session, qis, nq, &cursor,
                                             w->max_jobs, w->lease_ms, NULL, w->handle, ev);
            if (n == 0)
                break; /* what looked ready had passed its deadline */
            lq_waiter_finish(c, wi, ev);
        }
    }
    c->n_dirty = 0;
}

void lq_waiters_expire(lq_core *c, uint64_t now_ms, lq_events *ev)
{
    for (;;) {
        uint32_t wi = lq_heap_top(&c->wait_heap);
        if (wi == LQ_NONE || c->waiters[wi].expires_ms > now_ms)
            return;
        lq_waiter_finish(c, wi, ev);
    }
}

void lq_waiters_check(const lq_core *c)
{
    lq_heap_check(&c->wait_heap, &wait_ops, c);
    uint32_t live = 0;
    for (uint32_t wi = 0; wi < c->n_waiters; wi++) {
        const lq_waiter *w = &c->waiters[wi];
        if (!w->live)
            continue;
        live++;
        LQ_ASSERT(w->heap_pos < c->wait_heap.n && c->wait_heap.v[w->heap_pos] == wi);
        LQ_ASSERT(lq_waiter_find(c, w->handle) == wi);
        LQ_ASSERT(c->sessions[w->session].open);
    }
    LQ_ASSERT(live == c->n_live_waiters && live == c->wait_heap.n && live == c->waiter_by_handle.n);
    for (uint32_t qi = 0; qi < c->n_queues; qi++) {
        const lq_queue *q = &c->queues[qi];
        uint32_t n = 0, prev = LQ_NONE;
        for (uint32_t node = q->wait_head; node != LQ_NONE;) {
            const lq_waiter *w = &c->waiters[NODE_W(node)];
            LQ_ASSERT(w->live && w->queues[NODE_K(node)] == qi && w->prev[NODE_K(node)] == prev);
            prev = node;
            node = w->next[NODE_K(node)];
            n++;
            LQ_ASSERT(n <= q->n_waiters);
        }
        LQ_ASSERT(n == q->n_waiters && prev == q->wait_tail);
    }
}
