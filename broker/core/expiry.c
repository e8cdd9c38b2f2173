#include "expiry.h"

#include <stdlib.h>

#include "core_int.h"

static void swap(lq_expiry_ent *a, lq_expiry_ent *b)
{
    lq_expiry_ent t = *a;
    *a = *b;
    *b = t;
}

static void sift_up(lq_expiry *x, uint32_t i)
{
    while (i > 0) {
        uint32_t p = (i - 1) / 2;
        if (x->v[p].deadline_ms <= x->v[i].deadline_ms)
            break;
        swap(&x->v[p], &x->v[i]);
        i = p;
    }
}

static void sift_down(lq_expiry *x, uint32_t i)
{
    for (;;) {
        uint32_t l = 2 * i + 1, r = l + 1, m = i;
        if (l < x->n && x->v[l].deadline_ms < x->v[m].deadline_ms)
            m = l;
        if (r < x->n && x->v[r].deadline_ms < x->v[m].deadline_ms)
            m = r;
        if (m == i)
            return;
        swap(&x->v[m], &x->v[i]);
        i = m;
    }
}

static void pop(lq_expiry *x)
{
    x->v[0] = x->v[--x->n];
    if (x->n > 0)
        sift_down(x, 0);
}

/* The entry still describes a job the core holds with that deadline. */
static uint32_t live_slot(const lq_core *c, const lq_expiry_ent *e)
{
    uint32_t slot = lq_jobs_find(&c->jobs, e->job_id);
    if (slot == LQ_NONE || lq_job_at(c, slot)->deadline_ms != e->deadline_ms)
        return LQ_NONE;
    return slot;
}

/* Drops the entries of jobs that are gone, then rebuilds the heap: O(n), and only when dead
 * entries are the majority, so amortized O(1) per entry. */
static void compact(lq_core *c)
{
    lq_expiry *x = &c->expiry;
    uint32_t k = 0;
    for (uint32_t i = 0; i < x->n; i++) {
        if (live_slot(c, &x->v[i]) != LQ_NONE)
            x->v[k++] = x->v[i];
    }
    x->n = k;
    for (uint32_t i = x->n / 2; i-- > 0;)
        sift_down(x, i);
}

void lq_expiry_add(lq_core *c, uint64_t deadline_ms, uint64_t job_id)
{
    lq_expiry *x = &c->expiry;
    if (x->n == x->cap) {
        if (x->n >= 4096 && x->n / 2 > c->jobs.n_live) {
            compact(c);
        }
        if (x->n == x->cap) {
            uint32_t ncap = x->cap ? x->cap * 2 : 256;
            if (ncap <= x->cap)
                return;
            lq_expiry_ent *nv = realloc(x->v, (size_t)ncap * sizeof *nv); /* owner: the heap */
            if (nv == NULL)
                return; /* lazily expired at dispatch instead */
            x->v = nv;
            x->cap = ncap;
        }
    }
    x->v[x->n] = (lq_expiry_ent){deadline_ms, job_id};
    sift_up(x, x->n++);
}

void lq_expiry_run(lq_core *c, uint64_t now_ms, lq_events *ev)
{
    lq_expiry *x = &c->expiry;
    for (uint32_t done = 0; x->n > 0 && x->v[0].deadline_ms <= now_ms && done < LQ_EXPIRY_PER_TICK;) {
        lq_expiry_ent e = x->v[0];
        pop(x);
        uint32_t slot = live_slot(c, &e);
        if (slot == LQ_NONE)
            continue;
        lq_job *j = lq_job_at(c, slot);
        if (j->state == LQ_STATE_READY) {
            lq_queue_unready(c, slot);
        } else if (j->state == LQ_STATE_DELAYED) {
            lq_heap_remove(&c->delayed_heap, &lq_delay_heap_ops, c, j->heap_pos);
        } else {
            /* LEASED: a worker has it (dispatch checked the deadline then). PENDING: not yet
             * durable. Either way dispatch's own check catches it if it is queued again. */
            continue;
        }
        lq_job_finish(c, now_ms, slot, LQ_STATE_EXPIRED, ev);
        done++;
    }
}

uint64_t lq_expiry_next(const lq_core *c, uint64_t now_ms)
{
    const lq_expiry *x = &c->expiry;
    if (x->n == 0)
        return LQ_TIME_NEVER;
    return x->v[0].deadline_ms > now_ms ? x->v[0].deadline_ms : lq_add_sat(now_ms, 1);
}

void lq_expiry_free(lq_expiry *x)
{
    free(x->v);
    x->v = NULL;
    x->n = x->cap = 0;
}
