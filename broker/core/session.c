#include "session.h"

#include <stdlib.h>
#include <string.h>

#include "core_int.h"
#include "lease.h"

uint64_t lq_session_stall_at(const lq_core *c, uint32_t si)
{
    const lq_session *s = &c->sessions[si];
    return lq_add_sat(s->last_seen_ms, (uint64_t)s->heartbeat_ms * c->cfg.heartbeat_misses);
}

static bool stall_less(const void *ctx, uint32_t a, uint32_t b)
{
    uint64_t x = lq_session_stall_at(ctx, a), y = lq_session_stall_at(ctx, b);
    return x != y ? x < y : a < b;
}
static void stall_set_pos(void *ctx, uint32_t item, uint32_t pos) { ((lq_core *)ctx)->sessions[item].heap_pos = pos; }
static uint32_t stall_get_pos(const void *ctx, uint32_t item) { return ((const lq_core *)ctx)->sessions[item].heap_pos; }

static const lq_heap_ops stall_ops = {stall_less, stall_set_pos, stall_get_pos};

uint32_t lq_session_index(const lq_core *c, uint32_t session)
{
    /* The detached session is the core's own: no caller may speak for it. */
    if (session == 0 || session > c->n_sessions || !c->sessions[session - 1].open || session - 1 == c->detached_si)
        return LQ_NONE;
    return session - 1;
}

static lq_err session_alloc(lq_core *c, uint64_t now_ms, uint32_t heartbeat_ms, uint32_t *si)
{
    uint32_t i;
    if (c->sessions_free != LQ_NONE) {
        i = c->sessions_free;
        c->sessions_free = c->sessions[i].next_free;
    } else {
        if (c->n_sessions == c->cap_sessions) {
            uint32_t ncap = c->cap_sessions ? c->cap_sessions * 2 : 64;
            lq_session *ns = realloc(c->sessions, (size_t)ncap * sizeof *ns); /* owner: core */
            if (!ns)
                return LQ_E_NOMEM;
            c->sessions = ns;
            c->cap_sessions = ncap;
        }
        i = c->n_sessions++;
    }
    lq_session *s = &c->sessions[i];
    memset(s, 0, sizeof *s);
    s->open = true;
    s->heartbeat_ms = heartbeat_ms;
    s->last_seen_ms = now_ms;
    s->heap_pos = s->lease_head = s->wait_head = s->next_free = s->worker = LQ_NONE;
    if (heartbeat_ms > 0) {
        lq_err e = lq_heap_push(&c->stall_heap, &stall_ops, c, i);
        if (e != LQ_OK) {
            s->open = false;
            s->next_free = c->sessions_free;
            c->sessions_free = i;
            return e;
        }
    }
    c->n_open_sessions++;
    *si = i;
    return LQ_OK;
}

lq_err lq_session_new(lq_core *c, uint64_t now_ms, uint32_t heartbeat_ms, uint32_t *si)
{
    /* the detached session does not take a caller's place */
    if (c->n_open_sessions - (c->detached_si != LQ_NONE) >= c->cfg.max_sessions)
        return LQ_E_LIMIT;
    return session_alloc(c, now_ms, heartbeat_ms, si);
}

bool lq_session_detach_leases(lq_core *c, uint64_t now_ms, uint32_t si)
{
    LQ_ASSERT(si != c->detached_si && c->sessions[si].open);
    if (c->detached_si == LQ_NONE) {
        uint32_t di;
        if (session_alloc(c, now_ms, 0, &di) != LQ_OK)
            return false;
        c->detached_si = di;
    }
    uint32_t di = c->detached_si;
    while (c->sessions[si].lease_head != LQ_NONE) {
        uint32_t slot = c->sessions[si].lease_head;
        lq_session_unlink(c, slot);
        lq_session_link(c, di, slot);
        lq_job *j = lq_job_at(c, slot);
        if (j->heap_pos == LQ_NONE) {
            /* A heartbeating session's leases were renewed by its beats, not in time_ms: from
             * now on they run on their own, for at least a default lease time. */
            uint64_t fresh = lq_add_sat(now_ms, c->cfg.default_lease_ms);
            if (j->time_ms < fresh)
                j->time_ms = fresh;
            lq_must(lq_heap_push(&c->lease_heap, &lq_lease_heap_ops, c, slot));
        }
    }
    return true;
}

void lq_session_free(lq_core *c, uint32_t si)
{
    lq_session *s = &c->sessions[si];
    LQ_ASSERT(s->open && s->n_leases == 0 && s->lease_head == LQ_NONE && s->wait_head == LQ_NONE);
    if (s->heap_pos != LQ_NONE)
        lq_heap_remove(&c->stall_heap, &stall_ops, c, s->heap_pos);
    s->open = false;
    s->next_free = c->sessions_free;
    c->sessions_free = si;
    c->n_open_sessions--;
}

void lq_session_touch(lq_core *c, uint32_t si, uint64_t now_ms)
{
    lq_session *s = &c->sessions[si];
    if (now_ms > s->last_seen_ms)
        s->last_seen_ms = now_ms;
    if (s->heartbeat_ms == 0)
        return;
    if (s->stalled) {
        s->stalled = false;
        lq_must(lq_heap_push(&c->stall_heap, &stall_ops, c, si));
    } else {
        LQ_ASSERT(s->heap_pos != LQ_NONE);
        lq_heap_fix(&c->stall_heap, &stall_ops, c, s->heap_pos);
    }
}

void lq_session_stall(lq_core *c, uint64_t now_ms, uint32_t si, lq_events *ev)
{
    lq_session *s = &c->sessions[si];
    LQ_ASSERT(s->open && !s->stalled && s->heap_pos != LQ_NONE);
    lq_heap_remove(&c->stall_heap, &stall_ops, c, s->heap_pos);
    s->stalled = true;
    lq_ev *e = lq_ev_add(ev, LQ_EV_SESSION_STALLED, 0);
    e->u.stalled.session = si + 1;
    e->u.stalled.leases_requeued = s->n_leases;
    bool lost = s->n_leases > 0;
    const lq_release_opts o = {.reason = LQ_REQUEUE_SESSION_STALLED};
    while (c->sessions[si].lease_head != LQ_NONE)
        lq_lease_release(c, now_ms, c->sessions[si].lease_head, &o, ev);
    if (lost)
        lq_health_loss(c, now_ms, c->sessions[si].worker, ev);
    /* A frozen worker must not be handed new work by its own parked dequeues. */
    lq_waiters_of_session(c, si, ev);
}

void lq_session_link(lq_core *c, uint32_t si, uint32_t slot)
{
    lq_session *s = &c->sessions[si];
    lq_job *j = lq_job_at(c, slot);
    j->session = si;
    j->sess_prev = LQ_NONE;
    j->sess_next = s->lease_head;
    if (s->lease_head != LQ_NONE)
        lq_job_at(c, s->lease_head)->sess_prev = slot;
    s->lease_head = slot;
    s->n_leases++;
}

void lq_session_unlink(lq_core *c, uint32_t slot)
{
    lq_job *j = lq_job_at(c, slot);
    lq_session *s = &c->sessions[j->session];
    if (j->sess_prev != LQ_NONE)
        lq_job_at(c, j->sess_prev)->sess_next = j->sess_next;
    else
        s->lease_head = j->sess_next;
    if (j->sess_next != LQ_NONE)
        lq_job_at(c, j->sess_next)->sess_prev = j->sess_prev;
    s->n_leases--;
    j->sess_prev = j->sess_next = j->session = LQ_NONE;
}

void lq_session_check(const lq_core *c)
{
    lq_heap_check(&c->stall_heap, &stall_ops, c);
    uint32_t open = 0;
    for (uint32_t si = 0; si < c->n_sessions; si++) {
        const lq_session *s = &c->sessions[si];
        if (!s->open) {
            LQ_ASSERT(s->heap_pos == LQ_NONE);
            continue;
        }
        open++;
        LQ_ASSERT((s->heap_pos != LQ_NONE) == (s->heartbeat_ms > 0 && !s->stalled));
        uint32_t n = 0;
        uint32_t prev = LQ_NONE;
        for (uint32_t slot = s->lease_head; slot != LQ_NONE; slot = lq_job_at(c, slot)->sess_next) {
            const lq_job *j = lq_job_at(c, slot);
            LQ_ASSERT(j->state == LQ_STATE_LEASED && j->session == si && j->sess_prev == prev);
            LQ_ASSERT(j->token != 0);
            /* exactly one of: the lease heap (no heartbeats) or no heap (heartbeats) */
            if (s->heartbeat_ms == 0)
                LQ_ASSERT(j->heap_pos < c->lease_heap.n && c->lease_heap.v[j->heap_pos] == slot);
            else
                LQ_ASSERT(j->heap_pos == LQ_NONE);
            prev = slot;
            n++;
            LQ_ASSERT(n <= s->n_leases);
        }
        LQ_ASSERT(n == s->n_leases);
    }
    LQ_ASSERT(open == c->n_open_sessions);
}
