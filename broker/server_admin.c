/* Admin requests about workers (Workers, ClearSuspect), and the bookkeeping of stored results:
 * their idempotency keys at start-up and when sweeping the expired ones is worth a commit. */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server_int.h"

#define WORKERS_META_BUDGET (LQ_FRAME_META_MAX - 4096) /* a Workers reply stays one frame */
#define SWEEP_BUCKET_MS 100u                            /* granularity of the expiry buckets */
#define SWEEP_BUCKETS_MAX (1u << 20)                     /* past it, later buckets merge */

/* ---- sessions and their connections ------------------------------------------------------ */

lq_err srv_sess_conn_set(lq_server *s, uint32_t session, lq_conn_id conn)
{
    if (session >= s->cap_sess_conn) {
        if (conn == 0)
            return LQ_OK;
        uint32_t cap = s->cap_sess_conn ? s->cap_sess_conn : 64;
        while (cap <= session)
            cap *= 2;
        lq_conn_id *p = realloc(s->sess_conn, (size_t)cap * sizeof *p); /* owner: server */
        if (p == NULL)
            return LQ_E_NOMEM;
        memset(p + s->cap_sess_conn, 0, (size_t)(cap - s->cap_sess_conn) * sizeof *p);
        s->sess_conn = p;
        s->cap_sess_conn = cap;
    }
    s->sess_conn[session] = conn;
    return LQ_OK;
}

typedef struct {
    uint32_t session;
    char *out;
    size_t cap;
} worker_of;

static void find_worker(void *ctx, const lq_session_info *si)
{
    worker_of *w = ctx;
    if (si->session != w->session)
        return;
    size_t n = si->worker_id.len < w->cap - 1 ? si->worker_id.len : w->cap - 1;
    memcpy(w->out, si->worker_id.ptr, n);
    w->out[n] = '\0';
}

const char *srv_session_worker(lq_server *s, uint32_t session, char *buf, size_t cap)
{
    buf[0] = '\0';
    /* O(sessions), for a log line of a rare event */
    worker_of w = {.session = session, .out = buf, .cap = cap};
    lq_core_sessions(s->core, srv_now(s), find_worker, &w);
    return buf;
}

/* ---- Workers ------------------------------------------------------------------------------ */

typedef struct {
    lq_server *s;
    uint64_t now;
    Leaseq__WorkerInfo **v;
    size_t n, cap;
    size_t meta;   /* estimated encoded bytes so far */
    bool truncated, nomem;
} workers_ctx;

static void add_worker(void *ctx, const lq_session_info *si)
{
    workers_ctx *w = ctx;
    if (w->truncated || w->nomem)
        return;
    lq_arena *a = &w->s->out_arena;
    size_t est = 96 + si->worker_id.len;
    if (w->meta + est > WORKERS_META_BUDGET) {
        w->truncated = true;
        return;
    }
    if (w->n == w->cap) {
        size_t cap = w->cap ? w->cap * 2 : 64;
        Leaseq__WorkerInfo **nv = a->pb.alloc(a->pb.allocator_data, cap * sizeof *nv);
        if (nv == NULL) {
            w->nomem = true;
            return;
        }
        if (w->n > 0)
            memcpy(nv, w->v, w->n * sizeof *nv);
        w->v = nv;
        w->cap = cap;
    }
    Leaseq__WorkerInfo *wi = a->pb.alloc(a->pb.allocator_data, sizeof *wi);
    char addr[128] = "?";
    if (wi == NULL) {
        w->nomem = true;
        return;
    }
    leaseq__worker_info__init(wi);
    if (si->session < w->s->cap_sess_conn && w->s->sess_conn[si->session] != 0)
        lq_loop_peer(w->s->loop, w->s->sess_conn[si->session], addr, sizeof addr);
    wi->session_id = si->session;
    wi->worker_id = srv_arena_str(a, si->worker_id);
    wi->address = srv_arena_str(a, lq_str_c(addr));
    wi->heartbeat_ms = si->heartbeat_ms;
    wi->leases_held = si->leases_held;
    wi->last_seen_age_ms = w->now > si->last_seen_ms ? w->now - si->last_seen_ms : 0;
    wi->stalled = si->stalled;
    wi->suspect = si->suspect;
    wi->suspect_for_ms = si->suspect && si->suspect_until_ms > w->now ? si->suspect_until_ms - w->now : 0;
    wi->recent_losses = si->recent_losses;
    w->v[w->n++] = wi;
    w->meta += est;
}

bool srv_req_workers(lq_server *s, srv_conn *sc, uint64_t rid)
{
    lq_arena_reset(&s->out_arena);
    workers_ctx w = {.s = s, .now = srv_now(s)};
    lq_core_sessions(s->core, w.now, add_worker, &w);
    if (w.nomem) {
        srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "workers reply too large");
        return true;
    }
    if (w.truncated)
        LQ_LOGW("workers reply truncated to one frame", "sessions=%zu", w.n);
    Leaseq__WorkersReply wr = LEASEQ__WORKERS_REPLY__INIT;
    wr.n_workers = w.n;
    wr.workers = w.v;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__RESPONSE__BODY_WORKERS;
    r.workers = &wr;
    srv_send(s, sc->id, &r, NULL, 0);
    return true;
}

bool srv_req_clear_suspect(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__ClearSuspect *c)
{
    lq_str id = lq_str_c(c->worker_id);
    if (id.len == 0 || id.len > LQ_NAME_MAX) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "clear_suspect: worker_id of 1..200 bytes");
        return true;
    }
    lq_err e = lq_core_clear_suspect(s->core, srv_now(s), id);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, e == LQ_E_NOT_FOUND ? "unknown worker id" : NULL);
        return true;
    }
    char q[2 * LQ_NAME_MAX + 8];
    LQ_LOGI("worker quarantine cleared", "worker_id=%s session=%u", lq_log_quote(q, sizeof q, id.ptr, id.len),
            sc->session);
    Leaseq__ClearSuspectReply cr = LEASEQ__CLEAR_SUSPECT_REPLY__INIT;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__RESPONSE__BODY_CLEAR_SUSPECT;
    r.clear_suspect = &cr;
    srv_send(s, sc->id, &r, NULL, 0);
    return true;
}

/* ---- results: the sweep schedule ---------------------------------------------------------- */

void srv_results_note(lq_server *s, uint64_t expires_ms)
{
    uint64_t until = (expires_ms + SWEEP_BUCKET_MS - 1) / SWEEP_BUCKET_MS * SWEEP_BUCKET_MS;
    if (s->sweep_n > 0) {
        srv_sweep_bucket *last = &s->sweep_q[(s->sweep_head + s->sweep_n - 1) % s->sweep_cap];
        /* an earlier expiry counted in a later bucket is swept a little late, never early */
        if (until <= last->until_ms || s->sweep_n >= SWEEP_BUCKETS_MAX) {
            last->n++;
            return;
        }
    }
    if (s->sweep_n == s->sweep_cap) {
        uint32_t cap = s->sweep_cap ? s->sweep_cap * 2 : 64;
        srv_sweep_bucket *q = malloc((size_t)cap * sizeof *q); /* owner: server */
        if (q == NULL) {
            if (s->sweep_n > 0)
                s->sweep_q[(s->sweep_head + s->sweep_n - 1) % s->sweep_cap].n++;
            return; /* with no bucket at all, the result is swept by a later commit's sweep */
        }
        for (uint32_t i = 0; i < s->sweep_n; i++)
            q[i] = s->sweep_q[(s->sweep_head + i) % s->sweep_cap];
        free(s->sweep_q);
        s->sweep_q = q;
        s->sweep_head = 0;
        s->sweep_cap = cap;
    }
    s->sweep_q[(s->sweep_head + s->sweep_n) % s->sweep_cap] = (srv_sweep_bucket){until, 1};
    s->sweep_n++;
}

/* Results due at now, counted up to `enough`. */
static uint64_t due(const lq_server *s, uint64_t now, uint64_t enough)
{
    uint64_t n = 0;
    for (uint32_t i = 0; i < s->sweep_n && n < enough; i++) {
        const srv_sweep_bucket *b = &s->sweep_q[(s->sweep_head + i) % s->sweep_cap];
        if (b->until_ms > now)
            break;
        n += b->n;
    }
    return n;
}

/* A sweep of up to max went out: takes that many off the front. */
static void consume(lq_server *s, uint64_t max)
{
    while (max > 0 && s->sweep_n > 0) {
        srv_sweep_bucket *b = &s->sweep_q[s->sweep_head];
        uint64_t k = b->n < max ? b->n : max;
        b->n -= k;
        max -= k;
        if (b->n == 0) {
            s->sweep_head = (s->sweep_head + 1) % s->sweep_cap;
            s->sweep_n--;
        }
    }
}

bool srv_results_sweep(lq_server *s, lq_batch *b, uint64_t now, bool idle)
{
    uint64_t n = due(s, now, SRV_SWEEP_MAX);
    if (n == 0)
        return false;
    /* Idle, a handful of due results waits for company (or a second); a full sweep's worth
     * goes at once, one bounded transaction after the other. */
    if (idle && n < SRV_SWEEP_MAX && now - s->last_sweep_ms < SRV_HOUSEKEEPING_MS)
        return false;
    lq_batch_sweep_results(b, now, SRV_SWEEP_MAX);
    consume(s, SRV_SWEEP_MAX);
    s->last_sweep_ms = now;
    LQ_LOGD("results swept", "results=%llu", (unsigned long long)n);
    return true;
}

/* ---- start-up ------------------------------------------------------------------------------ */

typedef struct {
    lq_server *s;
    uint64_t now, results, expired, keys;
} restore_ctx;

static lq_err restore_result(void *ctx, const lq_result_view *r)
{
    restore_ctx *rc = ctx;
    srv_results_note(rc->s, r->expires_ms); /* expired ones too: the first sweeps take them */
    if (r->expires_ms <= rc->now) {
        rc->expired++;
        return LQ_OK;
    }
    rc->results++;
    if (r->idem_key.len == 0)
        return LQ_OK;
    lq_err e = lq_core_restore_idem(rc->s->core, rc->now, r->queue, r->idem_key, r->id, r->finished_ms);
    if (e == LQ_OK)
        rc->keys++;
    /* One unusable key must not keep the broker down: it only weakens one duplicate check. */
    else
        LQ_LOGW("idempotency key of a stored result not restored", "job=%llu error=%s",
                (unsigned long long)r->id, lq_err_name(e));
    return LQ_OK;
}

lq_err srv_results_restore(lq_server *s)
{
    restore_ctx rc = {.s = s, .now = srv_now(s)};
    /* now_ms 0: the expired ones are visited too, so the sweep knows they are there */
    lq_err e = lq_store_load_results(s->store, 0, restore_result, &rc);
    if (e != LQ_OK) {
        const char *d = lq_store_last_error(s->store);
        char q[512];
        LQ_LOGE("cannot load the stored results", "error=%s detail=%s", lq_err_name(e),
                lq_log_quote(q, sizeof q, d, strlen(d)));
        return e;
    }
    LQ_LOGI("results restored", "results=%llu expired=%llu idempotency_keys=%llu", (unsigned long long)rc.results,
            (unsigned long long)rc.expired, (unsigned long long)rc.keys);
    return LQ_OK;
}

void srv_admin_free(lq_server *s)
{
    free(s->sess_conn);
    free(s->sweep_q);
    s->sess_conn = NULL;
    s->sweep_q = NULL;
    s->cap_sess_conn = s->sweep_cap = s->sweep_n = 0;
}
