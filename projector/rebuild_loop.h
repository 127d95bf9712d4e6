/*
 * rebuild_loop: the projector finishing rebuilds on a thread of its own (rebuild.h), when it
 * has PostgreSQL (TALLY_PG_DSN). A projector of a newer view (tally.lua's VIEW_VERSION) begins
 * a rebuild held by nobody for a tenant whose generation an older view built (tally_apply);
 * this loop takes such rebuilds, and any whose rebuilder died (its lease expired), over and
 * finishes them: deploying a changed view rebuilds its tenants by itself. Every few seconds it
 * reads tally:rebuilds; several replicas share the work through the rebuild's lease. A rebuild
 * stopped by SIGTERM is left to be resumed (by another replica, or after the restart).
 */
#ifndef TALLY_REBUILD_LOOP_H
#define TALLY_REBUILD_LOOP_H

#include "cfg.h"

typedef struct rloop_config {
    const char *pg_dsn; /* borrowed for the process's life */
    cfg_redis redis;
    const char *consumer; /* this replica's name, for the rebuild's owner */
} rloop_config;

/* Starts the thread. 0, or a tally_err. */
int rloop_start(const rloop_config *c);

/* Stops the thread (a rebuild in progress stops at its next call) and joins it. */
void rloop_stop(void);

#endif
