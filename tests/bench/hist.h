/* A fixed-size log-linear latency histogram (the HdrHistogram idea, cut down): 64 linear
 * sub-buckets per power of two, so every recorded value is known to within 1.6 %, in 2,304
 * counters whatever the number of samples. Values are nanoseconds, up to 2^40 ns (18 min);
 * larger ones land in the last bucket. Header-only (static) because each bench program is its
 * own binary. */
#ifndef LQ_BENCH_HIST_H
#define LQ_BENCH_HIST_H

#include <stdint.h>
#include <string.h>

#define HIST_SUB_BITS 6
#define HIST_SUB (1u << HIST_SUB_BITS)
#define HIST_MAX_BIT 40
#define HIST_BUCKETS ((HIST_MAX_BIT - HIST_SUB_BITS + 2) * HIST_SUB)

typedef struct {
    uint64_t counts[HIST_BUCKETS];
    uint64_t total;
    uint64_t max_ns;
} hist;

static inline void hist_reset(hist *h) { memset(h, 0, sizeof *h); }

static inline unsigned hist_index(uint64_t v)
{
    if (v < 2 * HIST_SUB)
        return (unsigned)v; /* exact below 128 ns */
    unsigned msb = 63u - (unsigned)__builtin_clzll(v);
    if (msb > HIST_MAX_BIT)
        return HIST_BUCKETS - 1;
    unsigned mant = (unsigned)(v >> (msb - HIST_SUB_BITS)); /* in [64, 128) */
    return (msb - HIST_SUB_BITS + 1) * HIST_SUB + (mant - HIST_SUB);
}

/* The middle of bucket i, the value reported for samples in it. */
static inline uint64_t hist_value(unsigned i)
{
    if (i < 2 * HIST_SUB)
        return i;
    unsigned msb = i / HIST_SUB + HIST_SUB_BITS - 1;
    uint64_t mant = i % HIST_SUB + HIST_SUB;
    unsigned shift = msb - HIST_SUB_BITS;
    return (mant << shift) + ((1ull << shift) >> 1);
}

static inline void hist_add(hist *h, uint64_t ns)
{
    h->counts[hist_index(ns)]++;
    h->total++;
    if (ns > h->max_ns)
        h->max_ns = ns;
}

static inline void hist_merge(hist *into, const hist *from)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->counts[i] += from->counts[i];
    into->total += from->total;
    if (from->max_ns > into->max_ns)
        into->max_ns = from->max_ns;
}

/* The value at quantile q (0 < q <= 1), in ns; 0 when empty. */
static inline uint64_t hist_quantile(const hist *h, double q)
{
    if (h->total == 0)
        return 0;
    uint64_t rank = (uint64_t)(q * (double)h->total + 0.5);
    if (rank < 1)
        rank = 1;
    if (rank > h->total)
        rank = h->total;
    uint64_t seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->counts[i];
        if (seen >= rank) {
            uint64_t v = hist_value(i);
            return v < h->max_ns ? v : h->max_ns;
        }
    }
    return h->max_ns;
}

#endif
