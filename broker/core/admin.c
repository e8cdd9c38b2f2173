/* Operations on the core: inspection with totals and rates, drain, per-queue defaults,
 * incremental purge, the dead-letter set (list, redrive) and cancel.
 *
 * Every job that leaves goes through lq_job_finish, so its waits, its idempotency key and its
 * store event are settled exactly as for an ack. Work per call is bounded (purge: by `max`,
 * dead lists: one pass over the job table) so the shell's loop keeps answering others. */
#include <stdlib.h>
#include <string.h>

#include "core_int.h"

#define RATE_WINDOW_MS 10000.0 /* rates are smoothed over about this long */
#define PURGE_SCAN_FACTOR 16u  /* a purge step looks at no more than this many slots per job */

/* ---- inspection ------------------------------------------------------------------------- */

static uint64_t oldest_ready(const lq_core *c, const lq_lane *l)
{
    if (l->ring_head == LQ_NONE)
        return 0;
    /* Each tenant's heap top is its next job; with equal priorities, its oldest. Tenants are
     * few next to jobs, so this is cheap where a scan of the heaps would not be. */
    uint64_t oldest = 0;
    uint32_t ti = l->ring_head, guard = 0;
    do {
        const lq_tenant *t = &c->tenants[ti];
        uint32_t slot = lq_ready_top(&t->ready, &lq_ready_heap_ops, c);
        if (slot != LQ_NONE) {
            uint64_t e = lq_job_at(c, slot)->enqueued_ms;
            if (oldest == 0 || e < oldest)
                oldest = e;
        }
        ti = t->ring_next;
    } while (ti != l->ring_head && ++guard < l->n_ring);
    return oldest;
}

static void lane_info(const lq_core *c, uint32_t li, lq_lane_info *out)
{
    const lq_lane *l = &c->lanes[li];
    memset(out, 0, sizeof *out);
    lq_queue_lane_stats(c, li, &out->stats);
    out->settings = (lq_lane_settings){
        .weight = l->weight,
        .max_queued = l->max_queued,
        .max_queued_bytes = l->max_queued_bytes,
        .max_wait_ms = l->max_wait_ms,
        .sheddable = l->sheddable,
        .paused = l->paused,
        .paused_until_ms = l->paused_until_ms,
    };
    out->totals = l->adm.t;
    out->oldest_ready_ms = oldest_ready(c, l);
    out->enqueue_rate = l->adm.enqueue_rate;
    out->ack_rate = l->adm.ack_rate;
}

static lq_queue_opts queue_opts(const lq_queue *q)
{
    return (lq_queue_opts){.draining = q->adm.draining, .lease_ms = q->adm.lease_ms,
                           .max_attempts = q->adm.max_attempts, .retention_set = q->adm.retention_set,
                           .retention_ms = q->adm.retention_ms};
}

/* The queue's index, never creating it; NOT_FOUND or INVALID_ARGUMENT. */
static lq_err find_queue(const lq_core *c, lq_str queue, uint32_t *qi)
{
    return lq_queue_get((lq_core *)c, queue, false, qi);
}

lq_err lq_core_inspect(const lq_core *c, lq_str queue, lq_lane_info_fn fn, void *ctx)
{
    uint32_t first = 0, last = c->n_queues;
    if (queue.len) {
        uint32_t qi;
        lq_err e = find_queue(c, queue, &qi);
        if (e != LQ_OK)
            return e;
        first = qi;
        last = qi + 1;
    }
    for (uint32_t qi = first; qi < last; qi++) {
        const lq_queue *q = &c->queues[qi];
        lq_queue_opts qo = queue_opts(q);
        for (uint32_t i = 0; i < q->n_lanes; i++) {
            lq_lane_info info;
            lane_info(c, q->lanes[i], &info);
            fn(ctx, &info, &qo);
        }
    }
    return LQ_OK;
}

void lq_core_admin_tick(lq_core *c, uint64_t now_ms)
{
    for (uint32_t li = 0; li < c->n_lanes; li++) {
        lq_lane_admin *a = &c->lanes[li].adm;
        if (a->mark_ms != 0 && now_ms < a->mark_ms + 1000)
            continue;
        if (a->mark_ms != 0 && now_ms > a->mark_ms) {
            double dt = (double)(now_ms - a->mark_ms);
            double k = dt >= RATE_WINDOW_MS ? 1.0 : dt / RATE_WINDOW_MS;
            double enq = (double)(a->t.enqueued - a->mark_enqueued) * 1000.0 / dt;
            double ack = (double)(a->t.acked - a->mark_acked) * 1000.0 / dt;
            a->enqueue_rate += (enq - a->enqueue_rate) * k;
            a->ack_rate += (ack - a->ack_rate) * k;
        }
        a->mark_ms = now_ms;
        a->mark_enqueued = a->t.enqueued;
        a->mark_acked = a->t.acked;
    }
}

/* ---- queue options and drain ------------------------------------------------------------ */

lq_err lq_core_queue_opts_get(const lq_core *c, lq_str queue, lq_queue_opts *out)
{
    uint32_t qi;
    lq_err e = find_queue(c, queue, &qi);
    if (e == LQ_OK)
        *out = queue_opts(&c->queues[qi]);
    return e;
}

lq_err lq_core_queue_opts_set(lq_core *c, lq_str queue, const lq_queue_opts *o)
{
    if (o->max_attempts > LQ_MAX_ATTEMPTS_MAX)
        return LQ_E_INVALID_ARGUMENT;
    uint32_t qi;
    lq_err e = lq_queue_get(c, queue, true, &qi);
    if (e != LQ_OK)
        return e;
    lq_queue_admin *a = &c->queues[qi].adm;
    if (o->draining && !a->draining)
        a->drain_reported = false;
    a->draining = o->draining;
    a->lease_ms = o->lease_ms;
    a->max_attempts = o->max_attempts;
    a->retention_set = o->retention_set;
    a->retention_ms = o->retention_set ? o->retention_ms : 0;
    return LQ_OK;
}

static uint64_t remaining(const lq_core *c, const lq_queue *q)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < q->n_lanes; i++) {
        const lq_lane *l = &c->lanes[q->lanes[i]];
        n += l->ready + l->delayed + l->pending + l->leased;
    }
    return n;
}

lq_err lq_core_queue_remaining(const lq_core *c, lq_str queue, uint64_t *out)
{
    uint32_t qi;
    lq_err e = find_queue(c, queue, &qi);
    if (e == LQ_OK)
        *out = remaining(c, &c->queues[qi]);
    return e;
}

void lq_core_drained(lq_core *c, lq_drained_fn fn, void *ctx)
{
    for (uint32_t qi = 0; qi < c->n_queues; qi++) {
        lq_queue *q = &c->queues[qi];
        if (!q->adm.draining)
            continue;
        bool empty = remaining(c, q) == 0;
        if (empty && !q->adm.drain_reported) {
            q->adm.drain_reported = true;
            fn(ctx, lq_names_get(&c->names, q->name));
        } else if (!empty) {
            q->adm.drain_reported = false; /* jobs came back (a restart, a redrive) */
        }
    }
}

/* ---- purge ------------------------------------------------------------------------------ */

/* Takes a READY job out of its tenant's heap (and the tenant out of its lane's ring when that
 * was its last ready job). The ring is queue.c's; this mirrors its ring_remove. */
static void take_ready(lq_core *c, uint32_t slot)
{
    lq_job *j = lq_job_at(c, slot);
    lq_tenant *t = &c->tenants[j->tenant];
    lq_lane *l = &c->lanes[t->lane];
    LQ_ASSERT(j->heap_pos != LQ_NONE);
    lq_ready_remove(&t->ready, &lq_ready_heap_ops, c, j->heap_pos);
    if (lq_ready_count(&t->ready) > 0)
        return;
    uint32_t ti = j->tenant;
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

/* Takes a job out of whatever heap its state puts it in, so it can end or move. */
static void unplace(lq_core *c, uint32_t slot)
{
    lq_job *j = lq_job_at(c, slot);
    if (j->state == LQ_STATE_READY)
        take_ready(c, slot);
    else if (j->state == LQ_STATE_DELAYED)
        lq_heap_remove(&c->delayed_heap, &lq_delay_heap_ops, c, j->heap_pos);
    LQ_ASSERT(j->heap_pos == LQ_NONE);
}

lq_err lq_core_purge_begin(lq_core *c, lq_purge *p)
{
    uint32_t qi;
    lq_err e = find_queue(c, p->queue, &qi);
    if (e != LQ_OK)
        return e;
    if (p->lane.len && lq_queue_find_lane(c, qi, p->lane) == LQ_NONE)
        return LQ_E_NOT_FOUND;
    p->seq_below = c->next_seq;
    p->cursor = 0;
    return LQ_OK;
}

bool lq_core_purge_step(lq_core *c, uint64_t now_ms, lq_purge *p, uint32_t max, uint64_t *purged, lq_events *ev)
{
    uint32_t qi;
    if (find_queue(c, p->queue, &qi) != LQ_OK)
        return true;
    uint32_t li = LQ_NONE;
    if (p->lane.len && (li = lq_queue_find_lane(c, qi, p->lane)) == LQ_NONE)
        return true;
    uint64_t budget = (uint64_t)max * PURGE_SCAN_FACTOR;
    uint32_t done = 0;
    while (p->cursor < c->jobs.n_slots && done < max && budget > 0) {
        uint32_t slot = p->cursor++;
        budget--;
        lq_job *j = lq_job_at(c, slot);
        bool want = p->dead ? j->state == LQ_STATE_DEAD
                            : j->state == LQ_STATE_READY || j->state == LQ_STATE_DELAYED;
        if (!want || j->seq >= p->seq_below)
            continue;
        if (p->enqueued_before_ms && j->enqueued_ms >= p->enqueued_before_ms)
            continue;
        const lq_lane *l = lq_job_lane(c, j);
        if (l->queue != qi || (li != LQ_NONE && c->tenants[j->tenant].lane != li))
            continue;
        unplace(c, slot);
        lq_job_finish(c, now_ms, slot, LQ_STATE_PURGED, ev);
        done++;
    }
    *purged += done;
    return p->cursor >= c->jobs.n_slots;
}

/* ---- dead letters ----------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

lq_err lq_core_dead_list(const lq_core *c, lq_str queue, uint64_t after_id, uint64_t *out, uint32_t max, uint32_t *n,
                         uint64_t *total)
{
    uint32_t qi;
    lq_err e = find_queue(c, queue, &qi);
    if (e != LQ_OK)
        return e;
    *n = 0;
    *total = 0;
    const lq_queue *q = &c->queues[qi];
    for (uint32_t i = 0; i < q->n_lanes; i++)
        *total += c->lanes[q->lanes[i]].dead;
    if (max == 0 || *total == 0)
        return LQ_OK;
    /* Keep the max smallest ids above after_id: out[] stays sorted, insertion from the end.
     * O(slots x log) for the common small max; the table is walked once. */
    for (uint32_t slot = 0; slot < c->jobs.n_slots; slot++) {
        const lq_job *j = lq_job_at(c, slot);
        if (j->state != LQ_STATE_DEAD || j->id <= after_id || lq_job_queue(c, j) != qi)
            continue;
        if (*n == max && j->id >= out[max - 1])
            continue;
        uint32_t k = *n < max ? (*n)++ : max - 1;
        out[k] = j->id;
        while (k > 0 && cmp_u64(&out[k - 1], &out[k]) > 0) {
            uint64_t t = out[k - 1];
            out[k - 1] = out[k];
            out[k] = t;
            k--;
        }
    }
    return LQ_OK;
}

static void redrive_one(lq_core *c, uint32_t slot, lq_events *ev)
{
    lq_job *j = lq_job_at(c, slot);
    LQ_ASSERT(j->state == LQ_STATE_DEAD && j->heap_pos == LQ_NONE);
    j->attempts = 0;
    lq_queue_push_ready(c, slot); /* by its old seq: its old place in line */
    lq_ev *e = lq_ev_add(ev, LQ_EV_JOB_UPDATE, j->id);
    e->u.update.state = LQ_STATE_READY;
    e->u.update.attempts = 0;
    e->u.update.not_before_ms = 0;
    e->u.update.last_error = lq_str_c("redriven from the dead-letter set");
}

lq_err lq_core_redrive(lq_core *c, uint64_t now_ms, lq_str queue, uint64_t job_id, uint32_t max,
                       uint64_t *redriven, lq_events *ev)
{
    (void)now_ms;
    *redriven = 0;
    uint32_t qi;
    lq_err e = find_queue(c, queue, &qi);
    if (e != LQ_OK)
        return e;
    if (job_id != 0) {
        uint32_t slot = lq_jobs_find(&c->jobs, job_id);
        if (slot == LQ_NONE || lq_job_at(c, slot)->state != LQ_STATE_DEAD || lq_job_queue(c, lq_job_at(c, slot)) != qi)
            return LQ_E_NOT_FOUND;
        redrive_one(c, slot, ev);
        *redriven = 1;
        return LQ_OK;
    }
    uint64_t dead = 0;
    const lq_queue *q = &c->queues[qi];
    for (uint32_t i = 0; i < q->n_lanes; i++)
        dead += c->lanes[q->lanes[i]].dead;
    for (uint32_t slot = 0; slot < c->jobs.n_slots && *redriven < max && dead > 0; slot++) {
        lq_job *j = lq_job_at(c, slot);
        if (j->state != LQ_STATE_DEAD || lq_job_queue(c, j) != qi)
            continue;
        redrive_one(c, slot, ev);
        (*redriven)++;
        dead--;
    }
    return LQ_OK;
}

/* ---- single jobs ------------------------------------------------------------------------ */

lq_err lq_core_cancel(lq_core *c, uint64_t now_ms, uint64_t job_id, lq_events *ev)
{
    uint32_t slot = lq_jobs_find(&c->jobs, job_id);
    if (slot == LQ_NONE)
        return LQ_E_NOT_FOUND;
    uint8_t st = lq_job_at(c, slot)->state;
    if (st != LQ_STATE_READY && st != LQ_STATE_DELAYED && st != LQ_STATE_DEAD)
        return LQ_E_INVALID_ARGUMENT;
    unplace(c, slot);
    lq_job_finish(c, now_ms, slot, LQ_STATE_CANCELLED, ev);
    return LQ_OK;
}

lq_err lq_core_job_attempts(const lq_core *c, uint64_t job_id, uint32_t *attempts)
{
    uint32_t slot = lq_jobs_find(&c->jobs, job_id);
    if (slot == LQ_NONE)
        return LQ_E_NOT_FOUND;
    *attempts = lq_job_at(c, slot)->attempts;
    return LQ_OK;
}
