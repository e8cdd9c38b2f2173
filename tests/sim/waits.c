/* The simulator's model of producers' job waits and of idempotency keys (core.h).
 *
 * Job waits: a wait on a job the core holds parks (state = the job's state then) unless the job
 * is DEAD (answered at once); it ends with exactly one JOB_WAIT_DONE, right after the store
 * event of the job's terminal transition (DONE, DEAD, EXPIRED), CANCELLED when the job's put
 * was refused, or state 0 once its timeout has passed. A wait on a job the core no longer
 * holds is NOT_FOUND.
 *
 * Idempotency keys, per queue: an enqueue with a key held by a live or dead job of the queue,
 * or by one that finished less than idem_window_ms ago, creates nothing and returns that job.
 * The broker does not store results yet, so a restart forgets the keys of finished jobs; the
 * keys of stored jobs come back with them. */
#include <stdio.h>
#include <string.h>

#include "sim.h"

/* ---- job waits -------------------------------------------------------------------------- */

void waits_op_wait(sim *s)
{
    sim_model *m = &s->m;
    if (m->n_jobs == 0) return;
    int slot = -1;
    for (int i = 0; i < SIM_JOBWAITS_MAX && slot < 0; i++)
        if (!m->jobwaits[i].live) slot = i;
    if (slot < 0) return;
    /* Mostly jobs the core still holds (leased, waiting, the newest: often PENDING), sometimes
     * any job at all. */
    uint32_t idx = (uint32_t)sim_rng_below(&s->rng, m->n_jobs);
    uint64_t x = sim_rng_below(&s->rng, 10);
    if (x < 3 && m->n_leases) {
        idx = m->leases[sim_rng_below(&s->rng, m->n_leases)];
    } else if (x < 5) {
        idx = m->n_jobs - 1;
    } else if (x < 8) {
        uint32_t b0 = (uint32_t)sim_rng_below(&s->rng, SIM_QUEUES * SIM_LANES * SIM_TENANTS);
        for (uint32_t k = 0; k < SIM_QUEUES * SIM_LANES * SIM_TENANTS; k++) {
            uint32_t b = (b0 + k) % (SIM_QUEUES * SIM_LANES * SIM_TENANTS);
            const sim_bucket *bk = &m->waiting[b / (SIM_LANES * SIM_TENANTS)][b / SIM_TENANTS % SIM_LANES][b % SIM_TENANTS];
            if (bk->n) {
                idx = bk->v[sim_rng_below(&s->rng, bk->n)];
                break;
            }
        }
    }
    const sim_job *j = &m->jobs[idx];
    uint32_t timeout = (uint32_t)sim_rng_range(&s->rng, 50, 20000);
    uint64_t handle = ++s->jobwait_handle_next;
    bool parked = false;
    uint8_t state = 0;
    lq_err e = lq_core_wait_job(s->core, s->now, j->id, handle, timeout, &parked, &state);
    unsigned long long id = (unsigned long long)j->id;
    switch (j->st) {
    case MJ_PENDING:
    case MJ_WAITING:
    case MJ_LEASED:
        SIM_CHECK(s, e == LQ_OK && parked && state == model_core_state(s, j),
                  "wait on job %llu (state %u): %s, parked %d, state %u", id, model_core_state(s, j), lq_err_name(e),
                  parked, state);
        m->jobwaits[slot] = (sim_jobwait){.live = true, .handle = handle, .job_id = j->id, .end_ms = s->now + timeout};
        break;
    case MJ_DEAD:
        SIM_CHECK(s, e == LQ_OK && !parked && state == LQ_STATE_DEAD, "wait on dead job %llu: %s, parked %d, state %u",
                  id, lq_err_name(e), parked, state);
        break;
    default:
        SIM_CHECK(s, e == LQ_E_NOT_FOUND && !parked, "wait on job %llu that the core no longer holds (%u): %s", id,
                  j->st, lq_err_name(e));
        break;
    }
    s->c.job_waits++;
}

void waits_op_cancel(sim *s)
{
    int cand[SIM_JOBWAITS_MAX], n = 0;
    for (int i = 0; i < SIM_JOBWAITS_MAX; i++)
        if (s->m.jobwaits[i].live) cand[n++] = i;
    if (!n) return;
    sim_jobwait *w = &s->m.jobwaits[cand[sim_rng_below(&s->rng, n)]];
    lq_core_wait_cancel(s->core, w->handle);
    w->live = false;
}

void waits_event(sim *s, const sim_call *call, const lq_ev *e)
{
    sim_jobwait *w = NULL;
    for (int i = 0; i < SIM_JOBWAITS_MAX && !w; i++)
        if (s->m.jobwaits[i].live && s->m.jobwaits[i].handle == e->u.wait_done.waiter) w = &s->m.jobwaits[i];
    SIM_CHECK(s, w != NULL, "JOB_WAIT_DONE for job wait %llu, which is not parked (answered, cancelled or lost)",
              (unsigned long long)e->u.wait_done.waiter);
    unsigned long long id = (unsigned long long)w->job_id;
    SIM_CHECK(s, e->job_id == w->job_id, "JOB_WAIT_DONE for a wait on job %llu names job %llu", id,
              (unsigned long long)e->job_id);
    uint8_t st = e->u.wait_done.state;
    const sim_job *j = model_job(s, w->job_id);
    /* The terminal store event must come first in the same call: the producer is answered
     * once the batch holding it is durable. */
    bool stored_now = j && j->store_call == s->call_serial;
    switch (st) {
    case 0:
        SIM_CHECK(s, s->now >= w->end_ms, "job wait on %llu timed out at %llu, its timeout is %llu", id,
                  (unsigned long long)s->now, (unsigned long long)w->end_ms);
        break;
    case LQ_STATE_DONE:
    case LQ_STATE_EXPIRED:
        SIM_CHECK(s, j && j->st == MJ_GONE_PENDING && j->gone_final == st && stored_now,
                  "JOB_WAIT_DONE %u for job %llu without its JOB_DELETE just before (model state %u)", st, id,
                  j ? j->st : 0);
        break;
    case LQ_STATE_DEAD:
        SIM_CHECK(s, j && j->st == MJ_DEAD && stored_now,
                  "JOB_WAIT_DONE DEAD for job %llu without its JOB_UPDATE to DEAD just before (model state %u)", id,
                  j ? j->st : 0);
        break;
    case LQ_STATE_CANCELLED:
        SIM_CHECK(s, call->kind == CALL_COMMIT_DONE && call->refused && call->job_id == w->job_id,
                  "JOB_WAIT_DONE CANCELLED for job %llu, whose put was not refused", id);
        break;
    default: sim_fail(s, "JOB_WAIT_DONE for job %llu with state %u", id, st);
    }
    w->live = false;
    s->c.job_wait_answers++;
    sim_log(s, "  job wait %llu on job %llu answered: state %u", (unsigned long long)w->handle, id, st);
}

void waits_check_liveness(sim *s)
{
    for (int i = 0; i < SIM_JOBWAITS_MAX; i++) {
        const sim_jobwait *w = &s->m.jobwaits[i];
        if (!w->live) continue;
        SIM_CHECK(s, s->now <= w->end_ms, "job wait %llu on job %llu not answered by its timeout %llu (now %llu)",
                  (unsigned long long)w->handle, (unsigned long long)w->job_id, (unsigned long long)w->end_ms,
                  (unsigned long long)s->now);
        const sim_job *j = model_job(s, w->job_id);
        SIM_CHECK(s, j && (j->st == MJ_PENDING || j->st == MJ_WAITING || j->st == MJ_LEASED),
                  "job %llu finished (model state %u) but wait %llu on it was not answered",
                  (unsigned long long)w->job_id, j ? j->st : 0, (unsigned long long)w->handle);
    }
}

uint64_t waits_bound(const sim *s)
{
    uint64_t b = LQ_TIME_NEVER;
    for (int i = 0; i < SIM_JOBWAITS_MAX; i++)
        if (s->m.jobwaits[i].live && s->m.jobwaits[i].end_ms < b) b = s->m.jobwaits[i].end_ms;
    return b;
}

/* ---- idempotency keys ------------------------------------------------------------------- */

const char *idem_key_name(int k, char *buf, size_t cap)
{
    snprintf(buf, cap, "order-%d", k);
    return buf;
}

/* Whether an enqueue to queue q with key k must collapse onto an earlier job (*job_id). */
bool idem_expect_dup(sim *s, int q, int k, uint64_t *job_id)
{
    sim_idem *e = &s->m.idem[q][k];
    if (!e->used) return false;
    const sim_job *j = model_job(s, e->job_id);
    bool live = false;
    if (j && j->q == q && j->idem_k == k) {
        switch (j->st) {
        case MJ_PENDING:
        case MJ_WAITING:
        case MJ_LEASED:
        case MJ_DEAD: live = true; break;
        case MJ_GONE_PENDING:
        case MJ_GONE: live = j->finished_ms + s->cfg.idem_window_ms > s->now; break;
        default: break;
        }
    }
    if (!live) {
        e->used = false;
        return false;
    }
    *job_id = j->id;
    return true;
}

void idem_register(sim *s, int q, int k, uint64_t job_id)
{
    s->m.idem[q][k] = (sim_idem){.used = true, .job_id = job_id};
}

/* After a restart: stored jobs bring their keys back; finished jobs' keys are gone. */
void idem_after_crash(sim *s)
{
    for (int q = 0; q < SIM_QUEUES; q++)
        for (int k = 0; k < SIM_IDEM_KEYS; k++) {
            sim_idem *e = &s->m.idem[q][k];
            const sim_job *j = e->used ? model_job(s, e->job_id) : NULL;
            if (!j || !j->durable || j->idem_k != k || j->q != q) e->used = false;
        }
    memset(s->m.jobwaits, 0, sizeof s->m.jobwaits);
}
