/* The committer thread: takes one batch at a time from the loop, commits it with
 * lq_store_commit (one transaction, one sync), and wakes the loop through an eventfd.
 * While a batch is being committed the loop fills the next one, so the batch size grows by
 * itself with the load; the loop may offer that one while it waits, and the thread starts on
 * it as soon as it is free (no round trip through the loop between commits). In periodic sync
 * mode it also syncs on a timer.
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

/* True when no batch is outstanding (nothing submitted or taken, or all were reaped). */
bool lq_committer_idle(const lq_committer *c);

/* Hands b to the committer thread. Requires lq_committer_idle(). The batch belongs to the
 * committer until it comes back from lq_committer_reap. */
void lq_committer_submit(lq_committer *c, lq_batch *b);

/* Batches handed over and not yet reaped (0, 1, or 2 once an offer was taken). */
uint32_t lq_committer_outstanding(const lq_committer *c);

/* While one batch commits (outstanding == 1), offers the next: the thread takes it the moment
 * it has nothing else to do, without waiting for the loop to reap and submit. The loop must not
 * touch b until lq_committer_retract says whether it got it back. At most one offer. */
void lq_committer_offer(lq_committer *c, lq_batch *b);

/* Ends the offer: true if the batch is the loop's again (it was not taken), false if the thread
 * took it (it now counts as outstanding and comes back through lq_committer_reap, in order). */
bool lq_committer_retract(lq_committer *c);

/* The oldest finished batch with its commit result, or NULL if it has not finished yet. Reading the
 * eventfd is the caller's job (the loop reads it through io_uring). */
lq_batch *lq_committer_reap(lq_committer *c, lq_err *err, bool *puts_dropped, uint64_t *commit_us);

/* Waits for the batch in flight, if any (it stays unreaped), then joins the thread and frees c.
 * A batch still unreaped then belongs to the caller again (its commit did complete). */
void lq_committer_stop(lq_committer *c);

#endif
