/* Shared plumbing of the GPU job lifecycle tests (test_worker_freeze.c: points 1-4,
 * test_worker_results.c: points 5-6), end to end on a real leaseqd: worker sessions with
 * heartbeats, frozen and killed workers, long handlers, quarantine of a flaky worker id,
 * producer waits, idempotency.
 *
 * Workers are separate processes (fork + libleaseq worker API), so SIGSTOP freezes a whole
 * worker (handler and heartbeat thread alike) the way a hung GPU driver does, and SIGKILL closes
 * its connection. Children report what their handler saw through a pipe as fixed-size records
 * (one write each, below PIPE_BUF, so records never interleave); their clocks are comparable
 * because CLOCK_MONOTONIC is machine-wide.
 *
 * Each binary runs its points on one broker and prints one PASS/FAIL line per point; its exit
 * status is 0 only when all pass. Header-only: every function is H_FN (static, maybe unused). */
#ifndef LQ_TEST_LIFECYCLE_UTIL_H
#define LQ_TEST_LIFECYCLE_UTIL_H

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

H_FN void send_rec(int fd, rec *r)
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

H_FN void kill_all_children(void)
{
    for (int i = 0; i < MAX_CHILDREN; i++)
        if (g_pids[i] > 0) {
            kill(g_pids[i], SIGKILL);
            waitpid(g_pids[i], NULL, 0);
            g_pids[i] = 0;
        }
}

H_FN void child_end(child *c)
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
H_FN bool child_pump(child *c, int timeout_ms)
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

H_FN bool wait_got(child *c, int n, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (c->n_got < n && h_now_ms() < end && child_pump(c, (int)(end - h_now_ms()))) {
    }
    return c->n_got >= n;
}

H_FN bool settled(const child *c, uint64_t n)
{
    return c->stats.acked + c->stats.lease_lost + c->stats.nacked + c->stats.failed >= n;
}

/* Waits until n acks/nacks of the child's worker were answered (accepted or refused). */
H_FN bool wait_done(child *c, uint64_t n, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (!settled(c, n) && h_now_ms() < end && child_pump(c, (int)(end - h_now_ms()))) {
    }
    return settled(c, n);
}

H_FN bool spawn(child *c, int (*fn)(void *arg, int rep, int gate), void *arg)
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

H_FN void open_gate(child *c, int n)
{
    for (int i = 0; i < n; i++)
        (void)!write(c->gate, "g", 1);
}

/* SIGSTOP and wait until the kernel says it is stopped. */
H_FN bool freeze(child *c)
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

H_FN uint8_t xform(uint8_t b, size_t i) { return (uint8_t)(b ^ 0xA5u ^ (uint8_t)i); }

H_FN void handler(void *ctx, const leaseq_lease *job, leaseq_handler_result *res)
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
H_FN void *monitor_main(void *arg)
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

H_FN int worker_main(void *arg, int rep, int gate)
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

H_FN bool spawn_worker(child *c, const char *addr, const char *id, const char *queue, hmode mode,
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

H_FN void outcome_rec(rec *r, uint64_t id, leaseq_err e, const leaseq_outcome *o, const leaseq *c)
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

H_FN int waiter_main(void *arg, int rep, int gate)
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

H_FN bool queue_counts(leaseq *c, const char *queue, counts *out)
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
H_FN bool wait_counts(leaseq *c, const char *queue, int64_t ready, int64_t leased, int64_t dead, int timeout_ms,
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

H_FN bool raw_send(int fd, Leaseq__Request *req)
{
    size_t n = leaseq__request__get_packed_size(req);
    uint8_t buf[1024];
    if (n > sizeof buf - LQ_FRAME_HEADER_BYTES)
        return false;
    lq_frame_header(buf, (uint32_t)n, 0);
    leaseq__request__pack(req, buf + LQ_FRAME_HEADER_BYTES);
    return h_write_all(fd, buf, LQ_FRAME_HEADER_BYTES + n);
}

H_FN bool raw_read(int fd, uint8_t *buf, size_t len, uint64_t end_ms)
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
H_FN Leaseq__Response *raw_reply(int fd, uint64_t end_ms)
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
H_FN int raw_workers(int port, winfo *out, int cap, char *err, size_t err_cap)
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

H_FN const winfo *find_worker(const winfo *w, int n, const char *id)
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

H_FN bool enqueue_n(leaseq *c, const char *queue, int n, uint64_t *ids)
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

H_FN bool in_set(uint64_t id, const uint64_t *ids, int n)
{
    for (int i = 0; i < n; i++)
        if (ids[i] == id)
            return true;
    return false;
}

H_FN double ms_between(uint64_t from_us, uint64_t to_us) { return ((double)to_us - (double)from_us) / 1000.0; }

#define CHILD_INIT {.rd = -1, .gate = -1}

/* A plain connection that leases as a worker (the body's own "other worker"). */
H_FN leaseq *worker_conn(const char *addr, const char *id)
{
    leaseq_opts o = {.worker_id = id, .heartbeat_ms = 1000, .client_name = id};
    leaseq *c = NULL;
    return leaseq_connect(addr, &o, &c) == LEASEQ_OK ? c : NULL;
}


/* ---- running the points ---------------------------------------------------------------- */

typedef bool (*point_fn)(env *e, char *sum, size_t sum_cap);

typedef struct {
    const char *name;
    point_fn fn;
} lc_point;

#define LC_POINTS_MAX 8

/* The body under h_supervise: starts a broker, runs every point in order (a point that restarts
 * the broker goes last), prints one PASS/FAIL line per point, stops the broker. */
H_FN int lc_run_points(const char *tmpdir, const lc_point *points, int np)
{
    if (np > LC_POINTS_MAX)
        return 1;
    bool ok[LC_POINTS_MAX] = {0};
    char sum[LC_POINTS_MAX][320];
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
    for (int i = 0; i < np; i++) {
        snprintf(sum[i], sizeof sum[i], "-");
        h_log("---- point %s ----", points[i].name);
        ok[i] = h_broker_alive(&b) && e.c && points[i].fn(&e, sum[i], sizeof sum[i]);
    }
    int failed = 0;
    for (int i = 0; i < np; i++) {
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

#endif /* LQ_TEST_LIFECYCLE_UTIL_H */
