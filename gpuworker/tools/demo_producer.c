/* The demo's producer: enqueues every image of a folder on the `api` and `app` lanes (two of
 * three on api), waits for each result with leaseq_enqueue_and_wait, writes the results to the
 * output folder and prints a summary.
 *
 *   demo_producer --addr HOST:PORT --queue Q --in DIR --out DIR [--concurrency K] */
#include "../image.h"

#include "leaseq.h"

#include <dirent.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define FILES_MAX 10000
#define CONCURRENCY_MAX 64
#define WAIT_MS 60000
#define PAYLOAD_MAX (16u << 20)

typedef struct {
    const char *addr, *queue, *in, *out;
    char *files[FILES_MAX];
    int n_files;
    atomic_int next;
    pthread_mutex_t mu; /* guards the counters below */
    int done[2], dead[2], failed[2];
    double latency_ms[2];
} demo;

static const char *const lanes[2] = {"api", "app"};
/* api gets thumbnails; app a heavier chain */
static const char *const ops[2] = {"thumbnail:256x256,format:jpeg:85",
                                   "resize:480x0:area,composite:ffffff,blur:1.2,contrast:1.2,format:png"};

static double now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec / 1e6;
}

static uint8_t *read_file(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (f == NULL)
        return NULL;
    uint8_t *buf = malloc(PAYLOAD_MAX); /* owner: caller */
    size_t n = buf ? fread(buf, 1, PAYLOAD_MAX, f) : 0;
    fclose(f);
    if (buf == NULL || n == 0 || n == PAYLOAD_MAX) {
        free(buf);
        return NULL;
    }
    *len = n;
    return buf;
}

static void *run(void *arg)
{
    demo *d = arg;
    leaseq *c = NULL;
    leaseq_opts lo = {.client_name = "gpuworker-demo"};
    if (leaseq_connect(d->addr, &lo, &c) != LEASEQ_OK) {
        fprintf(stderr, "demo_producer: cannot connect to %s\n", d->addr);
        return NULL;
    }
    for (int i; (i = atomic_fetch_add(&d->next, 1)) < d->n_files;) {
        int lane = i % 3 == 2 ? 1 : 0;
        char path[2048];
        snprintf(path, sizeof path, "%s/%s", d->in, d->files[i]);
        size_t len = 0;
        uint8_t *payload = read_file(path, &len);
        leaseq_outcome o = {0};
        leaseq_err e = LEASEQ_E_INVALID_ARGUMENT;
        double t0 = now_ms();
        if (payload != NULL) {
            leaseq_header hd = {.key = "op", .value = ops[lane]};
            leaseq_job_spec js = {.queue = d->queue, .lane = lanes[lane], .headers = &hd, .n_headers = 1,
                                  .payload = payload, .payload_len = len};
            e = leaseq_enqueue_and_wait(c, &js, WAIT_MS, NULL, &o, WAIT_MS + 5000);
        }
        double dt = now_ms() - t0;
        bool ok = e == LEASEQ_OK && o.state == LEASEQ_STATE_DONE;
        if (ok) {
            gw_format f = gw_detect_format(o.result, o.result_len);
            char name[1024];
            snprintf(name, sizeof name, "%s", d->files[i]);
            char *dot = strrchr(name, '.');
            if (dot)
                *dot = '\0';
            snprintf(path, sizeof path, "%s/%s-%s.%s", d->out, name, lanes[lane], f == GW_FMT_JPEG ? "jpg" : "png");
            FILE *out = fopen(path, "wb");
            ok = out != NULL && fwrite(o.result, 1, o.result_len, out) == o.result_len;
            if (out != NULL)
                ok = fclose(out) == 0 && ok;
        } else {
            fprintf(stderr, "demo_producer: %s: %s %s\n", d->files[i],
                    e != LEASEQ_OK ? leaseq_strerror(e) : leaseq_state_name(o.state), e != LEASEQ_OK ? leaseq_last_error(c) : o.error);
        }
        pthread_mutex_lock(&d->mu);
        if (ok) {
            d->done[lane]++;
            d->latency_ms[lane] += dt;
        } else if (e == LEASEQ_OK && o.state == LEASEQ_STATE_DEAD) {
            d->dead[lane]++;
        } else {
            d->failed[lane]++;
        }
        pthread_mutex_unlock(&d->mu);
        leaseq_outcome_free(&o);
        free(payload);
    }
    leaseq_close(c);
    return NULL;
}

static int by_name(const void *a, const void *b)
{
    return strcmp(*(char *const *)a, *(char *const *)b);
}

int main(int argc, char **argv)
{
    static demo d;
    int conc = 8;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (strcmp(argv[i], "--addr") == 0)
            d.addr = argv[i + 1];
        else if (strcmp(argv[i], "--queue") == 0)
            d.queue = argv[i + 1];
        else if (strcmp(argv[i], "--in") == 0)
            d.in = argv[i + 1];
        else if (strcmp(argv[i], "--out") == 0)
            d.out = argv[i + 1];
        else if (strcmp(argv[i], "--concurrency") == 0)
            conc = atoi(argv[i + 1]);
    }
    if (!d.addr || !d.queue || !d.in || !d.out || conc < 1 || conc > CONCURRENCY_MAX) {
        fprintf(stderr, "usage: demo_producer --addr HOST:PORT --queue Q --in DIR --out DIR [--concurrency 1..64]\n");
        return 2;
    }
    DIR *dir = opendir(d.in);
    if (dir == NULL) {
        perror(d.in);
        return 1;
    }
    for (struct dirent *e; (e = readdir(dir)) != NULL && d.n_files < FILES_MAX;)
        if (e->d_name[0] != '.')
            d.files[d.n_files++] = strdup(e->d_name); /* owner: d.files */
    closedir(dir);
    qsort(d.files, (size_t)d.n_files, sizeof d.files[0], by_name);
    pthread_mutex_init(&d.mu, NULL);
    pthread_t th[CONCURRENCY_MAX];
    double t0 = now_ms();
    for (int i = 0; i < conc; i++)
        pthread_create(&th[i], NULL, run, &d);
    for (int i = 0; i < conc; i++)
        pthread_join(th[i], NULL);
    double secs = (now_ms() - t0) / 1e3;
    int done = d.done[0] + d.done[1], bad = d.dead[0] + d.dead[1] + d.failed[0] + d.failed[1];
    printf("demo: %d jobs, %d done, %d not done, %.2f s, %.1f images/s\n", d.n_files, done, bad, secs,
           secs > 0 ? done / secs : 0.0);
    for (int l = 0; l < 2; l++)
        printf("demo: lane %-3s  %3d done  %d dead  %d failed  mean latency %.0f ms  op %s\n", lanes[l], d.done[l],
               d.dead[l], d.failed[l], d.done[l] ? d.latency_ms[l] / d.done[l] : 0.0, ops[l]);
    printf("demo: results in %s\n", d.out);
    for (int i = 0; i < d.n_files; i++)
        free(d.files[i]);
    return bad == 0 && done == d.n_files ? 0 : 1;
}
