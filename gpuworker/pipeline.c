/* Stage threads, bounded queues and the watchdog of the image pipeline (pipeline.h).
 *
 * One mutex guards every queue, every job's `done` and `refs`, and the watchdog's view of the
 * process stage; no stage holds it while decoding, processing or encoding. A job has two
 * holders: the caller (until gw_job_release) and the pipeline (until the encoder or an early
 * failure lets go of it); the last one frees it, so a job the watchdog gave up on stays valid
 * for a backend that comes back late. */
#include "pipeline.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define DECODE_THREADS_MAX 16
#define QUEUE_CAP_MAX 256
#define IDLE_WAIT_MS 200         /* stage threads re-check quit this often while idle */
#define GPU_TIMEOUT_DEFAULT_MS 10000
#define WATCHDOG_PERIOD_MAX_MS 100

struct gw_job {
    int refs;                 /* guarded by p->mu */
    bool done;                /* guarded by p->mu */
    gw_job *next_all, *prev_all; /* the pipeline's list of jobs in flight */
    gw_pipeline *p;
    uint8_t *payload;         /* owner: job */
    size_t payload_len;
    char spec[GW_OP_SPEC_MAX];
    gw_plan plan;
    gw_format in_fmt;
    gw_image in, out;         /* owner: job (freed as the stages finish with them) */
    uint8_t *encoded;         /* owner: job; outcome.result points here */
    gw_job_outcome o;
};

typedef struct {
    gw_job *items[QUEUE_CAP_MAX];
    int head, len, cap;
    pthread_cond_t not_empty, not_full;
} queue;

struct gw_pipeline {
    gw_pipeline_opts opts;
    pthread_mutex_t mu;
    pthread_cond_t done_cv;   /* a job got its outcome */
    pthread_cond_t wd_cv;     /* wakes the watchdog to quit */
    queue decode_q, process_q, encode_q;
    gw_job *all;              /* jobs the pipeline still holds */
    bool quit, fatal;
    gw_job *busy_job;         /* in the backend now, since busy_since_ms */
    uint64_t busy_since_ms;
    pthread_t decoders[DECODE_THREADS_MAX], processor, encoder, watchdog;
    int n_decoders;
    bool processor_started, encoder_started, watchdog_started;
    struct {
        _Atomic uint64_t ok, dead, retry, gpu_timeout, aborted, decode_us, process_us, encode_us;
    } st;
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

/* Absolute CLOCK_MONOTONIC deadline ms from now (condvars are created with that clock). */
static struct timespec deadline_in(uint32_t ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    ts.tv_sec += ms / 1000u;
    ts.tv_nsec += (long)(ms % 1000u) * 1000000L;
    if (ts.tv_nsec >= 1000000000L) {
        ts.tv_sec++;
        ts.tv_nsec -= 1000000000L;
    }
    return ts;
}

static void cond_init_mono(pthread_cond_t *c)
{
    pthread_condattr_t a;
    pthread_condattr_init(&a);
    pthread_condattr_setclock(&a, CLOCK_MONOTONIC);
    pthread_cond_init(c, &a);
    pthread_condattr_destroy(&a);
}

/* ---- queues (p->mu held) --------------------------------------------------------------------- */

static void queue_init(queue *q, int cap)
{
    memset(q, 0, sizeof *q);
    q->cap = cap < 1 ? 1 : cap > QUEUE_CAP_MAX ? QUEUE_CAP_MAX : cap;
    cond_init_mono(&q->not_empty);
    cond_init_mono(&q->not_full);
}

/* Waits for room; false when the pipeline quits or fails first. */
static bool queue_push(gw_pipeline *p, queue *q, gw_job *j)
{
    while (q->len == q->cap && !p->quit && !p->fatal) {
        struct timespec ts = deadline_in(IDLE_WAIT_MS);
        pthread_cond_timedwait(&q->not_full, &p->mu, &ts);
    }
    if (p->quit || p->fatal)
        return false;
    q->items[(q->head + q->len) % q->cap] = j;
    q->len++;
    pthread_cond_signal(&q->not_empty);
    return true;
}

/* Waits for a job; NULL when the pipeline quits or fails. */
static gw_job *queue_pop(gw_pipeline *p, queue *q)
{
    while (q->len == 0 && !p->quit && !p->fatal) {
        struct timespec ts = deadline_in(IDLE_WAIT_MS);
        pthread_cond_timedwait(&q->not_empty, &p->mu, &ts);
    }
    if (p->quit || p->fatal)
        return NULL;
    gw_job *j = q->items[q->head];
    q->head = (q->head + 1) % q->cap;
    q->len--;
    pthread_cond_signal(&q->not_full);
    return j;
}

/* ---- jobs -------------------------------------------------------------------------------------- */

static void job_free(gw_job *j)
{
    gw_image_free(&j->in);
    gw_image_free(&j->out);
    free(j->encoded);
    free(j->payload);
    free(j);
}

/* p->mu held. Drops one hold; the pipeline's hold also takes the job off the in-flight list. */
static void job_put_locked(gw_job *j, bool pipeline_hold)
{
    gw_pipeline *p = j->p;
    if (pipeline_hold) {
        if (j->prev_all)
            j->prev_all->next_all = j->next_all;
        else
            p->all = j->next_all;
        if (j->next_all)
            j->next_all->prev_all = j->prev_all;
        j->next_all = j->prev_all = NULL;
    }
    if (--j->refs == 0)
        job_free(j);
}

static void count_outcome(gw_pipeline *p, const gw_job_outcome *o)
{
    _Atomic uint64_t *c = o->status == GW_JOB_OK            ? &p->st.ok
                          : o->status == GW_JOB_DEAD        ? &p->st.dead
                          : o->status == GW_JOB_RETRY       ? &p->st.retry
                          : o->status == GW_JOB_GPU_TIMEOUT ? &p->st.gpu_timeout
                                                            : &p->st.aborted;
    atomic_fetch_add(c, 1);
    atomic_fetch_add(&p->st.decode_us, o->decode_us);
    atomic_fetch_add(&p->st.process_us, o->process_us);
    atomic_fetch_add(&p->st.encode_us, o->encode_us);
}

/* p->mu held. The first outcome wins (the watchdog may race a stage). */
static void finish_locked(gw_job *j, gw_job_status st, const char *error)
{
    if (j->done)
        return;
    j->o.status = st;
    if (error != NULL)
        snprintf(j->o.error, sizeof j->o.error, "%s", error);
    j->done = true;
    count_outcome(j->p, &j->o);
    pthread_cond_broadcast(&j->p->done_cv);
}

/* A stage is done with j: give it its outcome and drop the pipeline's hold. */
static void finish(gw_job *j, gw_job_status st, const char *error)
{
    gw_pipeline *p = j->p;
    pthread_mutex_lock(&p->mu);
    finish_locked(j, st, error);
    job_put_locked(j, true);
    pthread_mutex_unlock(&p->mu);
}

/* p->mu held. The pipeline cannot go on: every job in flight gets an outcome now (`cur` the
 * given one, the rest ABORTED with `others`), every stage is woken to let go, and later submits are refused. */
static void fail_locked(gw_pipeline *p, gw_job *cur, gw_job_status st, const char *error, const char *others)
{
    p->fatal = true;
    if (cur != NULL)
        finish_locked(cur, st, error);
    for (gw_job *j = p->all; j != NULL; j = j->next_all)
        finish_locked(j, GW_JOB_ABORTED, others);
    pthread_cond_broadcast(&p->decode_q.not_empty);
    pthread_cond_broadcast(&p->decode_q.not_full);
    pthread_cond_broadcast(&p->process_q.not_empty);
    pthread_cond_broadcast(&p->process_q.not_full);
    pthread_cond_broadcast(&p->encode_q.not_empty);
    pthread_cond_broadcast(&p->encode_q.not_full);
    pthread_cond_broadcast(&p->wd_cv);
}

/* ---- stages ------------------------------------------------------------------------------------ */

static void *decode_main(void *arg)
{
    gw_pipeline *p = arg;
    char err[256];
    pthread_mutex_lock(&p->mu);
    for (gw_job *j; (j = queue_pop(p, &p->decode_q)) != NULL;) {
        pthread_mutex_unlock(&p->mu);
        uint64_t t0 = now_us();
        bool ok = gw_plan_parse(j->spec, &j->plan, err, sizeof err) &&
                  gw_decode(j->payload, j->payload_len, &p->opts.limits, &j->in, &j->in_fmt, err, sizeof err) &&
                  gw_plan_resolve(&j->plan, j->in_fmt, j->in.w, j->in.h, &p->opts.limits, err, sizeof err);
        j->o.decode_us = now_us() - t0;
        free(j->payload); /* the decoded image replaces it */
        j->payload = NULL;
        if (!ok) {
            finish(j, GW_JOB_DEAD, err);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        pthread_mutex_lock(&p->mu);
        if (!queue_push(p, &p->process_q, j)) {
            finish_locked(j, GW_JOB_ABORTED, "worker stopping");
            job_put_locked(j, true);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *process_main(void *arg)
{
    gw_pipeline *p = arg;
    char err[256];
    gw_backend *b = p->opts.backend;
    pthread_mutex_lock(&p->mu);
    for (gw_job *j; (j = queue_pop(p, &p->process_q)) != NULL;) {
        uint64_t t0 = now_us();
        p->busy_job = j;
        p->busy_since_ms = t0 / 1000u;
        pthread_mutex_unlock(&p->mu);
        gw_image out;
        bool ok = b->process(b, &j->plan, &j->in, &out, err, sizeof err);
        uint64_t took = now_us() - t0;
        pthread_mutex_lock(&p->mu);
        p->busy_job = NULL;
        if (p->fatal) { /* the watchdog gave up on us meanwhile: j already has its outcome */
            if (ok)
                gw_image_free(&out);
            job_put_locked(j, true);
            break;
        }
        if (!ok && b->broken) { /* e.g. a sticky CUDA error: every later job would fail too */
            fail_locked(p, j, GW_JOB_RETRY, err, "worker stopping: backend failed");
            job_put_locked(j, true);
            pthread_mutex_unlock(&p->mu);
            char why[300];
            snprintf(why, sizeof why, "%s backend broken: %s", b->name, err);
            if (p->opts.on_fatal != NULL)
                p->opts.on_fatal(p->opts.fatal_arg, why);
            pthread_mutex_lock(&p->mu);
            break;
        }
        pthread_mutex_unlock(&p->mu);
        j->o.process_us = took;
        gw_image_free(&j->in);
        if (!ok) {
            finish(j, GW_JOB_RETRY, err);
            pthread_mutex_lock(&p->mu);
            continue;
        }
        j->out = out;
        pthread_mutex_lock(&p->mu);
        if (!queue_push(p, &p->encode_q, j)) {
            finish_locked(j, GW_JOB_ABORTED, "worker stopping");
            job_put_locked(j, true);
        }
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *encode_main(void *arg)
{
    gw_pipeline *p = arg;
    char err[256];
    pthread_mutex_lock(&p->mu);
    for (gw_job *j; (j = queue_pop(p, &p->encode_q)) != NULL;) {
        pthread_mutex_unlock(&p->mu);
        uint64_t t0 = now_us();
        gw_plan_output_flags(&j->plan, j->in.has_alpha, j->in.gray, &j->out.has_alpha, &j->out.gray);
        size_t len = 0;
        bool ok = gw_encode(&j->out, j->plan.out_format, j->plan.jpeg_quality, &j->encoded, &len, err, sizeof err);
        j->o.encode_us = now_us() - t0;
        j->o.out_w = j->out.w;
        j->o.out_h = j->out.h;
        gw_image_free(&j->out);
        if (ok) {
            j->o.result = j->encoded;
            j->o.result_len = len;
        }
        finish(j, ok ? GW_JOB_OK : GW_JOB_RETRY, ok ? NULL : err);
        pthread_mutex_lock(&p->mu);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void *watchdog_main(void *arg)
{
    gw_pipeline *p = arg;
    uint32_t limit = p->opts.gpu_timeout_ms;
    uint32_t period = limit / 4 < WATCHDOG_PERIOD_MAX_MS ? limit / 4 : WATCHDOG_PERIOD_MAX_MS;
    if (period < 5)
        period = 5;
    char why[160] = "";
    pthread_mutex_lock(&p->mu);
    while (!p->quit && !p->fatal) {
        struct timespec ts = deadline_in(period);
        pthread_cond_timedwait(&p->wd_cv, &p->mu, &ts);
        if (p->fatal || p->busy_job == NULL || now_us() / 1000u - p->busy_since_ms <= limit)
            continue;
        snprintf(why, sizeof why, "gpu timeout: %s step ran past %u ms", p->opts.backend->name, limit);
        fail_locked(p, p->busy_job, GW_JOB_GPU_TIMEOUT, "gpu timeout", "worker stopping: gpu timeout");
    }
    pthread_mutex_unlock(&p->mu);
    if (why[0] != '\0' && p->opts.on_fatal != NULL)
        p->opts.on_fatal(p->opts.fatal_arg, why);
    return NULL;
}

/* ---- public face ------------------------------------------------------------------------------- */

gw_job *gw_pipeline_run(gw_pipeline *p, const uint8_t *payload, size_t len, const char *op_spec)
{
    gw_job *j = calloc(1, sizeof *j); /* owner: caller + pipeline (refs) */
    if (j == NULL)
        return NULL;
    j->payload = malloc(len > 0 ? len : 1); /* owner: j; a copy, the lease's bytes die with the call */
    if (j->payload == NULL) {
        free(j);
        return NULL;
    }
    memcpy(j->payload, payload, len);
    j->payload_len = len;
    j->p = p;
    j->refs = 2;
    if (op_spec != NULL && strlen(op_spec) < sizeof j->spec)
        strcpy(j->spec, op_spec);
    else if (op_spec != NULL)
        strcpy(j->spec, "?too-long?"); /* fails parsing with a clear message */
    pthread_mutex_lock(&p->mu);
    j->next_all = p->all;
    if (p->all)
        p->all->prev_all = j;
    p->all = j;
    if (!queue_push(p, &p->decode_q, j)) {
        finish_locked(j, GW_JOB_ABORTED, p->fatal ? "worker stopping: gpu timeout" : "worker stopping");
        job_put_locked(j, true);
    }
    while (!j->done) {
        /* bounded by the watchdog: every stage but the backend is plain CPU work */
        struct timespec ts = deadline_in(IDLE_WAIT_MS);
        pthread_cond_timedwait(&p->done_cv, &p->mu, &ts);
    }
    pthread_mutex_unlock(&p->mu);
    return j;
}

const gw_job_outcome *gw_job_outcome_of(const gw_job *j)
{
    return &j->o;
}

void gw_job_release(void *arg)
{
    gw_job *j = arg;
    if (j == NULL)
        return;
    gw_pipeline *p = j->p;
    pthread_mutex_lock(&p->mu);
    job_put_locked(j, false);
    pthread_mutex_unlock(&p->mu);
}

bool gw_pipeline_failed(gw_pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    bool f = p->fatal;
    pthread_mutex_unlock(&p->mu);
    return f;
}

void gw_pipeline_get_stats(gw_pipeline *p, gw_pipeline_stats *o)
{
    o->ok = atomic_load(&p->st.ok);
    o->dead = atomic_load(&p->st.dead);
    o->retry = atomic_load(&p->st.retry);
    o->gpu_timeout = atomic_load(&p->st.gpu_timeout);
    o->aborted = atomic_load(&p->st.aborted);
    o->decode_us = atomic_load(&p->st.decode_us);
    o->process_us = atomic_load(&p->st.process_us);
    o->encode_us = atomic_load(&p->st.encode_us);
}

static void stop_threads(gw_pipeline *p)
{
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->wd_cv);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_decoders; i++)
        pthread_join(p->decoders[i], NULL);
    if (p->processor_started)
        pthread_join(p->processor, NULL);
    if (p->encoder_started)
        pthread_join(p->encoder, NULL);
    if (p->watchdog_started)
        pthread_join(p->watchdog, NULL);
}

void gw_pipeline_destroy(gw_pipeline *p)
{
    if (p == NULL || gw_pipeline_failed(p))
        return; /* a stage may be stuck in the backend: leave it all to process exit */
    stop_threads(p);
    /* Jobs still queued were submitted by callers that have their outcome by now. */
    pthread_mutex_lock(&p->mu);
    while (p->all != NULL) {
        finish_locked(p->all, GW_JOB_ABORTED, "worker stopping");
        job_put_locked(p->all, true);
    }
    pthread_mutex_unlock(&p->mu);
    pthread_mutex_destroy(&p->mu);
    free(p);
}

bool gw_pipeline_create(const gw_pipeline_opts *opts, gw_pipeline **out, char *err, size_t err_cap)
{
    *out = NULL;
    gw_pipeline *p = calloc(1, sizeof *p); /* owner: caller (gw_pipeline_destroy) */
    if (p == NULL) {
        snprintf(err, err_cap, "out of memory");
        return false;
    }
    p->opts = *opts;
    if (p->opts.decode_threads <= 0)
        p->opts.decode_threads = 2;
    if (p->opts.decode_threads > DECODE_THREADS_MAX)
        p->opts.decode_threads = DECODE_THREADS_MAX;
    if (p->opts.gpu_timeout_ms == 0)
        p->opts.gpu_timeout_ms = GPU_TIMEOUT_DEFAULT_MS;
    pthread_mutex_init(&p->mu, NULL);
    cond_init_mono(&p->done_cv);
    cond_init_mono(&p->wd_cv);
    queue_init(&p->decode_q, QUEUE_CAP_MAX);
    queue_init(&p->process_q, p->opts.process_queue_cap > 0 ? p->opts.process_queue_cap : 2);
    queue_init(&p->encode_q, QUEUE_CAP_MAX);
    for (int i = 0; i < p->opts.decode_threads; i++) {
        if (pthread_create(&p->decoders[i], NULL, decode_main, p) != 0)
            break;
        p->n_decoders++;
    }
    p->processor_started = pthread_create(&p->processor, NULL, process_main, p) == 0;
    p->encoder_started = pthread_create(&p->encoder, NULL, encode_main, p) == 0;
    p->watchdog_started = pthread_create(&p->watchdog, NULL, watchdog_main, p) == 0;
    if (p->n_decoders == 0 || !p->processor_started || !p->encoder_started || !p->watchdog_started) {
        snprintf(err, err_cap, "could not start the pipeline threads");
        stop_threads(p);
        free(p);
        return false;
    }
    *out = p;
    return true;
}
