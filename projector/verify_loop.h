/*
 * verify_loop: the projector's periodic check of the read model against PostgreSQL
 * (common/verify.h), on a thread of its own so that it never slows the consume loop.
 *
 * Every every_s seconds (the first run one period after start, when a restarted projector has
 * caught up) it verifies every tenant over the last `days` days and sets the metrics:
 *   tally_projector_verify_drift                       differences found by the last run
 *   tally_projector_verify_last_run_timestamp_seconds  when the last run finished (Unix s)
 *   tally_projector_verify_runs_total                  runs that completed
 *   tally_projector_verify_errors_total                runs that failed (PostgreSQL or Redis)
 * and logs each difference as a warning ("verify drift"), at most VLOOP_MAX_LOGGED per run,
 * then one summary line. It opens its own PostgreSQL and Redis connections.
 */
#ifndef TALLY_VERIFY_LOOP_H
#define TALLY_VERIFY_LOOP_H

#include "cfg.h"
#include "metrics.h"

#define VLOOP_MAX_LOGGED 20

typedef struct vloop_config {
    const char *pg_dsn; /* borrowed for the process's life */
    cfg_redis redis;
    int every_s; /* > 0 */
    int days, settle_ms;
    metrics_registry *metrics;
} vloop_config;

/* Registers the metrics and starts the thread. 0, or a tally_err. */
int vloop_start(const vloop_config *c);

/* Stops the thread (once svc_stopping() is true it ends within about 100 ms) and joins it. */
void vloop_stop(void);

#endif
