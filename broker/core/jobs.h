/* The job table: fixed-size job structs in chunks (stable addresses, no copying when it grows),
 * addressed by a u32 slot, with a free list and an open-addressing hash id -> slot.
 *
 * Only what dispatch needs lives here (88 bytes a job); names are interned indexes and the
 * strings of a job (idempotency key, last error, headers) live only in storage. */
#ifndef LQ_JOBS_H
#define LQ_JOBS_H

#include <stdint.h>

#include "heap.h"
#include "lq_err.h"

typedef struct {
    uint64_t id;
    uint64_t seq;         /* kept across requeues: front of the line */
    int64_t priority;
    uint64_t enqueued_ms;
    uint64_t time_ms;     /* DELAYED: not_before; LEASED: lease expiry; else 0 */
    uint64_t deadline_ms; /* absolute, 0 = none */
    uint64_t token;       /* LEASED: the current lease token; else 0 */
    uint32_t heap_pos;    /* in the one heap its state puts it in; free slots: next free */
    uint32_t sess_prev, sess_next; /* LEASED: the session's lease list */
    uint32_t tenant;      /* index of its (lane, tenant) bucket; the lane follows from it */
    uint32_t session;     /* LEASED: session index */
    uint32_t payload_len; /* for the lanes' byte limits */
    uint16_t attempts, max_attempts; /* max_attempts is capped at LQ_MAX_ATTEMPTS_MAX */
    uint8_t state;        /* lq_job_state; 0 = free slot */
    uint8_t flags;        /* LQ_JOB_F_*: side tables to visit when the job ends (in padding) */
} lq_job;

/* Most jobs have neither: the flag spares their hot paths a map lookup. */
#define LQ_JOB_F_WAITED 0x01u /* job waits watch it (jobwait.h) */
#define LQ_JOB_F_IDEM 0x02u   /* it owns an idempotency entry (idem.h) */
#define LQ_JOB_F_UNSYNCED 0x04u /* dispatched early: its put's batch is not durable yet */

_Static_assert(sizeof(lq_job) == 88, "the job struct is the memory per queued job: keep it at 88 bytes");

#define LQ_JOB_CHUNK_BITS 12
#define LQ_JOB_CHUNK (1u << LQ_JOB_CHUNK_BITS)

typedef struct {
    lq_job **chunks;    /* owner: table; each chunk owned by the table too */
    uint32_t n_chunks, cap_chunks;
    uint32_t n_slots;   /* slots ever handed out (high-water mark) */
    uint32_t free_head;
    uint32_t n_live;
    uint32_t *buckets;  /* owner: table; slot or LQ_NONE; linear probing */
    uint32_t mask;      /* buckets - 1; buckets == NULL when empty */
} lq_jobs;

void lq_jobs_init(lq_jobs *t);
void lq_jobs_free(lq_jobs *t);
/* Makes room for one more job so that lq_jobs_add cannot fail. */
lq_err lq_jobs_reserve(lq_jobs *t);
/* Takes a slot (after lq_jobs_reserve), zeroes it, sets id and links. */
uint32_t lq_jobs_add(lq_jobs *t, uint64_t id);
uint32_t lq_jobs_find(const lq_jobs *t, uint64_t id);
void lq_jobs_del(lq_jobs *t, uint32_t slot);
/* Bytes held by the table (jobs + hash), for memory accounting. */
uint64_t lq_jobs_bytes(const lq_jobs *t);

static inline lq_job *lq_jobs_at(const lq_jobs *t, uint32_t slot)
{
    return &t->chunks[slot >> LQ_JOB_CHUNK_BITS][slot & (LQ_JOB_CHUNK - 1)];
}

#endif
