/*
 * backoff: exponential backoff with full jitter, for retrying a dependency that is down.
 * Each failure doubles the ceiling (from min_ms up to max_ms); the wait is uniform in
 * [ceiling/2, ceiling], so many clients do not retry in step. Success resets it.
 */
#ifndef TALLY_BACKOFF_H
#define TALLY_BACKOFF_H

#include <stdint.h>

typedef struct backoff {
    int64_t min_ms, max_ms, ceiling_ms;
    unsigned int seed;
} backoff;

void backoff_init(backoff *b, int64_t min_ms, int64_t max_ms);

/* The next wait in milliseconds, after a failure. */
int64_t backoff_next(backoff *b);

void backoff_reset(backoff *b);

/* Sleeps ms milliseconds (restarting after signals). */
void backoff_sleep_ms(int64_t ms);

#endif
