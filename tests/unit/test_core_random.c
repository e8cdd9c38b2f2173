/* Unit tests of the sans-IO core (broker/core): random operations with the invariant walk
 * after every few steps, and a quick throughput / RAM-per-job measure (LQ_PERF_N jobs). */
#include "core_fixture.h"

#include <malloc.h>
#include <time.h>

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
        cmocka_unit_test(test_random_ops),
        cmocka_unit_test(test_perf_sanity),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
