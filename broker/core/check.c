/* lq_core_check: walks every structure of the core and asserts what must hold (O(n)). */
#include "core.h"

#include "core_int.h"

static void check_jobs(const lq_core *c)
{
    uint32_t live = 0;
    for (uint32_t slot = 0; slot < c->jobs.n_slots; slot++) {
        const lq_job *j = lq_job_at(c, slot);
        if (j->state == 0)
            continue;
        live++;
        LQ_ASSERT(j->id != 0 && j->id < c->next_id && j->seq < c->next_seq);
        LQ_ASSERT(lq_jobs_find(&c->jobs, j->id) == slot);
        LQ_ASSERT(j->tenant < c->n_tenants);
        LQ_ASSERT(j->max_attempts > 0);
        LQ_ASSERT((j->flags & ~(LQ_JOB_F_WAITED | LQ_JOB_F_IDEM | LQ_JOB_F_UNSYNCED)) == 0);
        LQ_ASSERT(!(j->flags & LQ_JOB_F_UNSYNCED) || (c->cfg.early_dispatch && j->state != LQ_STATE_PENDING));
        const lq_tenant *t = lq_job_tenant(c, j);
        switch (j->state) {
        case LQ_STATE_READY:
            LQ_ASSERT(lq_ready_holds(&t->ready, slot, j->heap_pos));
            LQ_ASSERT(j->token == 0 && j->session == LQ_NONE);
            break;
        case LQ_STATE_DELAYED:
            LQ_ASSERT(j->heap_pos < c->delayed_heap.n && c->delayed_heap.v[j->heap_pos] == slot);
            LQ_ASSERT(j->token == 0 && j->session == LQ_NONE && j->time_ms > 0);
            break;
        case LQ_STATE_LEASED:
            /* heap and list membership are checked from the session's side */
            LQ_ASSERT(j->session < c->n_sessions && c->sessions[j->session].open);
            LQ_ASSERT(j->token != 0 && j->attempts > 0);
            break;
        case LQ_STATE_DEAD:
        case LQ_STATE_PENDING:
            LQ_ASSERT(j->heap_pos == LQ_NONE && j->session == LQ_NONE && j->token == 0);
            break;
        default:
            LQ_ASSERT(!"job in a state the core never keeps");
        }
    }
    LQ_ASSERT(live == c->jobs.n_live);

    /* per-lane counters equal a recount */
    uint64_t sums[5] = {0};
    for (uint32_t li = 0; li < c->n_lanes; li++) {
        const lq_lane *l = &c->lanes[li];
        sums[0] += l->ready;
        sums[1] += l->leased;
        sums[2] += l->delayed;
        sums[3] += l->dead;
        sums[4] += l->pending;
    }
    LQ_ASSERT(sums[0] + sums[1] + sums[2] + sums[3] + sums[4] == live);
    LQ_ASSERT(sums[2] == c->delayed_heap.n);
    uint64_t leased_hb = 0;
    for (uint32_t si = 0; si < c->n_sessions; si++)
        if (c->sessions[si].open)
            leased_hb += c->sessions[si].n_leases;
    LQ_ASSERT(sums[1] == leased_hb); /* every leased job is in exactly one session's list */

#ifdef LQ_DEBUG
    /* the expensive recount per lane: only in debug builds */
    for (uint32_t li = 0; li < c->n_lanes; li++) {
        uint64_t n[10] = {0};
        for (uint32_t slot = 0; slot < c->jobs.n_slots; slot++) {
            const lq_job *j = lq_job_at(c, slot);
            if (j->state != 0 && c->tenants[j->tenant].lane == li)
                n[j->state]++;
        }
        const lq_lane *l = &c->lanes[li];
        LQ_ASSERT(n[LQ_STATE_READY] == l->ready && n[LQ_STATE_LEASED] == l->leased &&
                  n[LQ_STATE_DELAYED] == l->delayed && n[LQ_STATE_DEAD] == l->dead &&
                  n[LQ_STATE_PENDING] == l->pending);
    }
#endif
}

void lq_core_check(const lq_core *c)
{
    lq_heap_check(&c->lease_heap, &lq_lease_heap_ops, c);
    lq_heap_check(&c->delayed_heap, &lq_delay_heap_ops, c);
    for (uint32_t i = 0; i < c->lease_heap.n; i++) {
        const lq_job *j = lq_job_at(c, c->lease_heap.v[i]);
        LQ_ASSERT(j->state == LQ_STATE_LEASED && c->sessions[j->session].heartbeat_ms == 0);
    }
    for (uint32_t i = 0; i < c->delayed_heap.n; i++)
        LQ_ASSERT(lq_job_at(c, c->delayed_heap.v[i])->state == LQ_STATE_DELAYED);
    check_jobs(c);
    lq_queue_check(c);
    lq_session_check(c);
    lq_waiters_check(c);
    lq_jobwait_check(c);
    lq_idem_check(c);
    lq_health_check(c);
    for (uint32_t i = 0; i < c->n_dirty; i++)
        LQ_ASSERT(c->queues[c->dirty[i]].dirty);
}
