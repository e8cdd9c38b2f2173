/* The worker loop of libleaseq (leaseq.h): lease a batch, run the handler for each job, ack or
 * nack it; a second thread heartbeats on the same connection.
 *
 * Threads: leaseq_worker_run's thread owns the handle and does every call. The heartbeat
 * thread only calls lqc_send_heartbeat, which writes one whole frame under the connection's
 * write lock and never reads; the owner drops the replies (LQC_HB_ID_BIT). No lock of ours is
 * held while the handler runs, so a long handler never delays a beat, and a process that is
 * frozen as a whole stops beating, which is what the broker watches for. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PREFETCH_MAX 256u
#define QUEUES_MAX 64u
#define RETRY_FIRST_MS 100u
#define RETRY_MAX_MS 2000u
#define STOP_ERROR "worker stopping"

typedef struct {
    _Atomic uint64_t leased, acked, nacked, dead, released, lease_lost, failed, reconnects, hb_sent, hb_skipped;
} worker_counters;

struct leaseq_worker {
    /* owned copies of the options: no caller pointer is kept */
    char *addr, *token, *client_name, *worker_id;
    char **queues;
    size_t n_queues;
    uint32_t prefetch, heartbeat_ms, lease_ms, poll_wait_ms, max_payload_bytes;
    int call_timeout_ms;
    leaseq_handler_fn fn;
    void *ctx;

    atomic_bool stop;    /* set by leaseq_worker_stop: lock-free, so signal-safe */
    atomic_bool running; /* one leaseq_worker_run at a time */
    int wake_rd, wake_wr;/* self-pipe: stop writes a byte, idle waits poll the read end */

    leaseq *c;           /* during a run: the run's thread, plus lqc_send_heartbeat */
    uint64_t first_gen;  /* c->conn_gen of the first session of this run */

    pthread_t hb_thread;
    bool hb_started;
    pthread_mutex_t hb_mu;
    pthread_cond_t hb_cv;/* CLOCK_MONOTONIC: wakes the heartbeat thread early to quit */
    bool hb_quit;        /* guarded by hb_mu */

    worker_counters n;
    char errmsg[512];    /* run's thread only */
};

static void count(_Atomic uint64_t *ctr, uint64_t k)
{
    atomic_fetch_add_explicit(ctr, k, memory_order_relaxed);
}

static void note(leaseq_worker *w, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void note(leaseq_worker *w, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->errmsg, sizeof w->errmsg, fmt, ap);
    va_end(ap);
}

static void note_call(leaseq_worker *w, const char *what, uint64_t job_id, leaseq_err e)
{
    note(w, "%s job %llu: %s: %s", what, (unsigned long long)job_id, leaseq_strerror(e),
         w->c != NULL ? leaseq_last_error(w->c) : "");
}

static bool stopping(leaseq_worker *w)
{
    return atomic_load(&w->stop);
}

/* Sleeps up to ms, or until leaseq_worker_stop writes to the pipe. */
static void idle_wait(leaseq_worker *w, uint32_t ms)
{
    struct pollfd p = { .fd = w->wake_rd, .events = POLLIN };
    uint64_t until = lqc_now_ms() + ms;
    for (uint64_t now = lqc_now_ms(); now < until && !stopping(w); now = lqc_now_ms())
        if (poll(&p, 1, (int)(until - now)) > 0)
            break;
}

static void drain_wake_pipe(leaseq_worker *w)
{
    char buf[64];
    while (read(w->wake_rd, buf, sizeof buf) > 0) {
    }
}

static void abs_monotonic(uint64_t ms, struct timespec *ts)
{
    ts->tv_sec = (time_t)(ms / 1000);
    ts->tv_nsec = (long)(ms % 1000) * 1000000L;
}

static void *hb_main(void *arg)
{
    leaseq_worker *w = arg;
    uint64_t seq = 0;
    uint64_t next_ms = lqc_now_ms() + w->heartbeat_ms;
    pthread_mutex_lock(&w->hb_mu);
    while (!w->hb_quit) {
        uint64_t now = lqc_now_ms();
        if (now < next_ms) {
            struct timespec ts;
            abs_monotonic(next_ms, &ts);
            pthread_cond_timedwait(&w->hb_cv, &w->hb_mu, &ts);
            continue;
        }
        pthread_mutex_unlock(&w->hb_mu);
        /* Bounded by one interval: a beat that cannot go out by then is moot. */
        lqc_io io = lqc_send_heartbeat(w->c, ++seq, now + w->heartbeat_ms);
        count(io == LQC_IO_OK ? &w->n.hb_sent : &w->n.hb_skipped, 1);
        pthread_mutex_lock(&w->hb_mu);
        next_ms += w->heartbeat_ms;
        if (next_ms <= now) /* we were held up (a stall, a busy socket): no burst of beats */
            next_ms = now + w->heartbeat_ms;
    }
    pthread_mutex_unlock(&w->hb_mu);
    return NULL;
}

static leaseq_err hb_start(leaseq_worker *w)
{
    w->hb_quit = false;
    if (pthread_create(&w->hb_thread, NULL, hb_main, w) != 0) {
        note(w, "cannot start the heartbeat thread");
        return LEASEQ_E_NOMEM;
    }
    w->hb_started = true;
    return LEASEQ_OK;
}

static void hb_stop(leaseq_worker *w)
{
    if (!w->hb_started)
        return;
    pthread_mutex_lock(&w->hb_mu);
    w->hb_quit = true;
    pthread_cond_signal(&w->hb_cv);
    pthread_mutex_unlock(&w->hb_mu);
    pthread_join(w->hb_thread, NULL);
    w->hb_started = false;
}

/* Refusals that retrying cannot fix end the run. */
static bool is_fatal(leaseq_err e)
{
    return e == LEASEQ_E_UNAUTHENTICATED || e == LEASEQ_E_PERMISSION_DENIED || e == LEASEQ_E_INVALID_ARGUMENT ||
           e == LEASEQ_E_NOT_FOUND;
}

static leaseq_err connect_worker(leaseq_worker *w)
{
    leaseq_opts o = { .client_name = w->client_name, .token = w->token, .worker_id = w->worker_id,
                      .heartbeat_ms = w->heartbeat_ms, .keep_leases_on_close = false,
                      .connect_timeout_ms = (uint32_t)w->call_timeout_ms, .max_payload_bytes = w->max_payload_bytes };
    char why[256];
    leaseq_err e = leaseq_connect_ex(w->addr, &o, &w->c, why, sizeof why);
    if (e != LEASEQ_OK) {
        note(w, "connect %s: %s: %s", w->addr, leaseq_strerror(e), why);
        return e;
    }
    w->c->hb_replies = true; /* before the heartbeat thread exists */
    w->first_gen = w->c->conn_gen;
    e = hb_start(w);
    if (e != LEASEQ_OK) {
        leaseq_close(w->c);
        w->c = NULL;
    }
    return e;
}

/* Whether the leases of the session that granted a batch (generation gen) are gone: the
 * connection broke, or the library already reconnected. */
static bool session_lost(const leaseq_worker *w, uint64_t gen)
{
    return w->c->conn_gen != gen || !lqc_conn_is_open(&w->c->conn);
}

static void settle(leaseq_worker *w, const char *what, uint64_t job_id, leaseq_err e)
{
    if (e == LEASEQ_E_LEASE_LOST) {
        count(&w->n.lease_lost, 1);
    } else if (e != LEASEQ_OK) {
        count(&w->n.failed, 1);
        note_call(w, what, job_id, e);
    }
}

static void nack_job(leaseq_worker *w, const leaseq_lease *job, const leaseq_nack_opts *no)
{
    bool dead = false;
    leaseq_err e = leaseq_nack(w->c, job->job_id, job->lease_token, no, &dead, w->call_timeout_ms);
    if (e == LEASEQ_OK) {
        count(&w->n.nacked, 1);
        count(&w->n.dead, dead);
    }
    settle(w, "nack", job->job_id, e);
}

static void run_job(leaseq_worker *w, const leaseq_lease *job)
{
    leaseq_handler_result r;
    memset(&r, 0, sizeof r);
    w->fn(w->ctx, job, &r);
    if (r.nack || r.dead) {
        leaseq_nack_opts no = { .error = r.error, .dead = r.dead, .delay_set = r.delay_set, .delay_ms = r.delay_ms };
        nack_job(w, job, &no);
    } else {
        leaseq_err e = leaseq_ack(w->c, job->job_id, job->lease_token, r.result, r.result_len, w->call_timeout_ms);
        if (e == LEASEQ_OK)
            count(&w->n.acked, 1);
        settle(w, "ack", job->job_id, e);
        if (e == LEASEQ_E_FRAME_TOO_LARGE || (e == LEASEQ_E_INVALID_ARGUMENT && r.result == NULL)) {
            /* Refused before sending: no retry on any worker can make this result fit. */
            char why[128];
            snprintf(why, sizeof why, "worker: result of %zu bytes refused: %s", r.result_len, leaseq_strerror(e));
            leaseq_nack_opts no = { .error = why, .dead = true };
            nack_job(w, job, &no);
        }
    }
    if (r.release != NULL)
        r.release(r.release_arg);
}

/* Gives back jobs [i, n) that were leased but not started, so they go to the front again. */
static void release_rest(leaseq_worker *w, const leaseq_lease *ls, size_t i, size_t n, uint64_t gen)
{
    leaseq_nack_opts no = { .error = STOP_ERROR, .delay_set = true, .delay_ms = 0 };
    for (; i < n; i++) {
        if (session_lost(w, gen)) {
            count(&w->n.lease_lost, n - i); /* the broker requeued them already */
            return;
        }
        leaseq_err e = leaseq_nack(w->c, ls[i].job_id, ls[i].lease_token, &no, NULL, w->call_timeout_ms);
        if (e == LEASEQ_OK)
            count(&w->n.released, 1);
        settle(w, "release", ls[i].job_id, e);
    }
}

/* One dequeue and its batch. Returns the dequeue's error, if any. */
static leaseq_err one_round(leaseq_worker *w)
{
    leaseq_lease *ls = NULL;
    size_t n = 0;
    int timeout_ms = (int)w->poll_wait_ms + w->call_timeout_ms;
    leaseq_err e = leaseq_dequeue(w->c, (const char *const *)w->queues, w->n_queues, w->prefetch, w->poll_wait_ms,
                                  w->lease_ms, &ls, &n, timeout_ms);
    atomic_store_explicit(&w->n.reconnects, w->c->conn_gen - w->first_gen, memory_order_relaxed);
    if (e != LEASEQ_OK) {
        note(w, "dequeue: %s: %s", leaseq_strerror(e), leaseq_last_error(w->c));
        return e;
    }
    count(&w->n.leased, n);
    uint64_t gen = w->c->conn_gen; /* the session these leases belong to */
    for (size_t i = 0; i < n; i++) {
        if (session_lost(w, gen)) {
            count(&w->n.lease_lost, n - i);
            break;
        }
        if (stopping(w)) {
            release_rest(w, ls, i, n, gen);
            break;
        }
        run_job(w, &ls[i]);
    }
    leaseq_leases_free(ls, n);
    return LEASEQ_OK;
}

leaseq_err leaseq_worker_run(leaseq_worker *w)
{
    if (w == NULL)
        return LEASEQ_E_INVALID_ARGUMENT;
    if (atomic_exchange(&w->running, true))
        return LEASEQ_E_INVALID_ARGUMENT;
    w->errmsg[0] = '\0';
    leaseq_err fatal = LEASEQ_OK;
    uint32_t retry_ms = 0;
    while (!stopping(w)) {
        leaseq_err e = w->c == NULL ? connect_worker(w) : one_round(w);
        if (e == LEASEQ_OK) {
            retry_ms = 0;
            continue;
        }
        if (is_fatal(e)) {
            fatal = e;
            break;
        }
        /* Transient (connection, broker busy or restarting): wait, but wake for a stop. */
        retry_ms = retry_ms == 0 ? RETRY_FIRST_MS : (retry_ms * 2 > RETRY_MAX_MS ? RETRY_MAX_MS : retry_ms * 2);
        idle_wait(w, retry_ms);
    }
    hb_stop(w);
    leaseq_close(w->c); /* a worker session's close requeues anything still leased */
    w->c = NULL;
    drain_wake_pipe(w);
    atomic_store(&w->stop, false); /* the next run starts afresh */
    atomic_store(&w->running, false);
    return fatal;
}

void leaseq_worker_stop(leaseq_worker *w)
{
    if (w == NULL)
        return;
    int saved = errno; /* may run in a signal handler */
    atomic_store(&w->stop, true);
    char b = 1;
    if (write(w->wake_wr, &b, 1) < 0) {
        /* full pipe (a wake-up is pending anyway) or closed: nothing to do */
    }
    errno = saved;
}

void leaseq_worker_get_stats(const leaseq_worker *w, leaseq_worker_stats *out)
{
    if (out == NULL)
        return;
    memset(out, 0, sizeof *out);
    if (w == NULL)
        return;
    leaseq_worker *m = (leaseq_worker *)w; /* atomic loads take non-const pointers in C17 */
    out->leased = atomic_load(&m->n.leased);
    out->acked = atomic_load(&m->n.acked);
    out->nacked = atomic_load(&m->n.nacked);
    out->dead = atomic_load(&m->n.dead);
    out->released = atomic_load(&m->n.released);
    out->lease_lost = atomic_load(&m->n.lease_lost);
    out->failed = atomic_load(&m->n.failed);
    out->reconnects = atomic_load(&m->n.reconnects);
    out->heartbeats_sent = atomic_load(&m->n.hb_sent);
    out->heartbeats_skipped = atomic_load(&m->n.hb_skipped);
}

const char *leaseq_worker_last_error(const leaseq_worker *w)
{
    return w != NULL ? w->errmsg : "";
}

leaseq_err leaseq_worker_create(const leaseq_worker_opts *o, leaseq_handler_fn fn, void *ctx, leaseq_worker **out)
{
    if (out == NULL)
        return LEASEQ_E_INVALID_ARGUMENT;
    *out = NULL;
    if (o == NULL || fn == NULL || o->addr == NULL || o->worker_id == NULL || o->worker_id[0] == '\0' ||
        o->queues == NULL || o->n_queues == 0 || o->n_queues > QUEUES_MAX || o->prefetch > PREFETCH_MAX ||
        o->call_timeout_ms < 0)
        return LEASEQ_E_INVALID_ARGUMENT;
    for (size_t i = 0; i < o->n_queues; i++)
        if (o->queues[i] == NULL || o->queues[i][0] == '\0')
            return LEASEQ_E_INVALID_ARGUMENT;
    char host[256], port[16];
    bool is_unix;
    if (!lqc_addr_parse(o->addr, host, sizeof host, port, sizeof port, &is_unix))
        return LEASEQ_E_INVALID_ARGUMENT;
    uint32_t poll_wait_ms = o->poll_wait_ms ? o->poll_wait_ms : 1000;
    int call_timeout_ms = o->call_timeout_ms ? o->call_timeout_ms : 5000;
    if ((uint64_t)poll_wait_ms + (uint64_t)call_timeout_ms > INT32_MAX)
        return LEASEQ_E_INVALID_ARGUMENT;

    leaseq_worker *w = calloc(1, sizeof *w); /* owner: caller, leaseq_worker_destroy */
    if (w == NULL)
        return LEASEQ_E_NOMEM;
    w->wake_rd = w->wake_wr = -1;
    w->fn = fn;
    w->ctx = ctx;
    w->prefetch = o->prefetch ? o->prefetch : 1;
    w->heartbeat_ms = o->heartbeat_ms ? o->heartbeat_ms : 1000;
    w->lease_ms = o->lease_ms;
    w->poll_wait_ms = poll_wait_ms;
    w->call_timeout_ms = call_timeout_ms;
    w->max_payload_bytes = o->max_payload_bytes;
    atomic_init(&w->stop, false);
    atomic_init(&w->running, false);
    pthread_mutex_init(&w->hb_mu, NULL);
    pthread_condattr_t ca;
    pthread_condattr_init(&ca);
    pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    pthread_cond_init(&w->hb_cv, &ca);
    pthread_condattr_destroy(&ca);
    /* owner: worker, all freed by leaseq_worker_destroy */
    w->addr = strdup(o->addr);
    w->token = strdup(o->token != NULL ? o->token : "");
    w->client_name = strdup(o->client_name != NULL ? o->client_name : "leaseq-worker");
    w->worker_id = strdup(o->worker_id);
    w->queues = calloc(o->n_queues, sizeof *w->queues);
    bool ok = w->addr && w->token && w->client_name && w->worker_id && w->queues;
    for (size_t i = 0; ok && i < o->n_queues; i++) {
        w->queues[i] = strdup(o->queues[i]);
        ok = w->queues[i] != NULL;
        w->n_queues = i + 1;
    }
    int p[2];
    if (ok && pipe2(p, O_NONBLOCK | O_CLOEXEC) == 0) {
        w->wake_rd = p[0];
        w->wake_wr = p[1];
    } else {
        ok = false;
    }
    if (!ok) {
        leaseq_worker_destroy(w);
        return LEASEQ_E_NOMEM;
    }
    *out = w;
    return LEASEQ_OK;
}

void leaseq_worker_destroy(leaseq_worker *w)
{
    if (w == NULL)
        return;
    LQC_ASSERT(!atomic_load(&w->running));
    if (w->wake_rd >= 0)
        close(w->wake_rd);
    if (w->wake_wr >= 0)
        close(w->wake_wr);
    for (size_t i = 0; w->queues != NULL && i < w->n_queues; i++)
        free(w->queues[i]);
    free(w->queues);
    free(w->addr);
    free(w->token);
    free(w->client_name);
    free(w->worker_id);
    pthread_cond_destroy(&w->hb_cv);
    pthread_mutex_destroy(&w->hb_mu);
    free(w);
}
