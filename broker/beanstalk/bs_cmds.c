/* The beanstalk commands, mapped onto the core: tube = queue, TTR = lease time, release = nack
 * with a priority and delay, bury = dead-letter ("buried"), kick = redrive. */
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/utsname.h>
#include <unistd.h>

#include "beanstalk/bs_int.h"
#include "log.h"

#define URGENT_BELOW 1024

static const char *state_name(uint8_t st)
{
    switch (st) {
    case LQ_STATE_READY: return "ready";
    case LQ_STATE_LEASED: return "reserved";
    case LQ_STATE_DELAYED: return "delayed";
    case LQ_STATE_DEAD: return "buried";
    default: return "invalid";
    }
}

/* ---- job counts per tube ------------------------------------------------------------------ */

typedef struct {
    uint64_t ready, leased, delayed, dead, pending;
} counts;

static void add_lane(void *ctx, const lq_lane_stats *st)
{
    counts *n = ctx;
    n->ready += st->ready;
    n->leased += st->leased;
    n->delayed += st->delayed;
    n->dead += st->dead;
    n->pending += st->pending;
}

static counts tube_counts(lq_server *s, lq_str q)
{
    counts n = {0};
    (void)lq_core_stats(s->core, q, add_lane, &n);
    return n;
}

/* beanstalkd drops a tube when nothing refers to it (no use, no watch, no job); "default" is
 * always there. Tubes with jobs put through the native port are listed as well. Removal swaps
 * the last tube into the gap, as beanstalkd's ms_remove does. */
void bs_prune_tubes(lq_server *s)
{
    bs_server *b = bs_of(s);
    b->prune = false;
    for (uint32_t i = 0; i < b->n_order;) {
        uint32_t slot = b->order[i];
        bs_tube *t = &b->tubes[slot];
        counts n = tube_counts(s, bs_tube_str(b, slot));
        bool used = slot == 0 || t->using_ct > 0 || t->watching_ct > 0 ||
                    n.ready + n.leased + n.delayed + n.dead + n.pending > 0;
        if (used) {
            i++;
            continue;
        }
        t->live = false;
        b->order[i] = b->order[--b->n_order];
    }
}

static void adopt_native_queue(void *ctx, const lq_lane_stats *st)
{
    lq_server *s = ctx;
    if (st->ready + st->leased + st->delayed + st->dead + st->pending > 0)
        (void)bs_tube_get(bs_of(s), st->queue.ptr, st->queue.len, true);
}

static void refresh_tubes(lq_server *s)
{
    bs_prune_tubes(s);
    (void)lq_core_stats(s->core, LQ_STR_NULL, adopt_native_queue, s);
}

/* ---- producer ------------------------------------------------------------------------------ */

static lq_str lane_for(bs_server *b, uint32_t pri)
{
    for (uint32_t i = 0; i < b->n_lanes; i++) {
        if (pri >= b->lanes[i].lo && pri <= b->lanes[i].hi)
            return lq_str_c(b->lanes[i].lane);
    }
    return LQ_STR_NULL;
}

static void cmd_put(lq_server *s, bs_conn *c, const bs_cmd *cmd, uint64_t now)
{
    bs_server *b = bs_of(s);
    c->producer = true;
    if (s->stopping) {
        bs_defer(s, c, BS_R_DRAINING, 0, 0, -1);
        return;
    }
    char ttr[16];
    snprintf(ttr, sizeof ttr, "%u", cmd->ttr_s ? cmd->ttr_s : 1);
    Leaseq__Header h = LEASEQ__HEADER__INIT;
    h.key = (char *)BS_TTR_HEADER;
    h.value = ttr;
    Leaseq__Header *hp = &h;
    Leaseq__HeaderList hl = LEASEQ__HEADER_LIST__INIT;
    hl.n_headers = 1;
    hl.headers = &hp;
    uint8_t hbuf[64];
    size_t hlen = leaseq__header_list__get_packed_size(&hl);
    LQ_ASSERT(hlen <= sizeof hbuf);
    leaseq__header_list__pack(&hl, hbuf);

    lq_str tube = bs_tube_str(b, c->use);
    lq_enqueue_req er = {
        .queue = tube,
        .lane = lane_for(b, cmd->pri),
        .priority = cmd->pri,
        .delay_ms = (uint64_t)cmd->delay_s * 1000u,
        .max_attempts = LQ_MAX_ATTEMPTS_MAX, /* beanstalkd never gives up on a job: as close as it gets */
        .payload_len = cmd->body_len,
    };
    srv_put_ctx put = {.headers = hbuf, .headers_len = (uint32_t)hlen, .payload = cmd->body,
                       .payload_len = cmd->body_len};
    uint64_t id = 0;
    bool dup = false;
    lq_err e = lq_core_enqueue_ex(s->core, now, &er, &id, &dup, &s->ev);
    if (e == LQ_OK) {
        put.job_id = id;
        srv_apply_events(s, &put);
        if (put.failed) {
            lq_core_commit_done(s->core, now, id, false, &s->ev);
            srv_apply_events(s, NULL);
            e = LQ_E_INTERNAL;
        }
    } else {
        srv_apply_events(s, NULL);
    }
    if (e != LQ_OK || srv_item_push(s, id, e) != LQ_OK) {
        if (e == LQ_OK) {
            lq_core_commit_done(s->core, now, id, false, &s->ev);
            srv_apply_events(s, NULL);
        }
        if (e == LQ_E_DRAINING) {
            bs_defer(s, c, BS_R_DRAINING, 0, 0, -1); /* leaseqctl drain: beanstalkd's word */
            return;
        }
        LQ_LOGW("beanstalk put refused", "error=%s", lq_err_name(e));
        bs_defer(s, c, BS_R_OOM, 0, 0, -1);
        return;
    }
    b->total_jobs++;
    b->tubes[c->use].total_jobs++;
    if (cmd->delay_s > 0) {
        bs_jobinfo *ji = bs_info(b, id, true);
        if (ji != NULL)
            ji->delay_s = cmd->delay_s;
    }
    bs_defer(s, c, BS_R_INSERTED, id, 0, (int32_t)(srv_open_batch(s)->n_items - 1));
}

/* ---- workers ------------------------------------------------------------------------------- */

static bool any_ready(lq_server *s, bs_conn *c)
{
    bs_server *b = bs_of(s);
    for (uint32_t i = 0; i < c->n_watch; i++) {
        uint64_t id;
        if (lq_core_bs_first(s->core, bs_tube_str(b, c->watch[i]), LQ_STATE_READY, &id) == LQ_OK)
            return true;
    }
    return false;
}

static void cmd_reserve(lq_server *s, bs_conn *c, int64_t timeout_s, uint64_t now)
{
    c->worker = true;
    if (bs_deadline_soon(c, now) && !any_ready(s, c)) {
        bs_send(s, c, "DEADLINE_SOON\r\n", 15);
        return;
    }
    if (bs_try_reserve(s, c, now))
        return;
    if (timeout_s == 0) {
        bs_send(s, c, "TIMED_OUT\r\n", 11);
        return;
    }
    bs_wait(s, c, timeout_s < 0 ? LQ_TIME_NEVER : now + (uint64_t)timeout_s * 1000u);
}

static void cmd_reserve_job(lq_server *s, bs_conn *c, uint64_t id, uint64_t now)
{
    c->worker = true;
    const uint8_t *body = NULL;
    uint32_t len = 0, ttr_s = 0;
    lq_bs_job j;
    if (lq_core_bs_job(s->core, id, &j) != LQ_OK || j.state == LQ_STATE_LEASED || j.state == LQ_STATE_PENDING ||
        !bs_read_job(s, id, &body, &len, &ttr_s)) {
        bs_send(s, c, "NOT_FOUND\r\n", 11);
        return;
    }
    lq_lease l;
    uint64_t ttr_ms = (uint64_t)ttr_s * 1000u;
    lq_err e = lq_core_bs_lease(s->core, now, id, c->sc->session, ttr_ms > UINT32_MAX ? UINT32_MAX : (uint32_t)ttr_ms,
                                &l, &s->ev);
    srv_apply_events(s, NULL);
    if (e != LQ_OK) {
        bs_send(s, c, "NOT_FOUND\r\n", 11);
        return;
    }
    bs_held *nh = realloc(c->held, ((size_t)c->n_held + 1) * sizeof *nh); /* owner: bs_conn */
    if (nh == NULL) {
        (void)lq_core_release(s->core, now, id, l.token, &s->ev);
        srv_apply_events(s, NULL);
        bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
        return;
    }
    c->held = nh;
    c->cap_held = c->n_held + 1;
    c->held[c->n_held++] = (bs_held){.job_id = id, .token = l.token, .expires_ms = l.expires_ms,
                                     .ttr_ms = (uint32_t)(l.expires_ms - now)};
    bs_send_job(s, c, "RESERVED", id, body, len);
}

/* A held job by id (its TTR not yet run out), or -1. */
static int32_t held(bs_conn *c, uint64_t id, uint64_t now)
{
    int32_t i = bs_held_find(c, id);
    if (i >= 0 && c->held[i].expires_ms <= now) {
        bs_held_remove(c, (uint32_t)i);
        return -1;
    }
    return i;
}

static void cmd_delete(lq_server *s, bs_conn *c, uint64_t id, uint64_t now)
{
    bs_server *b = bs_of(s);
    lq_bs_job j;
    bool have = lq_core_bs_job(s->core, id, &j) == LQ_OK;
    lq_err e = LQ_E_NOT_FOUND;
    int32_t i = held(c, id, now);
    if (i >= 0) {
        e = lq_core_ack(s->core, now, id, c->held[i].token, &s->ev);
        bs_held_remove(c, (uint32_t)i);
    } else if (have && j.state != LQ_STATE_LEASED && j.state != LQ_STATE_PENDING) {
        e = lq_core_bs_delete(s->core, now, id, &s->ev);
    }
    srv_apply_events(s, NULL);
    if (e != LQ_OK) {
        bs_defer(s, c, BS_R_NOT_FOUND, 0, 0, -1);
        return;
    }
    uint32_t t = bs_tube_get(b, j.queue.ptr, j.queue.len, false);
    if (t != LQ_NONE)
        b->tubes[t].cmd_delete++;
    bs_info_drop(b, id);
    b->prune = true;
    bs_defer(s, c, BS_R_DELETED, 0, 0, -1);
}

static void cmd_release(lq_server *s, bs_conn *c, const bs_cmd *cmd, uint64_t now)
{
    int32_t i = held(c, cmd->id, now);
    lq_err e = LQ_E_NOT_FOUND;
    if (i >= 0) {
        e = lq_core_bs_release(s->core, now, cmd->id, c->held[i].token, cmd->pri, (uint64_t)cmd->delay_s * 1000u,
                               &s->ev);
        bs_held_remove(c, (uint32_t)i);
    }
    srv_apply_events(s, NULL);
    if (e != LQ_OK) {
        bs_defer(s, c, BS_R_NOT_FOUND, 0, 0, -1);
        return;
    }
    bs_jobinfo *ji = bs_info(bs_of(s), cmd->id, true);
    if (ji != NULL) {
        ji->releases++;
        ji->delay_s = cmd->delay_s;
    }
    bs_defer(s, c, BS_R_RELEASED, 0, 0, -1);
}

static void cmd_bury(lq_server *s, bs_conn *c, const bs_cmd *cmd, uint64_t now)
{
    int32_t i = held(c, cmd->id, now);
    lq_err e = LQ_E_NOT_FOUND;
    if (i >= 0) {
        e = lq_core_bs_bury(s->core, now, cmd->id, c->held[i].token, cmd->pri, &s->ev);
        bs_held_remove(c, (uint32_t)i);
    }
    srv_apply_events(s, NULL);
    if (e != LQ_OK) {
        bs_defer(s, c, BS_R_NOT_FOUND, 0, 0, -1);
        return;
    }
    bs_jobinfo *ji = bs_info(bs_of(s), cmd->id, true);
    if (ji != NULL)
        ji->buries++;
    bs_defer(s, c, BS_R_BURIED, 0, 0, -1);
}

static void cmd_touch(lq_server *s, bs_conn *c, uint64_t id, uint64_t now)
{
    int32_t i = held(c, id, now);
    uint64_t expires = 0;
    if (i < 0 || lq_core_extend(s->core, now, id, c->held[i].token, c->held[i].ttr_ms, &expires) != LQ_OK) {
        bs_send(s, c, "NOT_FOUND\r\n", 11);
        return;
    }
    c->held[i].expires_ms = expires;
    bs_send(s, c, "TOUCHED\r\n", 9);
}

static bool kick_one(lq_server *s, uint64_t id, uint64_t now)
{
    if (lq_core_bs_kick(s->core, now, id, &s->ev) != LQ_OK)
        return false;
    srv_apply_events(s, NULL);
    bs_jobinfo *ji = bs_info(bs_of(s), id, true);
    if (ji != NULL)
        ji->kicks++;
    return true;
}

static void cmd_kick(lq_server *s, bs_conn *c, uint32_t bound, uint64_t now)
{
    lq_str tube = bs_tube_str(bs_of(s), c->use);
    uint64_t id;
    /* buried jobs first; only when there are none, delayed ones */
    uint8_t st = lq_core_bs_first(s->core, tube, LQ_STATE_DEAD, &id) == LQ_OK ? LQ_STATE_DEAD : LQ_STATE_DELAYED;
    uint32_t n = 0;
    while (n < bound && lq_core_bs_first(s->core, tube, st, &id) == LQ_OK && kick_one(s, id, now))
        n++;
    bs_defer(s, c, BS_R_KICKED_N, 0, n, -1);
}

static void cmd_kick_job(lq_server *s, bs_conn *c, uint64_t id, uint64_t now)
{
    bs_defer(s, c, kick_one(s, id, now) ? BS_R_KICKED : BS_R_NOT_FOUND, 0, 0, -1);
}

/* ---- peeks ----------------------------------------------------------------------------------- */

static void send_found(lq_server *s, bs_conn *c, uint64_t id)
{
    lq_bs_job j;
    const uint8_t *body = NULL;
    uint32_t len = 0, ttr = 0;
    if (lq_core_bs_job(s->core, id, &j) != LQ_OK || j.state == LQ_STATE_PENDING ||
        !bs_read_job(s, id, &body, &len, &ttr)) {
        bs_send(s, c, "NOT_FOUND\r\n", 11);
        return;
    }
    bs_send_job(s, c, "FOUND", id, body, len);
}

static void cmd_peek_state(lq_server *s, bs_conn *c, uint8_t state)
{
    uint64_t id;
    if (lq_core_bs_first(s->core, bs_tube_str(bs_of(s), c->use), state, &id) != LQ_OK) {
        bs_send(s, c, "NOT_FOUND\r\n", 11);
        return;
    }
    send_found(s, c, id);
}

/* ---- stats ----------------------------------------------------------------------------------- */

static void send_text(lq_server *s, bs_conn *c, const char *fmt, ...) __attribute__((format(printf, 3, 4)));

static void send_text(lq_server *s, bs_conn *c, const char *fmt, ...)
{
    bs_server *b = bs_of(s);
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(NULL, 0, fmt, ap);
    va_end(ap);
    char *buf = n >= 0 ? bs_scratch(b, (size_t)n + 1) : NULL;
    if (buf == NULL) {
        bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
        return;
    }
    va_start(ap, fmt);
    vsnprintf(buf, (size_t)n + 1, fmt, ap);
    va_end(ap);
    bs_send_ok(s, c, buf, (size_t)n);
}

static uint64_t secs(uint64_t ms) { return ms / 1000u; }

static void cmd_stats_job(lq_server *s, bs_conn *c, uint64_t id, uint64_t now)
{
    bs_server *b = bs_of(s);
    lq_bs_job j;
    const uint8_t *body;
    uint32_t len, ttr = 0;
    if (lq_core_bs_job(s->core, id, &j) != LQ_OK || j.state == LQ_STATE_PENDING ||
        !bs_read_job(s, id, &body, &len, &ttr)) {
        bs_send(s, c, "NOT_FOUND\r\n", 11);
        return;
    }
    bs_jobinfo *ji = bs_info(b, id, false);
    uint64_t left = (j.state == LQ_STATE_LEASED || j.state == LQ_STATE_DELAYED) && j.time_ms > now
                        ? secs(j.time_ms - now)
                        : 0;
    send_text(s, c,
              "---\nid: %llu\ntube: %.*s\nstate: %s\npri: %u\nage: %llu\ndelay: %u\nttr: %u\ntime-left: %llu\n"
              "file: 0\nreserves: %u\ntimeouts: %u\nreleases: %u\nburies: %u\nkicks: %u\n",
              (unsigned long long)id, (int)j.queue.len, j.queue.ptr, state_name(j.state), (uint32_t)j.priority,
              (unsigned long long)secs(now - j.enqueued_ms), ji ? ji->delay_s : 0, ttr, (unsigned long long)left,
              j.attempts, ji ? ji->timeouts : 0, ji ? ji->releases : 0, ji ? ji->buries : 0, ji ? ji->kicks : 0);
}

static void cmd_stats_tube(lq_server *s, bs_conn *c, const bs_cmd *cmd, uint64_t now)
{
    bs_server *b = bs_of(s);
    refresh_tubes(s);
    uint32_t slot = bs_tube_get(b, cmd->name, cmd->name_len, false);
    if (slot == LQ_NONE) {
        bs_send(s, c, "NOT_FOUND\r\n", 11);
        return;
    }
    bs_tube *t = &b->tubes[slot];
    lq_str q = bs_tube_str(b, slot);
    counts n = tube_counts(s, q);
    bool paused = bs_tube_paused(b, slot, now);
    send_text(s, c,
              "---\nname: %.*s\ncurrent-jobs-urgent: %llu\ncurrent-jobs-ready: %llu\ncurrent-jobs-reserved: %llu\n"
              "current-jobs-delayed: %llu\ncurrent-jobs-buried: %llu\ntotal-jobs: %llu\ncurrent-using: %u\n"
              "current-watching: %u\ncurrent-waiting: %u\ncmd-delete: %llu\ncmd-pause-tube: %llu\npause: %llu\n"
              "pause-time-left: %llu\n",
              (int)q.len, q.ptr, (unsigned long long)lq_core_bs_count_ready_below(s->core, q, URGENT_BELOW),
              (unsigned long long)n.ready, (unsigned long long)n.leased, (unsigned long long)n.delayed,
              (unsigned long long)n.dead, (unsigned long long)t->total_jobs, t->using_ct, t->watching_ct,
              t->waiting_ct, (unsigned long long)t->cmd_delete, (unsigned long long)t->cmd_pause,
              (unsigned long long)(paused ? secs(t->pause_ms) : 0),
              (unsigned long long)(paused ? secs(t->pause_until_ms - now) : 0));
}

static void cmd_stats(lq_server *s, bs_conn *c, uint64_t now)
{
    bs_server *b = bs_of(s);
    refresh_tubes(s);
    counts n = tube_counts(s, LQ_STR_NULL);
    uint32_t producers = 0, workers = 0;
    for (uint32_t i = 0; i < b->n_conns; i++) {
        producers += b->conns[i]->producer;
        workers += b->conns[i]->worker;
    }
    struct rusage ru;
    memset(&ru, 0, sizeof ru);
    getrusage(RUSAGE_SELF, &ru);
    struct utsname un;
    memset(&un, 0, sizeof un);
    uname(&un);
    const uint64_t *o = b->op_ct;
    send_text(s, c,
              "---\ncurrent-jobs-urgent: %llu\ncurrent-jobs-ready: %llu\ncurrent-jobs-reserved: %llu\n"
              "current-jobs-delayed: %llu\ncurrent-jobs-buried: %llu\ncmd-put: %llu\ncmd-peek: %llu\n"
              "cmd-peek-ready: %llu\ncmd-peek-delayed: %llu\ncmd-peek-buried: %llu\ncmd-reserve: %llu\n"
              "cmd-reserve-with-timeout: %llu\ncmd-delete: %llu\ncmd-release: %llu\ncmd-use: %llu\n"
              "cmd-watch: %llu\ncmd-ignore: %llu\ncmd-bury: %llu\ncmd-kick: %llu\ncmd-touch: %llu\n"
              "cmd-stats: %llu\ncmd-stats-job: %llu\ncmd-stats-tube: %llu\ncmd-list-tubes: %llu\n"
              "cmd-list-tube-used: %llu\ncmd-list-tubes-watched: %llu\ncmd-pause-tube: %llu\n"
              "job-timeouts: %llu\ntotal-jobs: %llu\nmax-job-size: %u\ncurrent-tubes: %u\n"
              "current-connections: %u\ncurrent-producers: %u\ncurrent-workers: %u\ncurrent-waiting: %u\n"
              "total-connections: %llu\npid: %ld\nversion: \"1.12\"\nrusage-utime: %ld.%06ld\n"
              "rusage-stime: %ld.%06ld\nuptime: %llu\nbinlog-oldest-index: 0\nbinlog-current-index: 0\n"
              "binlog-records-migrated: 0\nbinlog-records-written: 0\nbinlog-max-size: 0\ndraining: %s\n"
              "id: leaseq\nhostname: %s\nos: %s\nplatform: %s\n",
              (unsigned long long)lq_core_bs_count_ready_below(s->core, LQ_STR_NULL, URGENT_BELOW),
              (unsigned long long)n.ready, (unsigned long long)n.leased, (unsigned long long)n.delayed,
              (unsigned long long)n.dead, (unsigned long long)o[BS_OP_PUT], (unsigned long long)o[BS_OP_PEEK],
              (unsigned long long)o[BS_OP_PEEK_READY], (unsigned long long)o[BS_OP_PEEK_DELAYED],
              (unsigned long long)o[BS_OP_PEEK_BURIED], (unsigned long long)o[BS_OP_RESERVE],
              (unsigned long long)o[BS_OP_RESERVE_TIMEOUT], (unsigned long long)o[BS_OP_DELETE],
              (unsigned long long)o[BS_OP_RELEASE], (unsigned long long)o[BS_OP_USE],
              (unsigned long long)o[BS_OP_WATCH], (unsigned long long)o[BS_OP_IGNORE],
              (unsigned long long)o[BS_OP_BURY], (unsigned long long)o[BS_OP_KICK], (unsigned long long)o[BS_OP_TOUCH],
              (unsigned long long)o[BS_OP_STATS], (unsigned long long)o[BS_OP_STATS_JOB],
              (unsigned long long)o[BS_OP_STATS_TUBE], (unsigned long long)o[BS_OP_LIST_TUBES],
              (unsigned long long)o[BS_OP_LIST_TUBE_USED], (unsigned long long)o[BS_OP_LIST_TUBES_WATCHED],
              (unsigned long long)o[BS_OP_PAUSE_TUBE], (unsigned long long)b->timeouts,
              (unsigned long long)b->total_jobs, b->max_job, b->n_order, b->n_conns, producers, workers,
              b->n_waiters, (unsigned long long)b->total_conns, (long)getpid(), (long)ru.ru_utime.tv_sec,
              (long)ru.ru_utime.tv_usec, (long)ru.ru_stime.tv_sec, (long)ru.ru_stime.tv_usec,
              (unsigned long long)secs(now - b->started_ms), s->stopping ? "true" : "false", un.nodename,
              un.version, un.machine);
}

/* "---\n- a\n- b\n" */
static void send_list(lq_server *s, bs_conn *c, const uint32_t *slots, uint32_t n)
{
    bs_server *b = bs_of(s);
    size_t need = 5;
    for (uint32_t i = 0; i < n; i++)
        need += b->tubes[slots[i]].len + 3;
    char *buf = bs_scratch(b, need);
    if (buf == NULL) {
        bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
        return;
    }
    size_t k = 0;
    memcpy(buf, "---\n", 4);
    k = 4;
    for (uint32_t i = 0; i < n; i++) {
        const bs_tube *t = &b->tubes[slots[i]];
        buf[k++] = '-';
        buf[k++] = ' ';
        memcpy(buf + k, t->name, t->len);
        k += t->len;
        buf[k++] = '\n';
    }
    bs_send_ok(s, c, buf, k);
}

/* ---- tubes ----------------------------------------------------------------------------------- */

static void cmd_use(lq_server *s, bs_conn *c, const bs_cmd *cmd)
{
    bs_server *b = bs_of(s);
    uint32_t t = bs_tube_get(b, cmd->name, cmd->name_len, true);
    if (t == LQ_NONE) {
        bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
        return;
    }
    bs_tube_ref(b, t, 1, 0);
    bs_tube_ref(b, c->use, -1, 0);
    c->use = t;
    bs_sendf(s, c, "USING %.*s\r\n", (int)cmd->name_len, cmd->name);
}

static void cmd_watch(lq_server *s, bs_conn *c, const bs_cmd *cmd)
{
    bs_server *b = bs_of(s);
    uint32_t t = bs_tube_get(b, cmd->name, cmd->name_len, true);
    if (t == LQ_NONE || c->n_watch >= BS_WATCH_MAX) {
        bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
        return;
    }
    bool have = false;
    for (uint32_t i = 0; i < c->n_watch && !have; i++)
        have = c->watch[i] == t;
    if (!have) {
        if (c->n_watch == c->cap_watch) {
            uint32_t *nw = realloc(c->watch, (size_t)c->cap_watch * 2 * sizeof *nw); /* owner: bs_conn */
            if (nw == NULL) {
                bs_send(s, c, "OUT_OF_MEMORY\r\n", 15);
                return;
            }
            c->watch = nw;
            c->cap_watch *= 2;
        }
        c->watch[c->n_watch++] = t;
        bs_tube_ref(b, t, 0, 1);
    }
    bs_sendf(s, c, "WATCHING %u\r\n", c->n_watch);
}

static void cmd_ignore(lq_server *s, bs_conn *c, const bs_cmd *cmd)
{
    bs_server *b = bs_of(s);
    for (uint32_t i = 0; i < c->n_watch; i++) {
        const bs_tube *t = &b->tubes[c->watch[i]];
        if (t->len != cmd->name_len || memcmp(t->name, cmd->name, t->len) != 0)
            continue;
        if (c->n_watch < 2) {
            bs_send(s, c, "NOT_IGNORED\r\n", 13);
            return;
        }
        uint32_t slot = c->watch[i];
        c->watch[i] = c->watch[--c->n_watch]; /* beanstalkd's ms_remove: the last fills the gap */
        bs_tube_ref(b, slot, 0, -1);
        break;
    }
    bs_sendf(s, c, "WATCHING %u\r\n", c->n_watch);
}

typedef struct {
    lq_server *s;
    uint64_t until_ms, now;
} lane_pause;

static void pause_lane(void *ctx, const lq_lane_stats *st)
{
    lane_pause *p = ctx;
    lq_lane_settings ls;
    if (lq_core_lane_get(p->s->core, st->queue, st->lane, &ls) != LQ_OK)
        return;
    ls.paused = true;
    ls.paused_until_ms = p->until_ms;
    /* lq_core_stats does not change the core: setting from its callback is safe */
    (void)lq_core_lane_set(p->s->core, p->now, st->queue, st->lane, &ls);
}

static void cmd_pause(lq_server *s, bs_conn *c, const bs_cmd *cmd, uint64_t now)
{
    bs_server *b = bs_of(s);
    refresh_tubes(s);
    uint32_t t = bs_tube_get(b, cmd->name, cmd->name_len, false);
    if (t == LQ_NONE) {
        bs_send(s, c, "NOT_FOUND\r\n", 11);
        return;
    }
    bs_tube *tb = &b->tubes[t];
    tb->pause_ms = (uint64_t)cmd->delay_s * 1000u;
    tb->pause_until_ms = now + (tb->pause_ms ? tb->pause_ms : 1);
    tb->cmd_pause++;
    /* the queue's lanes pause in the core too, so native dequeues honour it */
    lane_pause ctx = {.s = s, .until_ms = tb->pause_until_ms, .now = now};
    (void)lq_core_stats(s->core, bs_tube_str(b, t), pause_lane, &ctx);
    bs_send(s, c, "PAUSED\r\n", 8);
}

/* ---- dispatch -------------------------------------------------------------------------------- */

void bs_command(lq_server *s, bs_conn *c, const bs_cmd *cmd, uint64_t now)
{
    bs_server *b = bs_of(s);
    if (cmd->op != BS_OP_QUIT && cmd->op != BS_OP_RESERVE_JOB && cmd->op != BS_OP_KICK_JOB)
        b->op_ct[cmd->op]++;
    switch (cmd->op) {
    case BS_OP_PUT: cmd_put(s, c, cmd, now); break;
    case BS_OP_PEEK: send_found(s, c, cmd->id); break;
    case BS_OP_PEEK_READY: cmd_peek_state(s, c, LQ_STATE_READY); break;
    case BS_OP_PEEK_DELAYED: cmd_peek_state(s, c, LQ_STATE_DELAYED); break;
    case BS_OP_PEEK_BURIED: cmd_peek_state(s, c, LQ_STATE_DEAD); break;
    case BS_OP_RESERVE: cmd_reserve(s, c, -1, now); break;
    case BS_OP_RESERVE_TIMEOUT: cmd_reserve(s, c, cmd->timeout_s, now); break;
    case BS_OP_RESERVE_JOB: cmd_reserve_job(s, c, cmd->id, now); break;
    case BS_OP_DELETE: cmd_delete(s, c, cmd->id, now); break;
    case BS_OP_RELEASE: cmd_release(s, c, cmd, now); break;
    case BS_OP_BURY: cmd_bury(s, c, cmd, now); break;
    case BS_OP_KICK: cmd_kick(s, c, cmd->count, now); break;
    case BS_OP_KICK_JOB: cmd_kick_job(s, c, cmd->id, now); break;
    case BS_OP_TOUCH: cmd_touch(s, c, cmd->id, now); break;
    case BS_OP_STATS: cmd_stats(s, c, now); break;
    case BS_OP_STATS_JOB: cmd_stats_job(s, c, cmd->id, now); break;
    case BS_OP_STATS_TUBE: cmd_stats_tube(s, c, cmd, now); break;
    case BS_OP_USE: cmd_use(s, c, cmd); break;
    case BS_OP_WATCH: cmd_watch(s, c, cmd); break;
    case BS_OP_IGNORE: cmd_ignore(s, c, cmd); break;
    case BS_OP_LIST_TUBES:
        refresh_tubes(s);
        send_list(s, c, b->order, b->n_order);
        break;
    case BS_OP_LIST_TUBE_USED:
        bs_sendf(s, c, "USING %.*s\r\n", (int)b->tubes[c->use].len, b->tubes[c->use].name);
        break;
    case BS_OP_LIST_TUBES_WATCHED: send_list(s, c, c->watch, c->n_watch); break;
    case BS_OP_PAUSE_TUBE: cmd_pause(s, c, cmd, now); break;
    case BS_OP_QUIT: c->quit = true; break;
    default: bs_send(s, c, "UNKNOWN_COMMAND\r\n", 17); break;
    }
}
