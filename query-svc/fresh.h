/*
 * fresh: the Freshness of a reply, from what the request's one read saw of the tenant's
 * freshness (`P fresh`), the completeness watermark (`tally:wm`), the tenant's parked complaints
 * (`{t:T}:parked`) and the rebuild markers (`{t:T}:rebuild`, `tally:repair`); see
 * docs/keyspace.md. Pure functions: no I/O, no clock.
 *
 * Invariants of what they give: no lag is ever negative, whatever the skew between the
 * projector's clock and the server's; an unknown watermark is complete_until_ms = 0 with
 * complete_lag_ms = server_time_ms (complete since the epoch only), so it never reads as
 * "0 s ago"; rebuilding is true when either marker exists; an ETA is never negative.
 */
#ifndef TALLY_FRESH_H
#define TALLY_FRESH_H

#include "tally/v1/types.pb-c.h"

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

/* What the read saw, in numbers (0 = absent). */
typedef struct fresh_seen {
    int64_t now_ms;       /* the server's clock once the read came back */
    int64_t as_of_ms;     /* P fresh as_of_ms */
    int64_t applied_ms;   /* P fresh applied_ms */
    int64_t events;       /* P fresh events */
    int64_t watermark_ms; /* fresh_watermark() of HVALS tally:wm */
    int64_t parked;       /* HLEN {t:T}:parked */
    bool rebuild;         /* {t:T}:rebuild exists */
    bool repair;          /* tally:repair exists */
    /* The rebuild's progress, from {t:T}:rebuild (0 / NULL when not recorded yet). */
    int64_t rb_done, rb_total, rb_rate, rb_started_ms;
    const char *rb_phase;
    bool rb_frozen; /* the current generation is of an older view: no live events since then */
} fresh_seen;

/*
 * The completeness watermark from the reply of HVALS tally:wm (partition -> Unix ms): the lowest
 * value, since query-svc does not know how many partitions there are and the read model is
 * complete only as far as its slowest partition. 0 (unknown) when the hash is empty or absent,
 * when the reply is not an array, or when any value is not a decimal integer >= 1: a partition
 * whose watermark cannot be read could be the slowest. r is borrowed.
 */
int64_t fresh_watermark(const redisReply *r);

/*
 * Fills f (initialised by the caller) from what the read saw; the token fields (stale,
 * token_applied_version) are the caller's. rp is storage for the rebuild's progress (initialised
 * by the caller, living as long as f): f->rebuild points to it while a rebuild of the tenant
 * runs, with an ETA from the rate (-1 before the rate is known). While a rebuild for a newer
 * view runs, the current generation receives no live events: it is complete only up to the
 * rebuild's start.
 */
void fresh_fill(Tally__V1__Freshness *f, Tally__V1__RebuildProgress *rp, const fresh_seen *s);

#endif
