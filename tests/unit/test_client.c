/* libleaseq against a fake broker (fake_broker.h): connect and hello, Unix sockets, enqueue
 * (single, batch, pipelined, split by bytes), dequeue, request ids, deadlines, reconnects after
 * a close mid-call, error codes, and the bounded backoff when the broker is gone. */
#include "fake_broker.h"

/* ---- tests ---- */

static void test_connect_hello(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->hello_version, 1);
    assert_string_equal(fb->hello_client, "unit");
    assert_string_equal(fb->hello_token, "s3cret");
    assert_string_equal(fb->hello_worker, "gpu-7");
    assert_int_equal(fb->hello_heartbeat_ms, 1500);
    pthread_mutex_unlock(&fb->mu);
    leaseq_server_info si;
    leaseq_get_server_info(c, &si);
    assert_string_equal(si.server_name, "fake");
    assert_int_equal(si.role, 2);
    assert_int_equal(si.session_id, 42);
    assert_int_equal(si.heartbeat_timeout_ms, 5000);
    assert_int_equal(si.max_payload_bytes, 1u << 20);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    uint32_t held = 0;
    assert_int_equal(leaseq_heartbeat(c, &held, 1000), LEASEQ_OK);
    assert_int_equal(held, 3);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_unix_socket(void **state)
{
    fake_broker *fb = fake_start(true);
    leaseq *c = connect_to(fb);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_hello_refused(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq_opts o = { .token = "bad" };
    leaseq *c = (leaseq *)&o; /* must be reset to NULL */
    char why[128];
    assert_int_equal(leaseq_connect_ex(fb->addr, &o, &c, why, sizeof why), LEASEQ_E_UNAUTHENTICATED);
    assert_null(c);
    assert_string_equal(why, "unknown token");
    fake_stop(fb);
}

static void test_enqueue_item_and_payload(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    leaseq_header h = { "content-type", "image/jpeg" };
    leaseq_job_spec j = { .queue = "img", .lane = "api", .tenant = "acme", .idempotency_key = "k1",
                          .priority = -3, .delay_ms = 10, .deadline_ms = 60000, .max_attempts = 4,
                          .headers = &h, .n_headers = 1, .payload = "\x89PNG\0data", .payload_len = 9 };
    uint64_t id = 0;
    assert_int_equal(leaseq_enqueue(c, &j, &id, 1000), LEASEQ_OK);
    assert_int_equal(id, 1);
    pthread_mutex_lock(&fb->mu);
    assert_string_equal(fb->enq_queue, "img");
    assert_string_equal(fb->enq_lane, "api");
    assert_string_equal(fb->enq_tenant, "acme");
    assert_string_equal(fb->enq_key, "k1");
    assert_int_equal(fb->enq_priority, -3);
    assert_int_equal(fb->enq_delay, 10);
    assert_int_equal(fb->enq_deadline, 60000);
    assert_int_equal(fb->enq_max_attempts, 4);
    assert_int_equal(fb->enq_n_headers, 1);
    assert_string_equal(fb->enq_hkey, "content-type");
    assert_string_equal(fb->enq_hval, "image/jpeg");
    assert_int_equal(fb->enq_payload_len, 9);
    assert_memory_equal(fb->enq_payload, "\x89PNG\0data", 9);
    pthread_mutex_unlock(&fb->mu);

    /* local checks: no queue, payload above the broker's 1 MiB */
    leaseq_job_spec bad = { .queue = NULL };
    assert_int_equal(leaseq_enqueue(c, &bad, &id, 1000), LEASEQ_E_INVALID_ARGUMENT);
    static uint8_t big[(1u << 20) + 1];
    leaseq_job_spec huge = { .queue = "img", .payload = big, .payload_len = sizeof big };
    assert_int_equal(leaseq_enqueue(c, &huge, &id, 1000), LEASEQ_E_FRAME_TOO_LARGE);

    /* per-item error with message and retry hint */
    leaseq_job_spec full = { .queue = "full" };
    assert_int_equal(leaseq_enqueue(c, &full, &id, 1000), LEASEQ_E_QUEUE_FULL);
    assert_string_equal(leaseq_last_error(c), "lane app is full");
    assert_int_equal(leaseq_retry_after_ms(c), 250);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    assert_int_equal(leaseq_retry_after_ms(c), 0);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_enqueue_batch_pipelined(void **state)
{
    enum { N = 1000 };
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_PIPELINE);
    static leaseq_job_spec jobs[N];
    static char bodies[N][16];
    static leaseq_enqueue_result res[N];
    for (size_t i = 0; i < N; i++) {
        int n = snprintf(bodies[i], sizeof bodies[i], "job-%zu", i);
        jobs[i] = (leaseq_job_spec){ .queue = "img", .payload = bodies[i], .payload_len = (size_t)n };
    }
    jobs[500].queue = NULL; /* refused locally, the rest still goes */
    assert_int_equal(leaseq_enqueue_batch(c, jobs, N, res, 5000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_true(fb->payloads_ok);
    assert_int_equal(fb->enq_items, N - 1);
    assert_int_equal(fb->enq_frames, 4); /* 256-job frames */
    /* Every frame was on the wire before the first answer: the fake held them all. */
    assert_int_equal(fb->max_in_flight, 4);
    pthread_mutex_unlock(&fb->mu);
    for (size_t i = 0; i < N; i++) {
        if (i == 500) {
            assert_int_equal(res[i].err, LEASEQ_E_INVALID_ARGUMENT);
            continue;
        }
        assert_int_equal(res[i].err, LEASEQ_OK);
        assert_int_equal(res[i].job_id, i < 500 ? i + 1 : i); /* ids in order despite reversed replies */
    }
    fake_set_mode(fb, FB_NORMAL);
    assert_int_equal(leaseq_enqueue_batch(c, jobs, 0, res, 1000), LEASEQ_OK);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_enqueue_batch_splits_by_bytes(void **state)
{
    /* The fake announces max_payload_bytes = 1 MiB, which also caps a frame's whole payload. */
    enum { N = 8, SIZE = 300 << 10 };
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    uint8_t *body = calloc(1, SIZE);
    assert_non_null(body);
    leaseq_job_spec jobs[N];
    leaseq_enqueue_result res[N];
    for (size_t i = 0; i < N; i++)
        jobs[i] = (leaseq_job_spec){ .queue = "img", .payload = body, .payload_len = SIZE };
    assert_int_equal(leaseq_enqueue_batch(c, jobs, N, res, 5000), LEASEQ_OK);
    for (size_t i = 0; i < N; i++) {
        assert_int_equal(res[i].err, LEASEQ_OK);
        assert_int_equal(res[i].job_id, i + 1);
    }
    pthread_mutex_lock(&fb->mu);
    assert_true(fb->payloads_ok);
    assert_int_equal(fb->enq_frames, 3); /* 3 + 3 + 2 jobs */
    assert_true(fb->max_frame_payload <= (1u << 20));
    pthread_mutex_unlock(&fb->mu);
    free(body);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_dequeue(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    const char *qs[] = { "img" };
    leaseq_lease *ls = NULL;
    size_t n = 0;
    assert_int_equal(leaseq_dequeue(c, qs, 1, 8, 100, 30000, &ls, &n, 1000), LEASEQ_OK);
    assert_int_equal(n, 2);
    assert_int_equal(ls[0].job_id, 11);
    assert_true(ls[0].lease_token == 0xFFFFFFFFFFFFFFF0ull);
    assert_string_equal(ls[0].queue, "img");
    assert_string_equal(ls[0].lane, "api");
    assert_string_equal(ls[0].tenant, "");
    assert_string_equal(ls[0].last_error, "");
    assert_int_equal(ls[0].attempt, 1);
    assert_int_equal(ls[0].n_headers, 1);
    assert_string_equal(ls[0].headers[0].key, "content-type");
    assert_string_equal(ls[0].headers[0].value, "image/png");
    assert_int_equal(ls[0].payload_len, 5);
    assert_memory_equal(ls[0].payload, "hello", 5);
    assert_int_equal(ls[1].job_id, 12);
    assert_string_equal(ls[1].tenant, "acme");
    assert_string_equal(ls[1].last_error, "oops");
    assert_int_equal(ls[1].priority, -2);
    assert_int_equal(ls[1].attempt, 3);
    assert_int_equal(ls[1].n_headers, 0);
    assert_int_equal(ls[1].payload_len, 7);
    assert_memory_equal(ls[1].payload, "world!!", 7);
    leaseq_leases_free(ls, n);

    /* the wait ran out: an empty reply */
    const char *empty[] = { "empty" };
    assert_int_equal(leaseq_dequeue(c, empty, 1, 1, 100, 0, &ls, &n, 1000), LEASEQ_OK);
    assert_int_equal(n, 0);
    assert_null(ls);
    leaseq_leases_free(ls, n);

    /* the library adds no slack of its own: timeout must exceed wait */
    assert_int_equal(leaseq_dequeue(c, qs, 1, 1, 1000, 0, &ls, &n, 1000), LEASEQ_E_INVALID_ARGUMENT);

    /* the broker sends more jobs than asked for */
    assert_int_equal(leaseq_dequeue(c, qs, 1, 1, 0, 0, &ls, &n, 1000), LEASEQ_E_PROTOCOL_ERROR);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_dequeue_payload_mismatch(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_DEQ_MISMATCH);
    const char *qs[] = { "img" };
    leaseq_lease *ls = (leaseq_lease *)qs;
    size_t n = 99;
    assert_int_equal(leaseq_dequeue(c, qs, 1, 8, 0, 0, &ls, &n, 1000), LEASEQ_E_PROTOCOL_ERROR);
    assert_null(ls);
    assert_int_equal(n, 0);
    /* the connection was dropped; the next call reconnects */
    fake_set_mode(fb, FB_NORMAL);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 2);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_wrong_request_id(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_WRONG_ID);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_E_PROTOCOL_ERROR);
    fake_set_mode(fb, FB_NORMAL);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_silent_server_deadline(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_SILENT);
    uint64_t t0 = now_ms();
    assert_int_equal(leaseq_ping(c, 200), LEASEQ_E_DEADLINE_EXCEEDED);
    uint64_t took = now_ms() - t0;
    assert_true(took >= 190 && took < 200 + 500);
    /* the connection was dropped so a late reply cannot answer the next call */
    fake_set_mode(fb, FB_NORMAL);
    assert_int_equal(leaseq_ping(c, 1000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 2);
    pthread_mutex_unlock(&fb->mu);

    /* batches honour the timeout too */
    fake_set_mode(fb, FB_SILENT);
    leaseq_job_spec j[3] = { { .queue = "a" }, { .queue = "b" }, { .queue = NULL } };
    leaseq_enqueue_result r[3];
    t0 = now_ms();
    assert_int_equal(leaseq_enqueue_batch(c, j, 3, r, 200), LEASEQ_E_DEADLINE_EXCEEDED);
    assert_true(now_ms() - t0 < 200 + 500);
    assert_int_equal(r[0].err, LEASEQ_E_DEADLINE_EXCEEDED);
    assert_int_equal(r[1].err, LEASEQ_E_DEADLINE_EXCEEDED);
    assert_int_equal(r[2].err, LEASEQ_E_INVALID_ARGUMENT);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_close_mid_call_reconnects(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_set_mode(fb, FB_CLOSE_ONCE);
    uint64_t id = 0;
    leaseq_job_spec j = { .queue = "img" };
    assert_int_equal(leaseq_enqueue(c, &j, &id, 1000), LEASEQ_E_CONNECTION);
    assert_true(strlen(leaseq_last_error(c)) > 0);
    assert_int_equal(leaseq_enqueue(c, &j, &id, 1000), LEASEQ_OK);
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->accepts, 2);
    pthread_mutex_unlock(&fb->mu);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_errors_propagate(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    assert_int_equal(leaseq_ack(c, 5, 999, NULL, 0, 1000), LEASEQ_E_LEASE_LOST);
    assert_string_equal(leaseq_last_error(c), "token 999 is stale");
    assert_string_equal(leaseq_strerror(LEASEQ_E_LEASE_LOST), "LEASE_LOST");
    /* an error is not a broken connection */
    assert_int_equal(leaseq_ack(c, 6, 1234, "result!", 7, 1000), LEASEQ_OK);
    assert_string_equal(leaseq_last_error(c), "");
    pthread_mutex_lock(&fb->mu);
    assert_int_equal(fb->ack_job, 6);
    assert_int_equal(fb->ack_token, 1234);
    assert_int_equal(fb->ack_result_len, 7);
    assert_memory_equal(fb->ack_result, "result!", 7);
    assert_int_equal(fb->accepts, 1);
    pthread_mutex_unlock(&fb->mu);
    bool dead = false;
    leaseq_nack_opts no = { .error = "bad image", .dead = true };
    assert_int_equal(leaseq_nack(c, 6, 1234, &no, &dead, 1000), LEASEQ_OK);
    assert_true(dead);
    assert_int_equal(leaseq_nack(c, 6, 1234, NULL, &dead, 1000), LEASEQ_OK);
    assert_false(dead);
    uint64_t exp = 0;
    assert_int_equal(leaseq_extend(c, 6, 1234, 500, &exp, 1000), LEASEQ_OK);
    assert_int_equal(exp, 1000500);
    leaseq_stats *s = NULL;
    assert_int_equal(leaseq_get_stats(c, NULL, &s, 1000), LEASEQ_OK);
    assert_int_equal(s->n_queues, 1);
    assert_string_equal(s->queues[0].name, "img");
    assert_int_equal(s->queues[0].n_lanes, 2);
    assert_string_equal(s->queues[0].lanes[0].name, "api");
    assert_int_equal(s->queues[0].lanes[0].weight, 9);
    assert_int_equal(s->queues[0].lanes[0].ready, 5);
    assert_int_equal(s->queues[0].lanes[0].leased, 2);
    assert_string_equal(s->queues[0].lanes[1].name, "app");
    assert_int_equal(s->queues[0].lanes[1].delayed, 4);
    assert_int_equal(s->queues[0].lanes[1].dead, 1);
    leaseq_stats_free(s);
    assert_int_equal(leaseq_ping(c, 0), LEASEQ_E_INVALID_ARGUMENT);
    leaseq_close(c);
    fake_stop(fb);
}

static void test_closed_port(void **state)
{
    /* a port that was just free: bind, read it, close */
    struct sockaddr_in sin = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
    int fd = socket(AF_INET, SOCK_STREAM, 0);
    assert_int_equal(bind(fd, (struct sockaddr *)&sin, sizeof sin), 0);
    socklen_t sl = sizeof sin;
    assert_int_equal(getsockname(fd, (struct sockaddr *)&sin, &sl), 0);
    close(fd);
    char addr[64];
    snprintf(addr, sizeof addr, "127.0.0.1:%u", ntohs(sin.sin_port));
    leaseq_opts o = { .connect_timeout_ms = 500 };
    leaseq *c = NULL;
    char why[256];
    uint64_t t0 = now_ms();
    assert_int_equal(leaseq_connect_ex(addr, &o, &c, why, sizeof why), LEASEQ_E_CONNECTION);
    assert_true(now_ms() - t0 < 500 + 500);
    assert_null(c);
    assert_non_null(strstr(why, "refused"));
    assert_int_equal(leaseq_connect("nonsense", NULL, &c), LEASEQ_E_INVALID_ARGUMENT);
    assert_int_equal(leaseq_connect("::1:7420", NULL, &c), LEASEQ_E_INVALID_ARGUMENT);
}

static void test_broker_gone_backoff_bounded(void **state)
{
    fake_broker *fb = fake_start(false);
    leaseq *c = connect_to(fb);
    fake_stop(fb); /* listener and connection gone */
    uint64_t t0 = now_ms();
    assert_int_equal(leaseq_ping(c, 300), LEASEQ_E_CONNECTION);
    uint64_t took = now_ms() - t0;
    assert_true(took < 300 + 500);
    /* a later call is bounded by its own timeout as well */
    t0 = now_ms();
    assert_int_equal(leaseq_ping(c, 50), LEASEQ_E_CONNECTION);
    assert_true(now_ms() - t0 < 50 + 500);
    leaseq_close(c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_connect_hello),
        cmocka_unit_test(test_unix_socket),
        cmocka_unit_test(test_hello_refused),
        cmocka_unit_test(test_enqueue_item_and_payload),
        cmocka_unit_test(test_enqueue_batch_pipelined),
        cmocka_unit_test(test_enqueue_batch_splits_by_bytes),
        cmocka_unit_test(test_dequeue),
        cmocka_unit_test(test_dequeue_payload_mismatch),
        cmocka_unit_test(test_wrong_request_id),
        cmocka_unit_test(test_silent_server_deadline),
        cmocka_unit_test(test_close_mid_call_reconnects),
        cmocka_unit_test(test_errors_propagate),
        cmocka_unit_test(test_closed_port),
        cmocka_unit_test(test_broker_gone_backoff_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
