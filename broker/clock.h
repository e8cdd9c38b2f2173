/* The broker clock: milliseconds since the Unix epoch that never go backwards inside a process.
 *
 * now = realtime captured at start + (monotonic now - monotonic at start). Within a process it
 * follows CLOCK_MONOTONIC (an NTP step cannot expire every lease at once); across restarts it
 * stays close to wall time, which matters because deadlines and not-before times are stored as
 * absolute milliseconds. */
#ifndef LQ_CLOCK_H
#define LQ_CLOCK_H

#include <stdint.h>

typedef struct {
    uint64_t real_start_ms;
    uint64_t mono_start_ns;
} lq_clock;

void lq_clock_init(lq_clock *c);
uint64_t lq_clock_now_ms(const lq_clock *c);
/* CLOCK_MONOTONIC in nanoseconds (for durations in logs). */
uint64_t lq_mono_ns(void);

#endif
