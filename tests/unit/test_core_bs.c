/* Unit tests of the core's beanstalk additions (core.h, "beanstalk compatibility"): first job
 * by state, release with a priority, bury and kick, delete and lease of a job by id, urgent
 * counts. Explicit times, events checked, lq_core_check after every test. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

typedef struct {
    lq_core *c;
    lq_events ev;
    uint32_t session;
} fx;

static int setup(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.seed = 9;
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(lq_core_create(&cfg, &f->c), LQ_OK);
    lq_events_init(&f->ev);
    lq_session_opts so = {0};
    assert_int_equal(lq_core_session_open(f->c, 0, &so, &f->session), LQ_OK);
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    fx *f = *state;
    lq_core_check(f->c);
    lq_core_destroy(f->c);
    lq_events_free(&f->ev);
    free(f);
    return 0;
}

static uint64_t put(fx *f, uint64_t now, const char *q, int64_t pri, uint64_t delay_ms)
{
    lq_enqueue_req r = {.queue = lq_str_c(q), .priority = pri, .delay_ms = delay_ms, .max_attempts = LQ_MAX_ATTEMPTS_MAX};
    uint64_t id = 0;
    assert_int_equal(lq_core_enqueue(f->c, now, &r, &id, &f->ev), LQ_OK);
    lq_core_commit_done(f->c, now, id, true, &f->ev);
    lq_events_clear(&f->ev);
    return id;
}

static lq_lease take(fx *f, uint64_t now, const char *q)
{
    lq_str qs = lq_str_c(q);
    lq_dequeue_req dr = {.queues = &qs, .n_queues = 1, .max_jobs = 1, .session = f->session};
    lq_lease l;
    uint32_t n = 0;
    bool parked = false;
    assert_int_equal(lq_core_dequeue(f->c, now, &dr, &l, &n, &parked, &f->ev), LQ_OK);
    assert_int_equal(n, 1);
    lq_events_clear(&f->ev);
    return l;
}

static uint64_t first(fx *f, const char *q, uint8_t st)
{
    uint64_t id = 0;
    if (lq_core_bs_first(f->c, lq_str_c(q), st, &id) != LQ_OK)
        return 0;
    return id;
}

static uint8_t state_of(fx *f, uint64_t id)
{
    lq_bs_job j;
    assert_int_equal(lq_core_bs_job(f->c, id, &j), LQ_OK);
    return j.state;
}

static void test_first_ready_by_priority_then_id(void **state)
{
    fx *f = *state;
    uint64_t a = put(f, 0, "t", 10, 0);
    uint64_t b = put(f, 0, "t", 1, 0);
    uint64_t c = put(f, 0, "t", 1, 0);
    (void)a;
    (void)c;
    assert_int_equal(first(f, "t", LQ_STATE_READY), b);
    assert_int_equal(first(f, "nope", LQ_STATE_READY), 0);
    assert_int_equal(lq_core_bs_count_ready_below(f->c, lq_str_c("t"), 5), 2);
    assert_int_equal(lq_core_bs_count_ready_below(f->c, LQ_STR_NULL, 1024), 3);
    lq_core_check(f->c);
}

static void test_release_with_priority_and_delay(void **state)
{
    fx *f = *state;
    uint64_t a = put(f, 0, "t", 5, 0);
    uint64_t b = put(f, 0, "t", 6, 0);
    lq_lease l = take(f, 10, "t");
    assert_int_equal(l.job_id, a);
    /* released behind b by its new priority */
    assert_int_equal(lq_core_bs_release(f->c, 20, a, l.token, 9, 0, &f->ev), LQ_OK);
    assert_int_equal(f->ev.v[0].type, LQ_EV_JOB_UPDATE);
    assert_int_equal(f->ev.v[0].u.update.state, LQ_STATE_READY);
    lq_events_clear(&f->ev);
    assert_int_equal(first(f, "t", LQ_STATE_READY), b);
    /* a stale token is refused */
    assert_int_equal(lq_core_bs_release(f->c, 20, a, l.token, 0, 0, &f->ev), LQ_E_LEASE_LOST);
    l = take(f, 30, "t");
    assert_int_equal(l.job_id, b);
    assert_int_equal(lq_core_bs_release(f->c, 30, b, l.token, 0, 500, &f->ev), LQ_OK);
    lq_events_clear(&f->ev);
    assert_int_equal(state_of(f, b), LQ_STATE_DELAYED);
    assert_int_equal(first(f, "t", LQ_STATE_DELAYED), b);
    lq_core_tick(f->c, 530, &f->ev);
    lq_events_clear(&f->ev);
    assert_int_equal(first(f, "t", LQ_STATE_READY), b);
    lq_core_check(f->c);
}

static void test_bury_kick_fifo(void **state)
{
    fx *f = *state;
    uint64_t a = put(f, 0, "t", 0, 0);
    uint64_t b = put(f, 0, "t", 0, 0);
    lq_lease la = take(f, 1, "t");
    lq_lease lb = take(f, 1, "t");
    /* buried b first, then a: peek-buried order is the bury order */
    assert_int_equal(lq_core_bs_bury(f->c, 2, b, lb.token, 7, &f->ev), LQ_OK);
    assert_int_equal(lq_core_bs_bury(f->c, 2, a, la.token, 7, &f->ev), LQ_OK);
    size_t dead = 0;
    for (size_t i = 0; i < f->ev.n; i++)
        dead += f->ev.v[i].type == LQ_EV_DEAD && lq_str_eq(f->ev.v[i].u.dead.reason, lq_str_c("buried"));
    assert_int_equal(dead, 2);
    lq_events_clear(&f->ev);
    assert_int_equal(first(f, "t", LQ_STATE_DEAD), b);
    assert_int_equal(lq_core_bs_kick(f->c, 3, b, &f->ev), LQ_OK);
    assert_int_equal(f->ev.v[0].u.update.state, LQ_STATE_READY);
    lq_events_clear(&f->ev);
    assert_int_equal(state_of(f, b), LQ_STATE_READY);
    assert_int_equal(first(f, "t", LQ_STATE_DEAD), a);
    assert_int_equal(lq_core_bs_kick(f->c, 3, b, &f->ev), LQ_E_NOT_FOUND); /* ready: nothing to kick */
    uint64_t d = put(f, 3, "t", 0, 1000);
    assert_int_equal(lq_core_bs_kick(f->c, 4, d, &f->ev), LQ_OK);
    lq_events_clear(&f->ev);
    assert_int_equal(state_of(f, d), LQ_STATE_READY);
    lq_core_check(f->c);
}

static void test_delete_and_lease_by_id(void **state)
{
    fx *f = *state;
    uint64_t a = put(f, 0, "t", 0, 0);
    uint64_t b = put(f, 0, "t", 0, 0);
    uint64_t d = put(f, 0, "t", 0, 5000);
    assert_int_equal(lq_core_bs_delete(f->c, 1, a, &f->ev), LQ_OK);
    assert_int_equal(f->ev.v[0].type, LQ_EV_JOB_DELETE);
    assert_int_equal(f->ev.v[0].u.del.final_state, LQ_STATE_DONE);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_bs_delete(f->c, 1, a, &f->ev), LQ_E_NOT_FOUND);
    assert_int_equal(lq_core_bs_delete(f->c, 1, d, &f->ev), LQ_OK);
    lq_events_clear(&f->ev);
    lq_lease l;
    assert_int_equal(lq_core_bs_lease(f->c, 2, b, f->session, 3000, &l, &f->ev), LQ_OK);
    assert_int_equal(l.job_id, b);
    assert_int_equal(l.expires_ms, 3002);
    assert_int_equal(state_of(f, b), LQ_STATE_LEASED);
    assert_int_equal(lq_core_bs_lease(f->c, 2, b, f->session, 3000, &l, &f->ev), LQ_E_NOT_FOUND);
    assert_int_equal(lq_core_bs_delete(f->c, 2, b, &f->ev), LQ_E_NOT_FOUND); /* leased: ack it */
    assert_int_equal(lq_core_ack(f->c, 3, b, l.token, &f->ev), LQ_OK);
    lq_events_clear(&f->ev);
    assert_int_equal(first(f, "t", LQ_STATE_READY), 0);
    lq_core_check(f->c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_first_ready_by_priority_then_id, setup, teardown),
        cmocka_unit_test_setup_teardown(test_release_with_priority_and_delay, setup, teardown),
        cmocka_unit_test_setup_teardown(test_bury_kick_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_delete_and_lease_by_id, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
