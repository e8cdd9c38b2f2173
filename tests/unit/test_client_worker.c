/* libleaseq waits and the worker loop against a fake broker: a thread in this process that
 * listens on 127.0.0.1, keeps a small job list, parks dequeues without blocking the
 * connection (so heartbeats are read while a dequeue waits), and records what it was sent:
 * hello fields, acks, nacks and the arrival time of every heartbeat. */
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

/* cmocka's asserts longjmp and must stay on the test's thread; the fake broker aborts instead. */
#define FB_CHECK(e)                                                                      \
    do {                                                                                 \
        if (!(e)) {                                                                      \
            fprintf(stderr, "fake broker: check failed: %s at line %d\n", #e, __LINE__); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

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

static uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
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

static bool send_response(int fd, Leaseq__Response *r, const void *payload, uint32_t payload_len)
{
    size_t meta = leaseq__response__get_packed_size(r);
    uint8_t *buf = malloc(LQ_FRAME_HEADER_BYTES + meta);
    FB_CHECK(buf);
    leaseq__response__pack(r, buf + LQ_FRAME_HEADER_BYTES);
    lq_frame_header(buf, (uint32_t)meta, payload_len);
    bool ok = write_all(fd, buf, LQ_FRAME_HEADER_BYTES + meta) && write_all(fd, payload, payload_len);
    free(buf);
    return ok;
}

static bool send_error(int fd, uint64_t id, Leaseq__ErrorCode code, const char *msg)
{
    Leaseq__Error err = LEASEQ__ERROR__INIT;
    err.code = code;
    err.message = (char *)msg;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = id;
    r.error = &err;
    return send_response(fd, &r, NULL, 0);
}

/* Answers a dequeue with up to max jobs from the front of the list (possibly none). */
static bool answer_dequeue(fake_broker *fb, int fd, uint64_t request_id, uint32_t max)
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
    bool ok = send_response(fd, &r, payload, (uint32_t)plen);
    memmove(fb->jobs, fb->jobs + n, (fb->n_jobs - n) * sizeof fb->jobs[0]);
    fb->n_jobs -= n;
    return ok;
}

static bool on_wait(fake_broker *fb, int fd, const Leaseq__Request *q)
{
    uint64_t id = q->wait->job_id;
    fb->wait_timeout_ms = q->wait->timeout_ms;
    if (id == 3)
        return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__DEADLINE_EXCEEDED, "job 3 has not ended");
    if (id == 4)
        return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__NOT_FOUND, "no job 4");
    Leaseq__WaitReply w = LEASEQ__WAIT_REPLY__INIT;
    w.job_id = id;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = q->request_id;
    r.body_case = LEASEQ__RESPONSE__BODY_WAIT;
    r.wait = &w;
    if (id == 1) {
        w.state = LEASEQ__JOB_STATE__DONE;
        w.result_len = (uint32_t)fb->result_len;
        return send_response(fd, &r, fb->result, (uint32_t)fb->result_len);
    }
    if (id == 2) {
        w.state = LEASEQ__JOB_STATE__DEAD;
        w.error = "bad image";
        return send_response(fd, &r, NULL, 0);
    }
    if (id == 6) { /* claims bytes it does not send */
        w.state = LEASEQ__JOB_STATE__DONE;
        w.result_len = 10;
        return send_response(fd, &r, "12345", 5);
    }
    char up[64];
    size_t n = strlen(fb->enq_payload);
    for (size_t i = 0; i <= n; i++)
        up[i] = (char)(fb->enq_payload[i] >= 'a' && fb->enq_payload[i] <= 'z' ? fb->enq_payload[i] - 32
                                                                              : fb->enq_payload[i]);
    w.state = LEASEQ__JOB_STATE__DONE;
    w.result_len = (uint32_t)n;
    return send_response(fd, &r, up, (uint32_t)n);
}

static bool on_enqueue(fake_broker *fb, int fd, const Leaseq__Request *q, const lq_frame *f)
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
    return send_response(fd, &r, NULL, 0);
}

static void record(fb_rec *recs, size_t *n, fb_rec rec)
{
    FB_CHECK(*n < MAX_RECS);
    recs[(*n)++] = rec;
}

/* Returns false when the connection should be closed. */
static bool handle(fake_broker *fb, int fd, const Leaseq__Request *q, const lq_frame *f)
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
        return send_response(fd, &r, NULL, 0);
    }
    case LEASEQ__REQUEST__BODY_HEARTBEAT: {
        if (fb->n_beats < MAX_BEATS)
            fb->beats[fb->n_beats++] = now_ms();
        if ((q->request_id & (1ull << 63)) == 0)
            fb->beat_ids_ok = false;
        Leaseq__HeartbeatReply hb = LEASEQ__HEARTBEAT_REPLY__INIT;
        r.body_case = LEASEQ__RESPONSE__BODY_HEARTBEAT;
        r.heartbeat = &hb;
        return send_response(fd, &r, NULL, 0);
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
            return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__LEASE_LOST, "lease of job 5 expired");
        Leaseq__AckReply a = LEASEQ__ACK_REPLY__INIT;
        r.body_case = LEASEQ__RESPONSE__BODY_ACK;
        r.ack = &a;
        return send_response(fd, &r, NULL, 0);
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
        return send_response(fd, &r, NULL, 0);
    }
    case LEASEQ__REQUEST__BODY_WAIT:
        return on_wait(fb, fd, q);
    case LEASEQ__REQUEST__BODY_ENQUEUE:
        return on_enqueue(fb, fd, q, f);
    case LEASEQ__REQUEST__BODY_PING: {
        Leaseq__Pong pong = LEASEQ__PONG__INIT;
        r.body_case = LEASEQ__RESPONSE__BODY_PONG;
        r.pong = &pong;
        return send_response(fd, &r, NULL, 0);
    }
    default:
        return send_error(fd, q->request_id, LEASEQ__ERROR_CODE__INVALID_ARGUMENT, "unsupported");
    }
}

static void serve(fake_broker *fb, int fd)
{
    size_t cap = 1u << 16, len = 0;
    uint8_t *buf = malloc(cap);
    FB_CHECK(buf);
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
        ssize_t n = recv(fd, buf + len, cap - len, 0);
        if (n <= 0)
            break;
        len += (size_t)n;
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
    }
    pthread_mutex_lock(&fb->mu);
    fb->parked = false;
    pthread_mutex_unlock(&fb->mu);
    free(buf);
}

static void *fake_main(void *arg)
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

static fake_broker *fake_start(void)
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

static void fake_stop(fake_broker *fb)
{
    atomic_store(&fb->stop, true);
    pthread_join(fb->thread, NULL);
    close(fb->lfd);
    pthread_mutex_destroy(&fb->mu);
    free(fb->result);
    free(fb);
}

static void push_locked(fake_broker *fb, uint64_t id, const char *payload)
{
    FB_CHECK(fb->n_jobs < MAX_JOBS);
    fb->jobs[fb->n_jobs].id = id;
    snprintf(fb->jobs[fb->n_jobs].payload, sizeof fb->jobs[0].payload, "%s", payload);
    fb->n_jobs++;
}

static void fake_push(fake_broker *fb, uint64_t id, const char *payload)
{
    pthread_mutex_lock(&fb->mu);
    push_locked(fb, id, payload);
    pthread_mutex_unlock(&fb->mu);
}

static void fake_set_mode(fake_broker *fb, fb_mode m)
{
    pthread_mutex_lock(&fb->mu);
    fb->mode = m;
    pthread_mutex_unlock(&fb->mu);
}

/* Acks plus nacks the fake has seen. */
static size_t fake_settled(fake_broker *fb)
{
    pthread_mutex_lock(&fb->mu);
    size_t n = fb->n_acks + fb->n_nacks;
    pthread_mutex_unlock(&fb->mu);
    return n;
}

static void wait_settled(fake_broker *fb, size_t want)
{
    uint64_t until = now_ms() + 10000;
    while (fake_settled(fb) < want && now_ms() < until)
        sleep_ms(5);
    assert_int_equal(fake_settled(fb), want);
}

static leaseq *connect_to(fake_broker *fb, bool keep)
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

static void on_release(void *arg)
{
    handler_ctx *h = arg;
    atomic_fetch_add(&h->releases, 1);
}

/* The payload says what to do: "ok:TEXT" acks with "TEXT-done", "nack", "dead",
 * "sleep:MS" sleeps then acks, "stop" stops the worker then acks. */
static void handler(void *ctx, const leaseq_lease *job, leaseq_handler_result *res)
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

static void *run_main(void *arg)
{
    runner *r = arg;
    r->rc = leaseq_worker_run(r->w);
    return NULL;
}

static leaseq_worker *make_worker(fake_broker *fb, handler_ctx *h, uint32_t prefetch, uint32_t hb_ms)
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

static void run_start(runner *r, leaseq_worker *w)
{
    r->w = w;
    r->rc = LEASEQ_E_INTERNAL;
    assert_int_equal(pthread_create(&r->t, NULL, run_main, r), 0);
}

static leaseq_err run_stop(runner *r)
{
    leaseq_worker_stop(r->w);
    pthread_join(r->t, NULL);
    return r->rc;
}

/* ---- tests ---- */

static void test_wait_done_big_result(void **state)
{
    fake_broker *fb = fake_start();
    enum { N = 1 << 20 };
    fb->result = malloc(N); /* before any client: no lock needed yet */
    assert_non_null(fb->result);
    srand(7);
    for (size_t i = 0; i < N; i++)
        fb->result[i] = (uint8_t)rand();
    fb->result_len = N;
    leaseq *c = connect_to(fb, false);
    leaseq_outcome o;
    assert_int_equal(leaseq_wait(c, 1, 1000, &o, 3000), LEASEQ_OK);
    assert_int_equal(o.job_id, 1);
    assert_int_equal(o.state, LEASEQ_STATE_DONE);
    assert_string_equal(o.error, "");
    assert_int_equal(o.result_len, N);
    assert_memory_equal(o.result, fb->result, N);
    assert_string_equal(leaseq_state_name(o.state), "done");
    leaseq_outcome_free(&o);
    assert_null(o.result);
    assert_null(o.error);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->wait_timeout_ms, 1000);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_wait_other_outcomes(void **state)
{
    fake_broker *fb = fake_start();
    leaseq *c = connect_to(fb, false);
    leaseq_outcome o;
    assert_int_equal(leaseq_wait(c, 2, 100, &o, 1000), LEASEQ_OK);
    assert_int_equal(o.state, LEASEQ_STATE_DEAD);
    assert_string_equal(o.error, "bad image");
    assert_int_equal(o.result_len, 0);
    assert_null(o.result);
    leaseq_outcome_free(&o);

    /* the broker's wait ran out: passed through, connection kept */
    assert_int_equal(leaseq_wait(c, 3, 100, &o, 1000), LEASEQ_E_DEADLINE_EXCEEDED);
    assert_string_equal(leaseq_last_error(c), "job 3 has not ended");
    assert_int_equal(o.state, 0);
    assert_null(o.error);
    assert_int_equal(leaseq_wait(c, 4, 100, &o, 1000), LEASEQ_E_NOT_FOUND);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 1);
    pthread_mutex_unlock(&fb->mu);

    /* timeout_ms must exceed wait_ms; a reply whose lengths disagree drops the connection */
    assert_int_equal(leaseq_wait(c, 2, 1000, &o, 1000), LEASEQ_E_INVALID_ARGUMENT);
    assert_int_equal(leaseq_wait(c, 6, 100, &o, 1000), LEASEQ_E_PROTOCOL_ERROR);
    assert_null(o.error);
    assert_int_equal(leaseq_wait(c, 2, 100, NULL, 1000), LEASEQ_E_INVALID_ARGUMENT);
    leaseq_outcome_free(&o); /* harmless on a zeroed outcome */
    leaseq_close(c);
    fake_stop(fb);
}

static void test_enqueue_and_wait(void **state)
{
    fake_broker *fb = fake_start();
    leaseq *c = connect_to(fb, false);
    leaseq_job_spec j = { .queue = "img", .payload = "hello gpu", .payload_len = 9 };
    uint64_t id = 0;
    leaseq_outcome o;
    assert_int_equal(leaseq_enqueue_and_wait(c, &j, 500, &id, &o, 2000), LEASEQ_OK);
    assert_int_equal(id, ENQ_FIRST_ID);
    assert_int_equal(o.job_id, ENQ_FIRST_ID);
    assert_int_equal(o.state, LEASEQ_STATE_DONE);
    assert_int_equal(o.result_len, 9);
    assert_memory_equal(o.result, "HELLO GPU", 9);
    leaseq_outcome_free(&o);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->wait_timeout_ms, 500);
    assert_int_equal(fb->accepts, 1);
    pthread_mutex_unlock(&fb->mu);
    /* refused before anything is stored: the id stays 0 */
    leaseq_job_spec bad = { .queue = NULL };
    id = 99;
    assert_int_equal(leaseq_enqueue_and_wait(c, &bad, 500, &id, &o, 2000), LEASEQ_E_INVALID_ARGUMENT);
    assert_int_equal(id, 0);
    assert_int_equal(leaseq_enqueue_and_wait(c, &j, 2000, &id, &o, 2000), LEASEQ_E_INVALID_ARGUMENT);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_keep_leases_on_close_in_hello(void **state)
{
    fake_broker *fb = fake_start();
    leaseq *c = connect_to(fb, true);
    pthread_mutex_lock(&fb->mu);
    assert_true(fb->hello_keep);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    c = connect_to(fb, false);
    pthread_mutex_lock(&fb->mu);
    assert_false(fb->hello_keep);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_worker_acks_and_nacks(void **state)
{
    fake_broker *fb = fake_start();
    fake_push(fb, 1, "ok:a");
    fake_push(fb, 2, "nack");
    fake_push(fb, 3, "dead");
    fake_push(fb, 4, "ok:b");
    fake_push(fb, LOST_JOB, "ok:lost");
    fake_push(fb, 6, "ok:c");
    handler_ctx h = { 0 };
    leaseq_worker *w = make_worker(fb, &h, 2, 1000);
    runner r;
    run_start(&r, w);
    wait_settled(fb, 6);
    assert_int_equal(run_stop(&r), LEASEQ_OK);

    leaseq_worker_stats st;
    leaseq_worker_get_stats(w, &st);
    assert_int_equal(st.leased, 6);
    assert_int_equal(st.acked, 3);
    assert_int_equal(st.nacked, 2);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.lease_lost, 1); /* job 5's ack; the loop went on to job 6 */
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.released, 0);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(atomic_load(&h.calls), 6);
    assert_int_equal(atomic_load(&h.releases), 6);

    pthread_mutex_lock(&fb->mu);
    assert_string_equal(fb->hello_worker, "gpu-3");
    assert_int_equal(fb->hello_hb_ms, 1000);
    assert_false(fb->hello_keep);
    assert_int_equal(fb->deq_max, 2);
    assert_int_equal(fb->n_acks, 4);
    const uint64_t ack_ids[] = { 1, 4, LOST_JOB, 6 };
    const char *ack_res[] = { "a-done", "b-done", "lost-done", "c-done" };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(fb->acks[i].job_id, ack_ids[i]);
        assert_int_equal(fb->acks[i].token, ack_ids[i] * 1000 + 7);
        assert_int_equal(fb->acks[i].len, strlen(ack_res[i]));
        assert_string_equal(fb->acks[i].text, ack_res[i]);
    }
    assert_int_equal(fb->n_nacks, 2);
    assert_int_equal(fb->nacks[0].job_id, 2);
    assert_string_equal(fb->nacks[0].text, "try later");
    assert_false(fb->nacks[0].dead);
    assert_true(fb->nacks[0].delay_set);
    assert_int_equal(fb->nacks[0].delay_ms, 250);
    assert_int_equal(fb->nacks[1].job_id, 3);
    assert_true(fb->nacks[1].dead);
    assert_string_equal(fb->nacks[1].text, "bad input");
    assert_int_equal(fb->accepts, 1);
    pthread_mutex_unlock(&fb->mu);
    leaseq_worker_destroy(w);
    fake_stop(fb);
}

static void test_worker_heartbeats_during_long_handler(void **state)
{
    enum { HB_MS = 100 };
    fake_broker *fb = fake_start();
    fake_push(fb, 1, "sleep:350");
    fake_push(fb, 2, "ok:after");
    handler_ctx h = { 0 };
    leaseq_worker *w = make_worker(fb, &h, 1, HB_MS);
    runner r;
    run_start(&r, w);
    wait_settled(fb, 2);
    sleep_ms(2 * HB_MS); /* idle in a parked dequeue: beats go on */
    assert_int_equal(run_stop(&r), LEASEQ_OK);

    uint64_t t0 = atomic_load(&h.sleep_start_ms), t1 = atomic_load(&h.sleep_end_ms);
    assert_true(t1 >= t0 + 350);
    pthread_mutex_lock(&fb->mu);
    size_t during = 0;
    uint64_t max_gap = 0;
    for (size_t i = 0; i < fb->n_beats; i++) {
        if (fb->beats[i] >= t0 && fb->beats[i] <= t1)
            during++;
        if (i > 0 && fb->beats[i] - fb->beats[i - 1] > max_gap)
            max_gap = fb->beats[i] - fb->beats[i - 1];
    }
    size_t n_beats = fb->n_beats;
    bool ids_ok = fb->beat_ids_ok;
    int accepts = fb->accepts;
    size_t n_acks = fb->n_acks;
    pthread_mutex_unlock(&fb->mu);
    /* 350 ms of handler at 100 ms: 3 beats expected; allow one lost to scheduling */
    assert_true(during >= 2);
    assert_true(max_gap <= 2 * HB_MS);
    assert_true(n_beats >= 5);
    assert_true(ids_ok);
    /* the heartbeat replies were skipped, not taken for garbage: one connection, both acked */
    assert_int_equal(accepts, 1);
    assert_int_equal(n_acks, 2);
    leaseq_worker_stats st;
    leaseq_worker_get_stats(w, &st);
    assert_int_equal(st.acked, 2);
    assert_int_equal(st.heartbeats_sent, n_beats);
    assert_int_equal(st.reconnects, 0);
    leaseq_worker_destroy(w);
    fake_stop(fb);
}

static void test_worker_graceful_stop_releases_prefetched(void **state)
{
    fake_broker *fb = fake_start();
    fake_push(fb, 1, "stop");
    fake_push(fb, 2, "ok:x");
    fake_push(fb, 3, "ok:y");
    fake_push(fb, 4, "ok:z");
    handler_ctx h = { 0 };
    leaseq_worker *w = make_worker(fb, &h, 4, 1000);
    uint64_t t0 = now_ms();
    assert_int_equal(leaseq_worker_run(w), LEASEQ_OK); /* the handler stops it */
    assert_true(now_ms() - t0 < 1000); /* the heartbeat thread quit without waiting out its beat */
    leaseq_worker_stats st;
    leaseq_worker_get_stats(w, &st);
    assert_int_equal(st.leased, 4);
    assert_int_equal(st.acked, 1);
    assert_int_equal(st.released, 3);
    assert_int_equal(atomic_load(&h.calls), 1);
    assert_int_equal(atomic_load(&h.releases), 1);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->n_acks, 1);
    assert_int_equal(fb->acks[0].job_id, 1);
    assert_int_equal(fb->n_nacks, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(fb->nacks[i].job_id, i + 2);
        assert_int_equal(fb->nacks[i].token, (i + 2) * 1000 + 7);
        assert_true(fb->nacks[i].delay_set);
        assert_int_equal(fb->nacks[i].delay_ms, 0);
        assert_false(fb->nacks[i].dead);
        assert_string_equal(fb->nacks[i].text, "worker stopping");
    }
    pthread_mutex_unlock(&fb->mu);

    /* a stop before a run makes it return at once; after that a run works again */
    leaseq_worker_stop(w);
    t0 = now_ms();
    assert_int_equal(leaseq_worker_run(w), LEASEQ_OK);
    assert_true(now_ms() - t0 < 200);
    fake_push(fb, 7, "ok:again");
    runner r;
    run_start(&r, w);
    wait_settled(fb, 5);
    /* idle in a 100 ms long poll: a stop from another thread is seen within about that */
    sleep_ms(150);
    t0 = now_ms();
    assert_int_equal(run_stop(&r), LEASEQ_OK);
    assert_true(now_ms() - t0 < 1000);
    leaseq_worker_destroy(w);
    fake_stop(fb);
}

static void test_worker_connection_loss(void **state)
{
    fake_broker *fb = fake_start();
    /* the first dequeue breaks the connection: the worker reconnects and goes on */
    fake_set_mode(fb, FB_CLOSE_ON_DEQUEUE);
    fake_push(fb, 1, "ok:a");
    fake_push(fb, 2, "ok:b");
    handler_ctx h = { 0 };
    leaseq_worker *w = make_worker(fb, &h, 2, 1000);
    runner r;
    run_start(&r, w);
    wait_settled(fb, 2);
    /* an ack that breaks the connection: the rest of that batch was requeued by the broker */
    pthread_mutex_lock(&fb->mu); /* all at once, so one dequeue of 2 gets jobs 3 and 4 */
    fb->mode = FB_CLOSE_ON_ACK;
    push_locked(fb, 3, "ok:c");
    push_locked(fb, 4, "ok:d");
    push_locked(fb, 8, "ok:e");
    pthread_mutex_unlock(&fb->mu);
    wait_settled(fb, 3); /* job 3's ack was not answered nor recorded; job 8 came later */
    assert_int_equal(run_stop(&r), LEASEQ_OK);
    leaseq_worker_stats st;
    leaseq_worker_get_stats(w, &st);
    assert_int_equal(st.reconnects, 2);
    assert_int_equal(st.failed, 1);     /* job 3: its outcome is unknown */
    assert_int_equal(st.lease_lost, 1); /* job 4: skipped, not handled */
    assert_int_equal(st.acked, 3);
    assert_int_equal(atomic_load(&h.calls), 4);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 3);
    assert_int_equal(fb->acks[2].job_id, 8);
    pthread_mutex_unlock(&fb->mu);
    assert_true(strstr(leaseq_worker_last_error(w), "ack job 3") != NULL);
    leaseq_worker_destroy(w);
    fake_stop(fb);
}

static void test_worker_create_checks(void **state)
{
    const char *const queues[] = { "img" };
    leaseq_worker_opts o = { .addr = "127.0.0.1:1", .worker_id = "w", .queues = queues, .n_queues = 1 };
    leaseq_worker *w = (leaseq_worker *)&o;
    o.worker_id = NULL;
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    assert_null(w);
    o.worker_id = "w";
    o.prefetch = 257;
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    o.prefetch = 256;
    o.n_queues = 0;
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    o.n_queues = 1;
    assert_int_equal(leaseq_worker_create(&o, NULL, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    o.addr = "nonsense";
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    o.addr = "127.0.0.1:1";
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_OK);
    leaseq_worker_destroy(w);
    leaseq_worker_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_done_big_result),
        cmocka_unit_test(test_wait_other_outcomes),
        cmocka_unit_test(test_enqueue_and_wait),
        cmocka_unit_test(test_keep_leases_on_close_in_hello),
        cmocka_unit_test(test_worker_acks_and_nacks),
        cmocka_unit_test(test_worker_heartbeats_during_long_handler),
        cmocka_unit_test(test_worker_graceful_stop_releases_prefetched),
        cmocka_unit_test(test_worker_connection_loss),
        cmocka_unit_test(test_worker_create_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
