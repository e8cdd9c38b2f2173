/* Leases: granting a ready job to a session, and taking it back (ack, nack, expiry, stall,
 * close) with the requeue / dead-letter rules. Tokens and backoff jitter come from the seed. */
#ifndef LQ_LEASE_H
#define LQ_LEASE_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

/* Leases the next job of queue qi to session si: attempts + 1, a fresh token, the lease list
 * of the session and (sessions without heartbeats) the lease heap. false when none is ready. */
bool lq_lease_grant(lq_core *c, uint64_t now_ms, uint32_t si, uint32_t qi, uint32_t lease_ms,
                    lq_lease *out, lq_events *ev);

/* Leases job `slot` (taken out of every heap already, not LEASED) to session si. */
void lq_lease_grant_slot(lq_core *c, uint64_t now_ms, uint32_t si, uint32_t slot, uint32_t lease_ms, lq_lease *out);

/* Grants up to max leases from queues qis[] served in turn from *cursor; returns how many.
 * With out != NULL they go there, otherwise as LEASE events for waiter. */
uint32_t lq_lease_grant_many(lq_core *c, uint64_t now_ms, uint32_t si, const uint32_t *qis,
                             uint32_t n_queues, uint32_t *cursor, uint32_t max, uint32_t lease_ms,
                             lq_lease *out, uint64_t waiter, lq_events *ev);

typedef struct {
    lq_requeue_reason reason;
    lq_str error;      /* nack: the worker's error text */
    bool dead;         /* dead-letter regardless of attempts */
    uint64_t delay_ms; /* > 0: DELAYED until now + delay_ms */
} lq_release_opts;

/* Takes a LEASED job back: DEAD past its delivery limit (or when asked), else READY (front of
 * its lane) or DELAYED. Emits JOB_UPDATE and REQUEUED or DEAD. Returns the new state. */
uint8_t lq_lease_release(lq_core *c, uint64_t now_ms, uint32_t slot, const lq_release_opts *o,
                         lq_events *ev);

/* Looks up a lease for ack/nack/extend: NOT_FOUND for ids never issued, LEASE_LOST when the
 * job is gone, not leased, or leased under another token. */
lq_err lq_lease_lookup(const lq_core *c, uint64_t job_id, uint64_t token, uint32_t *slot);

/* Exponential backoff base * 2^(attempts-1), capped, half of it jittered; never over the cap. */
uint64_t lq_lease_backoff(lq_core *c, uint32_t attempts);

#endif
