/* Overload limits of the server: lane settings from the flags, storage watermarks, and the
 * error frame for connections over the limit.
 *
 * Storage watermarks. The fill level is sampled once per commit (lq_store_usage: O(number of
 * databases), after the commit so freed pages count as free) and at start. An enqueue is then
 * judged in O(1) against that sample plus the bytes already queued in the batches not yet
 * committed: above the low watermark sheddable lanes get STORAGE_FULL, above the high one every
 * lane does. Acks, nacks, leases, purges and stats never look at it. Enqueues resume by
 * themselves once a commit shows the level back under the watermark.
 *
 * Why 95 % leaves enough room for deletes: LMDB copies every page it modifies (copy on write),
 * and the pages a transaction frees are reusable only by later transactions. A batch that
 * deletes D jobs touches at most D leaf pages and their branch pages in each of the jobs,
 * payloads, results and result_expiry trees, plus the free-list pages that record what it
 * freed. With a tree depth of 3-4 that is at most about 4 x 4 = 16 fresh pages per finished job
 * in the worst case (every job on its own leaves; ids are sequential, so neighbours usually
 * share leaves and the real cost is closer to 1-2 pages per job). Result records are dropped
 * first when the map is full (the store retries without them), so only the deletes need room.
 * 5 % of the default 1 GiB map is 52 MiB = 12,800 pages: room for a worst-case batch of 800
 * acks with scattered ids, and for tens of thousands of typical ones. docs/OPERATIONS.md says
 * how to size --map-size and --high-watermark for small maps. */
#include <string.h>

#include "log.h"
#include "server_int.h"

static const char *level_name(int level)
{
    return level == 2 ? "above the high watermark" : level == 1 ? "above the low watermark" : "below the watermarks";
}

void srv_fill_sample(lq_server *s)
{
    uint64_t used = 0, map = 0;
    if (lq_store_usage(s->store, &used, &map) != LQ_OK || map == 0)
        return; /* keep the last sample */
    s->fill_used = used;
    s->fill_map = map;
    s->fill_low = map / 100 * s->cfg->low_watermark_pct;
    s->fill_high = map / 100 * s->cfg->high_watermark_pct;
    int level = used >= s->fill_high ? 2 : used >= s->fill_low ? 1 : 0;
    if (level != s->fill_level) {
        unsigned pct10 = (unsigned)(used * 1000 / map);
        if (level > s->fill_level)
            LQ_LOGW("storage watermark crossed: enqueues refused", "state=\"%s\" fill_pct=%u.%u used=%llu map=%llu "
                    "refused=%s", level_name(level), pct10 / 10, pct10 % 10, (unsigned long long)used,
                    (unsigned long long)map, level == 2 ? "all lanes" : "sheddable lanes");
        else
            LQ_LOGI("storage watermark crossed: enqueues resume", "state=\"%s\" fill_pct=%u.%u used=%llu map=%llu",
                    level_name(level), pct10 / 10, pct10 % 10, (unsigned long long)used, (unsigned long long)map);
        s->fill_level = level;
    }
    s->storage_high = level == 2; /* readiness (/readyz) follows the high watermark */
}

lq_err srv_storage_admit(lq_server *s, lq_str queue, lq_str lane)
{
    if (s->fill_map == 0)
        return LQ_OK;
    /* the last sample plus what is on its way to disk (a batch already committed but not yet
     * reaped may be in both for a moment: an overestimate, on the safe side) */
    uint64_t est = s->fill_used + lq_batch_bytes(s->batches[s->open].b);
    for (uint32_t i = 0; i < s->n_inflight; i++)
        est += lq_batch_bytes(s->batches[s->inflight[i]].b);
    if (est < s->fill_low)
        return LQ_OK;
    if (est >= s->fill_high)
        return LQ_E_STORAGE_FULL;
    lq_lane_settings ls;
    if (lq_core_lane_get(s->core, queue, lane, &ls) == LQ_OK && ls.sheddable)
        return LQ_E_STORAGE_FULL;
    return LQ_OK;
}

lq_err srv_apply_lane_flags(lq_server *s)
{
    uint64_t now = srv_now(s);
    for (uint32_t i = 0; i < s->cfg->n_lane_flags; i++) {
        const lq_lane_flag *f = &s->cfg->lane_flags[i];
        lq_lane_settings ls;
        if (lq_core_lane_get(s->core, f->queue, f->lane, &ls) != LQ_OK) {
            memset(&ls, 0, sizeof ls);
            ls.weight = 1; /* a new lane's default */
        }
        if (f->set & LQ_LANE_SET_WEIGHT)
            ls.weight = f->s.weight;
        if (f->set & LQ_LANE_SET_MAX_QUEUED)
            ls.max_queued = f->s.max_queued;
        if (f->set & LQ_LANE_SET_MAX_BYTES)
            ls.max_queued_bytes = f->s.max_queued_bytes;
        if (f->set & LQ_LANE_SET_MAX_WAIT)
            ls.max_wait_ms = f->s.max_wait_ms;
        if (f->set & LQ_LANE_SET_SHEDDABLE)
            ls.sheddable = f->s.sheddable;
        lq_err e = lq_core_lane_set(s->core, now, f->queue, f->lane, &ls);
        char qn[256], ln[256];
        lq_log_quote(qn, sizeof qn, f->queue.ptr, f->queue.len);
        lq_log_quote(ln, sizeof ln, f->lane.ptr, f->lane.len);
        if (e != LQ_OK) {
            LQ_LOGE("--lane-config refused", "queue=%s lane=%s error=%s", qn, ln, lq_err_name(e));
            return LQ_E_INVALID_ARGUMENT;
        }
        LQ_LOGI("lane configured", "queue=%s lane=%s weight=%u max_queued=%llu max_queued_bytes=%llu "
                "max_wait_ms=%llu sheddable=%s", qn, ln, ls.weight, (unsigned long long)ls.max_queued,
                (unsigned long long)ls.max_queued_bytes, (unsigned long long)ls.max_wait_ms,
                ls.sheddable ? "true" : "false");
    }
    return LQ_OK;
}

size_t srv_reject_frame(uint8_t *buf, size_t cap)
{
    Leaseq__Error e = LEASEQ__ERROR__INIT;
    e.code = LEASEQ__ERROR_CODE__UNAVAILABLE;
    e.message = (char *)"connection limit reached (--max-connections); try again later";
    e.retry_after_ms = 1000;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.error = &e;
    size_t meta = leaseq__response__get_packed_size(&r);
    if (LQ_FRAME_HEADER_BYTES + meta > cap)
        return 0;
    lq_frame_header(buf, (uint32_t)meta, 0);
    leaseq__response__pack(&r, buf + LQ_FRAME_HEADER_BYTES);
    return LQ_FRAME_HEADER_BYTES + meta;
}

void srv_on_timeout(void *ctx, lq_conn_id id, void *user, const char *what)
{
    lq_server *s = ctx;
    srv_conn *sc = user;
    if (sc->proto != SRV_PROTO_NATIVE) {
        lq_loop_close(s->loop, id, false); /* no native error frame on another protocol */
        return;
    }
    if (strcmp(what, "hello") == 0)
        srv_fail_conn(s, sc, 0, LQ_E_PROTOCOL_ERROR, "no hello within --hello-timeout-ms");
    else
        srv_fail_conn(s, sc, 0, LQ_E_PROTOCOL_ERROR, "frame not completed within --frame-timeout-ms");
}
