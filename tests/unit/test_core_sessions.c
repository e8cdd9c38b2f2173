/* Unit tests of the sans-IO core (broker/core): parked dequeues (arrival order, limits,
 * cancel, several queues) and worker sessions (close, heartbeat stall). Every test drives
 * the core with explicit times and checks the events it emits. */
#include "core_fixture.h"

/* ---- parked dequeues -------------------------------------------------------------------- */

static void test_parked_arrival_order(void **state)
{
    fx *f = fx_new();
    uint32_t s1 = session(f, 0, 0), s2 = session(f, 0, 0), s3 = session(f, 0, 0);
    park(f, 0, s1, "q", 1, 5000, 101);
    park(f, 1, s2, "q", 16, 5000, 102);
    lq_core_check(f->c);
    assert_int_equal(lq_core_tick(f->c, 2, &f->ev), 5000);
    lq_events_clear(&f->ev);
    uint64_t a = enq(f, 10, "q", NULL);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 0); /* served in tick, not in commit */
    lq_core_tick(f->c, 10, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 1);
    const lq_ev *le = find_ev(f, LQ_EV_LEASE, a);
    assert_non_null(le);
    assert_int_equal(le->u.lease.waiter, 101);
    assert_int_equal(le->u.lease.lease.session, s1);
    assert_int_equal(count_ev(f, LQ_EV_WAITER_DONE), 1);
    assert_int_equal(find_ev(f, LQ_EV_WAITER_DONE, 0)->u.waiter_done.waiter, 101);
    lq_core_check(f->c);

    /* a batch of 20 fills the 16-job waiter in one tick, with exactly one WAITER_DONE after */
    lq_events_clear(&f->ev);
    for (int i = 0; i < 20; i++)
        enq(f, 20, "q", NULL);
    lq_core_tick(f->c, 20, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 16);
    assert_int_equal(count_ev(f, LQ_EV_WAITER_DONE), 1);
    assert_int_equal(f->ev.v[f->ev.n - 1].type, LQ_EV_WAITER_DONE);
    assert_int_equal(f->ev.v[f->ev.n - 1].u.waiter_done.waiter, 102);
    for (size_t i = 0; i < f->ev.n; i++)
        if (f->ev.v[i].type == LQ_EV_LEASE)
            assert_int_equal(f->ev.v[i].u.lease.waiter, 102);
    assert_int_equal(lane_stats(f, "q", "default").leased, 17);

    /* timeout: an empty WAITER_DONE */
    lq_lease drain[4];
    assert_int_equal(deq(f, 30, s3, "q", 4, drain), 4);
    park(f, 100, s3, "q", 1, 250, 103);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 349, &f->ev), 350);
    assert_int_equal(f->ev.n, 0);
    lq_core_tick(f->c, 350, &f->ev);
    assert_int_equal(f->ev.n, 1);
    assert_int_equal(f->ev.v[0].type, LQ_EV_WAITER_DONE);
    assert_int_equal(f->ev.v[0].u.waiter_done.waiter, 103);
    fx_free(f);
}

static void test_parked_served_before_new_dequeue(void **state)
{
    fx *f = fx_new();
    uint32_t s1 = session(f, 0, 0), s2 = session(f, 0, 0);
    park(f, 0, s1, "q", 1, 5000, 7);
    uint64_t a = enq(f, 1, "q", NULL);
    lq_events_clear(&f->ev);
    lq_lease l;
    assert_int_equal(deq(f, 2, s2, "q", 1, &l), 0); /* the parked worker keeps its turn */
    assert_non_null(find_ev(f, LQ_EV_LEASE, a));
    assert_int_equal(count_ev(f, LQ_EV_WAITER_DONE), 1);
    fx_free(f);
}

static void test_parked_limits_and_cancel(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.max_parked = 2;
    fx *f = fx_new_cfg(&cfg);
    uint32_t s = session(f, 0, 0);
    park(f, 0, s, "q", 1, 1000, 1);
    /* a duplicate live handle is refused */
    lq_str q = lq_str_c("q");
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .wait_ms = 1000, .session = s, .waiter = 1};
    lq_lease out[1];
    uint32_t n;
    bool parked;
    assert_int_equal(lq_core_dequeue(f->c, 0, &r, out, &n, &parked, &f->ev), LQ_E_INVALID_ARGUMENT);
    park(f, 0, s, "q", 1, 1000, 2);
    r.waiter = 3;
    assert_int_equal(lq_core_dequeue(f->c, 0, &r, out, &n, &parked, &f->ev), LQ_E_LIMIT);
    lq_core_waiter_cancel(f->c, 1);
    lq_core_waiter_cancel(f->c, 999); /* unknown: nothing */
    lq_core_check(f->c);
    park(f, 0, s, "q", 1, 1000, 3);
    lq_events_clear(&f->ev);
    uint64_t a = enq(f, 1, "q", NULL);
    lq_core_tick(f->c, 1, &f->ev);
    const lq_ev *le = find_ev(f, LQ_EV_LEASE, a);
    assert_non_null(le);
    assert_int_equal(le->u.lease.waiter, 2); /* 1 was cancelled, 2 came before 3 */
    /* closing the session drops its parked dequeues without WAITER_DONE and requeues */
    lq_events_clear(&f->ev);
    lq_core_session_close(f->c, 2, s, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_WAITER_DONE), 0);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 1);
    lq_core_check(f->c);
    assert_int_equal(lq_core_tick(f->c, 3, &f->ev), LQ_TIME_NEVER);
    fx_free(f);
}

static void test_parked_multi_queue(void **state)
{
    fx *f = fx_new();
    uint32_t s = session(f, 0, 0);
    lq_str qs[] = {lq_str_c("a"), lq_str_c("b")};
    lq_dequeue_req r = {.queues = qs, .n_queues = 2, .max_jobs = 4, .wait_ms = 1000, .session = s, .waiter = 9};
    lq_lease out[4];
    uint32_t n;
    bool parked;
    assert_int_equal(lq_core_dequeue(f->c, 0, &r, out, &n, &parked, &f->ev), LQ_OK);
    assert_true(parked);
    lq_core_check(f->c);
    lq_events_clear(&f->ev);
    uint64_t b = enq(f, 1, "b", NULL);
    lq_core_tick(f->c, 1, &f->ev);
    assert_non_null(find_ev(f, LQ_EV_LEASE, b));
    assert_int_equal(count_ev(f, LQ_EV_WAITER_DONE), 1);
    lq_core_check(f->c);
    fx_free(f);
}

/* ---- sessions --------------------------------------------------------------------------- */

static void test_session_close_requeues_at_once(void **state)
{
    fx *f = fx_new();
    for (int i = 0; i < 5; i++)
        enq(f, 0, "q", NULL);
    uint32_t s = session(f, 0, 0);
    lq_lease out[5];
    assert_int_equal(deq(f, 0, s, "q", 5, out), 5);
    assert_int_equal(lane_stats(f, "q", "default").leased, 5);
    lq_events_clear(&f->ev);
    lq_core_session_close(f->c, 1, s, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 5);
    assert_int_equal(count_ev(f, LQ_EV_JOB_UPDATE), 5);
    lq_lane_stats st = lane_stats(f, "q", "default");
    assert_int_equal(st.leased, 0);
    assert_int_equal(st.ready, 5);
    assert_int_equal(lq_core_tick(f->c, 2, &f->ev), LQ_TIME_NEVER); /* no stale lease timers */
    uint32_t hb;
    assert_int_equal(lq_core_heartbeat(f->c, 2, s, &hb), LQ_E_NOT_FOUND);
    fx_free(f);
}

static void test_heartbeat_stall(void **state)
{
    fx *f = fx_new(); /* heartbeat_misses = 3 */
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = enq(f, 0, "q", NULL);
    uint32_t s = session(f, 0, 1000);
    lq_lease out[3];
    assert_int_equal(deq_opt(f, 0, s, "q", 3, 500, out), 3);
    for (int i = 0; i < 3; i++)
        assert_int_equal(out[i].expires_ms, 500); /* reported anyway */
    uint64_t later = enq(f, 1, "q", NULL);
    lq_events_clear(&f->ev);
    /* leases of a heartbeating session do not expire one by one */
    assert_int_equal(lq_core_tick(f->c, 2999, &f->ev), 3000);
    assert_int_equal(f->ev.n, 0);
    lq_core_tick(f->c, 3000, &f->ev);
    const lq_ev *st = find_ev(f, LQ_EV_SESSION_STALLED, 0);
    assert_non_null(st);
    assert_int_equal(st->u.stalled.session, s);
    assert_int_equal(st->u.stalled.leases_requeued, 3);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 3);
    for (size_t i = 0; i < f->ev.n; i++)
        if (f->ev.v[i].type == LQ_EV_REQUEUED)
            assert_int_equal(f->ev.v[i].u.requeued.reason, LQ_REQUEUE_SESSION_STALLED);
    lq_core_check(f->c);
    /* old tokens are dead */
    for (int i = 0; i < 3; i++)
        assert_int_equal(lq_core_ack(f->c, 3001, out[i].job_id, out[i].token, &f->ev), LQ_E_LEASE_LOST);
    /* back at the front: before the job enqueued after them */
    uint32_t s2 = session(f, 3001, 0);
    lq_lease again[4];
    assert_int_equal(deq(f, 3001, s2, "q", 4, again), 4);
    for (int i = 0; i < 3; i++)
        assert_int_equal(again[i].job_id, ids[i]);
    assert_int_equal(again[3].job_id, later);
    /* the stalled session speaks again: it starts clean, same id */
    uint32_t held = 99;
    assert_int_equal(lq_core_heartbeat(f->c, 4000, s, &held), LQ_OK);
    assert_int_equal(held, 0);
    enq(f, 4000, "q", NULL);
    lq_lease l = lease1(f, 4000, s, "q");
    assert_int_equal(l.session, s);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 6999, &f->ev), 7000);
    assert_int_equal(lq_core_ack(f->c, 6999, l.job_id, l.token, &f->ev), LQ_OK);
    fx_free(f);
}

static void test_heartbeat_leases_never_expire(void **state)
{
    fx *f = fx_new();
    uint64_t id = enq(f, 0, "q", NULL);
    uint32_t s = session(f, 0, 1000);
    lq_lease l;
    assert_int_equal(deq_opt(f, 0, s, "q", 1, 100, &l), 1);
    for (uint64_t t = 500; t <= 100000; t += 500) {
        uint32_t held;
        assert_int_equal(lq_core_heartbeat(f->c, t, s, &held), LQ_OK);
        assert_int_equal(held, 1);
        lq_core_tick(f->c, t, &f->ev);
        assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 0);
    }
    lq_core_check(f->c);
    assert_int_equal(lq_core_ack(f->c, 100001, id, l.token, &f->ev), LQ_OK);
    fx_free(f);
}

static void test_stalled_session_waiters_done(void **state)
{
    fx *f = fx_new();
    uint32_t s = session(f, 0, 100);
    park(f, 0, s, "q", 1, 10000, 5);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 299, &f->ev), 300);
    lq_core_tick(f->c, 300, &f->ev);
    assert_non_null(find_ev(f, LQ_EV_SESSION_STALLED, 0));
    assert_int_equal(count_ev(f, LQ_EV_WAITER_DONE), 1);
    lq_core_check(f->c);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_parked_arrival_order),
        cmocka_unit_test(test_parked_served_before_new_dequeue),
        cmocka_unit_test(test_parked_limits_and_cancel),
        cmocka_unit_test(test_parked_multi_queue),
        cmocka_unit_test(test_session_close_requeues_at_once),
        cmocka_unit_test(test_heartbeat_stall),
        cmocka_unit_test(test_heartbeat_leases_never_expire),
        cmocka_unit_test(test_stalled_session_waiters_done),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
