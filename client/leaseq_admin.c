/* Admin calls about worker sessions (leaseq.h): Workers, ClearSuspect. */
#include "client.h"

#include <stdlib.h>
#include <string.h>

/* Admin replies carry no payload bytes; anything else is a broken broker. */
static leaseq_err no_payload(leaseq *c, const lq_frame *f)
{
    if (f->payload_len == 0)
        return LEASEQ_OK;
    lqc_conn_close(&c->conn);
    return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "unexpected %u payload bytes in an admin reply", f->payload_len);
}

static size_t str_size(const char *s)
{
    return (s != NULL ? strlen(s) : 0) + 1;
}

static char *put_str(char **cursor, const char *s)
{
    size_t n = str_size(s);
    char *out = *cursor;
    memcpy(out, s != NULL ? s : "", n);
    *cursor += n;
    return out;
}

/* One caller-owned block: the array, then the strings. */
static leaseq_err take_workers(leaseq *c, const Leaseq__WorkersReply *r, leaseq_worker_info **out, size_t *n)
{
    size_t bytes = 0;
    for (size_t i = 0; i < r->n_workers; i++)
        bytes += str_size(r->workers[i]->worker_id) + str_size(r->workers[i]->address);
    size_t total = r->n_workers * sizeof(leaseq_worker_info) + bytes;
    leaseq_worker_info *w = malloc(total > 0 ? total : 1); /* owner: caller, leaseq_workers_free */
    if (w == NULL)
        return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory for %zu workers", r->n_workers);
    char *cursor = (char *)(w + r->n_workers);
    for (size_t i = 0; i < r->n_workers; i++) {
        const Leaseq__WorkerInfo *x = r->workers[i];
        w[i] = (leaseq_worker_info){
            .session_id = x->session_id,
            .heartbeat_ms = x->heartbeat_ms,
            .leases_held = x->leases_held,
            .last_seen_age_ms = x->last_seen_age_ms,
            .stalled = x->stalled,
            .suspect = x->suspect,
            .suspect_for_ms = x->suspect_for_ms,
            .recent_losses = x->recent_losses,
        };
        w[i].worker_id = put_str(&cursor, x->worker_id);
        w[i].address = put_str(&cursor, x->address);
    }
    *out = w;
    *n = r->n_workers;
    return LEASEQ_OK;
}

leaseq_err leaseq_workers(leaseq *c, leaseq_worker_info **out, size_t *n, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (out == NULL || n == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "out and n are required"));
    *out = NULL;
    *n = 0;
    Leaseq__Workers w = LEASEQ__WORKERS__INIT;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_WORKERS;
    req.workers = &w;
    struct iovec iov[1];
    Leaseq__Response *resp;
    lq_frame f;
    e = lqc_call(c, &req, iov, 1, 0, LEASEQ__RESPONSE__BODY_WORKERS, deadline_ms, &resp, &f);
    if (e == LEASEQ_OK)
        e = no_payload(c, &f);
    if (e == LEASEQ_OK)
        e = take_workers(c, resp->workers, out, n);
    return lqc_end(c, e);
}

void leaseq_workers_free(leaseq_worker_info *w)
{
    free(w);
}

leaseq_err leaseq_clear_suspect(leaseq *c, const char *worker_id, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (worker_id == NULL || worker_id[0] == '\0')
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "worker_id is required"));
    Leaseq__ClearSuspect cs = LEASEQ__CLEAR_SUSPECT__INIT;
    cs.worker_id = (char *)worker_id;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_CLEAR_SUSPECT;
    req.clear_suspect = &cs;
    struct iovec iov[1];
    Leaseq__Response *resp;
    lq_frame f;
    e = lqc_call(c, &req, iov, 1, 0, LEASEQ__RESPONSE__BODY_CLEAR_SUSPECT, deadline_ms, &resp, &f);
    if (e == LEASEQ_OK)
        e = no_payload(c, &f);
    return lqc_end(c, e);
}
