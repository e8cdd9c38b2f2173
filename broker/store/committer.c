/* The committer thread: one batch at a time, handed over under a mutex, finished batches
 * announced through an eventfd. See committer.h.
 *
 * Handover, all under `mu`: `pending` goes loop -> thread (submit), `offer` is a batch the
 * thread may take as soon as it has nothing pending (offer / retract), `done` goes thread ->
 * loop (reap). The thread holds a finished batch back while `done` is still occupied.
 * `outstanding` is the loop thread's own count (batches submitted or taken, not yet reaped)
 * and needs no lock.
 */
#include "committer.h"

#include <errno.h>
#include <pthread.h>
#include <stdint.h>
#include <stdlib.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "../core/lq_assert.h"

#define IDLE_WAIT_MS 1000u /* a wait with nothing to do still ends, so no wait is unbounded */

struct lq_committer {
    lq_store *st;
    pthread_t thread;
    pthread_mutex_t mu;
    pthread_cond_t cv;  /* CLOCK_MONOTONIC; signalled on submit and stop */
    int efd;            /* owner: committer */
    uint32_t outstanding; /* loop thread only: submitted or taken, not reaped (0..2) */

    /* under mu */
    lq_batch *pending;  /* submitted (or a taken offer), not yet started by the thread */
    lq_batch *offer;    /* the loop's open batch, the thread's to take while pending is NULL */
    lq_batch *done;     /* committed, not yet reaped */
    lq_err done_err;
    bool done_dropped;
    uint64_t done_us;
    bool stopping;

    /* committer thread only */
    lq_sync_mode mode;
    uint64_t sync_every_us;
    bool unsynced;          /* periodic: commits since the last sync */
    uint64_t sync_due_us;   /* periodic: when the oldest unsynced commit must be on disk */
};

static uint64_t now_us(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000u + (uint64_t)ts.tv_nsec / 1000u;
}

static struct timespec abs_ts(uint64_t us)
{
    return (struct timespec){.tv_sec = (time_t)(us / 1000000u), .tv_nsec = (long)(us % 1000000u) * 1000};
}

static void periodic_sync(lq_committer *c)
{
    /* A failed sync keeps `unsynced` so the next interval tries again; the commits themselves
     * were reported, and periodic mode openly trades this window for speed. */
    if (lq_store_sync(c->st) == LQ_OK)
        c->unsynced = false;
    else
        c->sync_due_us = now_us() + c->sync_every_us;
}

static void *committer_main(void *arg)
{
    lq_committer *c = arg;
    pthread_mutex_lock(&c->mu);
    for (;;) {
        if (c->pending == NULL && c->offer != NULL && !c->stopping) {
            /* The loop is busy or asleep; its batch starts now rather than after a round trip. */
            c->pending = c->offer;
            c->offer = NULL;
        }
        if (c->pending != NULL) {
            lq_batch *b = c->pending;
            c->pending = NULL;
            pthread_mutex_unlock(&c->mu);

            bool dropped = false;
            uint64_t t0 = now_us();
            lq_err err = lq_store_commit(c->st, b, &dropped);
            uint64_t t1 = now_us();
            if (err == LQ_OK && c->mode == LQ_SYNC_PERIODIC && !c->unsynced) {
                c->unsynced = true;
                c->sync_due_us = t1 + c->sync_every_us;
            }

            pthread_mutex_lock(&c->mu);
            /* One finished batch at a time: the previous one is reaped first (the loop reaps
             * as soon as it wakes; on stop the batch stays the caller's, unreported). */
            while (c->done != NULL && !c->stopping) {
                int rc = pthread_cond_wait(&c->cv, &c->mu);
                LQ_ASSERT(rc == 0);
            }
            if (c->done != NULL)
                continue;
            c->done = b;
            c->done_err = err;
            c->done_dropped = dropped;
            c->done_us = t1 - t0;
            pthread_mutex_unlock(&c->mu);
            uint64_t one = 1;
            /* Only EAGAIN (counter at its maximum, never in practice) can fail; the loop
             * would still find the batch on its next reap. */
            ssize_t w = write(c->efd, &one, sizeof(one));
            (void)w;
            pthread_mutex_lock(&c->mu);
            continue;
        }
        if (c->stopping)
            break;

        uint64_t now = now_us();
        if (c->unsynced && now >= c->sync_due_us) {
            pthread_mutex_unlock(&c->mu);
            periodic_sync(c);
            pthread_mutex_lock(&c->mu);
            continue;
        }
        uint64_t wake = now + (uint64_t)IDLE_WAIT_MS * 1000u;
        if (c->unsynced && c->sync_due_us < wake)
            wake = c->sync_due_us;
        struct timespec ts = abs_ts(wake);
        int rc = pthread_cond_timedwait(&c->cv, &c->mu, &ts);
        LQ_ASSERT(rc == 0 || rc == ETIMEDOUT);
    }
    pthread_mutex_unlock(&c->mu);
    if (c->unsynced)
        periodic_sync(c); /* a clean stop loses nothing, even in periodic mode */
    return NULL;
}

lq_err lq_committer_start(lq_store *st, lq_committer **out)
{
    lq_committer *c = calloc(1, sizeof(*c)); /* owner: caller, lq_committer_stop */
    if (c == NULL)
        return LQ_E_NOMEM;
    c->st = st;
    c->mode = lq_store_sync_mode(st);
    c->sync_every_us = (uint64_t)lq_store_periodic_sync_ms(st) * 1000u;
    c->efd = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
    if (c->efd < 0) {
        free(c);
        return LQ_E_IO;
    }
    lq_err err = LQ_E_INTERNAL;
    pthread_condattr_t ca;
    if (pthread_condattr_init(&ca) != 0)
        goto fail_fd;
    int rc = pthread_condattr_setclock(&ca, CLOCK_MONOTONIC);
    if (rc == 0)
        rc = pthread_cond_init(&c->cv, &ca);
    pthread_condattr_destroy(&ca);
    if (rc != 0)
        goto fail_fd;
    if (pthread_mutex_init(&c->mu, NULL) != 0)
        goto fail_cv;
    if (pthread_create(&c->thread, NULL, committer_main, c) != 0)
        goto fail_mu;
    /* Named so that `top -H`, perf and make bench-commit can tell it from the loop. */
    (void)pthread_setname_np(c->thread, "lq-committer");
    *out = c;
    return LQ_OK;

fail_mu:
    pthread_mutex_destroy(&c->mu);
fail_cv:
    pthread_cond_destroy(&c->cv);
fail_fd:
    close(c->efd);
    free(c);
    return err;
}

int lq_committer_eventfd(const lq_committer *c) { return c->efd; }

bool lq_committer_idle(const lq_committer *c) { return c->outstanding == 0; }

uint32_t lq_committer_outstanding(const lq_committer *c) { return c->outstanding; }

void lq_committer_submit(lq_committer *c, lq_batch *b)
{
    LQ_ASSERT(b != NULL);
    LQ_ASSERT(c->outstanding == 0);
    c->outstanding = 1;
    pthread_mutex_lock(&c->mu);
    LQ_ASSERT(c->pending == NULL && c->offer == NULL && c->done == NULL && !c->stopping);
    c->pending = b;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

void lq_committer_offer(lq_committer *c, lq_batch *b)
{
    LQ_ASSERT(b != NULL);
    LQ_ASSERT(c->outstanding == 1);
    pthread_mutex_lock(&c->mu);
    LQ_ASSERT(c->offer == NULL && !c->stopping);
    c->offer = b;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
}

bool lq_committer_retract(lq_committer *c)
{
    pthread_mutex_lock(&c->mu);
    bool ours = c->offer != NULL;
    c->offer = NULL;
    pthread_mutex_unlock(&c->mu);
    if (!ours)
        c->outstanding++; /* taken: it commits and comes back through reap like a submitted one */
    LQ_ASSERT(c->outstanding <= 2);
    return ours;
}

lq_batch *lq_committer_reap(lq_committer *c, lq_err *err, bool *puts_dropped, uint64_t *commit_us)
{
    if (c->outstanding == 0)
        return NULL;
    pthread_mutex_lock(&c->mu);
    lq_batch *b = c->done;
    if (b != NULL) {
        c->done = NULL;
        *err = c->done_err;
        *puts_dropped = c->done_dropped;
        *commit_us = c->done_us;
        pthread_cond_signal(&c->cv); /* a finished batch may be waiting for the slot */
    }
    pthread_mutex_unlock(&c->mu);
    if (b != NULL)
        c->outstanding--;
    return b;
}

void lq_committer_stop(lq_committer *c)
{
    if (c == NULL)
        return;
    pthread_mutex_lock(&c->mu);
    c->stopping = true;
    pthread_cond_signal(&c->cv);
    pthread_mutex_unlock(&c->mu);
    /* The thread finishes a pending batch before it looks at `stopping`, so the join waits for
     * at most one commit. That batch stays unreaped: it belongs to the caller again. */
    pthread_join(c->thread, NULL);
    pthread_mutex_destroy(&c->mu);
    pthread_cond_destroy(&c->cv);
    close(c->efd);
    free(c);
}
