/* The operation chain of a job: parsed from its `op` header, then resolved against the input
 * size into concrete steps that a backend runs in order.
 *
 * Syntax: comma-separated operations, arguments after colons:
 *   resize:WxH[:bilinear|area]   W or H may be 0 (= keep aspect); bilinear is the default
 *   thumbnail:WxH                fit inside WxH keeping aspect, area filter, never enlarges
 *   blur:SIGMA                   gaussian, 0 < SIGMA <= 50
 *   grayscale                    BT.601 luma (alias: gray)
 *   brightness:B                 -255..255, added
 *   contrast:C                   0..10, around 128
 *   composite:RRGGBB             alpha over an opaque background colour (alias: flatten)
 *   format:png | format:jpeg[:Q] output encoding (jpg also accepted; Q 1..100, default 90);
 *                                default: the input's format
 * Unknown names, bad arguments and chains over GW_OPS_MAX steps are refused with a message. */
#ifndef GW_OPS_H
#define GW_OPS_H

#include "image.h"
#include "pixmath.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define GW_OPS_MAX 16
#define GW_OP_SPEC_MAX 1024 /* bytes of the `op` header */

typedef enum {
    GW_OP_RESIZE_BILINEAR = 1,
    GW_OP_RESIZE_AREA,
    GW_OP_BLUR,
    GW_OP_GRAY,
    GW_OP_LEVELS,    /* brightness and contrast */
    GW_OP_COMPOSITE,
} gw_op_kind;

typedef struct {
    gw_op_kind kind;
    /* as parsed */
    int arg_w, arg_h;  /* resize / thumbnail request (0 = keep aspect) */
    bool thumbnail;
    /* resolved (gw_plan_resolve) */
    int in_w, in_h, out_w, out_h;
    int blur_r;                                /* blur: radius, kernel half in blur_k[0..r] */
    int32_t blur_k[GW_BLUR_RADIUS_MAX + 1];
    int32_t contrast_q16, brightness;          /* levels */
    uint8_t bg[3];                             /* composite */
} gw_op;

typedef struct {
    gw_op ops[GW_OPS_MAX];
    int n_ops;
    gw_format out_format; /* GW_FMT_UNKNOWN until resolved = same as input */
    int jpeg_quality;
    /* resolved */
    int in_w, in_h, out_w, out_h;
    int64_t max_pixels; /* largest image any step holds: what a backend must have room for */
} gw_plan;

/* Parses spec (may be NULL or "" = no operations, re-encode only). false with err filled when
 * the chain is malformed: such a job can never succeed (dead). */
bool gw_plan_parse(const char *spec, gw_plan *plan, char *err, size_t err_cap);

/* Fills sizes for an input of in_w x in_h and checks every intermediate against lim. */
bool gw_plan_resolve(gw_plan *plan, gw_format in_format, int in_w, int in_h, const gw_limits *lim, char *err,
                     size_t err_cap);

/* Output flags after the chain (grayscale makes a gray image, composite an opaque one). */
void gw_plan_output_flags(const gw_plan *plan, bool in_alpha, bool in_gray, bool *alpha, bool *gray);

#endif
