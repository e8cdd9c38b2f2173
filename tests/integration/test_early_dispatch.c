/* --dispatch early against a real broker whose map fills up. A parked worker leases jobs while
 * their batches are still on the way to disk (read from the batch, payloads intact). With
 * --high-watermark 100 no enqueue is refused at the door, so the commit itself fails once the
 * 16 MiB map is full. Then:
 *  - the producer gets STORAGE_FULL;
 *  - the worker's lease of that job is revoked (extend and ack: LEASE_LOST);
 *  - every job the producer was told is stored was leased once and is still held;
 *  - after a restart the store holds exactly the stored jobs, each once, payload intact, and
 *    no id a worker saw is issued again. */
#include <pthread.h>
#include <stdatomic.h>

#include "overload.h"

#define PAYLOAD 4000
#define MAX_JOBS 12000
#define BATCH 8
#define FAILS_ENOUGH 300 /* STORAGE_FULL answers before the producer stops */

static void fill_payload(uint8_t *p, uint32_t idx)
{
    for (uint32_t i = 0; i < PAYLOAD; i++)
        p[i] = (uint8_t)(idx * 131u + i * 7u);
    memcpy(p, &idx, sizeof idx);
}

static bool payload_ok(const uint8_t *p, size_t len, uint32_t *idx)
{
    if (len != PAYLOAD)
        return false;
    memcpy(idx, p, sizeof *idx);
    if (*idx >= MAX_JOBS)
        return false;
    uint8_t want[PAYLOAD];
    fill_payload(want, *idx);
    return memcmp(want, p, PAYLOAD) == 0;
}

typedef struct {
    uint64_t job_id, token;
    uint32_t idx;
} held_lease;

typedef struct {
    const char *addr;
    leaseq *c;            /* owner: the test; stays open after the thread ends (closing it would
                           * requeue its leases before they are acked) */
    held_lease *held;     /* owner: the test; MAX_JOBS entries */
    uint32_t n_held;
    atomic_bool stop;
    char failure[160];
} worker_ctx;

static void *worker_main(void *arg)
{
    worker_ctx *w = arg;
    const char *queues[] = {"early"};
    for (;;) {
        leaseq_lease *l = NULL;
        size_t n = 0;
        bool stopping = atomic_load(&w->stop);
        leaseq_err e = leaseq_dequeue(w->c, queues, 1, 64, 200, 600000, &l, &n, 5000);
        if (e != LEASEQ_OK) {
            snprintf(w->failure, sizeof w->failure, "dequeue: %s", leaseq_strerror(e));
            return NULL;
        }
        for (size_t i = 0; i < n; i++) {
            uint32_t idx = 0;
            if (!payload_ok(l[i].payload, l[i].payload_len, &idx) || w->n_held >= MAX_JOBS) {
                snprintf(w->failure, sizeof w->failure, "job %llu: payload damaged (%zu bytes)",
                         (unsigned long long)l[i].job_id, l[i].payload_len);
                leaseq_leases_free(l, n);
                return NULL;
            }
            w->held[w->n_held++] = (held_lease){l[i].job_id, l[i].lease_token, idx};
        }
        leaseq_leases_free(l, n);
        if (n == 0 && stopping)
            return NULL; /* the producer is done and a whole wait found nothing */
    }
}

/* The counter `key=` of the broker's "shutdown complete" line, or -1. */
static long long shutdown_counter(const h_broker *b, const char *key)
{
    FILE *f = fopen(b->log_path, "r");
    if (!f)
        return -1;
    char line[4096];
    long long v = -1;
    while (fgets(line, sizeof line, f)) {
        const char *p = strstr(line, "shutdown complete") ? strstr(line, key) : NULL;
        if (p)
            v = strtoll(p + strlen(key), NULL, 10);
    }
    fclose(f);
    return v;
}

static int body(const char *tmpdir)
{
    static uint8_t outcome[MAX_JOBS]; /* leaseq_err of each index's enqueue; 0xff = not sent */
    static uint8_t leased[MAX_JOBS];
    static held_lease held[MAX_JOBS];
    memset(outcome, 0xff, sizeof outcome);
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    const char *extra[] = {"--dispatch", "early", "--map-size", "16M", "--low-watermark", "100",
                           "--high-watermark", "100", "--http-listen", "off", NULL};
    OV_CHECK(ov_broker_start(&b, extra, 15000), "broker start");

    worker_ctx w = {.addr = b.addr, .held = held};
    leaseq_opts wo = {.client_name = "early-worker", .worker_id = "early-w", .connect_timeout_ms = 5000};
    OV_CHECK(leaseq_connect(b.addr, &wo, &w.c) == LEASEQ_OK, "worker connect");
    pthread_t wt;
    OV_CHECK(pthread_create(&wt, NULL, worker_main, &w) == 0, "worker thread");
    h_sleep_ms(200); /* parked before the first job */

    leaseq *c = NULL;
    leaseq_opts po = {.client_name = "early-producer", .connect_timeout_ms = 5000};
    OV_CHECK(leaseq_connect(b.addr, &po, &c) == LEASEQ_OK, "producer connect");
    static uint8_t bufs[BATCH][PAYLOAD];
    uint32_t idx = 0, stored = 0, full = 0;
    while (idx + BATCH <= MAX_JOBS && full < FAILS_ENOUGH) {
        leaseq_job_spec js[BATCH];
        leaseq_enqueue_result res[BATCH];
        for (uint32_t i = 0; i < BATCH; i++) {
            fill_payload(bufs[i], idx + i);
            js[i] = (leaseq_job_spec){.queue = "early", .payload = bufs[i], .payload_len = PAYLOAD};
        }
        leaseq_err e = leaseq_enqueue_batch(c, js, BATCH, res, 10000);
        OV_CHECK(e == LEASEQ_OK, "enqueue batch: %s", leaseq_strerror(e));
        for (uint32_t i = 0; i < BATCH; i++, idx++) {
            outcome[idx] = (uint8_t)res[i].err;
            OV_CHECK(res[i].err == LEASEQ_OK || res[i].err == LEASEQ_E_STORAGE_FULL, "job %u: %s", idx,
                     leaseq_strerror(res[i].err));
            stored += res[i].err == LEASEQ_OK;
            full += res[i].err == LEASEQ_E_STORAGE_FULL;
        }
    }
    OV_CHECK(full >= FAILS_ENOUGH, "the map never filled: %u jobs stored, %u refused", stored, full);
    atomic_store(&w.stop, true);
    OV_CHECK(pthread_join(wt, NULL) == 0, "join");
    OV_CHECK(w.failure[0] == 0, "worker: %s", w.failure);

    /* Every lease: of a stored job, still held; of a refused one, revoked. Checked with extend,
     * which needs no commit: at a map this full even an ack's commit may not fit. */
    uint32_t live = 0, revoked = 0;
    for (uint32_t i = 0; i < w.n_held; i++) {
        const held_lease *h = &w.held[i];
        OV_CHECK(outcome[h->idx] != 0xff, "job %u leased but never sent", h->idx);
        OV_CHECK(!leased[h->idx], "job %u leased twice", h->idx);
        leased[h->idx] = 1;
        uint64_t exp = 0;
        leaseq_err e = leaseq_extend(w.c, h->job_id, h->token, 600000, &exp, 10000);
        if (outcome[h->idx] == LEASEQ_OK) {
            OV_CHECK(e == LEASEQ_OK, "extend of stored job %u: %s", h->idx, leaseq_strerror(e));
            live++;
        } else {
            OV_CHECK(e == LEASEQ_E_LEASE_LOST, "extend of refused job %u: %s (want LEASE_LOST)", h->idx,
                     leaseq_strerror(e));
            OV_CHECK(leaseq_ack(w.c, h->job_id, h->token, NULL, 0, 10000) == LEASEQ_E_LEASE_LOST,
                     "ack of refused job %u", h->idx);
            revoked++;
        }
    }
    OV_CHECK(live == stored, "%u of %u stored jobs leased", live, stored);
    printf("early: %u stored (all leased), %u refused with STORAGE_FULL, of which %u had been leased before "
           "their commit failed and were revoked\n", stored, full, revoked);
    OV_CHECK(revoked > 0, "no refused job was leased before its commit failed: early dispatch not exercised");
    leaseq_close(w.c);
    leaseq_close(c);
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop");
    long long reads = shutdown_counter(&b, "early_reads="), rev = shutdown_counter(&b, "early_revoked=");
    printf("early: broker counted %lld jobs read from uncommitted batches, %lld revoked\n", reads, rev);
    OV_CHECK(reads >= (long long)revoked && rev >= (long long)revoked, "broker counters %lld / %lld", reads, rev);

    /* The store holds exactly the jobs whose producer was told they are stored, each once. A
     * bigger map (LMDB grows it on open) leaves room for the acks. */
    const char *bigger[] = {"--map-size", "64M", "--http-listen", "off", NULL};
    OV_CHECK(ov_broker_start(&b, bigger, 15000), "restart");
    OV_CHECK(leaseq_connect(b.addr, &po, &c) == LEASEQ_OK, "connect after restart");
    memset(leased, 0, sizeof leased);
    const char *queues[] = {"early"};
    uint32_t back = 0;
    for (;;) {
        leaseq_lease *l = NULL;
        size_t n = 0;
        leaseq_err e = leaseq_dequeue(c, queues, 1, 64, 300, 60000, &l, &n, 5000);
        OV_CHECK(e == LEASEQ_OK, "dequeue after restart: %s", leaseq_strerror(e));
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            uint32_t j = 0;
            OV_CHECK(payload_ok(l[i].payload, l[i].payload_len, &j), "payload damaged after restart");
            OV_CHECK(outcome[j] == LEASEQ_OK, "job %u is stored, but its producer was told %s", j,
                     outcome[j] == 0xff ? "nothing" : leaseq_strerror((leaseq_err)outcome[j]));
            OV_CHECK(!leased[j], "job %u stored twice", j);
            leased[j] = 1;
            OV_CHECK(leaseq_ack(c, l[i].job_id, l[i].lease_token, NULL, 0, 10000) == LEASEQ_OK, "ack after restart");
            back++;
        }
        leaseq_leases_free(l, n);
    }
    OV_CHECK(back == stored, "%u of %u stored jobs came back after the restart", back, stored);
    /* Workers saw ids of jobs that were never stored; a restart must not hand one out again
     * (the stored id counter runs 2^24 ahead in early mode). */
    uint64_t max_seen = 0;
    for (uint32_t i = 0; i < w.n_held; i++)
        max_seen = w.held[i].job_id > max_seen ? w.held[i].job_id : max_seen;
    uint8_t one = 1;
    leaseq_job_spec js1 = {.queue = "early-after", .payload = &one, .payload_len = 1};
    uint64_t id_after = 0;
    OV_CHECK(leaseq_enqueue(c, &js1, &id_after, 10000) == LEASEQ_OK, "enqueue after restart");
    printf("early: highest id a worker saw %llu, first id after the restart %llu\n", (unsigned long long)max_seen,
           (unsigned long long)id_after);
    OV_CHECK(id_after > max_seen + (1ull << 23), "id %llu after the restart, workers saw ids up to %llu",
             (unsigned long long)id_after, (unsigned long long)max_seen);
    leaseq_close(c);
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop after restart");
    return 0;
}

int main(void)
{
    return h_supervise("test_early_dispatch", 120, body);
}
