#include "queue.h"

#include <stdlib.h>
#include <string.h>

#include "core_int.h"

/* ---- ready heap ordering ---------------------------------------------------------------- */

static bool ready_less(const void *ctx, uint32_t a, uint32_t b)
{
    const lq_core *c = ctx;
    const lq_job *x = lq_job_at(c, a), *y = lq_job_at(c, b);
    if (x->priority != y->priority)
        return x->priority < y->priority;
    return x->seq < y->seq;
}

static void job_set_pos(void *ctx, uint32_t item, uint32_t pos) { lq_job_at(ctx, item)->heap_pos = pos; }
static uint32_t job_get_pos(const void *ctx, uint32_t item) { return lq_job_at(ctx, item)->heap_pos; }

const lq_heap_ops lq_ready_heap_ops = {ready_less, job_set_pos, job_get_pos};

/* ---- lookup and creation ---------------------------------------------------------------- */

lq_err lq_queue_get(lq_core *c, lq_str name, bool create, uint32_t *qi)
{
    if (!lq_name_valid(name))
        return LQ_E_INVALID_ARGUMENT;
    uint32_t nid = lq_names_find(&c->names, name);
    uint32_t found = nid == LQ_NONE ? LQ_NONE : lq_map_get(&c->queue_by_name, nid);
    if (found != LQ_NONE) {
        *qi = found;
        return LQ_OK;
    }
    if (!create)
        return LQ_E_NOT_FOUND;
    if (c->n_queues >= LQ_QUEUES_MAX)
        return LQ_E_LIMIT;
    lq_err e = lq_names_intern(&c->names, name, &nid);
    if (e != LQ_OK)
        return e;
    if (c->n_queues == c->cap_queues) {
        uint32_t ncap = c->cap_queues ? c->cap_queues * 2 : 16;
        lq_queue *nq = realloc(c->queues, (size_t)ncap * sizeof *nq); /* owner: core */
        if (!nq)
            return LQ_E_NOMEM;
        c->queues = nq;
        c->cap_queues = ncap;
    }
    e = lq_map_put(&c->queue_by_name, nid, c->n_queues);
    if (e != LQ_OK)
        return e;
    lq_queue *q = &c->queues[c->n_queues];
    memset(q, 0, sizeof *q);
    q->name = nid;
    q->wait_head = q->wait_tail = LQ_NONE;
    *qi = c->n_queues++;
    return LQ_OK;
}

static lq_err add_lane(lq_core *c, uint32_t qi, uint32_t nid, uint32_t weight, uint32_t *li)
{
    lq_queue *q = &c->queues[qi];
    if (q->n_lanes >= LQ_LANES_MAX)
        return LQ_E_LIMIT;
    if (c->n_lanes == c->cap_lanes) {
        uint32_t ncap = c->cap_lanes ? c->cap_lanes * 2 : 16;
        lq_lane *nl = realloc(c->lanes, (size_t)ncap * sizeof *nl); /* owner: core */
        if (!nl)
            return LQ_E_NOMEM;
        c->lanes = nl;
        c->cap_lanes = ncap;
    }
    lq_lane *l = &c->lanes[c->n_lanes];
    memset(l, 0, sizeof *l);
    l->name = nid;
    l->queue = qi;
    l->weight = weight;
    l->ring_head = LQ_NONE;
    q->lanes[q->n_lanes++] = c->n_lanes;
    *li = c->n_lanes++;
    return LQ_OK;
}

static uint32_t find_lane(const lq_core *c, uint32_t qi, uint32_t nid)
{
    const lq_queue *q = &c->queues[qi];
    for (uint32_t i = 0; i < q->n_lanes; i++)
        if (c->lanes[q->lanes[i]].name == nid)
            return q->lanes[i];
    return LQ_NONE;
}

static lq_str lane_name(lq_str s) { return s.len ? s : lq_str_c("default"); }

uint32_t lq_queue_find_lane(const lq_core *c, uint32_t qi, lq_str lane)
{
    uint32_t nid = lq_names_find(&c->names, lane_name(lane));
    return nid == LQ_NONE ? LQ_NONE : find_lane(c, qi, nid);
}

lq_err lq_queue_lane(lq_core *c, uint32_t qi, lq_str lane, lq_lane_mode mode, uint32_t *li)
{
    lane = lane_name(lane);
    if (!lq_name_valid(lane))
        return LQ_E_INVALID_ARGUMENT;
    uint32_t nid = lq_names_find(&c->names, lane);
    uint32_t found = nid == LQ_NONE ? LQ_NONE : find_lane(c, qi, nid);
    if (found != LQ_NONE) {
        *li = found;
        return LQ_OK;
    }
    if (mode == LQ_LANE_AUTO && c->queues[qi].configured)
        return LQ_E_NOT_FOUND;
    lq_err e = lq_names_intern(&c->names, lane, &nid);
    if (e != LQ_OK)
        return e;
    return add_lane(c, qi, nid, 1, li);
}

lq_err lq_queue_tenant(lq_core *c, uint32_t li, lq_str tenant, uint32_t *ti)
{
    if (tenant.len && !lq_name_valid(tenant))
        return LQ_E_INVALID_ARGUMENT;
    uint32_t nid = lq_names_find(&c->names, tenant);
    uint32_t found = nid == LQ_NONE ? LQ_NONE : lq_map_get(&c->tenant_by_key, (uint64_t)li << 32 | nid);
    if (found != LQ_NONE) {
        *ti = found;
        return LQ_OK;
    }
    if (c->n_tenants >= LQ_NONE - 1)
        return LQ_E_LIMIT;
    lq_err e = lq_names_intern(&c->names, tenant, &nid);
    if (e != LQ_OK)
        return e;
    if (c->n_tenants == c->cap_tenants) {
        uint32_t ncap = c->cap_tenants ? c->cap_tenants * 2 : 16;
        lq_tenant *nt = realloc(c->tenants, (size_t)ncap * sizeof *nt); /* owner: core */
        if (!nt)
            return LQ_E_NOMEM;
        c->tenants = nt;
        c->cap_tenants = ncap;
    }
    e = lq_map_put(&c->tenant_by_key, (uint64_t)li << 32 | nid, c->n_tenants);
    if (e != LQ_OK)
        return e;
    lq_tenant *t = &c->tenants[c->n_tenants];
    memset(t, 0, sizeof *t);
    t->name = nid;
    t->lane = li;
    t->ring_prev = t->ring_next = LQ_NONE;
    *ti = c->n_tenants++;
    return LQ_OK;
}

/* ---- state and counters ----------------------------------------------------------------- */

static uint64_t *lane_counter(lq_lane *l, uint8_t state)
{
    switch (state) {
    case LQ_STATE_READY: return &l->ready;
    case LQ_STATE_LEASED: return &l->leased;
    case LQ_STATE_DELAYED: return &l->delayed;
    case LQ_STATE_DEAD: return &l->dead;
    case LQ_STATE_PENDING: return &l->pending;
    default: return NULL;
    }
}

void lq_job_set_state(lq_core *c, uint32_t slot, uint8_t state)
{
    lq_job *j = lq_job_at(c, slot);
    lq_lane *l = lq_job_lane(c, j);
    lq_queue *q = &c->queues[l->queue];
    uint64_t *from = lane_counter(l, j->state), *to = lane_counter(l, state);
    if (from) {
        LQ_ASSERT(*from > 0);
        (*from)--;
    }
    if (to)
        (*to)++;
    lq_admin_count(&l->adm, j->state, state);
    bool was_queued = j->state == LQ_STATE_READY || j->state == LQ_STATE_DELAYED || j->state == LQ_STATE_PENDING;
    bool is_queued = state == LQ_STATE_READY || state == LQ_STATE_DELAYED || state == LQ_STATE_PENDING;
    if (was_queued != is_queued) {
        LQ_ASSERT(is_queued || l->queued_bytes >= j->payload_len);
        l->queued_bytes = is_queued ? l->queued_bytes + j->payload_len : l->queued_bytes - j->payload_len;
    }
    if (!l->paused) {
        if (j->state == LQ_STATE_READY)
            q->ready--;
        if (state == LQ_STATE_READY)
            q->ready++;
    }
    j->state = state;
}

/* ---- tenant ring ------------------------------------------------------------------------ */

static void ring_insert(lq_core *c, lq_lane *l, uint32_t ti)
{
    lq_tenant *t = &c->tenants[ti];
    if (l->ring_head == LQ_NONE) {
        t->ring_prev = t->ring_next = ti;
        l->ring_head = ti;
    } else {
        /* just before the head: a tenant that becomes busy waits for one full turn */
        lq_tenant *h = &c->tenants[l->ring_head];
        t->ring_next = l->ring_head;
        t->ring_prev = h->ring_prev;
        c->tenants[h->ring_prev].ring_next = ti;
        h->ring_prev = ti;
    }
    l->n_ring++;
}

static void ring_remove(lq_core *c, lq_lane *l, uint32_t ti)
{
    lq_tenant *t = &c->tenants[ti];
    if (t->ring_next == ti) {
        l->ring_head = LQ_NONE;
    } else {
        c->tenants[t->ring_prev].ring_next = t->ring_next;
        c->tenants[t->ring_next].ring_prev = t->ring_prev;
        if (l->ring_head == ti)
            l->ring_head = t->ring_next;
    }
    t->ring_prev = t->ring_next = LQ_NONE;
    l->n_ring--;
}

void lq_queue_push_ready(lq_core *c, uint32_t slot)
{
    lq_job *j = lq_job_at(c, slot);
    LQ_ASSERT(j->heap_pos == LQ_NONE);
    lq_tenant *t = lq_job_tenant(c, j);
    lq_lane *l = &c->lanes[t->lane];
    lq_must(lq_ready_push(&t->ready, &lq_ready_heap_ops, c, slot));
    if (lq_ready_count(&t->ready) == 1)
        ring_insert(c, l, j->tenant);
    j->time_ms = 0;
    lq_job_set_state(c, slot, LQ_STATE_READY);
    lq_queue *q = &c->queues[l->queue];
    if (q->n_waiters > 0 && !q->dirty) {
        LQ_ASSERT(c->n_dirty < LQ_QUEUES_MAX);
        q->dirty = true;
        c->dirty[c->n_dirty++] = l->queue;
    }
}

/* Takes a READY job out of its tenant's ready set (it stays READY: the caller moves it on). */
void lq_queue_remove_ready(lq_core *c, uint32_t slot)
{
    lq_job *j = lq_job_at(c, slot);
    LQ_ASSERT(j->state == LQ_STATE_READY && j->heap_pos != LQ_NONE);
    lq_tenant *t = lq_job_tenant(c, j);
    lq_lane *l = &c->lanes[t->lane];
    lq_ready_remove(&t->ready, &lq_ready_heap_ops, c, j->heap_pos);
    if (lq_ready_count(&t->ready) == 0)
        ring_remove(c, l, j->tenant);
}

/* ---- dispatch --------------------------------------------------------------------------- */

/* Smooth weighted round robin (nginx) over the lanes with ready jobs; weight-0 lanes only when
 * no weighted lane has any, in turn among themselves. */
static uint32_t pick_lane(lq_core *c, lq_queue *q)
{
    lq_lane *best = NULL;
    uint32_t best_li = LQ_NONE;
    int64_t total = 0;
    for (uint32_t i = 0; i < q->n_lanes; i++) {
        lq_lane *l = &c->lanes[q->lanes[i]];
        if (l->ready == 0 || l->weight == 0 || l->paused) {
            /* Like Deficit Round Robin's reset of an empty flow: a lane that sits out starts
             * level again, so a sparse high-weight lane (api traffic that arrives one job at a
             * time) is served at once instead of paying back turns it took while alone. */
            l->cur = 0;
            continue;
        }
        l->cur += l->weight;
        total += l->weight;
        if (!best || l->cur > best->cur) {
            best = l;
            best_li = q->lanes[i];
        }
    }
    if (best) {
        best->cur -= total;
        return best_li;
    }
    for (uint32_t k = 0; k < q->n_lanes; k++) {
        uint32_t i = (q->zero_rr + k) % q->n_lanes;
        lq_lane *l = &c->lanes[q->lanes[i]];
        if (l->ready > 0 && !l->paused) {
            q->zero_rr = (i + 1) % q->n_lanes;
            return q->lanes[i];
        }
    }
    return LQ_NONE;
}

/* Pops the next job of lane li (its tenants in turn); LQ_NONE when the lane is empty. */
static uint32_t lane_pop(lq_core *c, uint32_t li)
{
    lq_lane *l = &c->lanes[li];
    uint32_t ti = l->ring_head;
    if (ti == LQ_NONE)
        return LQ_NONE;
    lq_tenant *t = &c->tenants[ti];
    uint32_t slot = lq_ready_top(&t->ready, &lq_ready_heap_ops, c);
    LQ_ASSERT(slot != LQ_NONE);
    lq_ready_remove(&t->ready, &lq_ready_heap_ops, c, lq_job_at(c, slot)->heap_pos);
    if (lq_ready_count(&t->ready) == 0)
        ring_remove(c, l, ti);
    else
        l->ring_head = t->ring_next;
    return slot;
}

void lq_queue_unready(lq_core *c, uint32_t slot)
{
    lq_job *j = lq_job_at(c, slot);
    LQ_ASSERT(j->state == LQ_STATE_READY && j->heap_pos != LQ_NONE);
    lq_tenant *t = lq_job_tenant(c, j);
    lq_ready_remove(&t->ready, &lq_ready_heap_ops, c, j->heap_pos);
    if (lq_ready_count(&t->ready) == 0)
        ring_remove(c, &c->lanes[t->lane], j->tenant);
}

uint32_t lq_queue_take(lq_core *c, uint32_t qi, uint64_t now_ms, lq_events *ev)
{
    for (;;) {
        lq_queue *q = &c->queues[qi];
        if (q->ready == 0)
            return LQ_NONE;
        uint32_t li = pick_lane(c, q);
        LQ_ASSERT(li != LQ_NONE);
        uint32_t slot = lane_pop(c, li);
        LQ_ASSERT(slot != LQ_NONE);
        lq_job *j = lq_job_at(c, slot);
        if (j->deadline_ms == 0 || now_ms < j->deadline_ms)
            return slot;
        /* Nobody waits for its result any more: never lease it. */
        lq_job_finish(c, now_ms, slot, LQ_STATE_EXPIRED, ev);
    }
}

/* ---- configuration and stats ------------------------------------------------------------ */

lq_err lq_queue_configure(lq_core *c, lq_str queue, const lq_lane_cfg *lanes, uint32_t n_lanes)
{
    if (!lq_name_valid(queue) || n_lanes == 0 || n_lanes > LQ_LANES_MAX || !lanes)
        return LQ_E_INVALID_ARGUMENT;
    for (uint32_t i = 0; i < n_lanes; i++) {
        lq_str a = lane_name(lanes[i].name);
        if (!lq_name_valid(a))
            return LQ_E_INVALID_ARGUMENT;
        for (uint32_t k = 0; k < i; k++)
            if (lq_str_eq(a, lane_name(lanes[k].name)))
                return LQ_E_INVALID_ARGUMENT;
    }
    uint32_t qi;
    lq_err e = lq_queue_get(c, queue, true, &qi);
    if (e != LQ_OK)
        return e;
    /* Check everything before changing anything: a refused configuration leaves no trace. */
    lq_queue *q = &c->queues[qi];
    uint32_t keep[LQ_LANES_MAX], n_keep = 0;
    for (uint32_t i = 0; i < q->n_lanes; i++) {
        const lq_lane *l = &c->lanes[q->lanes[i]];
        bool listed = false;
        for (uint32_t k = 0; k < n_lanes && !listed; k++)
            listed = lq_str_eq(lq_names_get(&c->names, l->name), lane_name(lanes[k].name));
        if (listed)
            keep[n_keep++] = q->lanes[i];
        else if (l->ready || l->leased || l->delayed || l->dead || l->pending)
            return LQ_E_INVALID_ARGUMENT;
    }
    for (uint32_t k = 0; k < n_lanes; k++) {
        uint32_t nid;
        e = lq_names_intern(&c->names, lane_name(lanes[k].name), &nid);
        if (e != LQ_OK)
            return e;
    }
    /* Unlisted empty lanes are dropped from the queue; their structs stay (never reused). */
    memcpy(q->lanes, keep, n_keep * sizeof keep[0]);
    q->n_lanes = n_keep;
    q->zero_rr = 0;
    for (uint32_t k = 0; k < n_lanes; k++) {
        uint32_t nid = lq_names_find(&c->names, lane_name(lanes[k].name));
        uint32_t li = find_lane(c, qi, nid);
        if (li == LQ_NONE) {
            e = add_lane(c, qi, nid, lanes[k].weight, &li);
            if (e != LQ_OK)
                return e; /* only NOMEM: n_lanes <= LQ_LANES_MAX */
        }
        c->lanes[li].weight = lanes[k].weight;
        c->lanes[li].cur = 0;
    }
    c->queues[qi].configured = true;
    return LQ_OK;
}

void lq_queue_lane_stats(const lq_core *c, uint32_t li, lq_lane_stats *s)
{
    const lq_lane *l = &c->lanes[li];
    s->queue = lq_names_get(&c->names, c->queues[l->queue].name);
    s->lane = lq_names_get(&c->names, l->name);
    s->weight = l->weight;
    s->ready = l->ready;
    s->leased = l->leased;
    s->delayed = l->delayed;
    s->dead = l->dead;
    s->pending = l->pending;
    s->expired = l->adm.t.expired;
}

void lq_queue_check(const lq_core *c)
{
    for (uint32_t qi = 0; qi < c->n_queues; qi++) {
        const lq_queue *q = &c->queues[qi];
        uint64_t ready = 0;
        for (uint32_t i = 0; i < q->n_lanes; i++) {
            const lq_lane *l = &c->lanes[q->lanes[i]];
            LQ_ASSERT(l->queue == qi);
            if (!l->paused)
                ready += l->ready;
        }
        LQ_ASSERT(ready == q->ready);
    }
    for (uint32_t li = 0; li < c->n_lanes; li++) {
        const lq_lane *l = &c->lanes[li];
        uint64_t in_heaps = 0;
        uint32_t ring = 0;
        if (l->ring_head != LQ_NONE) {
            uint32_t ti = l->ring_head;
            do {
                const lq_tenant *t = &c->tenants[ti];
                LQ_ASSERT(t->lane == li && lq_ready_count(&t->ready) > 0);
                LQ_ASSERT(c->tenants[t->ring_next].ring_prev == ti);
                in_heaps += lq_ready_count(&t->ready);
                ring++;
                LQ_ASSERT(ring <= c->n_tenants);
                ti = t->ring_next;
            } while (ti != l->ring_head);
        }
        LQ_ASSERT(ring == l->n_ring);
        LQ_ASSERT(in_heaps == l->ready);
    }
    for (uint32_t ti = 0; ti < c->n_tenants; ti++) {
        const lq_tenant *t = &c->tenants[ti];
        LQ_ASSERT((lq_ready_count(&t->ready) > 0) == (t->ring_next != LQ_NONE));
        lq_ready_check(&t->ready, &lq_ready_heap_ops, c);
        uint32_t cur = 0, seen = 0;
        for (uint32_t s = lq_ready_next(&t->ready, &cur); s != LQ_NONE; s = lq_ready_next(&t->ready, &cur)) {
            const lq_job *j = lq_job_at(c, s);
            LQ_ASSERT(j->state == LQ_STATE_READY && j->tenant == ti);
            seen++;
        }
        LQ_ASSERT(seen == lq_ready_count(&t->ready));
    }
}
