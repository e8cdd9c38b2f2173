/* Redelivery delay after a frozen worker: how long the jobs of a worker that stopped (SIGSTOP,
 * as a hung GPU driver stops a whole process) wait before another worker gets them.
 *
 *   (a) worker sessions with heartbeats (libleaseq worker API, lease time 30 s so that only
 *       the heartbeat timeout can explain a fast redelivery): heartbeat 1000 ms (the library's
 *       default, 3 s timeout) and 200 ms (600 ms timeout);
 *   (b) lease expiry only: a plain connection without a worker session that leases with
 *       --lease-ms (default 5000, shorter than the usual 30 s to keep the run short).
 *
 * Each run: the frozen worker leases --jobs jobs, is SIGSTOPped, and a parked long-poll dequeue
 * on another connection (issued right after the SIGSTOP) collects them again; the delay is from
 * the SIGSTOP to the last job received. It starts and stops its own leaseqd (--leaseqd PATH, or
 * $LEASEQ_BIN/leaseqd, or ./build/bin/leaseqd) on a free loopback port with a temp data dir.
 *
 *   build/bench/redelivery [--leaseqd PATH] [--runs 5] [--jobs 8] [--hb 1000,200] [--lease-ms 5000]
 */
#include "../integration/harness.h"

#include <inttypes.h>

#include "leaseq.h"

#define MAX_RUNS 50
#define MAX_JOBS 256
#define MAX_HB 8
#define CALL_MS 5000
#define HB_LEASE_MS 30000u

typedef struct {
    const char *leaseqd;
    int runs, jobs, n_hb;
    uint32_t hb[MAX_HB];
    uint32_t lease_ms;
} options;

static options g_opt = {.runs = 5, .jobs = 8, .n_hb = 2, .hb = {1000, 200}, .lease_ms = 5000};

/* ---- the frozen worker (a child process) ----------------------------------------------- */

static void block_handler(void *ctx, const leaseq_lease *job, leaseq_handler_result *res)
{
    (void)ctx;
    (void)job;
    (void)res;
    h_sleep_ms(120000); /* "busy on the GPU" until the bench freezes and kills it */
}

/* hb_ms > 0: a libleaseq worker session; 0: a plain connection that leases and goes quiet. */
static void frozen_main(const char *addr, const char *queue, const char *id, uint32_t hb_ms, int jobs)
{
    if (hb_ms > 0) {
        const char *qs[] = {queue};
        leaseq_worker_opts o = {.addr = addr, .worker_id = id, .queues = qs, .n_queues = 1,
                                .prefetch = (uint32_t)jobs, .heartbeat_ms = hb_ms, .lease_ms = HB_LEASE_MS,
                                .poll_wait_ms = 1000, .call_timeout_ms = CALL_MS};
        leaseq_worker *w = NULL;
        if (leaseq_worker_create(&o, block_handler, NULL, &w) != LEASEQ_OK)
            _exit(3);
        leaseq_worker_run(w);
        _exit(4);
    }
    leaseq *c = NULL;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    const char *qs[] = {queue};
    if (leaseq_connect(addr, NULL, &c) != LEASEQ_OK ||
        leaseq_dequeue(c, qs, 1, (uint32_t)jobs, 2000, g_opt.lease_ms, &ls, &n, CALL_MS) != LEASEQ_OK)
        _exit(3);
    h_sleep_ms(120000);
    _exit(4);
}

/* ---- one run ------------------------------------------------------------------------------ */

static bool wait_leased(leaseq *c, const char *queue, uint64_t want, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (h_now_ms() < end) {
        leaseq_stats *s = NULL;
        uint64_t leased = 0;
        if (leaseq_get_stats(c, queue, &s, CALL_MS) == LEASEQ_OK) {
            for (size_t i = 0; i < s->n_queues; i++)
                for (size_t l = 0; l < s->queues[i].n_lanes; l++)
                    leased += s->queues[i].lanes[l].leased;
            leaseq_stats_free(s);
        }
        if (leased == want)
            return true;
        h_sleep_ms(5);
    }
    return false;
}

/* Returns the delay in ms from the SIGSTOP to the last job redelivered, or < 0 on failure. */
static double one_run(const h_broker *b, leaseq *prod, leaseq *rescuer, uint32_t hb_ms, int run)
{
    char queue[64], id[64];
    snprintf(queue, sizeof queue, "redeliver-hb%u-r%d", hb_ms, run);
    snprintf(id, sizeof id, "frozen-hb%u-r%d", hb_ms, run); /* fresh id: no quarantine across runs */
    leaseq_job_spec js[MAX_JOBS] = {0};
    leaseq_enqueue_result res[MAX_JOBS];
    for (int i = 0; i < g_opt.jobs; i++)
        js[i] = (leaseq_job_spec){.queue = queue, .payload = "img", .payload_len = 3};
    if (leaseq_enqueue_batch(prod, js, (size_t)g_opt.jobs, res, CALL_MS) != LEASEQ_OK) {
        fprintf(stderr, "enqueue: %s\n", leaseq_last_error(prod));
        return -1;
    }
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return -1;
    if (pid == 0) {
        h_child_init(parent);
        frozen_main(b->addr, queue, id, hb_ms, g_opt.jobs);
    }
    double delay = -1;
    leaseq_lease *ls = NULL;
    size_t n = 0, got = 0;
    if (!wait_leased(prod, queue, (uint64_t)g_opt.jobs, 5000)) {
        fprintf(stderr, "the worker did not lease its %d jobs\n", g_opt.jobs);
        goto out;
    }
    /* Heartbeats: freeze at a spread of phases after the last beat (run r of R at r/R of an
     * interval), as a real freeze is unrelated to the beat. Lease only: freeze right after the
     * lease, the far end of the range (a job frozen later in its lease waits less). */
    h_sleep_ms(hb_ms ? hb_ms + (unsigned)((uint64_t)hb_ms * (unsigned)run / (unsigned)g_opt.runs) : 50);
    uint64_t t_stop = h_now_us();
    kill(pid, SIGSTOP);
    const char *qs[] = {queue};
    uint32_t wait_ms = (hb_ms ? 3 * hb_ms : g_opt.lease_ms) + 10000;
    uint64_t end = h_now_ms() + wait_ms;
    while (got < (size_t)g_opt.jobs && h_now_ms() < end) {
        leaseq_err e = leaseq_dequeue(rescuer, qs, 1, (uint32_t)g_opt.jobs - (uint32_t)got, wait_ms, 0, &ls, &n,
                                      (int)wait_ms + CALL_MS);
        if (e != LEASEQ_OK) {
            fprintf(stderr, "dequeue: %s\n", leaseq_last_error(rescuer));
            goto out;
        }
        uint64_t t = h_now_us();
        for (size_t i = 0; i < n; i++)
            leaseq_ack(rescuer, ls[i].job_id, ls[i].lease_token, NULL, 0, CALL_MS);
        leaseq_leases_free(ls, n);
        ls = NULL;
        got += n;
        if (got == (size_t)g_opt.jobs)
            delay = (double)(t - t_stop) / 1000.0;
    }
out:
    kill(pid, SIGKILL);
    waitpid(pid, NULL, 0);
    return delay;
}

/* ---- report ------------------------------------------------------------------------------- */

static int cmp_double(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

static bool scenario(const h_broker *b, leaseq *prod, leaseq *rescuer, uint32_t hb_ms, uint32_t timeout_ms)
{
    double d[MAX_RUNS];
    char label[96], list[512] = "";
    if (hb_ms)
        snprintf(label, sizeof label, "heartbeat %u ms (timeout %u ms), lease %u ms", hb_ms, timeout_ms, HB_LEASE_MS);
    else
        snprintf(label, sizeof label, "lease expiry only, lease %u ms, no heartbeats", g_opt.lease_ms);
    for (int r = 0; r < g_opt.runs; r++) {
        d[r] = one_run(b, prod, rescuer, hb_ms, r);
        if (d[r] < 0) {
            printf("%-58s run %d failed\n", label, r + 1);
            return false;
        }
        size_t len = strlen(list);
        snprintf(list + len, sizeof list - len, "%s%.0f", r ? " " : "", d[r]);
    }
    qsort(d, (size_t)g_opt.runs, sizeof d[0], cmp_double);
    double med = g_opt.runs % 2 ? d[g_opt.runs / 2] : (d[g_opt.runs / 2 - 1] + d[g_opt.runs / 2]) / 2;
    printf("%-58s | %4d | %7.0f | %9.0f | %7.0f | %s\n", label, g_opt.runs, d[0], med, d[g_opt.runs - 1], list);
    return true;
}

static int body(const char *tmpdir)
{
    h_broker b;
    memset(&b, 0, sizeof b);
    if (g_opt.leaseqd)
        snprintf(b.bin, sizeof b.bin, "%s", g_opt.leaseqd);
    else
        h_bin_path(b.bin, sizeof b.bin, "leaseqd");
    if (access(b.bin, X_OK) != 0) {
        printf("leaseqd not found at %s (--leaseqd PATH or LEASEQ_BIN=DIR)\n", b.bin);
        return 1;
    }
    b.port = h_free_port();
    snprintf(b.addr, sizeof b.addr, "127.0.0.1:%d", b.port);
    snprintf(b.data_dir, sizeof b.data_dir, "%s/data", tmpdir);
    snprintf(b.log_path, sizeof b.log_path, "%s/leaseqd.log", tmpdir);
    b.sync = "full";
    if (b.port <= 0 || mkdir(b.data_dir, 0700) != 0 || !h_broker_start_ready(&b, 15000))
        return 1;
    leaseq *prod = NULL, *rescuer = NULL;
    if (leaseq_connect(b.addr, NULL, &prod) != LEASEQ_OK || leaseq_connect(b.addr, NULL, &rescuer) != LEASEQ_OK) {
        printf("cannot connect to %s\n", b.addr);
        return 1;
    }
    printf("redelivery after a frozen worker: %d jobs held, %d runs per row, leaseqd %s (sync full)\n", g_opt.jobs,
           g_opt.runs, b.bin);
    printf("delay = SIGSTOP of the worker -> the last of its jobs received by a parked dequeue\n");
    printf("%-58s | %4s | %7s | %9s | %7s | %s\n", "mode", "runs", "min ms", "median ms", "max ms", "each run (ms)");
    bool ok = true;
    for (int i = 0; i < g_opt.n_hb && ok; i++) {
        leaseq *probe = NULL;
        leaseq_opts po = {.worker_id = "redelivery-probe", .heartbeat_ms = g_opt.hb[i]};
        leaseq_server_info si = {0};
        if (leaseq_connect(b.addr, &po, &probe) == LEASEQ_OK) {
            leaseq_get_server_info(probe, &si);
            leaseq_close(probe);
        }
        ok = scenario(&b, prod, rescuer, g_opt.hb[i], si.heartbeat_timeout_ms);
    }
    if (ok)
        ok = scenario(&b, prod, rescuer, 0, 0);
    leaseq_close(prod);
    leaseq_close(rescuer);
    char how[80];
    h_broker_stop(&b, 10000, how, sizeof how);
    return ok ? 0 : 1;
}

static bool parse_u32(const char *s, uint32_t lo, uint32_t hi, uint32_t *out)
{
    char *end;
    unsigned long v = strtoul(s, &end, 10);
    if (*s == '\0' || *end != '\0' || v < lo || v > hi)
        return false;
    *out = (uint32_t)v;
    return true;
}

static int usage(void)
{
    fprintf(stderr, "usage: redelivery [--leaseqd PATH] [--runs 1..%d] [--jobs 1..%d] [--hb MS[,MS...]] "
                    "[--lease-ms MS]\n", MAX_RUNS, MAX_JOBS);
    return 2;
}

int main(int argc, char **argv)
{
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        uint32_t u;
        if (!v)
            return usage();
        i++;
        if (strcmp(a, "--leaseqd") == 0) {
            g_opt.leaseqd = v;
        } else if (strcmp(a, "--runs") == 0 && parse_u32(v, 1, MAX_RUNS, &u)) {
            g_opt.runs = (int)u;
        } else if (strcmp(a, "--jobs") == 0 && parse_u32(v, 1, MAX_JOBS, &u)) {
            g_opt.jobs = (int)u;
        } else if (strcmp(a, "--lease-ms") == 0 && parse_u32(v, 100, 600000, &u)) {
            g_opt.lease_ms = u;
        } else if (strcmp(a, "--hb") == 0) {
            char buf[128];
            snprintf(buf, sizeof buf, "%s", v);
            g_opt.n_hb = 0;
            for (char *save = NULL, *t = strtok_r(buf, ",", &save); t; t = strtok_r(NULL, ",", &save)) {
                if (g_opt.n_hb == MAX_HB || !parse_u32(t, 10, 60000, &u))
                    return usage();
                g_opt.hb[g_opt.n_hb++] = u;
            }
        } else {
            return usage();
        }
    }
    /* Worst case: every run waits its whole timeout plus set-up. */
    uint64_t per_run = g_opt.lease_ms + 3000;
    for (int i = 0; i < g_opt.n_hb; i++)
        per_run += 4u * g_opt.hb[i] + 3000;
    int limit = (int)((per_run * (uint64_t)g_opt.runs) / 1000 + 60);
    return h_supervise("redelivery", limit, body);
}
