/* beanstalk compatibility: the job-by-id operations beanstalkd's commands need (core.h, the
 * "beanstalk compatibility" section). Same rules as the rest of the core: time as an argument,
 * every durable change as an event. */
#include <string.h>

#include "core_int.h"
#include "lease.h"

static uint32_t find(const lq_core *c, uint64_t job_id)
{
    if (job_id == 0 || job_id >= c->next_id)
        return LQ_NONE;
    return lq_jobs_find(&c->jobs, job_id);
}

lq_err lq_core_bs_job(const lq_core *c, uint64_t job_id, lq_bs_job *out)
{
    uint32_t slot = find(c, job_id);
    if (slot == LQ_NONE)
        return LQ_E_NOT_FOUND;
    const lq_job *j = lq_job_at(c, slot);
    const lq_lane *l = lq_job_lane(c, j);
    *out = (lq_bs_job){
        .state = j->state,
        .priority = j->priority,
        .seq = j->seq,
        .enqueued_ms = j->enqueued_ms,
        .time_ms = j->state == LQ_STATE_DEAD ? 0 : j->time_ms,
        .attempts = j->attempts,
        .session = j->state == LQ_STATE_LEASED ? j->session + 1 : 0,
        .queue = lq_names_get(&c->names, c->queues[l->queue].name),
        .lane = lq_names_get(&c->names, l->name),
    };
    return LQ_OK;
}

static bool ready_before(const lq_job *a, const lq_job *b)
{
    return a->priority != b->priority ? a->priority < b->priority : a->seq < b->seq;
}

static bool timed_before(const lq_job *a, const lq_job *b)
{
    return a->time_ms != b->time_ms ? a->time_ms < b->time_ms : a->seq < b->seq;
}

lq_err lq_core_bs_first(const lq_core *c, lq_str queue, uint8_t state, uint64_t *job_id)
{
    if (!lq_name_valid(queue))
        return LQ_E_NOT_FOUND;
    uint32_t nid = lq_names_find(&c->names, queue);
    uint32_t qi = nid == LQ_NONE ? LQ_NONE : lq_map_get(&c->queue_by_name, nid);
    if (qi == LQ_NONE)
        return LQ_E_NOT_FOUND;
    const lq_queue *q = &c->queues[qi];
    const lq_job *best = NULL;
    if (state == LQ_STATE_READY) {
        /* every tenant heap's top, over the queue's lanes */
        for (uint32_t i = 0; i < q->n_lanes; i++) {
            const lq_lane *l = &c->lanes[q->lanes[i]];
            uint32_t ti = l->ring_head;
            for (uint32_t k = 0; ti != LQ_NONE && k < l->n_ring; k++) {
                const lq_tenant *t = &c->tenants[ti];
                uint32_t top = lq_ready_top(&t->ready, &lq_ready_heap_ops, c);
                if (top != LQ_NONE && (!best || ready_before(lq_job_at(c, top), best)))
                    best = lq_job_at(c, top);
                ti = t->ring_next;
            }
        }
    } else if (state == LQ_STATE_DELAYED) {
        for (uint32_t i = 0; i < c->delayed_heap.n; i++) {
            const lq_job *j = lq_job_at(c, c->delayed_heap.v[i]);
            if (lq_job_queue(c, j) == qi && (!best || timed_before(j, best)))
                best = j;
        }
    } else if (state == LQ_STATE_DEAD) {
        /* time_ms of a DEAD job is its bury number (0 if it died another way) */
        for (uint32_t s = 0; s < c->jobs.n_slots; s++) {
            const lq_job *j = lq_job_at(c, s);
            if (j->state == LQ_STATE_DEAD && lq_job_queue(c, j) == qi && (!best || timed_before(j, best)))
                best = j;
        }
    } else {
        return LQ_E_INVALID_ARGUMENT;
    }
    if (!best)
        return LQ_E_NOT_FOUND;
    *job_id = best->id;
    return LQ_OK;
}

lq_err lq_core_bs_release(lq_core *c, uint64_t now_ms, uint64_t job_id, uint64_t token, int64_t priority,
                          uint64_t delay_ms, lq_events *ev)
{
    uint32_t slot;
    lq_err e = lq_lease_lookup(c, job_id, token, &slot);
    if (e != LQ_OK)
        return e;
    lq_job *j = lq_job_at(c, slot);
    j->priority = priority; /* not in a heap while leased: no re-keying needed */
    /* a release is never a dead-letter, whatever the delivery count */
    if (j->attempts >= j->max_attempts)
        j->attempts = (uint16_t)(j->max_attempts - 1);
    lq_release_opts o = {.reason = LQ_REQUEUE_NACK, .error = lq_str_c("released"), .delay_ms = delay_ms};
    lq_lease_release(c, now_ms, slot, &o, ev);
    return LQ_OK;
}

lq_err lq_core_bs_bury(lq_core *c, uint64_t now_ms, uint64_t job_id, uint64_t token, int64_t priority,
                       lq_events *ev)
{
    uint32_t slot;
    lq_err e = lq_lease_lookup(c, job_id, token, &slot);
    if (e != LQ_OK)
        return e;
    lq_job *j = lq_job_at(c, slot);
    j->priority = priority;
    lq_release_opts o = {.reason = LQ_REQUEUE_NACK, .error = lq_str_c("buried"), .dead = true};
    lq_lease_release(c, now_ms, slot, &o, ev);
    j->time_ms = ++c->bs_bury_ctr; /* FIFO of buried jobs for peek-buried and kick */
    return LQ_OK;
}

/* Takes a READY, DELAYED or DEAD job out of wherever it waits; false for other states. */
static bool detach(lq_core *c, uint32_t slot)
{
    lq_job *j = lq_job_at(c, slot);
    switch (j->state) {
    case LQ_STATE_READY:
        lq_queue_remove_ready(c, slot);
        return true;
    case LQ_STATE_DELAYED:
        lq_heap_remove(&c->delayed_heap, &lq_delay_heap_ops, c, j->heap_pos);
        return true;
    case LQ_STATE_DEAD:
        return true;
    default:
        return false;
    }
}

lq_err lq_core_bs_kick(lq_core *c, uint64_t now_ms, uint64_t job_id, lq_events *ev)
{
    (void)now_ms;
    uint32_t slot = find(c, job_id);
    if (slot == LQ_NONE)
        return LQ_E_NOT_FOUND;
    lq_job *j = lq_job_at(c, slot);
    if (j->state != LQ_STATE_DEAD && j->state != LQ_STATE_DELAYED)
        return LQ_E_NOT_FOUND;
    detach(c, slot);
    j->time_ms = 0;
    lq_queue_push_ready(c, slot);
    lq_ev *e = lq_ev_add(ev, LQ_EV_JOB_UPDATE, j->id);
    e->u.update.state = LQ_STATE_READY;
    e->u.update.attempts = j->attempts;
    e->u.update.not_before_ms = 0;
    e->u.update.last_error = lq_str_c("kicked");
    return LQ_OK;
}

lq_err lq_core_bs_delete(lq_core *c, uint64_t now_ms, uint64_t job_id, lq_events *ev)
{
    uint32_t slot = find(c, job_id);
    if (slot == LQ_NONE || !detach(c, slot))
        return LQ_E_NOT_FOUND;
    lq_job_at(c, slot)->time_ms = 0;
    lq_job_finish(c, now_ms, slot, LQ_STATE_DONE, ev);
    return LQ_OK;
}

lq_err lq_core_bs_lease(lq_core *c, uint64_t now_ms, uint64_t job_id, uint32_t session, uint32_t lease_ms,
                        lq_lease *out, lq_events *ev)
{
    (void)ev;
    uint32_t si = lq_session_index(c, session);
    if (si == LQ_NONE)
        return LQ_E_INVALID_ARGUMENT;
    uint32_t slot = find(c, job_id);
    if (slot == LQ_NONE || !detach(c, slot))
        return LQ_E_NOT_FOUND;
    if (lease_ms == 0)
        lease_ms = c->cfg.default_lease_ms;
    if (lease_ms > c->cfg.max_lease_ms)
        lease_ms = c->cfg.max_lease_ms;
    lq_lease_grant_slot(c, now_ms, si, slot, lease_ms, out);
    return LQ_OK;
}

uint64_t lq_core_bs_count_ready_below(const lq_core *c, lq_str queue, int64_t below)
{
    uint32_t only = LQ_NONE;
    if (queue.len > 0) {
        uint32_t nid = lq_names_find(&c->names, queue);
        only = nid == LQ_NONE ? LQ_NONE : lq_map_get(&c->queue_by_name, nid);
        if (only == LQ_NONE)
            return 0;
    }
    uint64_t n = 0;
    for (uint32_t ti = 0; ti < c->n_tenants; ti++) {
        const lq_tenant *t = &c->tenants[ti];
        if (only != LQ_NONE && c->lanes[t->lane].queue != only)
            continue;
        uint32_t cur = 0;
        for (uint32_t s = lq_ready_next(&t->ready, &cur); s != LQ_NONE; s = lq_ready_next(&t->ready, &cur))
            n += lq_job_at(c, s)->priority < below;
    }
    return n;
}
