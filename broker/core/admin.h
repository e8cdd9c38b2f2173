/* Operations state kept inside lanes and queues (admin.c): totals for metrics, rates, drain
 * and per-queue defaults. Counting is a few increments on paths that already touch the lane. */
#ifndef LQ_ADMIN_H
#define LQ_ADMIN_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

typedef struct {
    lq_lane_totals t;
    uint64_t mark_ms;          /* rates: when the counts below were taken */
    uint64_t mark_enqueued, mark_acked;
    double enqueue_rate, ack_rate;
} lq_lane_admin;

typedef struct {
    bool draining;
    bool drain_reported;       /* lq_core_drained told about this drain already */
    uint32_t lease_ms, max_attempts;
    bool retention_set;
    uint32_t retention_ms;
} lq_queue_admin;

/* A job of the lane moves from state `from` to `to` (lq_job_set_state). */
static inline void lq_admin_count(lq_lane_admin *a, uint8_t from, uint8_t to)
{
    if (to == LQ_STATE_PENDING && from == 0)
        a->t.enqueued++;
    else if (to == LQ_STATE_LEASED)
        a->t.leased++;
    else if (to == LQ_STATE_DEAD && from == LQ_STATE_LEASED)
        a->t.dead_lettered++;
}

/* A job of the lane ends in final_state (lq_job_finish). */
static inline void lq_admin_count_end(lq_lane_admin *a, uint8_t final_state)
{
    switch (final_state) {
    case LQ_STATE_DONE: a->t.acked++; break;
    case LQ_STATE_EXPIRED: a->t.expired++; break;
    case LQ_STATE_PURGED: a->t.purged++; break;
    case LQ_STATE_CANCELLED: a->t.cancelled++; break;
    default: break;
    }
}

#endif
