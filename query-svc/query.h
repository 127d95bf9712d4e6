/*
 * query: tally.v1.Dashboard over the Redis read model (docs/keyspace.md).
 *
 * Each worker thread owns one Redis connection (to TALLY_REDIS_READ_URL, which may be a
 * replica) and a small cache of what it knows about tenants (generation, time zone, category
 * and agent ids), used to plan the read and checked against the same read: a request is one
 * pipelined round trip in the steady state, never a KEYS or SCAN.
 */
#ifndef TALLY_QUERY_H
#define TALLY_QUERY_H

#include "cfg.h"
#include "metrics.h"
#include "srv.h"

#include <stdint.h>

typedef struct query_config {
    cfg_redis redis;          /* where to read */
    int64_t redis_timeout_ms; /* connect and reply timeout */
    int64_t token_wait_ms;    /* the longest wait for a consistency token without a deadline */
    metrics_counter *token_waits, *stale, *rereads; /* see query_metrics */
} query_config;

/* Registers the service's own metrics into conf. 0, or TALLY_ENOMEM. */
int query_metrics(query_config *conf, metrics_registry *reg);

extern const srv_service query_service;

/* GetDashboard's handler: what WatchDashboard reads each page with (watch.h). */
int query_dashboard(srv_call *call, const ProtobufCMessage *req, void *worker);

/* srv worker hooks; arg is a const query_config * that outlives the server. */
void *query_worker_new(int index, void *arg);
void query_worker_free(void *worker, void *arg);

#endif
