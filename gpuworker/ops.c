/* Parsing and sizing of operation chains (ops.h). All floating point of the pipeline happens
 * here, once per job on the host: both backends receive the same integer parameters. */
#include "ops.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define ARGS_MAX 4
#define SIGMA_MAX 50.0
#define CONTRAST_MAX 10.0
#define JPEG_QUALITY_DEFAULT 90

static bool parse_int(const char *s, long lo, long hi, long *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno != 0 || *end != '\0' || v < lo || v > hi)
        return false;
    *out = v;
    return true;
}

static bool parse_double(const char *s, double lo, double hi, double *out)
{
    if (s == NULL || *s == '\0')
        return false;
    char *end = NULL;
    errno = 0;
    double v = strtod(s, &end);
    if (errno != 0 || *end != '\0' || !(v >= lo && v <= hi))
        return false;
    *out = v;
    return true;
}

/* "WxH", each 0..GW_DIM_MAX (larger requests are refused later by the limits). */
static bool parse_size(const char *s, int *w, int *h)
{
    char buf[64];
    if (s == NULL || strlen(s) >= sizeof buf)
        return false;
    strcpy(buf, s);
    char *x = strchr(buf, 'x');
    if (x == NULL)
        return false;
    *x = '\0';
    long lw, lh;
    if (!parse_int(buf, 0, 1 << 20, &lw) || !parse_int(x + 1, 0, 1 << 20, &lh) || (lw == 0 && lh == 0))
        return false;
    *w = (int)lw;
    *h = (int)lh;
    return true;
}

/* Q14 gaussian half-kernel. Tails are floored and the centre takes the remainder, so the
 * weights sum to exactly GW_BLUR_ONE and none is negative. */
static void blur_kernel(double sigma, gw_op *op)
{
    int r = (int)ceil(3.0 * sigma);
    if (r < 1)
        r = 1;
    if (r > GW_BLUR_RADIUS_MAX)
        r = GW_BLUR_RADIUS_MAX;
    double w[GW_BLUR_RADIUS_MAX + 1], sum = 0;
    for (int i = 0; i <= r; i++) {
        w[i] = exp(-(double)(i * i) / (2.0 * sigma * sigma));
        sum += i == 0 ? w[i] : 2.0 * w[i];
    }
    int32_t tails = 0;
    for (int i = 1; i <= r; i++) {
        op->blur_k[i] = (int32_t)floor(w[i] / sum * GW_BLUR_ONE);
        tails += 2 * op->blur_k[i];
    }
    op->blur_k[0] = GW_BLUR_ONE - tails;
    op->blur_r = r;
}

static bool parse_hex_color(const char *s, uint8_t bg[3])
{
    if (s == NULL)
        return false;
    if (*s == '#')
        s++;
    if (strlen(s) != 6)
        return false;
    for (int i = 0; i < 6; i++)
        if (!strchr("0123456789abcdefABCDEF", s[i]))
            return false;
    unsigned long v = strtoul(s, NULL, 16);
    bg[0] = (uint8_t)(v >> 16);
    bg[1] = (uint8_t)(v >> 8);
    bg[2] = (uint8_t)v;
    return true;
}

/* One "name:arg:arg" item (modified in place). */
static bool parse_one(char *item, gw_plan *plan, char *err, size_t err_cap)
{
    char *args[ARGS_MAX] = {0};
    int n_args = 0;
    char *name = item;
    for (char *p = strchr(item, ':'); p != NULL; p = strchr(p + 1, ':')) {
        *p = '\0';
        if (n_args == ARGS_MAX) {
            snprintf(err, err_cap, "operation \"%s\": too many arguments", name);
            return false;
        }
        args[n_args++] = p + 1;
    }
    if (strcmp(name, "format") == 0) {
        long q = JPEG_QUALITY_DEFAULT;
        if (n_args == 1 && strcmp(args[0], "png") == 0) {
            plan->out_format = GW_FMT_PNG;
        } else if ((n_args == 1 || n_args == 2) && (strcmp(args[0], "jpeg") == 0 || strcmp(args[0], "jpg") == 0) &&
                   (n_args == 1 || parse_int(args[1], 1, 100, &q))) {
            plan->out_format = GW_FMT_JPEG;
            plan->jpeg_quality = (int)q;
        } else {
            snprintf(err, err_cap, "operation format: want format:png or format:jpeg[:1..100]");
            return false;
        }
        return true;
    }
    if (plan->n_ops == GW_OPS_MAX) {
        snprintf(err, err_cap, "more than %d operations", GW_OPS_MAX);
        return false;
    }
    gw_op *op = &plan->ops[plan->n_ops];
    memset(op, 0, sizeof *op);
    if (strcmp(name, "resize") == 0 || strcmp(name, "thumbnail") == 0) {
        bool thumb = name[0] == 't';
        if (n_args < 1 || !parse_size(args[0], &op->arg_w, &op->arg_h) || n_args > (thumb ? 1 : 2)) {
            snprintf(err, err_cap, "operation %s: want %s:WxH%s", name, name, thumb ? "" : "[:bilinear|area]");
            return false;
        }
        op->thumbnail = thumb;
        op->kind = thumb ? GW_OP_RESIZE_AREA : GW_OP_RESIZE_BILINEAR;
        if (n_args == 2) {
            if (strcmp(args[1], "area") == 0) {
                op->kind = GW_OP_RESIZE_AREA;
            } else if (strcmp(args[1], "bilinear") != 0) {
                snprintf(err, err_cap, "operation resize: unknown filter \"%s\" (bilinear or area)", args[1]);
                return false;
            }
        }
    } else if (strcmp(name, "blur") == 0) {
        double sigma;
        if (n_args != 1 || !parse_double(args[0], 1e-3, SIGMA_MAX, &sigma)) {
            snprintf(err, err_cap, "operation blur: want blur:SIGMA with 0 < SIGMA <= %g", SIGMA_MAX);
            return false;
        }
        op->kind = GW_OP_BLUR;
        blur_kernel(sigma, op);
    } else if (strcmp(name, "grayscale") == 0 || strcmp(name, "gray") == 0) {
        if (n_args != 0) {
            snprintf(err, err_cap, "operation grayscale takes no argument");
            return false;
        }
        op->kind = GW_OP_GRAY;
    } else if (strcmp(name, "brightness") == 0) {
        long b;
        if (n_args != 1 || !parse_int(args[0], -255, 255, &b)) {
            snprintf(err, err_cap, "operation brightness: want brightness:B with -255 <= B <= 255");
            return false;
        }
        op->kind = GW_OP_LEVELS;
        op->brightness = (int32_t)b;
        op->contrast_q16 = 65536;
    } else if (strcmp(name, "contrast") == 0) {
        double c;
        if (n_args != 1 || !parse_double(args[0], 0.0, CONTRAST_MAX, &c)) {
            snprintf(err, err_cap, "operation contrast: want contrast:C with 0 <= C <= %g", CONTRAST_MAX);
            return false;
        }
        op->kind = GW_OP_LEVELS;
        op->contrast_q16 = (int32_t)lround(c * 65536.0);
    } else if (strcmp(name, "composite") == 0 || strcmp(name, "flatten") == 0) {
        if (n_args != 1 || !parse_hex_color(args[0], op->bg)) {
            snprintf(err, err_cap, "operation %s: want %s:RRGGBB (hex colour)", name, name);
            return false;
        }
        op->kind = GW_OP_COMPOSITE;
    } else {
        snprintf(err, err_cap, "unknown operation \"%.64s\"", name);
        return false;
    }
    plan->n_ops++;
    return true;
}

bool gw_plan_parse(const char *spec, gw_plan *plan, char *err, size_t err_cap)
{
    memset(plan, 0, sizeof *plan);
    if (spec == NULL)
        return true;
    size_t len = strlen(spec);
    if (len >= GW_OP_SPEC_MAX) {
        snprintf(err, err_cap, "operation header longer than %d bytes", GW_OP_SPEC_MAX - 1);
        return false;
    }
    char buf[GW_OP_SPEC_MAX];
    memcpy(buf, spec, len + 1);
    char *save = NULL;
    for (char *item = strtok_r(buf, ",", &save); item != NULL; item = strtok_r(NULL, ",", &save)) {
        while (*item == ' ')
            item++;
        size_t n = strlen(item);
        while (n > 0 && item[n - 1] == ' ')
            item[--n] = '\0';
        if (n == 0)
            continue;
        if (!parse_one(item, plan, err, err_cap))
            return false;
    }
    return true;
}

/* Thumbnail box fit: the larger scale-down of the two sides wins; never enlarges. */
static void fit_box(int in_w, int in_h, int box_w, int box_h, int *w, int *h)
{
    if (box_w == 0)
        box_w = in_w;
    if (box_h == 0)
        box_h = in_h;
    if (in_w <= box_w && in_h <= box_h) {
        *w = in_w;
        *h = in_h;
        return;
    }
    if ((int64_t)in_w * box_h >= (int64_t)in_h * box_w) { /* width is the tighter side */
        *w = box_w;
        *h = (int)(((int64_t)in_h * box_w + in_w / 2) / in_w);
    } else {
        *h = box_h;
        *w = (int)(((int64_t)in_w * box_h + in_h / 2) / in_h);
    }
    if (*w < 1)
        *w = 1;
    if (*h < 1)
        *h = 1;
}

bool gw_plan_resolve(gw_plan *plan, gw_format in_format, int in_w, int in_h, const gw_limits *lim, char *err,
                     size_t err_cap)
{
    if (!gw_limits_check(lim, in_w, in_h, err, err_cap))
        return false;
    plan->in_w = in_w;
    plan->in_h = in_h;
    if (plan->out_format == GW_FMT_UNKNOWN) {
        plan->out_format = in_format == GW_FMT_JPEG ? GW_FMT_JPEG : GW_FMT_PNG;
        plan->jpeg_quality = JPEG_QUALITY_DEFAULT;
    }
    int w = in_w, h = in_h;
    int64_t biggest = (int64_t)w * h;
    for (int i = 0; i < plan->n_ops; i++) {
        gw_op *op = &plan->ops[i];
        op->in_w = w;
        op->in_h = h;
        if (op->kind == GW_OP_RESIZE_BILINEAR || op->kind == GW_OP_RESIZE_AREA) {
            int64_t ow = op->arg_w, oh = op->arg_h;
            if (op->thumbnail) {
                int tw, th;
                fit_box(w, h, op->arg_w, op->arg_h, &tw, &th);
                ow = tw;
                oh = th;
            } else if (ow == 0) {
                ow = ((int64_t)w * oh + h / 2) / h;
                ow = ow < 1 ? 1 : ow;
            } else if (oh == 0) {
                oh = ((int64_t)h * ow + w / 2) / w;
                oh = oh < 1 ? 1 : oh;
            }
            if (!gw_limits_check(lim, ow, oh, err, err_cap))
                return false;
            w = (int)ow;
            h = (int)oh;
        }
        op->out_w = w;
        op->out_h = h;
        if ((int64_t)w * h > biggest)
            biggest = (int64_t)w * h;
    }
    plan->out_w = w;
    plan->out_h = h;
    plan->max_pixels = biggest;
    return true;
}

void gw_plan_output_flags(const gw_plan *plan, bool in_alpha, bool in_gray, bool *alpha, bool *gray)
{
    bool a = in_alpha, g = in_gray;
    for (int i = 0; i < plan->n_ops; i++) {
        if (plan->ops[i].kind == GW_OP_GRAY)
            g = true;
        else if (plan->ops[i].kind == GW_OP_COMPOSITE) {
            const uint8_t *bg = plan->ops[i].bg;
            if (a && !(bg[0] == bg[1] && bg[1] == bg[2]))
                g = false; /* translucent pixels take the background's colour */
            a = false;
        }
    }
    *alpha = a;
    *gray = g;
}
