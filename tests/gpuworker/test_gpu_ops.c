/* CPU backend: golden checksums for every operation, properties of the pixel math, the op
 * parser, the codecs and limits, and the pipeline (outcomes, dead jobs, watchdog).
 *
 * Golden file: tests/gpuworker/golden/cpu_ops.txt. Regenerate after a deliberate change of the
 * math with GW_GOLDEN_UPDATE=1 (and GW_GOLDEN_PNG=DIR to write every output as a PNG to look
 * at); the run then rewrites the file and fails so the change cannot pass unnoticed. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "gw_testutil.h"

#include "../../gpuworker/pipeline.h"

#include <stdlib.h>
#include <sys/wait.h>
#include <unistd.h>

#define GOLDEN_PATH_DEFAULT "tests/gpuworker/golden/cpu_ops.txt"

static gw_backend *cpu1, *cpu4; /* one thread, four threads */

static int setup(void **state)
{
    char err[128];
    cpu1 = gw_backend_cpu_open(1, err, sizeof err);
    cpu4 = gw_backend_cpu_open(4, err, sizeof err);
    return cpu1 && cpu4 ? 0 : -1;
}

static int teardown(void **state)
{
    cpu1->close(cpu1);
    cpu4->close(cpu4);
    return 0;
}

/* ---- golden ---------------------------------------------------------------------------------- */

typedef struct {
    const char *name;
    gw_synth_pattern pattern;
    int w, h;
} golden_input;

static const golden_input golden_inputs[] = {
    {"scene48x36", GW_SYNTH_SCENE, 48, 36},
    {"alpha40x30", GW_SYNTH_ALPHA, 40, 30},
};

static void test_golden(void **state)
{
    const char *path = getenv("GW_GOLDEN_FILE") ? getenv("GW_GOLDEN_FILE") : GOLDEN_PATH_DEFAULT;
    bool update = getenv("GW_GOLDEN_UPDATE") != NULL;
    const char *png_dir = getenv("GW_GOLDEN_PNG");
    char *expected = NULL;
    if (!update) {
        FILE *f = fopen(path, "r");
        if (f == NULL)
            fail_msg("cannot read %s (run from the repository root, or set GW_GOLDEN_FILE)", path);
        expected = calloc(1, 64 * 1024);
        size_t n = fread(expected, 1, 64 * 1024 - 1, f);
        fclose(f);
        expected[n] = '\0';
    }
    FILE *out = update ? fopen(path, "w") : NULL;
    int mismatches = 0, cases = 0;
    for (size_t i = 0; i < sizeof golden_inputs / sizeof golden_inputs[0]; i++) {
        const golden_input *gi = &golden_inputs[i];
        gw_image in;
        assert_true(gw_synth(&in, gi->w, gi->h, gi->pattern, 7));
        for (size_t k = 0; k < sizeof gwt_op_cases / sizeof gwt_op_cases[0]; k++) {
            gw_image o;
            assert_true(gwt_run(cpu4, gwt_op_cases[k], &in, &o, NULL));
            char line[512];
            snprintf(line, sizeof line, "%016llx %s %s\n", (unsigned long long)gwt_hash(&o), gi->name,
                     gwt_op_cases[k]);
            cases++;
            if (out != NULL)
                fputs(line, out);
            else if (strstr(expected, line) == NULL) {
                printf("golden mismatch: got %s", line);
                mismatches++;
            }
            if (png_dir != NULL) {
                uint8_t *enc = NULL;
                size_t len = 0;
                char err[128], file[512];
                o.has_alpha = true;
                assert_true(gw_encode(&o, GW_FMT_PNG, 0, &enc, &len, err, sizeof err));
                snprintf(file, sizeof file, "%s/%s_%02zu.png", png_dir, gi->name, k);
                FILE *pf = fopen(file, "wb");
                if (pf) {
                    fwrite(enc, 1, len, pf);
                    fclose(pf);
                }
                free(enc);
            }
            gw_image_free(&o);
        }
        gw_image_free(&in);
    }
    free(expected);
    if (out != NULL) {
        fclose(out);
        fail_msg("golden file %s rewritten with %d cases: check it and run again without GW_GOLDEN_UPDATE", path,
                 cases);
    }
    assert_int_equal(mismatches, 0);
}

/* Threads split rows; the answer must not depend on how. */
static void test_threads_agree(void **state)
{
    gw_image in;
    assert_true(gw_synth(&in, 75, 61, GW_SYNTH_SCENE, 3));
    for (size_t k = 0; k < sizeof gwt_op_cases / sizeof gwt_op_cases[0]; k++) {
        gw_image a, b;
        assert_true(gwt_run(cpu1, gwt_op_cases[k], &in, &a, NULL));
        assert_true(gwt_run(cpu4, gwt_op_cases[k], &in, &b, NULL));
        assert_int_equal(gwt_max_diff(&a, &b), 0);
        gw_image_free(&a);
        gw_image_free(&b);
    }
    gw_image_free(&in);
}

/* ---- properties ------------------------------------------------------------------------------- */

static void check_constant(const gw_image *img, const uint8_t want[4])
{
    for (size_t i = 0; i < (size_t)img->w * (size_t)img->h; i++)
        for (int c = 0; c < 4; c++)
            if (img->px[i * 4 + (size_t)c] != want[c])
                fail_msg("pixel %zu channel %d: %d, want %d", i, c, img->px[i * 4 + (size_t)c], want[c]);
}

static void test_constant_stays_constant(void **state)
{
    static const char *const specs[] = {"resize:13x7",      "resize:200x150",  "resize:13x7:area",
                                        "resize:99x70:area", "thumbnail:10x10", "blur:3",
                                        "blur:0.5",          "resize:1x1:area"};
    const uint8_t px[4] = {37, 200, 129, 255};
    gw_image in;
    assert_true(gwt_constant(&in, 57, 41, px[0], px[1], px[2], px[3]));
    for (size_t k = 0; k < sizeof specs / sizeof specs[0]; k++) {
        gw_image o;
        assert_true(gwt_run(cpu4, specs[k], &in, &o, NULL));
        check_constant(&o, px);
        gw_image_free(&o);
    }
    gw_image_free(&in);
}

static void test_blur_keeps_mean(void **state)
{
    gw_image in, o;
    assert_true(gw_synth(&in, 96, 80, GW_SYNTH_NOISE, 11));
    assert_true(gwt_run(cpu4, "blur:2", &in, &o, NULL));
    size_t n = (size_t)in.w * (size_t)in.h;
    double var_in = 0, var_out = 0;
    for (int c = 0; c < 3; c++) {
        double a = 0, b = 0;
        for (size_t i = 0; i < n; i++) {
            a += in.px[i * 4 + (size_t)c];
            b += o.px[i * 4 + (size_t)c];
        }
        a /= (double)n;
        b /= (double)n;
        assert_true(a - b < 1.5 && b - a < 1.5); /* edges are clamped, so not exact */
        for (size_t i = 0; i < n; i++) {
            var_in += (in.px[i * 4 + (size_t)c] - a) * (in.px[i * 4 + (size_t)c] - a);
            var_out += (o.px[i * 4 + (size_t)c] - b) * (o.px[i * 4 + (size_t)c] - b);
        }
    }
    assert_true(var_out < var_in / 10); /* noise is smoothed away */
    gw_image_free(&in);
    gw_image_free(&o);
}

static void test_gray_and_identities(void **state)
{
    gw_image in, o;
    assert_true(gw_synth(&in, 33, 21, GW_SYNTH_SCENE, 5));
    for (size_t i = 0; i < (size_t)in.w * (size_t)in.h; i++) /* make it gray */
        in.px[i * 4 + 1] = in.px[i * 4 + 2] = in.px[i * 4];
    static const char *const identities[] = {"grayscale", "brightness:0", "contrast:1", "composite:ff0000",
                                             "resize:33x21", "resize:33x21:area"};
    for (size_t k = 0; k < sizeof identities / sizeof identities[0]; k++) {
        assert_true(gwt_run(cpu4, identities[k], &in, &o, NULL));
        if (gwt_max_diff(&in, &o) != 0)
            fail_msg("%s is not the identity here", identities[k]);
        gw_image_free(&o);
    }
    gw_image_free(&in);
}

static void test_point_ops_values(void **state)
{
    gw_image in, o;
    assert_true(gwt_constant(&in, 2, 2, 100, 150, 200, 128));
    assert_true(gwt_run(cpu1, "grayscale", &in, &o, NULL));
    assert_int_equal(o.px[0], (77 * 100 + 150 * 150 + 29 * 200 + 128) >> 8);
    assert_int_equal(o.px[3], 128);
    gw_image_free(&o);
    assert_true(gwt_run(cpu1, "brightness:100", &in, &o, NULL));
    assert_int_equal(o.px[0], 200);
    assert_int_equal(o.px[2], 255); /* clamped */
    gw_image_free(&o);
    assert_true(gwt_run(cpu1, "contrast:2", &in, &o, NULL));
    assert_int_equal(o.px[0], 72);  /* (100-128)*2+128 */
    assert_int_equal(o.px[1], 172);
    gw_image_free(&o);
    assert_true(gwt_run(cpu1, "composite:000000", &in, &o, NULL));
    assert_int_equal(o.px[0], (128 * 100 + 127) / 255);
    assert_int_equal(o.px[3], 255);
    gw_image_free(&o);
    gw_image_free(&in);
}

static void test_area_halving_is_block_mean(void **state)
{
    gw_image in, o;
    assert_true(gw_synth(&in, 20, 14, GW_SYNTH_NOISE, 9));
    assert_true(gwt_run(cpu1, "resize:10x7:area", &in, &o, NULL));
    for (int y = 0; y < 7; y++)
        for (int x = 0; x < 10; x++)
            for (int c = 0; c < 4; c++) {
                int s = 0;
                for (int j = 0; j < 2; j++)
                    for (int i = 0; i < 2; i++)
                        s += in.px[((size_t)(2 * y + j) * 20 + (size_t)(2 * x + i)) * 4 + (size_t)c];
                assert_int_equal(o.px[((size_t)y * 10 + (size_t)x) * 4 + (size_t)c], (s + 2) / 4);
            }
    gw_image_free(&in);
    gw_image_free(&o);
}

/* ---- parser and sizes ---------------------------------------------------------------------------- */

static void expect_parse_error(const char *spec, const char *needle)
{
    static gw_plan plan;
    char err[256] = "";
    assert_false(gw_plan_parse(spec, &plan, err, sizeof err));
    if (strstr(err, needle) == NULL)
        fail_msg("\"%s\": error \"%s\" lacks \"%s\"", spec, err, needle);
}

static void test_parse(void **state)
{
    static gw_plan plan;
    char err[256];
    gw_limits lim;
    gw_limits_default(&lim);
    assert_true(gw_plan_parse("resize:512x512, blur:1.5 ,format:jpeg:85", &plan, err, sizeof err));
    assert_int_equal(plan.n_ops, 2);
    assert_int_equal(plan.out_format, GW_FMT_JPEG);
    assert_int_equal(plan.jpeg_quality, 85);
    assert_true(gw_plan_parse("thumbnail:256x256", &plan, err, sizeof err));
    assert_true(gw_plan_resolve(&plan, GW_FMT_PNG, 1024, 768, &lim, err, sizeof err));
    assert_int_equal(plan.out_w, 256);
    assert_int_equal(plan.out_h, 192);
    assert_int_equal(plan.out_format, GW_FMT_PNG);
    assert_true(gw_plan_parse("thumbnail:256x256", &plan, err, sizeof err));
    assert_true(gw_plan_resolve(&plan, GW_FMT_JPEG, 100, 50, &lim, err, sizeof err)); /* never enlarges */
    assert_int_equal(plan.out_w, 100);
    assert_int_equal(plan.out_format, GW_FMT_JPEG);
    assert_true(gw_plan_parse("resize:0x100", &plan, err, sizeof err));
    assert_true(gw_plan_resolve(&plan, GW_FMT_PNG, 400, 200, &lim, err, sizeof err));
    assert_int_equal(plan.out_w, 200);
    assert_true(gw_plan_parse("", &plan, err, sizeof err));
    assert_int_equal(plan.n_ops, 0);
    assert_true(gw_plan_parse("resize:20000x10", &plan, err, sizeof err));
    assert_false(gw_plan_resolve(&plan, GW_FMT_PNG, 100, 100, &lim, err, sizeof err));
    assert_non_null(strstr(err, "image too large"));
    expect_parse_error("sharpen:2", "unknown operation \"sharpen\"");
    expect_parse_error("resize:abc", "want resize:WxH");
    expect_parse_error("resize:10x10:cubic", "unknown filter");
    expect_parse_error("blur:0", "blur");
    expect_parse_error("blur:99", "blur");
    expect_parse_error("brightness:300", "brightness");
    expect_parse_error("composite:12345", "composite");
    expect_parse_error("format:gif", "format");
    expect_parse_error("gray,gray,gray,gray,gray,gray,gray,gray,gray,gray,gray,gray,gray,gray,gray,gray,gray",
                       "more than 16");
}

/* ---- codecs and limits ---------------------------------------------------------------------------- */

static void test_codecs_and_limits(void **state)
{
    char err[256];
    gw_limits lim;
    gw_limits_default(&lim);
    gw_image in, back;
    gw_format fmt;
    uint8_t *enc = NULL;
    size_t len = 0;
    /* PNG is lossless, with alpha */
    assert_true(gw_synth(&in, 31, 17, GW_SYNTH_ALPHA, 1));
    assert_true(gw_encode(&in, GW_FMT_PNG, 0, &enc, &len, err, sizeof err));
    assert_true(gw_decode(enc, len, &lim, &back, &fmt, err, sizeof err));
    assert_int_equal(fmt, GW_FMT_PNG);
    assert_true(back.has_alpha);
    assert_int_equal(gwt_max_diff(&in, &back), 0);
    gw_image_free(&back);
    /* a truncated PNG is corrupt, not a crash */
    assert_false(gw_decode(enc, len / 2, &lim, &back, &fmt, err, sizeof err));
    assert_non_null(strstr(err, "corrupt image"));
    free(enc);
    gw_image_free(&in);
    /* JPEG is lossy but close on a smooth image; gray stays gray */
    assert_true(gw_synth(&in, 64, 48, GW_SYNTH_SCENE, 1));
    assert_true(gw_encode(&in, GW_FMT_JPEG, 95, &enc, &len, err, sizeof err));
    int w, h;
    assert_true(gw_probe(enc, len, &fmt, &w, &h, err, sizeof err));
    assert_int_equal(fmt, GW_FMT_JPEG);
    assert_int_equal(w, 64);
    assert_true(gw_decode(enc, len, &lim, &back, &fmt, err, sizeof err));
    double sum = 0;
    for (size_t i = 0; i < (size_t)64 * 48 * 4; i++)
        sum += abs((int)in.px[i] - (int)back.px[i]);
    assert_true(sum / (64.0 * 48 * 4) < 4.0); /* lossy, but close on average */
    assert_false(back.has_alpha);
    gw_image_free(&back);
    free(enc);
    in.gray = true;
    assert_true(gw_encode(&in, GW_FMT_JPEG, 80, &enc, &len, err, sizeof err));
    assert_true(gw_decode(enc, len, &lim, &back, &fmt, err, sizeof err));
    assert_true(back.gray);
    gw_image_free(&back);
    free(enc);
    gw_image_free(&in);
    /* garbage */
    static const uint8_t junk[] = "definitely not an image";
    assert_false(gw_decode(junk, sizeof junk, &lim, &back, &fmt, err, sizeof err));
    assert_non_null(strstr(err, "neither PNG nor JPEG"));
    static const uint8_t bad_jpeg[] = {0xff, 0xd8, 0xff, 0xe0, 0, 16, 'J', 'F', 'I', 'F', 0, 1, 2};
    assert_false(gw_decode(bad_jpeg, sizeof bad_jpeg, &lim, &back, &fmt, err, sizeof err));
    assert_non_null(strstr(err, "corrupt image: jpeg"));
    /* a header claiming 100000 x 100000 (40 GB decoded) is refused before any allocation */
    uint8_t hdr[64];
    size_t hl = gwt_fake_png_header(hdr, 100000, 100000);
    assert_false(gw_decode(hdr, hl, &lim, &back, &fmt, err, sizeof err));
    if (strstr(err, "image too large: 100000x100000") == NULL)
        fail_msg("100000x100000 header: %s", err);
    /* within the side limit but over the pixel budget */
    hl = gwt_fake_png_header(hdr, 16000, 16000);
    assert_false(gw_decode(hdr, hl, &lim, &back, &fmt, err, sizeof err));
    assert_non_null(strstr(err, "exceeds 67108864"));
    lim.max_pixels = 100;
    assert_true(gw_synth(&in, 11, 10, GW_SYNTH_SCENE, 1));
    assert_true(gw_encode(&in, GW_FMT_PNG, 0, &enc, &len, err, sizeof err));
    assert_false(gw_decode(enc, len, &lim, &back, &fmt, err, sizeof err));
    assert_non_null(strstr(err, "image too large"));
    free(enc);
    gw_image_free(&in);
}

/* ---- pipeline ------------------------------------------------------------------------------------- */

static void test_pipeline_outcomes(void **state)
{
    gw_pipeline_opts o = {.backend = cpu4, .gpu_timeout_ms = 5000};
    gw_limits_default(&o.limits);
    gw_pipeline *p = NULL;
    char err[256];
    assert_true(gw_pipeline_create(&o, &p, err, sizeof err));
    gw_image in, back;
    gw_format fmt;
    uint8_t *enc = NULL;
    size_t len = 0;
    assert_true(gw_synth(&in, 120, 80, GW_SYNTH_ALPHA, 1));
    assert_true(gw_encode(&in, GW_FMT_PNG, 0, &enc, &len, err, sizeof err));
    gw_job *j = gw_pipeline_run(p, enc, len, "thumbnail:60x60,composite:ffffff,format:jpeg:80");
    const gw_job_outcome *oc = gw_job_outcome_of(j);
    assert_int_equal(oc->status, GW_JOB_OK);
    assert_true(gw_decode(oc->result, oc->result_len, &o.limits, &back, &fmt, err, sizeof err));
    assert_int_equal(fmt, GW_FMT_JPEG);
    assert_int_equal(back.w, 60);
    assert_int_equal(back.h, 40);
    gw_image_free(&back);
    gw_job_release(j);
    j = gw_pipeline_run(p, enc, len, "sharpen:1");
    assert_int_equal(gw_job_outcome_of(j)->status, GW_JOB_DEAD);
    assert_non_null(strstr(gw_job_outcome_of(j)->error, "unknown operation"));
    gw_job_release(j);
    j = gw_pipeline_run(p, enc, len / 3, "grayscale");
    assert_int_equal(gw_job_outcome_of(j)->status, GW_JOB_DEAD);
    assert_non_null(strstr(gw_job_outcome_of(j)->error, "corrupt image"));
    gw_job_release(j);
    j = gw_pipeline_run(p, enc, len, "resize:17000x10");
    assert_int_equal(gw_job_outcome_of(j)->status, GW_JOB_DEAD);
    assert_non_null(strstr(gw_job_outcome_of(j)->error, "image too large"));
    gw_job_release(j);
    gw_pipeline_stats st;
    gw_pipeline_get_stats(p, &st);
    assert_int_equal(st.ok, 1);
    assert_int_equal(st.dead, 3);
    free(enc);
    gw_image_free(&in);
    gw_pipeline_destroy(p);
}

static int fatal_calls;
static void note_fatal(void *arg, const char *why)
{
    fatal_calls++;
    printf("on_fatal: %s\n", why);
}

/* The injected hang leaves a thread asleep for good, so it runs in a child process. */
static void test_watchdog(void **state)
{
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        char err[256];
        gw_backend *b = gw_backend_cpu_open(2, err, sizeof err);
        b->hang_after = 1;
        gw_pipeline_opts o = {.backend = b, .gpu_timeout_ms = 300, .on_fatal = note_fatal};
        gw_limits_default(&o.limits);
        gw_pipeline *p = NULL;
        gw_image in;
        uint8_t *enc = NULL;
        size_t len = 0;
        if (!gw_pipeline_create(&o, &p, err, sizeof err) || !gw_synth(&in, 40, 40, GW_SYNTH_SCENE, 1) ||
            !gw_encode(&in, GW_FMT_PNG, 0, &enc, &len, err, sizeof err))
            _exit(10);
        gw_job *j = gw_pipeline_run(p, enc, len, "blur:1");
        if (gw_job_outcome_of(j)->status != GW_JOB_OK)
            _exit(11);
        gw_job_release(j);
        j = gw_pipeline_run(p, enc, len, "blur:1"); /* hangs in the backend */
        const gw_job_outcome *oc = gw_job_outcome_of(j);
        if (oc->status != GW_JOB_GPU_TIMEOUT || strcmp(oc->error, "gpu timeout") != 0)
            _exit(12);
        for (int i = 0; i < 200 && fatal_calls == 0; i++) /* on_fatal runs just after the outcome */
            usleep(10000);
        if (!gw_pipeline_failed(p) || fatal_calls != 1)
            _exit(13);
        gw_job *k = gw_pipeline_run(p, enc, len, "blur:1"); /* refused at once */
        if (gw_job_outcome_of(k)->status != GW_JOB_ABORTED)
            _exit(14);
        fflush(stdout);
        _exit(0); /* the hung thread sleeps on: leave without cleanup, like the worker */
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

static bool broken_process(gw_backend *b, const gw_plan *plan, const gw_image *in, gw_image *out, char *err,
                           size_t err_cap)
{
    snprintf(err, err_cap, "cuda kernels: cudaErrorIllegalAddress (simulated)");
    b->broken = true;
    return false;
}

/* A backend that reports itself broken (a sticky CUDA error) fails the pipeline like the
 * watchdog does: the job is retried elsewhere, the worker exits for a restart. */
static void test_broken_backend(void **state)
{
    fflush(stdout);
    pid_t pid = fork();
    assert_true(pid >= 0);
    if (pid == 0) {
        gw_backend fake = {.name = "fake", .process = broken_process, .hang_after = -1};
        gw_pipeline_opts o = {.backend = &fake, .gpu_timeout_ms = 1000, .on_fatal = note_fatal};
        gw_limits_default(&o.limits);
        gw_pipeline *p = NULL;
        gw_image in;
        uint8_t *enc = NULL;
        size_t len = 0;
        char err[256];
        if (!gw_pipeline_create(&o, &p, err, sizeof err) || !gw_synth(&in, 8, 8, GW_SYNTH_SCENE, 1) ||
            !gw_encode(&in, GW_FMT_PNG, 0, &enc, &len, err, sizeof err))
            _exit(10);
        gw_job *j = gw_pipeline_run(p, enc, len, "grayscale");
        if (gw_job_outcome_of(j)->status != GW_JOB_RETRY || strstr(gw_job_outcome_of(j)->error, "simulated") == NULL)
            _exit(11);
        for (int i = 0; i < 200 && fatal_calls == 0; i++)
            usleep(10000);
        if (!gw_pipeline_failed(p) || fatal_calls != 1)
            _exit(12);
        fflush(stdout);
        _exit(0);
    }
    int status = 0;
    assert_int_equal(waitpid(pid, &status, 0), pid);
    assert_true(WIFEXITED(status));
    assert_int_equal(WEXITSTATUS(status), 0);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_golden),
        cmocka_unit_test(test_threads_agree),
        cmocka_unit_test(test_constant_stays_constant),
        cmocka_unit_test(test_blur_keeps_mean),
        cmocka_unit_test(test_gray_and_identities),
        cmocka_unit_test(test_point_ops_values),
        cmocka_unit_test(test_area_halving_is_block_mean),
        cmocka_unit_test(test_parse),
        cmocka_unit_test(test_codecs_and_limits),
        cmocka_unit_test(test_pipeline_outcomes),
        cmocka_unit_test(test_watchdog),
        cmocka_unit_test(test_broken_backend),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
