/* Command line of leaseq-gpuworker (see gw_flags_usage and docs/GPUWORKER.md). */
#ifndef GW_FLAGS_H
#define GW_FLAGS_H

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>

#define GW_QUEUES_MAX 8
#define GW_SESSIONS_MAX 16

typedef enum { GW_BACKEND_AUTO = 0, GW_BACKEND_CUDA, GW_BACKEND_CPU } gw_backend_choice;

typedef struct {
    const char *addr;                /* required */
    const char *queues[GW_QUEUES_MAX];
    int n_queues;                    /* >= 1 */
    const char *lanes;               /* accepted and ignored (lanes are per queue on the broker) */
    const char *token;
    char worker_id[128];             /* default gpuworker-HOST-PID */
    uint32_t prefetch;               /* per session; default 2 */
    int sessions;                    /* default 2 */
    gw_backend_choice backend;
    int device;
    int threads;                     /* CPU backend; 0 = online CPUs */
    int decode_threads;              /* 0 = 2 */
    uint32_t heartbeat_ms;           /* default 1000 */
    uint32_t lease_ms;               /* 0 = queue default */
    uint32_t gpu_timeout_ms;         /* default 10000 */
    int64_t inject_hang_after;       /* -1 = off */
    uint64_t max_pixels;             /* 0 = default (64 Mi px) */
    uint32_t stats_ms;               /* default 10000; 0 = off */
} gw_flags;

/* false with err set on a bad command line; false with err "" for --help. Pointers in f point
 * into argv. */
bool gw_flags_parse(int argc, char **argv, gw_flags *f, char *err, size_t err_cap);
void gw_flags_usage(FILE *out);

#endif
