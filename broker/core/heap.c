#include "heap.h"

#include <stdlib.h>

#include "lq_assert.h"

void lq_heap_free(lq_heap *h)
{
    free(h->v);
    h->v = NULL;
    h->n = h->cap = 0;
}

static void place(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t pos, uint32_t item)
{
    h->v[pos] = item;
    ops->set_pos(ctx, item, pos);
}

static void sift_up(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t pos)
{
    uint32_t item = h->v[pos];
    while (pos > 0) {
        uint32_t parent = (pos - 1) / 2;
        if (!ops->less(ctx, item, h->v[parent]))
            break;
        place(h, ops, ctx, pos, h->v[parent]);
        pos = parent;
    }
    place(h, ops, ctx, pos, item);
}

static void sift_down(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t pos)
{
    uint32_t item = h->v[pos];
    for (;;) {
        uint64_t c = 2 * (uint64_t)pos + 1;
        if (c >= h->n)
            break;
        if (c + 1 < h->n && ops->less(ctx, h->v[c + 1], h->v[c]))
            c++;
        if (!ops->less(ctx, h->v[c], item))
            break;
        place(h, ops, ctx, pos, h->v[c]);
        pos = (uint32_t)c;
    }
    place(h, ops, ctx, pos, item);
}

lq_err lq_heap_push(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t item)
{
    if (h->n == h->cap) {
        if (h->cap >= UINT32_MAX / 2)
            return LQ_E_LIMIT;
        uint32_t ncap = h->cap ? h->cap * 2 : 4;
        uint32_t *nv = realloc(h->v, (size_t)ncap * sizeof *nv); /* owner: h */
        if (!nv)
            return LQ_E_NOMEM;
        h->v = nv;
        h->cap = ncap;
    }
    h->v[h->n++] = item;
    sift_up(h, ops, ctx, h->n - 1);
    return LQ_OK;
}

void lq_heap_fix(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t pos)
{
    LQ_ASSERT(pos < h->n);
    if (pos > 0 && ops->less(ctx, h->v[pos], h->v[(pos - 1) / 2]))
        sift_up(h, ops, ctx, pos);
    else
        sift_down(h, ops, ctx, pos);
}

void lq_heap_remove(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t pos)
{
    LQ_ASSERT(pos < h->n);
    uint32_t gone = h->v[pos];
    uint32_t last = h->v[--h->n];
    ops->set_pos(ctx, gone, LQ_NONE);
    if (pos == h->n)
        return;
    h->v[pos] = last;
    ops->set_pos(ctx, last, pos);
    lq_heap_fix(h, ops, ctx, pos);
}

void lq_heap_check(const lq_heap *h, const lq_heap_ops *ops, const void *ctx)
{
    LQ_ASSERT(h->n <= h->cap);
    for (uint32_t i = 0; i < h->n; i++) {
        LQ_ASSERT(ops->get_pos(ctx, h->v[i]) == i);
        if (i > 0)
            LQ_ASSERT(!ops->less(ctx, h->v[i], h->v[(i - 1) / 2]));
    }
}
