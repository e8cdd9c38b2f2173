/* Deadlines through a real broker: jobs that expire while queued are never delivered, and a
 * producer waiting on one learns EXPIRED (without any worker passing by); a lane's max_wait_ms
 * gives deadline-less jobs one. */
#include "overload.h"

static int body(const char *tmpdir)
{
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    const char *extra[] = {"--lane-config", "dl/slow:max_wait_ms=300", NULL};
    OV_CHECK(ov_broker_start(&b, extra, 15000), "broker start");
    leaseq *c = NULL;
    leaseq_opts o = {.client_name = "deadline", .connect_timeout_ms = 5000};
    OV_CHECK(leaseq_connect(b.addr, &o, &c) == LEASEQ_OK, "connect");

    enum { N = 50 };
    uint64_t expiring[N], lane_default[N], keep[N];
    for (int i = 0; i < N; i++) {
        leaseq_job_spec js = {.queue = "dl", .payload = "e", .payload_len = 1, .deadline_ms = 300};
        OV_CHECK(leaseq_enqueue(c, &js, &expiring[i], 5000) == LEASEQ_OK, "enqueue expiring");
        leaseq_job_spec jl = {.queue = "dl", .lane = "slow", .payload = "l", .payload_len = 1};
        OV_CHECK(leaseq_enqueue(c, &jl, &lane_default[i], 5000) == LEASEQ_OK, "enqueue lane default");
        leaseq_job_spec jk = {.queue = "dl", .payload = "k", .payload_len = 1};
        OV_CHECK(leaseq_enqueue(c, &jk, &keep[i], 5000) == LEASEQ_OK, "enqueue keep");
    }
    /* a producer waits on an expiring job: the answer comes when the deadline passes (the last
     * one enqueued: then every earlier deadline has passed too) */
    uint64_t t0 = h_now_ms();
    leaseq_outcome out;
    memset(&out, 0, sizeof out);
    leaseq_err e = leaseq_wait(c, expiring[N - 1], 10000, &out, 15000);
    uint64_t waited = h_now_ms() - t0;
    printf("deadline: wait on a job with a 300 ms deadline: %s state=%s error=\"%s\" after %llu ms\n",
           leaseq_strerror(e), e == LEASEQ_OK ? leaseq_state_name(out.state) : "-", e == LEASEQ_OK ? out.error : "",
           (unsigned long long)waited);
    OV_CHECK(e == LEASEQ_OK && out.state == LEASEQ_STATE_EXPIRED, "waiting producer did not learn EXPIRED");
    OV_CHECK(waited < 5000, "EXPIRED came late (%llu ms)", (unsigned long long)waited);
    leaseq_outcome_free(&out);
    memset(&out, 0, sizeof out);
    e = leaseq_wait(c, lane_default[N - 1], 10000, &out, 15000);
    OV_CHECK(e == LEASEQ_OK && out.state == LEASEQ_STATE_EXPIRED, "lane max_wait_ms job: %s", leaseq_strerror(e));
    leaseq_outcome_free(&out);
    h_sleep_ms(100);

    /* a worker now gets only the jobs without a deadline */
    const char *queues[] = {"dl"};
    int got = 0;
    for (;;) {
        leaseq_lease *l = NULL;
        size_t n = 0;
        OV_CHECK(leaseq_dequeue(c, queues, 1, 256, 200, 0, &l, &n, 5000) == LEASEQ_OK, "dequeue");
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            OV_CHECK(l[i].payload_len == 1 && l[i].payload[0] == 'k', "an expired job was delivered (payload %c)",
                     l[i].payload_len ? l[i].payload[0] : '?');
            OV_CHECK(leaseq_ack(c, l[i].job_id, l[i].lease_token, NULL, 0, 5000) == LEASEQ_OK, "ack");
        }
        got += (int)n;
        leaseq_leases_free(l, n);
    }
    printf("deadline: %d jobs without a deadline delivered, %d expired ones never\n", got, 2 * N);
    OV_CHECK(got == N, "delivered %d of %d", got, N);
    leaseq_stats *st = NULL;
    OV_CHECK(leaseq_get_stats(c, "dl", &st, 5000) == LEASEQ_OK, "stats");
    for (size_t i = 0; i < st->n_queues; i++)
        for (size_t k = 0; k < st->queues[i].n_lanes; k++)
            OV_CHECK(st->queues[i].lanes[k].ready == 0, "lane %s still has ready jobs", st->queues[i].lanes[k].name);
    leaseq_stats_free(st);
    leaseq_close(c);
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop");
    return 0;
}

int main(void)
{
    return h_supervise("test_overload_deadline", 60, body);
}
