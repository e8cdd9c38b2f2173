/* leaseq store: the durable truth, in LMDB.
 *
 * Databases: "jobs" (id -> versioned, checksummed job record with its headers),
 * "payloads" (id -> raw bytes; a state change never rewrites a payload), "meta" (format
 * version, next_id, next_seq). Keys are 64-bit ids in big-endian so cursors walk in id order.
 *
 * Threads: lq_store_commit() runs on the committer thread; the read functions and
 * lq_store_usage() run on the loop thread. Open, load and close run before/after both.
 */
#ifndef LQ_STORE_H
#define LQ_STORE_H

#include <stdbool.h>
#include <stdint.h>

#include "../core/core.h"

typedef enum {
    LQ_SYNC_FULL = 0,     /* every commit is synced before it is reported (default) */
    LQ_SYNC_PERIODIC = 1, /* commits unsynced; the committer syncs every periodic_sync_ms */
    LQ_SYNC_NONE = 2,     /* never synced by leaseq; the OS writes back when it likes */
} lq_sync_mode;

/* "full" / "periodic" / "none" -> mode; LQ_E_INVALID_ARGUMENT otherwise. */
lq_err lq_sync_mode_parse(const char *s, lq_sync_mode *out);

typedef struct {
    const char *dir;          /* created if missing */
    uint64_t map_size_bytes;  /* LMDB map size; 0 = 1 GiB */
    lq_sync_mode sync;
    uint32_t periodic_sync_ms; /* 0 = 100 */
} lq_store_opts;

typedef struct lq_store lq_store;

/* *out owned by the caller; close with lq_store_close. LQ_E_CORRUPT if the format version is
 * unknown, LQ_E_IO for filesystem/LMDB failures. */
lq_err lq_store_open(const lq_store_opts *opts, lq_store **out);
void lq_store_close(lq_store *st);
lq_sync_mode lq_store_sync_mode(const lq_store *st);
uint32_t lq_store_periodic_sync_ms(const lq_store *st); /* the effective interval (0 -> 100) */
/* One line of text about the last failure of load or commit (the writer side), e.g.
 * "commit: mdb_txn_commit: Input/output error"; "" if none. Read it on the thread that got the
 * error (the loop reads a commit's after lq_committer_reap). A failed open has no store to ask:
 * it writes its line to stderr. */
const char *lq_store_last_error(const lq_store *st);

/* Calls fn for every stored job in id order; rec's strings are valid only during the call.
 * A record failing its checksum stops the load with LQ_E_CORRUPT. Sets the stored counters
 * (0, 0 for a new store). */
typedef lq_err (*lq_store_load_fn)(void *ctx, const lq_job_rec *rec);
lq_err lq_store_load(lq_store *st, lq_store_load_fn fn, void *ctx, uint64_t *next_id, uint64_t *next_seq);

/* ---- batches: one loop iteration's mutations, committed in one transaction ---------------- */

typedef struct lq_batch lq_batch;

lq_batch *lq_batch_create(void); /* owner: caller, lq_batch_destroy; NULL on OOM */
void lq_batch_destroy(lq_batch *b);
void lq_batch_reset(lq_batch *b); /* empties it, keeps its memory for reuse */
/* An empty batch gives back the memory a reset keeps (up to LQ_BATCH_KEEP_BYTES of payload
 * copies): for a batch that has not been big for a while. */
void lq_batch_trim(lq_batch *b);
size_t lq_batch_held_bytes(const lq_batch *b); /* arena blocks and op arrays allocated */
size_t lq_batch_used_bytes(const lq_batch *b); /* what this round needed of them */
uint32_t lq_batch_count(const lq_batch *b); /* operations queued */
/* Bytes copied into the batch so far (payloads, records, error texts): lets the loop stop
 * filling a batch early. put_job refuses with LQ_E_LIMIT past 512 MiB of puts. */
uint64_t lq_batch_bytes(const lq_batch *b);

/* Each call copies what it is given, so the caller's buffers may be reused at once.
 * headers: opaque bytes stored with the record (the shell's encoding).
 * put_job: INVALID_ARGUMENT if rec->payload_len != payload_len or a string field is over
 * 64 KiB (headers over 1 MiB); LQ_E_LIMIT when the batch is full (then commit it first). */
lq_err lq_batch_put_job(lq_batch *b, const lq_job_rec *rec, const void *headers, uint32_t headers_len,
                        const void *payload, uint32_t payload_len);
lq_err lq_batch_update_job(lq_batch *b, uint64_t id, uint8_t state, uint32_t attempts,
                           uint64_t not_before_ms, lq_str last_error);
lq_err lq_batch_delete_job(lq_batch *b, uint64_t id);
void lq_batch_set_counters(lq_batch *b, uint64_t next_id, uint64_t next_seq);

/* Applies the batch in one write transaction and syncs per the mode.
 * If the map is full, the transaction is retried without the batch's put_job operations and
 * *puts_dropped is set: the other operations still land (acks, nacks keep working).
 * LQ_E_STORAGE_FULL if even that does not fit; LQ_E_IO on other failures (nothing applied);
 * LQ_E_CORRUPT (nothing applied) if an update meets a stored record that fails its checks. */
lq_err lq_store_commit(lq_store *st, lq_batch *b, bool *puts_dropped);

/* Forces written data to disk (used by the periodic mode; a no-op in full mode). A failure is
 * logged to stderr. */
lq_err lq_store_sync(lq_store *st);

/* ---- reads (loop thread) ---------------------------------------------------------------- */

typedef struct {
    lq_job_rec rec;           /* strings point into the map */
    const uint8_t *headers;
    uint32_t headers_len;
    const uint8_t *payload;
    uint32_t payload_len;
} lq_job_view;

/* Opens (or renews) the loop thread's read snapshot; later commits are not visible in it until
 * the next read_begin. Everything a view points to is valid until lq_store_read_end. */
lq_err lq_store_read_begin(lq_store *st);
lq_err lq_store_get_job(lq_store *st, uint64_t id, lq_job_view *out); /* NOT_FOUND if absent */
void lq_store_read_end(lq_store *st);
/* A job whose put is in batch b and not committed yet (--dispatch early reads these): the
 * view as lq_store_get_job gives it, pointing into the batch's memory, valid until the
 * batch changes or is reset. NOT_FOUND if b holds no put of id. Only reads b, so it may run
 * while the committer reads b too. */
lq_err lq_batch_find_job(const lq_batch *b, uint64_t id, lq_job_view *out);

/* Bytes in use (pages in use x page size) and the map size: the fill ratio for watermarks. */
lq_err lq_store_usage(lq_store *st, uint64_t *used_bytes, uint64_t *map_bytes);

/* ---- results: what a finished job left behind, kept for a retention time ------------------
 * Database "results": id -> versioned, checksummed result record (state, finished/expiry
 * times, queue, idempotency key, error text, result bytes); "result_expiry": (expires_ms, id)
 * big-endian -> empty, an index so the sweep never scans. */

/* Finishes a job in one step inside the commit: reads its record (for queue and idempotency
 * key), deletes the record and its payload, and stores a result record until expires_ms.
 * final_state: DONE, EXPIRED, PURGED or CANCELLED. A job that is not stored is skipped. */
lq_err lq_batch_finish_job(lq_batch *b, uint64_t id, uint8_t final_state, lq_str error,
                           const void *result, uint32_t result_len, uint64_t finished_ms,
                           uint64_t expires_ms);

/* Asks the commit to delete up to max results whose expires_ms <= now_ms (oldest first). */
void lq_batch_sweep_results(lq_batch *b, uint64_t now_ms, uint32_t max);

typedef struct {
    uint64_t id;
    uint8_t state;
    uint64_t finished_ms, expires_ms;
    lq_str queue, idem_key, error; /* point into the map */
    const uint8_t *result;
    uint32_t result_len;
} lq_result_view;

/* Read side (loop thread, between read_begin and read_end): NOT_FOUND if absent or expired. */
lq_err lq_store_get_result(lq_store *st, uint64_t id, uint64_t now_ms, lq_result_view *out);

/* At start, after lq_store_load: calls fn for every result not yet expired at now_ms (so the
 * core can restore idempotency keys); views are valid only during the call. Only the records'
 * heads are read and checked here: r->result is NULL and r->result_len 0 (get_result reads and
 * checks the bytes). A head failing its checksum stops the walk with LQ_E_CORRUPT. */
typedef lq_err (*lq_store_result_fn)(void *ctx, const lq_result_view *r);
lq_err lq_store_load_results(lq_store *st, uint64_t now_ms, lq_store_result_fn fn, void *ctx);

/* ---- queue configuration (issue 5) -------------------------------------------------------
 * Database "config": key QUEUE "\0" LANE (LANE empty: the queue's own record) -> a versioned,
 * checksummed settings record. Written through batches like every other change; loaded at
 * start and applied to the core (lq_core_lane_set, lq_core_queue_opts_set). */

typedef struct {
    lq_str queue;
    lq_str lane;                /* len 0: the queue's own record (queue_opts) */
    lq_lane_settings lane_set;  /* lane records */
    lq_queue_opts queue_opts;   /* queue records */
} lq_config_rec;

/* Copies r into the batch; INVALID_ARGUMENT for names over LQ_NAME_MAX. */
lq_err lq_batch_put_config(lq_batch *b, const lq_config_rec *r);

/* Calls fn for every stored config record (strings valid only during the call); a record
 * failing its checks stops the walk with LQ_E_CORRUPT. */
typedef lq_err (*lq_store_config_fn)(void *ctx, const lq_config_rec *r);
lq_err lq_store_load_config(lq_store *st, lq_store_config_fn fn, void *ctx);

#endif
