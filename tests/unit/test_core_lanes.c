/* Unit tests of lane settings: admission limits (QUEUE_FULL), the default maximum wait, pause
 * with and without a time limit. Each test drives the core with explicit times. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#define FX_SEED 5
#include "core_session_fx.h"

static lq_err put(fx *f, uint64_t now, const char *lane, uint32_t bytes, uint64_t *id)
{
    lq_enqueue_req r = {.queue = lq_str_c("q"), .lane = lq_str_c(lane), .payload_len = bytes};
    uint64_t got = 0;
    lq_err e = lq_core_enqueue(f->c, now, &r, &got, &f->ev);
    if (e == LQ_OK)
        lq_core_commit_done(f->c, now, got, true, &f->ev);
    if (id)
        *id = got;
    return e;
}

static uint32_t take(fx *f, uint64_t now, uint32_t max, lq_lease *out, uint32_t wait_ms, uint64_t waiter)
{
    lq_str q = lq_str_c("q");
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .max_jobs = max, .wait_ms = wait_ms, .session = f->session,
                        .waiter = waiter};
    uint32_t n = 0;
    bool parked = false;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, &parked, &f->ev), LQ_OK);
    return n;
}

static void set(fx *f, uint64_t now, const char *lane, lq_lane_settings s)
{
    assert_int_equal(lq_core_lane_set(f->c, now, lq_str_c("q"), lq_str_c(lane), &s), LQ_OK);
}

static void test_count_limit(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    set(&f, 0, "app", (lq_lane_settings){.weight = 1, .max_queued = 3});
    for (int i = 0; i < 3; i++)
        assert_int_equal(put(&f, 1, "app", 10, NULL), LQ_OK);
    assert_int_equal(put(&f, 1, "app", 10, NULL), LQ_E_QUEUE_FULL);
    /* another lane of the same queue is not affected: an app flood never refuses api */
    assert_int_equal(put(&f, 1, "api", 10, NULL), LQ_OK);
    lq_lease l[1];
    assert_int_equal(take(&f, 2, 1, l, 0, 0), 1);
    lq_core_ack(f.c, 2, l[0].job_id, l[0].token, &f.ev);
    assert_int_equal(put(&f, 3, "app", 10, NULL), LQ_OK); /* room again */
    fx_fini(&f);
}

static void test_byte_limit(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    set(&f, 0, "app", (lq_lane_settings){.weight = 1, .max_queued_bytes = 1000});
    assert_int_equal(put(&f, 1, "app", 5000, NULL), LQ_OK); /* empty lane: even a big job */
    assert_int_equal(put(&f, 1, "app", 1, NULL), LQ_E_QUEUE_FULL);
    lq_lease l[1];
    assert_int_equal(take(&f, 2, 1, l, 0, 0), 1);
    assert_int_equal(put(&f, 2, "app", 600, NULL), LQ_OK);  /* leased bytes do not count */
    assert_int_equal(put(&f, 2, "app", 400, NULL), LQ_OK);
    assert_int_equal(put(&f, 2, "app", 1, NULL), LQ_E_QUEUE_FULL);
    fx_fini(&f);
}

static void test_max_wait_gives_deadline(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    set(&f, 0, "app", (lq_lane_settings){.weight = 1, .max_wait_ms = 100});
    uint64_t id;
    assert_int_equal(put(&f, 1000, "app", 1, &id), LQ_OK);
    lq_lease l[1];
    assert_int_equal(take(&f, 1100, 1, l, 0, 0), 0); /* deadline 1100 passed: expired, never leased */
    uint8_t st = 0;
    assert_int_equal(lq_core_job_state(f.c, id, &st), LQ_E_NOT_FOUND);
    fx_fini(&f);
}

static void test_pause_and_resume(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    set(&f, 0, "app", (lq_lane_settings){.weight = 1, .paused = true});
    uint64_t app_id, api_id;
    assert_int_equal(put(&f, 1, "app", 1, &app_id), LQ_OK); /* enqueues still accepted */
    lq_lease l[2];
    assert_int_equal(take(&f, 2, 2, l, 1000, 77), 0); /* parks: nothing dispatchable */
    assert_int_equal(put(&f, 3, "api", 1, &api_id), LQ_OK);
    lq_events_clear(&f.ev);
    lq_core_tick(f.c, 3, &f.ev); /* the parked request gets the api job, not the paused one */
    size_t leases = 0;
    for (size_t i = 0; i < f.ev.n; i++)
        if (f.ev.v[i].type == LQ_EV_LEASE) {
            leases++;
            assert_int_equal(f.ev.v[i].u.lease.lease.job_id, api_id);
        }
    assert_int_equal(leases, 1);
    lq_lane_settings s;
    assert_int_equal(lq_core_lane_get(f.c, lq_str_c("q"), lq_str_c("app"), &s), LQ_OK);
    assert_true(s.paused);
    s.paused = false;
    set(&f, 4, "app", s);
    assert_int_equal(take(&f, 5, 1, l, 0, 0), 1);
    assert_int_equal(l[0].job_id, app_id);
    fx_fini(&f);
}

static void test_timed_pause_lifts_in_tick(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    uint64_t id;
    assert_int_equal(put(&f, 1, "app", 1, &id), LQ_OK);
    set(&f, 10, "app", (lq_lane_settings){.weight = 1, .paused = true, .paused_until_ms = 500});
    lq_lease l[1];
    assert_int_equal(take(&f, 20, 1, l, 10000, 9), 0); /* parked */
    lq_events_clear(&f.ev);
    assert_int_equal(lq_core_tick(f.c, 20, &f.ev), 500); /* the lift is the next thing to do */
    lq_core_tick(f.c, 500, &f.ev);
    bool leased = false;
    for (size_t i = 0; i < f.ev.n; i++)
        leased |= f.ev.v[i].type == LQ_EV_LEASE && f.ev.v[i].u.lease.lease.job_id == id;
    assert_true(leased);
    lq_lane_settings s;
    assert_int_equal(lq_core_lane_get(f.c, lq_str_c("q"), lq_str_c("app"), &s), LQ_OK);
    assert_false(s.paused);
    fx_fini(&f);
}

static void test_get_unknown_and_bad(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    lq_lane_settings s;
    assert_int_equal(lq_core_lane_get(f.c, lq_str_c("nope"), lq_str_c("x"), &s), LQ_E_NOT_FOUND);
    lq_lane_cfg lanes[] = {{lq_str_c("api"), 9}};
    assert_int_equal(lq_core_configure_queue(f.c, lq_str_c("q"), lanes, 1), LQ_OK);
    assert_int_equal(lq_core_lane_get(f.c, lq_str_c("q"), lq_str_c("app"), &s), LQ_E_NOT_FOUND);
    set(&f, 0, "app", (lq_lane_settings){.weight = 1}); /* configuration may add lanes */
    assert_int_equal(lq_core_lane_get(f.c, lq_str_c("q"), lq_str_c("app"), &s), LQ_OK);
    lq_lane_settings past = {.weight = 1, .paused = true, .paused_until_ms = 5};
    assert_int_equal(lq_core_lane_set(f.c, 10, lq_str_c("q"), lq_str_c("app"), &past), LQ_E_INVALID_ARGUMENT);
    lq_enqueue_req r = {.queue = lq_str_c("q"), .lane = lq_str_c("api"), .max_attempts = 70000};
    uint64_t id;
    assert_int_equal(lq_core_enqueue(f.c, 1, &r, &id, &f.ev), LQ_E_INVALID_ARGUMENT);
    fx_fini(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_count_limit),
        cmocka_unit_test(test_byte_limit),
        cmocka_unit_test(test_max_wait_gives_deadline),
        cmocka_unit_test(test_pause_and_resume),
        cmocka_unit_test(test_timed_pause_lifts_in_tick),
        cmocka_unit_test(test_get_unknown_and_bad),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
