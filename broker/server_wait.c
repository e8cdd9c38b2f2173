/* Job waits (Wait): a producer asks for a job's outcome and is answered when the job ends.
 *
 * The core parks the wait and emits JOB_WAIT_DONE right after the store event of the job's
 * terminal transition. That event is in the OPEN batch, so the answer is deferred to that
 * batch's commit and then read from the store (the result bytes live only there): a producer
 * never learns an outcome that a crash could still undo.
 *
 * A job the core no longer holds finished earlier; its finish may still be in a batch that has
 * not committed, so the lookup of its stored result waits for the commits under way first. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server_int.h"

/* ---- the table of parked job waits ------------------------------------------------------- */

static srv_jobwait *jobwait_get(lq_server *s, uint64_t handle)
{
    return srv_slots_get(&s->jobwaits, handle);
}

/* Unlinks (if parked) and frees; the handle goes stale at once. */
static void jobwait_free(lq_server *s, uint64_t handle)
{
    srv_jobwait *w = jobwait_get(s, handle);
    if (w == NULL)
        return;
    srv_conn *sc = w->slot.live ? lq_loop_user_any(s->loop, w->slot.conn) : NULL;
    srv_slots_free(&s->jobwaits, sc != NULL ? &sc->jobwaits : NULL, handle);
}

static void cancel_jobwait(void *ctx, uint64_t handle)
{
    lq_core_wait_cancel(((lq_server *)ctx)->core, handle);
}

void srv_jobwaits_drop_conn(lq_server *s, srv_conn *sc)
{
    srv_slots_drop_list(&s->jobwaits, &sc->jobwaits, cancel_jobwait, s);
}

void srv_jobwaits_answer_all(lq_server *s)
{
    for (uint32_t i = 0; i < s->jobwaits.n; i++) {
        srv_jobwait *w = srv_slots_at(&s->jobwaits, i);
        if (!w->slot.live)
            continue;
        uint64_t handle = srv_slots_handle(&s->jobwaits, i);
        lq_core_wait_cancel(s->core, handle);
        srv_send_error(s, w->slot.conn, w->slot.request_id, LQ_E_UNAVAILABLE, "broker shutting down; wait again later");
        jobwait_free(s, handle);
    }
}

void srv_jobwaits_free(lq_server *s)
{
    srv_slots_fini(&s->jobwaits);
}

/* ---- answers ----------------------------------------------------------------------------- */

static void send_outcome(lq_server *s, lq_conn_id conn, uint64_t rid, uint64_t job_id, uint8_t state, lq_str error,
                         const uint8_t *result, uint32_t result_len)
{
    lq_arena *a = &s->out_arena;
    lq_arena_reset(a);
    Leaseq__WaitReply wr = LEASEQ__WAIT_REPLY__INIT;
    wr.job_id = job_id;
    wr.state = (Leaseq__JobState)state;
    wr.error = srv_arena_str(a, error);
    wr.result_len = result_len;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__RESPONSE__BODY_WAIT;
    r.wait = &wr;
    srv_send(s, conn, &r, result, result_len);
}

static void send_not_found(lq_server *s, lq_conn_id conn, uint64_t rid)
{
    srv_send_error(s, conn, rid, LQ_E_NOT_FOUND, "no such job, or its outcome is no longer kept (see --result-retention)");
}

/* Answers from the store, which holds everything committed so far. state: what the core said
 * the job reached (DEAD: its record holds the last error), 0 = unknown: whatever the results
 * say. */
static void answer_from_store(lq_server *s, lq_conn_id conn, uint64_t rid, uint64_t job_id, uint8_t state)
{
    lq_err e = srv_read_begin(s);
    if (e == LQ_OK && state == LQ_STATE_DEAD) {
        lq_job_view v;
        e = lq_store_get_job(s->store, job_id, &v);
        if (e == LQ_OK && v.rec.state == LQ_STATE_DEAD) {
            send_outcome(s, conn, rid, job_id, LQ_STATE_DEAD, v.rec.last_error, NULL, 0);
            return;
        }
        if (e == LQ_OK || e == LQ_E_NOT_FOUND)
            e = LQ_OK; /* gone meanwhile (purged?): its result record says how it ended */
    }
    lq_result_view r;
    if (e == LQ_OK)
        e = lq_store_get_result(s->store, job_id, srv_now(s), &r);
    if (e == LQ_E_NOT_FOUND) {
        send_not_found(s, conn, rid);
        return;
    }
    if (e != LQ_OK) {
        LQ_LOGE("cannot read a job's outcome", "job=%llu error=%s", (unsigned long long)job_id, lq_err_name(e));
        srv_send_error(s, conn, rid, LQ_E_INTERNAL, "the job's outcome cannot be read");
        return;
    }
    send_outcome(s, conn, rid, job_id, r.state, r.error, r.result, r.result_len);
}

/* Answers once everything already decided about the job is on disk: after the open batch if
 * it holds changes, else after the newest batch with the committer, else now. */
static void answer_after_commits(lq_server *s, srv_conn *sc, uint64_t rid, uint64_t job_id, uint8_t state)
{
    srv_batch *b = NULL;
    if (lq_batch_count(srv_open_batch(s)->b) > 0)
        b = srv_open_batch(s);
    else if (s->n_inflight > 0)
        b = &s->batches[s->inflight[s->n_inflight - 1]];
    if (b == NULL) {
        answer_from_store(s, sc->id, rid, job_id, state);
        return;
    }
    srv_deferred *d = srv_defer_to(s, sc, b, rid, DEF_WAIT, 0);
    if (d == NULL) {
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "out of memory");
        return;
    }
    d->job_id = job_id;
    d->wait_state = state;
}

void srv_wait_complete(lq_server *s, const srv_deferred *d, bool ok, lq_err err)
{
    /* A lookup (state 0) reads whatever is stored; a transition that did not commit left the
     * store without the outcome the core already moved on from. */
    if (!ok && d->wait_state != 0) {
        srv_send_error(s, d->conn, d->request_id, err == LQ_E_STORAGE_FULL ? LQ_E_STORAGE_FULL : LQ_E_INTERNAL,
                       "the job's outcome could not be stored");
        return;
    }
    answer_from_store(s, d->conn, d->request_id, d->job_id, d->wait_state);
}

void srv_jobwait_done(lq_server *s, uint64_t handle, uint64_t job_id, uint8_t state, bool stored_now)
{
    srv_jobwait *w = jobwait_get(s, handle);
    if (w == NULL || !w->slot.live)
        return;
    lq_conn_id conn = w->slot.conn;
    uint64_t rid = w->slot.request_id;
    jobwait_free(s, handle);
    srv_conn *sc = lq_loop_user(s->loop, conn);
    if (sc == NULL)
        return;
    if (state == 0) {
        srv_send_error(s, conn, rid, LQ_E_DEADLINE_EXCEEDED, "the job did not end within the wait (it is untouched)");
        return;
    }
    if (state == LQ_STATE_CANCELLED && !stored_now) {
        /* its enqueue never reached the disk: for the producer it never existed */
        send_not_found(s, conn, rid);
        return;
    }
    /* The transition's store event is in the open batch (it was applied just before). */
    srv_deferred *d = srv_defer(s, sc, rid, DEF_WAIT, 0);
    if (d == NULL) {
        srv_send_error(s, conn, rid, LQ_E_INTERNAL, "out of memory");
        return;
    }
    d->job_id = job_id;
    d->wait_state = state;
}

bool srv_req_wait(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__Wait *q)
{
    if (q->job_id == 0) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "wait: job_id is required");
        return true;
    }
    if (sc->jobwaits.count >= SRV_JOBWAITS_PER_CONN_MAX) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "wait: too many waits on this connection");
        return true;
    }
    uint64_t handle = 0;
    if (srv_slots_alloc(&s->jobwaits, &handle) != LQ_OK) {
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "out of memory");
        return true;
    }
    /* While stopping, a wait that would park is answered at once with the timeout error. */
    uint32_t timeout = s->stopping ? 0 : q->timeout_ms;
    bool parked = false;
    uint8_t state = 0;
    lq_err e = lq_core_wait_job(s->core, srv_now(s), q->job_id, handle, timeout, &parked, &state);
    if (e == LQ_OK && parked) {
        srv_slots_park(&s->jobwaits, &sc->jobwaits, handle, sc->id, rid);
        jobwait_get(s, handle)->job_id = q->job_id;
        return true;
    }
    jobwait_free(s, handle);
    if (e == LQ_OK) {
        /* DEAD now. Its record says why, unless that JOB_UPDATE is still on its way to disk. */
        if (srv_read_begin(s) == LQ_OK) {
            lq_job_view v;
            if (lq_store_get_job(s->store, q->job_id, &v) == LQ_OK && v.rec.state == LQ_STATE_DEAD) {
                send_outcome(s, sc->id, rid, q->job_id, LQ_STATE_DEAD, v.rec.last_error, NULL, 0);
                return true;
            }
        }
        answer_after_commits(s, sc, rid, q->job_id, state);
        return true;
    }
    if (e == LQ_E_NOT_FOUND) {
        answer_after_commits(s, sc, rid, q->job_id, 0);
        return true;
    }
    srv_send_error(s, sc->id, rid, e == LQ_E_LIMIT ? LQ_E_UNAVAILABLE : e,
                   e == LQ_E_LIMIT ? "too many job waits in the broker" : NULL);
    return true;
}
