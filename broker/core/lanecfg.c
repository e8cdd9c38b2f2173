/* Lane settings: admission limits, the default maximum wait, shedding and pause.
 *
 * A paused lane keeps its jobs and its counters, but its ready jobs leave its queue's `ready`
 * sum, so every dispatch path (which trusts that sum) skips it without a test of its own. */
#include <math.h>
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

/* ---- drain rate and retry hints ----------------------------------------------------------- */

#define RATE_WIN_MS 1000u
#define RETRY_MIN_MS 10u
#define RETRY_MAX_MS 30000u
#define RETRY_IDLE_MS 1000u

/* The estimate as of now_ms, folding the current window in once it is complete: the weight of
 * a window of `el` ms is 1 - 2^(-el/1000), so a lane that stopped draining decays to 0. */
static double rate_at(const lq_lane *l, uint64_t now_ms, bool *fold)
{
    uint64_t el = now_ms > l->rate_win_ms ? now_ms - l->rate_win_ms : 0;
    *fold = el >= RATE_WIN_MS;
    if (!*fold)
        return l->rate_per_s > 0 || el == 0 ? l->rate_per_s : l->rate_win_n * 1000.0 / (double)el;
    double inst = l->rate_win_n * 1000.0 / (double)el;
    double a = 1.0 - exp2(-(double)el / RATE_WIN_MS);
    return l->rate_per_s + a * (inst - l->rate_per_s);
}

void lq_lane_note_grant(lq_lane *l, uint64_t now_ms)
{
    bool fold;
    double r = rate_at(l, now_ms, &fold);
    if (fold || l->rate_win_ms == 0) {
        l->rate_per_s = l->rate_win_ms == 0 ? 0 : r;
        l->rate_win_ms = now_ms;
        l->rate_win_n = 0;
    }
    if (l->rate_win_n < UINT32_MAX)
        l->rate_win_n++;
}

static const lq_lane *find(const lq_core *c, lq_str queue, lq_str lane)
{
    uint32_t qi;
    if (lq_queue_get((lq_core *)c, queue, false, &qi) != LQ_OK)
        return NULL;
    uint32_t li = lq_queue_find_lane(c, qi, lane);
    return li == LQ_NONE ? NULL : &c->lanes[li];
}

double lq_core_lane_drain_rate(const lq_core *c, uint64_t now_ms, lq_str queue, lq_str lane)
{
    const lq_lane *l = find(c, queue, lane);
    bool fold;
    return l ? rate_at(l, now_ms, &fold) : 0;
}

uint32_t lq_core_lane_retry_after_ms(const lq_core *c, uint64_t now_ms, lq_str queue, lq_str lane)
{
    const lq_lane *l = find(c, queue, lane);
    if (l == NULL)
        return 0;
    uint64_t queued = l->ready + l->delayed + l->pending;
    /* jobs to drain before the lane is back at 90 % of its limits */
    double need = 0;
    if (l->max_queued && queued >= l->max_queued)
        need = (double)queued - (double)l->max_queued * 0.9 + 1;
    if (l->max_queued_bytes && l->queued_bytes >= l->max_queued_bytes * 9 / 10 && queued > 0) {
        double per_job = (double)l->queued_bytes / (double)queued;
        double over = ((double)l->queued_bytes - (double)l->max_queued_bytes * 0.9) / (per_job > 0 ? per_job : 1) + 1;
        if (over > need)
            need = over;
    }
    if (need <= 0)
        return 0;
    bool fold;
    double rate = rate_at(l, now_ms, &fold);
    if (rate < 0.001)
        return RETRY_IDLE_MS;
    double ms = need * 1000.0 / rate;
    return ms < RETRY_MIN_MS ? RETRY_MIN_MS : ms > RETRY_MAX_MS ? RETRY_MAX_MS : (uint32_t)ms;
}
