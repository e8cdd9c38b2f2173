/* Purging 1,000,000 queued jobs never blocks the broker: while the purge runs, another client
 * pings in a loop, and the p99 of those round trips stays under 10 ms (printed). The purge's
 * reply carries the count, and the queue is empty afterwards.
 *
 * The machine is shared: the same pinger runs for a second before the purge, and the limit is
 * 10 ms above that baseline p99 (which is ~0.1 ms on a quiet machine), and one failed round is
 * tried again (both printed). LEASEQ_PURGE_JOBS overrides the job count. */
#include <pthread.h>
#include <stdatomic.h>

#include "harness.h"

#define JOBS_DEFAULT 1000000u
#define BATCH 20000u
#define P99_LIMIT_US 10000u
#define PINGS_MAX (1u << 22)

static h_broker g_broker;

typedef struct {
    const char *addr;
    atomic_bool stop;
    atomic_bool measuring;
    uint32_t *lat_us; /* owner: body */
    uint32_t n;
    uint32_t errors;
} pinger;

static void *ping_loop(void *arg)
{
    pinger *p = arg;
    leaseq_opts o = {.client_name = "purge-pinger", .connect_timeout_ms = 5000};
    leaseq *c = NULL;
    if (leaseq_connect(p->addr, &o, &c) != LEASEQ_OK) {
        p->errors++;
        return NULL;
    }
    while (!atomic_load(&p->stop)) {
        uint64_t t0 = h_now_us();
        if (leaseq_ping(c, 5000) != LEASEQ_OK)
            p->errors++;
        uint64_t dt = h_now_us() - t0;
        if (atomic_load(&p->measuring) && p->n < PINGS_MAX)
            p->lat_us[p->n++] = (uint32_t)(dt > UINT32_MAX ? UINT32_MAX : dt);
        h_sleep_ms(1); /* a client that asks often, not a flood */
    }
    leaseq_close(c);
    return NULL;
}

static int cmp_u32(const void *a, const void *b)
{
    uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
    return x < y ? -1 : x > y;
}

static uint64_t ready_of(leaseq *c, const char *queue)
{
    leaseq_inspect_result *r = NULL;
    uint64_t n = UINT64_MAX;
    if (leaseq_inspect(c, queue, &r, 10000) == LEASEQ_OK && r->n_queues == 1) {
        n = 0;
        for (size_t l = 0; l < r->queues[0].n_lanes; l++)
            n += r->queues[0].lanes[l].ready + r->queues[0].lanes[l].delayed;
    }
    leaseq_inspect_free(r);
    return n;
}

/* Pings for about ms milliseconds; returns the p99 in microseconds. */
static uint32_t measure(pinger *p, unsigned ms, uint32_t *p50, uint32_t *max)
{
    p->n = 0;
    atomic_store(&p->measuring, true);
    h_sleep_ms(ms);
    atomic_store(&p->measuring, false);
    qsort(p->lat_us, p->n, sizeof *p->lat_us, cmp_u32);
    *p50 = p->n ? p->lat_us[p->n / 2] : 0;
    *max = p->n ? p->lat_us[p->n - 1] : 0;
    return p->n ? p->lat_us[(uint64_t)p->n * 99 / 100] : 0;
}

/* One round: enqueue jobs, ping for a baseline, purge while pinging. 0 pass, 1 fail, 2 too slow. */
static int round_trip_purge(leaseq *c, uint32_t jobs, leaseq_job_spec *specs, leaseq_enqueue_result *res)
{
    uint64_t t0 = h_now_ms();
    for (uint32_t done = 0; done < jobs;) {
        uint32_t n = jobs - done < BATCH ? jobs - done : BATCH;
        leaseq_err e = leaseq_enqueue_batch(c, specs, n, res, 60000);
        if (e != LEASEQ_OK) {
            h_log("enqueue batch failed: %s %s", leaseq_strerror(e), leaseq_last_error(c));
            return 1;
        }
        for (uint32_t i = 0; i < n; i++)
            if (res[i].err != LEASEQ_OK) {
                h_log("job %u refused: %s", done + i, leaseq_strerror(res[i].err));
                return 1;
            }
        done += n;
    }
    h_log("enqueued %u jobs in %llu ms", jobs, (unsigned long long)(h_now_ms() - t0));
    uint64_t before = ready_of(c, "big");
    if (before != jobs) {
        h_log("ready before the purge: %llu, want %u", (unsigned long long)before, jobs);
        return 1;
    }
    pinger p = {.addr = g_broker.addr};
    p.lat_us = calloc(PINGS_MAX, sizeof *p.lat_us); /* owner: here */
    pthread_t th;
    if (p.lat_us == NULL || pthread_create(&th, NULL, ping_loop, &p) != 0)
        return 1;
    h_sleep_ms(100);
    uint32_t b50, bmax;
    uint32_t base99 = measure(&p, 1000, &b50, &bmax);
    h_log("baseline pings: %u, p50 %.3f ms, p99 %.3f ms, max %.3f ms", p.n, b50 / 1e3, base99 / 1e3, bmax / 1e3);
    p.n = 0;
    atomic_store(&p.measuring, true);
    uint64_t purged = 0;
    t0 = h_now_ms();
    leaseq_err e = leaseq_purge(c, "big", NULL, 0, false, &purged, 120000);
    uint64_t took = h_now_ms() - t0;
    atomic_store(&p.measuring, false);
    atomic_store(&p.stop, true);
    pthread_join(th, NULL);
    if (e != LEASEQ_OK) {
        h_log("purge failed: %s %s", leaseq_strerror(e), leaseq_last_error(c));
        h_dump_tail(g_broker.log_path, 20);
        free(p.lat_us);
        return 1;
    }
    qsort(p.lat_us, p.n, sizeof *p.lat_us, cmp_u32);
    uint32_t p50 = p.n ? p.lat_us[p.n / 2] : 0, p99 = p.n ? p.lat_us[(uint64_t)p.n * 99 / 100] : 0;
    uint32_t max = p.n ? p.lat_us[p.n - 1] : 0;
    free(p.lat_us);
    h_log("purged %llu jobs in %llu ms; pings during the purge: %u, p50 %.3f ms, p99 %.3f ms, max %.3f ms, "
          "errors %u",
          (unsigned long long)purged, (unsigned long long)took, p.n, p50 / 1e3, p99 / 1e3, max / 1e3, p.errors);
    if (purged != jobs) {
        h_log("FAIL: purge reported %llu, want %u", (unsigned long long)purged, jobs);
        return 1;
    }
    if (p.n < 10 || p.errors > 0) {
        h_log("FAIL: too few pings (%u) or ping errors (%u)", p.n, p.errors);
        return 1;
    }
    uint64_t after = ready_of(c, "big");
    if (after != 0) {
        h_log("FAIL: %llu jobs left after the purge", (unsigned long long)after);
        return 1;
    }
    if (p99 >= P99_LIMIT_US + base99) {
        h_log("ping p99 %.3f ms during the purge: over the limit of 10 ms + baseline %.3f ms", p99 / 1e3,
              base99 / 1e3);
        return 2;
    }
    h_log("ping p99 %.3f ms during the purge: under 10 ms + baseline %.3f ms", p99 / 1e3, base99 / 1e3);
    return 0;
}

static int body(const char *tmpdir)
{
    const char *env = getenv("LEASEQ_PURGE_JOBS");
    uint32_t jobs = env != NULL && atoi(env) > 0 ? (uint32_t)atoi(env) : JOBS_DEFAULT;
    if (!h_broker_init(&g_broker, tmpdir))
        return 1;
    g_broker.sync = "none"; /* the enqueue phase is set-up, not what is measured */
    if (!h_broker_start_ready(&g_broker, 10000))
        return 1;
    leaseq *c = NULL;
    leaseq_opts o = {.client_name = "purge-test", .connect_timeout_ms = 5000};
    if (leaseq_connect(g_broker.addr, &o, &c) != LEASEQ_OK)
        return 1;
    leaseq_job_spec *specs = calloc(BATCH, sizeof *specs);   /* owner: body */
    leaseq_enqueue_result *res = calloc(BATCH, sizeof *res); /* owner: body */
    if (specs == NULL || res == NULL)
        return 1;
    for (uint32_t i = 0; i < BATCH; i++)
        specs[i] = (leaseq_job_spec){.queue = "big", .payload = "12345678", .payload_len = 8};
    int rc = round_trip_purge(c, jobs, specs, res);
    if (rc == 2) {
        h_log("second round (the machine is shared; a scheduling hiccup is not the broker's)");
        rc = round_trip_purge(c, jobs, specs, res);
    }
    if (rc != 0)
        h_log("FAIL: %s", rc == 2 ? "ping p99 over the limit in both rounds" : "see above");
    leaseq_close(c);
    free(specs);
    free(res);
    char how[64];
    if (!h_broker_stop(&g_broker, 20000, how, sizeof how)) {
        h_log("FAIL: broker stop: %s", how);
        rc = 1;
    }
    return rc == 0 ? 0 : 1;
}

int main(void)
{
    return h_supervise("test_purge_latency", 240, body);
}
