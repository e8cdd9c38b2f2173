/* Early dispatch (lq_core_config.early_dispatch, --dispatch early): a new job is leasable
 * before its batch is durable, and a batch that fails takes it back from wherever it got to. */
#include "core_fixture.h"

static fx *fx_early(bool early)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.seed = 42;
    cfg.early_dispatch = early;
    return fx_new_cfg(&cfg);
}

static uint64_t enq_keyed(fx *f, uint64_t now, const char *key)
{
    lq_enqueue_req r = {.queue = lq_str_c("q"), .idem_key = lq_str_c(key), .payload_len = 10};
    uint64_t id = 0;
    bool dup = true;
    assert_int_equal(lq_core_enqueue_ex(f->c, now, &r, &id, &dup, &f->ev), LQ_OK);
    assert_false(dup);
    return id;
}

static uint32_t leases_held(fx *f, uint64_t now, uint32_t s)
{
    uint32_t n = 99;
    assert_int_equal(lq_core_heartbeat(f->c, now, s, &n), LQ_OK);
    return n;
}

static void test_leasable_before_commit_only_when_early(void **state)
{
    for (int early = 0; early <= 1; early++) {
        fx *f = fx_early(early);
        uint64_t id = enq_pending(f, 0, "q", NULL);
        uint32_t s = session(f, 0, 0);
        lq_lease l[2];
        assert_int_equal(deq(f, 1, s, "q", 2, l), early ? 1 : 0);
        lq_core_check(f->c);
        lq_core_commit_done(f->c, 2, id, true, &f->ev);
        if (!early)
            assert_int_equal(deq(f, 3, s, "q", 2, l), 1);
        assert_int_equal(l[0].job_id, id);
        assert_int_equal(lane_stats(f, "q", "default").leased, 1);
        /* The commit did not put it back in line a second time. */
        assert_int_equal(lane_stats(f, "q", "default").ready, 0);
        lq_events_clear(&f->ev);
        assert_int_equal(lq_core_ack(f->c, 4, id, l[0].token, &f->ev), LQ_OK);
        assert_non_null(find_ev(f, LQ_EV_JOB_DELETE, id));
        fx_free(f);
    }
}

static void test_parked_worker_served_before_commit(void **state)
{
    fx *f = fx_early(true);
    uint32_t s = session(f, 0, 0);
    park(f, 0, s, "q", 1, 5000, 7);
    uint64_t id = enq_pending(f, 1, "q", NULL);
    lq_events_clear(&f->ev);
    (void)lq_core_tick(f->c, 1, &f->ev);
    const lq_ev *e = find_ev(f, LQ_EV_LEASE, id);
    assert_non_null(e);
    assert_int_equal(e->u.lease.waiter, 7);
    assert_non_null(find_ev(f, LQ_EV_WAITER_DONE, 0));
    lq_core_commit_done(f->c, 2, id, true, &f->ev);
    fx_free(f);
}

static void test_failed_commit_revokes_lease(void **state)
{
    fx *f = fx_early(true);
    uint64_t id = enq_pending(f, 0, "q", NULL);
    uint32_t s = session(f, 0, 1000);
    lq_lease l = lease1(f, 1, s, "q");
    assert_int_equal(leases_held(f, 1, s), 1);
    lq_events_clear(&f->ev);
    lq_core_commit_done(f->c, 2, id, false, &f->ev);
    const lq_ev *e = find_ev(f, LQ_EV_REVOKED, id);
    assert_non_null(e);
    assert_int_equal(e->u.revoked.session, s);
    assert_int_equal(count_ev(f, LQ_EV_JOB_UPDATE) + count_ev(f, LQ_EV_JOB_DELETE), 0); /* nothing stored */
    uint8_t st = 0;
    assert_int_equal(lq_core_job_state(f->c, id, &st), LQ_E_NOT_FOUND);
    assert_int_equal(leases_held(f, 3, s), 0);
    lq_core_check(f->c);
    /* The worker's late answers are fenced out. */
    assert_int_equal(lq_core_ack(f->c, 4, id, l.token, &f->ev), LQ_E_LEASE_LOST);
    uint64_t exp = 0;
    assert_int_equal(lq_core_extend(f->c, 4, id, l.token, 1000, &exp), LQ_E_LEASE_LOST);
    /* The lease heap no longer holds it: nothing expires later. */
    lq_events_clear(&f->ev);
    (void)lq_core_tick(f->c, 1000000, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 0);
    lq_lane_stats ls = lane_stats(f, "q", "default");
    assert_int_equal(ls.ready + ls.leased + ls.pending + ls.delayed + ls.dead, 0);
    fx_free(f);
}

static void test_failed_commit_of_ready_job(void **state)
{
    fx *f = fx_early(true);
    uint64_t a = enq_pending(f, 0, "q", NULL);
    uint64_t b = enq_pending(f, 0, "q", NULL);
    bool parked = false;
    uint8_t st = 0;
    assert_int_equal(lq_core_wait_job(f->c, 0, a, 11, 5000, &parked, &st), LQ_OK);
    assert_true(parked);
    assert_int_equal(st, LQ_STATE_READY);
    lq_events_clear(&f->ev);
    lq_core_commit_done(f->c, 1, a, false, &f->ev);
    assert_non_null(find_ev(f, LQ_EV_REVOKED, a));
    assert_int_equal(find_ev(f, LQ_EV_REVOKED, a)->u.revoked.session, UINT32_MAX);
    const lq_ev *w = find_ev(f, LQ_EV_JOB_WAIT_DONE, a);
    assert_non_null(w);
    assert_int_equal(w->u.wait_done.state, LQ_STATE_CANCELLED);
    lq_core_commit_done(f->c, 1, b, true, &f->ev);
    assert_int_equal(lane_stats(f, "q", "default").ready, 1);
    /* Only b is left to lease. */
    uint32_t s = session(f, 2, 0);
    lq_lease l[2];
    assert_int_equal(deq(f, 2, s, "q", 2, l), 1);
    assert_int_equal(l[0].job_id, b);
    fx_free(f);
}

/* A keyed job waits for its commit even in early mode: were it finished before its batch
 * failed, its key would still collapse the producer's retry onto a job never stored. */
static void test_keyed_job_waits_for_its_commit(void **state)
{
    fx *f = fx_early(true);
    uint64_t a = enq_keyed(f, 0, "k1");
    uint32_t s = session(f, 0, 0);
    lq_lease l[1];
    assert_int_equal(deq(f, 1, s, "q", 1, l), 0);
    assert_int_equal(lane_stats(f, "q", "default").pending, 1);
    lq_events_clear(&f->ev);
    lq_core_commit_done(f->c, 2, a, false, &f->ev);
    assert_null(find_ev(f, LQ_EV_REVOKED, a)); /* it was never out of PENDING */
    uint64_t a2 = enq_keyed(f, 3, "k1");      /* the retry is a new job */
    assert_true(a2 > a);
    lq_core_commit_done(f->c, 4, a2, true, &f->ev);
    assert_int_equal(deq(f, 5, s, "q", 1, l), 1);
    assert_int_equal(l[0].job_id, a2);
    fx_free(f);
}

static void test_failed_commit_of_nacked_and_dead_jobs(void **state)
{
    fx *f = fx_early(true);
    enq_opts one = {.max_attempts = 1};
    uint64_t a = enq_pending(f, 0, "q", NULL);
    uint64_t d = enq_pending(f, 0, "q", &one);
    uint32_t s = session(f, 0, 0);
    lq_lease l[2];
    assert_int_equal(deq(f, 1, s, "q", 2, l), 2);
    lq_nack_opts no = {.error = lq_str_c("oops")};
    for (int i = 0; i < 2; i++) {
        uint8_t st = 0;
        assert_int_equal(lq_core_nack(f->c, 2, l[i].job_id, l[i].token, &no, &st, &f->ev), LQ_OK);
        assert_int_equal(st, l[i].job_id == a ? LQ_STATE_DELAYED : LQ_STATE_DEAD);
    }
    lq_events_clear(&f->ev);
    lq_core_commit_done(f->c, 3, a, false, &f->ev);
    lq_core_commit_done(f->c, 3, d, false, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REVOKED), 2);
    lq_core_check(f->c);
    lq_lane_stats ls = lane_stats(f, "q", "default");
    assert_int_equal(ls.delayed + ls.dead, 0);
    /* The backoff's due time passes with nothing to release. */
    lq_events_clear(&f->ev);
    (void)lq_core_tick(f->c, 10000000, &f->ev);
    assert_int_equal(f->ev.n, 0);
    fx_free(f);
}

static void test_finished_before_commit(void **state)
{
    fx *f = fx_early(true);
    uint64_t a = enq_pending(f, 0, "q", NULL);
    uint64_t b = enq_pending(f, 0, "q", NULL);
    uint32_t s = session(f, 0, 0);
    lq_lease l[2];
    assert_int_equal(deq(f, 1, s, "q", 2, l), 2);
    for (int i = 0; i < 2; i++)
        assert_int_equal(lq_core_ack(f->c, 2, l[i].job_id, l[i].token, &f->ev), LQ_OK);
    lq_events_clear(&f->ev);
    /* Settling a finished job changes nothing, whichever way its batch went: its JOB_DELETE
     * is in a later batch, and the store skips a job it does not hold. */
    lq_core_commit_done(f->c, 3, a, false, &f->ev);
    lq_core_commit_done(f->c, 3, b, true, &f->ev);
    assert_int_equal(f->ev.n, 0);
    fx_free(f);
}

static void test_delayed_job_waits_for_its_commit(void **state)
{
    fx *f = fx_early(true);
    enq_opts later = {.delay_ms = 10};
    uint64_t id = enq_pending(f, 0, "q", &later);
    uint32_t s = session(f, 0, 0);
    lq_lease l[1];
    (void)lq_core_tick(f->c, 100, &f->ev);
    assert_int_equal(deq(f, 100, s, "q", 1, l), 0); /* nothing to gain from early: it is not due */
    assert_int_equal(lane_stats(f, "q", "default").pending, 1);
    lq_core_commit_done(f->c, 101, id, true, &f->ev);
    assert_int_equal(deq(f, 102, s, "q", 1, l), 1);
    assert_int_equal(l[0].job_id, id);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_leasable_before_commit_only_when_early),
        cmocka_unit_test(test_parked_worker_served_before_commit),
        cmocka_unit_test(test_failed_commit_revokes_lease),
        cmocka_unit_test(test_failed_commit_of_ready_job),
        cmocka_unit_test(test_keyed_job_waits_for_its_commit),
        cmocka_unit_test(test_failed_commit_of_nacked_and_dead_jobs),
        cmocka_unit_test(test_finished_before_commit),
        cmocka_unit_test(test_delayed_job_waits_for_its_commit),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
