/* The ready jobs of one tenant, smallest key first (ops->less: priority, then sequence).
 *
 * Jobs nearly always become ready in the order they will be taken (one priority, rising
 * sequence numbers), and a binary heap makes every take pay about 2·log2(n) comparisons, each
 * a cache miss on two job structs: with a 600,000-job backlog that was the loop's largest user
 * space cost (ready_less ≈ 7 %, heap upkeep ≈ 4 % more). So an item that is not smaller than
 * the ring's last one is appended to a FIFO ring (push and pop O(1)); any other (a requeue to
 * the front of the line, a higher priority, a delayed job coming due behind newer ones) goes to
 * an indexed heap; the top is the smaller of the two heads.
 *
 * Positions (ops->set_pos) are heap positions as lq_heap gives them, or LQ_READY_RING plus the
 * item's ring index. Taking an item out of the middle of the ring (cancel, purge, expiry)
 * leaves a hole that the ends skip; a full ring with as many holes as items is compacted
 * instead of grown, so holes cost at most as much memory as the items around them. A large
 * ring is freed when it empties, so a drained backlog does not keep its array. */
#ifndef LQ_READY_H
#define LQ_READY_H

#include <stdbool.h>
#include <stdint.h>

#include "heap.h"
#include "lq_err.h"

#define LQ_READY_RING 0x80000000u /* position flag: in the ring; never set with LQ_NONE's value */
#define LQ_READY_KEEP_CAP 4096u    /* an emptied ring with more slots than this is freed */

typedef struct {
    lq_heap heap;
    uint32_t *ring;   /* owner: this set, freed by lq_ready_free; LQ_NONE marks a hole */
    uint32_t cap;     /* 0 or a power of two, at most 2^30 */
    uint32_t head;    /* ring indexes, modulo 2^32; the items are in [head, tail) */
    uint32_t tail;
    uint32_t n_ring;  /* items in the ring, holes not counted */
} lq_ready;

void lq_ready_free(lq_ready *r);
lq_err lq_ready_push(lq_ready *r, const lq_heap_ops *ops, void *ctx, uint32_t item);
/* Takes out the item at pos (its position as set_pos last gave it). */
void lq_ready_remove(lq_ready *r, const lq_heap_ops *ops, void *ctx, uint32_t pos);
/* The smallest item, LQ_NONE when empty. */
uint32_t lq_ready_top(const lq_ready *r, const lq_heap_ops *ops, const void *ctx);

static inline uint32_t lq_ready_count(const lq_ready *r) { return r->heap.n + r->n_ring; }

/* Every item once, in no particular order: start with *cursor = 0, stop at LQ_NONE. */
uint32_t lq_ready_next(const lq_ready *r, uint32_t *cursor);

/* True when pos is where item sits. */
bool lq_ready_holds(const lq_ready *r, uint32_t item, uint32_t pos);

/* Asserts the order of both parts, the ring's count and ends, and every item's position. */
void lq_ready_check(const lq_ready *r, const lq_heap_ops *ops, const void *ctx);

#endif
