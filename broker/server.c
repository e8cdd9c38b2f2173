/* Start-up and recovery, the run loop with its before-sleep step, connections, shutdown. */
#include "server.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/signalfd.h>
#include <time.h>
#include <unistd.h>

#include "beanstalk/bs_server.h"
#include "log.h"
#include "server_int.h"

#define LINGER_MS 2000
#define ARENA_CHUNK_BYTES (64u << 10)
#define ARENA_CAP_BYTES (32u << 20)      /* decoded form of one <= 1 MiB request */
#define OUT_ARENA_CAP_BYTES (64u << 20)  /* one reply being built (stats of every lane) */

uint64_t srv_now(const lq_server *s)
{
    return lq_clock_now_ms(&s->clock);
}

/* ---- connections ---------------------------------------------------------------------- */

static void on_open(void *ctx, lq_conn_id id, void *user)
{
    lq_server *s = ctx;
    srv_conn *sc = user;
    sc->id = id;
    sc->proto = (uint8_t)lq_loop_conn_tag(s->loop, id);
    s->metrics.conns_accepted++;
    if (sc->proto == SRV_PROTO_BEANSTALK)
        bs_on_open(s, sc);
    /* the hello timeout is the native protocol's; beanstalk has no handshake (an HTTP
     * connection keeps it: its one request must come in time) */
    if (sc->proto == SRV_PROTO_BEANSTALK)
        lq_loop_conn_ready(s->loop, id);
}

static size_t on_data(void *ctx, lq_conn_id id, void *user, const uint8_t *data, size_t len, size_t *need)
{
    lq_server *s = ctx;
    srv_conn *sc = user;
    (void)id;
    if (sc->proto == SRV_PROTO_BEANSTALK)
        return bs_on_data(s, sc, data, len, need);
    size_t off = 0;
    *need = 0;
    if (sc->proto == SRV_PROTO_HTTP)
        return srv_http_data(s, sc, data, len);
    for (;;) {
        lq_frame f;
        size_t consumed = 0, nd = 0;
        lq_frame_status st = lq_frame_parse(data + off, len - off, s->cfg->max_payload_bytes, &f, &consumed, &nd);
        if (st == LQ_FRAME_NEED_MORE) {
            *need = nd;
            return off;
        }
        if (st == LQ_FRAME_TOO_LARGE) {
            LQ_LOGD("closing connection: frame too large", "session=%u", sc->session);
            srv_fail_conn(s, sc, 0, LQ_E_FRAME_TOO_LARGE, "frame over the size caps (see max_frame_bytes)");
            return off;
        }
        if (st == LQ_FRAME_BAD) {
            LQ_LOGD("closing connection: bad frame", "session=%u", sc->session);
            srv_fail_conn(s, sc, 0, LQ_E_PROTOCOL_ERROR, "inconsistent frame lengths");
            return off;
        }
        bool keep = srv_handle_frame(s, sc, &f);
        off += consumed;
        if (!keep)
            return off;
    }
}

static void on_close(void *ctx, lq_conn_id id, void *user)
{
    lq_server *s = ctx;
    srv_conn *sc = user;
    (void)id;
    if (sc->proto == SRV_PROTO_BEANSTALK)
        bs_on_close(s, sc);
    if (!sc->hello_done)
        return;
    srv_waiters_drop_conn(s, sc);
    srv_jobwaits_drop_conn(s, sc);
    (void)srv_sess_conn_set(s, sc->session, 0);
    lq_core_session_close(s->core, srv_now(s), sc->session, &s->ev);
    uint32_t requeued = 0;
    for (size_t i = 0; i < s->ev.n; i++)
        requeued += s->ev.v[i].type == LQ_EV_REQUEUED;
    srv_apply_events(s, NULL);
    if (requeued > 0)
        LQ_LOGI("connection closed, leases requeued", "session=%u leases=%u", sc->session, requeued);
    sc->hello_done = false;
}

static void on_signal(void *ctx, const void *data, int res)
{
    lq_server *s = ctx;
    if (res != (int)sizeof(struct signalfd_siginfo))
        return;
    const struct signalfd_siginfo *si = data;
    if (!s->stopping) {
        LQ_LOGI("stop signal received", "signal=%s", si->ssi_signo == SIGINT ? "SIGINT" : "SIGTERM");
        s->stopping = true;
    } else {
        LQ_LOGI("stop signal received again; shutdown already under way", "phase=%d", s->stop_phase);
    }
}

/* ---- start-up ------------------------------------------------------------------------- */

typedef struct {
    lq_server *s;
    uint64_t now, ready, delayed, dead, total;
} recovery;

static lq_err restore_one(void *ctx, const lq_job_rec *rec)
{
    recovery *r = ctx;
    lq_err e = lq_core_restore_job(r->s->core, r->now, rec);
    if (e != LQ_OK)
        return e;
    r->total++;
    if (rec->state == LQ_STATE_DELAYED)
        r->delayed++;
    else if (rec->state == LQ_STATE_DEAD)
        r->dead++;
    else
        r->ready++;
    return LQ_OK;
}

static lq_err recover(lq_server *s)
{
    uint64_t t0 = lq_mono_ns();
    recovery r = {.s = s, .now = srv_now(s)};
    uint64_t next_id = 0, next_seq = 0;
    lq_err e = lq_store_load(s->store, restore_one, &r, &next_id, &next_seq);
    if (e != LQ_OK) {
        LQ_LOGE("recovery failed", "error=%s jobs_loaded=%llu", lq_err_name(e), (unsigned long long)r.total);
        return e;
    }
    /* Finished jobs' keys keep collapsing duplicates across the restart. */
    e = srv_results_restore(s);
    if (e != LQ_OK)
        return e;
    lq_core_restore_finish(s->core, srv_now(s), next_id, next_seq);
    /* Leases are not stored: jobs leased at the crash are counted (and served) as ready. */
    LQ_LOGI("recovered", "jobs=%llu ready=%llu delayed=%llu dead=%llu next_id=%llu took_ms=%llu",
            (unsigned long long)r.total, (unsigned long long)r.ready, (unsigned long long)r.delayed,
            (unsigned long long)r.dead, (unsigned long long)next_id,
            (unsigned long long)((lq_mono_ns() - t0) / 1000000u));
    return LQ_OK;
}

static lq_err configure_queues(lq_server *s)
{
    for (uint32_t i = 0; i < s->cfg->n_queues; i++) {
        const lq_queue_flag *q = &s->cfg->queues[i];
        lq_err e = lq_core_configure_queue(s->core, q->queue, q->lanes, q->n_lanes);
        if (e != LQ_OK) {
            char qn[256];
            LQ_LOGE("--lanes refused", "queue=%s error=%s", lq_log_quote(qn, sizeof qn, q->queue.ptr, q->queue.len),
                    lq_err_name(e));
            return LQ_E_INVALID_ARGUMENT;
        }
    }
    return LQ_OK;
}

static uint64_t random_seed(void)
{
    uint64_t seed = 0;
    if (getrandom(&seed, sizeof seed, 0) != (ssize_t)sizeof seed)
        seed = (uint64_t)time(NULL) ^ ((uint64_t)getpid() << 32) ^ lq_mono_ns();
    return seed;
}

static const char *sync_name(lq_sync_mode m)
{
    return m == LQ_SYNC_FULL ? "full" : m == LQ_SYNC_PERIODIC ? "periodic" : "none";
}

lq_err lq_server_create(const lq_config *cfg, int signal_fd, lq_server **out)
{
    *out = NULL;
    lq_server *s = calloc(1, sizeof *s); /* owner: caller, lq_server_destroy */
    if (s == NULL)
        return LQ_E_NOMEM;
    s->cfg = cfg;
    s->signal_fd = signal_fd;
    srv_slots_init(&s->waiters, sizeof(srv_waiter));
    srv_slots_init(&s->jobwaits, sizeof(srv_jobwait));
    lq_clock_init(&s->clock);
    s->start_ms = srv_now(s);
    lq_metrics_init(&s->metrics);
    lq_events_init(&s->ev);
    s->done_hist[0].durable = s->done_hist[1].durable = true;
    lq_err e = LQ_E_NOMEM;
    if (lq_arena_init(&s->arena, ARENA_CHUNK_BYTES, ARENA_CAP_BYTES) != 0 ||
        lq_arena_init(&s->out_arena, ARENA_CHUNK_BYTES, OUT_ARENA_CAP_BYTES) != 0)
        goto fail;

    lq_core_config cc;
    lq_core_config_default(&cc);
    cc.seed = random_seed();
    if (cc.max_sessions < cfg->max_connections)
        cc.max_sessions = cfg->max_connections;
    cc.max_parked = cfg->max_parked;
    cc.early_dispatch = cfg->early_dispatch;
    e = lq_core_create(&cc, &s->core);
    if (e == LQ_OK)
        e = srv_ops_init(s);
    if (e != LQ_OK)
        goto fail;
    e = srv_auth_init(s);
    if (e != LQ_OK)
        goto fail;

    LQ_LOGI("starting", "data_dir=%s sync=%s dispatch=%s listen=%s", cfg->data_dir, sync_name(cfg->sync),
            cfg->early_dispatch ? "early" : "durable", cfg->listen);
    lq_store_opts so = {.dir = cfg->data_dir, .map_size_bytes = cfg->map_size_bytes, .sync = cfg->sync};
    e = lq_store_open(&so, &s->store);
    if (e != LQ_OK) {
        LQ_LOGE("cannot open the store", "data_dir=%s error=%s", cfg->data_dir, lq_err_name(e));
        e = e == LQ_E_INVALID_ARGUMENT ? LQ_E_IO : e;
        goto fail;
    }
    e = recover(s);
    if (e != LQ_OK)
        goto fail;
    e = configure_queues(s);
    if (e == LQ_OK)
        e = srv_apply_lane_flags(s);
    if (e != LQ_OK)
        goto fail;
    e = srv_ops_load_config(s); /* operators' changes win over the --lanes weights */
    if (e != LQ_OK)
        goto fail;
    srv_fill_sample(s);
    e = srv_batches_init(s);
    if (e != LQ_OK)
        goto fail;
    e = lq_committer_start(s->store, &s->committer);
    if (e != LQ_OK) {
        LQ_LOGE("cannot start the committer", "error=%s", lq_err_name(e));
        goto fail;
    }

    size_t frame_max = LQ_FRAME_HEADER_BYTES + LQ_FRAME_META_MAX + (size_t)cfg->max_payload_bytes;
    lq_loop_opts lo = {
        .max_connections = cfg->max_connections,
        .user_size = sizeof(srv_conn),
        .in_max = frame_max,
        /* one reply frame must always fit */
        .out_max = cfg->max_output_bytes > frame_max ? cfg->max_output_bytes : frame_max,
        .out_pause = SRV_OUT_PAUSE_BYTES < cfg->max_output_bytes / 2 ? SRV_OUT_PAUSE_BYTES : cfg->max_output_bytes / 2,
        .linger_ms = LINGER_MS,
        .hello_timeout_ms = cfg->hello_timeout_ms,
        .frame_timeout_ms = cfg->frame_timeout_ms,
        .send_timeout_ms = cfg->send_timeout_ms,
    };
    s->reject_len = srv_reject_frame(s->reject, sizeof s->reject);
    lo.reject_bytes = s->reject;
    lo.reject_len = s->reject_len;
    lq_loop_handlers h = {.on_open = on_open, .on_data = on_data, .on_close = on_close, .on_timeout = srv_on_timeout};
    e = lq_loop_create(&lo, &h, s, &s->loop);
    if (e != LQ_OK)
        goto fail;
    char bound[128] = "";
    e = lq_loop_listen_tcp(s->loop, cfg->listen, bound, sizeof bound);
    if (e != LQ_OK)
        goto fail;
    if (cfg->unix_path != NULL) {
        e = lq_loop_listen_unix(s->loop, cfg->unix_path);
        if (e != LQ_OK)
            goto fail;
    }
    e = srv_http_listen(s);
    if (e != LQ_OK)
        goto fail;
    char bs_bound[128] = "-";
    if (cfg->beanstalk_listen != NULL) {
        e = bs_create(s, &s->bs);
        if (e == LQ_OK)
            e = lq_loop_listen_tcp_tag(s->loop, cfg->beanstalk_listen, SRV_PROTO_BEANSTALK, bs_bound,
                                       sizeof bs_bound);
        if (e != LQ_OK)
            goto fail;
    }
    lq_loop_set_wait_hook(s->loop, srv_wait_hook, s);
    e = lq_loop_add_reader(s->loop, lq_committer_eventfd(s->committer), sizeof(uint64_t), srv_on_commit_ready, s);
    if (e == LQ_OK && signal_fd >= 0)
        e = lq_loop_add_reader(s->loop, signal_fd, sizeof(struct signalfd_siginfo), on_signal, s);
    if (e != LQ_OK)
        goto fail;
    LQ_LOGI("started", "listen=%s beanstalk=%s unix=%s data_dir=%s sync=%s map_size=%llu max_payload=%u max_connections=%u "
            "result_retention_ms=%u io_uring=%s",
            bound, bs_bound, cfg->unix_path ? cfg->unix_path : "-", cfg->data_dir, sync_name(cfg->sync),
            (unsigned long long)cfg->map_size_bytes, cfg->max_payload_bytes, cfg->max_connections,
            cfg->result_retention_ms, lq_loop_setup_flags(s->loop));
    LQ_LOGI("limits", "low_watermark_pct=%u high_watermark_pct=%u fill_pct=%llu hello_timeout_ms=%u "
            "frame_timeout_ms=%u send_timeout_ms=%u max_output=%llu max_parked=%u",
            cfg->low_watermark_pct, cfg->high_watermark_pct,
            (unsigned long long)(s->fill_map ? s->fill_used * 100 / s->fill_map : 0), cfg->hello_timeout_ms,
            cfg->frame_timeout_ms, cfg->send_timeout_ms, (unsigned long long)lo.out_max, cfg->max_parked);
    *out = s;
    return LQ_OK;
fail:
    lq_server_destroy(s);
    return e;
}

/* ---- the loop ------------------------------------------------------------------------- */

static void log_aggregates(lq_server *s, uint64_t now)
{
    if (now - s->last_agg_log_ms < 1000)
        return;
    s->last_agg_log_ms = now;
    if (s->requeued_expired > 0)
        LQ_LOGI("leases expired, jobs requeued", "jobs=%llu", (unsigned long long)s->requeued_expired);
    if (s->dead_lettered > 0)
        LQ_LOGI("jobs dead-lettered", "jobs=%llu", (unsigned long long)s->dead_lettered);
    s->requeued_expired = 0;
    s->dead_lettered = 0;
}

/* Redis' beforesleep: timers, then hand the open batch to the committer if it is free. */
static void before_sleep(lq_server *s)
{
    uint64_t now = srv_now(s);
    srv_ops_tick(s, now);
    s->next_tick_ms = lq_core_tick(s->core, now, &s->ev);
    srv_apply_events(s, NULL);
    if (s->bs != NULL) {
        uint64_t bs_next = bs_before_sleep(s, now);
        if (bs_next < s->next_tick_ms)
            s->next_tick_ms = bs_next;
    }
    srv_batches_trim(s, now); /* before the open batch may go to the committer */
    srv_maybe_submit(s);
    /* A read snapshot held across the wait would pin old pages and hide new commits. */
    srv_read_end(s);
    log_aggregates(s, now);
}

static int wait_ms(const lq_server *s)
{
    uint64_t now = srv_now(s);
    uint64_t until = s->next_tick_ms;
    uint64_t cap = s->stopping ? 20 : SRV_HOUSEKEEPING_MS;
    if (until <= now || srv_ops_busy(s))
        return 0;
    return (int)(until - now < cap ? until - now : cap);
}

/* One step of the clean stop; true once there is nothing left to do. */
static bool shutdown_step(lq_server *s)
{
    uint64_t now = srv_now(s);
    bool quiet = s->n_inflight == 0 && srv_batch_empty(srv_open_batch(s));
    switch (s->stop_phase) {
    case 0:
        LQ_LOGI("shutting down", "connections=%u", lq_loop_conn_count(s->loop));
        lq_loop_stop_listening(s->loop);
        lq_loop_stop_reading(s->loop);
        srv_waiters_answer_all(s);
        srv_jobwaits_answer_all(s);
        s->stop_deadline_ms = now + SRV_SHUTDOWN_FLUSH_MS;
        s->stop_phase = 1;
        return false;
    case 1:
        /* Requests already read are finished and their commits answered first. */
        if (!quiet && now < s->stop_deadline_ms)
            return false;
        lq_loop_close_all(s->loop, true);
        s->stop_phase = 2;
        return false;
    default:
        if ((quiet && lq_loop_conn_count(s->loop) == 0) || now >= s->stop_deadline_ms + LINGER_MS)
            return true;
        return false;
    }
}

lq_err lq_server_run(lq_server *s)
{
    before_sleep(s);
    for (;;) {
        lq_err e = lq_loop_run_once(s->loop, wait_ms(s));
        if (e != LQ_OK)
            return e;
        before_sleep(s);
        if (s->stopping && shutdown_step(s))
            break;
    }
    lq_committer_stop(s->committer);
    s->committer = NULL;
    LQ_LOGI("shutdown complete", "commits=%llu commit_failures=%llu early_reads=%llu early_revoked=%llu unfinished_batch=%s",
            (unsigned long long)s->commits, (unsigned long long)s->commit_failures,
            (unsigned long long)s->early_reads, (unsigned long long)s->early_revoked,
            s->n_inflight > 0 ? "true" : "false");
    return LQ_OK;
}

/* ---- driving the request path without a network client (fuzzing, tests) ------------------- */

lq_err lq_server_test_conn(lq_server *s, int fd, uint64_t *conn)
{
    return lq_loop_adopt(s->loop, fd, conn);
}

size_t lq_server_test_feed(lq_server *s, uint64_t conn, const uint8_t *data, size_t len)
{
    void *user = lq_loop_user(s->loop, conn);
    size_t need = 0;
    return user != NULL ? on_data(s, conn, user, data, len, &need) : 0;
}

void lq_server_test_pump(lq_server *s, int timeout_ms)
{
    (void)lq_loop_run_once(s->loop, timeout_ms);
    before_sleep(s);
}

bool lq_server_test_idle(lq_server *s)
{
    return s->n_inflight == 0 && srv_batch_empty(srv_open_batch(s));
}

void lq_server_test_close(lq_server *s, uint64_t conn)
{
    lq_loop_close(s->loop, conn, false);
}

void lq_server_destroy(lq_server *s)
{
    if (s == NULL)
        return;
    lq_loop_destroy(s->loop);
    bs_destroy(s->bs);
    if (s->committer != NULL)
        lq_committer_stop(s->committer);
    srv_read_end(s);
    if (s->store != NULL)
        lq_store_close(s->store);
    if (s->core != NULL)
        lq_core_destroy(s->core);
    srv_batches_free(s);
    srv_jobwaits_free(s);
    srv_admin_free(s);
    srv_ops_free(s);
    lq_auth_free(s->auth);
    lq_map_free(&s->lease_at);
    lq_events_free(&s->ev);
    if (s->arena.chunk != NULL)
        lq_arena_free(&s->arena);
    if (s->out_arena.chunk != NULL)
        lq_arena_free(&s->out_arena);
    free(s->scratch);
    free(s->stats_buf);
    free(s);
}
