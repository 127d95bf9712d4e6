/*
 * relay: publishes the outbox (unpublished rows of the events table) to the Redis Streams
 * tally:events:<partition>, in seq order, with pipelined XADD (MAXLEN ~ bound), then marks the
 * rows published. A thread of command-svc.
 *
 * Exactly one relay is active across all command-svc replicas: the one holding a PostgreSQL
 * session advisory lock. The others retry the lock every poll interval, so when the holder
 * dies (its session ends) another takes over within seconds. The active relay wakes on
 * LISTEN tally_events and polls as a fallback. It never keeps a "highest seq seen" cursor:
 * every pass selects the rows whose published_at is NULL, so a row whose transaction commits
 * after a higher seq was published is still found. A crash between XADD and the mark
 * publishes the row again (the same seq: the projector drops the duplicate). Redis or
 * PostgreSQL down: retried with exponential backoff and jitter; the rows wait; commands are
 * not affected.
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

/* Starts the relay thread. conf is copied. NULL with the reason in err. */
relay *relay_start(const relay_config *conf, char *err, size_t errlen);

/* Stops the thread (finishing the pass in progress) and frees. NULL-safe. */
void relay_stop(relay *r);

#endif
