/* leaseq-gpuworker against a real leaseqd (built to $(BUILD)/tests/integration/gpu_workers).
 *
 * 1. A worker whose backend hangs on its first job (--inject-hang-after 0): its watchdog nacks
 *    the job with "gpu timeout" and the process exits 3; the job goes back to the front of its
 *    lane and a second worker finishes it; the producer, blocked in leaseq_enqueue_and_wait,
 *    gets the right image (decoded and compared pixel for pixel with the CPU backend here).
 * 2. Corrupt, oversized and over-budget images and an unknown operation end dead with their
 *    reason, and the worker keeps serving: a good job afterwards is done.
 * 3. SIGTERM stops the worker cleanly (exit 0). */
#include "../integration/harness.h"

#include "gw_testutil.h"

#include <pthread.h>
#include <stdlib.h>

#define QUEUE "images"
#define WAIT_MS 25000

typedef struct {
    pid_t pid;
    char log[H_PATH_MAX];
} worker_proc;

static bool start_worker(worker_proc *w, const char *tmpdir, const char *addr, const char *id, char *const *extra)
{
    char bin[H_PATH_MAX];
    h_bin_path(bin, sizeof bin, "leaseq-gpuworker");
    if (access(bin, X_OK) != 0) {
        printf("leaseq-gpuworker not found at %s\n", bin);
        return false;
    }
    snprintf(w->log, sizeof w->log, "%s/%s.log", tmpdir, id);
    char *argv[40] = {bin, "--addr", (char *)addr, "--queue", QUEUE, "--backend", "cpu", "--worker-id", (char *)id,
                      "--heartbeat-ms", "200", "--stats-ms", "0", "--threads", "2"};
    int n = 15;
    for (int i = 0; extra != NULL && extra[i] != NULL && n < 38; i++)
        argv[n++] = extra[i];
    argv[n] = NULL;
    pid_t parent = getpid();
    fflush(stdout);
    pid_t pid = fork();
    if (pid < 0)
        return false;
    if (pid == 0) {
        h_child_init(parent);
        int fd = open(w->log, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
        if (fd >= 0) {
            dup2(fd, STDOUT_FILENO);
            dup2(fd, STDERR_FILENO);
        }
        execv(bin, argv);
        _exit(127);
    }
    w->pid = pid;
    return true;
}

static bool file_has(const char *path, const char *needle)
{
    FILE *f = fopen(path, "r");
    if (f == NULL)
        return false;
    static char buf[256 * 1024];
    size_t n = fread(buf, 1, sizeof buf - 1, f);
    fclose(f);
    buf[n] = '\0';
    return strstr(buf, needle) != NULL;
}

static bool wait_for_log(const char *path, const char *needle, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    while (h_now_ms() < end) {
        if (file_has(path, needle))
            return true;
        h_sleep_ms(20);
    }
    printf("%s: no \"%s\" within %d ms\n", path, needle, timeout_ms);
    h_dump_tail(path, 30);
    return false;
}

static bool make_png(int w, int h, gw_synth_pattern pat, uint8_t **out, size_t *len, gw_image *keep)
{
    gw_image img;
    char err[128];
    if (!gw_synth(&img, w, h, pat, 5))
        return false;
    bool ok = gw_encode(&img, GW_FMT_PNG, 0, out, len, err, sizeof err);
    if (keep != NULL)
        *keep = img;
    else
        gw_image_free(&img);
    return ok;
}

/* One job through enqueue_and_wait on a fresh connection. */
static bool submit(const char *addr, const void *payload, size_t len, const char *op, leaseq_outcome *o)
{
    leaseq *c = NULL;
    leaseq_opts lo = {.client_name = "gpu-itest-producer"};
    if (leaseq_connect(addr, &lo, &c) != LEASEQ_OK) {
        printf("producer: cannot connect\n");
        return false;
    }
    leaseq_header hd = {.key = "op", .value = op};
    leaseq_job_spec js = {.queue = QUEUE, .max_attempts = 3, .headers = &hd, .n_headers = 1,
                          .payload = payload, .payload_len = len};
    uint64_t id = 0;
    leaseq_err e = leaseq_enqueue_and_wait(c, &js, WAIT_MS, &id, o, WAIT_MS + 5000);
    if (e != LEASEQ_OK)
        printf("producer: job %llu op \"%s\": %s: %s\n", (unsigned long long)id, op, leaseq_strerror(e),
               leaseq_last_error(c));
    else
        h_log("job %llu op \"%s\": %s \"%s\" (%zu result bytes)", (unsigned long long)id, op,
              leaseq_state_name(o->state), o->error, o->result_len);
    leaseq_close(c);
    return e == LEASEQ_OK;
}

typedef struct {
    const char *addr;
    const uint8_t *payload;
    size_t len;
    const char *op;
    leaseq_outcome out;
    bool ok;
} producer_arg;

static void *producer_main(void *arg)
{
    producer_arg *p = arg;
    p->ok = submit(p->addr, p->payload, p->len, p->op, &p->out);
    return NULL;
}

#define CHECK(cond)                                                                                 \
    do {                                                                                            \
        if (!(cond)) {                                                                              \
            printf("FAILED at line %d: %s\n", __LINE__, #cond);                                     \
            goto done;                                                                              \
        }                                                                                           \
    } while (0)

/* The result must be the CPU backend's answer for the same input and chain. */
static bool result_matches(const leaseq_outcome *o, const gw_image *src, const char *op, int want_w, int want_h)
{
    gw_limits lim;
    gw_limits_default(&lim);
    gw_image got, want;
    gw_format fmt;
    char err[256];
    if (o->state != LEASEQ_STATE_DONE || !gw_decode(o->result, o->result_len, &lim, &got, &fmt, err, sizeof err)) {
        printf("result: state %s, not a decodable image\n", leaseq_state_name(o->state));
        return false;
    }
    bool ok = got.w == want_w && got.h == want_h && fmt == GW_FMT_PNG;
    gw_backend *cpu = gw_backend_cpu_open(1, err, sizeof err);
    if (ok && cpu != NULL && gwt_run(cpu, op, src, &want, NULL)) {
        int d = gwt_max_diff(&got, &want);
        printf("result %dx%d, max difference to the local CPU run: %d\n", got.w, got.h, d);
        ok = d == 0;
        gw_image_free(&want);
    } else {
        printf("result %dx%d png=%d (want %dx%d png)\n", got.w, got.h, fmt == GW_FMT_PNG, want_w, want_h);
        ok = false;
    }
    if (cpu != NULL)
        cpu->close(cpu);
    gw_image_free(&got);
    return ok;
}

static int body(const char *tmpdir)
{
    int rc = 1;
    h_broker b;
    worker_proc hung = {0}, good = {0};
    uint8_t *png = NULL, *big = NULL;
    size_t png_len = 0, big_len = 0;
    gw_image src = {0};
    producer_arg pa = {0};
    bool producer_started = false;
    pthread_t producer;
    leaseq_outcome o = {0};
    int status = 0;
    char how[64] = "";
    CHECK(h_broker_init(&b, tmpdir));
    CHECK(h_broker_start_ready(&b, 15000));

    /* 1. the hung worker takes the job, its watchdog gives it back, the good one finishes it */
    char *hung_args[] = {"--inject-hang-after", "0", "--gpu-timeout-ms", "800", "--sessions", "1", "--prefetch", "1",
                         NULL};
    CHECK(start_worker(&hung, tmpdir, b.addr, "hung", hung_args));
    CHECK(wait_for_log(hung.log, "msg=\"started\"", 10000));
    const char *op = "resize:64x48,format:png";
    CHECK(make_png(200, 150, GW_SYNTH_SCENE, &png, &png_len, &src));
    pa = (producer_arg){.addr = b.addr, .payload = png, .len = png_len, .op = op};
    CHECK(pthread_create(&producer, NULL, producer_main, &pa) == 0);
    producer_started = true;
    CHECK(wait_for_log(hung.log, "fault injection: backend hangs now", 10000));
    char *good_args[] = {"--max-pixels", "1000000", NULL};
    CHECK(start_worker(&good, tmpdir, b.addr, "good", good_args));
    CHECK(h_wait_pid(hung.pid, &status, 15000));
    hung.pid = 0;
    h_describe_status(status, how, sizeof how);
    h_log("hung worker ended: %s", how);
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 3);
    CHECK(file_has(hung.log, "error=\"gpu timeout\""));
    pthread_join(producer, NULL);
    producer_started = false;
    CHECK(pa.ok);
    CHECK(result_matches(&pa.out, &src, op, 64, 48));
    CHECK(wait_for_log(good.log, "msg=\"started\"", 1000));

    /* 2. jobs that can never succeed end dead with their reason; the worker keeps going */
    static const uint8_t corrupt[] = "\x89PNG\r\n\x1a\nthis is not a png at all";
    CHECK(submit(b.addr, corrupt, sizeof corrupt, "grayscale", &o));
    CHECK(o.state == LEASEQ_STATE_DEAD && strstr(o.error, "corrupt image") != NULL);
    leaseq_outcome_free(&o);
    uint8_t hdr[64];
    size_t hl = gwt_fake_png_header(hdr, 20000, 20000);
    CHECK(submit(b.addr, hdr, hl, "grayscale", &o));
    CHECK(o.state == LEASEQ_STATE_DEAD && strstr(o.error, "image too large: 20000x20000") != NULL);
    leaseq_outcome_free(&o);
    CHECK(make_png(1100, 1000, GW_SYNTH_CHECKER, &big, &big_len, NULL)); /* over --max-pixels 1000000 */
    CHECK(submit(b.addr, big, big_len, "grayscale", &o));
    CHECK(o.state == LEASEQ_STATE_DEAD && strstr(o.error, "exceeds 1000000") != NULL);
    leaseq_outcome_free(&o);
    CHECK(submit(b.addr, png, png_len, "resize:10x10,sharpen:2", &o));
    CHECK(o.state == LEASEQ_STATE_DEAD && strstr(o.error, "unknown operation \"sharpen\"") != NULL);
    leaseq_outcome_free(&o);
    CHECK(submit(b.addr, png, png_len, "thumbnail:50x50,format:png", &o));
    CHECK(result_matches(&o, &src, "thumbnail:50x50", 50, 38));
    leaseq_outcome_free(&o);
    CHECK(waitpid(good.pid, &status, WNOHANG) == 0);

    /* 3. clean stop */
    kill(good.pid, SIGTERM);
    CHECK(h_wait_pid(good.pid, &status, 10000));
    good.pid = 0;
    CHECK(WIFEXITED(status) && WEXITSTATUS(status) == 0);
    CHECK(file_has(good.log, "msg=\"job dead\""));
    if (getenv("GW_ITEST_SHOW_LOGS")) {
        h_dump_tail(hung.log, 20);
        h_dump_tail(good.log, 20);
    }
    rc = 0;
done:
    if (rc != 0) {
        if (hung.log[0])
            h_dump_tail(hung.log, 20);
        if (good.log[0])
            h_dump_tail(good.log, 20);
        h_dump_tail(b.log_path, 20);
    }
    if (producer_started) /* it ends by its own timeout, or with the supervisor's kill */
        pthread_detach(producer);
    else
        leaseq_outcome_free(&pa.out);
    leaseq_outcome_free(&o);
    free(png);
    free(big);
    gw_image_free(&src);
    if (rc == 0)
        h_broker_stop(&b, 10000, how, sizeof how);
    return rc;
}

int main(void)
{
    return h_supervise("gpu_workers", 120, body);
}
