/* Queue and lane settings in the "config" database (store.h, end).
 *
 * Record, little-endian:  u8 version | u8 kind | u16 reserved | u32 crc32c | body
 *   crc32c covers the first 4 bytes and the body.
 *   kind 1 (lane):  u32 weight | u64 max_queued | u64 max_queued_bytes | u64 max_wait_ms |
 *                   u64 paused_until_ms | u8 flags (1 sheddable, 2 paused)
 *   kind 2 (queue): u32 lease_ms | u32 max_attempts | u8 flags (1 draining, 2 retention set)
 *                   | u32 retention_ms   (absent in records written before retention existed)
 * A newer version is refused (LQ_E_CORRUPT) rather than half understood. */
#include <lmdb.h>
#include <string.h>

#include "batch.h"
#include "le.h"
#include "record.h"
#include "store_int.h"

#define CFG_VERSION 1u
#define CFG_KIND_LANE 1u
#define CFG_KIND_QUEUE 2u
#define CFG_HEAD 8u
#define CFG_LANE_BODY (4u + 8u * 4u + 1u)
#define CFG_QUEUE_BODY_V0 (4u + 4u + 1u)
#define CFG_QUEUE_BODY (CFG_QUEUE_BODY_V0 + 4u)
#define CFG_KEY_MAX (2u * LQ_NAME_MAX + 1u)

static uint32_t rec_crc(const uint8_t *rec, size_t len)
{
    uint8_t tmp[CFG_HEAD + CFG_LANE_BODY];
    memcpy(tmp, rec, 4);
    memcpy(tmp + 4, rec + CFG_HEAD, len - CFG_HEAD);
    return lq_crc32c(tmp, 4 + len - CFG_HEAD);
}

/* Encodes r into out (room for CFG_HEAD + CFG_LANE_BODY); returns the length. */
static size_t encode(const lq_config_rec *r, uint8_t *out)
{
    memset(out, 0, CFG_HEAD + CFG_LANE_BODY);
    out[0] = CFG_VERSION;
    uint8_t *b = out + CFG_HEAD;
    size_t len;
    if (r->lane.len > 0) {
        const lq_lane_settings *s = &r->lane_set;
        out[1] = CFG_KIND_LANE;
        put_u32(b, s->weight);
        put_u64(b + 4, s->max_queued);
        put_u64(b + 12, s->max_queued_bytes);
        put_u64(b + 20, s->max_wait_ms);
        put_u64(b + 28, s->paused ? s->paused_until_ms : 0);
        b[36] = (uint8_t)((s->sheddable ? 1u : 0u) | (s->paused ? 2u : 0u));
        len = CFG_HEAD + CFG_LANE_BODY;
    } else {
        const lq_queue_opts *q = &r->queue_opts;
        out[1] = CFG_KIND_QUEUE;
        put_u32(b, q->lease_ms);
        put_u32(b + 4, q->max_attempts);
        b[8] = (uint8_t)((q->draining ? 1u : 0u) | (q->retention_set ? 2u : 0u));
        put_u32(b + 9, q->retention_ms);
        len = CFG_HEAD + CFG_QUEUE_BODY;
    }
    put_u32(out + 4, rec_crc(out, len));
    return len;
}

static lq_err decode(const uint8_t *p, size_t len, lq_config_rec *r)
{
    if (len < CFG_HEAD || p[0] != CFG_VERSION || get_u32(p + 4) != rec_crc(p, len))
        return LQ_E_CORRUPT;
    const uint8_t *b = p + CFG_HEAD;
    if (p[1] == CFG_KIND_LANE && len == CFG_HEAD + CFG_LANE_BODY && r->lane.len > 0) {
        r->lane_set = (lq_lane_settings){
            .weight = get_u32(b),
            .max_queued = get_u64(b + 4),
            .max_queued_bytes = get_u64(b + 12),
            .max_wait_ms = get_u64(b + 20),
            .paused_until_ms = get_u64(b + 28),
            .sheddable = (b[36] & 1u) != 0,
            .paused = (b[36] & 2u) != 0,
        };
        return LQ_OK;
    }
    if (p[1] == CFG_KIND_QUEUE && r->lane.len == 0 &&
        (len == CFG_HEAD + CFG_QUEUE_BODY || len == CFG_HEAD + CFG_QUEUE_BODY_V0)) {
        bool has_retention = len == CFG_HEAD + CFG_QUEUE_BODY && (b[8] & 2u) != 0;
        r->queue_opts = (lq_queue_opts){.lease_ms = get_u32(b), .max_attempts = get_u32(b + 4),
                                        .draining = (b[8] & 1u) != 0, .retention_set = has_retention,
                                        .retention_ms = has_retention ? get_u32(b + 9) : 0};
        return LQ_OK;
    }
    return LQ_E_CORRUPT;
}

lq_err lq_batch_put_config(lq_batch *b, const lq_config_rec *r)
{
    if (r->queue.len == 0 || r->queue.len > LQ_NAME_MAX || r->lane.len > LQ_NAME_MAX)
        return LQ_E_INVALID_ARGUMENT;
    uint8_t key[CFG_KEY_MAX], val[CFG_HEAD + CFG_LANE_BODY];
    memcpy(key, r->queue.ptr, r->queue.len);
    key[r->queue.len] = 0;
    if (r->lane.len > 0)
        memcpy(key + r->queue.len + 1, r->lane.ptr, r->lane.len);
    size_t klen = r->queue.len + 1u + r->lane.len;
    size_t vlen = encode(r, val);
    uint8_t *k = lq_batch_copy(b, key, klen);
    uint8_t *v = k != NULL ? lq_batch_copy(b, val, vlen) : NULL;
    if (v == NULL)
        return LQ_E_NOMEM;
    lq_batch_op *op = lq_batch_append_op(b);
    if (op == NULL)
        return LQ_E_LIMIT;
    op->kind = LQ_BOP_CONFIG;
    op->a = k;
    op->a_len = (uint32_t)klen;
    op->b = v;
    op->b_len = (uint32_t)vlen;
    return LQ_OK;
}

int lq_store_apply_config_op(lq_store *st, MDB_txn *txn, const lq_batch_op *op, const char **what)
{
    *what = "put config";
    MDB_val k = {op->a_len, (void *)op->a}, v = {op->b_len, (void *)op->b};
    return mdb_put(txn, st->config, &k, &v, 0);
}

lq_err lq_store_load_config(lq_store *st, lq_store_config_fn fn, void *ctx)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        lq_store_set_err(st, "load config: mdb_txn_begin: %s", mdb_strerror(rc));
        return LQ_E_IO;
    }
    lq_err err = LQ_OK;
    rc = mdb_cursor_open(txn, st->config, &cur);
    MDB_val k, v;
    for (int op = MDB_FIRST; rc == 0 && (rc = mdb_cursor_get(cur, &k, &v, (MDB_cursor_op)op)) == 0; op = MDB_NEXT) {
        const char *key = k.mv_data;
        const char *nul = memchr(key, 0, k.mv_size);
        lq_config_rec r;
        memset(&r, 0, sizeof r);
        if (nul == NULL || nul == key) {
            err = LQ_E_CORRUPT;
            break;
        }
        r.queue = (lq_str){key, (uint32_t)(nul - key)};
        r.lane = (lq_str){nul + 1, (uint32_t)(k.mv_size - (size_t)(nul - key) - 1)};
        if ((err = decode(v.mv_data, v.mv_size, &r)) != LQ_OK || (err = fn(ctx, &r)) != LQ_OK)
            break;
    }
    if (err == LQ_OK && rc != 0 && rc != MDB_NOTFOUND) {
        lq_store_set_err(st, "load config: %s", mdb_strerror(rc));
        err = LQ_E_IO;
    } else if (err == LQ_E_CORRUPT) {
        lq_store_set_err(st, "load config: a record fails its checks");
    }
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return err;
}
