/* A FIFO ring for items that arrive in order, an indexed heap for the rest. See ready.h. */
#include "ready.h"

#include <stdlib.h>
#include <string.h>

#include "lq_assert.h"

#define RING_IDX_MASK 0x3fffffffu /* ring indexes kept in a position: never all ones with the flag */
#define RING_CAP_MIN 64u
#define RING_CAP_MAX (RING_IDX_MASK + 1u)

static uint32_t ring_pos(uint32_t idx) { return LQ_READY_RING | (idx & RING_IDX_MASK); }

void lq_ready_free(lq_ready *r)
{
    lq_heap_free(&r->heap);
    free(r->ring);
    memset(r, 0, sizeof *r);
}

/* Moves the ring's items together from its head, closing the holes. */
static void compact(lq_ready *r, const lq_heap_ops *ops, void *ctx)
{
    uint32_t m = r->cap - 1, dst = r->head;
    for (uint32_t idx = r->head; idx != r->tail; idx++) {
        uint32_t it = r->ring[idx & m];
        if (it == LQ_NONE)
            continue;
        if (dst != idx) {
            r->ring[dst & m] = it;
            ops->set_pos(ctx, it, ring_pos(dst));
        }
        dst++;
    }
    r->tail = dst;
}

/* Room for one more at the tail: compacts a ring that is half holes, otherwise doubles it. */
static lq_err ring_room(lq_ready *r, const lq_heap_ops *ops, void *ctx)
{
    uint32_t len = r->tail - r->head;
    if (r->cap != 0 && len < r->cap)
        return LQ_OK;
    if (r->cap != 0 && len - r->n_ring >= len / 2) {
        compact(r, ops, ctx);
        return LQ_OK;
    }
    uint32_t ncap = r->cap ? r->cap * 2 : RING_CAP_MIN;
    if (ncap > RING_CAP_MAX || ncap < r->cap)
        return LQ_E_LIMIT;
    uint32_t *nr = malloc((size_t)ncap * sizeof *nr); /* owner: this set */
    if (nr == NULL)
        return LQ_E_NOMEM;
    /* Positions hold the low bits of the ring index, so an item's new slot follows from them. */
    for (uint32_t idx = r->head; idx != r->tail; idx++)
        nr[idx & (ncap - 1)] = r->ring[idx & (r->cap - 1)];
    free(r->ring);
    r->ring = nr;
    r->cap = ncap;
    return LQ_OK;
}

lq_err lq_ready_push(lq_ready *r, const lq_heap_ops *ops, void *ctx, uint32_t item)
{
    LQ_ASSERT(item != LQ_NONE);
    if (r->n_ring == 0 || !ops->less(ctx, item, r->ring[(r->tail - 1) & (r->cap - 1)])) {
        /* Not smaller than the last one: the ring stays sorted. Without room (no memory, or
         * 2^30 slots) the heap takes it, which is always correct. */
        if (ring_room(r, ops, ctx) == LQ_OK) {
            uint32_t idx = r->tail++;
            r->ring[idx & (r->cap - 1)] = item;
            r->n_ring++;
            ops->set_pos(ctx, item, ring_pos(idx));
            return LQ_OK;
        }
    }
    LQ_ASSERT(r->heap.n < LQ_READY_RING - 1);
    return lq_heap_push(&r->heap, ops, ctx, item);
}

void lq_ready_remove(lq_ready *r, const lq_heap_ops *ops, void *ctx, uint32_t pos)
{
    LQ_ASSERT(pos != LQ_NONE);
    if (!(pos & LQ_READY_RING)) {
        lq_heap_remove(&r->heap, ops, ctx, pos);
        return;
    }
    uint32_t m = r->cap - 1;
    LQ_ASSERT(r->cap != 0 && r->n_ring > 0);
    uint32_t item = r->ring[pos & m];
    LQ_ASSERT(item != LQ_NONE);
    r->ring[pos & m] = LQ_NONE;
    r->n_ring--;
    ops->set_pos(ctx, item, LQ_NONE);
    /* The ends are never holes: the head is the ring's smallest, the tail what pushes compare to. */
    while (r->head != r->tail && r->ring[r->head & m] == LQ_NONE)
        r->head++;
    while (r->tail != r->head && r->ring[(r->tail - 1) & m] == LQ_NONE)
        r->tail--;
    if (r->n_ring == 0 && r->cap > LQ_READY_KEEP_CAP) {
        free(r->ring);
        r->ring = NULL;
        r->cap = 0;
        r->head = r->tail = 0;
    }
}

uint32_t lq_ready_top(const lq_ready *r, const lq_heap_ops *ops, const void *ctx)
{
    uint32_t rt = r->n_ring ? r->ring[r->head & (r->cap - 1)] : LQ_NONE;
    uint32_t ht = lq_heap_top(&r->heap);
    if (rt == LQ_NONE)
        return ht;
    if (ht == LQ_NONE)
        return rt;
    return ops->less(ctx, ht, rt) ? ht : rt;
}

uint32_t lq_ready_next(const lq_ready *r, uint32_t *cursor)
{
    uint32_t k = *cursor;
    if (k < r->heap.n) {
        *cursor = k + 1;
        return r->heap.v[k];
    }
    uint32_t len = r->tail - r->head;
    for (uint32_t off = k - r->heap.n; off < len; off++) {
        uint32_t it = r->ring[(r->head + off) & (r->cap - 1)];
        if (it != LQ_NONE) {
            *cursor = r->heap.n + off + 1;
            return it;
        }
    }
    *cursor = r->heap.n + len;
    return LQ_NONE;
}

bool lq_ready_holds(const lq_ready *r, uint32_t item, uint32_t pos)
{
    if (pos == LQ_NONE || item == LQ_NONE)
        return false;
    if (!(pos & LQ_READY_RING))
        return pos < r->heap.n && r->heap.v[pos] == item;
    if (r->cap == 0)
        return false;
    uint32_t m = r->cap - 1;
    uint32_t off = ((pos & m) - (r->head & m)) & m;
    return off < r->tail - r->head && ring_pos(r->head + off) == pos && r->ring[pos & m] == item;
}

void lq_ready_check(const lq_ready *r, const lq_heap_ops *ops, const void *ctx)
{
    lq_heap_check(&r->heap, ops, ctx);
    LQ_ASSERT(r->heap.n < LQ_READY_RING);
    uint32_t len = r->tail - r->head;
    LQ_ASSERT(len <= r->cap && (r->cap == 0 || (r->cap & (r->cap - 1)) == 0));
    uint32_t live = 0, prev = LQ_NONE;
    for (uint32_t off = 0; off < len; off++) {
        uint32_t idx = r->head + off;
        uint32_t it = r->ring[idx & (r->cap - 1)];
        if (it == LQ_NONE) {
            LQ_ASSERT(off != 0 && off != len - 1);
            continue;
        }
        LQ_ASSERT(ops->get_pos(ctx, it) == ring_pos(idx));
        LQ_ASSERT(prev == LQ_NONE || !ops->less(ctx, it, prev));
        prev = it;
        live++;
    }
    LQ_ASSERT(live == r->n_ring);
}
