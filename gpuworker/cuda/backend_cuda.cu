/* The CUDA backend: one kernel per step, one thread per output pixel, the same pixmath.h
 * formulas as the CPU backend. One non-blocking stream per backend; input and output go
 * through pinned staging buffers (grow-only) so the copies are real DMA.
 *
 * Linked with cudart_static: libcuda.so (the driver) is loaded lazily by the runtime on the
 * first call, so this binary starts on a machine with no GPU and no driver; open then fails
 * with cudaErrorNoDevice / cudaErrorInsufficientDriver and the worker uses the CPU backend. */
#include "../pixmath.h"

#include <cuda_runtime.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern "C" {
#include "../backend.h"
}

#define BLOCK_X 16
#define BLOCK_Y 16
#define HANG_LIMIT_NS (600ull * 1000000000ull) /* the injected hang ends by itself after 10 min */

struct blur_kernel_arg {
    int32_t k[GW_BLUR_RADIUS_MAX + 1];
};

typedef struct {
    int device;
    cudaStream_t stream;
    uint8_t *d_buf[2];   /* owner: here; cap_bytes each */
    uint16_t *d_tmp;     /* owner: here; cap_bytes uint16 (blur intermediate) */
    size_t cap_bytes;
    uint8_t *h_in, *h_out; /* owner: here; pinned */
    size_t h_in_cap, h_out_cap;
    int *d_never;        /* owner: here; a flag nobody sets (the injected hang waits on it) */
    cudaError_t last_error; /* of the last failed call */
} cuda_impl;

/* ---- kernels --------------------------------------------------------------------------------- */

__global__ void k_resize_bilinear(const uint8_t *src, uint8_t *dst, int iw, int ih, int ow, int oh)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= ow || y >= oh)
        return;
    gw_bilinear_px4(src, iw, ih, ow, oh, x, y, dst + ((size_t)y * ow + x) * 4);
}

__global__ void k_resize_area(const uint8_t *src, uint8_t *dst, int iw, int ih, int ow, int oh)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= ow || y >= oh)
        return;
    gw_area_px4(src, iw, ih, ow, oh, x, y, dst + ((size_t)y * ow + x) * 4);
}

__global__ void k_blur_h(const uint8_t *src, uint16_t *tmp, int w, int h, blur_kernel_arg k, int r)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h)
        return;
    uint16_t *t = tmp + ((size_t)y * w + x) * 4;
    for (int c = 0; c < 4; c++)
        t[c] = gw_blur_h_px(src, w, x, y, c, k.k, r);
}

__global__ void k_blur_v(const uint16_t *tmp, uint8_t *dst, int w, int h, blur_kernel_arg k, int r)
{
    int x = blockIdx.x * blockDim.x + threadIdx.x, y = blockIdx.y * blockDim.y + threadIdx.y;
    if (x >= w || y >= h)
        return;
    uint8_t *d = dst + ((size_t)y * w + x) * 4;
    for (int c = 0; c < 4; c++)
        d[c] = gw_blur_v_px(tmp, w, h, x, y, c, k.k, r);
}

__global__ void k_point(const uint8_t *src, uint8_t *dst, size_t n, int kind, int32_t contrast_q16,
                        int32_t brightness, uint8_t bg_r, uint8_t bg_g, uint8_t bg_b)
{
    size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n)
        return;
    uint8_t p[4];
    for (int c = 0; c < 4; c++)
        p[c] = src[i * 4 + c];
    if (kind == GW_OP_GRAY)
        gw_gray_px(p);
    else if (kind == GW_OP_LEVELS)
        gw_levels_px(p, contrast_q16, brightness);
    else
        gw_composite_px(p, bg_r, bg_g, bg_b);
    for (int c = 0; c < 4; c++)
        dst[i * 4 + c] = p[c];
}

/* The injected fault: a kernel that waits for a flag nobody sets, like a wedged GPU. It sleeps
 * between polls and gives up after HANG_LIMIT_NS so a forgotten test cannot hold a GPU. */
__global__ void k_hang(const volatile int *flag)
{
    unsigned long long t0, t;
    asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t0));
    do {
        __nanosleep(1000000);
        asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
    } while (*flag == 0 && t - t0 < HANG_LIMIT_NS);
}

__global__ void k_probe(int *p)
{
    *p = 0;
}

/* ---- host side ------------------------------------------------------------------------------- */

static bool fail(cuda_impl *m, cudaError_t e, const char *what, char *err, size_t err_cap)
{
    if (m != NULL)
        m->last_error = e;
    snprintf(err, err_cap, "cuda %s: %s (%s)", what, cudaGetErrorName(e), cudaGetErrorString(e));
    return false;
}

#define CK(call, what)                                                                              \
    do {                                                                                            \
        cudaError_t e_ = (call);                                                                    \
        if (e_ != cudaSuccess)                                                                      \
            return fail(m, e_, what, err, err_cap);                                                    \
    } while (0)

static bool grow_device(cuda_impl *m, size_t bytes, char *err, size_t err_cap)
{
    if (bytes <= m->cap_bytes)
        return true;
    cudaStreamSynchronize(m->stream);
    cudaFree(m->d_buf[0]);
    cudaFree(m->d_buf[1]);
    cudaFree(m->d_tmp);
    m->d_buf[0] = m->d_buf[1] = NULL;
    m->d_tmp = NULL;
    m->cap_bytes = 0;
    CK(cudaMalloc((void **)&m->d_buf[0], bytes), "malloc");
    CK(cudaMalloc((void **)&m->d_buf[1], bytes), "malloc");
    CK(cudaMalloc((void **)&m->d_tmp, bytes * sizeof(uint16_t)), "malloc");
    m->cap_bytes = bytes;
    return true;
}

static bool grow_pinned(cuda_impl *m, uint8_t **p, size_t *cap, size_t bytes, char *err, size_t err_cap)
{
    if (bytes <= *cap)
        return true;
    cudaFreeHost(*p);
    *p = NULL;
    *cap = 0;
    CK(cudaMallocHost((void **)p, bytes), "malloc host");
    *cap = bytes;
    return true;
}

static bool run_step(cuda_impl *m, const gw_op *op, const uint8_t *src, uint8_t *dst, char *err, size_t err_cap)
{
    dim3 blk(BLOCK_X, BLOCK_Y);
    dim3 grid((unsigned)((op->out_w + BLOCK_X - 1) / BLOCK_X), (unsigned)((op->out_h + BLOCK_Y - 1) / BLOCK_Y));
    switch (op->kind) {
    case GW_OP_RESIZE_BILINEAR:
        k_resize_bilinear<<<grid, blk, 0, m->stream>>>(src, dst, op->in_w, op->in_h, op->out_w, op->out_h);
        break;
    case GW_OP_RESIZE_AREA:
        k_resize_area<<<grid, blk, 0, m->stream>>>(src, dst, op->in_w, op->in_h, op->out_w, op->out_h);
        break;
    case GW_OP_BLUR: {
        blur_kernel_arg k;
        memcpy(k.k, op->blur_k, sizeof k.k);
        k_blur_h<<<grid, blk, 0, m->stream>>>(src, m->d_tmp, op->in_w, op->in_h, k, op->blur_r);
        k_blur_v<<<grid, blk, 0, m->stream>>>(m->d_tmp, dst, op->in_w, op->in_h, k, op->blur_r);
        break;
    }
    default: {
        size_t n = (size_t)op->in_w * (size_t)op->in_h;
        unsigned blocks = (unsigned)((n + 255) / 256);
        k_point<<<blocks, 256, 0, m->stream>>>(src, dst, n, (int)op->kind, op->contrast_q16, op->brightness,
                                               op->bg[0], op->bg[1], op->bg[2]);
        break;
    }
    }
    CK(cudaGetLastError(), "launch");
    return true;
}

static bool process_inner(gw_backend *b, const gw_plan *plan, const gw_image *in, gw_image *out, char *err,
                          size_t err_cap)
{
    cuda_impl *m = (cuda_impl *)b->impl;
    CK(cudaSetDevice(m->device), "set device"); /* per thread: this may be a new one */
    if (gw_backend_should_hang(b)) {
        k_hang<<<1, 1, 0, m->stream>>>(m->d_never);
        cudaStreamSynchronize(m->stream); /* blocks: the pipeline's watchdog takes over */
    }
    size_t in_bytes = (size_t)in->w * (size_t)in->h * 4;
    size_t out_bytes = (size_t)plan->out_w * (size_t)plan->out_h * 4;
    if (!grow_device(m, (size_t)plan->max_pixels * 4, err, err_cap) ||
        !grow_pinned(m, &m->h_in, &m->h_in_cap, in_bytes, err, err_cap) ||
        !grow_pinned(m, &m->h_out, &m->h_out_cap, out_bytes, err, err_cap))
        return false;
    memcpy(m->h_in, in->px, in_bytes);
    CK(cudaMemcpyAsync(m->d_buf[0], m->h_in, in_bytes, cudaMemcpyHostToDevice, m->stream), "upload");
    int cur = 0;
    for (int i = 0; i < plan->n_ops; i++) {
        if (!run_step(m, &plan->ops[i], m->d_buf[cur], m->d_buf[cur ^ 1], err, err_cap))
            return false;
        cur ^= 1;
    }
    CK(cudaMemcpyAsync(m->h_out, m->d_buf[cur], out_bytes, cudaMemcpyDeviceToHost, m->stream), "download");
    CK(cudaStreamSynchronize(m->stream), "kernels");
    if (!gw_image_alloc(out, plan->out_w, plan->out_h)) {
        snprintf(err, err_cap, "out of memory");
        return false;
    }
    memcpy(out->px, m->h_out, out_bytes);
    b->processed++;
    return true;
}

static bool cuda_process(gw_backend *b, const gw_plan *plan, const gw_image *in, gw_image *out, char *err,
                         size_t err_cap)
{
    cuda_impl *m = (cuda_impl *)b->impl;
    m->last_error = cudaSuccess;
    bool ok = process_inner(b, plan, in, out, err, err_cap);
    /* Only running out of memory is worth retrying in this process; any other CUDA error (a
     * sticky launch or memory fault, a lost device) would fail every later job too. */
    if (!ok && m->last_error != cudaSuccess && m->last_error != cudaErrorMemoryAllocation)
        b->broken = true;
    return ok;
}

static void cuda_close(gw_backend *b)
{
    if (b == NULL)
        return;
    cuda_impl *m = (cuda_impl *)b->impl;
    cudaSetDevice(m->device);
    cudaStreamSynchronize(m->stream);
    cudaFree(m->d_buf[0]);
    cudaFree(m->d_buf[1]);
    cudaFree(m->d_tmp);
    cudaFree(m->d_never);
    cudaFreeHost(m->h_in);
    cudaFreeHost(m->h_out);
    cudaStreamDestroy(m->stream);
    free(m);
    free(b);
}

extern "C" bool gw_cuda_compiled(void)
{
    return true;
}

extern "C" gw_backend *gw_backend_cuda_open(int device, char *err, size_t err_cap)
{
    int n = 0;
    cudaError_t e = cudaGetDeviceCount(&n);
    if (e != cudaSuccess) { /* cudaErrorNoDevice, cudaErrorInsufficientDriver, ... */
        fail(NULL, e, "device count", err, err_cap);
        cudaGetLastError(); /* clear it: this thread may still use other calls */
        return NULL;
    }
    if (device < 0 || device >= n) {
        snprintf(err, err_cap, "cuda: device %d requested, %d present", device, n);
        return NULL;
    }
    cuda_impl *m = (cuda_impl *)calloc(1, sizeof *m);     /* owner: b */
    gw_backend *b = (gw_backend *)calloc(1, sizeof *b); /* owner: caller (b->close) */
    if (m == NULL || b == NULL) {
        free(m);
        free(b);
        snprintf(err, err_cap, "out of memory");
        return NULL;
    }
    m->device = device;
    cudaDeviceProp prop;
    if ((e = cudaSetDevice(device)) != cudaSuccess || (e = cudaGetDeviceProperties(&prop, device)) != cudaSuccess ||
        (e = cudaStreamCreateWithFlags(&m->stream, cudaStreamNonBlocking)) != cudaSuccess ||
        (e = cudaMalloc((void **)&m->d_never, sizeof(int))) != cudaSuccess ||
        (e = cudaMemsetAsync(m->d_never, 0, sizeof(int), m->stream)) != cudaSuccess) {
        fail(NULL, e, "init", err, err_cap);
        goto failed;
    }
    /* A launch proves the binary carries code this GPU runs (SASS for it, or PTX to JIT). */
    k_probe<<<1, 1, 0, m->stream>>>(m->d_never);
    if ((e = cudaGetLastError()) != cudaSuccess || (e = cudaStreamSynchronize(m->stream)) != cudaSuccess) {
        fail(NULL, e, "probe kernel", err, err_cap);
        goto failed;
    }
    b->name = "cuda";
    b->process = cuda_process;
    b->close = cuda_close;
    b->hang_after = -1;
    b->impl = m;
    snprintf(b->device_name, sizeof b->device_name, "%.80s (sm_%d%d, device %d)", prop.name, prop.major, prop.minor,
             device);
    return b;
failed:
    if (m->stream)
        cudaStreamDestroy(m->stream);
    cudaFree(m->d_never);
    free(m);
    free(b);
    return NULL;
}
