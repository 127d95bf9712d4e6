/*
 * relay: publishes the outbox (unpublished rows of the events table) to the Redis Streams
 * tally:events:<partition>, in seq order, with pipelined XADD (MAXLEN ~ bound), then marks the
 * rows published. A thread of command-svc.
 *
 * Each stream entry has exactly one field, "e", whose value is the EventEnvelope bytes of one
 * row (event_pack: header fields from the columns, the body from payload); the partition is
 * event_partition(tenant_id, partitions), so a tenant's events stay in one stream in order.
 *
 * Exactly one relay is active across all command-svc replicas: the one holding the PostgreSQL
 * session advisory lock 7411002 (the migrations use 7411001). The others retry the lock every
 * poll interval, so when the holder dies (its session ends) another takes over within seconds;
 * a relay whose own session breaks stops publishing at once and competes again. The active
 * relay wakes on LISTEN tally_events and polls as a fallback. It never keeps a "highest seq
 * seen" cursor: every pass selects the rows whose published_at is NULL, so a row whose
 * transaction commits after a higher seq was published is still found. A crash between XADD
 * and the mark publishes the row again (the same seq: the projector drops the duplicate).
 * Redis or PostgreSQL down: retried with exponential backoff and jitter; the rows wait;
 * commands are not affected.
 *
 * Metrics added to conf->metrics: tally_relay_leader, tally_relay_backlog (0 on a standby),
 * tally_relay_published_total, tally_relay_publish_lag_seconds and
 * tally_relay_errors_total{dependency="redis"|"postgres"}.
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
    long long maxlen;          /* approximate MAXLEN of each stream */
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
 * Stops the thread (finishing the pass in progress; at most a statement timeout, normally
 * milliseconds), ends its PostgreSQL session (releasing the lock to a standby) and frees.
 * NULL-safe.
 */
void relay_stop(relay *r);

#endif
