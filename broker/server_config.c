/* Queue settings that operators change at run time: ConfigGet, ConfigSet, and their
 * persistence in the store's "config" database (written through the open batch like every
 * other change, restored at start after the --lanes flags, so operators' changes win). */
#include <stdlib.h>
#include <string.h>

#include "log.h"
#include "server_int.h"

/* Results are for producers waiting on a job, not an archive: the broker flag's cap. */
#define QUEUE_RETENTION_MAX_MS (30u * 24 * 3600 * 1000)

#define LANE_WEIGHT_MAX 1000000u

static const char *q(char *buf, size_t cap, lq_str s)
{
    return lq_log_quote(buf, cap, s.ptr, s.len);
}

static void *alloc(lq_arena *a, size_t n)
{
    return a->pb.alloc(a->pb.allocator_data, n ? n : 1);
}

lq_err srv_persist_lane(lq_server *s, lq_str queue, lq_str lane)
{
    lq_config_rec r = {.queue = queue, .lane = lane.len ? lane : lq_str_c("default")};
    lq_err e = lq_core_lane_get(s->core, queue, r.lane, &r.lane_set);
    if (e == LQ_OK)
        e = lq_batch_put_config(srv_open_batch(s)->b, &r);
    return e;
}

lq_err srv_persist_queue(lq_server *s, lq_str queue)
{
    lq_config_rec r = {.queue = queue};
    lq_err e = lq_core_queue_opts_get(s->core, queue, &r.queue_opts);
    if (e == LQ_OK)
        e = lq_batch_put_config(srv_open_batch(s)->b, &r);
    return e;
}

typedef struct {
    lq_server *s;
    uint64_t now;
    uint32_t lanes, queues;
} load_ctx;

static lq_err apply_config(void *ctx, const lq_config_rec *r)
{
    load_ctx *lc = ctx;
    lq_err e;
    if (r->lane.len > 0) {
        lq_lane_settings set = r->lane_set;
        if (set.paused && set.paused_until_ms != 0 && set.paused_until_ms <= lc->now)
            set.paused = false, set.paused_until_ms = 0; /* its time ran out while we were down */
        e = lq_core_lane_set(lc->s->core, lc->now, r->queue, r->lane, &set);
        lc->lanes++;
    } else {
        e = lq_core_queue_opts_set(lc->s->core, r->queue, &r->queue_opts);
        lc->queues++;
    }
    if (e != LQ_OK) {
        char qb[256], lb[256];
        LQ_LOGW("stored queue setting not applied", "queue=%s lane=%s error=%s", q(qb, sizeof qb, r->queue),
                q(lb, sizeof lb, r->lane), lq_err_name(e));
    }
    return LQ_OK;
}

lq_err srv_ops_load_config(lq_server *s)
{
    load_ctx lc = {.s = s, .now = srv_now(s)};
    lq_err e = lq_store_load_config(s->store, apply_config, &lc);
    if (e != LQ_OK) {
        const char *d = lq_store_last_error(s->store);
        char qb[512];
        LQ_LOGE("cannot load the stored queue settings", "error=%s detail=%s", lq_err_name(e),
                lq_log_quote(qb, sizeof qb, d, strlen(d)));
        return e;
    }
    if (lc.lanes + lc.queues > 0)
        LQ_LOGI("queue settings restored", "lanes=%u queues=%u", lc.lanes, lc.queues);
    return LQ_OK;
}

uint32_t srv_queue_lease_ms(lq_server *s, const char *queue)
{
    lq_queue_opts o;
    return lq_core_queue_opts_get(s->core, lq_str_c(queue), &o) == LQ_OK ? o.lease_ms : 0;
}

uint32_t srv_queue_max_attempts(lq_server *s, const char *queue)
{
    lq_queue_opts o;
    return lq_core_queue_opts_get(s->core, lq_str_c(queue), &o) == LQ_OK ? o.max_attempts : 0;
}

/* ---- ConfigGet, ConfigSet --------------------------------------------------------------------- */

static Leaseq__ConfigItem *item(lq_arena *a, const char *key, const char *fmt, uint64_t v)
{
    Leaseq__ConfigItem *it = alloc(a, sizeof *it);
    char *val = alloc(a, 24);
    if (it == NULL || val == NULL)
        return NULL;
    leaseq__config_item__init(it);
    snprintf(val, 24, fmt, (unsigned long long)v);
    it->key = (char *)key;
    it->value = val;
    return it;
}

bool srv_req_config_get(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__ConfigGet *g)
{
    const lq_lane_info *L;
    const lq_queue_opts *Q;
    uint32_t n;
    lq_err e = srv_ops_collect(s, lq_str_c(g->queue), &L, &Q, &n);
    if (e == LQ_OK && (g->queue[0] == '\0' || n == 0))
        e = g->queue[0] == '\0' ? LQ_E_INVALID_ARGUMENT : LQ_OK;
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, e == LQ_E_NOT_FOUND ? "no such queue" : "config get: a queue is required");
        return true;
    }
    lq_arena *a = &s->out_arena;
    lq_arena_reset(a);
    Leaseq__ConfigReply cr = LEASEQ__CONFIG_REPLY__INIT;
    lq_queue_opts qo = {0};
    (void)lq_core_queue_opts_get(s->core, lq_str_c(g->queue), &qo);
    Leaseq__ConfigItem **qi = alloc(a, 4 * sizeof *qi);
    Leaseq__LaneConfig *lc = alloc(a, n * sizeof *lc);
    Leaseq__LaneConfig **lp = alloc(a, n * sizeof *lp);
    if (qi == NULL || lc == NULL || lp == NULL)
        goto nomem;
    cr.queue = (char *)g->queue;
    qi[0] = item(a, "lease_ms", "%llu", qo.lease_ms);
    qi[1] = item(a, "max_attempts", "%llu", qo.max_attempts);
    qi[2] = item(a, "draining", qo.draining ? "true" : "false", 0);
    qi[3] = qo.retention_set ? item(a, "retention_ms", "%llu", qo.retention_ms) : item(a, "retention_ms", "default", 0);
    cr.n_items = 4;
    cr.items = qi;
    for (uint32_t i = 0; i < n; i++) {
        const lq_lane_settings *x = &L[i].settings;
        Leaseq__ConfigItem **it = alloc(a, 6 * sizeof *it);
        if (it == NULL)
            goto nomem;
        leaseq__lane_config__init(&lc[i]);
        lc[i].name = srv_arena_str(a, L[i].stats.lane);
        it[0] = item(a, "weight", "%llu", x->weight);
        it[1] = item(a, "max_queued", "%llu", x->max_queued);
        it[2] = item(a, "max_queued_bytes", "%llu", x->max_queued_bytes);
        it[3] = item(a, "max_wait_ms", "%llu", x->max_wait_ms);
        it[4] = item(a, "sheddable", x->sheddable ? "true" : "false", 0);
        it[5] = item(a, "paused", x->paused ? "true" : "false", 0);
        for (int k = 0; k < 6; k++)
            if (it[k] == NULL)
                goto nomem;
        lc[i].n_items = 6;
        lc[i].items = it;
        lp[i] = &lc[i];
    }
    for (int k = 0; k < 3; k++)
        if (qi[k] == NULL)
            goto nomem;
    cr.n_lanes = n;
    cr.lanes = lp;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.body_case = LEASEQ__RESPONSE__BODY_CONFIG_GET;
    r.config_get = &cr;
    r.request_id = rid;
    srv_send(s, sc->id, &r, NULL, 0);
    return true;
nomem:
    srv_send_error(s, sc->id, rid, LQ_E_INTERNAL, "reply too large");
    return true;
}

static bool parse_bool(const char *v, bool *out)
{
    if (strcmp(v, "true") == 0 || strcmp(v, "1") == 0 || strcmp(v, "yes") == 0)
        return *out = true, true;
    if (strcmp(v, "false") == 0 || strcmp(v, "0") == 0 || strcmp(v, "no") == 0)
        return *out = false, true;
    return false;
}

static const char *set_key(lq_lane_settings *ls, lq_queue_opts *qo, bool lane, const char *k, const char *v)
{
    uint64_t n = 0;
    bool num = lq_parse_bytes(v, &n);
    if (strcmp(k, "lease_ms") == 0 || strcmp(k, "max_attempts") == 0) {
        if (lane)
            return "lease_ms and max_attempts are queue settings (no --lane)";
        if (!num || n > (strcmp(k, "lease_ms") == 0 ? 43200000u : LQ_MAX_ATTEMPTS_MAX))
            return "lease_ms: 0..43200000, max_attempts: 0..65535 (0 = the broker's default)";
        *(strcmp(k, "lease_ms") == 0 ? &qo->lease_ms : &qo->max_attempts) = (uint32_t)n;
        return NULL;
    }
    if (strcmp(k, "retention_ms") == 0) {
        if (lane)
            return "retention_ms is a queue setting (no --lane)";
        if (strcmp(v, "default") == 0) {
            qo->retention_set = false;
            qo->retention_ms = 0;
            return NULL;
        }
        if (!num || n > QUEUE_RETENTION_MAX_MS)
            return "retention_ms: 0..2592000000 (30 days), or default (the broker's --result-retention)";
        qo->retention_set = true;
        qo->retention_ms = (uint32_t)n;
        return NULL;
    }
    if (!lane)
        return "lane settings need a lane (--lane NAME): weight, max_queued, max_queued_bytes, max_wait_ms, "
               "sheddable";
    if (strcmp(k, "sheddable") == 0)
        return parse_bool(v, &ls->sheddable) ? NULL : "sheddable: true or false";
    if (!num)
        return "a number is expected (suffix K/M/G allowed)";
    if (strcmp(k, "weight") == 0) {
        if (n > LANE_WEIGHT_MAX)
            return "weight: 0..1000000";
        ls->weight = (uint32_t)n;
    } else if (strcmp(k, "max_queued") == 0) {
        ls->max_queued = n;
    } else if (strcmp(k, "max_queued_bytes") == 0) {
        ls->max_queued_bytes = n;
    } else if (strcmp(k, "max_wait_ms") == 0) {
        ls->max_wait_ms = n;
    } else {
        return "unknown key (weight, max_queued, max_queued_bytes, max_wait_ms, sheddable, lease_ms, max_attempts, "
               "retention_ms)";
    }
    return NULL;
}

bool srv_req_config_set(lq_server *s, srv_conn *sc, uint64_t rid, const Leaseq__ConfigSet *c)
{
    lq_str queue = lq_str_c(c->queue), lane = lq_str_c(c->lane);
    bool has_lane = lane.len > 0;
    lq_lane_settings ls = {.weight = 1};
    lq_queue_opts qo = {0};
    if (has_lane)
        (void)lq_core_lane_get(s->core, queue, lane, &ls);
    (void)lq_core_queue_opts_get(s->core, queue, &qo);
    if (c->n_items == 0 || queue.len == 0) {
        srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, "config set: a queue and at least one key=value");
        return true;
    }
    for (size_t i = 0; i < c->n_items; i++) {
        const char *why = set_key(&ls, &qo, has_lane, c->items[i]->key, c->items[i]->value);
        if (why != NULL) {
            char msg[256];
            snprintf(msg, sizeof msg, "%s: %s", c->items[i]->key, why);
            srv_send_error(s, sc->id, rid, LQ_E_INVALID_ARGUMENT, msg);
            return true;
        }
    }
    uint64_t now = srv_now(s);
    lq_err e = has_lane ? lq_core_lane_set(s->core, now, queue, lane, &ls) : lq_core_queue_opts_set(s->core, queue, &qo);
    if (e == LQ_OK)
        e = has_lane ? srv_persist_lane(s, queue, lane) : srv_persist_queue(s, queue);
    if (e != LQ_OK) {
        srv_send_error(s, sc->id, rid, e, NULL);
        return true;
    }
    char qb[256], lb[256];
    LQ_LOGI("queue settings changed", "queue=%s lane=%s keys=%zu", q(qb, sizeof qb, queue),
            has_lane ? q(lb, sizeof lb, lane) : "-", c->n_items);
    return srv_ops_defer(s, sc, rid, OP_CONFIG_SET, 0);
}

