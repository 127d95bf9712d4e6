/*
 * watch: tally.v1.Dashboard/WatchDashboard, GetDashboard kept live.
 *
 * One hub per process: a thread with one Redis connection SUBSCRIBEd to tally:changes (the
 * projector publishes there the tenants each applied batch changed) and one more to read pages.
 * A stream's first page is read on the worker that opened it; after that the hub marks a
 * tenant's streams changed on each notification and, once a stream's min_interval_ms has
 * passed since its last page, reads the page once for every stream that asked the same (the
 * request's bytes) and sends it to each. No stream polls Redis: with nothing changing, open
 * streams cost nothing but their memory. When the subscription is lost (Redis restarts), every
 * stream gets a new page after it is back, since changes may have been missed meanwhile.
 */
#ifndef TALLY_WATCH_H
#define TALLY_WATCH_H

#include "metrics.h"
#include "query.h"
#include "srv.h"

#include <stdint.h>

/*
 * Starts the hub (its thread and connections) for the process; floor_ms is the least
 * min_interval_ms. 0, or TALLY_ENOMEM / TALLY_EINTERNAL.
 */
int watch_start(const query_config *conf, int64_t floor_ms, metrics_registry *reg);

/* Stops the hub after the server has shut down (its streams are over by then). */
void watch_stop(void);

/* The srv stream hooks of WatchDashboard (query.c registers them). */
int watch_open(srv_call *call, srv_stream *st, const ProtobufCMessage *req, void *worker);
void watch_closed(srv_stream *st);

#endif
