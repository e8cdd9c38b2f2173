/* The simulator's expected state: every job it has seen, the worker sessions, the parked
 * dequeues, recently invalidated lease tokens; and the checks that compare it with the core.
 *
 * The model never guesses which job the core will pick: it follows what the core reports
 * (grants, events, return values) and refuses every report that the contract forbids.
 * Where the contract leaves room (which activity keeps a session alive, when exactly a
 * heartbeat-renewed lease expires), the model keeps a lower and an upper bound and only fails
 * outside both. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sim.h"

const char *const sim_queue_names[SIM_QUEUES] = {"img", "thumb", "video", "idle"};
const char *const sim_lane_names[SIM_QUEUES][SIM_LANES] = {
    {"api", "app", NULL},
    {"default", "bulk", "rt"},
    {"main", "bg", NULL},
    {NULL, NULL, NULL},
};
const char *const sim_tenant_names[SIM_TENANTS] = {"", "acme", "globex", "initech"};

static bool str_is(lq_str s, const char *c)
{
    size_t n = strlen(c);
    return s.len == n && (n == 0 || memcmp(s.ptr, c, n) == 0);
}

int sim_queue_index(lq_str q)
{
    for (int i = 0; i < SIM_QUEUES; i++)
        if (str_is(q, sim_queue_names[i])) return i;
    return -1;
}

int sim_lane_index(int q, lq_str lane)
{
    if (q < 0 || q >= SIM_QUEUES) return -1;
    for (int i = 0; i < SIM_LANES; i++)
        if (sim_lane_names[q][i] && str_is(lane, sim_lane_names[q][i])) return i;
    return -1;
}

int sim_tenant_index(lq_str t)
{
    for (int i = 0; i < SIM_TENANTS; i++)
        if (str_is(t, sim_tenant_names[i])) return i;
    return -1;
}

static void *xrealloc(void *p, size_t n)
{
    void *q = realloc(p, n);
    if (!q) {
        fprintf(stderr, "sim: out of memory\n");
        exit(2);
    }
    return q;
}

void model_init(sim_model *m)
{
    memset(m, 0, sizeof *m);
    m->map_cap = 1024;
    m->map_keys = calloc(m->map_cap, sizeof *m->map_keys); /* owner: model */
    m->map_vals = calloc(m->map_cap, sizeof *m->map_vals); /* owner: model */
    if (!m->map_keys || !m->map_vals) {
        fprintf(stderr, "sim: out of memory\n");
        exit(2);
    }
}

void model_free(sim_model *m)
{
    for (int q = 0; q < SIM_QUEUES; q++)
        for (int l = 0; l < SIM_LANES; l++)
            for (int t = 0; t < SIM_TENANTS; t++) free(m->waiting[q][l][t].v);
    free(m->jobs);
    free(m->map_keys);
    free(m->map_vals);
    free(m->leases);
    memset(m, 0, sizeof *m);
}

/* ---- id -> job index: open addressing, linear probing, never deleted ------------------- */

static uint32_t map_slot(const sim_model *m, uint64_t id)
{
    uint32_t mask = m->map_cap - 1;
    uint32_t i = (uint32_t)sim_mix64(id) & mask;
    while (m->map_keys[i] != 0 && m->map_keys[i] != id + 1) i = (i + 1) & mask;
    return i;
}

static void map_grow(sim_model *m)
{
    uint64_t *keys = m->map_keys;
    uint32_t *vals = m->map_vals;
    uint32_t cap = m->map_cap;
    m->map_cap = cap * 2;
    m->map_keys = calloc(m->map_cap, sizeof *m->map_keys); /* owner: model */
    m->map_vals = calloc(m->map_cap, sizeof *m->map_vals); /* owner: model */
    if (!m->map_keys || !m->map_vals) {
        fprintf(stderr, "sim: out of memory\n");
        exit(2);
    }
    for (uint32_t i = 0; i < cap; i++) {
        if (!keys[i]) continue;
        uint32_t s = map_slot(m, keys[i] - 1);
        m->map_keys[s] = keys[i];
        m->map_vals[s] = vals[i];
    }
    free(keys);
    free(vals);
}

sim_job *model_job(sim *s, uint64_t id)
{
    sim_model *m = &s->m;
    if (id == UINT64_MAX) return NULL;
    uint32_t i = map_slot(m, id);
    return m->map_keys[i] ? &m->jobs[m->map_vals[i]] : NULL;
}

sim_job *model_job_new(sim *s, uint64_t id)
{
    sim_model *m = &s->m;
    SIM_CHECK(s, id != UINT64_MAX, "core issued job id UINT64_MAX");
    sim_job *j = model_job(s, id);
    if (j) {
        /* Only an id whose job was lost in a crash before it was durable may come back. */
        SIM_CHECK(s, j->st == MJ_VOID, "core issued job id %llu again (its job is %s, outcome %u)",
                  (unsigned long long)id, j->acked_put ? "acknowledged" : "unacknowledged", j->outcome);
    } else {
        if ((m->n_jobs + 1) * 2 > m->map_cap) map_grow(m);
        if (m->n_jobs == m->cap_jobs) {
            m->cap_jobs = m->cap_jobs ? m->cap_jobs * 2 : 1024;
            m->jobs = xrealloc(m->jobs, m->cap_jobs * sizeof *m->jobs); /* owner: model */
        }
        uint32_t slot = map_slot(m, id);
        m->map_keys[slot] = id + 1;
        m->map_vals[slot] = m->n_jobs;
        j = &m->jobs[m->n_jobs++];
    }
    memset(j, 0, sizeof *j);
    j->id = id;
    j->st = MJ_VOID;
    j->idem_k = -1;
    return j;
}

static int kind_of(uint8_t st)
{
    switch (st) {
    case MJ_PENDING: return SIM_K_PENDING;
    case MJ_WAITING: return SIM_K_WAITING;
    case MJ_LEASED: return SIM_K_LEASED;
    case MJ_DEAD: return SIM_K_DEAD;
    default: return -1;
    }
}

static void bucket_add(sim *s, sim_job *j)
{
    sim_bucket *b = &s->m.waiting[j->q][j->l][j->t];
    if (b->n == b->cap) {
        b->cap = b->cap ? b->cap * 2 : 64;
        b->v = xrealloc(b->v, b->cap * sizeof *b->v); /* owner: model */
    }
    j->wait_slot = b->n;
    b->v[b->n++] = (uint32_t)(j - s->m.jobs);
}

static void bucket_del(sim *s, sim_job *j)
{
    sim_bucket *b = &s->m.waiting[j->q][j->l][j->t];
    uint32_t slot = j->wait_slot;
    LQ_ASSERT(slot < b->n && &s->m.jobs[b->v[slot]] == j);
    b->v[slot] = b->v[--b->n];
    if (slot < b->n) s->m.jobs[b->v[slot]].wait_slot = slot;
}

void model_set_state(sim *s, sim_job *j, sim_job_state st)
{
    int k = kind_of(j->st);
    if (k >= 0) s->m.cnt[j->q][j->l][k]--;
    if (j->st == MJ_WAITING) {
        if (j->deadline) s->m.cnt_dl[j->q][j->l]--;
        bucket_del(s, j);
    }
    j->st = (uint8_t)st;
    k = kind_of(j->st);
    if (k >= 0) s->m.cnt[j->q][j->l][k]++;
    if (j->st == MJ_WAITING) {
        if (j->deadline) s->m.cnt_dl[j->q][j->l]++;
        bucket_add(s, j);
    }
}

void model_recount(sim *s)
{
    sim_model *m = &s->m;
    memset(m->cnt, 0, sizeof m->cnt);
    memset(m->cnt_dl, 0, sizeof m->cnt_dl);
    for (int q = 0; q < SIM_QUEUES; q++)
        for (int l = 0; l < SIM_LANES; l++)
            for (int t = 0; t < SIM_TENANTS; t++) m->waiting[q][l][t].n = 0;
    for (uint32_t i = 0; i < m->n_jobs; i++) {
        sim_job *j = &m->jobs[i];
        uint8_t st = j->st;
        j->st = MJ_VOID;
        model_set_state(s, j, (sim_job_state)st);
    }
}

/* Inside a lane, a tenant's ready jobs go by (priority, seq); a requeued job keeps its seq and
 * so goes back to the front. Jobs past their deadline are skipped: dispatch deletes them. */
void model_check_order(sim *s, const sim_job *j)
{
    const sim_bucket *b = &s->m.waiting[j->q][j->l][j->t];
    for (uint32_t i = 0; i < b->n; i++) {
        const sim_job *w = &s->m.jobs[b->v[i]];
        if (w == j || w->nb > s->now || (w->deadline && s->now >= w->deadline)) continue;
        SIM_CHECK(s, w->priority > j->priority || (w->priority == j->priority && w->seq > j->seq),
                  "granted job %llu (priority %lld, seq %llu) while job %llu (priority %lld, seq %llu) of the same "
                  "lane %s/%s and tenant '%s' was ready", (unsigned long long)j->id, (long long)j->priority,
                  (unsigned long long)j->seq, (unsigned long long)w->id, (long long)w->priority,
                  (unsigned long long)w->seq, sim_queue_names[j->q], sim_lane_names[j->q][j->l],
                  sim_tenant_names[j->t]);
    }
}

uint32_t model_live_jobs(const sim *s)
{
    uint64_t n = 0;
    for (int q = 0; q < SIM_QUEUES; q++)
        for (int l = 0; l < SIM_LANES; l++)
            for (int k = 0; k < SIM_KINDS; k++)
                if (k != SIM_K_DEAD) n += s->m.cnt[q][l][k];
    return (uint32_t)n;
}

void model_stale_push(sim *s, uint64_t job_id, uint64_t token)
{
    sim_model *m = &s->m;
    m->stale[m->stale_next] = (sim_stale){job_id, token};
    m->stale_next = (m->stale_next + 1) % SIM_STALE_MAX;
    if (m->n_stale < SIM_STALE_MAX) m->n_stale++;
}

int model_session_slot(sim *s, uint32_t id)
{
    for (int i = 0; i < SIM_SESSIONS_MAX; i++)
        if (s->m.sessions[i].live && s->m.sessions[i].id == id) return i;
    return -1;
}

int model_waiter_slot(sim *s, uint64_t handle)
{
    for (int i = 0; i < SIM_WAITERS_MAX; i++)
        if (s->m.waiters[i].live && s->m.waiters[i].handle == handle) return i;
    return -1;
}

void model_session_touch(sim *s, uint32_t session)
{
    int k = model_session_slot(s, session);
    if (k >= 0 && s->m.sessions[k].act_hi < s->now) s->m.sessions[k].act_hi = s->now;
}

/* The latest time a heartbeat session may still hold leases: however the core defines
 * "silence", it cannot be later than misses x interval after the last call naming it. */
static uint64_t stall_hi(const sim *s, const sim_session *ss)
{
    return ss->act_hi + (uint64_t)s->cfg.heartbeat_misses * ss->hb_ms;
}

/* ---- stats ------------------------------------------------------------------------------ */

typedef struct {
    sim *s;
} stats_ctx;

static void stats_cb(void *ctx, const lq_lane_stats *st)
{
    sim *s = ((stats_ctx *)ctx)->s;
    int q = sim_queue_index(st->queue);
    SIM_CHECK(s, q >= 0, "stats: unknown queue '%.*s'", (int)st->queue.len, st->queue.ptr);
    int l = sim_lane_index(q, st->lane);
    SIM_CHECK(s, l >= 0, "stats: unknown lane '%.*s' in queue %s", (int)st->lane.len, st->lane.ptr,
              sim_queue_names[q]);
    SIM_CHECK(s, !s->cs_seen[q][l], "stats: lane %s/%s reported twice", sim_queue_names[q],
              sim_lane_names[q][l]);
    s->cs_seen[q][l] = true;
    s->cs[q][l][CS_READY] = st->ready;
    s->cs[q][l][CS_DELAYED] = st->delayed;
    s->cs[q][l][CS_LEASED] = st->leased;
    s->cs[q][l][CS_DEAD] = st->dead;
    s->cs[q][l][CS_PENDING] = st->pending;
    s->cw[q][l] = st->weight;
}

static const uint32_t expected_weight[SIM_QUEUES][SIM_LANES] = {{9, 1, 0}, {1, 1, 1}, {1, 0, 0}, {0, 0, 0}};

/* Compares the core's lane counts with the model's. split: also ready vs delayed, which needs
 * a walk over every job (the cheap form compares their sum). Leaves the counts in s->cs. */
void model_check_stats(sim *s, bool split)
{
    memset(s->cs, 0, sizeof s->cs);
    memset(s->cs_seen, 0, sizeof s->cs_seen);
    stats_ctx ctx = {s};
    lq_err e = lq_core_stats(s->core, LQ_STR_NULL, stats_cb, &ctx);
    SIM_CHECK(s, e == LQ_OK, "lq_core_stats: %s", lq_err_name(e));

    uint64_t ready[SIM_QUEUES][SIM_LANES] = {{0}};
    if (split) {
        for (uint32_t i = 0; i < s->m.n_jobs; i++) {
            const sim_job *j = &s->m.jobs[i];
            if (j->st == MJ_WAITING && j->nb <= s->now) ready[j->q][j->l]++;
        }
    }
    for (int q = 0; q < SIM_QUEUES; q++) {
        for (int l = 0; l < SIM_LANES; l++) {
            const uint64_t *mc = s->m.cnt[q][l];
            const uint64_t *cc = s->cs[q][l];
            const char *qn = sim_queue_names[q], *ln = sim_lane_names[q][l] ? sim_lane_names[q][l] : "?";
            if (s->cs_seen[q][l] && (q == SIM_Q_IMG || q == SIM_Q_VIDEO || q == SIM_Q_THUMB))
                SIM_CHECK(s, s->cw[q][l] == expected_weight[q][l], "stats: lane %s/%s has weight %u, expected %u",
                          qn, ln, s->cw[q][l], expected_weight[q][l]);
            SIM_CHECK(s, cc[CS_PENDING] == mc[SIM_K_PENDING], "stats: lane %s/%s pending %llu, model %llu", qn, ln,
                      (unsigned long long)cc[CS_PENDING], (unsigned long long)mc[SIM_K_PENDING]);
            SIM_CHECK(s, cc[CS_LEASED] == mc[SIM_K_LEASED], "stats: lane %s/%s leased %llu, model %llu", qn, ln,
                      (unsigned long long)cc[CS_LEASED], (unsigned long long)mc[SIM_K_LEASED]);
            SIM_CHECK(s, cc[CS_DEAD] == mc[SIM_K_DEAD], "stats: lane %s/%s dead %llu, model %llu", qn, ln,
                      (unsigned long long)cc[CS_DEAD], (unsigned long long)mc[SIM_K_DEAD]);
            SIM_CHECK(s, cc[CS_READY] + cc[CS_DELAYED] == mc[SIM_K_WAITING],
                      "stats: lane %s/%s ready+delayed %llu+%llu, model %llu", qn, ln,
                      (unsigned long long)cc[CS_READY], (unsigned long long)cc[CS_DELAYED],
                      (unsigned long long)mc[SIM_K_WAITING]);
            if (split)
                SIM_CHECK(s, cc[CS_READY] == ready[q][l], "stats: lane %s/%s ready %llu (delayed %llu), model ready %llu",
                          qn, ln, (unsigned long long)cc[CS_READY], (unsigned long long)cc[CS_DELAYED],
                          (unsigned long long)ready[q][l]);
        }
    }
}

void model_lane_ready(sim *s, int q, uint64_t ready[SIM_LANES])
{
    for (int l = 0; l < SIM_LANES; l++) {
        uint64_t r = s->cs[q][l][CS_READY], dl = s->m.cnt_dl[q][l];
        ready[l] = r > dl ? r - dl : 0;
    }
}

/* ---- liveness: what must have happened by now ------------------------------------------ */

void model_check_liveness(sim *s)
{
    sim_model *m = &s->m;
    waits_check_liveness(s);
    for (uint32_t i = 0; i < m->n_leases; i++) {
        const sim_job *j = &m->jobs[m->leases[i]];
        int k = model_session_slot(s, j->session);
        SIM_CHECK(s, k >= 0, "job %llu is leased to session %u, which is closed", (unsigned long long)j->id,
                  j->session);
        const sim_session *ss = &m->sessions[k];
        if (ss->hb_ms == 0) {
            SIM_CHECK(s, j->expires >= s->now, "job %llu: lease (session %u) expired at %llu, still leased at %llu",
                      (unsigned long long)j->id, j->session, (unsigned long long)j->expires,
                      (unsigned long long)s->now);
        } else {
            SIM_CHECK(s, s->now <= stall_hi(s, ss),
                      "job %llu: session %u silent since %llu (heartbeat %u ms) still holds its lease at %llu",
                      (unsigned long long)j->id, j->session, (unsigned long long)ss->act_hi, ss->hb_ms,
                      (unsigned long long)s->now);
        }
    }
    for (int w = 0; w < SIM_WAITERS_MAX; w++) {
        const sim_waiter *wt = &m->waiters[w];
        if (!wt->live) continue;
        SIM_CHECK(s, s->now <= wt->end_ms, "parked dequeue %llu (wait until %llu) not completed at %llu",
                  (unsigned long long)wt->handle, (unsigned long long)wt->end_ms, (unsigned long long)s->now);
        const sim_session *ss = &m->sessions[wt->sess];
        if (ss->stalled) continue; /* what a stalled session's parked dequeue gets is not specified */
        if (health_worker_suspect(s, ss->worker)) continue; /* quarantined: waits on */
        for (int q = 0; q < SIM_QUEUES; q++) {
            if (!(wt->qmask & (1u << q))) continue;
            for (int l = 0; l < SIM_LANES; l++)
                SIM_CHECK(s, s->cs[q][l][CS_READY] == 0,
                          "parked dequeue %llu on %s waits while lane %s/%s has %llu ready jobs",
                          (unsigned long long)wt->handle, sim_queue_names[q], sim_queue_names[q],
                          sim_lane_names[q][l] ? sim_lane_names[q][l] : "?",
                          (unsigned long long)s->cs[q][l][CS_READY]);
        }
    }
}

/* ---- the full check: every job, the timer bound, the core's own walk -------------------- */

uint8_t model_core_state(const sim *s, const sim_job *j)
{
    switch (j->st) {
    case MJ_PENDING: return LQ_STATE_PENDING;
    case MJ_WAITING: return j->nb <= s->now ? LQ_STATE_READY : LQ_STATE_DELAYED;
    case MJ_LEASED: return LQ_STATE_LEASED;
    case MJ_DEAD: return LQ_STATE_DEAD;
    default: return 0;
    }
}

void model_check_full(sim *s)
{
    sim_model *m = &s->m;
    lq_core_check(s->core);
    model_check_stats(s, true);
    model_check_liveness(s);

    /* Invariant 1: every job the model holds is held by the core in the same state; every
     * acknowledged job is held, or its terminal outcome is recorded or on its way to disk. */
    uint64_t bound = LQ_TIME_NEVER;
    for (uint32_t i = 0; i < m->n_jobs; i++) {
        const sim_job *j = &m->jobs[i];
        uint8_t want = model_core_state(s, j), got = 0;
        lq_err e = lq_core_job_state(s->core, j->id, &got);
        if (want) {
            SIM_CHECK(s, e == LQ_OK, "job %llu (%s) is gone from the core (model state %u, expected core state %u)",
                      (unsigned long long)j->id, j->acked_put ? "acknowledged" : "unacknowledged", j->st, want);
            SIM_CHECK(s, got == want, "job %llu: core state %u, model expects %u", (unsigned long long)j->id, got,
                      want);
        } else if (j->st != MJ_VOID) {
            SIM_CHECK(s, e == LQ_E_NOT_FOUND, "job %llu: finished (model %u) but the core still holds it in state %u",
                      (unsigned long long)j->id, j->st, got);
        }
        SIM_CHECK(s, !j->acked_put || j->durable || j->outcome || j->st == MJ_GONE_PENDING,
                  "model: acknowledged job %llu is neither stored nor finished", (unsigned long long)j->id);
        if (j->st == MJ_WAITING && j->nb > s->now && j->nb < bound) bound = j->nb;
    }
    for (uint32_t i = 0; i < m->n_leases; i++) {
        const sim_job *j = &m->jobs[m->leases[i]];
        int k = model_session_slot(s, j->session);
        if (k >= 0 && m->sessions[k].hb_ms == 0 && j->expires < bound) bound = j->expires;
    }
    for (int w = 0; w < SIM_WAITERS_MAX; w++) {
        const sim_waiter *wt = &m->waiters[w];
        if (!wt->live) continue;
        if (wt->end_ms < bound) bound = wt->end_ms;
        /* a quarantine that lifts must be noticed in time to serve the worker's parked dequeue */
        uint64_t lift = health_lift_time(s, m->sessions[wt->sess].worker);
        if (lift < bound) bound = lift;
    }
    uint64_t wb = waits_bound(s);
    if (wb < bound) bound = wb;
    for (int k = 0; k < SIM_SESSIONS_MAX; k++) {
        const sim_session *ss = &m->sessions[k];
        if (ss->live && ss->hb_ms && !ss->stalled && ss->n_leases && stall_hi(s, ss) < bound)
            bound = stall_hi(s, ss);
    }
    SIM_CHECK(s, s->next_tick <= bound, "lq_core_tick asked to be called at %llu, but a timer is due at %llu",
              (unsigned long long)s->next_tick, (unsigned long long)bound);

    health_check_sessions(s);
    uint32_t leased = 0;
    for (int k = 0; k < SIM_SESSIONS_MAX; k++)
        if (m->sessions[k].live) leased += m->sessions[k].n_leases;
    SIM_CHECK(s, leased == m->n_leases, "model: session lease counts %u != %u leases", leased, m->n_leases);

    uint64_t next_id = 0, next_seq = 0;
    lq_core_counters(s->core, &next_id, &next_seq);
    SIM_CHECK(s, next_seq > s->max_seq || s->max_seq == 0, "core next_seq %llu <= issued seq %llu",
              (unsigned long long)next_seq, (unsigned long long)s->max_seq);
    shell_verify_store(s, 64);
}
