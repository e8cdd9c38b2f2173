/* The CPU backend: the pixmath.h formulas in plain loops, rows split over a pthread pool.
 *
 * The pool: `threads - 1` helpers plus the calling thread take chunks of rows from an atomic
 * counter; the caller waits for the helpers of that round before the next step reads the
 * rows. One round per step, so a step never reads a row the previous one has not written. */
#include "../backend.h"
#include "../log.h"
#include "../pixmath.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define THREADS_MAX 64
#define ROWS_PER_CHUNK 8

typedef void (*rows_fn)(void *ctx, int y0, int y1);

typedef struct {
    pthread_t th[THREADS_MAX];
    int n_threads;        /* helpers started */
    pthread_mutex_t mu;
    pthread_cond_t go, done;
    uint64_t round;       /* guarded by mu: bumps to start a round */
    int busy;             /* helpers still in the current round */
    bool quit;
    rows_fn fn;           /* the current round's work (set under mu) */
    void *ctx;
    int rows;
    atomic_int next_row;
} pool;

static void take_rows(pool *p)
{
    for (;;) {
        int y0 = atomic_fetch_add(&p->next_row, ROWS_PER_CHUNK);
        if (y0 >= p->rows)
            return;
        int y1 = y0 + ROWS_PER_CHUNK < p->rows ? y0 + ROWS_PER_CHUNK : p->rows;
        p->fn(p->ctx, y0, y1);
    }
}

static void *helper_main(void *arg)
{
    pool *p = arg;
    uint64_t seen = 0;
    pthread_mutex_lock(&p->mu);
    for (;;) {
        while (!p->quit && p->round == seen)
            pthread_cond_wait(&p->go, &p->mu); /* idle helpers sleep until the next step */
        if (p->quit)
            break;
        seen = p->round;
        pthread_mutex_unlock(&p->mu);
        take_rows(p);
        pthread_mutex_lock(&p->mu);
        if (--p->busy == 0)
            pthread_cond_signal(&p->done);
    }
    pthread_mutex_unlock(&p->mu);
    return NULL;
}

static void pool_run(pool *p, int rows, rows_fn fn, void *ctx)
{
    if (p->n_threads == 0 || rows <= ROWS_PER_CHUNK) {
        fn(ctx, 0, rows);
        return;
    }
    pthread_mutex_lock(&p->mu);
    p->fn = fn;
    p->ctx = ctx;
    p->rows = rows;
    atomic_store(&p->next_row, 0);
    p->busy = p->n_threads;
    p->round++;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    take_rows(p);
    pthread_mutex_lock(&p->mu);
    while (p->busy > 0)
        pthread_cond_wait(&p->done, &p->mu); /* helpers are bounded by the rows left */
    pthread_mutex_unlock(&p->mu);
}

static void pool_stop(pool *p)
{
    pthread_mutex_lock(&p->mu);
    p->quit = true;
    pthread_cond_broadcast(&p->go);
    pthread_mutex_unlock(&p->mu);
    for (int i = 0; i < p->n_threads; i++)
        pthread_join(p->th[i], NULL);
    pthread_mutex_destroy(&p->mu);
    pthread_cond_destroy(&p->go);
    pthread_cond_destroy(&p->done);
}

/* ---- one step -------------------------------------------------------------------------------- */

typedef struct {
    const gw_op *op;
    const uint8_t *src;
    uint8_t *dst;
    uint16_t *tmp; /* blur intermediate */
    bool blur_vertical;
} step;

static void step_rows(void *arg, int y0, int y1)
{
    const step *s = arg;
    const gw_op *op = s->op;
    int iw = op->in_w, ih = op->in_h, ow = op->out_w, oh = op->out_h;
    for (int y = y0; y < y1; y++) {
        uint8_t *d = s->dst + (size_t)y * (size_t)ow * 4;
        for (int x = 0; x < ow; x++) {
            uint8_t *px = d + (size_t)x * 4;
            switch (op->kind) {
            case GW_OP_RESIZE_BILINEAR:
                gw_bilinear_px4(s->src, iw, ih, ow, oh, x, y, px);
                break;
            case GW_OP_RESIZE_AREA:
                gw_area_px4(s->src, iw, ih, ow, oh, x, y, px);
                break;
            case GW_OP_BLUR:
                if (!s->blur_vertical) {
                    uint16_t *t = s->tmp + ((size_t)y * (size_t)iw + (size_t)x) * 4;
                    for (int c = 0; c < 4; c++)
                        t[c] = gw_blur_h_px(s->src, iw, x, y, c, op->blur_k, op->blur_r);
                } else {
                    for (int c = 0; c < 4; c++)
                        px[c] = gw_blur_v_px(s->tmp, iw, ih, x, y, c, op->blur_k, op->blur_r);
                }
                break;
            case GW_OP_GRAY:
            case GW_OP_LEVELS:
            case GW_OP_COMPOSITE:
                memcpy(px, s->src + ((size_t)y * (size_t)iw + (size_t)x) * 4, 4);
                if (op->kind == GW_OP_GRAY)
                    gw_gray_px(px);
                else if (op->kind == GW_OP_LEVELS)
                    gw_levels_px(px, op->contrast_q16, op->brightness);
                else
                    gw_composite_px(px, op->bg[0], op->bg[1], op->bg[2]);
                break;
            }
        }
    }
}

static bool cpu_process(gw_backend *b, const gw_plan *plan, const gw_image *in, gw_image *out, char *err,
                        size_t err_cap)
{
    pool *p = b->impl;
    if (gw_backend_should_hang(b))
        gw_backend_hang_forever();
    /* The first step reads the input in place; buffers only hold what the steps write. */
    size_t cap = plan->n_ops == 0 ? (size_t)in->w * (size_t)in->h * 4 : 0, tmp_cap = 0;
    for (int i = 0; i < plan->n_ops; i++) {
        const gw_op *op = &plan->ops[i];
        size_t bytes = (size_t)op->out_w * (size_t)op->out_h * 4;
        if (bytes > cap)
            cap = bytes;
        if (op->kind == GW_OP_BLUR && bytes > tmp_cap)
            tmp_cap = bytes;
    }
    uint8_t *buf[2] = {malloc(cap), plan->n_ops > 1 ? malloc(cap) : NULL}; /* owner: here; the last written moves to out */
    uint16_t *tmp = tmp_cap > 0 ? malloc(tmp_cap * sizeof *tmp) : NULL;     /* owner: here */
    bool ok = false;
    if (buf[0] == NULL || (plan->n_ops > 1 && buf[1] == NULL) || (tmp_cap > 0 && tmp == NULL)) {
        snprintf(err, err_cap, "out of memory");
        goto cleanup;
    }
    if (plan->n_ops == 0)
        memcpy(buf[0], in->px, cap);
    const uint8_t *src = in->px;
    int cur = 0; /* the buffer the next step writes */
    for (int i = 0; i < plan->n_ops; i++) {
        step s = {.op = &plan->ops[i], .src = src, .dst = buf[cur], .tmp = tmp};
        if (s.op->kind == GW_OP_BLUR) {
            pool_run(p, s.op->in_h, step_rows, &s);
            s.blur_vertical = true;
        }
        pool_run(p, s.op->out_h, step_rows, &s);
        src = buf[cur];
        cur ^= 1;
    }
    int last = plan->n_ops == 0 ? 0 : cur ^ 1;
    memset(out, 0, sizeof *out);
    out->w = plan->out_w;
    out->h = plan->out_h;
    out->px = buf[last];
    buf[last] = NULL;
    ok = true;
cleanup:
    free(buf[0]);
    free(buf[1]);
    free(tmp);
    b->processed++;
    return ok;
}

static void cpu_close(gw_backend *b)
{
    if (b == NULL)
        return;
    pool *p = b->impl;
    pool_stop(p);
    free(p);
    free(b);
}

gw_backend *gw_backend_cpu_open(int threads, char *err, size_t err_cap)
{
    if (threads <= 0) {
        long n = sysconf(_SC_NPROCESSORS_ONLN);
        threads = n > 0 ? (int)n : 1;
    }
    if (threads > THREADS_MAX)
        threads = THREADS_MAX;
    gw_backend *b = calloc(1, sizeof *b); /* owner: caller (b->close) */
    pool *p = calloc(1, sizeof *p);       /* owner: b */
    if (b == NULL || p == NULL) {
        free(b);
        free(p);
        snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    pthread_mutex_init(&p->mu, NULL);
    pthread_cond_init(&p->go, NULL);
    pthread_cond_init(&p->done, NULL);
    for (int i = 0; i < threads - 1; i++) {
        if (pthread_create(&p->th[i], NULL, helper_main, p) != 0)
            break; /* fewer helpers is slower, not wrong */
        p->n_threads++;
    }
    b->name = "cpu";
    b->process = cpu_process;
    b->close = cpu_close;
    b->hang_after = -1;
    b->impl = p;
    snprintf(b->device_name, sizeof b->device_name, "%d threads", p->n_threads + 1);
    return b;
}

bool gw_backend_should_hang(gw_backend *b)
{
    if (b->hang_after < 0 || b->processed < b->hang_after)
        return false;
    gw_log("warn", "fault injection: backend hangs now", "backend=%s after_jobs=%lld", b->name,
           (long long)b->processed);
    return true;
}

void gw_backend_hang_forever(void)
{
    for (;;) {
        struct timespec ts = {.tv_sec = 1, .tv_nsec = 0};
        nanosleep(&ts, NULL);
    }
}
