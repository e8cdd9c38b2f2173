/* leaseq-gpuworker: leases image jobs, runs them through the pipeline, acks with the result.
 *
 * Threads: one leaseq_worker per broker session (--sessions), each on its own thread with the
 * library's heartbeat thread beside it; their handlers submit to the shared pipeline and block
 * until the job's outcome, so K sessions keep up to K images in flight across the decode,
 * process and encode stages. The main thread only waits for signals, the watchdog's verdict
 * and the stats timer. */
#include "backend.h"
#include "flags.h"
#include "log.h"
#include "pipeline.h"

#include "leaseq.h"

#include <errno.h>
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define EXIT_GPU_TIMEOUT 3
#define JOIN_AFTER_FATAL_MS 5000

typedef struct app app;

typedef struct {
    app *a;
    int index;
    leaseq_worker *w;
    pthread_t th;
    bool started;
    leaseq_err run_err;
    gw_job *cur;            /* the job whose ack is in flight (released in on_released) */
    uint64_t handler_end_us;
} session;

struct app {
    gw_flags f;
    gw_backend *backend;
    gw_pipeline *pipe;
    session sessions[GW_SESSIONS_MAX];
    int n_sessions;
    atomic_bool fatal;
    char fatal_why[160];      /* written once, before fatal is set */
    _Atomic uint64_t ack_us, acks;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static const char *header_of(const leaseq_lease *job, const char *key)
{
    for (size_t i = 0; i < job->n_headers; i++)
        if (strcmp(job->headers[i].key, key) == 0)
            return job->headers[i].value;
    return NULL;
}

/* After the ack or nack went out: the job's bytes are no longer needed. */
static void on_released(void *arg)
{
    session *s = arg;
    atomic_fetch_add(&s->a->ack_us, now_us() - s->handler_end_us);
    atomic_fetch_add(&s->a->acks, 1);
    gw_job_release(s->cur);
    s->cur = NULL;
}

static void on_job(void *ctx, const leaseq_lease *job, leaseq_handler_result *res)
{
    session *s = ctx;
    app *a = s->a;
    gw_job *j = gw_pipeline_run(a->pipe, job->payload, job->payload_len, header_of(job, "op"));
    if (j == NULL) {
        res->nack = true;
        res->error = "out of memory";
        return;
    }
    const gw_job_outcome *o = gw_job_outcome_of(j);
    char esc[300];
    switch (o->status) {
    case GW_JOB_OK:
        res->result = o->result;
        res->result_len = o->result_len;
        break;
    case GW_JOB_DEAD:
        res->nack = res->dead = true;
        res->error = o->error;
        gw_log("warn", "job dead", "job=%llu attempt=%u error=\"%s\"", (unsigned long long)job->job_id,
               job->attempt, gw_log_esc(esc, sizeof esc, o->error));
        break;
    case GW_JOB_RETRY:
        res->nack = true;
        res->error = o->error;
        gw_log("warn", "job failed", "job=%llu attempt=%u error=\"%s\"", (unsigned long long)job->job_id,
               job->attempt, gw_log_esc(esc, sizeof esc, o->error));
        break;
    case GW_JOB_GPU_TIMEOUT:
    case GW_JOB_ABORTED:
        /* Not the job's fault: straight back to its lane for another worker. */
        res->nack = true;
        res->error = o->status == GW_JOB_GPU_TIMEOUT ? "gpu timeout" : o->error;
        res->delay_set = true;
        res->delay_ms = 0;
        gw_log("error", "job given back", "job=%llu error=\"%s\"", (unsigned long long)job->job_id,
               gw_log_esc(esc, sizeof esc, res->error));
        break;
    }
    s->cur = j;
    s->handler_end_us = now_us();
    res->release = on_released;
    res->release_arg = s;
    if (atomic_load(&a->fatal))
        leaseq_worker_stop(s->w);
}

static void on_fatal(void *arg, const char *why)
{
    app *a = arg;
    snprintf(a->fatal_why, sizeof a->fatal_why, "%s", why);
    atomic_store(&a->fatal, true);
    for (int i = 0; i < a->n_sessions; i++)
        leaseq_worker_stop(a->sessions[i].w);
}

static void *session_main(void *arg)
{
    session *s = arg;
    s->run_err = leaseq_worker_run(s->w);
    return NULL;
}

static void log_stats(app *a, double secs, gw_pipeline_stats *prev, uint64_t *prev_ack_us, uint64_t *prev_acks)
{
    gw_pipeline_stats st;
    gw_pipeline_get_stats(a->pipe, &st);
    uint64_t ack_us = atomic_load(&a->ack_us), acks = atomic_load(&a->acks);
    uint64_t jobs = (st.ok + st.dead + st.retry + st.gpu_timeout + st.aborted) -
                    (prev->ok + prev->dead + prev->retry + prev->gpu_timeout + prev->aborted);
    double d = jobs > 0 ? (double)jobs * 1000.0 : 1.0;
    double nack = acks > *prev_acks ? (double)(acks - *prev_acks) * 1000.0 : 1.0;
    leaseq_worker_stats ws = {0}, one;
    for (int i = 0; i < a->n_sessions; i++) {
        leaseq_worker_get_stats(a->sessions[i].w, &one);
        ws.leased += one.leased;
        ws.acked += one.acked;
        ws.nacked += one.nacked;
        ws.lease_lost += one.lease_lost;
        ws.reconnects += one.reconnects;
    }
    gw_log("info", "stats",
           "backend=%s jobs=%llu jobs_per_s=%.1f ok=%llu dead=%llu retry=%llu decode_ms=%.2f process_ms=%.2f "
           "encode_ms=%.2f ack_ms=%.2f leased_total=%llu acked_total=%llu nacked_total=%llu lease_lost_total=%llu "
           "reconnects_total=%llu",
           a->backend->name, (unsigned long long)jobs, secs > 0 ? (double)jobs / secs : 0.0,
           (unsigned long long)(st.ok - prev->ok), (unsigned long long)(st.dead - prev->dead),
           (unsigned long long)(st.retry - prev->retry), (double)(st.decode_us - prev->decode_us) / d,
           (double)(st.process_us - prev->process_us) / d, (double)(st.encode_us - prev->encode_us) / d,
           (double)(ack_us - *prev_ack_us) / nack, (unsigned long long)ws.leased, (unsigned long long)ws.acked,
           (unsigned long long)ws.nacked, (unsigned long long)ws.lease_lost, (unsigned long long)ws.reconnects);
    *prev = st;
    *prev_ack_us = ack_us;
    *prev_acks = acks;
}

static gw_backend *open_backend(const gw_flags *f)
{
    char err[256] = "";
    gw_backend *b = NULL;
    if (f->backend != GW_BACKEND_CPU) {
        if (!gw_cuda_compiled()) {
            snprintf(err, sizeof err, "this binary was built without CUDA (no nvcc at build time)");
        } else {
            b = gw_backend_cuda_open(f->device, err, sizeof err);
        }
        if (b == NULL && f->backend == GW_BACKEND_CUDA) {
            gw_log("error", "cuda backend unavailable", "error=\"%s\"", err);
            return NULL;
        }
        if (b == NULL)
            gw_log("info", "no usable GPU, using the cpu backend", "reason=\"%s\"", err);
    }
    if (b == NULL && (b = gw_backend_cpu_open(f->threads, err, sizeof err)) == NULL)
        gw_log("error", "cpu backend failed", "error=\"%s\"", err);
    return b;
}

static bool start_sessions(app *a)
{
    const char *queues[GW_QUEUES_MAX];
    for (int i = 0; i < a->f.n_queues; i++)
        queues[i] = a->f.queues[i];
    a->n_sessions = a->f.sessions;
    for (int i = 0; i < a->n_sessions; i++) {
        session *s = &a->sessions[i];
        s->a = a;
        s->index = i;
        char id[160];
        if (a->n_sessions > 1)
            snprintf(id, sizeof id, "%s/%d", a->f.worker_id, i);
        else
            snprintf(id, sizeof id, "%s", a->f.worker_id);
        leaseq_worker_opts o = {.addr = a->f.addr,
                                .token = a->f.token,
                                .client_name = "leaseq-gpuworker",
                                .worker_id = id,
                                .queues = queues,
                                .n_queues = (size_t)a->f.n_queues,
                                .prefetch = a->f.prefetch,
                                .heartbeat_ms = a->f.heartbeat_ms,
                                .lease_ms = a->f.lease_ms};
        leaseq_err e = leaseq_worker_create(&o, on_job, s, &s->w);
        if (e != LEASEQ_OK) {
            gw_log("error", "worker create failed", "error=%s", leaseq_strerror(e));
            return false;
        }
    }
    for (int i = 0; i < a->n_sessions; i++) {
        session *s = &a->sessions[i];
        s->started = pthread_create(&s->th, NULL, session_main, s) == 0;
        if (!s->started) {
            gw_log("error", "thread create failed", "session=%d", i);
            return false;
        }
    }
    return true;
}

int main(int argc, char **argv)
{
    static app a; /* big (sessions); static so it is not on the stack */
    char err[512];
    if (!gw_flags_parse(argc, argv, &a.f, err, sizeof err)) {
        if (err[0] != '\0')
            fprintf(stderr, "leaseq-gpuworker: %s\n", err);
        gw_flags_usage(stderr);
        return err[0] != '\0' ? 2 : 0;
    }
    if (a.f.lanes != NULL)
        gw_log("warn", "--lanes ignored: lanes are set per queue on the broker (leaseqd --lanes)",
               "lanes=\"%s\"", a.f.lanes);
    /* Signals go to the main thread only (sigtimedwait below); every thread made from here on
     * inherits the block. */
    sigset_t sigs;
    sigemptyset(&sigs);
    sigaddset(&sigs, SIGINT);
    sigaddset(&sigs, SIGTERM);
    pthread_sigmask(SIG_BLOCK, &sigs, NULL);
    signal(SIGPIPE, SIG_IGN);

    int rc = 1;
    a.backend = open_backend(&a.f);
    if (a.backend == NULL)
        return 2;
    a.backend->hang_after = a.f.inject_hang_after;
    gw_pipeline_opts po = {.backend = a.backend,
                           .decode_threads = a.f.decode_threads,
                           .gpu_timeout_ms = a.f.gpu_timeout_ms,
                           .on_fatal = on_fatal,
                           .fatal_arg = &a};
    gw_limits_default(&po.limits);
    if (a.f.max_pixels > 0)
        po.limits.max_pixels = a.f.max_pixels;
    if (!gw_pipeline_create(&po, &a.pipe, err, sizeof err)) {
        gw_log("error", "pipeline failed", "error=\"%s\"", err);
        a.backend->close(a.backend);
        return 2;
    }
    gw_log("info", "started",
           "backend=%s device=\"%s\" addr=%s queue=%s sessions=%d prefetch=%u heartbeat_ms=%u gpu_timeout_ms=%u "
           "max_pixels=%llu inject_hang_after=%lld worker_id=%s",
           a.backend->name, a.backend->device_name, a.f.addr, a.f.queues[0], a.f.sessions, a.f.prefetch,
           a.f.heartbeat_ms, a.f.gpu_timeout_ms, (unsigned long long)po.limits.max_pixels,
           (long long)a.f.inject_hang_after, a.f.worker_id);
    gw_pipeline_stats prev = {0};
    uint64_t prev_ack_us = 0, prev_acks = 0, last_stats = now_us();
    bool stopping = false;
    if (!start_sessions(&a)) {
        on_fatal(&a, "start failed");
        goto out;
    }
    int live = a.n_sessions;
    while (live > 0) {
        struct timespec tick = {.tv_sec = 0, .tv_nsec = 100 * 1000000L};
        int sig = sigtimedwait(&sigs, NULL, &tick);
        if (sig > 0 && !stopping) {
            gw_log("info", "stopping", "signal=%d", sig);
            stopping = true;
            for (int i = 0; i < a.n_sessions; i++)
                leaseq_worker_stop(a.sessions[i].w);
        }
        if (atomic_load(&a.fatal))
            break;
        uint64_t now = now_us();
        if (a.f.stats_ms > 0 && now - last_stats >= (uint64_t)a.f.stats_ms * 1000u) {
            log_stats(&a, (double)(now - last_stats) / 1e6, &prev, &prev_ack_us, &prev_acks);
            last_stats = now;
        }
        live = 0;
        for (int i = 0; i < a.n_sessions; i++)
            if (a.sessions[i].started && pthread_tryjoin_np(a.sessions[i].th, NULL) == EBUSY)
                live++;
            else
                a.sessions[i].started = false;
    }
out:
    if (atomic_load(&a.fatal)) {
        /* Let the sessions send their nacks and give prefetched jobs back, then go: the
         * backend thread may never return, so nothing is joined with it or freed. */
        gw_log("error", "pipeline failed: stopping leasing and exiting for a restart", "reason=\"%s\"", a.fatal_why);
        struct timespec until;
        clock_gettime(CLOCK_REALTIME, &until);
        until.tv_sec += JOIN_AFTER_FATAL_MS / 1000;
        for (int i = 0; i < a.n_sessions; i++)
            if (a.sessions[i].started)
                pthread_timedjoin_np(a.sessions[i].th, NULL, &until);
        log_stats(&a, 0, &prev, &prev_ack_us, &prev_acks);
        fflush(stderr);
        _exit(EXIT_GPU_TIMEOUT);
    }
    rc = 0;
    for (int i = 0; i < a.n_sessions; i++)
        if (a.sessions[i].run_err != LEASEQ_OK) {
            gw_log("error", "session ended", "session=%d error=%s", i, leaseq_strerror(a.sessions[i].run_err));
            rc = 1;
        }
    log_stats(&a, (double)(now_us() - last_stats) / 1e6, &prev, &prev_ack_us, &prev_acks);
    for (int i = 0; i < a.n_sessions; i++)
        leaseq_worker_destroy(a.sessions[i].w);
    gw_pipeline_destroy(a.pipe);
    a.backend->close(a.backend);
    gw_log("info", "stopped", "rc=%d", rc);
    return rc;
}
