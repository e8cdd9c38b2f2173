/* Hostile clients: 100 connections that send random bytes, truncated frames, 4 GiB lengths,
 * garbage protobuf, half frames that stall, no hello at all, or requests they never read the
 * answers to, over and over for --seconds N, while a normal producer/worker pair
 * runs. The pair must see no error and lose no job; the broker must stay up, close the
 * stallers by its timeouts, and exit cleanly (under the ASan build: no leak, no report). */
#include <pthread.h>

#include "overload.h"

#define HOSTILE_MAX 100
static int HOSTILE = HOSTILE_MAX;

/* The acceptance duration, in every `make test` run (normal and ASan builds); --seconds N or
 * LQ_HOSTILE_SECONDS=N for shorter or longer runs. */
static int g_seconds = 30;
static volatile int g_stop;
static int g_port;
static int g_only_kind = -1; /* LQ_HOSTILE_KIND: one behaviour only (debugging) */

enum { B_RANDOM, B_TRUNCATED, B_HUGE, B_GARBAGE_META, B_STALL, B_NO_HELLO, B_NO_READ, B_KINDS };
static const char *const kind_name[B_KINDS] = {"random", "truncated", "4GiB", "garbage-meta", "stall",
                                               "no-hello", "no-read"};
static uint64_t g_done[B_KINDS], g_closed_by_broker[B_KINDS];
static pthread_mutex_t g_mu = PTHREAD_MUTEX_INITIALIZER;

static uint64_t rnd(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

/* Reads until the broker closes (true) or timeout_ms passes (false). */
static bool wait_closed(int fd, int timeout_ms)
{
    uint8_t buf[4096];
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (!g_stop || timeout_ms < 1000) {
        int left = (int)(end - h_now_ms());
        if (left <= 0)
            return false;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int r = poll(&p, 1, left < 200 ? left : 200);
        if (r < 0 && errno != EINTR)
            return false;
        if (r == 1) {
            ssize_t n = read(fd, buf, sizeof buf);
            if (n <= 0)
                return true;
        }
    }
    return false;
}

static void *hostile_main(void *arg)
{
    uint64_t seed = (uint64_t)(uintptr_t)arg * 0x9e3779b97f4a7c15ull + 1;
    uint8_t buf[8192];
    while (!g_stop) {
        int kind = g_only_kind >= 0 ? g_only_kind : (int)(rnd(&seed) % B_KINDS);
        int fd = h_tcp_connect(g_port, 2000);
        if (fd < 0) {
            h_sleep_ms(10);
            continue;
        }
        size_t hello = ov_hello_frame(buf, sizeof buf, 1);
        bool closed = false;
        switch (kind) {
        case B_RANDOM: {
            size_t n = 1 + rnd(&seed) % sizeof buf;
            for (size_t i = 0; i < n; i++)
                buf[i] = (uint8_t)rnd(&seed);
            h_write_all(fd, buf, n);
            closed = wait_closed(fd, 3000);
            break;
        }
        case B_TRUNCATED: {
            h_write_all(fd, buf, hello);
            size_t n = ov_ping_frame(buf, sizeof buf, 2);
            h_write_all(fd, buf, 1 + rnd(&seed) % (n - 1)); /* then hang up mid-frame */
            break;
        }
        case B_HUGE: {
            h_write_all(fd, buf, hello);
            uint8_t hdr[8];
            lq_be32_store(hdr, 0xffffffffu);
            lq_be32_store(hdr + 4, (uint32_t)rnd(&seed));
            h_write_all(fd, hdr, 8);
            closed = wait_closed(fd, 3000);
            break;
        }
        case B_GARBAGE_META: {
            h_write_all(fd, buf, hello);
            uint32_t meta = 1 + (uint32_t)(rnd(&seed) % 512);
            lq_be32_store(buf, 4 + meta);
            lq_be32_store(buf + 4, meta);
            for (uint32_t i = 0; i < meta; i++)
                buf[8 + i] = (uint8_t)rnd(&seed);
            h_write_all(fd, buf, 8 + meta);
            closed = wait_closed(fd, 3000);
            break;
        }
        case B_STALL: {
            h_write_all(fd, buf, hello);
            size_t n = ov_ping_frame(buf, sizeof buf, 2);
            h_write_all(fd, buf, n / 2); /* half a frame, then nothing: the frame timeout */
            closed = wait_closed(fd, 5000);
            break;
        }
        case B_NO_HELLO:
            closed = wait_closed(fd, 5000); /* the hello timeout */
            break;
        case B_NO_READ: {
            /* leases big jobs and never reads them: the broker stops reading it (backpressure),
             * drops it at the send timeout or the output cap, and requeues its leases */
            int small = 4096;
            setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
            h_write_all(fd, buf, hello);
            char *bait[] = {(char *)"bait"};
            Leaseq__Dequeue dq = LEASEQ__DEQUEUE__INIT;
            dq.n_queues = 1;
            dq.queues = bait;
            dq.max_jobs = 8;
            Leaseq__Request r = LEASEQ__REQUEST__INIT;
            r.request_id = 3;
            r.body_case = LEASEQ__REQUEST__BODY_DEQUEUE;
            r.dequeue = &dq;
            size_t one = ov_pack(&r, NULL, 0, buf, sizeof buf), n = one;
            while (n + one <= sizeof buf && n < 10 * one) {
                memcpy(buf + n, buf, one);
                n += one;
            }
            /* one burst, as much as the socket takes; then it only watches for the hang-up */
            int fl = fcntl(fd, F_GETFL);
            fcntl(fd, F_SETFL, fl | O_NONBLOCK);
            for (int k = 0; k < 4; k++)
                if (send(fd, buf, n, MSG_NOSIGNAL) <= 0)
                    break;
            uint64_t end = h_now_ms() + 8000;
            while (!g_stop && h_now_ms() < end) {
                struct pollfd p = {.fd = fd, .events = POLLRDHUP};
                if (poll(&p, 1, 100) == 1 && (p.revents & (POLLRDHUP | POLLHUP | POLLERR))) {
                    closed = true; /* the broker dropped us */
                    break;
                }
            }
            break;
        }
        }
        close(fd);
        if (g_stop && !closed)
            break; /* cut short by the end of the test: not counted */
        pthread_mutex_lock(&g_mu);
        g_done[kind]++;
        g_closed_by_broker[kind] += closed;
        pthread_mutex_unlock(&g_mu);
    }
    return NULL;
}

typedef struct {
    const char *addr;
    uint64_t produced, consumed, errors;
    char err[256];
} pair_ctx;

static void *producer_main(void *arg)
{
    pair_ctx *p = arg;
    leaseq_opts o = {.client_name = "normal-producer", .connect_timeout_ms = 5000};
    leaseq *c = NULL;
    if (leaseq_connect(p->addr, &o, &c) != LEASEQ_OK) {
        p->errors++;
        return NULL;
    }
    while (!g_stop) {
        leaseq_job_spec js = {.queue = "normal", .payload = "job", .payload_len = 3};
        uint64_t id = 0;
        leaseq_err e = leaseq_enqueue(c, &js, &id, 5000);
        if (e != LEASEQ_OK) {
            snprintf(p->err, sizeof p->err, "enqueue: %s (%s)", leaseq_strerror(e), leaseq_last_error(c));
            p->errors++;
            break;
        }
        p->produced++;
        h_sleep_ms(5);
    }
    leaseq_close(c);
    return NULL;
}

static void *worker_main(void *arg)
{
    pair_ctx *p = arg;
    leaseq_opts o = {.client_name = "normal-worker", .connect_timeout_ms = 5000};
    leaseq *c = NULL;
    if (leaseq_connect(p->addr, &o, &c) != LEASEQ_OK) {
        p->errors++;
        return NULL;
    }
    const char *queues[] = {"normal"};
    int idle = 0;
    while (idle < 3) { /* after the stop: until the queue is empty */
        leaseq_lease *l = NULL;
        size_t n = 0;
        leaseq_err e = leaseq_dequeue(c, queues, 1, 16, 200, 0, &l, &n, 5000);
        if (e != LEASEQ_OK) {
            snprintf(p->err, sizeof p->err, "dequeue: %s (%s)", leaseq_strerror(e), leaseq_last_error(c));
            p->errors++;
            break;
        }
        idle = n == 0 && g_stop ? idle + 1 : 0;
        for (size_t i = 0; i < n; i++) {
            e = leaseq_ack(c, l[i].job_id, l[i].lease_token, NULL, 0, 5000);
            if (e != LEASEQ_OK) {
                snprintf(p->err, sizeof p->err, "ack: %s", leaseq_strerror(e));
                p->errors++;
            } else {
                p->consumed++;
            }
        }
        leaseq_leases_free(l, n);
    }
    leaseq_close(c);
    return NULL;
}

static int body(const char *tmpdir)
{
    h_broker b;
    if (!h_broker_init(&b, tmpdir))
        return 1;
    const char *extra[] = {"--frame-timeout-ms", "1000", "--hello-timeout-ms", "1000", "--send-timeout-ms", "2000",
                           "--max-output", "1M", "--max-payload", "64K", NULL};
    OV_CHECK(ov_broker_start(&b, extra, 15000), "broker start");
    g_port = b.port;
    {
        /* bait for the clients that never read: big jobs, requeued whenever one is dropped */
        leaseq *c = NULL;
        leaseq_opts o = {.client_name = "bait", .connect_timeout_ms = 5000};
        OV_CHECK(leaseq_connect(b.addr, &o, &c) == LEASEQ_OK, "connect");
        static uint8_t big[32 << 10];
        leaseq_job_spec js = {.queue = "bait", .payload = big, .payload_len = sizeof big};
        for (int i = 0; i < 200; i++) {
            uint64_t id;
            OV_CHECK(leaseq_enqueue(c, &js, &id, 5000) == LEASEQ_OK, "bait");
        }
        leaseq_close(c);
    }
    pair_ctx pc = {.addr = b.addr};
    pthread_t prod, work, host[HOSTILE_MAX];
    pthread_create(&prod, NULL, producer_main, &pc);
    pthread_create(&work, NULL, worker_main, &pc);
    for (uintptr_t i = 0; i < (uintptr_t)HOSTILE; i++)
        pthread_create(&host[i], NULL, hostile_main, (void *)(i + 1));
    uint64_t end = h_now_ms() + (uint64_t)g_seconds * 1000;
    while (h_now_ms() < end) {
        h_sleep_ms(500);
        OV_CHECK(h_broker_alive(&b), "the broker died");
    }
    g_stop = 1;
    for (int i = 0; i < HOSTILE; i++)
        pthread_join(host[i], NULL);
    pthread_join(prod, NULL);
    pthread_join(work, NULL);
    uint64_t total = 0;
    for (int k = 0; k < B_KINDS; k++) {
        printf("hostile: %-12s connections=%llu closed_by_broker=%llu\n", kind_name[k], (unsigned long long)g_done[k],
               (unsigned long long)g_closed_by_broker[k]);
        total += g_done[k];
    }
    printf("hostile: %d s, %d hostile connections at a time, %llu in all; normal pair produced=%llu consumed=%llu "
           "errors=%llu %s\n", g_seconds, HOSTILE, (unsigned long long)total, (unsigned long long)pc.produced,
           (unsigned long long)pc.consumed, (unsigned long long)pc.errors, pc.err);
    OV_CHECK(pc.errors == 0, "the normal pair saw an error: %s", pc.err);
    OV_CHECK(pc.produced > 0 && pc.consumed == pc.produced, "consumed %llu of %llu", (unsigned long long)pc.consumed,
             (unsigned long long)pc.produced);
    OV_CHECK(g_closed_by_broker[B_HUGE] > 0 && g_closed_by_broker[B_HUGE] == g_done[B_HUGE],
             "4 GiB frames: %llu of %llu closed", (unsigned long long)g_closed_by_broker[B_HUGE],
             (unsigned long long)g_done[B_HUGE]);
    OV_CHECK(g_closed_by_broker[B_STALL] > 0, "no stalled half frame was closed by the frame timeout");
    OV_CHECK(g_closed_by_broker[B_NO_HELLO] > 0, "no silent connection was closed by the hello timeout");
    OV_CHECK(g_closed_by_broker[B_NO_READ] > 0, "no client that never reads was dropped");
    {
        /* every bait job is back (requeued when its reader was dropped) */
        leaseq *c = NULL;
        leaseq_opts o = {.client_name = "bait", .connect_timeout_ms = 5000};
        OV_CHECK(leaseq_connect(b.addr, &o, &c) == LEASEQ_OK, "connect");
        leaseq_stats *st = NULL;
        uint64_t ready = 0, leased = 0, dead = 0;
        for (int tries = 0; tries < 50; tries++) {
            OV_CHECK(leaseq_get_stats(c, "bait", &st, 5000) == LEASEQ_OK, "stats");
            ready = st->queues[0].lanes[0].ready;
            leased = st->queues[0].lanes[0].leased;
            dead = st->queues[0].lanes[0].dead;
            leaseq_stats_free(st);
            if (ready + dead == 200)
                break;
            h_sleep_ms(100);
        }
        /* (each drop costs a delivery attempt: some reach the dead-letter set) */
        printf("hostile: bait jobs ready=%llu dead=%llu leased=%llu after the never-readers went\n",
               (unsigned long long)ready, (unsigned long long)dead, (unsigned long long)leased);
        OV_CHECK(ready + dead == 200 && leased == 0, "leases of dropped never-readers were not requeued");
        leaseq_close(c);
    }
    OV_CHECK(ov_broker_stop_clean(&b), "clean stop");
    return 0;
}

int main(int argc, char **argv)
{
    for (int i = 1; i + 1 < argc; i += 2)
        if (strcmp(argv[i], "--seconds") == 0)
            g_seconds = atoi(argv[i + 1]);
    if (getenv("LQ_HOSTILE_KIND"))
        g_only_kind = atoi(getenv("LQ_HOSTILE_KIND"));
    if (getenv("LQ_HOSTILE_CONNS"))
        HOSTILE = atoi(getenv("LQ_HOSTILE_CONNS"));
    if (getenv("LQ_HOSTILE_SECONDS"))
        g_seconds = atoi(getenv("LQ_HOSTILE_SECONDS"));
    return h_supervise("test_overload_hostile", g_seconds + 90, body);
}
