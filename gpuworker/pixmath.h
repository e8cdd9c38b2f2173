/* Per-pixel math shared by the CPU backend (C) and the CUDA kernels (nvcc).
 *
 * Why one header for both: the two backends must give the same pixels. Every formula here is
 * integer arithmetic on fixed-point weights that the host computes once (ops.c), so the CPU
 * loops and the GPU threads run literally the same expressions and agree bit for bit; the
 * ±1 tolerance of the equivalence test is a margin, not a need.
 *
 * Pixels are RGBA8, rows tightly packed (stride = 4 * width). Every function computes one
 * output pixel (or one channel of it) from the source; the caller loops (CPU: rows split over
 * threads; GPU: one thread per pixel).
 */
#ifndef GW_PIXMATH_H
#define GW_PIXMATH_H

#include <stdint.h>

#ifdef __CUDACC__
#define GW_HD __host__ __device__ __forceinline__
#else
#define GW_HD static inline
#endif

#define GW_BLUR_RADIUS_MAX 150 /* sigma <= 50 */
#define GW_BLUR_ONE 16384      /* blur weights are Q14: they sum to exactly this */

GW_HD int gw_clamp_i(int v, int lo, int hi)
{
    return v < lo ? lo : v > hi ? hi : v;
}

GW_HD uint8_t gw_clamp_u8(int64_t v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v);
}

/* Floor division by 2^s of a possibly negative value, the same on every compiler (C leaves
 * >> of negatives to the implementation). */
GW_HD int64_t gw_floor_shift(int64_t v, int s)
{
    return v >= 0 ? v >> s : -((-v + ((int64_t)1 << s) - 1) >> s);
}

/* ---- bilinear resize ----------------------------------------------------------------------
 * Source coordinate of output column x (pixel centres aligned):
 *   fx = (x + 0.5) * in_w / out_w - 0.5, clamped to [0, in_w - 1]
 * in Q16, with an 8-bit fractional weight. out = sum(p * wx * wy) / 65536, rounded half up. */
GW_HD int32_t gw_bl_coord_q16(int x, int in_len, int out_len)
{
    int64_t num = (int64_t)(2 * x + 1) * in_len * 65536 / (2 * (int64_t)out_len) - 32768;
    int64_t hi = (int64_t)(in_len - 1) * 65536;
    return (int32_t)(num < 0 ? 0 : num > hi ? hi : num);
}

/* All four channels of output pixel (x, y): the weights are computed once per pixel. */
GW_HD void gw_bilinear_px4(const uint8_t *src, int in_w, int in_h, int out_w, int out_h, int x, int y, uint8_t *out)
{
    int32_t fx = gw_bl_coord_q16(x, in_w, out_w), fy = gw_bl_coord_q16(y, in_h, out_h);
    int x0 = fx >> 16, y0 = fy >> 16;
    int x1 = x0 + 1 < in_w ? x0 + 1 : x0, y1 = y0 + 1 < in_h ? y0 + 1 : y0;
    int wx = (fx & 0xffff) >> 8, wy = (fy & 0xffff) >> 8; /* 0..255 of 256 */
    const uint8_t *p00 = src + ((int64_t)y0 * in_w + x0) * 4, *p01 = src + ((int64_t)y0 * in_w + x1) * 4;
    const uint8_t *p10 = src + ((int64_t)y1 * in_w + x0) * 4, *p11 = src + ((int64_t)y1 * in_w + x1) * 4;
    for (int c = 0; c < 4; c++) {
        int64_t r0 = (int64_t)p00[c] * (256 - wx) + (int64_t)p01[c] * wx;
        int64_t r1 = (int64_t)p10[c] * (256 - wx) + (int64_t)p11[c] * wx;
        out[c] = gw_clamp_u8((r0 * (256 - wy) + r1 * wy + 32768) >> 16);
    }
}

/* ---- area (box) resize --------------------------------------------------------------------
 * Scale both axes by the other side's length: output pixel x covers [x*in_w, (x+1)*in_w) and
 * source pixel i covers [i*out_w, (i+1)*out_w). A source pixel weighs its overlap; the weights
 * of one output pixel sum to in_w * in_h, so a constant image stays constant exactly. */
GW_HD int64_t gw_overlap(int64_t a0, int64_t a1, int64_t b0, int64_t b1)
{
    int64_t lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

GW_HD void gw_area_px4(const uint8_t *src, int in_w, int in_h, int out_w, int out_h, int x, int y, uint8_t *out)
{
    int64_t bx0 = (int64_t)x * in_w, bx1 = bx0 + in_w;
    int64_t by0 = (int64_t)y * in_h, by1 = by0 + in_h;
    int i0 = (int)(bx0 / out_w), i1 = (int)((bx1 + out_w - 1) / out_w);
    int j0 = (int)(by0 / out_h), j1 = (int)((by1 + out_h - 1) / out_h);
    int64_t acc[4] = {0, 0, 0, 0};
    for (int j = j0; j < j1 && j < in_h; j++) {
        int64_t wy = gw_overlap(by0, by1, (int64_t)j * out_h, (int64_t)(j + 1) * out_h);
        int64_t row[4] = {0, 0, 0, 0};
        for (int i = i0; i < i1 && i < in_w; i++) {
            int64_t wx = gw_overlap(bx0, bx1, (int64_t)i * out_w, (int64_t)(i + 1) * out_w);
            const uint8_t *p = src + ((int64_t)j * in_w + i) * 4;
            for (int c = 0; c < 4; c++)
                row[c] += wx * p[c];
        }
        for (int c = 0; c < 4; c++)
            acc[c] += row[c] * wy;
    }
    int64_t total = (int64_t)in_w * in_h;
    for (int c = 0; c < 4; c++)
        out[c] = gw_clamp_u8((acc[c] + total / 2) / total);
}

/* ---- gaussian blur, separable, edges clamped ------------------------------------------------
 * Weights w[0..r] are Q14 (symmetric, w[0] the centre) and sum to 16384 over [-r, r].
 * Pass 1 (rows) keeps 8 extra bits in a uint16 intermediate; pass 2 (columns) removes 22. */
GW_HD uint16_t gw_blur_h_px(const uint8_t *src, int w, int x, int y, int c, const int32_t *k, int r)
{
    const uint8_t *row = src + (int64_t)y * w * 4;
    int64_t acc = (int64_t)k[0] * row[(int64_t)x * 4 + c];
    for (int i = 1; i <= r; i++) {
        int xl = gw_clamp_i(x - i, 0, w - 1), xr = gw_clamp_i(x + i, 0, w - 1);
        acc += (int64_t)k[i] * (row[(int64_t)xl * 4 + c] + row[(int64_t)xr * 4 + c]);
    }
    return (uint16_t)((acc + 32) >> 6);
}

GW_HD uint8_t gw_blur_v_px(const uint16_t *tmp, int w, int h, int x, int y, int c, const int32_t *k, int r)
{
    int64_t acc = (int64_t)k[0] * tmp[((int64_t)y * w + x) * 4 + c];
    for (int i = 1; i <= r; i++) {
        int yu = gw_clamp_i(y - i, 0, h - 1), yd = gw_clamp_i(y + i, 0, h - 1);
        acc += (int64_t)k[i] * (tmp[((int64_t)yu * w + x) * 4 + c] + tmp[((int64_t)yd * w + x) * 4 + c]);
    }
    return gw_clamp_u8((acc + (1 << 21)) >> 22);
}

/* ---- point operations (in place; one pixel = 4 bytes) -------------------------------------- */

/* BT.601 luma in Q8: 77 + 150 + 29 = 256, so a gray pixel maps to itself. Alpha is kept. */
GW_HD void gw_gray_px(uint8_t *p)
{
    uint8_t y = (uint8_t)((77 * p[0] + 150 * p[1] + 29 * p[2] + 128) >> 8);
    p[0] = p[1] = p[2] = y;
}

/* out = (in - 128) * contrast + 128 + brightness, contrast in Q16, rounded half up. Alpha kept. */
GW_HD void gw_levels_px(uint8_t *p, int32_t contrast_q16, int32_t brightness)
{
    for (int c = 0; c < 3; c++) {
        int64_t v = gw_floor_shift((int64_t)(p[c] - 128) * contrast_q16 + 32768, 16);
        p[c] = gw_clamp_u8(v + 128 + brightness);
    }
}

/* Straight (non-premultiplied) alpha over an opaque background: out = (a*c + (255-a)*bg) / 255
 * rounded half up; alpha becomes 255. */
GW_HD void gw_composite_px(uint8_t *p, uint8_t bg_r, uint8_t bg_g, uint8_t bg_b)
{
    int a = p[3];
    const uint8_t bg[3] = {bg_r, bg_g, bg_b};
    for (int c = 0; c < 3; c++)
        p[c] = (uint8_t)((a * p[c] + (255 - a) * bg[c] + 127) / 255);
    p[3] = 255;
}

#endif
