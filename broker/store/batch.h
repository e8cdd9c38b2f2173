/* The inside of lq_batch, for lq_store_commit (the public face is in store.h).
 *
 * A batch is an op log plus an arena that holds copies of everything the ops point to. The
 * arena is a list of blocks that never move, so pointers stay valid while the batch grows;
 * a payload larger than a block gets a block of its own (no realloc copies of MB payloads).
 */
#ifndef LQ_STORE_BATCH_H
#define LQ_STORE_BATCH_H

#include <stdbool.h>
#include <stdint.h>

#include "store.h"

#define LQ_BATCH_OPS_MAX (1u << 22)            /* operations in one batch */
#define LQ_BATCH_PUT_BYTES_MAX (512ull << 20)  /* put_job and finish_job refuse (LQ_E_LIMIT)
                                                  past this many payload + result bytes */
#define LQ_BATCH_KEEP_BYTES (64ull << 20)      /* arena kept across resets */
#define LQ_BATCH_KEEP_OPS (1u << 16)           /* op slots kept across resets */

typedef enum {
    LQ_BOP_PUT = 1,
    LQ_BOP_UPDATE = 2,
    LQ_BOP_DELETE = 3,
    LQ_BOP_FINISH = 4,
    LQ_BOP_SWEEP = 5,
    LQ_BOP_CONFIG = 6,     /* config_rec.c: a = key, b = encoded settings record */
} lq_batch_op_kind;

typedef struct {
    uint8_t kind;          /* lq_batch_op_kind */
    uint8_t state;         /* UPDATE, FINISH */
    uint32_t attempts;     /* UPDATE */
    uint64_t id;
    uint64_t not_before_ms; /* UPDATE */
    uint64_t finished_ms;  /* FINISH */
    uint64_t expires_ms;   /* FINISH; SWEEP: delete results expiring at or before this */
    uint32_t result_crc;   /* FINISH: CRC32C of b */
    uint32_t max;          /* SWEEP: results to delete at most */
    const uint8_t *a;      /* PUT: encoded record; UPDATE, FINISH: error text. Arena memory. */
    uint32_t a_len;
    const uint8_t *b;      /* PUT: payload; FINISH: result bytes. Arena memory. */
    uint32_t b_len;
} lq_batch_op;

/* ops[0..*n) in the order they were added; valid until the next change to the batch. */
const lq_batch_op *lq_batch_ops(const lq_batch *b, uint32_t *n);
uint32_t lq_batch_puts(const lq_batch *b);
/* FINISH operations that carry result bytes: what a second map-full retry can drop. */
uint32_t lq_batch_results(const lq_batch *b);
bool lq_batch_counters(const lq_batch *b, uint64_t *next_id, uint64_t *next_seq);

/* For op kinds built outside batch.c (config_rec.c): a copy of p[0..n) in the batch's arena
 * (NULL on OOM), and a zeroed op appended to the log (NULL when full or OOM). */
void *lq_batch_copy(lq_batch *b, const void *p, size_t n);
lq_batch_op *lq_batch_append_op(lq_batch *b);

#endif
