#include "arena.h"

#include <stdlib.h>

struct overflow_block {
    struct overflow_block *next;
    max_align_t data[];
};

static void *arena_alloc(void *ctx, size_t size)
{
    lq_arena *a = ctx;
    size = (size + 15) & ~(size_t)15;
    if (size > a->cap - a->total)
        return NULL;
    if (size <= a->chunk_size - a->used) {
        void *p = a->chunk + a->used;
        a->used += size;
        a->total += size;
        return p;
    }
    struct overflow_block *b = malloc(sizeof *b + size); /* owner: arena, freed on reset */
    if (b == NULL)
        return NULL;
    b->next = a->overflow;
    a->overflow = b;
    a->total += size;
    return b->data;
}

static void arena_free(void *ctx, void *p)
{
    /* Released all at once by lq_arena_reset. */
    (void)ctx;
    (void)p;
}

int lq_arena_init(lq_arena *a, size_t chunk_size, size_t cap)
{
    a->chunk = malloc(chunk_size); /* owner: arena */
    if (a->chunk == NULL)
        return -1;
    a->chunk_size = chunk_size;
    a->used = 0;
    a->overflow = NULL;
    a->total = 0;
    a->cap = cap;
    a->pb.alloc = arena_alloc;
    a->pb.free = arena_free;
    a->pb.allocator_data = a;
    return 0;
}

void lq_arena_reset(lq_arena *a)
{
    struct overflow_block *b = a->overflow;
    while (b != NULL) {
        struct overflow_block *next = b->next;
        free(b);
        b = next;
    }
    a->overflow = NULL;
    a->used = 0;
    a->total = 0;
}

void lq_arena_free(lq_arena *a)
{
    lq_arena_reset(a);
    free(a->chunk);
    a->chunk = NULL;
}
