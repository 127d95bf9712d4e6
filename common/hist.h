/*
 * hist: the log-bucket histogram of resolution times, shared by the projector (which counts
 * into buckets) and the query side (which reads percentiles out of them).
 *
 * Bucket 0 holds 0 s; bucket b >= 1 holds [G^(b-1), G^b) seconds, G = HIST_GAMMA. The value
 * reported for bucket b is 2*G^b/(G+1), within HIST_RELATIVE_ERROR = (G-1)/(G+1) of every
 * value in the bucket (4.76% for G = 1.1). Ten years (3.2e8 s) fit in about 210 buckets.
 */
#ifndef TALLY_HIST_H
#define TALLY_HIST_H

#include <stdint.h>

#define HIST_GAMMA          1.1
#define HIST_MAX_SECONDS    4000000000LL /* about 126 years: the longest resolution time kept */
#define HIST_BUCKETS        240          /* buckets 0..239 hold 0..HIST_MAX_SECONDS */
#define HIST_RELATIVE_ERROR ((HIST_GAMMA - 1.0) / (HIST_GAMMA + 1.0))

/* The bucket of a duration in seconds (negative counts as 0). */
int hist_bucket(int64_t seconds);

/* The value reported for bucket b, in seconds. */
double hist_value(int b);

#endif
