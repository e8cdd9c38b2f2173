/* Unit tests of the committer thread, and the read snapshot it commits under.
 * LQ_STORE_BENCH=1 also prints commit throughput of full-sync batches (no assertion). */
#define STORE_FIXTURE_DIR "/tmp/lq-commit-XXXXXX"
#include "store_fixture.h"

#include <poll.h>
#include <time.h>
#include <unistd.h>

#include "store/committer.h"

static void put(lq_batch *b, uint64_t id, const void *payload, uint32_t len)
{
    lq_job_rec r = {.id = id, .seq = id, .max_attempts = 3, .payload_len = len, .state = LQ_STATE_READY,
                    .queue = {"q", 1}, .lane = {"default", 7}};
    assert_int_equal(lq_batch_put_job(b, &r, NULL, 0, payload, len), LQ_OK);
}

/* Waits (bounded) for the eventfd, drains it, and reaps. */
static lq_batch *wait_reap(lq_committer *c, lq_err *err, bool *dropped, uint64_t *us)
{
    struct pollfd p = {.fd = lq_committer_eventfd(c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    uint64_t v;
    assert_int_equal(read(p.fd, &v, sizeof(v)), sizeof(v));
    assert_int_equal(v, 1);
    lq_batch *b = lq_committer_reap(c, err, dropped, us);
    assert_non_null(b);
    return b;
}

/* A store in full-sync mode and a committer on it. */
static lq_committer *start_full(fixture *fx, lq_store **st)
{
    *st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    lq_committer *c;
    assert_int_equal(lq_committer_start(*st, &c), LQ_OK);
    return c;
}

/* Stops the committer, checks that jobs 1..last are stored, and frees the rest. */
static void stop_and_check(lq_committer *c, lq_store *st, lq_batch *b1, lq_batch *b2, uint64_t last)
{
    lq_committer_stop(c);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v;
    for (uint64_t id = 1; id <= last; id++)
        assert_int_equal(lq_store_get_job(st, id, &v), LQ_OK);
    lq_store_read_end(st);
    lq_batch_destroy(b1);
    lq_batch_destroy(b2);
    lq_store_close(st);
}

static void test_submit_reap(void **state)
{
    lq_store *st;
    lq_committer *c = start_full(*state, &st);
    lq_err err = LQ_E_INTERNAL;
    bool dropped = true;
    uint64_t us = 0;
    assert_true(lq_committer_idle(c));
    assert_null(lq_committer_reap(c, &err, &dropped, &us));

    lq_batch *b1 = lq_batch_create(), *b2 = lq_batch_create();
    for (uint64_t round = 0; round < 20; round++) {
        lq_batch *b = round % 2 ? b2 : b1; /* double buffering, as the loop does it */
        put(b, round + 1, "payload", 7);
        lq_batch_set_counters(b, round + 2, round + 2);
        lq_committer_submit(c, b);
        assert_false(lq_committer_idle(c));
        lq_batch *got = wait_reap(c, &err, &dropped, &us);
        assert_ptr_equal(got, b);
        assert_int_equal(err, LQ_OK);
        assert_false(dropped);
        assert_true(us > 0 && us < 5000000);
        assert_true(lq_committer_idle(c));
        assert_null(lq_committer_reap(c, &err, &dropped, &us));
        lq_batch_reset(got);
    }
    stop_and_check(c, st, b1, b2, 20);
}

static void test_snapshot_isolation(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_NONE, 0);
    lq_committer *c;
    assert_int_equal(lq_committer_start(st, &c), LQ_OK);
    lq_batch *b = lq_batch_create();
    lq_err err;
    bool dropped;
    uint64_t us;
    put(b, 1, "a", 1);
    lq_committer_submit(c, b);
    lq_batch_reset(wait_reap(c, &err, &dropped, &us));

    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v1, v2;
    assert_int_equal(lq_store_get_job(st, 1, &v1), LQ_OK);
    /* While the loop holds its snapshot the committer deletes 1 and adds 2. */
    assert_int_equal(lq_batch_delete_job(b, 1), LQ_OK);
    put(b, 2, "b", 1);
    lq_committer_submit(c, b);
    lq_batch_reset(wait_reap(c, &err, &dropped, &us));
    assert_int_equal(err, LQ_OK);
    assert_int_equal(lq_store_get_job(st, 1, &v2), LQ_OK);
    assert_memory_equal(v1.payload, "a", 1); /* still valid: the snapshot pins it */
    assert_int_equal(lq_store_get_job(st, 2, &v2), LQ_E_NOT_FOUND);
    lq_store_read_end(st);

    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    assert_int_equal(lq_store_get_job(st, 1, &v2), LQ_E_NOT_FOUND);
    assert_int_equal(lq_store_get_job(st, 2, &v2), LQ_OK);
    lq_store_read_end(st);

    lq_committer_stop(c);
    lq_batch_destroy(b);
    lq_store_close(st);
}

/* Waits (bounded) for the eventfd and drains it, whatever count it holds. */
static void wait_event(lq_committer *c)
{
    struct pollfd p = {.fd = lq_committer_eventfd(c), .events = POLLIN};
    assert_int_equal(poll(&p, 1, 5000), 1);
    uint64_t v;
    assert_int_equal(read(p.fd, &v, sizeof(v)), sizeof(v));
    assert_true(v >= 1 && v <= 2);
}

/* An offer is taken as soon as the batch before it is done (no reap, no submit in between),
 * and a batch that finishes while the one before is still unreaped waits its turn. */
static void test_offer_taken(void **state)
{
    lq_store *st;
    lq_committer *c = start_full(*state, &st);
    lq_batch *b1 = lq_batch_create(), *b2 = lq_batch_create();
    lq_err err;
    bool dropped;
    uint64_t us;
    for (uint64_t round = 0; round < 10; round++) {
        put(b1, round * 2 + 1, "one", 3);
        put(b2, round * 2 + 2, "two", 3);
        lq_batch_set_counters(b2, round * 2 + 3, round * 2 + 3);
        lq_committer_submit(c, b1);
        lq_committer_offer(c, b2);
        assert_int_equal(lq_committer_outstanding(c), 1);
        wait_event(c); /* b1 done */
        /* The thread takes b2 and commits it (its result waits for b1's reap): once b2's job
         * can be read, the offer was certainly taken. */
        bool stored = false;
        for (int i = 0; i < 5000 && !stored; i++) {
            lq_job_view jv;
            assert_int_equal(lq_store_read_begin(st), LQ_OK);
            stored = lq_store_get_job(st, round * 2 + 2, &jv) == LQ_OK;
            lq_store_read_end(st);
            if (!stored)
                usleep(1000);
        }
        assert_true(stored);
        assert_false(lq_committer_retract(c));
        assert_int_equal(lq_committer_outstanding(c), 2);
        assert_ptr_equal(lq_committer_reap(c, &err, &dropped, &us), b1);
        assert_int_equal(err, LQ_OK);
        assert_int_equal(lq_committer_outstanding(c), 1);
        /* b2's eventfd write comes after its `done` is set: wait for it either way, so the next
         * round starts with nothing counted. */
        lq_batch *got = lq_committer_reap(c, &err, &dropped, &us);
        wait_event(c);
        if (got == NULL)
            got = lq_committer_reap(c, &err, &dropped, &us);
        assert_ptr_equal(got, b2);
        assert_int_equal(err, LQ_OK);
        assert_true(lq_committer_idle(c));
        lq_batch_reset(b1);
        lq_batch_reset(b2);
    }
    stop_and_check(c, st, b1, b2, 20);
}

/* Retracted at once, the offered batch is the caller's again; either way every job lands once,
 * in order, and the counts of outstanding batches add up. */
static void test_offer_retracted(void **state)
{
    lq_store *st;
    lq_committer *c = start_full(*state, &st);
    lq_batch *b1 = lq_batch_create(), *b2 = lq_batch_create();
    lq_err err;
    bool dropped;
    uint64_t us;
    uint32_t ours = 0;
    for (uint64_t round = 0; round < 20; round++) {
        put(b1, round * 2 + 1, "one", 3);
        lq_committer_submit(c, b1);
        lq_committer_offer(c, b2); /* empty: a taken empty batch is a valid commit too */
        bool back = lq_committer_retract(c);
        ours += back;
        assert_int_equal(lq_committer_outstanding(c), back ? 1 : 2);
        lq_batch *got;
        while ((got = lq_committer_reap(c, &err, &dropped, &us)) == NULL)
            wait_event(c);
        assert_ptr_equal(got, b1);
        if (back) {
            put(b2, round * 2 + 2, "two", 3); /* the loop appends again, then submits */
            lq_committer_submit(c, b2);
        }
        while ((got = lq_committer_reap(c, &err, &dropped, &us)) == NULL)
            wait_event(c);
        assert_ptr_equal(got, b2);
        assert_true(lq_committer_idle(c));
        lq_batch_reset(b1);
        lq_batch_reset(b2);
        uint64_t v;
        (void)!read(lq_committer_eventfd(c), &v, sizeof(v));
    }
    assert_true(ours > 0); /* a full-sync commit takes far longer than offer + retract */
    stop_and_check(c, st, b1, b2, 0);
}

static void test_stop_in_flight(void **state)
{
    lq_store *st;
    fixture *fx = *state;
    lq_committer *c = start_full(fx, &st);
    lq_batch *b = lq_batch_create();
    static uint8_t pay[10000];
    for (uint64_t id = 1; id <= 500; id++)
        put(b, id, pay, sizeof(pay));
    lq_batch_set_counters(b, 501, 501);
    lq_committer_submit(c, b);
    lq_committer_stop(c); /* finishes the batch; it is the caller's again */
    lq_batch_destroy(b);
    lq_store_close(st);

    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v;
    assert_int_equal(lq_store_get_job(st, 500, &v), LQ_OK);
    assert_int_equal(v.payload_len, sizeof(pay));
    lq_store_read_end(st);
    lq_store_close(st);

    /* Stopping an idle committer returns at once, not after an idle wait. */
    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    assert_int_equal(lq_committer_start(st, &c), LQ_OK);
    struct timespec t0, t1;
    clock_gettime(CLOCK_MONOTONIC, &t0);
    lq_committer_stop(c);
    clock_gettime(CLOCK_MONOTONIC, &t1);
    double stop_ms = (double)(t1.tv_sec - t0.tv_sec) * 1e3 + (double)(t1.tv_nsec - t0.tv_nsec) / 1e6;
    assert_true(stop_ms < 900.0); /* the idle wait is 1 s */
    lq_store_close(st);
}

static void test_periodic_mode(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 0, LQ_SYNC_PERIODIC, 20);
    assert_int_equal(lq_store_periodic_sync_ms(st), 20);
    lq_committer *c;
    assert_int_equal(lq_committer_start(st, &c), LQ_OK);
    lq_batch *b = lq_batch_create();
    lq_err err;
    bool dropped;
    uint64_t us;
    for (uint64_t id = 1; id <= 5; id++) {
        put(b, id, "p", 1);
        lq_committer_submit(c, b);
        lq_batch_reset(wait_reap(c, &err, &dropped, &us));
        assert_int_equal(err, LQ_OK);
        usleep(15000); /* lets a timer sync happen between some commits */
    }
    lq_committer_stop(c);
    lq_batch_destroy(b);
    lq_store_close(st);
    st = open_store(fx, 0, LQ_SYNC_FULL, 0);
    assert_int_equal(lq_store_read_begin(st), LQ_OK);
    lq_job_view v;
    assert_int_equal(lq_store_get_job(st, 5, &v), LQ_OK);
    lq_store_read_end(st);
    lq_store_close(st);
}

static void test_map_full_reported(void **state)
{
    fixture *fx = *state;
    lq_store *st = open_store(fx, 1u << 20, LQ_SYNC_FULL, 0);
    lq_committer *c;
    assert_int_equal(lq_committer_start(st, &c), LQ_OK);
    lq_batch *b = lq_batch_create();
    uint8_t *big = calloc(1, 2u << 20);
    put(b, 1, "small", 5);
    put(b, 2, big, 2u << 20);
    lq_committer_submit(c, b);
    lq_err err;
    bool dropped = false;
    uint64_t us;
    wait_reap(c, &err, &dropped, &us);
    assert_int_equal(err, LQ_OK);
    assert_true(dropped);
    lq_committer_stop(c);
    free(big);
    lq_batch_destroy(b);
    lq_store_close(st);
}

static double secs_since(const struct timespec *t0)
{
    struct timespec t1;
    clock_gettime(CLOCK_MONOTONIC, &t1);
    return (double)(t1.tv_sec - t0->tv_sec) + (double)(t1.tv_nsec - t0->tv_nsec) / 1e9;
}

/* Commits through the committer, as the loop does, for about `budget` seconds per size. */
static void test_bench_full_sync(void **state)
{
    fixture *fx = *state;
    if (getenv("LQ_STORE_BENCH") == NULL)
        skip();
    lq_store *st = open_store(fx, 4ull << 30, LQ_SYNC_FULL, 0);
    lq_committer *c;
    assert_int_equal(lq_committer_start(st, &c), LQ_OK);
    lq_batch *b = lq_batch_create();
    static uint8_t pay[100];
    uint64_t id = 1;
    const uint32_t sizes[] = {1, 100, 1000};
    for (size_t s = 0; s < 3; s++) {
        struct timespec t0;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        uint64_t commits = 0, sum_us = 0;
        while (secs_since(&t0) < 2.0) {
            for (uint32_t i = 0; i < sizes[s]; i++, id++)
                put(b, id, pay, sizeof(pay));
            lq_batch_set_counters(b, id, id);
            lq_committer_submit(c, b);
            lq_err err;
            bool dropped;
            uint64_t us;
            lq_batch_reset(wait_reap(c, &err, &dropped, &us));
            assert_int_equal(err, LQ_OK);
            commits++;
            sum_us += us;
        }
        double t = secs_since(&t0);
        printf("bench: batch %4u x 100 B, full sync: %8.0f commits/s %10.0f puts/s (commit %.0f us avg)\n",
               sizes[s], (double)commits / t, (double)commits * sizes[s] / t, (double)sum_us / (double)commits);
    }
    lq_committer_stop(c);
    lq_batch_destroy(b);
    lq_store_close(st);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_submit_reap, setup, teardown),
        cmocka_unit_test_setup_teardown(test_snapshot_isolation, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offer_taken, setup, teardown),
        cmocka_unit_test_setup_teardown(test_offer_retracted, setup, teardown),
        cmocka_unit_test_setup_teardown(test_stop_in_flight, setup, teardown),
        cmocka_unit_test_setup_teardown(test_periodic_mode, setup, teardown),
        cmocka_unit_test_setup_teardown(test_map_full_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bench_full_sync, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
