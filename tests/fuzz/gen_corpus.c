/* Writes the seed corpus of the fuzz targets: one file per conversation, each a byte stream of
 * frames as a client would send them (valid requests of every kind, and the classic bad ones).
 *   gen_corpus DIR...   (the same seeds go to every DIR: tests/fuzz/corpus/<target>/) */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "leaseq.pb-c.h"
#include "proto/frame.h"

static uint8_t g_buf[1 << 16];
static size_t g_len;

static void frame(const Leaseq__Request *r, const void *payload, size_t plen)
{
    size_t meta = leaseq__request__get_packed_size(r);
    if (g_len + 8 + meta + plen > sizeof g_buf)
        abort();
    lq_frame_header(g_buf + g_len, (uint32_t)meta, (uint32_t)plen);
    leaseq__request__pack(r, g_buf + g_len + 8);
    if (plen)
        memcpy(g_buf + g_len + 8 + meta, payload, plen);
    g_len += 8 + meta + plen;
}

static void raw(const void *p, size_t n)
{
    memcpy(g_buf + g_len, p, n);
    g_len += n;
}

#define REQ(rid, field, CASE, ptr)                                                                            \
    do {                                                                                                      \
        Leaseq__Request r_ = LEASEQ__REQUEST__INIT;                                                           \
        r_.request_id = (rid);                                                                                \
        r_.body_case = LEASEQ__REQUEST__BODY_##CASE;                                                          \
        r_.field = (ptr);                                                                                     \
        frame(&r_, NULL, 0);                                                                                  \
    } while (0)

static void hello(const char *worker)
{
    Leaseq__Hello h = LEASEQ__HELLO__INIT;
    h.protocol_version = 1;
    h.worker_id = (char *)worker;
    h.heartbeat_ms = worker[0] ? 1000 : 0;
    REQ(1, hello, HELLO, &h);
}

static void enqueue(int n, const char *lane, uint64_t deadline, const char *key)
{
    Leaseq__EnqueueItem items[8], *ptrs[8];
    char payload[8 * 16];
    for (int i = 0; i < n; i++) {
        leaseq__enqueue_item__init(&items[i]);
        items[i].queue = (char *)"q";
        items[i].lane = (char *)lane;
        items[i].tenant = (char *)(i % 2 ? "t1" : "");
        items[i].deadline_ms = deadline;
        items[i].idempotency_key = (char *)key;
        items[i].payload_len = 16;
        ptrs[i] = &items[i];
        memset(payload + 16 * i, 'a' + i, 16);
    }
    Leaseq__Enqueue e = LEASEQ__ENQUEUE__INIT;
    e.n_items = (size_t)n;
    e.items = ptrs;
    Leaseq__Request r = LEASEQ__REQUEST__INIT;
    r.request_id = 2;
    r.body_case = LEASEQ__REQUEST__BODY_ENQUEUE;
    r.enqueue = &e;
    frame(&r, payload, (size_t)(16 * n));
}

static void dequeue(uint32_t max, uint32_t wait)
{
    char *qs[] = {(char *)"q"};
    Leaseq__Dequeue d = LEASEQ__DEQUEUE__INIT;
    d.n_queues = 1;
    d.queues = qs;
    d.max_jobs = max;
    d.wait_ms = wait;
    REQ(3, dequeue, DEQUEUE, &d);
}

static void write_all(int ndirs, char **dirs, const char *name)
{
    for (int i = 0; i < ndirs; i++) {
        char path[512];
        snprintf(path, sizeof path, "%s/%s", dirs[i], name);
        FILE *f = fopen(path, "wb");
        if (!f || fwrite(g_buf, 1, g_len, f) != g_len) {
            perror(path);
            exit(1);
        }
        fclose(f);
    }
    g_len = 0;
}

int main(int argc, char **argv)
{
    int nd = argc - 1;
    char **d = argv + 1;
    /* every request kind after a hello */
    hello("");
    write_all(nd, d, "hello");
    hello("w1");
    write_all(nd, d, "hello-worker");
    hello("");
    enqueue(1, "", 0, "");
    write_all(nd, d, "enqueue-one");
    hello("");
    enqueue(8, "app", 0, "");
    write_all(nd, d, "enqueue-batch-app");
    hello("");
    enqueue(3, "api", 50, "k1");
    enqueue(3, "api", 50, "k1");
    write_all(nd, d, "enqueue-idempotent-deadline");
    hello("w2");
    enqueue(4, "app", 0, "");
    dequeue(4, 0);
    write_all(nd, d, "enqueue-dequeue");
    hello("w3");
    dequeue(2, 100);
    enqueue(2, "", 0, "");
    write_all(nd, d, "parked-dequeue");
    {
        hello("w4");
        Leaseq__Ack a = LEASEQ__ACK__INIT;
        a.job_id = 1;
        a.lease_token = 12345;
        REQ(4, ack, ACK, &a);
        Leaseq__Nack k = LEASEQ__NACK__INIT;
        k.job_id = 2;
        k.lease_token = 1;
        k.error = (char *)"boom";
        k.delay_set = 1;
        k.delay_ms = 10;
        REQ(5, nack, NACK, &k);
        Leaseq__Extend x = LEASEQ__EXTEND__INIT;
        x.job_id = 3;
        x.lease_token = 7;
        x.lease_ms = 1000;
        REQ(6, extend, EXTEND, &x);
        Leaseq__Heartbeat hb = LEASEQ__HEARTBEAT__INIT;
        REQ(7, heartbeat, HEARTBEAT, &hb);
        write_all(nd, d, "ack-nack-extend-heartbeat");
    }
    {
        hello("");
        Leaseq__Stats s = LEASEQ__STATS__INIT;
        REQ(8, stats, STATS, &s);
        Leaseq__Ping p = LEASEQ__PING__INIT;
        REQ(9, ping, PING, &p);
        Leaseq__Wait w = LEASEQ__WAIT__INIT;
        w.job_id = 1;
        w.timeout_ms = 20;
        REQ(10, wait, WAIT, &w);
        Leaseq__Workers wk = LEASEQ__WORKERS__INIT;
        REQ(11, workers, WORKERS, &wk);
        Leaseq__ClearSuspect cs = LEASEQ__CLEAR_SUSPECT__INIT;
        cs.worker_id = (char *)"w1";
        REQ(12, clear_suspect, CLEAR_SUSPECT, &cs);
        write_all(nd, d, "admin-requests");
    }
    {
        hello("");
        enqueue(2, "", 0, "");
        dequeue(2, 0);
        Leaseq__Ack a = LEASEQ__ACK__INIT;
        a.job_id = 1;
        a.lease_token = 1;
        a.result_len = 5;
        Leaseq__Request r = LEASEQ__REQUEST__INIT;
        r.request_id = 4;
        r.body_case = LEASEQ__REQUEST__BODY_ACK;
        r.ack = &a;
        frame(&r, "hello", 5);
        write_all(nd, d, "ack-with-result");
    }
    /* the bad ones */
    {
        Leaseq__Ping p = LEASEQ__PING__INIT;
        REQ(1, ping, PING, &p);
        write_all(nd, d, "no-hello");
        hello("");
        uint8_t huge[8] = {0xff, 0xff, 0xff, 0xff, 0, 0, 0, 4};
        raw(huge, 8);
        write_all(nd, d, "huge-length");
        hello("");
        uint8_t bad[8] = {0, 0, 0, 8, 0, 0, 0, 9};
        raw(bad, 8);
        write_all(nd, d, "meta-over-length");
        hello("");
        uint8_t garbage[20] = {0, 0, 0, 16, 0, 0, 0, 12, 0xff, 0x13, 0x00, 0x9a, 0x88, 0x01, 2, 3, 4, 5, 6, 7};
        raw(garbage, sizeof garbage);
        write_all(nd, d, "garbage-meta");
        hello("");
        Leaseq__Ping p2 = LEASEQ__PING__INIT;
        Leaseq__Request r = LEASEQ__REQUEST__INIT;
        r.request_id = 3;
        r.body_case = LEASEQ__REQUEST__BODY_PING;
        r.ping = &p2;
        frame(&r, "xyz", 3);
        write_all(nd, d, "payload-on-ping");
        hello("");
        enqueue(2, "", 0, "");
        g_buf[g_len - 1] = 0;
        g_len -= 5; /* the last frame cut short */
        write_all(nd, d, "truncated-enqueue");
        hello("");
        Leaseq__Request empty = LEASEQ__REQUEST__INIT;
        empty.request_id = 5;
        frame(&empty, NULL, 0);
        write_all(nd, d, "request-without-body");
        hello("");
        hello("");
        write_all(nd, d, "hello-twice");
    }
    return 0;
}
