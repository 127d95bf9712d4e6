/*
 * stream: the contract between the write side and the read side, named once.
 *
 * command-svc's relay publishes every event to Redis and the projector consumes it; query-svc
 * reads what both leave behind to judge freshness. They meet only through the names below, so
 * each is spelled here and nowhere else (docs/keyspace.md describes the keys):
 *
 * - A tenant's events go to one stream, tally:events:<p> with p = stream_partition(tenant,
 *   partitions), so they stay in commit order. Each entry is one field STREAM_FIELD_EVENT
 *   holding the EventEnvelope bytes (event.h), or, after the relay drained its backlog, one
 *   field STREAM_FIELD_WATERMARK holding a commit time in Unix ms (projector/pipeline.h).
 * - The projector reads in the consumer group STREAM_GROUP; the relay creates it and waits for
 *   its acknowledgements to end a repair. Events it cannot apply go to tally:dead:<p>.
 * - Each event becomes STREAM_APPLY_NFIELDS arguments of the Redis function tally_apply
 *   (projector/tally.lua, whose NFIELDS a unit test holds equal to this).
 * - The relay keeps its position in STREAM_POS_KEY and announces a repair in
 *   STREAM_REPAIR_KEY; the projector asks for one in STREAM_REPAIR_REQUEST_KEY and publishes
 *   the watermark per partition in STREAM_WM_KEY.
 */
#ifndef TALLY_STREAM_H
#define TALLY_STREAM_H

#include <stddef.h>

#define STREAM_PARTITIONS_MAX 256 /* as TALLY_STREAM_PARTITIONS allows */
#define STREAM_KEY_MAX        32  /* room for stream_key and stream_dead_key of any partition */

#define STREAM_GROUP           "projector"
#define STREAM_FIELD_EVENT     "e"
#define STREAM_FIELD_WATERMARK "w"
#define STREAM_APPLY_NFIELDS   19

#define STREAM_POS_KEY            "tally:relay:pos"
#define STREAM_REPAIR_KEY         "tally:repair"
#define STREAM_REPAIR_REQUEST_KEY "tally:repair:request"
#define STREAM_WM_KEY             "tally:wm"
/* Pub/sub: the projector publishes a tenant id here after each batch that changed its read
   model; query-svc's WatchDashboard streams follow it (query-svc/watch.h). */
#define STREAM_CHANGES_CHANNEL "tally:changes"

/*
 * The relay's backlog, the unpublished rows, is counted up to STREAM_BACKLOG_MAX + 1 (its
 * gauge, and `tally lag`, read that as "more than"): the LIMIT of both counts.
 */
#define STREAM_BACKLOG_MAX       100000
#define STREAM_BACKLOG_LIMIT_SQL "100001"

/*
 * A tenant's keys begin with its hash tag, one cluster slot each (docs/keyspace.md): this is a
 * printf format of the tenant id, followed by the key's own part ("parked", "gen", or the
 * generation and a view): STREAM_TENANT "parked".
 */
#define STREAM_TENANT "{t:%s}:"

/* The event stream of partition p, "tally:events:<p>", into buf (len bytes). */
void stream_key(int p, char *buf, size_t len);

/* The dead-letter stream of partition p, "tally:dead:<p>", into buf (len bytes). */
void stream_dead_key(int p, char *buf, size_t len);

/* The partition of a tenant: FNV-1a (hash.h) of the id, modulo partitions (>= 1). */
int stream_partition(const char *tenant_id, int partitions);

#endif
