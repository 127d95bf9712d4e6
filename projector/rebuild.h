/*
 * rebuild: a tenant's read model built again from the PostgreSQL event log into a new
 * generation while the current one keeps serving (docs/operations.md "Rebuilding the read
 * model", docs/keyspace.md `{t:T}:rebuild`).
 *
 * The steps, each resumable by another rebuilder once the owner's lease has expired:
 *   1. begin: `{t:T}:rebuild` names the new generation; from that moment the projector applies
 *      every live event to both generations in the same atomic step (tally_apply).
 *   2. reading: the tenant's events up to the last seq PostgreSQL had just after step 1, in seq
 *      order, applied to the new generation with the progress (tally_rebuild_apply). Every
 *      event committed before step 1 is visible to these reads; one committed later is brought
 *      by the live path. A duplicate is dropped by version.
 *   3. gaps: a live event that found an earlier version missing in the new generation was
 *      recorded in `{t:T}:rebuild:gaps`; those complaints' histories are read again.
 *   4. flip: with no gap left, the tenant's `{t:T}:gen` names the new generation, in one step.
 *   5. deleting: after a second's grace (a query that read the old pointer may still be reading),
 *      the old generation's keys are UNLINKed a SCAN page at a time (`{t:T}:gc`); the tenant
 *      stays in the registry until it is done, so a deletion cut short is resumed.
 * Query replies of the tenant say `rebuilding` with this progress until step 4.
 */
#ifndef TALLY_REBUILD_H
#define TALLY_REBUILD_H

#include <hiredis/hiredis.h>
#include <stdbool.h>
#include <stdint.h>

/*
 * The tenants whose rebuild began and has not ended (a set, outside any tenant's hash tag, so
 * kept beside the atomic steps rather than in them): what the projector's rebuild gauges read.
 */
#define REBUILD_REGISTRY_KEY "tally:rebuilds"

typedef struct rebuild_progress {
    const char *tenant;
    const char *phase; /* "reading", "gaps", "flipping", "deleting", "done" */
    int64_t generation;
    bool resumed;    /* took over a rebuild a crashed rebuilder left */
    int64_t done;    /* events read from the log */
    int64_t total;   /* events of the tenant up to the seq the rebuild reads to */
    double rate;     /* events/s, over the reading so far */
    int64_t eta_ms;  /* of the reading; -1 when not known */
    int64_t gaps;    /* complaints waiting in step 3 */
    int64_t invalid; /* events the view refused (left out, like a parked complaint's) */
    int64_t deleted; /* keys of old generations unlinked */
    int64_t merged;  /* calls whose events were counted by the rebuilder (plan.h) and written */
    int64_t split;   /* merged calls refused (nothing written), sent again event by event */
} rebuild_progress;

/*
 * Events per function call by default: a call holds Redis for its whole length, and the other
 * tenants' queries wait behind it (500: about 3.8 ms a call, their p99 under 10 ms meanwhile;
 * bench/README.md, the rebuild benchmark).
 */
#define REBUILD_BATCH 500

/*
 * Rows of the event log read at once by default (a window, applied by local day: rebuild.c,
 * day_order). Two windows are held while the next one is read ahead.
 */
#define REBUILD_WINDOW 20000

typedef struct rebuild_opts {
    const char *pg_dsn;
    const char *owner;  /* this rebuilder's name, unique (host, pid, start) */
    int batch;          /* events per function call; 0: REBUILD_BATCH */
    int window;         /* rows of the event log per read; 0: REBUILD_WINDOW */
    int64_t lease_ms;   /* 0: 15000 */
    int64_t stop_after; /* for tests: stop (as if killed) after this many events; 0: never */
    int64_t progress_every_ms;
    void (*progress)(const rebuild_progress *pr, void *arg);
    void *arg;
    bool (*stop)(void); /* may be NULL: when true, the rebuild stops (TALLY_ECANCELLED) */
} rebuild_opts;

/*
 * Rebuilds tenant (which must exist in PostgreSQL) on the Redis of rc: steps 1-5 above, or
 * resuming where a crashed rebuilder stopped. 0 with *out the final progress; TALLY_EBUSY when
 * another live rebuilder holds the tenant (err says whose); TALLY_ENOTFOUND for a tenant
 * PostgreSQL does not know; TALLY_EUNAVAIL when Redis or PostgreSQL fails (the rebuild can be
 * resumed); TALLY_ECANCELLED after stop_after. err holds a sentence in every failure.
 */
int rebuild_tenant(redisContext *rc, const rebuild_opts *o, const char *tenant,
                   rebuild_progress *out, char *err, size_t errlen);

/*
 * Gives up the rebuild of tenant: its generation is deleted, with whatever else {t:T}:gc lists.
 * 1 if one ran, 0 if none, <0 error.
 */
int rebuild_abort(redisContext *rc, const char *tenant, char *err, size_t errlen);

/*
 * Deletes what {t:T}:gc lists (old generations; never the current one), then forgets the tenant
 * in the registry when no rebuild runs. 0, or a tally_err with err; *deleted = keys unlinked.
 */
int rebuild_gc(redisContext *rc, const char *tenant, int64_t *deleted, char *err, size_t errlen);

/* The tenants PostgreSQL knows, for a rebuild of all (caller frees each and the array). */
int rebuild_tenants(const char *pg_dsn, char ***ids, size_t *n, char *err, size_t errlen);

/* What the rebuilds running now add up to (rebuild_sample). */
typedef struct rebuild_summary {
    int64_t running; /* rebuilds begun and not ended */
    int64_t stalled; /* of them, those whose rebuilder's lease has expired (it died) */
    int64_t done, total;
    int64_t eta_s; /* the largest ETA of the running ones; 0 when none is known */
} rebuild_summary;

/*
 * Reads REBUILD_REGISTRY_KEY and each tenant's {t:T}:rebuild at now_ms (Unix ms), forgetting
 * tenants whose rebuild has ended. 0, or TALLY_EUNAVAIL (Redis failed; out untouched).
 */
int rebuild_sample(redisContext *rc, int64_t now_ms, rebuild_summary *out);

#endif
