/* Parked dequeues: a waiter is linked into the FIFO of every queue it names (one node per
 * queue, node id = waiter index * LQ_DEQUEUE_QUEUES_MAX + position) and into a timeout heap.
 * Queues that get ready jobs while someone waits are marked dirty; lq_waiters_serve hands
 * their jobs to the oldest waiters first. */
#ifndef LQ_WAITERS_H
#define LQ_WAITERS_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

typedef struct {
    uint64_t handle;
    uint64_t arrival;     /* parking order: earlier waiters keep first claim on every queue */
    uint64_t expires_ms;
    uint32_t heap_pos;
    uint32_t session;     /* index */
    uint32_t lease_ms;
    uint32_t max_jobs;
    uint32_t n_queues, cursor;
    uint32_t sess_prev, sess_next; /* the session's waiter list */
    uint32_t next_free;
    bool live;
    uint32_t queues[LQ_DEQUEUE_QUEUES_MAX];
    uint32_t prev[LQ_DEQUEUE_QUEUES_MAX], next[LQ_DEQUEUE_QUEUES_MAX]; /* queue FIFO nodes */
} lq_waiter;

lq_err lq_waiter_park(lq_core *c, uint64_t now_ms, uint64_t handle, uint32_t si, const uint32_t *qis,
                      uint32_t n_queues, uint32_t max_jobs, uint32_t lease_ms, uint32_t wait_ms);
/* Serves the waiters of dirty queues in arrival order. */
void lq_waiters_serve(lq_core *c, uint64_t now_ms, lq_events *ev);
/* Completes every waiter whose wait ran out (WAITER_DONE without leases). */
void lq_waiters_expire(lq_core *c, uint64_t now_ms, lq_events *ev);
/* Removes a waiter; with ev, a WAITER_DONE is emitted, without it the waiter goes silently. */
void lq_waiter_finish(lq_core *c, uint32_t wi, lq_events *ev);
/* All waiters of session si (ev == NULL: silently). */
void lq_waiters_of_session(lq_core *c, uint32_t si, lq_events *ev);
uint32_t lq_waiter_find(const lq_core *c, uint64_t handle);

void lq_waiters_check(const lq_core *c);

#endif
