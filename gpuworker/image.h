/* Images as the worker holds them between stages, the input limits, and the codecs.
 *
 * Every image is RGBA8 in memory whatever the file said; has_alpha and gray remember what the
 * file (or the operations) made of it, so the encoder writes RGBA, RGB or gray as fits.
 * Codecs are the Debian libraries: libpng (simplified API) and libjpeg-turbo (libjpeg API). */
#ifndef GW_IMAGE_H
#define GW_IMAGE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_DIM_MAX_DEFAULT 16384
#define GW_PIXELS_MAX_DEFAULT (64u * 1024u * 1024u) /* 64 Mi px = 256 MiB of RGBA8 */

typedef enum { GW_FMT_UNKNOWN = 0, GW_FMT_PNG, GW_FMT_JPEG } gw_format;

typedef struct {
    int w, h;
    uint8_t *px;    /* owner: the image (gw_image_free); 4 * w * h bytes */
    bool has_alpha; /* the alpha channel carries information */
    bool gray;      /* R = G = B everywhere */
} gw_image;

/* Checked against the file's header before anything is allocated, and against every
 * intermediate size an operation chain would produce. */
typedef struct {
    int max_w, max_h;
    uint64_t max_pixels;
} gw_limits;

void gw_limits_default(gw_limits *l);

/* false (with err filled) when w x h is empty or over the limits. */
bool gw_limits_check(const gw_limits *l, int64_t w, int64_t h, char *err, size_t err_cap);

/* Allocates w x h RGBA8, zeroed; false when out of memory. */
bool gw_image_alloc(gw_image *img, int w, int h);
void gw_image_free(gw_image *img);

/* PNG or JPEG by magic bytes. */
gw_format gw_detect_format(const uint8_t *buf, size_t len);
const char *gw_format_name(gw_format f);

/* Reads only the header: format and size. false (err filled) when not a PNG/JPEG header. */
bool gw_probe(const uint8_t *buf, size_t len, gw_format *fmt, int *w, int *h, char *err, size_t err_cap);

/* Decodes after checking the header against the limits. On failure out is untouched and err
 * says why ("corrupt image: ...", "image too large: ...", "unsupported image: ..."). */
bool gw_decode(const uint8_t *buf, size_t len, const gw_limits *lim, gw_image *out, gw_format *fmt,
               char *err, size_t err_cap);

/* Encodes img; *out (owner: the caller, free()) gets *out_len bytes. quality 1..100 (JPEG). */
bool gw_encode(const gw_image *img, gw_format fmt, int quality, uint8_t **out, size_t *out_len, char *err,
               size_t err_cap);

#endif
