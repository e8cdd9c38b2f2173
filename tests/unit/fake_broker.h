/* The fake broker of test_client.c: a thread in the test process that listens on 127.0.0.1
 * (or a Unix socket) and speaks frames + protobuf with the generated code, behaving as each test
 * tells it to (answer, stay silent, close mid-call, send garbage, hold pipelined frames), and
 * records what the client sent. Header-only, static inline. */
#ifndef LQ_TEST_FAKE_BROKER_H
#define LQ_TEST_FAKE_BROKER_H

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
#include "fake_wire.h"

typedef enum {
    FB_NORMAL,
    FB_SILENT,        /* reads requests, never answers (hello still answered) */
    FB_CLOSE_ONCE,    /* closes the connection on the next request, then back to normal */
    FB_DEQ_MISMATCH,  /* dequeue reply whose payload_len sum differs from the frame payload */
    FB_WRONG_ID,      /* answers with a request id nobody asked about */
    FB_PIPELINE,      /* holds enqueue frames until the client stops sending, answers in reverse */
} fb_mode;

#define MAX_PENDING 64

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

static inline void copy_str(char *dst, size_t cap, const char *s)
{
    snprintf(dst, cap, "%s", s != NULL ? s : "");
}

static inline bool answer_enqueue(int fd, uint64_t id, size_t n, uint64_t first_id)
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

static inline bool flush_pending(fake_broker *fb, int fd)
{
    /* Reverse order: the client must match replies by request id, not by arrival. */
    while (fb->n_pending > 0) {
        pending_enqueue p = fb->pending[--fb->n_pending];
        if (!answer_enqueue(fd, p.request_id, p.n_items, p.first_id))
            return false;
    }
    return true;
}

static inline bool on_enqueue(fake_broker *fb, int fd, const Leaseq__Request *q, const lq_frame *f)
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

static inline bool on_dequeue(fake_broker *fb, int fd, const Leaseq__Request *q)
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

static inline bool on_stats(int fd, const Leaseq__Request *q)
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
static inline bool handle(fake_broker *fb, int fd, const Leaseq__Request *q, const lq_frame *f)
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

static inline bool handle_locked(void *ctx, int fd, const Leaseq__Request *q, const lq_frame *f)
{
    fake_broker *fb = ctx;
    pthread_mutex_lock(&fb->mu);
    bool keep = handle(fb, fd, q, f);
    pthread_mutex_unlock(&fb->mu);
    return keep;
}

static inline void serve(fake_broker *fb, int fd)
{
    fw_in in;
    fw_in_init(&in, 1u << 20);
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
        if (!fw_read_requests(&in, fd, handle_locked, fb))
            break;
    }
    fw_in_free(&in);
}

static inline void *fake_main(void *arg)
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

static inline fake_broker *fake_start(bool use_unix)
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

static inline void fake_stop(fake_broker *fb)
{
    atomic_store(&fb->stop, true);
    pthread_join(fb->thread, NULL);
    close(fb->lfd);
    if (fb->unix_path[0])
        unlink(fb->unix_path);
    pthread_mutex_destroy(&fb->mu);
    free(fb);
}

static inline void fake_set_mode(fake_broker *fb, fb_mode m)
{
    pthread_mutex_lock(&fb->mu);
    fb->mode = m;
    pthread_mutex_unlock(&fb->mu);
}

static inline leaseq *connect_to(fake_broker *fb)
{
    leaseq_opts o = { .client_name = "unit", .token = "s3cret", .worker_id = "gpu-7", .heartbeat_ms = 1500,
                      .connect_timeout_ms = 2000 };
    leaseq *c = NULL;
    assert_int_equal(leaseq_connect(fb->addr, &o, &c), LEASEQ_OK);
    assert_non_null(c);
    return c;
}

#endif /* LQ_TEST_FAKE_BROKER_H */
