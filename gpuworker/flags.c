#include "flags.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void gw_flags_usage(FILE *out)
{
    fputs("usage: leaseq-gpuworker --addr HOST:PORT --queue Q [--queue Q2 ...]\n"
          "  [--prefetch N]          leases held per session (default 2)\n"
          "  [--sessions K]          broker sessions = images in flight (default 2)\n"
          "  [--backend auto|cuda|cpu] (default auto: CUDA when a GPU is usable)\n"
          "  [--device N]            CUDA device (default 0)\n"
          "  [--threads N]           CPU backend threads (default: online CPUs)\n"
          "  [--decode-threads N]    decoder threads (default 2)\n"
          "  [--worker-id ID]        (default gpuworker-HOST-PID; sessions add /0, /1, ...)\n"
          "  [--heartbeat-ms MS]     (default 1000)\n"
          "  [--lease-ms MS]         (default: the queue's)\n"
          "  [--gpu-timeout-ms MS]   watchdog deadline of one process step (default 10000)\n"
          "  [--inject-hang-after N] fault injection: the backend hangs after N jobs\n"
          "  [--max-pixels N]        largest image, input or intermediate (default 67108864)\n"
          "  [--stats-ms MS]         stats log period (default 10000, 0 = off)\n"
          "  [--token T]             broker auth token\n"
          "  [--lanes SPEC]          accepted and ignored: lanes are configured per queue on leaseqd\n",
          out);
}

static bool num(const char *s, long long lo, long long hi, long long *out)
{
    char *end = NULL;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno != 0 || end == s || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

bool gw_flags_parse(int argc, char **argv, gw_flags *f, char *err, size_t err_cap)
{
    memset(f, 0, sizeof *f);
    f->prefetch = 2;
    f->sessions = 2;
    f->heartbeat_ms = 1000;
    f->gpu_timeout_ms = 10000;
    f->inject_hang_after = -1;
    f->stats_ms = 10000;
    char host[64] = "host";
    gethostname(host, sizeof host - 1);
    snprintf(f->worker_id, sizeof f->worker_id, "gpuworker-%.60s-%d", host, (int)getpid());
    err[0] = '\0';
    for (int i = 1; i < argc; i++) {
        const char *k = argv[i];
        if (strcmp(k, "--help") == 0 || strcmp(k, "-h") == 0)
            return false;
        if (i + 1 >= argc) {
            snprintf(err, err_cap, "%s: missing value (or unknown flag)", k);
            return false;
        }
        const char *v = argv[++i];
        long long n = 0;
#define NUM(lo, hi)                                                                                 \
    if (!num(v, lo, hi, &n)) {                                                                      \
        snprintf(err, err_cap, "%s: expected a number in %lld..%lld, got \"%s\"", k, (long long)(lo), \
                 (long long)(hi), v);                                                               \
        return false;                                                                               \
    }
        if (strcmp(k, "--addr") == 0) {
            f->addr = v;
        } else if (strcmp(k, "--queue") == 0) {
            if (f->n_queues == GW_QUEUES_MAX) {
                snprintf(err, err_cap, "--queue: at most %d", GW_QUEUES_MAX);
                return false;
            }
            f->queues[f->n_queues++] = v;
        } else if (strcmp(k, "--lanes") == 0) {
            f->lanes = v;
        } else if (strcmp(k, "--token") == 0) {
            f->token = v;
        } else if (strcmp(k, "--worker-id") == 0) {
            if (strlen(v) == 0 || strlen(v) >= sizeof f->worker_id - 8) {
                snprintf(err, err_cap, "--worker-id: 1..%zu bytes", sizeof f->worker_id - 9);
                return false;
            }
            snprintf(f->worker_id, sizeof f->worker_id, "%s", v);
        } else if (strcmp(k, "--backend") == 0) {
            if (strcmp(v, "auto") == 0)
                f->backend = GW_BACKEND_AUTO;
            else if (strcmp(v, "cuda") == 0)
                f->backend = GW_BACKEND_CUDA;
            else if (strcmp(v, "cpu") == 0)
                f->backend = GW_BACKEND_CPU;
            else {
                snprintf(err, err_cap, "--backend: expected auto, cuda or cpu, got \"%s\"", v);
                return false;
            }
        } else if (strcmp(k, "--prefetch") == 0) {
            NUM(1, 256);
            f->prefetch = (uint32_t)n;
        } else if (strcmp(k, "--sessions") == 0) {
            NUM(1, GW_SESSIONS_MAX);
            f->sessions = (int)n;
        } else if (strcmp(k, "--device") == 0) {
            NUM(0, 64);
            f->device = (int)n;
        } else if (strcmp(k, "--threads") == 0) {
            NUM(0, 64);
            f->threads = (int)n;
        } else if (strcmp(k, "--decode-threads") == 0) {
            NUM(0, 16);
            f->decode_threads = (int)n;
        } else if (strcmp(k, "--heartbeat-ms") == 0) {
            NUM(50, 600000);
            f->heartbeat_ms = (uint32_t)n;
        } else if (strcmp(k, "--lease-ms") == 0) {
            NUM(0, 43200000);
            f->lease_ms = (uint32_t)n;
        } else if (strcmp(k, "--gpu-timeout-ms") == 0) {
            NUM(10, 3600000);
            f->gpu_timeout_ms = (uint32_t)n;
        } else if (strcmp(k, "--inject-hang-after") == 0) {
            NUM(-1, 1000000000);
            f->inject_hang_after = n;
        } else if (strcmp(k, "--max-pixels") == 0) {
            NUM(1, 1LL << 32);
            f->max_pixels = (uint64_t)n;
        } else if (strcmp(k, "--stats-ms") == 0) {
            NUM(0, 3600000);
            f->stats_ms = (uint32_t)n;
        } else {
            snprintf(err, err_cap, "unknown flag %s", k);
            return false;
        }
#undef NUM
    }
    if (f->addr == NULL || f->n_queues == 0) {
        snprintf(err, err_cap, "--addr and --queue are required");
        return false;
    }
    return true;
}
