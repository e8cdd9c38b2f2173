/* A table of parked requests of one kind (parked dequeues, parked job waits).
 *
 * Each element starts with an srv_slot. A slot's handle (index | generation << 32) is what the
 * core holds; freeing the slot bumps the generation, so a late event for a freed or reused
 * slot finds nothing. Parked slots are also linked into their connection's list, so a closing
 * connection drops its own requests without a scan of the table. */
#ifndef LQ_SRV_SLOTS_H
#define LQ_SRV_SLOTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "core/lq_err.h"
#include "net/loop.h"

typedef struct {
    uint32_t head;  /* first slot's index + 1; 0 = empty */
    uint32_t count;
} srv_slot_list;

typedef struct {
    lq_conn_id conn;
    uint64_t request_id;
    uint32_t gen;
    bool live;              /* parked: linked into its connection's list */
    uint32_t prev, next;    /* that list, index + 1 */
} srv_slot;

typedef struct {
    uint8_t *v;             /* owner: table; elements of `size` bytes, each starting with srv_slot */
    size_t size;
    uint32_t n, cap;
    uint32_t *free;         /* owner: table; stack of unused indexes */
    uint32_t n_free;
} srv_slots;

void srv_slots_init(srv_slots *t, size_t elem_size);
void srv_slots_fini(srv_slots *t);

/* Parked requests held now. */
static inline uint32_t srv_slots_live(const srv_slots *t) { return t->n - t->n_free; }
static inline void *srv_slots_at(const srv_slots *t, uint32_t i) { return t->v + (size_t)i * t->size; }
static inline uint64_t srv_slots_handle(const srv_slots *t, uint32_t i)
{
    return (uint64_t)i | (uint64_t)((const srv_slot *)srv_slots_at(t, i))->gen << 32;
}

/* A fresh, unparked slot. A reused element keeps its payload (e.g. buffers to reuse); a new
 * one is zeroed. */
lq_err srv_slots_alloc(srv_slots *t, uint64_t *handle);
/* The element of a handle, or NULL once the handle is stale. */
void *srv_slots_get(const srv_slots *t, uint64_t handle);
/* Parks the slot: links it into the connection's list. */
void srv_slots_park(srv_slots *t, srv_slot_list *l, uint64_t handle, lq_conn_id conn, uint64_t request_id);
/* Unlinks (l: its connection's list, NULL if the connection is gone) and frees the slot. */
void srv_slots_free(srv_slots *t, srv_slot_list *l, uint64_t handle);
/* Frees every slot of a closing connection's list, calling cancel(ctx, handle) for each first. */
void srv_slots_drop_list(srv_slots *t, srv_slot_list *l, void (*cancel)(void *ctx, uint64_t handle), void *ctx);

#endif
