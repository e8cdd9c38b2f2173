/* libleaseq: the C client of the leaseq broker.
 *
 * Every call is blocking, takes a timeout in milliseconds (> 0; a call never waits longer) and
 * returns a leaseq_err. A handle is one TCP connection and is not thread-safe: use one handle
 * per thread. When the connection breaks, the next call reconnects (exponential backoff with
 * jitter, bounded by that call's timeout); a call whose request may have been sent before the
 * break returns LEASEQ_E_CONNECTION and is not retried by the library, because an enqueue may
 * have been stored (use an idempotency key to retry safely).
 *
 * Ownership: the library never keeps pointers to caller memory after a call returns. Buffers
 * it returns are owned by the caller and freed with the matching leaseq_*_free function.
 */
#ifndef LEASEQ_H
#define LEASEQ_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* 0..13 are the broker's wire error codes; 100+ happen in the client. */
typedef enum {
    LEASEQ_OK = 0,
    LEASEQ_E_INVALID_ARGUMENT = 1,
    LEASEQ_E_NOT_FOUND = 2,
    LEASEQ_E_LEASE_LOST = 3,
    LEASEQ_E_QUEUE_FULL = 4,
    LEASEQ_E_STORAGE_FULL = 5,
    LEASEQ_E_DRAINING = 6,
    LEASEQ_E_UNAUTHENTICATED = 7,
    LEASEQ_E_PERMISSION_DENIED = 8,
    LEASEQ_E_FRAME_TOO_LARGE = 9,
    LEASEQ_E_PROTOCOL_ERROR = 10,
    LEASEQ_E_DEADLINE_EXCEEDED = 11, /* the broker's wait ran out, or this call's timeout did */
    LEASEQ_E_INTERNAL = 12,
    LEASEQ_E_UNAVAILABLE = 13,
    LEASEQ_E_CONNECTION = 100, /* could not connect, or the connection broke mid-call */
    LEASEQ_E_NOMEM = 101,
} leaseq_err;

/* Static name such as "LEASE_LOST". */
const char *leaseq_strerror(leaseq_err e);

typedef struct leaseq leaseq;

typedef struct {
    const char *client_name;   /* shown in broker logs; NULL = "libleaseq" */
    const char *token;         /* auth token; NULL = none */
    const char *worker_id;     /* non-NULL: this connection is a worker session */
    uint32_t heartbeat_ms;     /* worker sessions: heartbeat interval promised to the broker */
    bool keep_leases_on_close; /* leases outlive the connection (expire by lease time) instead
                                * of being requeued when it closes; for CLI-style tools */
    uint32_t connect_timeout_ms; /* 0 = 5000 */
    uint32_t max_payload_bytes;  /* largest payload accepted from the broker; 0 = 16 MiB */
} leaseq_opts;

/* addr: "HOST:PORT" (IPv4, IPv6 in brackets, or a name) or "unix:/path". opts may be NULL.
 * Connects and says hello within connect_timeout_ms. *out is owned by the caller:
 * leaseq_close. On failure *out is NULL and the error is returned. */
leaseq_err leaseq_connect(const char *addr, const leaseq_opts *opts, leaseq **out);
/* Like leaseq_connect; on failure also copies the reason (the text leaseq_last_error would
 * give) into errbuf when errbuf is not NULL. (Added; additive.) */
leaseq_err leaseq_connect_ex(const char *addr, const leaseq_opts *opts, leaseq **out, char *errbuf,
                             size_t errbuf_len);
void leaseq_close(leaseq *c);

/* What the broker said in its hello on the current (or last) connection. All zero before the
 * first hello. server_name is valid until the next call on the handle. (Added to the first
 * contract; additive.) */
typedef struct {
    const char *server_name;
    uint32_t protocol_version;
    uint32_t role;                 /* schema Role: 0 none, 1 producer, 2 worker, 3 admin */
    uint64_t session_id;
    uint32_t heartbeat_timeout_ms; /* a worker silent longer than this loses its leases */
    uint32_t max_payload_bytes;    /* larger job payloads / results are refused locally */
    uint32_t max_frame_bytes;      /* 0 = not announced */
} leaseq_server_info;

void leaseq_get_server_info(const leaseq *c, leaseq_server_info *out);

/* Text of the last error on this handle (the broker's message when it sent one). Valid until
 * the next call on the handle. */
const char *leaseq_last_error(const leaseq *c);

/* The broker's retry hint from the last QUEUE_FULL / STORAGE_FULL, else 0. */
uint32_t leaseq_retry_after_ms(const leaseq *c);

typedef struct {
    const char *key;
    const char *value;
} leaseq_header;

typedef struct {
    const char *queue;          /* required */
    const char *lane;           /* NULL = "default" */
    const char *tenant;         /* NULL = shared tenant */
    const char *idempotency_key;/* NULL = none */
    int32_t priority;           /* lower first; 0 default */
    uint64_t delay_ms;
    uint64_t deadline_ms;       /* relative; 0 = none */
    uint32_t max_attempts;      /* 0 = queue default */
    const leaseq_header *headers;
    size_t n_headers;
    const void *payload;
    size_t payload_len;
} leaseq_job_spec;

/* Stores one job; *job_id is its id once the broker says it is durable. */
leaseq_err leaseq_enqueue(leaseq *c, const leaseq_job_spec *job, uint64_t *job_id, int timeout_ms);

typedef struct {
    leaseq_err err;  /* per job */
    uint64_t job_id;
    bool duplicate;  /* idempotency key matched an existing job */
} leaseq_enqueue_result;

/* Stores n jobs with requests pipelined on the connection (several frames in flight, each
 * holding up to 256 jobs). results[] has room for n and is filled in order. Returns LEASEQ_OK
 * when every request got an answer (check each result), else the transport error. */
/* (Added detail.) A job refused before sending gets INVALID_ARGUMENT (no queue, NULL payload
 * with a length) or FRAME_TOO_LARGE (above the broker's max_payload_bytes); the others still
 * go. A frame's jobs together stay within the broker's max_payload_bytes as well. When the
 * call fails, every job that got no answer carries the call's error: it may or may not be
 * stored (retry with idempotency keys). leaseq_last_error holds the first job's failure. */
leaseq_err leaseq_enqueue_batch(leaseq *c, const leaseq_job_spec *jobs, size_t n,
                                leaseq_enqueue_result *results, int timeout_ms);

typedef struct {
    uint64_t job_id;
    uint64_t lease_token;
    char *queue;             /* NUL-terminated, owned by the lease */
    char *lane;
    char *tenant;
    char *last_error;        /* "" when none */
    uint32_t attempt;
    int32_t priority;
    uint64_t lease_expires_ms;
    uint64_t enqueued_at_ms;
    leaseq_header *headers;  /* owned by the lease */
    size_t n_headers;
    uint8_t *payload;        /* owned by the lease */
    size_t payload_len;
} leaseq_lease;

/* Leases up to max_jobs from the listed queues. With nothing ready the broker holds the request
 * up to wait_ms; timeout_ms must exceed wait_ms (the library adds no slack of its own).
 * On LEASEQ_OK *leases is an array of *n_leases (0 when the wait ran out) that the caller
 * frees with leaseq_leases_free. lease_ms 0 = the queue's default lease time. */
leaseq_err leaseq_dequeue(leaseq *c, const char *const *queues, size_t n_queues, uint32_t max_jobs,
                          uint32_t wait_ms, uint32_t lease_ms, leaseq_lease **leases, size_t *n_leases,
                          int timeout_ms);
/* (Added detail.) Replies are checked before anything is returned: more jobs than max_jobs, a
 * job payload above opts.max_payload_bytes, or payload lengths that do not add up to the frame
 * give PROTOCOL_ERROR and drop the connection. The leases are one allocation. */
void leaseq_leases_free(leaseq_lease *leases, size_t n);

/* Completes a lease, optionally with result bytes. LEASE_LOST if the token is stale. */
leaseq_err leaseq_ack(leaseq *c, uint64_t job_id, uint64_t token, const void *result, size_t result_len,
                      int timeout_ms);

typedef struct {
    const char *error;  /* why; kept as the job's last error */
    bool dead;          /* dead-letter, no retry */
    bool delay_set;     /* retry after delay_ms instead of the queue's backoff */
    uint64_t delay_ms;
} leaseq_nack_opts;

/* Gives a lease back. *dead_out (may be NULL) tells whether the job was dead-lettered. */
leaseq_err leaseq_nack(leaseq *c, uint64_t job_id, uint64_t token, const leaseq_nack_opts *opts,
                       bool *dead_out, int timeout_ms);

/* Moves the lease expiry to now + lease_ms; *expires_ms (may be NULL) gets the new expiry. */
leaseq_err leaseq_extend(leaseq *c, uint64_t job_id, uint64_t token, uint32_t lease_ms,
                         uint64_t *expires_ms, int timeout_ms);

/* Renews every lease of this worker session. */
leaseq_err leaseq_heartbeat(leaseq *c, uint32_t *leases_held, int timeout_ms);

/* Round trip with no effect. */
leaseq_err leaseq_ping(leaseq *c, int timeout_ms);

typedef struct {
    char *name;
    uint32_t weight;
    uint64_t ready, leased, delayed, dead, pending;
    uint64_t expired;  /* jobs whose deadline passed before dispatch, since the broker started */
} leaseq_lane_stats;

typedef struct {
    char *name;
    leaseq_lane_stats *lanes;
    size_t n_lanes;
} leaseq_queue_stats;

typedef struct {
    leaseq_queue_stats *queues;
    size_t n_queues;
} leaseq_stats;

/* queue NULL or "" = every queue. *out owned by the caller: leaseq_stats_free. */
leaseq_err leaseq_get_stats(leaseq *c, const char *queue, leaseq_stats **out, int timeout_ms);
void leaseq_stats_free(leaseq_stats *s);

/* ---- Waiting for a job's outcome (added; additive) ---- */

typedef enum {
    LEASEQ_STATE_READY = 1,
    LEASEQ_STATE_LEASED = 2,
    LEASEQ_STATE_DELAYED = 3,
    LEASEQ_STATE_DONE = 4,      /* acked; result holds the result bytes */
    LEASEQ_STATE_DEAD = 5,      /* dead-lettered; error holds the last error */
    LEASEQ_STATE_EXPIRED = 6,   /* its deadline passed before it was dispatched */
    LEASEQ_STATE_PURGED = 7,
    LEASEQ_STATE_CANCELLED = 8,
} leaseq_job_state;

/* Static lower-case name such as "done"; "unknown" for anything else. */
const char *leaseq_state_name(leaseq_job_state s);

typedef struct {
    uint64_t job_id;
    leaseq_job_state state;
    char *error;          /* NUL-terminated, "" when none; never NULL after LEASEQ_OK */
    uint8_t *result;      /* DONE: result_len bytes (NULL when 0) */
    size_t result_len;
} leaseq_outcome;

/* Frees what leaseq_wait put in *o (one allocation) and zeroes *o. Safe on a zeroed outcome. */
void leaseq_outcome_free(leaseq_outcome *o);

/* Waits until job_id reaches a terminal state, the broker holding the request up to wait_ms.
 * LEASEQ_OK: *out holds the job's state (DONE, DEAD, EXPIRED, PURGED or CANCELLED), error and
 * result, owned by the caller (leaseq_outcome_free). Other results leave *out zeroed:
 * DEADLINE_EXCEEDED when wait_ms ran out (the job is untouched: wait again), NOT_FOUND for an
 * unknown job or one whose result retention is over. timeout_ms must exceed wait_ms (the
 * library adds no slack of its own). A result above opts.max_payload_bytes is PROTOCOL_ERROR. */
leaseq_err leaseq_wait(leaseq *c, uint64_t job_id, uint32_t wait_ms, leaseq_outcome *out, int timeout_ms);

/* leaseq_enqueue, then leaseq_wait on the same connection, all within timeout_ms (which must
 * exceed wait_ms). *job_id (may be NULL) is set as soon as the job is stored, so a caller that
 * gets DEADLINE_EXCEEDED or CONNECTION from the wait can wait again by id; it stays 0 when
 * the enqueue failed. When the enqueue leaves less than wait_ms of timeout_ms, the broker's
 * wait is shortened to 3/4 of what is left, so its answer still arrives in time. */
leaseq_err leaseq_enqueue_and_wait(leaseq *c, const leaseq_job_spec *job, uint32_t wait_ms, uint64_t *job_id,
                                   leaseq_outcome *out, int timeout_ms);

/* ---- Worker loop (added; additive) ----
 *
 * A worker leases up to `prefetch` jobs at a time from its queues, calls the handler for each
 * in turn on the thread that called leaseq_worker_run, and acks or nacks each with what the
 * handler said. Its own thread sends a Heartbeat every heartbeat_ms on the same connection, so
 * a slow but healthy handler keeps its leases, while a frozen process (SIGSTOP, a hung
 * driver that stops the whole process) falls silent and the broker requeues its jobs.
 * Connection loss: the library reconnects; leases held at the break are lost (the broker
 * requeues them), so the rest of a prefetched batch is skipped and counted as lease_lost. */

typedef struct leaseq_worker leaseq_worker;

typedef struct {
    const char *addr;             /* required; see leaseq_connect */
    const char *token;            /* NULL = none */
    const char *client_name;      /* NULL = "leaseq-worker" */
    const char *worker_id;        /* required: names the broker's worker session */
    const char *const *queues;    /* required, n_queues of them (1..64) */
    size_t n_queues;
    uint32_t prefetch;            /* jobs leased at once; 0 = 1, at most 256 */
    uint32_t heartbeat_ms;        /* 0 = 1000 */
    uint32_t lease_ms;            /* 0 = the queue's default */
    uint32_t poll_wait_ms;        /* long-poll wait of each dequeue; 0 = 1000. Also bounds how
                                   * long a stop waits for an idle worker to notice it */
    int call_timeout_ms;          /* every other call's limit, and added to poll_wait_ms; 0 = 5000 */
    uint32_t max_payload_bytes;   /* 0 = 16 MiB; see leaseq_opts */
} leaseq_worker_opts;

/* What the handler decides; the worker zeroes it before each call, so the default is an ack
 * without result.
 * Lifetime: the worker is done with `result` and `error` once it has sent the ack or nack.
 * It then calls release(release_arg) when release is set (exactly once per handler call,
 * whatever the outcome, stop included); with release NULL the memory must stay valid until
 * the handler is called again or leaseq_worker_run returns. */
typedef struct {
    const void *result;           /* ack with these bytes */
    size_t result_len;
    bool nack;                    /* give the job back instead of acking */
    bool dead;                    /* nack to the dead-letter set, no retry (implies nack) */
    const char *error;            /* nack: kept as the job's last error */
    bool delay_set;               /* nack: retry after delay_ms instead of the queue's backoff */
    uint64_t delay_ms;
    void (*release)(void *release_arg);
    void *release_arg;
} leaseq_handler_result;

/* job and everything it points to are valid only during the call. The handler may call
 * leaseq_worker_stop; it must not call other leaseq_worker_* functions on its worker. */
typedef void (*leaseq_handler_fn)(void *ctx, const leaseq_lease *job, leaseq_handler_result *res);

/* Checks and copies opts (no pointer into them is kept); does not connect yet. *out is owned
 * by the caller: leaseq_worker_destroy. INVALID_ARGUMENT for a missing addr, worker_id or
 * queue, or prefetch above 256. */
leaseq_err leaseq_worker_create(const leaseq_worker_opts *opts, leaseq_handler_fn fn, void *ctx,
                                leaseq_worker **out);

/* Runs the loop until leaseq_worker_stop. Connects first, retrying with backoff while the
 * broker is not there. Graceful stop: the job in the handler is finished and acked, the
 * prefetched jobs not yet started are given back (nack, no delay, error "worker stopping") so
 * they go to the front of their lane, heartbeats stop, the connection closes, and the call
 * returns LEASEQ_OK. It returns an error without a stop only for refusals that retrying does
 * not fix (UNAUTHENTICATED, PERMISSION_DENIED, INVALID_ARGUMENT, NOT_FOUND). One run at a
 * time per worker; it may be run again after it returned. */
leaseq_err leaseq_worker_run(leaseq_worker *w);

/* Asks leaseq_worker_run to stop. Only sets a flag and writes a byte to a pipe: safe from a
 * signal handler and from any thread, before or during a run (a stop before run makes the
 * run return at once). The run notices it between jobs, or within poll_wait_ms when idle. */
void leaseq_worker_stop(leaseq_worker *w);

/* Frees the worker; not while leaseq_worker_run is running. NULL is fine. */
void leaseq_worker_destroy(leaseq_worker *w);

typedef struct {
    uint64_t leased;              /* jobs received from dequeues */
    uint64_t acked;               /* acks the broker accepted */
    uint64_t nacked;              /* nacks the broker accepted (dead ones included) */
    uint64_t dead;                /* of those, dead-lettered */
    uint64_t released;            /* prefetched jobs given back at stop */
    uint64_t lease_lost;          /* LEASE_LOST on ack/nack, or skipped after a reconnect */
    uint64_t failed;              /* ack/nack calls that failed otherwise (job outcome unknown) */
    uint64_t reconnects;          /* broker sessions after the first */
    uint64_t heartbeats_sent;
    uint64_t heartbeats_skipped;  /* connection down or busy at a beat */
} leaseq_worker_stats;

/* A snapshot of the counters; any thread, any time (each counter is read atomically). */
void leaseq_worker_get_stats(const leaseq_worker *w, leaseq_worker_stats *out);

/* The reason the last run ended with an error, or the last failure seen; "" when none. Valid
 * until the next leaseq_worker_* call on w from the thread that runs it. */
const char *leaseq_worker_last_error(const leaseq_worker *w);

/* ---- Worker sessions, as an admin sees them (added; additive) ---- */

typedef struct {
    uint64_t session_id;
    char *worker_id;           /* NUL-terminated; "" for a connection that is no worker */
    char *address;             /* peer address of its connection, "?" if unknown */
    uint32_t heartbeat_ms;     /* 0 = no heartbeats */
    uint32_t leases_held;
    uint64_t last_seen_age_ms; /* since its last heartbeat or request */
    bool stalled;              /* missed its heartbeats: its leases were requeued */
    bool suspect;              /* quarantined: gets no new leases */
    uint64_t suspect_for_ms;   /* until the quarantine lifts by itself */
    uint32_t recent_losses;    /* lease losses of its worker id within the quarantine window */
} leaseq_worker_info;

/* Every open session of the broker. On LEASEQ_OK *out is an array of *n (one allocation, its
 * strings included) owned by the caller: leaseq_workers_free. */
leaseq_err leaseq_workers(leaseq *c, leaseq_worker_info **out, size_t *n, int timeout_ms);
void leaseq_workers_free(leaseq_worker_info *w);

/* Lifts the quarantine of a worker id; NOT_FOUND when the broker does not know the id. */
leaseq_err leaseq_clear_suspect(leaseq *c, const char *worker_id, int timeout_ms);

/* ---- Operations (added for issue 5; additive). Every call needs the admin role. ----
 * Results are owned by the caller and freed with the matching *_free function. */

typedef struct {
    char *name;
    uint32_t weight;
    uint64_t ready, leased, delayed, dead, pending;
    bool paused, sheddable;
    uint64_t paused_for_ms;          /* timed pause: until it lifts (0: until resumed) */
    uint64_t max_queued, max_queued_bytes, max_wait_ms; /* 0 = no limit */
    uint64_t oldest_ready_age_ms;    /* oldest job at the head of the lane; 0: none ready */
    uint64_t enqueued_total, leased_total, acked_total, expired_total, purged_total,
             dead_lettered_total, cancelled_total; /* since the broker started */
    double enqueue_rate, ack_rate;   /* jobs per second over the last ~10 s */
} leaseq_lane_info;

typedef struct {
    char *name;
    bool draining;
    uint32_t lease_ms, max_attempts; /* queue defaults; 0 = the broker's */
    leaseq_lane_info *lanes;
    size_t n_lanes;
} leaseq_queue_info;

typedef struct {
    leaseq_queue_info *queues;
    size_t n_queues;
} leaseq_inspect_result;

/* Every lane of queue (NULL or "": every queue). NOT_FOUND for an unknown queue. */
leaseq_err leaseq_inspect(leaseq *c, const char *queue, leaseq_inspect_result **out, int timeout_ms);
void leaseq_inspect_free(leaseq_inspect_result *r);

/* Pauses (resume = false) or resumes one lane, or every lane of the queue (lane NULL or "").
 * for_ms > 0: the pause lifts by itself after that long. Resuming a whole queue also ends its
 * drain. Persisted. *lanes (may be NULL): lanes changed. */
leaseq_err leaseq_pause(leaseq *c, const char *queue, const char *lane, bool resume, uint64_t for_ms,
                        uint32_t *lanes, int timeout_ms);

/* Starts (stop = false) or ends a drain: new enqueues get DRAINING, dispatch goes on.
 * *remaining (may be NULL): ready + delayed + pending + leased jobs at the time. */
leaseq_err leaseq_drain(leaseq *c, const char *queue, bool stop, uint64_t *remaining, int timeout_ms);

/* Purges the queue's ready and delayed jobs (or its dead-letter set with dead), of one lane or
 * all (lane NULL or ""), only those enqueued at least older_than_ms ago (0: all). Returns when
 * done; waiters of the purged jobs learn PURGED. */
leaseq_err leaseq_purge(leaseq *c, const char *queue, const char *lane, uint64_t older_than_ms, bool dead,
                        uint64_t *purged, int timeout_ms);

typedef struct {
    uint64_t job_id;
    char *lane, *tenant, *last_error;
    uint32_t attempts, payload_len;
    uint64_t enqueued_at_ms;
} leaseq_dead_job;

/* Dead jobs of the queue in id order after after_id, up to limit (0: 100, at most 1000).
 * *total: dead jobs of the queue. *out: an array of *n, free with leaseq_dead_jobs_free. */
leaseq_err leaseq_dead_list(leaseq *c, const char *queue, uint64_t after_id, uint32_t limit,
                            leaseq_dead_job **out, size_t *n, uint64_t *total, int timeout_ms);
void leaseq_dead_jobs_free(leaseq_dead_job *jobs, size_t n);

/* Dead job job_id (or, with 0, up to limit dead jobs; 0: 10000) back to ready, attempts reset. */
leaseq_err leaseq_redrive(leaseq *c, const char *queue, uint64_t job_id, uint32_t limit, uint64_t *redriven,
                          int timeout_ms);

/* Ends a job that is not leased as CANCELLED. INVALID_ARGUMENT for a leased job. */
leaseq_err leaseq_cancel(leaseq *c, uint64_t job_id, int timeout_ms);

typedef struct {
    uint64_t job_id;
    leaseq_job_state state;
    bool finished;                   /* from the results kept after the job ended */
    char *queue, *lane, *tenant, *last_error, *idempotency_key;
    int32_t priority;
    uint32_t attempts, max_attempts, payload_len;
    uint64_t enqueued_at_ms, deadline_ms, not_before_ms;
    leaseq_header *headers;
    size_t n_headers;
    uint8_t *payload;                /* with_payload: payload_len bytes (else NULL) */
} leaseq_job_info;

leaseq_err leaseq_peek(leaseq *c, uint64_t job_id, bool with_payload, leaseq_job_info **out, int timeout_ms);
void leaseq_job_info_free(leaseq_job_info *j);

typedef struct {
    char *lane;                      /* NULL for the queue's own settings */
    leaseq_header *items;            /* key, value */
    size_t n_items;
} leaseq_config_group;

/* groups[0]: the queue's settings; then one per lane. Free with leaseq_config_free. */
leaseq_err leaseq_config_get(leaseq *c, const char *queue, leaseq_config_group **groups, size_t *n,
                             int timeout_ms);
void leaseq_config_free(leaseq_config_group *groups, size_t n);
/* Applies key=value items to a lane (lane non-empty) or to the queue; persisted, no restart. */
leaseq_err leaseq_config_set(leaseq *c, const char *queue, const char *lane, const leaseq_header *items,
                             size_t n_items, int timeout_ms);

#ifdef __cplusplus
}
#endif

#endif
