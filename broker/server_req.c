/* One request: decode into the arena, check it against its frame, call the core, answer now
 * (reads, errors) or defer the answer to the commit of the open batch (enqueue, ack, nack). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server_int.h"

#define SERVER_NAME "leaseqd"

static void reply_simple(lq_server *s, srv_conn *sc, Leaseq__Response *r)
{
    srv_send(s, sc->id, r, NULL, 0);
}

static bool req_hello(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Hello *h)
{
    if (sc->hello_done) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "hello was already said on this connection");
        return true;
    }
    if (h->protocol_version != 1) {
        srv_fail_conn(s, sc, rid, LQ_E_PROTOCOL_ERROR, "unsupported protocol_version (this broker speaks 1)");
        return false;
    }
    if (!srv_auth_hello(s, sc, rid, h))
        return false;
    lq_session_opts o = {
        .worker_id = lq_str_c(h->worker_id),
        .heartbeat_ms = h->heartbeat_ms,
        .keep_leases_on_close = h->keep_leases_on_close,
    };
    uint32_t session = 0;
    lq_err e = lq_core_session_open(s->core, srv_now(s), &o, &session);
    if (e == LQ_OK && srv_sess_conn_set(s, session, sc->id) != LQ_OK) {
        lq_core_session_close(s->core, srv_now(s), session, &s->ev);
        srv_apply_events(s, NULL);
        e = LQ_E_NOMEM;
    }
    if (e != LQ_OK) {
        srv_fail_conn(s, sc, rid, e == LQ_E_LIMIT ? LQ_E_UNAVAILABLE : e == LQ_E_NOMEM ? LQ_E_INTERNAL : e,
                      e == LQ_E_LIMIT ? "too many sessions" : "hello refused");
        return false;
    }
    sc->session = session;
    sc->hello_done = true;
    lq_loop_conn_ready(s->loop, sc->id);
    Leaseq__HelloReply hr = LEASEQ__HELLO_REPLY__INIT;
    hr.protocol_version = 1;
    hr.server_name = (char *)SERVER_NAME;
    hr.role = (Leaseq__Role)sc->role;
    hr.session_id = session;
    uint64_t hb = (uint64_t)h->heartbeat_ms * 3;
    hr.heartbeat_timeout_ms = hb > UINT32_MAX ? UINT32_MAX : (uint32_t)hb;
    hr.max_payload_bytes = s->cfg->max_payload_bytes;
    hr.max_frame_bytes = LQ_FRAME_HEADER_BYTES + LQ_FRAME_META_MAX + s->cfg->max_payload_bytes;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__RESPONSE__BODY_HELLO;
    r.hello = &hr;
    reply_simple(s, sc, &r);
    return true;
}

static lq_str str_of(const char *p)
{
    return lq_str_c(p);
}

/* HeaderList of one item, encoded into the server's scratch buffer. */
static lq_err encode_headers(lq_server *s, const Leaseq__EnqueueItem *it, const uint8_t **out, uint32_t *len)
{
    *out = NULL;
    *len = 0;
    if (it->n_headers == 0)
        return LQ_OK;
    Leaseq__HeaderList hl = LEASEQ__HEADER_LIST__INIT;
    hl.n_headers = it->n_headers;
    hl.headers = it->headers;
    size_t n = leaseq__header_list__get_packed_size(&hl);
    if (n > s->scratch_cap) {
        uint8_t *p = realloc(s->scratch, n); /* owner: server */
        if (p == NULL)
            return LQ_E_NOMEM;
        s->scratch = p;
        s->scratch_cap = n;
    }
    leaseq__header_list__pack(&hl, s->scratch);
    *out = s->scratch;
    *len = (uint32_t)n;
    return LQ_OK;
}

static bool req_enqueue(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Enqueue *q, const lq_frame *f)
{
    uint64_t sum = 0;
    for (size_t i = 0; i < q->n_items; i++)
        sum += q->items[i]->payload_len;
    if (sum != f->payload_len) {
        srv_fail_conn(s, sc, rid, LQ_E_PROTOCOL_ERROR, "enqueue: item payload_len sum differs from the frame payload");
        return false;
    }
    if (q->n_items == 0 || q->n_items > SRV_ENQUEUE_ITEMS_MAX) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "enqueue: 1..4096 items per request");
        return true;
    }
    if (s->stopping) {
        srv_send_error(s, sc->id, rid, LQ_E_UNAVAILABLE, "broker shutting down");
        return true;
    }
    srv_batch *b = srv_open_batch(s);
    uint32_t first = b->n_items;
    uint32_t stored = 0; /* items whose answer waits on a commit */
    uint64_t now = srv_now(s);
    const uint8_t *payload = f->payload;
    for (size_t i = 0; i < q->n_items; i++) {
        const Leaseq__EnqueueItem *it = q->items[i];
        lq_enqueue_req er = {
            .queue = str_of(it->queue),
            .lane = str_of(it->lane),
            .tenant = str_of(it->tenant),
            .idem_key = str_of(it->idempotency_key),
            .priority = it->priority,
            .delay_ms = it->delay_ms,
            .deadline_ms = it->deadline_ms,
            .max_attempts = it->max_attempts ? it->max_attempts : srv_queue_max_attempts(s, it->queue),
            .payload_len = it->payload_len,
        };
        srv_put_ctx put = {.payload = payload, .payload_len = it->payload_len};
        payload += it->payload_len;
        uint64_t job_id = 0;
        bool dup = false;
        uint8_t dup_of = DUP_NONE;
        lq_err e = srv_storage_admit(s, er.queue, er.lane);
        if (e == LQ_OK)
            e = encode_headers(s, it, &put.headers, &put.headers_len);
        if (e == LQ_OK)
            e = lq_core_enqueue_ex(s->core, now, &er, &job_id, &dup, &s->ev);
        if (e == LQ_OK && dup) {
            /* The original may still be on its way to disk: then so is this answer. (A keyed
             * job is PENDING until then, --dispatch early or not.) */
            uint8_t st = 0;
            if (lq_core_job_state(s->core, job_id, &st) == LQ_OK && st == LQ_STATE_PENDING)
                dup_of = job_id >= srv_open_batch(s)->first_id || s->n_inflight == 0 ? DUP_SAME_BATCH
                                                                                     : DUP_PREV_BATCH;
            srv_apply_events(s, NULL);
        } else if (e == LQ_OK) {
            put.job_id = job_id;
            srv_apply_events(s, &put);
            if (put.failed) {
                lq_core_commit_done(s->core, now, job_id, false, &s->ev);
                srv_apply_events(s, NULL);
                e = LQ_E_INTERNAL;
            }
        } else {
            srv_apply_events(s, NULL);
        }
        if (srv_item_push(s, job_id, e) != LQ_OK) {
            /* Cannot even record the outcome: settle this job and the request's earlier ones as
             * not stored (their answers go with the items), as when the deferral fails below. */
            if (e == LQ_OK && !dup) {
                lq_core_commit_done(s->core, now, job_id, false, &s->ev);
                srv_apply_events(s, NULL);
            }
            for (uint32_t k = first; k < b->n_items; k++) {
                if (b->items[k].err == LQ_OK && !b->items[k].duplicate) {
                    lq_core_commit_done(s->core, now, b->items[k].job_id, false, &s->ev);
                    srv_apply_events(s, NULL);
                }
            }
            b->n_items = first;
            srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "out of memory");
            return true;
        }
        if (e == LQ_E_QUEUE_FULL)
            b->items[b->n_items - 1].retry_after_ms = lq_core_lane_retry_after_ms(s->core, now, er.queue, er.lane);
        else if (e == LQ_E_STORAGE_FULL)
            b->items[b->n_items - 1].retry_after_ms = 1000; /* the next commits may free space */
        if (e == LQ_OK) {
            b->items[b->n_items - 1].duplicate = dup;
            b->items[b->n_items - 1].dup_of = dup_of;
            if (!dup || dup_of != DUP_NONE)
                stored++;
        }
    }
    if (stored == 0) {
        /* Nothing waits on a commit: answer every item's error now. */
        srv_reply_enqueue(s, sc->id, rid, &b->items[first], b->n_items - first);
        b->n_items = first;
        return true;
    }
    srv_deferred *d = srv_defer(s, sc, rid, DEF_ENQUEUE, f->payload_len);
    if (d == NULL) {
        for (uint32_t i = first; i < b->n_items; i++) {
            if (b->items[i].err == LQ_OK && !b->items[i].duplicate) {
                lq_core_commit_done(s->core, now, b->items[i].job_id, false, &s->ev);
                srv_apply_events(s, NULL);
            }
        }
        /* Their JOB_PUTs stay in the batch; the store keeps them, the core forgot them. */
        b->n_items = first;
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "out of memory");
        return true;
    }
    d->first = first;
    d->n = b->n_items - first;
    return true;
}

static bool req_dequeue(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Dequeue *q)
{
    if (q->n_queues == 0 || q->n_queues > LQ_DEQUEUE_QUEUES_MAX) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "dequeue: 1..16 queues");
        return true;
    }
    lq_str queues[LQ_DEQUEUE_QUEUES_MAX];
    for (size_t i = 0; i < q->n_queues; i++)
        queues[i] = str_of(q->queues[i]);
    uint32_t wait_ms = s->stopping ? 0 : q->wait_ms;
    if (wait_ms > 0 && sc->waiters.count >= SRV_PARKED_PER_CONN_MAX) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "dequeue: too many parked dequeues on this connection");
        return true;
    }
    uint64_t handle = 0;
    if (srv_waiter_alloc(s, &handle) != LQ_OK) {
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "out of memory");
        return true;
    }
    uint32_t max_jobs = q->max_jobs == 0 ? 1 : q->max_jobs;
    if (max_jobs > LQ_DEQUEUE_MAX)
        max_jobs = LQ_DEQUEUE_MAX;
    lq_dequeue_req dr = {
        .queues = queues,
        .n_queues = (uint32_t)q->n_queues,
        .max_jobs = max_jobs,
        .wait_ms = wait_ms,
        .lease_ms = q->lease_ms ? q->lease_ms : srv_queue_lease_ms(s, q->queues[0]),
        .session = sc->session,
        .waiter = handle,
    };
    uint32_t n = 0;
    bool parked = false;
    lq_err e = lq_core_dequeue(s->core, srv_now(s), &dr, s->lease_buf, &n, &parked, &s->ev);
    if (e != LQ_OK) {
        srv_waiter_free(s, handle);
        srv_apply_events(s, NULL);
        srv_send_error(s, sc->id, rid, e, NULL);
        return true;
    }
    if (parked) {
        srv_waiter_park(s, sc, handle, rid);
        /* The contract parks only when nothing was granted; keep any grant all the same. */
        for (uint32_t i = 0; i < n; i++)
            srv_waiter_add_lease(s, handle, &s->lease_buf[i]);
        srv_apply_events(s, NULL);
        return true;
    }
    srv_waiter_free(s, handle);
    srv_apply_events(s, NULL);
    for (uint32_t i = 0; i < n; i++)
        srv_metric_lease(s, &s->lease_buf[i]);
    srv_reply_dequeue(s, sc->id, rid, s->lease_buf, n);
    srv_apply_events(s, NULL);
    return true;
}

static bool req_ack(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Ack *a, const lq_frame *f)
{
    if (a->result_len != f->payload_len) {
        srv_fail_conn(s, sc, rid, LQ_E_PROTOCOL_ERROR, "ack: result_len differs from the frame payload");
        return false;
    }
    /* The JOB_DELETE of this ack carries the result into the batch (copied there). */
    s->ack_job = a->job_id;
    s->ack_result = f->payload;
    s->ack_result_len = f->payload_len;
    lq_err e = lq_core_ack(s->core, srv_now(s), a->job_id, a->lease_token, &s->ev);
    srv_apply_events(s, NULL);
    s->ack_job = 0;
    s->ack_result = NULL;
    s->ack_result_len = 0;
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, NULL);
        return true;
    }
    if (srv_defer(s, sc, rid, DEF_ACK, f->payload_len) == NULL)
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "out of memory");
    return true;
}

static bool req_nack(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Nack *n)
{
    lq_nack_opts o = {
        .error = str_of(n->error),
        .dead = n->dead,
        .delay_set = n->delay_set,
        .delay_ms = n->delay_ms,
    };
    uint8_t state = 0;
    lq_err e = lq_core_nack(s->core, srv_now(s), n->job_id, n->lease_token, &o, &state, &s->ev);
    srv_apply_events(s, NULL);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, NULL);
        return true;
    }
    s->metrics.nacked++;
    srv_deferred *d = srv_defer(s, sc, rid, DEF_NACK, 0);
    if (d == NULL)
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "out of memory");
    else
        d->nack_state = state;
    return true;
}

static bool req_extend(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Extend *x)
{
    uint64_t expires = 0;
    lq_err e = lq_core_extend(s->core, srv_now(s), x->job_id, x->lease_token, x->lease_ms, &expires);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, NULL);
        return true;
    }
    Leaseq__ExtendReply xr = LEASEQ__EXTEND_REPLY__INIT;
    xr.lease_expires_ms = expires;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__RESPONSE__BODY_EXTEND;
    r.extend = &xr;
    reply_simple(s, sc, &r);
    return true;
}

static bool req_heartbeat(lq_server *s, srv_conn *sc, uint64_t rid)
{
    uint32_t held = 0;
    lq_err e = lq_core_heartbeat(s->core, srv_now(s), sc->session, &held);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, NULL);
        return true;
    }
    Leaseq__HeartbeatReply hr = LEASEQ__HEARTBEAT_REPLY__INIT;
    hr.leases_held = held;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__RESPONSE__BODY_HEARTBEAT;
    r.heartbeat = &hr;
    reply_simple(s, sc, &r);
    return true;
}

static void collect_lane(void *ctx, const lq_lane_stats *st)
{
    lq_server *s = ctx;
    if (s->n_stats == s->cap_stats) {
        uint32_t cap = s->cap_stats ? s->cap_stats * 2 : 64;
        lq_lane_stats *p = realloc(s->stats_buf, cap * sizeof *p); /* owner: server */
        if (p == NULL)
            return; /* the reply lists fewer lanes */
        s->stats_buf = p;
        s->cap_stats = cap;
    }
    s->stats_buf[s->n_stats++] = *st;
}

static bool req_stats(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Stats *q)
{
    s->n_stats = 0;
    lq_err e = lq_core_stats(s->core, str_of(q->queue), collect_lane, s);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, NULL);
        return true;
    }
    lq_arena *a = &s->out_arena;
    lq_arena_reset(a);
    uint32_t n = s->n_stats;
    Leaseq__LaneStats *lanes = a->pb.alloc(a->pb.allocator_data, (n ? n : 1) * sizeof *lanes);
    Leaseq__LaneStats **lptr = a->pb.alloc(a->pb.allocator_data, (n ? n : 1) * sizeof *lptr);
    Leaseq__QueueStats *qs = a->pb.alloc(a->pb.allocator_data, (n ? n : 1) * sizeof *qs);
    Leaseq__QueueStats **qptr = a->pb.alloc(a->pb.allocator_data, (n ? n : 1) * sizeof *qptr);
    if (lanes == NULL || lptr == NULL || qs == NULL || qptr == NULL) {
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "stats reply too large");
        return true;
    }
    uint32_t nq = 0;
    for (uint32_t i = 0; i < n; i++) {
        const lq_lane_stats *st = &s->stats_buf[i];
        if (nq == 0 || !lq_str_eq(st->queue, s->stats_buf[i - 1].queue)) {
            leaseq__queue_stats__init(&qs[nq]);
            qs[nq].name = srv_arena_str(a, st->queue);
            qs[nq].lanes = &lptr[i];
            qptr[nq] = &qs[nq];
            nq++;
        }
        Leaseq__LaneStats *ls = &lanes[i];
        leaseq__lane_stats__init(ls);
        ls->name = srv_arena_str(a, st->lane);
        ls->weight = st->weight;
        ls->ready = st->ready;
        ls->leased = st->leased;
        ls->delayed = st->delayed;
        ls->dead = st->dead;
        ls->pending = st->pending;
        ls->expired = st->expired;
        lptr[i] = ls;
        qs[nq - 1].n_lanes++;
    }
    Leaseq__StatsReply sr = LEASEQ__STATS_REPLY__INIT;
    sr.n_queues = nq;
    sr.queues = qptr;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__RESPONSE__BODY_STATS;
    r.stats = &sr;
    reply_simple(s, sc, &r);
    return true;
}

bool srv_handle_frame(lq_server *s, srv_conn *sc, const lq_frame *f)
{
    lq_arena_reset(&s->arena);
    Leaseq__Request *req = leaseq__request__unpack(&s->arena.pb, f->meta_len, f->meta);
    if (req == NULL || req->body_case == LEASEQ__REQUEST__BODY__NOT_SET) {
        srv_fail_conn(s, sc, req ? req->request_id : 0, LQ_E_PROTOCOL_ERROR,
                      req ? "request without a body" : "request does not decode");
        return false;
    }
    uint64_t rid = req->request_id;
    if (!sc->hello_done && req->body_case != LEASEQ__REQUEST__BODY_HELLO) {
        srv_fail_conn(s, sc, rid, LQ_E_PROTOCOL_ERROR, "the first request must be hello");
        return false;
    }
    if (sc->hello_done && !srv_auth_allows(s, sc, rid, req->body_case))
        return true;
    /* Only enqueue (items) and ack (result) carry payload bytes. */
    if (f->payload_len != 0 && req->body_case != LEASEQ__REQUEST__BODY_ENQUEUE &&
        req->body_case != LEASEQ__REQUEST__BODY_ACK) {
        srv_fail_conn(s, sc, rid, LQ_E_PROTOCOL_ERROR, "payload bytes on a request that takes none");
        return false;
    }
    switch (req->body_case) {
    case LEASEQ__REQUEST__BODY_HELLO:
        return req_hello(s, sc, rid, req->hello);
    case LEASEQ__REQUEST__BODY_ENQUEUE:
        return req_enqueue(s, sc, rid, req->enqueue, f);
    case LEASEQ__REQUEST__BODY_DEQUEUE:
        return req_dequeue(s, sc, rid, req->dequeue);
    case LEASEQ__REQUEST__BODY_ACK:
        return req_ack(s, sc, rid, req->ack, f);
    case LEASEQ__REQUEST__BODY_NACK:
        return req_nack(s, sc, rid, req->nack);
    case LEASEQ__REQUEST__BODY_EXTEND:
        return req_extend(s, sc, rid, req->extend);
    case LEASEQ__REQUEST__BODY_HEARTBEAT:
        return req_heartbeat(s, sc, rid);
    case LEASEQ__REQUEST__BODY_STATS:
        return req_stats(s, sc, rid, req->stats);
    case LEASEQ__REQUEST__BODY_PING: {
        Leaseq__Pong pong = LEASEQ__PONG__INIT;
        Leaseq__Response r = LEASEQ__RESPONSE__INIT;
        r.request_id = rid;
        r.body_case = LEASEQ__RESPONSE__BODY_PONG;
        r.pong = &pong;
        reply_simple(s, sc, &r);
        return true;
    }
    case LEASEQ__REQUEST__BODY_WAIT:
        return srv_req_wait(s, sc, rid, req->wait);
    case LEASEQ__REQUEST__BODY_WORKERS:
        return srv_req_workers(s, sc, rid);
    case LEASEQ__REQUEST__BODY_CLEAR_SUSPECT:
        return srv_req_clear_suspect(s, sc, rid, req->clear_suspect);
    default:
        if (srv_is_ops_request(req->body_case))
            return srv_req_ops(s, sc, req);
        srv_fail_conn(s, sc, rid, LQ_E_PROTOCOL_ERROR, "unknown request");
        return false;
    }
}
