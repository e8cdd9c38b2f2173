/* Unit tests of the sans-IO core (broker/core): dispatch order, leases, sessions, timers,
 * parked dequeues, recovery. Every test drives the core with explicit times and checks the
 * events it emits; lq_core_check runs after each step that changes state. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <cmocka.h>
#include <malloc.h>

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

static const lq_ev *find_ev(const fx *f, lq_ev_type t, uint64_t job_id)
{
    for (size_t i = 0; i < f->ev.n; i++)
        if (f->ev.v[i].type == t && (job_id == 0 || f->ev.v[i].job_id == job_id))
            return &f->ev.v[i];
    return NULL;
}

static bool str_is(lq_str s, const char *c) { return lq_str_eq(s, lq_str_c(c)); }

typedef struct {
    const char *lane, *tenant;
    int64_t priority;
    uint64_t delay_ms, deadline_ms;
    uint32_t max_attempts;
} enq_opts;

/* Enqueues without committing; returns the id. */
static uint64_t enq_pending(fx *f, uint64_t now, const char *queue, const enq_opts *o)
{
    lq_enqueue_req r = {.queue = lq_str_c(queue), .payload_len = 100};
    if (o) {
        r.lane = lq_str_c(o->lane);
        r.tenant = lq_str_c(o->tenant);
        r.priority = o->priority;
        r.delay_ms = o->delay_ms;
        r.deadline_ms = o->deadline_ms;
        r.max_attempts = o->max_attempts;
    }
    uint64_t id = 0;
    assert_int_equal(lq_core_enqueue(f->c, now, &r, &id, &f->ev), LQ_OK);
    assert_true(id > 0);
    return id;
}

static uint64_t enq(fx *f, uint64_t now, const char *queue, const enq_opts *o)
{
    uint64_t id = enq_pending(f, now, queue, o);
    lq_core_commit_done(f->c, now, id, true, &f->ev);
    return id;
}

static uint32_t session(fx *f, uint64_t now, uint32_t heartbeat_ms)
{
    lq_session_opts o = {.worker_id = lq_str_c("w"), .heartbeat_ms = heartbeat_ms};
    uint32_t s = 0;
    assert_int_equal(lq_core_session_open(f->c, now, &o, &s), LQ_OK);
    assert_true(s > 0);
    return s;
}

static uint32_t deq_opt(fx *f, uint64_t now, uint32_t s, const char *queue, uint32_t max, uint32_t lease_ms,
                        lq_lease *out)
{
    lq_str q = lq_str_c(queue);
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .max_jobs = max, .lease_ms = lease_ms, .session = s};
    uint32_t n = 99;
    bool parked = true;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, &parked, &f->ev), LQ_OK);
    assert_false(parked);
    assert_true(n <= (max ? max : 1));
    return n;
}

static uint32_t deq(fx *f, uint64_t now, uint32_t s, const char *queue, uint32_t max, lq_lease *out)
{
    return deq_opt(f, now, s, queue, max, 0, out);
}

/* Leases exactly one job and returns it. */
static lq_lease lease1(fx *f, uint64_t now, uint32_t s, const char *queue)
{
    lq_lease l;
    assert_int_equal(deq(f, now, s, queue, 1, &l), 1);
    return l;
}

static void park(fx *f, uint64_t now, uint32_t s, const char *queue, uint32_t max, uint32_t wait_ms, uint64_t waiter)
{
    lq_str q = lq_str_c(queue);
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .max_jobs = max, .wait_ms = wait_ms, .session = s, .waiter = waiter};
    lq_lease out[LQ_DEQUEUE_MAX];
    uint32_t n = 99;
    bool parked = false;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, &parked, &f->ev), LQ_OK);
    assert_int_equal(n, 0);
    assert_true(parked);
}

typedef struct {
    lq_lane_stats s[8];
    char names[8][64];
    int n;
} stats_acc;

static void stats_cb(void *ctx, const lq_lane_stats *s)
{
    stats_acc *a = ctx;
    assert_true(a->n < 8);
    a->s[a->n] = *s;
    snprintf(a->names[a->n], sizeof a->names[0], "%.*s/%.*s", (int)s->queue.len, s->queue.ptr, (int)s->lane.len,
             s->lane.ptr);
    a->n++;
}

static lq_lane_stats lane_stats(fx *f, const char *queue, const char *lane)
{
    stats_acc a = {0};
    assert_int_equal(lq_core_stats(f->c, lq_str_c(queue), stats_cb, &a), LQ_OK);
    for (int i = 0; i < a.n; i++)
        if (str_is(a.s[i].lane, lane))
            return a.s[i];
    fail_msg("no lane %s in %s", lane, queue);
    return a.s[0];
}

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

/* ---- recovery --------------------------------------------------------------------------- */

/* A toy store applying the core's store events, as the shell would. */
typedef struct {
    lq_job_rec rec;
    char q[64], lane[64], tenant[64];
    bool live;
} model_rec;

typedef struct {
    model_rec *v;
    size_t cap;
} model;

static void model_apply(model *m, const lq_events *ev)
{
    for (size_t i = 0; i < ev->n; i++) {
        const lq_ev *e = &ev->v[i];
        if (e->type != LQ_EV_JOB_PUT && e->type != LQ_EV_JOB_UPDATE && e->type != LQ_EV_JOB_DELETE)
            continue;
        assert_true(e->job_id < m->cap);
        model_rec *r = &m->v[e->job_id];
        if (e->type == LQ_EV_JOB_PUT) {
            r->rec = e->u.put;
            snprintf(r->q, sizeof r->q, "%.*s", (int)e->u.put.queue.len, e->u.put.queue.ptr);
            snprintf(r->lane, sizeof r->lane, "%.*s", (int)e->u.put.lane.len, e->u.put.lane.ptr);
            snprintf(r->tenant, sizeof r->tenant, "%.*s", (int)e->u.put.tenant.len, e->u.put.tenant.ptr);
            r->rec.queue = lq_str_c(r->q);
            r->rec.lane = lq_str_c(r->lane);
            r->rec.tenant = lq_str_c(r->tenant);
            r->rec.idem_key = r->rec.last_error = LQ_STR_NULL;
            r->live = true;
        } else if (e->type == LQ_EV_JOB_UPDATE) {
            assert_true(r->live);
            r->rec.state = e->u.update.state;
            r->rec.attempts = e->u.update.attempts;
            r->rec.not_before_ms = e->u.update.not_before_ms;
        } else {
            assert_true(r->live);
            r->live = false;
        }
    }
}

static void test_recovery(void **state)
{
    fx *f = fx_new();
    model m = {calloc(64, sizeof(model_rec)), 64};
    lq_lane_cfg lanes[] = {{lq_str_c("api"), 3}, {lq_str_c("app"), 1}};
    assert_int_equal(lq_core_configure_queue(f->c, lq_str_c("img"), lanes, 2), LQ_OK);
    for (int i = 0; i < 6; i++)
        enq(f, 0, "img", &(enq_opts){.lane = i % 2 ? "api" : "app", .tenant = i % 3 ? "t1" : NULL});
    enq(f, 0, "img", &(enq_opts){.lane = "api", .delay_ms = 5000});
    enq(f, 0, "img", &(enq_opts){.lane = "app", .delay_ms = 50});
    enq(f, 0, "other", &(enq_opts){.max_attempts = 1, .priority = 4});
    uint64_t pend = enq_pending(f, 0, "other", NULL);
    lq_core_commit_done(f->c, 0, pend, false, &f->ev);
    uint32_t s = session(f, 0, 0);
    lq_lease l[2];
    assert_int_equal(deq(f, 1, s, "img", 2, l), 2);
    lq_lease o = lease1(f, 1, s, "other");
    uint8_t st;
    assert_int_equal(lq_core_nack(f->c, 2, o.job_id, o.token, &(lq_nack_opts){.error = lq_str_c("x")}, &st, &f->ev),
                     LQ_OK);
    assert_int_equal(st, LQ_STATE_DEAD);
    lq_lease done = lease1(f, 3, s, "img");
    assert_int_equal(lq_core_ack(f->c, 3, done.job_id, done.token, &f->ev), LQ_OK);
    lq_core_tick(f->c, 100, &f->ev);
    model_apply(&m, &f->ev);
    m.v[pend].live = false; /* its batch failed: never stored */
    uint64_t next_id, next_seq;
    lq_core_counters(f->c, &next_id, &next_seq);

    /* what the restarted core should show: leases are not durable, so leased -> ready */
    stats_acc before = {0}, after = {0};
    assert_int_equal(lq_core_stats(f->c, LQ_STR_NULL, stats_cb, &before), LQ_OK);
    for (int i = 0; i < before.n; i++) {
        before.s[i].ready += before.s[i].leased;
        before.s[i].leased = 0;
    }

    fx *g = fx_new();
    assert_int_equal(lq_core_configure_queue(g->c, lq_str_c("img"), lanes, 2), LQ_OK);
    /* feed in an order unlike the original one */
    uint64_t max_live = 0, max_seq = 0;
    for (size_t id = m.cap; id-- > 0;)
        if (m.v[id].live) {
            assert_int_equal(lq_core_restore_job(g->c, 200, &m.v[id].rec), LQ_OK);
            if (id > max_live)
                max_live = id;
            if (m.v[id].rec.seq > max_seq)
                max_seq = m.v[id].rec.seq;
        }
    assert_int_equal(lq_core_restore_job(g->c, 200, &m.v[max_live].rec), LQ_E_INVALID_ARGUMENT); /* duplicate */
    lq_job_rec bad = m.v[max_live].rec;
    bad.id = 1000;
    bad.state = LQ_STATE_DONE;
    assert_int_equal(lq_core_restore_job(g->c, 200, &bad), LQ_E_INVALID_ARGUMENT);
    /* stored counters lower than what the jobs imply must not move them backwards */
    lq_core_restore_finish(g->c, 200, 2, 2);
    lq_core_check(g->c);
    uint64_t gid, gseq;
    lq_core_counters(g->c, &gid, &gseq);
    assert_int_equal(gid, max_live + 1);
    assert_int_equal(gseq, max_seq + 1);
    lq_core_restore_finish(g->c, 200, next_id + 10, next_seq + 10);
    lq_core_counters(g->c, &gid, &gseq);
    assert_int_equal(gid, next_id + 10);
    assert_int_equal(gseq, next_seq + 10);

    assert_int_equal(lq_core_stats(g->c, LQ_STR_NULL, stats_cb, &after), LQ_OK);
    /* the restored core knows the same lanes (its order follows what it saw first) */
    assert_int_equal(after.n, before.n);
    for (int i = 0; i < before.n; i++) {
        int k = 0;
        while (k < after.n && strcmp(after.names[k], before.names[i]) != 0)
            k++;
        assert_true(k < after.n);
        assert_int_equal(after.s[k].ready, before.s[i].ready);
        assert_int_equal(after.s[k].leased, 0);
        assert_int_equal(after.s[k].delayed, before.s[i].delayed);
        assert_int_equal(after.s[k].dead, before.s[i].dead);
        assert_int_equal(after.s[k].pending, 0);
        assert_int_equal(after.s[k].weight, before.s[i].weight);
    }
    uint64_t nid;
    lq_enqueue_req r = {.queue = lq_str_c("img"), .lane = lq_str_c("api")};
    assert_int_equal(lq_core_enqueue(g->c, 201, &r, &nid, &g->ev), LQ_OK);
    assert_int_equal(nid, next_id + 10);
    /* delayed records that are due come back ready; the others when due */
    uint32_t gs = session(g, 201, 0);
    assert_int_equal(lq_core_tick(g->c, 201, &g->ev), 5000);
    lq_lease all[16];
    lq_core_commit_done(g->c, 201, nid, true, &g->ev);
    uint32_t n = deq(g, 202, gs, "img", 16, all);
    assert_int_equal(n, before.s[0].ready + before.s[1].ready + 1);
    /* the jobs leased at the "crash" are delivered again */
    int again = 0;
    for (uint32_t i = 0; i < n; i++)
        again += all[i].job_id == l[0].job_id || all[i].job_id == l[1].job_id;
    assert_int_equal(again, 2);
    lq_core_check(g->c);
    fx_free(g);
    free(m.v);
    fx_free(f);
}

/* ---- validation ------------------------------------------------------------------------- */

static void test_invalid_names(void **state)
{
    fx *f = fx_new();
    char long_name[LQ_NAME_MAX + 2];
    memset(long_name, 'a', sizeof long_name);
    long_name[LQ_NAME_MAX + 1] = '\0';
    const char *bad[] = {"", "-lead", "has space", "tab\t", "uni\xc3\xa9", "star*", "a,b", long_name};
    uint64_t id;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lq_enqueue_req r = {.queue = lq_str_c(bad[i])};
        assert_int_equal(lq_core_enqueue(f->c, 0, &r, &id, &f->ev), LQ_E_INVALID_ARGUMENT);
        if (bad[i][0]) {
            r = (lq_enqueue_req){.queue = lq_str_c("q"), .lane = lq_str_c(bad[i])};
            assert_int_equal(lq_core_enqueue(f->c, 0, &r, &id, &f->ev), LQ_E_INVALID_ARGUMENT);
            r = (lq_enqueue_req){.queue = lq_str_c("q"), .tenant = lq_str_c(bad[i])};
            assert_int_equal(lq_core_enqueue(f->c, 0, &r, &id, &f->ev), LQ_E_INVALID_ARGUMENT);
        }
        lq_lane_cfg lc = {lq_str_c("x"), 1};
        assert_int_equal(lq_core_configure_queue(f->c, lq_str_c(bad[i]), &lc, 1), LQ_E_INVALID_ARGUMENT);
    }
    /* a name with an embedded NUL byte */
    lq_enqueue_req r = {.queue = {"a\0b", 3}};
    assert_int_equal(lq_core_enqueue(f->c, 0, &r, &id, &f->ev), LQ_E_INVALID_ARGUMENT);
    assert_int_equal(f->ev.n, 0);
    long_name[LQ_NAME_MAX] = '\0';
    const char *good[] = {"a", "A-b+c/d;e.f$g_h(i)", "0", long_name};
    for (size_t i = 0; i < sizeof good / sizeof good[0]; i++) {
        r = (lq_enqueue_req){.queue = lq_str_c(good[i]), .lane = lq_str_c(good[i]), .tenant = lq_str_c(good[i])};
        assert_int_equal(lq_core_enqueue(f->c, 0, &r, &id, &f->ev), LQ_OK);
    }
    /* dequeue */
    uint32_t s = session(f, 0, 0);
    lq_str q = lq_str_c("-x");
    lq_dequeue_req d = {.queues = &q, .n_queues = 1, .session = s};
    lq_lease out[1];
    uint32_t n;
    bool parked;
    assert_int_equal(lq_core_dequeue(f->c, 0, &d, out, &n, &parked, &f->ev), LQ_E_INVALID_ARGUMENT);
    d.n_queues = 0;
    assert_int_equal(lq_core_dequeue(f->c, 0, &d, out, &n, &parked, &f->ev), LQ_E_INVALID_ARGUMENT);
    q = lq_str_c("fine");
    d.n_queues = 1;
    d.session = 9999;
    assert_int_equal(lq_core_dequeue(f->c, 0, &d, out, &n, &parked, &f->ev), LQ_E_NOT_FOUND);
    /* configuration errors */
    lq_lane_cfg dup[] = {{lq_str_c("x"), 1}, {lq_str_c("x"), 2}};
    assert_int_equal(lq_core_configure_queue(f->c, lq_str_c("c"), dup, 2), LQ_E_INVALID_ARGUMENT);
    assert_int_equal(lq_core_configure_queue(f->c, lq_str_c("c"), dup, 0), LQ_E_INVALID_ARGUMENT);
    /* removing a lane that holds jobs is refused, an empty one may go */
    enq(f, 0, "c", &(enq_opts){.lane = "busy"});
    lq_lane_cfg only_x[] = {{lq_str_c("x"), 1}};
    assert_int_equal(lq_core_configure_queue(f->c, lq_str_c("c"), only_x, 1), LQ_E_INVALID_ARGUMENT);
    lq_lane_cfg both[] = {{lq_str_c("x"), 1}, {lq_str_c("busy"), 4}};
    assert_int_equal(lq_core_configure_queue(f->c, lq_str_c("c"), both, 2), LQ_OK);
    assert_int_equal(lane_stats(f, "c", "busy").weight, 4);
    assert_int_equal(lane_stats(f, "c", "busy").ready, 1);
    stats_acc a = {0};
    assert_int_equal(lq_core_stats(f->c, lq_str_c("nosuch"), stats_cb, &a), LQ_E_NOT_FOUND);
    lq_core_check(f->c);
    fx_free(f);
}

static void test_misc_api(void **state)
{
    assert_string_equal(lq_requeue_reason_name(LQ_REQUEUE_LEASE_EXPIRED), "lease_expired");
    assert_string_equal(lq_requeue_reason_name(LQ_REQUEUE_NACK), "nack");
    assert_true(lq_str_eq(lq_str_c(NULL), LQ_STR_NULL));
    assert_false(lq_str_eq(lq_str_c("ab"), lq_str_c("abc")));
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    assert_int_equal(cfg.default_lease_ms, 30000);
    assert_int_equal(cfg.max_lease_ms, 43200000);
    assert_int_equal(cfg.default_max_attempts, 10);
    assert_int_equal(cfg.backoff_base_ms, 1000);
    assert_int_equal(cfg.backoff_max_ms, 300000);
    assert_int_equal(cfg.heartbeat_misses, 3);
    assert_int_equal(cfg.max_sessions, 65536);
    assert_int_equal(cfg.max_parked, 65536);
    cfg.default_lease_ms = 0;
    lq_core *c = NULL;
    assert_int_equal(lq_core_create(&cfg, &c), LQ_E_INVALID_ARGUMENT);
    /* lease time is capped at max_lease_ms */
    lq_core_config_default(&cfg);
    cfg.max_lease_ms = 60000;
    fx *f = fx_new_cfg(&cfg);
    enq(f, 0, "q", NULL);
    uint32_t s = session(f, 0, 0);
    lq_lease l;
    assert_int_equal(deq_opt(f, 0, s, "q", 1, 999999, &l), 1);
    assert_int_equal(l.expires_ms, 60000);
    fx_free(f);
}

/* ---- random operations with the invariant walk after every step ------------------------- */

static uint64_t rs = 99;
static uint64_t rnd(void)
{
    uint64_t z = (rs += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

static void test_random_ops(void **state)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.seed = 5;
    cfg.max_parked = 8;
    cfg.default_max_attempts = 3;
    cfg.quarantine_window_ms = 3000; /* quarantines come and go within the run */
    cfg.idem_window_ms = 2000;
    cfg.max_job_waits = 16;
    fx *f = fx_new_cfg(&cfg);
    lq_lane_cfg lanes[] = {{lq_str_c("hi"), 3}, {lq_str_c("lo"), 1}, {lq_str_c("bg"), 0}};
    const char *workers[] = {"w0", "w1", "w2", "w3"};
    assert_int_equal(lq_core_configure_queue(f->c, lq_str_c("q0"), lanes, 3), LQ_OK);
    const char *queues[] = {"q0", "q1", "q2"}, *lane_names[] = {"hi", "lo", "bg"}, *tenants[] = {NULL, "t1", "t2"};
    enum { MAXL = 4096, MAXS = 6, MAXP = 64 };
    static lq_lease held[MAXL];
    size_t n_held = 0;
    uint32_t sess[MAXS] = {0};
    uint64_t pending[MAXP];
    size_t n_pending = 0;
    uint64_t now = 1000, next_waiter = 1, next_job_wait = 1;
    size_t seen[LQ_EV_WORKER_SUSPECT + 1] = {0};
    static uint8_t jw[20001]; /* per job-wait handle: 1 parked, 2 answered, 3 cancelled */
    memset(jw, 0, sizeof jw);
    for (int step = 0; step < 20000; step++) {
        lq_events_clear(&f->ev);
        int op = (int)(rnd() % 14);
        uint32_t *sp = &sess[rnd() % MAXS];
        if (*sp == 0 || op == 11) {
            if (*sp)
                lq_core_session_close(f->c, now, *sp, &f->ev);
            lq_session_opts so = {.worker_id = lq_str_c(workers[rnd() % 4]), .heartbeat_ms = rnd() % 2 ? 0 : 200};
            assert_int_equal(lq_core_session_open(f->c, now, &so, sp), LQ_OK);
            continue;
        }
        switch (op) {
        case 0:
        case 1: {
            uint64_t qn = rnd() % 3;
            enq_opts o = {.lane = qn == 0 ? lane_names[rnd() % 3] : NULL, .tenant = tenants[rnd() % 3],
                          .priority = (int64_t)(rnd() % 3), .delay_ms = rnd() % 4 ? 0 : rnd() % 500,
                          .deadline_ms = rnd() % 4 ? 0 : rnd() % 1000};
            uint64_t id;
            if (rnd() % 3 == 0) {
                /* idempotency keys from a small set: duplicates of live, pending and finished jobs */
                char key[16];
                snprintf(key, sizeof key, "k%u", (unsigned)(rnd() % 20));
                lq_enqueue_req r = {.queue = lq_str_c(queues[qn]), .lane = lq_str_c(o.lane), .idem_key = lq_str_c(key)};
                bool dup;
                assert_int_equal(lq_core_enqueue_ex(f->c, now, &r, &id, &dup, &f->ev), LQ_OK);
                if (dup)
                    break;
            } else {
                id = enq_pending(f, now, queues[qn], &o);
            }
            if (n_pending < MAXP)
                pending[n_pending++] = id;
            else
                lq_core_commit_done(f->c, now, id, true, &f->ev);
            break;
        }
        case 2:
            while (n_pending)
                lq_core_commit_done(f->c, now, pending[--n_pending], rnd() % 8 != 0, &f->ev);
            break;
        case 3:
        case 4: {
            lq_str qs[2] = {lq_str_c(queues[rnd() % 3]), lq_str_c(queues[rnd() % 3])};
            lq_dequeue_req r = {.queues = qs, .n_queues = 1 + (uint32_t)(rnd() % 2), .max_jobs = 1 + (uint32_t)(rnd() % 4),
                                .wait_ms = rnd() % 2 ? 0 : 300, .lease_ms = 100 + (uint32_t)(rnd() % 400),
                                .session = *sp, .waiter = next_waiter++};
            lq_lease out[4];
            uint32_t n = 0;
            bool parked = false;
            lq_err e = lq_core_dequeue(f->c, now, &r, out, &n, &parked, &f->ev);
            assert_true(e == LQ_OK || e == LQ_E_LIMIT);
            for (uint32_t i = 0; i < n && n_held < MAXL; i++)
                held[n_held++] = out[i];
            break;
        }
        case 5:
        case 6:
        case 7:
            if (n_held) {
                size_t i = rnd() % n_held;
                lq_err e;
                if (op == 5) {
                    e = lq_core_ack(f->c, now, held[i].job_id, held[i].token, &f->ev);
                } else if (op == 6) {
                    lq_nack_opts o = {.error = lq_str_c("err"), .dead = rnd() % 10 == 0};
                    uint8_t st;
                    e = lq_core_nack(f->c, now, held[i].job_id, held[i].token, &o, &st, &f->ev);
                } else {
                    uint64_t exp;
                    e = lq_core_extend(f->c, now, held[i].job_id, held[i].token, 300, &exp);
                }
                assert_true(e == LQ_OK || e == LQ_E_LEASE_LOST);
                if (e != LQ_OK || op != 7)
                    held[i] = held[--n_held];
            }
            break;
        case 8: {
            uint32_t hb;
            assert_int_equal(lq_core_heartbeat(f->c, now, *sp, &hb), LQ_OK);
            break;
        }
        case 9:
            lq_core_waiter_cancel(f->c, next_waiter - 1 - rnd() % 4);
            break;
        case 12: {
            /* a producer waits on a recent job (any state, maybe gone), or gives up a wait */
            uint64_t next_id, next_seq;
            lq_core_counters(f->c, &next_id, &next_seq);
            if (rnd() % 4 == 0) {
                uint64_t h = next_job_wait - 1 - rnd() % 4;
                lq_core_wait_cancel(f->c, h);
                if (h < 20001 && jw[h] == 1)
                    jw[h] = 3;
            } else if (next_id > 1) {
                bool parked = false;
                uint8_t st;
                uint64_t h = next_job_wait++;
                lq_err e = lq_core_wait_job(f->c, now, next_id - 1 - rnd() % (next_id - 1 < 50 ? next_id - 1 : 50), h,
                                            (uint32_t)(rnd() % 2000), &parked, &st);
                assert_true(e == LQ_OK || e == LQ_E_NOT_FOUND || e == LQ_E_LIMIT);
                assert_true(h < 20001);
                if (e == LQ_OK)
                    jw[h] = parked ? 1 : 2;
                if (e == LQ_OK && !parked)
                    assert_int_equal(st, LQ_STATE_DEAD);
            }
            break;
        }
        case 13:
            if (rnd() % 8 == 0)
                lq_core_clear_suspect(f->c, now, lq_str_c(workers[rnd() % 4]));
            else
                now += rnd() % 120;
            break;
        default:
            now += rnd() % 120;
            break;
        }
        uint64_t next = lq_core_tick(f->c, now, &f->ev);
        assert_true(next > now);
        /* LEASE events from parked dequeues are leases too; WAITER_DONE follows its leases */
        for (size_t i = 0; i < f->ev.n; i++)
            if (f->ev.v[i].type == LQ_EV_LEASE && n_held < MAXL)
                held[n_held++] = f->ev.v[i].u.lease.lease;
        for (size_t i = 0; i < f->ev.n; i++) {
            const lq_ev *e = &f->ev.v[i];
            assert_true(e->type >= LQ_EV_JOB_PUT && e->type <= LQ_EV_WORKER_SUSPECT);
            seen[e->type]++;
            if (e->type != LQ_EV_JOB_WAIT_DONE)
                continue;
            /* each wait answered once, never after a cancel; a terminal answer follows the store
             * event of its transition (or its sibling answers), except CANCELLED: never stored */
            uint64_t h = e->u.wait_done.waiter;
            assert_true(h < 20001 && jw[h] == 1);
            jw[h] = 2;
            uint8_t st = e->u.wait_done.state;
            if (st == 0 || st == LQ_STATE_CANCELLED)
                continue;
            size_t k = i;
            while (k > 0 && f->ev.v[k - 1].type == LQ_EV_JOB_WAIT_DONE && f->ev.v[k - 1].job_id == e->job_id)
                k--;
            assert_true(k > 0);
            const lq_ev *store = &f->ev.v[k - 1];
            assert_int_equal(store->job_id, e->job_id);
            if (st == LQ_STATE_DEAD)
                assert_true(store->type == LQ_EV_JOB_UPDATE && store->u.update.state == LQ_STATE_DEAD);
            else
                assert_true(store->type == LQ_EV_JOB_DELETE && store->u.del.final_state == st);
        }
        if (step % 7 == 0)
            lq_core_check(f->c);
    }
    print_message("random: put %zu update %zu delete %zu lease %zu waiter_done %zu requeued %zu dead %zu stalled %zu"
                  " wait_done %zu suspect %zu\n",
                  seen[LQ_EV_JOB_PUT], seen[LQ_EV_JOB_UPDATE], seen[LQ_EV_JOB_DELETE], seen[LQ_EV_LEASE],
                  seen[LQ_EV_WAITER_DONE], seen[LQ_EV_REQUEUED], seen[LQ_EV_DEAD], seen[LQ_EV_SESSION_STALLED],
                  seen[LQ_EV_JOB_WAIT_DONE], seen[LQ_EV_WORKER_SUSPECT]);
    for (int t = LQ_EV_JOB_PUT; t <= LQ_EV_WORKER_SUSPECT; t++)
        assert_true(seen[t] > 0); /* every path was exercised */
    fx_free(f);
}

/* ---- a quick sanity measure, not a timed assertion -------------------------------------- */

static double secs(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void test_perf_sanity(void **state)
{
    const char *env = getenv("LQ_PERF_N");
    int N = env ? atoi(env) : 1000000;
    fx *f = fx_new();
    uint32_t s = session(f, 0, 0);
    lq_enqueue_req r = {.queue = lq_str_c("img"), .lane = lq_str_c("api"), .payload_len = 100};
    double t0 = secs();
    for (int i = 0; i < N; i++) {
        uint64_t id;
        lq_events_clear(&f->ev);
        assert_int_equal(lq_core_enqueue(f->c, i, &r, &id, &f->ev), LQ_OK);
        lq_core_commit_done(f->c, i, id, true, &f->ev);
        lq_lease l;
        assert_int_equal(deq(f, i, s, "img", 1, &l), 1);
        assert_int_equal(lq_core_ack(f->c, i, l.job_id, l.token, &f->ev), LQ_OK);
    }
    double t1 = secs();
    print_message("perf: %d enqueue+commit+lease+ack cycles in %.3f s (%.0f/s)\n", N, t1 - t0, N / (t1 - t0));
    lq_core_check(f->c);
    fx_free(f);

    /* RAM per queued job: N ready jobs in one lane, malloc's own count before and after */
    f = fx_new();
    lq_events_clear(&f->ev);
    struct mallinfo2 m0 = mallinfo2();
    t0 = secs();
    for (int i = 0; i < N; i++) {
        uint64_t id;
        lq_events_clear(&f->ev);
        assert_int_equal(lq_core_enqueue(f->c, i, &r, &id, &f->ev), LQ_OK);
        lq_core_commit_done(f->c, i, id, true, &f->ev);
    }
    t1 = secs();
    struct mallinfo2 m1 = mallinfo2();
    if (m1.uordblks + m1.hblkhd > m0.uordblks + m0.hblkhd)
        print_message("mem: %d queued jobs in %.3f s, %.1f bytes/job\n", N, t1 - t0,
                      (double)(m1.uordblks + m1.hblkhd - m0.uordblks - m0.hblkhd) / N);
    assert_int_equal(lane_stats(f, "img", "api").ready, (uint64_t)N);
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
        cmocka_unit_test(test_stale_tokens),
        cmocka_unit_test(test_tokens_distinct),
        cmocka_unit_test(test_extend),
        cmocka_unit_test(test_backoff_grows_and_caps),
        cmocka_unit_test(test_delivery_limit_dead),
        cmocka_unit_test(test_delayed_jobs),
        cmocka_unit_test(test_pending_until_durable),
        cmocka_unit_test(test_deadline_never_leased),
        cmocka_unit_test(test_parked_arrival_order),
        cmocka_unit_test(test_parked_served_before_new_dequeue),
        cmocka_unit_test(test_parked_limits_and_cancel),
        cmocka_unit_test(test_parked_multi_queue),
        cmocka_unit_test(test_session_close_requeues_at_once),
        cmocka_unit_test(test_heartbeat_stall),
        cmocka_unit_test(test_heartbeat_leases_never_expire),
        cmocka_unit_test(test_stalled_session_waiters_done),
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_misc_api),
        cmocka_unit_test(test_random_ops),
        cmocka_unit_test(test_perf_sanity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
