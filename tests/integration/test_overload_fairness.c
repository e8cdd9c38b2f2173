/* Lanes and tenants under load, through a real broker:
 *  - fairness: tenant A enqueues 50,000 jobs, then tenant B 10 in the same lane: B's jobs are
 *    all leased within the next 20 leases;
 *  - admission: a lane limit from --lane-config refuses the flooded lane with QUEUE_FULL and a
 *    retry_after_ms hint, while another lane of the same queue still takes jobs. */
#include "overload.h"

static int fairness(h_broker *b)
{
    leaseq *c = NULL;
    leaseq_opts o = {.client_name = "fairness", .connect_timeout_ms = 5000};
    OV_CHECK(leaseq_connect(b->addr, &o, &c) == LEASEQ_OK, "connect");
    enum { A_JOBS = 50000, CHUNK = 4096 };
    leaseq_job_spec *specs = calloc(CHUNK, sizeof *specs);
    leaseq_enqueue_result *res = calloc(CHUNK, sizeof *res);
    for (int i = 0; i < CHUNK; i++)
        specs[i] = (leaseq_job_spec){.queue = "fair", .tenant = "A", .payload = "a", .payload_len = 1};
    for (int done = 0; done < A_JOBS;) {
        size_t n = (size_t)(A_JOBS - done < CHUNK ? A_JOBS - done : CHUNK);
        OV_CHECK(leaseq_enqueue_batch(c, specs, n, res, 60000) == LEASEQ_OK, "enqueue A");
        for (size_t i = 0; i < n; i++)
            OV_CHECK(res[i].err == LEASEQ_OK, "A job: %s", leaseq_strerror(res[i].err));
        done += (int)n;
    }
    for (int i = 0; i < 10; i++)
        specs[i] = (leaseq_job_spec){.queue = "fair", .tenant = "B", .payload = "b", .payload_len = 1};
    OV_CHECK(leaseq_enqueue_batch(c, specs, 10, res, 10000) == LEASEQ_OK, "enqueue B");
    const char *queues[] = {"fair"};
    int b_seen = 0, first_b = -1, last_b = -1;
    for (int i = 0; i < 20; i++) {
        leaseq_lease *l = NULL;
        size_t n = 0;
        OV_CHECK(leaseq_dequeue(c, queues, 1, 1, 0, 60000, &l, &n, 5000) == LEASEQ_OK && n == 1, "dequeue");
        if (strcmp(l[0].tenant, "B") == 0) {
            b_seen++;
            last_b = i;
            if (first_b < 0)
                first_b = i;
        }
        leaseq_leases_free(l, n);
    }
    printf("fairness: tenant A queued %d, B queued 10 after; of the next 20 leases %d were B's (first at %d, "
           "last at %d)\n", A_JOBS, b_seen, first_b, last_b);
    OV_CHECK(b_seen == 10, "B got %d of its 10 jobs within 20 leases", b_seen);
    free(specs);
    free(res);
    leaseq_close(c);
    return 0;
}

static int admission(h_broker *b)
{
    leaseq *c = NULL;
    leaseq_opts o = {.client_name = "admission", .connect_timeout_ms = 5000};
    OV_CHECK(leaseq_connect(b->addr, &o, &c) == LEASEQ_OK, "connect");
    leaseq_job_spec app = {.queue = "adm", .lane = "app", .payload = "x", .payload_len = 1};
    leaseq_job_spec api = {.queue = "adm", .lane = "api", .payload = "y", .payload_len = 1};
    uint64_t id = 0;
    for (int i = 0; i < 100; i++)
        OV_CHECK(leaseq_enqueue(c, &app, &id, 5000) == LEASEQ_OK, "app job %d", i);
    leaseq_err e = leaseq_enqueue(c, &app, &id, 5000);
    uint32_t retry = leaseq_retry_after_ms(c);
    printf("admission: 101st app job: %s retry_after_ms=%u\n", leaseq_strerror(e), retry);
    OV_CHECK(e == LEASEQ_E_QUEUE_FULL, "101st app job got %s", leaseq_strerror(e));
    OV_CHECK(retry >= 10 && retry <= 30000, "retry_after_ms %u", retry);
    /* the flood of one lane never refuses another */
    OV_CHECK(leaseq_enqueue(c, &api, &id, 5000) == LEASEQ_OK, "api job refused");
    /* drained below the limit, the lane takes jobs again */
    const char *queues[] = {"adm"};
    leaseq_lease *l = NULL;
    size_t n = 0;
    OV_CHECK(leaseq_dequeue(c, queues, 1, 20, 0, 60000, &l, &n, 5000) == LEASEQ_OK && n == 20, "dequeue");
    for (size_t i = 0; i < n; i++)
        OV_CHECK(leaseq_ack(c, l[i].job_id, l[i].lease_token, NULL, 0, 5000) == LEASEQ_OK, "ack");
    leaseq_leases_free(l, n);
    OV_CHECK(leaseq_enqueue(c, &app, &id, 5000) == LEASEQ_OK, "app job after the drain");
    leaseq_close(c);
    return 0;
}

static int body(const char *tmpdir)
{
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    const char *extra[] = {"--lanes", "adm=api:9,app:1", "--lane-config", "adm/app:max_queued=100,sheddable=1",
                           "--lane-config", "adm/api:max_queued_bytes=1M", NULL};
    OV_CHECK(ov_broker_start(&b, extra, 15000), "broker start");
    OV_CHECK(ov_log_has(&b, "lane configured"), "no log line for --lane-config");
    if (fairness(&b) != 0 || admission(&b) != 0) {
        h_dump_tail(b.log_path, 20);
        return 1;
    }
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop");
    return 0;
}

int main(void)
{
    return h_supervise("test_overload_fairness", 120, body);
}
