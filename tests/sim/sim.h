/* leaseq seeded simulator: the shared face of its modules.
 *
 * The simulator is a "shell" around the sans-IO core (broker/core/core.h) and the real LMDB
 * store (broker/store/store.h): it drives random operations, maps core events onto store
 * batches exactly as the broker does, crashes and recovers, and checks the result against an
 * expected-state model. Every decision comes from one seeded PRNG and time is simulated, so a
 * seed replays a run exactly.
 *
 *   sim.c     main, arguments, failure reporting, the run loop, lane-share phase, final drain
 *   ops.c     the random operations
 *   events.c  core events -> store batch + model transitions (the checks on each event)
 *   model.c   the expected state: jobs, sessions, waiters, stale tokens; invariant checks
 *   health.c  worker quarantine: losses, suspects, the core's session view
 *   waits.c   producers' job waits and idempotency keys
 *   shell.c   store plumbing: batches, commit, crash and recovery, payload read-back
 *
 * A failure prints "sim: FAIL seed=N op=N phase=... now=...: what" and the replay command.
 */
#ifndef LQ_SIM_H
#define LQ_SIM_H

#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/core.h"
#include "store/store.h"
#include "core/lq_assert.h"

/* ---- PRNG: xoshiro256**, seeded through splitmix64 ------------------------------------- */

typedef struct {
    uint64_t s[4];
} sim_rng;

static inline uint64_t sim_mix64(uint64_t x)
{
    x += 0x9e3779b97f4a7c15ull;
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ull;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebull;
    return x ^ (x >> 31);
}

static inline uint64_t sim_rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

static inline void sim_rng_seed(sim_rng *r, uint64_t seed)
{
    for (int i = 0; i < 4; i++) {
        seed = sim_mix64(seed);
        r->s[i] = seed;
    }
}

static inline uint64_t sim_rng_next(sim_rng *r)
{
    uint64_t *s = r->s;
    uint64_t out = sim_rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = sim_rotl(s[3], 45);
    return out;
}

/* Uniform in [0, n); n = 0 gives 0. The slight modulo bias does not matter here. */
static inline uint64_t sim_rng_below(sim_rng *r, uint64_t n) { return n ? sim_rng_next(r) % n : 0; }
/* Uniform in [lo, hi]. */
static inline uint64_t sim_rng_range(sim_rng *r, uint64_t lo, uint64_t hi)
{
    return lo + sim_rng_below(r, hi - lo + 1);
}
/* True with probability permille / 1000. */
static inline bool sim_rng_chance(sim_rng *r, uint32_t permille) { return sim_rng_below(r, 1000) < permille; }

/* ---- fixed world: queues, lanes, tenants ------------------------------------------------ */

enum { SIM_Q_IMG, SIM_Q_THUMB, SIM_Q_VIDEO, SIM_Q_IDLE, SIM_QUEUES };
#define SIM_LANES 3    /* lanes per queue at most */
#define SIM_TENANTS 4
#define SIM_LANE_API 0 /* img: api:9, app:1 (configured) */
#define SIM_LANE_APP 1
#define SIM_LANE_MAIN 0 /* video: main:1, bg:0 (configured) */
#define SIM_LANE_BG 1

extern const char *const sim_queue_names[SIM_QUEUES];
extern const char *const sim_lane_names[SIM_QUEUES][SIM_LANES]; /* NULL = no such lane */
extern const char *const sim_tenant_names[SIM_TENANTS];

/* Index of a queue/lane/tenant name as the core reports it; -1 if unknown. */
int sim_queue_index(lq_str q);
int sim_lane_index(int q, lq_str lane);
int sim_tenant_index(lq_str t);

/* ---- model ------------------------------------------------------------------------------ */

typedef enum {
    MJ_VOID = 0,     /* lost in a crash before it was durable; the id may be issued again */
    MJ_PENDING,      /* enqueued, commit_done not yet called */
    MJ_WAITING,      /* READY when nb <= now, else DELAYED */
    MJ_LEASED,
    MJ_DEAD,
    MJ_GONE_PENDING, /* the core emitted its JOB_DELETE; not yet durable */
    MJ_GONE,         /* its JOB_DELETE committed */
} sim_job_state;

enum { SIM_K_PENDING, SIM_K_WAITING, SIM_K_LEASED, SIM_K_DEAD, SIM_KINDS };
enum { CS_READY, CS_DELAYED, CS_LEASED, CS_DEAD, CS_PENDING }; /* sim.cs[q][l][] */

typedef struct {
    uint64_t id, seq, enq_ms;
    uint64_t nb;          /* not-before (absolute) while WAITING */
    uint64_t deadline;    /* absolute, 0 = none */
    int64_t priority;
    uint64_t token;       /* current lease token while LEASED */
    uint64_t last_token;  /* the token of the latest grant */
    uint64_t expires;     /* known expiry (exact without heartbeats, a lower bound with them) */
    uint32_t deliveries;  /* attempts so far, as the core must count them */
    uint32_t max_attempts;
    uint32_t payload_len;
    uint32_t session;     /* core session id of the lease */
    uint32_t lease_slot;  /* index in model.leases while LEASED */
    uint32_t wait_slot;   /* index in its bucket of model.waiting while WAITING */
    uint8_t q, l, t;
    uint8_t st;           /* sim_job_state */
    uint8_t gone_final;   /* final_state of the emitted JOB_DELETE */
    uint8_t outcome;      /* committed terminal outcome: 0, LQ_STATE_DONE or LQ_STATE_EXPIRED */
    bool acked_put;       /* its JOB_PUT committed: the producer was (or could be) answered */
    bool durable;         /* the store holds it now (shadow of committed batches) */
    bool over_limit_ok;   /* restored with attempts >= max_attempts: one more delivery allowed */
    bool unsynced;        /* early dispatch: leasable already, its put's batch not yet settled */
    bool put_refused;     /* early dispatch: its put's batch failed after the core acted on it;
                           * its later store operations are no-ops */
    /* shadow of the stored record */
    uint8_t d_state;
    uint32_t d_attempts;
    uint64_t d_nb;
    uint32_t d_err_len;
    uint64_t d_err_hash;
    /* the latest JOB_UPDATE seen during call number upd_call */
    uint64_t upd_call;
    uint8_t upd_state;
    uint64_t upd_nb;
    uint64_t ev_call;     /* the call whose events last moved it (REQUEUED, DEAD, UPDATE) */
    uint64_t store_call;  /* the call that emitted its latest store event (UPDATE, DELETE) */
    uint64_t finished_ms; /* when the core deleted it (its idempotency key counts from here) */
    int8_t idem_k;        /* its idempotency key (index), -1 if none from the pool */
} sim_job;

typedef struct {
    bool live;
    int worker;         /* worker id index (gpu-NN), -1 = no worker id */
    uint32_t id;        /* core session id */
    uint32_t hb_ms;     /* 0 = no heartbeats */
    bool silent;        /* a frozen worker: makes no calls any more */
    bool stalled;       /* the core said SESSION_STALLED */
    uint64_t hb_lo;     /* last heartbeat or open: the earliest the core may stall it from */
    uint64_t act_hi;    /* last activity of any kind: the latest it may stall it from */
    uint64_t next_hb;
    uint32_t n_leases;
    uint32_t n_waiters;
} sim_session;

typedef struct {
    bool live;
    uint64_t handle;
    int sess;           /* slot in model.sessions */
    uint32_t qmask;
    uint32_t max_jobs, got;
    uint64_t park_ms, end_ms;
    uint32_t lease_ms;
} sim_waiter;

#define SIM_SESSIONS_MAX 10
#define SIM_WORKERS 8         /* worker ids gpu-00..gpu-07: sessions share them, losses add up */
#define SIM_LOSSES_MAX 16     /* recent losses kept per worker id (>= quarantine_losses) */
#define SIM_JOBWAITS_MAX 48
#define SIM_IDEM_KEYS 24      /* idempotency keys order-0..23, per queue */

typedef struct {
    uint64_t loss[SIM_LOSSES_MAX]; /* loss times, oldest first */
    uint32_t n_loss;
    bool loss_in_call, suspect_before, suspect_event; /* during one call's events */
} sim_worker;

typedef struct {
    bool live;
    uint64_t handle, job_id, end_ms;
} sim_jobwait;

typedef struct {
    bool used;
    uint64_t job_id;
} sim_idem;
#define SIM_WAITERS_MAX 24
#define SIM_STALE_MAX 512

typedef struct {
    uint64_t job_id, token;
} sim_stale;

typedef struct {
    uint32_t *v;          /* owner: model; job indices */
    uint32_t n, cap;
} sim_bucket;

typedef struct {
    sim_job *jobs;        /* owner: model; never shrinks, VOID slots are reused by their id */
    uint32_t n_jobs, cap_jobs;
    uint64_t *map_keys;   /* owner: model; open addressing id -> index (key 0 = empty, ids + 1) */
    uint32_t *map_vals;   /* owner: model */
    uint32_t map_cap;
    uint32_t *leases;     /* owner: model; job indices of LEASED jobs */
    uint32_t n_leases, cap_leases;
    uint64_t cnt[SIM_QUEUES][SIM_LANES][SIM_KINDS];
    uint64_t cnt_dl[SIM_QUEUES][SIM_LANES]; /* WAITING jobs with a deadline: may be expired */
    sim_bucket waiting[SIM_QUEUES][SIM_LANES][SIM_TENANTS]; /* WAITING jobs by lane and tenant */
    uint32_t n_durable;
    sim_session sessions[SIM_SESSIONS_MAX];
    sim_waiter waiters[SIM_WAITERS_MAX];
    sim_stale stale[SIM_STALE_MAX];
    uint32_t n_stale, stale_next;
    sim_worker workers[SIM_WORKERS];
    sim_jobwait jobwaits[SIM_JOBWAITS_MAX];
    sim_idem idem[SIM_QUEUES][SIM_IDEM_KEYS];
} sim_model;

/* ---- store batches ---------------------------------------------------------------------- */

typedef enum { SOP_PUT = 1, SOP_UPDATE, SOP_DELETE } sim_op_type;

typedef struct {
    uint8_t type;
    uint8_t state;       /* PUT: initial state; UPDATE: new state; DELETE: final state */
    uint32_t attempts;
    uint32_t err_len;
    uint64_t id, nb, err_hash;
} sim_op;

typedef struct {
    lq_batch *b;      /* owner: sim_batch */
    sim_op *ops;      /* owner: sim_batch; what b holds, to apply to the shadow at commit */
    uint32_t n_ops, cap_ops;
} sim_batch;

/* ---- the simulator ---------------------------------------------------------------------- */

typedef enum {
    CALL_ENQUEUE = 1, CALL_COMMIT_DONE, CALL_DEQUEUE, CALL_ACK, CALL_NACK, CALL_EXTEND,
    CALL_CLOSE, CALL_TICK, CALL_STALE, CALL_OTHER,
} sim_call_kind;

typedef struct {
    sim_call_kind kind;
    uint64_t job_id;    /* ACK/NACK/COMMIT_DONE: the job */
    uint32_t session;   /* CLOSE: the session */
    bool nack_dead;
    bool refused;       /* COMMIT_DONE: durable = false */
} sim_call;

typedef struct {
    uint64_t ops[32];                   /* by op kind (ops.c) */
    uint64_t enqueued, enqueue_refused, puts_committed, commit_done_calls;
    uint64_t grants, waiter_grants, acks, acks_committed, nacks, extends, stale_checks;
    uint64_t requeued[5], dead, expired, stalls, crashes, commits, verified_payloads;
    uint64_t share_api, share_app;      /* continuous, grants while both img lanes had ready */
    uint64_t phase_api, phase_app;      /* dedicated phase */
    uint64_t bg_grants, max_live_jobs;
    uint64_t puts_dropped, storage_full, watermark_refused, early_revoked;
    uint64_t losses, suspects, suspect_refusals, clears, job_waits, job_wait_answers, duplicates;
} sim_counters;

typedef struct sim {
    uint64_t seed, ops_total, op_index;
    bool verbose;
    const char *phase;
    sim_rng rng;
    uint64_t now;
    uint64_t next_tick;       /* what the last lq_core_tick returned */
    uint64_t call_serial;
    lq_core_config cfg;
    lq_core *core;            /* owner: sim */
    lq_events ev;             /* owner: sim */
    char dir[64];
    lq_store *store;          /* owner: sim */
    sim_batch batch[2];
    sim_batch *open;          /* the batch the loop fills */
    sim_batch *inflight;      /* submitted, not yet committed; NULL if none */
    sim_model m;
    sim_counters c;
    uint8_t *buf;             /* owner: sim; payload scratch, SIM_PAYLOAD_MAX */
    uint64_t waiter_handle_next;
    uint64_t jobwait_handle_next;
    uint64_t max_seq;         /* the highest sequence number ever acknowledged or issued */
    /* the core's lane stats after the latest op: [ready, delayed, leased, dead, pending] */
    uint64_t cs[SIM_QUEUES][SIM_LANES][5];
    uint32_t cw[SIM_QUEUES][SIM_LANES];
    bool cs_seen[SIM_QUEUES][SIM_LANES];
    uint64_t idem_next;
    int regime;
    bool small_map;           /* this seed runs with a small LMDB map: puts get refused when full */
    uint32_t storage_full_run; /* commits in a row refused with STORAGE_FULL */
    bool no_watermark;        /* --no-watermark: let enqueues fill the map to the last page */
    int dispatch;             /* --dispatch: 0 = by seed, 1 = durable, 2 = early */
} sim;

#define SIM_PAYLOAD_MAX (256u * 1024u)
#define SIM_HEADERS_MAX 64u
#define SIM_BATCH_OPS_MAX 4096u
#define SIM_SMALL_MAP_BYTES (24ull << 20)
#define SIM_WATERMARK_PERMILLE 800 /* the shell refuses enqueues above this fill of the map */

/* sim.c */
_Noreturn void sim_fail(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
#define SIM_CHECK(s, cond, ...) ((cond) ? (void)0 : sim_fail((s), __VA_ARGS__))
void sim_log(sim *s, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
void sim_tick(sim *s);
void sim_after_op(sim *s);

/* events.c */
void sim_events_apply(sim *s, const sim_call *call);
void sim_grant(sim *s, const lq_lease *lease, uint32_t session, uint32_t lease_ms, int waiter);
void sim_unlease(sim *s, sim_job *j);

/* model.c */
void model_init(sim_model *m);
void model_free(sim_model *m);
sim_job *model_job(sim *s, uint64_t id);              /* NULL if never seen */
sim_job *model_job_new(sim *s, uint64_t id);          /* fails if the id is live or was acknowledged */
void model_set_state(sim *s, sim_job *j, sim_job_state st);
void model_recount(sim *s); /* rebuilds the counts and buckets from the job states */
/* Fails unless j comes first by (priority, seq) among the ready jobs of its lane and tenant. */
void model_check_order(sim *s, const sim_job *j);
void model_stale_push(sim *s, uint64_t job_id, uint64_t token);
int model_session_slot(sim *s, uint32_t id);          /* -1 if not live */
int model_waiter_slot(sim *s, uint64_t handle);       /* -1 if not live */
void model_session_touch(sim *s, uint32_t session);   /* activity: the latest a stall may start from */
uint32_t model_live_jobs(const sim *s); /* not dead-lettered */
uint8_t model_core_state(const sim *s, const sim_job *j); /* what lq_core_job_state must say; 0 = gone */
void model_check_stats(sim *s, bool split);
void model_check_liveness(sim *s);
void model_check_full(sim *s);
/* Ready jobs per lane of queue q that cannot be expired ones: the core's ready count less the
 * model's waiting jobs with a deadline (a lower bound on what dispatch can grant). */
void model_lane_ready(sim *s, int q, uint64_t ready[SIM_LANES]);

/* shell.c */
void shell_open(sim *s);
void shell_close(sim *s);
void shell_remove_dir(const char *dir); /* the folder and the files in it */
void shell_batch_put(sim *s, const lq_job_rec *rec);
void shell_batch_update(sim *s, uint64_t id, uint8_t state, uint32_t attempts, uint64_t nb, lq_str err);
void shell_batch_delete(sim *s, uint64_t id, uint8_t final_state);
void shell_submit(sim *s);
void shell_complete(sim *s);
void shell_commit_all(sim *s);
void shell_crash(sim *s);
uint32_t shell_diverged(const sim *s);
bool shell_storage_high(sim *s); /* fill at or above the watermark: refuse enqueues */
void shell_configure(sim *s);
void shell_verify_store(sim *s, uint32_t max_jobs);
void shell_verify_job(sim *s, const sim_job *j); /* inside read_begin/read_end */
uint32_t sim_headers_len(uint64_t seed, uint64_t id);
void sim_fill_bytes(uint64_t seed, uint64_t id, uint64_t salt, uint8_t *buf, uint32_t len);
uint64_t sim_hash(const void *p, uint32_t len);

/* health.c */
const char *sim_worker_name(int w, char *buf, size_t cap);
bool health_worker_suspect(const sim *s, int w);
bool health_session_suspect(const sim *s, uint32_t session);
uint64_t health_lift_time(const sim *s, int w);
void health_loss(sim *s, uint32_t session);
void health_suspect_event(sim *s, const lq_ev *e);
void health_end_call(sim *s);
void health_reset(sim *s);
void health_op_clear(sim *s);
void health_check_sessions(sim *s);

/* waits.c */
void waits_op_wait(sim *s);
void waits_op_cancel(sim *s);
void waits_event(sim *s, const sim_call *call, const lq_ev *e);
void waits_check_liveness(sim *s);
uint64_t waits_bound(const sim *s);
const char *idem_key_name(int k, char *buf, size_t cap);
bool idem_expect_dup(sim *s, int q, int k, uint64_t *job_id);
void idem_register(sim *s, int q, int k, uint64_t job_id);
void idem_after_crash(sim *s); /* also drops every job wait */

/* ops.c */
void ops_run_one(sim *s);
/* Opens a session (worker: index of its worker id, -1 = none); the model slot, -1 if full. */
int ops_session_open(sim *s, uint32_t hb_ms, int worker);
void ops_session_close(sim *s, int slot);
void ops_ack(sim *s, sim_job *j, bool twice);
int ops_pick_live_session(sim *s, bool want_hb, bool allow_silent);
void ops_heartbeats_due(sim *s);
void ops_advance(sim *s, uint64_t target);
/* Enqueues one job (delay/deadline relative, 0 = none; keys: maybe with an idempotency key)
 * and checks its JOB_PUT, or that it collapsed onto an earlier job; returns the job id. */
uint64_t ops_enqueue_job(sim *s, int q, int l, int t, int64_t prio, uint64_t delay, uint64_t deadline,
                         uint32_t max_att, uint32_t plen, bool keys);
const char *ops_name(int op);
int ops_count(void);

#endif
