/* The inside of struct lq_core, shared by the core's modules (never by its callers). */
#ifndef LQ_CORE_INT_H
#define LQ_CORE_INT_H

#include "core.h"
#include "expiry.h"
#include "health.h"
#include "heap.h"
#include "idem.h"
#include "jobs.h"
#include "jobwait.h"
#include "lq_assert.h"
#include "map.h"
#include "names.h"
#include "queue.h"
#include "session.h"
#include "waiters.h"

struct lq_core {
    lq_core_config cfg;
    uint64_t rng;          /* splitmix64 state: backoff jitter */
    uint64_t token_key;    /* tokens = mix(token_key ^ counter): distinct, non-zero, opaque */
    uint64_t token_ctr;
    uint64_t next_id, next_seq;
    uint64_t hash_key;     /* keys idempotency hashes (derived from the seed, secret to clients) */

    lq_jobs jobs;
    lq_names names;
    uint32_t name_default; /* interned "default" */
    uint32_t name_empty;   /* interned "" (the shared tenant) */

    lq_queue *queues;      /* owner: core; creation order */
    uint32_t n_queues, cap_queues;
    lq_map queue_by_name;  /* name id -> queue index */
    lq_lane *lanes;        /* owner: core */
    uint32_t n_lanes, cap_lanes;
    lq_tenant *tenants;    /* owner: core */
    uint32_t n_tenants, cap_tenants;
    lq_map tenant_by_key;  /* lane << 32 | tenant name id -> tenant index */

    lq_heap lease_heap;    /* LEASED jobs of sessions without heartbeats, by expiry */
    lq_heap delayed_heap;  /* DELAYED jobs by not_before */

    lq_session *sessions;  /* owner: core */
    uint32_t n_sessions, cap_sessions, sessions_free, n_open_sessions;
    lq_heap stall_heap;    /* heartbeat sessions by stall deadline */
    uint32_t detached_si;  /* internal session holding the leases of closed keep_leases sessions
                            * (no heartbeats: each lease in the lease heap); LQ_NONE until needed */

    lq_waiter *waiters;    /* owner: core */
    uint32_t n_waiters, cap_waiters, waiters_free, n_live_waiters;
    lq_heap wait_heap;     /* waiters by timeout */
    uint64_t waiter_arrivals; /* counter for lq_waiter.arrival */
    uint64_t next_unpause_ms; /* earliest timed lane pause to lift (LQ_TIME_NEVER: none) */
    lq_map waiter_by_handle;
    uint32_t *dirty;       /* owner: core; queues with new ready jobs and waiters (cap LQ_QUEUES_MAX) */
    uint32_t n_dirty;

    lq_jobwait *jobwaits;  /* owner: core */
    uint32_t n_jobwaits, cap_jobwaits, jobwaits_free, n_live_jobwaits;
    lq_heap jobwait_heap;  /* job waits by timeout */
    lq_map jobwait_by_handle;
    lq_map jobwait_by_job; /* job id -> its first wait (jobs flagged LQ_JOB_F_WAITED) */

    lq_worker *workers;    /* owner: core; worker ids known to the quarantine */
    uint32_t n_workers, cap_workers, workers_free, n_live_workers, max_workers;
    uint64_t *loss_times;  /* owner: core; quarantine_losses loss times per worker slot */
    lq_map worker_by_name; /* interned name id -> worker index */
    lq_heap suspect_heap;  /* suspect workers by suspect_until_ms */

    lq_idem *idem;         /* owner: core */
    uint32_t n_idem, cap_idem, idem_free, n_live_idem;
    lq_map idem_by_hash;   /* hash(queue, key) -> entry */
    lq_map idem_by_job;    /* job id -> entry, for jobs flagged LQ_JOB_F_IDEM */
    lq_heap idem_heap;     /* finished entries by expiry */

    lq_expiry expiry;      /* queued jobs with a deadline, for prompt expiry (expiry.h) */

    bool restoring_done;
    uint64_t bs_bury_ctr;  /* beanstalk bury order (bs.c): kept in a DEAD job's time_ms */
};

extern const lq_heap_ops lq_ready_heap_ops;  /* jobs by (priority, seq) */
extern const lq_heap_ops lq_lease_heap_ops;  /* jobs by time_ms (expiry) */
extern const lq_heap_ops lq_delay_heap_ops;  /* jobs by time_ms (not_before), then seq */

static inline lq_job *lq_job_at(const lq_core *c, uint32_t slot) { return lq_jobs_at(&c->jobs, slot); }
static inline lq_tenant *lq_job_tenant(const lq_core *c, const lq_job *j) { return &c->tenants[j->tenant]; }
static inline lq_lane *lq_job_lane(const lq_core *c, const lq_job *j) { return &c->lanes[c->tenants[j->tenant].lane]; }
static inline uint32_t lq_job_queue(const lq_core *c, const lq_job *j) { return lq_job_lane(c, j)->queue; }

static inline uint64_t lq_add_sat(uint64_t a, uint64_t b) { return a > UINT64_MAX - b ? UINT64_MAX : a + b; }

/* A core that cannot record or place what it already changed cannot go on safely: running out
 * of memory there stops the broker, which recovers from storage (leases are not durable). */
static inline void lq_must(lq_err e) { LQ_ASSERT(e == LQ_OK); }

/* Appends an event (aborts if memory is exhausted, see lq_must). */
lq_ev *lq_ev_add(lq_events *ev, lq_ev_type type, uint64_t job_id);
/* Forgets a job entirely (it left the heaps and its session already; no waits, no key). */
void lq_job_forget(lq_core *c, uint32_t slot);
/* A job leaves the core in final_state: JOB_DELETE, then the answers to its waits, then its
 * idempotency key starts its window; then it is forgotten. */
void lq_job_finish(lq_core *c, uint64_t now_ms, uint32_t slot, uint8_t final_state, lq_events *ev);

/* Quarantined sessions are granted nothing, directly or from their parked dequeues. */
static inline bool lq_session_suspect(const lq_core *c, uint32_t si, uint64_t now_ms)
{
    uint32_t wi = c->sessions[si].worker;
    return wi != LQ_NONE && c->workers[wi].suspect_until_ms > now_ms;
}
uint64_t lq_rand(lq_core *c);

#endif
