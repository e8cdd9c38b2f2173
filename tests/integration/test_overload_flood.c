/* Flood: 200,000 app-lane jobs queued, workers saturated, a steady trickle of api-lane jobs.
 * The api jobs' queue wait (lease time - the time its enqueue was acknowledged, i.e. since it is
 * durable and ready, on one clock; durability latency is not queue wait) must stay within
 * twice one job's service time at p99, and app jobs must still get at least their weight's
 * share (1 in 10 with lanes api:9,app:1) of the leases while api traffic flows.
 *
 * Flags: --app-jobs N (200000), --service-ms N (10; 5 passes on a quiet machine), --workers N (4), --seconds N (10, the api
 * trickle). The numbers are printed either way. */
#include <pthread.h>

#include "overload.h"

#define QUEUE "flood"

static int g_app_jobs = 200000, g_service_ms = 10, g_workers = 4, g_seconds = 10;

/* per api job (its payload is its index): when the producer got the enqueue acknowledged, and
 * when a worker got its lease; written by one thread each, read after the joins */
#define API_MAX 100000
static uint64_t g_acked_us[API_MAX], g_leased_us[API_MAX];

typedef struct {
    int index;
    const char *addr;
    volatile int *stop;
    uint64_t leased_api, leased_app;   /* while the trickle runs */
    volatile int *trickle_on;
    int failures;
    char err[256];
} worker_ctx;

static void *worker_main(void *arg)
{
    worker_ctx *w = arg;
    leaseq_opts o = {.client_name = "flood-worker", .connect_timeout_ms = 5000};
    leaseq *c = NULL;
    if (leaseq_connect(w->addr, &o, &c) != LEASEQ_OK) {
        snprintf(w->err, sizeof w->err, "connect failed");
        w->failures++;
        return NULL;
    }
    const char *queues[] = {QUEUE};
    /* Real workers are not in lockstep: stagger their cycles so completions spread out. */
    usleep((useconds_t)(w->index * g_service_ms * 1000 / g_workers));
    while (!*w->stop) {
        leaseq_lease *l = NULL;
        size_t n = 0;
        leaseq_err e = leaseq_dequeue(c, queues, 1, 1, 200, 0, &l, &n, 5000);
        uint64_t got_us = h_now_us();
        if (e != LEASEQ_OK) {
            snprintf(w->err, sizeof w->err, "dequeue: %s (%s)", leaseq_strerror(e), leaseq_last_error(c));
            w->failures++;
            break;
        }
        if (n == 0)
            continue;
        bool api = strcmp(l[0].lane, "api") == 0;
        if (*w->trickle_on) {
            if (api)
                w->leased_api++;
            else
                w->leased_app++;
        }
        if (api && l[0].payload_len == sizeof(uint32_t)) {
            uint32_t idx;
            memcpy(&idx, l[0].payload, sizeof idx);
            if (idx < API_MAX)
                g_leased_us[idx] = got_us;
        }
        /* "process" for the service time */
        h_sleep_ms((unsigned)g_service_ms);
        e = leaseq_ack(c, l[0].job_id, l[0].lease_token, NULL, 0, 5000);
        leaseq_leases_free(l, n);
        if (e != LEASEQ_OK) {
            snprintf(w->err, sizeof w->err, "ack: %s", leaseq_strerror(e));
            w->failures++;
            break;
        }
    }
    leaseq_close(c);
    return NULL;
}

static int body(const char *tmpdir)
{
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    const char *extra[] = {"--lanes", QUEUE "=api:9,app:1", NULL};
    OV_CHECK(ov_broker_start(&b, extra, 15000), "broker start");

    leaseq *p = NULL;
    leaseq_opts o = {.client_name = "flood-producer", .connect_timeout_ms = 5000};
    OV_CHECK(leaseq_connect(b.addr, &o, &p) == LEASEQ_OK, "connect");

    /* 1. the flood, as fast as batch enqueue goes */
    uint64_t t0 = h_now_us();
    enum { CHUNK = 4096 };
    leaseq_job_spec *specs = calloc(CHUNK, sizeof *specs);
    leaseq_enqueue_result *res = calloc(CHUNK, sizeof *res);
    static const char body16[16] = "app-job-payload";
    for (int i = 0; i < CHUNK; i++)
        specs[i] = (leaseq_job_spec){.queue = QUEUE, .lane = "app", .payload = body16, .payload_len = 16};
    for (int done = 0; done < g_app_jobs;) {
        size_t n = (size_t)(g_app_jobs - done < CHUNK ? g_app_jobs - done : CHUNK);
        leaseq_err e = leaseq_enqueue_batch(p, specs, n, res, 60000);
        OV_CHECK(e == LEASEQ_OK, "enqueue_batch: %s", leaseq_strerror(e));
        for (size_t i = 0; i < n; i++)
            OV_CHECK(res[i].err == LEASEQ_OK, "app job %zu: %s", i, leaseq_strerror(res[i].err));
        done += (int)n;
    }
    h_log("%d app jobs enqueued in %.2f s", g_app_jobs, (double)(h_now_us() - t0) / 1e6);

    /* 2. saturate the workers, then the api trickle */
    volatile int stop = 0, trickle_on = 0;
    worker_ctx *ws = calloc((size_t)g_workers, sizeof *ws);
    pthread_t *th = calloc((size_t)g_workers, sizeof *th);
    for (int i = 0; i < g_workers; i++) {
        ws[i] = (worker_ctx){.index = i, .addr = b.addr, .stop = &stop, .trickle_on = &trickle_on};
        pthread_create(&th[i], NULL, worker_main, &ws[i]);
    }
    h_sleep_ms(1000); /* workers busy with app jobs */
    trickle_on = 1;
    uint64_t sent = 0, trickle_end = h_now_ms() + (uint64_t)g_seconds * 1000;
    int api_errors = 0;
    while (h_now_ms() < trickle_end && sent < API_MAX) {
        uint32_t idx = (uint32_t)sent;
        leaseq_job_spec js = {.queue = QUEUE, .lane = "api", .payload = &idx, .payload_len = sizeof idx};
        uint64_t id = 0;
        leaseq_err e = leaseq_enqueue(p, &js, &id, 5000);
        g_acked_us[idx] = h_now_us();
        if (e != LEASEQ_OK)
            api_errors++;
        sent++;
        h_sleep_ms(20); /* ~50 api jobs a second: a trickle next to the workers' capacity */
    }
    h_sleep_ms((unsigned)(4 * g_service_ms + 200)); /* the last api jobs get served */
    trickle_on = 0;
    stop = 1;
    uint64_t api = 0, app = 0;
    size_t n_wait = 0;
    uint64_t *waits = calloc(API_MAX, sizeof(uint64_t));
    int failures = 0;
    for (int i = 0; i < g_workers; i++) {
        pthread_join(th[i], NULL);
        api += ws[i].leased_api;
        app += ws[i].leased_app;
        if (ws[i].failures) {
            printf("worker %d: %s\n", i, ws[i].err);
            failures += ws[i].failures;
        }
    }
    for (uint64_t i = 0; i < sent; i++) {
        if (g_leased_us[i] != 0) /* leased before its ack reached the producer: waited 0 */
            waits[n_wait++] = g_leased_us[i] > g_acked_us[i] ? g_leased_us[i] - g_acked_us[i] : 0;
    }
    uint64_t p50 = ov_percentile(waits, n_wait, 50), p99 = ov_percentile(waits, n_wait, 99);
    uint64_t max = n_wait ? waits[n_wait - 1] : 0;
    printf("flood: app_jobs=%d workers=%d service_ms=%d api_sent=%llu api_leased=%zu api_wait_us p50=%llu "
           "p99=%llu max=%llu (bound p99 <= %d us); leases during the trickle: api=%llu app=%llu (app share "
           "%.1f %%, weight share 10 %%)\n",
           g_app_jobs, g_workers, g_service_ms, (unsigned long long)sent, n_wait, (unsigned long long)p50,
           (unsigned long long)p99, (unsigned long long)max, 2 * g_service_ms * 1000, (unsigned long long)api,
           (unsigned long long)app, api + app ? 100.0 * (double)app / (double)(api + app) : 0.0);
    OV_CHECK(failures == 0 && api_errors == 0, "worker failures %d, api enqueue errors %d", failures, api_errors);
    OV_CHECK(n_wait >= sent * 9 / 10, "api jobs leased %zu of %llu", n_wait, (unsigned long long)sent);
    OV_CHECK(p99 <= (uint64_t)g_service_ms * 2000, "api p99 wait %llu us over twice the service time",
             (unsigned long long)p99);
    OV_CHECK(app * 10 >= api + app, "app got %llu of %llu leases: under its weight", (unsigned long long)app,
             (unsigned long long)(api + app));
    free(waits);
    free(ws);
    free(th);
    free(specs);
    free(res);
    leaseq_close(p);
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop");
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--app-jobs") == 0)
            g_app_jobs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--service-ms") == 0)
            g_service_ms = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--workers") == 0)
            g_workers = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--seconds") == 0)
            g_seconds = atoi(argv[i + 1]);
    }
    return h_supervise("test_overload_flood", 180, body);
}
