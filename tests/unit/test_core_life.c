/* Unit tests of the core's job lifecycle features (broker/core): worker quarantine after
 * repeated lease losses, producers waiting for a job's terminal state, and idempotency keys.
 * Like test_core.c, every test drives the core with explicit times, checks the events it
 * emits, and runs lq_core_check on the way. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

/* ---- helpers ---------------------------------------------------------------------------- */

typedef struct {
    lq_core *c;
    lq_events ev;
} fx;

static fx *fx_new_cfg(const lq_core_config *cfg)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(lq_core_create(cfg, &f->c), LQ_OK);
    lq_events_init(&f->ev);
    return f;
}

static fx *fx_new(void)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.seed = 42;
    return fx_new_cfg(&cfg);
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

/* Index of the first event of type t (for job_id, 0 = any), or -1. */
static long ev_index(const fx *f, lq_ev_type t, uint64_t job_id)
{
    for (size_t i = 0; i < f->ev.n; i++)
        if (f->ev.v[i].type == t && (job_id == 0 || f->ev.v[i].job_id == job_id))
            return (long)i;
    return -1;
}

static const lq_ev *find_ev(const fx *f, lq_ev_type t, uint64_t job_id)
{
    long i = ev_index(f, t, job_id);
    return i < 0 ? NULL : &f->ev.v[i];
}

/* The JOB_WAIT_DONE of waiter, or NULL. */
static const lq_ev *wait_done(const fx *f, uint64_t waiter)
{
    for (size_t i = 0; i < f->ev.n; i++)
        if (f->ev.v[i].type == LQ_EV_JOB_WAIT_DONE && f->ev.v[i].u.wait_done.waiter == waiter)
            return &f->ev.v[i];
    return NULL;
}

static bool str_is(lq_str s, const char *c) { return lq_str_eq(s, lq_str_c(c)); }

typedef struct {
    uint64_t deadline_ms;
    uint32_t max_attempts;
    const char *key;
} enq_opts;

static uint64_t enq_pending(fx *f, uint64_t now, const char *queue, const enq_opts *o, bool *dup)
{
    lq_enqueue_req r = {.queue = lq_str_c(queue), .payload_len = 10};
    if (o) {
        r.deadline_ms = o->deadline_ms;
        r.max_attempts = o->max_attempts;
        r.idem_key = lq_str_c(o->key);
    }
    uint64_t id = 0;
    bool d = true;
    assert_int_equal(lq_core_enqueue_ex(f->c, now, &r, &id, &d, &f->ev), LQ_OK);
    assert_true(id > 0);
    if (dup)
        *dup = d;
    else
        assert_false(d);
    return id;
}

static uint64_t enq(fx *f, uint64_t now, const char *queue, const enq_opts *o)
{
    uint64_t id = enq_pending(f, now, queue, o, NULL);
    lq_core_commit_done(f->c, now, id, true, &f->ev);
    return id;
}

static uint32_t worker(fx *f, uint64_t now, const char *id, uint32_t heartbeat_ms)
{
    lq_session_opts o = {.worker_id = lq_str_c(id), .heartbeat_ms = heartbeat_ms};
    uint32_t s = 0;
    assert_int_equal(lq_core_session_open(f->c, now, &o, &s), LQ_OK);
    return s;
}

/* Dequeues up to one job from "q" (0 or 1 returned); with wait_ms it may park. */
static uint32_t deq(fx *f, uint64_t now, uint32_t s, uint32_t lease_ms, uint32_t wait_ms, uint64_t waiter,
                    lq_lease *out, bool *parked)
{
    lq_str q = lq_str_c("q");
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .max_jobs = 1, .lease_ms = lease_ms, .wait_ms = wait_ms,
                        .session = s, .waiter = waiter};
    uint32_t n = 99;
    bool p = true;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, &p, &f->ev), LQ_OK);
    if (parked)
        *parked = p;
    else
        assert_false(p);
    return n;
}

static lq_lease lease1(fx *f, uint64_t now, uint32_t s)
{
    lq_lease l;
    assert_int_equal(deq(f, now, s, 0, 0, 0, &l, NULL), 1);
    return l;
}

static void wait_parked(fx *f, uint64_t now, uint64_t job, uint64_t waiter, uint32_t timeout_ms)
{
    bool parked = false;
    uint8_t st = 0;
    assert_int_equal(lq_core_wait_job(f->c, now, job, waiter, timeout_ms, &parked, &st), LQ_OK);
    assert_true(parked);
}

typedef struct {
    lq_session_info s[8];
    int n;
} sess_acc;

static void sess_cb(void *ctx, const lq_session_info *s)
{
    sess_acc *a = ctx;
    assert_true(a->n < 8);
    a->s[a->n++] = *s;
}

static lq_session_info sess_info(fx *f, uint64_t now, uint32_t session)
{
    sess_acc a = {0};
    lq_core_sessions(f->c, now, sess_cb, &a);
    for (int i = 0; i < a.n; i++)
        if (a.s[i].session == session)
            return a.s[i];
    fail_msg("no session %u", session);
    return a.s[0];
}

/* ---- worker health ---------------------------------------------------------------------- */

/* The incident: a GPU worker freezes with a job, restarts under the same id, takes the next job
 * and freezes again. Each stall requeues its jobs at once; the third one within the window
 * quarantines it, and the jobs go to a healthy worker. */
static void test_quarantine_after_stalls(void **state)
{
    fx *f = fx_new();
    uint64_t now = 1000;
    uint32_t other = worker(f, now, "gpu-8", 0);
    uint32_t s_old = worker(f, now, "gpu-7", 0); /* a second connection of gpu-7, no heartbeats */
    for (int round = 0; round < 3; round++) {
        uint32_t s = worker(f, now, "gpu-7", 1000);
        uint64_t id = enq(f, now, "q", NULL);
        assert_int_equal(lease1(f, now, s).job_id, id);
        if (round == 1) {
            enq(f, now, "q", NULL);
            lq_lease l = {0};
            assert_int_equal(deq(f, now, s_old, 500000, 0, 0, &l, NULL), 1); /* expires later */
        }
        lq_events_clear(&f->ev);
        now += 3000; /* gpu-7 is frozen: 3 missed heartbeats */
        lq_core_tick(f->c, now, &f->ev);
        const lq_ev *st = find_ev(f, LQ_EV_SESSION_STALLED, 0);
        assert_non_null(st);
        assert_int_equal(st->u.stalled.session, s);
        assert_non_null(find_ev(f, LQ_EV_REQUEUED, id));
        const lq_ev *sus = find_ev(f, LQ_EV_WORKER_SUSPECT, 0);
        lq_session_info info = sess_info(f, now, s);
        assert_true(str_is(info.worker_id, "gpu-7"));
        assert_true(info.stalled);
        assert_int_equal(info.recent_losses, round + 1);
        if (round < 2) {
            assert_null(sus);
            assert_false(info.suspect);
            lq_core_session_close(f->c, now, s, &f->ev); /* the process is restarted */
            /* the healthy worker takes the requeued job */
            lq_lease l = lease1(f, now, other);
            assert_int_equal(l.job_id, id);
            assert_int_equal(lq_core_ack(f->c, now, l.job_id, l.token, &f->ev), LQ_OK);
        } else {
            assert_non_null(sus);
            assert_true(str_is(sus->u.suspect.worker_id, "gpu-7"));
            assert_int_equal(sus->u.suspect.losses, 3);
            assert_true(info.suspect);
            assert_int_equal(info.suspect_until_ms, 4000 + 600000); /* first loss + window */
            /* the suspect worker speaks again but gets nothing, the other one gets the job */
            lq_lease l;
            assert_int_equal(deq(f, now, s, 0, 0, 0, &l, NULL), 0);
            assert_int_equal(deq(f, now, s_old, 0, 0, 0, &l, NULL), 0);
            uint32_t s_new = worker(f, now, "gpu-7", 1000);
            assert_int_equal(deq(f, now, s_new, 0, 0, 0, &l, NULL), 0);
            assert_true(sess_info(f, now, s_new).suspect);
            l = lease1(f, now, other);
            assert_int_equal(l.job_id, id);
            assert_int_equal(lq_core_ack(f->c, now, l.job_id, l.token, &f->ev), LQ_OK);
        }
        lq_core_check(f->c);
    }
    /* a further loss while suspect (s_old's lease expires): no second WORKER_SUSPECT, and the
     * quarantine now runs from the oldest loss still in the window */
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, 504000, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 1);
    assert_int_equal(count_ev(f, LQ_EV_WORKER_SUSPECT), 0);
    lq_session_info info = sess_info(f, 504000, s_old);
    assert_true(info.suspect);
    assert_int_equal(info.recent_losses, 3);
    assert_int_equal(info.suspect_until_ms, 7000 + 600000);
    fx_free(f);
}

/* A parked dequeue of a suspect worker is not served; it times out empty. */
static void test_suspect_parked_not_served(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.quarantine_losses = 2;
    fx *f = fx_new_cfg(&cfg);
    uint32_t s = worker(f, 0, "gpu-1", 0);
    for (int i = 0; i < 2; i++) {
        enq(f, 0, "q", NULL);
        lq_lease l;
        assert_int_equal(deq(f, 0, s, 100, 0, 0, &l, NULL), 1);
    }
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, 100, &f->ev); /* both leases expire: two losses */
    assert_int_equal(count_ev(f, LQ_EV_REQUEUED), 2);
    assert_int_equal(count_ev(f, LQ_EV_WORKER_SUSPECT), 1);
    assert_int_equal(sess_info(f, 100, s).recent_losses, 2);
    /* the jobs are ready, but the suspect worker's parked dequeue gets none of them */
    bool parked = false;
    lq_lease l;
    assert_int_equal(deq(f, 200, s, 0, 5000, 77, &l, &parked), 0);
    assert_true(parked);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 200, &f->ev), 5200);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 0);
    enq(f, 300, "q", NULL); /* new work does not wake it either */
    lq_core_tick(f->c, 300, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 0);
    lq_core_tick(f->c, 5200, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 0);
    assert_int_equal(count_ev(f, LQ_EV_WAITER_DONE), 1);
    /* a session without a worker id is never quarantined */
    uint32_t anon = worker(f, 5200, "", 0);
    for (int i = 0; i < 3; i++) {
        assert_int_equal(deq(f, 5200 + i * 100, anon, 100, 0, 0, &l, NULL), 1);
        lq_core_tick(f->c, 5300 + i * 100, &f->ev);
    }
    assert_int_equal(deq(f, 5600, anon, 100, 0, 0, &l, NULL), 1);
    lq_session_info info = sess_info(f, 5600, anon);
    assert_int_equal(info.worker_id.len, 0);
    assert_false(info.suspect);
    fx_free(f);
}

static void test_clear_suspect(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.quarantine_losses = 1;
    fx *f = fx_new_cfg(&cfg);
    uint32_t s = worker(f, 0, "gpu-2", 0);
    enq(f, 0, "q", NULL);
    lq_lease l = lease1(f, 0, s);
    lq_events_clear(&f->ev);
    lq_core_session_close(f->c, 10, s, &f->ev); /* closed holding a lease: one loss */
    assert_int_equal(count_ev(f, LQ_EV_WORKER_SUSPECT), 1);
    /* the id is remembered while it has no session; a new connection is suspect at once */
    s = worker(f, 20, "gpu-2", 0);
    assert_true(sess_info(f, 20, s).suspect);
    bool parked = false;
    assert_int_equal(deq(f, 20, s, 0, 10000, 5, &l, &parked), 0);
    assert_true(parked);
    assert_int_equal(lq_core_clear_suspect(f->c, 30, lq_str_c("nobody")), LQ_E_NOT_FOUND);
    assert_int_equal(lq_core_clear_suspect(f->c, 30, lq_str_c("")), LQ_E_NOT_FOUND);
    assert_int_equal(lq_core_clear_suspect(f->c, 30, lq_str_c("gpu-2")), LQ_OK);
    lq_session_info info = sess_info(f, 30, s);
    assert_false(info.suspect);
    assert_int_equal(info.recent_losses, 0);
    assert_int_equal(info.suspect_until_ms, 0);
    /* its parked dequeue is served at the next tick */
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, 30, &f->ev);
    const lq_ev *le = find_ev(f, LQ_EV_LEASE, 0);
    assert_non_null(le);
    assert_int_equal(le->u.lease.waiter, 5);
    assert_int_equal(count_ev(f, LQ_EV_WAITER_DONE), 1);
    lq_core_check(f->c);
    fx_free(f);
}

static void test_quarantine_window_lifts(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.quarantine_window_ms = 10000;
    fx *f = fx_new_cfg(&cfg);
    uint32_t s = worker(f, 0, "gpu-3", 0);
    /* losses at 1000, 3000, 5000: two are not enough, the third within 10 s is */
    for (uint64_t t = 0; t < 3; t++) {
        enq(f, t * 2000, "q", NULL);
        lq_lease l;
        assert_int_equal(deq(f, t * 2000, s, 1000, 0, 0, &l, NULL), 1);
        lq_events_clear(&f->ev);
        lq_core_tick(f->c, t * 2000 + 1000, &f->ev);
        assert_int_equal(count_ev(f, LQ_EV_WORKER_SUSPECT), t == 2);
    }
    /* losses spread wider than the window would not have counted: checked by recent_losses */
    lq_session_info info = sess_info(f, 5000, s);
    assert_true(info.suspect);
    assert_int_equal(info.suspect_until_ms, 11000);
    assert_int_equal(sess_info(f, 11500, s).recent_losses, 2);
    bool parked = false;
    lq_lease l;
    assert_int_equal(deq(f, 6000, s, 1000, 20000, 9, &l, &parked), 0);
    assert_true(parked);
    lq_events_clear(&f->ev);
    /* the lift is a deadline of tick; at it the parked dequeue gets a requeued job */
    assert_int_equal(lq_core_tick(f->c, 6000, &f->ev), 11000);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 0);
    assert_int_equal(lq_core_tick(f->c, 10999, &f->ev), 11000);
    assert_int_equal(count_ev(f, LQ_EV_LEASE), 0);
    lq_core_tick(f->c, 11000, &f->ev);
    const lq_ev *le = find_ev(f, LQ_EV_LEASE, 0);
    assert_non_null(le);
    assert_int_equal(le->u.lease.waiter, 9);
    assert_int_equal(le->u.lease.lease.job_id, 1); /* the job it lost three times, at the front */
    assert_int_equal(le->u.lease.lease.attempt, 4);
    info = sess_info(f, 11000, s);
    assert_false(info.suspect);
    assert_int_equal(info.recent_losses, 2);
    /* one more loss: again three within the window */
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, le->u.lease.lease.expires_ms, &f->ev);
    assert_int_equal(count_ev(f, LQ_EV_WORKER_SUSPECT), 1);
    fx_free(f);
}

/* The table of worker ids is bounded: past max_sessions + LQ_WORKERS_OFFLINE_MAX ids, offline
 * ones are evicted, the quietest (then the longest quiet) first. */
static void test_worker_table_bounded(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.max_sessions = 1;
    cfg.quarantine_losses = 1; /* every close with a lease quarantines: nobody is forgotten early */
    fx *f = fx_new_cfg(&cfg);
    enum { N = 65536 + 1 + 3 };
    char name[32];
    for (uint32_t i = 0; i < N; i++) {
        /* a fresh job each time: one job would be dead-lettered after LQ_MAX_ATTEMPTS_MAX losses */
        uint64_t id = enq(f, i, "q", &(enq_opts){.max_attempts = 1});
        snprintf(name, sizeof name, "w%u", i);
        uint32_t s = worker(f, i, name, 0);
        assert_false(sess_info(f, i, s).suspect);
        assert_int_equal(lease1(f, i, s).job_id, id);
        lq_events_clear(&f->ev);
        lq_core_session_close(f->c, i, s, &f->ev);
        assert_int_equal(count_ev(f, LQ_EV_WORKER_SUSPECT), 1);
    }
    lq_core_check(f->c);
    /* the three oldest went, the rest are remembered */
    assert_int_equal(lq_core_clear_suspect(f->c, N, lq_str_c("w0")), LQ_E_NOT_FOUND);
    assert_int_equal(lq_core_clear_suspect(f->c, N, lq_str_c("w2")), LQ_E_NOT_FOUND);
    assert_int_equal(lq_core_clear_suspect(f->c, N, lq_str_c("w3")), LQ_OK);
    snprintf(name, sizeof name, "w%u", N - 1);
    uint32_t s = worker(f, N, name, 0);
    assert_true(sess_info(f, N, s).suspect);
    lq_core_check(f->c);
    fx_free(f);
}

/* A poison job that freezes every worker it lands on is dead-lettered after max_attempts. */
static void test_frozen_job_dead_after_stalls(void **state)
{
    fx *f = fx_new();
    uint64_t id = enq(f, 0, "q", &(enq_opts){.max_attempts = 3});
    wait_parked(f, 0, id, 1, 600000);
    uint64_t now = 0;
    const char *ids[] = {"w1", "w2", "w3"};
    for (int i = 0; i < 3; i++) {
        uint32_t s = worker(f, now, ids[i], 1000);
        lq_lease l = lease1(f, now, s);
        assert_int_equal(l.job_id, id);
        assert_int_equal(l.attempt, i + 1);
        lq_events_clear(&f->ev);
        now += 3000;
        lq_core_tick(f->c, now, &f->ev);
        assert_int_equal(count_ev(f, LQ_EV_SESSION_STALLED), 1);
        if (i < 2) {
            assert_non_null(find_ev(f, LQ_EV_REQUEUED, id));
            assert_null(wait_done(f, 1));
        }
    }
    const lq_ev *dead = find_ev(f, LQ_EV_DEAD, id);
    assert_non_null(dead);
    assert_true(str_is(dead->u.dead.reason, "session stalled"));
    long up = ev_index(f, LQ_EV_JOB_UPDATE, id);
    assert_true(up >= 0);
    assert_int_equal(f->ev.v[up].u.update.state, LQ_STATE_DEAD);
    assert_true(str_is(f->ev.v[up].u.update.last_error, "session stalled"));
    /* the wait is answered right after the store event */
    assert_int_equal(f->ev.v[up + 1].type, LQ_EV_JOB_WAIT_DONE);
    assert_int_equal(f->ev.v[up + 1].u.wait_done.waiter, 1);
    assert_int_equal(f->ev.v[up + 1].u.wait_done.state, LQ_STATE_DEAD);
    uint8_t st;
    assert_int_equal(lq_core_job_state(f->c, id, &st), LQ_OK);
    assert_int_equal(st, LQ_STATE_DEAD);
    assert_int_equal(count_ev(f, LQ_EV_WORKER_SUSPECT), 0); /* one loss each: nobody quarantined */
    fx_free(f);
}

/* ---- job waits -------------------------------------------------------------------------- */

static void test_wait_done_after_ack(void **state)
{
    fx *f = fx_new();
    uint64_t id = enq(f, 0, "q", NULL);
    wait_parked(f, 0, id, 10, 5000);
    wait_parked(f, 1, id, 11, 9000); /* two waits on one job */
    assert_int_equal(lq_core_tick(f->c, 1, &f->ev), 5000);
    uint32_t s = worker(f, 0, "w", 0);
    lq_lease l = lease1(f, 2, s);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_ack(f->c, 3, id, l.token, &f->ev), LQ_OK);
    assert_int_equal(f->ev.n, 3);
    assert_int_equal(f->ev.v[0].type, LQ_EV_JOB_DELETE);
    assert_int_equal(f->ev.v[0].u.del.final_state, LQ_STATE_DONE);
    for (int i = 1; i <= 2; i++) {
        assert_int_equal(f->ev.v[i].type, LQ_EV_JOB_WAIT_DONE);
        assert_int_equal(f->ev.v[i].job_id, id);
        assert_int_equal(f->ev.v[i].u.wait_done.waiter, 9 + i); /* in arrival order */
        assert_int_equal(f->ev.v[i].u.wait_done.state, LQ_STATE_DONE);
    }
    /* no timeouts left, and the finished job is no longer the core's */
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 9000, &f->ev), LQ_TIME_NEVER);
    assert_int_equal(f->ev.n, 0);
    bool parked = true;
    uint8_t st = 99;
    assert_int_equal(lq_core_wait_job(f->c, 10, id, 12, 100, &parked, &st), LQ_E_NOT_FOUND);
    assert_false(parked);
    assert_int_equal(lq_core_wait_job(f->c, 10, 999, 12, 100, &parked, &st), LQ_E_NOT_FOUND);
    fx_free(f);
}

static void test_wait_dead(void **state)
{
    fx *f = fx_new();
    uint32_t s = worker(f, 0, "", 0);
    /* nack asking for dead-letter */
    uint64_t a = enq(f, 0, "q", NULL);
    wait_parked(f, 0, a, 1, 60000);
    lq_lease l = lease1(f, 0, s);
    lq_events_clear(&f->ev);
    lq_nack_opts o = {.error = lq_str_c("bad image"), .dead = true};
    uint8_t st;
    assert_int_equal(lq_core_nack(f->c, 1, a, l.token, &o, &st, &f->ev), LQ_OK);
    long up = ev_index(f, LQ_EV_JOB_UPDATE, a);
    assert_true(up >= 0 && f->ev.v[up].u.update.state == LQ_STATE_DEAD);
    assert_int_equal(f->ev.v[up + 1].type, LQ_EV_JOB_WAIT_DONE);
    assert_int_equal(f->ev.v[up + 1].u.wait_done.state, LQ_STATE_DEAD);
    /* a dead job answers at once */
    bool parked = true;
    st = 0;
    assert_int_equal(lq_core_wait_job(f->c, 2, a, 2, 1000, &parked, &st), LQ_OK);
    assert_false(parked);
    assert_int_equal(st, LQ_STATE_DEAD);

    /* delivery limit reached by lease expiry */
    uint64_t b = enq(f, 10, "q", &(enq_opts){.max_attempts = 1});
    wait_parked(f, 10, b, 3, 60000);
    lq_lease lb;
    assert_int_equal(deq(f, 10, s, 100, 0, 0, &lb, NULL), 1);
    lq_events_clear(&f->ev);
    lq_core_tick(f->c, 110, &f->ev);
    up = ev_index(f, LQ_EV_JOB_UPDATE, b);
    assert_true(up >= 0 && f->ev.v[up].u.update.state == LQ_STATE_DEAD);
    assert_int_equal(f->ev.v[up + 1].type, LQ_EV_JOB_WAIT_DONE);
    assert_int_equal(f->ev.v[up + 1].u.wait_done.waiter, 3);
    assert_int_equal(f->ev.v[up + 1].u.wait_done.state, LQ_STATE_DEAD);
    fx_free(f);
}

static void test_wait_expired_and_timeout(void **state)
{
    fx *f = fx_new();
    uint64_t a = enq(f, 0, "q", &(enq_opts){.deadline_ms = 100});
    uint64_t b = enq(f, 0, "q", NULL);
    wait_parked(f, 0, a, 1, 60000);
    wait_parked(f, 0, b, 2, 500);
    uint32_t s = worker(f, 0, "w", 0);
    lq_events_clear(&f->ev);
    lq_lease l = lease1(f, 100, s); /* a passed its deadline: deleted on the way, b is leased */
    assert_int_equal(l.job_id, b);
    long del = ev_index(f, LQ_EV_JOB_DELETE, a);
    assert_true(del >= 0);
    assert_int_equal(f->ev.v[del].u.del.final_state, LQ_STATE_EXPIRED);
    assert_int_equal(f->ev.v[del + 1].type, LQ_EV_JOB_WAIT_DONE);
    assert_int_equal(f->ev.v[del + 1].u.wait_done.waiter, 1);
    assert_int_equal(f->ev.v[del + 1].u.wait_done.state, LQ_STATE_EXPIRED);
    /* b's wait times out with state 0; b itself is untouched */
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 100, &f->ev), 500);
    assert_int_equal(lq_core_tick(f->c, 499, &f->ev), 500);
    assert_null(wait_done(f, 2));
    lq_core_tick(f->c, 500, &f->ev);
    const lq_ev *w = wait_done(f, 2);
    assert_non_null(w);
    assert_int_equal(w->job_id, b);
    assert_int_equal(w->u.wait_done.state, 0);
    assert_int_equal(f->ev.n, 1);
    /* the handle is free again after its answer */
    wait_parked(f, 501, b, 2, 0);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 501, &f->ev), 30100); /* b's lease */
    assert_non_null(wait_done(f, 2));
    fx_free(f);
}

static void test_wait_cancel_and_limits(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.max_job_waits = 2;
    fx *f = fx_new_cfg(&cfg);
    uint64_t id = enq(f, 0, "q", NULL);
    wait_parked(f, 0, id, 1, 1000);
    bool parked;
    uint8_t st;
    assert_int_equal(lq_core_wait_job(f->c, 0, id, 1, 1000, &parked, &st), LQ_E_INVALID_ARGUMENT);
    wait_parked(f, 0, id, 2, 1000);
    assert_int_equal(lq_core_wait_job(f->c, 0, id, 3, 1000, &parked, &st), LQ_E_LIMIT);
    lq_core_wait_cancel(f->c, 1);
    lq_core_wait_cancel(f->c, 1);  /* twice: nothing */
    lq_core_wait_cancel(f->c, 77); /* unknown: nothing */
    lq_core_check(f->c);
    lq_core_wait_cancel(f->c, 2);
    lq_core_check(f->c);
    /* cancelled waits are silent: neither the ack nor the timeout answers them */
    uint32_t s = worker(f, 0, "w", 0);
    lq_lease l = lease1(f, 0, s);
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_ack(f->c, 1, id, l.token, &f->ev), LQ_OK);
    assert_int_equal(lq_core_tick(f->c, 2000, &f->ev), LQ_TIME_NEVER);
    assert_int_equal(count_ev(f, LQ_EV_JOB_WAIT_DONE), 0);
    /* the limit counts live waits only */
    uint64_t id2 = enq(f, 2000, "q", NULL);
    wait_parked(f, 2000, id2, 1, 1000);
    wait_parked(f, 2000, id2, 2, 1000);
    assert_int_equal(lq_core_wait_job(f->c, 0, 999, 3, 1000, &parked, &st), LQ_E_NOT_FOUND);
    fx_free(f);
}

static void test_wait_pending(void **state)
{
    fx *f = fx_new();
    uint64_t a = enq_pending(f, 0, "q", NULL, NULL);
    uint64_t b = enq_pending(f, 0, "q", NULL, NULL);
    bool parked = false;
    uint8_t st = 0;
    assert_int_equal(lq_core_wait_job(f->c, 0, a, 1, 1000, &parked, &st), LQ_OK);
    assert_true(parked);
    assert_int_equal(st, LQ_STATE_PENDING);
    wait_parked(f, 0, b, 2, 1000);
    lq_events_clear(&f->ev);
    /* a's batch failed: it never existed for the producer */
    lq_core_commit_done(f->c, 1, a, false, &f->ev);
    const lq_ev *w = wait_done(f, 1);
    assert_non_null(w);
    assert_int_equal(w->job_id, a);
    assert_int_equal(w->u.wait_done.state, LQ_STATE_CANCELLED);
    assert_int_equal(lq_core_job_state(f->c, a, &st), LQ_E_NOT_FOUND);
    /* b's succeeded: its wait goes on until b is done */
    lq_core_commit_done(f->c, 1, b, true, &f->ev);
    assert_null(wait_done(f, 2));
    uint32_t s = worker(f, 1, "w", 0);
    lq_lease l = lease1(f, 2, s);
    assert_int_equal(l.job_id, b);
    assert_int_equal(lq_core_ack(f->c, 3, b, l.token, &f->ev), LQ_OK);
    assert_int_equal(wait_done(f, 2)->u.wait_done.state, LQ_STATE_DONE);
    fx_free(f);
}

/* ---- idempotency ------------------------------------------------------------------------ */

static void test_idem_duplicates(void **state)
{
    fx *f = fx_new();
    uint64_t a = enq(f, 0, "q", &(enq_opts){.key = "order-1"});
    assert_true(str_is(find_ev(f, LQ_EV_JOB_PUT, a)->u.put.idem_key, "order-1"));
    lq_events_clear(&f->ev);
    bool dup = false;
    uint64_t a2 = enq_pending(f, 1, "q", &(enq_opts){.key = "order-1"}, &dup);
    assert_true(dup);
    assert_int_equal(a2, a);
    assert_int_equal(f->ev.n, 0); /* nothing to store */
    /* other keys, other queues, and no key at all: new jobs */
    uint64_t b = enq_pending(f, 1, "q", &(enq_opts){.key = "order-2"}, &dup);
    assert_false(dup);
    uint64_t c = enq_pending(f, 1, "other", &(enq_opts){.key = "order-1"}, &dup);
    assert_false(dup);
    uint64_t d = enq_pending(f, 1, "q", NULL, &dup);
    assert_false(dup);
    assert_true(a != b && b != c && c != d && a != c);
    /* a pending job's key counts, in the same round */
    uint64_t b2 = enq_pending(f, 1, "q", &(enq_opts){.key = "order-2"}, &dup);
    assert_true(dup);
    assert_int_equal(b2, b);
    /* its batch fails: the key is free again */
    lq_core_commit_done(f->c, 2, b, false, &f->ev);
    uint64_t b3 = enq_pending(f, 3, "q", &(enq_opts){.key = "order-2"}, &dup);
    assert_false(dup);
    assert_true(b3 != b);
    /* a dead job keeps its key */
    uint32_t s = worker(f, 3, "", 0);
    lq_core_commit_done(f->c, 3, c, true, &f->ev);
    lq_lease l = lease1(f, 3, s);
    assert_int_equal(l.job_id, a);
    lq_nack_opts no = {.dead = true};
    uint8_t st;
    assert_int_equal(lq_core_nack(f->c, 4, a, l.token, &no, &st, &f->ev), LQ_OK);
    assert_int_equal(enq_pending(f, 5, "q", &(enq_opts){.key = "order-1"}, &dup), a);
    assert_true(dup);
    lq_core_check(f->c);
    fx_free(f);
}

static void test_idem_window(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.idem_window_ms = 1000;
    fx *f = fx_new_cfg(&cfg);
    uint32_t s = worker(f, 0, "", 0);
    uint64_t e = enq(f, 0, "q", &(enq_opts){.key = "late", .deadline_ms = 50});
    uint64_t a = enq(f, 0, "q", &(enq_opts){.key = "k"});
    lq_lease l = lease1(f, 100, s); /* e expires on the way at 100 */
    assert_int_equal(l.job_id, a);
    assert_int_equal(lq_core_ack(f->c, 200, a, l.token, &f->ev), LQ_OK);
    /* finished: the key still counts for the window after the finish */
    bool dup = false;
    assert_int_equal(enq_pending(f, 1050, "q", &(enq_opts){.key = "late"}, &dup), e);
    assert_true(dup);
    assert_int_equal(enq_pending(f, 1060, "q", &(enq_opts){.key = "k"}, &dup), a);
    assert_true(dup);
    /* the tick sweeps at the earliest expiry (e finished at 100) */
    lq_events_clear(&f->ev);
    assert_int_equal(lq_core_tick(f->c, 1060, &f->ev), 1100);
    lq_core_tick(f->c, 1100, &f->ev);
    lq_core_check(f->c);
    uint64_t e2 = enq_pending(f, 1100, "q", &(enq_opts){.key = "late"}, &dup);
    assert_false(dup);
    assert_true(e2 != e);
    /* looked up at the end of the window: expired on the spot */
    uint64_t a2 = enq_pending(f, 1200, "q", &(enq_opts){.key = "k"}, &dup);
    assert_false(dup);
    assert_true(a2 != a);
    fx_free(f);
}

static void test_idem_restore(void **state)
{
    fx *f = fx_new();
    uint64_t now = 1000000;
    lq_job_rec live = {.id = 10, .seq = 10, .max_attempts = 5, .state = LQ_STATE_READY,
                       .queue = lq_str_c("q"), .idem_key = lq_str_c("live")};
    lq_job_rec dead = {.id = 11, .seq = 11, .max_attempts = 5, .attempts = 5, .state = LQ_STATE_DEAD,
                       .queue = lq_str_c("q"), .idem_key = lq_str_c("dead")};
    lq_job_rec twin = {.id = 12, .seq = 12, .max_attempts = 5, .state = LQ_STATE_READY,
                       .queue = lq_str_c("q"), .idem_key = lq_str_c("live")};
    assert_int_equal(lq_core_restore_job(f->c, now, &live), LQ_OK);
    assert_int_equal(lq_core_restore_job(f->c, now, &dead), LQ_OK);
    assert_int_equal(lq_core_restore_job(f->c, now, &twin), LQ_OK); /* the first keeps the key */
    assert_int_equal(lq_core_restore_idem(f->c, now, lq_str_c("q"), lq_str_c("done"), 30, now - 1000), LQ_OK);
    assert_int_equal(lq_core_restore_idem(f->c, now, lq_str_c("q"), lq_str_c("old"), 31, now - 600000), LQ_OK);
    assert_int_equal(lq_core_restore_idem(f->c, now, lq_str_c("q"), lq_str_c("live"), 32, now - 1000), LQ_OK);
    assert_int_equal(lq_core_restore_idem(f->c, now, lq_str_c("q"), LQ_STR_NULL, 33, now), LQ_E_INVALID_ARGUMENT);
    lq_core_restore_finish(f->c, now, 13, 13);
    uint64_t next_id, next_seq;
    lq_core_counters(f->c, &next_id, &next_seq);
    assert_int_equal(next_id, 31); /* a finished job's id is never handed out again */
    lq_core_check(f->c);
    bool dup = false;
    assert_int_equal(enq_pending(f, now, "q", &(enq_opts){.key = "live"}, &dup), 10);
    assert_true(dup);
    assert_int_equal(enq_pending(f, now, "q", &(enq_opts){.key = "dead"}, &dup), 11);
    assert_true(dup);
    assert_int_equal(enq_pending(f, now, "q", &(enq_opts){.key = "done"}, &dup), 30);
    assert_true(dup);
    uint64_t n = enq_pending(f, now, "q", &(enq_opts){.key = "old"}, &dup);
    assert_false(dup);
    assert_int_equal(n, 31);
    /* the restored finished key lapses at finished + window */
    assert_int_equal(lq_core_tick(f->c, now, &f->ev), now - 1000 + 600000);
    lq_core_tick(f->c, now - 1000 + 600000, &f->ev);
    assert_false(enq_pending(f, now - 1000 + 600000, "q", &(enq_opts){.key = "done"}, &dup) == 30);
    assert_false(dup);
    fx_free(f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_quarantine_after_stalls),
        cmocka_unit_test(test_suspect_parked_not_served),
        cmocka_unit_test(test_clear_suspect),
        cmocka_unit_test(test_quarantine_window_lifts),
        cmocka_unit_test(test_worker_table_bounded),
        cmocka_unit_test(test_frozen_job_dead_after_stalls),
        cmocka_unit_test(test_wait_done_after_ack),
        cmocka_unit_test(test_wait_dead),
        cmocka_unit_test(test_wait_expired_and_timeout),
        cmocka_unit_test(test_wait_cancel_and_limits),
        cmocka_unit_test(test_wait_pending),
        cmocka_unit_test(test_idem_duplicates),
        cmocka_unit_test(test_idem_window),
        cmocka_unit_test(test_idem_restore),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
