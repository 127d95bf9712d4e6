/*
 * pipeline: the projector's completeness watermark, as pure logic (no I/O), so it is
 * unit-tested on its own. (Which Redis errors are systemic, and stream ids, are in kv.h.)
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

#include "kv.h"

#include <stdbool.h>
#include <stdint.h>

#define PL_CANDIDATES 64

/* The watermark candidates of one partition, in stream order. */
typedef struct pl_marks {
    kv_id id[PL_CANDIDATES];
    int64_t w[PL_CANDIDATES];
    int n;
} pl_marks;

/* Records a watermark entry the projector acked. When full the oldest candidate goes. */
void pl_marks_add(pl_marks *m, kv_id id, int64_t w);

/*
 * The watermark that holds when the group's oldest pending entry is `oldest` (has_pending), or
 * when nothing is pending: the w of the newest candidate before it (0 if none). The candidates
 * up to it are dropped; later ones stay for a later call.
 */
int64_t pl_marks_settle(pl_marks *m, bool has_pending, kv_id oldest);

#endif
