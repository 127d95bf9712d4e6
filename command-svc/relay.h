/*
 * relay: publishes the outbox (the table of unpublished event seqs, filled by a trigger of the
 * events table) to the Redis Streams tally:events:<partition>, in seq order, with pipelined
 * XADD, then marks the rows published (deletes them from the outbox and records the pass).
 * A thread of command-svc. The protocol with the consumers is docs/keyspace.md, "Streams and
 * pipeline state".
 *
 * Each stream entry has exactly one field, "e", whose value is the EventEnvelope bytes of one
 * row (event_pack: header fields from the columns, the body from payload); the partition is
 * stream_partition(tenant_id, partitions), so a tenant's events stay in one stream in order.
 * Watermark entries carry the single field "w" instead (Unix ms: every row committed before it
 * is at an earlier position of its stream). Those names are common/stream.h's.
 *
 * Exactly one relay is active across all command-svc replicas: the one holding the PostgreSQL
 * session advisory lock 7411002 (the migrations use 7411001). The others retry the lock every
 * poll interval, so when the holder dies (its session ends) another takes over within seconds;
 * a relay whose own session breaks stops publishing at once and competes again; a leader that
 * cannot publish to Redis for redis_giveup_ms gives the lock up. It never keeps a "highest seq
 * seen" cursor: every pass selects the rows still in the outbox, so a row whose
 * transaction commits after a higher seq was published is still found. A crash between XADD
 * and the mark publishes the row again (the same seq: the projector drops the duplicate).
 *
 * The stream keeps what a consumer group has not acknowledged: the relay creates every group
 * at 0, trims only below the slowest group, and stops publishing while a stream holds maxlen
 * entries (the rows wait in PostgreSQL). A Redis that lost data (tally:relay:pos behind what
 * PostgreSQL has marked) is repaired by republishing from PostgreSQL, announced in
 * tally:repair until the projector has it all.
 *
 * Metrics added to conf->metrics: tally_relay_leader, tally_relay_backlog (capped count; 0 on
 * a standby), tally_relay_published_total, tally_relay_publish_lag_seconds,
 * tally_relay_errors_total{dependency="redis"|"postgres"}, tally_relay_backpressure,
 * tally_relay_stream_length{partition}, tally_relay_unpublishable_rows,
 * tally_relay_repairs_total{reason}, tally_relay_repair_rows, tally_relay_giveups_total.
 */
#ifndef TALLY_RELAY_H
#define TALLY_RELAY_H

#include "cfg.h"
#include "metrics.h"

#include <stdint.h>

typedef struct relay relay;

typedef struct relay_config {
    const char *pg_dsn;
    cfg_redis redis;
    int partitions;            /* streams tally:events:0 .. partitions-1 (>= 1) */
    long long maxlen;          /* entries a stream may hold before the relay waits (>= 1) */
    const char *groups;        /* comma list of consumer groups to create and wait for ("":
                                  projector only; projector is always one); copied */
    int redis_giveup_ms;       /* a leader failing on Redis this long gives up the lock */
    int batch;                 /* rows per pass */
    int poll_ms;               /* fallback poll, and how often a standby retries the lock */
    metrics_registry *metrics; /* borrowed: relay_* series are added to it */
} relay_config;

/*
 * Starts the relay thread. conf is copied (pg_dsn too); conf->metrics must not be NULL and
 * must outlive the relay. NULL with the reason in err. Dependencies need not be up: the thread
 * waits for them.
 */
relay *relay_start(const relay_config *conf, char *err, size_t errlen);

/*
 * Checks a TALLY_STREAM_GROUPS value: comma-separated names of [A-Za-z0-9_.-]{1,64}, at most
 * RELAY_GROUPS_MAX with projector. 0, or TALLY_EINVAL with the problem in err.
 */
#define RELAY_GROUPS_MAX 8
int relay_groups_check(const char *groups, char *err, size_t errlen);

/*
 * Stops the thread (finishing the pass in progress; at most a statement timeout, normally
 * milliseconds), ends its PostgreSQL session (releasing the lock to a standby) and frees.
 * NULL-safe.
 */
void relay_stop(relay *r);

#endif
