/* loadgen: a load generator for leaseqd speaking the native protocol directly.
 *
 * Many connections, each with `depth` requests in flight (pipelined), driven by 1-2 threads
 * each running one epoll loop over its share of the connections. It uses raw non-blocking
 * sockets, the frame codec and the generated protobuf rather than libleaseq, whose calls are
 * blocking and would keep one request in flight per connection.
 *
 *   enqueue    each request enqueues --batch jobs of --size bytes; ops = jobs acknowledged
 *   lease-ack  each slot dequeues up to --max-jobs and acks every one; ops = acks.
 *              An empty dequeue (nothing ready for --wait-ms) means the queue is drained: stop.
 *   cycle      half the connections enqueue, half lease+ack the same queue, at once
 *
 * Latency is measured per request from the moment it is queued for sending to the moment its
 * reply is decoded, into log-linear histograms (hist.h). For lease-ack, the lease+ack latency
 * of a job runs from the send of its dequeue to the reply of its ack.
 *
 * Output: one human line; with --json also one flat JSON object on the next line.
 */
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "hist.h"
#include "leaseq.pb-c.h"
#include "proto/arena.h"
#include "proto/frame.h"

#define CONNS_MAX 4096u
#define DEPTH_MAX 1024u
#define BATCH_MAX 4096u
#define MAX_JOBS_MAX 256u
#define THREADS_MAX 2u
#define SIZE_MAX_BYTES (16u << 20)
#define IN_CAP (LQ_FRAME_HEADER_BYTES + LQ_FRAME_META_MAX + LQ_PAYLOAD_MAX_DEFAULT)
#define ERRORS_MAX 10000u      /* more failed requests than this: the run is meaningless, stop */
#define DRAIN_MS 10000u        /* after the stop, how long outstanding replies are awaited */
#define HELLO_ID UINT64_C(0xFFFFFFFF00000000)

typedef enum { MODE_ENQUEUE, MODE_LEASE_ACK, MODE_CYCLE } run_mode;
typedef enum { ROLE_PRODUCER, ROLE_WORKER } conn_role;
enum { LAT_ENQ, LAT_DEQ, LAT_ACK, LAT_CYCLE, LAT_N };
static const char *const lat_names[LAT_N] = {"enq", "deq", "ack", "la"};

typedef struct {
    char host[256], port[16];
    run_mode mode;
    unsigned conns, depth, batch, max_jobs, threads, wait_ms, lease_ms;
    uint32_t size;
    double duration_s;
    uint64_t count; /* 0 = run for duration_s */
    const char *queue;
    bool json;
} config;

typedef struct {
    hist lat[LAT_N];
    uint64_t enq_ok, ack_ok, requests, empty_dequeues, leased;
    uint64_t err_by_code[16]; /* index 15: anything else */
    uint64_t t_last_ns;       /* the last completed op: the end of the measured time (a drained
                               * queue's final empty long-polls do not count) */
} stats;

/* One request slot: at most one dequeue or enqueue, or a group of acks, outstanding. */
typedef struct {
    uint64_t t_sent_ns;  /* the enqueue/dequeue of this slot */
    uint32_t acks_pending;
    bool busy;
    uint64_t *ack_sent_ns; /* [max_jobs]; points into conn.ack_times */
} slot;

typedef struct {
    int fd;
    conn_role role;
    bool hello_done, dead;
    uint8_t *out;        /* owner: conn; pending bytes out[out_off..out_len) */
    size_t out_len, out_off, out_cap;
    uint8_t *in;         /* owner: conn; grows up to IN_CAP */
    size_t in_len, in_cap;
    slot *slots;         /* owner: conn; [depth] */
    uint64_t *ack_times; /* owner: conn; [depth * max_jobs] */
    bool want_out;       /* EPOLLOUT armed */
} conn;

typedef struct {
    const config *cfg;
    conn *conns;
    unsigned n_conns;
    int ep;
    stats st;
    lq_arena arena;
    uint8_t *payload; /* owner: thread; one job body, reused */
    pthread_t th;
    int rc;
} worker_thread;

/* Run-wide state shared by the threads (the unavoidable globals of a multi-threaded run). */
static _Atomic uint64_t g_issued;    /* count mode: jobs enqueued or leased so far */
static _Atomic int g_stop;           /* set once: no new requests, drain the outstanding ones */
static _Atomic int g_drained;        /* lease-ack: the queue ran dry */
static uint64_t g_t_start_ns;        /* written before the threads start */

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* ---- output buffer and request encoding ------------------------------------------------ */

static bool out_reserve(conn *c, size_t more)
{
    if (c->out_off > 0 && c->out_off == c->out_len)
        c->out_off = c->out_len = 0;
    if (c->out_len + more <= c->out_cap)
        return true;
    if (c->out_off > 0) { /* compact before growing */
        memmove(c->out, c->out + c->out_off, c->out_len - c->out_off);
        c->out_len -= c->out_off;
        c->out_off = 0;
        if (c->out_len + more <= c->out_cap)
            return true;
    }
    size_t cap = c->out_cap * 2;
    while (cap < c->out_len + more)
        cap *= 2;
    if (cap > (size_t)256 << 20) {
        fprintf(stderr, "loadgen: output buffer would exceed 256 MiB\n");
        return false;
    }
    uint8_t *p = realloc(c->out, cap); /* owner: conn */
    if (!p)
        return false;
    c->out = p;
    c->out_cap = cap;
    return true;
}

/* Appends one frame: header, packed request, then the payload parts. */
static bool out_request(conn *c, const Leaseq__Request *req, const uint8_t *payload, uint32_t payload_len,
                        uint32_t payload_repeat)
{
    size_t mlen = leaseq__request__get_packed_size(req);
    uint64_t total_payload = (uint64_t)payload_len * payload_repeat;
    if (mlen > LQ_FRAME_META_MAX || total_payload > LQ_PAYLOAD_MAX_DEFAULT) {
        fprintf(stderr, "loadgen: request too large (meta %zu, payload %llu)\n", mlen,
                (unsigned long long)total_payload);
        return false;
    }
    if (!out_reserve(c, LQ_FRAME_HEADER_BYTES + mlen + total_payload))
        return false;
    uint8_t *p = c->out + c->out_len;
    lq_frame_header(p, (uint32_t)mlen, (uint32_t)total_payload);
    leaseq__request__pack(req, p + LQ_FRAME_HEADER_BYTES);
    p += LQ_FRAME_HEADER_BYTES + mlen;
    for (uint32_t i = 0; i < payload_repeat; i++, p += payload_len)
        memcpy(p, payload, payload_len);
    c->out_len += LQ_FRAME_HEADER_BYTES + mlen + total_payload;
    return true;
}

static uint64_t req_id(unsigned slot_i, unsigned sub) { return (uint64_t)slot_i << 16 | sub; }

static bool send_hello(conn *c, unsigned index)
{
    char worker_id[32];
    snprintf(worker_id, sizeof worker_id, "loadgen-w%u", index);
    Leaseq__Hello hello = LEASEQ__HELLO__INIT;
    hello.protocol_version = 1;
    hello.client_name = "loadgen";
    hello.worker_id = c->role == ROLE_WORKER ? worker_id : "";
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = HELLO_ID;
    req.body_case = LEASEQ__REQUEST__BODY_HELLO;
    req.hello = &hello;
    return out_request(c, &req, NULL, 0, 0);
}

static bool send_enqueue(worker_thread *t, conn *c, unsigned si, unsigned n_items)
{
    const config *cfg = t->cfg;
    Leaseq__EnqueueItem item = LEASEQ__ENQUEUE_ITEM__INIT;
    item.queue = (char *)cfg->queue;
    item.payload_len = cfg->size;
    Leaseq__EnqueueItem *items[BATCH_MAX];
    for (unsigned i = 0; i < n_items; i++)
        items[i] = &item; /* every item is the same; protobuf-c packs each */
    Leaseq__Enqueue enq = LEASEQ__ENQUEUE__INIT;
    enq.n_items = n_items;
    enq.items = items;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = req_id(si, 0);
    req.body_case = LEASEQ__REQUEST__BODY_ENQUEUE;
    req.enqueue = &enq;
    c->slots[si].busy = true;
    c->slots[si].t_sent_ns = now_ns();
    t->st.requests++;
    return out_request(c, &req, t->payload, cfg->size, n_items);
}

static bool send_dequeue(worker_thread *t, conn *c, unsigned si)
{
    const config *cfg = t->cfg;
    char *queues[] = {(char *)cfg->queue};
    Leaseq__Dequeue dq = LEASEQ__DEQUEUE__INIT;
    dq.n_queues = 1;
    dq.queues = queues;
    dq.max_jobs = cfg->max_jobs;
    dq.wait_ms = cfg->wait_ms;
    dq.lease_ms = cfg->lease_ms;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = req_id(si, 0);
    req.body_case = LEASEQ__REQUEST__BODY_DEQUEUE;
    req.dequeue = &dq;
    c->slots[si].busy = true;
    c->slots[si].t_sent_ns = now_ns();
    t->st.requests++;
    return out_request(c, &req, NULL, 0, 0);
}

static bool send_ack(worker_thread *t, conn *c, unsigned si, unsigned job_i, uint64_t job_id, uint64_t token)
{
    Leaseq__Ack ack = LEASEQ__ACK__INIT;
    ack.job_id = job_id;
    ack.lease_token = token;
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = req_id(si, job_i + 1);
    req.body_case = LEASEQ__REQUEST__BODY_ACK;
    req.ack = &ack;
    c->slots[si].ack_sent_ns[job_i] = now_ns();
    t->st.requests++;
    return out_request(c, &req, NULL, 0, 0);
}

/* Starts the next request of an idle slot, unless the run is stopping. */
static bool slot_next(worker_thread *t, conn *c, unsigned si)
{
    const config *cfg = t->cfg;
    c->slots[si].busy = false;
    if (atomic_load_explicit(&g_stop, memory_order_relaxed))
        return true;
    if (c->role == ROLE_PRODUCER) {
        unsigned n = cfg->batch;
        if (cfg->count) {
            uint64_t before = atomic_fetch_add(&g_issued, n);
            if (before >= cfg->count)
                return true;
            if (before + n > cfg->count)
                n = (unsigned)(cfg->count - before);
        }
        return send_enqueue(t, c, si, n);
    }
    if (cfg->count && atomic_load(&g_issued) >= cfg->count)
        return true;
    return send_dequeue(t, c, si);
}

/* ---- replies --------------------------------------------------------------------------- */

static void count_error(stats *st, const Leaseq__Error *e)
{
    unsigned code = (unsigned)e->code;
    st->err_by_code[code < 15 ? code : 15]++;
}

static uint64_t total_errors(const stats *st)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < 16; i++)
        n += st->err_by_code[i];
    return n;
}

static bool handle_reply(worker_thread *t, conn *c, const Leaseq__Response *r, uint32_t payload_len)
{
    const config *cfg = t->cfg;
    uint64_t now = now_ns();
    if (r->request_id == HELLO_ID) {
        if ((r->error && r->error->code != LEASEQ__ERROR_CODE__OK) || r->body_case != LEASEQ__RESPONSE__BODY_HELLO) {
            fprintf(stderr, "loadgen: hello refused: %s\n", r->error && r->error->message ? r->error->message : "?");
            return false;
        }
        c->hello_done = true;
        for (unsigned si = 0; si < cfg->depth; si++)
            if (!slot_next(t, c, si))
                return false;
        return true;
    }
    unsigned si = (unsigned)(r->request_id >> 16), sub = (unsigned)(r->request_id & 0xFFFF);
    if (si >= cfg->depth || !c->slots[si].busy) {
        fprintf(stderr, "loadgen: reply to an unknown request id %llu\n", (unsigned long long)r->request_id);
        return false;
    }
    slot *s = &c->slots[si];
    bool failed = r->error && r->error->code != LEASEQ__ERROR_CODE__OK;
    if (failed) {
        count_error(&t->st, r->error);
        if (total_errors(&t->st) == 1)
            fprintf(stderr, "loadgen: first error: %d %s\n", (int)r->error->code,
                    r->error->message ? r->error->message : "");
        if (total_errors(&t->st) > ERRORS_MAX) {
            fprintf(stderr, "loadgen: too many errors, giving up\n");
            return false;
        }
    }
    if (sub > 0) { /* an ack */
        if (sub > cfg->max_jobs || s->acks_pending == 0)
            return false;
        hist_add(&t->st.lat[LAT_ACK], now - s->ack_sent_ns[sub - 1]);
        if (!failed) {
            hist_add(&t->st.lat[LAT_CYCLE], now - s->t_sent_ns);
            t->st.ack_ok++;
            t->st.t_last_ns = now;
        }
        if (--s->acks_pending == 0)
            return slot_next(t, c, si);
        return true;
    }
    if (c->role == ROLE_PRODUCER) {
        hist_add(&t->st.lat[LAT_ENQ], now - s->t_sent_ns);
        if (!failed && r->body_case == LEASEQ__RESPONSE__BODY_ENQUEUE) {
            for (size_t i = 0; i < r->enqueue->n_results; i++) {
                const Leaseq__EnqueueResult *er = r->enqueue->results[i];
                if (er->error && er->error->code != LEASEQ__ERROR_CODE__OK)
                    count_error(&t->st, er->error);
                else
                    t->st.enq_ok++;
            }
            t->st.t_last_ns = now;
        }
        return slot_next(t, c, si);
    }
    hist_add(&t->st.lat[LAT_DEQ], now - s->t_sent_ns);
    if (failed || r->body_case != LEASEQ__RESPONSE__BODY_DEQUEUE)
        return slot_next(t, c, si);
    const Leaseq__DequeueReply *dr = r->dequeue;
    uint64_t sum = 0;
    for (size_t i = 0; i < dr->n_jobs; i++)
        sum += dr->jobs[i]->payload_len;
    if (sum != payload_len || dr->n_jobs > cfg->max_jobs) {
        fprintf(stderr, "loadgen: dequeue reply with %zu jobs, payload lengths %llu != frame payload %u\n",
                dr->n_jobs, (unsigned long long)sum, payload_len);
        return false;
    }
    if (dr->n_jobs == 0) {
        t->st.empty_dequeues++;
        if (cfg->mode == MODE_LEASE_ACK)
            atomic_store(&g_drained, 1);
        return slot_next(t, c, si);
    }
    t->st.leased += dr->n_jobs;
    if (cfg->count)
        atomic_fetch_add(&g_issued, dr->n_jobs);
    s->acks_pending = (uint32_t)dr->n_jobs;
    for (size_t i = 0; i < dr->n_jobs; i++)
        if (!send_ack(t, c, si, (unsigned)i, dr->jobs[i]->job_id, dr->jobs[i]->lease_token))
            return false;
    return true;
}

/* ---- I/O ------------------------------------------------------------------------------- */

static bool conn_flush(worker_thread *t, conn *c)
{
    while (c->out_off < c->out_len) {
        ssize_t n = send(c->fd, c->out + c->out_off, c->out_len - c->out_off, MSG_NOSIGNAL);
        if (n > 0) {
            c->out_off += (size_t)n;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            break;
        fprintf(stderr, "loadgen: send: %s\n", n == 0 ? "closed" : strerror(errno));
        return false;
    }
    bool want = c->out_off < c->out_len;
    if (want != c->want_out) {
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.ptr = c};
        epoll_ctl(t->ep, EPOLL_CTL_MOD, c->fd, &ev);
        c->want_out = want;
    }
    return true;
}

/* Decodes and handles every whole frame in the input buffer, then moves the rest to its start. */
static bool conn_parse(worker_thread *t, conn *c)
{
    size_t off = 0;
    bool ok = true;
    while (ok) {
        lq_frame f;
        size_t used = 0, need = 0;
        lq_frame_status st = lq_frame_parse(c->in + off, c->in_len - off, LQ_PAYLOAD_MAX_DEFAULT, &f, &used, &need);
        if (st == LQ_FRAME_NEED_MORE)
            break;
        if (st != LQ_FRAME_OK) {
            fprintf(stderr, "loadgen: garbled frame from the broker\n");
            return false;
        }
        Leaseq__Response *r = leaseq__response__unpack(&t->arena.pb, f.meta_len, f.meta);
        if (!r)
            fprintf(stderr, "loadgen: undecodable response\n");
        ok = r != NULL && handle_reply(t, c, r, f.payload_len);
        lq_arena_reset(&t->arena);
        off += used;
    }
    if (off > 0) {
        memmove(c->in, c->in + off, c->in_len - off);
        c->in_len -= off;
    }
    return ok;
}

static bool conn_read(worker_thread *t, conn *c)
{
    for (;;) {
        if (c->in_len == c->in_cap) { /* a frame larger than the buffer: grow, up to the cap */
            size_t cap = c->in_cap * 2 > IN_CAP ? IN_CAP : c->in_cap * 2;
            if (cap == c->in_cap) {
                fprintf(stderr, "loadgen: reply larger than %u bytes\n", IN_CAP);
                return false;
            }
            uint8_t *p = realloc(c->in, cap); /* owner: conn */
            if (!p)
                return false;
            c->in = p;
            c->in_cap = cap;
        }
        size_t space = c->in_cap - c->in_len;
        ssize_t n = recv(c->fd, c->in + c->in_len, space, 0);
        if (n > 0) {
            c->in_len += (size_t)n;
            if (!conn_parse(t, c))
                return false;
            if ((size_t)n < space)
                return true; /* most likely drained; epoll (level-triggered) tells us if not */
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
            return true;
        fprintf(stderr, "loadgen: connection closed by the broker (%s)\n", n == 0 ? "EOF" : strerror(errno));
        return false;
    }
}

static uint64_t outstanding(const worker_thread *t)
{
    uint64_t n = 0;
    for (unsigned i = 0; i < t->n_conns; i++) {
        const conn *c = &t->conns[i];
        if (!c->dead)
            for (unsigned s = 0; s < t->cfg->depth; s++)
                n += c->slots[s].busy;
    }
    return n;
}

static void check_stop(const config *cfg, worker_thread *t)
{
    if (atomic_load(&g_stop))
        return;
    bool stop = atomic_load(&g_drained) != 0;
    if (cfg->count) {
        uint64_t done = t->st.enq_ok + t->st.ack_ok;
        stop |= atomic_load(&g_issued) >= cfg->count && done > 0 && outstanding(t) == 0;
    } else {
        stop |= now_ns() - g_t_start_ns >= (uint64_t)(cfg->duration_s * 1e9);
    }
    if (stop)
        atomic_store(&g_stop, 1);
}

static void *thread_main(void *arg)
{
    worker_thread *t = arg;
    const config *cfg = t->cfg;
    struct epoll_event evs[256];
    uint64_t drain_end = 0;
    t->rc = 1;
    for (;;) {
        check_stop(cfg, t);
        if (atomic_load(&g_stop)) {
            if (!drain_end)
                drain_end = now_ns() + (uint64_t)DRAIN_MS * 1000000u;
            if (outstanding(t) == 0) {
                t->rc = 0;
                break;
            }
            if (now_ns() > drain_end) {
                fprintf(stderr, "loadgen: %llu replies still missing %u ms after the stop\n",
                        (unsigned long long)outstanding(t), DRAIN_MS);
                break;
            }
        }
        int n = epoll_wait(t->ep, evs, 256, 20);
        if (n < 0 && errno != EINTR) {
            perror("epoll_wait");
            break;
        }
        bool fail = false;
        for (int i = 0; i < n && !fail; i++) {
            conn *c = evs[i].data.ptr;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP))
                fail = !conn_read(t, c);
            if (!fail && (evs[i].events & EPOLLOUT))
                fail = !conn_flush(t, c);
        }
        /* Requests queued while handling replies go out together: one send per connection. */
        for (unsigned i = 0; i < t->n_conns && !fail; i++)
            if (t->conns[i].out_off < t->conns[i].out_len && !t->conns[i].want_out)
                fail = !conn_flush(t, &t->conns[i]);
        if (fail) {
            atomic_store(&g_stop, 1);
            break;
        }
    }
    return NULL;
}

/* ---- set-up and report ----------------------------------------------------------------- */

static int connect_to(const config *cfg)
{
    struct addrinfo hints = {.ai_family = AF_UNSPEC, .ai_socktype = SOCK_STREAM}, *ai = NULL;
    int gai = getaddrinfo(cfg->host, cfg->port, &hints, &ai);
    if (gai != 0) {
        fprintf(stderr, "loadgen: %s:%s: %s\n", cfg->host, cfg->port, gai_strerror(gai));
        return -1;
    }
    int fd = -1;
    for (struct addrinfo *a = ai; a && fd < 0; a = a->ai_next) {
        fd = socket(a->ai_family, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
        if (fd < 0)
            continue;
        if (connect(fd, a->ai_addr, a->ai_addrlen) != 0) {
            struct pollfd p = {.fd = fd, .events = POLLOUT};
            int err = errno == EINPROGRESS ? 0 : errno;
            socklen_t el = sizeof err;
            if (err == 0 && (poll(&p, 1, 5000) != 1 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) != 0))
                err = ETIMEDOUT;
            if (err != 0) {
                close(fd);
                fd = -1;
                errno = err;
            }
        }
    }
    freeaddrinfo(ai);
    if (fd < 0) {
        fprintf(stderr, "loadgen: connect %s:%s: %s\n", cfg->host, cfg->port, strerror(errno));
        return -1;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    return fd;
}

static void usage(void)
{
    fprintf(stderr,
            "usage: loadgen [--addr HOST:PORT] [--mode enqueue|lease-ack|cycle] [--connections N]\n"
            "               [--depth D] [--size BYTES] [--batch N] [--max-jobs N] [--wait-ms MS]\n"
            "               [--lease-ms MS] [--duration S | --count N] [--queue NAME] [--threads 1|2] [--json]\n"
            "defaults: 127.0.0.1:7420, enqueue, 16 connections x 16 in flight, 100-byte jobs, batch 1,\n"
            "          max-jobs 1, wait 100 ms, lease 60000 ms, 10 s, queue \"bench\", 1 thread\n");
}

static bool parse_uint(const char *s, uint64_t lo, uint64_t hi, uint64_t *out)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end || end == s || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_args(int argc, char **argv, config *cfg)
{
    *cfg = (config){.mode = MODE_ENQUEUE, .conns = 16, .depth = 16, .batch = 1, .max_jobs = 1, .threads = 1,
                    .wait_ms = 100, .lease_ms = 60000, .size = 100, .duration_s = 10, .queue = "bench"};
    snprintf(cfg->host, sizeof cfg->host, "127.0.0.1");
    snprintf(cfg->port, sizeof cfg->port, "7420");
    static const struct option opts[] = {
        {"addr", 1, 0, 'a'},  {"mode", 1, 0, 'm'},     {"connections", 1, 0, 'c'}, {"depth", 1, 0, 'd'},
        {"size", 1, 0, 's'},  {"batch", 1, 0, 'b'},    {"max-jobs", 1, 0, 'j'},    {"wait-ms", 1, 0, 'w'},
        {"lease-ms", 1, 0, 'l'}, {"duration", 1, 0, 't'}, {"count", 1, 0, 'n'},    {"queue", 1, 0, 'q'},
        {"threads", 1, 0, 'T'}, {"json", 0, 0, 'J'},   {"help", 0, 0, 'h'},        {0, 0, 0, 0}};
    int o;
    uint64_t v;
    while ((o = getopt_long(argc, argv, "", opts, NULL)) != -1) {
        switch (o) {
        case 'a': {
            const char *colon = strrchr(optarg, ':');
            if (!colon || colon == optarg || (size_t)(colon - optarg) >= sizeof cfg->host ||
                strlen(colon + 1) >= sizeof cfg->port)
                return false;
            const char *h = optarg;
            size_t hl = (size_t)(colon - optarg);
            if (h[0] == '[' && hl >= 2 && h[hl - 1] == ']') { /* [v6]:port */
                h++;
                hl -= 2;
            }
            memcpy(cfg->host, h, hl);
            cfg->host[hl] = '\0';
            snprintf(cfg->port, sizeof cfg->port, "%s", colon + 1);
            break;
        }
        case 'm':
            if (!strcmp(optarg, "enqueue"))
                cfg->mode = MODE_ENQUEUE;
            else if (!strcmp(optarg, "lease-ack"))
                cfg->mode = MODE_LEASE_ACK;
            else if (!strcmp(optarg, "cycle"))
                cfg->mode = MODE_CYCLE;
            else
                return false;
            break;
        case 'c': if (!parse_uint(optarg, 1, CONNS_MAX, &v)) return false; cfg->conns = (unsigned)v; break;
        case 'd': if (!parse_uint(optarg, 1, DEPTH_MAX, &v)) return false; cfg->depth = (unsigned)v; break;
        case 's': if (!parse_uint(optarg, 0, SIZE_MAX_BYTES, &v)) return false; cfg->size = (uint32_t)v; break;
        case 'b': if (!parse_uint(optarg, 1, BATCH_MAX, &v)) return false; cfg->batch = (unsigned)v; break;
        case 'j': if (!parse_uint(optarg, 1, MAX_JOBS_MAX, &v)) return false; cfg->max_jobs = (unsigned)v; break;
        case 'w': if (!parse_uint(optarg, 0, 600000, &v)) return false; cfg->wait_ms = (unsigned)v; break;
        case 'l': if (!parse_uint(optarg, 1, 43200000, &v)) return false; cfg->lease_ms = (unsigned)v; break;
        case 'n': if (!parse_uint(optarg, 1, UINT64_C(1) << 40, &v)) return false; cfg->count = v; break;
        case 'T': if (!parse_uint(optarg, 1, THREADS_MAX, &v)) return false; cfg->threads = (unsigned)v; break;
        case 't': {
            char *end;
            cfg->duration_s = strtod(optarg, &end);
            if (*end || !(cfg->duration_s > 0 && cfg->duration_s <= 3600))
                return false;
            break;
        }
        case 'q': cfg->queue = optarg; break;
        case 'J': cfg->json = true; break;
        default: return false;
        }
    }
    if (optind != argc || (uint64_t)cfg->size * cfg->batch > LQ_PAYLOAD_MAX_DEFAULT)
        return false;
    if (cfg->mode == MODE_CYCLE && cfg->conns < 2)
        return false;
    if (cfg->threads > cfg->conns)
        cfg->threads = cfg->conns;
    return true;
}

static const char *mode_name(run_mode m)
{
    return m == MODE_ENQUEUE ? "enqueue" : m == MODE_LEASE_ACK ? "lease-ack" : "cycle";
}

static double us(uint64_t ns) { return (double)ns / 1000.0; }

static void report(const config *cfg, const stats *st, double elapsed_s)
{
    double enq_rate = (double)st->enq_ok / elapsed_s, la_rate = (double)st->ack_ok / elapsed_s;
    const hist *h_enq = &st->lat[LAT_ENQ], *h_la = &st->lat[LAT_CYCLE];
    char errs[256] = "";
    size_t el = 0;
    for (unsigned i = 0; i < 16; i++)
        if (st->err_by_code[i] && el < sizeof errs - 32)
        {
            const ProtobufCEnumValue *v =
                i < 15 ? protobuf_c_enum_descriptor_get_value(&leaseq__error_code__descriptor, (int)i) : NULL;
            el += (size_t)snprintf(errs + el, sizeof errs - el, " %s=%llu", v ? v->name : "OTHER",
                                   (unsigned long long)st->err_by_code[i]);
        }
    printf("loadgen %s: %u conn x %u in flight, %u B jobs, batch %u, max-jobs %u, %u thread(s), %.2f s:",
           mode_name(cfg->mode), cfg->conns, cfg->depth, cfg->size, cfg->batch, cfg->max_jobs, cfg->threads,
           elapsed_s);
    if (cfg->mode != MODE_LEASE_ACK)
        printf(" enqueue %.0f jobs/s (%llu), latency p50 %.0f us p99 %.0f us p99.9 %.0f us;", enq_rate,
               (unsigned long long)st->enq_ok, us(hist_quantile(h_enq, 0.5)), us(hist_quantile(h_enq, 0.99)),
               us(hist_quantile(h_enq, 0.999)));
    if (cfg->mode != MODE_ENQUEUE)
        printf(" lease+ack %.0f jobs/s (%llu), latency p50 %.0f us p99 %.0f us p99.9 %.0f us"
               " (dequeue rtt p50 %.0f us, ack rtt p50 %.0f us, %llu empty dequeues);",
               la_rate, (unsigned long long)st->ack_ok, us(hist_quantile(h_la, 0.5)), us(hist_quantile(h_la, 0.99)),
               us(hist_quantile(h_la, 0.999)), us(hist_quantile(&st->lat[LAT_DEQ], 0.5)),
               us(hist_quantile(&st->lat[LAT_ACK], 0.5)), (unsigned long long)st->empty_dequeues);
    printf(" errors %llu%s\n", (unsigned long long)total_errors(st), errs);
    if (!cfg->json)
        return;
    printf("{\"mode\":\"%s\",\"connections\":%u,\"depth\":%u,\"size\":%u,\"batch\":%u,\"max_jobs\":%u,"
           "\"threads\":%u,\"elapsed_s\":%.4f,\"requests\":%llu,\"errors\":%llu,\"enq_ok\":%llu,\"ack_ok\":%llu,"
           "\"empty_dequeues\":%llu,\"enq_per_s\":%.1f,\"la_per_s\":%.1f",
           mode_name(cfg->mode), cfg->conns, cfg->depth, cfg->size, cfg->batch, cfg->max_jobs, cfg->threads,
           elapsed_s, (unsigned long long)st->requests, (unsigned long long)total_errors(st),
           (unsigned long long)st->enq_ok, (unsigned long long)st->ack_ok, (unsigned long long)st->empty_dequeues,
           enq_rate, la_rate);
    for (unsigned l = 0; l < LAT_N; l++)
        printf(",\"%s_n\":%llu,\"%s_p50_us\":%.1f,\"%s_p99_us\":%.1f,\"%s_p999_us\":%.1f,\"%s_max_us\":%.1f",
               lat_names[l], (unsigned long long)st->lat[l].total, lat_names[l], us(hist_quantile(&st->lat[l], 0.5)),
               lat_names[l], us(hist_quantile(&st->lat[l], 0.99)), lat_names[l],
               us(hist_quantile(&st->lat[l], 0.999)), lat_names[l], us(st->lat[l].max_ns));
    printf("}\n");
}

int main(int argc, char **argv)
{
    config cfg;
    if (!parse_args(argc, argv, &cfg)) {
        usage();
        return 2;
    }
    int rc = 1;
    conn *conns = calloc(cfg.conns, sizeof *conns); /* owner: main */
    worker_thread *threads = calloc(cfg.threads, sizeof *threads); /* owner: main */
    stats *total = calloc(1, sizeof *total); /* owner: main */
    if (!conns || !threads || !total)
        goto out;
    for (unsigned i = 0; i < cfg.conns; i++)
        conns[i].fd = -1;
    for (unsigned ti = 0; ti < cfg.threads; ti++) {
        worker_thread *t = &threads[ti];
        t->cfg = &cfg;
        t->ep = epoll_create1(EPOLL_CLOEXEC);
        t->payload = malloc(cfg.size ? cfg.size : 1); /* owner: thread */
        if (t->ep < 0 || !t->payload || lq_arena_init(&t->arena, 256 << 10, (size_t)64 << 20) != 0)
            goto out;
        for (uint32_t b = 0; b < cfg.size; b++)
            t->payload[b] = (uint8_t)('a' + b % 26);
    }
    /* Each thread owns a contiguous block of the connections. */
    unsigned per = (cfg.conns + cfg.threads - 1) / cfg.threads;
    for (unsigned i = 0; i < cfg.conns; i++) {
        conn *c = &conns[i];
        worker_thread *t = &threads[i / per];
        if (!t->conns)
            t->conns = c;
        t->n_conns++;
        c->role = cfg.mode == MODE_ENQUEUE ? ROLE_PRODUCER
                  : cfg.mode == MODE_LEASE_ACK ? ROLE_WORKER
                  : (i % 2 ? ROLE_WORKER : ROLE_PRODUCER);
        c->fd = connect_to(&cfg);
        c->out_cap = 64 << 10;
        c->in_cap = 64 << 10;
        c->out = malloc(c->out_cap);
        c->in = malloc(c->in_cap);
        c->slots = calloc(cfg.depth, sizeof *c->slots);
        c->ack_times = calloc((size_t)cfg.depth * cfg.max_jobs, sizeof *c->ack_times);
        if (c->fd < 0 || !c->out || !c->in || !c->slots || !c->ack_times)
            goto out;
        for (unsigned s = 0; s < cfg.depth; s++)
            c->slots[s].ack_sent_ns = c->ack_times + (size_t)s * cfg.max_jobs;
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (epoll_ctl(t->ep, EPOLL_CTL_ADD, c->fd, &ev) != 0 || !send_hello(c, i))
            goto out;
    }
    g_t_start_ns = now_ns();
    for (unsigned ti = 0; ti < cfg.threads; ti++)
        for (unsigned i = 0; i < threads[ti].n_conns; i++)
            if (!conn_flush(&threads[ti], &threads[ti].conns[i]))
                goto out;
    unsigned started = 0;
    while (started < cfg.threads && pthread_create(&threads[started].th, NULL, thread_main, &threads[started]) == 0)
        started++;
    if (started < cfg.threads)
        atomic_store(&g_stop, 1); /* the started ones drain and end; the run counts as failed */
    rc = started < cfg.threads;
    uint64_t t_last = g_t_start_ns;
    for (unsigned ti = 0; ti < started; ti++) {
        pthread_join(threads[ti].th, NULL);
        threads[ti].th = 0;
        rc |= threads[ti].rc;
        for (unsigned l = 0; l < LAT_N; l++)
            hist_merge(&total->lat[l], &threads[ti].st.lat[l]);
        total->enq_ok += threads[ti].st.enq_ok;
        total->ack_ok += threads[ti].st.ack_ok;
        total->requests += threads[ti].st.requests;
        total->empty_dequeues += threads[ti].st.empty_dequeues;
        total->leased += threads[ti].st.leased;
        for (unsigned e = 0; e < 16; e++)
            total->err_by_code[e] += threads[ti].st.err_by_code[e];
        if (threads[ti].st.t_last_ns > t_last)
            t_last = threads[ti].st.t_last_ns;
    }
    double elapsed = (double)(t_last - g_t_start_ns) / 1e9;
    report(&cfg, total, elapsed > 1e-6 ? elapsed : 1e-6);
    if (cfg.mode == MODE_LEASE_ACK && total->ack_ok == 0)
        rc = 1; /* nothing to lease: the run measured nothing */
out:
    if (rc && !total)
        fprintf(stderr, "loadgen: out of memory\n");
    for (unsigned i = 0; conns && i < cfg.conns; i++) {
        if (conns[i].fd >= 0)
            close(conns[i].fd);
        free(conns[i].out);
        free(conns[i].in);
        free(conns[i].slots);
        free(conns[i].ack_times);
    }
    for (unsigned ti = 0; threads && ti < cfg.threads; ti++) {
        if (threads[ti].ep > 0)
            close(threads[ti].ep);
        free(threads[ti].payload);
        if (threads[ti].arena.chunk)
            lq_arena_free(&threads[ti].arena);
    }
    free(conns);
    free(threads);
    free(total);
    return rc;
}
