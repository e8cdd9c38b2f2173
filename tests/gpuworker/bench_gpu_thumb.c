/* Benchmark: 1024x1024 JPEG -> 256x256 thumbnail (JPEG q85), images/s, per backend.
 *
 *   gpu_thumb [--n N] [--backend cpu|cuda|all] [--threads T] [--submitters K] [--size S]
 *
 * Two numbers per backend: "process" is the backend alone on a decoded image (the kernels plus,
 * for CUDA, the copies in and out); "pipeline" is the worker's whole path without the network:
 * K threads submit to the pipeline (decode pool -> backend -> encoder) as K broker sessions would. */
#include "../../gpuworker/backend.h"
#include "../../gpuworker/pipeline.h"
#include "../../gpuworker/synth.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define SUBMITTERS_MAX 32
#define OP "thumbnail:256x256,format:jpeg:85"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

typedef struct {
    gw_pipeline *p;
    const uint8_t *jpeg;
    size_t len;
    int n;
    int failed;
} submitter;

static void *submit_main(void *arg)
{
    submitter *s = arg;
    for (int i = 0; i < s->n; i++) {
        gw_job *j = gw_pipeline_run(s->p, s->jpeg, s->len, OP);
        if (j == NULL || gw_job_outcome_of(j)->status != GW_JOB_OK)
            s->failed++;
        gw_job_release(j);
    }
    return NULL;
}

static int bench(gw_backend *b, const uint8_t *jpeg, size_t len, int n, int submitters)
{
    char err[256];
    gw_limits lim;
    gw_limits_default(&lim);
    gw_image img;
    gw_format fmt;
    static gw_plan plan;
    if (!gw_decode(jpeg, len, &lim, &img, &fmt, err, sizeof err) || !gw_plan_parse(OP, &plan, err, sizeof err) ||
        !gw_plan_resolve(&plan, fmt, img.w, img.h, &lim, err, sizeof err)) {
        fprintf(stderr, "setup: %s\n", err);
        return 1;
    }
    gw_image out;
    if (!b->process(b, &plan, &img, &out, err, sizeof err)) { /* warm-up: buffers, JIT */
        fprintf(stderr, "%s: %s\n", b->name, err);
        return 1;
    }
    gw_image_free(&out);
    double t0 = now_s();
    for (int i = 0; i < n; i++) {
        if (!b->process(b, &plan, &img, &out, err, sizeof err)) {
            fprintf(stderr, "%s: %s\n", b->name, err);
            return 1;
        }
        gw_image_free(&out);
    }
    double dt = now_s() - t0;
    printf("backend=%s device=\"%s\" stage=process images=%d secs=%.3f images_per_s=%.1f ms_per_image=%.3f\n",
           b->name, b->device_name, n, dt, n / dt, dt * 1000.0 / n);
    gw_image_free(&img);

    gw_pipeline_opts po = {.backend = b, .limits = lim, .decode_threads = 2, .gpu_timeout_ms = 10000};
    gw_pipeline *p = NULL;
    if (!gw_pipeline_create(&po, &p, err, sizeof err)) {
        fprintf(stderr, "pipeline: %s\n", err);
        return 1;
    }
    submitter subs[SUBMITTERS_MAX];
    pthread_t th[SUBMITTERS_MAX];
    t0 = now_s();
    for (int i = 0; i < submitters; i++) {
        subs[i] = (submitter){.p = p, .jpeg = jpeg, .len = len, .n = n / submitters};
        pthread_create(&th[i], NULL, submit_main, &subs[i]);
    }
    int failed = 0, done = 0;
    for (int i = 0; i < submitters; i++) {
        pthread_join(th[i], NULL);
        failed += subs[i].failed;
        done += subs[i].n;
    }
    dt = now_s() - t0;
    gw_pipeline_stats st;
    gw_pipeline_get_stats(p, &st);
    double k = st.ok > 0 ? (double)st.ok * 1000.0 : 1.0;
    printf("backend=%s stage=pipeline submitters=%d images=%d failed=%d secs=%.3f images_per_s=%.1f "
           "decode_ms=%.2f process_ms=%.2f encode_ms=%.2f\n",
           b->name, submitters, done, failed, dt, done / dt, (double)st.decode_us / k, (double)st.process_us / k,
           (double)st.encode_us / k);
    gw_pipeline_destroy(p);
    return failed != 0;
}

int main(int argc, char **argv)
{
    int n = 100, threads = 0, submitters = 4, size = 1024;
    const char *which = "all";
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--n") == 0)
            n = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--backend") == 0)
            which = argv[i + 1];
        else if (strcmp(argv[i], "--threads") == 0)
            threads = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--submitters") == 0)
            submitters = atoi(argv[i + 1]);
        else if (strcmp(argv[i], "--size") == 0)
            size = atoi(argv[i + 1]);
    }
    if (n < 1 || submitters < 1 || submitters > SUBMITTERS_MAX || size < 16 || size > 8192) {
        fprintf(stderr, "usage: gpu_thumb [--n N] [--backend cpu|cuda|all] [--threads T] [--submitters 1..32] "
                        "[--size S]\n");
        return 2;
    }
    char err[256];
    gw_image img;
    uint8_t *jpeg = NULL;
    size_t len = 0;
    if (!gw_synth(&img, size, size, GW_SYNTH_SCENE, 1) || !gw_encode(&img, GW_FMT_JPEG, 90, &jpeg, &len, err, sizeof err)) {
        fprintf(stderr, "input: %s\n", err);
        return 1;
    }
    gw_image_free(&img);
    printf("input: %dx%d JPEG q90, %zu bytes; op %s\n", size, size, len, OP);
    int rc = 0;
    if (strcmp(which, "cpu") == 0 || strcmp(which, "all") == 0) {
        gw_backend *b = gw_backend_cpu_open(threads, err, sizeof err);
        rc |= b == NULL || bench(b, jpeg, len, n, submitters);
        if (b)
            b->close(b);
    }
    if (strcmp(which, "cuda") == 0 || strcmp(which, "all") == 0) {
        gw_backend *b = gw_cuda_compiled() ? gw_backend_cuda_open(0, err, sizeof err) : NULL;
        if (b == NULL) {
            printf("backend=cuda SKIPPED: %s\n", gw_cuda_compiled() ? err : "built without CUDA");
            rc |= strcmp(which, "cuda") == 0;
        } else {
            rc |= bench(b, jpeg, len, n, submitters);
            b->close(b);
        }
    }
    free(jpeg);
    return rc;
}
