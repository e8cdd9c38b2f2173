/* The HTTP listener (same io_uring loop): /metrics in the Prometheus text format, /healthz
 * (liveness: answered from the loop, never touches storage), /readyz (readiness: not ready while
 * storage is above its high watermark or the broker is stopping). One request per connection,
 * headers capped at HTTP_REQUEST_MAX bytes; everything else is 404 or 405. Also the metric
 * updates that need more than a counter increment (lease times). */
#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "beanstalk/bs_server.h"
#include "log.h"
#include "server_int.h"

#define HTTP_REQUEST_MAX 8192           /* request line + headers */
#define METRICS_BODY_MAX (32u << 20)    /* one /metrics page */
#define STORAGE_HIGH_PERCENT 95         /* readiness without the watermark code: map this full */

static const double COMMIT_BOUNDS[] = {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                       0.025,  0.05,    0.1,    0.25,  0.5,    1,     2.5};
static const double WAIT_BOUNDS[] = {0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 10, 30, 60, 300, 900, 3600};

void lq_metrics_init(lq_metrics *m)
{
    memset(m, 0, sizeof *m);
    m->commit_seconds.bounds = COMMIT_BOUNDS;
    m->commit_seconds.n = sizeof COMMIT_BOUNDS / sizeof COMMIT_BOUNDS[0];
    m->queue_wait_seconds.bounds = WAIT_BOUNDS;
    m->queue_wait_seconds.n = sizeof WAIT_BOUNDS / sizeof WAIT_BOUNDS[0];
    m->lease_seconds.bounds = WAIT_BOUNDS;
    m->lease_seconds.n = sizeof WAIT_BOUNDS / sizeof WAIT_BOUNDS[0];
}

/* ---- lease times ------------------------------------------------------------------------- */

void srv_metric_lease(lq_server *s, const lq_lease *l)
{
    uint64_t now = srv_now(s);
    lq_hist_observe(&s->metrics.queue_wait_seconds,
                    now > l->enqueued_ms ? (double)(now - l->enqueued_ms) / 1000.0 : 0.0);
    uint64_t at = now - s->start_ms;
    /* A full map only costs this lease its lease_seconds sample. */
    (void)lq_map_put(&s->lease_at, l->job_id, at < LQ_NONE - 1 ? (uint32_t)at : LQ_NONE - 1);
}

void srv_metric_lease_end(lq_server *s, uint64_t job_id, bool observe)
{
    uint32_t at = lq_map_get(&s->lease_at, job_id);
    if (at == LQ_NONE)
        return;
    uint64_t now = srv_now(s) - s->start_ms;
    if (observe)
        lq_hist_observe(&s->metrics.lease_seconds, now > at ? (double)(now - at) / 1000.0 : 0.0);
    lq_map_del(&s->lease_at, job_id);
}

/* ---- a growable text buffer --------------------------------------------------------------- */

typedef struct {
    char *p; /* owner: the renderer */
    size_t len, cap;
    bool failed;
} tbuf;

__attribute__((format(printf, 2, 3))) static void tb_printf(tbuf *b, const char *fmt, ...)
{
    if (b->failed)
        return;
    for (;;) {
        va_list ap;
        va_start(ap, fmt);
        int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
        va_end(ap);
        if (n < 0) {
            b->failed = true;
            return;
        }
        if ((size_t)n < b->cap - b->len) {
            b->len += (size_t)n;
            return;
        }
        size_t cap = b->cap * 2;
        while (cap - b->len <= (size_t)n)
            cap *= 2;
        char *np = cap <= METRICS_BODY_MAX ? realloc(b->p, cap) : NULL;
        if (np == NULL) {
            b->failed = true;
            return;
        }
        b->p = np;
        b->cap = cap;
    }
}

/* Label values: escape \ " and newlines as the text format asks (queue names never hold them,
 * but the format must not depend on that). */
static const char *label(char *out, size_t cap, lq_str s)
{
    size_t o = 0;
    for (uint32_t i = 0; i < s.len && o + 3 < cap; i++) {
        char c = s.ptr[i];
        if (c == '\\' || c == '"' || c == '\n') {
            out[o++] = '\\';
            c = c == '\n' ? 'n' : c;
        }
        out[o++] = c;
    }
    out[o] = '\0';
    return out;
}

static void head(tbuf *b, const char *name, const char *type, const char *help)
{
    tb_printf(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

static void hist(tbuf *b, const char *name, const char *help, const lq_hist *h)
{
    head(b, name, "histogram", help);
    uint64_t cum = 0;
    for (uint32_t i = 0; i < h->n; i++) {
        cum += h->counts[i];
        tb_printf(b, "%s_bucket{le=\"%g\"} %llu\n", name, h->bounds[i], (unsigned long long)cum);
    }
    cum += h->counts[h->n];
    tb_printf(b, "%s_bucket{le=\"+Inf\"} %llu\n%s_sum %.6f\n%s_count %llu\n", name, (unsigned long long)cum, name,
              h->sum, name, (unsigned long long)h->count);
}

/* ---- /metrics ----------------------------------------------------------------------------- */

typedef struct {
    const char *name, *help;
    size_t off; /* in lq_lane_totals */
} total_def;

static const total_def TOTALS[] = {
    {"leaseq_jobs_enqueued_total", "Jobs accepted by enqueue.", offsetof(lq_lane_totals, enqueued)},
    {"leaseq_jobs_leased_total", "Leases granted.", offsetof(lq_lane_totals, leased)},
    {"leaseq_jobs_acked_total", "Jobs completed by ack.", offsetof(lq_lane_totals, acked)},
    {"leaseq_jobs_expired_total", "Jobs whose deadline passed before dispatch.", offsetof(lq_lane_totals, expired)},
    {"leaseq_jobs_purged_total", "Jobs removed by purge.", offsetof(lq_lane_totals, purged)},
    {"leaseq_jobs_dead_lettered_total", "Jobs moved to the dead-letter set.", offsetof(lq_lane_totals, dead_lettered)},
    {"leaseq_jobs_cancelled_total", "Jobs cancelled by an admin.", offsetof(lq_lane_totals, cancelled)},
};

static void render_lanes(lq_server *s, tbuf *b, uint64_t now)
{
    const lq_lane_info *L;
    const lq_queue_opts *Q;
    uint32_t n = 0;
    (void)srv_ops_collect(s, LQ_STR_NULL, &L, &Q, &n);
    char qn[LQ_NAME_MAX * 2 + 2], ln[LQ_NAME_MAX * 2 + 2];
    static const char *const STATES[] = {"ready", "leased", "delayed", "dead", "pending"};
    head(b, "leaseq_jobs", "gauge", "Jobs by queue, lane and state.");
    for (uint32_t i = 0; i < n; i++) {
        const lq_lane_stats *x = &L[i].stats;
        const uint64_t v[] = {x->ready, x->leased, x->delayed, x->dead, x->pending};
        label(qn, sizeof qn, x->queue);
        label(ln, sizeof ln, x->lane);
        for (int k = 0; k < 5; k++)
            tb_printf(b, "leaseq_jobs{queue=\"%s\",lane=\"%s\",state=\"%s\"} %llu\n", qn, ln, STATES[k],
                      (unsigned long long)v[k]);
    }
    for (size_t t = 0; t < sizeof TOTALS / sizeof TOTALS[0]; t++) {
        head(b, TOTALS[t].name, "counter", TOTALS[t].help);
        for (uint32_t i = 0; i < n; i++) {
            uint64_t v = *(const uint64_t *)((const char *)&L[i].totals + TOTALS[t].off);
            tb_printf(b, "%s{queue=\"%s\",lane=\"%s\"} %llu\n", TOTALS[t].name, label(qn, sizeof qn, L[i].stats.queue),
                      label(ln, sizeof ln, L[i].stats.lane), (unsigned long long)v);
        }
    }
    head(b, "leaseq_lane_oldest_ready_age_seconds", "gauge", "Age of the oldest job at the head of the lane.");
    for (uint32_t i = 0; i < n; i++) {
        uint64_t o = L[i].oldest_ready_ms;
        tb_printf(b, "leaseq_lane_oldest_ready_age_seconds{queue=\"%s\",lane=\"%s\"} %.3f\n",
                  label(qn, sizeof qn, L[i].stats.queue), label(ln, sizeof ln, L[i].stats.lane),
                  o && now > o ? (double)(now - o) / 1000.0 : 0.0);
    }
    head(b, "leaseq_lane_weight", "gauge", "Dispatch weight of the lane.");
    for (uint32_t i = 0; i < n; i++)
        tb_printf(b, "leaseq_lane_weight{queue=\"%s\",lane=\"%s\"} %u\n", label(qn, sizeof qn, L[i].stats.queue),
                  label(ln, sizeof ln, L[i].stats.lane), L[i].settings.weight);
    head(b, "leaseq_lane_paused", "gauge", "1 while the lane is paused.");
    for (uint32_t i = 0; i < n; i++)
        tb_printf(b, "leaseq_lane_paused{queue=\"%s\",lane=\"%s\"} %d\n", label(qn, sizeof qn, L[i].stats.queue),
                  label(ln, sizeof ln, L[i].stats.lane), L[i].settings.paused ? 1 : 0);
    head(b, "leaseq_queue_draining", "gauge", "1 while the queue refuses new enqueues (drain).");
    for (uint32_t i = 0; i < n; i++)
        if (i == 0 || !lq_str_eq(L[i].stats.queue, L[i - 1].stats.queue))
            tb_printf(b, "leaseq_queue_draining{queue=\"%s\"} %d\n", label(qn, sizeof qn, L[i].stats.queue),
                      Q[i].draining ? 1 : 0);
}

static void render_metrics(lq_server *s, tbuf *b)
{
    uint64_t now = srv_now(s);
    const lq_metrics *m = &s->metrics;
    head(b, "leaseq_up", "gauge", "1 while the broker serves.");
    tb_printf(b, "leaseq_up 1\n");
    render_lanes(s, b, now);
    head(b, "leaseq_requeues_total", "counter", "Leased jobs that went back, by reason.");
    for (int r = LQ_REQUEUE_LEASE_EXPIRED; r <= LQ_REQUEUE_NACK; r++)
        tb_printf(b, "leaseq_requeues_total{reason=\"%s\"} %llu\n", lq_requeue_reason_name((lq_requeue_reason)r),
                  (unsigned long long)m->requeues[r]);
    head(b, "leaseq_jobs_nacked_total", "counter", "Nacks accepted.");
    tb_printf(b, "leaseq_jobs_nacked_total %llu\n", (unsigned long long)m->nacked);
    uint64_t used = 0, size = 0;
    bool have = lq_store_usage(s->store, &used, &size) == LQ_OK && size > 0;
    head(b, "leaseq_storage_used_bytes", "gauge", "Bytes of the store in use.");
    tb_printf(b, "leaseq_storage_used_bytes %llu\n", (unsigned long long)used);
    head(b, "leaseq_storage_size_bytes", "gauge", "Size of the store's map (its capacity).");
    tb_printf(b, "leaseq_storage_size_bytes %llu\n", (unsigned long long)size);
    head(b, "leaseq_storage_fill_ratio", "gauge", "Used bytes over the map size.");
    tb_printf(b, "leaseq_storage_fill_ratio %.6f\n", have ? (double)used / (double)size : 0.0);
    head(b, "leaseq_storage_high", "gauge", "1 while storage is above the high watermark (not ready).");
    tb_printf(b, "leaseq_storage_high %d\n", srv_storage_high(s) ? 1 : 0);
    head(b, "leaseq_connections", "gauge", "Open connections (HTTP included).");
    tb_printf(b, "leaseq_connections %u\n", lq_loop_conn_count(s->loop));
    head(b, "leaseq_connection_buffer_bytes", "gauge",
         "Bytes allocated for the connections' input and output buffers (large ones shrink after 1 s unused).");
    tb_printf(b, "leaseq_connection_buffer_bytes %zu\n", lq_loop_buffer_bytes(s->loop) + bs_buffer_bytes(s->bs));
    head(b, "leaseq_batch_buffer_bytes", "gauge",
         "Bytes the group-commit batches keep between commits (payload copies; as of each one's last reset). "
         "Given back after 1 s without a batch of more than 1 MiB.");
    tb_printf(b, "leaseq_batch_buffer_bytes %zu\n", srv_batches_held(s));
    head(b, "leaseq_connections_accepted_total", "counter", "Connections accepted.");
    tb_printf(b, "leaseq_connections_accepted_total %llu\n", (unsigned long long)m->conns_accepted);
    head(b, "leaseq_parked_dequeues", "gauge", "Dequeues waiting for a job.");
    tb_printf(b, "leaseq_parked_dequeues %u\n", srv_slots_live(&s->waiters));
    head(b, "leaseq_parked_waits", "gauge", "Producers waiting for a job's outcome.");
    tb_printf(b, "leaseq_parked_waits %u\n", srv_slots_live(&s->jobwaits));
    head(b, "leaseq_commits_total", "counter", "Group commits done.");
    tb_printf(b, "leaseq_commits_total %llu\n", (unsigned long long)s->commits);
    head(b, "leaseq_commit_failures_total", "counter", "Group commits that failed or dropped new jobs.");
    tb_printf(b, "leaseq_commit_failures_total %llu\n", (unsigned long long)s->commit_failures);
    head(b, "leaseq_early_revoked_total", "counter",
         "Jobs dispatched before their commit (--dispatch early) whose commit then failed: revoked.");
    tb_printf(b, "leaseq_early_revoked_total %llu\n", (unsigned long long)s->early_revoked);
    head(b, "leaseq_early_reads_total", "counter",
         "Job reads served from a batch not yet committed (--dispatch early): leases before the commit, and peeks.");
    tb_printf(b, "leaseq_early_reads_total %llu\n", (unsigned long long)s->early_reads);
    head(b, "leaseq_auth_failures_total", "counter", "Hellos refused for an unknown token.");
    tb_printf(b, "leaseq_auth_failures_total %llu\n", (unsigned long long)m->auth_failures);
    head(b, "leaseq_permission_denied_total", "counter", "Requests refused for the token's role.");
    tb_printf(b, "leaseq_permission_denied_total %llu\n", (unsigned long long)m->permission_denied);
    head(b, "leaseq_purges_total", "counter", "Purges completed.");
    tb_printf(b, "leaseq_purges_total %llu\n", (unsigned long long)m->purges);
    head(b, "leaseq_drains_done_total", "counter", "Drains that emptied their queue.");
    tb_printf(b, "leaseq_drains_done_total %llu\n", (unsigned long long)m->drains_done);
    hist(b, "leaseq_commit_duration_seconds", "Duration of one group commit (write and sync).", &m->commit_seconds);
    hist(b, "leaseq_queue_wait_seconds", "Time from enqueue to lease, per lease.", &m->queue_wait_seconds);
    hist(b, "leaseq_lease_duration_seconds", "Time from lease to ack or nack.", &m->lease_seconds);
}

/* ---- readiness ---------------------------------------------------------------------------- */

bool srv_storage_high(lq_server *s)
{
    /* Until the watermark code sets storage_high, the map's fill level decides. */
    uint64_t used = 0, size = 0;
    bool usage = lq_store_usage(s->store, &used, &size) == LQ_OK && size > 0;
    bool high = s->storage_high || (usage && used * 100 >= size * STORAGE_HIGH_PERCENT);
    if (high != s->storage_high_seen) {
        /* one line per crossing, not one per probe */
        s->storage_high_seen = high;
        if (high)
            LQ_LOGW("storage above the high watermark: not ready", "used_bytes=%llu map_bytes=%llu",
                    (unsigned long long)used, (unsigned long long)size);
        else
            LQ_LOGI("storage below the high watermark again: ready", "used_bytes=%llu map_bytes=%llu",
                    (unsigned long long)used, (unsigned long long)size);
    }
    return high;
}

/* ---- HTTP --------------------------------------------------------------------------------- */

static void respond(lq_server *s, srv_conn *sc, int code, const char *reason, const char *ctype, const char *body,
                    size_t body_len, bool head_only)
{
    char hdr[256];
    int hl = snprintf(hdr, sizeof hdr,
                      "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n%sConnection: close\r\n\r\n",
                      code, reason, ctype, body_len, code == 405 ? "Allow: GET, HEAD\r\n" : "");
    size_t total = (size_t)hl + (head_only ? 0 : body_len);
    uint8_t *p = lq_loop_out_reserve(s->loop, sc->id, total);
    if (p != NULL) {
        memcpy(p, hdr, (size_t)hl);
        if (!head_only && body_len > 0)
            memcpy(p + hl, body, body_len);
        lq_loop_out_commit(s->loop, sc->id, total);
    }
    sc->http_done = true;
    lq_loop_close(s->loop, sc->id, true);
}

static void text(lq_server *s, srv_conn *sc, int code, const char *reason, const char *body, bool head_only)
{
    respond(s, sc, code, reason, "text/plain; charset=utf-8", body, strlen(body), head_only);
}

size_t srv_http_data(lq_server *s, srv_conn *sc, const uint8_t *data, size_t len)
{
    if (sc->http_done)
        return len;
    size_t scan = len < HTTP_REQUEST_MAX ? len : HTTP_REQUEST_MAX;
    const uint8_t *end = memmem(data, scan, "\r\n\r\n", 4);
    if (end == NULL) {
        if (len >= HTTP_REQUEST_MAX)
            text(s, sc, 431, "Request Header Fields Too Large", "request too large\n", false);
        return sc->http_done ? len : 0;
    }
    /* request line: METHOD SP TARGET SP VERSION */
    char line[512];
    const uint8_t *eol = memchr(data, '\r', (size_t)(end - data) + 1);
    size_t ll = eol != NULL ? (size_t)(eol - data) : 0;
    if (ll >= sizeof line)
        ll = sizeof line - 1;
    memcpy(line, data, ll);
    line[ll] = '\0';
    char method[16] = "", target[400] = "", version[16] = "";
    if (sscanf(line, "%15s %399s %15s", method, target, version) != 3 || strncmp(version, "HTTP/1.", 7) != 0) {
        text(s, sc, 400, "Bad Request", "bad request\n", false);
        return len;
    }
    bool head_only = strcmp(method, "HEAD") == 0;
    char *qm = strchr(target, '?');
    if (qm != NULL)
        *qm = '\0';
    bool known = strcmp(target, "/metrics") == 0 || strcmp(target, "/healthz") == 0 || strcmp(target, "/readyz") == 0;
    if (!known) {
        text(s, sc, 404, "Not Found", "not found: try /metrics, /healthz or /readyz\n", head_only);
        return len;
    }
    if (!head_only && strcmp(method, "GET") != 0) {
        text(s, sc, 405, "Method Not Allowed", "method not allowed\n", false);
        return len;
    }
    if (strcmp(target, "/healthz") == 0) {
        text(s, sc, 200, "OK", "ok\n", head_only);
    } else if (strcmp(target, "/readyz") == 0) {
        if (s->stopping)
            text(s, sc, 503, "Service Unavailable", "not ready: shutting down\n", head_only);
        else if (srv_storage_high(s))
            text(s, sc, 503, "Service Unavailable", "not ready: storage above the high watermark\n", head_only);
        else
            text(s, sc, 200, "OK", "ready\n", head_only);
    } else {
        tbuf b = {.p = malloc(64 << 10), .cap = 64 << 10}; /* owner: here */
        b.failed = b.p == NULL;
        if (!b.failed)
            render_metrics(s, &b);
        if (b.failed)
            text(s, sc, 500, "Internal Server Error", "metrics too large or out of memory\n", head_only);
        else
            respond(s, sc, 200, "OK", "text/plain; version=0.0.4; charset=utf-8", b.p, b.len, head_only);
        free(b.p);
    }
    return len;
}

lq_err srv_http_listen(lq_server *s)
{
    const lq_config *cfg = s->cfg;
    if (cfg->http_listen == NULL)
        return LQ_OK;
    char bound[128] = "";
    lq_err e = lq_loop_listen_tcp_tag(s->loop, cfg->http_listen, SRV_PROTO_HTTP, bound, sizeof bound);
    if (e != LQ_OK) {
        if (cfg->http_listen_set) {
            LQ_LOGE("cannot listen for HTTP", "http_listen=%s error=%s", cfg->http_listen, lq_err_name(e));
            return e;
        }
        /* The default port may be taken by another broker on this machine: serve without it. */
        LQ_LOGW("HTTP listener not started (default address busy); /metrics is off", "http_listen=%s error=%s",
                cfg->http_listen, lq_err_name(e));
        return LQ_OK;
    }
    LQ_LOGI("http listening", "http_listen=%s paths=/metrics,/healthz,/readyz", bound);
    return LQ_OK;
}
