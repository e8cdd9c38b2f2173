/* The committer thread: takes one batch at a time from the loop, commits it with
 * lq_store_commit (one transaction, one sync), and wakes the loop through an eventfd.
 * While a batch is being committed the loop fills the next one (double buffering), so the
 * batch size grows by itself with the load. In periodic sync mode it also syncs on a timer.
 */
#ifndef LQ_COMMITTER_H
#define LQ_COMMITTER_H

#include <stdbool.h>

#include "store.h"

typedef struct lq_committer lq_committer;

/* *out owned by the caller; stop with lq_committer_stop. The store must outlive it. */
lq_err lq_committer_start(lq_store *st, lq_committer **out);

/* Readable (8-byte counter) whenever a submitted batch has finished. */
int lq_committer_eventfd(const lq_committer *c);

/* True when no batch is in flight (nothing submitted, or the last one was reaped). */
bool lq_committer_idle(const lq_committer *c);

/* Hands b to the committer thread. Requires lq_committer_idle(). The batch belongs to the
 * committer until it comes back from lq_committer_reap. */
void lq_committer_submit(lq_committer *c, lq_batch *b);

/* The finished batch with its commit result, or NULL if it has not finished yet. Reading the
 * eventfd is the caller's job (the loop reads it through io_uring). */
lq_batch *lq_committer_reap(lq_committer *c, lq_err *err, bool *puts_dropped, uint64_t *commit_us);

/* Waits for the batch in flight, if any (it stays unreaped), then joins the thread and frees c.
 * A batch still unreaped then belongs to the caller again (its commit did complete). */
void lq_committer_stop(lq_committer *c);

#endif
