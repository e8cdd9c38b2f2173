/* Operations calls (leaseq.h, "Operations"): Inspect, PauseLanes, Drain, Purge, DeadList,
 * Redrive, Cancel, Peek, ConfigGet, ConfigSet. One round trip each. */
#include "client.h"

#include <stdlib.h>
#include <string.h>

/* owner: caller */
static char *dup_str(const char *s)
{
    return strdup(s != NULL ? s : "");
}

/* One request/reply; *resp and *f valid until the next call on c. */
static leaseq_err round_trip(leaseq *c, Leaseq__Request *req, Leaseq__Response__BodyCase want, uint64_t deadline_ms,
                             Leaseq__Response **resp, lq_frame *f, bool payload_ok)
{
    struct iovec iov[1];
    leaseq_err e = lqc_call(c, req, iov, 1, 0, want, deadline_ms, resp, f);
    if (e == LEASEQ_OK && !payload_ok && f->payload_len != 0) {
        lqc_conn_close(&c->conn);
        e = lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "unexpected %u payload bytes in an admin reply", f->payload_len);
    }
    return e;
}

#define BEGIN()                                                                                                        \
    uint64_t deadline_ms;                                                                                              \
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);                                                             \
    if (e != LEASEQ_OK)                                                                                                \
        return e;                                                                                                      \
    Leaseq__Request req = LEASEQ__REQUEST__INIT;                                                                       \
    Leaseq__Response *resp = NULL;                                                                                     \
    lq_frame f;

static bool bad_name(const char *s)
{
    return s == NULL || s[0] == '\0';
}

/* ---- inspect ------------------------------------------------------------------------------ */

void leaseq_inspect_free(leaseq_inspect_result *r)
{
    if (r == NULL)
        return;
    for (size_t q = 0; q < r->n_queues; q++) {
        for (size_t l = 0; l < r->queues[q].n_lanes; l++)
            free(r->queues[q].lanes[l].name);
        free(r->queues[q].lanes);
        free(r->queues[q].name);
    }
    free(r->queues);
    free(r);
}

static leaseq_err take_inspect(leaseq *c, const Leaseq__InspectReply *ir, leaseq_inspect_result **out)
{
    leaseq_inspect_result *r = calloc(1, sizeof *r); /* owner: caller, leaseq_inspect_free */
    if (r == NULL || (ir->n_queues > 0 && (r->queues = calloc(ir->n_queues, sizeof *r->queues)) == NULL))
        goto nomem;
    for (size_t q = 0; q < ir->n_queues; q++, r->n_queues++) {
        const Leaseq__QueueInfo *x = ir->queues[q];
        leaseq_queue_info *y = &r->queues[q];
        y->draining = x->draining;
        y->lease_ms = x->lease_ms;
        y->max_attempts = x->max_attempts;
        if ((y->name = dup_str(x->name)) == NULL ||
            (x->n_lanes > 0 && (y->lanes = calloc(x->n_lanes, sizeof *y->lanes)) == NULL))
            goto nomem;
        for (size_t l = 0; l < x->n_lanes; l++, y->n_lanes++) {
            const Leaseq__LaneInfo *a = x->lanes[l];
            y->lanes[l] = (leaseq_lane_info){
                .weight = a->weight, .ready = a->ready, .leased = a->leased, .delayed = a->delayed,
                .dead = a->dead, .pending = a->pending, .paused = a->paused, .sheddable = a->sheddable,
                .paused_for_ms = a->paused_for_ms, .max_queued = a->max_queued,
                .max_queued_bytes = a->max_queued_bytes, .max_wait_ms = a->max_wait_ms,
                .oldest_ready_age_ms = a->oldest_ready_age_ms, .enqueued_total = a->enqueued_total,
                .leased_total = a->leased_total, .acked_total = a->acked_total,
                .expired_total = a->expired_total, .purged_total = a->purged_total,
                .dead_lettered_total = a->dead_lettered_total, .cancelled_total = a->cancelled_total,
                .enqueue_rate = a->enqueue_rate, .ack_rate = a->ack_rate,
            };
            if ((y->lanes[l].name = dup_str(a->name)) == NULL)
                goto nomem;
        }
    }
    *out = r;
    return LEASEQ_OK;
nomem:
    leaseq_inspect_free(r);
    return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory for the inspect reply");
}

leaseq_err leaseq_inspect(leaseq *c, const char *queue, leaseq_inspect_result **out, int timeout_ms)
{
    BEGIN()
    if (out == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "out is required"));
    *out = NULL;
    Leaseq__Inspect m = LEASEQ__INSPECT__INIT;
    m.queue = (char *)(queue != NULL ? queue : "");
    req.body_case = LEASEQ__REQUEST__BODY_INSPECT;
    req.inspect = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_INSPECT, deadline_ms, &resp, &f, false);
    if (e == LEASEQ_OK)
        e = take_inspect(c, resp->inspect, out);
    return lqc_end(c, e);
}

/* ---- pause, drain, purge, redrive, cancel --------------------------------------------------- */

leaseq_err leaseq_pause(leaseq *c, const char *queue, const char *lane, bool resume, uint64_t for_ms,
                        uint32_t *lanes, int timeout_ms)
{
    BEGIN()
    if (bad_name(queue))
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue is required"));
    Leaseq__PauseLanes m = LEASEQ__PAUSE_LANES__INIT;
    m.queue = (char *)queue;
    m.lane = (char *)(lane != NULL ? lane : "");
    m.resume = resume;
    m.for_ms = for_ms;
    req.body_case = LEASEQ__REQUEST__BODY_PAUSE;
    req.pause = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_PAUSE, deadline_ms, &resp, &f, false);
    if (e == LEASEQ_OK && lanes != NULL)
        *lanes = resp->pause->lanes;
    return lqc_end(c, e);
}

leaseq_err leaseq_drain(leaseq *c, const char *queue, bool stop, uint64_t *remaining, int timeout_ms)
{
    BEGIN()
    if (bad_name(queue))
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue is required"));
    Leaseq__Drain m = LEASEQ__DRAIN__INIT;
    m.queue = (char *)queue;
    m.stop = stop;
    req.body_case = LEASEQ__REQUEST__BODY_DRAIN;
    req.drain = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_DRAIN, deadline_ms, &resp, &f, false);
    if (e == LEASEQ_OK && remaining != NULL)
        *remaining = resp->drain->remaining;
    return lqc_end(c, e);
}

leaseq_err leaseq_purge(leaseq *c, const char *queue, const char *lane, uint64_t older_than_ms, bool dead,
                        uint64_t *purged, int timeout_ms)
{
    BEGIN()
    if (bad_name(queue))
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue is required"));
    Leaseq__Purge m = LEASEQ__PURGE__INIT;
    m.queue = (char *)queue;
    m.lane = (char *)(lane != NULL ? lane : "");
    m.older_than_ms = older_than_ms;
    m.dead = dead;
    req.body_case = LEASEQ__REQUEST__BODY_PURGE;
    req.purge = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_PURGE, deadline_ms, &resp, &f, false);
    if (e == LEASEQ_OK && purged != NULL)
        *purged = resp->purge->purged;
    return lqc_end(c, e);
}

leaseq_err leaseq_redrive(leaseq *c, const char *queue, uint64_t job_id, uint32_t limit, uint64_t *redriven,
                          int timeout_ms)
{
    BEGIN()
    if (bad_name(queue))
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue is required"));
    Leaseq__Redrive m = LEASEQ__REDRIVE__INIT;
    m.queue = (char *)queue;
    m.job_id = job_id;
    m.limit = limit;
    req.body_case = LEASEQ__REQUEST__BODY_REDRIVE;
    req.redrive = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_REDRIVE, deadline_ms, &resp, &f, false);
    if (e == LEASEQ_OK && redriven != NULL)
        *redriven = resp->redrive->redriven;
    return lqc_end(c, e);
}

leaseq_err leaseq_cancel(leaseq *c, uint64_t job_id, int timeout_ms)
{
    BEGIN()
    Leaseq__Cancel m = LEASEQ__CANCEL__INIT;
    m.job_id = job_id;
    req.body_case = LEASEQ__REQUEST__BODY_CANCEL;
    req.cancel = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_CANCEL, deadline_ms, &resp, &f, false);
    return lqc_end(c, e);
}

/* ---- dead list ------------------------------------------------------------------------------ */

void leaseq_dead_jobs_free(leaseq_dead_job *jobs, size_t n)
{
    if (jobs == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        free(jobs[i].lane);
        free(jobs[i].tenant);
        free(jobs[i].last_error);
    }
    free(jobs);
}

leaseq_err leaseq_dead_list(leaseq *c, const char *queue, uint64_t after_id, uint32_t limit,
                            leaseq_dead_job **out, size_t *n, uint64_t *total, int timeout_ms)
{
    BEGIN()
    if (bad_name(queue) || out == NULL || n == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue, out and n are required"));
    *out = NULL;
    *n = 0;
    Leaseq__DeadList m = LEASEQ__DEAD_LIST__INIT;
    m.queue = (char *)queue;
    m.after_id = after_id;
    m.limit = limit;
    req.body_case = LEASEQ__REQUEST__BODY_DEAD_LIST;
    req.dead_list = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_DEAD_LIST, deadline_ms, &resp, &f, false);
    if (e != LEASEQ_OK)
        return lqc_end(c, e);
    const Leaseq__DeadListReply *r = resp->dead_list;
    leaseq_dead_job *v = calloc(r->n_jobs ? r->n_jobs : 1, sizeof *v); /* owner: caller */
    if (v == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_NOMEM, "out of memory"));
    for (size_t i = 0; i < r->n_jobs; i++) {
        const Leaseq__DeadJob *x = r->jobs[i];
        v[i] = (leaseq_dead_job){.job_id = x->job_id, .attempts = x->attempts, .payload_len = x->payload_len,
                                 .enqueued_at_ms = x->enqueued_at_ms};
        v[i].lane = dup_str(x->lane);
        v[i].tenant = dup_str(x->tenant);
        v[i].last_error = dup_str(x->last_error);
        if (v[i].lane == NULL || v[i].tenant == NULL || v[i].last_error == NULL) {
            leaseq_dead_jobs_free(v, i + 1);
            return lqc_end(c, lqc_fail(c, LEASEQ_E_NOMEM, "out of memory"));
        }
    }
    *out = v;
    *n = r->n_jobs;
    if (total != NULL)
        *total = r->total;
    return lqc_end(c, LEASEQ_OK);
}

/* ---- peek ------------------------------------------------------------------------------------ */

void leaseq_job_info_free(leaseq_job_info *j)
{
    if (j == NULL)
        return;
    free(j->queue);
    free(j->lane);
    free(j->tenant);
    free(j->last_error);
    free(j->idempotency_key);
    for (size_t i = 0; i < j->n_headers; i++) {
        free((char *)j->headers[i].key);
        free((char *)j->headers[i].value);
    }
    free(j->headers);
    free(j->payload);
    free(j);
}

leaseq_err leaseq_peek(leaseq *c, uint64_t job_id, bool with_payload, leaseq_job_info **out, int timeout_ms)
{
    BEGIN()
    if (out == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "out is required"));
    *out = NULL;
    Leaseq__Peek m = LEASEQ__PEEK__INIT;
    m.job_id = job_id;
    m.payload = with_payload;
    req.body_case = LEASEQ__REQUEST__BODY_PEEK;
    req.peek = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_PEEK, deadline_ms, &resp, &f, with_payload);
    if (e != LEASEQ_OK)
        return lqc_end(c, e);
    const Leaseq__PeekReply *r = resp->peek;
    leaseq_job_info *j = calloc(1, sizeof *j); /* owner: caller, leaseq_job_info_free */
    if (j == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_NOMEM, "out of memory"));
    *j = (leaseq_job_info){.job_id = r->job_id, .state = (leaseq_job_state)r->state, .finished = r->finished,
                           .priority = r->priority, .attempts = r->attempts, .max_attempts = r->max_attempts,
                           .payload_len = r->payload_len, .enqueued_at_ms = r->enqueued_at_ms,
                           .deadline_ms = r->deadline_ms, .not_before_ms = r->not_before_ms};
    j->queue = dup_str(r->queue);
    j->lane = dup_str(r->lane);
    j->tenant = dup_str(r->tenant);
    j->last_error = dup_str(r->last_error);
    j->idempotency_key = dup_str(r->idempotency_key);
    bool ok = j->queue && j->lane && j->tenant && j->last_error && j->idempotency_key;
    if (ok && r->n_headers > 0) {
        ok = (j->headers = calloc(r->n_headers, sizeof *j->headers)) != NULL;
        for (size_t i = 0; ok && i < r->n_headers; i++, j->n_headers++) {
            j->headers[i].key = dup_str(r->headers[i]->key);
            j->headers[i].value = dup_str(r->headers[i]->value);
            ok = j->headers[i].key != NULL && j->headers[i].value != NULL;
        }
    }
    if (ok && f.payload_len > 0) {
        ok = (j->payload = malloc(f.payload_len)) != NULL;
        if (ok)
            memcpy(j->payload, f.payload, f.payload_len);
    }
    if (!ok) {
        leaseq_job_info_free(j);
        return lqc_end(c, lqc_fail(c, LEASEQ_E_NOMEM, "out of memory"));
    }
    *out = j;
    return lqc_end(c, LEASEQ_OK);
}

/* ---- config ---------------------------------------------------------------------------------- */

void leaseq_config_free(leaseq_config_group *g, size_t n)
{
    if (g == NULL)
        return;
    for (size_t i = 0; i < n; i++) {
        for (size_t k = 0; k < g[i].n_items; k++) {
            free((char *)g[i].items[k].key);
            free((char *)g[i].items[k].value);
        }
        free(g[i].items);
        free(g[i].lane);
    }
    free(g);
}

static bool take_items(leaseq_config_group *g, Leaseq__ConfigItem *const *items, size_t n)
{
    if (n > 0 && (g->items = calloc(n, sizeof *g->items)) == NULL)
        return false;
    for (size_t k = 0; k < n; k++, g->n_items++) {
        g->items[k].key = dup_str(items[k]->key);
        g->items[k].value = dup_str(items[k]->value);
        if (g->items[k].key == NULL || g->items[k].value == NULL) {
            g->n_items++;
            return false;
        }
    }
    return true;
}

leaseq_err leaseq_config_get(leaseq *c, const char *queue, leaseq_config_group **groups, size_t *n, int timeout_ms)
{
    BEGIN()
    if (bad_name(queue) || groups == NULL || n == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue, groups and n are required"));
    *groups = NULL;
    *n = 0;
    Leaseq__ConfigGet m = LEASEQ__CONFIG_GET__INIT;
    m.queue = (char *)queue;
    req.body_case = LEASEQ__REQUEST__BODY_CONFIG_GET;
    req.config_get = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_CONFIG_GET, deadline_ms, &resp, &f, false);
    if (e != LEASEQ_OK)
        return lqc_end(c, e);
    const Leaseq__ConfigReply *r = resp->config_get;
    size_t ng = 1 + r->n_lanes;
    leaseq_config_group *g = calloc(ng, sizeof *g); /* owner: caller, leaseq_config_free */
    bool ok = g != NULL && take_items(&g[0], r->items, r->n_items);
    for (size_t i = 0; ok && i < r->n_lanes; i++)
        ok = (g[i + 1].lane = dup_str(r->lanes[i]->name)) != NULL &&
             take_items(&g[i + 1], r->lanes[i]->items, r->lanes[i]->n_items);
    if (!ok) {
        leaseq_config_free(g, g != NULL ? ng : 0);
        return lqc_end(c, lqc_fail(c, LEASEQ_E_NOMEM, "out of memory"));
    }
    *groups = g;
    *n = ng;
    return lqc_end(c, LEASEQ_OK);
}

leaseq_err leaseq_config_set(leaseq *c, const char *queue, const char *lane, const leaseq_header *items,
                             size_t n_items, int timeout_ms)
{
    BEGIN()
    if (bad_name(queue) || n_items == 0 || items == NULL || n_items > 64)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "queue and 1..64 items are required"));
    Leaseq__ConfigItem ci[64], *cp[64];
    for (size_t i = 0; i < n_items; i++) {
        leaseq__config_item__init(&ci[i]);
        ci[i].key = (char *)items[i].key;
        ci[i].value = (char *)items[i].value;
        cp[i] = &ci[i];
    }
    Leaseq__ConfigSet m = LEASEQ__CONFIG_SET__INIT;
    m.queue = (char *)queue;
    m.lane = (char *)(lane != NULL ? lane : "");
    m.n_items = n_items;
    m.items = cp;
    req.body_case = LEASEQ__REQUEST__BODY_CONFIG_SET;
    req.config_set = &m;
    e = round_trip(c, &req, LEASEQ__RESPONSE__BODY_CONFIG_SET, deadline_ms, &resp, &f, false);
    return lqc_end(c, e);
}
