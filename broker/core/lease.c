#include "lease.h"

#include "core_int.h"

static bool lease_less(const void *ctx, uint32_t a, uint32_t b)
{
    const lq_job *x = lq_job_at(ctx, a), *y = lq_job_at(ctx, b);
    if (x->time_ms != y->time_ms)
        return x->time_ms < y->time_ms;
    return x->seq < y->seq;
}

static void job_set_pos(void *ctx, uint32_t item, uint32_t pos) { lq_job_at(ctx, item)->heap_pos = pos; }
static uint32_t job_get_pos(const void *ctx, uint32_t item) { return lq_job_at(ctx, item)->heap_pos; }

/* Both order by time_ms (expiry or not_before) and then by seq, for a stable order. */
const lq_heap_ops lq_lease_heap_ops = {lease_less, job_set_pos, job_get_pos};
const lq_heap_ops lq_delay_heap_ops = {lease_less, job_set_pos, job_get_pos};

static uint64_t mix64(uint64_t z)
{
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* mix64 is a bijection, so distinct counters give distinct tokens under one key. */
static uint64_t new_token(lq_core *c)
{
    uint64_t t;
    do
        t = mix64(c->token_key ^ ++c->token_ctr);
    while (t == 0);
    return t;
}

bool lq_lease_grant(lq_core *c, uint64_t now_ms, uint32_t si, uint32_t qi, uint32_t lease_ms,
                    lq_lease *out, lq_events *ev)
{
    uint32_t slot = lq_queue_take(c, qi, now_ms, ev);
    if (slot == LQ_NONE)
        return false;
    lq_lease_grant_slot(c, now_ms, si, slot, lease_ms, out);
    return true;
}

void lq_lease_grant_slot(lq_core *c, uint64_t now_ms, uint32_t si, uint32_t slot, uint32_t lease_ms, lq_lease *out)
{
    lq_job_set_state(c, slot, LQ_STATE_LEASED);
    lq_job *j = lq_job_at(c, slot);
    if (j->attempts < LQ_MAX_ATTEMPTS_MAX)
        j->attempts++;
    j->token = new_token(c);
    j->time_ms = lq_add_sat(now_ms, lease_ms);
    lq_session_link(c, si, slot);
    /* A heartbeating session renews all its leases at once: they never expire one by one. */
    if (c->sessions[si].heartbeat_ms == 0)
        lq_must(lq_heap_push(&c->lease_heap, &lq_lease_heap_ops, c, slot));
    lq_lane *l = lq_job_lane(c, j);
    lq_lane_note_grant(l, now_ms);
    const lq_tenant *t = lq_job_tenant(c, j);
    *out = (lq_lease){
        .job_id = j->id,
        .token = j->token,
        .expires_ms = j->time_ms,
        .enqueued_ms = j->enqueued_ms,
        .priority = j->priority,
        .attempt = j->attempts,
        .session = si + 1,
        .queue = lq_names_get(&c->names, c->queues[l->queue].name),
        .lane = lq_names_get(&c->names, l->name),
        .tenant = lq_names_get(&c->names, t->name),
    };
}

uint32_t lq_lease_grant_many(lq_core *c, uint64_t now_ms, uint32_t si, const uint32_t *qis,
                             uint32_t n_queues, uint32_t *cursor, uint32_t max, uint32_t lease_ms,
                             lq_lease *out, uint64_t waiter, lq_events *ev)
{
    uint32_t n = 0;
    while (n < max) {
        bool got = false;
        for (uint32_t k = 0; k < n_queues && !got; k++) {
            uint32_t i = (*cursor + k) % n_queues;
            lq_lease tmp;
            lq_lease *dst = out ? &out[n] : &tmp;
            if (lq_lease_grant(c, now_ms, si, qis[i], lease_ms, dst, ev)) {
                got = true;
                *cursor = (i + 1) % n_queues;
                if (!out) {
                    lq_ev *e = lq_ev_add(ev, LQ_EV_LEASE, tmp.job_id);
                    e->u.lease.waiter = waiter;
                    e->u.lease.lease = tmp;
                }
            }
        }
        if (!got)
            break;
        n++;
    }
    return n;
}

static const char *reason_text(lq_requeue_reason r)
{
    switch (r) {
    case LQ_REQUEUE_LEASE_EXPIRED: return "lease expired";
    case LQ_REQUEUE_SESSION_STALLED: return "session stalled";
    case LQ_REQUEUE_CONN_CLOSED: return "connection closed";
    case LQ_REQUEUE_NACK: return "nack";
    }
    return "requeued";
}

uint8_t lq_lease_release(lq_core *c, uint64_t now_ms, uint32_t slot, const lq_release_opts *o,
                         lq_events *ev)
{
    lq_job *j = lq_job_at(c, slot);
    LQ_ASSERT(j->state == LQ_STATE_LEASED);
    uint32_t session = j->session + 1;
    if (j->heap_pos != LQ_NONE)
        lq_heap_remove(&c->lease_heap, &lq_lease_heap_ops, c, j->heap_pos);
    lq_session_unlink(c, slot);
    j->token = 0;
    j->time_ms = 0;

    lq_str why = o->error;
    if (o->reason != LQ_REQUEUE_NACK || why.len == 0)
        why = lq_str_c(reason_text(o->reason));
    if (why.len > LQ_ERROR_TEXT_MAX)
        why.len = LQ_ERROR_TEXT_MAX;

    if (o->dead || j->attempts >= j->max_attempts) {
        lq_job_set_state(c, slot, LQ_STATE_DEAD);
        lq_ev *e = lq_ev_add(ev, LQ_EV_JOB_UPDATE, j->id);
        e->u.update.state = LQ_STATE_DEAD;
        e->u.update.attempts = j->attempts;
        e->u.update.last_error = why;
        lq_jobwait_wake(c, slot, LQ_STATE_DEAD, ev); /* right after the store event */
        e = lq_ev_add(ev, LQ_EV_DEAD, j->id);
        e->u.dead.reason = why;
        return LQ_STATE_DEAD;
    }
    uint8_t state;
    if (o->delay_ms > 0) {
        lq_job_set_state(c, slot, LQ_STATE_DELAYED);
        j->time_ms = lq_add_sat(now_ms, o->delay_ms);
        lq_must(lq_heap_push(&c->delayed_heap, &lq_delay_heap_ops, c, slot));
        state = LQ_STATE_DELAYED;
    } else {
        lq_queue_push_ready(c, slot); /* keeps its seq: front of its lane and tenant */
        state = LQ_STATE_READY;
    }
    lq_ev *e = lq_ev_add(ev, LQ_EV_JOB_UPDATE, j->id);
    e->u.update.state = state;
    e->u.update.attempts = j->attempts;
    e->u.update.not_before_ms = state == LQ_STATE_DELAYED ? j->time_ms : 0;
    e->u.update.last_error = why;
    e = lq_ev_add(ev, LQ_EV_REQUEUED, j->id);
    e->u.requeued.reason = (uint8_t)o->reason;
    e->u.requeued.session = session;
    return state;
}

lq_err lq_lease_lookup(const lq_core *c, uint64_t job_id, uint64_t token, uint32_t *slot)
{
    if (job_id == 0 || job_id >= c->next_id)
        return LQ_E_NOT_FOUND;
    uint32_t s = lq_jobs_find(&c->jobs, job_id);
    if (s == LQ_NONE)
        return LQ_E_LEASE_LOST;
    const lq_job *j = lq_job_at(c, s);
    if (j->state != LQ_STATE_LEASED || token == 0 || j->token != token)
        return LQ_E_LEASE_LOST;
    *slot = s;
    return LQ_OK;
}

uint64_t lq_lease_backoff(lq_core *c, uint32_t attempts)
{
    uint64_t cap = c->cfg.backoff_max_ms;
    uint64_t d = c->cfg.backoff_base_ms;
    for (uint32_t i = 1; i < attempts && d < cap; i++)
        d *= 2;
    if (d > cap)
        d = cap;
    /* Half fixed, half random: retries of a burst of failures spread out, and the result stays
     * within [d/2, d], so never above the cap. */
    uint64_t fixed = d / 2;
    return fixed + lq_rand(c) % (d - fixed + 1);
}
