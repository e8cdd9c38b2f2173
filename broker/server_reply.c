/* Encoding responses straight into a connection's output buffer: protobuf-c packs the meta in
 * place (its size is known first), and a dequeue reply's payloads are copied once, from the
 * LMDB map into the output. */
#include <string.h>

#include "log.h"
#include "server_int.h"

const char *srv_err_text(lq_err e)
{
    switch (lq_err_wire(e)) {
    case LQ_OK: return "ok";
    case LQ_E_INVALID_ARGUMENT: return "invalid argument";
    case LQ_E_NOT_FOUND: return "not found";
    case LQ_E_LEASE_LOST: return "lease lost: the token is stale or the lease expired";
    case LQ_E_QUEUE_FULL: return "queue full";
    case LQ_E_STORAGE_FULL: return "storage full: enqueues are refused";
    case LQ_E_DRAINING: return "draining";
    case LQ_E_UNAUTHENTICATED: return "unauthenticated";
    case LQ_E_PERMISSION_DENIED: return "permission denied";
    case LQ_E_FRAME_TOO_LARGE: return "frame too large";
    case LQ_E_PROTOCOL_ERROR: return "protocol error";
    case LQ_E_DEADLINE_EXCEEDED: return "deadline exceeded";
    case LQ_E_UNAVAILABLE: return "unavailable";
    default: return "internal error";
    }
}

char *srv_arena_str(lq_arena *a, lq_str str)
{
    char *p = a->pb.alloc(a->pb.allocator_data, (size_t)str.len + 1);
    if (p == NULL)
        return (char *)"";
    if (str.len > 0)
        memcpy(p, str.ptr, str.len);
    p[str.len] = '\0';
    return p;
}

static void *arena_alloc(lq_arena *a, size_t n)
{
    return a->pb.alloc(a->pb.allocator_data, n);
}

bool srv_send(lq_server *s, lq_conn_id conn, const Leaseq__Response *r, const void *payload, size_t payload_len)
{
    size_t meta = leaseq__response__get_packed_size(r);
    size_t total = LQ_FRAME_HEADER_BYTES + meta + payload_len;
    uint8_t *p = lq_loop_out_reserve(s->loop, conn, total);
    if (p == NULL)
        return false;
    lq_frame_header(p, (uint32_t)meta, (uint32_t)payload_len);
    size_t packed = leaseq__response__pack(r, p + LQ_FRAME_HEADER_BYTES);
    LQ_ASSERT(packed == meta);
    if (payload_len > 0)
        memcpy(p + LQ_FRAME_HEADER_BYTES + meta, payload, payload_len);
    lq_loop_out_commit(s->loop, conn, total);
    return true;
}

void srv_send_error(lq_server *s, lq_conn_id conn, uint64_t request_id, lq_err code, const char *msg)
{
    Leaseq__Error e = LEASEQ__ERROR__INIT;
    e.code = (Leaseq__ErrorCode)lq_err_wire(code);
    e.message = (char *)(msg != NULL ? msg : srv_err_text(code));
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = request_id;
    r.error = &e;
    srv_send(s, conn, &r, NULL, 0);
}

void srv_fail_conn(lq_server *s, srv_conn *sc, uint64_t request_id, lq_err code, const char *msg)
{
    LQ_LOGD("closing connection after an error frame", "session=%u code=%s reason=\"%s\"", sc->session,
            lq_err_name(code), msg);
    srv_send_error(s, sc->id, request_id, code, msg);
    lq_loop_close(s->loop, sc->id, true);
}

void srv_reply_enqueue(lq_server *s, lq_conn_id conn, uint64_t request_id, const srv_item *items, uint32_t n)
{
    lq_arena *a = &s->out_arena;
    lq_arena_reset(a);
    Leaseq__EnqueueResult *res = arena_alloc(a, n * sizeof *res);
    Leaseq__EnqueueResult **ptrs = arena_alloc(a, n * sizeof *ptrs);
    Leaseq__Error *errs = arena_alloc(a, n * sizeof *errs);
    if (res == NULL || ptrs == NULL || errs == NULL) {
        srv_send_error(s, conn, request_id, LQ_E_INTERNAL, "reply too large");
        return;
    }
    for (uint32_t i = 0; i < n; i++) {
        leaseq__enqueue_result__init(&res[i]);
        ptrs[i] = &res[i];
        if (items[i].err == LQ_OK) {
            res[i].job_id = items[i].job_id;
            res[i].duplicate = items[i].duplicate;
        } else {
            leaseq__error__init(&errs[i]);
            errs[i].code = (Leaseq__ErrorCode)lq_err_wire((lq_err)items[i].err);
            errs[i].message = (char *)srv_err_text((lq_err)items[i].err);
            errs[i].retry_after_ms = items[i].retry_after_ms;
            res[i].error = &errs[i];
        }
    }
    Leaseq__EnqueueReply er = LEASEQ__ENQUEUE_REPLY__INIT;
    er.n_results = n;
    er.results = ptrs;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = request_id;
    r.body_case = LEASEQ__RESPONSE__BODY_ENQUEUE;
    r.enqueue = &er;
    srv_send(s, conn, &r, NULL, 0);
}

lq_err srv_read_begin(lq_server *s)
{
    if (s->read_open)
        return LQ_OK;
    lq_err e = lq_store_read_begin(s->store);
    if (e == LQ_OK)
        s->read_open = true;
    return e;
}

/* Ids at or above this were created into a batch not yet reaped (their puts are not durable). */
static uint64_t unsynced_from(const lq_server *s)
{
    return s->batches[s->n_inflight > 0 ? s->inflight[0] : s->open].first_id;
}

lq_err srv_get_job(lq_server *s, uint64_t id, lq_job_view *v)
{
    if (s->cfg->early_dispatch && id >= unsynced_from(s)) {
        /* Dispatched before its commit: its put is still in a batch the loop has not reaped,
         * the committer's or the open one (a reaped batch is in the snapshot, renewed at every
         * reap). Newest last: most leases are of jobs just enqueued. */
        bool found = lq_batch_find_job(srv_open_batch(s)->b, id, v) == LQ_OK;
        for (uint32_t i = s->n_inflight; !found && i-- > 0;)
            found = lq_batch_find_job(s->batches[s->inflight[i]].b, id, v) == LQ_OK;
        if (found) {
            s->early_reads++;
            return LQ_OK;
        }
    }
    lq_err e = srv_read_begin(s);
    return e != LQ_OK ? e : lq_store_get_job(s->store, id, v);
}

void srv_read_end(lq_server *s)
{
    if (s->read_open) {
        lq_store_read_end(s->store);
        s->read_open = false;
    }
}

/* Gives a lease that was never delivered back at once: front of its lane, the attempt not
 * counted (it is the broker's failure, not the job's). Its events (none today) stay in s->ev
 * for the caller to apply. */
static void give_back(lq_server *s, const lq_lease *l, const char *why)
{
    lq_err e = lq_core_release(s->core, srv_now(s), l->job_id, l->token, &s->ev);
    if (e != LQ_OK && e != LQ_E_LEASE_LOST)
        LQ_LOGW("could not give back a lease", "job=%llu why=\"%s\" error=%s", (unsigned long long)l->job_id, why,
                lq_err_name(e));
}

/* A job whose record cannot be read is not the broker's passing failure: that delivery counts
 * (nack without delay), so a broken record ends in the dead-letter set instead of looping. */
static void give_back_counted(lq_server *s, const lq_lease *l, const char *why)
{
    lq_nack_opts o = {.error = lq_str_c(why), .delay_set = true, .delay_ms = 0};
    uint8_t st = 0;
    lq_err e = lq_core_nack(s->core, srv_now(s), l->job_id, l->token, &o, &st, &s->ev);
    if (e != LQ_OK)
        LQ_LOGW("could not give back a lease", "job=%llu error=%s", (unsigned long long)l->job_id, lq_err_name(e));
}

void srv_reply_dequeue(lq_server *s, lq_conn_id conn, uint64_t request_id, const lq_lease *leases, uint32_t n)
{
    lq_arena *a = &s->out_arena;
    lq_arena_reset(a);
    if (lq_loop_user(s->loop, conn) == NULL) {
        /* Nobody will read them. Released rather than left to the session's close, which
         * would keep them until they expire if the session keeps its leases. */
        for (uint32_t i = 0; i < n; i++)
            give_back(s, &leases[i], "connection closing");
        return;
    }
    Leaseq__LeasedJob *jobs = n ? arena_alloc(a, n * sizeof *jobs) : NULL;
    Leaseq__LeasedJob **ptrs = n ? arena_alloc(a, n * sizeof *ptrs) : NULL;
    const uint8_t **payloads = n ? arena_alloc(a, n * sizeof *payloads) : NULL;
    const lq_lease **sent = n ? arena_alloc(a, n * sizeof *sent) : NULL;
    if (n > 0 && (jobs == NULL || ptrs == NULL || payloads == NULL || sent == NULL)) {
        for (uint32_t i = 0; i < n; i++)
            give_back(s, &leases[i], "broker out of memory");
        srv_send_error(s, conn, request_id, LQ_E_INTERNAL, "out of memory");
        return;
    }
    uint64_t total = 0, meta_est = 64;
    uint32_t k = 0;
    for (uint32_t i = 0; i < n; i++) {
        const lq_lease *l = &leases[i];
        lq_job_view v;
        lq_err e = srv_get_job(s, l->job_id, &v);
        if (e != LQ_OK) {
            LQ_LOGE("leased job missing from the store", "job=%llu error=%s", (unsigned long long)l->job_id,
                    lq_err_name(e));
            give_back_counted(s, l, "job record unreadable");
            continue;
        }
        /* Upper bound of this job's share of the meta (fields, tags and lengths included). */
        uint64_t job_meta = (uint64_t)v.headers_len + v.rec.last_error.len + l->queue.len + l->lane.len +
                            l->tenant.len + 128;
        if (k > 0 && (total + v.payload_len > s->cfg->max_payload_bytes || meta_est + job_meta > LQ_FRAME_META_MAX)) {
            /* One reply frame carries at most max_payload bytes and 1 MiB of meta, the caps the
             * client checks: what does not fit goes back at once. */
            give_back(s, l, "dequeue reply full");
            continue;
        }
        meta_est += job_meta;
        Leaseq__LeasedJob *j = &jobs[k];
        leaseq__leased_job__init(j);
        j->job_id = l->job_id;
        j->lease_token = l->token;
        j->queue = srv_arena_str(a, l->queue);
        j->lane = srv_arena_str(a, l->lane);
        j->tenant = srv_arena_str(a, l->tenant);
        j->attempt = l->attempt;
        j->lease_expires_ms = l->expires_ms;
        j->priority = (int32_t)l->priority;
        j->enqueued_at_ms = l->enqueued_ms;
        j->payload_len = v.payload_len;
        j->last_error = srv_arena_str(a, v.rec.last_error);
        if (v.headers_len > 0) {
            Leaseq__HeaderList *hl = leaseq__header_list__unpack(&a->pb, v.headers_len, v.headers);
            if (hl != NULL) {
                j->n_headers = hl->n_headers;
                j->headers = hl->headers;
            }
        }
        payloads[k] = v.payload;
        sent[k] = l;
        total += v.payload_len;
        ptrs[k++] = j;
    }
    Leaseq__DequeueReply dr = LEASEQ__DEQUEUE_REPLY__INIT;
    dr.n_jobs = k;
    dr.jobs = ptrs;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = request_id;
    r.body_case = LEASEQ__RESPONSE__BODY_DEQUEUE;
    r.dequeue = &dr;
    size_t meta = leaseq__response__get_packed_size(&r);
    size_t frame = LQ_FRAME_HEADER_BYTES + meta + total;
    uint8_t *p = lq_loop_out_reserve(s->loop, conn, frame);
    if (p == NULL) {
        /* the connection is being dropped: these leases never reach it */
        for (uint32_t i = 0; i < k; i++)
            give_back(s, sent[i], "connection dropped");
        return;
    }
    lq_frame_header(p, (uint32_t)meta, (uint32_t)total);
    size_t packed = leaseq__response__pack(&r, p + LQ_FRAME_HEADER_BYTES);
    LQ_ASSERT(packed == meta);
    uint8_t *dst = p + LQ_FRAME_HEADER_BYTES + meta;
    for (uint32_t i = 0; i < k; i++) {
        memcpy(dst, payloads[i], jobs[i].payload_len);
        dst += jobs[i].payload_len;
    }
    lq_loop_out_commit(s->loop, conn, frame);
}
