/* One interface, two backends: CUDA kernels (cuda/backend_cuda.cu) and C with pthreads
 * (cpu/backend_cpu.c). Both run a resolved plan (ops.h) with the formulas of pixmath.h, so they
 * give the same pixels.
 *
 * Threads: a backend is used by one thread at a time (the pipeline's process stage); open and
 * close happen on the thread that owns the pipeline. */
#ifndef GW_BACKEND_H
#define GW_BACKEND_H

#include "image.h"
#include "ops.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

typedef struct gw_backend gw_backend;

struct gw_backend {
    const char *name; /* "cpu" or "cuda" */
    /* Runs every step of plan on in (plan->in_w x plan->in_h) into out, which the backend
     * allocates (gw_image_alloc; owner: caller). false with err filled on failure. */
    bool (*process)(gw_backend *b, const gw_plan *plan, const gw_image *in, gw_image *out, char *err,
                    size_t err_cap);
    void (*close)(gw_backend *b); /* frees b */
    /* Fault injection (tests): after this many processed jobs the next one never returns,
     * as a wedged driver would. -1 = off. */
    int64_t hang_after;
    int64_t processed;
    /* Set by a backend whose failure will repeat for every job (a sticky CUDA error): the
     * pipeline then fails as a whole and the worker exits for a restart. */
    bool broken;
    char device_name[128]; /* for the start-up log */
    void *impl;            /* owner: the backend */
};

/* threads 0 = one per online CPU. */
gw_backend *gw_backend_cpu_open(int threads, char *err, size_t err_cap);

/* true when this binary has the CUDA backend compiled in. */
bool gw_cuda_compiled(void);

/* NULL with err filled when there is no usable device (no driver, no GPU, built without CUDA):
 * the caller falls back to the CPU backend. Never aborts the process. */
gw_backend *gw_backend_cuda_open(int device, char *err, size_t err_cap);

/* What both backends call before each job: true when the fault injection says to hang now. */
bool gw_backend_should_hang(gw_backend *b);

/* Blocks the calling thread for good (sleeping, not spinning): the injected hang of the CPU
 * backend. Returns only when the process is ending. */
void gw_backend_hang_forever(void);

#endif
