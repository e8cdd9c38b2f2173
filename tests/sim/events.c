/* Core events -> store batch operations and model transitions, as the broker's shell applies
 * them, with the contract's rules checked on every event.
 *
 * Store events go to the open batch in the order given (the core relies on that order).
 * Informational events move the model: REQUEUED puts a leased job back, DEAD dead-letters,
 * SESSION_STALLED marks a session. A JOB_UPDATE to DEAD also dead-letters (whichever of the two
 * the core emits first); JOB_UPDATE to READY/DELAYED is remembered for the call that caused it
 * (a nack reads its new not-before from there) but never un-leases by itself, because the
 * contract does not say whether the core persists a grant before or after its LEASE event. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

static const char *mj_name(uint8_t st)
{
    switch (st) {
    case MJ_VOID: return "void";
    case MJ_PENDING: return "PENDING";
    case MJ_WAITING: return "READY/DELAYED";
    case MJ_LEASED: return "LEASED";
    case MJ_DEAD: return "DEAD";
    case MJ_GONE_PENDING: return "deleted (not yet durable)";
    case MJ_GONE: return "deleted";
    }
    return "?";
}

static sim_job *known_job(sim *s, uint64_t id, const char *what)
{
    sim_job *j = model_job(s, id);
    SIM_CHECK(s, j && j->st != MJ_VOID, "%s for job %llu, which the core never issued (or lost)", what,
              (unsigned long long)id);
    return j;
}

void sim_unlease(sim *s, sim_job *j)
{
    sim_model *m = &s->m;
    LQ_ASSERT(j->st == MJ_LEASED);
    uint32_t slot = j->lease_slot;
    LQ_ASSERT(slot < m->n_leases && &m->jobs[m->leases[slot]] == j);
    m->leases[slot] = m->leases[--m->n_leases];
    if (slot < m->n_leases) m->jobs[m->leases[slot]].lease_slot = slot;
    int k = model_session_slot(s, j->session);
    if (k >= 0) {
        LQ_ASSERT(m->sessions[k].n_leases > 0);
        m->sessions[k].n_leases--;
    }
    model_stale_push(s, j->id, j->token);
    j->token = 0;
}

/* Checks a grant (a dequeue's out[] or a LEASE event) against the model and records it. */
void sim_grant(sim *s, const lq_lease *lease, uint32_t session, uint32_t lease_ms, int waiter)
{
    sim_job *j = known_job(s, lease->job_id, "lease");
    const char *via = waiter >= 0 ? "parked dequeue" : "dequeue";
    unsigned long long id = (unsigned long long)j->id;
    SIM_CHECK(s, j->st != MJ_PENDING, "%s granted job %llu before its batch committed (PENDING)", via, id);
    SIM_CHECK(s, j->st != MJ_LEASED, "%s granted job %llu to session %u while session %u holds a valid lease "
              "(token %llx, expires %llu)", via, id, lease->session, j->session, (unsigned long long)j->token,
              (unsigned long long)j->expires);
    SIM_CHECK(s, j->st == MJ_WAITING, "%s granted job %llu in state %s", via, id, mj_name(j->st));
    SIM_CHECK(s, j->nb <= s->now, "%s granted job %llu at %llu, before its not-before %llu", via, id,
              (unsigned long long)s->now, (unsigned long long)j->nb);
    SIM_CHECK(s, j->deadline == 0 || s->now <= j->deadline, "%s granted job %llu at %llu, after its deadline %llu",
              via, id, (unsigned long long)s->now, (unsigned long long)j->deadline);
    SIM_CHECK(s, lease->attempt == j->deliveries + 1, "%s granted job %llu as attempt %u, expected %u", via, id,
              lease->attempt, j->deliveries + 1);
    SIM_CHECK(s, lease->attempt <= j->max_attempts || j->over_limit_ok,
              "%s granted job %llu as attempt %u, past max_attempts %u", via, id, lease->attempt, j->max_attempts);
    SIM_CHECK(s, lease->token != j->last_token, "%s granted job %llu with its previous token %llx again", via, id,
              (unsigned long long)lease->token);
    SIM_CHECK(s, lease->session == session, "%s for session %u granted job %llu to session %u", via, session, id,
              lease->session);
    int q = sim_queue_index(lease->queue);
    SIM_CHECK(s, q == j->q && sim_lane_index(q, lease->lane) == j->l && sim_tenant_index(lease->tenant) == j->t,
              "lease of job %llu names %.*s/%.*s tenant '%.*s', expected %s/%s tenant '%s'", id,
              (int)lease->queue.len, lease->queue.ptr, (int)lease->lane.len, lease->lane.ptr,
              (int)lease->tenant.len, lease->tenant.ptr, sim_queue_names[j->q], sim_lane_names[j->q][j->l],
              sim_tenant_names[j->t]);
    SIM_CHECK(s, lease->priority == j->priority && lease->enqueued_ms == j->enq_ms,
              "lease of job %llu: priority %lld enqueued %llu, expected %lld %llu", id, (long long)lease->priority,
              (unsigned long long)lease->enqueued_ms, (long long)j->priority, (unsigned long long)j->enq_ms);
    model_check_order(s, j);
    int k = model_session_slot(s, session);
    SIM_CHECK(s, k >= 0, "job %llu granted to session %u, which is not open", id, session);
    sim_session *ss = &s->m.sessions[k];
    SIM_CHECK(s, !health_worker_suspect(s, ss->worker), "%s granted job %llu to session %u of quarantined worker "
              "gpu-%02d (lifts at %llu)", via, id, session, ss->worker,
              (unsigned long long)health_lift_time(s, ss->worker));
    if (ss->hb_ms == 0) {
        uint64_t want = lease_ms == 0 ? s->cfg.default_lease_ms
                                      : (lease_ms > s->cfg.max_lease_ms ? s->cfg.max_lease_ms : lease_ms);
        SIM_CHECK(s, lease->expires_ms == s->now + want, "lease of job %llu expires at %llu, expected now %llu + %llu",
                  id, (unsigned long long)lease->expires_ms, (unsigned long long)s->now, (unsigned long long)want);
    } else {
        SIM_CHECK(s, lease->expires_ms > s->now, "lease of job %llu expires at %llu, not after now %llu", id,
                  (unsigned long long)lease->expires_ms, (unsigned long long)s->now);
    }

    model_set_state(s, j, MJ_LEASED);
    j->token = lease->token;
    j->last_token = lease->token;
    j->expires = lease->expires_ms;
    j->session = session;
    j->deliveries = lease->attempt;
    j->over_limit_ok = false;
    sim_model *m = &s->m;
    if (m->n_leases == m->cap_leases) {
        m->cap_leases = m->cap_leases ? m->cap_leases * 2 : 256;
        uint32_t *nl = realloc(m->leases, m->cap_leases * sizeof *nl); /* owner: model */
        SIM_CHECK(s, nl != NULL, "out of memory");
        m->leases = nl;
    }
    j->lease_slot = m->n_leases;
    m->leases[m->n_leases++] = (uint32_t)(j - m->jobs);
    ss->n_leases++;
    /* Being handed work counts as activity for the upper bound on a stall. */
    if (ss->act_hi < s->now) ss->act_hi = s->now;
    s->c.grants++;
    if (waiter >= 0) s->c.waiter_grants++;
    sim_log(s, "  grant job %llu attempt %u token %llx session %u expires %llu (%s)", id, lease->attempt,
            (unsigned long long)lease->token, session, (unsigned long long)lease->expires_ms, via);
}

/* The job was dead-lettered; legal only past its delivery limit or by a nack asking for it. */
static void to_dead(sim *s, sim_job *j, const sim_call *call, const char *why)
{
    if (j->st == MJ_DEAD) return;
    unsigned long long id = (unsigned long long)j->id;
    SIM_CHECK(s, j->st == MJ_LEASED || (j->st == MJ_WAITING && j->ev_call == s->call_serial),
              "%s dead-letters job %llu in state %s", why, id, mj_name(j->st));
    bool nack = call->kind == CALL_NACK && call->job_id == j->id;
    SIM_CHECK(s, (nack && call->nack_dead) || j->deliveries >= j->max_attempts,
              "%s dead-letters job %llu after %u of %u deliveries", why, id, j->deliveries, j->max_attempts);
    if (j->st == MJ_LEASED) {
        /* A tick dead-letters a lease of a session without heartbeats only when it expired:
         * a loss of its worker, like an expiry that requeues. */
        int k = model_session_slot(s, j->session);
        if (call->kind == CALL_TICK && k >= 0 && s->m.sessions[k].hb_ms == 0) health_loss(s, j->session);
        sim_unlease(s, j);
    }
    model_set_state(s, j, MJ_DEAD);
    s->c.dead++;
}

static void ev_put(sim *s, const lq_ev *e)
{
    sim_job *j = known_job(s, e->job_id, "JOB_PUT");
    SIM_CHECK(s, j->st == MJ_PENDING, "JOB_PUT for job %llu in state %s", (unsigned long long)j->id, mj_name(j->st));
    shell_batch_put(s, &e->u.put);
}

static void ev_update(sim *s, const sim_call *call, const lq_ev *e)
{
    sim_job *j = known_job(s, e->job_id, "JOB_UPDATE");
    unsigned long long id = (unsigned long long)j->id;
    uint8_t st = e->u.update.state;
    SIM_CHECK(s, j->st == MJ_WAITING || j->st == MJ_LEASED || j->st == MJ_DEAD,
              "JOB_UPDATE for job %llu in state %s", id, mj_name(j->st));
    SIM_CHECK(s, st == LQ_STATE_READY || st == LQ_STATE_LEASED || st == LQ_STATE_DELAYED || st == LQ_STATE_DEAD,
              "JOB_UPDATE for job %llu to state %u", id, st);
    SIM_CHECK(s, e->u.update.last_error.len <= LQ_ERROR_TEXT_MAX, "JOB_UPDATE for job %llu keeps %u bytes of error",
              id, e->u.update.last_error.len);
    SIM_CHECK(s, e->u.update.attempts <= j->deliveries + 1, "JOB_UPDATE for job %llu: attempts %u, delivered %u times",
              id, e->u.update.attempts, j->deliveries);
    SIM_CHECK(s, st != LQ_STATE_DELAYED || e->u.update.not_before_ms > 0, "JOB_UPDATE DELAYED without not_before");
    if (st == LQ_STATE_DEAD) {
        to_dead(s, j, call, "JOB_UPDATE");
    } else {
        SIM_CHECK(s, j->st != MJ_DEAD, "JOB_UPDATE moves dead job %llu to state %u", id, st);
        if (j->st == MJ_WAITING && st == LQ_STATE_DELAYED) j->nb = e->u.update.not_before_ms;
    }
    j->upd_call = s->call_serial;
    j->ev_call = s->call_serial;
    j->store_call = s->call_serial;
    j->upd_state = st;
    j->upd_nb = e->u.update.not_before_ms;
    shell_batch_update(s, j->id, st, e->u.update.attempts, e->u.update.not_before_ms, e->u.update.last_error);
}

static void ev_delete(sim *s, const sim_call *call, const lq_ev *e)
{
    sim_job *j = known_job(s, e->job_id, "JOB_DELETE");
    unsigned long long id = (unsigned long long)j->id;
    uint8_t fin = e->u.del.final_state;
    SIM_CHECK(s, j->st != MJ_GONE_PENDING && j->st != MJ_GONE, "JOB_DELETE (%u) for job %llu, already deleted (%u)",
              fin, id, j->gone_final);
    if (fin == LQ_STATE_DONE) {
        SIM_CHECK(s, call->kind == CALL_ACK && call->job_id == j->id, "JOB_DELETE DONE for job %llu without its ack",
                  id);
        SIM_CHECK(s, j->st == MJ_LEASED, "ack completed job %llu in state %s", id, mj_name(j->st));
        sim_unlease(s, j);
    } else if (fin == LQ_STATE_EXPIRED) {
        SIM_CHECK(s, j->deadline != 0 && s->now >= j->deadline,
                  "job %llu expired at %llu, its deadline is %llu", id, (unsigned long long)s->now,
                  (unsigned long long)j->deadline);
        SIM_CHECK(s, j->st == MJ_WAITING || j->st == MJ_PENDING, "job %llu expired in state %s", id,
                  mj_name(j->st));
    } else {
        sim_fail(s, "JOB_DELETE for job %llu with final state %u", id, fin);
    }
    model_set_state(s, j, MJ_GONE_PENDING);
    j->gone_final = fin;
    j->store_call = s->call_serial;
    j->finished_ms = s->now;
    shell_batch_delete(s, j->id, fin);
}

static void ev_requeued(sim *s, const sim_call *call, const lq_ev *e)
{
    sim_job *j = known_job(s, e->job_id, "REQUEUED");
    unsigned long long id = (unsigned long long)j->id;
    uint8_t why = e->u.requeued.reason;
    SIM_CHECK(s, why >= LQ_REQUEUE_LEASE_EXPIRED && why <= LQ_REQUEUE_NACK, "REQUEUED job %llu, reason %u", id, why);
    s->c.requeued[why]++;
    if (why == LQ_REQUEUE_NACK) {
        SIM_CHECK(s, call->kind == CALL_NACK && call->job_id == j->id, "REQUEUED (nack) job %llu without its nack", id);
        return; /* the nack's result moves the model */
    }
    if (j->st == MJ_DEAD && j->ev_call == s->call_serial) return; /* dead-lettered by this same call */
    SIM_CHECK(s, j->st == MJ_LEASED, "REQUEUED (%s) job %llu in state %s", lq_requeue_reason_name(why), id,
              mj_name(j->st));
    SIM_CHECK(s, e->u.requeued.session == j->session, "REQUEUED job %llu names session %u, its lease is session %u",
              id, e->u.requeued.session, j->session);
    int k = model_session_slot(s, j->session);
    if (why == LQ_REQUEUE_LEASE_EXPIRED) {
        SIM_CHECK(s, s->now >= j->expires, "job %llu requeued as expired at %llu, its lease runs to %llu", id,
                  (unsigned long long)s->now, (unsigned long long)j->expires);
        health_loss(s, j->session);
    } else if (why == LQ_REQUEUE_SESSION_STALLED) {
        SIM_CHECK(s, k >= 0 && s->m.sessions[k].hb_ms > 0, "job %llu requeued for a stall of session %u, which has "
                  "no heartbeats", id, j->session);
        const sim_session *ss = &s->m.sessions[k];
        SIM_CHECK(s, s->now >= ss->hb_lo + (uint64_t)s->cfg.heartbeat_misses * ss->hb_ms,
                  "job %llu requeued for a stall at %llu, session %u heartbeat at %llu every %u ms", id,
                  (unsigned long long)s->now, j->session, (unsigned long long)ss->hb_lo, ss->hb_ms);
    } else {
        SIM_CHECK(s, call->kind == CALL_CLOSE && call->session == j->session,
                  "job %llu requeued for a closed connection, session %u was not closed", id, j->session);
    }
    sim_unlease(s, j);
    model_set_state(s, j, MJ_WAITING);
    j->nb = 0;
    j->ev_call = s->call_serial;
}

/* Early dispatch: the put of a job the core had already made leasable was refused. It leaves
 * the core from wherever it got to, its lease (if any) with it. */
static void ev_revoked(sim *s, const sim_call *call, const lq_ev *e)
{
    sim_job *j = known_job(s, e->job_id, "REVOKED");
    unsigned long long id = (unsigned long long)j->id;
    SIM_CHECK(s, s->cfg.early_dispatch && call->kind == CALL_COMMIT_DONE && call->refused && call->job_id == j->id,
              "REVOKED job %llu outside the refusal of its own early put", id);
    SIM_CHECK(s, j->put_refused, "REVOKED job %llu, which was not dispatched early", id);
    if (j->st == MJ_LEASED) {
        SIM_CHECK(s, e->u.revoked.session == j->session, "REVOKED job %llu names session %u, its lease is session %u",
                  id, e->u.revoked.session, j->session);
        sim_unlease(s, j);
    } else {
        SIM_CHECK(s, j->st == MJ_WAITING || j->st == MJ_DEAD, "REVOKED job %llu in state %s", id, mj_name(j->st));
        SIM_CHECK(s, e->u.revoked.session == UINT32_MAX, "REVOKED unleased job %llu names session %u", id,
                  e->u.revoked.session);
    }
    model_set_state(s, j, MJ_VOID);
    s->c.early_revoked++;
}

/* Parked dequeues that got a lease during the current call: (waiter handle, queue). */
#define SIM_CALL_LEASES_MAX 64
typedef struct {
    uint64_t handle;
    int q;
} call_lease;

static void ev_lease(sim *s, const lq_ev *e, call_lease *cl, uint32_t *n_cl)
{
    int w = model_waiter_slot(s, e->u.lease.waiter);
    SIM_CHECK(s, w >= 0, "LEASE for parked dequeue %llu, which is not parked (done, cancelled or closed)",
              (unsigned long long)e->u.lease.waiter);
    sim_waiter *wt = &s->m.waiters[w];
    const lq_lease *ls = &e->u.lease.lease;
    SIM_CHECK(s, ls->job_id == e->job_id, "LEASE event job %llu, lease job %llu", (unsigned long long)e->job_id,
              (unsigned long long)ls->job_id);
    SIM_CHECK(s, wt->got < wt->max_jobs, "parked dequeue %llu got more than its max_jobs %u",
              (unsigned long long)wt->handle, wt->max_jobs);
    int q = sim_queue_index(ls->queue);
    SIM_CHECK(s, q >= 0 && (wt->qmask & (1u << q)), "parked dequeue %llu got a job of a queue it did not name",
              (unsigned long long)wt->handle);
    sim_grant(s, ls, s->m.sessions[wt->sess].id, wt->lease_ms, w);
    wt->got++;
    if (*n_cl < SIM_CALL_LEASES_MAX) cl[(*n_cl)++] = (call_lease){wt->handle, q};
}

/* Parked requests are served in arrival order: once a later one got a job of queue q, no
 * earlier one that names q may still be waiting (it would have taken that job). Waiters of
 * stalled sessions (not specified) and of quarantined workers (served no leases) are left out. */
static void check_waiter_order(sim *s, const call_lease *cl, uint32_t n_cl)
{
    for (uint32_t i = 0; i < n_cl; i++) {
        for (int w = 0; w < SIM_WAITERS_MAX; w++) {
            const sim_waiter *a = &s->m.waiters[w];
            if (!a->live || a->handle >= cl[i].handle || !(a->qmask & (1u << cl[i].q)) ||
                s->m.sessions[a->sess].stalled || health_worker_suspect(s, s->m.sessions[a->sess].worker))
                continue;
            sim_fail(s, "parked dequeue %llu (earlier) still waits on %s after parked dequeue %llu got a job of it",
                     (unsigned long long)a->handle, sim_queue_names[cl[i].q], (unsigned long long)cl[i].handle);
        }
    }
}

static void ev_waiter_done(sim *s, const lq_ev *e)
{
    int w = model_waiter_slot(s, e->u.waiter_done.waiter);
    SIM_CHECK(s, w >= 0, "WAITER_DONE for parked dequeue %llu, which is not parked",
              (unsigned long long)e->u.waiter_done.waiter);
    sim_waiter *wt = &s->m.waiters[w];
    wt->live = false;
    s->m.sessions[wt->sess].n_waiters--;
}

static void ev_stalled(sim *s, const lq_ev *e)
{
    int k = model_session_slot(s, e->u.stalled.session);
    SIM_CHECK(s, k >= 0, "SESSION_STALLED for session %u, which is not open", e->u.stalled.session);
    sim_session *ss = &s->m.sessions[k];
    SIM_CHECK(s, ss->hb_ms > 0, "SESSION_STALLED for session %u, which has no heartbeats", ss->id);
    SIM_CHECK(s, s->now >= ss->hb_lo + (uint64_t)s->cfg.heartbeat_misses * ss->hb_ms,
              "session %u stalled at %llu, its last heartbeat was at %llu every %u ms", ss->id,
              (unsigned long long)s->now, (unsigned long long)ss->hb_lo, ss->hb_ms);
    ss->stalled = true;
    if (ss->n_leases > 0) health_loss(s, ss->id); /* the stall takes its leases: a loss */
    s->c.stalls++;
}

void sim_events_apply(sim *s, const sim_call *call)
{
    call_lease cl[SIM_CALL_LEASES_MAX];
    uint32_t n_cl = 0;
    s->call_serial++;
    for (size_t i = 0; i < s->ev.n; i++) {
        const lq_ev *e = &s->ev.v[i];
        switch (e->type) {
        case LQ_EV_JOB_PUT:
            SIM_CHECK(s, call->kind == CALL_ENQUEUE, "JOB_PUT outside an enqueue (call %d)", call->kind);
            ev_put(s, e);
            break;
        case LQ_EV_JOB_UPDATE: ev_update(s, call, e); break;
        case LQ_EV_JOB_DELETE: ev_delete(s, call, e); break;
        case LQ_EV_LEASE: ev_lease(s, e, cl, &n_cl); break;
        case LQ_EV_WAITER_DONE: ev_waiter_done(s, e); break;
        case LQ_EV_REQUEUED: ev_requeued(s, call, e); break;
        case LQ_EV_DEAD: {
            sim_job *j = known_job(s, e->job_id, "DEAD");
            to_dead(s, j, call, "DEAD event");
            j->ev_call = s->call_serial;
            break;
        }
        case LQ_EV_SESSION_STALLED: ev_stalled(s, e); break;
        case LQ_EV_JOB_WAIT_DONE: waits_event(s, call, e); break;
        case LQ_EV_WORKER_SUSPECT: health_suspect_event(s, e); break;
        case LQ_EV_REVOKED: ev_revoked(s, call, e); break;
        default: sim_fail(s, "unknown event type %d", (int)e->type);
        }
    }
    lq_events_clear(&s->ev);
    health_end_call(s);
    check_waiter_order(s, cl, n_cl);
}
