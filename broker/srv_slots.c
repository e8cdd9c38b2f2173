#include "srv_slots.h"

#include <stdlib.h>
#include <string.h>

#include "core/lq_assert.h"

static srv_slot *slot(const srv_slots *t, uint32_t i) { return srv_slots_at(t, i); }

void srv_slots_init(srv_slots *t, size_t elem_size)
{
    LQ_ASSERT(elem_size >= sizeof(srv_slot));
    *t = (srv_slots){.size = elem_size};
}

void srv_slots_fini(srv_slots *t)
{
    free(t->v);
    free(t->free);
    *t = (srv_slots){.size = t->size};
}

lq_err srv_slots_alloc(srv_slots *t, uint64_t *handle)
{
    uint32_t i;
    if (t->n_free > 0) {
        i = t->free[--t->n_free];
    } else {
        if (t->n == t->cap) {
            uint32_t cap = t->cap ? t->cap * 2 : 64;
            uint8_t *nv = realloc(t->v, (size_t)cap * t->size); /* owner: table */
            if (nv == NULL)
                return LQ_E_NOMEM;
            t->v = nv;
            uint32_t *nf = realloc(t->free, (size_t)cap * sizeof *nf); /* owner: table */
            if (nf == NULL)
                return LQ_E_NOMEM; /* the larger element array is harmless: cap unchanged */
            t->free = nf;
            t->cap = cap;
        }
        i = t->n++;
        memset(srv_slots_at(t, i), 0, t->size);
    }
    srv_slot *s = slot(t, i);
    s->gen++;
    s->live = false;
    s->prev = s->next = 0;
    *handle = srv_slots_handle(t, i);
    return LQ_OK;
}

void *srv_slots_get(const srv_slots *t, uint64_t handle)
{
    uint32_t i = (uint32_t)handle;
    if (i >= t->n || slot(t, i)->gen != (uint32_t)(handle >> 32))
        return NULL;
    return srv_slots_at(t, i);
}

void srv_slots_park(srv_slots *t, srv_slot_list *l, uint64_t handle, lq_conn_id conn, uint64_t request_id)
{
    srv_slot *s = srv_slots_get(t, handle);
    LQ_ASSERT(s != NULL && !s->live);
    uint32_t i = (uint32_t)handle;
    s->live = true;
    s->conn = conn;
    s->request_id = request_id;
    s->prev = 0;
    s->next = l->head;
    if (l->head)
        slot(t, l->head - 1)->prev = i + 1;
    l->head = i + 1;
    l->count++;
}

void srv_slots_free(srv_slots *t, srv_slot_list *l, uint64_t handle)
{
    srv_slot *s = srv_slots_get(t, handle);
    if (s == NULL)
        return;
    if (s->live && l != NULL) {
        if (s->prev)
            slot(t, s->prev - 1)->next = s->next;
        else
            l->head = s->next;
        if (s->next)
            slot(t, s->next - 1)->prev = s->prev;
        l->count--;
    }
    s->live = false;
    s->gen++; /* the handle goes stale at once */
    t->free[t->n_free++] = (uint32_t)handle;
}

void srv_slots_drop_list(srv_slots *t, srv_slot_list *l, void (*cancel)(void *ctx, uint64_t handle), void *ctx)
{
    for (uint32_t k = l->head; k != 0;) {
        srv_slot *s = slot(t, k - 1);
        uint32_t next = s->next;
        cancel(ctx, srv_slots_handle(t, k - 1));
        s->live = false; /* the whole list goes: no unlinking one by one */
        s->gen++;
        t->free[t->n_free++] = k - 1;
        k = next;
    }
    *l = (srv_slot_list){0};
}
