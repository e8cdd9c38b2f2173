/* PNG and JPEG through libpng's simplified API and libjpeg-turbo's libjpeg API.
 * Both read the header first; the size is checked against the limits before the pixel buffer
 * exists, so a 16-byte file claiming 100000 x 100000 costs nothing. */
#include "image.h"
#include "pixmath.h"

#include <stdio.h> /* before jpeglib.h, which uses FILE */

#include <jpeglib.h>
#include <png.h>
#include <setjmp.h>
#include <stdlib.h>
#include <string.h>

#define JPEG_QUALITY_DEFAULT 90

void gw_limits_default(gw_limits *l)
{
    l->max_w = GW_DIM_MAX_DEFAULT;
    l->max_h = GW_DIM_MAX_DEFAULT;
    l->max_pixels = GW_PIXELS_MAX_DEFAULT;
}

bool gw_limits_check(const gw_limits *l, int64_t w, int64_t h, char *err, size_t err_cap)
{
    if (w <= 0 || h <= 0) {
        snprintf(err, err_cap, "image too large or empty: %lldx%lld", (long long)w, (long long)h);
        return false;
    }
    if (w > l->max_w || h > l->max_h) {
        snprintf(err, err_cap, "image too large: %lldx%lld exceeds %dx%d", (long long)w, (long long)h, l->max_w,
                 l->max_h);
        return false;
    }
    if ((uint64_t)w * (uint64_t)h > l->max_pixels) {
        snprintf(err, err_cap, "image too large: %lldx%lld = %llu pixels exceeds %llu (%llu MiB decoded)",
                 (long long)w, (long long)h, (unsigned long long)((uint64_t)w * (uint64_t)h),
                 (unsigned long long)l->max_pixels, (unsigned long long)(l->max_pixels * 4 >> 20));
        return false;
    }
    return true;
}

bool gw_image_alloc(gw_image *img, int w, int h)
{
    memset(img, 0, sizeof *img);
    img->px = calloc((size_t)w * (size_t)h, 4); /* owner: img */
    if (img->px == NULL)
        return false;
    img->w = w;
    img->h = h;
    return true;
}

void gw_image_free(gw_image *img)
{
    free(img->px);
    memset(img, 0, sizeof *img);
}

gw_format gw_detect_format(const uint8_t *buf, size_t len)
{
    static const uint8_t png_sig[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1a, '\n'};
    if (len >= 8 && memcmp(buf, png_sig, 8) == 0)
        return GW_FMT_PNG;
    if (len >= 3 && buf[0] == 0xff && buf[1] == 0xd8 && buf[2] == 0xff)
        return GW_FMT_JPEG;
    return GW_FMT_UNKNOWN;
}

const char *gw_format_name(gw_format f)
{
    return f == GW_FMT_PNG ? "png" : f == GW_FMT_JPEG ? "jpeg" : "unknown";
}

/* ---- JPEG: libjpeg reports errors through error_exit, which must not return ---------------- */

typedef struct {
    struct jpeg_error_mgr pub;
    jmp_buf jb;
    char msg[JMSG_LENGTH_MAX];
} jerr_mgr;

static void jerr_exit(j_common_ptr cinfo)
{
    jerr_mgr *m = (jerr_mgr *)cinfo->err;
    m->pub.format_message(cinfo, m->msg);
    longjmp(m->jb, 1);
}

static void jerr_silent(j_common_ptr cinfo, int level)
{
    (void)cinfo;
    (void)level; /* warnings (e.g. premature end of data) are not worth a log line each */
}

/* Header only, or the whole image when out != NULL. */
static bool jpeg_read(const uint8_t *buf, size_t len, const gw_limits *lim, int *w, int *h, gw_image *out,
                      char *err, size_t err_cap)
{
    struct jpeg_decompress_struct ci;
    jerr_mgr jm;
    /* volatile: read after a longjmp */
    uint8_t *volatile px = NULL;
    ci.err = jpeg_std_error(&jm.pub);
    jm.pub.error_exit = jerr_exit;
    jm.pub.emit_message = jerr_silent;
    if (setjmp(jm.jb)) {
        snprintf(err, err_cap, "corrupt image: jpeg: %s", jm.msg);
        jpeg_destroy_decompress(&ci);
        free(px);
        return false;
    }
    jpeg_create_decompress(&ci);
    jpeg_mem_src(&ci, buf, (unsigned long)len);
    jpeg_read_header(&ci, TRUE);
    *w = (int)ci.image_width;
    *h = (int)ci.image_height;
    if (out == NULL) {
        jpeg_destroy_decompress(&ci);
        return true;
    }
    if (!gw_limits_check(lim, ci.image_width, ci.image_height, err, err_cap)) {
        jpeg_destroy_decompress(&ci);
        return false;
    }
    if (ci.jpeg_color_space == JCS_CMYK || ci.jpeg_color_space == JCS_YCCK) {
        snprintf(err, err_cap, "unsupported image: CMYK jpeg");
        jpeg_destroy_decompress(&ci);
        return false;
    }
    bool gray = ci.jpeg_color_space == JCS_GRAYSCALE;
    ci.out_color_space = JCS_EXT_RGBA;
    px = calloc((size_t)ci.image_width * ci.image_height, 4); /* owner: out on success */
    if (px == NULL) {
        snprintf(err, err_cap, "out of memory");
        jpeg_destroy_decompress(&ci);
        return false;
    }
    jpeg_start_decompress(&ci);
    while (ci.output_scanline < ci.output_height) {
        JSAMPROW row = px + (size_t)ci.output_scanline * ci.output_width * 4;
        jpeg_read_scanlines(&ci, &row, 1);
    }
    jpeg_finish_decompress(&ci);
    jpeg_destroy_decompress(&ci);
    out->w = *w;
    out->h = *h;
    out->px = px;
    out->has_alpha = false;
    out->gray = gray;
    return true;
}

/* Gray or RGB copy of an RGBA image, for the encoders (owner: caller). */
static uint8_t *pack_channels(const gw_image *img, int ch)
{
    size_t n = (size_t)img->w * (size_t)img->h;
    uint8_t *o = malloc(n * (size_t)ch); /* owner: caller */
    if (o == NULL)
        return NULL;
    for (size_t i = 0; i < n; i++)
        for (int c = 0; c < ch; c++)
            o[i * (size_t)ch + (size_t)c] = img->px[i * 4 + (size_t)c];
    return o;
}

static bool jpeg_write(const gw_image *img, int quality, uint8_t **out, size_t *out_len, char *err, size_t err_cap)
{
    struct jpeg_compress_struct ci;
    jerr_mgr jm;
    /* Our own first buffer: libjpeg never frees a caller's buffer, so an error path can free
     * it (the library's own growth buffers are only made past this size, which is rare). */
    size_t cap = (size_t)img->w * (size_t)img->h * 3 / 2 + 65536;
    uint8_t *volatile own = malloc(cap); /* owner: here, or the caller when libjpeg kept it */
    uint8_t *volatile conv = NULL; /* a converted copy of the pixels, when one is needed */
    if (own == NULL) {
        snprintf(err, err_cap, "out of memory");
        return false;
    }
    ci.err = jpeg_std_error(&jm.pub);
    jm.pub.error_exit = jerr_exit;
    jm.pub.emit_message = jerr_silent;
    if (setjmp(jm.jb)) {
        snprintf(err, err_cap, "jpeg encode: %s", jm.msg);
        jpeg_destroy_compress(&ci);
        free(own);
        free(conv);
        return false;
    }
    jpeg_create_compress(&ci);
    unsigned char *m = own;
    unsigned long m_len = (unsigned long)cap;
    jpeg_mem_dest(&ci, &m, &m_len);
    ci.image_width = (JDIMENSION)img->w;
    ci.image_height = (JDIMENSION)img->h;
    if (img->has_alpha) {
        /* JPEG has no alpha: flatten onto white (the composite:ffffff formula), rather than
         * show whatever colour transparent pixels happen to carry */
        conv = malloc((size_t)img->w * (size_t)img->h * 4); /* owner: here */
        if (conv == NULL) {
            snprintf(jm.msg, sizeof jm.msg, "out of memory");
            longjmp(jm.jb, 1);
        }
        memcpy(conv, img->px, (size_t)img->w * (size_t)img->h * 4);
        for (size_t i = 0; i < (size_t)img->w * (size_t)img->h; i++)
            gw_composite_px(conv + i * 4, 255, 255, 255);
        ci.input_components = 4;
        ci.in_color_space = JCS_EXT_RGBA;
    } else if (img->gray) {
        conv = pack_channels(img, 1);
        if (conv == NULL) {
            snprintf(jm.msg, sizeof jm.msg, "out of memory");
            longjmp(jm.jb, 1);
        }
        ci.input_components = 1;
        ci.in_color_space = JCS_GRAYSCALE;
    } else {
        ci.input_components = 4;
        ci.in_color_space = JCS_EXT_RGBA; /* alpha is all 255 */
    }
    jpeg_set_defaults(&ci);
    jpeg_set_quality(&ci, quality > 0 ? quality : JPEG_QUALITY_DEFAULT, TRUE);
    jpeg_start_compress(&ci, TRUE);
    while (ci.next_scanline < ci.image_height) {
        JSAMPROW row = conv ? conv + (size_t)ci.next_scanline * (size_t)img->w * (size_t)ci.input_components
                            : img->px + (size_t)ci.next_scanline * (size_t)img->w * 4;
        jpeg_write_scanlines(&ci, &row, 1);
    }
    jpeg_finish_compress(&ci);
    jpeg_destroy_compress(&ci);
    free(conv);
    if (m != own)
        free(own); /* libjpeg outgrew our buffer and returned its own */
    *out = m;
    *out_len = m_len;
    return true;
}

/* ---- PNG ------------------------------------------------------------------------------------- */

static bool png_read(const uint8_t *buf, size_t len, const gw_limits *lim, int *w, int *h, gw_image *out,
                     char *err, size_t err_cap)
{
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    if (!png_image_begin_read_from_memory(&pi, buf, len)) {
        snprintf(err, err_cap, "corrupt image: png: %s", pi.message);
        png_image_free(&pi);
        return false;
    }
    *w = (int)pi.width;
    *h = (int)pi.height;
    if (out == NULL) {
        png_image_free(&pi);
        return true;
    }
    if (!gw_limits_check(lim, pi.width, pi.height, err, err_cap)) {
        png_image_free(&pi);
        return false;
    }
    bool has_alpha = (pi.format & PNG_FORMAT_FLAG_ALPHA) != 0;
    bool gray = (pi.format & PNG_FORMAT_FLAG_COLOR) == 0;
    pi.format = PNG_FORMAT_RGBA;
    gw_image img;
    if (!gw_image_alloc(&img, *w, *h)) {
        snprintf(err, err_cap, "out of memory");
        png_image_free(&pi);
        return false;
    }
    if (!png_image_finish_read(&pi, NULL, img.px, 0, NULL)) {
        snprintf(err, err_cap, "corrupt image: png: %s", pi.message);
        png_image_free(&pi);
        gw_image_free(&img);
        return false;
    }
    img.has_alpha = has_alpha;
    img.gray = gray;
    *out = img;
    return true;
}

static bool png_write(const gw_image *img, uint8_t **out, size_t *out_len, char *err, size_t err_cap)
{
    png_image pi;
    memset(&pi, 0, sizeof pi);
    pi.version = PNG_IMAGE_VERSION;
    pi.width = (png_uint_32)img->w;
    pi.height = (png_uint_32)img->h;
    int ch = img->gray ? (img->has_alpha ? 2 : 1) : (img->has_alpha ? 4 : 3);
    pi.format = ch == 1 ? PNG_FORMAT_GRAY : ch == 2 ? PNG_FORMAT_GA : ch == 3 ? PNG_FORMAT_RGB : PNG_FORMAT_RGBA;
    const uint8_t *src = img->px;
    uint8_t *packed = NULL;
    if (ch == 2) { /* gray + alpha: take R and A */
        size_t n = (size_t)img->w * (size_t)img->h;
        packed = malloc(n * 2); /* owner: here */
        if (packed != NULL)
            for (size_t i = 0; i < n; i++) {
                packed[2 * i] = img->px[4 * i];
                packed[2 * i + 1] = img->px[4 * i + 3];
            }
    } else if (ch != 4) {
        packed = pack_channels(img, ch);
    }
    if (ch != 4) {
        if (packed == NULL) {
            snprintf(err, err_cap, "out of memory");
            return false;
        }
        src = packed;
    }
    bool ok = false;
    png_alloc_size_t size = 0;
    uint8_t *mem = NULL;
    if (!png_image_write_get_memory_size(pi, size, 0, src, 0, NULL)) {
        snprintf(err, err_cap, "png encode: %s", pi.message);
        goto cleanup;
    }
    mem = malloc(size); /* owner: caller on success */
    if (mem == NULL) {
        snprintf(err, err_cap, "out of memory");
        goto cleanup;
    }
    if (!png_image_write_to_memory(&pi, mem, &size, 0, src, 0, NULL)) {
        snprintf(err, err_cap, "png encode: %s", pi.message);
        free(mem);
        goto cleanup;
    }
    *out = mem;
    *out_len = size;
    ok = true;
cleanup:
    png_image_free(&pi);
    free(packed);
    return ok;
}

/* ---- entry points ---------------------------------------------------------------------------- */

bool gw_probe(const uint8_t *buf, size_t len, gw_format *fmt, int *w, int *h, char *err, size_t err_cap)
{
    *fmt = gw_detect_format(buf, len);
    if (*fmt == GW_FMT_PNG)
        return png_read(buf, len, NULL, w, h, NULL, err, err_cap);
    if (*fmt == GW_FMT_JPEG)
        return jpeg_read(buf, len, NULL, w, h, NULL, err, err_cap);
    snprintf(err, err_cap, "corrupt image: neither PNG nor JPEG (%zu bytes)", len);
    return false;
}

bool gw_decode(const uint8_t *buf, size_t len, const gw_limits *lim, gw_image *out, gw_format *fmt, char *err,
               size_t err_cap)
{
    int w = 0, h = 0;
    *fmt = gw_detect_format(buf, len);
    if (*fmt == GW_FMT_PNG)
        return png_read(buf, len, lim, &w, &h, out, err, err_cap);
    if (*fmt == GW_FMT_JPEG)
        return jpeg_read(buf, len, lim, &w, &h, out, err, err_cap);
    snprintf(err, err_cap, "corrupt image: neither PNG nor JPEG (%zu bytes)", len);
    return false;
}

bool gw_encode(const gw_image *img, gw_format fmt, int quality, uint8_t **out, size_t *out_len, char *err,
               size_t err_cap)
{
    if (fmt == GW_FMT_JPEG)
        return jpeg_write(img, quality, out, out_len, err, err_cap);
    if (fmt == GW_FMT_PNG)
        return png_write(img, out, out_len, err, err_cap);
    snprintf(err, err_cap, "unknown output format");
    return false;
}
