#include "backoff.h"

#include <errno.h>
#include <stdlib.h>
#include <time.h>

void backoff_init(backoff *b, int64_t min_ms, int64_t max_ms)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    b->min_ms = min_ms;
    b->max_ms = max_ms;
    b->ceiling_ms = 0;
    b->seed = (unsigned int)(ts.tv_nsec ^ (long)b);
}

int64_t backoff_next(backoff *b)
{
    b->ceiling_ms = b->ceiling_ms ? b->ceiling_ms * 2 : b->min_ms;
    if (b->ceiling_ms > b->max_ms)
        b->ceiling_ms = b->max_ms;
    int64_t half = b->ceiling_ms / 2;
    return half + (half > 0 ? (int64_t)(rand_r(&b->seed) % (half + 1)) : 0);
}

void backoff_reset(backoff *b)
{
    b->ceiling_ms = 0;
}

void backoff_sleep_ms(int64_t ms)
{
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}
