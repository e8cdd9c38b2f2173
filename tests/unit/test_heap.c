/* Unit tests of the core's building blocks: the indexed heap, the job table, the u64 map and
 * the name table, each against a simple reference under random operations. */
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
        cmocka_unit_test(test_jobs_table),
        cmocka_unit_test(test_map),
        cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
