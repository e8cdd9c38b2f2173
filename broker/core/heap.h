/* Indexed binary min-heap of u32 items (job slots, session or waiter indexes).
 *
 * The heap stores only item numbers; ordering and the back-pointer to an item's position live
 * with the caller (ops->less, ops->set_pos), so one job struct needs one position field for
 * whichever heap its state puts it in, and any item can be removed or re-keyed in O(log n). */
#ifndef LQ_HEAP_H
#define LQ_HEAP_H

#include <stdbool.h>
#include <stdint.h>

#include "lq_err.h"

#define LQ_NONE UINT32_MAX /* "no item / no position / no link" everywhere in the core */

typedef struct {
    bool (*less)(const void *ctx, uint32_t a, uint32_t b);
    void (*set_pos)(void *ctx, uint32_t item, uint32_t pos); /* LQ_NONE when removed */
    uint32_t (*get_pos)(const void *ctx, uint32_t item);      /* for lq_heap_check */
} lq_heap_ops;

typedef struct {
    uint32_t *v; /* owner: this heap; freed by lq_heap_free */
    uint32_t n, cap;
} lq_heap;

void lq_heap_free(lq_heap *h);
lq_err lq_heap_push(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t item);
void lq_heap_remove(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t pos);
/* Restores order after the key of the item at pos changed (either direction). */
void lq_heap_fix(lq_heap *h, const lq_heap_ops *ops, void *ctx, uint32_t pos);
/* Asserts heap order and that every item knows its position (tests, lq_core_check). */
void lq_heap_check(const lq_heap *h, const lq_heap_ops *ops, const void *ctx);

static inline uint32_t lq_heap_top(const lq_heap *h) { return h->n ? h->v[0] : LQ_NONE; }

#endif
