/* Operations requests (admin role): Inspect, PauseLanes, Drain, Purge, DeadList, Redrive, Peek,
 * Cancel, ConfigGet, ConfigSet; the persisted queue settings; the incremental purge.
 *
 * Replies to requests that change something wait for the commit of the batch holding the change
 * (DEF_OPS), like an ack's. A purge works a bounded number of jobs per loop pass and only while
 * the open batch has room, so the loop keeps answering everyone else; its reply goes out with
 * the commit of its last deletions. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server_int.h"

#define PURGES_MAX 64            /* purges in progress at once */
#define PURGE_STEP_JOBS 256     /* jobs purged per loop pass */
#define PURGE_BATCH_ROOM 8192   /* purge only while the open batch holds fewer operations */
#define DEAD_LIST_DEFAULT 100
#define DEAD_LIST_MAX 1000
#define REDRIVE_DEFAULT 10000
#define REDRIVE_MAX 100000
#define DRAIN_CHECK_MS 200
#define RATES_MS 1000


typedef struct {
    lq_purge p;
    char names[2 * LQ_NAME_MAX + 2]; /* p.queue and p.lane point here */
    lq_conn_id conn;
    uint64_t request_id;
    uint64_t purged;
    uint64_t started_ns;
} srv_purge;

struct srv_ops {
    srv_purge purges[PURGES_MAX]; /* FIFO: [head, head + n) */
    uint32_t head, n;
    lq_lane_info *lanes;          /* owner: ops; collected by inspect */
    lq_queue_opts *qopts;         /* owner: ops; the queue options of lanes[i] */
    uint32_t n_lanes, cap_lanes;
    uint64_t dead_ids[DEAD_LIST_MAX];
    uint64_t last_drain_check_ms, last_rates_ms, last_storage_ms;
};

lq_err srv_ops_init(lq_server *s)
{
    s->ops = calloc(1, sizeof *s->ops); /* owner: server, srv_ops_free */
    return s->ops != NULL ? LQ_OK : LQ_E_NOMEM;
}

void srv_ops_free(lq_server *s)
{
    if (s->ops == NULL)
        return;
    if (s->ops->n > 0)
        LQ_LOGW("purges interrupted by the shutdown", "purges=%u", s->ops->n);
    free(s->ops->lanes);
    free(s->ops->qopts);
    free(s->ops);
    s->ops = NULL;
}

bool srv_is_ops_request(int body_case)
{
    switch (body_case) {
    case LEASEQ__REQUEST__BODY_INSPECT:
    case LEASEQ__REQUEST__BODY_PAUSE:
    case LEASEQ__REQUEST__BODY_DRAIN:
    case LEASEQ__REQUEST__BODY_PURGE:
    case LEASEQ__REQUEST__BODY_DEAD_LIST:
    case LEASEQ__REQUEST__BODY_REDRIVE:
    case LEASEQ__REQUEST__BODY_PEEK:
    case LEASEQ__REQUEST__BODY_CANCEL:
    case LEASEQ__REQUEST__BODY_CONFIG_GET:
    case LEASEQ__REQUEST__BODY_CONFIG_SET:
        return true;
    default:
        return false;
    }
}

static const char *q(char *buf, size_t cap, lq_str s)
{
    return lq_log_quote(buf, cap, s.ptr, s.len);
}

/* ---- replies ------------------------------------------------------------------------------ */

static void send_body(lq_server *s, lq_conn_id conn, uint64_t rid, Leaseq__Response *r)
{
    r->request_id = rid;
    srv_send(s, conn, r, NULL, 0);
}

/* The change is in the open batch: answer after its commit. */
bool srv_ops_defer(lq_server *s, srv_conn *sc, uint64_t rid, uint8_t op, uint64_t value)
{
    srv_deferred *d = srv_defer(s, sc, rid, DEF_OPS, 0);
    if (d == NULL) {
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "out of memory");
        return true;
    }
    d->nack_state = op;
    d->job_id = value;
    return true;
}

void srv_ops_complete(lq_server *s, const srv_deferred *d, bool ok, lq_err err)
{
    if (!ok) {
        srv_send_error(s, d->conn, d->request_id, err == LQ_E_STORAGE_FULL ? LQ_E_STORAGE_FULL : LQ_E_INTERNAL,
                       "the change could not be stored");
        return;
    }
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    Leaseq__PauseLanesReply pr = LEASEQ__PAUSE_LANES_REPLY__INIT;
    Leaseq__DrainReply dr = LEASEQ__DRAIN_REPLY__INIT;
    Leaseq__PurgeReply ur = LEASEQ__PURGE_REPLY__INIT;
    Leaseq__RedriveReply rr = LEASEQ__REDRIVE_REPLY__INIT;
    Leaseq__CancelReply cr = LEASEQ__CANCEL_REPLY__INIT;
    Leaseq__ConfigReply gr = LEASEQ__CONFIG_REPLY__INIT;
    switch (d->nack_state) {
    case OP_PAUSE: pr.lanes = (uint32_t)d->job_id; r.body_case = LEASEQ__RESPONSE__BODY_PAUSE; r.pause = &pr; break;
    case OP_DRAIN: dr.remaining = d->job_id; r.body_case = LEASEQ__RESPONSE__BODY_DRAIN; r.drain = &dr; break;
    case OP_PURGE: ur.purged = d->job_id; r.body_case = LEASEQ__RESPONSE__BODY_PURGE; r.purge = &ur; break;
    case OP_REDRIVE: rr.redriven = d->job_id; r.body_case = LEASEQ__RESPONSE__BODY_REDRIVE; r.redrive = &rr; break;
    case OP_CANCEL: r.body_case = LEASEQ__RESPONSE__BODY_CANCEL; r.cancel = &cr; break;
    default: r.body_case = LEASEQ__RESPONSE__BODY_CONFIG_SET; r.config_set = &gr; break;
    }
    send_body(s, d->conn, d->request_id, &r);
}

/* ---- inspect ------------------------------------------------------------------------------ */

static void collect(void *ctx, const lq_lane_info *info, const lq_queue_opts *qo)
{
    struct srv_ops *o = ctx;
    if (o->n_lanes == o->cap_lanes) {
        uint32_t cap = o->cap_lanes ? o->cap_lanes * 2 : 64;
        lq_lane_info *nl = realloc(o->lanes, (size_t)cap * sizeof *nl); /* owner: ops */
        if (nl == NULL)
            return;
        o->lanes = nl;
        lq_queue_opts *nq = realloc(o->qopts, (size_t)cap * sizeof *nq); /* owner: ops */
        if (nq == NULL)
            return;
        o->qopts = nq;
        o->cap_lanes = cap;
    }
    o->qopts[o->n_lanes] = *qo;
    o->lanes[o->n_lanes++] = *info;
}

lq_err srv_ops_collect(lq_server *s, lq_str queue, const lq_lane_info **lanes, const lq_queue_opts **qopts,
                       uint32_t *n)
{
    s->ops->n_lanes = 0;
    lq_err e = lq_core_inspect(s->core, queue, collect, s->ops);
    *lanes = s->ops->lanes;
    *qopts = s->ops->qopts;
    *n = s->ops->n_lanes;
    return e;
}

static void *alloc(lq_arena *a, size_t n)
{
    return a->pb.alloc(a->pb.allocator_data, n ? n : 1);
}

static bool req_inspect(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Inspect *in)
{
    const lq_lane_info *L;
    const lq_queue_opts *Q;
    uint32_t n;
    lq_err e = srv_ops_collect(s, lq_str_c(in->queue), &L, &Q, &n);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, e == LQ_E_NOT_FOUND ? "no such queue" : NULL);
        return true;
    }
    uint64_t now = srv_now(s);
    lq_arena *a = &s->out_arena;
    lq_arena_reset(a);
    Leaseq__LaneInfo *li = alloc(a, n * sizeof *li);
    Leaseq__LaneInfo **lp = alloc(a, n * sizeof *lp);
    Leaseq__QueueInfo *qi = alloc(a, n * sizeof *qi);
    Leaseq__QueueInfo **qp = alloc(a, n * sizeof *qp);
    if (li == NULL || lp == NULL || qi == NULL || qp == NULL) {
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "inspect reply too large");
        return true;
    }
    uint32_t nq = 0;
    for (uint32_t i = 0; i < n; i++) {
        const lq_lane_info *x = &L[i];
        if (nq == 0 || !lq_str_eq(x->stats.queue, L[i - 1].stats.queue)) {
            leaseq__queue_info__init(&qi[nq]);
            qi[nq].name = srv_arena_str(a, x->stats.queue);
            qi[nq].draining = Q[i].draining;
            qi[nq].lease_ms = Q[i].lease_ms;
            qi[nq].max_attempts = Q[i].max_attempts;
            qi[nq].lanes = &lp[i];
            qp[nq] = &qi[nq];
            nq++;
        }
        Leaseq__LaneInfo *y = &li[i];
        leaseq__lane_info__init(y);
        y->name = srv_arena_str(a, x->stats.lane);
        y->weight = x->stats.weight;
        y->ready = x->stats.ready;
        y->leased = x->stats.leased;
        y->delayed = x->stats.delayed;
        y->dead = x->stats.dead;
        y->pending = x->stats.pending;
        y->paused = x->settings.paused;
        y->paused_for_ms = x->settings.paused && x->settings.paused_until_ms > now ? x->settings.paused_until_ms - now : 0;
        y->sheddable = x->settings.sheddable;
        y->max_queued = x->settings.max_queued;
        y->max_queued_bytes = x->settings.max_queued_bytes;
        y->max_wait_ms = x->settings.max_wait_ms;
        y->oldest_ready_age_ms = x->oldest_ready_ms && now > x->oldest_ready_ms ? now - x->oldest_ready_ms : 0;
        y->enqueued_total = x->totals.enqueued;
        y->leased_total = x->totals.leased;
        y->acked_total = x->totals.acked;
        y->expired_total = x->totals.expired;
        y->purged_total = x->totals.purged;
        y->dead_lettered_total = x->totals.dead_lettered;
        y->cancelled_total = x->totals.cancelled;
        y->enqueue_rate = x->enqueue_rate;
        y->ack_rate = x->ack_rate;
        lp[i] = y;
        qi[nq - 1].n_lanes++;
    }
    Leaseq__InspectReply ir = LEASEQ__INSPECT_REPLY__INIT;
    ir.n_queues = nq;
    ir.queues = qp;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.body_case = LEASEQ__RESPONSE__BODY_INSPECT;
    r.inspect = &ir;
    send_body(s, sc->id, rid, &r);
    return true;
}

/* ---- pause, drain ------------------------------------------------------------------------- */

static bool req_pause(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__PauseLanes *p)
{
    lq_str queue = lq_str_c(p->queue), lane = lq_str_c(p->lane);
    uint64_t now = srv_now(s);
    lq_str names[LQ_LANES_MAX];
    uint32_t n = 0;
    if (lane.len > 0) {
        names[n++] = lane;
    } else {
        const lq_lane_info *L;
        const lq_queue_opts *Q;
        uint32_t nl;
        lq_err e = srv_ops_collect(s, queue, &L, &Q, &nl);
        if (e != LQ_OK) {
            srv_send_error(s, sc->id, rid, e, e == LQ_E_NOT_FOUND ? "no such queue" : NULL);
            return true;
        }
        for (uint32_t i = 0; i < nl && n < LQ_LANES_MAX; i++)
            names[n++] = L[i].stats.lane; /* core-owned */
    }
    for (uint32_t i = 0; i < n; i++) {
        lq_lane_settings set = {.weight = 1};
        (void)lq_core_lane_get(s->core, queue, names[i], &set); /* a new lane starts from defaults */
        set.paused = !p->resume;
        set.paused_until_ms = set.paused && p->for_ms ? now + p->for_ms : 0;
        lq_err e = lq_core_lane_set(s->core, now, queue, names[i], &set);
        if (e == LQ_OK)
            e = srv_persist_lane(s, queue, names[i]);
        if (e != LQ_OK) {
            srv_send_error(s, sc->id, rid, e, NULL);
            return true;
        }
    }
    if (p->resume && lane.len == 0) {
        lq_queue_opts o;
        if (lq_core_queue_opts_get(s->core, queue, &o) == LQ_OK && o.draining) {
            o.draining = false;
            (void)lq_core_queue_opts_set(s->core, queue, &o);
            (void)srv_persist_queue(s, queue);
        }
    }
    char qb[256], lb[256];
    LQ_LOGI(p->resume ? "lanes resumed" : "lanes paused", "queue=%s lane=%s lanes=%u for_ms=%llu",
            q(qb, sizeof qb, queue), lane.len ? q(lb, sizeof lb, lane) : "*", n, (unsigned long long)p->for_ms);
    return srv_ops_defer(s, sc, rid, OP_PAUSE, n);
}

static bool req_drain(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Drain *d)
{
    lq_str queue = lq_str_c(d->queue);
    lq_queue_opts o;
    uint64_t left = 0;
    lq_err e = lq_core_queue_opts_get(s->core, queue, &o);
    if (e == LQ_OK) {
        o.draining = !d->stop;
        e = lq_core_queue_opts_set(s->core, queue, &o);
    }
    if (e == LQ_OK)
        e = srv_persist_queue(s, queue);
    if (e == LQ_OK)
        e = lq_core_queue_remaining(s->core, queue, &left);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, e == LQ_E_NOT_FOUND ? "no such queue" : NULL);
        return true;
    }
    char qb[256];
    LQ_LOGI(d->stop ? "drain stopped" : "queue draining: new enqueues refused", "queue=%s remaining=%llu",
            q(qb, sizeof qb, queue), (unsigned long long)left);
    return srv_ops_defer(s, sc, rid, OP_DRAIN, left);
}

static void on_drained(void *ctx, lq_str queue)
{
    lq_server *s = ctx;
    char qb[256];
    s->metrics.drains_done++;
    LQ_LOGI("drain done: queue is empty", "queue=%s", q(qb, sizeof qb, queue));
}

/* ---- purge -------------------------------------------------------------------------------- */

static bool req_purge(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Purge *p)
{
    struct srv_ops *o = s->ops;
    if (o->n == PURGES_MAX) {
        srv_send_error(s, sc->id, rid, LQ_E_UNAVAILABLE, "too many purges in progress");
        return true;
    }
    srv_purge *u = &o->purges[(o->head + o->n) % PURGES_MAX];
    memset(u, 0, sizeof *u);
    size_t ql = strlen(p->queue), ll = strlen(p->lane);
    if (ql == 0 || ql > LQ_NAME_MAX || ll > LQ_NAME_MAX) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "purge: queue of 1..200 bytes, lane up to 200");
        return true;
    }
    memcpy(u->names, p->queue, ql);
    memcpy(u->names + ql + 1, p->lane, ll);
    uint64_t now = srv_now(s);
    u->p.queue = (lq_str){u->names, (uint32_t)ql};
    u->p.lane = (lq_str){u->names + ql + 1, (uint32_t)ll};
    u->p.dead = p->dead;
    u->p.enqueued_before_ms = p->older_than_ms ? (p->older_than_ms < now ? now - p->older_than_ms : 1) : 0;
    lq_err e = lq_core_purge_begin(s->core, &u->p);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, e == LQ_E_NOT_FOUND ? "no such queue or lane" : NULL);
        return true;
    }
    u->conn = sc->id;
    u->request_id = rid;
    u->started_ns = lq_mono_ns();
    o->n++;
    char qb[256], lb[256];
    LQ_LOGI("purge started", "queue=%s lane=%s dead=%s older_than_ms=%llu", q(qb, sizeof qb, u->p.queue),
            ll ? q(lb, sizeof lb, u->p.lane) : "*", p->dead ? "true" : "false", (unsigned long long)p->older_than_ms);
    return true;
}

static void purge_step(lq_server *s, uint64_t now)
{
    struct srv_ops *o = s->ops;
    /* A stopping broker commits what is open and leaves: purges in progress end there (what
     * they purged so far is committed; srv_ops_free logs them). */
    if (o->n == 0 || s->stopping || lq_batch_count(srv_open_batch(s)->b) >= PURGE_BATCH_ROOM)
        return;
    srv_purge *u = &o->purges[o->head];
    bool done = lq_core_purge_step(s->core, now, &u->p, PURGE_STEP_JOBS, &u->purged, &s->ev);
    srv_apply_events(s, NULL);
    if (!done)
        return;
    s->metrics.purges++;
    char qb[256], lb[256];
    LQ_LOGI("purge done", "queue=%s lane=%s dead=%s purged=%llu took_ms=%llu", q(qb, sizeof qb, u->p.queue),
            u->p.lane.len ? q(lb, sizeof lb, u->p.lane) : "*", u->p.dead ? "true" : "false",
            (unsigned long long)u->purged, (unsigned long long)((lq_mono_ns() - u->started_ns) / 1000000u));
    srv_conn *sc = lq_loop_user(s->loop, u->conn);
    if (sc != NULL)
        (void)srv_ops_defer(s, sc, u->request_id, OP_PURGE, u->purged);
    o->head = (o->head + 1) % PURGES_MAX;
    o->n--;
}

bool srv_ops_busy(const lq_server *s)
{
    return s->ops != NULL && s->ops->n > 0 && !s->stopping &&
           lq_batch_count(s->batches[s->open].b) < PURGE_BATCH_ROOM;
}

void srv_ops_tick(lq_server *s, uint64_t now)
{
    struct srv_ops *o = s->ops;
    purge_step(s, now);
    if (now - o->last_drain_check_ms >= DRAIN_CHECK_MS) {
        o->last_drain_check_ms = now;
        lq_core_drained(s->core, on_drained, s);
    }
    if (now - o->last_rates_ms >= RATES_MS) {
        o->last_rates_ms = now;
        lq_core_admin_tick(s->core, now);
    }
    if (now - o->last_storage_ms >= RATES_MS) {
        o->last_storage_ms = now;
        (void)srv_storage_high(s); /* logs a crossing even when nobody probes /readyz */
    }
}

/* ---- dead letters, peek, cancel ----------------------------------------------------------- */

static bool req_dead_list(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__DeadList *d)
{
    uint32_t max = d->limit == 0 ? DEAD_LIST_DEFAULT : d->limit > DEAD_LIST_MAX ? DEAD_LIST_MAX : d->limit;
    uint32_t n = 0;
    uint64_t total = 0;
    lq_err e = lq_core_dead_list(s->core, lq_str_c(d->queue), d->after_id, s->ops->dead_ids, max, &n, &total);
    if (e == LQ_OK && n > 0)
        e = srv_read_begin(s);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, e == LQ_E_NOT_FOUND ? "no such queue" : NULL);
        return true;
    }
    lq_arena *a = &s->out_arena;
    lq_arena_reset(a);
    Leaseq__DeadJob *jobs = alloc(a, n * sizeof *jobs);
    Leaseq__DeadJob **jp = alloc(a, n * sizeof *jp);
    if (jobs == NULL || jp == NULL) {
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "reply too large");
        return true;
    }
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        lq_job_view v;
        if (lq_store_get_job(s->store, s->ops->dead_ids[i], &v) != LQ_OK)
            continue; /* its dead-lettering is still being committed */
        Leaseq__DeadJob *j = &jobs[k];
        leaseq__dead_job__init(j);
        j->job_id = v.rec.id;
        j->lane = srv_arena_str(a, v.rec.lane);
        j->tenant = srv_arena_str(a, v.rec.tenant);
        j->attempts = v.rec.attempts;
        j->last_error = srv_arena_str(a, v.rec.last_error);
        j->payload_len = v.rec.payload_len;
        j->enqueued_at_ms = v.rec.enqueued_ms;
        jp[k++] = j;
    }
    Leaseq__DeadListReply dr = LEASEQ__DEAD_LIST_REPLY__INIT;
    dr.n_jobs = k;
    dr.jobs = jp;
    dr.total = total;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.body_case = LEASEQ__RESPONSE__BODY_DEAD_LIST;
    r.dead_list = &dr;
    send_body(s, sc->id, rid, &r);
    return true;
}

static bool req_redrive(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Redrive *d)
{
    uint32_t max = d->limit == 0 ? REDRIVE_DEFAULT : d->limit > REDRIVE_MAX ? REDRIVE_MAX : d->limit;
    uint64_t n = 0;
    lq_err e = lq_core_redrive(s->core, srv_now(s), lq_str_c(d->queue), d->job_id, max, &n, &s->ev);
    srv_apply_events(s, NULL);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, e == LQ_E_NOT_FOUND ? "no such queue or dead job" : NULL);
        return true;
    }
    if (n > 0) {
        char qb[256];
        LQ_LOGI("dead jobs redriven", "queue=%s jobs=%llu", q(qb, sizeof qb, lq_str_c(d->queue)), (unsigned long long)n);
    }
    return srv_ops_defer(s, sc, rid, OP_REDRIVE, n);
}

static bool req_cancel(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Cancel *c)
{
    lq_err e = lq_core_cancel(s->core, srv_now(s), c->job_id, &s->ev);
    srv_apply_events(s, NULL);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e,
                       e == LQ_E_INVALID_ARGUMENT ? "job is leased (its worker decides) or still being stored"
                       : e == LQ_E_NOT_FOUND      ? "no such live job"
                                                  : NULL);
        return true;
    }
    return srv_ops_defer(s, sc, rid, OP_CANCEL, 0);
}

static bool req_peek(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Peek *p)
{
    uint8_t state = 0;
    bool live = lq_core_job_state(s->core, p->job_id, &state) == LQ_OK;
    lq_err e = srv_read_begin(s);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, NULL);
        return true;
    }
    lq_arena *a = &s->out_arena;
    lq_arena_reset(a);
    Leaseq__PeekReply pr = LEASEQ__PEEK_REPLY__INIT;
    pr.job_id = p->job_id;
    const uint8_t *payload = NULL;
    uint32_t payload_len = 0;
    lq_job_view v;
    lq_result_view rv;
    /* A PENDING job (delayed or keyed, whose put is on its way) is only found once stored. */
    lq_err ge = !live ? LQ_E_NOT_FOUND
                      : state == LQ_STATE_PENDING ? lq_store_get_job(s->store, p->job_id, &v)
                                                  : srv_get_job(s, p->job_id, &v);
    if (ge == LQ_OK) {
        uint32_t attempts = v.rec.attempts;
        (void)lq_core_job_attempts(s->core, p->job_id, &attempts);
        pr.state = (Leaseq__JobState)(state == LQ_STATE_PENDING ? LQ_STATE_READY : state);
        pr.queue = srv_arena_str(a, v.rec.queue);
        pr.lane = srv_arena_str(a, v.rec.lane);
        pr.tenant = srv_arena_str(a, v.rec.tenant);
        pr.priority = (int32_t)v.rec.priority;
        pr.attempts = attempts;
        pr.max_attempts = v.rec.max_attempts;
        pr.payload_len = v.rec.payload_len;
        pr.enqueued_at_ms = v.rec.enqueued_ms;
        pr.deadline_ms = v.rec.deadline_ms;
        pr.not_before_ms = v.rec.not_before_ms;
        pr.last_error = srv_arena_str(a, v.rec.last_error);
        pr.idempotency_key = srv_arena_str(a, v.rec.idem_key);
        if (v.headers_len > 0) {
            Leaseq__HeaderList *hl = leaseq__header_list__unpack(&a->pb, v.headers_len, v.headers);
            if (hl != NULL) {
                pr.n_headers = hl->n_headers;
                pr.headers = hl->headers;
            }
        }
        if (p->payload && v.payload_len <= s->cfg->max_payload_bytes) {
            payload = v.payload;
            payload_len = v.payload_len;
        }
    } else if (!live && lq_store_get_result(s->store, p->job_id, srv_now(s), &rv) == LQ_OK) {
        pr.finished = true;
        pr.state = (Leaseq__JobState)rv.state;
        pr.queue = srv_arena_str(a, rv.queue);
        pr.last_error = srv_arena_str(a, rv.error);
        pr.idempotency_key = srv_arena_str(a, rv.idem_key);
    } else {
        srv_send_error(s, sc->id, rid, LQ_E_NOT_FOUND, live ? "job is still being stored" : "no such job");
        return true;
    }
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__RESPONSE__BODY_PEEK;
    r.peek = &pr;
    srv_send(s, sc->id, &r, payload, payload_len);
    return true;
}

bool srv_req_ops(lq_server *s, srv_conn *sc, const Leaseq__Request *req)
{
    uint64_t rid = req->request_id;
    switch (req->body_case) {
    case LEASEQ__REQUEST__BODY_INSPECT: return req_inspect(s, sc, rid, req->inspect);
    case LEASEQ__REQUEST__BODY_PAUSE: return req_pause(s, sc, rid, req->pause);
    case LEASEQ__REQUEST__BODY_DRAIN: return req_drain(s, sc, rid, req->drain);
    case LEASEQ__REQUEST__BODY_PURGE: return req_purge(s, sc, rid, req->purge);
    case LEASEQ__REQUEST__BODY_DEAD_LIST: return req_dead_list(s, sc, rid, req->dead_list);
    case LEASEQ__REQUEST__BODY_REDRIVE: return req_redrive(s, sc, rid, req->redrive);
    case LEASEQ__REQUEST__BODY_PEEK: return req_peek(s, sc, rid, req->peek);
    case LEASEQ__REQUEST__BODY_CANCEL: return req_cancel(s, sc, rid, req->cancel);
    case LEASEQ__REQUEST__BODY_CONFIG_GET: return srv_req_config_get(s, sc, rid, req->config_get);
    case LEASEQ__REQUEST__BODY_CONFIG_SET: return srv_req_config_set(s, sc, rid, req->config_set);
    default:
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "not an operations request");
        return true;
    }
}
