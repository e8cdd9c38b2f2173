/* Unit tests of parked dequeues that name several queues: an earlier waiter keeps its claim on
 * every queue it waits on, so a later waiter parked on more queues cannot take its job (the
 * simulator found this with seed 1: arrival order must hold per queue, not only per list). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include <cmocka.h>

#define FX_SEED 11
#include "core_session_fx.h"

static void park(fx *f, uint64_t now, uint64_t waiter, const char *const *queues, uint32_t n)
{
    lq_str qs[4];
    for (uint32_t i = 0; i < n; i++)
        qs[i] = lq_str_c(queues[i]);
    lq_dequeue_req r = {.queues = qs, .n_queues = n, .max_jobs = 1, .wait_ms = 10000, .session = f->session,
                        .waiter = waiter};
    lq_lease out[1];
    uint32_t got = 0;
    bool parked = false;
    assert_int_equal(lq_core_dequeue(f->c, now, &r, out, &got, &parked, &f->ev), LQ_OK);
    assert_int_equal(got, 0);
    assert_true(parked);
}

static uint64_t put(fx *f, uint64_t now, const char *q)
{
    lq_enqueue_req r = {.queue = lq_str_c(q)};
    uint64_t id = 0;
    assert_int_equal(lq_core_enqueue(f->c, now, &r, &id, &f->ev), LQ_OK);
    lq_core_commit_done(f->c, now, id, true, &f->ev);
    return id;
}

/* The waiter that got job_id in f->ev, or 0. */
static uint64_t winner(const fx *f, uint64_t job_id)
{
    for (size_t i = 0; i < f->ev.n; i++)
        if (f->ev.v[i].type == LQ_EV_LEASE && f->ev.v[i].u.lease.lease.job_id == job_id)
            return f->ev.v[i].u.lease.waiter;
    return 0;
}

static void test_earlier_waiter_keeps_its_claim(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    const char *first[] = {"thumb", "idle"};
    const char *second[] = {"thumb", "img", "video"}; /* its turn would start on thumb */
    park(&f, 1, 100, first, 2);  /* parked first, on thumb */
    park(&f, 2, 200, second, 3); /* parked later, also on thumb */
    lq_events_clear(&f.ev);
    /* Both queues get a job in the same round; img's list is served first. */
    uint64_t img_job = put(&f, 3, "img");
    uint64_t thumb_job = put(&f, 3, "thumb");
    lq_core_tick(f.c, 3, &f.ev);
    assert_int_equal(winner(&f, thumb_job), 100);
    assert_int_equal(winner(&f, img_job), 200);
    fx_fini(&f);
}

static void test_later_waiter_served_when_earlier_not_interested(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    const char *first[] = {"thumb"};
    const char *second[] = {"img", "video"};
    park(&f, 1, 100, first, 1);
    park(&f, 2, 200, second, 2);
    lq_events_clear(&f.ev);
    uint64_t video_job = put(&f, 3, "video");
    lq_core_tick(f.c, 3, &f.ev);
    assert_int_equal(winner(&f, video_job), 200);
    fx_fini(&f);
}

static void test_only_job_goes_to_earliest_of_three(void **state)
{
    (void)state;
    fx f;
    fx_init(&f);
    const char *a[] = {"x", "shared"};
    const char *b[] = {"shared"};
    const char *c[] = {"y", "shared", "z"};
    park(&f, 1, 300, c, 3); /* earliest */
    park(&f, 2, 100, a, 2);
    park(&f, 3, 200, b, 1);
    lq_events_clear(&f.ev);
    uint64_t job = put(&f, 4, "shared");
    lq_core_tick(f.c, 4, &f.ev);
    assert_int_equal(winner(&f, job), 300);
    fx_fini(&f);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_earlier_waiter_keeps_its_claim),
        cmocka_unit_test(test_later_waiter_served_when_earlier_not_interested),
        cmocka_unit_test(test_only_job_goes_to_earliest_of_three),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
