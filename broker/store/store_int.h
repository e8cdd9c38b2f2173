/* The inside of lq_store, shared by store.c (open, jobs, commit) and results.c (results).
 * Internal to the store module; the public face is store.h. */
#ifndef LQ_STORE_INT_H
#define LQ_STORE_INT_H

#include <lmdb.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "store.h"

/* Our own code for "a stored record is broken", outside LMDB's and errno's ranges. */
#define APPLY_CORRUPT (-1)

struct lq_store {
    MDB_env *env;          /* owner: store */
    MDB_dbi jobs, payloads, meta, results, result_expiry;
    MDB_dbi config;        /* config_rec.c */
    lq_sync_mode sync;
    uint32_t periodic_ms;
    int lock_fd;           /* owner: store; flock keeps a second broker off this directory */
    MDB_txn *rtxn;         /* owner: store; loop thread's snapshot, reset between reads */
    bool reading;
    MDB_cursor *wjobs;     /* owner: the write transaction of the commit under way (LMDB closes
                              it at the transaction's end); NULL outside apply() */
    uint8_t *scratch;      /* owner: store; committer's re-encode buffer for updates */
    size_t scratch_cap;
    char err[256];         /* writer side's last failure */
};

__attribute__((format(printf, 2, 3))) void lq_store_set_err(lq_store *st, const char *fmt, ...);

/* Makes st->scratch hold at least n bytes (committer thread); 0 or ENOMEM. */
int lq_store_scratch(lq_store *st, size_t n);

/* Applies one FINISH or SWEEP operation inside the commit's write transaction. Without
 * with_results a FINISH stores its result record without the result bytes (see results.c).
 * 0, an LMDB/errno code or APPLY_CORRUPT; *what names the failing step. */
int lq_store_apply_result_op(lq_store *st, MDB_txn *txn, const lq_batch_op *op, bool with_results,
                             const char **what);

/* config_rec.c: applies one LQ_BOP_CONFIG operation inside the commit. */
int lq_store_apply_config_op(lq_store *st, MDB_txn *txn, const lq_batch_op *op, const char **what);

static inline void lq_key_be(uint8_t *k, uint64_t id)
{
    for (int i = 7; i >= 0; i--) {
        k[i] = (uint8_t)id;
        id >>= 8;
    }
}

static inline uint64_t lq_key_id(const uint8_t *k)
{
    uint64_t id = 0;
    for (int i = 0; i < 8; i++)
        id = (id << 8) | k[i];
    return id;
}

#endif
