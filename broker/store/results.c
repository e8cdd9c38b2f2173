/* lq_store results: what a finished job left behind, kept until its expiry. See store.h.
 *
 * "results": id (8 bytes BE) -> result record (result_rec.h).
 * "result_expiry": expires_ms (8 bytes BE) + id (8 bytes BE) -> empty. Every result has exactly
 * one index entry, written and deleted in the same transaction as the result, so the sweep
 * takes the oldest entries from the front of the index and never scans the results.
 */
#include <lmdb.h>
#include <string.h>

#include "../core/lq_assert.h"
#include "batch.h"
#include "record.h"
#include "result_rec.h"
#include "store.h"
#include "store_int.h"

#define EXPIRY_KEY_LEN 16u

/* What a result record says when the map had no room for its bytes. */
static const char DROPPED_TEXT[] = "result dropped: storage full";

static void expiry_key(uint8_t k[EXPIRY_KEY_LEN], uint64_t expires_ms, uint64_t id)
{
    lq_key_be(k, expires_ms);
    lq_key_be(k + 8, id);
}

/* Deletes the index entry of the result stored under k, if there is one. Ids are never
 * reused, so a job finishing over an existing result is a bug elsewhere; the index must
 * still not be left pointing at the new result with the old time. */
static int drop_old_result_index(lq_store *st, MDB_txn *txn, MDB_val *k, uint64_t id)
{
    MDB_val v;
    int rc = mdb_get(txn, st->results, k, &v);
    if (rc == MDB_NOTFOUND)
        return 0;
    if (rc != 0)
        return rc;
    lq_result_view old;
    if (lq_res_decode(v.mv_data, v.mv_size, false, &old) != LQ_OK || old.id != id)
        return APPLY_CORRUPT;
    uint8_t eb[EXPIRY_KEY_LEN];
    expiry_key(eb, old.expires_ms, id);
    MDB_val ek = {sizeof(eb), eb};
    rc = mdb_del(txn, st->result_expiry, &ek, NULL);
    return rc == MDB_NOTFOUND ? 0 : rc;
}

static int apply_finish(lq_store *st, MDB_txn *txn, const lq_batch_op *op, bool with_results,
                        const char **what)
{
    uint8_t kb[8];
    lq_key_be(kb, op->id);
    MDB_val k = {8, kb}, v;
    /* One descent finds the job and deletes it (mdb_get then mdb_del walked the tree twice). */
    *what = "finish: cursor";
    int rc = 0;
    if (st->wjobs == NULL && (rc = mdb_cursor_open(txn, st->jobs, &st->wjobs)) != 0)
        return rc;
    *what = "finish: get job";
    rc = mdb_cursor_get(st->wjobs, &k, &v, MDB_SET);
    if (rc == MDB_NOTFOUND)
        return 0; /* never stored (its put was dropped) or finished already: nothing to do */
    if (rc != 0)
        return rc;
    lq_job_rec rec;
    const uint8_t *h;
    uint32_t hl;
    if (lq_rec_decode(v.mv_data, v.mv_size, &rec, &h, &hl) != LQ_OK || rec.id != op->id)
        return APPLY_CORRUPT;
    /* rec points into the map, and the deletes and puts below may free or move that page:
     * copy the two strings first. Both are capped at LQ_REC_FIELD_MAX by the decode. */
    *what = "finish: scratch";
    if ((rc = lq_store_scratch(st, (size_t)rec.queue.len + rec.idem_key.len)) != 0)
        return rc;
    memcpy(st->scratch, rec.queue.ptr, rec.queue.len);
    memcpy(st->scratch + rec.queue.len, rec.idem_key.ptr, rec.idem_key.len);

    lq_result_view r = {
        .id = op->id, .state = op->state,
        .finished_ms = op->finished_ms, .expires_ms = op->expires_ms,
        .queue = {(const char *)st->scratch, rec.queue.len},
        .idem_key = {(const char *)st->scratch + rec.queue.len, rec.idem_key.len},
        .error = {(const char *)op->a, op->a_len},
        .result = op->b, .result_len = op->b_len};
    uint32_t crc = op->result_crc;
    if (!with_results && op->b_len > 0) {
        r.error = (lq_str){DROPPED_TEXT, sizeof(DROPPED_TEXT) - 1};
        r.result = NULL;
        r.result_len = 0;
        crc = lq_crc32c("", 0);
    }

    *what = "finish: delete job";
    if ((rc = mdb_cursor_del(st->wjobs, 0)) != 0)
        return rc;
    *what = "finish: delete payload";
    rc = mdb_del(txn, st->payloads, &k, NULL);
    if (rc != 0 && rc != MDB_NOTFOUND)
        return rc;

    size_t n = lq_res_encoded_len(&r);
    LQ_ASSERT(n != 0); /* strings within their caps, result within the batch cap */
    /* Reserve and encode in place: a result of MBs is copied once, arena -> map. An old result
     * under the same id is looked for only when the put finds one, not before every put. */
    MDB_val rv = {n, NULL};
    *what = "finish: put result";
    rc = mdb_put(txn, st->results, &k, &rv, MDB_RESERVE | MDB_NOOVERWRITE);
    if (rc == MDB_KEYEXIST) {
        *what = "finish: old result";
        if ((rc = drop_old_result_index(st, txn, &k, op->id)) != 0)
            return rc;
        rv = (MDB_val){n, NULL};
        *what = "finish: put result";
        rc = mdb_put(txn, st->results, &k, &rv, MDB_RESERVE);
    }
    if (rc != 0)
        return rc;
    lq_res_encode(&r, crc, rv.mv_data);

    uint8_t eb[EXPIRY_KEY_LEN];
    expiry_key(eb, op->expires_ms, op->id);
    MDB_val ek = {sizeof(eb), eb}, ev = {0, eb};
    *what = "finish: put expiry";
    return mdb_put(txn, st->result_expiry, &ek, &ev, 0);
}

static int apply_sweep(lq_store *st, MDB_txn *txn, const lq_batch_op *op, const char **what)
{
    MDB_cursor *cur;
    *what = "sweep: mdb_cursor_open";
    int rc = mdb_cursor_open(txn, st->result_expiry, &cur);
    if (rc != 0)
        return rc;
    for (uint32_t done = 0; done < op->max; done++) {
        MDB_val k, v;
        *what = "sweep: mdb_cursor_get";
        /* Always the first entry: the previous one is gone, so no cursor stepping across
         * deletions (and their page merges) is needed. */
        rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST);
        if (rc == MDB_NOTFOUND) {
            rc = 0;
            break;
        }
        if (rc != 0)
            break;
        if (k.mv_size != EXPIRY_KEY_LEN) {
            *what = "sweep: index key";
            rc = APPLY_CORRUPT;
            break;
        }
        /* Copied: the deletes below may free the page k points into. */
        uint8_t eb[EXPIRY_KEY_LEN];
        memcpy(eb, k.mv_data, sizeof(eb));
        if (lq_key_id(eb) > op->expires_ms)
            break; /* the oldest is still live, so every later one is */
        MDB_val rk = {8, eb + 8}, ek = {sizeof(eb), eb};
        *what = "sweep: delete result";
        rc = mdb_del(txn, st->results, &rk, NULL);
        if (rc != 0 && rc != MDB_NOTFOUND)
            break;
        *what = "sweep: delete index";
        if ((rc = mdb_del(txn, st->result_expiry, &ek, NULL)) != 0)
            break;
    }
    mdb_cursor_close(cur);
    return rc;
}

int lq_store_apply_result_op(lq_store *st, MDB_txn *txn, const lq_batch_op *op, bool with_results,
                             const char **what)
{
    if (op->kind == LQ_BOP_FINISH)
        return apply_finish(st, txn, op, with_results, what);
    LQ_ASSERT(op->kind == LQ_BOP_SWEEP);
    return apply_sweep(st, txn, op, what);
}

/* ---- reads -------------------------------------------------------------------------------- */

lq_err lq_store_get_result(lq_store *st, uint64_t id, uint64_t now_ms, lq_result_view *out)
{
    LQ_ASSERT(st->reading);
    uint8_t kb[8];
    lq_key_be(kb, id);
    MDB_val k = {8, kb}, v;
    int rc = mdb_get(st->rtxn, st->results, &k, &v);
    if (rc == MDB_NOTFOUND)
        return LQ_E_NOT_FOUND;
    if (rc != 0)
        return LQ_E_IO;
    lq_result_view r;
    if (lq_res_decode(v.mv_data, v.mv_size, true, &r) != LQ_OK || r.id != id)
        return LQ_E_CORRUPT;
    /* Expired but not swept yet looks the same as swept: what a reader sees does not depend
     * on when the sweep ran. */
    if (r.expires_ms <= now_ms)
        return LQ_E_NOT_FOUND;
    *out = r;
    return LQ_OK;
}

lq_err lq_store_load_results(lq_store *st, uint64_t now_ms, lq_store_result_fn fn, void *ctx)
{
    MDB_txn *txn = NULL;
    MDB_cursor *cur = NULL;
    lq_err err = LQ_E_IO;
    int rc = mdb_txn_begin(st->env, NULL, MDB_RDONLY, &txn);
    if (rc != 0) {
        lq_store_set_err(st, "load results: mdb_txn_begin: %s", mdb_strerror(rc));
        return LQ_E_IO;
    }
    if ((rc = mdb_cursor_open(txn, st->results, &cur)) != 0) {
        lq_store_set_err(st, "load results: mdb_cursor_open: %s", mdb_strerror(rc));
        goto done;
    }
    MDB_val k, v;
    for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
         rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT)) {
        lq_result_view r;
        /* Heads only: the result bytes stay on disk until someone asks for them, and
         * get_result checks them then. */
        if (k.mv_size != 8 || lq_res_decode(v.mv_data, v.mv_size, false, &r) != LQ_OK ||
            r.id != lq_key_id(k.mv_data)) {
            unsigned long long bad = k.mv_size == 8 ? (unsigned long long)lq_key_id(k.mv_data) : 0;
            lq_store_set_err(st, "load results: result %llu: record fails its version, length or "
                             "checksum check", bad);
            err = LQ_E_CORRUPT;
            goto done;
        }
        if (r.expires_ms <= now_ms)
            continue; /* the first sweep deletes it */
        if ((err = fn(ctx, &r)) != LQ_OK) {
            lq_store_set_err(st, "load results: result %llu: refused by the caller: %s",
                             (unsigned long long)r.id, lq_err_name(err));
            goto done;
        }
    }
    err = LQ_E_IO;
    if (rc != MDB_NOTFOUND) {
        lq_store_set_err(st, "load results: mdb_cursor_get: %s", mdb_strerror(rc));
        goto done;
    }
    err = LQ_OK;
done:
    if (cur != NULL)
        mdb_cursor_close(cur);
    mdb_txn_abort(txn);
    return err;
}
