/* Internal face of the server, shared by server*.c only.
 *
 *   server.c        start-up (recovery), the run loop, before-sleep, shutdown, connections
 *   server_req.c    one decoded request -> core calls -> reply now or deferred
 *   server_batch.c  group commit: core events into the open batch, deferred replies, commit done
 *   server_reply.c  encoding responses into a connection's output (dequeue payloads included)
 *   server_wait.c   job waits (Wait): parked, deferred to a commit, answered from the store
 *   server_admin.c  Workers, ClearSuspect; the results sweep schedule
 *   server_ops.c    operations: inspect, pause, drain, purge (incremental), dead letters, peek,
 *                   cancel
 *   server_config.c ConfigGet, ConfigSet, persisted queue settings (the "config" database)
 *   server_auth.c   hello tokens, roles, the non-loopback guard
 *   server_http.c   /metrics, /healthz, /readyz on the HTTP listener; metric updates
 */
#ifndef LQ_SERVER_INT_H
#define LQ_SERVER_INT_H

#include <stdbool.h>
#include <stdint.h>

#include "clock.h"
#include "auth.h"
#include "config.h"
#include "core/core.h"
#include "core/heap.h" /* LQ_NONE */
#include "core/map.h"
#include "core/lq_assert.h"
#include "leaseq.pb-c.h"
#include "metrics.h"
#include "net/loop.h"
#include "proto/arena.h"
#include "proto/frame.h"
#include "store/committer.h"
#include "store/store.h"
#include "srv_slots.h"

#define SRV_ENQUEUE_ITEMS_MAX 4096     /* items in one enqueue frame */
#define SRV_DEFERRED_PAUSE 1024        /* requests of one connection waiting on a commit: stop reading */
#define SRV_DEFERRED_RESUME 512        /* ... and read again below this */
#define SRV_DEFERRED_BYTES_PAUSE (64u << 20)   /* payload bytes of one connection awaiting a commit */
#define SRV_PENDING_BYTES_PAUSE (512u << 20)   /* ... of all connections: readers with some pause */
#define SRV_PARKED_PER_CONN_MAX 1024   /* parked dequeues of one connection */
#define SRV_JOBWAITS_PER_CONN_MAX 1024 /* parked job waits of one connection */
#define SRV_SWEEP_MAX 1000             /* expired results deleted by one commit */
#define SRV_OUT_MAX_BYTES (64u << 20)  /* unsent output of one connection; over it: disconnect */
#define SRV_OUT_PAUSE_BYTES (8u << 20) /* unsent output above which its input is not read */
#define SRV_HOUSEKEEPING_MS 1000       /* the loop wakes at least this often */
#define SRV_BATCH_BIG_BYTES (1u << 20) /* a round that copied more keeps its batch's memory ... */
#define SRV_BATCH_IDLE_MS 1000u        /* ... until no round did for this long */
#define SRV_SHUTDOWN_FLUSH_MS 5000     /* shutdown: how long connections get to take their replies */

/* Per-connection state, kept in the loop's user area of the connection. */
typedef struct {
    lq_conn_id id;
    uint32_t session;
    bool hello_done;
    bool paused;          /* reading paused: too many replies waiting on commits */
    uint32_t deferred;    /* requests whose reply waits on a commit */
    uint64_t deferred_bytes; /* payload bytes of those requests */
    srv_slot_list waiters;  /* its parked dequeues (s->waiters) */
    srv_slot_list jobwaits; /* its parked job waits (s->jobwaits) */
    uint8_t role;         /* lq_role from hello (ADMIN without a tokens file) */
    uint8_t proto;        /* SRV_PROTO_*: from its listener's tag */
    bool http_done;       /* HTTP: answered, closing */
    void *bs;             /* beanstalk connections: their protocol state (owner: beanstalk/) */
} srv_conn;

enum { SRV_PROTO_NATIVE = 0, SRV_PROTO_HTTP = 1, SRV_PROTO_BEANSTALK = 2 }; /* listener tags */

enum { DEF_ENQUEUE = 1, DEF_ACK, DEF_NACK, DEF_WAIT, DEF_OPS, DEF_BS };

/* A reply that is sent once its batch has committed. */
typedef struct {
    lq_conn_id conn;
    uint64_t request_id;
    uint8_t kind;
    uint8_t nack_state;
    uint8_t wait_state;   /* DEF_WAIT: the terminal state reached, 0 = look the job up */
    uint64_t job_id;      /* DEF_WAIT */
    uint32_t first, n;    /* DEF_ENQUEUE: its items in srv_batch.items */
    uint32_t bytes;       /* payload bytes the batch holds for it (memory accounting) */
} srv_deferred;

enum { DUP_NONE = 0, DUP_SAME_BATCH, DUP_PREV_BATCH };

typedef struct {
    uint64_t job_id;      /* set when err == LQ_OK: a PENDING job awaiting commit_done */
    uint8_t err;          /* this item's error, decided before the commit */
    bool duplicate;       /* idempotency key matched job_id (no job was created) */
    uint8_t dup_of;       /* DUP_*: the original was PENDING in this or an in-flight batch, so
                           * the duplicate shares its fate */
    uint32_t retry_after_ms; /* QUEUE_FULL / STORAGE_FULL: the hint for the producer */
} srv_item;

/* One of three batches: the open one fills while up to two are with the committer (one
 * committing, one taken from an offer or finished and not yet reaped). */
typedef struct {
    lq_batch *b;            /* owner: server */
    uint64_t first_id;      /* jobs with ids >= this were created into it (set when it opens) */
    srv_deferred *def;      /* owner: server; grows, kept across resets */
    uint32_t n_def, cap_def;
    srv_item *items;        /* owner: server; grows, kept across resets */
    uint32_t n_items, cap_items;
    bool failed;            /* an update/delete could not be added (out of memory) */
    uint64_t big_ms;        /* last reset of a round that needed more than SRV_BATCH_BIG_BYTES */
    size_t held;            /* its memory as of its last reset or trim (the gauge) */
} srv_batch;

/* A parked dequeue (an element of s->waiters; its slot handle is the core's waiter). */
typedef struct {
    srv_slot slot;
    lq_lease *leases;       /* owner: server; granted so far, kept across reuse */
    uint32_t n_leases, cap_leases;
} srv_waiter;

/* For JOB_PUT: the bytes that go with the job the core just created. */
typedef struct {
    uint64_t job_id;
    const uint8_t *headers;
    uint32_t headers_len;
    const uint8_t *payload;
    uint32_t payload_len;
    bool failed;            /* set if the put could not be added to the batch */
} srv_put_ctx;

/* A parked job wait (an element of s->jobwaits; its slot handle is the core's waiter). */
typedef struct {
    srv_slot slot;
    uint64_t job_id;
} srv_jobwait;

/* Results not yet swept, by expiry (coarse buckets, oldest first): when a sweep is worth a
 * commit. Retention is one constant, so new results always expire last. */
typedef struct {
    uint64_t until_ms;
    uint64_t n;
} srv_sweep_bucket;

typedef struct lq_server lq_server;

struct lq_server {
    const lq_config *cfg;
    lq_clock clock;
    lq_core *core;              /* owner: server */
    lq_store *store;            /* owner: server */
    lq_committer *committer;    /* owner: server */
    lq_loop *loop;              /* owner: server */
    int signal_fd;              /* not owned */
    lq_events ev;               /* owner: server; scratch for one core call */
    srv_batch batches[3];
    uint32_t open;              /* index of the batch that fills */
    uint32_t inflight[2];       /* indexes of the batches with the committer, oldest first */
    uint32_t n_inflight;
    bool offered;               /* the open batch is lent to the committer (only across a wait) */
    lq_arena arena;             /* owner: server; decoded request of the moment */
    lq_arena out_arena;         /* owner: server; reply messages being built */
    uint8_t *scratch;           /* owner: server; encoded HeaderList of one item */
    size_t scratch_cap;
    lq_lease lease_buf[LQ_DEQUEUE_MAX];
    srv_slots waiters;          /* srv_waiter: parked dequeues */
    srv_slots jobwaits;         /* srv_jobwait: parked job waits */
    lq_conn_id *sess_conn;      /* owner: server; session id -> its connection (Workers) */
    uint32_t cap_sess_conn;
    /* Ack being applied: its result goes with the JOB_DELETE of ack_job. */
    uint64_t ack_job;
    const uint8_t *ack_result;
    uint32_t ack_result_len;
    /* The last two completed batches, newest first: whether their jobs were stored, for
     * duplicates of jobs that were PENDING in them (srv_item.dup_of == DUP_PREV_BATCH). */
    struct {
        uint64_t first_id;
        bool durable;
        lq_err put_err;
    } done_hist[2];
    srv_sweep_bucket *sweep_q;  /* owner: server; ring */
    uint32_t sweep_head, sweep_n, sweep_cap;
    uint64_t last_sweep_ms;
    lq_lane_stats *stats_buf;   /* owner: server; lanes collected for a stats reply */
    uint32_t n_stats, cap_stats;
    bool read_open;             /* the store's read snapshot is open this pass */
    bool stopping;
    int stop_phase;
    uint64_t stop_deadline_ms;
    uint64_t next_tick_ms;
    /* aggregated for logging (never one line per job) */
    uint64_t requeued_expired, dead_lettered, last_agg_log_ms, last_trim_ms;
    uint64_t commits, commit_failures, commit_fail_logged_ms;
    uint64_t early_revoked; /* --dispatch early: jobs dispatched whose put then failed */
    uint64_t early_reads;   /* --dispatch early: job reads (leases, peeks) served from a batch not yet committed */
    uint64_t pending_bytes;     /* payload bytes of every deferred request, all connections */
    /* operations (issue 5) */
    lq_auth *auth;              /* owner: server; NULL = no tokens file: every connection is admin */
    lq_metrics metrics;
    struct srv_ops *ops;        /* owner: server (server_ops.c) */
    lq_map lease_at;            /* owner: server; job id -> lease grant (ms since start_ms) */
    uint64_t start_ms;
    bool storage_high;          /* above the high storage watermark (set by the watermark code):
                                 * /readyz answers 503 */
    bool storage_high_seen;     /* last result of srv_storage_high (its crossings are logged) */
    uint64_t denied_logged_ms, denied_unlogged;
    struct bs_server *bs;       /* owner: server; the beanstalk listener, NULL if off */
    /* storage watermarks (server_limits.c): the last sample of the map's fill */
    uint64_t fill_used, fill_map, fill_low, fill_high;
    int fill_level;             /* 0 below the low watermark, 1 above it, 2 above the high one */
    uint8_t reject[256];        /* error frame for connections over --max-connections */
    size_t reject_len;
};

uint64_t srv_now(const lq_server *s);

/* server_req.c */
/* Handles one whole frame of a connection. false: the connection is being closed. */
bool srv_handle_frame(lq_server *s, srv_conn *sc, const lq_frame *f);

/* server_batch.c */
lq_err srv_batches_init(lq_server *s);
/* Batches that have not carried large payloads for SRV_BATCH_IDLE_MS give back what their
 * resets keep (up to LQ_BATCH_KEEP_BYTES each); at most once a second. Loop thread only. */
void srv_batches_trim(lq_server *s, uint64_t now_ms);
size_t srv_batches_held(const lq_server *s);
void srv_batches_free(lq_server *s);
srv_batch *srv_open_batch(lq_server *s);
/* Applies and clears s->ev: store events into the open batch, leases to waiters, logs. */
void srv_apply_events(lq_server *s, srv_put_ctx *put);
/* Records a reply that waits on the open batch; bytes: payload the batch copied for it.
 * Pauses reading the connection while too much of its (or everyone's) work awaits a commit. */
srv_deferred *srv_defer(lq_server *s, srv_conn *sc, uint64_t request_id, uint8_t kind, uint32_t bytes);
lq_err srv_item_push(lq_server *s, uint64_t job_id, lq_err err);
void srv_maybe_submit(lq_server *s);
void srv_on_commit_ready(void *ctx, const void *data, int res);
/* lq_loop_wait_fn: lends the open batch to the committer across the loop's wait. */
void srv_wait_hook(void *ctx, bool before);
bool srv_batch_empty(const srv_batch *b);
/* Waiters */
lq_err srv_waiter_alloc(lq_server *s, uint64_t *handle);
srv_waiter *srv_waiter_get(lq_server *s, uint64_t handle);
void srv_waiter_park(lq_server *s, srv_conn *sc, uint64_t handle, uint64_t request_id);
void srv_waiter_free(lq_server *s, uint64_t handle);
void srv_waiter_add_lease(lq_server *s, uint64_t handle, const lq_lease *l);
void srv_waiters_drop_conn(lq_server *s, srv_conn *sc);
void srv_waiters_answer_all(lq_server *s);
/* Records a reply that waits on batch b (the open one, or one with the committer). */
srv_deferred *srv_defer_to(lq_server *s, srv_conn *sc, srv_batch *b, uint64_t request_id, uint8_t kind,
                           uint32_t bytes);

/* server_wait.c */
bool srv_req_wait(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Wait *w);
/* A JOB_WAIT_DONE event; stored_now: its transition's store event is in this event list. */
void srv_jobwait_done(lq_server *s, uint64_t handle, uint64_t job_id, uint8_t state, bool stored_now);
/* A DEF_WAIT whose batch completed (ok: it committed). */
void srv_wait_complete(lq_server *s, const srv_deferred *d, bool ok, lq_err err);
void srv_jobwaits_drop_conn(lq_server *s, srv_conn *sc);
void srv_jobwaits_answer_all(lq_server *s); /* shutdown */
void srv_jobwaits_free(lq_server *s);

/* server_admin.c */
bool srv_req_workers(lq_server *s, srv_conn *sc, uint64_t rid);
bool srv_req_clear_suspect(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__ClearSuspect *c);
lq_err srv_sess_conn_set(lq_server *s, uint32_t session, lq_conn_id conn);
/* Worker id of an open session into buf ("" if none), for logs. */
const char *srv_session_worker(lq_server *s, uint32_t session, char *buf, size_t cap);
/* A result expiring at expires_ms was (or is being) stored. */
void srv_results_note(lq_server *s, uint64_t expires_ms);
/* Adds a sweep of expired results to batch b if one is due; idle: only when nothing else would
 * be committed (then at most once per SRV_HOUSEKEEPING_MS unless many are due). */
bool srv_results_sweep(lq_server *s, lq_batch *b, uint64_t now, bool idle);
void srv_admin_free(lq_server *s);
lq_err srv_results_restore(lq_server *s); /* start-up: idempotency keys of stored results */

/* server_ops.c */
enum { OP_PAUSE = 1, OP_DRAIN, OP_PURGE, OP_REDRIVE, OP_CANCEL, OP_CONFIG_SET }; /* DEF_OPS replies */
lq_err srv_ops_init(lq_server *s);
void srv_ops_free(lq_server *s);
bool srv_is_ops_request(int body_case);
bool srv_req_ops(lq_server *s, srv_conn *sc, const Leaseq__Request *req);
/* Before sleep: a purge step, drain-done checks, rates. */
void srv_ops_tick(lq_server *s, uint64_t now);
bool srv_ops_busy(const lq_server *s); /* work left that should not wait for the next event */
void srv_ops_complete(lq_server *s, const srv_deferred *d, bool ok, lq_err err);
/* Answers after the commit of the open batch (DEF_OPS with op and value); true. */
bool srv_ops_defer(lq_server *s, srv_conn *sc, uint64_t rid, uint8_t op, uint64_t value);
/* Every lane of `queue` (empty: all) with its queue's options, valid until the next call
 * (Inspect, ConfigGet, /metrics). */
lq_err srv_ops_collect(lq_server *s, lq_str queue, const lq_lane_info **lanes, const lq_queue_opts **qopts,
                       uint32_t *n);
/* The queue's default lease and delivery limit (0: the broker's). */
uint32_t srv_queue_lease_ms(lq_server *s, const char *queue);
uint32_t srv_queue_max_attempts(lq_server *s, const char *queue);

/* server_config.c */
lq_err srv_ops_load_config(lq_server *s); /* start-up, after recovery: persisted settings */
/* The lane's (queue's) current settings into the open batch, for the "config" database. */
lq_err srv_persist_lane(lq_server *s, lq_str queue, lq_str lane);
lq_err srv_persist_queue(lq_server *s, lq_str queue);
bool srv_req_config_get(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__ConfigGet *g);
bool srv_req_config_set(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__ConfigSet *c);

/* server_auth.c */
lq_err srv_auth_init(lq_server *s); /* loads --auth, refuses a non-loopback --listen without it */
/* Hello's token -> sc->role; false: refused (error sent, connection closing). */
bool srv_auth_hello(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Hello *h);
/* The connection's role may make this request; otherwise PERMISSION_DENIED is sent and logged. */
bool srv_auth_allows(lq_server *s, srv_conn *sc, uint64_t rid, int body_case);

/* server_http.c */
lq_err srv_http_listen(lq_server *s);
size_t srv_http_data(lq_server *s, srv_conn *sc, const uint8_t *data, size_t len);
bool srv_storage_high(lq_server *s);
void srv_metric_lease(lq_server *s, const lq_lease *l);          /* a lease was granted */
void srv_metric_lease_end(lq_server *s, uint64_t job_id, bool observe); /* ... ended */
/* server_limits.c */
/* Samples the map's fill level (after every commit, and at start); logs watermark crossings. */
void srv_fill_sample(lq_server *s);
/* LQ_OK, or STORAGE_FULL for an enqueue to queue/lane at the current fill level. O(1). */
lq_err srv_storage_admit(lq_server *s, lq_str queue, lq_str lane);
/* Applies the --lane-config flags (after --lanes). INVALID_ARGUMENT if the core refuses one. */
lq_err srv_apply_lane_flags(lq_server *s);
/* Encodes the error frame sent to a connection refused at --max-connections; 0 if it does not fit. */
size_t srv_reject_frame(uint8_t *buf, size_t cap);
/* Handler: a connection ran past its hello or frame timeout. */
void srv_on_timeout(void *ctx, lq_conn_id id, void *user, const char *what);

/* server_reply.c */
/* Packs r (+ payload) as one frame into the connection's output. false if it was dropped. */
bool srv_send(lq_server *s, lq_conn_id conn, const Leaseq__Response *r, const void *payload, size_t payload_len);
void srv_send_error(lq_server *s, lq_conn_id conn, uint64_t request_id, lq_err code, const char *msg);
/* Error frame, then the connection is closed once it is flushed. */
void srv_fail_conn(lq_server *s, srv_conn *sc, uint64_t request_id, lq_err code, const char *msg);
/* Leases that cannot be delivered are given back; their events stay in s->ev for the caller
 * to apply. */
void srv_reply_dequeue(lq_server *s, lq_conn_id conn, uint64_t request_id, const lq_lease *leases, uint32_t n);
void srv_reply_enqueue(lq_server *s, lq_conn_id conn, uint64_t request_id, const srv_item *items, uint32_t n);
const char *srv_err_text(lq_err e);
char *srv_arena_str(lq_arena *a, lq_str str);
/* Read snapshot for dequeue replies; renewed every pass so committed jobs are visible. */
lq_err srv_read_begin(lq_server *s);
/* A job's record and payload: from the store, or with --dispatch early from the batch that
 * still holds its put. Valid until srv_read_end or that batch's reap. */
lq_err srv_get_job(lq_server *s, uint64_t id, lq_job_view *v);
void srv_read_end(lq_server *s);

#endif
