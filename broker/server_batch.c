/* Group commit and the replies that wait on it, plus parked dequeues (waiters).
 *
 * Every mutation of a loop pass lands in the OPEN batch; replies to mutating requests are
 * recorded next to it (srv_deferred). Before the loop sleeps, if the committer is idle, the
 * open batch is submitted and another one becomes the open one. If the committer is busy, the
 * open batch is offered to it for the time the loop waits: the committer starts on it the
 * moment the batch before is done, with no round trip through the loop (whose wake-up, reap and
 * replies otherwise leave the disk idle between commits); after the wait the loop takes it back
 * or, if it was taken, opens the third batch. When the committer signals its eventfd, batches
 * are reaped oldest first: every job a batch carried is reported to the core (durable or not),
 * then its deferred replies are sent. */
#include <stdlib.h>
#include <string.h>

#include "beanstalk/bs_server.h"
#include "log.h"
#include "server_int.h"
#include "store/batch.h"

/* With --dispatch early, workers see ids of jobs whose batch a crash may still lose; the stored
 * id counter runs ahead by more than every batch not yet durable can hold (two with the
 * committer and the open one), so a restart never gives such an id to another job. */
#define SRV_EARLY_ID_MARGIN (1ull << 24)
_Static_assert(SRV_EARLY_ID_MARGIN > 3ull * LQ_BATCH_OPS_MAX, "the id margin must cover three full batches");

static void set_counters(lq_server *s, srv_batch *b)
{
    uint64_t next_id = 0, next_seq = 0;
    lq_core_counters(s->core, &next_id, &next_seq);
    if (s->cfg->early_dispatch)
        next_id += SRV_EARLY_ID_MARGIN;
    lq_batch_set_counters(b->b, next_id, next_seq);
}

static lq_err grow(void **p, uint32_t *cap, uint32_t need, size_t elem)
{
    if (need <= *cap)
        return LQ_OK;
    uint32_t want = *cap ? *cap : 64;
    while (want < need)
        want *= 2;
    void *np = realloc(*p, (size_t)want * elem); /* owner: the caller's struct */
    if (np == NULL)
        return LQ_E_NOMEM;
    *p = np;
    *cap = want;
    return LQ_OK;
}

lq_err srv_batches_init(lq_server *s)
{
    for (int i = 0; i < 3; i++) {
        s->batches[i].b = lq_batch_create(); /* owner: server, srv_batches_free */
        if (s->batches[i].b == NULL)
            return LQ_E_NOMEM;
    }
    s->open = 0;
    return LQ_OK;
}

void srv_batches_free(lq_server *s)
{
    for (int i = 0; i < 3; i++) {
        srv_batch *b = &s->batches[i];
        if (b->b != NULL)
            lq_batch_destroy(b->b);
        free(b->def);
        free(b->items);
        memset(b, 0, sizeof *b);
    }
    for (uint32_t i = 0; i < s->waiters.n; i++)
        free(((srv_waiter *)srv_slots_at(&s->waiters, i))->leases);
    srv_slots_fini(&s->waiters);
}

srv_batch *srv_open_batch(lq_server *s)
{
    return &s->batches[s->open];
}

bool srv_batch_empty(const srv_batch *b)
{
    return lq_batch_count(b->b) == 0 && b->n_def == 0;
}

/* Backpressure: a connection cannot pile up work (and payload copies) without bound while a
 * slow commit runs; its input waits in the socket instead. */
static bool over_limits(const lq_server *s, const srv_conn *sc)
{
    return sc->deferred >= SRV_DEFERRED_PAUSE || sc->deferred_bytes >= SRV_DEFERRED_BYTES_PAUSE ||
           (s->pending_bytes >= SRV_PENDING_BYTES_PAUSE && sc->deferred > 0);
}

static bool below_resume(const lq_server *s, const srv_conn *sc)
{
    return sc->deferred < SRV_DEFERRED_RESUME && sc->deferred_bytes < SRV_DEFERRED_BYTES_PAUSE / 2 &&
           (s->pending_bytes < SRV_PENDING_BYTES_PAUSE / 2 || sc->deferred == 0);
}

srv_deferred *srv_defer(lq_server *s, srv_conn *sc, uint64_t request_id, uint8_t kind, uint32_t bytes)
{
    return srv_defer_to(s, sc, srv_open_batch(s), request_id, kind, bytes);
}

srv_deferred *srv_defer_to(lq_server *s, srv_conn *sc, srv_batch *b, uint64_t request_id, uint8_t kind,
                           uint32_t bytes)
{
    if (grow((void **)&b->def, &b->cap_def, b->n_def + 1, sizeof *b->def) != LQ_OK)
        return NULL;
    srv_deferred *d = &b->def[b->n_def++];
    memset(d, 0, sizeof *d);
    d->conn = sc->id;
    d->request_id = request_id;
    d->kind = kind;
    d->bytes = bytes;
    sc->deferred++;
    sc->deferred_bytes += bytes;
    s->pending_bytes += bytes;
    if (!sc->paused && over_limits(s, sc)) {
        sc->paused = true;
        lq_loop_pause(s->loop, sc->id, true);
    }
    return d;
}

lq_err srv_item_push(lq_server *s, uint64_t job_id, lq_err err)
{
    srv_batch *b = srv_open_batch(s);
    if (grow((void **)&b->items, &b->cap_items, b->n_items + 1, sizeof *b->items) != LQ_OK)
        return LQ_E_NOMEM;
    b->items[b->n_items++] = (srv_item){.job_id = job_id, .err = (uint8_t)err};
    return LQ_OK;
}

/* ---- waiters -------------------------------------------------------------------------- */

/* The parked-dequeue list of the connection a slot belongs to, NULL if it is gone. */
static srv_slot_list *waiter_list(lq_server *s, const srv_slot *slot)
{
    srv_conn *sc = lq_loop_user_any(s->loop, slot->conn);
    return sc != NULL ? &sc->waiters : NULL;
}

lq_err srv_waiter_alloc(lq_server *s, uint64_t *handle)
{
    lq_err e = srv_slots_alloc(&s->waiters, handle);
    if (e == LQ_OK)
        srv_waiter_get(s, *handle)->n_leases = 0;
    return e;
}

srv_waiter *srv_waiter_get(lq_server *s, uint64_t handle)
{
    return srv_slots_get(&s->waiters, handle);
}

void srv_waiter_park(lq_server *s, srv_conn *sc, uint64_t handle, uint64_t request_id)
{
    srv_slots_park(&s->waiters, &sc->waiters, handle, sc->id, request_id);
}

void srv_waiter_free(lq_server *s, uint64_t handle)
{
    srv_waiter *w = srv_waiter_get(s, handle);
    if (w == NULL)
        return;
    srv_slots_free(&s->waiters, w->slot.live ? waiter_list(s, &w->slot) : NULL, handle);
}

static void cancel_waiter(void *ctx, uint64_t handle)
{
    lq_core_waiter_cancel(((lq_server *)ctx)->core, handle);
}

/* The connection is closing: its waiters are cancelled in the core and forgotten here. */
void srv_waiters_drop_conn(lq_server *s, srv_conn *sc)
{
    srv_slots_drop_list(&s->waiters, &sc->waiters, cancel_waiter, s);
}

/* Shutdown: every parked dequeue gets its (empty) answer now. */
void srv_waiters_answer_all(lq_server *s)
{
    for (uint32_t i = 0; i < s->waiters.n; i++) {
        srv_waiter *w = srv_slots_at(&s->waiters, i);
        if (!w->slot.live)
            continue;
        uint64_t handle = srv_slots_handle(&s->waiters, i);
        lq_core_waiter_cancel(s->core, handle);
        srv_reply_dequeue(s, w->slot.conn, w->slot.request_id, w->leases, w->n_leases);
        srv_waiter_free(s, handle);
    }
    srv_apply_events(s, NULL);
}

void srv_waiter_add_lease(lq_server *s, uint64_t handle, const lq_lease *l)
{
    srv_waiter *w = srv_waiter_get(s, handle);
    if (w == NULL || !w->slot.live ||
        grow((void **)&w->leases, &w->cap_leases, w->n_leases + 1, sizeof *w->leases) != LQ_OK) {
        /* Cannot deliver: the lease expires and the job is requeued then. */
        LQ_LOGE("lease for an unknown waiter", "job=%llu", (unsigned long long)l->job_id);
        return;
    }
    w->leases[w->n_leases++] = *l;
}

static void waiter_done(lq_server *s, uint64_t handle)
{
    srv_waiter *w = srv_waiter_get(s, handle);
    if (w == NULL || !w->slot.live)
        return;
    srv_reply_dequeue(s, w->slot.conn, w->slot.request_id, w->leases, w->n_leases);
    srv_waiter_free(s, handle);
}

/* ---- events --------------------------------------------------------------------------- */

static const char *final_why(uint8_t state)
{
    switch (state) {
    case LQ_STATE_EXPIRED: return "deadline passed before dispatch";
    case LQ_STATE_PURGED: return "purged by an admin";
    case LQ_STATE_CANCELLED: return "cancelled";
    default: return "";
    }
}

/* A job left the core: its record goes, and what a waiting producer may still ask for (state,
 * result bytes of an ack, or why it ended) is kept for the retention time. */
static lq_err finish_job(lq_server *s, srv_batch *b, const lq_ev *e)
{
    uint8_t st = e->u.del.final_state;
    uint32_t keep = s->cfg->result_retention_ms;
    lq_queue_opts qo;
    if (lq_core_queue_opts_get(s->core, e->u.del.queue, &qo) == LQ_OK && qo.retention_set)
        keep = qo.retention_ms;
    bool known = st == LQ_STATE_DONE || st == LQ_STATE_EXPIRED || st == LQ_STATE_PURGED || st == LQ_STATE_CANCELLED;
    if (keep == 0 || !known)
        return lq_batch_delete_job(b->b, e->job_id); /* nothing to keep */
    const void *res = NULL;
    uint32_t res_len = 0;
    if (st == LQ_STATE_DONE && e->job_id == s->ack_job) {
        res = s->ack_result;
        res_len = s->ack_result_len;
    }
    uint64_t now = srv_now(s);
    uint64_t until = now + keep;
    lq_str why = lq_str_c(final_why(st));
    lq_err err = lq_batch_finish_job(b->b, e->job_id, st, why, res, res_len, now, until);
    if (err == LQ_E_LIMIT && res_len > 0) {
        /* The batch holds its cap of result bytes already: the job still finishes (its ack is
         * not refused), its waiting producer learns the result was not kept. */
        LQ_LOGW("result dropped: batch full", "job=%llu bytes=%u", (unsigned long long)e->job_id, res_len);
        err = lq_batch_finish_job(b->b, e->job_id, st, lq_str_c("result dropped: batch full"), NULL, 0, now, until);
    }
    if (err == LQ_OK)
        srv_results_note(s, until);
    return err;
}

void srv_apply_events(lq_server *s, srv_put_ctx *put)
{
    srv_batch *b = srv_open_batch(s);
    uint64_t last_stored = 0; /* job of the last store event: a JOB_WAIT_DONE follows its own */
    /* A WAITER_DONE reply may give leases back, which appends to s->ev: walk by index up to
     * the moving end, on copies. */
    for (size_t i = 0; i < s->ev.n; i++) {
        lq_ev e = s->ev.v[i];
        lq_err err = LQ_OK;
        switch (e.type) {
        case LQ_EV_JOB_PUT:
            if (put != NULL && put->job_id == e.job_id) {
                err = lq_batch_put_job(b->b, &e.u.put, put->headers, put->headers_len, put->payload,
                                       put->payload_len);
                if (err != LQ_OK)
                    put->failed = true;
            } else {
                err = lq_batch_put_job(b->b, &e.u.put, NULL, 0, NULL, 0);
                if (err != LQ_OK)
                    b->failed = true;
            }
            break;
        case LQ_EV_JOB_UPDATE:
            err = lq_batch_update_job(b->b, e.job_id, e.u.update.state, e.u.update.attempts,
                                      e.u.update.not_before_ms, e.u.update.last_error);
            if (err != LQ_OK)
                b->failed = true;
            last_stored = e.job_id;
            break;
        case LQ_EV_JOB_DELETE:
            if (e.u.del.final_state == LQ_STATE_DONE)
                srv_metric_lease_end(s, e.job_id, true);
            err = finish_job(s, b, &e);
            if (err != LQ_OK)
                b->failed = true;
            last_stored = e.job_id;
            break;
        case LQ_EV_LEASE:
            srv_metric_lease(s, &e.u.lease.lease);
            srv_waiter_add_lease(s, e.u.lease.waiter, &e.u.lease.lease);
            break;
        case LQ_EV_WAITER_DONE:
            waiter_done(s, e.u.waiter_done.waiter);
            break;
        case LQ_EV_REQUEUED:
            if (e.u.requeued.reason == LQ_REQUEUE_LEASE_EXPIRED)
                s->requeued_expired++;
            if (e.u.requeued.reason < sizeof s->metrics.requeues / sizeof s->metrics.requeues[0])
                s->metrics.requeues[e.u.requeued.reason]++;
            srv_metric_lease_end(s, e.job_id, e.u.requeued.reason == LQ_REQUEUE_NACK);
            break;
        case LQ_EV_DEAD:
            s->dead_lettered++;
            srv_metric_lease_end(s, e.job_id, true);
            break;
        case LQ_EV_SESSION_STALLED: {
            char wid[LQ_NAME_MAX + 1], q[2 * LQ_NAME_MAX + 8];
            const char *w = srv_session_worker(s, e.u.stalled.session, wid, sizeof wid);
            LQ_LOGW("worker session stalled, leases requeued", "session=%u worker_id=%s leases=%u",
                    e.u.stalled.session, lq_log_quote(q, sizeof q, w, strlen(w)), e.u.stalled.leases_requeued);
            break;
        }
        case LQ_EV_WORKER_SUSPECT: {
            char wid[256];
            LQ_LOGW("worker quarantined", "worker_id=%s losses=%u",
                    lq_log_quote(wid, sizeof wid, e.u.suspect.worker_id.ptr, e.u.suspect.worker_id.len),
                    e.u.suspect.losses);
            break;
        }
        case LQ_EV_REVOKED:
            /* Its batch failed, which the commit's own log line reports (once a second). */
            s->early_revoked++;
            srv_metric_lease_end(s, e.job_id, false);
            break;
        case LQ_EV_JOB_WAIT_DONE:
            srv_jobwait_done(s, e.u.wait_done.waiter, e.job_id, e.u.wait_done.state, last_stored == e.job_id);
            break;
        }
        if (err != LQ_OK)
            LQ_LOGE("cannot add to the batch", "job=%llu error=%s", (unsigned long long)e.job_id, lq_err_name(err));
    }
    lq_events_clear(&s->ev);
}

/* ---- commit --------------------------------------------------------------------------- */

/* The open batch went to the committer: the free one of the three opens. */
static void open_next(lq_server *s)
{
    LQ_ASSERT(s->n_inflight < 2);
    s->inflight[s->n_inflight++] = s->open;
    uint32_t next = 0;
    while (next == s->open || (s->n_inflight > 1 && next == s->inflight[0]))
        next++;
    LQ_ASSERT(next < 3 && srv_batch_empty(&s->batches[next]));
    s->open = next;
    uint64_t next_id = 0, next_seq = 0;
    lq_core_counters(s->core, &next_id, &next_seq);
    s->batches[next].first_id = next_id; /* PENDING jobs below it are in batches with the committer */
}

void srv_wait_hook(void *ctx, bool before)
{
    lq_server *s = ctx;
    if (before) {
        srv_batch *b = srv_open_batch(s);
        if (s->n_inflight != 1 || srv_batch_empty(b))
            return;
        /* Under steady load batches go this way, never through an idle committer: due results
         * are swept here too. */
        (void)srv_results_sweep(s, b->b, srv_now(s), false);
        set_counters(s, b);
        lq_committer_offer(s->committer, b->b);
        s->offered = true;
        return;
    }
    if (!s->offered)
        return;
    s->offered = false;
    if (!lq_committer_retract(s->committer))
        open_next(s);
}

void srv_maybe_submit(lq_server *s)
{
    srv_batch *b = srv_open_batch(s);
    if (s->n_inflight > 0 || !lq_committer_idle(s->committer))
        return;
    bool empty = srv_batch_empty(b);
    /* Expired results go a bounded number per commit; an idle broker commits a sweep alone. */
    if (!srv_results_sweep(s, b->b, srv_now(s), empty) && empty)
        return;
    set_counters(s, b);
    lq_committer_submit(s->committer, b->b);
    open_next(s);
}

static void resume_if_below(lq_server *s, srv_conn *sc)
{
    if (sc->paused && below_resume(s, sc)) {
        sc->paused = false;
        lq_loop_pause(s->loop, sc->id, false);
    }
}

static void complete(lq_server *s, srv_batch *b, lq_err err, bool puts_dropped)
{
    bool ok = err == LQ_OK && !b->failed;
    bool durable = ok && !puts_dropped;
    lq_err put_err = durable ? LQ_OK : (puts_dropped || err == LQ_E_STORAGE_FULL) ? LQ_E_STORAGE_FULL : LQ_E_INTERNAL;
    uint64_t now = srv_now(s);
    /* Every job of the batch is settled in the core, whoever is still listening. */
    for (uint32_t i = 0; i < b->n_items; i++) {
        srv_item *it = &b->items[i];
        if (it->err != LQ_OK)
            continue;
        if (it->dup_of != DUP_NONE) {
            /* A duplicate of a job that was still pending: the original's fate is its own.
             * Same batch: this one's; an earlier one: that batch's, which completed before. */
            bool orig = durable;
            lq_err orig_err = put_err;
            if (it->dup_of != DUP_SAME_BATCH) {
                uint32_t h = it->job_id >= s->done_hist[0].first_id ? 0 : 1;
                orig = s->done_hist[h].durable;
                orig_err = s->done_hist[h].put_err;
            }
            if (!orig)
                it->err = (uint8_t)orig_err;
            continue;
        }
        if (it->duplicate)
            continue;
        lq_core_commit_done(s->core, now, it->job_id, durable, &s->ev);
        srv_apply_events(s, NULL);
        if (!durable)
            it->err = (uint8_t)put_err;
    }
    s->done_hist[1] = s->done_hist[0];
    s->done_hist[0].first_id = b->first_id;
    s->done_hist[0].durable = durable;
    s->done_hist[0].put_err = put_err;
    for (uint32_t i = 0; i < b->n_def; i++) {
        const srv_deferred *d = &b->def[i];
        s->pending_bytes -= d->bytes;
        srv_conn *sc = lq_loop_user(s->loop, d->conn);
        if (sc == NULL)
            continue; /* closed meanwhile: the reply has nobody to go to */
        sc->deferred--;
        sc->deferred_bytes -= d->bytes;
        resume_if_below(s, sc);
        if (d->kind == DEF_ENQUEUE) {
            srv_reply_enqueue(s, d->conn, d->request_id, &b->items[d->first], d->n);
            continue;
        }
        if (d->kind == DEF_WAIT) {
            srv_wait_complete(s, d, ok, err);
            continue;
        }
        if (d->kind == DEF_OPS) {
            srv_ops_complete(s, d, ok, err);
            continue;
        }
        if (d->kind == DEF_BS) {
            bs_deferred_done(s, d, ok, d->n ? (lq_err)b->items[d->first].err : LQ_OK);
            continue;
        }
        if (!ok) {
            srv_send_error(s, d->conn, d->request_id, err == LQ_E_STORAGE_FULL ? LQ_E_STORAGE_FULL : LQ_E_INTERNAL,
                           "the change could not be stored");
            continue;
        }
        Leaseq__Response r = LEASEQ__RESPONSE__INIT;
        r.request_id = d->request_id;
        Leaseq__AckReply ar = LEASEQ__ACK_REPLY__INIT;
        Leaseq__NackReply nr = LEASEQ__NACK_REPLY__INIT;
        if (d->kind == DEF_ACK) {
            r.body_case = LEASEQ__RESPONSE__BODY_ACK;
            r.ack = &ar;
        } else {
            nr.state = (Leaseq__JobState)d->nack_state;
            r.body_case = LEASEQ__RESPONSE__BODY_NACK;
            r.nack = &nr;
        }
        srv_send(s, d->conn, &r, NULL, 0);
    }
    /* Payload copies, and the op and reply arrays of a round of many small jobs too. */
    if (lq_batch_used_bytes(b->b) + (size_t)b->n_def * sizeof(*b->def) + (size_t)b->n_items * sizeof(*b->items) >
        SRV_BATCH_BIG_BYTES)
        b->big_ms = srv_now(s);
    lq_batch_reset(b->b);
    b->held = lq_batch_held_bytes(b->b) + (size_t)b->cap_def * sizeof(*b->def) +
              (size_t)b->cap_items * sizeof(*b->items);
    b->n_def = 0;
    b->n_items = 0;
    b->failed = false;
}

void srv_batches_trim(lq_server *s, uint64_t now_ms)
{
    if (now_ms - s->last_trim_ms < SRV_BATCH_IDLE_MS)
        return;
    s->last_trim_ms = now_ms;
    for (uint32_t i = 0; i < 3; i++) {
        srv_batch *b = &s->batches[i];
        bool with_committer = false;
        for (uint32_t k = 0; k < s->n_inflight; k++)
            with_committer |= s->inflight[k] == i;
        /* With the committer, its thread reads it; open with work in it, the loop fills it. */
        if (with_committer || !srv_batch_empty(b) || b->n_items > 0 || b->held <= SRV_BATCH_BIG_BYTES ||
            now_ms - b->big_ms < SRV_BATCH_IDLE_MS)
            continue;
        lq_batch_trim(b->b);
        free(b->def);
        b->def = NULL;
        b->cap_def = 0;
        free(b->items);
        b->items = NULL;
        b->cap_items = 0;
        b->held = lq_batch_held_bytes(b->b);
    }
}

size_t srv_batches_held(const lq_server *s)
{
    return s->batches[0].held + s->batches[1].held + s->batches[2].held;
}

static bool reap_one(lq_server *s);

void srv_on_commit_ready(void *ctx, const void *data, int res)
{
    lq_server *s = ctx;
    (void)data;
    (void)res;
    /* One eventfd read may stand for two finished batches. */
    while (s->n_inflight > 0 && reap_one(s)) {
    }
}

static bool reap_one(lq_server *s)
{
    lq_err err = LQ_OK;
    bool dropped = false;
    uint64_t us = 0;
    lq_batch *done = lq_committer_reap(s->committer, &err, &dropped, &us);
    if (done == NULL)
        return false;
    srv_batch *b = &s->batches[s->inflight[0]];
    LQ_ASSERT(done == b->b);
    s->inflight[0] = s->inflight[1];
    s->n_inflight--;
    s->commits++;
    lq_hist_observe(&s->metrics.commit_seconds, (double)us / 1e6);
    /* Later reads must see what this batch wrote (new jobs become leasable below). */
    srv_read_end(s);
    srv_fill_sample(s); /* watermarks: what this commit filled or freed */
    if (err != LQ_OK || dropped) {
        /* A full map fails every batch with new jobs: one line a second, with the count. */
        s->commit_failures++;
        uint64_t now = srv_now(s);
        if (now - s->commit_fail_logged_ms >= 1000) {
            if (err == LQ_OK)
                LQ_LOGW("storage full: new jobs refused, other changes stored", "ops=%u failures_total=%llu",
                        lq_batch_count(b->b), (unsigned long long)s->commit_failures);
            else
                LQ_LOGE("commit failed", "error=%s ops=%u took_us=%llu failures_total=%llu", lq_err_name(err),
                        lq_batch_count(b->b), (unsigned long long)us, (unsigned long long)s->commit_failures);
            s->commit_fail_logged_ms = now;
        }
    } else if (b->failed) {
        LQ_LOGE("batch incomplete (out of memory), replies report INTERNAL", "ops=%u", lq_batch_count(b->b));
    }
    complete(s, b, err, dropped);
    return true;
}
