/* Active expiry of queued jobs: a min-heap of (deadline, job id) for every job that carries a
 * deadline, so a job whose deadline passes while it waits is finished as EXPIRED at that
 * moment (its waiting producers learn it then), not only when dispatch reaches it.
 *
 * Entries are not removed when a job ends some other way (that would cost every job a heap
 * position): a popped entry whose job is gone, leased, or has another deadline is skipped,
 * and the heap is compacted when dead entries outnumber live jobs. Dispatch keeps its own
 * check (one comparison in lq_queue_take), which stays the guarantee: this heap only makes
 * the expiry prompt. */
#ifndef LQ_EXPIRY_H
#define LQ_EXPIRY_H

#include <stdint.h>

#include "core.h"

#define LQ_EXPIRY_PER_TICK 4096 /* jobs expired by one tick; the rest go in the next ones */

typedef struct {
    uint64_t deadline_ms;
    uint64_t job_id;
} lq_expiry_ent;

typedef struct {
    lq_expiry_ent *v; /* owner: this heap */
    uint32_t n, cap;
} lq_expiry;

/* Remembers a job's deadline. Out of memory is not an error: the job then expires lazily. */
void lq_expiry_add(lq_core *c, uint64_t deadline_ms, uint64_t job_id);
/* Expires up to LQ_EXPIRY_PER_TICK queued jobs whose deadline is <= now_ms. */
void lq_expiry_run(lq_core *c, uint64_t now_ms, lq_events *ev);
/* When lq_expiry_run has work next (now_ms + 1 if its budget ran out), or LQ_TIME_NEVER. */
uint64_t lq_expiry_next(const lq_core *c, uint64_t now_ms);
void lq_expiry_free(lq_expiry *x);

#endif
