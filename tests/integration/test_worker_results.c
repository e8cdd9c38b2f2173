/* GPU job lifecycle on a real leaseqd, part 2: what producers get back (plumbing in
 * lifecycle_util.h).
 *
 * Points (one PASS/FAIL line each; the exit status is 0 only when all pass):
 *  5 producer: enqueue_and_wait returns 1 MiB of result bytes intact; wait on a dead job says
 *    DEAD with its error; a short wait on an idle job is DEADLINE_EXCEEDED and leaves it alone
 *  6 idempotency keys collapse duplicates, also across a SIGKILL + restart of the broker
 */
#include "lifecycle_util.h"

/* ---- point 5: producer waits ----------------------------------------------------------- */

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static bool point5_waits(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child E = CHILD_INIT;
    leaseq *w = NULL;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    leaseq_outcome o = {0};
    uint8_t *big = malloc(BIG_LEN), *want = malloc(BIG_LEN); /* owner: this function */
    const char *q = "life-xform", *idle = "life-idle";
    uint64_t id = 0, s = 0x9E3779B97F4A7C15u;
    CHECK(big && want, "out of memory");
    for (size_t i = 0; i < BIG_LEN; i++) { /* xorshift64: random, reproducible */
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        big[i] = (uint8_t)s;
        want[i] = xform(big[i], i);
    }
    CHECK(spawn_worker(&E, e->b->addr, "gpu-E", q, H_XFORM, 1, 1000, LONG_LEASE_MS, 1000), "spawn E");
    leaseq_job_spec js = {.queue = q, .payload = big, .payload_len = BIG_LEN};
    uint64_t t0 = h_now_us();
    leaseq_err r = leaseq_enqueue_and_wait(e->c, &js, 10000, &id, &o, 15000);
    double took = ms_between(t0, h_now_us());
    CHECK(r == LEASEQ_OK && o.state == LEASEQ_STATE_DONE, "enqueue_and_wait: %s, state %s (%s)", leaseq_strerror(r),
          leaseq_state_name(o.state), leaseq_last_error(e->c));
    uint64_t h_want = fnv1a(want, BIG_LEN), h_got = o.result ? fnv1a(o.result, o.result_len) : 0;
    h_log("point 5: 1 MiB round trip %.1f ms; result %zu bytes, fnv1a %016" PRIx64 " (want %016" PRIx64 ")", took,
          o.result_len, h_got, h_want);
    CHECK(o.result_len == BIG_LEN && h_got == h_want && memcmp(o.result, want, BIG_LEN) == 0,
          "the result bytes differ");
    leaseq_outcome_free(&o);

    js = (leaseq_job_spec){.queue = q, .payload = "poison-1", .payload_len = 8};
    r = leaseq_enqueue_and_wait(e->c, &js, 10000, &id, &o, 15000);
    h_log("point 5: poison job: %s, state %s, error \"%s\"", leaseq_strerror(r), leaseq_state_name(o.state),
          o.error ? o.error : "");
    CHECK(r == LEASEQ_OK && o.state == LEASEQ_STATE_DEAD && strcmp(o.error, POISON_ERR) == 0,
          "a dead-lettered job does not wait out as DEAD with its error");
    leaseq_outcome_free(&o);
    child_end(&E); /* so that nobody serves the idle queue, whatever its name */

    js = (leaseq_job_spec){.queue = idle, .payload = "img", .payload_len = 3};
    CHECK(leaseq_enqueue(e->c, &js, &id, CALL_MS) == LEASEQ_OK, "enqueue: %s", leaseq_last_error(e->c));
    t0 = h_now_us();
    r = leaseq_wait(e->c, id, 300, &o, 3000);
    double waited = ms_between(t0, h_now_us());
    h_log("point 5: wait(300 ms) on an idle job: %s after %.1f ms", leaseq_strerror(r), waited);
    CHECK(r == LEASEQ_E_DEADLINE_EXCEEDED, "want DEADLINE_EXCEEDED (%s)", leaseq_last_error(e->c));
    CHECK(waited >= 290 && waited < 2000, "the wait took %.1f ms", waited);
    counts k;
    CHECK(queue_counts(e->c, idle, &k) && k.ready == 1 && k.leased == 0 && k.dead == 0,
          "after the wait: ready %lld leased %lld dead %lld", (long long)k.ready, (long long)k.leased,
          (long long)k.dead);
    CHECK((w = worker_conn(e->b->addr, "gpu-idle")), "connect");
    const char *qs[] = {idle};
    CHECK(leaseq_dequeue(w, qs, 1, 1, 0, LONG_LEASE_MS, &ls, &n, CALL_MS) == LEASEQ_OK && n == 1 &&
              ls[0].job_id == id && ls[0].attempt == 1,
          "leasing the waited-on job: n %zu attempt %u (want 1, 1)", n, n ? ls[0].attempt : 0);
    CHECK(leaseq_ack(w, id, ls[0].lease_token, NULL, 0, CALL_MS) == LEASEQ_OK, "ack: %s", leaseq_last_error(w));
    snprintf(sum, sum_cap, "1 MiB result intact (%.1f ms), DEAD with its error, short wait DEADLINE_EXCEEDED after "
             "%.0f ms with the job untouched (attempt 1)", took, waited);
    ok = true;
out:
    leaseq_outcome_free(&o);
    leaseq_leases_free(ls, n);
    leaseq_close(w);
    child_end(&E);
    free(big);
    free(want);
    return ok;
}

/* ---- point 6: idempotency keys --------------------------------------------------------- */

static bool enqueue_key(leaseq *c, const char *queue, const char *key, leaseq_enqueue_result *r)
{
    leaseq_job_spec js = {.queue = queue, .idempotency_key = key, .payload = key, .payload_len = strlen(key)};
    return leaseq_enqueue_batch(c, &js, 1, r, CALL_MS) == LEASEQ_OK && r->err == LEASEQ_OK;
}

static bool point6_idempotency(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    leaseq *w = NULL;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    const char *q = "life-idem";
    leaseq_enqueue_result a1, a2, a3, f1, f2, x;
    CHECK(enqueue_key(e->c, q, "img-42", &a1) && enqueue_key(e->c, q, "img-42", &a2), "enqueue: %s",
          leaseq_last_error(e->c));
    h_log("point 6: key img-42: job %" PRIu64 " dup %d, then job %" PRIu64 " dup %d", a1.job_id, a1.duplicate,
          a2.job_id, a2.duplicate);
    CHECK(!a1.duplicate && a2.duplicate && a2.job_id == a1.job_id, "the second enqueue made another job");
    /* A finished job's key counts too (for the retention window). */
    CHECK(enqueue_key(e->c, q, "img-43", &f1), "enqueue: %s", leaseq_last_error(e->c));
    CHECK((w = worker_conn(e->b->addr, "gpu-idem")), "connect");
    const char *qs[] = {q};
    CHECK(leaseq_dequeue(w, qs, 1, 2, 0, LONG_LEASE_MS, &ls, &n, CALL_MS) == LEASEQ_OK && n == 2, "dequeue: %s",
          leaseq_last_error(w));
    for (size_t i = 0; i < n; i++)
        if (ls[i].job_id == f1.job_id)
            CHECK(leaseq_ack(w, f1.job_id, ls[i].lease_token, "ok", 2, CALL_MS) == LEASEQ_OK, "ack: %s",
                  leaseq_last_error(w));
    leaseq_close(w); /* img-42 goes back to ready */
    w = NULL;

    h_broker_kill9(e->b);
    CHECK(h_broker_start_ready(e->b, 15000), "broker restart");
    leaseq_close(e->c);
    e->c = NULL;
    CHECK(leaseq_connect(e->b->addr, NULL, &e->c) == LEASEQ_OK, "reconnect");
    CHECK(enqueue_key(e->c, q, "img-42", &a3) && enqueue_key(e->c, q, "img-43", &f2) &&
              enqueue_key(e->c, q, "img-44", &x),
          "enqueue after restart: %s", leaseq_last_error(e->c));
    h_log("point 6: after SIGKILL + restart: img-42 -> %" PRIu64 " dup %d, img-43 (done) -> %" PRIu64
          " dup %d, img-44 -> %" PRIu64 " dup %d",
          a3.job_id, a3.duplicate, f2.job_id, f2.duplicate, x.job_id, x.duplicate);
    CHECK(a3.duplicate && a3.job_id == a1.job_id, "img-42 made a new job after the restart");
    CHECK(f2.duplicate && f2.job_id == f1.job_id, "img-43 (finished) made a new job after the restart");
    CHECK(!x.duplicate && x.job_id != a1.job_id && x.job_id != f1.job_id, "a new key was not a new job");
    snprintf(sum, sum_cap, "same id + duplicate flag, live (%" PRIu64 ") and finished (%" PRIu64
             ") keys, also after SIGKILL + restart", a1.job_id, f1.job_id);
    ok = true;
out:
    leaseq_leases_free(ls, n);
    leaseq_close(w);
    return ok;
}

/* ---- main ------------------------------------------------------------------------------ */

static int run(const char *tmpdir)
{
    static const lc_point points[] = {
        {"5 producer waits", point5_waits},
        {"6 idempotency keys", point6_idempotency}, /* last: it restarts the broker */
    };
    return lc_run_points(tmpdir, points, (int)(sizeof points / sizeof points[0]));
}

int main(void) { return h_supervise("test_worker_results", 280, run); }
