/* A bump allocator for protobuf-c unpacking: one request's decoded metadata lives in one
 * arena that is reset after the request is handled, so decoding costs no malloc per request
 * and a garbled message cannot leak. The arena has a hard cap; a message needing more fails
 * to unpack (PROTOCOL_ERROR) instead of growing memory without bound. */
#ifndef LQ_ARENA_H
#define LQ_ARENA_H

#include <stddef.h>
#include <stdint.h>

#include <protobuf-c/protobuf-c.h>

typedef struct {
    ProtobufCAllocator pb;   /* pass &arena->pb to *_unpack */
    uint8_t *chunk;          /* owned; first chunk, reused across resets */
    size_t chunk_size, used;
    void *overflow;          /* owned; singly linked list of big blocks, freed on reset */
    size_t total, cap;       /* bytes handed out since the reset; hard cap */
} lq_arena;

/* chunk_size: the block kept for reuse; cap: the most one message may take. */
int lq_arena_init(lq_arena *a, size_t chunk_size, size_t cap);
void lq_arena_reset(lq_arena *a);
void lq_arena_free(lq_arena *a);

#endif
