/* Waiting for a job's outcome (leaseq.h): Wait / WaitReply, result bytes in the frame payload. */
#include "client.h"

#include <stdlib.h>
#include <string.h>

const char *leaseq_state_name(leaseq_job_state s)
{
    switch (s) {
    case LEASEQ_STATE_READY: return "ready";
    case LEASEQ_STATE_LEASED: return "leased";
    case LEASEQ_STATE_DELAYED: return "delayed";
    case LEASEQ_STATE_DONE: return "done";
    case LEASEQ_STATE_DEAD: return "dead";
    case LEASEQ_STATE_EXPIRED: return "expired";
    case LEASEQ_STATE_PURGED: return "purged";
    case LEASEQ_STATE_CANCELLED: return "cancelled";
    }
    return "unknown";
}

void leaseq_outcome_free(leaseq_outcome *o)
{
    if (o == NULL)
        return;
    free(o->error); /* the one block: error text, then the result bytes */
    memset(o, 0, sizeof *o);
}

/* Copies a WaitReply into one caller-owned block: error text, then result bytes. */
static leaseq_err take_outcome(leaseq *c, uint64_t job_id, const Leaseq__WaitReply *r, const lq_frame *f,
                               leaseq_outcome *out)
{
    if (r->result_len != f->payload_len) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "wait reply claims %u result bytes, frame carries %u",
                        r->result_len, f->payload_len);
    }
    if (r->state < LEASEQ__JOB_STATE__READY || r->state > LEASEQ__JOB_STATE__CANCELLED) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "wait reply with unknown job state %d", (int)r->state);
    }
    if (r->job_id != job_id && r->job_id != 0) {
        lqc_conn_close(&c->conn);
        return lqc_fail(c, LEASEQ_E_PROTOCOL_ERROR, "wait reply for job %llu while waiting for %llu",
                        (unsigned long long)r->job_id, (unsigned long long)job_id);
    }
    size_t elen = r->error != NULL ? strlen(r->error) : 0;
    char *block = malloc(elen + 1 + f->payload_len); /* owner: caller, leaseq_outcome_free */
    if (block == NULL)
        return lqc_fail(c, LEASEQ_E_NOMEM, "out of memory for a %u-byte result", f->payload_len);
    memcpy(block, elen > 0 ? r->error : "", elen + 1);
    out->job_id = job_id;
    out->state = (leaseq_job_state)r->state;
    out->error = block;
    out->result_len = f->payload_len;
    out->result = f->payload_len > 0 ? (uint8_t *)block + elen + 1 : NULL;
    if (f->payload_len > 0)
        memcpy(out->result, f->payload, f->payload_len);
    return LEASEQ_OK;
}

/* The wait itself, inside a call begun by the caller (shared by both API calls). */
static leaseq_err wait_job(leaseq *c, uint64_t job_id, uint32_t wait_ms, leaseq_outcome *out, uint64_t deadline_ms)
{
    Leaseq__Wait w = LEASEQ__WAIT__INIT;
    w.job_id = job_id;
    w.timeout_ms = wait_ms;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.body_case = LEASEQ__REQUEST__BODY_WAIT;
    req.wait = &w;
    struct iovec iov[1];
    Leaseq__Response *resp;
    lq_frame f;
    leaseq_err e = lqc_call(c, &req, iov, 1, 0, LEASEQ__RESPONSE__BODY_WAIT, deadline_ms, &resp, &f);
    return e != LEASEQ_OK ? e : take_outcome(c, job_id, resp->wait, &f, out);
}

leaseq_err leaseq_wait(leaseq *c, uint64_t job_id, uint32_t wait_ms, leaseq_outcome *out, int timeout_ms)
{
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (out == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "out is required"));
    memset(out, 0, sizeof *out);
    if ((uint64_t)timeout_ms <= wait_ms)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "timeout_ms (%d) must exceed wait_ms (%u)",
                                   timeout_ms, wait_ms));
    return lqc_end(c, wait_job(c, job_id, wait_ms, out, deadline_ms));
}

leaseq_err leaseq_enqueue_and_wait(leaseq *c, const leaseq_job_spec *job, uint32_t wait_ms, uint64_t *job_id,
                                   leaseq_outcome *out, int timeout_ms)
{
    if (job_id != NULL)
        *job_id = 0;
    uint64_t deadline_ms;
    leaseq_err e = lqc_begin(c, timeout_ms, &deadline_ms);
    if (e != LEASEQ_OK)
        return e;
    if (out == NULL)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "out is required"));
    memset(out, 0, sizeof *out);
    if ((uint64_t)timeout_ms <= wait_ms)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_INVALID_ARGUMENT, "timeout_ms (%d) must exceed wait_ms (%u)",
                                   timeout_ms, wait_ms));
    uint64_t id = 0;
    e = leaseq_enqueue(c, job, &id, timeout_ms); /* a call of its own: its own error state */
    if (e != LEASEQ_OK)
        return e;
    if (job_id != NULL)
        *job_id = id;
    uint64_t unused;
    (void)lqc_begin(c, timeout_ms, &unused); /* fresh error state for the wait; deadline_ms stays */
    uint64_t now = lqc_now_ms();
    uint64_t left = deadline_ms > now ? deadline_ms - now : 0;
    if (left <= 1)
        return lqc_end(c, lqc_fail(c, LEASEQ_E_DEADLINE_EXCEEDED, "job %llu stored; no time left to wait",
                                   (unsigned long long)id));
    uint32_t wait = wait_ms < left ? wait_ms : (uint32_t)(left * 3 / 4);
    return lqc_end(c, wait_job(c, id, wait, out, deadline_ms));
}
