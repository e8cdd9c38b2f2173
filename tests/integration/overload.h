/* Helpers of the overload tests (test_overload_*.c), on top of harness.h: a broker started
 * with extra flags, raw frames for clients that misbehave on purpose, and percentiles. */
#ifndef LQ_TEST_OVERLOAD_H
#define LQ_TEST_OVERLOAD_H

#include <sys/resource.h>

#include "harness.h"
#include "leaseq.pb-c.h"
#include "proto/frame.h"

#define OV_ARGS_MAX 32

/* Starts b with the harness's flags plus extra (NULL-terminated) and waits until it serves
 * requests; a new port is tried when the first guess was taken meanwhile. */
H_FN bool ov_broker_start(h_broker *b, const char *const *extra, int timeout_ms)
{
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    for (int attempt = 0; attempt < 5 && h_now_ms() < end; attempt++) {
        if (attempt > 0 && !b->ever_ready) {
            b->port = h_free_port();
            snprintf(b->addr, sizeof b->addr, "127.0.0.1:%d", b->port);
        }
        char listen[64];
        snprintf(listen, sizeof listen, "127.0.0.1:%d", b->port);
        const char *argv[OV_ARGS_MAX + 8] = {b->bin, "--listen", listen, "--data-dir", b->data_dir, "--sync", b->sync};
        int n = 7;
        for (int i = 0; extra && extra[i] && n < OV_ARGS_MAX; i++)
            argv[n++] = extra[i];
        argv[n] = NULL;
        pid_t parent = getpid();
        fflush(stdout);
        pid_t pid = fork();
        if (pid < 0)
            return false;
        if (pid == 0) {
            h_child_init(parent);
            int fd = open(b->log_path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
            if (fd >= 0) {
                dup2(fd, STDOUT_FILENO);
                dup2(fd, STDERR_FILENO);
            }
            execv(b->bin, (char *const *)argv);
            _exit(127);
        }
        b->pid = pid;
        b->starts++;
        int left = (int)(end - h_now_ms());
        if (h_broker_wait_ready(b, left > 0 ? left : 1)) {
            b->ever_ready = true;
            return true;
        }
        if (b->pid) {
            h_broker_kill9(b);
            return false;
        }
        h_sleep_ms(200);
    }
    return false;
}

/* The whole log of the broker contains needle. */
H_FN bool ov_log_has(const h_broker *b, const char *needle)
{
    FILE *f = fopen(b->log_path, "r");
    if (!f)
        return false;
    char line[4096];
    bool found = false;
    while (!found && fgets(line, sizeof line, f))
        found = strstr(line, needle) != NULL;
    fclose(f);
    return found;
}

/* Stops the broker with SIGTERM and checks it exited 0 with no sanitizer report in its log. */
H_FN bool ov_broker_stop_clean(h_broker *b)
{
    char how[128];
    bool ok = h_broker_stop(b, 20000, how, sizeof how);
    if (!ok)
        printf("leaseqd did not stop cleanly: %s\n", how);
    if (ov_log_has(b, "ERROR: AddressSanitizer") || ov_log_has(b, "ERROR: LeakSanitizer") ||
        ov_log_has(b, "runtime error:")) {
        printf("sanitizer report in the broker log\n");
        ok = false;
    }
    if (!ok)
        h_dump_tail(b->log_path, 40);
    return ok;
}

/* Soft fd limit up to the hard one; returns the new soft limit. */
H_FN rlim_t ov_raise_nofile(void)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) != 0)
        return 0;
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
    return rl.rlim_cur;
}

/* ---- raw frames ------------------------------------------------------------------------- */

/* Packs a request (+ payload) as one frame into buf; returns its size or 0 if it does not fit. */
H_FN size_t ov_pack(const Leaseq__Request *r, const void *payload, size_t payload_len, uint8_t *buf, size_t cap)
{
    size_t meta = leaseq__request__get_packed_size(r);
    if (LQ_FRAME_HEADER_BYTES + meta + payload_len > cap)
        return 0;
    lq_frame_header(buf, (uint32_t)meta, (uint32_t)payload_len);
    leaseq__request__pack(r, buf + LQ_FRAME_HEADER_BYTES);
    if (payload_len)
        memcpy(buf + LQ_FRAME_HEADER_BYTES + meta, payload, payload_len);
    return LQ_FRAME_HEADER_BYTES + meta + payload_len;
}

H_FN size_t ov_hello_frame(uint8_t *buf, size_t cap, uint64_t rid)
{
    Leaseq__Hello h = LEASEQ__HELLO__INIT;
    h.protocol_version = 1;
    h.client_name = (char *)"overload-test";
    Leaseq__Request r = LEASEQ__REQUEST__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__REQUEST__BODY_HELLO;
    r.hello = &h;
    return ov_pack(&r, NULL, 0, buf, cap);
}

H_FN size_t ov_ping_frame(uint8_t *buf, size_t cap, uint64_t rid)
{
    Leaseq__Ping p = LEASEQ__PING__INIT;
    Leaseq__Request r = LEASEQ__REQUEST__INIT;
    r.request_id = rid;
    r.body_case = LEASEQ__REQUEST__BODY_PING;
    r.ping = &p;
    return ov_pack(&r, NULL, 0, buf, cap);
}

/* Reads one whole response frame (blocking, up to timeout_ms); the caller frees it with
 * leaseq__response__free_unpacked. NULL on timeout, close or garbage. */
H_FN Leaseq__Response *ov_read_response(int fd, int timeout_ms)
{
    uint8_t hdr[8];
    size_t got = 0;
    uint64_t end = h_now_ms() + (uint64_t)timeout_ms;
    uint8_t *body = NULL;
    size_t need = 8;
    while (got < need) {
        int left = (int)(end - h_now_ms());
        struct pollfd p = {.fd = fd, .events = POLLIN};
        if (left <= 0 || poll(&p, 1, left) != 1)
            goto fail;
        ssize_t n = got < 8 ? read(fd, hdr + got, 8 - got) : read(fd, body + (got - 8), need - got);
        if (n <= 0)
            goto fail;
        got += (size_t)n;
        if (got == 8 && body == NULL) {
            uint32_t len = lq_be32_load(hdr);
            if (len < 4 || len > (64u << 20))
                goto fail;
            need = 4 + (size_t)len;
            body = malloc(need - 8 > 0 ? need - 8 : 1); /* owner: this function */
            if (!body)
                goto fail;
        }
    }
    uint32_t meta = lq_be32_load(hdr + 4);
    if (meta > need - 8)
        goto fail;
    Leaseq__Response *r = leaseq__response__unpack(NULL, meta, body);
    free(body);
    return r;
fail:
    free(body);
    return NULL;
}

/* ---- numbers ---------------------------------------------------------------------------- */

H_FN int ov_cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

/* The p-th percentile (0..100) of v[0..n), sorting v. */
H_FN uint64_t ov_percentile(uint64_t *v, size_t n, double p)
{
    if (n == 0)
        return 0;
    qsort(v, n, sizeof *v, ov_cmp_u64);
    size_t i = (size_t)(p / 100.0 * (double)(n - 1) + 0.5);
    return v[i < n ? i : n - 1];
}

#define OV_CHECK(cond, ...)                                                                                   \
    do {                                                                                                      \
        if (!(cond)) {                                                                                        \
            printf("CHECK FAILED (%s:%d): %s: ", __FILE__, __LINE__, #cond);                                  \
            printf(__VA_ARGS__);                                                                              \
            printf("\n");                                                                                     \
            fflush(stdout);                                                                                   \
            return 1;                                                                                         \
        }                                                                                                     \
    } while (0)

#endif
