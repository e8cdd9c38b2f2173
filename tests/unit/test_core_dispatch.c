/* Unit tests of the sans-IO core (broker/core): dispatch order: lane weights (smooth weighted
 * round robin), priorities within a lane, requeue to the front, tenants in turn, several
 * queues in one dequeue. lq_core_check runs after each step that changes state. */
#include "core_fixture.h"

/* ---- dispatch order --------------------------------------------------------------------- */

static void measure_shares(const lq_lane_cfg *lanes, uint32_t n_lanes, const double *expect)
{
    fx *f = fx_new();
    assert_int_equal(lq_core_configure_queue(f->c, lq_str_c("img"), lanes, n_lanes), LQ_OK);
    for (uint32_t k = 0; k < n_lanes; k++)
        for (int i = 0; i < 10000; i++)
            enq(f, 1, "img", &(enq_opts){.lane = lanes[k].name.ptr});
    lq_core_check(f->c);
    uint32_t s = session(f, 1, 0);
    int got[LQ_LANES_MAX] = {0};
    for (int i = 0; i < 10000; i++) {
        lq_lease l = lease1(f, 2, s, "img");
        for (uint32_t k = 0; k < n_lanes; k++)
            got[k] += lq_str_eq(l.lane, lanes[k].name);
        lq_events_clear(&f->ev);
        assert_int_equal(lq_core_ack(f->c, 3, l.job_id, l.token, &f->ev), LQ_OK);
    }
    for (uint32_t k = 0; k < n_lanes; k++) {
        double share = got[k] / 10000.0;
        if (share < expect[k] - 0.02 || share > expect[k] + 0.02)
            fail_msg("lane %s share %.4f, expected %.2f", lanes[k].name.ptr, share, expect[k]);
    }
    fx_free(f);
}

static void test_lane_shares_two(void **state)
{
    lq_lane_cfg lanes[] = {{lq_str_c("api"), 9}, {lq_str_c("app"), 1}};
    measure_shares(lanes, 2, (double[]){0.9, 0.1});
}

static void test_lane_shares_three(void **state)
{
    lq_lane_cfg lanes[] = {{lq_str_c("gold"), 5}, {lq_str_c("silver"), 3}, {lq_str_c("bronze"), 2}};
    measure_shares(lanes, 3, (double[]){0.5, 0.3, 0.2});
}

static void test_weight_zero_lane(void **state)
{
    fx *f = fx_new();
    lq_lane_cfg lanes[] = {{lq_str_c("main"), 1}, {lq_str_c("side"), 2}, {lq_str_c("bg"), 0}};
    assert_int_equal(lq_core_configure_queue(f->c, lq_str_c("q"), lanes, 3), LQ_OK);
    for (int i = 0; i < 5; i++) {
        enq(f, 1, "q", &(enq_opts){.lane = "bg"});
        enq(f, 1, "q", &(enq_opts){.lane = "main"});
        enq(f, 1, "q", &(enq_opts){.lane = "side"});
    }
    uint32_t s = session(f, 1, 0);
    for (int i = 0; i < 10; i++) {
        lq_lease l = lease1(f, 2, s, "q");
        assert_false(str_is(l.lane, "bg"));
    }
    for (int i = 0; i < 5; i++) {
        lq_lease l = lease1(f, 2, s, "q");
        assert_true(str_is(l.lane, "bg"));
    }
    /* a weighted lane that gets work again takes precedence at once */
    enq(f, 3, "q", &(enq_opts){.lane = "bg"});
    enq(f, 3, "q", &(enq_opts){.lane = "main"});
    assert_true(str_is(lease1(f, 4, s, "q").lane, "main"));
    assert_true(str_is(lease1(f, 4, s, "q").lane, "bg"));
    /* unknown lane of a configured queue */
    lq_enqueue_req r = {.queue = lq_str_c("q"), .lane = lq_str_c("nope")};
    uint64_t id;
    assert_int_equal(lq_core_enqueue(f->c, 5, &r, &id, &f->ev), LQ_E_NOT_FOUND);
    fx_free(f);
}

static void test_priorities_within_lane(void **state)
{
    fx *f = fx_new();
    uint64_t a = enq(f, 1, "q", &(enq_opts){.priority = 5});
    uint64_t b = enq(f, 1, "q", &(enq_opts){.priority = 1});
    uint64_t c = enq(f, 1, "q", &(enq_opts){.priority = 3});
    uint64_t d = enq(f, 1, "q", &(enq_opts){.priority = 1});
    uint64_t e = enq(f, 1, "q", &(enq_opts){.priority = -7});
    uint32_t s = session(f, 1, 0);
    uint64_t want[] = {e, b, d, c, a};
    lq_lease out[5];
    assert_int_equal(deq(f, 2, s, "q", 5, out), 5);
    for (int i = 0; i < 5; i++)
        assert_int_equal(out[i].job_id, want[i]);
    assert_int_equal(out[0].priority, -7);
    fx_free(f);
}

static void test_requeue_goes_to_front(void **state)
{
    fx *f = fx_new();
    uint64_t a = enq(f, 1, "q", NULL);
    uint64_t b = enq(f, 1, "q", NULL);
    uint32_t s1 = session(f, 1, 0), s2 = session(f, 1, 0);
    lq_lease la = lease1(f, 2, s1, "q");
    assert_int_equal(la.job_id, a);
    assert_int_equal(la.attempt, 1);
    uint64_t c = enq(f, 3, "q", NULL);
    lq_events_clear(&f->ev);
    lq_core_session_close(f->c, 4, s1, &f->ev);
    lq_core_check(f->c);
    const lq_ev *rq = find_ev(f, LQ_EV_REQUEUED, a);
    assert_non_null(rq);
    assert_int_equal(rq->u.requeued.reason, LQ_REQUEUE_CONN_CLOSED);
    assert_int_equal(rq->u.requeued.session, s1);
    const lq_ev *up = find_ev(f, LQ_EV_JOB_UPDATE, a);
    assert_non_null(up);
    assert_int_equal(up->u.update.state, LQ_STATE_READY);
    assert_int_equal(up->u.update.attempts, 1);
    lq_lease out[3];
    assert_int_equal(deq(f, 5, s2, "q", 3, out), 3);
    assert_int_equal(out[0].job_id, a); /* before b and c, enqueued after it */
    assert_int_equal(out[0].attempt, 2);
    assert_int_equal(out[1].job_id, b);
    assert_int_equal(out[2].job_id, c);
    assert_int_equal(lq_core_ack(f->c, 6, a, la.token, &f->ev), LQ_E_LEASE_LOST);
    fx_free(f);
}

static void test_tenant_round_robin(void **state)
{
    fx *f = fx_new();
    for (int i = 0; i < 1000; i++)
        enq(f, 1, "q", &(enq_opts){.tenant = "acme"});
    for (int i = 0; i < 10; i++)
        enq(f, 2, "q", &(enq_opts){.tenant = "bob"});
    uint32_t s = session(f, 3, 0);
    int bob = 0, n = 0;
    while (bob < 10) {
        lq_lease l = lease1(f, 4, s, "q");
        n++;
        bob += str_is(l.tenant, "bob");
        assert_true(n <= 21);
    }
    /* then acme alone; jobs without tenant form one more tenant */
    enq(f, 5, "q", NULL);
    int shared = 0;
    for (int i = 0; i < 3; i++)
        shared += lease1(f, 6, s, "q").tenant.len == 0;
    assert_int_equal(shared, 1);
    fx_free(f);
}

static void test_multi_queue_in_turn(void **state)
{
    fx *f = fx_new();
    for (int i = 0; i < 4; i++) {
        enq(f, 1, "q1", NULL);
        enq(f, 1, "q2", NULL);
    }
    uint32_t s = session(f, 1, 0);
    lq_str qs[] = {lq_str_c("q1"), lq_str_c("q2")};
    lq_dequeue_req r = {.queues = qs, .n_queues = 2, .max_jobs = 6, .session = s};
    lq_lease out[6];
    uint32_t n;
    bool parked;
    assert_int_equal(lq_core_dequeue(f->c, 2, &r, out, &n, &parked, &f->ev), LQ_OK);
    assert_int_equal(n, 6);
    for (uint32_t i = 0; i < n; i++)
        assert_true(str_is(out[i].queue, i % 2 ? "q2" : "q1"));
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_lane_shares_two),
        cmocka_unit_test(test_lane_shares_three),
        cmocka_unit_test(test_weight_zero_lane),
        cmocka_unit_test(test_priorities_within_lane),
        cmocka_unit_test(test_requeue_goes_to_front),
        cmocka_unit_test(test_tenant_round_robin),
        cmocka_unit_test(test_multi_queue_in_turn),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
