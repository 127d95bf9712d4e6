/*
 * lag: how far the read side is behind the event streams, per partition, read the one way
 * both `tally lag` and the projector's metrics read it (docs/operations.md, "where is the
 * lag?"), so the two cannot disagree about what a number means.
 *
 * One sample is one pipeline over every partition p (TIME, then XLEN tally:events:<p>, XINFO
 * GROUPS of it, the XPENDING summary of the group STREAM_GROUP, XLEN tally:dead:<p>, HGET
 * tally:wm p) and, only for the partitions that need it, a second one of one bounded XRANGE
 * each: the first undelivered entry when nothing is pending, or the undelivered entries
 * counted (at most LAG_COUNT_MAX) when Redis cannot say how many there are (XINFO GROUPS `lag`
 * is null after entries were deleted behind the group's position). Every command is O(1) or
 * bounded: no KEYS, no SCAN, no unbounded range; nothing is written.
 *
 * Entry ids are Redis's XADD milliseconds (the relay adds with "*"), so the oldest unapplied
 * entry's age is measured on Redis's clock (TIME): no skew between the reader and Redis. The
 * watermark is the relay's wall clock (docs/keyspace.md, tally:wm); its age is taken on the
 * same Redis clock, so it includes any skew between the relay's host and Redis's.
 */
#ifndef TALLY_LAG_H
#define TALLY_LAG_H

#include "stream.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define LAG_COUNT_MAX 1000 /* undelivered entries counted when Redis does not know (see top) */
#define LAG_ID_MAX    48

/* One partition as a sample saw it (0 / false = absent). */
typedef struct lag_part {
    bool stream;                /* tally:events:<p> exists */
    bool group;                 /* ... and has the group STREAM_GROUP */
    int64_t length;             /* XLEN */
    int64_t undelivered;        /* entries the group has not read yet */
    bool undelivered_counted;   /* Redis's lag was null: counted with XRANGE */
    bool undelivered_capped;    /* ... and the count stopped at LAG_COUNT_MAX: at least that */
    int64_t pending;            /* read by a consumer, not acknowledged (XPENDING summary) */
    char oldest_id[LAG_ID_MAX]; /* the oldest unapplied entry: the smallest pending id, else the
                                   first undelivered one; "" when everything is applied */
    int64_t oldest_ms;          /* its time part */
    bool wm_set;                /* tally:wm has the field p (or is damaged) */
    int64_t wm_ms;              /* its value when it is a positive integer, else 0 (unknown) */
    int64_t dead;               /* XLEN tally:dead:<p> */
} lag_part;

typedef struct lag_sample {
    int64_t now_ms; /* Redis's clock when it answered */
    int partitions;
    lag_part part[STREAM_PARTITIONS_MAX];
} lag_sample;

/*
 * Samples partitions 0..partitions-1 (1..STREAM_PARTITIONS_MAX) over c into out. 0;
 * TALLY_EUNAVAIL after an I/O error (c is then unusable: the caller drops it) or
 * TALLY_EINTERNAL for an error reply other than a missing stream or group (e.g. WRONGTYPE on
 * a stream), with the reason in err either way. A tally:wm that is not a hash only makes the
 * watermarks unknown (wm_set, wm_ms 0), as query-svc treats it.
 */
int lag_read(redisContext *c, int partitions, lag_sample *out, char *err, size_t errlen);

/* now_ms - t_ms, never negative; 0 when t_ms is 0 (nothing there). */
int64_t lag_age_ms(int64_t now_ms, int64_t t_ms);

/*
 * Fills p's group fields (group, and undelivered from the group's `lag`) from the reply of
 * XINFO GROUPS, and last_delivered (len bytes) with the group's
 * last-delivered-id. Returns whether Redis gave the lag (false: it is null or absent, or the
 * group does not exist). r is borrowed. Exposed for the unit tests.
 */
bool lag_parse_groups(const redisReply *r, lag_part *p, char *last_delivered, size_t len);

#endif
