/* lq_batch: one loop iteration's mutations, copied so the caller's buffers can be reused. */
#include "batch.h"

#include <stdlib.h>
#include <string.h>

#include "../core/lq_assert.h"
#include "record.h"

#define BLOCK_MIN (64u << 10) /* first block; later ones double up to BLOCK_MAX */
#define BLOCK_MAX (4u << 20)  /* bigger items get a block of their own */

typedef struct block {
    struct block *next;
    size_t cap, used;
    _Alignas(8) uint8_t data[];
} block;

struct lq_batch {
    lq_batch_op *ops; /* owner: batch; cap entries */
    uint32_t n, cap;
    uint32_t puts;
    uint32_t *put_at; /* owner: batch; put_at[0..puts) = index in ops of each put, in order */
    uint32_t put_cap;
    uint64_t last_put_id;
    bool puts_unsorted; /* a put's id was not above the one before: lookups scan */
    uint32_t results; /* FINISH ops with result bytes */
    block *head;      /* owner: batch; every block in list order */
    block *cur;       /* the block being filled; blocks after it are empty */
    size_t next_block; /* size of the next ordinary block */
    size_t block_bytes; /* sum of the blocks' cap */
    uint64_t put_bytes; /* record + payload bytes of puts, plus the result bytes of finishes */
    uint64_t data_bytes; /* every byte copied into the arena since the reset */
    bool has_counters;
    uint64_t next_id, next_seq;
};

lq_batch *lq_batch_create(void)
{
    lq_batch *b = calloc(1, sizeof(*b)); /* owner: caller, lq_batch_destroy */
    if (b != NULL)
        b->next_block = BLOCK_MIN;
    return b;
}

static void free_blocks(lq_batch *b, block *k)
{
    while (k != NULL) {
        block *next = k->next;
        LQ_ASSERT(b->block_bytes >= k->cap);
        b->block_bytes -= k->cap;
        free(k);
        k = next;
    }
}

void lq_batch_destroy(lq_batch *b)
{
    if (b == NULL)
        return;
    free_blocks(b, b->head);
    free(b->ops);
    free(b->put_at);
    free(b);
}

void lq_batch_reset(lq_batch *b)
{
    /* Keep the leading blocks up to LQ_BATCH_KEEP_BYTES: steady load reuses them without
     * malloc, and one burst of huge payloads does not pin its memory for ever. */
    size_t kept = 0;
    block **link = &b->head;
    while (*link != NULL && kept + (*link)->cap <= LQ_BATCH_KEEP_BYTES) {
        kept += (*link)->cap;
        (*link)->used = 0;
        link = &(*link)->next;
    }
    free_blocks(b, *link);
    *link = NULL;
    b->cur = b->head;

    if (b->cap > LQ_BATCH_KEEP_OPS) {
        free(b->ops);
        b->ops = NULL;
        b->cap = 0;
    }
    if (b->put_cap > LQ_BATCH_KEEP_OPS) {
        free(b->put_at);
        b->put_at = NULL;
        b->put_cap = 0;
    }
    b->n = 0;
    b->puts = 0;
    b->last_put_id = 0;
    b->puts_unsorted = false;
    b->results = 0;
    b->put_bytes = 0;
    b->data_bytes = 0;
    b->has_counters = false;
    b->next_id = b->next_seq = 0;
}

void lq_batch_trim(lq_batch *b)
{
    LQ_ASSERT(b->n == 0);
    free_blocks(b, b->head);
    b->head = b->cur = NULL;
    b->data_bytes = 0;
    b->next_block = BLOCK_MIN;
    free(b->ops);
    b->ops = NULL;
    b->cap = 0;
    free(b->put_at);
    b->put_at = NULL;
    b->put_cap = 0;
}

size_t lq_batch_held_bytes(const lq_batch *b)
{
    return b->block_bytes + (size_t)b->cap * sizeof(*b->ops) + (size_t)b->put_cap * sizeof(*b->put_at);
}

size_t lq_batch_used_bytes(const lq_batch *b)
{
    return b->data_bytes + (size_t)b->n * sizeof(*b->ops) + (size_t)b->puts * sizeof(*b->put_at);
}

uint32_t lq_batch_count(const lq_batch *b) { return b->n; }

uint64_t lq_batch_bytes(const lq_batch *b) { return b->data_bytes; }

/* n > 0 bytes of arena memory, 8-aligned; NULL on OOM. */
static uint8_t *arena_alloc(lq_batch *b, size_t n)
{
    LQ_ASSERT(n > 0);
    n = (n + 7) & ~(size_t)7;
    if (b->cur == NULL && b->head != NULL)
        b->cur = b->head;
    if (b->cur != NULL && b->cur->cap - b->cur->used < n) {
        /* The next kept block is still empty; move on if it is big enough. */
        block *next = b->cur->next;
        if (next != NULL && next->cap >= n)
            b->cur = next;
    }
    if (b->cur == NULL || b->cur->cap - b->cur->used < n) {
        size_t cap = n > b->next_block ? n : b->next_block;
        block *k = malloc(sizeof(block) + cap); /* owner: batch, freed by reset/destroy */
        if (k == NULL)
            return NULL;
        k->cap = cap;
        k->used = 0;
        b->block_bytes += cap;
        if (n <= b->next_block && b->next_block < BLOCK_MAX)
            b->next_block *= 2;
        /* Insert after cur so the kept empty blocks behind it stay usable. */
        if (b->cur == NULL) {
            k->next = b->head;
            b->head = k;
        } else {
            k->next = b->cur->next;
            b->cur->next = k;
        }
        b->cur = k;
    }
    uint8_t *p = b->cur->data + b->cur->used;
    b->cur->used += n;
    b->data_bytes += n;
    return p;
}

static lq_batch_op *push_op(lq_batch *b)
{
    if (b->n == b->cap) {
        if (b->cap >= LQ_BATCH_OPS_MAX)
            return NULL;
        uint32_t cap = b->cap == 0 ? 256 : b->cap * 2;
        lq_batch_op *ops = realloc(b->ops, (size_t)cap * sizeof(*ops)); /* owner: batch */
        if (ops == NULL)
            return NULL;
        b->ops = ops;
        b->cap = cap;
    }
    lq_batch_op *op = &b->ops[b->n];
    memset(op, 0, sizeof(*op));
    return op;
}

lq_err lq_batch_put_job(lq_batch *b, const lq_job_rec *rec, const void *headers, uint32_t headers_len,
                        const void *payload, uint32_t payload_len)
{
    if (rec->payload_len != payload_len || (payload_len > 0 && payload == NULL) ||
        (headers_len > 0 && headers == NULL))
        return LQ_E_INVALID_ARGUMENT;
    size_t rec_len = lq_rec_encoded_len(rec, headers_len);
    if (rec_len == 0)
        return LQ_E_INVALID_ARGUMENT;
    if (b->put_bytes + rec_len + payload_len > LQ_BATCH_PUT_BYTES_MAX)
        return LQ_E_LIMIT;
    if (b->n >= LQ_BATCH_OPS_MAX)
        return LQ_E_LIMIT;
    if (b->puts == b->put_cap) {
        uint32_t cap = b->put_cap == 0 ? 256 : b->put_cap * 2;
        uint32_t *at = realloc(b->put_at, (size_t)cap * sizeof(*at)); /* owner: batch */
        if (at == NULL)
            return LQ_E_NOMEM;
        b->put_at = at;
        b->put_cap = cap;
    }

    /* Arena space is not returned on a failure below; reset reclaims it. */
    uint8_t *r = arena_alloc(b, rec_len);
    if (r == NULL)
        return LQ_E_NOMEM;
    uint8_t *p = NULL;
    if (payload_len > 0) {
        p = arena_alloc(b, payload_len);
        if (p == NULL)
            return LQ_E_NOMEM;
        memcpy(p, payload, payload_len);
    }
    lq_batch_op *op = push_op(b);
    if (op == NULL)
        return LQ_E_NOMEM;
    /* Encoded here, on the loop thread, so the commit only copies bytes into the map. */
    lq_rec_encode(rec, headers, headers_len, r);
    op->kind = LQ_BOP_PUT;
    op->id = rec->id;
    op->a = r;
    op->a_len = (uint32_t)rec_len;
    op->b = p;
    op->b_len = payload_len;
    if (b->puts > 0 && rec->id <= b->last_put_id)
        b->puts_unsorted = true;
    b->last_put_id = rec->id;
    b->put_at[b->puts] = b->n;
    b->n++;
    b->puts++;
    b->put_bytes += rec_len + payload_len;
    return LQ_OK;
}

lq_err lq_batch_update_job(lq_batch *b, uint64_t id, uint8_t state, uint32_t attempts,
                           uint64_t not_before_ms, lq_str last_error)
{
    if (last_error.len > LQ_REC_FIELD_MAX || (last_error.len > 0 && last_error.ptr == NULL))
        return LQ_E_INVALID_ARGUMENT;
    if (b->n >= LQ_BATCH_OPS_MAX)
        return LQ_E_LIMIT;
    uint8_t *e = NULL;
    if (last_error.len > 0) {
        e = arena_alloc(b, last_error.len);
        if (e == NULL)
            return LQ_E_NOMEM;
        memcpy(e, last_error.ptr, last_error.len);
    }
    lq_batch_op *op = push_op(b);
    if (op == NULL)
        return LQ_E_NOMEM;
    op->kind = LQ_BOP_UPDATE;
    op->id = id;
    op->state = state;
    op->attempts = attempts;
    op->not_before_ms = not_before_ms;
    op->a = e;
    op->a_len = last_error.len;
    b->n++;
    return LQ_OK;
}

lq_err lq_batch_delete_job(lq_batch *b, uint64_t id)
{
    if (b->n >= LQ_BATCH_OPS_MAX)
        return LQ_E_LIMIT;
    lq_batch_op *op = push_op(b);
    if (op == NULL)
        return LQ_E_NOMEM;
    op->kind = LQ_BOP_DELETE;
    op->id = id;
    b->n++;
    return LQ_OK;
}

lq_err lq_batch_finish_job(lq_batch *b, uint64_t id, uint8_t final_state, lq_str error,
                           const void *result, uint32_t result_len, uint64_t finished_ms,
                           uint64_t expires_ms)
{
    if (final_state != LQ_STATE_DONE && final_state != LQ_STATE_EXPIRED &&
        final_state != LQ_STATE_PURGED && final_state != LQ_STATE_CANCELLED)
        return LQ_E_INVALID_ARGUMENT;
    if (error.len > LQ_REC_FIELD_MAX || (error.len > 0 && error.ptr == NULL) ||
        (result_len > 0 && result == NULL))
        return LQ_E_INVALID_ARGUMENT;
    /* Results share the cap of puts: both are what makes a batch big. */
    if (b->put_bytes + result_len > LQ_BATCH_PUT_BYTES_MAX || b->n >= LQ_BATCH_OPS_MAX)
        return LQ_E_LIMIT;
    uint8_t *e = NULL, *r = NULL;
    if (error.len > 0) {
        e = arena_alloc(b, error.len);
        if (e == NULL)
            return LQ_E_NOMEM;
        memcpy(e, error.ptr, error.len);
    }
    if (result_len > 0) {
        r = arena_alloc(b, result_len);
        if (r == NULL)
            return LQ_E_NOMEM;
        memcpy(r, result, result_len);
    }
    lq_batch_op *op = push_op(b);
    if (op == NULL)
        return LQ_E_NOMEM;
    op->kind = LQ_BOP_FINISH;
    op->id = id;
    op->state = final_state;
    op->finished_ms = finished_ms;
    op->expires_ms = expires_ms;
    /* Here, on the loop thread, while the bytes are hot from the copy: the committer is the
     * single writer and should only move bytes. */
    op->result_crc = lq_crc32c(r != NULL ? r : (const uint8_t *)"", result_len);
    op->a = e;
    op->a_len = error.len;
    op->b = r;
    op->b_len = result_len;
    b->n++;
    if (result_len > 0)
        b->results++;
    b->put_bytes += result_len;
    return LQ_OK;
}

void lq_batch_sweep_results(lq_batch *b, uint64_t now_ms, uint32_t max)
{
    /* No error return in the contract: a sweep that does not fit is simply left for the next
     * iteration's batch, which asks again. */
    if (max == 0 || b->n >= LQ_BATCH_OPS_MAX)
        return;
    lq_batch_op *op = push_op(b);
    if (op == NULL)
        return;
    op->kind = LQ_BOP_SWEEP;
    op->expires_ms = now_ms;
    op->max = max;
    b->n++;
}

void lq_batch_set_counters(lq_batch *b, uint64_t next_id, uint64_t next_seq)
{
    /* Counters only grow; a stale call later in the same batch must not lower them. */
    if (!b->has_counters || next_id > b->next_id)
        b->next_id = next_id;
    if (!b->has_counters || next_seq > b->next_seq)
        b->next_seq = next_seq;
    b->has_counters = true;
}

const lq_batch_op *lq_batch_ops(const lq_batch *b, uint32_t *n)
{
    *n = b->n;
    return b->ops;
}

uint32_t lq_batch_puts(const lq_batch *b) { return b->puts; }

lq_err lq_batch_find_job(const lq_batch *b, uint64_t id, lq_job_view *out)
{
    const lq_batch_op *op = NULL;
    if (b->puts_unsorted) {
        for (uint32_t i = 0; i < b->puts && op == NULL; i++)
            op = b->ops[b->put_at[i]].id == id ? &b->ops[b->put_at[i]] : NULL;
    } else {
        uint32_t lo = 0, hi = b->puts; /* ids ascend along put_at */
        while (lo < hi) {
            uint32_t mid = lo + (hi - lo) / 2;
            uint64_t at = b->ops[b->put_at[mid]].id;
            if (at == id) {
                op = &b->ops[b->put_at[mid]];
                break;
            }
            if (at < id)
                lo = mid + 1;
            else
                hi = mid;
        }
    }
    if (op == NULL)
        return LQ_E_NOT_FOUND;
    memset(out, 0, sizeof(*out));
    if (lq_rec_decode(op->a, op->a_len, &out->rec, &out->headers, &out->headers_len) != LQ_OK || out->rec.id != id ||
        out->rec.payload_len != op->b_len)
        return LQ_E_CORRUPT;
    /* As lq_store_get_job: an empty payload still has a non-NULL pointer. */
    out->payload = op->b_len > 0 ? op->b : op->a;
    out->payload_len = op->b_len;
    return LQ_OK;
}

uint32_t lq_batch_results(const lq_batch *b) { return b->results; }

bool lq_batch_counters(const lq_batch *b, uint64_t *next_id, uint64_t *next_seq)
{
    *next_id = b->next_id;
    *next_seq = b->next_seq;
    return b->has_counters;
}

void *lq_batch_copy(lq_batch *b, const void *p, size_t n)
{
    uint8_t *d = arena_alloc(b, n > 0 ? n : 1);
    if (d != NULL && n > 0)
        memcpy(d, p, n);
    return d;
}

lq_batch_op *lq_batch_append_op(lq_batch *b)
{
    if (b->n >= LQ_BATCH_OPS_MAX)
        return NULL;
    lq_batch_op *op = push_op(b);
    if (op != NULL)
        b->n++;
    return op;
}
