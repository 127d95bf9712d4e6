/* now: the current time in milliseconds, monotonic (for intervals) or wall (for timestamps). */
#ifndef TALLY_NOW_H
#define TALLY_NOW_H

#include <stdint.h>
#include <time.h>

static inline int64_t now_mono_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static inline int64_t now_wall_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

#endif
