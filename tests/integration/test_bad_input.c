/* Bad input never takes the broker down, and never disturbs a well-behaved client.
 *
 * A real leaseqd; a good client (libleaseq, its own thread) keeps doing enqueue/lease/ack round
 * trips the whole time while raw sockets send: random garbage, a frame header claiming 4 GiB,
 * oversized metadata, inconsistent lengths, a request before hello, undecodable protobuf, and
 * truncated frames followed by a close. Each raw socket must get an Error frame
 * (FRAME_TOO_LARGE or PROTOCOL_ERROR) and be closed (closed without a frame is tolerated and
 * reported). Then the typed errors of well-formed but wrong requests: an ack with a stale token
 * is LEASE_LOST, an enqueue to an invalid queue name is INVALID_ARGUMENT (connection kept).
 * At the end the good client has seen no error and the broker is alive and stops cleanly.
 */
#include "harness.h"

#include <pthread.h>
#include <stdatomic.h>

#include "leaseq.h"
#include "leaseq.pb-c.h"
#include "proto/frame.h"

#define OBSERVE_MS 5000          /* how long a raw socket waits for the broker's verdict */
#define CALL_TIMEOUT_MS 5000
#define RAW_BUF_MAX (1u << 20)   /* what a raw socket keeps of the broker's answer */
#define IDLE_CONNS 50

static int failures;

#define CHECK(cond, ...)                                                                           \
    do {                                                                                           \
        if (!(cond)) {                                                                             \
            failures++;                                                                            \
            h_log("FAILED: " __VA_ARGS__);                                                         \
        }                                                                                          \
    } while (0)

/* ---- raw wire helpers ------------------------------------------------------------------ */

static bool raw_send(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t n = send(fd, p, len, MSG_NOSIGNAL);
        if (n < 0 && errno == EINTR)
            continue;
        if (n <= 0)
            return false; /* the broker may already have closed on us: that is allowed */
        p += n;
        len -= (size_t)n;
    }
    return true;
}

/* Sends one Request frame with an optional payload trailer. */
static bool raw_send_request(int fd, const Leaseq__Request *req, const void *payload, uint32_t payload_len)
{
    size_t mlen = leaseq__request__get_packed_size(req);
    uint8_t *buf = malloc(LQ_FRAME_HEADER_BYTES + mlen + payload_len); /* owner: freed below */
    if (!buf)
        return false;
    lq_frame_header(buf, (uint32_t)mlen, payload_len);
    leaseq__request__pack(req, buf + LQ_FRAME_HEADER_BYTES);
    if (payload_len)
        memcpy(buf + LQ_FRAME_HEADER_BYTES + mlen, payload, payload_len);
    bool ok = raw_send(fd, buf, LQ_FRAME_HEADER_BYTES + mlen + payload_len);
    free(buf);
    return ok;
}

typedef struct {
    bool closed;          /* EOF or reset seen */
    int n_frames;
    int n_errors;         /* Response frames with an error set */
    int last_code;        /* of the last error frame, -1 if none */
    uint64_t last_request_id;
    int body_case;        /* of the last frame */
    bool garbled_reply;   /* the broker sent something that is not a frame */
    Leaseq__Response *last; /* owner: the last decoded response, free with observation_free */
} observation;

static void observation_free(observation *o)
{
    if (o->last)
        leaseq__response__free_unpacked(o->last, NULL);
    o->last = NULL;
}

/* Reads what the broker sends for up to timeout_ms: stops at EOF/reset, or (stop_after_frames > 0)
 * once that many frames arrived. */
static void observe(int fd, int timeout_ms, int stop_after_frames, observation *o)
{
    memset(o, 0, sizeof *o);
    o->last_code = -1;
    uint8_t *buf = malloc(RAW_BUF_MAX); /* owner: freed below */
    if (!buf)
        return;
    size_t len = 0;
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        /* decode whatever whole frames we hold */
        for (;;) {
            lq_frame f;
            size_t used = 0, need = 0;
            lq_frame_status st = lq_frame_parse(buf, len, RAW_BUF_MAX, &f, &used, &need);
            if (st == LQ_FRAME_NEED_MORE)
                break;
            if (st != LQ_FRAME_OK) {
                o->garbled_reply = true;
                len = 0;
                break;
            }
            Leaseq__Response *r = leaseq__response__unpack(NULL, f.meta_len, f.meta);
            if (!r) {
                o->garbled_reply = true;
            } else {
                o->n_frames++;
                o->last_request_id = r->request_id;
                o->body_case = (int)r->body_case;
                if (r->error && r->error->code != LEASEQ__ERROR_CODE__OK) {
                    o->n_errors++;
                    o->last_code = (int)r->error->code;
                }
                observation_free(o);
                o->last = r;
            }
            memmove(buf, buf + used, len - used);
            len -= used;
        }
        if (o->closed || (stop_after_frames > 0 && o->n_frames >= stop_after_frames))
            break;
        uint64_t now = h_now_ms();
        if (now >= end)
            break;
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int pr = poll(&p, 1, (int)(end - now));
        if (pr < 0 && errno == EINTR)
            continue;
        if (pr <= 0)
            break;
        if (len == RAW_BUF_MAX) { /* a reply bigger than anything we asked for */
            o->garbled_reply = true;
            len = 0;
        }
        ssize_t n = recv(fd, buf + len, RAW_BUF_MAX - len, 0);
        if (n > 0)
            len += (size_t)n;
        else if (n == 0 || (errno != EINTR && errno != EAGAIN))
            o->closed = true;
    }
    free(buf);
}

static bool raw_hello(int fd)
{
    Leaseq__Hello hello = LEASEQ__HELLO__INIT;
    hello.protocol_version = 1;
    hello.client_name = "test_bad_input-raw";
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = 1;
    req.body_case = LEASEQ__REQUEST__BODY_HELLO;
    req.hello = &hello;
    if (!raw_send_request(fd, &req, NULL, 0))
        return false;
    observation o;
    observe(fd, OBSERVE_MS, 1, &o);
    bool ok = o.n_frames == 1 && o.n_errors == 0 && o.body_case == LEASEQ__RESPONSE__BODY_HELLO && !o.closed;
    if (!ok)
        h_log("raw hello failed: frames %d errors %d (code %d) closed %d", o.n_frames, o.n_errors, o.last_code,
              o.closed);
    observation_free(&o);
    return ok;
}

static bool raw_ping(int fd, uint64_t id)
{
    Leaseq__Ping ping = LEASEQ__PING__INIT;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = id;
    req.body_case = LEASEQ__REQUEST__BODY_PING;
    req.ping = &ping;
    if (!raw_send_request(fd, &req, NULL, 0))
        return false;
    observation o;
    observe(fd, OBSERVE_MS, 1, &o);
    bool ok = o.n_frames == 1 && o.n_errors == 0 && o.last_request_id == id && o.body_case == LEASEQ__RESPONSE__BODY_PONG;
    observation_free(&o);
    return ok;
}

/* ---- the attacks ----------------------------------------------------------------------- */

typedef struct {
    const char *name;
    bool after_hello;
    /* fills buf with the bytes to send; returns their count */
    size_t (*make)(uint8_t *buf, size_t cap);
    int expect;             /* the error code the broker should send (FRAME_TOO_LARGE or PROTOCOL_ERROR) */
} attack;

static uint64_t rng_state = 0x9e3779b97f4a7c15ull;

static uint64_t rng_next(void)
{
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return rng_state;
}

/* Random bytes whose first 8 cannot start a valid frame (otherwise the broker would rightly wait
 * for the rest of a frame that never comes). */
static size_t make_garbage(uint8_t *buf, size_t cap)
{
    size_t n = cap < 4096 ? cap : 4096;
    for (;;) {
        for (size_t i = 0; i < n; i++)
            buf[i] = (uint8_t)rng_next();
        lq_frame f;
        size_t used, need;
        lq_frame_status st = lq_frame_parse(buf, n, LQ_PAYLOAD_MAX_DEFAULT, &f, &used, &need);
        if (st == LQ_FRAME_BAD || st == LQ_FRAME_TOO_LARGE)
            return n;
    }
}

static size_t make_4gib(uint8_t *buf, size_t cap)
{
    lq_be32_store(buf, 0xFFFFFFFFu);
    lq_be32_store(buf + 4, 16);
    return 8;
}

static size_t make_big_meta(uint8_t *buf, size_t cap)
{
    lq_frame_header(buf, 2u << 20, 0); /* metadata over its 1 MiB cap */
    memset(buf + 8, 0x0a, 64);
    return 72;
}

static size_t make_meta_gt_length(uint8_t *buf, size_t cap)
{
    lq_be32_store(buf, 20);      /* 20 bytes follow ... */
    lq_be32_store(buf + 4, 100); /* ... but 100 of them are metadata */
    memset(buf + 8, 0x08, 16);
    return 24;
}

static size_t make_length_under_4(uint8_t *buf, size_t cap)
{
    lq_be32_store(buf, 2);
    lq_be32_store(buf + 4, 0);
    return 8;
}

static size_t make_zero_meta(uint8_t *buf, size_t cap)
{
    lq_frame_header(buf, 0, 8); /* no request at all, just payload */
    memset(buf + 8, 'x', 8);
    return 16;
}

static size_t make_ping_frame(uint8_t *buf, size_t cap)
{
    Leaseq__Ping ping = LEASEQ__PING__INIT;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = 7;
    req.body_case = LEASEQ__REQUEST__BODY_PING;
    req.ping = &ping;
    size_t m = leaseq__request__get_packed_size(&req);
    lq_frame_header(buf, (uint32_t)m, 0);
    leaseq__request__pack(&req, buf + 8);
    return 8 + m;
}

static size_t make_bad_protobuf(uint8_t *buf, size_t cap)
{
    /* 0xff... is a varint that never ends: no protobuf decoder can accept it. */
    lq_frame_header(buf, 24, 0);
    memset(buf + 8, 0xff, 24);
    return 32;
}

static size_t make_no_body(uint8_t *buf, size_t cap)
{
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = 9; /* a request id and nothing else */
    size_t m = leaseq__request__get_packed_size(&req);
    lq_frame_header(buf, (uint32_t)m, 0);
    leaseq__request__pack(&req, buf + 8);
    return 8 + m;
}

static const attack attacks[] = {
    {"random garbage (4 KiB)", false, make_garbage, LEASEQ__ERROR_CODE__PROTOCOL_ERROR},
    {"random garbage after hello", true, make_garbage, LEASEQ__ERROR_CODE__PROTOCOL_ERROR},
    {"header claiming 4 GiB", false, make_4gib, LEASEQ__ERROR_CODE__FRAME_TOO_LARGE},
    {"header claiming 4 GiB after hello", true, make_4gib, LEASEQ__ERROR_CODE__FRAME_TOO_LARGE},
    {"metadata over 1 MiB", true, make_big_meta, LEASEQ__ERROR_CODE__FRAME_TOO_LARGE},
    {"meta_length > length", true, make_meta_gt_length, LEASEQ__ERROR_CODE__PROTOCOL_ERROR},
    {"length < 4", false, make_length_under_4, LEASEQ__ERROR_CODE__PROTOCOL_ERROR},
    {"meta_length 0", true, make_zero_meta, LEASEQ__ERROR_CODE__PROTOCOL_ERROR},
    {"ping before hello", false, make_ping_frame, LEASEQ__ERROR_CODE__PROTOCOL_ERROR},
    {"undecodable protobuf after hello", true, make_bad_protobuf, LEASEQ__ERROR_CODE__PROTOCOL_ERROR},
    {"request without a body after hello", true, make_no_body, LEASEQ__ERROR_CODE__PROTOCOL_ERROR},
};

static const char *code_name(int code)
{
    if (code < 0)
        return "none";
    const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value(&leaseq__error_code__descriptor, code);
    return v ? v->name : "?";
}

static void run_attack(int port, const attack *a)
{
    static uint8_t buf[8192];
    int fd = h_tcp_connect(port, 2000);
    if (fd < 0) {
        CHECK(false, "%s: cannot connect", a->name);
        return;
    }
    if (a->after_hello && !raw_hello(fd)) {
        CHECK(false, "%s: hello failed", a->name);
        close(fd);
        return;
    }
    size_t n = a->make(buf, sizeof buf);
    uint64_t t0 = h_now_us();
    raw_send(fd, buf, n);
    observation o;
    observe(fd, OBSERVE_MS, 0, &o);
    double ms = (double)(h_now_us() - t0) / 1000.0;
    h_log("%-36s -> %d frame(s), error %s, %s after %.1f ms", a->name, o.n_frames, code_name(o.last_code),
          o.closed ? "closed" : "STILL OPEN", ms);
    bool code_ok = o.last_code == a->expect ||
                   (o.last_code >= 0 && (o.last_code == LEASEQ__ERROR_CODE__PROTOCOL_ERROR ||
                                         o.last_code == LEASEQ__ERROR_CODE__FRAME_TOO_LARGE));
    CHECK(o.closed, "%s: the connection was not closed within %d ms", a->name, OBSERVE_MS);
    CHECK(o.n_errors == 0 || code_ok, "%s: error frame %s, wanted %s", a->name, code_name(o.last_code),
          code_name(a->expect));
    CHECK(o.n_frames == o.n_errors, "%s: the broker answered with a non-error frame", a->name);
    CHECK(!o.garbled_reply, "%s: the broker's answer is not a valid frame", a->name);
    if (o.n_errors == 0 && o.closed)
        h_log("note: %s: closed without an Error frame (the protocol promises %s first)", a->name,
              code_name(a->expect));
    else if (o.last_code != a->expect && o.last_code >= 0)
        h_log("note: %s: got %s where %s fits better", a->name, code_name(o.last_code), code_name(a->expect));
    observation_free(&o);
    close(fd);
}

/* Truncated frames: the broker must wait for the rest without harm, and forget the connection
 * when it closes. */
static void run_truncated(int port)
{
    static uint8_t buf[4096];
    for (int with_hello = 0; with_hello < 2; with_hello++) {
        int fd = h_tcp_connect(port, 2000);
        CHECK(fd >= 0, "truncated: cannot connect");
        if (fd < 0)
            return;
        if (with_hello && !raw_hello(fd)) {
            CHECK(false, "truncated: hello failed");
            close(fd);
            return;
        }
        /* announces 50 bytes of metadata and 10 MB of payload, sends 1 KiB of it */
        lq_frame_header(buf, 50, 10u << 20);
        memset(buf + 8, 0x42, 1024);
        raw_send(fd, buf, 8 + 1024);
        observation o;
        observe(fd, 300, 0, &o);
        CHECK(o.n_frames == 0 && !o.closed, "truncated frame%s: the broker answered before the frame was complete",
              with_hello ? " after hello" : "");
        observation_free(&o);
        close(fd);
        /* and one that stops inside the 8 header bytes */
        fd = h_tcp_connect(port, 2000);
        if (fd >= 0) {
            raw_send(fd, "\0\0\0", 3);
            close(fd);
        }
    }
    h_log("truncated frames (inside the header, inside a 10 MB frame, before/after hello) then close: sent");
}

/* Enqueue with a bad queue name over a raw connection: a typed error, the connection stays. */
static void run_bad_queue_raw(int port)
{
    int fd = h_tcp_connect(port, 2000);
    if (fd < 0 || !raw_hello(fd)) {
        CHECK(false, "bad queue (raw): no connection");
        if (fd >= 0)
            close(fd);
        return;
    }
    static char longname[301];
    memset(longname, 'q', 300);
    const char *names[] = {longname, ""};
    for (unsigned i = 0; i < 2; i++) {
        Leaseq__EnqueueItem item = LEASEQ__ENQUEUE_ITEM__INIT;
        item.queue = (char *)names[i];
        item.payload_len = 4;
        Leaseq__EnqueueItem *items[] = {&item};
        Leaseq__Enqueue enq = LEASEQ__ENQUEUE__INIT;
        enq.n_items = 1;
        enq.items = items;
        Leaseq__Request req = LEASEQ__REQUEST__INIT;
        req.request_id = 100 + i;
        req.body_case = LEASEQ__REQUEST__BODY_ENQUEUE;
        req.enqueue = &enq;
        raw_send_request(fd, &req, "abcd", 4);
        observation o;
        observe(fd, OBSERVE_MS, 1, &o);
        int code = o.last_code;
        if (code < 0 && o.last && o.last->body_case == LEASEQ__RESPONSE__BODY_ENQUEUE && o.last->enqueue->n_results == 1 &&
            o.last->enqueue->results[0]->error)
            code = (int)o.last->enqueue->results[0]->error->code;
        h_log("raw enqueue to %s queue name -> %s (request id %llu)", i == 0 ? "a 300-byte" : "an empty",
              code_name(code), (unsigned long long)o.last_request_id);
        CHECK(code == LEASEQ__ERROR_CODE__INVALID_ARGUMENT, "raw enqueue to %s queue name: got %s, wanted "
              "INVALID_ARGUMENT", i == 0 ? "a 300-byte" : "an empty", code_name(code));
        CHECK(o.n_frames == 1 && o.last_request_id == 100 + i, "raw enqueue: reply does not echo the request id");
        CHECK(!o.closed, "raw enqueue to a bad queue name closed the connection");
        observation_free(&o);
    }
    CHECK(raw_ping(fd, 555), "the connection is unusable after INVALID_ARGUMENT");

    /* item lengths that do not add up to the frame payload */
    Leaseq__EnqueueItem item = LEASEQ__ENQUEUE_ITEM__INIT;
    item.queue = "badinput-raw";
    item.payload_len = 10;
    Leaseq__EnqueueItem *items[] = {&item};
    Leaseq__Enqueue enq = LEASEQ__ENQUEUE__INIT;
    enq.n_items = 1;
    enq.items = items;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = 200;
    req.body_case = LEASEQ__REQUEST__BODY_ENQUEUE;
    req.enqueue = &enq;
    raw_send_request(fd, &req, "abcd", 4);
    observation o;
    observe(fd, OBSERVE_MS, 1, &o);
    int code = o.last_code;
    if (code < 0 && o.last && o.last->body_case == LEASEQ__RESPONSE__BODY_ENQUEUE && o.last->enqueue->n_results == 1 &&
        o.last->enqueue->results[0]->error)
        code = (int)o.last->enqueue->results[0]->error->code;
    h_log("raw enqueue with payload_len 10 in a 4-byte payload -> %s", code_name(code));
    CHECK(code == LEASEQ__ERROR_CODE__INVALID_ARGUMENT || code == LEASEQ__ERROR_CODE__PROTOCOL_ERROR,
          "item lengths that do not match the payload: got %s", code_name(code));
    observation_free(&o);
    close(fd);
}

/* ---- the good client ------------------------------------------------------------------- */

typedef struct {
    const char *addr;
    _Atomic int stop;
    _Atomic uint64_t rounds, errors;
} good_client;

static void *good_client_main(void *arg)
{
    good_client *g = arg;
    leaseq_opts o = {.client_name = "good-client", .worker_id = "good-worker"};
    leaseq *c = NULL;
    leaseq_err e = leaseq_connect(g->addr, &o, &c);
    if (e != LEASEQ_OK) {
        h_log("good client: connect: %s", leaseq_strerror(e));
        atomic_fetch_add(&g->errors, 1);
        return NULL;
    }
    const char *queues[] = {"badinput-good"};
    char payload[64];
    while (!atomic_load(&g->stop)) {
        uint64_t round = atomic_load(&g->rounds);
        int plen = snprintf(payload, sizeof payload, "good round %llu", (unsigned long long)round);
        leaseq_job_spec spec = {.queue = "badinput-good", .payload = payload, .payload_len = (size_t)plen};
        uint64_t id = 0;
        leaseq_lease *l = NULL;
        size_t n = 0;
        if ((e = leaseq_enqueue(c, &spec, &id, CALL_TIMEOUT_MS)) != LEASEQ_OK)
            goto err;
        if ((e = leaseq_dequeue(c, queues, 1, 1, 2000, 30000, &l, &n, CALL_TIMEOUT_MS)) != LEASEQ_OK)
            goto err;
        if (n != 1 || l[0].job_id != id || l[0].payload_len != (size_t)plen || memcmp(l[0].payload, payload, (size_t)plen) != 0) {
            h_log("good client: round %llu: leased %zu jobs (id %llu, wanted %llu)", (unsigned long long)round, n,
                  (unsigned long long)(n ? l[0].job_id : 0), (unsigned long long)id);
            leaseq_leases_free(l, n);
            atomic_fetch_add(&g->errors, 1);
            continue;
        }
        e = leaseq_ack(c, l[0].job_id, l[0].lease_token, NULL, 0, CALL_TIMEOUT_MS);
        leaseq_leases_free(l, n);
        if (e != LEASEQ_OK)
            goto err;
        atomic_fetch_add(&g->rounds, 1);
        continue;
    err:
        h_log("good client: round %llu: %s (%s)", (unsigned long long)round, leaseq_strerror(e), leaseq_last_error(c));
        atomic_fetch_add(&g->errors, 1);
        h_sleep_ms(10);
    }
    leaseq_close(c);
    return NULL;
}

/* ---- typed errors through the library -------------------------------------------------- */

static void run_lease_checks(const char *addr)
{
    leaseq_opts o = {.client_name = "stale-acker", .worker_id = "stale-acker"};
    leaseq *c = NULL;
    leaseq_err e = leaseq_connect(addr, &o, &c);
    CHECK(e == LEASEQ_OK, "stale: connect: %s", leaseq_strerror(e));
    if (e != LEASEQ_OK)
        return;
    const char *queues[] = {"badinput-stale"};
    leaseq_job_spec spec = {.queue = "badinput-stale", .payload = "stale", .payload_len = 5};
    uint64_t id = 0;
    leaseq_lease *l1 = NULL, *l2 = NULL;
    size_t n1 = 0, n2 = 0;
    e = leaseq_enqueue(c, &spec, &id, CALL_TIMEOUT_MS);
    CHECK(e == LEASEQ_OK, "stale: enqueue: %s", leaseq_strerror(e));
    /* a 300 ms lease that runs out, then the same job leased again under a new token */
    e = leaseq_dequeue(c, queues, 1, 1, 2000, 300, &l1, &n1, CALL_TIMEOUT_MS);
    CHECK(e == LEASEQ_OK && n1 == 1 && l1[0].job_id == id, "stale: first lease: %s, %zu jobs", leaseq_strerror(e), n1);
    if (e != LEASEQ_OK || n1 != 1)
        goto out;
    uint64_t t0 = h_now_ms();
    e = leaseq_dequeue(c, queues, 1, 1, 4000, 30000, &l2, &n2, CALL_TIMEOUT_MS);
    CHECK(e == LEASEQ_OK && n2 == 1 && l2[0].job_id == id, "stale: the expired lease was not granted again: %s, %zu",
          leaseq_strerror(e), n2);
    if (e != LEASEQ_OK || n2 != 1)
        goto out;
    h_log("stale: job %llu leased again %llu ms after its 300 ms lease (attempt %u, token changed: %s)",
          (unsigned long long)id, (unsigned long long)(h_now_ms() - t0), l2[0].attempt,
          l1[0].lease_token != l2[0].lease_token ? "yes" : "NO");
    CHECK(l1[0].lease_token != l2[0].lease_token, "stale: the new lease has the old token");
    CHECK(l2[0].attempt == 2, "stale: attempt %u on the second delivery, wanted 2", l2[0].attempt);

    e = leaseq_ack(c, id, l1[0].lease_token, NULL, 0, CALL_TIMEOUT_MS);
    h_log("ack with the expired token -> %s", leaseq_strerror(e));
    CHECK(e == LEASEQ_E_LEASE_LOST, "ack with the expired token: %s, wanted LEASE_LOST", leaseq_strerror(e));
    e = leaseq_ack(c, id, l2[0].lease_token ^ 0x5a5a5a5aull, NULL, 0, CALL_TIMEOUT_MS);
    h_log("ack with a made-up token -> %s", leaseq_strerror(e));
    CHECK(e == LEASEQ_E_LEASE_LOST, "ack with a made-up token: %s, wanted LEASE_LOST", leaseq_strerror(e));
    e = leaseq_ack(c, id, l2[0].lease_token, NULL, 0, CALL_TIMEOUT_MS);
    CHECK(e == LEASEQ_OK, "ack with the current token: %s", leaseq_strerror(e));
    e = leaseq_ack(c, id, l2[0].lease_token, NULL, 0, CALL_TIMEOUT_MS);
    h_log("second ack of a completed job -> %s", leaseq_strerror(e));
    CHECK(e == LEASEQ_E_LEASE_LOST || e == LEASEQ_E_NOT_FOUND, "second ack of a completed job: %s",
          leaseq_strerror(e));
    e = leaseq_ack(c, 0xFFFFFFFFFFull, 12345, NULL, 0, CALL_TIMEOUT_MS);
    h_log("ack of a job id never issued -> %s", leaseq_strerror(e));
    CHECK(e == LEASEQ_E_NOT_FOUND, "ack of a job id never issued: %s, wanted NOT_FOUND", leaseq_strerror(e));

    /* invalid queue names through the library (the library may refuse them itself) */
    static char longname[301];
    memset(longname, 'q', 300);
    const char *bad[] = {longname, ""};
    for (unsigned i = 0; i < 2; i++) {
        leaseq_job_spec b = {.queue = bad[i], .payload = "x", .payload_len = 1};
        e = leaseq_enqueue(c, &b, &id, CALL_TIMEOUT_MS);
        h_log("leaseq_enqueue to %s queue name -> %s", i == 0 ? "a 300-byte" : "an empty", leaseq_strerror(e));
        CHECK(e == LEASEQ_E_INVALID_ARGUMENT, "enqueue to %s queue name: %s, wanted INVALID_ARGUMENT",
              i == 0 ? "a 300-byte" : "an empty", leaseq_strerror(e));
    }
    CHECK(leaseq_ping(c, CALL_TIMEOUT_MS) == LEASEQ_OK, "the library connection broke after typed errors");
out:
    leaseq_leases_free(l1, n1);
    leaseq_leases_free(l2, n2);
    leaseq_close(c);
}

/* ---- the conductor --------------------------------------------------------------------- */

static int run(const char *tmpdir)
{
    h_broker b;
    if (!h_broker_init(&b, tmpdir) || !h_broker_start_ready(&b, 15000)) {
        h_dump_tail(b.log_path, 40);
        return 1;
    }
    h_log("leaseqd pid %d on %s", (int)b.pid, b.addr);

    good_client g = {.addr = b.addr};
    pthread_t th;
    if (pthread_create(&th, NULL, good_client_main, &g) != 0)
        return 1;
    /* let the good client get going so it is mid-conversation when the attacks land */
    uint64_t wait_end = h_now_ms() + 5000;
    while (atomic_load(&g.rounds) < 20 && h_now_ms() < wait_end)
        h_sleep_ms(5);

    /* half-open connections parked the whole time: they must not slow anyone down */
    int idle[IDLE_CONNS];
    for (int i = 0; i < IDLE_CONNS; i++) {
        idle[i] = h_tcp_connect(b.port, 2000);
        if (idle[i] >= 0)
            raw_send(idle[i], "\0\0\0\x10\0\0", 6);
    }

    for (size_t i = 0; i < sizeof attacks / sizeof attacks[0]; i++) {
        run_attack(b.port, &attacks[i]);
        CHECK(h_broker_alive(&b), "leaseqd died after: %s", attacks[i].name);
        if (!b.pid)
            goto out;
    }
    run_truncated(b.port);
    run_bad_queue_raw(b.port);
    run_lease_checks(b.addr);

    for (int i = 0; i < IDLE_CONNS; i++)
        if (idle[i] >= 0)
            close(idle[i]);
    /* a few more good rounds after everything */
    uint64_t r0 = atomic_load(&g.rounds);
    wait_end = h_now_ms() + 5000;
    while (atomic_load(&g.rounds) < r0 + 20 && h_now_ms() < wait_end)
        h_sleep_ms(5);
out:
    atomic_store(&g.stop, 1);
    pthread_join(th, NULL);
    h_log("good client: %llu round trips (enqueue+lease+ack), %llu errors", (unsigned long long)atomic_load(&g.rounds),
          (unsigned long long)atomic_load(&g.errors));
    CHECK(atomic_load(&g.errors) == 0, "the good client saw %llu errors", (unsigned long long)atomic_load(&g.errors));
    CHECK(atomic_load(&g.rounds) >= 40, "the good client made only %llu round trips",
          (unsigned long long)atomic_load(&g.rounds));

    int fd = h_tcp_connect(b.port, 2000);
    CHECK(fd >= 0 && raw_hello(fd) && raw_ping(fd, 77), "leaseqd does not answer a fresh connection at the end");
    if (fd >= 0)
        close(fd);
    char how[96];
    CHECK(h_broker_stop(&b, 15000, how, sizeof how), "leaseqd did not stop cleanly on SIGTERM: %s", how);
    if (failures)
        h_dump_tail(b.log_path, 40);
    h_log("%d check(s) failed", failures);
    return failures ? 1 : 0;
}

int main(void) { return h_supervise("test_bad_input", 200, run); }
