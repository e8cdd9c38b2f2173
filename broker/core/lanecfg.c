/* Lane settings: admission limits, the default maximum wait, shedding and pause.
 *
 * A paused lane keeps its jobs and its counters, but its ready jobs leave its queue's `ready`
 * sum, so every dispatch path (which trusts that sum) skips it without a test of its own. */
#include <string.h>

#include "core_int.h"
#include "queue.h"

lq_err lq_queue_admit(const lq_core *c, uint32_t li, uint32_t payload_len)
{
    const lq_lane *l = &c->lanes[li];
    uint64_t queued = l->ready + l->delayed + l->pending;
    if (l->max_queued && queued >= l->max_queued)
        return LQ_E_QUEUE_FULL;
    /* An empty lane takes any job, so a limit below one payload cannot block the lane forever. */
    if (l->max_queued_bytes && queued > 0 && l->queued_bytes + payload_len > l->max_queued_bytes)
        return LQ_E_QUEUE_FULL;
    return LQ_OK;
}

static void mark_dirty(lq_core *c, uint32_t qi)
{
    lq_queue *q = &c->queues[qi];
    if (q->n_waiters > 0 && q->ready > 0 && !q->dirty) {
        LQ_ASSERT(c->n_dirty < LQ_QUEUES_MAX);
        q->dirty = true;
        c->dirty[c->n_dirty++] = qi;
    }
}

void lq_queue_lane_pause(lq_core *c, uint32_t li, bool paused, uint64_t until_ms)
{
    lq_lane *l = &c->lanes[li];
    lq_queue *q = &c->queues[l->queue];
    if (l->paused != paused) {
        if (paused) {
            LQ_ASSERT(q->ready >= l->ready);
            q->ready -= l->ready;
        } else {
            q->ready += l->ready;
        }
        l->paused = paused;
    }
    l->paused_until_ms = paused ? until_ms : 0;
    if (!paused)
        mark_dirty(c, l->queue);
}

uint64_t lq_queue_unpause_due(lq_core *c, uint64_t now_ms)
{
    if (now_ms < c->next_unpause_ms)
        return c->next_unpause_ms;
    /* Timed pauses are rare (beanstalk pause-tube, an operator's pause --for): a scan of the
     * lanes when one is due costs less than keeping a heap current on every change. */
    uint64_t next = LQ_TIME_NEVER;
    for (uint32_t li = 0; li < c->n_lanes; li++) {
        lq_lane *l = &c->lanes[li];
        if (!l->paused || l->paused_until_ms == 0)
            continue;
        if (l->paused_until_ms <= now_ms)
            lq_queue_lane_pause(c, li, false, 0);
        else if (l->paused_until_ms < next)
            next = l->paused_until_ms;
    }
    c->next_unpause_ms = next;
    return next;
}

lq_err lq_core_lane_get(const lq_core *c, lq_str queue, lq_str lane, lq_lane_settings *out)
{
    uint32_t qi;
    lq_err e = lq_queue_get((lq_core *)c, queue, false, &qi);
    if (e != LQ_OK)
        return e;
    uint32_t li = lq_queue_find_lane(c, qi, lane);
    if (li == LQ_NONE)
        return LQ_E_NOT_FOUND;
    const lq_lane *l = &c->lanes[li];
    *out = (lq_lane_settings){
        .weight = l->weight,
        .max_queued = l->max_queued,
        .max_queued_bytes = l->max_queued_bytes,
        .max_wait_ms = l->max_wait_ms,
        .sheddable = l->sheddable,
        .paused = l->paused,
        .paused_until_ms = l->paused_until_ms,
    };
    return LQ_OK;
}

lq_err lq_core_lane_set(lq_core *c, uint64_t now_ms, lq_str queue, lq_str lane, const lq_lane_settings *s)
{
    if (s->paused && s->paused_until_ms != 0 && s->paused_until_ms <= now_ms)
        return LQ_E_INVALID_ARGUMENT;
    uint32_t qi, li;
    lq_err e = lq_queue_get(c, queue, true, &qi);
    if (e == LQ_OK)
        e = lq_queue_lane(c, qi, lane, LQ_LANE_FORCE, &li);
    if (e != LQ_OK)
        return e;
    lq_lane *l = &c->lanes[li];
    if (l->weight != s->weight) {
        l->weight = s->weight;
        l->cur = 0;
    }
    l->max_queued = s->max_queued;
    l->max_queued_bytes = s->max_queued_bytes;
    l->max_wait_ms = s->max_wait_ms;
    l->sheddable = s->sheddable;
    lq_queue_lane_pause(c, li, s->paused, s->paused_until_ms);
    if (s->paused && s->paused_until_ms != 0 && s->paused_until_ms < c->next_unpause_ms)
        c->next_unpause_ms = s->paused_until_ms;
    return LQ_OK;
}
