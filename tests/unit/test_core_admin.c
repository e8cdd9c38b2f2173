/* Unit tests of the core's operations (admin.c): purge in bounded steps (tenant rings, delayed
 * heap, waits answered, later jobs spared), drain, dead-letter list and redrive (old place in
 * line, attempts reset), cancel, totals. lq_core_check runs after each. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#define FX_SEED 7
#include "core_session_fx.h"

static uint64_t put(fx *f, uint64_t now, const char *queue, const char *lane, const char *tenant, uint64_t delay_ms,
                    uint32_t max_attempts)
{
    lq_enqueue_req r = {.queue = lq_str_c(queue), .lane = lq_str_c(lane), .tenant = lq_str_c(tenant),
                        .delay_ms = delay_ms, .max_attempts = max_attempts, .payload_len = 4};
    uint64_t id = 0;
    assert_int_equal(lq_core_enqueue(f->c, now, &r, &id, &f->ev), LQ_OK);
    lq_core_commit_done(f->c, now, id, true, &f->ev);
    return id;
}

static uint32_t take(fx *f, uint64_t now, const char *queue, uint32_t max, lq_lease *out)
{
    lq_str q = lq_str_c(queue);
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .max_jobs = max, .session = f->session, .waiter = 1};
    uint32_t n = 0;
    bool parked = false;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, &parked, &f->ev), LQ_OK);
    return n;
}

typedef struct {
    uint64_t ready, leased, delayed, dead;
    lq_lane_totals t;
} sums;

static void add_lane(void *ctx, const lq_lane_info *i, const lq_queue_opts *q)
{
    (void)q;
    sums *s = ctx;
    s->ready += i->stats.ready;
    s->leased += i->stats.leased;
    s->delayed += i->stats.delayed;
    s->dead += i->stats.dead;
    s->t.purged += i->totals.purged;
    s->t.enqueued += i->totals.enqueued;
    s->t.cancelled += i->totals.cancelled;
    s->t.dead_lettered += i->totals.dead_lettered;
}

static sums totals(fx *f, const char *queue)
{
    sums s = {0};
    assert_int_equal(lq_core_inspect(f->c, lq_str_c(queue), add_lane, &s), LQ_OK);
    return s;
}

static void test_purge_steps(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    /* two lanes, several tenants, some delayed, one leased, another queue */
    uint64_t waited = 0;
    for (int i = 0; i < 300; i++) {
        const char *tenants[] = {"", "t1", "t2"};
        uint64_t id = put(&f, 1, "q", i % 2 ? "api" : "app", tenants[i % 3], i % 5 == 0 ? 10000 : 0, 0);
        if (i == 7)
            waited = id;
    }
    put(&f, 1, "other", "", "", 0, 0);
    lq_lease l[1];
    assert_int_equal(take(&f, 2, "q", 1, l), 1);
    bool parked = false;
    uint8_t st = 0;
    assert_int_equal(lq_core_wait_job(f.c, 2, waited, 99, 60000, &parked, &st), LQ_OK);
    assert_true(parked);
    lq_events_clear(&f.ev);

    lq_purge p = {.queue = lq_str_c("q")};
    assert_int_equal(lq_core_purge_begin(f.c, &p), LQ_OK);
    put(&f, 3, "q", "api", "", 0, 0); /* arrives after the purge began: spared */
    uint64_t purged = 0;
    int steps = 0;
    while (!lq_core_purge_step(f.c, 3, &p, 16, &purged, &f.ev)) {
        lq_core_check(f.c); /* the rings and heaps stay consistent between steps */
        steps++;
    }
    assert_true(steps > 5); /* bounded work per step */
    assert_int_equal(purged, 299);
    bool wait_done = false;
    for (size_t i = 0; i < f.ev.n; i++)
        if (f.ev.v[i].type == LQ_EV_JOB_WAIT_DONE && f.ev.v[i].job_id == waited)
            wait_done = f.ev.v[i].u.wait_done.state == LQ_STATE_PURGED;
    assert_true(wait_done);
    sums s = totals(&f, "q");
    assert_int_equal(s.ready + s.delayed, 1);
    assert_int_equal(s.leased, 1);
    assert_int_equal(s.t.purged, 299);
    assert_int_equal(totals(&f, "other").ready, 1);
    /* the survivors are still served */
    assert_int_equal(take(&f, 4, "q", 1, l), 1);
    fx_fini(&f);
}

static void test_purge_lane_and_age(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    for (int i = 0; i < 10; i++)
        put(&f, 100 + (uint64_t)i * 10, "q", "app", "", 0, 0); /* enqueued at 100..190 */
    put(&f, 100, "q", "api", "", 0, 0);
    lq_purge p = {.queue = lq_str_c("q"), .lane = lq_str_c("app"), .enqueued_before_ms = 150};
    assert_int_equal(lq_core_purge_begin(f.c, &p), LQ_OK);
    uint64_t purged = 0;
    while (!lq_core_purge_step(f.c, 200, &p, 1000, &purged, &f.ev)) {
    }
    assert_int_equal(purged, 5); /* 100, 110, 120, 130, 140 */
    assert_int_equal(totals(&f, "q").ready, 6);
    lq_purge bad = {.queue = lq_str_c("q"), .lane = lq_str_c("nope")};
    assert_int_equal(lq_core_purge_begin(f.c, &bad), LQ_E_NOT_FOUND);
    lq_purge none = {.queue = lq_str_c("nope")};
    assert_int_equal(lq_core_purge_begin(f.c, &none), LQ_E_NOT_FOUND);
    fx_fini(&f);
}

static void dead_jobs(fx *f, uint64_t now, int n)
{
    lq_lease l[64];
    for (int i = 0; i < n; i++)
        put(f, now, "d", "", "", 0, 1);
    uint32_t got = take(f, now, "d", (uint32_t)n, l);
    assert_int_equal(got, n);
    for (uint32_t i = 0; i < got; i++) {
        lq_nack_opts o = {.error = lq_str_c("boom")};
        uint8_t st = 0;
        assert_int_equal(lq_core_nack(f->c, now, l[i].job_id, l[i].token, &o, &st, &f->ev), LQ_OK);
        assert_int_equal(st, LQ_STATE_DEAD);
    }
}

static void test_dead_list_redrive_purge(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    dead_jobs(&f, 1, 5);
    uint64_t ids[3];
    uint32_t n = 0;
    uint64_t total = 0;
    assert_int_equal(lq_core_dead_list(f.c, lq_str_c("d"), 0, ids, 3, &n, &total), LQ_OK);
    assert_int_equal(n, 3);
    assert_int_equal(total, 5);
    assert_true(ids[0] < ids[1] && ids[1] < ids[2]);
    uint64_t more[3];
    assert_int_equal(lq_core_dead_list(f.c, lq_str_c("d"), ids[2], more, 3, &n, &total), LQ_OK);
    assert_int_equal(n, 2);
    assert_true(more[0] > ids[2]);
    assert_int_equal(totals(&f, "d").t.dead_lettered, 5);

    /* a job enqueued later, then the first dead job redriven: it goes first (old seq) */
    uint64_t later = put(&f, 2, "d", "", "", 0, 0);
    uint64_t r = 0;
    assert_int_equal(lq_core_redrive(f.c, 2, lq_str_c("d"), ids[0], 0, &r, &f.ev), LQ_OK);
    assert_int_equal(r, 1);
    uint32_t attempts = 99;
    assert_int_equal(lq_core_job_attempts(f.c, ids[0], &attempts), LQ_OK);
    assert_int_equal(attempts, 0);
    lq_lease l[2];
    assert_int_equal(take(&f, 3, "d", 1, l), 1);
    assert_int_equal(l[0].job_id, ids[0]);
    assert_int_equal(l[0].attempt, 1);
    assert_int_not_equal(l[0].job_id, later);
    assert_int_equal(lq_core_redrive(f.c, 3, lq_str_c("d"), later, 0, &r, &f.ev), LQ_E_NOT_FOUND);

    /* the rest: redrive two of the four, purge the other two */
    assert_int_equal(lq_core_redrive(f.c, 3, lq_str_c("d"), 0, 2, &r, &f.ev), LQ_OK);
    assert_int_equal(r, 2);
    lq_purge p = {.queue = lq_str_c("d"), .dead = true};
    assert_int_equal(lq_core_purge_begin(f.c, &p), LQ_OK);
    uint64_t purged = 0;
    while (!lq_core_purge_step(f.c, 4, &p, 100, &purged, &f.ev)) {
    }
    assert_int_equal(purged, 2);
    sums s = totals(&f, "d");
    assert_int_equal(s.dead, 0);
    assert_int_equal(s.ready, 3); /* two redriven + later */
    fx_fini(&f);
}

static void test_cancel(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    uint64_t a = put(&f, 1, "c", "", "", 0, 0);
    uint64_t b = put(&f, 1, "c", "", "", 5000, 0);
    uint64_t leased = put(&f, 1, "c", "", "", 0, 0);
    assert_int_equal(lq_core_cancel(f.c, 2, b, &f.ev), LQ_OK); /* delayed */
    lq_lease l[1];
    assert_int_equal(take(&f, 2, "c", 1, l), 1);
    assert_int_equal(l[0].job_id, a);
    assert_int_equal(lq_core_cancel(f.c, 2, a, &f.ev), LQ_E_INVALID_ARGUMENT); /* leased */
    assert_int_equal(lq_core_cancel(f.c, 2, leased, &f.ev), LQ_OK);
    assert_int_equal(lq_core_cancel(f.c, 2, leased, &f.ev), LQ_E_NOT_FOUND);
    assert_int_equal(totals(&f, "c").t.cancelled, 2);
    /* pending: not yet stored, cannot be cancelled */
    lq_enqueue_req r = {.queue = lq_str_c("c"), .payload_len = 1};
    uint64_t p = 0;
    assert_int_equal(lq_core_enqueue(f.c, 3, &r, &p, &f.ev), LQ_OK);
    assert_int_equal(lq_core_cancel(f.c, 3, p, &f.ev), LQ_E_INVALID_ARGUMENT);
    lq_core_commit_done(f.c, 3, p, true, &f.ev);
    fx_fini(&f);
}

typedef struct {
    int calls;
} drained_ctx;

static void on_drained(void *ctx, lq_str queue)
{
    (void)queue;
    ((drained_ctx *)ctx)->calls++;
}

static void test_drain(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    put(&f, 1, "w", "", "", 0, 0);
    lq_queue_opts o = {.draining = true, .max_attempts = 3};
    assert_int_equal(lq_core_queue_opts_set(f.c, lq_str_c("w"), &o), LQ_OK);
    lq_enqueue_req r = {.queue = lq_str_c("w"), .payload_len = 1};
    uint64_t id = 0;
    assert_int_equal(lq_core_enqueue(f.c, 2, &r, &id, &f.ev), LQ_E_DRAINING);
    drained_ctx d = {0};
    lq_core_drained(f.c, on_drained, &d);
    assert_int_equal(d.calls, 0);
    lq_lease l[1];
    assert_int_equal(take(&f, 2, "w", 1, l), 1); /* dispatch goes on */
    lq_core_drained(f.c, on_drained, &d);
    assert_int_equal(d.calls, 0); /* leased still counts */
    assert_int_equal(lq_core_ack(f.c, 3, l[0].job_id, l[0].token, &f.ev), LQ_OK);
    lq_core_drained(f.c, on_drained, &d);
    lq_core_drained(f.c, on_drained, &d);
    assert_int_equal(d.calls, 1); /* once per drain */
    lq_queue_opts got;
    assert_int_equal(lq_core_queue_opts_get(f.c, lq_str_c("w"), &got), LQ_OK);
    assert_true(got.draining);
    assert_int_equal(got.max_attempts, 3);
    o.draining = false;
    assert_int_equal(lq_core_queue_opts_set(f.c, lq_str_c("w"), &o), LQ_OK);
    assert_int_equal(lq_core_enqueue(f.c, 4, &r, &id, &f.ev), LQ_OK);
    lq_core_commit_done(f.c, 4, id, true, &f.ev);
    fx_fini(&f);
}

static void lane_rates(void *ctx, const lq_lane_info *i, const lq_queue_opts *q)
{
    (void)q;
    *(double *)ctx = i->enqueue_rate;
}

static void test_rates(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    put(&f, 0, "r", "", "", 0, 0);
    lq_core_admin_tick(f.c, 1000);
    for (int i = 0; i < 100; i++)
        put(&f, 1500, "r", "", "", 0, 0);
    lq_core_admin_tick(f.c, 11000); /* 100 jobs over 10 s: 10/s, the full window */
    double rate = 0;
    assert_int_equal(lq_core_inspect(f.c, lq_str_c("r"), lane_rates, &rate), LQ_OK);
    assert_true(rate > 9.9 && rate < 10.1);
    fx_fini(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_purge_steps),
        cmocka_unit_test(test_purge_lane_and_age),
        cmocka_unit_test(test_dead_list_redrive_purge),
        cmocka_unit_test(test_cancel),
        cmocka_unit_test(test_drain),
        cmocka_unit_test(test_rates),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
