/* Storage watermarks with a small map: a sheddable lane is refused first (low watermark), then
 * every lane (high watermark), with STORAGE_FULL; leases and acks keep working and drain the
 * queue; enqueues resume by themselves; after a restart mdb_stat reads the store cleanly and
 * every surviving job is delivered with its payload intact. */
#include "overload.h"

#define PAYLOAD 4000
#define MAX_JOBS 20000

static void fill_payload(uint8_t *p, uint32_t idx)
{
    for (uint32_t i = 0; i < PAYLOAD; i++)
        p[i] = (uint8_t)(idx * 131u + i * 7u);
}

static bool payload_ok(const uint8_t *p, size_t len, uint32_t *idx)
{
    if (len != PAYLOAD)
        return false;
    memcpy(idx, p, sizeof *idx);
    uint8_t want[PAYLOAD];
    fill_payload(want, *idx);
    memcpy(want, idx, sizeof *idx);
    return memcmp(want, p, PAYLOAD) == 0;
}

/* Enqueues one job of lane; the payload starts with its index. */
static leaseq_err put(leaseq *c, const char *lane, uint32_t idx)
{
    static uint8_t buf[PAYLOAD];
    fill_payload(buf, idx);
    memcpy(buf, &idx, sizeof idx);
    leaseq_job_spec js = {.queue = "disk", .lane = lane, .payload = buf, .payload_len = PAYLOAD};
    uint64_t id = 0;
    return leaseq_enqueue(c, &js, &id, 10000);
}

static int run_mdb_stat(const char *dir)
{
    char cmd[1024];
    snprintf(cmd, sizeof cmd, "mdb_stat -a '%s' >/dev/null 2>&1 && mdb_stat -ff '%s' >/dev/null 2>&1", dir, dir);
    int rc = system(cmd);
    return WIFEXITED(rc) ? WEXITSTATUS(rc) : 1;
}

static int body(const char *tmpdir)
{
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    const char *extra[] = {"--map-size", "16M", "--lane-config", "disk/bulk:sheddable=1", "--lane-config",
                           "disk/prio:weight=1", NULL};
    OV_CHECK(ov_broker_start(&b, extra, 15000), "broker start");
    leaseq *c = NULL;
    leaseq_opts o = {.client_name = "disk", .connect_timeout_ms = 5000};
    OV_CHECK(leaseq_connect(b.addr, &o, &c) == LEASEQ_OK, "connect");
    static bool stored[MAX_JOBS];
    uint32_t idx = 0, bulk = 0, prio = 0;

    /* 1. fill the sheddable lane until the low watermark refuses it */
    leaseq_err e = LEASEQ_OK;
    while (idx < MAX_JOBS && (e = put(c, "bulk", idx)) == LEASEQ_OK) {
        stored[idx++] = true;
        bulk++;
    }
    OV_CHECK(e == LEASEQ_E_STORAGE_FULL, "bulk stopped with %s after %u jobs", leaseq_strerror(e), bulk);
    OV_CHECK(ov_log_has(&b, "above the low watermark"), "no log line for the low watermark");
    idx++; /* that index was refused */
    /* 2. the other lane still takes jobs, until the high watermark */
    while (idx < MAX_JOBS && (e = put(c, "prio", idx)) == LEASEQ_OK) {
        stored[idx++] = true;
        prio++;
    }
    OV_CHECK(e == LEASEQ_E_STORAGE_FULL, "prio stopped with %s", leaseq_strerror(e));
    OV_CHECK(prio > 0, "the non-sheddable lane was refused with the sheddable one");
    idx++;
    OV_CHECK(put(c, "bulk", idx++) == LEASEQ_E_STORAGE_FULL, "bulk taken above the high watermark");
    OV_CHECK(ov_log_has(&b, "above the high watermark"), "no log line for the high watermark");
    printf("disk: map 16 MiB, %u-byte jobs: sheddable lane refused after %u jobs, every lane after %u more\n",
           PAYLOAD, bulk, prio);

    /* 3. stats, leases and acks keep working: drain 70 % */
    leaseq_stats *st = NULL;
    OV_CHECK(leaseq_get_stats(c, "disk", &st, 5000) == LEASEQ_OK, "stats at the high watermark");
    leaseq_stats_free(st);
    const char *queues[] = {"disk"};
    uint32_t to_drain = (bulk + prio) * 7 / 10, drained = 0;
    while (drained < to_drain) {
        leaseq_lease *l = NULL;
        size_t n = 0;
        uint32_t want = to_drain - drained < 64 ? to_drain - drained : 64;
        e = leaseq_dequeue(c, queues, 1, want, 0, 60000, &l, &n, 10000);
        OV_CHECK(e == LEASEQ_OK && n > 0, "dequeue while full: %s", leaseq_strerror(e));
        for (size_t i = 0; i < n; i++) {
            uint32_t j;
            OV_CHECK(payload_ok(l[i].payload, l[i].payload_len, &j) && j < MAX_JOBS && stored[j], "bad payload");
            e = leaseq_ack(c, l[i].job_id, l[i].lease_token, NULL, 0, 10000);
            OV_CHECK(e == LEASEQ_OK, "ack while full: %s", leaseq_strerror(e));
            stored[j] = false;
        }
        drained += (uint32_t)n;
        leaseq_leases_free(l, n);
    }
    /* 4. enqueues resume by themselves, both lanes */
    e = put(c, "prio", idx);
    OV_CHECK(e == LEASEQ_OK, "prio after the drain: %s", leaseq_strerror(e));
    stored[idx++] = true;
    e = put(c, "bulk", idx);
    OV_CHECK(e == LEASEQ_OK, "bulk after the drain: %s", leaseq_strerror(e));
    stored[idx++] = true;
    OV_CHECK(ov_log_has(&b, "enqueues resume"), "no log line for the way down");
    leaseq_close(c);
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop");

    /* 5. the store is intact: mdb_stat, then every surviving job, once */
    OV_CHECK(run_mdb_stat(b.data_dir) == 0, "mdb_stat failed on %s", b.data_dir);
    OV_CHECK(ov_broker_start(&b, extra, 15000), "restart");
    OV_CHECK(leaseq_connect(b.addr, &o, &c) == LEASEQ_OK, "connect after restart");
    uint32_t want_left = 0, got = 0;
    for (uint32_t i = 0; i < MAX_JOBS; i++)
        want_left += stored[i];
    for (;;) {
        leaseq_lease *l = NULL;
        size_t n = 0;
        e = leaseq_dequeue(c, queues, 1, 64, 100, 60000, &l, &n, 10000);
        OV_CHECK(e == LEASEQ_OK, "dequeue after restart: %s", leaseq_strerror(e));
        if (n == 0)
            break;
        for (size_t i = 0; i < n; i++) {
            uint32_t j;
            OV_CHECK(payload_ok(l[i].payload, l[i].payload_len, &j) && j < MAX_JOBS, "payload damaged");
            OV_CHECK(stored[j], "job %u delivered twice or never stored", j);
            stored[j] = false;
            OV_CHECK(leaseq_ack(c, l[i].job_id, l[i].lease_token, NULL, 0, 10000) == LEASEQ_OK, "ack");
            got++;
        }
        leaseq_leases_free(l, n);
    }
    printf("disk: after the restart %u of %u surviving jobs read back intact\n", got, want_left);
    OV_CHECK(got == want_left, "%u jobs lost", want_left - got);
    leaseq_close(c);
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop after restart");
    OV_CHECK(run_mdb_stat(b.data_dir) == 0, "mdb_stat failed at the end");
    return 0;
}

int main(void)
{
    return h_supervise("test_overload_disk", 120, body);
}
