/* GPU vs CPU: every operation gives the same pixels (within ±1 per channel) on both backends.
 * Runs when a CUDA device is usable; otherwise every test reports itself SKIPPED (built without
 * CUDA, no driver, no GPU). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gw_testutil.h"

#include <stdlib.h>

static gw_backend *cpu, *gpu;
static char why_not[256];

static int setup(void **state)
{
    char err[128];
    cpu = gw_backend_cpu_open(0, err, sizeof err);
    if (cpu == NULL)
        return -1;
    if (!gw_cuda_compiled())
        snprintf(why_not, sizeof why_not, "built without CUDA");
    else if ((gpu = gw_backend_cuda_open(0, why_not, sizeof why_not)) != NULL)
        printf("cuda device: %s\n", gpu->device_name);
    if (gpu == NULL)
        printf("SKIPPED: no usable GPU (%s)\n", why_not);
    return 0;
}

static int teardown(void **state)
{
    cpu->close(cpu);
    if (gpu != NULL)
        gpu->close(gpu);
    return 0;
}

static void compare_on(gw_synth_pattern pat, int w, int h)
{
    if (gpu == NULL)
        skip();
    gw_image in;
    assert_true(gw_synth(&in, w, h, pat, 42));
    for (size_t k = 0; k < sizeof gwt_op_cases / sizeof gwt_op_cases[0]; k++) {
        gw_image a, b;
        assert_true(gwt_run(cpu, gwt_op_cases[k], &in, &a, NULL));
        assert_true(gwt_run(gpu, gwt_op_cases[k], &in, &b, NULL));
        int d = gwt_max_diff(&a, &b);
        if (d < 0 || d > 1)
            fail_msg("\"%s\" on %dx%d pattern %d: max difference %d", gwt_op_cases[k], w, h, (int)pat, d);
        gw_image_free(&a);
        gw_image_free(&b);
    }
    gw_image_free(&in);
}

static void test_scene(void **state) { compare_on(GW_SYNTH_SCENE, 97, 75); }
static void test_alpha(void **state) { compare_on(GW_SYNTH_ALPHA, 64, 48); }
static void test_noise(void **state) { compare_on(GW_SYNTH_NOISE, 33, 129); }
static void test_checker(void **state) { compare_on(GW_SYNTH_CHECKER, 257, 31); }

/* The thumbnail of the benchmark, on a real size. */
static void test_thumbnail_1024(void **state)
{
    if (gpu == NULL)
        skip();
    gw_image in, a, b;
    assert_true(gw_synth(&in, 1024, 1024, GW_SYNTH_SCENE, 1));
    assert_true(gwt_run(cpu, "thumbnail:256x256,blur:1.5,grayscale", &in, &a, NULL));
    assert_true(gwt_run(gpu, "thumbnail:256x256,blur:1.5,grayscale", &in, &b, NULL));
    assert_int_equal(a.w, 256);
    int d = gwt_max_diff(&a, &b);
    assert_true(d >= 0 && d <= 1);
    gw_image_free(&in);
    gw_image_free(&a);
    gw_image_free(&b);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_scene),   cmocka_unit_test(test_alpha),          cmocka_unit_test(test_noise),
        cmocka_unit_test(test_checker), cmocka_unit_test(test_thumbnail_1024),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
