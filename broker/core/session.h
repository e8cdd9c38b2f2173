/* Worker sessions (one per connection): the leases they hold (an intrusive list through the
 * jobs) and, for sessions that heartbeat, a stall deadline in a heap. */
#ifndef LQ_SESSION_H
#define LQ_SESSION_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

typedef struct {
    uint64_t last_seen_ms;
    uint32_t heartbeat_ms; /* 0: leases expire one by one instead */
    uint32_t heap_pos;     /* in the stall heap; LQ_NONE when not armed */
    uint32_t lease_head;   /* job slot; list through lq_job.sess_prev/sess_next */
    uint32_t n_leases;
    uint32_t wait_head;    /* its parked dequeues (waiter index) */
    uint32_t next_free;
    uint32_t worker;       /* its worker id's health entry (health.h); LQ_NONE: none */
    bool open, stalled;
    bool keep_leases;      /* closing hands its leases to the detached session (core.h) */
} lq_session;

/* Session ids on the API are index + 1, so 0 is never a valid session. */
uint32_t lq_session_index(const lq_core *c, uint32_t session); /* LQ_NONE if not open */
uint64_t lq_session_stall_at(const lq_core *c, uint32_t si);

lq_err lq_session_new(lq_core *c, uint64_t now_ms, uint32_t heartbeat_ms, uint32_t *si);
void lq_session_free(lq_core *c, uint32_t si);
/* Any sign of life: renews a heartbeat session; a stalled one starts clean. */
void lq_session_touch(lq_core *c, uint32_t si, uint64_t now_ms);
/* The stall heap's top was due: the session loses every lease in one step. */
void lq_session_stall(lq_core *c, uint64_t now_ms, uint32_t si, lq_events *ev);

/* A closing keep_leases session: its leases move to the detached session, where they expire
 * by lease time (tokens unchanged). false if the detached session cannot be made (limit). */
bool lq_session_detach_leases(lq_core *c, uint64_t now_ms, uint32_t si);

void lq_session_link(lq_core *c, uint32_t si, uint32_t slot);
void lq_session_unlink(lq_core *c, uint32_t slot);

void lq_session_check(const lq_core *c);

#endif
