/* The beanstalk line parser against beanstalkd 1.12's answers (measured with the real server;
 * tests/beanstalk/difftest.py checks the whole protocol side by side). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "beanstalk/parse.h"

static bs_status parse(const char *in, size_t len, bs_cmd *c, size_t *used)
{
    size_t need = 0;
    return bs_parse((const uint8_t *)in, len, BS_JOB_SIZE_DEFAULT, c, used, &need);
}

static bs_status parse_s(const char *in, bs_cmd *c, size_t *used) { return parse(in, strlen(in), c, used); }

static void expect_err(const char *in, bs_error e)
{
    bs_cmd c;
    size_t used;
    assert_int_equal(parse_s(in, &c, &used), BS_ERROR);
    assert_int_equal(c.err, e);
}

static void test_put(void **state)
{
    (void)state;
    bs_cmd c;
    size_t used;
    assert_int_equal(parse_s("put 5 2 10 3\r\nabc\r\nnext", &c, &used), BS_CMD);
    assert_int_equal(c.op, BS_OP_PUT);
    assert_int_equal(c.pri, 5);
    assert_int_equal(c.delay_s, 2);
    assert_int_equal(c.ttr_s, 10);
    assert_int_equal(c.body_len, 3);
    assert_memory_equal(c.body, "abc", 3);
    assert_int_equal(used, strlen("put 5 2 10 3\r\nabc\r\n"));
    /* body not there yet: the unit's full size is known */
    size_t need = 0;
    assert_int_equal(bs_parse((const uint8_t *)"put 1 0 1 10\r\nab", 16, BS_JOB_SIZE_DEFAULT, &c, &used, &need),
                     BS_NEED_MORE);
    assert_int_equal(need, 14 + 12);
    assert_int_equal(parse_s("put  1  0  1  1\r\nx\r\n", &c, &used), BS_CMD);
    assert_int_equal(parse_s("put 4294967295 4294967295 4294967295 0\r\n\r\n", &c, &used), BS_CMD);
    assert_int_equal(c.pri, 4294967295u);
}

static void test_put_errors(void **state)
{
    (void)state;
    expect_err("put 1 2 3\r\n", BS_ERR_BAD_FORMAT);
    expect_err("put 1 2 3 4 \r\n", BS_ERR_BAD_FORMAT);
    expect_err("put -1 0 1 1\r\n", BS_ERR_BAD_FORMAT);
    expect_err("put 4294967296 0 1 1\r\n", BS_ERR_BAD_FORMAT);
    expect_err("put 1 0 1 +1\r\n", BS_ERR_BAD_FORMAT);
    expect_err("put 5 0 10 3\r\nabcde", BS_ERR_EXPECTED_CRLF);
    bs_cmd c;
    size_t used;
    /* the size is checked before trailing garbage, and the body is dropped either way */
    assert_int_equal(parse_s("put 1 0 1 65536 junk\r\n", &c, &used), BS_ERROR);
    assert_int_equal(c.err, BS_ERR_JOB_TOO_BIG);
    assert_int_equal(c.discard, 65538);
    assert_int_equal(used, strlen("put 1 0 1 65536 junk\r\n"));
}

static void test_line_rules(void **state)
{
    (void)state;
    bs_cmd c;
    size_t used;
    expect_err("foo\r\n", BS_ERR_UNKNOWN_COMMAND);
    expect_err("\r\n", BS_ERR_UNKNOWN_COMMAND);
    expect_err("peek\r\n", BS_ERR_UNKNOWN_COMMAND);
    expect_err("kick\r\n", BS_ERR_UNKNOWN_COMMAND);
    expect_err("reserve \r\n", BS_ERR_BAD_FORMAT);
    expect_err("reservex\r\n", BS_ERR_BAD_FORMAT);
    expect_err("stats-tube\r\n", BS_ERR_BAD_FORMAT);
    expect_err("list-tubesx\r\n", BS_ERR_BAD_FORMAT);
    assert_int_equal(parse("a\0b\r\n", 5, &c, &used), BS_ERROR);
    assert_int_equal(c.err, BS_ERR_BAD_FORMAT);
    /* a lone CR is not an end of line: nothing until the window is full */
    assert_int_equal(parse_s("x\ry\r\n", &c, &used), BS_NEED_MORE);
    /* a line of 222 bytes + CRLF fits; one byte more does not */
    char buf[400];
    memset(buf, 'x', sizeof buf);
    memcpy(buf + 222, "\r\n", 2);
    assert_int_equal(parse(buf, 224, &c, &used), BS_ERROR);
    assert_int_equal(c.err, BS_ERR_UNKNOWN_COMMAND);
    memset(buf, 'x', sizeof buf);
    memcpy(buf + 300, "\r\n", 2);
    assert_int_equal(parse(buf, 302, &c, &used), BS_ERROR);
    assert_int_equal(c.err, BS_ERR_BAD_FORMAT);
    assert_true(c.skip_line);
    assert_int_equal(used, BS_LINE_MAX);
    bool done = false;
    assert_int_equal(bs_skip_line((const uint8_t *)buf + used, 302 - used, &done), 302 - used);
    assert_true(done);
    assert_int_equal(parse_s("quit whatever\r\n", &c, &used), BS_CMD);
    assert_int_equal(c.op, BS_OP_QUIT);
}

static void test_numbers(void **state)
{
    (void)state;
    bs_cmd c;
    size_t used;
    assert_int_equal(parse_s("reserve-with-timeout abc\r\n", &c, &used), BS_CMD);
    assert_int_equal(c.timeout_s, 0);
    assert_int_equal(parse_s("reserve-with-timeout -1\r\n", &c, &used), BS_CMD);
    assert_true(c.timeout_s < 0);
    assert_int_equal(parse_s("reserve-with-timeout 4294967296\r\n", &c, &used), BS_CMD);
    assert_int_equal(c.timeout_s, 0);
    expect_err("reserve-with-timeout 99999999999999999999\r\n", BS_ERR_BAD_FORMAT);
    assert_int_equal(parse_s("kick 2x\r\n", &c, &used), BS_CMD);
    assert_int_equal(c.count, 2);
    assert_int_equal(parse_s("kick -1\r\n", &c, &used), BS_CMD);
    assert_int_equal(c.count, UINT32_MAX);
    expect_err("kick x\r\n", BS_ERR_BAD_FORMAT);
    expect_err("delete 1x\r\n", BS_ERR_BAD_FORMAT);
    expect_err("delete 1 2\r\n", BS_ERR_BAD_FORMAT);
    expect_err("touch +1\r\n", BS_ERR_BAD_FORMAT);
    assert_int_equal(parse_s("peek  18446744073709551615\r\n", &c, &used), BS_CMD);
    assert_true(c.id == UINT64_MAX);
    expect_err("peek 18446744073709551616\r\n", BS_ERR_BAD_FORMAT);
    assert_int_equal(parse_s("release 7 3 60\r\n", &c, &used), BS_CMD);
    assert_true(c.id == 7 && c.pri == 3 && c.delay_s == 60);
    expect_err("release 7 3\r\n", BS_ERR_BAD_FORMAT);
    expect_err("bury 7\r\n", BS_ERR_BAD_FORMAT);
}

static void test_names(void **state)
{
    (void)state;
    bs_cmd c;
    size_t used;
    assert_int_equal(parse_s("use a_b+c/d;e.f$g(h)\r\n", &c, &used), BS_CMD);
    assert_int_equal(c.name_len, strlen("a_b+c/d;e.f$g(h)"));
    expect_err("use \r\n", BS_ERR_BAD_FORMAT);
    expect_err("use -a\r\n", BS_ERR_BAD_FORMAT);
    expect_err("use a b\r\n", BS_ERR_BAD_FORMAT);
    expect_err("watch a,b\r\n", BS_ERR_BAD_FORMAT);
    assert_int_equal(parse_s("pause-tubedefault 0\r\n", &c, &used), BS_CMD);
    assert_int_equal(c.op, BS_OP_PAUSE_TUBE);
    assert_int_equal(c.name_len, 7);
    expect_err("pause-tube default\r\n", BS_ERR_BAD_FORMAT);
    expect_err("pause-tube -empty 1\r\n", BS_ERR_BAD_FORMAT);
    expect_err("pause-tube default 4294967296\r\n", BS_ERR_BAD_FORMAT);
    char line[300] = "watch ";
    memset(line + 6, 'a', 201);
    strcpy(line + 207, "\r\n");
    expect_err(line, BS_ERR_BAD_FORMAT);
    line[206] = '\r';
    line[207] = '\n';
    assert_int_equal(parse(line, 208, &c, &used), BS_CMD);
    assert_int_equal(c.name_len, 200);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_put),     cmocka_unit_test(test_put_errors), cmocka_unit_test(test_line_rules),
        cmocka_unit_test(test_numbers), cmocka_unit_test(test_names),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
