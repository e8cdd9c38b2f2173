/* Shared fixture of the core unit tests (test_core_*.c): a core with its event list, and
 * short-hands to enqueue, open sessions, lease, park and read lane stats. Header-only, static
 * inline, so each cmocka binary takes what it uses. */
#ifndef LQ_TEST_CORE_FIXTURE_H
#define LQ_TEST_CORE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/core.h"

typedef struct {
    lq_core *c;
    lq_events ev;
} fx;

static inline fx *fx_new_cfg(const lq_core_config *cfg)
{
    fx *f = calloc(1, sizeof *f);
    assert_non_null(f);
    assert_int_equal(lq_core_create(cfg, &f->c), LQ_OK);
    lq_events_init(&f->ev);
    return f;
}

static inline fx *fx_new(void)
{
    lq_core_config cfg;
    lq_core_config_default(&cfg);
    cfg.seed = 42;
    return fx_new_cfg(&cfg);
}

static inline void fx_free(fx *f)
{
    lq_core_check(f->c);
    lq_core_destroy(f->c);
    lq_events_free(&f->ev);
    free(f);
}

static inline size_t count_ev(const fx *f, lq_ev_type t)
{
    size_t n = 0;
    for (size_t i = 0; i < f->ev.n; i++)
        n += f->ev.v[i].type == t;
    return n;
}

static inline const lq_ev *find_ev(const fx *f, lq_ev_type t, uint64_t job_id)
{
    for (size_t i = 0; i < f->ev.n; i++)
        if (f->ev.v[i].type == t && (job_id == 0 || f->ev.v[i].job_id == job_id))
            return &f->ev.v[i];
    return NULL;
}

static inline bool str_is(lq_str s, const char *c) { return lq_str_eq(s, lq_str_c(c)); }

typedef struct {
    const char *lane, *tenant;
    int64_t priority;
    uint64_t delay_ms, deadline_ms;
    uint32_t max_attempts;
} enq_opts;

/* Enqueues without committing; returns the id. */
static inline uint64_t enq_pending(fx *f, uint64_t now, const char *queue, const enq_opts *o)
{
    lq_enqueue_req r = {.queue = lq_str_c(queue), .payload_len = 100};
    if (o) {
        r.lane = lq_str_c(o->lane);
        r.tenant = lq_str_c(o->tenant);
        r.priority = o->priority;
        r.delay_ms = o->delay_ms;
        r.deadline_ms = o->deadline_ms;
        r.max_attempts = o->max_attempts;
    }
    uint64_t id = 0;
    assert_int_equal(lq_core_enqueue(f->c, now, &r, &id, &f->ev), LQ_OK);
    assert_true(id > 0);
    return id;
}

static inline uint64_t enq(fx *f, uint64_t now, const char *queue, const enq_opts *o)
{
    uint64_t id = enq_pending(f, now, queue, o);
    lq_core_commit_done(f->c, now, id, true, &f->ev);
    return id;
}

static inline uint32_t session(fx *f, uint64_t now, uint32_t heartbeat_ms)
{
    lq_session_opts o = {.worker_id = lq_str_c("w"), .heartbeat_ms = heartbeat_ms};
    uint32_t s = 0;
    assert_int_equal(lq_core_session_open(f->c, now, &o, &s), LQ_OK);
    assert_true(s > 0);
    return s;
}

static inline uint32_t deq_opt(fx *f, uint64_t now, uint32_t s, const char *queue, uint32_t max, uint32_t lease_ms,
                        lq_lease *out)
{
    lq_str q = lq_str_c(queue);
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .max_jobs = max, .lease_ms = lease_ms, .session = s};
    uint32_t n = 99;
    bool parked = true;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, &parked, &f->ev), LQ_OK);
    assert_false(parked);
    assert_true(n <= (max ? max : 1));
    return n;
}

static inline uint32_t deq(fx *f, uint64_t now, uint32_t s, const char *queue, uint32_t max, lq_lease *out)
{
    return deq_opt(f, now, s, queue, max, 0, out);
}

/* Leases exactly one job and returns it. */
static inline lq_lease lease1(fx *f, uint64_t now, uint32_t s, const char *queue)
{
    lq_lease l;
    assert_int_equal(deq(f, now, s, queue, 1, &l), 1);
    return l;
}

static inline void park(fx *f, uint64_t now, uint32_t s, const char *queue, uint32_t max, uint32_t wait_ms, uint64_t waiter)
{
    lq_str q = lq_str_c(queue);
    lq_dequeue_req r = {.queues = &q, .n_queues = 1, .max_jobs = max, .wait_ms = wait_ms, .session = s, .waiter = waiter};
    lq_lease out[LQ_DEQUEUE_MAX];
    uint32_t n = 99;
    bool parked = false;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &n, &parked, &f->ev), LQ_OK);
    assert_int_equal(n, 0);
    assert_true(parked);
}

typedef struct {
    lq_lane_stats s[8];
    char names[8][64];
    int n;
} stats_acc;

static inline void stats_cb(void *ctx, const lq_lane_stats *s)
{
    stats_acc *a = ctx;
    assert_true(a->n < 8);
    a->s[a->n] = *s;
    snprintf(a->names[a->n], sizeof a->names[0], "%.*s/%.*s", (int)s->queue.len, s->queue.ptr, (int)s->lane.len,
             s->lane.ptr);
    a->n++;
}

static inline lq_lane_stats lane_stats(fx *f, const char *queue, const char *lane)
{
    stats_acc a = {0};
    assert_int_equal(lq_core_stats(f->c, lq_str_c(queue), stats_cb, &a), LQ_OK);
    for (int i = 0; i < a.n; i++)
        if (str_is(a.s[i].lane, lane))
            return a.s[i];
    fail_msg("no lane %s in %s", lane, queue);
    return a.s[0];
}

#endif /* LQ_TEST_CORE_FIXTURE_H */
