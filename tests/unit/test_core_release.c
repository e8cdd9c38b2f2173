/* Unit tests of lq_core_release (undoing a grant) and keep_leases_on_close sessions (leases
 * that outlive their connection and expire by lease time). Like test_core.c, every test drives
 * the core with explicit times, checks the events it emits, and runs lq_core_check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

typedef struct {
    lq_core *c;
    lq_events ev;
} fx;

static fx *fx_new(void)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.seed = 7;
    cfg.default_lease_ms = 1000;
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(lq_core_create(&cfg, &f->c), LQ_OK);
    lq_events_init(&f->ev);
    return f;
}

static void fx_free(fx *f)
{
    lq_core_check(f->c);
    lq_core_destroy(f->c);
    lq_events_free(&f->ev);
    free(f);
}

static size_t count_ev(const fx *f, lq_ev_type t)
{
    size_t n = 0;
    for (size_t i = 0; i < f->ev.n; i++)
        n += f->ev.v[i].type == t;
    return n;
}

/* A durable READY job in queue q. */
static uint64_t put(fx *f, uint64_t now, const char *q)
{
    lq_enqueue_req r = {.queue = lq_str_c(q)};
    uint64_t id = 0;
    assert_int_equal(lq_core_enqueue(f->c, now, &r, &id, &f->ev), LQ_OK);
    lq_core_commit_done(f->c, now, id, true, &f->ev);
    lq_events_clear(&f->ev);
    return id;
}

static uint32_t open_session(fx *f, uint64_t now, const char *worker, uint32_t hb, bool keep)
{
    lq_session_opts o = {.worker_id = lq_str_c(worker), .heartbeat_ms = hb, .keep_leases_on_close = keep};
    uint32_t s = 0;
    assert_int_equal(lq_core_session_open(f->c, now, &o, &s), LQ_OK);
    return s;
}

static uint32_t take(fx *f, uint64_t now, uint32_t session, const char *q, uint32_t max, uint32_t lease_ms,
                     lq_lease *out)
{
    lq_str qs = lq_str_c(q);
    lq_dequeue_req r = {.queues = &qs, .n_queues = 1, .max_jobs = max, .lease_ms = lease_ms, .session = session};
    uint32_t n = 0;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, NULL, &f->ev), LQ_OK);
    lq_core_check(f->c);
    return n;
}

static uint8_t state_of(fx *f, uint64_t id)
{
    uint8_t st = 0;
    assert_int_equal(lq_core_job_state(f->c, id, &st), LQ_OK);
    return st;
}

/* ---- release ------------------------------------------------------------------------------ */

static void test_release_undoes_grant(void **state)
{
    (void)state;
    fx *f = fx_new();
    uint64_t a = put(f, 0, "q"), b = put(f, 0, "q");
    uint32_t s = open_session(f, 0, "w", 0, false);
    lq_lease l[2];
    assert_int_equal(take(f, 10, s, "q", 2, 0, l), 2);
    assert_int_equal(l[0].job_id, a);
    assert_int_equal(l[0].attempt, 1);
    lq_events_clear(&f->ev);

    /* no store event, no requeue event: nothing stored changed */
    assert_int_equal(lq_core_release(f->c, 20, a, l[0].token, &f->ev), LQ_OK);
    assert_int_equal(f->ev.n, 0);
    assert_int_equal(state_of(f, a), LQ_STATE_READY);
    lq_core_check(f->c);
    /* the old token is dead, and a second release is refused */
    assert_int_equal(lq_core_ack(f->c, 21, a, l[0].token, &f->ev), LQ_E_LEASE_LOST);
    assert_int_equal(lq_core_release(f->c, 21, a, l[0].token, &f->ev), LQ_E_LEASE_LOST);
    assert_int_equal(lq_core_release(f->c, 21, 999, 1, &f->ev), LQ_E_NOT_FOUND);

    /* front of the line, attempt not counted: the next grant is attempt 1 again */
    uint64_t c = put(f, 30, "q");
    lq_lease m[2];
    assert_int_equal(take(f, 40, s, "q", 2, 0, m), 2);
    assert_int_equal(m[0].job_id, a);
    assert_int_equal(m[0].attempt, 1);
    assert_int_equal(m[1].job_id, c);
    assert_int_not_equal(m[0].token, l[0].token);
    /* the lease of b was untouched */
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_ack(f->c, 50, b, l[1].token, &f->ev), LQ_OK);
    fx_free(f);
}

static void test_release_no_expiry_and_max_attempts(void **state)
{
    (void)state;
    fx *f = fx_new();
    lq_enqueue_req r = {.queue = lq_str_c("q"), .max_attempts = 1};
    uint64_t id = 0;
    assert_int_equal(lq_core_enqueue(f->c, 0, &r, &id, &f->ev), LQ_OK);
    lq_core_commit_done(f->c, 0, id, true, &f->ev);
    uint32_t s = open_session(f, 0, "", 0, false);
    /* released over and over: with max_attempts 1 it would be dead after one counted delivery */
    for (int i = 0; i < 5; i++) {
        lq_lease l;
        assert_int_equal(take(f, 10 + (uint64_t)i, s, "q", 1, 100, &l), 1);
        assert_int_equal(l.attempt, 1);
        assert_int_equal(lq_core_release(f->c, 10 + (uint64_t)i, id, l.token, &f->ev), LQ_OK);
    }
    lq_events_clear(&f->ev);
    /* the released lease left the expiry heap: nothing expires later */
    lq_core_tick(f->c, 100000, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED) + count_ev(f, LQ_EV_DEAD), 0);
    assert_int_equal(state_of(f, id), LQ_STATE_READY);
    fx_free(f);
}

static void test_release_serves_parked(void **state)
{
    (void)state;
    fx *f = fx_new();
    uint64_t id = put(f, 0, "q");
    uint32_t s1 = open_session(f, 0, "", 0, false), s2 = open_session(f, 0, "", 0, false);
    lq_lease l;
    assert_int_equal(take(f, 1, s1, "q", 1, 0, &l), 1);
    lq_str qs = lq_str_c("q");
    lq_dequeue_req r = {.queues = &qs, .n_queues = 1, .max_jobs = 1, .wait_ms = 5000, .session = s2, .waiter = 77};
    uint32_t n = 0;
    bool parked = false;
    lq_lease out;
    assert_int_equal(lq_core_dequeue(f->c, 2, &r, &out, &n, &parked, &f->ev), LQ_OK);
    assert_true(parked);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_release(f->c, 3, id, l.token, &f->ev), LQ_OK);
    lq_core_tick(f->c, 3, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 1);
    assert_int_equal(f->ev.v[0].u.lease.waiter, 77);
    assert_int_equal(f->ev.v[0].u.lease.lease.attempt, 1);
    fx_free(f);
}

/* ---- keep_leases_on_close ----------------------------------------------------------------- */

static void count_session(void *ctx, const lq_session_info *s)
{
    (void)s;
    (*(uint32_t *)ctx)++;
}


static void test_keep_leases_survive_close(void **state)
{
    (void)state;
    fx *f = fx_new();
    uint64_t a = put(f, 0, "q"), b = put(f, 0, "q");
    uint32_t s = open_session(f, 0, "cli", 0, true);
    lq_lease l[2];
    assert_int_equal(take(f, 10, s, "q", 2, 5000, l), 2);
    lq_events_clear(&f->ev);
    lq_core_session_close(f->c, 20, s, &f->ev);
    assert_int_equal(f->ev.n, 0); /* nothing requeued, no loss */
    lq_core_check(f->c);
    assert_int_equal(state_of(f, a), LQ_STATE_LEASED);

    /* the detached holder is nobody's session: not listed, not usable */
    uint32_t n_sessions = 0;
    lq_core_sessions(f->c, 20, count_session, &n_sessions);
    assert_int_equal(n_sessions, 0);
    uint32_t held = 0;
    assert_int_equal(lq_core_heartbeat(f->c, 20, s, &held), LQ_E_NOT_FOUND);

    /* another connection acks with the same token */
    uint32_t s2 = open_session(f, 30, "", 0, false);
    (void)s2;
    assert_int_equal(lq_core_ack(f->c, 30, a, l[0].token, &f->ev), LQ_OK);
    /* b expires by its lease time (granted at 10 for 5000 ms) and is requeued then */
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, 5009, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 0);
    assert_int_equal(state_of(f, b), LQ_STATE_LEASED);
    lq_core_tick(f->c, 5010, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 1);
    assert_int_equal(state_of(f, b), LQ_STATE_READY);
    assert_int_equal(lq_core_ack(f->c, 5011, b, l[1].token, &f->ev), LQ_E_LEASE_LOST);
    fx_free(f);
}

static void test_keep_leases_sessions_and_limits(void **state)
{
    (void)state;
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.max_sessions = 2;
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(lq_core_create(&cfg, &f->c), LQ_OK);
    lq_events_init(&f->ev);
    put(f, 0, "q");
    uint32_t s1 = open_session(f, 0, "", 0, true);
    uint32_t s2 = open_session(f, 0, "", 0, false);
    lq_lease l;
    assert_int_equal(take(f, 1, s1, "q", 1, 0, &l), 1);
    /* at the session limit, closing s1 still detaches (the holder takes no caller's place) */
    lq_core_session_close(f->c, 2, s1, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 0);
    uint32_t n = 0;
    lq_core_sessions(f->c, 2, count_session, &n);
    assert_int_equal(n, 1);
    /* and two callers fit again */
    uint32_t s3 = open_session(f, 3, "", 0, false);
    lq_session_opts o = {0};
    uint32_t s4 = 0;
    assert_int_equal(lq_core_session_open(f->c, 3, &o, &s4), LQ_E_LIMIT);
    /* a guessed session id of the holder is refused */
    for (uint32_t id = 1; id <= 4; id++) {
        if (id == s2 || id == s3)
            continue;
        uint32_t held;
        assert_int_equal(lq_core_heartbeat(f->c, 3, id, &held), LQ_E_NOT_FOUND);
    }
    assert_int_equal(lq_core_ack(f->c, 4, l.job_id, l.token, &f->ev), LQ_OK);
    fx_free(f);
}

static void test_keep_leases_heartbeat_session(void **state)
{
    (void)state;
    fx *f = fx_new(); /* default lease 1000 */
    uint64_t a = put(f, 0, "q");
    uint32_t s = open_session(f, 0, "w", 100, true);
    lq_lease l;
    assert_int_equal(take(f, 0, s, "q", 1, 200, &l), 1);
    /* heartbeats keep it well past its 200 ms lease */
    uint32_t held = 0;
    for (uint64_t t = 50; t <= 900; t += 50) {
        assert_int_equal(lq_core_heartbeat(f->c, t, s, &held), LQ_OK);
        lq_core_tick(f->c, t, &f->ev);
    }
    assert_int_equal(held, 1);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 0);
    lq_core_session_close(f->c, 900, s, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 0);
    lq_core_check(f->c);
    /* on its own now: at least a default lease time from the close */
    lq_core_tick(f->c, 1899, &f->ev);
    assert_int_equal(state_of(f, a), LQ_STATE_LEASED);
    lq_core_tick(f->c, 1900, &f->ev);
    assert_int_equal(state_of(f, a), LQ_STATE_READY);
    /* an expiry of a detached lease is no loss of a worker: "w" is not suspect */
    fx_free(f);
}

static void test_plain_close_requeues(void **state)
{
    (void)state;
    fx *f = fx_new();
    uint64_t a = put(f, 0, "q");
    uint32_t s = open_session(f, 0, "", 0, false);
    lq_lease l;
    assert_int_equal(take(f, 1, s, "q", 1, 0, &l), 1);
    lq_core_session_close(f->c, 2, s, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 1);
    assert_int_equal(state_of(f, a), LQ_STATE_READY);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_release_undoes_grant),
        cmocka_unit_test(test_release_no_expiry_and_max_attempts),
        cmocka_unit_test(test_release_serves_parked),
        cmocka_unit_test(test_keep_leases_survive_close),
        cmocka_unit_test(test_keep_leases_sessions_and_limits),
        cmocka_unit_test(test_keep_leases_heartbeat_session),
        cmocka_unit_test(test_plain_close_requeues),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
