/* fsync_probe [--pages K] [--layout same|contig|scattered|append|log] DIR [N]: the latency of
 * "write K pages of 4 KiB, fdatasync" in DIR, N times (default 200).
 *
 * With sync full, every group commit of leaseqd waits for the disk, so with a fixed number of
 * requests in flight the enqueue rate is about in_flight / commit_time (Little's law). This probe
 * runs next to the benchmark to record what the disk was doing at the time: on a shared machine
 * the same disk can be several times slower while others write to it.
 *
 * The layouts show what shape of write the disk is fast at, which is what separates an LMDB
 * commit (copy-on-write pages spread over the file, then the meta page) from a log append:
 *   same       overwrite the same K pages every time (the default, K = 1: the bench's probe)
 *   contig     K adjacent pages at a random place in a 64 MiB region written beforehand
 *   scattered  K pages each at its own random place in that region
 *   append     K pages past the end of the file, which grows (block allocation and the inode's
 *              size go to the journal, as when LMDB or an append-only log extends its file)
 *   log        K pages in one write, each probe right after the last one in that region (a
 *              write-ahead log in a file written full size beforehand: one extent, sequential,
 *              no allocation); run it while a broker is busy to see what a log flush costs then
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
#define PAGES_MAX 256
#define PAGE 4096u
#define REGION_PAGES (64u * 1024u * 1024u / PAGE)

enum layout { L_SAME, L_CONTIG, L_SCATTERED, L_APPEND, L_LOG };
static const char *const layout_names[] = {"same", "contig", "scattered", "append", "log"};

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

/* xorshift: the probe must not depend on rand()'s state or quality */
static uint64_t next_rand(uint64_t *s)
{
    *s ^= *s << 13;
    *s ^= *s >> 7;
    *s ^= *s << 17;
    return *s;
}

static int usage(void)
{
    fprintf(stderr, "usage: fsync_probe [--pages K] [--layout same|contig|scattered|append|log] DIR [N]\n");
    return 2;
}

static int parse_layout(const char *s, enum layout *out)
{
    for (int i = 0; i < (int)(sizeof(layout_names) / sizeof(layout_names[0])); i++)
        if (strcmp(s, layout_names[i]) == 0) {
            *out = (enum layout)i;
            return 0;
        }
    return -1;
}

/* Writes the region the in-place layouts overwrite, so that they measure overwrites of
 * allocated, initialised blocks (like LMDB pages reused from its free list). */
static int fill_region(int fd, const uint8_t *page)
{
    for (uint32_t p = 0; p < REGION_PAGES; p++)
        if (pwrite(fd, page, PAGE, (off_t)p * PAGE) != (ssize_t)PAGE)
            return -1;
    return fsync(fd);
}

int main(int argc, char **argv)
{
    long pages = 1;
    enum layout lay = L_SAME;
    int ai = 1;
    for (; ai < argc && strncmp(argv[ai], "--", 2) == 0; ai += 2) {
        if (ai + 1 >= argc)
            return usage();
        if (strcmp(argv[ai], "--pages") == 0)
            pages = strtol(argv[ai + 1], NULL, 10);
        else if (strcmp(argv[ai], "--layout") == 0) {
            if (parse_layout(argv[ai + 1], &lay) != 0)
                return usage();
        } else
            return usage();
    }
    if (argc - ai < 1 || argc - ai > 2)
        return usage();
    const char *dir = argv[ai];
    long n = argc - ai == 2 ? strtol(argv[ai + 1], NULL, 10) : 200;
    if (n < 1 || n > PROBES_MAX || pages < 1 || pages > PAGES_MAX) {
        fprintf(stderr, "fsync_probe: N must be 1..%d, K 1..%d\n", PROBES_MAX, PAGES_MAX);
        return 2;
    }
    char path[4096];
    snprintf(path, sizeof path, "%s/fsync_probe.%d", dir, (int)getpid());
    int fd = open(path, O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    if (fd < 0) {
        fprintf(stderr, "fsync_probe: %s: %s\n", path, strerror(errno));
        return 1;
    }
    unlink(path); /* the file lives as long as fd */
    static uint8_t block[PAGE];
    static uint8_t record[PAGES_MAX * PAGE]; /* log: one write of K pages */
    uint64_t *lat = malloc((size_t)n * sizeof *lat); /* owner: main */
    int rc = 1;
    if (!lat)
        goto out;
    if (lay == L_SAME) {
        /* allocate the blocks first, so the probes measure overwrites like an LMDB commit's */
        for (long p = 0; p < pages; p++)
            if (pwrite(fd, block, PAGE, (off_t)p * PAGE) != (ssize_t)PAGE)
                goto fail;
        if (fsync(fd) != 0)
            goto fail;
    } else if (fill_region(fd, block) != 0) {
        goto fail;
    }
    uint64_t seed = 0x9e3779b97f4a7c15u ^ (uint64_t)getpid();
    off_t end = (off_t)REGION_PAGES * PAGE;
    off_t log_at = 0;
    for (long i = 0; i < n; i++) {
        block[0] = (uint8_t)i;
        off_t base = (off_t)(next_rand(&seed) % (REGION_PAGES - (uint32_t)pages)) * PAGE;
        uint64_t t0 = now_ns();
        if (lay == L_LOG) {
            size_t len = (size_t)pages * PAGE;
            if (log_at + (off_t)len > (off_t)REGION_PAGES * PAGE)
                log_at = 0;
            record[0] = (uint8_t)i;
            if (pwrite(fd, record, len, log_at) != (ssize_t)len)
                goto fail;
            log_at += (off_t)len;
        }
        for (long p = 0; lay != L_LOG && p < pages; p++) { /* the other layouts: page by page */
            off_t off;
            switch (lay) {
            case L_SAME: off = (off_t)p * PAGE; break;
            case L_CONTIG: off = base + (off_t)p * PAGE; break;
            case L_SCATTERED: off = (off_t)(next_rand(&seed) % REGION_PAGES) * PAGE; break;
            default: off = end; end += PAGE; break;
            }
            if (pwrite(fd, block, PAGE, off) != (ssize_t)PAGE)
                goto fail;
        }
        if (fdatasync(fd) != 0)
            goto fail;
        lat[i] = now_ns() - t0;
    }
    qsort(lat, (size_t)n, sizeof *lat, cmp_u64);
    if (pages == 1 && lay == L_SAME)
        printf("fdatasync of 4 KiB in %s (%ld probes): ", dir, n);
    else
        printf("%ld x 4 KiB %s + fdatasync in %s (%ld probes): ", pages, layout_names[lay], dir, n);
    printf("p50 %.0f us, p90 %.0f us, p99 %.0f us, max %.0f us\n", (double)lat[n / 2] / 1e3,
           (double)lat[n * 9 / 10] / 1e3, (double)lat[n * 99 / 100] / 1e3, (double)lat[n - 1] / 1e3);
    rc = 0;
    goto out;
fail:
    fprintf(stderr, "fsync_probe: %s\n", strerror(errno));
out:
    free(lat);
    close(fd);
    return rc;
}
