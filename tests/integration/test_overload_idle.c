/* 10,000 idle connections (each said hello, then nothing) are held while a normal client's
 * round trip stays under 5 ms at p99. The connections come from several processes (each has
 * its own descriptor limit); the broker raises its own limit to the hard one at start.
 * Flags: --conns N (10000), --procs N (4). */
#include <dirent.h>

#include "overload.h"

static int g_conns = 10000, g_procs = 4;

/* Opens n connections with a hello each, reports on ready_fd, then holds them until killed. */
static void holder(int port, int n, int ready_fd)
{
    ov_raise_nofile();
    uint8_t hello[128];
    size_t hl = ov_hello_frame(hello, sizeof hello, 1);
    int *fds = calloc((size_t)n, sizeof *fds);
    int ok = 0;
    for (int i = 0; i < n; i++) {
        fds[i] = h_tcp_connect(port, 5000);
        if (fds[i] < 0 || !h_write_all(fds[i], hello, hl))
            break;
        ok++;
    }
    /* every hello answered: the broker holds them all as sessions */
    int answered = 0;
    for (int i = 0; i < ok; i++) {
        Leaseq__Response *r = ov_read_response(fds[i], 10000);
        if (r != NULL && r->body_case == LEASEQ__RESPONSE__BODY_HELLO)
            answered++;
        if (r != NULL)
            leaseq__response__free_unpacked(r, NULL);
    }
    (void)!write(ready_fd, &answered, sizeof answered);
    for (;;)
        pause();
}

static int count_fds(pid_t pid)
{
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/fd", (int)pid);
    DIR *d = opendir(path);
    if (!d)
        return -1;
    int n = 0;
    while (readdir(d) != NULL)
        n++;
    closedir(d);
    return n - 2;
}

static int body(const char *tmpdir)
{
    rlim_t lim = ov_raise_nofile();
    printf("idle: descriptor limit %llu per process\n", (unsigned long long)lim);
    OV_CHECK(lim >= (rlim_t)g_conns + 200, "the hard descriptor limit (%llu) is below %d connections",
             (unsigned long long)lim, g_conns);
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    char maxc[32];
    snprintf(maxc, sizeof maxc, "%d", g_conns + 100);
    const char *extra[] = {"--max-connections", maxc, NULL};
    OV_CHECK(ov_broker_start(&b, extra, 15000), "broker start");

    int pipefd[2];
    OV_CHECK(pipe(pipefd) == 0, "pipe");
    uint64_t t0 = h_now_ms();
    pid_t parent = getpid();
    for (int p = 0; p < g_procs; p++) {
        int n = g_conns / g_procs + (p < g_conns % g_procs);
        pid_t pid = fork();
        if (pid == 0) {
            h_child_init(parent);
            close(pipefd[0]);
            holder(b.port, n, pipefd[1]);
            _exit(0);
        }
        OV_CHECK(pid > 0, "fork");
    }
    int total = 0;
    for (int p = 0; p < g_procs; p++) {
        int got = 0;
        struct pollfd pf = {.fd = pipefd[0], .events = POLLIN};
        OV_CHECK(poll(&pf, 1, 120000) == 1 && read(pipefd[0], &got, sizeof got) == (ssize_t)sizeof got,
                 "a holder did not report");
        total += got;
    }
    int broker_fds = count_fds(b.pid);
    printf("idle: %d connections said hello and are held (broker has %d descriptors open), set up in %.1f s\n",
           total, broker_fds, (double)(h_now_ms() - t0) / 1000.0);
    OV_CHECK(total == g_conns, "only %d of %d connections were accepted", total, g_conns);
    OV_CHECK(broker_fds >= g_conns, "the broker holds %d descriptors", broker_fds);

    /* a normal client's round trips while they are all held */
    leaseq *c = NULL;
    leaseq_opts o = {.client_name = "idle-rtt", .connect_timeout_ms = 5000};
    OV_CHECK(leaseq_connect(b.addr, &o, &c) == LEASEQ_OK, "connect: %s", "refused");
    enum { N = 2000 };
    static uint64_t rtt[N];
    for (int i = 0; i < N; i++) {
        uint64_t s = h_now_us();
        OV_CHECK(leaseq_ping(c, 5000) == LEASEQ_OK, "ping %d", i);
        rtt[i] = h_now_us() - s;
        if (i % 100 == 99) {
            leaseq_job_spec js = {.queue = "idle", .payload = "x", .payload_len = 1};
            uint64_t id;
            OV_CHECK(leaseq_enqueue(c, &js, &id, 5000) == LEASEQ_OK, "enqueue");
        }
    }
    uint64_t p50 = ov_percentile(rtt, N, 50), p99 = ov_percentile(rtt, N, 99), max = rtt[N - 1];
    printf("idle: %d idle connections held; ping round trip p50=%llu us p99=%llu us max=%llu us (bound p99 < 5000)\n",
           total, (unsigned long long)p50, (unsigned long long)p99, (unsigned long long)max);
    OV_CHECK(p99 < 5000, "p99 round trip %llu us", (unsigned long long)p99);
    leaseq_close(c);
    /* still all there: none timed out (they said hello) */
    broker_fds = count_fds(b.pid);
    OV_CHECK(broker_fds >= g_conns, "connections were dropped: broker holds %d descriptors", broker_fds);
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop");
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--conns") == 0)
            g_conns = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--procs") == 0)
            g_procs = atoi(argv[i + 1]);
    }
    return h_supervise("test_overload_idle", 240, body);
}
