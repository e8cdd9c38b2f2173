/* The core's lifecycle, events, producers, time, inspection and recovery. Worker calls
 * (sessions, dequeue, ack, nack, extend) are in worker.c, invariant checks in check.c. */
#include "core.h"

#include <stdlib.h>
#include <string.h>

#include "core_int.h"
#include "lease.h"

/* ---- small helpers ---------------------------------------------------------------------- */

lq_str lq_str_c(const char *s)
{
    if (!s)
        return (lq_str){"", 0};
    size_t n = strlen(s);
    return (lq_str){s, n > UINT32_MAX ? UINT32_MAX : (uint32_t)n};
}

bool lq_str_eq(lq_str a, lq_str b)
{
    return a.len == b.len && (a.len == 0 || memcmp(a.ptr, b.ptr, a.len) == 0);
}

const char *lq_requeue_reason_name(lq_requeue_reason r)
{
    switch (r) {
    case LQ_REQUEUE_LEASE_EXPIRED: return "lease_expired";
    case LQ_REQUEUE_SESSION_STALLED: return "session_stalled";
    case LQ_REQUEUE_CONN_CLOSED: return "conn_closed";
    case LQ_REQUEUE_NACK: return "nack";
    }
    return "unknown";
}

void lq_events_init(lq_events *ev) { memset(ev, 0, sizeof *ev); }
void lq_events_clear(lq_events *ev) { ev->n = 0; }
void lq_events_free(lq_events *ev)
{
    free(ev->v);
    memset(ev, 0, sizeof *ev);
}

lq_ev *lq_ev_add(lq_events *ev, lq_ev_type type, uint64_t job_id)
{
    LQ_ASSERT(ev != NULL);
    if (ev->n == ev->cap) {
        size_t ncap = ev->cap ? ev->cap * 2 : 64;
        lq_ev *nv = realloc(ev->v, ncap * sizeof *nv); /* owner: the caller's lq_events */
        lq_must(nv ? LQ_OK : LQ_E_NOMEM);
        ev->v = nv;
        ev->cap = ncap;
    }
    lq_ev *e = &ev->v[ev->n++];
    memset(e, 0, sizeof *e);
    e->type = type;
    e->job_id = job_id;
    return e;
}

uint64_t lq_rand(lq_core *c)
{
    uint64_t z = (c->rng += 0x9e3779b97f4a7c15ull); /* splitmix64 */
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

void lq_job_forget(lq_core *c, uint32_t slot)
{
    lq_job *j = lq_job_at(c, slot);
    LQ_ASSERT(j->heap_pos == LQ_NONE && j->sess_next == LQ_NONE && j->sess_prev == LQ_NONE);
    j->flags &= (uint8_t)~LQ_JOB_F_UNSYNCED; /* no side table behind it */
    LQ_ASSERT(j->flags == 0);
    lq_job_set_state(c, slot, 0);
    lq_jobs_del(&c->jobs, slot);
}

void lq_job_finish(lq_core *c, uint64_t now_ms, uint32_t slot, uint8_t final_state, lq_events *ev)
{
    lq_job *j = lq_job_at(c, slot);
    lq_ev *d = lq_ev_add(ev, LQ_EV_JOB_DELETE, j->id);
    d->u.del.final_state = final_state;
    d->u.del.queue = lq_names_get(&c->names, c->queues[lq_job_queue(c, j)].name);
    lq_jobwait_wake(c, slot, final_state, ev);
    lq_admin_count_end(&lq_job_lane(c, j)->adm, final_state);
    if (j->flags & LQ_JOB_F_IDEM) {
        lq_idem_finish(c, now_ms, j->id);
        j->flags &= (uint8_t)~LQ_JOB_F_IDEM;
    }
    lq_job_forget(c, slot);
}

/* ---- lifecycle -------------------------------------------------------------------------- */

void lq_core_config_default(lq_core_config *cfg)
{
    *cfg = (lq_core_config){
        .seed = 0x6c65617365710001ull,
        .default_lease_ms = 30000,
        .max_lease_ms = 43200000,
        .default_max_attempts = 10,
        .backoff_base_ms = 1000,
        .backoff_max_ms = 300000,
        .heartbeat_misses = 3,
        .max_sessions = 65536,
        .max_parked = 65536,
        .quarantine_losses = 3,
        .quarantine_window_ms = 600000,
        .idem_window_ms = 600000,
        .max_job_waits = 65536,
    };
}

lq_err lq_core_create(const lq_core_config *cfg, lq_core **out)
{
    lq_core_config def;
    if (!cfg) {
        lq_core_config_default(&def);
        cfg = &def;
    }
    if (!out || cfg->default_lease_ms == 0 || cfg->max_lease_ms < cfg->default_lease_ms ||
        cfg->default_max_attempts == 0 || cfg->default_max_attempts > LQ_MAX_ATTEMPTS_MAX || cfg->backoff_max_ms < cfg->backoff_base_ms ||
        cfg->heartbeat_misses == 0 || cfg->max_sessions == 0 || cfg->max_sessions >= LQ_NONE ||
        cfg->quarantine_losses > 1024)
        return LQ_E_INVALID_ARGUMENT;
    lq_core *c = calloc(1, sizeof *c); /* owner: the caller, via lq_core_destroy */
    if (!c)
        return LQ_E_NOMEM;
    c->cfg = *cfg;
    if (c->cfg.max_parked > (LQ_NONE / LQ_DEQUEUE_QUEUES_MAX) - 1)
        c->cfg.max_parked = (LQ_NONE / LQ_DEQUEUE_QUEUES_MAX) - 1;
    c->rng = cfg->seed;
    c->token_key = lq_rand(c) | 1;
    c->hash_key = (c->token_key ^ 0x6964656d706f7465ull) * 0x9e3779b97f4a7c15ull; /* no rng draw */
    /* more than max_sessions: an id whose sessions all closed can still carry its losses */
    uint64_t max_workers = (uint64_t)c->cfg.max_sessions + LQ_WORKERS_OFFLINE_MAX;
    c->max_workers = max_workers >= LQ_NONE ? LQ_NONE - 1 : (uint32_t)max_workers;
    c->next_id = 1;
    c->next_seq = 1;
    c->next_unpause_ms = LQ_TIME_NEVER;
    c->sessions_free = LQ_NONE;
    c->detached_si = LQ_NONE;
    c->waiters_free = LQ_NONE;
    c->jobwaits_free = c->workers_free = c->idem_free = LQ_NONE;
    lq_jobs_init(&c->jobs);
    c->dirty = malloc(LQ_QUEUES_MAX * sizeof *c->dirty); /* owner: core */
    lq_err e = c->dirty ? LQ_OK : LQ_E_NOMEM;
    if (e == LQ_OK)
        e = lq_names_intern(&c->names, lq_str_c(""), &c->name_empty);
    if (e == LQ_OK)
        e = lq_names_intern(&c->names, lq_str_c("default"), &c->name_default);
    if (e != LQ_OK) {
        lq_core_destroy(c);
        return e;
    }
    *out = c;
    return LQ_OK;
}

void lq_core_destroy(lq_core *c)
{
    if (!c)
        return;
    lq_jobs_free(&c->jobs);
    lq_names_free(&c->names);
    for (uint32_t i = 0; i < c->n_tenants; i++)
        lq_ready_free(&c->tenants[i].ready);
    free(c->tenants);
    free(c->lanes);
    free(c->queues);
    lq_map_free(&c->queue_by_name);
    lq_map_free(&c->tenant_by_key);
    lq_map_free(&c->waiter_by_handle);
    lq_heap_free(&c->lease_heap);
    lq_expiry_free(&c->expiry);
    lq_heap_free(&c->delayed_heap);
    lq_heap_free(&c->stall_heap);
    lq_heap_free(&c->wait_heap);
    free(c->sessions);
    free(c->waiters);
    free(c->dirty);
    lq_jobwait_free(c);
    lq_health_free(c);
    lq_idem_free(c);
    free(c);
}

lq_err lq_core_configure_queue(lq_core *c, lq_str queue, const lq_lane_cfg *lanes, uint32_t n_lanes)
{
    return lq_queue_configure(c, queue, lanes, n_lanes);
}

/* ---- producers -------------------------------------------------------------------------- */

/* Places a durable job by its state: the ready heaps, the delayed heap or nowhere (DEAD). */
static void place_job(lq_core *c, uint64_t now_ms, uint32_t slot, uint8_t state)
{
    lq_job *j = lq_job_at(c, slot);
    if (state == LQ_STATE_DELAYED && j->time_ms > now_ms) {
        lq_job_set_state(c, slot, LQ_STATE_DELAYED);
        lq_must(lq_heap_push(&c->delayed_heap, &lq_delay_heap_ops, c, slot));
    } else if (state == LQ_STATE_DEAD) {
        j->time_ms = 0;
        lq_job_set_state(c, slot, LQ_STATE_DEAD);
    } else {
        lq_queue_push_ready(c, slot);
    }
}

lq_err lq_core_enqueue(lq_core *c, uint64_t now_ms, const lq_enqueue_req *req, uint64_t *job_id, lq_events *ev)
{
    bool duplicate;
    return lq_core_enqueue_ex(c, now_ms, req, job_id, &duplicate, ev);
}

lq_err lq_core_enqueue_ex(lq_core *c, uint64_t now_ms, const lq_enqueue_req *req, uint64_t *job_id,
                          bool *duplicate, lq_events *ev)
{
    if (!req || !job_id || !duplicate || !ev || (req->tenant.len && !lq_name_valid(req->tenant)) ||
        (req->lane.len && !lq_name_valid(req->lane)) || !lq_name_valid(req->queue))
        return LQ_E_INVALID_ARGUMENT;
    *duplicate = false;
    uint64_t key_hash = 0;
    if (req->idem_key.len) {
        key_hash = lq_idem_hash(c, req->queue, req->idem_key);
        uint64_t first = lq_idem_lookup(c, now_ms, key_hash);
        if (first != 0) {
            *job_id = first;
            *duplicate = true;
            return LQ_OK;
        }
    }
    uint32_t qi, li, ti;
    lq_err e = lq_queue_get(c, req->queue, true, &qi);
    if (e == LQ_OK && c->queues[qi].adm.draining)
        e = LQ_E_DRAINING; /* admin.c */
    if (e == LQ_OK)
        e = lq_queue_lane(c, qi, req->lane, LQ_LANE_AUTO, &li);
    if (e == LQ_OK && req->max_attempts > LQ_MAX_ATTEMPTS_MAX)
        e = LQ_E_INVALID_ARGUMENT;
    if (e == LQ_OK)
        e = lq_queue_admit(c, li, req->payload_len);
    if (e == LQ_OK)
        e = lq_queue_tenant(c, li, req->tenant, &ti);
    if (e == LQ_OK)
        e = lq_jobs_reserve(&c->jobs);
    if (e == LQ_OK && req->idem_key.len)
        e = lq_idem_add(c, key_hash, c->next_id); /* the last step that can fail */
    if (e != LQ_OK)
        return e;
    uint32_t slot = lq_jobs_add(&c->jobs, c->next_id++);
    lq_job *j = lq_job_at(c, slot);
    j->seq = c->next_seq++;
    j->priority = req->priority;
    j->enqueued_ms = now_ms;
    j->time_ms = req->delay_ms ? lq_add_sat(now_ms, req->delay_ms) : 0;
    uint64_t max_wait_ms = req->deadline_ms ? req->deadline_ms : c->lanes[li].max_wait_ms;
    j->deadline_ms = max_wait_ms ? lq_add_sat(now_ms, max_wait_ms) : 0;
    j->max_attempts = (uint16_t)(req->max_attempts ? req->max_attempts : c->cfg.default_max_attempts);
    j->payload_len = req->payload_len;
    j->tenant = ti;
    j->flags = req->idem_key.len ? LQ_JOB_F_IDEM : 0;
    lq_job_set_state(c, slot, LQ_STATE_PENDING);
    if (j->deadline_ms)
        lq_expiry_add(c, j->deadline_ms, j->id);
    if (c->cfg.early_dispatch && !req->delay_ms && !req->idem_key.len) {
        /* Leasable now; the producer's answer still waits for the batch (commit_done). A keyed
         * job waits: if its batch failed after it finished, its key (by then indexed by hash
         * only) would still collapse the producer's retry onto a job that never existed. */
        j->flags |= LQ_JOB_F_UNSYNCED;
        lq_queue_push_ready(c, slot);
    }

    const lq_lane *l = &c->lanes[li];
    lq_ev *ev_put = lq_ev_add(ev, LQ_EV_JOB_PUT, j->id);
    ev_put->u.put = (lq_job_rec){
        .id = j->id,
        .seq = j->seq,
        .priority = j->priority,
        .enqueued_ms = now_ms,
        .not_before_ms = j->time_ms,
        .deadline_ms = j->deadline_ms,
        .attempts = 0,
        .max_attempts = j->max_attempts,
        .payload_len = req->payload_len,
        .state = req->delay_ms ? LQ_STATE_DELAYED : LQ_STATE_READY,
        .queue = lq_names_get(&c->names, c->queues[qi].name),
        .lane = lq_names_get(&c->names, l->name),
        .tenant = lq_names_get(&c->names, c->tenants[ti].name),
        .idem_key = req->idem_key,
        .last_error = LQ_STR_NULL,
    };
    *job_id = j->id;
    return LQ_OK;
}

/* An early-dispatched job whose put was not stored leaves from wherever it got to. */
static void revoke_unsynced(lq_core *c, uint32_t slot, lq_events *ev)
{
    lq_job *j = lq_job_at(c, slot);
    lq_ev *e = lq_ev_add(ev, LQ_EV_REVOKED, j->id);
    e->u.revoked.session = LQ_NONE;
    switch (j->state) {
    case LQ_STATE_READY:
        lq_queue_unready(c, slot);
        break;
    case LQ_STATE_DELAYED:
        lq_heap_remove(&c->delayed_heap, &lq_delay_heap_ops, c, j->heap_pos);
        break;
    case LQ_STATE_LEASED:
        /* Its worker's ack, nack or extend now meets LEASE_LOST: the job does not exist. */
        e->u.revoked.session = j->session + 1;
        if (j->heap_pos != LQ_NONE)
            lq_heap_remove(&c->lease_heap, &lq_lease_heap_ops, c, j->heap_pos);
        lq_session_unlink(c, slot);
        j->token = 0;
        break;
    default: /* DEAD: in no heap */
        break;
    }
    j->time_ms = 0;
}

void lq_core_commit_done(lq_core *c, uint64_t now_ms, uint64_t job_id, bool durable, lq_events *ev)
{
    uint32_t slot = lq_jobs_find(&c->jobs, job_id);
    if (slot != LQ_NONE && (lq_job_at(c, slot)->flags & LQ_JOB_F_UNSYNCED)) {
        lq_job *j = lq_job_at(c, slot);
        j->flags &= (uint8_t)~LQ_JOB_F_UNSYNCED;
        if (durable)
            return; /* placed at enqueue already */
        revoke_unsynced(c, slot, ev);
    } else if (slot == LQ_NONE || lq_job_at(c, slot)->state != LQ_STATE_PENDING) {
        return; /* not ours to settle: nothing was pending under this id (or an early job that
                 * finished before its batch did) */
    }
    if (!durable) {
        /* Nothing was stored: its waits learn it is gone (CANCELLED), its key is free again. */
        lq_jobwait_wake(c, slot, LQ_STATE_CANCELLED, ev);
        lq_job *j = lq_job_at(c, slot);
        if (j->flags & LQ_JOB_F_IDEM) {
            lq_idem_drop(c, job_id);
            j->flags &= (uint8_t)~LQ_JOB_F_IDEM;
        }
        lq_job_forget(c, slot);
        return;
    }
    place_job(c, now_ms, slot, lq_job_at(c, slot)->time_ms ? LQ_STATE_DELAYED : LQ_STATE_READY);
}

/* ---- time ------------------------------------------------------------------------------- */

static uint64_t min_u64(uint64_t a, uint64_t b) { return a < b ? a : b; }

uint64_t lq_core_tick(lq_core *c, uint64_t now_ms, lq_events *ev)
{
    const lq_release_opts expired = {.reason = LQ_REQUEUE_LEASE_EXPIRED};
    for (uint32_t s; (s = lq_heap_top(&c->lease_heap)) != LQ_NONE && lq_job_at(c, s)->time_ms <= now_ms;) {
        uint32_t wi = c->sessions[lq_job_at(c, s)->session].worker;
        lq_lease_release(c, now_ms, s, &expired, ev);
        lq_health_loss(c, now_ms, wi, ev); /* every expired lease is a loss of its worker */
    }
    for (uint32_t s; (s = lq_heap_top(&c->delayed_heap)) != LQ_NONE && lq_job_at(c, s)->time_ms <= now_ms;) {
        lq_heap_remove(&c->delayed_heap, &lq_delay_heap_ops, c, 0);
        lq_queue_push_ready(c, s);
    }
    for (uint32_t si; (si = lq_heap_top(&c->stall_heap)) != LQ_NONE && lq_session_stall_at(c, si) <= now_ms;)
        lq_session_stall(c, now_ms, si, ev);
    lq_waiters_expire(c, now_ms, ev);
    lq_expiry_run(c, now_ms, ev); /* before serving: an expired job is never leased */
    lq_queue_unpause_due(c, now_ms); /* before serving, like quarantine lifts below */
    lq_health_tick(c, now_ms); /* before serving: lifted workers' parked dequeues get their turn */
    lq_waiters_serve(c, now_ms, ev);
    lq_jobwait_expire(c, now_ms, ev);
    lq_idem_sweep(c, now_ms);

    uint64_t next = LQ_TIME_NEVER;
    uint32_t top;
    if ((top = lq_heap_top(&c->lease_heap)) != LQ_NONE)
        next = min_u64(next, lq_job_at(c, top)->time_ms);
    if ((top = lq_heap_top(&c->delayed_heap)) != LQ_NONE)
        next = min_u64(next, lq_job_at(c, top)->time_ms);
    if ((top = lq_heap_top(&c->stall_heap)) != LQ_NONE)
        next = min_u64(next, lq_session_stall_at(c, top));
    if ((top = lq_heap_top(&c->wait_heap)) != LQ_NONE)
        next = min_u64(next, c->waiters[top].expires_ms);
    next = min_u64(next, lq_health_next(c));
    next = min_u64(next, lq_jobwait_next(c));
    next = min_u64(next, c->next_unpause_ms);
    next = min_u64(next, lq_expiry_next(c, now_ms));
    /* a sweep cut short by its budget goes on in the next tick */
    uint64_t idem = lq_idem_next(c);
    next = min_u64(next, idem > now_ms ? idem : lq_add_sat(now_ms, 1));
    return next;
}

/* ---- inspection ------------------------------------------------------------------------- */

lq_err lq_core_stats(const lq_core *c, lq_str queue, lq_lane_stats_fn fn, void *ctx)
{
    uint32_t first = 0, last = c->n_queues;
    if (queue.len) {
        uint32_t nid = lq_names_find(&c->names, queue);
        uint32_t qi = nid == LQ_NONE ? LQ_NONE : lq_map_get(&c->queue_by_name, nid);
        if (qi == LQ_NONE)
            return LQ_E_NOT_FOUND;
        first = qi;
        last = qi + 1;
    }
    for (uint32_t qi = first; qi < last; qi++) {
        for (uint32_t i = 0; i < c->queues[qi].n_lanes; i++) {
            lq_lane_stats s;
            lq_queue_lane_stats(c, c->queues[qi].lanes[i], &s);
            fn(ctx, &s);
        }
    }
    return LQ_OK;
}

lq_err lq_core_job_state(const lq_core *c, uint64_t job_id, uint8_t *state)
{
    uint32_t slot = lq_jobs_find(&c->jobs, job_id);
    if (slot == LQ_NONE)
        return LQ_E_NOT_FOUND;
    *state = lq_job_at(c, slot)->state;
    return LQ_OK;
}

void lq_core_counters(const lq_core *c, uint64_t *next_id, uint64_t *next_seq)
{
    *next_id = c->next_id;
    *next_seq = c->next_seq;
}

/* ---- recovery --------------------------------------------------------------------------- */

lq_err lq_core_restore_job(lq_core *c, uint64_t now_ms, const lq_job_rec *rec)
{
    if (!rec || rec->id == 0 || rec->id == UINT64_MAX || rec->seq == UINT64_MAX ||
        (rec->tenant.len && !lq_name_valid(rec->tenant)) || (rec->lane.len && !lq_name_valid(rec->lane)))
        return LQ_E_INVALID_ARGUMENT;
    uint8_t state;
    switch (rec->state) {
    case LQ_STATE_READY:
    case LQ_STATE_LEASED: state = LQ_STATE_READY; break; /* leases do not survive a restart */
    case LQ_STATE_DELAYED: state = LQ_STATE_DELAYED; break;
    case LQ_STATE_DEAD: state = LQ_STATE_DEAD; break;
    default: return LQ_E_INVALID_ARGUMENT;
    }
    if (lq_jobs_find(&c->jobs, rec->id) != LQ_NONE)
        return LQ_E_INVALID_ARGUMENT;
    /* Two stored jobs with one key (never written so): the first keeps it. */
    uint64_t key_hash = rec->idem_key.len ? lq_idem_hash(c, rec->queue, rec->idem_key) : 0;
    bool keyed = rec->idem_key.len && lq_idem_lookup(c, now_ms, key_hash) == 0;
    uint32_t qi, li, ti;
    lq_err e = lq_queue_get(c, rec->queue, true, &qi);
    if (e == LQ_OK)
        e = lq_queue_lane(c, qi, rec->lane, LQ_LANE_FORCE, &li);
    if (e == LQ_OK)
        e = lq_queue_tenant(c, li, rec->tenant, &ti);
    if (e == LQ_OK)
        e = lq_jobs_reserve(&c->jobs);
    if (e == LQ_OK && keyed)
        e = lq_idem_add(c, key_hash, rec->id);
    if (e != LQ_OK)
        return e;
    uint32_t slot = lq_jobs_add(&c->jobs, rec->id);
    lq_job *j = lq_job_at(c, slot);
    j->seq = rec->seq;
    j->priority = rec->priority;
    j->enqueued_ms = rec->enqueued_ms;
    j->time_ms = state == LQ_STATE_DELAYED ? rec->not_before_ms : 0;
    j->deadline_ms = rec->deadline_ms;
    j->attempts = (uint16_t)(rec->attempts < LQ_MAX_ATTEMPTS_MAX ? rec->attempts : LQ_MAX_ATTEMPTS_MAX);
    uint32_t max_attempts = rec->max_attempts ? rec->max_attempts : c->cfg.default_max_attempts;
    j->max_attempts = (uint16_t)(max_attempts < LQ_MAX_ATTEMPTS_MAX ? max_attempts : LQ_MAX_ATTEMPTS_MAX);
    j->payload_len = rec->payload_len;
    j->tenant = ti;
    j->flags = keyed ? LQ_JOB_F_IDEM : 0;
    place_job(c, now_ms, slot, state);
    if (j->deadline_ms && state != LQ_STATE_DEAD)
        lq_expiry_add(c, j->deadline_ms, j->id);
    if (rec->id >= c->next_id)
        c->next_id = rec->id + 1;
    if (rec->seq >= c->next_seq)
        c->next_seq = rec->seq + 1;
    return LQ_OK;
}

void lq_core_restore_finish(lq_core *c, uint64_t now_ms, uint64_t next_id, uint64_t next_seq)
{
    if (next_id > c->next_id)
        c->next_id = next_id;
    if (next_seq > c->next_seq)
        c->next_seq = next_seq;
    c->restoring_done = true;
}

lq_err lq_core_restore_idem(lq_core *c, uint64_t now_ms, lq_str queue, lq_str idem_key, uint64_t job_id,
                            uint64_t finished_ms)
{
    if (!lq_name_valid(queue) || idem_key.len == 0 || job_id == 0)
        return LQ_E_INVALID_ARGUMENT;
    if (lq_add_sat(finished_ms, c->cfg.idem_window_ms) <= now_ms)
        return LQ_OK; /* its window is over: the key is free again */
    uint64_t h = lq_idem_hash(c, queue, idem_key);
    if (lq_idem_lookup(c, now_ms, h) != 0)
        return LQ_OK; /* a live job, or an earlier record, holds it already */
    if (job_id >= c->next_id)
        c->next_id = job_id + 1; /* never hand out a finished job's id again */
    return lq_idem_add_finished(c, h, job_id, finished_ms);
}
