/*
 * tclock: the tests' one spelling of time. Intervals and timestamps are common/now.h's
 * now_mono_ms() and now_wall_ms() (included here); tclock_sleep_ms() is the one sleep of the
 * test harness.
 */
#ifndef TALLY_TEST_TCLOCK_H
#define TALLY_TEST_TCLOCK_H

#include "now.h"

#include <errno.h>
#include <time.h>

/* Sleeps ms milliseconds (the whole time: restarted after a signal); ms <= 0 returns at once. */
static inline void tclock_sleep_ms(int ms)
{
    if (ms <= 0)
        return;
    struct timespec ts = { .tv_sec = ms / 1000, .tv_nsec = (ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) != 0 && errno == EINTR)
        ;
}

#endif
