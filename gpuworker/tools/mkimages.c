/* Writes COUNT sample images (PNG and JPEG, several sizes and patterns) into OUTDIR, through
 * the worker's own codec layer (libpng, libjpeg-turbo). Deterministic: same COUNT, same files.
 *
 *   mkimages OUTDIR COUNT */
#include "../image.h"
#include "../synth.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/stat.h>

static const struct {
    int w, h;
} sizes[] = {{640, 480}, {1024, 768}, {800, 800}, {1280, 720}, {333, 500}};

int main(int argc, char **argv)
{
    if (argc != 3 || atoi(argv[2]) < 1 || atoi(argv[2]) > 10000) {
        fprintf(stderr, "usage: mkimages OUTDIR COUNT (1..10000)\n");
        return 2;
    }
    const char *dir = argv[1];
    int count = atoi(argv[2]);
    if (mkdir(dir, 0755) != 0 && errno != EEXIST) {
        perror(dir);
        return 1;
    }
    size_t total = 0;
    for (int i = 0; i < count; i++) {
        gw_synth_pattern pat = (gw_synth_pattern)(i % GW_SYNTH_COUNT);
        if (pat == GW_SYNTH_NOISE) /* noise is a poor demo picture; once in a while is enough */
            pat = i % 8 == 2 ? GW_SYNTH_NOISE : GW_SYNTH_SCENE;
        int w = sizes[i % 5].w, h = sizes[i % 5].h;
        /* alpha only survives in PNG */
        gw_format fmt = pat == GW_SYNTH_ALPHA || i % 3 == 0 ? GW_FMT_PNG : GW_FMT_JPEG;
        gw_image img;
        uint8_t *enc = NULL;
        size_t len = 0;
        char err[256], path[1024];
        if (!gw_synth(&img, w, h, pat, (uint32_t)i) || !gw_encode(&img, fmt, 90, &enc, &len, err, sizeof err)) {
            fprintf(stderr, "image %d: %s\n", i, err);
            return 1;
        }
        snprintf(path, sizeof path, "%s/img-%03d.%s", dir, i, fmt == GW_FMT_PNG ? "png" : "jpg");
        FILE *f = fopen(path, "wb");
        if (f == NULL || fwrite(enc, 1, len, f) != len || fclose(f) != 0) {
            perror(path);
            return 1;
        }
        total += len;
        free(enc);
        gw_image_free(&img);
    }
    printf("mkimages: %d images, %zu KiB in %s\n", count, total / 1024, dir);
    return 0;
}
