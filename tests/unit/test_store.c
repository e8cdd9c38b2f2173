/* Unit tests of the LMDB store: record codec, batches, commit, load, reads, map-full, usage. */
#define STORE_FIXTURE_DIR "/tmp/lq-store-XXXXXX"
#include "store_fixture.h"

#include <unistd.h>

#include "store/record.h"

/* ---- helpers ----------------------------------------------------------------------------- */

static lq_job_rec mkrec(uint64_t id, uint32_t payload_len)
{
    return (lq_job_rec){
        .id = id, .seq = id * 10 + 1, .priority = -5 - (int64_t)id, .enqueued_ms = 1700000000000ull + id,
        .not_before_ms = 42 + id, .deadline_ms = 99999 + id, .attempts = 3, .max_attempts = 7,
        .payload_len = payload_len, .state = LQ_STATE_READY,
        .queue = S("images"), .lane = S("api"), .tenant = S("tenant-x"), .idem_key = S("idem-abc"),
        .last_error = S("")};
}

static void put(lq_batch *b, uint64_t id, const void *payload, uint32_t len)
{
    lq_job_rec r = mkrec(id, len);
    static const uint8_t hdr[] = {1, 2, 3, 0, 255};
    assert_int_equal(lq_batch_put_job(b, &r, hdr, sizeof(hdr), payload, len), LQ_OK);
}

/* Load collector: copies what it needs, since strings die after the callback. */
typedef struct {
    uint32_t n;
    uint64_t ids[4096];
    uint8_t states[4096];
    uint32_t attempts[4096];
    char last_error[64]; /* of the first record */
    bool all_fields_ok;
} collect;

static lq_err collect_fn(void *ctx, const lq_job_rec *r)
{
    collect *c = ctx;
    if (c->n >= 4096)
        return LQ_E_LIMIT;
    c->ids[c->n] = r->id;
    c->states[c->n] = r->state;
    c->attempts[c->n] = r->attempts;
    if (c->n == 0) /* the first record's, which the tests pick to check */
        snprintf(c->last_error, sizeof(c->last_error), "%.*s", (int)r->last_error.len, r->last_error.ptr);
    lq_job_rec e = mkrec(r->id, r->payload_len);
    c->all_fields_ok &= r->seq == e.seq && r->priority == e.priority && r->enqueued_ms == e.enqueued_ms &&
                        r->deadline_ms == e.deadline_ms && r->max_attempts == e.max_attempts &&
                        str_is(r->queue, "images") && str_is(r->lane, "api") &&
                        str_is(r->tenant, "tenant-x") && str_is(r->idem_key, "idem-abc");
    c->n++;
    return LQ_OK;
}

static void load(lq_store *st, collect *c, uint64_t *nid, uint64_t *nseq)
{
    memset(c, 0, sizeof(*c));
    c->all_fields_ok = true;
    assert_int_equal(lq_store_load(st, collect_fn, c, nid, nseq), LQ_OK);
}

/* ---- codec ------------------------------------------------------------------------------- */

static void test_crc32c(void **state)
{
    (void)state;
    assert_int_equal(lq_crc32c("123456789", 9), 0xE3069283u);
    assert_int_equal(lq_crc32c_sw("123456789", 9), 0xE3069283u);
    uint8_t buf[1031];
    for (size_t i = 0; i < sizeof(buf); i++)
        buf[i] = (uint8_t)(i * 131 + 7);
    for (size_t n = 0; n < sizeof(buf); n += 37)
        assert_int_equal(lq_crc32c(buf + 3, n - (n ? 3 : 0)), lq_crc32c_sw(buf + 3, n - (n ? 3 : 0)));
}

static void test_record_codec(void **state)
{
    (void)state;
    lq_job_rec r = mkrec(0x0102030405060708ull, 77);
    r.priority = INT64_MIN;
    r.last_error = S("boom");
    const char hdr[] = "h\0eaders";
    size_t n = lq_rec_encoded_len(&r, sizeof(hdr));
    assert_int_equal(n, LQ_REC_FIXED_LEN + 6 + 3 + 8 + 8 + 4 + sizeof(hdr));
    uint8_t *buf = malloc(n);
    lq_rec_encode(&r, hdr, sizeof(hdr), buf);
    assert_int_equal(buf[0], LQ_REC_VERSION);
    assert_int_equal(buf[8], 0x08); /* little-endian id */

    lq_job_rec d;
    const uint8_t *h;
    uint32_t hl;
    assert_int_equal(lq_rec_decode(buf, n, &d, &h, &hl), LQ_OK);
    assert_true(d.id == r.id && d.priority == INT64_MIN && d.payload_len == 77);
    assert_true(str_is(d.last_error, "boom") && str_is(d.queue, "images"));
    assert_int_equal(hl, sizeof(hdr));
    assert_memory_equal(h, hdr, sizeof(hdr));

    for (size_t i = 0; i < n; i++) { /* every single-byte flip is caught */
        buf[i] ^= 0x10;
        assert_int_equal(lq_rec_decode(buf, n, &d, &h, &hl), LQ_E_CORRUPT);
        buf[i] ^= 0x10;
    }
    assert_int_equal(lq_rec_decode(buf, n - 1, &d, &h, &hl), LQ_E_CORRUPT);
    assert_int_equal(lq_rec_decode(buf, 10, &d, &h, &hl), LQ_E_CORRUPT);
    r.tenant.len = LQ_REC_FIELD_MAX + 1;
    assert_int_equal(lq_rec_encoded_len(&r, 0), 0);
    free(buf);
}

static void test_sync_mode_parse(void **state)
{
    (void)state;
    lq_sync_mode m;
    assert_int_equal(lq_sync_mode_parse("full", &m), LQ_OK);
    assert_int_equal(m, LQ_SYNC_FULL);
    assert_int_equal(lq_sync_mode_parse("periodic", &m), LQ_OK);
    assert_int_equal(m, LQ_SYNC_PERIODIC);
    assert_int_equal(lq_sync_mode_parse("none", &m), LQ_OK);
    assert_int_equal(m, LQ_SYNC_NONE);
    assert_int_equal(lq_sync_mode_parse("Full", &m), LQ_E_INVALID_ARGUMENT);
    assert_int_equal(lq_sync_mode_parse(NULL, &m), LQ_E_INVALID_ARGUMENT);
}

/* ---- batches ----------------------------------------------------------------------------- */

static void test_batch_copies_and_reset(void **state)
{
    (void)state;
    lq_batch *b = lq_batch_create();
    assert_non_null(b);
    char payload[64], err[32];
    memset(payload, 'p', sizeof(payload));
    strcpy(err, "first error");
    put(b, 1, payload, sizeof(payload));
    assert_int_equal(lq_batch_update_job(b, 1, LQ_STATE_DELAYED, 2, 5, S(err)), LQ_OK);
    memset(payload, 'X', sizeof(payload)); /* the caller reuses its buffers at once */
    strcpy(err, "XXXXXXXXXXX");
    uint32_t n;
    const lq_batch_op *ops = lq_batch_ops(b, &n);
    assert_int_equal(n, 2);
    assert_int_equal(ops[0].b[0], 'p');
    assert_memory_equal(ops[1].a, "first error", 11);
    assert_int_equal(lq_batch_puts(b), 1);

    /* Wrong payload_len in the record, and oversized fields, are refused. */
    lq_job_rec r = mkrec(2, 10);
    assert_int_equal(lq_batch_put_job(b, &r, NULL, 0, payload, 11), LQ_E_INVALID_ARGUMENT);
    assert_int_equal(lq_batch_count(b), 2);

    /* A burst of big payloads, then reset: usable again, count and bytes back to zero. */
    uint32_t big = 20u << 20;
    uint8_t *p = calloc(1, big);
    for (uint64_t id = 10; id < 14; id++)
        put(b, id, p, big);
    assert_true(lq_batch_bytes(b) >= 4ull * big);
    lq_batch_reset(b);
    assert_int_equal(lq_batch_count(b), 0);
    assert_int_equal(lq_batch_bytes(b), 0);
    uint64_t nid, nseq;
    assert_false(lq_batch_counters(b, &nid, &nseq));
    for (uint64_t id = 1; id < 3000; id++) /* many small ops across several blocks */
        put(b, id, payload, (uint32_t)(id % 64));
    ops = lq_batch_ops(b, &n);
    assert_int_equal(n, 2999);
    assert_int_equal(ops[2998].id, 2999);
    assert_int_equal(ops[2998].b_len, 2999 % 64);
    free(p);

    lq_batch_set_counters(b, 10, 20);
    lq_batch_set_counters(b, 5, 30); /* never lowered within a batch */
    assert_true(lq_batch_counters(b, &nid, &nseq));
    assert_int_equal(nid, 10);
    assert_int_equal(nseq, 30);
    lq_batch_destroy(b);
}

/* A reset keeps up to LQ_BATCH_KEEP_BYTES for the next round; a trim gives all of it back, and
 * the batch works as before afterwards. */
static void test_batch_trim(void **state)
{
    (void)state;
    lq_batch *b = lq_batch_create();
    assert_non_null(b);
    assert_int_equal(lq_batch_held_bytes(b), 0);
    uint32_t big = 600u << 10;
    uint8_t *p = malloc(big);
    assert_non_null(p);
    for (uint32_t i = 0; i < big; i++)
        p[i] = (uint8_t)(i * 7);
    for (uint64_t id = 1; id <= 40; id++) /* 24 MiB: kept whole by a reset */
        put(b, id, p, big);
    assert_true(lq_batch_held_bytes(b) >= 40ull * big);
    assert_true(lq_batch_used_bytes(b) >= 40ull * big && lq_batch_used_bytes(b) <= lq_batch_held_bytes(b));
    lq_batch_reset(b);
    assert_int_equal(lq_batch_used_bytes(b), 0); /* what the next round needs starts again */
    assert_true(lq_batch_held_bytes(b) >= 40ull * big);
    assert_true(lq_batch_held_bytes(b) <= LQ_BATCH_KEEP_BYTES + (64u << 10) * sizeof(lq_batch_op));
    lq_batch_trim(b);
    assert_int_equal(lq_batch_held_bytes(b), 0);
    for (uint64_t id = 100; id < 103; id++)
        put(b, id, p, big);
    put(b, 103, p, 5);
    lq_job_view v;
    assert_int_equal(lq_batch_find_job(b, 101, &v), LQ_OK);
    assert_int_equal(v.payload_len, big);
    assert_memory_equal(v.payload, p, big);
    assert_int_equal(lq_batch_find_job(b, 103, &v), LQ_OK);
    assert_memory_equal(v.payload, p, 5);
    assert_true(lq_batch_held_bytes(b) >= 3ull * big && lq_batch_held_bytes(b) < 8ull * big);
    lq_batch_reset(b);
    lq_batch_trim(b);
    lq_batch_trim(b); /* twice is fine */
    assert_int_equal(lq_batch_held_bytes(b), 0);
    free(p);
    lq_batch_destroy(b);
}

/* --dispatch early reads a job whose put is still in a batch: the same view a store read gives. */
static void test_batch_find_job(void **state)
{
    (void)state;
    lq_batch *b = lq_batch_create();
    assert_non_null(b);
    char payload[300];
    for (size_t i = 0; i < sizeof(payload); i++)
        payload[i] = (char)i;
    lq_job_view v;
    assert_int_equal(lq_batch_find_job(b, 1, &v), LQ_E_NOT_FOUND);
    for (uint64_t id = 5; id < 600; id += 2) { /* puts between other ops, past one index growth */
        put(b, id, payload, (uint32_t)(id % 300));
        assert_int_equal(lq_batch_update_job(b, id - 1, LQ_STATE_READY, 1, 0, S("x")), LQ_OK);
    }
    for (uint64_t id = 0; id < 602; id++) {
        lq_err e = lq_batch_find_job(b, id, &v);
        if (id < 5 || id % 2 == 0 || id >= 600) {
            assert_int_equal(e, LQ_E_NOT_FOUND);
            continue;
        }
        assert_int_equal(e, LQ_OK);
        assert_int_equal(v.rec.id, id);
        assert_true(str_is(v.rec.queue, "images") && str_is(v.rec.idem_key, "idem-abc"));
        assert_int_equal(v.headers_len, 5);
        assert_int_equal(v.headers[4], 255);
        assert_int_equal(v.payload_len, id % 300);
        assert_non_null(v.payload);
        assert_memory_equal(v.payload, payload, v.payload_len);
    }
    /* Ids out of order (not what the loop does, but not wrong): found by a scan. */
    put(b, 3, payload, 7);
    assert_int_equal(lq_batch_find_job(b, 3, &v), LQ_OK);
    assert_int_equal(v.payload_len, 7);
    assert_int_equal(lq_batch_find_job(b, 599, &v), LQ_OK);
    lq_batch_reset(b);
    assert_int_equal(lq_batch_find_job(b, 5, &v), LQ_E_NOT_FOUND);
    put(b, 2, payload, 0);
    assert_int_equal(lq_batch_find_job(b, 2, &v), LQ_OK);
    assert_int_equal(v.payload_len, 0);
    assert_non_null(v.payload);
    lq_batch_destroy(b);
}

/* ---- commit / load ----------------------------------------------------------------------- */

static void test_put_load_roundtrip(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    uint64_t nid = 9, nseq = 9;
    collect c;
    load(st, &c, &nid, &nseq);
    assert_int_equal(c.n, 0);
    assert_int_equal(nid, 0);
    assert_int_equal(nseq, 0);

    lq_batch *b = lq_batch_create();
    for (int64_t id = 300; id >= 1; id -= 7) /* out of order: load still walks in id order */
        put(b, (uint64_t)id, "abc", 3);
    lq_batch_set_counters(b, 301, 3011);
    commit_ok(st, b);
    load(st, &c, &nid, &nseq);
    assert_int_equal(c.n, 43);
    for (uint32_t i = 1; i < c.n; i++)
        assert_true(c.ids[i - 1] < c.ids[i]);
    assert_true(c.all_fields_ok);
    assert_int_equal(nid, 301);
    assert_int_equal(nseq, 3011);

    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v;
    assert_int_equal(lq_store_get_job(st, 6, &v), LQ_OK);
    assert_int_equal(v.rec.not_before_ms, 48);
    assert_int_equal(v.rec.state, LQ_STATE_READY);
    assert_int_equal(v.rec.attempts, 3);
    assert_int_equal(v.headers_len, 5);
    assert_memory_equal(v.headers, "\x01\x02\x03\x00\xff", 5);
    assert_int_equal(v.payload_len, 3);
    assert_memory_equal(v.payload, "abc", 3);
    assert_int_equal(lq_store_get_job(st, 7, &v), LQ_E_NOT_FOUND);
    lq_store_read_end(st);
    lq_batch_destroy(b);
    lq_store_close(st);
}

static void test_payload_bytes(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    uint32_t big = 1u << 20;
    uint8_t *rnd = malloc(big);
    srand(12345);
    for (uint32_t i = 0; i < big; i++)
        rnd[i] = (uint8_t)rand();
    put(b, 1, rnd, big);
    put(b, 2, NULL, 0);
    put(b, 3, rnd + 17, 3000); /* overflow-page sized */
    commit_ok(st, b);
    lq_store_close(st);
    st = open_store(fx, 0, LQ_SYNC_FULL, 0);

    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v;
    assert_int_equal(lq_store_get_job(st, 1, &v), LQ_OK);
    assert_int_equal(v.payload_len, big);
    assert_memory_equal(v.payload, rnd, big);
    assert_int_equal(lq_store_get_job(st, 2, &v), LQ_OK);
    assert_int_equal(v.payload_len, 0);
    assert_non_null(v.payload);
    assert_int_equal(lq_store_get_job(st, 3, &v), LQ_OK);
    assert_memory_equal(v.payload, rnd + 17, 3000);
    lq_store_read_end(st);
    free(rnd);
    lq_batch_destroy(b);
    lq_store_close(st);
}

static void test_update_and_delete(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    put(b, 1, "one", 3);
    put(b, 2, "two", 3);
    put(b, 3, "three", 5);
    commit_ok(st, b);

    assert_int_equal(lq_batch_update_job(b, 1, LQ_STATE_DELAYED, 4, 123456, S("worker said no")), LQ_OK);
    assert_int_equal(lq_batch_update_job(b, 3, LQ_STATE_DEAD, 7, 0, S("")), LQ_OK);
    assert_int_equal(lq_batch_delete_job(b, 2), LQ_OK);
    assert_int_equal(lq_batch_update_job(b, 2, LQ_STATE_READY, 9, 0, S("late")), LQ_OK); /* skipped */
    assert_int_equal(lq_batch_delete_job(b, 77), LQ_OK);                               /* skipped */
    assert_int_equal(lq_batch_update_job(b, 78, LQ_STATE_READY, 1, 0, S("")), LQ_OK);  /* skipped */
    commit_ok(st, b);

    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v;
    assert_int_equal(lq_store_get_job(st, 1, &v), LQ_OK);
    assert_int_equal(v.rec.state, LQ_STATE_DELAYED);
    assert_int_equal(v.rec.attempts, 4);
    assert_int_equal(v.rec.not_before_ms, 123456);
    assert_true(str_is(v.rec.last_error, "worker said no"));
    assert_true(str_is(v.rec.idem_key, "idem-abc") && str_is(v.rec.tenant, "tenant-x"));
    assert_int_equal(v.rec.seq, 11);
    assert_int_equal(v.rec.max_attempts, 7);
    assert_int_equal(v.headers_len, 5);
    assert_memory_equal(v.payload, "one", 3);
    assert_int_equal(lq_store_get_job(st, 2, &v), LQ_E_NOT_FOUND);
    assert_int_equal(lq_store_get_job(st, 3, &v), LQ_OK);
    assert_int_equal(v.rec.state, LQ_STATE_DEAD);
    assert_memory_equal(v.payload, "three", 5);
    lq_store_read_end(st);
    lq_store_close(st);

    /* The payload of 2 is gone too, not only its record. */
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi pd;
    raw_env(fx, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, "payloads", 0, &pd), 0);
    MDB_stat s;
    assert_int_equal(mdb_stat(txn, pd, &s), 0);
    assert_int_equal(s.ms_entries, 2);
    mdb_txn_abort(txn);
    mdb_env_close(env);
    lq_batch_destroy(b);
}

static void test_counters_never_decrease(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    lq_batch_set_counters(b, 100, 200);
    commit_ok(st, b);
    lq_batch_set_counters(b, 50, 250); /* next_id lower: kept at 100 */
    commit_ok(st, b);
    lq_store_close(st);

    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    collect c;
    uint64_t nid, nseq;
    load(st, &c, &nid, &nseq);
    assert_int_equal(nid, 100);
    assert_int_equal(nseq, 250);
    lq_batch_destroy(b);
    lq_store_close(st);
}

static void test_reopen_keeps_everything(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_PERIODIC, 0);
    lq_batch *b = lq_batch_create();
    for (uint64_t id = 1; id <= 1000; id++)
        put(b, id, &id, sizeof(id));
    lq_batch_set_counters(b, 1001, 1001);
    commit_ok(st, b);
    assert_int_equal(lq_batch_update_job(b, 500, LQ_STATE_DELAYED, 1, 9, S("e")), LQ_OK);
    assert_int_equal(lq_batch_delete_job(b, 1000), LQ_OK);
    commit_ok(st, b);
    assert_int_equal(lq_store_sync(st), LQ_OK);
    lq_store_close(st);

    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    collect c;
    uint64_t nid, nseq;
    load(st, &c, &nid, &nseq);
    assert_int_equal(c.n, 999);
    assert_true(c.all_fields_ok);
    assert_int_equal(c.states[499], LQ_STATE_DELAYED);
    assert_int_equal(c.attempts[499], 1);
    assert_int_equal(c.ids[998], 999);
    assert_int_equal(nid, 1001);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v;
    uint64_t id = 777;
    assert_int_equal(lq_store_get_job(st, id, &v), LQ_OK);
    assert_memory_equal(v.payload, &id, sizeof(id));
    lq_store_read_end(st);
    lq_batch_destroy(b);
    lq_store_close(st);
}

static void test_second_open_refused(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_store_opts o = {.dir = fx->dir};
    lq_store *st2 = NULL;
    assert_int_equal(lq_store_open(&o, &st2), LQ_E_IO);
    assert_null(st2);
    lq_store_close(st);
    assert_int_equal(lq_store_open(&o, &st2), LQ_OK);
    lq_store_close(st2);
}

static void test_nested_dir_created(void **state)
{
    fixture *fx = *state;
    char dir[128];
    snprintf(dir, sizeof(dir), "%s/a/b/c", fx->dir);
    lq_store_opts o = {.dir = dir};
    lq_store *st = NULL;
    assert_int_equal(lq_store_open(&o, &st), LQ_OK);
    lq_store_close(st);
    struct stat sb;
    char f[160];
    snprintf(f, sizeof(f), "%s/data.mdb", dir);
    assert_int_equal(stat(f, &sb), 0);
}

/* ---- map full ---------------------------------------------------------------------------- */

static void test_map_full(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 1u << 20, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    static uint8_t pay[4000];
    memset(pay, 0xAB, sizeof(pay));
    uint64_t id = 1;
    bool dropped = false;
    int rounds = 0;
    while (!dropped && rounds++ < 1000) {
        for (int i = 0; i < 8; i++, id++)
            put(b, id, pay, sizeof(pay));
        lq_batch_set_counters(b, id, id);
        assert_int_equal(lq_store_commit(st, b, &dropped), LQ_OK);
        lq_batch_reset(b);
    }
    assert_true(dropped);
    uint64_t last_stored = id - 9; /* the last batch's puts were dropped */
    uint64_t used, map;
    assert_int_equal(lq_store_usage(st, &used, &map), LQ_OK);
    assert_int_equal(map, 1u << 20);
    assert_true(used > map / 2);

    /* Puts first, then deletes and an update in the same batch: the puts go, the rest lands.
     * 8 pages did not fit; 50 contiguous ones do not either. */
    uint8_t *huge = calloc(1, 200u << 10);
    put(b, id, huge, 200u << 10);
    free(huge);
    put(b, id + 1, pay, sizeof(pay));
    for (uint64_t d = 1; d <= 6; d++)
        assert_int_equal(lq_batch_delete_job(b, d), LQ_OK);
    assert_int_equal(lq_batch_update_job(b, 7, LQ_STATE_DEAD, 10, 0, S("full")), LQ_OK);
    lq_batch_set_counters(b, id + 2, id + 2);
    dropped = false;
    assert_int_equal(lq_store_commit(st, b, &dropped), LQ_OK);
    assert_true(dropped);
    lq_batch_reset(b);

    /* The freed space takes a new job again. */
    put(b, id + 2, pay, sizeof(pay));
    commit_ok(st, b);
    lq_store_close(st);

    st = open_store(fx, 1u << 20, LQ_SYNC_FULL, 0);
    collect c;
    uint64_t nid, nseq;
    load(st, &c, &nid, &nseq);
    assert_int_equal(c.ids[0], 7);
    assert_int_equal(c.states[0], LQ_STATE_DEAD);
    assert_string_equal(c.last_error, "full");
    assert_int_equal(c.n, last_stored - 6 + 1);
    assert_int_equal(c.ids[c.n - 2], last_stored);
    assert_int_equal(c.ids[c.n - 1], id + 2);
    assert_int_equal(nid, id + 2);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v;
    assert_int_equal(lq_store_get_job(st, id, &v), LQ_E_NOT_FOUND);
    assert_int_equal(lq_store_get_job(st, 7, &v), LQ_OK);
    assert_memory_equal(v.payload, pay, sizeof(pay));
    lq_store_read_end(st);
    lq_batch_destroy(b);
    lq_store_close(st);
}

/* ---- damage ------------------------------------------------------------------------------ */

static void test_corrupt_record(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    for (uint64_t id = 1; id <= 3; id++)
        put(b, id, "x", 1);
    commit_ok(st, b);
    lq_store_close(st);

    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi jd;
    raw_env(fx, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, "jobs", 0, &jd), 0);
    uint8_t kb[8] = {0, 0, 0, 0, 0, 0, 0, 2};
    MDB_val k = {8, kb}, v;
    assert_int_equal(mdb_get(txn, jd, &k, &v), 0);
    uint8_t copy[512];
    assert_true(v.mv_size < sizeof(copy));
    memcpy(copy, v.mv_data, v.mv_size);
    copy[40] ^= 0x01; /* one bit of not_before_ms */
    MDB_val nv = {v.mv_size, copy};
    assert_int_equal(mdb_put(txn, jd, &k, &nv, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);

    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    collect c;
    memset(&c, 0, sizeof(c));
    uint64_t nid, nseq;
    assert_int_equal(lq_store_load(st, collect_fn, &c, &nid, &nseq), LQ_E_CORRUPT);
    assert_int_equal(c.n, 1); /* job 1 came before the damage */
    assert_non_null(strstr(lq_store_last_error(st), "job 2"));
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view jv;
    assert_int_equal(lq_store_get_job(st, 2, &jv), LQ_E_CORRUPT);
    assert_int_equal(lq_store_get_job(st, 3, &jv), LQ_OK);
    lq_store_read_end(st);

    /* An update of the damaged record fails the commit as a whole, applying nothing. */
    assert_int_equal(lq_batch_delete_job(b, 3), LQ_OK);
    assert_int_equal(lq_batch_update_job(b, 2, LQ_STATE_READY, 1, 0, S("")), LQ_OK);
    bool dropped;
    assert_int_equal(lq_store_commit(st, b, &dropped), LQ_E_CORRUPT);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    assert_int_equal(lq_store_get_job(st, 3, &jv), LQ_OK);
    lq_store_read_end(st);
    lq_batch_destroy(b);
    lq_store_close(st);
}

static void set_meta_version(const fixture *fx, const void *val, size_t len)
{
    MDB_env *env;
    MDB_txn *txn;
    MDB_dbi md;
    raw_env(fx, &env, &txn);
    assert_int_equal(mdb_dbi_open(txn, "meta", 0, &md), 0);
    MDB_val k = {14, (void *)"format_version"}, v = {len, (void *)val};
    if (val == NULL)
        assert_int_equal(mdb_del(txn, md, &k, NULL), 0);
    else
        assert_int_equal(mdb_put(txn, md, &k, &v, 0), 0);
    assert_int_equal(mdb_txn_commit(txn), 0);
    mdb_env_close(env);
}

static void test_future_version_refused(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_batch *b = lq_batch_create();
    put(b, 1, "x", 1);
    commit_ok(st, b);
    lq_batch_destroy(b);
    lq_store_close(st);

    lq_store_opts o = {.dir = fx->dir};
    set_meta_version(fx, "\x03\x00\x00\x00", 4); /* this build writes 2 */
    assert_int_equal(lq_store_open(&o, &st), LQ_E_CORRUPT);
    set_meta_version(fx, "\x00\x00\x00\x00", 4);
    assert_int_equal(lq_store_open(&o, &st), LQ_E_CORRUPT);
    set_meta_version(fx, NULL, 0); /* jobs but no version: not ours to guess */
    assert_int_equal(lq_store_open(&o, &st), LQ_E_CORRUPT);
    set_meta_version(fx, "\x01\x00\x00\x00", 4); /* the previous format: upgraded */
    assert_int_equal(lq_store_open(&o, &st), LQ_OK);
    lq_store_close(st);
    set_meta_version(fx, "\x02\x00\x00\x00", 4);
    assert_int_equal(lq_store_open(&o, &st), LQ_OK);
    lq_store_close(st);
}

/* ---- usage ------------------------------------------------------------------------------- */

static off_t data_file_size(const fixture *fx)
{
    char f[128];
    snprintf(f, sizeof(f), "%s/data.mdb", fx->dir);
    struct stat sb;
    assert_int_equal(stat(f, &sb), 0);
    return sb.st_size;
}

static void test_usage(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 64u << 20, LQ_SYNC_NONE, 0);
    uint64_t used0, used1, used2, used3, map;
    assert_int_equal(lq_store_usage(st, &used0, &map), LQ_OK);
    assert_int_equal(map, 64u << 20);
    assert_true(used0 > 0 && used0 < 64 * 1024);

    lq_batch *b = lq_batch_create();
    static uint8_t pay[1024];
    for (int round = 0; round < 2; round++) {
        for (uint64_t id = 1; id <= 2000; id++) {
            put(b, round * 10000 + id, pay, sizeof(pay));
            if (id % 250 == 0)
                commit_ok(st, b);
        }
        assert_int_equal(lq_store_usage(st, &used1, &map), LQ_OK);
        assert_true(used1 > used0 + 2000 * 1024);
        assert_true(used1 < used0 + 2000 * 1024 * 3);
        off_t size1 = data_file_size(fx);
        for (uint64_t id = 1; id <= 2000; id++) {
            assert_int_equal(lq_batch_delete_job(b, round * 10000 + id), LQ_OK);
            if (id % 500 == 0)
                commit_ok(st, b);
        }
        assert_int_equal(lq_store_usage(st, &used2, &map), LQ_OK);
        assert_true(used2 < used0 + 64 * 1024);
        if (round == 1) /* the second round reused the pages the first one freed */
            assert_true(data_file_size(fx) <= size1 + size1 / 4);
    }
    /* Inside a read snapshot, usage reports that snapshot. */
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    assert_int_equal(lq_store_usage(st, &used3, &map), LQ_OK);
    assert_int_equal(used3, used2);
    lq_store_read_end(st);
    lq_batch_destroy(b);
    lq_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_crc32c),
        cmocka_unit_test(test_record_codec),
        cmocka_unit_test(test_sync_mode_parse),
        cmocka_unit_test(test_batch_copies_and_reset),
        cmocka_unit_test(test_batch_find_job),
        cmocka_unit_test(test_batch_trim),
        cmocka_unit_test_setup_teardown(test_put_load_roundtrip, setup, teardown),
        cmocka_unit_test_setup_teardown(test_payload_bytes, setup, teardown),
        cmocka_unit_test_setup_teardown(test_update_and_delete, setup, teardown),
        cmocka_unit_test_setup_teardown(test_counters_never_decrease, setup, teardown),
        cmocka_unit_test_setup_teardown(test_reopen_keeps_everything, setup, teardown),
        cmocka_unit_test_setup_teardown(test_second_open_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_nested_dir_created, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full, setup, teardown),
        cmocka_unit_test_setup_teardown(test_corrupt_record, setup, teardown),
        cmocka_unit_test_setup_teardown(test_future_version_refused, setup, teardown),
        cmocka_unit_test_setup_teardown(test_usage, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
