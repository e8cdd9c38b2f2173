/* Invariant checks that stay on in every build, tests and production alike: a broker that
 * continues past a broken invariant can lose jobs, which is worse than a restart.
 * LQ_ASSERT is for cheap checks on any path. LQ_DEBUG_ASSERT is for checks that cost more than
 * the work they guard (walking a heap, recounting a lane); it is on when LQ_DEBUG is defined,
 * which the test and sanitizer builds do. */
#ifndef LQ_ASSERT_H
#define LQ_ASSERT_H

_Noreturn void lq_assert_fail(const char *expr, const char *file, int line);

#define LQ_ASSERT(e) ((e) ? (void)0 : lq_assert_fail(#e, __FILE__, __LINE__))

#ifdef LQ_DEBUG
#define LQ_DEBUG_ASSERT(e) LQ_ASSERT(e)
#else
#define LQ_DEBUG_ASSERT(e) ((void)0)
#endif

#endif
