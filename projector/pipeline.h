/*
 * pipeline: what the projector decides about the pipeline's state, as pure logic (no I/O), so
 * it is unit-tested on its own: which Redis error replies are systemic, how stream ids order,
 * and the completeness watermark.
 *
 * Systemic errors (OOM, READONLY, MISCONF, LOADING, BUSY, NOREPLICAS, MASTERDOWN, CLUSTERDOWN,
 * TRYAGAIN) say that Redis cannot take writes now, whatever the event: the projector stops
 * reading, backs off and fails /readyz, and never spends an event's attempts on them, let
 * alone acks. Any other error reply is the event's own (a WRONGTYPE inside the function).
 *
 * The watermark (docs/keyspace.md, tally:wm): the relay follows every event committed before T
 * with a watermark entry `w = T` in the event's partition. Once every entry before a watermark
 * entry is acknowledged by the group (applied, or parked), the read model is complete up to T.
 * The projector keeps the watermark entries it acked as candidates; a candidate holds once the
 * group's oldest pending entry is after it (or nothing is pending), and the newest candidate
 * that holds is the partition's watermark.
 */
#ifndef TALLY_PIPELINE_H
#define TALLY_PIPELINE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The kind of a systemic error reply ("OOM", "READONLY", ...), or NULL for an event's own. */
const char *pl_systemic_kind(const char *error);

/* Whether an error reply should also drop the connection (READONLY, MASTERDOWN, LOADING: a
   connection pinned to a demoted primary or a restarting server is dialled again). */
bool pl_reconnect_on(const char *error);

/* A stream entry id "ms-seq". */
typedef struct pl_id {
    uint64_t ms, seq;
} pl_id;

/* Parses "ms-seq" (or "ms"). false if malformed. */
bool pl_id_parse(const char *s, pl_id *out);

/* <0, 0, >0 as a orders before, equal to, after b. */
int pl_id_cmp(pl_id a, pl_id b);

#define PL_CANDIDATES 64

/* The watermark candidates of one partition, in stream order. */
typedef struct pl_marks {
    pl_id id[PL_CANDIDATES];
    int64_t w[PL_CANDIDATES];
    int n;
} pl_marks;

/* Records a watermark entry the projector acked. When full the oldest candidate goes. */
void pl_marks_add(pl_marks *m, pl_id id, int64_t w);

/*
 * The watermark that holds when the group's oldest pending entry is `oldest` (has_pending), or
 * when nothing is pending: the w of the newest candidate before it (0 if none). The candidates
 * up to it are dropped; later ones stay for a later call.
 */
int64_t pl_marks_settle(pl_marks *m, bool has_pending, pl_id oldest);

#endif
