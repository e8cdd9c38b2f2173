/* Unit tests of the sans-IO core (broker/core): recovery from stored records into a fresh
 * core, and validation of names, requests and configuration. */
#include "core_fixture.h"

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

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_recovery),
        cmocka_unit_test(test_invalid_names),
        cmocka_unit_test(test_misc_api),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
