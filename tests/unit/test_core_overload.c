/* Unit tests of the core's overload parts: deadlines that pass while a job waits (prompt
 * expiry, waiters told, per-lane counter), the drain-rate estimate behind QUEUE_FULL's
 * retry_after_ms, and tenant fairness under a flood. Times are explicit. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#define FX_SEED 9
#include "core_session_fx.h"

static lq_err put(fx *f, uint64_t now, const char *lane, const char *tenant, uint64_t deadline, uint64_t *id)
{
    lq_enqueue_req r = {.queue = lq_str_c("q"), .lane = lq_str_c(lane), .tenant = lq_str_c(tenant),
                        .deadline_ms = deadline, .payload_len = 10};
    uint64_t got = 0;
    lq_err e = lq_core_enqueue(f->c, now, &r, &got, &f->ev);
    if (e == LQ_OK)
        lq_core_commit_done(f->c, now, got, true, &f->ev);
    if (id)
        *id = got;
    return e;
}

static uint32_t take(fx *f, uint64_t now, uint32_t max, lq_lease *out)
{
    lq_str q = lq_str_c("q");
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .max_jobs = max, .session = f->session};
    uint32_t n = 0;
    bool parked = false;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, &parked, &f->ev), LQ_OK);
    return n;
}

static uint32_t count_ev(const fx *f, lq_ev_type t, uint8_t state)
{
    uint32_t n = 0;
    for (size_t i = 0; i < f->ev.n; i++) {
        const lq_ev *e = &f->ev.v[i];
        if (e->type != t)
            continue;
        if (t == LQ_EV_JOB_DELETE && e->u.del.final_state != state)
            continue;
        if (t == LQ_EV_JOB_WAIT_DONE && e->u.wait_done.state != state)
            continue;
        n++;
    }
    return n;
}

static lq_lane_stats got_stats;
static void stats_cb(void *ctx, const lq_lane_stats *s)
{
    if (lq_str_eq(s->lane, lq_str_c((const char *)ctx)))
        got_stats = *s;
}

static lq_lane_stats lane_stats(fx *f, const char *lane)
{
    memset(&got_stats, 0, sizeof got_stats);
    assert_int_equal(lq_core_stats(f->c, lq_str_c("q"), stats_cb, (void *)lane), LQ_OK);
    return got_stats;
}

/* A queued job whose deadline passes is finished at that tick, without any dequeue: its
 * waiting producer learns EXPIRED, the lane counts it, and it is never leased. */
static void test_expires_while_queued(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    uint64_t a = 0, b = 0;
    assert_int_equal(put(&f, 0, "app", "", 100, &a), LQ_OK);
    assert_int_equal(put(&f, 0, "app", "", 0, &b), LQ_OK); /* no deadline */
    bool parked = false;
    uint8_t st = 0;
    assert_int_equal(lq_core_wait_job(f.c, 0, a, 7, 60000, &parked, &st), LQ_OK);
    assert_true(parked);
    lq_events_clear(&f.ev);
    uint64_t next = lq_core_tick(f.c, 50, &f.ev);
    assert_int_equal(count_ev(&f, LQ_EV_JOB_DELETE, LQ_STATE_EXPIRED), 0);
    assert_true(next <= 100); /* the loop wakes for the deadline */
    lq_core_tick(f.c, 100, &f.ev);
    assert_int_equal(count_ev(&f, LQ_EV_JOB_DELETE, LQ_STATE_EXPIRED), 1);
    assert_int_equal(count_ev(&f, LQ_EV_JOB_WAIT_DONE, LQ_STATE_EXPIRED), 1);
    lq_lane_stats s = lane_stats(&f, "app");
    assert_int_equal(s.expired, 1);
    assert_int_equal(s.ready, 1);
    lq_lease l[4];
    assert_int_equal(take(&f, 101, 4, l), 1);
    assert_int_equal(l[0].job_id, b);
    fx_fini(&f);
}

/* A lane's max_wait_ms gives deadline-less jobs one; a delayed job expires too. */
static void test_lane_max_wait_and_delayed(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    lq_lane_settings ls = {.weight = 1, .max_wait_ms = 30};
    assert_int_equal(lq_core_lane_set(f.c, 0, lq_str_c("q"), lq_str_c("api"), &ls), LQ_OK);
    assert_int_equal(put(&f, 0, "api", "", 0, NULL), LQ_OK);
    lq_enqueue_req r = {.queue = lq_str_c("q"), .lane = lq_str_c("app"), .delay_ms = 500, .deadline_ms = 100};
    uint64_t d = 0;
    assert_int_equal(lq_core_enqueue(f.c, 0, &r, &d, &f.ev), LQ_OK);
    lq_core_commit_done(f.c, 0, d, true, &f.ev);
    lq_events_clear(&f.ev);
    lq_core_tick(f.c, 30, &f.ev);
    assert_int_equal(count_ev(&f, LQ_EV_JOB_DELETE, LQ_STATE_EXPIRED), 1);
    lq_core_tick(f.c, 100, &f.ev);
    assert_int_equal(count_ev(&f, LQ_EV_JOB_DELETE, LQ_STATE_EXPIRED), 2);
    assert_int_equal(lane_stats(&f, "api").expired, 1);
    assert_int_equal(lane_stats(&f, "app").expired, 1);
    assert_int_equal(lane_stats(&f, "app").delayed, 0);
    fx_fini(&f);
}

/* A job leased before its deadline is the worker's: the deadline does not take it away. */
static void test_leased_job_not_expired(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    uint64_t a = 0;
    assert_int_equal(put(&f, 0, "app", "", 100, &a), LQ_OK);
    lq_lease l[1];
    assert_int_equal(take(&f, 10, 1, l), 1);
    lq_events_clear(&f.ev);
    lq_core_tick(f.c, 200, &f.ev);
    assert_int_equal(count_ev(&f, LQ_EV_JOB_DELETE, LQ_STATE_EXPIRED), 0);
    assert_int_equal(lq_core_ack(f.c, 201, a, l[0].token, &f.ev), LQ_OK);
    assert_int_equal(count_ev(&f, LQ_EV_JOB_DELETE, LQ_STATE_DONE), 1);
    fx_fini(&f);
}

/* Many finished jobs leave stale expiry entries behind: they are skipped and compacted, and
 * the jobs still queued expire on time. */
static void test_many_deadlines(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    enum { N = 20000 };
    lq_lease *l = calloc(256, sizeof *l);
    uint64_t now = 0;
    for (int i = 0; i < N; i++) {
        assert_int_equal(put(&f, now, "app", "", 1000000, NULL), LQ_OK);
        if (i % 100 == 99) { /* keep only a few queued: most entries go stale */
            uint32_t n = take(&f, now, 99, l);
            for (uint32_t k = 0; k < n; k++)
                assert_int_equal(lq_core_ack(f.c, now, l[k].job_id, l[k].token, &f.ev), LQ_OK);
            lq_events_clear(&f.ev);
            now++;
        }
    }
    uint64_t queued = lane_stats(&f, "app").ready;
    assert_true(queued > 0 && queued < 1000);
    lq_core_check(f.c);
    lq_core_tick(f.c, now + 1000000, &f.ev);
    lq_lane_stats s = lane_stats(&f, "app");
    assert_int_equal(s.ready, 0);
    assert_int_equal(s.expired, queued);
    free(l);
    fx_fini(&f);
}

/* retry_after_ms follows the lane's drain rate: 1 s when nothing drains, about the time to
 * drain back under 90 % of the limit when workers take jobs. */
static void test_retry_after_from_drain_rate(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    lq_lane_settings ls = {.weight = 1, .max_queued = 100};
    assert_int_equal(lq_core_lane_set(f.c, 0, lq_str_c("q"), lq_str_c("app"), &ls), LQ_OK);
    assert_int_equal(lq_core_lane_retry_after_ms(f.c, 0, lq_str_c("q"), lq_str_c("app")), 0);
    for (int i = 0; i < 100; i++)
        assert_int_equal(put(&f, 0, "app", "", 0, NULL), LQ_OK);
    assert_int_equal(put(&f, 0, "app", "", 0, NULL), LQ_E_QUEUE_FULL);
    assert_int_equal(lq_core_lane_retry_after_ms(f.c, 0, lq_str_c("q"), lq_str_c("app")), 1000);
    /* workers drain 50 jobs a second for 10 s; producers keep it full */
    lq_lease l[1];
    uint64_t now = 0;
    for (int i = 0; i < 500; i++) {
        now += 20;
        assert_int_equal(take(&f, now, 1, l), 1);
        assert_int_equal(lq_core_ack(f.c, now, l[0].job_id, l[0].token, &f.ev), LQ_OK);
        assert_int_equal(put(&f, now, "app", "", 0, NULL), LQ_OK);
        lq_events_clear(&f.ev);
    }
    double rate = lq_core_lane_drain_rate(f.c, now, lq_str_c("q"), lq_str_c("app"));
    assert_true(rate > 40 && rate < 60);
    /* 11 jobs to drain at 50/s: about 220 ms */
    uint32_t ra = lq_core_lane_retry_after_ms(f.c, now, lq_str_c("q"), lq_str_c("app"));
    assert_true(ra >= 150 && ra <= 300);
    /* the workers stop: the estimate decays and the hint grows (capped at 30 s) */
    ra = lq_core_lane_retry_after_ms(f.c, now + 60000, lq_str_c("q"), lq_str_c("app"));
    assert_true(ra >= 5000 && ra <= 30000);
    fx_fini(&f);
}

/* Tenant A floods a lane with 50,000 jobs; tenant B's 10 later ones are all leased within the
 * next 20 leases (tenants are served in turn). */
static void test_tenant_fairness(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    for (int i = 0; i < 50000; i++)
        assert_int_equal(put(&f, 0, "app", "A", 0, NULL), LQ_OK);
    lq_events_clear(&f.ev);
    lq_lease l[1];
    assert_int_equal(take(&f, 1, 1, l), 1); /* A is being served */
    for (int i = 0; i < 10; i++)
        assert_int_equal(put(&f, 2, "app", "B", 0, NULL), LQ_OK);
    int b = 0;
    for (int i = 0; i < 20; i++) {
        assert_int_equal(take(&f, 3, 1, l), 1);
        b += lq_str_eq(l[0].tenant, lq_str_c("B"));
    }
    assert_int_equal(b, 10);
    lq_events_clear(&f.ev);
    fx_fini(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_expires_while_queued),
        cmocka_unit_test(test_lane_max_wait_and_delayed),
        cmocka_unit_test(test_leased_job_not_expired),
        cmocka_unit_test(test_many_deadlines),
        cmocka_unit_test(test_retry_after_from_drain_rate),
        cmocka_unit_test(test_tenant_fairness),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
