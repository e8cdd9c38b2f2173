/* The libleaseq API calls (leaseq.h), built from the steps in session.c. */
#include "client.h"

#include <stdlib.h>
#include <string.h>

/* Request meta around the items: request id, oneof tag, Enqueue length prefix. */
#define ENQUEUE_META_OVERHEAD 32u

static size_t str_wire_max(const char *s)
{
    size_t n = s != NULL ? strlen(s) : 0;
    return n == 0 ? 0 : 1 + 5 + n;
}

/* An upper bound of the bytes one item takes in the Enqueue meta (tag and length prefix
 * included), cheap enough to decide frame boundaries before anything is built. */
static size_t item_wire_max(const leaseq_job_spec *j)
{
    size_t n = 1 + 5 + str_wire_max(j->queue) + str_wire_max(j->lane) + str_wire_max(j->tenant) +
               str_wire_max(j->idempotency_key) + 5 * 11;
    for (size_t i = 0; i < j->n_headers; i++)
        n += 1 + 5 + str_wire_max(j->headers[i].key) + str_wire_max(j->headers[i].value);
    return n;
}

/* Whether job can go on the wire at all; the reason goes to the handle's message. */
static leaseq_err job_check(leaseq *c, const leaseq_job_spec *j, size_t idx, bool set_msg)
{
    const char *why = NULL;
    leaseq_err e = LEASEQ_E_INVALID_ARGUMENT;
    if (j->queue == NULL || j->queue[0] == '\0')
        why = "queue is required";
    else if (j->payload_len > 0 && j->payload == NULL)
        why = "payload is NULL but payload_len is not 0";
    else if (j->n_headers > 0 && j->headers == NULL)
        why = "headers is NULL but n_headers is not 0";
    if (why == NULL)
        for (size_t i = 0; i < j->n_headers && why == NULL; i++)
            if (j->headers[i].key == NULL)
                why = "a header has no key";
    if (why == NULL) {
        e = LEASEQ_E_FRAME_TOO_LARGE;
        size_t wire = item_wire_max(j);
        uint32_t max_payload = c->srv.max_payload_bytes ? c->srv.max_payload_bytes : UINT32_MAX;
        if (j->payload_len > max_payload)
            why = "payload is above the broker's max_payload_bytes";
        else if (wire + ENQUEUE_META_OVERHEAD > LQ_FRAME_META_MAX)
            why = "job metadata (headers, names) is above the 1 MiB meta limit";
        else if (c->srv.max_frame_bytes != 0 &&
                 LQ_FRAME_HEADER_BYTES + ENQUEUE_META_OVERHEAD + wire + (uint64_t)j->payload_len >
                     c->srv.max_frame_bytes)
            why = "job is above the broker's max_frame_bytes";
    }
    if (why == NULL)
        return LEASEQ_OK;
    if (set_msg && c->errmsg[0] == '\0')
        lqc_fail(c, e, "job %zu: %s", idx, why);
    return e;
}

static Leaseq__EnqueueItem *build_item(leaseq *c, const leaseq_job_spec *j)
{
    Leaseq__EnqueueItem *it = lqc_enc_alloc(c, sizeof *it);
    if (it == NULL)
        return NULL;
    leaseq__enqueue_item__init(it);
    /* protobuf-c only reads these while packing; the caller's strings outlive the frame. */
    it->queue = (char *)j->queue;
    if (j->lane != NULL)
        it->lane = (char *)j->lane;
    if (j->tenant != NULL)
        it->tenant = (char *)j->tenant;
    if (j->idempotency_key != NULL)
        it->idempotency_key = (char *)j->idempotency_key;
    it->priority = j->priority;
    it->delay_ms = j->delay_ms;
    it->deadline_ms = j->deadline_ms;
    it->max_attempts = j->max_attempts;
    it->payload_len = (uint32_t)j->payload_len;
    if (j->n_headers > 0) {
        it->headers = lqc_enc_alloc(c, j->n_headers * sizeof *it->headers);
        Leaseq__Header *hs = lqc_enc_alloc(c, j->n_headers * sizeof *hs);
        if (it->headers == NULL || hs == NULL)
            return NULL;
        for (size_t i = 0; i < j->n_headers; i++) {
            leaseq__header__init(&hs[i]);
            hs[i].key = (char *)j->headers[i].key;
            if (j->headers[i].value != NULL)
                hs[i].value = (char *)j->headers[i].value;
            it->headers[i] = &hs[i];
        }
        it->n_headers = j->n_headers;
    }
    return it;
}

typedef struct {
    uint64_t request_id;
    size_t first, end; /* jobs[first, end) went in this frame, minus those job_check refused */
} frame_span;

/* A transport failure ends the batch: every job still waiting for an answer gets e. */
static void fail_unanswered(leaseq_enqueue_result *res, size_t first, size_t end, leaseq_err e,
                            const bool *refused)
{
    for (size_t i = first; i < end; i++)
        if (!refused[i - first])
            res[i].err = e;
}

/* Builds and sends one frame of jobs from *next; *sent is false when nothing was left. */
static leaseq_err send_frame(leaseq *c, const leaseq_job_spec *jobs, size_t n, leaseq_enqueue_result *res,
                             size_t *next, frame_span *span, bool *sent, uint64_t deadline_ms)
{
    Leaseq__EnqueueItem **items = lqc_enc_alloc(c, LQC_BATCH_ITEMS_MAX * sizeof *items);
    struct iovec iov[1 + LQC_BATCH_ITEMS_MAX];
    if (items == NULL)
        return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory building an enqueue frame");
    size_t count = 0, meta = ENQUEUE_META_OVERHEAD;
    uint64_t payload = 0;
    uint64_t frame_max = c->srv.max_frame_bytes ? c->srv.max_frame_bytes : UINT32_MAX;
    /* The broker caps a frame's whole payload (every job's bytes together) at its per-job
     * max_payload_bytes, so a frame of big jobs holds fewer than 256 of them. */
    uint64_t payload_max = c->srv.max_payload_bytes ? c->srv.max_payload_bytes : UINT32_MAX;
    span->first = *next;
    while (*next < n && count < LQC_BATCH_ITEMS_MAX) {
        const leaseq_job_spec *j = &jobs[*next];
        if (res[*next].err != LEASEQ_OK) {
            (*next)++;
            continue;
        }
        size_t wire = item_wire_max(j);
        if (count > 0 && (meta + wire > LQ_FRAME_META_MAX || payload + j->payload_len > payload_max ||
                          LQ_FRAME_HEADER_BYTES + meta + wire + payload + j->payload_len > frame_max))
            break;
        items[count] = build_item(c, j);
        if (items[count] == NULL)
            return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory building an enqueue frame");
        iov[1 + count].iov_base = (void *)j->payload;
        iov[1 + count].iov_len = j->payload_len;
        count++;
        meta += wire;
        payload += j->payload_len;
        (*next)++;
    }
    span->end = *next;
    *sent = count > 0;
    if (count == 0)
        return LEASEQ_OK;
    Leaseq__Enqueue enq = LEASEQ__ENQUEUE__INIT;
    enq.n_items = count;
    enq.items = items;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_ENQUEUE;
    req.enqueue = &enq;
    bool wrote_any;
    leaseq_err e = lqc_send(c, &req, iov, (int)(1 + count), (size_t)payload, deadline_ms, &wrote_any);
    span->request_id = req.request_id;
    return e;
}

/* Fills res[] for the jobs of span from one EnqueueReply (or the frame's error). */
static leaseq_err take_reply(leaseq *c, const Leaseq__Response *resp, const lq_frame *f,
                             const frame_span *span, leaseq_enqueue_result *res)
{
    leaseq_err fe = lqc_reply_error(c, resp);
    if (fe == LEASEQ_E_PROTOCOL_ERROR || fe == LEASEQ_E_FRAME_TOO_LARGE)
        return fe; /* the broker closes after these; the whole batch ends */
    if (fe != LEASEQ_OK) {
        /* A refusal of the whole frame (UNAUTHENTICATED, QUEUE_FULL, ...) is each job's answer. */
        for (size_t i = span->first; i < span->end; i++)
            if (res[i].err == LEASEQ_OK)
                res[i].err = fe;
        return LEASEQ_OK;
    }
    size_t want = 0;
    for (size_t i = span->first; i < span->end; i++)
        want += res[i].err == LEASEQ_OK;
    if (resp->body_case != LEASEQ__RESPONSE__BODY_ENQUEUE || resp->enqueue->n_results != want ||
        f->payload_len != 0) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "enqueue reply does not match its %zu jobs", want);
    }
    size_t k = 0;
    for (size_t i = span->first; i < span->end; i++) {
        if (res[i].err != LEASEQ_OK)
            continue;
        const Leaseq__EnqueueResult *r = resp->enqueue->results[k++];
        res[i].job_id = r->job_id;
        res[i].duplicate = r->duplicate;
        if (r->error != NULL && r->error->code != LEASEQ__ERROR_CODE__OK) {
            unsigned code = (unsigned)r->error->code;
            res[i].err = code <= LEASEQ_E_UNAVAILABLE ? (leaseq_err)code : LEASEQ_E_INTERNAL;
            if (c->errmsg[0] == '\0')
                lqc_fail(c, res[i].err, "%s", r->error->message ? r->error->message : "");
            if (r->error->retry_after_ms > c->retry_after_ms)
                c->retry_after_ms = r->error->retry_after_ms;
        }
    }
    return LEASEQ_OK;
}

static leaseq_err enqueue_many(leaseq *c, const leaseq_job_spec *jobs, size_t n, leaseq_enqueue_result *res,
                               uint64_t deadline_ms)
{
    for (size_t i = 0; i < n; i++)
        res[i] = (leaseq_enqueue_result){ .err = LEASEQ_OK };
    leaseq_err e = lqc_ensure(c, deadline_ms);
    if (e != LEASEQ_OK) {
        for (size_t i = 0; i < n; i++)
            res[i].err = e;
        return e;
    }
    for (size_t i = 0; i < n; i++)
        res[i].err = job_check(c, &jobs[i], i, true);

    frame_span win[LQC_BATCH_WINDOW];
    size_t n_win = 0, next = 0;
    /* refused[] marks jobs job_check turned away, so failure paths leave their reason alone. */
    bool *refused = calloc(n, sizeof *refused); /* owner: this call, freed below */
    if (refused == NULL)
        return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory");
    for (size_t i = 0; i < n; i++)
        refused[i] = res[i].err != LEASEQ_OK;

    while (next < n || n_win > 0) {
        while (n_win < LQC_BATCH_WINDOW && next < n) {
            size_t first = next;
            bool sent = false;
            e = send_frame(c, jobs, n, res, &next, &win[n_win], &sent, deadline_ms);
            if (e != LEASEQ_OK) {
                fail_unanswered(res, first, n, e, refused + first);
                goto fail_window;
            }
            if (sent)
                n_win++;
        }
        if (n_win == 0)
            break;
        Leaseq__Response *resp;
        lq_frame f;
        e = lqc_recv(c, deadline_ms, &resp, &f);
        if (e != LEASEQ_OK)
            goto fail_rest;
        size_t k = 0;
        while (k < n_win && win[k].request_id != resp->request_id)
            k++;
        if (k == n_win) {
            lqc_conn_close(&c->conn);
            e = lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "reply for request %llu, which is not in flight",
                         (unsigned long long)resp->request_id);
            goto fail_rest;
        }
        frame_span span = win[k];
        win[k] = win[--n_win];
        e = take_reply(c, resp, &f, &span, res);
        if (e != LEASEQ_OK) {
            fail_unanswered(res, span.first, span.end, e, refused + span.first);
            goto fail_rest;
        }
    }
    free(refused);
    return LEASEQ_OK;

fail_rest:
    fail_unanswered(res, next, n, e, refused + next);
fail_window:
    for (size_t k = 0; k < n_win; k++)
        fail_unanswered(res, win[k].first, win[k].end, e, refused + win[k].first);
    free(refused);
    lqc_conn_close(&c->conn); /* replies may still be on the way: never read them as another call's */
    return e;
}

leaseq_err leaseq_enqueue_batch(leaseq *c, const leaseq_job_spec *jobs, size_t n,
                                leaseq_enqueue_result *results, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (n > 0 && (jobs == NULL || results == NULL))
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "jobs and results are required"));
    if (n == 0)
        return lqc_end(c, LEASEQ_OK);
    e = enqueue_many(c, jobs, n, results, deadline_ms);
    return lqc_end(c, e);
}

leaseq_err leaseq_enqueue(leaseq *c, const leaseq_job_spec *job, uint64_t *job_id, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (job == NULL || job->queue == NULL || job->queue[0] == '\0')
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue is required"));
    leaseq_enqueue_result r;
    e = enqueue_many(c, job, 1, &r, deadline_ms);
    if (e == LEASEQ_OK)
        e = r.err;
    if (e == LEASEQ_OK && job_id != NULL)
        *job_id = r.job_id;
    if (e != LEASEQ_OK && c->errmsg[0] != '\0' && strncmp(c->errmsg, "job 0: ", 7) == 0)
        memmove(c->errmsg, c->errmsg + 7, strlen(c->errmsg + 7) + 1);
    return lqc_end(c, e);
}

/* For replies that carry no payload: any payload bytes mean the broker and we disagree. */
static leaseq_err no_payload(leaseq *c, const lq_frame *f)
{
    if (f->payload_len == 0)
        return LEASEQ_OK;
    lqc_conn_close(&c->conn);
    return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "reply carries %u unexpected payload bytes", f->payload_len);
}

/* One request without payload, one reply without payload. */
static leaseq_err simple_call(leaseq *c, Leaseq__Request *req, Leaseq__Response__BodyCase want,
                              uint64_t deadline_ms, Leaseq__Response **resp)
{
    struct iovec iov[1];
    lq_frame f;
    leaseq_err e = lqc_call(c, req, iov, 1, 0, want, deadline_ms, resp, &f);
    return e != LEASEQ_OK ? e : no_payload(c, &f);
}

static size_t str_size(const char *s)
{
    return (s != NULL ? strlen(s) : 0) + 1;
}

/* Copies s (NULL -> "") to *cursor and advances it. */
static char *put_str(char **cursor, const char *s)
{
    size_t n = str_size(s);
    char *out = *cursor;
    memcpy(out, s != NULL ? s : "", n);
    *cursor += n;
    return out;
}

/* Turns a DequeueReply into one caller-owned block: the lease array, then every header, then
 * strings and payloads, so leaseq_leases_free is one free and nothing can leak halfway. */
static leaseq_err take_leases(leaseq *c, const Leaseq__DequeueReply *r, const lq_frame *f, uint32_t max_jobs,
                              leaseq_lease **out, size_t *n_out)
{
    if (r->n_jobs > max_jobs) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "broker sent %zu jobs for at most %u", r->n_jobs, max_jobs);
    }
    uint64_t payload_sum = 0;
    size_t n_headers = 0, bytes = 0;
    for (size_t i = 0; i < r->n_jobs; i++) {
        const Leaseq__LeasedJob *j = r->jobs[i];
        if (j->payload_len > c->max_payload_bytes) {
            lqc_conn_close(&c->conn);
            return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "job %llu payload of %u bytes is above the cap of %u",
                            (unsigned long long)j->job_id, j->payload_len, c->max_payload_bytes);
        }
        payload_sum += j->payload_len;
        n_headers += j->n_headers;
        bytes += str_size(j->queue) + str_size(j->lane) + str_size(j->tenant) + str_size(j->last_error);
        for (size_t h = 0; h < j->n_headers; h++)
            bytes += str_size(j->headers[h]->key) + str_size(j->headers[h]->value);
    }
    if (payload_sum != f->payload_len) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "job payloads add up to %llu bytes, frame carries %u",
                        (unsigned long long)payload_sum, f->payload_len);
    }
    *out = NULL;
    *n_out = 0;
    if (r->n_jobs == 0)
        return LEASEQ_OK;
    /* Every size here is bounded by the frame caps, so the sum cannot overflow size_t. */
    size_t total = r->n_jobs * sizeof(leaseq_lease) + n_headers * sizeof(leaseq_header) + bytes +
                   (size_t)payload_sum;
    leaseq_lease *ls = malloc(total); /* owner: caller, leaseq_leases_free */
    if (ls == NULL)
        return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory for %zu leased jobs", r->n_jobs);
    leaseq_header *hs = (leaseq_header *)(ls + r->n_jobs);
    char *cursor = (char *)(hs + n_headers);
    const uint8_t *payload = f->payload;
    for (size_t i = 0; i < r->n_jobs; i++) {
        const Leaseq__LeasedJob *j = r->jobs[i];
        leaseq_lease *l = &ls[i];
        l->job_id = j->job_id;
        l->lease_token = j->lease_token;
        l->queue = put_str(&cursor, j->queue);
        l->lane = put_str(&cursor, j->lane);
        l->tenant = put_str(&cursor, j->tenant);
        l->last_error = put_str(&cursor, j->last_error);
        l->attempt = j->attempt;
        l->priority = j->priority;
        l->lease_expires_ms = j->lease_expires_ms;
        l->enqueued_at_ms = j->enqueued_at_ms;
        l->headers = j->n_headers > 0 ? hs : NULL;
        l->n_headers = j->n_headers;
        for (size_t h = 0; h < j->n_headers; h++, hs++) {
            hs->key = put_str(&cursor, j->headers[h]->key);
            hs->value = put_str(&cursor, j->headers[h]->value);
        }
        l->payload = (uint8_t *)cursor;
        l->payload_len = j->payload_len;
        memcpy(cursor, payload, j->payload_len);
        cursor += j->payload_len;
        payload += j->payload_len;
    }
    LQC_ASSERT((size_t)(cursor - (char *)ls) == total);
    *out = ls;
    *n_out = r->n_jobs;
    return LEASEQ_OK;
}

leaseq_err leaseq_dequeue(leaseq *c, const char *const *queues, size_t n_queues, uint32_t max_jobs,
                          uint32_t wait_ms, uint32_t lease_ms, leaseq_lease **leases, size_t *n_leases,
                          int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (leases == NULL || n_leases == NULL || queues == NULL || n_queues == 0)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queues, leases and n_leases are required"));
    *leases = NULL;
    *n_leases = 0;
    for (size_t i = 0; i < n_queues; i++)
        if (queues[i] == NULL || queues[i][0] == '\0')
            return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue %zu is empty", i));
    if ((uint64_t)timeout_ms <= wait_ms)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "timeout_ms (%d) must exceed wait_ms (%u)",
                                   timeout_ms, wait_ms));
    uint32_t max = max_jobs ? max_jobs : 1;
    Leaseq__Dequeue d = LEASEQ__DEQUEUE__INIT;
    d.queues = (char **)queues;
    d.n_queues = n_queues;
    d.max_jobs = max_jobs;
    d.wait_ms = wait_ms;
    d.lease_ms = lease_ms;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_DEQUEUE;
    req.dequeue = &d;
    /* This reply alone may carry several payloads; every other reply keeps the one-job cap. */
    uint64_t cap = (uint64_t)max * c->max_payload_bytes;
    c->conn.max_frame_payload = cap > LQC_FRAME_PAYLOAD_MAX ? LQC_FRAME_PAYLOAD_MAX : (uint32_t)cap;
    struct iovec iov[1];
    Leaseq__Response *resp;
    lq_frame f;
    e = lqc_call(c, &req, iov, 1, 0, LEASEQ__RESPONSE__BODY_DEQUEUE, deadline_ms, &resp, &f);
    c->conn.max_frame_payload = c->max_payload_bytes;
    if (e == LEASEQ_OK)
        e = take_leases(c, resp->dequeue, &f, max, leases, n_leases);
    return lqc_end(c, e);
}

void leaseq_leases_free(leaseq_lease *leases, size_t n)
{
    (void)n; /* one block: see take_leases */
    free(leases);
}

leaseq_err leaseq_ack(leaseq *c, uint64_t job_id, uint64_t token, const void *result, size_t result_len,
                      int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (result_len > 0 && result == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "result is NULL but result_len is not 0"));
    if (result_len > UINT32_MAX || (c->srv.max_payload_bytes != 0 && result_len > c->srv.max_payload_bytes))
        return lqc_end(c, lqc_fail(c, LEASEQ_E_FRAME_TOO_LARGE, "result of %zu bytes is above the broker's limit",
                                   result_len));
    Leaseq__Ack a = LEASEQ__ACK__INIT;
    a.job_id = job_id;
    a.lease_token = token;
    a.result_len = (uint32_t)result_len;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_ACK;
    req.ack = &a;
    struct iovec iov[2] = { { 0 }, { .iov_base = (void *)result, .iov_len = result_len } };
    Leaseq__Response *resp;
    lq_frame f;
    e = lqc_call(c, &req, iov, 2, result_len, LEASEQ__RESPONSE__BODY_ACK, deadline_ms, &resp, &f);
    if (e == LEASEQ_OK)
        e = no_payload(c, &f);
    return lqc_end(c, e);
}

leaseq_err leaseq_nack(leaseq *c, uint64_t job_id, uint64_t token, const leaseq_nack_opts *opts,
                       bool *dead_out, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    Leaseq__Nack nk = LEASEQ__NACK__INIT;
    nk.job_id = job_id;
    nk.lease_token = token;
    if (opts != NULL) {
        if (opts->error != NULL)
            nk.error = (char *)opts->error;
        nk.dead = opts->dead;
        nk.delay_set = opts->delay_set;
        nk.delay_ms = opts->delay_ms;
    }
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_NACK;
    req.nack = &nk;
    Leaseq__Response *resp;
    e = simple_call(c, &req, LEASEQ__RESPONSE__BODY_NACK, deadline_ms, &resp);
    if (e == LEASEQ_OK && dead_out != NULL)
        *dead_out = resp->nack->state == LEASEQ__JOB_STATE__DEAD;
    return lqc_end(c, e);
}

leaseq_err leaseq_extend(leaseq *c, uint64_t job_id, uint64_t token, uint32_t lease_ms,
                         uint64_t *expires_ms, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    Leaseq__Extend x = LEASEQ__EXTEND__INIT;
    x.job_id = job_id;
    x.lease_token = token;
    x.lease_ms = lease_ms;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_EXTEND;
    req.extend = &x;
    Leaseq__Response *resp;
    e = simple_call(c, &req, LEASEQ__RESPONSE__BODY_EXTEND, deadline_ms, &resp);
    if (e == LEASEQ_OK && expires_ms != NULL)
        *expires_ms = resp->extend->lease_expires_ms;
    return lqc_end(c, e);
}

leaseq_err leaseq_heartbeat(leaseq *c, uint32_t *leases_held, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    Leaseq__Heartbeat hb = LEASEQ__HEARTBEAT__INIT;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_HEARTBEAT;
    req.heartbeat = &hb;
    Leaseq__Response *resp;
    e = simple_call(c, &req, LEASEQ__RESPONSE__BODY_HEARTBEAT, deadline_ms, &resp);
    if (e == LEASEQ_OK && leases_held != NULL)
        *leases_held = resp->heartbeat->leases_held;
    return lqc_end(c, e);
}

leaseq_err leaseq_ping(leaseq *c, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    Leaseq__Ping p = LEASEQ__PING__INIT;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_PING;
    req.ping = &p;
    Leaseq__Response *resp;
    e = simple_call(c, &req, LEASEQ__RESPONSE__BODY_PONG, deadline_ms, &resp);
    return lqc_end(c, e);
}

/* Like take_leases: one caller-owned block, freed by leaseq_stats_free. */
static leaseq_err take_stats(leaseq *c, const Leaseq__StatsReply *r, leaseq_stats **out)
{
    size_t n_lanes = 0, bytes = 0;
    for (size_t q = 0; q < r->n_queues; q++) {
        n_lanes += r->queues[q]->n_lanes;
        bytes += str_size(r->queues[q]->name);
        for (size_t l = 0; l < r->queues[q]->n_lanes; l++)
            bytes += str_size(r->queues[q]->lanes[l]->name);
    }
    size_t total = sizeof(leaseq_stats) + r->n_queues * sizeof(leaseq_queue_stats) +
                   n_lanes * sizeof(leaseq_lane_stats) + bytes;
    leaseq_stats *s = malloc(total); /* owner: caller, leaseq_stats_free */
    if (s == NULL)
        return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory for stats");
    leaseq_queue_stats *qs = (leaseq_queue_stats *)(s + 1);
    leaseq_lane_stats *ls = (leaseq_lane_stats *)(qs + r->n_queues);
    char *cursor = (char *)(ls + n_lanes);
    s->queues = r->n_queues > 0 ? qs : NULL;
    s->n_queues = r->n_queues;
    for (size_t q = 0; q < r->n_queues; q++) {
        const Leaseq__QueueStats *rq = r->queues[q];
        qs[q].name = put_str(&cursor, rq->name);
        qs[q].lanes = rq->n_lanes > 0 ? ls : NULL;
        qs[q].n_lanes = rq->n_lanes;
        for (size_t l = 0; l < rq->n_lanes; l++, ls++) {
            const Leaseq__LaneStats *rl = rq->lanes[l];
            ls->name = put_str(&cursor, rl->name);
            ls->weight = rl->weight;
            ls->ready = rl->ready;
            ls->leased = rl->leased;
            ls->delayed = rl->delayed;
            ls->dead = rl->dead;
            ls->pending = rl->pending;
            ls->expired = rl->expired;
        }
    }
    LQC_ASSERT((size_t)(cursor - (char *)s) == total);
    *out = s;
    return LEASEQ_OK;
}

leaseq_err leaseq_get_stats(leaseq *c, const char *queue, leaseq_stats **out, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (out == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "out is required"));
    *out = NULL;
    Leaseq__Stats st = LEASEQ__STATS__INIT;
    if (queue != NULL)
        st.queue = (char *)queue;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_STATS;
    req.stats = &st;
    Leaseq__Response *resp;
    e = simple_call(c, &req, LEASEQ__RESPONSE__BODY_STATS, deadline_ms, &resp);
    if (e == LEASEQ_OK)
        e = take_stats(c, resp->stats, out);
    return lqc_end(c, e);
}

void leaseq_stats_free(leaseq_stats *s)
{
    free(s);
}
