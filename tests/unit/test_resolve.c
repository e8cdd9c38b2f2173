/* lqc_resolve: numeric addresses in place, names on a thread, and a resolver that hangs costs the
 * caller its deadline, not the resolver's retries. */
#include <stdarg.h>
#include <stddef.h>
#include <setjmp.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netdb.h>
#include <string.h>
#include <unistd.h>

#include "conn.h"
#include "resolve.h"

static unsigned hang_ms; /* how long fake_gai stalls on a name */
static int name_rc;      /* what it answers for a name after the stall (0: 127.0.0.1) */

static int fake_gai(const char *host, const char *port, const struct addrinfo *hints, struct addrinfo **res)
{
    if (hints->ai_flags & AI_NUMERICHOST)
        return getaddrinfo(host, port, hints, res); /* the real thing: refuses names */
    usleep(hang_ms * 1000u);
    if (name_rc != 0)
        return name_rc;
    struct addrinfo h = {.ai_family = AF_INET, .ai_socktype = SOCK_STREAM, .ai_flags = AI_NUMERICHOST};
    return getaddrinfo("127.0.0.1", port, &h, res);
}

static void test_numeric_in_place(void **state)
{
    (void)state;
    char err[256];
    struct addrinfo *res = NULL;
    hang_ms = 5000; /* would fail the test's time budget if a numeric host reached the name path */
    uint64_t t0 = lqc_now_ms();
    assert_int_equal(lqc_resolve_with(fake_gai, "127.0.0.1", "7420", t0 + 1000, &res, err, sizeof err), LQC_RESOLVE_OK);
    assert_non_null(res);
    assert_int_equal(res->ai_family, AF_INET);
    assert_int_equal(ntohs(((struct sockaddr_in *)res->ai_addr)->sin_port), 7420);
    freeaddrinfo(res);
    assert_int_equal(lqc_resolve_with(fake_gai, "::1", "7420", t0 + 1000, &res, err, sizeof err), LQC_RESOLVE_OK);
    assert_int_equal(res->ai_family, AF_INET6);
    freeaddrinfo(res);
    assert_true(lqc_now_ms() - t0 < 1000);
}

static void test_name_answered(void **state)
{
    (void)state;
    char err[256];
    struct addrinfo *res = NULL;
    hang_ms = 20;
    name_rc = 0;
    assert_int_equal(lqc_resolve_with(fake_gai, "broker.example", "7420", lqc_now_ms() + 2000, &res, err, sizeof err),
                     LQC_RESOLVE_OK);
    assert_non_null(res);
    assert_int_equal(res->ai_family, AF_INET);
    freeaddrinfo(res);
}

static void test_name_fails(void **state)
{
    (void)state;
    char err[256];
    struct addrinfo *res = NULL;
    hang_ms = 0;
    name_rc = EAI_NONAME;
    assert_int_equal(lqc_resolve_with(fake_gai, "nowhere.example", "7420", lqc_now_ms() + 2000, &res, err, sizeof err),
                     LQC_RESOLVE_FAILED);
    assert_null(res);
    assert_non_null(strstr(err, "nowhere.example"));
}

static void test_hanging_resolver_bounded(void **state)
{
    (void)state;
    char err[256];
    struct addrinfo *res = NULL;
    hang_ms = 700;
    name_rc = 0; /* answers, with an allocated result, after the caller has left */
    uint64_t t0 = lqc_now_ms();
    assert_int_equal(lqc_resolve_with(fake_gai, "slow.example", "7420", t0 + 100, &res, err, sizeof err),
                     LQC_RESOLVE_TIMEOUT);
    uint64_t took = lqc_now_ms() - t0;
    assert_true(took >= 100 && took < 600);
    assert_null(res);
    assert_non_null(strstr(err, "timed out"));
    /* The abandoned lookup finishes on its own and frees its result (ASan/LSan watch this). */
    usleep(900 * 1000);
}

static void test_conn_open_bounded(void **state)
{
    (void)state;
    /* A deadline already spent is refused before any lookup. */
    lqc_conn c;
    lqc_conn_init(&c);
    assert_int_equal(lqc_conn_open(&c, "localhost:1", lqc_now_ms() - 1), LQC_IO_TIMEOUT);
    lqc_conn_free(&c);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_numeric_in_place),
        cmocka_unit_test(test_name_answered),
        cmocka_unit_test(test_name_fails),
        cmocka_unit_test(test_hanging_resolver_bounded),
        cmocka_unit_test(test_conn_open_bounded),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
