/* fsync_probe DIR [N]: the latency of "overwrite 4 KiB, fdatasync" in DIR, N times (default 200).
 *
 * With sync full, every group commit of leaseqd waits for the disk, so with a fixed number of
 * requests in flight the enqueue rate is about in_flight / commit_time (Little's law). This probe
 * runs next to the benchmark to record what the disk was doing at the time: on a shared machine
 * the same disk can be several times slower while others write to it.
 *
 * Prints one line: p50, p90, p99 and max in microseconds.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define PROBES_MAX 100000

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static int cmp_u64(const void *a, const void *b)
{
    uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
    return x < y ? -1 : x > y;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 3) {
        fprintf(stderr, "usage: fsync_probe DIR [N]\n");
        return 2;
    }
    long n = argc == 3 ? strtol(argv[2], NULL, 10) : 200;
    if (n < 1 || n > PROBES_MAX) {
        fprintf(stderr, "fsync_probe: N must be 1..%d\n", PROBES_MAX);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync_probe.%d", argv[1], (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fsync_probe: %s: %s\n", path, strerror(errno));
        return 1;
    }
    unlink(path); /* the file lives as long as fd */
    static uint8_t block[4096];
    uint64_t *lat = malloc((size_t)n * sizeof *lat); /* owner: main */
    int rc = 1;
    if (!lat)
        goto out;
    /* allocate the block first, so the probes measure overwrites like an LMDB commit's */
    if (pwrite(fd, block, sizeof block, 0) != (ssize_t)sizeof block || fsync(fd) != 0)
        goto out;
    for (long i = 0; i < n; i++) {
        block[0] = (uint8_t)i;
        uint64_t t0 = now_ns();
        if (pwrite(fd, block, sizeof block, 0) != (ssize_t)sizeof block || fdatasync(fd) != 0) {
            fprintf(stderr, "fsync_probe: %s\n", strerror(errno));
            goto out;
        }
        lat[i] = now_ns() - t0;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    printf("fdatasync of 4 KiB in %s (%ld probes): p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us\n", argv[1], n,
           (double)lat[n / 2] / 1e3, (double)lat[n * 9 / 10] / 1e3, (double)lat[n * 99 / 100] / 1e3,
           (double)lat[n - 1] / 1e3);
    rc = 0;
out:
    free(lat);
    close(fd);
    return rc;
}
