/* Unit tests of the store's results: record codec, finish, sweep, reads, load, damage,
 * map full, and the upgrade of a store written before results existed. */
#define STORE_FIXTURE_DIR "/tmp/lq-results-XXXXXX"
#include "store_fixture.h"

#include <unistd.h>

#include "store/record.h"
#include "store/result_rec.h"

#define RETAIN 600000u /* the broker's default retention: 10 minutes */
#define DROPPED "result dropped: storage full"

/* ---- helpers ----------------------------------------------------------------------------- */

/* Job id's queue is "q<id % 3>" and its idempotency key "key-<id>", so copies can be told apart. */
static void put(lq_batch *b, uint64_t id, const void *payload, uint32_t len)
{
    char q[16], key[32];
    snprintf(q, sizeof(q), "q%u", (unsigned)(id % 3));
    snprintf(key, sizeof(key), "key-%llu", (unsigned long long)id);
    lq_job_rec r = {.id = id, .seq = id, .enqueued_ms = 1, .max_attempts = 3, .payload_len = len,
                    .state = LQ_STATE_READY, .queue = S(q), .lane = S("api"), .tenant = S("t"),
                    .idem_key = S(key), .last_error = S("")};
    assert_int_equal(lq_batch_put_job(b, &r, "h", 1, payload, len), LQ_OK);
}

static void finish(lq_batch *b, uint64_t id, uint8_t state, const char *error, const void *res,
                   uint32_t res_len, uint64_t expires_ms)
{
    assert_int_equal(lq_batch_finish_job(b, id, state, S(error), res, res_len, 1000 + id, expires_ms),
                     LQ_OK);
}

static void check_names(const lq_result_view *r)
{
    char q[16], key[32];
    snprintf(q, sizeof(q), "q%u", (unsigned)(r->id % 3));
    snprintf(key, sizeof(key), "key-%llu", (unsigned long long)r->id);
    assert_true(str_is(r->queue, q));
    assert_true(str_is(r->idem_key, key));
    assert_int_equal(r->finished_ms, 1000 + r->id);
}

/* get_result inside its own read snapshot; returns the code, copies nothing. */
static lq_err get_res(lq_store *st, uint64_t id, uint64_t now, lq_result_view *v)
{
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_err e = lq_store_get_result(st, id, now, v);
    lq_store_read_end(st);
    return e;
}

static void fill_random(uint8_t *p, size_t n, uint64_t seed)
{
    uint64_t x = seed | 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        p[i] = (uint8_t)(x >> 24);
    }
}

static size_t raw_entries(const fixture *fx, const char *db)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi d;
    MDB_stat s;
    raw_env(fx, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &d), 0);
    assert_int_equal(mdb_stat(txn, d, &s), 0);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return s.ms_entries;
}

/* Load collector: copies what it checks, since views die after the callback. */
typedef struct {
    uint32_t n;
    uint64_t ids[64];
    uint8_t states[64];
    bool names_ok, no_bytes;
    lq_err fail_at_3; /* returned for id 3 when not LQ_OK */
} collect;

static lq_err collect_fn(void *ctx, const lq_result_view *r)
{
    collect *c = ctx;
    if (c->fail_at_3 != LQ_OK && r->id == 3)
        return c->fail_at_3;
    if (c->n >= 64)
        return LQ_E_LIMIT;
    char q[16], key[32];
    snprintf(q, sizeof(q), "q%u", (unsigned)(r->id % 3));
    snprintf(key, sizeof(key), "key-%llu", (unsigned long long)r->id);
    c->names_ok &= str_is(r->queue, q) && str_is(r->idem_key, key) && r->finished_ms == 1000 + r->id;
    c->no_bytes &= r->result == NULL && r->result_len == 0;
    c->ids[c->n] = r->id;
    c->states[c->n] = r->state;
    c->n++;
    return LQ_OK;
}

static lq_err load_results(lq_store *st, uint64_t now, collect *c)
{
    lq_err fail = c->fail_at_3;
    memset(c, 0, sizeof(*c));
    c->names_ok = c->no_bytes = true;
    c->fail_at_3 = fail;
    return lq_store_load_results(st, now, collect_fn, c);
}

/* ---- codec ------------------------------------------------------------------------------- */

static void test_result_codec(void **state)
{
    (void)state;
    static const uint8_t bytes[] = "the result";
    lq_result_view r = {.id = 0x0102030405060708ull, .state = LQ_STATE_DONE, .finished_ms = 5,
                        .expires_ms = 600005, .queue = S("images"), .idem_key = S("k"),
                        .error = S("warn"), .result = bytes, .result_len = sizeof(bytes)};
    size_t n = lq_res_encoded_len(&r);
    assert_int_equal(n, LQ_RES_FIXED_LEN + 6 + 1 + 4 + sizeof(bytes));
    uint8_t buf[256];
    lq_res_encode(&r, lq_crc32c(bytes, sizeof(bytes)), buf);
    lq_result_view d;
    assert_int_equal(lq_res_decode(buf, n, true, &d), LQ_OK);
    assert_int_equal(d.id, r.id);
    assert_int_equal(d.state, LQ_STATE_DONE);
    assert_int_equal(d.finished_ms, 5);
    assert_int_equal(d.expires_ms, 600005);
    assert_true(str_is(d.queue, "images") && str_is(d.idem_key, "k") && str_is(d.error, "warn"));
    assert_int_equal(d.result_len, sizeof(bytes));
    assert_memory_equal(d.result, bytes, sizeof(bytes));
    /* Head only: no unchecked bytes handed out. */
    assert_int_equal(lq_res_decode(buf, n, false, &d), LQ_OK);
    assert_null(d.result);
    assert_int_equal(d.result_len, 0);

    buf[n - 1] ^= 0x80; /* last result byte: only the full check sees it */
    assert_int_equal(lq_res_decode(buf, n, true, &d), LQ_E_CORRUPT);
    assert_int_equal(lq_res_decode(buf, n, false, &d), LQ_OK);
    buf[n - 1] ^= 0x80;
    buf[LQ_RES_OFF_EXPIRES] ^= 0x01;
    assert_int_equal(lq_res_decode(buf, n, false, &d), LQ_E_CORRUPT);
    buf[LQ_RES_OFF_EXPIRES] ^= 0x01;
    assert_int_equal(lq_res_decode(buf, n - 1, true, &d), LQ_E_CORRUPT); /* truncated */
    assert_int_equal(lq_res_decode(buf, 10, false, &d), LQ_E_CORRUPT);
    buf[0] = LQ_RES_VERSION + 1;
    assert_int_equal(lq_res_decode(buf, n, true, &d), LQ_E_CORRUPT);

    /* Empty everything: still non-NULL strings and result pointer. */
    lq_result_view e = {.id = 1, .state = LQ_STATE_PURGED};
    n = lq_res_encoded_len(&e);
    assert_int_equal(n, LQ_RES_FIXED_LEN);
    lq_res_encode(&e, lq_crc32c("", 0), buf);
    assert_int_equal(lq_res_decode(buf, n, true, &d), LQ_OK);
    assert_non_null(d.queue.ptr);
    assert_non_null(d.result);
    assert_int_equal(d.result_len, 0);
    e.error.len = LQ_REC_FIELD_MAX + 1;
    assert_int_equal(lq_res_encoded_len(&e), 0);
}

/* ---- finish ------------------------------------------------------------------------------ */

static void test_finish_roundtrip(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 64u << 20, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    static uint8_t pay[1024];
    for (uint64_t id = 1; id <= 3; id++)
        put(b, id, pay, sizeof(pay));
    commit_ok(st, b);

    const uint32_t big = 1u << 20;
    uint8_t *res = malloc(big);
    fill_random(res, big, 42);
    finish(b, 1, LQ_STATE_DONE, "", res, big, 1001 + RETAIN);
    finish(b, 2, LQ_STATE_CANCELLED, "cancelled by user", NULL, 0, 1002 + RETAIN);
    /* Bad arguments are refused before anything is queued. */
    uint32_t ops = lq_batch_count(b);
    assert_int_equal(lq_batch_finish_job(b, 3, LQ_STATE_READY, S(""), NULL, 0, 1, 2), LQ_E_INVALID_ARGUMENT);
    assert_int_equal(lq_batch_finish_job(b, 3, LQ_STATE_DEAD, S(""), NULL, 0, 1, 2), LQ_E_INVALID_ARGUMENT);
    assert_int_equal(lq_batch_finish_job(b, 3, LQ_STATE_DONE, S(""), NULL, 5, 1, 2), LQ_E_INVALID_ARGUMENT);
    assert_int_equal(lq_batch_finish_job(b, 3, LQ_STATE_DONE, (lq_str){NULL, 3}, NULL, 0, 1, 2),
                     LQ_E_INVALID_ARGUMENT);
    assert_int_equal(lq_batch_count(b), ops);
    assert_true(lq_batch_bytes(b) >= big);
    memset(res + 100, 0, 100); /* the batch holds its own copy */
    commit_ok(st, b);
    fill_random(res, big, 42);

    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view jv;
    assert_int_equal(lq_store_get_job(st, 1, &jv), LQ_E_NOT_FOUND);
    assert_int_equal(lq_store_get_job(st, 2, &jv), LQ_E_NOT_FOUND);
    assert_int_equal(lq_store_get_job(st, 3, &jv), LQ_OK);
    lq_result_view r;
    assert_int_equal(lq_store_get_result(st, 1, 2000, &r), LQ_OK);
    assert_int_equal(r.id, 1);
    assert_int_equal(r.state, LQ_STATE_DONE);
    assert_int_equal(r.expires_ms, 1001 + RETAIN);
    check_names(&r);
    assert_int_equal(r.error.len, 0);
    assert_int_equal(r.result_len, big);
    assert_memory_equal(r.result, res, big);
    assert_int_equal(lq_store_get_result(st, 2, 2000, &r), LQ_OK);
    assert_int_equal(r.state, LQ_STATE_CANCELLED);
    check_names(&r);
    assert_true(str_is(r.error, "cancelled by user"));
    assert_int_equal(r.result_len, 0);
    assert_int_equal(lq_store_get_result(st, 3, 2000, &r), LQ_E_NOT_FOUND);
    lq_store_read_end(st);
    lq_store_close(st);

    assert_int_equal(raw_entries(fx, "jobs"), 1);
    assert_int_equal(raw_entries(fx, "payloads"), 1);
    assert_int_equal(raw_entries(fx, "results"), 2);
    assert_int_equal(raw_entries(fx, "result_expiry"), 2);
    free(res);
    lq_batch_destroy(b);
}

static void test_finish_not_stored_skipped(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    finish(b, 99, LQ_STATE_DONE, "", "x", 1, RETAIN); /* never stored */
    put(b, 5, "p", 1);                                /* put and finished in one batch */
    finish(b, 5, LQ_STATE_DONE, "", "first", 5, RETAIN);
    finish(b, 5, LQ_STATE_EXPIRED, "late", "second", 6, 2 * RETAIN); /* finished already */
    commit_ok(st, b);

    lq_result_view r;
    assert_int_equal(get_res(st, 99, 0, &r), LQ_E_NOT_FOUND);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    assert_int_equal(lq_store_get_result(st, 5, 0, &r), LQ_OK);
    assert_int_equal(r.state, LQ_STATE_DONE);
    assert_int_equal(r.expires_ms, RETAIN);
    assert_int_equal(r.result_len, 5);
    assert_memory_equal(r.result, "first", 5);
    lq_store_read_end(st);
    lq_store_close(st);
    assert_int_equal(raw_entries(fx, "results"), 1);
    assert_int_equal(raw_entries(fx, "result_expiry"), 1);
    lq_batch_destroy(b);
}

/* A finish that meets a stored result under its id (ids are never reused, so only a bug
 * elsewhere gets here) replaces it, and the old result's expiry entry goes with it: the
 * put finds the old record only when it is there, without a lookup before every put. */
static void test_finish_over_old_result_replaces_it(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    put(b, 7, "p", 1);
    put(b, 8, "p", 1);
    commit_ok(st, b);
    finish(b, 7, LQ_STATE_DONE, "", "old", 3, 100);
    finish(b, 8, LQ_STATE_DONE, "", "other", 5, 100);
    commit_ok(st, b);
    put(b, 7, "q", 1); /* the same id again */
    commit_ok(st, b);
    finish(b, 7, LQ_STATE_CANCELLED, "again", "new!", 4, 900);
    commit_ok(st, b);

    lq_result_view r;
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    assert_int_equal(lq_store_get_result(st, 7, 0, &r), LQ_OK);
    assert_int_equal(r.state, LQ_STATE_CANCELLED);
    assert_int_equal(r.expires_ms, 900);
    assert_int_equal(r.result_len, 4);
    assert_memory_equal(r.result, "new!", 4);
    lq_store_read_end(st);
    /* The old time no longer sweeps it (its entry went); the new one does. */
    lq_batch_sweep_results(b, 100, 10);
    commit_ok(st, b);
    assert_int_equal(get_res(st, 8, 0, &r), LQ_E_NOT_FOUND);
    assert_int_equal(get_res(st, 7, 0, &r), LQ_OK);
    lq_batch_sweep_results(b, 900, 10);
    commit_ok(st, b);
    assert_int_equal(get_res(st, 7, 0, &r), LQ_E_NOT_FOUND);
    lq_store_close(st);
    assert_int_equal(raw_entries(fx, "results"), 0);
    assert_int_equal(raw_entries(fx, "result_expiry"), 0);
    lq_batch_destroy(b);
}

/* ---- expiry and sweep -------------------------------------------------------------------- */

static void test_expired_not_found_before_sweep(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    put(b, 1, "p", 1);
    commit_ok(st, b);
    finish(b, 1, LQ_STATE_DONE, "", "r", 1, 5000);
    commit_ok(st, b);
    lq_result_view r;
    assert_int_equal(get_res(st, 1, 4999, &r), LQ_OK);
    assert_int_equal(get_res(st, 1, 5000, &r), LQ_E_NOT_FOUND);
    assert_int_equal(get_res(st, 1, 9000, &r), LQ_E_NOT_FOUND);
    assert_int_equal(get_res(st, 1, 4999, &r), LQ_OK); /* no sweep ran: still stored */
    lq_batch_sweep_results(b, 4999, 100);
    commit_ok(st, b);
    assert_int_equal(get_res(st, 1, 0, &r), LQ_OK);
    lq_batch_sweep_results(b, 5000, 100);
    commit_ok(st, b);
    assert_int_equal(get_res(st, 1, 0, &r), LQ_E_NOT_FOUND);
    lq_batch_destroy(b);
    lq_store_close(st);
}

static void test_sweep_oldest_first_at_most_max(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    /* Expiry order differs from id order: the sweep goes by time. */
    static const uint64_t exp[7] = {0, 300, 100, 200, 500, 400, 10000};
    for (uint64_t id = 1; id <= 6; id++)
        put(b, id, "p", 1);
    commit_ok(st, b);
    for (uint64_t id = 1; id <= 6; id++)
        finish(b, id, LQ_STATE_DONE, "", "r", 1, exp[id]);
    commit_ok(st, b);

    lq_result_view r;
    lq_batch_sweep_results(b, 450, 0); /* max 0: nothing */
    assert_int_equal(lq_batch_count(b), 0);
    lq_batch_sweep_results(b, 450, 2);
    commit_ok(st, b);
    static const bool left1[7] = {0, 1, 0, 0, 1, 1, 1};
    for (uint64_t id = 1; id <= 6; id++)
        assert_int_equal(get_res(st, id, 0, &r), left1[id] ? LQ_OK : LQ_E_NOT_FOUND);

    lq_batch_sweep_results(b, 450, 10); /* only 300 and 400 are due */
    commit_ok(st, b);
    static const bool left2[7] = {0, 0, 0, 0, 1, 0, 1};
    for (uint64_t id = 1; id <= 6; id++)
        assert_int_equal(get_res(st, id, 0, &r), left2[id] ? LQ_OK : LQ_E_NOT_FOUND);

    /* Two sweeps in one batch, the second at an inclusive boundary. */
    lq_batch_sweep_results(b, 10, 10);
    lq_batch_sweep_results(b, 500, 10);
    commit_ok(st, b);
    assert_int_equal(get_res(st, 4, 0, &r), LQ_E_NOT_FOUND);
    assert_int_equal(get_res(st, 6, 0, &r), LQ_OK);
    lq_batch_sweep_results(b, UINT64_MAX, 10);
    commit_ok(st, b);
    lq_batch_sweep_results(b, UINT64_MAX, 10); /* an empty index is fine */
    commit_ok(st, b);
    lq_store_close(st);
    assert_int_equal(raw_entries(fx, "results"), 0);
    assert_int_equal(raw_entries(fx, "result_expiry"), 0);
    lq_batch_destroy(b);
}

/* ---- load -------------------------------------------------------------------------------- */

static void test_load_results_after_reopen(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    collect c = {0};
    assert_int_equal(load_results(st, 0, &c), LQ_OK); /* a new store */
    assert_int_equal(c.n, 0);
    for (uint64_t id = 1; id <= 6; id++)
        put(b, id, "p", 1);
    commit_ok(st, b);
    for (uint64_t id = 6; id >= 1; id--) /* added out of id order */
        finish(b, id, id == 4 ? LQ_STATE_PURGED : LQ_STATE_DONE, "", "res", 3, id % 2 ? 100 : 2000);
    commit_ok(st, b);
    lq_store_close(st);

    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    assert_int_equal(load_results(st, 500, &c), LQ_OK);
    assert_int_equal(c.n, 3);
    assert_int_equal(c.ids[0], 2);
    assert_int_equal(c.ids[1], 4);
    assert_int_equal(c.ids[2], 6);
    assert_int_equal(c.states[1], LQ_STATE_PURGED);
    assert_true(c.names_ok);
    assert_true(c.no_bytes);
    assert_int_equal(load_results(st, 0, &c), LQ_OK); /* nothing expired yet at 0 */
    assert_int_equal(c.n, 6);
    assert_int_equal(load_results(st, 2000, &c), LQ_OK);
    assert_int_equal(c.n, 0);

    c.fail_at_3 = LQ_E_LIMIT; /* the caller's refusal stops the walk with its code */
    assert_int_equal(load_results(st, 0, &c), LQ_E_LIMIT);
    assert_int_equal(c.n, 2);
    assert_non_null(strstr(lq_store_last_error(st), "result 3"));
    lq_batch_destroy(b);
    lq_store_close(st);
}

/* ---- damage ------------------------------------------------------------------------------ */

/* Flips one bit at off (from the end if negative) of the stored value under id in db. */
static void flip(const fixture *fx, const char *db, uint64_t id, long off)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi d;
    raw_env(fx, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, db, 0, &d), 0);
    uint8_t kb[8] = {0, 0, 0, 0, 0, 0, 0, (uint8_t)id};
    MDB_val k = {8, kb}, v;
    assert_int_equal(mdb_get(txn, d, &k, &v), 0);
    uint8_t *copy = malloc(v.mv_size);
    memcpy(copy, v.mv_data, v.mv_size);
    copy[off >= 0 ? (size_t)off : v.mv_size - (size_t)-off] ^= 0x01;
    MDB_val nv = {v.mv_size, copy};
    assert_int_equal(mdb_put(txn, d, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
    free(copy);
}

static void test_corrupt_result(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    static uint8_t res[10000];
    fill_random(res, sizeof(res), 7);
    for (uint64_t id = 1; id <= 4; id++)
        put(b, id, "p", 1);
    commit_ok(st, b);
    for (uint64_t id = 1; id <= 3; id++)
        finish(b, id, LQ_STATE_DONE, "", res, sizeof(res), RETAIN);
    commit_ok(st, b);
    lq_store_close(st);

    flip(fx, "results", 3, -1);                 /* a result byte: seen when it is read */
    flip(fx, "results", 2, LQ_RES_OFF_EXPIRES); /* the head: seen at start */
    flip(fx, "jobs", 4, 40);                    /* the job record a finish reads */

    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    collect c = {0};
    assert_int_equal(load_results(st, 0, &c), LQ_E_CORRUPT);
    assert_int_equal(c.n, 1); /* result 1 came before the damage */
    assert_non_null(strstr(lq_store_last_error(st), "result 2"));
    lq_result_view r;
    assert_int_equal(get_res(st, 1, 0, &r), LQ_OK);
    assert_int_equal(get_res(st, 2, 0, &r), LQ_E_CORRUPT);
    assert_int_equal(get_res(st, 3, 0, &r), LQ_E_CORRUPT);

    /* A finish meeting a damaged job record fails the commit as a whole. */
    lq_batch_sweep_results(b, UINT64_MAX, 10);
    finish(b, 4, LQ_STATE_DONE, "", "r", 1, RETAIN);
    bool dropped;
    assert_int_equal(lq_store_commit(st, b, &dropped), LQ_E_CORRUPT);
    assert_non_null(strstr(lq_store_last_error(st), "finish"));
    lq_batch_reset(b);
    assert_int_equal(get_res(st, 1, 0, &r), LQ_OK); /* the sweep did not land either */

    /* The sweep deletes damaged results without reading them: the way out of a bad one. */
    lq_batch_sweep_results(b, UINT64_MAX, 10);
    commit_ok(st, b);
    assert_int_equal(load_results(st, 0, &c), LQ_OK);
    assert_int_equal(c.n, 0);
    lq_batch_destroy(b);
    lq_store_close(st);
}

/* ---- map full ---------------------------------------------------------------------------- */

static void test_map_full_finish_lands(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 1u << 20, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    static uint8_t pay[4000];
    memset(pay, 0xAB, sizeof(pay));
    uint64_t id = 1;
    bool dropped = false;
    for (int rounds = 0; !dropped && rounds < 1000; rounds++) {
        for (int i = 0; i < 8; i++, id++)
            put(b, id, pay, sizeof(pay));
        assert_int_equal(lq_store_commit(st, b, &dropped), LQ_OK);
        lq_batch_reset(b);
    }
    assert_true(dropped);
    uint64_t last_stored = id - 9;
    assert_true(last_stored > 100);

    /* A result far bigger than the free space: the puts go first, then the result bytes, and
     * the state changes land as small result records. */
    const uint32_t big = 600u << 10;
    uint8_t *res = malloc(big);
    fill_random(res, big, 3);
    put(b, id, pay, sizeof(pay));
    finish(b, 1, LQ_STATE_DONE, "", res, big, RETAIN);
    finish(b, 2, LQ_STATE_DONE, "", "small", 5, RETAIN);
    finish(b, 3, LQ_STATE_CANCELLED, "by user", NULL, 0, RETAIN);
    dropped = false;
    assert_int_equal(lq_store_commit(st, b, &dropped), LQ_OK);
    assert_true(dropped);
    lq_batch_reset(b);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_result_view r;
    lq_job_view jv;
    for (uint64_t f = 1; f <= 3; f++) {
        assert_int_equal(lq_store_get_job(st, f, &jv), LQ_E_NOT_FOUND);
        assert_int_equal(lq_store_get_result(st, f, 0, &r), LQ_OK);
        check_names(&r);
        assert_int_equal(r.result_len, 0);
        assert_true(str_is(r.error, f == 3 ? "by user" : DROPPED));
    }
    assert_int_equal(lq_store_get_result(st, 1, 0, &r), LQ_OK);
    assert_int_equal(r.state, LQ_STATE_DONE);
    assert_int_equal(lq_store_get_job(st, id, &jv), LQ_E_NOT_FOUND);
    lq_store_read_end(st);

    /* Free some space in earlier transactions; then a put that still cannot fit is dropped
     * while a finish keeps its (small) result bytes. */
    for (uint64_t d = 4; d <= 40; d++)
        assert_int_equal(lq_batch_delete_job(b, d), LQ_OK);
    commit_ok(st, b);
    /* LMDB hands out pages freed by transaction N from transaction N + 2 on: one more. */
    lq_batch_set_counters(b, id, id);
    commit_ok(st, b);
    uint8_t *huge = calloc(1, 300u << 10);
    put(b, id, huge, 300u << 10);
    free(huge);
    finish(b, 41, LQ_STATE_DONE, "", pay, sizeof(pay), RETAIN);
    dropped = false;
    assert_int_equal(lq_store_commit(st, b, &dropped), LQ_OK);
    assert_true(dropped);
    lq_batch_reset(b);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    assert_int_equal(lq_store_get_result(st, 41, 0, &r), LQ_OK);
    assert_int_equal(r.error.len, 0);
    assert_int_equal(r.result_len, sizeof(pay));
    assert_memory_equal(r.result, pay, sizeof(pay));
    lq_store_read_end(st);

    /* A batch with results but no puts also falls back to dropping the bytes. */
    finish(b, 42, LQ_STATE_DONE, "", res, big, RETAIN);
    dropped = true;
    assert_int_equal(lq_store_commit(st, b, &dropped), LQ_OK);
    assert_false(dropped); /* no puts were in it */
    lq_batch_reset(b);
    assert_int_equal(get_res(st, 42, 0, &r), LQ_OK);
    lq_store_close(st);

    st = open_store(fx, 1u << 20, LQ_SYNC_FULL, 0);
    collect c = {0};
    assert_int_equal(load_results(st, 0, &c), LQ_OK);
    assert_int_equal(c.n, 5);
    assert_true(c.names_ok);
    lq_store_close(st);
    free(res);
    lq_batch_destroy(b);
}

/* ---- format upgrade ---------------------------------------------------------------------- */

/* Turns the store into what the previous format wrote: no results databases, version 1. */
static void make_v1(const fixture *fx)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi d;
    raw_env(fx, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, "results", 0, &d), 0);
    assert_int_equal(mdb_drop(txn, d, 1), 0);
    assert_int_equal(mdb_dbi_open(txn, "result_expiry", 0, &d), 0);
    assert_int_equal(mdb_drop(txn, d, 1), 0);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &d), 0);
    MDB_val k = {14, (void *)"format_version"}, v = {4, (void *)"\x01\x00\x00\x00"};
    assert_int_equal(mdb_put(txn, d, &k, &v, 0), 0);
    assert_int_equal(mdb_dbi_open(txn, "results", 0, &d), MDB_NOTFOUND);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static uint32_t raw_version(const fixture *fx)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi d;
    raw_env(fx, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &d), 0);
    MDB_val k = {14, (void *)"format_version"}, v;
    assert_int_equal(mdb_get(txn, d, &k, &v), 0);
    assert_int_equal(v.mv_size, 4);
    uint32_t ver = ((const uint8_t *)v.mv_data)[0];
    mdb_txn_abort(txn);
    mdb_env_close(env);
    return ver;
}

static void test_previous_format_upgraded(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    for (uint64_t id = 1; id <= 3; id++)
        put(b, id, "p", 1);
    lq_batch_set_counters(b, 4, 4);
    commit_ok(st, b);
    lq_store_close(st);
    assert_int_equal(raw_version(fx), 2);
    make_v1(fx);

    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_store_close(st);
    assert_int_equal(raw_version(fx), 2);
    assert_int_equal(raw_entries(fx, "results"), 0); /* created, empty */

    st = open_store(fx, 0, LQ_SYNC_FULL, 0); /* and opens again as a current store */
    uint64_t used, map;
    assert_int_equal(lq_store_usage(st, &used, &map), LQ_OK);
    finish(b, 2, LQ_STATE_DONE, "", "r", 1, RETAIN);
    commit_ok(st, b);
    lq_store_close(st);

    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    collect c = {0};
    assert_int_equal(load_results(st, 0, &c), LQ_OK);
    assert_int_equal(c.n, 1);
    assert_int_equal(c.ids[0], 2);
    lq_result_view r;
    assert_int_equal(get_res(st, 2, 0, &r), LQ_OK);
    assert_int_equal(get_res(st, 1, 0, &r), LQ_E_NOT_FOUND);
    lq_batch_destroy(b);
    lq_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_result_codec),
        cmocka_unit_test_setup_teardown(test_finish_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_not_stored_skipped, setup, teardown),
        cmocka_unit_test_setup_teardown(test_expired_not_found_before_sweep, setup, teardown),
        cmocka_unit_test_setup_teardown(test_finish_over_old_result_replaces_it, setup, teardown),
        cmocka_unit_test_setup_teardown(test_sweep_oldest_first_at_most_max, setup, teardown),
        cmocka_unit_test_setup_teardown(test_load_results_after_reopen, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_result, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full_finish_lands, setup, teardown),
        cmocka_unit_test_setup_teardown(test_previous_format_upgraded, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
