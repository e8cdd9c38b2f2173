#include "synth.h"

#include <math.h>

static uint32_t mix(uint32_t x)
{
    x ^= x >> 16;
    x *= 0x7feb352dU;
    x ^= x >> 15;
    x *= 0x846ca68bU;
    x ^= x >> 16;
    return x;
}

static uint8_t u8(double v)
{
    return (uint8_t)(v < 0 ? 0 : v > 255 ? 255 : v + 0.5);
}

bool gw_synth(gw_image *img, int w, int h, gw_synth_pattern pattern, uint32_t seed)
{
    if (!gw_image_alloc(img, w, h))
        return false;
    double ph = (double)(mix(seed) % 628) / 100.0;
    for (int y = 0; y < h; y++) {
        for (int x = 0; x < w; x++) {
            uint8_t *p = img->px + ((size_t)y * (size_t)w + (size_t)x) * 4;
            double u = (double)x / w, v = (double)y / h;
            double dx = u - 0.5, dy = v - 0.5, r = sqrt(dx * dx + dy * dy);
            switch (pattern) {
            case GW_SYNTH_SCENE: {
                bool disc = r < 0.25;
                p[0] = u8(disc ? 230 - 200 * r : 255 * u * (0.6 + 0.4 * sin(6 * v + ph)));
                p[1] = u8(disc ? 180 * (1 - r) : 200 * v);
                p[2] = u8(disc ? 40 : 128 + 100 * sin(9 * u + 4 * v + ph));
                p[3] = 255;
                break;
            }
            case GW_SYNTH_CHECKER: {
                bool on = ((x >> 3) ^ (y >> 3)) & 1;
                p[0] = on ? 250 : 10;
                p[1] = on ? 240 : 30;
                p[2] = on ? 20 : 200;
                p[3] = 255;
                break;
            }
            case GW_SYNTH_NOISE: {
                uint32_t n = mix(seed * 0x9e3779b9U ^ (uint32_t)(y * 65537 + x));
                p[0] = (uint8_t)n;
                p[1] = (uint8_t)(n >> 8);
                p[2] = (uint8_t)(n >> 16);
                p[3] = 255;
                break;
            }
            default: { /* GW_SYNTH_ALPHA */
                p[0] = u8(255 * u);
                p[1] = u8(255 * (1 - u));
                p[2] = u8(255 * v);
                p[3] = u8(255 * (1 - 2 * r));
                break;
            }
            }
        }
    }
    img->has_alpha = pattern == GW_SYNTH_ALPHA;
    return true;
}
