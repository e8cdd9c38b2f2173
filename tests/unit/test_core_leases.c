/* Unit tests of the sans-IO core (broker/core): leases (tokens, extend, backoff, delivery
 * limit) and time (delayed jobs, pending until durable, deadlines). Every test drives the
 * core with explicit times and checks the events it emits. */
#include "core_fixture.h"

/* ---- leases ----------------------------------------------------------------------------- */

static void test_stale_tokens(void **state)
{
    fx *f = fx_new();
    uint64_t id = enq(f, 1, "q", NULL);
    uint32_t s = session(f, 1, 0);
    lq_lease l1 = lease1(f, 10, s, "q");
    assert_int_not_equal(l1.token, 0);
    assert_int_equal(l1.expires_ms, 10 + 30000);
    assert_int_equal(lq_core_ack(f->c, 11, id, l1.token + 1, &f->ev), LQ_E_LEASE_LOST);
    /* lease expires, the job is granted again with a new token */
    assert_int_equal(lq_core_tick(f->c, 30009, &f->ev), 30010);
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, 30010, &f->ev);
    const lq_ev *rq = find_ev(f, LQ_EV_REQUEUED, id);
    assert_non_null(rq);
    assert_int_equal(rq->u.requeued.reason, LQ_REQUEUE_LEASE_EXPIRED);
    lq_lease l2 = lease1(f, 30011, s, "q");
    assert_int_equal(l2.job_id, id);
    assert_int_not_equal(l2.token, l1.token);
    assert_int_not_equal(l2.token, 0);
    uint64_t exp;
    assert_int_equal(lq_core_extend(f->c, 30012, id, l1.token, 1000, &exp), LQ_E_LEASE_LOST);
    uint8_t st;
    lq_nack_opts no = {.error = lq_str_c("x")};
    assert_int_equal(lq_core_nack(f->c, 30012, id, l1.token, &no, &st, &f->ev), LQ_E_LEASE_LOST);
    assert_int_equal(lq_core_ack(f->c, 30012, id, l1.token, &f->ev), LQ_E_LEASE_LOST);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_ack(f->c, 30013, id, l2.token, &f->ev), LQ_OK);
    const lq_ev *del = find_ev(f, LQ_EV_JOB_DELETE, id);
    assert_non_null(del);
    assert_int_equal(del->u.del.final_state, LQ_STATE_DONE);
    assert_int_equal(lq_core_ack(f->c, 30014, id, l2.token, &f->ev), LQ_E_LEASE_LOST);
    assert_int_equal(lq_core_ack(f->c, 30014, id + 100, 1, &f->ev), LQ_E_NOT_FOUND);
    assert_int_equal(lq_core_job_state(f->c, id, &st), LQ_E_NOT_FOUND);
    fx_free(f);
}

static void test_tokens_distinct(void **state)
{
    fx *f = fx_new();
    uint32_t s = session(f, 1, 0);
    enum { N = 2000 };
    static uint64_t tok[N];
    for (int i = 0; i < N; i++) {
        enq(f, 1, "q", NULL);
        tok[i] = lease1(f, 1, s, "q").token;
        assert_int_not_equal(tok[i], 0);
    }
    for (int i = 0; i < N; i++)
        for (int k = i + 1; k < N; k++)
            assert_int_not_equal(tok[i], tok[k]);
    /* not a simple counter */
    assert_true(tok[1] != tok[0] + 1 && tok[2] != tok[1] + 1);
    fx_free(f);
}

static void test_extend(void **state)
{
    fx *f = fx_new();
    uint64_t id = enq(f, 0, "q", NULL);
    uint32_t s = session(f, 0, 0);
    lq_lease l = lease1(f, 0, s, "q");
    assert_int_equal(lq_core_tick(f->c, 0, &f->ev), 30000);
    uint64_t exp = 0;
    assert_int_equal(lq_core_extend(f->c, 20000, id, l.token, 50000, &exp), LQ_OK);
    assert_int_equal(exp, 70000);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 69999, &f->ev), 70000);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 0);
    lq_core_tick(f->c, 70000, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 1);
    fx_free(f);
}

static void test_backoff_grows_and_caps(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.seed = 7;
    cfg.backoff_base_ms = 1000;
    cfg.backoff_max_ms = 6000; /* not a power-of-two multiple of the base: the cap must clip */
    fx *f = fx_new_cfg(&cfg);
    uint64_t id = enq(f, 0, "q", &(enq_opts){.max_attempts = 100});
    uint32_t s = session(f, 0, 0);
    uint64_t now = 0, prev_hi = 0;
    for (uint32_t attempt = 1; attempt <= 12; attempt++) {
        lq_lease l = lease1(f, now, s, "q");
        assert_int_equal(l.attempt, attempt);
        lq_events_clear(&f->ev);
        uint8_t st = 0;
        lq_nack_opts o = {.error = lq_str_c("gpu oom")};
        assert_int_equal(lq_core_nack(f->c, now, id, l.token, &o, &st, &f->ev), LQ_OK);
        assert_int_equal(st, LQ_STATE_DELAYED);
        const lq_ev *up = find_ev(f, LQ_EV_JOB_UPDATE, id);
        assert_non_null(up);
        assert_int_equal(up->u.update.state, LQ_STATE_DELAYED);
        assert_int_equal(up->u.update.attempts, attempt);
        assert_true(str_is(up->u.update.last_error, "gpu oom"));
        uint64_t delay = up->u.update.not_before_ms - now;
        uint64_t d = 1000ull << (attempt - 1 > 4 ? 4 : attempt - 1);
        if (d > 6000)
            d = 6000;
        if (delay < d / 2 || delay > d)
            fail_msg("attempt %u: delay %llu outside [%llu, %llu]", attempt, (unsigned long long)delay,
                     (unsigned long long)d / 2, (unsigned long long)d);
        assert_true(delay <= 6000);
        if (attempt <= 4)
            assert_true(delay >= prev_hi / 2); /* grows: lower bound doubles */
        prev_hi = d;
        /* not ready before not_before, ready at it */
        uint64_t nb = up->u.update.not_before_ms;
        lq_core_tick(f->c, nb - 1, &f->ev);
        lq_lease none;
        assert_int_equal(deq(f, nb - 1, s, "q", 1, &none), 0);
        assert_int_equal(lq_core_tick(f->c, nb - 1, &f->ev), nb);
        now = nb;
        lq_core_tick(f->c, now, &f->ev);
        lq_core_check(f->c);
    }
    /* an explicit delay overrides the backoff; delay 0 means ready at once */
    lq_lease l = lease1(f, now, s, "q");
    uint8_t st;
    lq_nack_opts o = {.delay_set = true, .delay_ms = 0};
    assert_int_equal(lq_core_nack(f->c, now, id, l.token, &o, &st, &f->ev), LQ_OK);
    assert_int_equal(st, LQ_STATE_READY);
    assert_int_equal(lease1(f, now, s, "q").job_id, id);
    fx_free(f);
}

static void test_delivery_limit_dead(void **state)
{
    fx *f = fx_new();
    uint64_t a = enq(f, 0, "q", &(enq_opts){.max_attempts = 2});
    uint32_t s = session(f, 0, 0);
    lq_lease l = lease1(f, 0, s, "q");
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, 30000, &f->ev);
    assert_non_null(find_ev(f, LQ_EV_REQUEUED, a));
    assert_null(find_ev(f, LQ_EV_DEAD, a));
    l = lease1(f, 30001, s, "q");
    assert_int_equal(l.attempt, 2);
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, 60001, &f->ev);
    const lq_ev *dead = find_ev(f, LQ_EV_DEAD, a);
    assert_non_null(dead);
    assert_true(str_is(dead->u.dead.reason, "lease expired"));
    const lq_ev *up = find_ev(f, LQ_EV_JOB_UPDATE, a);
    assert_non_null(up);
    assert_int_equal(up->u.update.state, LQ_STATE_DEAD);
    assert_int_equal(up->u.update.attempts, 2);
    assert_null(find_ev(f, LQ_EV_REQUEUED, a));
    uint8_t st;
    assert_int_equal(lq_core_job_state(f->c, a, &st), LQ_OK);
    assert_int_equal(st, LQ_STATE_DEAD);
    assert_int_equal(lane_stats(f, "q", "default").dead, 1);
    lq_lease none;
    assert_int_equal(deq(f, 60002, s, "q", 1, &none), 0);

    /* nack at the limit: dead with the worker's error as the reason */
    uint64_t b = enq(f, 70000, "q", &(enq_opts){.max_attempts = 1});
    l = lease1(f, 70000, s, "q");
    lq_events_clear(&f->ev);
    lq_nack_opts o = {.error = lq_str_c("decoder crashed")};
    assert_int_equal(lq_core_nack(f->c, 70001, b, l.token, &o, &st, &f->ev), LQ_OK);
    assert_int_equal(st, LQ_STATE_DEAD);
    assert_true(str_is(find_ev(f, LQ_EV_DEAD, b)->u.dead.reason, "decoder crashed"));

    /* nack asking for dead-letter at once */
    uint64_t c = enq(f, 70002, "q", NULL);
    l = lease1(f, 70002, s, "q");
    o = (lq_nack_opts){.error = lq_str_c("bad image"), .dead = true};
    assert_int_equal(lq_core_nack(f->c, 70003, c, l.token, &o, &st, &f->ev), LQ_OK);
    assert_int_equal(st, LQ_STATE_DEAD);
    assert_int_equal(lane_stats(f, "q", "default").dead, 3);

    /* a session close past the limit says why */
    uint64_t d = enq(f, 70004, "q", &(enq_opts){.max_attempts = 1});
    uint32_t s2 = session(f, 70004, 0);
    lease1(f, 70004, s2, "q");
    lq_events_clear(&f->ev);
    lq_core_session_close(f->c, 70005, s2, &f->ev);
    assert_true(str_is(find_ev(f, LQ_EV_DEAD, d)->u.dead.reason, "connection closed"));
    fx_free(f);
}

/* ---- time, pending, deadlines ----------------------------------------------------------- */

static void test_delayed_jobs(void **state)
{
    fx *f = fx_new();
    uint64_t id = enq_pending(f, 1000, "q", &(enq_opts){.delay_ms = 500});
    const lq_ev *put = find_ev(f, LQ_EV_JOB_PUT, id);
    assert_non_null(put);
    assert_int_equal(put->u.put.state, LQ_STATE_DELAYED);
    assert_int_equal(put->u.put.not_before_ms, 1500);
    lq_core_commit_done(f->c, 1001, id, true, &f->ev);
    assert_int_equal(lane_stats(f, "q", "default").delayed, 1);
    uint32_t s = session(f, 1000, 0);
    assert_int_equal(lq_core_tick(f->c, 1001, &f->ev), 1500);
    lq_lease l;
    assert_int_equal(deq(f, 1499, s, "q", 1, &l), 0);
    assert_int_equal(lq_core_tick(f->c, 1499, &f->ev), 1500);
    assert_int_equal(deq(f, 1499, s, "q", 1, &l), 0);
    assert_int_equal(lq_core_tick(f->c, 1500, &f->ev), LQ_TIME_NEVER);
    assert_int_equal(lane_stats(f, "q", "default").ready, 1);
    assert_int_equal(deq(f, 1500, s, "q", 1, &l), 1);
    assert_int_equal(l.job_id, id);
    fx_free(f);
}

static void test_pending_until_durable(void **state)
{
    fx *f = fx_new();
    uint64_t a = enq_pending(f, 1, "q", NULL);
    uint64_t b = enq_pending(f, 1, "q", NULL);
    const lq_ev *put = find_ev(f, LQ_EV_JOB_PUT, a);
    assert_non_null(put);
    assert_int_equal(put->u.put.state, LQ_STATE_READY);
    assert_true(str_is(put->u.put.queue, "q") && str_is(put->u.put.lane, "default"));
    assert_int_equal(put->u.put.payload_len, 100);
    uint8_t st;
    assert_int_equal(lq_core_job_state(f->c, a, &st), LQ_OK);
    assert_int_equal(st, LQ_STATE_PENDING);
    assert_int_equal(lane_stats(f, "q", "default").pending, 2);
    uint32_t s = session(f, 1, 0);
    lq_lease l;
    lq_core_tick(f->c, 2, &f->ev);
    assert_int_equal(deq(f, 2, s, "q", 1, &l), 0);
    lq_core_commit_done(f->c, 3, a, false, &f->ev);
    assert_int_equal(lq_core_job_state(f->c, a, &st), LQ_E_NOT_FOUND);
    assert_int_equal(lane_stats(f, "q", "default").pending, 1);
    lq_core_commit_done(f->c, 3, b, true, &f->ev);
    lq_core_commit_done(f->c, 3, b, true, &f->ev); /* a repeat is ignored */
    lq_core_check(f->c);
    assert_int_equal(lane_stats(f, "q", "default").pending, 0);
    assert_int_equal(deq(f, 4, s, "q", 1, &l), 1);
    assert_int_equal(l.job_id, b);
    /* the forgotten id was issued: acking it is LEASE_LOST, not NOT_FOUND */
    assert_int_equal(lq_core_ack(f->c, 5, a, 1, &f->ev), LQ_E_LEASE_LOST);
    fx_free(f);
}

static void test_deadline_never_leased(void **state)
{
    fx *f = fx_new();
    uint64_t a = enq(f, 0, "q", &(enq_opts){.deadline_ms = 100});
    uint64_t b = enq(f, 0, "q", NULL);
    uint64_t c = enq(f, 0, "q", &(enq_opts){.deadline_ms = 100});
    uint32_t s = session(f, 0, 0);
    lq_events_clear(&f->ev);
    lq_lease out[3];
    assert_int_equal(deq(f, 100, s, "q", 3, out), 1);
    assert_int_equal(out[0].job_id, b);
    const lq_ev *da = find_ev(f, LQ_EV_JOB_DELETE, a), *dc = find_ev(f, LQ_EV_JOB_DELETE, c);
    assert_non_null(da);
    assert_non_null(dc);
    assert_int_equal(da->u.del.final_state, LQ_STATE_EXPIRED);
    assert_int_equal(dc->u.del.final_state, LQ_STATE_EXPIRED);
    uint8_t st;
    assert_int_equal(lq_core_job_state(f->c, a, &st), LQ_E_NOT_FOUND);
    /* before the deadline it is leased normally */
    uint64_t d = enq(f, 200, "q", &(enq_opts){.deadline_ms = 100});
    assert_int_equal(lease1(f, 299, s, "q").job_id, d);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_stale_tokens),
        cmocka_unit_test(test_tokens_distinct),
        cmocka_unit_test(test_extend),
        cmocka_unit_test(test_backoff_grows_and_caps),
        cmocka_unit_test(test_delivery_limit_dead),
        cmocka_unit_test(test_delayed_jobs),
        cmocka_unit_test(test_pending_until_durable),
        cmocka_unit_test(test_deadline_never_leased),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
