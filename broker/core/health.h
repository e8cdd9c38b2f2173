/* Worker health: quarantine of worker ids that keep losing their leases.
 *
 * A GPU worker that freezes loses its leases (stall, close, expiry) and, restarted under the
 * same id, would take the next jobs and freeze again. Each known worker id (interned name) has
 * a small ring of its recent loss times (quarantine_losses entries); once the ring holds that
 * many losses within quarantine_window_ms the id is suspect until the oldest of them leaves the
 * window (or an admin clears it), and its sessions are granted no leases meanwhile.
 *
 * The table is bounded: ids with no open session and no loss in the window are forgotten when
 * their last session closes, and evicted (the quietest first) when the table is full. */
#ifndef LQ_HEALTH_H
#define LQ_HEALTH_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

/* Table size beyond max_sessions: room for ids that are offline but still carry losses. */
#define LQ_WORKERS_OFFLINE_MAX 65536u

typedef struct {
    uint64_t suspect_until_ms; /* 0 = not suspect; else in the suspect heap */
    uint32_t name;             /* interned worker id; LQ_NONE = free slot */
    uint32_t n_sessions;       /* open sessions with this id */
    uint32_t n_losses;         /* loss times in its ring (<= quarantine_losses) */
    uint32_t first_loss;       /* ring index of the oldest */
    uint32_t heap_pos;         /* in the suspect heap */
    uint32_t next_free;
} lq_worker;

/* A session with worker id `id` opens: finds or makes its entry (*wi = LQ_NONE for an empty
 * id). The caller must lq_health_detach it when the session closes. */
lq_err lq_health_attach(lq_core *c, uint64_t now_ms, lq_str id, uint32_t *wi);
void lq_health_detach(lq_core *c, uint64_t now_ms, uint32_t wi);
/* One loss incident of worker wi (LQ_NONE: ignored); may emit WORKER_SUSPECT. */
void lq_health_loss(lq_core *c, uint64_t now_ms, uint32_t wi, lq_events *ev);
/* Lifts quarantines that ran out (their parked dequeues get served in this tick). */
void lq_health_tick(lq_core *c, uint64_t now_ms);
uint64_t lq_health_next(const lq_core *c); /* earliest lift, or LQ_TIME_NEVER */

void lq_health_free(lq_core *c);
void lq_health_check(const lq_core *c);

#endif
