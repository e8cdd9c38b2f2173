/* Deterministic synthetic images for the demo, the tests and the benchmark (no binary files
 * in git): the same (pattern, size, seed) always gives the same pixels. */
#ifndef GW_SYNTH_H
#define GW_SYNTH_H

#include "image.h"

#include <stdint.h>

typedef enum {
    GW_SYNTH_SCENE = 0, /* smooth colour fields, a disc and soft edges: photo-like */
    GW_SYNTH_CHECKER,   /* hard 8-px checkerboard: worst case for resampling */
    GW_SYNTH_NOISE,     /* seeded noise: incompressible */
    GW_SYNTH_ALPHA,     /* gradient with a radial alpha ramp: composite and PNG alpha */
    GW_SYNTH_COUNT
} gw_synth_pattern;

/* Allocates img (owner: caller, gw_image_free); false when out of memory. */
bool gw_synth(gw_image *img, int w, int h, gw_synth_pattern pattern, uint32_t seed);

#endif
