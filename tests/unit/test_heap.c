/* Unit tests of the core's building blocks: the indexed heap, the ready set (its FIFO ring for
 * items that arrive in order, the heap for the rest), the job table, the u64 map and the name
 * table, each against a simple reference under random operations; the ready set also in the
 * cases the ring exists for (in-order pushes never touch the heap) and its upkeep (holes,
 * compaction, growth with positions kept, index wrap). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include "core/heap.h"
#include "core/jobs.h"
#include "core/map.h"
#include "core/names.h"
#include "core/ready.h"

static uint64_t rng_state = 12345;
static uint64_t rnd(void)
{
    uint64_t z = (rng_state += 0x9e3779b97f4a7c15ull);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
    return z ^ (z >> 31);
}

/* items are indexes into key[] and pos[] */
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

static void test_heap_random(void **state)
{
    items *it = calloc(1, sizeof *it);
    lq_heap h = {0};
    for (int step = 0; step < 200000; step++) {
        uint32_t i = (uint32_t)(rnd() % N_ITEMS);
        int op = (int)(rnd() % 4);
        if (!it->in[i]) {
            it->key[i] = rnd() % 1000;
            assert_int_equal(lq_heap_push(&h, &it_ops, it, i), LQ_OK);
            it->in[i] = true;
        } else if (op == 0) {
            lq_heap_remove(&h, &it_ops, it, it->pos[i]);
            assert_int_equal(it->pos[i], LQ_NONE);
            it->in[i] = false;
        } else if (op == 1) {
            it->key[i] = rnd() % 1000;
            lq_heap_fix(&h, &it_ops, it, it->pos[i]);
        } else if (op == 2 && h.n) {
            /* the top is the minimum over everything in the heap */
            uint32_t top = lq_heap_top(&h);
            for (uint32_t k = 0; k < N_ITEMS; k++)
                if (it->in[k])
                    assert_false(it_less(it, k, top));
            lq_heap_remove(&h, &it_ops, it, 0);
            it->in[top] = false;
        }
        if (step % 5000 == 0)
            lq_heap_check(&h, &it_ops, it);
    }
    lq_heap_check(&h, &it_ops, it);
    /* draining gives sorted order */
    uint32_t prev = LQ_NONE;
    while (h.n) {
        uint32_t top = lq_heap_top(&h);
        if (prev != LQ_NONE)
            assert_false(it_less(it, top, prev));
        lq_heap_remove(&h, &it_ops, it, 0);
        prev = top;
    }
    assert_int_equal(lq_heap_top(&h), LQ_NONE);
    lq_heap_free(&h);
    free(it);
}

static uint32_t ref_min(const items *it)
{
    uint32_t best = LQ_NONE;
    for (uint32_t k = 0; k < N_ITEMS; k++)
        if (it->in[k] && (best == LQ_NONE || it_less(it, k, best)))
            best = k;
    return best;
}

/* Puts item k with the given key into r. */
static void put(lq_ready *r, items *it, uint32_t k, uint64_t key)
{
    it->key[k] = key;
    assert_int_equal(lq_ready_push(r, &it_ops, it, k), LQ_OK);
    it->in[k] = true;
}

/* Takes the top out of r and returns it, after checking it is the one the test expects. */
static uint32_t take_top(lq_ready *r, items *it, uint32_t want)
{
    uint32_t top = lq_ready_top(r, &it_ops, it);
    assert_int_equal(top, want);
    lq_ready_remove(r, &it_ops, it, it->pos[top]);
    assert_int_equal(it->pos[top], LQ_NONE);
    it->in[top] = false;
    return top;
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

static bool seq_less(const void *ctx, uint32_t a, uint32_t b)
{
    (void)ctx;
    return a < b;
}
static void seq_set(void *ctx, uint32_t item, uint32_t pos) { ((uint32_t *)ctx)[item] = pos; }
static uint32_t seq_get(const void *ctx, uint32_t item) { return ((const uint32_t *)ctx)[item]; }
static const lq_heap_ops seq_ops = {seq_less, seq_set, seq_get};

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
            put(&r, it, i, rnd() % 10 == 0 ? rnd() % next_key : next_key++);
        } else if (op == 0) {
            lq_ready_remove(&r, &it_ops, it, it->pos[i]);
            assert_int_equal(it->pos[i], LQ_NONE);
            it->in[i] = false;
        } else if (op <= 3) {
            (void)take_top(&r, it, ref_min(it));
        }
        if (step % 10000 == 0)
            check_all(&r, it);
    }
    check_all(&r, it);
    /* draining gives sorted order */
    uint32_t prev = LQ_NONE;
    while (lq_ready_count(&r) > 0) {
        uint32_t top = take_top(&r, it, ref_min(it));
        if (prev != LQ_NONE)
            assert_false(it_less(it, top, prev));
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
            (void)take_top(&r, it, k / 2);
        }
    }
    assert_int_equal(r.heap.n, 0);
    assert_int_equal(lq_ready_count(&r), 900);
    check_all(&r, it);
    /* a smaller key (a requeue to the front) goes to the heap and comes out first */
    put(&r, it, 1900, 0);
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
        put(&r, it, k, k);
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
    put(&r, it, 64, 64);
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
        put(&r, it, k, k);
    }
    assert_true(r.cap >= 256);
    assert_int_equal(r.heap.n, 0);
    check_all(&r, it);
    lq_ready_free(&r);
    free(it);
    /* an emptied ring is kept up to LQ_READY_KEEP_CAP slots for the next pushes, freed above */
    enum { BIG = 3 * LQ_READY_KEEP_CAP };
    uint32_t *seq_pos = malloc(BIG * sizeof *seq_pos);
    for (uint32_t want = LQ_READY_KEEP_CAP; want <= BIG; want += BIG - LQ_READY_KEEP_CAP) {
        lq_ready q = {0};
        for (uint32_t k = 0; k < want; k++)
            assert_int_equal(lq_ready_push(&q, &seq_ops, seq_pos, k), LQ_OK);
        assert_int_equal(q.heap.n, 0);
        for (uint32_t k = 0; k < want; k++) {
            assert_int_equal(lq_ready_top(&q, &seq_ops, seq_pos), k);
            lq_ready_remove(&q, &seq_ops, seq_pos, seq_pos[k]);
        }
        assert_int_equal(lq_ready_count(&q), 0);
        if (want > LQ_READY_KEEP_CAP)
            assert_true(q.cap == 0 && q.ring == NULL);
        else
            assert_int_equal(q.cap, LQ_READY_KEEP_CAP);
        lq_ready_free(&q);
    }
    free(seq_pos);
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
        put(&r, it, k, pushed++);
        if (round % 4 == 3) {
            (void)take_top(&r, it, popped % N_ITEMS);
            popped++;
        }
    }
    assert_true(r.tail < 1000); /* it wrapped */
    assert_int_equal(r.heap.n, 0);
    check_all(&r, it);
    lq_ready_free(&r);
    free(it);
}

static void test_jobs_table(void **state)
{
    lq_jobs t;
    lq_jobs_init(&t);
    enum { N = 50000 };
    uint32_t *slot_of = malloc(sizeof(uint32_t) * (N + 1));
    for (uint32_t i = 0; i <= N; i++)
        slot_of[i] = LQ_NONE;
    uint32_t live = 0;
    for (int step = 0; step < 300000; step++) {
        uint64_t id = 1 + rnd() % N;
        if (slot_of[id] == LQ_NONE) {
            assert_int_equal(lq_jobs_find(&t, id), LQ_NONE);
            assert_int_equal(lq_jobs_reserve(&t), LQ_OK);
            slot_of[id] = lq_jobs_add(&t, id);
            lq_jobs_at(&t, slot_of[id])->state = 1;
            live++;
        } else {
            assert_int_equal(lq_jobs_find(&t, id), slot_of[id]);
            assert_int_equal(lq_jobs_at(&t, slot_of[id])->id, id);
            if (rnd() % 2) {
                lq_jobs_del(&t, slot_of[id]);
                slot_of[id] = LQ_NONE;
                live--;
            }
        }
        assert_int_equal(t.n_live, live);
    }
    for (uint64_t id = 1; id <= N; id++)
        assert_int_equal(lq_jobs_find(&t, id), slot_of[id]);
    /* slots are reused: the table never holds more slots than the peak */
    assert_true(t.n_slots <= N);
    assert_true(sizeof(lq_job) <= 88);
    lq_jobs_free(&t);
    free(slot_of);
}

static void test_map(void **state)
{
    lq_map m = {0};
    enum { N = 5000 };
    uint32_t *ref = malloc(sizeof(uint32_t) * N);
    for (int i = 0; i < N; i++)
        ref[i] = LQ_NONE;
    for (int step = 0; step < 100000; step++) {
        uint64_t k = rnd() % N;
        uint64_t key = k * 0x100000001ull; /* keys with structure, like lane << 32 | name */
        if (rnd() % 3) {
            uint32_t v = (uint32_t)(rnd() % 1000);
            assert_int_equal(lq_map_put(&m, key, v), LQ_OK);
            ref[k] = v;
        } else {
            lq_map_del(&m, key);
            ref[k] = LQ_NONE;
        }
        if (step % 1000 == 0)
            for (int i = 0; i < N; i++)
                assert_int_equal(lq_map_get(&m, (uint64_t)i * 0x100000001ull), ref[i]);
    }
    lq_map_free(&m);
    free(ref);
}

static void test_names(void **state)
{
    lq_names t = {0};
    uint32_t a, b, c;
    assert_int_equal(lq_names_intern(&t, lq_str_c("api"), &a), LQ_OK);
    assert_int_equal(lq_names_intern(&t, lq_str_c("app"), &b), LQ_OK);
    assert_int_equal(lq_names_intern(&t, (lq_str){"api-extra", 3}, &c), LQ_OK);
    assert_int_equal(a, c);
    assert_int_not_equal(a, b);
    assert_true(lq_str_eq(lq_names_get(&t, b), lq_str_c("app")));
    char buf[32];
    for (int i = 0; i < 1000; i++) {
        snprintf(buf, sizeof buf, "tenant-%d", i);
        uint32_t id;
        assert_int_equal(lq_names_intern(&t, lq_str_c(buf), &id), LQ_OK);
        assert_int_equal(lq_names_find(&t, lq_str_c(buf)), id);
    }
    assert_int_equal(lq_names_find(&t, lq_str_c("nope")), LQ_NONE);
    assert_int_equal(lq_names_find(&t, lq_str_c("api")), a);
    assert_true(lq_name_valid(lq_str_c("a-b+c/d;e.f$g_h(i)")));
    assert_false(lq_name_valid(lq_str_c("-a")));
    assert_false(lq_name_valid(lq_str_c("")));
    assert_false(lq_name_valid(lq_str_c("a b")));
    lq_names_free(&t);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_heap_random),
        cmocka_unit_test(test_ready_random),
        cmocka_unit_test(test_ready_fifo_stays_in_ring),
        cmocka_unit_test(test_ready_holes_compact),
        cmocka_unit_test(test_ready_index_wrap),
        cmocka_unit_test(test_jobs_table),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
