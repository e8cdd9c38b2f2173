/* GPU job lifecycle on a real leaseqd, part 1: workers that freeze or die
 * (plumbing in lifecycle_util.h).
 *
 * Points (one PASS/FAIL line each; the exit status is 0 only when all pass):
 *  1 frozen worker: its 8 leases go to another worker within the heartbeat timeout, at the
 *    front of the lane; its late acks get LEASE_LOST; a waiting producer gets the new results
 *  2 SIGKILLed worker: its jobs are leased again within 100 ms
 *  3 a handler 3x longer than the lease, heartbeating, is never requeued and acks
 *  4 a job frozen on every delivery is dead-lettered ("session stalled"); its worker id is
 *    quarantined (Workers says suspect) and gets no new leases while another worker does
 */
#include "lifecycle_util.h"

/* ---- point 1: a frozen worker ---------------------------------------------------------- */

/* Its 8 leases go to a parked worker B within the heartbeat timeout of the freeze; its late
 * acks are fenced out; a producer waiting on the jobs gets B's results. */
static bool point1_redelivery(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child A = CHILD_INIT, B = CHILD_INIT, P = CHILD_INIT;
    const char *q = "life-frozen";
    uint64_t ids[8];
    uint32_t to = e->hb_timeout_ms;
    counts k;
    CHECK(enqueue_n(e->c, q, 8, ids), "enqueue: %s", leaseq_last_error(e->c));
    CHECK(spawn_worker(&A, e->b->addr, "gpu-A", q, H_GATE, 8, HB_MS, LONG_LEASE_MS, 1000), "spawn A");
    CHECK(wait_counts(e->c, q, 0, 8, -1, 5000, &k, NULL), "A holds %lld leases, %lld ready (want 8, 0)",
          (long long)k.leased, (long long)k.ready);
    CHECK(spawn_worker(&B, e->b->addr, "gpu-B", q, H_QUICK, 8, HB_MS, LONG_LEASE_MS, 10000), "spawn B");
    waiter_cfg wc = {.addr = e->b->addr, .n = 8};
    memcpy(wc.ids, ids, sizeof ids);
    CHECK(spawn(&P, waiter_main, &wc), "spawn the waiting producer");
    h_sleep_ms(300); /* B parks its dequeue, the producer its waits; A heartbeats on */

    uint64_t t_stop = h_now_us();
    CHECK(freeze(&A), "SIGSTOP A");
    winfo wi[16];
    char why[160];
    int nw = raw_workers(e->b->port, wi, 16, why, sizeof why);
    uint64_t t_q = h_now_us();
    const winfo *wa = nw > 0 ? find_worker(wi, nw, "gpu-A") : NULL;
    if (!wa)
        h_log("point 1: no broker view of A's last heartbeat (Workers: %s); measuring from the SIGSTOP",
              nw < 0 ? why : "gpu-A not listed");
    uint64_t t_seen = wa ? t_q - wa->last_seen_age_ms * 1000u : 0;

    CHECK(wait_got(&B, 8, (int)to + 3000), "B got %d of A's 8 jobs within %u ms", B.n_got, to + 3000);
    uint64_t t_last = 0;
    for (int i = 0; i < 8; i++) {
        CHECK(in_set(B.got[i].job_id, ids, 8) && B.got[i].attempt == 2,
              "B's delivery %d: job %" PRIu64 " attempt %u (want one of A's, attempt 2)", i, B.got[i].job_id,
              B.got[i].attempt);
        if (B.got[i].t_us > t_last)
            t_last = B.got[i].t_us;
    }
    double d1 = ms_between(t_stop, B.got[0].t_us), d8 = ms_between(t_stop, t_last);
    h_log("point 1: heartbeat %u ms, timeout %u ms; SIGSTOP -> B's 1st job %.1f ms, 8th job %.1f ms", HB_MS, to,
          d1, d8);
    if (wa)
        h_log("point 1: broker last heard A %.1f ms before the SIGSTOP; last heard -> 8th job %.1f ms",
              ms_between(t_seen, t_stop), ms_between(t_seen, t_last));
    /* The SIGSTOP is an upper bound of A's last heartbeat, so "within timeout + slack of the last
     * heartbeat" implies this; the lower bound says no faster mechanism than the stall fired. */
    CHECK(d8 <= to + SLACK_MS, "8th redelivery %.1f ms after the SIGSTOP > %u ms", d8, to + SLACK_MS);
    CHECK(d1 >= (double)to - HB_MS - 50, "redelivery %.1f ms after the SIGSTOP: sooner than a stall can be", d1);
    if (wa)
        CHECK(ms_between(t_seen, t_last) <= to + SLACK_MS + 2, "8th redelivery %.1f ms after A's last heartbeat",
              ms_between(t_seen, t_last));

    CHECK(kill(A.pid, SIGCONT) == 0, "SIGCONT A");
    open_gate(&A, 8);
    CHECK(wait_done(&A, 8, 5000), "A settled %" PRIu64 " of its 8 late acks", A.stats.acked + A.stats.lease_lost);
    h_log("point 1: A's late acks: %" PRIu64 " LEASE_LOST, %" PRIu64 " accepted", A.stats.lease_lost, A.stats.acked);
    CHECK(A.stats.lease_lost == 8 && A.stats.acked == 0, "A's late acks were not all refused");

    uint64_t end = h_now_ms() + 10000;
    while (P.n_out < 8 && h_now_ms() < end && child_pump(&P, (int)(end - h_now_ms()))) {
    }
    CHECK(P.n_out == 8, "the producer got %d of 8 outcomes", P.n_out);
    for (int i = 0; i < 8; i++) {
        char want[64];
        snprintf(want, sizeof want, "gpu-B:%" PRIu64, P.out[i].job_id);
        CHECK(P.out[i].failed == LEASEQ_OK && P.out[i].acked == LEASEQ_STATE_DONE && strcmp(P.out[i].text, want) == 0,
              "wait(%" PRIu64 "): %s, state %s, \"%s\" (want done, \"%s\")", P.out[i].job_id,
              leaseq_strerror((leaseq_err)P.out[i].failed), leaseq_state_name((leaseq_job_state)P.out[i].acked),
              P.out[i].text, want);
    }
    snprintf(sum, sum_cap, "SIGSTOP -> 8th redelivery %.1f ms (bound %u = timeout %u + %u); 8 late acks LEASE_LOST; "
             "waits got B's results", d8, to + SLACK_MS, to, SLACK_MS);
    ok = true;
out:
    child_end(&A);
    child_end(&B);
    child_end(&P);
    return ok;
}

/* Requeued jobs go before jobs enqueued later in the same lane. B dequeues only once the
 * requeue is visible, so later jobs are there to overtake if the broker let them. */
static bool point1_front_of_lane(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child A = CHILD_INIT;
    leaseq *b = NULL;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    const char *q = "life-order";
    uint64_t ids[8], later[4], t_req = 0;
    counts k;
    CHECK(enqueue_n(e->c, q, 8, ids), "enqueue: %s", leaseq_last_error(e->c));
    CHECK(spawn_worker(&A, e->b->addr, "gpu-A2", q, H_GATE, 8, HB_MS, LONG_LEASE_MS, 1000), "spawn A2");
    CHECK(wait_counts(e->c, q, 0, 8, -1, 5000, &k, NULL), "A2 holds %lld leases", (long long)k.leased);
    CHECK(enqueue_n(e->c, q, 4, later), "enqueue later: %s", leaseq_last_error(e->c));
    uint64_t t_stop = h_now_us();
    CHECK(freeze(&A), "SIGSTOP A2");
    CHECK(wait_counts(e->c, q, 12, 0, -1, (int)e->hb_timeout_ms + 3000, &k, &t_req),
          "after the freeze: ready %lld leased %lld (want 12, 0)", (long long)k.ready, (long long)k.leased);
    double d = ms_between(t_stop, t_req);
    h_log("point 1: A2's 8 leases requeued (seen in stats) %.1f ms after the SIGSTOP", d);
    CHECK(d <= e->hb_timeout_ms + SLACK_MS, "requeue %.1f ms after the SIGSTOP", d);
    CHECK((b = worker_conn(e->b->addr, "gpu-B2")), "connect B2");
    const char *qs[] = {q};
    CHECK(leaseq_dequeue(b, qs, 1, 12, 0, LONG_LEASE_MS, &ls, &n, CALL_MS) == LEASEQ_OK && n == 12,
          "B2 leased %zu of 12: %s", n, leaseq_last_error(b));
    for (size_t i = 0; i < n; i++) {
        uint64_t want = i < 8 ? ids[i] : later[i - 8];
        CHECK(ls[i].job_id == want && ls[i].attempt == (i < 8 ? 2u : 1u),
              "B2's lease %zu: job %" PRIu64 " attempt %u, want %" PRIu64 " attempt %u", i, ls[i].job_id,
              ls[i].attempt, want, i < 8 ? 2u : 1u);
        CHECK(leaseq_ack(b, ls[i].job_id, ls[i].lease_token, NULL, 0, CALL_MS) == LEASEQ_OK, "B2 ack: %s",
              leaseq_last_error(b));
    }
    snprintf(sum, sum_cap, "requeued 8 went before 4 later jobs of the lane, in their old order (requeue %.1f ms)",
             d);
    ok = true;
out:
    leaseq_leases_free(ls, n);
    leaseq_close(b);
    child_end(&A);
    return ok;
}

/* ---- point 2: a killed worker ---------------------------------------------------------- */

static bool point2_killed(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child K = CHILD_INIT, P = CHILD_INIT;
    const char *q = "life-killed";
    uint64_t ids[4];
    counts k;
    CHECK(enqueue_n(e->c, q, 4, ids), "enqueue: %s", leaseq_last_error(e->c));
    CHECK(spawn_worker(&K, e->b->addr, "gpu-K", q, H_GATE, 4, HB_MS, LONG_LEASE_MS, 1000), "spawn K");
    CHECK(wait_counts(e->c, q, 0, 4, -1, 5000, &k, NULL), "K holds %lld leases", (long long)k.leased);
    CHECK(spawn_worker(&P, e->b->addr, "gpu-P", q, H_QUICK, 8, 1000, LONG_LEASE_MS, 10000), "spawn P");
    h_sleep_ms(300); /* P parks its long-poll dequeue */
    uint64_t t_kill = h_now_us();
    kill(K.pid, SIGKILL);
    CHECK(wait_got(&P, 4, 3000), "P got %d of K's 4 jobs", P.n_got);
    uint64_t t_last = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(in_set(P.got[i].job_id, ids, 4) && P.got[i].attempt == 2, "P's job %" PRIu64 " attempt %u",
              P.got[i].job_id, P.got[i].attempt);
        if (P.got[i].t_us > t_last)
            t_last = P.got[i].t_us;
    }
    double d1 = ms_between(t_kill, P.got[0].t_us), d4 = ms_between(t_kill, t_last);
    h_log("point 2: SIGKILL -> parked worker's 1st job %.2f ms, 4th %.2f ms", d1, d4);
    CHECK(d4 <= KILL_BOUND_MS, "redelivery %.2f ms after the SIGKILL > %u ms", d4, KILL_BOUND_MS);
    snprintf(sum, sum_cap, "SIGKILL -> 4th redelivery %.2f ms (bound %u ms)", d4, KILL_BOUND_MS);
    ok = true;
out:
    child_end(&K);
    child_end(&P);
    return ok;
}

/* ---- point 3: a long handler that heartbeats ------------------------------------------- */

static bool point3_long_handler(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child S = CHILD_INIT, O = CHILD_INIT;
    const char *q = "life-long";
    uint64_t id;
    counts k;
    CHECK(spawn_worker(&S, e->b->addr, "gpu-S", q, H_SLEEP, 1, HB_MS, 1000, 1000), "spawn S");
    CHECK(enqueue_n(e->c, q, 1, &id), "enqueue: %s", leaseq_last_error(e->c));
    CHECK(wait_got(&S, 1, 5000), "S never got the job");
    uint64_t t0 = S.got[0].t_us;
    CHECK(spawn_worker(&O, e->b->addr, "gpu-O", q, H_QUICK, 1, HB_MS, LONG_LEASE_MS, 10000), "spawn O");
    while (h_now_us() < t0 + 2500000u)
        h_sleep_ms(20);
    CHECK(queue_counts(e->c, q, &k) && k.leased == 1 && k.ready == 0,
          "2.5 lease times into the handler: leased %lld ready %lld (want 1, 0)", (long long)k.leased,
          (long long)k.ready);
    CHECK(wait_done(&S, 1, 8000), "S's ack did not settle");
    double took = ms_between(t0, S.stats.t_us);
    CHECK(child_pump(&O, 300), "the other worker died");
    child_pump(&S, 0);
    h_log("point 3: lease 1000 ms, handler+ack %.0f ms; S acked %" PRIu64 ", lease_lost %" PRIu64
          "; S deliveries %d (attempt %u), O deliveries %d",
          took, S.stats.acked, S.stats.lease_lost, S.n_got, S.got[0].attempt, O.n_got);
    CHECK(took >= 3000, "the handler ran only %.0f ms", took);
    CHECK(S.stats.acked == 1 && S.stats.lease_lost == 0, "S's ack was not accepted");
    CHECK(S.n_got == 1 && S.got[0].attempt == 1 && S.got[0].job_id == id, "the job was delivered again");
    CHECK(O.n_got == 0, "the other worker got %d job(s)", O.n_got);
    snprintf(sum, sum_cap, "handler %.0f ms on a 1000 ms lease, heartbeat %u ms: attempts 1, acked, no redelivery",
             took, HB_MS);
    ok = true;
out:
    child_end(&S);
    child_end(&O);
    return ok;
}

/* ---- point 4: a worker that freezes on every delivery ---------------------------------- */

static bool point4_flaky(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child W = CHILD_INIT, X = CHILD_INIT;
    leaseq_outcome o = {0};
    const char *q = "life-flaky";
    uint64_t id = 0, id2 = 0;
    counts k;
    double stall_ms[3] = {0};
    CHECK(spawn_worker(&W, e->b->addr, "gpu-flaky", q, H_GATE, 1, HB_MS, LONG_LEASE_MS, 1000), "spawn W");
    leaseq_job_spec js = {.queue = q, .max_attempts = 3, .payload = "img", .payload_len = 3};
    CHECK(leaseq_enqueue(e->c, &js, &id, CALL_MS) == LEASEQ_OK, "enqueue: %s", leaseq_last_error(e->c));
    for (uint32_t a = 1; a <= 3; a++) {
        CHECK(wait_got(&W, (int)a, 5000), "delivery %u never came", a);
        CHECK(W.got[a - 1].job_id == id && W.got[a - 1].attempt == a, "delivery %u: job %" PRIu64 " attempt %u", a,
              W.got[a - 1].job_id, W.got[a - 1].attempt);
        uint64_t t_stop = h_now_us(), t_gone = 0;
        CHECK(freeze(&W), "SIGSTOP W");
        CHECK(wait_counts(e->c, q, a < 3 ? 1 : 0, 0, a < 3 ? 0 : 1, (int)e->hb_timeout_ms + 3000, &k, &t_gone),
              "after freeze %u: ready %lld leased %lld dead %lld", a, (long long)k.ready, (long long)k.leased,
              (long long)k.dead);
        stall_ms[a - 1] = ms_between(t_stop, t_gone);
        CHECK(kill(W.pid, SIGCONT) == 0, "SIGCONT W");
        open_gate(&W, 1);
    }
    h_log("point 4: freeze -> lease gone %.0f / %.0f / %.0f ms; job dead after attempt 3", stall_ms[0], stall_ms[1],
          stall_ms[2]);
    CHECK(wait_done(&W, 3, 5000), "W's late acks did not settle");
    CHECK(W.stats.lease_lost == 3 && W.stats.acked == 0, "W's late acks: %" PRIu64 " lost, %" PRIu64 " accepted",
          W.stats.lease_lost, W.stats.acked);

    winfo wi[16];
    char why[160];
    int nw = raw_workers(e->b->port, wi, 16, why, sizeof why);
    CHECK(nw >= 0, "Workers request: %s", why);
    const winfo *wf = find_worker(wi, nw, "gpu-flaky");
    CHECK(wf != NULL, "gpu-flaky is not listed by Workers (%d sessions)", nw);
    h_log("point 4: Workers: gpu-flaky suspect=%d stalled=%d recent_losses=%u leases_held=%u", wf->suspect,
          wf->stalled, wf->recent_losses, wf->leases_held);
    CHECK(wf->suspect && wf->recent_losses >= 3, "gpu-flaky is not quarantined");

    CHECK(leaseq_enqueue(e->c, &(leaseq_job_spec){.queue = q, .payload = "img2", .payload_len = 4}, &id2, CALL_MS) ==
              LEASEQ_OK, "enqueue: %s", leaseq_last_error(e->c));
    CHECK(child_pump(&W, 500), "W died"); /* W is alive and asking; a quarantined id must not be served */
    CHECK(W.n_got == 3, "the quarantined worker got a new job");
    CHECK(spawn_worker(&X, e->b->addr, "gpu-X", q, H_QUICK, 1, HB_MS, LONG_LEASE_MS, 10000), "spawn X");
    CHECK(wait_got(&X, 1, 3000) && X.got[0].job_id == id2, "the healthy worker did not get the new job");
    CHECK(child_pump(&W, 200), "W died");
    CHECK(W.n_got == 3, "the quarantined worker got a new job");

    leaseq_err we = leaseq_wait(e->c, id, 1000, &o, 3000);
    h_log("point 4: wait(job): %s, state %s, error \"%s\"", leaseq_strerror(we), leaseq_state_name(o.state),
          o.error ? o.error : "");
    CHECK(we == LEASEQ_OK && o.state == LEASEQ_STATE_DEAD && strstr(o.error, "session stalled"),
          "the job is not dead with \"session stalled\" (%s)", leaseq_last_error(e->c));
    snprintf(sum, sum_cap, "dead after 3 freezes (\"%s\"), gpu-flaky suspect with %u losses, X served instead",
             o.error, wf->recent_losses);
    ok = true;
out:
    leaseq_outcome_free(&o);
    child_end(&W);
    child_end(&X);
    return ok;
}

/* ---- main ------------------------------------------------------------------------------ */

static int run(const char *tmpdir)
{
    static const lc_point points[] = {
        {"1 frozen worker: redelivery", point1_redelivery},
        {"1 frozen worker: front of lane", point1_front_of_lane},
        {"2 killed worker", point2_killed},
        {"3 long handler with heartbeats", point3_long_handler},
        {"4 flaky worker: dead letter + quarantine", point4_flaky},
    };
    return lc_run_points(tmpdir, points, (int)(sizeof points / sizeof points[0]));
}

int main(void) { return h_supervise("test_worker_freeze", 280, run); }
