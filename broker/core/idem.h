/* Idempotency keys: enqueues carrying the key of a job that is live, dead, or finished less
 * than idem_window_ms ago collapse onto that job.
 *
 * An entry holds a 64-bit hash of (queue, key), keyed with a secret derived from the seed, and
 * the job id. Live and dead jobs own their entry (job flag LQ_JOB_F_IDEM + a map job id ->
 * entry, so keyless jobs pay nothing); once the job ends the entry moves to a heap by expiry,
 * swept a bounded amount per tick and checked again on lookup. Finished entries are capped at
 * LQ_IDEM_FINISHED_MAX: past it the oldest go early (the window shrinks under extreme load
 * rather than memory growing without bound). */
#ifndef LQ_IDEM_H
#define LQ_IDEM_H

#include <stdbool.h>
#include <stdint.h>

#include "core.h"

#define LQ_IDEM_FINISHED_MAX (1u << 22) /* ~4M finished keys: under 400 MB with their indexes */
#define LQ_IDEM_SWEEP_MAX 4096u         /* expired entries removed by one tick */

typedef struct {
    uint64_t hash;
    uint64_t job_id;     /* 0 = free slot */
    uint64_t expires_ms; /* finished: when the key stops counting */
    uint32_t heap_pos;   /* in the expiry heap exactly when finished */
    uint32_t next_free;
} lq_idem;

uint64_t lq_idem_hash(const lq_core *c, lq_str queue, lq_str key);
/* The job a key points to (live, dead, or finished within the window), or 0. An entry found
 * expired is removed on the way. */
uint64_t lq_idem_lookup(lq_core *c, uint64_t now_ms, uint64_t hash);
/* Registers the key of job_id, a job that exists (or is about to, in the same call). */
lq_err lq_idem_add(lq_core *c, uint64_t hash, uint64_t job_id);
/* Registers the key of a job that finished at finished_ms (recovery). */
lq_err lq_idem_add_finished(lq_core *c, uint64_t hash, uint64_t job_id, uint64_t finished_ms);
/* The job holding an entry ended at now_ms (DONE, EXPIRED, ...): its key counts for the window. */
void lq_idem_finish(lq_core *c, uint64_t now_ms, uint64_t job_id);
/* The job was never stored (its batch failed): its key is forgotten at once. */
void lq_idem_drop(lq_core *c, uint64_t job_id);
/* Removes up to LQ_IDEM_SWEEP_MAX expired entries. */
void lq_idem_sweep(lq_core *c, uint64_t now_ms);
uint64_t lq_idem_next(const lq_core *c); /* earliest expiry, or LQ_TIME_NEVER */

void lq_idem_free(lq_core *c);
void lq_idem_check(const lq_core *c);

#endif
