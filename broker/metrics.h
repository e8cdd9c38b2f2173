/* Counters and histograms of the server for /metrics (server_http.c renders them). Every update
 * is O(1) (a histogram: a scan of at most LQ_HIST_BUCKETS bounds); rendering happens on demand.
 * Per-lane job totals live in the core (lq_core_inspect); what only the server sees lives here. */
#ifndef LQ_METRICS_H
#define LQ_METRICS_H

#include <stdint.h>

#define LQ_HIST_BUCKETS 16

typedef struct {
    const double *bounds;        /* upper bounds in seconds, ascending; n of them */
    uint32_t n;
    uint64_t counts[LQ_HIST_BUCKETS + 1]; /* per bucket (not cumulative); [n] = +Inf */
    double sum;
    uint64_t count;
} lq_hist;

static inline void lq_hist_observe(lq_hist *h, double v)
{
    uint32_t i = 0;
    while (i < h->n && v > h->bounds[i])
        i++;
    h->counts[i]++;
    h->sum += v;
    h->count++;
}

typedef struct {
    uint64_t requeues[5];        /* by lq_requeue_reason (1..4) */
    uint64_t nacked;
    uint64_t conns_accepted;
    uint64_t auth_failures;      /* hellos with an unknown token */
    uint64_t permission_denied;
    uint64_t purges, drains_done;
    lq_hist commit_seconds;      /* one group commit (committer thread, reaped by the loop) */
    lq_hist queue_wait_seconds;  /* enqueue to lease, per lease granted */
    lq_hist lease_seconds;       /* lease to ack or nack */
} lq_metrics;

/* Sets the bucket bounds (call once). */
void lq_metrics_init(lq_metrics *m);

#endif
