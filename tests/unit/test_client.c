/* libleaseq against a fake broker: a thread in this process that listens on 127.0.0.1 (or a
 * Unix socket) and speaks frames + protobuf with the generated code, behaving as each test
 * tells it to (answer, stay silent, close mid-call, send garbage, hold pipelined frames). */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "leaseq.h"
#include "leaseq.pb-c.h"
#include "proto/frame.h"

typedef enum {
    FB_NORMAL,
    FB_SILENT,        /* reads requests, never answers (hello still answered) */
    FB_CLOSE_ONCE,    /* closes the connection on the next request, then back to normal */
    FB_DEQ_MISMATCH,  /* dequeue reply whose payload_len sum differs from the frame payload */
    FB_WRONG_ID,      /* answers with a request id nobody asked about */
    FB_PIPELINE,      /* holds enqueue frames until the client stops sending, answers in reverse */
} fb_mode;

#define MAX_PENDING 64

/* cmocka's asserts longjmp and must stay on the test's thread; the fake broker aborts instead. */
#define FB_CHECK(e)                                                                  \
    do {                                                                             \
        if (!(e)) {                                                                  \
            fprintf(stderr, "fake broker: check failed: %s at line %d\n", #e, __LINE__); \
            abort();                                                                 \
        }                                                                            \
    } while (0)

typedef struct {
    uint64_t request_id;
    size_t n_items;
    uint64_t first_id;
} pending_enqueue;

typedef struct {
    int lfd;
    char addr[128];
    char unix_path[108];
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    /* guarded by mu */
    fb_mode mode;
    int accepts;
    uint32_t hello_version, hello_heartbeat_ms;
    char hello_client[64], hello_token[64], hello_worker[64];
    char enq_queue[64], enq_lane[64], enq_tenant[64], enq_key[64], enq_hkey[64], enq_hval[64];
    int32_t enq_priority;
    uint64_t enq_delay, enq_deadline;
    uint32_t enq_max_attempts;
    size_t enq_n_headers;
    uint8_t enq_payload[256];
    size_t enq_payload_len;
    size_t enq_frames, enq_items, max_in_flight;
    uint32_t max_frame_payload;
    bool payloads_ok;
    long last_batch_index;
    uint64_t next_job_id;
    uint64_t ack_job, ack_token;
    uint8_t ack_result[64];
    size_t ack_result_len;
    pending_enqueue pending[MAX_PENDING];
    size_t n_pending;
} fake_broker;

static void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

static bool write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

static bool send_response(int fd, Leaseq__Response *r, const void *payload, uint32_t payload_len,
                          uint32_t frame_payload_len)
{
    size_t meta = leaseq__response__get_packed_size(r);
    uint8_t *buf = malloc(LQ_FRAME_HEADER_BYTES + meta);
    FB_CHECK(buf);
    leaseq__response__pack(r, buf + LQ_FRAME_HEADER_BYTES);
    lq_frame_header(buf, (uint32_t)meta, frame_payload_len);
    bool ok = write_all(fd, buf, LQ_FRAME_HEADER_BYTES + meta) && write_all(fd, payload, payload_len);
    free(buf);
    return ok;
}

static bool send_error(int fd, uint64_t id, Leaseq__ErrorCode code, const char *msg, uint32_t retry)
{
    Leaseq__Error err = LEASEQ__ERROR__INIT;
    err.code = code;
    err.message = (char *)msg;
    err.retry_after_ms = retry;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = id;
    r.error = &err;
    return send_response(fd, &r, NULL, 0, 0);
}

static bool answer_enqueue(int fd, uint64_t id, size_t n, uint64_t first_id)
{
    Leaseq__EnqueueResult *rs = calloc(n, sizeof *rs);
    Leaseq__EnqueueResult **rp = calloc(n, sizeof *rp);
    FB_CHECK(rs != NULL && rp != NULL);
    for (size_t i = 0; i < n; i++) {
        leaseq__enqueue_result__init(&rs[i]);
        rs[i].job_id = first_id + i;
        rp[i] = &rs[i];
    }
    Leaseq__EnqueueReply er = LEASEQ__ENQUEUE_REPLY__INIT;
    er.n_results = n;
    er.results = rp;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = id;
    r.body_case = LEASEQ__RESPONSE__BODY_ENQUEUE;
    r.enqueue = &er;
    bool ok = send_response(fd, &r, NULL, 0, 0);
    free(rs);
    free(rp);
    return ok;
}

static bool flush_pending(fake_broker *fb, int fd)
{
    /* Reverse order: the client must match replies by request id, not by arrival. */
    while (fb->n_pending > 0) {
        pending_enqueue p = fb->pending[--fb->n_pending];
        if (!answer_enqueue(fd, p.request_id, p.n_items, p.first_id))
            return false;
    }
    return true;
}

static bool on_enqueue(fake_broker *fb, int fd, const Leaseq__Request *q, const lq_frame *f)
{
    const Leaseq__Enqueue *e = q->enqueue;
    uint64_t sum = 0;
    for (size_t i = 0; i < e->n_items; i++)
        sum += e->items[i]->payload_len;
    if (sum != f->payload_len)
        fb->payloads_ok = false;
    if (f->payload_len > fb->max_frame_payload)
        fb->max_frame_payload = f->payload_len;
    const uint8_t *p = f->payload;
    for (size_t i = 0; i < e->n_items && fb->payloads_ok && fb->mode == FB_PIPELINE; i++) {
        /* batch jobs carry "job-<index>", indexes strictly increasing (one is refused locally) */
        char got[32], want[32];
        uint32_t len = e->items[i]->payload_len;
        if (len >= sizeof got) {
            fb->payloads_ok = false;
            break;
        }
        memcpy(got, p, len);
        got[len] = '\0';
        long idx = strncmp(got, "job-", 4) == 0 ? strtol(got + 4, NULL, 10) : -1;
        snprintf(want, sizeof want, "job-%ld", idx);
        if (idx <= fb->last_batch_index || strcmp(got, want) != 0)
            fb->payloads_ok = false;
        fb->last_batch_index = idx;
        p += len;
    }
    const Leaseq__EnqueueItem *it = e->items[0];
    copy_str(fb->enq_queue, sizeof fb->enq_queue, it->queue);
    copy_str(fb->enq_lane, sizeof fb->enq_lane, it->lane);
    copy_str(fb->enq_tenant, sizeof fb->enq_tenant, it->tenant);
    copy_str(fb->enq_key, sizeof fb->enq_key, it->idempotency_key);
    fb->enq_priority = it->priority;
    fb->enq_delay = it->delay_ms;
    fb->enq_deadline = it->deadline_ms;
    fb->enq_max_attempts = it->max_attempts;
    fb->enq_n_headers = it->n_headers;
    if (it->n_headers > 0) {
        copy_str(fb->enq_hkey, sizeof fb->enq_hkey, it->headers[0]->key);
        copy_str(fb->enq_hval, sizeof fb->enq_hval, it->headers[0]->value);
    }
    fb->enq_payload_len = it->payload_len < sizeof fb->enq_payload ? it->payload_len : sizeof fb->enq_payload;
    memcpy(fb->enq_payload, f->payload, fb->enq_payload_len);
    fb->enq_frames++;
    uint64_t first_id = fb->next_job_id;
    fb->next_job_id += e->n_items;
    fb->enq_items += e->n_items;
    if (fb->mode == FB_PIPELINE) {
        FB_CHECK(fb->n_pending < MAX_PENDING);
        fb->pending[fb->n_pending++] = (pending_enqueue){ q->request_id, e->n_items, first_id };
        if (fb->n_pending > fb->max_in_flight)
            fb->max_in_flight = fb->n_pending;
        return true;
    }
    if (strcmp(it->queue, "full") == 0) {
        Leaseq__Error err = LEASEQ__ERROR__INIT;
        err.code = LEASEQ__ERROR_CODE__QUEUE_FULL;
        err.message = "lane app is full";
        err.retry_after_ms = 250;
        Leaseq__EnqueueResult res = LEASEQ__ENQUEUE_RESULT__INIT;
        res.error = &err;
        Leaseq__EnqueueResult *rp = &res;
        Leaseq__EnqueueReply er = LEASEQ__ENQUEUE_REPLY__INIT;
        er.n_results = 1;
        er.results = &rp;
        Leaseq__Response r = LEASEQ__RESPONSE__INIT;
        r.request_id = q->request_id;
        r.body_case = LEASEQ__RESPONSE__BODY_ENQUEUE;
        r.enqueue = &er;
        return send_response(fd, &r, NULL, 0, 0);
    }
    return answer_enqueue(fd, q->request_id, e->n_items, first_id);
}

static bool on_dequeue(fake_broker *fb, int fd, const Leaseq__Request *q)
{
    Leaseq__DequeueReply dr = LEASEQ__DEQUEUE_REPLY__INIT;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = q->request_id;
    r.body_case = LEASEQ__RESPONSE__BODY_DEQUEUE;
    r.dequeue = &dr;
    if (strcmp(q->dequeue->queues[0], "empty") == 0)
        return send_response(fd, &r, NULL, 0, 0);
    Leaseq__Header h = LEASEQ__HEADER__INIT;
    h.key = "content-type";
    h.value = "image/png";
    Leaseq__Header *hp = &h;
    Leaseq__LeasedJob j1 = LEASEQ__LEASED_JOB__INIT, j2 = LEASEQ__LEASED_JOB__INIT;
    j1.job_id = 11;
    j1.lease_token = 0xFFFFFFFFFFFFFFF0ull;
    j1.queue = q->dequeue->queues[0];
    j1.lane = "api";
    j1.attempt = 1;
    j1.lease_expires_ms = 1700000000000ull;
    j1.payload_len = 5;
    j1.n_headers = 1;
    j1.headers = &hp;
    j2.job_id = 12;
    j2.lease_token = 77;
    j2.queue = q->dequeue->queues[0];
    j2.lane = "app";
    j2.tenant = "acme";
    j2.attempt = 3;
    j2.priority = -2;
    j2.last_error = "oops";
    j2.payload_len = 7;
    Leaseq__LeasedJob *jp[2] = { &j1, &j2 };
    dr.n_jobs = 2;
    dr.jobs = jp;
    if (fb->mode == FB_DEQ_MISMATCH) /* claims 5 + 7, sends 15 */
        return send_response(fd, &r, "helloworld!!!!!", 15, 15);
    return send_response(fd, &r, "helloworld!!", 12, 12);
}

static bool on_stats(int fd, const Leaseq__Request *q)
{
    Leaseq__LaneStats a = LEASEQ__LANE_STATS__INIT, b = LEASEQ__LANE_STATS__INIT;
    a.name = "api";
    a.weight = 9;
    a.ready = 5;
    a.leased = 2;
    b.name = "app";
    b.weight = 1;
    b.delayed = 4;
    b.dead = 1;
    Leaseq__LaneStats *lp[2] = { &a, &b };
    Leaseq__QueueStats qs = LEASEQ__QUEUE_STATS__INIT;
    qs.name = "img";
    qs.n_lanes = 2;
    qs.lanes = lp;
    Leaseq__QueueStats *qp = &qs;
    Leaseq__StatsReply sr = LEASEQ__STATS_REPLY__INIT;
    sr.n_queues = 1;
    sr.queues = &qp;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = q->request_id;
    r.body_case = LEASEQ__RESPONSE__BODY_STATS;
    r.stats = &sr;
    return send_response(fd, &r, NULL, 0, 0);
}

/* Returns false when the connection should be closed. */
static bool handle(fake_broker *fb, int fd, const Leaseq__Request *q, const lq_frame *f)
{
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = q->request_id;
    if (q->body_case == LEASEQ__REQUEST__BODY_HELLO) {
        fb->hello_version = q->hello->protocol_version;
        fb->hello_heartbeat_ms = q->hello->heartbeat_ms;
        copy_str(fb->hello_client, sizeof fb->hello_client, q->hello->client_name);
        copy_str(fb->hello_token, sizeof fb->hello_token, q->hello->token);
        copy_str(fb->hello_worker, sizeof fb->hello_worker, q->hello->worker_id);
        if (strcmp(q->hello->token, "bad") == 0)
        {
            send_error(fd, q->request_id, LEASEQ__ERROR_CODE__UNAUTHENTICATED, "unknown token", 0);
            return false;
        }
        Leaseq__HelloReply h = LEASEQ__HELLO_REPLY__INIT;
        h.protocol_version = 1;
        h.server_name = "fake";
        h.role = LEASEQ__ROLE__WORKER;
        h.session_id = 42;
        h.heartbeat_timeout_ms = 5000;
        h.max_payload_bytes = 1u << 20;
        h.max_frame_bytes = 64u << 20;
        r.body_case = LEASEQ__RESPONSE__BODY_HELLO;
        r.hello = &h;
        return send_response(fd, &r, NULL, 0, 0);
    }
    switch (fb->mode) {
    case FB_SILENT:
        return true;
    case FB_CLOSE_ONCE:
        fb->mode = FB_NORMAL;
        return false;
    case FB_WRONG_ID:
        r.request_id = q->request_id + 1000;
        r.body_case = LEASEQ__RESPONSE__BODY_PONG;
        {
            Leaseq__Pong pong = LEASEQ__PONG__INIT;
            r.pong = &pong;
            return send_response(fd, &r, NULL, 0, 0);
        }
    default:
        break;
    }
    switch (q->body_case) {
    case LEASEQ__REQUEST__BODY_ENQUEUE:
        return on_enqueue(fb, fd, q, f);
    case LEASEQ__REQUEST__BODY_DEQUEUE:
        return on_dequeue(fb, fd, q);
    case LEASEQ__REQUEST__BODY_STATS:
        return on_stats(fd, q);
    case LEASEQ__REQUEST__BODY_ACK: {
        fb->ack_job = q->ack->job_id;
        fb->ack_token = q->ack->lease_token;
        fb->ack_result_len = f->payload_len < sizeof fb->ack_result ? f->payload_len : sizeof fb->ack_result;
        memcpy(fb->ack_result, f->payload, fb->ack_result_len);
        if (q->ack->lease_token == 999)
            return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__LEASE_LOST, "token 999 is stale", 0);
        Leaseq__AckReply a = LEASEQ__ACK_REPLY__INIT;
        r.body_case = LEASEQ__RESPONSE__BODY_ACK;
        r.ack = &a;
        return send_response(fd, &r, NULL, 0, 0);
    }
    case LEASEQ__REQUEST__BODY_NACK: {
        Leaseq__NackReply n = LEASEQ__NACK_REPLY__INIT;
        n.state = q->nack->dead ? LEASEQ__JOB_STATE__DEAD : LEASEQ__JOB_STATE__DELAYED;
        r.body_case = LEASEQ__RESPONSE__BODY_NACK;
        r.nack = &n;
        return send_response(fd, &r, NULL, 0, 0);
    }
    case LEASEQ__REQUEST__BODY_EXTEND: {
        Leaseq__ExtendReply x = LEASEQ__EXTEND_REPLY__INIT;
        x.lease_expires_ms = 1000000 + q->extend->lease_ms;
        r.body_case = LEASEQ__RESPONSE__BODY_EXTEND;
        r.extend = &x;
        return send_response(fd, &r, NULL, 0, 0);
    }
    case LEASEQ__REQUEST__BODY_HEARTBEAT: {
        Leaseq__HeartbeatReply hb = LEASEQ__HEARTBEAT_REPLY__INIT;
        hb.leases_held = 3;
        r.body_case = LEASEQ__RESPONSE__BODY_HEARTBEAT;
        r.heartbeat = &hb;
        return send_response(fd, &r, NULL, 0, 0);
    }
    case LEASEQ__REQUEST__BODY_PING: {
        Leaseq__Pong pong = LEASEQ__PONG__INIT;
        r.body_case = LEASEQ__RESPONSE__BODY_PONG;
        r.pong = &pong;
        return send_response(fd, &r, NULL, 0, 0);
    }
    default:
        return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__INVALID_ARGUMENT, "unsupported", 0);
    }
}

static void serve(fake_broker *fb, int fd)
{
    size_t cap = 1u << 20, len = 0;
    uint8_t *buf = malloc(cap);
    FB_CHECK(buf);
    while (!atomic_load(&fb->stop)) {
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, 30);
        if (r == 0) {
            pthread_mutex_lock(&fb->mu);
            bool ok = flush_pending(fb, fd); /* the client stopped sending: answer what is held */
            pthread_mutex_unlock(&fb->mu);
            if (!ok)
                break;
            continue;
        }
        if (r < 0)
            break;
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
        bool keep = true;
        for (;;) {
            lq_frame f;
            size_t consumed, need;
            lq_frame_status st = lq_frame_parse(buf, len, 64u << 20, &f, &consumed, &need);
            if (st == LQ_FRAME_NEED_MORE) {
                if (need > cap) {
                    cap = need;
                    buf = realloc(buf, cap);
                    FB_CHECK(buf);
                }
                break;
            }
            FB_CHECK(st == LQ_FRAME_OK);
            Leaseq__Request *q = leaseq__request__unpack(NULL, f.meta_len, f.meta);
            FB_CHECK(q);
            pthread_mutex_lock(&fb->mu);
            keep = handle(fb, fd, q, &f);
            pthread_mutex_unlock(&fb->mu);
            leaseq__request__free_unpacked(q, NULL);
            memmove(buf, buf + consumed, len - consumed);
            len -= consumed;
            if (!keep)
                break;
        }
        if (!keep)
            break;
    }
    free(buf);
}

static void *fake_main(void *arg)
{
    fake_broker *fb = arg;
    while (!atomic_load(&fb->stop)) {
        struct pollfd p = { .fd = fb->lfd, .events = POLLIN };
        if (poll(&p, 1, 30) <= 0)
            continue;
        int fd = accept(fb->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&fb->mu);
        fb->accepts++;
        fb->n_pending = 0;
        pthread_mutex_unlock(&fb->mu);
        serve(fb, fd);
        close(fd);
    }
    return NULL;
}

static fake_broker *fake_start(bool use_unix)
{
    fake_broker *fb = calloc(1, sizeof *fb);
    assert_non_null(fb);
    pthread_mutex_init(&fb->mu, NULL);
    fb->next_job_id = 1;
    fb->payloads_ok = true;
    fb->last_batch_index = -1;
    if (use_unix) {
        struct sockaddr_un sun = { .sun_family = AF_UNIX };
        snprintf(fb->unix_path, sizeof fb->unix_path, "/tmp/leaseq-test-client-%d.sock", (int)getpid());
        unlink(fb->unix_path);
        memcpy(sun.sun_path, fb->unix_path, strlen(fb->unix_path) + 1);
        fb->lfd = socket(AF_UNIX, SOCK_STREAM, 0);
        assert_true(fb->lfd >= 0);
        assert_int_equal(bind(fb->lfd, (struct sockaddr *)&sun, sizeof sun), 0);
        snprintf(fb->addr, sizeof fb->addr, "unix:%s", fb->unix_path);
    } else {
        struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
        fb->lfd = socket(AF_INET, SOCK_STREAM, 0);
        assert_true(fb->lfd >= 0);
        assert_int_equal(bind(fb->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
        socklen_t sl = sizeof sin;
        assert_int_equal(getsockname(fb->lfd, (struct sockaddr *)&sin, &sl), 0);
        snprintf(fb->addr, sizeof fb->addr, "127.0.0.1:%u", ntohs(sin.sin_port));
    }
    assert_int_equal(listen(fb->lfd, 16), 0);
    assert_int_equal(pthread_create(&fb->thread, NULL, fake_main, fb), 0);
    return fb;
}

static void fake_stop(fake_broker *fb)
{
    atomic_store(&fb->stop, true);
    pthread_join(fb->thread, NULL);
    close(fb->lfd);
    if (fb->unix_path[0])
        unlink(fb->unix_path);
    pthread_mutex_destroy(&fb->mu);
    free(fb);
}

static void fake_set_mode(fake_broker *fb, fb_mode m)
{
    pthread_mutex_lock(&fb->mu);
    fb->mode = m;
    pthread_mutex_unlock(&fb->mu);
}

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static leaseq *connect_to(fake_broker *fb)
{
    leaseq_opts o = { .client_name = "unit", .token = "s3cret", .worker_id = "gpu-7", .heartbeat_ms = 1500,
                      .connect_timeout_ms = 2000 };
    leaseq *c = NULL;
    assert_int_equal(leaseq_connect(fb->addr, &o, &c), LEASEQ_OK);
    assert_non_null(c);
    return c;
}

/* ---- tests ---- */

static void test_connect_hello(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->hello_version, 1);
    assert_string_equal(fb->hello_client, "unit");
    assert_string_equal(fb->hello_token, "s3cret");
    assert_string_equal(fb->hello_worker, "gpu-7");
    assert_int_equal(fb->hello_heartbeat_ms, 1500);
    pthread_mutex_unlock(&fb->mu);
    leaseq_server_info si;
    leaseq_get_server_info(c, &si);
    assert_string_equal(si.server_name, "fake");
    assert_int_equal(si.role, 2);
    assert_int_equal(si.session_id, 42);
    assert_int_equal(si.heartbeat_timeout_ms, 5000);
    assert_int_equal(si.max_payload_bytes, 1u << 20);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    uint32_t held = 0;
    assert_int_equal(leaseq_heartbeat(c, &held, 1000), LEASEQ_OK);
    assert_int_equal(held, 3);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_unix_socket(void **state)
{
    fake_broker *fb = fake_start(true);
    leaseq *c = connect_to(fb);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_hello_refused(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq_opts o = { .token = "bad" };
    leaseq *c = (leaseq *)&o; /* must be reset to NULL */
    char why[128];
    assert_int_equal(leaseq_connect_ex(fb->addr, &o, &c, why, sizeof why), LEASEQ_E_UNAUTHENTICATED);
    assert_null(c);
    assert_string_equal(why, "unknown token");
    fake_stop(fb);
}

static void test_enqueue_item_and_payload(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    leaseq_header h = { "content-type", "image/jpeg" };
    leaseq_job_spec j = { .queue = "img", .lane = "api", .tenant = "acme", .idempotency_key = "k1",
                          .priority = -3, .delay_ms = 10, .deadline_ms = 60000, .max_attempts = 4,
                          .headers = &h, .n_headers = 1, .payload = "\x89PNG\0data", .payload_len = 9 };
    uint64_t id = 0;
    assert_int_equal(leaseq_enqueue(c, &j, &id, 1000), LEASEQ_OK);
    assert_int_equal(id, 1);
    pthread_mutex_lock(&fb->mu);
    assert_string_equal(fb->enq_queue, "img");
    assert_string_equal(fb->enq_lane, "api");
    assert_string_equal(fb->enq_tenant, "acme");
    assert_string_equal(fb->enq_key, "k1");
    assert_int_equal(fb->enq_priority, -3);
    assert_int_equal(fb->enq_delay, 10);
    assert_int_equal(fb->enq_deadline, 60000);
    assert_int_equal(fb->enq_max_attempts, 4);
    assert_int_equal(fb->enq_n_headers, 1);
    assert_string_equal(fb->enq_hkey, "content-type");
    assert_string_equal(fb->enq_hval, "image/jpeg");
    assert_int_equal(fb->enq_payload_len, 9);
    assert_memory_equal(fb->enq_payload, "\x89PNG\0data", 9);
    pthread_mutex_unlock(&fb->mu);

    /* local checks: no queue, payload above the broker's 1 MiB */
    leaseq_job_spec bad = { .queue = NULL };
    assert_int_equal(leaseq_enqueue(c, &bad, &id, 1000), LEASEQ_E_INVALID_ARGUMENT);
    static uint8_t big[(1u << 20) + 1];
    leaseq_job_spec huge = { .queue = "img", .payload = big, .payload_len = sizeof big };
    assert_int_equal(leaseq_enqueue(c, &huge, &id, 1000), LEASEQ_E_FRAME_TOO_LARGE);

    /* per-item error with message and retry hint */
    leaseq_job_spec full = { .queue = "full" };
    assert_int_equal(leaseq_enqueue(c, &full, &id, 1000), LEASEQ_E_QUEUE_FULL);
    assert_string_equal(leaseq_last_error(c), "lane app is full");
    assert_int_equal(leaseq_retry_after_ms(c), 250);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    assert_int_equal(leaseq_retry_after_ms(c), 0);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_enqueue_batch_pipelined(void **state)
{
    enum { N = 1000 };
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_PIPELINE);
    static leaseq_job_spec jobs[N];
    static char bodies[N][16];
    static leaseq_enqueue_result res[N];
    for (size_t i = 0; i < N; i++) {
        int n = snprintf(bodies[i], sizeof bodies[i], "job-%zu", i);
        jobs[i] = (leaseq_job_spec){ .queue = "img", .payload = bodies[i], .payload_len = (size_t)n };
    }
    jobs[500].queue = NULL; /* refused locally, the rest still goes */
    assert_int_equal(leaseq_enqueue_batch(c, jobs, N, res, 5000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_true(fb->payloads_ok);
    assert_int_equal(fb->enq_items, N - 1);
    assert_int_equal(fb->enq_frames, 4); /* 256-job frames */
    /* Every frame was on the wire before the first answer: the fake held them all. */
    assert_int_equal(fb->max_in_flight, 4);
    pthread_mutex_unlock(&fb->mu);
    for (size_t i = 0; i < N; i++) {
        if (i == 500) {
            assert_int_equal(res[i].err, LEASEQ_E_INVALID_ARGUMENT);
            continue;
        }
        assert_int_equal(res[i].err, LEASEQ_OK);
        assert_int_equal(res[i].job_id, i < 500 ? i + 1 : i); /* ids in order despite reversed replies */
    }
    fake_set_mode(fb, FB_NORMAL);
    assert_int_equal(leaseq_enqueue_batch(c, jobs, 0, res, 1000), LEASEQ_OK);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_enqueue_batch_splits_by_bytes(void **state)
{
    /* The fake announces max_payload_bytes = 1 MiB, which also caps a frame's whole payload. */
    enum { N = 8, SIZE = 300 << 10 };
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    uint8_t *body = calloc(1, SIZE);
    assert_non_null(body);
    leaseq_job_spec jobs[N];
    leaseq_enqueue_result res[N];
    for (size_t i = 0; i < N; i++)
        jobs[i] = (leaseq_job_spec){ .queue = "img", .payload = body, .payload_len = SIZE };
    assert_int_equal(leaseq_enqueue_batch(c, jobs, N, res, 5000), LEASEQ_OK);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(res[i].err, LEASEQ_OK);
        assert_int_equal(res[i].job_id, i + 1);
    }
    pthread_mutex_lock(&fb->mu);
    assert_true(fb->payloads_ok);
    assert_int_equal(fb->enq_frames, 3); /* 3 + 3 + 2 jobs */
    assert_true(fb->max_frame_payload <= (1u << 20));
    pthread_mutex_unlock(&fb->mu);
    free(body);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_dequeue(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    const char *qs[] = { "img" };
    leaseq_lease *ls = NULL;
    size_t n = 0;
    assert_int_equal(leaseq_dequeue(c, qs, 1, 8, 100, 30000, &ls, &n, 1000), LEASEQ_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ls[0].job_id, 11);
    assert_true(ls[0].lease_token == 0xFFFFFFFFFFFFFFF0ull);
    assert_string_equal(ls[0].queue, "img");
    assert_string_equal(ls[0].lane, "api");
    assert_string_equal(ls[0].tenant, "");
    assert_string_equal(ls[0].last_error, "");
    assert_int_equal(ls[0].attempt, 1);
    assert_int_equal(ls[0].n_headers, 1);
    assert_string_equal(ls[0].headers[0].key, "content-type");
    assert_string_equal(ls[0].headers[0].value, "image/png");
    assert_int_equal(ls[0].payload_len, 5);
    assert_memory_equal(ls[0].payload, "hello", 5);
    assert_int_equal(ls[1].job_id, 12);
    assert_string_equal(ls[1].tenant, "acme");
    assert_string_equal(ls[1].last_error, "oops");
    assert_int_equal(ls[1].priority, -2);
    assert_int_equal(ls[1].attempt, 3);
    assert_int_equal(ls[1].n_headers, 0);
    assert_int_equal(ls[1].payload_len, 7);
    assert_memory_equal(ls[1].payload, "world!!", 7);
    leaseq_leases_free(ls, n);

    /* the wait ran out: an empty reply */
    const char *empty[] = { "empty" };
    assert_int_equal(leaseq_dequeue(c, empty, 1, 1, 100, 0, &ls, &n, 1000), LEASEQ_OK);
    assert_int_equal(n, 0);
    assert_null(ls);
    leaseq_leases_free(ls, n);

    /* the library adds no slack of its own: timeout must exceed wait */
    assert_int_equal(leaseq_dequeue(c, qs, 1, 1, 1000, 0, &ls, &n, 1000), LEASEQ_E_INVALID_ARGUMENT);

    /* the broker sends more jobs than asked for */
    assert_int_equal(leaseq_dequeue(c, qs, 1, 1, 0, 0, &ls, &n, 1000), LEASEQ_E_PROTOCOL_ERROR);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_dequeue_payload_mismatch(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_DEQ_MISMATCH);
    const char *qs[] = { "img" };
    leaseq_lease *ls = (leaseq_lease *)qs;
    size_t n = 99;
    assert_int_equal(leaseq_dequeue(c, qs, 1, 8, 0, 0, &ls, &n, 1000), LEASEQ_E_PROTOCOL_ERROR);
    assert_null(ls);
    assert_int_equal(n, 0);
    /* the connection was dropped; the next call reconnects */
    fake_set_mode(fb, FB_NORMAL);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 2);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_wrong_request_id(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_WRONG_ID);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_E_PROTOCOL_ERROR);
    fake_set_mode(fb, FB_NORMAL);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_silent_server_deadline(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_SILENT);
    uint64_t t0 = now_ms();
    assert_int_equal(leaseq_ping(c, 200), LEASEQ_E_DEADLINE_EXCEEDED);
    uint64_t took = now_ms() - t0;
    assert_true(took >= 190 && took < 200 + 500);
    /* the connection was dropped so a late reply cannot answer the next call */
    fake_set_mode(fb, FB_NORMAL);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 2);
    pthread_mutex_unlock(&fb->mu);

    /* batches honour the timeout too */
    fake_set_mode(fb, FB_SILENT);
    leaseq_job_spec j[3] = { { .queue = "a" }, { .queue = "b" }, { .queue = NULL } };
    leaseq_enqueue_result r[3];
    t0 = now_ms();
    assert_int_equal(leaseq_enqueue_batch(c, j, 3, r, 200), LEASEQ_E_DEADLINE_EXCEEDED);
    assert_true(now_ms() - t0 < 200 + 500);
    assert_int_equal(r[0].err, LEASEQ_E_DEADLINE_EXCEEDED);
    assert_int_equal(r[1].err, LEASEQ_E_DEADLINE_EXCEEDED);
    assert_int_equal(r[2].err, LEASEQ_E_INVALID_ARGUMENT);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_close_mid_call_reconnects(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_CLOSE_ONCE);
    uint64_t id = 0;
    leaseq_job_spec j = { .queue = "img" };
    assert_int_equal(leaseq_enqueue(c, &j, &id, 1000), LEASEQ_E_CONNECTION);
    assert_true(strlen(leaseq_last_error(c)) > 0);
    assert_int_equal(leaseq_enqueue(c, &j, &id, 1000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 2);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_errors_propagate(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    assert_int_equal(leaseq_ack(c, 5, 999, NULL, 0, 1000), LEASEQ_E_LEASE_LOST);
    assert_string_equal(leaseq_last_error(c), "token 999 is stale");
    assert_string_equal(leaseq_strerror(LEASEQ_E_LEASE_LOST), "LEASE_LOST");
    /* an error is not a broken connection */
    assert_int_equal(leaseq_ack(c, 6, 1234, "result!", 7, 1000), LEASEQ_OK);
    assert_string_equal(leaseq_last_error(c), "");
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->ack_job, 6);
    assert_int_equal(fb->ack_token, 1234);
    assert_int_equal(fb->ack_result_len, 7);
    assert_memory_equal(fb->ack_result, "result!", 7);
    assert_int_equal(fb->accepts, 1);
    pthread_mutex_unlock(&fb->mu);
    bool dead = false;
    leaseq_nack_opts no = { .error = "bad image", .dead = true };
    assert_int_equal(leaseq_nack(c, 6, 1234, &no, &dead, 1000), LEASEQ_OK);
    assert_true(dead);
    assert_int_equal(leaseq_nack(c, 6, 1234, NULL, &dead, 1000), LEASEQ_OK);
    assert_false(dead);
    uint64_t exp = 0;
    assert_int_equal(leaseq_extend(c, 6, 1234, 500, &exp, 1000), LEASEQ_OK);
    assert_int_equal(exp, 1000500);
    leaseq_stats *s = NULL;
    assert_int_equal(leaseq_get_stats(c, NULL, &s, 1000), LEASEQ_OK);
    assert_int_equal(s->n_queues, 1);
    assert_string_equal(s->queues[0].name, "img");
    assert_int_equal(s->queues[0].n_lanes, 2);
    assert_string_equal(s->queues[0].lanes[0].name, "api");
    assert_int_equal(s->queues[0].lanes[0].weight, 9);
    assert_int_equal(s->queues[0].lanes[0].ready, 5);
    assert_int_equal(s->queues[0].lanes[0].leased, 2);
    assert_string_equal(s->queues[0].lanes[1].name, "app");
    assert_int_equal(s->queues[0].lanes[1].delayed, 4);
    assert_int_equal(s->queues[0].lanes[1].dead, 1);
    leaseq_stats_free(s);
    assert_int_equal(leaseq_ping(c, 0), LEASEQ_E_INVALID_ARGUMENT);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_closed_port(void **state)
{
    /* a port that was just free: bind, read it, close */
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    close(fd);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sin.sin_port));
    leaseq_opts o = { .connect_timeout_ms = 500 };
    leaseq *c = NULL;
    char why[256];
    uint64_t t0 = now_ms();
    assert_int_equal(leaseq_connect_ex(addr, &o, &c, why, sizeof why), LEASEQ_E_CONNECTION);
    assert_true(now_ms() - t0 < 500 + 500);
    assert_null(c);
    assert_non_null(strstr(why, "refused"));
    assert_int_equal(leaseq_connect("nonsense", NULL, &c), LEASEQ_E_INVALID_ARGUMENT);
    assert_int_equal(leaseq_connect("::1:7420", NULL, &c), LEASEQ_E_INVALID_ARGUMENT);
}

static void test_broker_gone_backoff_bounded(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_stop(fb); /* listener and connection gone */
    uint64_t t0 = now_ms();
    assert_int_equal(leaseq_ping(c, 300), LEASEQ_E_CONNECTION);
    uint64_t took = now_ms() - t0;
    assert_true(took < 300 + 500);
    /* a later call is bounded by its own timeout as well */
    t0 = now_ms();
    assert_int_equal(leaseq_ping(c, 50), LEASEQ_E_CONNECTION);
    assert_true(now_ms() - t0 < 50 + 500);
    leaseq_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_hello),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_hello_refused),
        cmocka_unit_test(test_enqueue_item_and_payload),
        cmocka_unit_test(test_enqueue_batch_pipelined),
        cmocka_unit_test(test_enqueue_batch_splits_by_bytes),
        cmocka_unit_test(test_dequeue),
        cmocka_unit_test(test_dequeue_payload_mismatch),
        cmocka_unit_test(test_wrong_request_id),
        cmocka_unit_test(test_silent_server_deadline),
        cmocka_unit_test(test_close_mid_call_reconnects),
        cmocka_unit_test(test_errors_propagate),
        cmocka_unit_test(test_closed_port),
        cmocka_unit_test(test_broker_gone_backoff_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
