/* Memory per queued job: RSS of leaseqd with N queued jobs of S bytes against the empty broker.
 *
 *   bench/memory [--jobs 1000000] [--size 1024] [--bin DIR]
 *
 * Prints the anonymous (heap) memory and the whole RSS, each as bytes per job above the empty
 * broker. Payloads live in LMDB, whose map pages are file-backed: they show up as RssFile
 * (page cache the kernel may drop), not as heap; the target is on the heap (<= 150 B per job). */
#include "../integration/harness.h"

static long status_kb(pid_t pid, const char *key)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long v = -1;
    size_t kl = strlen(key);
    while (fgets(line, sizeof line, f))
        if (strncmp(line, key, kl) == 0 && line[kl] == ':')
            v = strtol(line + kl + 1, NULL, 10);
    fclose(f);
    return v;
}

static int g_jobs = 1000000, g_size = 1024;

static int body(const char *tmpdir)
{
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    b.sync = "none"; /* the bench measures memory, not the disk */
    /* h_broker_start has no flag for the map size: a 1 GiB default map is too small for 1 GiB of
     * payloads, so the binary is started by hand here with the harness's layout */
    char listen[64], map[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", b.port);
    snprintf(map, sizeof map, "%lluM", (unsigned long long)((uint64_t)g_jobs * (g_size + 600) / (1 << 20) + 256));
    pid_t parent = getpid();
    pid_t pid = fork();
    if (pid == 0) {
        h_child_init(parent);
        int fd = open(b.log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        char *argv[] = {b.bin, "--listen", listen, "--data-dir", b.data_dir, "--sync", "none", "--map-size", map,
                        NULL};
        execv(b.bin, argv);
        _exit(127);
    }
    b.pid = pid;
    if (!h_broker_wait_ready(&b, 15000))
        return 1;
    leaseq *c = NULL;
    leaseq_opts o = {.client_name = "bench-memory", .connect_timeout_ms = 5000};
    if (leaseq_connect(b.addr, &o, &c) != LEASEQ_OK)
        return 1;
    /* warm the empty broker's paths once (a job in and out) */
    leaseq_job_spec one = {.queue = "mem", .payload = "x", .payload_len = 1};
    uint64_t id;
    leaseq_enqueue(c, &one, &id, 5000);
    const char *qs[] = {"mem"};
    leaseq_lease *l = NULL;
    size_t n = 0;
    if (leaseq_dequeue(c, qs, 1, 1, 0, 0, &l, &n, 5000) == LEASEQ_OK && n == 1)
        leaseq_ack(c, l[0].job_id, l[0].lease_token, NULL, 0, 5000);
    leaseq_leases_free(l, n);
    h_sleep_ms(200);
    long anon0 = status_kb(b.pid, "RssAnon"), rss0 = status_kb(b.pid, "VmRSS");

    enum { CHUNK = 2048 };
    leaseq_job_spec *specs = calloc(CHUNK, sizeof *specs);
    leaseq_enqueue_result *res = calloc(CHUNK, sizeof *res);
    uint8_t *payload = malloc((size_t)g_size);
    memset(payload, 'p', (size_t)g_size);
    for (int i = 0; i < CHUNK; i++)
        specs[i] = (leaseq_job_spec){.queue = "mem", .payload = payload, .payload_len = (size_t)g_size};
    uint64_t t0 = h_now_ms();
    for (int done = 0; done < g_jobs;) {
        size_t k = (size_t)(g_jobs - done < CHUNK ? g_jobs - done : CHUNK);
        if (leaseq_enqueue_batch(c, specs, k, res, 120000) != LEASEQ_OK) {
            printf("enqueue failed: %s\n", leaseq_last_error(c));
            h_dump_tail(b.log_path, 10);
            return 1;
        }
        for (size_t i = 0; i < k; i++)
            if (res[i].err != LEASEQ_OK) {
                printf("job refused: %s\n", leaseq_strerror(res[i].err));
                return 1;
            }
        done += (int)k;
    }
    uint64_t took = h_now_ms() - t0;
    h_sleep_ms(500);
    long anon1 = status_kb(b.pid, "RssAnon"), rss1 = status_kb(b.pid, "VmRSS"), file1 = status_kb(b.pid, "RssFile");
    leaseq_stats *st = NULL;
    uint64_t ready = 0;
    if (leaseq_get_stats(c, "mem", &st, 5000) == LEASEQ_OK) {
        ready = st->queues[0].lanes[0].ready;
        leaseq_stats_free(st);
    }
    double per_anon = (double)(anon1 - anon0) * 1024.0 / g_jobs, per_rss = (double)(rss1 - rss0) * 1024.0 / g_jobs;
    printf("memory: %d queued jobs of %d bytes (ready=%llu), enqueued in %.1f s\n", g_jobs, g_size,
           (unsigned long long)ready, (double)took / 1000.0);
    printf("memory: heap (RssAnon) %ld KiB empty -> %ld KiB: %.1f bytes per job (target <= 150)\n", anon0, anon1,
           per_anon);
    printf("memory: whole RSS %ld KiB -> %ld KiB: %.1f bytes per job (of which file-backed LMDB map pages: "
           "%ld KiB, page cache the kernel can drop)\n", rss0, rss1, per_rss, file1);
    leaseq_close(c);
    char how[64];
    h_broker_stop(&b, 30000, how, sizeof how);
    free(specs);
    free(res);
    free(payload);
    return ready == (uint64_t)g_jobs && per_anon <= 150.0 ? 0 : 1;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--jobs") == 0)
            g_jobs = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            g_size = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--bin") == 0)
            setenv("LEASEQ_BIN", argv[i + 1], 1);
    }
    return h_supervise("bench-memory", 600, body);
}
