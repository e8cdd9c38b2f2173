/* GPU job lifecycle, end to end on a real leaseqd: worker sessions with heartbeats, frozen and
 * killed workers, long handlers, quarantine of a flaky worker id, producer waits, idempotency.
 *
 * Workers are separate processes (fork + libleaseq worker API), so SIGSTOP freezes a whole
 * worker (handler and heartbeat thread alike) the way a hung GPU driver does, and SIGKILL closes
 * its connection. Children report what their handler saw through a pipe as fixed-size records
 * (one write each, below PIPE_BUF, so records never interleave); their clocks are comparable
 * because CLOCK_MONOTONIC is machine-wide.
 *
 * Points (one PASS/FAIL line each; the exit status is 0 only when all pass):
 *  1 frozen worker: its 8 leases go to another worker within the heartbeat timeout, at the
 *    front of the lane; its late acks get LEASE_LOST; a waiting producer gets the new results
 *  2 SIGKILLed worker: its jobs are leased again within 100 ms
 *  3 a handler 3x longer than the lease, heartbeating, is never requeued and acks
 *  4 a job frozen on every delivery is dead-lettered ("session stalled"); its worker id is
 *    quarantined (Workers says suspect) and gets no new leases while another worker does
 *  5 producer: enqueue_and_wait returns 1 MiB of result bytes intact; wait on a dead job says
 *    DEAD with its error; a short wait on an idle job is DEADLINE_EXCEEDED and leaves it alone
 *  6 idempotency keys collapse duplicates, also across a SIGKILL + restart of the broker
 */
#include "harness.h"

#include <inttypes.h>
#include <pthread.h>
#include <stdatomic.h>

#include "leaseq.h"
#include "leaseq.pb-c.h"
#include "proto/frame.h"

#define HB_MS 200u         /* heartbeat of the workers under test: timeout = 3 x 200 ms */
#define LONG_LEASE_MS 30000u /* so only the heartbeat mechanism can explain a fast redelivery */
#define SLACK_MS 200u      /* scheduling and timer slack allowed on top of a broker deadline */
#define KILL_BOUND_MS 100u /* point 2 */
#define CALL_MS 5000
#define REC_TEXT 80
#define MAX_GOT 64
#define MAX_CHILDREN 32
#define BIG_LEN (1u << 20)
#define POISON_ERR "decoder rejected the image (poison)"

/* ---- records from children ------------------------------------------------------------- */

enum { EV_GOT = 1, EV_STATS = 2, EV_OUTCOME = 3 };

typedef struct {
    uint32_t kind;
    uint32_t attempt;       /* GOT */
    uint64_t job_id;        /* GOT, OUTCOME */
    uint64_t t_us;          /* when it happened (h_now_us) */
    uint64_t acked, lease_lost, nacked, failed; /* STATS; OUTCOME: acked = state, failed = err */
    char text[REC_TEXT];    /* OUTCOME: result bytes or error text, cut */
} rec;

static void send_rec(int fd, rec *r)
{
    if (r->t_us == 0)
        r->t_us = h_now_us();
    (void)!write(fd, r, sizeof *r); /* sizeof(rec) < PIPE_BUF: one atomic write */
}

/* The test body's view of one child process. */
typedef struct {
    pid_t pid;
    int rd;      /* records from the child */
    int gate;    /* one byte = one blocked handler call may finish */
    rec got[MAX_GOT];
    int n_got;
    rec stats;   /* the latest EV_STATS */
    rec out[MAX_GOT];
    int n_out;
} child;

/* Every child the body started, so an exit path that skips a point's cleanup still kills them
 * (atexit); the supervisor's process-group kill is the last net under this one. */
static pid_t g_pids[MAX_CHILDREN];

static void kill_all_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
}

static void child_end(child *c)
{
    if (c->pid > 0) {
        kill(c->pid, SIGKILL);
        waitpid(c->pid, NULL, 0);
        for (int i = 0; i < MAX_CHILDREN; i++)
            if (g_pids[i] == c->pid)
                g_pids[i] = 0;
    }
    if (c->rd >= 0)
        close(c->rd);
    if (c->gate >= 0)
        close(c->gate);
    memset(c, 0, sizeof *c);
    c->rd = c->gate = -1;
}

/* Reads whatever records arrive within timeout_ms (0 = only what is there). False once the
 * child's end of the pipe is closed (it exited or died), so callers stop waiting at once. */
static bool child_pump(child *c, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (;;) {
        if (c->rd < 0)
            return false;
        int left = (int)(end > h_now_ms() ? end - h_now_ms() : 0);
        struct pollfd p = {.fd = c->rd, .events = POLLIN};
        if (poll(&p, 1, left) <= 0)
            return true;
        rec r;
        if (read(c->rd, &r, sizeof r) != (ssize_t)sizeof r) {
            h_log("child %d: report pipe closed (it exited)", (int)c->pid);
            close(c->rd);
            c->rd = -1;
            return false;
        }
        if (r.kind == EV_GOT && c->n_got < MAX_GOT)
            c->got[c->n_got++] = r;
        else if (r.kind == EV_STATS)
            c->stats = r;
        else if (r.kind == EV_OUTCOME && c->n_out < MAX_GOT)
            c->out[c->n_out++] = r;
        end = h_now_ms(); /* drain what is there, wait no more */
    }
}

static bool wait_got(child *c, int n, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (c->n_got < n && h_now_ms() < end && child_pump(c, (int)(end - h_now_ms()))) {
    }
    return c->n_got >= n;
}

static bool settled(const child *c, uint64_t n)
{
    return c->stats.acked + c->stats.lease_lost + c->stats.nacked + c->stats.failed >= n;
}

/* Waits until n acks/nacks of the child's worker were answered (accepted or refused). */
static bool wait_done(child *c, uint64_t n, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (!settled(c, n) && h_now_ms() < end && child_pump(c, (int)(end - h_now_ms()))) {
    }
    return settled(c, n);
}

static bool spawn(child *c, int (*fn)(void *arg, int rep, int gate), void *arg)
{
    int rp[2], gp[2];
    memset(c, 0, sizeof *c);
    c->rd = c->gate = -1;
    if (pipe2(rp, O_CLOEXEC) != 0)
        return false;
    if (pipe2(gp, O_CLOEXEC) != 0) {
        close(rp[0]);
        close(rp[1]);
        return false;
    }
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        h_child_init(parent);
        close(rp[0]);
        close(gp[1]);
        _exit(fn(arg, rp[1], gp[0]));
    }
    close(rp[1]);
    close(gp[0]);
    c->rd = rp[0];
    c->gate = gp[1];
    if (pid < 0) {
        child_end(c);
        return false;
    }
    c->pid = pid;
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_pids[i] == 0) {
            g_pids[i] = pid;
            break;
        }
    return true;
}

static void open_gate(child *c, int n)
{
    for (int i = 0; i < n; i++)
        (void)!write(c->gate, "g", 1);
}

/* SIGSTOP and wait until the kernel says it is stopped. */
static bool freeze(child *c)
{
    if (kill(c->pid, SIGSTOP) != 0)
        return false;
    int st;
    return waitpid(c->pid, &st, WUNTRACED) == c->pid && WIFSTOPPED(st);
}

/* ---- the worker child ------------------------------------------------------------------ */

typedef enum { H_QUICK, H_GATE, H_SLEEP, H_XFORM } hmode;

typedef struct {
    const char *addr, *id, *queue;
    hmode mode;
    uint32_t prefetch, heartbeat_ms, lease_ms, poll_wait_ms, sleep_ms;
    /* set in the child */
    int rep, gate;
    char result[96];
    leaseq_worker *w;
    atomic_bool quit;
} wcfg;

static uint8_t xform(uint8_t b, size_t i) { return (uint8_t)(b ^ 0xA5u ^ (uint8_t)i); }

static void handler(void *ctx, const leaseq_lease *job, leaseq_handler_result *res)
{
    wcfg *x = ctx;
    rec r = {.kind = EV_GOT, .attempt = job->attempt, .job_id = job->job_id};
    send_rec(x->rep, &r);
    if (x->mode == H_GATE) {
        /* Bounded: a test that never opens the gate still ends. */
        struct pollfd p = {.fd = x->gate, .events = POLLIN};
        char g;
        uint64_t end = h_now_ms() + 60000;
        while (h_now_ms() < end) {
            int n = poll(&p, 1, 1000);
            if (n == 1 && read(x->gate, &g, 1) == 1)
                break;
        }
    } else if (x->mode == H_SLEEP) {
        h_sleep_ms(x->sleep_ms);
    } else if (x->mode == H_XFORM) {
        if (job->payload_len >= 6 && memcmp(job->payload, "poison", 6) == 0) {
            res->nack = res->dead = true;
            res->error = POISON_ERR;
            return;
        }
        uint8_t *out = malloc(job->payload_len ? job->payload_len : 1); /* owner: the worker, free via release */
        if (!out)
            return;
        for (size_t i = 0; i < job->payload_len; i++)
            out[i] = xform(job->payload[i], i);
        res->result = out;
        res->result_len = job->payload_len;
        res->release = free;
        res->release_arg = out;
        return;
    }
    snprintf(x->result, sizeof x->result, "%s:%" PRIu64, x->id, job->job_id);
    res->result = x->result;
    res->result_len = strlen(x->result);
}

/* Reports the worker's counters whenever they change. */
static void *monitor_main(void *arg)
{
    wcfg *x = arg;
    leaseq_worker_stats last = {0};
    while (!atomic_load(&x->quit)) {
        leaseq_worker_stats s;
        leaseq_worker_get_stats(x->w, &s);
        if (s.acked != last.acked || s.lease_lost != last.lease_lost || s.nacked != last.nacked ||
            s.failed != last.failed) {
            rec r = {.kind = EV_STATS, .acked = s.acked, .lease_lost = s.lease_lost, .nacked = s.nacked,
                     .failed = s.failed};
            send_rec(x->rep, &r);
            last = s;
        }
        h_sleep_ms(2);
    }
    return NULL;
}

static int worker_main(void *arg, int rep, int gate)
{
    wcfg *x = arg;
    x->rep = rep;
    x->gate = gate;
    const char *queues[] = {x->queue};
    leaseq_worker_opts o = {.addr = x->addr, .worker_id = x->id, .client_name = x->id, .queues = queues,
                            .n_queues = 1, .prefetch = x->prefetch, .heartbeat_ms = x->heartbeat_ms,
                            .lease_ms = x->lease_ms, .poll_wait_ms = x->poll_wait_ms, .call_timeout_ms = CALL_MS};
    if (leaseq_worker_create(&o, handler, x, &x->w) != LEASEQ_OK)
        return 3;
    pthread_t mon;
    if (pthread_create(&mon, NULL, monitor_main, x) != 0)
        return 4;
    leaseq_err e = leaseq_worker_run(x->w);
    h_log("worker %s: run ended: %s %s", x->id, leaseq_strerror(e), leaseq_worker_last_error(x->w));
    atomic_store(&x->quit, true);
    pthread_join(mon, NULL);
    leaseq_worker_destroy(x->w);
    return e == LEASEQ_OK ? 0 : 5;
}

static bool spawn_worker(child *c, const char *addr, const char *id, const char *queue, hmode mode,
                         uint32_t prefetch, uint32_t hb_ms, uint32_t lease_ms, uint32_t poll_wait_ms)
{
    wcfg x = {.addr = addr, .id = id, .queue = queue, .mode = mode, .prefetch = prefetch, .heartbeat_ms = hb_ms,
              .lease_ms = lease_ms, .poll_wait_ms = poll_wait_ms, .sleep_ms = 3000};
    return spawn(c, worker_main, &x); /* the child gets its own copy of x */
}

/* ---- a producer child that waits for outcomes ------------------------------------------ */

typedef struct {
    const char *addr;
    uint64_t ids[MAX_GOT];
    int n;
} waiter_cfg;

static void outcome_rec(rec *r, uint64_t id, leaseq_err e, const leaseq_outcome *o, const leaseq *c)
{
    memset(r, 0, sizeof *r);
    r->kind = EV_OUTCOME;
    r->job_id = id;
    r->failed = (uint64_t)e;
    if (e == LEASEQ_OK) {
        r->acked = (uint64_t)o->state;
        if (o->state == LEASEQ_STATE_DONE)
            snprintf(r->text, sizeof r->text, "%.*s", (int)(o->result_len < REC_TEXT ? o->result_len : REC_TEXT - 1),
                     o->result ? (const char *)o->result : "");
        else
            snprintf(r->text, sizeof r->text, "%s", o->error);
    } else {
        snprintf(r->text, sizeof r->text, "%s", c ? leaseq_last_error(c) : "");
    }
}

static int waiter_main(void *arg, int rep, int gate)
{
    waiter_cfg *x = arg;
    leaseq *c = NULL;
    if (leaseq_connect(x->addr, NULL, &c) != LEASEQ_OK)
        return 3;
    for (int i = 0; i < x->n; i++) {
        leaseq_outcome o = {0};
        leaseq_err e = leaseq_wait(c, x->ids[i], 15000, &o, 17000);
        rec r;
        outcome_rec(&r, x->ids[i], e, &o, c);
        send_rec(rep, &r);
        leaseq_outcome_free(&o);
    }
    leaseq_close(c);
    return 0;
}

/* ---- broker-side views ----------------------------------------------------------------- */

typedef struct {
    int64_t ready, leased, delayed, dead;
} counts;

static bool queue_counts(leaseq *c, const char *queue, counts *out)
{
    memset(out, 0, sizeof *out);
    leaseq_stats *s = NULL;
    if (leaseq_get_stats(c, queue, &s, CALL_MS) != LEASEQ_OK)
        return false;
    for (size_t i = 0; i < s->n_queues; i++) {
        if (strcmp(s->queues[i].name, queue) != 0)
            continue;
        for (size_t l = 0; l < s->queues[i].n_lanes; l++) {
            out->ready += (int64_t)s->queues[i].lanes[l].ready;
            out->leased += (int64_t)s->queues[i].lanes[l].leased;
            out->delayed += (int64_t)s->queues[i].lanes[l].delayed;
            out->dead += (int64_t)s->queues[i].lanes[l].dead;
        }
    }
    leaseq_stats_free(s);
    return true;
}

/* Polls every 2 ms until the counts match (-1 = any); *at_us gets the moment they did. */
static bool wait_counts(leaseq *c, const char *queue, int64_t ready, int64_t leased, int64_t dead, int timeout_ms,
                        counts *got, uint64_t *at_us)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    do {
        if (queue_counts(c, queue, got) && (ready < 0 || got->ready == ready) &&
            (leased < 0 || got->leased == leased) && (dead < 0 || got->dead == dead)) {
            if (at_us)
                *at_us = h_now_us();
            return true;
        }
        h_sleep_ms(2);
    } while (h_now_ms() < end);
    return false;
}

/* The Workers request spoken directly (the client library may not have it yet). */
typedef struct {
    char worker_id[64];
    bool stalled, suspect;
    uint32_t recent_losses, leases_held;
    uint64_t last_seen_age_ms;
} winfo;

static bool raw_send(int fd, Leaseq__Request *req)
{
    size_t n = leaseq__request__get_packed_size(req);
    uint8_t buf[1024];
    if (n > sizeof buf - LQ_FRAME_HEADER_BYTES)
        return false;
    lq_frame_header(buf, (uint32_t)n, 0);
    leaseq__request__pack(req, buf + LQ_FRAME_HEADER_BYTES);
    return h_write_all(fd, buf, LQ_FRAME_HEADER_BYTES + n);
}

static bool raw_read(int fd, uint8_t *buf, size_t len, uint64_t end_ms)
{
    while (len > 0) {
        struct pollfd p = {.fd = fd, .events = POLLIN};
        int left = (int)(end_ms > h_now_ms() ? end_ms - h_now_ms() : 0);
        if (poll(&p, 1, left) != 1)
            return false;
        ssize_t n = read(fd, buf, len);
        if (n <= 0)
            return false;
        buf += n;
        len -= (size_t)n;
    }
    return true;
}

/* One reply (its payload skipped); NULL on timeout or garbage. Caller frees. */
static Leaseq__Response *raw_reply(int fd, uint64_t end_ms)
{
    static uint8_t buf[1u << 20];
    uint8_t hdr[LQ_FRAME_HEADER_BYTES];
    if (!raw_read(fd, hdr, sizeof hdr, end_ms))
        return NULL;
    uint32_t len = lq_be32_load(hdr), meta = lq_be32_load(hdr + 4);
    if (len < 4 || meta > len - 4 || len - 4 > sizeof buf)
        return NULL;
    if (!raw_read(fd, buf, len - 4, end_ms))
        return NULL;
    return leaseq__response__unpack(NULL, meta, buf);
}

/* Returns how many sessions were filled in, or -1 (why in err). */
static int raw_workers(int port, winfo *out, int cap, char *err, size_t err_cap)
{
    int n = -1;
    Leaseq__Response *r = NULL;
    snprintf(err, err_cap, "no answer");
    int fd = h_tcp_connect(port, 1000);
    if (fd < 0)
        return -1;
    uint64_t end = h_now_ms() + CALL_MS;
    Leaseq__Hello hello = LEASEQ__HELLO__INIT;
    hello.protocol_version = 1;
    hello.client_name = "lifecycle-admin";
    Leaseq__Request req = LEASEQ__REQUEST__INIT;
    req.request_id = 1;
    req.body_case = LEASEQ__REQUEST__BODY_HELLO;
    req.hello = &hello;
    if (!raw_send(fd, &req) || !(r = raw_reply(fd, end)))
        goto out;
    leaseq__response__free_unpacked(r, NULL);
    Leaseq__Workers wk = LEASEQ__WORKERS__INIT;
    req.request_id = 2;
    req.body_case = LEASEQ__REQUEST__BODY_WORKERS;
    req.workers = &wk;
    if (!raw_send(fd, &req) || !(r = raw_reply(fd, end)))
        goto out;
    if (r->error && r->error->code != LEASEQ__ERROR_CODE__OK) {
        snprintf(err, err_cap, "error %d: %s", (int)r->error->code, r->error->message);
    } else if (r->body_case != LEASEQ__RESPONSE__BODY_WORKERS) {
        snprintf(err, err_cap, "reply without a Workers body");
    } else {
        n = 0;
        for (size_t i = 0; i < r->workers->n_workers && n < cap; i++, n++) {
            const Leaseq__WorkerInfo *w = r->workers->workers[i];
            snprintf(out[n].worker_id, sizeof out[n].worker_id, "%s", w->worker_id);
            out[n].stalled = w->stalled;
            out[n].suspect = w->suspect;
            out[n].recent_losses = w->recent_losses;
            out[n].leases_held = w->leases_held;
            out[n].last_seen_age_ms = w->last_seen_age_ms;
        }
    }
    leaseq__response__free_unpacked(r, NULL);
out:
    close(fd);
    return n;
}

static const winfo *find_worker(const winfo *w, int n, const char *id)
{
    for (int i = 0; i < n; i++)
        if (strcmp(w[i].worker_id, id) == 0)
            return &w[i];
    return NULL;
}

/* ---- test plumbing --------------------------------------------------------------------- */

typedef struct {
    h_broker *b;
    leaseq *c;              /* the body's producer/admin connection */
    uint32_t hb_timeout_ms; /* what the broker announces for HB_MS */
} env;

#define CHECK(cond, ...)                                                                                      \
    do {                                                                                                      \
        if (!(cond)) {                                                                                        \
            h_log("CHECK FAILED (%s:%d): %s", __FILE__, __LINE__, #cond);                                     \
            h_log(__VA_ARGS__);                                                                               \
            goto out;                                                                                         \
        }                                                                                                     \
    } while (0)

static bool enqueue_n(leaseq *c, const char *queue, int n, uint64_t *ids)
{
    leaseq_job_spec js[MAX_GOT] = {0};
    leaseq_enqueue_result res[MAX_GOT];
    char body[MAX_GOT][16];
    for (int i = 0; i < n; i++) {
        snprintf(body[i], sizeof body[i], "img-%d", i);
        js[i] = (leaseq_job_spec){.queue = queue, .payload = body[i], .payload_len = strlen(body[i])};
    }
    if (leaseq_enqueue_batch(c, js, (size_t)n, res, CALL_MS) != LEASEQ_OK)
        return false;
    for (int i = 0; i < n; i++) {
        if (res[i].err != LEASEQ_OK)
            return false;
        ids[i] = res[i].job_id;
    }
    return true;
}

static bool in_set(uint64_t id, const uint64_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

static double ms_between(uint64_t from_us, uint64_t to_us) { return ((double)to_us - (double)from_us) / 1000.0; }

#define CHILD_INIT {.rd = -1, .gate = -1}

/* A plain connection that leases as a worker (the body's own "other worker"). */
static leaseq *worker_conn(const char *addr, const char *id)
{
    leaseq_opts o = {.worker_id = id, .heartbeat_ms = 1000, .client_name = id};
    leaseq *c = NULL;
    return leaseq_connect(addr, &o, &c) == LEASEQ_OK ? c : NULL;
}

/* ---- point 1: a frozen worker ---------------------------------------------------------- */

/* Its 8 leases go to a parked worker B within the heartbeat timeout of the freeze; its late
 * acks are fenced out; a producer waiting on the jobs gets B's results. */
static bool point1_redelivery(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child A = CHILD_INIT, B = CHILD_INIT, P = CHILD_INIT;
    const char *q = "life-frozen";
    uint64_t ids[8];
    uint32_t to = e->hb_timeout_ms;
    counts k;
    CHECK(enqueue_n(e->c, q, 8, ids), "enqueue: %s", leaseq_last_error(e->c));
    CHECK(spawn_worker(&A, e->b->addr, "gpu-A", q, H_GATE, 8, HB_MS, LONG_LEASE_MS, 1000), "spawn A");
    CHECK(wait_counts(e->c, q, 0, 8, -1, 5000, &k, NULL), "A holds %lld leases, %lld ready (want 8, 0)",
          (long long)k.leased, (long long)k.ready);
    CHECK(spawn_worker(&B, e->b->addr, "gpu-B", q, H_QUICK, 8, HB_MS, LONG_LEASE_MS, 10000), "spawn B");
    waiter_cfg wc = {.addr = e->b->addr, .n = 8};
    memcpy(wc.ids, ids, sizeof ids);
    CHECK(spawn(&P, waiter_main, &wc), "spawn the waiting producer");
    h_sleep_ms(300); /* B parks its dequeue, the producer its waits; A heartbeats on */

    uint64_t t_stop = h_now_us();
    CHECK(freeze(&A), "SIGSTOP A");
    winfo wi[16];
    char why[160];
    int nw = raw_workers(e->b->port, wi, 16, why, sizeof why);
    uint64_t t_q = h_now_us();
    const winfo *wa = nw > 0 ? find_worker(wi, nw, "gpu-A") : NULL;
    if (!wa)
        h_log("point 1: no broker view of A's last heartbeat (Workers: %s); measuring from the SIGSTOP",
              nw < 0 ? why : "gpu-A not listed");
    uint64_t t_seen = wa ? t_q - wa->last_seen_age_ms * 1000u : 0;

    CHECK(wait_got(&B, 8, (int)to + 3000), "B got %d of A's 8 jobs within %u ms", B.n_got, to + 3000);
    uint64_t t_last = 0;
    for (int i = 0; i < 8; i++) {
        CHECK(in_set(B.got[i].job_id, ids, 8) && B.got[i].attempt == 2,
              "B's delivery %d: job %" PRIu64 " attempt %u (want one of A's, attempt 2)", i, B.got[i].job_id,
              B.got[i].attempt);
        if (B.got[i].t_us > t_last)
            t_last = B.got[i].t_us;
    }
    double d1 = ms_between(t_stop, B.got[0].t_us), d8 = ms_between(t_stop, t_last);
    h_log("point 1: heartbeat %u ms, timeout %u ms; SIGSTOP -> B's 1st job %.1f ms, 8th job %.1f ms", HB_MS, to,
          d1, d8);
    if (wa)
        h_log("point 1: broker last heard A %.1f ms before the SIGSTOP; last heard -> 8th job %.1f ms",
              ms_between(t_seen, t_stop), ms_between(t_seen, t_last));
    /* The SIGSTOP is an upper bound of A's last heartbeat, so "within timeout + slack of the last
     * heartbeat" implies this; the lower bound says no faster mechanism than the stall fired. */
    CHECK(d8 <= to + SLACK_MS, "8th redelivery %.1f ms after the SIGSTOP > %u ms", d8, to + SLACK_MS);
    CHECK(d1 >= (double)to - HB_MS - 50, "redelivery %.1f ms after the SIGSTOP: sooner than a stall can be", d1);
    if (wa)
        CHECK(ms_between(t_seen, t_last) <= to + SLACK_MS + 2, "8th redelivery %.1f ms after A's last heartbeat",
              ms_between(t_seen, t_last));

    CHECK(kill(A.pid, SIGCONT) == 0, "SIGCONT A");
    open_gate(&A, 8);
    CHECK(wait_done(&A, 8, 5000), "A settled %" PRIu64 " of its 8 late acks", A.stats.acked + A.stats.lease_lost);
    h_log("point 1: A's late acks: %" PRIu64 " LEASE_LOST, %" PRIu64 " accepted", A.stats.lease_lost, A.stats.acked);
    CHECK(A.stats.lease_lost == 8 && A.stats.acked == 0, "A's late acks were not all refused");

    uint64_t end = h_now_ms() + 10000;
    while (P.n_out < 8 && h_now_ms() < end && child_pump(&P, (int)(end - h_now_ms()))) {
    }
    CHECK(P.n_out == 8, "the producer got %d of 8 outcomes", P.n_out);
    for (int i = 0; i < 8; i++) {
        char want[64];
        snprintf(want, sizeof want, "gpu-B:%" PRIu64, P.out[i].job_id);
        CHECK(P.out[i].failed == LEASEQ_OK && P.out[i].acked == LEASEQ_STATE_DONE && strcmp(P.out[i].text, want) == 0,
              "wait(%" PRIu64 "): %s, state %s, \"%s\" (want done, \"%s\")", P.out[i].job_id,
              leaseq_strerror((leaseq_err)P.out[i].failed), leaseq_state_name((leaseq_job_state)P.out[i].acked),
              P.out[i].text, want);
    }
    snprintf(sum, sum_cap, "SIGSTOP -> 8th redelivery %.1f ms (bound %u = timeout %u + %u); 8 late acks LEASE_LOST; "
             "waits got B's results", d8, to + SLACK_MS, to, SLACK_MS);
    ok = true;
out:
    child_end(&A);
    child_end(&B);
    child_end(&P);
    return ok;
}

/* Requeued jobs go before jobs enqueued later in the same lane. B dequeues only once the
 * requeue is visible, so later jobs are there to overtake if the broker let them. */
static bool point1_front_of_lane(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child A = CHILD_INIT;
    leaseq *b = NULL;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    const char *q = "life-order";
    uint64_t ids[8], later[4], t_req = 0;
    counts k;
    CHECK(enqueue_n(e->c, q, 8, ids), "enqueue: %s", leaseq_last_error(e->c));
    CHECK(spawn_worker(&A, e->b->addr, "gpu-A2", q, H_GATE, 8, HB_MS, LONG_LEASE_MS, 1000), "spawn A2");
    CHECK(wait_counts(e->c, q, 0, 8, -1, 5000, &k, NULL), "A2 holds %lld leases", (long long)k.leased);
    CHECK(enqueue_n(e->c, q, 4, later), "enqueue later: %s", leaseq_last_error(e->c));
    uint64_t t_stop = h_now_us();
    CHECK(freeze(&A), "SIGSTOP A2");
    CHECK(wait_counts(e->c, q, 12, 0, -1, (int)e->hb_timeout_ms + 3000, &k, &t_req),
          "after the freeze: ready %lld leased %lld (want 12, 0)", (long long)k.ready, (long long)k.leased);
    double d = ms_between(t_stop, t_req);
    h_log("point 1: A2's 8 leases requeued (seen in stats) %.1f ms after the SIGSTOP", d);
    CHECK(d <= e->hb_timeout_ms + SLACK_MS, "requeue %.1f ms after the SIGSTOP", d);
    CHECK((b = worker_conn(e->b->addr, "gpu-B2")), "connect B2");
    const char *qs[] = {q};
    CHECK(leaseq_dequeue(b, qs, 1, 12, 0, LONG_LEASE_MS, &ls, &n, CALL_MS) == LEASEQ_OK && n == 12,
          "B2 leased %zu of 12: %s", n, leaseq_last_error(b));
    for (size_t i = 0; i < n; i++) {
        uint64_t want = i < 8 ? ids[i] : later[i - 8];
        CHECK(ls[i].job_id == want && ls[i].attempt == (i < 8 ? 2u : 1u),
              "B2's lease %zu: job %" PRIu64 " attempt %u, want %" PRIu64 " attempt %u", i, ls[i].job_id,
              ls[i].attempt, want, i < 8 ? 2u : 1u);
        CHECK(leaseq_ack(b, ls[i].job_id, ls[i].lease_token, NULL, 0, CALL_MS) == LEASEQ_OK, "B2 ack: %s",
              leaseq_last_error(b));
    }
    snprintf(sum, sum_cap, "requeued 8 went before 4 later jobs of the lane, in their old order (requeue %.1f ms)",
             d);
    ok = true;
out:
    leaseq_leases_free(ls, n);
    leaseq_close(b);
    child_end(&A);
    return ok;
}

/* ---- point 2: a killed worker ---------------------------------------------------------- */

static bool point2_killed(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child K = CHILD_INIT, P = CHILD_INIT;
    const char *q = "life-killed";
    uint64_t ids[4];
    counts k;
    CHECK(enqueue_n(e->c, q, 4, ids), "enqueue: %s", leaseq_last_error(e->c));
    CHECK(spawn_worker(&K, e->b->addr, "gpu-K", q, H_GATE, 4, HB_MS, LONG_LEASE_MS, 1000), "spawn K");
    CHECK(wait_counts(e->c, q, 0, 4, -1, 5000, &k, NULL), "K holds %lld leases", (long long)k.leased);
    CHECK(spawn_worker(&P, e->b->addr, "gpu-P", q, H_QUICK, 8, 1000, LONG_LEASE_MS, 10000), "spawn P");
    h_sleep_ms(300); /* P parks its long-poll dequeue */
    uint64_t t_kill = h_now_us();
    kill(K.pid, SIGKILL);
    CHECK(wait_got(&P, 4, 3000), "P got %d of K's 4 jobs", P.n_got);
    uint64_t t_last = 0;
    for (int i = 0; i < 4; i++) {
        CHECK(in_set(P.got[i].job_id, ids, 4) && P.got[i].attempt == 2, "P's job %" PRIu64 " attempt %u",
              P.got[i].job_id, P.got[i].attempt);
        if (P.got[i].t_us > t_last)
            t_last = P.got[i].t_us;
    }
    double d1 = ms_between(t_kill, P.got[0].t_us), d4 = ms_between(t_kill, t_last);
    h_log("point 2: SIGKILL -> parked worker's 1st job %.2f ms, 4th %.2f ms", d1, d4);
    CHECK(d4 <= KILL_BOUND_MS, "redelivery %.2f ms after the SIGKILL > %u ms", d4, KILL_BOUND_MS);
    snprintf(sum, sum_cap, "SIGKILL -> 4th redelivery %.2f ms (bound %u ms)", d4, KILL_BOUND_MS);
    ok = true;
out:
    child_end(&K);
    child_end(&P);
    return ok;
}

/* ---- point 3: a long handler that heartbeats ------------------------------------------- */

static bool point3_long_handler(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child S = CHILD_INIT, O = CHILD_INIT;
    const char *q = "life-long";
    uint64_t id;
    counts k;
    CHECK(spawn_worker(&S, e->b->addr, "gpu-S", q, H_SLEEP, 1, HB_MS, 1000, 1000), "spawn S");
    CHECK(enqueue_n(e->c, q, 1, &id), "enqueue: %s", leaseq_last_error(e->c));
    CHECK(wait_got(&S, 1, 5000), "S never got the job");
    uint64_t t0 = S.got[0].t_us;
    CHECK(spawn_worker(&O, e->b->addr, "gpu-O", q, H_QUICK, 1, HB_MS, LONG_LEASE_MS, 10000), "spawn O");
    while (h_now_us() < t0 + 2500000u)
        h_sleep_ms(20);
    CHECK(queue_counts(e->c, q, &k) && k.leased == 1 && k.ready == 0,
          "2.5 lease times into the handler: leased %lld ready %lld (want 1, 0)", (long long)k.leased,
          (long long)k.ready);
    CHECK(wait_done(&S, 1, 8000), "S's ack did not settle");
    double took = ms_between(t0, S.stats.t_us);
    CHECK(child_pump(&O, 300), "the other worker died");
    child_pump(&S, 0);
    h_log("point 3: lease 1000 ms, handler+ack %.0f ms; S acked %" PRIu64 ", lease_lost %" PRIu64
          "; S deliveries %d (attempt %u), O deliveries %d",
          took, S.stats.acked, S.stats.lease_lost, S.n_got, S.got[0].attempt, O.n_got);
    CHECK(took >= 3000, "the handler ran only %.0f ms", took);
    CHECK(S.stats.acked == 1 && S.stats.lease_lost == 0, "S's ack was not accepted");
    CHECK(S.n_got == 1 && S.got[0].attempt == 1 && S.got[0].job_id == id, "the job was delivered again");
    CHECK(O.n_got == 0, "the other worker got %d job(s)", O.n_got);
    snprintf(sum, sum_cap, "handler %.0f ms on a 1000 ms lease, heartbeat %u ms: attempts 1, acked, no redelivery",
             took, HB_MS);
    ok = true;
out:
    child_end(&S);
    child_end(&O);
    return ok;
}

/* ---- point 4: a worker that freezes on every delivery ---------------------------------- */

static bool point4_flaky(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child W = CHILD_INIT, X = CHILD_INIT;
    leaseq_outcome o = {0};
    const char *q = "life-flaky";
    uint64_t id = 0, id2 = 0;
    counts k;
    double stall_ms[3] = {0};
    CHECK(spawn_worker(&W, e->b->addr, "gpu-flaky", q, H_GATE, 1, HB_MS, LONG_LEASE_MS, 1000), "spawn W");
    leaseq_job_spec js = {.queue = q, .max_attempts = 3, .payload = "img", .payload_len = 3};
    CHECK(leaseq_enqueue(e->c, &js, &id, CALL_MS) == LEASEQ_OK, "enqueue: %s", leaseq_last_error(e->c));
    for (uint32_t a = 1; a <= 3; a++) {
        CHECK(wait_got(&W, (int)a, 5000), "delivery %u never came", a);
        CHECK(W.got[a - 1].job_id == id && W.got[a - 1].attempt == a, "delivery %u: job %" PRIu64 " attempt %u", a,
              W.got[a - 1].job_id, W.got[a - 1].attempt);
        uint64_t t_stop = h_now_us(), t_gone = 0;
        CHECK(freeze(&W), "SIGSTOP W");
        CHECK(wait_counts(e->c, q, a < 3 ? 1 : 0, 0, a < 3 ? 0 : 1, (int)e->hb_timeout_ms + 3000, &k, &t_gone),
              "after freeze %u: ready %lld leased %lld dead %lld", a, (long long)k.ready, (long long)k.leased,
              (long long)k.dead);
        stall_ms[a - 1] = ms_between(t_stop, t_gone);
        CHECK(kill(W.pid, SIGCONT) == 0, "SIGCONT W");
        open_gate(&W, 1);
    }
    h_log("point 4: freeze -> lease gone %.0f / %.0f / %.0f ms; job dead after attempt 3", stall_ms[0], stall_ms[1],
          stall_ms[2]);
    CHECK(wait_done(&W, 3, 5000), "W's late acks did not settle");
    CHECK(W.stats.lease_lost == 3 && W.stats.acked == 0, "W's late acks: %" PRIu64 " lost, %" PRIu64 " accepted",
          W.stats.lease_lost, W.stats.acked);

    winfo wi[16];
    char why[160];
    int nw = raw_workers(e->b->port, wi, 16, why, sizeof why);
    CHECK(nw >= 0, "Workers request: %s", why);
    const winfo *wf = find_worker(wi, nw, "gpu-flaky");
    CHECK(wf != NULL, "gpu-flaky is not listed by Workers (%d sessions)", nw);
    h_log("point 4: Workers: gpu-flaky suspect=%d stalled=%d recent_losses=%u leases_held=%u", wf->suspect,
          wf->stalled, wf->recent_losses, wf->leases_held);
    CHECK(wf->suspect && wf->recent_losses >= 3, "gpu-flaky is not quarantined");

    CHECK(leaseq_enqueue(e->c, &(leaseq_job_spec){.queue = q, .payload = "img2", .payload_len = 4}, &id2, CALL_MS) ==
              LEASEQ_OK, "enqueue: %s", leaseq_last_error(e->c));
    CHECK(child_pump(&W, 500), "W died"); /* W is alive and asking; a quarantined id must not be served */
    CHECK(W.n_got == 3, "the quarantined worker got a new job");
    CHECK(spawn_worker(&X, e->b->addr, "gpu-X", q, H_QUICK, 1, HB_MS, LONG_LEASE_MS, 10000), "spawn X");
    CHECK(wait_got(&X, 1, 3000) && X.got[0].job_id == id2, "the healthy worker did not get the new job");
    CHECK(child_pump(&W, 200), "W died");
    CHECK(W.n_got == 3, "the quarantined worker got a new job");

    leaseq_err we = leaseq_wait(e->c, id, 1000, &o, 3000);
    h_log("point 4: wait(job): %s, state %s, error \"%s\"", leaseq_strerror(we), leaseq_state_name(o.state),
          o.error ? o.error : "");
    CHECK(we == LEASEQ_OK && o.state == LEASEQ_STATE_DEAD && strstr(o.error, "session stalled"),
          "the job is not dead with \"session stalled\" (%s)", leaseq_last_error(e->c));
    snprintf(sum, sum_cap, "dead after 3 freezes (\"%s\"), gpu-flaky suspect with %u losses, X served instead",
             o.error, wf->recent_losses);
    ok = true;
out:
    leaseq_outcome_free(&o);
    child_end(&W);
    child_end(&X);
    return ok;
}

/* ---- point 5: producer waits ----------------------------------------------------------- */

static uint64_t fnv1a(const uint8_t *p, size_t n)
{
    uint64_t h = 1469598103934665603u;
    for (size_t i = 0; i < n; i++)
        h = (h ^ p[i]) * 1099511628211u;
    return h;
}

static bool point5_waits(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    child E = CHILD_INIT;
    leaseq *w = NULL;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    leaseq_outcome o = {0};
    uint8_t *big = malloc(BIG_LEN), *want = malloc(BIG_LEN); /* owner: this function */
    const char *q = "life-xform", *idle = "life-idle";
    uint64_t id = 0, s = 0x9E3779B97F4A7C15u;
    CHECK(big && want, "out of memory");
    for (size_t i = 0; i < BIG_LEN; i++) { /* xorshift64: random, reproducible */
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        big[i] = (uint8_t)s;
        want[i] = xform(big[i], i);
    }
    CHECK(spawn_worker(&E, e->b->addr, "gpu-E", q, H_XFORM, 1, 1000, LONG_LEASE_MS, 1000), "spawn E");
    leaseq_job_spec js = {.queue = q, .payload = big, .payload_len = BIG_LEN};
    uint64_t t0 = h_now_us();
    leaseq_err r = leaseq_enqueue_and_wait(e->c, &js, 10000, &id, &o, 15000);
    double took = ms_between(t0, h_now_us());
    CHECK(r == LEASEQ_OK && o.state == LEASEQ_STATE_DONE, "enqueue_and_wait: %s, state %s (%s)", leaseq_strerror(r),
          leaseq_state_name(o.state), leaseq_last_error(e->c));
    uint64_t h_want = fnv1a(want, BIG_LEN), h_got = o.result ? fnv1a(o.result, o.result_len) : 0;
    h_log("point 5: 1 MiB round trip %.1f ms; result %zu bytes, fnv1a %016" PRIx64 " (want %016" PRIx64 ")", took,
          o.result_len, h_got, h_want);
    CHECK(o.result_len == BIG_LEN && h_got == h_want && memcmp(o.result, want, BIG_LEN) == 0,
          "the result bytes differ");
    leaseq_outcome_free(&o);

    js = (leaseq_job_spec){.queue = q, .payload = "poison-1", .payload_len = 8};
    r = leaseq_enqueue_and_wait(e->c, &js, 10000, &id, &o, 15000);
    h_log("point 5: poison job: %s, state %s, error \"%s\"", leaseq_strerror(r), leaseq_state_name(o.state),
          o.error ? o.error : "");
    CHECK(r == LEASEQ_OK && o.state == LEASEQ_STATE_DEAD && strcmp(o.error, POISON_ERR) == 0,
          "a dead-lettered job does not wait out as DEAD with its error");
    leaseq_outcome_free(&o);
    child_end(&E); /* so that nobody serves the idle queue, whatever its name */

    js = (leaseq_job_spec){.queue = idle, .payload = "img", .payload_len = 3};
    CHECK(leaseq_enqueue(e->c, &js, &id, CALL_MS) == LEASEQ_OK, "enqueue: %s", leaseq_last_error(e->c));
    t0 = h_now_us();
    r = leaseq_wait(e->c, id, 300, &o, 3000);
    double waited = ms_between(t0, h_now_us());
    h_log("point 5: wait(300 ms) on an idle job: %s after %.1f ms", leaseq_strerror(r), waited);
    CHECK(r == LEASEQ_E_DEADLINE_EXCEEDED, "want DEADLINE_EXCEEDED (%s)", leaseq_last_error(e->c));
    CHECK(waited >= 290 && waited < 2000, "the wait took %.1f ms", waited);
    counts k;
    CHECK(queue_counts(e->c, idle, &k) && k.ready == 1 && k.leased == 0 && k.dead == 0,
          "after the wait: ready %lld leased %lld dead %lld", (long long)k.ready, (long long)k.leased,
          (long long)k.dead);
    CHECK((w = worker_conn(e->b->addr, "gpu-idle")), "connect");
    const char *qs[] = {idle};
    CHECK(leaseq_dequeue(w, qs, 1, 1, 0, LONG_LEASE_MS, &ls, &n, CALL_MS) == LEASEQ_OK && n == 1 &&
              ls[0].job_id == id && ls[0].attempt == 1,
          "leasing the waited-on job: n %zu attempt %u (want 1, 1)", n, n ? ls[0].attempt : 0);
    CHECK(leaseq_ack(w, id, ls[0].lease_token, NULL, 0, CALL_MS) == LEASEQ_OK, "ack: %s", leaseq_last_error(w));
    snprintf(sum, sum_cap, "1 MiB result intact (%.1f ms), DEAD with its error, short wait DEADLINE_EXCEEDED after "
             "%.0f ms with the job untouched (attempt 1)", took, waited);
    ok = true;
out:
    leaseq_outcome_free(&o);
    leaseq_leases_free(ls, n);
    leaseq_close(w);
    child_end(&E);
    free(big);
    free(want);
    return ok;
}

/* ---- point 6: idempotency keys --------------------------------------------------------- */

static bool enqueue_key(leaseq *c, const char *queue, const char *key, leaseq_enqueue_result *r)
{
    leaseq_job_spec js = {.queue = queue, .idempotency_key = key, .payload = key, .payload_len = strlen(key)};
    return leaseq_enqueue_batch(c, &js, 1, r, CALL_MS) == LEASEQ_OK && r->err == LEASEQ_OK;
}

static bool point6_idempotency(env *e, char *sum, size_t sum_cap)
{
    bool ok = false;
    leaseq *w = NULL;
    leaseq_lease *ls = NULL;
    size_t n = 0;
    const char *q = "life-idem";
    leaseq_enqueue_result a1, a2, a3, f1, f2, x;
    CHECK(enqueue_key(e->c, q, "img-42", &a1) && enqueue_key(e->c, q, "img-42", &a2), "enqueue: %s",
          leaseq_last_error(e->c));
    h_log("point 6: key img-42: job %" PRIu64 " dup %d, then job %" PRIu64 " dup %d", a1.job_id, a1.duplicate,
          a2.job_id, a2.duplicate);
    CHECK(!a1.duplicate && a2.duplicate && a2.job_id == a1.job_id, "the second enqueue made another job");
    /* A finished job's key counts too (for the retention window). */
    CHECK(enqueue_key(e->c, q, "img-43", &f1), "enqueue: %s", leaseq_last_error(e->c));
    CHECK((w = worker_conn(e->b->addr, "gpu-idem")), "connect");
    const char *qs[] = {q};
    CHECK(leaseq_dequeue(w, qs, 1, 2, 0, LONG_LEASE_MS, &ls, &n, CALL_MS) == LEASEQ_OK && n == 2, "dequeue: %s",
          leaseq_last_error(w));
    for (size_t i = 0; i < n; i++)
        if (ls[i].job_id == f1.job_id)
            CHECK(leaseq_ack(w, f1.job_id, ls[i].lease_token, "ok", 2, CALL_MS) == LEASEQ_OK, "ack: %s",
                  leaseq_last_error(w));
    leaseq_close(w); /* img-42 goes back to ready */
    w = NULL;

    h_broker_kill9(e->b);
    CHECK(h_broker_start_ready(e->b, 15000), "broker restart");
    leaseq_close(e->c);
    e->c = NULL;
    CHECK(leaseq_connect(e->b->addr, NULL, &e->c) == LEASEQ_OK, "reconnect");
    CHECK(enqueue_key(e->c, q, "img-42", &a3) && enqueue_key(e->c, q, "img-43", &f2) &&
              enqueue_key(e->c, q, "img-44", &x),
          "enqueue after restart: %s", leaseq_last_error(e->c));
    h_log("point 6: after SIGKILL + restart: img-42 -> %" PRIu64 " dup %d, img-43 (done) -> %" PRIu64
          " dup %d, img-44 -> %" PRIu64 " dup %d",
          a3.job_id, a3.duplicate, f2.job_id, f2.duplicate, x.job_id, x.duplicate);
    CHECK(a3.duplicate && a3.job_id == a1.job_id, "img-42 made a new job after the restart");
    CHECK(f2.duplicate && f2.job_id == f1.job_id, "img-43 (finished) made a new job after the restart");
    CHECK(!x.duplicate && x.job_id != a1.job_id && x.job_id != f1.job_id, "a new key was not a new job");
    snprintf(sum, sum_cap, "same id + duplicate flag, live (%" PRIu64 ") and finished (%" PRIu64
             ") keys, also after SIGKILL + restart", a1.job_id, f1.job_id);
    ok = true;
out:
    leaseq_leases_free(ls, n);
    leaseq_close(w);
    return ok;
}

/* ---- main ------------------------------------------------------------------------------ */

typedef bool (*point_fn)(env *e, char *sum, size_t sum_cap);

static int run(const char *tmpdir)
{
    static const struct {
        const char *name;
        point_fn fn;
    } points[] = {
        {"1 frozen worker: redelivery", point1_redelivery},
        {"1 frozen worker: front of lane", point1_front_of_lane},
        {"2 killed worker", point2_killed},
        {"3 long handler with heartbeats", point3_long_handler},
        {"4 flaky worker: dead letter + quarantine", point4_flaky},
        {"5 producer waits", point5_waits},
        {"6 idempotency keys", point6_idempotency}, /* last: it restarts the broker */
    };
    enum { NP = sizeof points / sizeof points[0] };
    bool ok[NP] = {0};
    char sum[NP][320];
    atexit(kill_all_children);
    h_broker b;
    env e = {.b = &b};
    if (!h_broker_init(&b, tmpdir) || !h_broker_start_ready(&b, 15000))
        return 1;
    if (leaseq_connect(b.addr, NULL, &e.c) != LEASEQ_OK)
        return 1;
    leaseq *probe = NULL;
    leaseq_opts po = {.worker_id = "lifecycle-probe", .heartbeat_ms = HB_MS};
    if (leaseq_connect(b.addr, &po, &probe) == LEASEQ_OK) {
        leaseq_server_info si;
        leaseq_get_server_info(probe, &si);
        e.hb_timeout_ms = si.heartbeat_timeout_ms;
        leaseq_close(probe);
    }
    if (e.hb_timeout_ms == 0) {
        e.hb_timeout_ms = 3 * HB_MS;
        h_log("the broker announced no heartbeat timeout; assuming 3 x %u ms", HB_MS);
    }
    h_log("broker %s, heartbeat %u ms -> timeout %u ms", b.addr, HB_MS, e.hb_timeout_ms);
    for (int i = 0; i < NP; i++) {
        snprintf(sum[i], sizeof sum[i], "-");
        h_log("---- point %s ----", points[i].name);
        ok[i] = h_broker_alive(&b) && e.c && points[i].fn(&e, sum[i], sizeof sum[i]);
    }
    int failed = 0;
    for (int i = 0; i < NP; i++) {
        printf("%s point %s: %s\n", ok[i] ? "PASS" : "FAIL", points[i].name, ok[i] ? sum[i] : "see the log above");
        failed += !ok[i];
    }
    if (failed)
        h_dump_tail(b.log_path, 40);
    leaseq_close(e.c);
    char how[80];
    if (!h_broker_stop(&b, 10000, how, sizeof how)) {
        printf("leaseqd did not stop cleanly: %s\n", how);
        failed++;
    }
    kill_all_children();
    return failed ? 1 : 0;
}

int main(void) { return h_supervise("test_worker_lifecycle", 280, run); }
