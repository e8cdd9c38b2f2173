/* The worker side of the API: sessions, heartbeats, dequeue, ack, nack, extend. */
#include "core.h"

#include <string.h>

#include "core_int.h"
#include "lease.h"

lq_err lq_core_session_open(lq_core *c, uint64_t now_ms, const lq_session_opts *opts, uint32_t *session)
{
    if (!session || (opts && opts->worker_id.len > LQ_NAME_MAX))
        return LQ_E_INVALID_ARGUMENT;
    uint32_t si, wi;
    lq_err e = lq_health_attach(c, now_ms, opts ? opts->worker_id : LQ_STR_NULL, &wi);
    if (e != LQ_OK)
        return e;
    e = lq_session_new(c, now_ms, opts ? opts->heartbeat_ms : 0, &si);
    if (e != LQ_OK) {
        lq_health_detach(c, now_ms, wi);
        return e;
    }
    c->sessions[si].worker = wi;
    c->sessions[si].keep_leases = opts && opts->keep_leases_on_close;
    *session = si + 1;
    return LQ_OK;
}

void lq_core_session_close(lq_core *c, uint64_t now_ms, uint32_t session, lq_events *ev)
{
    uint32_t si = lq_session_index(c, session);
    if (si == LQ_NONE)
        return;
    lq_waiters_of_session(c, si, NULL); /* nobody is left to read a reply */
    /* A CLI-style session hands its leases over instead: their holder acks them later from
     * another connection, or they expire. Not a loss of the worker. */
    if (c->sessions[si].keep_leases && c->sessions[si].n_leases > 0)
        (void)lq_session_detach_leases(c, now_ms, si); /* if it cannot, they are requeued below */
    bool lost = c->sessions[si].n_leases > 0;
    const lq_release_opts o = {.reason = LQ_REQUEUE_CONN_CLOSED};
    while (c->sessions[si].lease_head != LQ_NONE)
        lq_lease_release(c, now_ms, c->sessions[si].lease_head, &o, ev);
    uint32_t wi = c->sessions[si].worker;
    if (lost)
        lq_health_loss(c, now_ms, wi, ev);
    lq_session_free(c, si);
    lq_health_detach(c, now_ms, wi);
}

lq_err lq_core_heartbeat(lq_core *c, uint64_t now_ms, uint32_t session, uint32_t *leases_held)
{
    uint32_t si = lq_session_index(c, session);
    if (si == LQ_NONE)
        return LQ_E_NOT_FOUND;
    lq_session_touch(c, si, now_ms);
    if (leases_held)
        *leases_held = c->sessions[si].n_leases;
    return LQ_OK;
}

lq_err lq_core_dequeue(lq_core *c, uint64_t now_ms, const lq_dequeue_req *req, lq_lease *out,
                       uint32_t *n_out, bool *parked, lq_events *ev)
{
    if (!req || !out || !n_out || !ev || req->n_queues == 0 || req->n_queues > LQ_DEQUEUE_QUEUES_MAX ||
        !req->queues)
        return LQ_E_INVALID_ARGUMENT;
    *n_out = 0;
    if (parked)
        *parked = false;
    for (uint32_t i = 0; i < req->n_queues; i++)
        if (!lq_name_valid(req->queues[i]))
            return LQ_E_INVALID_ARGUMENT;
    uint32_t si = lq_session_index(c, req->session);
    if (si == LQ_NONE)
        return LQ_E_NOT_FOUND;
    uint32_t qis[LQ_DEQUEUE_QUEUES_MAX], n_q = 0;
    for (uint32_t i = 0; i < req->n_queues; i++) {
        uint32_t qi;
        lq_err e = lq_queue_get(c, req->queues[i], true, &qi); /* workers may start first */
        if (e != LQ_OK)
            return e;
        bool dup = false;
        for (uint32_t k = 0; k < n_q; k++)
            dup |= qis[k] == qi;
        if (!dup)
            qis[n_q++] = qi;
    }
    uint32_t max = req->max_jobs == 0 ? 1 : req->max_jobs;
    if (max > LQ_DEQUEUE_MAX)
        max = LQ_DEQUEUE_MAX;
    uint32_t lease_ms = req->lease_ms == 0 ? c->cfg.default_lease_ms : req->lease_ms;
    if (lease_ms > c->cfg.max_lease_ms)
        lease_ms = c->cfg.max_lease_ms;

    lq_session_touch(c, si, now_ms);
    lq_waiters_serve(c, now_ms, ev); /* parked workers keep their turn */
    uint32_t cursor = 0;
    if (!lq_session_suspect(c, si, now_ms))
        *n_out = lq_lease_grant_many(c, now_ms, si, qis, n_q, &cursor, max, lease_ms, out, 0, ev);
    if (*n_out > 0 || req->wait_ms == 0)
        return LQ_OK;
    lq_err e = lq_waiter_park(c, now_ms, req->waiter, si, qis, n_q, max, lease_ms, req->wait_ms);
    if (e == LQ_OK && parked)
        *parked = true;
    return e;
}

void lq_core_waiter_cancel(lq_core *c, uint64_t waiter)
{
    uint32_t wi = lq_waiter_find(c, waiter);
    if (wi != LQ_NONE)
        lq_waiter_finish(c, wi, NULL);
}

/* An ack, nack or extend proves the session holding the lease is alive. */
static void touch_holder(lq_core *c, uint32_t slot, uint64_t now_ms)
{
    lq_session_touch(c, lq_job_at(c, slot)->session, now_ms);
}

lq_err lq_core_ack(lq_core *c, uint64_t now_ms, uint64_t job_id, uint64_t token, lq_events *ev)
{
    uint32_t slot;
    lq_err e = lq_lease_lookup(c, job_id, token, &slot);
    if (e != LQ_OK)
        return e;
    touch_holder(c, slot, now_ms);
    lq_job *j = lq_job_at(c, slot);
    if (j->heap_pos != LQ_NONE)
        lq_heap_remove(&c->lease_heap, &lq_lease_heap_ops, c, j->heap_pos);
    lq_session_unlink(c, slot);
    lq_job_finish(c, now_ms, slot, LQ_STATE_DONE, ev);
    return LQ_OK;
}

lq_err lq_core_nack(lq_core *c, uint64_t now_ms, uint64_t job_id, uint64_t token, const lq_nack_opts *opts,
                    uint8_t *state_out, lq_events *ev)
{
    uint32_t slot;
    lq_err e = lq_lease_lookup(c, job_id, token, &slot);
    if (e != LQ_OK)
        return e;
    touch_holder(c, slot, now_ms);
    lq_release_opts o = {.reason = LQ_REQUEUE_NACK};
    if (opts) {
        o.error = opts->error;
        o.dead = opts->dead;
    }
    if (opts && opts->delay_set)
        o.delay_ms = opts->delay_ms;
    else
        o.delay_ms = lq_lease_backoff(c, lq_job_at(c, slot)->attempts);
    uint8_t st = lq_lease_release(c, now_ms, slot, &o, ev);
    if (state_out)
        *state_out = st;
    return LQ_OK;
}

lq_err lq_core_release(lq_core *c, uint64_t now_ms, uint64_t job_id, uint64_t token, lq_events *ev)
{
    (void)now_ms;
    (void)ev; /* nothing stored changes: attempts are only written when a lease ends otherwise */
    uint32_t slot;
    lq_err e = lq_lease_lookup(c, job_id, token, &slot);
    if (e != LQ_OK)
        return e;
    lq_job *j = lq_job_at(c, slot);
    if (j->heap_pos != LQ_NONE)
        lq_heap_remove(&c->lease_heap, &lq_lease_heap_ops, c, j->heap_pos);
    lq_session_unlink(c, slot);
    j->token = 0;
    j->time_ms = 0;
    LQ_ASSERT(j->attempts > 0);
    j->attempts--;
    lq_queue_push_ready(c, slot); /* keeps its seq: front of its lane, parked dequeues served next tick */
    return LQ_OK;
}

lq_err lq_core_extend(lq_core *c, uint64_t now_ms, uint64_t job_id, uint64_t token, uint32_t lease_ms,
                      uint64_t *expires_ms)
{
    uint32_t slot;
    lq_err e = lq_lease_lookup(c, job_id, token, &slot);
    if (e != LQ_OK)
        return e;
    touch_holder(c, slot, now_ms);
    if (lease_ms == 0)
        lease_ms = c->cfg.default_lease_ms;
    if (lease_ms > c->cfg.max_lease_ms)
        lease_ms = c->cfg.max_lease_ms;
    lq_job *j = lq_job_at(c, slot);
    j->time_ms = lq_add_sat(now_ms, lease_ms);
    if (j->heap_pos != LQ_NONE)
        lq_heap_fix(&c->lease_heap, &lq_lease_heap_ops, c, j->heap_pos);
    if (expires_ms)
        *expires_ms = j->time_ms;
    return LQ_OK;
}
