/* The image pipeline: decode (a pool of CPU threads) -> process (one thread driving the
 * backend, fed by a bounded queue) -> encode (one thread), with a watchdog over the process
 * step. Several callers submit at once (one per broker session), so while the backend works on
 * one image the decoders prepare the next and the encoder finishes the previous.
 *
 * Watchdog: a process step that runs past gpu_timeout_ms marks the pipeline failed: that job
 * ends GW_JOB_GPU_TIMEOUT, every other job in flight GW_JOB_ABORTED, later submits are
 * aborted at once, and on_fatal runs (the worker stops leasing and exits non-zero). The stuck
 * thread is abandoned; only process exit ends it. */
#ifndef GW_PIPELINE_H
#define GW_PIPELINE_H

#include "backend.h"
#include "image.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef enum {
    GW_JOB_OK = 0,
    GW_JOB_DEAD,        /* the job can never succeed (corrupt, over limits, bad op): no retry */
    GW_JOB_RETRY,       /* failed here; another attempt may work */
    GW_JOB_GPU_TIMEOUT, /* the process step passed its deadline */
    GW_JOB_ABORTED,     /* the pipeline failed under it; not the job's fault */
} gw_job_status;

typedef struct {
    gw_job_status status;
    char error[256];
    const uint8_t *result; /* OK: encoded image, owned by the job (valid until gw_job_release) */
    size_t result_len;
    int out_w, out_h;
    uint64_t decode_us, process_us, encode_us;
} gw_job_outcome;

typedef struct gw_pipeline gw_pipeline;
typedef struct gw_job gw_job;

typedef struct {
    gw_backend *backend;       /* borrowed; outlives the pipeline */
    gw_limits limits;
    int decode_threads;        /* 0 = 2 */
    int process_queue_cap;     /* decoded images waiting for the backend; 0 = 2 */
    uint32_t gpu_timeout_ms;   /* 0 = 10000 */
    void (*on_fatal)(void *arg, const char *why); /* from the watchdog thread */
    void *fatal_arg;
} gw_pipeline_opts;

typedef struct {
    uint64_t ok, dead, retry, gpu_timeout, aborted;
    uint64_t decode_us, process_us, encode_us; /* sums over finished jobs */
} gw_pipeline_stats;

/* *out owned by the caller: gw_pipeline_destroy. */
bool gw_pipeline_create(const gw_pipeline_opts *opts, gw_pipeline **out, char *err, size_t err_cap);

/* Copies payload and op_spec, runs the job, and returns once it has an outcome (bounded by
 * the watchdog). NULL only when out of memory. The job is owned by the caller: gw_job_release. */
gw_job *gw_pipeline_run(gw_pipeline *p, const uint8_t *payload, size_t len, const char *op_spec);

const gw_job_outcome *gw_job_outcome_of(const gw_job *j);

/* Drops the caller's hold on j (signature fits leaseq_handler_result.release). */
void gw_job_release(void *j);

bool gw_pipeline_failed(gw_pipeline *p);
void gw_pipeline_get_stats(gw_pipeline *p, gw_pipeline_stats *out);

/* Stops and joins the stage threads and frees p. After a watchdog failure a thread may be
 * stuck in the backend for good: then nothing is joined or freed (the process is exiting). */
void gw_pipeline_destroy(gw_pipeline *p);

#endif
