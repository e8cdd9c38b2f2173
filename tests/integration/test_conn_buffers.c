/* Connection buffers grown for large jobs go back to their starting size once unused: 8
 * producers each store a 600 KiB job and 8 workers each take one, all staying connected. The
 * broker's leaseq_connection_buffer_bytes (GET /metrics) must be above 600 KB right after, and
 * fall to a few KiB per connection within 5 s (the sweep shrinks what a connection has not needed
 * for 1 s, taking back the receive armed into an idle input buffer). Then every connection must
 * still work: a second large job and a small one each, compared byte for byte. The same through
 * the beanstalk port, whose own copy of each connection's input counts in the gauge: 4 puts of
 * 600 KiB and a reserve, then small puts on the same connections. After the clients leave the
 * gauge must hold the HTTP connection's bytes only. And the group-commit batches: one that copied
 * 4 x 600 KiB keeps that memory for the next round (leaseq_batch_buffer_bytes), and gives it
 * back within 5 s once no round has been that big for 1 s. No client may have reconnected. */
#include "overload.h"

#define N_CONNS 8
#define BIG (600u << 10)
#define CALL_MS 15000
#define SMALL_PER_CONN 4096u /* a generous bound: 512 B in, at most a few hundred bytes out */

static int g_http_port, g_bs_port;
static long long g_metric_calls; /* each is one connection the broker accepts */

/* The gauge from GET /metrics, or -1. One connection per call (the broker closes it). */
static long long metric(const char *name)
{
    int fd = h_tcp_connect(g_http_port, 5000);
    if (fd < 0)
        return -1;
    g_metric_calls++;
    const char req[] = "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    static char buf[1 << 20];
    size_t len = 0;
    long long v = -1;
    if (!h_write_all(fd, req, sizeof req - 1))
        goto out;
    uint64_t end = h_now_ms() + 5000;
    while (len + 1 < sizeof buf && h_now_ms() < end) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) != 1)
            continue;
        ssize_t n = read(fd, buf + len, sizeof buf - 1 - len);
        if (n <= 0)
            break;
        len += (size_t)n;
    }
    buf[len] = 0;
    char key[128];
    snprintf(key, sizeof key, "\n%s ", name);
    const char *at = strstr(buf, key);
    if (at != NULL)
        v = atoll(at + strlen(key));
out:
    close(fd);
    return v;
}

static long rss_kib(pid_t pid)
{
    char path[64], line[256];
    snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
    FILE *f = fopen(path, "r");
    long v = -1;
    while (f != NULL && fgets(line, sizeof line, f))
        if (strncmp(line, "RssAnon:", 8) == 0)
            v = atol(line + 8);
    if (f != NULL)
        fclose(f);
    return v;
}

static void fill(uint8_t *p, size_t n, unsigned seed)
{
    uint32_t x = seed * 2654435761u + 1;
    for (size_t i = 0; i < n; i++) {
        x ^= x << 13, x ^= x >> 17, x ^= x << 5;
        p[i] = (uint8_t)x;
    }
}

/* Each producer stores one job of len bytes (seeded by round and index); each worker takes one
 * and acks it. Every payload taken must be one of those stored, byte for byte. */
static int round_trip(leaseq **prod, leaseq **work, size_t len, unsigned round)
{
    static uint8_t want[N_CONNS][BIG];
    for (int i = 0; i < N_CONNS; i++) {
        fill(want[i], len, round * 100u + (unsigned)i);
        leaseq_job_spec js = {.queue = "bufs", .payload = want[i], .payload_len = len};
        uint64_t id = 0;
        leaseq_err e = leaseq_enqueue(prod[i], &js, &id, CALL_MS);
        OV_CHECK(e == LEASEQ_OK, "round %u: enqueue on producer %d: %s", round, i, leaseq_strerror(e));
    }
    bool seen[N_CONNS] = {false};
    for (int i = 0; i < N_CONNS; i++) {
        const char *q[] = {"bufs"};
        leaseq_lease *l = NULL;
        size_t n = 0;
        leaseq_err e = leaseq_dequeue(work[i], q, 1, 1, 5000, 0, &l, &n, CALL_MS);
        OV_CHECK(e == LEASEQ_OK && n == 1, "round %u: dequeue on worker %d: %s, %zu jobs", round, i,
                 leaseq_strerror(e), n);
        int match = -1;
        for (int k = 0; k < N_CONNS && match < 0; k++)
            if (!seen[k] && l[0].payload_len == len && memcmp(l[0].payload, want[k], len) == 0)
                match = k;
        OV_CHECK(match >= 0, "round %u: worker %d got a payload of %zu bytes that no producer sent", round, i,
                 l[0].payload_len);
        seen[match] = true;
        e = leaseq_ack(work[i], l[0].job_id, l[0].lease_token, NULL, 0, CALL_MS);
        leaseq_leases_free(l, n);
        OV_CHECK(e == LEASEQ_OK, "round %u: ack on worker %d: %s", round, i, leaseq_strerror(e));
    }
    return 0;
}

/* Sends a beanstalk command (and body) and reads the answer line into line; true when it starts
 * with want. A RESERVED answer's body is read and checked against body_want. */
static bool bs_cmd(int fd, const char *cmd, const uint8_t *body, size_t blen, const char *want,
                   const uint8_t *body_want, size_t want_len)
{
    if (!h_write_all(fd, cmd, strlen(cmd)) || (body != NULL && (!h_write_all(fd, body, blen) ||
                                                                 !h_write_all(fd, "\r\n", 2))))
        return false;
    static uint8_t in[BIG + 256];
    size_t len = 0, need = 0;
    uint64_t end = h_now_ms() + CALL_MS;
    while (h_now_ms() < end && len < sizeof in) {
        const uint8_t *eol = memchr(in, '\n', len);
        if (eol != NULL && need == 0) {
            if (strncmp((const char *)in, want, strlen(want)) != 0) {
                printf("beanstalk: %s -> %.*s\n", want, (int)(eol - in), (const char *)in);
                return false;
            }
            if (body_want == NULL)
                return true;
            need = (size_t)(eol + 1 - in) + want_len + 2;
        }
        if (need != 0 && len >= need)
            return memcmp(in + (need - want_len - 2), body_want, want_len) == 0;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (poll(&p, 1, 200) != 1)
            continue;
        ssize_t n = read(fd, in + len, sizeof in - len);
        if (n <= 0)
            return false;
        len += (size_t)n;
    }
    return false;
}

/* Polls the gauge until it is at most bound (true) or timeout_ms passes. */
static bool wait_at_most(long long bound, int timeout_ms, long long *last)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    do {
        *last = metric("leaseq_connection_buffer_bytes");
        if (*last >= 0 && *last <= bound)
            return true;
        h_sleep_ms(100);
    } while (h_now_ms() < end);
    return false;
}

static int body(const char *tmpdir)
{
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    g_http_port = h_free_port();
    char http[64];
    snprintf(http, sizeof http, "127.0.0.1:%d", g_http_port);
    g_bs_port = h_free_port();
    char bsl[64];
    snprintf(bsl, sizeof bsl, "127.0.0.1:%d", g_bs_port);
    const char *extra[] = {"--http-listen", http, "--map-size", "256M", "--beanstalk-listen", bsl,
                           "--beanstalk-max-job-size", "1M", NULL};
    OV_CHECK(ov_broker_start(&b, extra, 15000), "broker start");
    long long base = -1;
    OV_CHECK(wait_at_most(SMALL_PER_CONN, 5000, &base), "gauge with no client: %lld", base);

    leaseq *prod[N_CONNS], *work[N_CONNS];
    for (int i = 0; i < N_CONNS; i++) {
        char wid[32];
        snprintf(wid, sizeof wid, "bufs-w%d", i);
        leaseq_opts po = {.client_name = "bufs-producer", .connect_timeout_ms = 5000};
        leaseq_opts wo = {.client_name = "bufs-worker", .worker_id = wid, .connect_timeout_ms = 5000};
        OV_CHECK(leaseq_connect(b.addr, &po, &prod[i]) == LEASEQ_OK, "producer %d connect", i);
        OV_CHECK(leaseq_connect(b.addr, &wo, &work[i]) == LEASEQ_OK, "worker %d connect", i);
    }
    long rss0 = rss_kib(b.pid);
    if (round_trip(prod, work, BIG, 1) != 0)
        return 1;
    long long grown = metric("leaseq_connection_buffer_bytes");
    long rss1 = rss_kib(b.pid);
    printf("buffers: %lld bytes right after %d producers stored and %d workers took a %u-byte job each\n", grown,
           N_CONNS, N_CONNS, BIG);
    OV_CHECK(grown >= (long long)BIG, "the buffers did not grow for the large jobs (%lld bytes)", grown);

    /* The clients reconnect on their own, so a broker that closed the connections it shrank
     * would pass the rest: the connections it accepts from here on must be the gauge reads. */
    long long acc0 = metric("leaseq_connections_accepted_total"), calls0 = g_metric_calls;
    long long shrunk = -1;
    uint64_t t0 = h_now_ms();
    long long bound = (long long)(2 * N_CONNS + 1) * SMALL_PER_CONN;
    OV_CHECK(wait_at_most(bound, 5000, &shrunk), "the buffers stayed at %lld bytes (bound %lld)", shrunk, bound);
    long rss2 = rss_kib(b.pid);
    printf("buffers: %lld bytes %.1f s later, with all %d connections still open (bound %lld); broker anonymous RSS %ld -> "
           "%ld -> %ld KiB\n",
           shrunk, (double)(h_now_ms() - t0) / 1000.0, 2 * N_CONNS, bound, rss0, rss1, rss2);

    /* A batch that copied 2.4 MB of payloads keeps that memory for the next round, and gives it
     * back once no round has been that big for 1 s. */
    {
        enum { BULK = 4 };
        static uint8_t bulk[BIG];
        fill(bulk, BIG, 99);
        leaseq_job_spec js[BULK];
        leaseq_enqueue_result res[BULK];
        for (int i = 0; i < BULK; i++)
            js[i] = (leaseq_job_spec){.queue = "bulk", .payload = bulk, .payload_len = BIG};
        OV_CHECK(leaseq_enqueue_batch(prod[0], js, BULK, res, CALL_MS) == LEASEQ_OK && res[BULK - 1].err == LEASEQ_OK,
                 "bulk enqueue");
        long long held = metric("leaseq_batch_buffer_bytes"), kept = -1;
        OV_CHECK(held >= (long long)BULK * BIG, "the batch kept %lld bytes after copying %u", held, BULK * BIG);
        uint64_t tb = h_now_ms();
        uint64_t end = tb + 5000;
        do {
            kept = metric("leaseq_batch_buffer_bytes");
            if (kept >= 0 && kept <= 3ll * (1 << 20))
                break;
            h_sleep_ms(100);
        } while (h_now_ms() < end);
        printf("batches: %lld bytes kept after a batch of %d x %u bytes, %lld bytes %.1f s later\n", held, BULK, BIG,
               kept, (double)(h_now_ms() - tb) / 1000.0);
        OV_CHECK(kept >= 0 && kept <= 3ll * (1 << 20), "the batches still keep %lld bytes", kept);
    }

    /* every connection works after its buffers went back: large, then small */
    if (round_trip(prod, work, BIG, 2) != 0 || round_trip(prod, work, 100, 3) != 0)
        return 1;
    long long acc1 = metric("leaseq_connections_accepted_total");
    OV_CHECK(acc0 > 0 && acc1 - acc0 == g_metric_calls - calls0,
             "the broker accepted %lld connections, %lld of them the gauge reads: a client reconnected", acc1 - acc0,
             g_metric_calls - calls0);

    /* the beanstalk port: 4 large puts, one reserve of a large job, all connections kept */
    enum { BS_CONNS = 4 };
    int bs[BS_CONNS + 1];
    static uint8_t body[BIG];
    fill(body, BIG, 7);
    char cmd[128];
    snprintf(cmd, sizeof cmd, "put 0 0 60 %u\r\n", BIG);
    for (int i = 0; i <= BS_CONNS; i++)
        OV_CHECK((bs[i] = h_tcp_connect(g_bs_port, 5000)) >= 0, "beanstalk connect %d", i);
    for (int i = 0; i < BS_CONNS; i++)
        OV_CHECK(bs_cmd(bs[i], cmd, body, BIG, "INSERTED ", NULL, 0), "beanstalk put %d", i);
    snprintf(cmd, sizeof cmd, "RESERVED ");
    OV_CHECK(bs_cmd(bs[BS_CONNS], "reserve-with-timeout 5\r\n", NULL, 0, cmd, body, BIG),
             "beanstalk reserve of a large job");
    grown = metric("leaseq_connection_buffer_bytes");
    OV_CHECK(grown >= (long long)BIG, "beanstalk: the buffers did not grow for the large jobs (%lld bytes)", grown);
    t0 = h_now_ms();
    /* a beanstalk connection's loop input stays at 16 KiB: the port copies every byte out, so
     * the receives fill it and it doubles up to there (broker/net/conn.c), and no further */
    bound = (long long)(2 * N_CONNS + 1) * SMALL_PER_CONN + (long long)(BS_CONNS + 1) * (SMALL_PER_CONN + (16 << 10));
    OV_CHECK(wait_at_most(bound, 5000, &shrunk), "beanstalk: the buffers stayed at %lld bytes (bound %lld)", shrunk,
             bound);
    printf("buffers: beanstalk port, %lld bytes after %d puts and a reserve of %u bytes, %lld bytes %.1f s later\n",
           grown, BS_CONNS, BIG, shrunk, (double)(h_now_ms() - t0) / 1000.0);
    for (int i = 0; i < BS_CONNS; i++) {
        OV_CHECK(bs_cmd(bs[i], "put 0 0 60 5\r\n", (const uint8_t *)"small", 5, "INSERTED ", NULL, 0),
                 "beanstalk small put %d after the shrink", i);
    }
    for (int i = 0; i <= BS_CONNS; i++)
        close(bs[i]);

    for (int i = 0; i < N_CONNS; i++) {
        OV_CHECK(leaseq_ping(prod[i], CALL_MS) == LEASEQ_OK, "producer %d ping", i);
        OV_CHECK(leaseq_ping(work[i], CALL_MS) == LEASEQ_OK, "worker %d ping", i);
        leaseq_close(prod[i]);
        leaseq_close(work[i]);
    }
    long long after = -1;
    OV_CHECK(wait_at_most(SMALL_PER_CONN, 5000, &after), "gauge after every client left: %lld", after);
    printf("buffers: %lld bytes after the clients left\n", after);
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop");
    return 0;
}

int main(void)
{
    return h_supervise("test_conn_buffers", 120, body);
}
