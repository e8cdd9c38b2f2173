/* Integration test of job outcomes against a real leaseqd: waits (result bytes, dead, timeout,
 * a job that finished in a batch still committing), result retention, idempotency duplicates
 * of a job still pending, keep_leases_on_close, leases released when a dequeue reply is full,
 * and the Workers / ClearSuspect admin calls.
 *
 * Raw frames are used where the test needs two requests in one loop pass of the broker
 * (pipelined in one write), which the blocking client library cannot do. */
#include "harness.h"

#include "leaseq.h"
#include "leaseq.pb-c.h"
#include "proto/frame.h"

#define CALL_MS 5000
#define RETENTION_MS 300

#define CHECK(cond, ...)                                                                          \
    do {                                                                                          \
        if (!(cond)) {                                                                            \
            h_log("FAIL %s:%d: %s", __FILE__, __LINE__, #cond);                                   \
            h_log(__VA_ARGS__);                                                                   \
            return 1;                                                                             \
        }                                                                                         \
    } while (0)

static h_broker g_broker;

/* Like h_broker_start, with the flags this test needs. */
static bool start_broker(h_broker *b, int timeout_ms)
{
    char listen[64], retention[32];
    snprintf(listen, sizeof listen, "127.0.0.1:%d", b->port);
    snprintf(retention, sizeof retention, "%d", RETENTION_MS);
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        h_child_init(parent);
        int fd = open(b->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        char *argv[] = {b->bin, "--listen", listen, "--data-dir", b->data_dir, "--sync", "full",
                        "--result-retention", retention, "--max-payload", "4M", NULL};
        execv(b->bin, argv);
        _exit(127);
    }
    b->pid = pid;
    return h_broker_wait_ready(b, timeout_ms);
}

static leaseq *conn(const char *worker, uint32_t hb_ms, bool keep)
{
    leaseq_opts o = {.client_name = "test-results", .worker_id = worker, .heartbeat_ms = hb_ms,
                     .keep_leases_on_close = keep};
    leaseq *c = NULL;
    leaseq_err e = leaseq_connect(g_broker.addr, &o, &c);
    if (e != LEASEQ_OK)
        h_log("connect: %s", leaseq_strerror(e));
    return c;
}

static uint64_t put(leaseq *c, const char *q, const char *key, uint32_t max_attempts, const void *p, size_t n)
{
    leaseq_job_spec s = {.queue = q, .idempotency_key = key, .max_attempts = max_attempts, .payload = p,
                         .payload_len = n};
    uint64_t id = 0;
    leaseq_err e = leaseq_enqueue(c, &s, &id, CALL_MS);
    if (e != LEASEQ_OK)
        h_log("enqueue: %s %s", leaseq_strerror(e), leaseq_last_error(c));
    return id;
}

static size_t take(leaseq *c, const char *q, uint32_t max, leaseq_lease **ls)
{
    const char *qs[] = {q};
    size_t n = 0;
    *ls = NULL;
    leaseq_err e = leaseq_dequeue(c, qs, 1, max, 1000, 60000, ls, &n, CALL_MS);
    if (e != LEASEQ_OK)
        h_log("dequeue: %s %s", leaseq_strerror(e), leaseq_last_error(c));
    return n;
}

/* ---- raw frames ---------------------------------------------------------------------------- */

static size_t pack(uint8_t *buf, size_t cap, Leaseq__Request *r, const void *payload, uint32_t plen)
{
    size_t m = leaseq__request__get_packed_size(r);
    if (8 + m + plen > cap)
        return 0;
    lq_frame_header(buf, (uint32_t)m, plen);
    leaseq__request__pack(r, buf + 8);
    if (plen > 0)
        memcpy(buf + 8 + m, payload, plen);
    return 8 + m + plen;
}

static bool send_hello(int fd)
{
    Leaseq__Hello h = LEASEQ__HELLO__INIT;
    h.protocol_version = 1;
    Leaseq__Request r = LEASEQ__REQUEST__INIT;
    r.request_id = 1;
    r.body_case = LEASEQ__REQUEST__BODY_HELLO;
    r.hello = &h;
    uint8_t buf[256];
    size_t n = pack(buf, sizeof buf, &r, NULL, 0);
    return n > 0 && h_write_all(fd, buf, n);
}

/* Input of the one raw connection open at a time (replies may come in one read). */
static uint8_t rbuf[8 << 20];
static size_t rhave;

static int raw_connect(void)
{
    rhave = 0;
    int fd = h_tcp_connect(g_broker.port, 2000);
    return fd >= 0 && send_hello(fd) ? fd : -1;
}

/* Reads one response (2 s at most); payload bytes go to *payload (malloc'd, may be NULL). */
static Leaseq__Response *recv_resp(int fd, uint8_t **payload, uint32_t *plen)
{
    uint64_t end = h_now_ms() + 2000;
    for (;;) {
        lq_frame f;
        size_t used = 0, need = 0;
        if (rhave >= 8 && lq_frame_parse(rbuf, rhave, 8u << 20, &f, &used, &need) == LQ_FRAME_OK) {
            Leaseq__Response *r = leaseq__response__unpack(NULL, f.meta_len, f.meta);
            if (payload != NULL) {
                *payload = f.payload_len ? malloc(f.payload_len) : NULL;
                if (*payload != NULL)
                    memcpy(*payload, f.payload, f.payload_len);
                *plen = f.payload_len;
            }
            memmove(rbuf, rbuf + used, rhave - used);
            rhave -= used;
            return r;
        }
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(end - h_now_ms());
        if (left <= 0 || poll(&p, 1, left) != 1)
            return NULL;
        ssize_t k = read(fd, rbuf + rhave, sizeof rbuf - rhave);
        if (k <= 0)
            return NULL;
        rhave += (size_t)k;
    }
}

/* Reads n responses, in whatever order they come, into rs[] by request id 2..n+1. */
static bool recv_n(int fd, Leaseq__Response **rs, uint8_t **payloads, uint32_t *plens, int n)
{
    for (int i = 0; i < n; i++) {
        uint8_t *p = NULL;
        uint32_t pl = 0;
        Leaseq__Response *r = recv_resp(fd, &p, &pl);
        if (r == NULL || r->request_id < 2 || r->request_id >= (uint64_t)n + 2) {
            h_log("recv_n: bad or missing response %d", i);
            free(p);
            return false;
        }
        rs[r->request_id - 2] = r;
        payloads[r->request_id - 2] = p;
        plens[r->request_id - 2] = pl;
    }
    return true;
}

/* ---- the tests ----------------------------------------------------------------------------- */

/* A 1 MiB result reaches a waiting producer intact; a wait that runs out leaves the job alone;
 * a dead job's wait says why. */
static int t_wait_outcomes(leaseq *p, leaseq *w)
{
    size_t n = 1u << 20;
    uint8_t *big = malloc(n);
    CHECK(big != NULL, "malloc");
    for (size_t i = 0; i < n; i++)
        big[i] = (uint8_t)(i * 2654435761u >> 13);
    uint64_t id = put(p, "res", NULL, 0, "in", 2);
    CHECK(id != 0, "enqueue");
    leaseq_outcome o = {0};
    CHECK(leaseq_wait(p, id, 100, &o, CALL_MS) == LEASEQ_E_DEADLINE_EXCEEDED, "wait should time out");
    leaseq_lease *ls;
    CHECK(take(w, "res", 1, &ls) == 1 && ls[0].job_id == id && ls[0].attempt == 1, "job untouched by the wait");
    CHECK(leaseq_ack(w, id, ls[0].lease_token, big, n, CALL_MS) == LEASEQ_OK, "ack: %s", leaseq_last_error(w));
    leaseq_leases_free(ls, 1);
    CHECK(leaseq_wait(p, id, 1000, &o, CALL_MS) == LEASEQ_OK, "wait: %s", leaseq_last_error(p));
    CHECK(o.state == LEASEQ_STATE_DONE && o.result_len == n && memcmp(o.result, big, n) == 0, "1 MiB result intact");
    leaseq_outcome_free(&o);
    free(big);

    uint64_t d = put(p, "res", NULL, 1, "x", 1);
    CHECK(take(w, "res", 1, &ls) == 1 && ls[0].job_id == d, "lease the doomed job");
    leaseq_nack_opts no = {.error = "gpu fell off the bus"};
    bool dead = false;
    CHECK(leaseq_nack(w, d, ls[0].lease_token, &no, &dead, CALL_MS) == LEASEQ_OK && dead, "nack to dead");
    leaseq_leases_free(ls, 1);
    CHECK(leaseq_wait(p, d, 1000, &o, CALL_MS) == LEASEQ_OK, "wait dead: %s", leaseq_last_error(p));
    CHECK(o.state == LEASEQ_STATE_DEAD && strcmp(o.error, "gpu fell off the bus") == 0, "dead with its error, got %s '%s'",
          leaseq_state_name(o.state), o.error);
    leaseq_outcome_free(&o);
    CHECK(leaseq_wait(p, 999999, 100, &o, CALL_MS) == LEASEQ_E_NOT_FOUND, "unknown job");
    h_log("wait outcomes: ok");
    return 0;
}

/* Ack and Wait pipelined on one connection: the wait arrives while the job's finish is in the
 * open batch, so the core no longer knows the job; the answer must still be its result. */
static int t_wait_during_commit(leaseq *p, leaseq *w)
{
    for (int round = 0; round < 20; round++) {
        uint64_t id = put(p, "commit", NULL, 0, "j", 1);
        leaseq_lease *ls;
        CHECK(take(w, "commit", 1, &ls) == 1 && ls[0].job_id == id, "lease");
        uint64_t token = ls[0].lease_token;
        leaseq_leases_free(ls, 1);
        int fd = raw_connect();
        CHECK(fd >= 0, "raw connect");
        Leaseq__Response *hello = recv_resp(fd, NULL, NULL);
        CHECK(hello != NULL && hello->error == NULL, "raw hello");
        leaseq__response__free_unpacked(hello, NULL);

        Leaseq__Ack a = LEASEQ__ACK__INIT;
        a.job_id = id;
        a.lease_token = token;
        a.result_len = 3;
        Leaseq__Request ra = LEASEQ__REQUEST__INIT;
        ra.request_id = 2;
        ra.body_case = LEASEQ__REQUEST__BODY_ACK;
        ra.ack = &a;
        Leaseq__Wait wt = LEASEQ__WAIT__INIT;
        wt.job_id = id;
        wt.timeout_ms = 1000;
        Leaseq__Request rw = LEASEQ__REQUEST__INIT;
        rw.request_id = 3;
        rw.body_case = LEASEQ__REQUEST__BODY_WAIT;
        rw.wait = &wt;
        uint8_t buf[512];
        size_t n1 = pack(buf, sizeof buf, &ra, "abc", 3);
        size_t n2 = pack(buf + n1, sizeof buf - n1, &rw, NULL, 0);
        CHECK(n1 > 0 && n2 > 0 && h_write_all(fd, buf, n1 + n2), "pipelined write");
        Leaseq__Response *rs[2] = {0};
        uint8_t *pl[2] = {0};
        uint32_t pn[2] = {0};
        CHECK(recv_n(fd, rs, pl, pn, 2), "two replies");
        CHECK(rs[0]->error == NULL && rs[0]->body_case == LEASEQ__RESPONSE__BODY_ACK, "ack ok");
        CHECK(rs[1]->error == NULL && rs[1]->body_case == LEASEQ__RESPONSE__BODY_WAIT,
              "round %d: wait must see the result, got %s", round, rs[1]->error ? rs[1]->error->message : "?");
        CHECK(rs[1]->wait->state == LEASEQ__JOB_STATE__DONE && pn[1] == 3 && memcmp(pl[1], "abc", 3) == 0,
              "wait result");
        CHECK(rs[1]->wait->job_id == id, "WaitReply.job_id");
        for (int i = 0; i < 2; i++) {
            leaseq__response__free_unpacked(rs[i], NULL);
            free(pl[i]);
        }
        close(fd);
    }
    h_log("wait during commit: ok");
    return 0;
}

/* Two enqueues with one key in one loop pass: the second is a duplicate of a job still
 * pending, answered after the same commit with the same id. */
static int t_duplicate_pending(leaseq *p)
{
    int fd = raw_connect();
    CHECK(fd >= 0, "raw connect");
    Leaseq__Response *hello = recv_resp(fd, NULL, NULL);
    CHECK(hello != NULL && hello->error == NULL, "raw hello");
    leaseq__response__free_unpacked(hello, NULL);
    uint8_t buf[1024];
    size_t len = 0;
    for (int i = 0; i < 2; i++) {
        Leaseq__EnqueueItem it = LEASEQ__ENQUEUE_ITEM__INIT;
        it.queue = (char *)"dup";
        it.idempotency_key = (char *)"same-key";
        it.payload_len = 4;
        Leaseq__EnqueueItem *items[] = {&it};
        Leaseq__Enqueue en = LEASEQ__ENQUEUE__INIT;
        en.n_items = 1;
        en.items = items;
        Leaseq__Request r = LEASEQ__REQUEST__INIT;
        r.request_id = 2 + (uint64_t)i;
        r.body_case = LEASEQ__REQUEST__BODY_ENQUEUE;
        r.enqueue = &en;
        size_t n = pack(buf + len, sizeof buf - len, &r, "data", 4);
        CHECK(n > 0, "pack");
        len += n;
    }
    CHECK(h_write_all(fd, buf, len), "pipelined enqueues");
    Leaseq__Response *rs[2] = {0};
    uint8_t *pl[2] = {0};
    uint32_t pn[2] = {0};
    CHECK(recv_n(fd, rs, pl, pn, 2), "two replies");
    const Leaseq__EnqueueResult *a = rs[0]->enqueue->results[0], *b = rs[1]->enqueue->results[0];
    CHECK(a->error == NULL && b->error == NULL, "both stored");
    CHECK(a->job_id == b->job_id && a->job_id != 0 && !a->duplicate && b->duplicate, "one job, second a duplicate");
    uint64_t id = a->job_id;
    for (int i = 0; i < 2; i++)
        leaseq__response__free_unpacked(rs[i], NULL);
    close(fd);
    /* one job in the queue, and a third enqueue through the library collapses too */
    leaseq_enqueue_result er;
    leaseq_job_spec s = {.queue = "dup", .idempotency_key = "same-key", .payload = "data", .payload_len = 4};
    CHECK(leaseq_enqueue_batch(p, &s, 1, &er, CALL_MS) == LEASEQ_OK && er.err == LEASEQ_OK, "third enqueue");
    CHECK(er.duplicate && er.job_id == id, "third is a duplicate too");
    leaseq_stats *st = NULL;
    CHECK(leaseq_get_stats(p, "dup", &st, CALL_MS) == LEASEQ_OK && st->n_queues == 1, "stats");
    uint64_t ready = st->queues[0].lanes[0].ready;
    leaseq_stats_free(st);
    CHECK(ready == 1, "one job, got %llu", (unsigned long long)ready);
    h_log("duplicate of a pending job: ok");
    return 0;
}

/* Lease on a keep_leases_on_close connection, close it, ack from another connection. */
static int t_keep_leases(leaseq *p)
{
    uint64_t a = put(p, "keep", NULL, 0, "a", 1), b = put(p, "keep", NULL, 0, "b", 1);
    leaseq *cli = conn(NULL, 0, true);
    CHECK(cli != NULL, "connect");
    leaseq_lease *ls;
    CHECK(take(cli, "keep", 1, &ls) == 1 && ls[0].job_id == a, "lease a");
    uint64_t tok_a = ls[0].lease_token;
    leaseq_leases_free(ls, 1);
    leaseq_close(cli);
    leaseq *plain = conn(NULL, 0, false);
    CHECK(plain != NULL, "connect");
    CHECK(take(plain, "keep", 1, &ls) == 1 && ls[0].job_id == b, "lease b");
    uint64_t tok_b = ls[0].lease_token;
    leaseq_leases_free(ls, 1);
    leaseq_close(plain);
    h_sleep_ms(100); /* the broker sees both closes */
    CHECK(leaseq_ack(p, a, tok_a, "ra", 2, CALL_MS) == LEASEQ_OK, "ack after close: %s", leaseq_last_error(p));
    CHECK(leaseq_ack(p, b, tok_b, NULL, 0, CALL_MS) == LEASEQ_E_LEASE_LOST, "plain close requeued b");
    leaseq *w = conn(NULL, 0, false);
    CHECK(take(w, "keep", 1, &ls) == 1 && ls[0].job_id == b, "b is ready again");
    leaseq_leases_free(ls, 1);
    leaseq_close(w);
    h_log("keep_leases_on_close: ok");
    return 0;
}

/* Jobs that do not fit one dequeue reply are released without costing an attempt. */
static int t_release_reply_full(leaseq *p, leaseq *w)
{
    size_t n = 3u << 20; /* --max-payload 4M: one job per reply */
    uint8_t *big = calloc(1, n);
    CHECK(big != NULL, "calloc");
    uint64_t ids[3];
    for (int i = 0; i < 3; i++)
        ids[i] = put(p, "full", NULL, 0, big, n);
    free(big);
    for (int i = 0; i < 3; i++) {
        leaseq_lease *ls;
        size_t k = take(w, "full", 3, &ls);
        CHECK(k == 1 && ls[0].job_id == ids[i] && ls[0].attempt == 1, "one job a reply, attempt 1 (got %zu, attempt %u)",
              k, k ? ls[0].attempt : 0);
        CHECK(leaseq_ack(w, ls[0].job_id, ls[0].lease_token, NULL, 0, CALL_MS) == LEASEQ_OK, "ack");
        leaseq_leases_free(ls, k);
    }
    h_log("release on a full reply: ok");
    return 0;
}

/* Outcomes are kept for --result-retention, then NOT_FOUND. */
static int t_retention(leaseq *p, leaseq *w)
{
    uint64_t id = put(p, "ret", NULL, 0, "r", 1);
    leaseq_lease *ls;
    CHECK(take(w, "ret", 1, &ls) == 1, "lease");
    CHECK(leaseq_ack(w, id, ls[0].lease_token, "kept", 4, CALL_MS) == LEASEQ_OK, "ack");
    leaseq_leases_free(ls, 1);
    leaseq_outcome o = {0};
    CHECK(leaseq_wait(p, id, 100, &o, CALL_MS) == LEASEQ_OK && o.result_len == 4, "kept for a while");
    leaseq_outcome_free(&o);
    h_sleep_ms(RETENTION_MS + 100);
    CHECK(leaseq_wait(p, id, 100, &o, CALL_MS) == LEASEQ_E_NOT_FOUND, "gone after the retention");
    h_sleep_ms(1200); /* the idle sweep ran meanwhile: still NOT_FOUND, broker fine */
    CHECK(leaseq_wait(p, id, 100, &o, CALL_MS) == LEASEQ_E_NOT_FOUND, "still gone");
    h_log("result retention: ok");
    return 0;
}

static int t_workers(leaseq *p)
{
    leaseq *w = conn("gpu-7", 200, false);
    CHECK(w != NULL, "connect worker");
    CHECK(leaseq_heartbeat(w, NULL, CALL_MS) == LEASEQ_OK, "heartbeat");
    leaseq_worker_info *wi = NULL;
    size_t n = 0;
    CHECK(leaseq_workers(p, &wi, &n, CALL_MS) == LEASEQ_OK, "workers: %s", leaseq_last_error(p));
    bool found = false;
    for (size_t i = 0; i < n; i++) {
        if (strcmp(wi[i].worker_id, "gpu-7") != 0)
            continue;
        found = true;
        CHECK(wi[i].heartbeat_ms == 200 && !wi[i].suspect && !wi[i].stalled, "worker fields");
        CHECK(strncmp(wi[i].address, "127.0.0.1:", 10) == 0, "address %s", wi[i].address);
    }
    leaseq_workers_free(wi);
    CHECK(found, "gpu-7 listed");
    CHECK(leaseq_clear_suspect(p, "gpu-7", CALL_MS) == LEASEQ_OK, "clear known id");
    CHECK(leaseq_clear_suspect(p, "nobody", CALL_MS) == LEASEQ_E_NOT_FOUND, "clear unknown id");
    /* silent past 3 heartbeats: stalled */
    h_sleep_ms(800);
    CHECK(leaseq_workers(p, &wi, &n, CALL_MS) == LEASEQ_OK, "workers");
    found = false;
    for (size_t i = 0; i < n; i++)
        found |= strcmp(wi[i].worker_id, "gpu-7") == 0 && wi[i].stalled && wi[i].last_seen_age_ms >= 600;
    leaseq_workers_free(wi);
    CHECK(found, "gpu-7 stalled");
    leaseq_close(w);
    h_log("workers: ok");
    return 0;
}

static int body(const char *tmpdir)
{
    if (!h_broker_init(&g_broker, tmpdir) || !start_broker(&g_broker, 10000))
        return 1;
    leaseq *p = conn(NULL, 0, false), *w = conn(NULL, 0, false);
    int rc = p == NULL || w == NULL;
    if (rc == 0)
        rc = t_wait_outcomes(p, w);
    if (rc == 0)
        rc = t_wait_during_commit(p, w);
    if (rc == 0)
        rc = t_duplicate_pending(p);
    if (rc == 0)
        rc = t_keep_leases(p);
    if (rc == 0)
        rc = t_release_reply_full(p, w);
    if (rc == 0)
        rc = t_retention(p, w);
    if (rc == 0)
        rc = t_workers(p);
    leaseq_close(p);
    leaseq_close(w);
    char how[64];
    if (!h_broker_stop(&g_broker, 10000, how, sizeof how)) {
        h_log("leaseqd did not stop cleanly: %s", how);
        rc = 1;
    }
    if (rc != 0)
        h_dump_tail(g_broker.log_path, 40);
    return rc;
}

int main(void)
{
    return h_supervise("test_results", 120, body);
}
