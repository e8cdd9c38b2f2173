#include "jobwait.h"

#include <stdlib.h>
#include <string.h>

#include "core_int.h"

static bool jw_less(const void *ctx, uint32_t a, uint32_t b)
{
    const lq_jobwait *x = &((const lq_core *)ctx)->jobwaits[a], *y = &((const lq_core *)ctx)->jobwaits[b];
    return x->expires_ms != y->expires_ms ? x->expires_ms < y->expires_ms : a < b;
}
static void jw_set_pos(void *ctx, uint32_t item, uint32_t pos) { ((lq_core *)ctx)->jobwaits[item].heap_pos = pos; }
static uint32_t jw_get_pos(const void *ctx, uint32_t item) { return ((const lq_core *)ctx)->jobwaits[item].heap_pos; }

static const lq_heap_ops jw_ops = {jw_less, jw_set_pos, jw_get_pos};

/* Takes wait wi out of its job's list, the heap and the handle map, and frees its slot. */
static void release(lq_core *c, uint32_t wi)
{
    lq_jobwait *w = &c->jobwaits[wi];
    LQ_ASSERT(w->live);
    if (w->next == wi) {
        /* the job's last wait: the job goes back to costing nothing */
        lq_map_del(&c->jobwait_by_job, w->job_id);
        uint32_t slot = lq_jobs_find(&c->jobs, w->job_id);
        LQ_ASSERT(slot != LQ_NONE);
        lq_job_at(c, slot)->flags &= (uint8_t)~LQ_JOB_F_WAITED;
    } else {
        c->jobwaits[w->prev].next = w->next;
        c->jobwaits[w->next].prev = w->prev;
        if (lq_map_get(&c->jobwait_by_job, w->job_id) == wi)
            lq_map_replace(&c->jobwait_by_job, w->job_id, w->next);
    }
    if (w->heap_pos != LQ_NONE)
        lq_heap_remove(&c->jobwait_heap, &jw_ops, c, w->heap_pos);
    lq_map_del(&c->jobwait_by_handle, w->handle);
    w->live = false;
    w->prev = LQ_NONE;
    w->next = c->jobwaits_free;
    c->jobwaits_free = wi;
    c->n_live_jobwaits--;
}

static void answer(lq_core *c, uint32_t wi, uint8_t state, lq_events *ev)
{
    lq_ev *e = lq_ev_add(ev, LQ_EV_JOB_WAIT_DONE, c->jobwaits[wi].job_id);
    e->u.wait_done.waiter = c->jobwaits[wi].handle;
    e->u.wait_done.state = state;
    release(c, wi);
}

lq_err lq_core_wait_job(lq_core *c, uint64_t now_ms, uint64_t job_id, uint64_t waiter, uint32_t timeout_ms,
                        bool *parked, uint8_t *state)
{
    if (!parked || !state)
        return LQ_E_INVALID_ARGUMENT;
    *parked = false;
    *state = 0;
    uint32_t slot = lq_jobs_find(&c->jobs, job_id);
    if (slot == LQ_NONE)
        return LQ_E_NOT_FOUND;
    lq_job *j = lq_job_at(c, slot);
    if (j->state == LQ_STATE_DEAD) {
        *state = LQ_STATE_DEAD;
        return LQ_OK;
    }
    if (c->n_live_jobwaits >= c->cfg.max_job_waits)
        return LQ_E_LIMIT;
    if (lq_map_get(&c->jobwait_by_handle, waiter) != LQ_NONE)
        return LQ_E_INVALID_ARGUMENT;

    /* Everything that can fail comes first, so a refused wait leaves no trace. */
    if (c->jobwaits_free == LQ_NONE && c->n_jobwaits == c->cap_jobwaits) {
        uint32_t ncap = c->cap_jobwaits ? c->cap_jobwaits * 2 : 64;
        lq_jobwait *nw = realloc(c->jobwaits, (size_t)ncap * sizeof *nw); /* owner: core */
        if (!nw)
            return LQ_E_NOMEM;
        c->jobwaits = nw;
        c->cap_jobwaits = ncap;
    }
    uint32_t wi = c->jobwaits_free != LQ_NONE ? c->jobwaits_free : c->n_jobwaits;
    uint32_t head = (j->flags & LQ_JOB_F_WAITED) ? lq_map_get(&c->jobwait_by_job, job_id) : LQ_NONE;
    lq_err e = lq_map_put(&c->jobwait_by_handle, waiter, wi);
    if (e == LQ_OK && head == LQ_NONE) {
        e = lq_map_put(&c->jobwait_by_job, job_id, wi);
        if (e != LQ_OK)
            lq_map_del(&c->jobwait_by_handle, waiter);
    }
    if (e != LQ_OK)
        return e;
    uint32_t saved_next = wi == c->jobwaits_free ? c->jobwaits[wi].next : LQ_NONE;
    c->jobwaits[wi] = (lq_jobwait){
        .handle = waiter,
        .job_id = job_id,
        .expires_ms = lq_add_sat(now_ms, timeout_ms),
        .heap_pos = LQ_NONE,
        .prev = wi,
        .next = wi,
        .live = true,
    };
    e = lq_heap_push(&c->jobwait_heap, &jw_ops, c, wi);
    if (e != LQ_OK) {
        lq_map_del(&c->jobwait_by_handle, waiter);
        if (head == LQ_NONE)
            lq_map_del(&c->jobwait_by_job, job_id);
        c->jobwaits[wi].live = false;
        c->jobwaits[wi].next = saved_next;
        return e;
    }
    if (wi == c->jobwaits_free)
        c->jobwaits_free = saved_next;
    else
        c->n_jobwaits++;
    if (head != LQ_NONE) {
        /* at the tail: answers go out in arrival order */
        lq_jobwait *h = &c->jobwaits[head];
        c->jobwaits[wi].prev = h->prev;
        c->jobwaits[wi].next = head;
        c->jobwaits[h->prev].next = wi;
        h->prev = wi;
    }
    j->flags |= LQ_JOB_F_WAITED;
    c->n_live_jobwaits++;
    *parked = true;
    *state = j->state;
    return LQ_OK;
}

void lq_core_wait_cancel(lq_core *c, uint64_t waiter)
{
    uint32_t wi = lq_map_get(&c->jobwait_by_handle, waiter);
    if (wi != LQ_NONE)
        release(c, wi);
}

void lq_jobwait_wake(lq_core *c, uint32_t slot, uint8_t state, lq_events *ev)
{
    const lq_job *j = lq_job_at(c, slot);
    if (!(j->flags & LQ_JOB_F_WAITED))
        return;
    while (j->flags & LQ_JOB_F_WAITED)
        answer(c, lq_map_get(&c->jobwait_by_job, j->id), state, ev);
}

void lq_jobwait_expire(lq_core *c, uint64_t now_ms, lq_events *ev)
{
    for (uint32_t wi; (wi = lq_heap_top(&c->jobwait_heap)) != LQ_NONE && c->jobwaits[wi].expires_ms <= now_ms;)
        answer(c, wi, 0, ev);
}

uint64_t lq_jobwait_next(const lq_core *c)
{
    uint32_t wi = lq_heap_top(&c->jobwait_heap);
    return wi == LQ_NONE ? LQ_TIME_NEVER : c->jobwaits[wi].expires_ms;
}

void lq_jobwait_free(lq_core *c)
{
    free(c->jobwaits);
    lq_map_free(&c->jobwait_by_handle);
    lq_map_free(&c->jobwait_by_job);
    lq_heap_free(&c->jobwait_heap);
}

void lq_jobwait_check(const lq_core *c)
{
    lq_heap_check(&c->jobwait_heap, &jw_ops, c);
    uint32_t live = 0;
    for (uint32_t wi = 0; wi < c->n_jobwaits; wi++) {
        const lq_jobwait *w = &c->jobwaits[wi];
        if (!w->live)
            continue;
        live++;
        LQ_ASSERT(w->heap_pos < c->jobwait_heap.n && c->jobwait_heap.v[w->heap_pos] == wi);
        LQ_ASSERT(lq_map_get(&c->jobwait_by_handle, w->handle) == wi);
        uint32_t slot = lq_jobs_find(&c->jobs, w->job_id);
        LQ_ASSERT(slot != LQ_NONE);
        const lq_job *j = lq_job_at(c, slot);
        /* a DEAD job was answered when it died, and new waits on it never park */
        LQ_ASSERT((j->flags & LQ_JOB_F_WAITED) && j->state != LQ_STATE_DEAD);
        LQ_ASSERT(c->jobwaits[w->next].prev == wi && c->jobwaits[w->prev].next == wi);
        LQ_ASSERT(c->jobwaits[w->next].live && c->jobwaits[w->next].job_id == w->job_id);
        LQ_ASSERT(lq_map_get(&c->jobwait_by_job, w->job_id) != LQ_NONE);
    }
    LQ_ASSERT(live == c->n_live_jobwaits && live == c->jobwait_heap.n && live == c->jobwait_by_handle.n);
    /* every list, walked from its head, holds exactly the job's waits: together all of them */
    uint32_t on_lists = 0;
    for (uint32_t b = 0; c->jobwait_by_job.vals && b <= c->jobwait_by_job.mask; b++) {
        uint32_t head = c->jobwait_by_job.vals[b];
        if (head == LQ_NONE)
            continue;
        uint64_t job_id = c->jobwait_by_job.keys[b];
        uint32_t k = head;
        do {
            LQ_ASSERT(c->jobwaits[k].live && c->jobwaits[k].job_id == job_id);
            k = c->jobwaits[k].next;
            LQ_ASSERT(++on_lists <= live);
        } while (k != head);
    }
    LQ_ASSERT(on_lists == live);
    uint32_t flagged = 0;
    for (uint32_t slot = 0; slot < c->jobs.n_slots; slot++) {
        const lq_job *j = lq_job_at(c, slot);
        if (j->state != 0 && (j->flags & LQ_JOB_F_WAITED)) {
            flagged++;
            LQ_ASSERT(lq_map_get(&c->jobwait_by_job, j->id) != LQ_NONE);
        }
    }
    LQ_ASSERT(flagged == c->jobwait_by_job.n);
}
