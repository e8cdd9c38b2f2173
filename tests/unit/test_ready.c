/* Unit tests of the ready set (broker/core/ready.c): the FIFO ring for items that arrive in
 * order, the heap for the rest, against a reference under random operations, plus the cases
 * the ring exists for (in-order pushes never touch the heap) and its upkeep (holes, compaction,
 * growth with positions kept). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/ready.h"

static uint64_t rng_state = 777;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* items are indexes into key[] and pos[]; key ties broken by index, like seq breaks
 * priority ties in the broker */
enum { N_ITEMS = 2000 };
typedef struct {
    uint64_t key[N_ITEMS];
    uint32_t pos[N_ITEMS];
    bool in[N_ITEMS];
} items;

static bool it_less(const void *ctx, uint32_t a, uint32_t b)
{
    const items *it = ctx;
    return it->key[a] != it->key[b] ? it->key[a] < it->key[b] : a < b;
}
static void it_set(void *ctx, uint32_t item, uint32_t pos) { ((items *)ctx)->pos[item] = pos; }
static uint32_t it_get(const void *ctx, uint32_t item) { return ((const items *)ctx)->pos[item]; }
static const lq_heap_ops it_ops = {it_less, it_set, it_get};

static uint32_t ref_min(const items *it)
{
    uint32_t best = LQ_NONE;
    for (uint32_t k = 0; k < N_ITEMS; k++)
        if (it->in[k] && (best == LQ_NONE || it_less(it, k, best)))
            best = k;
    return best;
}

static void check_all(const lq_ready *r, const items *it)
{
    lq_ready_check(r, &it_ops, it);
    uint32_t n = 0;
    for (uint32_t k = 0; k < N_ITEMS; k++) {
        if (it->in[k]) {
            n++;
            assert_true(lq_ready_holds(r, k, it->pos[k]));
        } else {
            assert_int_equal(it->pos[k], LQ_NONE);
        }
    }
    assert_int_equal(lq_ready_count(r), n);
    /* the iteration sees every item once */
    uint8_t *seen = calloc(N_ITEMS, 1);
    uint32_t cur = 0, m = 0;
    for (uint32_t s = lq_ready_next(r, &cur); s != LQ_NONE; s = lq_ready_next(r, &cur)) {
        assert_true(s < N_ITEMS && it->in[s] && !seen[s]);
        seen[s] = 1;
        m++;
    }
    assert_int_equal(m, n);
    free(seen);
}

static items *items_new(void)
{
    items *it = calloc(1, sizeof *it);
    for (uint32_t k = 0; k < N_ITEMS; k++)
        it->pos[k] = LQ_NONE;
    return it;
}

/* Mostly rising keys (the broker's common case) with some smaller ones, removals from
 * anywhere and pops of the top; the top always equals the reference's minimum. */
static void test_ready_random(void **state)
{
    (void)state;
    items *it = items_new();
    lq_ready r = {0};
    uint64_t next_key = 1000;
    for (int step = 0; step < 200000; step++) {
        uint32_t i = (uint32_t)(rnd() % N_ITEMS);
        int op = (int)(rnd() % 8);
        if (!it->in[i]) {
            it->key[i] = rnd() % 10 == 0 ? rnd() % next_key : next_key++;
            assert_int_equal(lq_ready_push(&r, &it_ops, it, i), LQ_OK);
            it->in[i] = true;
        } else if (op == 0) {
            lq_ready_remove(&r, &it_ops, it, it->pos[i]);
            assert_int_equal(it->pos[i], LQ_NONE);
            it->in[i] = false;
        } else if (op <= 3) {
            uint32_t top = lq_ready_top(&r, &it_ops, it);
            assert_int_equal(top, ref_min(it));
            lq_ready_remove(&r, &it_ops, it, it->pos[top]);
            it->in[top] = false;
        }
        if (step % 10000 == 0)
            check_all(&r, it);
    }
    check_all(&r, it);
    /* draining gives sorted order */
    uint32_t prev = LQ_NONE;
    while (lq_ready_count(&r) > 0) {
        uint32_t top = lq_ready_top(&r, &it_ops, it);
        assert_int_equal(top, ref_min(it));
        if (prev != LQ_NONE)
            assert_false(it_less(it, top, prev));
        lq_ready_remove(&r, &it_ops, it, it->pos[top]);
        it->in[top] = false;
        prev = top;
    }
    assert_int_equal(lq_ready_top(&r, &it_ops, it), LQ_NONE);
    check_all(&r, it);
    lq_ready_free(&r);
    free(it);
}

/* In-order pushes and pops from the front, the broker's steady state, never use the heap. */
static void test_ready_fifo_stays_in_ring(void **state)
{
    (void)state;
    items *it = items_new();
    lq_ready r = {0};
    for (uint32_t k = 0; k < 1800; k++) {
        it->key[k] = k / 3; /* equal keys too: ties are ordered by index, still rising */
        assert_int_equal(lq_ready_push(&r, &it_ops, it, k), LQ_OK);
        it->in[k] = true;
        assert_true(it->pos[k] & LQ_READY_RING);
        if (k % 2 == 1) { /* take one for every two pushed */
            uint32_t top = lq_ready_top(&r, &it_ops, it);
            assert_int_equal(top, k / 2);
            lq_ready_remove(&r, &it_ops, it, it->pos[top]);
            it->in[top] = false;
        }
    }
    assert_int_equal(r.heap.n, 0);
    assert_int_equal(lq_ready_count(&r), 900);
    check_all(&r, it);
    /* a smaller key (a requeue to the front) goes to the heap and comes out first */
    it->key[1900] = 0;
    assert_int_equal(lq_ready_push(&r, &it_ops, it, 1900), LQ_OK);
    it->in[1900] = true;
    assert_false(it->pos[1900] & LQ_READY_RING);
    assert_int_equal(r.heap.n, 1);
    assert_int_equal(lq_ready_top(&r, &it_ops, it), 1900);
    check_all(&r, it);
    lq_ready_free(&r);
    free(it);
}

/* Removing from the middle leaves holes; a full ring that is half holes is compacted (items
 * keep their order and learn their new positions) instead of growing. */
static void test_ready_holes_compact(void **state)
{
    (void)state;
    items *it = items_new();
    lq_ready r = {0};
    for (uint32_t k = 0; k < 64; k++) {
        it->key[k] = k;
        assert_int_equal(lq_ready_push(&r, &it_ops, it, k), LQ_OK);
        it->in[k] = true;
    }
    assert_int_equal(r.cap, 64);
    for (uint32_t k = 1; k < 63; k += 2) { /* every odd one but the last, and 2: 32 holes inside */
        lq_ready_remove(&r, &it_ops, it, it->pos[k]);
        it->in[k] = false;
    }
    lq_ready_remove(&r, &it_ops, it, it->pos[2]);
    it->in[2] = false;
    check_all(&r, it);
    assert_int_equal(r.tail - r.head, 64);
    it->key[64] = 64;
    assert_int_equal(lq_ready_push(&r, &it_ops, it, 64), LQ_OK);
    it->in[64] = true;
    assert_int_equal(r.cap, 64); /* compacted, not grown */
    assert_int_equal(r.tail - r.head, lq_ready_count(&r));
    check_all(&r, it);
    /* removing the ends moves them past the holes */
    lq_ready_remove(&r, &it_ops, it, it->pos[64]);
    it->in[64] = false;
    lq_ready_remove(&r, &it_ops, it, it->pos[0]);
    it->in[0] = false;
    check_all(&r, it);
    assert_int_equal(lq_ready_top(&r, &it_ops, it), 4);
    /* a full ring without holes doubles and keeps every position valid */
    for (uint32_t k = 100; k < 330; k++) {
        it->key[k] = k;
        assert_int_equal(lq_ready_push(&r, &it_ops, it, k), LQ_OK);
        it->in[k] = true;
    }
    assert_true(r.cap >= 256);
    assert_int_equal(r.heap.n, 0);
    check_all(&r, it);
    lq_ready_free(&r);
    free(it);
}

/* Ring indexes wrap around 2^32 (and positions keep 30 bits of them) without confusion. */
static void test_ready_index_wrap(void **state)
{
    (void)state;
    items *it = items_new();
    lq_ready r = {0};
    r.head = r.tail = UINT32_MAX - 100;
    uint32_t pushed = 0, popped = 0;
    for (uint32_t round = 0; round < 400; round++) {
        uint32_t k = pushed % N_ITEMS;
        it->key[k] = pushed++;
        assert_int_equal(lq_ready_push(&r, &it_ops, it, k), LQ_OK);
        it->in[k] = true;
        if (round % 4 == 3) {
            uint32_t top = lq_ready_top(&r, &it_ops, it);
            assert_int_equal(top, popped % N_ITEMS);
            lq_ready_remove(&r, &it_ops, it, it->pos[top]);
            it->in[top] = false;
            popped++;
        }
    }
    assert_true(r.tail < 1000); /* it wrapped */
    assert_int_equal(r.heap.n, 0);
    check_all(&r, it);
    lq_ready_free(&r);
    free(it);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_ready_random),
        cmocka_unit_test(test_ready_fifo_stays_in_ring),
        cmocka_unit_test(test_ready_holes_compact),
        cmocka_unit_test(test_ready_index_wrap),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
