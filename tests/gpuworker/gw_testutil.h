/* Helpers shared by the gpuworker tests (each test includes this once; all static). */
#ifndef GW_TESTUTIL_H
#define GW_TESTUTIL_H

#include "../../gpuworker/backend.h"
#include "../../gpuworker/image.h"
#include "../../gpuworker/ops.h"
#include "../../gpuworker/synth.h"

#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#define GWT_FN static __attribute__((unused))

/* FNV-1a over size and pixels: the golden checksum of an image. */
GWT_FN uint64_t gwt_hash(const gw_image *img)
{
    uint64_t h = 1469598103934665603ULL;
    uint32_t dims[2] = {(uint32_t)img->w, (uint32_t)img->h};
    const uint8_t *d = (const uint8_t *)dims;
    for (size_t i = 0; i < sizeof dims; i++)
        h = (h ^ d[i]) * 1099511628211ULL;
    size_t n = (size_t)img->w * (size_t)img->h * 4;
    for (size_t i = 0; i < n; i++)
        h = (h ^ img->px[i]) * 1099511628211ULL;
    return h;
}

/* Parses and resolves spec for img and runs it on backend b. */
GWT_FN bool gwt_run(gw_backend *b, const char *spec, const gw_image *img, gw_image *out, gw_plan *plan_out)
{
    static gw_plan plan; /* large; tests are single-threaded here */
    char err[256];
    gw_limits lim;
    gw_limits_default(&lim);
    if (!gw_plan_parse(spec, &plan, err, sizeof err) ||
        !gw_plan_resolve(&plan, GW_FMT_PNG, img->w, img->h, &lim, err, sizeof err)) {
        printf("plan \"%s\": %s\n", spec, err);
        return false;
    }
    if (!b->process(b, &plan, img, out, err, sizeof err)) {
        printf("process \"%s\" on %s: %s\n", spec, b->name, err);
        return false;
    }
    if (plan_out != NULL)
        *plan_out = plan;
    return true;
}

/* Largest per-channel difference, or -1 when sizes differ. */
GWT_FN int gwt_max_diff(const gw_image *a, const gw_image *b)
{
    if (a->w != b->w || a->h != b->h)
        return -1;
    int m = 0;
    size_t n = (size_t)a->w * (size_t)a->h * 4;
    for (size_t i = 0; i < n; i++) {
        int d = a->px[i] > b->px[i] ? a->px[i] - b->px[i] : b->px[i] - a->px[i];
        if (d > m)
            m = d;
    }
    return m;
}

GWT_FN bool gwt_constant(gw_image *img, int w, int h, uint8_t r, uint8_t g, uint8_t b, uint8_t a)
{
    if (!gw_image_alloc(img, w, h))
        return false;
    for (size_t i = 0; i < (size_t)w * (size_t)h; i++) {
        img->px[i * 4] = r;
        img->px[i * 4 + 1] = g;
        img->px[i * 4 + 2] = b;
        img->px[i * 4 + 3] = a;
    }
    return true;
}

GWT_FN uint32_t gwt_crc32(const uint8_t *p, size_t n)
{
    uint32_t c = 0xffffffffU;
    for (size_t i = 0; i < n; i++) {
        c ^= p[i];
        for (int k = 0; k < 8; k++)
            c = (c >> 1) ^ (0xedb88320U & (0U - (c & 1U)));
    }
    return ~c;
}

/* A PNG signature, an IHDR claiming w x h and an empty IDAT: only the header is real. */
GWT_FN size_t gwt_fake_png_header(uint8_t *b, uint32_t w, uint32_t h)
{
    static const uint8_t sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    memcpy(b, sig, 8);
    uint8_t chunk[4 + 4 + 13] = {0, 0, 0, 13, 'I', 'H', 'D', 'R'};
    for (int i = 0; i < 4; i++) {
        chunk[8 + i] = (uint8_t)(w >> (24 - 8 * i));
        chunk[12 + i] = (uint8_t)(h >> (24 - 8 * i));
    }
    chunk[16] = 8; /* bit depth */
    chunk[17] = 6; /* RGBA */
    memcpy(b + 8, chunk, sizeof chunk);
    uint32_t crc = gwt_crc32(chunk + 4, 17);
    for (int i = 0; i < 4; i++)
        b[8 + sizeof chunk + (size_t)i] = (uint8_t)(crc >> (24 - 8 * i));
    /* an empty IDAT: libpng reads the header chunks up to the first IDAT */
    uint8_t *idat = b + 8 + sizeof chunk + 4;
    static const uint8_t idat_hdr[8] = {0, 0, 0, 0, 'I', 'D', 'A', 'T'};
    memcpy(idat, idat_hdr, 8);
    crc = gwt_crc32(idat + 4, 4);
    for (int i = 0; i < 4; i++)
        idat[8 + i] = (uint8_t)(crc >> (24 - 8 * i));
    return 8 + sizeof chunk + 4 + 12;
}

/* The operations every backend must agree on, each on its own. */
static const char *const gwt_op_cases[] __attribute__((unused)) = {
    "resize:23x17",          "resize:96x80:bilinear", "resize:23x17:area", "resize:100x90:area",
    "resize:40x0",           "thumbnail:16x16",       "blur:0.8",          "blur:2.5",
    "grayscale",             "brightness:40",         "brightness:-70",    "contrast:1.6",
    "contrast:0.4",          "composite:3366cc",      "resize:31x29,blur:1.2,grayscale,contrast:1.2,brightness:5",
};

#endif
