/* The simulator's random operations: what producers, workers, connections, the clock, the
 * committer and the power switch do to the broker. Each one calls the core as the broker's
 * shell would, hands the events to events.c and checks the direct results. */
#include <stdio.h>
#include <string.h>

#include "sim.h"

enum {
    OP_ENQUEUE, OP_ENQUEUE_BAD, OP_DEQUEUE, OP_ACK, OP_ACK_TWICE, OP_NACK, OP_EXTEND, OP_STALE, OP_BOGUS,
    OP_HEARTBEAT, OP_SESS_OPEN, OP_SESS_CLOSE, OP_SESS_SILENT, OP_SESS_WAKE, OP_WAITER_CANCEL, OP_ADVANCE,
    OP_SUBMIT, OP_COMPLETE, OP_COMMIT, OP_RECONFIGURE, OP_WAIT_JOB, OP_WAIT_CANCEL, OP_CLEAR_SUSPECT, OP_CRASH,
    OP_COUNT
};

static const char *const op_names[OP_COUNT] = {
    "enqueue", "enqueue_bad", "dequeue", "ack", "ack_twice", "nack", "extend", "stale", "bogus",
    "heartbeat", "sess_open", "sess_close", "sess_silent", "sess_wake", "waiter_cancel", "advance",
    "submit", "complete", "commit", "reconfigure", "wait_job", "wait_cancel", "clear_suspect", "crash",
};

_Static_assert(OP_COUNT <= sizeof(((sim_counters *)0)->ops) / sizeof(uint64_t), "sim_counters.ops too small");

const char *ops_name(int op) { return op >= 0 && op < OP_COUNT ? op_names[op] : "?"; }
int ops_count(void) { return OP_COUNT; }

/* Weights per regime: balanced, producers ahead (queues fill, lanes contend), workers ahead. */
static const uint32_t weights[3][OP_COUNT] = {
    /* enq bad deq ack ack2 nack ext stale bog hb open close sil wake wcan adv sub comp commit reconf
     * wait wcancel clear crash */
    {22, 1, 18, 16, 1, 5, 3, 4, 1, 2, 2, 1, 1, 1, 1, 10, 4, 4, 6, 1, 3, 1, 1, 0},
    {40, 1, 8, 8, 1, 3, 2, 3, 1, 2, 2, 1, 1, 1, 1, 8, 4, 4, 6, 1, 3, 1, 1, 0},
    {6, 1, 25, 25, 1, 5, 3, 4, 1, 2, 2, 1, 1, 1, 1, 12, 4, 4, 6, 1, 3, 1, 1, 0},
};

#define SIM_LIVE_JOBS_CAP 3000
#define SIM_CRASH_PER_MILLION 400 /* about 40 crashes in 100,000 ops */

/* ---- sessions --------------------------------------------------------------------------- */

int ops_session_open(sim *s, uint32_t hb_ms, int worker)
{
    int k = -1;
    for (int i = 0; i < SIM_SESSIONS_MAX && k < 0; i++)
        if (!s->m.sessions[i].live) k = i;
    if (k < 0) return -1;
    char name[16];
    lq_session_opts o = {.worker_id = worker >= 0 ? lq_str_c(sim_worker_name(worker, name, sizeof name)) : LQ_STR_NULL,
                         .heartbeat_ms = hb_ms};
    uint32_t id = 0;
    lq_err e = lq_core_session_open(s->core, s->now, &o, &id);
    SIM_CHECK(s, e == LQ_OK, "lq_core_session_open: %s", lq_err_name(e));
    SIM_CHECK(s, model_session_slot(s, id) < 0, "session_open returned id %u, which is open", id);
    s->m.sessions[k] = (sim_session){.live = true, .worker = worker, .id = id, .hb_ms = hb_ms, .hb_lo = s->now,
                                     .act_hi = s->now, .next_hb = s->now + hb_ms};
    sim_log(s, "session %u open (heartbeat %u ms, worker %d)", id, hb_ms, worker);
    return k;
}

/* A random session of a random worker id (or none), heartbeating or not. */
static int open_random_session(sim *s)
{
    sim_rng *r = &s->rng;
    uint32_t hb = sim_rng_chance(r, 500) ? 0 : (uint32_t)sim_rng_range(r, 300, 3000);
    int worker = sim_rng_chance(r, 150) ? -1 : (int)sim_rng_below(r, SIM_WORKERS);
    return ops_session_open(s, hb, worker);
}

/* A random open session, -1 if none fits. */
int ops_pick_live_session(sim *s, bool want_hb, bool allow_silent)
{
    int cand[SIM_SESSIONS_MAX], n = 0;
    for (int i = 0; i < SIM_SESSIONS_MAX; i++) {
        const sim_session *ss = &s->m.sessions[i];
        if (!ss->live || (want_hb && ss->hb_ms == 0) || (!allow_silent && ss->silent)) continue;
        cand[n++] = i;
    }
    return n ? cand[sim_rng_below(&s->rng, n)] : -1;
}

static void heartbeat(sim *s, sim_session *ss)
{
    uint32_t held = 0;
    lq_err e = lq_core_heartbeat(s->core, s->now, ss->id, &held);
    SIM_CHECK(s, e == LQ_OK, "heartbeat of session %u: %s", ss->id, lq_err_name(e));
    SIM_CHECK(s, held == ss->n_leases, "heartbeat of session %u: core says %u leases held, model %u", ss->id, held,
              ss->n_leases);
    ss->hb_lo = s->now;
    if (ss->act_hi < s->now) ss->act_hi = s->now;
    ss->next_hb = s->now + ss->hb_ms;
    ss->stalled = false;
}

/* Healthy workers heartbeat on time; silent ones do not. */
void ops_heartbeats_due(sim *s)
{
    for (int i = 0; i < SIM_SESSIONS_MAX; i++) {
        sim_session *ss = &s->m.sessions[i];
        if (ss->live && ss->hb_ms && !ss->silent && ss->next_hb <= s->now) heartbeat(s, ss);
    }
}

/* Moves the clock to target in steps, stopping at every time the core asked to be ticked and
 * every heartbeat a healthy worker sends. */
void ops_advance(sim *s, uint64_t target)
{
    for (uint32_t guard = 0;; guard++) {
        SIM_CHECK(s, guard < 1000000, "advance: time does not move (next tick %llu)", (unsigned long long)s->next_tick);
        uint64_t t = target;
        if (s->next_tick < t) t = s->next_tick;
        for (int i = 0; i < SIM_SESSIONS_MAX; i++) {
            const sim_session *ss = &s->m.sessions[i];
            if (ss->live && ss->hb_ms && !ss->silent && ss->next_hb < t) t = ss->next_hb;
        }
        if (t > s->now) s->now = t;
        ops_heartbeats_due(s);
        sim_tick(s);
        model_check_stats(s, false);
        model_check_liveness(s);
        if (s->now >= target) break;
    }
}

/* ---- producers -------------------------------------------------------------------------- */

uint64_t ops_enqueue_job(sim *s, int q, int l, int t, int64_t prio, uint64_t delay, uint64_t deadline,
                         uint32_t max_att, uint32_t plen, bool keys)
{
    /* Keys: mostly none, some unique, some from a small pool per queue (duplicates). */
    char key[48];
    int pool_k = -1;
    bool idem = false;
    if (keys) {
        uint64_t x = sim_rng_below(&s->rng, 100);
        if (x < 5) {
            snprintf(key, sizeof key, "k%llu-%llu", (unsigned long long)s->seed, (unsigned long long)++s->idem_next);
            idem = true;
        } else if (x < 15) {
            pool_k = (int)sim_rng_below(&s->rng, SIM_IDEM_KEYS);
            idem_key_name(pool_k, key, sizeof key);
            idem = true;
        }
    }
    /* thumb's first lane is asked for as "" (the default lane) half the time */
    const char *lane = (q == SIM_Q_THUMB && l == 0 && sim_rng_chance(&s->rng, 500)) ? "" : sim_lane_names[q][l];
    lq_enqueue_req req = {.queue = lq_str_c(sim_queue_names[q]), .lane = lq_str_c(lane),
                          .tenant = lq_str_c(sim_tenant_names[t]), .idem_key = idem ? lq_str_c(key) : LQ_STR_NULL,
                          .priority = prio, .delay_ms = delay, .deadline_ms = deadline, .max_attempts = max_att,
                          .payload_len = plen};
    uint64_t id = 0, first = 0;
    bool dup_want = pool_k >= 0 && idem_expect_dup(s, q, pool_k, &first), dup = false;
    lq_err e = lq_core_enqueue_ex(s->core, s->now, &req, &id, &dup, &s->ev);
    SIM_CHECK(s, e == LQ_OK, "enqueue to %s/%s: %s", sim_queue_names[q], lane, lq_err_name(e));
    if (dup_want || dup) {
        SIM_CHECK(s, dup == dup_want && id == first && s->ev.n == 0,
                  "enqueue to %s with key %s: duplicate=%d job %llu (%zu events), expected duplicate=%d of job %llu",
                  sim_queue_names[q], key, dup, (unsigned long long)id, s->ev.n, dup_want, (unsigned long long)first);
        s->c.duplicates++;
        sim_log(s, "enqueue %s key %s -> duplicate of job %llu", sim_queue_names[q], key, (unsigned long long)id);
        return id;
    }
    SIM_CHECK(s, s->ev.n == 1 && s->ev.v[0].type == LQ_EV_JOB_PUT && s->ev.v[0].job_id == id,
              "enqueue of job %llu emitted %zu events (first type %d), expected one JOB_PUT", (unsigned long long)id,
              s->ev.n, s->ev.n ? (int)s->ev.v[0].type : 0);
    const lq_job_rec *r = &s->ev.v[0].u.put;
    unsigned long long uid = (unsigned long long)id;
    SIM_CHECK(s, r->id == id && sim_queue_index(r->queue) == q && sim_lane_index(q, r->lane) == l &&
                     sim_tenant_index(r->tenant) == t,
              "JOB_PUT %llu: id/queue/lane/tenant differ from the request", uid);
    SIM_CHECK(s, r->priority == prio && r->enqueued_ms == s->now && r->attempts == 0 && r->payload_len == plen,
              "JOB_PUT %llu: priority/enqueued/attempts/payload_len differ", uid);
    SIM_CHECK(s, r->max_attempts == (max_att ? max_att : s->cfg.default_max_attempts),
              "JOB_PUT %llu: max_attempts %u for requested %u", uid, r->max_attempts, max_att);
    SIM_CHECK(s, delay ? r->not_before_ms == s->now + delay : r->not_before_ms <= s->now,
              "JOB_PUT %llu: not_before %llu for delay %llu at %llu", uid, (unsigned long long)r->not_before_ms,
              (unsigned long long)delay, (unsigned long long)s->now);
    SIM_CHECK(s, r->deadline_ms == (deadline ? s->now + deadline : 0), "JOB_PUT %llu: deadline %llu for %llu", uid,
              (unsigned long long)r->deadline_ms, (unsigned long long)deadline);
    SIM_CHECK(s, r->state == (delay ? LQ_STATE_DELAYED : LQ_STATE_READY), "JOB_PUT %llu: state %u", uid, r->state);
    SIM_CHECK(s, idem ? lq_str_eq(r->idem_key, req.idem_key) : r->idem_key.len == 0, "JOB_PUT %llu: idem_key", uid);
    SIM_CHECK(s, r->seq > s->max_seq, "JOB_PUT %llu: seq %llu, not above %llu issued before", uid,
              (unsigned long long)r->seq, (unsigned long long)s->max_seq);
    s->max_seq = r->seq;

    sim_job *j = model_job_new(s, id);
    j->q = (uint8_t)q;
    j->l = (uint8_t)l;
    j->t = (uint8_t)t;
    j->seq = r->seq;
    j->enq_ms = s->now;
    j->nb = r->not_before_ms;
    j->deadline = r->deadline_ms;
    j->priority = prio;
    j->max_attempts = r->max_attempts;
    j->payload_len = plen;
    j->idem_k = (int8_t)pool_k;
    if (pool_k >= 0) idem_register(s, q, pool_k, id);
    model_set_state(s, j, MJ_PENDING);
    sim_call call = {.kind = CALL_ENQUEUE, .job_id = id};
    sim_events_apply(s, &call);
    if (s->cfg.early_dispatch && !delay && !idem) {
        /* Leasable before its batch commits (keyed and delayed jobs wait, as without). */
        model_set_state(s, j, MJ_WAITING);
        j->unsynced = true;
    }
    s->c.enqueued++;
    sim_log(s, "enqueue job %llu %s/%s tenant '%s' prio %lld delay %llu deadline %llu max %u len %u", uid,
            sim_queue_names[q], sim_lane_names[q][l], sim_tenant_names[t], (long long)prio, (unsigned long long)delay,
            (unsigned long long)deadline, max_att, plen);
    return id;
}

static void op_enqueue(sim *s)
{
    if (model_live_jobs(s) >= SIM_LIVE_JOBS_CAP) return;
    if (shell_storage_high(s)) {
        s->c.watermark_refused++;
        return;
    }
    sim_rng *r = &s->rng;
    uint64_t x = sim_rng_below(r, 100);
    int q = x < 40 ? SIM_Q_IMG : x < 75 ? SIM_Q_THUMB : SIM_Q_VIDEO;
    int l;
    if (q == SIM_Q_THUMB) l = (int)sim_rng_below(r, 3);
    else l = sim_rng_chance(r, 700) ? 0 : 1;
    int t = (int)sim_rng_below(r, SIM_TENANTS);
    int64_t prio = sim_rng_chance(r, 800) ? 0 : (int64_t)sim_rng_range(r, 0, 6) - 3;
    uint64_t delay = sim_rng_chance(r, 750) ? 0 : sim_rng_range(r, 1, 8000);
    uint64_t deadline = sim_rng_chance(r, 150) ? sim_rng_range(r, 1, 15000) : 0;
    uint32_t max_att = sim_rng_chance(r, 250) ? (uint32_t)sim_rng_range(r, 1, 3) : 0;
    uint32_t plen;
    x = sim_rng_below(r, 1000);
    if (x < 50) plen = 0;
    else if (x < (s->small_map ? 80u : 60u)) plen = (uint32_t)sim_rng_range(r, 16 * 1024, SIM_PAYLOAD_MAX);
    else plen = (uint32_t)sim_rng_range(r, 1, 1500);
    ops_enqueue_job(s, q, l, t, prio, delay, deadline, max_att, plen, true);
}

static void op_enqueue_bad(sim *s)
{
    char longname[LQ_NAME_MAX + 2];
    memset(longname, 'q', sizeof longname - 1);
    longname[sizeof longname - 1] = 0;
    lq_enqueue_req req = {.queue = lq_str_c("img"), .lane = lq_str_c("nope"), .payload_len = 1};
    lq_err want = LQ_E_NOT_FOUND;
    switch (sim_rng_below(&s->rng, 3)) {
    case 0: break;
    case 1: req.queue = lq_str_c("video"); req.lane = lq_str_c("zzz"); break;
    default: req.queue = lq_str_c(longname); req.lane = LQ_STR_NULL; want = LQ_E_INVALID_ARGUMENT; break;
    }
    uint64_t id = 0;
    lq_err e = lq_core_enqueue(s->core, s->now, &req, &id, &s->ev);
    SIM_CHECK(s, e == want, "bad enqueue (%.*s/%.*s): %s, expected %s", (int)(req.queue.len > 20 ? 20 : req.queue.len),
              req.queue.ptr, (int)req.lane.len, req.lane.ptr ? req.lane.ptr : "", lq_err_name(e), lq_err_name(want));
    SIM_CHECK(s, s->ev.n == 0, "refused enqueue emitted %zu events", s->ev.n);
    s->c.enqueue_refused++;
}

/* ---- workers ---------------------------------------------------------------------------- */

static void op_dequeue(sim *s)
{
    sim_rng *r = &s->rng;
    int k = ops_pick_live_session(s, false, false);
    if (k < 0) {
        open_random_session(s);
        k = ops_pick_live_session(s, false, false);
        if (k < 0) return;
    }
    sim_session *ss = &s->m.sessions[k];
    lq_str queues[SIM_QUEUES];
    uint32_t n_q = 0, qmask = 0;
    int order[SIM_QUEUES] = {0, 1, 2, 3};
    for (int i = SIM_QUEUES - 1; i > 0; i--) {
        int x = (int)sim_rng_below(r, (uint64_t)i + 1), tmp = order[i];
        order[i] = order[x];
        order[x] = tmp;
    }
    for (int i = 0; i < SIM_QUEUES; i++) {
        if (!sim_rng_chance(r, 500)) continue;
        queues[n_q++] = lq_str_c(sim_queue_names[order[i]]);
        qmask |= 1u << order[i];
    }
    if (n_q == 0) {
        int q = order[0] == SIM_Q_IDLE ? order[1] : order[0];
        queues[n_q++] = lq_str_c(sim_queue_names[q]);
        qmask |= 1u << q;
    }
    int w = -1;
    for (int i = 0; i < SIM_WAITERS_MAX && w < 0; i++)
        if (!s->m.waiters[i].live) w = i;
    uint32_t max_jobs = sim_rng_chance(r, 400) ? 1 : (uint32_t)sim_rng_range(r, 1, 16);
    uint32_t wait_ms = (w >= 0 && ss->n_waiters < 2 && sim_rng_chance(r, 300)) ? (uint32_t)sim_rng_range(r, 50, 5000) : 0;
    uint32_t lease_ms = 0;
    uint64_t x = sim_rng_below(r, 100);
    if (x >= 40) lease_ms = (uint32_t)sim_rng_range(r, 200, 8000);
    if (x >= 97) lease_ms = (uint32_t)sim_rng_range(r, s->cfg.max_lease_ms, 2 * s->cfg.max_lease_ms);
    uint64_t handle = ++s->waiter_handle_next;
    lq_dequeue_req req = {.queues = queues, .n_queues = n_q, .max_jobs = max_jobs, .wait_ms = wait_ms,
                          .lease_ms = lease_ms, .session = ss->id, .waiter = handle};

    /* Ready jobs per lane before the call: the lane-share and weight-0 checks. */
    uint64_t rem[SIM_QUEUES][SIM_LANES];
    for (int q = 0; q < SIM_QUEUES; q++) model_lane_ready(s, q, rem[q]);

    lq_lease out[16];
    uint32_t n = 0;
    bool parked = false;
    lq_err e = lq_core_dequeue(s->core, s->now, &req, out, &n, &parked, &s->ev);
    SIM_CHECK(s, e == LQ_OK, "dequeue by session %u: %s", ss->id, lq_err_name(e));
    SIM_CHECK(s, n <= max_jobs, "dequeue granted %u jobs for max_jobs %u", n, max_jobs);
    SIM_CHECK(s, !parked || (n == 0 && wait_ms > 0), "dequeue parked with %u jobs granted, wait %u", n, wait_ms);
    if (ss->act_hi < s->now) ss->act_hi = s->now;
    sim_log(s, "dequeue session %u qmask %x max %u wait %u lease %u -> %u jobs%s", ss->id, qmask, max_jobs, wait_ms,
            lease_ms, n, parked ? " (parked)" : "");
    /* The call serves parked dequeues before its own request (their LEASE events), so those
     * go first, and they also take from the lanes counted above. */
    for (size_t i = 0; i < s->ev.n; i++) {
        if (s->ev.v[i].type != LQ_EV_LEASE) continue;
        const lq_lease *ls = &s->ev.v[i].u.lease.lease;
        int q = sim_queue_index(ls->queue), l = sim_lane_index(q, ls->lane);
        if (q >= 0 && l >= 0 && rem[q][l] > 0) rem[q][l]--;
    }
    sim_call call = {.kind = CALL_DEQUEUE, .session = ss->id};
    sim_events_apply(s, &call);
    for (uint32_t i = 0; i < n; i++) {
        sim_grant(s, &out[i], ss->id, lease_ms, -1);
        int q = sim_queue_index(out[i].queue), l = sim_lane_index(q, out[i].lane);
        SIM_CHECK(s, q >= 0 && (qmask & (1u << q)), "dequeue granted a job of queue %.*s, not asked for",
                  (int)out[i].queue.len, out[i].queue.ptr);
        if (q == SIM_Q_IMG && rem[q][SIM_LANE_API] > 0 && rem[q][SIM_LANE_APP] > 0) {
            if (l == SIM_LANE_API) s->c.share_api++;
            else s->c.share_app++;
        }
        if (q == SIM_Q_VIDEO && l == SIM_LANE_BG) {
            SIM_CHECK(s, rem[q][SIM_LANE_MAIN] == 0, "dequeue granted a job of weight-0 lane video/bg while "
                      "video/main had %llu ready jobs", (unsigned long long)rem[q][SIM_LANE_MAIN]);
            s->c.bg_grants++;
        }
        if (rem[q][l] > 0) rem[q][l]--;
    }
    bool suspect = health_session_suspect(s, ss->id);
    if (suspect) {
        SIM_CHECK(s, n == 0, "dequeue granted %u jobs to session %u of quarantined worker gpu-%02d", n, ss->id,
                  ss->worker);
        s->c.suspect_refusals++;
    }
    if (parked) {
        s->m.waiters[w] = (sim_waiter){.live = true, .handle = handle, .sess = k, .qmask = qmask,
                                       .max_jobs = max_jobs, .park_ms = s->now, .end_ms = s->now + wait_ms,
                                       .lease_ms = lease_ms};
        ss->n_waiters++;
        if (ss->act_hi < s->now + wait_ms) ss->act_hi = s->now + wait_ms;
    } else if (n < max_jobs && !suspect) {
        /* It stopped short, so nothing it could take was left. */
        model_check_stats(s, false);
        for (int q = 0; q < SIM_QUEUES; q++) {
            if (!(qmask & (1u << q))) continue;
            for (int l = 0; l < SIM_LANES; l++)
                SIM_CHECK(s, s->cs[q][l][CS_READY] == 0, "dequeue granted %u of %u jobs while lane %s/%s has %llu ready",
                          n, max_jobs, sim_queue_names[q], sim_lane_names[q][l] ? sim_lane_names[q][l] : "?",
                          (unsigned long long)s->cs[q][l][CS_READY]);
        }
    }
}

/* A random leased job whose worker is not frozen; NULL if none. */
static sim_job *pick_lease(sim *s)
{
    sim_model *m = &s->m;
    for (int tries = 0; tries < 8 && m->n_leases; tries++) {
        sim_job *j = &m->jobs[m->leases[sim_rng_below(&s->rng, m->n_leases)]];
        int k = model_session_slot(s, j->session);
        if (k >= 0 && !m->sessions[k].silent) return j;
    }
    return NULL;
}

void ops_ack(sim *s, sim_job *j, bool twice)
{
    uint64_t id = j->id, token = j->token;
    model_session_touch(s, j->session);
    lq_err e = lq_core_ack(s->core, s->now, id, token, &s->ev);
    SIM_CHECK(s, e == LQ_OK, "ack of job %llu with its valid token %llx: %s", (unsigned long long)id,
              (unsigned long long)token, lq_err_name(e));
    sim_call call = {.kind = CALL_ACK, .job_id = id};
    sim_events_apply(s, &call);
    SIM_CHECK(s, j->st == MJ_GONE_PENDING && j->gone_final == LQ_STATE_DONE, "ack of job %llu emitted no JOB_DELETE DONE",
              (unsigned long long)id);
    s->c.acks++;
    sim_log(s, "ack job %llu", (unsigned long long)id);
    if (twice) {
        e = lq_core_ack(s->core, s->now, id, token, &s->ev);
        SIM_CHECK(s, e == LQ_E_LEASE_LOST || e == LQ_E_NOT_FOUND, "second ack of job %llu: %s", (unsigned long long)id,
                  lq_err_name(e));
        SIM_CHECK(s, s->ev.n == 0, "refused second ack emitted %zu events", s->ev.n);
    }
}

static void op_ack(sim *s, bool twice)
{
    sim_job *j = pick_lease(s);
    if (j) ops_ack(s, j, twice);
}

static void op_nack(sim *s)
{
    sim_job *j = pick_lease(s);
    if (!j) return;
    sim_rng *r = &s->rng;
    static char longerr[LQ_ERROR_TEXT_MAX + 500];
    char err[48];
    lq_nack_opts o = {0};
    uint64_t x = sim_rng_below(r, 10);
    if (x < 7) {
        snprintf(err, sizeof err, "gpu error %llu", (unsigned long long)sim_rng_below(r, 100000));
        o.error = lq_str_c(err);
    } else if (x < 8) {
        memset(longerr, 'e', sizeof longerr - 1);
        o.error = (lq_str){longerr, sizeof longerr - 1};
    }
    o.dead = sim_rng_chance(r, 100);
    if (sim_rng_chance(r, 400)) {
        o.delay_set = true;
        o.delay_ms = sim_rng_chance(r, 200) ? 0 : sim_rng_range(r, 1, 5000);
    }
    uint64_t id = j->id, token = j->token;
    bool want_dead = o.dead || j->deliveries >= j->max_attempts;
    model_session_touch(s, j->session);
    uint8_t st = 0;
    lq_err e = lq_core_nack(s->core, s->now, id, token, &o, &st, &s->ev);
    SIM_CHECK(s, e == LQ_OK, "nack of job %llu with its valid token: %s", (unsigned long long)id, lq_err_name(e));
    sim_call call = {.kind = CALL_NACK, .job_id = id, .nack_dead = o.dead};
    sim_events_apply(s, &call);
    unsigned long long uid = (unsigned long long)id;
    SIM_CHECK(s, (st == LQ_STATE_DEAD) == want_dead, "nack of job %llu (dead %d, attempt %u of %u) gave state %u", uid,
              o.dead, j->deliveries, j->max_attempts, st);
    s->c.nacks++;
    sim_log(s, "nack job %llu dead %d delay_set %d delay %llu -> state %u", uid, o.dead, o.delay_set,
            (unsigned long long)o.delay_ms, st);
    if (st == LQ_STATE_DEAD) {
        SIM_CHECK(s, j->st == MJ_DEAD, "nack dead-lettered job %llu without a JOB_UPDATE/DEAD event", uid);
        return;
    }
    SIM_CHECK(s, st == LQ_STATE_READY || st == LQ_STATE_DELAYED, "nack of job %llu gave state %u", uid, st);
    SIM_CHECK(s, j->upd_call == s->call_serial && j->upd_state == st,
              "nack of job %llu to state %u did not persist it with a JOB_UPDATE of that state", uid, st);
    uint64_t nb = st == LQ_STATE_DELAYED ? j->upd_nb : 0;
    if (st == LQ_STATE_DELAYED) {
        if (o.delay_set)
            SIM_CHECK(s, nb == s->now + o.delay_ms, "nack of job %llu with delay %llu: not_before %llu at %llu", uid,
                      (unsigned long long)o.delay_ms, (unsigned long long)nb, (unsigned long long)s->now);
        else
            SIM_CHECK(s, nb > s->now && nb <= s->now + 2ull * s->cfg.backoff_max_ms,
                      "nack of job %llu: backoff to %llu at %llu (max %u)", uid, (unsigned long long)nb,
                      (unsigned long long)s->now, s->cfg.backoff_max_ms);
    } else {
        SIM_CHECK(s, o.delay_set && o.delay_ms == 0, "nack of job %llu with%s delay %llu made it READY at once", uid,
                  o.delay_set ? "" : "out", (unsigned long long)o.delay_ms);
    }
    if (j->st == MJ_LEASED) sim_unlease(s, j);
    model_set_state(s, j, MJ_WAITING);
    j->nb = nb;
}

static void op_extend(sim *s)
{
    sim_job *j = pick_lease(s);
    if (!j) return;
    uint32_t ms = sim_rng_chance(&s->rng, 50) ? 50000 : (uint32_t)sim_rng_range(&s->rng, 200, 15000);
    uint64_t exp = 0;
    model_session_touch(s, j->session);
    lq_err e = lq_core_extend(s->core, s->now, j->id, j->token, ms, &exp);
    SIM_CHECK(s, e == LQ_OK, "extend of job %llu with its valid token: %s", (unsigned long long)j->id, lq_err_name(e));
    uint64_t want = s->now + (ms > s->cfg.max_lease_ms ? s->cfg.max_lease_ms : ms);
    SIM_CHECK(s, exp == want, "extend of job %llu by %u ms: expires %llu, expected %llu", (unsigned long long)j->id, ms,
              (unsigned long long)exp, (unsigned long long)want);
    j->expires = exp;
    s->c.extends++;
}

/* A token that was valid once: acked, nacked, requeued, superseded or from before a crash. */
static void op_stale(sim *s, bool bogus)
{
    sim_model *m = &s->m;
    uint64_t id, token;
    if (bogus) {
        id = (1ull << 62) + sim_rng_below(&s->rng, 1u << 20);
        token = sim_rng_next(&s->rng);
    } else {
        if (m->n_stale == 0) return;
        sim_stale st = m->stale[sim_rng_below(&s->rng, m->n_stale)];
        id = st.job_id;
        token = st.token;
    }
    sim_job *j = model_job(s, id);
    if (j && j->st == MJ_LEASED && j->token == token) return; /* tokens repeat only by chance */
    bool held = j && (j->st == MJ_PENDING || j->st == MJ_WAITING || j->st == MJ_LEASED || j->st == MJ_DEAD);
    lq_err e;
    const char *what;
    switch (sim_rng_below(&s->rng, 3)) {
    case 0:
        what = "ack";
        e = lq_core_ack(s->core, s->now, id, token, &s->ev);
        break;
    case 1: {
        what = "nack";
        lq_nack_opts o = {.error = lq_str_c("late")};
        uint8_t st = 0;
        e = lq_core_nack(s->core, s->now, id, token, &o, &st, &s->ev);
        break;
    }
    default: {
        what = "extend";
        uint64_t exp = 0;
        e = lq_core_extend(s->core, s->now, id, token, 1000, &exp);
        break;
    }
    }
    if (bogus)
        SIM_CHECK(s, e == LQ_E_NOT_FOUND, "%s of never-issued job %llu: %s", what, (unsigned long long)id, lq_err_name(e));
    else if (held)
        SIM_CHECK(s, e == LQ_E_LEASE_LOST, "%s of job %llu (%s) with stale token %llx: %s, expected LEASE_LOST", what,
                  (unsigned long long)id, j->st == MJ_LEASED ? "leased again" : "not leased", (unsigned long long)token,
                  lq_err_name(e));
    else
        SIM_CHECK(s, e == LQ_E_LEASE_LOST || e == LQ_E_NOT_FOUND, "%s of finished job %llu with stale token: %s", what,
                  (unsigned long long)id, lq_err_name(e));
    SIM_CHECK(s, s->ev.n == 0, "refused %s emitted %zu events", what, s->ev.n);
    s->c.stale_checks++;
    if (bogus) {
        /* Calls naming a session that was never opened. */
        uint32_t sess = 0xfff00000u + (uint32_t)sim_rng_below(&s->rng, 1000), n_held = 0;
        e = lq_core_heartbeat(s->core, s->now, sess, &n_held);
        SIM_CHECK(s, e == LQ_E_NOT_FOUND, "heartbeat of unknown session %u: %s", sess, lq_err_name(e));
        lq_str q = lq_str_c("img");
        lq_lease out[1];
        uint32_t n = 0;
        bool parked = false;
        lq_dequeue_req req = {.queues = &q, .n_queues = 1, .max_jobs = 1, .wait_ms = 100, .session = sess,
                              .waiter = ++s->waiter_handle_next};
        e = lq_core_dequeue(s->core, s->now, &req, out, &n, &parked, &s->ev);
        SIM_CHECK(s, e == LQ_E_NOT_FOUND && n == 0 && !parked && s->ev.n == 0,
                  "dequeue by unknown session %u: %s, %u jobs, parked %d, %zu events", sess, lq_err_name(e), n, parked,
                  s->ev.n);
    }
}

/* Reconfiguring keeps jobs; a lane that holds jobs cannot be removed. */
static void op_reconfigure(sim *s)
{
    const sim_model *m = &s->m;
    uint64_t app = 0;
    for (int k = 0; k < SIM_KINDS; k++) app += m->cnt[SIM_Q_IMG][SIM_LANE_APP][k];
    if (app && sim_rng_chance(&s->rng, 500)) {
        lq_lane_cfg only_api[1] = {{lq_str_c("api"), 9}};
        lq_err e = lq_core_configure_queue(s->core, lq_str_c("img"), only_api, 1);
        SIM_CHECK(s, e == LQ_E_INVALID_ARGUMENT, "removing lane img/app with %llu jobs: %s, expected INVALID_ARGUMENT",
                  (unsigned long long)app, lq_err_name(e));
        return;
    }
    shell_configure(s);
}

/* ---- connections ------------------------------------------------------------------------ */

static void op_heartbeat(sim *s, bool wake)
{
    int k = -1;
    if (wake) {
        int cand[SIM_SESSIONS_MAX], n = 0;
        for (int i = 0; i < SIM_SESSIONS_MAX; i++)
            if (s->m.sessions[i].live && s->m.sessions[i].silent) cand[n++] = i;
        if (n) k = cand[sim_rng_below(&s->rng, n)];
    } else {
        k = ops_pick_live_session(s, true, false);
    }
    if (k < 0) return;
    sim_session *ss = &s->m.sessions[k];
    ss->silent = false;
    if (ss->hb_ms) heartbeat(s, ss);
}

void ops_session_close(sim *s, int k)
{
    sim_session *ss = &s->m.sessions[k];
    /* Its parked dequeues end without WAITER_DONE: the model forgets them first, so any later
     * event for them fails. */
    for (int w = 0; w < SIM_WAITERS_MAX; w++)
        if (s->m.waiters[w].live && s->m.waiters[w].sess == k) s->m.waiters[w].live = false;
    ss->n_waiters = 0;
    if (ss->n_leases > 0) health_loss(s, ss->id); /* closed while holding leases: a loss */
    lq_core_session_close(s->core, s->now, ss->id, &s->ev);
    sim_call call = {.kind = CALL_CLOSE, .session = ss->id};
    sim_events_apply(s, &call);
    SIM_CHECK(s, ss->n_leases == 0, "session %u closed, %u of its leases were not requeued", ss->id, ss->n_leases);
    sim_log(s, "session %u closed", ss->id);
    ss->live = false;
}

static void op_waiter_cancel(sim *s)
{
    int cand[SIM_WAITERS_MAX], n = 0;
    for (int i = 0; i < SIM_WAITERS_MAX; i++)
        if (s->m.waiters[i].live) cand[n++] = i;
    if (!n) return;
    sim_waiter *w = &s->m.waiters[cand[sim_rng_below(&s->rng, n)]];
    lq_core_waiter_cancel(s->core, w->handle);
    w->live = false;
    s->m.sessions[w->sess].n_waiters--;
}

/* ---- the loop --------------------------------------------------------------------------- */

void ops_run_one(sim *s)
{
    sim_rng *r = &s->rng;
    if (s->op_index % 2000 == 0) s->regime = (int)sim_rng_below(r, 3);
    int op;
    if (sim_rng_below(r, 1000000) < SIM_CRASH_PER_MILLION) {
        op = OP_CRASH;
    } else {
        const uint32_t *wt = weights[s->regime];
        uint32_t total = 0;
        for (int i = 0; i < OP_COUNT; i++) total += wt[i];
        uint32_t x = (uint32_t)sim_rng_below(r, total);
        for (op = 0; op < OP_COUNT - 1 && x >= wt[op]; op++) x -= wt[op];
    }
    s->c.ops[op]++;
    switch (op) {
    case OP_ENQUEUE: op_enqueue(s); break;
    case OP_ENQUEUE_BAD: op_enqueue_bad(s); break;
    case OP_DEQUEUE: op_dequeue(s); break;
    case OP_ACK: op_ack(s, false); break;
    case OP_ACK_TWICE: op_ack(s, true); break;
    case OP_NACK: op_nack(s); break;
    case OP_EXTEND: op_extend(s); break;
    case OP_STALE: op_stale(s, false); break;
    case OP_BOGUS: op_stale(s, true); break;
    case OP_HEARTBEAT: op_heartbeat(s, false); break;
    case OP_SESS_OPEN: open_random_session(s); break;
    case OP_SESS_CLOSE: {
        int k = ops_pick_live_session(s, false, true);
        if (k >= 0) ops_session_close(s, k);
        break;
    }
    case OP_SESS_SILENT: {
        int k = ops_pick_live_session(s, false, false);
        if (k >= 0) s->m.sessions[k].silent = true;
        break;
    }
    case OP_SESS_WAKE: op_heartbeat(s, true); break;
    case OP_WAITER_CANCEL: op_waiter_cancel(s); break;
    case OP_ADVANCE: {
        uint64_t x = sim_rng_below(r, 10);
        uint64_t span = x < 4 ? 200 : x < 8 ? 3000 : 15000;
        ops_advance(s, s->now + sim_rng_below(r, span + 1));
        break;
    }
    case OP_SUBMIT: shell_submit(s); break;
    case OP_COMPLETE: shell_complete(s); break;
    case OP_COMMIT: shell_submit(s); shell_complete(s); break;
    case OP_RECONFIGURE: op_reconfigure(s); break;
    case OP_WAIT_JOB: waits_op_wait(s); break;
    case OP_WAIT_CANCEL: waits_op_cancel(s); break;
    case OP_CLEAR_SUSPECT: health_op_clear(s); break;
    case OP_CRASH: shell_crash(s); break;
    }
    if (s->verbose && op != OP_ENQUEUE && op != OP_DEQUEUE) sim_log(s, "op %s", op_names[op]);
}
