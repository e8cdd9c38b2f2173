/* The frame codec (broker/proto/frame.c) and the protobuf-c arena (broker/proto/arena.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "leaseq.pb-c.h"
#include "proto/arena.h"
#include "proto/frame.h"

/* Writes a frame of meta + payload into buf; returns its size. */
static size_t make_frame(uint8_t *buf, const char *meta, size_t meta_len, const char *payload, size_t payload_len)
{
    lq_frame_header(buf, (uint32_t)meta_len, (uint32_t)payload_len);
    memcpy(buf + LQ_FRAME_HEADER_BYTES, meta, meta_len);
    memcpy(buf + LQ_FRAME_HEADER_BYTES + meta_len, payload, payload_len);
    return LQ_FRAME_HEADER_BYTES + meta_len + payload_len;
}

static void test_whole_frame(void **state)
{
    uint8_t buf[64];
    size_t n = make_frame(buf, "META", 4, "payload!", 8);
    assert_int_equal(n, 20);
    assert_int_equal(lq_be32_load(buf), 4 + 4 + 8);
    assert_int_equal(lq_be32_load(buf + 4), 4);
    lq_frame f;
    size_t consumed = 0, need = 0;
    assert_int_equal(lq_frame_parse(buf, n, 1024, &f, &consumed, &need), LQ_FRAME_OK);
    assert_int_equal(consumed, n);
    assert_int_equal(f.meta_len, 4);
    assert_int_equal(f.payload_len, 8);
    assert_ptr_equal(f.meta, buf + 8);
    assert_ptr_equal(f.payload, buf + 12);
    assert_memory_equal(f.meta, "META", 4);
    assert_memory_equal(f.payload, "payload!", 8);

    /* no payload at all */
    n = make_frame(buf, "M", 1, "", 0);
    assert_int_equal(lq_frame_parse(buf, n, 0, &f, &consumed, &need), LQ_FRAME_OK);
    assert_int_equal(f.payload_len, 0);
    assert_int_equal(consumed, 9);
}

static void test_two_frames_back_to_back(void **state)
{
    uint8_t buf[64];
    size_t a = make_frame(buf, "AA", 2, "x", 1);
    size_t b = make_frame(buf + a, "BBB", 3, "yy", 2);
    lq_frame f;
    size_t consumed, need;
    assert_int_equal(lq_frame_parse(buf, a + b, 1024, &f, &consumed, &need), LQ_FRAME_OK);
    assert_int_equal(consumed, a);
    assert_memory_equal(f.meta, "AA", 2);
    assert_int_equal(lq_frame_parse(buf + consumed, a + b - consumed, 1024, &f, &consumed, &need), LQ_FRAME_OK);
    assert_int_equal(consumed, b);
    assert_memory_equal(f.meta, "BBB", 3);
    assert_memory_equal(f.payload, "yy", 2);
}

static void test_need_more_every_split(void **state)
{
    uint8_t buf[64];
    size_t n = make_frame(buf, "metadata", 8, "0123456789", 10);
    for (size_t len = 0; len < n; len++) {
        /* a fresh heap copy of exactly len bytes: ASan catches any read past the prefix */
        uint8_t *part = malloc(len ? len : 1);
        assert_non_null(part);
        memcpy(part, buf, len);
        lq_frame f;
        size_t consumed = 99, need = 0;
        assert_int_equal(lq_frame_parse(part, len, 1024, &f, &consumed, &need), LQ_FRAME_NEED_MORE);
        assert_int_equal(consumed, 0);
        assert_int_equal(need, len < LQ_FRAME_HEADER_BYTES ? LQ_FRAME_HEADER_BYTES : n);
        free(part);
    }
}

static void test_too_large_from_header_alone(void **state)
{
    uint8_t hdr[LQ_FRAME_HEADER_BYTES];
    lq_frame f;
    size_t consumed, need;
    /* a 4 GiB frame: refused from its 8 header bytes, nothing else is read or allocated */
    lq_be32_store(hdr, 0xFFFFFFFFu);
    lq_be32_store(hdr + 4, 16);
    assert_int_equal(lq_frame_parse(hdr, sizeof hdr, LQ_PAYLOAD_MAX_DEFAULT, &f, &consumed, &need),
                     LQ_FRAME_TOO_LARGE);
    /* meta over 1 MiB */
    lq_frame_header(hdr, LQ_FRAME_META_MAX + 1, 0);
    assert_int_equal(lq_frame_parse(hdr, sizeof hdr, LQ_PAYLOAD_MAX_DEFAULT, &f, &consumed, &need),
                     LQ_FRAME_TOO_LARGE);
    /* meta exactly at the cap is fine (needs more bytes) */
    lq_frame_header(hdr, LQ_FRAME_META_MAX, 0);
    assert_int_equal(lq_frame_parse(hdr, sizeof hdr, 0, &f, &consumed, &need), LQ_FRAME_NEED_MORE);
    assert_int_equal(need, LQ_FRAME_HEADER_BYTES + LQ_FRAME_META_MAX);
    /* payload one above the caller's cap, and exactly at it */
    lq_frame_header(hdr, 10, 1001);
    assert_int_equal(lq_frame_parse(hdr, sizeof hdr, 1000, &f, &consumed, &need), LQ_FRAME_TOO_LARGE);
    lq_frame_header(hdr, 10, 1000);
    assert_int_equal(lq_frame_parse(hdr, sizeof hdr, 1000, &f, &consumed, &need), LQ_FRAME_NEED_MORE);
    assert_int_equal(need, 8 + 10 + 1000);
}

static void test_inconsistent_lengths(void **state)
{
    uint8_t hdr[16] = { 0 };
    lq_frame f;
    size_t consumed, need;
    /* length below 4 cannot even hold meta_length */
    for (uint32_t len = 0; len < 4; len++) {
        lq_be32_store(hdr, len);
        lq_be32_store(hdr + 4, 0);
        assert_int_equal(lq_frame_parse(hdr, sizeof hdr, 1024, &f, &consumed, &need), LQ_FRAME_BAD);
    }
    /* meta longer than the frame */
    lq_be32_store(hdr, 4 + 5);
    lq_be32_store(hdr + 4, 6);
    assert_int_equal(lq_frame_parse(hdr, sizeof hdr, 1024, &f, &consumed, &need), LQ_FRAME_BAD);
    /* meta_length near 2^32 must not wrap around */
    lq_be32_store(hdr, 100);
    lq_be32_store(hdr + 4, 0xFFFFFFFFu);
    assert_int_equal(lq_frame_parse(hdr, sizeof hdr, 1024, &f, &consumed, &need), LQ_FRAME_BAD);
    /* no meta at all: every message has at least a request id */
    lq_be32_store(hdr, 4 + 3);
    lq_be32_store(hdr + 4, 0);
    assert_int_equal(lq_frame_parse(hdr, sizeof hdr, 1024, &f, &consumed, &need), LQ_FRAME_BAD);
}

static void test_arena_cap_and_reset(void **state)
{
    lq_arena a;
    assert_int_equal(lq_arena_init(&a, 256, 4096), 0);
    void *p1 = a.pb.alloc(a.pb.allocator_data, 100);
    void *p2 = a.pb.alloc(a.pb.allocator_data, 100);
    assert_non_null(p1);
    assert_non_null(p2);
    assert_true((uint8_t *)p1 >= a.chunk && (uint8_t *)p1 < a.chunk + 256); /* from the chunk */
    assert_int_equal(((uintptr_t)p2) % 16, 0);
    void *big = a.pb.alloc(a.pb.allocator_data, 1000); /* does not fit the chunk: overflow block */
    assert_non_null(big);
    assert_non_null(a.overflow);
    memset(big, 0xAB, 1000);
    assert_null(a.pb.alloc(a.pb.allocator_data, 4096)); /* over the cap */
    lq_arena_reset(&a); /* frees the overflow block: ASan reports a leak otherwise */
    assert_null(a.overflow);
    assert_int_equal(a.total, 0);
    assert_int_equal(a.used, 0);
    assert_non_null(a.pb.alloc(a.pb.allocator_data, 4000)); /* the cap counts from the reset */
    lq_arena_free(&a);
}

/* Packs a Request with an Enqueue of n items into *out (malloc'd). */
static size_t pack_enqueue(size_t n, uint8_t **out)
{
    Leaseq__EnqueueItem *items = calloc(n, sizeof *items);
    Leaseq__EnqueueItem **ptrs = calloc(n, sizeof *ptrs);
    Leaseq__Header h = LEASEQ__HEADER__INIT;
    Leaseq__Header *hp = &h;
    h.key = "trace";
    h.value = "abc";
    assert_true(items != NULL && ptrs != NULL);
    for (size_t i = 0; i < n; i++) {
        leaseq__enqueue_item__init(&items[i]);
        items[i].queue = "images";
        items[i].lane = "api";
        items[i].priority = -(int32_t)i;
        items[i].payload_len = (uint32_t)i;
        items[i].n_headers = 1;
        items[i].headers = &hp;
        ptrs[i] = &items[i];
    }
    Leaseq__Enqueue e = LEASEQ__ENQUEUE__INIT;
    e.n_items = n;
    e.items = ptrs;
    Leaseq__Request r = LEASEQ__REQUEST__INIT;
    r.request_id = 0x1122334455667788ull;
    r.body_case = LEASEQ__REQUEST__BODY_ENQUEUE;
    r.enqueue = &e;
    size_t len = leaseq__request__get_packed_size(&r);
    *out = malloc(len);
    assert_non_null(*out);
    assert_int_equal(leaseq__request__pack(&r, *out), len);
    free(items);
    free(ptrs);
    return len;
}

static void test_arena_unpack_over_cap_fails_cleanly(void **state)
{
    uint8_t *buf;
    size_t len = pack_enqueue(200, &buf); /* ~200 items x (item + header) structs: far over 4 KiB */
    lq_arena a;
    assert_int_equal(lq_arena_init(&a, 1024, 4096), 0);
    assert_null(leaseq__request__unpack(&a.pb, len, buf));
    lq_arena_reset(&a);
    /* the same arena decodes a message that fits */
    free(buf);
    len = pack_enqueue(2, &buf);
    Leaseq__Request *r = leaseq__request__unpack(&a.pb, len, buf);
    assert_non_null(r);
    assert_int_equal(r->enqueue->n_items, 2);
    lq_arena_free(&a);
    free(buf);
}

static void test_request_roundtrip_through_arena(void **state)
{
    uint8_t *buf;
    size_t len = pack_enqueue(50, &buf);
    lq_arena a;
    assert_int_equal(lq_arena_init(&a, 4096, 1u << 20), 0);
    for (int round = 0; round < 3; round++) { /* reuse across resets, as the broker does */
        Leaseq__Request *r = leaseq__request__unpack(&a.pb, len, buf);
        assert_non_null(r);
        assert_true(r->request_id == 0x1122334455667788ull);
        assert_int_equal(r->body_case, LEASEQ__REQUEST__BODY_ENQUEUE);
        assert_int_equal(r->enqueue->n_items, 50);
        for (size_t i = 0; i < 50; i++) {
            const Leaseq__EnqueueItem *it = r->enqueue->items[i];
            assert_string_equal(it->queue, "images");
            assert_string_equal(it->lane, "api");
            assert_string_equal(it->tenant, "");
            assert_int_equal(it->priority, -(int32_t)i);
            assert_int_equal(it->payload_len, i);
            assert_int_equal(it->n_headers, 1);
            assert_string_equal(it->headers[0]->key, "trace");
            assert_string_equal(it->headers[0]->value, "abc");
        }
        /* garbage never decodes, whatever the arena holds */
        uint8_t junk[] = { 0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f, 0x01 };
        assert_null(leaseq__request__unpack(&a.pb, sizeof junk, junk));
        lq_arena_reset(&a);
    }
    lq_arena_free(&a);
    free(buf);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_frame),
        cmocka_unit_test(test_two_frames_back_to_back),
        cmocka_unit_test(test_need_more_every_split),
        cmocka_unit_test(test_too_large_from_header_alone),
        cmocka_unit_test(test_inconsistent_lengths),
        cmocka_unit_test(test_arena_cap_and_reset),
        cmocka_unit_test(test_arena_unpack_over_cap_fails_cleanly),
        cmocka_unit_test(test_request_roundtrip_through_arena),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
