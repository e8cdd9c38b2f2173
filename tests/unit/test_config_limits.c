/* Unit tests of the overload flags: --lane-config parsing, watermarks, timeouts, caps; --dispatch. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <cmocka.h>

#include "config.h"

static lq_config_result parse(lq_config *cfg, const char *const *args)
{
    char *argv[32] = {"leaseqd"};
    int argc = 1;
    for (; args[argc - 1] != NULL; argc++)
        argv[argc] = (char *)args[argc - 1];
    char err[512];
    return lq_config_parse(argc, argv, cfg, err, sizeof err);
}

static void test_defaults(void **state)
{
    (void)state;
    lq_config cfg;
    const char *a[] = {NULL};
    assert_int_equal(parse(&cfg, a), LQ_CONFIG_RUN);
    assert_int_equal(cfg.low_watermark_pct, 80);
    assert_int_equal(cfg.high_watermark_pct, 95);
    assert_int_equal(cfg.frame_timeout_ms, 10000);
    assert_int_equal(cfg.hello_timeout_ms, 5000);
    assert_int_equal(cfg.send_timeout_ms, 30000);
    assert_int_equal(cfg.max_output_bytes, 64u << 20);
    assert_int_equal(cfg.max_parked, 65536);
    assert_int_equal(cfg.n_lane_flags, 0);
    assert_false(cfg.early_dispatch); /* leased only once durable, unless asked */
    lq_config_free(&cfg);
    const char *e[] = {"--dispatch", "early", NULL};
    assert_int_equal(parse(&cfg, e), LQ_CONFIG_RUN);
    assert_true(cfg.early_dispatch);
    lq_config_free(&cfg);
    const char *d[] = {"--dispatch=early", "--dispatch", "durable", NULL};
    assert_int_equal(parse(&cfg, d), LQ_CONFIG_RUN);
    assert_false(cfg.early_dispatch);
    lq_config_free(&cfg);
}

static void test_lane_config(void **state)
{
    (void)state;
    lq_config cfg;
    const char *a[] = {"--lane-config", "images/app:max_queued=200000,max_queued_bytes=2G,sheddable=1",
                       "--lane-config=images/api:weight=9,max_wait_ms=30000", NULL};
    assert_int_equal(parse(&cfg, a), LQ_CONFIG_RUN);
    assert_int_equal(cfg.n_lane_flags, 2);
    const lq_lane_flag *f = &cfg.lane_flags[0];
    assert_true(lq_str_eq(f->queue, lq_str_c("images")) && lq_str_eq(f->lane, lq_str_c("app")));
    assert_int_equal(f->s.max_queued, 200000);
    assert_int_equal(f->s.max_queued_bytes, 2ull << 30);
    assert_true(f->s.sheddable);
    assert_int_equal(f->set, LQ_LANE_SET_MAX_QUEUED | LQ_LANE_SET_MAX_BYTES | LQ_LANE_SET_SHEDDABLE);
    f = &cfg.lane_flags[1];
    assert_int_equal(f->s.weight, 9);
    assert_int_equal(f->s.max_wait_ms, 30000);
    assert_int_equal(f->set, LQ_LANE_SET_WEIGHT | LQ_LANE_SET_MAX_WAIT);
    lq_config_free(&cfg);
}

static void test_bad_values(void **state)
{
    (void)state;
    static const char *const bad[][3] = {
        {"--lane-config", "noslash:weight=1", NULL},  {"--lane-config", "q/l", NULL},
        {"--lane-config", "q/l:colour=red", NULL},    {"--lane-config", "q/l:sheddable=2", NULL},
        {"--lane-config", "q/l:max_queued=-1", NULL}, {"--lane-config", "/l:weight=1", NULL},
        {"--low-watermark", "0", NULL},               {"--high-watermark", "101", NULL},
        {"--max-output", "10K", NULL},                {"--max-parked", "0", NULL},
        {"--frame-timeout-ms", "x", NULL},            {"--dispatch", "eager", NULL},
        {"--dispatch", "", NULL},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        lq_config cfg;
        assert_int_equal(parse(&cfg, bad[i]), LQ_CONFIG_ERROR);
        lq_config_free(&cfg);
    }
    lq_config cfg;
    const char *a[] = {"--low-watermark", "90", "--high-watermark", "85", NULL};
    assert_int_equal(parse(&cfg, a), LQ_CONFIG_ERROR);
    lq_config_free(&cfg);
    const char *b[] = {"--low-watermark", "50", "--high-watermark", "70", "--frame-timeout-ms", "0",
                       "--max-output", "4M", "--max-parked", "100", NULL};
    assert_int_equal(parse(&cfg, b), LQ_CONFIG_RUN);
    assert_int_equal(cfg.low_watermark_pct, 50);
    assert_int_equal(cfg.high_watermark_pct, 70);
    assert_int_equal(cfg.frame_timeout_ms, 0);
    assert_int_equal(cfg.max_output_bytes, 4u << 20);
    assert_int_equal(cfg.max_parked, 100);
    lq_config_free(&cfg);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_defaults),
        cmocka_unit_test(test_lane_config),
        cmocka_unit_test(test_bad_values),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
