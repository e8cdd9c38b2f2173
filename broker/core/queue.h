/* Queues, lanes and tenants: where ready jobs wait and in which order they leave.
 *
 * A queue has up to LQ_LANES_MAX lanes served by smooth weighted round robin; a lane holds one
 * (lane, tenant) bucket per tenant seen, each with a ready heap ordered by (priority, seq); the
 * buckets with ready jobs form a ring so tenants are served in turn. Per-lane counters for
 * every job state are kept by lq_job_set_state, the one place a job changes state. */
#ifndef LQ_QUEUE_H
#define LQ_QUEUE_H

#include <stdbool.h>
#include <stdint.h>

#include "admin.h"
#include "core.h"
#include "heap.h"
#include "ready.h"

typedef struct {
    uint32_t name;      /* interned */
    uint32_t queue;
    uint32_t weight;
    uint32_t ring_head; /* tenant bucket served next; LQ_NONE when none has ready jobs */
    uint32_t n_ring;
    int64_t cur;        /* SWRR current weight */
    uint64_t ready, leased, delayed, dead, pending;
    uint64_t queued_bytes;     /* payload bytes of its READY, DELAYED and PENDING jobs */
    uint64_t max_queued, max_queued_bytes, max_wait_ms; /* lq_lane_settings */
    uint64_t paused_until_ms;
    bool sheddable, paused;    /* a paused lane's ready jobs are not in its queue's `ready` */
    lq_lane_admin adm;         /* operations: totals and rates (admin.h) */
    /* drain rate for QUEUE_FULL's retry_after_ms: grants are counted per window and folded
     * into an exponentially weighted average of leases per second (half-life one window) */
    uint64_t rate_win_ms;      /* start of the current window */
    uint32_t rate_win_n;       /* grants in it */
    double rate_per_s;
} lq_lane;

typedef struct {
    uint32_t name;      /* interned tenant name ("" = the shared tenant) */
    uint32_t lane;
    uint32_t ring_prev, ring_next;
    lq_ready ready;     /* job slots by (priority, seq) */
} lq_tenant;

typedef struct {
    uint32_t name;
    uint32_t n_lanes;
    uint32_t lanes[LQ_LANES_MAX];
    uint32_t zero_rr;   /* round-robin cursor among weight-0 lanes */
    uint64_t ready;     /* sum of the ready counts of the lanes that are not paused */
    uint32_t wait_head, wait_tail, n_waiters; /* FIFO of parked dequeue nodes (waiters.h) */
    bool configured;
    bool dirty;         /* in core->dirty: got ready jobs while it has waiters */
    lq_queue_admin adm; /* operations: drain, queue defaults (admin.h) */
} lq_queue;

typedef enum {
    LQ_LANE_AUTO,  /* create on first use unless the queue is configured (NOT_FOUND) */
    LQ_LANE_FORCE, /* create even in a configured queue (recovery must not drop jobs) */
} lq_lane_mode;

/* Finds (or, with create, makes) a queue by a valid name. */
lq_err lq_queue_get(lq_core *c, lq_str name, bool create, uint32_t *qi);
/* Finds or makes a lane of queue qi; an empty name means "default". */
lq_err lq_queue_lane(lq_core *c, uint32_t qi, lq_str lane, lq_lane_mode mode, uint32_t *li);
/* Finds or makes the (lane, tenant) bucket; an empty tenant is the shared one. */
lq_err lq_queue_tenant(lq_core *c, uint32_t li, lq_str tenant, uint32_t *ti);

/* Moves a job to READY and into its tenant's heap (front of the line by its seq). */
void lq_queue_push_ready(lq_core *c, uint32_t slot);
/* Takes a READY job out of its tenant's heap; it stays READY (the caller moves it on). */
void lq_queue_remove_ready(lq_core *c, uint32_t slot);
/* Takes the next dispatchable job of queue qi out of its heap (still READY; the caller moves
 * it on), or LQ_NONE. Jobs whose deadline has passed are deleted on the way (JOB_DELETE
 * EXPIRED). */
uint32_t lq_queue_take(lq_core *c, uint32_t qi, uint64_t now_ms, lq_events *ev);

/* Takes a READY job out of its tenant's heap (and the lane's ring if that empties); its state
 * stays READY for the caller to move on (lq_job_finish). */
void lq_queue_unready(lq_core *c, uint32_t slot);
/* A lease of lane li was granted at now_ms (drain-rate estimate). */
void lq_lane_note_grant(lq_lane *l, uint64_t now_ms);

/* The lane of queue qi named `lane` (empty = "default") or LQ_NONE; never creates. */
uint32_t lq_queue_find_lane(const lq_core *c, uint32_t qi, lq_str lane);
/* QUEUE_FULL if one more job of payload_len would pass lane li's limits. */
lq_err lq_queue_admit(const lq_core *c, uint32_t li, uint32_t payload_len);
/* Pauses or resumes lane li, keeping its queue's `ready` to the lanes that may dispatch. */
void lq_queue_lane_pause(lq_core *c, uint32_t li, bool paused, uint64_t until_ms);
/* Lifts time-limited pauses that are due; returns the next time one is due. */
uint64_t lq_queue_unpause_due(lq_core *c, uint64_t now_ms);

/* Moves the job's state and its lane's counters together; state 0 = leaving the core. */
void lq_job_set_state(lq_core *c, uint32_t slot, uint8_t state);

lq_err lq_queue_configure(lq_core *c, lq_str queue, const lq_lane_cfg *lanes, uint32_t n_lanes);
void lq_queue_lane_stats(const lq_core *c, uint32_t li, lq_lane_stats *s);

/* lq_core_check's part: lane counters, rings, ready heaps. */
void lq_queue_check(const lq_core *c);

#endif
