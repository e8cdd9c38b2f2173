/* Wire helpers shared by the fake brokers of the client unit tests (fake_broker.h,
 * fake_worker_broker.h): a fake broker is a thread in the test process that writes frames with
 * the generated protobuf code. Header-only, static inline. */
#ifndef LQ_TEST_FAKE_WIRE_H
#define LQ_TEST_FAKE_WIRE_H

#include <errno.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>

#include "leaseq.pb-c.h"
#include "proto/frame.h"

/* cmocka's asserts longjmp and must stay on the test's thread; the fake broker aborts instead. */
#define FB_CHECK(e)                                                                      \
    do {                                                                                 \
        if (!(e)) {                                                                      \
            fprintf(stderr, "fake broker: check failed: %s at line %d\n", #e, __LINE__); \
            abort();                                                                     \
        }                                                                                \
    } while (0)

static inline uint64_t now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
}

static inline void sleep_ms(unsigned ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
    }
}

static inline bool write_all(int fd, const void *buf, size_t len)
{
    const uint8_t *p = buf;
    while (len > 0) {
        ssize_t w = send(fd, p, len, MSG_NOSIGNAL);
        if (w < 0 && errno == EINTR)
            continue;
        if (w <= 0)
            return false;
        p += w;
        len -= (size_t)w;
    }
    return true;
}

/* Sends r, then payload_len bytes of payload; the frame header claims frame_payload_len bytes,
 * which a test may set apart from what is sent to exercise the client's checks. */
static inline bool send_response(int fd, Leaseq__Response *r, const void *payload, uint32_t payload_len,
                                 uint32_t frame_payload_len)
{
    size_t meta = leaseq__response__get_packed_size(r);
    uint8_t *buf = malloc(LQ_FRAME_HEADER_BYTES + meta);
    FB_CHECK(buf);
    leaseq__response__pack(r, buf + LQ_FRAME_HEADER_BYTES);
    lq_frame_header(buf, (uint32_t)meta, frame_payload_len);
    bool ok = write_all(fd, buf, LQ_FRAME_HEADER_BYTES + meta) && write_all(fd, payload, payload_len);
    free(buf);
    return ok;
}

static inline bool send_error(int fd, uint64_t id, Leaseq__ErrorCode code, const char *msg, uint32_t retry)
{
    Leaseq__Error err = LEASEQ__ERROR__INIT;
    err.code = code;
    err.message = (char *)msg;
    err.retry_after_ms = retry;
    Leaseq__Response r = LEASEQ__RESPONSE__INIT;
    r.request_id = id;
    r.error = &err;
    return send_response(fd, &r, NULL, 0, 0);
}

/* A fake broker's receive buffer for one connection. */
typedef struct {
    uint8_t *buf; /* owner: the serving thread, fw_in_free */
    size_t cap, len;
} fw_in;

static inline void fw_in_init(fw_in *in, size_t cap)
{
    in->buf = malloc(cap);
    FB_CHECK(in->buf);
    in->cap = cap;
    in->len = 0;
}

static inline void fw_in_free(fw_in *in) { free(in->buf); }

/* One request of a connection; false: stop serving it. */
typedef bool (*fw_request_fn)(void *ctx, int fd, const Leaseq__Request *q, const lq_frame *f);

/* Reads what fd has now (the caller polled it) and hands every whole request to fn in order.
 * False when the peer closed, on a read error, or when fn said to stop. */
static inline bool fw_read_requests(fw_in *in, int fd, fw_request_fn fn, void *ctx)
{
    ssize_t n = recv(fd, in->buf + in->len, in->cap - in->len, 0);
    if (n <= 0)
        return false;
    in->len += (size_t)n;
    for (;;) {
        lq_frame f;
        size_t consumed, need;
        lq_frame_status st = lq_frame_parse(in->buf, in->len, 64u << 20, &f, &consumed, &need);
        if (st == LQ_FRAME_NEED_MORE) {
            if (need > in->cap) {
                in->cap = need;
                in->buf = realloc(in->buf, in->cap);
                FB_CHECK(in->buf);
            }
            return true;
        }
        FB_CHECK(st == LQ_FRAME_OK);
        Leaseq__Request *q = leaseq__request__unpack(NULL, f.meta_len, f.meta);
        FB_CHECK(q);
        bool keep = fn(ctx, fd, q, &f);
        leaseq__request__free_unpacked(q, NULL);
        memmove(in->buf, in->buf + consumed, in->len - consumed);
        in->len -= consumed;
        if (!keep)
            return false;
    }
}

#endif /* LQ_TEST_FAKE_WIRE_H */
