#include "clock.h"

#include <time.h>

uint64_t lq_mono_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

void lq_clock_init(lq_clock *c)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    c->real_start_ms = (uint64_t)ts.tv_sec * 1000u + (uint64_t)ts.tv_nsec / 1000000u;
    c->mono_start_ns = lq_mono_ns();
}

uint64_t lq_clock_now_ms(const lq_clock *c)
{
    return c->real_start_ms + (lq_mono_ns() - c->mono_start_ns) / 1000000u;
}
