/* The fake broker of test_client_worker.c: a thread in the test process that listens on
 * 127.0.0.1, keeps a small job list, parks dequeues without blocking the connection (so
 * heartbeats are read while a dequeue waits), and records what it was sent: hello fields, acks,
 * nacks and the arrival time of every heartbeat. Also the worker's test handler and the thread
 * that runs the worker loop. Header-only, static inline. */
#ifndef LQ_TEST_FAKE_WORKER_BROKER_H
#define LQ_TEST_FAKE_WORKER_BROKER_H

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
#include <time.h>
#include <unistd.h>

#include <cmocka.h>

#include "leaseq.h"
#include "leaseq.pb-c.h"
#include "proto/frame.h"
#include "fake_wire.h"

#define MAX_JOBS 32
#define MAX_RECS 64
#define MAX_BEATS 512
#define LOST_JOB 5        /* acks of this job get LEASE_LOST */
#define ENQ_FIRST_ID 100  /* enqueued jobs; a wait on them answers DONE with the payload upper-cased */

typedef enum {
    FB_NORMAL,
    FB_CLOSE_ON_DEQUEUE, /* closes the connection at the next dequeue, then back to normal */
    FB_CLOSE_ON_ACK,     /* closes the connection at the next ack (unanswered), then normal */
} fb_mode;

typedef struct {
    uint64_t job_id, token;
    char text[64]; /* ack: result; nack: error */
    size_t len;
    bool dead, delay_set;
    uint64_t delay_ms;
} fb_rec;

typedef struct {
    uint64_t id;
    char payload[32];
} fb_job;

typedef struct {
    int lfd;
    char addr[64];
    pthread_t thread;
    atomic_bool stop;
    pthread_mutex_t mu;
    /* guarded by mu */
    fb_mode mode;
    int accepts;
    bool hello_keep;
    uint32_t hello_hb_ms;
    char hello_worker[64];
    fb_job jobs[MAX_JOBS];
    size_t n_jobs;
    uint32_t deq_max;
    fb_rec acks[MAX_RECS], nacks[MAX_RECS];
    size_t n_acks, n_nacks;
    uint64_t beats[MAX_BEATS];
    size_t n_beats;
    bool beat_ids_ok;
    uint32_t wait_timeout_ms;
    uint8_t *result; /* job 1's result */
    size_t result_len;
    char enq_payload[64];
    uint64_t next_job_id;
    bool parked;
    uint64_t park_id, park_deadline_ms;
    uint32_t park_max;
} fake_broker;

/* This fake's frames always claim exactly the payload bytes they carry. */
static inline bool send_reply(int fd, Leaseq__Response *r, const void *payload, uint32_t payload_len)
{
    return send_response(fd, r, payload, payload_len, payload_len);
}

/* Answers a dequeue with up to max jobs from the front of the list (possibly none). */
static inline bool answer_dequeue(fake_broker *fb, int fd, uint64_t request_id, uint32_t max)
{
    Leaseq__LeasedJob js[MAX_JOBS], *jp[MAX_JOBS];
    char payload[MAX_JOBS * 32];
    size_t n = 0, plen = 0;
    while (n < max && n < fb->n_jobs) {
        const fb_job *j = &fb->jobs[n];
        leaseq__leased_job__init(&js[n]);
        js[n].job_id = j->id;
        js[n].lease_token = j->id * 1000 + 7;
        js[n].queue = "img";
        js[n].lane = "api";
        js[n].attempt = 1;
        js[n].payload_len = (uint32_t)strlen(j->payload);
        memcpy(payload + plen, j->payload, js[n].payload_len);
        plen += js[n].payload_len;
        jp[n] = &js[n];
        n++;
    }
    Leaseq__DequeueReply dr = LEASEQ__DEQUEUE_REPLY__INIT;
    dr.n_jobs = n;
    dr.jobs = jp;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = request_id;
    r.body_case = LEASEQ__RESPONSE__BODY_DEQUEUE;
    r.dequeue = &dr;
    bool ok = send_reply(fd, &r, payload, (uint32_t)plen);
    memmove(fb->jobs, fb->jobs + n, (fb->n_jobs - n) * sizeof fb->jobs[0]);
    fb->n_jobs -= n;
    return ok;
}

static inline bool on_wait(fake_broker *fb, int fd, const Leaseq__Request *q)
{
    uint64_t id = q->wait->job_id;
    fb->wait_timeout_ms = q->wait->timeout_ms;
    if (id == 3)
        return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__DEADLINE_EXCEEDED, "job 3 has not ended", 0);
    if (id == 4)
        return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__NOT_FOUND, "no job 4", 0);
    Leaseq__WaitReply w = LEASEQ__WAIT_REPLY__INIT;
    w.job_id = id;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = q->request_id;
    r.body_case = LEASEQ__RESPONSE__BODY_WAIT;
    r.wait = &w;
    if (id == 1) {
        w.state = LEASEQ__JOB_STATE__DONE;
        w.result_len = (uint32_t)fb->result_len;
        return send_reply(fd, &r, fb->result, (uint32_t)fb->result_len);
    }
    if (id == 2) {
        w.state = LEASEQ__JOB_STATE__DEAD;
        w.error = "bad image";
        return send_reply(fd, &r, NULL, 0);
    }
    if (id == 6) { /* claims bytes it does not send */
        w.state = LEASEQ__JOB_STATE__DONE;
        w.result_len = 10;
        return send_reply(fd, &r, "12345", 5);
    }
    char up[64];
    size_t n = strlen(fb->enq_payload);
    for (size_t i = 0; i <= n; i++)
        up[i] = (char)(fb->enq_payload[i] >= 'a' && fb->enq_payload[i] <= 'z' ? fb->enq_payload[i] - 32
                                                                              : fb->enq_payload[i]);
    w.state = LEASEQ__JOB_STATE__DONE;
    w.result_len = (uint32_t)n;
    return send_reply(fd, &r, up, (uint32_t)n);
}

static inline bool on_enqueue(fake_broker *fb, int fd, const Leaseq__Request *q, const lq_frame *f)
{
    size_t n = f->payload_len < sizeof fb->enq_payload - 1 ? f->payload_len : sizeof fb->enq_payload - 1;
    memcpy(fb->enq_payload, f->payload, n);
    fb->enq_payload[n] = '\0';
    Leaseq__EnqueueResult res = LEASEQ__ENQUEUE_RESULT__INIT, *rp = &res;
    res.job_id = fb->next_job_id++;
    Leaseq__EnqueueReply er = LEASEQ__ENQUEUE_REPLY__INIT;
    er.n_results = 1;
    er.results = &rp;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = q->request_id;
    r.body_case = LEASEQ__RESPONSE__BODY_ENQUEUE;
    r.enqueue = &er;
    return send_reply(fd, &r, NULL, 0);
}

static inline void record(fb_rec *recs, size_t *n, fb_rec rec)
{
    FB_CHECK(*n < MAX_RECS);
    recs[(*n)++] = rec;
}

/* Returns false when the connection should be closed. */
static inline bool handle(fake_broker *fb, int fd, const Leaseq__Request *q, const lq_frame *f)
{
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = q->request_id;
    switch (q->body_case) {
    case LEASEQ__REQUEST__BODY_HELLO: {
        fb->hello_keep = q->hello->keep_leases_on_close;
        fb->hello_hb_ms = q->hello->heartbeat_ms;
        snprintf(fb->hello_worker, sizeof fb->hello_worker, "%s", q->hello->worker_id);
        Leaseq__HelloReply h = LEASEQ__HELLO_REPLY__INIT;
        h.protocol_version = 1;
        h.server_name = "fake";
        h.role = LEASEQ__ROLE__WORKER;
        h.heartbeat_timeout_ms = 3000;
        h.max_payload_bytes = 16u << 20;
        r.body_case = LEASEQ__RESPONSE__BODY_HELLO;
        r.hello = &h;
        return send_reply(fd, &r, NULL, 0);
    }
    case LEASEQ__REQUEST__BODY_HEARTBEAT: {
        if (fb->n_beats < MAX_BEATS)
            fb->beats[fb->n_beats++] = now_ms();
        if ((q->request_id & (1ull << 63)) == 0)
            fb->beat_ids_ok = false;
        Leaseq__HeartbeatReply hb = LEASEQ__HEARTBEAT_REPLY__INIT;
        r.body_case = LEASEQ__RESPONSE__BODY_HEARTBEAT;
        r.heartbeat = &hb;
        return send_reply(fd, &r, NULL, 0);
    }
    case LEASEQ__REQUEST__BODY_DEQUEUE:
        if (fb->mode == FB_CLOSE_ON_DEQUEUE) {
            fb->mode = FB_NORMAL;
            return false;
        }
        fb->deq_max = q->dequeue->max_jobs;
        if (fb->n_jobs > 0 || q->dequeue->wait_ms == 0)
            return answer_dequeue(fb, fd, q->request_id, q->dequeue->max_jobs);
        fb->parked = true; /* answered by serve() when a job arrives or the wait runs out */
        fb->park_id = q->request_id;
        fb->park_max = q->dequeue->max_jobs;
        fb->park_deadline_ms = now_ms() + q->dequeue->wait_ms;
        return true;
    case LEASEQ__REQUEST__BODY_ACK: {
        if (fb->mode == FB_CLOSE_ON_ACK) {
            fb->mode = FB_NORMAL;
            return false;
        }
        fb_rec rec = { .job_id = q->ack->job_id, .token = q->ack->lease_token, .len = f->payload_len };
        memcpy(rec.text, f->payload, f->payload_len < sizeof rec.text ? f->payload_len : sizeof rec.text - 1);
        record(fb->acks, &fb->n_acks, rec);
        if (q->ack->job_id == LOST_JOB)
            return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__LEASE_LOST, "lease of job 5 expired", 0);
        Leaseq__AckReply a = LEASEQ__ACK_REPLY__INIT;
        r.body_case = LEASEQ__RESPONSE__BODY_ACK;
        r.ack = &a;
        return send_reply(fd, &r, NULL, 0);
    }
    case LEASEQ__REQUEST__BODY_NACK: {
        const Leaseq__Nack *nk = q->nack;
        fb_rec rec = { .job_id = nk->job_id, .token = nk->lease_token, .dead = nk->dead,
                       .delay_set = nk->delay_set, .delay_ms = nk->delay_ms };
        snprintf(rec.text, sizeof rec.text, "%s", nk->error);
        record(fb->nacks, &fb->n_nacks, rec);
        Leaseq__NackReply n = LEASEQ__NACK_REPLY__INIT;
        n.state = nk->dead ? LEASEQ__JOB_STATE__DEAD : LEASEQ__JOB_STATE__DELAYED;
        r.body_case = LEASEQ__RESPONSE__BODY_NACK;
        r.nack = &n;
        return send_reply(fd, &r, NULL, 0);
    }
    case LEASEQ__REQUEST__BODY_WAIT:
        return on_wait(fb, fd, q);
    case LEASEQ__REQUEST__BODY_ENQUEUE:
        return on_enqueue(fb, fd, q, f);
    case LEASEQ__REQUEST__BODY_PING: {
        Leaseq__Pong pong = LEASEQ__PONG__INIT;
        r.body_case = LEASEQ__RESPONSE__BODY_PONG;
        r.pong = &pong;
        return send_reply(fd, &r, NULL, 0);
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
    fw_in_init(&in, 1u << 16);
    bool keep = true;
    while (keep && !atomic_load(&fb->stop)) {
        pthread_mutex_lock(&fb->mu);
        if (fb->parked && (fb->n_jobs > 0 || now_ms() >= fb->park_deadline_ms)) {
            fb->parked = false;
            keep = answer_dequeue(fb, fd, fb->park_id, fb->park_max);
        }
        pthread_mutex_unlock(&fb->mu);
        struct pollfd p = { .fd = fd, .events = POLLIN };
        int r = poll(&p, 1, 5);
        if (r == 0)
            continue;
        if (r < 0)
            break;
        keep = fw_read_requests(&in, fd, handle_locked, fb);
    }
    pthread_mutex_lock(&fb->mu);
    fb->parked = false;
    pthread_mutex_unlock(&fb->mu);
    fw_in_free(&in);
}

static inline void *fake_main(void *arg)
{
    fake_broker *fb = arg;
    while (!atomic_load(&fb->stop)) {
        struct pollfd p = { .fd = fb->lfd, .events = POLLIN };
        if (poll(&p, 1, 20) <= 0)
            continue;
        int fd = accept(fb->lfd, NULL, NULL);
        if (fd < 0)
            continue;
        pthread_mutex_lock(&fb->mu);
        fb->accepts++;
        pthread_mutex_unlock(&fb->mu);
        serve(fb, fd);
        close(fd);
    }
    return NULL;
}

static inline fake_broker *fake_start(void)
{
    fake_broker *fb = calloc(1, sizeof *fb);
    assert_non_null(fb);
    pthread_mutex_init(&fb->mu, NULL);
    fb->beat_ids_ok = true;
    fb->next_job_id = ENQ_FIRST_ID;
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    fb->lfd = socket(AF_INET, SOCK_STREAM, 0);
    assert_true(fb->lfd >= 0);
    assert_int_equal(bind(fb->lfd, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(fb->lfd, (struct sockaddr *)&sin, &sl), 0);
    snprintf(fb->addr, sizeof fb->addr, "127.0.0.1:%u", ntohs(sin.sin_port));
    assert_int_equal(listen(fb->lfd, 16), 0);
    assert_int_equal(pthread_create(&fb->thread, NULL, fake_main, fb), 0);
    return fb;
}

static inline void fake_stop(fake_broker *fb)
{
    atomic_store(&fb->stop, true);
    pthread_join(fb->thread, NULL);
    close(fb->lfd);
    pthread_mutex_destroy(&fb->mu);
    free(fb->result);
    free(fb);
}

static inline void push_locked(fake_broker *fb, uint64_t id, const char *payload)
{
    FB_CHECK(fb->n_jobs < MAX_JOBS);
    fb->jobs[fb->n_jobs].id = id;
    snprintf(fb->jobs[fb->n_jobs].payload, sizeof fb->jobs[0].payload, "%s", payload);
    fb->n_jobs++;
}

static inline void fake_push(fake_broker *fb, uint64_t id, const char *payload)
{
    pthread_mutex_lock(&fb->mu);
    push_locked(fb, id, payload);
    pthread_mutex_unlock(&fb->mu);
}

static inline void fake_set_mode(fake_broker *fb, fb_mode m)
{
    pthread_mutex_lock(&fb->mu);
    fb->mode = m;
    pthread_mutex_unlock(&fb->mu);
}

/* Acks plus nacks the fake has seen. */
static inline size_t fake_settled(fake_broker *fb)
{
    pthread_mutex_lock(&fb->mu);
    size_t n = fb->n_acks + fb->n_nacks;
    pthread_mutex_unlock(&fb->mu);
    return n;
}

static inline void wait_settled(fake_broker *fb, size_t want)
{
    uint64_t until = now_ms() + 10000;
    while (fake_settled(fb) < want && now_ms() < until)
        sleep_ms(5);
    assert_int_equal(fake_settled(fb), want);
}

static inline leaseq *connect_to(fake_broker *fb, bool keep)
{
    leaseq_opts o = { .client_name = "unit", .keep_leases_on_close = keep, .connect_timeout_ms = 2000 };
    leaseq *c = NULL;
    assert_int_equal(leaseq_connect(fb->addr, &o, &c), LEASEQ_OK);
    return c;
}

/* ---- the worker's handler and the thread that runs it ---- */

typedef struct {
    leaseq_worker *w;
    atomic_int calls, releases;
    atomic_ullong sleep_start_ms, sleep_end_ms;
    char results[MAX_JOBS][48]; /* results[i] handed to the ack of the i-th call */
} handler_ctx;

static inline void on_release(void *arg)
{
    handler_ctx *h = arg;
    atomic_fetch_add(&h->releases, 1);
}

/* The payload says what to do: "ok:TEXT" acks with "TEXT-done", "nack", "dead",
 * "sleep:MS" sleeps then acks, "stop" stops the worker then acks. */
static inline void handler(void *ctx, const leaseq_lease *job, leaseq_handler_result *res)
{
    handler_ctx *h = ctx;
    int i = atomic_fetch_add(&h->calls, 1);
    FB_CHECK(i < MAX_JOBS);
    char p[64];
    snprintf(p, sizeof p, "%.*s", (int)job->payload_len, (const char *)job->payload);
    res->release = on_release;
    res->release_arg = h;
    if (strncmp(p, "ok:", 3) == 0) {
        int n = snprintf(h->results[i], sizeof h->results[i], "%s-done", p + 3);
        res->result = h->results[i];
        res->result_len = (size_t)n;
    } else if (strcmp(p, "nack") == 0) {
        res->nack = true;
        res->error = "try later";
        res->delay_set = true;
        res->delay_ms = 250;
    } else if (strcmp(p, "dead") == 0) {
        res->dead = true;
        res->error = "bad input";
    } else if (strncmp(p, "sleep:", 6) == 0) {
        atomic_store(&h->sleep_start_ms, now_ms());
        sleep_ms((unsigned)atoi(p + 6));
        atomic_store(&h->sleep_end_ms, now_ms());
    } else if (strcmp(p, "stop") == 0) {
        leaseq_worker_stop(h->w);
    }
}

typedef struct {
    leaseq_worker *w;
    pthread_t t;
    leaseq_err rc;
} runner;

static inline void *run_main(void *arg)
{
    runner *r = arg;
    r->rc = leaseq_worker_run(r->w);
    return NULL;
}

static inline leaseq_worker *make_worker(fake_broker *fb, handler_ctx *h, uint32_t prefetch, uint32_t hb_ms)
{
    static const char *const queues[] = { "img" };
    leaseq_worker_opts o = { .addr = fb->addr, .worker_id = "gpu-3", .queues = queues, .n_queues = 1,
                             .prefetch = prefetch, .heartbeat_ms = hb_ms, .poll_wait_ms = 100,
                             .call_timeout_ms = 2000 };
    leaseq_worker *w = NULL;
    assert_int_equal(leaseq_worker_create(&o, handler, h, &w), LEASEQ_OK);
    h->w = w;
    return w;
}

static inline void run_start(runner *r, leaseq_worker *w)
{
    r->w = w;
    r->rc = LEASEQ_E_INTERNAL;
    assert_int_equal(pthread_create(&r->t, NULL, run_main, r), 0);
}

static inline leaseq_err run_stop(runner *r)
{
    leaseq_worker_stop(r->w);
    pthread_join(r->t, NULL);
    return r->rc;
}

#endif /* LQ_TEST_FAKE_WORKER_BROKER_H */
