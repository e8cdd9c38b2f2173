/* libleaseq waits and the worker loop against a fake broker (fake_worker_broker.h): waits and
 * their outcomes, enqueue_and_wait, hello options, acks and nacks from the handler, heartbeats
 * during a long handler, graceful stop, connection loss, and the worker's option checks. */
#include "fake_worker_broker.h"

/* ---- tests ---- */

static void test_wait_done_big_result(void **state)
{
    fake_broker *fb = fake_start();
    enum { N = 1 << 20 };
    fb->result = malloc(N); /* before any client: no lock needed yet */
    assert_non_null(fb->result);
    srand(7);
    for (size_t i = 0; i < N; i++)
        fb->result[i] = (uint8_t)rand();
    fb->result_len = N;
    leaseq *c = connect_to(fb, false);
    leaseq_outcome o;
    assert_int_equal(leaseq_wait(c, 1, 1000, &o, 3000), LEASEQ_OK);
    assert_int_equal(o.job_id, 1);
    assert_int_equal(o.state, LEASEQ_STATE_DONE);
    assert_string_equal(o.error, "");
    assert_int_equal(o.result_len, N);
    assert_memory_equal(o.result, fb->result, N);
    assert_string_equal(leaseq_state_name(o.state), "done");
    leaseq_outcome_free(&o);
    assert_null(o.result);
    assert_null(o.error);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->wait_timeout_ms, 1000);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_wait_other_outcomes(void **state)
{
    fake_broker *fb = fake_start();
    leaseq *c = connect_to(fb, false);
    leaseq_outcome o;
    assert_int_equal(leaseq_wait(c, 2, 100, &o, 1000), LEASEQ_OK);
    assert_int_equal(o.state, LEASEQ_STATE_DEAD);
    assert_string_equal(o.error, "bad image");
    assert_int_equal(o.result_len, 0);
    assert_null(o.result);
    leaseq_outcome_free(&o);

    /* the broker's wait ran out: passed through, connection kept */
    assert_int_equal(leaseq_wait(c, 3, 100, &o, 1000), LEASEQ_E_DEADLINE_EXCEEDED);
    assert_string_equal(leaseq_last_error(c), "job 3 has not ended");
    assert_int_equal(o.state, 0);
    assert_null(o.error);
    assert_int_equal(leaseq_wait(c, 4, 100, &o, 1000), LEASEQ_E_NOT_FOUND);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 1);
    pthread_mutex_unlock(&fb->mu);

    /* timeout_ms must exceed wait_ms; a reply whose lengths disagree drops the connection */
    assert_int_equal(leaseq_wait(c, 2, 1000, &o, 1000), LEASEQ_E_INVALID_ARGUMENT);
    assert_int_equal(leaseq_wait(c, 6, 100, &o, 1000), LEASEQ_E_PROTOCOL_ERROR);
    assert_null(o.error);
    assert_int_equal(leaseq_wait(c, 2, 100, NULL, 1000), LEASEQ_E_INVALID_ARGUMENT);
    leaseq_outcome_free(&o); /* harmless on a zeroed outcome */
    leaseq_close(c);
    fake_stop(fb);
}

static void test_enqueue_and_wait(void **state)
{
    fake_broker *fb = fake_start();
    leaseq *c = connect_to(fb, false);
    leaseq_job_spec j = { .queue = "img", .payload = "hello gpu", .payload_len = 9 };
    uint64_t id = 0;
    leaseq_outcome o;
    assert_int_equal(leaseq_enqueue_and_wait(c, &j, 500, &id, &o, 2000), LEASEQ_OK);
    assert_int_equal(id, ENQ_FIRST_ID);
    assert_int_equal(o.job_id, ENQ_FIRST_ID);
    assert_int_equal(o.state, LEASEQ_STATE_DONE);
    assert_int_equal(o.result_len, 9);
    assert_memory_equal(o.result, "HELLO GPU", 9);
    leaseq_outcome_free(&o);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->wait_timeout_ms, 500);
    assert_int_equal(fb->accepts, 1);
    pthread_mutex_unlock(&fb->mu);
    /* refused before anything is stored: the id stays 0 */
    leaseq_job_spec bad = { .queue = NULL };
    id = 99;
    assert_int_equal(leaseq_enqueue_and_wait(c, &bad, 500, &id, &o, 2000), LEASEQ_E_INVALID_ARGUMENT);
    assert_int_equal(id, 0);
    assert_int_equal(leaseq_enqueue_and_wait(c, &j, 2000, &id, &o, 2000), LEASEQ_E_INVALID_ARGUMENT);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_keep_leases_on_close_in_hello(void **state)
{
    fake_broker *fb = fake_start();
    leaseq *c = connect_to(fb, true);
    pthread_mutex_lock(&fb->mu);
    assert_true(fb->hello_keep);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    c = connect_to(fb, false);
    pthread_mutex_lock(&fb->mu);
    assert_false(fb->hello_keep);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_worker_acks_and_nacks(void **state)
{
    fake_broker *fb = fake_start();
    fake_push(fb, 1, "ok:a");
    fake_push(fb, 2, "nack");
    fake_push(fb, 3, "dead");
    fake_push(fb, 4, "ok:b");
    fake_push(fb, LOST_JOB, "ok:lost");
    fake_push(fb, 6, "ok:c");
    handler_ctx h = { 0 };
    leaseq_worker *w = make_worker(fb, &h, 2, 1000);
    runner r;
    run_start(&r, w);
    wait_settled(fb, 6);
    assert_int_equal(run_stop(&r), LEASEQ_OK);

    leaseq_worker_stats st;
    leaseq_worker_get_stats(w, &st);
    assert_int_equal(st.leased, 6);
    assert_int_equal(st.acked, 3);
    assert_int_equal(st.nacked, 2);
    assert_int_equal(st.dead, 1);
    assert_int_equal(st.lease_lost, 1); /* job 5's ack; the loop went on to job 6 */
    assert_int_equal(st.failed, 0);
    assert_int_equal(st.released, 0);
    assert_int_equal(st.reconnects, 0);
    assert_int_equal(atomic_load(&h.calls), 6);
    assert_int_equal(atomic_load(&h.releases), 6);

    pthread_mutex_lock(&fb->mu);
    assert_string_equal(fb->hello_worker, "gpu-3");
    assert_int_equal(fb->hello_hb_ms, 1000);
    assert_false(fb->hello_keep);
    assert_int_equal(fb->deq_max, 2);
    assert_int_equal(fb->n_acks, 4);
    const uint64_t ack_ids[] = { 1, 4, LOST_JOB, 6 };
    const char *ack_res[] = { "a-done", "b-done", "lost-done", "c-done" };
    for (size_t i = 0; i < 4; i++) {
        assert_int_equal(fb->acks[i].job_id, ack_ids[i]);
        assert_int_equal(fb->acks[i].token, ack_ids[i] * 1000 + 7);
        assert_int_equal(fb->acks[i].len, strlen(ack_res[i]));
        assert_string_equal(fb->acks[i].text, ack_res[i]);
    }
    assert_int_equal(fb->n_nacks, 2);
    assert_int_equal(fb->nacks[0].job_id, 2);
    assert_string_equal(fb->nacks[0].text, "try later");
    assert_false(fb->nacks[0].dead);
    assert_true(fb->nacks[0].delay_set);
    assert_int_equal(fb->nacks[0].delay_ms, 250);
    assert_int_equal(fb->nacks[1].job_id, 3);
    assert_true(fb->nacks[1].dead);
    assert_string_equal(fb->nacks[1].text, "bad input");
    assert_int_equal(fb->accepts, 1);
    pthread_mutex_unlock(&fb->mu);
    leaseq_worker_destroy(w);
    fake_stop(fb);
}

static void test_worker_heartbeats_during_long_handler(void **state)
{
    enum { HB_MS = 100 };
    fake_broker *fb = fake_start();
    fake_push(fb, 1, "sleep:350");
    fake_push(fb, 2, "ok:after");
    handler_ctx h = { 0 };
    leaseq_worker *w = make_worker(fb, &h, 1, HB_MS);
    runner r;
    run_start(&r, w);
    wait_settled(fb, 2);
    sleep_ms(2 * HB_MS); /* idle in a parked dequeue: beats go on */
    assert_int_equal(run_stop(&r), LEASEQ_OK);

    uint64_t t0 = atomic_load(&h.sleep_start_ms), t1 = atomic_load(&h.sleep_end_ms);
    assert_true(t1 >= t0 + 350);
    pthread_mutex_lock(&fb->mu);
    size_t during = 0;
    uint64_t max_gap = 0;
    for (size_t i = 0; i < fb->n_beats; i++) {
        if (fb->beats[i] >= t0 && fb->beats[i] <= t1)
            during++;
        if (i > 0 && fb->beats[i] - fb->beats[i - 1] > max_gap)
            max_gap = fb->beats[i] - fb->beats[i - 1];
    }
    size_t n_beats = fb->n_beats;
    bool ids_ok = fb->beat_ids_ok;
    int accepts = fb->accepts;
    size_t n_acks = fb->n_acks;
    pthread_mutex_unlock(&fb->mu);
    /* 350 ms of handler at 100 ms: 3 beats expected; allow one lost to scheduling */
    assert_true(during >= 2);
    assert_true(max_gap <= 2 * HB_MS);
    assert_true(n_beats >= 5);
    assert_true(ids_ok);
    /* the heartbeat replies were skipped, not taken for garbage: one connection, both acked */
    assert_int_equal(accepts, 1);
    assert_int_equal(n_acks, 2);
    leaseq_worker_stats st;
    leaseq_worker_get_stats(w, &st);
    assert_int_equal(st.acked, 2);
    assert_int_equal(st.heartbeats_sent, n_beats);
    assert_int_equal(st.reconnects, 0);
    leaseq_worker_destroy(w);
    fake_stop(fb);
}

static void test_worker_graceful_stop_releases_prefetched(void **state)
{
    fake_broker *fb = fake_start();
    fake_push(fb, 1, "stop");
    fake_push(fb, 2, "ok:x");
    fake_push(fb, 3, "ok:y");
    fake_push(fb, 4, "ok:z");
    handler_ctx h = { 0 };
    leaseq_worker *w = make_worker(fb, &h, 4, 1000);
    uint64_t t0 = now_ms();
    assert_int_equal(leaseq_worker_run(w), LEASEQ_OK); /* the handler stops it */
    assert_true(now_ms() - t0 < 1000); /* the heartbeat thread quit without waiting out its beat */
    leaseq_worker_stats st;
    leaseq_worker_get_stats(w, &st);
    assert_int_equal(st.leased, 4);
    assert_int_equal(st.acked, 1);
    assert_int_equal(st.released, 3);
    assert_int_equal(atomic_load(&h.calls), 1);
    assert_int_equal(atomic_load(&h.releases), 1);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->n_acks, 1);
    assert_int_equal(fb->acks[0].job_id, 1);
    assert_int_equal(fb->n_nacks, 3);
    for (size_t i = 0; i < 3; i++) {
        assert_int_equal(fb->nacks[i].job_id, i + 2);
        assert_int_equal(fb->nacks[i].token, (i + 2) * 1000 + 7);
        assert_true(fb->nacks[i].delay_set);
        assert_int_equal(fb->nacks[i].delay_ms, 0);
        assert_false(fb->nacks[i].dead);
        assert_string_equal(fb->nacks[i].text, "worker stopping");
    }
    pthread_mutex_unlock(&fb->mu);

    /* a stop before a run makes it return at once; after that a run works again */
    leaseq_worker_stop(w);
    t0 = now_ms();
    assert_int_equal(leaseq_worker_run(w), LEASEQ_OK);
    assert_true(now_ms() - t0 < 200);
    fake_push(fb, 7, "ok:again");
    runner r;
    run_start(&r, w);
    wait_settled(fb, 5);
    /* idle in a 100 ms long poll: a stop from another thread is seen within about that */
    sleep_ms(150);
    t0 = now_ms();
    assert_int_equal(run_stop(&r), LEASEQ_OK);
    assert_true(now_ms() - t0 < 1000);
    leaseq_worker_destroy(w);
    fake_stop(fb);
}

static void test_worker_connection_loss(void **state)
{
    fake_broker *fb = fake_start();
    /* the first dequeue breaks the connection: the worker reconnects and goes on */
    fake_set_mode(fb, FB_CLOSE_ON_DEQUEUE);
    fake_push(fb, 1, "ok:a");
    fake_push(fb, 2, "ok:b");
    handler_ctx h = { 0 };
    leaseq_worker *w = make_worker(fb, &h, 2, 1000);
    runner r;
    run_start(&r, w);
    wait_settled(fb, 2);
    /* an ack that breaks the connection: the rest of that batch was requeued by the broker */
    pthread_mutex_lock(&fb->mu); /* all at once, so one dequeue of 2 gets jobs 3 and 4 */
    fb->mode = FB_CLOSE_ON_ACK;
    push_locked(fb, 3, "ok:c");
    push_locked(fb, 4, "ok:d");
    push_locked(fb, 8, "ok:e");
    pthread_mutex_unlock(&fb->mu);
    wait_settled(fb, 3); /* job 3's ack was not answered nor recorded; job 8 came later */
    assert_int_equal(run_stop(&r), LEASEQ_OK);
    leaseq_worker_stats st;
    leaseq_worker_get_stats(w, &st);
    assert_int_equal(st.reconnects, 2);
    assert_int_equal(st.failed, 1);     /* job 3: its outcome is unknown */
    assert_int_equal(st.lease_lost, 1); /* job 4: skipped, not handled */
    assert_int_equal(st.acked, 3);
    assert_int_equal(atomic_load(&h.calls), 4);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 3);
    assert_int_equal(fb->acks[2].job_id, 8);
    pthread_mutex_unlock(&fb->mu);
    assert_true(strstr(leaseq_worker_last_error(w), "ack job 3") != NULL);
    leaseq_worker_destroy(w);
    fake_stop(fb);
}

static void test_worker_create_checks(void **state)
{
    const char *const queues[] = { "img" };
    leaseq_worker_opts o = { .addr = "127.0.0.1:1", .worker_id = "w", .queues = queues, .n_queues = 1 };
    leaseq_worker *w = (leaseq_worker *)&o;
    o.worker_id = NULL;
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    assert_null(w);
    o.worker_id = "w";
    o.prefetch = 257;
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    o.prefetch = 256;
    o.n_queues = 0;
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    o.n_queues = 1;
    assert_int_equal(leaseq_worker_create(&o, NULL, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    o.addr = "nonsense";
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_E_INVALID_ARGUMENT);
    o.addr = "127.0.0.1:1";
    assert_int_equal(leaseq_worker_create(&o, handler, NULL, &w), LEASEQ_OK);
    leaseq_worker_destroy(w);
    leaseq_worker_destroy(NULL);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_wait_done_big_result),
        cmocka_unit_test(test_wait_other_outcomes),
        cmocka_unit_test(test_enqueue_and_wait),
        cmocka_unit_test(test_keep_leases_on_close_in_hello),
        cmocka_unit_test(test_worker_acks_and_nacks),
        cmocka_unit_test(test_worker_heartbeats_during_long_handler),
        cmocka_unit_test(test_worker_graceful_stop_releases_prefetched),
        cmocka_unit_test(test_worker_connection_loss),
        cmocka_unit_test(test_worker_create_checks),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
