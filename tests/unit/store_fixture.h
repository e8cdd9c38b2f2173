/* Shared fixture of the store unit tests (test_store.c, test_store_results.c, test_committer.c):
 * a fresh temporary directory per test (removed with everything in it at teardown), opening the
 * store there, committing a batch that must land, and opening its LMDB directly. Header-only,
 * static inline, so each cmocka binary takes what it uses.
 *
 * A test file may define STORE_FIXTURE_DIR (an mkdtemp template) before including this, so its
 * leftovers after a crash are easy to tell apart. */
#ifndef LQ_TEST_STORE_FIXTURE_H
#define LQ_TEST_STORE_FIXTURE_H

#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <ftw.h>
#include <lmdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "store/batch.h"
#include "store/store.h"

#ifndef STORE_FIXTURE_DIR
#define STORE_FIXTURE_DIR "/tmp/lq-store-XXXXXX"
#endif

static inline lq_str S(const char *s) { return (lq_str){s, (uint32_t)strlen(s)}; }

static inline bool str_is(lq_str a, const char *b)
{
    return a.len == strlen(b) && (a.len == 0 || memcmp(a.ptr, b, a.len) == 0);
}

static inline int rm_one(const char *p, const struct stat *sb, int flag, struct FTW *f)
{
    (void)sb; (void)flag; (void)f;
    return remove(p);
}

typedef struct {
    char dir[64];
} fixture;

static inline int setup(void **state)
{
    fixture *fx = calloc(1, sizeof(*fx));
    if (fx == NULL)
        return -1;
    snprintf(fx->dir, sizeof(fx->dir), "%s", STORE_FIXTURE_DIR);
    if (mkdtemp(fx->dir) == NULL) {
        free(fx);
        return -1;
    }
    *state = fx;
    return 0;
}

static inline int teardown(void **state)
{
    fixture *fx = *state;
    nftw(fx->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
    free(fx);
    return 0;
}

/* periodic_ms only matters with LQ_SYNC_PERIODIC (0: the store's default period). */
static inline lq_store *open_store(const fixture *fx, uint64_t map, lq_sync_mode mode, uint32_t periodic_ms)
{
    lq_store_opts o = {.dir = fx->dir, .map_size_bytes = map, .sync = mode, .periodic_sync_ms = periodic_ms};
    lq_store *st = NULL;
    assert_int_equal(lq_store_open(&o, &st), LQ_OK);
    assert_non_null(st);
    return st;
}

/* Commits a batch that must land whole (nothing dropped), then empties it for reuse. */
static inline void commit_ok(lq_store *st, lq_batch *b)
{
    bool dropped = true;
    assert_int_equal(lq_store_commit(st, b, &dropped), LQ_OK);
    assert_false(dropped);
    lq_batch_reset(b);
}

/* Opens the store's LMDB directly, as a tool or a disk fault would see it. */
static inline void raw_env(const fixture *fx, MDB_env **env, MDB_txn **txn)
{
    assert_int_equal(mdb_env_create(env), 0);
    assert_int_equal(mdb_env_set_maxdbs(*env, 16), 0);
    assert_int_equal(mdb_env_open(*env, fx->dir, 0, 0600), 0);
    assert_int_equal(mdb_txn_begin(*env, NULL, 0, txn), 0);
}

#endif /* LQ_TEST_STORE_FIXTURE_H */
