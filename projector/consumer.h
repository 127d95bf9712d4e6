/*
 * consumer: the projector's loop. It reads the streams tally:events:<p> in the consumer group
 * "projector" and applies each event to the read model exactly once, in order per complaint.
 *
 * A batch (XREADGROUP COUNT/BLOCK over every partition) is decoded, grouped by tenant, and
 * applied with one pipelined FCALL tally_apply per tenant (see tally.lua: atomic per call,
 * duplicates skipped by version, gaps refused). Applied and duplicate events are XACKed.
 *
 * Failures:
 * - A gap (the complaint's previous version is not applied yet: it may still be in flight,
 *   or with another projector) is kept and retried; after gap_timeout_ms it is parked.
 * - A poison event (undecodable, or failing max_attempts times alone) is parked: XADDed to
 *   tally:dead:<p> with its reason, and its complaint is marked in {t:<tenant>}:parked, so the
 *   complaint's later events are parked behind it while other complaints flow on.
 * - Redis errors: an error reply is never an ack. Systemic ones (OOM, READONLY, LOADING...:
 *   pipeline.h) and I/O errors stop the batch: reconnect with backoff and jitter, /readyz
 *   fails, and what was read and not acked is read again from this consumer's pending list,
 *   without spending an event's attempts. Entries left pending by a dead consumer are
 *   reclaimed (XAUTOCLAIM) at start and every claim_idle_ms; dead consumers with nothing
 *   pending are removed from the group. A full retry queue spills into the pending list (the
 *   entries are reclaimed later); it never parks an event.
 * - Entries trimmed from the stream before they were applied are counted as lost and reported
 *   to the relay (tally:repair:request), which republishes them from PostgreSQL.
 * - A Redis whose maxmemory-policy evicts keys (allkeys-*) is refused: at start the projector
 *   exits non-zero; later it stops applying and /readyz fails.
 * The watermark entries of the relay become tally:wm (pipeline.h): the read model is complete
 * up to that time.
 * Correctness does not depend on there being one projector: several share the group, and
 * version checks in the function order their applies.
 */
#ifndef TALLY_CONSUMER_H
#define TALLY_CONSUMER_H

#include "cfg.h"
#include "metrics.h"

#include <stddef.h>
#include <stdint.h>

typedef struct proj_config {
    cfg_redis redis;
    int partitions;            /* streams tally:events:0 .. partitions-1 */
    int batch;                 /* entries per read */
    int block_ms;              /* how long a read waits for new entries */
    int claim_idle_ms;         /* an entry pending this long with a consumer is reclaimed */
    int gap_timeout_ms;        /* a gap older than this is parked */
    int max_attempts;          /* a failing event is parked after this many tries alone */
    const char *consumer;      /* this process's name in the group (unique) */
    metrics_registry *metrics; /* tally_projector_* series are added to it */
} proj_config;

/* Runs until svc_stopping(); the batch in progress is finished and acked. 0, or TALLY_E*. */
int proj_run(const proj_config *conf);

/* Monotonic ms of the loop's last turn (0 before the first): the liveness heartbeat. */
int64_t proj_heartbeat_ms(void);

/*
 * Readiness (an http_check_fn): 0 while the loop applies events; TALLY_EUNAVAIL with the
 * reason while Redis is unreachable, refuses writes (OOM, READONLY, ...) or evicts keys.
 */
int proj_ready(void *arg, char *why, size_t whylen);

#endif
