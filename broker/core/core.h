/* leaseq core: the sans-IO state machine of queues, lanes, jobs, leases and worker sessions.
 *
 * No sockets, no storage, no clock, no randomness of its own: time arrives as `now_ms`
 * (milliseconds on the broker clock, monotonic within a process), randomness comes from the
 * seed in the config, and every durable effect goes out as an event in `lq_events` that the
 * caller (the broker shell, or the simulator) must apply in order.
 *
 * Contract with the caller:
 *  - Events appended to an lq_events are valid until the caller clears it; strings inside them
 *    point either into core-owned memory (queue, lane and tenant names: valid until the core is
 *    destroyed) or into the request that caused them (last_error of a nack, idem_key of an
 *    enqueue: valid until that call's events are consumed).
 *  - Store events (JOB_PUT, JOB_UPDATE, JOB_DELETE) must be written in the order given, in
 *    batches that commit in order. A new job is PENDING (never dispatched) until the caller
 *    reports its batch durable with lq_core_commit_done() -- unless early_dispatch is set:
 *    then it is READY at once, and a batch that fails revokes it (REVOKED), wherever it got
 *    to. Later store events of a job whose put failed must be no-ops for the store.
 *  - lq_core_tick() must be called after every round of requests (once per loop iteration)
 *    and no later than the time it returns: it fires timers and serves parked dequeues.
 *  - Single-threaded: one caller at a time.
 */
#ifndef LQ_CORE_H
#define LQ_CORE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "lq_err.h"

#define LQ_NAME_MAX 200           /* bytes in a queue, lane, tenant or worker name */
#define LQ_LANES_MAX 16           /* lanes per queue */
#define LQ_QUEUES_MAX 4096
#define LQ_DEQUEUE_MAX 256        /* jobs granted by one dequeue */
#define LQ_DEQUEUE_QUEUES_MAX 16  /* queues named by one dequeue */
#define LQ_ERROR_TEXT_MAX 1024    /* bytes of a nack's error text that are kept */
#define LQ_MAX_ATTEMPTS_MAX 65535 /* largest delivery limit a job may ask for */
#define LQ_TIME_NEVER UINT64_MAX

/* A byte string that is not NUL-terminated. */
typedef struct {
    const char *ptr;
    uint32_t len;
} lq_str;

#define LQ_STR_NULL ((lq_str){NULL, 0})
lq_str lq_str_c(const char *s); /* from a C string (NULL -> empty) */
bool lq_str_eq(lq_str a, lq_str b);

/* Values equal the wire JobState. PENDING never leaves the broker. */
typedef enum {
    LQ_STATE_READY = 1,
    LQ_STATE_LEASED = 2,
    LQ_STATE_DELAYED = 3,
    LQ_STATE_DONE = 4,
    LQ_STATE_DEAD = 5,
    LQ_STATE_EXPIRED = 6,
    LQ_STATE_PURGED = 7,
    LQ_STATE_CANCELLED = 8,
    LQ_STATE_PENDING = 9, /* enqueued, its batch not yet durable */
} lq_job_state;

/* Why a leased job went back to ready (or dead). */
typedef enum {
    LQ_REQUEUE_LEASE_EXPIRED = 1,
    LQ_REQUEUE_SESSION_STALLED = 2,
    LQ_REQUEUE_CONN_CLOSED = 3,
    LQ_REQUEUE_NACK = 4,
} lq_requeue_reason;

const char *lq_requeue_reason_name(lq_requeue_reason r); /* "lease_expired", ... */

/* The durable description of a job: what JOB_PUT carries and what recovery feeds back.
 * Headers and payload are the shell's business and never enter the core. */
typedef struct {
    uint64_t id;
    uint64_t seq;           /* order of arrival; a requeued job keeps it (front of the line) */
    int64_t priority;       /* lower is served first */
    uint64_t enqueued_ms;
    uint64_t not_before_ms; /* 0 = now */
    uint64_t deadline_ms;   /* absolute; 0 = none */
    uint32_t attempts;      /* deliveries so far */
    uint32_t max_attempts;
    uint32_t payload_len;
    uint8_t state;          /* lq_job_state as it is once durable: READY, DELAYED or DEAD */
    lq_str queue, lane, tenant, idem_key, last_error;
} lq_job_rec;

typedef struct {
    uint64_t seed;                  /* lease tokens and backoff jitter */
    uint32_t default_lease_ms;      /* 30000 */
    uint32_t max_lease_ms;          /* 43200000 (12 h) */
    uint32_t default_max_attempts;  /* 10: deliveries before dead-letter */
    uint32_t backoff_base_ms;       /* 1000: first retry delay after a nack */
    uint32_t backoff_max_ms;        /* 300000: cap of the exponential backoff */
    uint32_t heartbeat_misses;      /* 3: silence of misses x interval stalls a session */
    uint32_t max_sessions;          /* 65536 */
    uint32_t max_parked;            /* 65536: parked dequeues at once */
    /* worker health (quarantine): a worker id whose leases were lost quarantine_losses times
     * within quarantine_window_ms is suspect and gets no new leases until an admin clears it or
     * its losses fall out of the window. One loss = one incident: a session stall, a
     * connection closed while holding leases, or a lease of the worker expiring. */
    uint32_t quarantine_losses;     /* 3; 0 = never quarantine */
    uint32_t quarantine_window_ms;  /* 600000 (10 min) */
    uint32_t idem_window_ms;        /* 600000: a finished job's idempotency key is kept this long */
    /* Dispatch before the commit (RabbitMQ's order: deliver, then confirm the publisher once
     * on disk). A new job without a delay or an idempotency key is leasable as soon as it is
     * enqueued; its producer is still answered only when its batch is durable. If the batch
     * fails, the job is revoked (a worker holding it meets LEASE_LOST); after a crash a worker
     * may have run a job that was never stored, whose producer saw no answer. false: a job is
     * leased only once durable. */
    bool early_dispatch;
    uint32_t max_job_waits;         /* 65536: lq_core_wait_job waits parked at once */
} lq_core_config;

void lq_core_config_default(lq_core_config *cfg);

typedef struct lq_core lq_core;

/* *out is owned by the caller; free it with lq_core_destroy. */
lq_err lq_core_create(const lq_core_config *cfg, lq_core **out);
void lq_core_destroy(lq_core *core);

/* ---- events ---------------------------------------------------------------------------- */

typedef enum {
    LQ_EV_JOB_PUT = 1,      /* store a new job record (+ the request's headers and payload) */
    LQ_EV_JOB_UPDATE,       /* rewrite state/attempts/not_before/last_error of a stored job */
    LQ_EV_JOB_DELETE,       /* remove a stored job and its payload; final_state says why */
    LQ_EV_LEASE,            /* a parked dequeue was granted a lease */
    LQ_EV_WAITER_DONE,      /* a parked dequeue is complete: reply now (maybe with no jobs) */
    LQ_EV_REQUEUED,         /* informational: a leased job went back (reason) */
    LQ_EV_DEAD,             /* informational: a job was dead-lettered (reason text) */
    LQ_EV_SESSION_STALLED,  /* informational: a worker session missed its heartbeats */
    LQ_EV_JOB_WAIT_DONE,    /* a parked lq_core_wait_job is answered (job reached a terminal
                             * state, or state 0 = its timeout ran out) */
    LQ_EV_WORKER_SUSPECT,   /* informational: a worker id was quarantined */
    LQ_EV_REVOKED,          /* an early-dispatched job's put failed: it is gone from the core,
                             * with its lease if it had one (session: 1-based, LQ_NONE if none) */
} lq_ev_type;

typedef struct {
    uint64_t job_id;
    uint64_t token;        /* changes on every grant; ack/nack/extend must present it */
    uint64_t expires_ms;
    uint64_t enqueued_ms;
    int64_t priority;
    uint32_t attempt;      /* 1 on the first delivery */
    uint32_t session;
    lq_str queue, lane, tenant; /* core-owned */
} lq_lease;

typedef struct {
    lq_ev_type type;
    uint64_t job_id;
    union {
        lq_job_rec put;                                  /* JOB_PUT */
        struct {
            uint8_t state;
            uint32_t attempts;
            uint64_t not_before_ms;
            lq_str last_error;
        } update;                                        /* JOB_UPDATE */
        struct { uint8_t final_state; lq_str queue; } del; /* JOB_DELETE (queue: core-owned) */
        struct { uint64_t waiter; lq_lease lease; } lease; /* LEASE */
        struct { uint64_t waiter; } waiter_done;         /* WAITER_DONE */
        struct { uint8_t reason; uint32_t session; } requeued; /* REQUEUED */
        struct { lq_str reason; } dead;                  /* DEAD */
        struct { uint32_t session; uint32_t leases_requeued; } stalled; /* SESSION_STALLED */
        struct { uint64_t waiter; uint8_t state; } wait_done; /* JOB_WAIT_DONE (job_id set) */
        struct { lq_str worker_id; uint32_t losses; } suspect; /* WORKER_SUSPECT (core-owned) */
        struct { uint32_t session; } revoked;            /* REVOKED */
    } u;
} lq_ev;

/* A growable vector owned by the caller; the core only appends. */
typedef struct {
    lq_ev *v;
    size_t n, cap;
} lq_events;

void lq_events_init(lq_events *ev);
void lq_events_clear(lq_events *ev); /* n = 0, keeps memory */
void lq_events_free(lq_events *ev);

/* ---- configuration --------------------------------------------------------------------- */

typedef struct {
    lq_str name;
    uint32_t weight; /* 0 = only when every other lane of the queue is empty */
} lq_lane_cfg;

/* Fixes the lanes of a queue (creating it if needed). A configured queue refuses enqueues to
 * lanes it does not list (NOT_FOUND); an unconfigured queue creates lanes on first use with
 * weight 1. Reconfiguring keeps existing jobs; lanes can be added or reweighted, not removed
 * while they hold jobs (INVALID_ARGUMENT). */
lq_err lq_core_configure_queue(lq_core *core, lq_str queue, const lq_lane_cfg *lanes, uint32_t n_lanes);

/* ---- producers ------------------------------------------------------------------------- */

typedef struct {
    lq_str queue;
    lq_str lane;        /* empty = "default" */
    lq_str tenant;      /* empty = the shared tenant */
    lq_str idem_key;
    int64_t priority;
    uint64_t delay_ms;  /* relative to now */
    uint64_t deadline_ms; /* relative to now; 0 = none */
    uint32_t max_attempts; /* 0 = config default */
    uint32_t payload_len;
} lq_enqueue_req;

/* Creates a PENDING job and emits its JOB_PUT. INVALID_ARGUMENT for bad names,
 * NOT_FOUND for an unknown lane of a configured queue. */
lq_err lq_core_enqueue(lq_core *core, uint64_t now_ms, const lq_enqueue_req *req,
                       uint64_t *job_id, lq_events *ev);

/* The batch holding job_id's JOB_PUT committed (durable = true: the job becomes READY or
 * DELAYED) or failed (durable = false: the job is forgotten, nothing was stored). With
 * early_dispatch the job may be READY, LEASED, DELAYED (a nack) or DEAD already: durable =
 * true only clears its mark; false revokes it (REVOKED, then its waits learn CANCELLED). An
 * early job that finished before its batch did is no longer held: nothing happens. */
void lq_core_commit_done(lq_core *core, uint64_t now_ms, uint64_t job_id, bool durable, lq_events *ev);

/* ---- workers --------------------------------------------------------------------------- */

typedef struct {
    lq_str worker_id;      /* empty for plain producers/admin connections */
    uint32_t heartbeat_ms; /* 0 = no heartbeats: leases expire per job */
    bool keep_leases_on_close; /* closing hands the leases over to per-job expiry (tokens stay
                                * valid) instead of requeueing them: CLI-style clients */
} lq_session_opts;

/* Every connection has a session; leases belong to it. */
lq_err lq_core_session_open(lq_core *core, uint64_t now_ms, const lq_session_opts *opts, uint32_t *session);
/* The connection closed: every lease of the session is requeued at the front of its lane at
 * once (REQUEUED with CONN_CLOSED), its parked dequeues are dropped without WAITER_DONE.
 * A keep_leases_on_close session's leases are not requeued: they pass to an internal holder
 * (no session id, not listed by lq_core_sessions) and expire one by one at their lease expiry
 * (heartbeating sessions' leases: no earlier than now + default_lease_ms); no event, no loss. */
void lq_core_session_close(lq_core *core, uint64_t now_ms, uint32_t session, lq_events *ev);
/* Renews every lease of the session. A stalled session that speaks again starts clean. */
lq_err lq_core_heartbeat(lq_core *core, uint64_t now_ms, uint32_t session, uint32_t *leases_held);

typedef struct {
    const lq_str *queues;
    uint32_t n_queues;   /* 1..LQ_DEQUEUE_QUEUES_MAX; served in turn */
    uint32_t max_jobs;   /* 0 = 1; capped at LQ_DEQUEUE_MAX */
    uint32_t wait_ms;    /* > 0: park when nothing is ready */
    uint32_t lease_ms;   /* 0 = config default; capped at max_lease_ms */
    uint32_t session;
    uint64_t waiter;     /* caller's handle for a parked request, unique among live ones */
} lq_dequeue_req;

/* Grants up to max_jobs leases into out[] (capacity max_jobs, *n_out set). With none ready and
 * wait_ms > 0 the request is parked (*parked = true): later LEASE events for `waiter`, then
 * exactly one WAITER_DONE (at the latest when wait_ms has passed). Parked requests are served
 * in arrival order. Unknown queues are created, so workers may start before producers. */
lq_err lq_core_dequeue(lq_core *core, uint64_t now_ms, const lq_dequeue_req *req,
                       lq_lease *out, uint32_t *n_out, bool *parked, lq_events *ev);

/* Drops a parked dequeue without a WAITER_DONE (its connection went away). */
void lq_core_waiter_cancel(lq_core *core, uint64_t waiter);

/* Completes a lease: JOB_DELETE (final_state DONE). A token that is not the job's current one
 * gives LEASE_LOST; an id never issued gives NOT_FOUND. */
lq_err lq_core_ack(lq_core *core, uint64_t now_ms, uint64_t job_id, uint64_t token, lq_events *ev);

typedef struct {
    lq_str error;       /* kept as last_error (truncated to LQ_ERROR_TEXT_MAX) */
    bool dead;          /* dead-letter now */
    bool delay_set;     /* retry after delay_ms instead of the exponential backoff */
    uint64_t delay_ms;
} lq_nack_opts;

/* Gives a lease back: DELAYED with backoff (or delay_ms), at the front of its lane once due;
 * DEAD if asked or once attempts reached max_attempts. *state_out = DELAYED/READY/DEAD. */
lq_err lq_core_nack(lq_core *core, uint64_t now_ms, uint64_t job_id, uint64_t token,
                    const lq_nack_opts *opts, uint8_t *state_out, lq_events *ev);

/* Undoes a grant that could not be delivered (e.g. it did not fit in the reply): the job goes
 * back to the front of its lane as if never leased: the attempt is not counted, no last_error,
 * no store event unless something stored changed. LEASE_LOST for a stale token. */
lq_err lq_core_release(lq_core *core, uint64_t now_ms, uint64_t job_id, uint64_t token, lq_events *ev);

/* Moves the lease's expiry to now + lease_ms. */
lq_err lq_core_extend(lq_core *core, uint64_t now_ms, uint64_t job_id, uint64_t token,
                      uint32_t lease_ms, uint64_t *expires_ms);

/* ---- time ------------------------------------------------------------------------------ */

/* Fires everything due at now_ms: lease expiries (requeue to the front, or dead past the
 * delivery limit), delayed jobs becoming ready, stalled sessions, parked dequeues whose wait
 * ran out; then serves parked dequeues from ready jobs. Returns the next time it must be
 * called, or LQ_TIME_NEVER. */
uint64_t lq_core_tick(lq_core *core, uint64_t now_ms, lq_events *ev);

/* ---- inspection ------------------------------------------------------------------------ */

typedef struct {
    lq_str queue, lane;
    uint32_t weight;
    uint64_t ready, leased, delayed, dead, pending;
    uint64_t expired; /* counter: jobs whose deadline passed before dispatch (since start) */
} lq_lane_stats;

typedef void (*lq_lane_stats_fn)(void *ctx, const lq_lane_stats *s);

/* Calls fn once per lane of `queue` (len 0: of every queue, in creation order).
 * NOT_FOUND for a named queue that does not exist. */
lq_err lq_core_stats(const lq_core *core, lq_str queue, lq_lane_stats_fn fn, void *ctx);

/* State of a job the core still holds (not done/deleted): LQ_OK or NOT_FOUND. */
lq_err lq_core_job_state(const lq_core *core, uint64_t job_id, uint8_t *state);

/* Counters the shell persists with every batch so ids and sequence numbers are never reused. */
void lq_core_counters(const lq_core *core, uint64_t *next_id, uint64_t *next_seq);

/* ---- recovery -------------------------------------------------------------------------- */

/* Feeds one stored job back in (before any other call). READY or LEASED records come back
 * READY, DELAYED ones DELAYED (READY if due), DEAD ones DEAD. Strings are copied. */
lq_err lq_core_restore_job(lq_core *core, uint64_t now_ms, const lq_job_rec *rec);
/* Ends recovery; the counters are the larger of the stored ones and what the jobs imply. */
void lq_core_restore_finish(lq_core *core, uint64_t now_ms, uint64_t next_id, uint64_t next_seq);

/* ---- job waits, worker health, idempotency ------------------------------------------------ */

/* Like lq_core_enqueue. With a non-empty idem_key that matches a live job of the same queue, or
 * one that finished less than idem_window_ms ago, no job is created: *job_id is that job's id,
 * *duplicate is set and no event is emitted. Keys are kept as 64-bit hashes of (queue, key). */
lq_err lq_core_enqueue_ex(lq_core *core, uint64_t now_ms, const lq_enqueue_req *req,
                          uint64_t *job_id, bool *duplicate, lq_events *ev);

/* Recovery of a finished job's key (from the stored results), so duplicates stay collapsed
 * across a restart: the key counts until finished_ms + idem_window_ms. Live and dead jobs
 * register their keys through lq_core_restore_job (rec.idem_key). */
lq_err lq_core_restore_idem(lq_core *core, uint64_t now_ms, lq_str queue, lq_str idem_key,
                            uint64_t job_id, uint64_t finished_ms);

/* Waits for job_id to reach a terminal state (a producer's wait(job, timeout)).
 *  - The core holds the job and it is DEAD: LQ_OK, *parked = false, *state = DEAD.
 *  - The core holds the job otherwise: parked (*parked = true); later exactly one
 *    JOB_WAIT_DONE for `waiter`: state DONE (acked), DEAD, EXPIRED, PURGED or CANCELLED,
 *    emitted right after the store event of that transition (so the caller can answer once
 *    that batch is durable), or state 0 when timeout_ms has passed. Several waits may watch
 *    one job. LQ_E_LIMIT past max_job_waits.
 *  - The core does not hold the job (finished and forgotten, or never existed): NOT_FOUND;
 *    the caller looks in the stored results.
 *  - A PENDING job can be waited on. If its batch fails (lq_core_commit_done with durable =
 *    false) its waits get JOB_WAIT_DONE with state CANCELLED: it was never stored, so for the
 *    producer it does not exist (answer as NOT_FOUND).
 *  - While parked, *state is the job's state at the time of the call (PENDING, READY, ...).
 * `waiter` is the caller's handle, unique among live job waits (its own namespace, separate
 * from dequeue waiters). */
lq_err lq_core_wait_job(lq_core *core, uint64_t now_ms, uint64_t job_id, uint64_t waiter,
                        uint32_t timeout_ms, bool *parked, uint8_t *state);
/* Drops a parked job wait without an event (its connection went away). */
void lq_core_wait_cancel(lq_core *core, uint64_t waiter);

typedef struct {
    uint32_t session;
    lq_str worker_id;          /* core-owned; empty for non-worker sessions */
    uint32_t heartbeat_ms;
    uint32_t leases_held;
    uint64_t last_seen_ms;
    bool stalled;
    bool suspect;              /* its worker id is quarantined */
    uint64_t suspect_until_ms; /* when the quarantine lifts by itself */
    uint32_t recent_losses;    /* losses of its worker id within the window */
} lq_session_info;

typedef void (*lq_session_info_fn)(void *ctx, const lq_session_info *s);

/* Calls fn once per open session, in session order. */
void lq_core_sessions(const lq_core *core, uint64_t now_ms, lq_session_info_fn fn, void *ctx);

/* Lifts the quarantine of a worker id and forgets its losses. NOT_FOUND if the id is unknown. */
lq_err lq_core_clear_suspect(lq_core *core, uint64_t now_ms, lq_str worker_id);

/* ---- lane settings: limits, shedding, pause ---------------------------------------------- */

typedef struct {
    uint32_t weight;
    uint64_t max_queued;       /* 0 = unlimited: an enqueue that would pass it gets QUEUE_FULL
                                * (queued = ready + delayed + pending jobs of the lane) */
    uint64_t max_queued_bytes; /* 0 = unlimited: the same for their payload bytes (a job larger
                                * than the limit is still taken when the lane is empty) */
    uint64_t max_wait_ms;      /* > 0: a job enqueued without a deadline gets now + max_wait_ms */
    bool sheddable;            /* the shell refuses these lanes first when storage fills up */
    bool paused;               /* nothing is dispatched from the lane; enqueues still accepted */
    uint64_t paused_until_ms;  /* with paused: the pause lifts by itself then (0 = until resumed) */
} lq_lane_settings;

/* NOT_FOUND if the queue or lane does not exist. An empty lane means "default". */
lq_err lq_core_lane_get(const lq_core *core, lq_str queue, lq_str lane, lq_lane_settings *out);
/* Applies every field (creating the queue and lane if missing, in a configured queue too:
 * this is configuration). Lifting a pause serves parked dequeues at the next tick. */
lq_err lq_core_lane_set(lq_core *core, uint64_t now_ms, lq_str queue, lq_str lane, const lq_lane_settings *s);

/* ---- admission: drain rate --------------------------------------------------------------- */

/* For a QUEUE_FULL answer: how long (ms) until the lane is likely to take jobs again, from its
 * drain rate (an exponentially weighted average of leases granted per second, half-life 1 s,
 * updated on every grant) and how far it is over its limits: the time to drain back to 90 % of
 * them, clamped to 10..30000 ms; 1000 when nothing drains the lane. 0 if the lane does not
 * exist or is under its limits. O(1) after the name lookups. */
uint32_t lq_core_lane_retry_after_ms(const lq_core *core, uint64_t now_ms, lq_str queue, lq_str lane);
/* The lane's current drain-rate estimate (leases per second); 0 if unknown. */
double lq_core_lane_drain_rate(const lq_core *core, uint64_t now_ms, lq_str queue, lq_str lane);

/* Debug builds and tests: walks every structure and asserts its invariants (O(n)). */
void lq_core_check(const lq_core *core);

/* ==== operations (issue 5): inspection, drain, purge, dead letters, cancel ==========
 * Admin calls. They are rare next to enqueue/dequeue, so scans over the job table are allowed
 * where noted, but every one is bounded per call so the caller's loop keeps answering others. */

typedef struct {
    uint64_t enqueued, leased, acked, expired, purged, dead_lettered, cancelled;
} lq_lane_totals;

typedef struct {
    lq_lane_stats stats;          /* queue, lane, weight and counts */
    lq_lane_settings settings;
    lq_lane_totals totals;        /* since the core was created */
    uint64_t oldest_ready_ms;     /* enqueued_ms of the oldest job at the head of one of its
                                   * tenants (exact when priorities are equal); 0: none ready */
    double enqueue_rate, ack_rate; /* per second, refreshed by lq_core_admin_tick */
} lq_lane_info;

typedef struct {
    bool draining;
    uint32_t lease_ms;            /* the queue's default lease (0: the core's) */
    uint32_t max_attempts;        /* the queue's default delivery limit (0: the core's) */
    bool retention_set;           /* false: finished jobs are kept for the broker's retention */
    uint32_t retention_ms;        /* with retention_set: how long this queue's results are kept */
} lq_queue_opts;

typedef void (*lq_lane_info_fn)(void *ctx, const lq_lane_info *info, const lq_queue_opts *q);

/* Calls fn once per lane of `queue` (len 0: every queue, in creation order); NOT_FOUND for a
 * named queue that does not exist. */
lq_err lq_core_inspect(const lq_core *core, lq_str queue, lq_lane_info_fn fn, void *ctx);

/* Refreshes the rates of lq_lane_info; call about once a second. O(lanes). */
void lq_core_admin_tick(lq_core *core, uint64_t now_ms);

/* NOT_FOUND for an unknown queue. */
lq_err lq_core_queue_opts_get(const lq_core *core, lq_str queue, lq_queue_opts *out);
/* Creates the queue if needed. A draining queue refuses enqueues with LQ_E_DRAINING (a matching
 * idempotency key still answers with its job); dispatch goes on. */
lq_err lq_core_queue_opts_set(lq_core *core, lq_str queue, const lq_queue_opts *opts);

/* Calls fn for each draining queue that holds no ready, delayed, pending or leased job and has
 * not been reported since it last held one (once per drain). O(lanes). */
typedef void (*lq_drained_fn)(void *ctx, lq_str queue);
void lq_core_drained(lq_core *core, lq_drained_fn fn, void *ctx);

/* Jobs of a queue still to finish: ready + delayed + pending + leased (dead ones excluded). */
lq_err lq_core_queue_remaining(const lq_core *core, lq_str queue, uint64_t *remaining);

typedef struct {
    lq_str queue;
    lq_str lane;            /* empty: every lane */
    uint64_t enqueued_before_ms; /* only jobs enqueued before this (0: no age limit) */
    bool dead;              /* purge the dead-letter set instead of the queued jobs */
    uint64_t seq_below;     /* set by lq_core_purge_begin: jobs that arrive later are spared */
    uint32_t cursor;        /* set by lq_core_purge_begin: the next job slot to look at */
} lq_purge;

/* Validates p (NOT_FOUND for an unknown queue or lane) and sets its cursor. */
lq_err lq_core_purge_begin(lq_core *core, lq_purge *p);
/* Purges up to max matching jobs (READY and DELAYED, or DEAD with p->dead; leased and pending
 * jobs are left alone), looking at no more than 16 * max job slots: each ends PURGED through
 * the usual end of a job (JOB_DELETE, then its waits, its idempotency key). *purged counts
 * them; returns true when the purge is complete. */
bool lq_core_purge_step(lq_core *core, uint64_t now_ms, lq_purge *p, uint32_t max, uint64_t *purged,
                        lq_events *ev);

/* Dead jobs of a queue with id > after_id, in id order, up to max ids into out; *total is the
 * number of dead jobs of the queue. O(job slots). */
lq_err lq_core_dead_list(const lq_core *core, lq_str queue, uint64_t after_id, uint64_t *out, uint32_t max,
                         uint32_t *n, uint64_t *total);

/* Dead job(s) back to READY at their old place in line (seq kept), attempts reset to 0:
 * JOB_UPDATE each. job_id 0: up to max dead jobs of the queue. NOT_FOUND: unknown queue, or
 * the job is not a dead job of that queue. */
lq_err lq_core_redrive(lq_core *core, uint64_t now_ms, lq_str queue, uint64_t job_id, uint32_t max,
                       uint64_t *redriven, lq_events *ev);

/* Ends a READY, DELAYED or DEAD job as CANCELLED (JOB_DELETE, waits answered). NOT_FOUND: the
 * core does not hold it; INVALID_ARGUMENT: it is LEASED (its worker decides) or PENDING. */
lq_err lq_core_cancel(lq_core *core, uint64_t now_ms, uint64_t job_id, lq_events *ev);

/* The job's attempts as the core counts them (stored records lag behind leases). */
lq_err lq_core_job_attempts(const lq_core *core, uint64_t job_id, uint32_t *attempts);

/* ==== beanstalk compatibility (issue 7; broker/core/bs.c) ================================
 * What beanstalkd's commands need beyond the native API. Jobs are named by id alone: the
 * beanstalk layer keeps the lease tokens of its own connections. */

typedef struct {
    uint8_t state;          /* READY, LEASED, DELAYED, DEAD or PENDING */
    int64_t priority;
    uint64_t seq;
    uint64_t enqueued_ms;
    uint64_t time_ms;       /* LEASED: lease expiry; DELAYED: not_before; else 0 */
    uint32_t attempts;      /* deliveries so far (beanstalk "reserves") */
    uint32_t session;       /* LEASED: the holding session id; else 0 */
    lq_str queue, lane;     /* core-owned */
} lq_bs_job;

/* A job the core holds: LQ_OK, or NOT_FOUND. */
lq_err lq_core_bs_job(const lq_core *core, uint64_t job_id, lq_bs_job *out);

/* The first job of `queue` in `state`: READY by (priority, seq) over all its lanes and tenants;
 * DELAYED by (not_before, seq); DEAD by bury order (jobs dead before a restart or by another
 * path first, by seq). NOT_FOUND if the queue does not exist or has none. DELAYED and DEAD
 * scan (O(delayed), O(jobs)). */
lq_err lq_core_bs_first(const lq_core *core, lq_str queue, uint8_t state, uint64_t *job_id);

/* beanstalk release: a lease goes back with a new priority, READY (front of its lane by seq)
 * or, with delay_ms > 0, DELAYED. No attempt limit applies (the job is never dead-lettered
 * here; at the delivery limit its count stays one below it). JOB_UPDATE + REQUEUED. The new priority lives in memory only (the store keeps the
 * priority of the enqueue). LEASE_LOST / NOT_FOUND as for nack. */
lq_err lq_core_bs_release(lq_core *core, uint64_t now_ms, uint64_t job_id, uint64_t token, int64_t priority,
                          uint64_t delay_ms, lq_events *ev);

/* beanstalk bury: a lease is dead-lettered with reason "buried" and a new priority (memory
 * only, as above). JOB_UPDATE (DEAD) + DEAD. */
lq_err lq_core_bs_bury(lq_core *core, uint64_t now_ms, uint64_t job_id, uint64_t token, int64_t priority,
                       lq_events *ev);

/* beanstalk kick / kick-job (redrive): a DEAD or DELAYED job becomes READY (JOB_UPDATE).
 * NOT_FOUND for any other state or an unknown job. */
lq_err lq_core_bs_kick(lq_core *core, uint64_t now_ms, uint64_t job_id, lq_events *ev);

/* beanstalk delete of a job that is not leased: READY, DELAYED or DEAD jobs finish as DONE
 * (JOB_DELETE). NOT_FOUND otherwise (leased jobs are deleted with lq_core_ack). */
lq_err lq_core_bs_delete(lq_core *core, uint64_t now_ms, uint64_t job_id, lq_events *ev);

/* beanstalk reserve-job: leases this READY, DELAYED or DEAD job to `session` for lease_ms
 * (capped at max_lease_ms). NOT_FOUND for other states. */
lq_err lq_core_bs_lease(lq_core *core, uint64_t now_ms, uint64_t job_id, uint32_t session, uint32_t lease_ms,
                        lq_lease *out, lq_events *ev);

/* Ready jobs of `queue` (empty: of every queue) whose priority is below `below` (beanstalk's
 * "urgent": below 1024). Scans the ready heaps: O(ready). */
uint64_t lq_core_bs_count_ready_below(const lq_core *core, lq_str queue, int64_t below);

#endif
